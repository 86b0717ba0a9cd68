/*
 * extract/pool.c - Head2Toe pooling of one tensor per sample, and the default layer rule.
 * The rules and the H != W decision are documented in extract/extract.h.
 */
#include "common/err.h"
#include "extract/extract.h"

#include <math.h>
#include <string.h>

int h2t_pool_plan_make(int rank, const int64_t *shape, uint32_t target, h2t_pool_plan *out)
{
    if (target == 0)
        return h2t_err_set(H2T_EINVAL, "target size 0");
    if (rank < 2 || rank > 4)
        return h2t_err_set(H2T_EUNSUPPORTED, "cannot pool a tensor of rank %d (2, 3 or 4 only)",
                           rank);
    for (int k = 1; k < rank; k++)
        if (shape[k] <= 0 || shape[k] > (int64_t)1 << 30)
            return h2t_err_set(H2T_ESHAPE, "dimension %d is %lld", k, (long long)shape[k]);
    h2t_pool_plan p;
    memset(&p, 0, sizeof p);
    uint64_t dim;
    if (rank == 2) {
        p.kind = H2T_POOL_FLAT;
        p.c = (uint32_t)shape[1];
        dim = p.c;
    } else if (rank == 3) {
        p.h = (uint32_t)shape[1]; /* tokens */
        p.c = (uint32_t)shape[2];
        uint32_t per = p.c < target ? target / p.c : 0; /* windows wanted */
        uint32_t win = per ? p.h / per : 0;
        if (win == 0) {
            p.kind = H2T_POOL_TMEAN;
            dim = p.c;
        } else {
            p.kind = H2T_POOL_TWIN;
            p.ph = win;
            p.oh = p.h / win;
            dim = (uint64_t)p.oh * p.c;
        }
    } else {
        p.c = (uint32_t)shape[1];
        p.h = (uint32_t)shape[2];
        p.w = (uint32_t)shape[3];
        uint32_t n = 0;
        if (p.c < target)
            n = (uint32_t)floor(sqrt((double)(target / p.c)));
        /* floor(sqrt) of an integer in double is exact up to 2^52; correct any rounding. */
        while (n > 0 && (uint64_t)n * n > target / p.c)
            n--;
        while (n > 0 && (uint64_t)(n + 1) * (n + 1) <= target / p.c)
            n++;
        uint32_t ph = n ? p.h / n : 0, pw = n ? p.w / n : 0;
        if (ph == 0 || pw == 0) {
            p.kind = H2T_POOL_GAP;
            dim = p.c;
        } else {
            p.kind = H2T_POOL_GRID;
            p.ph = ph;
            p.pw = pw;
            p.oh = p.h / ph;
            p.ow = p.w / pw;
            dim = (uint64_t)p.oh * p.ow * p.c;
        }
    }
    if (dim > (uint64_t)1 << 31)
        return h2t_err_set(H2T_ETOOBIG, "pooled dimension %llu", (unsigned long long)dim);
    p.dim = (uint32_t)dim;
    *out = p;
    return 0;
}

/* Means of the ph x pw windows of one H x W plane (row stride w): the window's rows are first
 * added element-wise into a column accumulator (independent adds, which the compiler
 * vectorises without reassociating anything), then each window's columns are summed in
 * double. Window (i, j) goes to out[(i * ow + j) * ostride]. Deterministic: the order of
 * additions depends only on the shapes. */
#define POOL_COLS 4096

/* col[x] += row[x]: GCC's -O2 cost model does not vectorise this loop (unknown trip count),
 * so it is written with SSE-sized generic vectors (x86-64 baseline, no -march needed). */
typedef float v4f __attribute__((vector_size(16)));
static void add_row(float *col, const float *row, uint32_t n)
{
    uint32_t x = 0;
    for (; x + 8 <= n; x += 8) {
        v4f a0, a1, b0, b1;
        memcpy(&a0, col + x, 16);
        memcpy(&a1, col + x + 4, 16);
        memcpy(&b0, row + x, 16);
        memcpy(&b1, row + x + 4, 16);
        a0 += b0;
        a1 += b1;
        memcpy(col + x, &a0, 16);
        memcpy(col + x + 4, &a1, 16);
    }
    for (; x < n; x++)
        col[x] += row[x];
}

/* Sum of n contiguous floats: 4 vector accumulators (16 lanes) in a fixed order, then the
 * lanes in double. Deterministic for a given n. */
