/* Head2Toe pooling (extract/pool.c) on hand-computed cases, and the default layer rule. */
#include "common/err.h"
#include "extract/extract.h"
#include "tests/test.h"

static h2t_pool_plan plan4(int64_t c, int64_t h, int64_t w, uint32_t t)
{
    int64_t shape[4] = {-1, c, h, w};
    h2t_pool_plan p;
    ASSERT_OK(h2t_pool_plan_make(4, shape, t, &p));
    return p;
}

TEST(extract_pool_paper_example)
{
    /* docs/head2toe.md: 60x60x64 at T=8192 -> n = 11, p = 5 -> 12 x 12 x 64 = 9216 */
    h2t_pool_plan p = plan4(64, 60, 60, 8192);
    ASSERT_EQ(p.kind, H2T_POOL_GRID);
    ASSERT_EQ(p.ph, 5);
    ASSERT_EQ(p.pw, 5);
    ASSERT_EQ(p.oh, 12);
    ASSERT_EQ(p.ow, 12);
    ASSERT_EQ(p.dim, 9216);
    /* x[c][h][w] = c + 100 h + 10000 w: a window's mean is c + 100 (5i+2) + 10000 (5j+2) */
    float *x = malloc(sizeof(float) * 64 * 60 * 60), *o = malloc(sizeof(float) * p.dim);
    for (int c = 0; c < 64; c++)
        for (int h = 0; h < 60; h++)
            for (int w = 0; w < 60; w++)
                x[(c * 60 + h) * 60 + w] = (float)(c + 100 * h + 10000 * w);
    h2t_pool_apply(&p, x, o);
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 12; j++)
            for (int c = 0; c < 64; c++)
                ASSERT_NEAR(o[(i * 12 + j) * 64 + c], c + 100 * (5 * i + 2) + 10000 * (5 * j + 2),
                            0.05);
    free(x);
    free(o);
}

TEST(extract_pool_remainders_dropped)
{
    /* 1 x 7 x 7 at T=8: n = floor(sqrt(8)) = 2, p = floor(7/2) = 3 -> 2 x 2; row 6 and
     * column 6 fall outside every window. */
    h2t_pool_plan p = plan4(1, 7, 7, 8);
    ASSERT_EQ(p.kind, H2T_POOL_GRID);
    ASSERT_EQ(p.ph, 3);
    ASSERT_EQ(p.dim, 4);
    float x[49], o[4];
    for (int h = 0; h < 7; h++)
        for (int w = 0; w < 7; w++)
            x[h * 7 + w] = (h == 6 || w == 6) ? 1e6f : (float)(h * 7 + w);
    h2t_pool_apply(&p, x, o);
    /* window means: rows 0-2 x cols 0-2 -> 7*1+1 = 8; cols 3-5 -> 11; rows 3-5 -> 29, 32 */
    ASSERT_NEAR(o[0], 8, 1e-5);
    ASSERT_NEAR(o[1], 11, 1e-5);
    ASSERT_NEAR(o[2], 29, 1e-5);
    ASSERT_NEAR(o[3], 32, 1e-5);
}

TEST(extract_pool_hwc_order)
{
    /* 2 x 2 x 2 at T=8: n = 2, p = 1: values unchanged, reordered from CHW to HWC */
    h2t_pool_plan p = plan4(2, 2, 2, 8);
    ASSERT_EQ(p.dim, 8);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, o[8];
    h2t_pool_apply(&p, x, o);
    float want[8] = {1, 5, 2, 6, 3, 7, 4, 8};
    for (int i = 0; i < 8; i++)
        ASSERT_NEAR(o[i], want[i], 0);
}

