/*
 * storage/store.c - the LMDB feature store (contract: storage/store.h).
 *
 * Layout on disk: one LMDB environment per directory (data.mdb, lock.mdb), one named database
 * per table of docs/storage.md. Keys are big-endian; record values are a small length-checked
 * little-endian encoding (wb_* / rb_*), so a damaged record is H2T_ECORRUPT, never a crash.
 * Feature blocks and statistics are raw host-order (x86-64: little-endian) arrays.
 *
 * Concurrency: every transaction runs while holding st->lock shared; growing the map takes it
 * exclusively, because mdb_env_set_mapsize needs no live transaction in this process. The
 * environment is opened with MDB_NOTLS so read transactions are not tied to thread slots.
 */
#include "storage/store.h"
#include "common/cpu.h"
#include "common/err.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ST_HAVE_F16C_PATH 1
#endif

/* internal: the transaction ran out of map; st_run grows the map and retries */
#define ST_MAPFULL (-1000)
#define ST_DEFAULT_MAP ((uint64_t)64 << 20)
#define ST_GROW_WAIT_S 30
#define ST_STREAM_BYTES ((uint64_t)1 << 20)
#define ST_MIN_BLOCK ((size_t)128 << 10)

enum {
    T_META,
    T_SOURCES,
    T_LABELS,
    T_MODELS,
    T_EXTRACTIONS,
    T_FEATURES,
    T_STATS,
    T_TASKS,
    T_JOBS,
    T_RESULTS,
    T_COUNT
};
static const char *const table_names[T_COUNT] = {"meta",        "sources",  "labels", "models",
                                                 "extractions", "features", "stats",  "tasks",
                                                 "jobs",        "results"};

struct h2t_store {
    MDB_env *env;
    MDB_dbi dbi[T_COUNT];
    pthread_rwlock_t lock; /* shared: any transaction; exclusive: map resize */
    pthread_mutex_t gmu;   /* guards growing; new transactions wait while it is set */
    pthread_cond_t gcv;
    int growing;
    uint64_t map_size; /* read under lock shared, written under lock exclusive */
    unsigned flags;
    int f16c;       /* the CPU converts half floats (F16C): checked once at open */
    int service_fd; /* DIR/serve.lock while h2t_store_service_lock holds it, else -1 */
    int open_fd;    /* DIR/open.lock, flock'ed shared while open (exclusive: compacting); -1
                       where the file cannot be opened (a read-only medium) */
    char dir[1024];
    struct store_set *set;    /* a store set read as one (see "store sets read as one"), or NULL */
    h2t_store_write_times wt; /* h2t_store_features_write's time split (store.h) */
    int drop_blocks;          /* h2t_store_features_cache(st, 0): drop written blocks */
};

/* store sets read as one (the end of this file) */
struct store_set;
static int set_open_manifest(const char *dir, unsigned flags, h2t_store **out);
static void set_close(h2t_store *st);
static int set_ext_load(h2t_store *st, uint32_t id, h2t_extraction **out);
static h2t_extraction *set_whole(const h2t_store *st);
static int set_read_only(const h2t_store *st, const char *what);
static h2t_store *set_shard0(const h2t_store *st);
static int set_layer_read(h2t_store *st, uint32_t ext, uint32_t layer, const uint32_t *samples,
                          uint32_t first, uint32_t n, float *out, size_t ld);
static int set_stats_get(h2t_store *st, uint32_t ext, uint32_t layer, h2t_layer_stats **out);
static int set_verify_shards(h2t_store *st, h2t_store_problem_fn fn, void *ud,
                             h2t_store_verify_report *rep);

struct h2t_store_reader {
    h2t_store *st;
    MDB_txn *txn;
    MDB_cursor *cur;
};

/* ------------------------------------------------------------------------------------------ */
/* error translation                                                                          */

static int st_mdb(const h2t_store *st, int rc, const char *what)
{
    int code;
    switch (rc) {
    case MDB_MAP_FULL:
        return ST_MAPFULL;
    case MDB_NOTFOUND:
        code = H2T_ENOTFOUND;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_BAD_VALSIZE:
        code = H2T_ECORRUPT;
        break;
    case MDB_VERSION_MISMATCH:
        code = H2T_EVERSION;
        break;
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
        code = H2T_EBUSY;
        break;
    case EACCES:
    case EPERM:
    case EROFS:
        code = H2T_EPERM;
        break;
    case ENOMEM:
        code = H2T_ENOMEM;
        break;
    case ENOSPC:
    case EDQUOT:
        return h2t_err_set(H2T_ENOSPC, "store %s: %s: no space left on device (%s)", st->dir, what,
                           mdb_strerror(rc));
    case EIO: {
        /* LMDB reports a short write as EIO: on a (nearly) full file system that is a full
         * disk, and says so */
        struct statvfs fs;
        if (statvfs(st->dir, &fs) == 0) {
            uint64_t free_b = (uint64_t)fs.f_bavail * fs.f_frsize;
            uint64_t size_b = (uint64_t)fs.f_blocks * fs.f_frsize;
            if (free_b < ((uint64_t)16 << 20) || free_b < size_b / 100)
                return h2t_err_set(H2T_ENOSPC,
                                   "store %s: %s: no space left on device (%llu KiB free of "
                                   "%llu KiB)",
                                   st->dir, what, (unsigned long long)(free_b >> 10),
                                   (unsigned long long)(size_b >> 10));
        }
        code = H2T_EIO;
        break;
    }
    default:
        code = H2T_ESTORE;
        break;
    }
    return h2t_err_set(code, "store %s: %s: %s", st->dir, what, mdb_strerror(rc));
}

/* ------------------------------------------------------------------------------------------ */
/* record encoding                                                                            */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void wb_put(wbuf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void wb_u32(wbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wb_put(b, x, 4);
}

static void wb_u64(wbuf *b, uint64_t v)
{
    wb_u32(b, (uint32_t)v);
    wb_u32(b, (uint32_t)(v >> 32));
}

static void wb_f64(wbuf *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    wb_u64(b, v);
}

/* a string field of a fixed-size struct array (not necessarily terminated) */
static void wb_strn(wbuf *b, const char *s, size_t cap)
{
    size_t n = s ? strnlen(s, cap) : 0;
    wb_u32(b, (uint32_t)n);
    wb_put(b, s, n);
}

static void wb_blob(wbuf *b, const void *d, size_t n)
{
    wb_u64(b, n);
    wb_put(b, d, n);
}

typedef struct rbuf {
    const uint8_t *p;
    size_t len, off;
    int bad;
} rbuf;

static const uint8_t *rb_take(rbuf *b, size_t n)
{
    if (b->bad || n > b->len - b->off) {
        b->bad = 1;
        return NULL;
    }
    const uint8_t *p = b->p + b->off;
    b->off += n;
    return p;
}

static uint32_t rb_u32(rbuf *b)
{
    const uint8_t *x = rb_take(b, 4);
    return x ? (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24
             : 0;
}

static uint64_t rb_u64(rbuf *b)
{
    uint64_t lo = rb_u32(b);
    return lo | (uint64_t)rb_u32(b) << 32;
}

static double rb_f64(rbuf *b)
{
    uint64_t v = rb_u64(b);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static void rb_bytes(rbuf *b, void *dst, size_t n)
{
    const uint8_t *x = rb_take(b, n);
    if (x)
        memcpy(dst, x, n);
}

/* into a fixed char array of cap bytes (always terminated) */
static void rb_str(rbuf *b, char *dst, size_t cap)
{
    uint32_t n = rb_u32(b);
    if (n >= cap) {
        b->bad = 1;
        dst[0] = '\0';
        return;
    }
    const uint8_t *x = rb_take(b, n);
    if (!x) {
        dst[0] = '\0';
        return;
    }
    memcpy(dst, x, n);
    dst[n] = '\0';
}

static char *rb_strdup(rbuf *b)
{
    uint32_t n = rb_u32(b);
    const uint8_t *x = rb_take(b, n);
    if (!x)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) {
        b->bad = 2;
        return NULL;
    }
    memcpy(s, x, n);
    s[n] = '\0';
    return s;
}

/* n u32 values into a fresh array (NULL when n == 0) */
static uint32_t *rb_u32s(rbuf *b, uint32_t n)
{
    if (!n)
        return NULL;
    if ((size_t)n * 4 > b->len - b->off) {
        b->bad = 1;
        return NULL;
    }
    uint32_t *v = malloc((size_t)n * 4);
    if (!v) {
        b->bad = 2;
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        v[i] = rb_u32(b);
    return v;
}

static void wb_u32s(wbuf *b, const uint32_t *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        wb_u32(b, v[i]);
}

static int rb_done(const h2t_store *st, rbuf *b, const char *table, const char *key)
{
    if (b->bad == 2)
        return h2t_err_set(H2T_ENOMEM, "store %s: decoding %s %s", st->dir, table, key);
    if (b->bad || b->off != b->len)
        return h2t_err_set(H2T_ECORRUPT, "store %s: record %s in table %s is damaged", st->dir, key,
                           table);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* keys                                                                                       */

typedef struct key {
    uint8_t b[12];
    MDB_val v;
} key;

static MDB_val *key_u32(key *k, uint32_t a)
{
    h2t_be32_put(k->b, a);
    k->v.mv_size = 4;
    k->v.mv_data = k->b;
    return &k->v;
}

static MDB_val *key_u64(key *k, uint64_t a)
{
    h2t_be64_put(k->b, a);
    k->v.mv_size = 8;
    k->v.mv_data = k->b;
    return &k->v;
}

static MDB_val *key_u32u32(key *k, uint32_t a, uint32_t b)
{
    h2t_be32_put(k->b, a);
    h2t_be32_put(k->b + 4, b);
    k->v.mv_size = 8;
    k->v.mv_data = k->b;
    return &k->v;
}

static MDB_val *key_stats(key *k, uint32_t ext, uint16_t layer)
{
    h2t_be32_put(k->b, ext);
    h2t_be16_put(k->b + 4, layer);
    k->v.mv_size = 6;
    k->v.mv_data = k->b;
    return &k->v;
}

static MDB_val *key_feat(key *k, uint32_t ext, uint16_t layer, uint32_t sample)
{
    h2t_be32_put(k->b, ext);
    h2t_be16_put(k->b + 4, layer);
    h2t_be32_put(k->b + 6, sample);
    k->v.mv_size = 10;
    k->v.mv_data = k->b;
    return &k->v;
}

static MDB_val *key_str(key *k, const char *s)
{
    k->v.mv_size = strlen(s);
    k->v.mv_data = (void *)s;
    return &k->v;
}

/* ------------------------------------------------------------------------------------------ */
/* transactions and map growth                                                                */

/* transactions (of any store) this thread has open: a thread that already holds the lock
 * shared must not wait for a pending resize, or it would wait for itself */
static _Thread_local int tl_held;

static void st_lock_shared(h2t_store *st)
{
    if (tl_held == 0) { /* let a pending resize go first, else readers could starve it */
        pthread_mutex_lock(&st->gmu);
        while (st->growing)
            pthread_cond_wait(&st->gcv, &st->gmu);
        pthread_mutex_unlock(&st->gmu);
    }
    pthread_rwlock_rdlock(&st->lock);
    tl_held++;
}

static void st_unlock_shared(h2t_store *st)
{
    tl_held--;
    pthread_rwlock_unlock(&st->lock);
}

static int st_grow(h2t_store *st, uint64_t want)
{
    /* exclusive: no transaction of this process may be live while the map moves */
    pthread_mutex_lock(&st->gmu);
    st->growing++;
    pthread_mutex_unlock(&st->gmu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ST_GROW_WAIT_S;
    int rc = pthread_rwlock_timedwrlock(&st->lock, &dl);
    if (rc != 0) {
        pthread_mutex_lock(&st->gmu);
        st->growing--;
        pthread_cond_broadcast(&st->gcv);
        pthread_mutex_unlock(&st->gmu);
        return h2t_err_set(H2T_EBUSY,
                           "store %s: the map is full and a reader open for over %d s blocks "
                           "growing it",
                           st->dir, ST_GROW_WAIT_S);
    }
    if (want == 0 || want > st->map_size) {
        rc = mdb_env_set_mapsize(st->env, (size_t)want);
        if (rc == 0) {
            MDB_envinfo info;
            mdb_env_info(st->env, &info);
            st->map_size = info.me_mapsize;
        }
    }
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_lock(&st->gmu);
    st->growing--;
    pthread_cond_broadcast(&st->gcv);
    pthread_mutex_unlock(&st->gmu);
    return rc ? st_mdb(st, rc, "growing the map") : 0;
}

typedef int (*st_txn_fn)(h2t_store *st, MDB_txn *txn, void *ctx);

/* The calling thread's CPU seconds (a system call: used per transaction, not per layer). */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Run fn in one transaction (write or read); a write that fills the map is retried with a
 * map twice as large; fn must therefore have no effect outside the transaction but its ctx
 * outputs, which it rewrites on every attempt. commit_wall / commit_cpu (NULL: not wanted)
 * get the successful commit's wall and thread CPU seconds. */
static int st_run_timed(h2t_store *st, int write, st_txn_fn fn, void *ctx, double *commit_wall,
                        double *commit_cpu)
{
    if (write && (st->flags & H2T_STORE_RDONLY))
        return h2t_err_set(H2T_EPERM, "store %s was opened read-only", st->dir);
    for (int attempt = 0;; attempt++) {
        if (attempt > 40)
            return h2t_err_set(H2T_ETOOBIG, "store %s: the write does not fit any map size",
                               st->dir);
        st_lock_shared(st);
        uint64_t size = st->map_size;
        MDB_txn *txn;
        int rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &txn);
        if (rc == MDB_MAP_RESIZED) { /* another process grew the map: adopt its size */
            st_unlock_shared(st);
            if ((rc = st_grow(st, 0)) < 0)
                return rc;
            continue;
        }
        if (rc) {
            st_unlock_shared(st);
            return st_mdb(st, rc, "beginning a transaction");
        }
        int r = fn(st, txn, ctx);
        if (r == 0 && write) {
            double w0 = commit_wall ? h2t_now_s() : 0, c0 = commit_cpu ? thread_cpu_s() : 0;
            rc = mdb_txn_commit(txn);
            if (rc)
                r = st_mdb(st, rc, "committing");
            if (commit_wall)
                *commit_wall = h2t_now_s() - w0;
            if (commit_cpu)
                *commit_cpu = thread_cpu_s() - c0;
        } else {
            mdb_txn_abort(txn);
        }
        st_unlock_shared(st);
        if (r == ST_MAPFULL) {
            if ((r = st_grow(st, size * 2)) < 0)
                return r;
            continue;
        }
        return r;
    }
}

static int st_run(h2t_store *st, int write, st_txn_fn fn, void *ctx)
{
    return st_run_timed(st, write, fn, ctx, NULL, NULL);
}

/* "features (extraction 1, layer 2, sample 64)": the key of table t in words */
static void key_desc(int t, const MDB_val *k, char *buf, size_t len)
{
    const uint8_t *p = k->mv_data;
    if (t == T_META || t == T_TASKS)
        snprintf(buf, len, "%s '%.*s'", table_names[t], (int)(k->mv_size < 200 ? k->mv_size : 200),
                 (const char *)p);
    else if (t == T_FEATURES && k->mv_size == 10 && h2t_be16_get(p + 4) == 0xFFFFu)
        snprintf(buf, len, "features (extraction %u, all layers, sample %u)", h2t_be32_get(p),
                 h2t_be32_get(p + 6));
    else if (t == T_FEATURES && k->mv_size == 10)
        snprintf(buf, len, "features (extraction %u, layer %u, sample %u)", h2t_be32_get(p),
                 h2t_be16_get(p + 4), h2t_be32_get(p + 6));
    else if (t == T_STATS && k->mv_size == 6)
        snprintf(buf, len, "stats (extraction %u, layer %u)", h2t_be32_get(p), h2t_be16_get(p + 4));
    else if (t == T_LABELS && k->mv_size == 8)
        snprintf(buf, len, "labels (source %u, sample %u)", h2t_be32_get(p), h2t_be32_get(p + 4));
    else if (k->mv_size == 8)
        snprintf(buf, len, "%s %llu", table_names[t], (unsigned long long)h2t_be64_get(p));
    else if (k->mv_size == 4)
        snprintf(buf, len, "%s %u", table_names[t], h2t_be32_get(p));
    else
        snprintf(buf, len, "%s (a %zu-byte key)", table_names[t], k->mv_size);
}

/* translate rc of an operation on one key; the detail names the store, table and key */
static int st_mdbk(const h2t_store *st, int rc, const char *verb, int t, const MDB_val *k)
{
    char what[320];
    int n = snprintf(what, sizeof(what), "%s ", verb);
    key_desc(t, k, what + n, sizeof(what) - (size_t)n);
    return st_mdb(st, rc, what);
}

static int st_put(h2t_store *st, MDB_txn *txn, int t, MDB_val *k, const void *d, size_t n,
                  unsigned flags, const char *what)
{
    (void)what;
    MDB_val v = {n, (void *)d};
    int rc = mdb_put(txn, st->dbi[t], k, &v, flags);
    return rc ? st_mdbk(st, rc, "writing", t, k) : 0;
}

/* next id: one past the last key of a table keyed by u32/u64 ids (ids start at 1) */
static int st_next_id(h2t_store *st, MDB_txn *txn, int t, uint64_t *id)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->dbi[t], &c);
    if (rc)
        return st_mdb(st, rc, "opening a cursor");
    MDB_val k, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *id = 1;
        return 0;
    }
    if (rc)
        return st_mdb(st, rc, "reading the last id");
    if (k.mv_size == 4)
        *id = (uint64_t)h2t_be32_get(k.mv_data) + 1;
    else if (k.mv_size == 8)
        *id = h2t_be64_get(k.mv_data) + 1;
    else
        return h2t_err_set(H2T_ECORRUPT, "store %s: table %s has a key of %zu bytes", st->dir,
                           table_names[t], k.mv_size);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* open / close / meta                                                                        */

static int cpu_has_f16c(void)
{
#ifdef ST_HAVE_F16C_PATH
    return h2t_cpu_has(H2T_CPU_AVX | H2T_CPU_F16C);
#else
    return 0;
#endif
}

static int open_tables(h2t_store *st, MDB_txn *txn, int create)
{
    int rc = mdb_dbi_open(txn, "meta", create ? MDB_CREATE : 0, &st->dbi[T_META]);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ECORRUPT,
                           "%s holds an LMDB environment without a meta table: not an h2tdb "
                           "store",
                           st->dir);
    if (rc)
        return st_mdb(st, rc, "opening table meta");
    key k;
    MDB_val v;
    rc = mdb_get(txn, st->dbi[T_META], key_str(&k, "format_version"), &v);
    if (rc == MDB_NOTFOUND && create) {
        uint8_t id[16];
        if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
            uint64_t t = h2t_now_ns() ^ ((uint64_t)getpid() << 32);
            for (int i = 0; i < 16; i++)
                id[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
        }
        uint8_t ver[4], ms[8];
        h2t_be32_put(ver, H2T_STORE_FORMAT_VERSION);
        h2t_be64_put(ms, h2t_wall_ms());
        if ((rc = st_put(st, txn, T_META, key_str(&k, "format_version"), ver, 4, 0,
                         "writing meta")) < 0 ||
            (rc = st_put(st, txn, T_META, key_str(&k, "store_id"), id, 16, 0, "writing meta")) <
                0 ||
            (rc = st_put(st, txn, T_META, key_str(&k, "created_ms"), ms, 8, 0, "writing meta")) < 0)
            return rc;
        rc = mdb_get(txn, st->dbi[T_META], key_str(&k, "format_version"), &v);
    }
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ECORRUPT, "%s: meta table has no format_version: not an h2tdb store",
                           st->dir);
    if (rc)
        return st_mdb(st, rc, "reading the format version");
    if (v.mv_size != 4)
        return h2t_err_set(H2T_ECORRUPT, "%s: format_version record is damaged", st->dir);
    uint32_t ver = h2t_be32_get(v.mv_data);
    if (ver < H2T_STORE_FORMAT_OLDEST || ver > H2T_STORE_FORMAT_VERSION)
        return h2t_err_set(H2T_EVERSION,
                           "store %s has format version %u; this h2tdb reads format versions %u "
                           "to %u",
                           st->dir, ver, H2T_STORE_FORMAT_OLDEST, H2T_STORE_FORMAT_VERSION);
    for (int t = T_META + 1; t < T_COUNT; t++) {
        rc = mdb_dbi_open(txn, table_names[t], create ? MDB_CREATE : 0, &st->dbi[t]);
        if (rc == MDB_NOTFOUND)
            return h2t_err_set(H2T_ECORRUPT, "store %s lacks table %s: damaged", st->dir,
                               table_names[t]);
        if (rc)
            return st_mdb(st, rc, table_names[t]);
    }
    return 0;
}

/* empty but for the open lock (left by a creation that was killed) */
static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            strcmp(e->d_name, H2T_STORE_OPEN_LOCK)) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

/* The pids of other processes with path open (a scan of /proc/PID/fd, which sees only the
 * processes this user may inspect), as "123, 456" in buf; "" when none is found. */
static void lock_holders(const char *path, char *buf, size_t len)
{
    buf[0] = 0;
    struct stat want;
    DIR *proc = stat(path, &want) == 0 ? opendir("/proc") : NULL;
    if (!proc)
        return;
    size_t used = 0;
    struct dirent *p;
    while ((p = readdir(proc)) && used + 16 < len) {
        char *end;
        long pid = strtol(p->d_name, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid())
            continue;
        char fds[64];
        snprintf(fds, sizeof(fds), "/proc/%ld/fd", pid);
        DIR *d = opendir(fds);
        if (!d)
            continue;
        struct dirent *f;
        while ((f = readdir(d))) {
            char fp[128];
            struct stat sb;
            snprintf(fp, sizeof(fp), "%s/%s", fds, f->d_name);
            if (f->d_name[0] != '.' && stat(fp, &sb) == 0 && sb.st_dev == want.st_dev &&
                sb.st_ino == want.st_ino) {
                used += (size_t)snprintf(buf + used, len - used, "%s%ld", used ? ", " : "", pid);
                break;
            }
        }
        closedir(d);
    }
    closedir(proc);
}

