/* The pooling kernels of extract/pool.c: the AVX-512, AVX and generic (SSE2) kernel sets give
 * bitwise the same features (each set this CPU runs; one it lacks runs the best below it), all
 * equal a plain scalar reference written from the documented summation order (which is also
 * the order of every earlier h2tdb, so stored extractions keep their values), and pooling by
 * channel ranges gives exactly the whole-tensor vector. Shapes cover odd sizes, every vector
 * remainder (block sums: n % 16; column sums: span % 32, % 16, % 8, % 4), dropped rows and columns,
 * 1-wide windows and the block path (windows of whole rows). */
#include "common/cpu.h"
#include "common/err.h"
#include "extract/extract.h"
#include "tests/test.h"

#include <math.h>
#include <string.h>

/* The documented order (extract/pool.c, order 2), one float or double operation at a time. */
static double ref_block(const float *q, size_t n)
{
    size_t L = n >= 1024 ? 64 : 16;
    float lane[64] = {0};
    for (size_t k = 0; k < n; k++)
        lane[k % L] += q[k];
    double d[64];
    for (size_t i = 0; i < L; i++)
        d[i] = lane[i];
    for (size_t g = L / 4; g > 1; g /= 2)
        for (size_t i = 0; i < g / 2; i++)
            for (size_t e = 0; e < 4; e++)
                d[4 * i + e] = d[8 * i + e] + d[8 * i + 4 + e];
    return (d[0] + d[1]) + (d[2] + d[3]);
}

static void ref_pool4(const h2t_pool_plan *p, const float *x, float *out)
{
    size_t hw = (size_t)p->h * p->w;
    uint32_t ph = p->kind == H2T_POOL_GAP ? p->h : p->ph;
    uint32_t pw = p->kind == H2T_POOL_GAP ? p->w : p->pw;
    uint32_t oh = p->kind == H2T_POOL_GAP ? 1 : p->oh;
    uint32_t ow = p->kind == H2T_POOL_GAP ? 1 : p->ow;
    double inv = 1.0 / ((double)ph * pw);
    for (uint32_t c = 0; c < p->c; c++) {
        const float *s = x + c * hw;
        for (uint32_t i = 0; i < oh; i++)
            for (uint32_t j = 0; j < ow; j++) {
                double a = 0;
                if (pw == p->w) {
                    a = ref_block(s + (size_t)i * ph * p->w, (size_t)ph * p->w);
                } else if (pw > 4096) {
                    for (uint32_t r = i * ph; r < (i + 1) * ph; r++)
                        for (uint32_t k = 0; k < pw; k++)
                            a += s[(size_t)r * p->w + (size_t)j * pw + k];
                } else {
                    double d[4] = {0, 0, 0, 0};
                    uint32_t p4 = pw / 4 * 4;
                    for (uint32_t k = 0; k < pw; k++) {
                        const float *q = s + (size_t)i * ph * p->w + (size_t)j * pw + k;
                        float col = q[0];
                        for (uint32_t y = 1; y < ph; y++)
                            col += q[(size_t)y * p->w];
                        if (k < p4)
                            d[k % 4] += col;
                        else if (k == p4)
                            a = (d[0] + d[1]) + (d[2] + d[3]) + col;
                        else
                            a += col;
                    }
                    if (p4 == pw)
                        a = (d[0] + d[1]) + (d[2] + d[3]);
                }
                out[((size_t)i * ow + j) * p->c + c] = (float)(a * inv);
            }
    }
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Odd seeds: values whose sums depend on the order even in double: +-2^60, +-1 and +-2^-40
 * times a short mantissa (huge values that cancel, and small ones that vanish next to them or
 * survive, depending on when they are added), and plain values in [-1, 1]. Even seeds: full
 * 24-bit mantissas times 2^-12..2^12, either sign, so that every float add rounds and any
 * other grouping of the adds shows in the last bits of the means (the huge values of odd
 * seeds swamp those bits in large windows). */
static void fill(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next(&s);
        double m = 1 + (double)((r >> 20) & 7) / 8, sign = (r >> 40) & 1 ? -1 : 1;
        if (seed % 2 == 0) {
            double e = ldexp(1.0, (int)((r >> 41) % 25) - 12);
            x[i] = (float)(sign * e * (1 + (double)(r >> 44) / 1048576.0));
            continue;
        }
        switch (r % 4) {
        case 0:
            x[i] = (float)(sign * m * 1152921504606846976.0); /* 2^60 */
            break;
        case 1:
            x[i] = (float)(sign * m);
            break;
        case 2:
            x[i] = (float)(sign * m * 9.094947017729282e-13); /* 2^-40 */
            break;
        default:
            x[i] = (float)((double)(r >> 11) / 4503599627370496.0 - 1);
        }
    }
}

