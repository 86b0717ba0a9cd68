/*
 * solver/run.c - a training job: spec checks, design-matrix assembly (store or memory),
 * per-layer normalisation, the methods (linear / all / head2toe) on both optimiser paths,
 * contiguous k-fold cross-validation over lambda x keep, the final head and its evaluation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/blas.h"
#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h"

/* ---- spec ---- */

void h2t_train_spec_default(h2t_train_spec *s, uint32_t method)
{
    memset(s, 0, sizeof(*s));
    s->method = method;
    s->optimizer = H2T_OPT_FAST;
    s->folds = 5;
    s->lr = 0.01;
    s->steps = 500;
    s->batch = 128;
    s->max_iter = 2000;
    s->gtol = 1e-5;
    s->final_l2 = 1e-6;
    s->path_len = 20;
    if (method == H2T_METHOD_HEAD2TOE) {
        s->penalty = H2T_PENALTY_GROUP;
        s->n_lambdas = 2;
        s->lambdas[0] = 1e-4;
        s->lambdas[1] = 1e-5;
        static const double keeps[] = {0.01, 0.02, 0.05, 0.1, 0.2};
        s->n_keeps = 5;
        memcpy(s->keeps, keeps, sizeof(keeps));
    } else {
        s->penalty = H2T_PENALTY_L2;
        static const double l2[] = {1e-2, 1e-3, 1e-4, 1e-5};
        s->n_lambdas = 4;
        memcpy(s->lambdas, l2, sizeof(l2));
        s->n_keeps = 1;
        s->keeps[0] = 1.0;
    }
}

int h2t_train_spec_check(const h2t_train_spec *s)
{
    if (!s)
        return h2t_err_set(H2T_EINVAL, "no train spec");
    if (s->method > H2T_METHOD_HEAD2TOE)
        return h2t_err_set(H2T_EINVAL, "unknown method %u", s->method);
    if (s->penalty > H2T_PENALTY_GROUP)
        return h2t_err_set(H2T_EINVAL, "unknown penalty %u", s->penalty);
    if (s->optimizer > H2T_OPT_ADAM)
        return h2t_err_set(H2T_EINVAL, "unknown optimizer %u", s->optimizer);
    if (s->n_lambdas < 1 || s->n_lambdas > H2T_SPEC_MAX_GRID)
        return h2t_err_set(H2T_EINVAL, "lambda grid has %u values (1..%d)", s->n_lambdas,
                           H2T_SPEC_MAX_GRID);
    for (uint32_t i = 0; i < s->n_lambdas; i++)
        if (!(s->lambdas[i] >= 0) || !isfinite(s->lambdas[i]))
            return h2t_err_set(H2T_EINVAL, "lambda %g (lambdas[%u]) must be finite and >= 0",
                               s->lambdas[i], i);
    if (s->method == H2T_METHOD_HEAD2TOE) {
        if (s->n_keeps < 1 || s->n_keeps > H2T_SPEC_MAX_GRID)
            return h2t_err_set(H2T_EINVAL, "keep grid has %u values (1..%d)", s->n_keeps,
                               H2T_SPEC_MAX_GRID);
        for (uint32_t i = 0; i < s->n_keeps; i++)
            if (!(s->keeps[i] > 0 && s->keeps[i] <= 1))
                return h2t_err_set(H2T_EINVAL, "keep fraction %g (keeps[%u]) outside (0, 1]",
                                   s->keeps[i], i);
    }
    if (s->folds < 1 || s->folds > 100)
        return h2t_err_set(H2T_EINVAL, "folds %u (1..100)", s->folds);
    uint32_t cells = s->n_lambdas * (s->method == H2T_METHOD_HEAD2TOE ? s->n_keeps : 1);
    if (s->folds == 1 && cells > 1)
        return h2t_err_set(H2T_EINVAL, "folds 1 (no cross-validation) needs a 1 x 1 grid, got %u",
                           cells);
    if (s->optimizer == H2T_OPT_ADAM) {
        if (!s->steps || !s->batch)
            return h2t_err_set(H2T_EINVAL, "Adam needs steps > 0 and batch > 0");
    } else {
        if (!s->max_iter)
            return h2t_err_set(H2T_EINVAL, "max_iter 0");
        if (!(s->gtol > 0))
            return h2t_err_set(H2T_EINVAL, "gtol %g must be > 0", s->gtol);
    }
    if (!(s->final_l2 >= 0) || !isfinite(s->final_l2))
        return h2t_err_set(H2T_EINVAL, "final_l2 %g must be finite and >= 0", s->final_l2);
    if (s->n_layers && !s->layers)
        return h2t_err_set(H2T_EINVAL, "n_layers %u but no layer list", s->n_layers);
    if (!(s->lr > 0) || !isfinite(s->lr))
        return h2t_err_set(H2T_EINVAL, "learning rate %g must be > 0", s->lr);
    if (s->threads > 256)
        return h2t_err_set(H2T_EINVAL, "threads %u: at most 256", s->threads);
    return 0;
}

int h2t_train_spec_resolve(const h2t_train_spec *req, h2t_train_spec *out)
{
    if (req->method > H2T_METHOD_HEAD2TOE)
        return h2t_err_set(H2T_EINVAL, "method %u: want linear, all or head2toe", req->method);
    h2t_train_spec_default(out, req->method);
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        const char *src = (const char *)req + f->off;
        char *dst = (char *)out + f->off;
        switch (f->type) {
        case H2T_SPEC_U32:
        case H2T_SPEC_U64:
        case H2T_SPEC_F64: { /* set when any bit is (a NaN or -0.0 reaches the check) */
            static const char zero[8];
            if (memcmp(src, zero, f->size))
                memcpy(dst, src, f->size);
            break;
        }
        case H2T_SPEC_GRID:
        case H2T_SPEC_LIST: {
            uint32_t n;
            memcpy(&n, (const char *)req + f->count_off, sizeof(n));
            if (n) {
                memcpy((char *)out + f->count_off, &n, sizeof(n));
                memcpy(dst, src, f->size); /* the grid, or the list's pointer */
            }
            break;
        }
        default: /* H2T_SPEC_COUNT: with its array */
            break;
        }
    }
    return h2t_train_spec_check(out);
}

/* ---- the job ---- */

