/*
 * cli/cmd_mpi.c - h2tdb mpi-check: starts MPI, runs each collective of common/mpi.h once and
 * prints what it saw, so that a user (or CI) can check an MPI launch before a long job.
 */
#include "cli/cmds.h"
#include "common/err.h"
#include "common/mpi.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int h2t_cmd_mpi_check(int argc, char **argv)
{
    int fail_rank = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: mpirun -np N h2tdb mpi-check [--fail-rank R]\n\n"
                   "Starts MPI and checks barrier, allreduce, broadcast, allgather and the\n"
                   "agreement on failure across the ranks; rank 0 prints one line. Exit 0 when\n"
                   "every check holds on every rank.\n\n"
                   "  --fail-rank R   rank R reports a failure: every rank must exit 1 naming R\n");
            return 0;
        } else if (!strcmp(a, "--fail-rank") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1000000) {
                fprintf(stderr, "h2tdb mpi-check: --fail-rank '%s': a rank number\n", argv[i]);
                return 2;
            }
            fail_rank = (int)v;
        } else {
            fprintf(stderr, "h2tdb mpi-check: unknown option '%s' (--help lists them)\n", a);
            return 2;
        }
    }
    char lib[256];
    if (h2t_mpi_init(&argc, &argv, H2T_MPI_THREAD_FUNNELED) < 0) {
        fprintf(stderr, "h2tdb mpi-check: %s\n", h2t_err_detail());
        return 1;
    }
    int me = h2t_mpi_rank(), n = h2t_mpi_size();
    int rc = h2t_mpi_barrier();
    /* sum and max of the ranks, in f64 and i64 */
    double fsum = me;
    int64_t imax = me;
    if (rc == 0)
        rc = h2t_mpi_allreduce(&fsum, 1, H2T_MPI_F64, H2T_MPI_SUM);
    if (rc == 0)
        rc = h2t_mpi_allreduce(&imax, 1, H2T_MPI_I64, H2T_MPI_MAX);
    if (rc == 0 && (fsum != (double)n * (n - 1) / 2 || imax != n - 1))
        rc = h2t_err_set(H2T_ENUMERIC, "rank %d of %d: allreduce gave sum %g, max %lld", me, n,
                         fsum, (long long)imax);
    int32_t root_word = me == 0 ? 0x5eed : 0;
    if (rc == 0)
        rc = h2t_mpi_bcast(&root_word, sizeof root_word, 0);
    if (rc == 0 && root_word != 0x5eed)
        rc = h2t_err_set(H2T_EPROTO, "rank %d of %d: broadcast gave %#x", me, n,
                         (unsigned)root_word);
    int32_t *all = calloc((size_t)n, sizeof *all);
    int32_t mine = 1000 + me;
    if (!all && rc == 0)
        rc = h2t_err_set(H2T_ENOMEM, "rank %d of %d: %d ranks", me, n, n);
    if (rc == 0)
        rc = h2t_mpi_allgather(&mine, all, sizeof mine);
    for (int r = 0; rc == 0 && r < n; r++)
        if (all[r] != 1000 + r)
            rc = h2t_err_set(H2T_EPROTO, "rank %d of %d: allgather slot %d holds %d", me, n, r,
                             all[r]);
    free(all);
    if (rc == 0 && me == fail_rank)
        rc = h2t_err_set(H2T_ECANCELED, "rank %d of %d: failing as asked (--fail-rank)", me, n);
    int bad = -1;
    rc = h2t_mpi_agree(rc, &bad);
    if (rc < 0)
        fprintf(stderr, "h2tdb mpi-check: %s\n", h2t_err_detail());
    else if (me == 0)
        printf("mpi-check: %d ranks, barrier, allreduce, bcast, allgather, agree ok; %s\n", n,
               h2t_mpi_library(lib, sizeof lib));
    h2t_mpi_finalize();
    return rc < 0 ? 1 : 0;
}
