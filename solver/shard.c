/*
 * solver/shard.c - a stored task trained row-sharded: each participant reads its own rows of the
 * task (a range of them, or those whose samples lie in its store-set shard) from the store
 * straight into its job's design matrix; predictions of the test rows gathered through the same
 * reducer.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "solver/internal.h"
#include "solver/solver.h"

/* [lo, hi) of n rows for participant part of parts: contiguous, sizes differ by at most one */
static void range_of(uint32_t n, uint32_t part, uint32_t parts, uint32_t *lo, uint32_t *hi)
{
    *lo = (uint32_t)((uint64_t)n * part / parts);
    *hi = (uint32_t)((uint64_t)n * (part + 1) / parts);
}

/* Which of a task's rows a participant holds: the contiguous range of its task-order index
 * (part of parts), or (by_sample) every row whose sample id lies in [lo, hi). */
typedef struct owner {
    int by_sample;
    uint32_t part, parts, lo, hi;
} owner;

/* The positions (task order, ascending) of the n rows in list[0..n) that o holds: *pos OWNED.
 * Training rows (blocks 1) go by whole row blocks (h2t_solver__block_of): participant part of
 * parts holds blocks [nb part / parts, nb (part + 1) / parts), so that every sum over rows is
 * the one process's bit for bit; test rows by a plain range. */
static int owned(const owner *o, const uint32_t *list, uint32_t n, int blocks, uint32_t **pos,
                 uint32_t *m)
{
    *m = 0;
    *pos = malloc((size_t)n * sizeof(uint32_t) + 1);
    if (!*pos)
        return h2t_err_set(H2T_ENOMEM, "row list (%u rows)", n);
    uint32_t a = 0, b = n;
    if (!o->by_sample && blocks) {
        uint32_t nb = h2t_solver__nblocks(n), b0, b1, e;
        range_of(nb, o->part, o->parts, &b0, &b1);
        range_of(n, b0, nb, &a, &e);
        range_of(n, b1, nb, &b, &e);
    } else if (!o->by_sample)
        range_of(n, o->part, o->parts, &a, &b);
    for (uint32_t i = a; i < b; i++)
        if (!o->by_sample || (list[i] >= o->lo && list[i] < o->hi))
            (*pos)[(*m)++] = i;
    return 0;
}

static int run_owned(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                     const h2t_reducer *red, const owner *o, h2t_solver_progress_fn progress,
                     void *ud, h2t_result **out)
{
    uint32_t *samples = NULL, *y = NULL, *tr = NULL, *te = NULL, ntr = 0, nte = 0;
    int rc = h2t_train_spec_check(spec);
    if (rc < 0)
        return rc;
    if ((rc = h2t_solver__task_check(st, task, out)) < 0)
        return rc;
    if (!red || !red->sum)
        return h2t_err_set(H2T_EINVAL, "no reducer");
    uint32_t n_tr = task->n_train + task->n_val, N = n_tr + task->n_test;
    samples = malloc((size_t)N * sizeof(uint32_t));
    y = malloc((size_t)N * sizeof(uint32_t));
    if (!samples || !y) {
        rc = h2t_err_set(H2T_ENOMEM, "sample lists");
        goto out;
    }
    h2t_solver__task_lists(task, samples, y);
    if ((rc = owned(o, samples, n_tr, 1, &tr, &ntr)) < 0 ||
        (rc = owned(o, samples + n_tr, task->n_test, 0, &te, &nte)) < 0)
        goto out;
    /* the job reads this participant's rows from st straight into its design matrix */
    h2t_shard sh = {red, n_tr, y, tr};
    rc = h2t_solver__run_store_rows(st, task, spec, &sh, tr, ntr, te, nte, progress, ud, NULL, out);
out:
    free(samples);
    free(y);
    free(tr);
    free(te);
    return rc;
}

int h2t_solver_run_store_shard(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                               const h2t_reducer *red, uint32_t part, uint32_t parts,
                               h2t_solver_progress_fn progress, void *ud, h2t_result **out)
{
    if (!parts || part >= parts)
        return h2t_err_set(H2T_EINVAL, "participant %u of %u", part, parts);
    owner o = {0, part, parts, 0, 0};
    return run_owned(st, task, spec, red, &o, progress, ud, out);
}

int h2t_solver_run_store_samples(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                                 const h2t_reducer *red, uint32_t lo, uint32_t hi,
                                 h2t_solver_progress_fn progress, void *ud, h2t_result **out)
{
    owner o = {1, 0, 1, lo, hi};
    return run_owned(st, task, spec, red, &o, progress, ud, out);
}

