/*
 * extract/ops_elem.c - element-wise (activations, broadcasting arithmetic), batch
 * normalisation, softmax and global pooling operators: kernels, checks, shape inference and their
 * table fragment (onnx_ops_elem). Every kernel reads shapes from the inferred state; none
 * allocates.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <string.h>

#include "common/err.h"
#include "extract/nn.h"
#include "extract/onnx_graph.h"

/* Variants of the shared kernels (onnx_opdef.sub). */
enum {
    U_RELU,
    U_LEAKYRELU,
    U_HARDSIGMOID,
    U_HARDSWISH,
    U_SIGMOID,
    U_TANH,
    U_ABS,
    U_NEG,
    U_EXP,
    U_LOG,
    U_SQRT,
    U_RECIPROCAL,
    U_FLOOR,
    U_CEIL,
    U_ERF,
    U_ELU,
    U_SELU,
    U_SOFTPLUS,
    U_SOFTSIGN,
    U_CLIP
};
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_PRELU };
enum { S_SOFTMAX, S_LOGSOFTMAX };
enum { G_AVG, G_MAX };

typedef struct kjob {
    const onnx_kctx *k;
    const onnx_node *nd;
    const void *aux;
} kjob;

/* ---------------------------------------------------------------- broadcasting */

/* Coalesced broadcast geometry: out dims d[], element strides of a and b (0 = broadcast). */
typedef struct bgeom {
    int r;
    int64_t d[H2T_MAX_RANK], sa[H2T_MAX_RANK], sb[H2T_MAX_RANK];
} bgeom;

static void bgeom_make(const onnx_vstate *a, const onnx_vstate *b, const onnx_vstate *o, bgeom *g)
{
    int r = o->rank;
    int64_t sa[H2T_MAX_RANK], sb[H2T_MAX_RANK];
    int64_t ta = 1, tb = 1;
    for (int i = r - 1; i >= 0; i--) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        sa[i] = da == 1 ? 0 : ta;
        sb[i] = db == 1 ? 0 : tb;
        ta *= da;
        tb *= db;
    }
    /* merge dim i into i+1 when both strides stay consistent */
    g->r = 0;
    for (int i = 0; i < r; i++) {
        if (o->dim[i] == 1)
            continue;
        g->d[g->r] = o->dim[i];
        g->sa[g->r] = sa[i];
        g->sb[g->r] = sb[i];
        g->r++;
    }
    /* coalesce from the inside out: dim j-1 merges into j when contiguous for both */
    int w = 0;
    bgeom c;
    for (int i = 0; i < g->r; i++) {
        if (w > 0) {
            int j = w - 1;
            int ok_a = (c.sa[j] == 0 && g->sa[i] == 0) ||
                       (c.sa[j] != 0 && g->sa[i] != 0 && c.sa[j] == g->sa[i] * g->d[i]);
            int ok_b = (c.sb[j] == 0 && g->sb[i] == 0) ||
                       (c.sb[j] != 0 && g->sb[i] != 0 && c.sb[j] == g->sb[i] * g->d[i]);
            if (ok_a && ok_b) {
                c.d[j] *= g->d[i];
                c.sa[j] = g->sa[i];
                c.sb[j] = g->sb[i];
                continue;
            }
        }
        c.d[w] = g->d[i];
        c.sa[w] = g->sa[i];
        c.sb[w] = g->sb[i];
        w++;
    }
    c.r = w;
    if (w == 0) {
        c.r = 1;
        c.d[0] = 1;
        c.sa[0] = c.sb[0] = 0;
    }
    *g = c;
}

#define BIN_INNER(NAME, EXPR)                                                                      \
    static void NAME(const float *restrict a, int64_t sa, const float *restrict b, int64_t sb,     \
                     float *restrict o, int64_t n)                                                 \
    {                                                                                              \
        if (sa == 1 && sb == 1) {                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float x = a[i], y = b[i];                                                          \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
        } else if (sa == 1 && sb == 0) {                                                           \
            const float y = b[0];                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float x = a[i];                                                                    \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
        } else if (sa == 0 && sb == 1) {                                                           \
            const float x = a[0];                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float y = b[i];                                                                    \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float x = a[i * sa], y = b[i * sb];                                                \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
        }                                                                                          \
    }

BIN_INNER(bin_add, x + y)
BIN_INNER(bin_sub, x - y)
BIN_INNER(bin_mul, x *y)
BIN_INNER(bin_div, x / y)
BIN_INNER(bin_pow, powf(x, y))
BIN_INNER(bin_prelu, x < 0 ? x * y : x)