/* generic vs AVX vs AVX-512 vs reference vs channel ranges on one shape; 0 when all agree bitwise
 */
static int check_shape_x(uint32_t c, uint32_t h, uint32_t w, uint32_t t, uint64_t seed,
                         const float *given)
{
    int64_t shape[4] = {1, c, h, w};
    h2t_pool_plan p;
    ASSERT_OK(h2t_pool_plan_make(4, shape, t, &p));
    size_t n = (size_t)c * h * w;
    float *x = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * p.dim);
    float *a = malloc(sizeof(float) * p.dim), *r = malloc(sizeof(float) * p.dim);
    float *k = malloc(sizeof(float) * p.dim), *d = malloc(sizeof(float) * p.dim);
    float *z = malloc(sizeof(float) * p.dim);
    ASSERT(x && g && a && r && k && d && z);
    if (given)
        memcpy(x, given, sizeof(float) * n);
    else
        fill(x, n, seed);
    h2t_pool_apply_isa(&p, x, g, H2T_POOL_ISA_GENERIC);
    h2t_pool_apply_isa(&p, x, a, H2T_POOL_ISA_AVX);
    h2t_pool_apply_isa(&p, x, z, H2T_POOL_ISA_AVX512);
    h2t_pool_apply(&p, x, d);
    ref_pool4(&p, x, r);
    /* channel ranges of uneven sizes, in a shuffled order */
    uint64_t s = seed + 7;
    memset(k, 0xff, sizeof(float) * p.dim);
    uint32_t c0 = 0;
    while (c0 < c) {
        uint32_t len = 1 + (uint32_t)(rng_next(&s) % 5);
        uint32_t c1 = c0 + len < c ? c0 + len : c;
        ASSERT_OK(h2t_pool_apply_channels(&p, x, c0, c1, k));
        c0 = c1;
    }
    int bad = memcmp(g, a, sizeof(float) * p.dim) != 0 || memcmp(g, z, sizeof(float) * p.dim) ||
              memcmp(g, r, sizeof(float) * p.dim) || memcmp(g, k, sizeof(float) * p.dim) ||
              memcmp(g, d, sizeof(float) * p.dim);
    /* streaming, as a tiled producer feeds it: spans of random lengths (the same for every
     * channel of a tile), tile after tile, channel groups of random sizes inside each tile */
    size_t sb = h2t_pool_stream_bytes(&p), hw = (size_t)h * w;
    for (int isa = 0; isa <= H2T_POOL_ISA_AVX512 && sb > 0; isa++) {
        void *state = malloc(sb);
        ASSERT(state);
        memset(state, 0x7f, sb); /* garbage: a channel's state starts at its value 0 */
        memset(k, 0xff, sizeof(float) * p.dim);
        for (size_t off = 0; off < hw;) {
            size_t len = 1 + (size_t)(rng_next(&s) % (rng_next(&s) % 2 ? 40 : 3 * hw / 2 + 1));
            if (len > hw - off)
                len = hw - off;
            for (uint32_t q0 = 0; q0 < c;) {
                uint32_t q1 = q0 + 1 + (uint32_t)(rng_next(&s) % 12);
                q1 = q1 < c ? q1 : c;
                ASSERT_OK(h2t_pool_stream_isa(&p, state, x, q0, q1, off, len, k, isa));
                q0 = q1;
            }
            off += len;
        }
        if (memcmp(g, k, sizeof(float) * p.dim)) {
            fprintf(stderr, "streaming (isa %d) differs: ", isa);
            bad = 1;
        }
        free(state);
    }
    /* blocked pieces (h2t_pool_stream_blk), as the conv chains on oneDNN's primitive hand
     * them over: B = 8 and 16, every kernel set, padding lanes holding garbage, tiles of
     * random lengths, the blocks in turn within each tile */
    for (int B = 8; B <= 16 && h2t_pool_stream_blk_bytes(&p, B) > 0; B += 8) {
        size_t cp = ((size_t)c + B - 1) / B * B;
        float *xb = malloc(sizeof(float) * cp * hw);
        void *state = malloc(h2t_pool_stream_blk_bytes(&p, B));
        ASSERT(xb && state);
        for (size_t cc = 0; cc < cp; cc++)
            for (size_t q = 0; q < hw; q++)
                xb[(cc / B * hw + q) * B + cc % B] =
                    cc < c ? x[cc * hw + q] : (float)(q % 7) * 1e30f;
        for (int isa = 0; isa <= H2T_POOL_ISA_AVX512; isa++) {
            memset(state, 0x7f, h2t_pool_stream_blk_bytes(&p, B));
            memset(k, 0xff, sizeof(float) * p.dim);
            for (size_t off = 0; off < hw;) {
                size_t len = 1 + (size_t)(rng_next(&s) % (rng_next(&s) % 2 ? 40 : 3 * hw / 2 + 1));
                if (len > hw - off)
                    len = hw - off;
                for (uint32_t q0 = 0; q0 < c; q0 += (uint32_t)B) {
                    uint32_t q1 = q0 + (uint32_t)B < c ? q0 + (uint32_t)B : c;
                    ASSERT_OK(h2t_pool_stream_blk_isa(&p, state, xb + (q0 * hw + off * B), B, q0,
                                                      q1, off, len, k, isa));
                }
                off += len;
            }
            if (memcmp(g, k, sizeof(float) * p.dim)) {
                fprintf(stderr, "blocked streaming (B %d, isa %d) differs: ", B, isa);
                bad = 1;
            }
        }
        free(xb);
        free(state);
    }
    if (bad)
        fprintf(stderr,
                "shape %ux%ux%u T=%u (kind %d, %ux%u windows): generic/avx/ref/ranges/"
                "default differ\n",
                c, h, w, t, p.kind, p.ph, p.pw);
    free(x);
    free(g);
    free(a);
    free(r);
    free(k);
    free(d);
    return bad;
}

