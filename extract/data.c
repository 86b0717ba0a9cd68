/*
 * extract/data.c - data sources: idx:DIR, folder:DIR, npy:IMG[,LAB]. Formats, ordering and
 * the content hash are documented in extract/extract.h. Everything that can be checked
 * without decoding images is checked at open, so a bad source fails before the store is
 * touched; a folder image that does not decode is named when it is read.
 */
#include "common/err.h"
#include "common/util.h"
#include "extract/extract.h"

#include <stdio.h> /* before jpeglib.h, which needs FILE */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jpeglib.h>
#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_PAYLOAD ((uint64_t)16 << 30) /* refuse headers claiming more than 16 GiB */
#define MAX_SAMPLES 0x7fffffffu

enum { KIND_IDX, KIND_FOLDER, KIND_NPY };

struct h2t_data {
    int kind;
    h2t_data_info info;
    /* the source as opened (before selection) */
    uint32_t n_all;
    uint32_t *labels_all;
    uint8_t *split_all;
    uint8_t hash_all[32];     /* content hash of the whole source */
    size_t name_len, uri_len; /* of the whole source's name and uri */
    /* selection: sample i of the view is sample map[i] of the source (NULL = identity) */
    uint32_t *map;
    uint32_t *labels; /* view labels/split (point at *_all when no selection) */
    uint8_t *split;
    /* idx: the files of each split in memory; idx_img points at the pixels (n x h x w x c) */
    uint8_t *idx_buf[2];
    const uint8_t *idx_img[2];
    uint32_t idx_n[2];
    /* npy: the mapped image file */
    void *map_base;
    size_t map_len;
    const uint8_t *npy_data;
    /* folder: file paths per sample, decoded pixels of the last read */
    char **paths;
    uint8_t *pix;
    size_t pix_cap;
};

/* ---------------------------------------------------------------- helpers */

/* Whole-file reads of IDX and label files. A file that starts with the gzip magic is
 * inflated, any other file is taken as it is (what zlib's gzread does). The gzip trailer's
 * size presizes the output, inflate writes straight into it OUT_CHUNK bytes at a time, and hs
 * (when not NULL) hashes each piece while it is still in cache, so the bytes are touched once.
 * Several gzip members are read one after the other; after the last one, bytes that do not
 * start another member are ignored (gzread again). */
enum { IN_CHUNK = 1 << 18, OUT_CHUNK = 1 << 19 };

/* Read until buf holds n bytes or the file ends; *got = bytes read. */
static int read_full(int fd, const char *path, uint8_t *buf, size_t n, size_t *got)
{
    size_t k = 0;
    while (k < n) {
        ssize_t r = read(fd, buf + k, n - k);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return h2t_err_set(H2T_EIO, "%s: %s", path, strerror(errno));
        if (r == 0)
            break;
        k += (size_t)r;
    }
    *got = k;
    return 0;
}

/* Make room for need bytes: the first time exactly (the expected size), then doubling;
 * H2T_ETOOBIG past MAX_PAYLOAD. */
static int out_reserve(const char *path, uint8_t **buf, size_t *cap, uint64_t need)
{
    if (need <= *cap)
        return 0;
    if (need > MAX_PAYLOAD)
        return h2t_err_set(H2T_ETOOBIG, "%s: more than %llu bytes", path,
                           (unsigned long long)MAX_PAYLOAD);
    uint64_t nc = *cap ? *cap : need;
    while (nc < need)
        nc *= 2;
    if (nc > MAX_PAYLOAD)
        nc = MAX_PAYLOAD;
    uint8_t *nb = realloc(*buf, (size_t)nc);
    if (!nb)
        return h2t_err_set(H2T_ENOMEM, "reading %s: %llu bytes", path, (unsigned long long)nc);
    *buf = nb;
    *cap = (size_t)nc;
    return 0;
}

/* The gzip file's ISIZE (uncompressed size mod 2^32 of its last member) when it is a plausible
 * size for this file, else 0: only a first guess of the output size. */
static size_t gz_size_hint(int fd, const struct stat *sb)
{
    uint8_t t[4];
    if (!S_ISREG(sb->st_mode) || sb->st_size < 18 || pread(fd, t, 4, sb->st_size - 4) != 4)
        return 0;
    uint64_t isize =
        (uint64_t)t[0] | (uint64_t)t[1] << 8 | (uint64_t)t[2] << 16 | (uint64_t)t[3] << 24;
    /* deflate expands at most 1032:1 */
    return isize <= MAX_PAYLOAD && isize <= (uint64_t)sb->st_size * 1032 ? (size_t)isize : 0;
}

static int gunzip_fd(int fd, const char *path, uint8_t *in, size_t have, h2t_sha256 *hs,
                     uint8_t **buf, size_t *cap, size_t *len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK) /* gzip only */
        return h2t_err_set(H2T_ENOMEM, "inflating %s", path);
    int rc = 0, eof = have < IN_CHUNK;
    size_t n = 0;
    zs.next_in = in;
    zs.avail_in = (uInt)have;
    for (;;) {
        if (zs.avail_in == 0) {
            if (!eof && (rc = read_full(fd, path, in, IN_CHUNK, &have)) < 0)
                break;
            if (eof || have == 0) {
                rc = h2t_err_set(H2T_ECORRUPT,
                                 "%s: truncated or corrupt gzip data (unexpected end of file)",
                                 path);
                break;
            }
            eof = have < IN_CHUNK;
            zs.next_in = in;
            zs.avail_in = (uInt)have;
        }
        /* room 0 when the buffer is full: what is left may be the trailer alone, which
         * inflate reads without output; it asks for room with Z_BUF_ERROR (no progress) */
        size_t room = *cap - n < OUT_CHUNK ? *cap - n : OUT_CHUNK;
        zs.next_out = *buf + n;
        zs.avail_out = (uInt)room;
        int zr = inflate(&zs, Z_NO_FLUSH);
        size_t made = room - zs.avail_out;
        if (hs && made)
            h2t_sha256_update(hs, *buf + n, made);
        n += made;
        if (zr == Z_STREAM_END) {
            /* another member follows when the next two bytes are the magic */
            if (zs.avail_in < 2 && !eof) {
                size_t keep = zs.avail_in;
                memmove(in, zs.next_in, keep);
                if ((rc = read_full(fd, path, in + keep, IN_CHUNK - keep, &have)) < 0)
                    break;
                eof = have < IN_CHUNK - keep;
                zs.next_in = in;
                zs.avail_in = (uInt)(keep + have);
            }
            if (zs.avail_in < 2 || zs.next_in[0] != 0x1f || zs.next_in[1] != 0x8b)
                break;
            inflateReset(&zs);
            continue;
        }
        if (zr == Z_BUF_ERROR && room == 0) {
            if ((rc = out_reserve(path, buf, cap, (uint64_t)n + 1)) < 0)
                break;
            continue;
        }
        if (zr == Z_MEM_ERROR) {
            rc = h2t_err_set(H2T_ENOMEM, "inflating %s", path);
            break;
        }
        if (zr == Z_BUF_ERROR) { /* no progress with input and room: never expected */
            rc = h2t_err_set(H2T_ECORRUPT, "%s: inflate made no progress", path);
            break;
        }
        if (zr != Z_OK) { /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
            rc = h2t_err_set(H2T_ECORRUPT, "%s: %s", path,
                             zs.msg ? zs.msg : "corrupt compressed data");
            break;
        }
    }
    inflateEnd(&zs);
    *len = n;
    return rc;
}