/* Take DIR/open.lock shared for the life of the handle: a compaction (which takes it
 * exclusively) then knows the store is in use. While a compaction holds it, the open is
 * H2T_EBUSY naming the compacting process (its pid is in the file). On a medium where the
 * file can be neither created nor opened, the store opens without it (nothing can compact
 * such a store). */
static int open_lock_take(const char *dir, int *fd_out)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/" H2T_STORE_OPEN_LOCK, dir);
    *fd_out = -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        if (e != EWOULDBLOCK)
            return h2t_err_set(H2T_EIO, "store %s: lock %s: %s", dir, path, strerror(e));
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        return h2t_err_set(H2T_EBUSY,
                           "store %s is being compacted by process %ld (it holds %s): open it "
                           "again when the compaction has finished",
                           dir, pid, path);
    }
    *fd_out = fd;
    return 0;
}

int h2t_store_open_map(const char *dir, unsigned flags, uint64_t map_size, h2t_store **out)
{
    if (!dir || !dir[0] || !out)
        return h2t_err_set(H2T_EINVAL, "h2t_store_open: no directory given");
    if ((flags & H2T_STORE_CREATE) && (flags & H2T_STORE_RDONLY))
        return h2t_err_set(H2T_EINVAL, "store %s: CREATE and RDONLY together", dir);
    if (strlen(dir) + 16 > sizeof(((h2t_store *)0)->dir))
        return h2t_err_set(H2T_EINVAL, "store path too long: %s", dir);
    char data[1100];
    snprintf(data, sizeof(data), "%s/data.mdb", dir);

    struct stat sb;
    int creating = 0;
    if (stat(dir, &sb) != 0) {
        if (errno == EACCES)
            return h2t_err_set(H2T_EPERM, "store %s: %s", dir, strerror(errno));
        if (errno != ENOENT)
            return h2t_err_set(H2T_EIO, "store %s: %s", dir, strerror(errno));
        if (!(flags & H2T_STORE_CREATE))
            return h2t_err_set(H2T_ENOTFOUND, "no store at %s (no such directory)", dir);
        if (mkdir(dir, 0755) != 0)
            return h2t_err_set(errno == EACCES || errno == EROFS ? H2T_EPERM : H2T_EIO,
                               "creating store directory %s: %s", dir, strerror(errno));
        creating = 1;
    } else if (!S_ISDIR(sb.st_mode)) {
        return h2t_err_set(H2T_ECORRUPT, "%s is not a directory, so not an h2tdb store", dir);
    } else if (h2t_store_set_exists(dir)) {
        if (stat(data, &sb) == 0)
            return h2t_err_set(H2T_ECORRUPT,
                               "%s holds both a store (data.mdb) and a store set manifest (%s): "
                               "move one of them",
                               dir, H2T_STORE_SET_MANIFEST);
        return set_open_manifest(dir, flags, out);
    } else if (stat(data, &sb) != 0) {
        if (!(flags & H2T_STORE_CREATE))
            return h2t_err_set(H2T_ENOTFOUND, "no h2tdb store in %s (no data.mdb)", dir);
        if (!dir_is_empty(dir))
            return h2t_err_set(H2T_ECORRUPT,
                               "%s is not an h2tdb store and not empty: refusing to create a "
                               "store among other files",
                               dir);
        creating = 1;
    } else if (!S_ISREG(sb.st_mode)) {
        return h2t_err_set(H2T_ECORRUPT, "%s is not a regular file: not an h2tdb store", data);
    }
    if (!(flags & H2T_STORE_RDONLY) &&
        (access(dir, W_OK) != 0 || (!creating && access(data, W_OK) != 0)))
        return h2t_err_set(H2T_EPERM, "store %s: no write permission (%s)", dir, strerror(errno));
    if ((flags & H2T_STORE_RDONLY) && access(data, R_OK) != 0)
        return h2t_err_set(errno == EACCES ? H2T_EPERM : H2T_EIO, "store %s: %s", data,
                           strerror(errno));

    h2t_store *st = calloc(1, sizeof(*st));
    if (!st)
        return h2t_err_set(H2T_ENOMEM, "store %s", dir);
    int rc = 0, mrc;
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    st->flags = flags;
    st->service_fd = -1;
    if ((rc = open_lock_take(dir, &st->open_fd)) < 0) {
        free(st);
        return rc;
    }
    st->f16c = cpu_has_f16c() && !getenv("H2T_NO_F16C");
    int have_lock = 0;
    if (pthread_rwlock_init(&st->lock, NULL) != 0) {
        if (st->open_fd >= 0)
            close(st->open_fd);
        free(st);
        return h2t_err_set(H2T_ENOMEM, "store %s: rwlock", dir);
    }
    pthread_mutex_init(&st->gmu, NULL);
    pthread_cond_init(&st->gcv, NULL);
    have_lock = 1;
    unsigned envflags = MDB_NOTLS | ((flags & H2T_STORE_RDONLY) ? MDB_RDONLY : 0);
    if (flags & H2T_STORE_NOSYNC)
        envflags |= MDB_NOSYNC;
    for (int tries = 0; tries < 2; tries++) {
        if ((mrc = mdb_env_create(&st->env)) != 0) {
            rc = st_mdb(st, mrc, "creating the environment");
            goto fail;
        }
        mdb_env_set_maxdbs(st->env, T_COUNT + 2);
        mdb_env_set_maxreaders(st->env, 510);
        if (creating || map_size)
            mdb_env_set_mapsize(st->env, (size_t)(map_size ? map_size : ST_DEFAULT_MAP));
        mrc = mdb_env_open(st->env, dir, envflags, 0644);
        if (mrc == 0)
            break;
        mdb_env_close(st->env);
        st->env = NULL;
        /* a read-only store on a read-only medium: read without the lock file */
        if ((mrc == EACCES || mrc == EROFS) && (flags & H2T_STORE_RDONLY) &&
            !(envflags & MDB_NOLOCK)) {
            envflags |= MDB_NOLOCK;
            continue;
        }
        if (mrc == MDB_INVALID)
            rc = h2t_err_set(H2T_ECORRUPT, "%s is not an LMDB data file: not an h2tdb store", data);
        else if (mrc == EACCES || mrc == EROFS || mrc == EPERM)
            rc = h2t_err_set(H2T_EPERM, "store %s: %s", dir, mdb_strerror(mrc));
        else
            rc = st_mdb(st, mrc, "opening the environment");
        goto fail;
    }
    {
        MDB_envinfo info;
        MDB_stat ms;
        mdb_env_info(st->env, &info);
        mdb_env_stat(st->env, &ms);
        st->map_size = info.me_mapsize;
        /* an environment that never committed a transaction is what a creation killed
         * before its first commit leaves: created anew where the caller creates stores */
        if (!creating && info.me_last_txnid == 0 && (flags & H2T_STORE_CREATE) &&
            !(flags & H2T_STORE_RDONLY))
            creating = 1;
        if (stat(data, &sb) == 0 &&
            (uint64_t)sb.st_size < ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize) {
            rc = h2t_err_set(H2T_ECORRUPT,
                             "%s is truncated: %lld bytes, the store needs at least %llu", data,
                             (long long)sb.st_size,
                             (unsigned long long)((uint64_t)info.me_last_pgno + 1) * ms.ms_psize);
            goto fail;
        }
    }
    if (!(envflags & MDB_NOLOCK)) {
        int dead;
        mdb_reader_check(st->env, &dead); /* slots of killed processes */
    }
    {
        MDB_txn *txn;
        int write = !(flags & H2T_STORE_RDONLY);
        if ((mrc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &txn)) != 0) {
            rc = st_mdb(st, mrc, "beginning a transaction");
            goto fail;
        }
        if ((rc = open_tables(st, txn, creating)) < 0) {
            mdb_txn_abort(txn);
            goto fail;
        }
        if ((mrc = mdb_txn_commit(txn)) != 0) {
            rc = st_mdb(st, mrc, "creating the tables");
            goto fail;
        }
    }
    *out = st;
    return 0;
fail:
    if (st->env)
        mdb_env_close(st->env);
    if (have_lock) {
        pthread_rwlock_destroy(&st->lock);
        pthread_mutex_destroy(&st->gmu);
        pthread_cond_destroy(&st->gcv);
    }
    if (st->open_fd >= 0)
        close(st->open_fd);
    free(st);
    if (creating && (flags & H2T_STORE_CREATE)) {
        /* leave nothing half-made behind */
        remove(data);
        char lk[1100];
        snprintf(lk, sizeof(lk), "%s/lock.mdb", dir);
        remove(lk);
        snprintf(lk, sizeof(lk), "%s/" H2T_STORE_OPEN_LOCK, dir);
        remove(lk);
    }
    return rc;
}

int h2t_store_open(const char *dir, unsigned flags, h2t_store **out)
{
    return h2t_store_open_map(dir, flags, 0, out);
}

/* ------------------------------------------------------------------------------------------ */
/* the service lock: DIR/serve.lock, flock'ed by the one process that serves (or compacts)     */

int h2t_store_service_lock(h2t_store *st)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/" H2T_STORE_SERVICE_LOCK, st->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return h2t_err_set(errno == EACCES || errno == EROFS ? H2T_EPERM : H2T_EIO,
                           "store %s: lock file %s: %s", st->dir, path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (e != EWOULDBLOCK)
            return h2t_err_set(H2T_EIO, "store %s: lock %s: %s", st->dir, path, strerror(e));
        if (pid > 0)
            return h2t_err_set(H2T_EBUSY,
                               "store %s is in use by process %ld (it holds %s): stop that "
                               "server first",
                               st->dir, pid, path);
        return h2t_err_set(H2T_EBUSY, "store %s is in use by another process (it holds %s)",
                           st->dir, path);
    }
    /* ours: a file left by a process that died holds no lock and is simply taken over */
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return h2t_err_set(H2T_EIO, "store %s: write %s: %s", st->dir, path, strerror(e));
    }
    if (st->service_fd >= 0) { /* a second lock on the same handle: keep the first */
        close(fd);
        return h2t_err_set(H2T_EBUSY, "store %s: the service lock is already held", st->dir);
    }
    st->service_fd = fd;
    return 0;
}

void h2t_store_service_unlock(h2t_store *st)
{
    if (!st || st->service_fd < 0)
        return;
    /* the file stays (unlinking a lock file races with a process about to lock it); empty,
     * it names no holder */
    if (ftruncate(st->service_fd, 0) != 0) {
        /* nothing to do: the lock goes with the close below */
    }
    close(st->service_fd);
    st->service_fd = -1;
}

void h2t_store_close(h2t_store *st)
{
    if (!st)
        return;
    h2t_store_service_unlock(st);
    set_close(st);
    mdb_env_close(st->env);
    if (st->open_fd >= 0)
        close(st->open_fd); /* the shared lock goes with the last descriptor */
    pthread_rwlock_destroy(&st->lock);
    pthread_mutex_destroy(&st->gmu);
    pthread_cond_destroy(&st->gcv);
    free(st);
}

const char *h2t_store_dir(const h2t_store *st)
{
    return st->dir;
}

static int meta_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    h2t_store_meta *m = ctx;
    key k;
    MDB_val v;
    int rc;
    memset(m, 0, sizeof(*m));
    if ((rc = mdb_get(txn, st->dbi[T_META], key_str(&k, "format_version"), &v)) != 0)
        return st_mdb(st, rc, "meta format_version");
    if (v.mv_size != 4)
        return h2t_err_set(H2T_ECORRUPT, "store %s: meta format_version damaged", st->dir);
    m->format_version = h2t_be32_get(v.mv_data);
    if ((rc = mdb_get(txn, st->dbi[T_META], key_str(&k, "store_id"), &v)) != 0)
        return st_mdb(st, rc, "meta store_id");
    if (v.mv_size != 16)
        return h2t_err_set(H2T_ECORRUPT, "store %s: meta store_id damaged", st->dir);
    memcpy(m->store_id, v.mv_data, 16);
    if ((rc = mdb_get(txn, st->dbi[T_META], key_str(&k, "created_ms"), &v)) != 0)
        return st_mdb(st, rc, "meta created_ms");
    if (v.mv_size != 8)
        return h2t_err_set(H2T_ECORRUPT, "store %s: meta created_ms damaged", st->dir);
    m->created_ms = h2t_be64_get(v.mv_data);
    MDB_envinfo info;
    MDB_stat ms;
    mdb_env_info(st->env, &info);
    mdb_env_stat(st->env, &ms);
    m->map_size = info.me_mapsize;
    m->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    return 0;
}

int h2t_store_meta_get(h2t_store *st, h2t_store_meta *out)
{
    h2t_store_meta m;
    int rc = st_run(st, 0, meta_get_fn, &m);
    if (rc == 0)
        *out = m;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* sources and labels                                                                         */

void h2t_source_destroy(h2t_source *s)
{
    if (!s)
        return;
    if (s->class_names)
        for (uint32_t i = 0; i < s->n_classes; i++)
            free(s->class_names[i]);
    free(s->class_names);
    free(s->labels);
    free(s->split);
    free(s);
}

void h2t_source_list_destroy(h2t_source **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        h2t_source_destroy(v[i]);
    free(v);
}

static void source_encode(wbuf *b, const h2t_source *s)
{
    wb_strn(b, s->name, sizeof(s->name));
    wb_strn(b, s->uri, sizeof(s->uri));
    wb_put(b, s->hash, 32);
    wb_u32(b, s->n_samples);
    wb_u32(b, s->n_classes);
    for (uint32_t i = 0; i < s->n_classes; i++)
        wb_strn(b, s->class_names ? s->class_names[i] : "", (size_t)-1);
}

static int source_decode(h2t_store *st, const MDB_val *v, uint32_t id, h2t_source **out)
{
    rbuf b = {v->mv_data, v->mv_size, 0, 0};
    h2t_source *s = calloc(1, sizeof(*s));
    if (!s)
        return h2t_err_set(H2T_ENOMEM, "source %u", id);
    s->id = id;
    rb_str(&b, s->name, sizeof(s->name));
    rb_str(&b, s->uri, sizeof(s->uri));
    rb_bytes(&b, s->hash, 32);
    s->n_samples = rb_u32(&b);
    uint32_t nc = rb_u32(&b);
    if (!b.bad && (size_t)nc * 4 > b.len - b.off)
        b.bad = 1;
    if (!b.bad && nc) {
        s->class_names = calloc(nc, sizeof(char *));
        if (!s->class_names)
            b.bad = 2;
        else
            s->n_classes = nc;
    }
    for (uint32_t i = 0; i < s->n_classes && !b.bad; i++)
        s->class_names[i] = rb_strdup(&b);
    char kname[32];
    snprintf(kname, sizeof(kname), "%u", id);
    int rc = rb_done(st, &b, "sources", kname);
    if (rc < 0) {
        h2t_source_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

typedef struct source_put_ctx {
    const h2t_source *src;
    uint32_t id;
    int reused;
} source_put_ctx;

static int source_put_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    source_put_ctx *c = ctx;
    const h2t_source *s = c->src;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, st->dbi[T_SOURCES], &cur);
    if (rc)
        return st_mdb(st, rc, "sources cursor");
    /* reuse by content hash: the hash follows the two length-prefixed strings */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        h2t_source *o;
        if (k.mv_size != 4)
            continue;
        int r = source_decode(st, &v, h2t_be32_get(k.mv_data), &o);
        if (r < 0) {
            mdb_cursor_close(cur);
            return r;
        }
        int same = !memcmp(o->hash, s->hash, 32);
        uint32_t oid = o->id;
        h2t_source_destroy(o);
        if (same) {
            mdb_cursor_close(cur);
            c->id = oid;
            c->reused = 1;
            return 0;
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return st_mdb(st, rc, "scanning sources");
    uint64_t id;
    if ((rc = st_next_id(st, txn, T_SOURCES, &id)) < 0)
        return rc;
    if (id > UINT32_MAX)
        return h2t_err_set(H2T_ETOOBIG, "store %s: source ids exhausted", st->dir);
    wbuf b = {0};
    source_encode(&b, s);
    key kk;
    if (b.oom)
        rc = h2t_err_set(H2T_ENOMEM, "encoding source %s", s->name);
    else
        rc =
            st_put(st, txn, T_SOURCES, key_u32(&kk, (uint32_t)id), b.p, b.len, 0, "writing source");
    free(b.p);
    if (rc < 0)
        return rc;
    /* labels: keys (id, sample) sort after every existing key, so they can be appended */
    for (uint32_t i = 0; i < s->n_samples; i++) {
        uint8_t val[5];
        h2t_be32_put(val, s->labels[i]);
        val[4] = s->split ? s->split[i] : H2T_SPLIT_TRAIN;
        if ((rc = st_put(st, txn, T_LABELS, key_u32u32(&kk, (uint32_t)id, i), val, 5, MDB_APPEND,
                         "writing labels")) < 0)
            return rc;
    }
    c->id = (uint32_t)id;
    c->reused = 0;
    return 0;
}

int h2t_store_source_put(h2t_store *st, const h2t_source *src, uint32_t *id, int *reused)
{
    if (st->set)
        return set_read_only(st, "a source");
    if (!src || !src->name[0])
        return h2t_err_set(H2T_EINVAL, "store %s: source without a name", st->dir);
    if (src->n_samples && !src->labels)
        return h2t_err_set(H2T_EINVAL, "source %s: %u samples but no labels", src->name,
                           src->n_samples);
    if (src->n_classes && !src->class_names)
        return h2t_err_set(H2T_EINVAL, "source %s: %u classes but no class names", src->name,
                           src->n_classes);
    for (uint32_t i = 0; i < src->n_samples; i++) {
        if (src->labels[i] >= src->n_classes)
            return h2t_err_set(H2T_EINVAL, "source %s: sample %u has label %u, but only %u classes",
                               src->name, i, src->labels[i], src->n_classes);
        if (src->split && src->split[i] > H2T_SPLIT_TEST)
            return h2t_err_set(H2T_EINVAL, "source %s: sample %u has split %u", src->name, i,
                               src->split[i]);
    }
    source_put_ctx c = {src, 0, 0};
    int rc = st_run(st, 1, source_put_fn, &c);
    if (rc == 0) {
        if (id)
            *id = c.id;
        if (reused)
            *reused = c.reused;
    }
    return rc;
}

typedef struct source_get_ctx {
    uint32_t id, first, n;
    int want_labels;
    h2t_source *out;
    uint32_t *labels;
    uint8_t *split;
} source_get_ctx;

static int source_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    source_get_ctx *c = ctx;
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_SOURCES], key_u32(&k, c->id), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "source %u not in store %s", c->id, st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_SOURCES, &k.v);
    h2t_source *s;
    if ((rc = source_decode(st, &v, c->id, &s)) < 0)
        return rc;
    uint32_t first = c->want_labels ? 0 : c->first;
    uint32_t n = c->want_labels ? s->n_samples : c->n;
    if ((uint64_t)first + n > s->n_samples) {
        uint32_t have = s->n_samples;
        h2t_source_destroy(s);
        return h2t_err_set(H2T_ENOTFOUND, "source %u has %u samples; samples %u..%llu asked", c->id,
                           have, first, (unsigned long long)first + n - 1);
    }
    uint32_t *lab = c->labels;
    uint8_t *spl = c->split;
    if (c->want_labels && n) {
        /* the record's sample count is believed only when the last sample's label is stored:
         * a damaged count must not size an allocation (4 billion samples: 20 GB) */
        MDB_val lv;
        rc = mdb_get(txn, st->dbi[T_LABELS], key_u32u32(&k, c->id, n - 1), &lv);
        if (rc == MDB_NOTFOUND || (rc == 0 && lv.mv_size != 5)) {
            h2t_source_destroy(s);
            return h2t_err_set(H2T_ECORRUPT,
                               "store %s: source %u declares %u samples but the label of sample "
                               "%u is missing or damaged",
                               st->dir, c->id, n, n - 1);
        }
        if (rc) {
            h2t_source_destroy(s);
            return st_mdbk(st, rc, "reading", T_LABELS, &k.v);
        }
        lab = s->labels = malloc((size_t)n * 4);
        spl = s->split = malloc(n);
        if (!lab || !spl) {
            h2t_source_destroy(s);
            return h2t_err_set(H2T_ENOMEM, "labels of source %u", c->id);
        }
    }
    MDB_cursor *cur;
    if (n && (rc = mdb_cursor_open(txn, st->dbi[T_LABELS], &cur)) != 0) {
        h2t_source_destroy(s);
        return st_mdb(st, rc, "labels cursor");
    }
    MDB_val kv = *key_u32u32(&k, c->id, first);
    rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = mdb_cursor_get(cur, &kv, &v, i == 0 ? MDB_SET_KEY : MDB_NEXT);
        if (rc == 0 && (kv.mv_size != 8 || v.mv_size != 5 || h2t_be32_get(kv.mv_data) != c->id ||
                        h2t_be32_get((uint8_t *)kv.mv_data + 4) != first + i))
            rc = MDB_NOTFOUND;
        if (rc == MDB_NOTFOUND) {
            mdb_cursor_close(cur);
            h2t_source_destroy(s);
            return h2t_err_set(H2T_ECORRUPT, "store %s: label of source %u sample %u missing",
                               st->dir, c->id, first + i);
        }
        if (rc == 0) {
            if (lab)
                lab[i] = h2t_be32_get(v.mv_data);
            if (spl)
                spl[i] = ((uint8_t *)v.mv_data)[4];
        }
    }
    if (n)
        mdb_cursor_close(cur);
    if (rc) {
        h2t_source_destroy(s);
        return st_mdb(st, rc, "reading labels");
    }
    if (c->want_labels)
        c->out = s;
    else
        h2t_source_destroy(s);
    return 0;
}

int h2t_store_source_get(h2t_store *st, uint32_t id, h2t_source **out)
{
    if (st->set)
        return h2t_store_source_get(set_shard0(st), id, out);
    source_get_ctx c = {id, 0, 0, 1, NULL, NULL, NULL};
    int rc = st_run(st, 0, source_get_fn, &c);
    if (rc == 0)
        *out = c.out;
    return rc;
}

