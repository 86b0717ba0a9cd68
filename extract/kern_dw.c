/*
 * extract/kern_dw.c - the 3x3 depthwise convolution plane kernels and the conv epilogue of
 * kern.h (portable C, AVX+FMA and AVX-512F with run-time dispatch) and the activation pass.
 *
 * The AVX kernel keeps one output row's 8 lanes in a register through all 9 taps (3 input
 * rows x 3 columns, FMA), adds nothing back to memory between taps, and applies the
 * activation before its single store. Stride 2 deinterleaves 16 input columns into the even
 * and odd lanes (two 128-bit lane permutes and a shuffle: AVX without AVX2). The borders (the
 * first and last output columns whose taps fall into the padding) and the remainder of each
 * row go through the portable per-point code.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <immintrin.h>
#include <stdio.h>

#include "common/cpu.h"
#include "extract/extract.h"
#include "extract/kern.h"

int h2t_kern_isa(void)
{
    if (!h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_FMA))
        return H2T_ISA_C;
    return h2t_cpu_has(H2T_CPU_AVX512F) ? H2T_ISA_AVX512 : H2T_ISA_AVX_FMA;
}

int h2t_kern_isa_run(int isa)
{
    int best = h2t_kern_isa();
    return isa < best ? (isa < 0 ? H2T_ISA_C : isa) : best;
}

char *h2t_kern_describe(char *buf, size_t len)
{
    static const char *names[] = {"c", "avx+fma", "avx512"};
    int isa = h2t_kern_isa();
    const char *k = names[isa], *n = isa >= H2T_ISA_AVX_FMA ? "avx+fma" : "c";
    static const char *pool_names[] = {"generic", "avx", "avx512"};
    const char *p = pool_names[h2t_pool_isa_best()];

    if (len > 0)
        snprintf(buf, len,
                 "depthwise3x3 %s, depthwise %s, conv-epilogue %s, pool-ops %s, nn %s, pooling %s",
                 k, k, k, k, n, p);
    return buf;
}

static inline float act1(float v, int act, float lo, float hi)
{
    if (act == H2T_ACT_RELU)
        return v > 0.f ? v : 0.f;
    if (act == H2T_ACT_CLIP) {
        v = v < lo ? lo : v;
        return v > hi ? hi : v;
    }
    return v;
}

void h2t_kern_act(const float *x, int64_t n, int act, float lo, float hi, float *y)
{
    if (act == H2T_ACT_RELU) {
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.f ? x[i] : 0.f;
    } else if (act == H2T_ACT_CLIP) {
        for (int64_t i = 0; i < n; i++) {
            float v = x[i] < lo ? lo : x[i];
            y[i] = v > hi ? hi : v;
        }
    } else if (x != y) {
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i];
    }
}

static inline float epi1(float v, const h2t_epi *e, int64_t i)
{
    if (e->has_bias)
        v = v + e->bias;
    if (e->conv_out)
        e->conv_out[i] = v;
    if (e->has_bn) {
        v = v * e->bn_a + e->bn_b;
        if (e->bn_out)
            e->bn_out[i] = v;
    }
    if (e->res) {
        v = v + e->res[i];
        if (e->add_out)
            e->add_out[i] = v;
    }
    return act1(v, e->act, e->lo, e->hi);
}

void h2t_kern_epilogue_ref(const float *src, int64_t n, const h2t_epi *e)
{
    for (int64_t i = 0; i < n; i++)
        e->out[i] = epi1(src[i], e, i);
}

/* One output point with every bound checked. */
static inline float dw_point(const float *x, const h2t_dw_geo *g, const float *w9, float bias,
                             int64_t oh, int64_t ow)
{
    float acc = bias;
    for (int64_t i = 0; i < 3; i++) {
        int64_t ih = oh * g->sh - g->pt + i;
        if (ih < 0 || ih >= g->H)
            continue;
        for (int64_t j = 0; j < 3; j++) {
            int64_t iw = ow * g->sw - g->pl + j;
            if (iw >= 0 && iw < g->W)
                acc += w9[3 * i + j] * x[ih * g->W + iw];
        }
    }
    return acc;
}

