/* Solver tests of the methods over the same features (knn, ncm, layer, auto) and of model
 * selection (stratified and contiguous folds, repeats, the one-standard-error rule). */
#include <sys/stat.h>

#include "common/blas.h"
#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h"
#include "solver/solver.h"
#include "tests/test.h"

/* A task of L layers of dim dl, K classes: in the layers listed in `inf` (a bit per layer) the
 * class shifts feature (c mod dl) by amp over N(0, 1) noise; the other layers are noise. Labels
 * are i mod K unless `sorted` (then the train rows come class by class). */
typedef struct task {
    uint32_t n_tr, n_te, L, dl, K, D;
    float *xtr, *xte;
    uint32_t *ytr, *yte, *dims;
} task;

static void task_make(task *t, uint32_t n_tr, uint32_t n_te, uint32_t L, uint32_t dl, uint32_t K,
                      uint32_t inf, double amp, int sorted, uint64_t seed)
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
    for (uint32_t i = 0; i < n_tr + n_te; i++) {
        int tr = i < n_tr;
        uint32_t c = tr && sorted ? (uint32_t)((uint64_t)i * K / n_tr) : i % K;
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

static h2t_dataset task_data(const task *t)
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

/* Per-layer L2 normalisation of one row (the solver's). */
static void norm_row(const task *t, const float *x, double *o)
{
    for (uint32_t l = 0; l < t->L; l++) {
        double s = 0;
        for (uint32_t j = 0; j < t->dl; j++)
            s += (double)x[l * t->dl + j] * x[l * t->dl + j];
        for (uint32_t j = 0; j < t->dl; j++)
            o[l * t->dl + j] = s > 0 ? x[l * t->dl + j] / sqrt(s) : 0;
    }
}

static h2t_result *run(const task *t, const h2t_train_spec *sp)
{
    h2t_dataset d = task_data(t);
    h2t_result *r = NULL;
    int rc = h2t_solver_run_data(&d, sp, NULL, NULL, NULL, &r);
    if (rc < 0) {
        fprintf(stderr, "solver: %s\n", h2t_err_detail());
        return NULL;
    }
    return r;
}

/* predict() on the raw test rows (the result's layers of them) agrees with the counted test
 * accuracy */
static uint32_t predict_correct(const task *t, const h2t_result *r)
{
    uint32_t *pred = malloc(t->n_te * sizeof(uint32_t)), c = 0, w = r->n_layers * t->dl;
    float *x = malloc((size_t)t->n_te * w * sizeof(float));
    for (uint32_t i = 0; i < t->n_te; i++)
        for (uint32_t l = 0; l < r->n_layers; l++)
            memcpy(x + (size_t)i * w + l * t->dl,
                   t->xte + (size_t)i * t->D + r->layer_ids[l] * t->dl, t->dl * sizeof(float));
    if (h2t_result_predict(r, x, t->n_te, pred) < 0)
        c = UINT32_MAX;
    free(x);
    for (uint32_t i = 0; c != UINT32_MAX && i < t->n_te; i++)
        c += pred[i] == t->yte[i];
    free(pred);
    return c;
}

/* The blob of a result with the timings zeroed (they differ run to run). */
static void *blob_of(h2t_result *r, size_t *len)
{
    void *b = NULL;
    r->t_load = r->t_cv = r->t_final = r->t_total = 0;
    if (h2t_result_encode(r, &b, len) < 0)
        return NULL;
    return b;
}

/* Decode(encode(r)) re-encodes to the same bytes. */
static void check_roundtrip(h2t_result *r)
{
    size_t len = 0, len2 = 0;
    void *b = blob_of(r, &len), *b2 = NULL;
    h2t_result *r2 = NULL;
    ASSERT(b != NULL);
    ASSERT_OK(h2t_result_decode(b, len, &r2));
    ASSERT_OK(h2t_result_encode(r2, &b2, &len2));
    ASSERT_EQ(len, len2);
    ASSERT(memcmp(b, b2, len) == 0);
    h2t_result_destroy(r2);
    free(b);
    free(b2);
}

TEST(solver_heads_stratified_folds_keep_class_counts)
{
    enum { N = 103, K = 4, F = 5, R = 3 };
    uint32_t y[N], perm[R * N], bnd[R * (F + 1)], perm2[R * N], bnd2[R * (F + 1)];
    for (uint32_t i = 0; i < N; i++) /* unbalanced, class by class (the worst order for blocks) */
        y[i] = i < 50 ? 0 : i < 80 ? 1 : i < 97 ? 2 : 3;
    ASSERT_OK(h2t_solver__folds(y, N, K, F, R, H2T_FOLDS_STRATIFIED, 7, perm, bnd));
    for (uint32_t r = 0; r < R; r++) {
        uint32_t seen[N] = {0}, cnt[F][K];
        memset(cnt, 0, sizeof(cnt));
        ASSERT_EQ(bnd[r * (F + 1)], 0);
        ASSERT_EQ(bnd[r * (F + 1) + F], N);
        for (uint32_t f = 0; f < F; f++) {
            uint32_t a = bnd[r * (F + 1) + f], e = bnd[r * (F + 1) + f + 1];
            ASSERT(e - a == N / F || e - a == N / F + 1); /* sizes differ by at most one */
            for (uint32_t q = a; q < e; q++) {
                uint32_t i = perm[r * N + q];
                ASSERT(i < N);
                if (q > a)
                    ASSERT(perm[r * N + q - 1] < i); /* task order inside a fold */
                seen[i]++;
                cnt[f][y[i]]++;
            }
        }
        for (uint32_t i = 0; i < N; i++)
            ASSERT_EQ(seen[i], 1); /* every row validated exactly once per repeat */
        static const uint32_t total[K] = {50, 30, 17, 6};
        for (uint32_t c = 0; c < K; c++) /* each class spread evenly: floor or ceil of n_c / F */
            for (uint32_t f = 0; f < F; f++)
                ASSERT(cnt[f][c] == total[c] / F || cnt[f][c] == (total[c] + F - 1) / F);
    }
    /* repeats differ; the same seed gives the same folds, another seed others */
    ASSERT(memcmp(perm, perm + N, N * sizeof(uint32_t)) != 0);
    ASSERT_OK(h2t_solver__folds(y, N, K, F, R, H2T_FOLDS_STRATIFIED, 7, perm2, bnd2));
    ASSERT(memcmp(perm, perm2, sizeof(perm)) == 0 && memcmp(bnd, bnd2, sizeof(bnd)) == 0);
    ASSERT_OK(h2t_solver__folds(y, N, K, F, R, H2T_FOLDS_STRATIFIED, 8, perm2, bnd2));
    ASSERT(memcmp(perm, perm2, sizeof(perm)) != 0);
    /* contiguous: the blocks of the paper's setup */
    ASSERT_OK(h2t_solver__folds(y, N, K, F, 1, H2T_FOLDS_CONTIGUOUS, 7, perm2, bnd2));
    for (uint32_t f = 0; f <= F; f++)
        ASSERT_EQ(bnd2[f], f * N / F);
}

/* On a training set stored class by class, contiguous blocks hold out whole classes (a fold's
 * class is missing from its training part), stratified folds do not. */
TEST(solver_heads_stratified_default_beats_blocks_on_sorted_data)
{
    task t;
    task_make(&t, 60, 30, 2, 8, 3, 3, 4.0, 1, 5);
    for (uint32_t q = 0; q < 60 * t.D; q++) /* every cosine positive: an absent class's zero */
        t.xtr[q] += 3;                      /* mean never wins */
    for (uint32_t q = 0; q < 30 * t.D; q++)
        t.xte[q] += 3;
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_NCM);
    sp.folds = 3;
    ASSERT_EQ(sp.fold_kind, H2T_FOLDS_STRATIFIED); /* the default */
    h2t_result *rs = run(&t, &sp);
    sp.fold_kind = H2T_FOLDS_CONTIGUOUS;
    h2t_result *rc = run(&t, &sp);
    ASSERT(rs && rc);
    ASSERT_EQ(rs->fold_kind, H2T_FOLDS_STRATIFIED);
    ASSERT_EQ(rs->cv_repeats, 3); /* 60 < 500 samples: repeated by default */
    ASSERT_EQ(rc->fold_kind, H2T_FOLDS_CONTIGUOUS);
    ASSERT_EQ(rc->cv_repeats, 1);
    ASSERT(rs->val_acc > 0.9);
    ASSERT(rc->val_acc < 0.01); /* every validation row is of the class left out */
    ASSERT_EQ(rs->test_correct, rc->test_correct); /* same head: ncm has no grid */
    h2t_result_destroy(rs);
    h2t_result_destroy(rc);
    task_free(&t);
}

