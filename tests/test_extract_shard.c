/* Sharded extraction (extract --shard I/N) and h2tdb merge on tests/data/extract_tiny.onnx:
 * three shards merged are bitwise the unsharded extraction (identity, features, statistics,
 * labels), a shard resumes like any extraction, and the merge refuses missing, duplicated,
 * incomplete and foreign shards, naming the store, before it writes anything. */
#include "client/client.h"
#include "common/err.h"
#include "extract/extract.h"
#include "server/server.h"
#include "storage/store.h"
#include "tests/fixture.h"
#include "tests/srv_thread.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* n float32 samples 1 x 8 x 8 in [-1, 1), labels i % 3, at x.npy and y.npy */
static void make_data(uint32_t n)
{
    ASSERT_EQ(fixture_npy_grid8(n), 0);
}

static h2t_extract_opts opts(uint32_t shard_i, uint32_t shard_n)
{
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path("tests/data/extract_tiny.onnx");
    o.data_spec = "npy:x.npy,y.npy";
    o.target_size = 8;
    o.batch = 4;
    o.shard_i = shard_i;
    o.shard_n = shard_n;
    return o;
}

static int run_once(const char *dir, const h2t_extract_opts *o, h2t_extract_result *r)
{
    h2t_extract_plan *p;
    int rc = h2t_extract_plan_create(o, &p);
    if (rc < 0)
        return rc;
    h2t_store *st;
    if ((rc = h2t_store_open(dir, H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st)) == 0) {
        rc = h2t_extract_plan_run(p, st, r);
        h2t_store_close(st);
    }
    h2t_extract_plan_destroy(p);
    return rc;
}

/* Identity, every feature, every statistic and every label of a's extraction ea and b's eb are
 * bitwise equal. */
static void same_extraction_st(h2t_store *sa, uint32_t ea, h2t_store *sb, uint32_t eb, uint32_t n)
{
    h2t_extraction *xa, *xb;
    ASSERT_OK(h2t_store_extraction_get(sa, ea, &xa));
    ASSERT_OK(h2t_store_extraction_get(sb, eb, &xb));
    ASSERT_EQ(xa->n_samples, n);
    ASSERT_EQ(xb->n_samples, n);
    ASSERT_EQ(xb->samples_done, n);
    ASSERT_EQ(xb->state, H2T_EXT_DONE);
    ASSERT(memcmp(xa->config_hash, xb->config_hash, 32) == 0);
    ASSERT(strcmp(xa->config, xb->config) == 0);
    ASSERT_EQ(xa->n_layers, xb->n_layers);
    for (uint32_t l = 0; l < xa->n_layers; l++) {
        uint32_t dim = xa->layers[l].dim;
        ASSERT(strcmp(xa->layers[l].name, xb->layers[l].name) == 0);
        float *fa = malloc(sizeof(float) * dim * n), *fb = malloc(sizeof(float) * dim * n);
        ASSERT_OK(h2t_store_layer_read(sa, ea, l, NULL, 0, n, fa, dim));
        ASSERT_OK(h2t_store_layer_read(sb, eb, l, NULL, 0, n, fb, dim));
        for (size_t i = 0; i < (size_t)dim * n; i++)
            if (memcmp(&fa[i], &fb[i], sizeof(float)) != 0)
                TEST_FAILF("layer %u sample %zu feature %zu: %.9g vs %.9g", l, i / dim, i % dim,
                           fa[i], fb[i]);
        free(fa);
        free(fb);
        h2t_layer_stats *ta, *tb;
        ASSERT_OK(h2t_store_stats_get(sa, ea, l, &ta));
        ASSERT_OK(h2t_store_stats_get(sb, eb, l, &tb));
        ASSERT_EQ(ta->count, n);
        ASSERT_EQ(tb->count, n);
        ASSERT(memcmp(ta->mean, tb->mean, sizeof(double) * dim) == 0);
        ASSERT(memcmp(ta->m2, tb->m2, sizeof(double) * dim) == 0);
        ASSERT(memcmp(ta->min, tb->min, sizeof(float) * dim) == 0);
        ASSERT(memcmp(ta->max, tb->max, sizeof(float) * dim) == 0);
        ASSERT(memcmp(&ta->norm_mean, &tb->norm_mean, sizeof(double)) == 0);
        ASSERT(memcmp(&ta->norm_min, &tb->norm_min, sizeof(double)) == 0);
        ASSERT(memcmp(&ta->norm_max, &tb->norm_max, sizeof(double)) == 0);
        h2t_layer_stats_destroy(ta);
        h2t_layer_stats_destroy(tb);
    }
    uint32_t *la = malloc(4 * n), *lb = malloc(4 * n);
    uint8_t *pa = malloc(n), *pb = malloc(n);
    ASSERT_OK(h2t_store_labels_get(sa, xa->source, 0, n, la, pa));
    ASSERT_OK(h2t_store_labels_get(sb, xb->source, 0, n, lb, pb));
    ASSERT(memcmp(la, lb, 4 * n) == 0 && memcmp(pa, pb, n) == 0);
    free(la);
    free(lb);
    free(pa);
    free(pb);
    h2t_extraction_destroy(xa);
    h2t_extraction_destroy(xb);
}

