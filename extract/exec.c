/*
 * extract/exec.c - the public model/executor API of model.h: load (parse + check + a first
 * shape inference), the fusion and arena plan, and the run loop calling the ops*.c kernels.
 *
 * Plan: chains of adjacent nodes [Pad ->] Conv [-> BatchNormalization] [-> Add] [-> Relu |
 * Clip] run as one step (onnx_fuse, ops_conv.c); a chain's intermediate tensor that nobody
 * outside the chain needs (not observed, not a graph output, one reader) is never
 * materialised, and when the Conv and BN outputs are both elided the BN is folded into the
 * conv weights. The fusion is decided from the observed set: h2t_exec_observe marks the plan
 * stale and the next run replans. One arena holds every materialised tensor, dead buffers
 * reused, views (Reshape/Flatten/...) aliasing their input.
 *
 * Threads: with T = OpenBLAS's thread count > 1 and a batch of n >= 2 samples, the batch is
 * split into T slices of samples run by a persistent pool (the caller's thread is slice 0),
 * OpenBLAS on one thread inside, one barrier after each step (plus one after each step whose
 * tensors are observed: the callbacks run on the caller's thread with the whole batch). A
 * sample's result does not depend on T or on the slices. Graphs that mix samples (a Reshape
 * folding the batch, Softmax over axis 0, ...) run unsplit with OpenBLAS on T threads.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/blas.h"
#include "common/err.h"
#include "common/util.h"
#include "extract/dnnl_conv.h"
#include "extract/kern.h"
#include "extract/model.h"
#include "extract/onnx_graph.h"

#define MAX_MODEL_BYTES ((size_t)2 << 30)
#define ALIGN_FLOATS 16
#define MAX_SPLIT 16
#define BAR_SPIN 4000

/* A barrier that also ORs a flag over the threads (so that all see the same abort). */
typedef struct xbar {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, count, acc, res;
    unsigned gen;
    atomic_uint agen;
} xbar;

/* One slice of the batch: its own shapes (n samples from lo) and scratch. */
typedef struct slice {
    onnx_vstate *vs;
    onnx_nstate *ns;
    float *scratch;
    size_t scratch_n;
    int lo, n;
    int inferred_n; /* the batch its shapes are inferred for, -1 none */
    int rc;
    char err[512];
    struct h2t_exec *owner; /* for the pool thread of this slice */
    int idx;
} slice;

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
    int stale;               /* the observed set changed: replan before the next run */
    int *uses;               /* value -> readers (node inputs + graph outputs) */
    int n_fz;
    onnx_fuse *fz;      /* chains */
    int *chain_of;      /* node -> chain index, -1 */
    unsigned char *blk; /* value -> 1: held in oneDNN's blocked layout (between its convs) */
    /* the split pool */
    int n_slices; /* slices of the current run (1: unsplit) */
    slice sl[MAX_SPLIT];
    pthread_t th[MAX_SPLIT];
    int n_th; /* pool threads started (slices 1..n_th) */
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    unsigned job_gen;
    int quit, pool_init;
    xbar bar;
    h2t_tensor_cb job_cb;
    void *job_ctx;
    int job_samples;        /* 1: nothing observed, slices run sample by sample */
    atomic_int next_sample; /* sample mode: the next sample to take */
    int chunk;              /* sample mode: samples taken at a time */
    const float *job_input; /* the caller's input (sample mode reads it, not the arena copy,
                             * whose space the outputs may reuse) */
    struct h2t_exec *sub[MAX_SPLIT]; /* per slice: a batch-1 executor (sample mode) */
};

/* ------------------------------------------------------------------ model */

