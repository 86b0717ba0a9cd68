/*
 * extract/pool.c - Head2Toe pooling of one tensor per sample, and the default layer rule.
 * The rules and the H != W decision are documented in extract/extract.h.
 */
#include "common/err.h"
#include "extract/extract.h"

#include <math.h>
#include <string.h>

int h2t_pool_plan_make(int rank, const int64_t *shape, uint32_t target, h2t_pool_plan *out)
{
    if (target == 0)
        return h2t_err_set(H2T_EINVAL, "target size 0");
    if (rank < 2 || rank > 4)
        return h2t_err_set(H2T_EUNSUPPORTED, "cannot pool a tensor of rank %d (2, 3 or 4 only)",
                           rank);
    for (int k = 1; k < rank; k++)
        if (shape[k] <= 0 || shape[k] > (int64_t)1 << 30)
            return h2t_err_set(H2T_ESHAPE, "dimension %d is %lld", k, (long long)shape[k]);
    h2t_pool_plan p;
    memset(&p, 0, sizeof p);
    uint64_t dim;
    if (rank == 2) {
        p.kind = H2T_POOL_FLAT;
        p.c = (uint32_t)shape[1];
        dim = p.c;
    } else if (rank == 3) {
        p.h = (uint32_t)shape[1]; /* tokens */
        p.c = (uint32_t)shape[2];
        uint32_t per = p.c < target ? target / p.c : 0; /* windows wanted */
        uint32_t win = per ? p.h / per : 0;
        if (win == 0) {
            p.kind = H2T_POOL_TMEAN;
            dim = p.c;
        } else {
            p.kind = H2T_POOL_TWIN;
            p.ph = win;
            p.oh = p.h / win;
            dim = (uint64_t)p.oh * p.c;
        }
    } else {
        p.c = (uint32_t)shape[1];
        p.h = (uint32_t)shape[2];
        p.w = (uint32_t)shape[3];
        uint32_t n = 0;
        if (p.c < target)
            n = (uint32_t)floor(sqrt((double)(target / p.c)));
        /* floor(sqrt) of an integer in double is exact up to 2^52; correct any rounding. */
        while (n > 0 && (uint64_t)n * n > target / p.c)
            n--;
        while (n > 0 && (uint64_t)(n + 1) * (n + 1) <= target / p.c)
            n++;
        uint32_t ph = n ? p.h / n : 0, pw = n ? p.w / n : 0;
        if (ph == 0 || pw == 0) {
            p.kind = H2T_POOL_GAP;
            dim = p.c;
        } else {
            p.kind = H2T_POOL_GRID;
            p.ph = ph;
            p.pw = pw;
            p.oh = p.h / ph;
            p.ow = p.w / pw;
            dim = (uint64_t)p.oh * p.ow * p.c;
        }
    }
    if (dim > (uint64_t)1 << 31)
        return h2t_err_set(H2T_ETOOBIG, "pooled dimension %llu", (unsigned long long)dim);
    p.dim = (uint32_t)dim;
    *out = p;
    return 0;
}

/* ---- the kernels ----
 *
 * Every sum has one fixed order that depends only on the shapes, so that the features are
 * bitwise the same on every x86-64 CPU:
 *  - a block of n contiguous floats (a whole plane, or whole rows): 16 float lanes, lane l
 *    adding x[l], x[16 + l], x[32 + l], ... in turn; then t = sum over k = 0..3 of
 *    (double)lane[k] + lane[4 + k] + lane[8 + k] + lane[12 + k] (in that order, in double);
 *    then the n % 16 trailing floats added to t one by one;
 *  - a ph x pw window of a wider plane (pw <= 4096): each column summed over the window's rows in
 * float, top to bottom; then the pw column sums added left to right in double from 0.
 *  - windows wider than 4096 columns: every value added in double, row by row.
 * A window's mean is (float)(sum * (1.0 / (ph * pw))).
 *
 * The two vector kernels (block sums, column sums) exist with 8-float vectors, compiled with
 * __attribute__((target("avx"))), and with 4-float vectors for the x86-64 baseline (SSE2);
 * the rest is shared. The AVX set is chosen at run time with __builtin_cpu_supports("avx").
 * Element-wise adds only (no reassociation: -ffp-contract is off in ISO C mode and nothing
 * multiplies before adding): both sets compute the same float operations on the same lanes in
 * the same order, so the results are identical (tests/test_extract_pool_isa.c checks it on odd
 * shapes and remainders). */
#define POOL_COLS 4096
#define POOL_INLINE static inline __attribute__((always_inline))

typedef float v8f __attribute__((vector_size(32)));

