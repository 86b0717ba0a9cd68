/*
 * solver/result.c - the result record: destroy, predict, the self-describing binary blob,
 * JSON, and the .npy export.
 *
 * Blob layout (all integers little-endian):
 *   "H2TRES01" | u32 version (1) | u32 n_fields | fields... | u32 crc32c(everything before)
 *   field: u8 name_len | name | u8 type | u64 count | payload
 *   types: 'u' u32[count], 'U' u64[count], 'd' f64[count], 'f' f32[count],
 *          's' count strings, each u32 length + bytes.
 * Readers skip fields they do not know; a missing required field is H2T_ECORRUPT.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h"
#include "solver/solver.h"

#define BLOB_MAGIC "H2TRES01"
#define BLOB_VERSION 1u

void h2t_result_destroy(h2t_result *r)
{
    if (!r)
        return;
    free(r->lambdas);
    free(r->keeps);
    free(r->cv_acc);
    free(r->fold_acc);
    free(r->layer_ids);
    free(r->layer_dims);
    free(r->layer_kept);
    if (r->layer_names)
        for (uint32_t l = 0; l < r->n_layers; l++)
            free(r->layer_names[l]);
    free(r->layer_names);
    free(r->features);
    free(r->weights);
    free(r->bias);
    free(r->cv_se);
    free(r->final_l2s);
    free(r->cell_test);
    free(r->protos);
    free(r->proto_labels);
    free(r->curve_layers);
    free(r->curve_acc);
    free(r->auto_methods);
    free(r->auto_acc);
    free(r->auto_se);
    free(r);
}

/* Logits (double) of one raw sample xi (D floats over the result's layers): the kept columns of
 * each layer L2-normalised over that subset (a zero subset stays zero), then W x + b. xs holds
 * n_kept floats of scratch. */
static void head_logits(const h2t_result *r, const float *xi, float *xs, double *z)
{
    uint64_t off = 0;
    uint32_t c = 0;
    for (uint32_t l = 0; l < r->n_layers; l++) {
        uint32_t c0 = c;
        double s = 0;
        for (uint32_t q = 0; q < r->layer_kept[l]; q++, c++) {
            xs[c] = xi[off + r->features[c].index];
            s += (double)xs[c] * xs[c];
        }
        if (s > 0)
            for (uint32_t q = c0; q < c; q++)
                xs[q] = (float)(xs[q] / sqrt(s));
        off += r->layer_dims[l];
    }
    for (uint32_t k = 0; k < r->n_classes; k++) {
        double v = r->bias[k];
        const float *w = r->weights + (size_t)k * r->n_kept;
        for (uint32_t q = 0; q < r->n_kept; q++)
            v += (double)w[q] * xs[q];
        z[k] = v;
    }
}

/* knn: every row's kept columns normalised as head_logits does, then the vote of the stored
 * training rows (h2t_solver__knn, as the job's own evaluation); prob: each class's share of
 * the k votes. */
static int knn_apply(const h2t_result *r, const float *x, uint32_t n, uint64_t D, uint32_t *pred,
                     float *prob)
{
    float *xs = calloc((size_t)r->n_kept * n + 1, sizeof(float));
    uint32_t *pv = pred ? pred : malloc((size_t)n * sizeof(uint32_t) + 1);
    if (!xs || !pv) {
        free(xs);
        if (pv != pred)
            free(pv);
        return h2t_err_set(H2T_ENOMEM, "predict buffer");
    }
    for (uint32_t i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        float *xr = xs + (size_t)i * r->n_kept;
        uint64_t off = 0;
        uint32_t c = 0;
        for (uint32_t l = 0; l < r->n_layers; l++) {
            uint32_t c0 = c;
            double s = 0;
            for (uint32_t q = 0; q < r->layer_kept[l]; q++, c++) {
                xr[c] = xi[off + r->features[c].index];
                s += (double)xr[c] * xr[c];
            }
            if (s > 0)
                for (uint32_t q = c0; q < c; q++)
                    xr[q] = (float)(xr[q] / sqrt(s));
            off += r->layer_dims[l];
        }
    }
    uint32_t k = r->knn_k ? r->knn_k : 1;
    int rc = h2t_solver__knn(xs, n, r->protos, r->proto_labels, r->n_protos, r->n_kept,
                             r->n_classes, &k, 1, pv, prob);
    free(xs);
    if (pv != pred)
        free(pv);
    return rc;
}

static int head_apply(const h2t_result *r, const float *x, uint32_t n, uint32_t *pred, float *prob)
{
    if (!r || (!x && n) || (!pred && !prob && n))
        return h2t_err_set(H2T_EINVAL, "predict: no result, input or output");
    uint64_t D = 0;
    for (uint32_t l = 0; l < r->n_layers; l++)
        D += r->layer_dims[l];
    if (r->method == H2T_METHOD_KNN && r->protos && r->n_protos)
        return knn_apply(r, x, n, D, pred, prob);
    float *xs = malloc((size_t)r->n_kept * sizeof(float) + 1);
    double *z = malloc((size_t)r->n_classes * sizeof(double) + 1);
    if (!xs || !z) {
        free(xs);
        free(z);
        return h2t_err_set(H2T_ENOMEM, "predict buffer");
    }
    for (uint32_t i = 0; i < n; i++) {
        head_logits(r, x + (size_t)i * D, xs, z);
        uint32_t best = 0;
        double bz = -INFINITY;
        for (uint32_t k = 0; k < r->n_classes; k++)
            if (z[k] > bz) {
                bz = z[k];
                best = k;
            }
        if (pred)
            pred[i] = best;
        if (prob) {
            double sum = 0;
            for (uint32_t k = 0; k < r->n_classes; k++)
                sum += exp(z[k] - bz);
            for (uint32_t k = 0; k < r->n_classes; k++)
                prob[(size_t)i * r->n_classes + k] = (float)(exp(z[k] - bz) / sum);
        }
    }
    free(xs);
    free(z);
    return 0;
}

