/*
 * bench/setup.c - the set-up of every `h2tdb extract` run, before any image is computed: the
 * SHA-256 of the model file and of the whole data source (Fashion-MNIST: four gzipped IDX
 * files, about 30 MB inflated to 55 MB), then the model load and the layer plan.
 *
 *     build/bench/setup [--reps 5] [--model models/mobilenet_v2.onnx]
 *                       [--data idx:/usr/share/datasets/fashion-mnist]
 *
 * Prints, each a median over --reps runs (wall clock; the machine may be shared):
 *   sha256   MB/s of the portable C compression and of the SHA-NI one (when the CPU has it)
 *            on 64 MiB in memory, their ratio; h2t_sha256_file on the model against the
 *            coreutils peer `sha256sum MODEL` (one process, its start included);
 *   data     h2t_data_open(SPEC) (read, gunzip, hash, check) against the shell peer
 *            `gzip -dc FILES | sha256sum` for an idx: source (the same bytes inflated and
 *            hashed by two processes, on two cores when there are two);
 *   plan     h2t_extract_plan_create (model read + hash + load, data open, layer plan), which
 *            is what a run costs before its first image when the extraction is already done.
 * Run from the repository root; models/ comes from deploy/fetch_model.sh. A missing model or
 * data set skips its part.
 */
#include "common/err.h"
#include "common/util.h"
#include "extract/extract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Wall seconds of a shell command; < 0 when it fails. */
static double time_cmd(const char *cmd)
{
    double t = h2t_now_s();
    int st = system(cmd);
    t = h2t_now_s() - t;
    return st == 0 ? t : -1;
}

static void bench_sha(int reps, const char *model)
{
    size_t n = (size_t)64 << 20;
    uint8_t *buf = malloc(n);
    if (!buf) {
        fprintf(stderr, "setup: out of memory\n");
        return;
    }
    uint64_t r = 1;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = h2t_rng_next(&r);
        memcpy(buf + i, &v, 8);
    }
    int best = h2t_sha256_isa_best();
    double mbs[2] = {0, 0};
    for (int isa = 0; isa <= best; isa++) {
        double t[64];
        for (int k = 0; k < reps; k++) {
            h2t_sha256 s;
            uint8_t d[32];
            double t0 = h2t_now_s();
            h2t_sha256_init(&s);
            h2t_sha256_update_isa(&s, buf, n, isa);
            h2t_sha256_final_isa(&s, d, isa);
            t[k] = h2t_now_s() - t0;
        }
        mbs[isa] = (double)n / median(t, reps) / 1e6;
        printf("sha256 %-7s %8.0f MB/s (64 MiB in memory, median of %d)\n",
               h2t_sha256_isa_name(isa), mbs[isa], reps);
    }
    if (best == H2T_SHA256_ISA_SHANI)
        printf("sha256 sha-ni / c: %.2fx\n", mbs[1] / mbs[0]);
    else
        printf("sha256: this CPU has no SHA extensions; the C code only\n");
    free(buf);

    if (access(model, R_OK) != 0) {
        printf("sha256 file: %s missing, skipped (deploy/fetch_model.sh)\n", model);
        return;
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sha256sum '%s' >/dev/null", model);
    double a[64], b[64];
    int peer_ok = 1;
    for (int k = 0; k < reps; k++) { /* alternate ours and the peer */
        uint8_t d[32];
        double t0 = h2t_now_s();
        if (h2t_sha256_file(model, d) < 0) {
            fprintf(stderr, "setup: %s\n", h2t_err_detail());
            return;
        }
        a[k] = h2t_now_s() - t0;
        b[k] = time_cmd(cmd);
        peer_ok &= b[k] >= 0;
    }
    double ma = median(a, reps) * 1e3;
    if (peer_ok) {
        double mb = median(b, reps) * 1e3;
        printf("sha256 file %s: h2t_sha256_file %.1f ms, `sha256sum` %.1f ms: %.2fx\n", model, ma,
               mb, mb / ma);
    } else {
        printf("sha256 file %s: h2t_sha256_file %.1f ms (sha256sum failed)\n", model, ma);
    }
}

