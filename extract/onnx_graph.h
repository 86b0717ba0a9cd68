/*
 * extract/onnx_graph.h - the executor's internal view of an ONNX model (not a public
 * contract: only extract/onnx_*.c, exec*.c and ops*.c include it).
 *
 * onnx_load.c turns the protobuf ModelProto into this plain graph (the only file that touches
 * protobuf-c); onnx_infer.c checks every node (operator, attributes, data types) and infers
 * shapes for concrete input shapes; exec.c plans the arena and runs the ops_*.c kernels.
 *
 * Values are every tensor name of the graph: graph inputs, initializers (and Constant node
 * outputs, folded into constants at load), node outputs. Two element types exist: float32
 * (computed at run time, or constant) and int64. int64 values are "static": they are computed
 * during shape inference (Shape, Gather, Concat, ... over shapes and constants), never by a
 * kernel, so shapes never depend on the float data.
 *
 *     onnx_graph g = ...;                // onnx_graph_parse (onnx_load.c)
 *     onnx_check(m);                     // every node supported, params parsed
 *     onnx_state st;                     // per executor
 *     onnx_infer(m, shapes, ivals, &st); // shapes + static int64 values for this input
 */
#ifndef H2T_EXTRACT_ONNX_GRAPH_H
#define H2T_EXTRACT_ONNX_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "extract/model.h"

enum { ONNX_DT_F32 = 1, ONNX_DT_I64 = 7, ONNX_DT_NONTENSOR = 1000 };

enum { ONNX_VAL_INPUT = 1, ONNX_VAL_CONST = 2, ONNX_VAL_NODE = 3 };

enum {
    ONNX_AT_F = 1,
    ONNX_AT_I = 2,
    ONNX_AT_S = 3,
    ONNX_AT_T = 4,
    ONNX_AT_FS = 6,
    ONNX_AT_IS = 7,
    ONNX_AT_OTHER = 99
};

typedef struct onnx_attr {
    char *name; /* OWNED */
    int type;   /* ONNX_AT_* */
    float f;
    int64_t i;
    char *s; /* OWNED, NUL-terminated */
    int n;   /* element count for FS / IS */
    float *floats;
    int64_t *ints;
    int t_value; /* ONNX_AT_T: index of the constant value holding the tensor */
} onnx_attr;

typedef struct onnx_value {
    char *name; /* OWNED */
    int kind;   /* ONNX_VAL_* */
    int dtype;  /* ONNX_DT_*, or the raw ONNX data type when unsupported (refused at check) */
    int rank;   /* declared rank (-1 unknown) */
    int64_t shape[H2T_MAX_RANK]; /* declared dims; -1 = symbolic / unknown */
    void *cdata;                 /* constants: float or int64 data, OWNED */
    int64_t count;               /* constants: element count */
    int producer;                /* node index for ONNX_VAL_NODE, else -1 */
} onnx_value;

/* Operator kinds (the op table of onnx_infer.c is in this order). */
enum {
    OP_CONSTANT,
    OP_CONV,
    OP_BN,
    OP_RELU,
    OP_LEAKYRELU,
    OP_CLIP,
    OP_HARDSIGMOID,
    OP_HARDSWISH,
    OP_SIGMOID,
    OP_TANH,
    OP_ABS,
    OP_NEG,
    OP_EXP,
    OP_LOG,
    OP_SQRT,
    OP_RECIPROCAL,
    OP_FLOOR,
    OP_CEIL,
    OP_ERF,
    OP_ELU,
    OP_SELU,
    OP_SOFTPLUS,
    OP_SOFTSIGN,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_POW,
    OP_PRELU,
    OP_MAXPOOL,
    OP_AVGPOOL,
    OP_GAP,
    OP_GMP,
    OP_PAD,
    OP_CONCAT,
    OP_FLATTEN,
    OP_RESHAPE,
    OP_GEMM,
    OP_MATMUL,
    OP_SOFTMAX,
    OP_LOGSOFTMAX,
    OP_IDENTITY,
    OP_DROPOUT,
    OP_TRANSPOSE,
    OP_SHAPE,
    OP_GATHER,
    OP_UNSQUEEZE,
    OP_SQUEEZE,
    OP_REDUCEMEAN,
    OP_CAST,
    OP_SLICE,
    OP_COUNT
};