int h2t_store_labels_get(h2t_store *st, uint32_t source, uint32_t first, uint32_t n,
                         uint32_t *labels, uint8_t *split)
{
    if (st->set)
        return h2t_store_labels_get(set_shard0(st), source, first, n, labels, split);
    source_get_ctx c = {source, first, n, 0, NULL, labels, split};
    return st_run(st, 0, source_get_fn, &c);
}

/* Listing a table: one cursor walk decoding every record into a new object. */
typedef struct list_ctx {
    void **v;
    size_t n;
    int table;        /* T_* */
    const char *what; /* "sources", ... for error texts */
    /* Decode the record (k, v) into a new object, OWNED by the list on success. */
    int (*decode)(h2t_store *st, const MDB_val *k, const MDB_val *v, void **out);
    void (*destroy)(void *obj);
} list_ctx;

static int list_push(list_ctx *l, void *p)
{
    if ((l->n & (l->n - 1)) == 0) { /* grow at powers of two */
        void **nv = realloc(l->v, (l->n ? l->n * 2 : 1) * sizeof(void *));
        if (!nv)
            return h2t_err_set(H2T_ENOMEM, "listing");
        l->v = nv;
    }
    l->v[l->n++] = p;
    return 0;
}

static int list_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    list_ctx *l = ctx;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, st->dbi[l->table], &cur);
    if (rc)
        return st_mdb(st, rc, l->what);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        void *obj;
        int r = l->decode(st, &k, &v, &obj);
        if (r == 0 && (r = list_push(l, obj)) < 0)
            l->destroy(obj);
        if (r < 0) {
            mdb_cursor_close(cur);
            return r;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : st_mdb(st, rc, l->what);
}

static int source_list_decode(h2t_store *st, const MDB_val *k, const MDB_val *v, void **out)
{
    if (k->mv_size != 4)
        return h2t_err_set(H2T_ECORRUPT, "store %s: bad source key", st->dir);
    return source_decode(st, v, h2t_be32_get(k->mv_data), (h2t_source **)out);
}

static void source_list_destroy(void *s)
{
    h2t_source_destroy(s);
}

int h2t_store_source_list(h2t_store *st, h2t_source ***out, size_t *n)
{
    if (st->set)
        return h2t_store_source_list(set_shard0(st), out, n);
    list_ctx l = {.table = T_SOURCES,
                  .what = "listing sources",
                  .decode = source_list_decode,
                  .destroy = source_list_destroy};
    int rc = st_run(st, 0, list_fn, &l);
    if (rc < 0) {
        h2t_source_list_destroy((h2t_source **)l.v, l.n);
        return rc;
    }
    *out = (h2t_source **)l.v;
    *n = l.n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* models                                                                                     */

static void model_encode(wbuf *b, const h2t_model_rec *m)
{
    wb_strn(b, m->name, sizeof(m->name));
    wb_put(b, m->sha256, 32);
    for (int i = 0; i < 4; i++)
        wb_u32(b, m->input_shape[i]);
    wb_strn(b, m->preprocess, sizeof(m->preprocess));
}

static int model_decode(h2t_store *st, const MDB_val *v, uint32_t id, h2t_model_rec *m)
{
    rbuf b = {v->mv_data, v->mv_size, 0, 0};
    memset(m, 0, sizeof(*m));
    m->id = id;
    rb_str(&b, m->name, sizeof(m->name));
    rb_bytes(&b, m->sha256, 32);
    for (int i = 0; i < 4; i++)
        m->input_shape[i] = rb_u32(&b);
    rb_str(&b, m->preprocess, sizeof(m->preprocess));
    char kname[32];
    snprintf(kname, sizeof(kname), "%u", id);
    return rb_done(st, &b, "models", kname);
}

typedef struct model_ctx {
    const h2t_model_rec *in;
    uint32_t id;
    int reused;
    h2t_model_rec rec;
    list_ctx list;
} model_ctx;

static int model_put_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    model_ctx *c = ctx;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, st->dbi[T_MODELS], &cur);
    if (rc)
        return st_mdb(st, rc, "models cursor");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        h2t_model_rec o;
        int r = model_decode(st, &v, k.mv_size == 4 ? h2t_be32_get(k.mv_data) : 0, &o);
        if (r < 0) {
            mdb_cursor_close(cur);
            return r;
        }
        if (!memcmp(o.sha256, c->in->sha256, 32)) {
            mdb_cursor_close(cur);
            c->id = o.id;
            c->reused = 1;
            return 0;
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return st_mdb(st, rc, "scanning models");
    uint64_t id;
    if ((rc = st_next_id(st, txn, T_MODELS, &id)) < 0)
        return rc;
    wbuf b = {0};
    model_encode(&b, c->in);
    key kk;
    rc = b.oom ? h2t_err_set(H2T_ENOMEM, "encoding model")
               : st_put(st, txn, T_MODELS, key_u32(&kk, (uint32_t)id), b.p, b.len, 0,
                        "writing model");
    free(b.p);
    c->id = (uint32_t)id;
    c->reused = 0;
    return rc;
}

int h2t_store_model_put(h2t_store *st, const h2t_model_rec *m, uint32_t *id, int *reused)
{
    if (st->set)
        return set_read_only(st, "a model");
    if (!m || !m->name[0])
        return h2t_err_set(H2T_EINVAL, "store %s: model without a name", st->dir);
    model_ctx c = {.in = m};
    int rc = st_run(st, 1, model_put_fn, &c);
    if (rc == 0) {
        if (id)
            *id = c.id;
        if (reused)
            *reused = c.reused;
    }
    return rc;
}

static int model_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    model_ctx *c = ctx;
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_MODELS], key_u32(&k, c->id), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "model %u not in store %s", c->id, st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_MODELS, &k.v);
    return model_decode(st, &v, c->id, &c->rec);
}

int h2t_store_model_get(h2t_store *st, uint32_t id, h2t_model_rec *out)
{
    if (st->set)
        return h2t_store_model_get(set_shard0(st), id, out);
    model_ctx c = {.id = id};
    int rc = st_run(st, 0, model_get_fn, &c);
    if (rc == 0)
        *out = c.rec;
    return rc;
}

static int model_list_decode(h2t_store *st, const MDB_val *k, const MDB_val *v, void **out)
{
    h2t_model_rec *m = malloc(sizeof(*m));
    if (!m)
        return h2t_err_set(H2T_ENOMEM, "listing models");
    int r = model_decode(st, v, k->mv_size == 4 ? h2t_be32_get(k->mv_data) : 0, m);
    if (r < 0)
        free(m);
    else
        *out = m;
    return r;
}

int h2t_store_model_list(h2t_store *st, h2t_model_rec **out, size_t *n)
{
    if (st->set)
        return h2t_store_model_list(set_shard0(st), out, n);
    list_ctx l = {
        .table = T_MODELS, .what = "listing models", .decode = model_list_decode, .destroy = free};
    int rc = st_run(st, 0, list_fn, &l);
    h2t_model_rec *arr = NULL;
    if (rc == 0 && l.n && !(arr = malloc(l.n * sizeof(*arr))))
        rc = h2t_err_set(H2T_ENOMEM, "listing models");
    for (size_t i = 0; i < l.n; i++) {
        if (arr)
            arr[i] = *(h2t_model_rec *)l.v[i];
        free(l.v[i]);
    }
    free(l.v);
    if (rc < 0) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = l.n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* extractions                                                                                */

void h2t_extraction_destroy(h2t_extraction *e)
{
    if (!e)
        return;
    free(e->layers);
    free(e);
}

void h2t_extraction_list_destroy(h2t_extraction **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        h2t_extraction_destroy(v[i]);
    free(v);
}

/* Raise the store's format to H2T_STORE_FORMAT_VERSION in this transaction (a no-op when it
 * is there): older builds then refuse the store instead of misreading what this one wrote. */
static int format_bump(h2t_store *st, MDB_txn *txn)
{
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_META], key_str(&k, "format_version"), &v);
    if (rc)
        return st_mdb(st, rc, "reading the format version");
    if (v.mv_size == 4 && h2t_be32_get(v.mv_data) >= H2T_STORE_FORMAT_VERSION)
        return 0;
    uint8_t ver[4];
    h2t_be32_put(ver, H2T_STORE_FORMAT_VERSION);
    return st_put(st, txn, T_META, key_str(&k, "format_version"), ver, 4, 0,
                  "upgrading the format version");
}

static void ext_encode(wbuf *b, const h2t_extraction *e)
{
    wb_strn(b, e->name, sizeof(e->name));
    wb_u32(b, e->source);
    wb_u32(b, e->model);
    wb_u32(b, e->target_size);
    wb_u32(b, e->dtype);
    wb_strn(b, e->config, sizeof(e->config));
    wb_put(b, e->config_hash, 32);
    wb_u32(b, e->n_samples);
    wb_u32(b, e->samples_done);
    wb_u32(b, e->state);
    wb_u64(b, e->created_ms);
    wb_u64(b, e->updated_ms);
    wb_u32(b, e->n_layers);
    for (uint32_t i = 0; i < e->n_layers; i++) {
        const h2t_layer_info *l = &e->layers[i];
        wb_strn(b, l->name, sizeof(l->name));
        wb_strn(b, l->op, sizeof(l->op));
        wb_u32(b, l->rank);
        for (int j = 0; j < 4; j++)
            wb_u32(b, l->shape[j]);
        wb_u32(b, l->dim);
        wb_u64(b, l->offset);
    }
    wb_u64(b, e->total_dim);
    if (e->checksums) /* absent in records written before checksums (format 2 and older) */
        wb_u32(b, e->checksums);
}

static int ext_decode(h2t_store *st, const MDB_val *v, uint32_t id, h2t_extraction **out)
{
    rbuf b = {v->mv_data, v->mv_size, 0, 0};
    h2t_extraction *e = calloc(1, sizeof(*e));
    if (!e)
        return h2t_err_set(H2T_ENOMEM, "extraction %u", id);
    e->id = id;
    rb_str(&b, e->name, sizeof(e->name));
    e->source = rb_u32(&b);
    e->model = rb_u32(&b);
    e->target_size = rb_u32(&b);
    e->dtype = rb_u32(&b);
    rb_str(&b, e->config, sizeof(e->config));
    rb_bytes(&b, e->config_hash, 32);
    e->n_samples = rb_u32(&b);
    e->samples_done = rb_u32(&b);
    e->state = rb_u32(&b);
    e->created_ms = rb_u64(&b);
    e->updated_ms = rb_u64(&b);
    uint32_t nl = rb_u32(&b);
    if (!b.bad && (nl == 0 || (size_t)nl * 40 > b.len - b.off || e->dtype > H2T_DTYPE_F16))
        b.bad = 1;
    if (!b.bad) {
        e->layers = calloc(nl, sizeof(h2t_layer_info));
        if (!e->layers)
            b.bad = 2;
        else
            e->n_layers = nl;
    }
    for (uint32_t i = 0; i < e->n_layers && !b.bad; i++) {
        h2t_layer_info *l = &e->layers[i];
        rb_str(&b, l->name, sizeof(l->name));
        rb_str(&b, l->op, sizeof(l->op));
        l->rank = rb_u32(&b);
        for (int j = 0; j < 4; j++)
            l->shape[j] = rb_u32(&b);
        l->dim = rb_u32(&b);
        l->offset = rb_u64(&b);
        if (l->dim == 0)
            b.bad = 1;
    }
    e->total_dim = rb_u64(&b);
    if (!b.bad && b.off < b.len) {
        e->checksums = rb_u32(&b);
        if (e->checksums != 1)
            b.bad = 1;
    }
    char kname[32];
    snprintf(kname, sizeof(kname), "%u", id);
    int rc = rb_done(st, &b, "extractions", kname);
    if (rc < 0) {
        h2t_extraction_destroy(e);
        return rc;
    }
    *out = e;
    return 0;
}

static int ext_load(h2t_store *st, MDB_txn *txn, uint32_t id, h2t_extraction **out)
{
    if (st->set)
        return set_ext_load(st, id, out);
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_EXTRACTIONS], key_u32(&k, id), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "extraction %u not in store %s", id, st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_EXTRACTIONS, &k.v);
    return ext_decode(st, &v, id, out);
}

static int ext_save(h2t_store *st, MDB_txn *txn, const h2t_extraction *e)
{
    wbuf b = {0};
    ext_encode(&b, e);
    key k;
    int rc = b.oom ? h2t_err_set(H2T_ENOMEM, "encoding extraction %u", e->id)
                   : st_put(st, txn, T_EXTRACTIONS, key_u32(&k, e->id), b.p, b.len, 0,
                            "writing an extraction");
    free(b.p);
    return rc;
}

/* visit every extraction; fn returns 0 to go on, 1 to stop, < 0 on error */
typedef int (*ext_visit_fn)(h2t_extraction *e, void *ctx);
static int ext_scan(h2t_store *st, MDB_txn *txn, ext_visit_fn fn, void *ctx)
{
    if (st->set) {
        h2t_extraction *e;
        int r = set_ext_load(st, set_whole(st)->id, &e);
        if (r == 0)
            r = fn(e, ctx);
        return r < 0 ? r : 0;
    }
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, st->dbi[T_EXTRACTIONS], &cur);
    if (rc)
        return st_mdb(st, rc, "extractions cursor");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        h2t_extraction *e;
        int r = k.mv_size == 4 ? ext_decode(st, &v, h2t_be32_get(k.mv_data), &e)
                               : h2t_err_set(H2T_ECORRUPT, "store %s: bad extraction key", st->dir);
        if (r == 0)
            r = fn(e, ctx);
        if (r != 0) {
            mdb_cursor_close(cur);
            return r < 0 ? r : 0;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : st_mdb(st, rc, "scanning extractions");
}

typedef struct ext_begin_ctx {
    const h2t_extraction *spec;
    uint32_t id;
    int reused;
    int name_clash;
    uint32_t clash_id;
} ext_begin_ctx;

static int ext_begin_visit(h2t_extraction *e, void *ctx)
{
    ext_begin_ctx *c = ctx;
    int stop = 0;
    if (!memcmp(e->config_hash, c->spec->config_hash, 32)) {
        c->id = e->id;
        c->reused = 1;
        stop = 1;
    } else if (c->spec->name[0] && !strncmp(e->name, c->spec->name, sizeof(e->name))) {
        c->name_clash = 1;
        c->clash_id = e->id;
    }
    h2t_extraction_destroy(e);
    return stop;
}

static int ext_begin_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    ext_begin_ctx *c = ctx;
    const h2t_extraction *s = c->spec;
    c->reused = c->name_clash = 0;
    int rc = ext_scan(st, txn, ext_begin_visit, c);
    if (rc < 0 || c->reused)
        return rc;
    if (c->name_clash)
        return h2t_err_set(H2T_EEXIST,
                           "extraction name '%.128s' is taken by extraction %u (another config)",
                           s->name, c->clash_id);
    key k;
    MDB_val v;
    rc = mdb_get(txn, st->dbi[T_SOURCES], key_u32(&k, s->source), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "extraction: source %u not in store %s", s->source,
                           st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_SOURCES, &k.v);
    rc = mdb_get(txn, st->dbi[T_MODELS], key_u32(&k, s->model), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "extraction: model %u not in store %s", s->model,
                           st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_MODELS, &k.v);
    uint64_t id;
    if ((rc = st_next_id(st, txn, T_EXTRACTIONS, &id)) < 0)
        return rc;
    h2t_extraction e = *s;
    e.id = (uint32_t)id;
    e.samples_done = 0;
    e.state = H2T_EXT_RUNNING;
    e.checksums = 1; /* every new extraction: its blocks and statistics carry CRC32C */
    e.created_ms = e.updated_ms = h2t_wall_ms();
    if ((rc = format_bump(st, txn)) < 0)
        return rc;
    e.layers = malloc((size_t)s->n_layers * sizeof(h2t_layer_info));
    if (!e.layers)
        return h2t_err_set(H2T_ENOMEM, "extraction layers");
    uint64_t off = 0;
    for (uint32_t i = 0; i < s->n_layers; i++) {
        e.layers[i] = s->layers[i];
        e.layers[i].offset = off;
        off += s->layers[i].dim;
    }
    e.total_dim = off;
    rc = ext_save(st, txn, &e);
    free(e.layers);
    c->id = e.id;
    return rc;
}

int h2t_store_extraction_begin(h2t_store *st, const h2t_extraction *spec, uint32_t *id, int *reused)
{
    if (st->set)
        return set_read_only(st, "an extraction");
    if (!spec || !spec->n_layers || !spec->layers)
        return h2t_err_set(H2T_EINVAL, "extraction: no layers");
    if (spec->n_layers > 65535)
        return h2t_err_set(H2T_EINVAL, "extraction: %u layers, at most 65535", spec->n_layers);
    if (spec->dtype > H2T_DTYPE_F16)
        return h2t_err_set(H2T_EINVAL, "extraction: unknown dtype %u", spec->dtype);
    if (!spec->n_samples)
        return h2t_err_set(H2T_EINVAL, "extraction: n_samples is 0");
    for (uint32_t i = 0; i < spec->n_layers; i++) {
        const h2t_layer_info *l = &spec->layers[i];
        if (!l->dim)
            return h2t_err_set(H2T_EINVAL, "extraction: layer %u '%.256s' has dim 0", i, l->name);
        if (!l->name[0] || strnlen(l->name, sizeof(l->name)) == sizeof(l->name))
            return h2t_err_set(H2T_EINVAL, "extraction: layer %u has an empty or unterminated name",
                               i);
        if ((uint64_t)l->dim * 4 * 1 > 0x7fffffffu)
            return h2t_err_set(H2T_EINVAL, "extraction: layer '%s' dim %u too large", l->name,
                               l->dim);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(spec->layers[j].name, l->name))
                return h2t_err_set(H2T_EINVAL, "extraction: layer name '%s' appears twice",
                                   l->name);
    }
    ext_begin_ctx c = {.spec = spec};
    int rc = st_run(st, 1, ext_begin_fn, &c);
    if (rc == 0) {
        if (id)
            *id = c.id;
        if (reused)
            *reused = c.reused;
    }
    return rc;
}

typedef struct ext_get_ctx {
    uint32_t id;
    const char *query;
    h2t_extraction *out;
    int found;
} ext_get_ctx;

static int ext_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    ext_get_ctx *c = ctx;
    return ext_load(st, txn, c->id, &c->out);
}

int h2t_store_extraction_get(h2t_store *st, uint32_t id, h2t_extraction **out)
{
    ext_get_ctx c = {.id = id};
    int rc = st_run(st, 0, ext_get_fn, &c);
    if (rc == 0)
        *out = c.out;
    return rc;
}

static int ext_find_visit(h2t_extraction *e, void *ctx)
{
    ext_get_ctx *c = ctx;
    int hit = !strcmp(e->name, c->query);
    if (hit) {
        c->id = e->id;
        c->found = 1;
    }
    h2t_extraction_destroy(e);
    return hit;
}

static int ext_find_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    ext_get_ctx *c = ctx;
    c->found = 0;
    const char *q = c->query;
    if (st->set) {
        const h2t_extraction *w = set_whole(st);
        char num[16];
        snprintf(num, sizeof num, "%u", w->id);
        if (!strcmp(q, num) || (w->name[0] && !strcmp(q, w->name))) {
            c->id = w->id;
            c->found = 1;
        }
        return 0;
    }
    if (q[0] >= '0' && q[0] <= '9' && strspn(q, "0123456789") == strlen(q) && strlen(q) < 11) {
        unsigned long long v = strtoull(q, NULL, 10);
        key k;
        MDB_val val;
        if (v <= UINT32_MAX &&
            mdb_get(txn, st->dbi[T_EXTRACTIONS], key_u32(&k, (uint32_t)v), &val) == 0) {
            c->id = (uint32_t)v;
            c->found = 1;
            return 0;
        }
    }
    return ext_scan(st, txn, ext_find_visit, c);
}

int h2t_store_extraction_find(h2t_store *st, const char *id_or_name, uint32_t *id)
{
    if (!id_or_name || !id_or_name[0])
        return h2t_err_set(H2T_EINVAL, "no extraction named");
    ext_get_ctx c = {.query = id_or_name};
    int rc = st_run(st, 0, ext_find_fn, &c);
    if (rc < 0)
        return rc;
    if (!c.found)
        return h2t_err_set(H2T_ENOTFOUND, "no extraction '%s' (by id or name) in store %s",
                           id_or_name, st->dir);
    *id = c.id;
    return 0;
}

static int ext_list_visit(h2t_extraction *e, void *ctx)
{
    int rc = list_push(ctx, e);
    if (rc < 0)
        h2t_extraction_destroy(e);
    return rc;
}

static int ext_list_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    return ext_scan(st, txn, ext_list_visit, ctx);
}

int h2t_store_extraction_list(h2t_store *st, h2t_extraction ***out, size_t *n)
{
    list_ctx l = {0};
    int rc = st_run(st, 0, ext_list_fn, &l);
    if (rc < 0) {
        h2t_extraction_list_destroy((h2t_extraction **)l.v, l.n);
        return rc;
    }
    *out = (h2t_extraction **)l.v;
    *n = l.n;
    return 0;
}

typedef struct ext_state_ctx {
    uint32_t id, state;
} ext_state_ctx;

static int ext_state_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    ext_state_ctx *c = ctx;
    h2t_extraction *e;
    int rc = ext_load(st, txn, c->id, &e);
    if (rc < 0)
        return rc;
    e->state = c->state;
    e->updated_ms = h2t_wall_ms();
    rc = ext_save(st, txn, e);
    h2t_extraction_destroy(e);
    return rc;
}

int h2t_store_extraction_set_state(h2t_store *st, uint32_t id, uint32_t state)
{
    if (st->set)
        return set_read_only(st, "an extraction's state");
    if (state > H2T_EXT_FAILED)
        return h2t_err_set(H2T_EINVAL, "extraction %u: unknown state %u", id, state);
    ext_state_ctx c = {id, state};
    return st_run(st, 1, ext_state_fn, &c);
}

int h2t_extraction_layer_find(const h2t_extraction *e, const char *name, uint32_t *layer)
{
    for (uint32_t i = 0; i < e->n_layers; i++)
        if (!strcmp(e->layers[i].name, name)) {
            *layer = i;
            return 0;
        }
    return h2t_err_set(H2T_ENOTFOUND, "extraction %u has no layer '%s'", e->id, name);
}

