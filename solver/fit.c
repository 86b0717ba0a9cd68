/*
 * solver/fit.c - the optimisers: softmax cross-entropy value/gradient on OpenBLAS sgemm,
 * FISTA for the group lasso, L-BFGS for smooth problems, and the reference Adam.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h"

void h2t_solver__logits(const float *X, uint32_t n, uint32_t d, uint32_t k, const float *W,
                        const float *b, float *Z)
{
    if (b)
        for (uint32_t i = 0; i < n; i++)
            memcpy(Z + (size_t)i * k, b, k * sizeof(float));
    else
        memset(Z, 0, (size_t)n * k * sizeof(float));
    if (n && d)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)d, 1.0f, X,
                    (int)d, W, (int)k, 1.0f, Z, (int)k);
}

void h2t_solver__sim(const float *A, uint32_t na, const float *B, uint32_t nb, uint32_t d, float *S)
{
    memset(S, 0, (size_t)na * nb * sizeof(float));
    if (na && nb && d)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)na, (int)nb, (int)d, 1.0f, A,
                    (int)d, B, (int)d, 0.0f, S, (int)nb);
}

uint32_t h2t_solver__argmax(const float *Z, uint32_t n, uint32_t k, const uint32_t *y,
                            uint32_t *pred)
{
    uint32_t correct = 0;
    for (uint32_t i = 0; i < n; i++) {
        const float *z = Z + (size_t)i * k;
        uint32_t best = 0;
        for (uint32_t c = 1; c < k; c++)
            if (z[c] > z[best])
                best = c;
        if (pred)
            pred[i] = best;
        if (y && y[i] == best)
            correct++;
    }
    return correct;
}

/* Copy values [off, off + m) of the parts' concatenation into buf (put = 0) or back (put = 1). */
static void parts_io(h2t_solver_part *parts, uint32_t np, size_t off, double *buf, size_t m,
                     int put)
{
    size_t base = 0;
    for (uint32_t q = 0; q < np && m; base += parts[q].n, q++) {
        size_t n = parts[q].n;
        if (off >= base + n)
            continue;
        for (size_t i = off - base; i < n && m; i++, off++, m--, buf++) {
            if (parts[q].dbl) {
                double *v = (double *)parts[q].p + i;
                if (put)
                    *v = *buf;
                else
                    *buf = *v;
            } else {
                float *v = (float *)parts[q].p + i;
                if (put)
                    *v = (float)*buf;
                else
                    *buf = *v;
            }
        }
    }
}

void h2t_solver__reduce(const h2t_solver_opts *o, h2t_solver_part *parts, uint32_t np)
{
    if (!o || !o->red)
        return;
    size_t total = 0;
    for (uint32_t q = 0; q < np; q++)
        total += parts[q].n;
    /* fixed chunks, so every participant makes the same calls whatever its memory */
    enum { CHUNK = 1 << 16 };
    double *buf = malloc((total < CHUNK ? total : CHUNK) * sizeof(double) + 1);
    if (!buf)
        abort(); /* 512 KiB: a participant this short of memory stops like one that died */
    for (size_t c0 = 0; c0 < total; c0 += CHUNK) {
        size_t m = total - c0 < CHUNK ? total - c0 : CHUNK;
        parts_io(parts, np, c0, buf, m, 0);
        o->red->sum(o->red->ud, buf, m);
        parts_io(parts, np, c0, buf, m, 1);
    }
    free(buf);
}

double h2t_solver__rows(const h2t_solver_opts *o, uint32_t n)
{
    double r = n;
    h2t_solver__reduce(o, &(h2t_solver_part){&r, 1, 1}, 1);
    return r;
}

/* ---- row blocks: sums over rows that do not depend on how the rows are split ----
 *
 * A fit's rows belong to nb fixed blocks of the task's training rows (task order, block b =
 * rows [b N / nb, (b + 1) N / nb) of all N; h2t_solver__nblocks). Every sum over rows (loss,
 * gradient X^T R, bias gradient, the power iteration, the lifts) is taken per segment: a run of
 * consecutive rows of one block (and one CV fold: opts.rkey), each segment's rows by their own
 * products, so a participant holding the whole block computes exactly what one process does.
 * Segments add into their block's partial sum (double) in row order; the nb partials go through
 * the reducer (each block's from the one participant that holds it, zeros elsewhere: exact) and
 * are then added pairwise in a fixed tree. Per-row values (logits) are computed per segment too:
 * OpenBLAS's result for a row depends on where it lies in the call. */

uint32_t h2t_solver__nblocks(uint32_t n_all)
{
    return n_all >= 65536 ? 64 : n_all >= 4096 ? 16 : 4;
}

uint32_t h2t_solver__block_of(uint32_t t, uint32_t n_all)
{
    uint32_t nb = h2t_solver__nblocks(n_all);
    return n_all ? (uint32_t)(((uint64_t)t + 1) * nb - 1) / n_all : 0;
}

/* The segments of a fit's n rows: row runs [s0[q], s0[q] + len[q]) in block blk[q]. */
typedef struct segs {
    uint32_t ns, nb, maxlen;
    uint32_t *s0, *len, *blk;
} segs;

static void segs_free(segs *s)
{
    free(s->s0);
    s->s0 = NULL;
}

static int segs_make(const h2t_solver_opts *o, uint32_t n, segs *s)
{
    memset(s, 0, sizeof *s);
    s->s0 = malloc(3 * ((size_t)n + 1) * sizeof(uint32_t));
    if (!s->s0) {
        if (o && o->red)
            abort(); /* as h2t_solver__reduce: the others wait in a reduction */
        return h2t_err_set(H2T_ENOMEM, "row segments (%u rows)", n);
    }
    s->len = s->s0 + n + 1;
    s->blk = s->len + n + 1;
    const uint32_t *key = o ? o->rkey : NULL;
    s->nb = key ? o->nblk : h2t_solver__nblocks(n);
    for (uint32_t i = 0; i < n;) {
        uint32_t e = i + 1, b;
        if (key) {
            while (e < n && key[e] == key[i])
                e++;
            b = key[i] % s->nb;
        } else {
            b = h2t_solver__block_of(i, n);
            while (e < n && h2t_solver__block_of(e, n) == b)
                e++;
        }
        s->s0[s->ns] = i;
        s->len[s->ns] = e - i;
        s->blk[s->ns++] = b;
        s->maxlen = e - i > s->maxlen ? e - i : s->maxlen;
        i = e;
    }
    return 0;
}

/* Per-block partial sums of m values each (nb x m), then their total. A block's slot is
 * zeroed on its first use in a round up to head values; the rest a caller writes on first use
 * (first set) as 0.0 + value, the same as adding into zeros, without the pass that zeroes it. */
typedef struct bsum {
    uint32_t nb;
    size_t m, head;
    double *acc;
    uint8_t *seen; /* nb: the block's slot is in use this round */
} bsum;

static int bsum_init(const h2t_solver_opts *o, bsum *b, uint32_t nb, size_t m, size_t head)
{
    b->nb = nb;
    b->m = m;
    b->head = head;
    b->acc = malloc(((size_t)nb * m + 1) * sizeof(double));
    b->seen = calloc(nb, 1);
    if (!b->acc || !b->seen) {
        free(b->acc);
        free(b->seen);
        b->acc = NULL;
        b->seen = NULL;
        if (o && o->red)
            abort(); /* as h2t_solver__reduce */
        return h2t_err_set(H2T_ENOMEM, "block sums (%u x %zu)", nb, m);
    }
    return 0;
}

static void bsum_clear(bsum *b)
{
    memset(b->seen, 0, b->nb);
}

/* Block blk's slot; *first (may be NULL when head == m) is 1 on its first use this round. */
static double *bsum_at(bsum *b, uint32_t blk, int *first)
{
    double *slot = b->acc + (size_t)blk * b->m;
    int f = !b->seen[blk];
    if (f) {
        memset(slot, 0, b->head * sizeof(double));
        b->seen[blk] = 1;
    }
    if (first)
        *first = f;
    return slot;
}

/* acc[0..m) = the nb partials acc[q m .. (q + 1) m) added pairwise, ((P0 + P1) + (P2 + P3)) +
 * ..., level by level over chunks of 1024 values (cache-resident; each value's additions the
 * same). Built for AVX-512 too: the same additions, in wider vectors. */
__attribute__((target_clones("avx512f", "default"))) static void tree_add(double *acc, uint32_t nb,
                                                                          size_t m)
{
    for (size_t i0 = 0; i0 < m; i0 += 1024) {
        size_t e = m - i0 < 1024 ? m - i0 : 1024;
        for (uint32_t s = 1; s < nb; s *= 2)
            for (uint32_t q = 0; q + s < nb; q += 2 * s) {
                double *a = acc + (size_t)q * m + i0;
                const double *c = acc + (size_t)(q + s) * m + i0;
                for (size_t i = 0; i < e; i++)
                    a[i] += c[i];
            }
    }
}

/* The total over every participant's blocks (acc[0..m)): each block's partial comes from the
 * participant holding it (the others add zeros: exact), then pairwise in a fixed tree,
 * ((P0 + P1) + (P2 + P3)) + ..., element by element. The round ends. */
static double *bsum_total(const h2t_solver_opts *o, bsum *b)
{
    size_t m = b->m;
    uint32_t nb = b->nb;
    for (uint32_t q = 0; q < nb; q++)
        if (!b->seen[q])
            memset(b->acc + (size_t)q * m, 0, m * sizeof(double));
    h2t_solver__reduce(o, &(h2t_solver_part){b->acc, (size_t)nb * m, 1}, 1);
    tree_add(b->acc, nb, m);
    bsum_clear(b);
    return b->acc;
}

static void bsum_free(bsum *b)
{
    free(b->acc);
    free(b->seen);
    b->acc = NULL;
    b->seen = NULL;
}

int h2t_solver__rowsum(const h2t_solver_opts *o, uint32_t n, size_t m,
                       void (*add)(void *ud, uint32_t s0, uint32_t len, double *slot), void *ud,
                       double *out)
{
    segs sg;
    bsum bs = {0};
    int rc = segs_make(o, n, &sg);
    if (rc < 0 || (rc = bsum_init(o, &bs, sg.nb, m, m)) < 0) {
        segs_free(&sg);
        return rc;
    }
    for (uint32_t q = 0; q < sg.ns; q++)
        add(ud, sg.s0[q], sg.len[q], bsum_at(&bs, sg.blk[q], NULL));
    memcpy(out, bsum_total(o, &bs), m * sizeof(double));
    segs_free(&sg);
    bsum_free(&bs);
    return 0;
}

/* slot[0..m) = 0.0 + g (first) or += g, in double. */
__attribute__((target_clones("avx512f", "default"))) static void add_f(double *slot, const float *g,
                                                                       size_t m, int first)
{
    if (first)
        for (size_t q = 0; q < m; q++)
            slot[q] = 0.0 + g[q];
    else
        for (size_t q = 0; q < m; q++)
            slot[q] += g[q];
}

/* slotT (k x d, transposed) += (X^T R)^T over one segment's rows (X len x d, R len x k); first:
 * the slot is written (0.0 + value) instead. GT: k x d scratch. */
static void grad_add(const float *X, const float *R, uint32_t len, uint32_t d, uint32_t k,
                     float *GT, double *slotT, int first)
{
    size_t dk = (size_t)d * k;
    if (!len || !d) {
        if (first)
            memset(slotT, 0, dk * sizeof(double));
        return;
    }
    /* as R^T X: OpenBLAS packs X about twice as fast as the B operand */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)d, (int)len, 1.0f, R, (int)k,
                X, (int)d, 0.0f, GT, (int)d);
    add_f(slotT, GT, dk, first);
}

/* G (d x k) from its transposed total GT (k x d). */
static void untranspose(const double *GT, uint32_t d, uint32_t k, double *G)
{
    for (uint32_t j = 0; j < d; j++)
        for (uint32_t c = 0; c < k; c++)
            G[(size_t)j * k + c] = GT[(size_t)c * d + j];
}

/* Z (n x k) = X W + b, segment by segment (a row's logits the same whoever holds it). */
static void logits_seg(const segs *sg, const float *X, uint32_t d, uint32_t k, const float *W,
                       const float *b, float *Z)
{
    for (uint32_t q = 0; q < sg->ns; q++)
        h2t_solver__logits(X + (size_t)sg->s0[q] * d, sg->len[q], d, k, W, b,
                           Z + (size_t)sg->s0[q] * k);
}

