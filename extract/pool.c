/*
 * extract/pool.c - Head2Toe pooling of one tensor per sample (4-D maps in either axis order, 3-D
 * tokens with their class-token modes, 2-D vectors); the rules are in extract/extract.h.
 */
#include "common/cpu.h"
#include "common/err.h"
#include "extract/extract.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define POOL_HAVE_AVX 1
#include <immintrin.h>
#endif

/* The 4-D grid of the pooling rule (docs/head2toe.md) over a C x H x W sample (whichever axis
 * order). */
static void plan_grid(h2t_pool_plan *p, uint32_t target, uint64_t *dim)
{
    uint32_t n = 0;
    if (p->c < target)
        n = (uint32_t)floor(sqrt((double)(target / p->c)));
    /* floor(sqrt) of an integer in double is exact up to 2^52; correct any rounding. */
    while (n > 0 && (uint64_t)n * n > target / p->c)
        n--;
    while (n > 0 && (uint64_t)(n + 1) * (n + 1) <= target / p->c)
        n++;
    uint32_t ph = n ? p->h / n : 0, pw = n ? p->w / n : 0;
    if (ph == 0 || pw == 0) {
        p->kind = H2T_POOL_GAP;
        *dim = p->c;
    } else {
        p->kind = H2T_POOL_GRID;
        p->ph = ph;
        p->pw = pw;
        p->oh = p->h / ph;
        p->ow = p->w / pw;
        *dim = (uint64_t)p->oh * p->ow * p->c;
    }
}

/* The 3-D rule over tokens [t0, h) of h tokens of C channels, after `lead` class-token
 * features. The window is the reference's int(L / (T / C)), T / C a true quotient: computed
 * with the same two double divisions, so it is the reference's window also where rounding
 * puts it one below floor(L * C / T) (L = 256, C = 93, T = 256 gives 92). */
static void plan_tokens(h2t_pool_plan *p, uint32_t target, uint64_t *dim)
{
    uint32_t n = p->h - p->t0;
    uint64_t win = p->c < target ? (uint64_t)((double)n / ((double)target / (double)p->c)) : 0;
    uint64_t lead = p->lead ? p->c : 0;
    if (n == 0) {
        p->kind = H2T_POOL_CLS;
        *dim = p->c;
    } else if (win == 0) {
        p->kind = H2T_POOL_TMEAN;
        *dim = lead + p->c;
    } else {
        p->kind = H2T_POOL_TWIN;
        p->ph = (uint32_t)win;
        p->oh = n / p->ph;
        *dim = lead + (uint64_t)p->oh * p->c;
    }
}

int h2t_pool_plan_form(int form, const uint32_t *dims, uint32_t target, int cls, h2t_pool_plan *out)
{
    if (target == 0)
        return h2t_err_set(H2T_EINVAL, "target size 0");
    int n;
    switch (form) {
    case H2T_FORM_FLAT:
        n = 1;
        break;
    case H2T_FORM_NLC:
    case H2T_FORM_LNC:
    case H2T_FORM_NCL:
        n = 2;
        break;
    case H2T_FORM_NCHW:
    case H2T_FORM_NHWC:
    case H2T_FORM_ATTN:
    case H2T_FORM_HEADS:
        n = 3;
        break;
    default:
        return h2t_err_set(H2T_EUNSUPPORTED, "cannot pool a tensor of form %d (%s)", form,
                           h2t_form_name(form));
    }
    int tokens = form == H2T_FORM_NLC || form == H2T_FORM_LNC;
    if (cls != H2T_CLS_POOL && cls != H2T_CLS_ONLY && cls != H2T_CLS_APART)
        return h2t_err_set(H2T_EINVAL, "class-token mode %d", cls);
    if (cls != H2T_CLS_POOL && !tokens)
        return h2t_err_set(H2T_EINVAL, "a class-token mode for a %s tensor (tokens only)",
                           h2t_form_name(form));
    for (int k = 0; k < n; k++)
        if (dims[k] == 0 || dims[k] > (uint32_t)1 << 30)
            return h2t_err_set(H2T_ESHAPE, "per-sample dimension %d is %u", k, dims[k]);
    h2t_pool_plan p;
    memset(&p, 0, sizeof p);
    p.form = form;
    p.cls = cls;
    uint64_t dim = 0;
    if (form == H2T_FORM_FLAT) {
        p.kind = H2T_POOL_FLAT;
        p.c = dims[0];
        dim = p.c;
    } else if (n == 2) {
        p.h = form == H2T_FORM_NCL ? dims[1] : dims[0]; /* tokens */
        p.c = form == H2T_FORM_NCL ? dims[0] : dims[1];
        if (cls == H2T_CLS_ONLY) {
            p.kind = H2T_POOL_CLS;
            dim = p.c;
        } else {
            p.t0 = p.lead = cls == H2T_CLS_APART;
            plan_tokens(&p, target, &dim);
        }
    } else {
        p.c = form == H2T_FORM_NHWC ? dims[2] : dims[0];
        p.h = form == H2T_FORM_NHWC ? dims[0] : dims[1];
        p.w = form == H2T_FORM_NHWC ? dims[1] : dims[2];
        plan_grid(&p, target, &dim);
    }
    if (dim > (uint64_t)1 << 31)
        return h2t_err_set(H2T_ETOOBIG, "pooled dimension %llu", (unsigned long long)dim);
    p.dim = (uint32_t)dim;
    *out = p;
    return 0;
}

int h2t_pool_plan_make(int rank, const int64_t *shape, uint32_t target, h2t_pool_plan *out)
{
    if (target == 0)
        return h2t_err_set(H2T_EINVAL, "target size 0");
    if (rank < 2 || rank > 4)
        return h2t_err_set(H2T_EUNSUPPORTED, "cannot pool a tensor of rank %d (2, 3 or 4 only)",
                           rank);
    uint32_t dims[3];
    for (int k = 1; k < rank; k++) {
        if (shape[k] <= 0 || shape[k] > (int64_t)1 << 30)
            return h2t_err_set(H2T_ESHAPE, "dimension %d is %lld", k, (long long)shape[k]);
        dims[k - 1] = (uint32_t)shape[k];
    }
    static const int by_rank[5] = {0, 0, H2T_FORM_FLAT, H2T_FORM_NLC, H2T_FORM_NCHW};
    return h2t_pool_plan_form(by_rank[rank], dims, target, H2T_CLS_POOL, out);
}

/* ---- the kernels ----
 *
 * Every sum has one fixed order that depends only on the shapes (order 2, H2T_POOL_ORDER), so
 * that the features are bitwise the same on every x86-64 CPU, with either kernel set, whole
 * or streamed in any pieces:
 *  - a window that is one contiguous block of n floats (GAP: a whole plane; GRID with one
 *    window per band of rows, pw == W: ph whole rows) has L = 64 float lanes when n >= 1024,
 *    else L = 16: lane l adds x[l], x[L + l], x[2L + l], ... (every k < n with k % L == l) in
 *    turn, from +0. The lanes are then converted to double and reduced as a tree: group g is
 *    lanes 4g..4g+3 (L / 4 groups); groups 2i and 2i + 1 are added element-wise, level by
 *    level, until one group s is left; t = (s0 + s1) + (s2 + s3).
 *  - a ph x pw window of a wider plane (pw < W, pw <= 4096): each column summed over the
 *    window's rows in float, top to bottom; then the pw column sums in double in four lanes
 *    (lane e adds columns e, 4 + e, 8 + e, ... below pw - pw % 4, from 0),
 *    t = (d0 + d1) + (d2 + d3), and the last pw % 4 column sums added to t left to right.
 *  - windows wider than 4096 columns (and narrower than the plane): every value added in
 *    double, row by row.
 * A window's mean is (float)(t * (1.0 / (ph * pw))).
 *
 * Why this order: its chains of dependent adds are short or many side by side, so the adders
 * keep up with the loads even for one plane at a time. On the pieces of a MobileNetV2 pass the
 * kernels take about 1.35x the time of merely reading every value once (bench/extract_full
 * --pool-only), so what is left is mostly the loads from L2. The error is that of float sums
 * of at most ceil(n / L) (blocks) or ph (columns) values, then double;
 * tests/test_extract_pool_isa.c measures it against long double.
 *
 * Three kernel sets: 16-float vectors compiled with __attribute__((target("avx512f"))) and
 * 8-float vectors with target("avx"), chosen at run time (h2t_cpu_has, common/cpu.h;
 * H2T_CPU_MAX lowers the choice), and 4-float vectors for the x86-64 baseline (SSE2). Only
 * element-wise adds (no reassociation: -ffp-contract is off in ISO C mode and nothing
 * multiplies before adding), so all compute the same float and double operations on the same
 * values in the same order. Partial vectors are zero-padded: adding +0 leaves a lane as it
 * was (a lane starts at +0, and a round-to-nearest sum is -0 only when both terms are), so
 * where a piece starts or ends changes no bit. The AVX and AVX-512 sets pad with masked loads
 * (vmaskmovps, zero-masked vmovups: only the piece's values are read), the baseline copies
 * the values into a zeroed vector. tests/test_extract_pool_isa.c checks all of this against a
 * scalar reference of the order on odd shapes, remainders and random pieces. */
