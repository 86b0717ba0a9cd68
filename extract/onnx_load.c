/*
 * extract/onnx_load.c - ONNX ModelProto / TensorProto bytes -> the plain graph of
 * onnx_graph.h. The only file of extract/ that uses protobuf-c; everything protobuf-c hands
 * back is copied out and the message freed before returning.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/onnx_graph.h"
#include "onnx/onnx.pb-c.h"

/* ---- a small string -> int map (open addressing) ---- */
typedef struct name_map {
    size_t cap;
    const char **keys;
    int *vals;
} name_map;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int name_map_init(name_map *nm, size_t n)
{
    nm->cap = 16;
    while (nm->cap < 2 * n + 16)
        nm->cap *= 2;
    nm->keys = calloc(nm->cap, sizeof *nm->keys);
    nm->vals = calloc(nm->cap, sizeof *nm->vals);
    return nm->keys && nm->vals ? 0 : H2T_ENOMEM;
}

static void name_map_free(name_map *nm)
{
    free(nm->keys);
    free(nm->vals);
}

static int name_map_get(const name_map *nm, const char *k)
{
    for (size_t i = name_hash(k) & (nm->cap - 1);; i = (i + 1) & (nm->cap - 1)) {
        if (!nm->keys[i])
            return -1;
        if (!strcmp(nm->keys[i], k))
            return nm->vals[i];
    }
}

/* Insert or overwrite (the map is sized for every name up front). */
static void name_map_put(name_map *nm, const char *k, int v)
{
    size_t i = name_hash(k) & (nm->cap - 1);
    while (nm->keys[i] && strcmp(nm->keys[i], k))
        i = (i + 1) & (nm->cap - 1);
    nm->keys[i] = k;
    nm->vals[i] = v;
}

static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

/* ---- tensors ---- */

/* Copy a TensorProto's data into v (dtype, rank, shape, cdata, count). Types other than
 * float / int32 / int64 / bool keep their ONNX dtype with no data (refused if a node uses
 * them). */
