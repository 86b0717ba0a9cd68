/*
 * extract/onnx_graph.h - the executor's internal view of an ONNX model (not a public
 * contract: only extract/onnx_*.c, exec*.c and ops*.c include it).
 *
 * onnx_load.c turns the protobuf ModelProto into this plain graph (it and onnx_prune.c, which
 * cuts a ModelProto to what some tensors need, are the files that touch protobuf-c); onnx_ops.c
 * checks every node (operator, attributes, data types) and infers shapes for concrete input shapes
 * through the operator table (below: "the operator table", with how to add an operator); exec.c
 * plans the arena and runs the ops_*.c kernels.
 *
 * Values are every tensor name of the graph: graph inputs, initializers (and Constant node
 * outputs, folded into constants at load), node outputs. Element types: float32, int32, int64
 * and bool. A value is "static" when it is known before the run: constants, integer and bool
 * graph inputs (given with their values), and the outputs of every node whose inputs are all
 * static (or that reads only shapes, like Shape). Static values are computed during shape
 * inference for the concrete input shapes - integers and bools by the op's eval into
 * onnx_vstate.ival (int32 and bool held as int64: int32 wrapped, bool 0/1), floats by the op's
 * own kernel into onnx_vstate.fown - so shape arithmetic and anything computed from shapes
 * only (attention masks, position tables) never runs per batch. The rest are "run-time" values
 * in the arena: float32, or bool computed from run-time data (Less, Equal, Not, ... over
 * float tensors), held as float 0/1. A run-time integer tensor is refused at check, naming the
 * node: integers exist for shape arithmetic and indices, which a vision backbone computes from
 * shapes and constants.
 *
 *     h2t_model m = {0};
 *     const void *bytes = NULL; // the ONNX file's bytes
 *     size_t len = 0;
 *     if (onnx_model_parse(bytes, len, "model.onnx", &m) == 0 && // the plain graph (onnx_load.c)
 *         onnx_check(&m) == 0) {                               // every node supported, parsed
 *         onnx_vstate *vs = calloc(m.n_values, sizeof *vs);    // per executor: value shapes and
 *         onnx_nstate *ns = calloc(m.n_nodes, sizeof *ns);     // static int64 values, node state
 *         if (vs && ns && onnx_infer(&m, vs, ns) == 0) {       // for the input shape in vs
 *             // ... plan and run ...
 *         }
 *         if (vs)
 *             onnx_state_clear(&m, vs);
 *         free(vs);
 *         free(ns);
 *     }
 *     onnx_model_free(&m);
 */
#ifndef H2T_EXTRACT_ONNX_GRAPH_H
#define H2T_EXTRACT_ONNX_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "extract/model.h"

/* The newest opset of the default domain the operators are checked against. */
#define ONNX_OPSET_MAX 20

/* Element types (ONNX's TensorProto.DataType codes). */
enum {
    ONNX_DT_F32 = 1,
    ONNX_DT_I32 = 6,
    ONNX_DT_I64 = 7,
    ONNX_DT_BOOL = 9,
    ONNX_DT_NONTENSOR = 1000
};

/* Whether dt is held as int64 values when static (int32, int64, bool). */
static inline int onnx_dt_is_int(int dt)
{
    return dt == ONNX_DT_I32 || dt == ONNX_DT_I64 || dt == ONNX_DT_BOOL;
}

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
    void *cdata;   /* constants: float, or int64 for the integer and bool types; OWNED */
    int64_t count; /* constants: element count */
    int producer;  /* node index for ONNX_VAL_NODE, else -1 */
    int is_static; /* known before the run (set by onnx_check; see the top of this file) */
} onnx_value;

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
    char *name;                   /* OWNED; "" when the model leaves it unnamed */
    char *op;                     /* OWNED */
    char *domain;                 /* OWNED; NULL for the default domain (ai.onnx) */
    const struct onnx_opdef *def; /* the operator's table entry; NULL before onnx_check */
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
    int64_t *ival; /* static integer and bool values (OWNED by the state) */
    float *f;      /* float data: constant, static (fown or an input's), arena or caller buffer */
    float *fown;   /* static values computed during inference as floats, and the float copy
                      of static integer / bool values (OWNED by the state) */
} onnx_vstate;

