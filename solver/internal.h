/*
 * solver/internal.h - shared between the solver's own files; not a public contract.
 * Matrices are row-major floats: X n x d (samples x features), W d x k (row j = feature j),
 * logits n x k. Every reduction runs in a fixed order (determinism).
 */
#ifndef H2T_SOLVER_INTERNAL_H
#define H2T_SOLVER_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "solver/solver.h"

typedef struct h2t_solver_opts {
    uint32_t max_iter;
    double gtol;              /* smooth fits: max-abs gradient stop */
    double kkt_rel;           /* group fits: KKT residual <= kkt_rel * lambda */
    double ridge;             /* extra (ridge/2)||W||^2 on smooth fits */
    const atomic_int *cancel; /* may be NULL */
    const h2t_reducer *red;   /* NULL: this process holds every row; else each participant holds
                                 some rows and every sum over rows goes through red */
    int gram_own; /* 1: the kernel form's Gram products by the solver's own kernel (fit.c,
                     gram_mul) instead of dgemm: head2toe's heads */
    /* The row blocks of a fit's rows (every sum over rows is taken per block, so it does not
     * depend on how the rows are split over participants; fit.c): NULL: row i of the fit's n
     * rows is row i of the task (block h2t_solver__block_of(i, n)); else rkey[i] = f * nblk + b
     * for a row of CV fold f (its position in the current layout's fold order) in block b of
     * the task's training rows, consecutive rows with the same key forming one segment. */
    const uint32_t *rkey;
    uint32_t nblk; /* blocks (h2t_solver__nblocks of every training row), with rkey */
} h2t_solver_opts;

/* The number of row blocks of a task with n_all training rows (4, 16 or 64), and the block of
 * its training row t (task order): block b holds rows [b n_all / nb, (b + 1) n_all / nb). */
uint32_t h2t_solver__nblocks(uint32_t n_all);
uint32_t h2t_solver__block_of(uint32_t t, uint32_t n_all);

static inline int h2t_solver__cancelled(const h2t_solver_opts *o)
{
    return o->cancel && atomic_load_explicit(o->cancel, memory_order_relaxed) != 0;
}

/* One buffer of a reduction: n floats or doubles. */
typedef struct h2t_solver_part {
    void *p;
    size_t n;
    int dbl; /* 1: double, 0: float */
} h2t_solver_part;

/* Sum the parts over the participants of o->red (floats summed in double, then rounded back),
 * in fixed chunks of 65536 values (one reducer call each, the same calls on every participant);
 * a no-op when o or o->red is NULL. Without memory for the 512 KiB chunk buffer it aborts: the
 * others then stop as they do when a participant dies. */
void h2t_solver__reduce(const h2t_solver_opts *o, h2t_solver_part *parts, uint32_t np);
/* The number of rows of all participants together (n alone). */
double h2t_solver__rows(const h2t_solver_opts *o, uint32_t n);

/* out[0..m) = the sum over every participant's rows (of a fit's n rows here, o's row blocks) of
 * what add puts in: add(ud, s0, len, slot) adds rows [s0, s0 + len) (one segment of one block,
 * in row order) into slot (m doubles, the block's partial sum). Returns 0 or H2T_ENOMEM. */
int h2t_solver__rowsum(const h2t_solver_opts *o, uint32_t n, size_t m,
                       void (*add)(void *ud, uint32_t s0, uint32_t len, double *slot), void *ud,
                       double *out);

/* Group-lasso fit by FISTA at lambda, warm start in W, b; *L is the Lipschitz estimate
 * (in/out; <= 0 = unknown). G (d x k, may be NULL) receives the gradient of the mean CE at the
 * solution. Returns 0, H2T_ENOMEM, H2T_ECANCELED. */
int h2t_solver__fit_group(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                          double lambda, const h2t_solver_opts *o, float *W, float *b, double *L,
                          float *G, h2t_fit_info *info);

/* The same fit restricted to a working set: the strong-rule set from G (the full gradient at
 * the start point, d x k; lambda_prev <= 0: computed here), fitted with fit_group, then every
 * KKT violator outside the set added and refitted until none. On return G is the full
 * gradient at the solution. */
int h2t_solver__fit_group_ws(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                             double lambda, double lambda_prev, const h2t_solver_opts *o, float *W,
                             float *b, double *L, float *G, h2t_fit_info *info);

/* Smooth fit (mean CE + (ridge/2)||W||^2) by L-BFGS from W, b. */
int h2t_solver__fit_smooth(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                           double ridge, const h2t_solver_opts *o, float *W, float *b,
                           h2t_fit_info *info);

/* Gram matrix Gm = X X^T (n x n, both triangles filled) in double: dgemm over row slabs and
 * column blocks converted to double (a float Gram's rounding, ~1e-4 on the diagonal of 161 unit
 * layers, moves the kernel optimum off the primal one). Returns 0 or H2T_ENOMEM. */