TEST(solver_heads_cv_repeats)
{
    task t;
    task_make(&t, 40, 20, 2, 6, 2, 1, 3.0, 0, 9);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_NCM);
    sp.folds = 4;
    sp.cv_repeats = 5;
    h2t_result *r5 = run(&t, &sp);
    sp.cv_repeats = 1;
    h2t_result *r1 = run(&t, &sp);
    ASSERT(r5 && r1);
    ASSERT_EQ(r5->cv_repeats, 5);
    ASSERT_EQ(r1->cv_repeats, 1);
    /* fold_acc is the per-fold mean over the repeats; val_acc their mean */
    double m = 0;
    for (uint32_t f = 0; f < 4; f++)
        m += r5->fold_acc[f];
    ASSERT_NEAR(m / 4, r5->val_acc, 1e-12);
    ASSERT(r5->cv_se[0] > 0);
    h2t_result_destroy(r5);
    h2t_result_destroy(r1);
    /* 500 samples and more: one repeat by default */
    task t2;
    task_make(&t2, 500, 10, 1, 4, 2, 1, 3.0, 0, 3);
    h2t_train_spec_default(&sp, H2T_METHOD_NCM);
    h2t_result *rb = run(&t2, &sp);
    ASSERT(rb);
    ASSERT_EQ(rb->cv_repeats, 1);
    h2t_result_destroy(rb);
    task_free(&t2);
    task_free(&t);
}