typedef struct job {
    const h2t_train_spec *spec;
    h2t_solver_opts o;
    h2t_solver_progress_fn progress;
    void *ud;
    uint32_t n_tr, n_te, K, n_layers;
    uint32_t D;
    float *X;       /* (n_tr + n_te) x D, normalised; h2t_aalloc */
    uint32_t *y;    /* n_tr + n_te */
    uint32_t *ldim; /* n_layers */
    uint32_t *loff; /* n_layers + 1 */
    uint32_t *lid;  /* n_layers */
    char **lname;   /* n_layers */
    uint32_t rot;   /* current rotation of the train rows */
    double *gram;   /* NULL or n_tr x n_tr Gram of the train rows in rotation 0 (kernel form) */
    /* sorted grid */
    uint32_t nl, nk;
    double lambdas[H2T_SPEC_MAX_GRID], keeps[H2T_SPEC_MAX_GRID];
    double pbase, pspan; /* progress window of the current stage */
    char stage[64];
} job;

/* A head over a column subset. */
typedef struct head {
    uint32_t k;     /* columns */
    uint32_t *cols; /* k, ascending, into 0..D-1 */
    float *W;       /* k x K */
    float *b;       /* K */
    h2t_fit_info fit, sel;
    uint32_t sel_nonzero;
} head;

static void head_free(head *h)
{
    free(h->cols);
    free(h->W);
    free(h->b);
    memset(h, 0, sizeof(*h));
}

static void report(job *j, double frac)
{
    if (j->progress)
        j->progress(j->ud, j->pbase + j->pspan * (frac < 0 ? 0 : frac > 1 ? 1 : frac), j->stage);
}

static int check_cancel(job *j)
{
    if (h2t_solver__cancelled(&j->o))
        return h2t_err_set(H2T_ECANCELED, "job cancelled (%s)", j->stage);
    return 0;
}

/* L2-normalise each layer's block of each row (double accumulation; zero stays zero). */
static void normalise_rows(job *j, float *X, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t l = 0; l < j->n_layers; l++) {
            float *x = X + (size_t)i * j->D + j->loff[l];
            double s = 0;
            for (uint32_t c = 0; c < j->ldim[l]; c++)
                s += (double)x[c] * x[c];
            if (s > 0) {
                double inv = 1.0 / sqrt(s);
                for (uint32_t c = 0; c < j->ldim[l]; c++)
                    x[c] = (float)(x[c] * inv);
            }
        }
}

static uint32_t layer_of(const job *j, uint32_t col)
{
    uint32_t lo = 0, hi = j->n_layers;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (j->loff[mid] <= col)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* out (n x k) = columns cols of X, re-normalised per layer over the kept columns. */
static void gather_renorm(const job *j, const float *X, uint32_t n, const uint32_t *cols,
                          uint32_t k, float *out)
{
    for (uint32_t i = 0; i < n; i++) {
        const float *x = X + (size_t)i * j->D;
        float *o = out + (size_t)i * k;
        for (uint32_t c = 0; c < k; c++)
            o[c] = x[cols[c]];
        uint32_t c0 = 0;
        while (c0 < k) {
            uint32_t l = layer_of(j, cols[c0]), c1 = c0;
            while (c1 < k && cols[c1] < j->loff[l + 1])
                c1++;
            double s = 0;
            for (uint32_t c = c0; c < c1; c++)
                s += (double)o[c] * o[c];
            if (s > 0) {
                double inv = 1.0 / sqrt(s);
                for (uint32_t c = c0; c < c1; c++)
                    o[c] = (float)(o[c] * inv);
            }
            c0 = c1;
        }
    }
}

/* Rotate rows [0, n) of X (ld D) and y left by r, in place (three reversals). */
static void reverse_rows(float *X, uint32_t *y, uint32_t D, uint32_t a, uint32_t b, float *tmp)
{
    while (a + 1 < b) {
        b--;
        memcpy(tmp, X + (size_t)a * D, D * sizeof(float));
        memcpy(X + (size_t)a * D, X + (size_t)b * D, D * sizeof(float));
        memcpy(X + (size_t)b * D, tmp, D * sizeof(float));
        uint32_t t = y[a];
        y[a] = y[b];
        y[b] = t;
        a++;
    }
}

static int rotate_to(job *j, uint32_t target)
{
    uint32_t n = j->n_tr, r = (target + n - j->rot) % n;
    if (!r)
        return 0;
    float *tmp = malloc((size_t)j->D * sizeof(float));
    if (!tmp)
        return h2t_err_set(H2T_ENOMEM, "row buffer");
    reverse_rows(j->X, j->y, j->D, 0, r, tmp);
    reverse_rows(j->X, j->y, j->D, r, n, tmp);
    reverse_rows(j->X, j->y, j->D, 0, n, tmp);
    free(tmp);
    j->rot = target;
    return 0;
}

/* Accuracy of a head on rows X (n x D). */
static int head_correct(const job *j, const head *h, const float *X, const uint32_t *y, uint32_t n,
                        uint32_t *correct)
{
    if (!n) {
        *correct = 0;
        return 0;
    }
    float *Xs = NULL;
    const float *Xu = X;
    if (h->k != j->D) {
        Xs = malloc((size_t)n * h->k * sizeof(float) + 1);
        if (!Xs)
            return h2t_err_set(H2T_ENOMEM, "eval buffer");
        gather_renorm(j, X, n, h->cols, h->k, Xs);
        Xu = Xs;
    }
    float *Z = malloc((size_t)n * j->K * sizeof(float));
    if (!Z) {
        free(Xs);
        return h2t_err_set(H2T_ENOMEM, "logits");
    }
    h2t_solver__logits(Xu, n, h->k, j->K, h->W, h->b, Z);
    *correct = h2t_solver__argmax(Z, n, j->K, y, NULL);
    free(Z);
    free(Xs);
    return 0;
}

/* intercept-only bias: log class frequencies (classes absent: log(0.5 / n)) */
static void intercept(const uint32_t *y, uint32_t n, uint32_t K, float *b)
{
    for (uint32_t c = 0; c < K; c++) {
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < n; i++)
            cnt += y[i] == c;
        b[c] = (float)log((cnt ? cnt : 0.5) / (double)n);
    }
}

typedef struct rank_key {
    uint32_t entry;
    double norm, gnorm;
    uint32_t j;
} rank_key;

static int rank_cmp(const void *pa, const void *pb)
{
    const rank_key *a = pa, *b = pb;
    if (a->entry != b->entry)
        return a->entry < b->entry ? -1 : 1;
    if (a->norm != b->norm)
        return a->norm > b->norm ? -1 : 1;
    if (a->gnorm != b->gnorm)
        return a->gnorm > b->gnorm ? -1 : 1;
    return a->j < b->j ? -1 : a->j > b->j;
}

static int u32_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return a < b ? -1 : a > b;
}

static int dbl_desc(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a > b ? -1 : a < b;
}