/* unaligned loads and stores (GCC lets a vector of floats alias floats) */
typedef float v8fu __attribute__((vector_size(32), aligned(4)));
#define LD8(p) (*(const v8fu *)(const void *)(p))
#define ST8(p, v) (*(v8fu *)(void *)(p) = (v))
typedef float v4f __attribute__((vector_size(16)));
typedef float v4fu __attribute__((vector_size(16), aligned(4)));
#define LD4(p) (*(const v4fu *)(const void *)(p))
#define ST4(p, v) (*(v4fu *)(void *)(p) = (v))

/* Sum of n contiguous floats in the block order above. Lanes 0-7 are a, 8-15 are b. */
POOL_INLINE double k_sum_block8(const float *q, size_t n)
{
    v8f a = {0, 0, 0, 0, 0, 0, 0, 0}, b = a;
    size_t x = 0;
    for (; x + 16 <= n; x += 16) {
        a += LD8(q + x);
        b += LD8(q + x + 8);
    }
    double t = 0;
    for (int k = 0; k < 4; k++)
        t += (double)a[k] + (double)a[4 + k] + (double)b[k] + (double)b[4 + k];
    for (; x < n; x++)
        t += q[x];
    return t;
}

/* The same two kernels on 4-float vectors for the x86-64 baseline (GCC spills 8-float vectors
 * to the stack where the target has no 8-float registers): lanes 0-3 in a0, 4-7 in a1, 8-11 in
 * b0, 12-15 in b1; columns x..x+15 in c0..c3. Same lanes, same order, same results. */
POOL_INLINE double k_sum_block4(const float *q, size_t n)
{
    v4f a0 = {0, 0, 0, 0}, a1 = a0, b0 = a0, b1 = a0;
    size_t x = 0;
    for (; x + 16 <= n; x += 16) {
        a0 += LD4(q + x);
        a1 += LD4(q + x + 4);
        b0 += LD4(q + x + 8);
        b1 += LD4(q + x + 12);
    }
    double t = 0;
    for (int k = 0; k < 4; k++)
        t += (double)a0[k] + (double)a1[k] + (double)b0[k] + (double)b1[k];
    for (; x < n; x++)
        t += q[x];
    return t;
}

POOL_INLINE void k_col_sums4(const float *r, size_t w, uint32_t ph, uint32_t span, float *col)
{
    uint32_t x = 0;
    for (; x + 16 <= span; x += 16) {
        const float *q = r + x;
        v4f c0 = LD4(q), c1 = LD4(q + 4), c2 = LD4(q + 8), c3 = LD4(q + 12);
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += LD4(q);
            c1 += LD4(q + 4);
            c2 += LD4(q + 8);
            c3 += LD4(q + 12);
        }
        ST4(col + x, c0);
        ST4(col + x + 4, c1);
        ST4(col + x + 8, c2);
        ST4(col + x + 12, c3);
    }
    for (; x + 4 <= span; x += 4) {
        const float *q = r + x;
        v4f c0 = LD4(q);
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += LD4(q);
        }
        ST4(col + x, c0);
    }
    for (; x < span; x++) {
        const float *q = r + x;
        float c0 = *q;
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += *q;
        }
        col[x] = c0;
    }
}

/* col[x] = r[x] + r[w + x] + ... + r[(ph - 1) w + x] for x < span, each column top to bottom in
 * float. Four vectors (32 columns) stay in registers over all ph rows, so each row segment is
 * read once and col written once; then 16, 8 and 4 columns, then single ones. */
POOL_INLINE void k_col_sums8(const float *r, size_t w, uint32_t ph, uint32_t span, float *col)
{
    uint32_t x = 0;
    for (; x + 32 <= span; x += 32) {
        const float *q = r + x;
        v8f c0 = LD8(q), c1 = LD8(q + 8), c2 = LD8(q + 16), c3 = LD8(q + 24);
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += LD8(q);
            c1 += LD8(q + 8);
            c2 += LD8(q + 16);
            c3 += LD8(q + 24);
        }
        ST8(col + x, c0);
        ST8(col + x + 8, c1);
        ST8(col + x + 16, c2);
        ST8(col + x + 24, c3);
    }
    for (; x + 16 <= span; x += 16) {
        const float *q = r + x;
        v8f c0 = LD8(q), c1 = LD8(q + 8);
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += LD8(q);
            c1 += LD8(q + 8);
        }
        ST8(col + x, c0);
        ST8(col + x + 8, c1);
    }
    for (; x + 8 <= span; x += 8) {
        const float *q = r + x;
        v8f c0 = LD8(q);
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += LD8(q);
        }
        ST8(col + x, c0);
    }
    for (; x + 4 <= span; x += 4) {
        const float *q = r + x;
        v4f c0 = LD4(q);
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += LD4(q);
        }
        ST4(col + x, c0);
    }
    for (; x < span; x++) {
        const float *q = r + x;
        float c0 = *q;
        for (uint32_t y = 1; y < ph; y++) {
            q += w;
            c0 += *q;
        }
        col[x] = c0;
    }
}

