/*
 * extract/ops_nn.c - the numeric operators of real-world exports and transformers: their
 * checks, shape inference and table fragment (onnx_ops_nn); the kernels are nn.h's.
 *
 *  - LayerNormalization (opset 17): axis, epsilon, scale and bias of the normalised shape or
 *    broadcasting to it; the optional Mean and InvStdDev outputs are computed (X's leading
 *    dims, 1 from axis on). stash_type is accepted whatever its
 *    value: statistics always accumulate in double.
 *  - Gelu (opset 20): approximate "none" or "tanh".
 *  - InstanceNormalization; GroupNormalization: num_groups, scale and bias of num_groups
 *    values (one per group) before opset 21, of C values (one per channel) from 21.
 *  - ReduceSum / Mean / Max / Min / Prod / L1 / L2 / SumSquare / LogSum / LogSumExp: axes as
 *    an attribute before opset 18 (ReduceSum: before 13) and as an int64 input after; keepdims;
 *    noop_with_empty_axes (no axes: the input unchanged). Integer data known before the run
 *    (shape arithmetic) for Sum, Mean, Max, Min, Prod, L1 and SumSquare, in int64.
 *  - Einsum: one or two operands as batched products (einsum.c), other forms refused naming the
 *    equation.
 *  - Resize (opset 10 and 11+) and Upsample (7, 9): nearest and linear (and cubic from opset
 *    11: cubic_coeff_a, exclude_outside) over the last two axes, the leading axes unscaled; the
 * coordinate transformation modes half_pixel, pytorch_half_pixel, align_corners, asymmetric,
 * tf_half_pixel_for_nn and the nearest modes round_prefer_floor / ceil, floor, ceil. Opset 10 and
 * Upsample use asymmetric coordinates with the "simple" rounding of those opsets (floor, ceil when
 * downsampling). Scales must be constants (or sizes known before run).
 *  - ConvTranspose: 1-D and 2-D, groups, strides, pads, dilations, auto_pad, output_padding,
 *    output_shape.
 *  - Size: the element count, an int64 scalar known before run (like Shape).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "extract/nn.h"
#include "extract/onnx_graph.h"

/* ---------------------------------------------------------------- LayerNormalization */

static int parse_layernorm(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.axis = onnx_attr_i(nd, "axis", -1);
    nd->p.eps = onnx_attr_f(nd, "epsilon", 1e-5f);
    return 0;
}

/* rows x cols around axis ns->a[0]. */
static void ln_geo(const onnx_vstate *x, int64_t axis, int64_t *rows, int64_t *cols)
{
    *rows = *cols = 1;
    for (int i = 0; i < x->rank; i++)
        *(i < axis ? rows : cols) *= x->dim[i];
}

/* Whether p (scale or bias) broadcasts to x's axes from axis on (right-aligned). */
static int ln_broadcasts(const onnx_vstate *p, const onnx_vstate *x, int64_t axis)
{
    if (p->rank > x->rank - axis)
        return 0;
    for (int i = 0; i < p->rank; i++) {
        int64_t d = p->dim[p->rank - 1 - i], xd = x->dim[x->rank - 1 - i];
        if (d != 1 && d != xd)
            return 0;
    }
    return 1;
}

static int infer_layernorm(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs,
                           onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    if (onnx_norm_axis(nd->p.axis, x->rank, &ns->a[0]) < 0)
        return onnx_shape_err(nd, "axis %lld for rank %lld", nd->p.axis, x->rank);
    int64_t rows, cols;
    ln_geo(x, ns->a[0], &rows, &cols);
    for (int k = 1; k < 3; k++)
        if (HAS(k) && !ln_broadcasts(VIN(k), x, ns->a[0]))
            return onnx_shape_err(nd,
                                  "scale or bias of %lld values does not broadcast to the %lld "
                                  "normalised",
                                  onnx_numel(VIN(k)), cols);
    onnx_infer_same(m, nd, vs, ns);
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        d[i] = i < ns->a[0] ? x->dim[i] : 1;
    for (int k = 1; k < nd->n_out; k++)
        if (nd->out[k] >= 0)
            onnx_set_shape(VOUT(k), x->rank, d);
    return 0;
}