static int check_shape(uint32_t c, uint32_t h, uint32_t w, uint32_t t, uint64_t seed)
{
    return check_shape_x(c, h, w, t, seed, NULL);
}

TEST(extract_pool_isa_identical_odd_shapes)
{
    static const uint32_t shapes[][4] = {
        /* C, H, W, T */
        {3, 7, 7, 8},      {5, 13, 29, 80}, {2, 57, 57, 8}, {3, 113, 113, 48},  {1, 112, 112, 16},
        {4, 112, 112, 64}, {2, 56, 56, 48}, {7, 14, 14, 7}, {9, 28, 28, 144},   {1, 225, 225, 3},
        {2, 30, 70, 50},   {1, 9, 100, 4},  {1, 33, 67, 2}, {3, 17, 49, 12},    {16, 7, 7, 16},
        {5, 15, 15, 5},    {40, 1, 1, 40},  {6, 3, 47, 6},  {2, 96, 96, 72},    {1, 64, 200, 9},
        {1, 5, 4100, 1},   {1, 2, 8200, 4}, {2, 31, 31, 2}, {3, 11, 37, 3 * 9}, {1, 40, 40, 1600},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        bad += check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], i + 1);
    ASSERT_EQ(bad, 0);
}

TEST(extract_pool_isa_identical_random_shapes)
{
    uint64_t s = 12345;
    int bad = 0;
    for (int i = 0; i < 60; i++) {
        uint32_t c = 1 + (uint32_t)(rng_next(&s) % 9);
        uint32_t h = 1 + (uint32_t)(rng_next(&s) % 90);
        uint32_t w = 1 + (uint32_t)(rng_next(&s) % 90);
        uint32_t t = c * (1 + (uint32_t)(rng_next(&s) % 40));
        if (rng_next(&s) % 8 == 0)
            t = c; /* C >= T: global average */
        bad += check_shape(c, h, w, t, (uint64_t)i + 100);
    }
    ASSERT_EQ(bad, 0);
}