/* wide: 1 = the 8-float kernels (AVX), 0 = the 4-float ones; a constant after inlining */
POOL_INLINE double k_sum_block(const float *q, size_t n, int wide)
{
    return wide ? k_sum_block8(q, n) : k_sum_block4(q, n);
}

POOL_INLINE void k_col_sums(const float *r, size_t w, uint32_t ph, uint32_t span, float *col,
                            int wide)
{
    if (wide)
        k_col_sums8(r, w, ph, span, col);
    else
        k_col_sums4(r, w, ph, span, col);
}

/* Window sums of nj windows of pw columns each (col[j * pw .. j * pw + pw), left to right in
 * double), four windows at a time so that four independent chains overlap. */
POOL_INLINE void k_win_sums(const float *col, uint32_t pw, uint32_t nj, double inv, float *out,
                            size_t ostride)
{
    uint32_t j = 0;
    for (; j + 4 <= nj; j += 4) {
        const float *q = col + (size_t)j * pw;
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (uint32_t k = 0; k < pw; k++) {
            a0 += q[k];
            a1 += q[pw + k];
            a2 += q[2 * (size_t)pw + k];
            a3 += q[3 * (size_t)pw + k];
        }
        out[(size_t)j * ostride] = (float)(a0 * inv);
        out[(size_t)(j + 1) * ostride] = (float)(a1 * inv);
        out[(size_t)(j + 2) * ostride] = (float)(a2 * inv);
        out[(size_t)(j + 3) * ostride] = (float)(a3 * inv);
    }
    for (; j < nj; j++) {
        const float *q = col + (size_t)j * pw;
        double a = 0;
        for (uint32_t k = 0; k < pw; k++)
            a += q[k];
        out[(size_t)j * ostride] = (float)(a * inv);
    }
}

/* Means of the ph x pw windows of one H x W plane (row stride w), in the orders above. Window
 * (i, j) goes to out[(i * ow + j) * ostride]. */
/* The block sums of several planes at once (planes q, q + stride, ...: same n): each plane
 * keeps its own 16 lanes and its own order, so each result is k_sum_block's, but the planes'
 * chains are independent and overlap (one plane's 16 lanes are only two 8-float or four
 * 4-float dependency chains, which leaves the adder waiting on its latency). AVX: 4 planes
 * (8 accumulators); baseline: 2 planes (8 accumulators). */
#define FIN8(t, a, b)                                                                              \
    do {                                                                                           \
        for (int k_ = 0; k_ < 4; k_++)                                                             \
            t += (double)a[k_] + (double)a[4 + k_] + (double)b[k_] + (double)b[4 + k_];            \
    } while (0)
#define FIN4(t, a0, a1, b0, b1)                                                                    \
    do {                                                                                           \
        for (int k_ = 0; k_ < 4; k_++)                                                             \
            t += (double)a0[k_] + (double)a1[k_] + (double)b0[k_] + (double)b1[k_];                \
    } while (0)

POOL_INLINE void k_sum_blocks8x4(const float *q, size_t stride, size_t n, double *t)
{
    v8f z = {0, 0, 0, 0, 0, 0, 0, 0};
    v8f a0 = z, b0 = z, a1 = z, b1 = z, a2 = z, b2 = z, a3 = z, b3 = z;
    const float *q0 = q, *q1 = q + stride, *q2 = q + 2 * stride, *q3 = q + 3 * stride;
    size_t x = 0;
    for (; x + 16 <= n; x += 16) {
        a0 += LD8(q0 + x);
        b0 += LD8(q0 + x + 8);
        a1 += LD8(q1 + x);
        b1 += LD8(q1 + x + 8);
        a2 += LD8(q2 + x);
        b2 += LD8(q2 + x + 8);
        a3 += LD8(q3 + x);
        b3 += LD8(q3 + x + 8);
    }
    double t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    FIN8(t0, a0, b0);
    FIN8(t1, a1, b1);
    FIN8(t2, a2, b2);
    FIN8(t3, a3, b3);
    for (size_t y = x; y < n; y++) {
        t0 += q0[y];
        t1 += q1[y];
        t2 += q2[y];
        t3 += q3[y];
    }
    t[0] = t0;
    t[1] = t1;
    t[2] = t2;
    t[3] = t3;
}