TEST(solver_heads_one_se_rule)
{
    /* 2 lambdas x 2 keeps, 4 splits. Means: cell0 0.80, cell1 0.85, cell2 0.86 (best, SE
     * 0.02), cell3 0.70. */
    const double acc[4 * 4] = {0.80, 0.83, 0.84, 0.70, /* split 0 */
                               0.80, 0.87, 0.88, 0.70, /* split 1 */
                               0.80, 0.83, 0.84, 0.70, /* split 2 */
                               0.80, 0.87, 0.88, 0.70};
    double mean[4], se[4];
    ASSERT_EQ(h2t_solver__choose(acc, 4, 2, 2, 0, 0, mean, se), 2);
    ASSERT_NEAR(mean[2], 0.86, 1e-12);
    ASSERT_NEAR(se[2], sqrt(4 * 0.02 * 0.02 / 3) / 2, 1e-12);
    /* within one SE (0.86 - 0.0115): cell 1 (0.85) is the first in grid order */
    ASSERT_EQ(h2t_solver__choose(acc, 4, 2, 2, 0, 1, mean, se), 1);
    /* keep-major order (head2toe: smallest keep first): cells 0, 2, 1, 3: cell 2 comes before
     * cell 1, and 0.80 is out of reach */
    ASSERT_EQ(h2t_solver__choose(acc, 4, 2, 2, 1, 1, mean, se), 2);
    /* ties without the rule: the first */
    const double tie[2] = {0.5, 0.5};
    ASSERT_EQ(h2t_solver__choose(tie, 1, 2, 1, 0, 0, mean, se), 0);

    /* end to end: the chosen cell obeys the rule on the result's own table */
    task t;
    task_make(&t, 80, 40, 2, 10, 3, 1, 1.2, 0, 13);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.folds = 4;
    sp.one_se = 1;
    h2t_result *r = run(&t, &sp);
    ASSERT(r);
    ASSERT_EQ(r->one_se, 1);
    uint32_t best = 0, chosen = UINT32_MAX;
    for (uint32_t c = 0; c < r->n_lambdas; c++) {
        if (r->cv_acc[c] > r->cv_acc[best])
            best = c;
        if (r->lambdas[c] == r->lambda)
            chosen = c;
    }
    ASSERT(chosen != UINT32_MAX);
    ASSERT(r->cv_acc[chosen] >= r->cv_acc[best] - r->cv_se[best]);
    for (uint32_t c = 0; c < chosen; c++) /* no stronger lambda qualified */
        ASSERT(r->cv_acc[c] < r->cv_acc[best] - r->cv_se[best]);
    check_roundtrip(r);
    h2t_result_destroy(r);
    task_free(&t);
}

TEST(solver_heads_knn_votes_and_ties)
{
    /* two identical prototypes of different classes: similarity tie -> the lower index */
    const float P[4 * 2] = {1, 0, 1, 0, 0, 1, 0, 1};
    const uint32_t py[4] = {1, 0, 2, 2};
    const float Q[2 * 2] = {1, 0, 0.1f, 1};
    uint32_t ks[3] = {1, 2, 4}, pred[3 * 2];
    ASSERT_OK(h2t_solver__knn(Q, 2, P, py, 4, 2, 3, ks, 3, pred, NULL));
    ASSERT_EQ(pred[0], 1); /* k 1: prototype 0 (label 1) before prototype 1 */
    ASSERT_EQ(pred[1], 2);
    ASSERT_EQ(pred[2], 0); /* k 2: one vote each, equal summed similarity: the lower class */
    ASSERT_EQ(pred[3], 2);
    ASSERT_EQ(pred[4], 2); /* k 4 for query 0: votes 1, 1, 2 (class 2 far): class 2 wins 2 */
    ASSERT_EQ(pred[5], 2);
    /* k above the prototype count counts them all */
    uint32_t k9 = 9, p9[2];
    float share[2 * 3];
    ASSERT_OK(h2t_solver__knn(Q, 2, P, py, 4, 2, 3, &k9, 1, p9, share));
    ASSERT_EQ(p9[0], 2);
    ASSERT(share[0] == 0.25f && share[1] == 0.25f && share[2] == 0.5f); /* vote shares */
}