/* Sum over rows of the CE of logits Z (n x k), for float (the model's logits) and double
 * (FISTA's) alike: one body, two types. The mean divides the sum over every participant's rows
 * by their number. */
#define H2T_DEFINE_CE_VALUE(SFX, T)                                                                \
    static double ce_value##SFX(const T *Z, const uint32_t *y, uint32_t n, uint32_t k)             \
    {                                                                                              \
        double loss = 0;                                                                           \
        for (uint32_t i = 0; i < n; i++) {                                                         \
            const T *z = Z + (size_t)i * k;                                                        \
            double m = z[0];                                                                       \
            for (uint32_t c = 1; c < k; c++)                                                       \
                if (z[c] > m)                                                                      \
                    m = z[c];                                                                      \
            double s = 0;                                                                          \
            for (uint32_t c = 0; c < k; c++)                                                       \
                s += exp((double)z[c] - m);                                                        \
            loss += log(s) + m - (double)z[y[i]];                                                  \
        }                                                                                          \
        return loss;                                                                               \
    }
H2T_DEFINE_CE_VALUE(, float)
H2T_DEFINE_CE_VALUE(_d, double)

/* gb[c] += the column sums of R = scale * (softmax(Z) - onehot(y)) (each value rounded to
 * float, Z becoming R in place), row by row in order; gb NULL: only R. */
static void resid_add(float *Z, const uint32_t *y, uint32_t n, uint32_t k, double scale, double *gb)
{
    for (uint32_t i = 0; i < n; i++) {
        float *z = Z + (size_t)i * k;
        double m = z[0];
        for (uint32_t c = 1; c < k; c++)
            if (z[c] > m)
                m = z[c];
        double s = 0;
        for (uint32_t c = 0; c < k; c++)
            s += exp((double)z[c] - m);
        for (uint32_t c = 0; c < k; c++) {
            double p = exp((double)z[c] - m) / s - (c == y[i] ? 1.0 : 0.0);
            z[c] = (float)(scale * p);
            if (gb)
                gb[c] += z[c];
        }
    }
}

/* Turn logits Z into R = scale * (softmax(Z) - onehot(y)) in place; gb = column sums of R. */
static void ce_residual(float *Z, const uint32_t *y, uint32_t n, uint32_t k, double scale,
                        float *gb)
{
    double *acc = gb ? calloc(k, sizeof(double)) : NULL;
    resid_add(Z, y, n, k, scale, acc);
    if (gb) {
        for (uint32_t c = 0; c < k; c++)
            gb[c] = acc ? (float)acc[c] : 0.0f;
        if (!acc) /* allocation failed: sum R's columns afterwards, same order per column */
            for (uint32_t c = 0; c < k; c++) {
                double a = 0;
                for (uint32_t i = 0; i < n; i++)
                    a += Z[(size_t)i * k + c];
                gb[c] = (float)a;
            }
    }
    free(acc);
}

/* Over every participant's rows, by row blocks: the CE of the logits XL WL + b (XL: n x dL)
 * summed, and (G or gb not NULL) with R = (softmax - onehot) / N, G = X^T R (d x k: X n x d, the
 * same rows) and gb = the column sums of R, in double. Returns the sum, NAN without memory. */
static double lg_rows(const h2t_solver_opts *o, const segs *sg, const float *XL, uint32_t dL,
                      const float *WL, const float *b, const float *X, uint32_t d,
                      const uint32_t *y, uint32_t k, double N, double *G, double *gb)
{
    int want = G || gb;
    size_t dk = (size_t)d * k, m = 1 + (want ? k : 0) + (G ? dk : 0);
    bsum bs = {0};
    float *Z = malloc((size_t)sg->maxlen * k * sizeof(float) + 1);
    float *GT = G ? malloc(dk * sizeof(float) + 1) : NULL;
    if (!Z || (G && !GT) || bsum_init(o, &bs, sg->nb, m, G ? 1 + k : m) < 0) {
        free(Z);
        free(GT);
        if (o && o->red)
            abort(); /* as h2t_solver__reduce */
        return NAN;
    }
    for (uint32_t q = 0; q < sg->ns; q++) {
        uint32_t s0 = sg->s0[q], len = sg->len[q];
        int first;
        double *slot = bsum_at(&bs, sg->blk[q], &first);
        h2t_solver__logits(XL + (size_t)s0 * dL, len, dL, k, WL, b, Z);
        slot[0] += ce_value(Z, y + s0, len, k);
        if (want)
            resid_add(Z, y + s0, len, k, 1.0 / N, slot + 1);
        if (G)
            grad_add(X + (size_t)s0 * d, Z, len, d, k, GT, slot + 1 + k, first);
    }
    const double *t = bsum_total(o, &bs);
    double f = t[0];
    if (gb)
        memcpy(gb, t + 1, k * sizeof(double));
    if (G)
        untranspose(t + 1 + k, d, k, G);
    bsum_free(&bs);
    free(Z);
    free(GT);
    return f;
}

/* lg_rows with float outputs (G: d x k, gb: k; either may be NULL). */
static double lg_rows_f(const h2t_solver_opts *o, const segs *sg, const float *XL, uint32_t dL,
                        const float *WL, const float *b, const float *X, uint32_t d,
                        const uint32_t *y, uint32_t k, double N, float *G, float *gb)
{
    size_t dk = (size_t)d * k;
    double *Gd = G ? malloc(dk * sizeof(double) + 1) : NULL;
    double *gbd = malloc(k * sizeof(double) + 1);
    if ((G && !Gd) || !gbd) {
        free(Gd);
        free(gbd);
        if (o && o->red)
            abort(); /* as h2t_solver__reduce */
        return NAN;
    }
    double f = lg_rows(o, sg, XL, dL, WL, b, X, d, y, k, N, Gd, (G || gb) ? gbd : NULL);
    for (uint32_t c = 0; gb && c < k; c++)
        gb[c] = (float)gbd[c];
    for (size_t q = 0; G && q < dk; q++)
        G[q] = (float)Gd[q];
    free(Gd);
    free(gbd);
    return f;
}

/* h2t_solver_loss_grad over every participant's rows (o may be NULL: this process's). */
static double loss_grad(const h2t_solver_opts *o, const float *X, const uint32_t *y, uint32_t n,
                        uint32_t d, uint32_t k, const float *W, const float *b, float *G, float *gb)
{
    segs sg;
    if (segs_make(o, n, &sg) < 0)
        return NAN;
    double N = h2t_solver__rows(o, n);
    double f = lg_rows_f(o, &sg, X, d, W, b, X, d, y, k, N, G, gb);
    segs_free(&sg);
    return N ? f / N : 0;
}

double h2t_solver_loss_grad(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                            const float *W, const float *b, float *G, float *gb)
{
    return loss_grad(NULL, X, y, n, d, k, W, b, G, gb);
}

int h2t_solver__grad_rownorm(const h2t_solver_opts *o, const float *X, const uint32_t *y,
                             uint32_t n, uint32_t d, uint32_t k, const float *W, const float *b,
                             double *out)
{
    float *G = malloc((size_t)d * k * sizeof(float) + 1);
    float *gb = malloc(k * sizeof(float));
    if (!G || !gb) {
        free(G);
        free(gb);
        return h2t_err_set(H2T_ENOMEM, "gradient buffer (%u x %u)", d, k);
    }
    loss_grad(o, X, y, n, d, k, W, b, G, gb);
    for (uint32_t j = 0; j < d; j++) {
        double s = 0;
        for (uint32_t c = 0; c < k; c++)
            s += (double)G[(size_t)j * k + c] * G[(size_t)j * k + c];
        out[j] = sqrt(s);
    }
    free(G);
    free(gb);
    return 0;
}

/* The group norm of a row and the KKT residual of the group-lasso optimality conditions, for
 * float (the FISTA paths) and double (the kernel-form L-BFGS path) alike: one body, two types.
 * Residual: max over rows j of ||g_j + lambda w_j / ||w_j|||| when w_j != 0, else
 * ||g_j|| - lambda, and of |gb_c| (the unpenalised bias); 0 at an exact solution. */
#define H2T_DEFINE_GROUP_KKT(SFX, T)                                                               \
    static double row_norm_##SFX(const T *w, uint32_t k)                                           \
    {                                                                                              \
        double s = 0;                                                                              \
        for (uint32_t c = 0; c < k; c++)                                                           \
            s += (double)w[c] * w[c];                                                              \
        return sqrt(s);                                                                            \
    }                                                                                              \
    static double kkt_group_##SFX(const T *G, const T *gb, const T *W, uint32_t d, uint32_t k,     \
                                  double lambda)                                                   \
    {                                                                                              \
        double r = 0;                                                                              \
        for (uint32_t j = 0; j < d; j++) {                                                         \
            const T *w = W + (size_t)j * k, *g = G + (size_t)j * k;                                \
            double nw = row_norm_##SFX(w, k), v;                                                   \
            if (nw > 0) {                                                                          \
                double s = 0;                                                                      \
                for (uint32_t c = 0; c < k; c++) {                                                 \
                    double e = g[c] + lambda * w[c] / nw;                                          \
                    s += e * e;                                                                    \
                }                                                                                  \
                v = sqrt(s);                                                                       \
            } else {                                                                               \
                v = row_norm_##SFX(g, k) - lambda;                                                 \
            }                                                                                      \
            if (v > r)                                                                             \
                r = v;                                                                             \
        }                                                                                          \
        for (uint32_t c = 0; gb && c < k; c++)                                                     \
            if (fabs(gb[c]) > r)                                                                   \
                r = fabs(gb[c]);                                                                   \
        return r;                                                                                  \
    }

H2T_DEFINE_GROUP_KKT(f, float)
H2T_DEFINE_GROUP_KKT(d, double)

static double group_penalty(const float *W, uint32_t d, uint32_t k)
{
    double s = 0;
    for (uint32_t j = 0; j < d; j++)
        s += row_norm_f(W + (size_t)j * k, k);
    return s;
}

double h2t_solver__kkt_group(const float *G, const float *gb, const float *W, uint32_t d,
                             uint32_t k, double lambda)
{
    return kkt_group_f(G, gb, W, d, k, lambda);
}

static double dotf(const float *a, const float *b, size_t m)
{
    double s = 0;
    for (size_t i = 0; i < m; i++)
        s += (double)a[i] * b[i];
    return s;
}

static double dotd(const double *a, const double *b, size_t m)
{
    double s = 0;
    for (size_t i = 0; i < m; i++)
        s += a[i] * b[i];
    return s;
}

static double maxabs_d(const double *a, size_t m)
{
    double r = 0;
    for (size_t i = 0; i < m; i++)
        if (fabs(a[i]) > r)
            r = fabs(a[i]);
    return r;
}

static double maxabs(const float *a, size_t m)
{
    double r = 0;
    for (size_t i = 0; i < m; i++)
        if (fabs(a[i]) > r)
            r = fabs(a[i]);
    return r;
}

/* ---- FISTA for mean CE + lambda * sum_j ||W_j|| ---- */

/* Upper bound on the Lipschitz constant of the mean CE gradient in (W, b): the softmax
 * Hessian is <= I/2, so L <= sigma_max([X 1])^2 / (2n); sigma_max by power iteration
 * (30 rounds, then 5% margin; deterministic start vector). */
