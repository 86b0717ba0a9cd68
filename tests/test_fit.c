/* h2tdb fit: a design matrix above the memory budget lies in a file-backed mapping and gives
 * the in-memory head; one process against `mpirun -np 2` and `-np 3 h2tdb fit --mpi` on a tiny
 * store, for linear, all and head2toe with CV: the objective within 1e-6 relative, the same chosen
 * cell, kept features, test count and per-row predictions; the same over a store set of three
 * shard stores, each rank holding its own shard's rows; a rank that dies stops the job with
 * an error naming the rank. mpirun's ranks run without leak checks (tests/test_mpi.c says why). */
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"
#include "tests/fixture.h"
#include "tests/test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define NTR 96
#define NTE 45
#define NL 3
#define DL 6
#define K 3

static int sh(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A store "st" with one extraction of NL layers x DL features and task "t": class c shifts
 * feature c of layers 0 and 2 over N(0, 1) noise. */
static void make_store(void)
{
    uint32_t N = NTR + NTE;
    h2t_store *st = NULL;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    h2t_source s = {0};
    snprintf(s.name, sizeof(s.name), "synth");
    snprintf(s.uri, sizeof(s.uri), "npy:/synth.npy");
    s.hash[0] = 3;
    s.n_samples = N;
    s.n_classes = K;
    char *cn[K] = {"a", "b", "c"};
    s.class_names = cn;
    uint32_t lab[NTR + NTE], tr[NTR], te[NTE];
    uint8_t spl[NTR + NTE] = {0};
    for (uint32_t i = 0; i < N; i++)
        lab[i] = (i * 7 + i / 5) % K;
    s.labels = lab;
    s.split = spl;
    uint32_t src, model, ext;
    int reused;
    ASSERT_OK(h2t_store_source_put(st, &s, &src, &reused));
    h2t_model_rec m = {0};
    snprintf(m.name, sizeof(m.name), "net");
    m.sha256[0] = 1;
    ASSERT_OK(h2t_store_model_put(st, &m, &model, &reused));
    h2t_layer_info L[NL];
    memset(L, 0, sizeof(L));
    for (uint32_t l = 0; l < NL; l++) {
        snprintf(L[l].name, sizeof(L[l].name), "layer%u", l);
        snprintf(L[l].op, sizeof(L[l].op), "Conv");
        L[l].rank = 2;
        L[l].shape[0] = DL;
        L[l].dim = DL;
    }
    h2t_extraction e = {0};
    e.source = src;
    e.model = model;
    e.n_samples = N;
    e.n_layers = NL;
    e.layers = L;
    e.config_hash[0] = 9;
    ASSERT_OK(h2t_store_extraction_begin(st, &e, &ext, &reused));
    float *buf[NL];
    uint64_t seed = 11;
    for (uint32_t l = 0; l < NL; l++)
        buf[l] = malloc((size_t)N * DL * sizeof(float));
    for (uint32_t i = 0; i < N; i++)
        for (uint32_t l = 0; l < NL; l++)
            for (uint32_t j = 0; j < DL; j++)
                buf[l][(size_t)i * DL + j] =
                    (float)(h2t_rng_gauss(&seed) + (l != 1 && j == lab[i] ? 1.2 : 0));
    ASSERT_OK(h2t_store_features_write(st, ext, 0, N, (const float *const *)buf));
    for (uint32_t l = 0; l < NL; l++)
        free(buf[l]);
    h2t_task task = {0};
    snprintf(task.name, sizeof(task.name), "t");
    task.extraction = ext;
    task.n_classes = K;
    task.class_names = cn;
    for (uint32_t i = 0; i < NTR; i++)
        tr[i] = i;
    for (uint32_t i = 0; i < NTE; i++)
        te[i] = NTR + i;
    task.n_train = NTR;
    task.train = tr;
    task.train_labels = lab;
    task.n_test = NTE;
    task.test = te;
    task.test_labels = lab + NTR;
    ASSERT_OK(h2t_store_task_put(st, &task, 0));
    h2t_store_close(st);
}

/* "mpirun ... -np N" with the flags a container and root need; NULL when mpirun is absent */
static const char *mpirun_prefix(int np)
{
    static char buf[512];
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "  mpirun not installed (deploy/deps.sh installs openmpi-bin): "
                        "skipped\n");
        return NULL;
    }
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
    setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1", 1);
    snprintf(buf, sizeof buf, "mpirun --oversubscribe -np %d", np);
    return buf;
}

