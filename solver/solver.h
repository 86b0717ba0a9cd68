/*
 * solver/solver.h - Head2Toe heads over cached features: design-matrix assembly from the store,
 * softmax regression with none / L2 / group-lasso penalties, Head2Toe feature selection,
 * k-fold cross-validation, evaluation, and the result record (encode/decode/export).
 * Its BLAS calls are in solver/fit.c (the executor's are in extract/ops_conv.c; OpenBLAS's
 * thread count is set only through common/blas.h). The solver never logs: it returns codes
 * (common/err.h, detail in h2t_err_detail()) and reports progress through a callback.
 *
 *     h2t_store *st;
 *     h2t_task *task;
 *     if (h2t_store_open("feats", H2T_STORE_RDONLY, &st) < 0)
 *         return;
 *     if (h2t_store_task_get(st, "fmnist10", &task) == 0) {
 *         h2t_train_spec spec;
 *         h2t_train_spec_default(&spec, H2T_METHOD_HEAD2TOE);
 *         spec.seed = 7;
 *         atomic_int cancel = 0; // another thread sets it to 1 to stop the job
 *         h2t_result *res = NULL;
 *         if (h2t_solver_run(st, task, &spec, NULL, NULL, &cancel, &res) == 0) {
 *             void *blob;
 *             size_t len;
 *             if (h2t_result_encode(res, &blob, &len) == 0) // what h2t_store_job_finish stores
 *                 free(blob);
 *             h2t_result_export(res, "head_dir"); // .npy files + result.json
 *         }
 *         h2t_result_destroy(res);
 *         h2t_task_destroy(task);
 *     }
 *     h2t_store_close(st);
 *
 * The method (docs/head2toe.md):
 *  - Features: each layer's vector is L2-normalised per example (a zero vector stays zero),
 *    layers are concatenated. After selection the kept columns of each layer are
 *    L2-normalised again over that subset; layers with nothing kept drop out. (Since
 *    normalisation is scale-free this equals normalising the raw kept columns directly: that is
 *    how a head is applied to new samples.)
 *  - Loss: mean softmax cross-entropy + penalty, bias never penalised:
 *      none:  0
 *      L2:    (lambda / 2) * sum_jc W_jc^2      (sklearn's C = 1 / (lambda * n))
 *      group: lambda * sum_j ||W_j||_2          (W_j = feature j's row over the classes)
 *  - linear: the last layer of the task's extraction only (or spec.layers), penalty L2 by
 *    default. all: every layer, L2. head2toe: group lasso over all layers at lambda, keep
 *    k = floor(D * keep) features by score, fit an unregularised head on the kept,
 *    re-normalised features.
 *
 * Two optimiser paths, both deterministic (the same job twice gives bit-identical heads on the
 * same machine and OpenBLAS thread count; every reduction has a fixed order):
 *  - H2T_OPT_FAST (default): full-batch, OpenBLAS sgemm. Group lasso: FISTA (proximal gradient
 *    with backtracking on the Lipschitz estimate, group soft-threshold prox, adaptive restart),
 *    warm-started along a decreasing lambda path from lambda_max. Smooth problems (L2, none,
 *    the final head): L-BFGS with a backtracking line search. Selection ranking with an exact
 *    solver: the order in which features enter along the lambda path, then row norm at the
 *    solution, then (rows still zero) the gradient row norm at the solution
 *    (H2T_RANK_PATH_ENTRY).
 *  - H2T_OPT_ADAM: the reference: Glorot-uniform init U(+-sqrt(6/(D+K))) from the seed, zero
 *    bias, Adam (b1 0.9, b2 0.999, eps 1e-7, Keras form), learning rate with cosine decay to 0
 *    over exactly `steps`, batch 128 in one seeded order kept for every epoch, each batch's sum
 *    divided by 128 even for the short last batch. Ranking by s_j = sum_c W_jc^2
 *    (H2T_RANK_SCORE).
 *
 * "Converged" for an unregularised head (the fast path): an unregularised softmax on separable
 * data has no minimiser, so the final head minimises mean CE + (final_l2 / 2) ||W||^2 with a
 * tiny final_l2 (default 1e-6; it then has a unique minimiser) and is converged when the
 * gradient's max-abs entry is <= gtol (default 1e-5). The head records iterations, the final
 * gradient norm and whether the test was met; hitting max_iter is reported (converged = 0),
 * never silent. The Adam path runs exactly `steps` steps (the reference's definition) and
 * reports its final full-batch gradient norm.
 *
 * Model selection: k-fold CV on the training samples (task train, then val samples appended),
 * stratified folds by default (each class dealt over the folds in an order seeded by
 * spec.seed; H2T_FOLDS_CONTIGUOUS: fold f = samples [f*n/k, (f+1)*n/k)), repeated with other
 * fold seeds when the task is small (spec.cv_repeats), over the method's grid (lambda x keep;
 * knn: k); the best mean validation accuracy wins (ties: the first in grid order, lambdas
 * descending then keeps ascending), or with spec.one_se the simplest cell within one standard
 * error of the best; the head is retrained on all training samples and test accuracy is exact
 * (correct / total). knn, ncm, layer and auto: docs/solver.md.
 *
 * Threads: the functions are reentrant; one job per thread. spec.threads > 0 sets OpenBLAS's
 * thread count (h2t_blas_threads, process-wide) before the work; 0 leaves the process setting.
 */