/* Separable clusters: knn with k = 1 is exact on the test rows, predict() agrees, and the
 * result keeps its training rows (bounded) through a blob round trip. */
TEST(solver_heads_knn_separable)
{
    task t;
    task_make(&t, 60, 30, 2, 6, 3, 3, 12.0, 0, 17);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_KNN);
    sp.folds = 3;
    sp.n_lambdas = 1;
    sp.lambdas[0] = 1;
    h2t_result *r = run(&t, &sp);
    ASSERT(r);
    ASSERT_EQ(r->method, H2T_METHOD_KNN);
    ASSERT_EQ(r->knn_k, 1);
    ASSERT_EQ(r->n_layers, 1); /* the probe layer (here the last) */
    ASSERT_EQ(r->layer_ids[0], 1);
    ASSERT_EQ(r->n_protos, 60);
    ASSERT_EQ(r->n_kept, 6);
    ASSERT_EQ(r->test_correct, 30);
    ASSERT_NEAR(r->val_acc, 1.0, 1e-12);
    ASSERT_EQ(predict_correct(&t, r), 30);
    /* a training row is its own nearest neighbour */
    uint32_t p;
    ASSERT_OK(h2t_result_predict(r, t.xtr + 7 * t.D + 6, 1, &p));
    ASSERT_EQ(p, t.ytr[7]);
    h2t_result_destroy(r);
    /* the default k grid, every layer listed: CV chooses k, predict still agrees */
    h2t_train_spec_default(&sp, H2T_METHOD_KNN);
    sp.folds = 3;
    static const uint32_t both[] = {0, 1};
    sp.layers = both;
    sp.n_layers = 2;
    r = run(&t, &sp);
    ASSERT(r);
    ASSERT_EQ(r->n_lambdas, 5);
    ASSERT(r->lambdas[0] == 20 && r->lambdas[4] == 1); /* k descending: the smoothest first */
    ASSERT_EQ((double)r->knn_k, r->lambda);
    ASSERT_EQ(predict_correct(&t, r), r->test_correct);
    check_roundtrip(r);
    size_t len = 0;
    void *b = blob_of(r, &len);
    h2t_result *r2 = NULL;
    ASSERT_OK(h2t_result_decode(b, len, &r2));
    ASSERT_EQ(r2->n_protos, 60);
    ASSERT_EQ(predict_correct(&t, r2), r->test_correct);
    /* probabilities: each class's share of the k votes, the vote itself as pred */
    uint32_t pp[3], pq[3];
    float prob[3 * 3];
    float *x3 = malloc(3 * 12 * sizeof(float));
    memcpy(x3, t.xte, 3 * 12 * sizeof(float));
    ASSERT_OK(h2t_result_proba(r2, x3, 3, pp, prob));
    ASSERT_OK(h2t_result_predict(r2, x3, 3, pq));
    for (uint32_t i = 0; i < 3; i++) {
        ASSERT_EQ(pp[i], pq[i]);
        float sum = 0;
        for (uint32_t c = 0; c < 3; c++) {
            sum += prob[i * 3 + c];
            ASSERT(prob[i * 3 + c] <= prob[i * 3 + pp[i]]);
            ASSERT_NEAR(prob[i * 3 + c] * r2->knn_k, round(prob[i * 3 + c] * r2->knn_k), 1e-5);
        }
        ASSERT_NEAR(sum, 1, 1e-6);
    }
    free(x3);
    char *js = h2t_result_json(r2);
    ASSERT_CONTAINS(js, "\"method\": \"knn\"");
    ASSERT_CONTAINS(js, "\"knn_rows\": 60");
    free(js);
    ASSERT_OK(h2t_result_export(r2, "head"));
    struct stat st;
    ASSERT_EQ(stat("head/knn_rows.npy", &st), 0);
    ASSERT_EQ((long long)st.st_size, 128 + 4LL * 60 * 12);
    free(b);
    h2t_result_destroy(r2);
    h2t_result_destroy(r);
    /* a result above the bound is refused, naming the size */
    h2t_train_spec_default(&sp, H2T_METHOD_KNN);
    sp.mem_limit = 0;
    enum { NB = 4100, DB = 4096 }; /* 4100 x 4096 x 4 bytes > 64 MiB: refused before a copy */
    float *xb = calloc((size_t)NB * DB, sizeof(float));
    uint32_t *yb = malloc(NB * sizeof(uint32_t)), db = DB;
    for (uint32_t i = 0; i < NB; i++)
        yb[i] = i % 2;
    h2t_dataset d = {.n_train = NB - 2,
                     .n_test = 2,
                     .n_classes = 2,
                     .n_layers = 1,
                     .x_train = xb,
                     .y_train = yb,
                     .x_test = xb + (size_t)(NB - 2) * DB,
                     .y_test = yb + NB - 2,
                     .layer_dims = &db};
    h2t_result *rb = NULL;
    ASSERT_EQ(h2t_solver_run_data(&d, &sp, NULL, NULL, NULL, &rb), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "knn keeps its 4098 training rows");
    free(xb);
    free(yb);
    task_free(&t);
}

