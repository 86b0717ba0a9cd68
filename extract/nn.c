/*
 * extract/nn.c - the numeric kernels of nn.h: exp / erf polynomials written so that the
 * compiler vectorises them (no calls, no branches: both sides computed and selected), GELU,
 * softmax, layer / group normalisation and reductions.
 *
 * exp: Cody-Waite reduction x = n ln2 + r (|r| <= ln2/2, ln2 split so n * hi is exact), the
 * degree-7 Taylor polynomial of e^r (truncation 5e-9 relative), then 2^n applied in two
 * halves so that every n of the range has a normal scale factor.
 * erf: |x| < 0.921875: x P(x^2) with P of degree 5; above: 1 - exp(Q(|x|)) with Q of degree 9
 * fitting log(erfc) on [0.921875, 4] (erf rounds to 1 beyond 3.92). The coefficients are
 * weighted least-squares fits in double (relative error 1.6e-8 and absolute error 8e-9 in the
 * logarithm), rounded to float; tests/test_nn.c checks the float evaluation against erf in
 * double over a dense grid.
 *
 * -fno-trapping-math (the pragma below) lets the compiler evaluate both sides of each select
 * and vectorise the loops (with trapping math it keeps branches); it changes no value.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>
#include <string.h>

#include "extract/kern.h"
#include "extract/nn.h"
#include "extract/onnx_graph.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NN_AVX __attribute__((target("avx,fma")))
#define NN_HAVE_AVX 1
#else
#define NN_AVX
#define NN_HAVE_AVX 0
#endif
#define NN_INLINE static inline __attribute__((always_inline))

/* A function body compiled twice: NAME_c (portable) and NAME_avx; NAME picks at run time. */
#define NN_DUAL(NAME, PARAMS, ARGS, ...)                                                           \
    NN_INLINE void NAME##_body PARAMS __VA_ARGS__ static void NAME##_c PARAMS                      \
    {                                                                                              \
        NAME##_body ARGS;                                                                          \
    }                                                                                              \
    NN_AVX static void NAME##_avx PARAMS                                                           \
    {                                                                                              \
        NAME##_body ARGS;                                                                          \
    }

static int use_avx(void)
{
    return NN_HAVE_AVX && h2t_kern_isa() >= H2T_ISA_AVX_FMA;
}

/* ---------------------------------------------------------------- exp, erf */

NN_INLINE float bits_f(int32_t i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}

NN_INLINE float exp1(float x)
{
    const float lo = -87.33654f, hi = 88.72283f;
    float xc = x > lo ? x : lo; /* NaN -> lo; put back at the end */
    xc = xc < hi ? xc : hi;
    float n = (xc * 1.44269504f + 12582912.f) - 12582912.f; /* round(x / ln2) */
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.f / 5040.f;
    p = p * r + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    int32_t ni = (int32_t)n, n1 = ni >> 1, n2 = ni - n1; /* both in [-63, 64] */
    float y = p * bits_f((n1 + 127) << 23) * bits_f((n2 + 127) << 23);
    y = x < lo ? 0.f : y;
    y = x > hi ? INFINITY : y;
    return x != x ? x : y;
}

/* e^x for x in [-87, 0] without the guards of exp1 (erf's tail argument stays in [-18, -0.9]):
 * the same arithmetic, one scale factor. */
NN_INLINE float exp_neg(float x)
{
    float n = (x * 1.44269504f + 12582912.f) - 12582912.f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.f / 5040.f;
    p = p * r + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    return p * bits_f(((int32_t)n + 127) << 23);
}