/* Output columns [c0, c1) whose three taps are all inside the row. */
static void dw_cols(const h2t_dw_geo *g, int64_t *c0, int64_t *c1)
{
    int64_t a = g->pl <= 0 ? 0 : (g->pl + g->sw - 1) / g->sw;
    int64_t top = g->W - 3 + g->pl; /* ow * sw <= top */
    int64_t b = top < 0 ? 0 : top / g->sw + 1;
    if (b > g->OW)
        b = g->OW;
    if (a > b)
        a = b;
    *c0 = a;
    *c1 = b;
}

void h2t_kern_dw3x3_ref(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                        float lo, float hi, float *y)
{
    int64_t c0, c1;
    dw_cols(g, &c0, &c1);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        float *yr = y + oh * g->OW;
        int64_t ih0 = oh * g->sh - g->pt;
        if (ih0 < 0 || ih0 + 2 >= g->H) {
            for (int64_t ow = 0; ow < g->OW; ow++)
                yr[ow] = act1(dw_point(x, g, w9, bias, oh, ow), act, lo, hi);
            continue;
        }
        const float *r0 = x + ih0 * g->W - g->pl, *r1 = r0 + g->W, *r2 = r1 + g->W;
        for (int64_t ow = 0; ow < c0; ow++)
            yr[ow] = act1(dw_point(x, g, w9, bias, oh, ow), act, lo, hi);
        for (int64_t ow = c0; ow < c1; ow++) {
            int64_t s = ow * g->sw;
            float acc = bias;
            acc += w9[0] * r0[s];
            acc += w9[1] * r0[s + 1];
            acc += w9[2] * r0[s + 2];
            acc += w9[3] * r1[s];
            acc += w9[4] * r1[s + 1];
            acc += w9[5] * r1[s + 2];
            acc += w9[6] * r2[s];
            acc += w9[7] * r2[s + 1];
            acc += w9[8] * r2[s + 2];
            yr[ow] = act1(acc, act, lo, hi);
        }
        for (int64_t ow = c1; ow < g->OW; ow++)
            yr[ow] = act1(dw_point(x, g, w9, bias, oh, ow), act, lo, hi);
    }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define H2T_AVX __attribute__((target("avx,fma")))

/* Even-indexed p[0], p[2], ..., p[14] (reads p[0..15]). */
H2T_AVX static inline __m256 ld_even(const float *p)
{
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    __m256 t0 = _mm256_permute2f128_ps(a, b, 0x20), t1 = _mm256_permute2f128_ps(a, b, 0x31);
    return _mm256_shuffle_ps(t0, t1, 0x88);
}

/* Odd-indexed p[1], p[3], ..., p[15] (reads p[0..15]). */
H2T_AVX static inline __m256 ld_odd(const float *p)
{
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    __m256 t0 = _mm256_permute2f128_ps(a, b, 0x20), t1 = _mm256_permute2f128_ps(a, b, 0x31);
    return _mm256_shuffle_ps(t0, t1, 0xDD);
}

H2T_AVX static inline __m256 act8(__m256 v, int act, __m256 vlo, __m256 vhi)
{
    if (act == H2T_ACT_RELU)
        return _mm256_max_ps(v, _mm256_setzero_ps()); /* NaN -> 0, as x > 0 ? x : 0 */
    if (act == H2T_ACT_CLIP) /* operand order keeps NaN, as the scalar clamp */
        return _mm256_min_ps(vhi, _mm256_max_ps(vlo, v));
    return v;
}

