/*
 * tests/test_nn.c - the numeric kernels of extract/nn.h against double-precision references
 * written out here, hand-computed values, and bitwise equality across thread counts.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/nn.h"
#include "tests/test.h"

static uint64_t rng_state = 88172645463325252ull;
static float frand(float lo, float hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}

static float *falloc(int64_t n)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    ASSERT(p);
    return p;
}

static double rel(double got, double want)
{
    double d = fabs(got - want);
    return want == 0 ? d : d / fabs(want);
}

TEST(nn_exp_accuracy_and_edges)
{
    int64_t n = 2000001;
    float *x = falloc(n), *y = falloc(n);
    for (int64_t i = 0; i < n; i++)
        x[i] = -87.f + 175.5f * (float)i / (float)(n - 1);
    h2t_nn_exp(x, n, y);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = rel(y[i], exp((double)x[i]));
        worst = r > worst ? r : worst;
    }
    if (worst > 2.5e-7)
        TEST_FAILF("exp max relative error %g", worst);
    float e[6] = {-100.f, 100.f, NAN, 0.f, -INFINITY, INFINITY}, f[6];
    h2t_nn_exp(e, 6, f);
    ASSERT(f[0] == 0.f && isinf(f[1]) && f[1] > 0 && isnan(f[2]) && f[3] == 1.f && f[4] == 0.f &&
           isinf(f[5]));
    free(x);
    free(y);
}

TEST(nn_erf_accuracy_and_edges)
{
    int64_t n = 1600001;
    float *x = falloc(n + 8), *y = falloc(n + 8);
    for (int64_t i = 0; i < n; i++)
        x[i] = -8.f + 16.f * (float)i / (float)(n - 1);
    const float extra[8] = {1e-30f, -1e-20f, 1e-7f, 3e-4f, 0.921875f, 0.9218749f, 3.9f, 0.f};
    memcpy(x + n, extra, sizeof extra);
    h2t_nn_erf(2, x, n + 8, y);
    double worst = 0;
    for (int64_t i = 0; i < n + 8; i++) {
        double r = rel(y[i], erf((double)x[i]));
        worst = r > worst ? r : worst;
    }
    if (worst > 2.4e-7)
        TEST_FAILF("erf max relative error %g", worst);
    float e[4] = {NAN, INFINITY, -INFINITY, -0.f}, f[4];
    h2t_nn_erf(1, e, 4, f);
    ASSERT(isnan(f[0]) && f[1] == 1.f && f[2] == -1.f && f[3] == 0.f);
    free(x);
    free(y);
}

TEST(nn_gelu_both_forms)
{
    int64_t n = 100003;
    float *x = falloc(n), *y = falloc(n), *y2 = falloc(n);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand(-9.f, 9.f);
    for (int approx = 0; approx < 2; approx++) {
        h2t_nn_gelu(1, x, n, approx, y);
        h2t_nn_gelu(3, x, n, approx, y2);
        ASSERT(!memcmp(y, y2, (size_t)n * sizeof(float)));
        for (int64_t i = 0; i < n; i++) {
            double v = x[i];
            double want = approx ? 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                                 : 0.5 * v * (1 + erf(v / sqrt(2.)));
            if (fabs(y[i] - want) > 1e-6 * (1 + fabs(want)))
                TEST_FAILF("gelu(%g) approx=%d: %g vs %g", v, approx, y[i], want);
        }
    }
    /* hand-computed: gelu(1) = 0.5 (1 + erf(0.7071)) = 0.8413447; tanh form 0.8411920 */
    float one = 1.f, g0, g1;
    h2t_nn_gelu(1, &one, 1, 0, &g0);
    h2t_nn_gelu(1, &one, 1, 1, &g1);
    ASSERT(fabsf(g0 - 0.8413447f) < 1e-6f && fabsf(g1 - 0.8411920f) < 1e-6f);
    free(x);
    free(y);
    free(y2);
}