NN_INLINE float erf1(float x)
{
    float a = fabsf(x), s = x * x;
    float p = -5.99114690e-4f;
    p = p * s + 4.99324966e-3f;
    p = p * s - 2.67666765e-2f;
    p = p * s + 1.12818182e-1f;
    p = p * s - 3.76124948e-1f;
    p = p * s + 1.12837911e+0f;
    float small = x * p;
    float t = a < 4.f ? a : 4.f;
    float q = -2.73428418e-8f;
    q = q * t + 2.21968853e-6f;
    q = q * t - 5.14062379e-5f;
    q = q * t + 6.24485055e-4f;
    q = q * t - 4.84825759e-3f;
    q = q * t + 2.66026273e-2f;
    q = q * t - 1.10316316e-1f;
    q = q * t - 6.31638650e-1f;
    q = q * t - 1.13031502e+0f;
    q = q * t + 3.34826282e-4f;
    float big = 1.f - exp_neg(q);
    big = x < 0.f ? -big : big;
    float y = a < 0.921875f ? small : big;
    return x != x ? x : y;
}

NN_DUAL(exp_run, (const float *x, int64_t n, float *y), (x, n, y), {
    for (int64_t i = 0; i < n; i++)
        y[i] = exp1(x[i]);
})

void h2t_nn_exp(const float *x, int64_t n, float *y)
{
    (use_avx() ? exp_run_avx : exp_run_c)(x, n, y);
}

NN_DUAL(erf_run, (const float *x, int64_t n, float *y), (x, n, y), {
    for (int64_t i = 0; i < n; i++)
        y[i] = erf1(x[i]);
})

NN_DUAL(gelu_run, (const float *x, int64_t n, int approx, float *y), (x, n, approx, y), {
    if (approx) {
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            float u = 0.7978845608f * (v + 0.044715f * v * v * v);
            float th = 1.f - 2.f / (exp1(2.f * u) + 1.f);
            y[i] = 0.5f * v * (1.f + th);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.f + erf1(v * 0.70710678f));
        }
    }
})

typedef struct ew_job {
    const float *x;
    float *y;
    int mode; /* 0 erf, 1 gelu, 2 gelu tanh */
    int avx;
} ew_job;

static void ew_range(void *ctx, int64_t lo, int64_t hi)
{
    const ew_job *j = ctx;
    if (j->mode == 0)
        (j->avx ? erf_run_avx : erf_run_c)(j->x + lo, hi - lo, j->y + lo);
    else
        (j->avx ? gelu_run_avx : gelu_run_c)(j->x + lo, hi - lo, j->mode == 2, j->y + lo);
}

void h2t_nn_erf(int threads, const float *x, int64_t n, float *y)
{
    ew_job j = {x, y, 0, use_avx()};
    onnx_par_for(threads, n, 1 << 14, ew_range, &j);
}

void h2t_nn_gelu(int threads, const float *x, int64_t n, int approximate, float *y)
{
    ew_job j = {x, y, approximate ? 2 : 1, use_avx()};
    onnx_par_for(threads, n, 1 << 14, ew_range, &j);
}

/* ---------------------------------------------------------------- softmax */

NN_DUAL(softmax_row, (const float *x, int64_t len, int is_log, float *y), (x, len, is_log, y), {
    float m8[8], s8[8];
    for (int j = 0; j < 8; j++)
        m8[j] = -INFINITY, s8[j] = 0.f;
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int j = 0; j < 8; j++)
            m8[j] = x[i + j] > m8[j] ? x[i + j] : m8[j];
    for (; i < len; i++)
        m8[0] = x[i] > m8[0] ? x[i] : m8[0];
    float mx = m8[0];
    for (int j = 1; j < 8; j++)
        mx = m8[j] > mx ? m8[j] : mx;
    for (i = 0; i + 8 <= len; i += 8)
        for (int j = 0; j < 8; j++) {
            float e = exp1(x[i + j] - mx);
            y[i + j] = e;
            s8[j] += e;
        }
    for (; i < len; i++) {
        float e = exp1(x[i] - mx);
        y[i] = e;
        s8[0] += e;
    }
    float s = ((s8[0] + s8[4]) + (s8[1] + s8[5])) + ((s8[2] + s8[6]) + (s8[3] + s8[7]));
    if (is_log) {
        float ls = logf(s); /* (x - max) first: exact where x is near max */
        for (i = 0; i < len; i++)
            y[i] = (x[i] - mx) - ls;
    } else {
        float inv = 1.f / s;
        for (i = 0; i < len; i++)
            y[i] *= inv;
    }
})

