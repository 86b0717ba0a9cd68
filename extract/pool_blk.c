/*
 * extract/pool_blk.c - Head2Toe pooling of a 4-D sample streamed in oneDNN's blocked layout
 * (contract: h2t_pool_stream_blk in extract/extract.h).
 *
 * A blocked tensor (extract/dnnl_conv.h) holds B channels side by side at every position:
 * value p of channel c of a block at x[p * B + c % B]. The sums are those of extract/pool.c's
 * order 2 for each channel, value by value, so the features are bitwise h2t_pool_apply's on
 * the same tensor in NCHW:
 *  - block windows (GAP; GRID with pw == W): lane l of a channel adds the band's values k with
 *    k % L == l in turn from +0 (L = 64 lanes for bands of 1024 floats or more, else 16); the
 *    lanes go to double and are reduced as pool.c's tree;
 *  - column windows (GRID, pw < W): each column of a window is its first row's value, then
 *    each next row added in float; the pw column sums of a window in double in four lanes
 *    (lane e: columns e, 4 + e, ... below pw - pw % 4, from 0), t = (d0 + d1) + (d2 + d3),
 *    the last pw % 4 columns added to t in turn.
 * Only element-wise adds, conversions and one multiply per mean: here the vectors run across
 * the block's B channels (one lane per channel), so every channel sees exactly pool.c's
 * operations in pool.c's order, whatever the vector width. Built for the x86-64 baseline, AVX
 * and AVX-512F (target attributes; ISO C mode keeps -ffp-contract off), all giving the same
 * bits.
 */
#include <string.h>

#include "common/err.h"
#include "extract/extract.h"

#define BLK_COLS 4096 /* pool.c's POOL_COLS: wider planes are not streamed */
#define BLK_BIG 1024  /* pool.c's POOL_BIG */

static size_t blk_lanes(size_t n)
{
    return n >= BLK_BIG ? 64 : 16;
}

static int blk_is_block(const h2t_pool_plan *p)
{
    return p->kind == H2T_POOL_GAP || p->pw == p->w;
}

/* Floats of state per channel (pool.c's stream_floats). */
static size_t blk_per(const h2t_pool_plan *p)
{
    if (blk_is_block(p))
        return blk_lanes(p->kind == H2T_POOL_GAP ? (size_t)p->h * p->w : (size_t)p->ph * p->w);
    return ((size_t)p->ow * p->pw + 1) / 2 * 2;
}

size_t h2t_pool_stream_blk_bytes(const h2t_pool_plan *p, int B)
{
    if ((p->kind != H2T_POOL_GAP && p->kind != H2T_POOL_GRID) || p->w > BLK_COLS ||
        p->form != H2T_FORM_NCHW || (B != 8 && B != 16))
        return 0;
    size_t cp = ((size_t)p->c + (size_t)B - 1) / (size_t)B * (size_t)B;
    return cp * blk_per(p) * sizeof(float);
}

/* The kernels, once per block width BW (8, 16) and instruction set: st is the block's state
 * (per * BW floats), x the piece (BW floats per position), nc the channels of the block that
 * are real (<= BW), out + c0 where channel c0 + i's features go (stride C). */