/* *out (OWNED, len bytes) = the file, inflated when gzipped; hs: see above. */
static int read_source(const char *path, h2t_sha256 *hs, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "open %s: %s", path,
                           strerror(errno));
    uint8_t *in = malloc(IN_CHUNK), *buf = NULL;
    size_t cap = 0, n = 0, have = 0;
    int rc = 0;
    struct stat sb;
    if (!in) {
        rc = h2t_err_set(H2T_ENOMEM, "reading %s", path);
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        rc = h2t_err_set(H2T_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((rc = read_full(fd, path, in, IN_CHUNK, &have)) < 0)
        goto out;
    if (have >= 2 && in[0] == 0x1f && in[1] == 0x8b) {
        size_t hint = gz_size_hint(fd, &sb);
        if ((rc = out_reserve(path, &buf, &cap, hint ? hint : 1 << 20)) < 0)
            goto out;
        rc = gunzip_fd(fd, path, in, have, hs, &buf, &cap, &n);
        goto out;
    }
    /* as it is: the first chunk, then straight into the buffer (one spare byte sees EOF) */
    uint64_t want = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size + 1 : 1;
    if ((rc = out_reserve(path, &buf, &cap, want > have ? want : have + 1)) < 0)
        goto out;
    memcpy(buf, in, have);
    n = have;
    if (hs)
        h2t_sha256_update(hs, buf, n);
    for (int eof = have < IN_CHUNK; !eof;) {
        if (n == cap && (rc = out_reserve(path, &buf, &cap, (uint64_t)n + 1)) < 0)
            goto out;
        size_t room = cap - n < OUT_CHUNK ? cap - n : OUT_CHUNK, got;
        if ((rc = read_full(fd, path, buf + n, room, &got)) < 0)
            goto out;
        if (hs && got)
            h2t_sha256_update(hs, buf + n, got);
        n += got;
        eof = got < room;
    }
out:
    free(in);
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

static void hash_tag(h2t_sha256 *s, const char *tag)
{
    h2t_sha256_update(s, tag, strlen(tag) + 1);
}

static const char *base_name(const char *path, char *buf, size_t n)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t b = len;
    while (b > 0 && path[b - 1] != '/')
        b--;
    size_t k = len - b < n - 1 ? len - b : n - 1;
    memcpy(buf, path + b, k);
    buf[k] = '\0';
    return buf;
}

static int set_class_names(h2t_data *d, char **names, uint32_t n)
{
    d->info.class_names = names;
    d->info.n_classes = n;
    return 0;
}

static int numbered_classes(h2t_data *d, uint32_t n)
{
    char **v = calloc(n, sizeof *v);
    if (!v)
        return h2t_err_set(H2T_ENOMEM, "class names");
    for (uint32_t i = 0; i < n; i++) {
        char tmp[16];
        snprintf(tmp, sizeof tmp, "%u", i);
        v[i] = strdup(tmp);
        if (!v[i]) {
            for (uint32_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return h2t_err_set(H2T_ENOMEM, "class names");
        }
    }
    return set_class_names(d, v, n);
}

/* One name per line (trailing whitespace trimmed, blank lines ignored). *found = 0 when the
 * file does not exist. */
static int read_classes_file(h2t_data *d, const char *path, int *found)
{
    *found = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : h2t_err_set(H2T_EIO, "open %s: %s", path, strerror(errno));
    char **v = NULL;
    uint32_t n = 0, cap = 0;
    char line[H2T_CLASS_NAME_MAX + 8];
    int rc = 0;
    uint32_t lineno = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        lineno++;
        int whole = (l > 0 && line[l - 1] == '\n') || feof(f);
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ' ||
                         line[l - 1] == '\t'))
            line[--l] = '\0';
        if (!whole || l > H2T_CLASS_NAME_MAX) { /* never split one name into two classes */
            rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: a class name longer than %d bytes", path,
                             lineno, H2T_CLASS_NAME_MAX);
            break;
        }
        if (!l)
            continue;
        if (n == H2T_DATA_CLASSES_MAX) {
            rc = h2t_err_set(H2T_ECORRUPT, "%s line %u: more than %u class names", path, lineno,
                             H2T_DATA_CLASSES_MAX);
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = h2t_err_set(H2T_ENOMEM, "%s", path);
                break;
            }
            v = nv;
        }
        if (!(v[n] = strdup(line))) {
            rc = h2t_err_set(H2T_ENOMEM, "%s", path);
            break;
        }
        n++;
    }
    fclose(f);
    if (rc == 0 && n == 0)
        rc = h2t_err_set(H2T_ECORRUPT, "%s: no class names", path);
    if (rc < 0) {
        for (uint32_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *found = 1;
    return set_class_names(d, v, n);
}

static int labels_check(h2t_data *d, const char *what)
{
    uint32_t maxl = 0;
    for (uint32_t i = 0; i < d->n_all; i++) {
        if (d->labels_all[i] >= H2T_DATA_CLASSES_MAX) /* one bad label, not a million classes */
            return h2t_err_set(H2T_ECORRUPT,
                               "%s: label %u of sample %u: labels must be below %u (the most "
                               "classes a source may have): a damaged labels file?",
                               what, d->labels_all[i], i, H2T_DATA_CLASSES_MAX);
        if (d->labels_all[i] > maxl)
            maxl = d->labels_all[i];
    }
    if (d->info.class_names) {
        if (maxl >= d->info.n_classes)
            return h2t_err_set(H2T_ECORRUPT, "%s: label %u but only %u class names", what, maxl,
                               d->info.n_classes);
        return 0;
    }
    return numbered_classes(d, maxl + 1);
}

/* ---------------------------------------------------------------- idx */

/* Find DIR/base with one of the suffix spellings; path gets the first that exists. */
static int idx_find(const char *dir, const char *const *names, char *path, size_t n)
{
    static const char *const sfx[] = {"", ".gz"};
    for (int k = 0; names[k]; k++)
        for (int s = 0; s < 2; s++) {
            snprintf(path, n, "%s/%s%s", dir, names[k], sfx[s]);
            if (access(path, F_OK) == 0)
                return 1;
        }
    return 0;
}

/* Parse an IDX payload: magic 0 0 0x08 ndims, ndims big-endian u32 sizes, then bytes. */
static int idx_parse(const char *path, const uint8_t *buf, size_t len, int want_dims,
                     uint32_t dims[4], int *ndims_out, size_t *off)
{
    if (len < 4 || buf[0] != 0 || buf[1] != 0)
        return h2t_err_set(H2T_ECORRUPT, "%s: bad IDX magic (not an IDX file)", path);
    if (buf[2] != 0x08)
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: IDX data type 0x%02x (only 0x08, ubyte)", path,
                           buf[2]);
    int nd = buf[3];
    int ok = want_dims == 1 ? nd == 1 : (nd == 3 || nd == 4);
    if (!ok)
        return h2t_err_set(H2T_ECORRUPT, "%s: bad IDX magic: %d dimensions (want %s)", path, nd,
                           want_dims == 1 ? "1 for labels" : "3 or 4 for images");
    if (len < 4 + 4 * (size_t)nd)
        return h2t_err_set(H2T_ECORRUPT, "%s: truncated IDX header", path);
    uint64_t total = 1;
    for (int i = 0; i < nd; i++) {
        dims[i] = h2t_be32_get(buf + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > MAX_SAMPLES)
            return h2t_err_set(H2T_ECORRUPT, "%s: bad IDX count: dimension %d is %u", path, i,
                               dims[i]);
        total *= dims[i];
        if (total > MAX_PAYLOAD)
            return h2t_err_set(H2T_ETOOBIG, "%s: header claims more than %llu bytes", path,
                               (unsigned long long)MAX_PAYLOAD);
    }
    size_t h = 4 + 4 * (size_t)nd;
    if (len - h < total)
        return h2t_err_set(H2T_ECORRUPT,
                           "%s: truncated: header says %llu data bytes, file holds %zu", path,
                           (unsigned long long)total, len - h);
    if (len - h > total)
        return h2t_err_set(H2T_ECORRUPT, "%s: bad IDX count: %zu bytes after the %llu announced",
                           path, len - h - (size_t)total, (unsigned long long)total);
    if (nd == 4 && dims[3] != 1 && dims[3] != 3)
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: %u channels (1 or 3)", path, dims[3]);
    *ndims_out = nd;
    *off = h;
    return 0;
}

