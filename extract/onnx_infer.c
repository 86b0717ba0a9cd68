/*
 * extract/onnx_infer.c - the operator table: which operators, attributes and data types the
 * executor supports (checked once at load, before any work), and shape inference for
 * concrete input shapes, evaluating int64 "shape arithmetic" (Shape, Gather, Concat, ...) on
 * the way so that every shape is known before a kernel runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/onnx_graph.h"

enum {
    CLS_CONST, /* folded at load */
    CLS_FLOAT, /* float data in, float out */
    CLS_POLY,  /* output dtype = input 0's; int64 -> evaluated statically */
    CLS_SHAPE, /* int64 out from any input */
    CLS_CAST,
};

typedef struct op_def {
    const char *name;
    int min_in, max_in, max_out, cls;
} op_def;

static const op_def OPS[OP_COUNT] = {
    [OP_CONSTANT] = {"Constant", 0, 0, 1, CLS_CONST},
    [OP_CONV] = {"Conv", 2, 3, 1, CLS_FLOAT},
    [OP_BN] = {"BatchNormalization", 5, 5, 1, CLS_FLOAT},
    [OP_RELU] = {"Relu", 1, 1, 1, CLS_FLOAT},
    [OP_LEAKYRELU] = {"LeakyRelu", 1, 1, 1, CLS_FLOAT},
    [OP_CLIP] = {"Clip", 1, 3, 1, CLS_FLOAT},
    [OP_HARDSIGMOID] = {"HardSigmoid", 1, 1, 1, CLS_FLOAT},
    [OP_HARDSWISH] = {"HardSwish", 1, 1, 1, CLS_FLOAT},
    [OP_SIGMOID] = {"Sigmoid", 1, 1, 1, CLS_FLOAT},
    [OP_TANH] = {"Tanh", 1, 1, 1, CLS_FLOAT},
    [OP_ABS] = {"Abs", 1, 1, 1, CLS_FLOAT},
    [OP_NEG] = {"Neg", 1, 1, 1, CLS_FLOAT},
    [OP_EXP] = {"Exp", 1, 1, 1, CLS_FLOAT},
    [OP_LOG] = {"Log", 1, 1, 1, CLS_FLOAT},
    [OP_SQRT] = {"Sqrt", 1, 1, 1, CLS_FLOAT},
    [OP_RECIPROCAL] = {"Reciprocal", 1, 1, 1, CLS_FLOAT},
    [OP_FLOOR] = {"Floor", 1, 1, 1, CLS_FLOAT},
    [OP_CEIL] = {"Ceil", 1, 1, 1, CLS_FLOAT},
    [OP_ERF] = {"Erf", 1, 1, 1, CLS_FLOAT},
    [OP_ELU] = {"Elu", 1, 1, 1, CLS_FLOAT},
    [OP_SELU] = {"Selu", 1, 1, 1, CLS_FLOAT},
    [OP_SOFTPLUS] = {"Softplus", 1, 1, 1, CLS_FLOAT},
    [OP_SOFTSIGN] = {"Softsign", 1, 1, 1, CLS_FLOAT},
    [OP_ADD] = {"Add", 2, 2, 1, CLS_POLY},
    [OP_SUB] = {"Sub", 2, 2, 1, CLS_POLY},
    [OP_MUL] = {"Mul", 2, 2, 1, CLS_POLY},
    [OP_DIV] = {"Div", 2, 2, 1, CLS_POLY},
    [OP_POW] = {"Pow", 2, 2, 1, CLS_FLOAT},
    [OP_PRELU] = {"PRelu", 2, 2, 1, CLS_FLOAT},
    [OP_MAXPOOL] = {"MaxPool", 1, 1, 1, CLS_FLOAT},
    [OP_AVGPOOL] = {"AveragePool", 1, 1, 1, CLS_FLOAT},
    [OP_GAP] = {"GlobalAveragePool", 1, 1, 1, CLS_FLOAT},
    [OP_GMP] = {"GlobalMaxPool", 1, 1, 1, CLS_FLOAT},
    [OP_PAD] = {"Pad", 1, 3, 1, CLS_FLOAT},
    [OP_CONCAT] = {"Concat", 1, 64, 1, CLS_POLY},
    [OP_FLATTEN] = {"Flatten", 1, 1, 1, CLS_POLY},
    [OP_RESHAPE] = {"Reshape", 1, 2, 1, CLS_POLY},
    [OP_GEMM] = {"Gemm", 2, 3, 1, CLS_FLOAT},
    [OP_MATMUL] = {"MatMul", 2, 2, 1, CLS_FLOAT},
    [OP_SOFTMAX] = {"Softmax", 1, 1, 1, CLS_FLOAT},
    [OP_LOGSOFTMAX] = {"LogSoftmax", 1, 1, 1, CLS_FLOAT},
    [OP_IDENTITY] = {"Identity", 1, 1, 1, CLS_POLY},
    [OP_DROPOUT] = {"Dropout", 1, 3, 1, CLS_FLOAT},
    [OP_TRANSPOSE] = {"Transpose", 1, 1, 1, CLS_POLY},
    [OP_SHAPE] = {"Shape", 1, 1, 1, CLS_SHAPE},
    [OP_GATHER] = {"Gather", 2, 2, 1, CLS_POLY},
    [OP_UNSQUEEZE] = {"Unsqueeze", 1, 2, 1, CLS_POLY},
    [OP_SQUEEZE] = {"Squeeze", 1, 2, 1, CLS_POLY},
    [OP_REDUCEMEAN] = {"ReduceMean", 1, 1, 1, CLS_FLOAT},
    [OP_CAST] = {"Cast", 1, 1, 1, CLS_CAST},
    [OP_SLICE] = {"Slice", 1, 5, 1, CLS_POLY},
};

/* Inputs that carry int64 parameters rather than data. */
static int is_param_input(int kind, int k)
{
    switch (kind) {
    case OP_RESHAPE:
    case OP_UNSQUEEZE:
    case OP_SQUEEZE:
    case OP_GATHER:
        return k == 1;
    case OP_PAD:
        return k == 1;
    case OP_SLICE:
        return k >= 1;
    default:
        return 0;
    }
}

