/*
 * extract/dnnl_conv.h - one sample's convolution on oneDNN's convolution primitive (not a
 * public contract: extract/ops_conv.c, extract/exec.c, the benchmarks and the tests include it).
 *
 * oneDNN (libdnnl.so.2, Debian libdnnl-dev) is opened with dlopen, as extract/gemm.h does; the
 * build uses its header for the types when the header is installed (without it every call
 * here answers "not available" and the executor runs its own kernels). A convolution is
 * created once per fused chain, for one sample (N = 1) and, when the caller runs several at
 * once, for groups of H2T_DCONV_GROUP samples, with its post-ops fused: bias, the
 * residual sum, then ReLU or Clip; a 3x3 stride-1 convolution whose geometry makes it pay runs
 * oneDNN's Winograd kernel (h2t_dconv_winograd), the others its direct ones. The primitive reads
 * and writes activations in oneDNN's blocked layout nChw<B>c (B channels innermost, B = 16 with
 * AVX-512, else 8; the channel count padded to a multiple of B with zeros), which the executor
 * keeps between consecutive oneDNN convolutions; at a boundary with the executor's NCHW tensors the
 * input or output is reordered here (an exact copy). The first convolution of a network (fewer than
 * 8 input channels) reads NCHW directly.
 *
 * Sums never depend on the thread count: every primitive is created and run with oneDNN's
 * OpenMP count set to 1 on the calling thread, the executor runs one sample or one group per
 * call on its own threads, and a sample's sums are the same in a group or alone. A primitive holds
 * no per-run state (user scratchpad), so any thread may run it concurrently with its own scratch.
 *
 *     #include "common/util.h"
 *     #include "extract/kern.h"
 *
 *     static float x[16 * 8 * 8], w[32 * 16 * 3 * 3], bias[32], y[32 * 8 * 8];
 *     h2t_dconv_geo g = {.C = 16, .H = 8, .W = 8, .M = 32, .OH = 8, .OW = 8, .kh = 3, .kw = 3,
 *                        .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .G = 1};
 *     h2t_dconv *c;
 *     if (h2t_dconv_available() && h2t_dconv_create(&g, w, bias, H2T_ACT_RELU, 0, 0, 0, &c) == 0) {
 *         float *s = h2t_aalloc(h2t_dconv_scratch(c), sizeof(float));
 *         if (s)
 *             h2t_dconv_run(c, x, 0, NULL, 0, y, 0, s); // x, y NCHW (one sample)
 *         h2t_afree(s);
 *         h2t_dconv_free(c);
 *     }
 */
#ifndef H2T_EXTRACT_DNNL_CONV_H
#define H2T_EXTRACT_DNNL_CONV_H

#include <stddef.h>
#include <stdint.h>

/* One sample's geometry: input C x H x W, output M x OH x OW, kernel kh x kw, strides,
 * dilations (1 = none), top / left padding (bottom / right follow from the output size),
 * groups G; N: the most samples the caller runs at once (0 or 1: one at a time), from
 * H2T_DCONV_GROUP up the convolution also gets a group form (h2t_dconv_run_group). */
typedef struct h2t_dconv_geo {
    int64_t C, H, W, M, OH, OW, kh, kw, sh, sw, dh, dw, pt, pl, G, N;
} h2t_dconv_geo;

/* Samples per call of a group form: H2T_DCONV_GROUP consecutive samples in one primitive read
 * each weight once for all of them (ResNet-50's later layers have more weights than outputs
 * per sample). */
#define H2T_DCONV_GROUP 8

typedef struct h2t_dconv h2t_dconv;

/* 1 when oneDNN's convolutions are in use in this process: libdnnl.so.2 loads (and its
 * header was there at build time), the convolutions' products are on oneDNN (extract/gemm.h)
 * and H2T_CONV is not "gemm" (H2T_CONV=gemm keeps oneDNN's sgemm under the executor's
 * im2col; H2T_CONV=direct keeps the primitive without Winograd: h2t_dconv_winograd). Tests change
 * it with h2t_dconv_select. */
