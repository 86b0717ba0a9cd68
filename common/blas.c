/*
 * common/blas.c - OpenBLAS's thread count (contract: common/blas.h). The only file that
 * calls openblas_set_num_threads.
 */
#include "common/blas.h"

#include <cblas.h>

void h2t_blas_threads(int n)
{
    if (n > 0)
        openblas_set_num_threads(n);
}

int h2t_blas_threads_get(void)
{
    int n = openblas_get_num_threads();
    return n > 0 ? n : 1;
}
