/*
 * bench/gemm_lib.c - the forward pass's CPU time per image with the convolutions on OpenBLAS's
 * and oneDNN's sgemm under the executor's im2col (extract/gemm.h), and on oneDNN's convolution
 * primitive (extract/dnnl_conv.h): its direct kernels on one sample per call
 * ("onednn-conv-1"), and as the executor runs it ("onednn-conv": Winograd where it pays,
 * groups of H2T_DCONV_GROUP samples per call where the batch has them), alternating in one
 * process.
 *
 * One thread (OpenBLAS at 1 thread, the executor unsplit), batch B, seeded noise in [-1, 1];
 * one untimed run per configuration, then R rounds, each running all four (the order rotated
 * every round) and timing each run with the thread's CPU clock, which the neighbours' load
 * skews much less than the wall clock. Prints the median and range of CPU ms per image for
 * each. The instruction sets follow the environment: H2T_CPU_MAX caps h2tdb's kernels and
 * oneDNN's, OPENBLAS_CORETYPE OpenBLAS's core (fixed when the library loads).
 *
 *     build/bench/gemm_lib [MODEL] [B] [R]      (defaults: mobilenet_v2 4 7)
 *
 * Model names as bench/bench_model.h resolves them; run from the repository root.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench_model.h"
#include "common/blas.h"
#include "common/err.h"
#include "extract/dnnl_conv.h"
#include "extract/gemm.h"
#include "extract/model.h"

#define MAX_ROUNDS 64

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The four configurations, each with its own executor (the convolution path is chosen when
 * an executor plans): OpenBLAS sgemm under im2col, oneDNN sgemm under im2col, oneDNN's
 * convolution primitive with its direct kernels on one sample per call (an executor of batch
 * 1 fed sample by sample, Winograd off), and the primitive as the executor runs it. */
#define N_CONF 4

static int conf_select(int l)
{
    int rc = h2t_gemm_select(l == 0 ? H2T_GEMM_OPENBLAS : H2T_GEMM_DNNL);
    if (rc == 0 && (rc = h2t_dconv_select(l >= 2)) < 0 && l < 2)
        rc = 0;
    h2t_dconv_winograd(l != 2);
    return rc;
}

/* One batch of B through configuration l (configuration 2: sample by sample). */
static int conf_run(h2t_exec *x, int l, const float *in, int B, size_t per)
{
    if (l != 2)
        return h2t_exec_run(x, in, B, NULL, NULL);
    for (int i = 0; i < B; i++) {
        int rc = h2t_exec_run(x, in + per * (size_t)i, 1, NULL, NULL);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "mobilenet_v2";
    int B = argc > 2 ? atoi(argv[2]) : 4, R = argc > 3 ? atoi(argv[3]) : 7;
    static const char *names[N_CONF] = {"openblas", "onednn", "onednn-conv-1", "onednn-conv"};
    char path[512];
    h2t_model *m = NULL;
    h2t_exec *x[N_CONF] = {NULL};
    float *in = NULL;
    double t[N_CONF][MAX_ROUNDS];
    int rc = 1, nconf = N_CONF;

    if (B < 1 || R < 1 || R > MAX_ROUNDS) {
        fprintf(stderr, "usage: gemm_lib [MODEL] [B >= 1] [1 <= R <= %d]\n", MAX_ROUNDS);
        return 2;
    }
    if (!h2t_gemm_dnnl_available()) {
        fprintf(stderr, "gemm_lib: libdnnl.so.2 is not available (deploy/deps.sh)\n");
        return 1;
    }
    if (conf_select(2) < 0) {
        fprintf(stderr, "gemm_lib: %s: onednn-conv-1 and onednn-conv left out\n", h2t_err_detail());
        nconf = 2;
    }
    h2t_blas_threads(1);
    if (bench_model_path(name, path, sizeof path) < 0 || h2t_model_load(path, &m) < 0)
        goto out;
    for (int l = 0; l < nconf; l++)
        if (conf_select(l) < 0 || h2t_exec_create(m, l == 2 ? 1 : B, &x[l]) < 0)
            goto out;
    const h2t_tensor_info *ti = h2t_model_input(m);
    size_t per = 1;
    for (int i = 1; i < ti->rank; i++)
        per *= (size_t)ti->shape[i];
    in = malloc(per * (size_t)B * sizeof *in);
    if (!in)
        goto out;
    uint32_t seed = 12345;
    for (size_t i = 0; i < per * (size_t)B; i++) {
        seed = seed * 1103515245u + 12345u;
        in[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
    for (int l = 0; l < nconf; l++)
        if (conf_select(l) < 0 || conf_run(x[l], l, in, B, per) < 0)
            goto out;
    for (int r = 0; r < R; r++)
        for (int k = 0; k < nconf; k++) {
            int l = (k + r) % nconf;
            conf_select(l);
            double a = cpu_s();
            if (conf_run(x[l], l, in, B, per) < 0)
                goto out;
            t[l][r] = (cpu_s() - a) / B * 1e3;
        }
    printf("gemm_lib %s batch %d, 1 thread, %d rounds: CPU ms per image, median (min-max)\n", name,
           B, R);
    for (int l = 0; l < nconf; l++) {
        qsort(t[l], (size_t)R, sizeof(double), cmp_double);
        printf("  %-12s %8.2f (%.2f-%.2f)\n", names[l], t[l][R / 2], t[l][0], t[l][R - 1]);
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "gemm_lib: %s\n", h2t_err_detail());
    free(in);
    for (int l = 0; l < N_CONF; l++)
        h2t_exec_destroy(x[l]);
    h2t_model_destroy(m);
    return rc;
}