/* ---- onnx_load.c ---- */
/* Parse an ONNX model from bytes into m (zeroed by the caller). H2T_ECORRUPT, H2T_ENOMEM,
 * H2T_EUNSUPPORTED (external data, ...). On failure m may be partly filled: free it with
 * onnx_model_free. */
int onnx_model_parse(const void *buf, size_t len, const char *what, h2t_model *m);
void onnx_model_free(h2t_model *m);

/* ---- onnx_ops.c: the operator registry, checks and shape inference ---- */
/* Check every node: known operator, input/output counts, attributes and data types; fill
 * nd->def and nd->p. H2T_EUNSUPPORTED naming the op and node. */
int onnx_check(h2t_model *m);
/* Infer shapes for all values given the runtime inputs' shapes (vs[inputs[k]].rank/dim set by
 * the caller, and .ival for int64 inputs). Constants are filled here. H2T_ESHAPE naming the
 * node, H2T_EUNSUPPORTED (an int64 value that would depend on float data), H2T_ENOMEM. */
int onnx_infer(const h2t_model *m, onnx_vstate *vs, onnx_nstate *ns);
void onnx_state_clear(const h2t_model *m, onnx_vstate *vs);
/* Whether a node's op is a pure view (table flag ONNX_OPF_VIEW: output = input 0's bytes). */
int onnx_op_is_view(const onnx_node *nd);
/* Whether a node's op is the named one (the fusion planner's chain patterns). */
int onnx_op_is(const onnx_node *nd, const char *name);
/* Whether a node is evaluated during inference (its outputs are static). */
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
    /* blocked pieces (h2t_exec_run_blocked): NULL = none; the context is rctx */
    h2t_tensor_blk_cb bcb;
} onnx_kctx;

/* Run fn over [0, n) split in up to `threads` chunks of at least min_chunk items (par.c). */
typedef void (*onnx_par_fn)(void *ctx, int64_t lo, int64_t hi);
void onnx_par_for(int threads, int64_t n, int64_t min_chunk, onnx_par_fn fn, void *ctx);

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
    float *fw, *fb;     /* folded weights (M x K) and bias (M), OWNED; NULL when unfolded or
                         * when dconv holds them */
    float *bn_a, *bn_b; /* BN scale and shift per channel, OWNED; NULL without BN */
    /* oneDNN's convolution with the chain's bias, residual sum and activation fused
     * (extract/dnnl_conv.h), OWNED; NULL: the executor's kernels run the chain */
    struct h2t_dconv *dconv;
    /* with dconv: the input, the Add's other input and the output are in oneDNN's blocked
     * layout (h2t_dconv_padded channels per sample) rather than NCHW */
    int blk_x, blk_res, blk_out;
    /* raw_ok (set by exec.c before onnx_k_conv_fused_dnnl): every materialised stage but the
     * output is observed in blocked pieces and read by nobody else, and the output is not
     * observed or observed in blocked pieces, so the chain may run on the primitive without
     * post-ops (raw = 1) and its own blocked pass. rep: the chain hands observed stages over
     * in blocked pieces (raw, or the fused primitive whose observed output is blocked).
     * bn_pa, bn_pb: BN scale and shift padded with zeros to the blocked channel count, OWNED
     * (raw with BN only). */
    int raw_ok, raw, rep;
    float *bn_pa, *bn_pb;
} onnx_fuse;

/* Run a chain on the values of k->vs (the Pad's folded amounts from k->m's node states in
 * pad_ns, NULL without Pad). */
int onnx_k_conv_fused(const onnx_kctx *k, const onnx_fuse *f, const onnx_nstate *conv_ns,
                      const onnx_nstate *pad_ns);