static int tensor_copy(const Onnx__TensorProto *t, onnx_value *v, const char *what)
{
    const char *nm = t->name ? t->name : "";
    if (t->n_dims > H2T_MAX_RANK)
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: tensor '%s' has rank %zu (max %d)", what, nm,
                           t->n_dims, H2T_MAX_RANK);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        const char *loc = "";
        for (size_t i = 0; i < t->n_external_data; i++)
            if (t->external_data[i]->key && !strcmp(t->external_data[i]->key, "location"))
                loc = t->external_data[i]->value ? t->external_data[i]->value : "";
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "%s: tensor '%s' keeps its data in an external file ('%s'); h2tdb "
                           "reads one self-contained .onnx file: save the model with its weights "
                           "inside (onnx.save_model(m, path, save_as_external_data=False), "
                           "possible below 2 GB)",
                           what, nm, loc);
    }
    if (t->segment)
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: tensor '%s' is segmented", what, nm);
    int64_t count = 1;
    v->rank = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || (t->dims[i] > 0 && count > H2T_ONNX_MAX_ELEMS / t->dims[i]))
            return h2t_err_set(H2T_ECORRUPT, "%s: tensor '%s' has a bad dimension %lld", what, nm,
                               (long long)t->dims[i]);
        v->shape[i] = t->dims[i];
        count *= t->dims[i];
    }
    v->count = count;
    v->dtype = t->data_type;
    size_t raw = t->has_raw_data ? t->raw_data.len : 0;
    /* the data present must match the declared dimensions before anything is allocated
     * from them: a few bytes must not ask for terabytes */
    size_t have = 0, esz = 0;
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        esz = 4;
        have = t->has_raw_data ? raw / 4 : t->n_float_data;
    } else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
        esz = 8;
        have = t->has_raw_data ? raw / 8 : t->n_int64_data;
    } else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
        esz = 4;
        have = t->has_raw_data ? raw / 4 : t->n_int32_data;
    } else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) {
        esz = 1;
        have = t->has_raw_data ? raw : t->n_int32_data;
    }
    if (esz && (have != (size_t)count || (t->has_raw_data && raw != (size_t)count * esz))) {
        if (t->has_raw_data)
            return h2t_err_set(H2T_ECORRUPT,
                               "%s: tensor '%s': %zu raw bytes for %lld elements of %zu bytes",
                               what, nm, raw, (long long)count, esz);
        return h2t_err_set(H2T_ECORRUPT, "%s: tensor '%s': %zu values for %lld elements", what, nm,
                           have, (long long)count);
    }
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        v->dtype = ONNX_DT_F32;
        float *d = malloc((size_t)(count ? count : 1) * sizeof(float));
        if (!d)
            return h2t_err_set(H2T_ENOMEM, "%s: tensor '%s'", what, nm);
        v->cdata = d;
        if (t->has_raw_data) {
            if (raw != (size_t)count * 4)
                return h2t_err_set(H2T_ECORRUPT, "%s: tensor '%s': %zu raw bytes for %lld floats",
                                   what, nm, raw, (long long)count);
            if (raw)
                memcpy(d, t->raw_data.data, raw);
        } else {
            if (t->n_float_data != (size_t)count)
                return h2t_err_set(H2T_ECORRUPT, "%s: tensor '%s': %zu floats for %lld elements",
                                   what, nm, t->n_float_data, (long long)count);
            if (count)
                memcpy(d, t->float_data, (size_t)count * 4);
        }
    } else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
               t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ||
               t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) {
        /* held as int64 (onnx_graph.h); raw data is 8, 4 or 1 byte(s) per element, the
         * non-raw form int64_data or int32_data (bool too) */
        int is64 = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        int isb = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
        int64_t *d = malloc((size_t)(count ? count : 1) * sizeof(int64_t));
        if (!d)
            return h2t_err_set(H2T_ENOMEM, "%s: tensor '%s'", what, nm);
        v->cdata = d;
        if (t->has_raw_data) {
            if (raw != (size_t)count * esz)
                return h2t_err_set(H2T_ECORRUPT, "%s: tensor '%s': %zu raw bytes for %lld %s", what,
                                   nm, raw, (long long)count, isb ? "bools" : "ints");
            for (int64_t i = 0; i < count; i++) {
                if (is64) {
                    memcpy(&d[i], t->raw_data.data + 8 * i, 8);
                } else if (isb) {
                    d[i] = t->raw_data.data[i] != 0;
                } else {
                    int32_t x;
                    memcpy(&x, t->raw_data.data + 4 * i, 4);
                    d[i] = x;
                }
            }
        } else if (is64) {
            if (t->n_int64_data != (size_t)count)
                return h2t_err_set(H2T_ECORRUPT, "%s: tensor '%s': %zu ints for %lld elements",
                                   what, nm, t->n_int64_data, (long long)count);
            if (count)
                memcpy(d, t->int64_data, (size_t)count * 8);
        } else {
            if (t->n_int32_data != (size_t)count)
                return h2t_err_set(H2T_ECORRUPT, "%s: tensor '%s': %zu ints for %lld elements",
                                   what, nm, t->n_int32_data, (long long)count);
            for (int64_t i = 0; i < count; i++)
                d[i] = isb ? t->int32_data[i] != 0 : t->int32_data[i];
        }
    }
    return 0;
}

static int value_info_copy(const Onnx__ValueInfoProto *vi, onnx_value *v)
{
    v->rank = -1;
    v->dtype = ONNX_DT_F32;
    if (!vi->type)
        return 0;
    if (vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !vi->type->tensor_type) {
        v->dtype = ONNX_DT_NONTENSOR; /* sequence, map, optional: refused where used */
        return 0;
    }
    const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
    if (tt->has_elem_type)
        v->dtype = tt->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT   ? ONNX_DT_F32
                   : tt->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? ONNX_DT_I64
                                                                           : tt->elem_type;
    if (!tt->shape)
        return 0;
    if (tt->shape->n_dim > H2T_MAX_RANK)
        return h2t_err_set(H2T_EUNSUPPORTED, "input '%s' has rank %zu (max %d)", v->name,
                           tt->shape->n_dim, H2T_MAX_RANK);
    v->rank = (int)tt->shape->n_dim;
    for (int i = 0; i < v->rank; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        v->shape[i] = (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                       d->dim_value >= 0)
                          ? d->dim_value
                          : -1;
    }
    return 0;
}

/* ---- model ---- */