#define POOL_COLS 4096
#define POOL_BIG 1024 /* blocks of at least this many floats: 64 lanes, else 16 */

static size_t block_lanes(size_t n)
{
    return n >= POOL_BIG ? 64 : 16;
}

typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* unaligned loads and stores (GCC lets a vector of floats alias floats) */
typedef float v8fu __attribute__((vector_size(32), aligned(4)));
typedef float v4fu __attribute__((vector_size(16), aligned(4)));
typedef int32_t v8iu __attribute__((vector_size(32), aligned(4)));
#define LD8(p) (*(const v8fu *)(const void *)(p))
#define ST8(p, v) (*(v8fu *)(void *)(p) = (v))
#define LD4(p) (*(const v4fu *)(const void *)(p))
#define ST4(p, v) (*(v4fu *)(void *)(p) = (v))

/* ---- the baseline set (4-float vectors) ----
 * Block lanes live in memory (the lanes array); the values of partial vectors are added one by
 * one to their lanes (the same adds as a zero-padded vector). */

/* lanes[k % L] += x[k] for k in [a, b); 64 lanes take two passes over whole 64-blocks (lanes
 * 0-31, then 32-63), eight 4-float registers each. */
static void gen_lanes_add(float *lanes, size_t L, const float *x, size_t a, size_t b)
{
    size_t k = a, m = L - 1;
    for (; (k & 3) && k < b; k++) /* the same float add a zero-padded vector makes */
        lanes[k & m] += x[k];
    for (; k + 4 <= b && (k & m); k += 4)
        ST4(lanes + (k & m), LD4(lanes + (k & m)) + LD4(x + k));
    if (k + L <= b) {
        size_t k1 = k + (b - k) / L * L;
        for (size_t h = 0; h < L; h += 32) {
            float *l = lanes + h;
            if (L == 16) {
                v4f a0 = LD4(l), a1 = LD4(l + 4), a2 = LD4(l + 8), a3 = LD4(l + 12);
                for (size_t j = k; j < k1; j += 16) {
                    a0 += LD4(x + j);
                    a1 += LD4(x + j + 4);
                    a2 += LD4(x + j + 8);
                    a3 += LD4(x + j + 12);
                }
                ST4(l, a0);
                ST4(l + 4, a1);
                ST4(l + 8, a2);
                ST4(l + 12, a3);
                break;
            }
            v4f a0 = LD4(l), a1 = LD4(l + 4), a2 = LD4(l + 8), a3 = LD4(l + 12);
            v4f a4 = LD4(l + 16), a5 = LD4(l + 20), a6 = LD4(l + 24), a7 = LD4(l + 28);
            for (size_t j = k + h; j < k1; j += 64) {
                const float *q = x + j;
                a0 += LD4(q);
                a1 += LD4(q + 4);
                a2 += LD4(q + 8);
                a3 += LD4(q + 12);
                a4 += LD4(q + 16);
                a5 += LD4(q + 20);
                a6 += LD4(q + 24);
                a7 += LD4(q + 28);
            }
            ST4(l, a0);
            ST4(l + 4, a1);
            ST4(l + 8, a2);
            ST4(l + 12, a3);
            ST4(l + 16, a4);
            ST4(l + 20, a5);
            ST4(l + 24, a6);
            ST4(l + 28, a7);
        }
        k = k1;
    }
    for (; k + 4 <= b; k += 4)
        ST4(lanes + (k & m), LD4(lanes + (k & m)) + LD4(x + k));
    for (; k < b; k++)
        lanes[k & m] += x[k];
}

/* the lanes' double tree, one double at a time (L a constant after inlining) */
static inline __attribute__((always_inline)) double gen_tree(const float *lanes, const size_t L)
{
    double d[64];
    for (size_t i = 0; i < L; i++)
        d[i] = lanes[i];
    for (size_t n = L / 4; n > 1; n /= 2)
        for (size_t i = 0; i < n / 2; i++)
            for (size_t e = 0; e < 4; e++)
                d[4 * i + e] = d[8 * i + e] + d[8 * i + 4 + e];
    return (d[0] + d[1]) + (d[2] + d[3]);
}

static double gen_reduce(const float *lanes, size_t L)
{
    return L == 16 ? gen_tree(lanes, 16) : gen_tree(lanes, 64);
}

/* v[0..r) and +0 above (r < 4), built in registers (a copy through memory would stall the
 * vector load behind the scalar stores) */
static inline __attribute__((always_inline)) v4f gen_part(const float *v, size_t r)
{
    v4f t = {v[0], r > 1 ? v[1] : 0.f, r > 2 ? v[2] : 0.f, 0.f};
    return t;
}