static double lipschitz_bound(const h2t_solver_opts *o, const segs *sg, const float *X, uint32_t n,
                              uint32_t d, double N)
{
    float *v = malloc(((size_t)d + 1) * sizeof(float)), *u = malloc((size_t)n * sizeof(float) + 1);
    float *vt = malloc(((size_t)d + 1) * sizeof(float));
    bsum bs = {0};
    if (!v || !u || !vt || bsum_init(o, &bs, sg->nb, (size_t)d + 2, 2) < 0) {
        free(v);
        free(u);
        free(vt);
        if (o && o->red)
            abort();                  /* as h2t_solver__reduce */
        return 0.5 * ((double)d + 1); /* crude but valid for rows of norm <= sqrt(d) */
    }
    for (uint32_t j = 0; j <= d; j++)
        v[j] = 1.0f;
    double s2 = 0;
    for (int it = 0; it < 30; it++) {
        double nv = sqrt(dotf(v, v, (size_t)d + 1));
        for (uint32_t j = 0; j <= d; j++)
            v[j] = (float)(v[j] / nv);
        for (uint32_t q = 0; q < sg->ns; q++) { /* u = X v + v_d, X^T u, by segments */
            uint32_t s0 = sg->s0[q], len = sg->len[q];
            const float *Xq = X + (size_t)s0 * d;
            float *uq = u + s0;
            int first;
            double *slot = bsum_at(&bs, sg->blk[q], &first);
            if (d)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)len, (int)d, 1.0f, Xq, (int)d, v, 1,
                            0.0f, uq, 1);
            else
                memset(uq, 0, len * sizeof(float));
            double sb = 0;
            for (uint32_t i = 0; i < len; i++) {
                uq[i] += v[d];
                sb += uq[i];
            }
            slot[0] += dotf(uq, uq, len);
            slot[1] += sb;
            if (d && len)
                cblas_sgemv(CblasRowMajor, CblasTrans, (int)len, (int)d, 1.0f, Xq, (int)d, uq, 1,
                            0.0f, vt, 1);
            else
                memset(vt, 0, (size_t)d * sizeof(float));
            add_f(slot + 2, vt, d, first);
        }
        const double *t = bsum_total(o, &bs);
        s2 = t[0];
        for (uint32_t j = 0; j < d; j++)
            v[j] = (float)t[2 + j];
        v[d] = (float)t[1];
    }
    bsum_free(&bs);
    free(v);
    free(u);
    free(vt);
    return 1.05 * s2 / (2.0 * N) + 1e-12;
}

/* FISTA runs in double on the (small) working-set matrix: near a solution at a small lambda
 * the objective changes per step fall below the rounding of float logits, the backtracking
 * test then fails on noise, the step collapses to 1/Lmax and the function-value restart fires
 * at random (measured: fits stalled at 2000 iterations with the KKT residual 1.4x its
 * tolerance). In double the test is exact and the step follows the local curvature. */

/* The CE of Z summed over rows and, in the same exp pass, R = scale * (softmax(Z) - onehot(y))
 * with gb = column sums of R (R may be Z: then Z becomes its residual in place). */
static double ce_value_residual_d(const double *Z, double *R, const uint32_t *y, uint32_t n,
                                  uint32_t k, double scale, double *gb)
{
    double loss = 0;
    for (uint32_t c = 0; c < k; c++)
        gb[c] = 0;
    for (uint32_t i = 0; i < n; i++) {
        const double *z = Z + (size_t)i * k;
        double *r = R + (size_t)i * k;
        double m = z[0], zy = z[y[i]];
        for (uint32_t c = 1; c < k; c++)
            if (z[c] > m)
                m = z[c];
        double s = 0;
        for (uint32_t c = 0; c < k; c++) {
            r[c] = exp(z[c] - m);
            s += r[c];
        }
        loss += log(s) + m - zy;
        for (uint32_t c = 0; c < k; c++) {
            r[c] = scale * (r[c] / s - (c == y[i] ? 1.0 : 0.0));
            gb[c] += r[c];
        }
    }
    return loss;
}

/* Z (double) = X Wd + b with float sgemm by segments (Wt, Zt: float scratch d x k, n x k). */
static void logits_mixed(const segs *sg, const float *X, uint32_t n, uint32_t d, uint32_t k,
                         const double *Wd, const double *b, float *Wt, float *Zt, double *Z)
{
    for (size_t q = 0; q < (size_t)d * k; q++)
        Wt[q] = (float)Wd[q];
    logits_seg(sg, X, d, k, Wt, NULL, Zt);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < k; c++)
            Z[(size_t)i * k + c] = Zt[(size_t)i * k + c] + b[c];
}

/* Zn = Zy + X (Wn - Y) + (bn - Yb): the change in float (it is small near a solution, so its
 * rounding is too), the logits themselves in double, so objective differences stay exact to
 * far below the float rounding of Z. */
static void logits_step(const segs *sg, const float *X, uint32_t n, uint32_t d, uint32_t k,
                        const double *Wn, const double *Y, const double *bn, const double *Yb,
                        const double *Zy, float *Wt, float *Zt, double *Zn)
{
    for (size_t q = 0; q < (size_t)d * k; q++)
        Wt[q] = (float)(Wn[q] - Y[q]);
    logits_seg(sg, X, d, k, Wt, NULL, Zt);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < k; c++)
            Zn[(size_t)i * k + c] = Zy[(size_t)i * k + c] + Zt[(size_t)i * k + c] + (bn[c] - Yb[c]);
}

/* Over every participant's rows, by row blocks (bs: 1 + k + d k values per block): the CE of
 * the double logits Z summed (returned), R = scale * (softmax(Z) - onehot(y)) (R may be Z),
 * gb = its column sums and G (d x k) = X^T R through float sgemm (Rt: n x k, GT: k x d float
 * scratch). */
static double grad_mixed(const h2t_solver_opts *o, const segs *sg, bsum *bs, const float *X,
                         uint32_t d, uint32_t k, const double *Z, double *R, const uint32_t *y,
                         double scale, float *Rt, float *GT, double *G, double *gb)
{
    double gtmp[256], *gt = k <= 256 ? gtmp : malloc(k * sizeof(double));
    if (!gt)
        abort(); /* as h2t_solver__reduce: a participant this short of memory stops */
    for (uint32_t q = 0; q < sg->ns; q++) {
        uint32_t s0 = sg->s0[q], len = sg->len[q];
        int first;
        double *slot = bsum_at(bs, sg->blk[q], &first);
        size_t off = (size_t)s0 * k;
        slot[0] += ce_value_residual_d(Z + off, R + off, y + s0, len, k, scale, gt);
        for (uint32_t c = 0; c < k; c++)
            slot[1 + c] += gt[c];
        for (size_t i = 0; i < (size_t)len * k; i++)
            Rt[off + i] = (float)R[off + i];
        grad_add(X + (size_t)s0 * d, Rt + off, len, d, k, GT, slot + 1 + k, first);
    }
    if (gt != gtmp)
        free(gt);
    const double *t = bsum_total(o, bs);
    memcpy(gb, t + 1, k * sizeof(double));
    untranspose(t + 1 + k, d, k, G);
    return t[0];
}

/* The CE of the double logits Z summed over every participant's rows, by row blocks (bs: one
 * value per block). */
static double ce_sum_d(const h2t_solver_opts *o, const segs *sg, bsum *bs, const double *Z,
                       const uint32_t *y, uint32_t k)
{
    for (uint32_t q = 0; q < sg->ns; q++)
        bsum_at(bs, sg->blk[q], NULL)[0] +=
            ce_value_d(Z + (size_t)sg->s0[q] * k, y + sg->s0[q], sg->len[q], k);
    return bsum_total(o, bs)[0];
}

/* Wn = prox_{t lambda}(Y - t G), bn = Yb - t gb; returns the penalty sum ||Wn_j||. */
static double prox_step_d(const double *Y, const double *Yb, const double *G, const double *gb,
                          uint32_t d, uint32_t k, double t, double lambda, double *Wn, double *bn)
{
    double pen = 0;
    for (uint32_t j = 0; j < d; j++) {
        const double *yv = Y + (size_t)j * k, *g = G + (size_t)j * k;
        double *w = Wn + (size_t)j * k;
        double s = 0;
        for (uint32_t c = 0; c < k; c++) {
            w[c] = yv[c] - t * g[c];
            s += w[c] * w[c];
        }
        double nv = sqrt(s), thr = t * lambda;
        if (nv <= thr) {
            for (uint32_t c = 0; c < k; c++)
                w[c] = 0;
        } else {
            double f = 1.0 - thr / nv;
            for (uint32_t c = 0; c < k; c++)
                w[c] *= f;
            pen += f * nv;
        }
    }
    for (uint32_t c = 0; c < k; c++)
        bn[c] = Yb[c] - t * gb[c];
    return pen;
}

int h2t_solver__fit_group(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                          double lambda, const h2t_solver_opts *o, float *Wf, float *bf, double *L,
                          float *Gout, h2t_fit_info *info)
{
    size_t dk = (size_t)d * k, nk = (size_t)n * k;
    int rc = 0;
    double *buf = malloc((5 * dk + 4 * nk + 5 * k) * sizeof(double) + 1);
    float *fbuf = malloc((dk + 2 * nk) * sizeof(float) + 1);
    segs sg = {0};
    bsum bg = {0}, bc = {0}; /* per block: CE, bias gradient, gradient; CE alone */
    if ((rc = segs_make(o, n, &sg)) < 0 || (rc = bsum_init(o, &bg, sg.nb, 1 + k + dk, 1 + k)) < 0 ||
        (rc = bsum_init(o, &bc, sg.nb, 1, 1)) < 0)
        goto out;
    if (!fbuf || !buf) {
        if (o->red)
            abort(); /* as h2t_solver__reduce */
        rc = h2t_err_set(H2T_ENOMEM, "group-lasso workspace (%u x %u)", n, d);
        goto out;
    }
    double *W = buf, *Y = W + dk, *Wn = Y + dk, *G = Wn + dk, *Gs = G + dk;
    double *Zw = Gs + dk, *Zy = Zw + nk, *Zn = Zy + nk, *R = Zn + nk;
    double *b = R + nk, *Yb = b + k, *bn = Yb + k, *gb = bn + k, *gbs = gb + k;
    float *Wt = fbuf, *Zt = Wt + dk, *Rt = Zt + nk;
    (void)Gs;
    for (size_t q = 0; q < dk; q++)
        W[q] = Wf[q];
    for (uint32_t c = 0; c < k; c++)
        b[c] = bf[c];
    double N = h2t_solver__rows(o, n);
    double Lmax = lipschitz_bound(o, &sg, X, n, d, N);
    double Lc = (L && *L > 0) ? *L : Lmax * 0.1;
    if (Lc > Lmax)
        Lc = Lmax;
    logits_mixed(&sg, X, n, d, k, W, b, Wt, Zt, Zw);
    double pen0 = 0;
    for (uint32_t j = 0; j < d; j++)
        pen0 += row_norm_d(W + (size_t)j * k, k);
    double Fw = ce_sum_d(o, &sg, &bc, Zw, y, k) / N + lambda * pen0;
    memcpy(Y, W, dk * sizeof(double));
    memcpy(Yb, b, k * sizeof(double));
    memcpy(Zy, Zw, nk * sizeof(double));
    double t = 1.0, kkt = INFINITY;
    uint32_t it = 0;
    int converged = 0;
    for (it = 0; it < o->max_iter; it++) {
        if (h2t_solver__cancelled(o)) {
            rc = h2t_err_set(H2T_ECANCELED, "group-lasso fit cancelled");
            goto out;
        }
        double fY = grad_mixed(o, &sg, &bg, X, d, k, Zy, R, y, 1.0 / N, Rt, Wt, G, gb) / N;
        double fn = 0, pen = 0;
        Lc = Lc * 0.9 > Lmax * 1e-6 ? Lc * 0.9 : Lmax * 1e-6; /* let the estimate come down */
        for (int bt = 0; bt < 60; bt++) {
            pen = prox_step_d(Y, Yb, G, gb, d, k, 1.0 / Lc, lambda, Wn, bn);
            logits_step(&sg, X, n, d, k, Wn, Y, bn, Yb, Zy, Wt, Zt, Zn);
            fn = ce_sum_d(o, &sg, &bc, Zn, y, k) / N;
            double lin = 0, sq = 0;
            for (size_t i = 0; i < dk; i++) {
                double dv = Wn[i] - Y[i];
                lin += G[i] * dv;
                sq += dv * dv;
            }
            for (uint32_t c = 0; c < k; c++) {
                double dv = bn[c] - Yb[c];
                lin += gb[c] * dv;
                sq += dv * dv;
            }
            if (fn <= fY + lin + 0.5 * Lc * sq + 1e-15 * fabs(fY) || Lc >= Lmax)
                break;
            Lc = Lc * 2.0 < Lmax ? Lc * 2.0 : Lmax;
        }
        double Fn = fn + lambda * pen;
        /* gradient mapping at Y (cheap optimality proxy) and the restart test */
        double gm = 0, rs = 0;
        for (size_t i = 0; i < dk; i++) {
            double a = fabs((Y[i] - Wn[i]) * Lc);
            if (a > gm)
                gm = a;
            rs += (Y[i] - Wn[i]) * (Wn[i] - W[i]);
        }
        for (uint32_t c = 0; c < k; c++) {
            double a = fabs((Yb[c] - bn[c]) * Lc);
            if (a > gm)
                gm = a;
            rs += (Yb[c] - bn[c]) * (bn[c] - b[c]);
        }
        double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
        double beta = (t - 1.0) / tn;
        if (rs > 0 || Fn > Fw) { /* adaptive restart (O'Donoghue & Candes) */
            beta = 0;
            tn = 1.0;
        }
        for (size_t i = 0; i < dk; i++) {
            double wn = Wn[i];
            Y[i] = wn + beta * (wn - W[i]);
            W[i] = wn;
        }
        for (uint32_t c = 0; c < k; c++) {
            Yb[c] = bn[c] + beta * (bn[c] - b[c]);
            b[c] = bn[c];
        }
        for (size_t i = 0; i < nk; i++) {
            double zn = Zn[i];
            Zy[i] = zn + beta * (zn - Zw[i]);
            Zw[i] = zn;
        }
        Fw = Fn;
        t = tn;
        double tol = o->kkt_rel * lambda;
        if (gm <= tol || (it + 1) % 25 == 0) {
            (void)grad_mixed(o, &sg, &bg, X, d, k, Zw, R, y, 1.0 / N, Rt, Wt, G, gbs);
            kkt = kkt_group_d(G, gbs, W, d, k, lambda);
            if (kkt <= tol) {
                converged = 1;
                it++;
                break;
            }
        }
    }
    /* the returned point is the float-rounded W: judge and report it */
    for (size_t q = 0; q < dk; q++)
        Wf[q] = (float)W[q];
    for (uint32_t c = 0; c < k; c++)
        bf[c] = (float)b[c];
    for (size_t q = 0; q < dk; q++)
        W[q] = Wf[q];
    for (uint32_t c = 0; c < k; c++)
        b[c] = bf[c];
    logits_mixed(&sg, X, n, d, k, W, b, Wt, Zt, Zw);
    double pen = 0;
    for (uint32_t j = 0; j < d; j++)
        pen += row_norm_d(W + (size_t)j * k, k);
    Fw = grad_mixed(o, &sg, &bg, X, d, k, Zw, Zw, y, 1.0 / N, Rt, Wt, G, gb) / N + lambda * pen;
    kkt = kkt_group_d(G, gb, W, d, k, lambda);
    converged = kkt <= o->kkt_rel * lambda;
    if (Gout)
        for (size_t q = 0; q < dk; q++)
            Gout[q] = (float)G[q];
    if (L)
        *L = Lc;
    if (info) {
        info->iters = it;
        info->converged = (uint32_t)converged;
        info->grad_norm = kkt;
        info->objective = Fw;
    }
out:
    segs_free(&sg);
    bsum_free(&bg);
    bsum_free(&bc);
    free(fbuf);
    free(buf);
    return rc;
}

