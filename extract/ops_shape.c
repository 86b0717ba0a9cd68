/*
 * extract/ops_shape.c - data movement and shape operators: Pad, Concat, Reshape and the other
 * views, Transpose, Shape, Gather, Slice, Cast, with their checks, shape inference, the
 * evaluation of their int64 ("static") values at inference time and their float kernels. The
 * data-movement loops are element-size generic: one loop moves floats at run time and int64
 * values during inference.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "extract/onnx_graph.h"

/* ---------------------------------------------------------------- data movement */

static void move_gather(const void *data, int64_t outer, int64_t axis_n, int64_t inner,
                        const int64_t *idx, int64_t n_idx, void *out, size_t esz)
{
    const char *d = data;
    char *o = out;
    size_t blk = (size_t)inner * esz;
    for (int64_t i = 0; i < outer; i++)
        for (int64_t j = 0; j < n_idx; j++) {
            int64_t ix = idx[j] < 0 ? idx[j] + axis_n : idx[j];
            memcpy(o + ((size_t)(i * n_idx + j)) * blk, d + ((size_t)(i * axis_n + ix)) * blk, blk);
        }
}

static void move_transpose(const void *in, const int64_t *idim, int rank, const int64_t *perm,
                           void *out, size_t esz)
{
    int64_t istr[H2T_MAX_RANK] = {0}, odim[H2T_MAX_RANK] = {0}, ostr_in[H2T_MAX_RANK] = {0};
    int64_t s = 1, n = 1;
    for (int i = rank - 1; i >= 0; i--) {
        istr[i] = s;
        s *= idim[i];
    }
    for (int i = 0; i < rank; i++) {
        odim[i] = idim[perm[i]];
        ostr_in[i] = istr[perm[i]]; /* input stride of output axis i */
        n *= odim[i];
    }
    if (n == 0)
        return;
    const char *src = in;
    char *dst = out;
    int64_t idx[H2T_MAX_RANK] = {0};
    int64_t inner = rank ? odim[rank - 1] : 1, inner_s = rank ? ostr_in[rank - 1] : 1;
    int q = -1; /* the output axis that is contiguous in the input */
    for (int i = 0; i < rank - 1; i++)
        if (ostr_in[i] == 1 && odim[i] > 1)
            q = i;
    if (esz == 4 && inner_s != 1 && q >= 0) {
        /* a 2-D transpose between output axes q and the last per outer index, in 16 x 16
         * tiles: the tile's input lines stay in cache while the output is written in rows */
        int64_t ostr[H2T_MAX_RANK], os = 1, A = odim[q], B = inner;
        for (int i = rank - 1; i >= 0; i--) {
            ostr[i] = os;
            os *= odim[i];
        }
        const float *sf = in;
        float *df = out;
        for (int64_t t = 0; t < n; t += A * B) {
            int64_t ioff = 0, ooff = 0;
            for (int i = 0; i < rank - 1; i++)
                if (i != q) {
                    ioff += idx[i] * ostr_in[i];
                    ooff += idx[i] * ostr[i];
                }
            for (int64_t a0 = 0; a0 < A; a0 += 16)
                for (int64_t b0 = 0; b0 < B; b0 += 16) {
                    int64_t a1 = a0 + 16 < A ? a0 + 16 : A, b1 = b0 + 16 < B ? b0 + 16 : B;
                    for (int64_t a = a0; a < a1; a++)
                        for (int64_t b = b0; b < b1; b++)
                            df[ooff + a * ostr[q] + b] = sf[ioff + a + b * inner_s];
                }
            for (int i = rank - 2; i >= 0; i--) {
                if (i == q)
                    continue;
                if (++idx[i] < odim[i])
                    break;
                idx[i] = 0;
            }
        }
        return;
    }
    for (int64_t t = 0; t < n; t += inner) {
        int64_t off = 0;
        for (int i = 0; i < rank - 1; i++)
            off += idx[i] * ostr_in[i];
        if (esz == 4) {
            const float *sf = (const float *)src + off;
            float *df = (float *)dst + t;
            for (int64_t j = 0; j < inner; j++)
                df[j] = sf[j * inner_s];
        } else {
            for (int64_t j = 0; j < inner; j++)
                memcpy(dst + (size_t)(t + j) * esz, src + (size_t)(off + j * inner_s) * esz, esz);
        }
        for (int i = rank - 2; i >= 0; i--) {
            if (++idx[i] < odim[i])
                break;
            idx[i] = 0;
        }
    }
}