/* The number after "key": in a JSON text, from the occurrence `nth` (0 = first). */
static double json_num(const char *js, const char *key, int nth)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = js;
    for (int i = 0; i <= nth; i++) {
        p = strstr(p, pat);
        if (!p)
            TEST_FAILF("no %s (#%d) in %s", pat, nth, js);
        p += strlen(pat);
    }
    return strtod(p, NULL);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        TEST_FAILF("cannot open %s", path);
    char *b = malloc(1 << 20);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    fclose(f);
    b[n] = 0;
    if (len)
        *len = n;
    return b;
}

static void fit_case(const char *method, const char *opts)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    make_store();
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "%s fit --store st --task t --method %s %s --export one --predictions one.txt 2>&1",
             bin, method, opts);
    if (sh(cmd, out, sizeof out) != 0)
        TEST_FAILF("%s:\n%s", cmd, out);
    fprintf(stderr, "  %s", out);
    const char *mpirun = mpirun_prefix(2);
    if (!mpirun)
        return;
    char *js1 = slurp("one/result.json", NULL), *p1 = slurp("one.txt", NULL);
    size_t fl1, fl2;
    char *f1 = slurp("one/features.npy", &fl1);
    for (int np = 2; np <= 3; np++) {
        snprintf(cmd, sizeof cmd,
                 "%s %s fit --mpi --store st --task t --method %s %s --export mpi%d "
                 "--predictions mpi%d.txt 2>&1",
                 mpirun_prefix(np), bin, method, opts, np, np);
        if (sh(cmd, out, sizeof out) != 0)
            TEST_FAILF("%s:\n%s", cmd, out);
        fprintf(stderr, "  %s", out);
        char path[64];
        snprintf(path, sizeof path, "mpi%d/result.json", np);
        char *js = slurp(path, NULL);
        /* "objective" appears for the selection fit, then the final fit */
        for (int q = 0; q < 2; q++) {
            double a = json_num(js, "objective", q), b = json_num(js1, "objective", q);
            if (fabs(a - b) > 1e-6 * fabs(b))
                TEST_FAILF("np %d objective #%d: %.12g vs %.12g", np, q, a, b);
        }
        ASSERT(json_num(js, "lambda", 0) == json_num(js1, "lambda", 0));
        ASSERT(json_num(js, "keep", 0) == json_num(js1, "keep", 0));
        ASSERT(json_num(js, "test_correct", 0) == json_num(js1, "test_correct", 0));
        ASSERT(json_num(js, "n_kept", 0) == json_num(js1, "n_kept", 0));
        ASSERT(json_num(js, "n_train", 0) == NTR);
        snprintf(path, sizeof path, "mpi%d/features.npy", np);
        char *f2 = slurp(path, &fl2);
        ASSERT_EQ(fl1, fl2);
        ASSERT(memcmp(f1, f2, fl1) == 0);
        snprintf(path, sizeof path, "mpi%d.txt", np);
        char *p2 = slurp(path, NULL);
        ASSERT_STREQ(p1, p2);
        free(js);
        free(f2);
        free(p2);
    }
    free(js1);
    free(p1);
    free(f1);
}

TEST_TIMEOUT(fit_mpi_linear, 180)
{
    fit_case("linear", "--lambdas 0.1,0.001 --folds 3");
}

TEST_TIMEOUT(fit_mpi_all, 180)
{
    fit_case("all", "--lambdas 0.1,0.001 --folds 3");
}

TEST_TIMEOUT(fit_mpi_head2toe, 240)
{
    fit_case("head2toe", "--lambdas 0.03,0.01 --keep 0.2,0.5 --folds 3");
}

/* rank 1 is killed mid-run: mpirun ends the job, exits non-zero and names rank 1; a rank that
 * cannot start (the task missing) stops every rank with an error naming it */
TEST_TIMEOUT(fit_mpi_rank_dies, 180)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    const char *mpirun = mpirun_prefix(2);
    if (!mpirun)
        return;
    make_store();
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "%s sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 1; kill -9 $$) & fi; "
             "exec %s fit --mpi --store st --task t --method head2toe --cv-repeats 20 "
             "--folds 5' 2>&1",
             mpirun, bin);
    int rc = sh(cmd, out, sizeof out);
    ASSERT_NE(rc, 0);
    if (!strstr(out, "rank 1"))
        TEST_FAILF("no rank named:\n%s", out);
    ASSERT(strstr(out, "fit t:") == NULL);
    snprintf(cmd, sizeof cmd, "%s %s fit --mpi --store st --task nope 2>&1", mpirun, bin);
    ASSERT_NE(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "rank 0 of 2");
    ASSERT_CONTAINS(out, "nope");
}

