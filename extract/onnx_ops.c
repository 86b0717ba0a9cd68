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
    X(onnx_ops_shape, onnx_ops_shape_n)                                                            \
    X(onnx_ops_logic, onnx_ops_logic_n)                                                            \
    X(onnx_ops_tensor, onnx_ops_tensor_n)

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

int onnx_bcast_shape_n(const onnx_node *nd, const onnx_vstate *const *in, int n, onnx_vstate *o)
{
    onnx_vstate t = *in[0];
    for (int k = 1; k < n; k++) {
        int rc = onnx_bcast_shape(nd, &t, in[k], o);
        if (rc < 0)
            return rc;
        t = *o;
    }
    onnx_set_shape(o, t.rank, t.dim);
    return 0;
}

void onnx_bwalk_init(onnx_bwalk *w, const onnx_vstate *o, const onnx_vstate *const *in, int n)
{
    memset(w, 0, sizeof *w);
    w->r = o->rank;
    w->n = n;
    for (int i = 0; i < o->rank; i++)
        w->d[i] = o->dim[i];
    for (int k = 0; k < n; k++) {
        int64_t s = 1;
        for (int i = o->rank - 1; i >= 0; i--) {
            int j = i - (o->rank - in[k]->rank);
            int64_t dk = j >= 0 ? in[k]->dim[j] : 1;
            w->st[k][i] = dk == 1 ? 0 : s;
            s *= dk;
        }
    }
}

int onnx_static_scalar(const h2t_model *m, const onnx_node *nd, const onnx_vstate *vs, int k,
                       double *x)
{
    if (!HAS(k) || !m->values[nd->in[k]].is_static)
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "operator %s (node '%s'): input %d must be known before the run "
                           "(computed from shapes and constants)",
                           nd->op, nd->name, k);
    if (onnx_numel(VIN(k)) != 1)
        return onnx_shape_err(nd, "input %lld has %lld elements, expected one", k,
                              onnx_numel(VIN(k)));
    *x = onnx_get(VIN(k), 0);
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
    return nd->n_out > 0 && m->values[nd->out[0]].is_static;
}

static unsigned ty_bit(int dt)
{
    return dt == ONNX_DT_F32    ? ONNX_TY_F32
           : dt == ONNX_DT_I32  ? ONNX_TY_I32
           : dt == ONNX_DT_I64  ? ONNX_TY_I64
           : dt == ONNX_DT_BOOL ? ONNX_TY_BOOL
                                : 0;
}

/* "float32, int64" for a type set. */
static const char *ty_names(unsigned t, char *buf, size_t n)
{
    static const int dts[] = {ONNX_DT_F32, ONNX_DT_I32, ONNX_DT_I64, ONNX_DT_BOOL};
    buf[0] = 0;
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++)
        if (t & ty_bit(dts[i]))
            snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? ", " : "",
                     dtype_name(dts[i]));
    return buf;
}

static int bad_type(const onnx_node *nd, const onnx_value *v, unsigned allowed)
{
    char b[80];
    if (!ty_bit(v->dtype))
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "operator %s (node '%s'): input '%s' has data type %s (supported: "
                           "float32, int32, int64, bool)",
                           nd->op, nd->name, v->name, dtype_name(v->dtype));
    return h2t_err_set(H2T_EUNSUPPORTED, "operator %s (node '%s'): input '%s' is %s, expected %s",
                       nd->op, nd->name, v->name, dtype_name(v->dtype),
                       ty_names(allowed, b, sizeof b));
}

