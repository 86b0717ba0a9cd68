/*
 * extract/model.h - ONNX models on the CPU: load, check, plan, run.
 *
 * A model is parsed with the protobuf-c bindings generated from the system onnx.proto,
 * checked (every operator supported, shapes inferred with a dynamic batch dimension), and
 * then executed by an executor planned for a maximum batch size: NCHW float32, convolutions
 * through im2col / direct 1x1 + OpenBLAS sgemm, depthwise as direct loops, every
 * intermediate in one preplanned arena whose buffers are reused once dead.
 *
 *     int on_tensor(void *ctx, int tensor, const float *data, const int64_t *shape, int rank);
 *     h2t_model *m;
 *     if (h2t_model_load("mobilenet_v2.onnx", &m) < 0)
 *         return; // h2t_err_detail() names the file, operator or node
 *     h2t_exec *x;
 *     if (h2t_exec_create(m, 32, &x) == 0) {
 *         static float input[32 * 3 * 224 * 224]; // n x C x H x W
 *         h2t_exec_observe(x, h2t_model_tensor_find(m, "Conv1"), 1); // tensors to see
 *         h2t_exec_run(x, input, 32, on_tensor, NULL); // on_tensor gets each observed tensor as
 *         h2t_exec_destroy(x);                         // it is computed
 *     }
 *     h2t_model_destroy(m);
 *
 * Threads: a model is immutable after load and may be shared; an executor is used by one
 * thread at a time. OpenBLAS's thread count is set explicitly with h2t_blas_threads()
 * (common/blas.h).
 * With a count T > 1 and a batch of 2 or more, an executor splits the batch over T threads of
 * its own (OpenBLAS at 1 thread during that run); callbacks still run on the caller's thread.
 * The observed set shapes the plan: a Conv/BN/activation intermediate nobody observes is not
 * materialised (and BN may be folded into the conv); observed tensors are exact.
 */
#ifndef H2T_EXTRACT_MODEL_H
#define H2T_EXTRACT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/blas.h" /* h2t_blas_threads */

typedef struct h2t_model h2t_model;
typedef struct h2t_exec h2t_exec;

#define H2T_MAX_RANK 6
/* The most elements one tensor may have (a declared initializer, or a shape inferred at load):
 * past it a model is refused (H2T_ECORRUPT / H2T_ESHAPE naming the tensor or node), so no
 * element count overflows 64 bits */
#define H2T_ONNX_MAX_ELEMS ((int64_t)1 << 40)
/* The most elements of one tensor computed at load time from constants (a static node: a
 * Cast of fp16 weights, a Pad or Tile of an initializer): 2^27 (512 MiB of float32), enough
 * for the largest weight matrices of the zoo; more is refused (H2T_ETOOBIG) rather than
 * computed. */
#define H2T_ONNX_MAX_FOLD ((int64_t)1 << 27)

/* One tensor of the graph: a graph input or a node output (initializers are not listed). */
typedef struct h2t_tensor_info {
    const char *name; /* ONNX tensor name; BORROWED from the model */
    const char *op;   /* op type of the producing node, "" for graph inputs; BORROWED */
    const char *node; /* name of the producing node ("" when unnamed); BORROWED */
    int rank;
    int64_t shape[H2T_MAX_RANK]; /* inferred at load; -1 = a dim that follows the batch */
    int is_input, is_output;     /* graph input / graph output */
    /* The axis that carries the batch: shapes are inferred at two batch sizes (b and b + 1),
     * and the batch axis is the one axis whose size is the batch in both while every other
     * axis keeps its size (0 for an N x ... tensor, 1 for a sequence-first L x N x C one).
     * H2T_BATCH_FOLDED: the batch is folded into a larger axis or spread over several (an
     * N*heads x L x d tensor, (L*N) x C), so no axis is one sample. H2T_BATCH_NONE: nothing
     * follows the batch (a tensor computed from constants). 0 for the graph input. When the
     * second inference is impossible (a model exported with a fixed batch, its size written
     * into its reshapes), the batch axis is axis 0 when it has the input's batch size, else
     * the first axis of that size, else H2T_BATCH_FOLDED (a 1 x 197 x 768 tensor: 0; 197 x 1
     * x 768: 1; 197 x 768 or 12 x 197 x 197 at batch 1: folded). */
    int batch_axis;
    int dtype;     /* ONNX element type: 1 float32, 6 int32, 7 int64, 9 bool */
    int is_static; /* computed before the run from shapes and constants only (the same for
                      every input): never reported to h2t_exec_run's callbacks */
    /* H2T_BATCH_FOLDED with one axis that grows with the batch, as k x batch: k (that axis is
     * the one whose shape is -1; whether the batch is its outer or inner factor is the
     * graph's to say, see h2t_model_tensor_forms); else 0. */
    int64_t batch_fold;
} h2t_tensor_info;

