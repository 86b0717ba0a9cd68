/*
 * extract/onnx_prune.c - an ONNX model cut to the nodes some tensors need (on the protobuf
 * ModelProto: the result is ONNX bytes), and the compute of a loaded model's needed part
 * (extract/prune.h).
 */
#include "extract/prune.h"

#include "common/err.h"
#include "extract/onnx_graph.h"
#include "onnx/onnx.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* ---- names -> indices ---- */

typedef struct name_ix {
    const char *name;
    int ix;
} name_ix;

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

/* The index stored with name in the sorted table v (n entries), or -1. */
static int name_find(const name_ix *v, size_t n, const char *name)
{
    if (!name || !*name || !n)
        return -1;
    name_ix key = {name, 0};
    const name_ix *hit = bsearch(&key, v, n, sizeof(*v), name_cmp);
    return hit ? hit->ix : -1;
}

typedef struct prune_ctx {
    Onnx__GraphProto *g;
    name_ix *producer; /* node output name -> node */
    size_t n_producer;
    name_ix *init; /* initializer name -> initializer */
    size_t n_init;
    uint8_t *keep;      /* per node */
    uint8_t *init_used; /* per initializer */
    int *stack;
    Onnx__ValueInfoProto **fresh; /* output records made here (OWNED) */
    Onnx__TypeProto **fresh_type;
    Onnx__TypeProto__Tensor **fresh_tensor;
    int n_fresh;
} prune_ctx;

static void ctx_free(prune_ctx *c)
{
    free(c->producer);
    free(c->init);
    free(c->keep);
    free(c->init_used);
    free(c->stack);
    for (int i = 0; i < c->n_fresh; i++) {
        free(c->fresh[i]);
        free(c->fresh_type[i]);
        free(c->fresh_tensor[i]);
    }
    free(c->fresh);
    free(c->fresh_type);
    free(c->fresh_tensor);
}

static int ctx_index(prune_ctx *c, const char *what)
{
    Onnx__GraphProto *g = c->g;
    size_t n_out = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        for (size_t a = 0; a < nd->n_attribute; a++)
            if (nd->attribute[a]->g || nd->attribute[a]->n_graphs)
                return h2t_err_set(H2T_EUNSUPPORTED, "%s: node '%s' (%s) holds a subgraph", what,
                                   nd->name ? nd->name : "", nd->op_type ? nd->op_type : "?");
        n_out += nd->n_output;
    }
    c->producer = malloc((n_out ? n_out : 1) * sizeof(*c->producer));
    c->init = malloc((g->n_initializer ? g->n_initializer : 1) * sizeof(*c->init));
    c->keep = calloc(g->n_node ? g->n_node : 1, 1);
    c->init_used = calloc(g->n_initializer ? g->n_initializer : 1, 1);
    c->stack = malloc((g->n_node ? g->n_node : 1) * sizeof(*c->stack));
    if (!c->producer || !c->init || !c->keep || !c->init_used || !c->stack)
        return h2t_err_set(H2T_ENOMEM, "%s: pruning %zu nodes", what, g->n_node);
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_output; k++)
            if (g->node[i]->output[k] && *g->node[i]->output[k])
                c->producer[c->n_producer++] = (name_ix){g->node[i]->output[k], (int)i};
    qsort(c->producer, c->n_producer, sizeof(*c->producer), name_cmp);
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name)
            c->init[c->n_init++] = (name_ix){g->initializer[i]->name, (int)i};
    qsort(c->init, c->n_init, sizeof(*c->init), name_cmp);
    return 0;
}

static int is_graph_input(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_input; i++)
        if (g->input[i]->name && !strcmp(g->input[i]->name, name))
            return 1;
    return 0;
}

/* Keep node p (when it is one, and new) and queue it. Each node is queued at most once, so
 * the stack (n_node entries) cannot overflow. */
static void push(prune_ctx *c, int *sp, int p)
{
    if (p >= 0 && !c->keep[p]) {
        c->keep[p] = 1;
        c->stack[(*sp)++] = p;
    }
}

/* Mark every node the named tensors depend on, and the initializers those nodes read. */
static int mark(prune_ctx *c, const char *what, const char *const *tensors, int n)
{
    int sp = 0;
    for (int t = 0; t < n; t++) {
        int p = tensors[t] ? name_find(c->producer, c->n_producer, tensors[t]) : -1;
        if (p < 0 && (!tensors[t] || name_find(c->init, c->n_init, tensors[t]) >= 0 ||
                      !is_graph_input(c->g, tensors[t])))
            return h2t_err_set(H2T_ENOTFOUND, "%s: no tensor '%s' (a graph input or node output)",
                               what, tensors[t] ? tensors[t] : "(null)");
        push(c, &sp, p);
        while (sp > 0) {
            const Onnx__NodeProto *nd = c->g->node[c->stack[--sp]];
            for (size_t k = 0; k < nd->n_input; k++) {
                push(c, &sp, name_find(c->producer, c->n_producer, nd->input[k]));
                int w = name_find(c->init, c->n_init, nd->input[k]);
                if (w >= 0)
                    c->init_used[w] = 1;
            }
        }
    }
    return 0;
}