static void move_slice(const void *in, const onnx_vstate *is, const int64_t *start,
                       const int64_t *step, const onnx_vstate *os, void *out, size_t esz)
{
    int r = is->rank;
    int64_t n = onnx_numel(os), istr[H2T_MAX_RANK], s = 1, idx[H2T_MAX_RANK] = {0};
    if (n == 0)
        return;
    if (r == 0) {
        memcpy(out, in, esz);
        return;
    }
    for (int i = r - 1; i >= 0; i--) {
        istr[i] = s;
        s *= is->dim[i];
    }
    const char *src = in;
    char *dst = out;
    /* one row of the last axis at a time: a single copy when its step is 1 */
    int64_t w = os->dim[r - 1], ls = step[r - 1];
    for (int64_t t = 0; t < n; t += w) {
        int64_t off = start[r - 1];
        for (int i = 0; i < r - 1; i++)
            off += (start[i] + idx[i] * step[i]) * istr[i];
        if (ls == 1) {
            memcpy(dst + (size_t)t * esz, src + (size_t)off * esz, (size_t)w * esz);
        } else {
            for (int64_t j = 0; j < w; j++)
                memcpy(dst + (size_t)(t + j) * esz, src + (size_t)(off + j * ls) * esz, esz);
        }
        for (int i = r - 2; i >= 0; i--) {
            if (++idx[i] < os->dim[i])
                break;
            idx[i] = 0;
        }
    }
}

/* ---------------------------------------------------------------- float kernels */

static int k_pad(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *x = IN(0), *o = OUT(0);
    int r = x->rank;
    const int64_t *pb = k->ns->a;
    float val = nd->p.value;
    if (k->m->opset >= 11)
        val = HAS(2) ? IN(2)->f[0] : 0.f;
    int64_t n = onnx_numel(o);
    if (n == 0)
        return 0;
    int64_t istr[H2T_MAX_RANK], s = 1;
    for (int i = r - 1; i >= 0; i--) {
        istr[i] = s;
        s *= x->dim[i];
    }
    int64_t W = r ? o->dim[r - 1] : 1, rows = n / W, idx[H2T_MAX_RANK] = {0};
    int64_t iw = r ? x->dim[r - 1] : 1, pl = r ? pb[r - 1] : 0;
    for (int64_t t = 0; t < rows; t++) {
        float *restrict yp = o->f + t * W;
        int64_t off = 0, outside = 0;
        for (int i = 0; i < r - 1; i++) {
            int64_t si = idx[i] - pb[i], D = x->dim[i];
            if (si < 0 || si >= D) {
                if (nd->p.mode == 0)
                    outside = 1;
                else if (nd->p.mode == 1)
                    si = si < 0 ? -si : 2 * (D - 1) - si;
                else
                    si = si < 0 ? 0 : D - 1;
            }
            off += si * istr[i];
        }
        const float *xp = x->f + off;
        if (nd->p.mode == 0 && pl >= 0 && W - pl - iw >= 0) {
            /* constant mode, non-negative pads on the last axis: fill + one copy */
            if (outside) {
                for (int64_t j = 0; j < W; j++)
                    yp[j] = val;
            } else {
                for (int64_t j = 0; j < pl; j++)
                    yp[j] = val;
                memcpy(yp + pl, xp, (size_t)iw * sizeof(float));
                for (int64_t j = pl + iw; j < W; j++)
                    yp[j] = val;
            }
            goto next;
        }
        for (int64_t j = 0; j < W; j++) {
            int64_t sj = j - pl;
            if (outside) {
                yp[j] = val;
            } else if (sj >= 0 && sj < iw) {
                yp[j] = xp[sj];
            } else if (nd->p.mode == 0) {
                yp[j] = val;
            } else if (nd->p.mode == 1) {
                yp[j] = xp[sj < 0 ? -sj : 2 * (iw - 1) - sj];
            } else {
                yp[j] = xp[sj < 0 ? 0 : iw - 1];
            }
        }
    next:
        for (int i = r - 2; i >= 0; i--) {
            if (++idx[i] < o->dim[i])
                break;
            idx[i] = 0;
        }
    }
    return 0;
}

static int k_concat(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *o = OUT(0);
    int64_t axis = k->ns->a[0], outer = 1, inner = 1, off = 0;
    for (int i = 0; i < axis; i++)
        outer *= o->dim[i];
    for (int i = (int)axis + 1; i < o->rank; i++)
        inner *= o->dim[i];
    for (int j = 0; j < nd->n_in; j++) {
        const onnx_vstate *x = IN(j);
        int64_t blk = x->dim[axis] * inner;
        if (blk)
            for (int64_t i = 0; i < outer; i++)
                memcpy(o->f + i * o->dim[axis] * inner + off, x->f + i * blk,
                       (size_t)blk * sizeof(float));
        off += blk;
    }
    return 0;
}