POOL_INLINE void k_sum_blocks4x2(const float *q, size_t stride, size_t n, double *t)
{
    v4f z = {0, 0, 0, 0};
    v4f a0 = z, a1 = z, b0 = z, b1 = z, c0 = z, c1 = z, d0 = z, d1 = z;
    const float *p = q, *r = q + stride;
    size_t x = 0;
    for (; x + 16 <= n; x += 16) {
        a0 += LD4(p + x);
        a1 += LD4(p + x + 4);
        b0 += LD4(p + x + 8);
        b1 += LD4(p + x + 12);
        c0 += LD4(r + x);
        c1 += LD4(r + x + 4);
        d0 += LD4(r + x + 8);
        d1 += LD4(r + x + 12);
    }
    double t0 = 0, t1 = 0;
    FIN4(t0, a0, a1, b0, b1);
    FIN4(t1, c0, c1, d0, d1);
    for (size_t y = x; y < n; y++) {
        t0 += p[y];
        t1 += r[y];
    }
    t[0] = t0;
    t[1] = t1;
}

/* Channels [c0, c1) whose every output is the block sum of the first n floats of its plane
 * (GAP, and grids of one window of whole rows), scaled by inv, into out[c]. */
POOL_INLINE void k_block_channels(const float *x, size_t hw, size_t n, double inv, uint32_t c0,
                                  uint32_t c1, float *out, int wide)
{
    uint32_t g = wide ? 4 : 2, c = c0;
    double t[4];
    for (; c + g <= c1; c += g) {
        if (wide)
            k_sum_blocks8x4(x + c * hw, hw, n, t);
        else
            k_sum_blocks4x2(x + c * hw, hw, n, t);
        for (uint32_t k = 0; k < g; k++)
            out[c + k] = (float)(t[k] * inv);
    }
    for (; c < c1; c++)
        out[c] = (float)(k_sum_block(x + c * hw, n, wide) * inv);
}

POOL_INLINE void k_pool_plane(const float *s, uint32_t w, uint32_t ph, uint32_t pw, uint32_t oh,
                              uint32_t ow, float *out, size_t ostride, int wide)
{
    double inv = 1.0 / ((double)ph * pw);
    if (pw > POOL_COLS) { /* absurdly wide windows: plain loops, every value in double */
        for (uint32_t i = 0; i < oh; i++)
            for (uint32_t j = 0; j < ow; j++) {
                double a = 0;
                for (uint32_t r = i * ph; r < (i + 1) * ph; r++)
                    for (uint32_t k = 0; k < pw; k++)
                        a += s[(size_t)r * w + (size_t)j * pw + k];
                out[((size_t)i * ow + j) * ostride] = (float)(a * inv);
            }
        return;
    }
    if (ow == 1 && pw == w) { /* each window is ph whole rows: one contiguous block */
        for (uint32_t i = 0; i < oh; i++)
            out[(size_t)i * ostride] =
                (float)(k_sum_block(s + (size_t)i * ph * w, (size_t)ph * w, wide) * inv);
        return;
    }
    float col[POOL_COLS];
    uint32_t per_chunk = POOL_COLS / pw; /* whole windows per pass over the rows */
    for (uint32_t i = 0; i < oh; i++) {
        const float *r0 = s + (size_t)i * ph * w;
        for (uint32_t j0 = 0; j0 < ow; j0 += per_chunk) {
            uint32_t nj = ow - j0 < per_chunk ? ow - j0 : per_chunk;
            k_col_sums(r0 + (size_t)j0 * pw, w, ph, nj * pw, col, wide);
            k_win_sums(col, pw, nj, inv, out + ((size_t)i * ow + j0) * ostride, ostride);
        }
    }
}

/* Channels [c0, c1) of a 4-D sample (GAP or GRID): out[(i * ow + j) * C + c]. */
POOL_INLINE void k_pool_channels(const h2t_pool_plan *p, const float *x, uint32_t c0, uint32_t c1,
                                 float *out, int wide)
{
    size_t hw = (size_t)p->h * p->w;
    uint32_t ph = p->kind == H2T_POOL_GAP ? p->h : p->ph;
    uint32_t pw = p->kind == H2T_POOL_GAP ? p->w : p->pw;
    if (pw <= POOL_COLS && pw == p->w && (p->kind == H2T_POOL_GAP || p->oh == 1)) {
        /* one window of whole rows per channel: k_pool_plane's block path, planes together */
        k_block_channels(x, hw, (size_t)ph * p->w, 1.0 / ((double)ph * pw), c0, c1, out, wide);
        return;
    }
    if (p->kind == H2T_POOL_GAP) {
        for (uint32_t c = c0; c < c1; c++)
            k_pool_plane(x + c * hw, p->w, p->h, p->w, 1, 1, out + c, p->c, wide);
        return;
    }
    for (uint32_t c = c0; c < c1; c++)
        k_pool_plane(x + c * hw, p->w, p->ph, p->pw, p->oh, p->ow, out + c, p->c, wide);
}

