/*
 * extract/gemm.h - the products of the executor's convolutions (not a public contract:
 * extract/ops_conv.c, the benchmarks and the tests include it).
 *
 * A convolution's product (C = A B + beta C, row-major, no transposes: A the M x K weights,
 * B the K x N input columns) runs in one of two libraries, chosen once per process:
 *   openblas  OpenBLAS's cblas_sgemm (linked), on the kernels of the core it chose at load
 *             (OPENBLAS_CORETYPE may force an older one), with its own thread count
 *   dnnl      oneDNN's dnnl_sgemm from libdnnl.so.2 (Debian libdnnl-dev), loaded with dlopen
 *             when present: it picks its kernels by CPUID at run time (no environment
 *             variable), and each calling thread runs it on one thread, so a product's sums
 *             never depend on the thread count
 * The default is dnnl when libdnnl.so.2 loads, else openblas. H2T_GEMM=openblas or
 * H2T_GEMM=dnnl in the environment forces one (dnnl falls back to openblas, with a warning,
 * when the library is absent); H2T_CPU_MAX below avx512 lowers oneDNN's instruction set too
 * (dnnl_set_max_cpu_isa), so a forced AVX2 run is AVX2 on both sides.
 *
 *     float w[2 * 3] = {1, 0, 0, 0, 1, 0}, col[3 * 4] = {0}, y[2 * 4];
 *     h2t_gemm_conv(h2t_gemm_lib(), 2, 4, 3, w, 3, col, 4, 0.f, y, 4); // y = w col
 *
 * Threads: any thread may call h2t_gemm_conv concurrently; the library choice is made once
 * (the first call of h2t_gemm_lib) and h2t_gemm_select changes it only for tests, while no
 * product runs.
 */
#ifndef H2T_EXTRACT_GEMM_H
#define H2T_EXTRACT_GEMM_H

#include <stddef.h>
#include <stdint.h>

enum { H2T_GEMM_OPENBLAS = 0, H2T_GEMM_DNNL = 1 };

/* The library the convolutions use in this process (H2T_GEMM_*). */
int h2t_gemm_lib(void);
/* 1 when libdnnl.so.2 is loaded and usable, else 0 (tries to load it on the first call). */
int h2t_gemm_dnnl_available(void);
/* Tests and benchmarks: make lib the process's choice. Returns 0, or H2T_EUNSUPPORTED (with
 * detail text) when lib is H2T_GEMM_DNNL and libdnnl.so.2 is not available. */
int h2t_gemm_select(int lib);
/* C = A B + beta C on the library lib (H2T_GEMM_*; dnnl when unavailable runs openblas).
 * A is M x K (lda), B is K x N (ldb), C is M x N (ldc), all row-major, BORROWED. */
void h2t_gemm_conv(int lib, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The choice in words for benchmark output, into buf (always NUL-terminated when len > 0),
 * e.g. "convolutions: oneDNN 2.6.3 sgemm (1 thread per call); MatMul and Gemm: OpenBLAS", or
 * the convolution primitive of extract/dnnl_conv.h when it is in use.
 * Returns buf. */
char *h2t_gemm_describe(char *buf, size_t len);

#endif