static int k_transpose(const onnx_kctx *k, const onnx_node *nd)
{
    move_transpose(IN(0)->f, IN(0)->dim, IN(0)->rank, k->ns->a, OUT(0)->f, 4);
    return 0;
}

static int k_gather(const onnx_kctx *k, const onnx_node *nd)
{
    move_gather(IN(0)->f, k->ns->a[0], k->ns->a[1], k->ns->a[2], IN(1)->ival, onnx_numel(IN(1)),
                OUT(0)->f, 4);
    return 0;
}

static int k_slice(const onnx_kctx *k, const onnx_node *nd)
{
    move_slice(IN(0)->f, IN(0), k->ns->a, k->ns->b, OUT(0), OUT(0)->f, 4);
    return 0;
}

/* Cast into float: from static integers / bools, or from float data (copied; into bool: 0/1). */
static int k_cast(const onnx_kctx *k, const onnx_node *nd)
{
    int64_t n = onnx_numel(OUT(0));
    const onnx_vstate *x = IN(0);
    float *y = OUT(0)->f;
    if (x->ival) {
        for (int64_t i = 0; i < n; i++)
            y[i] = (float)x->ival[i];
    } else if (nd->p.to == ONNX_DT_BOOL) {
        for (int64_t i = 0; i < n; i++)
            y[i] = x->f[i] != 0.f;
    } else if (n) {
        memcpy(y, x->f, (size_t)n * sizeof(float));
    }
    return 0;
}

/* ---------------------------------------------------------------- checks and shapes */

static int parse_axis(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.axis = onnx_attr_i(nd, "axis", 0);
    return 0;
}

static int parse_concat(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.axis = onnx_attr_i(nd, "axis", 0);
    if (!onnx_attr_get(nd, "axis"))
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Concat): axis missing", nd->name);
    return 0;
}

static int parse_flatten(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.axis = onnx_attr_i(nd, "axis", 1);
    return 0;
}

/* perm (Transpose) or axes (Squeeze, Unsqueeze) attribute into p->ints. */
static int parse_ints(onnx_node *nd, const char *an)
{
    onnx_params *p = &nd->p;
    p->n_ints = onnx_attr_ints(nd, an, p->ints, 2 * H2T_MAX_RANK);
    if (p->n_ints == -2)
        return onnx_unsup(nd, "too many axes", NULL);
    p->has_ints = p->n_ints >= 0;
    if (p->n_ints < 0)
        p->n_ints = 0;
    return 0;
}

static int parse_transpose(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    return parse_ints(nd, "perm");
}

static int parse_axes(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    return parse_ints(nd, "axes");
}

static int parse_pad(const h2t_model *m, onnx_node *nd)
{
    onnx_params *p = &nd->p;
    const char *mode = onnx_attr_s(nd, "mode", "constant");
    if (!strcmp(mode, "constant"))
        p->mode = 0;
    else if (!strcmp(mode, "reflect"))
        p->mode = 1;
    else if (!strcmp(mode, "edge"))
        p->mode = 2;
    else
        return onnx_unsup(nd, "mode=", mode);
    p->value = onnx_attr_f(nd, "value", 0.f);
    if (m->opset < 11) {
        p->n_ints = onnx_attr_ints(nd, "pads", p->ints, 2 * H2T_MAX_RANK);
        if (p->n_ints < 0)
            p->n_ints = onnx_attr_ints(nd, "paddings", p->ints, 2 * H2T_MAX_RANK);
        if (p->n_ints < 0)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Pad): pads missing", nd->name);
        p->has_ints = 1;
    } else if (nd->n_in < 2 || nd->in[1] < 0) {
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Pad): pads input missing", nd->name);
    }
    if (nd->n_in > 3 && nd->in[3] >= 0 && m->opset < 18)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Pad): an axes input at opset %d", nd->name,
                           m->opset);
    return 0;
}

/* Whether value v is read by a node or is a graph output. */
static int value_used(const h2t_model *m, int v)
{
    for (int i = 0; i < m->n_outputs; i++)
        if (m->outputs[i] == v)
            return 1;
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_in; k++)
            if (m->nodes[i].in[k] == v)
                return 1;
    return 0;
}