typedef void (*bin_fn)(const float *, int64_t, const float *, int64_t, float *, int64_t);

typedef struct bjob {
    bin_fn f;
    const bgeom *g;
    const float *a, *b;
    float *o;
} bjob;

static void bcast_range(void *ctx, int64_t lo, int64_t hi)
{
    const bjob *j = ctx;
    const bgeom *g = j->g;
    bin_fn f = j->f;
    const float *a = j->a, *b = j->b;
    float *o = j->o;
    int r = g->r;
    int64_t idx[H2T_MAX_RANK] = {0};
    int64_t inner = g->d[r - 1];
    for (int64_t t = lo, i = r - 2; i >= 0; i--) {
        idx[i] = t % g->d[i];
        t /= g->d[i];
    }
    for (int64_t t = lo; t < hi; t++) {
        int64_t oa = 0, ob = 0;
        for (int i = 0; i < r - 1; i++) {
            oa += idx[i] * g->sa[i];
            ob += idx[i] * g->sb[i];
        }
        if (r == 1) { /* one flat run: split it by element */
            f(a + (g->sa[0] ? lo : 0), g->sa[0], b + (g->sb[0] ? lo : 0), g->sb[0], o + lo,
              hi - lo);
            return;
        }
        f(a + oa, g->sa[r - 1], b + ob, g->sb[r - 1], o + t * inner, inner);
        for (int i = r - 2; i >= 0; i--) {
            if (++idx[i] < g->d[i])
                break;
            idx[i] = 0;
        }
    }
}

static void bcast_run(int threads, bin_fn f, const bgeom *g, const float *a, const float *b,
                      float *o)
{
    bjob j = {f, g, a, b, o};
    int64_t outer = 1;
    for (int i = 0; i < g->r - 1; i++)
        outer *= g->d[i];
    if (g->r == 1)
        onnx_par_for(threads, g->d[0], 1 << 15, bcast_range, &j);
    else
        onnx_par_for(threads, outer, (1 << 15) / (g->d[g->r - 1] + 1) + 1, bcast_range, &j);
}

/* out[i] = a[bcast i] op b[bcast i] for int64 (op: B_ADD..B_DIV). */
static void binary_i64(int op, const onnx_vstate *a, const onnx_vstate *b, const onnx_vstate *o,
                       const int64_t *pa, const int64_t *pb, int64_t *po)
{
    int r = o->rank;
    int64_t n = onnx_numel(o), idx[H2T_MAX_RANK] = {0};
    for (int64_t t = 0; t < n; t++) {
        int64_t ia = 0, ib = 0, ma = 1, mb = 1;
        for (int i = r - 1; i >= 0; i--) {
            int ka = i - (r - a->rank), kb = i - (r - b->rank);
            if (ka >= 0) {
                ia += (a->dim[ka] == 1 ? 0 : idx[i]) * ma;
                ma *= a->dim[ka];
            }
            if (kb >= 0) {
                ib += (b->dim[kb] == 1 ? 0 : idx[i]) * mb;
                mb *= b->dim[kb];
            }
        }
        int64_t x = pa[ia], y = pb[ib];
        po[t] = op == B_ADD ? x + y : op == B_SUB ? x - y : op == B_MUL ? x * y : x / y;
        for (int i = r - 1; i >= 0; i--) {
            if (++idx[i] < o->dim[i])
                break;
            idx[i] = 0;
        }
    }
}

/* ---------------------------------------------------------------- kernels */

/* Comparisons rather than fminf/fmaxf: those are library calls without -ffast-math, and
 * these keep NaN (x < lo and x > hi are false for NaN). */
