/* Token tensors: the 3-D rule and its class-token modes against hand-written references, the
 * axis orders (sequence first, channels first, channels last), the forms and the layer rule on
 * tests/data/extract_tokens.onnx and extract_cls.onnx (made by
 * tests/data/make_extract_tokens.py), and extractions of both checked against the executor's
 * own tensors pooled by the references here. */
#include "common/err.h"
#include "extract/extract.h"
#include "tests/fixture.h"
#include "tests/test.h"

#include <sys/wait.h>

/* ---- references: straight loops over the stated rules ---- */

/* x[t * ts + c * cs]: the 3-D rule over tokens [t0, L) (window from the reference formula,
 * computed in double as int(n / (T / C))), after the class token's C values when lead. */
static uint32_t ref_tokens(const float *x, uint32_t L, uint32_t C, size_t ts, size_t cs, uint32_t T,
                           int mode, float *out)
{
    uint32_t k = 0;
    if (mode != H2T_CLS_POOL)
        for (uint32_t c = 0; c < C; c++)
            out[k++] = x[c * cs];
    if (mode == H2T_CLS_ONLY)
        return k;
    uint32_t t0 = mode == H2T_CLS_APART, n = L - t0;
    if (n == 0) /* the class token alone: nothing else to pool */
        return k;
    uint32_t win = n, nw = 1;
    if (C < T) {
        double groups = (double)T / (double)C;
        uint32_t p = (uint32_t)((double)n / groups);
        if (p > 0) {
            win = p;
            nw = n / p;
        }
    }
    for (uint32_t i = 0; i < nw; i++)
        for (uint32_t c = 0; c < C; c++) {
            double a = 0;
            for (uint32_t t = t0 + i * win; t < t0 + (i + 1) * win; t++)
                a += x[t * ts + c * cs];
            out[k++] = (float)(a / win);
        }
    return k;
}

/* a 4-D map: x[c * cs + h * hs + w * ws], the 4-D rule, (H, W, C) order */
static uint32_t ref_map(const float *x, uint32_t C, uint32_t H, uint32_t W, size_t cs, size_t hs,
                        size_t ws, uint32_t T, float *out)
{
    uint32_t n = 0;
    if (C < T)
        while ((n + 1) * (n + 1) <= T / C)
            n++;
    uint32_t ph = n ? H / n : 0, pw = n ? W / n : 0, oh = 1, ow = 1;
    if (ph == 0 || pw == 0)
        ph = H, pw = W;
    else
        oh = H / ph, ow = W / pw;
    uint32_t k = 0;
    for (uint32_t i = 0; i < oh; i++)
        for (uint32_t j = 0; j < ow; j++)
            for (uint32_t c = 0; c < C; c++) {
                double a = 0;
                for (uint32_t h = i * ph; h < (i + 1) * ph; h++)
                    for (uint32_t w = j * pw; w < (j + 1) * pw; w++)
                        a += x[c * cs + h * hs + w * ws];
                out[k++] = (float)(a / ((double)ph * pw));
            }
    return k;
}

static float *random_floats(size_t n, uint32_t seed)
{
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) % 20000) / 10000.0f - 1.0f;
    }
    return x;
}

static void check_tokens(uint32_t L, uint32_t C, uint32_t T, int mode, uint32_t want_dim)
{
    uint32_t dims[2] = {L, C};
    h2t_pool_plan p;
    ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NLC, dims, T, mode, &p));
    ASSERT_EQ(p.dim, want_dim);
    float *x = random_floats((size_t)L * C, L * 31 + C), *got = malloc(sizeof(float) * p.dim),
          *want = malloc(sizeof(float) * p.dim);
    ASSERT_EQ(ref_tokens(x, L, C, C, 1, T, mode, want), p.dim);
    h2t_pool_apply(&p, x, got);
    for (uint32_t k = 0; k < p.dim; k++)
        ASSERT_NEAR(got[k], want[k], 1e-6);
    free(x);
    free(got);
    free(want);
}

/* ---- the rule ---- */

