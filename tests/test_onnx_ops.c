/*
 * tests/test_onnx_ops.c - the operator table (extract/onnx_graph.h): every entry is complete
 * and consistent, and names are unique across the ops_*.c fragments; values known before the
 * run (folded per input shape, never layers); run-time bools; the refusals of models the
 * executor cannot run, each naming what is wrong (fixtures: tests/data/make_onnx_nodes.py).
 */
#include <math.h>
#include <string.h>

#include "common/err.h"
#include "extract/extract.h"
#include "extract/onnx_graph.h"
#include "tests/test.h"

TEST(onnx_op_table_entries_complete)
{
    int n = onnx_op_count();
    ASSERT_GT(n, 40);
    ASSERT(onnx_op_at(n) == NULL);
    ASSERT(onnx_op_at(-1) == NULL);
    for (int i = 0; i < n; i++) {
        const onnx_opdef *od = onnx_op_at(i);
        ASSERT(od != NULL && od->name != NULL && od->name[0]);
        ASSERT(onnx_op_find(od->name) == od); /* unique: the first entry of a name is this one */
        if (od->flags & ONNX_OPF_CONST)
            continue;
        if (!od->infer || od->min_in < 0 || od->min_in > od->max_in || od->max_out < 1 ||
            od->dt < ONNX_DTR_FLOAT || od->dt > ONNX_DTR_WHERE)
            TEST_FAILF("entry %s: incomplete bounds or rules", od->name);
        /* a view shares its input's buffer and has no kernel; every other op that can see
         * float data has one; integer and bool outputs need a static evaluation */
        if (od->flags & ONNX_OPF_VIEW) {
            if (od->run)
                TEST_FAILF("view %s has a kernel", od->name);
        } else if (od->dt != ONNX_DTR_SHAPE && !od->run) {
            TEST_FAILF("entry %s has no kernel", od->name);
        }
        if ((od->dt == ONNX_DTR_SHAPE || od->dt == ONNX_DTR_CAST || od->dt == ONNX_DTR_CMP) &&
            !od->eval)
            TEST_FAILF("entry %s makes integer values without an evaluation", od->name);
        if (od->max_in < 32 && od->param_in >> od->max_in)
            TEST_FAILF("entry %s marks a parameter input beyond max_in", od->name);
    }
    ASSERT(onnx_op_find("NoSuchOp") == NULL);
    ASSERT(onnx_op_find("Conv") != NULL && onnx_op_find("Shape") != NULL);
}

/* ---------------------------------------------------------------- static values */

static int tensor_named(const h2t_model *m, const char *name)
{
    int t = h2t_model_tensor_find(m, name);
    if (t < 0)
        TEST_FAILF("no tensor '%s'", name);
    return t;
}

typedef struct seen {
    int y, calls;
    const float *x;
    float diff[2 * 3 * 4 * 5];
    int n;
} seen;

static int on_tensor(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    seen *s = ctx;
    s->calls++;
    if (tensor == s->y && rank == 4) {
        s->n = (int)(shape[0] * shape[1] * shape[2] * shape[3]);
        for (int i = 0; i < s->n && i < (int)(sizeof s->diff / sizeof s->diff[0]); i++)
            s->diff[i] = data[i] - s->x[i];
    }
    return 0;
}

/* Swin's mask pattern: a float mask computed from the input's shape only is evaluated before
 * the run (static: the same for every input, never a layer, never reported to a callback),
 * per batch size and per slice of a split batch; the run adds it. */
