/*
 * extract/onnx_ops.c - the operator registry and the passes that read it: onnx_check (which
 * operators, attributes and data types the executor supports, checked once at load, before any
 * work), onnx_infer (shape inference for concrete input shapes, evaluating int64 "shape
 * arithmetic" on the way so that every shape is known before a kernel runs) and the kernel
 * dispatch. The entries themselves live in the ops_*.c files' table fragments; the helpers
 * they share (attributes, errors, shapes) are here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/onnx_graph.h"

/* ---------------------------------------------------------------- registry */

/* The table fragments (onnx_graph.h: "the operator table"); a new ops_*.c file adds its line. */
#define ONNX_OP_FRAGMENTS(X)                                                                       \
    X(onnx_ops_conv, onnx_ops_conv_n)                                                              \
    X(onnx_ops_elem, onnx_ops_elem_n)                                                              \
    X(onnx_ops_nn, onnx_ops_nn_n)                                                                  \
    X(onnx_ops_shape, onnx_ops_shape_n)

#define DECLARE(tab, n)                                                                            \
    extern const onnx_opdef tab[];                                                                 \
    extern const int n;
ONNX_OP_FRAGMENTS(DECLARE)
#undef DECLARE

const onnx_opdef *onnx_op_find(const char *name)
{
#define FIND(tab, n)                                                                               \
    for (int i = 0; i < n; i++)                                                                    \
        if (!strcmp(tab[i].name, name))                                                            \
            return &tab[i];
    ONNX_OP_FRAGMENTS(FIND)
#undef FIND
    return NULL;
}

int onnx_op_count(void)
{
    int c = 0;
#define COUNT(tab, n) c += n;
    ONNX_OP_FRAGMENTS(COUNT)
#undef COUNT
    return c;
}

const onnx_opdef *onnx_op_at(int i)
{
#define AT(tab, n)                                                                                 \
    if (i >= 0 && i < n)                                                                           \
        return &tab[i];                                                                            \
    i -= n;
    ONNX_OP_FRAGMENTS(AT)
#undef AT
    return NULL;
}

int onnx_op_is_view(const onnx_node *nd)
{
    return nd->def && (nd->def->flags & ONNX_OPF_VIEW);
}

int onnx_op_is(const onnx_node *nd, const char *name)
{
    return nd->def && !strcmp(nd->def->name, name);
}

/* ---------------------------------------------------------------- helpers for ops_*.c */

const onnx_attr *onnx_attr_get(const onnx_node *nd, const char *name)
{
    for (int i = 0; i < nd->n_attr; i++)
        if (!strcmp(nd->attr[i].name, name))
            return &nd->attr[i];
    return NULL;
}

int64_t onnx_attr_i(const onnx_node *nd, const char *name, int64_t def)
{
    const onnx_attr *a = onnx_attr_get(nd, name);
    return a && a->type == ONNX_AT_I ? a->i : def;
}

float onnx_attr_f(const onnx_node *nd, const char *name, float def)
{
    const onnx_attr *a = onnx_attr_get(nd, name);
    return a && a->type == ONNX_AT_F ? a->f : def;
}

const char *onnx_attr_s(const onnx_node *nd, const char *name, const char *def)
{
    const onnx_attr *a = onnx_attr_get(nd, name);
    return a && a->type == ONNX_AT_S ? a->s : def;
}

int onnx_attr_ints(const onnx_node *nd, const char *name, int64_t *out, int max)
{
    const onnx_attr *a = onnx_attr_get(nd, name);
    if (!a || a->type != ONNX_AT_IS)
        return -1;
    if (a->n > max)
        return -2;
    for (int i = 0; i < a->n; i++)
        out[i] = a->ints[i];
    return a->n;
}

int onnx_unsup(const onnx_node *nd, const char *msg, const char *what)
{
    return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s'): %s%s", nd->op, nd->name, msg,
                       what ? what : "");
}

int onnx_shape_err(const onnx_node *nd, const char *fmt, long long a, long long b)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, a, b);
    return h2t_err_set(H2T_ESHAPE, "node '%s' (%s): %s", nd->name, nd->op, msg);
}

int onnx_norm_axis(int64_t axis, int rank, int64_t *out)
{
    if (axis < -rank || axis >= rank)
        return -1;
    *out = axis < 0 ? axis + rank : axis;
    return 0;
}

void onnx_set_shape(onnx_vstate *o, int rank, const int64_t *dim)
{
    o->rank = rank;
    for (int i = 0; i < rank; i++)
        o->dim[i] = dim[i];
}

int onnx_alloc_ival(onnx_vstate *o)
{
    free(o->ival);
    int64_t n = onnx_numel(o);
    o->ival = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    return o->ival ? 0 : h2t_err_set(H2T_ENOMEM, "int64 tensor of %lld elements", (long long)n);
}

int onnx_param_list(const onnx_node *nd, const onnx_vstate *vs, int k, const int64_t **out,
                    int64_t *n)
{
    if (!HAS(k))
        return -1;
    const onnx_vstate *v = VIN(k);
    if (!v->ival)
        return h2t_err_set(H2T_EUNSUPPORTED, "node '%s' (%s): input %d is not known before run",
                           nd->name, nd->op, k);
    *out = v->ival;
    *n = onnx_numel(v);
    return 0;
}