/* A value computed per run in the arena: float32, or bool from run-time data (as float 0/1). */
static int is_runtime(const h2t_model *m, int v)
{
    const onnx_value *val = &m->values[v];
    return (val->dtype == ONNX_DT_F32 || val->dtype == ONNX_DT_BOOL) && !val->is_static &&
           (val->kind == ONNX_VAL_INPUT || val->kind == ONNX_VAL_NODE);
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
        t->dtype = m->values[v].dtype;
        t->is_static = m->values[v].is_static;
        t->rank = m->values[v].rank;
        for (int i = 0; i < t->rank; i++)
            t->shape[i] = m->values[v].shape[i];
        m->info_value[m->n_info] = v;
        m->value_info[v] = m->n_info++;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if ((nd->def->flags & ONNX_OPF_CONST))
            continue;
        for (int k = 0; k < nd->n_out; k++) {
            int v = nd->out[k];
            if (!m->values[v].name[0])
                continue;
            h2t_tensor_info *t = &m->info[m->n_info];
            t->name = m->values[v].name;
            t->op = nd->op;
            t->node = nd->name;
            t->dtype = m->values[v].dtype;
            t->is_static = m->values[v].is_static;
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
    int64_t bin = m->main_input >= 0 && v1[m->inputs[m->main_input]].rank > 0
                      ? v1[m->inputs[m->main_input]].dim[0]
                      : 0;
    int64_t b1 = varied ? v1[m->inputs[m->main_input]].dim[0] : 0;
    int64_t b2 = varied ? v2[m->inputs[m->main_input]].dim[0] : 0;
    for (int t = 0; t < m->n_info; t++) {
        int v = m->info_value[t];
        h2t_tensor_info *ti = &m->info[t];
        ti->rank = v1[v].rank;
        int nvar = 0, axis = -1;
        ti->batch_fold = 0;
        for (int i = 0; i < ti->rank; i++) {
            ti->shape[i] = v1[v].dim[i];
            if (varied && v2[v].rank == ti->rank && v2[v].dim[i] != v1[v].dim[i]) {
                ti->shape[i] = -1;
                nvar++;
                if (v1[v].dim[i] == b1 && v2[v].dim[i] == b2)
                    axis = i;
                else if (b1 > 0 && v1[v].dim[i] % b1 == 0 && v2[v].dim[i] == v1[v].dim[i] / b1 * b2)
                    ti->batch_fold = v1[v].dim[i] / b1;
            }
        }
        if (nvar != 1 || axis >= 0)
            ti->batch_fold = 0;
        /* the batch axis (model.h): the one axis that grows exactly with the batch; without
         * the second inference, the first axis of the batch's size */
        if (ti->is_input || (!varied && ti->rank >= 1 && v1[v].dim[0] == bin)) {
            ti->batch_axis = 0;
        } else if (!varied) {
            ti->batch_axis = H2T_BATCH_FOLDED;
            for (int i = ti->rank - 1; i >= 0; i--)
                if (v1[v].dim[i] == bin)
                    ti->batch_axis = i;
            if (bin <= 0 || ti->rank < 1)
                ti->batch_axis = 0;
        } else if (v2[v].rank != ti->rank)
            ti->batch_axis = H2T_BATCH_FOLDED;
        else if (nvar == 0)
            ti->batch_axis = H2T_BATCH_NONE;
        else
            ti->batch_axis = nvar == 1 && axis >= 0 ? axis : H2T_BATCH_FOLDED;
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

/* ------------------------------------------------------------------ fusion plan */

static int value_observed(const h2t_exec *x, int v)
{
    int t = x->m->value_info[v];
    return t >= 0 && x->observed[t];
}

/* Whether value v is observed in blocked pieces (h2t_exec_observe_blocked). */
static int value_obs_blk(const h2t_exec *x, int v)
{
    int t = x->m->value_info[v];
    return t >= 0 && x->observed[t] == 2;
}

/* Whether a chain stage's output must be materialised. */
static int value_needed(const h2t_exec *x, int v)
{
    return x->uses[v] != 1 || value_observed(x, v);
}

static int is_const_f32(const h2t_model *m, int v)
{
    return v >= 0 && m->values[v].kind == ONNX_VAL_CONST && m->values[v].dtype == ONNX_DT_F32;
}

static int same_shape(const onnx_vstate *a, const onnx_vstate *b)
{
    if (a->rank != b->rank)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i])
            return 0;
    return 1;
}

static void fz_clear(h2t_exec *x)
{
    for (int c = 0; c < x->n_fz; c++) {
        free(x->fz[c].fw);
        free(x->fz[c].fb);
        free(x->fz[c].bn_a);
        free(x->fz[c].bn_b);
        free(x->fz[c].bn_pa);
        free(x->fz[c].bn_pb);
        h2t_dconv_free(x->fz[c].dconv);
    }
    free(x->fz);
    x->fz = NULL;
    x->n_fz = 0;
    if (x->chain_of)
        for (int i = 0; i < x->m->n_nodes; i++)
            x->chain_of[i] = -1;
}

/* A Pad before node conv that can become conv padding: constant 0, spatial only. */
static int pad_foldable(const h2t_exec *x, int p, int conv)
{
    const h2t_model *m = x->m;
    if (p < 0)
        return 0;
    const onnx_node *pd = &m->nodes[p];
    if (!onnx_op_is(pd, "Pad") || pd->out[0] != m->nodes[conv].in[0] || pd->p.mode != 0 ||
        value_needed(x, pd->out[0]) || x->vs[pd->in[0]].rank != 4)
        return 0;
    float val = pd->p.value;
    if (m->opset >= 11) {
        if (pd->n_in > 2 && pd->in[2] >= 0) {
            if (!is_const_f32(m, pd->in[2]) || m->values[pd->in[2]].count != 1)
                return 0;
            val = ((const float *)m->values[pd->in[2]].cdata)[0];
        } else {
            val = 0.f;
        }
    }
    const onnx_nstate *ns = &x->ns[p];
    if (val != 0.f || ns->a[0] || ns->a[1] || ns->b[0] || ns->b[1])
        return 0;
    for (int i = 2; i < 4; i++)
        if (ns->a[i] < 0 || ns->b[i] < 0)
            return 0;
    return 1;
}

/* The chain starting at Conv node i (into *f); 0 when there is none. */
static int chain_find(const h2t_exec *x, int i, onnx_fuse *f)
{
    const h2t_model *m = x->m;
    const onnx_node *cv = &m->nodes[i];
    memset(f, 0, sizeof *f);
    f->pad = f->bn = f->add = f->act = -1;
    f->v_conv = f->v_bn = f->v_add = f->v_act = -1;
    f->conv = i;
    f->first = f->last = i;
    f->x = cv->in[0];
    if (!onnx_op_is(cv, "Conv") || x->vs[cv->in[0]].rank != 4 || x->vs[cv->out[0]].rank != 4)
        return 0;
    if (pad_foldable(x, i - 1, i)) {
        f->pad = i - 1;
        f->first = i - 1;
        f->x = m->nodes[i - 1].in[0];
    }
    int cur = cv->out[0], j = i + 1;
    int64_t M = x->vs[cur].dim[1];
    if (j < m->n_nodes && onnx_op_is(&m->nodes[j], "BatchNormalization") &&
        m->nodes[j].in[0] == cur && x->vs[cur].dim[1] == M) {
        const onnx_node *bn = &m->nodes[j];
        int ok = 1;
        for (int k = 1; k < 5; k++)
            ok = ok && is_const_f32(m, bn->in[k]) && m->values[bn->in[k]].count == M;
        if (ok) {
            f->bn = j++;
            cur = bn->out[0];
        }
    }
    if (j < m->n_nodes && onnx_op_is(&m->nodes[j], "Add")) {
        const onnx_node *ad = &m->nodes[j];
        int other = ad->in[0] == cur ? ad->in[1] : ad->in[1] == cur ? ad->in[0] : -1;
        if (other >= 0 && other != cur && x->root[other] >= 0 &&
            same_shape(&x->vs[other], &x->vs[cur]) && same_shape(&x->vs[ad->out[0]], &x->vs[cur])) {
            f->add = j++;
            f->add_other = other;
            cur = ad->out[0];
        }
    }
    if (j < m->n_nodes && (onnx_op_is(&m->nodes[j], "Relu") || onnx_op_is(&m->nodes[j], "Clip")) &&
        m->nodes[j].in[0] == cur) {
        const onnx_node *ac = &m->nodes[j];
        int ok = 1;
        f->act_kind = onnx_op_is(ac, "Relu") ? H2T_ACT_RELU : H2T_ACT_CLIP;
        f->act_lo = ac->p.fmin;
        f->act_hi = ac->p.fmax;
        if (onnx_op_is(ac, "Clip") && m->opset >= 11) {
            f->act_lo = -INFINITY;
            f->act_hi = INFINITY;
            for (int k = 1; k < 3 && ok; k++) {
                if (k >= ac->n_in || ac->in[k] < 0)
                    continue;
                ok = is_const_f32(m, ac->in[k]) && m->values[ac->in[k]].count == 1;
                if (ok)
                    *(k == 1 ? &f->act_lo : &f->act_hi) =
                        ((const float *)m->values[ac->in[k]].cdata)[0];
            }
        }
        if (ok) {
            f->act = j++;
            cur = ac->out[0];
        }
    }
    f->last = j - 1;
    f->v_out = cur;
    if (f->last == i && f->pad < 0)
        return 0;
    /* a stage inside the chain is materialised only when someone else needs it */
    f->v_conv = cv->out[0] == cur || value_needed(x, cv->out[0]) ? cv->out[0] : -1;
    if (f->bn >= 0) {
        int v = m->nodes[f->bn].out[0];
        f->v_bn = v == cur || value_needed(x, v) ? v : -1;
    }
    if (f->add >= 0) {
        int v = m->nodes[f->add].out[0];
        f->v_add = v == cur || value_needed(x, v) ? v : -1;
    }
    if (f->act >= 0)
        f->v_act = cur;
    return 1;
}

/* BN scale/shift (the BN kernel's arithmetic) and, when neither the Conv nor the BN output
 * is materialised, the BN folded into the weights. */
static int chain_weights(const h2t_exec *x, onnx_fuse *f)
{
    const h2t_model *m = x->m;
    if (f->bn < 0)
        return 0;
    const onnx_node *bn = &m->nodes[f->bn], *cv = &m->nodes[f->conv];
    int64_t M = x->vs[cv->out[0]].dim[1];
    const float *sc = m->values[bn->in[1]].cdata, *bi = m->values[bn->in[2]].cdata,
                *mu = m->values[bn->in[3]].cdata, *var = m->values[bn->in[4]].cdata;
    f->bn_a = malloc((size_t)M * sizeof(float));
    f->bn_b = malloc((size_t)M * sizeof(float));
    if (!f->bn_a || !f->bn_b)
        return h2t_err_set(H2T_ENOMEM, "fused BN of node '%s'", bn->name);
    for (int64_t c = 0; c < M; c++) {
        f->bn_a[c] = sc[c] / sqrtf(var[c] + bn->p.eps);
        f->bn_b[c] = bi[c] - mu[c] * f->bn_a[c];
    }
    int hb = cv->n_in > 2 && cv->in[2] >= 0;
    if (f->v_conv >= 0 || f->v_bn >= 0 || !is_const_f32(m, cv->in[1]) ||
        (hb && !is_const_f32(m, cv->in[2])))
        return 0;
    int64_t nw = m->values[cv->in[1]].count, K = nw / M;
    if (K * M != nw)
        return 0;
    const float *w = m->values[cv->in[1]].cdata, *b = hb ? m->values[cv->in[2]].cdata : NULL;
    f->fw = malloc((size_t)nw * sizeof(float));
    f->fb = malloc((size_t)M * sizeof(float));
    if (!f->fw || !f->fb)
        return h2t_err_set(H2T_ENOMEM, "folded weights of node '%s'", cv->name);
    for (int64_t c = 0; c < M; c++) {
        for (int64_t k = 0; k < K; k++)
            f->fw[c * K + k] = w[c * K + k] * f->bn_a[c];
        f->fb[c] = (b ? b[c] : 0.f) * f->bn_a[c] + f->bn_b[c];
    }
    return 0;
}

/* Decide the chains for the current observed set (shapes in x->vs, roots set). */
static int fuse_plan(h2t_exec *x)
{
    const h2t_model *m = x->m;
    fz_clear(x);
    x->fz = calloc((size_t)m->n_nodes + 1, sizeof *x->fz);
    if (!x->fz)
        return h2t_err_set(H2T_ENOMEM, "executor fusion plan");
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (!onnx_op_is(nd, "Conv") || onnx_node_is_static(m, nd) || x->chain_of[i] >= 0)
            continue;
        onnx_fuse f;
        if (!chain_find(x, i, &f))
            continue;
        x->fz[x->n_fz] = f;
        int rc = chain_weights(x, &x->fz[x->n_fz]);
        x->n_fz++;
        if (rc < 0)
            return rc;
        for (int j = f.first; j <= f.last; j++)
            x->chain_of[j] = x->n_fz - 1;
        i = f.last;
    }
    return 0;
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

/* Place a buffer of len floats in the lowest gap, mark it live, raise the arena's top. */
static size_t live_alloc(block *live, int *n_live, size_t len, size_t *top)
{
    size_t off = place(live, *n_live, len);
    live_insert(live, n_live, off, len);
    if (off + len > *top)
        *top = off + len;
    return off;
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

static int node_runs(const h2t_model *m, const onnx_node *nd)
{
    return !(nd->def->flags & ONNX_OPF_CONST) && !onnx_node_is_static(m, nd);
}

/* The step (node range) node i belongs to. */
static void step_of(const h2t_exec *x, int i, int *first, int *last)
{
    int c = x->chain_of[i];
    *first = c >= 0 ? x->fz[c].first : i;
    *last = c >= 0 ? x->fz[c].last : i;
}

static size_t step_scratch(const h2t_exec *x, int i, const onnx_vstate *vs, const onnx_nstate *ns)
{
    int c = x->chain_of[i];
    if (c < 0)
        return onnx_kernel_scratch(&x->m->nodes[i], vs, &ns[i]);
    const onnx_fuse *f = &x->fz[c];
    return onnx_k_conv_fused_scratch(x->m, f, vs, &ns[f->conv], f->pad >= 0 ? &ns[f->pad] : NULL);
}

/* Elements value v holds in the arena at its current shape: blocked values pad their
 * channels (dnnl_conv.h). */
static int64_t value_elems(const h2t_exec *x, const onnx_vstate *vs, int v)
{
    const onnx_vstate *s = &vs[v];
    if (s->rank < 0)
        return 0;
    if (!x->blk[v])
        return onnx_numel(s);
    return s->dim[0] * h2t_dconv_padded(s->dim[1]) * s->dim[2] * s->dim[3];
}

/* A chain on oneDNN's primitive whose residual (blocked, its own buffer) nobody reads after
 * the chain writes its output into the residual's buffer: oneDNN's sum post-op adds what the
 * destination holds, so the residual need not be copied there first (dnnl_conv.c). Not when
 * the convolution reads the residual too, nor for a chain that hands stages over (its
 * blocked pass reads the residual after the primitive wrote the output). */
static void residual_in_place(h2t_exec *x, const onnx_fuse *f)
{
    const h2t_model *m = x->m;
    int r = f->add_other, s0, s1;
    if (!f->dconv || f->rep || f->add < 0 || !f->blk_res || !f->blk_out || x->root[r] != r ||
        x->root[f->v_out] != f->v_out || x->root[f->x] == r || x->cap[r] != x->cap[f->v_out] ||
        value_observed(x, r))
        return;
    step_of(x, f->add, &s0, &s1);
    for (int i = s1 + 1; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (!node_runs(m, nd))
            continue;
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && x->root[nd->in[k]] == r)
                return;
    }
    for (int k = 0; k < m->n_outputs; k++)
        if (x->root[m->outputs[k]] == r)
            return;
    x->root[f->v_out] = r;
}

/* oneDNN's convolutions for the chains it runs whole, then the values kept in its blocked
 * layout: a chain's output that only such chains read (as their conv input, when the
 * primitive reads blocked input, or as the residual), not observed, not a graph output. */
static int dnnl_plan(h2t_exec *x)
{
    const h2t_model *m = x->m;
    int any = 0;
    memset(x->blk, 0, (size_t)m->n_values + 1);
    for (int c = 0; c < x->n_fz; c++) {
        onnx_fuse *f = &x->fz[c];
        int st[3] = {f->v_conv, f->v_bn, f->v_add};
        f->raw_ok = !value_observed(x, f->v_out) || value_obs_blk(x, f->v_out);
        for (int i = 0; i < 3; i++)
            if (st[i] >= 0 && st[i] != f->v_out)
                f->raw_ok = f->raw_ok && value_obs_blk(x, st[i]) && x->uses[st[i]] == 1;
        int rc = onnx_k_conv_fused_dnnl(m, f, x->vs, &x->ns[f->conv],
                                        f->pad >= 0 ? &x->ns[f->pad] : NULL);
        if (rc < 0)
            return rc;
        f->rep = f->dconv && (f->raw || value_obs_blk(x, f->v_out));
        if (f->raw) /* the intermediate stages are handed over in pieces, never written */
            for (int i = 0; i < 3; i++)
                if (st[i] >= 0 && st[i] != f->v_out)
                    x->root[st[i]] = -1;
        if (f->dconv && x->root[f->v_out] == f->v_out && x->vs[f->v_out].rank == 4 &&
            (!value_observed(x, f->v_out) || value_obs_blk(x, f->v_out))) {
            x->blk[f->v_out] = 1;
            any = 1;
        }
    }
    if (!any)
        return 0;
    for (int k = 0; k < m->n_outputs; k++)
        x->blk[m->outputs[k]] = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (!node_runs(m, nd))
            continue;
        int c = x->chain_of[i];
        const onnx_fuse *f = c >= 0 ? &x->fz[c] : NULL;
        for (int k = 0; k < nd->n_in; k++) {
            int v = nd->in[k];
            if (v < 0 || !x->blk[v])
                continue;
            int first = f && (f->pad >= 0 ? f->pad : f->conv) == i;
            int ok = f && f->dconv &&
                     ((first && k == 0 && v == f->x && h2t_dconv_src_blocked(f->dconv)) ||
                      (i == f->add && v == f->add_other));
            if (!ok)
                x->blk[v] = 0;
        }
    }
    for (int c = 0; c < x->n_fz; c++) {
        onnx_fuse *f = &x->fz[c];
        if (!f->dconv)
            continue;
        f->blk_x = x->blk[f->x];
        f->blk_res = f->add >= 0 && x->blk[f->add_other];
        f->blk_out = x->blk[f->v_out];
    }
    for (int v = 0; v < m->n_values; v++)
        if (x->blk[v])
            x->cap[v] = value_elems(x, x->vs, v);
    for (int c = 0; c < x->n_fz; c++)
        residual_in_place(x, &x->fz[c]);
    return 0;
}