static int dbl_asc(const void *pa, const void *pb)
{
    return -dbl_desc(pa, pb);
}

static uint32_t keep_count(uint32_t D, double keep)
{
    uint32_t k = (uint32_t)floor((double)D * keep);
    return k ? k : 1;
}

/* Fit the final (unregularised) head on the columns `order[0..k)` (sorted inside). */
static int fit_on_subset(job *j, const float *X, const uint32_t *y, uint32_t n,
                         const uint32_t *order, uint32_t k, head *h)
{
    const h2t_train_spec *s = j->spec;
    int rc = 0;
    h->k = k;
    h->cols = malloc((size_t)k * sizeof(uint32_t));
    h->W = calloc((size_t)k * j->K, sizeof(float));
    h->b = calloc(j->K, sizeof(float));
    float *Xs = malloc((size_t)n * k * sizeof(float) + 1);
    if (!h->cols || !h->W || !h->b || !Xs) {
        rc = h2t_err_set(H2T_ENOMEM, "head on %u features", k);
        goto out;
    }
    memcpy(h->cols, order, (size_t)k * sizeof(uint32_t));
    qsort(h->cols, k, sizeof(uint32_t), u32_cmp);
    gather_renorm(j, X, n, h->cols, k, Xs);
    if (s->optimizer == H2T_OPT_ADAM)
        rc = h2t_solver__fit_adam(Xs, y, n, k, j->K, H2T_PENALTY_NONE, 0, s->lr, s->steps, s->batch,
                                  s->seed, &j->o, h->W, h->b, &h->fit);
    else if (2ull * n <= k) { /* kernel form: the same iterates over n x K coefficients */
        float *A = calloc((size_t)n * j->K + 1, sizeof(float));
        if (!A) {
            rc = h2t_err_set(H2T_ENOMEM, "coefficients %u x %u", n, j->K);
            goto out;
        }
        rc = h2t_solver__fit_smooth_kernel(Xs, NULL, y, n, k, j->K, s->final_l2, &j->o, A, h->W,
                                           h->b, &h->fit);
        free(A);
    } else
        rc = h2t_solver__fit_smooth(Xs, y, n, k, j->K, s->final_l2, &j->o, h->W, h->b, &h->fit);
out:
    free(Xs);
    return rc;
}

/* Every cell of the (sorted) grid on one split. Xva may be NULL (final fit: nl = nk = 1,
 * the head goes to *final). acc: nl x nk. */
