/*
 * extract/ops_logic.c - comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual), logic
 * (Not, And, Or, Xor), Where and Mod, all with multidirectional broadcasting, and their table
 * fragment (onnx_ops_logic). Integer and bool results are evaluated before the run (eval into
 * ival); the kernels (run) compute float results, and bool results from run-time data as
 * float 0/1 (onnx_graph.h). Inputs are read through onnx_get, so a kernel takes static
 * integer / bool inputs (ival) and float or run-time bool ones (f) alike; integer inputs are
 * compared as int64 where both sides are integers.
 */
#include <math.h>
#include <string.h>

#include "common/err.h"
#include "extract/onnx_graph.h"

enum { C_EQ, C_LT, C_GT, C_LE, C_GE };
enum { L_AND, L_OR, L_XOR };

/* ---------------------------------------------------------------- comparisons */

static int cmp_d(int op, double a, double b)
{
    switch (op) {
    case C_EQ:
        return a == b;
    case C_LT:
        return a < b;
    case C_GT:
        return a > b;
    case C_LE:
        return a <= b;
    default:
        return a >= b;
    }
}

static int cmp_i(int op, int64_t a, int64_t b)
{
    switch (op) {
    case C_EQ:
        return a == b;
    case C_LT:
        return a < b;
    case C_GT:
        return a > b;
    case C_LE:
        return a <= b;
    default:
        return a >= b;
    }
}

/* Element t of the output from inputs a, b at offsets oa, ob. */
static int cmp_at(int op, const onnx_vstate *a, const onnx_vstate *b, int64_t oa, int64_t ob)
{
    if (a->ival && b->ival)
        return cmp_i(op, a->ival[oa], b->ival[ob]);
    return cmp_d(op, onnx_get(a, oa), onnx_get(b, ob));
}

static int infer_bcast2(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const onnx_vstate *in[2] = {VIN(0), VIN(1)};
    return onnx_bcast_shape_n(nd, in, 2, VOUT(0));
}

static int eval_cmp(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    const onnx_vstate *in[2] = {VIN(0), VIN(1)};
    onnx_vstate *o = VOUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 2);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w))
        o->ival[t] = cmp_at(nd->def->sub, in[0], in[1], w.off[0], w.off[1]);
    return 0;
}

static int k_cmp(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *in[2] = {IN(0), IN(1)};
    onnx_vstate *o = OUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 2);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w))
        o->f[t] = (float)cmp_at(nd->def->sub, in[0], in[1], w.off[0], w.off[1]);
    return 0;
}

/* ---------------------------------------------------------------- logic */

static int logic_at(int op, double a, double b)
{
    int x = a != 0, y = b != 0;
    return op == L_AND ? x && y : op == L_OR ? x || y : x != y;
}

static int eval_logic(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    const onnx_vstate *in[2] = {VIN(0), VIN(1)};
    onnx_vstate *o = VOUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 2);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w))
        o->ival[t] = logic_at(nd->def->sub, onnx_get(in[0], w.off[0]), onnx_get(in[1], w.off[1]));
    return 0;
}

static int k_logic(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *in[2] = {IN(0), IN(1)};
    onnx_vstate *o = OUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 2);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w))
        o->f[t] =
            (float)logic_at(nd->def->sub, onnx_get(in[0], w.off[0]), onnx_get(in[1], w.off[1]));
    return 0;
}

static int eval_not(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    for (int64_t t = 0, n = onnx_numel(VOUT(0)); t < n; t++)
        VOUT(0)->ival[t] = onnx_get(VIN(0), t) == 0;
    return 0;
}

static int k_not(const onnx_kctx *k, const onnx_node *nd)
{
    for (int64_t t = 0, n = onnx_numel(OUT(0)); t < n; t++)
        OUT(0)->f[t] = (float)(onnx_get(IN(0), t) == 0);
    return 0;
}

/* ---------------------------------------------------------------- Where */

static int infer_where(const h2t_model *m, const onnx_node *nd, onnx_vstate *vs, onnx_nstate *ns)
{
    (void)m;
    (void)ns;
    const onnx_vstate *in[3] = {VIN(0), VIN(1), VIN(2)};
    return onnx_bcast_shape_n(nd, in, 3, VOUT(0));
}

