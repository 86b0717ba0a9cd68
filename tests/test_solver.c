/* Solver tests: group-lasso recovery, KKT optimality, determinism, CV, bad input, blobs. */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cpu.h"
#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h"
#include "solver/solver.h"
#include "tests/test.h"

/* Synthetic task: n samples, L layers of dim dl, K classes; only the features in inf[] carry
 * the class (mean +-amp by class), everything else is N(0, 1) noise. */
typedef struct synth {
    uint32_t n_tr, n_te, L, dl, K, D;
    float *xtr, *xte;
    uint32_t *ytr, *yte, *dims;
} synth;

static void synth_make(synth *t, uint32_t n_tr, uint32_t n_te, uint32_t L, uint32_t dl, uint32_t K,
                       const uint32_t *inf, uint32_t n_inf, double amp, uint64_t seed)
{
    t->n_tr = n_tr;
    t->n_te = n_te;
    t->L = L;
    t->dl = dl;
    t->K = K;
    t->D = L * dl;
    t->xtr = malloc((size_t)n_tr * t->D * sizeof(float));
    t->xte = malloc((size_t)n_te * t->D * sizeof(float) + 4);
    t->ytr = malloc(n_tr * sizeof(uint32_t));
    t->yte = malloc(n_te * sizeof(uint32_t) + 4);
    t->dims = malloc(L * sizeof(uint32_t));
    for (uint32_t l = 0; l < L; l++)
        t->dims[l] = dl;
    uint64_t s = seed;
    /* class means of the informative features: a fixed random sign pattern per class */
    float *mu = calloc((size_t)K * t->D, sizeof(float));
    for (uint32_t q = 0; q < n_inf; q++)
        for (uint32_t c = 0; c < K && inf[q] < t->D; c++)
            mu[(size_t)c * t->D + inf[q]] = (float)(amp * cos(2 * M_PI * (c + q) / K));
    for (uint32_t i = 0; i < n_tr + n_te; i++) {
        int tr = i < n_tr;
        uint32_t c = (uint32_t)(h2t_rng_next(&s) % K);
        float *x = tr ? t->xtr + (size_t)i * t->D : t->xte + (size_t)(i - n_tr) * t->D;
        (tr ? t->ytr : t->yte)[tr ? i : i - n_tr] = c;
        for (uint32_t j = 0; j < t->D; j++)
            x[j] = (float)(mu[(size_t)c * t->D + j] + h2t_rng_gauss(&s));
    }
    free(mu);
}

static void synth_free(synth *t)
{
    free(t->xtr);
    free(t->xte);
    free(t->ytr);
    free(t->yte);
    free(t->dims);
}

static h2t_dataset synth_data(const synth *t)
{
    h2t_dataset d = {.n_train = t->n_tr,
                     .n_test = t->n_te,
                     .n_classes = t->K,
                     .n_layers = t->L,
                     .x_train = t->xtr,
                     .y_train = t->ytr,
                     .x_test = t->xte,
                     .y_test = t->yte,
                     .layer_dims = t->dims};
    return d;
}

/* per-layer normalised copy of the train rows (what the solver fits on) */
static float *normalised(const synth *t)
{
    float *X = malloc((size_t)t->n_tr * t->D * sizeof(float));
    for (uint32_t i = 0; i < t->n_tr; i++)
        for (uint32_t l = 0; l < t->L; l++) {
            const float *x = t->xtr + (size_t)i * t->D + l * t->dl;
            float *o = X + (size_t)i * t->D + l * t->dl;
            double s = 0;
            for (uint32_t c = 0; c < t->dl; c++)
                s += (double)x[c] * x[c];
            for (uint32_t c = 0; c < t->dl; c++)
                o[c] = (float)(x[c] / sqrt(s));
        }
    return X;
}

static double lambda_max(const float *X, const uint32_t *y, uint32_t n, uint32_t D, uint32_t K)
{
    float *W = calloc((size_t)D * K, sizeof(float)), *b = calloc(K, sizeof(float));
    float *G = malloc((size_t)D * K * sizeof(float)), *gb = malloc(K * sizeof(float));
    /* intercept-only bias: log class frequencies (the start of the solver's path) */
    for (uint32_t c = 0; c < K; c++) {
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < n; i++)
            cnt += y[i] == c;
        b[c] = (float)log(cnt / (double)n);
    }
    h2t_solver_loss_grad(X, y, n, D, K, W, b, G, gb);
    double m = 0;
    for (uint32_t j = 0; j < D; j++) {
        double s = 0;
        for (uint32_t c = 0; c < K; c++)
            s += (double)G[(size_t)j * K + c] * G[(size_t)j * K + c];
        m = sqrt(s) > m ? sqrt(s) : m;
    }
    free(W);
    free(b);
    free(G);
    free(gb);
    return m;
}

static const uint32_t INF6[] = {3, 57, 60, 120, 121, 199};

TEST(solver_group_lasso_finds_informative_features)
{
    synth t;
    synth_make(&t, 300, 100, 4, 50, 3, INF6, 6, 1.0, 11);
    float *X = normalised(&t);
    double lmax = lambda_max(X, t.ytr, t.n_tr, t.D, t.K);
    /* one exact fit at 0.3 lambda_max: the support is the informative set */
    float *W = calloc((size_t)t.D * t.K, sizeof(float)), *b = calloc(t.K, sizeof(float));
    h2t_fit_info fi;
    ASSERT_OK(
        h2t_solver_fit(X, t.ytr, t.n_tr, t.D, t.K, H2T_PENALTY_GROUP, 0.3 * lmax, NULL, W, b, &fi));
    ASSERT_EQ(fi.converged, 1);
    uint32_t nz = 0, hit = 0;
    for (uint32_t j = 0; j < t.D; j++) {
        int on = 0;
        for (uint32_t c = 0; c < t.K; c++)
            on |= W[(size_t)j * t.K + c] != 0;
        nz += on;
        for (int q = 0; q < 6; q++)
            hit += on && INF6[q] == j;
    }
    ASSERT_EQ(hit, 6);
    ASSERT_LE(nz, 8);
    /* head2toe end to end: keep 6 of 200 features -> exactly the informative ones */
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 1;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 0.3 * lmax;
    sp.n_keeps = 1;
    sp.keeps[0] = 6.0 / 200;
    h2t_dataset d = synth_data(&t);
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
    ASSERT_EQ(r->n_kept, 6);
    ASSERT_EQ(r->ranking, H2T_RANK_PATH_ENTRY);
    for (int q = 0; q < 6; q++) {
        ASSERT_EQ(r->features[q].layer, INF6[q] / 50);
        ASSERT_EQ(r->features[q].index, INF6[q] % 50);
    }
    /* layer 2 keeps 2 (120, 121), layer 0: 1, layer 1: 2, layer 3: 1 */
    ASSERT_EQ(r->layer_kept[0], 1);
    ASSERT_EQ(r->layer_kept[1], 2);
    ASSERT_EQ(r->layer_kept[2], 2);
    ASSERT_EQ(r->layer_kept[3], 1);
    ASSERT_EQ(r->final_fit.converged, 1);
    ASSERT_GE(r->test_acc, 0.9);
    h2t_result_destroy(r);
    free(W);
    free(b);
    free(X);
    synth_free(&t);
}

/* head2toe's selection path stops at a KKT residual of 0.1 lambda (run.c, H2T_SELECT_KKT_REL),
 * looser than a single fit's 1e-2: its selection fit still meets that residual, its objective is
 * that of the tight fit at the same lambda to 1e-3, and the kept set holds every row that the
 * tight fit gives a norm above 1e-3 of its largest (the rows the ranking puts first). */
