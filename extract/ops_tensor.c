/*
 * extract/ops_tensor.c - tensors made from shapes and indices: ConstantOfShape, Range, Expand,
 * Tile, Split, ScatterND, and their table fragment (onnx_ops_tensor). The data movement is
 * element-size generic: the same loop moves float data (kernels, 4-byte elements) and static
 * integer / bool values (eval, int64 elements).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/onnx_graph.h"

enum { R_NONE, R_ADD, R_MUL, R_MAX, R_MIN };

/* The bytes and element size of a value: int64 values when static integer / bool, else
 * floats. */
static const char *vbytes(const onnx_vstate *v, size_t *esz)
{
    *esz = v->ival ? 8 : 4;
    return v->ival ? (const char *)v->ival : (const char *)v->f;
}

static char *vbytes_out(onnx_vstate *v, int is_int, size_t *esz)
{
    *esz = is_int ? 8 : 4;
    return is_int ? (char *)v->ival : (char *)v->f;
}

/* ---------------------------------------------------------------- ConstantOfShape */

/* The 'value' attribute (one element; float32 0 when absent): its type into p.to, the value
 * into p.value (float) or p.ints[0] (integer, bool). */
static int parse_cos(const h2t_model *m, onnx_node *nd)
{
    onnx_params *p = &nd->p;
    const onnx_attr *a = onnx_attr_get(nd, "value");
    p->to = ONNX_DT_F32;
    p->value = 0.f;
    p->ints[0] = 0;
    if (!a)
        return 0;
    if (a->type != ONNX_AT_T || a->t_value < 0)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (ConstantOfShape): value is not a tensor",
                           nd->name);
    const onnx_value *v = &m->values[a->t_value];
    if (v->count != 1)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (ConstantOfShape): value has %lld elements",
                           nd->name, (long long)v->count);
    if (v->dtype != ONNX_DT_F32 && !onnx_dt_is_int(v->dtype)) {
        char b[32];
        snprintf(b, sizeof b, "%d", v->dtype);
        return onnx_unsup(nd, "value of data type (supported: float32, int32, int64, bool) ", b);
    }
    p->to = v->dtype;
    if (v->dtype == ONNX_DT_F32)
        p->value = ((const float *)v->cdata)[0];
    else
        p->ints[0] = ((const int64_t *)v->cdata)[0];
    return 0;
}

static int infer_cos(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const int64_t *s;
    int64_t n;
    int rc = onnx_param_list(nd, vs, 0, &s, &n);
    if (rc < 0)
        return rc;
    if (n > H2T_MAX_RANK)
        return onnx_unsup(nd, "output rank above 6", NULL);
    for (int i = 0; i < n; i++)
        if (s[i] < 0)
            return onnx_shape_err(nd, "negative dimension %lld", s[i], 0);
    onnx_set_shape(VOUT(0), (int)n, s);
    return 0;
}

static int eval_cos(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    for (int64_t i = 0, n = onnx_numel(VOUT(0)); i < n; i++)
        VOUT(0)->ival[i] = nd->p.ints[0];
    return 0;
}

static int k_cos(const onnx_kctx *k, const onnx_node *nd)
{
    for (int64_t i = 0, n = onnx_numel(OUT(0)); i < n; i++)
        OUT(0)->f[i] = nd->p.value;
    return 0;
}

/* ---------------------------------------------------------------- Range */

/* count = max(ceil((limit - start) / delta), 0); values start, start + delta, ... added up
 * one step at a time in the element type (as the ONNX function body and ONNX Runtime do). */
static int infer_range(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)ns;
    double st, li, de;
    int rc = onnx_static_scalar(m, nd, vs, 0, &st);
    if (rc == 0)
        rc = onnx_static_scalar(m, nd, vs, 1, &li);
    if (rc == 0)
        rc = onnx_static_scalar(m, nd, vs, 2, &de);
    if (rc < 0)
        return rc;
    if (de == 0)
        return onnx_shape_err(nd, "delta 0", 0, 0);
    double c;
    if (VIN(0)->ival)
        c = ceil((double)(VIN(1)->ival[0] - VIN(0)->ival[0]) / (double)VIN(2)->ival[0]);
    else
        c = ceil((double)((float)li - (float)st) / (float)de);
    if (c > (double)((int64_t)1 << 40))
        return onnx_shape_err(nd, "%lld elements", (long long)c, 0);
    int64_t d[1] = {c > 0 ? (int64_t)c : 0};
    onnx_set_shape(VOUT(0), 1, d);
    return 0;
}

static int eval_range(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    int64_t v = VIN(0)->ival[0], de = VIN(2)->ival[0];
    for (int64_t i = 0, n = onnx_numel(VOUT(0)); i < n; i++, v += de)
        VOUT(0)->ival[i] = v;
    return 0;
}