/* ------------------------------------------------------------------------------------------ */
/* features and statistics                                                                    */

/* stats value: u32 dim, u32 0, u64 count, f64 norm_sum, norm_min, norm_max, then f64 mean[dim],
 * f64 m2[dim], f32 min[dim], f32 max[dim] (host order) */
#define STATS_HDR 40
static size_t stats_bytes(uint32_t dim)
{
    return STATS_HDR + (size_t)dim * 24;
}

/* A zeroed h2t_layer_stats of dim features (count 0); NULL when out of memory. */
static h2t_layer_stats *stats_alloc(uint32_t dim)
{
    h2t_layer_stats *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->dim = dim;
    s->mean = calloc(dim, 8);
    s->m2 = calloc(dim, 8);
    s->min = calloc(dim, 4);
    s->max = calloc(dim, 4);
    if (!s->mean || !s->m2 || !s->min || !s->max) {
        h2t_layer_stats_destroy(s);
        return NULL;
    }
    return s;
}

/* Fills s (from stats_alloc(dim)) from a stats value of the same dim, already checked. */
static void stats_decode(h2t_layer_stats *s, const uint8_t *p)
{
    size_t dim = s->dim;
    double nsum;
    memcpy(&s->count, p + 8, 8);
    memcpy(&nsum, p + 16, 8);
    memcpy(&s->norm_min, p + 24, 8);
    memcpy(&s->norm_max, p + 32, 8);
    s->norm_mean = s->count ? nsum / (double)s->count : 0;
    p += STATS_HDR;
    memcpy(s->mean, p, dim * 8);
    memcpy(s->m2, p + dim * 8, dim * 8);
    memcpy(s->min, p + dim * 16, dim * 4);
    memcpy(s->max, p + dim * 20, dim * 4);
}

/* Feature blocks. Format 2 writes one packed block per batch: key (ext, ST_PACKED, first), value
 * n samples of every layer, layer after layer (layer l's n rows start at n * offset_l values),
 * so a batch is one LMDB value: no overflow page half-used per layer and nothing rewritten.
 * Format 1 stores (still read) hold one block per layer: key (ext, layer, first), n rows. */
#define ST_PACKED 0xFFFFu

typedef struct feat_write_ctx {
    uint32_t ext, first, n;
    const float *const *layers;
    uint8_t *scratch; /* every layer's statistics value, then 2n row accumulators */
    size_t scratch_len;
    uint8_t *merge; /* the previous small packed block, copied before it is replaced */
    size_t merge_len;
    /* the last attempt's wall seconds: the whole transaction function and its parts */
    double t_fn, t_stats, t_rows, t_crc;
    uint32_t at;  /* the key (first sample) of the block written */
    size_t bytes; /* and its size */
} feat_write_ctx;

static int feat_seek(h2t_store *st, MDB_cursor *cur, uint32_t ext, uint16_t layer, uint32_t s,
                     size_t rowbytes, size_t trailer, uint32_t *bfirst, uint32_t *bn,
                     const uint8_t **data);

#ifdef ST_HAVE_F16C_PATH
/* hardware conversions, chosen at run time (the binary stays generic x86-64); both round to
 * nearest even exactly as h2t_f32_to_f16 / h2t_f16_to_f32 do */
__attribute__((target("avx,f16c"))) static void f32_to_f16_hw(uint8_t *dst, const float *x,
                                                              size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i), h);
    }
    for (; i < n; i++) {
        uint16_t h = h2t_f32_to_f16(x[i]);
        memcpy(dst + 2 * i, &h, 2);
    }
}

__attribute__((target("avx,f16c"))) static void f16_to_f32_hw(float *out, const uint8_t *src,
                                                              size_t n)
{
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * j));
        _mm256_storeu_ps(out + j, _mm256_cvtph_ps(h));
    }
    for (; j < n; j++) {
        uint16_t h;
        memcpy(&h, src + 2 * j, 2);
        out[j] = h2t_f16_to_f32(h);
    }
}
#endif

/* Store count floats as esize-byte values. Returns the index of the first value that does not
 * fit f16 (it would become infinite), or SIZE_MAX when all fit. */
static size_t rows_put(uint8_t *dst, const float *x, size_t count, size_t esize, int f16c)
{
    if (esize == 4) {
        memcpy(dst, x, count * 4);
        return SIZE_MAX;
    }
#ifdef ST_HAVE_F16C_PATH
    if (f16c)
        f32_to_f16_hw(dst, x, count);
    else
#endif
        for (size_t i = 0; i < count; i++) {
            uint16_t h = h2t_f32_to_f16(x[i]);
            memcpy(dst + 2 * i, &h, 2);
        }
    for (size_t i = 0; i < count; i++) {
        uint16_t h;
        memcpy(&h, dst + 2 * i, 2);
        if ((h & 0x7c00u) == 0x7c00u)
            return i;
    }
    return SIZE_MAX;
}

static int f16_range_err(const feat_write_ctx *c, const char *layer, uint32_t dim, const float *x,
                         size_t i)
{
    return h2t_err_set(H2T_ENUMERIC,
                       "extraction %u layer '%s' sample %u feature %u = %g is outside the f16 "
                       "range (|x| <= 65504) of this f16 extraction",
                       c->ext, layer, c->first + (uint32_t)(i / dim), (uint32_t)(i % dim),
                       (double)x[i]);
}

/* One feature column j of the batch (the scalar definition): the batch sum row by row, each
 * row's squared value into the row's accumulator for even or odd features, min/max; then the
 * batch's squared deviations row by row and Chan et al.'s merge with (count, mean, m2). */
static int stats_col(const float *x, uint32_t n, uint32_t dim, uint32_t j, uint64_t count,
                     double *mean, double *m2, float *mn, float *mx, double *q)
{
    double s = 0, bm2 = 0;
    float lo = count ? mn[j] : INFINITY, hi = count ? mx[j] : -INFINITY, chk = 0;
    for (uint32_t i = 0; i < n; i++) {
        float f = x[(size_t)i * dim + j];
        chk += f * 0.0f;
        s += f;
        q[2 * i + (j & 1)] += (double)f * f;
        lo = f < lo ? f : lo;
        hi = f > hi ? f : hi;
    }
    double bm = s / n;
    for (uint32_t i = 0; i < n; i++) {
        double d = x[(size_t)i * dim + j] - bm;
        bm2 += d * d;
    }
    double na = (double)count, nb = (double)n, nt = na + nb;
    double delta = bm - mean[j];
    mean[j] = count ? mean[j] + delta * (nb / nt) : bm;
    m2[j] = count ? m2[j] + bm2 + delta * delta * (na * nb / nt) : bm2;
    mn[j] = lo;
    mx[j] = hi;
    return chk != 0;
}

#if defined(__SSE2__)
/* Columns j..j+3 with SSE2, the same operations in the same order per column as stats_col (the
 * row accumulators q take even features in lane 0 and odd ones in lane 1), so the results are
 * bitwise those of the scalar definition. */
static int stats_col4(const float *x, uint32_t n, uint32_t dim, uint32_t j, uint64_t count,
                      double *mean, double *m2, float *mn, float *mx, double *q)
{
    const __m128 zero = _mm_setzero_ps();
    __m128d s0 = _mm_setzero_pd(), s1 = _mm_setzero_pd();
    __m128 lo = count ? _mm_loadu_ps(mn + j) : _mm_set1_ps(INFINITY);
    __m128 hi = count ? _mm_loadu_ps(mx + j) : _mm_set1_ps(-INFINITY);
    __m128 chk = zero;
    const float *p = x + j;
    for (uint32_t i = 0; i < n; i++, p += dim) {
        __m128 f = _mm_loadu_ps(p);
        __m128d f0 = _mm_cvtps_pd(f), f1 = _mm_cvtps_pd(_mm_movehl_ps(f, f));
        chk = _mm_add_ps(chk, _mm_mul_ps(f, zero));
        s0 = _mm_add_pd(s0, f0);
        s1 = _mm_add_pd(s1, f1);
        __m128d qi = _mm_loadu_pd(q + 2 * i);
        qi = _mm_add_pd(qi, _mm_mul_pd(f0, f0));
        qi = _mm_add_pd(qi, _mm_mul_pd(f1, f1));
        _mm_storeu_pd(q + 2 * i, qi);
        lo = _mm_min_ps(f, lo); /* f < lo ? f : lo */
        hi = _mm_max_ps(f, hi); /* f > hi ? f : hi */
    }
    const __m128d nv = _mm_set1_pd((double)n);
    __m128d bm0 = _mm_div_pd(s0, nv), bm1 = _mm_div_pd(s1, nv);
    __m128d v0 = _mm_setzero_pd(), v1 = _mm_setzero_pd();
    p = x + j;
    for (uint32_t i = 0; i < n; i++, p += dim) {
        __m128 f = _mm_loadu_ps(p);
        __m128d d0 = _mm_sub_pd(_mm_cvtps_pd(f), bm0);
        __m128d d1 = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(f, f)), bm1);
        v0 = _mm_add_pd(v0, _mm_mul_pd(d0, d0));
        v1 = _mm_add_pd(v1, _mm_mul_pd(d1, d1));
    }
    if (count) {
        double na = (double)count, nb = (double)n, nt = na + nb;
        const __m128d wm = _mm_set1_pd(nb / nt), wv = _mm_set1_pd(na * nb / nt);
        __m128d a0 = _mm_loadu_pd(mean + j), a1 = _mm_loadu_pd(mean + j + 2);
        __m128d e0 = _mm_sub_pd(bm0, a0), e1 = _mm_sub_pd(bm1, a1);
        _mm_storeu_pd(mean + j, _mm_add_pd(a0, _mm_mul_pd(e0, wm)));
        _mm_storeu_pd(mean + j + 2, _mm_add_pd(a1, _mm_mul_pd(e1, wm)));
        __m128d m0 = _mm_add_pd(_mm_loadu_pd(m2 + j), v0);
        __m128d m1 = _mm_add_pd(_mm_loadu_pd(m2 + j + 2), v1);
        _mm_storeu_pd(m2 + j, _mm_add_pd(m0, _mm_mul_pd(_mm_mul_pd(e0, e0), wv)));
        _mm_storeu_pd(m2 + j + 2, _mm_add_pd(m1, _mm_mul_pd(_mm_mul_pd(e1, e1), wv)));
    } else {
        _mm_storeu_pd(mean + j, bm0);
        _mm_storeu_pd(mean + j + 2, bm1);
        _mm_storeu_pd(m2 + j, v0);
        _mm_storeu_pd(m2 + j + 2, v1);
    }
    _mm_storeu_ps(mn + j, lo);
    _mm_storeu_ps(mx + j, hi);
    return _mm_movemask_ps(_mm_cmpunord_ps(chk, chk)) != 0;
}
#endif

#ifdef ST_HAVE_F16C_PATH
/* Columns j..j+7 (AVX) and j..j+15 (AVX-512): stats_col4's operations with wider vectors, lane
 * for lane; the row accumulators q take the column pairs (j, j+1), (j+2, j+3), ... in turn, as
 * the scalar definition adds them, so every number stays bitwise the scalar one's. */
__attribute__((target("avx"))) static int stats_col8(const float *x, uint32_t n, uint32_t dim,
                                                     uint32_t j, uint64_t count, double *mean,
                                                     double *m2, float *mn, float *mx, double *q)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    __m256 lo = count ? _mm256_loadu_ps(mn + j) : _mm256_set1_ps(INFINITY);
    __m256 hi = count ? _mm256_loadu_ps(mx + j) : _mm256_set1_ps(-INFINITY);
    __m256 chk = zero;
    const float *p = x + j;
    for (uint32_t i = 0; i < n; i++, p += dim) {
        __m256 f = _mm256_loadu_ps(p);
        __m256d f0 = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
        __m256d f1 = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
        chk = _mm256_add_ps(chk, _mm256_mul_ps(f, zero));
        s0 = _mm256_add_pd(s0, f0);
        s1 = _mm256_add_pd(s1, f1);
        __m256d e0 = _mm256_mul_pd(f0, f0), e1 = _mm256_mul_pd(f1, f1);
        __m128d qi = _mm_loadu_pd(q + 2 * i);
        qi = _mm_add_pd(qi, _mm256_castpd256_pd128(e0));
        qi = _mm_add_pd(qi, _mm256_extractf128_pd(e0, 1));
        qi = _mm_add_pd(qi, _mm256_castpd256_pd128(e1));
        qi = _mm_add_pd(qi, _mm256_extractf128_pd(e1, 1));
        _mm_storeu_pd(q + 2 * i, qi);
        lo = _mm256_min_ps(f, lo); /* f < lo ? f : lo */
        hi = _mm256_max_ps(f, hi); /* f > hi ? f : hi */
    }
    const __m256d nv = _mm256_set1_pd((double)n);
    __m256d bm0 = _mm256_div_pd(s0, nv), bm1 = _mm256_div_pd(s1, nv);
    __m256d v0 = _mm256_setzero_pd(), v1 = _mm256_setzero_pd();
    p = x + j;
    for (uint32_t i = 0; i < n; i++, p += dim) {
        __m256 f = _mm256_loadu_ps(p);
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f)), bm0);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)), bm1);
        v0 = _mm256_add_pd(v0, _mm256_mul_pd(d0, d0));
        v1 = _mm256_add_pd(v1, _mm256_mul_pd(d1, d1));
    }
    if (count) {
        double na = (double)count, nb = (double)n, nt = na + nb;
        const __m256d wm = _mm256_set1_pd(nb / nt), wv = _mm256_set1_pd(na * nb / nt);
        __m256d a0 = _mm256_loadu_pd(mean + j), a1 = _mm256_loadu_pd(mean + j + 4);
        __m256d e0 = _mm256_sub_pd(bm0, a0), e1 = _mm256_sub_pd(bm1, a1);
        _mm256_storeu_pd(mean + j, _mm256_add_pd(a0, _mm256_mul_pd(e0, wm)));
        _mm256_storeu_pd(mean + j + 4, _mm256_add_pd(a1, _mm256_mul_pd(e1, wm)));
        __m256d m0 = _mm256_add_pd(_mm256_loadu_pd(m2 + j), v0);
        __m256d m1 = _mm256_add_pd(_mm256_loadu_pd(m2 + j + 4), v1);
        _mm256_storeu_pd(m2 + j, _mm256_add_pd(m0, _mm256_mul_pd(_mm256_mul_pd(e0, e0), wv)));
        _mm256_storeu_pd(m2 + j + 4, _mm256_add_pd(m1, _mm256_mul_pd(_mm256_mul_pd(e1, e1), wv)));
    } else {
        _mm256_storeu_pd(mean + j, bm0);
        _mm256_storeu_pd(mean + j + 4, bm1);
        _mm256_storeu_pd(m2 + j, v0);
        _mm256_storeu_pd(m2 + j + 4, v1);
    }
    _mm256_storeu_ps(mn + j, lo);
    _mm256_storeu_ps(mx + j, hi);
    return _mm256_movemask_ps(_mm256_cmp_ps(chk, chk, _CMP_UNORD_Q)) != 0;
}

__attribute__((target("avx512f"))) static int stats_col16(const float *x, uint32_t n, uint32_t dim,
                                                          uint32_t j, uint64_t count, double *mean,
                                                          double *m2, float *mn, float *mx,
                                                          double *q)
{
    const __m512 zero = _mm512_setzero_ps();
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    __m512 lo = count ? _mm512_loadu_ps(mn + j) : _mm512_set1_ps(INFINITY);
    __m512 hi = count ? _mm512_loadu_ps(mx + j) : _mm512_set1_ps(-INFINITY);
    __m512 chk = zero;
    const float *p = x + j;
    for (uint32_t i = 0; i < n; i++, p += dim) {
        __m512 f = _mm512_loadu_ps(p);
        __m512d f0 = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
        __m512d f1 =
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
        chk = _mm512_add_ps(chk, _mm512_mul_ps(f, zero));
        s0 = _mm512_add_pd(s0, f0);
        s1 = _mm512_add_pd(s1, f1);
        __m512d e0 = _mm512_mul_pd(f0, f0), e1 = _mm512_mul_pd(f1, f1);
        __m256d e00 = _mm512_castpd512_pd256(e0), e01 = _mm512_extractf64x4_pd(e0, 1);
        __m256d e10 = _mm512_castpd512_pd256(e1), e11 = _mm512_extractf64x4_pd(e1, 1);
        __m128d qi = _mm_loadu_pd(q + 2 * i);
        qi = _mm_add_pd(qi, _mm256_castpd256_pd128(e00));
        qi = _mm_add_pd(qi, _mm256_extractf128_pd(e00, 1));
        qi = _mm_add_pd(qi, _mm256_castpd256_pd128(e01));
        qi = _mm_add_pd(qi, _mm256_extractf128_pd(e01, 1));
        qi = _mm_add_pd(qi, _mm256_castpd256_pd128(e10));
        qi = _mm_add_pd(qi, _mm256_extractf128_pd(e10, 1));
        qi = _mm_add_pd(qi, _mm256_castpd256_pd128(e11));
        qi = _mm_add_pd(qi, _mm256_extractf128_pd(e11, 1));
        _mm_storeu_pd(q + 2 * i, qi);
        lo = _mm512_min_ps(f, lo); /* f < lo ? f : lo */
        hi = _mm512_max_ps(f, hi); /* f > hi ? f : hi */
    }
    const __m512d nv = _mm512_set1_pd((double)n);
    __m512d bm0 = _mm512_div_pd(s0, nv), bm1 = _mm512_div_pd(s1, nv);
    __m512d v0 = _mm512_setzero_pd(), v1 = _mm512_setzero_pd();
    p = x + j;
    for (uint32_t i = 0; i < n; i++, p += dim) {
        __m512 f = _mm512_loadu_ps(p);
        __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(f)), bm0);
        __m512d d1 = _mm512_sub_pd(
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1))), bm1);
        v0 = _mm512_add_pd(v0, _mm512_mul_pd(d0, d0));
        v1 = _mm512_add_pd(v1, _mm512_mul_pd(d1, d1));
    }
    if (count) {
        double na = (double)count, nb = (double)n, nt = na + nb;
        const __m512d wm = _mm512_set1_pd(nb / nt), wv = _mm512_set1_pd(na * nb / nt);
        __m512d a0 = _mm512_loadu_pd(mean + j), a1 = _mm512_loadu_pd(mean + j + 8);
        __m512d e0 = _mm512_sub_pd(bm0, a0), e1 = _mm512_sub_pd(bm1, a1);
        _mm512_storeu_pd(mean + j, _mm512_add_pd(a0, _mm512_mul_pd(e0, wm)));
        _mm512_storeu_pd(mean + j + 8, _mm512_add_pd(a1, _mm512_mul_pd(e1, wm)));
        __m512d m0 = _mm512_add_pd(_mm512_loadu_pd(m2 + j), v0);
        __m512d m1 = _mm512_add_pd(_mm512_loadu_pd(m2 + j + 8), v1);
        _mm512_storeu_pd(m2 + j, _mm512_add_pd(m0, _mm512_mul_pd(_mm512_mul_pd(e0, e0), wv)));
        _mm512_storeu_pd(m2 + j + 8, _mm512_add_pd(m1, _mm512_mul_pd(_mm512_mul_pd(e1, e1), wv)));
    } else {
        _mm512_storeu_pd(mean + j, bm0);
        _mm512_storeu_pd(mean + j + 8, bm1);
        _mm512_storeu_pd(m2 + j, v0);
        _mm512_storeu_pd(m2 + j + 8, v1);
    }
    _mm512_storeu_ps(mn + j, lo);
    _mm512_storeu_ps(mx + j, hi);
    return _mm512_cmp_ps_mask(chk, chk, _CMP_UNORD_Q) != 0;
}
#endif

/* Merge the batch x (n rows of dim) into the statistics value sv (header, mean, m2, min, max;
 * sv 8-byte aligned). q: 2n doubles of scratch. Returns 1 when a value is NaN or infinite (sv
 * is then meaningless), else 0. Every number is bitwise the scalar definition's (stats_col and
 * the row norms in row order), whatever the vector width. */
static int stats_merge(uint8_t *sv, const float *x, uint32_t n, uint32_t dim, double *q)
{
    uint64_t count;
    double norm_sum, norm_min, norm_max;
    memcpy(&count, sv + 8, 8);
    memcpy(&norm_sum, sv + 16, 8);
    memcpy(&norm_min, sv + 24, 8);
    memcpy(&norm_max, sv + 32, 8);
    double *mean = (double *)(void *)(sv + STATS_HDR);
    double *m2 = mean + dim;
    float *mn = (float *)(m2 + dim);
    float *mx = mn + dim;
    memset(q, 0, sizeof(double) * 2 * n);
    int bad = 0;
    uint32_t j = 0;
#ifdef ST_HAVE_F16C_PATH
    if (h2t_cpu_has(H2T_CPU_AVX512F))
        for (; j + 16 <= dim; j += 16)
            bad |= stats_col16(x, n, dim, j, count, mean, m2, mn, mx, q);
    if (h2t_cpu_has(H2T_CPU_AVX))
        for (; j + 8 <= dim; j += 8)
            bad |= stats_col8(x, n, dim, j, count, mean, m2, mn, mx, q);
#endif
#if defined(__SSE2__)
    for (; j + 4 <= dim; j += 4)
        bad |= stats_col4(x, n, dim, j, count, mean, m2, mn, mx, q);
#endif
    for (; j < dim; j++)
        bad |= stats_col(x, n, dim, j, count, mean, m2, mn, mx, q);
    if (bad)
        return 1;
    for (uint32_t i = 0; i < n; i++) {
        double nrm = sqrt(q[2 * i] + q[2 * i + 1]);
        norm_sum += nrm;
        if (nrm < norm_min)
            norm_min = nrm;
        if (nrm > norm_max)
            norm_max = nrm;
    }
    count += n;
    memcpy(sv + 8, &count, 8);
    memcpy(sv + 16, &norm_sum, 8);
    memcpy(sv + 24, &norm_min, 8);
    memcpy(sv + 32, &norm_max, 8);
    return 0;
}