TEST(solver_head2toe_selection_path_tolerance)
{
    synth t;
    static const uint32_t inf[] = {3, 17, 57, 60, 88, 120, 121, 150, 170, 199};
    synth_make(&t, 240, 40, 4, 50, 4, inf, 10, 0.5, 11);
    float *X = normalised(&t);
    double lam = 0.2 * lambda_max(X, t.ytr, t.n_tr, t.D, t.K);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 1;
    sp.n_lambdas = 1;
    sp.lambdas[0] = lam;
    sp.n_keeps = 1;
    sp.keeps[0] = 0.25;
    h2t_dataset d = synth_data(&t);
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
    ASSERT_EQ(r->n_kept, 50);
    ASSERT_EQ(r->select_fit.converged, 1);
    ASSERT_LE(r->select_fit.grad_norm, 0.1 * lam);
    /* the tight fit at the same lambda, cold (h2t_solver_fit: residual <= 1e-2 lambda) */
    size_t dk = (size_t)t.D * t.K;
    float *W = calloc(dk, sizeof(float)), b[4] = {0};
    h2t_fit_info fi;
    ASSERT_OK(h2t_solver_fit(X, t.ytr, t.n_tr, t.D, t.K, H2T_PENALTY_GROUP, lam, NULL, W, b, &fi));
    ASSERT_EQ(fi.converged, 1);
    ASSERT_LE(fabs(r->select_fit.objective - fi.objective), 1e-3 * fi.objective);
    double top = 0, *rn = malloc(t.D * sizeof(double));
    uint32_t nz = 0;
    for (uint32_t j = 0; j < t.D; j++) {
        double q = 0;
        for (uint32_t c = 0; c < t.K; c++)
            q += (double)W[(size_t)j * t.K + c] * W[(size_t)j * t.K + c];
        rn[j] = sqrt(q);
        top = rn[j] > top ? rn[j] : top;
        nz += rn[j] > 0;
    }
    ASSERT(nz >= 10 && nz < 50); /* the keep must reach past the support to test the claim */
    for (uint32_t j = 0; j < t.D; j++) {
        if (rn[j] <= 1e-3 * top)
            continue;
        int kept = 0;
        for (uint32_t q = 0; q < r->n_kept && !kept; q++)
            kept = r->features[q].layer * t.dl + r->features[q].index == j;
        ASSERT(kept);
    }
    free(rn);
    free(W);
    h2t_result_destroy(r);
    free(X);
    synth_free(&t);
}

/* KKT at the fast path's solution, tolerance 1e-2 * lambda (the solver's stop test):
 * zero rows ||G_j|| <= lambda (1 + 1e-2); non-zero rows ||G_j + lambda W_j/||W_j|| || <=
 * 1e-2 lambda; bias gradient |g_c| <= 1e-2 lambda. Gradient recomputed independently. */
TEST(solver_fast_path_kkt)
{
    synth t;
    synth_make(&t, 200, 10, 3, 40, 4, INF6, 3, 0.7, 5);
    float *X = normalised(&t);
    double lmax = lambda_max(X, t.ytr, t.n_tr, t.D, t.K);
    double lams[] = {0.5 * lmax, 0.1 * lmax, 0.02 * lmax};
    float *W = calloc((size_t)t.D * t.K, sizeof(float)), *b = calloc(t.K, sizeof(float));
    float *G = malloc((size_t)t.D * t.K * sizeof(float)), *gb = malloc(t.K * sizeof(float));
    for (int q = 0; q < 3; q++) {
        double lam = lams[q];
        h2t_fit_info fi;
        ASSERT_OK(
            h2t_solver_fit(X, t.ytr, t.n_tr, t.D, t.K, H2T_PENALTY_GROUP, lam, NULL, W, b, &fi));
        ASSERT_EQ(fi.converged, 1);
        h2t_solver_loss_grad(X, t.ytr, t.n_tr, t.D, t.K, W, b, G, gb);
        uint32_t nz = 0;
        for (uint32_t j = 0; j < t.D; j++) {
            const float *w = W + (size_t)j * t.K, *g = G + (size_t)j * t.K;
            double nw = 0, ng = 0;
            for (uint32_t c = 0; c < t.K; c++) {
                nw += (double)w[c] * w[c];
                ng += (double)g[c] * g[c];
            }
            nw = sqrt(nw);
            ng = sqrt(ng);
            if (nw == 0) {
                ASSERT_LE(ng, lam * (1 + 1e-2));
            } else {
                nz++;
                double e = 0;
                for (uint32_t c = 0; c < t.K; c++) {
                    double v = g[c] + lam * w[c] / nw;
                    e += v * v;
                }
                ASSERT_LE(sqrt(e), 1e-2 * lam);
            }
        }
        for (uint32_t c = 0; c < t.K; c++)
            ASSERT_LE(fabs(gb[c]), 1e-2 * lam);
        ASSERT_GT(nz, 0);
        ASSERT_LT(nz, t.D);
    }
    free(W);
    free(b);
    free(G);
    free(gb);
    free(X);
    synth_free(&t);
}

/* The smooth fits converge to a small gradient, and the L2 optimum satisfies grad = 0. */
TEST(solver_l2_fit_converges)
{
    synth t;
    synth_make(&t, 150, 10, 2, 30, 3, INF6, 2, 0.5, 9);
    float *X = normalised(&t);
    float *W = calloc((size_t)t.D * t.K, sizeof(float)), *b = calloc(t.K, sizeof(float));
    float *G = malloc((size_t)t.D * t.K * sizeof(float)), gb[3];
    h2t_fit_info fi;
    ASSERT_OK(h2t_solver_fit(X, t.ytr, t.n_tr, t.D, t.K, H2T_PENALTY_L2, 1e-3, NULL, W, b, &fi));
    ASSERT_EQ(fi.converged, 1);
    h2t_solver_loss_grad(X, t.ytr, t.n_tr, t.D, t.K, W, b, G, gb);
    for (uint32_t i = 0; i < t.D * t.K; i++)
        ASSERT_LE(fabs(G[i] + 1e-3 * W[i]), 2e-5);
    free(W);
    free(b);
    free(G);
    free(X);
    synth_free(&t);
}

/* The path entry point: the same solutions as one h2t_solver_fit per lambda (objective within
 * the KKT tolerance's reach), KKT-converged at every point; lambdas must descend. */
TEST(solver_fit_path_matches_single_fits)
{
    synth t;
    synth_make(&t, 200, 10, 3, 40, 4, INF6, 3, 0.7, 5);
    float *X = normalised(&t);
    double lmax = lambda_max(X, t.ytr, t.n_tr, t.D, t.K);
    double lams[] = {0.5 * lmax, 0.1 * lmax, 0.02 * lmax};
    size_t dk = (size_t)t.D * t.K;
    float *W1 = calloc(dk, sizeof(float)), *W2 = calloc(dk, sizeof(float));
    float b1[4] = {0}, b2[4] = {0};
    h2t_fit_info one, path[3];
    for (int q = 0; q < 3; q++)
        ASSERT_OK(h2t_solver_fit(X, t.ytr, t.n_tr, t.D, t.K, H2T_PENALTY_GROUP, lams[q], NULL, W1,
                                 b1, &one));
    ASSERT_OK(h2t_solver_fit_path(X, t.ytr, t.n_tr, t.D, t.K, lams, 3, NULL, W2, b2, path));
    for (int q = 0; q < 3; q++) {
        ASSERT_EQ(path[q].converged, 1);
        ASSERT_LE(path[q].grad_norm, 1e-2 * lams[q]);
    }
    ASSERT_LE(fabs(path[2].objective - one.objective), 1e-4 * one.objective);
    double bad[] = {0.1 * lmax, 0.5 * lmax};
    ASSERT_EQ(h2t_solver_fit_path(X, t.ytr, t.n_tr, t.D, t.K, bad, 2, NULL, W2, b2, NULL),
              H2T_EINVAL);
    free(W1);
    free(W2);
    free(X);
    synth_free(&t);
}