void onnx_model_free(h2t_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_values; i++) {
        free(m->values[i].name);
        free(m->values[i].cdata);
    }
    for (int i = 0; i < m->n_nodes; i++) {
        onnx_node *nd = &m->nodes[i];
        free(nd->name);
        free(nd->op);
        free(nd->domain);
        free(nd->in);
        free(nd->out);
        for (int a = 0; a < nd->n_attr; a++) {
            free(nd->attr[a].name);
            free(nd->attr[a].s);
            free(nd->attr[a].floats);
            free(nd->attr[a].ints);
        }
        free(nd->attr);
    }
    free(m->values);
    free(m->nodes);
    free(m->inputs);
    free(m->outputs);
    free(m->info);
    free(m->info_value);
    free(m->value_info);
}

static int new_value(h2t_model *m, const char *name, int kind)
{
    onnx_value *v = &m->values[m->n_values];
    memset(v, 0, sizeof *v);
    v->name = dupstr(name);
    if (!v->name)
        return h2t_err_set(H2T_ENOMEM, "value name");
    v->kind = kind;
    v->producer = -1;
    v->rank = -1;
    v->dtype = ONNX_DT_F32;
    return m->n_values++;
}

static int attr_copy(h2t_model *m, const Onnx__AttributeProto *a, onnx_attr *o, const char *node,
                     name_map *nm)
{
    o->name = dupstr(a->name);
    if (!o->name)
        return H2T_ENOMEM;
    o->t_value = -1;
    switch (a->type) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        o->type = ONNX_AT_F;
        o->f = a->f;
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        o->type = ONNX_AT_I;
        o->i = a->i;
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
        o->type = ONNX_AT_S;
        o->s = malloc(a->s.len + 1);
        if (!o->s)
            return H2T_ENOMEM;
        if (a->s.len)
            memcpy(o->s, a->s.data, a->s.len);
        o->s[a->s.len] = 0;
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        o->type = ONNX_AT_FS;
        o->n = (int)a->n_floats;
        o->floats = malloc((a->n_floats + 1) * sizeof(float));
        if (!o->floats)
            return H2T_ENOMEM;
        if (a->n_floats)
            memcpy(o->floats, a->floats, a->n_floats * sizeof(float));
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        o->type = ONNX_AT_IS;
        o->n = (int)a->n_ints;
        o->ints = malloc((a->n_ints + 1) * sizeof(int64_t));
        if (!o->ints)
            return H2T_ENOMEM;
        if (a->n_ints)
            memcpy(o->ints, a->ints, a->n_ints * sizeof(int64_t));
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
        o->type = ONNX_AT_T;
        if (!a->t)
            return h2t_err_set(H2T_ECORRUPT, "node '%s': attribute '%s' has no tensor", node,
                               o->name);
        char buf[300];
        snprintf(buf, sizeof buf, "%s:%s", node, o->name);
        int vi = new_value(m, buf, ONNX_VAL_CONST);
        if (vi < 0)
            return vi;
        o->t_value = vi;
        (void)nm;
        return tensor_copy(a->t, &m->values[vi], node);
    }
    default:
        o->type = ONNX_AT_OTHER;
        break;
    }
    return 0;
}

/* A Constant node's value attribute as a constant value (already created as o->t_value, or
 * built here from value_float(s) / value_int(s)). Returns the value index or < 0. */
static int constant_value(h2t_model *m, const onnx_node *nd)
{
    for (int a = 0; a < nd->n_attr; a++) {
        const onnx_attr *at = &nd->attr[a];
        if (!strcmp(at->name, "value") && at->type == ONNX_AT_T)
            return at->t_value;
        int scalar = !strcmp(at->name, "value_float") || !strcmp(at->name, "value_int");
        int list = !strcmp(at->name, "value_floats") || !strcmp(at->name, "value_ints");
        if (!scalar && !list)
            continue;
        int vi = new_value(m, "", ONNX_VAL_CONST);
        if (vi < 0)
            return vi;
        onnx_value *v = &m->values[vi];
        int isf = at->type == ONNX_AT_F || at->type == ONNX_AT_FS;
        int n = scalar ? 1 : at->n;
        v->dtype = isf ? ONNX_DT_F32 : ONNX_DT_I64;
        v->rank = scalar ? 0 : 1;
        v->shape[0] = n;
        v->count = n;
        v->cdata = malloc((size_t)(n + 1) * 8);
        if (!v->cdata)
            return h2t_err_set(H2T_ENOMEM, "constant");
        for (int i = 0; i < n; i++) {
            if (isf)
                ((float *)v->cdata)[i] = scalar ? at->f : at->floats[i];
            else
                ((int64_t *)v->cdata)[i] = scalar ? at->i : at->ints[i];
        }
        return vi;
    }
    return h2t_err_set(H2T_EUNSUPPORTED, "Constant node '%s': no supported value attribute",
                       nd->name);
}

