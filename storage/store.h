/*
 * storage/store.h - the h2tdb feature store: one LMDB environment (one directory) holding
 * sources, labels, models, extractions, pooled features, per-feature statistics, tasks,
 * jobs and results. The only place in h2tdb that includes lmdb.h.
 *
 * Life cycle (LMDB style): open -> use -> close. Every call returns 0 or a negative H2T_E*
 * code (common/err.h) with a detail message naming what was wrong (h2t_err_detail()).
 * Out-parameters are written only on success. A failed write changes nothing. Besides the
 * codes each function lists, any call may fail with H2T_ESTORE or H2T_EIO (the storage
 * engine), H2T_ECORRUPT (a damaged record) or H2T_ENOMEM, and any write on a read-only store
 * with H2T_EPERM. Any write may fail with H2T_ENOSPC when the file system is full (the detail
 * names the store; LMDB's short write, EIO, on a nearly full file system counts as full);
 * after space is freed the same write succeeds.
 *
 *     h2t_store *st;
 *     if (h2t_store_open("feats", H2T_STORE_CREATE, &st) < 0)
 *         return; // h2t_err_detail() says why
 *     uint32_t src, model, ext;
 *     int reused;
 *     h2t_source s = {.name = "toy", .n_samples = 2, .n_classes = 1,
 *                     .class_names = (char *[]){"all"}, .labels = (uint32_t[]){0, 0},
 *                     .split = (uint8_t[]){H2T_SPLIT_TRAIN, H2T_SPLIT_TEST}};
 *     h2t_model_rec m = {.name = "net.onnx", .input_shape = {0, 3, 224, 224}};
 *     h2t_layer_info layer = {.name = "conv1", .op = "Conv", .rank = 4, .shape = {8, 2, 2},
 *                             .dim = 8};
 *     h2t_extraction spec = {.name = "toy", .target_size = 8, .n_samples = 2, .n_layers = 1,
 *                            .layers = &layer}; // + config_hash: the extraction's identity
 *     float rows[2 * 8] = {0};                  // 2 samples x 8 features of the one layer
 *     const float *layers[1] = {rows};
 *     if (h2t_store_source_put(st, &s, &src, &reused) == 0 &&
 *         h2t_store_model_put(st, &m, &model, &reused) == 0) {
 *         spec.source = src;
 *         spec.model = model;
 *         if (h2t_store_extraction_begin(st, &spec, &ext, &reused) == 0 && // reused: resume
 *             h2t_store_features_write(st, ext, 0, 2, layers) == 0) // rows, statistics, marker
 *             h2t_store_extraction_set_state(st, ext, H2T_EXT_DONE);
 *     }
 *     h2t_store_close(st);
 *
 * Threads: one h2t_store may be shared by any number of threads; each call runs its own
 * transaction on the calling thread. Readers never block the writer (LMDB MVCC); writers are
 * serialised. The map grows by itself when full; callers never see MDB_MAP_FULL. Growing
 * waits until no transaction of this process is live: do not write on a thread that holds a
 * zero-copy reader (a write that must grow the map then fails with H2T_EBUSY after 30 s).
 * Any write on a store opened H2T_STORE_RDONLY fails with H2T_EPERM.
 *
 * Crash safety: a feature batch, its statistics and the extraction's progress marker
 * (samples_done) are committed in one write transaction, so after a crash the marker always
 * agrees with the features present and a rerun resumes from samples_done.
 *
 * Keys are big-endian so cursor order is numeric order. Features are stored in blocks keyed by
 * their first sample: format 2 writes one packed block per batch holding every layer's rows,
 * layer after layer (one LMDB value per batch: nothing is rewritten and at most one page is
 * left part-empty per batch); a batch under 128 KiB extends the previous block when that one is
 * also under 128 KiB (in the same transaction). Format 1 stores (one block per layer and
 * batch) are still read. Reads are per sample and hide the blocks. Feature and statistics
 * values are in host byte order (x86-64: little-endian).
 */
#ifndef H2T_STORAGE_STORE_H
#define H2T_STORAGE_STORE_H