/* The value_info record of name among the graph's outputs, value_info and inputs, or a fresh
 * float tensor record. NULL on ENOMEM. */
static Onnx__ValueInfoProto *output_info(prune_ctx *c, const char *name)
{
    Onnx__GraphProto *g = c->g;
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i]->name && !strcmp(g->output[i]->name, name))
            return g->output[i];
    for (size_t i = 0; i < g->n_value_info; i++)
        if (g->value_info[i]->name && !strcmp(g->value_info[i]->name, name))
            return g->value_info[i];
    for (size_t i = 0; i < g->n_input; i++)
        if (g->input[i]->name && !strcmp(g->input[i]->name, name))
            return g->input[i];
    Onnx__ValueInfoProto *v = malloc(sizeof(*v));
    Onnx__TypeProto *ty = malloc(sizeof(*ty));
    Onnx__TypeProto__Tensor *tt = malloc(sizeof(*tt));
    int k = c->n_fresh;
    if (!v || !ty || !tt) {
        free(v), free(ty), free(tt);
        return NULL;
    }
    c->fresh[k] = v, c->fresh_type[k] = ty, c->fresh_tensor[k] = tt;
    c->n_fresh++;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(ty);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    ty->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    ty->tensor_type = tt;
    v->name = (char *)(uintptr_t)name; /* BORROWED from the graph, packed before it is freed */
    v->type = ty;
    return v;
}

int h2t_onnx_prune(const void *buf, size_t len, const char *what, const char *const *tensors, int n,
                   void **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (n < 1 || !tensors)
        return h2t_err_set(H2T_EINVAL, "%s: no tensor to keep", what);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp || !mp->graph) {
        if (mp)
            onnx__model_proto__free_unpacked(mp, NULL);
        return h2t_err_set(H2T_ECORRUPT, "%s: not an ONNX model (%zu bytes)", what, len);
    }
    Onnx__GraphProto *g = mp->graph;
    prune_ctx c = {.g = g};
    /* the graph's own lists, put back before the model is freed */
    size_t n_node = g->n_node, n_init = g->n_initializer, n_in = g->n_input, n_outp = g->n_output,
           n_vi = g->n_value_info;
    Onnx__NodeProto **node = g->node;
    Onnx__TensorProto **init = g->initializer;
    Onnx__ValueInfoProto **in = g->input, **outp = g->output, **vi = g->value_info;
    Onnx__NodeProto **node2 = NULL;
    Onnx__TensorProto **init2 = NULL;
    Onnx__ValueInfoProto **in2 = NULL, **out2 = NULL, **vi2 = NULL;
    uint8_t *bytes = NULL;
    int rc = ctx_index(&c, what);
    if (rc < 0)
        goto done;
    if ((rc = mark(&c, what, tensors, n)) < 0)
        goto done;
    node2 = malloc((n_node ? n_node : 1) * sizeof(*node2));
    init2 = malloc((n_init ? n_init : 1) * sizeof(*init2));
    in2 = malloc((n_in ? n_in : 1) * sizeof(*in2));
    out2 = malloc((size_t)n * sizeof(*out2));
    vi2 = malloc((n_vi ? n_vi : 1) * sizeof(*vi2));
    c.fresh = calloc((size_t)n, sizeof(*c.fresh));
    c.fresh_type = calloc((size_t)n, sizeof(*c.fresh_type));
    c.fresh_tensor = calloc((size_t)n, sizeof(*c.fresh_tensor));
    if (!node2 || !init2 || !in2 || !out2 || !vi2 || !c.fresh || !c.fresh_type || !c.fresh_tensor) {
        rc = h2t_err_set(H2T_ENOMEM, "%s: pruning", what);
        goto done;
    }
    size_t k2 = 0;
    for (size_t i = 0; i < n_node; i++)
        if (c.keep[i])
            node2[k2++] = node[i];
    g->n_node = k2;
    k2 = 0;
    for (size_t i = 0; i < n_init; i++)
        if (c.init_used[i])
            init2[k2++] = init[i];
    g->n_initializer = k2;
    k2 = 0;
    for (size_t i = 0; i < n_in; i++) {
        int w = name_find(c.init, c.n_init, in[i]->name);
        if (w < 0 || c.init_used[w]) /* a runtime input, or an initializer still read */
            in2[k2++] = in[i];
    }
    g->n_input = k2;
    k2 = 0;
    for (int t = 0; t < n; t++) {
        int seen = 0;
        for (int u = 0; u < t; u++)
            seen |= !strcmp(tensors[u], tensors[t]);
        if (seen)
            continue;
        if (!(out2[k2++] = output_info(&c, tensors[t]))) {
            rc = h2t_err_set(H2T_ENOMEM, "%s: pruning", what);
            goto done;
        }
    }
    g->n_output = k2;
    k2 = 0;
    for (size_t i = 0; i < n_vi; i++) {
        int p = name_find(c.producer, c.n_producer, vi[i]->name);
        if (p >= 0 && c.keep[p])
            vi2[k2++] = vi[i];
    }
    g->n_value_info = k2;
    g->node = node2, g->initializer = init2, g->input = in2, g->output = out2, g->value_info = vi2;
    size_t plen = onnx__model_proto__get_packed_size(mp);
    bytes = malloc(plen ? plen : 1);
    if (!bytes) {
        rc = h2t_err_set(H2T_ENOMEM, "%s: pruned model of %zu bytes", what, plen);
        goto done;
    }
    onnx__model_proto__pack(mp, bytes);
    *out = bytes;
    *out_len = plen;
    bytes = NULL;
