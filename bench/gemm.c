/*
 * bench/gemm.c - single-precision GEMM throughput on the executor's own shapes, for each BLAS
 * library that could serve them, in the same run.
 *
 * Shapes (row-major C[M x N] = A[M x K] . B[K x N], no transposes, as the executor calls
 * cblas_sgemm): MobileNetV2's 1x1 convolutions at batch 1 (M = C_out, N = H * W, K = C_in),
 * ResNet-50's convolutions through im2col (K = C_in * kh * kw), and ViT-B/16's QKV and MLP
 * products ((B * 197) x 768 x 2304 and (B * 197) x 768 x 3072, B = --vit-batch).
 *
 * Libraries, each in its own child process (the OpenBLAS core is chosen when the library
 * loads, so an environment variable can only be compared across processes):
 *   openblas        OpenBLAS with the environment as it is
 *   openblas-own    OpenBLAS with OPENBLAS_CORETYPE removed (its own CPUID core detection)
 *   openblas-hsw    OpenBLAS with OPENBLAS_CORETYPE=Haswell (the AVX2 kernels)
 *   blis            BLIS (Debian libblis-dev, libblis.so.4 through dlopen: bli_sgemm)
 *   dnnl            oneDNN (Debian libdnnl-dev, libdnnl.so.2 through dlopen: dnnl_sgemm)
 * A library that does not load is reported as absent; the main build links neither BLIS nor
 * oneDNN (deploy/deps.sh --bench installs them). Each child warms every shape up with one
 * product, checks 16 entries of C against a double-precision dot product (relative error
 * 1e-3: a wrong call fails loudly, not fast), then times single products for 0.1 s (at least
 * 3) and keeps the fastest. Rounds alternate the libraries (round r runs them in a rotated
 * order) so that all see the same machine load; the figure is the median over the rounds of
 * each round's fastest product, in GFLOP/s, with the range.
 *
 *     build/bench/gemm [--threads T] [--rounds R] [--vit-batch B] [--libs a,b]
 *
 * Defaults: 2 threads, 3 rounds, ViT batch 8, all five libraries. Threads: OpenBLAS through
 * common/blas.h, BLIS through bli_thread_set_num_threads, oneDNN (OpenMP) through
 * OMP_NUM_THREADS in the child's environment.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "bench/bench_model.h"
#include "common/blas.h"

typedef struct shape {
    const char *name;
    int64_t m, n, k;
} shape;

static shape g_shapes[] = {
    {"mnv2 1x1 112^2 16<-32", 16, 12544, 32},  {"mnv2 1x1 112^2 96<-16", 96, 12544, 16},
    {"mnv2 1x1 56^2 144<-24", 144, 3136, 24},  {"mnv2 1x1 56^2 24<-144", 24, 3136, 144},
    {"mnv2 1x1 28^2 192<-32", 192, 784, 32},   {"mnv2 1x1 14^2 384<-64", 384, 196, 64},
    {"mnv2 1x1 14^2 96<-576", 96, 196, 576},   {"mnv2 1x1 7^2 960<-160", 960, 49, 160},
    {"mnv2 1x1 7^2 1280<-320", 1280, 49, 320}, {"r50 conv1 7x7/2", 64, 12544, 147},
    {"r50 3x3 56^2 64", 64, 3136, 576},        {"r50 3x3 28^2 128", 128, 784, 1152},
    {"r50 3x3 14^2 256", 256, 196, 2304},      {"r50 3x3 7^2 512", 512, 49, 4608},
    {"r50 1x1 56^2 256<-64", 256, 3136, 64},   {"r50 1x1 14^2 1024<-256", 1024, 196, 256},
    {"vit qkv Bx197 768x2304", 0, 2304, 768},  {"vit mlp Bx197 768x3072", 0, 3072, 768},
};
#define N_SHAPES ((int)(sizeof g_shapes / sizeof *g_shapes))

static const char *g_all_libs[] = {"openblas", "openblas-own", "openblas-hsw", "blis", "dnnl"};
#define N_LIBS 5

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One library's entry point, row-major, no transposes: C = A . B. */
typedef void (*gemm_fn)(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c);