/* The kernel form's own Gram product Z = Gm A: with AVX-512 every entry is the plain sum over
 * j in order, bit for bit, on shapes that cover its blocks (sixteen and eight rows, a tail of
 * fewer, a row count below one tile of rows and one not a multiple of it, one chunk of classes
 * and more than one); without AVX-512 (dgemm) within 1e-12 of it. */
TEST(solver_kernel_gram_mul_plain_sums)
{
    const uint32_t shapes[][2] = {{803, 10}, {45, 3}, {40, 27}, {16, 12}, {7, 1}, {100, 13}};
    uint64_t s = 99;
    int exact = h2t_cpu_has(H2T_CPU_AVX512F);
    for (size_t q = 0; q < sizeof(shapes) / sizeof(shapes[0]); q++) {
        uint32_t n = shapes[q][0], k = shapes[q][1];
        double *G = malloc((size_t)n * n * sizeof(double)),
               *A = malloc((size_t)n * k * sizeof(double));
        double *Z = malloc((size_t)n * k * sizeof(double));
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j <= i; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                G[(size_t)i * n + j] = G[(size_t)j * n + i] =
                    (double)(s >> 11) / 9007199254740992.0 - 0.3;
            }
        for (size_t e = 0; e < (size_t)n * k; e++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            A[e] = (double)(s >> 11) / 9007199254740992.0 - 0.5;
        }
        ASSERT_OK(h2t_solver__gram_mul(G, n, A, k, Z));
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t c = 0; c < k; c++) {
                double z = 0;
                for (uint32_t j = 0; j < n; j++)
                    z += G[(size_t)i * n + j] * A[(size_t)j * k + c];
                if (exact)
                    ASSERT(memcmp(&z, &Z[(size_t)i * k + c], sizeof(double)) == 0);
                else
                    ASSERT_LE(fabs(z - Z[(size_t)i * k + c]), 1e-12 * n);
            }
        free(G);
        free(A);
        free(Z);
    }
}

/* The solver's own Gram products (gram_own) with more classes than one chunk of 16 (20 classes:
 * 16 + 4 padded) and rows not a multiple of its eight-row blocks: the same optimum as dgemm's
 * products, objective within 1e-9 relative, the same predictions on the training rows. */
TEST(solver_kernel_gram_own_many_classes)
{
    synth t;
    synth_make(&t, 37, 0, 3, 60, 20, INF6, 6, 0.8, 23);
    float *X = normalised(&t);
    size_t dk = (size_t)t.D * t.K;
    h2t_fit_info f[2];
    float *W[2], b[2][20];
    for (int own = 0; own < 2; own++) {
        h2t_solver_opts o = {.max_iter = 2000, .gtol = 1e-6, .kkt_rel = 1e-2, .gram_own = own};
        float *A = calloc((size_t)t.n_tr * t.K, sizeof(float));
        W[own] = calloc(dk, sizeof(float));
        memset(b[own], 0, sizeof(b[own]));
        ASSERT_OK(h2t_solver__fit_smooth_kernel(X, NULL, t.ytr, t.n_tr, t.D, t.K, 1e-3, &o, A,
                                                W[own], b[own], &f[own]));
        ASSERT_EQ(f[own].converged, 1);
        free(A);
    }
    ASSERT_LE(fabs(f[1].objective - f[0].objective), 1e-9 * fabs(f[0].objective));
    float *Z = malloc((size_t)t.n_tr * t.K * sizeof(float));
    uint32_t *p0 = malloc(t.n_tr * sizeof(uint32_t)), *p1 = malloc(t.n_tr * sizeof(uint32_t));
    h2t_solver__logits(X, t.n_tr, t.D, t.K, W[0], b[0], Z);
    h2t_solver__argmax(Z, t.n_tr, t.K, NULL, p0);
    h2t_solver__logits(X, t.n_tr, t.D, t.K, W[1], b[1], Z);
    h2t_solver__argmax(Z, t.n_tr, t.K, NULL, p1);
    for (uint32_t i = 0; i < t.n_tr; i++)
        ASSERT_EQ(p0[i], p1[i]);
    free(Z);
    free(p0);
    free(p1);
    free(W[0]);
    free(W[1]);
    free(X);
    synth_free(&t);
}

/* The kernel form (n < d) reaches the primal L-BFGS's objective and predictions: W = X^T A
 * with the Gram matrix, same penalised objective within 1e-6 relative, same test classes; with
 * dgemm's Gram products and with the solver's own (gram_own: 60 rows, a tail of 4 below its
 * eight-row blocks; 3 classes padded to 16). */
TEST(solver_kernel_form_matches_primal)
{
    synth t;
    synth_make(&t, 60, 200, 4, 100, 3, INF6, 6, 0.6, 17);
    float *X = normalised(&t);
    float *Xte = malloc((size_t)t.n_te * t.D * sizeof(float));
    for (uint32_t i = 0; i < t.n_te; i++) /* the test rows, normalised the same way */
        for (uint32_t l = 0; l < t.L; l++) {
            const float *x = t.xte + (size_t)i * t.D + l * t.dl;
            double q = 0;
            for (uint32_t c = 0; c < t.dl; c++)
                q += (double)x[c] * x[c];
            for (uint32_t c = 0; c < t.dl; c++)
                Xte[(size_t)i * t.D + l * t.dl + c] = (float)(x[c] / sqrt(q));
        }
    size_t dk = (size_t)t.D * t.K;
    const double ridges[] = {1e-2, 1e-4};
    for (int r = 0; r < 4; r++) {
        h2t_solver_opts o = {.max_iter = 2000, .gtol = 1e-5, .kkt_rel = 1e-2, .gram_own = r / 2};
        float *Wp = calloc(dk, sizeof(float)), *Wk = calloc(dk, sizeof(float));
        float *A = calloc((size_t)t.n_tr * t.K, sizeof(float));
        float bp[3] = {0}, bk[3] = {0};
        h2t_fit_info fp, fk;
        ASSERT_OK(
            h2t_solver__fit_smooth(X, t.ytr, t.n_tr, t.D, t.K, ridges[r % 2], &o, Wp, bp, &fp));
        ASSERT_OK(h2t_solver__fit_smooth_kernel(X, NULL, t.ytr, t.n_tr, t.D, t.K, ridges[r % 2], &o,
                                                A, Wk, bk, &fk));
        ASSERT_EQ(fp.converged, 1);
        ASSERT_EQ(fk.converged, 1);
        ASSERT_LE(fk.grad_norm, 1e-5);
        ASSERT_LE(fabs(fk.objective - fp.objective), 1e-6 * fabs(fp.objective));
        /* the kernel solution itself passed (no primal finish): A still represents W */
        double an = 0;
        for (size_t q = 0; q < (size_t)t.n_tr * t.K; q++)
            an += fabs(A[q]);
        ASSERT(an > 0);
        float *Zp = malloc((size_t)t.n_te * t.K * sizeof(float)),
              *Zk = malloc((size_t)t.n_te * t.K * sizeof(float));
        uint32_t *pp = malloc(t.n_te * sizeof(uint32_t)), *pk = malloc(t.n_te * sizeof(uint32_t));
        h2t_solver__logits(Xte, t.n_te, t.D, t.K, Wp, bp, Zp);
        h2t_solver__logits(Xte, t.n_te, t.D, t.K, Wk, bk, Zk);
        h2t_solver__argmax(Zp, t.n_te, t.K, NULL, pp);
        h2t_solver__argmax(Zk, t.n_te, t.K, NULL, pk);
        for (uint32_t i = 0; i < t.n_te; i++)
            ASSERT_EQ(pp[i], pk[i]);
        for (size_t q = 0; q < dk; q++)
            ASSERT_LE(fabs(Wp[q] - Wk[q]), 1e-3 * (1 + fabs(Wp[q])));
        free(Zp);
        free(Zk);
        free(pp);
        free(pk);
        free(Wp);
        free(Wk);
        free(A);
    }
    /* the public entry point takes the kernel path from W = 0 and meets gtol on the primal */
    float *W = calloc(dk, sizeof(float)), b[3] = {0};
    float *G = malloc(dk * sizeof(float)), gb[3];
    h2t_fit_info fi;
    ASSERT_OK(h2t_solver_fit(X, t.ytr, t.n_tr, t.D, t.K, H2T_PENALTY_L2, 1e-3, NULL, W, b, &fi));
    ASSERT_EQ(fi.converged, 1);
    h2t_solver_loss_grad(X, t.ytr, t.n_tr, t.D, t.K, W, b, G, gb);
    for (size_t q = 0; q < dk; q++)
        ASSERT_LE(fabs(G[q] + 1e-3 * W[q]), 1e-5);
    free(W);
    free(G);
    free(X);
    free(Xte);
    synth_free(&t);
}

