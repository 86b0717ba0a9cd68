/*
 * common/cpu.h - which instruction-set extensions this process may use: one probe for every
 * module that has kernels for more than the x86-64 baseline (pooling, the depthwise and
 * epilogue kernels, SHA-256, the store's f16 conversion).
 *
 * A feature counts only when the CPU has it and the operating system saves the registers it
 * uses (XGETBV: the YMM state for AVX, AVX2, FMA and F16C; the opmask and ZMM state as well
 * for AVX-512). The answer is computed once per process and cached; any thread may ask.
 *
 * H2T_CPU_MAX in the environment lowers the answer, so that tests and benchmarks can run the
 * lower kernel sets on a machine that has the higher ones:
 *   sse2    the x86-64 baseline only
 *   sse4    + SSSE3, SSE4.1, SHA
 *   avx     + AVX, F16C
 *   avx2    + AVX2, FMA
 *   avx512  + AVX-512F (no limit)
 * It is read on the first call; an unknown value is ignored with a warning on stderr. It never
 * raises the answer above what the CPU and OS support.
 *
 *     if (h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_FMA))
 *         printf("AVX+FMA kernels\n");
 *     char names[128];
 *     h2t_cpu_describe(names, sizeof names); // "sse2 ssse3 sse4.1 avx ..."
 *
 * On other architectures every H2T_CPU_* feature is absent and the portable C kernels run.
 */
#ifndef H2T_COMMON_CPU_H
#define H2T_COMMON_CPU_H

#include <stddef.h>

enum {
    H2T_CPU_SSE2 = 1u << 0,
    H2T_CPU_SSSE3 = 1u << 1,
    H2T_CPU_SSE41 = 1u << 2,
    H2T_CPU_SHA = 1u << 3, /* SHA-256 extensions (SHA-NI) */
    H2T_CPU_AVX = 1u << 4,
    H2T_CPU_F16C = 1u << 5,
    H2T_CPU_AVX2 = 1u << 6,
    H2T_CPU_FMA = 1u << 7,
    H2T_CPU_AVX512F = 1u << 8,
};

/* 1 when every feature in mask (H2T_CPU_* or'ed) may be used, else 0. mask 0 gives 1. */
int h2t_cpu_has(unsigned mask);
/* Every usable feature (H2T_CPU_* or'ed): the CPU's, the OS's and H2T_CPU_MAX's answer. */
unsigned h2t_cpu_features(void);
/* The usable features' names, space-separated, into buf (always NUL-terminated when
 * len > 0; truncated when buf is short). Returns buf. */
char *h2t_cpu_describe(char *buf, size_t len);
/* Compute the answer again from the CPU and the current H2T_CPU_MAX, for tests that set the
 * variable after the first call. Not to be called while other threads use the answer. */
void h2t_cpu_reset(void);

#endif
