/* Row-sharded training (h2t_solver_run_shard): P threads, each holding some of a task's rows,
 * reduce through a barrier-based reducer and must end with the single-process head: the same
 * chosen cell, kept features and predictions, the CV table within one validation row, the
 * objective within 1e-6 relative; the heads of the P participants bit-identical. */
#include <pthread.h>

#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h"
#include "solver/solver.h"
#include "tests/test.h"

#define MAXP 4

/* The threads' reducer: each participant publishes its buffer, then every one sums the P
 * buffers in participant order (the same order everywhere: bit-identical sums) and, after a
 * second barrier (nobody reads any more), writes the sum into its own buffer. */
typedef struct team {
    uint32_t P;
    pthread_barrier_t bar;
    double *slot[MAXP];
    uint64_t calls[MAXP];
} team;

typedef struct member {
    team *t;
    uint32_t rank;
} member;

static void team_sum(void *ud, double *buf, size_t n)
{
    member *m = ud;
    team *t = m->t;
    double *tmp = malloc(n * sizeof(double) + 1);
    t->slot[m->rank] = buf;
    t->calls[m->rank]++;
    pthread_barrier_wait(&t->bar);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (uint32_t q = 0; q < t->P; q++)
            s += t->slot[q][i];
        tmp[i] = s;
    }
    pthread_barrier_wait(&t->bar);
    memcpy(buf, tmp, n * sizeof(double));
    free(tmp);
}

/* A task: L layers of dl features, K classes, feature c mod dl of the informative layers
 * (bits of inf) shifted by amp for class c, over N(0, 1) noise. */
typedef struct task {
    uint32_t n_tr, n_te, L, dl, K, D;
    float *xtr, *xte;
    uint32_t *ytr, *yte, *dims;
} task;

static void task_make(task *t, uint32_t n_tr, uint32_t n_te, uint32_t L, uint32_t dl, uint32_t K,
                      uint32_t inf, double amp, uint64_t seed)
{
    *t = (task){n_tr, n_te, L, dl, K, L * dl, NULL, NULL, NULL, NULL, NULL};
    t->xtr = malloc((size_t)n_tr * t->D * sizeof(float));
    t->xte = malloc((size_t)n_te * t->D * sizeof(float));
    t->ytr = malloc(n_tr * sizeof(uint32_t));
    t->yte = malloc(n_te * sizeof(uint32_t));
    t->dims = malloc(L * sizeof(uint32_t));
    for (uint32_t l = 0; l < L; l++)
        t->dims[l] = dl;
    uint64_t s = seed;
    for (uint32_t i = 0; i < n_tr + n_te; i++) {
        int tr = i < n_tr;
        uint32_t c = (i * 7 + i / 5) % K;
        float *x = tr ? t->xtr + (size_t)i * t->D : t->xte + (size_t)(i - n_tr) * t->D;
        (tr ? t->ytr : t->yte)[tr ? i : i - n_tr] = c;
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t j = 0; j < dl; j++)
                x[l * dl + j] =
                    (float)(h2t_rng_gauss(&s) + (((inf >> l) & 1) && j == c % dl ? amp : 0));
    }
}

static void task_free(task *t)
{
    free(t->xtr);
    free(t->xte);
    free(t->ytr);
    free(t->yte);
    free(t->dims);
}

/* Participant `rank` of P holds the training rows i with (3 i + i / 7) mod P == rank (a shard
 * that is neither contiguous nor round robin) and the test rows i with i mod P == rank. */
typedef struct part {
    team *t;
    member me;
    const task *tk;
    const h2t_train_spec *spec;
    float *xtr, *xte;
    uint32_t *ytr, *yte, *rows;
    uint32_t ntr, nte;
    h2t_result *res;
    int rc;
    char err[256];
} part;

/* The participant of P holding training row i of n: whole row blocks, as h2tdb fit --mpi deals
 * them (blocks [nb q / P, nb (q + 1) / P) to participant q), or (interleaved) rows dealt one
 * by one, which splits every block. */
static int interleaved;
static uint32_t owner(uint32_t i, uint32_t n, uint32_t P)
{
    if (interleaved)
        return (3 * i + i / 7) % P;
    uint32_t nb = h2t_solver__nblocks(n), b = h2t_solver__block_of(i, n), q = 0;
    while ((uint64_t)nb * (q + 1) / P <= b)
        q++;
    return q;
}