/* method "all" with n <= D/2 takes the kernel form through the job's Gram (fold sub-blocks,
 * warm starts along the lambdas): deterministic, and the returned head is stationary for the
 * chosen lambda on the primal gradient. */
TEST(solver_all_kernel_job)
{
    synth t;
    synth_make(&t, 60, 30, 4, 100, 3, INF6, 6, 0.6, 23);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.folds = 3;
    h2t_dataset d = synth_data(&t);
    h2t_result *r1 = NULL, *r2 = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r1));
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r2));
    ASSERT_EQ(r1->n_kept, t.D);
    ASSERT(memcmp(r1->weights, r2->weights, (size_t)t.D * t.K * sizeof(float)) == 0);
    ASSERT(memcmp(r1->cv_acc, r2->cv_acc, r1->n_lambdas * sizeof(double)) == 0);
    ASSERT_EQ(r1->final_fit.converged, 1);
    float *X = normalised(&t);
    size_t dk = (size_t)t.D * t.K;
    float *W = malloc(dk * sizeof(float)), *G = malloc(dk * sizeof(float)), gb[3];
    for (uint32_t j = 0; j < t.D; j++) /* result weights are K x k */
        for (uint32_t c = 0; c < t.K; c++)
            W[(size_t)j * t.K + c] = r1->weights[(size_t)c * t.D + j];
    h2t_solver_loss_grad(X, t.ytr, t.n_tr, t.D, t.K, W, r1->bias, G, gb);
    for (size_t q = 0; q < dk; q++)
        ASSERT_LE(fabs(G[q] + r1->lambda * W[q]), 2e-5);
    for (uint32_t c = 0; c < t.K; c++)
        ASSERT_LE(fabs(gb[c]), 2e-5);
    free(W);
    free(G);
    free(X);
    h2t_result_destroy(r1);
    h2t_result_destroy(r2);
    synth_free(&t);
}

static int blob_run(const synth *t, uint32_t method, uint32_t opt, void **blob, size_t *len,
                    h2t_result **keep)
{
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, method);
    sp.optimizer = opt;
    sp.folds = 3;
    sp.steps = 60;
    sp.seed = 42;
    if (method == H2T_METHOD_HEAD2TOE) {
        sp.n_lambdas = 2;
        sp.lambdas[0] = 3e-3;
        sp.lambdas[1] = 1e-3;
        sp.n_keeps = 2;
        sp.keeps[0] = 0.05;
        sp.keeps[1] = 0.2;
    }
    h2t_dataset d = synth_data(t);
    h2t_result *r = NULL;
    int rc = h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r);
    if (rc < 0)
        return rc;
    r->t_load = r->t_cv = r->t_final = r->t_total = 0; /* timings differ run to run */
    rc = h2t_result_encode(r, blob, len);
    if (keep)
        *keep = r;
    else
        h2t_result_destroy(r);
    return rc;
}

TEST(solver_deterministic_bit_identical)
{
    synth t;
    synth_make(&t, 120, 40, 3, 30, 3, INF6, 4, 0.8, 3);
    uint32_t methods[] = {H2T_METHOD_HEAD2TOE, H2T_METHOD_ALL};
    for (int opt = 0; opt < 2; opt++)
        for (int m = 0; m < 2; m++) {
            void *b1 = NULL, *b2 = NULL;
            size_t l1 = 0, l2 = 0;
            ASSERT_OK(blob_run(&t, methods[m], (uint32_t)opt, &b1, &l1, NULL));
            ASSERT_OK(blob_run(&t, methods[m], (uint32_t)opt, &b2, &l2, NULL));
            ASSERT_EQ(l1, l2);
            ASSERT(memcmp(b1, b2, l1) == 0);
            free(b1);
            free(b2);
        }
    synth_free(&t);
}

TEST(solver_cv_result_consistent)
{
    synth t;
    synth_make(&t, 150, 60, 4, 25, 3, INF6, 5, 0.9, 21);
    void *blob = NULL;
    size_t len = 0;
    h2t_result *r = NULL;
    ASSERT_OK(blob_run(&t, H2T_METHOD_HEAD2TOE, H2T_OPT_FAST, &blob, &len, &r));
    ASSERT_EQ(r->n_lambdas, 2);
    ASSERT_EQ(r->n_keeps, 2);
    ASSERT_EQ(r->folds, 3);
    ASSERT(r->lambdas[0] > r->lambdas[1]);
    /* the chosen cell has the best mean validation accuracy; fold mean matches */
    double best = 0, m = 0;
    for (uint32_t c = 0; c < 4; c++)
        best = r->cv_acc[c] > best ? r->cv_acc[c] : best;
    ASSERT_NEAR(r->val_acc, best, 1e-12);
    for (uint32_t f = 0; f < 3; f++)
        m += r->fold_acc[f];
    ASSERT_NEAR(m / 3, r->val_acc, 1e-12);
    ASSERT_EQ(r->n_kept, (uint32_t)floor(100 * r->keep));
    /* exact test accuracy, and predict() on raw features agrees with it */
    uint32_t *pred = malloc(t.n_te * sizeof(uint32_t)), corr = 0;
    ASSERT_OK(h2t_result_predict(r, t.xte, t.n_te, pred));
    for (uint32_t i = 0; i < t.n_te; i++)
        corr += pred[i] == t.yte[i];
    ASSERT_EQ(corr, r->test_correct);
    ASSERT_NEAR(r->test_acc, (double)corr / t.n_te, 1e-12);
    ASSERT_EQ(r->final_fit.converged, 1);
    /* the blob round-trips and re-encodes to the same bytes */
    h2t_result *r2 = NULL;
    ASSERT_OK(h2t_result_decode(blob, len, &r2));
    void *blob2 = NULL;
    size_t len2 = 0;
    ASSERT_OK(h2t_result_encode(r2, &blob2, &len2));
    ASSERT_EQ(len, len2);
    ASSERT(memcmp(blob, blob2, len) == 0);
    /* damage is detected */
    ((uint8_t *)blob2)[len2 / 2] ^= 1;
    h2t_result *r3 = NULL;
    ASSERT_EQ(h2t_result_decode(blob2, len2, &r3), H2T_ECORRUPT);
    ASSERT(r3 == NULL);
    ASSERT_EQ(h2t_result_decode(blob, 10, &r3), H2T_ECORRUPT);
    /* export */
    ASSERT_OK(h2t_result_export(r, "head"));
    struct stat stw;
    ASSERT_EQ(stat("head/weights.npy", &stw), 0);
    ASSERT_EQ((long long)stw.st_size, 128 + 4LL * r->n_classes * r->n_kept);
    FILE *f = fopen("head/result.json", "r");
    ASSERT(f != NULL);
    char js[8192] = {0};
    ASSERT_GT(fread(js, 1, sizeof(js) - 1, f), 0);
    fclose(f);
    ASSERT_CONTAINS(js, "\"method\": \"head2toe\"");
    ASSERT_CONTAINS(js, "path-entry");
    free(pred);
    free(blob);
    free(blob2);
    h2t_result_destroy(r);
    h2t_result_destroy(r2);
    synth_free(&t);
}