/* Scale and bias broadcast to the normalised shape go to scratch (cols floats each). */
static size_t scratch_layernorm(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns)
{
    int64_t rows, cols;
    ln_geo(VIN(0), ns->a[0], &rows, &cols);
    return (size_t)(2 * cols);
}

/* p broadcast over x's axes from axis on into out (cols floats), or p itself when it has them
 * all. */
static const float *ln_param(const onnx_vstate *p, const onnx_vstate *x, int64_t axis, int64_t cols,
                             float *out)
{
    if (onnx_numel(p) == cols)
        return p->f;
    int r = x->rank - (int)axis;
    int64_t idx[H2T_MAX_RANK] = {0};
    for (int64_t t = 0; t < cols; t++) {
        int64_t off = 0, mul = 1;
        for (int i = 0; i < p->rank; i++) {
            int64_t d = p->dim[p->rank - 1 - i];
            off += (d == 1 ? 0 : idx[r - 1 - i]) * mul;
            mul *= d;
        }
        out[t] = p->f[off];
        for (int i = r - 1; i >= 0; i--) {
            if (++idx[i] < x->dim[axis + i])
                break;
            idx[i] = 0;
        }
    }
    return out;
}

static int k_layernorm(const onnx_kctx *k, const onnx_node *nd)
{
    int64_t rows, cols, axis = k->ns->a[0];
    ln_geo(IN(0), axis, &rows, &cols);
    float *mean = nd->n_out > 1 && nd->out[1] >= 0 ? OUT(1)->f : NULL;
    float *inv = nd->n_out > 2 && nd->out[2] >= 0 ? OUT(2)->f : NULL;
    const float *sc = ln_param(IN(1), IN(0), axis, cols, k->scratch);
    const float *bi = HAS(2) ? ln_param(IN(2), IN(0), axis, cols, k->scratch + cols) : NULL;
    h2t_nn_layernorm(k->threads, IN(0)->f, rows, cols, sc, bi, nd->p.eps, OUT(0)->f, mean, inv);
    return 0;
}

static int axis0_mixes(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return ns->a[0] == 0;
}

/* ---------------------------------------------------------------- Gelu */

static int parse_gelu(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    const char *a = onnx_attr_s(nd, "approximate", "none");
    if (strcmp(a, "none") && strcmp(a, "tanh"))
        return onnx_unsup(nd, "approximate=", a);
    nd->p.mode = !strcmp(a, "tanh");
    return 0;
}

static int k_gelu(const onnx_kctx *k, const onnx_node *nd)
{
    h2t_nn_gelu(k->threads, IN(0)->f, onnx_numel(OUT(0)), nd->p.mode, OUT(0)->f);
    return 0;
}

/* ---------------------------------------------------------------- Instance / GroupNormalization */

enum { N_INSTANCE, N_GROUP };

static int parse_norm(const h2t_model *m, onnx_node *nd)
{
    nd->p.eps = onnx_attr_f(nd, "epsilon", 1e-5f);
    if (nd->def->sub == N_GROUP) {
        const onnx_attr *g = onnx_attr_get(nd, "num_groups");
        if (!g || g->type != ONNX_AT_I || g->i < 1)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (GroupNormalization): num_groups missing",
                               nd->name);
        nd->p.group = g->i;
        nd->p.mode = m->opset < 21; /* scale and bias per group */
    }
    return 0;
}

static int infer_norm(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    if (x->rank < 2)
        return onnx_shape_err(nd, "input rank %lld", x->rank, 0);
    int64_t C = x->dim[1], G = nd->def->sub == N_GROUP ? nd->p.group : C;
    if (G < 1 || C % G)
        return onnx_shape_err(nd, "%lld channels in %lld groups", C, G);
    int64_t want = nd->def->sub == N_GROUP && nd->p.mode ? G : C;
    for (int k = 1; k < 3; k++)
        if (onnx_numel(VIN(k)) != want)
            return onnx_shape_err(nd, "scale or bias of %lld values, expected %lld",
                                  onnx_numel(VIN(k)), want);
    return onnx_infer_same(m, nd, vs, ns);
}

static int k_norm(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *x = IN(0);
    int64_t S = 1, C = x->dim[1];
    for (int i = 2; i < x->rank; i++)
        S *= x->dim[i];
    int grp = nd->def->sub == N_GROUP;
    h2t_nn_groupnorm(k->threads, x->f, x->dim[0], C, S, grp ? nd->p.group : C, IN(1)->f, IN(2)->f,
                     grp && nd->p.mode, nd->p.eps, OUT(0)->f);
    return 0;
}

