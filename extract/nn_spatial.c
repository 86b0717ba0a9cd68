/*
 * extract/nn_spatial.c - the spatial kernels of nn.h: Resize of the last two axes (nearest,
 * linear and cubic, the ONNX coordinate transformation and rounding modes) and the transposed
 * convolution as a product plus col2im. Coordinates are computed in double.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <string.h>

#include "extract/nn.h"
#include "extract/onnx_graph.h"

/* ---------------------------------------------------------------- resize */

static double to_input(int coord, double x, double s, int64_t in, int64_t out)
{
    switch (coord) {
    case H2T_NN_RC_HALF_PIXEL:
        return (x + 0.5) / s - 0.5;
    case H2T_NN_RC_PYTORCH_HALF_PIXEL:
        return out > 1 ? (x + 0.5) / s - 0.5 : 0.;
    case H2T_NN_RC_ALIGN_CORNERS:
        return out > 1 ? x * (double)(in - 1) / (double)(out - 1) : 0.;
    case H2T_NN_RC_TF_HALF_PIXEL_NN:
        return (x + 0.5) / s;
    default:
        return x / s;
    }
}

static int64_t nearest(int mode, double v, double s, int64_t in)
{
    double f = floor(v);
    int64_t i;
    switch (mode) {
    case H2T_NN_RN_ROUND_PREFER_FLOOR:
        i = (int64_t)(v - f == 0.5 ? f : floor(v + 0.5));
        break;
    case H2T_NN_RN_ROUND_PREFER_CEIL:
        i = (int64_t)floor(v + 0.5);
        break;
    case H2T_NN_RN_FLOOR:
        i = (int64_t)f;
        break;
    case H2T_NN_RN_CEIL:
        i = (int64_t)ceil(v);
        break;
    default:
        i = s < 1. ? (int64_t)ceil(v) : (int64_t)v;
        break;
    }
    return i < 0 ? 0 : i >= in ? in - 1 : i;
}

/* Linear taps: i0, i1 and the weight of i1. */
static void taps(double v, int64_t in, int64_t *i0, int64_t *i1, float *w1)
{
    if (v < 0)
        v = 0;
    if (v > (double)(in - 1))
        v = (double)(in - 1);
    *i0 = (int64_t)v;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *w1 = (float)(v - (double)*i0);
}

/* Cubic taps i0 - 1 .. i0 + 2 (clamped to the input) and their weights (Keys' kernel with
 * parameter a; exclude: taps outside the input weigh 0 and the rest are renormalised). */
static void cubic_taps(double v, int64_t in, float a, int exclude, int64_t *idx, float *w)
{
    double f = floor(v), t = v - f;
    double d[4] = {t + 1., t, 1. - t, 2. - t}, sum = 0.;
    for (int k = 0; k < 4; k++) {
        double x = d[k], c;
        if (x <= 1.)
            c = ((a + 2.) * x - (a + 3.)) * x * x + 1.;
        else
            c = ((a * x - 5. * a) * x + 8. * a) * x - 4. * a;
        int64_t i = (int64_t)f - 1 + k;
        if (exclude && (i < 0 || i >= in))
            c = 0.;
        idx[k] = i < 0 ? 0 : i >= in ? in - 1 : i;
        w[k] = (float)c;
        sum += c;
    }
    if (exclude && sum != 0.)
        for (int k = 0; k < 4; k++)
            w[k] = (float)(w[k] / sum);
}

typedef struct rs_job {
    const h2t_nn_resize *r;
    const float *x;
    float *y;
    int64_t H, W, OH, OW;
} rs_job;