int h2t_result_predict(const h2t_result *r, const float *x, uint32_t n, uint32_t *pred)
{
    return head_apply(r, x, n, pred, NULL);
}

int h2t_result_proba(const h2t_result *r, const float *x, uint32_t n, uint32_t *pred, float *prob)
{
    return head_apply(r, x, n, pred, prob);
}

/* ---- blob writer ---- */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
    uint32_t nfields;
} wbuf;

static void wput(wbuf *w, const void *src, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *q = realloc(w->p, cap);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->p = q;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void wu32(wbuf *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wput(w, b, 4);
}

static void wu64(wbuf *w, uint64_t v)
{
    wu32(w, (uint32_t)v);
    wu32(w, (uint32_t)(v >> 32));
}

static void whead(wbuf *w, const char *name, char type, uint64_t count)
{
    uint8_t nl = (uint8_t)strlen(name);
    wput(w, &nl, 1);
    wput(w, name, nl);
    wput(w, &type, 1);
    wu64(w, count);
    w->nfields++;
}

static void fu32(wbuf *w, const char *name, const uint32_t *v, uint64_t n)
{
    whead(w, name, 'u', n);
    for (uint64_t i = 0; i < n; i++)
        wu32(w, v[i]);
}

static void fu64(wbuf *w, const char *name, uint64_t v)
{
    whead(w, name, 'U', 1);
    wu64(w, v);
}

static void ff64(wbuf *w, const char *name, const double *v, uint64_t n)
{
    whead(w, name, 'd', n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t b;
        memcpy(&b, &v[i], 8);
        wu64(w, b);
    }
}

static void ff32(wbuf *w, const char *name, const float *v, uint64_t n)
{
    whead(w, name, 'f', n);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &v[i], 4);
        wu32(w, b);
    }
}

static void fone(wbuf *w, const char *name, uint32_t v)
{
    fu32(w, name, &v, 1);
}

static void fd(wbuf *w, const char *name, double v)
{
    ff64(w, name, &v, 1);
}

static void ffit(wbuf *w, const char *name, const h2t_fit_info *f)
{
    double v[4] = {f->iters, f->converged, f->grad_norm, f->objective};
    ff64(w, name, v, 4);
}

int h2t_result_encode(const h2t_result *r, void **blob, size_t *len)
{
    if (!r || !blob || !len)
        return h2t_err_set(H2T_EINVAL, "encode: no result");
    wbuf w = {0};
    wput(&w, BLOB_MAGIC, 8);
    wu32(&w, BLOB_VERSION);
    wu32(&w, 0); /* n_fields, patched below */
    fone(&w, "method", r->method);
    fone(&w, "penalty", r->penalty);
    fone(&w, "optimizer", r->optimizer);
    fone(&w, "ranking", r->ranking);
    fu64(&w, "seed", r->seed);
    fone(&w, "n_classes", r->n_classes);
    fone(&w, "n_train", r->n_train);
    fone(&w, "n_test", r->n_test);
    fu64(&w, "total_dim", r->total_dim);
    fd(&w, "lambda", r->lambda);
    fd(&w, "keep", r->keep);
    fone(&w, "folds", r->folds);
    ff64(&w, "lambdas", r->lambdas, r->n_lambdas);
    ff64(&w, "keeps", r->keeps, r->n_keeps);
    ff64(&w, "cv_acc", r->cv_acc, (uint64_t)r->n_lambdas * r->n_keeps);
    ff64(&w, "fold_acc", r->fold_acc, r->folds);
    fd(&w, "val_acc", r->val_acc);
    fd(&w, "train_acc", r->train_acc);
    fd(&w, "test_acc", r->test_acc);
    fone(&w, "test_correct", r->test_correct);
    fu32(&w, "layer_ids", r->layer_ids, r->n_layers);
    fu32(&w, "layer_dims", r->layer_dims, r->n_layers);
    fu32(&w, "layer_kept", r->layer_kept, r->n_layers);
    whead(&w, "layer_names", 's', r->n_layers);
    for (uint32_t l = 0; l < r->n_layers; l++) {
        const char *s = r->layer_names && r->layer_names[l] ? r->layer_names[l] : "";
        wu32(&w, (uint32_t)strlen(s));
        wput(&w, s, strlen(s));
    }
    whead(&w, "features", 'u', (uint64_t)r->n_kept * 2);
    for (uint32_t c = 0; c < r->n_kept; c++) {
        wu32(&w, r->features[c].layer);
        wu32(&w, r->features[c].index);
    }
    ff32(&w, "weights", r->weights, (uint64_t)r->n_classes * r->n_kept);
    ff32(&w, "bias", r->bias, r->n_classes);
    ffit(&w, "select_fit", &r->select_fit);
    ffit(&w, "final_fit", &r->final_fit);
    fone(&w, "select_nonzero", r->select_nonzero);
    double t[4] = {r->t_load, r->t_cv, r->t_final, r->t_total};
    ff64(&w, "timings", t, 4);
    /* fields added with the knn, ncm, layer and auto methods and the CV options; a reader
     * without them skips them, a result without them decodes with their defaults */
    fone(&w, "fold_kind", r->fold_kind);
    fone(&w, "cv_repeats", r->cv_repeats);
    fone(&w, "one_se", r->one_se);
    if (r->cv_se)
        ff64(&w, "cv_se", r->cv_se, (uint64_t)r->n_lambdas * r->n_keeps);
    if (r->protos) {
        fone(&w, "knn_k", r->knn_k);
        ff32(&w, "protos", r->protos, (uint64_t)r->n_protos * r->n_kept);
        fu32(&w, "proto_labels", r->proto_labels, r->n_protos);
    }
    if (r->n_curve) {
        fu32(&w, "curve_layers", r->curve_layers, r->n_curve);
        ff64(&w, "curve_acc", r->curve_acc, r->n_curve);
    }
    if (r->method == H2T_METHOD_HEAD2TOE) {
        fd(&w, "final_l2", r->final_l2);
        fone(&w, "select_group", r->select_group);
    }
    if (r->final_l2s)
        ff64(&w, "final_l2s", r->final_l2s, r->n_keeps);
    if (r->cell_test)
        ff64(&w, "cell_test", r->cell_test, (uint64_t)r->n_lambdas * r->n_keeps);
    if (r->n_auto) {
        fu32(&w, "auto_methods", r->auto_methods, r->n_auto);
        ff64(&w, "auto_acc", r->auto_acc, r->n_auto);
        ff64(&w, "auto_se", r->auto_se, r->n_auto);
    }
    if (!w.oom) {
        for (int i = 0; i < 4; i++)
            w.p[12 + i] = (uint8_t)(w.nfields >> (8 * i));
        wu32(&w, h2t_crc32c(0, w.p, w.len));
    }
    if (w.oom) {
        free(w.p);
        return h2t_err_set(H2T_ENOMEM, "encode result");
    }
    *blob = w.p;
    *len = w.len;
    return 0;
}