int onnx_op_is_view(const onnx_node *nd)
{
    switch (nd->kind) {
    case OP_FLATTEN:
    case OP_RESHAPE:
    case OP_IDENTITY:
    case OP_DROPOUT:
    case OP_UNSQUEEZE:
    case OP_SQUEEZE:
        return 1;
    default:
        return 0;
    }
}

static const onnx_attr *attr_get(const onnx_node *nd, const char *name)
{
    for (int i = 0; i < nd->n_attr; i++)
        if (!strcmp(nd->attr[i].name, name))
            return &nd->attr[i];
    return NULL;
}

static int64_t attr_i(const onnx_node *nd, const char *name, int64_t def)
{
    const onnx_attr *a = attr_get(nd, name);
    return a && a->type == ONNX_AT_I ? a->i : def;
}

static float attr_f(const onnx_node *nd, const char *name, float def)
{
    const onnx_attr *a = attr_get(nd, name);
    return a && a->type == ONNX_AT_F ? a->f : def;
}

static const char *attr_s(const onnx_node *nd, const char *name, const char *def)
{
    const onnx_attr *a = attr_get(nd, name);
    return a && a->type == ONNX_AT_S ? a->s : def;
}

/* ints attribute into out (max n); returns the count, -1 when absent, -2 when too long. */
static int attr_ints(const onnx_node *nd, const char *name, int64_t *out, int max)
{
    const onnx_attr *a = attr_get(nd, name);
    if (!a || a->type != ONNX_AT_IS)
        return -1;
    if (a->n > max)
        return -2;
    for (int i = 0; i < a->n; i++)
        out[i] = a->ints[i];
    return a->n;
}

static int unsup(const onnx_node *nd, const char *fmt, const char *what)
{
    return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s'): %s%s", nd->op, nd->name, fmt,
                       what ? what : "");
}

/* Conv / pool attributes: kernel_shape (pools, or Conv when given), strides, pads,
 * dilations, auto_pad. Spatial dims 1 or 2 (1-D is run as 2-D with H = 1). */
static int parse_window(onnx_node *nd, int is_conv)
{
    onnx_params *p = &nd->p;
    int64_t k[4], s[4], d[4], pads[8];
    int nk = attr_ints(nd, "kernel_shape", k, 4);
    if (nk == -2 || nk == 3 || nk == 4)
        return unsup(nd, "only 1-D and 2-D windows are supported", NULL);
    if (nk < 0 && !is_conv)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): kernel_shape missing", nd->name, nd->op);
    if (nk == 0)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): empty kernel_shape", nd->name, nd->op);
    p->spatial = nk > 0 ? nk : 0; /* 0: from the weights at inference */
    p->kernel[0] = p->kernel[1] = 1;
    p->strides[0] = p->strides[1] = 1;
    p->dil[0] = p->dil[1] = 1;
    memset(p->pads, 0, sizeof p->pads);
    if (nk == 1)
        p->kernel[1] = k[0];
    else if (nk == 2)
        p->kernel[0] = k[0], p->kernel[1] = k[1];
    int ns = attr_ints(nd, "strides", s, 4);
    int nd2 = attr_ints(nd, "dilations", d, 4);
    int np = attr_ints(nd, "pads", pads, 8);
    if (ns == -2 || ns > 2 || nd2 == -2 || nd2 > 2 || np == -2 || np > 4 || np == 3 || np == 1)
        return unsup(nd, "only 1-D and 2-D windows are supported", NULL);
    if (ns == 1)
        p->strides[1] = s[0];
    else if (ns == 2)
        p->strides[0] = s[0], p->strides[1] = s[1];
    if (nd2 == 1)
        p->dil[1] = d[0];
    else if (nd2 == 2)
        p->dil[0] = d[0], p->dil[1] = d[1];
    if (np == 2)
        p->pads[1] = pads[0], p->pads[3] = pads[1];
    else if (np == 4)
        p->pads[0] = pads[0], p->pads[1] = pads[1], p->pads[2] = pads[2], p->pads[3] = pads[3];
    p->has_ints = np > 0 ? np / 2 : 0; /* spatial count implied by pads */
    for (int i = 0; i < 2; i++)
        if (p->kernel[i] < 1 || p->strides[i] < 1 || p->dil[i] < 1 || p->pads[i] < 0 ||
            p->pads[i + 2] < 0)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): bad kernel/stride/dilation/pad",
                               nd->name, nd->op);
    const char *ap = attr_s(nd, "auto_pad", "NOTSET");
    if (!strcmp(ap, "NOTSET") || !ap[0])
        p->auto_pad = 0;
    else if (!strcmp(ap, "SAME_UPPER"))
        p->auto_pad = 1;
    else if (!strcmp(ap, "SAME_LOWER"))
        p->auto_pad = 2;
    else if (!strcmp(ap, "VALID"))
        p->auto_pad = 3;
    else
        return unsup(nd, "auto_pad=", ap);
    p->ceil_mode = (int)attr_i(nd, "ceil_mode", 0);
    p->count_include_pad = (int)attr_i(nd, "count_include_pad", 0);
    p->group = attr_i(nd, "group", 1);
    if (p->group < 1)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): group %lld", nd->name, nd->op,
                           (long long)p->group);
    return 0;
}