/* one block of n < 1024 floats (16 lanes in four registers) */
static inline __attribute__((always_inline)) double gen_block16(const float *p, size_t n)
{
    v4f z = {0, 0, 0, 0};
    v4f a[4] = {z, z, z, z};
    size_t n16 = n / 16 * 16, r = n - n16;
    for (size_t k = 0; k < n16; k += 16) {
        a[0] += LD4(p + k);
        a[1] += LD4(p + k + 4);
        a[2] += LD4(p + k + 8);
        a[3] += LD4(p + k + 12);
    }
    for (size_t g = 0; g < 4 && 4 * g < r; g++)
        a[g] += 4 * g + 4 <= r ? LD4(p + n16 + 4 * g) : gen_part(p + n16 + 4 * g, r - 4 * g);
    double s[4];
    for (int e = 0; e < 4; e++)
        s[e] = ((double)a[0][e] + (double)a[1][e]) + ((double)a[2][e] + (double)a[3][e]);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* Block windows of channels [c0, c1): band i of channel c is the n floats at x + c * hw +
 * i * n; its mean goes to out[i * ostride + c]. */
static void gen_block_channels(const float *x, size_t hw, size_t n, uint32_t bands, double inv,
                               uint32_t c0, uint32_t c1, float *out, size_t ostride)
{
    size_t L = block_lanes(n);
    float lanes[64];
    for (uint32_t i = 0; i < bands; i++) {
        uint32_t c = c0;
        /* 16 lanes: in registers, two planes at once (eight chains, as in the AVX set) */
        for (; L == 16 && c + 2 <= c1; c += 2) {
            const float *p = x + c * hw + (size_t)i * n;
            out[(size_t)i * ostride + c] = (float)(gen_block16(p, n) * inv);
            out[(size_t)i * ostride + c + 1] = (float)(gen_block16(p + hw, n) * inv);
        }
        for (; c < c1; c++) {
            memset(lanes, 0, 64 * sizeof(float));
            gen_lanes_add(lanes, L, x + c * hw + (size_t)i * n, 0, n);
            out[(size_t)i * ostride + c] = (float)(gen_reduce(lanes, L) * inv);
        }
    }
}

/* Streamed blocks: the same piece [a, b) of the band at x + c * hw for channels [c0, c1),
 * lanes at lanes + c * per (zeroed first when a is the band's start). */
static void gen_stream_lanes(float *lanes, size_t per, size_t L, const float *x, size_t hw,
                             uint32_t c0, uint32_t c1, size_t a, size_t b)
{
    v4f z = {0, 0, 0, 0};
    for (uint32_t c = c0; c < c1; c++) {
        if (a == 0) /* a band's first values: its lanes start at +0 */
            for (size_t k = 0; k < L; k += 4)
                ST4(lanes + c * per + k, z);
        gen_lanes_add(lanes + c * per, L, x + c * hw, a, b);
    }
}

static void gen_stream_reduce(const float *lanes, size_t per, size_t L, uint32_t c0, uint32_t c1,
                              double inv, float *out)
{
    for (uint32_t c = c0; c < c1; c++)
        out[c] = (float)(gen_reduce(lanes + c * per, L) * inv);
}

/* The shared tails of both sets' column sums (inlined, so compiled with each set's
 * instructions). col[x] (+)= the nr rows' values for x in [x, span), as in gen_col_acc: 4-float
 * vectors (one at most when one4, a constant), then single columns. */
static inline __attribute__((always_inline)) void col_acc_tail(float *col, const float *q, size_t w,
                                                               size_t nr, size_t x, size_t span,
                                                               int first, const int one4)
{
    for (; x + 4 <= span; x += 4) {
        v4f c0 = LD4(first ? q + x : col + x);
        for (size_t y = first ? 1 : 0; y < nr; y++)
            c0 += LD4(q + y * w + x);
        ST4(col + x, c0);
        if (one4) {
            x += 4;
            break;
        }
    }
    for (; x < span; x++) {
        float c0 = first ? q[x] : col[x];
        for (size_t y = first ? 1 : 0; y < nr; y++)
            c0 += q[y * w + x];
        col[x] = c0;
    }
}

/* col[j] = x[j] (first) or col[j] + x[j] for j in [j, n); first: from j = 0 */
static inline __attribute__((always_inline)) void col_add_tail(float *col, const float *x, size_t j,
                                                               size_t n, int first)
{
    if (first) {
        memcpy(col, x, n * sizeof(float));
        return;
    }
    for (; j + 4 <= n; j += 4)
        ST4(col + j, LD4(col + j) + LD4(x + j));
    for (; j < n; j++)
        col[j] += x[j];
}

/* col[x] (+)= q[x] + q[w + x] + ... over nr rows, top to bottom in float (first: col starts
 * at row 0), for x < span: strips of 32 columns in registers, then 4, then single ones. */
static void gen_col_acc(float *col, const float *q, size_t w, size_t nr, size_t span, int first)
{
    size_t x = 0, r0 = first ? 1 : 0;
    for (; x + 32 <= span; x += 32) {
        const float *b = first ? q + x : col + x;
        v4f c0 = LD4(b), c1 = LD4(b + 4), c2 = LD4(b + 8), c3 = LD4(b + 12);
        v4f c4 = LD4(b + 16), c5 = LD4(b + 20), c6 = LD4(b + 24), c7 = LD4(b + 28);
        for (size_t y = r0; y < nr; y++) {
            const float *r = q + y * w + x;
            c0 += LD4(r);
            c1 += LD4(r + 4);
            c2 += LD4(r + 8);
            c3 += LD4(r + 12);
            c4 += LD4(r + 16);
            c5 += LD4(r + 20);
            c6 += LD4(r + 24);
            c7 += LD4(r + 28);
        }
        ST4(col + x, c0);
        ST4(col + x + 4, c1);
        ST4(col + x + 8, c2);
        ST4(col + x + 12, c3);
        ST4(col + x + 16, c4);
        ST4(col + x + 20, c5);
        ST4(col + x + 24, c6);
        ST4(col + x + 28, c7);
    }
    col_acc_tail(col, q, w, nr, x, span, first, 0);
}

/* col[j] = x[j] (first) or col[j] + x[j], j < n */
static void gen_col_add(float *col, const float *x, size_t n, int first)
{
    col_add_tail(col, x, 0, n, first);
}

/* the means of nj windows of pw column sums each (col[j * pw .. j * pw + pw)) into
 * out[j * ostride] */
static void gen_win_sums(const float *col, uint32_t pw, uint32_t nj, double inv, float *out,
                         size_t ostride)
{
    uint32_t p4 = pw / 4 * 4;
    for (uint32_t j = 0; j < nj; j++) {
        const float *q = col + (size_t)j * pw;
        double d[4] = {0, 0, 0, 0};
        for (uint32_t k = 0; k < p4; k += 4)
            for (uint32_t e = 0; e < 4; e++)
                d[e] += q[k + e];
        double t = (d[0] + d[1]) + (d[2] + d[3]);
        for (uint32_t k = p4; k < pw; k++)
            t += q[k];
        out[(size_t)j * ostride] = (float)(t * inv);
    }
}

/* The column-window drivers, written once for both sets: PFX names them (PFX_col_rows, ...),
 * ATTR is their storage class and target, ACC, ADD and WINS are the set's leaves (as
 * gen_col_acc, gen_col_add and gen_win_sums; the AVX ones always inline), ALIGN the alignment
 * of col_channels' column sums.
 * Column windows, channels [c0, c1) (column sums at st + c * per, plane c at x + c * hw):
 *  - col_rows: nr whole rows from value roff into the column sums (ACC);
 *  - col_part: n values of one row from value roff into columns [x0, x0 + n) (ADD);
 *  - col_wins: the window means of a finished band of column sums into out + c (WINS);
 *  - col_channels: whole planes (row stride w), window (i, j) into
 *    out[(i * ow + j) * ostride + c]; span = ow * pw <= POOL_COLS.
 * The drivers start on a 64-byte boundary, so that where their loops fall does not move with
 * the code placed before them (placement alone changes the streamed part-row pieces' time by
 * up to 1.4x on the same instructions). */
#define POOL_ALIGN64 __attribute__((aligned(64)))
#define POOL_DEFINE_COL_DRIVERS(PFX, ATTR, ACC, ADD, WINS, ALIGN)                                  \
    ATTR POOL_ALIGN64 void PFX##_col_rows(float *st, size_t per, const float *x, size_t hw,        \
                                          uint32_t c0, uint32_t c1, size_t roff, size_t w,         \
                                          size_t nr, size_t span, int first)                       \
    {                                                                                              \
        for (uint32_t c = c0; c < c1; c++)                                                         \
            ACC(st + c * per, x + c * hw + roff, w, nr, span, first);                              \
    }                                                                                              \
                                                                                                   \
    ATTR POOL_ALIGN64 void PFX##_col_part(float *st, size_t per, const float *x, size_t hw,        \
                                          uint32_t c0, uint32_t c1, size_t roff, size_t x0,        \
                                          size_t n, int first)                                     \
    {                                                                                              \
        for (uint32_t c = c0; c < c1; c++)                                                         \
            ADD(st + c * per + x0, x + c * hw + roff, n, first);                                   \
    }                                                                                              \
                                                                                                   \
    ATTR POOL_ALIGN64 void PFX##_col_wins(const float *st, size_t per, uint32_t c0, uint32_t c1,   \
                                          uint32_t pw, uint32_t ow, double inv, float *out,        \
                                          size_t ostride)                                          \
    {                                                                                              \
        for (uint32_t c = c0; c < c1; c++)                                                         \
            WINS(st + c * per, pw, ow, inv, out + c, ostride);                                     \
    }                                                                                              \
                                                                                                   \
    ATTR POOL_ALIGN64 void PFX##_col_channels(const float *x, size_t hw, size_t w, uint32_t ph,    \
                                              uint32_t pw, uint32_t oh, uint32_t ow, uint32_t c0,  \
                                              uint32_t c1, float *out, size_t ostride)             \
    {                                                                                              \
        float col[POOL_COLS] __attribute__((aligned(ALIGN)));                                      \
        double inv = 1.0 / ((double)ph * pw);                                                      \
        for (uint32_t c = c0; c < c1; c++)                                                         \
            for (uint32_t i = 0; i < oh; i++) {                                                    \
                ACC(col, x + c * hw + (size_t)i * ph * w, w, ph, (size_t)ow * pw, 1);              \
                WINS(col, pw, ow, inv, out + (size_t)i * ow * ostride + c, ostride);               \
            }                                                                                      \
    }

POOL_DEFINE_COL_DRIVERS(gen, static, gen_col_acc, gen_col_add, gen_win_sums, 4)

/* ---- the AVX set (8-float vectors) ---- */
#ifdef POOL_HAVE_AVX
#define AVX_FN __attribute__((target("avx"))) static
#define AVX_INLINE static inline __attribute__((always_inline, target("avx")))

/* a window of 8 ints over this table is a mask of the first e lanes (at 16 - e) or of lanes
 * s and up (at 8 - s) */
static const int32_t pool_mask[24] = {0,  0,  0,  0,  0, 0, 0, 0, -1, -1, -1, -1,
                                      -1, -1, -1, -1, 0, 0, 0, 0, 0,  0,  0,  0};
#define LD8I(p) (*(const v8iu *)(const void *)(p))

/* p[i] for s <= i < e, +0 in the other lanes: a masked load (vmaskmovps reads only the lanes
 * of the mask, so nothing outside the piece is touched) */
AVX_INLINE v8f a_part(const float *p, size_t s, size_t e)
{
    v8i m = LD8I(pool_mask + 16 - e) & LD8I(pool_mask + 8 - s);
    return (v8f)_mm256_maskload_ps(p, (__m256i)m);
}

AVX_INLINE v4d a_cvlo(v8f a)
{
    return (v4d)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)a));
}

AVX_INLINE v4d a_cvhi(v8f a)
{
    return (v4d)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)a, 1));
}

