/*
 * tests/test_kern.c - the hand-vectorised kernels of extract/kern.h against a naive double
 * reference: the 3x3 depthwise plane (odd and tiny sizes, strides 1 and 2 in each direction,
 * paddings 0 to 2 on each side, the three activations) through every dispatch path (portable
 * C, AVX+FMA and AVX-512F when the CPU has them; a path the CPU lacks runs the best one below),
 * inputs allocated to their exact size so that ASan sees any read past a row or plane; the
 * epilogue, bitwise the same on every path.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "extract/kern.h"
#include "tests/test.h"

static float krand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 16384.f - 2.f;
}

static float act_ref(double v, int act, float lo, float hi)
{
    float f = (float)v;
    if (act == H2T_ACT_RELU)
        return f > 0.f ? f : 0.f;
    if (act == H2T_ACT_CLIP)
        return f < lo ? lo : f > hi ? hi : f;
    return f;
}

static void dw_naive(const float *x, const h2t_dw_geo *g, const float *w9, float bias, int act,
                     float lo, float hi, float *y)
{
    for (int64_t oh = 0; oh < g->OH; oh++)
        for (int64_t ow = 0; ow < g->OW; ow++) {
            double acc = bias;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    int64_t ih = oh * g->sh - g->pt + i, iw = ow * g->sw - g->pl + j;
                    if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W)
                        acc += (double)w9[3 * i + j] * x[ih * g->W + iw];
                }
            y[oh * g->OW + ow] = act_ref(acc, act, lo, hi);
        }
}

TEST(kern_dw3x3_matches_naive_every_isa)
{
    static const int sizes[][2] = {{1, 1},  {2, 3},   {3, 3},   {5, 7},   {7, 7},   {8, 8},
                                   {9, 10}, {13, 14}, {16, 17}, {17, 31}, {28, 28}, {33, 9}};
    unsigned s = 7;
    int n_cases = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int sh = 1; sh <= 2; sh++)
            for (int sw = 1; sw <= 2; sw++)
                for (int pad = 0; pad < 9; pad++) {
                    int pt = pad % 3, pl = pad / 3, pb = (pad + 1) % 3, pr = pl;
                    h2t_dw_geo g = {sizes[k][0], sizes[k][1], 0, 0, sh, sw, pt, pl};
                    g.OH = (g.H + pt + pb - 3) / sh + 1;
                    g.OW = (g.W + pl + pr - 3) / sw + 1;
                    if (g.H + pt + pb < 3 || g.W + pl + pr < 3)
                        continue;
                    int act = (int)(k + (size_t)pad) % 3;
                    float lo = -0.5f, hi = 1.5f;
                    size_t nx = (size_t)(g.H * g.W), ny = (size_t)(g.OH * g.OW);
                    float *x = malloc(nx * sizeof *x), w9[9], bias = krand(&s);
                    float *want = malloc(ny * sizeof *want), *y[3];
                    for (size_t i = 0; i < nx; i++)
                        x[i] = krand(&s);
                    for (int i = 0; i < 9; i++)
                        w9[i] = krand(&s);
                    dw_naive(x, &g, w9, bias, act, lo, hi, want);
                    for (int isa = 0; isa < 3; isa++) {
                        y[isa] = malloc(ny * sizeof(float));
                        h2t_kern_dw3x3_isa(isa, x, &g, w9, bias, act, lo, hi, y[isa]);
                    }
                    for (size_t i = 0; i < ny; i++) {
                        float tol = 1e-5f * (1.f + fabsf(want[i]));
                        for (int isa = 0; isa < 3; isa++)
                            if (fabsf(y[isa][i] - want[i]) > tol)
                                TEST_FAILF("H %lld W %lld s %d,%d pads %d,%d,%d act %d: y[%zu] "
                                           "isa %d %g want %g",
                                           (long long)g.H, (long long)g.W, sh, sw, pt, pl, pb, act,
                                           i, isa, y[isa][i], want[i]);
                    }
                    n_cases++;
                    free(x);
                    free(want);
                    for (int isa = 0; isa < 3; isa++)
                        free(y[isa]);
                }
    ASSERT_GT(n_cases, 300);
    /* a set asked for runs when the CPU has it, else the best one below */
    ASSERT_EQ(h2t_kern_isa_run(H2T_ISA_AVX512), h2t_kern_isa());
    ASSERT_EQ(h2t_kern_isa_run(H2T_ISA_C), H2T_ISA_C);
    ASSERT(h2t_kern_isa_run(H2T_ISA_AVX_FMA) <= H2T_ISA_AVX_FMA);
}

/* Each instruction set this CPU runs, forced with H2T_CPU_MAX as a deployment would: the
 * dispatcher's choice follows the limit, and every set gives the naive result on the shapes of
 * MobileNetV2's depthwise layers (wide rows: several full 16- and 8-column blocks). */