static int parse_params(const h2t_model *m, onnx_node *nd)
{
    onnx_params *p = &nd->p;
    int rc = 0;
    p->alpha = 1.f;
    p->beta = 1.f;
    switch (nd->kind) {
    case OP_CONV:
        return parse_window(nd, 1);
    case OP_MAXPOOL:
        if (nd->n_out > 1)
            return unsup(nd, "the Indices output is not supported", NULL);
        if (attr_i(nd, "storage_order", 0) != 0)
            return unsup(nd, "storage_order=1 is not supported", NULL);
        return parse_window(nd, 0);
    case OP_AVGPOOL:
        if (attr_get(nd, "dilations"))
            return unsup(nd, "dilations are not supported", NULL);
        return parse_window(nd, 0);
    case OP_BN:
        if (nd->n_out > 1 || attr_i(nd, "training_mode", 0) != 0)
            return unsup(nd, "training mode is not supported", NULL);
        if (attr_i(nd, "spatial", 1) != 1)
            return unsup(nd, "spatial=0 is not supported", NULL);
        p->eps = attr_f(nd, "epsilon", 1e-5f);
        return 0;
    case OP_LEAKYRELU:
        p->alpha = attr_f(nd, "alpha", 0.01f);
        return 0;
    case OP_ELU:
        p->alpha = attr_f(nd, "alpha", 1.f);
        return 0;
    case OP_SELU:
        p->alpha = attr_f(nd, "alpha", 1.67326319217681884765625f);
        p->beta = attr_f(nd, "gamma", 1.05070102214813232421875f);
        return 0;
    case OP_HARDSIGMOID:
        p->alpha = attr_f(nd, "alpha", 0.2f);
        p->beta = attr_f(nd, "beta", 0.5f);
        return 0;
    case OP_CLIP:
        p->fmin = attr_f(nd, "min", -INFINITY);
        p->fmax = attr_f(nd, "max", INFINITY);
        return 0;
    case OP_GEMM:
        p->alpha = attr_f(nd, "alpha", 1.f);
        p->beta = attr_f(nd, "beta", 1.f);
        p->trans_a = (int)attr_i(nd, "transA", 0);
        p->trans_b = (int)attr_i(nd, "transB", 0);
        return 0;
    case OP_SOFTMAX:
    case OP_LOGSOFTMAX:
        p->axis = attr_i(nd, "axis", m->opset >= 13 ? -1 : 1);
        return 0;
    case OP_FLATTEN:
    case OP_CONCAT:
    case OP_GATHER:
        p->axis = attr_i(nd, "axis", nd->kind == OP_FLATTEN ? 1 : 0);
        if (nd->kind == OP_CONCAT && !attr_get(nd, "axis"))
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Concat): axis missing", nd->name);
        return 0;
    case OP_TRANSPOSE:
    case OP_UNSQUEEZE:
    case OP_SQUEEZE:
    case OP_REDUCEMEAN: {
        const char *an = nd->kind == OP_TRANSPOSE ? "perm" : "axes";
        p->n_ints = attr_ints(nd, an, p->ints, 2 * H2T_MAX_RANK);
        if (p->n_ints == -2)
            return unsup(nd, "too many axes", NULL);
        p->has_ints = p->n_ints >= 0;
        if (p->n_ints < 0)
            p->n_ints = 0;
        p->keepdims = (int)attr_i(nd, "keepdims", 1);
        if (nd->kind == OP_REDUCEMEAN && attr_i(nd, "noop_with_empty_axes", 0))
            return unsup(nd, "noop_with_empty_axes is not supported", NULL);
        return 0;
    }
    case OP_PAD: {
        const char *mode = attr_s(nd, "mode", "constant");
        if (!strcmp(mode, "constant"))
            p->mode = 0;
        else if (!strcmp(mode, "reflect"))
            p->mode = 1;
        else if (!strcmp(mode, "edge"))
            p->mode = 2;
        else
            return unsup(nd, "mode=", mode);
        p->value = attr_f(nd, "value", 0.f);
        if (m->opset < 11) {
            p->n_ints = attr_ints(nd, "pads", p->ints, 2 * H2T_MAX_RANK);
            if (p->n_ints < 0)
                p->n_ints = attr_ints(nd, "paddings", p->ints, 2 * H2T_MAX_RANK);
            if (p->n_ints < 0)
                return h2t_err_set(H2T_ECORRUPT, "node '%s' (Pad): pads missing", nd->name);
            p->has_ints = 1;
        } else if (nd->n_in < 2 || nd->in[1] < 0) {
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Pad): pads input missing", nd->name);
        }
        return 0;
    }
    case OP_DROPOUT:
        if (nd->n_out > 1)
            return unsup(nd, "the mask output is not supported", NULL);
        if (nd->n_in > 2 && nd->in[2] >= 0)
            return unsup(nd, "the training_mode input is not supported", NULL);
        return 0;
    case OP_SHAPE:
        p->ints[0] = attr_i(nd, "start", 0);
        p->ints[1] = attr_i(nd, "end", INT64_MAX);
        return 0;
    case OP_CAST:
        p->to = (int)attr_i(nd, "to", 0);
        if (p->to != ONNX_DT_F32 && p->to != ONNX_DT_I64) {
            char b[32];
            snprintf(b, sizeof b, "%d", p->to);
            return unsup(nd, "target type ", b);
        }
        return 0;
    case OP_RESHAPE:
        p->keepdims = (int)attr_i(nd, "allowzero", 0); /* keepdims reused: allowzero */
        if (m->opset < 5)
            return unsup(nd, "the opset < 5 attribute form is not supported", NULL);
        if (nd->n_in < 2 || nd->in[1] < 0)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Reshape): shape input missing", nd->name);
        return 0;
    case OP_SLICE:
        if (m->opset < 10)
            return unsup(nd, "the opset < 10 attribute form is not supported", NULL);
        if (nd->n_in < 3)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (Slice): starts/ends missing", nd->name);
        return 0;
    default:
        return rc;
    }
}

static int op_lookup(const char *name)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (OPS[i].name && !strcmp(OPS[i].name, name))
            return i;
    return -1;
}

static const char *dtype_name(int dt)
{
    if (dt == ONNX_DT_NONTENSOR)
        return "non-tensor (sequence, map or optional)";
    static const char *names[] = {"undefined",  "float32", "uint8",  "int8",   "uint16",
                                  "int16",      "int32",   "int64",  "string", "bool",
                                  "float16",    "double",  "uint32", "uint64", "complex64",
                                  "complex128", "bfloat16"};
    return dt >= 0 && dt < (int)(sizeof names / sizeof names[0]) ? names[dt] : "unknown";
}

int onnx_node_is_static(const h2t_model *m, const onnx_node *nd)
{
    return nd->n_out > 0 && m->values[nd->out[0]].dtype == ONNX_DT_I64;
}