static const char *const fashion_names[] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                            "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};

/* One split's image and label files, read and parsed; hs (when not NULL) hashes them while
 * they are read. On failure rc < 0, err holds the detail (the reader may be another thread:
 * the detail is thread-local) and nothing is kept. */
typedef struct idx_split {
    char ip[1200], lp[1200];
    h2t_sha256 *hs;
    uint8_t *ib, *lb;
    size_t il, ll, ioff, loff;
    uint32_t idims[4], ldims[4];
    int ind, rc;
    char err[1024];
} idx_split;

static void *idx_split_read(void *arg)
{
    idx_split *sp = arg;
    int lnd;
    if ((sp->rc = read_source(sp->ip, sp->hs, &sp->ib, &sp->il)) < 0 ||
        (sp->rc = idx_parse(sp->ip, sp->ib, sp->il, 3, sp->idims, &sp->ind, &sp->ioff)) < 0 ||
        (sp->rc = read_source(sp->lp, sp->hs, &sp->lb, &sp->ll)) < 0 ||
        (sp->rc = idx_parse(sp->lp, sp->lb, sp->ll, 1, sp->ldims, &lnd, &sp->loff)) < 0)
        goto fail;
    if (sp->ldims[0] != sp->idims[0]) {
        sp->rc = h2t_err_set(H2T_ECORRUPT, "idx: %s has %u labels but %s has %u images", sp->lp,
                             sp->ldims[0], sp->ip, sp->idims[0]);
        goto fail;
    }
    return NULL;
fail:
    snprintf(sp->err, sizeof sp->err, "%s", h2t_err_detail());
    free(sp->ib);
    free(sp->lb);
    sp->ib = sp->lb = NULL;
    return NULL;
}