AVX_INLINE double a_hsum(v4d s)
{
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* the double trees of 16 lanes (a, b) and of 64 (a0..a7) */
AVX_INLINE double a_red16(v8f a, v8f b)
{
    return a_hsum((a_cvlo(a) + a_cvhi(a)) + (a_cvlo(b) + a_cvhi(b)));
}

AVX_INLINE double a_red64(v8f a0, v8f a1, v8f a2, v8f a3, v8f a4, v8f a5, v8f a6, v8f a7)
{
    v4d h0 = a_cvlo(a0) + a_cvhi(a0), h1 = a_cvlo(a1) + a_cvhi(a1);
    v4d h2 = a_cvlo(a2) + a_cvhi(a2), h3 = a_cvlo(a3) + a_cvhi(a3);
    v4d h4 = a_cvlo(a4) + a_cvhi(a4), h5 = a_cvlo(a5) + a_cvhi(a5);
    v4d h6 = a_cvlo(a6) + a_cvhi(a6), h7 = a_cvlo(a7) + a_cvhi(a7);
    return a_hsum(((h0 + h1) + (h2 + h3)) + ((h4 + h5) + (h6 + h7)));
}

AVX_INLINE double a_reduce(const float *l, size_t L)
{
    if (L == 16)
        return a_red16(LD8(l), LD8(l + 8));
    return a_red64(LD8(l), LD8(l + 8), LD8(l + 16), LD8(l + 24), LD8(l + 32), LD8(l + 40),
                   LD8(l + 48), LD8(l + 56));
}

/* the last r (< 16) values of a 16-lane block at p into a (lanes 0-7) and b (8-15) */
#define A_TAIL16(a, b, p, r)                                                                       \
    do {                                                                                           \
        if ((r) >= 8) {                                                                            \
            a += LD8(p);                                                                           \
            if ((r) > 8)                                                                           \
                b += a_part((p) + 8, 0, (r)-8);                                                    \
        } else if ((r) > 0) {                                                                      \
            a += a_part(p, 0, r);                                                                  \
        }                                                                                          \
    } while (0)

/* one block of n < 1024 floats (16 lanes) */
AVX_INLINE double a_block16(const float *q, size_t n)
{
    v8f a = {0, 0, 0, 0, 0, 0, 0, 0}, b = a;
    size_t n16 = n / 16 * 16;
    for (size_t k = 0; k < n16; k += 16) {
        a += LD8(q + k);
        b += LD8(q + k + 8);
    }
    A_TAIL16(a, b, q + n16, n - n16);
    return a_red16(a, b);
}

/* four blocks of n < 1024 floats, stride hw, their means into o[0..4): eight chains */
AVX_INLINE void a_blocks16x4(const float *q, size_t hw, size_t n, double inv, float *o)
{
    v8f z = {0, 0, 0, 0, 0, 0, 0, 0};
    v8f a0 = z, b0 = z, a1 = z, b1 = z, a2 = z, b2 = z, a3 = z, b3 = z;
    const float *q0 = q, *q1 = q + hw, *q2 = q + 2 * hw, *q3 = q + 3 * hw;
    size_t n16 = n / 16 * 16, r = n - n16;
    for (size_t k = 0; k < n16; k += 16) {
        a0 += LD8(q0 + k);
        b0 += LD8(q0 + k + 8);
        a1 += LD8(q1 + k);
        b1 += LD8(q1 + k + 8);
        a2 += LD8(q2 + k);
        b2 += LD8(q2 + k + 8);
        a3 += LD8(q3 + k);
        b3 += LD8(q3 + k + 8);
    }
    A_TAIL16(a0, b0, q0 + n16, r);
    A_TAIL16(a1, b1, q1 + n16, r);
    A_TAIL16(a2, b2, q2 + n16, r);
    A_TAIL16(a3, b3, q3 + n16, r);
    v4d t = {a_red16(a0, b0), a_red16(a1, b1), a_red16(a2, b2), a_red16(a3, b3)};
    v4d iv = {inv, inv, inv, inv};
    _mm_storeu_ps(o, _mm256_cvtpd_ps((__m256d)(t * iv)));
}

/* one block of n >= 1024 floats (64 lanes: eight chains) */
AVX_INLINE double a_block64(const float *q, size_t n)
{
    v8f a0 = {0, 0, 0, 0, 0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0;
    v8f a7 = a0;
    size_t n64 = n / 64 * 64, r = n - n64;
    for (size_t k = 0; k < n64; k += 64) {
        const float *p = q + k;
        a0 += LD8(p);
        a1 += LD8(p + 8);
        a2 += LD8(p + 16);
        a3 += LD8(p + 24);
        a4 += LD8(p + 32);
        a5 += LD8(p + 40);
        a6 += LD8(p + 48);
        a7 += LD8(p + 56);
    }
    const float *p = q + n64;
#define A_T64(acc, o)                                                                              \
    do {                                                                                           \
        if ((o) + 8 <= r)                                                                          \
            acc += LD8(p + (o));                                                                   \
        else if ((o) < r)                                                                          \
            acc += a_part(p + (o), 0, r - (o));                                                    \
    } while (0)
    A_T64(a0, 0);
    A_T64(a1, 8);
    A_T64(a2, 16);
    A_T64(a3, 24);
    A_T64(a4, 32);
    A_T64(a5, 40);
    A_T64(a6, 48);
    A_T64(a7, 56);
#undef A_T64
    return a_red64(a0, a1, a2, a3, a4, a5, a6, a7);
}

AVX_FN void avx_block_channels(const float *x, size_t hw, size_t n, uint32_t bands, double inv,
                               uint32_t c0, uint32_t c1, float *out, size_t ostride)
{
    for (uint32_t i = 0; i < bands; i++) {
        const float *xb = x + (size_t)i * n;
        float *o = out + (size_t)i * ostride;
        uint32_t c = c0;
        if (n < POOL_BIG) {
            for (; c + 4 <= c1; c += 4)
                a_blocks16x4(xb + c * hw, hw, n, inv, o + c);
            for (; c < c1; c++)
                o[c] = (float)(a_block16(xb + c * hw, n) * inv);
        } else {
            for (; c < c1; c++)
                o[c] = (float)(a_block64(xb + c * hw, n) * inv);
        }
    }
}

#define A_RMW(l, v) ST8(l, LD8(l) + (v))

/* lanes[k % L] += x[k] for k in [a, b), a < b: the partial vectors at either end padded, the
 * vectors before the first whole L-block and after the last one added in memory, the whole
 * L-blocks with the lanes in registers. */
AVX_INLINE void a_lanes_add(float *lanes, size_t L, const float *x, size_t a, size_t b)
{
    size_t k = a, m = L - 1;
    if (k & 7) {
        size_t k0 = k & ~(size_t)7, e = k0 + 8 < b ? k0 + 8 : b;
        A_RMW(lanes + (k0 & m), a_part(x + k0, k - k0, e - k0));
        k = e;
    }
    for (; k + 8 <= b && (k & m); k += 8)
        A_RMW(lanes + (k & m), LD8(x + k));
    if (k + L <= b) {
        if (L == 64) {
            v8f a0 = LD8(lanes), a1 = LD8(lanes + 8), a2 = LD8(lanes + 16), a3 = LD8(lanes + 24);
            v8f a4 = LD8(lanes + 32), a5 = LD8(lanes + 40), a6 = LD8(lanes + 48);
            v8f a7 = LD8(lanes + 56);
            for (; k + 64 <= b; k += 64) {
                const float *q = x + k;
                a0 += LD8(q);
                a1 += LD8(q + 8);
                a2 += LD8(q + 16);
                a3 += LD8(q + 24);
                a4 += LD8(q + 32);
                a5 += LD8(q + 40);
                a6 += LD8(q + 48);
                a7 += LD8(q + 56);
            }
            ST8(lanes, a0);
            ST8(lanes + 8, a1);
            ST8(lanes + 16, a2);
            ST8(lanes + 24, a3);
            ST8(lanes + 32, a4);
            ST8(lanes + 40, a5);
            ST8(lanes + 48, a6);
            ST8(lanes + 56, a7);
        } else {
            v8f a0 = LD8(lanes), a1 = LD8(lanes + 8);
            for (; k + 16 <= b; k += 16) {
                a0 += LD8(x + k);
                a1 += LD8(x + k + 8);
            }
            ST8(lanes, a0);
            ST8(lanes + 8, a1);
        }
    }
    for (; k + 8 <= b; k += 8)
        A_RMW(lanes + (k & m), LD8(x + k));
    if (k < b)
        A_RMW(lanes + (k & m), a_part(x + k, 0, b - k));
}

/* 16 lanes of four channels (lanes l, l + per, ..., values q, q + hw, ...) over [a, b): the
 * whole 16-blocks with eight chains */
AVX_INLINE void a_lanes16_add4(float *l, size_t per, const float *q, size_t hw, size_t a, size_t b)
{
    size_t h = (a + 15) & ~(size_t)15;
    h = h < b ? h : b;
    if (a < h)
        for (int i = 0; i < 4; i++)
            a_lanes_add(l + i * per, 16, q + i * hw, a, h);
    if (h == b)
        return;
    size_t e = h + (b - h) / 16 * 16, r = b - e;
    float *l0 = l, *l1 = l + per, *l2 = l + 2 * per, *l3 = l + 3 * per;
    const float *q0 = q, *q1 = q + hw, *q2 = q + 2 * hw, *q3 = q + 3 * hw;
    v8f a0 = LD8(l0), b0 = LD8(l0 + 8), a1 = LD8(l1), b1 = LD8(l1 + 8);
    v8f a2 = LD8(l2), b2 = LD8(l2 + 8), a3 = LD8(l3), b3 = LD8(l3 + 8);
    for (size_t k = h; k < e; k += 16) {
        a0 += LD8(q0 + k);
        b0 += LD8(q0 + k + 8);
        a1 += LD8(q1 + k);
        b1 += LD8(q1 + k + 8);
        a2 += LD8(q2 + k);
        b2 += LD8(q2 + k + 8);
        a3 += LD8(q3 + k);
        b3 += LD8(q3 + k + 8);
    }
    if (r) { /* the last values, lanes 0..r-1 (e is a multiple of 16) */
        A_TAIL16(a0, b0, q0 + e, r);
        A_TAIL16(a1, b1, q1 + e, r);
        A_TAIL16(a2, b2, q2 + e, r);
        A_TAIL16(a3, b3, q3 + e, r);
    }
    ST8(l0, a0);
    ST8(l0 + 8, b0);
    ST8(l1, a1);
    ST8(l1 + 8, b1);
    ST8(l2, a2);
    ST8(l2 + 8, b2);
    ST8(l3, a3);
    ST8(l3 + 8, b3);
}

AVX_FN void avx_stream_lanes(float *lanes, size_t per, size_t L, const float *x, size_t hw,
                             uint32_t c0, uint32_t c1, size_t a, size_t b)
{
    uint32_t c = c0;
    v8f z = {0, 0, 0, 0, 0, 0, 0, 0};
    if (a == 0) /* a band's first values: its lanes start at +0 (stores the loads can forward) */
        for (c = c0; c < c1; c++) { /* written out: GCC makes a loop a call to memset */
            float *l = lanes + c * per;
            ST8(l, z);
            ST8(l + 8, z);
            if (L == 64) {
                ST8(l + 16, z);
                ST8(l + 24, z);
                ST8(l + 32, z);
                ST8(l + 40, z);
                ST8(l + 48, z);
                ST8(l + 56, z);
            }
        }
    c = c0;
    if (L == 16)
        for (; c + 4 <= c1; c += 4)
            a_lanes16_add4(lanes + c * per, per, x + c * hw, hw, a, b);
    for (; c < c1; c++)
        a_lanes_add(lanes + c * per, L, x + c * hw, a, b);
}

AVX_FN void avx_stream_reduce(const float *lanes, size_t per, size_t L, uint32_t c0, uint32_t c1,
                              double inv, float *out)
{
    uint32_t c = c0;
    v4d iv = {inv, inv, inv, inv};
    for (; c + 4 <= c1; c += 4) {
        const float *l = lanes + c * per;
        v4d t = {a_reduce(l, L), a_reduce(l + per, L), a_reduce(l + 2 * per, L),
                 a_reduce(l + 3 * per, L)};
        _mm_storeu_ps(out + c, _mm256_cvtpd_ps((__m256d)(t * iv)));
    }
    for (; c < c1; c++)
        out[c] = (float)(a_reduce(lanes + c * per, L) * inv);
}

/* nv (1..8, a constant after inlining) 8-column vectors of nr rows (row stride w) added into
 * col, top to bottom (first: col starts at row 0 of q): nv chains, the rows read once */
AVX_INLINE void a_strip(float *col, const float *q, size_t w, size_t nr, int first, const int nv)
{
    const float *b = first ? q : col;
    v8f z = {0, 0, 0, 0, 0, 0, 0, 0};
    v8f c0 = z, c1 = z, c2 = z, c3 = z, c4 = z, c5 = z, c6 = z, c7 = z;
#define A_ST_ALL(OP)                                                                               \
    do {                                                                                           \
        OP(c0, 0);                                                                                 \
        if (nv > 1)                                                                                \
            OP(c1, 8);                                                                             \
        if (nv > 2)                                                                                \
            OP(c2, 16);                                                                            \
        if (nv > 3)                                                                                \
            OP(c3, 24);                                                                            \
        if (nv > 4)                                                                                \
            OP(c4, 32);                                                                            \
        if (nv > 5)                                                                                \
            OP(c5, 40);                                                                            \
        if (nv > 6)                                                                                \
            OP(c6, 48);                                                                            \
        if (nv > 7)                                                                                \
            OP(c7, 56);                                                                            \
    } while (0)
#define A_ST_INIT(c, o) c = LD8(b + (o))
#define A_ST_ADD(c, o) c += LD8(r + (o))
#define A_ST_STORE(c, o) ST8(col + (o), c)
    A_ST_ALL(A_ST_INIT);
    for (size_t y = first ? 1 : 0; y < nr; y++) {
        const float *r = q + y * w;
        A_ST_ALL(A_ST_ADD);
    }
    A_ST_ALL(A_ST_STORE);
#undef A_ST_INIT
#undef A_ST_ADD
#undef A_ST_STORE
#undef A_ST_ALL
}

/* col[x] (+)= the nr rows' values, x < span: the whole 8-column vectors in strips of nearly
 * equal width (at most 8 vectors: 112 columns are two strips of 7, not 8 + 6, so that every
 * strip has enough chains), then 4 columns, then single ones */
AVX_INLINE void a_col_acc(float *col, const float *q, size_t w, size_t nr, size_t span, int first)
{
    size_t nv = span / 8, ns = (nv + 7) / 8, x = 0;
    for (size_t s = 0; s < ns; s++) {
        size_t v = nv / ns + (s < nv % ns);
        switch (v) {
        case 1:
            a_strip(col + x, q + x, w, nr, first, 1);
            break;
        case 2:
            a_strip(col + x, q + x, w, nr, first, 2);
            break;
        case 3:
            a_strip(col + x, q + x, w, nr, first, 3);
            break;
        case 4:
            a_strip(col + x, q + x, w, nr, first, 4);
            break;
        case 5:
            a_strip(col + x, q + x, w, nr, first, 5);
            break;
        case 6:
            a_strip(col + x, q + x, w, nr, first, 6);
            break;
        case 7:
            a_strip(col + x, q + x, w, nr, first, 7);
            break;
        default:
            a_strip(col + x, q + x, w, nr, first, 8);
        }
        x += 8 * v;
    }
    col_acc_tail(col, q, w, nr, x, span, first, 1);
}

AVX_INLINE void a_col_add(float *col, const float *x, size_t n, int first)
{
    size_t j = 0;
    for (; !first && j + 8 <= n; j += 8)
        ST8(col + j, LD8(col + j) + LD8(x + j));
    col_add_tail(col, x, j, n, first);
}

AVX_INLINE v4d a_cv4(const float *p)
{
    return (v4d)_mm256_cvtps_pd(_mm_loadu_ps(p));
}

/* window sums as gen_win_sums, two windows at a time */
AVX_INLINE void a_win_sums(const float *col, uint32_t pw, uint32_t nj, double inv, float *out,
                           size_t ostride)
{
    uint32_t p4 = pw / 4 * 4, j = 0;
    for (; j + 2 <= nj; j += 2) {
        const float *q0 = col + (size_t)j * pw, *q1 = q0 + pw;
        v4d d0 = {0, 0, 0, 0}, d1 = d0;
        for (uint32_t k = 0; k < p4; k += 4) {
            d0 += a_cv4(q0 + k);
            d1 += a_cv4(q1 + k);
        }
        double t0 = a_hsum(d0), t1 = a_hsum(d1);
        for (uint32_t k = p4; k < pw; k++) {
            t0 += q0[k];
            t1 += q1[k];
        }
        out[(size_t)j * ostride] = (float)(t0 * inv);
        out[(size_t)(j + 1) * ostride] = (float)(t1 * inv);
    }
    for (; j < nj; j++) {
        const float *q0 = col + (size_t)j * pw;
        v4d d0 = {0, 0, 0, 0};
        for (uint32_t k = 0; k < p4; k += 4)
            d0 += a_cv4(q0 + k);
        double t0 = a_hsum(d0);
        for (uint32_t k = p4; k < pw; k++)
            t0 += q0[k];
        out[(size_t)j * ostride] = (float)(t0 * inv);
    }
}

POOL_DEFINE_COL_DRIVERS(avx, AVX_FN, a_col_acc, a_col_add, a_win_sums, 32)

/* ---- the AVX-512 set (16-float vectors) ----
 * The same adds as the AVX set, two of its vectors per register: a block's 16 lanes are one
 * register (64 lanes four), a strip of column sums 16 columns per register. Partial vectors
 * are zero-masked loads (only the piece's values are read). The double trees reuse the AVX
 * set's (a register's halves are its two 8-lane vectors), and remainders the set leaves (the
 * last channels of a group, strips narrower than 16 columns, a streamed piece's ends before
 * and after its whole L-blocks) go to the AVX set's kernels: lanes and columns are
 * independent, so which kernel adds a value to its lane changes no bit. */
#define Z_FN __attribute__((target("avx512f"))) static
#define Z_INLINE static inline __attribute__((always_inline, target("avx512f")))

Z_INLINE __m512 z_part(const float *p, size_t r) /* p[0..r) and +0 above, r <= 16 */
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1u), p);
}