static void softmax_ref(const float *x, int64_t len, int64_t inner, int is_log, double *y)
{
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < len; i++)
        mx = x[i * inner] > mx ? x[i * inner] : mx;
    for (int64_t i = 0; i < len; i++)
        s += exp(x[i * inner] - mx);
    for (int64_t i = 0; i < len; i++)
        y[i] = is_log ? x[i * inner] - mx - log(s) : exp(x[i * inner] - mx) / s;
}

TEST(nn_softmax_rows_and_strided)
{
    const int64_t lens[4] = {1, 7, 197, 1000};
    for (int li = 0; li < 4; li++)
        for (int is_log = 0; is_log < 2; is_log++) {
            int64_t len = lens[li], rows = 13, n = rows * len;
            float *x = falloc(n), *y = falloc(n), *y2 = falloc(n), *t = falloc(n), *ts = falloc(n);
            double *ref = malloc((size_t)len * sizeof(double));
            for (int64_t i = 0; i < n; i++)
                x[i] = frand(-30.f, 30.f);
            h2t_nn_softmax_rows(1, x, rows, len, is_log, y);
            h2t_nn_softmax_rows(4, x, rows, len, is_log, y2);
            ASSERT(!memcmp(y, y2, (size_t)n * sizeof(float)));
            for (int64_t r = 0; r < rows; r++) {
                softmax_ref(x + r * len, len, 1, is_log, ref);
                for (int64_t i = 0; i < len; i++)
                    if (fabs(y[r * len + i] - ref[i]) > 1e-6 * (1 + fabs(ref[i])))
                        TEST_FAILF("len %lld log %d row %lld [%lld]: %g vs %g", (long long)len,
                                   is_log, (long long)r, (long long)i, y[r * len + i], ref[i]);
            }
            /* the same data laid out len x rows: softmax over axis 0 of a 1 x len x rows */
            for (int64_t r = 0; r < rows; r++)
                for (int64_t i = 0; i < len; i++)
                    t[i * rows + r] = x[r * len + i];
            h2t_nn_softmax_strided(2, t, 1, len, rows, is_log, ts);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t i = 0; i < len; i++)
                    if (fabsf(ts[i * rows + r] - y[r * len + i]) >
                        1e-6f * (1 + fabsf(y[r * len + i])))
                        TEST_FAILF("strided len %lld [%lld,%lld]: %g vs %g", (long long)len,
                                   (long long)r, (long long)i, ts[i * rows + r], y[r * len + i]);
            free(x);
            free(y);
            free(y2);
            free(t);
            free(ts);
            free(ref);
        }
    /* hand-computed: softmax(1, 2, 3) = (0.0900306, 0.2447285, 0.6652410) */
    const float x3[3] = {1, 2, 3};
    float y3[3];
    h2t_nn_softmax_rows(1, x3, 1, 3, 0, y3);
    ASSERT(fabsf(y3[0] - 0.0900306f) < 1e-7f && fabsf(y3[1] - 0.2447285f) < 1e-7f &&
           fabsf(y3[2] - 0.6652410f) < 1e-7f);
}