typedef struct sm_job {
    const float *x;
    float *y;
    int64_t len, inner;
    int is_log, avx;
} sm_job;

static void sm_rows(void *ctx, int64_t lo, int64_t hi)
{
    const sm_job *j = ctx;
    for (int64_t r = lo; r < hi; r++)
        (j->avx ? softmax_row_avx : softmax_row_c)(j->x + r * j->len, j->len, j->is_log,
                                                   j->y + r * j->len);
}

void h2t_nn_softmax_rows(int threads, const float *x, int64_t rows, int64_t len, int is_log,
                         float *y)
{
    sm_job j = {x, y, len, 1, is_log, use_avx()};
    if (len > 0)
        onnx_par_for(threads, rows, (1 << 14) / len + 1, sm_rows, &j);
}

static void sm_strided(void *ctx, int64_t lo, int64_t hi)
{
    const sm_job *j = ctx;
    int64_t len = j->len, inner = j->inner;
    for (int64_t o = lo; o < hi; o++)
        for (int64_t c = 0; c < inner; c++) {
            const float *xp = j->x + o * len * inner + c;
            float *yp = j->y + o * len * inner + c;
            float mx = -INFINITY;
            for (int64_t i = 0; i < len; i++)
                mx = xp[i * inner] > mx ? xp[i * inner] : mx;
            float s = 0.f;
            for (int64_t i = 0; i < len; i++) {
                float e = exp1(xp[i * inner] - mx);
                yp[i * inner] = e;
                s += e;
            }
            float ls = logf(s), inv = 1.f / s;
            for (int64_t i = 0; i < len; i++)
                yp[i * inner] = j->is_log ? (xp[i * inner] - mx) - ls : yp[i * inner] * inv;
        }
}

void h2t_nn_softmax_strided(int threads, const float *x, int64_t outer, int64_t len, int64_t inner,
                            int is_log, float *y)
{
    sm_job j = {x, y, len, inner, is_log, 0};
    if (len > 0 && inner > 0)
        onnx_par_for(threads, outer, (1 << 14) / (len * inner) + 1, sm_strided, &j);
}

/* ---------------------------------------------------------------- normalisation */

