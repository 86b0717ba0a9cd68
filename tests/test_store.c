/* tests/test_store.c - the LMDB store: every table round trip, every error path of
 * storage/store.h, exact statistics, f16, map growth, threads. (Raw LMDB is used only to forge
 * stores of another version or without our tables.) */
#include "common/cpu.h"
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"
#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float rndf(void)
{
    return (float)(rnd() % 2000001) / 1000000.0f - 1.0f;
}

/* a store with one source (n samples, 3 classes), one model, one extraction of the given
 * layer dims */
typedef struct fixture {
    h2t_store *st;
    uint32_t src, model, ext;
} fixture;

static void fixture_make(fixture *f, const char *dir, uint32_t n, const uint32_t *dims, uint32_t nl,
                         uint32_t dtype)
{
    ASSERT_OK(h2t_store_open(dir, H2T_STORE_CREATE | H2T_STORE_NOSYNC, &f->st));
    h2t_source s = {0};
    snprintf(s.name, sizeof(s.name), "toy");
    snprintf(s.uri, sizeof(s.uri), "npy:/x.npy");
    s.hash[0] = 7;
    s.n_samples = n;
    s.n_classes = 3;
    char *names[3] = {"cat", "dog", "eel"};
    s.class_names = names;
    uint32_t *lab = malloc(n * 4);
    uint8_t *spl = malloc(n);
    for (uint32_t i = 0; i < n; i++) {
        lab[i] = i % 3;
        spl[i] = i % 5 == 0 ? H2T_SPLIT_TEST : H2T_SPLIT_TRAIN;
    }
    s.labels = lab;
    s.split = spl;
    int reused = -1;
    ASSERT_OK(h2t_store_source_put(f->st, &s, &f->src, &reused));
    ASSERT_EQ(reused, 0);
    free(lab);
    free(spl);
    h2t_model_rec m = {0};
    snprintf(m.name, sizeof(m.name), "net");
    m.sha256[0] = 1;
    m.input_shape[1] = 3;
    ASSERT_OK(h2t_store_model_put(f->st, &m, &f->model, &reused));
    h2t_layer_info *L = calloc(nl, sizeof(*L));
    for (uint32_t i = 0; i < nl; i++) {
        snprintf(L[i].name, sizeof(L[i].name), "layer%u/out", i);
        snprintf(L[i].op, sizeof(L[i].op), "Conv");
        L[i].rank = 4;
        L[i].shape[0] = dims[i];
        L[i].shape[1] = 1;
        L[i].shape[2] = 1;
        L[i].dim = dims[i];
    }
    h2t_extraction e = {0};
    snprintf(e.name, sizeof(e.name), "toy-net");
    e.source = f->src;
    e.model = f->model;
    e.target_size = 8192;
    e.dtype = dtype;
    e.n_samples = n;
    e.n_layers = nl;
    e.layers = L;
    e.config_hash[0] = (uint8_t)(1 + dtype);
    ASSERT_OK(h2t_store_extraction_begin(f->st, &e, &f->ext, &reused));
    ASSERT_EQ(reused, 0);
    free(L);
}

/* deterministic feature value of (layer, sample, j) */
static float fval(uint32_t l, uint32_t s, uint32_t j)
{
    return (float)(l * 1000 + s) + (float)j / 1024.0f;
}

static void write_range(fixture *f, const uint32_t *dims, uint32_t nl, uint32_t first, uint32_t n)
{
    float **bufs = calloc(nl, sizeof(float *));
    for (uint32_t l = 0; l < nl; l++) {
        bufs[l] = malloc((size_t)n * dims[l] * 4);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < dims[l]; j++)
                bufs[l][(size_t)i * dims[l] + j] = fval(l, first + i, j);
    }
    ASSERT_OK(h2t_store_features_write(f->st, f->ext, first, n, (const float *const *)bufs));
    for (uint32_t l = 0; l < nl; l++)
        free(bufs[l]);
    free(bufs);
}

TEST(store_open_create_reopen)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", H2T_STORE_CREATE, &st));
    h2t_store_meta m1, m2;
    ASSERT_OK(h2t_store_meta_get(st, &m1));
    ASSERT_EQ(m1.format_version, H2T_STORE_FORMAT_VERSION);
    ASSERT(m1.created_ms > 0);
    ASSERT(m1.map_size >= m1.used_bytes && m1.used_bytes > 0);
    ASSERT_STREQ(h2t_store_dir(st), "db");
    h2t_store_close(st);
    h2t_store_close(NULL);
    ASSERT_OK(h2t_store_open("db", 0, &st));
    ASSERT_OK(h2t_store_meta_get(st, &m2));
    ASSERT(memcmp(m1.store_id, m2.store_id, 16) == 0);
    ASSERT_EQ(m1.created_ms, m2.created_ms);
    h2t_store_close(st);
    ASSERT_OK(h2t_store_open("db", H2T_STORE_RDONLY, &st));
    h2t_store_close(st);
    ASSERT_EQ(h2t_store_open("db", H2T_STORE_RDONLY | H2T_STORE_CREATE, &st), H2T_EINVAL);
}

TEST(store_open_missing)
{
    h2t_store *st = NULL;
    ASSERT_EQ(h2t_store_open("nope", 0, &st), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "nope");
    ASSERT(st == NULL);
    ASSERT_EQ(mkdir("empty", 0755), 0);
    ASSERT_EQ(h2t_store_open("empty", 0, &st), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "empty");
    ASSERT_EQ(h2t_store_open("", H2T_STORE_CREATE, &st), H2T_EINVAL);
}

TEST(store_open_not_a_store)
{
    h2t_store *st = NULL;
    /* a directory with other files: not created over */
    ASSERT_EQ(mkdir("docs", 0755), 0);
    FILE *f = fopen("docs/notes.txt", "w");
    fputs("hello", f);
    fclose(f);
    ASSERT_EQ(h2t_store_open("docs", H2T_STORE_CREATE, &st), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "docs");
    ASSERT_EQ(access("docs/data.mdb", F_OK), -1);
    /* a plain file */
    ASSERT_EQ(h2t_store_open("docs/notes.txt", H2T_STORE_CREATE, &st), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "not a directory");
    /* a data.mdb that is not LMDB */
    ASSERT_EQ(mkdir("junk", 0755), 0);
    f = fopen("junk/data.mdb", "w");
    for (int i = 0; i < 3000; i++)
        fputs("garbage!", f);
    fclose(f);
    ASSERT_EQ(h2t_store_open("junk", 0, &st), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "junk/data.mdb");
    ASSERT(st == NULL);
    /* an LMDB environment that is not ours */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_EQ(mkdir("other", 0755), 0);
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    ASSERT_EQ(mdb_env_open(env, "other", 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "things", MDB_CREATE, &dbi), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ASSERT_EQ(h2t_store_open("other", 0, &st), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "not an h2tdb store");
}

/* a creation killed between LMDB's file and the first commit: CREATE makes the store there,
 * a plain open still says what is wrong */
TEST(store_open_killed_creation)
{
    h2t_store *st = NULL;
    MDB_env *env;
    ASSERT_EQ(mkdir("half", 0755), 0);
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_open(env, "half", 0, 0644), 0);
    mdb_env_close(env);
    ASSERT_EQ(access("half/data.mdb", F_OK), 0);
    ASSERT_EQ(h2t_store_open("half", 0, &st), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "without a meta table");
    ASSERT_OK(h2t_store_open("half", H2T_STORE_CREATE, &st));
    h2t_store_meta m;
    ASSERT_OK(h2t_store_meta_get(st, &m));
    ASSERT_EQ(m.format_version, H2T_STORE_FORMAT_VERSION);
    h2t_store_close(st);
    ASSERT_OK(h2t_store_open("half", 0, &st));
    h2t_store_close(st);
}

TEST(store_open_version_mismatch)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", H2T_STORE_CREATE, &st));
    h2t_store_close(st);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    ASSERT_EQ(mdb_env_open(env, "db", 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    uint8_t ver[4];
    h2t_be32_put(ver, 99);
    MDB_val k = {14, "format_version"}, v = {4, ver};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ASSERT_EQ(h2t_store_open("db", 0, &st), H2T_EVERSION);
    ASSERT_CONTAINS(h2t_err_detail(), "version 99");
    char want[64];
    snprintf(want, sizeof(want), "versions %d to %d", H2T_STORE_FORMAT_OLDEST,
             H2T_STORE_FORMAT_VERSION);
    ASSERT_CONTAINS(h2t_err_detail(), want);
    ASSERT_EQ(h2t_store_open("db", H2T_STORE_CREATE, &st), H2T_EVERSION);
    ASSERT_EQ(h2t_store_open("db", H2T_STORE_RDONLY, &st), H2T_EVERSION);
}

TEST(store_open_truncated)
{
    uint32_t dims[2] = {256, 64};
    fixture f;
    fixture_make(&f, "db", 200, dims, 2, H2T_DTYPE_F32);
    write_range(&f, dims, 2, 0, 200);
    h2t_store_close(f.st);
    struct stat sb;
    ASSERT_EQ(stat("db/data.mdb", &sb), 0);
    ASSERT_EQ(truncate("db/data.mdb", sb.st_size / 2), 0);
    h2t_store *st = NULL;
    ASSERT_EQ(h2t_store_open("db", 0, &st), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "truncated");
    ASSERT_EQ(h2t_store_open("db", H2T_STORE_RDONLY, &st), H2T_ECORRUPT);
    /* a header page overwritten with junk */
    ASSERT_EQ(truncate("db/data.mdb", sb.st_size), 0);
    int fd = open("db/data.mdb", O_WRONLY);
    char junk[8192];
    memset(junk, 0x5a, sizeof(junk));
    ASSERT_EQ(pwrite(fd, junk, sizeof(junk), 0), (long long)sizeof(junk));
    close(fd);
    ASSERT_EQ(h2t_store_open("db", 0, &st), H2T_ECORRUPT);
}

TEST(store_open_no_permission)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", H2T_STORE_CREATE, &st));
    h2t_store_close(st);
    ASSERT_EQ(chmod("db", 0555), 0);
    ASSERT_EQ(chmod("db/data.mdb", 0444), 0);
    ASSERT_EQ(chmod(".", 0755), 0);
    if (geteuid() == 0) {
        /* root ignores modes: check the path as an unprivileged user in a child */
        ASSERT_EQ(chmod(test_tmpdir(), 0755), 0);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(3);
            h2t_store *s2 = NULL;
            int rc = h2t_store_open("db", 0, &s2);
            if (rc != H2T_EPERM || !strstr(h2t_err_detail(), "db"))
                _exit(1);
            if (h2t_store_open("db/sub", H2T_STORE_CREATE, &s2) != H2T_EPERM)
                _exit(2);
            _exit(0);
        }
        int status;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT(WIFEXITED(status));
        if (WEXITSTATUS(status) == 3) {
            fprintf(stderr, "  skipped: running as root and cannot drop to uid 65534\n");
            return;
        }
        ASSERT_EQ(WEXITSTATUS(status), 0);
    } else {
        ASSERT_EQ(h2t_store_open("db", 0, &st), H2T_EPERM);
        ASSERT_CONTAINS(h2t_err_detail(), "db");
        ASSERT_EQ(h2t_store_open("db/sub", H2T_STORE_CREATE, &st), H2T_EPERM);
    }
    chmod("db", 0755);
}