/* 8 outputs from ow of one row: nr input rows (row pointers shifted by -pl), weights w[wi]. */
H2T_AVX static inline __m256 dw8(const float *const *rows, const int *wi, int nr, int64_t ow,
                                 int sw, const __m256 *w, __m256 acc)
{
    if (sw == 1) {
        for (int r = 0; r < nr; r++) {
            const float *p = rows[r] + ow;
            acc = _mm256_fmadd_ps(w[wi[r]], _mm256_loadu_ps(p), acc);
            acc = _mm256_fmadd_ps(w[wi[r] + 1], _mm256_loadu_ps(p + 1), acc);
            acc = _mm256_fmadd_ps(w[wi[r] + 2], _mm256_loadu_ps(p + 2), acc);
        }
    } else {
        /* reads p[0..16]: p[2 * 7 + 2] is the last tap of the last lane */
        for (int r = 0; r < nr; r++) {
            const float *p = rows[r] + 2 * ow;
            acc = _mm256_fmadd_ps(w[wi[r]], ld_even(p), acc);
            acc = _mm256_fmadd_ps(w[wi[r] + 1], ld_odd(p), acc);
            acc = _mm256_fmadd_ps(w[wi[r] + 2], ld_odd(p + 1), acc);
        }
    }
    return acc;
}

/* Lanes whose column base + lane lies in [0, W) (sign bit set), for masked loads. */
H2T_AVX static inline __m256i col_mask(int64_t base, int64_t W, __m256 lanes)
{
    __m256 fi = _mm256_add_ps(_mm256_set1_ps((float)base), lanes);
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(fi, _mm256_setzero_ps(), _CMP_GE_OQ),
                              _mm256_cmp_ps(fi, _mm256_set1_ps((float)W), _CMP_LT_OQ));
    return _mm256_castps_si256(ok);
}

/* One masked tap row: 3 taps of row p (unshifted) at columns base + j, masks m[j] (stride 1)
 * or m[j], m1[j] over 16 columns deinterleaved (stride 2). */
H2T_AVX static inline __m256 tap_row_masked(const float *p, int64_t base, int sw, const __m256i *m,
                                            const __m256i *m1, __m256 w0, __m256 w1, __m256 w2,
                                            __m256 acc)
{
    const __m256 wj[3] = {w0, w1, w2};
    for (int j = 0; j < 3; j++) {
        __m256 v;
        if (sw == 1) {
            v = _mm256_maskload_ps(p + base + j, m[j]);
        } else {
            __m256 a = _mm256_maskload_ps(p + base + j, m[j]);
            __m256 b = _mm256_maskload_ps(p + base + j + 8, m1[j]);
            __m256 t0 = _mm256_permute2f128_ps(a, b, 0x20), t1 = _mm256_permute2f128_ps(a, b, 0x31);
            v = _mm256_shuffle_ps(t0, t1, 0x88);
        }
        acc = _mm256_fmadd_ps(wj[j], v, acc);
    }
    return acc;
}

/* The columns ow..ow+7 of every output row where some tap falls outside the row (or the row
 * ends): masked loads (masked-off lanes are neither read nor faulted) are the zero padding;
 * the masks depend on the column only, so they are made once for all rows. */