TEST(extract_pool_channels_ge_target)
{
    /* C >= T: global average -> C features */
    h2t_pool_plan p = plan4(16, 3, 3, 16);
    ASSERT_EQ(p.kind, H2T_POOL_GAP);
    ASSERT_EQ(p.dim, 16);
    float x[16 * 9], o[16];
    for (int c = 0; c < 16; c++)
        for (int k = 0; k < 9; k++)
            x[c * 9 + k] = (float)c + (float)(k - 4); /* spatial part averages to 0 */
    h2t_pool_apply(&p, x, o);
    for (int c = 0; c < 16; c++)
        ASSERT_NEAR(o[c], c, 1e-6);
    /* a 1x1 map (after GlobalAveragePool) with C < T: n = 2 but p = 0 -> global average */
    p = plan4(100, 1, 1, 512);
    ASSERT_EQ(p.kind, H2T_POOL_GAP);
    ASSERT_EQ(p.dim, 100);
}

TEST(extract_pool_p_zero_falls_back)
{
    /* 4 x 2 x 2 at T=64: T/C = 16, n = 4, p = floor(2/4) = 0 -> global average */
    h2t_pool_plan p = plan4(4, 2, 2, 64);
    ASSERT_EQ(p.kind, H2T_POOL_GAP);
    ASSERT_EQ(p.dim, 4);
    float x[16], o[4];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    h2t_pool_apply(&p, x, o);
    for (int c = 0; c < 4; c++)
        ASSERT_NEAR(o[c], 4 * c + 1.5, 1e-6);
    /* exact square boundary: T/C = 16 -> n = 4 with 8x8 -> p = 2 -> 4 x 4 x 4 */
    p = plan4(4, 8, 8, 64);
    ASSERT_EQ(p.kind, H2T_POOL_GRID);
    ASSERT_EQ(p.ph, 2);
    ASSERT_EQ(p.dim, 64);
    /* just below: T/C = 15 -> n = 3, p = 2 -> floor(8/2) = 4 per side: 4 x 4 x 4 */
    p = plan4(4, 8, 8, 60);
    ASSERT_EQ(p.ph, 2);
    ASSERT_EQ(p.oh, 4);
}

TEST(extract_pool_non_square)
{
    /* 1 x 4 x 8 at T=4: n = 2, ph = 2, pw = 4 -> 2 x 2 rectangular windows */
    h2t_pool_plan p = plan4(1, 4, 8, 4);
    ASSERT_EQ(p.kind, H2T_POOL_GRID);
    ASSERT_EQ(p.ph, 2);
    ASSERT_EQ(p.pw, 4);
    ASSERT_EQ(p.dim, 4);
    float x[32], o[4];
    for (int h = 0; h < 4; h++)
        for (int w = 0; w < 8; w++)
            x[h * 8 + w] = (float)(10 * h + w);
    h2t_pool_apply(&p, x, o);
    ASSERT_NEAR(o[0], 10 * 0.5 + 1.5, 1e-6);
    ASSERT_NEAR(o[1], 10 * 0.5 + 5.5, 1e-6);
    ASSERT_NEAR(o[2], 10 * 2.5 + 1.5, 1e-6);
    ASSERT_NEAR(o[3], 10 * 2.5 + 5.5, 1e-6);
    /* 3 x 1 x 40 at T=48: n = 4, ph = floor(1/4) = 0 -> global average */
    p = plan4(3, 1, 40, 48);
    ASSERT_EQ(p.kind, H2T_POOL_GAP);
}