TEST(extract_pool_isa_best_and_ranges_errors)
{
    int isa = h2t_pool_isa_best();
    ASSERT(isa == H2T_POOL_ISA_GENERIC || isa == H2T_POOL_ISA_AVX || isa == H2T_POOL_ISA_AVX512);
    ASSERT_EQ(isa == H2T_POOL_ISA_AVX512, h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_AVX512F));
    int64_t s4[4] = {1, 4, 6, 6};
    h2t_pool_plan p;
    ASSERT_OK(h2t_pool_plan_make(4, s4, 16, &p));
    float x[4 * 36] = {0}, o[64];
    ASSERT_EQ(h2t_pool_apply_channels(&p, x, 3, 2, o), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "[3, 2)");
    ASSERT_EQ(h2t_pool_apply_channels(&p, x, 0, 5, o), H2T_EINVAL);
    ASSERT_OK(h2t_pool_apply_channels(&p, x, 2, 2, o)); /* empty range: nothing to do */
    /* blocked pieces: one block at a time, c0 on a block boundary, B 8 or 16 */
    static float st[16 * 16 * 4], xb[36 * 16];
    ASSERT(h2t_pool_stream_blk_bytes(&p, 16) <= sizeof st);
    ASSERT_EQ(h2t_pool_stream_blk(&p, st, xb, 16, 1, 4, 0, 36, o), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "channels [1, 4)");
    ASSERT_EQ(h2t_pool_stream_blk(&p, st, xb, 16, 0, 4, 30, 7, o), H2T_EINVAL);
    ASSERT_EQ(h2t_pool_stream_blk(&p, st, xb, 4, 0, 4, 0, 36, o), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "B = 4");
    ASSERT_EQ(h2t_pool_stream_blk_bytes(&p, 12), 0);
    ASSERT_OK(h2t_pool_stream_blk(&p, st, xb, 16, 0, 4, 0, 36, o));
    /* tokens and 2-D take only the whole range */
    int64_t s3[3] = {1, 10, 4};
    ASSERT_OK(h2t_pool_plan_make(3, s3, 8, &p));
    float tk[40], to[8];
    for (int i = 0; i < 40; i++)
        tk[i] = (float)i;
    ASSERT_EQ(h2t_pool_apply_channels(&p, tk, 0, 2, to), H2T_EINVAL);
    ASSERT_OK(h2t_pool_apply_channels(&p, tk, 0, 4, to));
    float want[8];
    h2t_pool_apply(&p, tk, want);
    ASSERT_EQ(memcmp(to, want, sizeof want), 0);
}

/* Three values whose sum depends on the order of additions even in double (2^60, -2^60, 1:
 * 1 survives only when the two large ones cancel first), placed at random in one zero
 * plane, so that each lane, each row of a column sum and each step of the double sums is
 * probed. */
TEST(extract_pool_isa_order_probe)
{
    static const uint32_t shapes[][4] = {
        {1, 4, 4, 1},
        {1, 7, 7, 1},
        {1, 9, 9, 1},
        {2, 5, 13, 2},
        {1, 8, 8, 4},
        {1, 6, 40, 4},
        {1, 12, 66, 4},
        {1, 3, 100, 1},
        {1, 9, 33, 9},
        {1, 4, 70, 2},
        {1, 16, 16, 1},
        {1, 20, 34, 4},
        {1, 33, 33, 1}, /* 64 lanes */
        {2, 40, 41, 2},
        /* several planes: the kernels that sum 2 or 4 planes at once */
        {5, 4, 4, 1},
        {6, 7, 7, 2},
        {9, 9, 9, 3},
        {4, 16, 16, 1},
        {7, 5, 13, 7},
    };
    uint64_t s = 99;
    int bad = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t n = (size_t)shapes[i][0] * shapes[i][1] * shapes[i][2];
        float *x = calloc(n, sizeof(float));
        ASSERT(x);
        for (int trial = 0; trial < 300; trial++) {
            size_t hw = (size_t)shapes[i][1] * shapes[i][2];
            size_t base = (size_t)(rng_next(&s) % shapes[i][0]) * hw; /* all in one plane */
            size_t a = base + rng_next(&s) % hw, b = base + rng_next(&s) % hw;
            size_t c = base + rng_next(&s) % hw;
            if (a == b || b == c || a == c)
                continue;
            x[a] = 1152921504606846976.0f;
            x[b] = -1152921504606846976.0f;
            x[c] = 1;
            bad += check_shape_x(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 0, x);
            x[a] = x[b] = x[c] = 0;
        }
        free(x);
    }
    ASSERT_EQ(bad, 0);
}

/* Order 1 (h2tdb before H2T_POOL_ORDER 2), for the accuracy comparison only: 16 float lanes,
 * t = sum over k of (double)lane[k] + lane[4 + k] + lane[8 + k] + lane[12 + k], then the
 * n % 16 last values one by one in double; column windows: the column sums added left to
 * right in double. */
static double ref1_block(const float *q, size_t n)
{
    float lane[16] = {0};
    size_t x = 0;
    for (; x + 16 <= n; x += 16)
        for (int l = 0; l < 16; l++)
            lane[l] += q[x + (size_t)l];
    double t = 0;
    for (int k = 0; k < 4; k++)
        t += (double)lane[k] + (double)lane[4 + k] + (double)lane[8 + k] + (double)lane[12 + k];
    for (; x < n; x++)
        t += q[x];
    return t;
}

/* window (i, j) of plane s: order 1's mean and the exact one (long double), and the mean of
 * the absolute values (the scale the error is measured against) */