/* ---------------------------------------------------------------- reductions */

/* Whether the axes come as input 1 at this opset. */
static int reduce_axes_input(const h2t_model *m, const onnx_node *nd)
{
    return m->opset >= 18 || (nd->def->sub == H2T_NN_RSUM && m->opset >= 13);
}

static int parse_reduce(const h2t_model *m, onnx_node *nd)
{
    onnx_params *p = &nd->p;
    p->keepdims = (int)onnx_attr_i(nd, "keepdims", 1);
    p->mode = (int)onnx_attr_i(nd, "noop_with_empty_axes", 0);
    p->n_ints = 0;
    p->has_ints = 0;
    if (reduce_axes_input(m, nd)) {
        if (onnx_attr_get(nd, "axes"))
            return h2t_err_set(H2T_ECORRUPT,
                               "node '%s' (%s): axes is an input at opset %d, not an attribute",
                               nd->name, nd->op, m->opset);
        return 0;
    }
    if (nd->n_in > 1)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): axes input before opset %d", nd->name,
                           nd->op, nd->def->sub == H2T_NN_RSUM ? 13 : 18);
    p->n_ints = onnx_attr_ints(nd, "axes", p->ints, 2 * H2T_MAX_RANK);
    if (p->n_ints == -2)
        return onnx_unsup(nd, "too many axes", NULL);
    p->has_ints = p->n_ints > 0;
    if (p->n_ints < 0)
        p->n_ints = 0;
    return 0;
}

/* ns->a[i]: axis i reduced; ns->b[0]: no-op (the input unchanged). */
static int infer_reduce(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_params *p = &nd->p;
    const onnx_vstate *x = VIN(0);
    const int64_t *axes = p->ints;
    int64_t na = p->n_ints;
    if (reduce_axes_input(m, nd) && HAS(1)) {
        int rc = onnx_param_list(nd, vs, 1, &axes, &na);
        if (rc < 0)
            return rc;
    }
    ns->b[0] = na == 0 && p->mode;
    int mark[H2T_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
        int64_t a;
        if (onnx_norm_axis(axes[i], x->rank, &a) < 0)
            return onnx_shape_err(nd, "axis %lld for rank %lld", axes[i], x->rank);
        mark[a] = 1;
    }
    int64_t d[H2T_MAX_RANK];
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        int red = !ns->b[0] && (na == 0 || mark[i]);
        ns->a[i] = red;
        if (!red)
            d[r++] = x->dim[i];
        else if (p->keepdims)
            d[r++] = 1;
    }
    onnx_set_shape(VOUT(0), r, d);
    return 0;
}