static int run_cells(job *j, const float *X, const uint32_t *y, uint32_t n, const float *Xva,
                     const uint32_t *yva, uint32_t nva, const double *lam, uint32_t nl,
                     const double *kp, uint32_t nk, double *acc, head *final)
{
    const h2t_train_spec *s = j->spec;
    const uint32_t D = j->D, K = j->K;
    size_t DK = (size_t)D * K;
    int rc = 0;
    float *W = calloc(DK + 1, sizeof(float)), *b = calloc(K, sizeof(float));
    float *G = NULL, *A = NULL;
    double *Gf = NULL;
    uint32_t *entry = NULL, *order = NULL;
    rank_key *keys = NULL;
    double *path = NULL;
    head h = {0};
    if (!W || !b) {
        rc = h2t_err_set(H2T_ENOMEM, "weights %u x %u", D, K);
        goto out;
    }
    int selecting = s->method == H2T_METHOD_HEAD2TOE;
    uint32_t pen = selecting ? H2T_PENALTY_GROUP : s->penalty;
    int fast = s->optimizer == H2T_OPT_FAST;
    uint32_t npath = 0, cells = nl * nk, done = 0;
    if (fast && pen == H2T_PENALTY_GROUP) {
        /* the lambda path: lambda_max at W = 0 with the intercept-only bias, geometric points
         * down to the smallest grid lambda, the grid lambdas themselves */
        intercept(y, n, K, b);
        double *gn = malloc((size_t)D * sizeof(double) + 1);
        if (!gn) {
            rc = h2t_err_set(H2T_ENOMEM, "gradient norms");
            goto out;
        }
        rc = h2t_solver__grad_rownorm(X, y, n, D, K, W, b, gn);
        double lmax = 0;
        for (uint32_t q = 0; q < D; q++)
            lmax = gn[q] > lmax ? gn[q] : lmax;
        free(gn);
        if (rc < 0)
            goto out;
        uint32_t P = s->path_len ? s->path_len : 20;
        path = malloc((P + nl + 1) * sizeof(double));
        if (!path) {
            rc = h2t_err_set(H2T_ENOMEM, "lambda path");
            goto out;
        }
        double lmin = lam[nl - 1];
        if (lmin > 0 && lmin < lmax)
            for (uint32_t q = 1; q < P; q++)
                path[npath++] = lmax * pow(lmin / lmax, (double)q / P);
        for (uint32_t q = 0; q < nl; q++)
            path[npath++] = lam[q];
        qsort(path, npath, sizeof(double), dbl_desc);
        uint32_t w = 0;
        for (uint32_t q = 0; q < npath; q++)
            if (!w || path[q] < path[w - 1] * (1 - 1e-9))
                path[w++] = path[q];
        npath = w;
        G = malloc(DK * sizeof(float) + 1);
        entry = malloc((size_t)D * sizeof(uint32_t) + 1);
        if (!G || !entry) {
            rc = h2t_err_set(H2T_ENOMEM, "path buffers");
            goto out;
        }
        for (uint32_t q = 0; q < D; q++)
            entry[q] = UINT32_MAX;
    }
    if (selecting) {
        order = malloc((size_t)D * sizeof(uint32_t) + 1);
        keys = malloc((size_t)D * sizeof(rank_key) + 1);
        if (!order || !keys) {
            rc = h2t_err_set(H2T_ENOMEM, "ranking buffers");
            goto out;
        }
    }
    uint32_t units = cells + npath, unit = 0;
    double Lip = 0;
    uint32_t pi = 0; /* next path point */
    for (uint32_t li = 0; li < nl; li++) {
        h2t_fit_info sel = {0};
        if ((rc = check_cancel(j)) < 0)
            goto out;
        /* 1. the penalised fit at lam[li] */
        if (fast && pen == H2T_PENALTY_GROUP) {
            while (pi < npath && path[pi] >= lam[li] * (1 - 1e-9)) {
                rc = h2t_solver__fit_group_ws(X, y, n, D, K, path[pi], pi ? path[pi - 1] : 0, &j->o,
                                              W, b, &Lip, G, &sel);
                if (rc < 0)
                    goto out;
                for (uint32_t q = 0; q < D; q++)
                    if (entry[q] == UINT32_MAX) {
                        const float *wq = W + (size_t)q * K;
                        for (uint32_t c = 0; c < K; c++)
                            if (wq[c] != 0) {
                                entry[q] = pi;
                                break;
                            }
                    }
                pi++;
                report(j, (double)++unit / units);
            }
        } else if (fast && j->gram && n < D) {
            /* kernel form on this split's Gram: a sub-block of the train Gram (row i here is
             * train row (i + rot) mod n_tr); A carries the warm start along the lambdas */
            double ridge = pen == H2T_PENALTY_L2 ? lam[li] : s->final_l2;
            if (!A) {
                A = calloc((size_t)n * K + 1, sizeof(float));
                Gf = malloc((size_t)n * n * sizeof(double) + 1);
                if (!A || !Gf) {
                    rc = h2t_err_set(H2T_ENOMEM, "kernel buffers (%u samples)", n);
                    goto out;
                }
                for (uint32_t r = 0; r < n; r++) {
                    const double *src = j->gram + (size_t)((r + j->rot) % j->n_tr) * j->n_tr;
                    for (uint32_t c = 0; c < n; c++)
                        Gf[(size_t)r * n + c] = src[(c + j->rot) % j->n_tr];
                }
            }
            rc = h2t_solver__fit_smooth_kernel(X, Gf, y, n, D, K, ridge, &j->o, A, W, b, &sel);
        } else if (fast) {
            double ridge = pen == H2T_PENALTY_L2 ? lam[li] : s->final_l2;
            rc = h2t_solver__fit_smooth(X, y, n, D, K, ridge, &j->o, W, b, &sel);
        } else {
            rc = h2t_solver__fit_adam(X, y, n, D, K, pen, pen == H2T_PENALTY_NONE ? 0 : lam[li],
                                      s->lr, s->steps, s->batch, s->seed, &j->o, W, b, &sel);
        }
        if (rc < 0)
            goto out;
        uint32_t nz = 0;
        for (uint32_t q = 0; q < D; q++)
            for (uint32_t c = 0; c < K; c++)
                if (W[(size_t)q * K + c] != 0) {
                    nz++;
                    break;
                }
        /* 2. the heads of this lambda's cells */
        if (selecting) {
            for (uint32_t q = 0; q < D; q++) {
                const float *wq = W + (size_t)q * K;
                double s2 = 0, g2 = 0;
                for (uint32_t c = 0; c < K; c++) {
                    s2 += (double)wq[c] * wq[c];
                    if (G)
                        g2 += (double)G[(size_t)q * K + c] * G[(size_t)q * K + c];
                }
                keys[q].entry = fast ? entry[q] : 0;
                keys[q].norm = s2;
                keys[q].gnorm = g2;
                keys[q].j = q;
            }
            qsort(keys, D, sizeof(rank_key), rank_cmp);
            for (uint32_t q = 0; q < D; q++)
                order[q] = keys[q].j;
        }
        for (uint32_t ki = 0; ki < nk; ki++) {
            if ((rc = check_cancel(j)) < 0)
                goto out;
            if (selecting) {
                rc = fit_on_subset(j, X, y, n, order, keep_count(D, kp[ki]), &h);
                if (rc < 0)
                    goto out;
            } else {
                h.k = D;
                h.cols = malloc((size_t)D * sizeof(uint32_t) + 1);
                h.W = malloc(DK * sizeof(float) + 1);
                h.b = malloc(K * sizeof(float));
                if (!h.cols || !h.W || !h.b) {
                    rc = h2t_err_set(H2T_ENOMEM, "head %u x %u", D, K);
                    goto out;
                }
                for (uint32_t q = 0; q < D; q++)
                    h.cols[q] = q;
                memcpy(h.W, W, DK * sizeof(float));
                memcpy(h.b, b, K * sizeof(float));
                h.fit = sel;
            }
            h.sel = sel;
            h.sel_nonzero = nz;
            if (Xva) {
                uint32_t corr = 0;
                if ((rc = head_correct(j, &h, Xva, yva, nva, &corr)) < 0)
                    goto out;
                acc[li * nk + ki] = (double)corr / nva;
            }
            if (final) {
                *final = h;
                memset(&h, 0, sizeof(h));
            } else {
                head_free(&h);
            }
            done++;
            report(j, (double)++unit / units);
        }
    }
    (void)done;
out:
    head_free(&h);
    free(W);
    free(b);
    free(G);
    free(A);
    free(Gf);
    free(entry);
    free(order);
    free(keys);
    free(path);
    return rc;
}

static int fill_result(job *j, head *h, h2t_result *r)
{
    const uint32_t K = j->K;
    r->method = j->spec->method;
    r->penalty = j->spec->method == H2T_METHOD_HEAD2TOE ? H2T_PENALTY_GROUP : j->spec->penalty;
    r->optimizer = j->spec->optimizer;
    r->ranking = j->spec->method != H2T_METHOD_HEAD2TOE ? H2T_RANK_NONE
                 : j->spec->optimizer == H2T_OPT_FAST   ? H2T_RANK_PATH_ENTRY
                                                        : H2T_RANK_SCORE;
    r->seed = j->spec->seed;
    r->n_classes = K;
    r->n_train = j->n_tr;
    r->n_test = j->n_te;
    r->total_dim = j->D;
    r->n_kept = h->k;
    r->n_layers = j->n_layers;
    r->layer_ids = malloc(j->n_layers * sizeof(uint32_t));
    r->layer_dims = malloc(j->n_layers * sizeof(uint32_t));
    r->layer_kept = calloc(j->n_layers, sizeof(uint32_t));
    r->layer_names = calloc(j->n_layers, sizeof(char *));
    r->features = malloc((size_t)h->k * sizeof(h2t_feature_ref) + 1);
    r->weights = malloc((size_t)h->k * K * sizeof(float) + 1);
    r->bias = malloc(K * sizeof(float));
    if (!r->layer_ids || !r->layer_dims || !r->layer_kept || !r->layer_names || !r->features ||
        !r->weights || !r->bias)
        return h2t_err_set(H2T_ENOMEM, "result");
    for (uint32_t l = 0; l < j->n_layers; l++) {
        r->layer_ids[l] = j->lid[l];
        r->layer_dims[l] = j->ldim[l];
        r->layer_names[l] = strdup(j->lname[l] ? j->lname[l] : "");
        if (!r->layer_names[l])
            return h2t_err_set(H2T_ENOMEM, "result");
    }
    for (uint32_t c = 0; c < h->k; c++) {
        uint32_t l = layer_of(j, h->cols[c]);
        r->features[c].layer = j->lid[l];
        r->features[c].index = h->cols[c] - j->loff[l];
        r->layer_kept[l]++;
        for (uint32_t q = 0; q < K; q++)
            r->weights[(size_t)q * h->k + c] = h->W[(size_t)c * K + q];
    }
    memcpy(r->bias, h->b, K * sizeof(float));
    r->final_fit = h->fit;
    r->select_fit = h->sel;
    r->select_nonzero = h->sel_nonzero;
    return 0;
}