static int graph_copy(h2t_model *m, const Onnx__GraphProto *g, const char *what)
{
    int rc = 0;
    name_map nm = {0};
    size_t nvals = g->n_initializer + g->n_input + 1;
    for (size_t i = 0; i < g->n_node; i++) {
        nvals += g->node[i]->n_output;
        nvals += g->node[i]->n_attribute + 1; /* tensor attributes, constants */
    }
    if (g->n_node > INT_MAX / 4 || nvals > INT_MAX / 4)
        return h2t_err_set(H2T_ETOOBIG, "%s: too many nodes", what);
    m->values = calloc(nvals, sizeof *m->values);
    m->nodes = calloc(g->n_node + 1, sizeof *m->nodes);
    m->inputs = calloc(g->n_input + 1, sizeof(int));
    m->outputs = calloc(g->n_output + 1, sizeof(int));
    if (!m->values || !m->nodes || !m->inputs || !m->outputs || name_map_init(&nm, nvals) < 0) {
        rc = h2t_err_set(H2T_ENOMEM, "%s: graph tables", what);
        goto out;
    }
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        int vi = new_value(m, t->name, ONNX_VAL_CONST);
        if (vi < 0 || (rc = tensor_copy(t, &m->values[vi], what)) < 0) {
            rc = vi < 0 ? vi : rc;
            goto out;
        }
        name_map_put(&nm, m->values[vi].name, vi);
    }
    for (size_t i = 0; i < g->n_input; i++) {
        const char *name = g->input[i]->name ? g->input[i]->name : "";
        if (name_map_get(&nm, name) >= 0)
            continue; /* an initializer listed as input (IR < 4): a constant */
        int vi = new_value(m, name, ONNX_VAL_INPUT);
        if (vi < 0 || (rc = value_info_copy(g->input[i], &m->values[vi])) < 0) {
            rc = vi < 0 ? vi : rc;
            goto out;
        }
        name_map_put(&nm, m->values[vi].name, vi);
        m->inputs[m->n_inputs++] = vi;
    }
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *np = g->node[i];
        onnx_node *nd = &m->nodes[m->n_nodes++];
        nd->def = NULL;
        nd->name = dupstr(np->name);
        nd->op = dupstr(np->op_type);
        nd->in = calloc(np->n_input + 1, sizeof(int));
        nd->out = calloc(np->n_output + 1, sizeof(int));
        nd->attr = calloc(np->n_attribute + 1, sizeof(onnx_attr));
        if (!nd->name || !nd->op || !nd->in || !nd->out || !nd->attr) {
            rc = h2t_err_set(H2T_ENOMEM, "%s: node", what);
            goto out;
        }
        if (np->domain && np->domain[0] && strcmp(np->domain, "ai.onnx")) {
            /* another domain's operator: listed with the unsupported ones by onnx_check */
            nd->domain = dupstr(np->domain);
            if (!nd->domain) {
                rc = h2t_err_set(H2T_ENOMEM, "%s: node", what);
                goto out;
            }
        }
        nd->n_in = (int)np->n_input;
        for (size_t k = 0; k < np->n_input; k++) {
            const char *in = np->input[k] ? np->input[k] : "";
            if (!in[0]) {
                nd->in[k] = -1;
                continue;
            }
            int vi = name_map_get(&nm, in);
            if (vi < 0) {
                rc = h2t_err_set(H2T_ECORRUPT,
                                 "%s: node '%s' (%s) reads '%s', which no earlier node, input or "
                                 "initializer defines",
                                 what, nd->name, nd->op, in);
                goto out;
            }
            nd->in[k] = vi;
        }
        for (size_t a = 0; a < np->n_attribute; a++) {
            if ((rc = attr_copy(m, np->attribute[a], &nd->attr[nd->n_attr++], nd->name, &nm)) < 0) {
                if (rc == H2T_ENOMEM)
                    h2t_err_set(rc, "%s: attributes of node '%s'", what, nd->name);
                goto out;
            }
        }
        int is_const = !strcmp(nd->op, "Constant");
        if (is_const && np->n_output != 1) {
            rc = h2t_err_set(H2T_ECORRUPT, "%s: Constant node '%s' has %zu outputs", what, nd->name,
                             np->n_output);
            goto out;
        }
        nd->n_out = (int)np->n_output;
        for (size_t k = 0; k < np->n_output; k++) {
            const char *on = np->output[k] ? np->output[k] : "";
            int vi;
            if (is_const) {
                vi = constant_value(m, nd);
                if (vi < 0) {
                    rc = vi;
                    goto out;
                }
                free(m->values[vi].name);
                m->values[vi].name = dupstr(on);
                if (!m->values[vi].name) {
                    rc = h2t_err_set(H2T_ENOMEM, "%s: names", what);
                    goto out;
                }
            } else {
                vi = new_value(m, on, ONNX_VAL_NODE);
                if (vi < 0) {
                    rc = vi;
                    goto out;
                }
                m->values[vi].producer = (int)(nd - m->nodes);
            }
            nd->out[k] = vi;
            if (on[0])
                name_map_put(&nm, m->values[vi].name, vi);
        }
    }
    for (size_t i = 0; i < g->n_output; i++) {
        const char *name = g->output[i]->name ? g->output[i]->name : "";
        int vi = name_map_get(&nm, name);
        if (vi < 0) {
            rc = h2t_err_set(H2T_ECORRUPT, "%s: graph output '%s' is not defined", what, name);
            goto out;
        }
        m->outputs[m->n_outputs++] = vi;
    }