static int parse_dropout(const h2t_model *m, onnx_node *nd)
{
    /* a mask output nothing reads (torch exports name it anyway) is dropped from the node */
    if (nd->n_out > 1 && nd->out[1] >= 0 && value_used(m, nd->out[1]))
        return onnx_unsup(nd, "the mask output is not supported", NULL);
    nd->n_out = 1;
    /* training_mode: a constant; true is the identity too when the ratio is a constant 0 */
    if (nd->n_in > 2 && nd->in[2] >= 0) {
        const onnx_value *t = &m->values[nd->in[2]], *r = NULL;
        if (t->kind != ONNX_VAL_CONST || t->count != 1)
            return onnx_unsup(nd, "a training_mode input that is not a constant", NULL);
        if (nd->n_in > 1 && nd->in[1] >= 0)
            r = &m->values[nd->in[1]];
        if (((const int64_t *)t->cdata)[0] &&
            (!r || r->kind != ONNX_VAL_CONST || r->dtype != ONNX_DT_F32 || r->count != 1 ||
             ((const float *)r->cdata)[0] != 0.f))
            return onnx_unsup(nd, "training mode with a ratio other than a constant 0", NULL);
    }
    return 0;
}

static int parse_shape(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.ints[0] = onnx_attr_i(nd, "start", 0);
    nd->p.ints[1] = onnx_attr_i(nd, "end", INT64_MAX);
    return 0;
}

static int parse_cast(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    onnx_params *p = &nd->p;
    p->to = (int)onnx_attr_i(nd, "to", 0);
    if (p->to != ONNX_DT_F32 && !onnx_dt_is_int(p->to)) {
        char b[32];
        snprintf(b, sizeof b, "%d", p->to);
        return onnx_unsup(nd, "target type (supported: float32, int32, int64, bool) ", b);
    }
    return 0;
}

static int parse_reshape(const h2t_model *m, onnx_node *nd)
{
    onnx_params *p = &nd->p;
    p->keepdims = (int)onnx_attr_i(nd, "allowzero", 0); /* keepdims reused: allowzero */
    if (m->opset < 5)
        return onnx_unsup(nd, "the opset < 5 attribute form is not supported", NULL);
    if (nd->n_in < 2 || nd->in[1] < 0)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Reshape): shape input missing", nd->name);
    return 0;
}

static int parse_slice(const h2t_model *m, onnx_node *nd)
{
    if (m->opset < 10)
        return onnx_unsup(nd, "the opset < 10 attribute form is not supported", NULL);
    if (nd->n_in < 3)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Slice): starts/ends missing", nd->name);
    return 0;
}

static int infer_pad(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    int r = x->rank;
    const int64_t *pads = nd->p.ints;
    int64_t np = nd->p.n_ints;
    if (m->opset >= 11) {
        int rc = onnx_param_list(nd, vs, 1, &pads, &np);
        if (rc < 0)
            return rc;
        if (HAS(2) && onnx_numel(VIN(2)) != 1)
            return onnx_shape_err(nd, "constant_value has %lld elements", onnx_numel(VIN(2)), 0);
    }
    int64_t full[2 * H2T_MAX_RANK];
    if (m->opset >= 18 && HAS(3)) {
        /* axes (opset 18): pads holds the begins then the ends of those axes only */
        const int64_t *ax;
        int64_t na;
        int rc = onnx_param_list(nd, vs, 3, &ax, &na);
        if (rc < 0)
            return rc;
        if (np != 2 * na || na > r)
            return onnx_shape_err(nd, "%lld pads for %lld axes", np, na);
        int seen[H2T_MAX_RANK] = {0};
        memset(full, 0, sizeof full);
        for (int i = 0; i < na; i++) {
            int64_t a;
            if (onnx_norm_axis(ax[i], r, &a) < 0 || seen[a])
                return onnx_shape_err(nd, "bad axis %lld for rank %lld", ax[i], r);
            seen[a] = 1;
            full[a] = pads[i];
            full[a + r] = pads[i + na];
        }
        pads = full;
        np = 2 * r;
    }
    if (np != 2 * r)
        return onnx_shape_err(nd, "%lld pads for rank %lld", np, r);
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < r; i++) {
        /* within the element cap, so that the sum cannot overflow */
        if (pads[i] < -H2T_ONNX_MAX_ELEMS || pads[i] > H2T_ONNX_MAX_ELEMS ||
            pads[i + r] < -H2T_ONNX_MAX_ELEMS || pads[i + r] > H2T_ONNX_MAX_ELEMS)
            return onnx_shape_err(nd, "pad %lld on a dimension of %lld",
                                  pads[i] < -H2T_ONNX_MAX_ELEMS || pads[i] > H2T_ONNX_MAX_ELEMS
                                      ? pads[i]
                                      : pads[i + r],
                                  x->dim[i]);
        ns->a[i] = pads[i];
        ns->b[i] = pads[i + r];
        d[i] = x->dim[i] + pads[i] + pads[i + r];
        if (d[i] < 0 || (nd->p.mode == 1 && (pads[i] >= x->dim[i] || pads[i + r] >= x->dim[i]) &&
                         (pads[i] || pads[i + r])))
            return onnx_shape_err(nd, "pad %lld on a dimension of %lld", pads[i], x->dim[i]);
        if (nd->p.mode && (pads[i] < 0 || pads[i + r] < 0))
            return h2t_err_set(H2T_EUNSUPPORTED, "operator Pad (node '%s'): negative pads",
                               nd->name);
        if (nd->p.mode == 2 && x->dim[i] == 0 && (pads[i] || pads[i + r]))
            return onnx_shape_err(nd, "edge pad of an empty dimension %lld", i, 0);
    }
    onnx_set_shape(VOUT(0), r, d);
    return 0;
}