/* The job on an assembled, normalised matrix. */
static int solve(job *j, h2t_result **out)
{
    const h2t_train_spec *s = j->spec;
    double t0 = h2t_now_s();
    int rc = 0;
    h2t_result *r = calloc(1, sizeof(*r));
    double *acc = NULL, *fa = NULL;
    head fin = {0};
    if (!r)
        return h2t_err_set(H2T_ENOMEM, "result");
    /* the grid, sorted: lambdas descending (the path order), keeps ascending */
    int selecting = s->method == H2T_METHOD_HEAD2TOE;
    int nopen = !selecting && s->penalty == H2T_PENALTY_NONE;
    j->nl = nopen ? 1 : s->n_lambdas;
    j->nk = selecting ? s->n_keeps : 1;
    for (uint32_t i = 0; i < j->nl; i++)
        j->lambdas[i] = nopen ? 0 : s->lambdas[i];
    for (uint32_t i = 0; i < j->nk; i++)
        j->keeps[i] = selecting ? s->keeps[i] : 1.0;
    qsort(j->lambdas, j->nl, sizeof(double), dbl_desc);
    qsort(j->keeps, j->nk, sizeof(double), dbl_asc);
    uint32_t F = s->folds, cells = j->nl * j->nk;
    if (F > 1 && j->n_tr / F < 1) {
        rc = h2t_err_set(H2T_EINVAL, "%u training samples cannot make %u folds", j->n_tr, F);
        goto out;
    }
    acc = calloc((size_t)F * cells, sizeof(double));
    fa = calloc(F, sizeof(double));
    r->cv_acc = calloc(cells, sizeof(double));
    r->lambdas = malloc(j->nl * sizeof(double));
    r->keeps = malloc(j->nk * sizeof(double));
    if (!acc || !fa || !r->cv_acc || !r->lambdas || !r->keeps) {
        rc = h2t_err_set(H2T_ENOMEM, "grid");
        goto out;
    }
    memcpy(r->lambdas, j->lambdas, j->nl * sizeof(double));
    memcpy(r->keeps, j->keeps, j->nk * sizeof(double));
    r->n_lambdas = j->nl;
    r->n_keeps = j->nk;
    r->folds = F;
    uint32_t best = 0;
    if (!selecting && s->optimizer == H2T_OPT_FAST && 2ull * j->n_tr <= j->D && j->rot == 0) {
        /* one Gram for every fold and lambda of the smooth methods (kernel form); n <= D/2
         * keeps it (n^2 doubles) no larger than the design matrix */
        j->gram = malloc((size_t)j->n_tr * j->n_tr * sizeof(double));
        if (!j->gram) {
            rc = h2t_err_set(H2T_ENOMEM, "Gram matrix %u x %u", j->n_tr, j->n_tr);
            goto out;
        }
        if ((rc = h2t_solver__gram(j->X, j->n_tr, j->D, j->gram)) < 0)
            goto out;
    }
    if (F > 1) {
        for (uint32_t f = 0; f < F; f++) {
            uint32_t a = (uint32_t)((uint64_t)f * j->n_tr / F);
            uint32_t e = (uint32_t)((uint64_t)(f + 1) * j->n_tr / F);
            snprintf(j->stage, sizeof(j->stage), "cv fold %u/%u", f + 1, F);
            j->pbase = 0.9 * f / F;
            j->pspan = 0.9 / F;
            report(j, 0);
            /* rotate so that fold f's validation block [a, e) is last */
            if ((rc = rotate_to(j, e % j->n_tr)) < 0)
                goto out;
            uint32_t ntr = j->n_tr - (e - a);
            if (ntr == 0) {
                rc = h2t_err_set(H2T_EINVAL, "fold %u leaves no training samples", f + 1);
                goto out;
            }
            rc = run_cells(j, j->X, j->y, ntr, j->X + (size_t)ntr * j->D, j->y + ntr, e - a,
                           j->lambdas, j->nl, j->keeps, j->nk, acc + (size_t)f * cells, NULL);
            if (rc < 0)
                goto out;
        }
        if ((rc = rotate_to(j, 0)) < 0)
            goto out;
        for (uint32_t c = 0; c < cells; c++) {
            double m = 0;
            for (uint32_t f = 0; f < F; f++)
                m += acc[(size_t)f * cells + c];
            r->cv_acc[c] = m / F;
            if (r->cv_acc[c] > r->cv_acc[best])
                best = c;
        }
        for (uint32_t f = 0; f < F; f++)
            fa[f] = acc[(size_t)f * cells + best];
        r->val_acc = r->cv_acc[best];
    }
    r->fold_acc = fa;
    fa = NULL;
    double t1 = h2t_now_s();
    r->lambda = j->lambdas[best / j->nk];
    r->keep = j->keeps[best % j->nk];
    snprintf(j->stage, sizeof(j->stage), "final");
    j->pbase = F > 1 ? 0.9 : 0;
    j->pspan = 1 - j->pbase;
    report(j, 0);
    rc = run_cells(j, j->X, j->y, j->n_tr, NULL, NULL, 0, &r->lambda, 1, &r->keep, 1, NULL, &fin);
    if (rc < 0)
        goto out;
    uint32_t corr = 0;
    if ((rc = head_correct(j, &fin, j->X, j->y, j->n_tr, &corr)) < 0)
        goto out;
    r->train_acc = (double)corr / j->n_tr;
    if ((rc = head_correct(j, &fin, j->X + (size_t)j->n_tr * j->D, j->y + j->n_tr, j->n_te,
                           &corr)) < 0)
        goto out;
    r->test_correct = corr;
    r->test_acc = j->n_te ? (double)corr / j->n_te : 0;
    if ((rc = fill_result(j, &fin, r)) < 0)
        goto out;
    double t2 = h2t_now_s();
    r->t_cv = t1 - t0;
    r->t_final = t2 - t1;
    r->t_total = t2 - t0;
    report(j, 1);
    *out = r;
    r = NULL;
out:
    head_free(&fin);
    free(acc);
    free(fa);
    h2t_result_destroy(r);
    return rc;
}