int onnx_check(h2t_model *m)
{
    if (m->opset < 1 || m->opset > 18)
        return h2t_err_set(H2T_EUNSUPPORTED, "opset %d (supported: 1 to 18)", m->opset);
    for (int i = 0; i < m->n_nodes; i++) {
        onnx_node *nd = &m->nodes[i];
        nd->kind = op_lookup(nd->op);
        if (nd->kind < 0)
            return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s') is not supported", nd->op,
                               nd->name);
        const op_def *od = &OPS[nd->kind];
        if (nd->kind == OP_CONSTANT)
            continue;
        if (nd->n_in < od->min_in || nd->n_in > od->max_in || nd->n_out < 1 ||
            (nd->n_out > od->max_out && nd->kind != OP_MAXPOOL && nd->kind != OP_BN &&
             nd->kind != OP_DROPOUT))
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): %d inputs, %d outputs", nd->name,
                               nd->op, nd->n_in, nd->n_out);
        for (int k = 0; k < od->min_in; k++)
            if (nd->in[k] < 0)
                return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): input %d missing", nd->name,
                                   nd->op, k);
        /* pre-opset-7 forms whose meaning differs from today's */
        if (attr_get(nd, "consumed_inputs") || (attr_get(nd, "broadcast") && m->opset < 7))
            return unsup(nd, "legacy attribute (consumed_inputs / broadcast)", NULL);
        int rc = parse_params(m, nd);
        if (rc < 0)
            return rc;
        /* data types */
        int dt0 = m->values[nd->in[0]].dtype;
        for (int k = 0; k < nd->n_in; k++) {
            if (nd->in[k] < 0)
                continue;
            const onnx_value *v = &m->values[nd->in[k]];
            int want = is_param_input(nd->kind, k) ? ONNX_DT_I64
                       : od->cls == CLS_FLOAT      ? ONNX_DT_F32
                       : od->cls == CLS_POLY       ? dt0
                                                   : v->dtype;
            if (v->dtype != ONNX_DT_F32 && v->dtype != ONNX_DT_I64)
                return h2t_err_set(H2T_EUNSUPPORTED,
                                   "operator %s (node '%s'): input '%s' has data type %s "
                                   "(supported: float32, int64 shapes)",
                                   nd->op, nd->name, v->name, dtype_name(v->dtype));
            if (v->dtype != want)
                return h2t_err_set(H2T_EUNSUPPORTED,
                                   "operator %s (node '%s'): input '%s' is %s, expected %s", nd->op,
                                   nd->name, v->name, dtype_name(v->dtype), dtype_name(want));
        }
        int odt = od->cls == CLS_SHAPE  ? ONNX_DT_I64
                  : od->cls == CLS_CAST ? nd->p.to
                  : od->cls == CLS_POLY ? dt0
                                        : ONNX_DT_F32;
        if (nd->kind == OP_CAST && dt0 == ONNX_DT_F32 && odt == ONNX_DT_I64)
            return unsup(nd, "float to int64 casts are not supported", NULL);
        if (odt == ONNX_DT_I64 && nd->kind != OP_SHAPE && nd->kind != OP_CAST &&
            nd->kind != OP_ADD && nd->kind != OP_SUB && nd->kind != OP_MUL && nd->kind != OP_DIV &&
            nd->kind != OP_CONCAT && nd->kind != OP_GATHER && nd->kind != OP_UNSQUEEZE &&
            nd->kind != OP_SQUEEZE && nd->kind != OP_RESHAPE && nd->kind != OP_FLATTEN &&
            nd->kind != OP_IDENTITY && nd->kind != OP_SLICE && nd->kind != OP_TRANSPOSE)
            return unsup(nd, "int64 data is not supported", NULL);
        for (int k = 0; k < nd->n_out; k++)
            m->values[nd->out[k]].dtype = odt;
    }
    for (int i = 0; i < m->n_outputs; i++) {
        const onnx_value *v = &m->values[m->outputs[i]];
        if (v->dtype != ONNX_DT_F32 && v->dtype != ONNX_DT_I64)
            return h2t_err_set(H2T_EUNSUPPORTED, "graph output '%s' has data type %s", v->name,
                               dtype_name(v->dtype));
    }
    return 0;
}

/* ---------------------------------------------------------------- shape inference */

#define IN(k) (&vs[nd->in[k]])
#define OUT(k) (&vs[nd->out[k]])
#define HAS(k) ((k) < nd->n_in && nd->in[k] >= 0)

static int shape_err(const onnx_node *nd, const char *fmt, long long a, long long b)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, a, b);
    return h2t_err_set(H2T_ESHAPE, "node '%s' (%s): %s", nd->name, nd->op, msg);
}

static int norm_axis(int64_t axis, int rank, int64_t *out)
{
    if (axis < -rank || axis >= rank)
        return -1;
    *out = axis < 0 ? axis + rank : axis;
    return 0;
}

static void set_shape(onnx_vstate *o, int rank, const int64_t *dim)
{
    o->rank = rank;
    for (int i = 0; i < rank; i++)
        o->dim[i] = dim[i];
}

static int alloc_ival(onnx_vstate *o)
{
    free(o->ival);
    int64_t n = onnx_numel(o);
    o->ival = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    return o->ival ? 0 : h2t_err_set(H2T_ENOMEM, "int64 tensor of %lld elements", (long long)n);
}

/* int64 parameter input k as a list (any rank, flattened); -1 when absent. */
static int param_list(const onnx_node *nd, const onnx_vstate *vs, int k, const int64_t **out,
                      int64_t *n)
{
    if (!HAS(k))
        return -1;
    const onnx_vstate *v = IN(k);
    if (!v->ival)
        return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (%s): input %d is not known before run",
                           nd->name, nd->op, k);
    *out = v->ival;
    *n = onnx_numel(v);
    return 0;
}

static int bcast_shape(const onnx_node *nd, const onnx_vstate *a, const onnx_vstate *b,
                       onnx_vstate *o)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return shape_err(nd, "cannot broadcast %lld against %lld", (long long)da,
                             (long long)db);
        d[i] = da == 1 ? db : da;
    }
    set_shape(o, r, d);
    return 0;
}

/* Output size of a window op for one spatial dim; pads resolved into pb/pe. */
static int window_dim(const onnx_node *nd, int64_t in, int64_t k, int64_t s, int64_t dil,
                      int64_t *pb, int64_t *pe, int64_t *out)
{
    const onnx_params *p = &nd->p;
    int64_t ek = (k - 1) * dil + 1;
    if (p->auto_pad == 1 || p->auto_pad == 2) {
        int64_t o = (in + s - 1) / s;
        int64_t total = (o - 1) * s + ek - in;
        if (total < 0)
            total = 0;
        *pb = p->auto_pad == 1 ? total / 2 : total - total / 2;
        *pe = total - *pb;
        *out = o;
        return 0;
    }
    if (p->auto_pad == 3)
        *pb = *pe = 0;
    int64_t span = in + *pb + *pe - ek;
    if (span < 0)
        return shape_err(nd, "window %lld larger than the padded input %lld", (long long)ek,
                         (long long)(in + *pb + *pe));
    int64_t o = p->ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
    /* ceil mode: the last window must start inside the input or left padding */
    if (p->ceil_mode && (o - 1) * s >= in + *pb)
        o--;
    *out = o;
    return 0;
}