H2T_AVX static void dw_masked_cols(const float *x, const h2t_dw_geo *g, const __m256 *w, __m256 vb,
                                   int act, __m256 vlo, __m256 vhi, int64_t ow, __m256 lanes,
                                   float *y)
{
    const int sw = (int)g->sw;
    const int64_t base = ow * sw - g->pl;
    __m256i m[3], m1[3];
    for (int j = 0; j < 3; j++) {
        m[j] = col_mask(base + j, g->W, lanes);
        m1[j] = col_mask(base + j + 8, g->W, lanes);
    }
    const int full = ow + 8 <= g->OW;
    const __m256i keep =
        _mm256_castps_si256(_mm256_cmp_ps(lanes, _mm256_set1_ps((float)(g->OW - ow)), _CMP_LT_OQ));
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t ih0 = oh * g->sh - g->pt;
        __m256 a0 = vb, a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
        if (ih0 >= 0 && ih0 < g->H)
            a0 = tap_row_masked(x + ih0 * g->W, base, sw, m, m1, w[0], w[1], w[2], a0);
        if (ih0 + 1 >= 0 && ih0 + 1 < g->H)
            a1 = tap_row_masked(x + (ih0 + 1) * g->W, base, sw, m, m1, w[3], w[4], w[5], a1);
        if (ih0 + 2 >= 0 && ih0 + 2 < g->H)
            a2 = tap_row_masked(x + (ih0 + 2) * g->W, base, sw, m, m1, w[6], w[7], w[8], a2);
        __m256 acc = act8(_mm256_add_ps(_mm256_add_ps(a0, a1), a2), act, vlo, vhi);
        if (full)
            _mm256_storeu_ps(y + oh * g->OW + ow, acc);
        else
            _mm256_maskstore_ps(y + oh * g->OW + ow, keep, acc);
    }
}

H2T_AVX void h2t_kern_dw3x3_avx(const float *x, const h2t_dw_geo *g, const float *w9, float bias,
                                int act, float lo, float hi, float *y)
{
    if ((g->sh != 1 && g->sh != 2) || (g->sw != 1 && g->sw != 2)) {
        h2t_kern_dw3x3_ref(x, g, w9, bias, act, lo, hi, y);
        return;
    }
    int64_t c0, c1;
    dw_cols(g, &c0, &c1);
    const int sw = (int)g->sw;
    const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m256 lanes = _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f);
    __m256 w[9];
    for (int i = 0; i < 9; i++)
        w[i] = _mm256_set1_ps(w9[i]);
    /* column blocks of 8 from 0: interior ones unmasked row by row, the others masked */
    int64_t i0 = (c0 + 7) / 8 * 8, i1 = i0; /* interior blocks [i0, i1) */
    while (i1 + 8 <= c1)
        i1 += 8;
    for (int64_t ow = 0; ow < g->OW; ow += 8)
        if (ow < i0 || ow >= i1)
            dw_masked_cols(x, g, w, vb, act, vlo, vhi, ow, lanes, y);
    if (i1 <= i0)
        return;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        float *yr = y + oh * g->OW;
        int64_t ih0 = oh * g->sh - g->pt;
        const float *rows[3];
        int wi[3], nr = 0;
        for (int i = 0; i < 3; i++)
            if (ih0 + i >= 0 && ih0 + i < g->H) {
                rows[nr] = x + (ih0 + i) * g->W - g->pl;
                wi[nr++] = 3 * i;
            }
        if (nr == 3 && sw == 1) {
            for (int64_t ow = i0; ow < i1; ow += 8) {
                const float *r0 = rows[0] + ow, *r1 = rows[1] + ow, *r2 = rows[2] + ow;
                /* three row chains, summed: shorter dependency chains than one of 9 */
                __m256 a0 = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(r0), vb);
                __m256 a1 = _mm256_mul_ps(w[3], _mm256_loadu_ps(r1));
                __m256 a2 = _mm256_mul_ps(w[6], _mm256_loadu_ps(r2));
                a0 = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(r0 + 1), a0);
                a1 = _mm256_fmadd_ps(w[4], _mm256_loadu_ps(r1 + 1), a1);
                a2 = _mm256_fmadd_ps(w[7], _mm256_loadu_ps(r2 + 1), a2);
                a0 = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(r0 + 2), a0);
                a1 = _mm256_fmadd_ps(w[5], _mm256_loadu_ps(r1 + 2), a1);
                a2 = _mm256_fmadd_ps(w[8], _mm256_loadu_ps(r2 + 2), a2);
                __m256 acc = _mm256_add_ps(_mm256_add_ps(a0, a1), a2);
                _mm256_storeu_ps(yr + ow, act8(acc, act, vlo, vhi));
            }
        } else if (nr == 3) {
            for (int64_t ow = i0; ow < i1; ow += 8) {
                const float *r0 = rows[0] + 2 * ow, *r1 = rows[1] + 2 * ow, *r2 = rows[2] + 2 * ow;
                __m256 a0 = _mm256_fmadd_ps(w[0], ld_even(r0), vb);
                __m256 a1 = _mm256_mul_ps(w[3], ld_even(r1));
                __m256 a2 = _mm256_mul_ps(w[6], ld_even(r2));
                a0 = _mm256_fmadd_ps(w[1], ld_odd(r0), a0);
                a1 = _mm256_fmadd_ps(w[4], ld_odd(r1), a1);
                a2 = _mm256_fmadd_ps(w[7], ld_odd(r2), a2);
                a0 = _mm256_fmadd_ps(w[2], ld_odd(r0 + 1), a0);
                a1 = _mm256_fmadd_ps(w[5], ld_odd(r1 + 1), a1);
                a2 = _mm256_fmadd_ps(w[8], ld_odd(r2 + 1), a2);
                __m256 acc = _mm256_add_ps(_mm256_add_ps(a0, a1), a2);
                _mm256_storeu_ps(yr + ow, act8(acc, act, vlo, vhi));
            }
        } else {
            for (int64_t ow = i0; ow < i1; ow += 8)
                _mm256_storeu_ps(yr + ow, act8(dw8(rows, wi, nr, ow, sw, w, vb), act, vlo, vhi));
        }
    }
}
H2T_AVX void h2t_kern_epilogue_avx(const float *src, int64_t n, const h2t_epi *e)
{
    const __m256 vb = _mm256_set1_ps(e->bias), va = _mm256_set1_ps(e->bn_a),
                 vc = _mm256_set1_ps(e->bn_b), vlo = _mm256_set1_ps(e->lo),
                 vhi = _mm256_set1_ps(e->hi);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        if (e->has_bias)
            v = _mm256_add_ps(v, vb);
        if (e->conv_out)
            _mm256_storeu_ps(e->conv_out + i, v);
        if (e->has_bn) {
            v = _mm256_add_ps(_mm256_mul_ps(v, va), vc);
            if (e->bn_out)
                _mm256_storeu_ps(e->bn_out + i, v);
        }
        if (e->res) {
            v = _mm256_add_ps(v, _mm256_loadu_ps(e->res + i));
            if (e->add_out)
                _mm256_storeu_ps(e->add_out + i, v);
        }
        _mm256_storeu_ps(e->out + i, act8(v, e->act, vlo, vhi));
    }
    for (; i < n; i++)
        e->out[i] = epi1(src[i], e, i);
}

