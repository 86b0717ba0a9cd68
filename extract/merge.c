/*
 * extract/merge.c - one store from the shard stores of a sharded extraction (h2tdb merge): the
 * whole extraction's identity, samples in source order, statistics merged batch by batch by the
 * store's own write path (so they are bitwise those of the unsharded pass at the same batch).
 */
#include "common/err.h"
#include "extract/extract.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shard_in {
    const char *dir;
    h2t_store *st;
    h2t_extraction *e;
    uint32_t i, n, lo, hi;
} shard_in;

/* The one shard extraction of the store in s->dir, and its fields. */
static int shard_find(shard_in *s, uint8_t whole_hash[32], char *whole, size_t wlen,
                      uint32_t *whole_n)
{
    h2t_extraction **v = NULL;
    size_t nv = 0;
    int rc = h2t_store_extraction_list(s->st, &v, &nv);
    if (rc < 0)
        return h2t_err_wrap(rc, "store %s: ", s->dir);
    int found = 0;
    for (size_t k = 0; k < nv && rc >= 0; k++) {
        uint8_t h[32];
        char w[512];
        uint32_t si, sn, wn;
        int r = h2t_extract_shard_parse(v[k]->config, &si, &sn, h, w, sizeof w, &wn);
        if (r < 0) {
            rc = h2t_err_wrap(r, "store %s extraction %u: ", s->dir, v[k]->id);
        } else if (r == 1 && found) {
            rc = h2t_err_set(H2T_EINVAL,
                             "store %s holds more than one shard extraction (%u and %u); "
                             "merge takes stores of one each",
                             s->dir, s->e->id, v[k]->id);
        } else if (r == 1) {
            found = 1;
            s->e = v[k];
            v[k] = NULL;
            s->i = si;
            s->n = sn;
            memcpy(whole_hash, h, 32);
            snprintf(whole, wlen, "%s", w);
            *whole_n = wn;
        }
    }
    h2t_extraction_list_destroy(v, nv);
    if (rc >= 0 && !found)
        rc = h2t_err_set(H2T_ENOTFOUND, "store %s holds no shard extraction (extract --shard I/N)",
                         s->dir);
    return rc < 0 ? rc : 0;
}