int h2t_dconv_available(void);
/* Tests and benchmarks: on = 1 uses oneDNN's convolutions where available, 0 the im2col path.
 * Returns 0, or H2T_EUNSUPPORTED when on = 1 and oneDNN's convolutions are not available. */
int h2t_dconv_select(int on);
/* Whether 3x3 stride-1 convolutions may run on oneDNN's Winograd kernels (where their
 * geometry makes them pay: dnnl_conv.c, wino_pays) rather than the direct one. on = 1 or 0 sets
 * it (tests, benchmarks); on = -1 only reads it, the first time from the environment:
 * H2T_CONV=direct turns Winograd off. Winograd's sums differ from the direct kernel's (within
 * the conformance tolerance); they do not depend on the thread count either. An executor
 * takes the setting when it plans. Returns the setting (1 or 0). */
int h2t_dconv_winograd(int on);
/* Channels per block of the blocked layout (16 or 8): a blocked tensor of C channels and H x
 * W holds h2t_dconv_padded(C) * H * W floats per sample. */
int h2t_dconv_block(void);
int64_t h2t_dconv_padded(int64_t C);

/* Create the convolution of geometry g with weights w (M x C/G x kh x kw, copied into
 * oneDNN's layout) and bias (M floats or NULL, copied), then act (H2T_ACT_* of kern.h, lo and
 * hi for Clip); sum = 1 adds a residual tensor of the output's shape before act. Returns 0 and
 * *out (OWNED by the caller: h2t_dconv_free), H2T_EUNSUPPORTED when oneDNN has no optimised
 * kernel for it (a reference or im2col implementation is refused: the executor's path is
 * better), H2T_ENOMEM. */
int h2t_dconv_create(const h2t_dconv_geo *g, const float *w, const float *bias, int act, float lo,
                     float hi, int sum, h2t_dconv **out);
/* Whether the primitive reads its input blocked (else NCHW: fewer than 8 input channels). */
int h2t_dconv_src_blocked(const h2t_dconv *c);
/* H2T_DCONV_GROUP when the convolution has a group form, else 1. The group form runs the same
 * oneDNN implementation with the same weights as the one-sample form, and each sample's sums
 * are bitwise those of running it alone (make test T=dnnl_conv_group checks this on ResNet's
 * shapes), so how a batch is cut into groups never changes a result. */
int h2t_dconv_group(const h2t_dconv *c);
/* Multiply-adds of one sample. */
double h2t_dconv_macs(const h2t_dconv *c);
/* Floats of scratch one run needs (of either form). */
size_t h2t_dconv_scratch(const h2t_dconv *c);
/* The implementation oneDNN chose, e.g. "brgconv_1x1:avx512_core" (BORROWED). */
const char *h2t_dconv_impl(const h2t_dconv *c);
/* Run one sample: x (input, blocked when x_blk, which needs h2t_dconv_src_blocked), res (the
 * residual when created with sum, blocked when res_blk; else ignored; res == y, both blocked,
 * adds the residual y holds in place), y (output, blocked when y_blk), scratch of h2t_dconv_scratch
 * floats (64-byte aligned), all BORROWED. Returns 0 or H2T_ESTATE (oneDNN refused to run; detail
 * text names the call). */
int h2t_dconv_run(const h2t_dconv *c, const float *x, int x_blk, const float *res, int res_blk,
                  float *y, int y_blk, float *scratch);
/* The same for h2t_dconv_group(c) consecutive samples (x, res, y: the first sample's);
 * H2T_EINVAL when c has no group form. */
int h2t_dconv_run_group(const h2t_dconv *c, const float *x, int x_blk, const float *res,
                        int res_blk, float *y, int y_blk, float *scratch);
void h2t_dconv_free(h2t_dconv *c);
/* Exact reorders between NCHW and the blocked layout for n samples of C x HW (padding
 * channels written as 0 into the blocked tensor). */
void h2t_dconv_to_blocked(const float *x, int64_t n, int64_t C, int64_t HW, float *y);
void h2t_dconv_from_blocked(const float *x, int64_t n, int64_t C, int64_t HW, float *y);

#endif