static int k_range(const onnx_kctx *k, const onnx_node *nd)
{
    float v = IN(0)->f[0], de = IN(2)->f[0];
    for (int64_t i = 0, n = onnx_numel(OUT(0)); i < n; i++, v += de)
        OUT(0)->f[i] = v;
    return 0;
}

/* ---------------------------------------------------------------- Expand */

static int infer_expand(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const int64_t *s;
    int64_t n;
    int rc = onnx_param_list(nd, vs, 1, &s, &n);
    if (rc < 0)
        return rc;
    if (n > H2T_MAX_RANK)
        return onnx_unsup(nd, "output rank above 6", NULL);
    onnx_vstate t;
    t.rank = (int)n;
    for (int i = 0; i < n; i++)
        t.dim[i] = s[i];
    return onnx_bcast_shape(nd, VIN(0), &t, VOUT(0));
}

static void expand_move(const onnx_vstate *x, onnx_vstate *o, int is_int)
{
    size_t esz, osz;
    const char *src = vbytes(x, &esz);
    char *dst = vbytes_out(o, is_int, &osz);
    const onnx_vstate *in[1] = {x};
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 1);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w))
        memcpy(dst + (size_t)t * esz, src + (size_t)w.off[0] * esz, esz);
}

static int eval_expand(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    expand_move(VIN(0), VOUT(0), 1);
    return 0;
}

static int k_expand(const onnx_kctx *k, const onnx_node *nd)
{
    expand_move(IN(0), OUT(0), 0);
    return 0;
}

/* ---------------------------------------------------------------- Tile */

static int infer_tile(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    const onnx_vstate *x = VIN(0);
    const int64_t *r;
    int64_t n;
    int rc = onnx_param_list(nd, vs, 1, &r, &n);
    if (rc < 0)
        return rc;
    if (n != x->rank)
        return onnx_shape_err(nd, "%lld repeats for rank %lld", n, x->rank);
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        if (r[i] < 0)
            return onnx_shape_err(nd, "negative repeat %lld", r[i], 0);
        d[i] = x->dim[i] * r[i];
    }
    ns->a[0] = x->rank ? r[0] : 1;
    onnx_set_shape(VOUT(0), x->rank, d);
    return 0;
}

static void tile_move(const onnx_vstate *x, onnx_vstate *o, int is_int)
{
    size_t esz, osz;
    const char *src = vbytes(x, &esz);
    char *dst = vbytes_out(o, is_int, &osz);
    int r = o->rank;
    int64_t istr[H2T_MAX_RANK], s = 1, idx[H2T_MAX_RANK] = {0};
    for (int i = r - 1; i >= 0; i--) {
        istr[i] = s;
        s *= x->dim[i];
    }
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++) {
        int64_t off = 0;
        for (int i = 0; i < r; i++)
            off += (idx[i] % x->dim[i]) * istr[i];
        memcpy(dst + (size_t)t * esz, src + (size_t)off * esz, esz);
        for (int i = r - 1; i >= 0; i--) {
            if (++idx[i] < o->dim[i])
                break;
            idx[i] = 0;
        }
    }
}

static int eval_tile(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    tile_move(VIN(0), VOUT(0), 1);
    return 0;
}

static int k_tile(const onnx_kctx *k, const onnx_node *nd)
{
    tile_move(IN(0), OUT(0), 0);
    return 0;
}

static int tile_mixes_batch(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return ns->a[0] != 1; /* repeats along axis 0 copy samples */
}

/* ---------------------------------------------------------------- Split */

static int parse_split(const h2t_model *m, onnx_node *nd)
{
    nd->p.axis = onnx_attr_i(nd, "axis", 0);
    if (m->opset >= 13 && onnx_attr_get(nd, "split"))
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Split): the split attribute at opset %d",
                           nd->name, m->opset);
    if (m->opset < 13 && nd->n_in > 1)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Split): a split input at opset %d", nd->name,
                           m->opset);
    const onnx_attr *no = onnx_attr_get(nd, "num_outputs");
    if (no && (m->opset < 18 || no->i != nd->n_out || (nd->n_in > 1 && nd->in[1] >= 0)))
        return h2t_err_set(H2T_ECORRUPT,
                           "node '%s' (Split): num_outputs %lld with %d outputs at opset %d",
                           nd->name, (long long)no->i, nd->n_out, m->opset);
    return 0;
}

/* Sizes along the axis: the split attribute (opset < 13) or input (13+); without them equal
 * parts, the last one smaller when num_outputs (18+) does not divide the axis. ns->a[0] is
 * the axis. */