/* Plan chains and buffers for the current shapes in x->vs (already inferred). */
static int exec_plan(h2t_exec *x)
{
    const h2t_model *m = x->m;
    int rc = 0, nv = m->n_values;
    int *last = malloc(((size_t)nv + 1) * sizeof(int));
    block *live = malloc(((size_t)nv + 1) * sizeof(block));
    free(x->root);
    free(x->off);
    free(x->cap);
    h2t_afree(x->arena);
    h2t_afree(x->scratch);
    x->arena = x->scratch = NULL;
    x->root = malloc(((size_t)nv + 1) * sizeof(int));
    x->off = calloc((size_t)nv + 1, sizeof(size_t));
    x->cap = calloc((size_t)nv + 1, sizeof(int64_t));
    if (!last || !live || !x->root || !x->off || !x->cap) {
        rc = h2t_err_set(H2T_ENOMEM, "executor plan");
        goto out;
    }
    for (int v = 0; v < nv; v++) {
        x->root[v] = is_runtime(m, v) ? v : -1;
        last[v] = -1;
        x->cap[v] = x->vs[v].rank >= 0 ? onnx_numel(&x->vs[v]) : 0;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (node_runs(m, nd) && onnx_op_is_view(nd) && x->root[nd->in[0]] >= 0)
            x->root[nd->out[0]] = x->root[nd->in[0]];
    }
    if ((rc = fuse_plan(x)) < 0)
        goto out;
    for (int c = 0; c < x->n_fz; c++) {
        const onnx_fuse *f = &x->fz[c];
        if (f->pad >= 0)
            x->root[m->nodes[f->pad].out[0]] = -1;
        if (f->v_conv < 0)
            x->root[m->nodes[f->conv].out[0]] = -1;
        if (f->bn >= 0 && f->v_bn < 0)
            x->root[m->nodes[f->bn].out[0]] = -1;
        if (f->add >= 0 && f->v_add < 0)
            x->root[m->nodes[f->add].out[0]] = -1;
    }
    if ((rc = dnnl_plan(x)) < 0)
        goto out;
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        int s0, s1;
        if (!node_runs(m, nd))
            continue;
        step_of(x, i, &s0, &s1);
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && x->root[nd->in[k]] >= 0 && last[x->root[nd->in[k]]] < s1)
                last[x->root[nd->in[k]]] = s1;
        for (int k = 0; k < nd->n_out; k++)
            if (x->root[nd->out[k]] >= 0 && last[x->root[nd->out[k]]] < s1)
                last[x->root[nd->out[k]]] = s1;
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
        x->off[v] = live_alloc(live, &n_live, round_up(x->cap[v]), &top);
        if (last[v] < 0)
            live_remove(live, &n_live, x->off[v]);
    }
    for (int i = 0; i < m->n_nodes; i++) {
        int s0, s1;
        if (!node_runs(m, &m->nodes[i]))
            continue;
        step_of(x, i, &s0, &s1);
        size_t s = step_scratch(x, i, x->vs, x->ns);
        if (s > scratch)
            scratch = s;
        /* every output of the step placed at once (kernels are not in-place) */
        for (int j = s0; j <= s1; j++) {
            const onnx_node *nd = &m->nodes[j];
            for (int k = 0; k < nd->n_out; k++) {
                int v = nd->out[k];
                if (x->root[v] != v)
                    continue;
                x->off[v] = live_alloc(live, &n_live, round_up(x->cap[v]), &top);
            }
        }
        /* then free what dies in this step */
        for (int j = s0; j <= s1; j++) {
            const onnx_node *nd = &m->nodes[j];
            for (int k = 0; k < nd->n_in + nd->n_out; k++) {
                int v = k < nd->n_in ? nd->in[k] : nd->out[k - nd->n_in];
                if (v < 0 || x->root[v] < 0)
                    continue;
                int r = x->root[v];
                if (last[r] == s1) {
                    live_remove(live, &n_live, x->off[r]);
                    last[r] = -2; /* freed once */
                }
            }
        }
        i = s1;
    }
    x->arena_n = top;
    x->scratch_n = scratch;
    x->arena = h2t_aalloc(top ? top : 1, sizeof(float));
    x->scratch = h2t_aalloc(scratch ? scratch : 1, sizeof(float));
    if (!x->arena || !x->scratch)
        rc = h2t_err_set(H2T_ENOMEM, "executor arena of %zu bytes + scratch %zu bytes",
                         top * sizeof(float), scratch * sizeof(float));
    for (int v = 0; v < nv; v++)
        if (is_runtime(m, v))
            x->vs[v].f = NULL;
    x->stale = 0;