/* Parameters parsed from attributes at check time (the fields an op uses). */
typedef struct onnx_params {
    int64_t kernel[2], strides[2], dil[2], pads[4]; /* Conv, pools: H then W */
    int spatial;                                    /* 1 or 2 spatial dims */
    int auto_pad; /* 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID */
    int64_t group;
    int ceil_mode, count_include_pad;
    float alpha, beta, eps;
    float fmin, fmax; /* Clip (attribute form) */
    int trans_a, trans_b;
    int64_t axis;
    int keepdims;
    int n_ints; /* perm, axes, pads attribute forms */
    int64_t ints[2 * H2T_MAX_RANK];
    int has_ints;
    int mode; /* Pad: 0 constant, 1 reflect, 2 edge */
    float value;
    int to; /* Cast */
} onnx_params;

typedef struct onnx_node {
    char *name; /* OWNED; "" when the model leaves it unnamed */
    char *op;   /* OWNED */
    int kind;   /* index in the op table (onnx_infer.c), -1 before check */
    int n_in, n_out;
    int *in, *out; /* value indices; -1 for an omitted optional input */
    int n_attr;
    onnx_attr *attr;
    onnx_params p;
} onnx_node;

struct h2t_model {
    int opset;
    int n_values, n_nodes;
    onnx_value *values;
    onnx_node *nodes; /* topologically sorted */
    int n_inputs, n_outputs;
    int *inputs;  /* runtime graph inputs (initializers excluded) */
    int *outputs; /* graph outputs */
    /* public tensor table: runtime inputs then node outputs */
    int n_info;
    h2t_tensor_info *info;
    int *info_value; /* info index -> value index */
    int *value_info; /* value index -> info index or -1 */
    int main_input;  /* index into inputs of the single float input, -1 if none */
};

/* Per-executor, per-node parameters resolved for the current shapes (pads after auto_pad,
 * Pad/Slice amounts from int64 inputs, ...). */
typedef struct onnx_nstate {
    int64_t a[2 * H2T_MAX_RANK];
    int64_t b[2 * H2T_MAX_RANK];
} onnx_nstate;

/* Per-executor, per-value state for one set of input shapes. */
typedef struct onnx_vstate {
    int rank; /* -1 unknown */
    int64_t dim[H2T_MAX_RANK];
    int64_t *ival; /* static int64 values (OWNED by the state) */
    float *f;      /* float data: constant, arena or caller buffer (BORROWED) */
} onnx_vstate;

/* ---- onnx_load.c ---- */
/* Parse an ONNX model from bytes into m (zeroed by the caller). H2T_ECORRUPT, H2T_ENOMEM,
 * H2T_EUNSUPPORTED (external data, ...). On failure m may be partly filled: free it with
 * onnx_model_free. */
int onnx_model_parse(const void *buf, size_t len, const char *what, h2t_model *m);
void onnx_model_free(h2t_model *m);

/* ---- onnx_infer.c ---- */
/* Check every node: known operator, supported attributes and data types; fill nd->kind and
 * nd->p. H2T_EUNSUPPORTED naming the op and node. */
int onnx_check(h2t_model *m);
/* Infer shapes for all values given the runtime inputs' shapes (vs[inputs[k]].rank/dim set by
 * the caller, and .ival for int64 inputs). Constants are filled here. H2T_ESHAPE naming the
 * node, H2T_EUNSUPPORTED (an int64 value that would depend on float data), H2T_ENOMEM. */
int onnx_infer(const h2t_model *m, onnx_vstate *vs, onnx_nstate *ns);
void onnx_state_clear(const h2t_model *m, onnx_vstate *vs);
/* Whether a node's op is a pure view (Reshape, Flatten, Identity, ...: output = input bytes). */
int onnx_op_is_view(const onnx_node *nd);
/* Whether a node is evaluated during inference (its outputs are int64). */
int onnx_node_is_static(const h2t_model *m, const onnx_node *nd);

static inline int64_t onnx_numel(const onnx_vstate *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->rank; i++)
        n *= v->dim[i];
    return n;
}

/* ---- ops*.c: kernels. Return 0 or an H2T_E* code. scratch holds the node's scratch. ---- */
typedef struct onnx_kctx {
    const h2t_model *m;
    onnx_vstate *vs;
    const onnx_nstate *ns;
    float *scratch;
    size_t scratch_n; /* floats */
    int threads;      /* for the kernels' own loops (BLAS has its own count) */
    /* range reporting (h2t_exec_run_ranges): NULL rcb = none. A fused chain that reports its
     * observed outputs by ranges sets *reported = 1; a callback's first error goes to *rerr. */
    h2t_tensor_range_cb rcb;
    void *rctx;
    const unsigned char *observed; /* per info index */
    int *reported;
    int *rerr;
} onnx_kctx;