static int idx_open(h2t_data *d, const char *dir)
{
    static const char *const names[2][2][3] = {
        {{"train-images-idx3-ubyte", "train-images.idx3-ubyte", NULL},
         {"train-labels-idx1-ubyte", "train-labels.idx1-ubyte", NULL}},
        {{"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte", NULL},
         {"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte", NULL}},
    };
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return h2t_err_set(H2T_ENOTFOUND, "idx: %s is not a directory", dir);
    h2t_sha256 hs;
    h2t_sha256_init(&hs);
    hash_tag(&hs, "h2tdb-idx-v1");
    uint32_t *lab[2] = {NULL, NULL};
    int rc = 0, present = 0, has[2], missing[2];
    uint32_t h = 0, w = 0, c = 0;
    idx_split *sp = calloc(2, sizeof *sp);
    if (!sp)
        return h2t_err_set(H2T_ENOMEM, "idx %s", dir);
    for (int s = 0; s < 2; s++) {
        int hi = idx_find(dir, names[s][0], sp[s].ip, sizeof sp[s].ip);
        int hl = idx_find(dir, names[s][1], sp[s].lp, sizeof sp[s].lp);
        has[s] = hi && hl;
        missing[s] = hi != hl;
        if (hi != hl)
            snprintf(sp[s].err, sizeof sp[s].err, "idx: %s has %s but no %s", dir,
                     hi ? sp[s].ip : sp[s].lp, hi ? names[s][1][0] : names[s][0][0]);
    }
    /* The test split is read on a second thread while this one reads the train split and
     * hashes it as it comes; the test split is hashed after it. The errors are reported in
     * the order of a sequential read: the train split's first. */
    pthread_t th;
    int threaded = 0;
    if (missing[0]) {
        rc = h2t_err_set(H2T_ENOTFOUND, "%s", sp[0].err);
        goto out;
    }
    if (has[0] && has[1])
        threaded = pthread_create(&th, NULL, idx_split_read, &sp[1]) == 0;
    if (has[0]) {
        hash_tag(&hs, "train");
        sp[0].hs = &hs;
        idx_split_read(&sp[0]);
    }
    if (has[1] && !threaded) {
        if (!has[0]) { /* nothing to overlap: hash it while reading */
            hash_tag(&hs, "test");
            sp[1].hs = &hs;
        }
        idx_split_read(&sp[1]);
    }
    if (threaded)
        pthread_join(th, NULL);
    if (has[1] && !sp[1].hs && sp[1].rc == 0) {
        hash_tag(&hs, "test");
        h2t_sha256_update(&hs, sp[1].ib, sp[1].il);
        h2t_sha256_update(&hs, sp[1].lb, sp[1].ll);
    }
    for (int s = 0; s < 2; s++) {
        if (missing[s]) {
            rc = h2t_err_set(H2T_ENOTFOUND, "%s", sp[s].err);
            goto out;
        }
        if (!has[s])
            continue;
        if (sp[s].rc < 0) {
            rc = h2t_err_set(sp[s].rc, "%s", sp[s].err);
            goto out;
        }
        present++;
        uint32_t sc = sp[s].ind == 4 ? sp[s].idims[3] : 1;
        if (c && (sp[s].idims[1] != h || sp[s].idims[2] != w || sc != c)) {
            rc = h2t_err_set(H2T_ECORRUPT, "idx: %s images are %ux%ux%u, train images %ux%ux%u",
                             sp[s].ip, sp[s].idims[1], sp[s].idims[2], sc, h, w, c);
            goto out;
        }
        h = sp[s].idims[1];
        w = sp[s].idims[2];
        c = sc;
        d->idx_buf[s] = sp[s].ib;
        d->idx_img[s] = sp[s].ib + sp[s].ioff;
        d->idx_n[s] = sp[s].idims[0];
        sp[s].ib = NULL;
        lab[s] = malloc(sizeof(uint32_t) * sp[s].ldims[0]);
        if (!lab[s]) {
            rc = h2t_err_set(H2T_ENOMEM, "labels of %s", sp[s].lp);
            goto out;
        }
        for (uint32_t i = 0; i < sp[s].ldims[0]; i++)
            lab[s][i] = sp[s].lb[sp[s].loff + i];
    }
    if (!present) {
        rc = h2t_err_set(H2T_ENOTFOUND,
                         "idx: %s has neither train-images-idx3-ubyte[.gz] + "
                         "train-labels-idx1-ubyte[.gz] nor t10k-*",
                         dir);
        goto out;
    }
    if ((uint64_t)d->idx_n[0] + d->idx_n[1] > MAX_SAMPLES) {
        rc = h2t_err_set(H2T_ETOOBIG, "idx: %s: too many samples", dir);
        goto out;
    }
    d->n_all = d->idx_n[0] + d->idx_n[1];
    d->labels_all = malloc(sizeof(uint32_t) * d->n_all);
    d->split_all = malloc(d->n_all);
    if (!d->labels_all || !d->split_all) {
        rc = h2t_err_set(H2T_ENOMEM, "labels");
        goto out;
    }
    for (uint32_t i = 0; i < d->idx_n[0]; i++) {
        d->labels_all[i] = lab[0][i];
        d->split_all[i] = H2T_SPLIT_TRAIN;
    }
    for (uint32_t i = 0; i < d->idx_n[1]; i++) {
        d->labels_all[d->idx_n[0] + i] = lab[1][i];
        d->split_all[d->idx_n[0] + i] = H2T_SPLIT_TEST;
    }
    d->info.n_train = d->idx_n[0];
    d->info.n_test = d->idx_n[1];
    h2t_sha256_final(&hs, d->info.hash);
    d->info.pixel = H2T_PIX_U8;
    d->info.h = h;
    d->info.w = w;
    d->info.c = c;
    char bn[128], cp[1200];
    base_name(dir, bn, sizeof bn);
    snprintf(d->info.name, sizeof d->info.name, "%s", bn);
    snprintf(cp, sizeof cp, "%s/classes.txt", dir);
    int found;
    if ((rc = read_classes_file(d, cp, &found)) < 0)
        goto out;
    if (!found && strcasestr(bn, "fashion")) {
        char **v = calloc(10, sizeof *v);
        if (!v) {
            rc = h2t_err_set(H2T_ENOMEM, "class names");
            goto out;
        }
        for (int i = 0; i < 10; i++)
            if (!(v[i] = strdup(fashion_names[i]))) {
                for (int k = 0; k < i; k++)
                    free(v[k]);
                free(v);
                rc = h2t_err_set(H2T_ENOMEM, "class names");
                goto out;
            }
        set_class_names(d, v, 10);
    }
    rc = labels_check(d, dir);
out:
    for (int s = 0; s < 2; s++) {
        free(sp[s].ib);
        free(sp[s].lb);
    }
    free(sp);
    free(lab[0]);
    free(lab[1]);
    return rc;
}

/* ---------------------------------------------------------------- npy */

typedef struct npy_hdr {
    char descr[16];
    int fortran;
    int nd;
    uint64_t shape[8];
    size_t data_off;
} npy_hdr;

static int npy_parse(const char *path, const uint8_t *b, size_t len, npy_hdr *h)
{
    memset(h, 0, sizeof *h);
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return h2t_err_set(H2T_ECORRUPT, "%s: not a .npy file (bad magic)", path);
    size_t hl, ho;
    if (b[6] == 1) {
        hl = (size_t)b[8] | (size_t)b[9] << 8;
        ho = 10;
    } else if (b[6] == 2 || b[6] == 3) {
        if (len < 12)
            return h2t_err_set(H2T_ECORRUPT, "%s: truncated .npy header", path);
        hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        ho = 12;
    } else {
        return h2t_err_set(H2T_EVERSION, "%s: .npy format version %d", path, b[6]);
    }
    if (hl > 1 << 20 || len < ho + hl)
        return h2t_err_set(H2T_ECORRUPT, "%s: truncated .npy header", path);
    char hdr[4096];
    if (hl >= sizeof hdr)
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: .npy header of %zu bytes", path, hl);
    memcpy(hdr, b + ho, hl);
    hdr[hl] = '\0';
    const char *p = strstr(hdr, "'descr'");
    if (!p || !(p = strchr(p + 7, '\'')))
        return h2t_err_set(H2T_ECORRUPT, "%s: .npy header without descr", path);
    const char *e = strchr(p + 1, '\'');
    if (!e || (size_t)(e - p - 1) >= sizeof h->descr)
        return h2t_err_set(H2T_ECORRUPT, "%s: bad .npy descr", path);
    memcpy(h->descr, p + 1, (size_t)(e - p - 1));
    p = strstr(hdr, "'fortran_order'");
    if (!p)
        return h2t_err_set(H2T_ECORRUPT, "%s: .npy header without fortran_order", path);
    p += 15;
    while (*p == ':' || *p == ' ')
        p++;
    h->fortran = !strncmp(p, "True", 4);
    p = strstr(hdr, "'shape'");
    if (!p || !(p = strchr(p, '(')))
        return h2t_err_set(H2T_ECORRUPT, "%s: .npy header without shape", path);
    p++;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || h->nd == 8)
            return h2t_err_set(H2T_ECORRUPT, "%s: bad .npy shape", path);
        h->shape[h->nd++] = v;
        p = end;
        while (*p == 'L')
            p++;
    }
    h->data_off = ho + hl;
    return 0;
}