out:
    free(last);
    free(live);
    return rc;
}

/* ------------------------------------------------------------------ barrier and pool */

static void xbar_init(xbar *b, int n)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->n = n;
    b->count = b->acc = b->res = 0;
    b->gen = 0;
    atomic_store(&b->agen, 0);
}

static void xbar_fini(xbar *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

/* Wait for all b->n threads; returns the OR of their flags. Spins briefly (a step takes
 * about as long on every slice), then sleeps. */
static int xbar_wait(xbar *b, int flag)
{
    pthread_mutex_lock(&b->mu);
    unsigned g = b->gen;
    b->acc |= flag;
    if (++b->count == b->n) {
        b->res = b->acc;
        b->acc = 0;
        b->count = 0;
        b->gen++;
        atomic_store_explicit(&b->agen, b->gen, memory_order_release);
        pthread_cond_broadcast(&b->cv);
        int r = b->res;
        pthread_mutex_unlock(&b->mu);
        return r;
    }
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < BAR_SPIN; i++) {
        if (atomic_load_explicit(&b->agen, memory_order_acquire) != g)
            break;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_lock(&b->mu);
    while (b->gen == g)
        pthread_cond_wait(&b->cv, &b->mu);
    int r = b->res;
    pthread_mutex_unlock(&b->mu);
    return r;
}

static int notify(h2t_exec *x, int v, h2t_tensor_cb cb, void *ctx)
{
    int t = x->m->value_info[v];
    if (!cb || t < 0 || !x->observed[t] || !x->vs[v].f)
        return 0;
    return cb(ctx, t, x->vs[v].f, x->vs[v].dim, x->vs[v].rank);
}

/* Whether a step [s0, s1] reports a tensor to cb. */
static int step_notifies(const h2t_exec *x, int s0, int s1, h2t_tensor_cb cb)
{
    if (!cb)
        return 0;
    for (int j = s0; j <= s1; j++) {
        const onnx_node *nd = &x->m->nodes[j];
        for (int o = 0; o < nd->n_out; o++)
            if (value_observed(x, nd->out[o]) && x->root[nd->out[o]] >= 0)
                return 1;
    }
    return 0;
}

/* Whether the chain of step s0 reported value v by ranges (see ops_conv.c range_values). */
static int chain_reports(const h2t_exec *x, int s0, int v)
{
    int c = x->chain_of[s0];
    if (c < 0 || x->vs[v].rank != 4)
        return 0;
    const onnx_fuse *f = &x->fz[c];
    return v == f->v_conv || v == f->v_bn || v == f->v_add || v == f->v_act || v == f->v_out;
}

/* Run one step on the values of vs (the whole batch or one slice). */
static int step_run(const h2t_exec *x, onnx_kctx *k, onnx_vstate *vs, onnx_nstate *ns, int s0)
{
    const h2t_model *m = x->m;
    int c = x->chain_of[s0];
    if (c >= 0) {
        const onnx_fuse *f = &x->fz[c];
        int rc = onnx_k_conv_fused(k, f, &ns[f->conv], f->pad >= 0 ? &ns[f->pad] : NULL);
        if (rc < 0)
            return h2t_err_wrap(rc, "node '%s' (%s): ", m->nodes[f->conv].name,
                                m->nodes[f->conv].op);
        return 0;
    }
    const onnx_node *nd = &m->nodes[s0];
    if (onnx_op_is_view(nd)) {
        if (x->root[nd->out[0]] != x->root[nd->in[0]] || x->root[nd->in[0]] < 0)
            memcpy(vs[nd->out[0]].f, vs[nd->in[0]].f,
                   (size_t)onnx_numel(&vs[nd->out[0]]) * sizeof(float));
        return 0;
    }
    k->ns = &ns[s0];
    int rc = onnx_kernel_run(k, nd);
    if (rc < 0)
        return h2t_err_wrap(rc, "node '%s' (%s): ", nd->name, nd->op);
    return 0;
}

/* The forward pass of slice t (t = 0 on the caller's thread, which also reports tensors).
 * Unsplit (x->n_slices == 1): slice 0 is the whole batch on x->vs. */
static int exec_slice(h2t_exec *x, int t, h2t_tensor_cb cb, h2t_tensor_range_cb rcb,
                      h2t_tensor_blk_cb bcb, void *ctx)
{
    const h2t_model *m = x->m;
    int split = x->n_slices > 1;
    slice *sl = &x->sl[t];
    onnx_vstate *vs = split ? sl->vs : x->vs;
    onnx_nstate *ns = split ? sl->ns : x->ns;
    int reported = 0, rerr = 0;
    onnx_kctx k = {m,
                   vs,
                   NULL,
                   split ? sl->scratch : x->scratch,
                   split ? sl->scratch_n : x->scratch_n,
                   split ? 1 : h2t_blas_threads_get(),
                   split ? NULL : rcb,
                   ctx,
                   x->observed,
                   &reported,
                   &rerr,
                   split ? NULL : bcb};
    int rc = 0;
    if (t == 0)
        for (int j = 0; j < m->n_inputs && rc == 0; j++)
            rc = notify(x, m->inputs[j], cb, ctx);
    if (split && xbar_wait(&x->bar, rc != 0))
        return rc ? rc : H2T_ECANCELED;
    if (rc)
        return rc;
    for (int i = 0; i < m->n_nodes; i++) {
        int s0, s1;
        if (!node_runs(m, &m->nodes[i]))
            continue;
        step_of(x, i, &s0, &s1);
        i = s1;
        reported = 0;
        if (!split || sl->n > 0)
            rc = step_run(x, &k, vs, ns, s0);
        if (split && rc < 0) {
            sl->rc = rc;
            snprintf(sl->err, sizeof sl->err, "%s", h2t_err_detail());
        }
        if (split && xbar_wait(&x->bar, rc != 0))
            return rc ? rc : H2T_ECANCELED;
        if (rc)
            return rc;
        if (!step_notifies(x, s0, s1, cb))
            continue;
        if (t == 0)
            for (int j = s0; j <= s1 && rc == 0; j++)
                for (int o = 0; o < m->nodes[j].n_out && rc == 0; o++)
                    if (!reported || !chain_reports(x, s0, m->nodes[j].out[o]))
                        rc = notify(x, m->nodes[j].out[o], cb, ctx);
        if (split && xbar_wait(&x->bar, rc != 0))
            return rc ? rc : H2T_ECANCELED;
        if (rc)
            return rc;
    }
    return 0;
}

static int exec_run_unsplit(h2t_exec *x, const float *input, int n);

/* Sample mode: thread t runs x->chunk samples at a time through its own executor of that
 * batch (one sample's tensors stay in cache; with oneDNN's convolutions a group of
 * H2T_DCONV_GROUP shares each weight's trip from memory), graph outputs copied into the
 * batch's output tensors. */
static int exec_samples(h2t_exec *x, int t)
{
    const h2t_model *m = x->m;
    slice *sl = &x->sl[t];
    int rc = 0, chunk = x->chunk;
    if (x->sub[t] && x->sub[t]->max_batch < chunk) {
        h2t_exec_destroy(x->sub[t]);
        x->sub[t] = NULL;
    }
    if (!x->sub[t] && (rc = h2t_exec_create(m, chunk, &x->sub[t])) < 0)
        goto out;
    h2t_exec *sx = x->sub[t];
    int vin = m->inputs[0];
    int64_t in_per = onnx_numel(&x->vs[vin]) / x->cur_batch;
    /* chunks taken from a shared counter: a thread slowed down by other load takes fewer (a
     * sample's result does not depend on which thread runs it, nor on its chunk) */
    for (;;) {
        int s = atomic_fetch_add(&x->next_sample, chunk);
        if (s >= x->cur_batch || rc != 0)
            break;
        int n = x->cur_batch - s < chunk ? x->cur_batch - s : chunk;
        rc = exec_run_unsplit(sx, x->job_input + in_per * s, n);
        for (int k = 0; k < m->n_outputs && rc == 0; k++) {
            int v = m->outputs[k];
            if (!is_runtime(m, v) || !x->vs[v].f || !sx->vs[v].f)
                continue;
            int64_t per = onnx_numel(&sx->vs[v]) / n;
            memcpy(x->vs[v].f + per * s, sx->vs[v].f, (size_t)(per * n) * sizeof(float));
        }
    }
out:
    if (rc < 0) {
        sl->rc = rc;
        snprintf(sl->err, sizeof sl->err, "%s", h2t_err_detail());
    }
    return rc;
}

static void *pool_main(void *arg)
{
    slice *sl = arg;
    h2t_exec *x = sl->owner;
    int t = sl->idx;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&x->pmu);
        while (x->job_gen == seen && !x->quit)
            pthread_cond_wait(&x->pcv, &x->pmu);
        seen = x->job_gen;
        int quit = x->quit;
        pthread_mutex_unlock(&x->pmu);
        if (quit)
            return NULL;
        if (t < x->n_slices) {
            x->sl[t].rc = 0;
            if (x->job_samples)
                exec_samples(x, t);
            else
                exec_slice(x, t, x->job_cb, NULL, NULL, x->job_ctx);
            xbar_wait(&x->bar, 0); /* the run's end */
        }
    }
}