done:
    g->n_node = n_node, g->n_initializer = n_init, g->n_input = n_in, g->n_output = n_outp;
    g->n_value_info = n_vi;
    g->node = node, g->initializer = init, g->input = in, g->output = outp, g->value_info = vi;
    free(node2);
    free(init2);
    free(in2);
    free(out2);
    free(vi2);
    free(bytes);
    ctx_free(&c);
    onnx__model_proto__free_unpacked(mp, NULL);
    return rc;
}

/* ---- compute of a loaded model ---- */

/* Elements of one sample of value v (dims that follow the batch count once), and its dims. */
static double value_elems(const h2t_model *m, int v, int *rank, const int64_t **shape)
{
    const onnx_value *val = &m->values[v];
    int t = m->value_info[v];
    *rank = t >= 0 ? m->info[t].rank : val->rank;
    *shape = t >= 0 ? m->info[t].shape : val->shape;
    double e = 1;
    for (int d = 0; d < *rank; d++)
        if ((*shape)[d] > 0)
            e *= (double)(*shape)[d];
    return e;
}

static double node_macs(const h2t_model *m, const onnx_node *nd)
{
    int rank, wr;
    const int64_t *shape, *ws;
    if (!strcmp(nd->op, "Conv") || !strcmp(nd->op, "ConvTranspose")) {
        if (nd->n_in < 2 || nd->in[1] < 0)
            return 0;
        value_elems(m, nd->in[1], &wr, &ws);
        if (wr < 1 || ws[0] <= 0)
            return 0;
        double w = 1; /* per output channel (Conv) or input channel (ConvTranspose) */
        for (int d = 1; d < wr; d++)
            w *= ws[d] > 0 ? (double)ws[d] : 1;
        int v = !strcmp(nd->op, "Conv") ? nd->out[0] : nd->in[0];
        return value_elems(m, v, &rank, &shape) * w;
    }
    if (!strcmp(nd->op, "Gemm") || !strcmp(nd->op, "MatMul")) {
        if (nd->n_in < 2 || nd->in[1] < 0)
            return 0;
        double out = value_elems(m, nd->out[0], &rank, &shape);
        value_elems(m, nd->in[1], &wr, &ws);
        if (wr < 1)
            return 0;
        /* K: B's first dim (Gemm with transB: its second; MatMul: B's second to last) */
        int kd = !strcmp(nd->op, "MatMul") ? (wr >= 2 ? wr - 2 : 0) : nd->p.trans_b ? 1 : 0;
        if (kd >= wr || ws[kd] <= 0) { /* B follows the batch: take K from A */
            int ar;
            const int64_t *as;
            value_elems(m, nd->in[0], &ar, &as);
            int ka = !strcmp(nd->op, "MatMul") || !nd->p.trans_a ? ar - 1 : ar - 2;
            return ka >= 0 && as[ka] > 0 ? out * (double)as[ka] : 0;
        }
        return out * (double)ws[kd];
    }
    return 0;
}

int h2t_model_cost_get(const h2t_model *m, const char *const *tensors, int n, h2t_model_cost *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t *need = calloc((size_t)m->n_nodes + 1, 1);
    int *stack = malloc(((size_t)m->n_nodes + 1) * sizeof(*stack));
    int rc = 0;
    if (!need || !stack) {
        rc = h2t_err_set(H2T_ENOMEM, "model cost");
        goto out;
    }
    for (int t = 0; t < n; t++) {
        int i = tensors[t] ? h2t_model_tensor_find(m, tensors[t]) : -1;
        if (i < 0) {
            rc = h2t_err_set(H2T_ENOTFOUND, "no tensor '%s' in the model",
                             tensors[t] ? tensors[t] : "(null)");
            goto out;
        }
        int sp = 0, p = m->values[m->info_value[i]].producer;
        if (p >= 0 && !need[p])
            stack[sp++] = p, need[p] = 1;
        while (sp > 0) {
            const onnx_node *nd = &m->nodes[stack[--sp]];
            for (int k = 0; k < nd->n_in; k++) {
                int q = nd->in[k] >= 0 ? m->values[nd->in[k]].producer : -1;
                if (q >= 0 && !need[q])
                    stack[sp++] = q, need[q] = 1; /* marked when pushed: at most once each */
            }
        }
    }
    for (int i = 0; i < m->n_nodes; i++) {
        double macs = node_macs(m, &m->nodes[i]);
        out->nodes++;
        out->macs += macs;
        if (n == 0 || need[i]) {
            out->nodes_needed++;
            out->macs_needed += macs;
        }
    }
out:
    free(need);
    free(stack);
    return rc;
}
