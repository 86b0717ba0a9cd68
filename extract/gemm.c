/*
 * extract/gemm.c - the convolutions' products on OpenBLAS or on oneDNN loaded at run time
 * (contract: extract/gemm.h).
 *
 * oneDNN is not linked: libdnnl.so.2 is opened with dlopen on first use, so a machine without
 * it runs the OpenBLAS path unchanged. Debian builds oneDNN on OpenMP (libgomp); each thread
 * that calls dnnl_sgemm first sets its own OpenMP thread count to 1 (omp_set_num_threads acts
 * on the calling thread's settings), so oneDNN never splits a product's K over threads and the
 * executor's own threads (one sample or tile each) stay the only parallelism.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/err.h"
#include "common/log.h"
#include "extract/dnnl_conv.h"
#include "extract/gemm.h"

typedef int (*dnnl_sgemm_fn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t,
                             const float *, int64_t, float, float *, int64_t);
typedef struct {
    int major, minor, patch;
    const char *hash;
    unsigned cpu_runtime, gpu_runtime;
} dnnl_version_s;

/* dnnl_cpu_isa_t values of oneDNN 2.x (dnnl_types.h) */
enum { DNNL_ISA_SSE41 = 0x1, DNNL_ISA_AVX = 0x3, DNNL_ISA_AVX2 = 0x7 };

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static dnnl_sgemm_fn g_sgemm;
static void (*g_omp_threads)(int);
static char g_version[32];
static int g_lib = -1; /* H2T_GEMM_*, once chosen */
static _Thread_local int t_one_thread;

static void gemm_load(void)
{
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    dnnl_sgemm_fn sg = (dnnl_sgemm_fn)dlsym(h, "dnnl_sgemm");
    void (*omp)(int) = (void (*)(int))dlsym(h, "omp_set_num_threads");
    const dnnl_version_s *(*ver)(void) = (const dnnl_version_s *(*)(void))dlsym(h, "dnnl_version");
    int (*max_isa)(int) = (int (*)(int))dlsym(h, "dnnl_set_max_cpu_isa");
    if (!sg || !omp || !ver || !max_isa) {
        /* an unexpected build (no OpenMP runtime, another ABI): not used */
        dlclose(h);
        return;
    }
    /* the same ceiling as the executor's own kernels (H2T_CPU_MAX), set before oneDNN
     * generates any code */
    if (!h2t_cpu_has(H2T_CPU_AVX512F)) {
        int isa = h2t_cpu_has(H2T_CPU_AVX2 | H2T_CPU_FMA) ? DNNL_ISA_AVX2
                  : h2t_cpu_has(H2T_CPU_AVX)              ? DNNL_ISA_AVX
                                                          : DNNL_ISA_SSE41;
        if (max_isa(isa) != 0) {
            dlclose(h);
            return;
        }
    }
    const dnnl_version_s *v = ver();
    snprintf(g_version, sizeof g_version, "%d.%d.%d", v->major, v->minor, v->patch);
    g_omp_threads = omp;
    g_sgemm = sg;
}

int h2t_gemm_dnnl_available(void)
{
    pthread_once(&g_once, gemm_load);
    return g_sgemm != NULL;
}

int h2t_gemm_lib(void)
{
    int lib = __atomic_load_n(&g_lib, __ATOMIC_ACQUIRE);
    if (lib >= 0)
        return lib;
    const char *e = getenv("H2T_GEMM");
    int have = h2t_gemm_dnnl_available();
    lib = have ? H2T_GEMM_DNNL : H2T_GEMM_OPENBLAS;
    if (e && *e) {
        if (!strcmp(e, "openblas"))
            lib = H2T_GEMM_OPENBLAS;
        else if (!strcmp(e, "dnnl") && !have)
            H2T_LOG_WARN("gemm", "H2T_GEMM=dnnl but libdnnl.so.2 is not available: OpenBLAS");
        else if (strcmp(e, "dnnl") != 0)
            H2T_LOG_WARN("gemm", "H2T_GEMM=%s is not one of openblas, dnnl: ignored", e);
    }
    __atomic_store_n(&g_lib, lib, __ATOMIC_RELEASE);
    return lib;
}

int h2t_gemm_select(int lib)
{
    if (lib == H2T_GEMM_DNNL && !h2t_gemm_dnnl_available())
        return h2t_err_set(H2T_EUNSUPPORTED, "gemm: libdnnl.so.2 is not available");
    if (lib != H2T_GEMM_DNNL && lib != H2T_GEMM_OPENBLAS)
        return h2t_err_set(H2T_EINVAL, "gemm: unknown library %d", lib);
    __atomic_store_n(&g_lib, lib, __ATOMIC_RELEASE);
    return 0;
}

void h2t_gemm_conv(int lib, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (lib == H2T_GEMM_DNNL && h2t_gemm_dnnl_available()) {
        if (!t_one_thread) {
            g_omp_threads(1);
            t_one_thread = 1;
        }
        if (g_sgemm('N', 'N', M, N, K, 1.f, A, lda, B, ldb, beta, C, ldc) == 0)
            return;
        /* oneDNN refused the call (it checks its arguments and nothing was written):
         * OpenBLAS computes it instead */
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.f, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

char *h2t_gemm_describe(char *buf, size_t len)
{
    if (len == 0)
        return buf;
    if (h2t_gemm_lib() == H2T_GEMM_DNNL && h2t_dconv_available())
        snprintf(buf, len,
                 "convolutions: oneDNN %s convolution primitive (libdnnl.so.2, nChw%dc blocked "
                 "between its convolutions, bias / residual / activation fused, Winograd for "
                 "3x3 stride 1 where it pays%s, 1 thread per call of 1 or %d samples) where a "
                 "chain's intermediates are not observed, else oneDNN sgemm; "
                 "MatMul and Gemm: OpenBLAS sgemm",
                 g_version, h2t_dconv_block(),
                 h2t_dconv_winograd(-1) ? "" : " (off: H2T_CONV=direct)", H2T_DCONV_GROUP);
    else if (h2t_gemm_lib() == H2T_GEMM_DNNL)
        snprintf(buf, len,
                 "convolutions: oneDNN %s sgemm (libdnnl.so.2, 1 thread per call); MatMul and "
                 "Gemm: OpenBLAS sgemm",
                 g_version);
    else
        snprintf(buf, len, "convolutions, MatMul and Gemm: OpenBLAS sgemm%s",
                 h2t_gemm_dnnl_available() ? " (H2T_GEMM=openblas)" : " (no libdnnl.so.2)");
    return buf;
}