static int k_reduce(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *x = IN(0);
    if (k->ns->b[0]) {
        int64_t n = onnx_numel(x);
        if (n)
            memcpy(OUT(0)->f, x->f, (size_t)n * sizeof(float));
        return 0;
    }
    int red[H2T_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        red[i] = (int)k->ns->a[i];
    h2t_nn_reduce(k->threads, nd->def->sub, x->f, x->rank, x->dim, red, OUT(0)->f);
    return 0;
}

/* Integer reductions of values known before the run (shape arithmetic: ReduceProd of a Shape,
 * ...), in int64 over every element in order; Mean truncates like C's division. */
static int eval_reduce(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    onnx_vstate *o = VOUT(0);
    int op = nd->def->sub;
    int64_t on = onnx_numel(o), n = onnx_numel(x);
    if (ns->b[0]) {
        if (n)
            memcpy(o->ival, x->ival, (size_t)n * sizeof(int64_t));
        return 0;
    }
    if (op != H2T_NN_RSUM && op != H2T_NN_RMEAN && op != H2T_NN_RMAX && op != H2T_NN_RMIN &&
        op != H2T_NN_RPROD && op != H2T_NN_RL1 && op != H2T_NN_RSUMSQ)
        return onnx_unsup(nd, "integer data is not supported by this reduction", NULL);
    int64_t cnt = on ? n / on : 0;
    for (int64_t i = 0; i < on; i++)
        o->ival[i] = op == H2T_NN_RPROD  ? 1
                     : op == H2T_NN_RMAX ? INT64_MIN
                     : op == H2T_NN_RMIN ? INT64_MAX
                                         : 0;
    for (int64_t t = 0; t < n; t++) {
        int64_t r = t, oi = 0, mul = 1, v = x->ival[t];
        for (int i = x->rank - 1; i >= 0; i--) {
            int64_t idx = r % x->dim[i];
            r /= x->dim[i];
            if (!ns->a[i]) {
                oi += idx * mul;
                mul *= x->dim[i];
            }
        }
        int64_t *a = &o->ival[oi];
        switch (op) {
        case H2T_NN_RMAX:
            *a = v > *a ? v : *a;
            break;
        case H2T_NN_RMIN:
            *a = v < *a ? v : *a;
            break;
        case H2T_NN_RPROD:
            *a *= v;
            break;
        case H2T_NN_RL1:
            *a += v < 0 ? -v : v;
            break;
        case H2T_NN_RSUMSQ:
            *a += v * v;
            break;
        default:
            *a += v;
        }
    }
    if (op == H2T_NN_RMEAN)
        for (int64_t i = 0; i < on; i++)
            o->ival[i] = cnt ? o->ival[i] / cnt : 0;
    return 0;
}

static int reduce_mixes(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return !ns->b[0] && ns->a[0];
}

/* ---------------------------------------------------------------- Einsum */

static const char *einsum_eq(const onnx_node *nd)
{
    return onnx_attr_s(nd, "equation", NULL);
}

static int parse_einsum(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    const char *eq = einsum_eq(nd);
    if (!eq)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Einsum): equation missing", nd->name);
    int rc = h2t_nn_einsum_check(eq, nd->n_in);
    return rc < 0 ? h2t_err_wrap(rc, "operator Einsum (node '%s')", nd->name) : 0;
}

static int einsum_plan(const onnx_node *nd, const onnx_vstate *vs, h2t_nn_einsum *p)
{
    int rank[2] = {0, 0};
    const int64_t *dims[2] = {NULL, NULL};
    for (int j = 0; j < nd->n_in; j++) {
        rank[j] = vs[nd->in[j]].rank;
        dims[j] = vs[nd->in[j]].dim;
    }
    int rc = h2t_nn_einsum_plan(einsum_eq(nd), nd->n_in, rank, dims, p);
    return rc < 0 ? h2t_err_wrap(rc, "operator Einsum (node '%s')", nd->name) : 0;
}

static int infer_einsum(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    h2t_nn_einsum p;
    int rc = einsum_plan(nd, vs, &p);
    if (rc < 0)
        return rc;
    onnx_set_shape(VOUT(0), p.out_rank, p.out_dim);
    ns->a[0] = !p.keeps_axis0;
    return 0;
}

static size_t scratch_einsum(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    h2t_nn_einsum p;
    return einsum_plan(nd, vs, &p) < 0 ? 0 : h2t_nn_einsum_scratch(&p);
}

static int k_einsum(const onnx_kctx *k, const onnx_node *nd)
{
    h2t_nn_einsum p;
    int rc = einsum_plan(nd, k->vs, &p);
    if (rc < 0)
        return rc;
    h2t_nn_einsum_run(k->threads, &p, IN(0)->f, nd->n_in > 1 ? IN(1)->f : NULL, OUT(0)->f,
                      k->scratch);
    return 0;
}

static int einsum_mixes(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return (int)ns->a[0];
}

/* ---------------------------------------------------------------- Resize / Upsample */

enum { R_RESIZE, R_UPSAMPLE };

