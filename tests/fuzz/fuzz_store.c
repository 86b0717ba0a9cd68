/*
 * tests/fuzz/fuzz_store.c - libFuzzer target: arbitrary LMDB values (and keys) for the store's
 * records, read back through the store's own decoders. A template store (one source, model,
 * extraction with two layers, f32 feature blocks with checksums and statistics, a task, two
 * jobs, one with a solver result) is built once; each input is a list of records
 *     u8 table (mod 10, docs/storage.md order: meta sources labels models extractions
 *     features stats tasks jobs results), u8 key length, key, u16 value length (LE; 0xffff
 *     deletes the key instead), value
 * written with plain LMDB calls into a fresh copy of the template. The store is then opened
 * and every reader runs over it: meta, sources with labels, models, extractions with
 * statistics, feature reads (feature_get, layer_read, reader_feature), one more feature write
 * (which merges into the stored statistics), tasks, jobs, results through the solver's
 * decoder, h2tdb verify's walk, and removal. A damaged record must be an error, never a
 * crash, a leak or undefined behaviour. Built and run by run.sh store; with H2T_FUZZ_SEED_OUT
 * set, it writes one seed per template record into that directory and exits.
 */
#include "common/err.h"
#include "common/log.h"
#include "solver/solver.h"
#include "storage/store.h"
#include "tests/fixture.h"

#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_TABLES = 10 };
static const char *const tables[N_TABLES] = {"meta",        "sources",  "labels", "models",
                                             "extractions", "features", "stats",  "tasks",
                                             "jobs",        "results"};
static char dir[4096];
static uint8_t *tmpl; /* the template's data.mdb */
static size_t tmpl_len;

static float fixture_value(void *ctx, uint32_t l, uint32_t i, uint32_t j, uint32_t label)
{
    (void)ctx;
    return (float)(l + 1) * 0.5f + (float)i * 0.25f - (float)j + (float)label;
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_store: %s: %s\n", what, h2t_err_detail());
    abort();
}

/* The template: 12 samples (8 train), 3 classes, layers "a" (4) and "b" (3), 10 written. */
static void template_build(void)
{
    static const h2t_layer_info L[] = {
        {.name = "a", .op = "Relu", .rank = 2, .shape = {4}, .dim = 4},
        {.name = "b", .op = "GlobalAveragePool", .rank = 4, .shape = {3, 1, 1}, .dim = 3}};
    fixture_spec sp = {.source = {.name = "s", .uri = "npy:/x"},
                       .model = {.name = "m", .input_shape = {0, 3, 8, 8}},
                       .ext = {.config = "pool=avg"},
                       .samples = {.n = 12, .classes = 3, .train = 8},
                       FIXTURE_LAYERS(L),
                       .features = {.written = 10, .value = fixture_value}};
    h2t_store *st = NULL;
    uint32_t eid;
    if (fixture_store_build(dir, H2T_STORE_CREATE | H2T_STORE_NOSYNC, &sp, &st, &eid) < 0)
        die("template");
    uint32_t train[] = {0, 1, 2, 3, 4, 5}, test[] = {8, 9};
    uint32_t ytrain[] = {0, 1, 0, 1, 0, 1}, ytest[] = {0, 1};
    char *names[] = {"x", "y"};
    h2t_task t = {.name = "t",
                  .extraction = eid,
                  .n_classes = 2,
                  .class_names = names,
                  .n_train = 6,
                  .train = train,
                  .train_labels = ytrain,
                  .n_test = 2,
                  .test = test,
                  .test_labels = ytest};
    if (h2t_store_task_put(st, &t, 0) < 0)
        die("task");
    h2t_task *tk = NULL;
    h2t_train_spec spec;
    h2t_train_spec_default(&spec, H2T_METHOD_NCM);
    spec.folds = 2;
    h2t_result *res = NULL;
    void *blob = NULL;
    size_t blen = 0;
    uint64_t j1, j2;
    if (h2t_store_task_get(st, "t", &tk) < 0 ||
        h2t_solver_run(st, tk, &spec, NULL, NULL, NULL, &res) < 0 ||
        h2t_result_encode(res, &blob, &blen) < 0)
        die("result");
    if (h2t_store_job_create(st, "spec-bytes", 10, &j1) < 0 ||
        h2t_store_job_finish(st, j1, H2T_JOB_DONE, NULL, blob, blen) < 0 ||
        h2t_store_job_create(st, "queued", 6, &j2) < 0)
        die("jobs");
    free(blob);
    h2t_result_destroy(res);
    h2t_task_destroy(tk);
    h2t_store_close(st);
}

static int file_put(const char *path, const void *d, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    int ok = write(fd, d, n) == (ssize_t)n;
    close(fd);
    return ok ? 0 : -1;
}

