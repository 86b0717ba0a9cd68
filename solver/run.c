/*
 * solver/run.c - a training job: spec checks, design-matrix assembly (store or memory),
 * per-layer normalisation, the methods (linear / all / head2toe on both optimiser paths, knn,
 * ncm, layer, auto), stratified or contiguous k-fold cross-validation (repeated, one-SE rule)
 * over the method's grid, the final head and its evaluation.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
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
    s->fold_kind = H2T_FOLDS_STRATIFIED;
    s->select_group = H2T_SELECT_FEATURE;
    if (method == H2T_METHOD_KNN) {
        s->penalty = H2T_PENALTY_NONE;
        static const double ks[] = {1, 3, 5, 10, 20};
        s->n_lambdas = 5;
        memcpy(s->lambdas, ks, sizeof(ks));
        s->n_keeps = 1;
        s->keeps[0] = 1.0;
    } else if (method == H2T_METHOD_NCM || method == H2T_METHOD_AUTO) {
        /* no grid of their own (auto runs each candidate with that method's defaults) */
        s->penalty = H2T_PENALTY_NONE;
        s->n_lambdas = 1;
        s->lambdas[0] = 0;
        s->n_keeps = 1;
        s->keeps[0] = 1.0;
    } else if (method == H2T_METHOD_HEAD2TOE) {
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
    if (s->method >= H2T_METHOD_COUNT)
        return h2t_err_set(H2T_EINVAL, "unknown method %u", s->method);
    if (s->fold_kind != H2T_FOLDS_STRATIFIED && s->fold_kind != H2T_FOLDS_CONTIGUOUS)
        return h2t_err_set(H2T_EINVAL, "fold_kind %u: 1 stratified or 2 contiguous", s->fold_kind);
    if (s->cv_repeats > 20)
        return h2t_err_set(H2T_EINVAL, "cv_repeats %u: at most 20", s->cv_repeats);
    if (s->cv_repeats > 1 && s->fold_kind == H2T_FOLDS_CONTIGUOUS)
        return h2t_err_set(H2T_EINVAL,
                           "cv_repeats %u with contiguous folds: they are the same "
                           "folds every time (repeats need stratified folds)",
                           s->cv_repeats);
    if (s->one_se > 1)
        return h2t_err_set(H2T_EINVAL, "one_se %u: 0 or 1", s->one_se);
    if (s->auto_methods & ~((1u << H2T_METHOD_AUTO) - 1))
        return h2t_err_set(H2T_EINVAL, "auto_methods 0x%x: bits 0..5 (linear .. layer) only",
                           s->auto_methods);
    if (s->method == H2T_METHOD_KNN)
        for (uint32_t i = 0; i < s->n_lambdas && i < H2T_SPEC_MAX_GRID; i++)
            if (!(s->lambdas[i] >= 1 && s->lambdas[i] <= 1000000 &&
                  s->lambdas[i] == floor(s->lambdas[i])))
                return h2t_err_set(H2T_EINVAL, "knn k %g (lambdas[%u]) must be a whole number >= 1",
                                   s->lambdas[i], i);
    if ((s->method == H2T_METHOD_LAYER || s->method == H2T_METHOD_AUTO) && s->folds < 2)
        return h2t_err_set(H2T_EINVAL, "method %s chooses by cross-validation: folds %u (>= 2)",
                           h2t_method_name(s->method), s->folds);
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
    if (s->cell_test > 1)
        return h2t_err_set(H2T_EINVAL, "cell_test %u: 0 or 1", s->cell_test);
    if (s->reserved)
        return h2t_err_set(H2T_EINVAL, "reserved %u: must be 0", s->reserved);
    if (s->select_group != H2T_SELECT_FEATURE && s->select_group != H2T_SELECT_LAYER)
        return h2t_err_set(H2T_EINVAL, "select_group %u: 1 per feature or 2 whole layers",
                           s->select_group);
    if (s->n_final_l2s > H2T_SPEC_MAX_GRID)
        return h2t_err_set(H2T_EINVAL, "final_l2s grid has %u values (at most %d)", s->n_final_l2s,
                           H2T_SPEC_MAX_GRID);
    for (uint32_t i = 0; i < s->n_final_l2s; i++)
        if (!(s->final_l2s[i] >= 0) || !isfinite(s->final_l2s[i]))
            return h2t_err_set(H2T_EINVAL, "final L2 %g (final_l2s[%u]) must be finite and >= 0",
                               s->final_l2s[i], i);
    if (s->folds < 1 || s->folds > 100)
        return h2t_err_set(H2T_EINVAL, "folds %u (1..100)", s->folds);
    uint32_t cells =
        s->n_lambdas *
        (s->method == H2T_METHOD_HEAD2TOE ? s->n_keeps * (s->n_final_l2s ? s->n_final_l2s : 1) : 1);
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
    if (req->method >= H2T_METHOD_COUNT)
        return h2t_err_set(H2T_EINVAL,
                           "method %u: want linear, all, head2toe, knn, ncm, layer or auto",
                           req->method);
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

/* Raise a method's entry when its results may change (solver.h). Why each is above 1:
 *  head2toe 2: the group-lasso path runs L-BFGS on the non-zero rows between FISTA runs
 *              (objectives within 1e-6 relative of FISTA alone, so kept sets may differ).
 *  head2toe 3: the final head's selection runs the CV splits' path (the whole grid's points),
 *              and OpenBLAS runs one thread (its threads changed the rounding).
 *  head2toe 4: its heads take the kernel form from n <= k on (was 2n <= k), with the solver's
 *              own Gram products (their rounding differs from dgemm's).
 *  head2toe 5: a CV split's kernel-form heads warm-start from one another (cv_heads).
 *  linear 2, all 2, layer 2, ncm 2, head2toe 6: every sum over rows is taken by fixed row blocks
 *              (fit.c), so one process and any row-sharded job agree bit for bit; the
 *              rounding of one process's sums changed.
 *  head2toe 7: the selection path stops at a KKT residual of 0.1 lambda (was 0.01 lambda). */
static const uint32_t results_version[H2T_METHOD_COUNT] = {
    [H2T_METHOD_LINEAR] = 2, [H2T_METHOD_ALL] = 2, [H2T_METHOD_HEAD2TOE] = 7,
    [H2T_METHOD_KNN] = 1,    [H2T_METHOD_NCM] = 2, [H2T_METHOD_LAYER] = 2,
    [H2T_METHOD_AUTO] = 1,
};

uint32_t h2t_solver_results_version(uint32_t method)
{
    if (method >= H2T_METHOD_COUNT)
        return 0;
    if (method != H2T_METHOD_AUTO)
        return results_version[method];
    /* auto's own, plus every raise of a candidate's */
    uint32_t v = results_version[H2T_METHOD_AUTO];
    for (uint32_t m = 0; m < H2T_METHOD_COUNT; m++)
        if (m != H2T_METHOD_AUTO)
            v += results_version[m] - 1;
    return v;
}

/* ---- the job ---- */

typedef struct job {
    const h2t_train_spec *spec;
    h2t_solver_opts o;
    h2t_solver_progress_fn progress;
    void *ud;
    uint32_t n_tr, n_te, K, n_layers;
    uint32_t n_tr_all,
        n_te_all;           /* over every participant (row-sharded: j->o.red); else n_tr, n_te */
    const h2t_shard *shard; /* NULL: this process holds every row */
    uint32_t D;
    float *X;       /* (n_tr + n_te) x D, normalised (n_tr x D with tst); design_alloc */
    size_t x_map;   /* bytes of the file-backed mapping X lies in; 0: X is in memory */
    uint32_t *y;    /* n_tr + n_te */
    uint32_t *ldim; /* n_layers */
    uint32_t *loff; /* n_layers + 1 */
    uint32_t *lid;  /* n_layers */
    char **lname;   /* n_layers */
    uint32_t rot;   /* current rotation of the train rows */
    double *gram;   /* NULL or n_tr x n_tr Gram of the train rows in task order (kernel form) */
    const uint32_t *perm; /* NULL or the CV repeat's order: train row i (before rotation) is task
                             row perm[i] */
    /* row-sharded, inside a CV split (gsplit 1): the split as one process lays it out, over
     * every participant's rows: its gNs training rows are task rows gperm[(r + grot) mod
     * n_tr_all] (gperm NULL: the identity), r < gNs. gsplit 0: every training row in task
     * order. The kernel form's coefficients follow that order. */
    int gsplit;
    const uint32_t *gperm;
    uint32_t grot, gNs;
    uint32_t probe; /* the job's layer a linear probe (and knn) reads within auto */
    /* sorted grid */
    uint32_t nl, nk;
    double lambdas[H2T_SPEC_MAX_GRID];
    /* head2toe's keep axis: each keep fraction x each final-head L2 (spec.final_l2s), so
     * keeps[c] and fl2[c] belong to keep cell c */
    double keeps[H2T_SPEC_MAX_GRID * H2T_SPEC_MAX_GRID], fl2[H2T_SPEC_MAX_GRID * H2T_SPEC_MAX_GRID];
    const double *kfl2;  /* the final-head L2 of run_cells' keep cells; NULL: spec.final_l2 */
    double pbase, pspan; /* progress window of the current stage */
    char stage[64];
    int nested;           /* 1: a worker of a threaded CV (one thread inside it) */
    uint32_t threads;     /* the job's threads (spec.threads, else OpenBLAS's count at the start);
                             0: not resolved (spec.threads, else OpenBLAS's count now) */
    struct selpath *fsel; /* NULL or head2toe's final selection path (OWNED) */
    uint32_t *tkey;       /* row-sharded: o.rkey of the training rows in task order (OWNED) */
    uint32_t *cvkey;      /* n_tr: o.rkey of the CV split under way (OWNED; cv_run) */
    /* NULL: X holds the test rows after the training rows; else they stay in this store
     * (BORROWED) and test_correct reads them in row blocks: extraction text, sample ids
     * tsamples[0..n_te) (BORROWED), in the task's test order */
    h2t_store *tst;
    uint32_t text;
    const uint32_t *tsamples;
} job;

/* head2toe's final selection (fast path): the group-lasso path on every train row over the
 * whole grid of lambdas (the same path points as each CV split's), and the ranking at each grid
 * lambda: the final head at the chosen cell takes its columns from there. */
typedef struct selpath {
    uint32_t nl, stop;  /* grid lambdas; rankings are made for lambdas [0, stop) */
    uint32_t *order;    /* nl x D: columns in ranking order */
    uint32_t *lcum;     /* nl x n_layers: rank_layers' lcum (whole-layer selection) */
    h2t_fit_info *info; /* nl: the fit at the grid lambda */
    uint32_t *nz;       /* nl: its non-zero rows */
} selpath;

static void selpath_free(selpath *sp)
{
    if (!sp)
        return;
    free(sp->order);
    free(sp->lcum);
    free(sp->info);
    free(sp->nz);
    free(sp);
}

static selpath *selpath_new(const job *j, uint32_t nl)
{
    selpath *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return NULL;
    sp->nl = sp->stop = nl;
    sp->order = malloc((size_t)nl * j->D * sizeof(uint32_t) + 1);
    sp->lcum = malloc((size_t)nl * j->n_layers * sizeof(uint32_t) + 1);
    sp->info = calloc(nl, sizeof(h2t_fit_info));
    sp->nz = calloc(nl, sizeof(uint32_t));
    if (!sp->order || !sp->lcum || !sp->info || !sp->nz) {
        selpath_free(sp);
        return NULL;
    }
    return sp;
}

/* A head over a column subset. */
typedef struct head {
    uint32_t k;     /* columns */
    uint32_t *cols; /* k, ascending, into 0..D-1 */
    float *W;       /* k x K */
    float *b;       /* K */
    h2t_fit_info fit, sel;
    uint32_t sel_nonzero;
    /* knn: np prototypes (np x k rows, normalised) with labels, and k */
    float *P;
    uint32_t *py;
    uint32_t np, knn_k;
} head;

static void head_free(head *h)
{
    free(h->P);
    free(h->py);
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

/* Threads for `units` independent pieces of a job: spec.threads, else OpenBLAS's thread count,
 * at most cap and units; one when row-sharded. */
static uint32_t job_threads(const job *j, uint32_t units, uint32_t cap)
{
    if (j->o.red || j->nested) /* row-sharded: every participant makes the same reductions in
                                  one order; a CV worker: the threads are its folds */
        return 1;
    uint32_t T = j->threads         ? j->threads
                 : j->spec->threads ? j->spec->threads
                                    : (uint32_t)h2t_blas_threads_get();
    T = T < 1 ? 1 : T > cap ? cap : T;
    return T > units ? (units ? units : 1) : T;
}

/* L2-normalise each layer's block of each row (double accumulation; zero stays zero). */
static void normalise_rows(const job *j, float *X, uint32_t n)
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

/* The task-order index of train row r as the rows lie now (repeat order, then rotation). */
static uint32_t task_row(const job *j, uint32_t r)
{
    uint32_t q = (r + j->rot) % j->n_tr;
    return j->perm ? j->perm[q] : q;
}

/* The task row of row r of a row-sharded job's current split over every participant (see
 * job.gsplit). */
static uint32_t split_task_row(const job *j, uint32_t r)
{
    if (!j->gsplit)
        return r;
    uint32_t q = (r + j->grot) % j->n_tr_all;
    return j->gperm ? j->gperm[q] : q;
}

/* The training rows of a row-sharded job's current split in one process's order (see
 * job.gsplit): *Ns of them; pos[r] (n entries) is where this participant's training row r (as
 * its rows lie now) stands among them, y_all[0..Ns) their labels. pos and y_all OWNED by the
 * caller. */
static int split_rows(const job *j, uint32_t n, uint32_t *Ns, uint32_t **pos, uint32_t **y_all)
{
    const h2t_shard *sh = j->shard;
    uint32_t N = j->n_tr_all, ns = j->gsplit ? j->gNs : N;
    uint32_t *at = malloc((size_t)N * sizeof(uint32_t) + 1);
    *pos = malloc((size_t)n * sizeof(uint32_t) + 1);
    *y_all = malloc((size_t)ns * sizeof(uint32_t) + 1);
    if (!at || !*pos || !*y_all) {
        free(at);
        abort(); /* as h2t_solver__reduce: the others stop as when a participant dies */
    }
    for (uint32_t q = 0; q < N; q++)
        at[q] = UINT32_MAX;
    for (uint32_t r = 0; r < ns; r++) {
        uint32_t t = split_task_row(j, r);
        at[t] = r;
        (*y_all)[r] = sh->y_train_all[t];
    }
    for (uint32_t r = 0; r < n; r++) {
        (*pos)[r] = at[sh->train_rows[task_row(j, r)]];
        if ((*pos)[r] == UINT32_MAX)
            abort(); /* a training row here outside the split's: the split tables disagree */
    }
    free(at);
    *Ns = ns;
    return 0;
}

/* fit.c's row keys (h2t_solver_opts.rkey) of a training-row layout: row r (r < n_tr) is train
 * row (r + rot) mod n_tr of the order perm (NULL: task order; this participant's rows), which
 * lies in fold f of the fold bounds bnd (F + 1 entries; NULL: one fold); its key is f times the
 * block count plus the block of its task row among every participant's rows. */
static void row_keys(const job *j, const uint32_t *perm, uint32_t rot, const uint32_t *bnd,
                     uint32_t F, uint32_t *key)
{
    uint32_t n = j->n_tr, N = j->shard ? j->n_tr_all : n, nb = h2t_solver__nblocks(N);
    for (uint32_t r = 0; r < n; r++) {
        uint32_t q = (r + rot) % n, t = perm ? perm[q] : q, f = 0;
        if (j->shard)
            t = j->shard->train_rows[t];
        while (bnd && f + 1 < F && q >= bnd[f + 1])
            f++;
        key[r] = f * nb + h2t_solver__block_of(t, N);
    }
}

static int rotate_to(job *j, uint32_t target)
{
    uint32_t n = j->n_tr;
    if (!n)
        return 0;
    uint32_t r = (target + n - j->rot) % n;
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
    if (h->P) { /* knn */
        uint32_t *pred = malloc((size_t)n * sizeof(uint32_t));
        int rc =
            pred ? h2t_solver__knn(Xu, n, h->P, h->py, h->np, h->k, j->K, &h->knn_k, 1, pred, NULL)
                 : h2t_err_set(H2T_ENOMEM, "predictions");
        uint32_t c = 0;
        for (uint32_t i = 0; rc == 0 && i < n; i++)
            c += pred[i] == y[i];
        *correct = c;
        free(pred);
        free(Xs);
        return rc;
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

size_t h2t_solver__test_stream_min = (size_t)1 << 30;
size_t h2t_solver__test_block_bytes = (size_t)256 << 20;

static int check_finite(const job *j, const float *x, uint32_t l, uint32_t sample,
                        const char *split);

/* fn(ctx, a, b) over [0, n) in T contiguous parts [a, b), part 0 on the calling thread and the
 * others on threads of their own (a part whose thread cannot start runs on the caller). */
#define PAR_MAX 16
static void par_parts(uint32_t T, uint32_t n, void (*fn)(void *, uint32_t, uint32_t), void *ctx);

/* The load's last pass over rows X[0..n) (the first n_tr train rows, the rest test): each
 * row's layers checked finite, then normalised as normalise_rows does (each row alone, so the
 * numbers are the same however the rows are split), on the job's threads. A non-finite value
 * anywhere: a check in the loader's order names the first one, as one thread would (layer_major:
 * layer by layer, then row by row; else row by row); samples[i] is row i's sample id (NULL: i
 * for a train row, i - n_tr for a test row). */
typedef struct rows_pass {
    const job *j;
    float *X;
    atomic_int bad;
} rows_pass;

static void rows_pass_part(void *ctx, uint32_t a, uint32_t b)
{
    rows_pass *p = ctx;
    const job *j = p->j;
    for (uint32_t i = a; i < b; i++) {
        float *x = p->X + (size_t)i * j->D;
        int bad = 0;
        for (uint32_t c = 0; c < j->D; c++)
            bad |= !isfinite(x[c]);
        if (bad)
            atomic_store(&p->bad, 1);
        else
            normalise_rows(j, x, 1);
    }
}

static int rows_ready(const job *j, float *X, uint32_t n, const uint32_t *samples, uint32_t n_tr,
                      int layer_major)
{
    rows_pass p = {.j = j, .X = X};
    atomic_init(&p.bad, 0);
    par_parts(job_threads(j, n, PAR_MAX), n, rows_pass_part, &p);
    if (!atomic_load(&p.bad))
        return 0;
    uint32_t L = j->n_layers;
    for (uint64_t q = 0; q < (uint64_t)L * n; q++) {
        uint32_t l = layer_major ? (uint32_t)(q / n) : (uint32_t)(q % L);
        uint32_t i = layer_major ? (uint32_t)(q % n) : (uint32_t)(q / L);
        uint32_t id = samples ? samples[i] : i < n_tr ? i : i - n_tr;
        int rc =
            check_finite(j, X + (size_t)i * j->D + j->loff[l], l, id, i < n_tr ? "train" : "test");
        if (rc < 0)
            return rc;
    }
    return h2t_err_set(H2T_ENUMERIC, "a value that is not finite in the design matrix");
}

/* The test rows a head gets right: from X, or (j->tst) read from the store, checked and
 * normalised as the load does it, in row blocks of about h2t_solver__test_block_bytes. Each
 * row's logits are the same numbers either way: OpenBLAS's sgemm splits the rows, never the
 * inner dimension, between its kernels and threads, and its small-matrix kernel, which sums in
 * another order, takes only products of at most 100^3 multiply-adds, so a block is kept above
 * that size whenever the whole product is (test: solver_store_matches_memory). */
static int test_correct(const job *j, const head *h, uint32_t *correct)
{
    if (!j->tst)
        return head_correct(j, h, j->X + (size_t)j->n_tr * j->D, j->y + j->n_tr, j->n_te, correct);
    uint32_t n = j->n_te, D = j->D;
    uint64_t rows = h2t_solver__test_block_bytes / ((uint64_t)D * sizeof(float));
    uint64_t small = 1000000 / ((uint64_t)h->k * j->K) + 1;
    if ((uint64_t)n * h->k * j->K > 1000000 && rows < small)
        rows = small;
    rows = rows < 1 ? 1 : rows > n ? n : rows;
    uint32_t nb = (uint32_t)((n + rows - 1) / rows), c = 0;
    if (!n) {
        *correct = 0;
        return 0;
    }
    rows = (n + nb - 1) / nb; /* blocks of equal size but the last, which is at most 1 short */
    float *B = h2t_aalloc((size_t)rows * D, sizeof(float));
    if (!B)
        return h2t_err_set(H2T_ENOMEM, "test block (%llu x %u)", (unsigned long long)rows, D);
    int rc = 0;
    for (uint32_t r0 = 0; r0 < n && rc == 0; r0 += (uint32_t)rows) {
        uint32_t m = n - r0 < rows ? n - r0 : (uint32_t)rows, cb = 0;
        for (uint32_t l = 0; l < j->n_layers && rc == 0; l++) {
            rc = h2t_store_layer_read(j->tst, j->text, j->lid[l], j->tsamples + r0, 0, m,
                                      B + j->loff[l], D);
            if (rc < 0) {
                h2t_err_wrap(rc, "reading layer %u (%s): ", j->lid[l], j->lname[l]);
                break;
            }
            for (uint32_t i = 0; i < m && rc == 0; i++)
                rc =
                    check_finite(j, B + (size_t)i * D + j->loff[l], l, j->tsamples[r0 + i], "test");
        }
        if (rc < 0)
            break;
        normalise_rows(j, B, m);
        if ((rc = head_correct(j, h, B, j->y + j->n_tr + r0, m, &cb)) == 0)
            c += cb;
    }
    h2t_afree(B);
    *correct = c;
    return rc;
}

/* correct / n over every participant's rows (0 when there are none); *all (may be NULL) gets
 * the correct rows of all of them */
static double frac_all(const job *j, uint32_t correct, uint32_t n, uint32_t *all)
{
    double v[2] = {correct, n};
    h2t_solver__reduce(&j->o, &(h2t_solver_part){v, 2, 1}, 1);
    if (all)
        *all = (uint32_t)v[0];
    return v[1] ? v[0] / v[1] : 0;
}

/* intercept-only bias: log class frequencies over every participant's rows (classes absent:
 * log(0.5 / n)) */
static int intercept(const job *j, const uint32_t *y, uint32_t n, uint32_t K, float *b)
{
    double *cnt = calloc((size_t)K + 1, sizeof(double));
    if (!cnt)
        return h2t_err_set(H2T_ENOMEM, "class counts");
    for (uint32_t i = 0; i < n; i++)
        cnt[y[i]]++;
    cnt[K] = n;
    h2t_solver__reduce(&j->o, &(h2t_solver_part){cnt, (size_t)K + 1, 1}, 1);
    for (uint32_t c = 0; c < K; c++)
        b[c] = (float)log((cnt[c] ? cnt[c] : 0.5) / cnt[K]);
    free(cnt);
    return 0;
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

/* Whole-layer ranking (select_group layer): a layer's key is its features' earliest path
 * entry, the sum of their squared weight-row norms (the squared group norm of the layer's
 * whole block of W) and of their squared gradient-row norms; layers in rank_cmp order, each
 * layer's columns in column order, go into order[0..D); lcum[r] = columns in the first r + 1
 * layers. keys holds the per-feature keys (indexed by column, before any sort). */
static void rank_layers(const job *j, const rank_key *keys, rank_key *lkeys, uint32_t *order,
                        uint32_t *lcum)
{
    for (uint32_t l = 0; l < j->n_layers; l++) {
        rank_key lk = {UINT32_MAX, 0, 0, l};
        for (uint32_t q = j->loff[l]; q < j->loff[l + 1]; q++) {
            lk.entry = keys[q].entry < lk.entry ? keys[q].entry : lk.entry;
            lk.norm += keys[q].norm;
            lk.gnorm += keys[q].gnorm;
        }
        lkeys[l] = lk;
    }
    qsort(lkeys, j->n_layers, sizeof(rank_key), rank_cmp);
    uint32_t w = 0;
    for (uint32_t r = 0; r < j->n_layers; r++) {
        uint32_t l = lkeys[r].j;
        for (uint32_t q = j->loff[l]; q < j->loff[l + 1]; q++)
            order[w++] = q;
        lcum[r] = w;
    }
}

/* A kernel-form head's warm start (A0, b0 NULL: none): from the chain's state, and back. */
static void warm_in(const float *A0, const float *b0, size_t nK, uint32_t K, float *A, float *b)
{
    if (!A0)
        return;
    memcpy(A, A0, nK * sizeof(float));
    memcpy(b, b0, K * sizeof(float));
}

static void warm_out(float *A0, float *b0, size_t nK, uint32_t K, const float *A, const float *b)
{
    if (!A0)
        return;
    memcpy(A0, A, nK * sizeof(float));
    memcpy(b0, b, K * sizeof(float));
}

/* Fit the final head on the columns `order[0..k)` (sorted inside) with L2 strength fl2 (the
 * Adam path: no penalty unless the spec has a final_l2s grid). A0, b0 (may be NULL): a
 * warm-start chain (cv_heads) that a kernel-form head starts from and leaves its end in. */
static int fit_on_subset(job *j, const float *X, const uint32_t *y, uint32_t n,
                         const uint32_t *order, uint32_t k, double fl2, float *A0, float *b0,
                         head *h)
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
    /* the kernel form from n <= k on (its products cost n x n against the primal's n x k) and
     * its Gram products by the solver's own kernel (h2t_solver_opts.gram_own) */
    h2t_solver_opts ho = j->o;
    ho.gram_own = 1;
    if (s->optimizer == H2T_OPT_ADAM)
        rc = h2t_solver__fit_adam(Xs, y, n, k, j->K,
                                  s->n_final_l2s ? H2T_PENALTY_L2 : H2T_PENALTY_NONE,
                                  s->n_final_l2s ? fl2 : 0, s->lr, s->steps, s->batch, s->seed,
                                  &j->o, h->W, h->b, &h->fit);
    else if (j->shard) { /* the one-process choice and kernel form over every row */
        uint32_t Ns, *pos, *y_all;
        split_rows(j, n, &Ns, &pos, &y_all);
        float *A = Ns <= k ? calloc((size_t)Ns * j->K + 1, sizeof(float)) : NULL;
        if (Ns > k)
            rc = h2t_solver__fit_smooth(Xs, y, n, k, j->K, fl2, &j->o, h->W, h->b, &h->fit);
        else if (!A)
            abort(); /* as h2t_solver__reduce */
        else {
            warm_in(A0, b0, (size_t)Ns * j->K, j->K, A, h->b);
            rc = h2t_solver__fit_smooth_kernel_rows(Xs, y, n, pos, NULL, y_all, Ns, k, j->K, fl2,
                                                    &ho, A, h->W, h->b, &h->fit);
            warm_out(A0, b0, (size_t)Ns * j->K, j->K, A, h->b);
        }
        free(A);
        free(pos);
        free(y_all);
    } else if (n <= k) { /* kernel form: the same iterates over n x K coefficients */
        float *A = calloc((size_t)n * j->K + 1, sizeof(float));
        if (!A) {
            rc = h2t_err_set(H2T_ENOMEM, "coefficients %u x %u", n, j->K);
            goto out;
        }
        warm_in(A0, b0, (size_t)n * j->K, j->K, A, h->b);
        rc = h2t_solver__fit_smooth_kernel(Xs, NULL, y, n, k, j->K, fl2, &ho, A, h->W, h->b,
                                           &h->fit);
        warm_out(A0, b0, (size_t)n * j->K, j->K, A, h->b);
        free(A);
    } else
        rc = h2t_solver__fit_smooth(Xs, y, n, k, j->K, fl2, &j->o, h->W, h->b, &h->fit);
out:
    free(Xs);
    return rc;
}

/* The columns of a head2toe cell with keep fraction keep: keep_count, and with whole-layer
 * selection rounded up to the end of a layer (lcum: columns of the first l + 1 layers in
 * ranking order). */
static uint32_t cell_cols(const job *j, double keep, const uint32_t *lcum)
{
    uint32_t kc = keep_count(j->D, keep);
    if (j->spec->select_group == H2T_SELECT_LAYER) /* whole layers: round up */
        for (uint32_t l = 0; l < j->n_layers; l++)
            if (lcum[l] >= kc)
                return lcum[l];
    return kc;
}

/* The CV heads of one lambda (head2toe): cell ki's head on the first cell_cols columns of
 * order (final L2 j->kfl2[ki] when the keep axis has final L2s), its validation accuracy in
 * acc[ki]. One chain of warm starts per split: the largest keep first, each kernel-form head
 * starting from the coefficients and bias the previous one ended with (A0, b0: the chain's
 * state, carried across the split's lambdas; the kept columns are nested, so the logits
 * Gram(S) A are close to the previous head's). The chain fixes the order, so the heads of a
 * split run on one thread (the job's threads are its splits). */
static int cv_heads(job *j, const float *X, const uint32_t *y, uint32_t n, const float *Xva,
                    const uint32_t *yva, uint32_t nva, const uint32_t *order, const uint32_t *lcum,
                    const double *kp, uint32_t nk, double *acc, float *A0, float *b0)
{
    for (uint32_t q = 0; q < nk; q++) {
        uint32_t ki = nk - 1 - q; /* the largest keep first */
        head h = {0};
        uint32_t corr = 0;
        int rc = check_cancel(j);
        if (rc == 0)
            rc = fit_on_subset(j, X, y, n, order, cell_cols(j, kp[ki], lcum),
                               j->kfl2 ? j->kfl2[ki] : j->spec->final_l2, A0, b0, &h);
        if (rc == 0)
            rc = head_correct(j, &h, Xva, yva, nva, &corr);
        head_free(&h);
        if (rc < 0)
            return rc;
        acc[ki] = frac_all(j, corr, nva, NULL); /* row-sharded: over everyone's rows */
    }
    return 0;
}

/* The KKT tolerance (relative to lambda) of head2toe's selection path. What the path feeds is
 * a ranking: the rows non-zero at a grid lambda come first (on the eval tasks 330-700 of
 * 69,749 at lambda 1e-5, against keep 0.01's 697), ranked among themselves by path entry and
 * norm, and the zero rows after them by path entry, then by their gradient norm, which lies
 * in [0, lambda]; a residual of 0.1 lambda moves those norms by at most about that much. At
 * 1e-2 the path spent about two thirds of a job's CPU time (measured on fmnist10: 43 of 66 s,
 * points below lambda 1e-4 taking 500-2000 FISTA iterations); at 0.1 it takes 100-450 per
 * point there (16 s), and the CV and test accuracies stay within CV noise (docs/head2toe.md,
 * "Stopping rule of the selection path"). */
#define H2T_SELECT_KKT_REL 0.1

/* Every cell of the (sorted) grid on one split, in steps: cells_begin, then for each grid lambda
 * li in order cells_fit (the penalised fit at lam[li] and, for head2toe, its ranking of the
 * columns) and cells_heads (the heads of li's cells), then cells_end. The state that carries
 * from one lambda to the next is the fit's (weights, path, warm starts) and, separately, the
 * heads' (their chain of warm starts), so cells_heads(li) may run on one thread while
 * cells_fit(li + 1) runs on another (the threaded CV, head2toe): each writes only its own
 * part, and every number is the one the steps in order give. Xva may be NULL (final fit:
 * nl = nk = 1, the head goes to *final). acc: nl x nk. sp (head2toe, fast path; Xva and final
 * NULL): no heads, the ranking at each grid lambda [0, sp->stop) goes to sp. */
typedef struct cellrun {
    const float *X, *Xva;
    const uint32_t *y, *yva;
    uint32_t n, nva, nl, nk, stop; /* stop: lambdas [0, stop) are fitted */
    const double *lam, *kp;
    double *acc;
    head *final;
    selpath *sp;
    int selecting, fast;
    uint32_t pen;
    /* the fit's state */
    float *W, *b, *G, *A;
    double *Gf;
    uint32_t Ns, *spos, *sy; /* row-sharded kernel form: split_rows */
    uint32_t *entry;
    rank_key *keys, *lkeys;
    double *path, Lip;
    uint32_t npath, pi; /* path points; the next one */
    h2t_solver_opts po;
    /* per grid lambda: the ranking (nl x D), lcum (nl x n_layers), the fit and its non-zero
     * rows: written by cells_fit(li), read by cells_heads(li) */
    uint32_t *order, *lcum, *nz;
    h2t_fit_info *sel;
    /* the heads' state: the split's warm-start chain (cv_heads) */
    float *A0, *b0;
    /* progress: units of the fit's steps and of the heads' */
    uint32_t units, ufit, uheads;
} cellrun;

static void cells_report(job *j, const cellrun *c)
{
    if (j->progress) /* one thread runs the steps whenever the job reports */
        report(j, (double)(c->ufit + c->uheads) / c->units);
}

static void cells_end(cellrun *c)
{
    free(c->W);
    free(c->b);
    free(c->G);
    free(c->A);
    free(c->A0);
    free(c->b0);
    free(c->Gf);
    free(c->spos);
    free(c->sy);
    free(c->entry);
    free(c->order);
    free(c->keys);
    free(c->lkeys);
    free(c->lcum);
    free(c->nz);
    free(c->sel);
    free(c->path);
    memset(c, 0, sizeof(*c));
}

static int cells_begin(job *j, cellrun *c, const float *X, const uint32_t *y, uint32_t n,
                       const float *Xva, const uint32_t *yva, uint32_t nva, const double *lam,
                       uint32_t nl, const double *kp, uint32_t nk, double *acc, head *final,
                       selpath *sp)
{
    const h2t_train_spec *s = j->spec;
    const uint32_t D = j->D, K = j->K;
    size_t DK = (size_t)D * K;
    int rc = 0;
    memset(c, 0, sizeof(*c));
    c->X = X;
    c->y = y;
    c->n = c->Ns = n;
    c->Xva = Xva;
    c->yva = yva;
    c->nva = nva;
    c->lam = lam;
    c->nl = nl;
    c->kp = kp;
    c->nk = nk;
    c->acc = acc;
    c->final = final;
    c->sp = sp;
    c->stop = sp ? sp->stop : nl;
    c->W = calloc(DK + 1, sizeof(float));
    c->b = calloc(K, sizeof(float));
    c->sel = calloc(nl, sizeof(h2t_fit_info));
    c->nz = calloc(nl, sizeof(uint32_t));
    if (!c->W || !c->b || !c->sel || !c->nz)
        return h2t_err_set(H2T_ENOMEM, "weights %u x %u", D, K);
    c->selecting = s->method == H2T_METHOD_HEAD2TOE;
    c->pen = c->selecting ? H2T_PENALTY_GROUP : s->penalty;
    c->fast = s->optimizer == H2T_OPT_FAST;
    if (c->fast && c->pen == H2T_PENALTY_GROUP) {
        /* the lambda path: lambda_max at W = 0 with the intercept-only bias, geometric points
         * down to the smallest grid lambda, the grid lambdas themselves */
        if ((rc = intercept(j, y, n, K, c->b)) < 0)
            return rc;
        double *gn = malloc((size_t)D * sizeof(double) + 1);
        if (!gn)
            return h2t_err_set(H2T_ENOMEM, "gradient norms");
        rc = h2t_solver__grad_rownorm(&j->o, X, y, n, D, K, c->W, c->b, gn);
        double lmax = 0;
        for (uint32_t q = 0; q < D; q++)
            lmax = gn[q] > lmax ? gn[q] : lmax;
        free(gn);
        if (rc < 0)
            return rc;
        uint32_t P = s->path_len ? s->path_len : 20;
        double *path = c->path = malloc((P + nl + 1) * sizeof(double));
        if (!path)
            return h2t_err_set(H2T_ENOMEM, "lambda path");
        uint32_t npath = 0;
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
        c->npath = w;
        c->G = malloc(DK * sizeof(float) + 1);
        c->entry = malloc((size_t)D * sizeof(uint32_t) + 1);
        if (!c->G || !c->entry)
            return h2t_err_set(H2T_ENOMEM, "path buffers");
        for (uint32_t q = 0; q < D; q++)
            c->entry[q] = UINT32_MAX;
    }
    if (c->selecting) {
        c->order = malloc((size_t)nl * D * sizeof(uint32_t) + 1);
        c->keys = malloc((size_t)D * sizeof(rank_key) + 1);
        c->lkeys = malloc((size_t)j->n_layers * sizeof(rank_key) + 1);
        c->lcum = malloc((size_t)nl * j->n_layers * sizeof(uint32_t) + 1);
        if (!c->order || !c->keys || !c->lkeys || !c->lcum)
            return h2t_err_set(H2T_ENOMEM, "ranking buffers");
    }
    c->units = nl * nk + c->npath;
    /* head2toe's selection path stops at a KKT residual of H2T_SELECT_KKT_REL lambda (the
     * penalised fits of linear and all keep the job's tolerance): see the define */
    c->po = j->o;
    if (c->selecting)
        c->po.kkt_rel = H2T_SELECT_KKT_REL;
    return 0;
}

/* The penalised fit at lam[li] (after lam[li - 1]'s) and, for head2toe, its ranking. */
static int cells_fit(job *j, cellrun *c, uint32_t li)
{
    const h2t_train_spec *s = j->spec;
    const uint32_t D = j->D, K = j->K;
    const float *X = c->X;
    const uint32_t *y = c->y, n = c->n;
    const double *lam = c->lam;
    float *W = c->W, *b = c->b, *G = c->G;
    int fast = c->fast;
    uint32_t pen = c->pen;
    h2t_fit_info sel = {0};
    int rc;
    if ((rc = check_cancel(j)) < 0)
        return rc;
    if (fast && pen == H2T_PENALTY_GROUP) {
        while (c->pi < c->npath && c->path[c->pi] >= lam[li] * (1 - 1e-9)) {
            uint32_t pi = c->pi;
            rc = h2t_solver__fit_group_ws(X, y, n, D, K, c->path[pi], pi ? c->path[pi - 1] : 0,
                                          &c->po, W, b, &c->Lip, G, &sel);
            if (rc < 0)
                return rc;
            for (uint32_t q = 0; q < D; q++)
                if (c->entry[q] == UINT32_MAX) {
                    const float *wq = W + (size_t)q * K;
                    for (uint32_t k = 0; k < K; k++)
                        if (wq[k] != 0) {
                            c->entry[q] = pi;
                            break;
                        }
                }
            c->pi++;
            c->ufit++;
            cells_report(j, c);
        }
    } else if (fast && j->gram && (j->shard ? j->gsplit ? j->gNs : j->n_tr_all : n) < D) {
        /* kernel form on this split's Gram: a sub-block of the train Gram (row i here is
         * train row (i + rot) mod n_tr; row-sharded: row i of the split over every
         * participant, split_rows); A carries the warm start along the lambdas */
        double ridge = pen == H2T_PENALTY_L2 ? lam[li] : s->final_l2;
        if (!c->A) {
            if (j->shard)
                split_rows(j, n, &c->Ns, &c->spos, &c->sy);
            uint32_t Ns = c->Ns;
            c->A = calloc((size_t)Ns * K + 1, sizeof(float));
            c->Gf = malloc((size_t)Ns * Ns * sizeof(double) + 1);
            if (!c->A || !c->Gf) {
                if (j->shard)
                    abort(); /* as h2t_solver__reduce */
                return h2t_err_set(H2T_ENOMEM, "kernel buffers (%u samples)", n);
            }
            uint32_t N = j->shard ? j->n_tr_all : j->n_tr;
            for (uint32_t r = 0; r < Ns; r++) {
                /* the task row of split row r: sy's order (sharded) or task_row */
                uint32_t tr = j->shard ? split_task_row(j, r) : task_row(j, r);
                const double *src = j->gram + (size_t)tr * N;
                for (uint32_t q = 0; q < Ns; q++)
                    c->Gf[(size_t)r * Ns + q] =
                        src[j->shard ? split_task_row(j, q) : task_row(j, q)];
            }
        }
        rc = j->shard ? h2t_solver__fit_smooth_kernel_rows(X, y, n, c->spos, c->Gf, c->sy, c->Ns, D,
                                                           K, ridge, &j->o, c->A, W, b, &sel)
                      : h2t_solver__fit_smooth_kernel(X, c->Gf, y, n, D, K, ridge, &j->o, c->A, W,
                                                      b, &sel);
    } else if (fast) {
        double ridge = pen == H2T_PENALTY_L2 ? lam[li] : s->final_l2;
        rc = h2t_solver__fit_smooth(X, y, n, D, K, ridge, &j->o, W, b, &sel);
    } else {
        rc = h2t_solver__fit_adam(X, y, n, D, K, pen, pen == H2T_PENALTY_NONE ? 0 : lam[li], s->lr,
                                  s->steps, s->batch, s->seed, &j->o, W, b, &sel);
    }
    if (rc < 0)
        return rc;
    uint32_t nz = 0;
    for (uint32_t q = 0; q < D; q++)
        for (uint32_t k = 0; k < K; k++)
            if (W[(size_t)q * K + k] != 0) {
                nz++;
                break;
            }
    c->sel[li] = sel;
    c->nz[li] = nz;
    if (!c->selecting)
        return 0;
    /* the ranking at lam[li] */
    uint32_t *order = c->order + (size_t)li * D, *lcum = c->lcum + (size_t)li * j->n_layers;
    rank_key *keys = c->keys;
    for (uint32_t q = 0; q < D; q++) {
        const float *wq = W + (size_t)q * K;
        double s2 = 0, g2 = 0;
        for (uint32_t k = 0; k < K; k++) {
            s2 += (double)wq[k] * wq[k];
            if (G)
                g2 += (double)G[(size_t)q * K + k] * G[(size_t)q * K + k];
        }
        keys[q].entry = fast ? c->entry[q] : 0;
        keys[q].norm = s2;
        keys[q].gnorm = g2;
        keys[q].j = q;
    }
    if (s->select_group == H2T_SELECT_LAYER)
        rank_layers(j, keys, c->lkeys, order, lcum);
    else {
        qsort(keys, D, sizeof(rank_key), rank_cmp);
        for (uint32_t q = 0; q < D; q++)
            order[q] = keys[q].j;
    }
    selpath *sp = c->sp;
    if (sp) {
        memcpy(sp->order + (size_t)li * D, order, (size_t)D * sizeof(uint32_t));
        if (s->select_group == H2T_SELECT_LAYER)
            memcpy(sp->lcum + (size_t)li * j->n_layers, lcum,
                   (size_t)j->n_layers * sizeof(uint32_t));
        sp->info[li] = sel;
        sp->nz[li] = nz;
    }
    return 0;
}

/* The heads of lam[li]'s cells (after cells_fit(li) and cells_heads(li - 1)). */
static int cells_heads(job *j, cellrun *c, uint32_t li)
{
    const h2t_train_spec *s = j->spec;
    const uint32_t D = j->D, K = j->K, nk = c->nk;
    size_t DK = (size_t)D * K;
    const uint32_t *order = c->order ? c->order + (size_t)li * D : NULL;
    const uint32_t *lcum = c->lcum ? c->lcum + (size_t)li * j->n_layers : NULL;
    int rc = 0;
    if (c->sp) {
        c->uheads += nk;
        cells_report(j, c);
        return 0;
    }
    if (c->selecting && c->Xva && !c->final &&
        nk > 1) {     /* the CV heads of this lambda, one chain */
        if (!c->A0) { /* the split's warm-start chain (row-sharded: every participant's rows) */
            size_t rows = j->shard ? j->n_tr_all : c->n;
            c->A0 = calloc(rows * K + 1, sizeof(float));
            c->b0 = calloc(K, sizeof(float));
            if (!c->A0 || !c->b0)
                return h2t_err_set(H2T_ENOMEM, "warm starts (%zu x %u)", rows, K);
        }
        if ((rc = cv_heads(j, c->X, c->y, c->n, c->Xva, c->yva, c->nva, order, lcum, c->kp, nk,
                           c->acc + li * nk, c->A0, c->b0)) < 0)
            return rc;
        c->uheads += nk;
        cells_report(j, c);
        return 0;
    }
    head h = {0};
    for (uint32_t ki = 0; ki < nk; ki++) {
        if ((rc = check_cancel(j)) < 0)
            goto out;
        if (c->selecting) {
            rc = fit_on_subset(j, c->X, c->y, c->n, order, cell_cols(j, c->kp[ki], lcum),
                               j->kfl2 ? j->kfl2[ki] : s->final_l2, NULL, NULL, &h);
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
            memcpy(h.W, c->W, DK * sizeof(float));
            memcpy(h.b, c->b, K * sizeof(float));
            h.fit = c->sel[li];
        }
        h.sel = c->sel[li];
        h.sel_nonzero = c->nz[li];
        if (c->Xva) {
            uint32_t corr = 0;
            if ((rc = head_correct(j, &h, c->Xva, c->yva, c->nva, &corr)) < 0)
                goto out;
            c->acc[li * nk + ki] = frac_all(j, corr, c->nva, NULL);
        }
        if (c->final) {
            *c->final = h;
            memset(&h, 0, sizeof(h));
        } else {
            head_free(&h);
        }
        c->uheads++;
        cells_report(j, c);
    }
out:
    head_free(&h);
    return rc;
}

static int run_cells(job *j, const float *X, const uint32_t *y, uint32_t n, const float *Xva,
                     const uint32_t *yva, uint32_t nva, const double *lam, uint32_t nl,
                     const double *kp, uint32_t nk, double *acc, head *final, selpath *sp)
{
    cellrun c;
    int rc = cells_begin(j, &c, X, y, n, Xva, yva, nva, lam, nl, kp, nk, acc, final, sp);
    for (uint32_t li = 0; rc == 0 && li < c.stop; li++)
        if ((rc = cells_fit(j, &c, li)) == 0)
            rc = cells_heads(j, &c, li);
    cells_end(&c);
    return rc;
}

static int fill_result(job *j, head *h, h2t_result *r)
{
    const uint32_t K = j->K;
    r->method = j->spec->method;
    r->penalty = j->spec->method == H2T_METHOD_HEAD2TOE ? H2T_PENALTY_GROUP
                 : j->spec->method == H2T_METHOD_KNN || j->spec->method == H2T_METHOD_NCM
                     ? H2T_PENALTY_NONE
                     : j->spec->penalty;
    r->optimizer = j->spec->optimizer;
    r->ranking = j->spec->method != H2T_METHOD_HEAD2TOE ? H2T_RANK_NONE
                 : j->spec->optimizer == H2T_OPT_FAST   ? H2T_RANK_PATH_ENTRY
                                                        : H2T_RANK_SCORE;
    r->seed = j->spec->seed;
    r->n_classes = K;
    r->n_train = j->n_tr_all;
    r->n_test = j->n_te_all;
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
    if (h->P) { /* knn: the rows it votes with (all columns: cols is 0..D-1) */
        r->protos = malloc((size_t)h->np * h->k * sizeof(float) + 1);
        r->proto_labels = malloc((size_t)h->np * sizeof(uint32_t) + 1);
        if (!r->protos || !r->proto_labels)
            return h2t_err_set(H2T_ENOMEM, "knn rows");
        memcpy(r->protos, h->P, (size_t)h->np * h->k * sizeof(float));
        memcpy(r->proto_labels, h->py, (size_t)h->np * sizeof(uint32_t));
        r->n_protos = h->np;
        r->knn_k = h->knn_k;
    }
    r->final_fit = h->fit;
    r->select_fit = h->sel;
    r->select_nonzero = h->sel_nonzero;
    return 0;
}

/* ---- cross-validation folds ---- */

/* The folds of a job: R repeats of F folds over the n_tr train rows. A repeat's folds are
 * contiguous blocks [bnd[f], bnd[f + 1]) of the rows in that repeat's order (perm; NULL: task
 * order, the contiguous kind). */
typedef struct cvplan {
    uint32_t F, R, n;
    uint32_t *perm; /* R x n: position -> task row; NULL for contiguous folds */
    uint32_t *bnd;  /* R x (F + 1) */
    /* row-sharded: the folds of every participant's rows (R x N, R x (F + 1)), as one process
     * makes them; perm and bnd above are this participant's part of them */
    uint32_t *gperm, *gbnd;
} cvplan;

static void plan_free(cvplan *p)
{
    free(p->perm);
    free(p->bnd);
    free(p->gperm);
    free(p->gbnd);
    memset(p, 0, sizeof(*p));
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int h2t_solver__folds(const uint32_t *y, uint32_t n, uint32_t K, uint32_t F, uint32_t R,
                      uint32_t kind, uint64_t seed, uint32_t *perm, uint32_t *bnd)
{
    if (kind == H2T_FOLDS_CONTIGUOUS) {
        for (uint32_t f = 0; f <= F; f++)
            bnd[f] = (uint32_t)((uint64_t)f * n / F);
        return 0;
    }
    uint32_t *seq = malloc((size_t)n * sizeof(uint32_t) + 1);
    uint32_t *fold = malloc((size_t)n * sizeof(uint32_t) + 1);
    uint32_t *start = calloc((size_t)K + 1, sizeof(uint32_t));
    if (!seq || !fold || !start) {
        free(seq);
        free(fold);
        free(start);
        return h2t_err_set(H2T_ENOMEM, "folds");
    }
    for (uint32_t i = 0; i < n; i++)
        start[y[i] + 1]++;
    for (uint32_t c = 0; c < K; c++)
        start[c + 1] += start[c];
    for (uint32_t r = 0; r < R; r++) {
        uint64_t st = seed ^ (0xD1B54A32D192ED03ull * (r + 1));
        uint32_t *fill = fold; /* per class write position, reused below */
        memcpy(fill, start, (size_t)K * sizeof(uint32_t));
        for (uint32_t i = 0; i < n; i++)
            seq[fill[y[i]]++] = i;
        for (uint32_t c = 0; c < K; c++) /* Fisher-Yates within the class */
            for (uint32_t a = start[c + 1] - start[c]; a > 1; a--) {
                uint32_t b = (uint32_t)(splitmix(&st) % a), t = seq[start[c] + a - 1];
                seq[start[c] + a - 1] = seq[start[c] + b];
                seq[start[c] + b] = t;
            }
        for (uint32_t t = 0; t < n; t++)
            fold[seq[t]] = t % F;
        uint32_t *pr = perm + (size_t)r * n, *br = bnd + (size_t)r * (F + 1), w = 0;
        for (uint32_t f = 0; f < F; f++) {
            br[f] = w;
            for (uint32_t i = 0; i < n; i++)
                if (fold[i] == f)
                    pr[w++] = i;
        }
        br[F] = w;
    }
    free(seq);
    free(fold);
    free(start);
    return 0;
}

static int plan_make(const job *j, cvplan *p);

/* A row-sharded job's plan: the folds of all training rows (by task-order index, as one process
 * makes them), then each fold's rows held here, in the same order. */
static int plan_local(const job *j, cvplan *p)
{
    const h2t_shard *sh = j->shard;
    job all = *j;
    all.n_tr = sh->n_train_all;
    all.y = (uint32_t *)sh->y_train_all; /* read only: plan_make reads labels */
    all.shard = NULL;
    cvplan g;
    int rc = plan_make(&all, &g);
    uint32_t n = j->n_tr, N = sh->n_train_all, F = g.F, R = g.R;
    uint32_t *loc = malloc((size_t)N * sizeof(uint32_t) + 1);
    memset(p, 0, sizeof(*p));
    p->F = F;
    p->R = R;
    p->n = n;
    p->bnd = malloc((size_t)R * (F + 1) * sizeof(uint32_t));
    p->perm = malloc((size_t)R * n * sizeof(uint32_t) + 1);
    if (rc == 0 && (!loc || !p->bnd || !p->perm))
        rc = h2t_err_set(H2T_ENOMEM, "folds");
    if (rc < 0 || F < 2)
        goto out;
    for (uint32_t q = 0; q < N; q++)
        loc[q] = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++)
        loc[sh->train_rows[i]] = i;
    for (uint32_t r = 0; r < R; r++) {
        uint32_t *pr = p->perm + (size_t)r * n, *br = p->bnd + (size_t)r * (F + 1), w = 0;
        const uint32_t *gb = g.bnd + (size_t)r * (F + 1);
        for (uint32_t f = 0; f < F; f++) {
            br[f] = w;
            for (uint32_t t = gb[f]; t < gb[f + 1]; t++) {
                uint32_t row = g.perm ? g.perm[(size_t)r * N + t] : t;
                if (loc[row] != UINT32_MAX)
                    pr[w++] = loc[row];
            }
        }
        br[F] = w;
    }
out:
    free(loc);
    if (rc == 0) { /* kept for the kernel form's order of the splits (job.gsplit) */
        p->gperm = g.perm;
        p->gbnd = g.bnd;
        g.perm = g.bnd = NULL;
    }
    plan_free(&g);
    return rc;
}

static int plan_make(const job *j, cvplan *p)
{
    const h2t_train_spec *s = j->spec;
    if (j->shard)
        return plan_local(j, p);
    uint32_t n = j->n_tr, F = s->folds;
    memset(p, 0, sizeof(*p));
    p->F = F;
    p->n = n;
    int strat = s->fold_kind != H2T_FOLDS_CONTIGUOUS && F > 1;
    p->R = !strat ? 1 : s->cv_repeats ? s->cv_repeats : n < 500 ? 3 : 1;
    p->bnd = malloc((size_t)p->R * (F + 1) * sizeof(uint32_t));
    if (strat)
        p->perm = malloc((size_t)p->R * n * sizeof(uint32_t));
    if (!p->bnd || (strat && !p->perm))
        return h2t_err_set(H2T_ENOMEM, "folds");
    if (F < 2)
        return 0;
    return h2t_solver__folds(j->y, n, j->K, F, p->R,
                             strat ? H2T_FOLDS_STRATIFIED : H2T_FOLDS_CONTIGUOUS, s->seed, p->perm,
                             p->bnd);
}

/* Reorder the train rows (X and y): the row now at position i is the one at p[i] before
 * (inverse = 0), or the inverse of that move (inverse = 1). Cycle by cycle, one row buffer. */
static int permute_rows(job *j, const uint32_t *p, int inverse)
{
    uint32_t n = j->n_tr, D = j->D;
    float *tmp = malloc((size_t)D * sizeof(float) + 1);
    uint32_t *q = malloc((size_t)n * sizeof(uint32_t));
    uint8_t *seen = calloc(n, 1);
    if (!tmp || !q || !seen) {
        free(tmp);
        free(q);
        free(seen);
        return h2t_err_set(H2T_ENOMEM, "row buffer");
    }
    for (uint32_t i = 0; i < n; i++) {
        if (inverse)
            q[p[i]] = i;
        else
            q[i] = p[i];
    }
    for (uint32_t s0 = 0; s0 < n; s0++) {
        if (seen[s0] || q[s0] == s0)
            continue;
        memcpy(tmp, j->X + (size_t)s0 * D, D * sizeof(float));
        uint32_t ty = j->y[s0], cur = s0;
        for (;;) {
            seen[cur] = 1;
            uint32_t nx = q[cur];
            if (nx == s0) {
                memcpy(j->X + (size_t)cur * D, tmp, D * sizeof(float));
                j->y[cur] = ty;
                break;
            }
            memcpy(j->X + (size_t)cur * D, j->X + (size_t)nx * D, D * sizeof(float));
            j->y[cur] = j->y[nx];
            cur = nx;
        }
    }
    free(tmp);
    free(q);
    free(seen);
    return 0;
}

/* ---- the methods' cells ---- */

/* ncm: class means of the rows (double), each scaled to unit length (an absent class stays
 * zero): a linear head W = means, b = 0. Every row has the same norm (sqrt of its non-zero
 * layers), so argmax <x, mu_c / |mu_c|> is the cosine-nearest class mean. */
typedef struct ncm_rows {
    const float *X;
    const uint32_t *y;
    uint32_t D, K;
} ncm_rows;

/* slot (D x K) += each class's sum of rows [s0, s0 + len) */
static void ncm_add(void *ud, uint32_t s0, uint32_t len, double *slot)
{
    const ncm_rows *r = ud;
    for (uint32_t i = s0; i < s0 + len; i++) {
        const float *x = r->X + (size_t)i * r->D;
        for (uint32_t q = 0; q < r->D; q++)
            slot[(size_t)q * r->K + r->y[i]] += x[q];
    }
}

static int ncm_head(job *j, const float *X, const uint32_t *y, uint32_t n, head *h)
{
    const uint32_t D = j->D, K = j->K;
    double *m = calloc((size_t)D * K + 1, sizeof(double));
    h->k = D;
    h->cols = malloc((size_t)D * sizeof(uint32_t) + 1);
    h->W = malloc((size_t)D * K * sizeof(float) + 1);
    h->b = calloc(K, sizeof(float));
    if (!m || !h->cols || !h->W || !h->b) {
        free(m);
        return h2t_err_set(H2T_ENOMEM, "class means %u x %u", K, D);
    }
    for (uint32_t q = 0; q < D; q++)
        h->cols[q] = q;
    ncm_rows nr = {X, y, D, K};
    int rc = h2t_solver__rowsum(&j->o, n, (size_t)D * K, ncm_add, &nr, m);
    if (rc < 0) {
        free(m);
        return rc;
    }
    for (uint32_t c = 0; c < K; c++) {
        double s = 0;
        for (uint32_t q = 0; q < D; q++)
            s += m[(size_t)q * K + c] * m[(size_t)q * K + c];
        double inv = s > 0 ? 1.0 / sqrt(s) : 0;
        for (uint32_t q = 0; q < D; q++)
            h->W[(size_t)q * K + c] = (float)(m[(size_t)q * K + c] * inv);
    }
    free(m);
    h->fit.converged = 1;
    return 0;
}

/* knn over the lambdas axis (k values): the validation rows voted by the training rows at
 * every k at once; the final head keeps the rows (and the class means as W, for export). */
static int knn_cells(job *j, const float *X, const uint32_t *y, uint32_t n, const float *Xva,
                     const uint32_t *yva, uint32_t nva, const double *lam, uint32_t nl, double *acc,
                     head *final)
{
    uint32_t ks[H2T_SPEC_MAX_GRID];
    for (uint32_t q = 0; q < nl; q++)
        ks[q] = (uint32_t)lam[q];
    if (final) {
        int rc = ncm_head(j, X, y, n, final);
        if (rc < 0)
            return rc;
        final->P = malloc((size_t)n * j->D * sizeof(float) + 1);
        final->py = malloc((size_t)n * sizeof(uint32_t) + 1);
        if (!final->P || !final->py)
            return h2t_err_set(H2T_ENOMEM, "knn rows %u x %u", n, j->D);
        memcpy(final->P, X, (size_t)n * j->D * sizeof(float));
        memcpy(final->py, y, (size_t)n * sizeof(uint32_t));
        final->np = n;
        final->knn_k = ks[0];
        return 0;
    }
    uint32_t *pred = malloc((size_t)nl * nva * sizeof(uint32_t) + 1);
    if (!pred)
        return h2t_err_set(H2T_ENOMEM, "knn votes");
    int rc = h2t_solver__knn(Xva, nva, X, y, n, j->D, j->K, ks, nl, pred, NULL);
    for (uint32_t q = 0; rc == 0 && q < nl; q++) {
        uint32_t c = 0;
        for (uint32_t i = 0; i < nva; i++)
            c += pred[(size_t)q * nva + i] == yva[i];
        acc[q] = (double)c / nva;
    }
    free(pred);
    return rc;
}

/* Every cell of the job's method on one split (Xva NULL: the final head at the one cell). */
static int method_cells(job *j, const float *X, const uint32_t *y, uint32_t n, const float *Xva,
                        const uint32_t *yva, uint32_t nva, const double *lam, uint32_t nl,
                        const double *kp, uint32_t nk, double *acc, head *final)
{
    switch (j->spec->method) {
    case H2T_METHOD_KNN:
        return knn_cells(j, X, y, n, Xva, yva, nva, lam, nl, acc, final);
    case H2T_METHOD_NCM: {
        head h = {0};
        int rc = ncm_head(j, X, y, n, &h);
        uint32_t corr = 0;
        if (rc == 0 && Xva && (rc = head_correct(j, &h, Xva, yva, nva, &corr)) == 0)
            acc[0] = frac_all(j, corr, nva, NULL);
        if (rc == 0 && final) {
            *final = h;
            return 0;
        }
        head_free(&h);
        return rc;
    }
    default:
        return run_cells(j, X, y, n, Xva, yva, nva, lam, nl, kp, nk, acc, final, NULL);
    }
}

/* The job's grid from its spec, sorted: lambdas (knn: k) descending, keeps ascending. */
static void job_grid(job *j)
{
    const h2t_train_spec *s = j->spec;
    int selecting = s->method == H2T_METHOD_HEAD2TOE;
    int nopen = (s->method == H2T_METHOD_LINEAR || s->method == H2T_METHOD_ALL ||
                 s->method == H2T_METHOD_LAYER) &&
                s->penalty == H2T_PENALTY_NONE;
    j->nl = nopen || s->method == H2T_METHOD_NCM ? 1 : s->n_lambdas;
    for (uint32_t i = 0; i < j->nl; i++)
        j->lambdas[i] = nopen || s->method == H2T_METHOD_NCM ? 0 : s->lambdas[i];
    qsort(j->lambdas, j->nl, sizeof(double), dbl_desc);
    /* the keep axis: keeps ascending, within each keep the final L2s descending (the simplest
     * cell first for one_se: the fewest features, then the strongest ridge) */
    double kk[H2T_SPEC_MAX_GRID], ff[H2T_SPEC_MAX_GRID];
    uint32_t nkk = selecting ? s->n_keeps : 1,
             nff = selecting && s->n_final_l2s ? s->n_final_l2s : 1;
    for (uint32_t i = 0; i < nkk; i++)
        kk[i] = selecting ? s->keeps[i] : 1.0;
    for (uint32_t i = 0; i < nff; i++)
        ff[i] = selecting && s->n_final_l2s ? s->final_l2s[i] : s->final_l2;
    qsort(kk, nkk, sizeof(double), dbl_asc);
    qsort(ff, nff, sizeof(double), dbl_desc);
    j->nk = nkk * nff;
    for (uint32_t i = 0; i < nkk; i++)
        for (uint32_t q = 0; q < nff; q++) {
            j->keeps[i * nff + q] = kk[i];
            j->fl2[i * nff + q] = ff[q];
        }
}

/* The CV table of a job's grid. */
typedef struct cvtab {
    uint32_t cells, nf; /* nf = R x F validation splits */
    double *acc;        /* nf x cells */
    double *mean, *se;  /* cells */
    uint32_t best;      /* the chosen cell */
} cvtab;

static void tab_free(cvtab *t)
{
    free(t->acc);
    free(t->mean);
    free(t->se);
    memset(t, 0, sizeof(*t));
}

/* ---- threaded CV (head2toe): the splits' steps on a pool of threads ----
 * Each split (and the final selection, when the job has one: the path on every train row) runs
 * the steps of run_cells: per grid lambda the fit (with its ranking), then that lambda's heads.
 * The heads of a lambda need its fit and the previous lambda's heads (their chain of warm
 * starts); the next fit needs only the previous fit. So a split's heads of lambda li and its
 * fit of lambda li + 1 may run at once on two threads, and a split's steps are tasks for any
 * thread: each thread takes a ready step of the oldest split under way (a fit before heads),
 * else starts the next split. Five splits on two threads then end together instead of one
 * thread running the fifth alone. A split's rows are copied into a slot's own buffer in the order
 * the in-place rotation gives them (the repeat's order from the fold's end on: the training
 * rows, then the fold's validation rows last), so each step computes exactly what the
 * one-thread CV's does, and the results are bitwise the same for any thread count. Inside the
 * pool OpenBLAS runs one thread (set for the threaded section, then restored) and a slot's
 * job copy is marked nested (job_threads: 1). At most threads + 1 splits are under way (one
 * buffer each), as long as that many copies of the train rows fit (cv_threads). */
#define CV_THREADS_MAX 16

typedef struct cv_slot {
    job wj;        /* the split's job copy: its rows, row keys and stage */
    cellrun c;     /* the split's run_cells state */
    float *X;      /* n_tr x D (OWNED, kept across the slot's splits) */
    uint32_t *y;   /* n_tr */
    uint32_t *key; /* n_tr: the split's row keys (h2t_solver_opts.rkey) */
    uint32_t q;    /* the task: 0 the final selection when the job has one, then the splits */
    uint32_t stop; /* grid lambdas to fit (the final selection: fsel->stop; a split: all) */
    uint32_t nfit, nheads; /* grid lambdas whose fit / heads are done */
    int live, fitting, heading;
} cv_slot;

typedef struct cv_work {
    job *j; /* read only while the threads run (its fsel is written by one task) */
    const cvplan *p;
    cvtab *t;
    uint32_t splits, tasks; /* tasks: the splits, and first the final selection when j->fsel */
    uint32_t nslots, next;  /* slot entries; the next task to start */
    uint32_t max_splits, live_splits; /* splits under way at most (one buffer each), and now */
    uint32_t steps, done;             /* steps of every task; steps done (progress) */
    /* seconds a step of grid lambda li takes: the sum and count of those done (fit, heads) */
    double tsum[2][H2T_SPEC_MAX_GRID];
    uint32_t tcnt[2][H2T_SPEC_MAX_GRID];
    cv_slot slot[CV_THREADS_MAX + 2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int rc;        /* the first error */
    char err[512]; /* its detail */
} cv_work;

typedef struct cv_worker {
    cv_work *w;
    int report; /* the job's own thread: reports progress */
} cv_worker;

/* the final selection (task 0 when the job has one) */
static int cv_is_final(const cv_work *w, uint32_t q)
{
    return w->tasks > w->splits && q == 0;
}

/* Set slot s up for task q and begin its run_cells (no lock held: the slot is this thread's). */
static int cv_slot_start(cv_work *w, cv_slot *s)
{
    job *j = w->j;
    const cvplan *p = w->p;
    uint32_t n = j->n_tr, F = p->F, R = p->R, q = s->q;
    s->wj = *j;
    job *wj = &s->wj;
    wj->nested = 1;
    wj->x_map = 0;
    wj->progress = NULL; /* the pool reports (cv_worker_run) */
    wj->fsel = NULL;
    if (cv_is_final(w, q)) { /* the final selection, on every train row */
        snprintf(wj->stage, sizeof(wj->stage), "final selection");
        return cells_begin(wj, &s->c, j->X, j->y, n, NULL, NULL, 0, j->lambdas, j->nl, j->keeps,
                           j->nk, NULL, NULL, j->fsel);
    }
    uint32_t sq = q - (w->tasks - w->splits), r = sq / F, f = sq % F;
    uint32_t a = p->bnd[(size_t)r * (F + 1) + f], e = p->bnd[(size_t)r * (F + 1) + f + 1];
    const uint32_t *perm = p->perm ? p->perm + (size_t)r * n : NULL;
    if (R > 1)
        snprintf(wj->stage, sizeof(wj->stage), "cv repeat %u/%u fold %u/%u", r + 1, R, f + 1, F);
    else
        snprintf(wj->stage, sizeof(wj->stage), "cv fold %u/%u", f + 1, F);
    if (!s->X) {
        s->X = aligned_alloc(64, ((size_t)n * j->D * sizeof(float) + 64) & ~(size_t)63);
        s->y = malloc((size_t)n * sizeof(uint32_t) + 1);
        s->key = malloc((size_t)n * sizeof(uint32_t) + 1);
        if (!s->X || !s->y || !s->key)
            return h2t_err_set(H2T_ENOMEM, "CV rows (%u x %u)", n, j->D);
    }
    for (uint32_t i = 0; i < n; i++) { /* the repeat's order rotated left by e */
        uint32_t src = perm ? perm[(i + e) % n] : (i + e) % n;
        memcpy(s->X + (size_t)i * j->D, j->X + (size_t)src * j->D, j->D * sizeof(float));
        s->y[i] = j->y[src];
    }
    row_keys(j, perm, e, p->bnd + (size_t)r * (F + 1), F, s->key);
    wj->X = s->X;
    wj->y = s->y;
    wj->o.rkey = s->key;
    wj->o.nblk = h2t_solver__nblocks(n);
    uint32_t ntr = n - (e - a);
    if (ntr == 0 || e == a)
        return h2t_err_set(H2T_EINVAL, "fold %u of %u training samples is %s", f + 1, n,
                           e == a ? "empty" : "all of them");
    return cells_begin(wj, &s->c, s->X, s->y, ntr, s->X + (size_t)ntr * j->D, s->y + ntr, e - a,
                       j->lambdas, j->nl, j->keeps, j->nk, w->t->acc + (size_t)sq * w->t->cells,
                       NULL, NULL);
}

/* The expected seconds of a step (fit 0, heads 1) at grid lambda li: the mean of those done,
 * else 1 for a fit and 2 for heads (a lambda's heads fit several heads). Only the order of the
 * steps depends on it, never a number. */
static double cv_step_est(const cv_work *w, int kind, uint32_t li)
{
    return w->tcnt[kind][li] ? w->tsum[kind][li] / w->tcnt[kind][li] : kind ? 2.0 : 1.0;
}

/* The priority of a ready step of slot s: the longest chain of the task's steps from it to the
 * task's end, in expected seconds (a list schedule by critical path: the chains that take
 * longest start first, and the short steps fill in at the end). Fit li leads to the fits after
 * it and, from any of them (m), to the heads from m on; heads li to the heads after it. */
static double cv_step_prio(const cv_work *w, const cv_slot *s, int fit)
{
    double best = 0;
    if (!fit) {
        for (uint32_t m = s->nheads; m < s->stop; m++)
            best += cv_step_est(w, 1, m);
        return best;
    }
    double f = 0;
    for (uint32_t m = s->nfit; m < s->stop; m++) {
        f += cv_step_est(w, 0, m);
        double h = 0;
        if (!cv_is_final(w, s->q))
            for (uint32_t x = m; x < s->stop; x++)
                h += cv_step_est(w, 1, x);
        best = f + h > best ? f + h : best;
    }
    return best;
}

/* whether the slot's task is finished (every fit, and for a split every lambda's heads) */
static int cv_slot_finished(const cv_work *w, const cv_slot *s)
{
    return s->nfit == s->stop && (cv_is_final(w, s->q) || s->nheads == s->stop);
}

static void cv_worker_run(cv_worker *cw)
{
    cv_work *w = cw->w;
    job *j = w->j;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (w->rc < 0)
            break;
        /* the ready step of the tasks under way with the longest chain after it (ties: the
         * oldest task, a fit before heads) */
        cv_slot *s = NULL;
        int fit = 0;
        double best = -1;
        for (uint32_t k = 0; k < w->nslots; k++) {
            cv_slot *o = &w->slot[k];
            if (!o->live)
                continue;
            for (int f = 1; f >= 0; f--) {
                int ready = f ? !o->fitting && o->nfit < o->stop
                              : !cv_is_final(w, o->q) && !o->heading && o->nheads < o->nfit;
                if (!ready)
                    continue;
                double pr = cv_step_prio(w, o, f);
                if (pr > best || (pr == best && (o->q < s->q || (o == s && f > fit)))) {
                    s = o;
                    fit = f;
                    best = pr;
                }
            }
        }
        int start = 0;
        if (!s && w->next < w->tasks &&
            (cv_is_final(w, w->next) || w->live_splits < w->max_splits)) {
            /* else the next task, in a free slot (one with a buffer first) */
            for (uint32_t k = 0; k < w->nslots; k++)
                if (!w->slot[k].live && (!s || (!s->X && w->slot[k].X)))
                    s = &w->slot[k];
            if (s) {
                s->live = 1;
                s->q = w->next++;
                s->stop = cv_is_final(w, s->q) ? w->j->fsel->stop : w->j->nl;
                s->nfit = s->nheads = 0;
                w->live_splits += !cv_is_final(w, s->q);
                start = fit = 1;
            }
        }
        if (!s) {
            int any = 0;
            for (uint32_t k = 0; k < w->nslots; k++)
                any |= w->slot[k].live;
            if (!any && w->next >= w->tasks)
                break; /* every task is done */
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        uint32_t li = fit ? s->nfit : s->nheads;
        if (fit)
            s->fitting = 1;
        else
            s->heading = 1;
        pthread_mutex_unlock(&w->mu);
        int rc = start ? cv_slot_start(w, s) : 0;
        double t0 = h2t_now_s();
        if (rc == 0)
            rc = fit ? cells_fit(&s->wj, &s->c, li) : cells_heads(&s->wj, &s->c, li);
        double dt = h2t_now_s() - t0;
        char stage[64];
        snprintf(stage, sizeof(stage), "%s", s->wj.stage);
        pthread_mutex_lock(&w->mu);
        if (!cv_is_final(w, s->q)) { /* the splits' steps are alike: they make the estimates */
            w->tsum[!fit][li] += dt;
            w->tcnt[!fit][li]++;
        }
        if (fit) {
            s->fitting = 0;
            s->nfit++;
        } else {
            s->heading = 0;
            s->nheads++;
        }
        w->done++;
        if (rc < 0 && w->rc == 0) {
            snprintf(w->err, sizeof(w->err), "%s", h2t_err_detail());
            w->rc = rc;
        }
        if (rc == 0 && cv_slot_finished(w, s)) { /* nothing else of it runs: free its state */
            cells_end(&s->c);
            s->live = 0;
            w->live_splits -= !cv_is_final(w, s->q);
        }
        if (cw->report && j->progress) {
            double frac = (double)w->done / w->steps;
            pthread_mutex_unlock(&w->mu); /* the callback may take its own locks */
            j->progress(j->ud, j->pbase + j->pspan * (frac > 1 ? 1 : frac), stage);
            pthread_mutex_lock(&w->mu);
        }
        pthread_cond_broadcast(&w->cv);
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *cv_worker_thread(void *arg)
{
    cv_worker_run(arg);
    return NULL;
}

/* Whether the job's final head takes its columns from a selection path over the whole grid
 * (head2toe, fast path). */
static int final_selection(const job *j)
{
    return j->spec->method == H2T_METHOD_HEAD2TOE && j->spec->optimizer == H2T_OPT_FAST;
}

/* Threads for the job's CV: 1 (the in-place CV) unless the method is head2toe, the job holds
 * every row in memory, and a copy of the train rows per thread fits in half the budget; *slots:
 * the splits under way at once (threads + 1 when that many copies fit, else threads). */
static uint32_t cv_threads(const job *j, uint32_t splits, uint32_t *slots)
{
    *slots = 1;
    if (j->spec->method != H2T_METHOD_HEAD2TOE || j->x_map || j->o.red || j->nested)
        return 1;
    uint32_t T = job_threads(j, splits, CV_THREADS_MAX);
    uint64_t copy = (uint64_t)j->n_tr * j->D * sizeof(float);
    uint64_t avail = j->spec->mem_limit ? j->spec->mem_limit : h2t_solver__mem_available();
    while (T > 1 && copy * T > avail / 2)
        T--;
    *slots = T > 1 && copy * (T + 1) <= avail / 2 ? T + 1 : T;
    return T;
}

static int cv_parallel(job *j, const cvplan *p, uint32_t T, uint32_t slots, cvtab *t)
{
    cv_work *w = calloc(1, sizeof(*w));
    if (!w)
        return h2t_err_set(H2T_ENOMEM, "CV pool");
    w->j = j;
    w->p = p;
    w->t = t;
    w->splits = p->R * p->F;
    w->tasks = w->splits + (j->fsel ? 1 : 0);
    w->max_splits = slots;
    w->nslots = slots + (j->fsel ? 1 : 0); /* the final selection reads the job's rows */
    w->steps = w->splits * 2 * j->nl + (j->fsel ? j->fsel->stop : 0);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    cv_worker cw[CV_THREADS_MAX];
    pthread_t tid[CV_THREADS_MAX];
    int blas = h2t_blas_threads_get();
    h2t_blas_threads(1);
    uint32_t started = 1;
    for (uint32_t q = 0; q < T; q++)
        cw[q] = (cv_worker){w, q == 0};
    for (; started < T; started++)
        if (pthread_create(&tid[started], NULL, cv_worker_thread, &cw[started]) != 0)
            break;
    cv_worker_run(&cw[0]);
    for (uint32_t q = 1; q < started; q++)
        pthread_join(tid[q], NULL);
    h2t_blas_threads(blas); /* auto's head2toe candidate: the other candidates' count */
    int rc = w->rc;
    if (rc < 0)
        rc = h2t_err_set(rc, "%s", w->err);
    for (uint32_t q = 0; q < w->nslots; q++) {
        cells_end(&w->slot[q].c); /* a task an error stopped */
        free(w->slot[q].X);
        free(w->slot[q].y);
        free(w->slot[q].key);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return rc;
}

/* Run the CV of the job's method over its grid on the plan's folds and choose a cell: the best
 * mean (ties: the first in grid order), or with one_se the simplest cell whose mean is within
 * one standard error (of the best cell, over the R x F splits) of the best. Simplest: the
 * first in grid order (lambdas descending = most regularised; knn: the largest k), for
 * head2toe the smallest keep first (within a keep, the largest final-head L2), then the largest
 * lambda. */
static int cv_run(job *j, const cvplan *p, double pbase, double pspan, cvtab *t)
{
    uint32_t n = j->n_tr, F = p->F, R = p->R;
    int rc = 0;
    job_grid(j);
    memset(t, 0, sizeof(*t));
    t->cells = j->nl * j->nk;
    t->nf = F > 1 ? R * F : 0;
    t->acc = calloc((size_t)t->nf * t->cells + 1, sizeof(double));
    t->mean = calloc(t->cells, sizeof(double));
    t->se = calloc(t->cells, sizeof(double));
    if (!t->acc || !t->mean || !t->se)
        return h2t_err_set(H2T_ENOMEM, "grid");
    if (F < 2)
        return 0;
    j->kfl2 = j->fl2;
    uint32_t slots, T = cv_threads(j, R * F, &slots);
    if (T > 1) {
        if (final_selection(j) && !(j->fsel = selpath_new(j, j->nl)))
            return h2t_err_set(H2T_ENOMEM, "final selection (%u x %u)", j->nl, j->D);
        j->pbase = pbase;
        j->pspan = pspan;
        if ((rc = cv_parallel(j, p, T, slots, t)) < 0)
            return rc;
        R = 0; /* done */
    }
    const uint32_t *tkey = j->o.rkey, tnblk = j->o.nblk; /* the task order's, restored after */
    if (R && !j->cvkey && !(j->cvkey = malloc((size_t)n * sizeof(uint32_t) + 1))) {
        if (j->o.red)
            abort(); /* as h2t_solver__reduce */
        return h2t_err_set(H2T_ENOMEM, "row keys (%u rows)", n);
    }
    for (uint32_t r = 0; r < R; r++) {
        if (p->perm) {
            if ((rc = permute_rows(j, p->perm + (size_t)r * n, 0)) < 0)
                return rc;
            j->perm = p->perm + (size_t)r * n;
        }
        for (uint32_t f = 0; f < F; f++) {
            uint32_t a = p->bnd[(size_t)r * (F + 1) + f], e = p->bnd[(size_t)r * (F + 1) + f + 1];
            if (R > 1)
                snprintf(j->stage, sizeof(j->stage), "cv repeat %u/%u fold %u/%u", r + 1, R, f + 1,
                         F);
            else
                snprintf(j->stage, sizeof(j->stage), "cv fold %u/%u", f + 1, F);
            j->pbase = pbase + pspan * (r * F + f) / (R * F);
            j->pspan = pspan / (R * F);
            report(j, 0);
            /* rotate so that fold f's validation block [a, e) is last */
            if ((rc = rotate_to(j, n ? e % n : 0)) < 0)
                return rc;
            /* the split's row blocks: folds in this layout's order, then task blocks */
            row_keys(j, j->perm, j->rot, p->bnd + (size_t)r * (F + 1), F, j->cvkey);
            j->o.rkey = j->cvkey;
            j->o.nblk = h2t_solver__nblocks(j->n_tr_all);
            if (p->gbnd) { /* row-sharded: the same split over every participant's rows */
                const uint32_t *gb = p->gbnd + (size_t)r * (F + 1);
                uint32_t N = j->n_tr_all;
                j->gsplit = 1;
                j->gperm = p->gperm ? p->gperm + (size_t)r * N : NULL;
                j->grot = N ? gb[f + 1] % N : 0;
                j->gNs = N - (gb[f + 1] - gb[f]);
            }
            uint32_t ntr = n - (e - a);
            double cnt[2] = {ntr, e - a}; /* over every participant */
            h2t_solver__reduce(&j->o, &(h2t_solver_part){cnt, 2, 1}, 1);
            if (cnt[0] == 0 || cnt[1] == 0)
                return h2t_err_set(H2T_EINVAL, "fold %u of %u training samples is %s", f + 1,
                                   j->n_tr_all, cnt[1] == 0 ? "empty" : "all of them");
            rc = method_cells(j, j->X, j->y, ntr, j->X + (size_t)ntr * j->D, j->y + ntr, e - a,
                              j->lambdas, j->nl, j->keeps, j->nk,
                              t->acc + (size_t)(r * F + f) * t->cells, NULL);
            if (rc < 0)
                return rc;
        }
        if ((rc = rotate_to(j, 0)) < 0)
            return rc;
        j->o.rkey = tkey;
        j->o.nblk = tnblk;
        j->gsplit = 0;
        j->gperm = NULL;
        if (p->perm) {
            if ((rc = permute_rows(j, p->perm + (size_t)r * n, 1)) < 0)
                return rc;
            j->perm = NULL;
        }
    }
    j->kfl2 = NULL;
    t->best =
        h2t_solver__choose(t->acc, t->nf, j->nl, j->nk, j->spec->method == H2T_METHOD_HEAD2TOE,
                           j->spec->one_se, t->mean, t->se);
    return 0;
}

uint32_t h2t_solver__choose(const double *acc, uint32_t nf, uint32_t nl, uint32_t nk,
                            int keep_major, int one_se, double *mean, double *se)
{
    uint32_t cells = nl * nk, best = 0;
    for (uint32_t c = 0; c < cells; c++) {
        double m = 0, v = 0;
        for (uint32_t f = 0; f < nf; f++)
            m += acc[(size_t)f * cells + c];
        m = nf ? m / nf : 0;
        for (uint32_t f = 0; f < nf; f++) {
            double d = acc[(size_t)f * cells + c] - m;
            v += d * d;
        }
        mean[c] = m;
        se[c] = nf > 1 ? sqrt(v / (nf - 1) / nf) : 0;
        if (m > mean[best])
            best = c;
    }
    if (one_se) {
        double floor_acc = mean[best] - se[best];
        for (uint32_t q = 0; q < cells; q++) {
            uint32_t c = keep_major ? (q % nl) * nk + q / nl : q;
            if (mean[c] >= floor_acc)
                return c;
        }
    }
    return best;
}

/* The final head of a job at its table's chosen cell, trained on every train row, evaluated,
 * and written into r (grid, CV table, head). */
static int finish(job *j, const cvplan *p, const cvtab *t, h2t_result *r)
{
    int rc = 0;
    head fin = {0};
    uint32_t F = p->F, R = p->R;
    r->cv_acc = calloc(t->cells, sizeof(double));
    r->cv_se = calloc(t->cells, sizeof(double));
    r->fold_acc = calloc(F, sizeof(double));
    r->lambdas = malloc(j->nl * sizeof(double));
    r->keeps = malloc(j->nk * sizeof(double));
    if (!r->cv_acc || !r->cv_se || !r->fold_acc || !r->lambdas || !r->keeps)
        return h2t_err_set(H2T_ENOMEM, "grid");
    memcpy(r->lambdas, j->lambdas, j->nl * sizeof(double));
    memcpy(r->keeps, j->keeps, j->nk * sizeof(double));
    memcpy(r->cv_acc, t->mean, t->cells * sizeof(double));
    memcpy(r->cv_se, t->se, t->cells * sizeof(double));
    r->n_lambdas = j->nl;
    r->n_keeps = j->nk;
    r->folds = F;
    r->fold_kind = j->spec->fold_kind;
    r->cv_repeats = F > 1 ? R : 0;
    r->one_se = j->spec->one_se;
    if (t->nf) {
        for (uint32_t f = 0; f < F; f++) {
            double m = 0;
            for (uint32_t q = 0; q < R; q++)
                m += t->acc[(size_t)(q * F + f) * t->cells + t->best];
            r->fold_acc[f] = m / R;
        }
        r->val_acc = t->mean[t->best];
    }
    r->lambda = j->lambdas[t->best / j->nk];
    r->keep = j->keeps[t->best % j->nk];
    r->final_l2 = j->fl2[t->best % j->nk];
    r->select_group = j->spec->select_group;
    if (j->spec->method == H2T_METHOD_HEAD2TOE && j->spec->n_final_l2s) {
        if (!(r->final_l2s = malloc(j->nk * sizeof(double))))
            return h2t_err_set(H2T_ENOMEM, "grid");
        memcpy(r->final_l2s, j->fl2, j->nk * sizeof(double));
    }
    snprintf(j->stage, sizeof(j->stage), "final");
    j->pbase = F > 1 ? 0.9 : 0;
    j->pspan = 1 - j->pbase;
    report(j, 0);
    if (final_selection(j)) { /* the columns from the path over the grid, at the chosen lambda */
        uint32_t li = t->best / j->nk;
        if (!j->fsel) {
            if (!(j->fsel = selpath_new(j, j->nl))) {
                rc = h2t_err_set(H2T_ENOMEM, "final selection (%u x %u)", j->nl, j->D);
                goto out;
            }
            j->fsel->stop = li + 1; /* the path is the whole grid's; it stops at the chosen point */
            rc = run_cells(j, j->X, j->y, j->n_tr, NULL, NULL, 0, j->lambdas, j->nl, j->keeps,
                           j->nk, NULL, NULL, j->fsel);
            if (rc < 0)
                goto out;
        }
        const uint32_t *lcum = j->fsel->lcum + (size_t)li * j->n_layers;
        rc = fit_on_subset(j, j->X, j->y, j->n_tr, j->fsel->order + (size_t)li * j->D,
                           cell_cols(j, r->keep, lcum), r->final_l2, NULL, NULL, &fin);
        if (rc < 0)
            goto out;
        fin.sel = j->fsel->info[li];
        fin.sel_nonzero = j->fsel->nz[li];
    } else {
        j->kfl2 = &r->final_l2;
        rc = method_cells(j, j->X, j->y, j->n_tr, NULL, NULL, 0, &r->lambda, 1, &r->keep, 1, NULL,
                          &fin);
        j->kfl2 = NULL;
        if (rc < 0)
            goto out;
    }
    uint32_t corr = 0;
    if ((rc = head_correct(j, &fin, j->X, j->y, j->n_tr, &corr)) < 0)
        goto out;
    r->train_acc = frac_all(j, corr, j->n_tr, NULL);
    if ((rc = test_correct(j, &fin, &corr)) < 0)
        goto out;
    r->test_acc = frac_all(j, corr, j->n_te, &r->test_correct);
    if (j->spec->cell_test && j->n_te_all) { /* every cell refit on all train rows, tested */
        snprintf(j->stage, sizeof(j->stage), "cell test");
        if (!(r->cell_test = calloc(t->cells, sizeof(double)))) {
            rc = h2t_err_set(H2T_ENOMEM, "cell test");
            goto out;
        }
        j->kfl2 = j->fl2;
        rc = method_cells(j, j->X, j->y, j->n_tr, j->X + (size_t)j->n_tr * j->D, j->y + j->n_tr,
                          j->n_te, j->lambdas, j->nl, j->keeps, j->nk, r->cell_test, NULL);
        j->kfl2 = NULL;
        if (rc < 0)
            goto out;
    }
    rc = fill_result(j, &fin, r);
out:
    head_free(&fin);
    return rc;
}

static int check_memory(const h2t_train_spec *s, uint64_t rows, uint64_t D, int *spill);
static int design_alloc(job *j, size_t n, int spill, int zero);

/* A job over some of j's layers (idx: positions in j's layer table) with its own spec: the
 * columns of every row copied, in j's row order (task order: no CV under way). */
static int subjob(const job *j, const uint32_t *idx, uint32_t nl, const h2t_train_spec *spec,
                  job *out)
{
    memset(out, 0, sizeof(*out));
    out->spec = spec;
    out->o = j->o;
    out->progress = j->progress;
    out->ud = j->ud;
    out->n_tr = j->n_tr;
    out->n_te = j->n_te;
    out->n_tr_all = j->n_tr_all;
    out->n_te_all = j->n_te_all;
    out->shard = j->shard;
    out->K = j->K;
    out->n_layers = nl;
    out->ldim = malloc(nl * sizeof(uint32_t));
    out->loff = malloc((nl + 1) * sizeof(uint32_t));
    out->lid = malloc(nl * sizeof(uint32_t));
    out->lname = calloc(nl, sizeof(char *));
    uint32_t N = j->n_tr + j->n_te;
    out->y = malloc((size_t)N * sizeof(uint32_t));
    if (!out->ldim || !out->loff || !out->lid || !out->lname || !out->y)
        return h2t_err_set(H2T_ENOMEM, "layer table");
    memcpy(out->y, j->y, (size_t)N * sizeof(uint32_t));
    uint32_t off = 0;
    for (uint32_t l = 0; l < nl; l++) {
        out->ldim[l] = j->ldim[idx[l]];
        out->lid[l] = j->lid[idx[l]];
        out->loff[l] = off;
        off += out->ldim[l];
        if (!(out->lname[l] = strdup(j->lname[idx[l]] ? j->lname[idx[l]] : "")))
            return h2t_err_set(H2T_ENOMEM, "layer table");
    }
    out->loff[nl] = off;
    out->D = off;
    int spill = 0, rc = check_memory(spec, N, off, &spill);
    if (rc < 0 || (rc = design_alloc(out, (size_t)N * off, spill, 0)) < 0)
        return rc;
    for (uint32_t i = 0; i < N; i++)
        for (uint32_t l = 0; l < nl; l++)
            memcpy(out->X + (size_t)i * off + out->loff[l],
                   j->X + (size_t)i * j->D + j->loff[idx[l]], out->ldim[l] * sizeof(float));
    return 0;
}

static void job_free(job *j);

/* The smooth methods' Gram matrix of the train rows, when the kernel form pays (n <= D/2 keeps
 * it, n^2 doubles, no larger than the design matrix): one for every fold and lambda. */
static int job_gram(job *j)
{
    const h2t_train_spec *s = j->spec;
    int smooth = s->method == H2T_METHOD_LINEAR || s->method == H2T_METHOD_ALL ||
                 s->method == H2T_METHOD_LAYER;
    uint32_t N = j->shard ? j->n_tr_all : j->n_tr;
    if (j->gram || !smooth || s->optimizer != H2T_OPT_FAST || 2ull * N > j->D)
        return 0;
    j->gram = malloc((size_t)N * N * sizeof(double) + 1);
    if (!j->shard) {
        if (!j->gram)
            return h2t_err_set(H2T_ENOMEM, "Gram matrix %u x %u", N, N);
        return h2t_solver__gram(j->X, N, j->D, j->gram);
    }
    /* row-sharded: the Gram of every participant's training rows in task order, bit for bit
     * one process's (h2t_solver__gram_rows); this participant's row i is task row
     * train_rows[i] (no CV split under way) */
    uint32_t *pos = malloc((size_t)j->n_tr * sizeof(uint32_t) + 1);
    if (!j->gram || !pos)
        abort(); /* as h2t_solver__reduce: the others stop as when a participant dies */
    for (uint32_t i = 0; i < j->n_tr; i++)
        pos[i] = j->shard->train_rows[task_row(j, i)];
    int rc = h2t_solver__gram_rows(&j->o, j->X, j->n_tr, pos, N, j->D, j->gram);
    free(pos);
    return rc;
}

/* method layer: the probes of some layers, run by one thread. */
#define LAYER_THREADS_MAX 16

typedef struct layer_work {
    job *j; /* read only while the threads run */
    const cvplan *p;
    const h2t_train_spec *spec;
    uint32_t first, step; /* layers first, first + step, ... */
    int report;           /* 1: this thread reports progress (the job's own thread only) */
    double pbase, pspan;
    h2t_result *r; /* the curve entries of its layers */
    job best;      /* its best layer's sub-job (best.X NULL: none yet) and table */
    cvtab tab;
    double best_acc;
    uint32_t best_l;
    int rc;
    char err[512];
} layer_work;

static void layer_run(layer_work *w)
{
    const job *j = w->j;
    for (uint32_t l = w->first; l < j->n_layers; l += w->step) {
        job lj;
        cvtab lt;
        double span = w->pspan / j->n_layers;
        memset(&lt, 0, sizeof(lt));
        int rc = subjob(j, &l, 1, w->spec, &lj);
        if (!w->report)
            lj.progress = NULL;
        if (rc == 0 && (rc = job_gram(&lj)) == 0)
            rc = cv_run(&lj, w->p, w->pbase + span * l, span, &lt);
        if (rc < 0) {
            w->rc = rc;
            snprintf(w->err, sizeof(w->err), "%s", h2t_err_detail());
            job_free(&lj);
            tab_free(&lt);
            return;
        }
        w->r->curve_layers[l] = j->lid[l];
        w->r->curve_acc[l] = lt.mean[lt.best];
        if (lt.mean[lt.best] > w->best_acc) {
            w->best_acc = lt.mean[lt.best];
            w->best_l = l;
            job_free(&w->best);
            tab_free(&w->tab);
            w->best = lj;
            w->tab = lt;
        } else {
            job_free(&lj);
            tab_free(&lt);
        }
    }
}

static void *layer_thread(void *arg)
{
    layer_run(arg);
    return NULL;
}

/* One candidate's CV on the plan: the job itself (every-layer methods) or a sub-job of the
 * probe layer (linear, knn), its table in *t and its job in *sj (sj->X NULL: j itself). For
 * layer: every layer's probe, the best layer's job and table, the curve in r. */
static int candidate_cv(job *j, const cvplan *p, const h2t_train_spec *spec, double pbase,
                        double pspan, job *sj, cvtab *t, h2t_result *r)
{
    int rc = 0;
    memset(sj, 0, sizeof(*sj));
    memset(t, 0, sizeof(*t));
    if (spec->method == H2T_METHOD_LINEAR || spec->method == H2T_METHOD_KNN) {
        if ((rc = subjob(j, &j->probe, 1, spec, sj)) < 0 || (rc = job_gram(sj)) < 0)
            return rc;
        return cv_run(sj, p, pbase, pspan, t);
    }
    if (spec->method != H2T_METHOD_LAYER) {
        const h2t_train_spec *keep = j->spec;
        j->spec = spec;
        rc = job_gram(j);
        if (rc == 0)
            rc = cv_run(j, p, pbase, pspan, t);
        j->spec = keep;
        return rc;
    }
    /* layer: an L2 probe per layer on the same folds; the curve is each layer's best cell */
    free(r->curve_layers);
    free(r->curve_acc);
    r->n_curve = 0;
    r->curve_layers = malloc(j->n_layers * sizeof(uint32_t));
    r->curve_acc = malloc(j->n_layers * sizeof(double));
    if (!r->curve_layers || !r->curve_acc)
        return h2t_err_set(H2T_ENOMEM, "layer curve");
    /* the probes are independent: layer l goes to thread l mod T (this thread is thread 0 and
     * alone reports progress); each thread keeps its best layer (ties: the shallower, as it goes
     * up), then the best of those wins (ties: the shallower): the layer one loop would pick */
    uint32_t T = job_threads(j, j->n_layers, LAYER_THREADS_MAX);
    layer_work w[LAYER_THREADS_MAX];
    pthread_t tid[LAYER_THREADS_MAX];
    int running[LAYER_THREADS_MAX] = {0};
    for (uint32_t q = 0; q < T; q++)
        w[q] = (layer_work){.j = j,
                            .p = p,
                            .spec = spec,
                            .first = q,
                            .step = T,
                            .report = q == 0,
                            .pbase = pbase,
                            .pspan = pspan,
                            .r = r,
                            .best_acc = -1};
    for (uint32_t q = 1; q < T; q++)
        running[q] = pthread_create(&tid[q], NULL, layer_thread, &w[q]) == 0;
    for (uint32_t q = 0; q < T; q++) /* this thread's layers, and those of a thread not started */
        if (!q || !running[q])
            layer_run(&w[q]);
    for (uint32_t q = 1; q < T; q++)
        if (running[q])
            pthread_join(tid[q], NULL);
    uint32_t win = T;
    for (uint32_t q = 0; q < T; q++) {
        if (w[q].rc < 0 && rc == 0)
            rc = h2t_err_set(w[q].rc, "%s", w[q].err);
        if (w[q].best.X && (win == T || w[q].best_acc > w[win].best_acc ||
                            (w[q].best_acc == w[win].best_acc && w[q].best_l < w[win].best_l)))
            win = q;
    }
    for (uint32_t q = 0; q < T; q++) {
        if (rc == 0 && q == win) {
            *sj = w[q].best;
            *t = w[q].tab;
        } else {
            job_free(&w[q].best);
            tab_free(&w[q].tab);
        }
    }
    if (rc == 0)
        r->n_curve = j->n_layers;
    return rc;
}

/* The spec auto runs candidate m with: that method's defaults, and auto's shared options. */
static void candidate_spec(const h2t_train_spec *s, uint32_t m, h2t_train_spec *c)
{
    h2t_train_spec_default(c, m);
    c->optimizer = s->optimizer;
    c->folds = s->folds;
    c->seed = s->seed;
    c->steps = s->steps;
    c->lr = s->lr;
    c->batch = s->batch;
    c->max_iter = s->max_iter;
    c->gtol = s->gtol;
    c->final_l2 = s->final_l2;
    c->path_len = s->path_len;
    c->threads = s->threads;
    c->mem_limit = s->mem_limit;
    c->fold_kind = s->fold_kind;
    c->cv_repeats = s->cv_repeats;
    c->one_se = s->one_se;
    c->cell_test = s->cell_test;
}

/* The job on an assembled, normalised matrix. */
static int solve(job *j, h2t_result **out)
{
    const h2t_train_spec *s = j->spec;
    double t0 = h2t_now_s();
    int rc = 0;
    /* head2toe: the job's threads are its own (the CV splits), OpenBLAS runs one thread, so
     * every product is the same for any thread count and the result too */
    int blas = 0;
    if (s->method == H2T_METHOD_HEAD2TOE && !j->o.red) {
        blas = h2t_blas_threads_get();
        h2t_blas_threads(1);
    }
    cvplan plan = {0};
    cvtab tab = {0};
    job sj = {0};
    h2t_train_spec cs[H2T_METHOD_AUTO];
    h2t_result *r = calloc(1, sizeof(*r));
    if (!r)
        return h2t_err_set(H2T_ENOMEM, "result");
    if (!j->shard) {
        j->n_tr_all = j->n_tr;
        j->n_te_all = j->n_te;
    } else { /* the row blocks of this participant's training rows (task order) */
        if (!(j->tkey = malloc((size_t)j->n_tr * sizeof(uint32_t) + 1)))
            abort(); /* as h2t_solver__reduce: the others stop as when a participant dies */
        row_keys(j, NULL, 0, NULL, 1, j->tkey);
        j->o.rkey = j->tkey;
        j->o.nblk = h2t_solver__nblocks(j->n_tr_all);
    }
    uint32_t F = s->folds;
    if (F > 1 && j->n_tr_all / F < 1) {
        rc = h2t_err_set(H2T_EINVAL, "%u training samples cannot make %u folds", j->n_tr_all, F);
        goto out;
    }
    if ((rc = plan_make(j, &plan)) < 0)
        goto out;
    job *win = j; /* the job whose head is returned */
    if (s->method == H2T_METHOD_AUTO) {
        uint32_t mask = s->auto_methods ? s->auto_methods : (1u << H2T_METHOD_AUTO) - 1, nc = 0;
        for (uint32_t m = 0; m < H2T_METHOD_AUTO; m++)
            nc += (mask >> m) & 1;
        r->auto_methods = malloc(nc * sizeof(uint32_t));
        r->auto_acc = malloc(nc * sizeof(double));
        r->auto_se = malloc(nc * sizeof(double));
        if (!r->auto_methods || !r->auto_acc || !r->auto_se) {
            rc = h2t_err_set(H2T_ENOMEM, "auto table");
            goto out;
        }
        double best_acc = -1;
        for (uint32_t m = 0, q = 0; m < H2T_METHOD_AUTO; m++) {
            if (!((mask >> m) & 1))
                continue;
            job cj;
            cvtab ct;
            candidate_spec(s, m, &cs[m]);
            rc = candidate_cv(j, &plan, &cs[m], 0.9 * q / nc, 0.9 / nc, &cj, &ct, r);
            if (rc < 0) {
                job_free(&cj);
                tab_free(&ct);
                goto out;
            }
            r->auto_methods[q] = m;
            r->auto_acc[q] = ct.mean[ct.best];
            r->auto_se[q] = ct.se[ct.best];
            r->n_auto = ++q;
            if (ct.mean[ct.best] > best_acc) { /* ties: the first in method order */
                best_acc = ct.mean[ct.best];
                job_free(&sj);
                tab_free(&tab);
                sj = cj;
                tab = ct;
                j->spec = &cs[m]; /* j runs the winner when it is an every-layer method */
            } else {
                job_free(&cj);
                tab_free(&ct);
            }
        }
        if (j->spec->method != H2T_METHOD_LAYER) { /* the curve of a candidate that lost */
            free(r->curve_layers);
            free(r->curve_acc);
            r->curve_layers = NULL;
            r->curve_acc = NULL;
            r->n_curve = 0;
        }
        win = sj.X ? &sj : j;
        win->spec = j->spec;
        job_grid(win);
    } else if (s->method == H2T_METHOD_LAYER) {
        if ((rc = candidate_cv(j, &plan, s, 0, 0.9, &sj, &tab, r)) < 0)
            goto out;
        win = &sj;
    } else {
        if ((rc = job_gram(j)) < 0 || (rc = cv_run(j, &plan, 0, 0.9, &tab)) < 0)
            goto out;
    }
    double t1 = h2t_now_s();
    if ((rc = finish(win, &plan, &tab, r)) < 0)
        goto out;
    double t2 = h2t_now_s();
    r->t_cv = t1 - t0;
    r->t_final = t2 - t1;
    r->t_total = t2 - t0;
    report(win, 1);
    *out = r;
    r = NULL;
out:
    if (blas)
        h2t_blas_threads(blas);
    j->spec = s;
    job_free(&sj);
    tab_free(&tab);
    plan_free(&plan);
    h2t_result_destroy(r);
    return rc;
}

/* ---- memory ---- */

/* A number from a one-line file ("max": UINT64_MAX), or 0 when unreadable. */
static uint64_t read_u64_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[64] = "";
    if (!f)
        return 0;
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok)
        return 0;
    if (!strncmp(buf, "max", 3))
        return UINT64_MAX;
    return strtoull(buf, NULL, 10);
}

/* What the memory cgroup of this process still allows (its limit less its usage; v2
 * memory.max / memory.current, or v1 memory.limit_in_bytes / memory.usage_in_bytes), or
 * UINT64_MAX when there is no limit or it cannot be read. A container or a systemd unit's
 * MemoryMax= is such a limit, and /proc/meminfo does not show it. */
static uint64_t cgroup_available(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024], dir[1200];
    uint64_t avail = UINT64_MAX;
    if (!f)
        return avail;
    while (fgets(line, sizeof line, f)) {
        char *path = strrchr(line, ':');
        if (!path)
            continue;
        path[strcspn(path, "\n")] = '\0';
        uint64_t lim = 0, use = 0;
        if (!strncmp(line, "0::", 3)) { /* v2 */
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s/memory.max", path + 1);
            lim = read_u64_file(dir);
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s/memory.current", path + 1);
            use = read_u64_file(dir);
        } else if (strstr(line, ":memory:")) { /* v1 */
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", path + 1);
            lim = read_u64_file(dir);
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", path + 1);
            use = read_u64_file(dir);
        }
        /* v1 writes "no limit" as a page-rounded LLONG_MAX */
        if (lim && lim < ((uint64_t)1 << 62)) {
            uint64_t a = lim > use ? lim - use : 0;
            avail = a < avail ? a : avail;
        }
    }
    fclose(f);
    return avail;
}

/* What RLIMIT_DATA still allows (it counts the heap and private mappings, not the spilled
 * matrix's shared file mapping): the limit less VmData, or UINT64_MAX. */
static uint64_t rlimit_data_available(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_DATA, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "VmData: %llu kB", &kb) == 1)
                break;
        fclose(f);
    }
    uint64_t used = (uint64_t)kb * 1024;
    return rl.rlim_cur > used ? (uint64_t)rl.rlim_cur - used : 0;
}

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
    uint64_t avail = UINT64_MAX;
    if (kb) {
        avail = (uint64_t)kb * 1024;
    } else {
        long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0)
            avail = (uint64_t)pages * (uint64_t)psz;
    }
    uint64_t cg = cgroup_available(), dl = rlimit_data_available();
    avail = cg < avail ? cg : avail;
    return dl < avail ? dl : avail;
}

