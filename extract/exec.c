/*
 * extract/exec.c - the public model/executor API of model.h: load (parse + check + a first
 * shape inference), the arena plan (one buffer, dead tensors' space reused, views such as
 * Reshape/Flatten aliasing their input), and the run loop calling the ops*.c kernels.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/util.h"
#include "extract/model.h"
#include "extract/onnx_graph.h"

#define MAX_MODEL_BYTES ((size_t)2 << 30)
#define ALIGN_FLOATS 16

struct h2t_exec {
    const h2t_model *m;
    int max_batch;
    int cur_batch; /* batch the current shapes are inferred for */
    onnx_vstate *vs;
    onnx_nstate *ns;
    int *root;    /* value -> value owning its buffer (views alias), -1 none */
    size_t *off;  /* root value -> arena offset (floats) */
    int64_t *cap; /* value -> planned element count */
    float *arena;
    size_t arena_n; /* floats */
    float *scratch;
    size_t scratch_n;
    unsigned char *observed; /* per info index */
    int fixed_shapes;        /* run_once executor: inputs given explicitly */
};

/* ------------------------------------------------------------------ model */

static int is_runtime_f32(const h2t_model *m, int v)
{
    const onnx_value *val = &m->values[v];
    return val->dtype == ONNX_DT_F32 && (val->kind == ONNX_VAL_INPUT || val->kind == ONNX_VAL_NODE);
}

static int state_alloc(const h2t_model *m, onnx_vstate **vs, onnx_nstate **ns)
{
    *vs = calloc((size_t)m->n_values + 1, sizeof **vs);
    *ns = calloc((size_t)m->n_nodes + 1, sizeof **ns);
    if (!*vs || !*ns)
        return h2t_err_set(H2T_ENOMEM, "executor state");
    for (int i = 0; i < m->n_values; i++)
        (*vs)[i].rank = -1;
    return 0;
}

static void state_free(const h2t_model *m, onnx_vstate *vs, onnx_nstate *ns)
{
    if (vs)
        onnx_state_clear(m, vs);
    free(vs);
    free(ns);
}

/* Input shapes for batch b: declared dims, dim 0 = b when b > 0 and dim 0 is dynamic or
 * force is set. Returns 1 when every dim is known, 0 otherwise. */
static int set_input_shapes(const h2t_model *m, onnx_vstate *vs, int64_t b, int force)
{
    int known = 1;
    for (int k = 0; k < m->n_inputs; k++) {
        const onnx_value *v = &m->values[m->inputs[k]];
        onnx_vstate *s = &vs[m->inputs[k]];
        s->rank = v->rank;
        if (v->rank < 0 || v->dtype != ONNX_DT_F32)
            known = 0;
        for (int i = 0; i < v->rank; i++) {
            s->dim[i] = v->shape[i];
            if (i == 0 && b > 0 && (force || v->shape[0] < 0))
                s->dim[0] = b;
            if (s->dim[i] < 0)
                known = 0;
        }
    }
    return known;
}

/* Fill the public tensor table and, when the input shapes are known (up to the batch), infer
 * every shape now so that a bad model fails at load. */