TEST(solver_adam_head2toe_selects)
{
    synth t;
    synth_make(&t, 256, 60, 4, 50, 3, INF6, 6, 1.0, 11);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.optimizer = H2T_OPT_ADAM;
    sp.folds = 1;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 1e-2;
    sp.n_keeps = 1;
    sp.keeps[0] = 6.0 / 200;
    sp.steps = 300;
    sp.lr = 0.01;
    h2t_dataset d = synth_data(&t);
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
    ASSERT_EQ(r->ranking, H2T_RANK_SCORE);
    ASSERT_EQ(r->final_fit.iters, 300);
    uint32_t hit = 0;
    for (uint32_t c = 0; c < r->n_kept; c++)
        for (int q = 0; q < 6; q++)
            hit += r->features[c].layer * 50 + r->features[c].index == INF6[q];
    ASSERT_GE(hit, 5);
    ASSERT_GE(r->test_acc, 0.85);
    h2t_result_destroy(r);
    synth_free(&t);
}

static void count_progress(void *ud, double frac, const char *stage)
{
    double *last = ud;
    if (frac + 1e-12 < last[0] || !stage[0])
        last[1] = 1; /* went backwards: flag */
    last[0] = frac;
    last[2]++;
}

TEST(solver_progress_and_cancel)
{
    synth t;
    synth_make(&t, 100, 20, 2, 20, 3, INF6, 2, 0.8, 1);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    h2t_dataset d = synth_data(&t);
    double pr[3] = {0, 0, 0};
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, count_progress, pr, NULL, &r));
    ASSERT_NEAR(pr[0], 1.0, 1e-12);
    ASSERT_EQ(pr[1], 0);
    ASSERT_GT(pr[2], 10);
    h2t_result_destroy(r);
    r = NULL;
    atomic_int cancel = 1;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, &cancel, &r), H2T_ECANCELED);
    ASSERT(r == NULL);
    synth_free(&t);
}

TEST(solver_bad_input)
{
    synth t;
    synth_make(&t, 60, 20, 2, 10, 3, INF6, 2, 0.8, 1);
    h2t_dataset d = synth_data(&t);
    h2t_train_spec sp;
    h2t_result *r = NULL;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.lambdas[1] = -1e-4;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "lambda");
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.keeps[0] = 0;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "keep");
    sp.keeps[0] = 1.5;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    h2t_dataset one = d;
    uint32_t *y1 = calloc(t.n_tr, sizeof(uint32_t));
    one.y_train = y1;
    ASSERT_EQ(h2t_solver_run_data(&one, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "one class");
    one = d;
    one.n_classes = 1;
    ASSERT_EQ(h2t_solver_run_data(&one, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    one = d;
    one.n_train = 0;
    ASSERT_EQ(h2t_solver_run_data(&one, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "empty train");
    one = d;
    one.n_test = 0;
    ASSERT_EQ(h2t_solver_run_data(&one, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "empty test");
    /* NaN in layer 1, train sample 7; on one thread and on the load's two, where the rows are
     * checked in two parts and the first bad value in row order is named (a later row's
     * infinity in another part does not hide it) */
    for (uint32_t th = 1; th <= 2; th++) {
        sp.threads = th;
        t.xtr[7 * t.D + 10 + 3] = NAN;
        t.xte[5 * t.D + 2] = INFINITY;
        ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_ENUMERIC);
        ASSERT_CONTAINS(h2t_err_detail(), "NaN in layer 1");
        ASSERT_CONTAINS(h2t_err_detail(), "train sample 7");
        t.xtr[7 * t.D + 13] = 0;
        t.xte[5 * t.D + 2] = 0;
        t.xte[2 * t.D + 1] = INFINITY;
        ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_ENUMERIC);
        ASSERT_CONTAINS(h2t_err_detail(), "test sample 2");
        t.xte[2 * t.D + 1] = 0;
    }
    sp.threads = 0;
    /* above the memory budget the matrix is spilled to H2T_SPILL_DIR: a directory that does
     * not exist is an error naming it and the bytes; an existing one gives the in-memory head */
    sp.mem_limit = 1000;
    setenv("H2T_SPILL_DIR", "no-such-dir", 1);
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_ETOOBIG);
    ASSERT_CONTAINS(h2t_err_detail(), "6400 bytes");
    ASSERT_CONTAINS(h2t_err_detail(), "no-such-dir");
    setenv("H2T_SPILL_DIR", ".", 1);
    h2t_result *rs = NULL, *rm = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &rs));
    sp.mem_limit = 0;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &rm));
    ASSERT_EQ(rs->n_kept, rm->n_kept);
    ASSERT(memcmp(rs->weights, rm->weights, (size_t)rm->n_kept * rm->n_classes * 4) == 0);
    ASSERT(rs->final_fit.objective == rm->final_fit.objective);
    h2t_result_destroy(rs);
    h2t_result_destroy(rm);
    unsetenv("H2T_SPILL_DIR");
    uint32_t bad_layer = 5;
    sp.layers = &bad_layer;
    sp.n_layers = 1;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT(r == NULL);
    free(y1);
    synth_free(&t);
}

TEST(solver_linear_uses_last_layer)
{
    synth t;
    synth_make(&t, 90, 30, 3, 12, 3, INF6, 1, 1.0, 2);
    h2t_dataset d = synth_data(&t);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_LINEAR);
    sp.folds = 3;
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
    ASSERT_EQ(r->n_layers, 1);
    ASSERT_EQ(r->layer_ids[0], 2);
    ASSERT_EQ(r->n_kept, 12);
    ASSERT_EQ(r->features[0].layer, 2);
    ASSERT_EQ(r->n_lambdas, 4);
    ASSERT_EQ(r->final_fit.converged, 1);
    uint32_t pred[30], corr = 0;
    ASSERT_OK(h2t_result_predict(r, t.xte + 24, 0, pred)); /* n = 0 is fine */
    /* predict takes rows over the result's layers only */
    float *x = malloc(30 * 12 * sizeof(float));
    for (uint32_t i = 0; i < 30; i++)
        memcpy(x + i * 12, t.xte + (size_t)i * t.D + 24, 12 * sizeof(float));
    ASSERT_OK(h2t_result_predict(r, x, 30, pred));
    for (uint32_t i = 0; i < 30; i++)
        corr += pred[i] == t.yte[i];
    ASSERT_EQ(corr, r->test_correct);
    free(x);
    h2t_result_destroy(r);
    synth_free(&t);
}

/* The store front end assembles the same matrix as the in-memory one: identical heads. A
 * sample that was never written is a clear error. */