TEST(extract_tokens_rule_window)
{
    /* ViT-B/16 at T = 8192: T / C = 10.67, p = int(197 / 10.67) = 18 -> 10 windows (an
     * integer T / C = 10 would give p = 19) */
    uint32_t dims[2] = {197, 768};
    h2t_pool_plan p;
    ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NLC, dims, 8192, H2T_CLS_POOL, &p));
    ASSERT_EQ(p.kind, H2T_POOL_TWIN);
    ASSERT_EQ(p.ph, 18);
    ASSERT_EQ(p.oh, 10);
    ASSERT_EQ(p.dim, 7680);
    check_tokens(197, 768, 8192, H2T_CLS_POOL, 7680);
    check_tokens(197, 768, 512, H2T_CLS_POOL, 768);      /* C >= T: mean */
    check_tokens(197, 3072, 2048, H2T_CLS_POOL, 3072);   /* C >= T: mean */
    check_tokens(11, 3, 12, H2T_CLS_POOL, 15);           /* p = 2, token 10 dropped */
    check_tokens(13, 5, 12, H2T_CLS_POOL, 5 * 2);        /* p = int(13 / 2.4) = 5, 3 dropped */
    check_tokens(3, 2, 16, H2T_CLS_POOL, 2);             /* p = int(3 / 8) = 0: mean */
    check_tokens(50, 7, 64, H2T_CLS_POOL, 7 * 10);       /* p = int(50 / 9.14) = 5 */
    check_tokens(197, 384, 1000, H2T_CLS_POOL, 384 * 2); /* p = int(197 / 2.6) = 75 */
    /* the window is exact: 192 x 768 at T = 8192 is p = 18 exactly, 10 windows */
    uint32_t d2[2] = {192, 768};
    ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NLC, d2, 8192, H2T_CLS_POOL, &p));
    ASSERT_EQ(p.ph, 18);
    ASSERT_EQ(p.oh, 10);
    /* the reference's two double divisions: int(256 / (256 / 93)) = 92, not 93 */
    uint32_t d3[2] = {256, 93};
    ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NLC, d3, 256, H2T_CLS_POOL, &p));
    ASSERT_EQ(p.ph, 92);
    ASSERT_EQ(p.oh, 2);
    /* by rank: 3-D is batch-first tokens */
    int64_t s3[3] = {-1, 197, 768};
    ASSERT_OK(h2t_pool_plan_make(3, s3, 8192, &p));
    ASSERT_EQ(p.form, H2T_FORM_NLC);
    ASSERT_EQ(p.ph, 18);
}

TEST(extract_tokens_cls_modes)
{
    /* only: token 0's C values */
    check_tokens(197, 768, 8192, H2T_CLS_ONLY, 768);
    check_tokens(5, 3, 4, H2T_CLS_ONLY, 3);
    /* apart: token 0, then the rule over 196 tokens: p = int(196 / 10.67) = 18 -> 10 */
    check_tokens(197, 768, 8192, H2T_CLS_APART, 768 + 7680);
    check_tokens(197, 768, 512, H2T_CLS_APART, 768 + 768);
    check_tokens(12, 3, 12, H2T_CLS_APART, 3 + 3 * 5); /* 11 tokens: p = 2, 5 windows */
    check_tokens(1, 4, 12, H2T_CLS_APART, 4);          /* nothing left to pool */
    /* only for token forms */
    uint32_t d[3] = {4, 5, 5};
    h2t_pool_plan p;
    ASSERT_EQ(h2t_pool_plan_form(H2T_FORM_NCHW, d, 16, H2T_CLS_ONLY, &p), H2T_EINVAL);
    ASSERT_EQ(h2t_pool_plan_form(H2T_FORM_NONE, d, 16, H2T_CLS_POOL, &p), H2T_EUNSUPPORTED);
    ASSERT_EQ(h2t_pool_plan_form(H2T_FORM_NLC, d, 16, 7, &p), H2T_EINVAL);
    d[0] = 0;
    ASSERT_EQ(h2t_pool_plan_form(H2T_FORM_NLC, d, 16, H2T_CLS_POOL, &p), H2T_ESHAPE);
}