/* Input and output data types of a checked node: the output type into *odt. */
static int check_types(const h2t_model *m, const onnx_node *nd, int *odt)
{
    const onnx_opdef *od = nd->def;
    unsigned allowed = od->types ? od->types : ONNX_TY_ALL;
    int ref = od->dt == ONNX_DTR_WHERE ? 1 : 0; /* the input the others follow */
    int rdt = ref < nd->n_in && nd->in[ref] >= 0 ? m->values[nd->in[ref]].dtype : ONNX_DT_F32;
    for (int k = 0; k < nd->n_in; k++) {
        if (nd->in[k] < 0)
            continue;
        const onnx_value *v = &m->values[nd->in[k]];
        unsigned want;
        if (k < 32 && (od->param_in >> k & 1))
            want = ONNX_TY_INT;
        else if (k < 32 && (od->bool_in >> k & 1))
            want = ONNX_TY_BOOL;
        else if (od->dt == ONNX_DTR_FLOAT)
            want = ONNX_TY_F32;
        else if (od->dt == ONNX_DTR_SHAPE)
            want = ONNX_TY_ALL;
        else if (od->dt == ONNX_DTR_CAST)
            want = k == 0 ? allowed : ONNX_TY_ALL;
        else if (od->dt == ONNX_DTR_WHERE && k == 0)
            want = ONNX_TY_BOOL;
        else if (k == ref)
            want = allowed;
        else
            want = ty_bit(rdt);
        if (!(ty_bit(v->dtype) & want))
            return bad_type(nd, v, want);
    }
    switch (od->dt) {
    case ONNX_DTR_FLOAT:
        *odt = ONNX_DT_F32;
        break;
    case ONNX_DTR_SHAPE:
        *odt = ONNX_DT_I64;
        break;
    case ONNX_DTR_CAST:
        *odt = nd->p.to;
        break;
    case ONNX_DTR_CMP:
        *odt = ONNX_DT_BOOL;
        break;
    default:
        *odt = rdt;
        break;
    }
    return 0;
}

/* Every node's entry, or H2T_EUNSUPPORTED listing every unsupported operator type with its
 * node count, first node and the model's opset. */
static int check_known(h2t_model *m)
{
    int n_bad = 0, n_types = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        onnx_node *nd = &m->nodes[i];
        nd->def = nd->domain ? NULL : onnx_op_find(nd->op);
        n_bad += !nd->def;
    }
    if (!n_bad)
        return 0;
    char msg[1024];
    size_t len = 0;
    msg[0] = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const onnx_node *nd = &m->nodes[i];
        int first = 1, count = 0;
        if (nd->def)
            continue;
        for (int j = 0; j < m->n_nodes; j++) {
            const onnx_node *o = &m->nodes[j];
            if (o->def || strcmp(o->op, nd->op) ||
                strcmp(o->domain ? o->domain : "", nd->domain ? nd->domain : ""))
                continue;
            first = first && j >= i;
            count++;
        }
        if (!first)
            continue;
        n_types++;
        char where[64] = "";
        if (!nd->name[0])
            snprintf(where, sizeof where, " (node #%d, unnamed)", i);
        if (len < sizeof msg - 1)
            len += (size_t)snprintf(msg + len, sizeof msg - len,
                                    "%s%s%s%s (%d node%s, first '%s'%s)", len ? ", " : "",
                                    nd->domain ? nd->domain : "", nd->domain ? "::" : "", nd->op,
                                    count, count == 1 ? "" : "s", nd->name, where);
    }
    return h2t_err_set(H2T_EUNSUPPORTED, "%d unsupported operator%s at opset %d: %s", n_types,
                       n_types == 1 ? "" : "s", m->opset, msg);
}