#include <stddef.h>
#include <stdint.h>

/* The format this build writes, and the oldest it reads. Format 2 stores a batch's features of
 * every layer as one packed block; a format 1 store (one block per layer and batch) is read as
 * it is and becomes format 2 with its first feature write (older builds then refuse it with
 * H2T_EVERSION instead of missing the packed blocks). */
#define H2T_STORE_FORMAT_VERSION 3
#define H2T_STORE_FORMAT_OLDEST 1

typedef struct h2t_store h2t_store;

/* ---- open / close ---- */
enum {
    H2T_STORE_CREATE = 1, /* create the directory and store if missing */
    H2T_STORE_RDONLY = 2, /* read-only environment */
    H2T_STORE_NOSYNC = 4, /* no fsync per commit: survives a killed process, not a power cut */
};

/* Open (or with H2T_STORE_CREATE create) the store in directory dir. CREATE makes the
 * directory (not its parents) or uses an empty one; a non-empty directory without a store is
 * refused (H2T_ECORRUPT) rather than filled; an LMDB environment that never committed (a
 * creation killed before its first commit) is created over. Open a directory once per process and
 * share the handle (LMDB's rule: a second handle in the same process breaks the first one's locks).
 * Errors: H2T_ENOTFOUND (no store there and no CREATE), H2T_EPERM (no permission),
 * H2T_EVERSION (a format outside H2T_STORE_FORMAT_OLDEST..H2T_STORE_FORMAT_VERSION: the
 * detail gives the store's and the range this build reads), H2T_ECORRUPT (not an
 * h2tdb store / damaged), H2T_EIO, H2T_ENOMEM. */
int h2t_store_open(const char *dir, unsigned flags, h2t_store **out);
/* As h2t_store_open, with the initial map size in bytes for a new store (0 = the default,
 * 64 MiB); the map still grows by itself. Tests use a small map to exercise growth. */
int h2t_store_open_map(const char *dir, unsigned flags, uint64_t map_size, h2t_store **out);
/* Close; NULL is a no-op. All readers must have ended. */
void h2t_store_close(h2t_store *st);
/* The directory the store was opened with. BORROWED: valid until h2t_store_close. */
const char *h2t_store_dir(const h2t_store *st);

/* The service lock: the one process that serves a store (or compacts it) holds an exclusive
 * flock on DIR/serve.lock, a file holding its pid, until h2t_store_service_unlock or
 * h2t_store_close. The kernel drops the lock when the process dies, so a lock file left by a
 * killed server is taken over without a check of its pid. Other writers (extract, task
 * commands) do not take it. Errors: H2T_EBUSY (another process, or this handle, holds it:
 * the detail names the holder's pid and the file), H2T_EPERM, H2T_EIO. */
#define H2T_STORE_SERVICE_LOCK "serve.lock"
/* Every open handle holds DIR/open.lock shared (an flock, created with the store; where it
 * cannot be opened, as on a read-only medium, the store opens without it); a compaction holds
 * it exclusively, with its pid in the file. So a compaction is refused while any other process
 * has the store open, and h2t_store_open is H2T_EBUSY, naming the compacting pid, while a
 * compaction runs. */
#define H2T_STORE_OPEN_LOCK "open.lock"
int h2t_store_service_lock(h2t_store *st);
/* Release the lock if this handle holds it (the file stays, empty); otherwise a no-op. */
void h2t_store_service_unlock(h2t_store *st);

typedef struct h2t_store_meta {
    uint32_t format_version;
    uint8_t store_id[16];
    uint64_t created_ms;
    uint64_t map_size, used_bytes; /* current map size and bytes in use */
} h2t_store_meta;
/* The store's meta record and its map use. No errors of its own. */
int h2t_store_meta_get(h2t_store *st, h2t_store_meta *out);

/* ---- sources (datasets) and labels ---- */
enum { H2T_SPLIT_TRAIN = 0, H2T_SPLIT_TEST = 1 };