static int infer_reshape(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const onnx_vstate *x = VIN(0);
    const int64_t *s;
    int64_t n;
    int rc = onnx_param_list(nd, vs, 1, &s, &n);
    if (rc < 0)
        return rc;
    if (n > H2T_MAX_RANK)
        return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (Reshape): rank %lld", nd->name,
                           (long long)n);
    int64_t d[H2T_MAX_RANK], known = 1, total = onnx_numel(x);
    int neg = -1;
    for (int i = 0; i < n; i++) {
        d[i] = s[i];
        if (s[i] == 0 && !nd->p.keepdims) {
            if (i >= x->rank)
                return onnx_shape_err(nd, "0 at position %lld beyond input rank %lld", i, x->rank);
            d[i] = x->dim[i];
        }
        if (d[i] == -1) {
            if (neg >= 0)
                return onnx_shape_err(nd, "two -1 in the target shape", 0, 0);
            neg = i;
        } else if (d[i] < 0) {
            return onnx_shape_err(nd, "bad target dimension %lld", d[i], 0);
        } else if (__builtin_mul_overflow(known, d[i], &known) || known > H2T_ONNX_MAX_ELEMS) {
            return onnx_shape_err(nd, "target shape of more than %lld elements (dimension %lld)",
                                  H2T_ONNX_MAX_ELEMS, i);
        }
    }
    if (neg >= 0) {
        if (known == 0 || total % known)
            return onnx_shape_err(nd, "cannot reshape %lld elements with known product %lld", total,
                                  known);
        d[neg] = total / known;
    } else if (known != total) {
        return onnx_shape_err(nd, "cannot reshape %lld elements into %lld", total, known);
    }
    onnx_set_shape(VOUT(0), (int)n, d);
    return 0;
}

static int squeeze_shape(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, int unsq)
{
    const onnx_vstate *x = VIN(0);
    const int64_t *axes = nd->p.ints;
    int64_t na = nd->p.has_ints ? nd->p.n_ints : -1;
    if (m->opset >= 13 && HAS(1)) {
        int rc = onnx_param_list(nd, vs, 1, &axes, &na);
        if (rc < 0)
            return rc;
    } else if (m->opset >= 13) {
        na = -1;
    }
    int64_t d[H2T_MAX_RANK];
    int r = 0;
    if (unsq) {
        if (na < 0)
            return onnx_shape_err(nd, "axes missing", 0, 0);
        int orank = x->rank + (int)na;
        if (orank > H2T_MAX_RANK)
            return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (Unsqueeze): rank %d", nd->name, orank);
        int mark[H2T_MAX_RANK] = {0};
        for (int i = 0; i < na; i++) {
            int64_t a;
            if (onnx_norm_axis(axes[i], orank, &a) < 0 || mark[a])
                return onnx_shape_err(nd, "bad axis %lld", axes[i], 0);
            mark[a] = 1;
        }
        for (int i = 0, j = 0; i < orank; i++)
            d[i] = mark[i] ? 1 : x->dim[j++];
        r = orank;
    } else {
        int mark[H2T_MAX_RANK] = {0};
        for (int i = 0; i < na; i++) {
            int64_t a;
            if (onnx_norm_axis(axes[i], x->rank, &a) < 0 || x->dim[a] != 1)
                return onnx_shape_err(nd, "cannot squeeze axis %lld", axes[i], 0);
            mark[a] = 1;
        }
        for (int i = 0; i < x->rank; i++)
            if (!(na < 0 ? x->dim[i] == 1 : mark[i]))
                d[r++] = x->dim[i];
    }
    onnx_set_shape(VOUT(0), r, d);
    return 0;
}

