/*
 * tests/conformance/glmnet_fit.c - writes a shared problem for the glmnet conformance check and
 * h2tdb's group-lasso solutions on it. Built and run by glmnet_check.sh.
 *
 *   glmnet_fit OUTDIR [n layers dim_per_layer classes seed]
 *
 * OUTDIR/X.f32 (n x d row-major, per-layer L2-normalised, as the solver fits it), y.i32,
 * lambdas.f64 (the fractions 0.5, 0.2, 0.05, 0.01 of lambda_max), and per lambda i
 * W_i.f32 (d x K), b_i.f32 (K), the fit of mean CE + lambda sum_j ||W_j||, warm-started
 * along the lambdas. Prints one line per fit (iterations, KKT residual, objective, seconds).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "solver/solver.h"

static int dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "glmnet_fit: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: glmnet_fit OUTDIR [n layers dim classes seed]\n");
        return 2;
    }
    const char *dir = argv[1];
    uint32_t n = argc > 2 ? (uint32_t)atoi(argv[2]) : 300;
    uint32_t L = argc > 3 ? (uint32_t)atoi(argv[3]) : 4;
    uint32_t dl = argc > 4 ? (uint32_t)atoi(argv[4]) : 50;
    uint32_t K = argc > 5 ? (uint32_t)atoi(argv[5]) : 4;
    uint64_t seed = argc > 6 ? strtoull(argv[6], NULL, 10) : 1;
    uint32_t d = L * dl;
    float *X = malloc((size_t)n * d * 4), *mu = calloc((size_t)K * d, 4);
    int32_t *yi = malloc(n * 4);
    uint32_t *y = malloc(n * 4);
    uint64_t s = seed;
    for (uint32_t j = 0; j < d; j += 7) /* every 7th feature carries the class */
        for (uint32_t c = 0; c < K; c++)
            mu[(size_t)c * d + j] = (float)(0.6 * h2t_rng_gauss(&s));
    for (uint32_t i = 0; i < n; i++) {
        y[i] = (uint32_t)(h2t_rng_next(&s) % K);
        yi[i] = (int32_t)y[i];
        for (uint32_t j = 0; j < d; j++)
            X[(size_t)i * d + j] = (float)(mu[(size_t)y[i] * d + j] + h2t_rng_gauss(&s));
        for (uint32_t l = 0; l < L; l++) {
            float *x = X + (size_t)i * d + l * dl;
            double q = 0;
            for (uint32_t j = 0; j < dl; j++)
                q += (double)x[j] * x[j];
            for (uint32_t j = 0; j < dl; j++)
                x[j] = (float)(x[j] / sqrt(q));
        }
    }
    /* lambda_max at W = 0 and the intercept-only bias */
    float *W = calloc((size_t)d * K, 4), *b = calloc(K, 4), *G = malloc((size_t)d * K * 4);
    float *gb = malloc(K * 4);
    for (uint32_t c = 0; c < K; c++) {
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < n; i++)
            cnt += y[i] == c;
        b[c] = (float)log((cnt ? cnt : 0.5) / (double)n);
    }
    h2t_solver_loss_grad(X, y, n, d, K, W, b, G, gb);
    double lmax = 0;
    for (uint32_t j = 0; j < d; j++) {
        double q = 0;
        for (uint32_t c = 0; c < K; c++)
            q += (double)G[(size_t)j * K + c] * G[(size_t)j * K + c];
        lmax = sqrt(q) > lmax ? sqrt(q) : lmax;
    }
    double lam[4] = {0.5 * lmax, 0.2 * lmax, 0.05 * lmax, 0.01 * lmax};
    if (dump(dir, "X.f32", X, (size_t)n * d * 4) || dump(dir, "y.i32", yi, n * 4) ||
        dump(dir, "lambdas.f64", lam, sizeof(lam)))
        return 1;
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.max_iter = 20000;
    for (int q = 0; q < 4; q++) {
        h2t_fit_info fi;
        double t0 = h2t_now_s();
        int rc = h2t_solver_fit(X, y, n, d, K, H2T_PENALTY_GROUP, lam[q], &sp, W, b, &fi);
        if (rc < 0) {
            fprintf(stderr, "glmnet_fit: %s: %s\n", h2t_strerror(rc), h2t_err_detail());
            return 1;
        }
        char nm[64];
        snprintf(nm, sizeof(nm), "W_%d.f32", q + 1);
        if (dump(dir, nm, W, (size_t)d * K * 4))
            return 1;
        snprintf(nm, sizeof(nm), "b_%d.f32", q + 1);
        if (dump(dir, nm, b, K * 4))
            return 1;
        printf("h2tdb lambda %.6g: iters %u converged %u kkt %.3g objective %.9g (%.3f s)\n",
               lam[q], fi.iters, fi.converged, fi.grad_norm, fi.objective, h2t_now_s() - t0);
    }
    free(X);
    free(mu);
    free(yi);
    free(y);
    free(W);
    free(b);
    free(G);
    free(gb);
    return 0;
}