typedef struct h2t_source {
    uint32_t id;        /* assigned by the store */
    char name[128];     /* e.g. "fashion-mnist" */
    char uri[1024];     /* e.g. "idx:/usr/share/datasets/fashion-mnist" */
    uint8_t hash[32];   /* content hash: the same hash reuses the same source */
    uint32_t n_samples; /* samples are numbered 0..n_samples-1 */
    uint32_t n_classes;
    char **class_names; /* n_classes strings; OWNED by the struct */
    uint32_t *labels;   /* n_samples labels (< n_classes); OWNED; NULL from source_list */
    uint8_t *split;     /* n_samples H2T_SPLIT_*; OWNED; NULL from source_list */
} h2t_source;

/* Store a source with all its labels in one transaction, or find the existing one with the
 * same hash (then *reused = 1 and nothing is written). Errors: H2T_EINVAL (label >= n_classes,
 * empty name), H2T_ESTORE, H2T_EIO. */
int h2t_store_source_put(h2t_store *st, const h2t_source *src, uint32_t *id, int *reused);
/* Errors: H2T_ENOTFOUND. *out is OWNED by the caller: h2t_source_destroy. */
int h2t_store_source_get(h2t_store *st, uint32_t id, h2t_source **out);
/* Labels of samples [first, first+n). Errors: H2T_ENOTFOUND (source or sample range). */
int h2t_store_labels_get(h2t_store *st, uint32_t source, uint32_t first, uint32_t n,
                         uint32_t *labels, uint8_t *split);
/* All sources without labels; *out is an OWNED array of OWNED sources:
 * h2t_source_list_destroy. */
int h2t_store_source_list(h2t_store *st, h2t_source ***out, size_t *n);
void h2t_source_destroy(h2t_source *s);
void h2t_source_list_destroy(h2t_source **v, size_t n);

/* ---- models ---- */
typedef struct h2t_model_rec {
    uint32_t id;
    char name[128];
    uint8_t sha256[32];      /* of the ONNX file: the same hash reuses the record */
    uint32_t input_shape[4]; /* N (0 = dynamic), C, H, W */
    char preprocess[256];    /* e.g. "resize=bilinear scale=-1,1 channels=3" */
} h2t_model_rec;
/* Store a model record, or find the one with the same sha256 (*reused = 1, nothing written).
 * Errors: H2T_EINVAL (no name). */
int h2t_store_model_put(h2t_store *st, const h2t_model_rec *m, uint32_t *id, int *reused);
/* Errors: H2T_ENOTFOUND (naming the id). */
int h2t_store_model_get(h2t_store *st, uint32_t id, h2t_model_rec *out);
int h2t_store_model_list(h2t_store *st, h2t_model_rec **out, size_t *n); /* OWNED: free() */

/* ---- extractions ---- */
enum { H2T_DTYPE_F32 = 0, H2T_DTYPE_F16 = 1 };
enum { H2T_EXT_RUNNING = 0, H2T_EXT_DONE = 1, H2T_EXT_FAILED = 2 };

typedef struct h2t_layer_info {
    char name[256];    /* ONNX tensor name (node output) */
    char op[64];       /* ONNX op type of the producing node */
    uint32_t rank;     /* rank of the tensor including the batch dimension */
    uint32_t shape[4]; /* per-sample shape (batch dimension removed), rank-1 entries used */
    uint32_t dim;      /* pooled feature count */
    uint64_t offset;   /* start of this layer in the concatenated feature vector */
} h2t_layer_info;

typedef struct h2t_extraction {
    uint32_t id;    /* assigned by the store */
    char name[128]; /* user-given name (unique), or "" */
    uint32_t source, model;
    uint32_t target_size;    /* Head2Toe T */
    uint32_t dtype;          /* H2T_DTYPE_* of the stored features */
    char config[512];        /* everything else that changes the numbers, human-readable */
    uint8_t config_hash[32]; /* identity: the same hash reuses the extraction */
    uint32_t n_samples;      /* planned sample count (the pass covers samples 0..n_samples-1) */
    uint32_t samples_done;   /* progress marker: samples [0, samples_done) are stored */
    uint32_t state;          /* H2T_EXT_* */
    uint64_t created_ms, updated_ms;
    uint32_t n_layers;
    h2t_layer_info *layers; /* n_layers entries; OWNED by the struct */
    uint64_t total_dim;     /* sum of layers[].dim */
    uint32_t checksums;     /* 1: its feature blocks and statistics carry CRC32C, checked on
                               every read (every extraction begun by a format 3 build); 0:
                               begun by an older build, read unchecked. Set by the store. */
} h2t_extraction;

