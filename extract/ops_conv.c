/*
 * extract/ops_conv.c - convolution (im2col / direct 1x1 + OpenBLAS sgemm, depthwise as
 * direct loops), max/average pooling, Gemm and MatMul, the fused conv chains of exec.c, and
 * these operators' checks, shape inference and table fragment (onnx_ops_conv). The
 * convolutions' products go through extract/gemm.h (OpenBLAS or oneDNN), the other products
 * to OpenBLAS directly; OpenBLAS's thread count is set through common/blas.h.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/blas.h"
#include "common/err.h"
#include "common/log.h"
#include "extract/dnnl_conv.h"
#include "extract/gemm.h"
#include "extract/kern.h"
#include "extract/nn.h"
#include "extract/onnx_graph.h"

/* Variants of the shared window kernel (onnx_opdef.sub). */
enum { W_CONV, W_MAXPOOL, W_AVGPOOL };

/* Window geometry with 1-D inputs seen as H = 1. */
typedef struct geo {
    int64_t N, C, H, W, M, OH, OW, kh, kw, sh, sw, dh, dw, pt, pl, G;
} geo;

static void geo_make(const onnx_node *nd, const onnx_vstate *x, const onnx_vstate *y,
                     const onnx_nstate *ns, geo *g)
{
    int sp2 = x->rank == 4;
    g->N = x->dim[0];
    g->C = x->dim[1];
    g->H = sp2 ? x->dim[2] : 1;
    g->W = x->dim[x->rank - 1];
    g->M = y->dim[1];
    g->OH = sp2 ? y->dim[2] : 1;
    g->OW = y->dim[y->rank - 1];
    g->kh = ns->a[4];
    g->kw = ns->a[5];
    g->sh = nd->p.strides[0];
    g->sw = nd->p.strides[1];
    g->dh = nd->p.dil[0];
    g->dw = nd->p.dil[1];
    g->pt = ns->a[0];
    g->pl = ns->a[1];
    g->G = nd->p.group;
}

/* Output positions o in [lo, hi) whose input position o*s + off lies in [0, n). */
static void valid_range(int64_t off, int64_t s, int64_t n, int64_t on, int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = n - off <= 0 ? 0 : (n - off + s - 1) / s;
    if (b > on)
        b = on;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

static int is_depthwise(const geo *g)
{
    return g->G == g->C && g->M == g->C && g->G > 1;
}

static int is_pointwise(const geo *g)
{
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 &&
           g->OH == g->H && g->OW == g->W;
}

static size_t k_conv_scratch(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns)
{
    geo g;
    geo_make(nd, &vs[nd->in[0]], &vs[nd->out[0]], ns, &g);
    if (is_depthwise(&g) || is_pointwise(&g))
        return 0;
    return (size_t)((g.C / g.G) * g.kh * g.kw * g.OH * g.OW);
}

/* col[(c*kh + ki)*kw + kj][oh*OW + ow] = x[c][oh*sh - pt + ki*dh][ow*sw - pl + kj*dw] */
static void im2col(const float *restrict x, const geo *g, int64_t C, float *restrict col)
{
    int64_t OHW = g->OH * g->OW;
    for (int64_t c = 0; c < C; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++) {
                float *restrict row = col + ((c * g->kh + ki) * g->kw + kj) * OHW;
                int64_t oh0, oh1, ow0, ow1;
                valid_range(ki * g->dh - g->pt, g->sh, g->H, g->OH, &oh0, &oh1);
                valid_range(kj * g->dw - g->pl, g->sw, g->W, g->OW, &ow0, &ow1);
                memset(row, 0, (size_t)(oh0 * g->OW) * sizeof(float));
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    float *restrict r = row + oh * g->OW;
                    const float *restrict xr = x +
                                               (c * g->H + oh * g->sh - g->pt + ki * g->dh) * g->W +
                                               kj * g->dw - g->pl;
                    for (int64_t ow = 0; ow < ow0; ow++)
                        r[ow] = 0.f;
                    if (g->sw == 1) {
                        memcpy(r + ow0, xr + ow0, (size_t)(ow1 - ow0) * sizeof(float));
                    } else {
                        for (int64_t ow = ow0; ow < ow1; ow++)
                            r[ow] = xr[ow * g->sw];
                    }
                    for (int64_t ow = ow1; ow < g->OW; ow++)
                        r[ow] = 0.f;
                }
                memset(row + oh1 * g->OW, 0, (size_t)((g->OH - oh1) * g->OW) * sizeof(float));
            }
}

typedef struct dwjob {
    const float *x, *w, *bias;
    const geo *g;
    float *y;
} dwjob;

/* Plain C loops that the compiler vectorises, built once per instruction set (the _c, _avx and
 * _avx512 wrappers of an always-inline body) and dispatched on h2t_kern_isa. Each value is
 * computed by the same multiplies and adds in the same order in every build (ISO C mode keeps
 * -ffp-contract off: no fused multiply-add), so the three give the same bits. */
#define KV_INLINE static inline __attribute__((always_inline))
#if defined(__GNUC__) && defined(__x86_64__)
#define KV_DEFINE(NAME, PARAMS, ARGS)                                                              \
    static void NAME##_c PARAMS                                                                    \
    {                                                                                              \
        NAME##_body ARGS;                                                                          \
    }                                                                                              \
    __attribute__((target("avx,fma"))) static void NAME##_avx PARAMS                               \
    {                                                                                              \
        NAME##_body ARGS;                                                                          \
    }                                                                                              \
    __attribute__((target("avx512f"))) static void NAME##_avx512 PARAMS                            \
    {                                                                                              \
        NAME##_body ARGS;                                                                          \
    }                                                                                              \
    static void NAME PARAMS                                                                        \
    {                                                                                              \
        int isa_ = h2t_kern_isa();                                                                 \
        if (isa_ == H2T_ISA_AVX512)                                                                \
            NAME##_avx512 ARGS;                                                                    \
        else if (isa_ == H2T_ISA_AVX_FMA)                                                          \
            NAME##_avx ARGS;                                                                       \
        else                                                                                       \
            NAME##_c ARGS;                                                                         \
    }
#else
#define KV_DEFINE(NAME, PARAMS, ARGS)                                                              \
    static void NAME PARAMS                                                                        \
    {                                                                                              \
        NAME##_body ARGS;                                                                          \
    }
#endif