/* Give chain f oneDNN's convolution (f->dconv) when oneDNN's convolutions are in use and the
 * chain is one it runs whole: only the chain's output materialised, BN folded or absent,
 * constant weights and bias, a fast implementation for the geometry. f->dconv stays NULL
 * otherwise. Returns 0, or H2T_ENOMEM. */
int onnx_k_conv_fused_dnnl(const h2t_model *m, onnx_fuse *f, const onnx_vstate *vs,
                           const onnx_nstate *conv_ns, const onnx_nstate *pad_ns);
/* Floats of scratch the chain's conv needs (im2col with the folded padding). */
size_t onnx_k_conv_fused_scratch(const h2t_model *m, const onnx_fuse *f, const onnx_vstate *vs,
                                 const onnx_nstate *conv_ns, const onnx_nstate *pad_ns);

/* ---- the operator table ----
 *
 * Everything the executor knows about one operator is one onnx_opdef entry: its checks, its
 * attribute parsing, its shape inference, its static evaluation and its kernel. Entries live
 * next to their kernels in table fragments, one per ops_*.c file:
 *
 *     const onnx_opdef onnx_ops_elem[] = {...};
 *     const int onnx_ops_elem_n = sizeof onnx_ops_elem / sizeof onnx_ops_elem[0];
 *
 * and onnx_ops.c's registry lists the fragments (ONNX_OP_FRAGMENTS there, which also declares
 * them); a new ops_*.c file adds its one line to that list.
 *
 * How to add an operator: write its functions in an ops_*.c file and add one entry to that
 * file's fragment. For example an element-wise float op with one attribute:
 *
 *     static int parse_celu(const h2t_model *m, onnx_node *nd)
 *     {
 *         (void)m;
 *         nd->p.alpha = onnx_attr_f(nd, "alpha", 1.f);
 *         return 0;
 *     }
 *     static int k_celu(const onnx_kctx *k, const onnx_node *nd)
 *     {
 *         const float *x = IN(0)->f;
 *         float *y = OUT(0)->f, a = nd->p.alpha;
 *         for (int64_t i = 0, n = onnx_numel(OUT(0)); i < n; i++)
 *             y[i] = x[i] > 0.f ? x[i] : a * expm1f(x[i] / a);
 *         return 0;
 *     }
 *
 *     {"Celu", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_FLOAT,
 *      .parse = parse_celu, .infer = onnx_infer_same, .run = k_celu},
 *
 * What the executor does with an entry:
 *  - onnx_check (once, at load): finds the entry by name (every unsupported op of the model is
 *    listed in one H2T_EUNSUPPORTED), checks min_in..max_in inputs with inputs 0..min_in-1
 *    present and 1..max_out outputs, calls parse, which validates attributes into nd->p
 *    (H2T_EUNSUPPORTED / H2T_ECORRUPT naming the node, via onnx_unsup / h2t_err_set), then
 *    checks the data types by dt, types and param_in, and decides whether the node is static.
 *  - onnx_infer (per input shape): calls infer, which sets the outputs' shapes (onnx_set_shape)
 *    and may resolve per-node amounts into ns (pads, axes, ...); then, for a static node, eval
 *    computes integer and bool outputs into ival, and run computes float outputs into fown.
 *  - exec (per run): run computes the float outputs (OUT(k)->f) from the inputs; scratch says
 *    how many floats of scratch run needs (k->scratch). Views (ONNX_OPF_VIEW) have no kernel:
 *    the output shares the input's buffer.
 */

/* Data-type rules (onnx_opdef.dt). Inputs marked in param_in are int32 or int64 whatever the
 * rule. "Data inputs" are the others. */
enum {
    ONNX_DTR_FLOAT = 1, /* float32 data inputs, float32 output */
    ONNX_DTR_SAME,      /* data inputs and the output have input 0's type, one of .types */
    ONNX_DTR_SHAPE,     /* any input type, int64 output */
    ONNX_DTR_CAST,      /* input 0 of any type in .types; output type nd->p.to (set by parse) */
    ONNX_DTR_CMP,       /* data inputs have input 0's type, one of .types; bool output */
    ONNX_DTR_WHERE      /* input 0 bool, inputs 1.. and the output input 1's type (.types) */
};