int h2t_solver__gram(const float *X, uint32_t n, uint32_t d, double *Gm);

/* Z (n x k) = Gm A for a symmetric n x n Gm (as h2t_solver__gram makes it) and an n x k A:
 * the kernel form's products with h2t_solver_opts.gram_own. With AVX-512 each entry is the
 * plain sum over j in order of Gm[i][j] A[j][c], one multiply and one add per term (bit for
 * bit that loop's); elsewhere dgemm (its own rounding). Returns 0 or H2T_ENOMEM. */
int h2t_solver__gram_mul(const double *Gm, uint32_t n, const double *A, uint32_t k, double *Z);

/* The same Gram over the N rows of every participant of o->red together, this participant
 * holding n of them: its row i is row pos[i] of the N (o or o->red NULL: pos NULL, n == N, as
 * h2t_solver__gram). The Gram is made in 16 fixed slabs of its rows, each by dgemm against the
 * rows from the slab's first on, per column block in order; each column block of the N rows is
 * gathered through the reducer (every other participant adds zeros: exact), each participant
 * computes the slabs whose first row it holds, and the slabs are gathered the same way. So Gm
 * is bit for bit the Gram one process makes of the N rows in that order, and the participants
 * share its products. Costs N x d + N x N values through the reducer. Returns 0, H2T_ENOMEM
 * (one process) or H2T_EINVAL. */
int h2t_solver__gram_rows(const h2t_solver_opts *o, const float *X, uint32_t n, const uint32_t *pos,
                          uint32_t N, uint32_t d, double *Gm);

/* The smooth fit in kernel form (n < d): the same L-BFGS iterates and objective as fit_smooth
 * started from W = X^T A, run over the coefficients A (n x k, in/out warm start) with the Gram
 * matrix (n x n; NULL: computed here from X). Writes W = X^T A (d x k) and b. The returned W is
 * checked against the primal gradient; when float rounding leaves it above gtol it is finished
 * by fit_smooth (A is then zeroed: it no longer represents W). */
int h2t_solver__fit_smooth_kernel(const float *X, const double *Gram, const uint32_t *y, uint32_t n,
                                  uint32_t d, uint32_t k, double ridge, const h2t_solver_opts *o,
                                  float *A, float *W, float *b, h2t_fit_info *info);

/* The kernel form row-sharded: the coefficients A (N x k), the Gram (N x N; NULL: made here
 * by h2t_solver__gram_rows) and y_all (N labels) cover every participant's rows in one order,
 * and this participant holds n of them, X (n x d) and y (n), its row i being row pos[i] of the
 * N. The L-BFGS iterates over A run on every participant alike (no reduction); the lifts
 * W = X^T A, the check of W and a primal finish reduce through o->red. With o->red NULL,
 * pos NULL, N == n and y_all == y this is h2t_solver__fit_smooth_kernel. */
int h2t_solver__fit_smooth_kernel_rows(const float *X, const uint32_t *y, uint32_t n,
                                       const uint32_t *pos, const double *Gram,
                                       const uint32_t *y_all, uint32_t N, uint32_t d, uint32_t k,
                                       double ridge, const h2t_solver_opts *o, float *A, float *W,
                                       float *b, h2t_fit_info *info);

/* A store job's test rows above h2t_solver__test_stream_min bytes (1 GiB) are not loaded with
 * the training rows but read back in row blocks of about h2t_solver__test_block_bytes (256 MiB)
 * when the final head is scored (linear, all, head2toe without cell_test; the same result). */
extern size_t h2t_solver__test_stream_min;
extern size_t h2t_solver__test_block_bytes;

/* The largest gathered copy of a fit's rows (bytes) that the Adam path makes once when its rows
 * span several batches (1 GiB; above it each step gathers its batch: the same values). */
extern size_t h2t_solver__adam_gather_max;

/* Reference Adam fit (see solver.h) from a Glorot init drawn from seed; writes W, b. penalty
 * H2T_PENALTY_*: NONE, L2 ((lambda/2)||W||^2), GROUP (lambda sum ||W_j||, subgradient 0 at a
 * zero row). */
int h2t_solver__fit_adam(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                         uint32_t penalty, double lambda, double lr, uint32_t steps, uint32_t batch,
                         uint64_t seed, const h2t_solver_opts *o, float *W, float *b,
                         h2t_fit_info *info);

/* Logits Z = X W + b (n x k). */
void h2t_solver__logits(const float *X, uint32_t n, uint32_t d, uint32_t k, const float *W,
                        const float *b, float *Z);
/* S (na x nb) = A B^T: A na x d, B nb x d, row-major (sgemm). */
void h2t_solver__sim(const float *A, uint32_t na, const float *B, uint32_t nb, uint32_t d,
                     float *S);