TEST(kern_dw3x3_forced_levels)
{
    static const char *levels[] = {"sse2", "avx2", "avx512"};
    static const int want_isa[] = {H2T_ISA_C, H2T_ISA_AVX_FMA, H2T_ISA_AVX512};
    static const int sides[] = {112, 56, 28, 14, 7};
    unsigned s = 5;
    for (int l = 0; l < 3; l++) {
        ASSERT_EQ(setenv("H2T_CPU_MAX", levels[l], 1), 0);
        h2t_cpu_reset();
        int isa = h2t_kern_isa();
        unsigned f = h2t_cpu_features();
        if (want_isa[l] == H2T_ISA_AVX512 && (f & H2T_CPU_AVX512F) && (f & H2T_CPU_FMA))
            ASSERT_EQ(isa, H2T_ISA_AVX512);
        else
            ASSERT(isa <= want_isa[l]);
        for (size_t k = 0; k < sizeof sides / sizeof sides[0]; k++)
            for (int st = 1; st <= 2; st++) {
                int H = sides[k] * st;
                h2t_dw_geo g = {H, H, sides[k], sides[k], st, st, 1, 1};
                size_t nx = (size_t)H * H, ny = (size_t)(g.OH * g.OW);
                float *x = malloc(nx * sizeof *x), w9[9], *want = malloc(ny * sizeof *want);
                float *y = malloc(ny * sizeof *y);
                for (size_t i = 0; i < nx; i++)
                    x[i] = krand(&s);
                for (int i = 0; i < 9; i++)
                    w9[i] = krand(&s);
                dw_naive(x, &g, w9, 0.5f, H2T_ACT_CLIP, 0.f, 6.f, want);
                h2t_kern_dw3x3(x, &g, w9, 0.5f, H2T_ACT_CLIP, 0.f, 6.f, y);
                for (size_t i = 0; i < ny; i++)
                    if (fabsf(y[i] - want[i]) > 1e-5f * (1.f + fabsf(want[i])))
                        TEST_FAILF("%s side %d stride %d: y[%zu] %g want %g", levels[l], sides[k],
                                   st, i, y[i], want[i]);
                free(x);
                free(want);
                free(y);
            }
    }
    ASSERT_EQ(unsetenv("H2T_CPU_MAX"), 0);
    h2t_cpu_reset();
}

TEST(kern_dw3x3_activation_edges)
{
    /* NaN kept by Clip and zeroed by Relu, as the unfused kernels do */
    h2t_dw_geo g = {1, 12, 1, 10, 1, 1, 0, 0};
    float x[12], w9[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0}, y[10];
    for (int i = 0; i < 12; i++)
        x[i] = (float)i - 4.f;
    x[1 + 3] = NAN;
    g.pt = 1; /* only the middle kernel row meets the single input row */
    for (int isa = 0; isa < 3; isa++) {
        h2t_kern_dw3x3_isa(isa, x, &g, w9, 0.f, H2T_ACT_CLIP, -2.f, 3.f, y);
        ASSERT(isnan(y[3]));
        ASSERT(y[5] == 2.f);
        ASSERT(y[0] == -2.f && y[9] == 3.f);
        h2t_kern_dw3x3_isa(isa, x, &g, w9, 0.f, H2T_ACT_RELU, 0.f, 0.f, y);
        ASSERT(y[3] == 0.f && !signbit(y[3]));
        ASSERT(y[5] == 2.f && y[0] == 0.f);
        ASSERT(y[9] == 6.f);
    }
    float v[4] = {NAN, -1.f, 2.f, 9.f}, o[4];
    h2t_kern_act(v, 4, H2T_ACT_CLIP, 0.f, 6.f, o);
    ASSERT(isnan(o[0]) && o[1] == 0.f && o[2] == 2.f && o[3] == 6.f);
}

TEST(kern_epilogue_every_isa_bitwise_and_stagewise)
{
    /* every stage combination, odd lengths: AVX and C bitwise equal, and each stage equal to
     * the separate passes of the unfused kernels */
    enum { N = 45 };
    unsigned s = 3;
    float src[N], res[N];
    for (int i = 0; i < N; i++) {
        src[i] = krand(&s) * 4.f;
        res[i] = krand(&s);
    }
    src[7] = NAN;
    for (int combo = 0; combo < 32; combo++) {
        for (int n = 0; n <= N; n += 11) {
            float out[3][N], conv[3][N], bn[3][N], add[3][N];
            for (int isa = 0; isa < 3; isa++) {
                h2t_epi e = {0};
                e.has_bias = combo & 1;
                e.bias = 0.25f;
                e.conv_out = combo & 1 ? conv[isa] : NULL;
                e.has_bn = (combo >> 1) & 1;
                e.bn_a = 1.5f;
                e.bn_b = -0.75f;
                e.bn_out = bn[isa];
                e.res = (combo >> 2) & 1 ? res : NULL;
                e.add_out = add[isa];
                e.act = (combo >> 3) % 3;
                e.lo = -1.f;
                e.hi = 2.f;
                e.out = out[isa];
                h2t_kern_epilogue_isa(isa, src, n, &e);
            }
            ASSERT(memcmp(out[0], out[1], (size_t)n * sizeof(float)) == 0);
            ASSERT(memcmp(out[0], out[2], (size_t)n * sizeof(float)) == 0);
            for (int i = 0; i < n; i++) {
                if (i == 7)
                    continue;
                float v = src[i];
                if (combo & 1) {
                    v = v + 0.25f;
                    ASSERT(conv[0][i] == v && conv[1][i] == v && conv[2][i] == v);
                }
                if ((combo >> 1) & 1) {
                    v = v * 1.5f + -0.75f;
                    ASSERT(bn[0][i] == v && bn[1][i] == v && bn[2][i] == v);
                }
                if ((combo >> 2) & 1) {
                    v = v + res[i];
                    ASSERT(add[0][i] == v && add[1][i] == v && add[2][i] == v);
                }
                float want = v;
                h2t_kern_act(&v, 1, (combo >> 3) % 3, -1.f, 2.f, &want);
                ASSERT(out[0][i] == want);
            }
            if (n > 7 && (combo >> 3) % 3 != H2T_ACT_RELU)
                ASSERT(isnan(out[0][7]));
        }
    }
}