/* ---- blob reader ---- */

typedef struct field {
    char name[256];
    char type;
    uint64_t count;
    const uint8_t *data; /* payload */
    size_t bytes;
} field;

static uint32_t ru32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t ru64(const uint8_t *p)
{
    return ru32(p) | ((uint64_t)ru32(p + 4) << 32);
}

static const field *find(const field *f, uint32_t n, const char *name, char type, uint64_t count,
                         int check_count)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(f[i].name, name)) {
            if (f[i].type != type || (check_count && f[i].count != count)) {
                h2t_err_set(H2T_ECORRUPT, "result field %s: type %c count %llu, expected %c %llu",
                            name, f[i].type, (unsigned long long)f[i].count, type,
                            (unsigned long long)count);
                return NULL;
            }
            return &f[i];
        }
    h2t_err_set(H2T_ECORRUPT, "result field %s missing", name);
    return NULL;
}

#define GET(var, name, type, count, check)                                                         \
    do {                                                                                           \
        if (!(var = find(fs, nf, name, type, count, check))) {                                     \
            rc = H2T_ECORRUPT;                                                                     \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static int get_u32(const field *fs, uint32_t nf, const char *name, uint32_t *v)
{
    const field *f = find(fs, nf, name, 'u', 1, 1);
    if (!f)
        return H2T_ECORRUPT;
    *v = ru32(f->data);
    return 0;
}

static int get_f64(const field *fs, uint32_t nf, const char *name, double *v, uint64_t n)
{
    const field *f = find(fs, nf, name, 'd', n, 1);
    if (!f)
        return H2T_ECORRUPT;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t b = ru64(f->data + 8 * i);
        memcpy(&v[i], &b, 8);
    }
    return 0;
}

static void *dup_arr(uint64_t n, size_t size)
{
    return malloc(n * size + 1);
}

/* The field name of type/count when present; NULL when absent (not an error). A present
 * field of another type or count is H2T_ECORRUPT (*rc). */
static const field *opt_field(const field *fs, uint32_t nf, const char *name, char type,
                              uint64_t count, int check_count, int *rc)
{
    for (uint32_t i = 0; i < nf; i++)
        if (!strcmp(fs[i].name, name)) {
            const field *f = find(fs, nf, name, type, count, check_count);
            if (!f)
                *rc = H2T_ECORRUPT;
            return f;
        }
    return NULL;
}

static int opt_u32s(const field *f, uint64_t n, uint32_t **dst)
{
    *dst = malloc(n * 4 + 1);
    if (!*dst)
        return h2t_err_set(H2T_ENOMEM, "decode");
    for (uint64_t i = 0; i < n; i++)
        (*dst)[i] = ru32(f->data + 4 * i);
    return 0;
}

static int opt_f64s(const field *f, uint64_t n, double **dst)
{
    *dst = malloc(n * 8 + 1);
    if (!*dst)
        return h2t_err_set(H2T_ENOMEM, "decode");
    for (uint64_t i = 0; i < n; i++) {
        uint64_t b = ru64(f->data + 8 * i);
        memcpy(&(*dst)[i], &b, 8);
    }
    return 0;
}

/* The fields a result may lack (written before they existed): model selection, knn's rows,
 * the layer curve, the auto table. */
static int decode_optional(const field *fs, uint32_t nf, h2t_result *r)
{
    int rc = 0;
    const field *f;
    r->fold_kind = H2T_FOLDS_CONTIGUOUS; /* the only kind before the field */
    r->cv_repeats = r->folds > 1 ? 1 : 0;
    if ((f = opt_field(fs, nf, "fold_kind", 'u', 1, 1, &rc)))
        r->fold_kind = ru32(f->data);
    if ((f = opt_field(fs, nf, "cv_repeats", 'u', 1, 1, &rc)))
        r->cv_repeats = ru32(f->data);
    if ((f = opt_field(fs, nf, "one_se", 'u', 1, 1, &rc)))
        r->one_se = ru32(f->data);
    uint64_t cells = (uint64_t)r->n_lambdas * r->n_keeps;
    if ((f = opt_field(fs, nf, "cv_se", 'd', cells, 1, &rc)) &&
        (rc = opt_f64s(f, cells, &r->cv_se)) < 0)
        return rc;
    if ((f = opt_field(fs, nf, "cell_test", 'd', cells, 1, &rc)) &&
        (rc = opt_f64s(f, cells, &r->cell_test)) < 0)
        return rc;
    if ((f = opt_field(fs, nf, "final_l2s", 'd', r->n_keeps, 1, &rc)) &&
        (rc = opt_f64s(f, r->n_keeps, &r->final_l2s)) < 0)
        return rc;
    if ((f = opt_field(fs, nf, "final_l2", 'd', 1, 1, &rc)) &&
        (rc = get_f64(fs, nf, "final_l2", &r->final_l2, 1)) < 0)
        return rc;
    if ((f = opt_field(fs, nf, "select_group", 'u', 1, 1, &rc)))
        r->select_group = ru32(f->data);
    if ((f = opt_field(fs, nf, "knn_k", 'u', 1, 1, &rc)))
        r->knn_k = ru32(f->data);
    const field *pl = opt_field(fs, nf, "proto_labels", 'u', 0, 0, &rc);
    if (rc < 0)
        return rc;
    if (pl) {
        if (pl->count > UINT32_MAX)
            return h2t_err_set(H2T_ECORRUPT, "result field proto_labels: %llu rows",
                               (unsigned long long)pl->count);
        r->n_protos = (uint32_t)pl->count;
        if (!(f = find(fs, nf, "protos", 'f', (uint64_t)r->n_protos * r->n_kept, 1)))
            return H2T_ECORRUPT;
        if ((rc = opt_u32s(pl, r->n_protos, &r->proto_labels)) < 0)
            return rc;
        for (uint32_t i = 0; i < r->n_protos; i++)
            if (r->proto_labels[i] >= r->n_classes)
                return h2t_err_set(H2T_ECORRUPT, "result knn row %u: label %u of %u classes", i,
                                   r->proto_labels[i], r->n_classes);
        r->protos = malloc((size_t)r->n_protos * r->n_kept * 4 + 1);
        if (!r->protos)
            return h2t_err_set(H2T_ENOMEM, "decode");
        for (uint64_t i = 0; i < f->count; i++) {
            uint32_t b = ru32(f->data + 4 * i);
            memcpy(&r->protos[i], &b, 4);
        }
    }
    if ((f = opt_field(fs, nf, "curve_layers", 'u', 0, 0, &rc))) {
        if (f->count > 1u << 20)
            return h2t_err_set(H2T_ECORRUPT, "result layer curve too long");
        r->n_curve = (uint32_t)f->count;
        if ((rc = opt_u32s(f, r->n_curve, &r->curve_layers)) < 0)
            return rc;
        if (!(f = find(fs, nf, "curve_acc", 'd', r->n_curve, 1)))
            return H2T_ECORRUPT;
        if ((rc = opt_f64s(f, r->n_curve, &r->curve_acc)) < 0)
            return rc;
    }
    if ((f = opt_field(fs, nf, "auto_methods", 'u', 0, 0, &rc))) {
        if (f->count > 64)
            return h2t_err_set(H2T_ECORRUPT, "result auto table: %llu methods",
                               (unsigned long long)f->count);
        r->n_auto = (uint32_t)f->count;
        if ((rc = opt_u32s(f, r->n_auto, &r->auto_methods)) < 0)
            return rc;
        const field *a = find(fs, nf, "auto_acc", 'd', r->n_auto, 1);
        const field *e = a ? find(fs, nf, "auto_se", 'd', r->n_auto, 1) : NULL;
        if (!a || !e)
            return H2T_ECORRUPT;
        if ((rc = opt_f64s(a, r->n_auto, &r->auto_acc)) < 0 ||
            (rc = opt_f64s(e, r->n_auto, &r->auto_se)) < 0)
            return rc;
    }
    return rc;
}

int h2t_result_decode(const void *blob, size_t len, h2t_result **out)
{
    const uint8_t *p = blob;
    field *fs = NULL;
    h2t_result *r = NULL;
    int rc = 0;
    if (!blob || !out)
        return h2t_err_set(H2T_EINVAL, "decode: no blob");
    if (len < 20 || memcmp(p, BLOB_MAGIC, 6))
        return h2t_err_set(H2T_ECORRUPT, "not a result blob (%zu bytes)", len);
    if (memcmp(p + 6, "01", 2) || ru32(p + 8) != BLOB_VERSION)
        return h2t_err_set(H2T_EVERSION, "result blob version %.2s/%u, this build reads 01/%u",
                           (const char *)p + 6, ru32(p + 8), BLOB_VERSION);
    if (h2t_crc32c(0, p, len - 4) != ru32(p + len - 4))
        return h2t_err_set(H2T_ECORRUPT, "result blob checksum mismatch");
    uint32_t nf = ru32(p + 12);
    if (nf > 10000)
        return h2t_err_set(H2T_ECORRUPT, "result blob: %u fields", nf);
    fs = calloc(nf + 1, sizeof(field));
    if (!fs)
        return h2t_err_set(H2T_ENOMEM, "decode");
    size_t pos = 16, end = len - 4;
    for (uint32_t i = 0; i < nf; i++) {
        if (pos + 1 > end || pos + 1 + p[pos] + 9 > end) {
            rc = h2t_err_set(H2T_ECORRUPT, "result blob truncated in field %u", i);
            goto out;
        }
        uint8_t nl = p[pos++];
        memcpy(fs[i].name, p + pos, nl);
        fs[i].name[nl] = 0;
        pos += nl;
        fs[i].type = (char)p[pos++];
        fs[i].count = ru64(p + pos);
        pos += 8;
        fs[i].data = p + pos;
        size_t es = fs[i].type == 'u' || fs[i].type == 'f'   ? 4
                    : fs[i].type == 'U' || fs[i].type == 'd' ? 8
                                                             : 0;
        if (fs[i].type == 's') {
            for (uint64_t s = 0; s < fs[i].count; s++) {
                if (pos + 4 > end || ru32(p + pos) > end - pos - 4) {
                    rc = h2t_err_set(H2T_ECORRUPT, "result field %s truncated", fs[i].name);
                    goto out;
                }
                pos += 4 + ru32(p + pos);
            }
        } else if (es) {
            if (fs[i].count > (end - pos) / es) {
                rc = h2t_err_set(H2T_ECORRUPT, "result field %s truncated", fs[i].name);
                goto out;
            }
            pos += fs[i].count * es;
        } else {
            rc = h2t_err_set(H2T_ECORRUPT, "result field %s: unknown type %d", fs[i].name,
                             fs[i].type);
            goto out;
        }
        fs[i].bytes = (size_t)(p + pos - fs[i].data);
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        rc = h2t_err_set(H2T_ENOMEM, "decode");
        goto out;
    }
    const field *f;
    if ((rc = get_u32(fs, nf, "method", &r->method)) < 0 ||
        (rc = get_u32(fs, nf, "penalty", &r->penalty)) < 0 ||
        (rc = get_u32(fs, nf, "optimizer", &r->optimizer)) < 0 ||
        (rc = get_u32(fs, nf, "ranking", &r->ranking)) < 0 ||
        (rc = get_u32(fs, nf, "n_classes", &r->n_classes)) < 0 ||
        (rc = get_u32(fs, nf, "n_train", &r->n_train)) < 0 ||
        (rc = get_u32(fs, nf, "n_test", &r->n_test)) < 0 ||
        (rc = get_u32(fs, nf, "folds", &r->folds)) < 0 ||
        (rc = get_u32(fs, nf, "test_correct", &r->test_correct)) < 0 ||
        (rc = get_u32(fs, nf, "select_nonzero", &r->select_nonzero)) < 0 ||
        (rc = get_f64(fs, nf, "lambda", &r->lambda, 1)) < 0 ||
        (rc = get_f64(fs, nf, "keep", &r->keep, 1)) < 0 ||
        (rc = get_f64(fs, nf, "val_acc", &r->val_acc, 1)) < 0 ||
        (rc = get_f64(fs, nf, "train_acc", &r->train_acc, 1)) < 0 ||
        (rc = get_f64(fs, nf, "test_acc", &r->test_acc, 1)) < 0)
        goto out;
    GET(f, "seed", 'U', 1, 1);
    r->seed = ru64(f->data);
    GET(f, "total_dim", 'U', 1, 1);
    r->total_dim = ru64(f->data);
    GET(f, "lambdas", 'd', 0, 0);
    r->n_lambdas = (uint32_t)f->count;
    GET(f, "keeps", 'd', 0, 0);
    r->n_keeps = (uint32_t)f->count;
    GET(f, "layer_ids", 'u', 0, 0);
    r->n_layers = (uint32_t)f->count;
    GET(f, "features", 'u', 0, 0);
    if (f->count % 2 || f->count / 2 > UINT32_MAX) {
        rc = h2t_err_set(H2T_ECORRUPT, "result field features: odd count");
        goto out;
    }
    r->n_kept = (uint32_t)(f->count / 2);
    if (r->n_lambdas > 1u << 20 || r->n_keeps > 1u << 20 || r->folds > 1u << 20) {
        rc = h2t_err_set(H2T_ECORRUPT, "result grid too large");
        goto out;
    }
    r->lambdas = dup_arr(r->n_lambdas, 8);
    r->keeps = dup_arr(r->n_keeps, 8);
    r->cv_acc = dup_arr((uint64_t)r->n_lambdas * r->n_keeps, 8);
    r->fold_acc = dup_arr(r->folds, 8);
    r->layer_ids = dup_arr(r->n_layers, 4);
    r->layer_dims = dup_arr(r->n_layers, 4);
    r->layer_kept = dup_arr(r->n_layers, 4);
    r->layer_names = calloc(r->n_layers + 1, sizeof(char *));
    r->features = dup_arr(r->n_kept, sizeof(h2t_feature_ref));
    r->weights = dup_arr((uint64_t)r->n_classes * r->n_kept, 4);
    r->bias = dup_arr(r->n_classes, 4);
    if (!r->lambdas || !r->keeps || !r->cv_acc || !r->fold_acc || !r->layer_ids || !r->layer_dims ||
        !r->layer_kept || !r->layer_names || !r->features || !r->weights || !r->bias) {
        rc = h2t_err_set(H2T_ENOMEM, "decode");
        goto out;
    }
    double fit[4], t[4];
    if ((rc = get_f64(fs, nf, "lambdas", r->lambdas, r->n_lambdas)) < 0 ||
        (rc = get_f64(fs, nf, "keeps", r->keeps, r->n_keeps)) < 0 ||
        (rc = get_f64(fs, nf, "cv_acc", r->cv_acc, (uint64_t)r->n_lambdas * r->n_keeps)) < 0 ||
        (rc = get_f64(fs, nf, "fold_acc", r->fold_acc, r->folds)) < 0 ||
        (rc = get_f64(fs, nf, "timings", t, 4)) < 0)
        goto out;
    r->t_load = t[0];
    r->t_cv = t[1];
    r->t_final = t[2];
    r->t_total = t[3];
    if ((rc = get_f64(fs, nf, "select_fit", fit, 4)) < 0)
        goto out;
    r->select_fit = (h2t_fit_info){(uint32_t)fit[0], (uint32_t)fit[1], fit[2], fit[3]};
    if ((rc = get_f64(fs, nf, "final_fit", fit, 4)) < 0)
        goto out;
    r->final_fit = (h2t_fit_info){(uint32_t)fit[0], (uint32_t)fit[1], fit[2], fit[3]};
    const char *names[] = {"layer_ids", "layer_dims", "layer_kept"};
    uint32_t *dst[] = {r->layer_ids, r->layer_dims, r->layer_kept};
    uint64_t kept_sum = 0;
    for (int a = 0; a < 3; a++) {
        GET(f, names[a], 'u', r->n_layers, 1);
        for (uint32_t l = 0; l < r->n_layers; l++)
            dst[a][l] = ru32(f->data + 4 * l);
    }
    for (uint32_t l = 0; l < r->n_layers; l++) {
        if (r->layer_kept[l] > r->layer_dims[l]) {
            rc = h2t_err_set(H2T_ECORRUPT, "result layer %u keeps %u of %u", l, r->layer_kept[l],
                             r->layer_dims[l]);
            goto out;
        }
        kept_sum += r->layer_kept[l];
    }
    if (kept_sum != r->n_kept) {
        rc = h2t_err_set(H2T_ECORRUPT, "result keeps %llu features per layer, %u in the list",
                         (unsigned long long)kept_sum, r->n_kept);
        goto out;
    }
    GET(f, "layer_names", 's', r->n_layers, 1);
    const uint8_t *q = f->data;
    for (uint32_t l = 0; l < r->n_layers; l++) {
        uint32_t sl = ru32(q);
        r->layer_names[l] = malloc(sl + 1);
        if (!r->layer_names[l]) {
            rc = h2t_err_set(H2T_ENOMEM, "decode");
            goto out;
        }
        memcpy(r->layer_names[l], q + 4, sl);
        r->layer_names[l][sl] = 0;
        q += 4 + sl;
    }
    GET(f, "features", 'u', (uint64_t)r->n_kept * 2, 1);
    for (uint32_t c = 0; c < r->n_kept; c++) {
        r->features[c].layer = ru32(f->data + 8 * c);
        r->features[c].index = ru32(f->data + 8 * c + 4);
    }
    /* features must follow the layer table in order, with indices inside each layer */
    for (uint32_t l = 0, c = 0; l < r->n_layers; l++)
        for (uint32_t m = 0; m < r->layer_kept[l]; m++, c++)
            if (r->features[c].layer != r->layer_ids[l] ||
                r->features[c].index >= r->layer_dims[l]) {
                rc = h2t_err_set(H2T_ECORRUPT, "result feature %u (%u, %u) outside its layer", c,
                                 r->features[c].layer, r->features[c].index);
                goto out;
            }
    GET(f, "weights", 'f', (uint64_t)r->n_classes * r->n_kept, 1);
    for (uint64_t i = 0; i < f->count; i++) {
        uint32_t b = ru32(f->data + 4 * i);
        memcpy(&r->weights[i], &b, 4);
    }
    GET(f, "bias", 'f', r->n_classes, 1);
    for (uint32_t i = 0; i < r->n_classes; i++) {
        uint32_t b = ru32(f->data + 4 * i);
        memcpy(&r->bias[i], &b, 4);
    }
    if ((rc = decode_optional(fs, nf, r)) < 0)
        goto out;
    *out = r;
    r = NULL;
out:
    free(fs);
    h2t_result_destroy(r);
    return rc;
}

/* ---- JSON ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sprint(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sprint(sbuf *s, const char *fmt, ...)
{
    if (s->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            s->oom = 1;
            return;
        }
        if (s->p && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + (size_t)n + 1)
            cap *= 2;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->p = q;
        s->cap = cap;
    }
}

static void sjstr(sbuf *s, const char *str)
{
    sprint(s, "\"");
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\')
            sprint(s, "\\%c", *c);
        else if (*c < 0x20)
            sprint(s, "\\u%04x", *c);
        else
            sprint(s, "%c", *c);
    }
    sprint(s, "\"");
}

static void sjnum(sbuf *s, double v)
{
    if (isfinite(v))
        sprint(s, "%.9g", v);
    else
        sprint(s, "null");
}

static void sjfit(sbuf *s, const char *name, const h2t_fit_info *f)
{
    sprint(s, "  \"%s\": {\"iters\": %u, \"converged\": %s, \"grad_norm\": ", name, f->iters,
           f->converged ? "true" : "false");
    sjnum(s, f->grad_norm);
    sprint(s, ", \"objective\": ");
    sjnum(s, f->objective);
    sprint(s, "},\n");
}

char *h2t_result_json(const h2t_result *r)
{
    static const char *pens[] = {"none", "l2", "group"};
    static const char *opts[] = {"fast", "adam"};
    static const char *ranks[] = {"none", "path-entry-then-norm-then-gradient-norm",
                                  "adam-score-sum-w2"};
    sbuf s = {0};
    if (!r)
        return NULL;
    sprint(&s, "{\n  \"format\": \"h2tdb-result-1\",\n");
    sprint(&s, "  \"method\": \"%s\",\n  \"penalty\": \"%s\",\n  \"optimizer\": \"%s\",\n",
           h2t_method_name(r->method), pens[r->penalty % 3], opts[r->optimizer % 2]);
    sprint(&s, "  \"ranking\": \"%s\",\n  \"seed\": %llu,\n", ranks[r->ranking % 3],
           (unsigned long long)r->seed);
    sprint(&s, "  \"n_classes\": %u,\n  \"n_train\": %u,\n  \"n_test\": %u,\n", r->n_classes,
           r->n_train, r->n_test);
    sprint(&s, "  \"total_dim\": %llu,\n  \"n_kept\": %u,\n", (unsigned long long)r->total_dim,
           r->n_kept);
    sprint(&s, "  \"lambda\": ");
    sjnum(&s, r->lambda);
    sprint(&s, ",\n  \"keep\": ");
    sjnum(&s, r->keep);
    sprint(&s, ",\n  \"folds\": %u,\n  \"val_acc\": ", r->folds);
    sjnum(&s, r->val_acc);
    sprint(&s, ",\n  \"train_acc\": ");
    sjnum(&s, r->train_acc);
    sprint(&s, ",\n  \"test_acc\": ");
    sjnum(&s, r->test_acc);
    sprint(&s, ",\n  \"test_correct\": %u,\n  \"fold_acc\": [", r->test_correct);
    for (uint32_t f = 0; f < r->folds; f++) {
        sprint(&s, f ? ", " : "");
        sjnum(&s, r->fold_acc[f]);
    }
    sprint(&s, "],\n  \"lambdas\": [");
    for (uint32_t i = 0; i < r->n_lambdas; i++) {
        sprint(&s, i ? ", " : "");
        sjnum(&s, r->lambdas[i]);
    }
    sprint(&s, "],\n  \"keeps\": [");
    for (uint32_t i = 0; i < r->n_keeps; i++) {
        sprint(&s, i ? ", " : "");
        sjnum(&s, r->keeps[i]);
    }
    sprint(&s, "],\n  \"cv_acc\": [");
    for (uint32_t i = 0; i < r->n_lambdas; i++) {
        sprint(&s, "%s[", i ? ", " : "");
        for (uint32_t q = 0; q < r->n_keeps; q++) {
            sprint(&s, q ? ", " : "");
            sjnum(&s, r->cv_acc[(size_t)i * r->n_keeps + q]);
        }
        sprint(&s, "]");
    }
    sprint(&s, "],\n  \"cv_se\": [");
    for (uint32_t i = 0; r->cv_se && i < r->n_lambdas; i++) {
        sprint(&s, "%s[", i ? ", " : "");
        for (uint32_t q = 0; q < r->n_keeps; q++) {
            sprint(&s, q ? ", " : "");
            sjnum(&s, r->cv_se[(size_t)i * r->n_keeps + q]);
        }
        sprint(&s, "]");
    }
    sprint(&s, "],\n  \"fold_kind\": \"%s\",\n  \"cv_repeats\": %u,\n  \"one_se\": %s,\n",
           r->fold_kind == H2T_FOLDS_STRATIFIED ? "stratified" : "contiguous", r->cv_repeats,
           r->one_se ? "true" : "false");
    if (r->method == H2T_METHOD_KNN)
        sprint(&s, "  \"knn_k\": %u,\n  \"knn_rows\": %u,\n", r->knn_k, r->n_protos);
    if (r->cell_test) {
        sprint(&s, "  \"cell_test\": [");
        for (uint32_t i = 0; i < r->n_lambdas; i++) {
            sprint(&s, "%s[", i ? ", " : "");
            for (uint32_t q = 0; q < r->n_keeps; q++) {
                sprint(&s, q ? ", " : "");
                sjnum(&s, r->cell_test[(size_t)i * r->n_keeps + q]);
            }
            sprint(&s, "]");
        }
        sprint(&s, "],\n");
    }
    if (r->method == H2T_METHOD_HEAD2TOE) {
        sprint(&s, "  \"final_l2\": ");
        sjnum(&s, r->final_l2);
        sprint(&s, ",\n  \"select_group\": \"%s\",\n",
               r->select_group == H2T_SELECT_LAYER ? "layer" : "feature");
        if (r->final_l2s) {
            sprint(&s, "  \"final_l2s\": [");
            for (uint32_t i = 0; i < r->n_keeps; i++) {
                sprint(&s, i ? ", " : "");
                sjnum(&s, r->final_l2s[i]);
            }
            sprint(&s, "],\n");
        }
    }
    if (r->n_curve) {
        sprint(&s, "  \"layer_curve\": [");
        for (uint32_t i = 0; i < r->n_curve; i++) {
            sprint(&s, "%s{\"layer\": %u, \"cv_acc\": ", i ? ", " : "", r->curve_layers[i]);
            sjnum(&s, r->curve_acc[i]);
            sprint(&s, "}");
        }
        sprint(&s, "],\n");
    }
    if (r->n_auto) {
        sprint(&s, "  \"auto\": {\"chosen\": \"%s\", \"candidates\": [",
               h2t_method_name(r->method));
        for (uint32_t i = 0; i < r->n_auto; i++) {
            sprint(&s, "%s{\"method\": \"%s\", \"cv_acc\": ", i ? ", " : "",
                   h2t_method_name(r->auto_methods[i]));
            sjnum(&s, r->auto_acc[i]);
            sprint(&s, ", \"cv_se\": ");
            sjnum(&s, r->auto_se[i]);
            sprint(&s, "}");
        }
        sprint(&s, "]},\n");
    }
    sprint(&s, "  \"layers\": [\n");
    for (uint32_t l = 0; l < r->n_layers; l++) {
        sprint(&s, "    {\"id\": %u, \"name\": ", r->layer_ids[l]);
        sjstr(&s, r->layer_names && r->layer_names[l] ? r->layer_names[l] : "");
        sprint(&s, ", \"dim\": %u, \"kept\": %u}%s\n", r->layer_dims[l], r->layer_kept[l],
               l + 1 < r->n_layers ? "," : "");
    }
    sprint(&s, "  ],\n");
    sjfit(&s, "select_fit", &r->select_fit);
    sjfit(&s, "final_fit", &r->final_fit);
    sprint(&s, "  \"select_nonzero\": %u,\n", r->select_nonzero);
    sprint(&s,
           "  \"timings_s\": {\"load\": %.6f, \"cv\": %.6f, \"final\": %.6f, \"total\": %.6f},\n",
           r->t_load, r->t_cv, r->t_final, r->t_total);
    sprint(&s, "  \"files\": {\"weights\": \"weights.npy (n_classes x n_kept f32)\", \"bias\": "
               "\"bias.npy\", \"features\": \"features.npy (n_kept x 2 u32: layer, index)\", "
               "\"cv_acc\": \"cv_acc.npy (n_lambdas x n_keeps f64)\"},\n");
    if (r->method == H2T_METHOD_KNN)
        sprint(&s, "  \"apply\": \"per layer: take the kept raw columns, L2-normalise them over "
                   "the kept subset (zero stays zero), concatenate in features order; the knn_k "
                   "rows of knn_rows.npy with the largest cosine similarity vote with their "
                   "labels (knn_labels.npy); a tie of votes goes to the larger summed "
                   "similarity, then the lower class. weights.npy holds the normalised class "
                   "means\"\n}\n");
    else
        sprint(&s, "  \"apply\": \"per layer: take the kept raw columns, L2-normalise them over "
                   "the kept subset (zero stays zero), concatenate in features order; logits = W "
                   "x + b\"\n}\n");
    if (s.oom) {
        free(s.p);
        return NULL;
    }
    return s.p;
}

/* ---- .npy export ---- */

static int write_npy(const char *dir, const char *name, const char *descr, const char *shape,
                     const void *data, size_t bytes)
{
    char path[4096], hdr[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int hl = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, shape);
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return h2t_err_set(H2T_EIO, "open %s: %s", path, strerror(errno));
    uint16_t hlen = (uint16_t)(hl + pad + 1);
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)hlen, (uint8_t)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        remove(path);
        return h2t_err_set(H2T_EIO, "write %s: %s", path, strerror(errno));
    }
    return 0;
}