static void gemm_openblas(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.f, a, (int)k,
                b, (int)n, 0.f, c, (int)n);
}

/* BLIS's typed API (blis.h, 64-bit dim_t and inc_t; trans_t 0 is BLIS_NO_TRANSPOSE): strides
 * given per dimension, so row-major is rs = row length, cs = 1. */
typedef void (*bli_sgemm_t)(int, int, int64_t, int64_t, int64_t, float *, float *, int64_t, int64_t,
                            float *, int64_t, int64_t, float *, float *, int64_t, int64_t);
static bli_sgemm_t g_bli_sgemm;
static void gemm_blis(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c)
{
    float one = 1.f, zero = 0.f;
    g_bli_sgemm(0, 0, m, n, k, &one, (float *)a, k, 1, (float *)b, n, 1, &zero, c, n, 1);
}

/* oneDNN's dnnl_sgemm (dnnl.h): row-major, returns dnnl_success (0). */
typedef int (*dnnl_sgemm_t)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t,
                            const float *, int64_t, float, float *, int64_t);
static dnnl_sgemm_t g_dnnl_sgemm;
static void gemm_dnnl(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c)
{
    if (g_dnnl_sgemm('N', 'N', m, n, k, 1.f, a, k, b, n, 0.f, c, n) != 0) {
        fprintf(stderr, "gemm: dnnl_sgemm %lld x %lld x %lld failed\n", (long long)m, (long long)n,
                (long long)k);
        exit(1);
    }
}