Z_INLINE double z_red16(__m512 a)
{
    return a_red16((v8f)_mm512_castps512_ps256(a),
                   (v8f)_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

#define Z_LO(a) ((v8f)_mm512_castps512_ps256(a))
#define Z_HI(a) ((v8f)_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)))

Z_INLINE double z_red64(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    return a_red64(Z_LO(a0), Z_HI(a0), Z_LO(a1), Z_HI(a1), Z_LO(a2), Z_HI(a2), Z_LO(a3), Z_HI(a3));
}

/* the r (< 64) values after a 64-lane block's whole blocks, into its four registers */
#define Z_T64(acc, p, r, o)                                                                        \
    do {                                                                                           \
        if ((o) + 16 <= (r))                                                                       \
            acc = _mm512_add_ps(acc, _mm512_loadu_ps((p) + (o)));                                  \
        else if ((o) < (r))                                                                        \
            acc = _mm512_add_ps(acc, z_part((p) + (o), (r) - (o)));                                \
    } while (0)

/* eight blocks of n < 1024 floats, stride hw, their means into o[0..8): eight chains */
Z_INLINE void z_blocks16x8(const float *q, size_t hw, size_t n, double inv, float *o)
{
    __m512 a[8];
    for (int i = 0; i < 8; i++)
        a[i] = _mm512_setzero_ps();
    size_t n16 = n / 16 * 16, r = n - n16;
    for (size_t k = 0; k < n16; k += 16) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            a[i] = _mm512_add_ps(a[i], _mm512_loadu_ps(q + i * hw + k));
    }
    if (r)
        for (int i = 0; i < 8; i++)
            a[i] = _mm512_add_ps(a[i], z_part(q + i * hw + n16, r));
    v4d iv = {inv, inv, inv, inv};
    v4d t0 = {z_red16(a[0]), z_red16(a[1]), z_red16(a[2]), z_red16(a[3])};
    v4d t1 = {z_red16(a[4]), z_red16(a[5]), z_red16(a[6]), z_red16(a[7])};
    _mm_storeu_ps(o, _mm256_cvtpd_ps((__m256d)(t0 * iv)));
    _mm_storeu_ps(o + 4, _mm256_cvtpd_ps((__m256d)(t1 * iv)));
}

/* two blocks of n >= 1024 floats (64 lanes each, four registers): eight chains */
Z_INLINE void z_blocks64x2(const float *q, size_t hw, size_t n, double inv, float *o)
{
    __m512 z = _mm512_setzero_ps();
    __m512 a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
    const float *q1 = q + hw;
    size_t n64 = n / 64 * 64, r = n - n64;
    for (size_t k = 0; k < n64; k += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(q + k));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(q + k + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(q + k + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(q + k + 48));
        b0 = _mm512_add_ps(b0, _mm512_loadu_ps(q1 + k));
        b1 = _mm512_add_ps(b1, _mm512_loadu_ps(q1 + k + 16));
        b2 = _mm512_add_ps(b2, _mm512_loadu_ps(q1 + k + 32));
        b3 = _mm512_add_ps(b3, _mm512_loadu_ps(q1 + k + 48));
    }
    Z_T64(a0, q + n64, r, 0);
    Z_T64(a1, q + n64, r, 16);
    Z_T64(a2, q + n64, r, 32);
    Z_T64(a3, q + n64, r, 48);
    Z_T64(b0, q1 + n64, r, 0);
    Z_T64(b1, q1 + n64, r, 16);
    Z_T64(b2, q1 + n64, r, 32);
    Z_T64(b3, q1 + n64, r, 48);
    o[0] = (float)(z_red64(a0, a1, a2, a3) * inv);
    o[1] = (float)(z_red64(b0, b1, b2, b3) * inv);
}

Z_FN void z_block_channels(const float *x, size_t hw, size_t n, uint32_t bands, double inv,
                           uint32_t c0, uint32_t c1, float *out, size_t ostride)
{
    for (uint32_t i = 0; i < bands; i++) {
        const float *xb = x + (size_t)i * n;
        float *o = out + (size_t)i * ostride;
        uint32_t c = c0;
        if (n < POOL_BIG) {
            for (; c + 8 <= c1; c += 8)
                z_blocks16x8(xb + c * hw, hw, n, inv, o + c);
            for (; c + 4 <= c1; c += 4)
                a_blocks16x4(xb + c * hw, hw, n, inv, o + c);
            for (; c < c1; c++)
                o[c] = (float)(a_block16(xb + c * hw, n) * inv);
        } else {
            for (; c + 2 <= c1; c += 2)
                z_blocks64x2(xb + c * hw, hw, n, inv, o + c);
            for (; c < c1; c++)
                o[c] = (float)(a_block64(xb + c * hw, n) * inv);
        }
    }
}

/* lanes[k % L] += x[k] for k in [a, b), a < b: the whole L-blocks in registers, the values
 * before and after them by the AVX set */
Z_INLINE void z_lanes_add(float *lanes, size_t L, const float *x, size_t a, size_t b)
{
    size_t h = (a + L - 1) / L * L;
    h = h < b ? h : b;
    if (a < h)
        a_lanes_add(lanes, L, x, a, h);
    size_t e = h + (b - h) / L * L;
    if (h < e) {
        if (L == 64) {
            __m512 a0 = _mm512_loadu_ps(lanes), a1 = _mm512_loadu_ps(lanes + 16);
            __m512 a2 = _mm512_loadu_ps(lanes + 32), a3 = _mm512_loadu_ps(lanes + 48);
            for (size_t k = h; k < e; k += 64) {
                a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + k));
                a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + k + 16));
                a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + k + 32));
                a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + k + 48));
            }
            _mm512_storeu_ps(lanes, a0);
            _mm512_storeu_ps(lanes + 16, a1);
            _mm512_storeu_ps(lanes + 32, a2);
            _mm512_storeu_ps(lanes + 48, a3);
        } else {
            __m512 a0 = _mm512_loadu_ps(lanes);
            for (size_t k = h; k < e; k += 16)
                a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + k));
            _mm512_storeu_ps(lanes, a0);
        }
    }
    if (e < b)
        a_lanes_add(lanes, L, x, e, b);
}