/* Mean and biased variance of n floats, two passes, 8 double lanes each. */
NN_INLINE void moments(const float *x, int64_t n, double *mean, double *var)
{
    double s8[8] = {0}, v8[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s8[j] += (double)x[i + j];
    for (; i < n; i++)
        s8[0] += (double)x[i];
    double s = ((s8[0] + s8[4]) + (s8[1] + s8[5])) + ((s8[2] + s8[6]) + (s8[3] + s8[7]));
    double mu = n ? s / (double)n : 0.;
    for (i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            double d = (double)x[i + j] - mu;
            v8[j] += d * d;
        }
    for (; i < n; i++) {
        double d = (double)x[i] - mu;
        v8[0] += d * d;
    }
    double v = ((v8[0] + v8[4]) + (v8[1] + v8[5])) + ((v8[2] + v8[6]) + (v8[3] + v8[7]));
    *mean = mu;
    *var = n ? v / (double)n : 0.;
}

NN_DUAL(ln_row,
        (const float *x, int64_t n, const float *sc, const float *bi, float eps, float *y,
         float *mo, float *io),
        (x, n, sc, bi, eps, y, mo, io), {
            double mu, var;
            moments(x, n, &mu, &var);
            float m = (float)mu, inv = (float)(1. / sqrt(var + (double)eps));
            if (bi)
                for (int64_t i = 0; i < n; i++)
                    y[i] = (x[i] - m) * inv * sc[i] + bi[i];
            else
                for (int64_t i = 0; i < n; i++)
                    y[i] = (x[i] - m) * inv * sc[i];
            *mo = m;
            *io = inv;
        })

/* (x - m) * inv * a + b over n floats (one channel of a group). */
NN_DUAL(norm_apply, (const float *x, int64_t n, float m, float inv, float a, float b, float *y),
        (x, n, m, inv, a, b, y), {
            for (int64_t i = 0; i < n; i++)
                y[i] = (x[i] - m) * inv * a + b;
        })

typedef struct norm_job {
    const float *x, *sc, *bi;
    float *y, *mean, *inv;
    int64_t cols;           /* layernorm: row length */
    int64_t C, S, G, per_g; /* groupnorm */
    float eps;
    int avx;
} norm_job;

static void ln_range(void *ctx, int64_t lo, int64_t hi)
{
    const norm_job *j = ctx;
    for (int64_t r = lo; r < hi; r++) {
        float m, iv;
        (j->avx ? ln_row_avx : ln_row_c)(j->x + r * j->cols, j->cols, j->sc, j->bi, j->eps,
                                         j->y + r * j->cols, &m, &iv);
        if (j->mean)
            j->mean[r] = m;
        if (j->inv)
            j->inv[r] = iv;
    }
}

void h2t_nn_layernorm(int threads, const float *x, int64_t rows, int64_t cols, const float *scale,
                      const float *bias, float eps, float *y, float *mean, float *inv_std)
{
    norm_job j = {x, scale, bias, y, mean, inv_std, cols, 0, 0, 0, 0, eps, use_avx()};
    onnx_par_for(threads, rows, (1 << 14) / (cols + 1) + 1, ln_range, &j);
}

static void gn_range(void *ctx, int64_t lo, int64_t hi)
{
    const norm_job *j = ctx;
    int64_t Cg = j->C / j->G, blk = Cg * j->S;
    for (int64_t r = lo; r < hi; r++) {
        int64_t g = r % j->G;
        const float *xp = j->x + r * blk;
        float *yp = j->y + r * blk;
        double mu, var;
        moments(xp, blk, &mu, &var);
        float m = (float)mu, inv = (float)(1. / sqrt(var + (double)j->eps));
        for (int64_t c = 0; c < Cg; c++) {
            int64_t ci = j->per_g ? g : g * Cg + c;
            (j->avx ? norm_apply_avx : norm_apply_c)(xp + c * j->S, j->S, m, inv, j->sc[ci],
                                                     j->bi[ci], yp + c * j->S);
        }
    }
}

void h2t_nn_groupnorm(int threads, const float *x, int64_t N, int64_t C, int64_t S, int64_t G,
                      const float *scale, const float *bias, int per_group, float eps, float *y)
{
    norm_job j = {x, scale, bias, y, NULL, NULL, 0, C, S, G, per_group, eps, use_avx()};
    if (G > 0)
        onnx_par_for(threads, N * G, (1 << 14) / (C / G * S + 1) + 1, gn_range, &j);
}

/* ---------------------------------------------------------------- reductions */

static double r_identity(int op)
{
    switch (op) {
    case H2T_NN_RPROD:
        return 1.;
    case H2T_NN_RMAX:
        return -INFINITY;
    case H2T_NN_RMIN:
        return INFINITY;
    default:
        return 0.;
    }
}

static float r_final(int op, double acc, int64_t cnt)
{
    switch (op) {
    case H2T_NN_RMEAN:
        return cnt ? (float)(acc / (double)cnt) : NAN;
    case H2T_NN_RL2:
        return (float)sqrt(acc);
    case H2T_NN_RLOGSUM:
    case H2T_NN_RLOGSUMEXP:
        return (float)log(acc);
    default:
        return (float)acc;
    }
}

/* acc[j] op= x[j] for j < n: the reduced element at one position of many outputs. */
static void r_vec(int op, double *acc, const float *x, int64_t n)
{
    switch (op) {
    case H2T_NN_RSUM:
    case H2T_NN_RMEAN:
    case H2T_NN_RLOGSUM:
        for (int64_t j = 0; j < n; j++)
            acc[j] += (double)x[j];
        break;
    case H2T_NN_RL1:
        for (int64_t j = 0; j < n; j++)
            acc[j] += fabs((double)x[j]);
        break;
    case H2T_NN_RL2:
    case H2T_NN_RSUMSQ:
        for (int64_t j = 0; j < n; j++)
            acc[j] += (double)x[j] * (double)x[j];
        break;
    case H2T_NN_RLOGSUMEXP:
        for (int64_t j = 0; j < n; j++)
            acc[j] += exp((double)x[j]);
        break;
    case H2T_NN_RPROD:
        for (int64_t j = 0; j < n; j++)
            acc[j] *= (double)x[j];
        break;
    case H2T_NN_RMAX:
        for (int64_t j = 0; j < n; j++)
            acc[j] = (x[j] != x[j] || x[j] > acc[j]) ? (double)x[j] : acc[j];
        break;
    case H2T_NN_RMIN:
        for (int64_t j = 0; j < n; j++)
            acc[j] = (x[j] != x[j] || x[j] < acc[j]) ? (double)x[j] : acc[j];
        break;
    default:
        break;
    }
}

/* l[j % 8] op= x[j] for j < n: a contiguous run of one output's reduced elements. */
static void r_run(int op, double *l, const float *x, int64_t n)
{
    int64_t i = 0;
    switch (op) {
    case H2T_NN_RSUM:
    case H2T_NN_RMEAN:
    case H2T_NN_RLOGSUM:
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++)
                l[j] += (double)x[i + j];
        break;
    case H2T_NN_RL2:
    case H2T_NN_RSUMSQ:
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++)
                l[j] += (double)x[i + j] * (double)x[i + j];
        break;
    default:
        break;
    }
    for (; i + 8 <= n; i += 8)
        r_vec(op, l, x + i, 8);
    if (i < n)
        r_vec(op, l, x + i, n - i);
}

