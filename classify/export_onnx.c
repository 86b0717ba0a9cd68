/*
 * classify/export_onnx.c - the classifier as one ONNX model (h2t_classifier_export_onnx): the
 * pruned backbone's graph with the pooling, selection, re-normalisation and head appended as
 * standard operators, written with the protobuf-c ONNX bindings.
 *
 * Per kept layer s (tensor T, its plan from the extraction):
 *   maps, first brought to N x C x H x W: channels-last (N x H x W x C) by Transpose(0, 3, 1, 2),
 *   attention weights with the batch folded in (N*heads x Lq x Lk) by Reshape(-1, heads, Lq, Lk)
 *   GAP  (N x C x H x W): GlobalAveragePool(T) -> Flatten(axis 1): N x C
 *   GRID (N x C x H x W): AveragePool(T, kernel = strides = ph x pw, no padding: the trailing
 *                         rows / columns drop out as in the extraction) -> Transpose(0, 2, 3, 1)
 *                         -> Flatten(axis 1): N x (oh ow C), in the (H, W, C) order
 *   tokens, first brought to N x L x C: sequence-first (L x N x C) by Transpose(1, 0, 2),
 *   channels-first (N x C x L) by Transpose(0, 2, 1)
 *   CLS:   Gather(axis 1, [0]) -> Flatten: the class token's C values
 *   TMEAN / TWIN: Gather(axis 1, tokens [t0, t0 + n ph)) -> Reshape(-1, n, ph, C) ->
 *          ReduceMean(axis 2) -> Flatten: N x (n C), window by window (TMEAN: n = 1, ph = the
 *          tokens from t0; the tokens past the last whole window drop out as in the extraction),
 *          after the class token's C values (Concat) when the class token is kept apart
 *   FLAT (N x C):         Flatten(axis 1): N x C
 *   then Gather(axis 1, the kept indices): N x k_s,
 *   and the re-normalisation x / (||x|| + FLT_MIN): the squares summed by a MatMul with a
 *   column of ones, Sqrt, Add, Div. A zero subset stays zero (0 / FLT_MIN), as in the solver;
 *   any norm above 2^-102 absorbs FLT_MIN (2^-126) exactly, so other subsets are divided by
 *   their norm. These ops mean the same in every opset, unlike ReduceL2 (its axes became an
 *   input at opset 18), and h2tdb's executor runs them all.
 * Then Concat(axis 1) of the layers -> Gemm(W, b, transB) -> Softmax(axis 1) = "probabilities",
 * the graph's only output (linear heads); a knn head's vote instead (knn_nodes): outputs
 * "probabilities" and "label". The kept tensors stay as intermediates.
 */
#include "classify/internal.h"

#include "common/err.h"
#include "common/util.h"
#include "onnx/onnx.pb-c.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every allocation of the appended part, freed together. */
typedef struct arena {
    void **p;
    size_t n, cap;
    int oom;
} arena;

static void *ar_alloc(arena *a, size_t size)
{
    if (a->oom)
        return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **np = realloc(a->p, cap * sizeof *np);
        if (!np) {
            a->oom = 1;
            return NULL;
        }
        a->p = np;
        a->cap = cap;
    }
    void *x = calloc(1, size ? size : 1);
    if (!x) {
        a->oom = 1;
        return NULL;
    }
    a->p[a->n++] = x;
    return x;
}

static void ar_free(arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->p[i]);
    free(a->p);
}