KV_INLINE void depthwise_range_body(void *ctx, int64_t lo, int64_t hi)
{
    const dwjob *j = ctx;
    const geo *g = j->g;
    int64_t OHW = g->OH * g->OW;
    for (int64_t nc = lo; nc < hi; nc++) {
        int64_t c = nc % g->C;
        const float *restrict xp = j->x + nc * g->H * g->W;
        const float *restrict wp = j->w + c * g->kh * g->kw;
        float *restrict yp = j->y + nc * OHW;
        const float b = j->bias ? j->bias[c] : 0.f;
        for (int64_t oh = 0; oh < g->OH; oh++) {
            float *restrict yr = yp + oh * g->OW;
            for (int64_t ow = 0; ow < g->OW; ow++)
                yr[ow] = b;
            for (int64_t ki = 0; ki < g->kh; ki++) {
                int64_t ih = oh * g->sh - g->pt + ki * g->dh;
                if (ih < 0 || ih >= g->H)
                    continue;
                const float *restrict xr = xp + ih * g->W;
                const float *restrict wr = wp + ki * g->kw;
                if (g->kw == 3 && g->dw == 1 && (g->sw == 1 || g->sw == 2)) {
                    /* the common 3-tap row: all taps in one pass over the interior */
                    int64_t a0, a1, b0, b1, lo3, hi3;
                    valid_range(-g->pl, g->sw, g->W, g->OW, &a0, &a1);
                    valid_range(2 - g->pl, g->sw, g->W, g->OW, &b0, &b1);
                    lo3 = a0 > b0 ? a0 : b0;
                    hi3 = a1 < b1 ? a1 : b1;
                    const float w0 = wr[0], w1 = wr[1], w2 = wr[2];
                    const float *restrict xs = xr - g->pl;
                    if (g->sw == 1) {
                        for (int64_t ow = lo3; ow < hi3; ow++)
                            yr[ow] += w0 * xs[ow] + w1 * xs[ow + 1] + w2 * xs[ow + 2];
                    } else {
                        for (int64_t ow = lo3; ow < hi3; ow++)
                            yr[ow] += w0 * xs[2 * ow] + w1 * xs[2 * ow + 1] + w2 * xs[2 * ow + 2];
                    }
                    /* borders, tap by tap */
                    for (int64_t ow = 0; ow < g->OW; ow++) {
                        if (ow >= lo3 && ow < hi3)
                            continue;
                        for (int64_t kj = 0; kj < 3; kj++) {
                            int64_t iw = ow * g->sw - g->pl + kj;
                            if (iw >= 0 && iw < g->W)
                                yr[ow] += wr[kj] * xr[iw];
                        }
                    }
                    continue;
                }
                for (int64_t kj = 0; kj < g->kw; kj++) {
                    const float wv = wr[kj];
                    int64_t off = kj * g->dw - g->pl, ow0, ow1;
                    valid_range(off, g->sw, g->W, g->OW, &ow0, &ow1);
                    const float *restrict xs = xr + off;
                    if (g->sw == 1) {
                        for (int64_t ow = ow0; ow < ow1; ow++)
                            yr[ow] += wv * xs[ow];
                    } else {
                        for (int64_t ow = ow0; ow < ow1; ow++)
                            yr[ow] += wv * xs[ow * g->sw];
                    }
                }
            }
        }
    }
}

KV_DEFINE(depthwise_range, (void *ctx, int64_t lo, int64_t hi), (ctx, lo, hi))

static int is_dw3x3(const geo *g)
{
    return g->kh == 3 && g->kw == 3 && g->dh == 1 && g->dw == 1 && (g->sh == 1 || g->sh == 2) &&
           (g->sw == 1 || g->sw == 2);
}

/* The vectorised 3x3 planes of kern.h. */
static void dw3x3_range(void *ctx, int64_t lo, int64_t hi)
{
    const dwjob *j = ctx;
    const geo *g = j->g;
    h2t_dw_geo dg = {g->H, g->W, g->OH, g->OW, g->sh, g->sw, g->pt, g->pl};
    int isa = h2t_kern_isa();
    for (int64_t nc = lo; nc < hi; nc++) {
        int64_t c = nc % g->C;
        h2t_kern_dw3x3_isa(isa, j->x + nc * g->H * g->W, &dg, j->w + c * 9,
                           j->bias ? j->bias[c] : 0.f, H2T_ACT_NONE, 0.f, 0.f,
                           j->y + nc * g->OH * g->OW);
    }
}

static void depthwise(int threads, const float *x, const float *w, const float *bias, const geo *g,
                      float *y)
{
    dwjob j = {x, w, bias, g, y};
    onnx_par_for(threads, g->N * g->C, 1 + 4096 / (g->OH * g->OW + 1),
                 is_dw3x3(g) ? dw3x3_range : depthwise_range, &j);
}

