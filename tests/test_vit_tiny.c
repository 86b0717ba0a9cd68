/* A vision transformer as torch.onnx.export writes it, against ONNX Runtime's values, without
 * ONNX Runtime at test time: tests/data/vit_tiny-opset{13,17}.onnx (torchvision's
 * VisionTransformer at 16 x 16 pixels, 5 tokens of 16, two layers, dynamic batch) and the
 * .expect files beside them (the input and every computed float tensor, made by
 * tests/data/make_vit_tiny.py). The executor observes every tensor of a batch of 2; each
 * expected tensor must come out with the same shape and within 1e-4 of its largest |value|,
 * and every tensor of the default layer rule must be one of the expected ones (or a view of
 * one). Tensors the executor computes at load from shapes and constants are never reported
 * and are counted apart. Any load error fails. vit_tiny_extract_vs_ort extracts both models
 * (every class-token mode) and checks each stored layer against ONNX Runtime's tensor pooled
 * by a straight-loop 3-D rule here, batch-first and sequence-first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/extract.h"
#include "extract/model.h"
#include "tests/fixture.h"
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

/* ---- the extraction of the tiny ViT against ONNX Runtime's tensors, pooled here ---- */

static void npy_write(const char *path, const char *descr, const char *shape, const void *data,
                      size_t bytes)
{
    FILE *f = fopen(path, "wb");
    ASSERT(f);
    fixture_npy_header(f, descr, shape);
    fwrite(data, 1, bytes, f);
    fclose(f);
}

/* The 3-D rule on tokens x[t * ts + c] (t < L), with the class-token mode, in double: the
 * reference's window int(n / (T / C)). */
static uint32_t pool_tokens_ref(const float *x, uint32_t L, uint32_t C, size_t ts, uint32_t T,
                                int mode, float *out)
{
    uint32_t k = 0, t0 = mode == H2T_CLS_APART, n = L - t0, win = n, nw = 1;
    if (mode != H2T_CLS_POOL)
        for (uint32_t c = 0; c < C; c++)
            out[k++] = x[c];
    if (mode == H2T_CLS_ONLY)
        return k;
    if (C < T && (uint32_t)((double)n / ((double)T / C)) > 0) {
        win = (uint32_t)((double)n / ((double)T / C));
        nw = n / win;
    }
    for (uint32_t i = 0; i < nw; i++)
        for (uint32_t c = 0; c < C; c++) {
            double a = 0;
            for (uint32_t t = t0 + i * win; t < t0 + (i + 1) * win; t++)
                a += x[t * ts + c];
            out[k++] = (float)(a / win);
        }
    return k;
}

/* Every stored layer of an extraction of vit_tiny-opsetK at T = 40 with class-token mode
 * `mode` equals ONNX Runtime's tensor (or the tensor a view moves) pooled by the rule above,
 * within TOL of the tensor's largest value. The batch axis is where ORT's tensor has the
 * batch (2) and the stored per-sample shape has the rest. */