int h2t_extract_merge(const char *out_dir, const char *const *dirs, size_t n_dirs, int batch,
                      h2t_extract_merge_result *res)
{
    if (n_dirs == 0 || batch <= 0)
        return h2t_err_set(H2T_EINVAL, "merge: no shard stores given");
    shard_in *sh = calloc(n_dirs, sizeof *sh);
    char **real = calloc(n_dirs + 1, sizeof *real);
    shard_in **by_i = NULL;
    h2t_store *out = NULL;
    h2t_source *src = NULL;
    float *buf = NULL;
    float **rows = NULL;
    int rc = 0;
    if (!sh || !real) {
        rc = h2t_err_set(H2T_ENOMEM, "merge: out of memory");
        goto out;
    }
    /* the same directory twice (a store is opened once per process) */
    real[n_dirs] = realpath(out_dir, NULL);
    for (size_t k = 0; k < n_dirs; k++) {
        real[k] = realpath(dirs[k], NULL);
        if (!real[k]) {
            rc = h2t_err_set(H2T_ENOTFOUND, "shard store %s: no such directory", dirs[k]);
            goto out;
        }
        for (size_t j = 0; j <= n_dirs; j++)
            if (j != k && real[j] && !strcmp(real[j], real[k])) {
                rc = h2t_err_set(H2T_EINVAL, "shard store %s is given twice%s", dirs[k],
                                 j == n_dirs ? " (also as the output store)" : "");
                goto out;
            }
    }

    uint8_t whole_hash[32] = {0};
    char whole[512] = "";
    uint32_t whole_n = 0, n_shards = 0;
    for (size_t k = 0; k < n_dirs; k++) {
        sh[k].dir = dirs[k];
        if ((rc = h2t_store_open(dirs[k], H2T_STORE_RDONLY, &sh[k].st)) < 0) {
            rc = h2t_err_wrap(rc, "shard store %s: ", dirs[k]);
            goto out;
        }
        uint8_t h[32];
        char w[512];
        uint32_t wn = 0;
        if ((rc = shard_find(&sh[k], h, w, sizeof w, &wn)) < 0)
            goto out;
        if (k == 0) {
            memcpy(whole_hash, h, 32);
            memcpy(whole, w, sizeof whole);
            whole_n = wn;
            n_shards = sh[k].n;
        } else if (memcmp(h, whole_hash, 32) != 0 || sh[k].n != n_shards) {
            rc = h2t_err_set(H2T_EINVAL,
                             "shard store %s: its extraction (%s shard=%u/%u) is not a shard of "
                             "the one in %s (%s shard=%u/%u)",
                             dirs[k], w, sh[k].i, sh[k].n, dirs[0], whole, sh[0].i, n_shards);
            goto out;
        }
        const h2t_extraction *e = sh[k].e;
        h2t_extract_shard_range(whole_n, sh[k].i, sh[k].n, &sh[k].lo, &sh[k].hi);
        if (e->n_samples != sh[k].hi - sh[k].lo) {
            rc = h2t_err_set(H2T_ECORRUPT,
                             "shard store %s: shard %u/%u of %u samples should hold %u, its "
                             "extraction %u plans %u",
                             dirs[k], sh[k].i, sh[k].n, whole_n, sh[k].hi - sh[k].lo, e->id,
                             e->n_samples);
            goto out;
        }
        if (e->state != H2T_EXT_DONE || e->samples_done < e->n_samples) {
            rc = h2t_err_set(H2T_ESTATE,
                             "shard store %s: shard %u/%u is incomplete (%u of %u samples); "
                             "rerun its extract to resume it",
                             dirs[k], sh[k].i, sh[k].n, e->samples_done, e->n_samples);
            goto out;
        }
    }
    /* every shard exactly once */
    by_i = calloc(n_shards, sizeof *by_i);
    if (!by_i) {
        rc = h2t_err_set(H2T_ENOMEM, "merge: out of memory");
        goto out;
    }
    for (size_t k = 0; k < n_dirs; k++) {
        if (by_i[sh[k].i]) {
            rc = h2t_err_set(H2T_EINVAL, "shard %u/%u is in both %s and %s", sh[k].i, n_shards,
                             by_i[sh[k].i]->dir, sh[k].dir);
            goto out;
        }
        by_i[sh[k].i] = &sh[k];
    }
    for (uint32_t i = 0; i < n_shards; i++)
        if (!by_i[i]) {
            rc = h2t_err_set(H2T_ENOTFOUND,
                             "shard %u/%u is missing: no store given holds it (given: %zu of %u)",
                             i, n_shards, n_dirs, n_shards);
            goto out;
        }

    /* the records of the whole extraction in the output store */
    const h2t_extraction *e0 = by_i[0]->e;
    h2t_model_rec m;
    if ((rc = h2t_store_model_get(by_i[0]->st, e0->model, &m)) < 0 ||
        (rc = h2t_store_source_get(by_i[0]->st, e0->source, &src)) < 0) {
        rc = h2t_err_wrap(rc, "shard store %s: ", by_i[0]->dir);
        goto out;
    }
    if ((rc = h2t_store_open(out_dir, H2T_STORE_CREATE, &out)) < 0) {
        rc = h2t_err_wrap(rc, "output store %s: ", out_dir);
        goto out;
    }
    h2t_extract_merge_result r;
    memset(&r, 0, sizeof r);
    int reused;
    if ((rc = h2t_store_model_put(out, &m, &r.model, &reused)) < 0 ||
        (rc = h2t_store_source_put(out, src, &r.source, &reused)) < 0) {
        rc = h2t_err_wrap(rc, "output store %s: ", out_dir);
        goto out;
    }
    h2t_extraction spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "%s", e0->name);
    spec.source = r.source;
    spec.model = r.model;
    spec.target_size = e0->target_size;
    spec.dtype = e0->dtype;
    snprintf(spec.config, sizeof spec.config, "%s", whole);
    memcpy(spec.config_hash, whole_hash, 32);
    spec.n_samples = whole_n;
    spec.n_layers = e0->n_layers;
    spec.layers = e0->layers;
    if ((rc = h2t_store_extraction_begin(out, &spec, &r.extraction, &reused)) < 0) {
        rc = h2t_err_wrap(rc, "output store %s: ", out_dir);
        goto out;
    }
    h2t_extraction *oe;
    if ((rc = h2t_store_extraction_get(out, r.extraction, &oe)) < 0)
        goto out;
    uint32_t done = oe->samples_done;
    uint64_t total_dim = oe->total_dim;
    h2t_extraction_destroy(oe);
    r.resumed_from = done;
    r.n_samples = whole_n;
    r.n_shards = n_shards;

    /* the rows, batch by batch in source order, through the store's write path */
    uint32_t B = (uint32_t)batch < whole_n ? (uint32_t)batch : whole_n;
    buf = malloc((size_t)B * total_dim * sizeof *buf);
    rows = calloc(e0->n_layers, sizeof *rows);
    if (!buf || !rows) {
        rc = h2t_err_set(H2T_ENOMEM, "merge: %u x %llu features do not fit memory", B,
                         (unsigned long long)total_dim);
        goto out;
    }
    size_t off = 0;
    for (uint32_t l = 0; l < e0->n_layers; l++) {
        rows[l] = buf + off;
        off += (size_t)B * e0->layers[l].dim;
    }
    for (uint32_t g = done; g < whole_n;) {
        uint32_t nb = whole_n - g < B ? whole_n - g : B;
        for (uint32_t pos = g; pos < g + nb;) {
            uint32_t k = 0;
            while (!(by_i[k]->lo <= pos && pos < by_i[k]->hi))
                k++;
            shard_in *s = by_i[k];
            uint32_t cnt = (s->hi < g + nb ? s->hi : g + nb) - pos;
            for (uint32_t l = 0; l < e0->n_layers; l++) {
                uint32_t dim = e0->layers[l].dim;
                if (s->e->layers[l].dim != dim || strcmp(s->e->layers[l].name, e0->layers[l].name))
                    rc = h2t_err_set(H2T_ECORRUPT,
                                     "shard store %s: layer %u is '%s' (%u), not "
                                     "'%s' (%u)",
                                     s->dir, l, s->e->layers[l].name, s->e->layers[l].dim,
                                     e0->layers[l].name, dim);
                else if ((rc = h2t_store_layer_read(s->st, s->e->id, l, NULL, pos - s->lo, cnt,
                                                    rows[l] + (size_t)(pos - g) * dim, dim)) < 0)
                    rc = h2t_err_wrap(rc, "shard store %s: ", s->dir);
                if (rc < 0)
                    goto out;
            }
            pos += cnt;
        }
        if ((rc = h2t_store_features_write(out, r.extraction, g, nb, (const float *const *)rows)) <
            0) {
            rc = h2t_err_wrap(rc, "output store %s: ", out_dir);
            goto out;
        }
        g += nb;
        r.written += nb;
    }
    if ((rc = h2t_store_extraction_set_state(out, r.extraction, H2T_EXT_DONE)) < 0)
        goto out;
    r.reused = done >= whole_n;
    *res = r;
out:
    free(buf);
    free(rows);
    h2t_source_destroy(src);
    h2t_store_close(out);
    if (sh)
        for (size_t k = 0; k < n_dirs; k++) {
            h2t_extraction_destroy(sh[k].e);
            h2t_store_close(sh[k].st);
        }
    if (real)
        for (size_t k = 0; k <= n_dirs; k++)
            free(real[k]);
    free(real);
    free(by_i);
    free(sh);
    return rc < 0 ? rc : 0;
}