TEST(nn_layernorm_matches_reference)
{
    /* hand-computed: (1,2,3,4): mean 2.5, var 1.25, y = (x - 2.5) / sqrt(1.25) */
    const float x4[4] = {1, 2, 3, 4}, one[4] = {1, 1, 1, 1}, zero[4] = {0};
    float y4[4], m, iv;
    h2t_nn_layernorm(1, x4, 1, 4, one, zero, 0.f, y4, &m, &iv);
    ASSERT(fabsf(y4[0] + 1.3416408f) < 1e-6f && fabsf(y4[1] + 0.4472136f) < 1e-6f &&
           fabsf(y4[3] - 1.3416408f) < 1e-6f && m == 2.5f && fabsf(iv - 0.8944272f) < 1e-6f);
    int64_t rows = 37, cols = 768, n = rows * cols;
    float *x = falloc(n), *y = falloc(n), *y2 = falloc(n), *sc = falloc(cols), *bi = falloc(cols);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand(-4.f, 6.f);
    for (int64_t i = 0; i < cols; i++)
        sc[i] = frand(0.5f, 2.f), bi[i] = frand(-1.f, 1.f);
    h2t_nn_layernorm(1, x, rows, cols, sc, bi, 1e-5f, y, NULL, NULL);
    h2t_nn_layernorm(3, x, rows, cols, sc, bi, 1e-5f, y2, NULL, NULL);
    ASSERT(!memcmp(y, y2, (size_t)n * sizeof(float)));
    for (int64_t r = 0; r < rows; r++) {
        double s = 0, v = 0;
        for (int64_t i = 0; i < cols; i++)
            s += x[r * cols + i];
        s /= (double)cols;
        for (int64_t i = 0; i < cols; i++)
            v += (x[r * cols + i] - s) * (x[r * cols + i] - s);
        v /= (double)cols;
        for (int64_t i = 0; i < cols; i++) {
            double want = (x[r * cols + i] - s) / sqrt(v + 1e-5) * sc[i] + bi[i];
            if (fabs(y[r * cols + i] - want) > 2e-6 * (1 + fabs(want)))
                TEST_FAILF("row %lld col %lld: %g vs %g", (long long)r, (long long)i,
                           y[r * cols + i], want);
        }
    }
    h2t_nn_layernorm(1, x, rows, cols, sc, NULL, 1e-5f, y2, NULL, NULL);
    for (int64_t i = 0; i < n; i++)
        ASSERT(fabsf(y2[i] + bi[i % cols] - y[i]) < 1e-5f * (1 + fabsf(y[i])));
    free(x);
    free(y);
    free(y2);
    free(sc);
    free(bi);
}

TEST(nn_groupnorm_per_channel_and_per_group)
{
    int64_t N = 3, C = 6, S = 10, G = 2, Cg = C / G, n = N * C * S;
    float *x = falloc(n), *y = falloc(n), *y2 = falloc(n);
    float sc[6], bi[6];
    for (int64_t i = 0; i < n; i++)
        x[i] = frand(-2.f, 3.f);
    for (int i = 0; i < 6; i++)
        sc[i] = frand(0.5f, 1.5f), bi[i] = frand(-1.f, 1.f);
    for (int per_group = 0; per_group < 2; per_group++) {
        h2t_nn_groupnorm(1, x, N, C, S, G, sc, bi, per_group, 1e-3f, y);
        h2t_nn_groupnorm(4, x, N, C, S, G, sc, bi, per_group, 1e-3f, y2);
        ASSERT(!memcmp(y, y2, (size_t)n * sizeof(float)));
        for (int64_t b = 0; b < N; b++)
            for (int64_t g = 0; g < G; g++) {
                const float *xp = x + (b * C + g * Cg) * S;
                double s = 0, v = 0;
                for (int64_t i = 0; i < Cg * S; i++)
                    s += xp[i];
                s /= (double)(Cg * S);
                for (int64_t i = 0; i < Cg * S; i++)
                    v += (xp[i] - s) * (xp[i] - s);
                v /= (double)(Cg * S);
                for (int64_t c = 0; c < Cg; c++)
                    for (int64_t i = 0; i < S; i++) {
                        int64_t ci = per_group ? g : g * Cg + c;
                        double want = (xp[c * S + i] - s) / sqrt(v + 1e-3) * sc[ci] + bi[ci];
                        float got = y[(b * C + g * Cg + c) * S + i];
                        if (fabs(got - want) > 2e-6 * (1 + fabs(want)))
                            TEST_FAILF("per_group %d n %lld g %lld: %g vs %g", per_group,
                                       (long long)b, (long long)g, got, want);
                    }
            }
    }
    /* instance normalisation (G = C), hand-computed: channel (1, 3) -> (-1, 1) with eps 0 */
    const float xi[4] = {1, 3, 10, 10}, s1[2] = {1, 2}, b1[2] = {0, 5};
    float yi[4];
    h2t_nn_groupnorm(1, xi, 1, 2, 2, 2, s1, b1, 0, 0.f, yi);
    ASSERT(fabsf(yi[0] + 1.f) < 1e-6f && fabsf(yi[1] - 1.f) < 1e-6f && isnan(yi[2]));
    h2t_nn_groupnorm(1, xi, 1, 2, 2, 2, s1, b1, 0, 1e-5f, yi);
    ASSERT(yi[2] == 5.f && yi[3] == 5.f);
    free(x);
    free(y);
    free(y2);
}