/* ---- AVX-512F: 16 output columns per register ----
 * Every column block goes through the same code: its loads are masked (AVX-512 masked loads
 * neither read nor fault on masked-off lanes, which read as 0: the zero padding), and the masks
 * of an interior block are all ones. Stride 2 loads 32 input columns and picks the even or odd
 * ones with a two-register permute. The masks depend on the column only: they are made once per
 * chunk of blocks for all rows. */
#define H2T_AVX512 __attribute__((target("avx512f")))

/* Lanes l of 16 with 0 <= s + l < W. */
static inline __mmask16 lanes_in(int64_t s, int64_t W)
{
    int64_t a = s < 0 ? -s : 0, b = W - s;
    if (b > 16)
        b = 16;
    if (b <= a)
        return 0;
    return (__mmask16)((((uint32_t)1 << b) - 1) & ~(((uint32_t)1 << a) - 1));
}

H2T_AVX512 static inline __m512 act16(__m512 v, int act, __m512 vlo, __m512 vhi)
{
    if (act == H2T_ACT_RELU)
        return _mm512_max_ps(v, _mm512_setzero_ps()); /* NaN -> 0, as x > 0 ? x : 0 */
    if (act == H2T_ACT_CLIP) /* operand order keeps NaN, as the scalar clamp */
        return _mm512_min_ps(vhi, _mm512_max_ps(vlo, v));
    return v;
}