static void *part_run(void *arg)
{
    part *p = arg;
    const task *t = p->tk;
    uint32_t P = p->t->P;
    p->xtr = malloc((size_t)t->n_tr * t->D * sizeof(float) + 1);
    p->xte = malloc((size_t)t->n_te * t->D * sizeof(float) + 1);
    p->ytr = malloc(t->n_tr * sizeof(uint32_t) + 1);
    p->yte = malloc(t->n_te * sizeof(uint32_t) + 1);
    p->rows = malloc(t->n_tr * sizeof(uint32_t) + 1);
    for (uint32_t i = 0; i < t->n_tr; i++)
        if (owner(i, t->n_tr, P) == p->me.rank) {
            memcpy(p->xtr + (size_t)p->ntr * t->D, t->xtr + (size_t)i * t->D, t->D * sizeof(float));
            p->ytr[p->ntr] = t->ytr[i];
            p->rows[p->ntr++] = i;
        }
    for (uint32_t i = 0; i < t->n_te; i++)
        if (i % P == p->me.rank) {
            memcpy(p->xte + (size_t)p->nte * t->D, t->xte + (size_t)i * t->D, t->D * sizeof(float));
            p->yte[p->nte++] = t->yte[i];
        }
    h2t_dataset d = {.n_train = p->ntr,
                     .n_test = p->nte,
                     .n_classes = t->K,
                     .n_layers = t->L,
                     .x_train = p->xtr,
                     .y_train = p->ytr,
                     .x_test = p->xte,
                     .y_test = p->yte,
                     .layer_dims = t->dims};
    h2t_reducer red = {team_sum, &p->me};
    h2t_shard sh = {&red, t->n_tr, t->ytr, p->rows};
    p->rc = h2t_solver_run_shard(&d, &sh, p->spec, NULL, NULL, &p->res);
    if (p->rc < 0)
        snprintf(p->err, sizeof(p->err), "%s", h2t_err_detail());
    free(p->xtr);
    free(p->xte);
    free(p->ytr);
    free(p->yte);
    free(p->rows);
    return NULL;
}

/* Run P participants; results[q] OWNED by the caller. */
static void run_team(const task *tk, const h2t_train_spec *sp, uint32_t P, h2t_result **results)
{
    team t = {.P = P};
    part parts[MAXP];
    pthread_t th[MAXP];
    pthread_barrier_init(&t.bar, NULL, P);
    for (uint32_t q = 0; q < P; q++) {
        parts[q] = (part){.t = &t, .me = {&t, q}, .tk = tk, .spec = sp};
        ASSERT_EQ(pthread_create(&th[q], NULL, part_run, &parts[q]), 0);
    }
    for (uint32_t q = 0; q < P; q++)
        pthread_join(th[q], NULL);
    pthread_barrier_destroy(&t.bar);
    for (uint32_t q = 0; q < P; q++) {
        if (parts[q].rc < 0)
            TEST_FAILF("participant %u of %u: %s", q, P, parts[q].err);
        ASSERT_EQ(t.calls[q], t.calls[0]);
        results[q] = parts[q].res;
    }
}

static double rel(double a, double b)
{
    return fabs(a - b) / fmax(fabs(b), 1e-300);
}

static void predictions(const task *t, const h2t_result *r, uint32_t *pred)
{
    uint32_t w = 0;
    for (uint32_t l = 0; l < r->n_layers; l++)
        w += t->dl;
    float *x = malloc((size_t)t->n_te * w * sizeof(float) + 1);
    for (uint32_t i = 0; i < t->n_te; i++)
        for (uint32_t l = 0; l < r->n_layers; l++)
            memcpy(x + (size_t)i * w + l * t->dl,
                   t->xte + (size_t)i * t->D + r->layer_ids[l] * t->dl, t->dl * sizeof(float));
    ASSERT_OK(h2t_result_predict(r, x, t->n_te, pred));
    free(x);
}

/* The one-process solver's view of a task: every row, in order. */
static h2t_dataset task_dataset(const task *t)
{
    return (h2t_dataset){.n_train = t->n_tr,
                         .n_test = t->n_te,
                         .n_classes = t->K,
                         .n_layers = t->L,
                         .x_train = t->xtr,
                         .y_train = t->ytr,
                         .x_test = t->xte,
                         .y_test = t->yte,
                         .layer_dims = t->dims};
}