static int model_describe(h2t_model *m)
{
    int rc = 0;
    onnx_vstate *v1 = NULL, *v2 = NULL;
    onnx_nstate *ns = NULL, *ns2 = NULL;
    m->info = calloc((size_t)m->n_values + 1, sizeof *m->info);
    m->info_value = calloc((size_t)m->n_values + 1, sizeof(int));
    m->value_info = malloc(((size_t)m->n_values + 1) * sizeof(int));
    if (!m->info || !m->info_value || !m->value_info)
        return h2t_err_set(H2T_ENOMEM, "tensor table");
    for (int i = 0; i < m->n_values; i++)
        m->value_info[i] = -1;
    m->main_input = -1;
    for (int k = 0; k < m->n_inputs; k++) {
        int v = m->inputs[k];
        if (m->main_input < 0 && m->values[v].dtype == ONNX_DT_F32)
            m->main_input = k;
        h2t_tensor_info *t = &m->info[m->n_info];
        t->name = m->values[v].name;
        t->op = "";
        t->node = "";
        t->is_input = 1;
        t->rank = m->values[v].rank;
        for (int i = 0; i < t->rank; i++)
            t->shape[i] = m->values[v].shape[i];
        m->info_value[m->n_info] = v;
        m->value_info[v] = m->n_info++;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (nd->kind == OP_CONSTANT)
            continue;
        for (int k = 0; k < nd->n_out; k++) {
            int v = nd->out[k];
            if (!m->values[v].name[0])
                continue;
            h2t_tensor_info *t = &m->info[m->n_info];
            t->name = m->values[v].name;
            t->op = nd->op;
            t->node = nd->name;
            t->rank = -1;
            m->info_value[m->n_info] = v;
            m->value_info[v] = m->n_info++;
        }
    }
    for (int k = 0; k < m->n_outputs; k++)
        if (m->value_info[m->outputs[k]] >= 0)
            m->info[m->value_info[m->outputs[k]]].is_output = 1;

    if ((rc = state_alloc(m, &v1, &ns)) < 0 || (rc = state_alloc(m, &v2, &ns2)) < 0)
        goto out;
    int dyn = 0;
    for (int k = 0; k < m->n_inputs; k++)
        if (m->values[m->inputs[k]].rank > 0 && m->values[m->inputs[k]].shape[0] < 0)
            dyn = 1;
    if (!set_input_shapes(m, v1, dyn ? 1 : 0, 0))
        goto out; /* shapes only known at run time (symbolic dims or int64 inputs) */
    if ((rc = onnx_infer(m, v1, ns)) < 0)
        goto out;
    /* which dims follow the batch: infer again with the main input's batch changed */
    int varied = 0;
    if (m->main_input >= 0 && m->values[m->inputs[m->main_input]].rank > 0) {
        set_input_shapes(m, v2, 0, 0);
        for (int k = 0; k < m->n_inputs; k++) {
            onnx_vstate *s = &v2[m->inputs[k]];
            if (s->rank > 0 && (k == m->main_input || m->values[m->inputs[k]].shape[0] < 0))
                s->dim[0] = v1[m->inputs[k]].dim[0] + 1;
        }
        varied = onnx_infer(m, v2, ns2) == 0;
        h2t_err_clear();
    }
    for (int t = 0; t < m->n_info; t++) {
        int v = m->info_value[t];
        h2t_tensor_info *ti = &m->info[t];
        ti->rank = v1[v].rank;
        for (int i = 0; i < ti->rank; i++) {
            ti->shape[i] = v1[v].dim[i];
            if (varied && v2[v].rank == ti->rank && v2[v].dim[i] != v1[v].dim[i])
                ti->shape[i] = -1;
        }
    }
out:
    state_free(m, v1, ns);
    state_free(m, v2, ns2);
    return rc;
}

int h2t_model_load_mem(const void *buf, size_t len, const char *what, h2t_model **out)
{
    int rc;
    h2t_model *m = calloc(1, sizeof *m);
    if (!what)
        what = "model";
    if (!m)
        return h2t_err_set(H2T_ENOMEM, "%s", what);
    if ((rc = onnx_model_parse(buf, len, what, m)) < 0)
        goto fail;
    if ((rc = onnx_check(m)) < 0) {
        h2t_err_wrap(rc, "%s", what);
        goto fail;
    }
    if ((rc = model_describe(m)) < 0) {
        h2t_err_wrap(rc, "%s", what);
        goto fail;
    }
    *out = m;
    return 0;
fail:
    onnx_model_free(m);
    free(m);
    return rc;
}

int h2t_model_load(const char *path, h2t_model **out)
{
    int rc = 0;
    void *buf = NULL;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f)
        return h2t_err_set(H2T_EIO, "open %s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = h2t_err_set(H2T_EIO, "%s: not a regular file", path);
        goto out;
    }
    if ((size_t)st.st_size > MAX_MODEL_BYTES) {
        rc = h2t_err_set(H2T_ETOOBIG, "%s: %lld bytes (limit 2 GiB)", path, (long long)st.st_size);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = h2t_err_set(H2T_ENOMEM, "%s: %lld bytes", path, (long long)st.st_size);
        goto out;
    }
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        rc = h2t_err_set(H2T_EIO, "read %s: %s", path, strerror(errno));
        goto out;
    }
    rc = h2t_model_load_mem(buf, (size_t)st.st_size, path, out);
out:
    free(buf);
    fclose(f);
    return rc;
}

void h2t_model_destroy(h2t_model *m)
{
    if (!m)
        return;
    onnx_model_free(m);
    free(m);
}