static void pool_stop(h2t_exec *x)
{
    if (!x->pool_init)
        return;
    pthread_mutex_lock(&x->pmu);
    x->quit = 1;
    pthread_cond_broadcast(&x->pcv);
    pthread_mutex_unlock(&x->pmu);
    for (int t = 1; t <= x->n_th; t++)
        pthread_join(x->th[t], NULL);
    pthread_mutex_destroy(&x->pmu);
    pthread_cond_destroy(&x->pcv);
    xbar_fini(&x->bar);
    x->pool_init = 0;
}

/* Whether the graph keeps samples apart: every float tensor is n x (the same dims) at batch n
 * and at the slice's batch, no Softmax/Transpose across axis 0. */
static int split_ok(const h2t_exec *x, const onnx_vstate *vs, int n, int ns_n)
{
    const h2t_model *m = x->m;
    for (int v = 0; v < m->n_values; v++) {
        if (!is_runtime(m, v) || x->vs[v].rank < 0)
            continue;
        const onnx_vstate *a = &x->vs[v], *b = &vs[v];
        if (a->rank < 1 || a->rank != b->rank || a->dim[0] != n || b->dim[0] != ns_n)
            return 0;
        for (int i = 1; i < a->rank; i++)
            if (a->dim[i] != b->dim[i])
                return 0;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (!node_runs(m, nd))
            continue;
        if (nd->def->mixes_batch && nd->def->mixes_batch(nd, &x->ns[i]))
            return 0;
    }
    return 1;
}