/* Naive reduction in double: one pass over x, each element into its output's accumulator. */
static void reduce_ref(int op, const float *x, int rank, const int64_t *dim, const int *red,
                       double *acc, int64_t *cnt, int64_t on)
{
    for (int64_t o = 0; o < on; o++) {
        acc[o] = op == H2T_NN_RPROD  ? 1
                 : op == H2T_NN_RMAX ? -INFINITY
                 : op == H2T_NN_RMIN ? INFINITY
                                     : 0;
        cnt[o] = 0;
    }
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dim[i];
    for (int64_t t = 0; t < n; t++) {
        int64_t r = t, o = 0, mul = 1;
        for (int i = rank - 1; i >= 0; i--) {
            int64_t idx = r % dim[i];
            r /= dim[i];
            if (!red[i]) {
                o += idx * mul;
                mul *= dim[i];
            }
        }
        double v = x[t];
        cnt[o]++;
        switch (op) {
        case H2T_NN_RMAX:
            acc[o] = v > acc[o] ? v : acc[o];
            break;
        case H2T_NN_RMIN:
            acc[o] = v < acc[o] ? v : acc[o];
            break;
        case H2T_NN_RPROD:
            acc[o] *= v;
            break;
        case H2T_NN_RL1:
            acc[o] += fabs(v);
            break;
        case H2T_NN_RL2:
        case H2T_NN_RSUMSQ:
            acc[o] += v * v;
            break;
        case H2T_NN_RLOGSUMEXP:
            acc[o] += exp(v);
            break;
        default:
            acc[o] += v;
        }
    }
    for (int64_t o = 0; o < on; o++) {
        if (op == H2T_NN_RMEAN)
            acc[o] /= (double)cnt[o];
        else if (op == H2T_NN_RL2)
            acc[o] = sqrt(acc[o]);
        else if (op == H2T_NN_RLOGSUM || op == H2T_NN_RLOGSUMEXP)
            acc[o] = log(acc[o]);
    }
}