/* Where a design matrix of rows x D floats goes: 0 in memory; 1 (*spill) when it exceeds the
 * budget (spec.mem_limit, else available memory): then it lies in a file-backed mapping (see
 * design_alloc). Errors: H2T_ETOOBIG only when the size does not fit the address space. */
static int check_memory(const h2t_train_spec *s, uint64_t rows, uint64_t D, int *spill)
{
    uint64_t need = rows * D * sizeof(float);
    uint64_t avail = s->mem_limit ? s->mem_limit : h2t_solver__mem_available();
    if (D > UINT32_MAX || need / sizeof(float) / (rows ? rows : 1) != D || need > SIZE_MAX / 2)
        return h2t_err_set(H2T_ETOOBIG,
                           "design matrix %llu samples x %llu features: %llu bytes do not fit "
                           "the address space",
                           (unsigned long long)rows, (unsigned long long)D,
                           (unsigned long long)need);
    *spill = need > avail;
    return 0;
}

/* The directory a spilled design matrix goes to: $H2T_SPILL_DIR, else $TMPDIR, else /var/tmp
 * (a disk on most systems, where /tmp may be memory). */
static const char *spill_dir(void)
{
    const char *d = getenv("H2T_SPILL_DIR");
    if (!d || !*d)
        d = getenv("TMPDIR");
    return d && *d ? d : "/var/tmp";
}