static int eval_where(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    const onnx_vstate *in[3] = {VIN(0), VIN(1), VIN(2)};
    onnx_vstate *o = VOUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 3);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w))
        o->ival[t] = onnx_get(in[0], w.off[0]) != 0 ? in[1]->ival[w.off[1]] : in[2]->ival[w.off[2]];
    return 0;
}

static int k_where(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *in[3] = {IN(0), IN(1), IN(2)};
    onnx_vstate *o = OUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 3);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w))
        o->f[t] = onnx_get(in[0], w.off[0]) != 0 ? in[1]->f[w.off[1]] : in[2]->f[w.off[2]];
    return 0;
}

/* ---------------------------------------------------------------- Mod */

static int parse_mod(const h2t_model *m, onnx_node *nd)
{
    (void)m;
    nd->p.mode = (int)onnx_attr_i(nd, "fmod", 0);
    if (nd->p.mode != 0 && nd->p.mode != 1)
        return h2t_err_set(H2T_ECORRUPT, "node '%s' (Mod): fmod %d", nd->name, nd->p.mode);
    return 0;
}

/* fmod = 0: the remainder takes the divisor's sign (Python's %); fmod = 1: the dividend's (C). */
static int eval_mod(const onnx_node *nd, onnx_vstate *vs, const onnx_nstate *ns)
{
    (void)ns;
    const onnx_vstate *in[2] = {VIN(0), VIN(1)};
    onnx_vstate *o = VOUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 2);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w)) {
        int64_t a = in[0]->ival[w.off[0]], b = in[1]->ival[w.off[1]];
        if (b == 0)
            return onnx_shape_err(nd, "integer modulo by zero", 0, 0);
        int64_t r = b == -1 ? 0 : a % b;
        if (!nd->p.mode && r != 0 && ((r < 0) != (b < 0)))
            r += b;
        o->ival[t] = r;
    }
    return 0;
}

static int k_mod(const onnx_kctx *k, const onnx_node *nd)
{
    const onnx_vstate *in[2] = {IN(0), IN(1)};
    onnx_vstate *o = OUT(0);
    onnx_bwalk w;
    onnx_bwalk_init(&w, o, in, 2);
    for (int64_t t = 0, n = onnx_numel(o); t < n; t++, onnx_bwalk_next(&w)) {
        float a = in[0]->f[w.off[0]], b = in[1]->f[w.off[1]], r = fmodf(a, b);
        if (!nd->p.mode && r != 0.f && ((r < 0.f) != (b < 0.f)))
            r += b;
        o->f[t] = r;
    }
    return 0;
}

/* ---------------------------------------------------------------- table */

#define CMP(NAME, SUB, TYPES)                                                                      \
    {                                                                                              \
        NAME, .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_CMP, .types = TYPES,          \
              .sub = SUB, .infer = infer_bcast2, .eval = eval_cmp, .run = k_cmp                    \
    }
#define LOGIC(NAME, SUB)                                                                           \
    {                                                                                              \
        NAME, .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_BOOL,  \
              .sub = SUB, .infer = infer_bcast2, .eval = eval_logic, .run = k_logic                \
    }

const onnx_opdef onnx_ops_logic[] = {
    CMP("Equal", C_EQ, ONNX_TY_ALL),
    CMP("Less", C_LT, ONNX_TY_NUM),
    CMP("Greater", C_GT, ONNX_TY_NUM),
    CMP("LessOrEqual", C_LE, ONNX_TY_NUM),
    CMP("GreaterOrEqual", C_GE, ONNX_TY_NUM),
    LOGIC("And", L_AND),
    LOGIC("Or", L_OR),
    LOGIC("Xor", L_XOR),
    {"Not", .min_in = 1, .max_in = 1, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_BOOL,
     .infer = onnx_infer_same, .eval = eval_not, .run = k_not},
    {"Where", .min_in = 3, .max_in = 3, .max_out = 1, .dt = ONNX_DTR_WHERE, .infer = infer_where,
     .eval = eval_where, .run = k_where},
    {"Mod", .min_in = 2, .max_in = 2, .max_out = 1, .dt = ONNX_DTR_SAME, .types = ONNX_TY_NUM,
     .parse = parse_mod, .infer = infer_bcast2, .eval = eval_mod, .run = k_mod},
};
const int onnx_ops_logic_n = sizeof onnx_ops_logic / sizeof onnx_ops_logic[0];
