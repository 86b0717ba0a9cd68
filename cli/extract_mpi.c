/*
 * cli/extract_mpi.c - `mpirun -np N h2tdb extract --store DIR ... --mpi`: rank I of N extracts
 * shard I/N into the store DIR/shard-I-of-N; a rank that fails tells the others, which stop
 * after their current batch; when every rank finished, rank 0 writes the manifest
 * DIR/store-set.txt naming the shard stores (extract/extract.h, h2t_store_set_write).
 */
#include "cli/extract_mpi.h"
#include "common/err.h"
#include "common/mpi.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct stop_ctx {
    int stopped_by; /* the rank whose stop ended this pass, or -1 */
} stop_ctx;

static int on_batch(void *ctx, uint32_t done, uint32_t total)
{
    (void)done;
    (void)total;
    stop_ctx *s = ctx;
    return h2t_mpi_stop_poll(&s->stopped_by);
}

/* What each rank tells rank 0 about its shard. */
typedef struct shard_info {
    uint8_t whole_hash[32];
    uint32_t whole_n, shard_i, shard_n, n_samples, extraction;
    char whole[512];
} shard_info;

int h2t_extract_mpi_run(h2t_extract_opts *o, const char *dir)
{
    char eb[1024];
    if (h2t_mpi_init(NULL, NULL, H2T_MPI_THREAD_FUNNELED) < 0) {
        fprintf(stderr, "h2tdb extract: --mpi: %s\n", h2t_err_detail());
        return 1;
    }
    int me = h2t_mpi_rank(), n = h2t_mpi_size();
    char who[64], store_dir[4096];
    snprintf(who, sizeof who, "rank %d of %d", me, n);
    o->shard_i = (uint32_t)me;
    o->shard_n = (uint32_t)n;
    o->progress = 0;
    stop_ctx sc = {-1};
    o->on_batch = on_batch;
    o->ctx = &sc;
    snprintf(store_dir, sizeof store_dir, "%s/shard-%d-of-%d", dir, me, n);

    h2t_extract_plan *p = NULL;
    h2t_store *st = NULL;
    h2t_extract_result r;
    memset(&r, 0, sizeof r);
    int rc = 0;
    struct stat sb;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/data.mdb", dir);
    if (stat(probe, &sb) == 0)
        rc = h2t_err_set(H2T_EINVAL,
                         "%s: %s is a store; --mpi takes a directory that holds the shard "
                         "stores (DIR/shard-I-of-N) and their manifest",
                         who, dir);
    else if (mkdir(dir, 0777) < 0 && errno != EEXIST)
        rc = h2t_err_set(H2T_EIO, "%s: mkdir %s: %s", who, dir, strerror(errno));
    if (rc == 0 && (rc = h2t_extract_plan_create(o, &p)) < 0)
        h2t_err_wrap(rc, "%s", who);
    if (rc == 0 && (rc = h2t_store_open(store_dir, H2T_STORE_CREATE, &st)) < 0)
        h2t_err_wrap(rc, "%s", who);
    if (rc == 0) {
        rc = h2t_extract_plan_run(p, st, &r);
        if (rc == H2T_ECANCELED && sc.stopped_by >= 0)
            rc = 0; /* stopped for another rank's failure: that one is reported */
        else if (rc < 0)
            h2t_err_wrap(rc, "%s", who);
    }
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
    if (rc < 0) {
        fprintf(stderr, "h2tdb extract: %s\n", h2t_err_format(rc, eb, sizeof eb));
        h2t_mpi_stop_post();
    }
    int bad = -1;
    int arc = h2t_mpi_agree(rc, &bad);
    if (arc < 0) {
        if (rc == 0)
            fprintf(stderr, "h2tdb extract: %s: stopped: %s\n", who, h2t_err_detail());
        if (r.extraction && r.resumed_from + r.computed > 0)
            fprintf(stderr,
                    "h2tdb extract: %s: %s holds %u of %u samples of its shard; run the same "
                    "mpirun command again to resume every shard\n",
                    who, store_dir, r.resumed_from + r.computed, r.n_samples);
        h2t_mpi_finalize();
        return 1;
    }
    if (sc.stopped_by < 0)
        printf("%s: shard %d/%d in %s: extraction %u, %u samples (%s)\n", who, me, n, store_dir,
               r.extraction, r.n_samples,
               r.reused         ? "already complete"
               : r.resumed_from ? "resumed"
                                : "computed");
    fflush(stdout);

    /* every shard is complete: rank 0 checks they are one extraction and writes the manifest */
    shard_info mine, *all = NULL;
    memset(&mine, 0, sizeof mine);
    int prc = h2t_extract_shard_parse(r.config, &mine.shard_i, &mine.shard_n, mine.whole_hash,
                                      mine.whole, sizeof mine.whole, &mine.whole_n);
    rc = prc == 1 ? 0 : prc < 0 ? prc : h2t_err_set(H2T_ECORRUPT, "%s: not a shard config", who);
    mine.n_samples = r.n_samples;
    mine.extraction = r.extraction;
    if (rc == 0 && !(all = calloc((size_t)n, sizeof *all)))
        rc = h2t_err_set(H2T_ENOMEM, "%s: out of memory", who);
    if ((arc = h2t_mpi_agree(rc, &bad)) == 0)
        arc = h2t_mpi_allgather(&mine, all, sizeof mine);
    if (arc == 0 && me == 0) {
        uint32_t *counts = calloc((size_t)n, sizeof *counts);
        if (!counts)
            rc = h2t_err_set(H2T_ENOMEM, "%s: out of memory", who);
        for (int k = 0; rc == 0 && k < n; k++) {
            if (memcmp(all[k].whole_hash, all[0].whole_hash, 32) || all[k].shard_i != (uint32_t)k ||
                all[k].shard_n != (uint32_t)n)
                rc = h2t_err_set(H2T_EINVAL,
                                 "rank %d's store holds shard %u/%u of '%s', not shard %d/%d "
                                 "of rank 0's '%s'",
                                 k, all[k].shard_i, all[k].shard_n, all[k].whole, k, n,
                                 all[0].whole);
            counts[k] = all[k].n_samples;
        }
        if (rc == 0)
            rc = h2t_store_set_write(dir, (uint32_t)n, all[0].whole_hash, all[0].whole,
                                     all[0].whole_n, counts, (uint32_t)o->batch, NULL);
        free(counts);
    }
    char hex[65] = "";
    uint32_t whole_n = all ? all[0].whole_n : 0;
    if (all)
        h2t_hex(all[0].whole_hash, 32, hex);
    free(all);
    if (arc == 0)
        arc = h2t_mpi_agree(rc, &bad);
    if (arc < 0)
        fprintf(stderr, "h2tdb extract: %s: %s\n", who, h2t_err_detail());
    else if (me == 0)
        printf("store set %s: %d shards, %u samples, extraction %.16s, manifest %s/%s\n", dir, n,
               whole_n, hex, dir, H2T_STORE_SET_MANIFEST);
    h2t_mpi_finalize();
    return arc < 0 ? 1 : 0;
}