static int k_conv(const onnx_kctx *k, const onnx_node *nd)
{
    geo g;
    const onnx_vstate *x = IN(0), *w = IN(1);
    float *y = OUT(0)->f;
    const float *bias = HAS(2) ? IN(2)->f : NULL;
    geo_make(nd, x, OUT(0), k->ns, &g);
    if (onnx_numel(OUT(0)) == 0)
        return 0;
    if (is_depthwise(&g)) {
        depthwise(k->threads, x->f, w->f, bias, &g, y);
        return 0;
    }
    int64_t Cg = g.C / g.G, Mg = g.M / g.G, OHW = g.OH * g.OW, K = Cg * g.kh * g.kw;
    int pw = is_pointwise(&g), lib = h2t_gemm_lib();
    if (!pw && (size_t)(K * OHW) > k->scratch_n)
        return h2t_err_set(H2T_ESTATE, "conv scratch too small");
    for (int64_t n = 0; n < g.N; n++) {
        float *yn = y + n * g.M * OHW;
        for (int64_t m = 0; m < g.M; m++) {
            float b = bias ? bias[m] : 0.f;
            float *restrict yr = yn + m * OHW;
            for (int64_t i = 0; i < OHW; i++)
                yr[i] = b;
        }
        for (int64_t gi = 0; gi < g.G; gi++) {
            const float *xg = x->f + (n * g.C + gi * Cg) * g.H * g.W;
            const float *col = xg;
            if (!pw) {
                im2col(xg, &g, Cg, k->scratch);
                col = k->scratch;
            }
            h2t_gemm_conv(lib, Mg, OHW, K, w->f + gi * Mg * K, K, col, OHW, 1.f, yn + gi * Mg * OHW,
                          OHW);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ fused chains */

/* Where a chain's stages write: NULL for an elided stage. */
typedef struct fout {
    const onnx_fuse *f;
    float *acc; /* the conv's result: the Conv output, or the chain output when elided */
    float *ybn, *yadd, *yfinal;
    const float *res;  /* the Add's other input */
    const float *bias; /* per channel, still to add to acc (the GEMM ran with beta 0); NULL */
    int bn_left;       /* BN still to apply (not folded into the weights) */
    int keep_conv;     /* acc is the materialised Conv output: the bias goes into it */
    int isa;           /* H2T_ISA_* for the epilogue */
    /* range reporting: the chain's observed 4-D outputs (values), none when k->rcb is NULL */
    const onnx_kctx *k;
    int rv[5], nrv;
} fout;

/* The chain's observed 4-D stage outputs, for range reporting. */
static void range_values(const onnx_kctx *k, const onnx_fuse *f, fout *o)
{
    int cand[5] = {f->v_conv, f->v_bn, f->v_add, f->v_act, f->v_out};
    o->k = k;
    o->nrv = 0;
    if (!k->rcb || !k->observed)
        return;
    for (int i = 0; i < 5; i++) {
        int v = cand[i], dup = 0;
        if (v < 0 || k->vs[v].rank != 4 || !k->vs[v].f)
            continue;
        int t = k->m->value_info[v];
        if (t < 0 || !k->observed[t])
            continue;
        for (int j = 0; j < o->nrv; j++)
            dup |= o->rv[j] == v;
        if (!dup)
            o->rv[o->nrv++] = v;
    }
}

/* Report channels [c0, c1) of sample n, plane values [off, off + len), of every observed
 * output; the first error is kept in *rerr and stops further reports. */
static void range_report(const fout *o, int64_t n, int64_t c0, int64_t c1, int64_t off, int64_t len)
{
    const onnx_kctx *k = o->k;
    for (int i = 0; i < o->nrv && *k->rerr == 0; i++) {
        const onnx_vstate *v = &k->vs[o->rv[i]];
        int rc = k->rcb(k->rctx, k->m->value_info[o->rv[i]], v->f, v->dim, v->rank, (int)n, (int)c0,
                        (int)c1, off, len);
        if (rc != 0)
            *k->rerr = rc;
    }
}

/* Channels per report: about 64 KiB of values over all reported outputs (L2, not L1: fewer
 * callbacks, longer vector runs; measured a little faster than 32 KiB). */
static int64_t range_group(const fout *o, int64_t len)
{
    int64_t g = 16384 / (len * (o->nrv > 0 ? o->nrv : 1));
    return g < 1 ? 1 : g;
}

/* The stages after the conv over len floats at element offset off of channel m, in one pass
 * (kern.h): each kept stage output written, the chain's output last. */
static void epilogue(const fout *o, int64_t m, int64_t off, int64_t len)
{
    const onnx_fuse *f = o->f;
    h2t_epi e;
    memset(&e, 0, sizeof e);
    e.has_bias = o->bias != NULL;
    e.bias = o->bias ? o->bias[m] : 0.f;
    e.out = o->yfinal + off;
    int final_bn = o->bn_left && f->add < 0 && f->act < 0, final_add = f->add >= 0 && f->act < 0;
    if (o->keep_conv && e.has_bias)
        e.conv_out = o->acc + off;
    if (o->bn_left) {
        e.has_bn = 1;
        e.bn_a = f->bn_a[m];
        e.bn_b = f->bn_b[m];
        e.bn_out = o->ybn && !final_bn ? o->ybn + off : NULL;
    }
    if (f->add >= 0) {
        e.res = o->res + off;
        e.add_out = o->yadd && !final_add ? o->yadd + off : NULL;
    }
    if (f->act >= 0) {
        e.act = f->act_kind;
        e.lo = f->act_lo;
        e.hi = f->act_hi;
    }
    h2t_kern_epilogue_isa(o->isa, o->acc + off, len, &e);
}

static int has_epilogue(const fout *o)
{
    return o->bias || o->bn_left || o->f->add >= 0 || o->f->act >= 0;
}

typedef struct fdwjob {
    const fout *o;
    const float *x, *w, *bias;
    const geo *g;
    int direct_act; /* the activation goes into the kernel's store (nothing else left) */
} fdwjob;

static void fused_dw_range(void *ctx, int64_t lo, int64_t hi)
{
    const fdwjob *j = ctx;
    const geo *g = j->g;
    const onnx_fuse *f = j->o->f;
    h2t_dw_geo dg = {g->H, g->W, g->OH, g->OW, g->sh, g->sw, g->pt, g->pl};
    int64_t OHW = g->OH * g->OW;
    int isa = h2t_kern_isa();
    int64_t grp = range_group(j->o, OHW), g0 = lo;
    for (int64_t nc = lo; nc < hi; nc++) {
        int64_t c = nc % g->C;
        float b = j->bias ? j->bias[c] : 0.f;
        if (j->direct_act) {
            h2t_kern_dw3x3_isa(isa, j->x + nc * g->H * g->W, &dg, j->w + c * 9, b, f->act_kind,
                               f->act_lo, f->act_hi, j->o->yfinal + nc * OHW);
        } else {
            h2t_kern_dw3x3_isa(isa, j->x + nc * g->H * g->W, &dg, j->w + c * 9, b, H2T_ACT_NONE,
                               0.f, 0.f, j->o->acc + nc * OHW);
            if (has_epilogue(j->o))
                epilogue(j->o, c, nc * OHW, OHW);
        }
        /* report the channels done so far: a group, a sample's last channel, the range's end */
        if (j->o->nrv > 0 && (nc + 1 - g0 >= grp || (nc + 1) % g->C == 0 || nc + 1 == hi)) {
            int64_t smp = g0 / g->C;
            range_report(j->o, smp, g0 - smp * g->C, nc + 1 - smp * g->C, 0, OHW);
            g0 = nc + 1;
        }
    }
}

static void fused_geo(const h2t_model *m, const onnx_vstate *vs, const onnx_fuse *f,
                      const onnx_nstate *cns, const onnx_nstate *pns, geo *g)
{
    const onnx_node *nd = &m->nodes[f->conv];
    geo_make(nd, &vs[f->x], &vs[nd->out[0]], cns, g);
    if (pns) {
        g->pt += pns->a[2];
        g->pl += pns->a[3];
    }
}

int onnx_k_conv_fused_dnnl(const h2t_model *m, onnx_fuse *f, const onnx_vstate *vs,
                           const onnx_nstate *conv_ns, const onnx_nstate *pad_ns)
{
    const onnx_node *nd = &m->nodes[f->conv];
    f->dconv = NULL;
    f->blk_x = f->blk_res = f->blk_out = f->raw = 0;
    if (!h2t_dconv_available())
        return 0;
    /* the chain's output is its only materialised tensor, or the others are observed in
     * blocked pieces only (raw_ok): then the primitive computes the bare convolution and
     * conv_fused_dnnl's blocked pass the stages after it */
    int inter = (f->v_conv >= 0 && f->v_conv != f->v_out) ||
                (f->v_bn >= 0 && f->v_bn != f->v_out) || (f->v_add >= 0 && f->v_add != f->v_out);
    if (inter && !f->raw_ok)
        return 0;
    const float *w = f->fw, *bias = f->fb;
    float *fold = NULL;
    if (!w) {
        const onnx_value *wv = &m->values[nd->in[1]];
        if (wv->kind != ONNX_VAL_CONST || wv->dtype != ONNX_DT_F32)
            return 0;
        w = wv->cdata;
        if (nd->n_in > 2 && nd->in[2] >= 0) {
            const onnx_value *bv = &m->values[nd->in[2]];
            if (bv->kind != ONNX_VAL_CONST || bv->dtype != ONNX_DT_F32)
                return 0;
            bias = bv->cdata;
        }
    }
    geo g;
    fused_geo(m, vs, f, conv_ns, pad_ns, &g);
    if (g.N * g.M * g.OH * g.OW == 0 || g.C * g.H * g.W == 0)
        return 0;
    if (inter && f->bn >= 0 && !f->fw) {
        /* the blocked pass applies the BN: its scale and shift per blocked channel */
        int64_t Mp = h2t_dconv_padded(g.M);
        f->bn_pa = calloc((size_t)Mp, sizeof(float));
        f->bn_pb = calloc((size_t)Mp, sizeof(float));
        if (!f->bn_pa || !f->bn_pb)
            return h2t_err_set(H2T_ENOMEM, "BN of node '%s'", nd->name);
        memcpy(f->bn_pa, f->bn_a, (size_t)g.M * sizeof(float));
        memcpy(f->bn_pb, f->bn_b, (size_t)g.M * sizeof(float));
    } else if (f->bn >= 0 && !f->fw) {
        /* a chain ending at its BN keeps the BN output, so exec.c did not fold it; nothing
         * else reads the conv output, so oneDNN gets the folded weights (as exec.c folds) */
        int64_t K = g.C / g.G * g.kh * g.kw;
        fold = malloc((size_t)(g.M * K + g.M) * sizeof(float));
        if (!fold)
            return h2t_err_set(H2T_ENOMEM, "folded weights of node '%s'", nd->name);
        for (int64_t c = 0; c < g.M; c++) {
            for (int64_t i = 0; i < K; i++)
                fold[c * K + i] = w[c * K + i] * f->bn_a[c];
            fold[g.M * K + c] = (bias ? bias[c] : 0.f) * f->bn_a[c] + f->bn_b[c];
        }
        w = fold;
        bias = fold + g.M * K;
    }
    h2t_dconv_geo dg = {g.C,  g.H,  g.W,  g.M,  g.OH, g.OW, g.kh, g.kw,
                        g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.G,  g.N};
    /* groups of samples where a sample's weights outnumber its outputs (ResNet-50 from layer2's
     * 3x3 on): there one trip of the weights for 8 samples pays; elsewhere one sample at a time
     * keeps its activations in cache (MobileNetV2 ran 8% slower in groups). AVX-512 only: the
     * AVX2 kernels, at half the rate, measured no faster in groups (ResNet-50 4% slower) */
    if ((g.C / g.G) * g.kh * g.kw < g.OH * g.OW || h2t_dconv_block() != 16)
        dg.N = 1;
    int rc = inter ? h2t_dconv_create(&dg, w, bias, H2T_ACT_NONE, 0.f, 0.f, 0, &f->dconv)
                   : h2t_dconv_create(&dg, w, bias, f->act >= 0 ? f->act_kind : H2T_ACT_NONE,
                                      f->act_lo, f->act_hi, f->add >= 0, &f->dconv);
    free(fold);
    if (rc == H2T_ENOMEM)
        return rc;
    if (rc < 0) {
        /* no fast oneDNN kernel for this one: the executor's path runs it */
        H2T_LOG_DEBUG("conv", "node '%s': %s", nd->name, h2t_err_detail());
        f->dconv = NULL;
        free(f->bn_pa);
        free(f->bn_pb);
        f->bn_pa = f->bn_pb = NULL;
        return 0;
    }
    f->raw = inter;
    /* the primitive holds its own copy: the folded weights are not needed any more */
    free(f->fw);
    free(f->fb);
    f->fw = f->fb = NULL;
    return 0;
}

/* The blocked pass of a chain on the primitive: positions per tile (TILE_FLOATS / B), so that
 * a tile of each stage stays in L1 / L2 while its pieces are pooled. */
#define TILE_FLOATS 8192

/* One tile of a raw chain's stages after the convolution, in oneDNN's blocked layout (B
 * channels per position, B = 8 or 16 after inlining): the arithmetic of h2t_kern_epilogue
 * (each stage rounded as its own kernel, no fused multiply-add), lane by lane. */
typedef struct bepi {
    const float *src, *a, *b, *res; /* a, b: the block's BN (NULL: none); res: NULL = no Add */
    float *bn_out, *add_out, *out;  /* bn_out, add_out: kept stages or NULL */
    int64_t np;                     /* positions */
    int act, B;
    float lo, hi;
} bepi;

KV_INLINE void bepi_w(const bepi *e, const int B)
{
    /* one pass per stage over the tile (in L1), each a plain loop the compiler vectorises;
     * the pass runs in place (out == src): every value is read before it is written at the
     * same index, which ivdep tells the compiler (else it falls back to scalar code) */
    const float *cur = e->src;
    float *o = e->out;
    int64_t n = e->np * B;
    if (e->a) {
        float a[16], b[16];
        for (int i = 0; i < B; i++) {
            a[i] = e->a[i];
            b[i] = e->b[i];
        }
#pragma GCC ivdep
        for (int64_t p = 0; p < e->np; p++)
            for (int i = 0; i < B; i++)
                o[p * B + i] = cur[p * B + i] * a[i] + b[i];
        cur = o;
        if (e->bn_out)
            memcpy(e->bn_out, o, (size_t)n * sizeof(float));
    }
    if (e->res) {
        const float *r = e->res;
#pragma GCC ivdep
        for (int64_t q = 0; q < n; q++)
            o[q] = cur[q] + r[q];
        cur = o;
        if (e->add_out)
            memcpy(e->add_out, o, (size_t)n * sizeof(float));
    }
    if (e->act == H2T_ACT_RELU) {
#pragma GCC ivdep
        for (int64_t q = 0; q < n; q++)
            o[q] = cur[q] > 0.f ? cur[q] : 0.f;
        cur = o;
    } else if (e->act == H2T_ACT_CLIP) {
        float lo = e->lo, hi = e->hi;
#pragma GCC ivdep
        for (int64_t q = 0; q < n; q++) {
            float v = cur[q] < lo ? lo : cur[q];
            o[q] = v > hi ? hi : v;
        }
        cur = o;
    }
    if (cur != o)
        memcpy(o, cur, (size_t)n * sizeof(float));
}

/* The common chains (BN then Clip / Relu / nothing, or BN then Add) in one pass: the same
 * operations in the same order as bepi_w's passes. 0 when e is another chain. */
KV_INLINE int bepi_one(const bepi *e, const int B)
{
    if (!e->a || e->bn_out || e->add_out || (e->res && e->act != H2T_ACT_NONE))
        return 0;
    const float *cur = e->src, *r = e->res;
    float *o = e->out;
    float a[16], b[16], lo = e->lo, hi = e->hi;
    for (int i = 0; i < B; i++) {
        a[i] = e->a[i];
        b[i] = e->b[i];
    }
    if (r) {
#pragma GCC ivdep
        for (int64_t p = 0; p < e->np; p++)
            for (int i = 0; i < B; i++) {
                float v = cur[p * B + i] * a[i] + b[i];
                o[p * B + i] = v + r[p * B + i];
            }
    } else if (e->act == H2T_ACT_CLIP) {
#pragma GCC ivdep
        for (int64_t p = 0; p < e->np; p++)
            for (int i = 0; i < B; i++) {
                float v = cur[p * B + i] * a[i] + b[i];
                v = v < lo ? lo : v;
                o[p * B + i] = v > hi ? hi : v;
            }
    } else if (e->act == H2T_ACT_RELU) {
#pragma GCC ivdep
        for (int64_t p = 0; p < e->np; p++)
            for (int i = 0; i < B; i++) {
                float v = cur[p * B + i] * a[i] + b[i];
                o[p * B + i] = v > 0.f ? v : 0.f;
            }
    } else {
#pragma GCC ivdep
        for (int64_t p = 0; p < e->np; p++)
            for (int i = 0; i < B; i++)
                o[p * B + i] = cur[p * B + i] * a[i] + b[i];
    }
    return 1;
}

KV_INLINE void blk_epilogue_body(const bepi *e)
{
    if (e->B == 16) {
        if (!bepi_one(e, 16))
            bepi_w(e, 16);
    } else if (!bepi_one(e, 8)) {
        bepi_w(e, 8);
    }
}

KV_DEFINE(blk_epilogue, (const bepi *e), (e))

/* Floats of the blocked pass's own scratch after the primitive's (see conv_fused_dnnl). */
static size_t blk_scratch(const onnx_fuse *f, const geo *g)
{
    if (!f->rep)
        return 0;
    size_t plane = (size_t)(h2t_dconv_padded(g->M) * g->OH * g->OW + 15) / 16 * 16;
    return (f->blk_out ? 0 : plane) + (f->raw && f->add >= 0 && !f->blk_res ? plane : 0) +
           2 * TILE_FLOATS;
}

/* Hand value v's tile (B channels from c0, positions [p0, p0 + np) of sample n) over. */
static int blk_report(const onnx_kctx *k, int v, const float *data, int64_t n, int B, int64_t c0,
                      int64_t p0, int64_t np)
{
    int t = k->m->value_info[v];
    if (v < 0 || t < 0 || k->observed[t] != 2)
        return 0;
    const onnx_vstate *s = &k->vs[v];
    int64_t c1 = c0 + B < s->dim[1] ? c0 + B : s->dim[1];
    return k->bcb(k->rctx, t, data, s->dim, s->rank, (int)n, B, (int)c0, (int)c1, p0, np);
}

/* A chain on oneDNN's convolution: groups of H2T_DCONV_GROUP samples through the group form
 * while that many are left, the rest one by one (a sample's sums are the same either way);
 * sample by sample when it hands observed stages over (f->rep). A chain that
 * hands observed stages over (f->rep) then makes one pass over its blocked output, tile by
 * tile: for a raw chain the primitive wrote the bare convolution there, and the pass hands
 * each tile of it over, computes the BN, residual and activation in place (blk_epilogue) and
 * hands the kept stages' tiles over, all while the tile is in L1 / L2; then the output's
 * tile goes to k->bcb when observed. Scratch after the primitive's: the blocked output when
 * the output is not kept blocked, the residual when it is not blocked, two tiles (BN and Add
 * kept). */
static int conv_fused_dnnl(const onnx_kctx *k, const onnx_fuse *f, const geo *g)
{
    int64_t HW = g->H * g->W, OHW = g->OH * g->OW;
    int64_t in_per = (f->blk_x ? h2t_dconv_padded(g->C) : g->C) * HW;
    int64_t out_per = (f->blk_out ? h2t_dconv_padded(g->M) : g->M) * OHW;
    int64_t res_per = (f->blk_res ? h2t_dconv_padded(g->M) : g->M) * OHW;
    const float *x = k->vs[f->x].f, *res = f->add >= 0 ? k->vs[f->add_other].f : NULL;
    float *y = k->vs[f->v_out].f;
    size_t ds = h2t_dconv_scratch(f->dconv);
    if (ds + blk_scratch(f, g) > k->scratch_n)
        return h2t_err_set(H2T_ESTATE, "conv scratch too small");
    if (!f->rep) {
        int64_t grp = h2t_dconv_group(f->dconv);
        for (int64_t n = 0; n < g->N;) {
            int whole = grp > 1 && g->N - n >= grp;
            int rc = (whole ? h2t_dconv_run_group : h2t_dconv_run)(
                f->dconv, x + n * in_per, f->blk_x, res ? res + n * res_per : NULL, f->blk_res,
                y + n * out_per, f->blk_out, k->scratch);
            if (rc < 0)
                return rc;
            n += whole ? grp : 1;
        }
        return 0;
    }
    if (!k->bcb) {
        int v = f->v_conv >= 0 ? f->v_conv : f->v_out;
        return h2t_err_set(H2T_EINVAL,
                           "tensor '%s' is observed in blocked pieces: run with "
                           "h2t_exec_run_blocked, unsplit",
                           k->m->values[v].name);
    }
    int B = h2t_dconv_block();
    int64_t Mp = h2t_dconv_padded(g->M), TP = TILE_FLOATS / B;
    size_t plane = (size_t)(Mp * OHW + 15) / 16 * 16;
    float *sp = k->scratch + ds;
    float *yb = f->blk_out ? NULL : sp;
    sp += f->blk_out ? 0 : plane;
    float *rb = f->raw && f->add >= 0 && !f->blk_res ? sp : NULL;
    sp += rb ? plane : 0;
    float *t_bn = sp, *t_add = sp + TILE_FLOATS;
    int kept_bn = f->v_bn >= 0 && f->v_bn != f->v_out,
        kept_add = f->v_add >= 0 && f->v_add != f->v_out;
    for (int64_t n = 0; n < g->N; n++) {
        float *Y = f->blk_out ? y + n * out_per : yb;
        const float *R = NULL;
        int rc;
        if (f->raw) {
            rc = h2t_dconv_run(f->dconv, x + n * in_per, f->blk_x, NULL, 0, Y, 1, k->scratch);
            if (res && f->blk_res) {
                R = res + n * res_per;
            } else if (res) {
                h2t_dconv_to_blocked(res + n * res_per, 1, g->M, OHW, rb);
                R = rb;
            }
        } else {
            rc = h2t_dconv_run(f->dconv, x + n * in_per, f->blk_x, res ? res + n * res_per : NULL,
                               f->blk_res, Y, 1, k->scratch);
        }
        if (rc < 0)
            return rc;
        for (int64_t c0 = 0; c0 < g->M && rc == 0; c0 += B)
            for (int64_t p0 = 0; p0 < OHW && rc == 0; p0 += TP) {
                int64_t np = OHW - p0 < TP ? OHW - p0 : TP, at = (c0 * OHW + p0 * B);
                if (f->raw) {
                    if (f->v_conv >= 0 && f->v_conv != f->v_out)
                        rc = blk_report(k, f->v_conv, Y + at, n, B, c0, p0, np);
                    bepi e = {Y + at,
                              f->bn_pa ? f->bn_pa + c0 : NULL,
                              f->bn_pb ? f->bn_pb + c0 : NULL,
                              R ? R + at : NULL,
                              kept_bn ? t_bn : NULL,
                              kept_add ? t_add : NULL,
                              Y + at,
                              np,
                              f->act >= 0 ? f->act_kind : H2T_ACT_NONE,
                              B,
                              f->act_lo,
                              f->act_hi};
                    blk_epilogue(&e);
                    if (g->M - c0 < B) /* the padding channels stay 0 for the next primitive */
                        for (int64_t p = 0; p < np; p++)
                            for (int64_t i = g->M - c0; i < B; i++)
                                Y[at + p * B + i] = 0.f;
                    if (rc == 0 && kept_bn)
                        rc = blk_report(k, f->v_bn, t_bn, n, B, c0, p0, np);
                    if (rc == 0 && kept_add)
                        rc = blk_report(k, f->v_add, t_add, n, B, c0, p0, np);
                }
                if (rc == 0)
                    rc = blk_report(k, f->v_out, Y + at, n, B, c0, p0, np);
            }
        if (rc != 0) {
            *k->rerr = rc;
            return rc;
        }
        if (!f->blk_out)
            h2t_dconv_from_blocked(yb, 1, g->M, OHW, y + n * g->M * OHW);
    }
    *k->reported = 1;
    return 0;
}

size_t onnx_k_conv_fused_scratch(const h2t_model *m, const onnx_fuse *f, const onnx_vstate *vs,
                                 const onnx_nstate *conv_ns, const onnx_nstate *pad_ns)
{
    geo g;
    fused_geo(m, vs, f, conv_ns, pad_ns, &g);
    if (f->dconv)
        return h2t_dconv_scratch(f->dconv) + blk_scratch(f, &g);
    if (is_depthwise(&g) || is_pointwise(&g))
        return 0;
    return (size_t)((g.C / g.G) * g.kh * g.kw * g.OH * g.OW);
}

int onnx_k_conv_fused(const onnx_kctx *k, const onnx_fuse *f, const onnx_nstate *cns,
                      const onnx_nstate *pns)
{
    const onnx_node *nd = &k->m->nodes[f->conv];
    const onnx_vstate *x = &k->vs[f->x];
    geo g;
    fused_geo(k->m, k->vs, f, cns, pns, &g);
    if (g.N * g.M * g.OH * g.OW == 0)
        return 0;
    if (f->dconv)
        return conv_fused_dnnl(k, f, &g);
    const float *w = f->fw ? f->fw : k->vs[nd->in[1]].f;
    const float *bias = f->fw ? f->fb : HAS(2) ? IN(2)->f : NULL;
    fout o = {
        f, NULL, NULL, NULL, k->vs[f->v_out].f, NULL, NULL, f->bn >= 0 && !f->fw, 0, h2t_kern_isa(),
        k, {0},  0};
    o.acc = f->v_conv >= 0 ? k->vs[f->v_conv].f : o.yfinal;
    o.ybn = f->v_bn >= 0 ? k->vs[f->v_bn].f : NULL;
    o.yadd = f->v_add >= 0 ? k->vs[f->v_add].f : NULL;
    o.res = f->add >= 0 ? k->vs[f->add_other].f : NULL;
    range_values(k, f, &o);
    int64_t OHW = g.OH * g.OW;
    if (is_depthwise(&g) && is_dw3x3(&g)) {
        fdwjob j = {&o, x->f, w, bias, &g, 0};
        j.direct_act = !o.bn_left && f->add < 0 && f->act >= 0 && o.acc == o.yfinal;
        if (k->threads > 1)
            o.nrv = 0; /* ranges are reported from the caller's thread only: whole tensors */
        onnx_par_for(k->threads, g.N * g.C, 1 + 4096 / (OHW + 1), fused_dw_range, &j);
        if (o.nrv > 0)
            *k->reported = 1;
        return o.nrv > 0 ? *k->rerr : 0;
    }
    if (is_depthwise(&g)) {
        depthwise(k->threads, x->f, w, bias, &g, o.acc);
    } else {
        int64_t Cg = g.C / g.G, Mg = g.M / g.G, K = Cg * g.kh * g.kw;
        int pw = is_pointwise(&g), lib = h2t_gemm_lib();
        if (!pw && (size_t)(K * OHW) > k->scratch_n)
            return h2t_err_set(H2T_ESTATE, "conv scratch too small");
        /* the GEMM writes with beta 0; the bias comes with the first pass over the tile */
        o.bias = bias;
        o.keep_conv = f->v_conv >= 0;
        /* column tiles whose output (M x nb) stays in L2 for the stages after the conv */
        int64_t nb = OHW;
        if (g.G == 1 && has_epilogue(&o)) {
            nb = (65536 / g.M) / 16 * 16;
            if (nb < 64)
                nb = 64;
            if (nb > OHW)
                nb = OHW;
        }
        for (int64_t n = 0; n < g.N; n++) {
            float *yn = o.acc + n * g.M * OHW;
            for (int64_t gi = 0; gi < g.G; gi++) {
                const float *xg = x->f + (n * g.C + gi * Cg) * g.H * g.W;
                const float *col = xg;
                if (!pw) {
                    im2col(xg, &g, Cg, k->scratch);
                    col = k->scratch;
                }
                for (int64_t c0 = 0; c0 < OHW; c0 += nb) {
                    int64_t cn = OHW - c0 < nb ? OHW - c0 : nb;
                    h2t_gemm_conv(lib, Mg, cn, K, w + gi * Mg * K, K, col + c0, OHW, 0.f,
                                  yn + gi * Mg * OHW + c0, OHW);
                    if (g.G == 1 && has_epilogue(&o)) {
                        int64_t grp = range_group(&o, cn), m0 = 0;
                        for (int64_t mm = 0; mm < g.M; mm++) {
                            epilogue(&o, mm, (n * g.M + mm) * OHW + c0, cn);
                            if (o.nrv > 0 && (mm + 1 - m0 >= grp || mm + 1 == g.M)) {
                                range_report(&o, n, m0, mm + 1, c0, cn);
                                m0 = mm + 1;
                            }
                        }
                    }
                }
            }
            if (g.G > 1 && has_epilogue(&o))
                for (int64_t mm = 0; mm < g.M; mm++)
                    epilogue(&o, mm, (n * g.M + mm) * OHW, OHW);
        }
        if (o.nrv > 0 && g.G == 1 && has_epilogue(&o))
            *k->reported = 1;
        return o.nrv > 0 ? *k->rerr : 0;
    }
    if (has_epilogue(&o))
        for (int64_t nc = 0; nc < g.N * g.M; nc++)
            epilogue(&o, nc % g.M, nc * OHW, OHW);
    return 0;
}

/* MaxPool / AveragePool over channel planes [lo, hi): per output row, each kernel tap adds (or
 * maxes) into the whole row at once, so the loops over columns vectorise; every output still
 * takes its taps in the (ki, kj) order of the definition, so the sums are the scalar ones. */
typedef struct pooljob {
    const float *x;
    float *y;
    const geo *g;
    int is_max, incl;
    int64_t pb, pr;
} pooljob;

KV_INLINE void pool_planes_body(const pooljob *j, int64_t lo, int64_t hi)
{
    const geo *g = j->g;
    for (int64_t c = lo; c < hi; c++) {
        const float *xp = j->x + c * g->H * g->W;
        float *yp = j->y + c * g->OH * g->OW;
        for (int64_t oh = 0; oh < g->OH; oh++) {
            float *restrict yr = yp + oh * g->OW;
            int64_t h0 = oh * g->sh - g->pt, nh = 0, nh_pad = 0;
            for (int64_t ow = 0; ow < g->OW; ow++)
                yr[ow] = j->is_max ? -INFINITY : 0.f;
            for (int64_t ki = 0; ki < g->kh; ki++) {
                int64_t ih = h0 + ki * g->dh;
                nh_pad += ih >= -g->pt && ih < g->H + j->pb;
                if (ih < 0 || ih >= g->H)
                    continue;
                nh++;
                for (int64_t kj = 0; kj < g->kw; kj++) {
                    int64_t off = kj * g->dw - g->pl, ow0, ow1;
                    valid_range(off, g->sw, g->W, g->OW, &ow0, &ow1);
                    const float *restrict xr = xp + ih * g->W + off;
                    if (j->is_max) {
                        if (g->sw == 1) {
                            for (int64_t ow = ow0; ow < ow1; ow++)
                                yr[ow] = xr[ow] > yr[ow] ? xr[ow] : yr[ow];
                        } else {
                            for (int64_t ow = ow0; ow < ow1; ow++)
                                yr[ow] = xr[ow * g->sw] > yr[ow] ? xr[ow * g->sw] : yr[ow];
                        }
                    } else if (g->sw == 1) {
                        for (int64_t ow = ow0; ow < ow1; ow++)
                            yr[ow] += xr[ow];
                    } else {
                        for (int64_t ow = ow0; ow < ow1; ow++)
                            yr[ow] += xr[ow * g->sw];
                    }
                }
            }
            if (j->is_max)
                continue;
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t w0 = ow * g->sw - g->pl, nw = 0, nw_pad = 0;
                for (int64_t kj = 0; kj < g->kw; kj++) {
                    int64_t iw = w0 + kj * g->dw;
                    nw += iw >= 0 && iw < g->W;
                    nw_pad += iw >= -g->pl && iw < g->W + j->pr;
                }
                int64_t cnt = j->incl ? nh_pad * nw_pad : nh * nw;
                yr[ow] = cnt ? yr[ow] / (float)cnt : 0.f;
            }
        }
    }
}

KV_DEFINE(pool_planes, (const pooljob *j, int64_t lo, int64_t hi), (j, lo, hi))

static void pool_range(void *ctx, int64_t lo, int64_t hi)
{
    pool_planes(ctx, lo, hi);
}

static int k_pool(const onnx_kctx *k, const onnx_node *nd)
{
    geo g;
    const onnx_vstate *x = IN(0);
    geo_make(nd, x, OUT(0), k->ns, &g);
    pooljob j = {x->f,        OUT(0)->f,  &g, nd->def->sub == W_MAXPOOL, nd->p.count_include_pad,
                 k->ns->a[2], k->ns->a[3]};
    onnx_par_for(k->threads, g.N * g.C, 1 + 4096 / (g.OH * g.OW + 1), pool_range, &j);
    return 0;
}

static int k_gemm(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *a = IN(0), *b = IN(1), *o = OUT(0);
    int ta = nd->p.trans_a, tb = nd->p.trans_b;
    int64_t M = o->dim[0], N = o->dim[1], K = ta ? a->dim[0] : a->dim[1];
    float beta = 0.f;
    if (M * N == 0)
        return 0;
    if (HAS(2) && nd->p.beta != 0.f) {
        const onnx_vstate *c = IN(2);
        int64_t cm = c->rank == 2 ? c->dim[0] : 1, cn = c->rank >= 1 ? c->dim[c->rank - 1] : 1;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                o->f[i * N + j] = c->f[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
        beta = nd->p.beta;
    } else if (K == 0) {
        memset(o->f, 0, (size_t)(M * N) * sizeof(float));
    }
    if (K == 0) {
        for (int64_t i = 0; i < M * N; i++)
            o->f[i] *= beta;
        return 0;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, nd->p.alpha, a->f, ta ? (int)M : (int)K, b->f,
                tb ? (int)K : (int)N, beta, o->f, (int)N);
    return 0;
}

static int k_matmul(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *a = IN(0), *b = IN(1), *o = OUT(0);
    int a1 = a->rank == 1, b1 = b->rank == 1;
    int64_t M = a1 ? 1 : a->dim[a->rank - 2], K = a->dim[a->rank - 1];
    int64_t N = b1 ? 1 : b->dim[b->rank - 1];
    int ar = a1 ? 0 : a->rank - 2, br = b1 ? 0 : b->rank - 2;
    int r = ar > br ? ar : br;
    int64_t bd[H2T_MAX_RANK], sa[H2T_MAX_RANK], sb[H2T_MAX_RANK], nb = 1;
    int64_t ta = 1, tb = 1;
    for (int i = r - 1; i >= 0; i--) {
        int ia = i - (r - ar), ib = i - (r - br);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        bd[i] = da > db ? da : db;
        sa[i] = da == 1 ? 0 : ta;
        sb[i] = db == 1 ? 0 : tb;
        ta *= da;
        tb *= db;
        nb *= bd[i];
    }
    if (onnx_numel(o) == 0)
        return 0;
    if (K == 0) {
        memset(o->f, 0, (size_t)onnx_numel(o) * sizeof(float));
        return 0;
    }
    if (br == 0 && !a1) {
        /* weights shared by every batch: one product with the batch folded into M */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(ta * M), (int)N, (int)K, 1.f,
                    a->f, (int)K, b->f, (int)N, 0.f, o->f, (int)N);
        return 0;
    }
    if ((ta == nb || ta == 1) && (tb == nb || tb == 1)) {
        /* each operand batched like the output or shared (attention's N x heads products):
         * uniform strides, one batched call */
        h2t_nn_sgemm_batched(k->threads, nb, 0, 0, M, N, K, a->f, ta == 1 ? 0 : M * K, K, b->f,
                             tb == 1 ? 0 : K * N, N, o->f, M * N, N);
        return 0;
    }
    int64_t idx[H2T_MAX_RANK] = {0};
    for (int64_t t = 0; t < nb; t++) {
        int64_t oa = 0, ob = 0;
        for (int i = 0; i < r; i++) {
            oa += idx[i] * sa[i];
            ob += idx[i] * sb[i];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.f,
                    a->f + oa * M * K, (int)K, b->f + ob * K * N, (int)N, 0.f, o->f + t * M * N,
                    (int)N);
        for (int i = r - 1; i >= 0; i--) {
            if (++idx[i] < bd[i])
                break;
            idx[i] = 0;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- checks and shapes */

/* Conv / pool attributes: kernel_shape (pools, or Conv when given), strides, pads,
 * dilations, auto_pad. Spatial dims 1 or 2 (1-D is run as 2-D with H = 1). */
static int parse_window(onnx_node *nd, int is_conv)
{
    onnx_params *p = &nd->p;
    int64_t k[4], s[4], d[4], pads[8];
    int nk = onnx_attr_ints(nd, "kernel_shape", k, 4);
    if (nk == -2 || nk == 3 || nk == 4)
        return onnx_unsup(nd, "only 1-D and 2-D windows are supported", NULL);
    if (nk < 0 && !is_conv)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): kernel_shape missing", nd->name, nd->op);
    if (nk == 0)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): empty kernel_shape", nd->name, nd->op);
    p->spatial = nk > 0 ? nk : 0; /* 0: from the weights at inference */
    p->kernel[0] = p->kernel[1] = 1;
    p->strides[0] = p->strides[1] = 1;
    p->dil[0] = p->dil[1] = 1;
    memset(p->pads, 0, sizeof p->pads);
    if (nk == 1)
        p->kernel[1] = k[0];
    else if (nk == 2)
        p->kernel[0] = k[0], p->kernel[1] = k[1];
    int ns = onnx_attr_ints(nd, "strides", s, 4);
    int nd2 = onnx_attr_ints(nd, "dilations", d, 4);
    int np = onnx_attr_ints(nd, "pads", pads, 8);
    if (ns == -2 || ns > 2 || nd2 == -2 || nd2 > 2 || np == -2 || np > 4 || np == 3 || np == 1)
        return onnx_unsup(nd, "only 1-D and 2-D windows are supported", NULL);
    if (ns == 1)
        p->strides[1] = s[0];
    else if (ns == 2)
        p->strides[0] = s[0], p->strides[1] = s[1];
    if (nd2 == 1)
        p->dil[1] = d[0];
    else if (nd2 == 2)
        p->dil[0] = d[0], p->dil[1] = d[1];
    if (np == 2)
        p->pads[1] = pads[0], p->pads[3] = pads[1];
    else if (np == 4)
        p->pads[0] = pads[0], p->pads[1] = pads[1], p->pads[2] = pads[2], p->pads[3] = pads[3];
    p->has_ints = np > 0 ? np / 2 : 0; /* spatial count implied by pads */
    for (int i = 0; i < 2; i++)
        if (p->kernel[i] < 1 || p->strides[i] < 1 || p->dil[i] < 1 || p->pads[i] < 0 ||
            p->pads[i + 2] < 0)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): bad kernel/stride/dilation/pad",
                               nd->name, nd->op);
    const char *ap = onnx_attr_s(nd, "auto_pad", "NOTSET");
    if (!strcmp(ap, "NOTSET") || !ap[0])
        p->auto_pad = 0;
    else if (!strcmp(ap, "SAME_UPPER"))
        p->auto_pad = 1;
    else if (!strcmp(ap, "SAME_LOWER"))
        p->auto_pad = 2;
    else if (!strcmp(ap, "VALID"))
        p->auto_pad = 3;
    else
        return onnx_unsup(nd, "auto_pad=", ap);
    p->ceil_mode = (int)onnx_attr_i(nd, "ceil_mode", 0);
    p->count_include_pad = (int)onnx_attr_i(nd, "count_include_pad", 0);
    p->group = onnx_attr_i(nd, "group", 1);
    if (p->group < 1)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): group %lld", nd->name, nd->op,
                           (long long)p->group);
    return 0;
}