static int infer_slice(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    const onnx_vstate *x = VIN(0);
    const int64_t *st, *en, *ax = NULL, *sp = NULL;
    int64_t nst, nen, nax = -1, nsp = -1;
    int rc = onnx_param_list(nd, vs, 1, &st, &nst);
    if (rc == 0)
        rc = onnx_param_list(nd, vs, 2, &en, &nen);
    if (rc < 0)
        return rc;
    if (HAS(3) && (rc = onnx_param_list(nd, vs, 3, &ax, &nax)) < 0)
        return rc;
    if (HAS(4) && (rc = onnx_param_list(nd, vs, 4, &sp, &nsp)) < 0)
        return rc;
    if (nst != nen || (ax && nax != nst) || (sp && nsp != nst) || nst > x->rank)
        return onnx_shape_err(nd, "starts/ends/axes/steps lengths disagree (%lld, %lld)", nst, nen);
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        ns->a[i] = 0;
        ns->b[i] = 1;
        d[i] = x->dim[i];
    }
    int seen[H2T_MAX_RANK] = {0};
    for (int i = 0; i < nst; i++) {
        int64_t a = ax ? ax[i] : i, step = sp ? sp[i] : 1;
        if (onnx_norm_axis(a, x->rank, &a) < 0 || seen[a])
            return onnx_shape_err(nd, "bad axis %lld", ax ? ax[i] : i, 0);
        seen[a] = 1;
        if (step == 0)
            return onnx_shape_err(nd, "step 0 on axis %lld", a, 0);
        int64_t D = x->dim[a], s = st[i], e = en[i];
        if (s < 0)
            s += D;
        if (e < 0)
            e += D;
        int64_t cnt;
        if (step > 0) {
            s = s < 0 ? 0 : s > D ? D : s;
            e = e < 0 ? 0 : e > D ? D : e;
            cnt = e > s ? (e - s + step - 1) / step : 0;
        } else {
            s = s < 0 ? -1 : s > D - 1 ? D - 1 : s;
            e = e < -1 ? -1 : e > D - 1 ? D - 1 : e;
            cnt = s > e ? (s - e + (-step) - 1) / (-step) : 0;
        }
        ns->a[a] = s;
        ns->b[a] = step;
        d[a] = cnt;
    }
    onnx_set_shape(VOUT(0), x->rank, d);
    return 0;
}

static int infer_squeeze(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)ns;
    return squeeze_shape(m, nd, vs, 0);
}

static int infer_unsqueeze(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs,
                           onnx_nstate *ns)
{
    (void)ns;
    return squeeze_shape(m, nd, vs, 1);
}

static int infer_concat(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    const onnx_vstate *x = VIN(0);
    int64_t axis;
    if (onnx_norm_axis(nd->p.axis, x->rank, &axis) < 0)
        return onnx_shape_err(nd, "axis %lld for rank %lld", nd->p.axis, x->rank);
    int64_t d[H2T_MAX_RANK];
    memcpy(d, x->dim, sizeof d);
    for (int j = 1; j < nd->n_in; j++) {
        const onnx_vstate *y = VIN(j);
        if (!HAS(j) || y->rank != x->rank)
            return onnx_shape_err(nd, "input %lld has rank %lld", j, y->rank);
        for (int i = 0; i < x->rank; i++)
            if (i != axis && y->dim[i] != x->dim[i])
                return onnx_shape_err(nd, "input %lld differs on axis %lld", j, i);
        d[axis] += y->dim[axis];
    }
    onnx_set_shape(VOUT(0), x->rank, d);
    ns->a[0] = axis;
    return 0;
}

static int infer_flatten(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const onnx_vstate *x = VIN(0);
    int64_t axis = nd->p.axis < 0 ? nd->p.axis + x->rank : nd->p.axis;
    if (axis < 0 || axis > x->rank)
        return onnx_shape_err(nd, "axis %lld for rank %lld", nd->p.axis, x->rank);
    int64_t d[2] = {1, 1};
    for (int i = 0; i < x->rank; i++)
        d[i >= axis] *= x->dim[i];
    onnx_set_shape(VOUT(0), 2, d);
    return 0;
}