/* fit --mpi over a store set (three shard stores, extract --shard I/3, and their manifest): on
 * 3 ranks each rank holds the rows of its own shard's samples (and says so), on 2 ranks the
 * rows go by range through the set; both give the unsharded store's one-process head: objective
 * within 1e-6, the same chosen lambda, test count and per-row predictions. A shard store that
 * moved stops every rank with an error naming it. */
TEST_TIMEOUT(fit_mpi_store_set, 240)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    const char *mpirun = mpirun_prefix(3);
    if (!mpirun)
        return;
    const uint32_t n = 90;
    ASSERT_EQ(fixture_npy_grid8(n), 0);
    char cmd[4096], out[16384];
    const char *model = test_src_path("tests/data/extract_tiny.onnx");
    ASSERT_EQ(system("mkdir -p set"), 0);
    for (int i = -1; i < 3; i++) {
        char dir[64], shard[32] = "";
        snprintf(dir, sizeof dir, i < 0 ? "ref" : "set/shard-%d-of-3", i);
        if (i >= 0)
            snprintf(shard, sizeof shard, "--shard %d/3", i);
        snprintf(cmd, sizeof cmd,
                 "%s extract --store %s --model %s --data npy:x.npy,y.npy --target-size 8 "
                 "--batch 4 %s --no-progress 2>&1",
                 bin, dir, model, shard);
        if (sh(cmd, out, sizeof out) != 0)
            TEST_FAILF("%s:\n%s", cmd, out);
    }
    snprintf(cmd, sizeof cmd, "%s set-manifest set --batch 4 2>&1", bin);
    if (sh(cmd, out, sizeof out) != 0)
        TEST_FAILF("%s:\n%s", cmd, out);
    /* a task over samples of every shard: training rows from all three, test rows too; on the
     * set it lives in the set's work store */
    for (int q = 0; q < 2; q++) {
        h2t_store *st = NULL;
        ASSERT_OK(h2t_store_open(q ? "set" : "ref", q ? 0 : H2T_STORE_NOSYNC, &st));
        h2t_extraction **v;
        size_t nv;
        ASSERT_OK(h2t_store_extraction_list(st, &v, &nv));
        ASSERT_EQ(nv, 1);
        uint32_t tr[60], te[30], ltr[60], lte[30], a = 0, b = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (i % 30 < 20) {
                tr[a] = i;
                ltr[a++] = i % 3;
            } else {
                te[b] = i;
                lte[b++] = i % 3;
            }
        }
        char *cn[3] = {"0", "1", "2"};
        h2t_task task = {0};
        snprintf(task.name, sizeof(task.name), "t");
        task.extraction = v[0]->id;
        task.n_classes = 3;
        task.class_names = cn;
        task.n_train = a;
        task.train = tr;
        task.train_labels = ltr;
        task.n_test = b;
        task.test = te;
        task.test_labels = lte;
        ASSERT_OK(h2t_store_task_put(st, &task, 0));
        h2t_extraction_list_destroy(v, nv);
        h2t_store_close(st);
    }
    const char *job = "--method all --lambdas 0.1,0.001 --folds 3 --json";
    snprintf(cmd, sizeof cmd, "%s fit --store ref --task t %s --predictions one.txt 2>&1", bin,
             job);
    if (sh(cmd, out, sizeof out) != 0)
        TEST_FAILF("%s:\n%s", cmd, out);
    char *js1 = strdup(out), *p1 = slurp("one.txt", NULL);
    for (int np = 3; np >= 2; np--) {
        snprintf(cmd, sizeof cmd,
                 "%s %s fit --mpi --store set --task t %s --predictions set%d.txt --stats "
                 "2>err%d.txt",
                 mpirun_prefix(np), bin, job, np, np);
        if (sh(cmd, out, sizeof out) != 0)
            TEST_FAILF("%s:\n%s", cmd, out);
        char path[64];
        snprintf(path, sizeof path, "err%d.txt", np);
        char *err = slurp(path, NULL);
        fprintf(stderr, "%s", err);
        if (np == 3) { /* each rank its own shard's samples and store */
            ASSERT_CONTAINS(err, "rank 0 of 3");
            ASSERT_CONTAINS(err, "(shard 0: samples 0..30, set/shard-0-of-3)");
            ASSERT_CONTAINS(err, "(shard 1: samples 30..60, set/shard-1-of-3)");
            ASSERT_CONTAINS(err, "(shard 2: samples 60..90, set/shard-2-of-3)");
        } else {
            ASSERT_CONTAINS(err, "set is a set of 3 shards on 2 ranks");
            ASSERT(strstr(err, "(shard ") == NULL);
        }
        for (int q = 0; q < 2; q++) {
            double a = json_num(out, "objective", q), b = json_num(js1, "objective", q);
            if (fabs(a - b) > 1e-6 * fabs(b))
                TEST_FAILF("np %d objective #%d: %.12g vs %.12g", np, q, a, b);
        }
        ASSERT(json_num(out, "lambda", 0) == json_num(js1, "lambda", 0));
        ASSERT(json_num(out, "test_correct", 0) == json_num(js1, "test_correct", 0));
        ASSERT(json_num(out, "n_train", 0) == 60);
        snprintf(path, sizeof path, "set%d.txt", np);
        char *p2 = slurp(path, NULL);
        ASSERT_STREQ(p1, p2);
        free(p2);
        free(err);
    }
    /* the manifest names a store that moved: every rank stops before any row is read, naming
     * the rank, the shard and its path; nothing is written */
    ASSERT_EQ(system("mv set/shard-1-of-3 moved"), 0);
    snprintf(cmd, sizeof cmd, "%s %s fit --mpi --store set --task t %s --predictions gone.txt 2>&1",
             mpirun_prefix(3), bin, job);
    ASSERT_NE(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "rank 0 of 3");
    ASSERT_CONTAINS(out, "set/shard-1-of-3");
    ASSERT_CONTAINS(out, "moved or removed");
    FILE *gone = fopen("gone.txt", "r");
    ASSERT(gone == NULL);
    free(js1);
    free(p1);
}

