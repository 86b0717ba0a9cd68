/*
 * storage/set.c - the manifest of a store set (extract --mpi): write it atomically, read it
 * back with every line checked; the shard fields of a shard extraction's config (store.h,
 * "store sets"). The set read as one store is in store.c ("store sets read as one").
 */
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void h2t_store_shard_range(uint32_t n_samples, uint32_t i, uint32_t n, uint32_t *lo, uint32_t *hi)
{
    *lo = (uint32_t)((uint64_t)n_samples * i / n);
    *hi = (uint32_t)((uint64_t)n_samples * (i + 1) / n);
}

int h2t_store_shard_parse(const char *config, uint32_t *i, uint32_t *n, uint8_t hash[32],
                          char *whole, size_t wlen, uint32_t *n_samples)
{
    /* the last " shard=": the fields end the config (a layer regex may hold the text) */
    const char *sh = NULL;
    for (const char *q = strstr(config, " shard="); q; q = strstr(q + 1, " shard="))
        sh = q;
    if (!sh || !strstr(sh, " of="))
        return 0;
    unsigned si, sn;
    int used = 0;
    char hex[65];
    if (sscanf(sh, " shard=%u/%u of=%64[0-9a-f]%n", &si, &sn, hex, &used) != 3 ||
        sh[used] != '\0' || strlen(hex) != 64 || sn == 0 || si >= sn)
        return h2t_err_set(H2T_ECORRUPT, "shard field '%s' damaged", sh + 1);
    for (int k = 0; k < 32; k++) {
        unsigned b;
        if (sscanf(hex + 2 * k, "%2x", &b) != 1)
            return h2t_err_set(H2T_ECORRUPT, "shard field '%s' damaged", sh + 1);
        hash[k] = (uint8_t)b;
    }
    const char *sm = strstr(config, " samples=");
    unsigned ns;
    if (!sm || sscanf(sm, " samples=%u", &ns) != 1)
        return h2t_err_set(H2T_ECORRUPT, "shard config '%s' has no sample count", config);
    size_t wl = (size_t)(sh - config);
    if (wl >= wlen)
        return h2t_err_set(H2T_EINVAL, "shard config too long");
    memcpy(whole, config, wl);
    whole[wl] = '\0';
    *i = si;
    *n = sn;
    *n_samples = ns;
    return 1;
}

int h2t_store_set_exists(const char *dir)
{
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, H2T_STORE_SET_MANIFEST);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int h2t_store_set_write(const char *dir, uint32_t n_shards, const uint8_t whole_hash[32],
                        const char *whole_config, uint32_t n_samples, const uint32_t *counts,
                        uint32_t batch, const char *const *names)
{
    for (uint32_t i = 0; names && i < n_shards; i++)
        if (!names[i][0] || strchr(names[i], '\n') || names[i][0] == ' ')
            return h2t_err_set(H2T_EINVAL, "store set %s: shard %u's store name '%s'", dir, i,
                               names[i]);
    if (n_shards == 0 || n_shards > H2T_STORE_SET_MAX_SHARDS || n_shards > n_samples)
        return h2t_err_set(H2T_EINVAL, "store set %s: %u shards of %u samples", dir, n_shards,
                           n_samples);
    if (strchr(whole_config, '\n'))
        return h2t_err_set(H2T_EINVAL, "store set %s: config holds a line break", dir);
    for (uint32_t i = 0; i < n_shards; i++) {
        uint32_t lo, hi;
        h2t_store_shard_range(n_samples, i, n_shards, &lo, &hi);
        if (counts[i] != hi - lo)
            return h2t_err_set(H2T_EINVAL,
                               "store set %s: shard %u/%u holds %u samples, its range of %u "
                               "samples is %u",
                               dir, i, n_shards, counts[i], n_samples, hi - lo);
    }
    char path[4200], tmp[4300], hex[65];
    snprintf(path, sizeof path, "%s/%s", dir, H2T_STORE_SET_MANIFEST);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    h2t_hex(whole_hash, 32, hex);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return h2t_err_set(H2T_EIO, "create %s: %s", tmp, strerror(errno));
    fprintf(f, "h2tdb-store-set 1\nextraction %s\nsamples %u\nshards %u\nconfig %s\nbatch %u\n",
            hex, n_samples, n_shards, whole_config, batch ? batch : 32);
    for (uint32_t i = 0; i < n_shards; i++) {
        uint32_t lo, hi;
        h2t_store_shard_range(n_samples, i, n_shards, &lo, &hi);
        if (names)
            fprintf(f, "shard %u %u %u %s\n", i, lo, hi, names[i]);
        else
            fprintf(f, "shard %u %u %u shard-%u-of-%u\n", i, lo, hi, i, n_shards);
    }
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad || rename(tmp, path) != 0) {
        if (!bad)
            err = errno;
        unlink(tmp);
        return h2t_err_set(H2T_EIO, "write %s: %s", path, strerror(err));
    }
    return 0;
}