static int infer_window(const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_params *p = &nd->p;
    const onnx_vstate *x = IN(0);
    if (x->rank != 3 && x->rank != 4)
        return x->rank == 5 ? h2t_err_set(H2T_EUNSUPPORTED,
                                          "operator %s (node '%s'): 3-D windows are not supported",
                                          nd->op, nd->name)
                            : shape_err(nd, "input rank %lld (expected 3 or 4)", x->rank, 0);
    int sp = x->rank - 2;
    if (p->spatial && p->spatial != sp)
        return shape_err(nd, "kernel has %lld spatial dims, input %lld", p->spatial, sp);
    int64_t H = sp == 2 ? x->dim[2] : 1, W = x->dim[x->rank - 1];
    int64_t kh = p->kernel[0], kw = p->kernel[1], C = x->dim[1], M = C;
    if (nd->kind == OP_CONV) {
        const onnx_vstate *w = IN(1);
        if (w->rank != x->rank)
            return shape_err(nd, "weight rank %lld vs input rank %lld", w->rank, x->rank);
        M = w->dim[0];
        if (w->dim[1] * p->group != C || M % p->group)
            return shape_err(nd, "weights for %lld input channels, input has %lld",
                             (long long)(w->dim[1] * p->group), (long long)C);
        kh = sp == 2 ? w->dim[2] : 1;
        kw = w->dim[w->rank - 1];
        if (p->spatial && (kh != p->kernel[0] || kw != p->kernel[1]))
            return shape_err(nd, "kernel_shape disagrees with the weights (%lld x %lld)", kh, kw);
        if (HAS(2) && (IN(2)->rank != 1 || IN(2)->dim[0] != M))
            return shape_err(nd, "bias of %lld for %lld output channels",
                             IN(2)->rank == 1 ? IN(2)->dim[0] : -1, M);
    }
    int64_t pads[4];
    memcpy(pads, p->pads, sizeof pads);
    int64_t oh, ow;
    int rc = window_dim(nd, H, kh, p->strides[0], p->dil[0], &pads[0], &pads[2], &oh);
    if (rc == 0)
        rc = window_dim(nd, W, kw, p->strides[1], p->dil[1], &pads[1], &pads[3], &ow);
    if (rc < 0)
        return rc;
    if (sp == 1 && (pads[0] || pads[2]))
        pads[0] = pads[2] = 0;
    int64_t d[4] = {x->dim[0], M, oh, ow};
    if (sp == 1)
        d[2] = ow;
    set_shape(OUT(0), x->rank, d);
    /* resolved: pads t,l,b,r; kernel h,w */
    ns->a[0] = pads[0], ns->a[1] = pads[1], ns->a[2] = pads[2], ns->a[3] = pads[3];
    ns->a[4] = kh, ns->a[5] = kw;
    return 0;
}

static int infer_pad(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = IN(0);
    int r = x->rank;
    const int64_t *pads = nd->p.ints;
    int64_t np = nd->p.n_ints;
    if (m->opset >= 11) {
        int rc = param_list(nd, vs, 1, &pads, &np);
        if (rc < 0)
            return rc;
        if (HAS(2) && onnx_numel(IN(2)) != 1)
            return shape_err(nd, "constant_value has %lld elements", onnx_numel(IN(2)), 0);
    }
    if (np != 2 * r)
        return shape_err(nd, "%lld pads for rank %lld", np, r);
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < r; i++) {
        ns->a[i] = pads[i];
        ns->b[i] = pads[i + r];
        d[i] = x->dim[i] + pads[i] + pads[i + r];
        if (d[i] < 0 || (nd->p.mode == 1 && (pads[i] >= x->dim[i] || pads[i + r] >= x->dim[i]) &&
                         (pads[i] || pads[i + r])))
            return shape_err(nd, "pad %lld on a dimension of %lld", pads[i], x->dim[i]);
        if (nd->p.mode && (pads[i] < 0 || pads[i + r] < 0))
            return h2t_err_set(H2T_EUNSUPPORTED, "operator Pad (node '%s'): negative pads",
                               nd->name);
        if (nd->p.mode == 2 && x->dim[i] == 0 && (pads[i] || pads[i + r]))
            return shape_err(nd, "edge pad of an empty dimension %lld", i, 0);
    }
    set_shape(OUT(0), r, d);
    return 0;
}

static int infer_reshape(const onnx_node *nd, onnx_vstate *vs)
{
    const onnx_vstate *x = IN(0);
    const int64_t *s;
    int64_t n;
    int rc = param_list(nd, vs, 1, &s, &n);
    if (rc < 0)
        return rc;
    if (n > H2T_MAX_RANK)
        return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (Reshape): rank %lld", nd->name,
                           (long long)n);
    int64_t d[H2T_MAX_RANK], known = 1, total = onnx_numel(x);
    int neg = -1;
    for (int i = 0; i < n; i++) {
        d[i] = s[i];
        if (s[i] == 0 && !nd->p.keepdims) {
            if (i >= x->rank)
                return shape_err(nd, "0 at position %lld beyond input rank %lld", i, x->rank);
            d[i] = x->dim[i];
        }
        if (d[i] == -1) {
            if (neg >= 0)
                return shape_err(nd, "two -1 in the target shape", 0, 0);
            neg = i;
        } else if (d[i] < 0) {
            return shape_err(nd, "bad target dimension %lld", d[i], 0);
        } else {
            known *= d[i];
        }
    }
    if (neg >= 0) {
        if (known == 0 || total % known)
            return shape_err(nd, "cannot reshape %lld elements with known product %lld", total,
                             known);
        d[neg] = total / known;
    } else if (known != total) {
        return shape_err(nd, "cannot reshape %lld elements into %lld", total, known);
    }
    set_shape(OUT(0), (int)n, d);
    return 0;
}