static char *ar_fmt(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *ar_fmt(arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = ar_alloc(a, (size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The appended nodes, initializers and metadata entries. */
typedef struct build {
    arena a;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    int64_t opset; /* the model's ai.onnx opset */
} build;

static int push(arena *a, void ***v, size_t *n, size_t *cap, void *x)
{
    if (!x)
        return -1;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 32;
        void **nv = ar_alloc(a, nc * sizeof *nv);
        if (!nv)
            return -1;
        if (*n)
            memcpy(nv, *v, *n * sizeof *nv);
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static Onnx__AttributeProto *attr_int(arena *a, const char *name, int64_t v)
{
    Onnx__AttributeProto *t = ar_alloc(a, sizeof *t);
    if (!t)
        return NULL;
    onnx__attribute_proto__init(t);
    t->name = (char *)name;
    t->has_type = 1;
    t->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    t->has_i = 1;
    t->i = v;
    return t;
}

static Onnx__AttributeProto *attr_ints(arena *a, const char *name, const int64_t *v, size_t n)
{
    Onnx__AttributeProto *t = ar_alloc(a, sizeof *t);
    int64_t *c = ar_alloc(a, n * sizeof *c);
    if (!t || !c)
        return NULL;
    onnx__attribute_proto__init(t);
    memcpy(c, v, n * sizeof *c);
    t->name = (char *)name;
    t->has_type = 1;
    t->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    t->n_ints = n;
    t->ints = c;
    return t;
}

/* A node op(inputs) -> out with up to 4 attributes (NULL-terminated). */
static int node(build *b, const char *op, const char *out, const char *const *in, size_t n_in,
                Onnx__AttributeProto *a0, Onnx__AttributeProto *a1, Onnx__AttributeProto *a2)
{
    arena *a = &b->a;
    Onnx__NodeProto *nd = ar_alloc(a, sizeof *nd);
    char **ins = ar_alloc(a, n_in * sizeof *ins);
    char **outs = ar_alloc(a, sizeof *outs);
    Onnx__AttributeProto **at = ar_alloc(a, 3 * sizeof *at);
    if (!nd || !ins || !outs || !at)
        return -1;
    onnx__node_proto__init(nd);
    for (size_t i = 0; i < n_in; i++)
        ins[i] = (char *)in[i];
    outs[0] = (char *)out;
    nd->n_input = n_in;
    nd->input = ins;
    nd->n_output = 1;
    nd->output = outs;
    nd->op_type = (char *)op;
    nd->name = ar_fmt(a, "h2t_%s", out);
    Onnx__AttributeProto *as[3] = {a0, a1, a2};
    for (int i = 0; i < 3 && as[i]; i++)
        at[nd->n_attribute++] = as[i];
    nd->attribute = at;
    return push(a, (void ***)&b->nodes, &b->n_nodes, &b->cap_nodes, nd);
}

static int init_f(build *b, const char *name, const int64_t *dims, size_t nd, const float *v)
{
    arena *a = &b->a;
    size_t n = 1;
    for (size_t i = 0; i < nd; i++)
        n *= (size_t)dims[i];
    Onnx__TensorProto *t = ar_alloc(a, sizeof *t);
    int64_t *d = ar_alloc(a, nd * sizeof *d);
    float *x = ar_alloc(a, n * sizeof *x);
    if (!t || !d || !x)
        return -1;
    onnx__tensor_proto__init(t);
    memcpy(d, dims, nd * sizeof *d);
    memcpy(x, v, n * sizeof *x);
    t->name = (char *)name;
    t->n_dims = nd;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_float_data = n;
    t->float_data = x;
    return push(a, (void ***)&b->inits, &b->n_inits, &b->cap_inits, t);
}

static int init_i64(build *b, const char *name, const int64_t *v, size_t n)
{
    arena *a = &b->a;
    Onnx__TensorProto *t = ar_alloc(a, sizeof *t);
    int64_t *d = ar_alloc(a, sizeof *d);
    int64_t *x = ar_alloc(a, n * sizeof *x);
    if (!t || !d || !x)
        return -1;
    onnx__tensor_proto__init(t);
    d[0] = (int64_t)n;
    memcpy(x, v, n * sizeof *x);
    t->name = (char *)name;
    t->n_dims = 1;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_int64_data = n;
    t->int64_data = x;
    return push(a, (void ***)&b->inits, &b->n_inits, &b->cap_inits, t);
}

/* Concat(axis 1) of in[0..n) -> out, as a tree of Concats of at most 64 inputs each (the most
 * h2tdb's executor takes in one node; a head over every layer of a network reads hundreds). */
static int concat_node(build *b, const char *out, const char **in, size_t n)
{
    arena *a = &b->a;
    if (n <= 64)
        return node(b, "Concat", out, in, n, attr_int(a, "axis", 1), NULL, NULL);
    size_t ng = (n + 63) / 64;
    const char **parts = ar_alloc(a, ng * sizeof *parts);
    if (!parts)
        return -1;
    for (size_t i = 0; i < ng; i++) {
        size_t first = i * 64, cnt = n - first < 64 ? n - first : 64;
        if (!(parts[i] = ar_fmt(a, "%s_part%zu", out, i)) ||
            concat_node(b, parts[i], in + first, cnt) < 0)
            return -1;
    }
    return concat_node(b, out, parts, ng);
}

/* The opset of the default domain (ai.onnx) the model imports; 0 when none is named. */
static int64_t model_opset(const Onnx__ModelProto *m)
{
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i]->domain;
        if (!d || !*d || !strcmp(d, "ai.onnx"))
            return m->opset_import[i]->version;
    }
    return 0;
}

/* A reduction over one axis: the axes an attribute before opset `since` (ReduceSum 13,
 * ReduceMean 18), an int64 input from it. */
static int reduce_node(build *b, const char *op, int since, const char *out, const char *in,
                       int64_t axis, int keepdims)
{
    arena *a = &b->a;
    if (b->opset < since)
        return node(b, op, out, &in, 1, attr_ints(a, "axes", &axis, 1),
                    attr_int(a, "keepdims", keepdims), NULL);
    const char *ax = ar_fmt(a, "%s_axes", out);
    const char *ins[2] = {in, ax};
    if (!ax || init_i64(b, ax, &axis, 1) < 0)
        return -1;
    return node(b, op, out, ins, 2, attr_int(a, "keepdims", keepdims), NULL, NULL);
}

/* Reshape in -> out to the shape dims (a -1 for the batch). */
static int reshape_node(build *b, const char *out, const char *in, const int64_t *dims, size_t n)
{
    const char *sh = ar_fmt(&b->a, "%s_shape", out);
    const char *ins[2] = {in, sh};
    if (!sh || init_i64(b, sh, dims, n) < 0)
        return -1;
    return node(b, "Reshape", out, ins, 2, NULL, NULL, NULL);
}

/* Gather(axis 1) of tokens [t0, t1) of an N x L x C tensor: N x (t1 - t0) x C. */
static int tokens_node(build *b, const char *out, const char *in, uint32_t t0, uint32_t t1)
{
    arena *a = &b->a;
    int64_t *idx = ar_alloc(a, (t1 - t0) * sizeof *idx);
    const char *ix = ar_fmt(a, "%s_index", out);
    if (!idx || !ix)
        return -1;
    for (uint32_t t = t0; t < t1; t++)
        idx[t - t0] = t;
    const char *ins[2] = {in, ix};
    if (init_i64(b, ix, idx, t1 - t0) < 0)
        return -1;
    return node(b, "Gather", out, ins, 2, attr_int(a, "axis", 1), NULL, NULL);
}

/* The extraction's pooling of slot s as standard operators: its pooled features as the
 * N x dim tensor *out, in the order h2t_pool_apply writes them. */
static int pool_nodes(build *b, const h2t_classifier *c, uint32_t s, const char **out)
{
    arena *a = &b->a;
    const cls_slot *sl = &c->slots[s];
    const h2t_pool_plan *p = &sl->pool;
    const h2t_tensor_info *ti = h2t_model_tensor(c->m, sl->tensor);
    int map = p->kind == H2T_POOL_GAP || p->kind == H2T_POOL_GRID;
    int tok = p->kind == H2T_POOL_TMEAN || p->kind == H2T_POOL_TWIN || p->kind == H2T_POOL_CLS;
    int folded = ti->batch_axis == H2T_BATCH_FOLDED && ti->batch_fold > 0 &&
                 (p->form == H2T_FORM_ATTN || p->form == H2T_FORM_HEADS);
    int ok = p->kind == H2T_POOL_FLAT ? p->form == H2T_FORM_FLAT && ti->batch_axis == 0
             : map                    ? (p->form == H2T_FORM_NCHW || p->form == H2T_FORM_NHWC ||
                      p->form == H2T_FORM_ATTN || p->form == H2T_FORM_HEADS) &&
                         (ti->batch_axis == 0 || folded)
             : tok ? (p->form == H2T_FORM_NLC && ti->batch_axis == 0) ||
                         (p->form == H2T_FORM_NCL && ti->batch_axis == 0) ||
                         (p->form == H2T_FORM_LNC && ti->batch_axis == 1)
                   : 0;
    if (!ok)
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "export: layer '%s' (%s, batch axis %d, pooling kind %d) has no ONNX "
                           "pooling here",
                           sl->name, h2t_form_name(p->form), ti->batch_axis, p->kind);
    const char *in = sl->name, *flat = ar_fmt(a, "h2t_l%u_flat", s);
    if (!flat)
        return -1;
    if (map) {
        /* to N x C x H x W */
        if (folded) { /* N*heads x Lq x Lk (batch the outer factor): N x heads x Lq x Lk */
            const char *r = ar_fmt(a, "h2t_l%u_unfold", s);
            int64_t d[4] = {-1, p->c, p->h, p->w};
            if (!r || reshape_node(b, r, in, d, 4) < 0)
                return -1;
            in = r;
        } else if (p->form == H2T_FORM_NHWC) {
            const char *t = ar_fmt(a, "h2t_l%u_nchw", s);
            int64_t perm[4] = {0, 3, 1, 2};
            if (!t ||
                node(b, "Transpose", t, &in, 1, attr_ints(a, "perm", perm, 4), NULL, NULL) < 0)
                return -1;
            in = t;
        }
        if (p->kind == H2T_POOL_GAP) {
            const char *g = ar_fmt(a, "h2t_l%u_gap", s);
            if (!g || node(b, "GlobalAveragePool", g, &in, 1, NULL, NULL, NULL) < 0)
                return -1;
            in = g;
        } else {
            const char *g = ar_fmt(a, "h2t_l%u_avg", s), *t = ar_fmt(a, "h2t_l%u_hwc", s);
            int64_t k[2] = {p->ph, p->pw}, perm[4] = {0, 2, 3, 1};
            if (!g || !t ||
                node(b, "AveragePool", g, &in, 1, attr_ints(a, "kernel_shape", k, 2),
                     attr_ints(a, "strides", k, 2), NULL) < 0 ||
                node(b, "Transpose", t, &g, 1, attr_ints(a, "perm", perm, 4), NULL, NULL) < 0)
                return -1;
            in = t;
        }
    } else if (tok) {
        /* to N x L x C */
        if (p->form != H2T_FORM_NLC) {
            const char *t = ar_fmt(a, "h2t_l%u_nlc", s);
            int64_t perm_lnc[3] = {1, 0, 2}, perm_ncl[3] = {0, 2, 1};
            if (!t || node(b, "Transpose", t, &in, 1,
                           attr_ints(a, "perm", p->form == H2T_FORM_LNC ? perm_lnc : perm_ncl, 3),
                           NULL, NULL) < 0)
                return -1;
            in = t;
        }
        const char *cls = NULL;
        if (p->kind == H2T_POOL_CLS || p->lead) { /* token 0's C values */
            const char *t = ar_fmt(a, "h2t_l%u_cls_token", s);
            cls = ar_fmt(a, "h2t_l%u_cls", s);
            if (!t || !cls || tokens_node(b, t, in, 0, 1) < 0 ||
                node(b, "Flatten", cls, &t, 1, attr_int(a, "axis", 1), NULL, NULL) < 0)
                return -1;
        }
        if (p->kind == H2T_POOL_CLS) {
            *out = cls;
            return 0;
        }
        uint32_t win = p->kind == H2T_POOL_TMEAN ? p->h - p->t0 : p->ph;
        uint32_t nw = p->kind == H2T_POOL_TMEAN ? 1 : p->oh;
        const char *t = ar_fmt(a, "h2t_l%u_tokens", s), *w = ar_fmt(a, "h2t_l%u_windows", s);
        const char *m = ar_fmt(a, "h2t_l%u_mean", s);
        int64_t d[4] = {-1, nw, win, p->c};
        if (!t || !w || !m || tokens_node(b, t, in, p->t0, p->t0 + nw * win) < 0 ||
            reshape_node(b, w, t, d, 4) < 0 || reduce_node(b, "ReduceMean", 18, m, w, 2, 0) < 0)
            return -1;
        in = m;
        if (cls) {
            const char *f = ar_fmt(a, "h2t_l%u_pooled", s), *cat = ar_fmt(a, "h2t_l%u_lead", s);
            const char *ins[2] = {cls, f};
            if (!f || !cat ||
                node(b, "Flatten", f, &in, 1, attr_int(a, "axis", 1), NULL, NULL) < 0 ||
                node(b, "Concat", cat, ins, 2, attr_int(a, "axis", 1), NULL, NULL) < 0)
                return -1;
            in = cat;
        }
    }
    if (node(b, "Flatten", flat, &in, 1, attr_int(a, "axis", 1), NULL, NULL) < 0)
        return -1;
    *out = flat;
    return 0;
}

/* The nodes of slot s: its pooled, selected, re-normalised features as tensor *out. */
static int layer_nodes(build *b, const h2t_classifier *c, uint32_t s, const char **out)
{
    arena *a = &b->a;
    const cls_slot *sl = &c->slots[s];
    const h2t_result *r = c->r;
    const char *flat = NULL;
    int rc = pool_nodes(b, c, s, &flat);
    if (rc < 0)
        return a->oom ? -1 : rc;
    /* the kept indices of this layer */
    uint32_t k = r->layer_kept[sl->layer];
    int64_t *idx = ar_alloc(a, k * sizeof *idx);
    float *ones = ar_alloc(a, k * sizeof *ones);
    if (!idx || !ones)
        return -1;
    for (uint32_t q = 0; q < k; q++) {
        idx[q] = r->features[sl->kept0 + q].index;
        ones[q] = 1;
    }
    const char *ix = ar_fmt(a, "h2t_l%u_index", s), *sel = ar_fmt(a, "h2t_l%u_kept", s);
    const char *sq = ar_fmt(a, "h2t_l%u_sq", s), *ss = ar_fmt(a, "h2t_l%u_sumsq", s);
    const char *on = ar_fmt(a, "h2t_l%u_ones", s), *nr = ar_fmt(a, "h2t_l%u_norm", s);
    const char *nm = ar_fmt(a, "h2t_l%u_norm_min", s), *ot = ar_fmt(a, "h2t_l%u_out", s);
    int64_t od[2] = {k, 1};
    if (!ix || !sel || !sq || !ss || !on || !nr || !nm || !ot || init_i64(b, ix, idx, k) < 0 ||
        init_f(b, on, od, 2, ones) < 0)
        return -1;
    const char *tiny = "h2t_flt_min";
    const char *g_in[2] = {flat, ix}, *sq_in[2] = {sel, sel}, *mm_in[2] = {sq, on};
    const char *mx_in[2] = {nr, tiny}, *dv_in[2] = {sel, nm};
    if (node(b, "Gather", sel, g_in, 2, attr_int(a, "axis", 1), NULL, NULL) < 0 ||
        node(b, "Mul", sq, sq_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "MatMul", ss, mm_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "Sqrt", nr, &ss, 1, NULL, NULL, NULL) < 0 ||
        node(b, "Add", nm, mx_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "Div", ot, dv_in, 2, NULL, NULL, NULL) < 0)
        return -1;
    *out = ot;
    return 0;
}

static Onnx__StringStringEntryProto *prop(arena *a, const char *key, char *value)
{
    Onnx__StringStringEntryProto *e = ar_alloc(a, sizeof *e);
    if (!e || !value)
        return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = (char *)key;
    e->value = value;
    return e;
}

/* The JSON array of the class names (quotes and control characters escaped). */
static char *classes_json(arena *a, const h2t_classifier_info *ci)
{
    size_t n = 3;
    for (uint32_t k = 0; k < ci->n_classes; k++)
        n += 6 * strlen(ci->class_names[k]) + 4;
    char *s = ar_alloc(a, n);
    if (!s)
        return NULL;
    size_t o = 0;
    s[o++] = '[';
    for (uint32_t k = 0; k < ci->n_classes; k++) {
        if (k)
            s[o++] = ',';
        s[o++] = '"';
        for (const unsigned char *p = (const unsigned char *)ci->class_names[k]; *p; p++) {
            if (*p == '"' || *p == '\\') {
                s[o++] = '\\';
                s[o++] = (char)*p;
            } else if (*p < 0x20) {
                o += (size_t)snprintf(s + o, n - o, "\\u%04x", *p);
            } else {
                s[o++] = (char)*p;
            }
        }
        s[o++] = '"';
    }
    s[o++] = ']';
    s[o] = '\0';
    return s;
}

static const char *method_name(uint32_t m)
{
    return h2t_method_name(m);
}

/* 1: the head votes with stored training rows (what h2t_result_proba does for it). A knn
 * result without its rows is predicted with its class-mean head, and exported as one. */
static int is_knn(const h2t_result *r)
{
    return r->method == H2T_METHOD_KNN && r->protos && r->n_protos;
}

/* The graph output `name`: float N x cols (cols > 0) or int64 N (cols 0). */
static Onnx__ValueInfoProto *value_info(arena *a, const char *name, int elem, uint32_t cols)
{
    Onnx__ValueInfoProto *vo = ar_alloc(a, sizeof *vo);
    Onnx__TypeProto *tp = ar_alloc(a, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ar_alloc(a, sizeof *tt);
    Onnx__TensorShapeProto *sh = ar_alloc(a, sizeof *sh);
    Onnx__TensorShapeProto__Dimension *d0 = ar_alloc(a, sizeof *d0), *d1 = ar_alloc(a, sizeof *d1);
    Onnx__TensorShapeProto__Dimension **dims = ar_alloc(a, 2 * sizeof *dims);
    if (!vo || !tp || !tt || !sh || !d0 || !d1 || !dims)
        return NULL;
    onnx__value_info_proto__init(vo);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    onnx__tensor_shape_proto__dimension__init(d0);
    onnx__tensor_shape_proto__dimension__init(d1);
    d0->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    d0->dim_param = "N";
    d1->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d1->dim_value = cols;
    dims[0] = d0;
    dims[1] = d1;
    sh->n_dim = cols ? 2 : 1;
    sh->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vo->name = (char *)name;
    vo->type = tp;
    return vo;
}

/* The knn vote (h2t_solver__knn) on the re-normalised features feat (N x n_kept):
 *   q = feat / (||feat|| + FLT_MIN)                      the query at unit length (0 stays 0)
 *   S = MatMul(q, R^T)                                   cosine with every stored row (R: the
 *                                                        rows at unit length, 0 stays 0)
 *   V, I = TopK(S, k)                                    the k most similar; TopK puts the lower
 *                                                        index first on equal values, as the
 *                                                        solver's insertion does
 *   G = Gather(onehot(labels), I)                        N x k x classes
 *   counts = ReduceSum(G, 1); sims = ReduceSum(G * V, 1) votes and summed similarity per class
 *   probabilities = counts / k                           each class's share of the votes
 *   label = ArgMax(counts + (sims + k) / (2k + 1))       most votes, then the larger summed
 *                                                        similarity (the second term is in
 *                                                        [0, 1)), then the lower class (ArgMax
 *                                                        takes the first). */
static int knn_nodes(build *b, const h2t_result *r, const char *feat)
{
    arena *a = &b->a;
    uint32_t d = r->n_kept, np = r->n_protos, K = r->n_classes;
    uint32_t k = r->knn_k ? r->knn_k : 1;
    if (k > np)
        k = np;
    float *rt = ar_alloc(a, (size_t)d * np * sizeof *rt), *oh = ar_alloc(a, (size_t)np * K * 4);
    float *ones = ar_alloc(a, (size_t)d * sizeof *ones);
    if (!rt || !oh || !ones)
        return -1;
    for (uint32_t p = 0; p < np; p++) {
        const float *row = r->protos + (size_t)p * d;
        double s = 0;
        for (uint32_t j = 0; j < d; j++)
            s += (double)row[j] * row[j];
        double inv = s > 0 ? 1.0 / sqrt(s) : 0;
        for (uint32_t j = 0; j < d; j++)
            rt[(size_t)j * np + p] = (float)(row[j] * inv);
        if (r->proto_labels[p] < K)
            oh[(size_t)p * K + r->proto_labels[p]] = 1;
    }
    for (uint32_t j = 0; j < d; j++)
        ones[j] = 1;
    int64_t rd[2] = {d, np}, od[2] = {np, K}, cd[2] = {d, 1}, kk = k, one = 1;
    float fk = (float)k, f2k1 = (float)(2.0 * k + 1);
    const char *sq_in[2] = {feat, feat}, *ss_in[2] = {"h2t_knn_sq", "h2t_knn_ones"};
    const char *sumsq = "h2t_knn_sumsq", *nm_in[2] = {"h2t_knn_norm", "h2t_flt_min"};
    const char *q_in[2] = {feat, "h2t_knn_norm_min"}, *s_in[2] = {"h2t_knn_query", "h2t_knn_rows"};
    const char *tk_in[2] = {"h2t_knn_sim", "h2t_knn_k"};
    const char *tk_out[2] = {"h2t_knn_top", "h2t_knn_top_index"};
    const char *g_in[2] = {"h2t_knn_onehot", "h2t_knn_top_index"};
    const char *w_in[2] = {"h2t_knn_votes", "h2t_knn_top3"};
    const char *p_in[2] = {"h2t_knn_counts", "h2t_knn_kf"};
    const char *a_in[2] = {"h2t_knn_sims", "h2t_knn_kf"},
               *dv_in[2] = {"h2t_knn_sims_k", "h2t_knn_2k1"};
    const char *sc_in[2] = {"h2t_knn_counts", "h2t_knn_tie"};
    int64_t v3[3] = {-1, k, 1};
    if (init_f(b, "h2t_knn_rows", rd, 2, rt) < 0 || init_f(b, "h2t_knn_onehot", od, 2, oh) < 0 ||
        init_f(b, "h2t_knn_ones", cd, 2, ones) < 0 || init_i64(b, "h2t_knn_k", &kk, 1) < 0 ||
        init_f(b, "h2t_knn_kf", &one, 1, &fk) < 0 || init_f(b, "h2t_knn_2k1", &one, 1, &f2k1) < 0 ||
        node(b, "Mul", "h2t_knn_sq", sq_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "MatMul", "h2t_knn_sumsq", ss_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "Sqrt", "h2t_knn_norm", &sumsq, 1, NULL, NULL, NULL) < 0 ||
        node(b, "Add", "h2t_knn_norm_min", nm_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "Div", "h2t_knn_query", q_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "MatMul", "h2t_knn_sim", s_in, 2, NULL, NULL, NULL) < 0)
        return -1;
    /* TopK: two outputs */
    if (node(b, "TopK", tk_out[0], tk_in, 2, attr_int(a, "axis", 1), attr_int(a, "largest", 1),
             attr_int(a, "sorted", 1)) < 0)
        return -1;
    Onnx__NodeProto *tk = b->nodes[b->n_nodes - 1];
    char **two = ar_alloc(a, 2 * sizeof *two);
    if (!two)
        return -1;
    two[0] = (char *)tk_out[0];
    two[1] = (char *)tk_out[1];
    tk->output = two;
    tk->n_output = 2;
    const char *t3 = "h2t_knn_top";
    if (node(b, "Gather", "h2t_knn_votes", g_in, 2, attr_int(a, "axis", 0), NULL, NULL) < 0 ||
        reduce_node(b, "ReduceSum", 13, "h2t_knn_counts", "h2t_knn_votes", 1, 0) < 0 ||
        reshape_node(b, "h2t_knn_top3", t3, v3, 3) < 0 ||
        node(b, "Mul", "h2t_knn_vote_sims", w_in, 2, NULL, NULL, NULL) < 0 ||
        reduce_node(b, "ReduceSum", 13, "h2t_knn_sims", "h2t_knn_vote_sims", 1, 0) < 0 ||
        node(b, "Div", "probabilities", p_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "Add", "h2t_knn_sims_k", a_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "Div", "h2t_knn_tie", dv_in, 2, NULL, NULL, NULL) < 0 ||
        node(b, "Add", "h2t_knn_score", sc_in, 2, NULL, NULL, NULL) < 0)
        return -1;
    const char *sc = "h2t_knn_score";
    return node(b, "ArgMax", "label", &sc, 1, attr_int(a, "axis", 1), attr_int(a, "keepdims", 0),
                NULL);
}

int h2t_classify_write_file(const char *path, const void *buf, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return h2t_err_set(H2T_EIO, "export %s: %s", tmp, strerror(errno));
    int ok = fwrite(buf, 1, len, f) == len;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        return h2t_err_set(H2T_EIO, "export %s: write failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return h2t_err_set(H2T_EIO, "export: rename %s to %s: %s", tmp, path, strerror(e));
    }
    return 0;
}

int h2t_classifier_onnx(const h2t_classifier *c, void **out, size_t *out_len)
{
    const char *path = "(in memory)";
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, c->pruned_len, c->pruned);
    if (!m || !m->graph)
        return h2t_err_set(H2T_ECORRUPT, "export: the pruned model does not parse");
    Onnx__GraphProto *g = m->graph;
    /* the parts replaced below, put back before the free */
    Onnx__NodeProto **old_nodes = g->node;
    size_t old_n_nodes = g->n_node;
    Onnx__TensorProto **old_inits = g->initializer;
    size_t old_n_inits = g->n_initializer;
    Onnx__ValueInfoProto **old_out = g->output;
    size_t old_n_out = g->n_output;
    Onnx__StringStringEntryProto **old_props = m->metadata_props;
    size_t old_n_props = m->n_metadata_props;
    build b = {0};
    arena *a = &b.a;
    uint8_t *bytes = NULL;
    int rc = 0;
    const h2t_result *r = c->r;
    const h2t_classifier_info *ci = &c->info;
    int knn = is_knn(r);
    b.opset = model_opset(m);
    if (knn && b.opset < 11) {
        rc = h2t_err_set(H2T_EUNSUPPORTED,
                         "export: job %" PRIu64 " is a knn head; its vote needs TopK's tie rule "
                         "(opset 11), the model imports opset %" PRId64,
                         ci->job, b.opset);
        goto out;
    }
    for (size_t i = 0; i < old_n_nodes; i++)
        push(a, (void ***)&b.nodes, &b.n_nodes, &b.cap_nodes, old_nodes[i]);
    for (size_t i = 0; i < old_n_inits; i++)
        push(a, (void ***)&b.inits, &b.n_inits, &b.cap_inits, old_inits[i]);
    float fmin = FLT_MIN;
    int64_t one = 1;
    if (init_f(&b, "h2t_flt_min", &one, 1, &fmin) < 0)
        goto oom;
    const char **outs = ar_alloc(a, c->n_slots * sizeof *outs);
    if (!outs)
        goto oom;
    for (uint32_t s = 0; s < c->n_slots; s++) {
        if ((rc = layer_nodes(&b, c, s, &outs[s])) < 0) {
            if (a->oom)
                goto oom;
            goto out;
        }
    }
    /* the head */
    const char *feat = "h2t_features";
    if (concat_node(&b, feat, outs, c->n_slots) < 0)
        goto oom;
    if (knn) {
        if (knn_nodes(&b, r, feat) < 0)
            goto oom;
    } else {
        int64_t wd[2] = {r->n_classes, r->n_kept}, bd[1] = {r->n_classes};
        const char *gemm_in[3] = {feat, "h2t_head_W", "h2t_head_b"}, *lg = "h2t_logits";
        if (init_f(&b, "h2t_head_W", wd, 2, r->weights) < 0 ||
            init_f(&b, "h2t_head_b", bd, 1, r->bias) < 0 ||
            node(&b, "Gemm", lg, gemm_in, 3, attr_int(a, "transB", 1), NULL, NULL) < 0 ||
            node(&b, "Softmax", "probabilities", &lg, 1, attr_int(a, "axis", 1), NULL, NULL) < 0)
            goto oom;
    }
    /* the outputs: probabilities, N x classes; a knn head's label, N */
    Onnx__ValueInfoProto **vouts = ar_alloc(a, 2 * sizeof *vouts);
    if (!vouts || !(vouts[0] = value_info(a, "probabilities", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                                          r->n_classes)))
        goto oom;
    if (knn && !(vouts[1] = value_info(a, "label", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 0)))
        goto oom;
    /* metadata: the model's own entries but ours, then ours */
    Onnx__StringStringEntryProto **props = ar_alloc(a, (old_n_props + 8) * sizeof *props);
    if (!props)
        goto oom;
    size_t np = 0;
    for (size_t i = 0; i < old_n_props; i++)
        if (strncmp(old_props[i]->key ? old_props[i]->key : "", "h2tdb.", 6))
            props[np++] = old_props[i];
    char sha[65];
    h2t_hex(c->model_sha, 32, sha);
    Onnx__StringStringEntryProto *mine[8] = {
        prop(a, "h2tdb.classes", classes_json(a, ci)),
        prop(a, "h2tdb.preprocess", ar_fmt(a, "scale=%.9g,%.9g", (double)ci->lo, (double)ci->hi)),
        prop(a, "h2tdb.preprocess_full",
             ar_fmt(a,
                    "%s; input N x %u x %u x %u float32 (NCHW); gray images replicated to "
                    "3 channels or RGB to gray by 0.299 R + 0.587 G + 0.114 B as the model "
                    "takes",
                    ci->preprocess, ci->c, ci->h, ci->w)),
        prop(a, "h2tdb.extraction", ar_fmt(a, "%u: %s", ci->extraction, ci->config)),
        prop(a, "h2tdb.job",
             ar_fmt(a, "%" PRIu64 " (%s, %u features of %u layer(s), test accuracy %.4f)", ci->job,
                    method_name(ci->method), ci->n_kept, ci->n_layers, r->test_acc)),
        prop(a, "h2tdb.task", ar_fmt(a, "%s", ci->task)),
        prop(a, "h2tdb.model_sha256", ar_fmt(a, "%s", sha)),
        prop(a, "h2tdb.output",
             knn ? ar_fmt(a,
                          "probabilities: N x %u, each class's share (of h2tdb.classes) of the "
                          "votes of the %u most similar of %u stored training rows; label: N "
                          "int64, the vote's class (most votes, then the larger summed cosine, "
                          "then the lower class)",
                          r->n_classes,
                          r->knn_k < r->n_protos ? (r->knn_k ? r->knn_k : 1) : r->n_protos,
                          r->n_protos)
                 : ar_fmt(a, "probabilities: N x %u softmax over h2tdb.classes", r->n_classes)),
    };
    for (int i = 0; i < 8; i++) {
        if (!mine[i])
            goto oom;
        props[np++] = mine[i];
    }
    g->node = b.nodes;
    g->n_node = b.n_nodes;
    g->initializer = b.inits;
    g->n_initializer = b.n_inits;
    g->output = vouts;
    g->n_output = knn ? 2 : 1;
    m->metadata_props = props;
    m->n_metadata_props = np;
    size_t len = onnx__model_proto__get_packed_size(m);
    if (!(bytes = malloc(len ? len : 1)))
        goto oom;
    onnx__model_proto__pack(m, bytes);
    *out = bytes;
    *out_len = len;
    bytes = NULL;
    goto out;
oom:
    rc = h2t_err_set(H2T_ENOMEM, "export %s", path);
    (void)path;
out:
    g->node = old_nodes;
    g->n_node = old_n_nodes;
    g->initializer = old_inits;
    g->n_initializer = old_n_inits;
    g->output = old_out;
    g->n_output = old_n_out;
    m->metadata_props = old_props;
    m->n_metadata_props = old_n_props;
    onnx__model_proto__free_unpacked(m, NULL);
    free(bytes);
    ar_free(a);
    return rc;
}

int h2t_classifier_export_onnx(const h2t_classifier *c, const char *path)
{
    void *bytes = NULL;
    size_t len = 0;
    int rc = h2t_classifier_onnx(c, &bytes, &len);
    if (rc == 0)
        rc = h2t_classify_write_file(path, bytes, len);
    free(bytes);
    return rc;
}
