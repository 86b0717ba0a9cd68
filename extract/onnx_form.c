/*
 * extract/onnx_form.c - which axes of each node output are the batch, the tokens or the space,
 * and the channels (h2t_model_tensor_forms, extract/model.h), decided from the graph alone.
 *
 * The batch axis comes from shape inference at two batch sizes (h2t_tensor_info.batch_axis).
 * The channel axis is followed through the graph, value by value in topological order:
 *  - the model input and the outputs of Conv, pooling and normalisation ops of the NCHW
 *    convention (BatchNormalization, InstanceNormalization, GroupNormalization, MaxPool, ...)
 *    have their channels on axis 1;
 *  - a MatMul by a constant matrix (a Linear layer applied per position), a
 *    LayerNormalization over the last axis, and an element-wise op with a constant vector of
 *    the last axis' size (the scale and shift of a decomposed LayerNorm, a Linear's bias) put
 *    them on the last axis;
 *  - Transpose moves the channel axis with its permutation; Reshape, Flatten, Squeeze and
 *    Unsqueeze keep it when the channel dim is kept in place (first after the batch, or last);
 *  - any other op whose output has its input's rank keeps the axis of its non-constant inputs
 *    (unknown when they disagree).
 * A 4-D tensor is NHWC only with that evidence; without it, it is NCHW (every convolutional
 * map). A 3-D tensor is N x C x L only with evidence of channels on axis 1; otherwise its
 * channels are last (tokens). Attention weights are the output of a Softmax over the last axis
 * of a 4-D tensor whose channels are not known to be last (N x heads x Lq x Lk).
 *
 * Class tokens: a Concat along the token axis whose first input is a learned constant of one
 * token (a constant, or a constant Expand-ed / Tile-d / reshaped to the batch) starts a token
 * sequence whose token 0 is a class token; every tensor computed from it (downstream in the
 * graph) with the same token count carries it at token 0.
 */
#include "common/err.h"
#include "extract/onnx_graph.h"

#include <stdlib.h>
#include <string.h>

#define CAX_UNKNOWN -1

static int op_in(const char *op, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(op, *list))
            return 1;
    return 0;
}

static const char *const chw_ops[] = {
    "Conv",
    "ConvTranspose",
    "BatchNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
    "DepthToSpace",
    "SpaceToDepth",
    "LRN",
    "MaxUnpool",
    NULL,
};