static int npy_elem_size(const char *descr)
{
    if (!strcmp(descr, "|u1") || !strcmp(descr, "|i1") || !strcmp(descr, "|b1"))
        return 1;
    if (!strcmp(descr, "<u2") || !strcmp(descr, "<i2"))
        return 2;
    if (!strcmp(descr, "<u4") || !strcmp(descr, "<i4") || !strcmp(descr, "<f4"))
        return 4;
    if (!strcmp(descr, "<u8") || !strcmp(descr, "<i8"))
        return 8;
    return 0;
}

static int npy_check_size(const char *path, const npy_hdr *h, size_t len, size_t *bytes)
{
    uint64_t n = (uint64_t)npy_elem_size(h->descr);
    for (int i = 0; i < h->nd; i++) {
        if (h->shape[i] == 0 || h->shape[i] > MAX_PAYLOAD)
            return h2t_err_set(H2T_ECORRUPT, "%s: .npy dimension %d is %llu", path, i,
                               (unsigned long long)h->shape[i]);
        n *= h->shape[i];
        if (n > MAX_PAYLOAD)
            return h2t_err_set(H2T_ETOOBIG, "%s: more than %llu bytes", path,
                               (unsigned long long)MAX_PAYLOAD);
    }
    if (len - h->data_off < n)
        return h2t_err_set(H2T_ECORRUPT, "%s: truncated: shape needs %llu data bytes, file has %zu",
                           path, (unsigned long long)n, len - h->data_off);
    if (len - h->data_off > n)
        return h2t_err_set(H2T_ECORRUPT, "%s: %zu bytes after the data the shape announces", path,
                           len - h->data_off - (size_t)n);
    *bytes = (size_t)n;
    return 0;
}

static int npy_open(h2t_data *d, const char *arg)
{
    char img[1024], lab[1024] = "";
    const char *comma = strchr(arg, ',');
    size_t il = comma ? (size_t)(comma - arg) : strlen(arg);
    if (il == 0 || il >= sizeof img || (comma && strlen(comma + 1) >= sizeof lab))
        return h2t_err_set(H2T_EINVAL, "npy: bad spec '%s' (npy:IMAGES.npy[,LABELS.npy])", arg);
    memcpy(img, arg, il);
    img[il] = '\0';
    if (comma)
        snprintf(lab, sizeof lab, "%s", comma + 1);
    int rc = 0;
    int fd = open(img, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "open %s: %s", img,
                           strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        close(fd);
        return h2t_err_set(H2T_ECORRUPT, "%s: empty or unreadable", img);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return h2t_err_set(H2T_EIO, "mmap %s: %s", img, strerror(errno));
    d->map_base = m;
    d->map_len = (size_t)sb.st_size;
    npy_hdr h;
    size_t bytes;
    if ((rc = npy_parse(img, m, d->map_len, &h)) < 0)
        return rc;
    if (h.fortran)
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: Fortran-order array (save it C-ordered)", img);
    if (!strcmp(h.descr, "|u1")) {
        if (h.nd != 3 && h.nd != 4)
            return h2t_err_set(H2T_EUNSUPPORTED,
                               "%s: uint8 images must be N x H x W or N x H x W x C (got %d dims)",
                               img, h.nd);
        uint64_t c = h.nd == 4 ? h.shape[3] : 1;
        if (c != 1 && c != 3 && c != 4)
            return h2t_err_set(H2T_EUNSUPPORTED, "%s: %llu channels (1, 3 or 4)", img,
                               (unsigned long long)c);
        d->info.pixel = H2T_PIX_U8;
        d->info.h = (uint32_t)h.shape[1];
        d->info.w = (uint32_t)h.shape[2];
        d->info.c = (uint32_t)c;
    } else if (!strcmp(h.descr, "<f4")) {
        if (h.nd != 4)
            return h2t_err_set(H2T_EUNSUPPORTED, "%s: float32 tensors must be N x C x H x W", img);
        d->info.pixel = H2T_PIX_F32;
        d->info.c = (uint32_t)h.shape[1];
        d->info.h = (uint32_t)h.shape[2];
        d->info.w = (uint32_t)h.shape[3];
    } else {
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: dtype '%s' (uint8 '|u1' or float32 '<f4')", img,
                           h.descr);
    }
    if ((rc = npy_check_size(img, &h, d->map_len, &bytes)) < 0)
        return rc;
    if (h.shape[0] > MAX_SAMPLES)
        return h2t_err_set(H2T_ETOOBIG, "%s: %llu samples", img, (unsigned long long)h.shape[0]);
    if (d->info.pixel == H2T_PIX_F32 && h.data_off % 4 != 0)
        return h2t_err_set(H2T_EUNSUPPORTED, "%s: float data not 4-byte aligned", img);
    d->npy_data = (const uint8_t *)m + h.data_off;
    d->n_all = (uint32_t)h.shape[0];
    h2t_sha256 hs;
    h2t_sha256_init(&hs);
    hash_tag(&hs, "h2tdb-npy-v1");
    h2t_sha256_update(&hs, m, d->map_len);
    d->labels_all = calloc(d->n_all, sizeof(uint32_t));
    d->split_all = calloc(d->n_all, 1); /* all H2T_SPLIT_TRAIN */
    if (!d->labels_all || !d->split_all)
        return h2t_err_set(H2T_ENOMEM, "labels");
    if (lab[0]) {
        uint8_t *lb;
        size_t ll;
        /* read_source reads plain files as they are */
        if ((rc = read_source(lab, NULL, &lb, &ll)) < 0)
            return rc;
        npy_hdr lh;
        size_t lbytes;
        int es;
        if ((rc = npy_parse(lab, lb, ll, &lh)) < 0)
            goto lab_out;
        es = npy_elem_size(lh.descr);
        if (!es || !strcmp(lh.descr, "<f4") || !strcmp(lh.descr, "|b1")) {
            rc = h2t_err_set(H2T_EUNSUPPORTED, "%s: labels of dtype '%s' (an integer type)", lab,
                             lh.descr);
            goto lab_out;
        }
        if (lh.nd != 1 || lh.fortran) {
            rc = h2t_err_set(H2T_EUNSUPPORTED, "%s: labels must be a 1-D array", lab);
            goto lab_out;
        }
        if ((rc = npy_check_size(lab, &lh, ll, &lbytes)) < 0)
            goto lab_out;
        if (lh.shape[0] != d->n_all) {
            rc = h2t_err_set(H2T_ECORRUPT, "npy: %s has %llu labels but %s has %u images", lab,
                             (unsigned long long)lh.shape[0], img, d->n_all);
            goto lab_out;
        }
        int sgn = lh.descr[1] == 'i';
        for (uint32_t i = 0; i < d->n_all; i++) {
            const uint8_t *q = lb + lh.data_off + (size_t)i * es;
            uint64_t u = 0;
            for (int k = 0; k < es; k++)
                u |= (uint64_t)q[k] << (8 * k);
            int neg = sgn && (u >> (8 * es - 1)) & 1;
            if (neg || u > 0xffffffu) {
                rc = h2t_err_set(H2T_ECORRUPT, "%s: label %u of sample %u is out of range", lab,
                                 (unsigned)u, i);
                goto lab_out;
            }
            d->labels_all[i] = (uint32_t)u;
        }
        hash_tag(&hs, "labels");
        h2t_sha256_update(&hs, lb, ll);
    lab_out:
        free(lb);
        if (rc < 0)
            return rc;
    } else {
        char **v = calloc(1, sizeof *v);
        if (!v || !(v[0] = strdup("none"))) {
            free(v);
            return h2t_err_set(H2T_ENOMEM, "class names");
        }
        set_class_names(d, v, 1);
    }
    h2t_sha256_final(&hs, d->info.hash);
    d->info.n_train = d->n_all;
    char bn[128];
    base_name(img, bn, sizeof bn);
    size_t bl = strlen(bn);
    if (bl > 4 && !strcmp(bn + bl - 4, ".npy"))
        bn[bl - 4] = '\0';
    snprintf(d->info.name, sizeof d->info.name, "%s", bn);
    return labels_check(d, lab[0] ? lab : img);
}

