/*
 * extract/preprocess.c - image -> model input: channel conversion, bilinear resize with
 * half-pixel centres (align_corners = false), linear scaling of [0, 255] to [lo, hi]. The
 * conventions are documented in extract/extract.h.
 */
#include "common/err.h"
#include "extract/extract.h"
#include "onnx/onnx.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_pair(const char *v, float *a, float *b)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end != ',')
        return -1;
    const char *w = end + 1;
    double y = strtod(w, &end);
    if (end == w || (*end && *end != ' ' && *end != '\t'))
        return -1;
    if (!isfinite(x) || !isfinite(y) || x == y)
        return -1;
    *a = (float)x;
    *b = (float)y;
    return 0;
}

int h2t_prep_parse(const char *text, h2t_prep *p)
{
    float lo = p->lo, hi = p->hi;
    const char *s = text;
    int any = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        size_t n = strcspn(s, " \t");
        char tok[128];
        if (n >= sizeof tok)
            return h2t_err_set(H2T_EINVAL, "preprocessing '%s': token too long", text);
        memcpy(tok, s, n);
        tok[n] = '\0';
        s += n;
        any = 1;
        char *eq = strchr(tok, '=');
        if (!eq) {
            if (parse_pair(tok, &lo, &hi) < 0)
                return h2t_err_set(H2T_EINVAL, "preprocessing '%s': '%s' is not lo,hi", text, tok);
            continue;
        }
        *eq = '\0';
        const char *val = eq + 1;
        if (!strcmp(tok, "scale")) {
            if (parse_pair(val, &lo, &hi) < 0)
                return h2t_err_set(H2T_EINVAL,
                                   "preprocessing '%s': scale wants two different finite "
                                   "numbers lo,hi",
                                   text);
        } else if (!strcmp(tok, "resize")) {
            if (strcmp(val, "bilinear") && strcmp(val, "bilinear-halfpixel"))
                return h2t_err_set(H2T_EUNSUPPORTED,
                                   "preprocessing '%s': resize=%s (only bilinear)", text, val);
        } else if (!strcmp(tok, "channels")) {
            char *end;
            long c = strtol(val, &end, 10);
            if (*end || (c != 1 && c != 3))
                return h2t_err_set(H2T_EINVAL, "preprocessing '%s': channels=%s (1 or 3)", text,
                                   val);
            if (p->c && (uint32_t)c != p->c)
                return h2t_err_set(H2T_ESHAPE,
                                   "preprocessing '%s': channels=%ld but the model takes %u", text,
                                   c, p->c);
        } else {
            return h2t_err_set(H2T_EINVAL,
                               "preprocessing '%s': unknown key '%s' (scale, resize, channels)",
                               text, tok);
        }
    }
    if (!any)
        return h2t_err_set(H2T_EINVAL, "preprocessing: empty text");
    p->lo = lo;
    p->hi = hi;
    return 0;
}

void h2t_prep_describe(const h2t_prep *p, int pixel, char *buf, size_t n)
{
    if (pixel == H2T_PIX_F32)
        snprintf(buf, n, "input=float32-as-is size=%ux%ux%u", p->c, p->h, p->w);
    else
        snprintf(buf, n, "resize=bilinear-halfpixel size=%ux%ux%u scale=%.9g,%.9g", p->c, p->h,
                 p->w, (double)p->lo, (double)p->hi);
}

/* Source coordinate of each output pixel along one axis (half-pixel centres, clamped). */
static void axis_weights(uint32_t in, uint32_t out, uint32_t *i0, uint32_t *i1, float *f)
{
    double scale = (double)in / out;
    for (uint32_t o = 0; o < out; o++) {
        double s = ((double)o + 0.5) * scale - 0.5;
        if (s < 0)
            s = 0;
        if (s > in - 1)
            s = in - 1;
        uint32_t a = (uint32_t)s;
        i0[o] = a;
        i1[o] = a + 1 < in ? a + 1 : a;
        f[o] = (float)(s - a);
    }
}