/* Find the extraction with spec->config_hash, or create it from spec (id, samples_done,
 * state, timestamps, offsets and total_dim are filled by the store). *reused = 1 when it
 * existed (its samples_done tells where to resume). Errors: H2T_EINVAL (no layers, dim 0,
 * more than 65535 layers), H2T_EEXIST (name taken by another config), H2T_ENOTFOUND (source or
 * model id unknown). */
int h2t_store_extraction_begin(h2t_store *st, const h2t_extraction *spec, uint32_t *id,
                               int *reused);
/* Errors: H2T_ENOTFOUND. OWNED: h2t_extraction_destroy. */
int h2t_store_extraction_get(h2t_store *st, uint32_t id, h2t_extraction **out);
/* Resolve "3" (an id) or a name. Errors: H2T_ENOTFOUND naming the argument. */
int h2t_store_extraction_find(h2t_store *st, const char *id_or_name, uint32_t *id);
int h2t_store_extraction_list(h2t_store *st, h2t_extraction ***out, size_t *n);
int h2t_store_extraction_set_state(h2t_store *st, uint32_t id, uint32_t state);
/* Index of a layer by name. Errors: H2T_ENOTFOUND naming the layer. */
int h2t_extraction_layer_find(const h2t_extraction *e, const char *name, uint32_t *layer);
void h2t_extraction_destroy(h2t_extraction *e);
void h2t_extraction_list_destroy(h2t_extraction **v, size_t n);

/* ---- features ---- */
/* Write samples [first, first+n) of every layer (one packed block), merge their statistics,
 * and set samples_done = first + n, all in one transaction; a format 1 store becomes format 2
 * in that transaction. layers[l] points to n x dim_l floats
 * (row-major, sample-major), for every layer l of the extraction, in layer-table order. Values
 * are converted to the extraction's dtype (f16: round to nearest even, with the CPU's F16C
 * instructions when present; H2T_NO_F16C=1 in the environment at open forces the software
 * path; a value that would overflow f16 is H2T_ENUMERIC). Errors: H2T_ESTATE (first !=
 * samples_done: the store resumes only from its marker), H2T_EINVAL (n == 0, past n_samples),
 * H2T_ENUMERIC (NaN/inf: detail names layer and sample), H2T_ENOTFOUND. */
int h2t_store_features_write(h2t_store *st, uint32_t ext, uint32_t first, uint32_t n,
                             const float *const *layers);

/* Whether the feature blocks h2t_store_features_write commits stay in the page cache (keep 1,
 * the default) or are dropped from it once durable (keep 0: posix_fadvise DONTNEED over the
 * block's whole pages, after the commit; blocks under 128 KiB, which the next batch may
 * extend, stay). A long extraction then recycles the same memory for each batch's new pages
 * instead of taking fresh ones (on a virtual machine each fresh page costs the host a fault:
 * the commit's CPU was 3-5x higher); later reads of those blocks come from the disk. Nothing
 * stored changes. Returns the previous setting; any thread may set it (the next write
 * follows it). */
int h2t_store_features_cache(h2t_store *st, int keep);

/* Where h2t_store_features_write's time goes on the calling thread, summed over the calls on
 * this handle that succeeded. CPU seconds (the thread's clock; a part inside the transaction
 * gets its share of the transaction's CPU in proportion to its monotonic-clock time, so
 * timing a part costs no system call):
 *   stats_cpu_s   the statistics: each layer's record read and the batch merged in;
 *   rows_cpu_s    the rows into the packed block: a copy (f32), a conversion and range check
 *                 (f16);
 *   crc_cpu_s     the CRC32C checksums of the rows and the statistics (format 3 extractions);
 *   commit_cpu_s  mdb_txn_commit: mostly the kernel copying the new pages into the page cache;
 *   the rest of cpu_s is LMDB inside the transaction (the block's pages, the records).
 * commit_s is the commit's wall time: commit_s - commit_cpu_s is the wait for the disk (the
 * fsync that makes each batch durable; none with H2T_STORE_NOSYNC). */
