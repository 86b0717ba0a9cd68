# tests/conformance/glmnet_check.R DIR n d K
# Fits glmnet's grouped multinomial lasso on the matrix written by glmnet_fit and compares the
# penalised objective with h2tdb's solution at each lambda. Both objectives are computed here,
# by the same R code, in double precision:
#   (1/n) sum_i CE_i + lambda * sum_j ||beta_j||_2
# glmnet settings that make its problem ours: family="multinomial",
# type.multinomial="grouped", alpha=1 (pure group lasso), standardize=FALSE (features are
# already normalised per layer), intercept=TRUE (unpenalised, like our bias), equal weights
# (glmnet scales the loss by 1/n: the same as our mean), its lambda = our lambda.
suppressMessages(library(glmnet))
a <- commandArgs(trailingOnly = TRUE)
dir <- a[1]; n <- as.integer(a[2]); d <- as.integer(a[3]); K <- as.integer(a[4])
X <- matrix(readBin(file.path(dir, "X.f32"), "numeric", n * d, size = 4), nrow = n, byrow = TRUE)
y <- readBin(file.path(dir, "y.i32"), "integer", n, size = 4)
lam <- readBin(file.path(dir, "lambdas.f64"), "numeric", 4, size = 8)
obj <- function(B, b0, l) {            # B: d x K, b0: K
  Z <- X %*% B + matrix(b0, n, K, byrow = TRUE)
  m <- apply(Z, 1, max)
  lse <- m + log(rowSums(exp(Z - m)))
  ce <- mean(lse - Z[cbind(1:n, y + 1)])
  ce + l * sum(sqrt(rowSums(B^2)))
}
t0 <- proc.time()[["elapsed"]]
# glmnet wants a path: start at its own lambda_max and end at our smallest lambda
fit <- glmnet(X, factor(y, levels = 0:(K - 1)), family = "multinomial",
              type.multinomial = "grouped", alpha = 1, standardize = FALSE, intercept = TRUE,
              lambda = lam, thresh = 1e-12, maxit = 1e6)
tg <- proc.time()[["elapsed"]] - t0
worst <- 0
for (i in seq_along(lam)) {
  cf <- coef(fit, s = lam[i], exact = FALSE)
  B <- sapply(cf, function(v) as.numeric(v)[-1]); b0 <- sapply(cf, function(v) as.numeric(v)[1])
  og <- obj(B, b0, lam[i])
  W <- matrix(readBin(file.path(dir, sprintf("W_%d.f32", i)), "numeric", d * K, size = 4),
              nrow = d, byrow = TRUE)
  bb <- readBin(file.path(dir, sprintf("b_%d.f32", i)), "numeric", K, size = 4)
  oh <- obj(W, bb, lam[i])
  rel <- (oh - og) / abs(og)
  nzg <- sum(rowSums(B^2) > 0); nzh <- sum(rowSums(W^2) > 0)
  cat(sprintf("lambda %.6g: glmnet %.9f (%d rows) h2tdb %.9f (%d rows) rel %+.2e\n",
              lam[i], og, nzg, oh, nzh, rel))
  worst <- max(worst, abs(rel))
}
cat(sprintf("glmnet path fit: %.3f s\n", tg))
if (worst > 1e-3) {
  cat(sprintf("FAIL: worst relative objective difference %.3g > 1e-3\n", worst))
  quit(status = 1)
}
cat(sprintf("ok: worst relative objective difference %.3g <= 1e-3\n", worst))