/* ---------------------------------------------------------------- folder */

static int is_image_name(const char *n)
{
    const char *dot = strrchr(n, '.');
    return dot &&
           (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir that pass keep(); *out OWNED. */
static int list_dir(const char *dir, int want_dirs, char ***out, uint32_t *n)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "open directory %s: %s", dir,
                           strerror(errno));
    char **v = NULL;
    uint32_t k = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0) {
            rc = h2t_err_set(H2T_EIO, "%s: %s", p, strerror(errno));
            break;
        }
        if (want_dirs ? !S_ISDIR(sb.st_mode) : !(S_ISREG(sb.st_mode) && is_image_name(e->d_name)))
            continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = h2t_err_set(H2T_ENOMEM, "listing %s", dir);
                break;
            }
            v = nv;
        }
        if (!(v[k] = strdup(e->d_name))) {
            rc = h2t_err_set(H2T_ENOMEM, "listing %s", dir);
            break;
        }
        k++;
    }
    closedir(dp);
    if (rc < 0) {
        for (uint32_t i = 0; i < k; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    if (k)
        qsort(v, k, sizeof *v, cmp_str);
    *out = v;
    *n = k;
    return 0;
}

static int hash_file_into(h2t_sha256 *hs, const char *path, uint8_t head[8], size_t *got)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "image %s: %s", path,
                           strerror(errno));
    uint8_t buf[65536];
    size_t n, total = 0;
    *got = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (total == 0) {
            *got = n < 8 ? n : 8;
            memcpy(head, buf, *got);
        }
        total += n;
        h2t_sha256_update(hs, buf, n);
    }
    int err = ferror(f);
    fclose(f);
    if (err)
        return h2t_err_set(H2T_EIO, "image %s: read error", path);
    return 0;
}

static int folder_open(h2t_data *d, const char *dir)
{
    char **classes = NULL;
    uint32_t nc = 0;
    int rc = list_dir(dir, 1, &classes, &nc);
    if (rc < 0)
        return rc;
    if (nc == 0) {
        free(classes);
        return h2t_err_set(H2T_ENOTFOUND, "folder: %s has no class sub-folders", dir);
    }
    set_class_names(d, classes, nc);
    h2t_sha256 hs;
    h2t_sha256_init(&hs);
    hash_tag(&hs, "h2tdb-folder-v1");
    uint32_t cap = 0;
    for (uint32_t c = 0; c < nc; c++) {
        char cdir[4096];
        snprintf(cdir, sizeof cdir, "%s/%s", dir, classes[c]);
        char **files = NULL;
        uint32_t nf = 0;
        if ((rc = list_dir(cdir, 0, &files, &nf)) < 0)
            return rc;
        hash_tag(&hs, classes[c]);
        for (uint32_t i = 0; i < nf && rc == 0; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", cdir, files[i]);
            hash_tag(&hs, files[i]);
            uint8_t head[8] = {0};
            size_t got = 0;
            if ((rc = hash_file_into(&hs, p, head, &got)) < 0)
                break;
            int png = got >= 8 && !memcmp(head, "\x89PNG\r\n\x1a\n", 8);
            int jpg = got >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff;
            if (!png && !jpg) {
                rc = h2t_err_set(H2T_ECORRUPT, "image %s: not a PNG or JPEG file", p);
                break;
            }
            if (d->n_all == MAX_SAMPLES) {
                rc = h2t_err_set(H2T_ETOOBIG, "folder: %s: too many images", dir);
                break;
            }
            if (d->n_all == cap) {
                cap = cap ? cap * 2 : 256;
                char **np = realloc(d->paths, cap * sizeof *np);
                uint32_t *nl = realloc(d->labels_all, cap * sizeof *nl);
                if (np)
                    d->paths = np;
                if (nl)
                    d->labels_all = nl;
                if (!np || !nl) {
                    rc = h2t_err_set(H2T_ENOMEM, "folder %s", dir);
                    break;
                }
            }
            if (!(d->paths[d->n_all] = strdup(p))) {
                rc = h2t_err_set(H2T_ENOMEM, "folder %s", dir);
                break;
            }
            d->labels_all[d->n_all++] = c;
        }
        for (uint32_t i = 0; i < nf; i++)
            free(files[i]);
        free(files);
        if (rc < 0)
            return rc;
    }
    if (d->n_all == 0)
        return h2t_err_set(H2T_ENOTFOUND, "folder: no .png/.jpg/.jpeg images under %s", dir);
    d->split_all = calloc(d->n_all, 1);
    if (!d->split_all)
        return h2t_err_set(H2T_ENOMEM, "folder %s", dir);
    h2t_sha256_final(&hs, d->info.hash);
    d->info.n_train = d->n_all;
    d->info.pixel = H2T_PIX_U8;
    base_name(dir, d->info.name, sizeof d->info.name);
    return 0;
}