/* The three taps of one input row for 16 output columns: p is the row shifted to the block's
 * first input column, mk the block's masks (stride 1: columns +0, +1, +2; stride 2: +0, +16,
 * +2, +18). */
H2T_AVX512 static inline __m512 row3(const float *p, int sw, const __mmask16 *mk, __m512 w0,
                                     __m512 w1, __m512 w2, __m512 acc, __m512i ie, __m512i io)
{
    if (sw == 1) {
        acc = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mk[0], p), acc);
        acc = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(mk[1], p + 1), acc);
        return _mm512_fmadd_ps(w2, _mm512_maskz_loadu_ps(mk[2], p + 2), acc);
    }
    __m512 a = _mm512_maskz_loadu_ps(mk[0], p), b = _mm512_maskz_loadu_ps(mk[1], p + 16);
    __m512 c = _mm512_maskz_loadu_ps(mk[2], p + 2), d = _mm512_maskz_loadu_ps(mk[3], p + 18);
    acc = _mm512_fmadd_ps(w0, _mm512_permutex2var_ps(a, ie, b), acc);
    acc = _mm512_fmadd_ps(w1, _mm512_permutex2var_ps(a, io, b), acc);
    return _mm512_fmadd_ps(w2, _mm512_permutex2var_ps(c, ie, d), acc);
}

H2T_AVX512 void h2t_kern_dw3x3_avx512(const float *x, const h2t_dw_geo *g, const float *w9,
                                      float bias, int act, float lo, float hi, float *y)
{
    if ((g->sh != 1 && g->sh != 2) || (g->sw != 1 && g->sw != 2)) {
        h2t_kern_dw3x3_ref(x, g, w9, bias, act, lo, hi, y);
        return;
    }
    enum { CHUNK = 64 }; /* column blocks whose masks are made together */
    const int sw = (int)g->sw;
    const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 w[9];
    for (int i = 0; i < 9; i++)
        w[i] = _mm512_set1_ps(w9[i]);
    __mmask16 mk[CHUNK][4];
    for (int64_t c0 = 0; c0 < g->OW; c0 += 16 * CHUNK) {
        int64_t nb = (g->OW - c0 + 15) / 16;
        if (nb > CHUNK)
            nb = CHUNK;
        for (int64_t b = 0; b < nb; b++) {
            int64_t base = (c0 + 16 * b) * sw - g->pl;
            static const int off[2][4] = {{0, 1, 2, 0}, {0, 16, 2, 18}};
            for (int j = 0; j < 4; j++)
                mk[b][j] = lanes_in(base + off[sw - 1][j], g->W);
        }
        for (int64_t oh = 0; oh < g->OH; oh++) {
            int64_t ih0 = oh * g->sh - g->pt;
            const int v0 = ih0 >= 0 && ih0 < g->H, v1 = ih0 + 1 >= 0 && ih0 + 1 < g->H;
            const int v2 = ih0 + 2 >= 0 && ih0 + 2 < g->H;
            const float *r0 = x + ih0 * g->W - g->pl, *r1 = r0 + g->W, *r2 = r1 + g->W;
            float *yr = y + oh * g->OW;
            for (int64_t b = 0; b < nb; b++) {
                int64_t ow = c0 + 16 * b, s = ow * sw;
                /* three row chains, summed: shorter dependency chains than one of 9 */
                __m512 a0 = vb, a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps();
                if (v0)
                    a0 = row3(r0 + s, sw, mk[b], w[0], w[1], w[2], a0, ie, io);
                if (v1)
                    a1 = row3(r1 + s, sw, mk[b], w[3], w[4], w[5], a1, ie, io);
                if (v2)
                    a2 = row3(r2 + s, sw, mk[b], w[6], w[7], w[8], a2, ie, io);
                __m512 acc = act16(_mm512_add_ps(_mm512_add_ps(a0, a1), a2), act, vlo, vhi);
                if (ow + 16 <= g->OW)
                    _mm512_storeu_ps(yr + ow, acc);
                else
                    _mm512_mask_storeu_ps(yr + ow, lanes_in(0, g->OW - ow), acc);
            }
        }
    }
}