enum { H2T_BATCH_FOLDED = -1, H2T_BATCH_NONE = -2 };

/* Load and check path. Errors: H2T_EIO (unreadable: names the file), H2T_ECORRUPT (not an
 * ONNX model / truncated), H2T_EUNSUPPORTED (operator, attribute or data type not supported:
 * detail names the operator and the node; checked before any work), H2T_ESHAPE (shape
 * inference failed: names the node), H2T_ENOMEM. */
int h2t_model_load(const char *path, h2t_model **out);
/* Same from bytes in memory (BORROWED during the call). */
int h2t_model_load_mem(const void *buf, size_t len, const char *what, h2t_model **out);
void h2t_model_destroy(h2t_model *m);

/* The model's single float input: shape (batch dim -1 when dynamic). */
const h2t_tensor_info *h2t_model_input(const h2t_model *m);
int h2t_model_n_tensors(const h2t_model *m);
const h2t_tensor_info *h2t_model_tensor(const h2t_model *m, int i); /* 0 <= i < n_tensors */
/* Index of a tensor by name, or -1. */
int h2t_model_tensor_find(const h2t_model *m, const char *name);
/* Opset of the default domain the model imports. */
int h2t_model_opset(const h2t_model *m);

/* Plan an executor for batches of up to max_batch samples. Errors: H2T_ENOMEM (detail gives
 * the bytes the arena needs), H2T_EINVAL. */
int h2t_exec_create(const h2t_model *m, int max_batch, h2t_exec **out);
void h2t_exec_destroy(h2t_exec *x);
/* Mark tensor i as observed (on = 1) or not: observed tensors are passed to the callback of
 * h2t_exec_run. Graph outputs can always be read after the run with h2t_exec_output. */
int h2t_exec_observe(h2t_exec *x, int i, int on);

/* Called once per observed tensor per run, as soon as it is computed. data is n x ... in
 * NCHW order (the tensor's shape with shape[0] = n), BORROWED for the call only. A non-zero
 * return aborts the run with that code. */
typedef int (*h2t_tensor_cb)(void *ctx, int tensor, const float *data, const int64_t *shape,
                             int rank);

/* Run n (1..max_batch) samples: input is n x C x H x W float32 matching the model's input.
 * Errors: H2T_ESHAPE, H2T_EINVAL, a callback's code. */
int h2t_exec_run(h2t_exec *x, const float *input, int n, h2t_tensor_cb cb, void *ctx);
/* Range reporting, for consumers that want each piece while it is still in the cache: an
 * observed 4-D tensor written by a fused conv chain (tiled GEMM or 3x3 depthwise) is reported
 * by range_cb piece by piece as the chain's last pass writes it: channels [c0, c1) of sample
 * `sample`, values [off, off + len) of each of those channels' H x W planes (data is the whole
 * tensor, shape its shape; only that piece is final). For each channel the pieces come in
 * order, contiguous, from value 0 to the plane's end; channels may interleave. range_cb runs on
 * the caller's thread, one call at a time (a depthwise chain whose kernel runs on several
 * threads reports whole instead). Every other observed tensor goes to cb whole, as with
 * h2t_exec_run. Only in unsplit runs (batch 1, or BLAS at one thread); a split run reports
 * everything to cb. A non-zero return of either aborts the run with that code. */
typedef int (*h2t_tensor_range_cb)(void *ctx, int tensor, const float *data, const int64_t *shape,
                                   int rank, int sample, int c0, int c1, int64_t off, int64_t len);
int h2t_exec_run_ranges(h2t_exec *x, const float *input, int n, h2t_tensor_cb cb,
                        h2t_tensor_range_cb range_cb, void *ctx);