/* Load (or start) the statistics of layer l into sv. */
/* A statistics value of an extraction with checksums ends in the CRC32C of the rest. */
static int stats_check(const h2t_store *st, const MDB_val *v, const h2t_extraction *e, uint32_t l)
{
    uint32_t dim = e->layers[l].dim;
    size_t want = stats_bytes(dim) + (e->checksums ? 4 : 0);
    uint32_t crc = 0;
    if (v->mv_size == want && e->checksums)
        memcpy(&crc, (const uint8_t *)v->mv_data + stats_bytes(dim), 4);
    if (v->mv_size != want || (e->checksums && h2t_crc32c(0, v->mv_data, stats_bytes(dim)) != crc))
        return h2t_err_set(H2T_ECORRUPT,
                           "store %s: statistics of extraction %u layer %u '%s' are damaged (%s): "
                           "h2tdb verify --store %s lists what else is",
                           st->dir, e->id, l, e->layers[l].name,
                           v->mv_size != want ? "wrong size" : "checksum mismatch", st->dir);
    return 0;
}

static int stats_load(h2t_store *st, MDB_txn *txn, const h2t_extraction *e, uint32_t l, uint8_t *sv)
{
    uint32_t ext = e->id, dim = e->layers[l].dim;
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_STATS], key_stats(&k, ext, (uint16_t)l), &v);
    if (rc == MDB_NOTFOUND) {
        memset(sv, 0, stats_bytes(dim));
        memcpy(sv, &dim, 4);
        double inf = INFINITY, ninf = -INFINITY;
        memcpy(sv + 24, &inf, 8);
        memcpy(sv + 32, &ninf, 8);
        return 0;
    }
    if (rc)
        return st_mdbk(st, rc, "reading", T_STATS, &k.v);
    if ((rc = stats_check(st, &v, e, l)) < 0)
        return rc;
    memcpy(sv, v.mv_data, stats_bytes(dim));
    return 0;
}

/* Reserve the batch's packed block of rowbytes per sample: a new block at c->first, or, when
 * both are under ST_MIN_BLOCK (an overflow value wastes up to a page, so tiny blocks would
 * swell the store), the previous packed block extended by this batch. *old = the samples the
 * block already held (0 for a new block; their bytes are then in c->merge). The caller fills
 * the block before any other update in the transaction (LMDB's MDB_RESERVE rule). */
static int feat_block_reserve(h2t_store *st, MDB_txn *txn, feat_write_ctx *c, size_t rowbytes,
                              size_t trailer, uint8_t **block, uint32_t *old)
{
    size_t nb = (size_t)c->n * rowbytes;
    uint32_t at = c->first, pn = 0;
    key k;
    if (c->first > 0 && nb < ST_MIN_BLOCK) {
        MDB_cursor *cur;
        int rc = mdb_cursor_open(txn, st->dbi[T_FEATURES], &cur);
        if (rc)
            return st_mdb(st, rc, "features cursor");
        uint32_t pf, cnt;
        const uint8_t *pd;
        rc = feat_seek(st, cur, c->ext, ST_PACKED, c->first - 1, rowbytes, trailer, &pf, &cnt, &pd);
        if (rc == 0 && pf + cnt == c->first && (size_t)cnt * rowbytes < ST_MIN_BLOCK) {
            size_t ob = (size_t)cnt * rowbytes;
            if (ob > c->merge_len) {
                free(c->merge);
                c->merge_len = 0;
                if (!(c->merge = malloc(ST_MIN_BLOCK))) {
                    mdb_cursor_close(cur);
                    return h2t_err_set(H2T_ENOMEM, "feature block");
                }
                c->merge_len = ST_MIN_BLOCK;
            }
            memcpy(c->merge, pd, ob); /* the put below replaces that value */
            at = pf;
            pn = cnt;
        }
        mdb_cursor_close(cur);
        if (rc < 0)
            return rc;
    }
    MDB_val bv = {(size_t)pn * rowbytes + nb + trailer, NULL};
    int rc = mdb_put(txn, st->dbi[T_FEATURES], key_feat(&k, c->ext, ST_PACKED, at), &bv,
                     pn ? MDB_RESERVE : MDB_RESERVE | MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return h2t_err_set(H2T_ECORRUPT,
                           "store %s: extraction %u already has a feature block at sample %u "
                           "beyond samples_done",
                           st->dir, c->ext, c->first);
    if (rc)
        return st_mdbk(st, rc, "writing", T_FEATURES, &k.v);
    *block = bv.mv_data;
    *old = pn;
    c->at = at;
    c->bytes = bv.mv_size;
    return 0;
}

/* The first non-finite value of layer l in the batch, as an error (row order, then feature). */
static int feat_nonfinite(const feat_write_ctx *c, const h2t_layer_info *li, const float *x)
{
    for (uint32_t i = 0; i < c->n; i++)
        for (uint32_t j = 0; j < li->dim; j++) {
            float f = x[(size_t)i * li->dim + j];
            if (!isfinite(f))
                return h2t_err_set(H2T_ENUMERIC,
                                   "extraction %u layer '%s' sample %u feature %u is %s", c->ext,
                                   li->name, c->first + i, j, isnan(f) ? "NaN" : "infinite");
        }
    return h2t_err_set(H2T_ENUMERIC, "extraction %u layer '%s': a non-finite value", c->ext,
                       li->name);
}

static int feat_write_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    feat_write_ctx *c = ctx;
    h2t_extraction *e;
    double t_fn0 = h2t_now_s();
    c->t_stats = c->t_rows = c->t_crc = 0;
    int rc = ext_load(st, txn, c->ext, &e);
    if (rc < 0)
        return rc;
    if (c->first != e->samples_done) {
        rc = h2t_err_set(H2T_ESTATE,
                         "extraction %u: the batch starts at sample %u but samples_done is %u "
                         "(writes resume from the marker)",
                         c->ext, c->first, e->samples_done);
        goto out;
    }
    if ((uint64_t)c->first + c->n > e->n_samples) {
        rc = h2t_err_set(H2T_EINVAL, "extraction %u: samples %u..%llu past n_samples %u", c->ext,
                         c->first, (unsigned long long)c->first + c->n - 1, e->n_samples);
        goto out;
    }
    uint64_t total = 0;
    size_t sbytes = 0;
    for (uint32_t l = 0; l < e->n_layers; l++) {
        if (!c->layers[l]) {
            rc = h2t_err_set(H2T_EINVAL, "extraction %u: no data for layer %u '%s'", c->ext, l,
                             e->layers[l].name);
            goto out;
        }
        total += e->layers[l].dim;
        sbytes += stats_bytes(e->layers[l].dim) + 8; /* + its checksum, doubles stay aligned */
    }
    size_t need = sbytes + sizeof(double) * 2 * c->n;
    if (need > c->scratch_len) {
        free(c->scratch);
        c->scratch = malloc(need);
        c->scratch_len = c->scratch ? need : 0;
        if (!c->scratch) {
            rc = h2t_err_set(H2T_ENOMEM, "feature batch statistics");
            goto out;
        }
    }
    double *q = (double *)(void *)(c->scratch + sbytes);
    const size_t esize = e->dtype == H2T_DTYPE_F16 ? 2 : 4;
    uint8_t *block = NULL;
    uint32_t old = 0;
    const size_t trailer = e->checksums ? (size_t)4 * e->n_layers : 0;
    if ((rc = feat_block_reserve(st, txn, c, (size_t)total * esize, trailer, &block, &old)) < 0)
        goto out;
    /* layer by layer while its values are in the cache: statistics into the scratch, rows into
     * the block (only reads in between: the block is filled before the next update) */
    const size_t rows = (size_t)old + c->n;
    size_t off = 0, so = 0;
    for (uint32_t l = 0; l < e->n_layers; l++) {
        const h2t_layer_info *li = &e->layers[l];
        const float *x = c->layers[l];
        uint8_t *sv = c->scratch + so;
        /* the rows first: their sequential read brings the layer into this core's cache for
         * the statistics' column walk (which, run first, read it from memory or the other
         * core's cache about 3x slower) */
        double t0 = h2t_now_s();
        uint8_t *dst = block + rows * off * esize;
        if (old)
            memcpy(dst, c->merge + (size_t)old * off * esize, (size_t)old * li->dim * esize);
        size_t bad = rows_put(dst + (size_t)old * li->dim * esize, x, (size_t)c->n * li->dim, esize,
                              st->f16c);
        double t1 = h2t_now_s();
        if ((rc = stats_load(st, txn, e, l, sv)) < 0)
            goto out;
        if (stats_merge(sv, x, c->n, li->dim, q)) {
            rc = feat_nonfinite(c, li, x);
            goto out;
        }
        if (bad != SIZE_MAX) {
            rc = f16_range_err(c, li->name, li->dim, x, bad);
            goto out;
        }
        double t2 = h2t_now_s();
        if (trailer) { /* the layer's rows in this block, checksummed */
            uint32_t crc = h2t_crc32c(0, dst, rows * li->dim * esize);
            memcpy(block + rows * total * esize + 4 * (size_t)l, &crc, 4);
        }
        double t3 = h2t_now_s();
        c->t_rows += t1 - t0;
        c->t_stats += t2 - t1;
        c->t_crc += t3 - t2;
        off += li->dim;
        so += stats_bytes(li->dim) + 8;
    }
    so = 0;
    for (uint32_t l = 0; l < e->n_layers; l++) {
        key k;
        size_t sb = stats_bytes(e->layers[l].dim);
        if (e->checksums) {
            double t0 = h2t_now_s();
            uint32_t crc = h2t_crc32c(0, c->scratch + so, sb);
            memcpy(c->scratch + so + sb, &crc, 4);
            c->t_crc += h2t_now_s() - t0;
        }
        if ((rc = st_put(st, txn, T_STATS, key_stats(&k, c->ext, (uint16_t)l), c->scratch + so,
                         sb + (e->checksums ? 4 : 0), 0, "writing statistics")) < 0)
            goto out;
        so += sb + 8;
    }
    /* packed blocks are format 2 or later: an older store is upgraded with its first one */
    if ((rc = format_bump(st, txn)) < 0)
        goto out;
    e->samples_done = c->first + c->n;
    e->updated_ms = h2t_wall_ms();
    rc = ext_save(st, txn, e);
out:
    h2t_extraction_destroy(e);
    c->t_fn = h2t_now_s() - t_fn0;
    return rc;
}

/* Drop the committed block (ext, ST_PACKED, at)'s whole pages from the page cache. The pages
 * are clean once the commit's fsync returned; best effort: a failure changes nothing stored. */
typedef struct feat_drop_ctx {
    uint32_t ext, at;
} feat_drop_ctx;

/* The offset in the file (device, inode) of [p, p + len), an address range inside one of
 * this process's mappings of that file (/proc/self/maps): 0, or -1 when it is not one. Only
 * addresses are compared: nothing of the mapping is read, so no page of it is faulted in (a
 * fault maps its neighbours too, and mapped pages stay in the page cache). */
static int map_file_offset(const void *p, size_t len, dev_t dev, ino_t ino, uint64_t *off)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[512];
    uintptr_t a = (uintptr_t)p;
    int rc = -1;
    while (rc < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, pgoff, inode;
        unsigned maj, min;
        if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &lo, &hi, &pgoff, &maj, &min, &inode) == 6 &&
            a >= lo && a + len <= hi && inode == (unsigned long)ino && maj == major(dev) &&
            min == minor(dev)) {
            *off = (uint64_t)(a - lo) + pgoff;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

static int feat_drop_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    const feat_drop_ctx *d = ctx;
    key k;
    MDB_val v;
    int fd;
    struct stat sb;
    uint64_t off;
    long pg = sysconf(_SC_PAGESIZE);
    size_t ps = pg > 0 ? (size_t)pg : 4096;
    /* mdb_get points into the map without reading the value */
    if (mdb_get(txn, st->dbi[T_FEATURES], key_feat(&k, d->ext, ST_PACKED, d->at), &v) != 0 ||
        mdb_env_get_fd(st->env, &fd) != 0 || fstat(fd, &sb) != 0 ||
        map_file_offset(v.mv_data, v.mv_size, sb.st_dev, sb.st_ino, &off) < 0)
        return 0;
    size_t lo = (size_t)(off + ps - 1) / ps * ps, hi = (size_t)(off + v.mv_size) / ps * ps;
    if (hi > lo)
        posix_fadvise(fd, (off_t)lo, (off_t)(hi - lo), POSIX_FADV_DONTNEED);
    return 0;
}

int h2t_store_features_cache(h2t_store *st, int keep)
{
    return !__atomic_exchange_n(&st->drop_blocks, !keep, __ATOMIC_RELAXED);
}

int h2t_store_features_write(h2t_store *st, uint32_t ext, uint32_t first, uint32_t n,
                             const float *const *layers)
{
    if (st->set)
        return set_read_only(st, "features");
    if (!n)
        return h2t_err_set(H2T_EINVAL, "extraction %u: empty batch at sample %u", ext, first);
    if (!layers)
        return h2t_err_set(H2T_EINVAL, "extraction %u: no layer data", ext);
    feat_write_ctx c = {ext, first, n, layers, NULL, 0, NULL, 0, 0, 0, 0, 0, 0, 0};
    double w0 = h2t_now_s(), c0 = thread_cpu_s(), commit_wall = 0, commit_cpu = 0;
    int rc = st_run_timed(st, 1, feat_write_fn, &c, &commit_wall, &commit_cpu);
    free(c.scratch);
    free(c.merge);
    if (rc == 0) {
        h2t_store_write_times *w = &st->wt;
        double cpu = thread_cpu_s() - c0, in_txn = cpu - commit_cpu;
        /* the parts' share of the transaction's CPU (see store.h) */
        double k = c.t_fn > 0 && in_txn > 0 ? in_txn / c.t_fn : 0;
        w->calls++;
        w->samples += n;
        w->wall_s += h2t_now_s() - w0;
        w->cpu_s += cpu;
        w->stats_cpu_s += k * c.t_stats;
        w->rows_cpu_s += k * c.t_rows;
        w->crc_cpu_s += k * c.t_crc;
        w->commit_cpu_s += commit_cpu;
        w->commit_s += commit_wall;
        /* a block as large as ST_MIN_BLOCK is never extended by the next batch, so nothing
         * of it is read again by the writes */
        if (__atomic_load_n(&st->drop_blocks, __ATOMIC_RELAXED) && c.bytes >= ST_MIN_BLOCK) {
            feat_drop_ctx d = {ext, c.at};
            st_run(st, 0, feat_drop_fn, &d);
        }
    }
    return rc;
}

void h2t_store_write_times_get(const h2t_store *st, h2t_store_write_times *out)
{
    *out = st->wt;
}

/* find the block under key (ext, layer) holding sample s: 0 found, 1 not stored, < 0 error.
 * trailer: the bytes of checksums after the rows (0 without). */
static int feat_seek(h2t_store *st, MDB_cursor *cur, uint32_t ext, uint16_t layer, uint32_t s,
                     size_t rowbytes, size_t trailer, uint32_t *bfirst, uint32_t *bn,
                     const uint8_t **data)
{
    key kk;
    MDB_val k = *key_feat(&kk, ext, layer, s), v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int exact = rc == 0 && k.mv_size == 10 && !memcmp(k.mv_data, kk.b, 10);
    if (!exact) {
        if (rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        else if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        if (rc == MDB_NOTFOUND)
            return 1;
        if (rc)
            return st_mdb(st, rc, "reading features");
        if (k.mv_size != 10 || memcmp(k.mv_data, kk.b, 6))
            return 1;
    }
    uint32_t f = h2t_be32_get((uint8_t *)k.mv_data + 6);
    if (v.mv_size <= trailer || (v.mv_size - trailer) % rowbytes) {
        char what[48];
        if (layer == ST_PACKED)
            snprintf(what, sizeof(what), "packed feature block");
        else
            snprintf(what, sizeof(what), "feature block of layer %u", layer);
        return h2t_err_set(H2T_ECORRUPT,
                           "store %s: %s of extraction %u at sample %u has %zu bytes, not a "
                           "multiple of %zu",
                           st->dir, what, ext, f, v.mv_size, rowbytes);
    }
    uint64_t cnt = (v.mv_size - trailer) / rowbytes;
    if (f > s || (uint64_t)f + cnt <= s)
        return 1;
    *bfirst = f;
    *bn = (uint32_t)cnt;
    *data = v.mv_data;
    return 0;
}

/* where one layer's rows are: its own blocks (format 1) or its part of the packed ones */
typedef struct feat_loc {
    uint32_t ext;
    uint16_t layer;
    size_t rowbytes;         /* dim * esize: one row of this layer */
    size_t packbytes;        /* total_dim * esize: one sample of a packed block */
    size_t offbytes;         /* offset * esize: the layer's start in a packed sample */
    size_t trailer;          /* checksum bytes after a packed block's rows (0: none) */
    const h2t_extraction *e; /* BORROWED: for the names in errors */
} feat_loc;

static void feat_loc_init(const h2t_extraction *e, uint32_t layer, feat_loc *fl)
{
    size_t esize = e->dtype == H2T_DTYPE_F16 ? 2 : 4;
    uint64_t off = 0, total = 0;
    for (uint32_t l = 0; l < e->n_layers; l++) {
        if (l == layer)
            off = total;
        total += e->layers[l].dim;
    }
    fl->ext = e->id;
    fl->layer = (uint16_t)layer;
    fl->rowbytes = (size_t)e->layers[layer].dim * esize;
    fl->packbytes = (size_t)total * esize;
    fl->offbytes = (size_t)off * esize;
    fl->trailer = e->checksums ? (size_t)4 * e->n_layers : 0;
    fl->e = e;
}

/* the block holding sample s of the layer: *rows = its first row of the layer */
static int feat_find(h2t_store *st, MDB_cursor *cur, const feat_loc *fl, uint32_t s,
                     uint32_t *bfirst, uint32_t *bn, const uint8_t **rows)
{
    uint32_t f, cnt;
    const uint8_t *d;
    int rc = feat_seek(st, cur, fl->ext, ST_PACKED, s, fl->packbytes, fl->trailer, &f, &cnt, &d);
    if (rc == 0) {
        const uint8_t *block = d;
        d += (size_t)cnt * fl->offbytes;
        if (fl->trailer) { /* the layer's rows against their checksum, once per block visit */
            uint32_t want;
            memcpy(&want, block + (size_t)cnt * fl->packbytes + 4 * (size_t)fl->layer, 4);
            if (h2t_crc32c(0, d, (size_t)cnt * fl->rowbytes) != want)
                return h2t_err_set(H2T_ECORRUPT,
                                   "store %s: extraction %u '%s' layer %u '%s' samples %u..%u: "
                                   "the feature block fails its checksum (damaged on disk; h2tdb "
                                   "verify --store %s lists what else is)",
                                   st->dir, fl->ext, fl->e->name, fl->layer,
                                   fl->e->layers[fl->layer].name, f, f + cnt - 1, st->dir);
        }
    } else if (rc == 1) { /* a format 1 block */
        rc = feat_seek(st, cur, fl->ext, fl->layer, s, fl->rowbytes, 0, &f, &cnt, &d);
    }
    if (rc != 0)
        return rc;
    *bfirst = f;
    *bn = cnt;
    *rows = d;
    return 0;
}

/* Copy with non-temporal stores (SSE2, part of every x86-64): a large design matrix does not
 * fit any cache, and streaming stores skip reading each destination line before writing it.
 * The caller issues _mm_sfence() after the last one. */
static void copy_stream(float *dst, const uint8_t *src, size_t bytes)
{
#if defined(__SSE2__)
    uint8_t *d = (uint8_t *)dst;
    while (((uintptr_t)d & 15) && bytes >= 4) {
        memcpy(d, src, 4);
        d += 4, src += 4, bytes -= 4;
    }
    for (; bytes >= 64; d += 64, src += 64, bytes -= 64) {
        __m128i a0 = _mm_loadu_si128((const __m128i *)(const void *)src);
        __m128i a1 = _mm_loadu_si128((const __m128i *)(const void *)(src + 16));
        __m128i a2 = _mm_loadu_si128((const __m128i *)(const void *)(src + 32));
        __m128i a3 = _mm_loadu_si128((const __m128i *)(const void *)(src + 48));
        _mm_stream_si128((__m128i *)(void *)d, a0);
        _mm_stream_si128((__m128i *)(void *)(d + 16), a1);
        _mm_stream_si128((__m128i *)(void *)(d + 32), a2);
        _mm_stream_si128((__m128i *)(void *)(d + 48), a3);
    }
    memcpy(d, src, bytes);
#else
    memcpy(dst, src, bytes);
#endif
}

static void row_copy(float *out, const uint8_t *src, uint32_t dim, uint32_t dtype, int stream,
                     int f16c)
{
    if (dtype == H2T_DTYPE_F32) {
        if (stream)
            copy_stream(out, src, (size_t)dim * 4);
        else
            memcpy(out, src, (size_t)dim * 4);
        return;
    }
#ifdef ST_HAVE_F16C_PATH
    if (f16c) {
        f16_to_f32_hw(out, src, dim);
        return;
    }
#else
    (void)f16c;
#endif
    for (uint32_t j = 0; j < dim; j++) {
        uint16_t h;
        memcpy(&h, src + 2 * j, 2);
        out[j] = h2t_f16_to_f32(h);
    }
}

typedef struct layer_read_ctx {
    uint32_t ext, layer, first, n, dim;
    const uint32_t *samples;
    float *out;
    size_t ld;
    int check_dim;
} layer_read_ctx;

static int layer_check(h2t_store *st, const h2t_extraction *e, uint32_t layer)
{
    if (layer >= e->n_layers)
        return h2t_err_set(H2T_ENOTFOUND, "extraction %u has no layer %u (it has %u) in store %s",
                           e->id, layer, e->n_layers, st->dir);
    return 0;
}

static int layer_read_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    layer_read_ctx *c = ctx;
    h2t_extraction *e;
    int rc = ext_load(st, txn, c->ext, &e);
    if (rc < 0)
        return rc;
    if ((rc = layer_check(st, e, c->layer)) < 0)
        goto out;
    const h2t_layer_info *li = &e->layers[c->layer];
    uint32_t dim = li->dim;
    if (c->check_dim && c->dim != dim) {
        rc = h2t_err_set(H2T_ESHAPE,
                         "extraction %u layer '%s' has %u features, the caller asked for %u",
                         c->ext, li->name, dim, c->dim);
        goto out;
    }
    if (!c->check_dim && c->ld < dim) {
        rc = h2t_err_set(H2T_EINVAL, "extraction %u layer '%s': ld %zu < dim %u", c->ext, li->name,
                         c->ld, dim);
        goto out;
    }
    size_t rowbytes = (size_t)dim * (e->dtype == H2T_DTYPE_F16 ? 2 : 4);
    feat_loc fl;
    feat_loc_init(e, c->layer, &fl);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->dbi[T_FEATURES], &cur)) != 0) {
        rc = st_mdb(st, rc, "features cursor");
        goto out;
    }
    uint32_t bf = 0, bn = 0;
    const uint8_t *bd = NULL;
    /* a copy larger than a cache goes around it */
    int stream = (uint64_t)c->n * dim * 4 >= ST_STREAM_BYTES;
    for (uint32_t i = 0; i < c->n; i++) {
        uint32_t s = c->samples ? c->samples[i] : c->first + i;
        if (!bd || s < bf || s - bf >= bn) {
            rc = feat_find(st, cur, &fl, s, &bf, &bn, &bd);
            if (rc == 1)
                rc = h2t_err_set(H2T_ENOTFOUND,
                                 "extraction %u layer '%s': sample %u not stored (samples_done "
                                 "%u)",
                                 c->ext, li->name, s, e->samples_done);
            if (rc < 0)
                break;
        }
        row_copy(c->out + (size_t)i * c->ld, bd + (size_t)(s - bf) * rowbytes, dim, e->dtype,
                 stream, st->f16c);
    }