static void pool_channels_generic(const h2t_pool_plan *p, const float *x, uint32_t c0, uint32_t c1,
                                  float *out)
{
    k_pool_channels(p, x, c0, c1, out, 0);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define POOL_HAVE_AVX 1
__attribute__((target("avx"))) static void pool_channels_avx(const h2t_pool_plan *p, const float *x,
                                                             uint32_t c0, uint32_t c1, float *out)
{
    k_pool_channels(p, x, c0, c1, out, 1);
}
#endif

int h2t_pool_isa_best(void)
{
#ifdef POOL_HAVE_AVX
    if (__builtin_cpu_supports("avx"))
        return H2T_POOL_ISA_AVX;
#endif
    return H2T_POOL_ISA_GENERIC;
}

static void pool_channels(const h2t_pool_plan *p, const float *x, uint32_t c0, uint32_t c1,
                          float *out, int isa)
{
#ifdef POOL_HAVE_AVX
    if (isa == H2T_POOL_ISA_AVX && __builtin_cpu_supports("avx")) {
        pool_channels_avx(p, x, c0, c1, out);
        return;
    }
#else
    (void)isa;
#endif
    pool_channels_generic(p, x, c0, c1, out);
}

/* ---- streaming: channels fed in spans of their planes ----
 *
 * Per channel, a state of STREAM_HDR doubles then floats: block mode (pw == w, one window of
 * ph whole rows per band: k_pool_plane's block path and GAP) keeps the band's 16 lanes and its
 * double sum t; column mode keeps the ow * pw column sums of the current window band. Each
 * value is added with the same float or double operation, in the same order, as the whole-
 * plane kernels, so the features are bitwise theirs. */
#define STREAM_HDR 2 /* doubles: t, and a flag (lanes reduced into t) */

static int stream_block(const h2t_pool_plan *p)
{
    return p->kind == H2T_POOL_GAP || p->pw == p->w;
}

size_t h2t_pool_stream_bytes(const h2t_pool_plan *p)
{
    if ((p->kind != H2T_POOL_GAP && p->kind != H2T_POOL_GRID) || p->w > POOL_COLS)
        return 0;
    size_t fl = stream_block(p) ? 16 : (size_t)p->ow * p->pw;
    return (size_t)p->c * (STREAM_HDR * sizeof(double) + (fl + 1) / 2 * 2 * sizeof(float));
}

/* lanes[k & 15] += x[k] for k in [a, b), lane order of k_sum_block (element-wise adds). */
POOL_INLINE void k_lanes_add(float *lanes, const float *x, size_t a, size_t b, int wide)
{
    size_t k = a;
    for (; k < b && (k & 15); k++)
        lanes[k & 15] += x[k];
    if (k + 16 <= b) {
        if (wide) {
            v8f l0 = LD8(lanes), l1 = LD8(lanes + 8);
            for (; k + 16 <= b; k += 16) {
                l0 += LD8(x + k);
                l1 += LD8(x + k + 8);
            }
            ST8(lanes, l0);
            ST8(lanes + 8, l1);
        } else {
            v4f l0 = LD4(lanes), l1 = LD4(lanes + 4), l2 = LD4(lanes + 8), l3 = LD4(lanes + 12);
            for (; k + 16 <= b; k += 16) {
                l0 += LD4(x + k);
                l1 += LD4(x + k + 4);
                l2 += LD4(x + k + 8);
                l3 += LD4(x + k + 12);
            }
            ST4(lanes, l0);
            ST4(lanes + 4, l1);
            ST4(lanes + 8, l2);
            ST4(lanes + 12, l3);
        }
    }
    for (; k < b; k++)
        lanes[k & 15] += x[k];
}

/* k_lanes_add on 4 channels at once (lanes l[i], values q[i]): their 8 dependency chains
 * overlap (one channel's 16 lanes are only 2 chains of 8-float adds). AVX only. */
POOL_INLINE void k_lanes_add4(float *const *l, const float *const *q, size_t a, size_t b)
{
    size_t k = a;
    for (; k < b && (k & 15); k++)
        for (int i = 0; i < 4; i++)
            l[i][k & 15] += q[i][k];
    if (k + 16 <= b) {
        v8f a0 = LD8(l[0]), b0 = LD8(l[0] + 8), a1 = LD8(l[1]), b1 = LD8(l[1] + 8);
        v8f a2 = LD8(l[2]), b2 = LD8(l[2] + 8), a3 = LD8(l[3]), b3 = LD8(l[3] + 8);
        const float *q0 = q[0], *q1 = q[1], *q2 = q[2], *q3 = q[3];
        for (; k + 16 <= b; k += 16) {
            a0 += LD8(q0 + k);
            b0 += LD8(q0 + k + 8);
            a1 += LD8(q1 + k);
            b1 += LD8(q1 + k + 8);
            a2 += LD8(q2 + k);
            b2 += LD8(q2 + k + 8);
            a3 += LD8(q3 + k);
            b3 += LD8(q3 + k + 8);
        }
        ST8(l[0], a0);
        ST8(l[0] + 8, b0);
        ST8(l[1], a1);
        ST8(l[1] + 8, b1);
        ST8(l[2], a2);
        ST8(l[2] + 8, b2);
        ST8(l[3], a3);
        ST8(l[3] + 8, b3);
    }
    for (; k < b; k++)
        for (int i = 0; i < 4; i++)
            l[i][k & 15] += q[i][k];
}

/* col[j] = x[j] (first) or col[j] + x[j] for j < n (element-wise). */
POOL_INLINE void k_col_add(float *col, const float *x, size_t n, int first, int wide)
{
    if (first) {
        memcpy(col, x, n * sizeof(float));
        return;
    }
    size_t j = 0;
    if (wide)
        for (; j + 8 <= n; j += 8)
            ST8(col + j, LD8(col + j) + LD8(x + j));
    for (; j + 4 <= n; j += 4)
        ST4(col + j, LD4(col + j) + LD4(x + j));
    for (; j < n; j++)
        col[j] += x[j];
}

/* col[x] (+)= q[x] + q[w + x] + ... over nr rows, one row at a time in order (first: col
 * starts at row 0), for x < span; the column sums stay in registers over the rows. */
POOL_INLINE void k_col_acc(float *col, const float *q, size_t w, size_t nr, size_t span, int first,
                           int wide)
{
    size_t x = 0, r0 = first ? 1 : 0;
    if (wide) {
        for (; x + 32 <= span; x += 32) {
            const float *b = first ? q + x : col + x;
            v8f c0 = LD8(b), c1 = LD8(b + 8), c2 = LD8(b + 16), c3 = LD8(b + 24);
            for (size_t y = r0; y < nr; y++) {
                const float *r = q + y * w + x;
                c0 += LD8(r);
                c1 += LD8(r + 8);
                c2 += LD8(r + 16);
                c3 += LD8(r + 24);
            }
            ST8(col + x, c0);
            ST8(col + x + 8, c1);
            ST8(col + x + 16, c2);
            ST8(col + x + 24, c3);
        }
        for (; x + 8 <= span; x += 8) {
            v8f c0 = LD8(first ? q + x : col + x);
            for (size_t y = r0; y < nr; y++)
                c0 += LD8(q + y * w + x);
            ST8(col + x, c0);
        }
    } else {
        for (; x + 16 <= span; x += 16) {
            const float *b = first ? q + x : col + x;
            v4f c0 = LD4(b), c1 = LD4(b + 4), c2 = LD4(b + 8), c3 = LD4(b + 12);
            for (size_t y = r0; y < nr; y++) {
                const float *r = q + y * w + x;
                c0 += LD4(r);
                c1 += LD4(r + 4);
                c2 += LD4(r + 8);
                c3 += LD4(r + 12);
            }
            ST4(col + x, c0);
            ST4(col + x + 4, c1);
            ST4(col + x + 8, c2);
            ST4(col + x + 12, c3);
        }
    }
    for (; x + 4 <= span; x += 4) {
        v4f c0 = LD4(first ? q + x : col + x);
        for (size_t y = r0; y < nr; y++)
            c0 += LD4(q + y * w + x);
        ST4(col + x, c0);
    }
    for (; x < span; x++) {
        float c0 = first ? q[x] : col[x];
        for (size_t y = r0; y < nr; y++)
            c0 += q[y * w + x];
        col[x] = c0;
    }
}

/* Values [off, off + len) of channel c's plane (plane = the channel's first value). */
POOL_INLINE void k_stream_channel(const h2t_pool_plan *p, unsigned char *st, const float *plane,
                                  size_t off, size_t len, uint32_t c, float *out, int wide)
{
    double *hdr = (double *)(void *)st;
    float *f = (float *)(void *)(hdr + STREAM_HDR);
    size_t w = p->w, end = off + len;
    uint32_t ph = p->kind == H2T_POOL_GAP ? p->h : p->ph;
    uint32_t pw = p->kind == H2T_POOL_GAP ? p->w : p->pw;
    uint32_t oh = p->kind == H2T_POOL_GAP ? 1 : p->oh, ow = p->kind == H2T_POOL_GAP ? 1 : p->ow;
    double inv = 1.0 / ((double)ph * pw);
    size_t span = (size_t)ow * pw;
    for (size_t pos = off; pos < end;) {
        size_t r = pos / w;
        if (r >= (size_t)oh * ph)
            break;
        size_t x0 = pos - r * w, x1 = end - r * w < w ? end - r * w : w;
        if (x0 == 0 && x1 == w) { /* whole rows up to the band's end: rows together */
            size_t band_end = (r / ph + 1) * ph, nr = (end - pos) / w;
            nr = nr < band_end - r ? nr : band_end - r;
            k_col_acc(f, plane + r * w, w, nr, span, r % ph == 0, wide);
            if (r + nr == band_end)
                k_win_sums(f, pw, ow, inv, out + (r / ph) * ow * p->c + c, p->c);
            pos = (r + nr) * w;
            continue;
        }
        if (x0 < span) {
            size_t e = x1 < span ? x1 : span;
            k_col_add(f + x0, plane + r * w + x0, e - x0, r % ph == 0, wide);
            if (e == span && r % ph == ph - 1)
                k_win_sums(f, pw, ow, inv, out + (r / ph) * ow * p->c + c, p->c);
        }
        pos = r * w + x1;
    }
}

/* Block mode (one window of ph whole rows per band), channels [c0, c1) with the same piece:
 * per channel, each band's 16 lanes, then t in double, then the tail, as k_sum_block. */
POOL_INLINE void k_stream_block(const h2t_pool_plan *p, unsigned char *state, size_t per,
                                const float *x, uint32_t c0, uint32_t c1, size_t off, size_t len,
                                float *out, int wide)
{
    size_t w = p->w, hw = (size_t)p->h * p->w, end = off + len;
    uint32_t ph = p->kind == H2T_POOL_GAP ? p->h : p->ph;
    uint32_t pw = p->kind == H2T_POOL_GAP ? p->w : p->pw;
    uint32_t oh = p->kind == H2T_POOL_GAP ? 1 : p->oh;
    double inv = 1.0 / ((double)ph * pw);
    size_t n = (size_t)ph * w, n16 = n / 16 * 16;
    for (size_t pos = off; pos < end;) {
        size_t band = pos / n;
        if (band >= oh)
            break;
        size_t base = band * n, a = pos - base, b = end - base < n ? end - base : n;
        size_t lb = b < n16 ? b : n16;
        for (uint32_t c = c0; c < c1; c++) {
            double *hdr = (double *)(void *)(state + c * per);
            if (a == 0) {
                memset(hdr + STREAM_HDR, 0, 16 * sizeof(float));
                hdr[0] = 0;
                hdr[1] = 0;
            }
        }
        uint32_t c = c0;
        if (wide && a < n16)
            for (; c + 4 <= c1; c += 4) {
                float *l[4];
                const float *q[4];
                for (int i = 0; i < 4; i++) {
                    l[i] =
                        (float *)(void *)((double *)(void *)(state + (c + i) * per) + STREAM_HDR);
                    q[i] = x + (c + i) * hw + base;
                }
                k_lanes_add4(l, q, a, lb);
            }
        for (; c < c1 && a < n16; c++)
            k_lanes_add((float *)(void *)((double *)(void *)(state + c * per) + STREAM_HDR),
                        x + c * hw + base, a, lb, wide);
        for (c = c0; c < c1; c++) {
            double *hdr = (double *)(void *)(state + c * per);
            const float *f = (const float *)(hdr + STREAM_HDR), *q = x + c * hw + base;
            if (b >= n16 && hdr[1] == 0) {
                double t = 0;
                for (int k = 0; k < 4; k++)
                    t += (double)f[k] + (double)f[4 + k] + (double)f[8 + k] + (double)f[12 + k];
                hdr[0] = t;
                hdr[1] = 1;
            }
            if (b > n16) {
                double t = hdr[0];
                for (size_t k = a > n16 ? a : n16; k < b; k++)
                    t += q[k];
                hdr[0] = t;
            }
            if (b == n)
                out[band * p->c + c] = (float)(hdr[0] * inv);
        }
        pos = base + b;
    }
}

POOL_INLINE void k_stream(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0,
                          uint32_t c1, size_t off, size_t len, float *out, int wide)
{
    size_t per = h2t_pool_stream_bytes(p) / p->c, hw = (size_t)p->h * p->w;
    if (stream_block(p)) {
        k_stream_block(p, state, per, x, c0, c1, off, len, out, wide);
        return;
    }
    for (uint32_t c = c0; c < c1; c++)
        k_stream_channel(p, (unsigned char *)state + c * per, x + c * hw, off, len, c, out, wide);
}

static void stream_generic(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0,
                           uint32_t c1, size_t off, size_t len, float *out)
{
    k_stream(p, state, x, c0, c1, off, len, out, 0);
}

#ifdef POOL_HAVE_AVX
__attribute__((target("avx"))) static void stream_avx(const h2t_pool_plan *p, void *state,
                                                      const float *x, uint32_t c0, uint32_t c1,
                                                      size_t off, size_t len, float *out)
{
    k_stream(p, state, x, c0, c1, off, len, out, 1);
}
#endif

int h2t_pool_stream_isa(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0,
                        uint32_t c1, size_t off, size_t len, float *out, int isa)
{
    size_t hw = (size_t)p->h * p->w;
    if (c0 > c1 || c1 > p->c || off > hw || len > hw - off)
        return h2t_err_set(H2T_EINVAL, "channels [%u, %u) values [%zu, %zu) of a %u x %zu sample",
                           c0, c1, off, off + len, p->c, hw);
    if (off == 0 && len == hw && (p->kind == H2T_POOL_GAP || p->kind == H2T_POOL_GRID)) {
        pool_channels(p, x, c0, c1, out, isa);
        return 0;
    }
    if (h2t_pool_stream_bytes(p) == 0 || !state)
        return h2t_err_set(H2T_EINVAL, "this plan (kind %d, width %u) pools whole planes only",
                           p->kind, p->w);
#ifdef POOL_HAVE_AVX
    if (isa == H2T_POOL_ISA_AVX && __builtin_cpu_supports("avx")) {
        stream_avx(p, state, x, c0, c1, off, len, out);
        return 0;
    }
#endif
    stream_generic(p, state, x, c0, c1, off, len, out);
    return 0;
}

int h2t_pool_stream(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0, uint32_t c1,
                    size_t off, size_t len, float *out)
{
    return h2t_pool_stream_isa(p, state, x, c0, c1, off, len, out, h2t_pool_isa_best());
}

/* 3-D tokens (token-major): a window of win tokens averages each channel, in double, tokens in
 * order. */
static void pool_tokens(const h2t_pool_plan *p, const float *x, float *out)
{
    uint32_t win = p->kind == H2T_POOL_TMEAN ? p->h : p->ph;
    uint32_t nw = p->kind == H2T_POOL_TMEAN ? 1 : p->oh;
    double acc[1024];
    for (uint32_t i = 0; i < nw; i++) {
        float *o = out + (size_t)i * p->c;
        for (uint32_t c0 = 0; c0 < p->c; c0 += 1024) {
            uint32_t nc = p->c - c0 < 1024 ? p->c - c0 : 1024;
            for (uint32_t c = 0; c < nc; c++)
                acc[c] = 0;
            for (uint32_t t = i * win; t < (i + 1) * win; t++) {
                const float *row = x + (size_t)t * p->c + c0;
                for (uint32_t c = 0; c < nc; c++)
                    acc[c] += row[c];
            }
            for (uint32_t c = 0; c < nc; c++)
                o[c0 + c] = (float)(acc[c] / win);
        }
    }
}

void h2t_pool_apply_isa(const h2t_pool_plan *p, const float *x, float *out, int isa)
{
    switch (p->kind) {
    case H2T_POOL_FLAT:
        memcpy(out, x, (size_t)p->c * sizeof(float));
        break;
    case H2T_POOL_GAP:
    case H2T_POOL_GRID:
        pool_channels(p, x, 0, p->c, out, isa);
        break;
    case H2T_POOL_TMEAN:
    case H2T_POOL_TWIN:
        pool_tokens(p, x, out);
        break;
    }
}

void h2t_pool_apply(const h2t_pool_plan *p, const float *x, float *out)
{
    h2t_pool_apply_isa(p, x, out, h2t_pool_isa_best());
}

int h2t_pool_apply_channels(const h2t_pool_plan *p, const float *x, uint32_t c0, uint32_t c1,
                            float *out)
{
    if (c0 > c1 || c1 > p->c)
        return h2t_err_set(H2T_EINVAL, "channels [%u, %u) of a tensor of %u", c0, c1, p->c);
    if (p->kind != H2T_POOL_GAP && p->kind != H2T_POOL_GRID) {
        if (c0 != 0 || c1 != p->c)
            return h2t_err_set(H2T_EINVAL,
                               "only 4-D tensors pool by channel range (kind %d: [0, %u) only)",
                               p->kind, p->c);
        h2t_pool_apply(p, x, out);
        return 0;
    }
    pool_channels(p, x, c0, c1, out, h2t_pool_isa_best());
    return 0;
}

static const char *const pure_ops[] = {
    "Reshape", "Flatten", "Identity", "Dropout", "Squeeze",  "Unsqueeze",       "Transpose",
    "Expand",  "Cast",    "Shape",    "Size",    "Constant", "ConstantOfShape",
};

int h2t_layer_rule_default(const h2t_tensor_info *t)
{
    if (t->is_input || t->rank < 2 || t->rank > 4)
        return 0;
    for (size_t i = 0; i < sizeof pure_ops / sizeof pure_ops[0]; i++)
        if (!strcmp(t->op, pure_ops[i]))
            return 0;
    return 1;
}