TEST(nn_reduce_every_op_and_axis_pattern)
{
    const int64_t dim[4] = {3, 1, 5, 300};
    int64_t n = 3 * 5 * 300;
    float *x = falloc(n), *y = falloc(n), *y2 = falloc(n);
    double *acc = malloc((size_t)n * sizeof(double));
    int64_t *cnt = malloc((size_t)n * sizeof(int64_t));
    ASSERT(acc && cnt);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand(0.5f, 1.5f);
    for (int op = H2T_NN_RSUM; op <= H2T_NN_RLOGSUMEXP; op++)
        for (int mask = 0; mask < 16; mask++) {
            int red[4];
            int64_t on = 1;
            for (int i = 0; i < 4; i++) {
                red[i] = (mask >> i) & 1;
                on *= red[i] ? 1 : dim[i];
            }
            h2t_nn_reduce(1, op, x, 4, dim, red, y);
            h2t_nn_reduce(3, op, x, 4, dim, red, y2);
            ASSERT(!memcmp(y, y2, (size_t)on * sizeof(float)));
            reduce_ref(op, x, 4, dim, red, acc, cnt, on);
            for (int64_t o = 0; o < on; o++) {
                double want = (float)acc[o]; /* Prod may underflow */
                if (rel(y[o], want) > 1e-6 && !(isinf(want) && y[o] == (float)want))
                    TEST_FAILF("op %d mask %d out %lld: %g vs %g", op, mask, (long long)o, y[o],
                               want);
            }
        }
    /* empty reductions and NaN */
    const int64_t d0[2] = {2, 0};
    const int r1[2] = {0, 1};
    h2t_nn_reduce(1, H2T_NN_RSUM, x, 2, d0, r1, y);
    ASSERT(y[0] == 0.f && y[1] == 0.f);
    h2t_nn_reduce(1, H2T_NN_RMAX, x, 2, d0, r1, y);
    ASSERT(isinf(y[0]) && y[0] < 0);
    const float xn[4] = {1, NAN, 3, 2};
    const int64_t d1[1] = {4};
    const int r2[1] = {1};
    h2t_nn_reduce(1, H2T_NN_RMAX, xn, 1, d1, r2, y);
    ASSERT(isnan(y[0]));
    /* hand-computed: ReduceL2 of (3, 4) is 5, ReduceMean over axis 0 of [[1, 2], [3, 5]] */
    const float x34[2] = {3, 4}, x22[4] = {1, 2, 3, 5};
    const int64_t d2[1] = {2}, d22[2] = {2, 2};
    const int r22[2] = {1, 0};
    h2t_nn_reduce(1, H2T_NN_RL2, x34, 1, d2, r2, y);
    ASSERT(y[0] == 5.f);
    h2t_nn_reduce(1, H2T_NN_RMEAN, x22, 2, d22, r22, y);
    ASSERT(y[0] == 2.f && y[1] == 3.5f);
    free(acc);
    free(cnt);
    free(x);
    free(y);
    free(y2);
}

/* Naive einsum over explicit letter labels: every assignment of every label. */
static void einsum_ref(const char *eq, int n_in, const float *const *x, const int64_t *const *dims,
                       double *y, int64_t yn)
{
    char terms[3][16];
    int nt = 0, len = 0;
    for (const char *c = eq;; c++) {
        if (*c == ',' || *c == '-' || !*c) {
            terms[nt][len] = 0;
            nt++;
            len = 0;
            if (*c == '-')
                c++;
            if (!*c)
                break;
            continue;
        }
        terms[nt][len++] = *c;
    }
    int64_t size[128] = {0};
    char labs[16];
    int nl = 0;
    for (int t = 0; t < n_in; t++)
        for (int i = 0; terms[t][i]; i++) {
            size[(int)terms[t][i]] = dims[t][i];
            if (!strchr(labs, terms[t][i]) || !nl) {
                labs[nl++] = terms[t][i];
                labs[nl] = 0;
            }
        }
    for (int64_t i = 0; i < yn; i++)
        y[i] = 0;
    int64_t total = 1;
    for (int i = 0; i < nl; i++)
        total *= size[(int)labs[i]];
    for (int64_t t = 0; t < total; t++) {
        int64_t v[128] = {0}, r = t;
        for (int i = nl - 1; i >= 0; i--) {
            v[(int)labs[i]] = r % size[(int)labs[i]];
            r /= size[(int)labs[i]];
        }
        double prod = 1;
        for (int k = 0; k < n_in; k++) {
            int64_t off = 0;
            for (int i = 0; terms[k][i]; i++)
                off = off * dims[k][i] + v[(int)terms[k][i]];
            prod *= x[k][off];
        }
        int64_t off = 0;
        for (int i = 0; terms[n_in][i]; i++)
            off = off * size[(int)terms[n_in][i]] + v[(int)terms[n_in][i]];
        y[off] += prod;
    }
}

typedef struct ein_case {
    const char *eq, *ref; /* ref: the same with explicit letters (NULL: eq) */
    int n_in, ra, rb;
    int64_t da[4], db[4];
    int mode_a, mode_b, mode_c; /* expected plan modes, -1 unchecked */
} ein_case;