/* The sharded results equal the single-process one (and each other, bit for bit in the head);
 * the group-lasso selection's objective within sel_tol relative. */
static void check_same_tol(const task *t, const h2t_result *one, h2t_result **sh, uint32_t P,
                           double sel_tol)
{
    uint32_t *p1 = malloc(t->n_te * sizeof(uint32_t)), *p2 = malloc(t->n_te * sizeof(uint32_t));
    predictions(t, one, p1);
    for (uint32_t q = 0; q < P; q++) {
        const h2t_result *r = sh[q];
        fprintf(stderr,
                "  P=%u rank %u: final objective %.12g vs %.12g (rel %.2e), select %.12g "
                "vs %.12g\n",
                P, q, r->final_fit.objective, one->final_fit.objective,
                rel(r->final_fit.objective, one->final_fit.objective), r->select_fit.objective,
                one->select_fit.objective);
        ASSERT(rel(r->final_fit.objective, one->final_fit.objective) <= 1e-6);
        if (one->select_fit.objective != 0)
            ASSERT(rel(r->select_fit.objective, one->select_fit.objective) <= sel_tol);
        if (!interleaved) { /* whole row blocks: every sum is one process's, bit for bit */
            ASSERT(r->final_fit.objective == one->final_fit.objective);
            ASSERT(r->select_fit.objective == one->select_fit.objective);
            ASSERT_EQ(r->final_fit.iters, one->final_fit.iters);
            ASSERT_EQ(r->n_kept, one->n_kept);
            ASSERT(memcmp(r->weights, one->weights,
                          (size_t)r->n_kept * r->n_classes * sizeof(float)) == 0);
            ASSERT(memcmp(r->bias, one->bias, r->n_classes * sizeof(float)) == 0);
            ASSERT(memcmp(r->cv_acc, one->cv_acc,
                          (size_t)one->n_lambdas * one->n_keeps * sizeof(double)) == 0);
        }
        ASSERT_EQ(r->n_train, one->n_train);
        ASSERT_EQ(r->n_test, one->n_test);
        ASSERT(r->lambda == one->lambda);
        ASSERT(r->keep == one->keep);
        ASSERT_EQ(r->cv_repeats, one->cv_repeats);
        /* the same folds: each cell's CV accuracy within one validation row over all the
         * splits (a near tie that the rounding of the sums decides) */
        for (uint32_t c = 0; c < one->n_lambdas * one->n_keeps; c++) {
            double rows = fabs(r->cv_acc[c] - one->cv_acc[c]) * one->n_train * one->cv_repeats;
            if (rows > 1e-9)
                fprintf(stderr, "  cell %u: cv %.6f vs %.6f (%.2f rows)\n", c, r->cv_acc[c],
                        one->cv_acc[c], rows);
            ASSERT(rows <= 1 + 1e-9);
        }
        ASSERT_EQ(r->n_kept, one->n_kept);
        for (uint32_t c = 0; c < one->n_kept; c++) {
            ASSERT_EQ(r->features[c].layer, one->features[c].layer);
            ASSERT_EQ(r->features[c].index, one->features[c].index);
        }
        ASSERT_EQ(r->test_correct, one->test_correct);
        ASSERT(fabs(r->train_acc - one->train_acc) < 1e-12);
        predictions(t, r, p2);
        ASSERT(memcmp(p1, p2, t->n_te * sizeof(uint32_t)) == 0);
        ASSERT(memcmp(r->weights, sh[0]->weights,
                      (size_t)r->n_kept * r->n_classes * sizeof(float)) == 0);
        ASSERT(memcmp(r->bias, sh[0]->bias, r->n_classes * sizeof(float)) == 0);
    }
    free(p1);
    free(p2);
}

/* sp on t run by a team of each size in Ps: every team gives one's head (check_same_tol). */
static void teams_match(const task *t, const h2t_train_spec *sp, const h2t_result *one,
                        const uint32_t *Ps, uint32_t nP, double tol)
{
    h2t_result *sh[MAXP];
    for (uint32_t i = 0; i < nP; i++) {
        run_team(t, sp, Ps[i], sh);
        check_same_tol(t, one, sh, Ps[i], tol);
        for (uint32_t q = 0; q < Ps[i]; q++)
            h2t_result_destroy(sh[q]);
    }
}