/* Blocked pieces, for consumers that pool while the values are in the cache and can read
 * oneDNN's blocked layout (extract/dnnl_conv.h, h2t_pool_stream_blk): a tensor observed with
 * h2t_exec_observe_blocked may be reported by blk_cb instead of range_cb or cb. That happens
 * when a fused conv chain writing it runs on oneDNN's convolution primitive: the primitive
 * then runs without the post-ops that would hide an observed stage, and the chain's own pass
 * over each tile of B channels (B = h2t_dconv_block(): 16 with AVX-512, else 8) x a run of
 * positions adds the BN, residual and activation and hands each observed stage over while
 * the tile is in the cache; the stages nobody else reads are never written to the arena.
 * A piece: sample `sample`, channels [c0, c1) of one block (c0 a multiple of B, c1 - c0 <=
 * B), values [off, off + len) of their H x W planes, value p of channel c0 + i at
 * data[(p - off) * B + i] (BORROWED for the call; the lanes from c1 - c0 up are padding).
 * For each channel the pieces come in order from value 0 to the plane's end. The values are
 * those of the primitive's convolution (within the conformance tolerance of the executor's
 * own path, not bitwise), the same for any thread count. Only in unsplit runs (batch 1, or
 * BLAS at one thread): a run that would report such a tensor otherwise (h2t_exec_run or
 * h2t_exec_run_ranges, or a split run) fails with H2T_EINVAL naming it. */
typedef int (*h2t_tensor_blk_cb)(void *ctx, int tensor, const float *data, const int64_t *shape,
                                 int rank, int sample, int B, int c0, int c1, int64_t off,
                                 int64_t len);
int h2t_exec_observe_blocked(h2t_exec *x, int i, int on);
int h2t_exec_run_blocked(h2t_exec *x, const float *input, int n, h2t_tensor_cb cb,
                         h2t_tensor_range_cb range_cb, h2t_tensor_blk_cb blk_cb, void *ctx);
/* After a run: a graph output by index in the graph's output list (BORROWED until the next
 * run). shape filled with the actual shape. */
const float *h2t_exec_output(h2t_exec *x, int k, int64_t *shape, int *rank);

/* Run an arbitrary model on arbitrary named inputs and return every graph output (for ONNX's
 * node tests, whose models may have several inputs of any rank). Inputs are float32 tensors.
 * Errors as above. */
typedef struct h2t_tensor {
    char name[256];
    int rank;
    int64_t shape[H2T_MAX_RANK];
    float *data; /* OWNED by whoever made the struct */
} h2t_tensor;
int h2t_model_run_once(const h2t_model *m, const h2t_tensor *inputs, int n_inputs,
                       h2t_tensor **outputs, int *n_outputs);
void h2t_tensors_free(h2t_tensor *t, int n);

/* ---- additions (executor): int64 inputs for ONNX's node tests, the arena size ---- */

/* An int64 tensor (shape inputs such as Reshape's shape or Pad's pads). */
typedef struct h2t_itensor {
    char name[256];
    int rank;
    int64_t shape[H2T_MAX_RANK];
    int64_t *data; /* OWNED by whoever made the struct */
} h2t_itensor;

/* h2t_model_run_once with integer and bool inputs too (iinputs: int64, int32 or bool graph
 * inputs, held as int64); integer and bool outputs come back converted to float. */
int h2t_model_run_once_i64(const h2t_model *m, const h2t_tensor *inputs, int n_inputs,
                           const h2t_itensor *iinputs, int n_iinputs, h2t_tensor **outputs,
                           int *n_outputs);

/* Decode a serialized ONNX TensorProto (test_data_set_N/input_K.pb) of float32 (into *ft)
 * or int64/int32/bool (into *it as int64, bools 0/1, *is_i64 = 1). The data is OWNED by the caller
 * (free()). Errors: H2T_ECORRUPT (not a TensorProto), H2T_EUNSUPPORTED (other types), H2T_ENOMEM.
 */
int h2t_tensor_pb_read(const void *buf, size_t len, h2t_tensor *ft, h2t_itensor *it, int *is_i64);

/* Bytes of the executor's arena (every intermediate tensor, dead buffers reused). */
size_t h2t_exec_arena_bytes(const h2t_exec *x);

/* ---- additions (extraction): node outputs that are affine in other tensors ---- */

/* How a node output y (a rank-4 N x C x H x W tensor unless said) follows from other tensors
 * of the table, channel by channel, so that averages within a channel carry through:
 *   H2T_LIN_AFFINE  BatchNormalization: y[c] = a[c] x[c] + b[c], x = src[0] (a, b in double:
 *                   a = scale / sqrt(var + eps), b = bias - mean a)
 *   H2T_LIN_SUM     Add of two tensors of y's shape (no broadcasting): y = src[0] + src[1]
 *                   (any rank)
 *   H2T_LIN_PAD     constant-0 Pad of the spatial axes only: y = x = src[0] shifted by
 *                   pads[0] rows and pads[1] columns, pads[2] rows and pads[3] columns of
 *                   zeros after
 * Decided from the model alone (constants, attributes); anything else is H2T_LIN_NONE. */