int onnx_bcast_shape(const onnx_node *nd, const onnx_vstate *a, const onnx_vstate *b,
                     onnx_vstate *o)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t d[H2T_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return onnx_shape_err(nd, "cannot broadcast %lld against %lld", (long long)da,
                                  (long long)db);
        d[i] = da == 1 ? db : da;
    }
    onnx_set_shape(o, r, d);
    return 0;
}

int onnx_infer_same(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    onnx_set_shape(VOUT(0), VIN(0)->rank, VIN(0)->dim);
    return 0;
}

/* ---------------------------------------------------------------- check */

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
    if (m->opset < 1 || m->opset > 20)
        return h2t_err_set(H2T_EUNSUPPORTED, "opset %d (supported: 1 to 20)", m->opset);
    for (int i = 0; i < m->n_nodes; i++) {
        onnx_node *nd = &m->nodes[i];
        const onnx_opdef *od = onnx_op_find(nd->op);
        nd->def = od;
        if (!od)
            return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s') is not supported", nd->op,
                               nd->name);
        if (od->flags & ONNX_OPF_CONST)
            continue;
        if (nd->n_in < od->min_in || nd->n_in > od->max_in || nd->n_out < 1 ||
            nd->n_out > od->max_out)
            return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): %d inputs, %d outputs", nd->name,
                               nd->op, nd->n_in, nd->n_out);
        for (int k = 0; k < od->min_in; k++)
            if (nd->in[k] < 0)
                return h2t_err_set(H2T_ECORRUPT, "node '%s' (%s): input %d missing", nd->name,
                                   nd->op, k);
        /* pre-opset-7 forms whose meaning differs from today's */
        if (onnx_attr_get(nd, "consumed_inputs") ||
            (onnx_attr_get(nd, "broadcast") && m->opset < 7))
            return onnx_unsup(nd, "legacy attribute (consumed_inputs / broadcast)", NULL);
        nd->p.alpha = 1.f;
        nd->p.beta = 1.f;
        int rc = od->parse ? od->parse(m, nd) : 0;
        if (rc < 0)
            return rc;
        /* data types */
        int dt0 = m->values[nd->in[0]].dtype;
        for (int k = 0; k < nd->n_in; k++) {
            if (nd->in[k] < 0)
                continue;
            const onnx_value *v = &m->values[nd->in[k]];
            int want = k < 32 && (od->param_in >> k & 1) ? ONNX_DT_I64
                       : od->dt == ONNX_DTR_FLOAT        ? ONNX_DT_F32
                       : od->dt == ONNX_DTR_SAME         ? dt0
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
        int odt = od->dt == ONNX_DTR_SHAPE  ? ONNX_DT_I64
                  : od->dt == ONNX_DTR_CAST ? nd->p.to
                  : od->dt == ONNX_DTR_SAME ? dt0
                                            : ONNX_DT_F32;
        if (od->dt == ONNX_DTR_CAST && dt0 == ONNX_DT_F32 && odt == ONNX_DT_I64)
            return onnx_unsup(nd, "float to int64 casts are not supported", NULL);
        if (odt == ONNX_DT_I64 && !od->eval)
            return onnx_unsup(nd, "int64 data is not supported", NULL);
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

static int infer_node(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    const onnx_opdef *od = nd->def;
    if (VIN(0)->rank < 0)
        return onnx_shape_err(nd, "input shape unknown", 0, 0);
    int rc = od->infer(m, nd, vs, ns);
    if (rc < 0)
        return rc;
    if (onnx_node_is_static(m, nd)) {
        for (int k = 0; k < nd->n_in; k++)
            if (HAS(k) && !VIN(k)->ival && !(od->flags & ONNX_OPF_READS_SHAPE))
                return h2t_err_set(H2T_EUNSUPPORTED,
                                   "operator %s (node '%s'): int64 input '%s' is not known before "
                                   "run",
                                   nd->op, nd->name, m->values[nd->in[k]].name);
        if ((rc = onnx_alloc_ival(VOUT(0))) < 0)
            return rc;
        return od->eval(nd, vs, ns);
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
            onnx_set_shape(&vs[i], v->rank, v->shape);
            if (v->dtype == ONNX_DT_F32) {
                vs[i].f = v->cdata;
            } else if (v->dtype == ONNX_DT_I64) {
                int rc = onnx_alloc_ival(&vs[i]);
                if (rc < 0)
                    return rc;
                if (v->count)
                    memcpy(vs[i].ival, v->cdata, (size_t)v->count * 8);
            }
        }
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        if (nd->def->flags & ONNX_OPF_CONST)
            continue;
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && vs[nd->in[k]].rank < 0)
                return h2t_err_set(H2T_ESHAPE, "node '%s' (%s): shape of input '%s' unknown",
                                   nd->name, nd->op, m->values[nd->in[k]].name);
        for (int k = 1; k < nd->n_out; k++) /* unknown unless the op infers them */
            if (nd->out[k] >= 0)
                vs[nd->out[k]].rank = -1;
        int rc = infer_node(m, nd, vs, &ns[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- kernels */

size_t onnx_kernel_scratch(const onnx_node *nd, const onnx_vstate *vs, const onnx_nstate *ns)
{
    return nd->def->scratch ? nd->def->scratch(nd, vs, ns) : 0;
}

int onnx_kernel_run(const onnx_kctx *k, const onnx_node *nd)
{
    if (!nd->def->run)
        return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s'): no float kernel", nd->op,
                           nd->name);
    return nd->def->run(k, nd);
}