TEST(nn_einsum_matches_naive)
{
    const ein_case cs[] = {
        {"bij,bjk->bik", NULL, 2, 3, 3, {2, 3, 4}, {2, 4, 5}, 0, 0, 0},
        {"bhqd,bhkd->bhqk", NULL, 2, 4, 4, {2, 3, 5, 4}, {2, 3, 6, 4}, 0, 1, 0},
        {"bhqk,bhkd->bhqd", NULL, 2, 4, 4, {2, 3, 5, 6}, {2, 3, 6, 4}, 0, 0, 0},
        {"...ij,...jk->...ik", "abij,abjk->abik", 2, 4, 4, {2, 3, 4, 5}, {2, 3, 5, 6}, 0, 0, 0},
        {"...ij,jk->...ik", "aij,jk->aik", 2, 3, 2, {2, 3, 4}, {4, 5}, 0, 0, 0},
        {"ij,jk", "ij,jk->ik", 2, 2, 2, {3, 4}, {4, 5}, 0, 0, 0},
        {"bji,bjk->bik", NULL, 2, 3, 3, {2, 4, 3}, {2, 4, 5}, 1, 0, 0},
        {"bij,bkj->bki", NULL, 2, 3, 3, {2, 3, 4}, {2, 5, 4}, 0, 1, 1},
        {"ibj,bjk->bik", NULL, 2, 3, 3, {3, 2, 4}, {2, 4, 5}, 2, 0, 0},
        {"bij,bjk->ibk", NULL, 2, 3, 3, {2, 3, 4}, {2, 4, 5}, 0, 0, 2},
        {"bij,bjk->bik", NULL, 2, 3, 3, {1, 3, 4}, {5, 4, 2}, -1, -1, -1},
        {"i,i->", NULL, 2, 1, 1, {7}, {7}, -1, -1, -1},
        {"ij->ji", NULL, 1, 2, 0, {3, 4}, {0}, -1, -1, -1},
        {"ij->i", NULL, 1, 2, 0, {3, 4}, {0}, -1, -1, -1},
        {"ijk->", NULL, 1, 3, 0, {3, 4, 2}, {0}, -1, -1, -1},
        {"ijk->kj", NULL, 1, 3, 0, {3, 4, 2}, {0}, -1, -1, -1},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const ein_case *e = &cs[c];
        int rank[2] = {e->ra, e->rb};
        const int64_t *dims[2] = {e->da, e->db};
        h2t_nn_einsum p;
        ASSERT_OK(h2t_nn_einsum_plan(e->eq, e->n_in, rank, dims, &p));
        if (e->mode_a >= 0 &&
            (p.a_mode != e->mode_a || p.b_mode != e->mode_b || p.c_mode != e->mode_c))
            TEST_FAILF("%s: modes %d %d %d", e->eq, p.a_mode, p.b_mode, p.c_mode);
        int64_t na = h2t_nn_numel(e->ra, e->da), nb = h2t_nn_numel(e->rb, e->db);
        int64_t ny = h2t_nn_numel(p.out_rank, p.out_dim);
        float *a = falloc(na), *b = falloc(nb), *y = falloc(ny), *y2 = falloc(ny);
        float *s = falloc((int64_t)h2t_nn_einsum_scratch(&p));
        double *ref = malloc((size_t)ny * sizeof(double));
        for (int64_t i = 0; i < na; i++)
            a[i] = frand(-1.f, 1.f);
        for (int64_t i = 0; i < nb; i++)
            b[i] = frand(-1.f, 1.f);
        h2t_nn_einsum_run(1, &p, a, b, y, s);
        h2t_nn_einsum_run(3, &p, a, b, y2, s);
        ASSERT(!memcmp(y, y2, (size_t)ny * sizeof(float)));
        const float *xs[2] = {a, b};
        /* broadcast case: expand A's size-1 batch for the reference */
        int64_t dae[4];
        memcpy(dae, e->da, sizeof dae);
        float *ae = NULL;
        if (c == 10) {
            dae[0] = 5;
            ae = falloc(5 * 12);
            for (int i = 0; i < 5; i++)
                memcpy(ae + i * 12, a, 12 * sizeof(float));
            xs[0] = ae;
        }
        const int64_t *rdims[2] = {dae, e->db};
        einsum_ref(e->ref ? e->ref : e->eq, e->n_in, xs, rdims, ref, ny);
        for (int64_t i = 0; i < ny; i++)
            if (fabs(y[i] - ref[i]) > 1e-5 * (1 + fabs(ref[i])))
                TEST_FAILF("%s [%lld]: %g vs %g", e->eq, (long long)i, y[i], ref[i]);
        free(a);
        free(b);
        free(y);
        free(y2);
        free(s);
        free(ref);
        free(ae);
    }
    /* refused, naming the equation */
    ASSERT_EQ(h2t_nn_einsum_check("ii->i", 1), H2T_EUNSUPPORTED);
    ASSERT(strstr(h2t_err_detail(), "'ii->i'"));
    ASSERT_EQ(h2t_nn_einsum_check("ij,jk->i", 2), H2T_EUNSUPPORTED);
    ASSERT_EQ(h2t_nn_einsum_check("ij,jk,kl->il", 3), H2T_EUNSUPPORTED);
    ASSERT_EQ(h2t_nn_einsum_check("i1,1k->ik", 2), H2T_ECORRUPT);
    int r2[2] = {2, 2};
    const int64_t d1[2] = {3, 4}, d2[2] = {5, 6}, *dd[2] = {d1, d2};
    h2t_nn_einsum p;
    ASSERT_EQ(h2t_nn_einsum_plan("ij,jk->ik", 2, r2, dd, &p), H2T_ESHAPE);
}

