/*
 * common/blas.c - OpenBLAS's thread count (contract: common/blas.h). The only file that
 * calls openblas_set_num_threads.
 */
#include "common/blas.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

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

char *h2t_blas_describe(char *buf, size_t len)
{
    const char *cfg = openblas_get_config(), *core = openblas_get_corename();
    const char *env = getenv("OPENBLAS_CORETYPE");

    if (len == 0)
        return buf;
    snprintf(buf, len, "%s; core %s; OPENBLAS_CORETYPE=%s", cfg ? cfg : "?", core ? core : "?",
             env ? env : "(unset)");
    return buf;
}