#ifndef H2T_SOLVER_SOLVER_H
#define H2T_SOLVER_SOLVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/train_spec.h"
#include "storage/store.h"

/* How the kept features were ranked (h2t_result.ranking). */
enum {
    H2T_RANK_NONE = 0,       /* no selection (linear / all) */
    H2T_RANK_PATH_ENTRY = 1, /* entry order along the lambda path, then norm, then grad norm */
    H2T_RANK_SCORE = 2       /* s_j = sum_c W_jc^2 of the selection head (Adam) */
};

/* The spec of a job: h2t_train_spec in common/train_spec.h (one struct for the solver, the
 * wire and the job reuse test). */

/* Defaults for a method: fast optimiser, 5 folds, seed 0; head2toe: lambdas {1e-4, 1e-5},
 * keeps {0.01, 0.02, 0.05, 0.1, 0.2}; linear/all: L2, lambdas {1e-2, 1e-3, 1e-4, 1e-5}. */
void h2t_train_spec_default(h2t_train_spec *s, uint32_t method);
/* Check a spec. Errors: H2T_EINVAL naming the field (negative/NaN lambda, keep outside
 * (0, 1], empty or oversized grid, folds, unknown method/penalty/optimizer, steps/batch 0,
 * learning rate not > 0, more than 256 threads). */
int h2t_train_spec_check(const h2t_train_spec *s);
/* The solver spec of a request (a train request's h2t_msg_train.spec): the method's defaults
 * (h2t_train_spec_default of req->method), then every member the request sets (non-zero; a
 * grid or list with values) in place of the default, then h2t_train_spec_check. A member
 * whose zero is a value of its own (penalty NONE) cannot be asked for this way. req and out
 * may not overlap; out->layers BORROWS req->layers. Errors: H2T_EINVAL naming the field. */
int h2t_train_spec_resolve(const h2t_train_spec *req, h2t_train_spec *out);

/* The version of a method's results (method: H2T_METHOD_*): raised by a solver change that
 * may give another head, CV table or choice for the same spec and inputs (a change that gives
 * the very same numbers, such as most speed-ups, keeps it). The server's job reuse test
 * includes it, so a job finished before such a change is not answered for a request that
 * would now train differently. auto's version also rises with each of its candidates'.
 * Version 1 is the results before versions were kept (it leaves stored jobs reusable);
 * 0 for an unknown method.
 *
 *     uint32_t v = h2t_solver_results_version(H2T_METHOD_HEAD2TOE);   // >= 1
 */
uint32_t h2t_solver_results_version(uint32_t method);

/* A feature of the concatenated vector: layer index in the extraction, index in the layer. */
typedef struct h2t_feature_ref {
    uint32_t layer, index;
} h2t_feature_ref;

/* Per-fit convergence record. */
typedef struct h2t_fit_info {
    uint32_t iters;     /* iterations (fast) or steps (Adam) */
    uint32_t converged; /* 1 when the stopping test was met (Adam: always 1 after `steps`) */
    double grad_norm;   /* final max-abs of the (sub)gradient optimality residual */
    double objective;   /* final penalised objective */
} h2t_fit_info;