TEST(extract_pool_tokens)
{
    /* 11 tokens x 3 at T=12: T/C = 4, p = floor(11/4) = 2 -> 5 windows, token 10 dropped */
    int64_t s[3] = {-1, 11, 3};
    h2t_pool_plan p;
    ASSERT_OK(h2t_pool_plan_make(3, s, 12, &p));
    ASSERT_EQ(p.kind, H2T_POOL_TWIN);
    ASSERT_EQ(p.ph, 2);
    ASSERT_EQ(p.oh, 5);
    ASSERT_EQ(p.dim, 15);
    float x[33], o[15];
    for (int t = 0; t < 11; t++)
        for (int c = 0; c < 3; c++)
            x[t * 3 + c] = t == 10 ? 1e6f : (float)(100 * c + t);
    h2t_pool_apply(&p, x, o);
    for (int i = 0; i < 5; i++)
        for (int c = 0; c < 3; c++)
            ASSERT_NEAR(o[i * 3 + c], 100 * c + 2 * i + 0.5, 1e-5);
    /* C >= T: mean over tokens */
    int64_t s2[3] = {-1, 4, 8};
    ASSERT_OK(h2t_pool_plan_make(3, s2, 8, &p));
    ASSERT_EQ(p.kind, H2T_POOL_TMEAN);
    ASSERT_EQ(p.dim, 8);
    float y[32], q[8];
    for (int t = 0; t < 4; t++)
        for (int c = 0; c < 8; c++)
            y[t * 8 + c] = (float)(c + t);
    h2t_pool_apply(&p, y, q);
    for (int c = 0; c < 8; c++)
        ASSERT_NEAR(q[c], c + 1.5, 1e-6);
    /* fewer tokens than windows wanted: 3 tokens x 2 at T=16 -> p = floor(3/8) = 0 -> mean */
    int64_t s3[3] = {-1, 3, 2};
    ASSERT_OK(h2t_pool_plan_make(3, s3, 16, &p));
    ASSERT_EQ(p.kind, H2T_POOL_TMEAN);
    ASSERT_EQ(p.dim, 2);
}

TEST(extract_pool_2d_and_errors)
{
    int64_t s[2] = {-1, 5};
    h2t_pool_plan p;
    ASSERT_OK(h2t_pool_plan_make(2, s, 2, &p)); /* 2-D: as is, even above T */
    ASSERT_EQ(p.kind, H2T_POOL_FLAT);
    ASSERT_EQ(p.dim, 5);
    float x[5] = {1, -2, 3, -4, 5}, o[5];
    h2t_pool_apply(&p, x, o);
    for (int i = 0; i < 5; i++)
        ASSERT_NEAR(o[i], x[i], 0);
    int64_t s5[5] = {1, 2, 3, 4, 5};
    ASSERT_EQ(h2t_pool_plan_make(5, s5, 8, &p), H2T_EUNSUPPORTED);
    ASSERT_EQ(h2t_pool_plan_make(1, s5, 8, &p), H2T_EUNSUPPORTED);
    int64_t z[4] = {1, 3, 0, 4};
    ASSERT_EQ(h2t_pool_plan_make(4, z, 8, &p), H2T_ESHAPE);
    ASSERT_EQ(h2t_pool_plan_make(4, s5, 0, &p), H2T_EINVAL);
}

TEST(extract_layer_rule_default)
{
    h2t_tensor_info t = {.name = "x", .op = "Conv", .rank = 4};
    ASSERT_EQ(h2t_layer_rule_default(&t), 1);
    t.op = "Relu";
    t.rank = 2;
    ASSERT_EQ(h2t_layer_rule_default(&t), 1);
    t.rank = 3;
    ASSERT_EQ(h2t_layer_rule_default(&t), 1);
    t.rank = 1; /* rank 1 (shapes, scalars per batch) */
    ASSERT_EQ(h2t_layer_rule_default(&t), 0);
    t.rank = 5;
    ASSERT_EQ(h2t_layer_rule_default(&t), 0);
    t.rank = 4;
    const char *pure[] = {"Reshape",   "Flatten",   "Identity", "Dropout", "Squeeze",
                          "Unsqueeze", "Transpose", "Shape",    "Constant"};
    for (size_t i = 0; i < sizeof pure / sizeof pure[0]; i++) {
        t.op = pure[i];
        ASSERT_EQ(h2t_layer_rule_default(&t), 0);
    }
    t.op = "";
    t.is_input = 1; /* the graph input */
    ASSERT_EQ(h2t_layer_rule_default(&t), 0);
    t.is_input = 0;
    t.op = "Add";
    t.is_output = 1; /* graph outputs (logits) are features too */
    ASSERT_EQ(h2t_layer_rule_default(&t), 1);
}