TEST(extract_tokens_axis_orders)
{
    /* sequence first: sample s of an L x nb x C tensor is the batch-first pooling of its rows */
    const uint32_t L = 13, C = 5, nb = 3, T = 12;
    float *x = random_floats((size_t)L * nb * C, 99);
    uint32_t d[2] = {L, C};
    h2t_pool_plan p;
    for (int mode = 0; mode < 3; mode++) {
        ASSERT_OK(h2t_pool_plan_form(H2T_FORM_LNC, d, T, mode, &p));
        for (uint32_t s = 0; s < nb; s++) {
            float got[64], want[64];
            h2t_pool_apply_sample(&p, x, (int)nb, (int)s, got);
            ASSERT_EQ(ref_tokens(x + s * C, L, C, (size_t)nb * C, 1, T, mode, want), p.dim);
            for (uint32_t k = 0; k < p.dim; k++)
                ASSERT_NEAR(got[k], want[k], 1e-6); /* the same sums in the same order */
        }
    }
    /* channels first (N x C x L): tokens along the last axis */
    uint32_t dc[2] = {C, L};
    ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NCL, dc, T, H2T_CLS_POOL, &p));
    for (uint32_t s = 0; s < nb; s++) {
        float got[64], want[64];
        h2t_pool_apply_sample(&p, x, (int)nb, (int)s, got);
        ASSERT_EQ(ref_tokens(x + s * C * L, L, C, 1, L, T, H2T_CLS_POOL, want), p.dim);
        for (uint32_t k = 0; k < p.dim; k++)
            ASSERT_NEAR(got[k], want[k], 1e-6);
    }
    free(x);
    /* channels last (H x W x C = 7 x 9 x 3 at T = 12: n = 2, windows 3 x 4): the 4-D rule on
     * the right axes, features in (H, W, C) order as for NCHW */
    const uint32_t H = 7, W = 9, C4 = 3;
    float *m = random_floats((size_t)H * W * C4 * 2, 5);
    uint32_t dh[3] = {H, W, C4};
    ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NHWC, dh, 12, H2T_CLS_POOL, &p));
    ASSERT_EQ(p.kind, H2T_POOL_GRID);
    ASSERT_EQ(p.dim, 2 * 2 * 3);
    ASSERT_EQ(h2t_pool_stream_bytes(&p), 0); /* whole samples only */
    for (int s = 0; s < 2; s++) {
        float got[64], want[64];
        h2t_pool_apply_sample(&p, m, 2, s, got);
        const float *xs = m + (size_t)s * H * W * C4;
        ASSERT_EQ(ref_map(xs, C4, H, W, 1, (size_t)W * C4, C4, 12, want), p.dim);
        for (uint32_t k = 0; k < p.dim; k++)
            ASSERT_NEAR(got[k], want[k], 1e-6);
        /* the same numbers as the NCHW kernels on the transposed sample */
        float *t = malloc(sizeof(float) * H * W * C4), nchw[64];
        for (uint32_t c = 0; c < C4; c++)
            for (uint32_t i = 0; i < H * W; i++)
                t[c * H * W + i] = xs[i * C4 + c];
        h2t_pool_plan q;
        uint32_t dq[3] = {C4, H, W};
        ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NCHW, dq, 12, H2T_CLS_POOL, &q));
        h2t_pool_apply(&q, t, nchw);
        for (uint32_t k = 0; k < p.dim; k++)
            ASSERT_NEAR(got[k], nchw[k], 1e-6);
        free(t);
    }
    /* C >= T: a global average per channel */
    ASSERT_OK(h2t_pool_plan_form(H2T_FORM_NHWC, dh, 3, H2T_CLS_POOL, &p));
    ASSERT_EQ(p.kind, H2T_POOL_GAP);
    float got[3], want[3];
    h2t_pool_apply(&p, m, got);
    ref_map(m, C4, H, W, 1, (size_t)W * C4, C4, 3, want);
    for (uint32_t k = 0; k < 3; k++)
        ASSERT_NEAR(got[k], want[k], 1e-6);
    free(m);
}

/* ---- the forms and the layer rule on a graph ---- */

typedef struct want_layer {
    const char *name;
    int form;
    uint32_t dims[3]; /* per-sample, the tensor's axis order */
    uint32_t dim;     /* at T = 12 */
} want_layer;

/* extract_tokens.onnx at T = 12 (see tests/data/make_extract_tokens.py) */
static const want_layer tokens_layers[] = {
    {"patch", H2T_FORM_NCHW, {4, 4, 4}, 4},  /* T/C = 3: n = 1, one 4x4 window */
    {"h", H2T_FORM_NLC, {16, 6}, 12},        /* p = int(16 / 2) = 8: 2 windows */
    {"hb", H2T_FORM_NLC, {16, 6}, 12},       /* */
    {"q", H2T_FORM_NLC, {16, 6}, 12},        /* */
    {"merged", H2T_FORM_NLC, {16, 6}, 12},   /* a view: ctx has the heads apart */
    {"res", H2T_FORM_NLC, {16, 6}, 12},      /* */
    {"m2", H2T_FORM_LNC, {16, 5}, 10},       /* p = int(16 / 2.4) = 6: 2 windows */
    {"fo2", H2T_FORM_LNC, {16, 5}, 10},      /* a view: fo has the batch folded */
    {"lin", H2T_FORM_NHWC, {4, 4, 3}, 12},   /* T/C = 4: n = 2, 2x2 windows */
    {"pooled", H2T_FORM_FLAT, {6, 0, 0}, 6}, /* */
    {"fc", H2T_FORM_FLAT, {3, 0, 0}, 3},     /* */
};
#define N_TOKENS_LAYERS (sizeof tokens_layers / sizeof tokens_layers[0])

static const char *tokens_model(void)
{
    return test_src_path("tests/data/extract_tokens.onnx");
}

static const char *cls_model(void)
{
    return test_src_path("tests/data/extract_cls.onnx");
}

static int form_of(const h2t_model *m, const char *name)
{
    int n = h2t_model_n_tensors(m), i = h2t_model_tensor_find(m, name);
    h2t_tensor_form *f = malloc(sizeof *f * (size_t)n);
    if (i < 0 || h2t_model_tensor_forms(m, f) < 0)
        TEST_FAILF("tensor %s", name);
    int r = f[i].form;
    free(f);
    return r;
}