/* A trained head and everything about how it was chosen. All arrays OWNED by the result. */
typedef struct h2t_result {
    uint32_t method, penalty, optimizer, ranking;
    uint64_t seed;
    uint32_t n_classes;
    uint32_t n_train, n_test; /* samples used for the final head and for test */
    uint64_t total_dim;       /* D: features the method looked at */
    /* chosen hyperparameters */
    double lambda, keep;
    uint32_t n_kept; /* k: columns of the head */
    /* cross-validation */
    uint32_t folds;
    uint32_t n_lambdas, n_keeps;
    double *lambdas, *keeps; /* the grid */
    double *cv_acc;          /* n_lambdas x n_keeps mean validation accuracy (row-major) */
    double *fold_acc;        /* folds: validation accuracy of the chosen cell per fold */
    double val_acc;          /* best mean validation accuracy (= cv_acc of the chosen cell) */
    double train_acc, test_acc;
    uint32_t test_correct;
    /* the layers the method looked at, and the features kept per layer */
    uint32_t n_layers;
    uint32_t *layer_ids;  /* n_layers: extraction layer index */
    uint32_t *layer_dims; /* n_layers */
    uint32_t *layer_kept; /* n_layers: kept columns per layer */
    char **layer_names;   /* n_layers: "" when unknown */
    /* the head: logits = W x + b, x = kept raw columns, re-normalised per layer */
    h2t_feature_ref *features; /* n_kept, ascending (layer, index) */
    float *weights;            /* n_classes x n_kept, row-major */
    float *bias;               /* n_classes */
    /* convergence */
    h2t_fit_info select_fit; /* group-lasso fit of the final selection (head2toe) */
    h2t_fit_info final_fit;  /* the returned head */
    uint32_t select_nonzero; /* rows non-zero in the final selection fit */
    /* timings, seconds */
    double t_load, t_cv, t_final, t_total;
    /* model selection as run (docs/solver.md) */
    uint32_t fold_kind;  /* H2T_FOLDS_* */
    uint32_t cv_repeats; /* repeats of the k-fold CV actually run */
    uint32_t one_se;     /* 1: the chosen cell is the simplest within one SE of the best */
    double *cv_se;       /* n_lambdas x n_keeps: standard error of cv_acc over folds x repeats
                            (NULL in results written before it existed) */
    /* knn: k, and the training rows it votes with (n_protos x n_kept, each layer's block
     * L2-normalised, the same columns as features) and their labels */
    uint32_t knn_k, n_protos;
    float *protos;
    uint32_t *proto_labels;
    /* layer: each layer's probe CV accuracy (its best lambda), in layer order */
    uint32_t n_curve;
    uint32_t *curve_layers; /* extraction layer ids */
    double *curve_acc;      /* n_curve */
    /* auto: the candidate methods and their CV accuracy (best cell) and its standard error;
     * method above is the winner */
    uint32_t n_auto;
    uint32_t *auto_methods; /* H2T_METHOD_* */
    double *auto_acc, *auto_se;
    /* head2toe: the final head's L2 at the chosen cell, the L2 of each keep cell (n_keeps
     * entries, keeps[c] x final_l2s[c]; NULL when the spec had no final_l2s grid), and how
     * features were scored (H2T_SELECT_*; 0 in results written before the field) */
    double final_l2;
    double *final_l2s;
    double *cell_test; /* n_lambdas x n_keeps: each cell's test accuracy (spec.cell_test), its
                          head refit on every training sample; NULL when not asked */
    uint32_t select_group;
} h2t_result;

void h2t_result_destroy(h2t_result *r); /* NULL is a no-op */

/* progress: fraction in [0, 1] and a stage text ("load", "cv fold 2/5", "final", ...).
 * Called from the solving thread; stage is BORROWED for the call. */
typedef void (*h2t_solver_progress_fn)(void *ud, double fraction, const char *stage);

/* Train a head for a task read from the store (h2t_store_layer_read of the task's samples
 * into one aligned buffer). cancel (may be NULL) is polled often; when it becomes non-zero
 * the call returns H2T_ECANCELED. *out is written only on success, OWNED by the caller.
 * Errors: H2T_EINVAL (bad spec, one class, empty train or test split, label >= n_classes,
 * layer index out of range), H2T_ENOTFOUND (extraction or a sample not stored),
 * H2T_ENUMERIC (NaN/inf in a stored feature: detail names layer and sample), H2T_ETOOBIG
 * (a design matrix above the memory budget, spec.mem_limit else available memory, is placed in
 * a file-backed mapping in $H2T_SPILL_DIR, else $TMPDIR, else /var/tmp, with the same results:
 * ETOOBIG when that fails, naming the directory and the bytes), H2T_ENOMEM, H2T_ECANCELED,
 * store errors. */