const h2t_tensor_info *h2t_model_input(const h2t_model *m)
{
    if (m->main_input < 0)
        return NULL;
    return &m->info[m->value_info[m->inputs[m->main_input]]];
}

int h2t_model_n_tensors(const h2t_model *m)
{
    return m->n_info;
}

const h2t_tensor_info *h2t_model_tensor(const h2t_model *m, int i)
{
    return i >= 0 && i < m->n_info ? &m->info[i] : NULL;
}

int h2t_model_tensor_find(const h2t_model *m, const char *name)
{
    for (int i = 0; i < m->n_info; i++)
        if (!strcmp(m->info[i].name, name))
            return i;
    return -1;
}

int h2t_model_opset(const h2t_model *m)
{
    return m->opset;
}

/* ------------------------------------------------------------------ plan */

typedef struct block {
    size_t off, len;
} block;

/* Lowest-offset gap of len floats among the live blocks (sorted by offset). */
static size_t place(block *live, int n_live, size_t len)
{
    size_t at = 0;
    for (int i = 0; i < n_live; i++) {
        if (live[i].off >= at + len)
            return at;
        if (live[i].off + live[i].len > at)
            at = live[i].off + live[i].len;
    }
    return at;
}

static void live_insert(block *live, int *n_live, size_t off, size_t len)
{
    int i = *n_live;
    while (i > 0 && live[i - 1].off > off) {
        live[i] = live[i - 1];
        i--;
    }
    live[i].off = off;
    live[i].len = len;
    (*n_live)++;
}

static void live_remove(block *live, int *n_live, size_t off)
{
    for (int i = 0; i < *n_live; i++)
        if (live[i].off == off) {
            memmove(&live[i], &live[i + 1], (size_t)(*n_live - i - 1) * sizeof *live);
            (*n_live)--;
            return;
        }
}

