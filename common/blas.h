/*
 * common/blas.h - the one owner of OpenBLAS's thread count. OpenBLAS keeps a single
 * process-wide count; every part of h2tdb that changes it (the extraction driver, the
 * executor's batch split, the solver, the benchmarks) does so through these two functions,
 * and no other file calls openblas_set_num_threads.
 *
 *     int before = h2t_blas_threads_get();
 *     h2t_blas_threads(1); // one BLAS thread inside each sample of a split run
 *     // ... the products ...
 *     h2t_blas_threads(before); // restored
 *
 * Threads: the count is process-wide; every thread's next BLAS call sees a change.
 */
#ifndef H2T_COMMON_BLAS_H
#define H2T_COMMON_BLAS_H

#include <stddef.h>

/* Set OpenBLAS's thread count to n; n <= 0 leaves it as it is. */
void h2t_blas_threads(int n);
/* OpenBLAS's thread count now (at least 1). */
int h2t_blas_threads_get(void);
/* Which OpenBLAS this process runs, for benchmark and diagnostic output, into buf (always
 * NUL-terminated when len > 0; truncated when buf is short): its build configuration
 * (openblas_get_config), the core whose kernels it chose when the library was loaded
 * (openblas_get_corename) and OPENBLAS_CORETYPE as the environment sets it, e.g.
 *     "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64; core haswell;
 *      OPENBLAS_CORETYPE=Haswell"
 * The core is fixed at load: changing OPENBLAS_CORETYPE afterwards changes only the last
 * field. Returns buf.
 *     char b[256];
 *     printf("blas: %s\n", h2t_blas_describe(b, sizeof b));
 */
char *h2t_blas_describe(char *buf, size_t len);

#endif
