/*
 * tests/conformance/onnx_dump.c - run a model through h2tdb's executor and write every tensor.
 *
 * The h2tdb half of tests/conformance/ort_compare.sh: loads MODEL with extract/model.h,
 * observes every tensor of the graph, runs the N samples of INPUT (raw little-endian float32,
 * N x C x H x W) as one batch and writes each computed tensor into OUTDIR in the dump format
 * of tests/conformance/common.py (index.tsv: name TAB d0,d1,... TAB file; one raw float32
 * file per tensor). Built by `make build/conformance/onnx_dump`.
 *
 *     build/conformance/onnx_dump models/resnet18.onnx in.f32 2 /tmp/dump [--threads 1]
 *                                 [--layers | --outputs]
 *
 * By default every tensor of the graph is observed (but those computed before the run from
 * shapes and constants, which are never reported). With --layers only the tensors of the
 * default layer rule (h2t_layers_select, what `h2tdb extract` pools and stores) are observed,
 * as an extraction runs the executor, plus the graph outputs. With --outputs nothing is observed
 * and only the graph outputs are written: the forward pass as a classifier runs it, every
 * fused chain whole (on oneDNN's convolution primitive where it is in use), and layers.tsv is
 * empty. With --blocked (implies --layers) the layer rule's 4-D tensors are observed in blocked
 * pieces and each sample runs alone (h2t_exec_run_blocked), as `h2tdb extract` runs the
 * executor at forward batch 1: the conv chains on oneDNN's primitive without post-ops, their
 * stages handed over tile by tile; the pieces are put back together in NCHW here before they
 * are written. Otherwise OUTDIR/layers.tsv
 * lists the layer rule's tensors (name TAB op TAB rank), so a comparison can tell them apart
 * and check that each of them was delivered.
 *
 * Exit status 0 on success, 1 on any error (the executor's code and detail on stderr).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "extract/extract.h"
#include "extract/model.h"

typedef struct dump_ctx {
    const h2t_model *m;
    const char *dir;
    FILE *index;
    int n_written;
    unsigned char *written; /* per tensor: 1 once its file exists */
    /* --blocked: per tensor, the n samples' values gathered (NCHW), the shape at batch n */
    int n, sample;
    float **acc;
    int64_t (*shape)[H2T_MAX_RANK];
    int *rank;
} dump_ctx;

static int dump_write(dump_ctx *d, int tensor, const float *data, const int64_t *shape, int rank)
{
    char path[4096];
    size_t count = 1;
    int rc = 0;
    FILE *f = NULL;
    const h2t_tensor_info *ti = h2t_model_tensor(d->m, tensor);

    if (d->written[tensor])
        return 0;
    for (int i = 0; i < rank; i++)
        count *= (size_t)shape[i];
    snprintf(path, sizeof path, "%s/h%04d.f32", d->dir, tensor);
    f = fopen(path, "wb");
    if (!f || fwrite(data, sizeof(float), count, f) != count) {
        fprintf(stderr, "onnx_dump: %s: %s\n", path, strerror(errno));
        rc = H2T_EIO;
        goto out;
    }
    fprintf(d->index, "%s\t", ti->name);
    for (int i = 0; i < rank; i++)
        fprintf(d->index, "%s%lld", i ? "," : "", (long long)shape[i]);
    fprintf(d->index, "\th%04d.f32\n", tensor);
    d->written[tensor] = 1;
    d->n_written++;
out:
    if (f && fclose(f) != 0 && rc == 0)
        rc = H2T_EIO;
    return rc;
}

static int on_tensor(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    return dump_write(ctx, tensor, data, shape, rank);
}

/* --blocked: sample d->sample's tensor (batch 1) into its slot of the n-sample buffer. */
static float *acc_slot(dump_ctx *d, int tensor, const int64_t *shape, int rank)
{
    size_t per = 1;
    for (int i = 1; i < rank; i++)
        per *= (size_t)shape[i];
    if (!d->acc[tensor]) {
        d->acc[tensor] = calloc(per * (size_t)d->n, sizeof(float));
        if (!d->acc[tensor])
            return NULL;
        memcpy(d->shape[tensor], shape, (size_t)rank * sizeof(int64_t));
        d->shape[tensor][0] = d->n;
        d->rank[tensor] = rank;
    }
    return d->acc[tensor] + per * (size_t)d->sample;
}