#if defined(__SSE2__)
    if (stream)
        _mm_sfence();
#endif
    mdb_cursor_close(cur);
out:
    h2t_extraction_destroy(e);
    return rc;
}

int h2t_store_feature_get(h2t_store *st, uint32_t ext, uint32_t layer, uint32_t sample, float *out,
                          uint32_t dim)
{
    if (!out)
        return h2t_err_set(H2T_EINVAL, "feature_get: no output buffer");
    if (st->set) {
        const h2t_extraction *w = set_whole(st);
        if (ext == w->id && layer < w->n_layers && w->layers[layer].dim != dim)
            return h2t_err_set(H2T_ESHAPE, "layer %u has dim %u, not %u", layer,
                               w->layers[layer].dim, dim);
        return set_layer_read(st, ext, layer, NULL, sample, 1, out, dim);
    }
    layer_read_ctx c = {ext, layer, sample, 1, dim, NULL, out, dim, 1};
    return st_run(st, 0, layer_read_fn, &c);
}

int h2t_store_layer_read(h2t_store *st, uint32_t ext, uint32_t layer, const uint32_t *samples,
                         uint32_t first, uint32_t n, float *out, size_t ld)
{
    if (!out && n)
        return h2t_err_set(H2T_EINVAL, "layer_read: no output buffer");
    if (!samples && (uint64_t)first + n > UINT32_MAX)
        return h2t_err_set(H2T_EINVAL, "layer_read: sample range overflows");
    if (st->set)
        return set_layer_read(st, ext, layer, samples, first, n, out, ld);
    layer_read_ctx c = {ext, layer, first, n, 0, samples, out, ld, 0};
    return st_run(st, 0, layer_read_fn, &c);
}

int h2t_store_reader_begin(h2t_store *st, h2t_store_reader **out)
{
    if (st->set)
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "store set %s: zero-copy readers read one store (h2t_store_layer_read "
                           "reads a set)",
                           st->dir);
    h2t_store_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return h2t_err_set(H2T_ENOMEM, "store reader");
    r->st = st;
    for (;;) {
        st_lock_shared(st);
        int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &r->txn);
        if (rc == MDB_MAP_RESIZED) {
            st_unlock_shared(st);
            if ((rc = st_grow(st, 0)) < 0) {
                free(r);
                return rc;
            }
            continue;
        }
        if (rc == 0 && (rc = mdb_cursor_open(r->txn, st->dbi[T_FEATURES], &r->cur)) != 0)
            mdb_txn_abort(r->txn);
        if (rc) {
            st_unlock_shared(st);
            free(r);
            return st_mdb(st, rc, "beginning a reader");
        }
        break;
    }
    *out = r;
    return 0;
}

void h2t_store_reader_end(h2t_store_reader *r)
{
    if (!r)
        return;
    mdb_cursor_close(r->cur);
    mdb_txn_abort(r->txn);
    st_unlock_shared(r->st);
    free(r);
}

int h2t_store_reader_feature(h2t_store_reader *r, uint32_t ext, uint32_t layer, uint32_t sample,
                             const void **data, uint32_t *dim, uint32_t *dtype)
{
    h2t_store *st = r->st;
    h2t_extraction *e;
    int rc = ext_load(st, r->txn, ext, &e);
    if (rc < 0)
        return rc;
    if ((rc = layer_check(st, e, layer)) < 0)
        goto out;
    feat_loc fl;
    feat_loc_init(e, layer, &fl);
    uint32_t bf, bn;
    const uint8_t *bd;
    rc = feat_find(st, r->cur, &fl, sample, &bf, &bn, &bd);
    if (rc == 1)
        rc = h2t_err_set(H2T_ENOTFOUND,
                         "extraction %u layer '%s': sample %u not stored (samples_done %u)", ext,
                         e->layers[layer].name, sample, e->samples_done);
    if (rc == 0) {
        *data = bd + (size_t)(sample - bf) * fl.rowbytes;
        *dim = e->layers[layer].dim;
        *dtype = e->dtype;
    }
out:
    h2t_extraction_destroy(e);
    return rc;
}

void h2t_layer_stats_destroy(h2t_layer_stats *s)
{
    if (!s)
        return;
    free(s->mean);
    free(s->m2);
    free(s->min);
    free(s->max);
    free(s);
}

typedef struct stats_ctx {
    uint32_t ext, layer;
    h2t_layer_stats *out;
} stats_ctx;

static int stats_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    stats_ctx *c = ctx;
    h2t_extraction *e;
    int rc = ext_load(st, txn, c->ext, &e);
    if (rc < 0)
        return rc;
    if ((rc = layer_check(st, e, c->layer)) < 0) {
        h2t_extraction_destroy(e);
        return rc;
    }
    uint32_t dim = e->layers[c->layer].dim;
    /* the record first: its size must match the layer's dim before dim sizes any allocation
     * (a damaged extraction record may claim billions of features) */
    key k;
    MDB_val v;
    rc = mdb_get(txn, st->dbi[T_STATS], key_stats(&k, c->ext, (uint16_t)c->layer), &v);
    int none = rc == MDB_NOTFOUND; /* nothing written yet: count 0 */
    if (none && e->samples_done > 0)
        rc = h2t_err_set(H2T_ECORRUPT,
                         "store %s: extraction %u holds %u samples but layer %u has no statistics",
                         st->dir, c->ext, e->samples_done, c->layer);
    else if (rc == 0)
        rc = stats_check(st, &v, e, c->layer);
    else if (!none)
        rc = st_mdbk(st, rc, "reading", T_STATS, &k.v);
    else
        rc = 0;
    h2t_extraction_destroy(e);
    if (rc < 0)
        return rc;
    h2t_layer_stats *s = stats_alloc(dim);
    if (!s)
        return h2t_err_set(H2T_ENOMEM, "statistics of %u features", dim);
    if (!none)
        stats_decode(s, v.mv_data);
    c->out = s;
    return 0;
}

int h2t_store_stats_get(h2t_store *st, uint32_t ext, uint32_t layer, h2t_layer_stats **out)
{
    if (st->set)
        return set_stats_get(st, ext, layer, out);
    stats_ctx c = {ext, layer, NULL};
    int rc = st_run(st, 0, stats_get_fn, &c);
    if (rc == 0)
        *out = c.out;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* tasks                                                                                      */

void h2t_task_destroy(h2t_task *t)
{
    if (!t)
        return;
    if (t->class_names)
        for (uint32_t i = 0; i < t->n_classes; i++)
            free(t->class_names[i]);
    free(t->class_names);
    free(t->train);
    free(t->val);
    free(t->test);
    free(t->train_labels);
    free(t->val_labels);
    free(t->test_labels);
    free(t);
}

void h2t_task_list_destroy(h2t_task **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        h2t_task_destroy(v[i]);
    free(v);
}

static void task_encode(wbuf *b, const h2t_task *t, uint64_t created)
{
    wb_u32(b, t->extraction);
    wb_u32(b, t->n_classes);
    for (uint32_t i = 0; i < t->n_classes; i++)
        wb_strn(b, t->class_names ? t->class_names[i] : "", (size_t)-1);
    wb_u32(b, t->shots);
    wb_u64(b, created);
    wb_u32(b, t->n_train);
    wb_u32(b, t->n_val);
    wb_u32(b, t->n_test);
    wb_u32s(b, t->train, t->n_train);
    wb_u32s(b, t->train_labels, t->n_train);
    wb_u32s(b, t->val, t->n_val);
    wb_u32s(b, t->val_labels, t->n_val);
    wb_u32s(b, t->test, t->n_test);
    wb_u32s(b, t->test_labels, t->n_test);
}

static int task_decode(h2t_store *st, const MDB_val *k, const MDB_val *v, int arrays,
                       h2t_task **out)
{
    rbuf b = {v->mv_data, v->mv_size, 0, 0};
    h2t_task *t = calloc(1, sizeof(*t));
    if (!t)
        return h2t_err_set(H2T_ENOMEM, "task");
    size_t kn = k->mv_size < sizeof(t->name) - 1 ? k->mv_size : sizeof(t->name) - 1;
    memcpy(t->name, k->mv_data, kn);
    t->extraction = rb_u32(&b);
    uint32_t nc = rb_u32(&b);
    if (!b.bad && (size_t)nc * 4 > b.len - b.off)
        b.bad = 1;
    if (!b.bad && nc) {
        if (!(t->class_names = calloc(nc, sizeof(char *))))
            b.bad = 2;
        else
            t->n_classes = nc;
    }
    for (uint32_t i = 0; i < t->n_classes && !b.bad; i++)
        t->class_names[i] = rb_strdup(&b);
    t->shots = rb_u32(&b);
    t->created_ms = rb_u64(&b);
    t->n_train = rb_u32(&b);
    t->n_val = rb_u32(&b);
    t->n_test = rb_u32(&b);
    if (arrays) {
        t->train = rb_u32s(&b, t->n_train);
        t->train_labels = rb_u32s(&b, t->n_train);
        t->val = rb_u32s(&b, t->n_val);
        t->val_labels = rb_u32s(&b, t->n_val);
        t->test = rb_u32s(&b, t->n_test);
        t->test_labels = rb_u32s(&b, t->n_test);
        /* every label names one of the task's classes (h2t_store_task_put checks it) */
        const uint32_t *lv[3] = {t->train_labels, t->val_labels, t->test_labels};
        const uint32_t ln[3] = {t->n_train, t->n_val, t->n_test};
        for (int s = 0; s < 3 && !b.bad; s++)
            for (uint32_t i = 0; i < ln[s] && !b.bad; i++)
                if (lv[s][i] >= t->n_classes)
                    b.bad = 1;
    } else if (!b.bad) {
        uint64_t skip = 8ull * ((uint64_t)t->n_train + t->n_val + t->n_test);
        if (skip != b.len - b.off)
            b.bad = 1;
        else
            b.off = b.len;
    }
    int rc = rb_done(st, &b, "tasks", t->name);
    if (rc < 0) {
        h2t_task_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

typedef struct task_ctx {
    const h2t_task *in;
    const char *name;
    int replace;
    h2t_task *out;
    list_ctx list;
} task_ctx;

static int task_check_list(const h2t_task *t, const h2t_extraction *e, const char *what,
                           const uint32_t *ids, const uint32_t *labels, uint32_t n)
{
    if (n && (!ids || !labels))
        return h2t_err_set(H2T_EINVAL, "task %s: %s list of %u without ids or labels", t->name,
                           what, n);
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] >= e->n_samples)
            return h2t_err_set(H2T_EINVAL,
                               "task %s: %s sample %u is past extraction %u's %u samples", t->name,
                               what, ids[i], e->id, e->n_samples);
        if (labels[i] >= t->n_classes)
            return h2t_err_set(H2T_EINVAL, "task %s: %s sample %u has label %u of %u classes",
                               t->name, what, ids[i], labels[i], t->n_classes);
    }
    return 0;
}

static int task_put_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    task_ctx *c = ctx;
    const h2t_task *t = c->in;
    h2t_extraction *e;
    int rc = ext_load(st, txn, t->extraction, &e);
    if (rc < 0)
        return h2t_err_wrap(rc, "task %s", t->name);
    if ((rc = task_check_list(t, e, "train", t->train, t->train_labels, t->n_train)) < 0 ||
        (rc = task_check_list(t, e, "val", t->val, t->val_labels, t->n_val)) < 0 ||
        (rc = task_check_list(t, e, "test", t->test, t->test_labels, t->n_test)) < 0) {
        h2t_extraction_destroy(e);
        return rc;
    }
    h2t_extraction_destroy(e);
    key k;
    MDB_val v;
    rc = mdb_get(txn, st->dbi[T_TASKS], key_str(&k, t->name), &v);
    if (rc == 0 && !c->replace)
        return h2t_err_set(H2T_EEXIST, "task '%s' already exists in store %s", t->name, st->dir);
    if (rc && rc != MDB_NOTFOUND)
        return st_mdbk(st, rc, "reading", T_TASKS, &k.v);
    wbuf b = {0};
    task_encode(&b, t, h2t_wall_ms());
    rc = b.oom ? h2t_err_set(H2T_ENOMEM, "encoding task %s", t->name)
               : st_put(st, txn, T_TASKS, key_str(&k, t->name), b.p, b.len, 0, "writing a task");
    free(b.p);
    return rc;
}

int h2t_store_task_put(h2t_store *st, const h2t_task *t, int replace)
{
    if (!t || !t->name[0] || strnlen(t->name, sizeof(t->name)) == sizeof(t->name))
        return h2t_err_set(H2T_EINVAL, "task without a (terminated) name");
    if (!t->n_classes)
        return h2t_err_set(H2T_EINVAL, "task %s: no classes", t->name);
    if (!t->n_train)
        return h2t_err_set(H2T_EINVAL, "task %s: empty train list", t->name);
    task_ctx c = {.in = t, .replace = replace};
    return st_run(st, 1, task_put_fn, &c);
}

static int task_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    task_ctx *c = ctx;
    key k;
    MDB_val v;
    MDB_val *kv = key_str(&k, c->name);
    int rc = mdb_get(txn, st->dbi[T_TASKS], kv, &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "no task '%s' in store %s", c->name, st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_TASKS, &k.v);
    return task_decode(st, kv, &v, 1, &c->out);
}

int h2t_store_task_get(h2t_store *st, const char *name, h2t_task **out)
{
    if (!name || !name[0] || strlen(name) >= sizeof(((h2t_task *)0)->name))
        return h2t_err_set(H2T_EINVAL, "bad task name");
    task_ctx c = {.name = name};
    int rc = st_run(st, 0, task_get_fn, &c);
    if (rc == 0)
        *out = c.out;
    return rc;
}

static int task_list_decode(h2t_store *st, const MDB_val *k, const MDB_val *v, void **out)
{
    return task_decode(st, k, v, 0, (h2t_task **)out);
}

static void task_list_destroy(void *t)
{
    h2t_task_destroy(t);
}

int h2t_store_task_list(h2t_store *st, h2t_task ***out, size_t *n)
{
    list_ctx l = {.table = T_TASKS,
                  .what = "listing tasks",
                  .decode = task_list_decode,
                  .destroy = task_list_destroy};
    int rc = st_run(st, 0, list_fn, &l);
    if (rc < 0) {
        h2t_task_list_destroy((h2t_task **)l.v, l.n);
        return rc;
    }
    *out = (h2t_task **)l.v;
    *n = l.n;
    return 0;
}

static int task_delete_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    task_ctx *c = ctx;
    key k;
    int rc = mdb_del(txn, st->dbi[T_TASKS], key_str(&k, c->name), NULL);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "no task '%s' in store %s", c->name, st->dir);
    return rc ? st_mdb(st, rc, "deleting a task") : 0;
}

int h2t_store_task_delete(h2t_store *st, const char *name)
{
    if (!name || !name[0])
        return h2t_err_set(H2T_EINVAL, "bad task name");
    task_ctx c = {.name = name};
    return st_run(st, 1, task_delete_fn, &c);
}

/* ------------------------------------------------------------------------------------------ */
/* jobs and results                                                                           */

void h2t_job_destroy(h2t_job *j)
{
    if (!j)
        return;
    free(j->spec);
    free(j);
}

void h2t_job_list_destroy(h2t_job **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        h2t_job_destroy(v[i]);
    free(v);
}

static void job_encode(wbuf *b, const h2t_job *j)
{
    wb_u32(b, j->state);
    wb_u32(b, j->attempts);
    wb_f64(b, j->progress);
    wb_strn(b, j->stage, sizeof(j->stage));
    wb_strn(b, j->error, sizeof(j->error));
    wb_u64(b, j->created_ms);
    wb_u64(b, j->started_ms);
    wb_u64(b, j->finished_ms);
    wb_blob(b, j->spec, j->spec_len);
}

static int job_decode(h2t_store *st, const MDB_val *v, uint64_t id, h2t_job **out)
{
    rbuf b = {v->mv_data, v->mv_size, 0, 0};
    h2t_job *j = calloc(1, sizeof(*j));
    if (!j)
        return h2t_err_set(H2T_ENOMEM, "job");
    j->id = id;
    j->state = rb_u32(&b);
    j->attempts = rb_u32(&b);
    j->progress = rb_f64(&b);
    rb_str(&b, j->stage, sizeof(j->stage));
    rb_str(&b, j->error, sizeof(j->error));
    j->created_ms = rb_u64(&b);
    j->started_ms = rb_u64(&b);
    j->finished_ms = rb_u64(&b);
    uint64_t n = rb_u64(&b);
    if (!b.bad && n > b.len - b.off)
        b.bad = 1;
    if (!b.bad && n) {
        if (!(j->spec = malloc(n)))
            b.bad = 2;
        else {
            rb_bytes(&b, j->spec, n);
            j->spec_len = n;
        }
    }
    char kname[32];
    snprintf(kname, sizeof(kname), "%llu", (unsigned long long)id);
    int rc = rb_done(st, &b, "jobs", kname);
    if (rc < 0) {
        h2t_job_destroy(j);
        return rc;
    }
    *out = j;
    return 0;
}

typedef struct job_ctx {
    uint64_t id;
    const void *data;
    size_t len;
    const h2t_job *in;
    uint32_t state;
    const char *error;
    h2t_job *out;
} job_ctx;

static int job_save(h2t_store *st, MDB_txn *txn, const h2t_job *j)
{
    wbuf b = {0};
    job_encode(&b, j);
    key k;
    int rc = b.oom ? h2t_err_set(H2T_ENOMEM, "encoding job")
                   : st_put(st, txn, T_JOBS, key_u64(&k, j->id), b.p, b.len, 0, "writing a job");
    free(b.p);
    return rc;
}

static int job_load(h2t_store *st, MDB_txn *txn, uint64_t id, h2t_job **out)
{
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_JOBS], key_u64(&k, id), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "no job %llu in store %s", (unsigned long long)id,
                           st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_JOBS, &k.v);
    return job_decode(st, &v, id, out);
}

static int job_create_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    job_ctx *c = ctx;
    uint64_t id;
    int rc = st_next_id(st, txn, T_JOBS, &id);
    if (rc < 0)
        return rc;
    h2t_job j = {0};
    j.id = id;
    j.state = H2T_JOB_QUEUED;
    j.created_ms = h2t_wall_ms();
    j.spec = (void *)c->data;
    j.spec_len = c->len;
    c->id = id;
    return job_save(st, txn, &j);
}

int h2t_store_job_create(h2t_store *st, const void *spec, size_t spec_len, uint64_t *id)
{
    if (spec_len && !spec)
        return h2t_err_set(H2T_EINVAL, "job spec of %zu bytes without data", spec_len);
    job_ctx c = {.data = spec, .len = spec_len};
    int rc = st_run(st, 1, job_create_fn, &c);
    if (rc == 0 && id)
        *id = c.id;
    return rc;
}

static int job_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    job_ctx *c = ctx;
    return job_load(st, txn, c->id, &c->out);
}

int h2t_store_job_get(h2t_store *st, uint64_t id, h2t_job **out)
{
    job_ctx c = {.id = id};
    int rc = st_run(st, 0, job_get_fn, &c);
    if (rc == 0)
        *out = c.out;
    return rc;
}

static int job_update_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    job_ctx *c = ctx;
    h2t_job *j;
    int rc = job_load(st, txn, c->in->id, &j);
    if (rc < 0)
        return rc;
    j->state = c->in->state;
    j->attempts = c->in->attempts;
    j->progress = c->in->progress;
    memcpy(j->stage, c->in->stage, sizeof(j->stage));
    memcpy(j->error, c->in->error, sizeof(j->error));
    j->created_ms = c->in->created_ms;
    j->started_ms = c->in->started_ms;
    j->finished_ms = c->in->finished_ms;
    rc = job_save(st, txn, j);
    h2t_job_destroy(j);
    return rc;
}

int h2t_store_job_update(h2t_store *st, const h2t_job *j)
{
    if (!j || j->state > H2T_JOB_CANCELLED)
        return h2t_err_set(H2T_EINVAL, "job update: bad state %u", j ? j->state : 0);
    job_ctx c = {.in = j};
    return st_run(st, 1, job_update_fn, &c);
}

static int job_finish_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    job_ctx *c = ctx;
    h2t_job *j;
    int rc = job_load(st, txn, c->id, &j);
    if (rc < 0)
        return rc;
    j->state = c->state;
    snprintf(j->error, sizeof(j->error), "%s", c->error ? c->error : "");
    j->finished_ms = h2t_wall_ms();
    if (c->state == H2T_JOB_DONE) { /* no stage left (the last one saved may be any) */
        j->progress = 1.0;
        j->stage[0] = '\0';
    }
    rc = job_save(st, txn, j);
    h2t_job_destroy(j);
    key k;
    if (rc == 0 && c->data)
        rc = st_put(st, txn, T_RESULTS, key_u64(&k, c->id), c->data, c->len, 0, "writing a result");
    return rc;
}