TEST(extract_tokens_forms_and_rule)
{
    h2t_model *m;
    ASSERT_OK(h2t_model_load(tokens_model(), &m));
    /* the batch axis from two inferences */
    ASSERT_EQ(h2t_model_tensor(m, h2t_model_tensor_find(m, "h"))->batch_axis, 0);
    ASSERT_EQ(h2t_model_tensor(m, h2t_model_tensor_find(m, "m2"))->batch_axis, 1);
    ASSERT_EQ(h2t_model_tensor(m, h2t_model_tensor_find(m, "fo"))->batch_axis, H2T_BATCH_FOLDED);
    ASSERT_EQ(h2t_model_tensor(m, h2t_model_tensor_find(m, "fl"))->batch_axis, H2T_BATCH_FOLDED);
    /* forms the rule does not take */
    ASSERT_EQ(form_of(m, "seq"), H2T_FORM_NCL); /* channels first after the conv's reshape */
    ASSERT_EQ(form_of(m, "tok"), H2T_FORM_NLC);
    ASSERT_EQ(form_of(m, "qt"), H2T_FORM_HEADS);
    ASSERT_EQ(form_of(m, "scores"), H2T_FORM_HEADS);
    ASSERT_EQ(form_of(m, "attn"), H2T_FORM_ATTN);
    ASSERT_EQ(form_of(m, "ctx"), H2T_FORM_HEADS);
    ASSERT_EQ(form_of(m, "fo"), H2T_FORM_NONE);
    ASSERT_EQ(form_of(m, "nhwc"), H2T_FORM_NHWC);
    ASSERT_EQ(form_of(m, "sf"), H2T_FORM_LNC);

    h2t_layer_sel s;
    ASSERT_OK(h2t_layers_choose(m, NULL, &s));
    ASSERT_EQ(s.n, (int)N_TOKENS_LAYERS);
    for (int l = 0; l < s.n; l++) {
        ASSERT_STREQ(h2t_model_tensor(m, s.idx[l])->name, tokens_layers[l].name);
        ASSERT_EQ(s.forms[l].form, tokens_layers[l].form);
        ASSERT_EQ(s.forms[l].cls, 0);
    }
    /* passed over, with the reason: the heads apart, the attention weights, the folded batch */
    const char *skipped[] = {"scores", "attn", "ctx", "fo"};
    ASSERT_EQ(s.n_skip, 4);
    for (int k = 0; k < 4; k++)
        ASSERT_STREQ(h2t_model_tensor(m, s.skip[k].tensor)->name, skipped[k]);
    ASSERT_CONTAINS(s.skip[1].why, "attention weights");
    ASSERT_CONTAINS(s.skip[3].why, "batch folded");
    h2t_layer_sel_free(&s);

    /* --layers: the attention weights and heads on request; a folded tensor is passed over */
    ASSERT_OK(h2t_layers_choose(m, "^(attn|scores|fo|lin)$", &s));
    ASSERT_EQ(s.n, 3);
    ASSERT_STREQ(h2t_model_tensor(m, s.idx[0])->name, "scores");
    ASSERT_EQ(s.forms[1].form, H2T_FORM_ATTN);
    ASSERT_EQ(s.forms[2].form, H2T_FORM_NHWC);
    ASSERT_EQ(s.n_skip, 1);
    ASSERT_STREQ(h2t_model_tensor(m, s.skip[0].tensor)->name, "fo");
    h2t_layer_sel_free(&s);
    ASSERT_EQ(h2t_layers_choose(m, "^fo$", &s), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "batch folded");
    h2t_layer_sel_free(&s);
    h2t_model_destroy(m);

    /* the class token: downstream of the Concat that prepends a learned token */
    ASSERT_OK(h2t_model_load(cls_model(), &m));
    ASSERT_OK(h2t_layers_choose(m, NULL, &s));
    /* the batch is fixed (1), so there is no second inference: the batch axis is the first
     * of the batch's size, and sfm (17 x 1 x 5) is sequence first */
    ASSERT_EQ(h2t_model_tensor(m, h2t_model_tensor_find(m, "sfm"))->batch_axis, 1);
    const char *names[] = {"patch", "cat", "emb", "h", "head", "sfm"};
    const int cls[] = {0, 1, 1, 1, 0, 1};
    ASSERT_EQ(s.n, 6);
    ASSERT_EQ(s.forms[5].form, H2T_FORM_LNC);
    for (int l = 0; l < 6; l++) {
        ASSERT_STREQ(h2t_model_tensor(m, s.idx[l])->name, names[l]);
        ASSERT_EQ(s.forms[l].cls, cls[l]);
    }
    ASSERT_EQ(s.forms[1].form, H2T_FORM_NLC);
    h2t_layer_sel_free(&s);
    h2t_model_destroy(m);
}

/* ---- extractions, against the executor's own tensors pooled by the references ---- */