/* Prepare T slices of the batch of n (shapes inferred per slice size, scratch, the pool).
 * Returns the number of slices (1: run unsplit). */
static int split_prepare(h2t_exec *x, int n, int T)
{
    const h2t_model *m = x->m;
    if (T > MAX_SPLIT)
        T = MAX_SPLIT;
    if (T > n)
        T = n;
    if (T < 2 || x->fixed_shapes)
        return 1;
    for (int t = 0; t < T; t++) {
        slice *sl = &x->sl[t];
        int lo = (int)((int64_t)n * t / T), hi = (int)((int64_t)n * (t + 1) / T);
        sl->lo = lo;
        sl->n = hi - lo;
        if (!sl->vs) {
            if (state_alloc(m, &sl->vs, &sl->ns) < 0)
                return 1;
            sl->inferred_n = -1;
        }
        if (sl->inferred_n != sl->n) {
            sl->inferred_n = -1;
            set_input_shapes(m, sl->vs, sl->n, 1);
            if (onnx_infer(m, sl->vs, sl->ns) < 0 || !split_ok(x, sl->vs, n, sl->n)) {
                h2t_err_clear();
                return 1;
            }
            sl->inferred_n = sl->n;
            size_t s = 0;
            for (int i = 0; i < m->n_nodes; i++) {
                int s0, s1;
                if (!node_runs(m, &m->nodes[i]))
                    continue;
                step_of(x, i, &s0, &s1);
                size_t q = step_scratch(x, i, sl->vs, sl->ns);
                s = q > s ? q : s;
                i = s1;
            }
            if (s > sl->scratch_n || !sl->scratch) {
                h2t_afree(sl->scratch);
                sl->scratch_n = s;
                sl->scratch = h2t_aalloc(s ? s : 1, sizeof(float));
                if (!sl->scratch) {
                    sl->scratch_n = 0;
                    sl->inferred_n = -1;
                    return 1;
                }
            }
        }
        /* this slice's view of every materialised tensor */
        for (int v = 0; v < m->n_values; v++) {
            if (!is_runtime(m, v))
                continue;
            if (x->root[v] < 0) {
                sl->vs[v].f = NULL;
                continue;
            }
            int64_t per = n ? value_elems(x, x->vs, v) / n : 0;
            sl->vs[v].f = x->arena + x->off[x->root[v]] + (size_t)(per * lo);
        }
    }
    if (!x->pool_init) {
        pthread_mutex_init(&x->pmu, NULL);
        pthread_cond_init(&x->pcv, NULL);
        x->pool_init = 1;
        x->n_th = 0;
        x->bar.n = 0;
    }
    while (x->n_th < T - 1) {
        int t = x->n_th + 1;
        x->sl[t].owner = x;
        x->sl[t].idx = t;
        if (pthread_create(&x->th[t], NULL, pool_main, &x->sl[t]) != 0)
            break;
        x->n_th++;
    }
    if (x->n_th < T - 1)
        T = x->n_th + 1;
    if (T < 2)
        return 1;
    if (x->bar.n != T) {
        if (x->bar.n)
            xbar_fini(&x->bar);
        xbar_init(&x->bar, T);
    }
    return T;
}

