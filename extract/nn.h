/*
 * extract/nn.h - the executor's numeric kernels on plain float arrays (not a public contract:
 * extract/ops*.c and the tests include it): vectorisable exp / erf, GELU, row softmax, layer /
 * group / instance normalisation and reductions. The ops_*.c table entries call these with the
 * shapes of the graph; the tests call them directly.
 *
 * Every kernel splits its work by output rows (onnx_par_for) and each output element is
 * computed by one thread in a fixed order, so results are bitwise the same for any thread
 * count. The hot loops are compiled twice (portable and AVX+FMA, chosen at run time by
 * h2t_kern_isa); without floating-point contraction (-std=c11) and with explicit 8-lane
 * partial sums both give bitwise the same results.
 *
 *     float y[4];
 *     const float x[4] = {1, 2, 3, 4};
 *     h2t_nn_softmax_rows(1, x, 1, 4, 0, y); // y = softmax(x)
 */
#ifndef H2T_EXTRACT_NN_H
#define H2T_EXTRACT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "extract/model.h"

/* e^x for n floats: within 2 ulp of expf for x in [-87.3, 88.7]; 0 below, +inf above, NaN
 * kept. x == y allowed. */
void h2t_nn_exp(const float *x, int64_t n, float *y);
/* erf(x) for n floats, within 2 ulp (relative 2.4e-7) of the exact value; NaN kept. */
void h2t_nn_erf(int threads, const float *x, int64_t n, float *y);
/* GELU: approximate 0: 0.5 x (1 + erf(x / sqrt 2)); 1 (tanh form): 0.5 x (1 + tanh(sqrt(2/pi)
 * (x + 0.044715 x^3))). x == y allowed. */
void h2t_nn_gelu(int threads, const float *x, int64_t n, int approximate, float *y);

/* Softmax (log_softmax when is_log) over each of `rows` contiguous rows of `len` floats. */
void h2t_nn_softmax_rows(int threads, const float *x, int64_t rows, int64_t len, int is_log,
                         float *y);
/* Softmax over the middle axis of an outer x len x inner array (inner > 1: not contiguous). */
void h2t_nn_softmax_strided(int threads, const float *x, int64_t outer, int64_t len, int64_t inner,
                            int is_log, float *y);

/* Layer normalisation of `rows` rows of `cols` floats: y = (x - mean) / sqrt(var + eps) *
 * scale + bias, mean and (biased) variance per row accumulated in double. scale and bias
 * have cols floats; bias may be NULL. mean / inv_std (rows floats each) receive the row's
 * mean and 1/sqrt(var + eps) when not NULL. */
void h2t_nn_layernorm(int threads, const float *x, int64_t rows, int64_t cols, const float *scale,
                      const float *bias, float eps, float *y, float *mean, float *inv_std);

/* Group normalisation of an N x C x S array in G groups of C/G channels (G divides C): each
 * (sample, group) block of C/G x S floats is normalised by its mean and variance, then
 * y = v * scale[c] + bias[c] with per_group = 0, or scale[g] / bias[g] with per_group = 1.
 * Instance normalisation is G = C. */
void h2t_nn_groupnorm(int threads, const float *x, int64_t N, int64_t C, int64_t S, int64_t G,
                      const float *scale, const float *bias, int per_group, float eps, float *y);

/* Reductions. */
enum {
    H2T_NN_RSUM,
    H2T_NN_RMEAN,
    H2T_NN_RMAX,
    H2T_NN_RMIN,
    H2T_NN_RPROD,
    H2T_NN_RL1,
    H2T_NN_RL2,
    H2T_NN_RSUMSQ,
    H2T_NN_RLOGSUM,
    H2T_NN_RLOGSUMEXP
};
/* Reduce x (rank <= H2T_MAX_RANK dims) over the axes with red[i] != 0 into y (the kept axes in
 * order, numel = product of kept dims). Sums accumulate in double in the row-major order of the
 * reduced axes. An empty reduction gives the op's identity (0, 1, -inf for Max, +inf for Min; Mean
 * of nothing is NaN). Max / Min propagate NaN. */
void h2t_nn_reduce(int threads, int op, const float *x, int rank, const int64_t *dim,
                   const int *red, float *y);

/* y = x with its axes permuted: y's axis i is x's axis perm[i] (rank <= H2T_MAX_RANK). */
void h2t_nn_permute(const float *x, int rank, const int64_t *dim, const int *perm, float *y);
int64_t h2t_nn_numel(int rank, const int64_t *dim);

/* nb row-major products C_i = op(A_i) op(B_i) (M x N, inner K), A_i = a + i * sa, ... with
 * op the transpose when ta / tb. Batches are split over threads when the products are small
 * (OpenBLAS on one thread inside), else run in order with OpenBLAS's own threads; both give
 * the same bits. Implemented in ops_conv.c, the file that calls BLAS. */
void h2t_nn_sgemm_batched(int threads, int64_t nb, int ta, int tb, int64_t M, int64_t N, int64_t K,
                          const float *a, int64_t sa, int64_t lda, const float *b, int64_t sb,
                          int64_t ldb, float *c, int64_t sc, int64_t ldc);