static int infer_split(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    int64_t axis;
    if (onnx_norm_axis(nd->p.axis, x->rank, &axis) < 0)
        return onnx_shape_err(nd, "axis %lld for rank %lld", nd->p.axis, x->rank);
    ns->a[0] = axis;
    const int64_t *sp = NULL;
    int64_t nsp = 0, D = x->dim[axis], total = 0;
    const onnx_attr *a = onnx_attr_get(nd, "split");
    if (m->opset < 13 && a && a->type == ONNX_AT_IS) {
        sp = a->ints;
        nsp = a->n;
    } else if (m->opset >= 13 && HAS(1)) {
        int rc = onnx_param_list(nd, vs, 1, &sp, &nsp);
        if (rc < 0)
            return rc;
    }
    if (sp && nsp != nd->n_out)
        return onnx_shape_err(nd, "%lld split sizes for %lld outputs", nsp, nd->n_out);
    int64_t chunk =
        onnx_attr_get(nd, "num_outputs") ? (D + nd->n_out - 1) / nd->n_out : D / nd->n_out;
    if (!sp && !onnx_attr_get(nd, "num_outputs") && D % nd->n_out)
        return onnx_shape_err(nd, "axis of %lld does not split into %lld equal parts", D,
                              nd->n_out);
    for (int k = 0; k < nd->n_out; k++) {
        int64_t len = sp ? sp[k] : k < nd->n_out - 1 ? chunk : D - chunk * (nd->n_out - 1);
        if (len < 0)
            return onnx_shape_err(nd, "split size %lld", len, 0);
        total += len;
        onnx_vstate *o = VOUT(k);
        onnx_set_shape(o, x->rank, x->dim);
        o->dim[axis] = len;
    }
    if (total != D)
        return onnx_shape_err(nd, "split sizes add up to %lld, the axis has %lld", total, D);
    return 0;
}

static void split_move(const onnx_node *nd, onnx_vstate *vs, int64_t axis, int is_int)
{
    const onnx_vstate *x = VIN(0);
    size_t esz, osz;
    const char *src = vbytes(x, &esz);
    int64_t outer = 1, inner = 1, off = 0;
    for (int i = 0; i < axis; i++)
        outer *= x->dim[i];
    for (int i = (int)axis + 1; i < x->rank; i++)
        inner *= x->dim[i];
    for (int k = 0; k < nd->n_out; k++) {
        char *dst = vbytes_out(VOUT(k), is_int, &osz);
        int64_t blk = VOUT(k)->dim[axis] * inner;
        if (blk)
            for (int64_t j = 0; j < outer; j++)
                memcpy(dst + (size_t)(j * blk) * esz,
                       src + (size_t)(j * x->dim[axis] * inner + off) * esz, (size_t)blk * esz);
        off += blk;
    }
}

static int eval_split(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    split_move(nd, vs, ns->a[0], 1);
    return 0;
}

static int k_split(const onnx_kctx *k, const onnx_node *nd)
{
    split_move(nd, k->vs, k->ns->a[0], 0);
    return 0;
}

static int split_mixes_batch(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return ns->a[0] == 0;
}

/* ---------------------------------------------------------------- ScatterND */

static int parse_scatternd(const h2t_model *m, onnx_node *nd)
{
    const char *r = onnx_attr_s(nd, "reduction", "none");
    nd->p.mode = !strcmp(r, "none")  ? R_NONE
                 : !strcmp(r, "add") ? R_ADD
                 : !strcmp(r, "mul") ? R_MUL
                 : !strcmp(r, "max") ? R_MAX
                 : !strcmp(r, "min") ? R_MIN
                                     : -1;
    if (nd->p.mode < 0 || (nd->p.mode != R_NONE && m->opset < 16) ||
        (nd->p.mode >= R_MAX && m->opset < 18))
        return onnx_unsup(nd, "reduction=", r);
    return 0;
}