out:
    name_map_free(&nm);
    return rc;
}

int onnx_model_parse(const void *buf, size_t len, const char *what, h2t_model *m)
{
    int rc = 0;
    Onnx__ModelProto *mp = NULL;
    if (!buf || len == 0)
        return h2t_err_set(H2T_ECORRUPT, "%s: empty file, not an ONNX model", what);
    mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp) {
        rc = h2t_err_set(H2T_ECORRUPT,
                         "%s: not an ONNX model (protobuf parse failed: truncated "
                         "or not a ModelProto)",
                         what);
        goto out;
    }
    if (!mp->graph || mp->graph->n_node == 0 || mp->graph->n_output == 0 || !mp->has_ir_version) {
        rc = h2t_err_set(H2T_ECORRUPT, "%s: not an ONNX model (no ir_version, graph or nodes)",
                         what);
        goto out;
    }
    m->opset = 0;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if ((!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) && o->has_version)
            m->opset = (int)o->version;
    }
    if (m->opset == 0)
        m->opset = 1; /* IR 3 default */
    rc = graph_copy(m, mp->graph, what);
out:
    if (mp)
        onnx__model_proto__free_unpacked(mp, NULL);
    return rc;
}

int h2t_tensor_pb_read(const void *buf, size_t len, h2t_tensor *ft, h2t_itensor *it, int *is_i64)
{
    int rc = 0;
    onnx_value v;
    memset(&v, 0, sizeof v);
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
    if (!t)
        return h2t_err_set(H2T_ECORRUPT, "not a TensorProto (protobuf parse failed)");
    if ((rc = tensor_copy(t, &v, "tensor")) < 0)
        goto out;
    if (v.dtype != ONNX_DT_F32 && !onnx_dt_is_int(v.dtype)) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "tensor '%s': data type %d", t->name ? t->name : "",
                         v.dtype);
        goto out;
    }
    *is_i64 = onnx_dt_is_int(v.dtype);
    char *name = *is_i64 ? it->name : ft->name;
    int *rank = *is_i64 ? &it->rank : &ft->rank;
    int64_t *shape = *is_i64 ? it->shape : ft->shape;
    snprintf(name, 256, "%s", t->name ? t->name : "");
    *rank = v.rank;
    memcpy(shape, v.shape, sizeof v.shape);
    if (*is_i64)
        it->data = v.cdata;
    else
        ft->data = v.cdata;
    v.cdata = NULL;
out:
    free(v.cdata);
    onnx__tensor_proto__free_unpacked(t, NULL);
    return rc;
}