static void shard_case(uint32_t method)
{
    task t;
    task_make(&t, 96, 45, 3, 6, 3, 0x5, 1.2, 11);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, method);
    sp.folds = 3;
    if (method == H2T_METHOD_HEAD2TOE) {
        sp.n_lambdas = 2;
        sp.lambdas[0] = 3e-2;
        sp.lambdas[1] = 1e-2;
        sp.n_keeps = 2;
        sp.keeps[0] = 0.2;
        sp.keeps[1] = 0.5;
    } else {
        sp.n_lambdas = 2;
        sp.lambdas[0] = 1e-1;
        sp.lambdas[1] = 1e-3;
    }
    h2t_dataset d = task_dataset(&t);
    h2t_result *one = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &one));
    ASSERT_EQ(one->cv_repeats, 3);
    for (interleaved = 0; interleaved <= 1; interleaved++)
        teams_match(&t, &sp, one, (const uint32_t[]){2, 3}, 2, 1e-6);
    interleaved = 0;
    h2t_result_destroy(one);
    task_free(&t);
}

TEST(solver_shard_linear_equals_one_process)
{
    shard_case(H2T_METHOD_LINEAR);
}

TEST(solver_shard_all_equals_one_process)
{
    shard_case(H2T_METHOD_ALL);
}

TEST_TIMEOUT(solver_shard_head2toe_equals_one_process, 120)
{
    shard_case(H2T_METHOD_HEAD2TOE);
}

/* knn and the Adam path are refused on every participant, naming why. */
TEST(solver_shard_refuses_knn_and_adam)
{
    task t;
    task_make(&t, 30, 9, 2, 4, 3, 0x1, 1.0, 3);
    h2t_train_spec sp;
    h2t_dataset d = task_dataset(&t);
    uint32_t rows[30];
    for (uint32_t i = 0; i < 30; i++)
        rows[i] = i;
    h2t_reducer red = {team_sum, NULL}; /* never called: the checks come first */
    h2t_shard shd = {&red, t.n_tr, t.ytr, rows};
    h2t_result *r = NULL;
    h2t_train_spec_default(&sp, H2T_METHOD_KNN);
    ASSERT_EQ(h2t_solver_run_shard(&d, &shd, &sp, NULL, NULL, &r), H2T_EINVAL);
    ASSERT(strstr(h2t_err_detail(), "knn") != NULL);
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.optimizer = H2T_OPT_ADAM;
    ASSERT_EQ(h2t_solver_run_shard(&d, &shd, &sp, NULL, NULL, &r), H2T_EINVAL);
    ASSERT(strstr(h2t_err_detail(), "adam") != NULL);
    ASSERT(r == NULL);
    task_free(&t);
}

/* Rows missing from every participant, or a label that is not the task's, fail on all of them
 * (one reduction carries the counts): nobody waits for a participant that stopped. */
TEST(solver_shard_rows_checked_together)
{
    task t;
    task_make(&t, 40, 12, 2, 4, 2, 0x1, 1.0, 5);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    /* the last row held by nobody */
    team tm = {.P = 1};
    pthread_barrier_init(&tm.bar, NULL, 1);
    member me = {&tm, 0};
    h2t_reducer red = {team_sum, &me};
    uint32_t rows[40];
    for (uint32_t i = 0; i < 39; i++)
        rows[i] = i;
    h2t_dataset d = {.n_train = 39,
                     .n_test = t.n_te,
                     .n_classes = t.K,
                     .n_layers = t.L,
                     .x_train = t.xtr,
                     .y_train = t.ytr,
                     .x_test = t.xte,
                     .y_test = t.yte,
                     .layer_dims = t.dims};
    h2t_shard shd = {&red, t.n_tr, t.ytr, rows};
    h2t_result *r = NULL;
    ASSERT_EQ(h2t_solver_run_shard(&d, &shd, &sp, NULL, NULL, &r), H2T_EINVAL);
    ASSERT(strstr(h2t_err_detail(), "row 39 is held by 0") != NULL);
    /* a label that differs from the task's */
    uint32_t *y2 = malloc(40 * sizeof(uint32_t));
    memcpy(y2, t.ytr, 40 * sizeof(uint32_t));
    y2[5] ^= 1;
    for (uint32_t i = 0; i < 40; i++)
        rows[i] = i;
    d.n_train = 40;
    shd.y_train_all = y2;
    ASSERT_EQ(h2t_solver_run_shard(&d, &shd, &sp, NULL, NULL, &r), H2T_EINVAL);
    ASSERT(strstr(h2t_err_detail(), "training row 5 has label") != NULL);
    pthread_barrier_destroy(&tm.bar);
    free(y2);
    task_free(&t);
}