static void rs_rows(void *ctx, int64_t lo, int64_t hi)
{
    const rs_job *j = ctx;
    const h2t_nn_resize *r = j->r;
    for (int64_t t = lo; t < hi; t++) {
        int64_t p = t / j->OH, oh = t % j->OH;
        const float *xp = j->x + p * j->H * j->W;
        float *yp = j->y + t * j->OW;
        double vy = to_input(r->coord, (double)oh, r->scale[0], j->H, j->OH);
        if (!r->linear) {
            const float *row = xp + nearest(r->nearest, vy, r->scale[0], j->H) * j->W;
            for (int64_t ow = 0; ow < j->OW; ow++) {
                double vx = to_input(r->coord, (double)ow, r->scale[1], j->W, j->OW);
                yp[ow] = row[nearest(r->nearest, vx, r->scale[1], j->W)];
            }
            continue;
        }
        if (r->linear == 2) {
            int64_t iy[4], ix[4];
            float wy4[4], wx4[4];
            cubic_taps(vy, j->H, r->cubic_a, r->exclude, iy, wy4);
            for (int64_t ow = 0; ow < j->OW; ow++) {
                cubic_taps(to_input(r->coord, (double)ow, r->scale[1], j->W, j->OW), j->W,
                           r->cubic_a, r->exclude, ix, wx4);
                float acc = 0.f;
                for (int a = 0; a < 4; a++) {
                    const float *row = xp + iy[a] * j->W;
                    float h = row[ix[0]] * wx4[0] + row[ix[1]] * wx4[1] + row[ix[2]] * wx4[2] +
                              row[ix[3]] * wx4[3];
                    acc += h * wy4[a];
                }
                yp[ow] = acc;
            }
            continue;
        }
        int64_t y0, y1, x0, x1;
        float wy, wx;
        taps(vy, j->H, &y0, &y1, &wy);
        const float *r0 = xp + y0 * j->W, *r1 = xp + y1 * j->W;
        for (int64_t ow = 0; ow < j->OW; ow++) {
            taps(to_input(r->coord, (double)ow, r->scale[1], j->W, j->OW), j->W, &x0, &x1, &wx);
            float top = r0[x0] * (1.f - wx) + r0[x1] * wx;
            float bot = r1[x0] * (1.f - wx) + r1[x1] * wx;
            yp[ow] = top * (1.f - wy) + bot * wy;
        }
    }
}

void h2t_nn_resize2d(int threads, const h2t_nn_resize *r, const float *x, int64_t outer, int64_t H,
                     int64_t W, int64_t OH, int64_t OW, float *y)
{
    rs_job j = {r, x, y, H, W, OH, OW};
    if (H > 0 && W > 0)
        onnx_par_for(threads, outer * OH, 4096 / (OW + 1) + 1, rs_rows, &j);
}

/* ---------------------------------------------------------------- transposed convolution */

size_t h2t_nn_convt_scratch(const h2t_nn_convt *g)
{
    return (size_t)(g->M / g->G * g->kh * g->kw * g->H * g->W);
}

typedef struct ct_job {
    const h2t_nn_convt *g;
    const float *col, *bias;
    float *y;   /* the sample's output */
    int64_t m0; /* the group's first output channel */
} ct_job;

/* col2im for output channels [lo, hi) of the group: y[m] += col[(m, i, j), (ih, iw)]. */
static void ct_channels(void *ctx, int64_t lo, int64_t hi)
{
    const ct_job *c = ctx;
    const h2t_nn_convt *g = c->g;
    int64_t HW = g->H * g->W;
    for (int64_t m = lo; m < hi; m++) {
        float *yp = c->y + (c->m0 + m) * g->OH * g->OW;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t jj = 0; jj < g->kw; jj++) {
                const float *cp = c->col + ((m * g->kh + i) * g->kw + jj) * HW;
                for (int64_t ih = 0; ih < g->H; ih++) {
                    int64_t oh = ih * g->sh - g->pt + i * g->dh;
                    if (oh < 0 || oh >= g->OH)
                        continue;
                    float *yr = yp + oh * g->OW;
                    const float *cr = cp + ih * g->W;
                    for (int64_t iw = 0; iw < g->W; iw++) {
                        int64_t ow = iw * g->sw - g->pl + jj * g->dw;
                        if (ow >= 0 && ow < g->OW)
                            yr[ow] += cr[iw];
                    }
                }
            }
    }
}

void h2t_nn_convt_run(int threads, const h2t_nn_convt *g, const float *x, const float *w,
                      const float *bias, float *y, float *scratch)
{
    int64_t Cg = g->C / g->G, Mg = g->M / g->G, HW = g->H * g->W, OHW = g->OH * g->OW;
    int64_t R = Mg * g->kh * g->kw;
    for (int64_t n = 0; n < g->N; n++) {
        float *yn = y + n * g->M * OHW;
        for (int64_t m = 0; m < g->M; m++) {
            float b = bias ? bias[m] : 0.f;
            for (int64_t i = 0; i < OHW; i++)
                yn[m * OHW + i] = b;
        }
        for (int64_t gi = 0; gi < g->G; gi++) {
            /* col (R x HW) = W_g^T (R x Cg) X_g (Cg x HW) */
            h2t_nn_sgemm_batched(threads, 1, 1, 0, R, HW, Cg, w + gi * Cg * R, 0, R,
                                 x + (n * g->C + gi * Cg) * HW, 0, HW, scratch, 0, HW);
            ct_job c = {g, scratch, bias, yn, gi * Mg};
            onnx_par_for(threads, Mg, 1, ct_channels, &c);
        }
    }
}