int onnx_check(h2t_model *m)
{
    if (m->opset < 1 || m->opset > ONNX_OPSET_MAX)
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "opset %d of the default domain (supported: 1 to %d); export the model "
                           "with opset %d or lower",
                           m->opset, ONNX_OPSET_MAX, ONNX_OPSET_MAX);
    int rc = check_known(m);
    if (rc < 0)
        return rc;
    for (int v = 0; v < m->n_values; v++) {
        onnx_value *val = &m->values[v];
        val->is_static = val->kind == ONNX_VAL_CONST ||
                         (val->kind == ONNX_VAL_INPUT && val->dtype != ONNX_DT_F32);
    }
    for (int i = 0; i < m->n_nodes; i++) {
        onnx_node *nd = &m->nodes[i];
        const onnx_opdef *od = nd->def;
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
        if ((rc = od->parse ? od->parse(m, nd) : 0) < 0)
            return rc;
        int odt = ONNX_DT_F32;
        if ((rc = check_types(m, nd, &odt)) < 0)
            return rc;
        /* static: every input known before the run (or only shapes read) */
        int is_static = 1, runtime_in = -1;
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && !m->values[nd->in[k]].is_static &&
                !(od->flags & ONNX_OPF_READS_SHAPE)) {
                is_static = 0;
                runtime_in = runtime_in < 0 ? nd->in[k] : runtime_in;
            }
        if (!is_static && onnx_dt_is_int(odt) && odt != ONNX_DT_BOOL)
            return h2t_err_set(H2T_EUNSUPPORTED,
                               "operator %s (node '%s'): its %s output depends on '%s', which is "
                               "computed at run time (integer tensors are supported when computed "
                               "from shapes and constants only)",
                               nd->op, nd->name, dtype_name(odt), m->values[runtime_in].name);
        if (is_static && onnx_dt_is_int(odt) && !od->eval)
            return onnx_unsup(nd, dtype_name(odt), " data is not supported");
        if ((!is_static || !onnx_dt_is_int(odt)) && !od->run && !(od->flags & ONNX_OPF_VIEW))
            return onnx_unsup(nd, dtype_name(odt), " data computed at run time is not supported");
        for (int k = 0; k < nd->n_out; k++) {
            m->values[nd->out[k]].dtype = odt;
            m->values[nd->out[k]].is_static = is_static;
        }
    }
    for (int i = 0; i < m->n_outputs; i++) {
        const onnx_value *v = &m->values[m->outputs[i]];
        if (!ty_bit(v->dtype))
            return h2t_err_set(H2T_EUNSUPPORTED, "graph output '%s' has data type %s", v->name,
                               dtype_name(v->dtype));
    }
    return 0;
}

/* ---------------------------------------------------------------- shape inference */

/* The float copy of a static integer / bool value (f = fown), for the kernels of run-time
 * nodes that read it as data (Where, Concat, ... next to a run-time bool). */
static int float_shadow(onnx_vstate *v)
{
    int64_t n = onnx_numel(v);
    free(v->fown);
    v->fown = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!v->fown)
        return h2t_err_set(H2T_ENOMEM, "%lld floats", (long long)n);
    for (int64_t i = 0; i < n; i++)
        v->fown[i] = (float)v->ival[i];
    v->f = v->fown;
    return 0;
}

/* Outputs of a static node: integer and bool ones by eval, float ones by the op's kernel (a
 * view's output shares its input's values). */
static int fold_node(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs,
                     const onnx_nstate *ns)
{
    const onnx_opdef *od = nd->def;
    int dt = m->values[nd->out[0]].dtype, rc = 0;
    if (onnx_dt_is_int(dt)) {
        for (int k = 0; k < nd->n_out; k++)
            if ((rc = onnx_alloc_ival(VOUT(k))) < 0)
                return rc;
        if ((rc = od->eval(nd, vs, ns)) < 0)
            return rc;
        for (int k = 0; k < nd->n_out; k++) {
            onnx_vstate *o = VOUT(k);
            for (int64_t i = 0, n = onnx_numel(o); i < n; i++)
                o->ival[i] = dt == ONNX_DT_BOOL  ? o->ival[i] != 0
                             : dt == ONNX_DT_I32 ? (int64_t)(int32_t)(uint32_t)o->ival[i]
                                                 : o->ival[i];
            if ((rc = float_shadow(o)) < 0)
                return rc;
        }
        return 0;
    }
    if (od->flags & ONNX_OPF_VIEW) {
        VOUT(0)->f = VIN(0)->f;
        return 0;
    }
    for (int k = 0; k < nd->n_out; k++) {
        onnx_vstate *o = VOUT(k);
        int64_t n = onnx_numel(o);
        free(o->fown);
        o->fown = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        if (!o->fown)
            return h2t_err_set(H2T_ENOMEM, "node '%s' (%s): %lld floats", nd->name, nd->op,
                               (long long)n);
        o->f = o->fown;
    }
    size_t sn = onnx_kernel_scratch(nd, vs, ns);
    float *scratch = sn ? malloc(sn * sizeof(float)) : NULL;
    if (sn && !scratch)
        return h2t_err_set(H2T_ENOMEM, "node '%s' (%s): scratch", nd->name, nd->op);
    onnx_kctx k = {.m = m, .vs = vs, .ns = ns, .scratch = scratch, .scratch_n = sn, .threads = 1};
    rc = od->run(&k, nd);
    free(scratch);
    return rc;
}