TEST(onnx_static_float_mask_folded_before_run)
{
    h2t_model *m = NULL;
    ASSERT_EQ(h2t_model_load(
                  test_src_path("tests/data/nodes/test_opt_shape_only_mask_folded/model.onnx"), &m),
              0);
    int mask = tensor_named(m, "mask2"), y = tensor_named(m, "y"), drop = tensor_named(m, "drop");
    ASSERT_EQ(h2t_model_tensor(m, mask)->is_static, 1);
    ASSERT_EQ(h2t_model_tensor(m, mask)->dtype, 1);
    ASSERT_EQ(h2t_model_tensor(m, drop)->is_static, 1);
    ASSERT_EQ(h2t_model_tensor(m, drop)->dtype, 9);
    ASSERT_EQ(h2t_model_tensor(m, y)->is_static, 0);
    h2t_layer_sel sel;
    ASSERT_EQ(h2t_layers_choose(m, NULL, &sel), 0);
    ASSERT_EQ(sel.n, 1);
    ASSERT_EQ(sel.idx[0], y);
    h2t_layer_sel_free(&sel);
    ASSERT_EQ(h2t_layers_choose(m, "mask", &sel), H2T_ENOTFOUND); /* static: never a layer */
    h2t_layer_sel_free(&sel);

    h2t_exec *x = NULL;
    ASSERT_EQ(h2t_exec_create(m, 3, &x), 0);
    ASSERT_EQ(h2t_exec_observe(x, mask, 1), 0); /* accepted, never reported: s.calls == 1 */
    ASSERT_EQ(h2t_exec_observe(x, y, 1), 0);
    float in[3 * 3 * 4 * 5];
    for (int i = 0; i < 3 * 3 * 4 * 5; i++)
        in[i] = (float)(i % 17) * 0.25f - 2.f;
    for (int threads = 1; threads <= 2; threads++) {
        h2t_blas_threads(threads);
        for (int n = 1; n <= 3; n += 2) {
            seen s = {.y = y, .x = in};
            ASSERT_EQ(h2t_exec_run(x, in, n, on_tensor, &s), 0);
            ASSERT_EQ(s.calls, 1);
            ASSERT_EQ(s.n, n * 60);
            for (int i = 0; i < s.n && i < 2 * 60; i++) {
                int h = i / 5 % 4, w = i % 5;
                float want = h >= 2 || (h == 0 && w == 0) ? -100.f : 0.f;
                if (fabsf(s.diff[i] - want) > 1e-4f)
                    TEST_FAILF("n=%d threads=%d: element %d: mask %g, expected %g", n, threads, i,
                               s.diff[i], want);
            }
        }
    }
    h2t_blas_threads(1);
    h2t_exec_destroy(x);
    h2t_model_destroy(m);
}

/* Bools computed from the float data run as 0/1 in the arena; they are not layers. */
TEST(onnx_runtime_bool_not_a_layer)
{
    h2t_model *m = NULL;
    ASSERT_EQ(
        h2t_model_load(test_src_path("tests/data/nodes/test_opt_runtime_bool/model.onnx"), &m), 0);
    int neg = tensor_named(m, "neg");
    ASSERT_EQ(h2t_model_tensor(m, neg)->dtype, 9);
    ASSERT_EQ(h2t_model_tensor(m, neg)->is_static, 0);
    h2t_layer_sel sel;
    ASSERT_EQ(h2t_layers_choose(m, "^(neg|outer|sel)$", &sel), H2T_ENOTFOUND);
    h2t_layer_sel_free(&sel);
    h2t_model_destroy(m);
}

/* ---------------------------------------------------------------- refusals */

static void load_refused(const char *file, int want_rc, const char *const *parts, int n_parts)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/onnx_bad/%s", file);
    h2t_model *m = NULL;
    int rc = h2t_model_load(test_src_path(rel), &m);
    if (rc != want_rc)
        TEST_FAILF("%s: rc %d, expected %d (%s)", file, rc, want_rc, h2t_err_detail());
    for (int i = 0; i < n_parts; i++)
        if (!strstr(h2t_err_detail(), parts[i]))
            TEST_FAILF("%s: '%s' not in: %s", file, parts[i], h2t_err_detail());
    h2t_model_destroy(m);
}

TEST(onnx_unsupported_operators_listed_at_once)
{
    const char *parts[] = {"3 unsupported operators", "opset 13",
                           "FancyNorm (2 nodes, first 'fancy1')", "Swoosh (1 node, first 'swoosh')",
                           "com.microsoft::QuickGelu (1 node, first 'qg')"};
    load_refused("unsupported_many.onnx", H2T_EUNSUPPORTED, parts, 5);
}

TEST(onnx_runtime_integer_refused_naming_node)
{
    const char *parts[] = {"Cast", "'to_int'", "int64", "'x'", "run time"};
    load_refused("runtime_int.onnx", H2T_EUNSUPPORTED, parts, 5);
}

TEST(onnx_opset_too_new_refused)
{
    const char *parts[] = {"opset 99", "supported: 1 to"};
    load_refused("opset_new.onnx", H2T_EUNSUPPORTED, parts, 2);
}