typedef struct h2t_store_write_times {
    uint64_t calls, samples;
    double wall_s, cpu_s;
    double stats_cpu_s, rows_cpu_s, crc_cpu_s, commit_cpu_s;
    double commit_s;
} h2t_store_write_times;
/* Copy the sums into out (all zero before the first write). Not synchronised with writes on
 * other threads: read it on the writing thread or after the writes. */
void h2t_store_write_times_get(const h2t_store *st, h2t_store_write_times *out);

/* Copy one pooled vector (dim floats) of (layer, sample) into out.
 * Errors: H2T_ENOTFOUND (extraction, layer or sample not stored: detail says which),
 * H2T_ESHAPE (dim differs from the layer's). */
int h2t_store_feature_get(h2t_store *st, uint32_t ext, uint32_t layer, uint32_t sample, float *out,
                          uint32_t dim);

/* Copy rows of one layer for n samples into out: row i (the vector of samples[i], or of
 * sample first+i when samples is NULL) goes to out + i*ld (ld >= dim floats). A cursor walk:
 * fastest when samples are ascending. This is the design-matrix assembly primitive.
 * Errors: H2T_ENOTFOUND (a sample not stored: detail names it), H2T_EINVAL. */
int h2t_store_layer_read(h2t_store *st, uint32_t ext, uint32_t layer, const uint32_t *samples,
                         uint32_t first, uint32_t n, float *out, size_t ld);

/* Zero-copy reads: a reader is a read transaction; views are BORROWED until
 * h2t_store_reader_end and may be unaligned (memcpy before use as float/uint16). A reader
 * stays on the thread that began it. */
typedef struct h2t_store_reader h2t_store_reader;
int h2t_store_reader_begin(h2t_store *st, h2t_store_reader **out);
void h2t_store_reader_end(h2t_store_reader *r);
int h2t_store_reader_feature(h2t_store_reader *r, uint32_t ext, uint32_t layer, uint32_t sample,
                             const void **data, uint32_t *dim, uint32_t *dtype);

/* ---- store sets: the shard stores of one sharded extraction, named by a manifest ----
 * extract --mpi writes DIR/shard-I-of-N (one store per rank) and then DIR/store-set.txt:
 *
 *     h2tdb-store-set 1
 *     extraction <the whole extraction's config hash, 64 hex digits>
 *     samples <the whole extraction's sample count>
 *     shards <N>
 *     config <the whole extraction's config>
 *     batch <samples per batch of the extraction: its statistics are merged in such batches>
 *     shard <I> <first sample> <end sample> <store path, relative to the manifest's folder>
 *     ... (one line per shard, I = 0..N-1 in order)
 *
 * A folder holding a manifest opens as one store (h2t_store_open): the set's extraction is the
 * whole one (shard 0's record with the whole identity and sample count: an unsharded extract of
 * the same request has the same identity), its samples in source order across the shards, its
 * statistics recomputed from the rows in source order in batches of `batch` exactly as the
 * unsharded pass merges them (bitwise its statistics at that --batch, for f32 extractions;
 * computed once per layer and kept while the set is open), its source and model shard 0's.
 * The shards are opened read-only and nothing is written to them: the extraction, sources and
 * models of a set are refused as writes (H2T_EPERM). Tasks, jobs and results go to the set's
 * work store DIR/work (created on the first open that may write; a read-only open without it
 * uses an empty temporary one). Opening checks, naming the shard and path, before anything is
 * read: every store named exists (H2T_ENOTFOUND: moved or removed), holds exactly one shard
 * extraction of the manifest's whole extraction and shard count in the manifest's position
 * (H2T_EINVAL), complete (H2T_ESTATE), each store once (H2T_EINVAL). Zero-copy readers
 * (h2t_store_reader_begin) are H2T_EUNSUPPORTED on a set; h2t_store_verify checks the work
 * store and every shard; h2t_store_compact refuses a set's folder (H2T_EINVAL: compact the
 * stores one by one); a folder with both a manifest and a data.mdb is refused (H2T_ECORRUPT).
 */