/* j->X for n floats, 64-byte aligned, zeroed when zero is set: in memory, or (spill) in a
 * mapping of an unlinked file of its own in spill_dir(), its blocks reserved up front (a full
 * disk is an error here, not a SIGBUS later). The kernel then keeps in memory only the row
 * blocks the solver's passes touch and writes them back to the file under memory pressure:
 * every pass reads the matrix from the disk when it does not fit. The same numbers either
 * way. */
typedef struct par_arg {
    void (*fn)(void *, uint32_t, uint32_t);
    void *ctx;
    uint32_t a, b;
} par_arg;

static void *par_run(void *arg)
{
    par_arg *p = arg;
    p->fn(p->ctx, p->a, p->b);
    return NULL;
}

static void par_parts(uint32_t T, uint32_t n, void (*fn)(void *, uint32_t, uint32_t), void *ctx)
{
    par_arg pa[PAR_MAX];
    pthread_t tid[PAR_MAX];
    int up[PAR_MAX] = {0};
    T = T < 1 ? 1 : T > PAR_MAX ? PAR_MAX : T;
    for (uint32_t t = 0; t < T; t++)
        pa[t] = (par_arg){fn, ctx, (uint32_t)((uint64_t)n * t / T),
                          (uint32_t)((uint64_t)n * (t + 1) / T)};
    for (uint32_t t = 1; t < T; t++)
        up[t] = pthread_create(&tid[t], NULL, par_run, &pa[t]) == 0;
    par_run(&pa[0]);
    for (uint32_t t = 1; t < T; t++) {
        if (up[t])
            pthread_join(tid[t], NULL);
        else
            par_run(&pa[t]);
    }
}