/* Output size of a window op for one spatial dim; pads resolved into pb/pe. */
static int window_dim(const onnx_node *nd, int64_t in, int64_t k, int64_t s, int64_t dil,
                      int64_t *pb, int64_t *pe, int64_t *out)
{
    const onnx_params *p = &nd->p;
    int64_t ek = (k - 1) * dil + 1;
    if (p->auto_pad == 1 || p->auto_pad == 2) {
        int64_t o = (in + s - 1) / s;
        int64_t total = (o - 1) * s + ek - in;
        if (total < 0)
            total = 0;
        *pb = p->auto_pad == 1 ? total / 2 : total - total / 2;
        *pe = total - *pb;
        *out = o;
        return 0;
    }
    if (p->auto_pad == 3)
        *pb = *pe = 0;
    int64_t span = in + *pb + *pe - ek;
    if (span < 0)
        return onnx_shape_err(nd, "window %lld larger than the padded input %lld", (long long)ek,
                              (long long)(in + *pb + *pe));
    int64_t o = p->ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
    /* ceil mode: the last window must start inside the input or left padding */
    if (p->ceil_mode && (o - 1) * s >= in + *pb)
        o--;
    *out = o;
    return 0;
}

static int infer_window(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    const onnx_params *p = &nd->p;
    const onnx_vstate *x = VIN(0);
    if (x->rank != 3 && x->rank != 4)
        return x->rank == 5 ? h2t_err_set(H2T_EUNSUPPORTED,
                                          "operator %s (node '%s'): 3-D windows are not supported",
                                          nd->op, nd->name)
                            : onnx_shape_err(nd, "input rank %lld (expected 3 or 4)", x->rank, 0);
    int sp = x->rank - 2;
    if (p->spatial && p->spatial != sp)
        return onnx_shape_err(nd, "kernel has %lld spatial dims, input %lld", p->spatial, sp);
    int64_t H = sp == 2 ? x->dim[2] : 1, W = x->dim[x->rank - 1];
    int64_t kh = p->kernel[0], kw = p->kernel[1], C = x->dim[1], M = C;
    if (nd->def->sub == W_CONV) {
        const onnx_vstate *w = VIN(1);
        if (w->rank != x->rank)
            return onnx_shape_err(nd, "weight rank %lld vs input rank %lld", w->rank, x->rank);
        M = w->dim[0];
        if (w->dim[1] * p->group != C || M % p->group)
            return onnx_shape_err(nd, "weights for %lld input channels, input has %lld",
                                  (long long)(w->dim[1] * p->group), (long long)C);
        kh = sp == 2 ? w->dim[2] : 1;
        kw = w->dim[w->rank - 1];
        if (p->spatial && (kh != p->kernel[0] || kw != p->kernel[1]))
            return onnx_shape_err(nd, "kernel_shape disagrees with the weights (%lld x %lld)", kh,
                                  kw);
        if (HAS(2) && (VIN(2)->rank != 1 || VIN(2)->dim[0] != M))
            return onnx_shape_err(nd, "bias of %lld for %lld output channels",
                                  VIN(2)->rank == 1 ? VIN(2)->dim[0] : -1, M);
    }
    int64_t pads[4];
    memcpy(pads, p->pads, sizeof pads);
    int64_t oh, ow;
    int rc = window_dim(nd, H, kh, p->strides[0], p->dil[0], &pads[0], &pads[2], &oh);
    if (rc == 0)
        rc = window_dim(nd, W, kw, p->strides[1], p->dil[1], &pads[1], &pads[3], &ow);
    if (rc < 0)
        return rc;
    if (sp == 1 && (pads[0] || pads[2]))
        pads[0] = pads[2] = 0;
    int64_t d[4] = {x->dim[0], M, oh, ow};
    if (sp == 1)
        d[2] = ow;
    onnx_set_shape(VOUT(0), x->rank, d);
    /* resolved: pads t,l,b,r; kernel h,w */
    ns->a[0] = pads[0], ns->a[1] = pads[1], ns->a[2] = pads[2], ns->a[3] = pads[3];
    ns->a[4] = kh, ns->a[5] = kw;
    return 0;
}