static const char *const view_ops[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", NULL};

static const onnx_attr *attr_of(const onnx_node *nd, const char *name)
{
    for (int a = 0; a < nd->n_attr; a++)
        if (!strcmp(nd->attr[a].name, name))
            return &nd->attr[a];
    return NULL;
}

static int64_t attr_int(const onnx_node *nd, const char *name, int64_t dflt)
{
    const onnx_attr *a = attr_of(nd, name);
    return a && a->type == ONNX_AT_I ? a->i : dflt;
}

/* rank and dims of value v (inferred for node outputs and inputs, declared for constants) */
static int value_rank(const h2t_model *m, int v, const int64_t **dims)
{
    int t = v >= 0 && v < m->n_values ? m->value_info[v] : -1;
    if (t >= 0) {
        *dims = m->info[t].shape;
        return m->info[t].rank;
    }
    if (v < 0 || v >= m->n_values)
        return -1;
    *dims = m->values[v].shape;
    return m->values[v].rank;
}

static int is_const(const h2t_model *m, int v)
{
    return v >= 0 && v < m->n_values && m->values[v].kind == ONNX_VAL_CONST;
}

/* Whether value v's data comes from constants only, through ops that copy or broadcast it
 * (the learned class token expanded to the batch). */
static int const_data(const h2t_model *m, int v, int depth)
{
    static const char *const copy_ops[] = {"Expand",   "Tile", "Reshape",   "Unsqueeze", "Squeeze",
                                           "Identity", "Cast", "Transpose", NULL};
    if (v < 0 || v >= m->n_values || depth > 16)
        return 0;
    if (m->values[v].kind == ONNX_VAL_CONST)
        return 1;
    if (m->values[v].kind != ONNX_VAL_NODE || m->values[v].producer < 0)
        return 0;
    const onnx_node *nd = &m->nodes[m->values[v].producer];
    return nd->n_in >= 1 && op_in(nd->op, copy_ops) && const_data(m, nd->in[0], depth + 1);
}

/* The channel axis of node nd's output 0, from its inputs' (cax, per value). */
static int node_cax(const h2t_model *m, const onnx_node *nd, const int *cax)
{
    const int64_t *od;
    int orank = value_rank(m, nd->out[0], &od);
    if (orank < 1)
        return CAX_UNKNOWN;
    int x = nd->n_in > 0 ? nd->in[0] : -1;
    const int64_t *xd = NULL;
    int xrank = x >= 0 ? value_rank(m, x, &xd) : -1;
    int xc = x >= 0 ? cax[x] : CAX_UNKNOWN;
    if (op_in(nd->op, chw_ops))
        return orank >= 3 ? 1 : CAX_UNKNOWN;
    if (!strcmp(nd->op, "Transpose")) {
        if (xc < 0 || xrank != orank)
            return CAX_UNKNOWN;
        const onnx_attr *p = attr_of(nd, "perm");
        for (int k = 0; k < orank; k++) {
            int64_t from = p && p->type == ONNX_AT_IS && p->n == orank ? p->ints[k] : orank - 1 - k;
            if (from == xc)
                return k;
        }
        return CAX_UNKNOWN;
    }
    if (!strcmp(nd->op, "LayerNormalization")) {
        int64_t a = attr_int(nd, "axis", -1);
        if (a < 0)
            a += orank;
        return a == orank - 1 ? orank - 1 : xc;
    }
    if (!strcmp(nd->op, "MatMul")) {
        const int64_t *wd;
        int wr = nd->n_in > 1 ? value_rank(m, nd->in[1], &wd) : -1;
        return nd->n_in > 1 && is_const(m, nd->in[1]) && wr == 2 ? orank - 1 : CAX_UNKNOWN;
    }
    if (op_in(nd->op, view_ops)) {
        if (xc < 0 || xrank < 2 || orank < 2)
            return CAX_UNKNOWN;
        if (xc == xrank - 1 && od[orank - 1] == xd[xrank - 1] && od[orank - 1] > 1)
            return orank - 1;
        if (xc == 1 && od[1] == xd[1] && od[1] > 1)
            return 1;
        return CAX_UNKNOWN;
    }
    /* everything else of the input's rank: the non-constant inputs' axis; a constant vector
     * of the last axis' size broadcast along it (a bias, a LayerNorm's scale) marks the last */
    int c = CAX_UNKNOWN, conflict = 0;
    for (int k = 0; k < nd->n_in; k++) {
        int v = nd->in[k];
        if (v < 0)
            continue;
        const int64_t *vd;
        int vr = value_rank(m, v, &vd);
        if (is_const(m, v)) {
            if (vr == 1 && vd[0] > 1 && vd[0] == od[orank - 1] && orank >= 3 &&
                (c == CAX_UNKNOWN || c == orank - 1))
                c = orank - 1;
            continue;
        }
        if (vr != orank || cax[v] < 0)
            continue;
        if (c != CAX_UNKNOWN && c != cax[v])
            conflict = 1;
        c = cax[v];
    }
    return conflict ? CAX_UNKNOWN : c;
}

/* Whether node nd's output 0 holds attention heads apart: a Reshape that splits the channel
 * (last) axis of its input into trailing axes (C -> heads x d, or 3 x heads x d), and what is
 * computed from such a tensor until a Reshape merges the trailing axes back. */
static int node_split(const h2t_model *m, const onnx_node *nd, const int *cax, const uint8_t *split)
{
    const int64_t *od, *xd;
    int orank = value_rank(m, nd->out[0], &od);
    int x = nd->n_in > 0 ? nd->in[0] : -1;
    int xrank = x >= 0 ? value_rank(m, x, &xd) : -1;
    if (orank < 1)
        return 0;
    if (!strcmp(nd->op, "Reshape") && xrank >= 3 && orank > xrank && !split[x] &&
        cax[x] == xrank - 1) {
        for (int k = 0; k < xrank - 1; k++)
            if (od[k] != xd[k])
                return 0;
        int64_t prod = 1;
        for (int k = xrank - 1; k < orank; k++)
            prod *= od[k];
        return prod == xd[xrank - 1] && od[xrank - 1] > 1;
    }
    if (!strcmp(nd->op, "Reshape") || !strcmp(nd->op, "Flatten"))
        return x >= 0 && split[x] && orank >= xrank; /* a merge ends the split */
    for (int k = 0; k < nd->n_in; k++) {
        int v = nd->in[k];
        if (v >= 0 && split[v] && !is_const(m, v))
            return 1;
    }
    return 0;
}

/* Softmax over the last axis of its input of the given rank. */
static int softmax_last(const h2t_model *m, const onnx_node *nd, int rank)
{
    if (strcmp(nd->op, "Softmax"))
        return 0;
    int64_t a = attr_int(nd, "axis", m->opset >= 13 ? -1 : 1);
    return a == -1 || a == rank - 1;
}

/* The axis of node nd's output 0 into which the batch is folded as its outermost factor (an
 * N*heads axis: sample s's values are a contiguous run of that axis), or -1. It starts at a
 * Reshape that keeps every axis before the input's batch axis and folds the batch axis with
 * the ones after it; Transpose moves it; element-wise ops, Softmax across another axis and
 * MatMul with it among the batch axes keep it. */
static int node_outer(const h2t_model *m, const onnx_node *nd, const int *outer)
{
    static const char *const keep_ops[] = {
        "Add",  "Sub", "Mul", "Div",   "Pow",  "Erf",     "Relu",     "Sigmoid", "Tanh",   "Exp",
        "Sqrt", "Neg", "Abs", "Where", "Cast", "Dropout", "Identity", "Softmax", "MatMul", NULL,
    };
    int yt = m->value_info[nd->out[0]];
    if (yt < 0)
        return -1;
    const h2t_tensor_info *yi = &m->info[yt];
    if (yi->batch_axis != H2T_BATCH_FOLDED || yi->batch_fold <= 0)
        return -1;
    int k = -1;
    for (int a = 0; a < yi->rank; a++)
        if (yi->shape[a] < 0)
            k = a;
    int x = nd->n_in > 0 ? nd->in[0] : -1;
    int xt = x >= 0 ? m->value_info[x] : -1;
    if (k < 0 || xt < 0)
        return -1;
    const h2t_tensor_info *xi = &m->info[xt];
    if (!strcmp(nd->op, "Reshape")) {
        if (xi->batch_axis != k)
            return -1;
        for (int a = 0; a < k; a++)
            if (yi->shape[a] != xi->shape[a])
                return -1;
        return k;
    }
    if (!strcmp(nd->op, "Transpose")) {
        const onnx_attr *p = attr_of(nd, "perm");
        if (outer[x] < 0 || xi->rank != yi->rank)
            return -1;
        int64_t from =
            p && p->type == ONNX_AT_IS && p->n == yi->rank ? p->ints[k] : yi->rank - 1 - k;
        return from == outer[x] ? k : -1;
    }
    if (!op_in(nd->op, keep_ops))
        return -1;
    if (!strcmp(nd->op, "Softmax")) {
        int64_t a = attr_int(nd, "axis", m->opset >= 13 ? -1 : 1);
        if (m->opset < 13 || (a < 0 ? a + yi->rank : a) == k)
            return -1;
    }
    if (!strcmp(nd->op, "MatMul") && k >= yi->rank - 2 &&
        !(k == yi->rank - 2 && is_const(m, nd->in[1])))
        return -1;
    int seen = 0;
    for (int i = 0; i < nd->n_in; i++) {
        int v = nd->in[i];
        if (v < 0 || is_const(m, v))
            continue;
        const int64_t *vd;
        if (value_rank(m, v, &vd) != yi->rank || outer[v] != k)
            return -1;
        seen = 1;
    }
    return seen ? k : -1;
}

const char *h2t_form_name(int form)
{
    switch (form) {
    case H2T_FORM_FLAT:
        return "flat";
    case H2T_FORM_NLC:
        return "tokens";
    case H2T_FORM_LNC:
        return "tokens-seq-first";
    case H2T_FORM_NCL:
        return "channels-first-1d";
    case H2T_FORM_NCHW:
        return "map";
    case H2T_FORM_NHWC:
        return "map-channels-last";
    case H2T_FORM_ATTN:
        return "attention";
    case H2T_FORM_HEADS:
        return "heads";
    default:
        return "none";
    }
}

int h2t_model_tensor_forms(const h2t_model *m, h2t_tensor_form *out)
{
    int nv = m->n_values;
    int *cax = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    uint8_t *split = calloc((size_t)(nv ? nv : 1), 1);
    int *outer = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    int64_t *cls_len = calloc((size_t)(nv ? nv : 1), sizeof(int64_t)); /* 0 none, -1 mixed */
    if (!cax || !cls_len || !split || !outer) {
        free(cax);
        free(split);
        free(outer);
        free(cls_len);
        return h2t_err_set(H2T_ENOMEM, "tensor forms of %d values", nv);
    }
    for (int v = 0; v < nv; v++)
        cax[v] = outer[v] = CAX_UNKNOWN;
    for (int k = 0; k < m->n_inputs; k++) {
        const int64_t *d;
        if (value_rank(m, m->inputs[k], &d) == 4)
            cax[m->inputs[k]] = 1;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (nd->n_out < 1 || nd->out[0] < 0 || m->values[nd->out[0]].kind != ONNX_VAL_NODE)
            continue;
        int y = nd->out[0];
        cax[y] = node_cax(m, nd, cax);
        split[y] = (uint8_t)node_split(m, nd, cax, split);
        outer[y] = node_outer(m, nd, outer);
        /* class tokens: carried from the inputs, or started by a Concat */
        int64_t L = 0;
        for (int k = 0; k < nd->n_in; k++) {
            int v = nd->in[k];
            if (v < 0 || cls_len[v] == 0)
                continue;
            L = L == 0 || L == cls_len[v] ? cls_len[v] : -1;
        }
        const int64_t *yd;
        int yr = value_rank(m, y, &yd);
        int yt = m->value_info[y];
        if (!strcmp(nd->op, "Concat") && yr == 3 && yt >= 0 && nd->n_in >= 2) {
            int ba = m->info[yt].batch_axis;
            int tok = ba == 1 ? 0 : 1; /* the token axis: first of L x N x C, else second */
            int64_t a = attr_int(nd, "axis", 0);
            if (a < 0)
                a += 3;
            const int64_t *d0;
            if (a == tok && value_rank(m, nd->in[0], &d0) == 3 && d0[tok] == 1 &&
                const_data(m, nd->in[0], 0) && yd[tok] > 1)
                L = L == 0 || L == yd[tok] ? yd[tok] : -1;
        }
        for (int k = 0; k < nd->n_out; k++)
            if (nd->out[k] >= 0)
                cls_len[nd->out[k]] = L;
    }
    for (int t = 0; t < m->n_info; t++) {
        const h2t_tensor_info *ti = &m->info[t];
        int v = m->info_value[t];
        h2t_tensor_form *f = &out[t];
        f->form = H2T_FORM_NONE;
        f->cls = 0;
        f->why = "";
        int r = ti->rank, ba = ti->batch_axis;
        if (r < 0) {
            f->why = "shapes unknown at load";
            continue;
        }
        if (r < 2 || r > 4) {
            f->why = "rank outside 2..4";
            continue;
        }
        const onnx_node *pn = m->values[v].kind == ONNX_VAL_NODE && m->values[v].producer >= 0
                                  ? &m->nodes[m->values[v].producer]
                                  : NULL;
        if (ba == H2T_BATCH_FOLDED) {
            /* attention weights of N*heads x Lq x Lk (torch's MultiheadAttention): sample s
             * is a contiguous heads x Lq x Lk block */
            if (r == 3 && outer[v] == 0 && pn && softmax_last(m, pn, 3))
                f->form = H2T_FORM_ATTN;
            else
                f->why = "batch folded into another axis (no axis is one sample)";
            continue;
        }
        if (ba == H2T_BATCH_NONE) {
            f->why = "does not follow the batch (computed from constants)";
            continue;
        }
        if (split[v] && r == 4 && ba == 0) {
            const onnx_node *nd = &m->nodes[m->values[v].producer];
            f->form = softmax_last(m, nd, 4) ? H2T_FORM_ATTN : H2T_FORM_HEADS;
        } else if (split[v]) {
            f->why = "attention heads apart (read where they are merged back)";
        } else if (r == 2) {
            if (ba == 0)
                f->form = H2T_FORM_FLAT;
            else
                f->why = "batch on axis 1 of a 2-D tensor";
        } else if (r == 3) {
            if (ba == 0)
                f->form = cax[v] == 1 ? H2T_FORM_NCL : H2T_FORM_NLC;
            else if (ba == 1 && cax[v] != 0)
                f->form = H2T_FORM_LNC;
            else
                f->why = "batch on the last axis of a 3-D tensor";
            int tok = ba == 1 ? 0 : 1;
            if ((f->form == H2T_FORM_NLC || f->form == H2T_FORM_LNC) && cls_len[v] > 0 &&
                ti->shape[tok] == cls_len[v])
                f->cls = 1;
        } else {
            const onnx_node *nd = m->values[v].kind == ONNX_VAL_NODE && m->values[v].producer >= 0
                                      ? &m->nodes[m->values[v].producer]
                                      : NULL;
            if (ba != 0)
                f->why = "batch not on axis 0 of a 4-D tensor";
            else if (cax[v] == 3 && !ti->is_input)
                f->form = H2T_FORM_NHWC;
            else if (nd && softmax_last(m, nd, 4))
                f->form = H2T_FORM_ATTN;
            else if (cax[v] == 2)
                f->why = "channels on axis 2 of a 4-D tensor (neither NCHW nor NHWC)";
            else
                f->form = H2T_FORM_NCHW;
        }
    }
    free(cax);
    free(split);
    free(outer);
    free(cls_len);
    return 0;
}

int h2t_model_tensor_src(const h2t_model *m, int i)
{
    if (i < 0 || i >= m->n_info)
        return -1;
    const onnx_value *val = &m->values[m->info_value[i]];
    if (val->kind != ONNX_VAL_NODE || val->producer < 0)
        return -1;
    const onnx_node *nd = &m->nodes[val->producer];
    int x = nd->n_in > 0 ? nd->in[0] : -1;
    return x >= 0 ? m->value_info[x] : -1;
}