int h2t_solver_run(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                   h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                   h2t_result **out);

/* The layer a linear probe reads when spec.layers is NULL: the backbone's pooled
 * representation (the last global-pooling output, or last map pooled to 1x1: a CNN's
 * pre-logits), else the extraction's last layer. */
uint32_t h2t_solver_probe_layer(const h2t_extraction *e);

/* An in-memory task (tests, benchmarks, other front ends). Raw, un-normalised features: the
 * solver copies and normalises them. All pointers BORROWED for the call. */
typedef struct h2t_dataset {
    uint32_t n_train, n_test, n_classes, n_layers;
    const float *x_train;    /* n_train x D, row-major, D = sum(layer_dims) */
    const uint32_t *y_train; /* n_train labels < n_classes */
    const float *x_test;     /* n_test x D (may be NULL when n_test == 0) */
    const uint32_t *y_test;  /* n_test */
    const uint32_t *layer_dims;
    const uint32_t *layer_ids;      /* NULL = 0..n_layers-1 */
    const char *const *layer_names; /* NULL = unnamed */
    uint32_t has_probe; /* 1: probe is the layer (index into these layers) that linear and knn
                           read by default and auto's linear and knn candidates use; 0: the last */
    uint32_t probe;
} h2t_dataset;

/* The most a knn result may keep of its training rows (n_train x features x 4 bytes). */
#define H2T_KNN_MAX_BYTES (64ull << 20)

/* As h2t_solver_run on an in-memory dataset (spec.layers indexes the dataset's layers).
 * n_test may be 0 (test accuracy then 0). Errors as h2t_solver_run. */
int h2t_solver_run_data(const h2t_dataset *d, const h2t_train_spec *spec,
                        h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                        h2t_result **out);

/* As h2t_solver_run_data on rows that are already finite and L2-normalised per layer the way
 * the solver normalises them (solver/design_cache.c keeps such matrices): the chosen layers
 * are copied as they are, so the result equals h2t_solver_run's on the same samples. Errors
 * as h2t_solver_run_data. */
int h2t_solver_run_normalised(const h2t_dataset *d, const h2t_train_spec *spec,
                              h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                              h2t_result **out);

/* ---- row-sharded training (docs/solver.md, "Row-sharded training") ----
 * Several participants (MPI ranks, threads, ...) each hold some of a task's rows and run
 * h2t_solver_run_shard together: every sum over rows (loss, gradient, class counts, Lipschitz
 * estimate, CV accuracies) is taken locally and then summed over the participants through the
 * reducer, so every participant follows the same iterates and ends with the same head. Folds are
 * assigned by task-order index over all training rows, so a sharded CV uses the same folds (and
 * picks the same cell) as one process. Fast optimiser; methods linear, all, head2toe, ncm and
 * layer (knn keeps every row; the Adam path's minibatches are not row-local). Every participant
 * must call with the same spec, layers and h2t_shard totals. */
typedef struct h2t_reducer {
    /* Replace buf[0..n) on every participant by the elementwise sum over the participants,
     * bit-identical on all of them. Every participant calls it at the same point with the same n.
     * It does not return on a communication failure (an MPI job stops). */
    void (*sum)(void *ud, double *buf, size_t n);
    void *ud;
} h2t_reducer;

typedef struct h2t_shard {
    const h2t_reducer *red;      /* BORROWED */
    uint32_t n_train_all;        /* training rows of all participants together */
    const uint32_t *y_train_all; /* n_train_all labels in task order (the same everywhere) */
    const uint32_t *train_rows;  /* d->n_train: each local training row's task-order index,
                                    ascending; every index is held by exactly one participant */
} h2t_shard;

/* As h2t_solver_run_data on this participant's rows d (d->n_train and d->n_test may be 0 here;
 * the totals may not). *out: the same result on every participant (counts and accuracies over
 * all rows). cancel is not polled (one participant cannot stop alone). Errors as
 * h2t_solver_run_data, and H2T_EINVAL for a method or optimiser that cannot be sharded, rows
 * not ascending, a label that differs from y_train_all, rows missing or held twice (checked
 * together). A participant that returns an error leaves the others waiting in a reduction: an
 * MPI front end aborts the job. */