/* Rows samples[0..n) of the layers ids[0..nl) into x (n x sum(dims), layer blocks in order). */
static int read_rows(h2t_store *st, const h2t_extraction *e, uint32_t ext, const uint32_t *ids,
                     uint32_t nl, const uint32_t *samples, uint32_t n, float *x, size_t D)
{
    size_t off = 0;
    for (uint32_t l = 0; l < nl; l++) {
        int rc = n ? h2t_store_layer_read(st, ext, ids[l], samples, 0, n, x + off, D) : 0;
        if (rc < 0)
            return h2t_err_wrap(rc, "reading layer %u (%s): ", ids[l], e->layers[ids[l]].name);
        off += e->layers[ids[l]].dim;
    }
    return 0;
}

static int predict_owned(h2t_store *st, const h2t_task *task, const h2t_result *r,
                         const h2t_reducer *red, const owner *o, uint32_t *pred)
{
    h2t_extraction *e = NULL;
    float *x = NULL;
    uint32_t *p = NULL, *rows = NULL, nr = 0, *smp = NULL;
    double *all = NULL;
    int rc = h2t_store_extraction_get(st, task->extraction, &e);
    if (rc < 0)
        return rc;
    size_t D = 0;
    for (uint32_t l = 0; l < r->n_layers; l++) {
        if (r->layer_ids[l] >= e->n_layers || e->layers[r->layer_ids[l]].dim != r->layer_dims[l]) {
            rc = h2t_err_set(H2T_EINVAL, "the head's layer %u is not in extraction %u",
                             r->layer_ids[l], task->extraction);
            goto out;
        }
        D += r->layer_dims[l];
    }
    uint32_t n = task->n_test;
    /* blocks of PB rows: the test rows are read again here, after the job freed its matrix,
     * and need not all be in memory at once */
    enum { PB = 256 };
    x = malloc((size_t)PB * D * sizeof(float) + 1);
    p = malloc(PB * sizeof(uint32_t));
    smp = malloc(PB * sizeof(uint32_t));
    all = calloc((size_t)n + 1, sizeof(double));
    if (!x || !p || !smp || !all || (rc = owned(o, task->test, n, 0, &rows, &nr)) < 0) {
        rc = rc < 0 ? rc : h2t_err_set(H2T_ENOMEM, "test rows %u x %zu", PB, D);
        goto out;
    }
    for (uint32_t i0 = 0; i0 < nr; i0 += PB) {
        uint32_t nb = nr - i0 < PB ? nr - i0 : PB;
        for (uint32_t i = 0; i < nb; i++)
            smp[i] = task->test[rows[i0 + i]];
        if ((rc = read_rows(st, e, task->extraction, r->layer_ids, r->n_layers, smp, nb, x, D)) <
                0 ||
            (rc = h2t_result_predict(r, x, nb, p)) < 0)
            goto out;
        for (uint32_t i = 0; i < nb; i++)
            all[rows[i0 + i]] = p[i];
    }
    h2t_solver_opts so = {.red = red};
    h2t_solver__reduce(&so, &(h2t_solver_part){all, n, 1}, 1);
    for (uint32_t i = 0; i < n; i++)
        pred[i] = (uint32_t)all[i];
out:
    h2t_extraction_destroy(e);
    free(x);
    free(p);
    free(smp);
    free(rows);
    free(all);
    return rc;
}

int h2t_solver_predict_task(h2t_store *st, const h2t_task *task, const h2t_result *r,
                            const h2t_reducer *red, uint32_t part, uint32_t parts, uint32_t *pred)
{
    if (!st || !task || !r || !pred || !parts || part >= parts || (parts > 1 && !red))
        return h2t_err_set(H2T_EINVAL, "no store, task, result or output (participant %u of %u)",
                           part, parts);
    owner o = {0, part, parts, 0, 0};
    return predict_owned(st, task, r, parts > 1 ? red : NULL, &o, pred);
}

int h2t_solver_predict_task_samples(h2t_store *st, const h2t_task *task, const h2t_result *r,
                                    const h2t_reducer *red, uint32_t lo, uint32_t hi,
                                    uint32_t *pred)
{
    if (!st || !task || !r || !pred || !red)
        return h2t_err_set(H2T_EINVAL, "no store, task, result, reducer or output");
    owner o = {1, 0, 1, lo, hi};
    return predict_owned(st, task, r, red, &o, pred);
}