/* Every record of the template, one seed file each (an input of one record). */
static void seeds_write(const char *out)
{
    MDB_env *env;
    MDB_txn *txn;
    mkdir(out, 0755);
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 16) ||
        mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0644) ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
        abort();
    int n = 0;
    for (int t = 0; t < N_TABLES; t++) {
        MDB_dbi dbi;
        MDB_cursor *cur;
        MDB_val k, v;
        if (mdb_dbi_open(txn, tables[t], 0, &dbi) || mdb_cursor_open(txn, dbi, &cur))
            abort();
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size > 255 || v.mv_size >= 0xffff)
                continue;
            size_t len = 4 + k.mv_size + v.mv_size;
            uint8_t *b = malloc(len);
            b[0] = (uint8_t)t;
            b[1] = (uint8_t)k.mv_size;
            memcpy(b + 2, k.mv_data, k.mv_size);
            b[2 + k.mv_size] = (uint8_t)(v.mv_size & 255);
            b[3 + k.mv_size] = (uint8_t)(v.mv_size >> 8);
            memcpy(b + 4 + k.mv_size, v.mv_data, v.mv_size);
            char path[4200];
            snprintf(path, sizeof(path), "%s/%s-%02d", out, tables[t], n++);
            if (file_put(path, b, len) < 0)
                abort();
            free(b);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    h2t_log_set_level(H2T_LOG_LOFF);
    const char *base = getenv("H2T_FUZZ_DIR"); /* run.sh removes it afterwards */
    snprintf(dir, sizeof(dir), "%s/store-%ld", base ? base : "/tmp", (long)getpid());
    template_build();
    char data[4200];
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    size_t n = 0;
    FILE *f = fopen(data, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = (size_t)ftell(f)) == 0)
        abort();
    rewind(f);
    tmpl = malloc(n);
    if (!tmpl || fread(tmpl, 1, n, f) != n)
        abort();
    fclose(f);
    tmpl_len = n;
    const char *seeds = getenv("H2T_FUZZ_SEED_OUT");
    if (seeds) {
        seeds_write(seeds);
        exit(0);
    }
    return 0;
}

/* The input's records into a fresh copy of the template, with plain LMDB calls. */
static int records_put(const uint8_t *d, size_t size)
{
    char data[4200];
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    if (file_put(data, tmpl, tmpl_len) < 0)
        abort();
    MDB_env *env;
    MDB_txn *txn;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 16) ||
        mdb_env_set_mapsize(env, (size_t)64 << 20) ||
        mdb_env_open(env, dir, MDB_NOLOCK | MDB_NOSYNC, 0644) || mdb_txn_begin(env, NULL, 0, &txn))
        abort();
    MDB_dbi dbi[N_TABLES];
    for (int t = 0; t < N_TABLES; t++)
        if (mdb_dbi_open(txn, tables[t], 0, &dbi[t]))
            abort();
    size_t off = 0;
    while (off + 2 <= size) {
        int t = d[off] % N_TABLES;
        size_t kl = d[off + 1];
        if (off + 2 + kl + 2 > size)
            break;
        MDB_val k = {kl, (void *)(d + off + 2)};
        size_t vl = d[off + 2 + kl] | (size_t)d[off + 3 + kl] << 8;
        off += 4 + kl;
        if (vl == 0xffff) {
            if (kl)
                mdb_del(txn, dbi[t], &k, NULL);
            continue;
        }
        if (vl > size - off)
            vl = size - off;
        MDB_val v = {vl, (void *)(d + off)};
        off += vl;
        if (kl)
            mdb_put(txn, dbi[t], &k, &v, 0); /* a key LMDB refuses is simply not written */
    }
    int rc = mdb_txn_commit(txn);
    mdb_env_close(env);
    return rc;
}

/* Reads (and one write) over one extraction; sizes are capped so a huge declared dim is
 * skipped, not allocated. */
