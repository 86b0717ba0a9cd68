/*
 * common/mpi.h - the one place h2tdb talks to MPI: start and stop, rank and size, the few
 * collectives h2tdb uses, and errors that name the rank.
 *
 * MPI is optional at build time. The Makefile defines H2T_HAVE_MPI and links libmpi when it
 * finds `mpicc` (or pkg-config's ompi-c); `make MPI=0` builds without it. This header never
 * includes <mpi.h>, so callers compile the same either way; h2t_mpi_built() says which build
 * this is, and without MPI h2t_mpi_init fails with H2T_EUNSUPPORTED ("built without MPI").
 *
 * Before h2t_mpi_init (or in a build without MPI) the process is a world of one: rank 0,
 * size 1, and the collectives are identities (allreduce leaves the buffer as it is, bcast does
 * nothing, allgather copies), so code written for N ranks runs unchanged on one.
 *
 * Every collective must be called by every rank in the same order (MPI's rule). Errors from
 * MPI are returned, not fatal (MPI_ERRORS_RETURN on MPI_COMM_WORLD), as H2T_ENET with the
 * detail "rank R of N: MPI_Allreduce: <MPI's text>". A rank that died makes OpenMPI's mpirun
 * end the job; a rank that failed cleanly reports it through h2t_mpi_agree, so that every rank
 * stops with an error naming the rank that failed.
 *
 * Threads: all calls come from the thread that called h2t_mpi_init unless the level asked
 * for (and granted) is H2T_MPI_THREAD_SERIALIZED or _MULTIPLE.
 *
 *     #include <stdio.h>
 *     #include "common/err.h"
 *
 *     // on every rank (argc/argv may be passed instead of NULL)
 *     if (h2t_mpi_init(NULL, NULL, H2T_MPI_THREAD_FUNNELED) < 0) {
 *         fprintf(stderr, "%s\n", h2t_err_detail()); // "built without MPI ..." or MPI's
 *         return;
 *     }
 *     double g[2] = {h2t_mpi_rank(), 1.0};
 *     int rc = h2t_mpi_allreduce(g, 2, H2T_MPI_F64, H2T_MPI_SUM); // g = {0+1+.., size}
 *     int bad = -1;
 *     rc = h2t_mpi_agree(rc, &bad); // the same rc (and failed rank) on every rank
 *     if (rc < 0)
 *         fprintf(stderr, "rank %d: %s\n", h2t_mpi_rank(), h2t_err_detail());
 *     h2t_mpi_finalize();
 */
#ifndef H2T_COMMON_MPI_H
#define H2T_COMMON_MPI_H

#include <stddef.h>

/* Thread support asked of MPI (MPI_THREAD_* of the standard, in the same order). */
enum {
    H2T_MPI_THREAD_SINGLE = 0,
    H2T_MPI_THREAD_FUNNELED = 1,
    H2T_MPI_THREAD_SERIALIZED = 2,
    H2T_MPI_THREAD_MULTIPLE = 3
};

/* Element types and reduction operations for h2t_mpi_allreduce. */
typedef enum { H2T_MPI_F32, H2T_MPI_F64, H2T_MPI_I32, H2T_MPI_I64, H2T_MPI_U64 } h2t_mpi_type;
typedef enum { H2T_MPI_SUM, H2T_MPI_MIN, H2T_MPI_MAX } h2t_mpi_op;

/* 1 when this binary was built with MPI (H2T_HAVE_MPI), else 0. */
int h2t_mpi_built(void);

/* The first line of the MPI library's version text ("Open MPI v4.1.4, ...") into buf, or
 * "none (built without MPI)"; returns buf. Callable before h2t_mpi_init. */
const char *h2t_mpi_library(char *buf, size_t len);

/* Start MPI (MPI_Init_thread) asking for `thread_level`; argc/argv may be NULL. Sets
 * MPI_ERRORS_RETURN on MPI_COMM_WORLD. Calling it again while active returns 0.
 * Errors: H2T_EUNSUPPORTED built without MPI; H2T_ENET MPI_Init_thread failed or granted a
 * lower thread level than asked (then MPI is finalized again); H2T_ESTATE after finalize
 * (MPI cannot be started twice in a process). */
int h2t_mpi_init(int *argc, char ***argv, int thread_level);

/* Stop MPI (MPI_Finalize) if this process started it; a no-op otherwise. Returns 0 or
 * H2T_ENET. Every rank must call it before exiting normally. */
int h2t_mpi_finalize(void);

/* 1 between a successful h2t_mpi_init and h2t_mpi_finalize, else 0. */
int h2t_mpi_active(void);

/* This process's rank in MPI_COMM_WORLD and the number of ranks (0 and 1 when not active). */
int h2t_mpi_rank(void);
int h2t_mpi_size(void);

/* Wait until every rank has called it. Errors: H2T_ENET naming the rank. */
int h2t_mpi_barrier(void);

/* In place: buf[0..count) becomes the reduction over ranks (count may exceed INT_MAX; it is
 * reduced in chunks). Integer and floating sums are MPI's, so a floating sum over N ranks may
 * depend on the reduction order MPI picks; it is the same on every rank.
 * Errors: H2T_EINVAL buf NULL with count > 0; H2T_ENET naming the rank. */
int h2t_mpi_allreduce(void *buf, size_t count, h2t_mpi_type type, h2t_mpi_op op);

/* Rank `root`'s buf[0..bytes) copied into every rank's buf. Errors: H2T_EINVAL root out of
 * range; H2T_ENET naming the rank. */
int h2t_mpi_bcast(void *buf, size_t bytes, int root);

/* Every rank's send[0..bytes) into recv[r*bytes .. (r+1)*bytes) on every rank; recv holds
 * size*bytes. Errors: H2T_EINVAL bytes > INT_MAX; H2T_ENET naming the rank. */
int h2t_mpi_allgather(const void *send, void *recv, size_t bytes);

/* Early stop, for long work between collectives (an extraction's batches): a rank that fails
 * calls h2t_mpi_stop_post (non-blocking: a message to every other rank), the others call
 * h2t_mpi_stop_poll between units of work and stop when it returns 1 (*from = the first rank
 * that posted), and then every rank calls h2t_mpi_agree, which completes those messages.
 * Without MPI active, post does nothing and poll returns 0. post returns 0 or H2T_ENET. */
int h2t_mpi_stop_post(void);
int h2t_mpi_stop_poll(int *from);

/* Collective agreement on an outcome: every rank passes its own rc (0 or an H2T_E* code).
 * Returns 0 on every rank when all passed 0. Otherwise returns, on every rank, the code of
 * the lowest failed rank, writes that rank to *failed_rank (when not NULL), and on the ranks
 * that had succeeded sets the detail to "rank R of N failed: <R's detail>" (its first 511
 * bytes; the failed rank keeps its own detail). It also completes the messages of
 * h2t_mpi_stop_post, so stops posted before it never leak into the next agreement.
 * H2T_ENET when the agreement itself fails. */
int h2t_mpi_agree(int rc, int *failed_rank);

/* End every rank now (MPI_Abort on MPI_COMM_WORLD with `code`; exit(code) when not active).
 * For failures that leave a rank unable to take part in the next collective. */
void h2t_mpi_abort(int code) __attribute__((noreturn));

#endif