/* 16 lanes of eight channels (lanes l, l + per, ..., values q, q + hw, ...) over [a, b): the
 * whole 16-blocks with eight chains, the partial last one zero-masked */
Z_INLINE void z_lanes16_add8(float *l, size_t per, const float *q, size_t hw, size_t a, size_t b)
{
    size_t h = (a + 15) & ~(size_t)15;
    h = h < b ? h : b;
    if (a < h)
        for (int i = 0; i < 8; i++)
            a_lanes_add(l + i * per, 16, q + i * hw, a, h);
    if (h == b)
        return;
    size_t e = h + (b - h) / 16 * 16, r = b - e;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        acc[i] = _mm512_loadu_ps(l + i * per);
    for (size_t k = h; k < e; k += 16) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            acc[i] = _mm512_add_ps(acc[i], _mm512_loadu_ps(q + i * hw + k));
    }
    if (r)
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            acc[i] = _mm512_add_ps(acc[i], z_part(q + i * hw + e, r));
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        _mm512_storeu_ps(l + i * per, acc[i]);
}

Z_FN void z_stream_lanes(float *lanes, size_t per, size_t L, const float *x, size_t hw, uint32_t c0,
                         uint32_t c1, size_t a, size_t b)
{
    uint32_t c = c0;
    __m512 z = _mm512_setzero_ps();
    if (a == 0) /* a band's first values: its lanes start at +0 */
        for (c = c0; c < c1; c++) {
            float *l = lanes + c * per;
            _mm512_storeu_ps(l, z);
            if (L == 64) {
                _mm512_storeu_ps(l + 16, z);
                _mm512_storeu_ps(l + 32, z);
                _mm512_storeu_ps(l + 48, z);
            }
        }
    c = c0;
    if (L == 16) {
        for (; c + 8 <= c1; c += 8)
            z_lanes16_add8(lanes + c * per, per, x + c * hw, hw, a, b);
        for (; c + 4 <= c1; c += 4)
            a_lanes16_add4(lanes + c * per, per, x + c * hw, hw, a, b);
    }
    for (; c < c1; c++)
        z_lanes_add(lanes + c * per, L, x + c * hw, a, b);
}