/* ---- L-BFGS for mean CE + (ridge/2)||W||^2: one engine, two forms ----
 *
 * The memory holds the last LBFGS_M pairs s = th' - th, y = g' - g. In the primal form the
 * variables are th = [W (d*k), b (k)] and the inner product is the plain one. In the kernel
 * form th = [A (n*k), b (k)] with W = X^T A, and the inner product is the primal one,
 * <u, v> = u^T K v on the A part (K = X X^T, the Gram matrix): every vector then travels with
 * its image under K (thi, gi, si, yi, pi) so the recursion never forms W. In the primal form
 * the images are the vectors themselves (the image pointers alias them). Iterates are double:
 * at float precision the Armijo test fails on rounding long before max|grad| reaches gtol on
 * real features (measured: stalled, then 1700 primal iterations, 8e-5 at the cap). */

#define LBFGS_M 10

/* f at th; writes the gradient g and, in the kernel form, the images thi and gi. */
typedef double (*lbfgs_eval_fn)(void *ctx, const double *th, double *thi, double *g, double *gi);

typedef struct lbfgs {
    size_t m;
    int kernel;          /* images are separate vectors */
    uint32_t hist, head; /* pairs held; the slot the next pair goes to */
    int dropped;         /* the memory was dropped after a failed line search */
    double f;            /* objective at th */
    double rho[LBFGS_M], alpha[LBFGS_M];
    double *th, *thi, *g, *gi, *thn, *thni, *gn, *gni, *p, *pi;
    double *S, *Si, *Yv, *Yi; /* LBFGS_M x m each */
    double *buf;
    lbfgs_eval_fn eval;
    void *ctx;
} lbfgs;

static int lbfgs_init(lbfgs *L, size_t m, int kernel, lbfgs_eval_fn eval, void *ctx)
{
    size_t nv = kernel ? 10 + 4 * LBFGS_M : 5 + 2 * LBFGS_M;
    memset(L, 0, sizeof *L);
    L->m = m;
    L->kernel = kernel;
    L->eval = eval;
    L->ctx = ctx;
    if (!(L->buf = malloc(nv * m * sizeof(double) + 1)))
        return h2t_err_set(H2T_ENOMEM, "L-BFGS memory (%zu variables)", m);
    double *v = L->buf;
    L->th = v, L->g = v + m, L->thn = v + 2 * m, L->gn = v + 3 * m, L->p = v + 4 * m;
    L->S = v + 5 * m, L->Yv = L->S + LBFGS_M * m;
    if (kernel) {
        v = L->Yv + LBFGS_M * m;
        L->thi = v, L->gi = v + m, L->thni = v + 2 * m, L->gni = v + 3 * m, L->pi = v + 4 * m;
        L->Si = v + 5 * m, L->Yi = L->Si + LBFGS_M * m;
    } else {
        L->thi = L->th, L->gi = L->g, L->thni = L->thn, L->gni = L->gn, L->pi = L->p;
        L->Si = L->S, L->Yi = L->Yv;
    }
    return 0;
}

/* Evaluate at the start point the caller has written into L->th. */
static void lbfgs_start(lbfgs *L)
{
    L->f = L->eval(L->ctx, L->th, L->thi, L->g, L->gi);
}

/* p (and its image) = -H g by the two-loop recursion, newest pair first; returns the
 * directional derivative <g, p>. Not a descent direction: restart from steepest descent.
 * Each dot product is a sum in order along the vector, whose adds wait on one another; so the
 * update of p by one pair runs in the same loop as the dot product that follows it (each p[i]
 * updated before its term is taken), and the newest pair's two products for the scale share a
 * loop: the updates cost no pass of their own, and every number is the one the loops one after
 * another give. */
/* The second loop's step: p += c s (and pi += c si in kernel form, where pi is p in the
 * other space) unless s is NULL, then <u, p>, in one pass in index order. */
static double lbfgs_add_dot(double *p, double *pi, const double *sv, const double *si, double c,
                            const double *u, size_t m, int kernel)
{
    double d = 0;
    if (!sv)
        for (size_t i = 0; i < m; i++)
            d += u[i] * p[i];
    else if (kernel)
        for (size_t i = 0; i < m; i++) {
            p[i] += c * sv[i];
            pi[i] += c * si[i];
            d += u[i] * p[i];
        }
    else
        for (size_t i = 0; i < m; i++) {
            p[i] += c * sv[i];
            d += u[i] * p[i];
        }
    return d;
}

static double lbfgs_direction(lbfgs *L)
{
    size_t m = L->m;
    double *p = L->p, *pi = L->pi;
    const double *g = L->g, *gi = L->gi;
    int kernel = L->kernel;
    uint32_t hist = L->hist;
    double gamma;
    if (hist) { /* the newest pair's scale, from its own vectors */
        uint32_t s = (L->head + LBFGS_M - 1) % LBFGS_M;
        const double *sv = L->Si + s * m, *yv = L->Yv + s * m, *yi = L->Yi + s * m;
        double a = 0, b = 0;
        for (size_t i = 0; i < m; i++) {
            a += sv[i] * yv[i];
            b += yi[i] * yv[i];
        }
        gamma = a / b;
    } else {
        gamma = 1.0 / sqrt(dotd(gi, g, m));
    }
    /* first loop, newest pair first: alpha_h = rho_h <s_h, p>, then p -= alpha_h y_h (that
     * update done in the next pair's loop, the last one with the scale) */
    const double *yv = NULL, *yi = NULL;
    double a = 0;
    for (uint32_t h = 0; h < hist; h++) {
        uint32_t s = (L->head + LBFGS_M - 1 - h) % LBFGS_M;
        const double *sv = L->Si + s * m;
        double d = 0;
        if (!h)
            for (size_t i = 0; i < m; i++) {
                p[i] = -g[i];
                pi[i] = -gi[i]; /* the same store in the primal form */
                d += sv[i] * p[i];
            }
        else if (kernel)
            for (size_t i = 0; i < m; i++) {
                p[i] -= a * yv[i];
                pi[i] -= a * yi[i];
                d += sv[i] * p[i];
            }
        else
            for (size_t i = 0; i < m; i++) {
                p[i] -= a * yv[i];
                d += sv[i] * p[i];
            }
        a = L->alpha[s] = L->rho[s] * d;
        yv = L->Yv + s * m;
        yi = L->Yi + s * m;
    }
    if (!hist && kernel)
        for (size_t i = 0; i < m; i++) {
            p[i] = -g[i];
            pi[i] = -gi[i];
            p[i] *= gamma;
            pi[i] *= gamma;
        }
    else if (!hist) /* pi is p */
        for (size_t i = 0; i < m; i++) {
            p[i] = -g[i];
            p[i] *= gamma;
        }
    else if (kernel)
        for (size_t i = 0; i < m; i++) {
            p[i] -= a * yv[i];
            pi[i] -= a * yi[i];
            p[i] *= gamma;
            pi[i] *= gamma;
        }
    else
        for (size_t i = 0; i < m; i++) {
            p[i] -= a * yv[i];
            p[i] *= gamma;
        }
    /* second loop, oldest pair first: c_h = alpha_h - rho_h <y_h, p>, then p += c_h s_h (done
     * in the next pair's loop, the newest one's with <g, p>) */
    const double *sv = NULL, *si = NULL;
    double c = 0;
    for (uint32_t h = hist; h-- > 0;) {
        uint32_t s = (L->head + LBFGS_M - 1 - h) % LBFGS_M;
        double d = lbfgs_add_dot(p, pi, sv, si, c, L->Yi + s * m, m, kernel);
        c = L->alpha[s] - L->rho[s] * d;
        sv = L->S + s * m;
        si = L->Si + s * m;
    }
    double gp = lbfgs_add_dot(p, pi, sv, si, c, gi, m, kernel);
    if (!(gp < 0)) {
        L->hist = 0;
        double ng = sqrt(dotd(L->gi, L->g, m));
        for (size_t i = 0; i < m; i++) {
            p[i] = -L->g[i] / ng;
            pi[i] = -L->gi[i] / ng;
        }
        gp = dotd(L->gi, p, m);
    }
    return gp;
}

/* One iteration: direction, backtracking Armijo line search, memory update. Returns 1 when it
 * moved, 0 when no step decreases f even after dropping the memory once (at float precision
 * of the model's logits: the caller stops). */
static int lbfgs_iterate(lbfgs *L)
{
    size_t m = L->m;
    double fn = L->f;
    for (;;) {
        double gp = lbfgs_direction(L), step = 1.0;
        int ok = 0;
        for (int ls = 0; ls < 40 && !ok; ls++, step *= 0.5) {
            for (size_t i = 0; i < m; i++)
                L->thn[i] = L->th[i] + step * L->p[i];
            fn = L->eval(L->ctx, L->thn, L->thni, L->gn, L->gni);
            ok = fn <= L->f + 1e-4 * step * gp;
        }
        if (!ok) {
            if (L->hist && !L->dropped) { /* drop the memory once, then give up */
                L->hist = 0;
                L->dropped = 1;
                continue;
            }
            return 0;
        }
        L->dropped = 0;
        break;
    }
    double *sv = L->S + L->head * m, *si = L->Si + L->head * m;
    double *yv = L->Yv + L->head * m, *yi = L->Yi + L->head * m;
    double sy = 0, yy = 0; /* <s_i, y>, <y_i, y>: two sums in order, in one loop */
    if (L->kernel)
        for (size_t i = 0; i < m; i++) {
            sv[i] = L->thn[i] - L->th[i];
            yv[i] = L->gn[i] - L->g[i];
            si[i] = L->thni[i] - L->thi[i];
            yi[i] = L->gni[i] - L->gi[i];
            sy += si[i] * yv[i];
            yy += yi[i] * yv[i];
        }
    else /* si is sv, yi is yv */
        for (size_t i = 0; i < m; i++) {
            sv[i] = L->thn[i] - L->th[i];
            yv[i] = L->gn[i] - L->g[i];
            sy += sv[i] * yv[i];
            yy += yv[i] * yv[i];
        }
    if (sy > 1e-12 * yy) {
        L->rho[L->head] = 1.0 / sy;
        L->head = (L->head + 1) % LBFGS_M;
        if (L->hist < LBFGS_M)
            L->hist++;
    }
    double *t;
#define SWAP_(u, v) (t = L->u, L->u = L->v, L->v = t)
    SWAP_(th, thn);
    SWAP_(g, gn);
    if (L->kernel) {
        SWAP_(thi, thni);
        SWAP_(gi, gni);
    } else {
        L->thi = L->th, L->gi = L->g, L->thni = L->thn, L->gni = L->gn;
    }
#undef SWAP_
    L->f = fn;
    return 1;
}