static void check_vit_extract(int opset, int mode)
{
    char model_rel[64], expect_rel[64], shape[64];
    expect_file e;
    snprintf(model_rel, sizeof model_rel, "tests/data/vit_tiny-opset%d.onnx", opset);
    snprintf(expect_rel, sizeof expect_rel, "tests/data/vit_tiny-opset%d.expect", opset);
    ASSERT_OK(expect_read(test_src_path(expect_rel), &e));
    expect_tensor *in = &e.t[0];
    int nb = (int)in->shape[0];
    snprintf(shape, sizeof shape, "(%d, 3, 16, 16)", nb);
    npy_write("x.npy", "<f4", shape, in->data, in->count * sizeof(float));
    int32_t lab[16] = {0};
    snprintf(shape, sizeof shape, "(%d,)", nb);
    npy_write("y.npy", "<i4", shape, lab, sizeof(int32_t) * (size_t)nb);

    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path(model_rel);
    o.data_spec = "npy:x.npy,y.npy";
    o.target_size = 40;
    o.cls = mode;
    h2t_extract_plan *p;
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    const h2t_model *m = h2t_extract_plan_model(p);
    h2t_store *st;
    h2t_extract_result r;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    ASSERT_OK(h2t_extract_plan_run(p, st, &r));
    h2t_extraction *x;
    ASSERT_OK(h2t_store_extraction_get(st, r.extraction, &x));
    int n_tokens = 0, n_seq_first = 0;
    for (uint32_t l = 0; l < x->n_layers; l++) {
        const h2t_layer_info *li = &x->layers[l];
        int src = h2t_model_tensor_find(m, li->name);
        while (src >= 0 && !expect_find(&e, h2t_model_tensor(m, src)->name) &&
               is_move(h2t_model_tensor(m, src)->op) &&
               strcmp(h2t_model_tensor(m, src)->op, "Transpose"))
            src = h2t_model_tensor_src(m, src); /* a view: the same values in the same order */
        expect_tensor *t = src >= 0 ? expect_find(&e, h2t_model_tensor(m, src)->name) : NULL;
        if (!t)
            TEST_FAILF("layer %s: no expected tensor", li->name);
        /* the batch axis: where ORT's tensor has nb and otherwise the stored per-sample shape;
         * a view's (ORT has the tensor it moves) is the axis the model's shapes vary on */
        int ba = -1;
        size_t per = 1;
        for (uint32_t k = 0; k + 1 < li->rank; k++)
            per *= li->shape[k];
        ASSERT_EQ(t->count, per * (size_t)nb);
        if (!strcmp(t->name, li->name)) {
            ASSERT_EQ(t->rank, (int)li->rank);
            for (int a = 0; a < t->rank && ba < 0; a++) {
                int ok = t->shape[a] == nb;
                for (int k = 0, j = 0; k < t->rank && ok; k++)
                    if (k != a)
                        ok = t->shape[k] == (int64_t)li->shape[j++];
                ba = ok ? a : -1;
            }
        } else {
            const h2t_tensor_info *ti = h2t_model_tensor(m, h2t_model_tensor_find(m, li->name));
            for (int a = 0; a < ti->rank; a++)
                if (ti->shape[a] < 0)
                    ba = a;
        }
        ASSERT(ba >= 0);
        double scale = 0;
        for (size_t i = 0; i < t->count; i++)
            scale = fabs(t->data[i]) > scale ? fabs(t->data[i]) : scale;
        for (int s = 0; s < nb; s++) {
            float want[256], got[256];
            uint32_t dim;
            if (li->rank == 2) {
                dim = li->shape[0];
                memcpy(want, t->data + (size_t)s * dim, sizeof(float) * dim);
            } else if (li->rank == 3) {
                uint32_t L = li->shape[0], C = li->shape[1];
                const float *xs = ba == 0 ? t->data + (size_t)s * L * C : t->data + (size_t)s * C;
                dim = pool_tokens_ref(xs, L, C, ba == 0 ? C : (size_t)nb * C, 40,
                                      L == 5 ? mode : H2T_CLS_POOL, want);
                n_tokens += s == 0;
                n_seq_first += s == 0 && ba == 1;
            } else { /* the patch embedding, 16 x 2 x 2: C < T, n = 1, one 2 x 2 window */
                ASSERT_EQ(li->rank, 4);
                uint32_t C = li->shape[0], hw = li->shape[1] * li->shape[2];
                dim = C;
                for (uint32_t c = 0; c < C; c++) {
                    double a = 0;
                    for (uint32_t i = 0; i < hw; i++)
                        a += t->data[((size_t)s * C + c) * hw + i];
                    want[c] = (float)(a / hw);
                }
            }
            ASSERT_EQ(dim, li->dim);
            ASSERT(dim <= 256);
            ASSERT_OK(h2t_store_feature_get(st, r.extraction, l, (uint32_t)s, got, dim));
            for (uint32_t k = 0; k < dim; k++)
                if (!(fabs((double)got[k] - want[k]) <= TOL * scale))
                    TEST_FAILF("opset %d cls %d layer %s sample %d feature %u: %g, ORT pooled %g",
                               opset, mode, li->name, s, k, (double)got[k], (double)want[k]);
        }
    }
    printf("  vit_tiny-opset%d cls mode %d: %u layers (%d token tensors, %d sequence first), "
           "%llu features\n",
           opset, mode, x->n_layers, n_tokens, n_seq_first, (unsigned long long)x->total_dim);
    ASSERT_GT(n_tokens, 10);
    ASSERT_GT(n_seq_first, 3);
    h2t_extraction_destroy(x);
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
    expect_free(&e);
}

TEST(vit_tiny_extract_vs_ort)
{
    for (int opset = 13; opset <= 17; opset += 4)
        for (int mode = H2T_CLS_POOL; mode <= H2T_CLS_APART; mode++) {
            check_vit_extract(opset, mode);
            ASSERT_EQ(system("rm -rf st"), 0);
        }
}