static int infer_transpose(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs,
                           onnx_nstate *ns)
{
    (void)m;
    const onnx_params *p = &nd->p;
    const onnx_vstate *x = VIN(0);
    int64_t d[H2T_MAX_RANK];
    int mark[H2T_MAX_RANK] = {0};
    if (p->has_ints && p->n_ints != x->rank)
        return onnx_shape_err(nd, "perm of %lld for rank %lld", p->n_ints, x->rank);
    for (int i = 0; i < x->rank; i++) {
        int64_t a = p->has_ints ? p->ints[i] : x->rank - 1 - i;
        if (a < 0 || a >= x->rank || mark[a])
            return onnx_shape_err(nd, "bad perm entry %lld", a, 0);
        mark[a] = 1;
        ns->a[i] = a;
        d[i] = x->dim[a];
    }
    onnx_set_shape(VOUT(0), x->rank, d);
    return 0;
}

static int transpose_mixes_batch(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return ns->a[0] != 0;
}

static int infer_shape(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    int64_t s = nd->p.ints[0], e = nd->p.ints[1], r = VIN(0)->rank;
    s = s < 0 ? s + r : s;
    e = e < 0 ? e + r : e;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    int64_t d[1] = {e > s ? e - s : 0};
    ns->a[0] = s;
    onnx_set_shape(VOUT(0), 1, d);
    return 0;
}

static int infer_gather(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    int64_t axis;
    const onnx_vstate *x = VIN(0), *ix = VIN(1);
    if (onnx_norm_axis(nd->p.axis, x->rank, &axis) < 0)
        return onnx_shape_err(nd, "axis %lld for rank %lld", nd->p.axis, x->rank);
    if (!ix->ival)
        return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (Gather): indices not known before run",
                           nd->name);
    int64_t nidx = onnx_numel(ix);
    int orank = x->rank - 1 + ix->rank;
    if (orank > H2T_MAX_RANK)
        return onnx_shape_err(nd, "output rank %lld", orank, 0);
    int64_t d[H2T_MAX_RANK], outer = 1, inner = 1;
    int r = 0;
    for (int i = 0; i < axis; i++)
        d[r++] = x->dim[i], outer *= x->dim[i];
    for (int i = 0; i < ix->rank; i++)
        d[r++] = ix->dim[i];
    for (int i = (int)axis + 1; i < x->rank; i++)
        d[r++] = x->dim[i], inner *= x->dim[i];
    for (int64_t i = 0; i < nidx; i++)
        if (ix->ival[i] < -x->dim[axis] || ix->ival[i] >= x->dim[axis])
            return onnx_shape_err(nd, "index %lld out of range for %lld", ix->ival[i],
                                  x->dim[axis]);
    onnx_set_shape(VOUT(0), orank, d);
    ns->a[0] = outer, ns->a[1] = x->dim[axis], ns->a[2] = inner, ns->a[3] = axis;
    return 0;
}

/* Gathering along the batch axis picks samples; slicing it with a start or a step other than
 * the whole batch forward moves them (the shapes alone may not show it: a reversed batch). */
static int gather_mixes_batch(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return ns->a[3] == 0;
}

static int slice_mixes_batch(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return ns->a[0] != 0 || ns->b[0] != 1;
}

/* ---------------------------------------------------------------- static evaluation */

/* Cast into int32 / int64 / bool (fold_node wraps int32 and makes bools 0/1): floats truncate
 * toward zero; NaN and floats beyond int64 give INT64_MIN (x86's conversion result). */
static int eval_cast(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    const onnx_vstate *x = VIN(0);
    int64_t *y = VOUT(0)->ival;
    for (int64_t i = 0, n = onnx_numel(VOUT(0)); i < n; i++) {
        if (x->ival) {
            y[i] = x->ival[i];
        } else {
            float f = x->f[i];
            if (nd->p.to == ONNX_DT_BOOL)
                y[i] = f != 0.f;
            else
                y[i] = f > -9.2e18f && f < 9.2e18f ? (int64_t)f : INT64_MIN;
        }
    }
    return 0;
}

static int eval_shape(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    onnx_vstate *o = VOUT(0);
    for (int64_t i = 0, n = onnx_numel(o); i < n; i++)
        o->ival[i] = VIN(0)->dim[ns->a[0] + i];
    return 0;
}

static int eval_copy(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    int64_t n = onnx_numel(VOUT(0));
    if (n)
        memcpy(VOUT(0)->ival, VIN(0)->ival, (size_t)n * 8);
    return 0;
}

