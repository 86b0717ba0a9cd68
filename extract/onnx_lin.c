/*
 * extract/onnx_lin.c - which node outputs are affine in other tensors, channel by channel
 * (h2t_model_tensor_lin, extract/model.h): BatchNormalization in inference form, Add of two
 * same-shaped tensors, and a constant-zero Pad of the spatial axes. A consumer that averages
 * within channels (the Head2Toe pooling) can carry its averages through these nodes instead
 * of reading their outputs. Everything here is decided from the model alone: constants and
 * static attributes, never from data.
 */
#include "common/err.h"
#include "extract/onnx_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The public tensor index of value v, or -1 (a constant, a value known before the run, which
 * is never reported, or not in the table). */
static int tensor_of(const h2t_model *m, int v)
{
    return v >= 0 && v < m->n_values && !m->values[v].is_static ? m->value_info[v] : -1;
}

static const float *const_f32(const h2t_model *m, int v, int64_t count)
{
    if (v < 0 || m->values[v].kind != ONNX_VAL_CONST || m->values[v].dtype != ONNX_DT_F32 ||
        m->values[v].count != count)
        return NULL;
    return m->values[v].cdata;
}

static int same_shape(const h2t_tensor_info *a, const h2t_tensor_info *b)
{
    if (a->rank != b->rank)
        return 0;
    for (int k = 1; k < a->rank; k++)
        if (a->shape[k] != b->shape[k] || a->shape[k] <= 0)
            return 0;
    return 1;
}

/* y = a[c] x + b[c] with a = scale / sqrt(var + eps), b = bias - mean a, in double. */
static int lin_bn(const h2t_model *m, const onnx_node *nd, const h2t_tensor_info *y,
                  h2t_tensor_lin *out)
{
    int x = tensor_of(m, nd->in[0]);
    if (x < 0 || y->rank != 4 || !same_shape(h2t_model_tensor(m, x), y))
        return 0;
    int64_t C = y->shape[1];
    const float *sc = const_f32(m, nd->in[1], C), *bi = const_f32(m, nd->in[2], C),
                *mu = const_f32(m, nd->in[3], C), *var = const_f32(m, nd->in[4], C);
    if (!sc || !bi || !mu || !var)
        return 0;
    double *a = malloc(sizeof(double) * (size_t)C), *b = malloc(sizeof(double) * (size_t)C);
    if (!a || !b) {
        free(a);
        free(b);
        return h2t_err_set(H2T_ENOMEM, "%lld BatchNormalization coefficients", (long long)C);
    }
    for (int64_t c = 0; c < C; c++) {
        a[c] = (double)sc[c] / sqrt((double)var[c] + (double)nd->p.eps);
        b[c] = (double)bi[c] - (double)mu[c] * a[c];
    }
    out->kind = H2T_LIN_AFFINE;
    out->src[0] = x;
    out->channels = C;
    out->a = a;
    out->b = b;
    return 1;
}

static int lin_add(const h2t_model *m, const onnx_node *nd, const h2t_tensor_info *y,
                   h2t_tensor_lin *out)
{
    int x0 = tensor_of(m, nd->in[0]), x1 = tensor_of(m, nd->in[1]);
    if (x0 < 0 || x1 < 0 || !same_shape(h2t_model_tensor(m, x0), y) ||
        !same_shape(h2t_model_tensor(m, x1), y))
        return 0;
    out->kind = H2T_LIN_SUM;
    out->src[0] = x0;
    out->src[1] = x1;
    out->channels = y->rank > 1 ? y->shape[1] : 0;
    return 1;
}

/* Constant 0, rank 4, spatial axes only, non-negative, pads known from the model. */
static int lin_pad(const h2t_model *m, const onnx_node *nd, const h2t_tensor_info *y,
                   h2t_tensor_lin *out)
{
    int x = tensor_of(m, nd->in[0]);
    if (x < 0 || y->rank != 4 || nd->p.mode != 0 || (nd->n_in > 3 && nd->in[3] >= 0))
        return 0; /* (with an axes input the pads list is per listed axis) */
    const h2t_tensor_info *xi = h2t_model_tensor(m, x);
    if (xi->rank != 4 || xi->shape[1] != y->shape[1] || xi->shape[1] <= 0)
        return 0;
    int64_t pads[8];
    float val = nd->p.value;
    if (m->opset < 11) {
        if (!nd->p.has_ints || nd->p.n_ints != 8)
            return 0;
        memcpy(pads, nd->p.ints, sizeof pads);
    } else {
        const onnx_value *pv = nd->n_in > 1 && nd->in[1] >= 0 ? &m->values[nd->in[1]] : NULL;
        if (!pv || pv->kind != ONNX_VAL_CONST || pv->dtype != ONNX_DT_I64 || pv->count != 8)
            return 0;
        memcpy(pads, pv->cdata, sizeof pads);
        val = 0.f;
        if (nd->n_in > 2 && nd->in[2] >= 0) {
            const float *v = const_f32(m, nd->in[2], 1);
            if (!v)
                return 0;
            val = v[0];
        }
    }
    if (val != 0.f || pads[0] || pads[1] || pads[4] || pads[5])
        return 0;
    for (int k = 2; k < 8; k++)
        if (pads[k] < 0)
            return 0;
    if (xi->shape[2] + pads[2] + pads[6] != y->shape[2] ||
        xi->shape[3] + pads[3] + pads[7] != y->shape[3])
        return 0;
    out->kind = H2T_LIN_PAD;
    out->src[0] = x;
    out->channels = y->shape[1];
    out->pads[0] = pads[2];
    out->pads[1] = pads[3];
    out->pads[2] = pads[6];
    out->pads[3] = pads[7];
    return 1;
}

int h2t_model_tensor_lin(const h2t_model *m, int tensor, h2t_tensor_lin *out)
{
    memset(out, 0, sizeof *out);
    out->src[0] = out->src[1] = -1;
    if (tensor < 0 || tensor >= m->n_info)
        return h2t_err_set(H2T_EINVAL, "tensor %d of %d", tensor, m->n_info);
    int v = m->info_value[tensor];
    const onnx_value *val = &m->values[v];
    if (val->kind != ONNX_VAL_NODE || val->producer < 0)
        return 0;
    const onnx_node *nd = &m->nodes[val->producer];
    if (nd->n_out < 1 || nd->out[0] != v)
        return 0;
    const h2t_tensor_info *y = h2t_model_tensor(m, tensor);
    int rc = 0;
    if (onnx_op_is(nd, "BatchNormalization"))
        rc = nd->n_in >= 5 ? lin_bn(m, nd, y, out) : 0;
    else if (onnx_op_is(nd, "Add"))
        rc = nd->n_in == 2 ? lin_add(m, nd, y, out) : 0;
    else if (onnx_op_is(nd, "Pad"))
        rc = lin_pad(m, nd, y, out);
    if (rc <= 0) {
        h2t_tensor_lin_free(out);
        memset(out, 0, sizeof *out);
        out->src[0] = out->src[1] = -1;
    }
    return rc < 0 ? rc : 0;
}

void h2t_tensor_lin_free(h2t_tensor_lin *l)
{
    if (!l)
        return;
    free(l->a);
    free(l->b);
    l->a = l->b = NULL;
}