enum { H2T_LIN_NONE = 0, H2T_LIN_AFFINE = 1, H2T_LIN_SUM = 2, H2T_LIN_PAD = 3 };
typedef struct h2t_tensor_lin {
    int kind;         /* H2T_LIN_* */
    int src[2];       /* tensor indices (-1 when unused) */
    int64_t channels; /* C */
    double *a, *b;    /* AFFINE: C coefficients each, OWNED (h2t_tensor_lin_free) */
    int64_t pads[4];  /* PAD: top, left, bottom, right */
} h2t_tensor_lin;
/* Fill *out for tensor i (0 <= i < n_tensors). Errors: H2T_EINVAL (bad index), H2T_ENOMEM. */
int h2t_model_tensor_lin(const h2t_model *m, int i, h2t_tensor_lin *out);
void h2t_tensor_lin_free(h2t_tensor_lin *l); /* NULL is a no-op; frees a and b */

/* ---- additions (extraction): which axes of a node output are tokens, space, channels ---- */

/* The form of a tensor for the Head2Toe pooling, decided from the graph alone (the batch axis,
 * the producing op and the ops upstream); extract/onnx_form.c and docs/extraction.md give the
 * rules:
 *   H2T_FORM_FLAT  N x C (batch axis 0)
 *   H2T_FORM_NLC   N x L x C tokens, batch first (channels last: the default for 3-D)
 *   H2T_FORM_LNC   L x N x C tokens, sequence first (batch axis 1)
 *   H2T_FORM_NCL   N x C x L, channels first (a 1-D convolution's output)
 *   H2T_FORM_NCHW  N x C x H x W feature map (the default for 4-D)
 *   H2T_FORM_NHWC  N x H x W x C, channels last (a per-position Linear or LayerNormalization
 *                  of a map, as Swin and ConvNeXt blocks compute)
 *   H2T_FORM_ATTN  N x heads x Lq x Lk attention weights (Softmax over the last axis of a 4-D
 *                  tensor with the heads apart or, failing that evidence, that is not a
 *                  channels-last map); also N*heads x Lq x Lk with the batch folded in as the
 *                  outer factor of axis 0 (batch_axis H2T_BATCH_FOLDED, batch_fold = heads),
 *                  as torch's MultiheadAttention computes them: read as N x heads x Lq x Lk
 *   H2T_FORM_HEADS N x heads x L x d or N x heads x Lq x Lk: the other tensors of attention
 *                  with the heads apart (q, k, v, scores, per-head values), from the Reshape
 *                  that splits a token tensor's channels into heads to the one that merges
 *                  them back
 *   H2T_FORM_NONE  no sample can be read from it: `why` says why (batch folded into another
 *                  axis, no batch axis, rank outside 2..4, shapes unknown at load)
 * cls: 1 when token 0 of an NLC / LNC tensor is a class token: the tensor is computed from the
 * output of a Concat along the token axis whose first input is a learned constant of one token
 * (possibly expanded or tiled to the batch), and has that Concat's token count. */
enum {
    H2T_FORM_NONE = 0,
    H2T_FORM_FLAT = 1,
    H2T_FORM_NLC = 2,
    H2T_FORM_LNC = 3,
    H2T_FORM_NCL = 4,
    H2T_FORM_NCHW = 5,
    H2T_FORM_NHWC = 6,
    H2T_FORM_ATTN = 7,
    H2T_FORM_HEADS = 8,
};
typedef struct h2t_tensor_form {
    int form;        /* H2T_FORM_* */
    int cls;         /* 1: token 0 is a class token (NLC, LNC) */
    const char *why; /* H2T_FORM_NONE: static text; else "" */
} h2t_tensor_form;
/* The forms of every tensor of m: out has h2t_model_n_tensors(m) entries (caller-OWNED).
 * Errors: H2T_ENOMEM. */
int h2t_model_tensor_forms(const h2t_model *m, h2t_tensor_form *out);
/* The tensor index of input 0 of the node that produces tensor i, or -1 (a graph input, a
 * constant input). */
int h2t_model_tensor_src(const h2t_model *m, int i);
/* Short name of a form ("tokens", "tokens-seq-first", ...), static. */
const char *h2t_form_name(int form);

#endif