static int on_tensor_acc(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    dump_ctx *d = ctx;
    size_t per = 1;
    for (int i = 1; i < rank; i++)
        per *= (size_t)shape[i];
    float *y = acc_slot(d, tensor, shape, rank);
    if (!y)
        return H2T_ENOMEM;
    memcpy(y, data, per * sizeof(float));
    return 0;
}

static int on_blk_acc(void *ctx, int tensor, const float *data, const int64_t *shape, int rank,
                      int sample, int B, int c0, int c1, int64_t off, int64_t len)
{
    dump_ctx *d = ctx;
    float *y = acc_slot(d, tensor, shape, rank);
    int64_t hw = shape[2] * shape[3];
    if (!y)
        return H2T_ENOMEM;
    if (sample != 0 || rank != 4)
        return H2T_ESHAPE;
    for (int c = c0; c < c1; c++)
        for (int64_t p = 0; p < len; p++)
            y[c * hw + off + p] = data[p * B + (c - c0)];
    return 0;
}

static float *read_input(const char *path, size_t want)
{
    FILE *f = fopen(path, "rb");
    float *x = NULL;

    if (!f) {
        fprintf(stderr, "onnx_dump: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    x = malloc(want * sizeof(float) + 1);
    if (x && fread(x, sizeof(float), want, f) != want) {
        fprintf(stderr, "onnx_dump: %s: shorter than %zu floats\n", path, want);
        free(x);
        x = NULL;
    }
    fclose(f);
    return x;
}

int main(int argc, char **argv)
{
    h2t_model *m = NULL;
    h2t_exec *x = NULL;
    float *input = NULL;
    dump_ctx d = {0};
    char path[4096];
    int rc = 0, n, threads = 1, layers_only = 0, outputs_only = 0, blocked = 0, n_layers = 0;
    int *layers = NULL;
    size_t per = 1;
    const h2t_tensor_info *in;
    FILE *lf = NULL;

    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0)
            layers_only = 1;
        else if (strcmp(argv[i], "--outputs") == 0)
            outputs_only = 1;
        else if (strcmp(argv[i], "--blocked") == 0)
            blocked = layers_only = 1;
        else
            argc = 0; /* usage */
    }
    if (argc < 5) {
        fprintf(stderr, "usage: onnx_dump MODEL.onnx INPUT.f32 N OUTDIR [--threads T] [--layers | "
                        "--outputs | --blocked]\n");
        return 2;
    }
    n = atoi(argv[3]);
    h2t_blas_threads(threads);
    rc = h2t_model_load(argv[1], &m);
    if (rc < 0)
        goto out;
    rc = h2t_layers_select(m, NULL, &layers, &n_layers);
    if (rc == H2T_ENOTFOUND)
        rc = 0; /* no layer: every tensor or only the outputs are dumped */
    if (rc < 0)
        goto out;
    in = h2t_model_input(m);
    for (int i = 1; i < in->rank; i++)
        per *= (size_t)in->shape[i];
    input = read_input(argv[2], per * (size_t)n);
    if (!input) {
        rc = H2T_EIO;
        goto out;
    }
    rc = h2t_exec_create(m, blocked ? 1 : n, &x);
    if (rc < 0)
        goto out;
    d.m = m;
    d.dir = argv[4];
    d.n = n;
    d.written = calloc((size_t)h2t_model_n_tensors(m), 1);
    d.acc = calloc((size_t)h2t_model_n_tensors(m), sizeof *d.acc);
    d.shape = calloc((size_t)h2t_model_n_tensors(m), sizeof *d.shape);
    d.rank = calloc((size_t)h2t_model_n_tensors(m), sizeof *d.rank);
    if (!d.written || !d.acc || !d.shape || !d.rank) {
        rc = H2T_ENOMEM;
        goto out;
    }
    if (outputs_only) {
        /* nothing observed: the graph outputs are written after the run, and layers.tsv
         * lists no layer (none is to be found in the dump) */
        n_layers = 0;
    } else if (layers_only) {
        for (int k = 0; k < n_layers; k++)
            if ((rc = blocked && h2t_model_tensor(m, layers[k])->rank == 4
                          ? h2t_exec_observe_blocked(x, layers[k], 1)
                          : h2t_exec_observe(x, layers[k], 1)) < 0)
                goto out;
    } else {
        for (int i = 0; i < h2t_model_n_tensors(m); i++)
            if (!h2t_model_tensor(m, i)->is_input && !h2t_model_tensor(m, i)->is_static &&
                (rc = h2t_exec_observe(x, i, 1)) < 0)
                goto out;
    }
    if (mkdir(d.dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "onnx_dump: %s: %s\n", d.dir, strerror(errno));
        rc = H2T_EIO;
        goto out;
    }
    snprintf(path, sizeof path, "%s/layers.tsv", d.dir);
    lf = fopen(path, "w");
    if (!lf) {
        fprintf(stderr, "onnx_dump: %s: %s\n", path, strerror(errno));
        rc = H2T_EIO;
        goto out;
    }
    for (int k = 0; k < n_layers; k++) {
        const h2t_tensor_info *ti = h2t_model_tensor(m, layers[k]);
        fprintf(lf, "%s\t%s\t%d\n", ti->name, ti->op, ti->rank);
    }
    if (fclose(lf) != 0) {
        lf = NULL;
        rc = H2T_EIO;
        goto out;
    }
    lf = NULL;
    snprintf(path, sizeof path, "%s/index.tsv", d.dir);
    d.index = fopen(path, "w");
    if (!d.index) {
        fprintf(stderr, "onnx_dump: %s: %s\n", path, strerror(errno));
        rc = H2T_EIO;
        goto out;
    }
    if (blocked) {
        /* each sample alone; the graph outputs gathered too, then everything written */
        for (d.sample = 0; d.sample < n && rc == 0; d.sample++) {
            rc = h2t_exec_run_blocked(x, input + per * (size_t)d.sample, 1, on_tensor_acc, NULL,
                                      on_blk_acc, &d);
            for (int i = 0, k = 0; rc == 0 && i < h2t_model_n_tensors(m); i++) {
                int64_t shape[H2T_MAX_RANK];
                int rank;
                const float *data;
                if (!h2t_model_tensor(m, i)->is_output)
                    continue;
                data = h2t_exec_output(x, k++, shape, &rank);
                if (data)
                    rc = on_tensor_acc(&d, i, data, shape, rank);
            }
        }
        for (int i = 0; rc == 0 && i < h2t_model_n_tensors(m); i++)
            if (d.acc[i])
                rc = dump_write(&d, i, d.acc[i], d.shape[i], d.rank[i]);
    } else {
        rc = h2t_exec_run(x, input, n, on_tensor, &d);
    }
    if (rc < 0)
        goto out;
    /* graph outputs the callback did not deliver (the contract only promises them here) */
    for (int i = 0, k = 0; i < h2t_model_n_tensors(m); i++) {
        const h2t_tensor_info *ti = h2t_model_tensor(m, i);
        int64_t shape[H2T_MAX_RANK];
        int rank;
        const float *data;
        if (!ti->is_output)
            continue;
        data = h2t_exec_output(x, k++, shape, &rank);
        if (data && (rc = dump_write(&d, i, data, shape, rank)) < 0)
            goto out;
    }
    fprintf(stderr, "onnx_dump: %d tensors written to %s (%d of the layer rule)\n", d.n_written,
            d.dir, n_layers);
out:
    if (rc < 0)
        fprintf(stderr, "onnx_dump: %s: %s (%s)\n", argv[1], h2t_strerror(rc), h2t_err_detail());
    if (d.index && fclose(d.index) != 0 && rc == 0)
        rc = H2T_EIO;
    if (lf)
        fclose(lf);
    free(layers);
    if (d.acc)
        for (int i = 0; i < h2t_model_n_tensors(m); i++)
            free(d.acc[i]);
    free(d.acc);
    free(d.shape);
    free(d.rank);
    free(d.written);
    free(input);
    h2t_exec_destroy(x);
    h2t_model_destroy(m);
    return rc < 0 ? 1 : 0;
}