static int infer_matmul(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    onnx_vstate a = *VIN(0), b = *VIN(1);
    if (a.rank < 1 || b.rank < 1)
        return onnx_shape_err(nd, "scalar operand", 0, 0);
    int a1 = a.rank == 1, b1 = b.rank == 1;
    if (a1) {
        a.rank = 2, a.dim[1] = a.dim[0], a.dim[0] = 1;
    }
    if (b1) {
        b.rank = 2, b.dim[1] = 1;
    }
    if (a.dim[a.rank - 1] != b.dim[b.rank - 2])
        return onnx_shape_err(nd, "inner dimensions %lld and %lld", a.dim[a.rank - 1],
                              b.dim[b.rank - 2]);
    onnx_vstate ba = a, bb = b, o;
    ba.rank -= 2;
    bb.rank -= 2;
    int rc = onnx_bcast_shape(nd, &ba, &bb, &o);
    if (rc < 0)
        return rc;
    int r = o.rank;
    if (!a1)
        o.dim[r++] = a.dim[a.rank - 2];
    if (!b1)
        o.dim[r++] = b.dim[b.rank - 1];
    if (r > H2T_MAX_RANK)
        return onnx_shape_err(nd, "rank %lld", r, 0);
    onnx_set_shape(VOUT(0), r, o.dim);
    return 0;
}