static void write_npy(const char *path, const char *descr, const char *shape, const void *data,
                      size_t bytes)
{
    FILE *f = fopen(path, "wb");
    fixture_npy_header(f, descr, shape);
    fwrite(data, 1, bytes, f);
    fclose(f);
}

/* n float32 samples 1 x 8 x 8 as x.npy (labels 0) */
static float *write_samples(uint32_t n)
{
    float *x = random_floats(64 * (size_t)n, 4242);
    char shape[64];
    snprintf(shape, sizeof shape, "(%u, 1, 8, 8)", n);
    write_npy("x.npy", "<f4", shape, x, sizeof(float) * 64 * n);
    int32_t *y = calloc(n, sizeof *y);
    snprintf(shape, sizeof shape, "(%u,)", n);
    write_npy("y.npy", "<i4", shape, y, sizeof *y * n);
    free(y);
    return x;
}

typedef struct capture {
    const h2t_model *m;
    float *data[32];
    int64_t shape[32][H2T_MAX_RANK];
    int rank[32];
} capture;

static int on_capture(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    capture *c = ctx;
    size_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= (size_t)shape[k];
    c->data[tensor] = malloc(sizeof(float) * n);
    memcpy(c->data[tensor], data, sizeof(float) * n);
    memcpy(c->shape[tensor], shape, sizeof(int64_t) * (size_t)rank);
    c->rank[tensor] = rank;
    return 0;
}

/* Every tensor of model at batch nb (one run). */
static void capture_all(const char *model, const float *x, int nb, capture *c, h2t_model **mp)
{
    memset(c, 0, sizeof *c);
    ASSERT_OK(h2t_model_load(model, mp));
    ASSERT(h2t_model_n_tensors(*mp) <= 32);
    h2t_exec *ex;
    ASSERT_OK(h2t_exec_create(*mp, nb, &ex));
    for (int i = 0; i < h2t_model_n_tensors(*mp); i++)
        if (!h2t_model_tensor(*mp, i)->is_input)
            ASSERT_OK(h2t_exec_observe(ex, i, 1));
    ASSERT_OK(h2t_exec_run(ex, x, nb, on_capture, c));
    h2t_exec_destroy(ex);
    c->m = *mp;
}

/* The reference features of sample s of a captured tensor of nb samples. */
static uint32_t ref_layer(const capture *c, const char *name, int form, const uint32_t *d, int nb,
                          int s, uint32_t T, int mode, float *out)
{
    int i = h2t_model_tensor_find(c->m, name);
    const float *x = c->data[i];
    size_t per = (size_t)d[0] * (d[1] ? d[1] : 1) * (d[2] ? d[2] : 1);
    switch (form) {
    case H2T_FORM_FLAT:
        memcpy(out, x + (size_t)s * d[0], sizeof(float) * d[0]);
        return d[0];
    case H2T_FORM_NLC:
        return ref_tokens(x + s * per, d[0], d[1], d[1], 1, T, mode, out);
    case H2T_FORM_LNC:
        return ref_tokens(x + (size_t)s * d[1], d[0], d[1], (size_t)nb * d[1], 1, T, mode, out);
    case H2T_FORM_NCHW:
        return ref_map(x + s * per, d[0], d[1], d[2], (size_t)d[1] * d[2], d[2], 1, T, out);
    case H2T_FORM_NHWC:
        return ref_map(x + s * per, d[2], d[0], d[1], 1, (size_t)d[1] * d[2], d[2], T, out);
    }
    TEST_FAILF("form %d", form);
}

static void check_stored(const char *dir, uint32_t ext, const capture *c, const want_layer *w,
                         int nl, int nb, uint32_t T, const int *modes)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open(dir, 0, &st));
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(st, ext, &e));
    ASSERT_EQ(e->n_layers, nl);
    for (int l = 0; l < nl; l++) {
        ASSERT_STREQ(e->layers[l].name, w[l].name);
        ASSERT_EQ(e->layers[l].dim, w[l].dim);
        for (int k = 0; k < 3 && w[l].dims[k]; k++) /* per-sample shape, batch axis removed */
            ASSERT_EQ(e->layers[l].shape[k], w[l].dims[k]);
        for (int s = 0; s < nb; s++) {
            float got[64], want[64];
            ASSERT_EQ(ref_layer(c, w[l].name, w[l].form, w[l].dims, nb, s, T,
                                modes ? modes[l] : H2T_CLS_POOL, want),
                      w[l].dim);
            ASSERT_OK(h2t_store_feature_get(st, ext, (uint32_t)l, (uint32_t)s, got, w[l].dim));
            for (uint32_t k = 0; k < w[l].dim; k++)
                if (fabsf(got[k] - want[k]) > 1e-5f)
                    TEST_FAILF("layer %s sample %d feature %u: %g, want %g", w[l].name, s, k,
                               (double)got[k], (double)want[k]);
        }
    }
    h2t_extraction_destroy(e);
    h2t_store_close(st);
}