/* Type sets (onnx_opdef.types; 0 = every type of the four). */
enum {
    ONNX_TY_F32 = 1,
    ONNX_TY_I32 = 2,
    ONNX_TY_I64 = 4,
    ONNX_TY_BOOL = 8,
    ONNX_TY_INT = ONNX_TY_I32 | ONNX_TY_I64,
    ONNX_TY_NUM = ONNX_TY_F32 | ONNX_TY_INT,
    ONNX_TY_ALL = ONNX_TY_NUM | ONNX_TY_BOOL
};

/* Flags (onnx_opdef.flags). */
enum {
    ONNX_OPF_VIEW = 1,       /* output 0 is input 0's bytes (Reshape, Identity, ...): no kernel */
    ONNX_OPF_CONST = 2,      /* folded into a constant at load (Constant): never checked or run */
    ONNX_OPF_READS_SHAPE = 4 /* reads only its inputs' shapes (Shape): static from any input */
};

typedef struct onnx_opdef {
    const char *name;   /* ONNX op_type (domain ai.onnx) */
    int min_in, max_in; /* input count bounds (omitted optional inputs count) */
    int max_out;        /* at most this many outputs (at least 1); parse may refuse extra ones */
    unsigned param_in;  /* bit k set: input k is an integer parameter (shape, axes, pads, ...) */
    unsigned bool_in;   /* bit k set: input k is a bool parameter (Dropout's training_mode) */
    int dt;             /* ONNX_DTR_* */
    unsigned types;     /* ONNX_TY_* the rule's "one of" allows (0: ONNX_TY_ALL) */
    unsigned flags;     /* ONNX_OPF_* */
    int sub;            /* the op's own variant code, for kernels shared by several ops */
    /* Attributes into nd->p (NULL: none read). */
    int (*parse)(const h2t_model *m, onnx_node *nd);
    /* Output shapes from the input shapes (and static inputs' ival); fills ns. */
    int (*infer)(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns);
    /* Static integer / bool outputs into VOUT(k)->ival (allocated for the outputs' shapes)
     * from static inputs: VIN(k)->ival for integer and bool inputs, VIN(k)->f for float ones
     * (onnx_get reads either). NULL: the op never makes integer or bool values. */
    int (*eval)(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns);
    /* The float kernel: OUT(k)->f from IN(k)->f, or ->ival for static integer and bool inputs
     * (onnx_get). Runs per batch for run-time nodes, and once during inference for static
     * nodes with float outputs (constant folding for the input's shape); a run-time bool output
     * is written as float 0/1. NULL for views. */
    int (*run)(const onnx_kctx *k, const onnx_node *nd);
    /* Floats of scratch run needs (NULL: none). */
    size_t (*scratch)(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns);
    /* Whether the node, with these resolved amounts, mixes samples across axis 0 where every
     * shape would allow splitting the batch (Softmax over axis 0, ...). NULL: never. */
    int (*mixes_batch)(const onnx_node *nd, const onnx_nstate *ns);
} onnx_opdef;

/* The entry for an op_type, NULL when unsupported. */
const onnx_opdef *onnx_op_find(const char *name);
/* Every entry of every fragment, i in [0, onnx_op_count()) (the table's own tests). */
int onnx_op_count(void);
const onnx_opdef *onnx_op_at(int i);

/* Floats of scratch a node needs (with its inferred shapes). */
size_t onnx_kernel_scratch(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns);
/* Run a node's kernel (not for views or static nodes). */
int onnx_kernel_run(const onnx_kctx *k, const onnx_node *nd);

/* ---- helpers for the ops_*.c files (onnx_ops.c) ---- */

