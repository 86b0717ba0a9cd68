/*
 * solver/shard.c - a stored task trained row-sharded: each participant reads its own range of
 * the task's rows from the store and runs h2t_solver_run_shard; predictions of the test rows
 * gathered through the same reducer.
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

/* The layers (extraction indices) a spec reads: its list, or the probe layer (linear, knn),
 * or every layer. */
static int spec_layers(const h2t_extraction *e, const h2t_train_spec *spec, uint32_t **out,
                       uint32_t *nl)
{
    int probe = spec->method == H2T_METHOD_LINEAR || spec->method == H2T_METHOD_KNN;
    *nl = spec->n_layers ? spec->n_layers : probe ? 1 : e->n_layers;
    *out = malloc(*nl * sizeof(uint32_t) + 1);
    if (!*out)
        return h2t_err_set(H2T_ENOMEM, "layer list");
    for (uint32_t l = 0; l < *nl; l++) {
        uint32_t id = spec->n_layers ? spec->layers[l] : probe ? h2t_solver_probe_layer(e) : l;
        if (id >= e->n_layers)
            return h2t_err_set(H2T_EINVAL, "layer index %u out of range (%u layers)", id,
                               e->n_layers);
        (*out)[l] = id;
    }
    return 0;
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

int h2t_solver_run_store_shard(h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                               const h2t_reducer *red, uint32_t part, uint32_t parts,
                               h2t_solver_progress_fn progress, void *ud, h2t_result **out)
{
    h2t_extraction *e = NULL;
    uint32_t *ids = NULL, *samples = NULL, *y = NULL, *dims = NULL, *rows = NULL, nl = 0;
    const char **names = NULL;
    float *xtr = NULL, *xte = NULL;
    int rc = h2t_train_spec_check(spec);
    if (rc < 0)
        return rc;
    if ((rc = h2t_solver__task_check(st, task, out)) < 0)
        return rc;
    if (!red || !parts || part >= parts)
        return h2t_err_set(H2T_EINVAL, "participant %u of %u", part, parts);
    if ((rc = h2t_store_extraction_get(st, task->extraction, &e)) < 0 ||
        (rc = spec_layers(e, spec, &ids, &nl)) < 0)
        goto out;
    uint32_t n_tr = task->n_train + task->n_val, n_te = task->n_test, N = n_tr + n_te;
    samples = malloc((size_t)N * sizeof(uint32_t));
    y = malloc((size_t)N * sizeof(uint32_t));
    dims = malloc(nl * sizeof(uint32_t) + 1);
    names = malloc(nl * sizeof(char *) + 1);
    if (!samples || !y || !dims || !names) {
        rc = h2t_err_set(H2T_ENOMEM, "sample lists");
        goto out;
    }
    h2t_solver__task_lists(task, samples, y);
    size_t D = 0;
    for (uint32_t l = 0; l < nl; l++) {
        dims[l] = e->layers[ids[l]].dim;
        names[l] = e->layers[ids[l]].name;
        D += dims[l];
    }
    uint32_t a, b, ta, tb;
    range_of(n_tr, part, parts, &a, &b);
    range_of(n_te, part, parts, &ta, &tb);
    rows = malloc((size_t)(b - a) * sizeof(uint32_t) + 1);
    xtr = malloc((size_t)(b - a) * D * sizeof(float) + 1);
    xte = malloc((size_t)(tb - ta) * D * sizeof(float) + 1);
    if (!rows || !xtr || !xte) {
        rc = h2t_err_set(H2T_ENOMEM, "rows %u..%u of %u x %zu features", a, b, n_tr, D);
        goto out;
    }
    for (uint32_t i = a; i < b; i++)
        rows[i - a] = i;
    if ((rc = read_rows(st, e, task->extraction, ids, nl, samples + a, b - a, xtr, D)) < 0 ||
        (rc = read_rows(st, e, task->extraction, ids, nl, samples + n_tr + ta, tb - ta, xte, D)) <
            0)
        goto out;
    h2t_dataset d = {.n_train = b - a,
                     .n_test = tb - ta,
                     .n_classes = task->n_classes,
                     .n_layers = nl,
                     .x_train = xtr,
                     .y_train = y + a,
                     .x_test = xte,
                     .y_test = y + n_tr + ta,
                     .layer_dims = dims,
                     .layer_ids = ids,
                     .layer_names = names};
    /* the dataset holds exactly the spec's layers, in its order */
    h2t_train_spec s = *spec;
    s.layers = NULL;
    s.n_layers = 0;
    h2t_shard sh = {red, n_tr, y, rows};
    rc = h2t_solver_run_shard(&d, &sh, &s, progress, ud, out);
out:
    h2t_extraction_destroy(e);
    free(ids);
    free(samples);
    free(y);
    free(dims);
    free(names);
    free(rows);
    free(xtr);
    free(xte);
    return rc;
}

int h2t_solver_predict_task(h2t_store *st, const h2t_task *task, const h2t_result *r,
                            const h2t_reducer *red, uint32_t part, uint32_t parts, uint32_t *pred)
{
    h2t_extraction *e = NULL;
    float *x = NULL;
    uint32_t *p = NULL;
    double *all = NULL;
    if (!st || !task || !r || !pred || !parts || part >= parts || (parts > 1 && !red))
        return h2t_err_set(H2T_EINVAL, "no store, task, result or output (participant %u of %u)",
                           part, parts);
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
    uint32_t n = task->n_test, a, b;
    range_of(n, part, parts, &a, &b);
    /* blocks of PB rows: the test rows are read again here, after the job freed its matrix,
     * and need not all be in memory at once */
    enum { PB = 256 };
    x = malloc((size_t)PB * D * sizeof(float) + 1);
    p = malloc(PB * sizeof(uint32_t));
    all = calloc((size_t)n + 1, sizeof(double));
    if (!x || !p || !all) {
        rc = h2t_err_set(H2T_ENOMEM, "test rows %u x %zu", PB, D);
        goto out;
    }
    for (uint32_t i0 = a; i0 < b; i0 += PB) {
        uint32_t nb = b - i0 < PB ? b - i0 : PB;
        if ((rc = read_rows(st, e, task->extraction, r->layer_ids, r->n_layers, task->test + i0, nb,
                            x, D)) < 0 ||
            (rc = h2t_result_predict(r, x, nb, p)) < 0)
            goto out;
        for (uint32_t i = 0; i < nb; i++)
            all[i0 + i] = p[i];
    }
    h2t_solver_opts o = {.red = parts > 1 ? red : NULL};
    h2t_solver__reduce(&o, &(h2t_solver_part){all, n, 1}, 1);
    for (uint32_t i = 0; i < n; i++)
        pred[i] = (uint32_t)all[i];
out:
    h2t_extraction_destroy(e);
    free(x);
    free(p);
    free(all);
    return rc;
}