TEST(solver_store_matches_memory)
{
    synth t;
    synth_make(&t, 120, 30, 3, 20, 3, INF6, 4, 0.9, 8);
    uint32_t N = t.n_tr + t.n_te;
    h2t_store *st = NULL;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    h2t_source s = {0};
    snprintf(s.name, sizeof(s.name), "synth");
    snprintf(s.uri, sizeof(s.uri), "npy:/synth.npy");
    s.hash[0] = 3;
    s.n_samples = N + 10;
    s.n_classes = 3;
    char *cn[3] = {"a", "b", "c"};
    s.class_names = cn;
    uint32_t *lab = calloc(N + 10, 4);
    uint8_t *spl = calloc(N + 10, 1);
    for (uint32_t i = 0; i < N; i++)
        lab[i] = i < t.n_tr ? t.ytr[i] : t.yte[i - t.n_tr];
    s.labels = lab;
    s.split = spl;
    uint32_t src, model, ext;
    int reused;
    ASSERT_OK(h2t_store_source_put(st, &s, &src, &reused));
    h2t_model_rec m = {0};
    snprintf(m.name, sizeof(m.name), "net");
    m.sha256[0] = 1;
    ASSERT_OK(h2t_store_model_put(st, &m, &model, &reused));
    h2t_layer_info L[3];
    memset(L, 0, sizeof(L));
    for (uint32_t l = 0; l < 3; l++) {
        snprintf(L[l].name, sizeof(L[l].name), "layer%u", l);
        snprintf(L[l].op, sizeof(L[l].op), "Conv");
        L[l].rank = 2;
        L[l].shape[0] = 20;
        L[l].dim = 20;
    }
    h2t_extraction e = {0};
    e.source = src;
    e.model = model;
    e.n_samples = N + 10; /* the last 10 are never written */
    e.n_layers = 3;
    e.layers = L;
    e.config_hash[0] = 9;
    ASSERT_OK(h2t_store_extraction_begin(st, &e, &ext, &reused));
    float *buf[3];
    for (uint32_t l = 0; l < 3; l++) {
        buf[l] = malloc((size_t)N * 20 * 4);
        for (uint32_t i = 0; i < N; i++) {
            const float *x =
                i < t.n_tr ? t.xtr + (size_t)i * t.D : t.xte + (size_t)(i - t.n_tr) * t.D;
            memcpy(buf[l] + (size_t)i * 20, x + l * 20, 20 * 4);
        }
    }
    ASSERT_OK(h2t_store_features_write(st, ext, 0, N, (const float *const *)buf));
    h2t_task task = {0};
    snprintf(task.name, sizeof(task.name), "t");
    task.extraction = ext;
    task.n_classes = 3;
    task.class_names = cn;
    uint32_t *tr = malloc(t.n_tr * 4), *te = malloc(t.n_te * 4);
    for (uint32_t i = 0; i < t.n_tr; i++)
        tr[i] = i;
    for (uint32_t i = 0; i < t.n_te; i++)
        te[i] = t.n_tr + i;
    task.n_train = t.n_tr;
    task.train = tr;
    task.train_labels = t.ytr;
    task.n_test = t.n_te;
    task.test = te;
    task.test_labels = t.yte;
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 3;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 2e-3;
    sp.n_keeps = 2;
    sp.keeps[0] = 0.05;
    sp.keeps[1] = 0.1;
    h2t_result *r1 = NULL, *r2 = NULL;
    ASSERT_OK(h2t_solver_run(st, &task, &sp, NULL, NULL, NULL, &r1));
    h2t_dataset d = synth_data(&t);
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r2));
    ASSERT_EQ(r1->n_kept, r2->n_kept);
    ASSERT(memcmp(r1->weights, r2->weights, (size_t)r1->n_kept * 3 * 4) == 0);
    ASSERT(memcmp(r1->features, r2->features, (size_t)r1->n_kept * 8) == 0);
    ASSERT_EQ(r1->test_correct, r2->test_correct);
    ASSERT_STREQ(r1->layer_names[1], "layer1");
    /* the test rows left in the store and scored in row blocks (a budget of 7 rows: five
     * blocks of 6): the same head and the same test count, for head2toe, all and linear */
    size_t smin = h2t_solver__test_stream_min, bbytes = h2t_solver__test_block_bytes;
    ASSERT_EQ(t.n_te, 30);
    for (int mi = 0; mi < 3; mi++) {
        h2t_train_spec ms = sp;
        if (mi)
            h2t_train_spec_default(&ms, mi == 1 ? H2T_METHOD_ALL : H2T_METHOD_LINEAR);
        ms.folds = 3;
        h2t_result *ra = NULL, *rb = NULL;
        h2t_solver__test_stream_min = smin;
        ASSERT_OK(h2t_solver_run(st, &task, &ms, NULL, NULL, NULL, &ra));
        h2t_solver__test_stream_min = 0;
        h2t_solver__test_block_bytes = 7 * (mi == 2 ? 20 : 60) * sizeof(float);
        ASSERT_OK(h2t_solver_run(st, &task, &ms, NULL, NULL, NULL, &rb));
        h2t_solver__test_stream_min = smin;
        h2t_solver__test_block_bytes = bbytes;
        ASSERT_EQ(ra->n_kept, rb->n_kept);
        ASSERT(memcmp(ra->weights, rb->weights, (size_t)ra->n_kept * 3 * 4) == 0);
        ASSERT_EQ(ra->test_correct, rb->test_correct);
        ASSERT(ra->test_acc == rb->test_acc);
        ASSERT(ra->test_correct > t.n_te / 3); /* above chance: a head, not a tie of zeros */
        if (mi == 0)
            ASSERT_EQ(ra->test_correct, r1->test_correct);
        h2t_result_destroy(ra);
        h2t_result_destroy(rb);
    }
    /* a test sample that was never extracted, with the test rows loaded or streamed */
    te[3] = N + 5;
    h2t_result *r3 = NULL;
    int rc = h2t_solver_run(st, &task, &sp, NULL, NULL, NULL, &r3);
    ASSERT_EQ(rc, H2T_ENOTFOUND);
    ASSERT(r3 == NULL);
    h2t_solver__test_stream_min = 0;
    rc = h2t_solver_run(st, &task, &sp, NULL, NULL, NULL, &r3);
    h2t_solver__test_stream_min = smin;
    ASSERT_EQ(rc, H2T_ENOTFOUND);
    ASSERT(r3 == NULL);
    h2t_result_destroy(r1);
    h2t_result_destroy(r2);
    for (uint32_t l = 0; l < 3; l++)
        free(buf[l]);
    free(tr);
    free(te);
    free(lab);
    free(spl);
    h2t_store_close(st);
    synth_free(&t);
}

/* head2toe's final-head L2 grid (spec.final_l2s): every keep fraction x every final L2 is a
 * CV cell, the chosen cell's L2 is in the result (and survives the blob), and with keep 1.0
 * the cell is the "all" head at that L2: all layers is inside head2toe's grid. */