static int extract_once(const char *dir, const h2t_extract_opts *o, h2t_extract_result *r)
{
    h2t_extract_plan *p;
    int rc = h2t_extract_plan_create(o, &p);
    if (rc < 0)
        return rc;
    h2t_store *st;
    if ((rc = h2t_store_open(dir, H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st)) == 0) {
        rc = h2t_extract_plan_run(p, st, r);
        h2t_store_close(st);
    }
    h2t_extract_plan_destroy(p);
    return rc;
}

TEST(extract_tokens_pass)
{
    const int n = 5;
    float *x = write_samples(n);
    capture c;
    h2t_model *m;
    capture_all(tokens_model(), x, n, &c, &m);
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = tokens_model();
    o.data_spec = "npy:x.npy,y.npy";
    o.target_size = 12;
    o.batch = 4;
    h2t_extract_result r;
    /* one sample per forward pass, and three (the sequence-first rows interleave samples) */
    for (int fb = 1; fb <= 3; fb += 2) {
        o.forward_batch = fb;
        o.threads = fb == 1 ? 2 : 1;
        ASSERT_OK(extract_once("st", &o, &r));
        ASSERT_EQ(r.n_layers, N_TOKENS_LAYERS);
        ASSERT_CONTAINS(r.config, "forms=v1 cls=pool");
        check_stored("st", r.extraction, &c, tokens_layers, (int)N_TOKENS_LAYERS, n, 12, NULL);
    }
    /* the class-token modes need a class token */
    o.forward_batch = 1;
    o.cls = H2T_CLS_ONLY;
    ASSERT_EQ(extract_once("st", &o, &r), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "class token");
    for (int i = 0; i < 32; i++)
        free(c.data[i]);
    h2t_model_destroy(m);
    free(x);
}

TEST(extract_tokens_cls_pass)
{
    const int n = 3;
    float *x = write_samples(n);
    capture c[3];
    h2t_model *m[3];
    /* the model takes one sample at a time: capture each */
    for (int s = 0; s < n; s++)
        capture_all(cls_model(), x + 64 * s, 1, &c[s], &m[s]);
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = cls_model();
    o.data_spec = "npy:x.npy,y.npy";
    o.target_size = 24;
    h2t_extract_result r;
    uint32_t ids[3];
    /* 17 tokens x 4 at T = 24: p = int(17 / 6) = 2 -> 8 windows (16 tokens); apart: 16 tokens
     * after the class token, 8 windows; x 6 channels: p = int(17 / 4) = 4 -> 4 windows; the
     * patch map 4 x 4 x 4: n = 2, 2 x 2 windows */
    const uint32_t dims[3][5] = {
        {16, 32, 24, 6, 25}, {16, 4, 6, 6, 5}, {16, 4 + 32, 6 + 24, 6, 5 + 25}};
    for (int mode = 0; mode < 3; mode++) {
        o.cls = mode;
        ASSERT_OK(extract_once("st", &o, &r));
        ids[mode] = r.extraction;
        static const char *const tag[] = {"cls=pool", "cls=only", "cls=apart"};
        ASSERT_CONTAINS(r.config, tag[mode]);
        const want_layer w[5] = {
            {"patch", H2T_FORM_NCHW, {4, 4, 4}, dims[mode][0]},
            {"emb", H2T_FORM_NLC, {17, 4}, dims[mode][1]},
            {"h", H2T_FORM_NLC, {17, 6}, dims[mode][2]},
            {"head", H2T_FORM_FLAT, {6, 0, 0}, dims[mode][3]},
            {"sfm", H2T_FORM_LNC, {17, 5}, dims[mode][4]}, /* p = int(17 / 4.8) = 3 */
        };
        /* cat has emb's features (emb = cat + pos: not a same-shape sum of layers) */
        h2t_store *st;
        ASSERT_OK(h2t_store_open("st", 0, &st));
        h2t_extraction *e;
        ASSERT_OK(h2t_store_extraction_get(st, r.extraction, &e));
        ASSERT_EQ(e->n_layers, 6);
        for (int s = 0; s < n; s++)
            for (int l = 0, k = 0; l < 6; l++) {
                if (l == 1)
                    continue; /* cat: checked through emb's rule */
                const want_layer *wl = &w[k++];
                float got[64], want[64];
                int tok = wl->form == H2T_FORM_NLC || wl->form == H2T_FORM_LNC;
                int modes = tok ? mode : H2T_CLS_POOL;
                ASSERT_EQ(ref_layer(&c[s], wl->name, wl->form, wl->dims, 1, 0, 24, modes, want),
                          wl->dim);
                ASSERT_STREQ(e->layers[l].name, wl->name);
                ASSERT_OK(h2t_store_feature_get(st, r.extraction, (uint32_t)l, (uint32_t)s, got,
                                                wl->dim));
                for (uint32_t f = 0; f < wl->dim; f++)
                    ASSERT_NEAR(got[f], want[f], 1e-5);
            }
        h2t_extraction_destroy(e);
        h2t_store_close(st);
    }
    /* each mode is its own extraction */
    ASSERT_NE(ids[0], ids[1]);
    ASSERT_NE(ids[1], ids[2]);
    ASSERT_NE(ids[0], ids[2]);
    o.cls = H2T_CLS_APART;
    ASSERT_OK(extract_once("st", &o, &r));
    ASSERT_EQ(r.reused, 1);
    ASSERT_EQ(r.extraction, ids[2]);
    for (int s = 0; s < n; s++) {
        for (int i = 0; i < 32; i++)
            free(c[s].data[i]);
        h2t_model_destroy(m[s]);
    }
    free(x);
}