static double r_combine(int op, const double *l)
{
    double a = l[0];
    for (int j = 1; j < 8; j++) {
        if (op == H2T_NN_RPROD)
            a *= l[j];
        else if (op == H2T_NN_RMAX)
            a = (l[j] != l[j] || l[j] > a) ? l[j] : a;
        else if (op == H2T_NN_RMIN)
            a = (l[j] != l[j] || l[j] < a) ? l[j] : a;
        else
            a += l[j];
    }
    return a;
}

/* Coalesced geometry: groups of adjacent axes with the same reduced flag. */
typedef struct rgeo {
    int op, ng;
    int64_t d[H2T_MAX_RANK], st[H2T_MAX_RANK];
    int red[H2T_MAX_RANK];
    int nk, nr; /* kept / reduced groups, last one excluded */
    int kg[H2T_MAX_RANK], rg[H2T_MAX_RANK];
    int64_t rcombos, cnt, inner; /* combos of the non-last reduced groups; elements; last */
    int last_red;
    const float *x;
    float *y;
} rgeo;

/* Offset of the reduced combo c (row-major over rg) from an output's base. */
static int64_t r_off(const rgeo *g, int64_t c)
{
    int64_t off = 0;
    for (int i = g->nr - 1; i >= 0; i--) {
        int a = g->rg[i];
        off += (c % g->d[a]) * g->st[a];
        c /= g->d[a];
    }
    return off;
}

/* Base offset of kept combo o (row-major over kg). */
static int64_t k_off(const rgeo *g, int64_t o)
{
    int64_t off = 0;
    for (int i = g->nk - 1; i >= 0; i--) {
        int a = g->kg[i];
        off += (o % g->d[a]) * g->st[a];
        o /= g->d[a];
    }
    return off;
}