/* ncm's head is the hand-computed normalised class means of the normalised rows. */
TEST(solver_heads_ncm_equals_hand_computation)
{
    task t;
    task_make(&t, 45, 30, 3, 5, 3, 2, 1.5, 0, 23);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_NCM);
    sp.folds = 3;
    h2t_result *r = run(&t, &sp);
    ASSERT(r);
    ASSERT_EQ(r->method, H2T_METHOD_NCM);
    ASSERT_EQ(r->n_kept, t.D); /* every layer */
    double *mu = calloc((size_t)t.K * t.D, sizeof(double)), *x = malloc(t.D * sizeof(double));
    for (uint32_t i = 0; i < t.n_tr; i++) {
        norm_row(&t, t.xtr + (size_t)i * t.D, x);
        for (uint32_t q = 0; q < t.D; q++)
            mu[(size_t)t.ytr[i] * t.D + q] += x[q];
    }
    for (uint32_t c = 0; c < t.K; c++) {
        double s = 0;
        for (uint32_t q = 0; q < t.D; q++)
            s += mu[(size_t)c * t.D + q] * mu[(size_t)c * t.D + q];
        for (uint32_t q = 0; q < t.D; q++) {
            mu[(size_t)c * t.D + q] /= sqrt(s);
            ASSERT_NEAR(r->weights[(size_t)c * t.D + q], mu[(size_t)c * t.D + q], 1e-6);
        }
        ASSERT(r->bias[c] == 0);
    }
    uint32_t corr = 0;
    for (uint32_t i = 0; i < t.n_te; i++) { /* cosine to each mean */
        norm_row(&t, t.xte + (size_t)i * t.D, x);
        uint32_t best = 0;
        double bs = -2;
        for (uint32_t c = 0; c < t.K; c++) {
            double dot = 0, nx = 0;
            for (uint32_t q = 0; q < t.D; q++) {
                dot += x[q] * mu[(size_t)c * t.D + q];
                nx += x[q] * x[q];
            }
            if (dot / sqrt(nx) > bs) {
                bs = dot / sqrt(nx);
                best = c;
            }
        }
        corr += best == t.yte[i];
    }
    ASSERT_EQ(r->test_correct, corr);
    ASSERT_EQ(predict_correct(&t, r), corr);
    ASSERT_GT(corr, 15);
    check_roundtrip(r);
    free(mu);
    free(x);
    h2t_result_destroy(r);
    task_free(&t);
}

/* Only layer 2 of 4 carries the class: layer picks it, and its curve says so. */
TEST(solver_heads_layer_picks_informative_layer)
{
    task t;
    task_make(&t, 90, 60, 4, 8, 3, 1u << 2, 2.5, 0, 29);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_LAYER);
    sp.folds = 3;
    h2t_result *r = run(&t, &sp);
    ASSERT(r);
    ASSERT_EQ(r->method, H2T_METHOD_LAYER);
    ASSERT_EQ(r->n_layers, 1);
    ASSERT_EQ(r->layer_ids[0], 2);
    ASSERT_EQ(r->n_curve, 4);
    for (uint32_t l = 0; l < 4; l++) {
        ASSERT_EQ(r->curve_layers[l], l);
        if (l != 2)
            ASSERT(r->curve_acc[l] < r->curve_acc[2] - 0.2);
    }
    ASSERT_NEAR(r->val_acc, r->curve_acc[2], 1e-12);
    ASSERT(r->test_acc > 0.8);
    ASSERT_EQ(predict_correct(&t, r), r->test_correct);
    check_roundtrip(r);
    char *js = h2t_result_json(r);
    ASSERT_CONTAINS(js, "\"layer_curve\": [{\"layer\": 0");
    free(js);
    h2t_result_destroy(r);
    sp.folds = 1; /* the layer is chosen by CV */
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "folds 1");
    task_free(&t);
}

/* auto: the winner is the best of its CV table, the table covers the candidates asked for,
 * and the head is the winner's (predict agrees). */