#define H2T_STORE_SET_WORK "work"
#define H2T_STORE_SET_MANIFEST "store-set.txt"
/* The range of shard i of n over n_samples samples: [*lo, *hi) = [floor(n_samples i / n),
 * floor(n_samples (i + 1) / n)). */
void h2t_store_shard_range(uint32_t n_samples, uint32_t i, uint32_t n, uint32_t *lo, uint32_t *hi);
/* Parse a shard extraction's stored config (h2t_extraction.config; extract --shard I/N):
 * *i, *n, the whole extraction's config hash (32 bytes), its config (the stored one without
 * its shard fields; wlen bytes at most, NUL-terminated) and its sample count. Returns 1 for a
 * shard's config, 0 for an unsharded one, H2T_ECORRUPT for a damaged shard field. */
int h2t_store_shard_parse(const char *config, uint32_t *i, uint32_t *n, uint8_t hash[32],
                          char *whole, size_t wlen, uint32_t *n_samples);
#define H2T_STORE_SET_MAX_SHARDS 65536

typedef struct h2t_store_set_shard {
    uint32_t lo, hi; /* its samples [lo, hi) of the whole extraction */
    char path[4096]; /* the store: as written in the manifest, resolved against its folder */
} h2t_store_set_shard;

typedef struct h2t_store_set {
    uint8_t whole_hash[32];
    uint32_t n_samples, n_shards;
    uint32_t batch; /* samples per statistics batch of the set read as one (0: 32) */
    char config[512];
    h2t_store_set_shard *shards; /* n_shards, in shard order; OWNED by the struct */
} h2t_store_set;

/* Write dir/store-set.txt for the shards dir/shard-I-of-N (or names[I] when names is not NULL:
 * relative to dir, or absolute), I < n_shards, with counts[I] samples each, replacing the file
 * atomically (a temporary file, fsync, rename). Checks that the counts are the contiguous
 * ranges of h2t_store_shard_range. Errors: H2T_EINVAL (counts that are not those ranges, or
 * an empty name, naming the shard), H2T_EIO (naming the file). */
int h2t_store_set_write(const char *dir, uint32_t n_shards, const uint8_t whole_hash[32],
                        const char *whole_config, uint32_t n_samples, const uint32_t *counts,
                        uint32_t batch, const char *const *names);
/* 1 when dir holds a manifest (dir/store-set.txt), else 0. */
int h2t_store_set_exists(const char *dir);
/* Open shard stores given by path (any order; every shard of one sharded extraction exactly
 * once) as one store set, as a manifest's folder opens, with a temporary work store removed at
 * close and statistics in batches of `batch` samples (0: 32, extract's default). Errors: those
 * of a manifest's set, naming the path; H2T_ENOTFOUND also for a shard no store holds. */
int h2t_store_open_set(const char *const *dirs, size_t n, uint32_t batch, unsigned flags,
                       h2t_store **out);
/* The number of shards of a store set, or 0 for a single store. */
int h2t_store_is_set(const h2t_store *st);
/* Read a manifest (the file, or a folder holding store-set.txt) into *out (OWNED:
 * h2t_store_set_free). Store paths are resolved against the manifest's folder. Errors:
 * H2T_ENOTFOUND (no manifest there), H2T_ECORRUPT (a malformed line, shards out of order,
 * missing or duplicated, ranges that are not the contiguous shard ranges: named by line),
 * H2T_EIO, H2T_ENOMEM. Reads only the manifest; the stores are checked when opened. */
int h2t_store_set_read(const char *path, h2t_store_set *out);
void h2t_store_set_free(h2t_store_set *s);

