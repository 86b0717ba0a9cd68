/*
 * cli/cmd_set.c - h2tdb set-manifest: the manifest of a store set for shard stores written
 * without MPI (extract --shard I/N from a Slurm array or a Kubernetes Indexed Job), so that the
 * folder reads as one store (ls, layers, dump, serve: docs/deployment.md, "Store sets").
 */
#include "cli/cmds.h"
#include "common/err.h"
#include "storage/store.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct found {
    char name[256];
    uint32_t i, n, whole_n, samples;
    uint8_t hash[32];
    char whole[512];
} found;

/* The one shard extraction of the store dir/name into f; 0, or 1 when the folder holds no
 * store (skipped), or an error. */
static int probe(const char *dir, const char *name, found *f)
{
    char p[4400];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s/data.mdb", dir, name);
    if (stat(p, &sb) != 0)
        return 1;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    h2t_store *st;
    int rc = h2t_store_open(p, H2T_STORE_RDONLY, &st);
    if (rc < 0)
        return rc;
    h2t_extraction **v = NULL;
    size_t nv = 0;
    int hits = 0;
    if ((rc = h2t_store_extraction_list(st, &v, &nv)) == 0)
        for (size_t k = 0; k < nv && rc >= 0; k++) {
            found g;
            int r = h2t_store_shard_parse(v[k]->config, &g.i, &g.n, g.hash, g.whole, sizeof g.whole,
                                          &g.whole_n);
            if (r < 0)
                rc = h2t_err_wrap(r, "store %s extraction %u", p, v[k]->id);
            else if (r == 1) {
                g.samples = v[k]->n_samples;
                snprintf(g.name, sizeof g.name, "%s", name);
                *f = g;
                hits++;
            }
        }
    h2t_extraction_list_destroy(v, nv);
    h2t_store_close(st);
    if (rc == 0 && hits != 1)
        rc = h2t_err_set(hits ? H2T_EINVAL : H2T_ENOTFOUND,
                         "store %s holds %s shard extraction (extract --shard I/N)", p,
                         hits ? "more than one" : "no");
    return rc;
}

int h2t_cmd_set_manifest(int argc, char **argv)
{
    const char *dir = NULL;
    long batch = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf(
                "usage: h2tdb set-manifest DIR [--batch B]\n\n"
                "Writes DIR/store-set.txt naming the shard stores in DIR's subfolders (one\n"
                "shard extraction each, extract --shard I/N: a Slurm array's or an Indexed\n"
                "Job's output), after checking that they are every shard of one extraction\n"
                "once and complete. DIR then reads as one store (ls, layers, dump, serve).\n"
                "extract --mpi writes this manifest itself.\n\n"
                "  --batch B   the --batch the shards were extracted with: the set's statistics\n"
                "              are merged in such batches (default 32, extract's default)\n");
            return 0;
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            char *end;
            batch = strtol(argv[++i], &end, 10);
            if (*end || batch < 1 || batch > 4096) {
                fprintf(stderr, "h2tdb set-manifest: --batch '%s': 1..4096\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "h2tdb set-manifest: unexpected '%s' (h2tdb set-manifest --help)\n",
                    argv[i]);
            return 2;
        } else
            dir = argv[i];
    }
    if (!dir) {
        fprintf(stderr, "h2tdb set-manifest: give the folder of the shard stores\n");
        return 2;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "h2tdb set-manifest: %s: cannot open the folder\n", dir);
        return 1;
    }
    found *fs = NULL;
    size_t nf = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc >= 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, H2T_STORE_SET_WORK) ||
            strlen(de->d_name) >= sizeof fs->name)
            continue;
        if (nf == cap) {
            found *g = realloc(fs, (cap = cap ? 2 * cap : 16) * sizeof *fs);
            if (!g) {
                rc = h2t_err_set(H2T_ENOMEM, "set-manifest");
                break;
            }
            fs = g;
        }
        int r = probe(dir, de->d_name, &fs[nf]);
        if (r < 0)
            rc = r;
        else if (r == 0)
            nf++;
    }
    closedir(d);
    const char **names = NULL;
    uint32_t *counts = NULL;
    uint32_t n = nf ? fs[0].n : 0;
    if (rc >= 0 && nf == 0)
        rc = h2t_err_set(H2T_ENOTFOUND, "%s holds no shard store in its subfolders", dir);
    if (rc >= 0 && (!(names = calloc(n, sizeof *names)) || !(counts = calloc(n, sizeof *counts))))
        rc = h2t_err_set(H2T_ENOMEM, "set-manifest");
    for (size_t k = 0; rc >= 0 && k < nf; k++) {
        const found *f = &fs[k];
        if (f->n != n || memcmp(f->hash, fs[0].hash, 32))
            rc = h2t_err_set(H2T_EINVAL,
                             "%s/%s holds shard %u/%u of '%s', %s/%s one of %u shards of '%s'", dir,
                             f->name, f->i, f->n, f->whole, dir, fs[0].name, n, fs[0].whole);
        else if (names[f->i])
            rc = h2t_err_set(H2T_EINVAL, "shard %u/%u is in both %s/%s and %s/%s", f->i, n, dir,
                             names[f->i], dir, f->name);
        else {
            names[f->i] = f->name;
            counts[f->i] = f->samples;
        }
    }
    for (uint32_t i = 0; rc >= 0 && i < n; i++)
        if (!names[i])
            rc = h2t_err_set(H2T_ENOTFOUND, "shard %u/%u is missing: no subfolder of %s holds it",
                             i, n, dir);
    if (rc >= 0)
        rc = h2t_store_set_write(dir, n, fs[0].hash, fs[0].whole, fs[0].whole_n, counts,
                                 (uint32_t)batch, names);
    /* read back as a set: every shard complete and consistent, or the manifest goes again */
    h2t_store *st = NULL;
    if (rc >= 0 && (rc = h2t_store_open(dir, H2T_STORE_RDONLY, &st)) < 0) {
        char m[4300];
        snprintf(m, sizeof m, "%s/%s", dir, H2T_STORE_SET_MANIFEST);
        remove(m);
    }
    h2t_store_close(st);
    if (rc < 0)
        fprintf(stderr, "h2tdb set-manifest: %s\n", h2t_err_detail());
    else
        printf("store set %s: %u shards, %u samples, manifest %s/%s\n", dir, n, fs[0].whole_n, dir,
               H2T_STORE_SET_MANIFEST);
    free(names);
    free(counts);
    free(fs);
    return rc < 0 ? 1 : 0;
}