/* indices: q-D, last dim k <= r (data's rank); updates: indices.shape[:-1] + data.shape[k:]. */
static int infer_scatternd(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs,
                           onnx_nstate *ns)
{
    (void)m;
    const onnx_vstate *x = VIN(0), *ix = VIN(1), *up = VIN(2);
    if (!ix->ival)
        return onnx_unsup(nd, "indices must be known before the run", NULL);
    if (ix->rank < 1)
        return onnx_shape_err(nd, "indices of rank %lld", ix->rank, 0);
    int64_t kk = ix->dim[ix->rank - 1];
    if (kk < 1 || kk > x->rank)
        return onnx_shape_err(nd, "index tuples of %lld for data of rank %lld", kk, x->rank);
    int ur = ix->rank - 1 + x->rank - (int)kk;
    if (up->rank != ur)
        return onnx_shape_err(nd, "updates of rank %lld, expected %lld", up->rank, ur);
    for (int i = 0; i < ix->rank - 1; i++)
        if (up->dim[i] != ix->dim[i])
            return onnx_shape_err(nd, "updates dim %lld is %lld", i, up->dim[i]);
    for (int i = (int)kk; i < x->rank; i++)
        if (up->dim[ix->rank - 1 + i - kk] != x->dim[i])
            return onnx_shape_err(nd, "updates dim %lld disagrees with data dim %lld",
                                  ix->rank - 1 + i - kk, i);
    int64_t nidx = onnx_numel(ix) / kk;
    for (int64_t t = 0; t < nidx; t++)
        for (int j = 0; j < kk; j++) {
            int64_t v = ix->ival[t * kk + j];
            if (v < -x->dim[j] || v >= x->dim[j])
                return onnx_shape_err(nd, "index %lld out of range for %lld", v, x->dim[j]);
        }
    ns->a[0] = kk;
    return onnx_infer_same(m, nd, vs, ns);
}

static void scatter_move(const onnx_node *nd, const onnx_vstate *x, const onnx_vstate *ix,
                         const onnx_vstate *up, onnx_vstate *o, int64_t kk, int is_int)
{
    size_t esz, osz;
    const char *src = vbytes(x, &esz);
    char *dst = vbytes_out(o, is_int, &osz);
    int64_t n = onnx_numel(o), slice = 1, str[H2T_MAX_RANK], s = 1;
    if (n)
        memcpy(dst, src, (size_t)n * esz);
    for (int i = x->rank - 1; i >= 0; i--) {
        str[i] = s;
        s *= x->dim[i];
    }
    for (int i = (int)kk; i < x->rank; i++)
        slice *= x->dim[i];
    int64_t nidx = onnx_numel(ix) / kk;
    for (int64_t t = 0; t < nidx; t++) {
        int64_t off = 0;
        for (int j = 0; j < kk; j++) {
            int64_t v = ix->ival[t * kk + j];
            off += (v < 0 ? v + x->dim[j] : v) * str[j];
        }
        for (int64_t e = 0; e < slice; e++) {
            int64_t ui = t * slice + e;
            if (is_int) {
                int64_t *d = (int64_t *)dst + off + e, u = up->ival[ui];
                *d = nd->p.mode == R_ADD   ? *d + u
                     : nd->p.mode == R_MUL ? *d * u
                     : nd->p.mode == R_MAX ? (*d > u ? *d : u)
                     : nd->p.mode == R_MIN ? (*d < u ? *d : u)
                                           : u;
            } else {
                float *d = (float *)dst + off + e, u = up->f[ui];
                *d = nd->p.mode == R_ADD   ? *d + u
                     : nd->p.mode == R_MUL ? *d * u
                     : nd->p.mode == R_MAX ? (*d > u ? *d : u)
                     : nd->p.mode == R_MIN ? (*d < u ? *d : u)
                                           : u;
            }
        }
    }
}

static int eval_scatternd(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    scatter_move(nd, VIN(0), VIN(1), VIN(2), VOUT(0), ns->a[0], 1);
    return 0;
}

static int k_scatternd(const onnx_kctx *k, const onnx_node *nd)
{
    scatter_move(nd, IN(0), IN(1), IN(2), OUT(0), k->ns->a[0], 0);
    return 0;
}

/* ---------------------------------------------------------------- table */

const onnx_opdef onnx_ops_tensor[] = {
    {"ConstantOfShape", .min_in = 1, .max_in = 1, .max_out = 1, .param_in = 1u, .dt = ONNX_DTR_CAST,
     .parse = parse_cos, .infer = infer_cos, .eval = eval_cos, .run = k_cos},
    {"Range", .min_in = 3, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_NUM,
     .infer = infer_range, .eval = eval_range, .run = k_range},
    {"Expand", .min_in = 2, .max_in = 2, .max_out = 1, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .infer = infer_expand, .eval = eval_expand, .run = k_expand},
    {"Tile", .min_in = 2, .max_in = 2, .max_out = 1, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .infer = infer_tile, .eval = eval_tile, .run = k_tile, .mixes_batch = tile_mixes_batch},
    {"Split", .min_in = 1, .max_in = 2, .max_out = 4096, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .parse = parse_split, .infer = infer_split, .eval = eval_split, .run = k_split,
     .mixes_batch = split_mixes_batch},
    {"ScatterND", .min_in = 3, .max_in = 3, .max_out = 1, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .parse = parse_scatternd, .infer = infer_scatternd, .eval = eval_scatternd,
     .run = k_scatternd},
};
const int onnx_ops_tensor_n = sizeof onnx_ops_tensor / sizeof onnx_ops_tensor[0];