static int infer_squeeze(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, int unsq)
{
    const onnx_vstate *x = IN(0);
    const int64_t *axes = nd->p.ints;
    int64_t na = nd->p.has_ints ? nd->p.n_ints : -1;
    if (m->opset >= 13 && HAS(1)) {
        int rc = param_list(nd, vs, 1, &axes, &na);
        if (rc < 0)
            return rc;
    } else if (m->opset >= 13) {
        na = -1;
    }
    int64_t d[H2T_MAX_RANK];
    int r = 0;
    if (unsq) {
        if (na < 0)
            return shape_err(nd, "axes missing", 0, 0);
        int orank = x->rank + (int)na;
        if (orank > H2T_MAX_RANK)
            return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (Unsqueeze): rank %d", nd->name, orank);
        int mark[H2T_MAX_RANK] = {0};
        for (int i = 0; i < na; i++) {
            int64_t a;
            if (norm_axis(axes[i], orank, &a) < 0 || mark[a])
                return shape_err(nd, "bad axis %lld", axes[i], 0);
            mark[a] = 1;
        }
        for (int i = 0, j = 0; i < orank; i++)
            d[i] = mark[i] ? 1 : x->dim[j++];
        r = orank;
    } else {
        int mark[H2T_MAX_RANK] = {0};
        for (int i = 0; i < na; i++) {
            int64_t a;
            if (norm_axis(axes[i], x->rank, &a) < 0 || x->dim[a] != 1)
                return shape_err(nd, "cannot squeeze axis %lld", axes[i], 0);
            mark[a] = 1;
        }
        for (int i = 0; i < x->rank; i++)
            if (!(na < 0 ? x->dim[i] == 1 : mark[i]))
                d[r++] = x->dim[i];
    }
    set_shape(OUT(0), r, d);
    return 0;
}

static int infer_slice(const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_vstate *x = IN(0);
    const int64_t *st, *en, *ax = NULL, *sp = NULL;
    int64_t nst, nen, nax = -1, nsp = -1;
    int rc = param_list(nd, vs, 1, &st, &nst);
    if (rc == 0)
        rc = param_list(nd, vs, 2, &en, &nen);
    if (rc < 0)
        return rc;
    if (HAS(3) && (rc = param_list(nd, vs, 3, &ax, &nax)) < 0)
        return rc;
    if (HAS(4) && (rc = param_list(nd, vs, 4, &sp, &nsp)) < 0)
        return rc;
    if (nst != nen || (ax && nax != nst) || (sp && nsp != nst) || nst > x->rank)
        return shape_err(nd, "starts/ends/axes/steps lengths disagree (%lld, %lld)", nst, nen);
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        ns->a[i] = 0;
        ns->b[i] = 1;
        d[i] = x->dim[i];
    }
    int seen[H2T_MAX_RANK] = {0};
    for (int i = 0; i < nst; i++) {
        int64_t a = ax ? ax[i] : i, step = sp ? sp[i] : 1;
        if (norm_axis(a, x->rank, &a) < 0 || seen[a])
            return shape_err(nd, "bad axis %lld", ax ? ax[i] : i, 0);
        seen[a] = 1;
        if (step == 0)
            return shape_err(nd, "step 0 on axis %lld", a, 0);
        int64_t D = x->dim[a], s = st[i], e = en[i];
        if (s < 0)
            s += D;
        if (e < 0)
            e += D;
        int64_t cnt;
        if (step > 0) {
            s = s < 0 ? 0 : s > D ? D : s;
            e = e < 0 ? 0 : e > D ? D : e;
            cnt = e > s ? (e - s + step - 1) / step : 0;
        } else {
            s = s < 0 ? -1 : s > D - 1 ? D - 1 : s;
            e = e < -1 ? -1 : e > D - 1 ? D - 1 : e;
            cnt = s > e ? (s - e + (-step) - 1) / (-step) : 0;
        }
        ns->a[a] = s;
        ns->b[a] = step;
        d[a] = cnt;
    }
    set_shape(OUT(0), x->rank, d);
    return 0;
}

static int infer_matmul(const onnx_node *nd, onnx_vstate *vs)
{
    onnx_vstate a = *IN(0), b = *IN(1);
    if (a.rank < 1 || b.rank < 1)
        return shape_err(nd, "scalar operand", 0, 0);
    int a1 = a.rank == 1, b1 = b.rank == 1;
    if (a1) {
        a.rank = 2, a.dim[1] = a.dim[0], a.dim[0] = 1;
    }
    if (b1) {
        b.rank = 2, b.dim[1] = 1;
    }
    if (a.dim[a.rank - 1] != b.dim[b.rank - 2])
        return shape_err(nd, "inner dimensions %lld and %lld", a.dim[a.rank - 1],
                         b.dim[b.rank - 2]);
    onnx_vstate ba = a, bb = b, o;
    ba.rank -= 2;
    bb.rank -= 2;
    int rc = bcast_shape(nd, &ba, &bb, &o);
    if (rc < 0)
        return rc;
    int r = o.rank;
    if (!a1)
        o.dim[r++] = a.dim[a.rank - 2];
    if (!b1)
        o.dim[r++] = b.dim[b.rank - 1];
    if (r > H2T_MAX_RANK)
        return shape_err(nd, "rank %lld", r, 0);
    set_shape(OUT(0), r, o.dim);
    return 0;
}