TEST(solver_head2toe_final_l2_grid)
{
    synth t;
    synth_make(&t, 120, 60, 4, 50, 3, INF6, 6, 0.6, 31);
    h2t_dataset d = synth_data(&t);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 3;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 1e-3;
    sp.n_keeps = 2;
    sp.keeps[0] = 1.0;
    sp.keeps[1] = 0.03;
    sp.n_final_l2s = 3;
    sp.final_l2s[0] = 1e-6;
    sp.final_l2s[1] = 10;
    sp.final_l2s[2] = 1e-2;
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
    /* the keep axis: keeps ascending, within each the L2s descending */
    static const double ek[] = {0.03, 0.03, 0.03, 1, 1, 1}, ef[] = {10, 1e-2, 1e-6, 10, 1e-2, 1e-6};
    ASSERT_EQ(r->n_lambdas, 1);
    ASSERT_EQ(r->n_keeps, 6);
    ASSERT(r->final_l2s != NULL);
    uint32_t best = 0;
    for (uint32_t c = 0; c < 6; c++) {
        ASSERT(r->keeps[c] == ek[c]);
        ASSERT(r->final_l2s[c] == ef[c]);
        if (r->cv_acc[c] > r->cv_acc[best])
            best = c;
    }
    ASSERT(r->val_acc == r->cv_acc[best]);
    ASSERT(r->keep == ek[best]);
    ASSERT(r->final_l2 == ef[best]);
    ASSERT_EQ(r->select_group, H2T_SELECT_FEATURE);
    /* L2 10 on normalised features predicts near the class prior: worse than the best cell */
    ASSERT(r->cv_acc[3] < r->cv_acc[best]);
    void *blob = NULL;
    size_t len = 0;
    h2t_result *r2 = NULL;
    ASSERT_OK(h2t_result_encode(r, &blob, &len));
    ASSERT_OK(h2t_result_decode(blob, len, &r2));
    ASSERT(r2->final_l2 == r->final_l2);
    ASSERT(r2->final_l2s && memcmp(r2->final_l2s, r->final_l2s, 6 * sizeof(double)) == 0);
    ASSERT_EQ(r2->select_group, H2T_SELECT_FEATURE);
    char *js = h2t_result_json(r);
    ASSERT_CONTAINS(js, "\"final_l2s\": [10, 0.01, 1e-06, 10, 0.01, 1e-06]");
    free(js);
    free(blob);
    h2t_result_destroy(r2);
    h2t_result_destroy(r);

    /* keep 1.0 at final L2 1e-2 against the "all" head at L2 1e-2, no CV: the same problem */
    h2t_train_spec a;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 1;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 1e-3;
    sp.n_keeps = 1;
    sp.keeps[0] = 1.0;
    sp.n_final_l2s = 1;
    sp.final_l2s[0] = 1e-2;
    h2t_train_spec_default(&a, H2T_METHOD_ALL);
    a.folds = 1;
    a.n_lambdas = 1;
    a.lambdas[0] = 1e-2;
    h2t_result *rh = NULL, *ra = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &rh));
    ASSERT_OK(h2t_solver_run_data(&d, &a, NULL, NULL, NULL, &ra));
    ASSERT_EQ(rh->n_kept, t.D);
    ASSERT_EQ(ra->n_kept, t.D);
    ASSERT(rh->final_l2 == 1e-2);
    ASSERT_EQ(rh->test_correct, ra->test_correct);
    double dmax = 0;
    for (size_t q = 0; q < (size_t)t.D * t.K; q++) {
        double dq = fabs((double)rh->weights[q] - ra->weights[q]);
        dmax = dq > dmax ? dq : dmax;
    }
    ASSERT(dmax < 1e-3);
    h2t_result_destroy(rh);
    h2t_result_destroy(ra);
    synth_free(&t);
}

/* Whole-layer selection (select_group layer): the kept set is whole layers, the layer with
 * the informative features first, and a keep fraction rounds up to whole layers. */
TEST(solver_head2toe_select_layer)
{
    static const uint32_t inf[] = {110, 115, 121, 130, 140};
    synth t;
    synth_make(&t, 150, 60, 4, 50, 3, inf, 5, 1.0, 37);
    h2t_dataset d = synth_data(&t);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 1;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 2e-3;
    sp.n_keeps = 1;
    sp.keeps[0] = 5.0 / 200;
    sp.select_group = H2T_SELECT_LAYER;
    for (int opt = 0; opt < 2; opt++) {
        sp.optimizer = opt ? H2T_OPT_ADAM : H2T_OPT_FAST;
        sp.steps = 200;
        sp.keeps[0] = 5.0 / 200;
        h2t_result *r = NULL;
        ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
        ASSERT_EQ(r->n_kept, 50);
        ASSERT_EQ(r->layer_kept[0] + r->layer_kept[1] + r->layer_kept[3], 0);
        ASSERT_EQ(r->layer_kept[2], 50);
        ASSERT_EQ(r->select_group, H2T_SELECT_LAYER);
        h2t_result_destroy(r);
        /* 51 features: two whole layers */
        sp.keeps[0] = 51.0 / 200;
        ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
        ASSERT_EQ(r->n_kept, 100);
        ASSERT_EQ(r->layer_kept[2], 50);
        for (uint32_t l = 0; l < 4; l++)
            ASSERT(r->layer_kept[l] == 0 || r->layer_kept[l] == 50);
        h2t_result_destroy(r);
    }
    /* the same spec per feature keeps exactly 5 */
    sp.optimizer = H2T_OPT_FAST;
    sp.select_group = H2T_SELECT_FEATURE;
    sp.keeps[0] = 5.0 / 200;
    h2t_result *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
    ASSERT_EQ(r->n_kept, 5);
    h2t_result_destroy(r);
    /* bad values name the field */
    sp.select_group = 3;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "select_group 3");
    sp.select_group = H2T_SELECT_FEATURE;
    sp.n_final_l2s = 1;
    sp.final_l2s[0] = -1;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "final_l2s[0]");
    sp.n_final_l2s = 2;
    sp.final_l2s[0] = 1e-3;
    sp.final_l2s[1] = 1e-4;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r), H2T_EINVAL); /* folds 1 */
    ASSERT_CONTAINS(h2t_err_detail(), "1 x 1 grid");
    synth_free(&t);
}

/* cell_test: every grid cell's head refit on all training rows and tested, for measuring how
 * often CV picks the test-best cell; the choice and the returned head do not change. */
TEST(solver_cell_test_reports_every_cell)
{
    synth t;
    synth_make(&t, 120, 80, 4, 50, 3, INF6, 6, 0.5, 41);
    h2t_dataset d = synth_data(&t);
    static const double lams[] = {1, 1e-2, 1e-4};
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.folds = 3;
    sp.n_lambdas = 3;
    memcpy(sp.lambdas, lams, sizeof(lams));
    h2t_result *plain = NULL, *r = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &plain));
    ASSERT(plain->cell_test == NULL);
    sp.cell_test = 1;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &r));
    ASSERT(r->cell_test != NULL);
    ASSERT(r->lambda == plain->lambda);
    ASSERT_EQ(r->test_correct, plain->test_correct);
    /* each cell against a job trained at that lambda alone, without CV */
    for (uint32_t c = 0; c < 3; c++) {
        h2t_train_spec one;
        h2t_train_spec_default(&one, H2T_METHOD_ALL);
        one.folds = 1;
        one.n_lambdas = 1;
        one.lambdas[0] = r->lambdas[c];
        h2t_result *r1 = NULL;
        ASSERT_OK(h2t_solver_run_data(&d, &one, NULL, NULL, NULL, &r1));
        ASSERT_NEAR(r->cell_test[c], r1->test_acc, 1.5 / t.n_te);
        h2t_result_destroy(r1);
    }
    /* L2 1 on normalised rows is far too strong: its cell tests worst */
    ASSERT(r->lambdas[0] == 1);
    ASSERT(r->cell_test[0] < r->cell_test[1] || r->cell_test[0] < r->cell_test[2]);
    void *blob = NULL;
    size_t len = 0;
    h2t_result *r2 = NULL;
    ASSERT_OK(h2t_result_encode(r, &blob, &len));
    ASSERT_OK(h2t_result_decode(blob, len, &r2));
    ASSERT(r2->cell_test && memcmp(r2->cell_test, r->cell_test, 3 * sizeof(double)) == 0);
    char *js = h2t_result_json(r);
    ASSERT_CONTAINS(js, "\"cell_test\": [[");
    free(js);
    free(blob);
    h2t_result_destroy(r2);
    /* knn over its k grid */
    h2t_train_spec_default(&sp, H2T_METHOD_KNN);
    sp.folds = 3;
    sp.cell_test = 1;
    h2t_result *rk = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &rk));
    ASSERT(rk->cell_test != NULL);
    for (uint32_t c = 0; c < rk->n_lambdas; c++)
        if (rk->lambdas[c] == rk->knn_k)
            ASSERT(rk->cell_test[c] == rk->test_acc);
    h2t_result_destroy(rk);
    sp.cell_test = 2;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &rk), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "cell_test 2");
    h2t_result_destroy(plain);
    h2t_result_destroy(r);
    synth_free(&t);
}

/* VmData of this process in bytes (0 when unknown). */
static uint64_t vm_data(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "VmData: %llu kB", &kb) == 1)
                break;
        fclose(f);
    }
    return (uint64_t)kb * 1024;
}

/* The memory budget of a design matrix (no mem_limit given) is at most what RLIMIT_DATA still
 * allows: a process limited so (prlimit --data, a unit's LimitDATA=) spills the matrix instead
 * of failing to allocate it. In a child, so the limit stays there. */