int h2t_solver_run_shard(const h2t_dataset *d, const h2t_shard *sh, const h2t_train_spec *spec,
                         h2t_solver_progress_fn progress, void *ud, h2t_result **out);

/* A stored task row-sharded (solver/shard.c): participant `part` of `parts` reads from st only
 * its contiguous range of the task's training rows (train then val, in task order) and of its
 * test rows, [n part / parts, n (part + 1) / parts), of the layers the spec reads (as
 * h2t_solver_run: spec.layers, else the probe layer for linear, else every layer), and runs
 * h2t_solver_run_shard with red. Every participant opens the same store (or a copy) and task.
 * Errors as h2t_solver_run and h2t_solver_run_shard. */
int h2t_solver_run_store_shard(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                               const h2t_reducer *red, uint32_t part, uint32_t parts,
                               h2t_solver_progress_fn progress, void *ud, h2t_result **out);

/* The same with the rows held by sample: this participant reads and trains on every training
 * and test row of the task whose sample id lies in [lo, hi), a store set's shard range
 * (h2t_store_set_read): with the participants' ranges partitioning the sample ids each reads
 * only its own shard store. Rows held by nobody or twice are an error on every participant. */
int h2t_solver_run_store_samples(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                                 const h2t_reducer *red, uint32_t lo, uint32_t hi,
                                 h2t_solver_progress_fn progress, void *ud, h2t_result **out);

/* The head's predicted class of every test row of a stored task (pred: task->n_test entries, in
 * task order, the same on every participant): each participant predicts its range (as above)
 * and the predictions are summed through red (parts 1: red may be NULL). Errors: H2T_EINVAL (a
 * layer of the head not in the task's extraction), store errors, H2T_ENOMEM. */
int h2t_solver_predict_task(h2t_store *st, const h2t_task *task, const h2t_result *r,
                            const h2t_reducer *red, uint32_t part, uint32_t parts, uint32_t *pred);
/* The same, each participant predicting the test rows whose sample id lies in [lo, hi) (as
 * h2t_solver_run_store_samples; red required). */
int h2t_solver_predict_task_samples(h2t_store *st, const h2t_task *task, const h2t_result *r,
                                    const h2t_reducer *red, uint32_t lo, uint32_t hi,
                                    uint32_t *pred);

/* Predict classes for raw samples with a head: x is n x D over the layers of the result
 * (layer_dims order, the same concatenation the head was trained on). pred OWNED by caller,
 * n entries. Errors: H2T_EINVAL. */
int h2t_result_predict(const h2t_result *r, const float *x, uint32_t n, uint32_t *pred);
/* As h2t_result_predict, with the class probabilities too: prob (n x n_classes, row-major,
 * caller-OWNED; may be NULL, and so may pred) gets softmax(W x + b) computed in double. The
 * same normalisation and arithmetic as h2t_result_predict, so pred is the arg max of prob's
 * row (the first on ties). A knn result (method H2T_METHOD_KNN) votes instead: pred is the
 * vote of its stored rows (docs/solver.md) and prob each class's share of the k votes.
 * Errors: H2T_EINVAL, H2T_ENOMEM. */
int h2t_result_proba(const h2t_result *r, const float *x, uint32_t n, uint32_t *pred, float *prob);

/* ---- single fits (exposed for tests, benchmarks and the conformance check) ---- */

/* One penalised fit on an already normalised matrix X (n x d, row-major), labels y < k.
 * W (d x k, row-major: row j = feature j) and b (k) are the start point on entry
 * (warm start) and the solution on return. penalty/lambda as in the loss above; final_l2
 * is added as a ridge when penalty is NONE. Fast path only. Returns 0 (check info.converged),
 * H2T_EINVAL, H2T_ENOMEM, H2T_ECANCELED. */
int h2t_solver_fit(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                   uint32_t penalty, double lambda, const h2t_train_spec *spec, float *W, float *b,
                   h2t_fit_info *info);

/* A warm-started group-lasso path: h2t_solver_fit at each of lambdas[0..n_lambdas) (descending),
 * the full gradient at each solution carried to the next point's strong rule, so a point
 * costs one pass over X when no KKT violator turns up (separate h2t_solver_fit calls cost
 * two). W, b: the start point on entry, the last point's solution on return; info (may be
 * NULL) gets n_lambdas records. Errors as h2t_solver_fit (H2T_EINVAL also for lambdas not
 * descending). */