/* nv (1..8, a constant after inlining) 16-column vectors of nr rows added into col, top to
 * bottom (first: col starts at row 0 of q): nv chains, the rows read once */
Z_INLINE void z_strip(float *col, const float *q, size_t w, size_t nr, int first, const int nv)
{
    const float *b = first ? q : col;
    __m512 c[8];
#pragma GCC unroll 8
    for (int i = 0; i < nv; i++)
        c[i] = _mm512_loadu_ps(b + 16 * i);
    for (size_t y = first ? 1 : 0; y < nr; y++) {
        const float *r = q + y * w;
#pragma GCC unroll 8
        for (int i = 0; i < nv; i++)
            c[i] = _mm512_add_ps(c[i], _mm512_loadu_ps(r + 16 * i));
    }
#pragma GCC unroll 8
    for (int i = 0; i < nv; i++)
        _mm512_storeu_ps(col + 16 * i, c[i]);
}

/* col[x] (+)= the nr rows' values, x < span: the whole 16-column vectors in strips of nearly
 * equal width (at most 8 vectors), then the AVX set's 8-column strips and single columns */
Z_INLINE void z_col_acc(float *col, const float *q, size_t w, size_t nr, size_t span, int first)
{
    size_t nv = span / 16, ns = (nv + 7) / 8, x = 0;
    for (size_t s = 0; s < ns; s++) {
        size_t v = nv / ns + (s < nv % ns);
        switch (v) {
        case 1:
            z_strip(col + x, q + x, w, nr, first, 1);
            break;
        case 2:
            z_strip(col + x, q + x, w, nr, first, 2);
            break;
        case 3:
            z_strip(col + x, q + x, w, nr, first, 3);
            break;
        case 4:
            z_strip(col + x, q + x, w, nr, first, 4);
            break;
        case 5:
            z_strip(col + x, q + x, w, nr, first, 5);
            break;
        case 6:
            z_strip(col + x, q + x, w, nr, first, 6);
            break;
        case 7:
            z_strip(col + x, q + x, w, nr, first, 7);
            break;
        default:
            z_strip(col + x, q + x, w, nr, first, 8);
        }
        x += 16 * v;
    }
    if (x < span)
        a_col_acc(col + x, q + x, w, nr, span - x, first);
}

Z_INLINE void z_col_add(float *col, const float *x, size_t n, int first)
{
    size_t j = 0;
    for (; !first && j + 16 <= n; j += 16)
        _mm512_storeu_ps(col + j, _mm512_add_ps(_mm512_loadu_ps(col + j), _mm512_loadu_ps(x + j)));
    a_col_add(col + j, x + j, n - j, first);
}

POOL_DEFINE_COL_DRIVERS(z, Z_FN, z_col_acc, z_col_add, a_win_sums, 64)
#else
#define avx_block_channels gen_block_channels
#define avx_stream_lanes gen_stream_lanes
#define avx_stream_reduce gen_stream_reduce
#define avx_col_rows gen_col_rows
#define avx_col_part gen_col_part
#define avx_col_wins gen_col_wins
#define avx_col_channels gen_col_channels
#define z_block_channels gen_block_channels
#define z_stream_lanes gen_stream_lanes
#define z_col_rows gen_col_rows
#define z_col_part gen_col_part
#define z_col_wins gen_col_wins
#define z_col_channels gen_col_channels
#endif

int h2t_pool_isa_best(void)
{
#ifdef POOL_HAVE_AVX
    if (h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_AVX512F))
        return H2T_POOL_ISA_AVX512;
    if (h2t_cpu_has(H2T_CPU_AVX))
        return H2T_POOL_ISA_AVX;
#endif
    return H2T_POOL_ISA_GENERIC;
}

/* The kernel set that runs for a requested one: the request, lowered to what this CPU runs. */
static int pool_level(int isa)
{
    int best = h2t_pool_isa_best();
    return isa < H2T_POOL_ISA_GENERIC ? H2T_POOL_ISA_GENERIC : isa < best ? isa : best;
}