static int parse_conv(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    return parse_window(nd, 1);
}

static int parse_maxpool(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    if (nd->n_out > 1)
        return onnx_unsup(nd, "the Indices output is not supported", NULL);
    if (onnx_attr_i(nd, "storage_order", 0) != 0)
        return onnx_unsup(nd, "storage_order=1 is not supported", NULL);
    return parse_window(nd, 0);
}

static int parse_avgpool(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    if (onnx_attr_get(nd, "dilations"))
        return onnx_unsup(nd, "dilations are not supported", NULL);
    return parse_window(nd, 0);
}

static int parse_gemm(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    onnx_params *p = &nd->p;
    p->alpha = onnx_attr_f(nd, "alpha", 1.f);
    p->beta = onnx_attr_f(nd, "beta", 1.f);
    p->trans_a = (int)onnx_attr_i(nd, "transA", 0);
    p->trans_b = (int)onnx_attr_i(nd, "transB", 0);
    return 0;
}

static int infer_gemm(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const onnx_params *p = &nd->p;
    const onnx_vstate *x = VIN(0), *b = VIN(1);
    if (x->rank != 2 || b->rank != 2)
        return onnx_shape_err(nd, "ranks %lld and %lld (expected 2)", x->rank, b->rank);
    int64_t M = p->trans_a ? x->dim[1] : x->dim[0], K = p->trans_a ? x->dim[0] : x->dim[1];
    int64_t K2 = p->trans_b ? b->dim[1] : b->dim[0], N = p->trans_b ? b->dim[0] : b->dim[1];
    if (K != K2)
        return onnx_shape_err(nd, "inner dimensions %lld and %lld", K, K2);
    int64_t d[2] = {M, N};
    onnx_set_shape(VOUT(0), 2, d);
    if (HAS(2)) {
        onnx_vstate t;
        if (onnx_bcast_shape(nd, VOUT(0), VIN(2), &t) < 0 || t.rank != 2 || t.dim[0] != M ||
            t.dim[1] != N)
            return onnx_shape_err(nd, "C does not broadcast to %lld x %lld", M, N);
    }
    return 0;
}