static void lbfgs_free(lbfgs *L)
{
    free(L->buf);
    L->buf = NULL;
}

/* The primal form: f and g at th = [W (d*k), b (k)], the model in float (sgemm logits), the
 * sums over rows by row blocks (lg_rows) in double. */
typedef struct smooth_ctx {
    const float *X;
    const uint32_t *y;
    uint32_t n, d, k;
    double ridge;
    float *thf; /* d*k + k */
    const h2t_solver_opts *o;
    double N; /* rows of every participant */
    segs sg;
} smooth_ctx;

static double smooth_eval(void *vc, const double *th, double *thi, double *g, double *gi)
{
    smooth_ctx *c = vc;
    size_t dk = (size_t)c->d * c->k, m = dk + c->k;
    (void)thi, (void)gi; /* the primal form has no images */
    for (size_t i = 0; i < m; i++)
        c->thf[i] = (float)th[i];
    double f = lg_rows(c->o, &c->sg, c->X, c->d, c->thf, c->thf + dk, c->X, c->d, c->y, c->k, c->N,
                       g, g + dk);
    f = c->N ? f / c->N : 0;
    if (c->ridge > 0) {
        double s = 0;
        for (size_t i = 0; i < dk; i++) {
            s += th[i] * th[i];
            g[i] += c->ridge * th[i];
        }
        f += 0.5 * c->ridge * s;
    }
    return f;
}

int h2t_solver__fit_smooth(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                           double ridge, const h2t_solver_opts *o, float *W, float *b,
                           h2t_fit_info *info)
{
    size_t dk = (size_t)d * k, m = dk + k;
    int rc = 0;
    smooth_ctx c = {X,  y, n, d, k, ridge, malloc(m * sizeof(float)), o, h2t_solver__rows(o, n),
                    {0}};
    lbfgs L = {0};
    if ((rc = segs_make(o, n, &c.sg)) < 0)
        goto out;
    if (!c.thf) {
        if (o->red)
            abort(); /* as h2t_solver__reduce */
        rc = h2t_err_set(H2T_ENOMEM, "L-BFGS workspace (%u x %u)", d, k);
        goto out;
    }
    if ((rc = lbfgs_init(&L, m, 0, smooth_eval, &c)) < 0) {
        if (o->red)
            abort();
        goto out;
    }
    for (size_t q = 0; q < dk; q++)
        L.th[q] = W[q];
    for (uint32_t q = 0; q < k; q++)
        L.th[dk + q] = b[q];
    lbfgs_start(&L);
    double gmax = maxabs_d(L.g, m);
    uint32_t it;
    int converged = gmax <= o->gtol;
    for (it = 0; it < o->max_iter && !converged; it++) {
        if (h2t_solver__cancelled(o)) {
            rc = h2t_err_set(H2T_ECANCELED, "fit cancelled");
            goto out;
        }
        if (!lbfgs_iterate(&L))
            break;
        gmax = maxabs_d(L.g, m);
        converged = gmax <= o->gtol;
    }
    for (size_t q = 0; q < dk; q++)
        W[q] = (float)L.th[q];
    for (uint32_t q = 0; q < k; q++)
        b[q] = (float)L.th[dk + q];
    if (info) {
        info->iters = it;
        info->converged = (uint32_t)converged;
        info->grad_norm = gmax;
        info->objective = L.f;
    }
out:
    lbfgs_free(&L);
    free(c.thf);
    segs_free(&c.sg);
    return rc;
}

/* ---- the reference Adam ----
 *
 * Per step: the batch's logits (X_b W, sgemm), the residual, the gradient's transpose
 * G^T = R^T X_b (sgemm), then one pass over W's rows that adds the penalty's gradient and makes
 * the Adam update. The batches are gathered before the steps, not in each: with one batch
 * (n <= batch) it holds the same rows every step; with several, the rows in the seeded order
 * are gathered into one copy whose consecutive slices are the batches (when that copy is at
 * most h2t_solver__adam_gather_max bytes; else each step gathers its batch). Either way every step
 * computes what a per-step gather, a gradient transpose and a separate penalty pass compute,
 * value for value: the same sgemm calls on the same rows in the same order, and the same
 * double arithmetic per element (tests/test_fit.c keeps that form as the reference). */

size_t h2t_solver__adam_gather_max = (size_t)1 << 30;

/* One Adam step over W's rows: row j's gradient is column j of GT (k x d, the batch gradient's
 * transpose) plus its penalty's gradient (group: with ||W_j|| before row j moves, as the rows
 * move independently), then the moment and weight updates of that row. g: k floats scratch. */
static void adam_rows(const float *GT, uint32_t d, uint32_t k, uint32_t penalty, double lambda,
                      double at, float *W, float *mW, float *vW, float *g)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-7;
    for (uint32_t j = 0; j < d; j++) {
        float *w = W + (size_t)j * k, *m = mW + (size_t)j * k, *v = vW + (size_t)j * k;
        for (uint32_t c = 0; c < k; c++)
            g[c] = GT[(size_t)c * d + j];
        if (penalty == H2T_PENALTY_L2) {
            for (uint32_t c = 0; c < k; c++)
                g[c] = (float)(g[c] + lambda * w[c]);
        } else if (penalty == H2T_PENALTY_GROUP) {
            double nw = row_norm_f(w, k);
            if (nw > 0)
                for (uint32_t c = 0; c < k; c++)
                    g[c] = (float)(g[c] + lambda * w[c] / nw);
        }
        for (uint32_t c = 0; c < k; c++) {
            m[c] = (float)(b1 * m[c] + (1 - b1) * g[c]);
            v[c] = (float)(b2 * v[c] + (1 - b2) * (double)g[c] * g[c]);
            w[c] = (float)(w[c] - at * m[c] / (sqrt((double)v[c]) + eps));
        }
    }
}

int h2t_solver__fit_adam(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                         uint32_t penalty, double lambda, double lr, uint32_t steps, uint32_t batch,
                         uint64_t seed, const h2t_solver_opts *o, float *W, float *b,
                         h2t_fit_info *info)
{
    size_t dk = (size_t)d * k;
    int rc = 0;
    uint32_t nb = (n + batch - 1) / batch;
    /* the gathered rows: every row in batch order (one batch, or all of them within the cap),
     * else one batch's */
    int whole = nb <= 1 || (size_t)n * d <= h2t_solver__adam_gather_max / sizeof(float);
    size_t rows = whole ? n : batch;
    float *Xb = malloc(rows * d * sizeof(float) + 1);
    float *Z = malloc((size_t)batch * k * sizeof(float) + 1);
    float *GT = malloc(dk * sizeof(float) + 1), *gb = malloc(k * sizeof(float));
    float *g = malloc(k * sizeof(float));
    float *mW = calloc(dk + 1, sizeof(float)), *vW = calloc(dk + 1, sizeof(float));
    float *mb = calloc(k, sizeof(float)), *vb = calloc(k, sizeof(float));
    uint32_t *perm = malloc((size_t)n * sizeof(uint32_t) + 1), *yb = malloc(rows * 4 + 4);
    if (!Xb || !Z || !GT || !gb || !g || !mW || !vW || !mb || !vb || !perm || !yb) {
        rc = h2t_err_set(H2T_ENOMEM, "Adam workspace (%u x %u, batch %u)", d, k, batch);
        goto out;
    }
    /* Glorot-uniform init and one batch order, both from the seed */
    uint64_t rs = seed;
    double a = sqrt(6.0 / ((double)d + k));
    for (size_t i = 0; i < dk; i++)
        W[i] = (float)((2.0 * h2t_rng_unif(&rs) - 1.0) * a);
    memset(b, 0, k * sizeof(float));
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(h2t_rng_next(&rs) % i);
        uint32_t tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
    if (whole)
        for (uint32_t i = 0; i < n; i++) {
            memcpy(Xb + (size_t)i * d, X + (size_t)perm[i] * d, d * sizeof(float));
            yb[i] = y[perm[i]];
        }
    const double b1 = 0.9, b2 = 0.999, eps = 1e-7;
    double b1t = 1.0, b2t = 1.0;
    for (uint32_t t = 0; t < steps; t++) {
        if ((t & 7) == 0 && h2t_solver__cancelled(o)) {
            rc = h2t_err_set(H2T_ECANCELED, "Adam fit cancelled");
            goto out;
        }
        uint32_t first = (t % nb) * batch, m = n - first < batch ? n - first : batch;
        const float *xb = Xb + (whole ? (size_t)first * d : 0);
        uint32_t *ybt = yb + (whole ? first : 0);
        if (!whole)
            for (uint32_t i = 0; i < m; i++) {
                memcpy(Xb + (size_t)i * d, X + (size_t)perm[first + i] * d, d * sizeof(float));
                yb[i] = y[perm[first + i]];
            }
        h2t_solver__logits(xb, m, d, k, W, b, Z);
        ce_residual(Z, ybt, m, k, 1.0 / batch, gb); /* the reference divides by 128 always */
        /* G^T = R^T X_b: OpenBLAS packs X about twice as fast as the B operand as the A one
         * (measured at 1000 x 69,749 x 10: 0.055 s vs 0.10 s) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)d, (int)m, 1.0f, Z,
                    (int)k, xb, (int)d, 0.0f, GT, (int)d);
        double lrt = lr * 0.5 * (1.0 + cos(M_PI * (double)t / steps));
        b1t *= b1;
        b2t *= b2;
        double at = lrt * sqrt(1.0 - b2t) / (1.0 - b1t);
        adam_rows(GT, d, k, penalty, lambda, at, W, mW, vW, g);
        for (uint32_t c = 0; c < k; c++) {
            mb[c] = (float)(b1 * mb[c] + (1 - b1) * gb[c]);
            vb[c] = (float)(b2 * vb[c] + (1 - b2) * (double)gb[c] * gb[c]);
            b[c] = (float)(b[c] - at * mb[c] / (sqrt((double)vb[c]) + eps));
        }
    }
    if (info) {        /* full-batch objective and optimality residual at the end, for the record */
        float *G = GT; /* d x k now */
        double f = h2t_solver_loss_grad(X, y, n, d, k, W, b, G, gb);
        double r;
        if (penalty == H2T_PENALTY_GROUP) {
            f += lambda * group_penalty(W, d, k);
            r = h2t_solver__kkt_group(G, gb, W, d, k, lambda);
        } else {
            if (penalty == H2T_PENALTY_L2) {
                double s = 0;
                for (size_t i = 0; i < dk; i++) {
                    s += (double)W[i] * W[i];
                    G[i] = (float)(G[i] + lambda * W[i]);
                }
                f += 0.5 * lambda * s;
            }
            r = maxabs(G, dk);
            double rb = maxabs(gb, k);
            r = rb > r ? rb : r;
        }
        info->iters = steps;
        info->converged = 1;
        info->grad_norm = r;
        info->objective = f;
    }
out:
    free(Xb);
    free(Z);
    free(GT);
    free(gb);
    free(g);
    free(mW);
    free(vW);
    free(mb);
    free(vb);
    free(perm);
    free(yb);
    return rc;
}