/* zeroes bytes [a, b) MiB of a buffer (the first touch of its pages, on several threads) */
typedef struct zero_arg {
    char *p;
    size_t bytes;
} zero_arg;

static void zero_part(void *ctx, uint32_t a, uint32_t b)
{
    zero_arg *z = ctx;
    size_t lo = (size_t)a << 20, hi = (size_t)b << 20;
    hi = hi > z->bytes ? z->bytes : hi;
    if (lo < hi)
        memset(z->p + lo, 0, hi - lo);
}

static int design_alloc(job *j, size_t n, int spill, int zero)
{
    size_t bytes = n * sizeof(float);
    j->x_map = 0;
    if (!spill) {
        size_t al = (bytes + 64) & ~(size_t)63;
        j->X = aligned_alloc(64, al); /* free() as h2t_afree */
        if (!j->X)
            return h2t_err_set(H2T_ENOMEM, "design matrix (%zu bytes)", bytes);
        if (zero) { /* on the job's threads: the first touch of the pages is most of the cost */
            zero_arg z = {(char *)j->X, al};
            uint32_t mib = (uint32_t)((al + ((size_t)1 << 20) - 1) >> 20);
            par_parts(job_threads(j, mib, PAR_MAX), mib, zero_part, &z);
        }
        return 0;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/h2tdb-design-XXXXXX", spill_dir());
    int fd = mkstemp(path), e = 0;
    if (fd < 0)
        e = errno;
    else {
        unlink(path);
        e = posix_fallocate(fd, 0, (off_t)(bytes ? bytes : 1));
    }
    void *p = MAP_FAILED;
    if (!e && (p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
                  MAP_FAILED)
        e = errno;
    if (fd >= 0)
        close(fd);
    if (e)
        return h2t_err_set(H2T_ETOOBIG,
                           "design matrix of %zu bytes is above the memory budget and could not "
                           "be spilled to %s (set H2T_SPILL_DIR): %s",
                           bytes, spill_dir(), strerror(e));
    j->X = p;
    j->x_map = bytes ? bytes : 1;
    return 0;
}

static void design_free(job *j)
{
    if (j->x_map)
        munmap(j->X, j->x_map);
    else
        h2t_afree(j->X);
    j->X = NULL;
    j->x_map = 0;
}

static void job_free(job *j)
{
    design_free(j);
    free(j->gram);
    free(j->y);
    free(j->ldim);
    free(j->loff);
    free(j->lid);
    if (j->lname)
        for (uint32_t l = 0; l < j->n_layers; l++)
            free(j->lname[l]);
    free(j->lname);
    selpath_free(j->fsel);
    j->fsel = NULL;
    free(j->tkey);
    free(j->cvkey);
    j->tkey = j->cvkey = NULL;
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
    j->threads = s->threads ? s->threads : (uint32_t)h2t_blas_threads_get();
    return 0;
}

/* Layers, offsets, names, and the label checks shared by both front ends. */
static int job_layers(job *j, uint32_t n_avail, const uint32_t *avail_dims,
                      const uint32_t *avail_ids, const char *const *avail_names)
{
    const h2t_train_spec *s = j->spec;
    int probe_only = s->method == H2T_METHOD_LINEAR || s->method == H2T_METHOD_KNN;
    uint32_t nl = s->n_layers ? s->n_layers : probe_only ? 1 : n_avail;
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
        uint32_t src = s->n_layers ? s->layers[l] : probe_only ? n_avail - 1 : l;
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

/* The job's probe layer (auto's linear and knn candidates): the position of the layer with id
 * lid among the job's layers, else the last one. */
static void job_probe(job *j, uint32_t lid)
{
    j->probe = j->n_layers - 1;
    for (uint32_t l = 0; l < j->n_layers; l++)
        if (j->lid[l] == lid)
            j->probe = l;
}

/* knn keeps its training rows in the result: refused above H2T_KNN_MAX_BYTES, before any
 * copy. */
static int check_knn_size(const h2t_train_spec *s, uint32_t n_tr, uint32_t D)
{
    uint64_t bytes = (uint64_t)n_tr * D * sizeof(float);
    if (s->method == H2T_METHOD_KNN && bytes > H2T_KNN_MAX_BYTES)
        return h2t_err_set(H2T_EINVAL,
                           "knn keeps its %u training rows of %u features in the result: %llu "
                           "bytes, above %llu; choose fewer or smaller layers",
                           n_tr, D, (unsigned long long)bytes,
                           (unsigned long long)H2T_KNN_MAX_BYTES);
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
/* What a row-sharded job checks first: the spec can be sharded, and every training row of the
 * task is held by exactly one participant with its label (one reduction: a count per row, and
 * the test rows). Sets the job's totals. */
static int shard_check(job *j, const h2t_dataset *d, const h2t_shard *sh)
{
    const h2t_train_spec *s = j->spec;
    uint32_t m = s->method, N = sh->n_train_all;
    if (!sh->red || !sh->red->sum || !sh->y_train_all || (d->n_train && !sh->train_rows))
        return h2t_err_set(H2T_EINVAL, "shard: no reducer, labels or row list");
    if (m == H2T_METHOD_KNN ||
        (m == H2T_METHOD_AUTO && (!s->auto_methods || (s->auto_methods >> H2T_METHOD_KNN) & 1)))
        return h2t_err_set(H2T_EINVAL,
                           "knn keeps every training row in its head: it cannot be "
                           "trained row-sharded (auto: leave knn out of --auto-methods)");
    if (s->optimizer != H2T_OPT_FAST)
        return h2t_err_set(H2T_EINVAL, "the adam optimiser's minibatches span shards: row-sharded "
                                       "training runs the fast optimiser only");
    double *cnt = calloc((size_t)N + 2, sizeof(double));
    if (!cnt)
        abort(); /* as h2t_solver__reduce: the others stop as when a participant dies */
    int rc = 0;
    for (uint32_t i = 0; i < d->n_train && rc == 0; i++) {
        uint32_t r = sh->train_rows[i];
        if (r >= N || (i && r <= sh->train_rows[i - 1]))
            rc = h2t_err_set(H2T_EINVAL, "shard: training row %u (index %u) %s", i, r,
                             r >= N ? "is past the task's training rows" : "is not ascending");
        else if (d->y_train[i] != sh->y_train_all[r])
            rc = h2t_err_set(H2T_EINVAL, "shard: training row %u has label %u, the task %u", r,
                             d->y_train[i], sh->y_train_all[r]);
        else
            cnt[r] = 1;
    }
    cnt[N] = d->n_test;
    cnt[N + 1] = rc < 0; /* participants that failed a check here: all of them stop */
    h2t_solver__reduce(&j->o, &(h2t_solver_part){cnt, (size_t)N + 2, 1}, 1);
    if (rc == 0 && cnt[N + 1] > 0)
        rc = h2t_err_set(H2T_EINVAL,
                         "shard: %.0f other participant(s) hold rows that fail the "
                         "checks",
                         cnt[N + 1]);
    for (uint32_t r = 0; r < N && rc == 0; r++)
        if (cnt[r] != 1)
            rc = h2t_err_set(H2T_EINVAL, "shard: training row %u is held by %.0f participants", r,
                             cnt[r]);
    j->n_tr_all = N;
    j->n_te_all = (uint32_t)cnt[N];
    free(cnt);
    if (rc == 0 && !j->n_te_all)
        rc = h2t_err_set(H2T_EINVAL, "empty test split");
    return rc;
}

static int run_dataset(const h2t_dataset *d, const h2t_shard *sh, const h2t_train_spec *spec,
                       int normalised, h2t_solver_progress_fn progress, void *ud,
                       const atomic_int *cancel, h2t_result **out)
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
    if (sh ? !sh->n_train_all || (d->n_train && (!d->x_train || !d->y_train))
           : !d->n_train || !d->x_train || !d->y_train)
        return h2t_err_set(H2T_EINVAL, "empty train split");
    if (sh ? d->n_test && (!d->x_test || !d->y_test) : !d->n_test || !d->x_test || !d->y_test)
        return h2t_err_set(H2T_EINVAL, "empty test split");
    job_init(&j, spec, progress, ud, sh ? NULL : cancel);
    double t0 = h2t_now_s();
    uint64_t Dfull = 0;
    if (sh) {
        j.o.red = sh->red;
        j.shard = sh;
        if ((rc = shard_check(&j, d, sh)) < 0)
            goto out;
    }
    if ((rc = check_labels(sh ? sh->y_train_all : d->y_train, sh ? sh->n_train_all : d->n_train,
                           d->n_classes, "train")) < 0 ||
        (rc = check_labels(d->y_test, d->n_test, d->n_classes, "test")) < 0 ||
        (rc = job_layers(&j, d->n_layers, d->layer_dims, d->layer_ids, d->layer_names)) < 0)
        goto out;
    uint32_t pl = d->has_probe && d->probe < d->n_layers ? d->probe : d->n_layers - 1;
    job_probe(&j, d->layer_ids ? d->layer_ids[pl] : pl);
    for (uint32_t l = 0; l < d->n_layers; l++)
        Dfull += d->layer_dims[l];
    j.n_tr = d->n_train;
    j.n_te = d->n_test;
    j.K = d->n_classes;
    uint32_t N = j.n_tr + j.n_te;
    int spill = 0;
    if ((rc = check_memory(spec, N, j.D, &spill)) < 0 ||
        (rc = check_knn_size(spec, j.n_tr, j.D)) < 0)
        goto out;
    /* not zeroed: the copy below writes every element */
    if ((rc = design_alloc(&j, (size_t)N * j.D, spill, 0)) < 0)
        goto out;
    j.y = malloc((size_t)N * sizeof(uint32_t) + 1);
    soff = malloc((size_t)j.n_layers * sizeof(uint64_t) + 1);
    if (!j.y || !soff) {
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
        for (uint32_t l = 0; l < j.n_layers; l++)
            memcpy(j.X + (size_t)i * j.D + j.loff[l], x + soff[l], j.ldim[l] * sizeof(float));
    }
    if (j.n_tr)
        memcpy(j.y, d->y_train, j.n_tr * sizeof(uint32_t));
    if (j.n_te)
        memcpy(j.y + j.n_tr, d->y_test, j.n_te * sizeof(uint32_t));
    if (!normalised && (rc = rows_ready(&j, j.X, N, NULL, j.n_tr, 0)) < 0)
        goto out;
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
    return run_dataset(d, NULL, spec, 0, progress, ud, cancel, out);
}

int h2t_solver_run_normalised(const h2t_dataset *d, const h2t_train_spec *spec,
                              h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                              h2t_result **out)
{
    return run_dataset(d, NULL, spec, 1, progress, ud, cancel, out);
}

int h2t_solver_run_shard(const h2t_dataset *d, const h2t_shard *sh, const h2t_train_spec *spec,
                         h2t_solver_progress_fn progress, void *ud, h2t_result **out)
{
    if (!sh)
        return h2t_err_set(H2T_EINVAL, "no shard");
    return run_dataset(d, sh, spec, 0, progress, ud, NULL, out);
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
    return h2t_solver__run_store_rows(st, task, spec, NULL, NULL, 0, NULL, 0, progress, ud, cancel,
                                      out);
}

int h2t_solver__run_store_rows(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                               const h2t_shard *sh, const uint32_t *train_pos, uint32_t n_tr,
                               const uint32_t *test_pos, uint32_t n_te,
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
    job_init(&j, spec, progress, ud, sh ? NULL : cancel);
    double t0 = h2t_now_s();
    if (sh) { /* the shard's checks first: one reduction that every participant makes */
        j.o.red = sh->red;
        j.shard = sh;
        uint32_t *yl = malloc((size_t)n_tr * sizeof(uint32_t) + 1);
        if (!yl)
            abort(); /* as h2t_solver__reduce */
        for (uint32_t i = 0; i < n_tr; i++)
            yl[i] = sh->y_train_all[train_pos[i]];
        h2t_dataset d = {.n_train = n_tr, .n_test = n_te, .y_train = yl};
        rc = shard_check(&j, &d, sh);
        free(yl);
        if (rc < 0)
            goto out;
    }
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
    if ((spec->method == H2T_METHOD_LINEAR || spec->method == H2T_METHOD_KNN) && !spec->n_layers) {
        probe_layer = h2t_solver_probe_layer(e); /* the pre-logits, not the model's logits */
        probe_spec = *spec;
        probe_spec.layers = &probe_layer;
        probe_spec.n_layers = 1;
        j.spec = &probe_spec;
    }
    if ((rc = job_layers(&j, e->n_layers, dims, NULL, names)) < 0)
        goto out;
    job_probe(&j, h2t_solver_probe_layer(e));
    uint32_t all_tr = task->n_train + task->n_val, all = all_tr + task->n_test;
    j.n_tr = sh ? n_tr : all_tr;
    j.n_te = sh ? n_te : task->n_test;
    j.K = task->n_classes;
    uint32_t N = j.n_tr + j.n_te;
    /* test rows above h2t_solver__test_stream_min bytes stay in the store until the final
     * head is scored (test_correct), for the methods that use them only there */
    uint32_t m = spec->method;
    if (!sh && !spec->cell_test &&
        (m == H2T_METHOD_LINEAR || m == H2T_METHOD_ALL || m == H2T_METHOD_HEAD2TOE) &&
        (uint64_t)j.n_te * j.D * sizeof(float) > h2t_solver__test_stream_min) {
        j.tst = st;
        j.text = task->extraction;
        N = j.n_tr; /* the rows X holds */
    }
    int spill = 0;
    if ((rc = check_memory(spec, N, j.D, &spill)) < 0 ||
        (rc = check_knn_size(spec, j.n_tr, j.D)) < 0)
        goto out;
    j.y = malloc((size_t)all * sizeof(uint32_t) + 1);
    samples = malloc((size_t)all * sizeof(uint32_t) + 1);
    if (!j.y || !samples) {
        rc = h2t_err_set(H2T_ENOMEM, "sample lists");
        goto out;
    }
    h2t_solver__task_lists(task, samples, j.y);
    if (sh) { /* this participant's rows, in place: train_pos ascending, test_pos likewise */
        for (uint32_t i = 0; i < n_tr; i++) {
            samples[i] = samples[train_pos[i]];
            j.y[i] = j.y[train_pos[i]];
        }
        for (uint32_t i = 0; i < n_te; i++) {
            samples[n_tr + i] = samples[all_tr + test_pos[i]];
            j.y[n_tr + i] = j.y[all_tr + test_pos[i]];
        }
    }
    if ((rc = check_labels(j.y, j.n_tr, j.K, "train")) < 0 ||
        (rc = check_labels(j.y + j.n_tr, j.n_te, j.K, "test")) < 0)
        goto out;
    j.tsamples = samples + j.n_tr;
    if ((rc = design_alloc(&j, (size_t)N * j.D, spill, 1)) < 0)
        goto out;
    for (uint32_t l = 0; l < j.n_layers; l++) {
        if ((rc = check_cancel(&j)) < 0)
            goto out;
        rc = h2t_store_layer_read(st, task->extraction, j.lid[l], samples, 0, N, j.X + j.loff[l],
                                  j.D);
        if (rc < 0) {
            h2t_err_wrap(rc, "reading layer %u (%s): ", j.lid[l], j.lname[l]);
            goto out;
        }
    }
    if ((rc = rows_ready(&j, j.X, N, samples, j.n_tr, 1)) < 0)
        goto out;
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