static int exec_forward(h2t_exec *x, const float *input, h2t_tensor_cb cb, h2t_tensor_range_cb rcb,
                        h2t_tensor_blk_cb bcb, void *ctx)
{
    const h2t_model *m = x->m;
    for (int v = 0; v < m->n_values; v++)
        if (x->root[v] >= 0)
            x->vs[v].f = x->arena + x->off[x->root[v]];
    int T = h2t_blas_threads_get();
    x->n_slices = split_prepare(x, x->cur_batch > 0 ? x->cur_batch : 1, T);
    if (x->n_slices == 1)
        return exec_slice(x, 0, cb, rcb, bcb, ctx);
    h2t_blas_threads(1);
    x->job_cb = cb;
    x->job_ctx = ctx;
    x->job_input = input;
    x->job_samples = input != NULL;
    atomic_store(&x->next_sample, 0);
    /* chunks of H2T_DCONV_GROUP samples (or the batch over the threads, if fewer) where
     * chains with a group form do at least half of oneDNN's multiply-adds, else one sample at
     * a time (its tensors stay in cache) */
    double all = 0, grouped = 0;
    for (int c = 0; c < x->n_fz; c++)
        if (x->fz[c].dconv) {
            double macs = h2t_dconv_macs(x->fz[c].dconv);
            all += macs;
            grouped += h2t_dconv_group(x->fz[c].dconv) > 1 ? macs : 0;
        }
    int per = x->cur_batch / x->n_slices;
    x->chunk = all == 0 || grouped * 2 < all ? 1
               : per < 1                     ? 1
               : per > H2T_DCONV_GROUP       ? H2T_DCONV_GROUP
                                             : per;
    for (int i = 0; i < m->n_info && x->job_samples; i++)
        if (cb && x->observed[i])
            x->job_samples = 0;
    pthread_mutex_lock(&x->pmu);
    x->job_gen++;
    pthread_cond_broadcast(&x->pcv);
    pthread_mutex_unlock(&x->pmu);
    x->sl[0].rc = 0;
    int rc = x->job_samples ? exec_samples(x, 0) : exec_slice(x, 0, cb, NULL, NULL, ctx);
    xbar_wait(&x->bar, 0); /* every slice done */
    h2t_blas_threads(T);
    if (rc == H2T_ECANCELED || rc == 0) {
        for (int t = 0; t < x->n_slices; t++)
            if (x->sl[t].rc < 0) {
                rc = h2t_err_set(x->sl[t].rc, "%s", x->sl[t].err);
                break;
            }
    }
    return rc;
}

static h2t_exec *exec_new(const h2t_model *m)
{
    h2t_exec *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->m = m;
    x->observed = calloc((size_t)m->n_info + 1, 1);
    x->uses = calloc((size_t)m->n_values + 1, sizeof(int));
    x->chain_of = malloc(((size_t)m->n_nodes + 1) * sizeof(int));
    x->blk = calloc((size_t)m->n_values + 1, 1);
    if (!x->observed || !x->uses || !x->chain_of || !x->blk || state_alloc(m, &x->vs, &x->ns) < 0) {
        free(x->blk);
        free(x->observed);
        free(x->uses);
        free(x->chain_of);
        state_free(m, x->vs, x->ns);
        free(x);
        return NULL;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        x->chain_of[i] = -1;
        if (!node_runs(m, nd))
            continue;
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0)
                x->uses[nd->in[k]]++;
    }
    for (int k = 0; k < m->n_outputs; k++)
        x->uses[m->outputs[k]]++;
    return x;
}