/* "gzip -dc DIR/a DIR/b ... | sha256sum" over the idx files of DIR that exist, train first. */
static int idx_peer_cmd(const char *dir, char *cmd, size_t n)
{
    static const char *const f[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    size_t at = (size_t)snprintf(cmd, n, "gzip -dcf");
    int found = 0;
    for (int i = 0; i < 4; i++)
        for (int gz = 1; gz >= 0; gz--) {
            char p[1100];
            snprintf(p, sizeof p, "%s/%s%s", dir, f[i], gz ? ".gz" : "");
            if (access(p, R_OK) == 0 && at < n) {
                at += (size_t)snprintf(cmd + at, n - at, " '%s'", p);
                found++;
                break;
            }
        }
    if (at < n)
        snprintf(cmd + at, n - at, " | sha256sum >/dev/null");
    return found && at < n;
}

static void bench_data(int reps, const char *spec)
{
    double a[64], b[64];
    char cmd[4096];
    int peer = !strncmp(spec, "idx:", 4) && idx_peer_cmd(spec + 4, cmd, sizeof cmd);
    int peer_ok = peer;
    uint32_t n = 0;
    for (int k = 0; k < reps; k++) {
        h2t_data *d = NULL;
        double t0 = h2t_now_s();
        if (h2t_data_open(spec, &d) < 0) {
            printf("data %s: %s, skipped\n", spec, h2t_err_detail());
            return;
        }
        a[k] = h2t_now_s() - t0;
        n = h2t_data_info_get(d)->n_samples;
        h2t_data_close(d);
        if (peer) {
            b[k] = time_cmd(cmd);
            peer_ok &= b[k] >= 0;
        }
    }
    double ma = median(a, reps) * 1e3;
    printf("data %s (%u samples): h2t_data_open %.1f ms", spec, n, ma);
    if (peer_ok) {
        double mb = median(b, reps) * 1e3;
        printf(", `gzip -dc ... | sha256sum` %.1f ms: %.2fx\n", mb, mb / ma);
    } else {
        printf("\n");
    }
}

static void bench_plan(int reps, const char *model, const char *spec)
{
    if (access(model, R_OK) != 0) {
        printf("plan: %s missing, skipped\n", model);
        return;
    }
    double t[64], tm[64];
    for (int k = 0; k < reps; k++) {
        h2t_model *m = NULL;
        uint8_t d[32];
        double t0 = h2t_now_s();
        if (h2t_sha256_file(model, d) < 0 || h2t_model_load(model, &m) < 0) {
            printf("plan: %s, skipped\n", h2t_err_detail());
            return;
        }
        tm[k] = h2t_now_s() - t0;
        h2t_model_destroy(m);
        h2t_extract_opts o;
        h2t_extract_opts_init(&o);
        o.model_path = model;
        o.data_spec = spec;
        o.limit = 256;
        o.progress = 0;
        h2t_extract_plan *p = NULL;
        t0 = h2t_now_s();
        if (h2t_extract_plan_create(&o, &p) < 0) {
            printf("plan: %s, skipped\n", h2t_err_detail());
            return;
        }
        t[k] = h2t_now_s() - t0;
        h2t_extract_plan_destroy(p);
    }
    printf("plan %s + %s: h2t_extract_plan_create %.1f ms (of which a model hash + load "
           "alone: %.1f ms), median of %d\n",
           model, spec, median(t, reps) * 1e3, median(tm, reps) * 1e3, reps);
}

int main(int argc, char **argv)
{
    int reps = 5;
    const char *model = "models/mobilenet_v2.onnx";
    const char *spec = "idx:/usr/share/datasets/fashion-mnist";
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: setup [--reps N] [--model PATH] [--data SPEC]\n");
            return 2;
        }
        if (!strcmp(a, "--reps"))
            reps = atoi(v);
        else if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--data"))
            spec = v;
        else {
            fprintf(stderr, "setup: unknown option %s\n", a);
            return 2;
        }
    }
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "setup: --reps 1..64\n");
        return 2;
    }
    printf("== setup: %d reps, wall clock medians (the machine may be shared)\n", reps);
    bench_sha(reps, model);
    bench_data(reps, spec);
    bench_plan(reps, model, spec);
    return 0;
}