static void extraction_read(h2t_store *st, const h2t_extraction *e)
{
    for (uint32_t l = 0; l < e->n_layers && l < 8; l++) {
        h2t_layer_stats *ls = NULL;
        if (h2t_store_stats_get(st, e->id, l, &ls) == 0 && ls->dim != e->layers[l].dim)
            abort();
        h2t_layer_stats_destroy(ls);
        uint32_t dim = e->layers[l].dim;
        if (dim == 0 || dim > 4096)
            continue;
        float *rows = malloc((size_t)4 * dim * sizeof(float));
        if (!rows)
            continue;
        uint32_t n = e->samples_done < 4 ? e->samples_done : 4;
        for (uint32_t s = 0; s < n; s++)
            (void)h2t_store_feature_get(st, e->id, l, s, rows, dim);
        if (n)
            (void)h2t_store_layer_read(st, e->id, l, NULL, 0, n, rows, dim);
        uint32_t pick[2] = {n ? n - 1 : 0, 0};
        (void)h2t_store_layer_read(st, e->id, l, pick, 0, 2, rows, dim);
        h2t_store_reader *r = NULL;
        if (h2t_store_reader_begin(st, &r) == 0) {
            const void *view;
            uint32_t vdim, dtype;
            if (h2t_store_reader_feature(r, e->id, l, 0, &view, &vdim, &dtype) == 0) {
                if (vdim != dim)
                    abort();
                volatile uint8_t sink = 0;
                size_t bytes = (size_t)vdim * (dtype == H2T_DTYPE_F16 ? 2 : 4);
                for (size_t i = 0; i < bytes; i++)
                    sink ^= ((const uint8_t *)view)[i]; /* ASan: the view is all in bounds */
                (void)sink;
            }
            h2t_store_reader_end(r);
        }
        free(rows);
    }
    /* one more batch of one sample, merged into the stored statistics */
    if (e->n_layers && e->n_layers <= 8 && e->total_dim <= 4096 && e->samples_done < e->n_samples) {
        float buf[4096];
        const float *ptr[8];
        for (uint32_t i = 0; i < 4096; i++)
            buf[i] = (float)(i % 7) - 3.0f;
        int ok = 1;
        for (uint32_t l = 0; l < e->n_layers; l++) {
            ptr[l] = buf;
            ok &= e->layers[l].dim <= 4096;
        }
        if (ok)
            (void)h2t_store_features_write(st, e->id, e->samples_done, 1, ptr);
    }
}

static void store_read(void)
{
    h2t_store *st = NULL;
    if (h2t_store_open(dir, H2T_STORE_NOSYNC, &st) < 0)
        return;
    h2t_store_meta meta;
    (void)h2t_store_meta_get(st, &meta);

    h2t_source **srcs = NULL;
    size_t ns = 0;
    if (h2t_store_source_list(st, &srcs, &ns) == 0) {
        for (size_t i = 0; i < ns && i < 4; i++) {
            h2t_source *s = NULL;
            if (h2t_store_source_get(st, srcs[i]->id, &s) == 0) {
                uint32_t labels[16];
                uint8_t split[16];
                uint32_t n = s->n_samples < 16 ? s->n_samples : 16;
                (void)h2t_store_labels_get(st, s->id, 0, n, labels, split);
            }
            h2t_source_destroy(s);
        }
        h2t_source_list_destroy(srcs, ns);
    }
    h2t_model_rec *models = NULL;
    size_t nm = 0;
    if (h2t_store_model_list(st, &models, &nm) == 0) {
        for (size_t i = 0; i < nm && i < 4; i++) {
            h2t_model_rec m;
            (void)h2t_store_model_get(st, models[i].id, &m);
        }
        free(models);
    }
    h2t_extraction **exts = NULL;
    size_t ne = 0;
    if (h2t_store_extraction_list(st, &exts, &ne) == 0) {
        for (size_t i = 0; i < ne && i < 4; i++) {
            h2t_extraction *e = NULL;
            uint32_t id;
            if (h2t_store_extraction_find(st, exts[i]->name[0] ? exts[i]->name : "1", &id) == 0 &&
                h2t_store_extraction_get(st, id, &e) == 0)
                extraction_read(st, e);
            h2t_extraction_destroy(e);
        }
        h2t_extraction_list_destroy(exts, ne);
    }
    h2t_task **tasks = NULL;
    size_t nt = 0;
    if (h2t_store_task_list(st, &tasks, &nt) == 0) {
        for (size_t i = 0; i < nt && i < 4; i++) {
            h2t_task *t = NULL;
            if (h2t_store_task_get(st, tasks[i]->name, &t) == 0)
                for (uint32_t k = 0; k < t->n_train; k++)
                    if (t->train_labels[k] >= t->n_classes)
                        abort(); /* the decoder checks labels against the class count */
            h2t_task_destroy(t);
        }
        h2t_task_list_destroy(tasks, nt);
    }
    h2t_job **jobs = NULL;
    size_t nj = 0;
    if (h2t_store_job_list(st, &jobs, &nj) == 0) {
        for (size_t i = 0; i < nj && i < 4; i++) {
            h2t_job *j = NULL;
            (void)h2t_store_job_get(st, jobs[i]->id, &j);
            h2t_job_destroy(j);
            void *blob = NULL;
            size_t len = 0;
            if (h2t_store_result_get(st, jobs[i]->id, &blob, &len) == 0) {
                h2t_result *r = NULL;
                if (h2t_result_decode(blob, len, &r) == 0)
                    h2t_result_destroy(r);
                free(blob);
            }
        }
        if (nj)
            (void)h2t_store_job_delete(st, jobs[0]->id, 1);
        h2t_job_list_destroy(jobs, nj);
    }
    h2t_store_verify_report rep;
    (void)h2t_store_verify(st, NULL, NULL, &rep);
    (void)h2t_store_extraction_delete(st, 1, 1, NULL);
    h2t_store_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (records_put(data, size) != 0)
        return 0;
    store_read();
    return 0;
}
