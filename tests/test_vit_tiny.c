/* A vision transformer as torch.onnx.export writes it, against ONNX Runtime's values, without
 * ONNX Runtime at test time: tests/data/vit_tiny-opset{13,17}.onnx (torchvision's
 * VisionTransformer at 16 x 16 pixels, 5 tokens of 16, two layers, dynamic batch) and the
 * .expect files beside them (the input and every computed float tensor, made by
 * tests/data/make_vit_tiny.py). The executor observes every tensor of a batch of 2; each
 * expected tensor must come out with the same shape and within 1e-4 of its largest |value|,
 * and every tensor of the default layer rule must be one of the expected ones (or a view of
 * one). Tensors the executor computes at load from shapes and constants are never reported
 * and are counted apart. Any load error fails. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/extract.h"
#include "extract/model.h"
#include "tests/test.h"

#define TOL 1e-4

typedef struct expect_tensor {
    char *name;
    int rank;
    int64_t shape[H2T_MAX_RANK];
    size_t count;
    float *data;
    int seen;
} expect_tensor;

typedef struct expect_file {
    expect_tensor *t;
    int n;
} expect_file;

static void expect_free(expect_file *e)
{
    for (int i = 0; e->t && i < e->n; i++) {
        free(e->t[i].name);
        free(e->t[i].data);
    }
    free(e->t);
    memset(e, 0, sizeof *e);
}

/* Parses the .expect format of make_vit_tiny.py; 0 or -1 (with a message). */
static int expect_read(const char *path, expect_file *e)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, *p, *end;
    long len = 0;
    size_t off;

    memset(e, 0, sizeof *e);
    if (!f) {
        fprintf(stderr, "  %s: cannot open\n", path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
        goto bad;
    buf[len] = 0;
    if (sscanf(buf, "h2tdb-expect 1 %d", &e->n) != 1 || e->n <= 0 || e->n > 100000)
        goto bad;
    e->t = calloc((size_t)e->n, sizeof *e->t);
    if (!e->t)
        goto bad;
    p = strchr(buf, '\n');
    for (int i = 0; i < e->n; i++) {
        expect_tensor *t = &e->t[i];
        char *tab, *nl;
        if (!p++ || !(tab = strchr(p, '\t')) || !(nl = strchr(tab, '\n')))
            goto bad;
        t->name = strndup(p, (size_t)(tab - p));
        t->count = 1;
        for (char *d = tab + 1; d < nl; t->rank++) {
            if (t->rank == H2T_MAX_RANK)
                goto bad;
            t->shape[t->rank] = strtoll(d, &end, 10);
            if (end == d || t->shape[t->rank] <= 0)
                goto bad;
            t->count *= (size_t)t->shape[t->rank];
            d = *end == ',' ? end + 1 : end;
        }
        p = nl;
    }
    off = (size_t)(p + 1 - buf);
    for (int i = 0; i < e->n; i++) {
        size_t bytes = e->t[i].count * sizeof(float);
        if (off + bytes > (size_t)len || !(e->t[i].data = malloc(bytes)))
            goto bad;
        memcpy(e->t[i].data, buf + off, bytes);
        off += bytes;
    }
    if (off != (size_t)len)
        goto bad;
    fclose(f);
    free(buf);
    return 0;
bad:
    fprintf(stderr, "  %s: not an h2tdb-expect 1 file (or truncated)\n", path);
    fclose(f);
    free(buf);
    expect_free(e);
    return -1;
}

static expect_tensor *expect_find(expect_file *e, const char *name)
{
    for (int i = 0; i < e->n; i++)
        if (!strcmp(e->t[i].name, name))
            return &e->t[i];
    return NULL;
}

typedef struct run_ctx {
    const h2t_model *m;
    expect_file *e;
    int compared, bad;
    double worst;
} run_ctx;

/* Relative error of data against t (max |data - want| / max |want|; NaN counts as an error
 * of +inf), or -1 when the shapes differ. */
static double tensor_error(const expect_tensor *t, const float *data, const int64_t *shape,
                           int rank)
{
    double scale = 0, err = 0;

    if (rank != t->rank || memcmp(shape, t->shape, (size_t)rank * sizeof *shape) != 0)
        return -1;
    for (size_t i = 0; i < t->count; i++) {
        double w = t->data[i], d = fabs((double)data[i] - w);
        if (d != d)
            d = INFINITY;
        scale = fabs(w) > scale ? fabs(w) : scale;
        err = d > err ? d : err;
    }
    return scale > 0 ? err / scale : err;
}

static int on_tensor(void *vctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    run_ctx *c = vctx;
    const h2t_tensor_info *ti = h2t_model_tensor(c->m, tensor);
    expect_tensor *t = expect_find(c->e, ti->name);
    double err;

    if (!t || t->seen++)
        return 0;
    err = tensor_error(t, data, shape, rank);
    if (err < 0) {
        fprintf(stderr, "  %s (%s): rank %d, expected %d (or a dimension differs)\n", ti->name,
                ti->op, rank, t->rank);
        c->bad++;
    } else if (!(err <= TOL)) {
        fprintf(stderr, "  %s (%s): relative error %.3g (tolerance %g)\n", ti->name, ti->op, err,
                TOL);
        c->bad++;
    }
    c->worst = err > c->worst ? err : c->worst;
    c->compared++;
    return 0;
}

/* The operators make_vit_tiny.py leaves out of the expected file (their values are those of
 * the tensor they move). */
static int is_move(const char *op)
{
    static const char *const moves[] = {"Reshape",  "Transpose", "Squeeze", "Unsqueeze", "Flatten",
                                        "Identity", "Dropout",   "Expand",  "Cast"};
    for (size_t i = 0; i < sizeof moves / sizeof moves[0]; i++)
        if (!strcmp(op, moves[i]))
            return 1;
    return 0;
}

static void check_vit(int opset)
{
    char model_rel[64], expect_rel[64];
    expect_file e;
    h2t_model *m = NULL;
    h2t_exec *x = NULL;
    run_ctx c = {0};
    int *layers = NULL, n_layers = 0, n_static = 0;
    expect_tensor *in;

    snprintf(model_rel, sizeof model_rel, "tests/data/vit_tiny-opset%d.onnx", opset);
    snprintf(expect_rel, sizeof expect_rel, "tests/data/vit_tiny-opset%d.expect", opset);
    ASSERT_OK(expect_read(test_src_path(expect_rel), &e));
    ASSERT_OK(h2t_model_load(test_src_path(model_rel), &m));
    ASSERT_EQ(h2t_model_opset(m), opset);
    in = &e.t[0];
    ASSERT_STREQ(in->name, "input");
    ASSERT_EQ(in->rank, 4);
    ASSERT_EQ(h2t_model_input(m)->shape[0], -1); /* dynamic batch */
    ASSERT_OK(h2t_exec_create(m, (int)in->shape[0], &x));
    for (int i = 0; i < h2t_model_n_tensors(m); i++)
        if (!h2t_model_tensor(m, i)->is_input && !h2t_model_tensor(m, i)->is_static)
            ASSERT_OK(h2t_exec_observe(x, i, 1));
    c.m = m;
    c.e = &e;
    ASSERT_OK(h2t_exec_run(x, in->data, (int)in->shape[0], on_tensor, &c));
    for (int i = 1; i < e.n; i++) {
        int k = h2t_model_tensor_find(m, e.t[i].name);
        if (e.t[i].seen)
            continue;
        if (k >= 0 && h2t_model_tensor(m, k)->is_static) {
            n_static++; /* computed at load from shapes and constants, never reported */
            continue;
        }
        fprintf(stderr, "  %s: expected, not computed by the executor\n", e.t[i].name);
        c.bad++;
    }
    ASSERT_OK(h2t_layers_select(m, NULL, &layers, &n_layers));
    for (int k = 0; k < n_layers; k++) {
        const h2t_tensor_info *ti = h2t_model_tensor(m, layers[k]);
        /* a view the rule takes (the first readable view of a folded tensor) holds the values
         * of the tensor it moves, which the expected file has: compared there */
        int src = layers[k];
        for (int hop = 0; hop < 8 && src >= 0 && is_move(h2t_model_tensor(m, src)->op) &&
                          !expect_find(&e, h2t_model_tensor(m, src)->name);
             hop++)
            src = h2t_model_tensor_src(m, src);
        if (src >= 0 && src != layers[k] && expect_find(&e, h2t_model_tensor(m, src)->name))
            continue;
        if (!expect_find(&e, ti->name)) {
            fprintf(stderr, "  layer %s (%s) has no expected value (rerun make_vit_tiny.py?)\n",
                    ti->name, ti->op);
            c.bad++;
        }
    }
    printf("  vit_tiny-opset%d: %d tensors compared (%d layers), %d known before the run, worst "
           "relative error %.3g\n",
           opset, c.compared, n_layers, n_static, c.worst);
    free(layers);
    h2t_exec_destroy(x);
    h2t_model_destroy(m);
    ASSERT_EQ(c.compared + n_static, e.n - 1);
    expect_free(&e);
    ASSERT_EQ(c.bad, 0);
}

TEST(vit_tiny_opset13_vs_ort)
{
    check_vit(13);
}

TEST(vit_tiny_opset17_vs_ort)
{
    check_vit(17);
}

/* The comparison itself: a file that does not parse is refused; a changed value fails. */
TEST(vit_tiny_expect_format)
{
    expect_file e;
    FILE *f = fopen("bad.expect", "wb");
    ASSERT(f);
    fputs("h2tdb-expect 1 1\nx\t2,2\n", f);
    fwrite("\0\0\0\0\0\0\0\0\0\0\0\0", 1, 12, f); /* 3 floats of the 4 */
    fclose(f);
    ASSERT_EQ(expect_read("bad.expect", &e), -1);
    ASSERT_OK(expect_read(test_src_path("tests/data/vit_tiny-opset17.expect"), &e));
    ASSERT_GT(e.n, 40);
    ASSERT_STREQ(e.t[0].name, "input");
    ASSERT_EQ(e.t[0].count, 2 * 3 * 16 * 16);
    ASSERT_STREQ(e.t[e.n - 1].name, "logits");
    ASSERT_EQ(e.t[e.n - 1].count, 2 * 10);
    {
        expect_tensor *t = &e.t[e.n - 1];
        float *v = malloc(t->count * sizeof(float));
        int64_t other[2] = {2, 5};
        double scale = 0;
        ASSERT(v);
        memcpy(v, t->data, t->count * sizeof(float));
        ASSERT(tensor_error(t, v, t->shape, 2) == 0);
        for (size_t i = 0; i < t->count; i++)
            scale = fabs(t->data[i]) > scale ? fabs(t->data[i]) : scale;
        v[3] += (float)(0.5 * TOL * scale);
        ASSERT(tensor_error(t, v, t->shape, 2) <= TOL);
        v[3] += (float)(TOL * scale);
        ASSERT(tensor_error(t, v, t->shape, 2) > TOL);
        v[3] = NAN;
        ASSERT(tensor_error(t, v, t->shape, 2) > TOL);
        ASSERT(tensor_error(t, v, other, 2) < 0);
        free(v);
    }
    expect_free(&e);
}