TEST_TIMEOUT(solver_heads_auto_picks_best_of_table, 120)
{
    task t;
    task_make(&t, 90, 60, 3, 8, 3, 1u << 1, 2.0, 0, 31);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_AUTO);
    sp.folds = 3;
    sp.cv_repeats = 1;
    h2t_result *r = run(&t, &sp);
    ASSERT(r);
    ASSERT_EQ(r->n_auto, 6);
    uint32_t best = 0;
    for (uint32_t q = 0; q < r->n_auto; q++) {
        ASSERT_EQ(r->auto_methods[q], q); /* method order */
        if (r->auto_acc[q] > r->auto_acc[best])
            best = q;
    }
    ASSERT_EQ(r->method, r->auto_methods[best]);
    ASSERT_NEAR(r->val_acc, r->auto_acc[best], 1e-12);
    ASSERT_EQ(predict_correct(&t, r), r->test_correct);
    /* the candidates' own runs on the same folds give the same CV accuracies */
    for (uint32_t q = 0; q < r->n_auto; q++) {
        if (r->auto_methods[q] == H2T_METHOD_HEAD2TOE)
            continue; /* the slow one: covered by the table check above */
        h2t_train_spec one;
        h2t_train_spec_default(&one, r->auto_methods[q]);
        one.folds = 3;
        one.cv_repeats = 1;
        h2t_result *ro = run(&t, &one);
        ASSERT(ro);
        ASSERT_NEAR(ro->val_acc, r->auto_acc[q], 1e-12);
        h2t_result_destroy(ro);
    }
    check_roundtrip(r);
    char *js = h2t_result_json(r);
    ASSERT_CONTAINS(js, "\"auto\": {\"chosen\": ");
    free(js);
    h2t_result_destroy(r);
    /* a subset of candidates */
    sp.auto_methods = 1u << H2T_METHOD_NCM | 1u << H2T_METHOD_LINEAR;
    r = run(&t, &sp);
    ASSERT(r);
    ASSERT_EQ(r->n_auto, 2);
    ASSERT_EQ(r->auto_methods[0], H2T_METHOD_LINEAR);
    ASSERT_EQ(r->auto_methods[1], H2T_METHOD_NCM);
    ASSERT(r->method == H2T_METHOD_LINEAR || r->method == H2T_METHOD_NCM);
    h2t_result_destroy(r);
    task_free(&t);
}

TEST(solver_heads_deterministic)
{
    task t;
    task_make(&t, 70, 30, 3, 6, 3, 5, 1.5, 0, 37);
    static const uint32_t methods[] = {H2T_METHOD_KNN, H2T_METHOD_NCM, H2T_METHOD_LAYER,
                                       H2T_METHOD_ALL};
    for (uint32_t m = 0; m < 4; m++) {
        h2t_train_spec sp;
        h2t_train_spec_default(&sp, methods[m]);
        sp.folds = 3;
        sp.seed = 11;
        h2t_result *a = run(&t, &sp), *b = run(&t, &sp);
        ASSERT(a && b);
        size_t la = 0, lb = 0;
        void *ba = blob_of(a, &la), *bb = blob_of(b, &lb);
        ASSERT_EQ(la, lb);
        ASSERT(memcmp(ba, bb, la) == 0);
        /* another fold seed: other folds (so another CV table, almost surely) */
        sp.seed = 12;
        h2t_result *c = run(&t, &sp);
        ASSERT(c);
        int differs = 0;
        for (uint32_t q = 0; q < a->n_lambdas * a->n_keeps; q++)
            differs |= a->cv_acc[q] != c->cv_acc[q];
        ASSERT(differs || methods[m] == H2T_METHOD_KNN); /* separable knn: may be all 1 */
        free(ba);
        free(bb);
        h2t_result_destroy(a);
        h2t_result_destroy(b);
        h2t_result_destroy(c);
    }
    task_free(&t);
}

/* The job's threads (layer probes and head2toe's CV heads split over spec.threads): the same
 * choices, CV tables and test accuracy as one thread. */
TEST(solver_heads_threads_same_result)
{
    task t;
    task_make(&t, 70, 30, 5, 6, 3, 5, 1.5, 0, 41);
    static const uint32_t methods[] = {H2T_METHOD_LAYER, H2T_METHOD_HEAD2TOE};
    for (uint32_t m = 0; m < 2; m++) {
        h2t_train_spec sp;
        h2t_train_spec_default(&sp, methods[m]);
        sp.folds = 3;
        sp.threads = 1;
        h2t_result *a = run(&t, &sp);
        sp.threads = 3;
        h2t_result *b = run(&t, &sp);
        h2t_blas_threads(1); /* the runner's setting */
        ASSERT(a && b);
        ASSERT_EQ(a->n_lambdas * a->n_keeps, b->n_lambdas * b->n_keeps);
        for (uint32_t q = 0; q < a->n_lambdas * a->n_keeps; q++)
            ASSERT_NEAR(a->cv_acc[q], b->cv_acc[q], 1e-12);
        ASSERT_EQ(a->n_curve, b->n_curve);
        for (uint32_t q = 0; q < a->n_curve; q++)
            ASSERT_NEAR(a->curve_acc[q], b->curve_acc[q], 1e-12);
        ASSERT_EQ(a->n_layers, b->n_layers);
        ASSERT_EQ(a->layer_ids[0], b->layer_ids[0]);
        ASSERT_EQ(a->lambda, b->lambda);
        ASSERT_EQ(a->keep, b->keep);
        ASSERT_EQ(a->n_kept, b->n_kept);
        ASSERT_EQ(a->test_correct, b->test_correct);
        h2t_result_destroy(a);
        h2t_result_destroy(b);
    }
    task_free(&t);
}