#define BLK_DEFINE(SFX, BW, ATTR)                                                                  \
    ATTR void blk_lanes_##SFX(float *restrict st, size_t L, const float *restrict x, size_t a,     \
                              size_t b)                                                            \
    {                                                                                              \
        size_t m = L - 1;                                                                          \
        for (size_t k = a; k < b; k++) {                                                           \
            float *restrict l = st + (k & m) * BW;                                                 \
            const float *restrict v = x + (k - a) * BW;                                            \
            for (int i = 0; i < BW; i++)                                                           \
                l[i] += v[i];                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    ATTR void blk_reduce_##SFX(const float *restrict st, size_t L, double inv, int nc,             \
                               float *restrict out)                                                \
    {                                                                                              \
        /* pool.c's tree, level by level between two arrays (no row read after it is written) */   \
        double a[64][BW], b[32][BW], (*src)[BW] = a, (*dst)[BW] = b, (*tmp)[BW];                   \
        for (size_t l = 0; l < L; l++)                                                             \
            for (int i = 0; i < BW; i++)                                                           \
                a[l][i] = st[l * BW + i];                                                          \
        for (size_t n = L / 4; n > 1; n /= 2) {                                                    \
            for (size_t j = 0; j < n / 2; j++)                                                     \
                for (size_t e = 0; e < 4; e++) {                                                   \
                    _Pragma("GCC ivdep") for (int i = 0; i < BW; i++) dst[4 * j + e][i] =          \
                        src[8 * j + e][i] + src[8 * j + 4 + e][i];                                 \
                }                                                                                  \
            tmp = src, src = dst, dst = tmp;                                                       \
        }                                                                                          \
        double t[BW];                                                                              \
        for (int i = 0; i < BW; i++)                                                               \
            t[i] = (src[0][i] + src[1][i]) + (src[2][i] + src[3][i]);                              \
        for (int i = 0; i < nc; i++)                                                               \
            out[i] = (float)(t[i] * inv);                                                          \
    }                                                                                              \
                                                                                                   \
    ATTR void blk_cols_##SFX(float *restrict col, const float *restrict x, size_t n, int first)    \
    {                                                                                              \
        if (first) {                                                                               \
            memcpy(col, x, n *BW * sizeof(float));                                                 \
            return;                                                                                \
        }                                                                                          \
        for (size_t k = 0; k < n * BW; k++)                                                        \
            col[k] += x[k];                                                                        \
    }                                                                                              \
                                                                                                   \
    ATTR void blk_wins_##SFX(const float *restrict col, uint32_t pw, uint32_t ow, double inv,      \
                             int nc, float *restrict out, size_t ostride)                          \
    {                                                                                              \
        uint32_t p4 = pw / 4 * 4;                                                                  \
        for (uint32_t j = 0; j < ow; j++) {                                                        \
            const float *restrict q = col + (size_t)j * pw * BW;                                   \
            double d0[BW], d1[BW], d2[BW], d3[BW], t[BW];                                          \
            for (int i = 0; i < BW; i++)                                                           \
                d0[i] = d1[i] = d2[i] = d3[i] = 0;                                                 \
            for (uint32_t k = 0; k < p4; k += 4) {                                                 \
                const float *restrict q0 = q + (size_t)k * BW;                                     \
                for (int i = 0; i < BW; i++) {                                                     \
                    d0[i] += q0[i];                                                                \
                    d1[i] += q0[BW + i];                                                           \
                    d2[i] += q0[2 * BW + i];                                                       \
                    d3[i] += q0[3 * BW + i];                                                       \
                }                                                                                  \
            }                                                                                      \
            for (int i = 0; i < BW; i++)                                                           \
                t[i] = (d0[i] + d1[i]) + (d2[i] + d3[i]);                                          \
            for (uint32_t k = p4; k < pw; k++)                                                     \
                for (int i = 0; i < BW; i++)                                                       \
                    t[i] += q[(size_t)k * BW + i];                                                 \
            for (int i = 0; i < nc; i++)                                                           \
                out[(size_t)j * ostride + i] = (float)(t[i] * inv);                                \
        }                                                                                          \
    }