/* PNG and JPEG decoding into d->pix as H x W x C (C = 1 or 3; alpha dropped, palette and
 * 16-bit expanded / reduced). */
static int pix_reserve(h2t_data *d, size_t n, const char *path)
{
    if (n <= d->pix_cap)
        return 0;
    uint8_t *p = realloc(d->pix, n);
    if (!p)
        return h2t_err_set(H2T_ENOMEM, "image %s: %zu bytes", path, n);
    d->pix = p;
    d->pix_cap = n;
    return 0;
}

typedef struct png_err_ctx {
    jmp_buf jb;
    char msg[200];
} png_err_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_err_ctx *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* header_only: check the header (size, channels) and stop before the pixels. */
static int decode_png(h2t_data *d, FILE *f, const char *path, h2t_image *out, int header_only)
{
    png_err_ctx ec;
    ec.msg[0] = '\0';
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &ec, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = 0;
    if (!png || !info) {
        rc = h2t_err_set(H2T_ENOMEM, "image %s", path);
        goto out;
    }
    if (setjmp(ec.jb)) {
        rc = h2t_err_set(H2T_ECORRUPT, "image %s: %s", path, ec.msg);
        goto out;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ct = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16)
        png_set_strip_16(png);
    if (ct == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    png_set_strip_alpha(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    if ((ch != 1 && ch != 3) || w == 0 || h == 0 || w > 65535 || h > 65535) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "image %s: %ux%u with %d channels", path, (unsigned)w,
                         (unsigned)h, ch);
        goto out;
    }
    if (header_only)
        goto out;
    if ((rc = pix_reserve(d, (size_t)w * h * ch, path)) < 0)
        goto out;
    rows = malloc(sizeof(png_bytep) * h);
    if (!rows) {
        rc = h2t_err_set(H2T_ENOMEM, "image %s", path);
        goto out;
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = d->pix + (size_t)y * w * ch;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    out->pixel = H2T_PIX_U8;
    out->w = w;
    out->h = h;
    out->c = (uint32_t)ch;
    out->data = d->pix;
out:
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    free(rows);
    return rc;
}

typedef struct jpg_err_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} jpg_err_ctx;

static void jpg_on_error(j_common_ptr cinfo)
{
    jpg_err_ctx *e = (jpg_err_ctx *)cinfo->err;
    longjmp(e->jb, 1);
}

/* Warnings (level -1) are corrupt-data reports such as "Premature end of JPEG file": libjpeg
 * would go on with gray filler; a truncated image must be an error, so they raise. */
static void jpg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpg_on_error(cinfo);
}

static int decode_jpeg(h2t_data *d, FILE *f, const char *path, h2t_image *out, int header_only)
{
    struct jpeg_decompress_struct ci;
    jpg_err_ctx ec;
    volatile int rc = 0;
    ci.err = jpeg_std_error(&ec.pub);
    ec.pub.error_exit = jpg_on_error;
    ec.pub.emit_message = jpg_on_message;
    if (setjmp(ec.jb)) {
        char msg[JMSG_LENGTH_MAX];
        ec.pub.format_message((j_common_ptr)&ci, msg);
        jpeg_destroy_decompress(&ci);
        return h2t_err_set(H2T_ECORRUPT, "image %s: %s", path, msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, f);
    jpeg_read_header(&ci, TRUE);
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&ci);
        return h2t_err_set(H2T_EUNSUPPORTED, "image %s: CMYK JPEG", path);
    }
    if (header_only) {
        int ok = ci.image_width > 0 && ci.image_height > 0 &&
                 (ci.num_components == 1 || ci.num_components == 3);
        uint32_t nc = (uint32_t)ci.num_components;
        jpeg_destroy_decompress(&ci);
        return ok ? 0
                  : h2t_err_set(H2T_EUNSUPPORTED, "image %s: a JPEG with %u components", path, nc);
    }
    ci.out_color_space = ci.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&ci);
    uint32_t w = ci.output_width, h = ci.output_height, ch = (uint32_t)ci.output_components;
    if ((rc = pix_reserve(d, (size_t)w * h * ch, path)) < 0) {
        jpeg_destroy_decompress(&ci);
        return rc;
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = d->pix + (size_t)ci.output_scanline * w * ch;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    out->pixel = H2T_PIX_U8;
    out->w = w;
    out->h = h;
    out->c = ch;
    out->data = d->pix;
    return 0;
}

static int folder_read(h2t_data *d, uint32_t src, h2t_image *out, int header_only)
{
    const char *path = d->paths[src];
    FILE *f = fopen(path, "rb");
    if (!f)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "image %s: %s", path,
                           strerror(errno));
    uint8_t head[8] = {0};
    size_t got = fread(head, 1, 8, f);
    rewind(f);
    int rc;
    if (got == 8 && !memcmp(head, "\x89PNG\r\n\x1a\n", 8))
        rc = decode_png(d, f, path, out, header_only);
    else if (got >= 3 && head[0] == 0xff && head[1] == 0xd8)
        rc = decode_jpeg(d, f, path, out, header_only);
    else
        rc = h2t_err_set(H2T_ECORRUPT, "image %s: not a PNG or JPEG file", path);
    fclose(f);
    return rc;
}

int h2t_image_decode(const void *buf, size_t len, const char *what, h2t_image *out,
                     uint8_t **pixels)
{
    const uint8_t *b = buf;
    *pixels = NULL;
    int png = len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8);
    int jpg = len >= 3 && b[0] == 0xff && b[1] == 0xd8;
    if (!png && !jpg)
        return h2t_err_set(H2T_ECORRUPT, "image %s: not a PNG or JPEG (%zu bytes)", what, len);
    FILE *f = fmemopen((void *)buf, len, "rb");
    if (!f)
        return h2t_err_set(H2T_ENOMEM, "image %s: %s", what, strerror(errno));
    h2t_data d;
    memset(&d, 0, sizeof d);
    int rc = png ? decode_png(&d, f, what, out, 0) : decode_jpeg(&d, f, what, out, 0);
    fclose(f);
    if (rc < 0) {
        free(d.pix);
        return rc;
    }
    *pixels = d.pix;
    return 0;
}

/* ---------------------------------------------------------------- public */