/* Element i of a value as a double: from ival (static integer or bool) or f (float, or a
 * run-time bool as 0/1). */
static inline double onnx_get(const onnx_vstate *v, int64_t i)
{
    return v->ival ? (double)v->ival[i] : (double)v->f[i];
}

/* Inputs and outputs in shape inference (a vs in scope) and in kernels (a k in scope). */
#define VIN(j) (&vs[nd->in[j]])
#define VOUT(j) (&vs[nd->out[j]])
#define IN(j) (&k->vs[nd->in[j]])
#define OUT(j) (&k->vs[nd->out[j]])
#define HAS(j) ((j) < nd->n_in && nd->in[j] >= 0)

const onnx_attr *onnx_attr_get(const onnx_node *nd, const char *name);
int64_t onnx_attr_i(const onnx_node *nd, const char *name, int64_t def);
float onnx_attr_f(const onnx_node *nd, const char *name, float def);
const char *onnx_attr_s(const onnx_node *nd, const char *name, const char *def);
/* ints attribute into out (max n); returns the count, -1 when absent, -2 when too long. */
int onnx_attr_ints(const onnx_node *nd, const char *name, int64_t *out, int max);
/* H2T_EUNSUPPORTED "operator OP (node 'NAME'): <msg><what>". */
int onnx_unsup(const onnx_node *nd, const char *msg, const char *what);
/* H2T_ESHAPE "node 'NAME' (OP): <fmt with a, b>" (fmt takes two long long at most). */
int onnx_shape_err(const onnx_node *nd, const char *fmt, long long a, long long b);
/* axis in [-rank, rank) into [0, rank); -1 when out of range. */
int onnx_norm_axis(int64_t axis, int rank, int64_t *out);
void onnx_set_shape(onnx_vstate *o, int rank, const int64_t *dim);
/* (Re)allocate o->ival for o's shape. */
int onnx_alloc_ival(onnx_vstate *o);
/* int64 parameter input k as a flat list; -1 when absent, H2T_EUNSUPPORTED when not known
 * before run. */
int onnx_param_list(const onnx_node *nd, const onnx_vstate *vs, int k, const int64_t **out,
                    int64_t *n);
/* Numpy-style broadcast of a and b into o's shape. H2T_ESHAPE naming the node. */
int onnx_bcast_shape(const onnx_node *nd, const onnx_vstate *a, const onnx_vstate *b,
                     onnx_vstate *o);
/* Multidirectional broadcast of inputs in[0..n) (n <= 3) into o's shape. H2T_ESHAPE. */
int onnx_bcast_shape_n(const onnx_node *nd, const onnx_vstate *const *in, int n, onnx_vstate *o);
/* A walk over o's elements in order with each input's element offset (broadcast inputs
 * repeat): init, then off[k] is input k's offset for the current element; next advances. */
typedef struct onnx_bwalk {
    int r, n;
    int64_t d[H2T_MAX_RANK], st[3][H2T_MAX_RANK], idx[H2T_MAX_RANK], off[3];
} onnx_bwalk;
void onnx_bwalk_init(onnx_bwalk *w, const onnx_vstate *o, const onnx_vstate *const *in, int n);
static inline void onnx_bwalk_next(onnx_bwalk *w)
{
    for (int i = w->r - 1; i >= 0; i--) {
        for (int k = 0; k < w->n; k++)
            w->off[k] += w->st[k][i];
        if (++w->idx[i] < w->d[i])
            return;
        for (int k = 0; k < w->n; k++)
            w->off[k] -= w->st[k][i] * w->d[i];
        w->idx[i] = 0;
    }
}
/* A scalar input k known before the run (static) into *x; H2T_EUNSUPPORTED naming the node
 * when it is computed at run time, H2T_ESHAPE when it is not one element. */
int onnx_static_scalar(const h2t_model *m, const onnx_node *nd, const onnx_vstate *vs, int k,
                       double *x);
/* infer for ops whose output has input 0's shape. */
int onnx_infer_same(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns);

#endif