TEST(store_rdonly_refuses_writes)
{
    uint32_t dims[1] = {4};
    fixture f;
    fixture_make(&f, "db", 10, dims, 1, H2T_DTYPE_F32);
    h2t_store_close(f.st);
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", H2T_STORE_RDONLY, &st));
    float x[4] = {1, 2, 3, 4};
    const float *p[1] = {x};
    ASSERT_EQ(h2t_store_features_write(st, f.ext, 0, 1, p), H2T_EPERM);
    ASSERT_EQ(h2t_store_extraction_set_state(st, f.ext, H2T_EXT_DONE), H2T_EPERM);
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(st, f.ext, &e));
    ASSERT_EQ(e->state, H2T_EXT_RUNNING);
    h2t_extraction_destroy(e);
    h2t_store_close(st);
}

TEST(store_sources_roundtrip)
{
    uint32_t dims[1] = {4};
    fixture f;
    fixture_make(&f, "db", 50, dims, 1, H2T_DTYPE_F32);
    h2t_source *s;
    ASSERT_OK(h2t_store_source_get(f.st, f.src, &s));
    ASSERT_STREQ(s->name, "toy");
    ASSERT_STREQ(s->uri, "npy:/x.npy");
    ASSERT_EQ(s->n_samples, 50);
    ASSERT_EQ(s->n_classes, 3);
    ASSERT_STREQ(s->class_names[2], "eel");
    for (uint32_t i = 0; i < 50; i++) {
        ASSERT_EQ(s->labels[i], i % 3);
        ASSERT_EQ(s->split[i], i % 5 == 0 ? H2T_SPLIT_TEST : H2T_SPLIT_TRAIN);
    }
    /* the same hash reuses */
    uint32_t id;
    int reused;
    ASSERT_OK(h2t_store_source_put(f.st, s, &id, &reused));
    ASSERT_EQ(reused, 1);
    ASSERT_EQ(id, f.src);
    /* another hash: a new id */
    s->hash[0] = 8;
    snprintf(s->name, sizeof(s->name), "toy2");
    ASSERT_OK(h2t_store_source_put(f.st, s, &id, &reused));
    ASSERT_EQ(reused, 0);
    ASSERT_EQ(id, f.src + 1);
    /* labels in a range */
    uint32_t lab[5];
    uint8_t spl[5];
    ASSERT_OK(h2t_store_labels_get(f.st, id, 10, 5, lab, spl));
    ASSERT_EQ(lab[0], 1);
    ASSERT_EQ(lab[4], 14 % 3);
    ASSERT_EQ(spl[0], H2T_SPLIT_TEST);
    ASSERT_EQ(h2t_store_labels_get(f.st, id, 48, 5, lab, spl), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "50 samples");
    ASSERT_EQ(h2t_store_labels_get(f.st, 77, 0, 1, lab, spl), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "source 77");
    h2t_source **list;
    size_t n;
    ASSERT_OK(h2t_store_source_list(f.st, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(list[1]->name, "toy2");
    ASSERT(list[0]->labels == NULL);
    h2t_source_list_destroy(list, n);
    /* bad input */
    s->hash[0] = 9;
    s->labels[3] = 3;
    ASSERT_EQ(h2t_store_source_put(f.st, s, &id, &reused), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "sample 3");
    s->labels[3] = 0;
    s->name[0] = '\0';
    ASSERT_EQ(h2t_store_source_put(f.st, s, &id, &reused), H2T_EINVAL);
    ASSERT_EQ(h2t_store_source_get(f.st, 99, &s), H2T_ENOTFOUND);
    h2t_source_destroy(s);
    h2t_source_destroy(NULL);
    h2t_store_close(f.st);
}

TEST(store_models_roundtrip)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", H2T_STORE_CREATE, &st));
    h2t_model_rec m = {0}, g;
    snprintf(m.name, sizeof(m.name), "resnet18");
    snprintf(m.preprocess, sizeof(m.preprocess), "scale=0,1");
    m.sha256[31] = 0xab;
    m.input_shape[1] = 3;
    m.input_shape[2] = m.input_shape[3] = 224;
    uint32_t id, id2;
    int reused;
    ASSERT_OK(h2t_store_model_put(st, &m, &id, &reused));
    ASSERT_EQ(reused, 0);
    ASSERT_OK(h2t_store_model_put(st, &m, &id2, &reused));
    ASSERT_EQ(reused, 1);
    ASSERT_EQ(id, id2);
    m.sha256[0] = 1;
    ASSERT_OK(h2t_store_model_put(st, &m, &id2, &reused));
    ASSERT_EQ(id2, id + 1);
    ASSERT_OK(h2t_store_model_get(st, id, &g));
    ASSERT_STREQ(g.name, "resnet18");
    ASSERT_STREQ(g.preprocess, "scale=0,1");
    ASSERT_EQ(g.input_shape[3], 224);
    ASSERT_EQ(g.sha256[31], 0xab);
    ASSERT_EQ(h2t_store_model_get(st, 42, &g), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "model 42");
    h2t_model_rec *list;
    size_t n;
    ASSERT_OK(h2t_store_model_list(st, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(list[1].sha256[0], 1);
    free(list);
    m.name[0] = '\0';
    ASSERT_EQ(h2t_store_model_put(st, &m, &id, &reused), H2T_EINVAL);
    h2t_store_close(st);
}

TEST(store_extractions_roundtrip)
{
    uint32_t dims[3] = {16, 1, 300};
    fixture f;
    fixture_make(&f, "db", 20, dims, 3, H2T_DTYPE_F32);
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(f.st, f.ext, &e));
    ASSERT_STREQ(e->name, "toy-net");
    ASSERT_EQ(e->n_layers, 3);
    ASSERT_EQ(e->layers[2].offset, 17);
    ASSERT_EQ(e->total_dim, 317);
    ASSERT_STREQ(e->layers[1].name, "layer1/out");
    ASSERT_STREQ(e->layers[1].op, "Conv");
    ASSERT_EQ(e->layers[2].shape[0], 300);
    ASSERT_EQ(e->samples_done, 0);
    ASSERT_EQ(e->state, H2T_EXT_RUNNING);
    ASSERT_EQ(e->target_size, 8192);
    uint32_t l;
    ASSERT_OK(h2t_extraction_layer_find(e, "layer2/out", &l));
    ASSERT_EQ(l, 2);
    ASSERT_EQ(h2t_extraction_layer_find(e, "fc9", &l), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "fc9");
    /* same config hash: reused, resume point reported */
    write_range(&f, dims, 3, 0, 5);
    uint32_t id;
    int reused;
    ASSERT_OK(h2t_store_extraction_begin(f.st, e, &id, &reused));
    ASSERT_EQ(reused, 1);
    ASSERT_EQ(id, f.ext);
    /* same name, other config: EEXIST */
    e->config_hash[5] = 1;
    ASSERT_EQ(h2t_store_extraction_begin(f.st, e, &id, &reused), H2T_EEXIST);
    ASSERT_CONTAINS(h2t_err_detail(), "toy-net");
    snprintf(e->name, sizeof(e->name), "second");
    e->source = 55;
    ASSERT_EQ(h2t_store_extraction_begin(f.st, e, &id, &reused), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "source 55");
    e->source = f.src;
    e->model = 66;
    ASSERT_EQ(h2t_store_extraction_begin(f.st, e, &id, &reused), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "model 66");
    e->model = f.model;
    e->layers[1].dim = 0;
    ASSERT_EQ(h2t_store_extraction_begin(f.st, e, &id, &reused), H2T_EINVAL);
    e->layers[1].dim = 1;
    snprintf(e->layers[1].name, sizeof(e->layers[1].name), "layer0/out");
    ASSERT_EQ(h2t_store_extraction_begin(f.st, e, &id, &reused), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "twice");
    snprintf(e->layers[1].name, sizeof(e->layers[1].name), "x");
    uint32_t nl = e->n_layers;
    e->n_layers = 0;
    ASSERT_EQ(h2t_store_extraction_begin(f.st, e, &id, &reused), H2T_EINVAL);
    e->n_layers = 70000;
    ASSERT_EQ(h2t_store_extraction_begin(f.st, e, &id, &reused), H2T_EINVAL);
    e->n_layers = nl;
    ASSERT_OK(h2t_store_extraction_begin(f.st, e, &id, &reused));
    ASSERT_EQ(reused, 0);
    ASSERT_EQ(id, f.ext + 1);
    h2t_extraction_destroy(e);
    /* find by id or name */
    uint32_t got;
    ASSERT_OK(h2t_store_extraction_find(f.st, "second", &got));
    ASSERT_EQ(got, id);
    ASSERT_OK(h2t_store_extraction_find(f.st, "1", &got));
    ASSERT_EQ(got, 1);
    ASSERT_EQ(h2t_store_extraction_find(f.st, "nosuch", &got), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "nosuch");
    ASSERT_EQ(h2t_store_extraction_find(f.st, "9", &got), H2T_ENOTFOUND);
    /* state */
    ASSERT_OK(h2t_store_extraction_set_state(f.st, f.ext, H2T_EXT_DONE));
    ASSERT_EQ(h2t_store_extraction_set_state(f.st, f.ext, 9), H2T_EINVAL);
    ASSERT_EQ(h2t_store_extraction_set_state(f.st, 9, H2T_EXT_DONE), H2T_ENOTFOUND);
    h2t_extraction **list;
    size_t n;
    ASSERT_OK(h2t_store_extraction_list(f.st, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(list[0]->state, H2T_EXT_DONE);
    ASSERT_EQ(list[0]->samples_done, 5);
    ASSERT_STREQ(list[1]->name, "second");
    h2t_extraction_list_destroy(list, n);
    ASSERT_EQ(h2t_store_extraction_get(f.st, 9, &e), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "extraction 9");
    h2t_store_close(f.st);
}

TEST(store_features_roundtrip)
{
    uint32_t dims[3] = {1024, 3, 77};
    fixture f;
    fixture_make(&f, "db", 100, dims, 3, H2T_DTYPE_F32);
    /* batches of uneven sizes, including single samples */
    uint32_t cuts[] = {0, 1, 2, 9, 40, 41, 99, 100};
    for (size_t c = 0; c + 1 < sizeof(cuts) / sizeof(cuts[0]); c++)
        write_range(&f, dims, 3, cuts[c], cuts[c + 1] - cuts[c]);
    float v[1024];
    for (uint32_t l = 0; l < 3; l++)
        for (uint32_t s = 0; s < 100; s++) {
            ASSERT_OK(h2t_store_feature_get(f.st, f.ext, l, s, v, dims[l]));
            for (uint32_t j = 0; j < dims[l]; j++)
                if (v[j] != fval(l, s, j))
                    TEST_FAILF("layer %u sample %u feature %u: %g vs %g", l, s, j, v[j],
                               fval(l, s, j));
        }
    /* layer_read: a range into a wider matrix, and a scattered list */
    size_t ld = 90;
    float *m = calloc(100 * ld, 4);
    ASSERT_OK(h2t_store_layer_read(f.st, f.ext, 2, NULL, 0, 100, m, ld));
    for (uint32_t s = 0; s < 100; s++) {
        ASSERT_EQ(m[s * ld + 76], fval(2, s, 76));
        ASSERT_EQ(m[s * ld + 77], 0);
    }
    uint32_t pick[6] = {99, 0, 41, 40, 1, 2};
    ASSERT_OK(h2t_store_layer_read(f.st, f.ext, 1, pick, 0, 6, m, 3));
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(m[i * 3 + 2], fval(1, pick[i], 2));
    ASSERT_OK(h2t_store_layer_read(f.st, f.ext, 0, NULL, 95, 0, m, 1024));
    ASSERT_EQ(h2t_store_layer_read(f.st, f.ext, 2, NULL, 0, 2, m, 10), H2T_EINVAL);
    free(m);
    /* zero-copy reader */
    h2t_store_reader *r;
    ASSERT_OK(h2t_store_reader_begin(f.st, &r));
    const void *data;
    uint32_t dim, dtype;
    ASSERT_OK(h2t_store_reader_feature(r, f.ext, 0, 41, &data, &dim, &dtype));
    ASSERT_EQ(dim, 1024);
    ASSERT_EQ(dtype, H2T_DTYPE_F32);
    memcpy(v, data, 1024 * 4);
    ASSERT_EQ(v[1000], fval(0, 41, 1000));
    ASSERT_EQ(h2t_store_reader_feature(r, f.ext, 0, 100, &data, &dim, &dtype), H2T_ENOTFOUND);
    ASSERT_EQ(h2t_store_reader_feature(r, f.ext, 3, 1, &data, &dim, &dtype), H2T_ENOTFOUND);
    h2t_store_reader_end(r);
    h2t_store_reader_end(NULL);
    h2t_store_close(f.st);
}

TEST(store_features_errors)
{
    uint32_t dims[2] = {8, 4};
    fixture f;
    fixture_make(&f, "db", 10, dims, 2, H2T_DTYPE_F32);
    write_range(&f, dims, 2, 0, 4);
    h2t_layer_stats *before;
    ASSERT_OK(h2t_store_stats_get(f.st, f.ext, 0, &before));
    h2t_store_meta m0, m1;
    ASSERT_OK(h2t_store_meta_get(f.st, &m0));
    float a[8 * 3], b[4 * 3];
    for (int i = 0; i < 24; i++)
        a[i] = (float)i;
    for (int i = 0; i < 12; i++)
        b[i] = (float)-i;
    const float *p[2] = {a, b};
    /* resume only from the marker */
    ASSERT_EQ(h2t_store_features_write(f.st, f.ext, 5, 3, p), H2T_ESTATE);
    ASSERT_CONTAINS(h2t_err_detail(), "samples_done is 4");
    ASSERT_EQ(h2t_store_features_write(f.st, f.ext, 0, 3, p), H2T_ESTATE);
    ASSERT_EQ(h2t_store_features_write(f.st, f.ext, 4, 0, p), H2T_EINVAL);
    ASSERT_EQ(h2t_store_features_write(f.st, f.ext, 4, 7, p), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "n_samples 10");
    ASSERT_EQ(h2t_store_features_write(f.st, 42, 0, 1, p), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "extraction 42");
    const float *pnull[2] = {a, NULL};
    ASSERT_EQ(h2t_store_features_write(f.st, f.ext, 4, 3, pnull), H2T_EINVAL);
    /* NaN in the second layer: nothing of the batch is written, not even layer 0 */
    b[2 * 4 + 1] = NAN;
    ASSERT_EQ(h2t_store_features_write(f.st, f.ext, 4, 3, p), H2T_ENUMERIC);
    ASSERT_CONTAINS(h2t_err_detail(), "layer1/out");
    ASSERT_CONTAINS(h2t_err_detail(), "sample 6");
    ASSERT_CONTAINS(h2t_err_detail(), "NaN");
    b[2 * 4 + 1] = INFINITY;
    ASSERT_EQ(h2t_store_features_write(f.st, f.ext, 4, 3, p), H2T_ENUMERIC);
    ASSERT_CONTAINS(h2t_err_detail(), "infinite");
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(f.st, f.ext, &e));
    ASSERT_EQ(e->samples_done, 4);
    h2t_extraction_destroy(e);
    float v[8];
    ASSERT_EQ(h2t_store_feature_get(f.st, f.ext, 0, 4, v, 8), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "sample 4");
    ASSERT_CONTAINS(h2t_err_detail(), "samples_done 4");
    h2t_layer_stats *after;
    ASSERT_OK(h2t_store_stats_get(f.st, f.ext, 0, &after));
    ASSERT_EQ(after->count, before->count);
    ASSERT(memcmp(after->mean, before->mean, 8 * 8) == 0);
    h2t_layer_stats_destroy(after);
    h2t_layer_stats_destroy(before);
    ASSERT_OK(h2t_store_meta_get(f.st, &m1));
    /* wrong vector length, missing layer / extraction */
    ASSERT_EQ(h2t_store_feature_get(f.st, f.ext, 0, 1, v, 7), H2T_ESHAPE);
    ASSERT_CONTAINS(h2t_err_detail(), "8 features");
    ASSERT_EQ(h2t_store_feature_get(f.st, f.ext, 2, 1, v, 8), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "no layer 2");
    ASSERT_EQ(h2t_store_feature_get(f.st, 3, 0, 1, v, 8), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "extraction 3");
    uint32_t pick[2] = {1, 7};
    float mm[16];
    ASSERT_EQ(h2t_store_layer_read(f.st, f.ext, 0, pick, 0, 2, mm, 8), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "sample 7");
    ASSERT_EQ(h2t_store_stats_get(f.st, f.ext, 5, &after), H2T_ENOTFOUND);
    /* the failed writes are not in the time split */
    h2t_store_write_times wt;
    h2t_store_write_times_get(f.st, &wt);
    ASSERT_EQ(wt.calls, 1);
    ASSERT_EQ(wt.samples, 4);
    /* the good batch still goes in afterwards */
    b[2 * 4 + 1] = 0.5f;
    ASSERT_OK(h2t_store_features_write(f.st, f.ext, 4, 3, p));
    ASSERT_OK(h2t_store_feature_get(f.st, f.ext, 1, 6, v, 4));
    ASSERT_EQ(v[1], 0.5f);
    h2t_store_write_times_get(f.st, &wt);
    ASSERT_EQ(wt.calls, 2);
    ASSERT_EQ(wt.samples, 7);
    h2t_store_close(f.st);
}

/* h2t_store_write_times: the parts of the writes' CPU, each within the whole */
TEST(store_write_times)
{
    uint32_t dims[3] = {4096, 3, 777};
    fixture f;
    fixture_make(&f, "db", 96, dims, 3, H2T_DTYPE_F32);
    h2t_store_write_times wt;
    h2t_store_write_times_get(f.st, &wt);
    ASSERT_EQ(wt.calls, 0);
    ASSERT(wt.cpu_s == 0 && wt.wall_s == 0 && wt.commit_s == 0);
    for (uint32_t first = 0; first < 96; first += 32)
        write_range(&f, dims, 3, first, 32);
    h2t_store_write_times_get(f.st, &wt);
    ASSERT_EQ(wt.calls, 3);
    ASSERT_EQ(wt.samples, 96);
    ASSERT(wt.cpu_s > 0 && wt.wall_s > 0 && wt.commit_s > 0);
    /* 96 x 4876 floats merged into statistics and copied: neither takes no time */
    ASSERT(wt.stats_cpu_s > 0 && wt.rows_cpu_s > 0);
    ASSERT(wt.crc_cpu_s >= 0 && wt.commit_cpu_s >= 0);
    double parts = wt.stats_cpu_s + wt.rows_cpu_s + wt.crc_cpu_s + wt.commit_cpu_s;
    if (parts > wt.cpu_s * (1 + 1e-9))
        TEST_FAILF("the parts (%g s) exceed the writes' CPU (%g s)", parts, wt.cpu_s);
    h2t_store_close(f.st);
}

/* Pages of data.mdb in dir that are in the page cache (mincore over a mapping of it), of *n */
static size_t cached_pages(const char *dir, size_t *n)
{
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDONLY);
    ASSERT(fd >= 0);
    struct stat sb;
    ASSERT_EQ(fstat(fd, &sb), 0);
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = (size_t)sb.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    ASSERT(m != MAP_FAILED);
    *n = (len + ps - 1) / ps;
    unsigned char *vec = malloc(*n);
    ASSERT_EQ(mincore(m, len, vec), 0);
    size_t in = 0;
    for (size_t i = 0; i < *n; i++)
        in += vec[i] & 1;
    free(vec);
    munmap(m, len);
    close(fd);
    return in;
}

/* h2t_store_features_cache(st, 0): most of each block written leaves the page cache (a folio
 * that reaches past the block stays), and the features read back the same; by default the
 * blocks stay cached */
TEST(store_features_cache_drop)
{
    uint32_t dims[2] = {65536, 77}; /* blocks of 32 samples: 8.4 MB, 2060 pages of 4 KiB */
    for (int keep = 1; keep >= 0; keep--) {
        fixture f;
        const char *dir = keep ? "db-keep" : "db-drop";
        fixture_make(&f, dir, 64, dims, 2, H2T_DTYPE_F32);
        /* durable writes (the fixture's are not): their pages are clean after each commit */
        h2t_store_close(f.st);
        ASSERT_OK(h2t_store_open(dir, 0, &f.st));
        ASSERT_EQ(h2t_store_features_cache(f.st, keep), 1); /* the default: keep */
        for (uint32_t first = 0; first < 64; first += 32)
            write_range(&f, dims, 2, first, 32);
        size_t n, in = cached_pages(dir, &n);
        size_t blocks = 2 * (size_t)32 * (65536 + 77) * 4 / (size_t)sysconf(_SC_PAGESIZE);
        if (keep ? in < n * 9 / 10 : in + blocks * 4 / 10 > n)
            TEST_FAILF("keep %d: %zu of %zu pages cached (%zu of them the blocks')", keep, in, n,
                       blocks);
        float *v = malloc(sizeof(float) * 65536);
        for (uint32_t s = 0; s < 64; s += 21)
            for (uint32_t l = 0; l < 2; l++) {
                ASSERT_OK(h2t_store_feature_get(f.st, f.ext, l, s, v, dims[l]));
                for (uint32_t j = 0; j < dims[l]; j++)
                    if (v[j] != fval(l, s, j))
                        TEST_FAILF("layer %u sample %u feature %u", l, s, j);
            }
        free(v);
        ASSERT_EQ(h2t_store_features_cache(f.st, 1), keep);
        h2t_store_close(f.st);
    }
}

/* The statistics' definition, one column at a time (what storage/store.c's stats_col says),
 * merged into mean/m2/mn/mx (count samples so far); q: the rows' even and odd squared sums. */
static void stats_ref_batch(const float *x, uint32_t n, uint32_t dim, uint64_t count, double *mean,
                            double *m2, float *mn, float *mx, double *q)
{
    for (uint32_t j = 0; j < dim; j++) {
        double s = 0, bm2 = 0;
        float lo = count ? mn[j] : INFINITY, hi = count ? mx[j] : -INFINITY;
        for (uint32_t i = 0; i < n; i++) {
            float f = x[(size_t)i * dim + j];
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
        double na = (double)count, nb = (double)n, nt = na + nb, delta = bm - mean[j];
        mean[j] = count ? mean[j] + delta * (nb / nt) : bm;
        m2[j] = count ? m2[j] + bm2 + delta * delta * (na * nb / nt) : bm2;
        mn[j] = lo;
        mx[j] = hi;
    }
}

/* The statistics are bitwise their definition with every kernel set (AVX-512, AVX, SSE2 and the
 * scalar tail: H2T_CPU_MAX), at widths around each vector width, over batches of 32 and a
 * partial one. */
TEST(store_stats_isa_bitwise)
{
    enum { N = 77, NL = 12 };
    uint32_t dims[NL] = {1, 3, 4, 7, 8, 12, 15, 16, 17, 33, 100, 1031};
    float *x[NL];
    for (int l = 0; l < NL; l++) {
        x[l] = malloc(sizeof(float) * N * dims[l]);
        for (size_t i = 0; i < (size_t)N * dims[l]; i++) {
            uint32_t r = rnd();
            /* spread magnitudes, signed zeros and repeated values */
            x[l][i] = r % 11 == 0  ? (r % 2 ? -0.0f : 0.0f)
                      : r % 7 == 0 ? 3.5f
                                   : (rndf() - 0.5f) * (float)(1u << (r % 12));
        }
    }
    const char *levels[] = {"avx512", "avx2", "avx", "sse2"};
    for (int lv = 0; lv < 4; lv++) {
        ASSERT_EQ(setenv("H2T_CPU_MAX", levels[lv], 1), 0);
        h2t_cpu_reset();
        char dir[32];
        snprintf(dir, sizeof dir, "db-%s", levels[lv]);
        fixture f;
        fixture_make(&f, dir, N, dims, NL, H2T_DTYPE_F32);
        for (uint32_t at = 0; at < N; at += 32) {
            uint32_t n = N - at < 32 ? N - at : 32;
            const float *p[NL];
            for (int l = 0; l < NL; l++)
                p[l] = x[l] + (size_t)at * dims[l];
            ASSERT_OK(h2t_store_features_write(f.st, f.ext, at, n, p));
        }
        for (int l = 0; l < NL; l++) {
            uint32_t d = dims[l];
            double *mean = calloc(d, 8), *m2 = calloc(d, 8), q[64];
            float *mn = calloc(d, 4), *mx = calloc(d, 4);
            double nsum = 0, nmin = INFINITY, nmax = -INFINITY;
            for (uint32_t at = 0; at < N; at += 32) {
                uint32_t n = N - at < 32 ? N - at : 32;
                memset(q, 0, sizeof q);
                stats_ref_batch(x[l] + (size_t)at * d, n, d, at, mean, m2, mn, mx, q);
                for (uint32_t i = 0; i < n; i++) {
                    double nrm = sqrt(q[2 * i] + q[2 * i + 1]);
                    nsum += nrm;
                    nmin = nrm < nmin ? nrm : nmin;
                    nmax = nrm > nmax ? nrm : nmax;
                }
            }
            h2t_layer_stats *s;
            ASSERT_OK(h2t_store_stats_get(f.st, f.ext, (uint32_t)l, &s));
            ASSERT_EQ(s->count, N);
            if (memcmp(s->mean, mean, 8 * d) || memcmp(s->m2, m2, 8 * d) ||
                memcmp(s->min, mn, 4 * d) || memcmp(s->max, mx, 4 * d))
                TEST_FAILF("%s: layer %d (dim %u): statistics differ from the definition",
                           levels[lv], l, d);
            if (s->norm_min != nmin || s->norm_max != nmax || s->norm_mean != nsum / N)
                TEST_FAILF("%s: layer %d (dim %u): norms differ from the definition", levels[lv], l,
                           d);
            h2t_layer_stats_destroy(s);
            free(mean);
            free(m2);
            free(mn);
            free(mx);
        }
        h2t_store_close(f.st);
    }
    ASSERT_EQ(unsetenv("H2T_CPU_MAX"), 0);
    h2t_cpu_reset();
    for (int l = 0; l < NL; l++)
        free(x[l]);
}

/* per-feature statistics merged batch by batch equal a two-pass computation, for any split */
TEST(store_stats_exact_any_split)
{
    enum { N = 300, D = 37 };
    uint32_t dims[1] = {D};
    float *x = malloc((size_t)N * D * 4);
    for (int i = 0; i < N * D; i++) /* a large offset makes naive sum-of-squares fail */
        x[i] = 1000.0f + rndf() * (float)(1 + i % D);
    long double mean[D] = {0}, m2[D] = {0}, nsum = 0;
    float mn[D], mx[D];
    double nmin = INFINITY, nmax = 0;
    for (int j = 0; j < D; j++) {
        mn[j] = INFINITY;
        mx[j] = -INFINITY;
    }
    for (int i = 0; i < N; i++) {
        long double nr = 0;
        for (int j = 0; j < D; j++) {
            float v = x[i * D + j];
            mean[j] += v;
            nr += (long double)v * v;
            if (v < mn[j])
                mn[j] = v;
            if (v > mx[j])
                mx[j] = v;
        }
        double n1 = (double)sqrtl(nr);
        nsum += n1;
        if (n1 < nmin)
            nmin = n1;
        if (n1 > nmax)
            nmax = n1;
    }
    for (int j = 0; j < D; j++)
        mean[j] /= N;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) {
            long double d = x[i * D + j] - mean[j];
            m2[j] += d * d;
        }
    for (int split = 0; split < 4; split++) {
        char dir[32];
        snprintf(dir, sizeof(dir), "db%d", split);
        fixture f;
        fixture_make(&f, dir, N, dims, 1, H2T_DTYPE_F32);
        uint32_t at = 0;
        while (at < N) {
            uint32_t n = split == 0 ? N : split == 1 ? 1 : split == 2 ? 7 : 1 + rnd() % 50;
            if (n > N - at)
                n = N - at;
            const float *p[1] = {x + (size_t)at * D};
            ASSERT_OK(h2t_store_features_write(f.st, f.ext, at, n, p));
            at += n;
        }
        h2t_layer_stats *s;
        ASSERT_OK(h2t_store_stats_get(f.st, f.ext, 0, &s));
        ASSERT_EQ(s->count, N);
        ASSERT_EQ(s->dim, D);
        for (int j = 0; j < D; j++) {
            ASSERT_NEAR(s->mean[j], (double)mean[j], 1e-12 * 1000);
            ASSERT_NEAR(s->m2[j] / N, (double)(m2[j] / N), 1e-9 * (double)(m2[j] / N));
            ASSERT_EQ(s->min[j], mn[j]);
            ASSERT_EQ(s->max[j], mx[j]);
        }
        ASSERT_NEAR(s->norm_mean, (double)(nsum / N), 1e-9 * (double)(nsum / N));
        ASSERT_NEAR(s->norm_min, nmin, 1e-9 * nmin);
        ASSERT_NEAR(s->norm_max, nmax, 1e-9 * nmax);
        h2t_layer_stats_destroy(s);
        h2t_store_close(f.st);
    }
    free(x);
    h2t_layer_stats_destroy(NULL);
}

TEST(store_stats_empty_layer)
{
    uint32_t dims[1] = {5};
    fixture f;
    fixture_make(&f, "db", 3, dims, 1, H2T_DTYPE_F32);
    h2t_layer_stats *s;
    ASSERT_OK(h2t_store_stats_get(f.st, f.ext, 0, &s));
    ASSERT_EQ(s->count, 0);
    ASSERT_EQ(s->dim, 5);
    h2t_layer_stats_destroy(s);
    h2t_store_close(f.st);
}

TEST(store_f16)
{
    uint32_t dims[2] = {1000, 3};
    fixture f;
    fixture_make(&f, "db", 64, dims, 2, H2T_DTYPE_F16);
    float *a = malloc(64 * 1000 * 4), b[64 * 3];
    for (int i = 0; i < 64 * 1000; i++)
        a[i] = rndf() * 10;
    for (int i = 0; i < 64 * 3; i++)
        b[i] = (float)i;
    const float *p[2] = {a, b};
    ASSERT_OK(h2t_store_features_write(f.st, f.ext, 0, 32, p));
    const float *q[2] = {a + 32 * 1000, b + 32 * 3};
    ASSERT_OK(h2t_store_features_write(f.st, f.ext, 32, 32, q));
    float *m = malloc(64 * 1000 * 4);
    ASSERT_OK(h2t_store_layer_read(f.st, f.ext, 0, NULL, 0, 64, m, 1000));
    for (int i = 0; i < 64 * 1000; i++)
        if (m[i] != h2t_f16_to_f32(h2t_f32_to_f16(a[i])))
            TEST_FAILF("element %d: %g stored as %g", i, a[i], m[i]);
    h2t_store_reader *r;
    const void *data;
    uint32_t dim, dtype;
    ASSERT_OK(h2t_store_reader_begin(f.st, &r));
    ASSERT_OK(h2t_store_reader_feature(r, f.ext, 1, 40, &data, &dim, &dtype));
    ASSERT_EQ(dtype, H2T_DTYPE_F16);
    ASSERT_EQ(dim, 3);
    uint16_t h;
    memcpy(&h, (const uint8_t *)data + 4, 2);
    ASSERT_EQ(h2t_f16_to_f32(h), 40 * 3 + 2);
    h2t_store_reader_end(r);
    /* statistics come from the f32 values given */
    h2t_layer_stats *s;
    ASSERT_OK(h2t_store_stats_get(f.st, f.ext, 1, &s));
    ASSERT_EQ(s->max[2], 63 * 3 + 2);
    h2t_layer_stats_destroy(s);
    free(a);
    free(m);
    h2t_store_close(f.st);
}

TEST(store_map_grows)
{
    uint32_t dims[2] = {512, 512};
    h2t_store *st;
    ASSERT_OK(h2t_store_open_map("db", H2T_STORE_CREATE | H2T_STORE_NOSYNC, 256 << 10, &st));
    h2t_store_meta m0;
    ASSERT_OK(h2t_store_meta_get(st, &m0));
    ASSERT_LE(m0.map_size, 256 << 10);
    h2t_store_close(st);
    fixture f; /* reopens the small store */
    fixture_make(&f, "db", 2000, dims, 2, H2T_DTYPE_F32);
    for (uint32_t at = 0; at < 2000; at += 250)
        write_range(&f, dims, 2, at, 250); /* 8 MB of features into a 256 KiB map */
    h2t_store_meta m1;
    ASSERT_OK(h2t_store_meta_get(f.st, &m1));
    ASSERT_GT(m1.map_size, 8 << 20);
    float v[512];
    ASSERT_OK(h2t_store_feature_get(f.st, f.ext, 1, 1999, v, 512));
    ASSERT_EQ(v[511], fval(1, 1999, 511));
    ASSERT_OK(h2t_store_feature_get(f.st, f.ext, 0, 0, v, 512));
    ASSERT_EQ(v[3], fval(0, 0, 3));
    h2t_store_close(f.st);
    /* a second handle on the same store sees the grown map */
    ASSERT_OK(h2t_store_open("db", H2T_STORE_RDONLY, &st));
    ASSERT_OK(h2t_store_feature_get(st, 1, 1, 1500, v, 512));
    ASSERT_EQ(v[0], fval(1, 1500, 0));
    h2t_store_close(st);
}

TEST(store_tasks_roundtrip)
{
    uint32_t dims[1] = {4};
    fixture f;
    fixture_make(&f, "db", 30, dims, 1, H2T_DTYPE_F32);
    h2t_task t = {0};
    snprintf(t.name, sizeof(t.name), "animals");
    t.extraction = f.ext;
    t.n_classes = 2;
    char *names[2] = {"fur", "scales"};
    t.class_names = names;
    t.shots = 5;
    uint32_t tr[4] = {0, 1, 2, 3}, trl[4] = {0, 1, 0, 1}, te[2] = {28, 29}, tel[2] = {1, 1};
    t.n_train = 4;
    t.train = tr;
    t.train_labels = trl;
    t.n_test = 2;
    t.test = te;
    t.test_labels = tel;
    ASSERT_OK(h2t_store_task_put(f.st, &t, 0));
    ASSERT_EQ(h2t_store_task_put(f.st, &t, 0), H2T_EEXIST);
    ASSERT_CONTAINS(h2t_err_detail(), "animals");
    h2t_task *g;
    ASSERT_OK(h2t_store_task_get(f.st, "animals", &g));
    ASSERT_EQ(g->extraction, f.ext);
    ASSERT_EQ(g->n_classes, 2);
    ASSERT_STREQ(g->class_names[1], "scales");
    ASSERT_EQ(g->shots, 5);
    ASSERT_EQ(g->n_train, 4);
    ASSERT_EQ(g->n_val, 0);
    ASSERT(g->val == NULL);
    ASSERT_EQ(g->train_labels[3], 1);
    ASSERT_EQ(g->test[1], 29);
    ASSERT(g->created_ms > 0);
    h2t_task_destroy(g);
    h2t_task_destroy(NULL);
    t.shots = 1;
    ASSERT_OK(h2t_store_task_put(f.st, &t, 1));
    snprintf(t.name, sizeof(t.name), "b-task");
    ASSERT_OK(h2t_store_task_put(f.st, &t, 0));
    h2t_task **list;
    size_t n;
    ASSERT_OK(h2t_store_task_list(f.st, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(list[0]->name, "animals");
    ASSERT_EQ(list[0]->shots, 1);
    ASSERT(list[0]->train == NULL);
    ASSERT_EQ(list[0]->n_train, 4);
    h2t_task_list_destroy(list, n);
    /* bad input */
    te[1] = 30;
    ASSERT_EQ(h2t_store_task_put(f.st, &t, 1), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "sample 30");
    te[1] = 29;
    trl[2] = 2;
    ASSERT_EQ(h2t_store_task_put(f.st, &t, 1), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "label 2");
    trl[2] = 0;
    t.extraction = 9;
    ASSERT_EQ(h2t_store_task_put(f.st, &t, 1), H2T_ENOTFOUND);
    t.extraction = f.ext;
    t.n_train = 0;
    ASSERT_EQ(h2t_store_task_put(f.st, &t, 1), H2T_EINVAL);
    t.n_train = 4;
    t.n_classes = 0;
    ASSERT_EQ(h2t_store_task_put(f.st, &t, 1), H2T_EINVAL);
    ASSERT_OK(h2t_store_task_delete(f.st, "b-task"));
    ASSERT_EQ(h2t_store_task_delete(f.st, "b-task"), H2T_ENOTFOUND);
    ASSERT_EQ(h2t_store_task_get(f.st, "b-task", &g), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "b-task");
    h2t_store_close(f.st);
}

TEST(store_jobs_roundtrip)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    uint64_t a, b;
    ASSERT_OK(h2t_store_job_create(st, "spec-a", 6, &a));
    ASSERT_OK(h2t_store_job_create(st, NULL, 0, &b));
    ASSERT_EQ(b, a + 1);
    h2t_job *j;
    ASSERT_OK(h2t_store_job_get(st, a, &j));
    ASSERT_EQ(j->state, H2T_JOB_QUEUED);
    ASSERT_EQ(j->spec_len, 6);
    ASSERT(memcmp(j->spec, "spec-a", 6) == 0);
    ASSERT(j->created_ms > 0);
    j->state = H2T_JOB_RUNNING;
    j->attempts = 1;
    j->progress = 0.25;
    snprintf(j->stage, sizeof(j->stage), "cv fold 2/5");
    j->started_ms = 123;
    ASSERT_OK(h2t_store_job_update(st, j));
    h2t_job_destroy(j);
    ASSERT_OK(h2t_store_job_get(st, a, &j));
    ASSERT_EQ(j->state, H2T_JOB_RUNNING);
    ASSERT_STREQ(j->stage, "cv fold 2/5");
    ASSERT_NEAR(j->progress, 0.25, 0);
    ASSERT_EQ(j->spec_len, 6); /* update keeps the spec */
    h2t_job_destroy(j);
    void *blob;
    size_t len;
    ASSERT_EQ(h2t_store_result_get(st, a, &blob, &len), H2T_ENOTFOUND);
    ASSERT_EQ(h2t_store_job_finish(st, a, H2T_JOB_DONE, NULL, NULL, 0), H2T_EINVAL);
    ASSERT_EQ(h2t_store_job_finish(st, a, H2T_JOB_RUNNING, NULL, "x", 1), H2T_EINVAL);
    ASSERT_OK(h2t_store_job_finish(st, a, H2T_JOB_DONE, NULL, "result!", 7));
    ASSERT_OK(h2t_store_result_get(st, a, &blob, &len));
    ASSERT_EQ(len, 7);
    ASSERT(memcmp(blob, "result!", 7) == 0);
    free(blob);
    ASSERT_OK(h2t_store_job_finish(st, b, H2T_JOB_FAILED, "out of memory", NULL, 0));
    h2t_job **list;
    size_t n;
    ASSERT_OK(h2t_store_job_list(st, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_EQ(list[0]->state, H2T_JOB_DONE);
    ASSERT_NEAR(list[0]->progress, 1.0, 0);
    ASSERT_STREQ(list[0]->stage, ""); /* done: the last running stage does not stay */
    ASSERT(list[0]->finished_ms > 0);
    ASSERT_EQ(list[1]->state, H2T_JOB_FAILED);
    ASSERT_STREQ(list[1]->error, "out of memory");
    h2t_job_list_destroy(list, n);
    ASSERT_EQ(h2t_store_job_get(st, 77, &j), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "job 77");
    h2t_job jj = {0};
    jj.id = 77;
    ASSERT_EQ(h2t_store_job_update(st, &jj), H2T_ENOTFOUND);
    ASSERT_EQ(h2t_store_job_finish(st, 77, H2T_JOB_CANCELLED, NULL, NULL, 0), H2T_ENOTFOUND);
    h2t_store_close(st);
    /* ids are never reused after reopening */
    ASSERT_OK(h2t_store_open("db", 0, &st));
    uint64_t c;
    ASSERT_OK(h2t_store_job_create(st, "z", 1, &c));
    ASSERT_EQ(c, b + 1);
    h2t_store_close(st);
}

/* readers on several threads while one thread writes through map growth */
typedef struct thr_arg {
    fixture *f;
    uint32_t dim;
    atomic_int *stop;
    int errors, reads;
} thr_arg;

static void *reader_thread(void *p)
{
    thr_arg *a = p;
    float *v = malloc(a->dim * 4);
    while (!atomic_load(a->stop)) {
        h2t_extraction *e;
        if (h2t_store_extraction_get(a->f->st, a->f->ext, &e) != 0) {
            a->errors++;
            break;
        }
        uint32_t done = e->samples_done;
        h2t_extraction_destroy(e);
        if (!done)
            continue;
        uint32_t s = (uint32_t)(a->reads * 7919u) % done;
        if (h2t_store_feature_get(a->f->st, a->f->ext, 0, s, v, a->dim) != 0 ||
            v[a->dim - 1] != fval(0, s, a->dim - 1))
            a->errors++;
        a->reads++;
    }
    free(v);
    return NULL;
}

TEST(store_threads_read_while_writing)
{
    uint32_t dims[1] = {1024};
    fixture f;
    ASSERT_OK(h2t_store_open_map("db", H2T_STORE_CREATE | H2T_STORE_NOSYNC, 256 << 10, &f.st));
    h2t_store_close(f.st);
    fixture_make(&f, "db", 1200, dims, 1, H2T_DTYPE_F32);
    atomic_int stop = 0;
    thr_arg args[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (thr_arg){&f, 1024, &stop, 0, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, reader_thread, &args[i]), 0);
    }
    for (uint32_t at = 0; at < 1200; at += 40)
        write_range(&f, dims, 1, at, 40);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(args[i].errors, 0);
    }
    h2t_store_meta m;
    ASSERT_OK(h2t_store_meta_get(f.st, &m));
    ASSERT_GT(m.map_size, 4 << 20);
    h2t_store_close(f.st);
}

/* tiny batches are merged into larger blocks: one overflow page per 4 KB row would double the
 * store */
TEST(store_small_batches_stay_compact)
{
    uint32_t dims[2] = {1024, 5};
    fixture f;
    fixture_make(&f, "db", 1200, dims, 2, H2T_DTYPE_F32);
    h2t_store_meta m0, m1;
    ASSERT_OK(h2t_store_meta_get(f.st, &m0));
    for (uint32_t s = 0; s < 1200; s++)
        write_range(&f, dims, 2, s, 1);
    ASSERT_OK(h2t_store_meta_get(f.st, &m1));
    double raw = 1200.0 * (1024 + 5) * 4;
    double ratio = (double)(m1.used_bytes - m0.used_bytes) / raw;
    fprintf(stderr, "  1200 single-sample batches: %.3f bytes per raw byte\n", ratio);
    ASSERT(ratio < 1.4); /* 2.0 and more without merging */
    float *m = malloc(400 * 1024 * 4);
    ASSERT_OK(h2t_store_layer_read(f.st, f.ext, 0, NULL, 0, 400, m, 1024));
    for (uint32_t s = 0; s < 400; s++)
        ASSERT_EQ(m[s * 1024 + 1023], fval(0, s, 1023));
    uint32_t pick[4] = {399, 0, 200, 31};
    ASSERT_OK(h2t_store_layer_read(f.st, f.ext, 1, pick, 0, 4, m, 5));
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(m[i * 5 + 4], fval(1, pick[i], 4));
    free(m);
    h2t_store_close(f.st);
}

/* overwrite one value of a table with raw LMDB */
static void raw_put(const char *dir, const char *table, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    ASSERT_EQ(mdb_env_open(env, dir, 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, table, 0, &dbi), 0);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

TEST(store_damaged_records)
{
    uint32_t dims[2] = {16, 4};
    fixture f;
    fixture_make(&f, "db", 20, dims, 2, H2T_DTYPE_F32);
    write_range(&f, dims, 2, 0, 10);
    h2t_store_close(f.st);
    /* a packed feature block whose size is not a whole number of samples: every layer's
     * rows are in it */
    uint8_t fk[10];
    h2t_be32_put(fk, f.ext);
    h2t_be16_put(fk + 4, 0xFFFF);
    h2t_be32_put(fk + 6, 0);
    raw_put("db", "features", fk, 10, "12345", 5);
    /* statistics of the wrong size */
    h2t_be16_put(fk + 4, 0);
    raw_put("db", "stats", fk, 6, "xyz", 3);
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", 0, &st));
    float v[16];
    ASSERT_EQ(h2t_store_feature_get(st, f.ext, 0, 3, v, 16), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "packed feature block");
    ASSERT_EQ(h2t_store_feature_get(st, f.ext, 1, 3, v, 4), H2T_ECORRUPT);
    h2t_layer_stats *s;
    ASSERT_EQ(h2t_store_stats_get(st, f.ext, 0, &s), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "statistics");
    h2t_store_close(st);
    /* a damaged extraction record */
    uint8_t ek[4];
    h2t_be32_put(ek, f.ext);
    raw_put("db", "extractions", ek, 4, "garbage", 7);
    ASSERT_OK(h2t_store_open("db", 0, &st));
    h2t_extraction *e;
    ASSERT_EQ(h2t_store_extraction_get(st, f.ext, &e), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "extractions");
    h2t_extraction **list;
    size_t n;
    ASSERT_EQ(h2t_store_extraction_list(st, &list, &n), H2T_ECORRUPT);
    ASSERT_EQ(h2t_store_feature_get(st, f.ext, 1, 3, v, 4), H2T_ECORRUPT);
    /* other tables still work */
    h2t_source *src;
    ASSERT_OK(h2t_store_source_get(st, f.src, &src));
    h2t_source_destroy(src);
    h2t_store_close(st);
}

/* the F16C hardware path (when the CPU has it) and the software path store the same bits */
TEST(store_f16_paths_agree)
{
    enum { N = 4, D = 37 };
    float x[N * D];
    const float edge[] = {0.0f,     -0.0f,    1.0f,    -1.5f,    65504.0f, -65504.0f,
                          65519.0f, 6.0e-8f,  3.0e-8f, 1.0e-10f, 6.1e-5f,  0.333333f,
                          2049.0f,  -2051.0f, 1.0e-4f, 12345.67f};
    for (int i = 0; i < N * D; i++)
        x[i] = i < (int)(sizeof(edge) / sizeof(edge[0])) ? edge[i] : rndf() * 100.0f;
    uint32_t dims[1] = {D};
    float got[2][N * D];
    for (int path = 0; path < 2; path++) {
        if (path == 1)
            setenv("H2T_NO_F16C", "1", 1);
        char dir[16];
        snprintf(dir, sizeof(dir), "db%d", path);
        fixture f;
        fixture_make(&f, dir, 2 * N, dims, 1, H2T_DTYPE_F16);
        const float *p[1] = {x};
        ASSERT_OK(h2t_store_features_write(f.st, f.ext, 0, N, p));
        ASSERT_OK(h2t_store_layer_read(f.st, f.ext, 0, NULL, 0, N, got[path], D));
        /* a value that would become infinite in f16 is refused, naming it */
        float big[D];
        for (int j = 0; j < D; j++)
            big[j] = 1.0f;
        big[5] = 65520.0f;
        const float *q[1] = {big};
        ASSERT_EQ(h2t_store_features_write(f.st, f.ext, N, 1, q), H2T_ENUMERIC);
        ASSERT_CONTAINS(h2t_err_detail(), "feature 5");
        ASSERT_CONTAINS(h2t_err_detail(), "f16 range");
        big[5] = -1e9f;
        ASSERT_EQ(h2t_store_features_write(f.st, f.ext, N, 1, q), H2T_ENUMERIC);
        big[5] = 65519.0f;
        ASSERT_OK(h2t_store_features_write(f.st, f.ext, N, 1, q));
        h2t_store_close(f.st);
        unsetenv("H2T_NO_F16C");
    }
    for (int i = 0; i < N * D; i++) {
        float want = h2t_f16_to_f32(h2t_f32_to_f16(x[i]));
        if (memcmp(&got[0][i], &want, 4) || memcmp(&got[1][i], &want, 4))
            TEST_FAILF("value %d = %g: hardware path %g, software path %g, want %g", i, x[i],
                       got[0][i], got[1][i], want);
    }
}

/* The statistics as the format 1 writer computed them, kept here as the definition: per
 * batch, pass 1 (sums, min/max, each row's squared norm with even features in q0 and odd ones
 * in q1), pass 2 (squared deviations from the batch mean), then Chan et al.'s merge. */
typedef struct ref_stats {
    uint64_t count;
    double norm_sum, norm_min, norm_max;
    double *mean, *m2;
    float *mn, *mx;
} ref_stats;

static void ref_merge(ref_stats *r, const float *x, uint32_t n, uint32_t dim)
{
    double *bmean = calloc(dim, 8), *bm2 = calloc(dim, 8);
    if (r->count == 0)
        for (uint32_t j = 0; j < dim; j++) {
            r->mn[j] = INFINITY;
            r->mx[j] = -INFINITY;
        }
    for (uint32_t i = 0; i < n; i++) {
        const float *row = x + (size_t)i * dim;
        double q0 = 0, q1 = 0;
        uint32_t j = 0;
        for (; j + 1 < dim; j += 2) {
            float f0 = row[j], f1 = row[j + 1];
            bmean[j] += f0;
            bmean[j + 1] += f1;
            q0 += (double)f0 * f0;
            q1 += (double)f1 * f1;
            r->mn[j] = f0 < r->mn[j] ? f0 : r->mn[j];
            r->mx[j] = f0 > r->mx[j] ? f0 : r->mx[j];
            r->mn[j + 1] = f1 < r->mn[j + 1] ? f1 : r->mn[j + 1];
            r->mx[j + 1] = f1 > r->mx[j + 1] ? f1 : r->mx[j + 1];
        }
        for (; j < dim; j++) {
            float f = row[j];
            bmean[j] += f;
            q0 += (double)f * f;
            r->mn[j] = f < r->mn[j] ? f : r->mn[j];
            r->mx[j] = f > r->mx[j] ? f : r->mx[j];
        }
        double nrm = sqrt(q0 + q1);
        r->norm_sum += nrm;
        if (nrm < r->norm_min)
            r->norm_min = nrm;
        if (nrm > r->norm_max)
            r->norm_max = nrm;
    }
    for (uint32_t j = 0; j < dim; j++)
        bmean[j] /= n;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++) {
            double d = x[(size_t)i * dim + j] - bmean[j];
            bm2[j] += d * d;
        }
    double na = (double)r->count, nb = (double)n, nt = na + nb;
    for (uint32_t j = 0; j < dim; j++) {
        double delta = bmean[j] - r->mean[j];
        r->mean[j] = r->count ? r->mean[j] + delta * (nb / nt) : bmean[j];
        r->m2[j] = r->count ? r->m2[j] + bm2[j] + delta * delta * (na * nb / nt) : bm2[j];
    }
    r->count += n;
    free(bmean);
    free(bm2);
}

/* the store's statistics are bitwise those of the definition above (the vectorised merge
 * changes no rounding), for widths around the vector width, signed zeros, ties and magnitudes
 * far apart, over uneven batches */
TEST(store_stats_bitwise_definition)
{
    enum { N = 157, NL = 10 };
    const uint32_t dims[NL] = {1, 2, 3, 4, 5, 7, 8, 9, 37, 130};
    float *x[NL];
    ref_stats r[NL];
    for (uint32_t l = 0; l < NL; l++) {
        x[l] = malloc((size_t)N * dims[l] * 4);
        for (uint32_t i = 0; i < N * dims[l]; i++) {
            /* exponents 2^-30..2^30 or 2^-2..2^2: sums and squares round, so a reordering
             * shows */
            uint32_t k = rnd() % 16, span = l % 2 ? 5 : 61;
            x[l][i] = k == 0   ? 0.0f
                      : k == 1 ? -0.0f
                      : k == 2 ? 3.0f /* ties */
                      : k == 3 ? 1000.0f + rndf()
                               : ldexpf(rndf(), (int)(rnd() % span) - (int)(span / 2));
        }
        r[l] = (ref_stats){0,
                           0,
                           INFINITY,
                           -INFINITY,
                           calloc(dims[l], 8),
                           calloc(dims[l], 8),
                           calloc(dims[l], 4),
                           calloc(dims[l], 4)};
    }
    fixture f;
    fixture_make(&f, "db", N, dims, NL, H2T_DTYPE_F32);
    for (uint32_t at = 0; at < N;) {
        uint32_t n = 1 + rnd() % 40;
        if (n > N - at)
            n = N - at;
        const float *p[NL];
        for (uint32_t l = 0; l < NL; l++) {
            p[l] = x[l] + (size_t)at * dims[l];
            ref_merge(&r[l], p[l], n, dims[l]);
        }
        ASSERT_OK(h2t_store_features_write(f.st, f.ext, at, n, p));
        at += n;
        for (uint32_t l = 0; l < NL; l++) {
            h2t_layer_stats *s;
            ASSERT_OK(h2t_store_stats_get(f.st, f.ext, l, &s));
            ASSERT_EQ(s->count, r[l].count);
            double nm = r[l].norm_sum / (double)r[l].count;
            if (memcmp(s->mean, r[l].mean, 8 * dims[l]) || memcmp(s->m2, r[l].m2, 8 * dims[l]) ||
                memcmp(s->min, r[l].mn, 4 * dims[l]) || memcmp(s->max, r[l].mx, 4 * dims[l]) ||
                memcmp(&s->norm_mean, &nm, 8) || memcmp(&s->norm_min, &r[l].norm_min, 8) ||
                memcmp(&s->norm_max, &r[l].norm_max, 8))
                TEST_FAILF("layer %u (dim %u) after sample %u: statistics differ from the "
                           "definition",
                           l, dims[l], at);
            h2t_layer_stats_destroy(s);
        }
    }
    h2t_store_close(f.st);
    for (uint32_t l = 0; l < NL; l++) {
        free(x[l]);
        free(r[l].mean);
        free(r[l].m2);
        free(r[l].mn);
        free(r[l].mx);
    }
}

/* Turn a store of this build into what a format 2 build wrote: no checksum trailers on the
 * packed blocks (4 bytes a layer) and statistics (4 bytes), no checksums flag on the
 * extraction record (its last 4 bytes), format version 2. */
static void to_format2(const char *dir, uint32_t ext, uint32_t nl)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[3];
    static const char *const names[3] = {"features", "stats", "extractions"};
    const size_t cut[3] = {(size_t)4 * nl, 4, 4};
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    ASSERT_EQ(mdb_env_open(env, dir, 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    for (int t = 0; t < 3; t++) {
        ASSERT_EQ(mdb_dbi_open(txn, names[t], 0, &dbi[t]), 0);
        enum { MAXV = 256 };
        uint8_t *keys[MAXV], *vals[MAXV];
        size_t klen[MAXV], vlen[MAXV], nv = 0;
        MDB_cursor *cur;
        MDB_val k, v;
        ASSERT_EQ(mdb_cursor_open(txn, dbi[t], &cur), 0);
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            ASSERT(nv < MAXV);
            ASSERT_EQ(h2t_be32_get(k.mv_data), ext);
            ASSERT(v.mv_size > cut[t]);
            keys[nv] = malloc(k.mv_size);
            memcpy(keys[nv], k.mv_data, k.mv_size);
            klen[nv] = k.mv_size;
            vlen[nv] = v.mv_size - cut[t];
            vals[nv] = malloc(vlen[nv]);
            memcpy(vals[nv++], v.mv_data, v.mv_size - cut[t]);
        }
        mdb_cursor_close(cur);
        for (size_t i = 0; i < nv; i++) {
            k = (MDB_val){klen[i], keys[i]};
            v = (MDB_val){vlen[i], vals[i]};
            ASSERT_EQ(mdb_put(txn, dbi[t], &k, &v, 0), 0);
            free(keys[i]);
            free(vals[i]);
        }
    }
    MDB_dbi meta;
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    uint8_t ver[4];
    h2t_be32_put(ver, 2);
    MDB_val k = {14, "format_version"}, v = {4, ver};
    ASSERT_EQ(mdb_put(txn, meta, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Turn a format 2 store into what a format 1 build wrote: every packed block becomes one block
 * per layer (layer `whole` gets a single block over all samples, as format 1 merged small
 * blocks), and the format version becomes 1. */
static void to_format1(const char *dir, uint32_t ext, const uint32_t *dims, uint32_t nl,
                       uint32_t whole)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi feat, meta;
    MDB_cursor *cur;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    ASSERT_EQ(mdb_env_open(env, dir, 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "features", 0, &feat), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    uint32_t total = 0;
    for (uint32_t l = 0; l < nl; l++)
        total += dims[l];
    /* collect the packed blocks first (puts would move the cursor's pages) */
    enum { MAXB = 64 };
    uint32_t first[MAXB], cnt[MAXB], nb = 0, all = 0;
    uint8_t *copy[MAXB];
    ASSERT_EQ(mdb_cursor_open(txn, feat, &cur), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ASSERT_EQ(k.mv_size, 10);
        ASSERT_EQ(h2t_be32_get(k.mv_data), ext);
        ASSERT_EQ(h2t_be16_get((uint8_t *)k.mv_data + 4), 0xFFFF); /* only packed blocks */
        ASSERT(nb < MAXB);
        first[nb] = h2t_be32_get((uint8_t *)k.mv_data + 6);
        ASSERT_EQ(v.mv_size % ((size_t)total * 4), 0);
        cnt[nb] = (uint32_t)(v.mv_size / ((size_t)total * 4));
        ASSERT_EQ(first[nb], all);
        copy[nb] = malloc(v.mv_size);
        memcpy(copy[nb], v.mv_data, v.mv_size);
        all += cnt[nb++];
    }
    mdb_cursor_close(cur);
    uint8_t key[10];
    h2t_be32_put(key, ext);
    float *whole_rows = malloc((size_t)all * dims[whole] * 4);
    for (uint32_t b = 0; b < nb; b++) {
        h2t_be16_put(key + 4, 0xFFFF);
        h2t_be32_put(key + 6, first[b]);
        k = (MDB_val){10, key};
        ASSERT_EQ(mdb_del(txn, feat, &k, NULL), 0);
        size_t off = 0;
        for (uint32_t l = 0; l < nl; l++) {
            const uint8_t *rows = copy[b] + (size_t)cnt[b] * off * 4;
            size_t bytes = (size_t)cnt[b] * dims[l] * 4;
            off += dims[l];
            if (l == whole) {
                memcpy(whole_rows + (size_t)first[b] * dims[l], rows, bytes);
                continue;
            }
            h2t_be16_put(key + 4, (uint16_t)l);
            k = (MDB_val){10, key};
            v = (MDB_val){bytes, (void *)rows};
            ASSERT_EQ(mdb_put(txn, feat, &k, &v, MDB_NOOVERWRITE), 0);
        }
        free(copy[b]);
    }
    h2t_be16_put(key + 4, (uint16_t)whole);
    h2t_be32_put(key + 6, 0);
    k = (MDB_val){10, key};
    v = (MDB_val){(size_t)all * dims[whole] * 4, whole_rows};
    ASSERT_EQ(mdb_put(txn, feat, &k, &v, MDB_NOOVERWRITE), 0);
    free(whole_rows);
    uint8_t ver[4];
    h2t_be32_put(ver, 1);
    k = (MDB_val){14, "format_version"};
    v = (MDB_val){4, ver};
    ASSERT_EQ(mdb_put(txn, meta, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* every layer, every sample, through all three read paths, against fval */
static void check_all(h2t_store *st, uint32_t ext, const uint32_t *dims, uint32_t nl, uint32_t n)
{
    float *m = malloc((size_t)n * 1024 * 4);
    h2t_store_reader *r;
    ASSERT_OK(h2t_store_reader_begin(st, &r));
    for (uint32_t l = 0; l < nl; l++) {
        ASSERT_OK(h2t_store_layer_read(st, ext, l, NULL, 0, n, m, dims[l]));
        for (uint32_t s = 0; s < n; s++)
            for (uint32_t j = 0; j < dims[l]; j++)
                if (m[(size_t)s * dims[l] + j] != fval(l, s, j))
                    TEST_FAILF("layer %u sample %u feature %u: %g vs %g", l, s, j,
                               m[(size_t)s * dims[l] + j], fval(l, s, j));
        uint32_t pick[3] = {n - 1, 0, n / 2};
        ASSERT_OK(h2t_store_layer_read(st, ext, l, pick, 0, 3, m, dims[l]));
        for (int i = 0; i < 3; i++)
            ASSERT_EQ(m[(size_t)i * dims[l] + dims[l] - 1], fval(l, pick[i], dims[l] - 1));
        const void *data;
        uint32_t dim, dtype;
        ASSERT_OK(h2t_store_reader_feature(r, ext, l, n - 1, &data, &dim, &dtype));
        ASSERT_EQ(dim, dims[l]);
        float last;
        memcpy(&last, (const float *)data + dim - 1, 4);
        ASSERT_EQ(last, fval(l, n - 1, dim - 1));
        ASSERT_EQ(h2t_store_reader_feature(r, ext, l, n, &data, &dim, &dtype), H2T_ENOTFOUND);
    }
    h2t_store_reader_end(r);
    free(m);
}

/* A format 1 store (one block per layer and batch, as older builds write) reads bit-exact,
 * read-only opening leaves it format 1, the first feature write resumes it with packed blocks
 * and makes it format 2, and both kinds of blocks then read together. */
TEST(store_format1_reads_and_resumes)
{
    const uint32_t dims[4] = {300, 7, 1024, 5};
    fixture f;
    fixture_make(&f, "db", 100, dims, 4, H2T_DTYPE_F32);
    uint32_t cuts[] = {0, 10, 40, 41, 70};
    for (size_t c = 0; c + 1 < sizeof(cuts) / sizeof(cuts[0]); c++)
        write_range(&f, dims, 4, cuts[c], cuts[c + 1] - cuts[c]);
    h2t_layer_stats *before;
    ASSERT_OK(h2t_store_stats_get(f.st, f.ext, 2, &before));
    h2t_store_meta meta;
    ASSERT_OK(h2t_store_meta_get(f.st, &meta));
    ASSERT_EQ(meta.format_version, H2T_STORE_FORMAT_VERSION);
    h2t_store_close(f.st);
    to_format2("db", f.ext, 4);
    to_format1("db", f.ext, dims, 4, 1);

    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", H2T_STORE_RDONLY, &st));
    ASSERT_OK(h2t_store_meta_get(st, &meta));
    ASSERT_EQ(meta.format_version, 1);
    check_all(st, f.ext, dims, 4, 70);
    h2t_store_close(st);

    ASSERT_OK(h2t_store_open("db", 0, &st));
    ASSERT_OK(h2t_store_meta_get(st, &meta));
    ASSERT_EQ(meta.format_version, 1); /* opening for writing changes nothing */
    f.st = st;
    write_range(&f, dims, 4, 70, 3);
    write_range(&f, dims, 4, 73, 27);
    ASSERT_OK(h2t_store_meta_get(st, &meta));
    ASSERT_EQ(meta.format_version, H2T_STORE_FORMAT_VERSION);
    check_all(st, f.ext, dims, 4, 100);
    h2t_layer_stats *after;
    ASSERT_OK(h2t_store_stats_get(st, f.ext, 2, &after));
    ASSERT_EQ(after->count, 100);
    ASSERT_EQ(before->count, 70);
    ASSERT_EQ(after->min[5], fval(2, 0, 5));
    ASSERT_EQ(after->max[5], fval(2, 99, 5));
    h2t_layer_stats_destroy(before);
    h2t_layer_stats_destroy(after);
    h2t_store_close(st);

    /* a damaged format 1 block is named as such */
    uint8_t fk[10];
    h2t_be32_put(fk, f.ext);
    h2t_be16_put(fk + 4, 0);
    h2t_be32_put(fk + 6, 0);
    raw_put("db", "features", fk, 10, "12345", 5);
    ASSERT_OK(h2t_store_open("db", 0, &st));
    float v[300];
    ASSERT_EQ(h2t_store_feature_get(st, f.ext, 0, 3, v, 300), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "feature block of layer 0");
    ASSERT_OK(h2t_store_feature_get(st, f.ext, 0, 80, v, 300)); /* a packed one */
    ASSERT_EQ(v[299], fval(0, 80, 299));
    h2t_store_close(st);
}

/* A full disk is "no space left on device" naming the store (LMDB reports a short write as
 * EIO): the store sits on a 1 MiB tmpfs, mounted in a mount namespace of a child process.
 * Where no namespace and tmpfs can be had (no privilege), the test says so and passes. */
TEST(store_disk_full_named)
{
    ASSERT_EQ(mkdir("fs", 0755), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount("h2t-test", "fs", "tmpfs", 0, "size=1m") != 0)
            _exit(77);
        fixture f;
        const uint32_t dims[1] = {4096};
        fixture_make(&f, "fs/st", 512, dims, 1, H2T_DTYPE_F32);
        float *buf = calloc(16 * 4096, sizeof(float));
        const float *layers[1] = {buf};
        int rc = 0;
        for (uint32_t first = 0; first < 512 && rc == 0; first += 16) {
            for (size_t i = 0; i < 16 * 4096; i++)
                buf[i] = (float)(first + i);
            rc = h2t_store_features_write(f.st, f.ext, first, 16, layers);
        }
        if (rc != H2T_ENOSPC || !strstr(h2t_err_detail(), "no space left on device") ||
            !strstr(h2t_err_detail(), "fs/st")) {
            fprintf(stderr, "  disk full: %d %s\n", rc, h2t_err_detail());
            _exit(1);
        }
        /* nothing half-written: the marker agrees with the features present */
        h2t_extraction *e = NULL;
        if (h2t_store_extraction_get(f.st, f.ext, &e) < 0 || e->samples_done % 16 != 0)
            _exit(2);
        h2t_extraction_destroy(e);
        free(buf);
        h2t_store_close(f.st);
        _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        fprintf(stderr, "  (no tmpfs in a mount namespace here: not checked)\n");
        return;
    }
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* flip one byte at offset off of the value under key in table */
static void raw_flip(const char *dir, const char *table, const void *key, size_t klen, size_t off)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    ASSERT_EQ(mdb_env_open(env, dir, 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, table, 0, &dbi), 0);
    MDB_val k = {klen, (void *)key}, v;
    ASSERT_EQ(mdb_get(txn, dbi, &k, &v), 0);
    ASSERT(off < v.mv_size);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[off] ^= 0x40;
    v.mv_data = copy;
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

/* A flipped byte in a feature block or a statistics record is an error naming the extraction,
 * the layer and the samples, on every read path: never values (a flip gave 932.5 in a layer
 * whose maximum is 5.09). The other layers of the block still read. */
TEST(store_checksums_catch_damage)
{
    uint32_t dims[2] = {16, 4};
    fixture f;
    fixture_make(&f, "db", 40, dims, 2, H2T_DTYPE_F32);
    write_range(&f, dims, 2, 0, 20);
    write_range(&f, dims, 2, 20, 20);
    h2t_extraction *e = NULL;
    ASSERT_OK(h2t_store_extraction_get(f.st, f.ext, &e));
    ASSERT_EQ(e->checksums, 1);
    h2t_extraction_destroy(e);
    h2t_store_close(f.st);
    /* small batches share one block (samples 0..39): a byte of layer 1's rows, after layer 0's */
    uint8_t fk[10];
    h2t_be32_put(fk, f.ext);
    h2t_be16_put(fk + 4, 0xFFFF);
    h2t_be32_put(fk + 6, 0);
    raw_flip("db", "features", fk, 10, (size_t)40 * 16 * 4 + 5);
    uint8_t sk[6];
    h2t_be32_put(sk, f.ext);
    h2t_be16_put(sk + 4, 0);
    raw_flip("db", "stats", sk, 6, 100);

    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", 0, &st));
    float v[16 * 40];
    ASSERT_EQ(h2t_store_feature_get(st, f.ext, 1, 25, v, 4), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "layer 1 'layer1/out' samples 0..39");
    ASSERT_CONTAINS(h2t_err_detail(), "toy-net");
    ASSERT_CONTAINS(h2t_err_detail(), "checksum");
    ASSERT_EQ(h2t_store_layer_read(st, f.ext, 1, NULL, 0, 40, v, 4), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "samples 0..39");
    h2t_store_reader *r;
    ASSERT_OK(h2t_store_reader_begin(st, &r));
    const void *data;
    uint32_t dim, dtype;
    ASSERT_EQ(h2t_store_reader_feature(r, f.ext, 1, 39, &data, &dim, &dtype), H2T_ECORRUPT);
    h2t_store_reader_end(r);
    /* the block's other layer still reads */
    ASSERT_OK(h2t_store_layer_read(st, f.ext, 0, NULL, 0, 40, v, 16));
    ASSERT(v[16 * 39 + 3] == fval(0, 39, 3));
    h2t_layer_stats *ls;
    ASSERT_EQ(h2t_store_stats_get(st, f.ext, 0, &ls), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "statistics of extraction");
    ASSERT_CONTAINS(h2t_err_detail(), "checksum");
    ASSERT_OK(h2t_store_stats_get(st, f.ext, 1, &ls));
    h2t_layer_stats_destroy(ls);
    h2t_store_close(st);
}

/* A store written by a format 2 build (no checksums) reads as it is, and its extraction resumes
 * unchecked (the same layout throughout); the store becomes format 3. */
TEST(store_format2_reads_and_resumes_unchecked)
{
    const uint32_t dims[2] = {10, 3};
    fixture f;
    fixture_make(&f, "db", 50, dims, 2, H2T_DTYPE_F32);
    write_range(&f, dims, 2, 0, 30);
    h2t_store_close(f.st);
    to_format2("db", f.ext, 2);
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", 0, &st));
    h2t_store_meta meta;
    ASSERT_OK(h2t_store_meta_get(st, &meta));
    ASSERT_EQ(meta.format_version, 2);
    h2t_extraction *e = NULL;
    ASSERT_OK(h2t_store_extraction_get(st, f.ext, &e));
    ASSERT_EQ(e->checksums, 0);
    h2t_extraction_destroy(e);
    f.st = st;
    write_range(&f, dims, 2, 30, 20);
    float v[50 * 10];
    ASSERT_OK(h2t_store_layer_read(st, f.ext, 0, NULL, 0, 50, v, 10));
    for (uint32_t i = 0; i < 50; i++)
        ASSERT(v[i * 10 + 7] == fval(0, i, 7));
    h2t_layer_stats *ls;
    ASSERT_OK(h2t_store_stats_get(st, f.ext, 1, &ls));
    ASSERT_EQ(ls->count, 50);
    h2t_layer_stats_destroy(ls);
    ASSERT_OK(h2t_store_meta_get(st, &meta));
    ASSERT_EQ(meta.format_version, H2T_STORE_FORMAT_VERSION);
    h2t_store_close(st);
}