TEST(extract_tokens_v1_identity_kept)
{
    /* a CNN whose layers and pooling are those of the first rule keeps its identity */
    write_samples(2);
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path("tests/data/extract_tiny.onnx");
    o.data_spec = "npy:x.npy,y.npy";
    o.target_size = 8;
    h2t_extract_plan *p;
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    h2t_extract_result r;
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    ASSERT_OK(h2t_extract_plan_run(p, st, &r));
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
    ASSERT_CONTAINS(r.config, "layers=default-v1");
    ASSERT(strstr(r.config, "forms=") == NULL);
    ASSERT(strstr(r.config, "cls=") == NULL);
    /* with --layers too */
    o.layers_regex = "^(conv|fc)$";
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    ASSERT_OK(h2t_extract_plan_run(p, st, &r));
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
    ASSERT_EQ(r.n_layers, 2);
    ASSERT_CONTAINS(r.config, "layers=regex:^(conv|fc)$");
    ASSERT(strstr(r.config, "forms=") == NULL);
    /* a token tensor named by --layers is pooled by the forms rule: named in the identity */
    o.model_path = tokens_model();
    o.target_size = 12;
    o.layers_regex = "^(patch|h)$";
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    ASSERT_OK(h2t_extract_plan_run(p, st, &r));
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
    ASSERT_CONTAINS(r.config, "forms=v1 cls=pool");
    o.layers_regex = "^patch$";
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    ASSERT_OK(h2t_extract_plan_run(p, st, &r));
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
    ASSERT(strstr(r.config, "forms=") == NULL);
    /* --cls on a model without a class token */
    o.model_path = test_src_path("tests/data/extract_tiny.onnx");
    o.target_size = 8;
    o.layers_regex = NULL;
    o.cls = H2T_CLS_APART;
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EINVAL);
}

TEST(extract_tokens_cli)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    free(write_samples(2));
    char cmd[2048], out[16384];
    /* --plan: the layers with their form and pooling, and what was passed over; no store */
    snprintf(cmd, sizeof cmd,
             "%s extract --model %s --data npy:x.npy,y.npy --target-size 12 --plan 2>&1", bin,
             tokens_model());
    FILE *p = popen(cmd, "r");
    size_t k = fread(out, 1, sizeof out - 1, p);
    out[k] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 0);
    ASSERT_CONTAINS(out, "11 layers, 105 features per sample");
    ASSERT_CONTAINS(out, "tokens-seq-first, 6-token windows -> 2x5");
    ASSERT_CONTAINS(out, "map-channels-last, 2x2 windows -> 2x2x3");
    ASSERT_CONTAINS(out, "4 tensors passed over");
    ASSERT_CONTAINS(out, "batch folded into another axis (no axis is one sample): fo");
    ASSERT_CONTAINS(out, "attention weights: left out by default (--layers selects them): attn");
    snprintf(cmd, sizeof cmd,
             "%s extract --model %s --data npy:x.npy,y.npy --target-size 24 --cls apart --plan "
             "2>&1",
             bin, cls_model());
    p = popen(cmd, "r");
    k = fread(out, 1, sizeof out - 1, p);
    out[k] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 0);
    ASSERT_CONTAINS(out, "tokens, class token + 4-token windows of 16 -> 6 + 4x6");
    /* a bad mode is a usage error; a class-token mode without a class token names the fix */
    snprintf(cmd, sizeof cmd,
             "%s extract --model %s --data npy:x.npy,y.npy --cls first --plan 2>&1", bin,
             tokens_model());
    p = popen(cmd, "r");
    k = fread(out, 1, sizeof out - 1, p);
    out[k] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 2);
    ASSERT_CONTAINS(out, "pool, only or apart");
    snprintf(cmd, sizeof cmd, "%s extract --model %s --data npy:x.npy,y.npy --cls only --plan 2>&1",
             bin, tokens_model());
    p = popen(cmd, "r");
    k = fread(out, 1, sizeof out - 1, p);
    out[k] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 1);
    ASSERT_CONTAINS(out, "--cls-token first");
    snprintf(cmd, sizeof cmd,
             "%s extract --model %s --data npy:x.npy,y.npy --target-size 12 --cls only "
             "--cls-token first --plan 2>&1",
             bin, tokens_model());
    p = popen(cmd, "r");
    k = fread(out, 1, sizeof out - 1, p);
    out[k] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 0);
    ASSERT_CONTAINS(out, "tokens-seq-first, class token only -> 5");
}

