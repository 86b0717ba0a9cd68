/*
 * tests/soak/storehash.c - print what an extraction holds, as SHA-256 digests, so that two
 * stores can be compared bitwise: the extraction's state and progress, then per layer its
 * table entry, the digest of every stored feature vector (as float32, samples 0..done-1) and
 * of its statistics record (count, mean, m2, min, max, norm figures). Timestamps and ids of
 * records are left out (they differ between runs). Built by make soak.
 *
 *     build/soak/storehash STORE EXTRACTION
 *
 * Exit status: 0 printed, 1 an error (named on stderr).
 */
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: storehash STORE EXTRACTION\n");
        return 2;
    }
    h2t_store *st = NULL;
    h2t_extraction *e = NULL;
    float *rows = NULL;
    uint32_t id;
    int rc = h2t_store_open(argv[1], H2T_STORE_RDONLY, &st);
    if (rc == 0)
        rc = h2t_store_extraction_find(st, argv[2], &id);
    if (rc == 0)
        rc = h2t_store_extraction_get(st, id, &e);
    if (rc < 0)
        goto out;
    printf("extraction %s state %u samples %u/%u layers %u dtype %u\n", e->name, e->state,
           e->samples_done, e->n_samples, e->n_layers, e->dtype);
    h2t_sha256 all;
    h2t_sha256_init(&all);
    for (uint32_t l = 0; l < e->n_layers; l++) {
        const h2t_layer_info *li = &e->layers[l];
        enum { CHUNK = 4096 };
        h2t_sha256 fs, ss;
        h2t_sha256_init(&fs);
        free(rows);
        rows = malloc((size_t)CHUNK * li->dim * sizeof(float));
        if (!rows) {
            rc = h2t_err_set(H2T_ENOMEM, "layer %u: %u features", l, li->dim);
            goto out;
        }
        for (uint32_t s = 0; s < e->samples_done; s += CHUNK) {
            uint32_t n = e->samples_done - s < CHUNK ? e->samples_done - s : CHUNK;
            if ((rc = h2t_store_layer_read(st, e->id, l, NULL, s, n, rows, li->dim)) < 0)
                goto out;
            h2t_sha256_update(&fs, rows, (size_t)n * li->dim * sizeof(float));
        }
        uint8_t fd[32], sd[32];
        h2t_sha256_final(&fs, fd);
        h2t_sha256_init(&ss);
        h2t_layer_stats *ls = NULL;
        rc = h2t_store_stats_get(st, e->id, l, &ls);
        if (rc == 0) {
            h2t_sha256_update(&ss, &ls->count, sizeof(ls->count));
            h2t_sha256_update(&ss, ls->mean, (size_t)ls->dim * sizeof(double));
            h2t_sha256_update(&ss, ls->m2, (size_t)ls->dim * sizeof(double));
            h2t_sha256_update(&ss, ls->min, (size_t)ls->dim * sizeof(float));
            h2t_sha256_update(&ss, ls->max, (size_t)ls->dim * sizeof(float));
            h2t_sha256_update(&ss, &ls->norm_mean, sizeof(double));
            h2t_sha256_update(&ss, &ls->norm_min, sizeof(double));
            h2t_sha256_update(&ss, &ls->norm_max, sizeof(double));
            h2t_layer_stats_destroy(ls);
        } else if (rc == H2T_ENOTFOUND && e->samples_done == 0) {
            rc = 0; /* no statistics before the first batch */
        } else {
            goto out;
        }
        h2t_sha256_final(&ss, sd);
        char fx[65], sx[65];
        hex(fd, fx);
        hex(sd, sx);
        printf("layer %u %s op %s dim %u offset %llu features %s stats %s\n", l, li->name, li->op,
               li->dim, (unsigned long long)li->offset, fx, sx);
        h2t_sha256_update(&all, fd, 32);
        h2t_sha256_update(&all, sd, 32);
    }
    uint8_t ad[32];
    char ax[65];
    h2t_sha256_final(&all, ad);
    hex(ad, ax);
    printf("all %s\n", ax);
out:
    free(rows);
    h2t_extraction_destroy(e);
    h2t_store_close(st);
    if (rc < 0) {
        fprintf(stderr, "storehash: %s\n", h2t_err_detail());
        return 1;
    }
    return 0;
}