/* ---- statistics (per feature, merged batch by batch; exact for any batch split) ---- */
typedef struct h2t_layer_stats {
    uint32_t dim;
    uint64_t count;                       /* samples merged */
    double *mean, *m2;                    /* per feature; variance = m2 / count (population) */
    float *min, *max;                     /* per feature */
    double norm_mean, norm_min, norm_max; /* L2 norm of the pooled vector over samples */
} h2t_layer_stats;
/* OWNED: h2t_layer_stats_destroy. Errors: H2T_ENOTFOUND. */
int h2t_store_stats_get(h2t_store *st, uint32_t ext, uint32_t layer, h2t_layer_stats **out);
void h2t_layer_stats_destroy(h2t_layer_stats *s);

/* ---- tasks: a downstream task is labels and sample lists over one extraction ---- */
typedef struct h2t_task {
    char name[128];
    uint32_t extraction;
    uint32_t n_classes;
    char **class_names; /* n_classes; OWNED */
    uint32_t shots;     /* k-shot subset size per class (0 = all) */
    uint32_t n_train, n_val, n_test;
    uint32_t *train, *val, *test;                      /* sample ids; OWNED */
    uint32_t *train_labels, *val_labels, *test_labels; /* task labels < n_classes; OWNED */
    uint64_t created_ms;
} h2t_task;
/* Errors: H2T_EEXIST (name taken and !replace), H2T_EINVAL (no classes, empty train list,
 * label >= n_classes, sample >= the extraction's n_samples), H2T_ENOTFOUND (extraction). */
int h2t_store_task_put(h2t_store *st, const h2t_task *t, int replace);
/* The task with its sample lists. Errors: H2T_EINVAL (empty or over-long name), H2T_ENOTFOUND
 * (naming the task), H2T_ECORRUPT (a damaged record). *out OWNED: h2t_task_destroy. */
int h2t_store_task_get(h2t_store *st, const char *name, h2t_task **out);
/* Every task, without the sample and label arrays (NULL). *out is an OWNED array of OWNED
 * tasks: h2t_task_list_destroy. Errors: H2T_ECORRUPT, H2T_ESTORE. */
int h2t_store_task_list(h2t_store *st, h2t_task ***out, size_t *n);
/* Errors: H2T_EINVAL (empty name), H2T_ENOTFOUND (naming the task), H2T_EPERM (read-only). */
int h2t_store_task_delete(h2t_store *st, const char *name);
void h2t_task_destroy(h2t_task *t);                 /* NULL is a no-op */
void h2t_task_list_destroy(h2t_task **v, size_t n); /* NULL is a no-op */

/* ---- jobs and results ---- */
enum {
    H2T_JOB_QUEUED = 0,
    H2T_JOB_RUNNING = 1,
    H2T_JOB_DONE = 2,
    H2T_JOB_FAILED = 3,
    H2T_JOB_CANCELLED = 4
};

typedef struct h2t_job {
    uint64_t id;
    uint32_t state;    /* H2T_JOB_* */
    uint32_t attempts; /* times the job was started */
    double progress;   /* 0..1 */
    char stage[64];    /* e.g. "cv fold 3/5" */
    char error[512];   /* for FAILED */
    uint64_t created_ms, started_ms, finished_ms;
    void *spec; /* opaque job spec bytes (the server's encoding); OWNED */
    size_t spec_len;
    int damaged; /* from h2t_store_job_list only: the record failed its checks; the job is
                    FAILED with the reason in error and nothing else filled */
} h2t_job;
/* New job in state QUEUED with the next id (ids increase, never reused); spec (BORROWED) is
 * copied. Errors: H2T_EINVAL (spec_len > 0 with spec NULL). */
int h2t_store_job_create(h2t_store *st, const void *spec, size_t spec_len, uint64_t *id);
/* Errors: H2T_ENOTFOUND (naming the job). *out OWNED: h2t_job_destroy. */
int h2t_store_job_get(h2t_store *st, uint64_t id, h2t_job **out);
/* Update state, attempts, progress, stage, error and timestamps (not the spec).
 * Errors: H2T_EINVAL (a state outside H2T_JOB_*), H2T_ENOTFOUND. */