/* set lv's kernel NAME (gen_NAME, avx_NAME or z_NAME) */
#define POOL_PICK(lv, NAME)                                                                        \
    ((lv) == H2T_POOL_ISA_AVX512 ? z_##NAME : (lv) == H2T_POOL_ISA_AVX ? avx_##NAME : gen_##NAME)

/* block windows: GAP, or a grid of one window per band of whole rows */
static int plan_block(const h2t_pool_plan *p)
{
    return p->kind == H2T_POOL_GAP || p->pw == p->w;
}

/* Channels [c0, c1) of a 4-D sample (GAP or GRID): out[(i * ow + j) * C + c]. */
static void pool_channels(const h2t_pool_plan *p, const float *x, uint32_t c0, uint32_t c1,
                          float *out, int isa)
{
    size_t hw = (size_t)p->h * p->w;
    int lv = pool_level(isa);
    if (plan_block(p)) {
        int gap = p->kind == H2T_POOL_GAP;
        size_t n = gap ? hw : (size_t)p->ph * p->w;
        uint32_t bands = gap ? 1 : p->oh;
        double inv = gap ? 1.0 / (double)hw : 1.0 / ((double)p->ph * p->pw);
        POOL_PICK(lv, block_channels)(x, hw, n, bands, inv, c0, c1, out, p->c);
        return;
    }
    if (p->pw <= POOL_COLS && (size_t)p->ow * p->pw <= POOL_COLS) {
        POOL_PICK(lv, col_channels)(x, hw, p->w, p->ph, p->pw, p->oh, p->ow, c0, c1, out, p->c);
        return;
    }
    /* very wide planes: column windows in chunks of whole windows, or the plain double sums of
     * windows wider than POOL_COLS */
    double inv = 1.0 / ((double)p->ph * p->pw);
    float colv[POOL_COLS], *col = p->pw <= POOL_COLS ? colv : NULL;
    for (uint32_t c = c0; c < c1; c++)
        for (uint32_t i = 0; i < p->oh; i++) {
            const float *r0 = x + c * hw + (size_t)i * p->ph * p->w;
            float *o = out + (size_t)i * p->ow * p->c + c;
            if (!col) {
                for (uint32_t j = 0; j < p->ow; j++) {
                    double a = 0;
                    for (uint32_t r = 0; r < p->ph; r++)
                        for (uint32_t k = 0; k < p->pw; k++)
                            a += r0[(size_t)r * p->w + (size_t)j * p->pw + k];
                    o[(size_t)j * p->c] = (float)(a * inv);
                }
                continue;
            }
            uint32_t per_chunk = POOL_COLS / p->pw;
            for (uint32_t j0 = 0; j0 < p->ow; j0 += per_chunk) {
                uint32_t nj = p->ow - j0 < per_chunk ? p->ow - j0 : per_chunk;
                POOL_PICK(lv, col_rows)
                (col, 0, r0 + (size_t)j0 * p->pw, 0, 0, 1, 0, p->w, p->ph, (size_t)nj * p->pw, 1);
                POOL_PICK(lv, col_wins)(col, 0, 0, 1, p->pw, nj, inv, o + (size_t)j0 * p->c, p->c);
            }
        }
}

/* ---- streaming: channels fed in spans of their planes ----
 *
 * Per channel, a state of floats: block windows keep the current band's L lanes (zeroed at
 * the band's first value, reduced at its last); column windows keep the ow * pw column sums
 * of the current window band. Each value is added with the same float operation, to the same
 * lane or column, in the same order, as the whole-plane kernels, so the features are bitwise
 * theirs. */
static size_t stream_floats(const h2t_pool_plan *p)
{
    if (plan_block(p))
        return block_lanes(p->kind == H2T_POOL_GAP ? (size_t)p->h * p->w : (size_t)p->ph * p->w);
    return ((size_t)p->ow * p->pw + 1) / 2 * 2; /* even: 8-byte aligned channels */
}

size_t h2t_pool_stream_bytes(const h2t_pool_plan *p)
{
    if ((p->kind != H2T_POOL_GAP && p->kind != H2T_POOL_GRID) || p->w > POOL_COLS ||
        p->form == H2T_FORM_NHWC)
        return 0;
    return (size_t)p->c * stream_floats(p) * sizeof(float);
}

/* Block windows: values [off, off + len) of channels [c0, c1). */
static void stream_block(const h2t_pool_plan *p, float *state, const float *x, uint32_t c0,
                         uint32_t c1, size_t off, size_t len, float *out, int lv)
{
    size_t hw = (size_t)p->h * p->w, end = off + len, per = stream_floats(p);
    int gap = p->kind == H2T_POOL_GAP;
    size_t n = gap ? hw : (size_t)p->ph * p->w, L = block_lanes(n);
    uint32_t oh = gap ? 1 : p->oh;
    double inv = gap ? 1.0 / (double)hw : 1.0 / ((double)p->ph * p->pw);
    for (size_t pos = off; pos < end;) {
        size_t band = pos / n;
        if (band >= oh)
            break;
        size_t base = band * n, a = pos - base, b = end - base < n ? end - base : n;
        POOL_PICK(lv, stream_lanes)(state, per, L, x + base, hw, c0, c1, a, b);
        if (b == n)
            (lv ? avx_stream_reduce : gen_stream_reduce)(state, per, L, c0, c1, inv,
                                                         out + band * p->c);
        pos = base + b;
    }
}

/* Column windows: values [off, off + len) of channels [c0, c1). The piece's rows and bands
 * are the same for every channel, so each segment (whole rows, or part of a row) is one call
 * over the channels. */
static void stream_cols(const h2t_pool_plan *p, float *state, const float *x, uint32_t c0,
                        uint32_t c1, size_t off, size_t len, float *out, int lv)
{
    size_t w = p->w, hw = (size_t)p->h * w, end = off + len, per = stream_floats(p);
    uint32_t ph = p->ph, pw = p->pw, oh = p->oh, ow = p->ow;
    double inv = 1.0 / ((double)ph * pw);
    size_t span = (size_t)ow * pw;
    for (size_t pos = off; pos < end;) {
        size_t r = pos / w;
        if (r >= (size_t)oh * ph)
            break;
        size_t x0 = pos - r * w, x1 = end - r * w < w ? end - r * w : w, band = r / ph;
        int first = r == band * ph, done = 0;
        if (x0 == 0 && x1 == w) { /* whole rows up to the band's end: rows together */
            size_t band_end = (band + 1) * ph, nr = (end - pos) / w;
            nr = nr < band_end - r ? nr : band_end - r;
            POOL_PICK(lv, col_rows)(state, per, x, hw, c0, c1, r * w, w, nr, span, first);
            done = r + nr == band_end;
            pos = (r + nr) * w;
        } else {
            if (x0 < span) {
                size_t e = x1 < span ? x1 : span;
                POOL_PICK(lv, col_part)(state, per, x, hw, c0, c1, r * w + x0, x0, e - x0, first);
                done = e == span && r == band * ph + ph - 1;
            }
            pos = r * w + x1;
        }
        if (done)
            POOL_PICK(lv, col_wins)(state, per, c0, c1, pw, ow, inv, out + band * ow * p->c, p->c);
    }
}

int h2t_pool_stream_isa(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0,
                        uint32_t c1, size_t off, size_t len, float *out, int isa)
{
    size_t hw = (size_t)p->h * p->w;
    if (c0 > c1 || c1 > p->c || off > hw || len > hw - off)
        return h2t_err_set(H2T_EINVAL, "channels [%u, %u) values [%zu, %zu) of a %u x %zu sample",
                           c0, c1, off, off + len, p->c, hw);
    if (p->form == H2T_FORM_NHWC)
        return h2t_err_set(H2T_EINVAL, "a channels-last plan pools whole samples only");
    if (off == 0 && len == hw && (p->kind == H2T_POOL_GAP || p->kind == H2T_POOL_GRID)) {
        pool_channels(p, x, c0, c1, out, isa);
        return 0;
    }
    if (h2t_pool_stream_bytes(p) == 0 || !state)
        return h2t_err_set(H2T_EINVAL, "this plan (kind %d, width %u) pools whole planes only",
                           p->kind, p->w);
    int lv = pool_level(isa);
    if (plan_block(p)) {
        stream_block(p, state, x, c0, c1, off, len, out, lv);
        return 0;
    }
    stream_cols(p, state, x, c0, c1, off, len, out, lv);
    return 0;
}

int h2t_pool_stream(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0, uint32_t c1,
                    size_t off, size_t len, float *out)
{
    return h2t_pool_stream_isa(p, state, x, c0, c1, off, len, out, h2t_pool_isa_best());
}

/* 3-D tokens: token t's channel c is x[t * ts + c * cs]. A window of win tokens averages each
 * channel in double, tokens in order, from +0; the class token (lead) is copied first. */
static void pool_tokens(const h2t_pool_plan *p, const float *x, size_t ts, size_t cs, float *out)
{
    if (p->kind == H2T_POOL_CLS || p->lead) {
        for (uint32_t c = 0; c < p->c; c++)
            out[c] = x[(size_t)c * cs];
        if (p->kind == H2T_POOL_CLS)
            return;
        out += p->c;
    }
    uint32_t n = p->h - p->t0;
    uint32_t win = p->kind == H2T_POOL_TMEAN ? n : p->ph;
    uint32_t nw = p->kind == H2T_POOL_TMEAN ? 1 : p->oh;
    double acc[1024];
    for (uint32_t i = 0; i < nw; i++) {
        float *o = out + (size_t)i * p->c;
        for (uint32_t c0 = 0; c0 < p->c; c0 += 1024) {
            uint32_t nc = p->c - c0 < 1024 ? p->c - c0 : 1024;
            for (uint32_t c = 0; c < nc; c++)
                acc[c] = 0;
            for (uint32_t t = p->t0 + i * win; t < p->t0 + (i + 1) * win; t++) {
                const float *row = x + (size_t)t * ts + (size_t)c0 * cs;
                if (cs == 1)
                    for (uint32_t c = 0; c < nc; c++)
                        acc[c] += row[c];
                else
                    for (uint32_t c = 0; c < nc; c++)
                        acc[c] += row[(size_t)c * cs];
            }
            for (uint32_t c = 0; c < nc; c++)
                o[c0 + c] = (float)(acc[c] / win);
        }
    }
}

/* 4-D channels last (H x W x C): each window's channels summed in double, rows top to bottom,
 * each row left to right; features in (H, W, C) order as the NCHW kernels write them. */
static void pool_nhwc(const h2t_pool_plan *p, const float *x, float *out)
{
    uint32_t ph = p->kind == H2T_POOL_GAP ? p->h : p->ph;
    uint32_t pw = p->kind == H2T_POOL_GAP ? p->w : p->pw;
    uint32_t oh = p->kind == H2T_POOL_GAP ? 1 : p->oh;
    uint32_t ow = p->kind == H2T_POOL_GAP ? 1 : p->ow;
    double inv = 1.0 / ((double)ph * pw), acc[1024];
    for (uint32_t i = 0; i < oh; i++)
        for (uint32_t j = 0; j < ow; j++) {
            float *o = out + ((size_t)i * ow + j) * p->c;
            for (uint32_t c0 = 0; c0 < p->c; c0 += 1024) {
                uint32_t nc = p->c - c0 < 1024 ? p->c - c0 : 1024;
                for (uint32_t c = 0; c < nc; c++)
                    acc[c] = 0;
                for (uint32_t r = i * ph; r < (i + 1) * ph; r++)
                    for (uint32_t q = j * pw; q < (j + 1) * pw; q++) {
                        const float *v = x + ((size_t)r * p->w + q) * p->c + c0;
                        for (uint32_t c = 0; c < nc; c++)
                            acc[c] += v[c];
                    }
                for (uint32_t c = 0; c < nc; c++)
                    o[c0 + c] = (float)(acc[c] * inv);
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
        if (p->form == H2T_FORM_NHWC)
            pool_nhwc(p, x, out);
        else
            pool_channels(p, x, 0, p->c, out, isa);
        break;
    case H2T_POOL_TMEAN:
    case H2T_POOL_TWIN:
    case H2T_POOL_CLS:
        if (p->form == H2T_FORM_NCL)
            pool_tokens(p, x, 1, p->h, out);
        else
            pool_tokens(p, x, p->c, 1, out);
        break;
    }
}

void h2t_pool_apply_sample(const h2t_pool_plan *p, const float *data, int nb, int s, float *out)
{
    if (p->form == H2T_FORM_LNC) /* token t of sample s: row t * nb + s */
        pool_tokens(p, data + (size_t)s * p->c, (size_t)nb * p->c, 1, out);
    else
        h2t_pool_apply(p, data + (size_t)s * h2t_pool_sample_floats(p), out);
}

size_t h2t_pool_sample_floats(const h2t_pool_plan *p)
{
    switch (p->kind) {
    case H2T_POOL_FLAT:
        return p->c;
    case H2T_POOL_GAP:
    case H2T_POOL_GRID:
        return (size_t)p->c * p->h * p->w;
    default:
        return (size_t)p->c * p->h;
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
    if ((p->kind != H2T_POOL_GAP && p->kind != H2T_POOL_GRID) || p->form == H2T_FORM_NHWC) {
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