/* head2toe's CV splits run one per thread on copies of their rows, its final selection path
 * alongside them, and OpenBLAS one thread inside: the whole result (CV table, chosen cell, the
 * head's columns and weights) is bit for bit the same for 1, 2 and 3 threads, with repeated
 * stratified folds (fewer than 500 rows) and with the one-SE rule (a chosen lambda above the
 * grid's smallest: the sequential final path stops there, the threaded one runs the grid). */
TEST(solver_heads_head2toe_threads_bitwise)
{
    task t;
    task_make(&t, 90, 40, 4, 8, 3, 5, 1.2, 0, 43);
    for (int one_se = 0; one_se < 2; one_se++) {
        h2t_train_spec sp;
        h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
        sp.folds = 3;
        sp.one_se = (uint32_t)one_se;
        sp.n_lambdas = 3;
        sp.lambdas[0] = 3e-2;
        sp.lambdas[1] = 1e-2;
        sp.lambdas[2] = 1e-3;
        h2t_result *r[3] = {NULL, NULL, NULL};
        for (uint32_t q = 0; q < 3; q++) {
            sp.threads = q + 1;
            r[q] = run(&t, &sp);
        }
        h2t_blas_threads(1); /* the runner's setting */
        ASSERT(r[0] && r[1] && r[2]);
        ASSERT_EQ(r[0]->cv_repeats, 3);
        for (uint32_t q = 1; q < 3; q++) {
            const h2t_result *a = r[0], *b = r[q];
            ASSERT_EQ(a->n_lambdas * a->n_keeps, b->n_lambdas * b->n_keeps);
            ASSERT(memcmp(a->cv_acc, b->cv_acc, a->n_lambdas * a->n_keeps * sizeof(double)) == 0);
            ASSERT_EQ(a->lambda, b->lambda);
            ASSERT_EQ(a->keep, b->keep);
            ASSERT_EQ(a->n_kept, b->n_kept);
            ASSERT(memcmp(a->features, b->features, a->n_kept * sizeof(h2t_feature_ref)) == 0);
            ASSERT(memcmp(a->weights, b->weights,
                          (size_t)a->n_kept * a->n_classes * sizeof(float)) == 0);
            ASSERT(memcmp(a->bias, b->bias, a->n_classes * sizeof(float)) == 0);
            ASSERT_EQ(a->select_nonzero, b->select_nonzero);
            ASSERT_EQ(a->final_fit.iters, b->final_fit.iters);
            ASSERT_EQ(a->test_correct, b->test_correct);
        }
        if (one_se) /* the simplest cell: the sequential final path stops above the grid's end */
            ASSERT(r[0]->lambda > 1e-3);
        for (uint32_t q = 0; q < 3; q++)
            h2t_result_destroy(r[q]);
    }
    task_free(&t);
}

static void pool_progress(void *ud, double frac, const char *stage)
{
    double *last = ud; /* last fraction, went backwards or had no stage, calls */
    if (frac + 1e-12 < last[0] || !stage || !stage[0])
        last[1] = 1;
    last[0] = frac;
    last[2]++;
}

/* The threaded CV's pool runs a split's heads of one lambda and its fit of the next on
 * different threads, and takes steps of several splits at once: with kernel-form heads
 * (48 training rows of a split against 120 and 240 kept columns) warm-started along each
 * split's chain, three lambdas, five splits and the final selection, every result is bit for
 * bit the one thread's for 2, 3 and 5 threads, and for 2 threads with the memory budget for
 * only two copies of the rows (two splits under way instead of three); progress only rises. */