/* A wide task shaped like a pooled-feature one: L layers of dl non-negative features, each
 * layer a ReLU of its own random projection of a 16-dimensional latent (the class's mean plus
 * per-sample noise) plus feature noise, so that the columns are strongly correlated and the
 * problem ill-conditioned, as real features are. */
static void task_make_wide(task *t, uint32_t n_tr, uint32_t n_te, uint32_t L, uint32_t dl,
                           uint32_t K, uint64_t seed)
{
    enum { Z = 64 };
    *t = (task){n_tr, n_te, L, dl, K, L * dl, NULL, NULL, NULL, NULL, NULL};
    t->xtr = malloc((size_t)n_tr * t->D * sizeof(float));
    t->xte = malloc((size_t)n_te * t->D * sizeof(float));
    t->ytr = malloc(n_tr * sizeof(uint32_t));
    t->yte = malloc(n_te * sizeof(uint32_t));
    t->dims = malloc(L * sizeof(uint32_t));
    float *proj = malloc((size_t)t->D * Z * sizeof(float));
    double *mu = malloc((size_t)K * Z * sizeof(double));
    uint64_t s = seed;
    for (uint32_t l = 0; l < L; l++)
        t->dims[l] = dl;
    for (size_t q = 0; q < (size_t)t->D * Z; q++)
        proj[q] = (float)h2t_rng_gauss(&s);
    for (size_t q = 0; q < (size_t)K * Z; q++)
        mu[q] = 0.1 * h2t_rng_gauss(&s);
    for (uint32_t i = 0; i < n_tr + n_te; i++) {
        int tr = i < n_tr;
        uint32_t c = (i * 7 + i / 5) % K;
        float *x = tr ? t->xtr + (size_t)i * t->D : t->xte + (size_t)(i - n_tr) * t->D;
        (tr ? t->ytr : t->yte)[tr ? i : i - n_tr] = c;
        double z[Z];
        for (uint32_t a = 0; a < Z; a++)
            z[a] = (mu[(size_t)c * Z + a] + h2t_rng_gauss(&s)) / (1.0 + a);
        for (uint32_t j = 0; j < t->D; j++) {
            double v = 0.05 * h2t_rng_gauss(&s);
            for (uint32_t a = 0; a < Z; a++)
                v += proj[(size_t)j * Z + a] * z[a];
            x[j] = (float)(v > 0 ? v : 0);
        }
    }
    free(proj);
    free(mu);
}

/* On a wide task (n far below D/2, the one-process kernel form; about the 10-shot task's
 * 100 training rows x 10 classes, with 12,288 features) the sharded objective is the single
 * process's within 1e-6 relative, with CV over 3 folds x 3 repeats: L-BFGS on such a problem
 * turns rounding differences into objective differences of 1e-6 and more after a few hundred
 * iterations, so the participants must run the kernel form's iterates on the same Gram. */
TEST_TIMEOUT(solver_shard_wide_kernel_equals_one_process, 240)
{
    task t;
    task_make_wide(&t, 100, 40, 48, 256, 10, 17);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.folds = 3;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 1e-3;
    h2t_dataset d = task_dataset(&t);
    h2t_result *one = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &one));
    fprintf(stderr, "  one process: lambda %g, %u iterations, objective %.12g\n", one->lambda,
            one->final_fit.iters, one->final_fit.objective);
    ASSERT(one->final_fit.iters >= 100); /* a problem that takes L-BFGS a while */
    teams_match(&t, &sp, one, (const uint32_t[]){1, 2, 4}, 3, 1e-6);
    h2t_result_destroy(one);
    task_free(&t);
}

