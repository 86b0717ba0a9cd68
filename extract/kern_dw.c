/*
 * extract/kern_dw.c - the 3x3 depthwise convolution plane kernels of kern.h (portable C and
 * AVX+FMA with run-time dispatch) and the activation pass.
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

#include "extract/kern.h"

int h2t_kern_isa(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("fma"))
        return H2T_ISA_AVX_FMA;
#endif
    return H2T_ISA_C;
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
    __m256 w[9];
    for (int i = 0; i < 9; i++)
        w[i] = _mm256_set1_ps(w9[i]);
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
        for (int64_t ow = 0; ow < c0; ow++)
            yr[ow] = act1(dw_point(x, g, w9, bias, oh, ow), act, lo, hi);
        int64_t ow = c0;
        if (c1 - c0 >= 8) {
            if (nr == 3 && sw == 1) {
                const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
                for (;; ow += 8) {
                    if (ow + 8 > c1)
                        ow = c1 - 8; /* the last vector overlaps: same lanes, same values */
                    __m256 acc = vb;
                    acc = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(r0 + ow), acc);
                    acc = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(r0 + ow + 1), acc);
                    acc = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(r0 + ow + 2), acc);
                    acc = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(r1 + ow), acc);
                    acc = _mm256_fmadd_ps(w[4], _mm256_loadu_ps(r1 + ow + 1), acc);
                    acc = _mm256_fmadd_ps(w[5], _mm256_loadu_ps(r1 + ow + 2), acc);
                    acc = _mm256_fmadd_ps(w[6], _mm256_loadu_ps(r2 + ow), acc);
                    acc = _mm256_fmadd_ps(w[7], _mm256_loadu_ps(r2 + ow + 1), acc);
                    acc = _mm256_fmadd_ps(w[8], _mm256_loadu_ps(r2 + ow + 2), acc);
                    _mm256_storeu_ps(yr + ow, act8(acc, act, vlo, vhi));
                    if (ow + 8 >= c1)
                        break;
                }
            } else {
                for (;; ow += 8) {
                    if (ow + 8 > c1)
                        ow = c1 - 8;
                    __m256 acc = dw8(rows, wi, nr, ow, sw, w, vb);
                    _mm256_storeu_ps(yr + ow, act8(acc, act, vlo, vhi));
                    if (ow + 8 >= c1)
                        break;
                }
            }
            ow = c1;
        } else if (nr == 3) {
            const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
            for (; ow < c1; ow++) {
                int64_t s = ow * sw;
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
        }
        for (; ow < g->OW; ow++)
            yr[ow] = act1(dw_point(x, g, w9, bias, oh, ow), act, lo, hi);
    }
}
#else
void h2t_kern_dw3x3_avx(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                        float lo, float hi, float *y)
{
    h2t_kern_dw3x3_ref(x, g, w9, bias, act, lo, hi, y);
}
#endif

void h2t_kern_dw3x3_isa(int isa, const float *x, const h2t_dw_geo *g, const float *w9, float bias,
                        int act, float lo, float hi, float *y)
{
    if (isa == H2T_ISA_AVX_FMA && h2t_kern_isa() == H2T_ISA_AVX_FMA)
        h2t_kern_dw3x3_avx(x, g, w9, bias, act, lo, hi, y);
    else
        h2t_kern_dw3x3_ref(x, g, w9, bias, act, lo, hi, y);
}

void h2t_kern_dw3x3(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                    float lo, float hi, float *y)
{
    h2t_kern_dw3x3_isa(h2t_kern_isa(), x, g, w9, bias, act, lo, hi, y);
}