int h2t_solver_fit_path(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                        const double *lambdas, uint32_t n_lambdas, const h2t_train_spec *spec,
                        float *W, float *b, h2t_fit_info *info);

/* Objective value and gradient (G: d x k, gb: k; either may be NULL) of mean CE at (W, b),
 * double accumulation. Returns the mean CE (without penalty). */
double h2t_solver_loss_grad(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                            const float *W, const float *b, float *G, float *gb);

/* ---- result blob and export ---- */

/* Self-describing binary blob (magic "H2TRES01", named typed fields, CRC-32C trailer);
 * *blob OWNED: free(). Errors: H2T_ENOMEM. */
int h2t_result_encode(const h2t_result *r, void **blob, size_t *len);
/* Errors: H2T_ECORRUPT (bad magic, truncated, checksum, inconsistent sizes: detail says
 * which), H2T_EVERSION, H2T_ENOMEM. Unknown fields are skipped. */
int h2t_result_decode(const void *blob, size_t len, h2t_result **out);
/* Write dir/weights.npy (K x k f32), bias.npy (K f32), features.npy (k x 2 u32: layer, index),
 * cv_acc.npy (n_lambdas x n_keeps f64), result.json. Creates dir if missing.
 * Errors: H2T_EIO naming the file. */
int h2t_result_export(const h2t_result *r, const char *dir);
/* The JSON description (what result.json holds); OWNED: free(). NULL on ENOMEM. */
char *h2t_result_json(const h2t_result *r);

/* ---- shared design matrices (solver/design_cache.c) ----
 * Jobs that read the same extraction share one loaded design matrix: a cache of assembled,
 * checked and normalised matrices keyed by everything their numbers depend on (extraction id and
 * version (samples_done, updated_ms), the task's sample list in order: train, val, test,
 * and the layers). A job reads the matrix from the store once (the first job; a job asking
 * for the same key meanwhile waits for that read instead of reading again), then every job
 * runs through h2t_solver_run_normalised on it: it copies the layers it uses into its own
 * working matrix (the cross-validation rotates rows in place: a copy per job is the price),
 * the same numbers as h2t_solver_run, so the same result. An entry is immutable once loaded and
 * referenced while a job copies from it; unreferenced entries are kept, least recently used evicted
 * first, while the cache holds at most `budget` bytes (0: freed when the last job releases it). A
 * linear probe is served by an entry that holds its layer among others. All functions are
 * thread-safe.
 *
 *     h2t_design_cache *dc;
 *     h2t_design_cache_create(1ull << 30, &dc);          // keep up to 1 GiB
 *     h2t_solver_run_cached(dc, st, task, &spec, NULL, NULL, NULL, &res);   // reads the store
 *     h2t_solver_run_cached(dc, st, task, &spec2, NULL, NULL, NULL, &res2); // does not
 *     h2t_design_cache_destroy(dc);
 */
typedef struct h2t_design_cache h2t_design_cache;

typedef struct h2t_design_cache_stats {
    uint64_t loads;   /* matrices read from the store */
    uint64_t hits;    /* jobs that ran on a matrix already read (or being read) */
    uint64_t bytes;   /* held now */
    uint32_t entries; /* held now */
    uint32_t in_use;  /* entries referenced by a job now */
} h2t_design_cache_stats;

/* Errors: H2T_ENOMEM. OWNED: h2t_design_cache_destroy (only when no job uses it). */
int h2t_design_cache_create(uint64_t budget, h2t_design_cache **out);
void h2t_design_cache_destroy(h2t_design_cache *c); /* NULL is a no-op */
void h2t_design_cache_stats_get(h2t_design_cache *c, h2t_design_cache_stats *s);

/* As h2t_solver_run, through the cache (c NULL: h2t_solver_run). The result's t_load counts
 * reading the matrix (or waiting for another job's read) plus the job's own copy. When the
 * matrix and a working copy would not fit in memory together (spec.mem_limit, else available
 * memory) the job reads for itself as h2t_solver_run does. Errors as h2t_solver_run. */
int h2t_solver_run_cached(h2t_design_cache *c, h2t_store *st, const h2t_task *task,
                          const h2t_train_spec *spec, h2t_solver_progress_fn progress, void *ud,
                          const atomic_int *cancel, h2t_result **out);

#endif