void h2t_store_set_free(h2t_store_set *s)
{
    if (!s)
        return;
    free(s->shards);
    s->shards = NULL;
}

int h2t_store_set_read(const char *path, h2t_store_set *out)
{
    char file[4200], base[4200];
    struct stat sb;
    if (stat(path, &sb) < 0)
        return h2t_err_set(H2T_ENOTFOUND, "store set %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        snprintf(file, sizeof file, "%s/%s", path, H2T_STORE_SET_MANIFEST);
    else
        snprintf(file, sizeof file, "%s", path);
    snprintf(base, sizeof base, "%s", file);
    char *slash = strrchr(base, '/');
    if (slash)
        slash[1] = '\0';
    else
        base[0] = '\0';
    FILE *f = fopen(file, "r");
    if (!f)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "store set manifest %s: %s",
                           file, strerror(errno));
    h2t_store_set s;
    memset(&s, 0, sizeof s);
    int rc = 0;
    char line[5000], hex[65] = "";
    unsigned ver = 0, lineno = 0, got = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') {
            rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: too long or unterminated", file, lineno);
            break;
        }
        line[--len] = '\0';
        int used = 0;
        unsigned a, b, c;
        if (lineno == 1) {
            if (sscanf(line, "h2tdb-store-set %u%n", &ver, &used) != 1 || line[used] || ver != 1)
                rc = h2t_err_set(H2T_ECORRUPT, "%s: not an h2tdb-store-set 1 manifest", file);
        } else if (!strncmp(line, "extraction ", 11)) {
            if (sscanf(line + 11, "%64[0-9a-f]%n", hex, &used) != 1 || strlen(hex) != 64 ||
                line[11 + used])
                rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: extraction: 64 hex digits", file,
                                 lineno);
            for (int k = 0; rc == 0 && k < 32; k++) {
                sscanf(hex + 2 * k, "%2x", &a);
                s.whole_hash[k] = (uint8_t)a;
            }
            got |= 1;
        } else if (sscanf(line, "samples %u%n", &a, &used) == 1 && !line[used]) {
            s.n_samples = a;
            got |= 2;
        } else if (sscanf(line, "batch %u%n", &a, &used) == 1 && !line[used]) {
            if (a == 0 || a > 4096)
                rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: batch %u (1..4096)", file, lineno, a);
            s.batch = a;
        } else if (sscanf(line, "shards %u%n", &a, &used) == 1 && !line[used]) {
            if (s.shards || a == 0 || a > H2T_STORE_SET_MAX_SHARDS) {
                rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: shards %u", file, lineno, a);
                break;
            }
            s.n_shards = a;
            if (!(s.shards = calloc(a, sizeof *s.shards)))
                rc = h2t_err_set(H2T_ENOMEM, "%s: %u shards", file, a);
            got |= 4;
        } else if (!strncmp(line, "config ", 7)) {
            snprintf(s.config, sizeof s.config, "%s", line + 7);
            got |= 8;
        } else if (sscanf(line, "shard %u %u %u %n", &a, &b, &c, &used) == 3 && line[used]) {
            if (!s.shards || (got & 2) == 0)
                rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: a shard before 'samples' and 'shards'",
                                 file, lineno);
            else if (a >= s.n_shards)
                rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: shard %u of %u", file, lineno, a,
                                 s.n_shards);
            else if (s.shards[a].path[0])
                rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: shard %u is listed twice", file, lineno,
                                 a);
            else {
                uint32_t lo, hi;
                h2t_store_shard_range(s.n_samples, a, s.n_shards, &lo, &hi);
                if (b != lo || c != hi)
                    rc = h2t_err_set(H2T_ECORRUPT,
                                     "%s line %u: shard %u covers %u..%u, its range of %u "
                                     "samples is %u..%u",
                                     file, lineno, a, b, c, s.n_samples, lo, hi);
                s.shards[a].lo = lo;
                s.shards[a].hi = hi;
                const char *p = line + used;
                if (p[0] == '/')
                    snprintf(s.shards[a].path, sizeof s.shards[a].path, "%s", p);
                else
                    snprintf(s.shards[a].path, sizeof s.shards[a].path, "%s%s", base, p);
            }
        } else {
            rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: unknown line '%.80s'", file, lineno, line);
        }
    }
    if (rc == 0 && ferror(f))
        rc = h2t_err_set(H2T_EIO, "read %s: %s", file, strerror(errno));
    fclose(f);
    if (rc == 0 && got != 15)
        rc = h2t_err_set(H2T_ECORRUPT, "%s: incomplete (needs extraction, samples, shards, config)",
                         file);
    for (uint32_t i = 0; rc == 0 && i < s.n_shards; i++)
        if (!s.shards[i].path[0])
            rc = h2t_err_set(H2T_ECORRUPT, "%s: shard %u/%u is missing", file, i, s.n_shards);
    if (rc < 0) {
        h2t_store_set_free(&s);
        return rc;
    }
    *out = s;
    return 0;
}