TEST(solver_heads_head2toe_pool_bitwise)
{
    task t;
    task_make(&t, 60, 30, 6, 40, 4, 0x15, 1.5, 0, 61);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_HEAD2TOE);
    sp.n_lambdas = 3;
    sp.lambdas[0] = 3e-2;
    sp.lambdas[1] = 1e-2;
    sp.lambdas[2] = 3e-3;
    sp.n_keeps = 3;
    sp.keeps[0] = 0.1;
    sp.keeps[1] = 0.5;
    sp.keeps[2] = 1.0;
    const uint32_t threads[] = {1, 2, 3, 5, 2};
    h2t_result *r[5] = {NULL};
    h2t_dataset d = task_data(&t);
    for (uint32_t q = 0; q < 5; q++) {
        sp.threads = threads[q];
        /* the last run: rows x features x 4 bytes is 57,600; a budget of five copies leaves
         * two for the CV's splits (half the budget) */
        sp.mem_limit = q == 4 ? 5 * 57600 : 0;
        double pr[3] = {0, 0, 0};
        int rc = h2t_solver_run_data(&d, &sp, pool_progress, pr, NULL, &r[q]);
        if (rc < 0)
            fprintf(stderr, "solver: %s\n", h2t_err_detail());
        ASSERT_OK(rc);
        ASSERT_EQ(pr[1], 0);
        ASSERT_NEAR(pr[0], 1.0, 1e-12);
    }
    h2t_blas_threads(1); /* the runner's setting */
    ASSERT_EQ(r[0]->n_lambdas * r[0]->n_keeps, 9);
    ASSERT(r[0]->final_fit.converged);
    ASSERT(r[0]->n_kept >= 24);
    for (uint32_t q = 1; q < 5; q++) {
        const h2t_result *a = r[0], *b = r[q];
        ASSERT(memcmp(a->cv_acc, b->cv_acc, 9 * sizeof(double)) == 0);
        ASSERT(memcmp(a->cv_se, b->cv_se, 9 * sizeof(double)) == 0);
        ASSERT_EQ(a->lambda, b->lambda);
        ASSERT_EQ(a->keep, b->keep);
        ASSERT_EQ(a->n_kept, b->n_kept);
        ASSERT(memcmp(a->features, b->features, a->n_kept * sizeof(h2t_feature_ref)) == 0);
        ASSERT(memcmp(a->weights, b->weights, (size_t)a->n_kept * a->n_classes * sizeof(float)) ==
               0);
        ASSERT(memcmp(a->bias, b->bias, a->n_classes * sizeof(float)) == 0);
        ASSERT_EQ(a->select_fit.objective, b->select_fit.objective);
        ASSERT_EQ(a->final_fit.iters, b->final_fit.iters);
        ASSERT_EQ(a->test_correct, b->test_correct);
    }
    for (uint32_t q = 0; q < 5; q++)
        h2t_result_destroy(r[q]);
    task_free(&t);
}

TEST(solver_heads_spec_checks)
{
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.fold_kind = 3;
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "fold_kind 3");
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.fold_kind = H2T_FOLDS_CONTIGUOUS;
    sp.cv_repeats = 2;
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "cv_repeats 2 with contiguous folds");
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    sp.one_se = 2;
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "one_se 2");
    h2t_train_spec_default(&sp, H2T_METHOD_AUTO);
    sp.auto_methods = 1u << H2T_METHOD_AUTO;
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "auto_methods 0x40");
    h2t_train_spec_default(&sp, H2T_METHOD_KNN);
    sp.lambdas[2] = 2.5;
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "knn k 2.5 (lambdas[2])");
    sp.lambdas[2] = 0;
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    h2t_train_spec_default(&sp, H2T_METHOD_AUTO);
    sp.folds = 1;
    ASSERT_EQ(h2t_train_spec_check(&sp), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "method auto chooses by cross-validation");
    uint32_t m = 99;
    ASSERT_EQ(h2t_method_parse("layer", &m), 0);
    ASSERT_EQ(m, H2T_METHOD_LAYER);
    ASSERT_EQ(h2t_method_parse("svm", &m), -1);
    ASSERT_STREQ(h2t_method_name(H2T_METHOD_AUTO), "auto");
    ASSERT_STREQ(h2t_method_name(99), "unknown");
}

/* No validation row reaches its fold's training part: on pure noise with random-looking labels
 * every method's CV accuracy stays near chance (1/4), for both fold kinds and with repeats. */
TEST(solver_heads_cv_no_leak_on_noise)
{
    task t;
    task_make(&t, 120, 40, 3, 20, 4, 0, 0, 0, 41); /* no informative layer */
    static const uint32_t methods[] = {H2T_METHOD_ALL, H2T_METHOD_NCM, H2T_METHOD_KNN,
                                       H2T_METHOD_LAYER};
    for (uint32_t m = 0; m < 4; m++)
        for (uint32_t kind = H2T_FOLDS_STRATIFIED; kind <= H2T_FOLDS_CONTIGUOUS; kind++) {
            h2t_train_spec sp;
            h2t_train_spec_default(&sp, methods[m]);
            sp.folds = 4;
            sp.fold_kind = kind;
            h2t_result *r = run(&t, &sp);
            ASSERT(r);
            if (!(r->val_acc < 0.45)) /* a leak lets knn (k 1) or a weak ridge memorise: ~1 */
                TEST_FAILF("%s, fold kind %u: CV accuracy %.3f on noise",
                           h2t_method_name(methods[m]), kind, r->val_acc);
            h2t_result_destroy(r);
        }
    task_free(&t);
}