static double sum_block(const float *q, size_t n)
{
    v4f a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
    size_t x = 0;
    for (; x + 16 <= n; x += 16) {
        v4f b0, b1, b2, b3;
        memcpy(&b0, q + x, 16);
        memcpy(&b1, q + x + 4, 16);
        memcpy(&b2, q + x + 8, 16);
        memcpy(&b3, q + x + 12, 16);
        a0 += b0;
        a1 += b1;
        a2 += b2;
        a3 += b3;
    }
    double t = 0;
    for (int k = 0; k < 4; k++)
        t += (double)a0[k] + (double)a1[k] + (double)a2[k] + (double)a3[k];
    for (; x < n; x++)
        t += q[x];
    return t;
}
static void pool_plane(const float *s, uint32_t w, uint32_t ph, uint32_t pw, uint32_t oh,
                       uint32_t ow, float *out, size_t ostride)
{
    float col[POOL_COLS];
    double inv = 1.0 / ((double)ph * pw);
    if (pw > POOL_COLS) { /* absurdly wide windows: plain loops */
        for (uint32_t i = 0; i < oh; i++)
            for (uint32_t j = 0; j < ow; j++) {
                double a = 0;
                for (uint32_t r = i * ph; r < (i + 1) * ph; r++)
                    for (uint32_t k = 0; k < pw; k++)
                        a += s[(size_t)r * w + (size_t)j * pw + k];
                out[((size_t)i * ow + j) * ostride] = (float)(a * inv);
            }
        return;
    }
    if (ow == 1 && pw == w) { /* each window is ph whole rows: one contiguous block */
        for (uint32_t i = 0; i < oh; i++)
            out[(size_t)i * ow * ostride] =
                (float)(sum_block(s + (size_t)i * ph * w, (size_t)ph * w) * inv);
        return;
    }
    uint32_t per_chunk = POOL_COLS / pw; /* whole windows per pass over the rows */
    for (uint32_t i = 0; i < oh; i++) {
        const float *r0 = s + (size_t)i * ph * w;
        for (uint32_t j0 = 0; j0 < ow; j0 += per_chunk) {
            uint32_t nj = ow - j0 < per_chunk ? ow - j0 : per_chunk;
            uint32_t span = nj * pw;
            const float *c0 = r0 + (size_t)j0 * pw;
            memcpy(col, c0, span * sizeof(float));
            for (uint32_t r = 1; r < ph; r++)
                add_row(col, c0 + (size_t)r * w, span);
            for (uint32_t j = 0; j < nj; j++) {
                double a = 0;
                const float *q = col + (size_t)j * pw;
                for (uint32_t k = 0; k < pw; k++)
                    a += q[k];
                out[((size_t)i * ow + j0 + j) * ostride] = (float)(a * inv);
            }
        }
    }
}

void h2t_pool_apply(const h2t_pool_plan *p, const float *x, float *out)
{
    size_t hw = (size_t)p->h * p->w;
    switch (p->kind) {
    case H2T_POOL_FLAT:
        memcpy(out, x, (size_t)p->c * sizeof(float));
        break;
    case H2T_POOL_GAP:
        for (uint32_t c = 0; c < p->c; c++)
            pool_plane(x + c * hw, p->w, p->h, p->w, 1, 1, out + c, p->c);
        break;
    case H2T_POOL_GRID:
        /* out[(i * ow + j) * C + c] = mean of x[c][i*ph .. i*ph+ph)[j*pw .. j*pw+pw) */
        for (uint32_t c = 0; c < p->c; c++)
            pool_plane(x + c * hw, p->w, p->ph, p->pw, p->oh, p->ow, out + c, p->c);
        break;
    case H2T_POOL_TMEAN:
    case H2T_POOL_TWIN: {
        /* x is tokens x C (token-major); a window of ph tokens averages each channel */
        uint32_t win = p->kind == H2T_POOL_TMEAN ? p->h : p->ph;
        uint32_t nw = p->kind == H2T_POOL_TMEAN ? 1 : p->oh;
        double acc[1024];
        for (uint32_t i = 0; i < nw; i++) {
            float *o = out + (size_t)i * p->c;
            for (uint32_t c0 = 0; c0 < p->c; c0 += 1024) {
                uint32_t nc = p->c - c0 < 1024 ? p->c - c0 : 1024;
                for (uint32_t c = 0; c < nc; c++)
                    acc[c] = 0;
                for (uint32_t t = i * win; t < (i + 1) * win; t++) {
                    const float *row = x + (size_t)t * p->c + c0;
                    for (uint32_t c = 0; c < nc; c++)
                        acc[c] += row[c];
                }
                for (uint32_t c = 0; c < nc; c++)
                    o[c0 + c] = (float)(acc[c] / win);
            }
        }
        break;
    }
    }
}

static const char *const pure_ops[] = {
    "Reshape", "Flatten", "Identity", "Dropout", "Squeeze",  "Unsqueeze",       "Transpose",
    "Expand",  "Cast",    "Shape",    "Size",    "Constant", "ConstantOfShape",
};

int h2t_layer_rule_default(const h2t_tensor_info *t)
{
    if (t->is_input || t->rank < 2 || t->rank > 4)
        return 0;
    for (size_t i = 0; i < sizeof pure_ops / sizeof pure_ops[0]; i++)
        if (!strcmp(t->op, pure_ops[i]))
            return 0;
    return 1;
}