TEST(onnx_external_data_refused)
{
    const char *parts[] = {"'w'", "external file", "weights.bin", "save_as_external_data=False"};
    load_refused("external_data.onnx", H2T_EUNSUPPORTED, parts, 4);
}

TEST(onnx_shape_error_names_tensor)
{
    const char *parts[] = {"tensor 'y'", "'flatten_wrong'", "Reshape", "48 elements"};
    load_refused("bad_reshape.onnx", H2T_ESHAPE, parts, 4);
}

TEST(onnx_integer_input_refused_for_the_executor)
{
    h2t_model *m = NULL;
    ASSERT_EQ(h2t_model_load(test_src_path("tests/data/onnx_bad/int_input.onnx"), &m), 0);
    h2t_exec *x = NULL;
    ASSERT_EQ(h2t_exec_create(m, 2, &x), H2T_EUNSUPPORTED);
    ASSERT(strstr(h2t_err_detail(), "'ids'") && strstr(h2t_err_detail(), "int64"));
    h2t_model_destroy(m);
}

TEST(onnx_training_dropout_refused_unless_ratio_0)
{
    const char *parts[] = {"Dropout", "'drop'", "training mode", "ratio"};
    load_refused("dropout_training.onnx", H2T_EUNSUPPORTED, parts, 4);
}

static int copy_y(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    (void)tensor;
    (void)rank;
    memcpy(ctx, data, (size_t)(shape[0] * shape[1]) * sizeof(float));
    return 0;
}

/* A Slice that reverses the batch keeps every shape batch-first; the executor must still not
 * split the batch over threads (each slice would be reversed alone). */
TEST(onnx_batch_reversed_never_split)
{
    h2t_model *m = NULL;
    ASSERT_EQ(h2t_model_load(
                  test_src_path("tests/data/nodes/test_opt_batch_axis_reversed/model.onnx"), &m),
              0);
    h2t_exec *x = NULL;
    ASSERT_EQ(h2t_exec_create(m, 4, &x), 0);
    float in[12], got[12];
    for (int i = 0; i < 12; i++)
        in[i] = (float)i;
    h2t_blas_threads(2);
    for (int observed = 0; observed <= 1; observed++) {
        int y = tensor_named(m, "y");
        ASSERT_EQ(h2t_exec_observe(x, y, observed), 0);
        memset(got, 0, sizeof got);
        ASSERT_EQ(h2t_exec_run(x, in, 4, observed ? copy_y : NULL, got), 0);
        if (!observed) {
            int64_t shape[H2T_MAX_RANK];
            int rank;
            const float *o = h2t_exec_output(x, 0, shape, &rank);
            ASSERT(o != NULL);
            memcpy(got, o, sizeof got);
        }
        for (int i = 0; i < 12; i++)
            if (got[i] != in[(3 - i / 3) * 3 + i % 3])
                TEST_FAILF("observed=%d: y[%d] = %g, expected %g", observed, i, got[i],
                           in[(3 - i / 3) * 3 + i % 3]);
    }
    h2t_blas_threads(1);
    h2t_exec_destroy(x);
    h2t_model_destroy(m);
}

/* An Add of a run-time tensor and one known before the run is no derived layer: the static
 * tensor is never reported, so its average could not be carried. */
TEST(onnx_static_operand_not_derived)
{
    h2t_model *m = NULL;
    ASSERT_EQ(h2t_model_load(
                  test_src_path("tests/data/nodes/test_opt_add_full_shape_static/model.onnx"), &m),
              0);
    h2t_tensor_lin lin;
    ASSERT_EQ(h2t_model_tensor_lin(m, tensor_named(m, "y"), &lin), 0);
    ASSERT_EQ(lin.kind, H2T_LIN_NONE);
    h2t_tensor_lin_free(&lin);
    h2t_model_destroy(m);
}

/* h2tdb extract says why a model with an integer input cannot be extracted, before it looks
 * at the data. */
TEST(onnx_extract_refuses_integer_input)
{
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path("tests/data/onnx_bad/int_input.onnx");
    o.data_spec = "npy:none.npy,none_labels.npy";
    h2t_extract_plan *p = NULL;
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EUNSUPPORTED);
    ASSERT(strstr(h2t_err_detail(), "'ids'") && strstr(h2t_err_detail(), "float32 image"));
    ASSERT(p == NULL);
}