static int parse_resize(const h2t_model *m, onnx_node *nd)
{
    onnx_params *p = &nd->p;
    const char *mode = onnx_attr_s(nd, "mode", "nearest");
    if (!strcmp(mode, "nearest"))
        p->mode = 0;
    else if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear"))
        p->mode = 1;
    else if (!strcmp(mode, "cubic") && nd->def->sub == R_RESIZE && m->opset >= 11)
        p->mode = 2;
    else
        return onnx_unsup(nd, "mode=", mode);
    p->alpha = onnx_attr_f(nd, "cubic_coeff_a", -0.75f);
    p->ints[0] = H2T_NN_RC_ASYMMETRIC;
    p->ints[1] = H2T_NN_RN_SIMPLE;
    if (nd->def->sub == R_UPSAMPLE) {
        if (m->opset < 9 && !onnx_attr_get(nd, "scales"))
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Upsample): scales missing", nd->name);
        if (m->opset >= 9 && (nd->n_in < 2 || nd->in[1] < 0))
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Upsample): scales input missing",
                               nd->name);
        return 0;
    }
    if (m->opset < 11) {
        if (nd->n_in != 2)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Resize): %d inputs at opset %d", nd->name,
                               nd->n_in, m->opset);
        return 0;
    }
    static const char *coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                   "asymmetric", "tf_half_pixel_for_nn"};
    static const char *nears[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    const char *c = onnx_attr_s(nd, "coordinate_transformation_mode", "half_pixel");
    const char *n = onnx_attr_s(nd, "nearest_mode", "round_prefer_floor");
    p->ints[0] = p->ints[1] = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(c, coords[i]))
            p->ints[0] = i;
    for (int i = 0; i < 4; i++)
        if (!strcmp(n, nears[i]))
            p->ints[1] = i;
    if (p->ints[0] < 0)
        return onnx_unsup(nd, "coordinate_transformation_mode=", c);
    if (p->ints[1] < 0)
        return onnx_unsup(nd, "nearest_mode=", n);
    p->keepdims = (int)onnx_attr_i(nd, "exclude_outside", 0); /* cubic only */
    if (p->keepdims && p->mode != 2)
        return onnx_unsup(nd, "exclude_outside=1 with mode=", mode);
    if (onnx_attr_i(nd, "antialias", 0))
        return onnx_unsup(nd, "antialias=1 is not supported", NULL);
    if (onnx_attr_get(nd, "axes"))
        return onnx_unsup(nd, "the axes attribute is not supported", NULL);
    const char *kp = onnx_attr_s(nd, "keep_aspect_ratio_policy", "stretch");
    if (strcmp(kp, "stretch"))
        return onnx_unsup(nd, "keep_aspect_ratio_policy=", kp);
    return 0;
}

/* ns->a[0..1]: output H, W; ns->b[0..1]: the transforms' scales (double bits). */
static int infer_resize(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    int r = x->rank;
    if (r < 2)
        return onnx_shape_err(nd, "input rank %lld (resizing the last two axes)", r, 0);
    int up = nd->def->sub == R_UPSAMPLE;
    int sk = up || m->opset < 11 ? 1 : 2; /* the scales input */
    double sc[H2T_MAX_RANK];
    int64_t out[H2T_MAX_RANK];
    int have = 0;
    if (up && m->opset < 9) {
        const onnx_attr *a = onnx_attr_get(nd, "scales");
        if (!a || a->type != ONNX_AT_FS || a->n != r)
            return onnx_shape_err(nd, "scales attribute for rank %lld", r, 0);
        for (int i = 0; i < r; i++)
            sc[i] = a->floats[i];
        have = 1;
    } else if (HAS(sk) && onnx_numel(VIN(sk)) > 0) {
        const onnx_value *v = &m->values[nd->in[sk]];
        if (v->kind != ONNX_VAL_CONST || !VIN(sk)->f)
            return h2t_err_set(H2T_EUNSUPPORTED,
                               "operator %s (node '%s'): scales '%s' must be a constant", nd->op,
                               nd->name, v->name);
        if (onnx_numel(VIN(sk)) != r)
            return onnx_shape_err(nd, "%lld scales for rank %lld", onnx_numel(VIN(sk)), r);
        for (int i = 0; i < r; i++)
            sc[i] = VIN(sk)->f[i];
        have = 1;
    }
    if (have) {
        for (int i = 0; i < r; i++) {
            if (!(sc[i] > 0))
                return onnx_shape_err(nd, "scale %lld on axis %lld", (long long)sc[i], i);
            out[i] = (int64_t)floor((double)x->dim[i] * sc[i]);
        }
    } else {
        const int64_t *sz;
        int64_t n;
        if (up || m->opset < 11 || !HAS(3))
            return onnx_shape_err(nd, "neither scales nor sizes given", 0, 0);
        int rc = onnx_param_list(nd, vs, 3, &sz, &n);
        if (rc < 0)
            return rc;
        if (n != r)
            return onnx_shape_err(nd, "%lld sizes for rank %lld", n, r);
        for (int i = 0; i < r; i++) {
            out[i] = sz[i];
            sc[i] = x->dim[i] ? (double)sz[i] / (double)x->dim[i] : 1.;
        }
    }
    for (int i = 0; i < r - 2; i++)
        if (out[i] != x->dim[i])
            return h2t_err_set(H2T_EUNSUPPORTED,
                               "operator %s (node '%s'): resizing axis %d (only the last two "
                               "axes are resized)",
                               nd->op, nd->name, i);
    for (int i = 0; i < 2; i++) {
        ns->a[i] = out[r - 2 + i];
        memcpy(&ns->b[i], &sc[r - 2 + i], sizeof(double));
    }
    onnx_set_shape(VOUT(0), r, out);
    return 0;
}