/* ---- memory ---- */

uint64_t h2t_solver__mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
                break;
        fclose(f);
    }
    if (kb)
        return (uint64_t)kb * 1024;
    long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : UINT64_MAX;
}

static int check_memory(const h2t_train_spec *s, uint64_t rows, uint64_t D)
{
    uint64_t need = rows * D * sizeof(float);
    uint64_t avail = s->mem_limit ? s->mem_limit : h2t_solver__mem_available();
    if (D > UINT32_MAX || need / sizeof(float) / (rows ? rows : 1) != D || need > avail)
        return h2t_err_set(H2T_ETOOBIG,
                           "design matrix %llu samples x %llu features needs %llu bytes, "
                           "%llu available",
                           (unsigned long long)rows, (unsigned long long)D,
                           (unsigned long long)need, (unsigned long long)avail);
    return 0;
}

static void job_free(job *j)
{
    h2t_afree(j->X);
    free(j->gram);
    free(j->y);
    free(j->ldim);
    free(j->loff);
    free(j->lid);
    if (j->lname)
        for (uint32_t l = 0; l < j->n_layers; l++)
            free(j->lname[l]);
    free(j->lname);
}

static int job_init(job *j, const h2t_train_spec *s, h2t_solver_progress_fn progress, void *ud,
                    const atomic_int *cancel)
{
    memset(j, 0, sizeof(*j));
    j->spec = s;
    j->progress = progress;
    j->ud = ud;
    j->o.max_iter = s->max_iter ? s->max_iter : 2000;
    j->o.gtol = s->gtol > 0 ? s->gtol : 1e-5;
    j->o.kkt_rel = 1e-2;
    j->o.cancel = cancel;
    if (s->threads > 0)
        h2t_blas_threads((int)s->threads);
    return 0;
}

/* Layers, offsets, names, and the label checks shared by both front ends. */
static int job_layers(job *j, uint32_t n_avail, const uint32_t *avail_dims,
                      const uint32_t *avail_ids, const char *const *avail_names)
{
    const h2t_train_spec *s = j->spec;
    uint32_t nl = s->n_layers ? s->n_layers : s->method == H2T_METHOD_LINEAR ? 1 : n_avail;
    if (!n_avail)
        return h2t_err_set(H2T_EINVAL, "no layers");
    j->n_layers = nl;
    j->ldim = malloc(nl * sizeof(uint32_t));
    j->loff = malloc((nl + 1) * sizeof(uint32_t));
    j->lid = malloc(nl * sizeof(uint32_t));
    j->lname = calloc(nl, sizeof(char *));
    if (!j->ldim || !j->loff || !j->lid || !j->lname)
        return h2t_err_set(H2T_ENOMEM, "layer table");
    uint64_t off = 0;
    for (uint32_t l = 0; l < nl; l++) {
        uint32_t src = s->n_layers                      ? s->layers[l]
                       : s->method == H2T_METHOD_LINEAR ? n_avail - 1
                                                        : l;
        if (src >= n_avail)
            return h2t_err_set(H2T_EINVAL, "layer index %u out of range (%u layers)", src, n_avail);
        for (uint32_t q = 0; q < l; q++)
            if (j->lid[q] == (avail_ids ? avail_ids[src] : src))
                return h2t_err_set(H2T_EINVAL, "layer %u listed twice", src);
        j->ldim[l] = avail_dims[src];
        j->lid[l] = avail_ids ? avail_ids[src] : src;
        j->lname[l] = strdup(avail_names && avail_names[src] ? avail_names[src] : "");
        if (!j->lname[l])
            return h2t_err_set(H2T_ENOMEM, "layer table");
        j->loff[l] = (uint32_t)off;
        off += avail_dims[src];
        if (!avail_dims[src] || off > UINT32_MAX)
            return h2t_err_set(H2T_EINVAL, "layer %u: dimension %u", src, avail_dims[src]);
    }
    j->loff[nl] = (uint32_t)off;
    j->D = (uint32_t)off;
    return 0;
}

static int check_labels(const uint32_t *y, uint32_t n, uint32_t K, const char *split)
{
    uint32_t first = n ? y[0] : 0;
    int two = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (y[i] >= K)
            return h2t_err_set(H2T_EINVAL, "%s label %u of sample %u >= %u classes", split, y[i], i,
                               K);
        two |= y[i] != first;
    }
    if (!strcmp(split, "train") && !two)
        return h2t_err_set(H2T_EINVAL, "the train split has only one class (%u)", first);
    return 0;
}

static int check_finite(const job *j, const float *x, uint32_t l, uint32_t sample,
                        const char *split)
{
    for (uint32_t c = 0; c < j->ldim[l]; c++)
        if (!isfinite(x[c]))
            return h2t_err_set(H2T_ENUMERIC, "%s in layer %u (%s) feature %u of %s sample %u",
                               isnan(x[c]) ? "NaN" : "infinity", j->lid[l], j->lname[l], c, split,
                               sample);
    return 0;
}

/* The job on an in-memory dataset. normalised = 0: every value is checked finite and each
 * layer block L2-normalised per row, as docs/head2toe.md says; normalised = 1 (the design cache's
 * entries, checked and normalised once when loaded): the rows are copied as they are.
 * normalise_rows works per row and layer block, so a block copied from a wider matrix keeps
 * its bits and both ways give the same result. */
