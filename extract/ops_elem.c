/*
 * extract/ops_elem.c - element-wise, normalisation, reduction and data-movement kernels, and
 * the kernel dispatch (onnx_kernel_run). Convolutions, pools and matrix products are in
 * ops_conv.c. Every kernel reads shapes from the inferred state; none allocates.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common/err.h"
#include "extract/onnx_graph.h"

#define IN(j) (&k->vs[nd->in[j]])
#define OUT(j) (&k->vs[nd->out[j]])
#define HAS(i) ((i) < nd->n_in && nd->in[i] >= 0)

/* ---------------------------------------------------------------- parallel for */

typedef struct par_job {
    onnx_par_fn fn;
    void *ctx;
    int64_t lo, hi;
} par_job;

static void *par_main(void *arg)
{
    par_job *j = arg;
    j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

/* Threads are started per call: a kernel runs for milliseconds, a thread start costs tens of
 * microseconds, and there is no pool to own or shut down. */
void onnx_par_for(int threads, int64_t n, int64_t min_chunk, onnx_par_fn fn, void *ctx)
{
    if (threads > 8)
        threads = 8;
    if (min_chunk < 1)
        min_chunk = 1;
    if (threads > 1 && n / min_chunk < threads)
        threads = (int)(n / min_chunk);
    if (threads <= 1) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    pthread_t tid[8];
    par_job job[8];
    int started[8] = {0};
    for (int t = 0; t < threads; t++) {
        job[t].fn = fn;
        job[t].ctx = ctx;
        job[t].lo = n * t / threads;
        job[t].hi = n * (t + 1) / threads;
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, par_main, &job[t]) == 0;
    fn(ctx, job[0].lo, job[0].hi);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            fn(ctx, job[t].lo, job[t].hi);
    }
}

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

void onnx_k_binary_i64(int op, const onnx_vstate *a, const onnx_vstate *b, const onnx_vstate *o,
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
        po[t] = op == OP_ADD ? x + y : op == OP_SUB ? x - y : op == OP_MUL ? x * y : x / y;
        for (int i = r - 1; i >= 0; i--) {
            if (++idx[i] < o->dim[i])
                break;
            idx[i] = 0;
        }
    }
}

/* ---------------------------------------------------------------- data movement */