/* ---------------------------------------------------------------- table */

const onnx_opdef onnx_ops_conv[] = {
    {"Conv", .min_in = 2, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = W_CONV,
     .parse = parse_conv, .infer = infer_window, .run = k_conv, .scratch = k_conv_scratch},
    {"MaxPool", .min_in = 1, .max_in = 1, .max_out = 2, .dt = ONNX_DTR_FLOAT, .sub = W_MAXPOOL,
     .parse = parse_maxpool, .infer = infer_window, .run = k_pool},
    {"AveragePool", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT, .sub = W_AVGPOOL,
     .parse = parse_avgpool, .infer = infer_window, .run = k_pool},
    {"Gemm", .min_in = 2, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_FLOAT, .parse = parse_gemm,
     .infer = infer_gemm, .run = k_gemm},
    {"MatMul", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_FLOAT, .infer = infer_matmul,
     .run = k_matmul},
};
const int onnx_ops_conv_n = sizeof onnx_ops_conv / sizeof onnx_ops_conv[0];

/* ---------------------------------------------------------------- batched products */

typedef struct gb_job {
    int ta, tb;
    int64_t M, N, K, sa, lda, sb, ldb, sc, ldc;
    const float *a, *b;
    float *c;
} gb_job;

static void gb_range(void *ctx, int64_t lo, int64_t hi)
{
    const gb_job *j = ctx;
    for (int64_t i = lo; i < hi; i++)
        cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans,
                    j->tb ? CblasTrans : CblasNoTrans, (int)j->M, (int)j->N, (int)j->K, 1.f,
                    j->a + i * j->sa, (int)j->lda, j->b + i * j->sb, (int)j->ldb, 0.f,
                    j->c + i * j->sc, (int)j->ldc);
}

/* Products under this many multiply-adds run one per thread rather than each on all threads:
 * OpenBLAS's own split of a small product costs more in synchronisation than it gains. */
#define GB_SMALL (1 << 24)

void h2t_nn_sgemm_batched(int threads, int64_t nb, int ta, int tb, int64_t M, int64_t N, int64_t K,
                          const float *a, int64_t sa, int64_t lda, const float *b, int64_t sb,
                          int64_t ldb, float *c, int64_t sc, int64_t ldc)
{
    if (nb <= 0 || M == 0 || N == 0)
        return;
    if (K == 0) {
        for (int64_t i = 0; i < nb; i++)
            for (int64_t r = 0; r < M; r++)
                memset(c + i * sc + r * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    gb_job j = {ta, tb, M, N, K, sa, lda, sb, ldb, sc, ldc, a, b, c};
    int bt = h2t_blas_threads_get();
    if (threads > 1 && nb > 1 && M * N * K < GB_SMALL) {
        if (bt > 1)
            h2t_blas_threads(1);
        onnx_par_for(threads, nb, 1, gb_range, &j);
        if (bt > 1)
            h2t_blas_threads(bt);
    } else {
        gb_range(&j, 0, nb);
    }
}