/* ---- L-BFGS on the support of a group-lasso fit ----
 *
 * Near a solution at a small lambda FISTA crawls: the loss is badly conditioned along the
 * directions the non-zero rows span (measured on 800 x 69,749 real features: 800-2000 FISTA
 * iterations per path point below lambda 1e-4, the last one stopping at 2000 unconverged). On
 * the rows that are non-zero the penalty lambda ||W_j|| is smooth, so there the problem is a
 * smooth one, which L-BFGS solves in far fewer iterations. support_lbfgs moves the non-zero rows
 * of the start point (the other rows held at zero) until those rows' KKT residual is below the
 * tolerance; FISTA then runs from there as before and alone decides convergence (rows that enter
 * or leave the support, the zero rows' conditions), so the stopping test and the solutions it
 * accepts are those of FISTA alone. The logits are carried in double as FISTA's are: the
 * logits at the last accepted point plus X times the step, the step in float. Row-sharded, the
 * loss and gradient are summed over every participant, so all take the same steps. */

#define SUPP_PASSES 3   /* L-BFGS + short FISTA rounds per working set */
#define SUPP_FISTA 100  /* iterations of a short FISTA run */
#define SUPP_LBFGS 300  /* L-BFGS iterations per pass at most */
#define SUPP_LEAVE 0.05 /* a support row below this share of its start norm is leaving */

typedef struct supp_ctx {
    const float *X; /* n x s: the support's columns */
    const uint32_t *y;
    uint32_t n, s, k;
    double lambda;
    const h2t_solver_opts *o; /* its reducer sums over every participant's rows */
    double N;                 /* rows of every participant */
    double *base;             /* s*k + k: the last accepted point */
    double *Zbase, *Zlast;    /* n x k: logits at base and at the last evaluated point */
    double *R;                /* n x k */
    float *Wt, *Zt, *Rt, *Gt; /* float scratch: s*k, n*k, n*k, s*k */
    segs sg;
    bsum bs; /* per block: CE, bias gradient, gradient */
} supp_ctx;

static double supp_eval(void *vc, const double *th, double *thi, double *g, double *gi)
{
    supp_ctx *c = vc;
    uint32_t n = c->n, k = c->k;
    size_t sk = (size_t)c->s * k;
    (void)thi, (void)gi; /* the primal form */
    for (size_t q = 0; q < sk; q++)
        c->Wt[q] = (float)(th[q] - c->base[q]);
    logits_seg(&c->sg, c->X, c->s, k, c->Wt, NULL, c->Zt);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t q = 0; q < k; q++)
            c->Zlast[(size_t)i * k + q] = c->Zbase[(size_t)i * k + q] + c->Zt[(size_t)i * k + q] +
                                          (th[sk + q] - c->base[sk + q]);
    double f = grad_mixed(c->o, &c->sg, &c->bs, c->X, c->s, k, c->Zlast, c->R, c->y, 1.0 / c->N,
                          c->Rt, c->Gt, g, g + sk);
    f = c->N ? f / c->N : 0;
    double pen = 0;
    for (uint32_t j = 0; j < c->s; j++) {
        const double *w = th + (size_t)j * k;
        double nw = row_norm_d(w, k);
        pen += nw;
        for (uint32_t q = 0; nw > 0 && q < k; q++)
            g[(size_t)j * k + q] += c->lambda * w[q] / nw;
    }
    return f + c->lambda * pen;
}

/* The support's KKT residual: the largest row norm of g (penalty included) and |g_b|. */
static double supp_residual(const double *g, uint32_t s, uint32_t k)
{
    double r = maxabs_d(g + (size_t)s * k, k);
    for (uint32_t j = 0; j < s; j++) {
        double v = row_norm_d(g + (size_t)j * k, k);
        r = v > r ? v : r;
    }
    return r;
}

/* Polish the non-zero rows of W (m x k) and b by at most max_iter L-BFGS iterations; *iters
 * gets the count. A start point with no non-zero row is left as it is. */
static int support_lbfgs(const float *X, const uint32_t *y, uint32_t n, uint32_t m, uint32_t k,
                         double lambda, const h2t_solver_opts *o, uint32_t max_iter, float *W,
                         float *b, uint32_t *iters)
{
    int rc = 0;
    uint32_t s = 0;
    *iters = 0;
    uint32_t *rows = malloc((size_t)m * sizeof(uint32_t) + 1);
    if (!rows)
        return h2t_err_set(H2T_ENOMEM, "support (%u rows)", m);
    for (uint32_t j = 0; j < m; j++)
        if (row_norm_f(W + (size_t)j * k, k) > 0)
            rows[s++] = j;
    if (!s) {
        free(rows);
        return 0;
    }
    size_t sk = (size_t)s * k, nk = (size_t)n * k, nv = sk + k;
    supp_ctx c = {.y = y, .n = n, .s = s, .k = k, .lambda = lambda, .o = o};
    float *Xs = malloc((size_t)n * s * sizeof(float) + 1);
    float *fb = malloc((2 * sk + 2 * nk) * sizeof(float) + 1);
    double *db = malloc((nv + 3 * nk + k) * sizeof(double) + 1);
    double *n0 = malloc((size_t)s * sizeof(double)); /* row norms at the start */
    lbfgs L = {0};
    if ((rc = segs_make(o, n, &c.sg)) < 0 ||
        (rc = bsum_init(o, &c.bs, c.sg.nb, 1 + k + sk, 1 + k)) < 0)
        goto out;
    if (!Xs || !fb || !db || !n0) {
        if (o->red)
            abort(); /* as h2t_solver__reduce */
        rc = h2t_err_set(H2T_ENOMEM, "support L-BFGS workspace (%u x %u)", n, s);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t q = 0; q < s; q++)
            Xs[(size_t)i * s + q] = X[(size_t)i * m + rows[q]];
    c.X = Xs;
    c.N = h2t_solver__rows(o, n);
    c.Wt = fb, c.Gt = fb + sk, c.Zt = fb + 2 * sk, c.Rt = c.Zt + nk;
    c.base = db, c.Zbase = db + nv, c.Zlast = c.Zbase + nk, c.R = c.Zlast + nk;
    double *bd = c.R + nk; /* k: the bias in double for logits_mixed */
    if ((rc = lbfgs_init(&L, nv, 0, supp_eval, &c)) < 0)
        goto out;
    for (uint32_t q = 0; q < s; q++)
        for (uint32_t cl = 0; cl < k; cl++)
            L.th[(size_t)q * k + cl] = W[(size_t)rows[q] * k + cl];
    for (uint32_t cl = 0; cl < k; cl++)
        L.th[sk + cl] = bd[cl] = b[cl];
    memcpy(c.base, L.th, nv * sizeof(double));
    logits_mixed(&c.sg, Xs, n, s, k, c.base, bd, c.Wt, c.Zt, c.Zbase);
    lbfgs_start(&L);
    for (uint32_t q = 0; q < s; q++)
        n0[q] = row_norm_d(L.th + (size_t)q * k, k);
    double tol = o->kkt_rel * lambda;
    uint32_t it = 0;
    for (; it < max_iter && supp_residual(L.g, s, k) > tol; it++) {
        if (h2t_solver__cancelled(o)) {
            rc = h2t_err_set(H2T_ECANCELED, "group-lasso fit cancelled");
            goto out;
        }
        if (!lbfgs_iterate(&L))
            break;
        /* the last evaluation was the accepted point: it becomes the base of the next steps */
        memcpy(c.base, L.th, nv * sizeof(double));
        memcpy(c.Zbase, c.Zlast, nk * sizeof(double));
        /* a row heading for zero leaves the support: there the penalty is not smooth and
         * L-BFGS crawls; FISTA's prox step zeroes it */
        int leaving = 0;
        for (uint32_t q = 0; q < s && !leaving; q++)
            leaving = row_norm_d(L.th + (size_t)q * k, k) < SUPP_LEAVE * n0[q];
        if (leaving)
            break;
    }
    *iters = it;
    for (uint32_t q = 0; q < s; q++)
        for (uint32_t cl = 0; cl < k; cl++)
            W[(size_t)rows[q] * k + cl] = (float)L.th[(size_t)q * k + cl];
    for (uint32_t cl = 0; cl < k; cl++)
        b[cl] = (float)L.th[sk + cl];
out:
    lbfgs_free(&L);
    segs_free(&c.sg);
    bsum_free(&c.bs);
    free(rows);
    free(Xs);
    free(fb);
    free(db);
    free(n0);
    return rc;
}

/* ---- working-set group lasso (strong rules, Tibshirani et al. 2012) ----
 *
 * The set starts as the non-zero rows plus the zero rows that pass the strong rule
 * ||G_j|| >= 2 lambda - lambda_prev, but of those only the largest max(nnz, WS_MIN) by ||G_j||
 * (on noisy data the strong set runs to a third of all features while the solution keeps a few
 * hundred); after each fit every KKT violator outside the set is a candidate, again at most
 * max(m, WS_MIN) of them by ||G_j|| per round (the set at most doubles), until none is left.
 * Each round costs one full pass (X^T R) plus FISTA on the n x m gathered columns. */

#define WS_MIN 32

typedef struct ws_cand {
    double score;
    uint32_t j;
} ws_cand;

static int ws_cand_cmp(const void *pa, const void *pb)
{
    const ws_cand *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->j < b->j ? -1 : a->j > b->j;
}

/* Mark at most cap of the nc candidates (largest score first) in `in`; returns how many. */
static uint32_t ws_take(ws_cand *c, uint32_t nc, uint32_t cap, uint8_t *in)
{
    if (nc > cap)
        qsort(c, nc, sizeof(*c), ws_cand_cmp);
    uint32_t t = nc < cap ? nc : cap;
    for (uint32_t q = 0; q < t; q++)
        in[c[q].j] = 1;
    return t;
}

/* The working set's columns of X (n x m) and rows of W (m x k), set[0..m) ascending. */
static void ws_gather(const float *X, const float *W, const uint32_t *set, uint32_t n, uint32_t d,
                      uint32_t m, uint32_t k, float *Xs, float *Ws)
{
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t q = 0; q < m; q++)
            Xs[(size_t)i * m + q] = X[(size_t)i * d + set[q]];
    for (uint32_t q = 0; q < m; q++)
        memcpy(Ws + (size_t)q * k, W + (size_t)set[q] * k, k * sizeof(float));
}