void onnx_k_gather(const void *data, int64_t outer, int64_t axis_n, int64_t inner,
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

void onnx_k_transpose(const void *in, const int64_t *idim, int rank, const int64_t *perm, void *out,
                      size_t esz)
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

void onnx_k_slice(const void *in, const onnx_vstate *is, const int64_t *start, const int64_t *step,
                  const onnx_vstate *os, void *out, size_t esz)
{
    int r = is->rank;
    int64_t n = onnx_numel(os), istr[H2T_MAX_RANK], s = 1, idx[H2T_MAX_RANK] = {0};
    if (n == 0)
        return;
    for (int i = r - 1; i >= 0; i--) {
        istr[i] = s;
        s *= is->dim[i];
    }
    const char *src = in;
    char *dst = out;
    for (int64_t t = 0; t < n; t++) {
        int64_t off = 0;
        for (int i = 0; i < r; i++)
            off += (start[i] + idx[i] * step[i]) * istr[i];
        memcpy(dst + (size_t)t * esz, src + (size_t)off * esz, esz);
        for (int i = r - 1; i >= 0; i--) {
            if (++idx[i] < os->dim[i])
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
    switch (nd->kind) {
    case OP_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.f ? x[i] : 0.f;
        break;
    case OP_LEAKYRELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] >= 0.f ? x[i] : al * x[i];
        break;
    case OP_HARDSIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = clampf(al * x[i] + be, 0.f, 1.f);
        break;
    case OP_HARDSWISH:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * clampf(x[i] * (1.f / 6.f) + 0.5f, 0.f, 1.f);
        break;
    case OP_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = 1.f / (1.f + expf(-x[i]));
        break;
    case OP_TANH:
        for (int64_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    case OP_ABS:
        for (int64_t i = 0; i < n; i++)
            y[i] = fabsf(x[i]);
        break;
    case OP_NEG:
        for (int64_t i = 0; i < n; i++)
            y[i] = -x[i];
        break;
    case OP_EXP:
        for (int64_t i = 0; i < n; i++)
            y[i] = expf(x[i]);
        break;
    case OP_LOG:
        for (int64_t i = 0; i < n; i++)
            y[i] = logf(x[i]);
        break;
    case OP_SQRT:
        for (int64_t i = 0; i < n; i++)
            y[i] = sqrtf(x[i]);
        break;
    case OP_RECIPROCAL:
        for (int64_t i = 0; i < n; i++)
            y[i] = 1.f / x[i];
        break;
    case OP_FLOOR:
        for (int64_t i = 0; i < n; i++)
            y[i] = floorf(x[i]);
        break;
    case OP_CEIL:
        for (int64_t i = 0; i < n; i++)
            y[i] = ceilf(x[i]);
        break;
    case OP_ERF:
        for (int64_t i = 0; i < n; i++)
            y[i] = erff(x[i]);
        break;
    case OP_ELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] >= 0.f ? x[i] : al * (expf(x[i]) - 1.f);
        break;
    case OP_SELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.f ? be * x[i] : be * (al * expf(x[i]) - al);
        break;
    case OP_SOFTPLUS:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 20.f ? x[i] : log1pf(expf(x[i]));
        break;
    case OP_SOFTSIGN:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] / (1.f + fabsf(x[i]));
        break;
    case OP_CLIP: {
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
    bin_fn f = nd->kind == OP_ADD   ? bin_add
               : nd->kind == OP_SUB ? bin_sub
               : nd->kind == OP_MUL ? bin_mul
               : nd->kind == OP_DIV ? bin_div
               : nd->kind == OP_POW ? bin_pow
                                    : bin_prelu;
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
    int logsm = nd->kind == OP_LOGSOFTMAX;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const float *xp = x->f + o * len * inner + j;
            float *yp = OUT(0)->f + o * len * inner + j;
            float mx = -INFINITY;
            for (int64_t i = 0; i < len; i++)
                mx = xp[i * inner] > mx ? xp[i * inner] : mx;
            double s = 0;
            for (int64_t i = 0; i < len; i++) {
                float e = expf(xp[i * inner] - mx);
                yp[i * inner] = e;
                s += e;
            }
            float ls = (float)log(s), inv = (float)(1.0 / s);
            for (int64_t i = 0; i < len; i++)
                yp[i * inner] = logsm ? xp[i * inner] - mx - ls : yp[i * inner] * inv;
        }
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
        if (nd->kind == OP_GAP) {
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

static int k_reducemean(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *x = IN(0);
    int r = x->rank;
    int64_t n = onnx_numel(x), on = onnx_numel(OUT(0));
    /* output strides per input axis (0 on reduced axes) */
    int64_t ostr[H2T_MAX_RANK], s = 1, idx[H2T_MAX_RANK] = {0}, cnt = 1;
    for (int i = r - 1; i >= 0; i--) {
        if (k->ns->a[i]) {
            ostr[i] = 0;
            cnt *= x->dim[i];
        } else {
            ostr[i] = s;
            s *= x->dim[i];
        }
    }
    float *y = OUT(0)->f;
    for (int64_t i = 0; i < on; i++)
        y[i] = 0.f;
    if (r == 0) {
        y[0] = x->f[0];
        return 0;
    }
    int64_t inner = x->dim[r - 1];
    for (int64_t t = 0; t < n; t += inner) {
        int64_t oo = 0;
        for (int i = 0; i < r - 1; i++)
            oo += idx[i] * ostr[i];
        const float *xp = x->f + t;
        if (ostr[r - 1] == 0) {
            float acc = 0.f;
            for (int64_t j = 0; j < inner; j++)
                acc += xp[j];
            y[oo] += acc;
        } else {
            for (int64_t j = 0; j < inner; j++)
                y[oo + j] += xp[j];
        }
        for (int i = r - 2; i >= 0; i--) {
            if (++idx[i] < x->dim[i])
                break;
            idx[i] = 0;
        }
    }
    float inv = cnt ? 1.f / (float)cnt : NAN;
    for (int64_t i = 0; i < on; i++)
        y[i] *= inv;
    return 0;
}

size_t onnx_kernel_scratch(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns)
{
    if (nd->kind == OP_CONV)
        return onnx_k_conv_scratch(nd, vs, ns);
    return 0;
}

int onnx_kernel_run(const onnx_kctx *k, const onnx_node *nd)
{
    switch (nd->kind) {
    case OP_CONV:
        return onnx_k_conv(k, nd);
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        return onnx_k_pool(k, nd);
    case OP_GEMM:
        return onnx_k_gemm(k, nd);
    case OP_MATMUL:
        return onnx_k_matmul(k, nd);
    case OP_BN:
        return k_bn(k, nd);
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_POW:
    case OP_PRELU:
        return k_binary(k, nd);
    case OP_SOFTMAX:
    case OP_LOGSOFTMAX:
        return k_softmax(k, nd);
    case OP_GAP:
    case OP_GMP:
        return k_gpool(k, nd);
    case OP_PAD:
        return k_pad(k, nd);
    case OP_CONCAT:
        return k_concat(k, nd);
    case OP_REDUCEMEAN:
        return k_reducemean(k, nd);
    case OP_TRANSPOSE:
        onnx_k_transpose(IN(0)->f, IN(0)->dim, IN(0)->rank, k->ns->a, OUT(0)->f, 4);
        return 0;
    case OP_GATHER:
        onnx_k_gather(IN(0)->f, k->ns->a[0], k->ns->a[1], k->ns->a[2], IN(1)->ival,
                      onnx_numel(IN(1)), OUT(0)->f, 4);
        return 0;
    case OP_SLICE:
        onnx_k_slice(IN(0)->f, IN(0), k->ns->a, k->ns->b, OUT(0), OUT(0)->f, 4);
        return 0;
    case OP_CAST: {
        int64_t n = onnx_numel(OUT(0));
        if (IN(0)->ival) {
            for (int64_t i = 0; i < n; i++)
                OUT(0)->f[i] = (float)IN(0)->ival[i];
        } else if (n) {
            memcpy(OUT(0)->f, IN(0)->f, (size_t)n * sizeof(float));
        }
        return 0;
    }
    default:
        return k_unary(k, nd);
    }
}