/* head2toe on a wide task: its heads (every one of 2,048 features over 40 rows) run in the
 * kernel form, on the CV splits and for the final head, sharded as in one process. Every
 * feature is kept: at a smaller keep the ranking of the group-lasso path decides the head's
 * columns, and there (3 of 614 columns at keep 0.3 on this task) features whose path entry
 * and norm tie to rounding can change places, as summation order changes the path's
 * gradients in their last bits. The group-lasso fit itself (the select objective) stops at a
 * KKT residual of 1e-2 lambda, where the summation order moves its objective by about 1e-6
 * (7e-7 to 1e-6 here, by OpenBLAS kernel set): it is held to 1e-5; the head to 1e-6. */
TEST_TIMEOUT(solver_shard_wide_head2toe_equals_one_process, 240)
{
    task t;
    task_make_wide(&t, 40, 20, 8, 256, 4, 23);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 3;
    sp.cv_repeats = 1;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 1e-2;
    sp.n_keeps = 1;
    sp.keeps[0] = 1;
    h2t_dataset d = task_dataset(&t);
    h2t_result *one = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &one));
    fprintf(stderr, "  one process: keep %g (%u features), final head %u iterations\n", one->keep,
            one->n_kept, one->final_fit.iters);
    ASSERT(2 * t.n_tr <= one->n_kept); /* the final head is in the kernel form */
    teams_match(&t, &sp, one, (const uint32_t[]){2, 3}, 2, 1e-5);
    h2t_result_destroy(one);
    task_free(&t);
}

/* The primal form (every training row together more than D / 2: 400 rows x 192 correlated
 * features) at a small ridge, with CV: L-BFGS runs on the loss and gradient summed over the
 * participants' rows, and a ridge of 1e-5 leaves the stopping test loose enough that a
 * different summation order ends several 1e-6 away (5.9e-6 relative with one participant when
 * each participant's sums were its own rows' in one product). By row blocks the sums, and so the
 * objective, the iterations and the head, are one process's bit for bit on 1, 2, 3 and 4
 * participants. */
TEST_TIMEOUT(solver_shard_primal_small_lambda_bitwise, 240)
{
    task t;
    task_make_wide(&t, 400, 60, 3, 64, 10, 29);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.folds = 3;
    sp.cv_repeats = 1;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 1e-5;
    h2t_dataset d = task_dataset(&t);
    h2t_result *one = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &one));
    fprintf(stderr, "  one process: lambda %g, %u iterations, objective %.12g\n", one->lambda,
            one->final_fit.iters, one->final_fit.objective);
    ASSERT(2 * t.n_tr > t.D); /* the primal form */
    teams_match(&t, &sp, one, (const uint32_t[]){1, 2, 3, 4}, 4, 1e-6);
    h2t_result_destroy(one);
    task_free(&t);
}

/* Head2Toe's group-lasso path at small lambdas (1e-3 and 1e-4, down from lambda_max) on a wide
 * task (60 rows x 1,024 features, 6 classes, 3 folds): FISTA and the support's L-BFGS sum
 * their gradients over the participants every step and stop at a KKT residual of 1e-2 lambda,
 * where a different summation order moves the objective and the ranking (4.3e-6 relative on 2
 * participants when each participant's sums were its own rows' in one product). By row blocks the
 * path's objective, the kept features, the heads and the CV table are one process's bit for
 * bit on 2 and 3 participants. */
TEST_TIMEOUT(solver_shard_head2toe_small_lambda_bitwise, 300)
{
    task t;
    task_make_wide(&t, 60, 30, 8, 128, 6, 31);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.folds = 3;
    sp.cv_repeats = 1;
    sp.n_lambdas = 2;
    sp.lambdas[0] = 1e-3;
    sp.lambdas[1] = 1e-4;
    sp.n_keeps = 2;
    sp.keeps[0] = 0.02;
    sp.keeps[1] = 0.1;
    h2t_dataset d = task_dataset(&t);
    h2t_result *one = NULL;
    ASSERT_OK(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &one));
    fprintf(stderr, "  one process: lambda %g, keep %g (%u features), select objective %.12g\n",
            one->lambda, one->keep, one->n_kept, one->select_fit.objective);
    teams_match(&t, &sp, one, (const uint32_t[]){2, 3}, 2, 1e-6);
    h2t_result_destroy(one);
    task_free(&t);
}