static inline float clampf(float x, float lo, float hi)
{
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

static void unary_range(void *ctx, int64_t lo, int64_t hi)
{
    const kjob *j = ctx;
    const onnx_kctx *k = j->k;
    const onnx_node *nd = j->nd;
    const float *restrict x = IN(0)->f + lo;
    float *restrict y = OUT(0)->f + lo;
    int64_t n = hi - lo;
    const float al = nd->p.alpha, be = nd->p.beta;
    switch (nd->def->sub) {
    case U_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
    case U_LEAKYRELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] >= 0.f ? x[i] : al * x[i];
        break;
    case U_HARDSIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = clampf(al * x[i] + be, 0.f, 1.f);
        break;
    case U_HARDSWISH:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * clampf(x[i] * (1.f / 6.f) + 0.5f, 0.f, 1.f);
        break;
    case U_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = 1.f / (1.f + expf(-x[i]));
        break;
    case U_TANH:
        for (int64_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    case U_ABS:
        for (int64_t i = 0; i < n; i++)
            y[i] = fabsf(x[i]);
        break;
    case U_NEG:
        for (int64_t i = 0; i < n; i++)
            y[i] = -x[i];
        break;
    case U_EXP:
        for (int64_t i = 0; i < n; i++)
            y[i] = expf(x[i]);
        break;
    case U_LOG:
        for (int64_t i = 0; i < n; i++)
            y[i] = logf(x[i]);
        break;
    case U_SQRT:
        for (int64_t i = 0; i < n; i++)
            y[i] = sqrtf(x[i]);
        break;
    case U_RECIPROCAL:
        for (int64_t i = 0; i < n; i++)
            y[i] = 1.f / x[i];
        break;
    case U_FLOOR:
        for (int64_t i = 0; i < n; i++)
            y[i] = floorf(x[i]);
        break;
    case U_CEIL:
        for (int64_t i = 0; i < n; i++)
            y[i] = ceilf(x[i]);
        break;
    case U_ERF:
        h2t_nn_erf(1, x, n, y);
        break;
    case U_ELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] >= 0.f ? x[i] : al * (expf(x[i]) - 1.f);
        break;
    case U_SELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.f ? be * x[i] : be * (al * expf(x[i]) - al);
        break;
    case U_SOFTPLUS:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 20.f ? x[i] : log1pf(expf(x[i]));
        break;
    case U_SOFTSIGN:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] / (1.f + fabsf(x[i]));
        break;
    case U_CLIP: {
        float cl = nd->p.fmin, ch = nd->p.fmax;
        if (k->m->opset >= 11) {
            cl = HAS(1) ? IN(1)->f[0] : -INFINITY;
            ch = HAS(2) ? IN(2)->f[0] : INFINITY;
        }
        for (int64_t i = 0; i < n; i++)
            y[i] = clampf(x[i], cl, ch);
        break;
    }
    default:
        break;
    }
}

static int k_unary(const onnx_kctx *k, const onnx_node *nd)
{
    kjob j = {k, nd, NULL};
    onnx_par_for(k->threads, onnx_numel(OUT(0)), 1 << 15, unary_range, &j);
    return 0;
}

static int k_binary(const onnx_kctx *k, const onnx_node *nd)
{
    bgeom g;
    static const bin_fn fns[] = {bin_add, bin_sub, bin_mul, bin_div, bin_pow, bin_prelu};
    bin_fn f = fns[nd->def->sub];
    if (onnx_numel(OUT(0)) == 0)
        return 0;
    bgeom_make(IN(0), IN(1), OUT(0), &g);
    bcast_run(k->threads, f, &g, IN(0)->f, IN(1)->f, OUT(0)->f);
    return 0;
}

static void bn_range(void *ctx, int64_t lo, int64_t hi)
{
    const kjob *j = ctx;
    const onnx_kctx *k = j->k;
    const onnx_node *nd = j->nd;
    const onnx_vstate *x = IN(0);
    int64_t C = x->dim[1], S = 1;
    for (int i = 2; i < x->rank; i++)
        S *= x->dim[i];
    const float *sc = IN(1)->f, *bi = IN(2)->f, *mu = IN(3)->f, *var = IN(4)->f;
    for (int64_t nc = lo; nc < hi; nc++) {
        int64_t n = nc / C, c = nc % C;
        {
            const float a = sc[c] / sqrtf(var[c] + nd->p.eps), b = bi[c] - mu[c] * a;
            const float *restrict xp = x->f + (n * C + c) * S;
            float *restrict yp = OUT(0)->f + (n * C + c) * S;
            for (int64_t i = 0; i < S; i++)
                yp[i] = xp[i] * a + b;
        }
    }
}

static int k_bn(const onnx_kctx *k, const onnx_node *nd)
{
    kjob j = {k, nd, NULL};
    int64_t S = 1;
    for (int i = 2; i < IN(0)->rank; i++)
        S *= IN(0)->dim[i];
    onnx_par_for(k->threads, IN(0)->dim[0] * IN(0)->dim[1], (1 << 15) / (S + 1) + 1, bn_range, &j);
    return 0;
}