/* extract_mha.onnx: attention as torch's MultiheadAttention exports it */
TEST(extract_tokens_mha)
{
    h2t_model *m;
    ASSERT_OK(h2t_model_load(test_src_path("tests/data/extract_mha.onnx"), &m));
    const h2t_tensor_info *a = h2t_model_tensor(m, h2t_model_tensor_find(m, "attn"));
    ASSERT_EQ(a->batch_axis, H2T_BATCH_FOLDED);
    ASSERT_EQ(a->batch_fold, 2); /* N*2 x 16 x 16 */
    ASSERT_EQ(form_of(m, "attn"), H2T_FORM_ATTN);
    ASSERT_EQ(form_of(m, "scores"), H2T_FORM_NONE); /* folded, not attention weights */
    /* 16N x 4 grows as 16 x N too, but the batch is its inner factor: never read */
    ASSERT_EQ(h2t_model_tensor(m, h2t_model_tensor_find(m, "ctxf"))->batch_fold, 16);
    ASSERT_EQ(form_of(m, "ctxf"), H2T_FORM_NONE);
    ASSERT_EQ(form_of(m, "proj"), H2T_FORM_NONE);
    h2t_layer_sel s;
    ASSERT_OK(h2t_layers_choose(m, NULL, &s));
    const char *names[] = {"patch", "qkv", "qkvb", "q", "k", "v", "out", "res", "pooled", "fc"};
    ASSERT_EQ(s.n, 10);
    for (int l = 0; l < s.n; l++)
        ASSERT_STREQ(h2t_model_tensor(m, s.idx[l])->name, names[l]);
    ASSERT_EQ(s.forms[6].form, H2T_FORM_LNC); /* the attention output, after out_proj */
    h2t_layer_sel_free(&s);
    h2t_model_destroy(m);

    /* --layers attn: N*2 x 16 x 16 read as N x 2 x 16 x 16, pooled as a 2-channel map */
    const int n = 3;
    float *x = write_samples(n);
    capture c;
    capture_all(test_src_path("tests/data/extract_mha.onnx"), x, n, &c, &m);
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path("tests/data/extract_mha.onnx");
    o.data_spec = "npy:x.npy,y.npy";
    o.target_size = 12;
    o.layers_regex = "^(attn|out)$";
    h2t_extract_result r;
    for (int fb = 1; fb <= 3; fb += 2) {
        o.forward_batch = fb;
        ASSERT_OK(extract_once("st", &o, &r));
        ASSERT_EQ(r.n_layers, 2);
        h2t_store *st;
        ASSERT_OK(h2t_store_open("st", 0, &st));
        h2t_extraction *e;
        ASSERT_OK(h2t_store_extraction_get(st, r.extraction, &e));
        ASSERT_STREQ(e->layers[0].name, "attn");
        ASSERT_EQ(e->layers[0].rank, 4);
        ASSERT_EQ(e->layers[0].shape[0], 2);
        ASSERT_EQ(e->layers[0].shape[1], 16);
        ASSERT_EQ(e->layers[0].dim, 8); /* T/C = 6: n = 2, 8 x 8 windows */
        const float *att = c.data[h2t_model_tensor_find(m, "attn")];
        for (int smp = 0; smp < n; smp++) {
            float got[8], want[8];
            ASSERT_EQ(ref_map(att + (size_t)smp * 2 * 256, 2, 16, 16, 256, 16, 1, 12, want), 8);
            ASSERT_OK(h2t_store_feature_get(st, r.extraction, 0, (uint32_t)smp, got, 8));
            for (int k = 0; k < 8; k++)
                ASSERT_NEAR(got[k], want[k], 1e-6);
            /* the attention output, sequence first */
            float go[16], wo[16];
            uint32_t d[3] = {16, 4, 0};
            ASSERT_EQ(ref_layer(&c, "out", H2T_FORM_LNC, d, n, smp, 12, H2T_CLS_POOL, wo), 12);
            ASSERT_OK(h2t_store_feature_get(st, r.extraction, 1, (uint32_t)smp, go, 12));
            for (int k = 0; k < 12; k++)
                ASSERT_NEAR(go[k], wo[k], 1e-5);
        }
        h2t_extraction_destroy(e);
        h2t_store_close(st);
    }
    for (int i = 0; i < 32; i++)
        free(c.data[i]);
    h2t_model_destroy(m);
    free(x);
}