int h2t_solver__fit_group_ws(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t k,
                             double lambda, double lambda_prev, const h2t_solver_opts *o, float *W,
                             float *b, double *L, float *G, h2t_fit_info *info)
{
    size_t nk = (size_t)n * k;
    int rc = 0;
    uint32_t *set = malloc((size_t)d * sizeof(uint32_t) + 1);
    uint8_t *in = calloc((size_t)d + 1, 1);
    float *Z = malloc(nk * sizeof(float) + 1), *gb = malloc(k * sizeof(float));
    float *Xs = NULL, *Ws = NULL;
    ws_cand *cand = malloc((size_t)d * sizeof(ws_cand) + 1);
    h2t_fit_info fi = {0};
    uint32_t total_iters = 0;
    double fval = 0;
    segs sg = {0};
    if ((rc = segs_make(o, n, &sg)) < 0)
        goto out;
    if (!set || !in || !Z || !gb || !cand) {
        rc = h2t_err_set(H2T_ENOMEM, "working set (%u features)", d);
        goto out;
    }
    uint32_t m = 0, nc = 0;
    double N = h2t_solver__rows(o, n);
    for (uint32_t j = 0; j < d; j++)
        if (row_norm_f(W + (size_t)j * k, k) > 0) {
            in[j] = 1;
            set[m++] = j;
        }
    /* the gradient at the start point: logits from the non-zero rows only, then one pass */
    if (!(lambda_prev > 0)) {
        float *Xn = malloc((size_t)n * m * sizeof(float) + 1);
        float *Wn = malloc((size_t)m * k * sizeof(float) + 1);
        if (!Xn || !Wn) {
            free(Xn);
            free(Wn);
            rc = h2t_err_set(H2T_ENOMEM, "working set %u x %u", n, m);
            goto out;
        }
        ws_gather(X, W, set, n, d, m, k, Xn, Wn);
        (void)lg_rows_f(o, &sg, Xn, m, Wn, b, X, d, y, k, N, G, gb);
        free(Xn);
        free(Wn);
        lambda_prev = lambda;
    }
    double thr = 2 * lambda - lambda_prev;
    for (uint32_t j = 0; j < d; j++) {
        double gn = in[j] ? 0 : row_norm_f(G + (size_t)j * k, k);
        if (!in[j] && gn >= thr)
            cand[nc++] = (ws_cand){gn, j};
    }
    ws_take(cand, nc, m > WS_MIN ? m : WS_MIN, in);
    m = 0;
    for (uint32_t j = 0; j < d; j++)
        if (in[j])
            set[m++] = j;
    for (int round = 0; round < 1000; round++) {
        if (h2t_solver__cancelled(o)) {
            rc = h2t_err_set(H2T_ECANCELED, "group-lasso fit cancelled");
            goto out;
        }
        free(Xs);
        free(Ws);
        Xs = malloc((size_t)n * m * sizeof(float) + 1);
        Ws = malloc((size_t)m * k * sizeof(float) + 1);
        if (!Xs || !Ws) {
            rc = h2t_err_set(H2T_ENOMEM, "working set %u x %u", n, m);
            goto out;
        }
        ws_gather(X, W, set, n, d, m, k, Xs, Ws);
        if (m) {
            /* L-BFGS on the support, then FISTA; up to SUPP_PASSES times while FISTA's
             * short runs end unconverged (rows entering or leaving the support), then FISTA
             * to the end */
            h2t_solver_opts fo = *o;
            uint32_t fista_iters = 0;
            for (int pass = 0; pass <= SUPP_PASSES; pass++) {
                uint32_t li = 0;
                if ((rc = support_lbfgs(Xs, y, n, m, k, lambda, o, SUPP_LBFGS, Ws, b, &li)) < 0)
                    goto out;
                fo.max_iter = pass < SUPP_PASSES ? SUPP_FISTA : o->max_iter;
                rc = h2t_solver__fit_group(Xs, y, n, m, k, lambda, &fo, Ws, b, L, NULL, &fi);
                if (rc < 0)
                    goto out;
                fista_iters += fi.iters + li;
                if (fi.converged)
                    break;
            }
            fi.iters = fista_iters;
        } else { /* only the bias: a smooth fit with no features */
            rc = h2t_solver__fit_smooth(Xs, y, n, 0, k, 0, o, Ws, b, &fi);
            if (rc < 0)
                goto out;
        }
        total_iters += fi.iters;
        for (uint32_t q = 0; q < m; q++)
            memcpy(W + (size_t)set[q] * k, Ws + (size_t)q * k, k * sizeof(float));
        /* full gradient at the solution; rows outside the set must satisfy KKT */
        fval = lg_rows_f(o, &sg, Xs, m, Ws, b, X, d, y, k, N, G, gb) / N;
        nc = 0;
        for (uint32_t j = 0; j < d; j++) {
            double gn = in[j] ? 0 : row_norm_f(G + (size_t)j * k, k);
            if (!in[j] && gn > lambda * (1 + o->kkt_rel))
                cand[nc++] = (ws_cand){gn, j};
        }
        uint32_t added = ws_take(cand, nc, m > WS_MIN ? m : WS_MIN, in);
        if (!added)
            break;
        m = 0;
        for (uint32_t j = 0; j < d; j++)
            if (in[j])
                set[m++] = j;
    }
    if (info) {
        info->iters = total_iters;
        info->converged = fi.converged;
        info->grad_norm = h2t_solver__kkt_group(G, gb, W, d, k, lambda);
        info->converged = info->grad_norm <= o->kkt_rel * lambda;
        info->objective = fval + lambda * group_penalty(W, d, k);
    }
out:
    segs_free(&sg);
    free(cand);
    free(set);
    free(in);
    free(Z);
    free(gb);
    free(Xs);
    free(Ws);
    return rc;
}

/* ---- kernel (representer) form of the smooth fit, for n < d ----
 *
 * Started from W = X^T A (A = 0 is W = 0), every L-BFGS iterate of mean CE + (ridge/2)||W||^2
 * stays in the row space of X: the gradient is X^T (R/n + ridge A). So the primal L-BFGS runs
 * on coefficients A (n x k) with the Gram matrix Gm = X X^T: logits Gm A + b, and every inner
 * product of the primal <X^T u, X^T v> is <u, Gm v>. Each vector is kept with its image
 * (Gm u_A, u_b) so a dot product costs O(nk); one evaluation costs two n x n x k products
 * instead of two n x d x k passes. The primal gradient's max-abs entry (the stop test) needs
 * X^T (R/n + ridge A), one pass, taken only once the Frobenius norm <g, Gm g> says it can pass;
 * the returned W = X^T A is then checked against the primal gradient itself and, if that check
 * fails in float, finished by the primal L-BFGS from there. */

/* The Gram matrix in GRAM_SLABS fixed slabs of its rows: slab b (rows [b N / S, (b + 1) N / S))
 * against rows from its first on (the upper triangle and the slab's diagonal block), by dgemm
 * per column block of 2048 features in order. One process computes every slab; row-sharded,
 * each slab is computed by the participant holding its first row, and the slabs are then
 * gathered through the reducer (the others add zeros: exact). The same dgemm calls on the same
 * values, so the Gram is one process's bit for bit however the rows are split, and the ranks
 * share its products. */
#define GRAM_SLABS 16

int h2t_solver__gram_rows(const h2t_solver_opts *o, const float *X, uint32_t n, const uint32_t *pos,
                          uint32_t N, uint32_t d, double *Gm)
{
    int shared = o && o->red;
    if (!shared && (pos || n != N))
        return h2t_err_set(H2T_EINVAL, "Gram of %u rows of %u without a reducer", n, N);
    if (!N)
        return 0;
    memset(Gm, 0, (size_t)N * N * sizeof(double));
    uint32_t bs = 2048;
    double *Xb = malloc((size_t)N * bs * sizeof(double));
    uint8_t *mine = calloc((size_t)N + 1, 1); /* the rows this participant holds */
    if (!Xb || !mine) {
        free(Xb);
        free(mine);
        if (shared) /* the others wait in this Gram's first reduction */
            abort();
        return h2t_err_set(H2T_ENOMEM, "Gram block %u x %u", N, bs);
    }
    for (uint32_t i = 0; i < n; i++)
        mine[pos ? pos[i] : i] = 1;
    for (uint32_t j0 = 0; j0 < d; j0 += bs) {
        uint32_t w = d - j0 < bs ? d - j0 : bs;
        if (shared) /* every other participant's rows are zero here: the sum is exact */
            memset(Xb, 0, (size_t)N * w * sizeof(double));
        for (uint32_t i = 0; i < n; i++) {
            double *xb = Xb + (size_t)(pos ? pos[i] : i) * w;
            for (uint32_t c = 0; c < w; c++)
                xb[c] = X[(size_t)i * d + j0 + c];
        }
        h2t_solver__reduce(o, &(h2t_solver_part){Xb, (size_t)N * w, 1}, 1);
        for (uint32_t b = 0; b < GRAM_SLABS; b++) {
            uint32_t lo = (uint32_t)((uint64_t)N * b / GRAM_SLABS);
            uint32_t hi = (uint32_t)((uint64_t)N * (b + 1) / GRAM_SLABS);
            if (lo == hi || !mine[lo])
                continue;
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(hi - lo), (int)(N - lo),
                        (int)w, 1.0, Xb + (size_t)lo * w, (int)w, Xb + (size_t)lo * w, (int)w, 1.0,
                        Gm + (size_t)lo * N + lo, (int)N);
        }
    }
    free(Xb);
    free(mine);
    /* the slabs of the others (each entry from one participant, zeros elsewhere: exact) */
    h2t_solver__reduce(o, &(h2t_solver_part){Gm, (size_t)N * N, 1}, 1);
    for (uint32_t i = 1; i < N; i++)
        for (uint32_t j = 0; j < i; j++)
            Gm[(size_t)i * N + j] = Gm[(size_t)j * N + i];
    return 0;
}

int h2t_solver__gram(const float *X, uint32_t n, uint32_t d, double *Gm)
{
    return h2t_solver__gram_rows(NULL, X, n, NULL, n, d, Gm);
}

/* ---- the Gram products of the kernel form, without OpenBLAS's packing ----
 * Z (n x k) = Gm A for a thin A (n x k coefficients, k classes) and a symmetric Gm (every Gram
 * here is symmetric entry for entry: h2t_solver__gram_rows copies its upper triangle).
 * OpenBLAS's dgemm copies (packs) the n x n Gram on every call, which at n = 800 and k = 10
 * costs about as much as the product itself. Z[i][c] = sum over j in order of Gm[i][j] A[j][c],
 * one multiply and one add per term (no fused multiply-add: -std=c11 contracts nothing). By
 * symmetry Gm[i][j] is Gm[j][i], so row j of Gm holds the terms of consecutive rows i side by
 * side: sixteen rows i in two eight-lane vectors of Gm[j][i0..i0+16) times A[j][c] broadcast,
 * one pair of accumulators per class, up to GMUL_CH classes at once (more go in chunks; a tail
 * of eight rows takes one vector, fewer rows the same sums one at a time). The rows j go in
 * tiles of GMUL_TJ: every block of rows i runs through a tile (its sums kept between tiles in
 * Zt, a class-major copy of Z) while prefetching its part of the next tile, so a tile is read
 * from cache instead of strided from memory. Every lane adds its terms in the same order as a
 * plain loop, so Z is the same bit for bit whatever the blocking. Rounding differs from dgemm's
 * (its own order of the sum), so a fit's iterates do too, within the stop test's tolerance. On
 * AVX-512 at n = 800, k = 10: about 0.34 ms against 0.46 ms for eight rows i of Gm streamed
 * against A's rows padded to 16 classes. */
#define GMUL_CH 12
#define GMUL_TJ 32

typedef double gmul_v8d __attribute__((vector_size(64)));

/* rows [i0, i0 + 8 V) of Zt, classes [0, KC) of the chunk, over the tile's rows [j0, j1) (KC,
 * V constants once inlined) */
#define GMUL_BLOCK(KC, V)                                                                          \
    {                                                                                              \
        gmul_v8d acc[GMUL_CH][2];                                                                  \
        _Pragma("GCC unroll 12") for (uint32_t c = 0; c < (KC); c++)                               \
        {                                                                                          \
            memcpy(&acc[c][0], Zt + (size_t)c * n + i0, sizeof(gmul_v8d));                         \
            if ((V) > 1)                                                                           \
                memcpy(&acc[c][1], Zt + (size_t)c * n + i0 + 8, sizeof(gmul_v8d));                 \
        }                                                                                          \
        for (uint32_t j = j0; j < j1; j++) {                                                       \
            const double *gj = Gm + (size_t)j * n + i0, *aj = A + (size_t)j * k + c0;              \
            gmul_v8d g0, g1 = {0};                                                                 \
            memcpy(&g0, gj, sizeof(g0));                                                           \
            if ((V) > 1)                                                                           \
                memcpy(&g1, gj + 8, sizeof(g1));                                                   \
            if (j + GMUL_TJ < n) { /* this block's part of the next tile */                        \
                __builtin_prefetch(gj + (size_t)GMUL_TJ * n);                                      \
                if ((V) > 1)                                                                       \
                    __builtin_prefetch(gj + (size_t)GMUL_TJ * n + 8);                              \
            }                                                                                      \
            _Pragma("GCC unroll 12") for (uint32_t c = 0; c < (KC); c++)                           \
            {                                                                                      \
                double a = aj[c];                                                                  \
                acc[c][0] += g0 * a;                                                               \
                if ((V) > 1)                                                                       \
                    acc[c][1] += g1 * a;                                                           \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (uint32_t c = 0; c < (KC); c++)                               \
        {                                                                                          \
            memcpy(Zt + (size_t)c * n + i0, &acc[c][0], sizeof(gmul_v8d));                         \
            if ((V) > 1)                                                                           \
                memcpy(Zt + (size_t)c * n + i0 + 8, &acc[c][1], sizeof(gmul_v8d));                 \
        }                                                                                          \
    }

#define GMUL_CASE(KC)                                                                              \
    case KC:                                                                                       \
        for (uint32_t j0 = 0; j0 < n; j0 += GMUL_TJ) {                                             \
            uint32_t j1 = n - j0 < GMUL_TJ ? n : j0 + GMUL_TJ, i0 = 0;                             \
            for (; i0 + 16 <= n; i0 += 16)                                                         \
                GMUL_BLOCK(KC, 2)                                                                  \
            for (; i0 + 8 <= n; i0 += 8)                                                           \
                GMUL_BLOCK(KC, 1)                                                                  \
        }                                                                                          \
        break;

/* Zt: GMUL_CH x n scratch */
__attribute__((target("avx512f"))) static void
gmul_avx512(const double *Gm, uint32_t n, const double *A, uint32_t k, double *Zt, double *Z)
{
    for (uint32_t c0 = 0; c0 < k; c0 += GMUL_CH) {
        uint32_t kc = k - c0 < GMUL_CH ? k - c0 : GMUL_CH, nv = n - n % 8;
        memset(Zt, 0, (size_t)kc * n * sizeof(double));
        switch (kc) {
            GMUL_CASE(1)
            GMUL_CASE(2)
            GMUL_CASE(3)
            GMUL_CASE(4)
            GMUL_CASE(5)
            GMUL_CASE(6)
            GMUL_CASE(7)
            GMUL_CASE(8)
            GMUL_CASE(9)
            GMUL_CASE(10)
            GMUL_CASE(11)
            GMUL_CASE(12)
        default:
            break;
        }
        for (uint32_t i = 0; i < nv; i++)
            for (uint32_t c = 0; c < kc; c++)
                Z[(size_t)i * k + c0 + c] = Zt[(size_t)c * n + i];
        for (uint32_t i = nv; i < n; i++) /* the last rows, fewer than eight */
            for (uint32_t c = c0; c < c0 + kc; c++) {
                double z = 0;
                for (uint32_t j = 0; j < n; j++)
                    z += Gm[(size_t)j * n + i] * A[(size_t)j * k + c];
                Z[(size_t)i * k + c] = z;
            }
    }
}

/* Z = Gm A (see above); Zt: GMUL_CH x n scratch. The kernel needs AVX-512's 32 vector
 * registers for its 24 accumulators (with AVX2's 16 it spills): elsewhere dgemm. */
static void gram_mul(const double *Gm, uint32_t n, const double *A, uint32_t k, double *Zt,
                     double *Z)
{
    if (h2t_cpu_has(H2T_CPU_AVX512F))
        gmul_avx512(Gm, n, A, k, Zt, Z);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)n, 1.0, Gm,
                    (int)n, A, (int)k, 0.0, Z, (int)k);
}

