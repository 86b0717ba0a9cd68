/*
 * bench/extract_full.c - the whole extraction pass: forward + pooling + store writes.
 *
 * Runs extract/extract.h's pass (h2t_extract_plan_create + h2t_extract_plan_run) over the
 * first --limit samples of Fashion-MNIST (Debian dataset-fashion-mnist) into a fresh store in
 * a temporary folder, with the model's default layer rule (every selected tensor pooled to
 * --target features and written), and prints images/s of the whole pass and the share of time
 * spent outside the forward pass (read + preprocess, pooling, store), from the pass's own
 * timers (h2t_extract_result t_total, t_forward, t_read, t_pool, t_write), then the same split
 * in process CPU milliseconds per image (cpu_forward, cpu_pool, cpu_read, cpu_write, and the
 * rest: setup, thread starts), which a busy machine does not skew. The forward-only peer
 * comparison is bench/extract.c.
 *
 *     build/bench/extract_full [--model mobilenet_v2] [--limit 320] [--batch 32]
 *                              [--threads 2] [--target 512] [--data SPEC]
 *
 * Run from the repository root (make bench does); models/NAME.onnx comes from
 * deploy/fetch_model.sh --all, run first (idempotent).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/extract.h"
#include "storage/store.h"

int main(int argc, char **argv)
{
    const char *model = "mobilenet_v2";
    const char *data = "idx:/usr/share/datasets/fashion-mnist";
    char path[512], dir[] = "/tmp/h2t-bench-extract-XXXXXX", cmd[600];
    h2t_extract_opts o;
    h2t_extract_plan *plan = NULL;
    h2t_extract_result res;
    h2t_store *st = NULL;
    int rc = 0, made = 0;
    uint32_t n_layers = 0;
    uint64_t total_dim = 0;

    h2t_extract_opts_init(&o);
    o.limit = 320;
    o.batch = 32;
    o.threads = 2;
    o.progress = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: extract_full [--model NAME] [--limit N] [--batch B] "
                            "[--threads T] [--target T] [--data SPEC]\n");
            return 2;
        }
        if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--limit") == 0)
            o.limit = (uint32_t)atol(v);
        else if (strcmp(a, "--batch") == 0)
            o.batch = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o.threads = atoi(v);
        else if (strcmp(a, "--target") == 0)
            o.target_size = (uint32_t)atol(v);
        else if (strcmp(a, "--data") == 0)
            data = v;
        else {
            fprintf(stderr, "extract_full: unknown option %s\n", a);
            return 2;
        }
    }
    if (system("./deploy/fetch_model.sh --all >/dev/null") != 0) {
        fprintf(stderr, "extract_full: deploy/fetch_model.sh --all failed (run from the "
                        "repository root)\n");
        return 1;
    }
    snprintf(path, sizeof path, "models/%s.onnx", model);
    o.model_path = path;
    o.data_spec = data;
    if (!mkdtemp(dir)) {
        rc = h2t_err_set(H2T_EIO, "mkdtemp %s", dir);
        goto out;
    }
    made = 1;
    if ((rc = h2t_extract_plan_create(&o, &plan)) < 0)
        goto out;
    h2t_extract_plan_layers(plan, &n_layers, &total_dim);
    if ((rc = h2t_store_open(dir, H2T_STORE_CREATE, &st)) < 0)
        goto out;
    if ((rc = h2t_extract_plan_run(plan, st, &res)) < 0)
        goto out;
    {
        double outside = res.t_total - res.t_forward;
        double n = res.computed ? res.computed : 1;
        double other =
            res.cpu_total - res.cpu_forward - res.cpu_pool - res.cpu_read - res.cpu_write;
        printf("extract full    %-13s %u samples of %s, batch %d, %d threads, %u layers, "
               "%llu features/sample: %.1f img/s; forward %.1f%%, outside the forward pass "
               "%.1f%% (read+preprocess %.1f%%, pooling %.1f%%, store %.1f%%)\n",
               model, res.computed, data, o.batch, o.threads, n_layers,
               (unsigned long long)total_dim, res.computed / res.t_total,
               100 * res.t_forward / res.t_total, 100 * outside / res.t_total,
               100 * res.t_read / res.t_total, 100 * res.t_pool / res.t_total,
               100 * res.t_write / res.t_total);
        /* the CPU split, which a busy machine does not skew */
        printf("extract full    %-13s CPU ms/image: forward %.2f, outside %.3f (pooling %.3f, "
               "read+preprocess %.3f, store %.3f, other %.3f); outside the forward pass %.1f%% "
               "of the CPU\n",
               model, 1e3 * res.cpu_forward / n, 1e3 * (res.cpu_total - res.cpu_forward) / n,
               1e3 * res.cpu_pool / n, 1e3 * res.cpu_read / n, 1e3 * res.cpu_write / n,
               1e3 * other / n,
               res.cpu_total > 0 ? 100 * (res.cpu_total - res.cpu_forward) / res.cpu_total : 0);
    }
out:
    if (rc < 0)
        fprintf(stderr, "extract_full: %s: %s (%s)\n", model, h2t_strerror(rc), h2t_err_detail());
    h2t_store_close(st);
    h2t_extract_plan_destroy(plan);
    if (made) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "extract_full: could not remove %s\n", dir);
    }
    return rc < 0 ? 1 : 0;
}