static int k_softmax(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *x = IN(0);
    int64_t axis = k->ns->a[0], outer = 1, len = 1, inner = 1;
    for (int i = 0; i < x->rank; i++) {
        if (i < axis)
            outer *= x->dim[i];
        else if (i == axis || k->m->opset < 13)
            len *= x->dim[i];
        else
            inner *= x->dim[i];
    }
    int logsm = nd->def->sub == S_LOGSOFTMAX;
    if (inner == 1)
        h2t_nn_softmax_rows(k->threads, x->f, outer, len, logsm, OUT(0)->f);
    else
        h2t_nn_softmax_strided(k->threads, x->f, outer, len, inner, logsm, OUT(0)->f);
    return 0;
}

static int k_gpool(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *x = IN(0);
    int64_t NC = x->dim[0] * x->dim[1], S = 1;
    for (int i = 2; i < x->rank; i++)
        S *= x->dim[i];
    for (int64_t c = 0; c < NC; c++) {
        const float *restrict p = x->f + c * S;
        if (nd->def->sub == G_AVG) {
            float s = 0.f;
            for (int64_t i = 0; i < S; i++)
                s += p[i];
            OUT(0)->f[c] = s / (float)S;
        } else {
            float mx = -INFINITY;
            for (int64_t i = 0; i < S; i++)
                mx = p[i] > mx ? p[i] : mx;
            OUT(0)->f[c] = mx;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- checks and shapes */

static int parse_leakyrelu(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.alpha = onnx_attr_f(nd, "alpha", 0.01f);
    return 0;
}

static int parse_elu(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.alpha = onnx_attr_f(nd, "alpha", 1.f);
    return 0;
}

static int parse_selu(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.alpha = onnx_attr_f(nd, "alpha", 1.67326319217681884765625f);
    nd->p.beta = onnx_attr_f(nd, "gamma", 1.05070102214813232421875f);
    return 0;
}

static int parse_hardsigmoid(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.alpha = onnx_attr_f(nd, "alpha", 0.2f);
    nd->p.beta = onnx_attr_f(nd, "beta", 0.5f);
    return 0;
}

static int parse_clip(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.fmin = onnx_attr_f(nd, "min", -INFINITY);
    nd->p.fmax = onnx_attr_f(nd, "max", INFINITY);
    return 0;
}

static int infer_clip(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    for (int j = 1; j < 3; j++)
        if (HAS(j) && onnx_numel(VIN(j)) != 1)
            return onnx_shape_err(nd, "min/max of %lld elements", onnx_numel(VIN(j)), 0);
    return onnx_infer_same(m, nd, vs, ns);
}

static int infer_bcast(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    return onnx_bcast_shape(nd, VIN(0), VIN(1), VOUT(0));
}

static int eval_binary(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    for (int64_t i = 0; nd->def->sub == B_DIV && i < onnx_numel(VIN(1)); i++)
        if (VIN(1)->ival[i] == 0)
            return onnx_shape_err(nd, "int64 division by zero", 0, 0);
    binary_i64(nd->def->sub, VIN(0), VIN(1), VOUT(0), VIN(0)->ival, VIN(1)->ival, VOUT(0)->ival);
    return 0;
}

static int infer_prelu(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const onnx_vstate *x = VIN(0);
    onnx_vstate *o = VOUT(0);
    int rc = onnx_bcast_shape(nd, x, VIN(1), o);
    if (rc == 0 && (o->rank != x->rank || onnx_numel(o) != onnx_numel(x)))
        return onnx_shape_err(nd, "slope does not broadcast to the input", 0, 0);
    return rc;
}

static int parse_bn(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    if (nd->n_out > 1 || onnx_attr_i(nd, "training_mode", 0) != 0)
        return onnx_unsup(nd, "training mode is not supported", NULL);
    if (onnx_attr_i(nd, "spatial", 1) != 1)
        return onnx_unsup(nd, "spatial=0 is not supported", NULL);
    nd->p.eps = onnx_attr_f(nd, "epsilon", 1e-5f);
    return 0;
}

static int infer_bn(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    if (x->rank < 2)
        return onnx_shape_err(nd, "input rank %lld", x->rank, 0);
    for (int j = 1; j < 5; j++)
        if (onnx_numel(VIN(j)) != x->dim[1])
            return onnx_shape_err(nd, "parameter of %lld for %lld channels", onnx_numel(VIN(j)),
                                  x->dim[1]);
    return onnx_infer_same(m, nd, vs, ns);
}

static int parse_softmax(const h2t_model *m, onnx_node *nd)
{
    nd->p.axis = onnx_attr_i(nd, "axis", m->opset >= 13 ? -1 : 1);
    return 0;
}

static int infer_softmax(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = VIN(0);
    if (onnx_norm_axis(nd->p.axis, x->rank, &ns->a[0]) < 0)
        return onnx_shape_err(nd, "axis %lld for rank %lld", nd->p.axis, x->rank);
    return onnx_infer_same(m, nd, vs, ns);
}

static int softmax_mixes_batch(const onnx_node *nd, const onnx_nstate *ns)
{
    (void)nd;
    return ns->a[0] == 0;
}

static int infer_gpool(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const onnx_vstate *x = VIN(0);
    if (x->rank < 3)
        return onnx_shape_err(nd, "input rank %lld", x->rank, 0);
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        d[i] = i < 2 ? x->dim[i] : 1;
    onnx_set_shape(VOUT(0), x->rank, d);
    return 0;
}

/* ---------------------------------------------------------------- table */

#define UNARY(NAME, SUB, PARSE)                                                                    \
    {                                                                                              \
        NAME, .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = SUB,            \
              .parse = PARSE, .infer = onnx_infer_same, .run = k_unary                             \
    }

const onnx_opdef onnx_ops_elem[] = {
    UNARY("Relu", U_RELU, NULL),
    UNARY("LeakyRelu", U_LEAKYRELU, parse_leakyrelu),
    UNARY("HardSigmoid", U_HARDSIGMOID, parse_hardsigmoid),
    UNARY("HardSwish", U_HARDSWISH, NULL),
    UNARY("Sigmoid", U_SIGMOID, NULL),
    UNARY("Tanh", U_TANH, NULL),
    UNARY("Abs", U_ABS, NULL),
    UNARY("Neg", U_NEG, NULL),
    UNARY("Exp", U_EXP, NULL),
    UNARY("Log", U_LOG, NULL),
    UNARY("Sqrt", U_SQRT, NULL),
    UNARY("Reciprocal", U_RECIPROCAL, NULL),
    UNARY("Floor", U_FLOOR, NULL),
    UNARY("Ceil", U_CEIL, NULL),
    UNARY("Erf", U_ERF, NULL),
    UNARY("Elu", U_ELU, parse_elu),
    UNARY("Selu", U_SELU, parse_selu),
    UNARY("Softplus", U_SOFTPLUS, NULL),
    UNARY("Softsign", U_SOFTSIGN, NULL),
    {"Clip", .min_in = 1, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = U_CLIP,
     .parse = parse_clip, .infer = infer_clip, .run = k_unary},
    {"Add", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_NUM,
     .sub = B_ADD, .infer = infer_bcast, .eval = eval_binary, .run = k_binary},
    {"Sub", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_NUM,
     .sub = B_SUB, .infer = infer_bcast, .eval = eval_binary, .run = k_binary},
    {"Mul", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_NUM,
     .sub = B_MUL, .infer = infer_bcast, .eval = eval_binary, .run = k_binary},
    {"Div", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_NUM,
     .sub = B_DIV, .infer = infer_bcast, .eval = eval_binary, .run = k_binary},
    {"Pow", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = B_POW,
     .infer = infer_bcast, .run = k_binary},
    {"PRelu", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = B_PRELU,
     .infer = infer_prelu, .run = k_binary},
    {"BatchNormalization", .min_in = 5, .max_in = 5, .max_out = 5, .dt = ONNX_DTR_FLOAT,
     .parse = parse_bn, .infer = infer_bn, .run = k_bn},
    {"Softmax", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = S_SOFTMAX,
     .parse = parse_softmax, .infer = infer_softmax, .run = k_softmax,
     .mixes_batch = softmax_mixes_batch},
    {"LogSoftmax", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT,
     .sub = S_LOGSOFTMAX, .parse = parse_softmax, .infer = infer_softmax, .run = k_softmax,
     .mixes_batch = softmax_mixes_batch},
    {"GlobalAveragePool", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT,
     .sub = G_AVG, .infer = infer_gpool, .run = k_gpool},
    {"GlobalMaxPool", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = G_MAX,
     .infer = infer_gpool, .run = k_gpool},
};
const int onnx_ops_elem_n = sizeof onnx_ops_elem / sizeof onnx_ops_elem[0];