/* The child: loads lib, prints "core <what>" then one "shape <i> <gflops>" line per shape. */
static int child(const char *lib, int threads, int vit_batch)
{
    gemm_fn fn = gemm_openblas;
    char what[512];

    h2t_blas_threads(threads);
    h2t_blas_describe(what, sizeof what);
    if (strcmp(lib, "blis") == 0) {
        void *h = dlopen("libblis.so.4", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        void (*set_threads)(int64_t) =
            h ? (void (*)(int64_t))dlsym(h, "bli_thread_set_num_threads") : NULL;
        const char *(*ver)(void) =
            h ? (const char *(*)(void))dlsym(h, "bli_info_get_version_str") : NULL;
        g_bli_sgemm = h ? (bli_sgemm_t)dlsym(h, "bli_sgemm") : NULL;
        if (!g_bli_sgemm || !set_threads) {
            printf("absent libblis.so.4 (%s)\n", dlerror());
            return 0;
        }
        set_threads(threads);
        snprintf(what, sizeof what, "BLIS %s", ver ? ver() : "?");
        fn = gemm_blis;
    } else if (strcmp(lib, "dnnl") == 0) {
        void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        const int *(*ver)(void) = h ? (const int *(*)(void))dlsym(h, "dnnl_version") : NULL;
        g_dnnl_sgemm = h ? (dnnl_sgemm_t)dlsym(h, "dnnl_sgemm") : NULL;
        if (!g_dnnl_sgemm) {
            printf("absent libdnnl.so.2 (%s)\n", dlerror());
            return 0;
        }
        if (ver) {
            const int *v = ver();
            snprintf(what, sizeof what, "oneDNN %d.%d.%d", v[0], v[1], v[2]);
        }
        fn = gemm_dnnl;
    }
    printf("core %s\n", what);
    fflush(stdout);
    for (int s = 0; s < N_SHAPES; s++) {
        int64_t m = g_shapes[s].m ? g_shapes[s].m : 197 * (int64_t)vit_batch;
        int64_t n = g_shapes[s].n, k = g_shapes[s].k;
        float *a = malloc(sizeof(float) * (size_t)(m * k));
        float *b = malloc(sizeof(float) * (size_t)(k * n));
        float *c = malloc(sizeof(float) * (size_t)(m * n));
        unsigned seed = 12345;
        if (!a || !b || !c) {
            fprintf(stderr, "gemm: out of memory at %s\n", g_shapes[s].name);
            return 1;
        }
        for (int64_t i = 0; i < m * k; i++)
            a[i] = (float)((seed = seed * 1103515245u + 12345u) >> 8) / 16777216.f - .5f;
        for (int64_t i = 0; i < k * n; i++)
            b[i] = (float)((seed = seed * 1103515245u + 12345u) >> 8) / 16777216.f - .5f;
        fn(m, n, k, a, b, c); /* warm-up: pages, packing buffers, thread start */
        for (int t = 0; t < 16; t++) {
            int64_t i = (int64_t)((seed = seed * 1103515245u + 12345u) >> 8) % m;
            int64_t j = (int64_t)((seed = seed * 1103515245u + 12345u) >> 8) % n;
            double ref = 0, mag = 0;
            for (int64_t q = 0; q < k; q++) {
                ref += (double)a[i * k + q] * b[q * n + j];
                mag += ((double)a[i * k + q] < 0 ? -a[i * k + q] : a[i * k + q]) *
                       (b[q * n + j] < 0 ? -b[q * n + j] : b[q * n + j]);
            }
            double err = (double)c[i * n + j] - ref;
            if ((err < 0 ? -err : err) > 1e-3 * mag + 1e-6) {
                fprintf(stderr, "gemm: %s %s: C[%lld][%lld] = %g, expected %g\n", lib,
                        g_shapes[s].name, (long long)i, (long long)j, c[i * n + j], ref);
                return 1;
            }
        }
        /* the fastest of the products in a 0.1 s window (at least 3): on a shared machine a
         * product that ran undisturbed shows the library, an average shows the neighbours */
        int reps = 0;
        double t0 = now_s(), best = 1e30;
        do {
            double t1 = now_s();
            fn(m, n, k, a, b, c);
            double dt = now_s() - t1;
            best = dt < best ? dt : best;
            reps++;
        } while (reps < 3 || now_s() - t0 < 0.1);
        printf("shape %d %.2f\n", s, 2.0 * (double)m * (double)n * (double)k / best / 1e9);
        fflush(stdout);
        free(a);
        free(b);
        free(c);
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int threads = 2, rounds = 3, vit_batch = 8, n_libs = 0;
    const char *libs[N_LIBS], *child_lib = NULL;
    char libs_arg[256] = "openblas,openblas-own,openblas-hsw,blis,dnnl", *save = NULL;
    char cpu[256], self[4096];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: gemm [--threads T] [--rounds R] [--vit-batch B] "
                            "[--libs a,b]\n");
            return 2;
        }
        i++;
        if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(a, "--rounds") == 0)
            rounds = atoi(v);
        else if (strcmp(a, "--vit-batch") == 0)
            vit_batch = atoi(v);
        else if (strcmp(a, "--libs") == 0)
            snprintf(libs_arg, sizeof libs_arg, "%s", v);
        else if (strcmp(a, "--child") == 0)
            child_lib = v;
        else {
            fprintf(stderr, "gemm: unknown option %s\n", a);
            return 2;
        }
    }
    if (threads < 1 || rounds < 1 || vit_batch < 1) {
        fprintf(stderr, "gemm: --threads, --rounds and --vit-batch must be >= 1\n");
        return 2;
    }
    if (child_lib)
        return child(child_lib, threads, vit_batch);
    for (char *l = strtok_r(libs_arg, ",", &save); l; l = strtok_r(NULL, ",", &save)) {
        int known = 0;
        for (int j = 0; j < N_LIBS; j++)
            if (strcmp(l, g_all_libs[j]) == 0 && n_libs < N_LIBS)
                libs[n_libs++] = g_all_libs[j], known = 1;
        if (!known) {
            fprintf(stderr,
                    "gemm: unknown library %s (openblas, openblas-own, openblas-hsw, "
                    "blis, dnnl)\n",
                    l);
            return 2;
        }
    }
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "gemm: cannot find its own executable\n");
        return 1;
    }
    self[sl] = 0;
    bench_cpu_model(cpu, sizeof cpu);
    printf("cpu: %s; load average %.2f at the start; %d threads, %d rounds, ViT batch %d\n", cpu,
           bench_loadavg(), threads, rounds, vit_batch);

    double *g = calloc((size_t)(N_LIBS * N_SHAPES * rounds), sizeof(double));
    int absent[N_LIBS] = {0};
    char core[N_LIBS][512] = {{0}};
    if (!g)
        return 1;
    for (int r = 0; r < rounds; r++) {
        for (int q = 0; q < n_libs; q++) {
            int li = (q + r) % n_libs;
            const char *env = strcmp(libs[li], "openblas-own") == 0 ? "env -u OPENBLAS_CORETYPE"
                              : strcmp(libs[li], "openblas-hsw") == 0
                                  ? "env OPENBLAS_CORETYPE=Haswell"
                                  : "env";
            char cmd[8192], line[1024];
            snprintf(cmd, sizeof cmd,
                     "%s OMP_NUM_THREADS=%d BLIS_NUM_THREADS=%d '%s' --child %s --threads %d "
                     "--vit-batch %d",
                     env, threads, threads, self, libs[li], threads, vit_batch);
            FILE *p = popen(cmd, "r");
            if (!p) {
                fprintf(stderr, "gemm: cannot start %s\n", cmd);
                return 1;
            }
            while (fgets(line, sizeof line, p)) {
                int s;
                double v;
                line[strcspn(line, "\n")] = 0;
                if (strncmp(line, "absent ", 7) == 0) {
                    absent[li] = 1;
                    snprintf(core[li], sizeof core[li], "%s", line + 7);
                } else if (strncmp(line, "core ", 5) == 0)
                    snprintf(core[li], sizeof core[li], "%s", line + 5);
                else if (sscanf(line, "shape %d %lf", &s, &v) == 2 && s >= 0 && s < N_SHAPES)
                    g[((size_t)li * N_SHAPES + (size_t)s) * (size_t)rounds + (size_t)r] = v;
            }
            if (pclose(p) != 0) {
                fprintf(stderr, "gemm: %s failed\n", cmd);
                return 1;
            }
        }
    }
    for (int li = 0; li < n_libs; li++)
        printf("%-13s %s%s\n", libs[li], absent[li] ? "absent: " : "", core[li]);
    printf("GFLOP/s of the fastest product, median over %d rounds (min-max):\n%-24s %18s", rounds,
           "shape", "M x N x K");
    for (int li = 0; li < n_libs; li++)
        if (!absent[li])
            printf(" %20s", libs[li]);
    printf("\n");
    for (int s = 0; s < N_SHAPES; s++) {
        char dims[64];
        int64_t m = g_shapes[s].m ? g_shapes[s].m : 197 * (int64_t)vit_batch;
        snprintf(dims, sizeof dims, "%lldx%lldx%lld", (long long)m, (long long)g_shapes[s].n,
                 (long long)g_shapes[s].k);
        printf("%-24s %18s", g_shapes[s].name, dims);
        for (int li = 0; li < n_libs; li++) {
            if (absent[li])
                continue;
            double *v = g + ((size_t)li * N_SHAPES + (size_t)s) * (size_t)rounds;
            qsort(v, (size_t)rounds, sizeof *v, cmp_d);
            double med = rounds % 2 ? v[rounds / 2] : (v[rounds / 2 - 1] + v[rounds / 2]) / 2;
            char cell[64];
            snprintf(cell, sizeof cell, "%.1f (%.0f-%.0f)", med, v[0], v[rounds - 1]);
            printf(" %20s", cell);
        }
        printf("\n");
    }
    printf("load average %.2f at the end\n", bench_loadavg());
    free(g);
    return 0;
}
