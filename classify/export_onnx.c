/*
 * classify/export_onnx.c - the classifier as one ONNX model (h2t_classifier_export_onnx): the
 * pruned backbone's graph with the pooling, selection, re-normalisation and head appended as
 * standard operators, written with the protobuf-c ONNX bindings.
 *
 * Per kept layer s (tensor T, its plan from the extraction):
 *   GAP  (N x C x H x W): GlobalAveragePool(T) -> Flatten(axis 1): N x C
 *   GRID (N x C x H x W): AveragePool(T, kernel = strides = ph x pw, no padding: the trailing
 *                         rows / columns drop out as in the extraction) -> Transpose(0, 2, 3, 1)
 *                         -> Flatten(axis 1): N x (oh ow C), in the (H, W, C) order
 *   FLAT (N x C):         Flatten(axis 1): N x C
 *   then Gather(axis 1, the kept indices): N x k_s,
 *   and the re-normalisation x / (||x|| + FLT_MIN): the squares summed by a MatMul with a
 *   column of ones, Sqrt, Add, Div. A zero subset stays zero (0 / FLT_MIN), as in the solver;
 *   any norm above 2^-102 absorbs FLT_MIN (2^-126) exactly, so other subsets are divided by
 *   their norm. These ops mean the same in every opset, unlike ReduceL2 (its axes became an
 *   input at opset 18), and h2tdb's executor runs them all.
 * Then Concat(axis 1) of the layers -> Gemm(W, b, transB) -> Softmax(axis 1) = "probabilities",
 * the graph's only output; the kept tensors stay as intermediates.
 */
#include "classify/internal.h"

#include "common/err.h"
#include "common/util.h"
#include "onnx/onnx.pb-c.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
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

/* The nodes of slot s: its pooled, selected, re-normalised features as tensor *out. */
static int layer_nodes(build *b, const h2t_classifier *c, uint32_t s, const char **out)
{
    arena *a = &b->a;
    const cls_slot *sl = &c->slots[s];
    const h2t_pool_plan *p = &sl->pool;
    const h2t_result *r = c->r;
    const h2t_tensor_info *ti = h2t_model_tensor(c->m, sl->tensor);
    int four = p->kind == H2T_POOL_GAP || p->kind == H2T_POOL_GRID;
    if ((four && p->form != H2T_FORM_NCHW) || (!four && p->kind != H2T_POOL_FLAT) ||
        ti->batch_axis != 0)
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "export: layer '%s' (%s, %s pooling): only N x C x H x W maps and "
                           "N x C vectors have an ONNX pooling here",
                           sl->name, h2t_form_name(p->form),
                           p->kind == H2T_POOL_TMEAN || p->kind == H2T_POOL_TWIN ||
                                   p->kind == H2T_POOL_CLS
                               ? "token"
                               : "map");
    const char *in = sl->name, *flat = ar_fmt(a, "h2t_l%u_flat", s);
    if (!flat)
        return -1;
    if (p->kind == H2T_POOL_GAP) {
        const char *g = ar_fmt(a, "h2t_l%u_gap", s);
        if (!g || node(b, "GlobalAveragePool", g, &in, 1, NULL, NULL, NULL) < 0)
            return -1;
        in = g;
    } else if (p->kind == H2T_POOL_GRID) {
        const char *g = ar_fmt(a, "h2t_l%u_avg", s), *t = ar_fmt(a, "h2t_l%u_hwc", s);
        int64_t k[2] = {p->ph, p->pw}, perm[4] = {0, 2, 3, 1};
        if (!g || !t ||
            node(b, "AveragePool", g, &in, 1, attr_ints(a, "kernel_shape", k, 2),
                 attr_ints(a, "strides", k, 2), NULL) < 0 ||
            node(b, "Transpose", t, &g, 1, attr_ints(a, "perm", perm, 4), NULL, NULL) < 0)
            return -1;
        in = t;
    }
    if (node(b, "Flatten", flat, &in, 1, attr_int(a, "axis", 1), NULL, NULL) < 0)
        return -1;
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
    if (c->r->protos || c->r->method == H2T_METHOD_KNN)
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "export: job %" PRIu64 " is a knn head (a vote of %u stored training "
                           "rows), not a linear one: it has no ONNX form here",
                           c->info.job, c->r->n_protos);
    if (c->r->method == H2T_METHOD_KNN)
        return h2t_err_set(H2T_EINVAL,
                           "export: a knn head votes with its %u stored training "
                           "rows; only linear heads (W x + b) export to ONNX",
                           c->r->n_protos);
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
    int64_t wd[2] = {r->n_classes, r->n_kept}, bd[1] = {r->n_classes};
    const char *feat = "h2t_features", *gemm_in[3] = {feat, "h2t_head_W", "h2t_head_b"};
    if (node(&b, "Concat", feat, outs, c->n_slots, attr_int(a, "axis", 1), NULL, NULL) < 0 ||
        init_f(&b, "h2t_head_W", wd, 2, r->weights) < 0 ||
        init_f(&b, "h2t_head_b", bd, 1, r->bias) < 0 ||
        node(&b, "Gemm", "h2t_logits", gemm_in, 3, attr_int(a, "transB", 1), NULL, NULL) < 0)
        goto oom;
    const char *lg = "h2t_logits";
    if (node(&b, "Softmax", "probabilities", &lg, 1, attr_int(a, "axis", 1), NULL, NULL) < 0)
        goto oom;
    /* the one output: probabilities, N x classes */
    Onnx__ValueInfoProto *vo = ar_alloc(a, sizeof *vo);
    Onnx__TypeProto *tp = ar_alloc(a, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ar_alloc(a, sizeof *tt);
    Onnx__TensorShapeProto *sh = ar_alloc(a, sizeof *sh);
    Onnx__TensorShapeProto__Dimension *d0 = ar_alloc(a, sizeof *d0), *d1 = ar_alloc(a, sizeof *d1);
    Onnx__TensorShapeProto__Dimension **dims = ar_alloc(a, 2 * sizeof *dims);
    Onnx__ValueInfoProto **vouts = ar_alloc(a, sizeof *vouts);
    if (!vo || !tp || !tt || !sh || !d0 || !d1 || !dims || !vouts)
        goto oom;
    onnx__value_info_proto__init(vo);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    onnx__tensor_shape_proto__dimension__init(d0);
    onnx__tensor_shape_proto__dimension__init(d1);
    d0->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    d0->dim_param = "N";
    d1->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d1->dim_value = r->n_classes;
    dims[0] = d0;
    dims[1] = d1;
    sh->n_dim = 2;
    sh->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vo->name = "probabilities";
    vo->type = tp;
    vouts[0] = vo;
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
             ar_fmt(a, "probabilities: N x %u softmax over h2tdb.classes", r->n_classes)),
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
    g->n_output = 1;
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