int h2t_result_export(const h2t_result *r, const char *dir)
{
    if (!r || !dir)
        return h2t_err_set(H2T_EINVAL, "export: no result or directory");
    if (mkdir(dir, 0777) < 0 && errno != EEXIST)
        return h2t_err_set(H2T_EIO, "mkdir %s: %s", dir, strerror(errno));
    char shape[96];
    int rc;
    uint32_t *feat = malloc((size_t)r->n_kept * 2 * sizeof(uint32_t) + 1);
    char *js = h2t_result_json(r);
    if (!feat || !js) {
        rc = h2t_err_set(H2T_ENOMEM, "export");
        goto out;
    }
    for (uint32_t c = 0; c < r->n_kept; c++) {
        feat[2 * c] = r->features[c].layer;
        feat[2 * c + 1] = r->features[c].index;
    }
    snprintf(shape, sizeof(shape), "(%u, %u)", r->n_classes, r->n_kept);
    if ((rc = write_npy(dir, "weights.npy", "<f4", shape, r->weights,
                        (size_t)r->n_classes * r->n_kept * 4)) < 0)
        goto out;
    snprintf(shape, sizeof(shape), "(%u,)", r->n_classes);
    if ((rc = write_npy(dir, "bias.npy", "<f4", shape, r->bias, (size_t)r->n_classes * 4)) < 0)
        goto out;
    snprintf(shape, sizeof(shape), "(%u, 2)", r->n_kept);
    if ((rc = write_npy(dir, "features.npy", "<u4", shape, feat, (size_t)r->n_kept * 8)) < 0)
        goto out;
    snprintf(shape, sizeof(shape), "(%u, %u)", r->n_lambdas, r->n_keeps);
    if ((rc = write_npy(dir, "cv_acc.npy", "<f8", shape, r->cv_acc,
                        (size_t)r->n_lambdas * r->n_keeps * 8)) < 0)
        goto out;
    if (r->protos && r->n_protos) {
        snprintf(shape, sizeof(shape), "(%u, %u)", r->n_protos, r->n_kept);
        if ((rc = write_npy(dir, "knn_rows.npy", "<f4", shape, r->protos,
                            (size_t)r->n_protos * r->n_kept * 4)) < 0)
            goto out;
        snprintf(shape, sizeof(shape), "(%u,)", r->n_protos);
        if ((rc = write_npy(dir, "knn_labels.npy", "<u4", shape, r->proto_labels,
                            (size_t)r->n_protos * 4)) < 0)
            goto out;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/result.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        rc = h2t_err_set(H2T_EIO, "open %s: %s", path, strerror(errno));
        goto out;
    }
    int ok = fputs(js, f) >= 0;
    if (fclose(f) != 0 || !ok) {
        remove(path);
        rc = h2t_err_set(H2T_EIO, "write %s: %s", path, strerror(errno));
    }
out:
    free(feat);
    free(js);
    return rc;
}