void h2t_exec_destroy(h2t_exec *x)
{
    if (!x)
        return;
    pool_stop(x);
    for (int t = 0; t < MAX_SPLIT; t++) {
        h2t_exec_destroy(x->sub[t]);
        if (x->sl[t].vs)
            state_free(x->m, x->sl[t].vs, x->sl[t].ns);
        h2t_afree(x->sl[t].scratch);
    }
    fz_clear(x);
    state_free(x->m, x->vs, x->ns);
    free(x->root);
    free(x->off);
    free(x->cap);
    h2t_afree(x->arena);
    h2t_afree(x->scratch);
    free(x->observed);
    free(x->uses);
    free(x->chain_of);
    free(x->blk);
    free(x);
}

/* Infer at max_batch and plan (again: the observed set changed). */
static int exec_replan(h2t_exec *x)
{
    int rc;
    set_input_shapes(x->m, x->vs, x->max_batch, 1);
    x->cur_batch = -1;
    if ((rc = onnx_infer(x->m, x->vs, x->ns)) < 0)
        return rc;
    x->cur_batch = x->max_batch;
    for (int t = 0; t < MAX_SPLIT; t++)
        x->sl[t].inferred_n = -1; /* scratch sizes follow the chains */
    return exec_plan(x);
}

int h2t_exec_create(const h2t_model *m, int max_batch, h2t_exec **out)
{
    int rc;
    if (!m || max_batch < 1 || !out)
        return h2t_err_set(H2T_EINVAL, "exec_create: max_batch %d", max_batch);
    for (int k = 0; k < m->n_inputs; k++) {
        const onnx_value *v = &m->values[m->inputs[k]];
        if (v->dtype != ONNX_DT_F32)
            return h2t_err_set(H2T_EUNSUPPORTED,
                               "model input '%s' is %s data: the executor runs models whose one "
                               "input is float32 data (N x C x H x W images), not token ids or "
                               "other integer inputs",
                               v->name,
                               v->dtype == ONNX_DT_I64    ? "int64"
                               : v->dtype == ONNX_DT_I32  ? "int32"
                               : v->dtype == ONNX_DT_BOOL ? "bool"
                                                          : "non-float");
    }
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
    if ((rc = exec_replan(x)) < 0)
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
    if (x->observed[i] != (on ? 1 : 0))
        x->stale = 1;
    x->observed[i] = on ? 1 : 0;
    return 0;
}

int h2t_exec_observe_blocked(h2t_exec *x, int i, int on)
{
    if (!x || i < 0 || i >= x->m->n_info)
        return h2t_err_set(H2T_EINVAL, "exec_observe_blocked: tensor %d out of range", i);
    if (x->observed[i] != (on ? 2 : 0))
        x->stale = 1;
    x->observed[i] = on ? 2 : 0;
    return 0;
}

size_t h2t_exec_arena_bytes(const h2t_exec *x)
{
    return x->arena_n * sizeof(float);
}

/* Shapes for batch n (replanned first when the observed set changed) and the input copied. */
static int exec_prepare(h2t_exec *x, const float *input, int n)
{
    const h2t_model *m = x->m;
    int rc;
    if (x->stale && (rc = exec_replan(x)) < 0)
        return rc;
    if (n != x->cur_batch) {
        set_input_shapes(m, x->vs, n, 1);
        x->cur_batch = -1;
        if ((rc = onnx_infer(m, x->vs, x->ns)) < 0)
            return rc;
        for (int v = 0; v < m->n_values; v++)
            if (x->root[v] >= 0 && value_elems(x, x->vs, v) > x->cap[x->root[v]])
                return h2t_err_set(H2T_ESHAPE,
                                   "tensor '%s' grows at batch %d beyond its size at batch %d",
                                   m->values[v].name, n, x->max_batch);
        x->cur_batch = n;
    }
    int vin = m->inputs[0];
    memcpy(x->arena + x->off[vin], input, (size_t)onnx_numel(&x->vs[vin]) * sizeof(float));
    return 0;
}

/* A sample-mode sub-executor's run: never split, nothing observed. */
static int exec_run_unsplit(h2t_exec *x, const float *input, int n)
{
    int rc = exec_prepare(x, input, n);
    if (rc < 0)
        return rc;
    for (int v = 0; v < x->m->n_values; v++)
        if (x->root[v] >= 0)
            x->vs[v].f = x->arena + x->off[x->root[v]];
    x->n_slices = 1;
    return exec_slice(x, 0, NULL, NULL, NULL, NULL);
}

int h2t_exec_run(h2t_exec *x, const float *input, int n, h2t_tensor_cb cb, void *ctx)
{
    if (!input || n < 1 || n > x->max_batch || x->fixed_shapes)
        return h2t_err_set(H2T_EINVAL, "exec_run: batch %d (max %d)", n, x->max_batch);
    int rc = exec_prepare(x, input, n);
    if (rc < 0)
        return rc;
    return exec_forward(x, input, cb, NULL, NULL, ctx);
}

int h2t_exec_run_ranges(h2t_exec *x, const float *input, int n, h2t_tensor_cb cb,
                        h2t_tensor_range_cb range_cb, void *ctx)
{
    if (!input || n < 1 || n > x->max_batch || x->fixed_shapes)
        return h2t_err_set(H2T_EINVAL, "exec_run: batch %d (max %d)", n, x->max_batch);
    int rc = exec_prepare(x, input, n);
    if (rc < 0)
        return rc;
    return exec_forward(x, input, cb, range_cb, NULL, ctx);
}

int h2t_exec_run_blocked(h2t_exec *x, const float *input, int n, h2t_tensor_cb cb,
                         h2t_tensor_range_cb range_cb, h2t_tensor_blk_cb blk_cb, void *ctx)
{
    if (!input || n < 1 || n > x->max_batch || x->fixed_shapes)
        return h2t_err_set(H2T_EINVAL, "exec_run: batch %d (max %d)", n, x->max_batch);
    int rc = exec_prepare(x, input, n);
    if (rc < 0)
        return rc;
    return exec_forward(x, input, cb, range_cb, blk_cb, ctx);
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
        } else if (onnx_dt_is_int(v->dtype)) {
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
    if ((rc = exec_forward(x, NULL, NULL, NULL, NULL, NULL)) < 0)
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
        if (s->ival) {
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