/* Run fn over [0, n) split in up to `threads` chunks of at least min_chunk items. */
typedef void (*onnx_par_fn)(void *ctx, int64_t lo, int64_t hi);
void onnx_par_for(int threads, int64_t n, int64_t min_chunk, onnx_par_fn fn, void *ctx);
/* OpenBLAS's current thread count (ops_conv.c). */
int onnx_blas_threads_get(void);

/* A chain of adjacent nodes run as one step (exec.c plans it, ops_conv.c runs it):
 * [Pad ->] Conv [-> BatchNormalization] [-> Add] [-> Relu | Clip]. Each stage's output value
 * is written when it is needed outside the chain (observed, a graph output, read by another
 * node) and elided (never materialised, value -1 here) otherwise; the last stage's output is
 * always written. A folded Pad (constant 0, spatial) becomes extra conv padding. When the Conv
 * output is elided, BatchNormalization is folded into the conv's weights and bias (fw, fb);
 * otherwise it runs as y * bn_a + bn_b per channel, the arithmetic of the BN kernel. */
typedef struct onnx_fuse {
    int first, last;                /* node range [first, last] of the chain */
    int pad, conv, bn, add, act;    /* node indices, -1 when absent */
    int x;                          /* the conv's input value (the Pad's input when folded) */
    int add_other;                  /* the Add's other input value */
    int v_conv, v_bn, v_add, v_act; /* stage outputs to write, -1 when elided or absent */
    int v_out;                      /* the chain's output value */
    int act_kind;                   /* H2T_ACT_* of kern.h */
    float act_lo, act_hi;
    float *fw, *fb;     /* folded weights (M x K) and bias (M), OWNED; NULL when unfolded */
    float *bn_a, *bn_b; /* BN scale and shift per channel, OWNED; NULL without BN */
} onnx_fuse;

/* Run a chain on the values of k->vs (the Pad's folded amounts from k->m's node states in
 * pad_ns, NULL without Pad). */
int onnx_k_conv_fused(const onnx_kctx *k, const onnx_fuse *f, const onnx_nstate *conv_ns,
                      const onnx_nstate *pad_ns);
/* Floats of scratch the chain's conv needs (im2col with the folded padding). */
size_t onnx_k_conv_fused_scratch(const h2t_model *m, const onnx_fuse *f, const onnx_vstate *vs,
                                 const onnx_nstate *conv_ns, const onnx_nstate *pad_ns);

/* The kernels of ops_conv.c that onnx_kernel_run (ops_elem.c) dispatches to: Conv (unfused),
 * MaxPool/AveragePool, Gemm, MatMul, and the Conv's scratch in floats. */
int onnx_k_conv(const onnx_kctx *k, const onnx_node *nd);
int onnx_k_pool(const onnx_kctx *k, const onnx_node *nd);
int onnx_k_gemm(const onnx_kctx *k, const onnx_node *nd);
int onnx_k_matmul(const onnx_kctx *k, const onnx_node *nd);
size_t onnx_k_conv_scratch(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns);

/* Floats of scratch a node needs (with its inferred shapes). */
size_t onnx_kernel_scratch(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns);
int onnx_kernel_run(const onnx_kctx *k, const onnx_node *nd);

/* Element-size-generic data movement, shared by float kernels and int64 evaluation. */
void onnx_k_gather(const void *data, int64_t outer, int64_t axis_n, int64_t inner,
                   const int64_t *idx, int64_t n_idx, void *out, size_t esz);
void onnx_k_transpose(const void *in, const int64_t *idim, int rank, const int64_t *perm, void *out,
                      size_t esz);
/* start/step per axis (ns->a / ns->b of a Slice node), out shape os. */
void onnx_k_slice(const void *in, const onnx_vstate *is, const int64_t *start, const int64_t *step,
                  const onnx_vstate *os, void *out, size_t esz);
/* out[i] = a[bcast i] op b[bcast i] for int64 (op: OP_ADD..OP_DIV). */
void onnx_k_binary_i64(int op, const onnx_vstate *a, const onnx_vstate *b, const onnx_vstate *o,
                       const int64_t *pa, const int64_t *pb, int64_t *po);

#endif