int h2t_store_job_update(h2t_store *st, const h2t_job *j);
/* Finish a job: its final state, error text and result blob in one transaction, so no job is
 * ever DONE without its result. result may be NULL for FAILED/CANCELLED. DONE sets progress 1
 * and clears the stage; FAILED/CANCELLED keep the last stage saved (where it stopped).
 * Errors: H2T_EINVAL (a state that is not final, DONE without a result), H2T_ENOTFOUND. */
int h2t_store_job_finish(h2t_store *st, uint64_t id, uint32_t state, const char *error,
                         const void *result, size_t result_len);
/* Every job in id order, spec included. *out is an OWNED array of OWNED jobs:
 * h2t_job_list_destroy. A damaged record does not fail the list: it is listed with damaged = 1
 * (see h2t_job); h2t_store_job_get on it is H2T_ECORRUPT. */
int h2t_store_job_list(h2t_store *st, h2t_job ***out, size_t *n);
void h2t_job_destroy(h2t_job *j);                 /* NULL is a no-op */
void h2t_job_list_destroy(h2t_job **v, size_t n); /* NULL is a no-op */
/* The result blob of a finished job (the solver's encoding); *blob OWNED: free().
 * Errors: H2T_ENOTFOUND (no result stored for the job). */
int h2t_store_result_get(h2t_store *st, uint64_t id, void **blob, size_t *len);

/* ---- integrity and life cycle ---- */
typedef struct h2t_store_verify_report {
    uint64_t records;          /* records decoded (sources, labels, ..., statistics) */
    uint64_t extractions;      /* extractions whose blocks were walked */
    uint64_t blocks;           /* feature blocks seen */
    uint64_t unchecked_blocks; /* of them, written without checksums (format 1/2 builds) */
    uint64_t damaged;          /* problems reported */
} h2t_store_verify_report;
/* Called once per problem found, with a line naming the table and record, or the extraction,
 * layer and samples (BORROWED for the call). */
typedef void (*h2t_store_problem_fn)(void *ud, const char *problem);
/* Check the whole store in one read transaction: every record through its decoder (a result
 * blob against its CRC32C), every feature block's size, order and per-layer checksum, the
 * blocks covering samples [0, samples_done), every statistics record's size and checksum.
 * Returns 0 when the walk finished (damage or not: see out->damaged); an error only when it
 * could not run. fn may be NULL. */
int h2t_store_verify(h2t_store *st, h2t_store_problem_fn fn, void *ud,
                     h2t_store_verify_report *out);

/* Remove an extraction: its feature blocks, statistics and record, in one transaction. The
 * tasks over it depend on it: without force that is H2T_ESTATE naming them; with force they
 * are removed too (*tasks_removed, may be NULL). The source and model records stay (other
 * extractions may share them). Errors: H2T_ENOTFOUND, H2T_ESTATE, store errors. */
int h2t_store_extraction_delete(h2t_store *st, uint32_t id, int force, uint32_t *tasks_removed);
/* Remove a job and its result. A queued or running job is H2T_ESTATE unless force (a server
 * that runs it must not be serving the store: h2tdb rm holds the service lock). A damaged
 * record is removed too. Errors: H2T_ENOTFOUND, H2T_ESTATE. */
int h2t_store_job_delete(h2t_store *st, uint64_t id, int force);
/* Give removed space back: copy the store with LMDB's compaction (mdb_env_copy2,
 * MDB_CP_COMPACT) into DIR/compact.tmp, fsync it, and rename it over DIR/data.mdb. Holds the
 * service lock throughout, so it refuses (H2T_EBUSY naming the pid) while a server runs, and
 * the open lock exclusively, so it refuses (H2T_EBUSY naming the pids it can see in /proc)
 * while any other process has the store open: an extraction, a task command, a reader (an
 * extraction's writes after the copy began would be lost); opens during the compaction are
 * refused. An interrupted compaction leaves the store as it was (and compact.tmp, removed by
 * the next run). *before / *after: data.mdb's size (may be NULL). */
int h2t_store_compact(const char *dir, uint64_t *before, uint64_t *after);

#endif
