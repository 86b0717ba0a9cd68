/*
 * cli/cmd_merge.c - h2tdb merge: one store from the shard stores of a sharded extraction
 * (extract --shard I/N; the work is h2t_extract_merge in extract/merge.c).
 */
#include "cli/cmds.h"
#include "common/err.h"
#include "extract/extract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int h2t_cmd_merge(int argc, char **argv)
{
    const char *out = NULL;
    int batch = 32;
    const char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
    size_t n = 0;
    if (!dirs) {
        fprintf(stderr, "h2tdb merge: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf(
                "usage: h2tdb merge --store OUT [--batch B] SHARD_STORE...\n\n"
                "Writes the whole extraction of a sharded one (h2tdb extract --shard I/N, one\n"
                "store per shard) into OUT: samples in source order, the unsharded "
                "extraction's\n"
                "identity, statistics merged batch by batch as the unsharded pass does (bitwise\n"
                "its statistics at the same --batch). Every shard 0..N-1 must be given once and\n"
                "be complete; the shard stores are only read. A stopped merge resumes.\n\n"
                "  --store OUT   the output store (created when missing)\n"
                "  --batch B     samples per write, as extract's --batch (default 32)\n");
            free(dirs);
            return 0;
        } else if (!strcmp(a, "--store") || !strcmp(a, "--batch")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "h2tdb merge: %s needs a value\n", a);
                free(dirs);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--store")) {
                out = v;
            } else {
                char *end;
                long b = strtol(v, &end, 10);
                if (*v == '\0' || *end != '\0' || b < 1 || b > 4096) {
                    fprintf(stderr, "h2tdb merge: --batch '%s': 1..4096\n", v);
                    free(dirs);
                    return 2;
                }
                batch = (int)b;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "h2tdb merge: unknown option '%s' (--help lists them)\n", a);
            free(dirs);
            return 2;
        } else {
            dirs[n++] = a;
        }
    }
    if (!out || n == 0) {
        fprintf(stderr, "h2tdb merge: give --store OUT and the shard stores\n");
        free(dirs);
        return 2;
    }
    h2t_extract_merge_result r;
    int rc = h2t_extract_merge(out, dirs, n, batch, &r);
    free(dirs);
    if (rc < 0) {
        fprintf(stderr, "h2tdb merge: %s\n", h2t_err_detail());
        return 1;
    }
    if (r.reused)
        printf("extraction %u: %u samples of %u shards already merged in %s\n", r.extraction,
               r.n_samples, r.n_shards, out);
    else
        printf("extraction %u: %u samples of %u shards merged into %s (%u written%s)\n",
               r.extraction, r.n_samples, r.n_shards, out, r.written,
               r.resumed_from ? ", resumed" : "");
    return 0;
}