static int k_resize(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *x = IN(0);
    int r = x->rank;
    h2t_nn_resize rs = {nd->p.mode,         nd->p.alpha,        nd->p.keepdims,
                        (int)nd->p.ints[0], (int)nd->p.ints[1], {0., 0.}};
    memcpy(&rs.scale[0], &k->ns->b[0], sizeof(double));
    memcpy(&rs.scale[1], &k->ns->b[1], sizeof(double));
    int64_t outer = 1;
    for (int i = 0; i < r - 2; i++)
        outer *= x->dim[i];
    h2t_nn_resize2d(k->threads, &rs, x->f, outer, x->dim[r - 2], x->dim[r - 1], k->ns->a[0],
                    k->ns->a[1], OUT(0)->f);
    return 0;
}

/* ---------------------------------------------------------------- ConvTranspose */

/* p->ints[0..1] output_padding (H, W), p->ints[2..3] output_shape (-1 absent). */
static int parse_convt(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    onnx_params *p = &nd->p;
    int64_t k[4], s[4], d[4], pads[8], op[4], os[4];
    int nk = onnx_attr_ints(nd, "kernel_shape", k, 4), ns = onnx_attr_ints(nd, "strides", s, 4);
    int nd2 = onnx_attr_ints(nd, "dilations", d, 4), np = onnx_attr_ints(nd, "pads", pads, 8);
    int nop = onnx_attr_ints(nd, "output_padding", op, 4);
    int nos = onnx_attr_ints(nd, "output_shape", os, 4);
    int sp = nk > 0 ? nk : ns > 0 ? ns : nd2 > 0 ? nd2 : np > 0 ? np / 2 : 0;
    if (sp > 2 || nk == -2 || ns == -2 || nd2 == -2 || np == -2 || nop == -2 || nos == -2)
        return onnx_unsup(nd, "only 1-D and 2-D transposed convolutions are supported", NULL);
    if ((nk > 0 && nk != sp) || (ns > 0 && ns != sp) || (nd2 > 0 && nd2 != sp) ||
        (np > 0 && np != 2 * sp) || (nop > 0 && nop != sp) || (nos > 0 && nos != sp))
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (ConvTranspose): attribute lengths disagree",
                           nd->name);
    p->spatial = sp;
    for (int i = 0; i < 2; i++) {
        p->kernel[i] = -1;
        p->strides[i] = p->dil[i] = 1;
        p->pads[i] = p->pads[i + 2] = 0;
        p->ints[i] = 0;
        p->ints[2 + i] = -1;
    }
    for (int i = 0; i < sp; i++) {
        int j = i + 2 - sp; /* 1-D: the W slot */
        if (nk > 0)
            p->kernel[j] = k[i];
        if (ns > 0)
            p->strides[j] = s[i];
        if (nd2 > 0)
            p->dil[j] = d[i];
        if (np > 0)
            p->pads[j] = pads[i], p->pads[j + 2] = pads[i + sp];
        if (nop > 0)
            p->ints[j] = op[i];
        if (nos > 0)
            p->ints[2 + j] = os[i];
    }
    for (int i = 0; i < 2; i++)
        if (p->strides[i] < 1 || p->dil[i] < 1 || p->pads[i] < 0 || p->pads[i + 2] < 0 ||
            p->ints[i] < 0 || p->ints[i] >= (p->strides[i] > p->dil[i] ? p->strides[i] : p->dil[i]))
            return h2t_err_set(H2T_ECORRUPT,
                               "node '%s' (ConvTranspose): bad stride/dilation/pad/output_padding",
                               nd->name);
    const char *ap = onnx_attr_s(nd, "auto_pad", "NOTSET");
    p->auto_pad = !strcmp(ap, "SAME_UPPER")   ? 1
                  : !strcmp(ap, "SAME_LOWER") ? 2
                  : !strcmp(ap, "VALID")      ? 3
                                              : 0;
    if (p->auto_pad == 0 && strcmp(ap, "NOTSET") && ap[0])
        return onnx_unsup(nd, "auto_pad=", ap);
    p->group = onnx_attr_i(nd, "group", 1);
    if (p->group < 1)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (ConvTranspose): group %lld", nd->name,
                           (long long)p->group);
    return 0;
}