static void red_last_range(void *ctx, int64_t lo, int64_t hi)
{
    const rgeo *g = ctx;
    for (int64_t o = lo; o < hi; o++) {
        int64_t base = k_off(g, o);
        double l[8];
        for (int j = 0; j < 8; j++)
            l[j] = r_identity(g->op);
        for (int64_t c = 0; c < g->rcombos; c++)
            r_run(g->op, l, g->x + base + r_off(g, c), g->inner);
        g->y[o] = r_final(g->op, r_combine(g->op, l), g->cnt);
    }
}

#define RCHUNK 256

static void red_kept_range(void *ctx, int64_t lo, int64_t hi)
{
    const rgeo *g = ctx;
    int64_t nch = (g->inner + RCHUNK - 1) / RCHUNK;
    double acc[RCHUNK];
    for (int64_t t = lo; t < hi; t++) {
        int64_t o = t / nch, c0 = (t % nch) * RCHUNK;
        int64_t n = g->inner - c0 < RCHUNK ? g->inner - c0 : RCHUNK;
        int64_t base = k_off(g, o) + c0;
        for (int64_t j = 0; j < n; j++)
            acc[j] = r_identity(g->op);
        for (int64_t c = 0; c < g->rcombos; c++)
            r_vec(g->op, acc, g->x + base + r_off(g, c), n);
        for (int64_t j = 0; j < n; j++)
            g->y[o * g->inner + c0 + j] = r_final(g->op, acc[j], g->cnt);
    }
}

void h2t_nn_reduce(int threads, int op, const float *x, int rank, const int64_t *dim,
                   const int *red, float *y)
{
    rgeo g;
    memset(&g, 0, sizeof g);
    g.op = op;
    g.x = x;
    g.y = y;
    int64_t on = 1, cnt = 1;
    for (int i = 0; i < rank; i++) {
        if (red[i])
            cnt *= dim[i];
        else
            on *= dim[i];
    }
    g.cnt = cnt;
    if (on == 0)
        return;
    if (cnt == 0) {
        for (int64_t o = 0; o < on; o++)
            y[o] = r_final(op, r_identity(op), 0);
        return;
    }
    /* drop size-1 axes, merge neighbours with the same flag (strides of the input) */
    int64_t s = 1, st[H2T_MAX_RANK];
    for (int i = rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= dim[i];
    }
    for (int i = 0; i < rank; i++) {
        if (dim[i] == 1)
            continue;
        int r = red[i] != 0;
        if (g.ng > 0 && g.red[g.ng - 1] == r && g.st[g.ng - 1] == st[i] * dim[i]) {
            g.d[g.ng - 1] *= dim[i];
            g.st[g.ng - 1] = st[i];
            continue;
        }
        g.d[g.ng] = dim[i];
        g.st[g.ng] = st[i];
        g.red[g.ng] = r;
        g.ng++;
    }
    if (g.ng == 0) { /* a single element */
        g.d[0] = 1;
        g.st[0] = 1;
        g.red[0] = 1;
        g.ng = 1;
    }
    g.last_red = g.red[g.ng - 1];
    g.inner = g.d[g.ng - 1];
    g.rcombos = 1;
    for (int i = 0; i < g.ng - 1; i++) {
        if (g.red[i]) {
            g.rg[g.nr++] = i;
            g.rcombos *= g.d[i];
        } else {
            g.kg[g.nk++] = i;
        }
    }
    if (g.last_red) {
        onnx_par_for(threads, on, (1 << 14) / (cnt + 1) + 1, red_last_range, &g);
    } else {
        int64_t rows = on / g.inner, nch = (g.inner + RCHUNK - 1) / RCHUNK;
        onnx_par_for(threads, rows * nch, (1 << 14) / (g.rcombos * RCHUNK) + 1, red_kept_range, &g);
    }
}