static void window_sums(const h2t_pool_plan *p, const float *s, uint32_t i, uint32_t j, double *o1,
                        long double *exact, long double *mabs)
{
    uint32_t ph = p->kind == H2T_POOL_GAP ? p->h : p->ph;
    uint32_t pw = p->kind == H2T_POOL_GAP ? p->w : p->pw;
    long double e = 0, a = 0;
    for (uint32_t r = i * ph; r < (i + 1) * ph; r++)
        for (uint32_t k = 0; k < pw; k++) {
            float v = s[(size_t)r * p->w + (size_t)j * pw + k];
            e += v;
            a += fabsl((long double)v);
        }
    *exact = e / ((long double)ph * pw);
    *mabs = a / ((long double)ph * pw);
    double t = 0;
    if (pw == p->w) {
        t = ref1_block(s + (size_t)i * ph * p->w, (size_t)ph * p->w);
    } else {
        for (uint32_t k = 0; k < pw; k++) {
            const float *q = s + (size_t)i * ph * p->w + (size_t)j * pw + k;
            float col = q[0];
            for (uint32_t y = 1; y < ph; y++)
                col += q[(size_t)y * p->w];
            t += col;
        }
    }
    *o1 = (float)(t * (1.0 / ((double)ph * pw)));
}

/* Accuracy: every feature against the exact mean (long double), as |error| / mean |x| of its
 * window, for order 2 (the kernels) and order 1, on the window shapes of real backbones and
 * larger ones (a 224 x 224 plane: 784 values per lane), with ReLU6-like values in [0, 6] and
 * with values of either sign. Order 2 must be as accurate as order 1 (max error at most 1.5x
 * order 1's, plus a float rounding of the mean) and within 1e-6 of the scale. */
TEST(extract_pool_isa_accuracy_long_double)
{
    static const uint32_t shapes[][4] = {
        /* C, H, W, T */
        {1, 224, 224, 1}, {2, 112, 112, 2},  {4, 56, 56, 4},   {4, 28, 28, 4},    {8, 14, 14, 8},
        {16, 7, 7, 16},   {2, 112, 112, 32}, {2, 112, 112, 8}, {2, 112, 112, 50}, {4, 56, 56, 64},
        {8, 28, 28, 128}, {4, 14, 14, 16},   {1, 300, 300, 1}, {1, 57, 57, 4},
    };
    double worst1 = 0, worst2 = 0;
    int bad = 0;
    uint64_t s = 4242;
    for (int sign = 0; sign < 2; sign++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            int64_t shape[4] = {1, shapes[i][0], shapes[i][1], shapes[i][2]};
            h2t_pool_plan p;
            ASSERT_OK(h2t_pool_plan_make(4, shape, shapes[i][3], &p));
            size_t hw = (size_t)p.h * p.w, n = (size_t)p.c * hw;
            float *x = malloc(sizeof(float) * n), *o = malloc(sizeof(float) * p.dim);
            ASSERT(x && o);
            for (size_t k = 0; k < n; k++) {
                double u = (double)(rng_next(&s) >> 11) / 9007199254740992.0;
                x[k] = (float)(sign ? 4 * u - 2 : 6 * u);
            }
            h2t_pool_apply(&p, x, o);
            uint32_t oh = p.kind == H2T_POOL_GAP ? 1 : p.oh, ow = p.kind == H2T_POOL_GAP ? 1 : p.ow;
            double w1 = 0, w2 = 0;
            for (uint32_t c = 0; c < p.c; c++)
                for (uint32_t a = 0; a < oh; a++)
                    for (uint32_t b = 0; b < ow; b++) {
                        double o1;
                        long double ex, ma;
                        window_sums(&p, x + c * hw, a, b, &o1, &ex, &ma);
                        double e2 =
                            (double)(fabsl((long double)o[((size_t)a * ow + b) * p.c + c] - ex) /
                                     ma);
                        double e1 = (double)(fabsl((long double)o1 - ex) / ma);
                        w1 = e1 > w1 ? e1 : w1;
                        w2 = e2 > w2 ? e2 : w2;
                    }
            /* the mean itself is rounded to float: half an ulp of |mean| <= mean |x| */
            if (w2 > 1.5 * w1 + 6e-8 || w2 > 1e-6) {
                fprintf(stderr,
                        "shape %ux%ux%u T=%u, %s values: order 2 error %.3g, order 1 %.3g\n", p.c,
                        p.h, p.w, shapes[i][3], sign ? "signed" : "[0, 6]", w2, w1);
                bad++;
            }
            worst1 = w1 > worst1 ? w1 : worst1;
            worst2 = w2 > worst2 ? w2 : worst2;
            free(x);
            free(o);
        }
    fprintf(stderr, "  max |error| / mean |x|: order 2 %.3g, order 1 %.3g\n", worst2, worst1);
    ASSERT_EQ(bad, 0);
}