static void view_reset(h2t_data *d)
{
    d->info.n_samples = d->n_all;
    d->info.labels = d->labels_all;
    d->info.split = d->split_all;
}

int h2t_data_open(const char *spec, h2t_data **out)
{
    if (!spec)
        return h2t_err_set(H2T_EINVAL, "no data spec");
    h2t_data *d = calloc(1, sizeof *d);
    if (!d)
        return h2t_err_set(H2T_ENOMEM, "data");
    int rc;
    if (strlen(spec) >= sizeof d->info.uri - 32) {
        rc = h2t_err_set(H2T_EINVAL, "data spec too long");
        goto fail;
    }
    snprintf(d->info.uri, sizeof d->info.uri, "%s", spec);
    if (!strncmp(spec, "idx:", 4)) {
        d->kind = KIND_IDX;
        d->info.kind = "idx";
        rc = idx_open(d, spec + 4);
    } else if (!strncmp(spec, "folder:", 7)) {
        d->kind = KIND_FOLDER;
        d->info.kind = "folder";
        rc = folder_open(d, spec + 7);
    } else if (!strncmp(spec, "npy:", 4)) {
        d->kind = KIND_NPY;
        d->info.kind = "npy";
        rc = npy_open(d, spec + 4);
    } else {
        rc = h2t_err_set(
            H2T_EINVAL,
            "data spec '%s': expected idx:DIR, folder:DIR or npy:IMAGES.npy[,LABELS.npy]", spec);
    }
    if (rc < 0)
        goto fail;
    memcpy(d->hash_all, d->info.hash, 32);
    d->name_len = strlen(d->info.name);
    d->uri_len = strlen(d->info.uri);
    view_reset(d);
    *out = d;
    return 0;
fail:
    h2t_data_close(d);
    return rc;
}

void h2t_data_close(h2t_data *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->info.n_classes; i++)
        free(d->info.class_names[i]);
    free(d->info.class_names);
    free(d->labels_all);
    free(d->split_all);
    free(d->map);
    free(d->labels);
    free(d->split);
    free(d->idx_buf[0]);
    free(d->idx_buf[1]);
    if (d->map_base)
        munmap(d->map_base, d->map_len);
    if (d->paths)
        for (uint32_t i = 0; i < d->n_all; i++)
            free(d->paths[i]);
    free(d->paths);
    free(d->pix);
    free(d);
}

const h2t_data_info *h2t_data_info_get(const h2t_data *d)
{
    return &d->info;
}

int h2t_data_select(h2t_data *d, uint32_t n_train, uint32_t n_test)
{
    uint32_t have[2] = {0, 0};
    for (uint32_t i = 0; i < d->n_all; i++)
        have[d->split_all[i] == H2T_SPLIT_TEST]++;
    uint32_t want[2] = {n_train == UINT32_MAX ? have[0] : n_train,
                        n_test == UINT32_MAX ? have[1] : n_test};
    if (want[0] > have[0] || want[1] > have[1] || want[0] + want[1] == 0)
        return h2t_err_set(H2T_EINVAL,
                           "selection train %u + test %u: the source has %u train and %u test "
                           "samples",
                           want[0], want[1], have[0], have[1]);
    uint32_t n = want[0] + want[1];
    uint32_t *map = malloc(sizeof(uint32_t) * n), *lab = malloc(sizeof(uint32_t) * n);
    uint8_t *sp = malloc(n);
    if (!map || !lab || !sp) {
        free(map);
        free(lab);
        free(sp);
        return h2t_err_set(H2T_ENOMEM, "selection");
    }
    uint32_t k = 0;
    for (int s = 0; s < 2; s++) {
        uint32_t taken = 0;
        for (uint32_t i = 0; i < d->n_all && taken < want[s]; i++)
            if ((d->split_all[i] == H2T_SPLIT_TEST) == s) {
                map[k] = i;
                lab[k] = d->labels_all[i];
                sp[k] = (uint8_t)s;
                k++;
                taken++;
            }
    }
    free(d->map);
    free(d->labels);
    free(d->split);
    d->map = map;
    d->labels = lab;
    d->split = sp;
    d->info.n_samples = n;
    d->info.labels = lab;
    d->info.split = sp;
    d->info.n_train = want[0];
    d->info.n_test = want[1];
    /* a selection is relative to the whole source, not to an earlier selection */
    size_t bl = d->name_len;
    d->info.name[bl] = '\0';
    d->info.uri[d->uri_len] = '\0';
    memcpy(d->info.hash, d->hash_all, 32);
    if (want[0] != have[0] || want[1] != have[1]) {
        char sel[64];
        snprintf(sel, sizeof sel, "[train:%u,test:%u]", want[0], want[1]);
        /* name and uri carry the selection; the hash covers it */
        if (bl + strlen(sel) < sizeof d->info.name)
            strcat(d->info.name, sel);
        strcat(d->info.uri, sel);
        h2t_sha256 hs;
        h2t_sha256_init(&hs);
        hash_tag(&hs, "h2tdb-select-v1");
        h2t_sha256_update(&hs, d->hash_all, 32);
        h2t_sha256_update(&hs, sel, strlen(sel));
        h2t_sha256_final(&hs, d->info.hash);
    }
    return 0;
}

int h2t_data_read(h2t_data *d, uint32_t i, h2t_image *out)
{
    if (i >= d->info.n_samples)
        return h2t_err_set(H2T_EINVAL, "sample %u of %u", i, d->info.n_samples);
    uint32_t src = d->map ? d->map[i] : i;
    size_t per = (size_t)d->info.c * d->info.h * d->info.w;
    switch (d->kind) {
    case KIND_IDX: {
        int s = src >= d->idx_n[0];
        uint32_t k = s ? src - d->idx_n[0] : src;
        out->pixel = H2T_PIX_U8;
        out->c = d->info.c;
        out->h = d->info.h;
        out->w = d->info.w;
        out->data = d->idx_img[s] + (size_t)k * per;
        return 0;
    }
    case KIND_NPY:
        out->pixel = d->info.pixel;
        out->c = d->info.c;
        out->h = d->info.h;
        out->w = d->info.w;
        out->data = d->npy_data + (size_t)src * per * (d->info.pixel == H2T_PIX_F32 ? 4 : 1);
        return 0;
    default:
        return folder_read(d, src, out, 0);
    }
}

int h2t_data_check(h2t_data *d)
{
    if (d->kind != KIND_FOLDER)
        return 0;
    for (uint32_t i = 0; i < d->info.n_samples; i++) {
        h2t_image im;
        int rc = folder_read(d, d->map ? d->map[i] : i, &im, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}