/* ns->a: 0 pad top, 1 pad left, 2 kh, 3 kw. */
static int infer_convt(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    const onnx_params *p = &nd->p;
    const onnx_vstate *x = VIN(0), *w = VIN(1);
    if (x->rank != 3 && x->rank != 4)
        return x->rank == 5 ? onnx_unsup(nd, "3-D transposed convolutions are not supported", NULL)
                            : onnx_shape_err(nd, "input rank %lld (expected 3 or 4)", x->rank, 0);
    int sp = x->rank - 2;
    if (p->spatial && p->spatial != sp)
        return onnx_shape_err(nd, "attributes for %lld spatial dims, input has %lld", p->spatial,
                              sp);
    if (w->rank != x->rank || w->dim[0] != x->dim[1])
        return onnx_shape_err(nd, "weights for %lld input channels, input has %lld",
                              w->rank == x->rank ? w->dim[0] : -1, x->dim[1]);
    int64_t C = x->dim[1], M = w->dim[1] * p->group;
    if (C % p->group)
        return onnx_shape_err(nd, "%lld channels in %lld groups", C, p->group);
    if (HAS(2) && onnx_numel(VIN(2)) != M)
        return onnx_shape_err(nd, "bias of %lld for %lld output channels", onnx_numel(VIN(2)), M);
    int64_t d[4] = {x->dim[0], M, 1, 1};
    for (int i = 2 - sp; i < 2; i++) {
        int64_t in = x->dim[x->rank - 2 + i], kk = w->dim[w->rank - 2 + i], s = p->strides[i];
        if (p->kernel[i] >= 0 && p->kernel[i] != kk)
            return onnx_shape_err(nd, "kernel_shape disagrees with the weights (%lld)", kk, 0);
        int64_t full = s * (in - 1) + p->ints[i] + (kk - 1) * p->dil[i] + 1, out, head;
        if (p->ints[2 + i] >= 0 || p->auto_pad == 1 || p->auto_pad == 2) {
            out = p->ints[2 + i] >= 0 ? p->ints[2 + i] : in * s;
            int64_t total = full - out;
            if (total < 0)
                total = 0;
            head = p->auto_pad == 1 ? total / 2 : total - total / 2;
        } else {
            head = p->auto_pad == 3 ? 0 : p->pads[i];
            out = full - head - (p->auto_pad == 3 ? 0 : p->pads[i + 2]);
        }
        if (out < 0)
            return onnx_shape_err(nd, "output length %lld on spatial axis %lld", out, i);
        d[2 + i] = out;
        ns->a[i] = head;
        ns->a[2 + i] = kk;
    }
    if (sp == 1) {
        d[2] = d[3];
        ns->a[0] = 0;
        ns->a[2] = 1;
    }
    onnx_set_shape(VOUT(0), x->rank, d);
    return 0;
}

static void convt_geo(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns,
                      h2t_nn_convt *g)
{
    const onnx_vstate *x = VIN(0), *y = VOUT(0);
    int r = x->rank;
    g->N = x->dim[0];
    g->C = x->dim[1];
    g->H = r == 4 ? x->dim[2] : 1;
    g->W = x->dim[r - 1];
    g->M = y->dim[1];
    g->OH = r == 4 ? y->dim[2] : 1;
    g->OW = y->dim[r - 1];
    g->kh = ns->a[2];
    g->kw = ns->a[3];
    g->sh = nd->p.strides[0];
    g->sw = nd->p.strides[1];
    g->dh = nd->p.dil[0];
    g->dw = nd->p.dil[1];
    g->pt = ns->a[0];
    g->pl = ns->a[1];
    g->G = nd->p.group;
}