static int infer_node(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    if (VIN(0)->rank < 0)
        return onnx_shape_err(nd, "input shape unknown", 0, 0);
    int rc = nd->def->infer(m, nd, vs, ns);
    if (rc < 0 || !onnx_node_is_static(m, nd))
        return rc;
    /* a static node's outputs are computed now (a view shares its input's values): their
     * size is checked first */
    for (int k = 0; k < nd->n_out && !(nd->def->flags & ONNX_OPF_VIEW); k++) {
        const onnx_vstate *o = nd->out[k] >= 0 ? &vs[nd->out[k]] : NULL;
        int64_t n = 1;
        for (int d = 0; o && d < o->rank; d++)
            if (o->dim[d] > 0 &&
                (__builtin_mul_overflow(n, o->dim[d], &n) || n > H2T_ONNX_MAX_FOLD))
                return h2t_err_set(H2T_ETOOBIG,
                                   "node '%s' (%s): output '%s', computed from constants at load "
                                   "time, has more than %lld elements",
                                   nd->name, nd->op, m->values[nd->out[k]].name,
                                   (long long)H2T_ONNX_MAX_FOLD);
    }
    return fold_node(m, nd, vs, ns);
}

void onnx_state_clear(const h2t_model *m, onnx_vstate *vs)
{
    for (int i = 0; i < m->n_values; i++) {
        free(vs[i].ival);
        vs[i].ival = NULL;
        free(vs[i].fown);
        vs[i].fown = NULL;
    }
}

int onnx_infer(const h2t_model *m, onnx_vstate *vs, onnx_nstate *ns)
{
    for (int i = 0; i < m->n_values; i++) {
        const onnx_value *v = &m->values[i];
        if (v->kind == ONNX_VAL_INPUT) {
            if (vs[i].ival && onnx_dt_is_int(v->dtype)) {
                int rc = float_shadow(&vs[i]);
                if (rc < 0)
                    return rc;
            }
            continue;
        }
        free(vs[i].ival);
        vs[i].ival = NULL;
        free(vs[i].fown);
        vs[i].fown = NULL;
        vs[i].rank = -1;
        if (v->is_static)
            vs[i].f = NULL;
        if (v->kind == ONNX_VAL_CONST) {
            onnx_set_shape(&vs[i], v->rank, v->shape);
            if (v->dtype == ONNX_DT_F32) {
                vs[i].f = v->cdata;
            } else if (onnx_dt_is_int(v->dtype)) {
                int rc = onnx_alloc_ival(&vs[i]);
                if (rc < 0)
                    return rc;
                if (v->count)
                    memcpy(vs[i].ival, v->cdata, (size_t)v->count * 8);
                if ((rc = float_shadow(&vs[i])) < 0)
                    return rc;
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
        if (rc == H2T_ESHAPE)
            return h2t_err_wrap(rc, "shape of tensor '%s' not inferred",
                                m->values[nd->out[0]].name);
        if (rc < 0)
            return rc;
        for (int k = 1; k < nd->n_out; k++)
            if (vs[nd->out[k]].rank < 0 && m->values[nd->out[k]].name[0])
                return h2t_err_set(H2T_ESHAPE, "node '%s' (%s): shape of output '%s' not inferred",
                                   nd->name, nd->op, m->values[nd->out[k]].name);
        /* no tensor past H2T_ONNX_MAX_ELEMS: later element counts cannot overflow */
        for (int k = 0; k < nd->n_out; k++) {
            const onnx_vstate *o = nd->out[k] >= 0 ? &vs[nd->out[k]] : NULL;
            int64_t n = 1;
            for (int d = 0; o && d < o->rank; d++)
                if (o->dim[d] > 0 &&
                    (__builtin_mul_overflow(n, o->dim[d], &n) || n > H2T_ONNX_MAX_ELEMS))
                    return h2t_err_set(H2T_ESHAPE,
                                       "node '%s' (%s): output '%s' has more than %lld elements",
                                       nd->name, nd->op, m->values[nd->out[k]].name,
                                       (long long)H2T_ONNX_MAX_ELEMS);
        }
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