/* k-nearest-neighbour votes by cosine similarity of the query rows Q (nq x d) to the
 * prototypes P (np x d, labels py < K): for each of the nks values in ks (each >= 1; a k above
 * np counts np neighbours), pred[q * nq + i] is the class most frequent among query i's k most
 * similar prototypes (similarity ties: the lower prototype index first); a tie of votes goes
 * to the class with the larger summed similarity, then the lower class. A zero row has
 * similarity 0 to everything. share (may be NULL; only with nks == 1): nq x K, each class's
 * share of query i's votes. Returns 0 or H2T_ENOMEM. solver/knn.c. */
int h2t_solver__knn(const float *Q, uint32_t nq, const float *P, const uint32_t *py, uint32_t np,
                    uint32_t d, uint32_t K, const uint32_t *ks, uint32_t nks, uint32_t *pred,
                    float *share);

/* CV folds of n train rows with labels y < K: R repeats of F folds, repeat r's fold f being
 * rows perm[r n + bnd[r (F + 1) + f] ..  r n + bnd[r (F + 1) + f + 1]) (task-order indices,
 * ascending inside a fold). H2T_FOLDS_STRATIFIED: per repeat each class's rows are shuffled
 * by a generator seeded from (seed, r), the classes laid one after another, and the t-th row
 * of that sequence goes to fold t mod F: each class's count per fold differs by at most one
 * across folds, and so do the fold sizes. H2T_FOLDS_CONTIGUOUS: bnd only (R = 1, perm
 * untouched): fold f = [f n / F, (f + 1) n / F). perm: R x n; bnd: R x (F + 1). Returns 0 or
 * H2T_ENOMEM. */
int h2t_solver__folds(const uint32_t *y, uint32_t n, uint32_t K, uint32_t F, uint32_t R,
                      uint32_t kind, uint64_t seed, uint32_t *perm, uint32_t *bnd);

/* Choose a cell from a CV table acc (nf splits x nl * nk cells, row-major by split; cell
 * li * nk + ki): writes each cell's mean and standard error (sample sd / sqrt(nf)); returns the
 * best mean (ties: the lowest index), or with one_se the first cell in simplicity order whose
 * mean is >= best mean - best's SE. Simplicity order: cell index order (lambdas descending,
 * the most regularised first), or keep-major (keep_major: keep ascending, then lambda
 * descending: head2toe's fewest features first). */
uint32_t h2t_solver__choose(const double *acc, uint32_t nf, uint32_t nl, uint32_t nk,
                            int keep_major, int one_se, double *mean, double *se);

/* argmax per row (ties: lowest class); returns number of rows with pred == y (y may be NULL,
 * then 0). pred may be NULL. */
uint32_t h2t_solver__argmax(const float *Z, uint32_t n, uint32_t k, const uint32_t *y,
                            uint32_t *pred);

/* Gradient row norms ||G_j||_2 of the mean CE at (W, b), d entries (double). */
int h2t_solver__grad_rownorm(const h2t_solver_opts *o, const float *X, const uint32_t *y,
                             uint32_t n, uint32_t d, uint32_t k, const float *W, const float *b,
                             double *out);

/* Group-lasso KKT residual at (W, b) given the gradient G, gb: max over rows of
 * ||G_j + lambda W_j/||W_j|| || (non-zero rows) or max(0, ||G_j|| - lambda) (zero rows), and
 * |gb_c|. */
double h2t_solver__kkt_group(const float *G, const float *gb, const float *W, uint32_t d,
                             uint32_t k, double lambda);

/* What a job on a stored task checks first (store, task, output; two classes; train and test
 * not empty), and its sample ids and labels in job order: train, then val, then test (each
 * array n_train + n_val + n_test long). For h2t_solver_run and the design cache alike. */
int h2t_solver__task_check(const h2t_store *st, const h2t_task *task, h2t_result **out);
void h2t_solver__task_lists(const h2t_task *task, uint32_t *samples, uint32_t *y);

/* h2t_solver_run on some of a stored task's rows (sh NULL: every row, the rest ignored): the
 * training rows at task-order positions train_pos[0..n_tr) (ascending; sh->train_rows is the
 * same list) and the test rows at test_pos[0..n_te) (ascending), read from st straight into the
 * job's design matrix, trained row-sharded through sh (shard_check first). solver/run.c. */
int h2t_solver__run_store_rows(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                               const h2t_shard *sh, const uint32_t *train_pos, uint32_t n_tr,
                               const uint32_t *test_pos, uint32_t n_te,
                               h2t_solver_progress_fn progress, void *ud, const atomic_int *cancel,
                               h2t_result **out);

/* Bytes of memory available now: the least of MemAvailable (else free pages), what this
 * process's memory cgroup still allows (limit less usage, v1 or v2) and what RLIMIT_DATA still
 * allows (UINT64_MAX when none is known): the budget a design matrix is checked against when
 * the spec gives no mem_limit. */
uint64_t h2t_solver__mem_available(void);

#endif