/* Evaluate an int64 node (every input known). */
static int eval_static(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    onnx_vstate *o = OUT(0);
    int rc = alloc_ival(o);
    if (rc < 0)
        return rc;
    int64_t n = onnx_numel(o);
    switch (nd->kind) {
    case OP_SHAPE:
        for (int64_t i = 0; i < n; i++)
            o->ival[i] = IN(0)->dim[ns->a[0] + i];
        return 0;
    case OP_CAST:
    case OP_RESHAPE:
    case OP_FLATTEN:
    case OP_IDENTITY:
    case OP_SQUEEZE:
    case OP_UNSQUEEZE:
        if (n)
            memcpy(o->ival, IN(0)->ival, (size_t)n * 8);
        return 0;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
        for (int64_t i = 0; nd->kind == OP_DIV && i < onnx_numel(IN(1)); i++)
            if (IN(1)->ival[i] == 0)
                return shape_err(nd, "int64 division by zero", 0, 0);
        onnx_k_binary_i64(nd->kind, IN(0), IN(1), o, IN(0)->ival, IN(1)->ival, o->ival);
        return 0;
    case OP_CONCAT: {
        int64_t axis = ns->a[0], outer = 1, inner = 1, off = 0;
        for (int i = 0; i < axis; i++)
            outer *= o->dim[i];
        for (int i = (int)axis + 1; i < o->rank; i++)
            inner *= o->dim[i];
        for (int k = 0; k < nd->n_in; k++) {
            const onnx_vstate *x = IN(k);
            int64_t blk = x->dim[axis] * inner;
            for (int64_t j = 0; j < outer; j++)
                memcpy(o->ival + j * o->dim[axis] * inner + off, x->ival + j * blk,
                       (size_t)blk * 8);
            off += blk;
        }
        return 0;
    }
    case OP_GATHER:
        onnx_k_gather(IN(0)->ival, ns->a[0], ns->a[1], ns->a[2], IN(1)->ival, onnx_numel(IN(1)),
                      o->ival, 8);
        return 0;
    case OP_SLICE:
        onnx_k_slice(IN(0)->ival, IN(0), ns->a, ns->b, o, o->ival, 8);
        return 0;
    case OP_TRANSPOSE:
        onnx_k_transpose(IN(0)->ival, IN(0)->dim, IN(0)->rank, ns->a, o->ival, 8);
        return 0;
    default:
        return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s'): int64 data", nd->op,
                           nd->name);
    }
}

static int infer_node(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_params *p = &nd->p;
    const onnx_vstate *x = IN(0);
    onnx_vstate *o = OUT(0);
    int rc = 0;
    if (x->rank < 0)
        return shape_err(nd, "input shape unknown", 0, 0);
    switch (nd->kind) {
    case OP_CONV:
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        return infer_window(nd, vs, ns);
    case OP_BN:
        if (x->rank < 2)
            return shape_err(nd, "input rank %lld", x->rank, 0);
        for (int k = 1; k < 5; k++)
            if (onnx_numel(IN(k)) != x->dim[1])
                return shape_err(nd, "parameter of %lld for %lld channels", onnx_numel(IN(k)),
                                 x->dim[1]);
        set_shape(o, x->rank, x->dim);
        return 0;
    case OP_CLIP:
        for (int k = 1; k < 3; k++)
            if (HAS(k) && onnx_numel(IN(k)) != 1)
                return shape_err(nd, "min/max of %lld elements", onnx_numel(IN(k)), 0);
        set_shape(o, x->rank, x->dim);
        return 0;
    case OP_RELU:
    case OP_LEAKYRELU:
    case OP_HARDSIGMOID:
    case OP_HARDSWISH:
    case OP_SIGMOID:
    case OP_TANH:
    case OP_ABS:
    case OP_NEG:
    case OP_EXP:
    case OP_LOG:
    case OP_SQRT:
    case OP_RECIPROCAL:
    case OP_FLOOR:
    case OP_CEIL:
    case OP_ERF:
    case OP_ELU:
    case OP_SELU:
    case OP_SOFTPLUS:
    case OP_SOFTSIGN:
    case OP_IDENTITY:
    case OP_DROPOUT:
    case OP_CAST:
        set_shape(o, x->rank, x->dim);
        break;
    case OP_SOFTMAX:
    case OP_LOGSOFTMAX:
        if (norm_axis(p->axis, x->rank, &ns->a[0]) < 0)
            return shape_err(nd, "axis %lld for rank %lld", p->axis, x->rank);
        set_shape(o, x->rank, x->dim);
        return 0;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_POW:
        rc = bcast_shape(nd, x, IN(1), o);
        break;
    case OP_PRELU: {
        rc = bcast_shape(nd, x, IN(1), o);
        if (rc == 0 && (o->rank != x->rank || onnx_numel(o) != onnx_numel(x)))
            return shape_err(nd, "slope does not broadcast to the input", 0, 0);
        break;
    }
    case OP_GAP:
    case OP_GMP: {
        if (x->rank < 3)
            return shape_err(nd, "input rank %lld", x->rank, 0);
        int64_t d[H2T_MAX_RANK];
        for (int i = 0; i < x->rank; i++)
            d[i] = i < 2 ? x->dim[i] : 1;
        set_shape(o, x->rank, d);
        return 0;
    }
    case OP_PAD:
        return infer_pad(m, nd, vs, ns);
    case OP_CONCAT: {
        int64_t axis;
        if (norm_axis(p->axis, x->rank, &axis) < 0)
            return shape_err(nd, "axis %lld for rank %lld", p->axis, x->rank);
        int64_t d[H2T_MAX_RANK];
        set_shape(o, x->rank, x->dim);
        memcpy(d, x->dim, sizeof d);
        for (int k = 1; k < nd->n_in; k++) {
            const onnx_vstate *y = IN(k);
            if (!HAS(k) || y->rank != x->rank)
                return shape_err(nd, "input %lld has rank %lld", k, y->rank);
            for (int i = 0; i < x->rank; i++)
                if (i != axis && y->dim[i] != x->dim[i])
                    return shape_err(nd, "input %lld differs on axis %lld", k, i);
            d[axis] += y->dim[axis];
        }
        set_shape(o, x->rank, d);
        ns->a[0] = axis;
        break;
    }
    case OP_FLATTEN: {
        int64_t axis = p->axis < 0 ? p->axis + x->rank : p->axis;
        if (axis < 0 || axis > x->rank)
            return shape_err(nd, "axis %lld for rank %lld", p->axis, x->rank);
        int64_t d[2] = {1, 1};
        for (int i = 0; i < x->rank; i++)
            d[i >= axis] *= x->dim[i];
        set_shape(o, 2, d);
        break;
    }
    case OP_RESHAPE:
        rc = infer_reshape(nd, vs);
        break;
    case OP_GEMM: {
        const onnx_vstate *b = IN(1);
        if (x->rank != 2 || b->rank != 2)
            return shape_err(nd, "ranks %lld and %lld (expected 2)", x->rank, b->rank);
        int64_t M = p->trans_a ? x->dim[1] : x->dim[0], K = p->trans_a ? x->dim[0] : x->dim[1];
        int64_t K2 = p->trans_b ? b->dim[1] : b->dim[0], N = p->trans_b ? b->dim[0] : b->dim[1];
        if (K != K2)
            return shape_err(nd, "inner dimensions %lld and %lld", K, K2);
        int64_t d[2] = {M, N};
        set_shape(o, 2, d);
        if (HAS(2)) {
            onnx_vstate t;
            if (bcast_shape(nd, o, IN(2), &t) < 0 || t.rank != 2 || t.dim[0] != M || t.dim[1] != N)
                return shape_err(nd, "C does not broadcast to %lld x %lld", M, N);
        }
        return 0;
    }
    case OP_MATMUL:
        return infer_matmul(nd, vs);
    case OP_TRANSPOSE: {
        int64_t d[H2T_MAX_RANK];
        int mark[H2T_MAX_RANK] = {0};
        if (p->has_ints && p->n_ints != x->rank)
            return shape_err(nd, "perm of %lld for rank %lld", p->n_ints, x->rank);
        for (int i = 0; i < x->rank; i++) {
            int64_t a = p->has_ints ? p->ints[i] : x->rank - 1 - i;
            if (a < 0 || a >= x->rank || mark[a])
                return shape_err(nd, "bad perm entry %lld", a, 0);
            mark[a] = 1;
            ns->a[i] = a;
            d[i] = x->dim[a];
        }
        set_shape(o, x->rank, d);
        break;
    }
    case OP_SHAPE: {
        int64_t s = p->ints[0], e = p->ints[1], r = x->rank;
        s = s < 0 ? s + r : s;
        e = e < 0 ? e + r : e;
        s = s < 0 ? 0 : s > r ? r : s;
        e = e < 0 ? 0 : e > r ? r : e;
        int64_t d[1] = {e > s ? e - s : 0};
        ns->a[0] = s;
        set_shape(o, 1, d);
        break;
    }
    case OP_GATHER: {
        int64_t axis;
        const onnx_vstate *ix = IN(1);
        if (norm_axis(p->axis, x->rank, &axis) < 0)
            return shape_err(nd, "axis %lld for rank %lld", p->axis, x->rank);
        if (!ix->ival)
            return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (Gather): indices not known before run",
                               nd->name);
        int64_t nidx = onnx_numel(ix);
        int orank = x->rank - 1 + ix->rank;
        if (orank > H2T_MAX_RANK)
            return shape_err(nd, "output rank %lld", orank, 0);
        int64_t d[H2T_MAX_RANK], outer = 1, inner = 1;
        int r = 0;
        for (int i = 0; i < axis; i++)
            d[r++] = x->dim[i], outer *= x->dim[i];
        for (int i = 0; i < ix->rank; i++)
            d[r++] = ix->dim[i];
        for (int i = (int)axis + 1; i < x->rank; i++)
            d[r++] = x->dim[i], inner *= x->dim[i];
        for (int64_t i = 0; i < nidx; i++)
            if (ix->ival[i] < -x->dim[axis] || ix->ival[i] >= x->dim[axis])
                return shape_err(nd, "index %lld out of range for %lld", ix->ival[i], x->dim[axis]);
        set_shape(o, orank, d);
        ns->a[0] = outer, ns->a[1] = x->dim[axis], ns->a[2] = inner;
        break;
    }
    case OP_UNSQUEEZE:
    case OP_SQUEEZE:
        rc = infer_squeeze(m, nd, vs, nd->kind == OP_UNSQUEEZE);
        break;
    case OP_REDUCEMEAN: {
        int mark[H2T_MAX_RANK] = {0};
        for (int i = 0; i < p->n_ints; i++) {
            int64_t a;
            if (norm_axis(p->ints[i], x->rank, &a) < 0)
                return shape_err(nd, "axis %lld for rank %lld", p->ints[i], x->rank);
            mark[a] = 1;
        }
        int64_t d[H2T_MAX_RANK];
        int r = 0;
        for (int i = 0; i < x->rank; i++) {
            int red = !p->has_ints || p->n_ints == 0 || mark[i];
            ns->a[i] = red;
            if (!red)
                d[r++] = x->dim[i];
            else if (p->keepdims)
                d[r++] = 1;
        }
        set_shape(o, r, d);
        return 0;
    }
    case OP_SLICE:
        rc = infer_slice(nd, vs, ns);
        break;
    default:
        return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s')", nd->op, nd->name);
    }
    if (rc < 0)
        return rc;
    if (onnx_node_is_static(m, nd)) {
        for (int k = 0; k < nd->n_in; k++)
            if (HAS(k) && !IN(k)->ival && nd->kind != OP_SHAPE)
                return h2t_err_set(H2T_EUNSUPPORTED,
                                   "operator %s (node '%s'): int64 input '%s' is not known before "
                                   "run",
                                   nd->op, nd->name, m->values[nd->in[k]].name);
        return eval_static(nd, vs, ns);
    }
    return 0;
}