H2T_AVX512 void h2t_kern_epilogue_avx512(const float *src, int64_t n, const h2t_epi *e)
{
    const __m512 vb = _mm512_set1_ps(e->bias), va = _mm512_set1_ps(e->bn_a),
                 vc = _mm512_set1_ps(e->bn_b), vlo = _mm512_set1_ps(e->lo),
                 vhi = _mm512_set1_ps(e->hi);
    for (int64_t i = 0; i < n; i += 16) {
        /* the last piece masked: the same operations on its lanes */
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : lanes_in(0, n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, src + i);
        if (e->has_bias)
            v = _mm512_add_ps(v, vb);
        if (e->conv_out)
            _mm512_mask_storeu_ps(e->conv_out + i, m, v);
        if (e->has_bn) {
            v = _mm512_add_ps(_mm512_mul_ps(v, va), vc); /* two roundings, as the BN kernel */
            if (e->bn_out)
                _mm512_mask_storeu_ps(e->bn_out + i, m, v);
        }
        if (e->res) {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, e->res + i));
            if (e->add_out)
                _mm512_mask_storeu_ps(e->add_out + i, m, v);
        }
        _mm512_mask_storeu_ps(e->out + i, m, act16(v, e->act, vlo, vhi));
    }
}

#else
void h2t_kern_dw3x3_avx512(const float *x, const h2t_dw_geo *g, const float *w9, float bias,
                           int act, float lo, float hi, float *y)
{
    h2t_kern_dw3x3_ref(x, g, w9, bias, act, lo, hi, y);
}

void h2t_kern_epilogue_avx512(const float *src, int64_t n, const h2t_epi *e)
{
    h2t_kern_epilogue_ref(src, n, e);
}

void h2t_kern_dw3x3_avx(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                        float lo, float hi, float *y)
{
    h2t_kern_dw3x3_ref(x, g, w9, bias, act, lo, hi, y);
}

void h2t_kern_epilogue_avx(const float *src, int64_t n, const h2t_epi *e)
{
    h2t_kern_epilogue_ref(src, n, e);
}
#endif

void h2t_kern_epilogue_isa(int isa, const float *src, int64_t n, const h2t_epi *e)
{
    isa = h2t_kern_isa_run(isa);
    if (isa == H2T_ISA_AVX512)
        h2t_kern_epilogue_avx512(src, n, e);
    else if (isa == H2T_ISA_AVX_FMA)
        h2t_kern_epilogue_avx(src, n, e);
    else
        h2t_kern_epilogue_ref(src, n, e);
}

void h2t_kern_dw3x3_isa(int isa, const float *x, const h2t_dw_geo *g, const float *w9, float bias,
                        int act, float lo, float hi, float *y)
{
    isa = h2t_kern_isa_run(isa);
    if (isa == H2T_ISA_AVX512)
        h2t_kern_dw3x3_avx512(x, g, w9, bias, act, lo, hi, y);
    else if (isa == H2T_ISA_AVX_FMA)
        h2t_kern_dw3x3_avx(x, g, w9, bias, act, lo, hi, y);
    else
        h2t_kern_dw3x3_ref(x, g, w9, bias, act, lo, hi, y);
}

void h2t_kern_dw3x3(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                    float lo, float hi, float *y)
{
    h2t_kern_dw3x3_isa(h2t_kern_isa(), x, g, w9, bias, act, lo, hi, y);
}