/* --mem-limit below the matrix: the job runs on a matrix spilled to H2T_SPILL_DIR and writes
 * the in-memory head byte for byte; a spill directory that does not exist is an error naming
 * it (the over-budget path is the spill, not a refusal) */
TEST_TIMEOUT(fit_spill_equals_memory, 120)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    make_store();
    char cmd[4096], out[16384];
    const char *methods[] = {"all --lambdas 0.01,0.001", "head2toe --lambdas 0.03 --keep 0.3,0.6"};
    for (int q = 0; q < 2; q++) {
        snprintf(
            cmd, sizeof cmd,
            "rm -rf mem spill && %s fit --store st --task t --folds 3 --method %s --export mem "
            "2>&1 && H2T_SPILL_DIR=%s %s fit --store st --task t --folds 3 --method %s "
            "--mem-limit 1000 --export spill 2>&1",
            bin, methods[q], test_tmpdir(), bin, methods[q]);
        if (sh(cmd, out, sizeof out) != 0)
            TEST_FAILF("%s:\n%s", cmd, out);
        const char *files[] = {"weights.npy", "bias.npy", "features.npy", "cv_acc.npy"};
        for (int f = 0; f < 4; f++) {
            char pa[64], pb[64];
            size_t la, lb;
            snprintf(pa, sizeof pa, "mem/%s", files[f]);
            snprintf(pb, sizeof pb, "spill/%s", files[f]);
            char *a = slurp(pa, &la), *b = slurp(pb, &lb);
            ASSERT_EQ(la, lb);
            if (memcmp(a, b, la) != 0)
                TEST_FAILF("%s differs from the in-memory run (%s)", files[f], methods[q]);
            free(a);
            free(b);
        }
        char *ja = slurp("mem/result.json", NULL), *jb = slurp("spill/result.json", NULL);
        for (int o = 0; o < 2; o++)
            ASSERT(json_num(ja, "objective", o) == json_num(jb, "objective", o));
        free(ja);
        free(jb);
    }
    snprintf(cmd, sizeof cmd,
             "H2T_SPILL_DIR=%s/no/such/dir %s fit --store st --task t --method all --mem-limit "
             "1000 2>&1",
             test_tmpdir(), bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 1);
    ASSERT_CONTAINS(out, "no/such/dir");
    ASSERT_CONTAINS(out, "H2T_SPILL_DIR");
    /* the spilled matrix's file is unlinked as soon as it is mapped: nothing is left behind */
    ASSERT_EQ(sh("ls | grep -c h2tdb-design", out, sizeof out), 1);
}