int h2t_prep_image(const h2t_prep *p, const h2t_image *img, float *out)
{
    size_t plane = (size_t)p->h * p->w;
    if (img->pixel == H2T_PIX_F32) {
        if (img->c != p->c || img->h != p->h || img->w != p->w)
            return h2t_err_set(H2T_ESHAPE,
                               "float32 input %ux%ux%u does not match the model input %ux%ux%u "
                               "(float tensors are used as-is: no resize)",
                               img->c, img->h, img->w, p->c, p->h, p->w);
        memcpy(out, img->data, plane * p->c * sizeof(float));
        return 0;
    }
    if (p->c != 1 && p->c != 3)
        return h2t_err_set(H2T_ESHAPE, "model takes %u channels (images give 1 or 3)", p->c);
    if (img->c != 1 && img->c != 3 && img->c != 4)
        return h2t_err_set(H2T_ESHAPE, "image with %u channels", img->c);
    if (img->h == 0 || img->w == 0)
        return h2t_err_set(H2T_ESHAPE, "empty image");
    int gray_out = p->c == 1 || img->c == 1; /* compute one plane, replicate if needed */
    uint32_t planes = gray_out ? 1 : 3;
    size_t ipix = (size_t)img->h * img->w;
    float *src = malloc(sizeof(float) * ipix * planes);
    uint32_t *x0 = malloc(sizeof(uint32_t) * p->w * 2), *y0 = malloc(sizeof(uint32_t) * p->h * 2);
    float *fx = malloc(sizeof(float) * p->w), *fy = malloc(sizeof(float) * p->h);
    float *hr = malloc(sizeof(float) * img->h * p->w);
    int rc = 0;
    if (!src || !x0 || !y0 || !fx || !fy || !hr) {
        rc = h2t_err_set(H2T_ENOMEM, "preprocessing");
        goto out;
    }
    const uint8_t *px = img->data;
    /* channel conversion at the input resolution, in [0, 255] */
    for (size_t i = 0; i < ipix; i++) {
        const uint8_t *q = px + i * img->c;
        if (planes == 3) {
            src[i] = q[0];
            src[ipix + i] = q[1];
            src[2 * ipix + i] = q[2];
        } else if (img->c == 1) {
            src[i] = q[0];
        } else {
            src[i] = 0.299f * q[0] + 0.587f * q[1] + 0.114f * q[2];
        }
    }
    uint32_t *x1 = x0 + p->w, *y1 = y0 + p->h;
    axis_weights(img->w, p->w, x0, x1, fx);
    axis_weights(img->h, p->h, y0, y1, fy);
    float a = (p->hi - p->lo) / 255.0f, b = p->lo;
    /* Separable: each source row is interpolated along x once (hr, img->h x p->w), then each
     * output row mixes two of those rows. The same float expressions as the direct
     * four-pixel form (top/bot, then (top + (bot - top) * wy) * a + b), so bitwise the same
     * values, with contiguous vectorisable loops instead of four gathers per pixel. */
    for (uint32_t c = 0; c < planes; c++) {
        const float *s = src + c * ipix;
        float *o = out + c * plane;
        for (uint32_t y = 0; y < img->h; y++) {
            const float *r = s + (size_t)y * img->w;
            float *h = hr + (size_t)y * p->w;
            for (uint32_t x = 0; x < p->w; x++)
                h[x] = r[x0[x]] + (r[x1[x]] - r[x0[x]]) * fx[x];
        }
        for (uint32_t y = 0; y < p->h; y++) {
            const float *top = hr + (size_t)y0[y] * p->w, *bot = hr + (size_t)y1[y] * p->w;
            float wy = fy[y], *oy = o + (size_t)y * p->w;
            for (uint32_t x = 0; x < p->w; x++)
                oy[x] = (top[x] + (bot[x] - top[x]) * wy) * a + b;
        }
    }
    if (planes == 1)
        for (uint32_t c = 1; c < p->c; c++)
            memcpy(out + c * plane, out, plane * sizeof(float));
out:
    free(src);
    free(x0);
    free(y0);
    free(fx);
    free(fy);
    free(hr);
    return rc;
}

int h2t_prep_model_metadata(const void *buf, size_t len, const char *key, char *out, size_t n,
                            int *found)
{
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m)
        return h2t_err_set(H2T_ECORRUPT, "not an ONNX model (protobuf parse failed)");
    int rc = 0;
    *found = 0;
    for (size_t i = 0; i < m->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *e = m->metadata_props[i];
        if (e->key && !strcmp(e->key, key)) {
            const char *v = e->value ? e->value : "";
            if (strlen(v) >= n) {
                rc = h2t_err_set(H2T_ETOOBIG, "metadata %s: value longer than %zu", key, n - 1);
                break;
            }
            snprintf(out, n, "%s", v);
            *found = 1;
            break;
        }
    }
    onnx__model_proto__free_unpacked(m, NULL);
    return rc;
}