TEST(solver_memory_budget_honours_rlimit_data)
{
    const uint64_t room = 256ull << 20;
    uint64_t free_now = h2t_solver__mem_available();
    if (free_now < 2 * room) {
        fprintf(stderr, "  less than 512 MiB available: skipped\n");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_DATA, &rl) != 0)
            _exit(2);
        rl.rlim_cur = vm_data() + room;
        if (setrlimit(RLIMIT_DATA, &rl) != 0)
            _exit(3);
        uint64_t a = h2t_solver__mem_available();
        _exit(a <= room && a >= room / 2 ? 0 : 4);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
}

/* The reference Adam in its plain form (each step gathers its batch, takes G = X_b^T R through
 * its transpose, adds the penalty's gradient in a pass of its own, then updates), the same
 * arithmetic per value as the solver's, which gathers the batches once and fuses the passes. */
static void adam_plain(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                       uint32_t penalty, double lambda, double lr, uint32_t steps, uint32_t batch,
                       uint64_t seed, float *W, float *b)
{
    size_t dk = (size_t)d * k;
    float *Xb = malloc((size_t)batch * d * sizeof(float)), *Z = malloc(batch * k * sizeof(float));
    float *G = malloc(dk * sizeof(float)), *GT = malloc(dk * sizeof(float));
    float *mW = calloc(dk, sizeof(float)), *vW = calloc(dk, sizeof(float));
    float *gb = malloc(k * sizeof(float)), *mb = calloc(k, sizeof(float));
    float *vb = calloc(k, sizeof(float));
    double *acc = malloc(k * sizeof(double));
    uint32_t *perm = malloc(n * sizeof(uint32_t)), *yb = malloc(batch * sizeof(uint32_t));
    uint64_t rs = seed;
    double a = sqrt(6.0 / ((double)d + k));
    for (size_t i = 0; i < dk; i++)
        W[i] = (float)((2.0 * h2t_rng_unif(&rs) - 1.0) * a);
    memset(b, 0, k * sizeof(float));
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(h2t_rng_next(&rs) % i), tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
    uint32_t nb = (n + batch - 1) / batch;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-7;
    double b1t = 1.0, b2t = 1.0;
    for (uint32_t t = 0; t < steps; t++) {
        uint32_t first = (t % nb) * batch, m = n - first < batch ? n - first : batch;
        for (uint32_t i = 0; i < m; i++) {
            memcpy(Xb + (size_t)i * d, X + (size_t)perm[first + i] * d, d * sizeof(float));
            yb[i] = y[perm[first + i]];
        }
        h2t_solver__logits(Xb, m, d, k, W, b, Z);
        for (uint32_t c = 0; c < k; c++)
            acc[c] = 0;
        for (uint32_t i = 0; i < m; i++) { /* R = (softmax - onehot) / batch, row by row */
            float *z = Z + (size_t)i * k;
            double mx = z[0], s = 0;
            for (uint32_t c = 1; c < k; c++)
                mx = z[c] > mx ? z[c] : mx;
            for (uint32_t c = 0; c < k; c++)
                s += exp((double)z[c] - mx);
            for (uint32_t c = 0; c < k; c++) {
                double p = exp((double)z[c] - mx) / s - (c == yb[i] ? 1.0 : 0.0);
                z[c] = (float)(1.0 / batch * p);
                acc[c] += z[c];
            }
        }
        for (uint32_t c = 0; c < k; c++)
            gb[c] = (float)acc[c];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)d, (int)m, 1.0f, Z,
                    (int)k, Xb, (int)d, 0.0f, GT, (int)d);
        for (uint32_t j = 0; j < d; j++)
            for (uint32_t c = 0; c < k; c++)
                G[(size_t)j * k + c] = GT[(size_t)c * d + j];
        if (penalty == H2T_PENALTY_L2)
            for (size_t i = 0; i < dk; i++)
                G[i] = (float)(G[i] + lambda * W[i]);
        else if (penalty == H2T_PENALTY_GROUP)
            for (uint32_t j = 0; j < d; j++) {
                double s = 0;
                for (uint32_t c = 0; c < k; c++)
                    s += (double)W[(size_t)j * k + c] * W[(size_t)j * k + c];
                double nw = sqrt(s);
                if (nw > 0)
                    for (uint32_t c = 0; c < k; c++)
                        G[(size_t)j * k + c] =
                            (float)(G[(size_t)j * k + c] + lambda * W[(size_t)j * k + c] / nw);
            }
        double lrt = lr * 0.5 * (1.0 + cos(M_PI * (double)t / steps));
        b1t *= b1;
        b2t *= b2;
        double at = lrt * sqrt(1.0 - b2t) / (1.0 - b1t);
        for (size_t i = 0; i < dk; i++) {
            mW[i] = (float)(b1 * mW[i] + (1 - b1) * G[i]);
            vW[i] = (float)(b2 * vW[i] + (1 - b2) * (double)G[i] * G[i]);
            W[i] = (float)(W[i] - at * mW[i] / (sqrt((double)vW[i]) + eps));
        }
        for (uint32_t c = 0; c < k; c++) {
            mb[c] = (float)(b1 * mb[c] + (1 - b1) * gb[c]);
            vb[c] = (float)(b2 * vb[c] + (1 - b2) * (double)gb[c] * gb[c]);
            b[c] = (float)(b[c] - at * mb[c] / (sqrt((double)vb[c]) + eps));
        }
    }
    free(Xb);
    free(Z);
    free(G);
    free(GT);
    free(mW);
    free(vW);
    free(gb);
    free(mb);
    free(vb);
    free(acc);
    free(perm);
    free(yb);
}

/* The solver's Adam (batches gathered once, passes fused) gives the plain form's weights bit for
 * bit: one batch, several batches gathered whole, and several gathered per step (the gather cap
 * below the rows), under each penalty. */
TEST(solver_adam_matches_plain_steps)
{
    const uint32_t d = 37, k = 4, steps = 23;
    const uint32_t ns[3] = {50, 301, 301}, batch[3] = {128, 64, 64};
    float *X = malloc(301 * d * sizeof(float));
    uint32_t *y = malloc(301 * sizeof(uint32_t));
    uint64_t rs = 5;
    for (uint32_t i = 0; i < 301; i++) {
        y[i] = (uint32_t)(h2t_rng_next(&rs) % k);
        for (uint32_t q = 0; q < d; q++)
            X[(size_t)i * d + q] = (float)(h2t_rng_unif(&rs) - 0.5 + (q % k == y[i] ? 0.7 : 0.0));
    }
    float *W = malloc(d * k * sizeof(float)), *Wr = malloc(d * k * sizeof(float));
    float b[4], br[4];
    size_t cap = h2t_solver__adam_gather_max;
    h2t_solver_opts o = {0};
    for (int v = 0; v < 3; v++)
        for (uint32_t pen = H2T_PENALTY_NONE; pen <= H2T_PENALTY_GROUP; pen++) {
            double lam = pen == H2T_PENALTY_GROUP ? 3e-3 : 1e-2;
            h2t_solver__adam_gather_max = v == 2 ? (size_t)ns[v] * d * sizeof(float) - 1 : cap;
            h2t_fit_info info;
            ASSERT_OK(h2t_solver__fit_adam(X, y, ns[v], d, k, pen, lam, 0.05, steps, batch[v],
                                           7 + v, &o, W, b, &info));
            adam_plain(X, y, ns[v], d, k, pen, lam, 0.05, steps, batch[v], 7 + v, Wr, br);
            ASSERT_EQ(memcmp(W, Wr, d * k * sizeof(float)), 0);
            ASSERT_EQ(memcmp(b, br, sizeof(b)), 0);
            ASSERT_EQ(info.iters, steps);
        }
    h2t_solver__adam_gather_max = cap;
    free(X);
    free(y);
    free(W);
    free(Wr);
}