int h2t_solver__gram_mul(const double *Gm, uint32_t n, const double *A, uint32_t k, double *Z)
{
    double *Zt = malloc((size_t)n * GMUL_CH * sizeof(double) + 1);
    if (!Zt)
        return h2t_err_set(H2T_ENOMEM, "Gram product scratch (%u rows)", n);
    gram_mul(Gm, n, A, k, Zt, Z);
    free(Zt);
    return 0;
}

/* f at th = [A (n*k), b (k)]; writes the images thi = [Gm A, b], the coefficient gradient
 * g = [R/n + ridge A, colsum(R)/n] and its image gi = [Gm g_A, g_b]. Z: n x k workspace. */
typedef struct kernel_ctx {
    const double *Gm;
    const uint32_t *y;
    uint32_t n, k;
    double ridge;
    double *Z;
    double *Zt; /* NULL: the products by dgemm; else gram_mul's GMUL_CH x n scratch */
} kernel_ctx;

static double kernel_eval(void *vc, const double *th, double *thi, double *g, double *gi)
{
    const kernel_ctx *kc = vc;
    const double *Gm = kc->Gm, ridge = kc->ridge;
    uint32_t n = kc->n, k = kc->k;
    double *Z = kc->Z;
    size_t nk = (size_t)n * k;
    if (kc->Zt)
        gram_mul(Gm, n, th, k, kc->Zt, thi);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)n, 1.0, Gm,
                    (int)n, th, (int)k, 0.0, thi, (int)k);
    memcpy(thi + nk, th + nk, k * sizeof(double));
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < k; c++)
            Z[(size_t)i * k + c] = thi[(size_t)i * k + c] + th[nk + c];
    double f = ce_value_residual_d(Z, Z, kc->y, n, k, 1.0 / n, g + nk) / n;
    for (size_t q = 0; q < nk; q++)
        g[q] = Z[q] + ridge * th[q];
    if (ridge > 0)
        f += 0.5 * ridge * dotd(th, thi, nk);
    if (kc->Zt)
        gram_mul(Gm, n, g, k, kc->Zt, gi);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)n, 1.0, Gm,
                    (int)n, g, (int)k, 0.0, gi, (int)k);
    memcpy(gi + nk, g + nk, k * sizeof(double));
    return f;
}

/* WG (d x 2k) = X^T [A | g_A]: W and the primal gradient's W part in one pass. A, gA: N x k
 * over every participant's rows; this participant's n rows X are rows pos[i] of them (pos NULL:
 * all, n == N), its products summed over every participant by row blocks (floats in double).
 * AG: n x 2k. */
static int kernel_lift(const h2t_solver_opts *o, const float *X, uint32_t n, const uint32_t *pos,
                       uint32_t d, uint32_t k, const double *A, const double *gA, float *AG,
                       float *WG)
{
    size_t m = (size_t)d * 2 * k;
    segs sg = {0};
    bsum bs = {0};
    float *GT = malloc(m * sizeof(float) + 1);
    int rc = segs_make(o, n, &sg);
    if (rc == 0)
        rc = bsum_init(o, &bs, sg.nb, m, 0);
    if (rc == 0 && !GT) {
        if (o && o->red)
            abort(); /* as h2t_solver__reduce */
        rc = h2t_err_set(H2T_ENOMEM, "lift (%u x %u)", d, 2 * k);
    }
    if (rc < 0) {
        segs_free(&sg);
        free(GT);
        return rc;
    }
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t c = 0; c < k; c++) {
            size_t q = (size_t)(pos ? pos[i] : i) * k + c;
            AG[(size_t)i * 2 * k + c] = (float)A[q];
            AG[(size_t)i * 2 * k + k + c] = (float)gA[q];
        }
    for (uint32_t q = 0; q < sg.ns; q++) {
        int first;
        double *slot = bsum_at(&bs, sg.blk[q], &first);
        grad_add(X + (size_t)sg.s0[q] * d, AG + (size_t)sg.s0[q] * 2 * k, sg.len[q], d, 2 * k, GT,
                 slot, first);
    }
    const double *t = bsum_total(o, &bs);
    for (uint32_t j = 0; j < d; j++)
        for (uint32_t c = 0; c < 2 * k; c++)
            WG[(size_t)j * 2 * k + c] = (float)t[(size_t)c * d + j];
    segs_free(&sg);
    bsum_free(&bs);
    free(GT);
    return 0;
}

int h2t_solver__fit_smooth_kernel(const float *X, const double *Gram, const uint32_t *y, uint32_t n,
                                  uint32_t d, uint32_t k, double ridge, const h2t_solver_opts *o,
                                  float *A, float *W, float *b, h2t_fit_info *info)
{
    return h2t_solver__fit_smooth_kernel_rows(X, y, n, NULL, Gram, y, n, d, k, ridge, o, A, W, b,
                                              info);
}

int h2t_solver__fit_smooth_kernel_rows(const float *X, const uint32_t *y, uint32_t n,
                                       const uint32_t *pos, const double *Gram,
                                       const uint32_t *y_all, uint32_t N, uint32_t d, uint32_t k,
                                       double ridge, const h2t_solver_opts *o, float *A, float *W,
                                       float *b, h2t_fit_info *info)
{
    size_t nk = (size_t)N * k, m = nk + k, dk = (size_t)d * k;
    int rc = 0;
    double *Gown = Gram ? NULL : malloc((size_t)N * N * sizeof(double) + 1);
    kernel_ctx c = {Gram ? Gram : Gown,
                    y_all,
                    N,
                    k,
                    ridge,
                    malloc(nk * sizeof(double) + 1),
                    o && o->gram_own ? malloc((size_t)N * GMUL_CH * sizeof(double) + 1) : NULL};
    float *AG = malloc((size_t)n * 2 * k * sizeof(float) + 1);
    float *WG = malloc(2 * dk * sizeof(float) + 1);
    lbfgs L = {0};
    if ((!Gram && !Gown) || !c.Z || (o && o->gram_own && !c.Zt) || !AG || !WG) {
        if (o && o->red) /* the others wait in a reduction */
            abort();
        rc = h2t_err_set(H2T_ENOMEM, "kernel L-BFGS workspace (%u samples x %u classes)", N, k);
        goto out;
    }
    if ((!Gram && (rc = h2t_solver__gram_rows(o, X, n, pos, N, d, Gown)) < 0) ||
        (rc = lbfgs_init(&L, m, 1, kernel_eval, &c)) < 0)
        goto out;
    for (size_t q = 0; q < nk; q++)
        L.th[q] = A[q];
    for (uint32_t q = 0; q < k; q++)
        L.th[nk + q] = b[q];
    lbfgs_start(&L);
    /* stop test: the primal max-abs gradient. fro = ||X^T g_A||_F bounds it from above; it
     * cannot pass before fro <= gtol sqrt(dk); past that, lift when fro reaches next_check */
    double next_check = o->gtol * sqrt((double)dk), gmax = INFINITY;
    int lifted = 0; /* WG holds the lift of the current th */
    uint32_t it;
    int converged = 0;
    for (it = 0;; it++) {
        double fro = sqrt(fmax(dotd(L.g, L.gi, nk), 0)), gbm = maxabs_d(L.g + nk, k);
        lifted = 0;
        if (fro <= o->gtol && gbm <= o->gtol) {
            converged = 1;
        } else if (fro <= next_check && gbm <= o->gtol) {
            if ((rc = kernel_lift(o, X, n, pos, d, k, L.th, L.g, AG, WG)) < 0)
                goto out;
            lifted = 1;
            gmax = 0;
            for (size_t q = 0; q < dk; q++) {
                double a = fabs(WG[(q / k) * 2 * k + k + q % k]);
                gmax = a > gmax ? a : gmax;
            }
            converged = gmax <= o->gtol;
            next_check = fro * (o->gtol / gmax) * 0.9;
        }
        if (converged || it >= o->max_iter)
            break;
        if (h2t_solver__cancelled(o)) {
            rc = h2t_err_set(H2T_ECANCELED, "fit cancelled");
            goto out;
        }
        if (!lbfgs_iterate(&L))
            break;
    }
    if (!lifted && (rc = kernel_lift(o, X, n, pos, d, k, L.th, L.g, AG, WG)) < 0)
        goto out;
    for (uint32_t j = 0; j < d; j++)
        memcpy(W + (size_t)j * k, WG + (size_t)j * 2 * k, k * sizeof(float));
    for (size_t q = 0; q < nk; q++)
        A[q] = (float)L.th[q];
    for (uint32_t q = 0; q < k; q++)
        b[q] = (float)L.th[nk + q];
    /* the check on the returned W itself (its own logits, not the Gram's) */
    uint32_t iters = it;
    float *Gp = WG; /* reuse: d x k gradient */
    float gb[256], *gbp = k <= 256 ? gb : malloc(k * sizeof(float));
    if (!gbp) {
        rc = h2t_err_set(H2T_ENOMEM, "gradient");
        goto out;
    }
    double fp = loss_grad(o, X, y, n, d, k, W, b, Gp, gbp);
    double pen = 0;
    for (size_t q = 0; q < dk; q++) {
        pen += (double)W[q] * W[q];
        Gp[q] = (float)(Gp[q] + ridge * W[q]);
    }
    gmax = maxabs(Gp, dk);
    double gbm = maxabs(gbp, k);
    gmax = gbm > gmax ? gbm : gmax;
    if (gbp != gb)
        free(gbp);
    h2t_fit_info pinfo = {.iters = 0,
                          .converged = gmax <= o->gtol,
                          .grad_norm = gmax,
                          .objective = fp + 0.5 * ridge * pen};
    if (!pinfo.converged && iters < o->max_iter) { /* finish in the primal */
        h2t_solver_opts po = *o;
        po.max_iter = o->max_iter - iters;
        rc = h2t_solver__fit_smooth(X, y, n, d, k, ridge, &po, W, b, &pinfo);
        if (rc < 0)
            goto out;
        memset(A, 0, nk * sizeof(float)); /* W has left the row-space form */
    }
    if (info) {
        info->iters = iters + pinfo.iters;
        info->converged = pinfo.converged;
        info->grad_norm = pinfo.grad_norm;
        info->objective = pinfo.objective;
    }
out:
    lbfgs_free(&L);
    free(Gown);
    free(c.Z);
    free(c.Zt);
    free(AG);
    free(WG);
    return rc;
}