/* Einsum: an equation of one or two operands planned for concrete shapes (einsum.c). */
#define H2T_NN_EIN_MAXR H2T_MAX_RANK
typedef struct h2t_nn_einsum {
    int n_in;
    int64_t nb, M, N, K;
    int a_mode, b_mode, c_mode; /* 0 in place, 1 in place transposed, 2 permuted via scratch */
    int a_rank, b_rank, c_rank, out_rank;
    int64_t a_dim[H2T_NN_EIN_MAXR], b_dim[H2T_NN_EIN_MAXR], c_dim[H2T_NN_EIN_MAXR];
    int a_perm[H2T_NN_EIN_MAXR], b_perm[H2T_NN_EIN_MAXR], c_perm[H2T_NN_EIN_MAXR];
    int64_t out_dim[H2T_NN_EIN_MAXR];
    int red[H2T_NN_EIN_MAXR]; /* one operand: the summed axes */
    int c_identity;           /* one operand: the kept axes are already in output order */
    int keeps_axis0;          /* every operand's first axis is the output's first axis */
} h2t_nn_einsum;
/* Check an equation's form for n_in operands without shapes: H2T_EUNSUPPORTED (diagonals,
 * labels summed within one of two operands, more than two operands) or H2T_ECORRUPT, the
 * detail naming the equation. */
int h2t_nn_einsum_check(const char *eq, int n_in);
/* Plan for operand ranks and dims (dims[k] has rank[k] entries): the output shape in
 * p->out_rank / out_dim. Errors as h2t_nn_einsum_check, plus H2T_ESHAPE (sizes disagree). */
int h2t_nn_einsum_plan(const char *eq, int n_in, const int *rank, const int64_t *const *dims,
                       h2t_nn_einsum *p);
/* Floats of scratch h2t_nn_einsum_run needs. */
size_t h2t_nn_einsum_scratch(const h2t_nn_einsum *p);
/* y = einsum(a[, b]) as planned; scratch of h2t_nn_einsum_scratch floats. */
void h2t_nn_einsum_run(int threads, const h2t_nn_einsum *p, const float *a, const float *b,
                       float *y, float *scratch);

/* Resize of the last two axes (nn_spatial.c): outer planes of H x W into OH x OW. */
enum { /* coordinate transformation modes: output coordinate x -> input coordinate */
       H2T_NN_RC_HALF_PIXEL,         /* (x + 0.5) / s - 0.5 */
       H2T_NN_RC_PYTORCH_HALF_PIXEL, /* the same, 0 when the output length is 1 */
       H2T_NN_RC_ALIGN_CORNERS,      /* x (in - 1) / (out - 1), 0 when out is 1 */
       H2T_NN_RC_ASYMMETRIC,         /* x / s */
       H2T_NN_RC_TF_HALF_PIXEL_NN    /* (x + 0.5) / s */
};
enum { /* nearest-pixel rounding */
       H2T_NN_RN_ROUND_PREFER_FLOOR,
       H2T_NN_RN_ROUND_PREFER_CEIL,
       H2T_NN_RN_FLOOR,
       H2T_NN_RN_CEIL,
       H2T_NN_RN_SIMPLE /* opset < 11: ceil when downsampling, floor otherwise */
};
typedef struct h2t_nn_resize {
    int linear;      /* 0 nearest, 1 (bi)linear, 2 (bi)cubic */
    float cubic_a;   /* cubic: the kernel's a (ONNX cubic_coeff_a, -0.75 by default) */
    int exclude;     /* cubic: taps outside the input get weight 0, the rest renormalised */
    int coord;       /* H2T_NN_RC_* */
    int nearest;     /* H2T_NN_RN_* */
    double scale[2]; /* s of the H and W transforms: the given scales, or out / in from sizes */
} h2t_nn_resize;
void h2t_nn_resize2d(int threads, const h2t_nn_resize *r, const float *x, int64_t outer, int64_t H,
                     int64_t W, int64_t OH, int64_t OW, float *y);

/* 2-D transposed convolution (nn_spatial.c; 1-D as H = 1): x N x C x H x W, w C x M/G x kh x
 * kw, optional bias M, y N x M x OH x OW with OH = sh (H - 1) + (kh - 1) dh + 1 - pt - pb +
 * output padding (the caller's inferred shape). Per sample and group one product W_g^T X_g into
 * the scratch columns, then col2im adds every column into y in a fixed order. */
typedef struct h2t_nn_convt {
    int64_t N, C, H, W, M, OH, OW, kh, kw, sh, sw, dh, dw, pt, pl, G;
} h2t_nn_convt;
/* Floats of scratch (M/G x kh x kw x H x W). */
size_t h2t_nn_convt_scratch(const h2t_nn_convt *g);
void h2t_nn_convt_run(int threads, const h2t_nn_convt *g, const float *x, const float *w,
                      const float *bias, float *y, float *scratch);

#endif
