# Peer for bench/solver (b): glmnet grouped multinomial lasso on the matrix bench/solver wrote,
# along the same lambda path. args: DIR n d K. Prints 'glmnet fit_s OBJ obj NZ rows' and the
# objective of h2tdb's solution (W.f32, b.f32), both computed here in double.
suppressMessages(library(glmnet))
a <- commandArgs(trailingOnly = TRUE)
dir <- a[1]; n <- as.integer(a[2]); d <- as.integer(a[3]); K <- as.integer(a[4])
X <- matrix(readBin(file.path(dir, "Xtr.f32"), "numeric", n * d, size = 4), nrow = n, byrow = TRUE)
y <- readBin(file.path(dir, "ytr.i32"), "integer", n, size = 4)
path <- readBin(file.path(dir, "path.f64"), "numeric", 1000, size = 8)
lam <- path[length(path)]
obj <- function(B, b0) {
  Z <- X %*% B + matrix(b0, n, K, byrow = TRUE)
  m <- apply(Z, 1, max)
  mean(m + log(rowSums(exp(Z - m))) - Z[cbind(1:n, y + 1)]) + lam * sum(sqrt(rowSums(B^2)))
}
t0 <- proc.time()[["elapsed"]]
fit <- glmnet(X, factor(y, levels = 0:(K - 1)), family = "multinomial",
              type.multinomial = "grouped", alpha = 1, standardize = FALSE, lambda = path)
tg <- proc.time()[["elapsed"]] - t0
cf <- coef(fit, s = lam)
B <- sapply(cf, function(v) as.numeric(v)[-1]); b0 <- sapply(cf, function(v) as.numeric(v)[1])
W <- matrix(readBin(file.path(dir, "W.f32"), "numeric", d * K, size = 4), nrow = d, byrow = TRUE)
bb <- readBin(file.path(dir, "b.f32"), "numeric", K, size = 4)
cat(sprintf("glmnet %.4f %.9f %d %.9f %d\n", tg, obj(B, b0), sum(rowSums(B^2) > 0), obj(W, bb),
            sum(rowSums(W^2) > 0)))