static void same_extraction(const char *a, uint32_t ea, const char *b, uint32_t eb, uint32_t n)
{
    h2t_store *sa, *sb;
    ASSERT_OK(h2t_store_open(a, H2T_STORE_RDONLY, &sa));
    ASSERT_OK(h2t_store_open(b, H2T_STORE_RDONLY, &sb));
    same_extraction_st(sa, ea, sb, eb, n);
    h2t_store_close(sa);
    h2t_store_close(sb);
}

static int stop_first(void *ctx, uint32_t done, uint32_t total)
{
    (void)ctx;
    (void)total;
    return done >= 4;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

TEST(extract_shard_merge_is_the_unsharded_extraction)
{
    const uint32_t n = 31; /* shards of 10, 10 and 11 samples */
    make_data(n);
    h2t_extract_opts o = opts(0, 0);
    h2t_extract_result ref, r[3];
    ASSERT_OK(run_once("ref", &o, &ref));

    o = opts(0, 3);
    ASSERT_OK(run_once("s0", &o, &r[0]));
    o = opts(2, 3);
    ASSERT_OK(run_once("s2", &o, &r[2]));
    ASSERT_EQ(r[0].n_samples, 10);
    ASSERT_EQ(r[2].n_samples, 11);
    /* shard 1 is stopped after its first batch and resumed, as any extraction */
    o = opts(1, 3);
    o.on_batch = stop_first;
    ASSERT_EQ(run_once("s1", &o, &r[1]), H2T_ECANCELED);
    const char *dirs[] = {"s2", "s0", "s1"};
    h2t_extract_merge_result m;
    ASSERT_EQ(h2t_extract_merge("m", dirs, 3, 4, &m), H2T_ESTATE);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store s1: shard 1/3 is incomplete (4 of 10");
    ASSERT(!exists("m"));
    o.on_batch = NULL;
    ASSERT_OK(run_once("s1", &o, &r[1]));
    ASSERT_EQ(r[1].resumed_from, 4);
    ASSERT_EQ(r[1].n_samples, 10);

    /* each shard has its own identity, naming the shard and the whole extraction */
    h2t_store *st;
    h2t_extraction *e;
    ASSERT_OK(h2t_store_open("s2", H2T_STORE_RDONLY, &st));
    ASSERT_OK(h2t_store_extraction_get(st, r[2].extraction, &e));
    ASSERT_CONTAINS(e->config, " shard=2/3 of=");
    ASSERT_CONTAINS(e->config, "samples=31 ");
    h2t_store *rs;
    h2t_extraction *re;
    ASSERT_OK(h2t_store_open("ref", H2T_STORE_RDONLY, &rs));
    ASSERT_OK(h2t_store_extraction_get(rs, ref.extraction, &re));
    ASSERT(memcmp(e->config_hash, re->config_hash, 32) != 0);
    ASSERT(strncmp(e->config, re->config, strlen(re->config)) == 0);
    /* a shard's first sample is the whole extraction's sample 20 */
    float a[64], b[64];
    uint32_t dim = e->layers[0].dim;
    ASSERT(dim <= 64);
    ASSERT_OK(h2t_store_feature_get(st, r[2].extraction, 0, 0, a, dim));
    ASSERT_OK(h2t_store_feature_get(rs, ref.extraction, 0, 20, b, dim));
    ASSERT(memcmp(a, b, 4 * dim) == 0);
    h2t_extraction_destroy(e);
    h2t_extraction_destroy(re);
    h2t_store_close(st);
    h2t_store_close(rs);

    /* merged in any order of the stores: bitwise the unsharded extraction */
    ASSERT_OK(h2t_extract_merge("m", dirs, 3, 4, &m));
    ASSERT_EQ(m.n_samples, n);
    ASSERT_EQ(m.n_shards, 3);
    ASSERT_EQ(m.written, n);
    ASSERT_EQ(m.reused, 0);
    same_extraction("ref", ref.extraction, "m", m.extraction, n);
    /* again: nothing to do; and the unsharded request finds it complete */
    ASSERT_OK(h2t_extract_merge("m", dirs, 3, 4, &m));
    ASSERT_EQ(m.reused, 1);
    ASSERT_EQ(m.written, 0);
    o = opts(0, 0);
    h2t_extract_result again;
    ASSERT_OK(run_once("m", &o, &again));
    ASSERT_EQ(again.reused, 1);
    ASSERT_EQ(again.computed, 0);
    ASSERT_EQ(again.extraction, m.extraction);

    /* the statistics follow the write batches: another batch is not bitwise the reference's
     * (the check above can fail) */
    ASSERT_OK(h2t_extract_merge("m5", dirs, 3, 5, &m));
    h2t_layer_stats *t4, *t5;
    ASSERT_OK(h2t_store_open("m5", H2T_STORE_RDONLY, &st));
    ASSERT_OK(h2t_store_open("ref", H2T_STORE_RDONLY, &rs));
    int differs = 0;
    for (uint32_t l = 0; l < 4 && !differs; l++) {
        if (h2t_store_stats_get(st, m.extraction, l, &t5) < 0)
            break;
        ASSERT_OK(h2t_store_stats_get(rs, ref.extraction, l, &t4));
        differs = memcmp(t4->m2, t5->m2, sizeof(double) * t4->dim) != 0 ||
                  memcmp(t4->mean, t5->mean, sizeof(double) * t4->dim) != 0;
        h2t_layer_stats_destroy(t4);
        h2t_layer_stats_destroy(t5);
    }
    h2t_store_close(st);
    h2t_store_close(rs);
    ASSERT(differs);
}

TEST(extract_shard_merge_refuses_bad_sets)
{
    make_data(12);
    h2t_extract_result r;
    const char *names[] = {"s0", "s1", "s2"};
    for (uint32_t i = 0; i < 3; i++) {
        h2t_extract_opts o = opts(i, 3);
        ASSERT_OK(run_once(names[i], &o, &r));
    }
    h2t_extract_opts o = opts(0, 3);
    ASSERT_OK(run_once("s0b", &o, &r)); /* shard 0 again */
    o = opts(2, 3);
    o.target_size = 4; /* another extraction's shard 2 */
    ASSERT_OK(run_once("x2", &o, &r));
    o = opts(1, 4); /* a shard of another count */
    ASSERT_OK(run_once("q1", &o, &r));
    o = opts(0, 0);
    ASSERT_OK(run_once("whole", &o, &r));

    h2t_extract_merge_result m;
    const char *missing[] = {"s0", "s2"};
    ASSERT_EQ(h2t_extract_merge("m", missing, 2, 4, &m), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 1/3 is missing");
    const char *dup[] = {"s0", "s1", "s2", "s0b"};
    ASSERT_EQ(h2t_extract_merge("m", dup, 4, 4, &m), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 0/3 is in both s0 and s0b");
    const char *twice[] = {"s0", "s1", "s2", "./s1"};
    ASSERT_EQ(h2t_extract_merge("m", twice, 4, 4, &m), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store ./s1 is given twice");
    const char *foreign[] = {"s0", "s1", "x2"};
    ASSERT_EQ(h2t_extract_merge("m", foreign, 3, 4, &m), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store x2: its extraction");
    ASSERT_CONTAINS(h2t_err_detail(), "target=4");
    const char *count[] = {"s0", "q1", "s2"};
    ASSERT_EQ(h2t_extract_merge("m", count, 3, 4, &m), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store q1");
    const char *unsharded[] = {"s0", "s1", "whole"};
    ASSERT_EQ(h2t_extract_merge("m", unsharded, 3, 4, &m), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "store whole holds no shard extraction");
    const char *gone[] = {"s0", "s1", "nowhere"};
    ASSERT_EQ(h2t_extract_merge("m", gone, 3, 4, &m), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store nowhere");
    const char *into[] = {"s0", "s1", "s2"};
    ASSERT_EQ(h2t_extract_merge("s1", into, 3, 4, &m), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "also as the output store");
    ASSERT(!exists("m"));

    /* a task over a shard is refused (its sample numbers are not its source's) */
    h2t_store *st;
    ASSERT_OK(h2t_store_open("s1", 0, &st));
    h2t_msg_task_spec sp = {0};
    sp.name = "t";
    sp.extraction = "1";
    h2t_task *t = NULL;
    ASSERT_EQ(h2t_srv_task_build(st, &sp, 0, &t), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "extraction 1 is shard 1/3 of a sharded extraction");
    ASSERT(t == NULL);
    h2t_store_close(st);

    /* a shard past the count, or more shards than samples */
    o = opts(3, 3);
    h2t_extract_plan *p;
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EINVAL);
    o = opts(0, 13);
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 0/13");
}

static int sh(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(extract_shard_cli)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    make_data(7);
    char cmd[4096], out[8192];
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s extract --store s%d --model %s --data npy:x.npy,y.npy --target-size 8 "
                 "--batch 4 --shard %d/2 2>&1",
                 bin, i, test_src_path("tests/data/extract_tiny.onnx"), i);
        ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    }
    snprintf(cmd, sizeof cmd,
             "%s extract --store ref --model %s --data npy:x.npy,y.npy --target-size 8 "
             "--batch 4 2>&1",
             bin, test_src_path("tests/data/extract_tiny.onnx"));
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s merge --store m --batch 4 s1 s0 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "7 samples of 2 shards merged into m");
    same_extraction("ref", 1, "m", 1, 7);
    snprintf(cmd, sizeof cmd, "%s merge --store m2 s1 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 1);
    ASSERT_CONTAINS(out, "h2tdb merge: shard 0/2 is missing");
    snprintf(cmd, sizeof cmd,
             "%s extract --store s9 --model x.onnx --data npy:x.npy --shard 2/2 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 2);
    ASSERT_CONTAINS(out, "--shard '2/2'");
    snprintf(cmd, sizeof cmd, "%s merge s0 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 2);
}

/* deploy/slurm/extract_shard.sbatch run as Slurm runs an array of three tasks (indices 4..6:
 * the shard is the index less the array's minimum), then merged: the unsharded extraction.
 * Without the array variables it refuses; it passes shellcheck where that is installed. */
TEST(extract_shard_slurm_script)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    make_data(8);
    const char *script = test_src_path("deploy/slurm/extract_shard.sbatch");
    const char *model = test_src_path("tests/data/extract_tiny.onnx");
    char cmd[4096], out[8192];
    for (int k = 4; k <= 6; k++) {
        snprintf(cmd, sizeof cmd,
                 "H2TDB=%s SLURM_ARRAY_TASK_ID=%d SLURM_ARRAY_TASK_MIN=4 "
                 "SLURM_ARRAY_TASK_COUNT=3 SLURM_CPUS_PER_TASK=1 sh %s %s npy:x.npy,y.npy feats "
                 "--target-size 8 --batch 4 2>&1",
                 bin, k, script, model);
        ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    }
    ASSERT(exists("feats/shard.0") && exists("feats/shard.2") && !exists("feats/shard.3"));
    snprintf(cmd, sizeof cmd,
             "%s extract --store ref --model %s --data npy:x.npy,y.npy --target-size 8 "
             "--batch 4 2>&1",
             bin, model);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd,
             "%s merge --store m --batch 4 feats/shard.0 feats/shard.1 feats/shard.2 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    same_extraction("ref", 1, "m", 1, 8);
    snprintf(cmd, sizeof cmd, "env -u SLURM_ARRAY_TASK_ID sh %s %s npy:x.npy feats 2>&1", script,
             model);
    ASSERT(sh(cmd, out, sizeof out) != 0);
    ASSERT_CONTAINS(out, "sbatch --array");
    if (system("command -v shellcheck >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "shellcheck %s 2>&1", script);
        ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    }
}

/* The manifest of the three shard stores set/shard-I-of-3 (extracted at batch 4). */
static void write_manifest(const char *dir, uint32_t n)
{
    char p[256];
    snprintf(p, sizeof p, "%s/shard-0-of-3", dir);
    h2t_store *st;
    ASSERT_OK(h2t_store_open(p, H2T_STORE_RDONLY, &st));
    h2t_extraction **v;
    size_t nv;
    ASSERT_OK(h2t_store_extraction_list(st, &v, &nv));
    ASSERT_EQ(nv, 1);
    uint32_t si, sn, wn;
    uint8_t h[32];
    char whole[512];
    ASSERT_EQ(h2t_store_shard_parse(v[0]->config, &si, &sn, h, whole, sizeof whole, &wn), 1);
    ASSERT_EQ(wn, n);
    h2t_extraction_list_destroy(v, nv);
    h2t_store_close(st);
    uint32_t counts[3];
    for (uint32_t i = 0; i < 3; i++) {
        uint32_t lo, hi;
        h2t_store_shard_range(n, i, 3, &lo, &hi);
        counts[i] = hi - lo;
    }
    ASSERT_OK(h2t_store_set_write(dir, 3, h, whole, n, counts, 4, NULL));
}

/* n samples of make_data extracted as the shard stores set/shard-I-of-3 with their manifest,
 * and unsharded into ref (*ref its result). */
static void extract_set(uint32_t n, h2t_extract_result *ref)
{
    make_data(n);
    h2t_extract_opts o = opts(0, 0);
    ASSERT_OK(run_once("ref", &o, ref));
    ASSERT_EQ(mkdir("set", 0777), 0);
    for (uint32_t i = 0; i < 3; i++) {
        char d[64];
        h2t_extract_result r;
        snprintf(d, sizeof d, "set/shard-%u-of-3", i);
        o = opts(i, 3);
        ASSERT_OK(run_once(d, &o, &r));
    }
    write_manifest("set", n);
}

/* N = 3 shard stores read as one store set (their manifest, or the three paths in any order)
 * are the unsharded extraction: identity, every feature (in order and through a shuffled
 * sample list), every statistic and every label, bitwise; the set's extraction takes tasks; its
 * extraction is not written through the set; the shards are not written at all. */
TEST(extract_shard_set_is_the_unsharded_extraction)
{
    const uint32_t n = 31;
    h2t_extract_result ref;
    extract_set(n, &ref);
    struct stat before;
    ASSERT_EQ(stat("set/shard-1-of-3/data.mdb", &before), 0);

    h2t_store *rs, *ss;
    ASSERT_OK(h2t_store_open("ref", H2T_STORE_RDONLY, &rs));
    ASSERT_OK(h2t_store_open("set", 0, &ss)); /* may write: its work store is made */
    ASSERT_EQ(h2t_store_is_set(ss), 3);
    ASSERT(exists("set/work/data.mdb"));
    same_extraction_st(rs, ref.extraction, ss, ref.extraction, n);
    /* a shuffled selection across the shard boundaries */
    uint32_t sel[9] = {30, 0, 10, 9, 20, 19, 21, 5, 11};
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(ss, ref.extraction, &e));
    uint32_t dim = e->layers[1].dim;
    float *fa = malloc(sizeof(float) * 9 * dim), *fb = malloc(sizeof(float) * 9 * dim);
    ASSERT_OK(h2t_store_layer_read(rs, ref.extraction, 1, sel, 0, 9, fa, dim));
    ASSERT_OK(h2t_store_layer_read(ss, ref.extraction, 1, sel, 0, 9, fb, dim));
    ASSERT(memcmp(fa, fb, sizeof(float) * 9 * dim) == 0);
    ASSERT_OK(h2t_store_feature_get(ss, ref.extraction, 1, 30, fb, dim));
    ASSERT(memcmp(fa, fb, sizeof(float) * dim) == 0);
    ASSERT_EQ(h2t_store_feature_get(ss, ref.extraction, 1, 31, fb, dim), H2T_ENOTFOUND);
    free(fa);
    free(fb);
    /* one extraction, found by id; it is not written through the set */
    uint32_t id;
    char q[16];
    snprintf(q, sizeof q, "%u", ref.extraction);
    ASSERT_OK(h2t_store_extraction_find(ss, q, &id));
    ASSERT_EQ(id, ref.extraction);
    ASSERT_EQ(h2t_store_extraction_set_state(ss, id, H2T_EXT_FAILED), H2T_EPERM);
    ASSERT_CONTAINS(h2t_err_detail(), "store set set is read as one store");
    const float *rows[8] = {0};
    ASSERT_EQ(h2t_store_features_write(ss, id, 0, 1, rows), H2T_EPERM);
    /* a task over the set's extraction: the whole extraction's sample numbers and labels */
    h2t_msg_task_spec sp = {0};
    sp.name = "t";
    sp.extraction = q;
    h2t_task *t = NULL;
    ASSERT_OK(h2t_srv_task_build(ss, &sp, 0, &t));
    ASSERT_OK(h2t_store_task_put(ss, t, 0));
    h2t_task_destroy(t);
    h2t_extraction_destroy(e);
    h2t_store_close(ss);
    h2t_store_close(rs);
    /* the shards were only read */
    struct stat after;
    ASSERT_EQ(stat("set/shard-1-of-3/data.mdb", &after), 0);
    ASSERT_EQ(after.st_mtime, before.st_mtime);
    ASSERT_EQ(after.st_size, before.st_size);

    /* the same three stores given as paths in any order; the task stays in the set's work */
    const char *paths[] = {"set/shard-2-of-3", "set/shard-0-of-3", "set/shard-1-of-3"};
    ASSERT_OK(h2t_store_open_set(paths, 3, 4, H2T_STORE_RDONLY, &ss));
    ASSERT_OK(h2t_store_open("ref", H2T_STORE_RDONLY, &rs));
    same_extraction_st(rs, ref.extraction, ss, ref.extraction, n);
    h2t_store_close(ss);
    h2t_store_close(rs);
    ASSERT_OK(h2t_store_open("set", H2T_STORE_RDONLY, &ss));
    ASSERT_OK(h2t_store_task_get(ss, "t", &t));
    h2t_task_destroy(t);
    /* verify walks the work store and every shard; compact refuses the set as a whole */
    h2t_store_verify_report vr;
    ASSERT_OK(h2t_store_verify(ss, NULL, NULL, &vr));
    ASSERT_EQ(vr.extractions, 3);
    ASSERT_EQ(vr.damaged, 0);
    h2t_store_close(ss);
    uint64_t b0, b1;
    ASSERT_EQ(h2t_store_compact("set", &b0, &b1), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "set is a store set");
    ASSERT(!exists("set/data.mdb"));
}

/* A set is refused before anything is read or written, naming the shard and path: a shard of
 * another extraction, a missing shard, a shard twice, a store the manifest names that moved, an
 * incomplete shard. */
TEST(extract_shard_set_refusals)
{
    make_data(12);
    h2t_extract_result r;
    ASSERT_EQ(mkdir("set", 0777), 0);
    for (uint32_t i = 0; i < 3; i++) {
        char d[64];
        snprintf(d, sizeof d, "set/shard-%u-of-3", i);
        h2t_extract_opts o = opts(i, 3);
        ASSERT_OK(run_once(d, &o, &r));
    }
    h2t_extract_opts o = opts(2, 3);
    o.target_size = 4; /* another extraction's shard 2 */
    ASSERT_OK(run_once("x2", &o, &r));
    o = opts(0, 3);
    ASSERT_OK(run_once("s0b", &o, &r)); /* shard 0 again */
    write_manifest("set", 12);
    h2t_store *st = NULL;

    const char *foreign[] = {"set/shard-0-of-3", "set/shard-1-of-3", "x2"};
    ASSERT_EQ(h2t_store_open_set(foreign, 3, 4, H2T_STORE_RDONLY, &st), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store x2 holds shard 2/3 of another extraction");
    const char *missing[] = {"set/shard-0-of-3", "set/shard-2-of-3"};
    ASSERT_EQ(h2t_store_open_set(missing, 2, 4, H2T_STORE_RDONLY, &st), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 1/3 is missing");
    const char *dup[] = {"set/shard-0-of-3", "set/shard-1-of-3", "s0b"};
    ASSERT_EQ(h2t_store_open_set(dup, 3, 4, H2T_STORE_RDONLY, &st), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 0/3 is in both set/shard-0-of-3 and s0b");
    const char *twice[] = {"set/shard-0-of-3", "set/shard-1-of-3", "./set/shard-1-of-3"};
    ASSERT_EQ(h2t_store_open_set(twice, 3, 4, H2T_STORE_RDONLY, &st), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store ./set/shard-1-of-3 is given twice");
    ASSERT(st == NULL);

    /* the manifest names a store that moved: refused, and no work store is made */
    ASSERT_EQ(rename("set/shard-1-of-3", "set/elsewhere"), 0);
    ASSERT_EQ(h2t_store_open("set", 0, &st), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "store set set: shard store set/shard-1-of-3");
    ASSERT_CONTAINS(h2t_err_detail(), "moved or removed");
    ASSERT(!exists("set/work"));
    /* a store of another extraction put in its place */
    ASSERT_EQ(rename("x2", "set/shard-1-of-3"), 0);
    ASSERT_EQ(h2t_store_open("set", 0, &st), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard store set/shard-1-of-3 holds shard 2/3");
    ASSERT(!exists("set/work"));
    ASSERT_EQ(rename("set/shard-1-of-3", "x2"), 0);
    ASSERT_EQ(rename("set/elsewhere", "set/shard-1-of-3"), 0);
    /* an incomplete shard */
    ASSERT_OK(h2t_store_open("set/shard-2-of-3", 0, &st));
    ASSERT_OK(h2t_store_extraction_set_state(st, 1, H2T_EXT_RUNNING));
    h2t_store_close(st);
    st = NULL;
    ASSERT_EQ(h2t_store_open("set", H2T_STORE_RDONLY, &st), H2T_ESTATE);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 2/3 in set/shard-2-of-3 is incomplete");
    ASSERT_OK(h2t_store_open("set/shard-2-of-3", 0, &st));
    ASSERT_OK(h2t_store_extraction_set_state(st, 1, H2T_EXT_DONE));
    h2t_store_close(st);
    /* whole again: opens, read-only without a work store (a temporary one, removed) */
    ASSERT_OK(h2t_store_open("set", H2T_STORE_RDONLY, &st));
    ASSERT_EQ(h2t_store_is_set(st), 3);
    h2t_store_close(st);
    ASSERT(!exists("set/work"));
}

/* The store set served (h2tdb serve over its folder): the server's statistics of every layer,
 * per feature, and its features are bitwise those of a server over the unsharded store. */
TEST(extract_shard_set_served)
{
    const uint32_t n = 13;
    h2t_extract_result ref;
    extract_set(n, &ref);
    test_srv a = {0}, b = {0};
    ASSERT_OK(h2t_store_open("ref", 0, &a.st));
    ASSERT_OK(h2t_store_open("set", 0, &b.st));
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    test_srv_start(&a, &cfg);
    h2t_srv_config_default(&cfg);
    test_srv_start(&b, &cfg);
    h2t_client *ca, *cb;
    ASSERT_OK(h2t_client_connect(a.addr, NULL, 10000, &ca));
    ASSERT_OK(h2t_client_connect(b.addr, NULL, 10000, &cb));
    const char *layers[] = {"conv", "relu", "gap", "fc"};
    for (int l = 0; l < 4; l++) {
        h2t_msg q = {.type = H2T_MSG_STATS_REQ}, ra, rb;
        q.u.stats_req.extraction = "1";
        q.u.stats_req.layer = layers[l];
        q.u.stats_req.per_feature = 1;
        ASSERT_OK(h2t_client_call(ca, &q, H2T_MSG_STATS, &ra));
        ASSERT_OK(h2t_client_call(cb, &q, H2T_MSG_STATS, &rb));
        const h2t_msg_layer_stats *x = &ra.u.stats.layers[0], *y = &rb.u.stats.layers[0];
        ASSERT_EQ(y->count, n);
        ASSERT_EQ(x->n_mean, y->n_mean);
        ASSERT(x->n_mean > 0);
        ASSERT(memcmp(x->mean, y->mean, sizeof(double) * x->n_mean) == 0);
        ASSERT(memcmp(x->var, y->var, sizeof(double) * x->n_var) == 0);
        ASSERT(memcmp(&x->norm_mean, &y->norm_mean, sizeof(double)) == 0);
        h2t_msg_free(&ra);
        h2t_msg_free(&rb);
        q = (h2t_msg){.type = H2T_MSG_FEATURES_REQ};
        q.u.features_req.extraction = "1";
        q.u.features_req.layer = layers[l];
        q.u.features_req.first = 2;
        q.u.features_req.count = 10;
        ASSERT_OK(h2t_client_call(ca, &q, H2T_MSG_FEATURES, &ra));
        ASSERT_OK(h2t_client_call(cb, &q, H2T_MSG_FEATURES, &rb));
        ASSERT_EQ(ra.u.features.n_values, rb.u.features.n_values);
        ASSERT(ra.u.features.n_values > 0);
        ASSERT(memcmp(ra.u.features.values, rb.u.features.values,
                      sizeof(float) * ra.u.features.n_values) == 0);
        h2t_msg_free(&ra);
        h2t_msg_free(&rb);
    }
    h2t_client_close(ca);
    h2t_client_close(cb);
    test_srv_finish(&a);
    test_srv_finish(&b);
    ASSERT(exists("set/work/data.mdb"));
}

/* h2tdb set-manifest: the shard stores of an array job's folder (feats/shard.I) named in a
 * manifest, after the checks; the folder then reads as one store. A missing or foreign shard:
 * refused, no manifest. */
TEST(extract_shard_set_manifest_cli)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    make_data(10);
    char cmd[4096], out[8192];
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s extract --store feats/shard.%d --model %s --data npy:x.npy,y.npy "
                 "--target-size 8 --batch 4 --shard %d/3 --no-progress 2>&1",
                 bin, i, test_src_path("tests/data/extract_tiny.onnx"), i);
        ASSERT_EQ(system("mkdir -p feats"), 0);
        ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    }
    ASSERT_EQ(system("mv feats/shard.1 away"), 0);
    snprintf(cmd, sizeof cmd, "%s set-manifest feats --batch 4 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 1);
    ASSERT_CONTAINS(out, "shard 1/3 is missing: no subfolder of feats holds it");
    ASSERT(!exists("feats/store-set.txt"));
    ASSERT_EQ(system("mv away feats/shard.1"), 0);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "store set feats: 3 shards, 10 samples");
    FILE *f = fopen("feats/store-set.txt", "r");
    ASSERT(f != NULL);
    size_t k = fread(out, 1, sizeof out - 1, f);
    out[k] = '\0';
    fclose(f);
    ASSERT_CONTAINS(out,
                    "batch 4\nshard 0 0 3 shard.0\nshard 1 3 6 shard.1\nshard 2 6 10 shard.2\n");
    snprintf(cmd, sizeof cmd, "%s ls --store feats 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "a store set of 3 shard stores");
    ASSERT_CONTAINS(out, "10/10  done");
}