static int run_dataset(const h2t_dataset *d, const h2t_train_spec *spec, int normalised,
                       h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                       h2t_result **out)
{
    job j;
    uint64_t *soff = NULL;
    int rc = h2t_train_spec_check(spec);
    if (rc < 0)
        return rc;
    if (!d || !out)
        return h2t_err_set(H2T_EINVAL, "no dataset or output");
    if (d->n_classes < 2)
        return h2t_err_set(H2T_EINVAL, "task has %u class(es), needs at least 2", d->n_classes);
    if (!d->n_train || !d->x_train || !d->y_train)
        return h2t_err_set(H2T_EINVAL, "empty train split");
    if (!d->n_test || !d->x_test || !d->y_test)
        return h2t_err_set(H2T_EINVAL, "empty test split");
    job_init(&j, spec, progress, ud, cancel);
    double t0 = h2t_now_s();
    uint64_t Dfull = 0;
    if ((rc = check_labels(d->y_train, d->n_train, d->n_classes, "train")) < 0 ||
        (rc = check_labels(d->y_test, d->n_test, d->n_classes, "test")) < 0 ||
        (rc = job_layers(&j, d->n_layers, d->layer_dims, d->layer_ids, d->layer_names)) < 0)
        goto out;
    for (uint32_t l = 0; l < d->n_layers; l++)
        Dfull += d->layer_dims[l];
    j.n_tr = d->n_train;
    j.n_te = d->n_test;
    j.K = d->n_classes;
    uint32_t N = j.n_tr + j.n_te;
    if ((rc = check_memory(spec, N, j.D)) < 0)
        goto out;
    /* not zeroed (h2t_aalloc would): the copy below writes every element; free() as h2t_afree */
    j.X = aligned_alloc(64, ((size_t)N * j.D * sizeof(float) + 63) & ~(size_t)63);
    j.y = malloc((size_t)N * sizeof(uint32_t));
    soff = malloc((size_t)j.n_layers * sizeof(uint64_t) + 1);
    if (!j.X || !j.y || !soff) {
        rc = h2t_err_set(H2T_ENOMEM, "design matrix (%u x %u)", N, j.D);
        goto out;
    }
    /* the source offset of each chosen layer (from the dataset's layer order); all layers in
     * order and nothing to check: one copy per row */
    int whole = normalised && j.n_layers == d->n_layers;
    for (uint32_t l = 0; l < j.n_layers; l++) {
        uint32_t src = 0;
        soff[l] = 0;
        for (; src < d->n_layers && (d->layer_ids ? d->layer_ids[src] : src) != j.lid[l]; src++)
            soff[l] += d->layer_dims[src];
        whole &= src == l;
    }
    for (uint32_t i = 0; i < N; i++) {
        int tr = i < j.n_tr;
        uint32_t si = tr ? i : i - j.n_tr;
        const float *x = (tr ? d->x_train : d->x_test) + (size_t)si * Dfull;
        if (whole) {
            memcpy(j.X + (size_t)i * j.D, x, (size_t)j.D * sizeof(float));
            continue;
        }
        for (uint32_t l = 0; l < j.n_layers; l++) {
            if (!normalised &&
                (rc = check_finite(&j, x + soff[l], l, si, tr ? "train" : "test")) < 0)
                goto out;
            memcpy(j.X + (size_t)i * j.D + j.loff[l], x + soff[l], j.ldim[l] * sizeof(float));
        }
    }
    memcpy(j.y, d->y_train, j.n_tr * sizeof(uint32_t));
    memcpy(j.y + j.n_tr, d->y_test, j.n_te * sizeof(uint32_t));
    if (!normalised)
        normalise_rows(&j, j.X, N);
    double t1 = h2t_now_s();
    if ((rc = solve(&j, out)) < 0)
        goto out;
    (*out)->t_load = t1 - t0;
    (*out)->t_total += t1 - t0;
out:
    free(soff);
    job_free(&j);
    return rc;
}

int h2t_solver_run_data(const h2t_dataset *d, const h2t_train_spec *spec,
                        h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                        h2t_result **out)
{
    return run_dataset(d, spec, 0, progress, ud, cancel, out);
}

int h2t_solver_run_normalised(const h2t_dataset *d, const h2t_train_spec *spec,
                              h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                              h2t_result **out)
{
    return run_dataset(d, spec, 1, progress, ud, cancel, out);
}

int h2t_solver__task_check(const h2t_store *st, const h2t_task *task, h2t_result **out)
{
    if (!st || !task || !out)
        return h2t_err_set(H2T_EINVAL, "no store, task or output");
    if (task->n_classes < 2)
        return h2t_err_set(H2T_EINVAL, "task %s has %u class(es), needs at least 2", task->name,
                           task->n_classes);
    if (task->n_train + task->n_val == 0)
        return h2t_err_set(H2T_EINVAL, "task %s: empty train split", task->name);
    if (!task->n_test)
        return h2t_err_set(H2T_EINVAL, "task %s: empty test split", task->name);
    return 0;
}

void h2t_solver__task_lists(const h2t_task *task, uint32_t *samples, uint32_t *y)
{
    uint32_t n_tr = task->n_train + task->n_val;
    memcpy(samples, task->train, task->n_train * sizeof(uint32_t));
    if (task->n_val)
        memcpy(samples + task->n_train, task->val, task->n_val * sizeof(uint32_t));
    memcpy(samples + n_tr, task->test, task->n_test * sizeof(uint32_t));
    memcpy(y, task->train_labels, task->n_train * sizeof(uint32_t));
    if (task->n_val)
        memcpy(y + task->n_train, task->val_labels, task->n_val * sizeof(uint32_t));
    memcpy(y + n_tr, task->test_labels, task->n_test * sizeof(uint32_t));
}

int h2t_solver_run(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                   h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                   h2t_result **out)
{
    job j;
    h2t_extraction *e = NULL;
    uint32_t *dims = NULL, *samples = NULL;
    const char **names = NULL;
    int rc = h2t_train_spec_check(spec);
    if (rc < 0)
        return rc;
    if ((rc = h2t_solver__task_check(st, task, out)) < 0)
        return rc;
    job_init(&j, spec, progress, ud, cancel);
    double t0 = h2t_now_s();
    snprintf(j.stage, sizeof(j.stage), "load");
    j.pspan = 0;
    report(&j, 0);
    if ((rc = h2t_store_extraction_get(st, task->extraction, &e)) < 0)
        goto out;
    dims = malloc((e->n_layers + 1) * sizeof(uint32_t));
    names = malloc((e->n_layers + 1) * sizeof(char *));
    if (!dims || !names) {
        rc = h2t_err_set(H2T_ENOMEM, "layer table");
        goto out;
    }
    for (uint32_t l = 0; l < e->n_layers; l++) {
        dims[l] = e->layers[l].dim;
        names[l] = e->layers[l].name;
    }
    h2t_train_spec probe_spec;
    uint32_t probe_layer;
    if (spec->method == H2T_METHOD_LINEAR && !spec->n_layers) {
        probe_layer = h2t_solver_probe_layer(e); /* the pre-logits, not the model's logits */
        probe_spec = *spec;
        probe_spec.layers = &probe_layer;
        probe_spec.n_layers = 1;
        j.spec = &probe_spec;
    }
    if ((rc = job_layers(&j, e->n_layers, dims, NULL, names)) < 0)
        goto out;
    j.n_tr = task->n_train + task->n_val;
    j.n_te = task->n_test;
    j.K = task->n_classes;
    uint32_t N = j.n_tr + j.n_te;
    if ((rc = check_memory(spec, N, j.D)) < 0)
        goto out;
    j.y = malloc((size_t)N * sizeof(uint32_t));
    samples = malloc((size_t)N * sizeof(uint32_t));
    if (!j.y || !samples) {
        rc = h2t_err_set(H2T_ENOMEM, "sample lists");
        goto out;
    }
    h2t_solver__task_lists(task, samples, j.y);
    if ((rc = check_labels(j.y, j.n_tr, j.K, "train")) < 0 ||
        (rc = check_labels(j.y + j.n_tr, j.n_te, j.K, "test")) < 0)
        goto out;
    j.X = h2t_aalloc((size_t)N * j.D, sizeof(float));
    if (!j.X) {
        rc = h2t_err_set(H2T_ENOMEM, "design matrix %u x %u (%llu bytes)", N, j.D,
                         (unsigned long long)N * j.D * 4);
        goto out;
    }
    for (uint32_t l = 0; l < j.n_layers; l++) {
        if ((rc = check_cancel(&j)) < 0)
            goto out;
        rc = h2t_store_layer_read(st, task->extraction, j.lid[l], samples, 0, N, j.X + j.loff[l],
                                  j.D);
        if (rc < 0) {
            h2t_err_wrap(rc, "reading layer %u (%s): ", j.lid[l], j.lname[l]);
            goto out;
        }
        for (uint32_t i = 0; i < N; i++)
            if ((rc = check_finite(&j, j.X + (size_t)i * j.D + j.loff[l], l, samples[i],
                                   i < j.n_tr ? "train" : "test")) < 0)
                goto out;
    }
    normalise_rows(&j, j.X, N);
    double t1 = h2t_now_s();
    if ((rc = solve(&j, out)) < 0)
        goto out;
    (*out)->t_load = t1 - t0;
    (*out)->t_total += t1 - t0;
out:
    job_free(&j);
    h2t_extraction_destroy(e);
    free(dims);
    free(names);
    free(samples);
    return rc;
}