static int eval_concat(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    onnx_vstate *o = VOUT(0);
    int64_t axis = ns->a[0], outer = 1, inner = 1, off = 0;
    for (int i = 0; i < axis; i++)
        outer *= o->dim[i];
    for (int i = (int)axis + 1; i < o->rank; i++)
        inner *= o->dim[i];
    for (int j = 0; j < nd->n_in; j++) {
        const onnx_vstate *x = VIN(j);
        int64_t blk = x->dim[axis] * inner;
        for (int64_t i = 0; i < outer; i++)
            memcpy(o->ival + i * o->dim[axis] * inner + off, x->ival + i * blk, (size_t)blk * 8);
        off += blk;
    }
    return 0;
}

static int eval_gather(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    move_gather(VIN(0)->ival, ns->a[0], ns->a[1], ns->a[2], VIN(1)->ival, onnx_numel(VIN(1)),
                VOUT(0)->ival, 8);
    return 0;
}

static int eval_slice(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    move_slice(VIN(0)->ival, VIN(0), ns->a, ns->b, VOUT(0), VOUT(0)->ival, 8);
    return 0;
}

static int eval_transpose(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    move_transpose(VIN(0)->ival, VIN(0)->dim, VIN(0)->rank, ns->a, VOUT(0)->ival, 8);
    return 0;
}

/* ---------------------------------------------------------------- table */

const onnx_opdef onnx_ops_shape[] = {
    {"Constant", .max_out = 1, .flags = ONNX_OPF_CONST},
    {"Pad", .min_in = 1, .max_in = 4, .max_out = 1, .param_in = 1u << 1 | 1u << 3,
     .dt = ONNX_DTR_FLOAT, .parse = parse_pad, .infer = infer_pad, .run = k_pad},
    {"Concat", .min_in = 1, .max_in = 64, .max_out = 1, .dt = ONNX_DTR_SAME, .parse = parse_concat,
     .infer = infer_concat, .eval = eval_concat, .run = k_concat},
    {"Flatten", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_SAME, .flags = ONNX_OPF_VIEW,
     .parse = parse_flatten, .infer = infer_flatten, .eval = eval_copy},
    {"Reshape", .min_in = 1, .max_in = 2, .max_out = 1, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .flags = ONNX_OPF_VIEW, .parse = parse_reshape, .infer = infer_reshape, .eval = eval_copy},
    {"Identity", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_SAME,
     .flags = ONNX_OPF_VIEW, .infer = onnx_infer_same, .eval = eval_copy},
    {"Dropout", .min_in = 1, .max_in = 3, .max_out = 2, .bool_in = 1u << 2, .dt = ONNX_DTR_FLOAT,
     .flags = ONNX_OPF_VIEW, .parse = parse_dropout, .infer = onnx_infer_same},
    {"Transpose", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_SAME,
     .parse = parse_transpose, .infer = infer_transpose, .eval = eval_transpose, .run = k_transpose,
     .mixes_batch = transpose_mixes_batch},
    {"Shape", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_SHAPE,
     .flags = ONNX_OPF_READS_SHAPE, .parse = parse_shape, .infer = infer_shape, .eval = eval_shape},
    {"Gather", .min_in = 2, .max_in = 2, .max_out = 1, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .parse = parse_axis, .infer = infer_gather, .eval = eval_gather, .run = k_gather,
     .mixes_batch = gather_mixes_batch},
    {"Unsqueeze", .min_in = 1, .max_in = 2, .max_out = 1, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .flags = ONNX_OPF_VIEW, .parse = parse_axes, .infer = infer_unsqueeze, .eval = eval_copy},
    {"Squeeze", .min_in = 1, .max_in = 2, .max_out = 1, .param_in = 1u << 1, .dt = ONNX_DTR_SAME,
     .flags = ONNX_OPF_VIEW, .parse = parse_axes, .infer = infer_squeeze, .eval = eval_copy},
    {"Cast", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_CAST, .parse = parse_cast,
     .infer = onnx_infer_same, .eval = eval_cast, .run = k_cast},
    {"Slice", .min_in = 1, .max_in = 5, .max_out = 1, .param_in = 0x1eu, .dt = ONNX_DTR_SAME,
     .parse = parse_slice, .infer = infer_slice, .eval = eval_slice, .run = k_slice,
     .mixes_batch = slice_mixes_batch},
};
const int onnx_ops_shape_n = sizeof onnx_ops_shape / sizeof onnx_ops_shape[0];
