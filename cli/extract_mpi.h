/*
 * cli/extract_mpi.h - extract --mpi (cli/extract_mpi.c), called by cli/cmd_extract.c.
 */
#ifndef H2T_CLI_EXTRACT_MPI_H
#define H2T_CLI_EXTRACT_MPI_H

#include "extract/extract.h"

/* Start MPI, extract shard rank/size of o into dir/shard-I-of-N, agree across ranks, and on
 * rank 0 write dir/store-set.txt. Returns the exit status (0 or 1); errors are printed. */
int h2t_extract_mpi_run(h2t_extract_opts *o, const char *dir);

#endif