int h2t_store_job_finish(h2t_store *st, uint64_t id, uint32_t state, const char *error,
                         const void *result, size_t result_len)
{
    if (state != H2T_JOB_DONE && state != H2T_JOB_FAILED && state != H2T_JOB_CANCELLED)
        return h2t_err_set(H2T_EINVAL, "job %llu: finish with non-final state %u",
                           (unsigned long long)id, state);
    if (state == H2T_JOB_DONE && !result)
        return h2t_err_set(H2T_EINVAL, "job %llu: DONE without a result", (unsigned long long)id);
    job_ctx c = {.id = id, .state = state, .error = error, .data = result, .len = result_len};
    return st_run(st, 1, job_finish_fn, &c);
}

static int job_list_decode(h2t_store *st, const MDB_val *k, const MDB_val *v, void **out)
{
    if (k->mv_size != 8)
        return h2t_err_set(H2T_ECORRUPT, "store %s: bad job key", st->dir);
    uint64_t id = h2t_be64_get(k->mv_data);
    int rc = job_decode(st, v, id, (h2t_job **)out);
    if (rc != H2T_ECORRUPT)
        return rc;
    /* one damaged record must not hide the others (nor stop a server's start): it is listed
     * as a failed job marked damaged, with the reason */
    h2t_job *j = calloc(1, sizeof(*j));
    if (!j)
        return h2t_err_set(H2T_ENOMEM, "job");
    j->id = id;
    j->state = H2T_JOB_FAILED;
    j->damaged = 1;
    snprintf(j->error, sizeof(j->error), "damaged record: %s", h2t_err_detail());
    *out = j;
    return 0;
}

static void job_list_destroy(void *j)
{
    h2t_job_destroy(j);
}

int h2t_store_job_list(h2t_store *st, h2t_job ***out, size_t *n)
{
    list_ctx l = {.table = T_JOBS,
                  .what = "listing jobs",
                  .decode = job_list_decode,
                  .destroy = job_list_destroy};
    int rc = st_run(st, 0, list_fn, &l);
    if (rc < 0) {
        h2t_job_list_destroy((h2t_job **)l.v, l.n);
        return rc;
    }
    *out = (h2t_job **)l.v;
    *n = l.n;
    return 0;
}

typedef struct result_ctx {
    uint64_t id;
    void *blob;
    size_t len;
} result_ctx;

static int result_get_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    result_ctx *c = ctx;
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_RESULTS], key_u64(&k, c->id), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "no result for job %llu in store %s",
                           (unsigned long long)c->id, st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_RESULTS, &k.v);
    c->blob = malloc(v.mv_size ? v.mv_size : 1);
    if (!c->blob)
        return h2t_err_set(H2T_ENOMEM, "result of job %llu", (unsigned long long)c->id);
    memcpy(c->blob, v.mv_data, v.mv_size);
    c->len = v.mv_size;
    return 0;
}

int h2t_store_result_get(h2t_store *st, uint64_t id, void **blob, size_t *len)
{
    result_ctx c = {id, NULL, 0};
    int rc = st_run(st, 0, result_get_fn, &c);
    if (rc == 0) {
        *blob = c.blob;
        *len = c.len;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* verify: every record decoded, every feature block and statistics record checked            */

typedef struct verify_ctx {
    h2t_store_problem_fn fn;
    void *ud;
    h2t_store_verify_report rep;
} verify_ctx;

static void verify_bad(verify_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verify_bad(verify_ctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->rep.damaged++;
    if (c->fn)
        c->fn(c->ud, msg);
}

/* the records of one table through its decoder: a damaged one is reported, not fatal */
static int verify_table(h2t_store *st, MDB_txn *txn, verify_ctx *c, int t)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, st->dbi[t], &cur);
    if (rc)
        return st_mdb(st, rc, "verify cursor");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        c->rep.records++;
        char kd[160];
        key_desc(t, &k, kd, sizeof(kd));
        int r = 0;
        if (t == T_SOURCES && k.mv_size == 4) {
            h2t_source *s = NULL;
            r = source_decode(st, &v, h2t_be32_get(k.mv_data), &s);
            h2t_source_destroy(s);
        } else if (t == T_LABELS) {
            r = k.mv_size == 8 && v.mv_size == 5 ? 0 : H2T_ECORRUPT;
        } else if (t == T_MODELS && k.mv_size == 4) {
            h2t_model_rec m;
            r = model_decode(st, &v, h2t_be32_get(k.mv_data), &m);
        } else if (t == T_EXTRACTIONS && k.mv_size == 4) {
            h2t_extraction *e = NULL;
            r = ext_decode(st, &v, h2t_be32_get(k.mv_data), &e);
            h2t_extraction_destroy(e);
        } else if (t == T_TASKS) {
            h2t_task *tk = NULL;
            r = task_decode(st, &k, &v, 1, &tk);
            h2t_task_destroy(tk);
        } else if (t == T_JOBS && k.mv_size == 8) {
            h2t_job *j = NULL;
            r = job_decode(st, &v, h2t_be64_get(k.mv_data), &j);
            h2t_job_destroy(j);
        } else if (t == T_RESULTS && k.mv_size == 8) {
            /* the solver's blob ends in a CRC32C of the rest (solver/result.c) */
            uint32_t want = 0;
            if (v.mv_size >= 12)
                memcpy(&want, (const uint8_t *)v.mv_data + v.mv_size - 4, 4);
            r = v.mv_size >= 12 && h2t_crc32c(0, v.mv_data, v.mv_size - 4) == want ? 0
                                                                                   : H2T_ECORRUPT;
        } else if (t != T_META) {
            r = H2T_ECORRUPT; /* a key of the wrong size */
        }
        if (r == H2T_ENOMEM) {
            mdb_cursor_close(cur);
            return r;
        }
        if (r < 0)
            verify_bad(c, "table %s: record %s is damaged", table_names[t], kd);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : st_mdb(st, rc, "verify");
}

/* every block of one extraction: sizes, order, checksums; samples [0, samples_done) covered */
static int verify_ext(h2t_store *st, MDB_txn *txn, verify_ctx *c, const h2t_extraction *e)
{
    const size_t esize = e->dtype == H2T_DTYPE_F16 ? 2 : 4;
    const size_t packbytes = (size_t)e->total_dim * esize;
    const size_t trailer = e->checksums ? (size_t)4 * e->n_layers : 0;
    MDB_cursor *cur;
    MDB_val k, v;
    key kk;
    int rc = mdb_cursor_open(txn, st->dbi[T_FEATURES], &cur);
    if (rc)
        return st_mdb(st, rc, "verify cursor");
    k = *key_feat(&kk, e->id, 0, 0);
    uint64_t packed_next = 0; /* the sample the next packed block must start at */
    uint64_t *layer_next = calloc(e->n_layers, sizeof(uint64_t)); /* format 1 blocks */
    if (!layer_next) {
        mdb_cursor_close(cur);
        return h2t_err_set(H2T_ENOMEM, "verify");
    }
    int any_packed = 0, any_layer = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 10 || h2t_be32_get(k.mv_data) != e->id)
            break;
        uint16_t tag = h2t_be16_get((const uint8_t *)k.mv_data + 4);
        uint32_t f = h2t_be32_get((const uint8_t *)k.mv_data + 6);
        c->rep.blocks++;
        if (tag == ST_PACKED) {
            any_packed = 1;
            if (v.mv_size <= trailer || (v.mv_size - trailer) % packbytes) {
                verify_bad(c,
                           "extraction %u '%s': the feature block at sample %u has %zu bytes, not "
                           "a whole number of samples",
                           e->id, e->name, f, v.mv_size);
                continue;
            }
            uint64_t cnt = (v.mv_size - trailer) / packbytes;
            if (f != packed_next)
                verify_bad(c, "extraction %u '%s': samples %llu..%u have no feature block", e->id,
                           e->name, (unsigned long long)packed_next, f - 1);
            packed_next = f + cnt;
            if (!e->checksums) {
                c->rep.unchecked_blocks++;
                continue;
            }
            const uint8_t *d = v.mv_data;
            size_t off = 0;
            for (uint32_t l = 0; l < e->n_layers; l++) {
                size_t bytes = (size_t)cnt * e->layers[l].dim * esize;
                uint32_t want;
                memcpy(&want, d + cnt * packbytes + 4 * (size_t)l, 4);
                if (h2t_crc32c(0, d + off, bytes) != want)
                    verify_bad(c,
                               "extraction %u '%s' layer %u '%s' samples %u..%llu: the feature "
                               "block fails its checksum",
                               e->id, e->name, l, e->layers[l].name, f,
                               (unsigned long long)(f + cnt - 1));
                off += bytes;
            }
        } else if (tag < e->n_layers) { /* format 1: one block per layer, never checksummed */
            any_layer = 1;
            size_t rb = (size_t)e->layers[tag].dim * esize;
            c->rep.unchecked_blocks++;
            if (v.mv_size == 0 || v.mv_size % rb)
                verify_bad(c,
                           "extraction %u '%s' layer %u: the feature block at sample %u has %zu "
                           "bytes, not a whole number of rows",
                           e->id, e->name, tag, f, v.mv_size);
            else if (f + v.mv_size / rb > layer_next[tag])
                layer_next[tag] = f + v.mv_size / rb;
        } else {
            verify_bad(c, "extraction %u '%s': a feature block of layer %u, which it does not have",
                       e->id, e->name, tag);
        }
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        free(layer_next);
        return st_mdb(st, rc, "verify");
    }
    /* samples_done must be covered: by the packed blocks, or (format 1 then format 2) by
     * each layer's own blocks up to where the packed ones begin */
    if (e->samples_done > 0) {
        uint64_t covered = packed_next;
        if (any_layer && !any_packed) {
            covered = UINT64_MAX;
            for (uint32_t l = 0; l < e->n_layers; l++)
                covered = layer_next[l] < covered ? layer_next[l] : covered;
        }
        if (covered < e->samples_done && !(any_layer && any_packed))
            verify_bad(c,
                       "extraction %u '%s': samples_done is %u but the feature blocks end at "
                       "sample %llu",
                       e->id, e->name, e->samples_done, (unsigned long long)covered);
    }
    free(layer_next);
    /* statistics */
    for (uint32_t l = 0; l < e->n_layers; l++) {
        rc = mdb_get(txn, st->dbi[T_STATS], key_stats(&kk, e->id, (uint16_t)l), &v);
        if (rc == MDB_NOTFOUND) {
            if (e->samples_done)
                verify_bad(c, "extraction %u '%s' layer %u '%s': no statistics", e->id, e->name, l,
                           e->layers[l].name);
            continue;
        }
        if (rc)
            return st_mdb(st, rc, "verify");
        c->rep.records++;
        if (stats_check(st, &v, e, l) < 0)
            verify_bad(c, "extraction %u '%s' layer %u '%s': the statistics are damaged (%s)",
                       e->id, e->name, l, e->layers[l].name,
                       strstr(h2t_err_detail(), "checksum") ? "checksum mismatch" : "wrong size");
    }
    return 0;
}

static int verify_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    verify_ctx *c = ctx;
    int rc;
    for (int t = T_SOURCES; t < T_COUNT; t++)
        if (t != T_FEATURES && t != T_STATS && (rc = verify_table(st, txn, c, t)) < 0)
            return rc;
    MDB_cursor *cur;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(txn, st->dbi[T_EXTRACTIONS], &cur)) != 0)
        return st_mdb(st, rc, "verify cursor");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        h2t_extraction *e = NULL;
        if (k.mv_size != 4 || ext_decode(st, &v, h2t_be32_get(k.mv_data), &e) < 0)
            continue; /* reported with the table */
        c->rep.extractions++;
        int r = verify_ext(st, txn, c, e);
        h2t_extraction_destroy(e);
        if (r < 0) {
            mdb_cursor_close(cur);
            return r;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : st_mdb(st, rc, "verify");
}

int h2t_store_verify(h2t_store *st, h2t_store_problem_fn fn, void *ud, h2t_store_verify_report *out)
{
    verify_ctx c = {.fn = fn, .ud = ud};
    int rc = st_run(st, 0, verify_fn, &c);
    /* a store set: its work store above, then every shard store */
    if (rc == 0 && st->set)
        rc = set_verify_shards(st, fn, ud, &c.rep);
    if (rc == 0 && out)
        *out = c.rep;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* removal and compaction                                                                     */

typedef struct ext_del_ctx {
    uint32_t id;
    int force;
    uint32_t tasks_removed;
} ext_del_ctx;

static int ext_delete_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    ext_del_ctx *c = ctx;
    h2t_extraction *e;
    int rc = ext_load(st, txn, c->id, &e);
    if (rc < 0)
        return rc;
    /* the tasks over it: named in the refusal, or removed with it */
    MDB_cursor *cur;
    MDB_val k, v;
    char users[512] = "";
    size_t ul = 0;
    uint32_t nusers = 0;
    if ((rc = mdb_cursor_open(txn, st->dbi[T_TASKS], &cur)) != 0) {
        rc = st_mdb(st, rc, "tasks cursor");
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        h2t_task *t = NULL;
        if (task_decode(st, &k, &v, 0, &t) < 0) /* a damaged task names nothing */
            continue;
        if (t->extraction == c->id) {
            nusers++;
            if (ul < sizeof(users) - 1)
                ul += (size_t)snprintf(users + ul, sizeof(users) - ul, "%s'%s'", ul ? ", " : "",
                                       t->name);
            if (c->force) {
                rc = mdb_cursor_del(cur, 0);
                c->tasks_removed++;
            }
        }
        h2t_task_destroy(t);
        if (rc) {
            mdb_cursor_close(cur);
            rc = st_mdb(st, rc, "deleting a task");
            goto out;
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        rc = st_mdb(st, rc, "reading tasks");
        goto out;
    }
    if (nusers && !c->force) {
        rc = h2t_err_set(H2T_ESTATE,
                         "extraction %u '%s' is used by %u task(s): %s (remove them first, or "
                         "h2tdb rm --force to remove them with it)",
                         e->id, e->name, nusers, users);
        goto out;
    }
    /* its feature blocks (format 1 per layer, and packed), statistics, then the record */
    key kk;
    if ((rc = mdb_cursor_open(txn, st->dbi[T_FEATURES], &cur)) != 0) {
        rc = st_mdb(st, rc, "features cursor");
        goto out;
    }
    k = *key_feat(&kk, e->id, 0, 0);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size == 10 && h2t_be32_get(k.mv_data) == e->id;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rc = st_mdb(st, rc, "deleting features");
        goto out;
    }
    for (uint32_t l = 0; l < e->n_layers; l++) {
        rc = mdb_del(txn, st->dbi[T_STATS], key_stats(&kk, e->id, (uint16_t)l), NULL);
        if (rc && rc != MDB_NOTFOUND) {
            rc = st_mdb(st, rc, "deleting statistics");
            goto out;
        }
    }
    rc = mdb_del(txn, st->dbi[T_EXTRACTIONS], key_u32(&kk, e->id), NULL);
    rc = rc ? st_mdb(st, rc, "deleting the extraction") : 0;
out:
    h2t_extraction_destroy(e);
    return rc;
}

int h2t_store_extraction_delete(h2t_store *st, uint32_t id, int force, uint32_t *tasks_removed)
{
    if (st->set)
        return set_read_only(st, "removing the extraction");
    ext_del_ctx c = {.id = id, .force = force};
    int rc = st_run(st, 1, ext_delete_fn, &c);
    if (rc == 0 && tasks_removed)
        *tasks_removed = c.tasks_removed;
    return rc;
}

typedef struct job_del_ctx {
    uint64_t id;
    int force;
} job_del_ctx;

static int job_delete_fn(h2t_store *st, MDB_txn *txn, void *ctx)
{
    job_del_ctx *c = ctx;
    key k;
    MDB_val v;
    int rc = mdb_get(txn, st->dbi[T_JOBS], key_u64(&k, c->id), &v);
    if (rc == MDB_NOTFOUND)
        return h2t_err_set(H2T_ENOTFOUND, "no job %llu in store %s", (unsigned long long)c->id,
                           st->dir);
    if (rc)
        return st_mdbk(st, rc, "reading", T_JOBS, &k.v);
    h2t_job *j = NULL;
    if (job_decode(st, &v, c->id, &j) == 0 && !c->force &&
        (j->state == H2T_JOB_QUEUED || j->state == H2T_JOB_RUNNING)) {
        rc = h2t_err_set(
            H2T_ESTATE, "job %llu is %s: cancel it first (h2tdb cancel %llu), or h2tdb rm --force",
            (unsigned long long)c->id, j->state == H2T_JOB_QUEUED ? "queued" : "running",
            (unsigned long long)c->id);
        h2t_job_destroy(j);
        return rc;
    }
    h2t_job_destroy(j); /* a damaged record is removed too */
    if ((rc = mdb_del(txn, st->dbi[T_JOBS], key_u64(&k, c->id), NULL)) != 0)
        return st_mdb(st, rc, "deleting a job");
    rc = mdb_del(txn, st->dbi[T_RESULTS], key_u64(&k, c->id), NULL);
    return rc && rc != MDB_NOTFOUND ? st_mdb(st, rc, "deleting a result") : 0;
}