static size_t scratch_convt(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns)
{
    h2t_nn_convt g;
    convt_geo(nd, vs, ns, &g);
    return h2t_nn_convt_scratch(&g);
}

static int k_convt(const onnx_kctx *k, const onnx_node *nd)
{
    h2t_nn_convt g;
    convt_geo(nd, k->vs, k->ns, &g);
    h2t_nn_convt_run(k->threads, &g, IN(0)->f, IN(1)->f, HAS(2) ? IN(2)->f : NULL, OUT(0)->f,
                     k->scratch);
    return 0;
}

/* ---------------------------------------------------------------- Size */

static int infer_size(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    onnx_set_shape(VOUT(0), 0, NULL);
    return 0;
}

static int eval_size(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    VOUT(0)->ival[0] = onnx_numel(VIN(0));
    return 0;
}

/* ---------------------------------------------------------------- table */

#define REDUCE(NAME, SUB)                                                                          \
    {                                                                                              \
        NAME, .min_in = 1, .max_in = 2, .max_out = 1, .param_in = 2, .dt = ONNX_DTR_SAME,          \
              .types = ONNX_TY_NUM, .sub = SUB, .parse = parse_reduce, .infer = infer_reduce,      \
              .eval = eval_reduce, .run = k_reduce, .mixes_batch = reduce_mixes                    \
    }

const onnx_opdef onnx_ops_nn[] = {
    {"LayerNormalization", .min_in = 2, .max_in = 3, .max_out = 3, .dt = ONNX_DTR_FLOAT,
     .parse = parse_layernorm, .infer = infer_layernorm, .run = k_layernorm,
     .scratch = scratch_layernorm, .mixes_batch = axis0_mixes},
    {"Gelu", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT, .parse = parse_gelu,
     .infer = onnx_infer_same, .run = k_gelu},
    {"InstanceNormalization", .min_in = 3, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_FLOAT,
     .sub = N_INSTANCE, .parse = parse_norm, .infer = infer_norm, .run = k_norm},
    {"GroupNormalization", .min_in = 3, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_FLOAT,
     .sub = N_GROUP, .parse = parse_norm, .infer = infer_norm, .run = k_norm},
    REDUCE("ReduceSum", H2T_NN_RSUM),
    REDUCE("ReduceMean", H2T_NN_RMEAN),
    REDUCE("ReduceMax", H2T_NN_RMAX),
    REDUCE("ReduceMin", H2T_NN_RMIN),
    REDUCE("ReduceProd", H2T_NN_RPROD),
    REDUCE("ReduceL1", H2T_NN_RL1),
    REDUCE("ReduceL2", H2T_NN_RL2),
    REDUCE("ReduceSumSquare", H2T_NN_RSUMSQ),
    REDUCE("ReduceLogSum", H2T_NN_RLOGSUM),
    REDUCE("ReduceLogSumExp", H2T_NN_RLOGSUMEXP),
    {"Einsum", .min_in = 1, .max_in = 64, .max_out = 1, .dt = ONNX_DTR_FLOAT, .parse = parse_einsum,
     .infer = infer_einsum, .run = k_einsum, .scratch = scratch_einsum,
     .mixes_batch = einsum_mixes},
    {"Resize", .min_in = 1, .max_in = 4, .max_out = 1, .param_in = 8, .dt = ONNX_DTR_FLOAT,
     .sub = R_RESIZE, .parse = parse_resize, .infer = infer_resize, .run = k_resize},
    {"Upsample", .min_in = 1, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = R_UPSAMPLE,
     .parse = parse_resize, .infer = infer_resize, .run = k_resize},
    {"Size", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_SHAPE,
     .flags = ONNX_OPF_READS_SHAPE, .infer = infer_size, .eval = eval_size},
    {"ConvTranspose", .min_in = 2, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_FLOAT,
     .parse = parse_convt, .infer = infer_convt, .run = k_convt, .scratch = scratch_convt},
};
const int onnx_ops_nn_n = sizeof onnx_ops_nn / sizeof onnx_ops_nn[0];