/* What h2t_solver_fit and h2t_solver_fit_path share: every label below k, the spec (NULL:
 * *specp becomes def, the defaults), the optimiser options it gives, OpenBLAS's thread count. */
static int fit_prepare(const char *what, const uint32_t *y, uint32_t n, uint32_t k,
                       const h2t_train_spec **specp, h2t_train_spec *def, h2t_solver_opts *o)
{
    for (uint32_t i = 0; i < n; i++)
        if (y[i] >= k)
            return h2t_err_set(H2T_EINVAL, "%s: label %u of sample %u >= %u", what, y[i], i, k);
    if (!*specp) {
        h2t_train_spec_default(def, H2T_METHOD_ALL);
        *specp = def;
    }
    const h2t_train_spec *spec = *specp;
    *o = (h2t_solver_opts){.max_iter = spec->max_iter ? spec->max_iter : 2000,
                           .gtol = spec->gtol > 0 ? spec->gtol : 1e-5,
                           .kkt_rel = 1e-2,
                           .ridge = 0,
                           .cancel = NULL};
    if (spec->threads > 0)
        h2t_blas_threads((int)spec->threads);
    return 0;
}

int h2t_solver_fit(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                   uint32_t penalty, double lambda, const h2t_train_spec *spec, float *W, float *b,
                   h2t_fit_info *info)
{
    if (!X || !y || !W || !b || !n || !d || k < 2)
        return h2t_err_set(H2T_EINVAL, "fit: empty problem (%u x %u, %u classes)", n, d, k);
    if (penalty > H2T_PENALTY_GROUP || !(lambda >= 0) || !isfinite(lambda))
        return h2t_err_set(H2T_EINVAL, "fit: penalty %u lambda %g", penalty, lambda);
    h2t_solver_opts o;
    h2t_train_spec def;
    int prc = fit_prepare("fit", y, n, k, &spec, &def, &o);
    if (prc < 0)
        return prc;
    h2t_fit_info tmp;
    if (!info)
        info = &tmp;
    if (penalty == H2T_PENALTY_GROUP) {
        double L = 0;
        float *G = malloc((size_t)d * k * sizeof(float));
        if (!G)
            return h2t_err_set(H2T_ENOMEM, "gradient %u x %u", d, k);
        int rc = h2t_solver__fit_group_ws(X, y, n, d, k, lambda, 0, &o, W, b, &L, G, info);
        free(G);
        return rc;
    }
    double ridge = penalty == H2T_PENALTY_L2 ? lambda : spec->final_l2;
    int cold = 1;
    for (size_t q = 0; q < (size_t)d * k && cold; q++)
        cold = W[q] == 0;
    if (cold && 2ull * n <= d) { /* from W = 0 the kernel form: same iterates, cheaper; its
                                  * Gram (n^2 doubles) no larger than X */
        float *A = calloc((size_t)n * k + 1, sizeof(float));
        if (!A)
            return h2t_err_set(H2T_ENOMEM, "coefficients %u x %u", n, k);
        int rc = h2t_solver__fit_smooth_kernel(X, NULL, y, n, d, k, ridge, &o, A, W, b, info);
        free(A);
        return rc;
    }
    return h2t_solver__fit_smooth(X, y, n, d, k, ridge, &o, W, b, info);
}

int h2t_solver_fit_path(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                        const double *lambdas, uint32_t n_lambdas, const h2t_train_spec *spec,
                        float *W, float *b, h2t_fit_info *info)
{
    if (!X || !y || !W || !b || !n || !d || k < 2 || !lambdas || !n_lambdas)
        return h2t_err_set(H2T_EINVAL, "fit path: empty problem (%u x %u, %u classes, %u lambdas)",
                           n, d, k, n_lambdas);
    for (uint32_t q = 0; q < n_lambdas; q++)
        if (!(lambdas[q] >= 0) || !isfinite(lambdas[q]) || (q && lambdas[q] > lambdas[q - 1]))
            return h2t_err_set(H2T_EINVAL, "fit path: lambdas[%u] = %g (finite, >= 0, descending)",
                               q, lambdas[q]);
    h2t_solver_opts o;
    h2t_train_spec def;
    int prc = fit_prepare("fit path", y, n, k, &spec, &def, &o);
    if (prc < 0)
        return prc;
    float *G = malloc((size_t)d * k * sizeof(float));
    if (!G)
        return h2t_err_set(H2T_ENOMEM, "gradient %u x %u", d, k);
    double L = 0;
    int rc = 0;
    for (uint32_t q = 0; q < n_lambdas && rc == 0; q++) {
        h2t_fit_info fi;
        rc = h2t_solver__fit_group_ws(X, y, n, d, k, lambdas[q], q ? lambdas[q - 1] : 0, &o, W, b,
                                      &L, G, &fi);
        if (info)
            info[q] = fi;
    }
    free(G);
    return rc;
}