int h2t_store_job_delete(h2t_store *st, uint64_t id, int force)
{
    job_del_ctx c = {.id = id, .force = force};
    return st_run(st, 1, job_delete_fn, &c);
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

int h2t_store_compact(const char *dir, uint64_t *before, uint64_t *after)
{
    h2t_store *st = NULL;
    char tmp[1100], data[1100], tdata[1200];
    if (h2t_store_set_exists(dir))
        return h2t_err_set(H2T_EINVAL,
                           "%s is a store set: compact its shard stores and its work store one "
                           "by one",
                           dir);
    int rc = h2t_store_open(dir, 0, &st);
    if (rc < 0)
        return rc;
    /* no server may run on it meanwhile (its writes would go to the old file) */
    if ((rc = h2t_store_service_lock(st)) < 0) {
        h2t_store_close(st);
        return rc;
    }
    /* nor any other process with it open: an extraction, a task command, a reader (their
     * writes would be lost and their reads would go on in the old file); while compacting,
     * the open lock is exclusive and names this process, so new opens are refused */
    if (st->open_fd < 0) {
        rc = h2t_err_set(H2T_EPERM,
                         "store %s: cannot open %s/" H2T_STORE_OPEN_LOCK
                         ", so cannot tell whether other processes use the store",
                         dir, dir);
        h2t_store_close(st);
        return rc;
    }
    if (flock(st->open_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char who[256], lpath[1100];
        snprintf(lpath, sizeof(lpath), "%s/" H2T_STORE_OPEN_LOCK, dir);
        lock_holders(lpath, who, sizeof(who));
        if (e != EWOULDBLOCK)
            rc = h2t_err_set(H2T_EIO, "store %s: lock %s: %s", dir, lpath, strerror(e));
        else if (who[0])
            rc = h2t_err_set(H2T_EBUSY,
                             "store %s is open in process %s (an extraction, a task command or "
                             "a reader holds %s): compaction needs the store to itself; let it "
                             "finish or stop it first",
                             dir, who, lpath);
        else
            rc = h2t_err_set(H2T_EBUSY,
                             "store %s is open in another process (it holds %s): compaction "
                             "needs the store to itself; let it finish or stop it first",
                             dir, lpath);
        h2t_store_close(st);
        return rc;
    }
    {
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
        if (ftruncate(st->open_fd, 0) != 0 || pwrite(st->open_fd, buf, (size_t)len, 0) != len) {
            rc = h2t_err_set(H2T_EIO, "store %s: writing %s/" H2T_STORE_OPEN_LOCK ": %s", dir, dir,
                             strerror(errno));
            h2t_store_close(st);
            return rc;
        }
    }
    snprintf(tmp, sizeof(tmp), "%s/compact.tmp", dir);
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    snprintf(tdata, sizeof(tdata), "%s/data.mdb", tmp);
    uint64_t b = file_size(data);
    unlink(tdata); /* what an interrupted compaction left */
    rmdir(tmp);
    if (mkdir(tmp, 0755) != 0) {
        rc = h2t_err_set(H2T_EIO, "store %s: compaction directory %s: %s", dir, tmp,
                         strerror(errno));
        goto fail;
    }
    st_lock_shared(st);
    int mrc = mdb_env_copy2(st->env, tmp, MDB_CP_COMPACT);
    st_unlock_shared(st);
    if (mrc) {
        rc = st_mdb(st, mrc, "compacting");
        goto fail;
    }
    int fd = open(tdata, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        rc = h2t_err_set(H2T_EIO, "store %s: %s: %s", dir, tdata, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    close(fd);
    /* the copy replaces the file in one rename while the service lock is held (a second
     * handle keeps it: closing st's would release it before the swap) */
    int lockfd = dup(st->service_fd);
    int openfd = dup(st->open_fd);
    h2t_store_close(st);
    st = NULL;
    if (rename(tdata, data) != 0) {
        rc = h2t_err_set(H2T_EIO, "store %s: replacing data.mdb: %s", dir, strerror(errno));
        unlink(tdata);
    }
    rmdir(tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (openfd >= 0) {
        if (ftruncate(openfd, 0) != 0) {
            /* a stale pid in the file is harmless: it is read only while the lock is held */
        }
        close(openfd);
    }
    if (lockfd >= 0)
        close(lockfd);
    if (rc == 0) {
        if (before)
            *before = b;
        if (after)
            *after = file_size(data);
    }
    return rc;
fail:
    unlink(tdata);
    rmdir(tmp);
    if (ftruncate(st->open_fd, 0) != 0) {
        /* as above */
    }
    h2t_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* store sets read as one                                                                     */
/* A set is the work store (tasks, jobs, results: DIR/work beside the manifest, or a temporary
 * store for a list of shard stores) with the shard stores attached read-only. Its one
 * extraction is the whole one: shard 0's record with the whole identity and sample count;
 * reads map a sample to its shard, statistics are recomputed from the rows in source order in
 * batches of the set's batch through stats_merge (so they are bitwise the unsharded pass's at
 * that batch, f32) and kept per layer. Source and model records are shard 0's. */

struct store_set {
    uint32_t n;        /* shards */
    h2t_store **sh;    /* opened read-only */
    uint32_t *ext;     /* each shard's extraction id in its store */
    uint32_t *lo, *hi; /* each shard's samples of the whole */
    h2t_extraction *whole;
    uint32_t batch;      /* samples per statistics batch */
    pthread_mutex_t mu;  /* guards stats */
    uint8_t **stats;     /* per layer: the statistics value once computed */
    char tmp_work[1024]; /* a temporary work store to remove at close, or "" */
};

static h2t_extraction *ext_dup(const h2t_extraction *e)
{
    h2t_extraction *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = *e;
    c->layers = malloc((size_t)(e->n_layers ? e->n_layers : 1) * sizeof *c->layers);
    if (!c->layers) {
        free(c);
        return NULL;
    }
    memcpy(c->layers, e->layers, (size_t)e->n_layers * sizeof *c->layers);
    return c;
}

static int set_ext_load(h2t_store *st, uint32_t id, h2t_extraction **out)
{
    if (id != st->set->whole->id)
        return h2t_err_set(H2T_ENOTFOUND, "extraction %u not in store set %s (it holds %u)", id,
                           st->dir, st->set->whole->id);
    if (!(*out = ext_dup(st->set->whole)))
        return h2t_err_set(H2T_ENOMEM, "store set %s", st->dir);
    return 0;
}

static int set_read_only(const h2t_store *st, const char *what)
{
    return h2t_err_set(H2T_EPERM,
                       "store set %s is read as one store: its extraction lives in the shard "
                       "stores and is not written through the set (%s)",
                       st->dir, what);
}

static void store_set_free(struct store_set *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; s->sh && i < s->n; i++)
        h2t_store_close(s->sh[i]);
    if (s->stats && s->whole)
        for (uint32_t l = 0; l < s->whole->n_layers; l++)
            free(s->stats[l]);
    free(s->stats);
    h2t_extraction_destroy(s->whole);
    free(s->sh);
    free(s->ext);
    free(s->lo);
    free(s->hi);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void tmp_store_remove(const char *dir)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    remove(p);
    rmdir(dir);
}

/* The one shard extraction of store sh (dir for errors): its id, fields and whole identity. */
static int set_shard_find(h2t_store *sh, const char *dir, uint32_t *id, uint32_t *si, uint32_t *sn,
                          uint8_t hash[32], char *whole, size_t wlen, uint32_t *whole_n,
                          h2t_extraction **rec)
{
    h2t_extraction **v = NULL;
    size_t nv = 0;
    int rc = h2t_store_extraction_list(sh, &v, &nv), found = 0;
    for (size_t k = 0; rc >= 0 && k < nv; k++) {
        int r = h2t_store_shard_parse(v[k]->config, si, sn, hash, whole, wlen, whole_n);
        if (r < 0)
            rc = h2t_err_wrap(r, "shard store %s extraction %u", dir, v[k]->id);
        else if (r == 1 && found)
            rc = h2t_err_set(H2T_EINVAL,
                             "shard store %s holds more than one shard extraction (%u and %u)", dir,
                             *id, v[k]->id);
        else if (r == 1) {
            found = 1;
            *id = v[k]->id;
            *rec = v[k];
            v[k] = NULL;
        }
    }
    h2t_extraction_list_destroy(v, nv);
    if (rc >= 0 && !found)
        rc = h2t_err_set(H2T_ENOTFOUND,
                         "shard store %s holds no shard extraction (extract --shard I/N)", dir);
    if (rc < 0 && found) {
        h2t_extraction_destroy(*rec);
        *rec = NULL;
    }
    return rc < 0 ? rc : 0;
}

/* Open the shards of a set: paths[i] (manifest order when m, else any order), check that they
 * are one whole extraction with every shard once and complete, and attach them to the work
 * store opened at work_dir (created when missing and allowed; a temporary one when work_dir is
 * NULL). Nothing is written to the shards; on any refusal nothing is left behind. */
static int set_open(const char *name, const char *const *paths, uint32_t n_paths,
                    const h2t_store_set *m, uint32_t batch, const char *work_dir, unsigned flags,
                    h2t_store **out)
{
    struct store_set *s = calloc(1, sizeof *s);
    h2t_extraction **recs = calloc(n_paths ? n_paths : 1, sizeof *recs);
    char **real = calloc(n_paths ? n_paths : 1, sizeof *real);
    uint32_t *slot_of = calloc(n_paths ? n_paths : 1, sizeof *slot_of);
    h2t_store *work = NULL;
    int rc = 0;
    if (!s || !recs || !real || !slot_of) {
        free(s);
        free(recs);
        free(real);
        free(slot_of);
        return h2t_err_set(H2T_ENOMEM, "store set %s", name);
    }
    pthread_mutex_init(&s->mu, NULL);
    s->n = n_paths;
    s->batch = m && m->batch ? m->batch : batch ? batch : 32;
    s->sh = calloc(n_paths, sizeof *s->sh);
    s->ext = calloc(n_paths, sizeof *s->ext);
    s->lo = calloc(n_paths, sizeof *s->lo);
    s->hi = calloc(n_paths, sizeof *s->hi);
    if (!s->sh || !s->ext || !s->lo || !s->hi) {
        rc = h2t_err_set(H2T_ENOMEM, "store set %s", name);
        goto out;
    }
    uint8_t hash0[32] = {0};
    char whole0[512] = "";
    uint32_t n0 = 0;
    for (uint32_t k = 0; k < n_paths; k++) {
        const char *p = paths[k];
        struct stat sb;
        if (stat(p, &sb) != 0) {
            rc = h2t_err_set(H2T_ENOTFOUND,
                             "store set %s: shard store %s: %s (moved or removed? %s)", name, p,
                             strerror(errno),
                             m ? "the manifest names it relative to its folder"
                               : "give each shard's store once");
            goto out;
        }
        if (!(real[k] = realpath(p, NULL))) {
            rc = h2t_err_set(H2T_EIO, "store set %s: %s: %s", name, p, strerror(errno));
            goto out;
        }
        for (uint32_t j = 0; j < k; j++)
            if (!strcmp(real[j], real[k])) {
                rc =
                    h2t_err_set(H2T_EINVAL, "store set %s: shard store %s is given twice", name, p);
                goto out;
            }
        h2t_store *sh;
        if ((rc = h2t_store_open(p, H2T_STORE_RDONLY, &sh)) < 0) {
            rc = h2t_err_wrap(rc, "store set %s: shard store %s", name, p);
            goto out;
        }
        uint32_t id = 0, si, sn, wn;
        uint8_t h[32];
        char w[512];
        rc = set_shard_find(sh, p, &id, &si, &sn, h, w, sizeof w, &wn, &recs[k]);
        if (rc < 0) {
            h2t_store_close(sh);
            rc = h2t_err_wrap(rc, "store set %s", name);
            goto out;
        }
        if (k == 0) {
            memcpy(hash0, m ? m->whole_hash : h, 32);
            snprintf(whole0, sizeof whole0, "%s", m ? m->config : w);
            n0 = m ? m->n_samples : wn;
        }
        uint32_t want_n = m ? m->n_shards : n_paths;
        if (memcmp(h, hash0, 32) || sn != want_n || wn != n0) {
            h2t_store_close(sh);
            rc = h2t_err_set(H2T_EINVAL,
                             "store set %s: shard store %s holds shard %u/%u of another "
                             "extraction ('%s', %u samples), not of '%s' (%u samples, %u shards)",
                             name, p, si, sn, w, wn, whole0, n0, want_n);
            goto out;
        }
        uint32_t slot = k;
        slot_of[k] = slot;
        if (si != k) {
            h2t_store_close(sh);
            rc =
                h2t_err_set(H2T_EINVAL, "store set %s: its shard %u is %s, which holds shard %u/%u",
                            name, k, p, si, sn);
            goto out;
        }
        if (s->sh[slot]) {
            h2t_store_close(sh);
            rc = h2t_err_set(H2T_EINVAL, "store set %s: shard %u/%u is in both %s and %s", name, si,
                             sn, h2t_store_dir(s->sh[slot]), p);
            goto out;
        }
        s->sh[slot] = sh;
        s->ext[slot] = id;
        h2t_store_shard_range(n0, si, sn, &s->lo[slot], &s->hi[slot]);
        const h2t_extraction *e = recs[k];
        if (e->n_samples != s->hi[slot] - s->lo[slot] || e->state != H2T_EXT_DONE ||
            e->samples_done < e->n_samples) {
            rc = h2t_err_set(H2T_ESTATE,
                             "store set %s: shard %u/%u in %s is incomplete (%u of %u samples); "
                             "rerun its extract to resume it",
                             name, si, sn, p, e->samples_done, s->hi[slot] - s->lo[slot]);
            goto out;
        }
    }
    for (uint32_t i = 0; i < n_paths; i++)
        if (!s->sh[i]) {
            rc = h2t_err_set(H2T_ENOTFOUND,
                             "store set %s: shard %u/%u is missing: no store given holds it", name,
                             i, n_paths);
            goto out;
        }
    /* shard 0's record: the layer table every shard must share */
    const h2t_extraction *e0 = NULL;
    for (uint32_t k = 0; k < n_paths && !e0; k++)
        if (slot_of[k] == 0)
            e0 = recs[k];
    for (uint32_t k = 0; e0 && k < n_paths; k++) {
        const h2t_extraction *e = recs[k];
        int same = e->n_layers == e0->n_layers && e->dtype == e0->dtype &&
                   e->target_size == e0->target_size;
        for (uint32_t l = 0; same && l < e0->n_layers; l++)
            same = e->layers[l].dim == e0->layers[l].dim &&
                   !strcmp(e->layers[l].name, e0->layers[l].name);
        if (!same) {
            rc = h2t_err_set(H2T_ECORRUPT,
                             "store set %s: shard store %s has another layer table than shard "
                             "0's (same identity, different layers: a damaged store?)",
                             name, paths[k]);
            goto out;
        }
    }
    if (!e0 || !(s->whole = ext_dup(e0))) {
        rc = h2t_err_set(H2T_ENOMEM, "store set %s", name);
        goto out;
    }
    memcpy(s->whole->config_hash, hash0, 32);
    snprintf(s->whole->config, sizeof s->whole->config, "%s", whole0);
    s->whole->n_samples = s->whole->samples_done = n0;
    s->whole->state = H2T_EXT_DONE;
    if (!(s->stats = calloc(s->whole->n_layers ? s->whole->n_layers : 1, sizeof *s->stats))) {
        rc = h2t_err_set(H2T_ENOMEM, "store set %s", name);
        goto out;
    }
    /* the work store */
    if (work_dir) {
        struct stat sb;
        int exists = stat(work_dir, &sb) == 0;
        if (exists || !(flags & H2T_STORE_RDONLY)) {
            unsigned wf = exists ? (flags & ~(unsigned)H2T_STORE_CREATE)
                                 : ((flags & ~(unsigned)H2T_STORE_RDONLY) | H2T_STORE_CREATE);
            if ((rc = h2t_store_open(work_dir, wf, &work)) < 0) {
                rc = h2t_err_wrap(rc, "store set %s: its work store (tasks, jobs)", name);
                goto out;
            }
        }
    }
    if (!work) {
        const char *td = getenv("TMPDIR");
        snprintf(s->tmp_work, sizeof s->tmp_work, "%s/h2tdb-set.XXXXXX", td && *td ? td : "/tmp");
        if (!mkdtemp(s->tmp_work)) {
            rc = h2t_err_set(H2T_EIO, "store set %s: temporary work store: %s", name,
                             strerror(errno));
            s->tmp_work[0] = '\0';
            goto out;
        }
        if ((rc = h2t_store_open(s->tmp_work, H2T_STORE_CREATE | H2T_STORE_NOSYNC, &work)) < 0) {
            tmp_store_remove(s->tmp_work);
            s->tmp_work[0] = '\0';
            goto out;
        }
    }
    snprintf(work->dir, sizeof work->dir, "%s", name);
    work->set = s;
    *out = work;
    s = NULL;
out:
    for (uint32_t k = 0; k < n_paths; k++) {
        h2t_extraction_destroy(recs[k]);
        free(real[k]);
    }
    free(recs);
    free(real);
    free(slot_of);
    store_set_free(s);
    return rc < 0 ? rc : 0;
}

int h2t_store_open_set(const char *const *dirs, size_t n, uint32_t batch, unsigned flags,
                       h2t_store **out)
{
    if (!dirs || n == 0 || n > H2T_STORE_SET_MAX_SHARDS || !out)
        return h2t_err_set(H2T_EINVAL, "store set: %zu shard stores", n);
    char name[1024];
    if (n > 1)
        snprintf(name, sizeof name, "of %s and %zu more", dirs[0], n - 1);
    else
        snprintf(name, sizeof name, "of %s", dirs[0]);
    /* put the stores in shard order: each shard once, none missing */
    const char **by = NULL;
    uint32_t want = 0;
    int rc = 0;
    for (size_t k = 0; k < n && rc == 0; k++) {
        h2t_store *sh;
        if ((rc = h2t_store_open(dirs[k], H2T_STORE_RDONLY, &sh)) < 0) {
            rc = h2t_err_wrap(rc, "store set %s: shard store %s", name, dirs[k]);
            break;
        }
        uint32_t id = 0, si, sn, wn;
        uint8_t h[32];
        char w[512];
        h2t_extraction *rec = NULL;
        rc = set_shard_find(sh, dirs[k], &id, &si, &sn, h, w, sizeof w, &wn, &rec);
        h2t_extraction_destroy(rec);
        h2t_store_close(sh);
        if (rc < 0) {
            rc = h2t_err_wrap(rc, "store set %s", name);
            break;
        }
        if (k == 0) {
            want = sn;
            if (!(by = calloc(sn, sizeof *by)))
                rc = h2t_err_set(H2T_ENOMEM, "store set %s", name);
        } else if (sn != want) {
            rc = h2t_err_set(H2T_EINVAL,
                             "store set %s: shard store %s holds shard %u/%u, %s holds one of %u",
                             name, dirs[k], si, sn, dirs[0], want);
        }
        if (rc == 0 && by[si]) {
            char a[PATH_MAX], b[PATH_MAX];
            if (realpath(by[si], a) && realpath(dirs[k], b) && !strcmp(a, b))
                rc = h2t_err_set(H2T_EINVAL, "store set %s: shard store %s is given twice", name,
                                 dirs[k]);
            else
                rc = h2t_err_set(H2T_EINVAL, "store set %s: shard %u/%u is in both %s and %s", name,
                                 si, sn, by[si], dirs[k]);
        }
        if (rc == 0)
            by[si] = dirs[k];
    }
    for (uint32_t i = 0; rc == 0 && i < want; i++)
        if (!by[i])
            rc = h2t_err_set(H2T_ENOTFOUND,
                             "store set %s: shard %u/%u is missing: no store given holds it", name,
                             i, want);
    if (rc == 0 && batch > 4096)
        rc = h2t_err_set(H2T_EINVAL, "store set %s: batch %u (1..4096)", name, batch);
    if (rc == 0)
        rc = set_open(name, by, want, NULL, batch, NULL, flags & H2T_STORE_RDONLY, out);
    free(by);
    return rc;
}

static int set_open_manifest(const char *dir, unsigned flags, h2t_store **out)
{
    h2t_store_set m;
    int rc = h2t_store_set_read(dir, &m);
    if (rc < 0)
        return rc;
    const char **paths = calloc(m.n_shards, sizeof *paths);
    if (!paths) {
        h2t_store_set_free(&m);
        return h2t_err_set(H2T_ENOMEM, "store set %s", dir);
    }
    for (uint32_t i = 0; i < m.n_shards; i++)
        paths[i] = m.shards[i].path;
    char work[1100];
    snprintf(work, sizeof work, "%s/%s", dir, H2T_STORE_SET_WORK);
    rc = set_open(dir, paths, m.n_shards, &m, 0, work, flags & ~(unsigned)H2T_STORE_CREATE, out);
    free(paths);
    h2t_store_set_free(&m);
    return rc;
}

int h2t_store_is_set(const h2t_store *st)
{
    return st && st->set ? (int)st->set->n : 0;
}

/* Which shard holds sample s of the whole, by binary search over the ranges. */
static uint32_t set_shard_of(const struct store_set *s, uint32_t x)
{
    uint32_t a = 0, b = s->n;
    while (b - a > 1) {
        uint32_t mid = a + (b - a) / 2;
        if (s->lo[mid] <= x)
            a = mid;
        else
            b = mid;
    }
    return a;
}

static int set_layer_read(h2t_store *st, uint32_t ext, uint32_t layer, const uint32_t *samples,
                          uint32_t first, uint32_t n, float *out, size_t ld)
{
    struct store_set *s = st->set;
    if (ext != s->whole->id)
        return h2t_err_set(H2T_ENOTFOUND, "extraction %u not in store set %s (it holds %u)", ext,
                           st->dir, s->whole->id);
    if (layer >= s->whole->n_layers)
        return h2t_err_set(H2T_ENOTFOUND, "extraction %u has no layer %u (it has %u) in store %s",
                           ext, layer, s->whole->n_layers, st->dir);
    uint32_t *loc = NULL;
    if (samples && n && !(loc = malloc((size_t)n * sizeof *loc)))
        return h2t_err_set(H2T_ENOMEM, "store set %s: %u samples", st->dir, n);
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < n;) {
        uint32_t x = samples ? samples[i] : first + i;
        if (x >= s->whole->n_samples) {
            rc = h2t_err_set(H2T_ENOTFOUND, "sample %u not stored: store set %s holds %u", x,
                             st->dir, s->whole->n_samples);
            break;
        }
        uint32_t k = set_shard_of(s, x), j = i;
        /* the run of samples in shard k */
        while (j < n) {
            uint32_t y = samples ? samples[j] : first + j;
            if (y < s->lo[k] || y >= s->hi[k])
                break;
            if (loc)
                loc[j] = y - s->lo[k];
            j++;
        }
        rc = h2t_store_layer_read(s->sh[k], s->ext[k], layer, loc ? loc + i : NULL, x - s->lo[k],
                                  j - i, out + (size_t)i * ld, ld);
        if (rc < 0)
            h2t_err_wrap(rc, "store set %s shard %u (%s)", st->dir, k, h2t_store_dir(s->sh[k]));
        i = j;
    }
    free(loc);
    return rc;
}

/* Layer l's statistics over the whole set: rows in source order, batches of s->batch samples
 * from sample 0, merged by stats_merge as the unsharded pass merges them. Kept per layer. */
static int set_stats_value(h2t_store *st, uint32_t l, const uint8_t **sv_out)
{
    struct store_set *s = st->set;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (!s->stats[l]) {
        uint32_t dim = s->whole->layers[l].dim, nb = s->batch, N = s->whole->n_samples;
        uint8_t *sv = malloc(stats_bytes(dim));
        float *x = malloc((size_t)nb * dim * sizeof *x);
        double *q = malloc((size_t)2 * nb * sizeof *q);
        if (!sv || !x || !q)
            rc = h2t_err_set(H2T_ENOMEM, "store set %s: statistics of layer %u", st->dir, l);
        if (rc == 0) {
            memset(sv, 0, stats_bytes(dim));
            memcpy(sv, &dim, 4);
            double inf = INFINITY, ninf = -INFINITY;
            memcpy(sv + 24, &inf, 8);
            memcpy(sv + 32, &ninf, 8);
        }
        for (uint32_t g = 0; rc == 0 && g < N; g += nb) {
            uint32_t c = N - g < nb ? N - g : nb;
            rc = set_layer_read(st, s->whole->id, l, NULL, g, c, x, dim);
            if (rc == 0 && stats_merge(sv, x, c, dim, q))
                rc = h2t_err_set(H2T_ENUMERIC,
                                 "store set %s: layer %u holds a NaN or infinity in samples "
                                 "%u..%u",
                                 st->dir, l, g, g + c - 1);
        }
        free(x);
        free(q);
        if (rc == 0)
            s->stats[l] = sv;
        else
            free(sv);
    }
    *sv_out = s->stats[l];
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int set_stats_get(h2t_store *st, uint32_t ext, uint32_t layer, h2t_layer_stats **out)
{
    struct store_set *s = st->set;
    if (ext != s->whole->id)
        return h2t_err_set(H2T_ENOTFOUND, "extraction %u not in store set %s (it holds %u)", ext,
                           st->dir, s->whole->id);
    if (layer >= s->whole->n_layers)
        return h2t_err_set(H2T_ENOTFOUND, "extraction %u has no layer %u (it has %u) in store %s",
                           ext, layer, s->whole->n_layers, st->dir);
    const uint8_t *p;
    int rc = set_stats_value(st, layer, &p);
    if (rc < 0)
        return rc;
    uint32_t dim = s->whole->layers[layer].dim;
    h2t_layer_stats *o = stats_alloc(dim);
    if (!o)
        return h2t_err_set(H2T_ENOMEM, "statistics of %u features", dim);
    stats_decode(o, p);
    *out = o;
    return 0;
}

static h2t_extraction *set_whole(const h2t_store *st)
{
    return st->set->whole;
}

static h2t_store *set_shard0(const h2t_store *st)
{
    return st->set->sh[0];
}

static void set_close(h2t_store *st)
{
    if (!st->set)
        return;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", st->set->tmp_work);
    store_set_free(st->set);
    st->set = NULL;
    if (tmp[0]) {
        mdb_env_close(st->env);
        st->env = NULL;
        tmp_store_remove(tmp);
    }
}

static int set_verify_shards(h2t_store *st, h2t_store_problem_fn fn, void *ud,
                             h2t_store_verify_report *rep)
{
    for (uint32_t i = 0; i < st->set->n; i++) {
        h2t_store_verify_report r;
        int rc = h2t_store_verify(st->set->sh[i], fn, ud, &r);
        if (rc < 0)
            return h2t_err_wrap(rc, "store set %s shard %u (%s)", st->dir, i,
                                h2t_store_dir(st->set->sh[i]));
        rep->records += r.records;
        rep->extractions += r.extractions;
        rep->blocks += r.blocks;
        rep->unchecked_blocks += r.unchecked_blocks;
        rep->damaged += r.damaged;
    }
    return 0;
}