void onnx_state_clear(const h2t_model *m, onnx_vstate *vs)
{
    for (int i = 0; i < m->n_values; i++) {
        free(vs[i].ival);
        vs[i].ival = NULL;
    }
}

int onnx_infer(const h2t_model *m, onnx_vstate *vs, onnx_nstate *ns)
{
    for (int i = 0; i < m->n_values; i++) {
        const onnx_value *v = &m->values[i];
        if (v->kind == ONNX_VAL_INPUT)
            continue;
        free(vs[i].ival);
        vs[i].ival = NULL;
        vs[i].rank = -1;
        if (v->kind == ONNX_VAL_CONST) {
            set_shape(&vs[i], v->rank, v->shape);
            if (v->dtype == ONNX_DT_F32) {
                vs[i].f = v->cdata;
            } else if (v->dtype == ONNX_DT_I64) {
                int rc = alloc_ival(&vs[i]);
                if (rc < 0)
                    return rc;
                if (v->count)
                    memcpy(vs[i].ival, v->cdata, (size_t)v->count * 8);
            }
        }
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (nd->kind == OP_CONSTANT)
            continue;
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && vs[nd->in[k]].rank < 0)
                return h2t_err_set(H2T_ESHAPE, "node '%s' (%s): shape of input '%s' unknown",
                                   nd->name, nd->op, m->values[nd->in[k]].name);
        int rc = infer_node(m, nd, vs, &ns[i]);
        if (rc < 0)
            return rc;
        for (int k = 1; k < nd->n_out; k++)
            vs[nd->out[k]].rank = -1;
    }
    return 0;
}