static size_t round_up(int64_t n)
{
    return ((size_t)(n > 0 ? n : 1) + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

/* Plan buffers for the current shapes in x->vs (already inferred). */
static int exec_plan(h2t_exec *x)
{
    const h2t_model *m = x->m;
    int rc = 0, nv = m->n_values;
    int *last = malloc(((size_t)nv + 1) * sizeof(int));
    block *live = malloc(((size_t)nv + 1) * sizeof(block));
    x->root = malloc(((size_t)nv + 1) * sizeof(int));
    x->off = calloc((size_t)nv + 1, sizeof(size_t));
    x->cap = calloc((size_t)nv + 1, sizeof(int64_t));
    if (!last || !live || !x->root || !x->off || !x->cap) {
        rc = h2t_err_set(H2T_ENOMEM, "executor plan");
        goto out;
    }
    for (int v = 0; v < nv; v++) {
        x->root[v] = is_runtime_f32(m, v) ? v : -1;
        last[v] = -1;
        x->cap[v] = x->vs[v].rank >= 0 ? onnx_numel(&x->vs[v]) : 0;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (nd->kind == OP_CONSTANT || onnx_node_is_static(m, nd))
            continue;
        if (onnx_op_is_view(nd) && x->root[nd->in[0]] >= 0)
            x->root[nd->out[0]] = x->root[nd->in[0]];
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && x->root[nd->in[k]] >= 0)
                last[x->root[nd->in[k]]] = i;
        for (int k = 0; k < nd->n_out; k++)
            if (x->root[nd->out[k]] >= 0 && last[x->root[nd->out[k]]] < i)
                last[x->root[nd->out[k]]] = i;
    }
    for (int k = 0; k < m->n_outputs; k++)
        if (x->root[m->outputs[k]] >= 0)
            last[x->root[m->outputs[k]]] = m->n_nodes;
    int n_live = 0;
    size_t top = 0, scratch = 0;
    /* graph inputs first, live from the start */
    for (int k = 0; k < m->n_inputs; k++) {
        int v = m->inputs[k];
        if (x->root[v] != v)
            continue;
        size_t len = round_up(x->cap[v]);
        x->off[v] = place(live, n_live, len);
        live_insert(live, &n_live, x->off[v], len);
        if (x->off[v] + len > top)
            top = x->off[v] + len;
        if (last[v] < 0)
            live_remove(live, &n_live, x->off[v]);
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (nd->kind == OP_CONSTANT || onnx_node_is_static(m, nd))
            continue;
        size_t s = onnx_kernel_scratch(nd, x->vs, &x->ns[i]);
        if (s > scratch)
            scratch = s;
        for (int k = 0; k < nd->n_out; k++) {
            int v = nd->out[k];
            if (x->root[v] != v)
                continue;
            size_t len = round_up(x->cap[v]);
            x->off[v] = place(live, n_live, len);
            live_insert(live, &n_live, x->off[v], len);
            if (x->off[v] + len > top)
                top = x->off[v] + len;
        }
        /* free what dies here (after the outputs are placed: kernels are not in-place) */
        for (int k = 0; k < nd->n_in + nd->n_out; k++) {
            int v = k < nd->n_in ? nd->in[k] : nd->out[k - nd->n_in];
            if (v < 0 || x->root[v] < 0)
                continue;
            int r = x->root[v];
            if (last[r] == i) {
                live_remove(live, &n_live, x->off[r]);
                last[r] = -2; /* freed once */
            }
        }
    }
    x->arena_n = top;
    x->scratch_n = scratch;
    x->arena = h2t_aalloc(top ? top : 1, sizeof(float));
    x->scratch = h2t_aalloc(scratch ? scratch : 1, sizeof(float));
    if (!x->arena || !x->scratch)
        rc = h2t_err_set(H2T_ENOMEM, "executor arena of %zu bytes + scratch %zu bytes",
                         top * sizeof(float), scratch * sizeof(float));
out:
    free(last);
    free(live);
    return rc;
}

static h2t_exec *exec_new(const h2t_model *m)
{
    h2t_exec *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->m = m;
    x->observed = calloc((size_t)m->n_info + 1, 1);
    if (!x->observed || state_alloc(m, &x->vs, &x->ns) < 0) {
        free(x->observed);
        state_free(m, x->vs, x->ns);
        free(x);
        return NULL;
    }
    return x;
}

void h2t_exec_destroy(h2t_exec *x)
{
    if (!x)
        return;
    state_free(x->m, x->vs, x->ns);
    free(x->root);
    free(x->off);
    free(x->cap);
    h2t_afree(x->arena);
    h2t_afree(x->scratch);
    free(x->observed);
    free(x);
}

int h2t_exec_create(const h2t_model *m, int max_batch, h2t_exec **out)
{
    int rc;
    if (!m || max_batch < 1 || !out)
        return h2t_err_set(H2T_EINVAL, "exec_create: max_batch %d", max_batch);
    if (m->n_inputs != 1 || m->main_input != 0)
        return h2t_err_set(H2T_EINVAL,
                           "exec_create: the model has %d runtime inputs (one float input "
                           "expected; use h2t_model_run_once)",
                           m->n_inputs);
    const onnx_value *in = &m->values[m->inputs[0]];
    if (in->rank < 1)
        return h2t_err_set(H2T_EINVAL, "exec_create: input '%s' has no known shape", in->name);
    h2t_exec *x = exec_new(m);
    if (!x)
        return h2t_err_set(H2T_ENOMEM, "executor");
    x->max_batch = max_batch;
    if (!set_input_shapes(m, x->vs, max_batch, 1)) {
        rc = h2t_err_set(H2T_EINVAL,
                         "exec_create: input '%s' has unknown dimensions beyond the "
                         "batch",
                         in->name);
        goto fail;
    }
    if ((rc = onnx_infer(m, x->vs, x->ns)) < 0)
        goto fail;
    x->cur_batch = max_batch;
    if ((rc = exec_plan(x)) < 0)
        goto fail;
    *out = x;
    return 0;
fail:
    h2t_exec_destroy(x);
    return rc;
}

int h2t_exec_observe(h2t_exec *x, int i, int on)
{
    if (!x || i < 0 || i >= x->m->n_info)
        return h2t_err_set(H2T_EINVAL, "exec_observe: tensor %d out of range", i);
    x->observed[i] = on ? 1 : 0;
    return 0;
}

size_t h2t_exec_arena_bytes(const h2t_exec *x)
{
    return x->arena_n * sizeof(float);
}

/* ------------------------------------------------------------------ run */

static int notify(h2t_exec *x, int v, h2t_tensor_cb cb, void *ctx)
{
    int t = x->m->value_info[v];
    if (!cb || t < 0 || !x->observed[t] || !x->vs[v].f)
        return 0;
    return cb(ctx, t, x->vs[v].f, x->vs[v].dim, x->vs[v].rank);
}

static int exec_forward(h2t_exec *x, h2t_tensor_cb cb, void *ctx)
{
    const h2t_model *m = x->m;
    onnx_kctx k = {m, x->vs, NULL, x->scratch, x->scratch_n, onnx_blas_threads_get()};
    for (int v = 0; v < m->n_values; v++)
        if (x->root[v] >= 0)
            x->vs[v].f = x->arena + x->off[x->root[v]];
    for (int j = 0; j < m->n_inputs; j++) {
        int rc = notify(x, m->inputs[j], cb, ctx);
        if (rc)
            return rc;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (nd->kind == OP_CONSTANT || onnx_node_is_static(m, nd))
            continue;
        int rc = 0;
        if (onnx_op_is_view(nd)) {
            if (x->root[nd->out[0]] != x->root[nd->in[0]] || x->root[nd->in[0]] < 0)
                memcpy(x->vs[nd->out[0]].f, x->vs[nd->in[0]].f,
                       (size_t)onnx_numel(&x->vs[nd->out[0]]) * sizeof(float));
        } else {
            k.ns = &x->ns[i];
            rc = onnx_kernel_run(&k, nd);
            if (rc < 0)
                return h2t_err_wrap(rc, "node '%s' (%s): ", nd->name, nd->op);
        }
        for (int o = 0; o < nd->n_out; o++)
            if ((rc = notify(x, nd->out[o], cb, ctx)) != 0)
                return rc;
    }
    return 0;
}

int h2t_exec_run(h2t_exec *x, const float *input, int n, h2t_tensor_cb cb, void *ctx)
{
    const h2t_model *m = x->m;
    int rc;
    if (!input || n < 1 || n > x->max_batch || x->fixed_shapes)
        return h2t_err_set(H2T_EINVAL, "exec_run: batch %d (max %d)", n, x->max_batch);
    if (n != x->cur_batch) {
        set_input_shapes(m, x->vs, n, 1);
        x->cur_batch = -1;
        if ((rc = onnx_infer(m, x->vs, x->ns)) < 0)
            return rc;
        for (int v = 0; v < m->n_values; v++)
            if (x->root[v] >= 0 && onnx_numel(&x->vs[v]) > x->cap[x->root[v]])
                return h2t_err_set(H2T_ESHAPE,
                                   "tensor '%s' grows at batch %d beyond its size at batch %d",
                                   m->values[v].name, n, x->max_batch);
        x->cur_batch = n;
    }
    int vin = m->inputs[0];
    memcpy(x->arena + x->off[vin], input, (size_t)onnx_numel(&x->vs[vin]) * sizeof(float));
    return exec_forward(x, cb, ctx);
}

const float *h2t_exec_output(h2t_exec *x, int k, int64_t *shape, int *rank)
{
    if (!x || k < 0 || k >= x->m->n_outputs)
        return NULL;
    const onnx_vstate *s = &x->vs[x->m->outputs[k]];
    if (s->rank < 0 || !s->f)
        return NULL;
    if (rank)
        *rank = s->rank;
    if (shape)
        memcpy(shape, s->dim, (size_t)s->rank * sizeof(int64_t));
    return s->f;
}

/* ------------------------------------------------------------------ run once */

void h2t_tensors_free(h2t_tensor *t, int n)
{
    if (!t)
        return;
    for (int i = 0; i < n; i++)
        free(t[i].data);
    free(t);
}

int h2t_model_run_once_i64(const h2t_model *m, const h2t_tensor *inputs, int n_inputs,
                           const h2t_itensor *iinputs, int n_iinputs, h2t_tensor **outputs,
                           int *n_outputs)
{
    int rc = 0;
    h2t_tensor *outs = NULL;
    h2t_exec *x = exec_new(m);
    if (!x)
        return h2t_err_set(H2T_ENOMEM, "executor");
    x->fixed_shapes = 1;
    int fpos = 0, ipos = 0;
    const float **src = calloc((size_t)m->n_inputs + 1, sizeof *src);
    if (!src) {
        rc = h2t_err_set(H2T_ENOMEM, "inputs");
        goto out;
    }
    for (int k = 0; k < m->n_inputs; k++) {
        const onnx_value *v = &m->values[m->inputs[k]];
        onnx_vstate *s = &x->vs[m->inputs[k]];
        int found = 0;
        if (v->dtype == ONNX_DT_F32) {
            for (int j = 0; j < n_inputs && !found; j++)
                if (!strcmp(inputs[j].name, v->name)) {
                    found = 1, fpos = j;
                }
            if (!found && fpos < n_inputs && !inputs[fpos].name[0])
                found = 1;
            if (!found)
                break;
            const h2t_tensor *t = &inputs[fpos++];
            if (t->rank < 0 || t->rank > H2T_MAX_RANK) {
                found = 0;
                break;
            }
            s->rank = t->rank;
            memcpy(s->dim, t->shape, sizeof s->dim);
            src[k] = t->data;
        } else if (v->dtype == ONNX_DT_I64) {
            for (int j = 0; j < n_iinputs && !found; j++)
                if (!strcmp(iinputs[j].name, v->name)) {
                    found = 1, ipos = j;
                }
            if (!found && ipos < n_iinputs && !iinputs[ipos].name[0])
                found = 1;
            if (!found)
                break;
            const h2t_itensor *t = &iinputs[ipos++];
            if (t->rank < 0 || t->rank > H2T_MAX_RANK) {
                found = 0;
                break;
            }
            s->rank = t->rank;
            memcpy(s->dim, t->shape, sizeof s->dim);
            int64_t n = onnx_numel(s);
            s->ival = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
            if (!s->ival) {
                rc = h2t_err_set(H2T_ENOMEM, "input '%s'", v->name);
                goto out;
            }
            if (n)
                memcpy(s->ival, t->data, (size_t)n * sizeof(int64_t));
        }
        if (!found) {
            rc = h2t_err_set(H2T_EINVAL, "run_once: input '%s' not given", v->name);
            goto out;
        }
    }
    for (int k = 0; k < m->n_inputs; k++)
        if (x->vs[m->inputs[k]].rank < 0) {
            rc = h2t_err_set(H2T_EINVAL, "run_once: input '%s' not given or bad rank",
                             m->values[m->inputs[k]].name);
            goto out;
        }
    for (int k = 0; k < m->n_inputs; k++) {
        const onnx_value *v = &m->values[m->inputs[k]];
        if (v->rank >= 0 && v->rank != x->vs[m->inputs[k]].rank) {
            rc = h2t_err_set(H2T_ESHAPE, "run_once: input '%s' has rank %d, the model wants %d",
                             v->name, x->vs[m->inputs[k]].rank, v->rank);
            goto out;
        }
    }
    if ((rc = onnx_infer(m, x->vs, x->ns)) < 0 || (rc = exec_plan(x)) < 0)
        goto out;
    for (int k = 0; k < m->n_inputs; k++) {
        int v = m->inputs[k];
        if (src[k] && x->root[v] >= 0)
            memcpy(x->arena + x->off[v], src[k], (size_t)onnx_numel(&x->vs[v]) * sizeof(float));
    }
    if ((rc = exec_forward(x, NULL, NULL)) < 0)
        goto out;
    outs = calloc((size_t)m->n_outputs + 1, sizeof *outs);
    if (!outs) {
        rc = h2t_err_set(H2T_ENOMEM, "outputs");
        goto out;
    }
    for (int k = 0; k < m->n_outputs; k++) {
        int v = m->outputs[k];
        const onnx_vstate *s = &x->vs[v];
        int64_t n = onnx_numel(s);
        snprintf(outs[k].name, sizeof outs[k].name, "%s", m->values[v].name);
        outs[k].rank = s->rank;
        memcpy(outs[k].shape, s->dim, sizeof outs[k].shape);
        outs[k].data = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        if (!outs[k].data) {
            rc = h2t_err_set(H2T_ENOMEM, "output '%s'", m->values[v].name);
            goto out;
        }
        if (m->values[v].dtype == ONNX_DT_I64) {
            for (int64_t i = 0; i < n; i++)
                outs[k].data[i] = (float)s->ival[i];
        } else if (n) {
            memcpy(outs[k].data, s->f, (size_t)n * sizeof(float));
        }
    }
    *outputs = outs;
    *n_outputs = m->n_outputs;
    outs = NULL;
out:
    h2t_tensors_free(outs, m->n_outputs);
    free(src);
    h2t_exec_destroy(x);
    return rc;
}

int h2t_model_run_once(const h2t_model *m, const h2t_tensor *inputs, int n_inputs,
                       h2t_tensor **outputs, int *n_outputs)
{
    return h2t_model_run_once_i64(m, inputs, n_inputs, NULL, 0, outputs, n_outputs);
}
