/*
 * tests/test_prune.c - extract/prune.h on tests/data/extract_tiny.onnx
 * (x -> conv -> relu -> gap -> flat -> fc): the pruned model holds only the nodes the kept
 * tensors need, computes them bitwise as the whole model does, and the cost counts the
 * products of the needed part.
 */
#include "common/err.h"
#include "extract/prune.h"
#include "tests/test.h"

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    ASSERT(*len > 0 && *len < sizeof(buf));
    return buf;
}

typedef struct seen {
    int tensor;
    float v[2 * 2 * 8 * 8];
    int n;
} seen;

static int keep_tensor(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    seen *s = ctx;
    if (tensor != s->tensor)
        return 0;
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= shape[d];
    ASSERT(n <= (int64_t)(sizeof(s->v) / sizeof(s->v[0])));
    memcpy(s->v, data, (size_t)n * sizeof(float));
    s->n = (int)n;
    return 0;
}

/* Run model m on a fixed batch of 2 and keep the tensor named name. */
static void run_keep(const h2t_model *m, const char *name, seen *s)
{
    float in[2 * 64];
    for (int i = 0; i < 128; i++)
        in[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    h2t_exec *x = NULL;
    ASSERT_OK(h2t_exec_create(m, 2, &x));
    s->tensor = h2t_model_tensor_find(m, name);
    ASSERT(s->tensor >= 0);
    ASSERT_OK(h2t_exec_observe(x, s->tensor, 1));
    s->n = 0;
    ASSERT_OK(h2t_exec_run(x, in, 2, keep_tensor, s));
    ASSERT(s->n > 0);
    h2t_exec_destroy(x);
}

TEST(prune_keeps_only_what_the_tensors_need)
{
    size_t len;
    const void *buf = read_all(test_src_path("tests/data/extract_tiny.onnx"), &len);
    h2t_model *full = NULL, *cut = NULL;
    ASSERT_OK(h2t_model_load_mem(buf, len, "tiny", &full));

    const char *keep[] = {"relu", "relu", "conv"};
    void *pruned = NULL;
    size_t plen = 0;
    ASSERT_OK(h2t_onnx_prune(buf, len, "tiny", keep, 3, &pruned, &plen));
    ASSERT(plen > 0 && plen < len); /* fc's weights are gone */
    ASSERT_OK(h2t_model_load_mem(pruned, plen, "pruned", &cut));
    ASSERT_EQ(h2t_model_n_tensors(cut), 3); /* x, conv, relu */
    ASSERT(h2t_model_tensor_find(cut, "gap") < 0);
    ASSERT(h2t_model_tensor_find(cut, "fc") < 0);
    ASSERT(h2t_model_tensor(cut, h2t_model_tensor_find(cut, "relu"))->is_output);
    ASSERT(h2t_model_tensor(cut, h2t_model_tensor_find(cut, "conv"))->is_output);
    ASSERT_STREQ(h2t_model_input(cut)->name, "x");

    static seen a, b;
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "conv" : "relu";
        run_keep(full, name, &a);
        run_keep(cut, name, &b);
        ASSERT_EQ(a.n, 2 * 2 * 8 * 8);
        ASSERT_EQ(b.n, a.n);
        if (memcmp(a.v, b.v, (size_t)a.n * sizeof(float)))
            TEST_FAILF("%s differs between the whole and the pruned model", name);
    }

    /* compute: conv 2x8x8 outputs x 1 weight each = 128 MACs, fc 3 outputs x 2 = 6 */
    h2t_model_cost c;
    ASSERT_OK(h2t_model_cost_get(full, keep, 1, &c));
    ASSERT_EQ(c.nodes, 5);
    ASSERT_EQ(c.nodes_needed, 2);
    ASSERT(c.macs == 134 && c.macs_needed == 128);
    ASSERT_OK(h2t_model_cost_get(full, NULL, 0, &c));
    ASSERT(c.macs_needed == c.macs && c.nodes_needed == c.nodes);
    ASSERT_OK(h2t_model_cost_get(cut, keep, 1, &c));
    ASSERT(c.macs == 128 && c.macs_needed == 128 && c.nodes == 2);
    h2t_model_destroy(cut);
    free(pruned);

    /* the last tensor needs everything: the same graph, the same output */
    const char *fc[] = {"fc"};
    ASSERT_OK(h2t_onnx_prune(buf, len, "tiny", fc, 1, &pruned, &plen));
    ASSERT_OK(h2t_model_load_mem(pruned, plen, "pruned", &cut));
    ASSERT_EQ(h2t_model_n_tensors(cut), h2t_model_n_tensors(full));
    run_keep(full, "fc", &a);
    run_keep(cut, "fc", &b);
    ASSERT_EQ(a.n, 6);
    ASSERT(b.n == a.n && !memcmp(a.v, b.v, 6 * sizeof(float)));
    h2t_model_destroy(cut);
    free(pruned);
    h2t_model_destroy(full);
}

TEST(prune_errors_name_the_input)
{
    size_t len;
    const void *buf = read_all(test_src_path("tests/data/extract_tiny.onnx"), &len);
    void *out = (void *)1;
    size_t olen = 1;
    const char *bad[] = {"relu", "nosuch"};
    ASSERT_EQ(h2t_onnx_prune(buf, len, "tiny.onnx", bad, 2, &out, &olen), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "tiny.onnx: no tensor 'nosuch'");
    ASSERT(out == NULL && olen == 0);
    const char *weight[] = {"fc_w"}; /* an initializer is not computed */
    ASSERT_EQ(h2t_onnx_prune(buf, len, "tiny.onnx", weight, 1, &out, &olen), H2T_ENOTFOUND);
    ASSERT_EQ(h2t_onnx_prune(buf, len, "tiny.onnx", bad, 0, &out, &olen), H2T_EINVAL);
    static const char junk[] = "\xff\xff\xff not a model";
    ASSERT_EQ(h2t_onnx_prune(junk, sizeof(junk), "junk.onnx", bad, 1, &out, &olen), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "junk.onnx");
    h2t_model *m = NULL;
    ASSERT_OK(h2t_model_load_mem(buf, len, "tiny", &m));
    h2t_model_cost c;
    ASSERT_EQ(h2t_model_cost_get(m, bad, 2, &c), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "nosuch");
    h2t_model_destroy(m);
}