#define BLK_ALL(LV, ATTR)                                                                          \
    BLK_DEFINE(LV##_8, 8, ATTR)                                                                    \
    BLK_DEFINE(LV##_16, 16, ATTR)

BLK_ALL(gen, static)
#if defined(__x86_64__) && defined(__GNUC__)
BLK_ALL(avx, __attribute__((target("avx"))) static)
BLK_ALL(z, __attribute__((target("avx512f"))) static)
#define BLK_X86 1
#endif

typedef struct blk_set {
    void (*lanes)(float *, size_t, const float *, size_t, size_t);
    void (*reduce)(const float *, size_t, double, int, float *);
    void (*cols)(float *, const float *, size_t, int);
    void (*wins)(const float *, uint32_t, uint32_t, double, int, float *, size_t);
} blk_set;

#define BLK_SET(LV)                                                                                \
    {                                                                                              \
        blk_lanes_##LV, blk_reduce_##LV, blk_cols_##LV, blk_wins_##LV                              \
    }

static blk_set blk_pick(int isa, int B)
{
    static const blk_set gen8 = BLK_SET(gen_8), gen16 = BLK_SET(gen_16);
#ifdef BLK_X86
    static const blk_set avx8 = BLK_SET(avx_8), avx16 = BLK_SET(avx_16);
    static const blk_set z8 = BLK_SET(z_8), z16 = BLK_SET(z_16);
    int best = h2t_pool_isa_best();
    int lv = isa < best ? isa : best;
    if (lv == H2T_POOL_ISA_AVX512)
        return B == 8 ? z8 : z16;
    if (lv == H2T_POOL_ISA_AVX)
        return B == 8 ? avx8 : avx16;
#else
    (void)isa;
#endif
    return B == 8 ? gen8 : gen16;
}

int h2t_pool_stream_blk_isa(const h2t_pool_plan *p, void *state, const float *x, int B, uint32_t c0,
                            uint32_t c1, size_t off, size_t len, float *out, int isa)
{
    size_t hw = (size_t)p->h * p->w, end = off + len;
    if (h2t_pool_stream_blk_bytes(p, B) == 0 || !state)
        return h2t_err_set(H2T_EINVAL,
                           "blocked pieces of B = %d channels: this plan (kind %d, width %u) "
                           "cannot take them",
                           B, p->kind, p->w);
    if (c0 % (uint32_t)B || c1 <= c0 || c1 > p->c || c1 - c0 > (uint32_t)B || off > hw ||
        len > hw - off)
        return h2t_err_set(H2T_EINVAL,
                           "blocked piece: channels [%u, %u) values [%zu, %zu) of a %u x %zu "
                           "sample, B = %d",
                           c0, c1, off, end, p->c, hw, B);
    blk_set k = blk_pick(isa, B);
    int nc = (int)(c1 - c0);
    size_t per = blk_per(p);
    float *st = (float *)state + (size_t)c0 * per;
    if (blk_is_block(p)) {
        int gap = p->kind == H2T_POOL_GAP;
        size_t n = gap ? hw : (size_t)p->ph * p->w, L = blk_lanes(n);
        uint32_t oh = gap ? 1 : p->oh;
        double inv = gap ? 1.0 / (double)hw : 1.0 / ((double)p->ph * p->pw);
        for (size_t pos = off; pos < end;) {
            size_t band = pos / n;
            if (band >= oh)
                break;
            size_t base = band * n, a = pos - base, b = end - base < n ? end - base : n;
            if (a == 0) /* a band's first values: its lanes start at +0 */
                memset(st, 0, L * (size_t)B * sizeof(float));
            k.lanes(st, L, x + (pos - off) * (size_t)B, a, b);
            if (b == n)
                k.reduce(st, L, inv, nc, out + band * p->c + c0);
            pos = base + b;
        }
        return 0;
    }
    size_t w = p->w, span = (size_t)p->ow * p->pw;
    uint32_t ph = p->ph;
    double inv = 1.0 / ((double)ph * p->pw);
    for (size_t pos = off; pos < end;) {
        size_t r = pos / w;
        if (r >= (size_t)p->oh * ph)
            break;
        size_t x0 = pos - r * w, x1 = end - r * w < w ? end - r * w : w, band = r / ph;
        if (x0 < span) {
            size_t e = x1 < span ? x1 : span;
            k.cols(st + x0 * (size_t)B, x + (pos - off) * (size_t)B, e - x0, r == band * ph);
            if (e == span && r == band * ph + ph - 1)
                k.wins(st, p->pw, p->ow, inv, nc, out + band * p->ow * p->c + c0, p->c);
        }
        pos = r * w + x1;
    }
    return 0;
}

int h2t_pool_stream_blk(const h2t_pool_plan *p, void *state, const float *x, int B, uint32_t c0,
                        uint32_t c1, size_t off, size_t len, float *out)
{
    return h2t_pool_stream_blk_isa(p, state, x, B, c0, c1, off, len, out, h2t_pool_isa_best());
}