TEST(nn_resize_hand_computed)
{
    const float x[4] = {1, 2, 3, 4};
    float y[16];
    h2t_nn_resize r = {1, 0.f, 0, H2T_NN_RC_HALF_PIXEL, 0, {2., 2.}};
    h2t_nn_resize2d(1, &r, x, 1, 2, 2, 4, 4, y);
    const float want[8] = {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f};
    for (int i = 0; i < 8; i++)
        if (fabsf(y[i] - want[i]) > 1e-6f)
            TEST_FAILF("bilinear half_pixel [%d]: %g vs %g", i, y[i], want[i]);
    ASSERT(y[15] == 4.f && y[12] == 3.f);
    /* align_corners: x (in - 1) / (out - 1): row 0 is 1, 4/3, 5/3, 2 */
    r.coord = H2T_NN_RC_ALIGN_CORNERS;
    h2t_nn_resize2d(2, &r, x, 1, 2, 2, 4, 4, y);
    ASSERT(fabsf(y[1] - 4.f / 3.f) < 1e-6f && fabsf(y[2] - 5.f / 3.f) < 1e-6f && y[3] == 2.f);
    /* nearest asymmetric floor, 2x: each input pixel a 2 x 2 block */
    h2t_nn_resize n = {0, 0.f, 0, H2T_NN_RC_ASYMMETRIC, H2T_NN_RN_FLOOR, {2., 2.}};
    h2t_nn_resize2d(1, &n, x, 1, 2, 2, 4, 4, y);
    const float wn[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    ASSERT(!memcmp(y, wn, sizeof wn));
    /* round_prefer_floor vs ceil at exactly .5: 1 x 4 -> 1 x 2 asymmetric scale 2/3... */
    const float x4[4] = {10, 20, 30, 40};
    float y2[2];
    h2t_nn_resize h = {0, 0.f, 0, H2T_NN_RC_ASYMMETRIC, H2T_NN_RN_ROUND_PREFER_FLOOR, {1., 0.8}};
    h2t_nn_resize2d(1, &h, x4, 1, 1, 4, 1, 2, y2); /* x = 0, 1.25 -> 0, 1 */
    ASSERT(y2[0] == 10.f && y2[1] == 20.f);
    h.scale[1] = 2. / 3.; /* x = 0, 1.5 -> floor 1 / ceil 2 */
    h2t_nn_resize2d(1, &h, x4, 1, 1, 4, 1, 2, y2);
    ASSERT(y2[1] == 20.f);
    h.nearest = H2T_NN_RN_ROUND_PREFER_CEIL;
    h2t_nn_resize2d(1, &h, x4, 1, 1, 4, 1, 2, y2);
    ASSERT(y2[1] == 30.f);
}

TEST(nn_convt_matches_direct)
{
    const h2t_nn_convt gs[] = {
        {2, 4, 5, 6, 6, 0, 0, 3, 3, 2, 2, 1, 1, 1, 1, 2},
        {1, 3, 4, 4, 2, 0, 0, 2, 3, 1, 3, 2, 1, 0, 2, 1},
        {1, 2, 1, 7, 3, 0, 0, 1, 4, 1, 2, 1, 2, 0, 0, 1},
    };
    for (size_t t = 0; t < sizeof gs / sizeof gs[0]; t++) {
        h2t_nn_convt g = gs[t];
        int64_t ph = 1, pw = (int64_t)t; /* output padding at the end */
        g.OH = g.sh * (g.H - 1) + (g.kh - 1) * g.dh + 1 - 2 * g.pt + ph;
        g.OW = g.sw * (g.W - 1) + (g.kw - 1) * g.dw + 1 - 2 * g.pl + pw;
        int64_t Cg = g.C / g.G, Mg = g.M / g.G;
        int64_t nx = g.N * g.C * g.H * g.W, nw = g.C * Mg * g.kh * g.kw,
                ny = g.N * g.M * g.OH * g.OW;
        float *x = falloc(nx), *w = falloc(nw), *b = falloc(g.M), *y = falloc(ny), *y2 = falloc(ny),
              *s = falloc((int64_t)h2t_nn_convt_scratch(&g));
        double *ref = calloc((size_t)ny, sizeof(double));
        for (int64_t i = 0; i < nx; i++)
            x[i] = frand(-1.f, 1.f);
        for (int64_t i = 0; i < nw; i++)
            w[i] = frand(-1.f, 1.f);
        for (int64_t i = 0; i < g.M; i++)
            b[i] = frand(-1.f, 1.f);
        h2t_nn_convt_run(1, &g, x, w, b, y, s);
        h2t_nn_convt_run(3, &g, x, w, b, y2, s);
        ASSERT(!memcmp(y, y2, (size_t)ny * sizeof(float)));
        for (int64_t n = 0; n < g.N; n++)
            for (int64_t m = 0; m < g.M; m++) {
                int64_t gi = m / Mg, mm = m % Mg;
                for (int64_t i = 0; i < g.OH * g.OW; i++)
                    ref[(n * g.M + m) * g.OH * g.OW + i] = b[m];
                for (int64_t c = gi * Cg; c < (gi + 1) * Cg; c++)
                    for (int64_t ih = 0; ih < g.H; ih++)
                        for (int64_t iw = 0; iw < g.W; iw++)
                            for (int64_t i = 0; i < g.kh; i++)
                                for (int64_t j = 0; j < g.kw; j++) {
                                    int64_t oh = ih * g.sh - g.pt + i * g.dh;
                                    int64_t ow = iw * g.sw - g.pl + j * g.dw;
                                    if (oh < 0 || oh >= g.OH || ow < 0 || ow >= g.OW)
                                        continue;
                                    ref[((n * g.M + m) * g.OH + oh) * g.OW + ow] +=
                                        (double)x[((n * g.C + c) * g.H + ih) * g.W + iw] *
                                        w[((c * Mg + mm) * g.kh + i) * g.kw + j];
                                }
            }
        for (int64_t i = 0; i < ny; i++)
            if (fabs(y[i] - ref[i]) > 1e-5 * (1 + fabs(ref[i])))
                TEST_FAILF("case %zu [%lld]: %g vs %g", t, (long long)i, y[i], ref[i]);
        free(x);
        free(w);
        free(b);
        free(y);
        free(y2);
        free(s);
        free(ref);
    }
}
