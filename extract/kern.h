/*
 * extract/kern.h - hand-vectorised compute kernels of the executor (not a public contract:
 * extract/ops*.c and the tests include it).
 *
 * Each kernel has a portable C version (*_ref, always built, the reference of the tests), an
 * AVX+FMA version (__attribute__((target("avx,fma")))) and an AVX-512F one
 * (target("avx512f")), whatever the build's -march; the plain name dispatches at run time on
 * the CPU (h2t_kern_isa), so results depend on the CPU only, never on thread counts or batch
 * splits.
 *
 *     float x[16 * 16], y[16 * 16], w9[9] = {0}; // one channel plane in and out
 *     h2t_dw_geo g = {.H = 16, .W = 16, .OH = 16, .OW = 16, .sh = 1, .sw = 1, .pt = 1, .pl = 1};
 *     h2t_kern_dw3x3(x, &g, w9, 0.f, H2T_ACT_CLIP, 0.f, 6.f, y); // 3x3, stride 1, ReLU6
 */
#ifndef H2T_EXTRACT_KERN_H
#define H2T_EXTRACT_KERN_H

#include <stddef.h>
#include <stdint.h>

/* Activation applied by a kernel's output pass. */
enum { H2T_ACT_NONE = 0, H2T_ACT_RELU = 1, H2T_ACT_CLIP = 2 };

/* Instruction sets, each a superset of the one before: 0 portable C, 1 AVX+FMA (AVX2-class
 * CPUs), 2 AVX-512F. */
enum { H2T_ISA_C = 0, H2T_ISA_AVX_FMA = 1, H2T_ISA_AVX512 = 2 };
/* The best instruction set this CPU runs (H2T_ISA_*), after H2T_CPU_MAX (common/cpu.h). */
int h2t_kern_isa(void);
/* The set a kernel asked for isa runs: isa, or the best this CPU runs when that is lower. */
int h2t_kern_isa_run(int isa);
/* The executor's dispatch as this process takes it (after H2T_CPU_MAX), one "kernel path"
 * pair per dispatching kernel class, into buf (always NUL-terminated when len > 0; truncated
 * when buf is short), e.g. "depthwise3x3 avx512, depthwise avx512, conv-epilogue avx512,
 * pool-ops avx512, nn avx+fma, pooling avx" (depthwise: the other depthwise shapes; pool-ops:
 * the graph's MaxPool / AveragePool; pooling: the extraction's per-layer pooling); the
 * portable paths read "c" (pooling's "generic": 4-float vectors that the compiler maps to the
 * x86-64 baseline). Returns buf. */
char *h2t_kern_describe(char *buf, size_t len);

/* One channel plane of a 3x3 depthwise convolution, dilation 1, strides sh, sw in {1, 2}:
 * y[oh][ow] = act(bias + sum_{i,j} w9[3i + j] * x[oh*sh - pt + i][ow*sw - pl + j]) with
 * out-of-range x taken as 0. act: H2T_ACT_NONE, H2T_ACT_RELU (x > 0 ? x : 0) or H2T_ACT_CLIP
 * (min(max(x, lo), hi), NaN kept). x is H x W, y is OH x OW, both BORROWED. */
typedef struct h2t_dw_geo {
    int64_t H, W, OH, OW, sh, sw, pt, pl;
} h2t_dw_geo;
void h2t_kern_dw3x3_ref(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                        float lo, float hi, float *y);
void h2t_kern_dw3x3_avx(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                        float lo, float hi, float *y);
void h2t_kern_dw3x3_avx512(const float *x, const h2t_dw_geo *g, const float *w9, float bias,
                           int act, float lo, float hi, float *y);
/* isa: H2T_ISA_* (a set the CPU lacks falls back to the best it has, h2t_kern_isa_run). */
void h2t_kern_dw3x3_isa(int isa, const float *x, const h2t_dw_geo *g, const float *w9, float bias,
                        int act, float lo, float hi, float *y);
void h2t_kern_dw3x3(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                    float lo, float hi, float *y);

/* y[i] = act(x[i]) for n floats (x == y allowed): the same arithmetic as the Relu / Clip
 * kernels of ops_elem.c, so a fused pass gives bitwise the unfused tensor. */
void h2t_kern_act(const float *x, int64_t n, int act, float lo, float hi, float *y);

/* The stages after a convolution, in one pass over n floats of one channel:
 *     v = src[i] (+ bias)      -> conv_out[i]   (when conv_out)
 *     v = v * bn_a + bn_b      -> bn_out[i]     (when has_bn; bn_out when kept)
 *     v = v + res[i]           -> add_out[i]    (when res; add_out when kept)
 *     v = act(v)
 *     out[i] = v
 * Each stage rounds as the separate kernels do (no fused multiply-add), so the kept tensors
 * are bitwise those of the unfused graph, on every instruction set. Pointers may be equal
 * (same index read before written); all BORROWED. */
typedef struct h2t_epi {
    int has_bias;
    float bias;
    float *conv_out;
    int has_bn;
    float bn_a, bn_b;
    float *bn_out;
    const float *res;
    float *add_out;
    int act;
    float lo, hi;
    float *out;
} h2t_epi;
void h2t_kern_epilogue_ref(const float *src, int64_t n, const h2t_epi *e);
void h2t_kern_epilogue_avx(const float *src, int64_t n, const h2t_epi *e);
void h2t_kern_epilogue_avx512(const float *src, int64_t n, const h2t_epi *e);
void h2t_kern_epilogue_isa(int isa, const float *src, int64_t n, const h2t_epi *e);

#endif
