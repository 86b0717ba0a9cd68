/*
 * tests/test_safety.c - the command line's refusals and the store's life cycle through
 * $H2T_BIN: options outside their range, and (see the store tests for the API) rm, verify and
 * compact on a store the test builds, compaction against a concurrent writer.
 */
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"
#include "tests/fixture.h"
#include "tests/test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* run `$H2T_BIN args` through sh with stderr merged into out; the exit status */
static int run(const char *args, char *out, size_t cap)
{
    const char *b = getenv("H2T_BIN");
    if (!b || !b[0])
        TEST_FAILF("H2T_BIN is not set (make test sets it)");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", b, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        TEST_FAILF("popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Options outside their range are refused quoting the value typed and the range, never
 * clamped to another number (--steps 99999999999 was queued as 100000000). */
TEST(cli_options_out_of_range_refused)
{
    static const struct {
        const char *args, *want;
    } cases[] = {
        {"train --task t --steps 99999999999", "--steps 99999999999: want 1..100000000"},
        {"train --task t --folds 10000", "--folds 10000: want 1..100"},
        {"train --task t --threads 100000", "--threads 100000: want 0..256"},
        {"task create x --extraction e --shots 99999999999", "--shots 99999999999: want 0.."},
        {"serve --store s --workers 100000", "--workers 100000: want 1..64"},
        {"serve --store s --max-conns 0", "--max-conns 0: want 1..1000000"},
        {"serve --store s --idle-timeout 999999", "--idle-timeout 999999: want 1..86400"},
        {"serve --store s --max-frame 99999999999", "--max-frame 99999999999: want 1024.."},
        {"serve --store s --max-selection 0", "--max-selection 0: want 1..1073741824"},
    };
    char out[8192];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = run(cases[i].args, out, sizeof(out));
        if (rc != 2 || !strstr(out, cases[i].want))
            TEST_FAILF("h2tdb %s: exit %d, output:\n%s\n(wanted exit 2 and \"%s\")", cases[i].args,
                       rc, out, cases[i].want);
    }
}

static float safety_value(void *ctx, uint32_t layer, uint32_t sample, uint32_t j, uint32_t label)
{
    (void)label;
    float base = ctx ? *(const float *)ctx : 0.0f; /* keeps the extractions' values apart */
    return base + (float)(layer * 1000 + sample) + (float)j / 512.0f;
}

/* a store with two extractions ("big", 2000 samples x 256 + 16 features, and "small"), a task
 * over "big" and two jobs (one finished, one queued) */
static void build(const char *dir, uint32_t *big, uint32_t *small)
{
    static const h2t_layer_info L[2] = {
        {.name = "conv", .op = "Relu", .rank = 2, .shape = {256}, .dim = 256},
        {.name = "fc", .op = "Gemm", .rank = 2, .shape = {16}, .dim = 16},
    };
    fixture_spec sp = {.ext = {.name = "big", .hash = 1, .done = 1},
                       .samples = {.n = 2000, .classes = 4, .train = 1500},
                       FIXTURE_LAYERS(L),
                       .features = {.written = 2000, .value = safety_value}};
    h2t_store *st;
    ASSERT_OK(fixture_store_build(dir, H2T_STORE_CREATE | H2T_STORE_NOSYNC, &sp, &st, big));
    h2t_store_close(st);
    sp.ext.name = "small";
    sp.ext.hash = 2;
    sp.samples.n = 100;
    sp.samples.train = 80;
    sp.features.written = 100;
    static float small_base = 100000.0f;
    sp.features.ctx = &small_base;
    ASSERT_OK(fixture_store_build(dir, H2T_STORE_NOSYNC, &sp, &st, small));
    h2t_task t = {0};
    snprintf(t.name, sizeof(t.name), "over-big");
    t.extraction = *big;
    t.n_classes = 2;
    uint32_t tr[2] = {0, 1}, trl[2] = {0, 1};
    t.n_train = 2;
    t.train = tr;
    t.train_labels = trl;
    ASSERT_OK(h2t_store_task_put(st, &t, 0));
    uint64_t a, b;
    ASSERT_OK(h2t_store_job_create(st, "x", 1, &a));
    ASSERT_OK(h2t_store_job_finish(st, a, H2T_JOB_FAILED, "diverged", NULL, 0));
    ASSERT_OK(h2t_store_job_create(st, "y", 1, &b));
    h2t_store_close(st);
}

/* h2tdb verify: ok on a sound store; a flipped byte in a feature block is reported naming the
 * extraction, layer and samples, with exit status 1 */
TEST(cli_verify_reports_damage)
{
    uint32_t big, small;
    build("db", &big, &small);
    char out[8192];
    int rc = run("verify --store db", out, sizeof(out));
    if (rc != 0 || !strstr(out, ": ok"))
        TEST_FAILF("verify on a sound store: exit %d\n%s", rc, out);
    ASSERT_CONTAINS(out, "2 extraction(s)");
    /* flip a byte of layer "fc" in the first block of "small" with raw LMDB */
    FILE *f = fopen("db/data.mdb", "r+b");
    ASSERT(f != NULL);
    /* find the float of sample 7, feature 3 of layer fc in "small" */
    float small_base = 100000.0f;
    float needle = safety_value(&small_base, 1, 7, 3, 0);
    uint8_t buf[65536];
    size_t n, base = 0, hit = SIZE_MAX;
    while (hit == SIZE_MAX && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
        for (size_t i = 0; i + 4 <= n; i += 4)
            if (!memcmp(buf + i, &needle, 4)) {
                hit = base + i;
                break;
            }
        base += n;
    }
    ASSERT(hit != SIZE_MAX);
    fseek(f, (long)hit, SEEK_SET);
    float bad = 932.5f;
    fwrite(&bad, 4, 1, f);
    fclose(f);
    rc = run("verify --store db", out, sizeof(out));
    if (rc != 1 || !strstr(out, "damaged: extraction 2 'small' layer 1 'fc' samples 0..99"))
        TEST_FAILF("verify on a damaged store: exit %d\n%s", rc, out);
    /* and a read names it too, never the value */
    rc = run("dump --store db small --layer fc --sample 7", out, sizeof(out));
    ASSERT_EQ(rc, 1);
    ASSERT_CONTAINS(out, "checksum");
}

/* h2tdb rm refuses what others depend on unless --force, and refuses while a server holds the
 * store; h2tdb compact gives the space back and the store reads the same afterwards */
TEST(cli_rm_and_compact)
{
    uint32_t big, small;
    build("db", &big, &small);
    char out[8192];
    ASSERT_EQ(run("rm --store db extraction big", out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "used by 1 task(s): 'over-big'");
    ASSERT_EQ(run("rm --store db job 2", out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "job 2 is queued");
    ASSERT_EQ(run("rm --store db job 1", out, sizeof(out)), 0);
    ASSERT_EQ(run("rm --store db job 1", out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "no job 1");
    /* while a server (here: this process) holds the service lock, rm and compact refuse */
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", 0, &st));
    ASSERT_OK(h2t_store_service_lock(st));
    char pid[64];
    snprintf(pid, sizeof(pid), "in use by process %ld", (long)getpid());
    ASSERT_EQ(run("rm --store db job 2 --force", out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, pid);
    ASSERT_EQ(run("compact --store db", out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, pid);
    h2t_store_close(st);
    ASSERT_EQ(run("rm --store db extraction big --force", out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "removed extraction 1 and 1 task(s)");
    ASSERT_EQ(run("rm --store db task over-big", out, sizeof(out)), 1);
    ASSERT_EQ(run("verify --store db", out, sizeof(out)), 0);
    struct stat sb;
    ASSERT_EQ(stat("db/data.mdb", &sb), 0);
    off_t before = sb.st_size;
    ASSERT_EQ(run("compact --store db", out, sizeof(out)), 0);
    ASSERT_EQ(stat("db/data.mdb", &sb), 0);
    if (sb.st_size * 2 > before)
        TEST_FAILF("compact: %lld -> %lld bytes", (long long)before, (long long)sb.st_size);
    ASSERT_EQ(run("verify --store db", out, sizeof(out)), 0);
    ASSERT_OK(h2t_store_open("db", 0, &st));
    float v[16];
    ASSERT_OK(h2t_store_feature_get(st, small, 1, 99, v, 16));
    float small_base = 100000.0f;
    ASSERT(v[5] == safety_value(&small_base, 1, 99, 5, 0));
    uint32_t id;
    ASSERT_EQ(h2t_store_extraction_find(st, "big", &id), H2T_ENOTFOUND);
    h2t_store_close(st);
    ASSERT_EQ(access("db/compact.tmp", F_OK), -1);
}

/* Compaction needs the store to itself: while another process has it open (here a child that
 * writes feature batches, as an extraction does) h2tdb compact is refused naming that process,
 * and the writer's batches all stay; while a compaction holds the store, opening it is refused
 * naming the compacting process. */
TEST(compact_refuses_while_store_open)
{
    static const h2t_layer_info L[1] = {
        {.name = "fc", .op = "Gemm", .rank = 2, .shape = {8}, .dim = 8}};
    fixture_spec sp = {.ext = {.name = "growing", .hash = 3},
                       .samples = {.n = 1000000, .classes = 2, .train = 900000},
                       FIXTURE_LAYERS(L),
                       .features = {.written = 10, .value = safety_value}};
    h2t_store *st;
    uint32_t eid;
    ASSERT_OK(fixture_store_build("db", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &sp, &st, &eid));
    h2t_store_close(st);
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        close(ready[0]);
        if (h2t_store_open("db", H2T_STORE_NOSYNC, &st) != 0)
            _exit(10);
        for (uint32_t at = 10;; at++) {
            if (fixture_features_write(st, eid, &sp, at, 1) != 0)
                _exit(11);
            if (at == 12 && write(ready[1], "r", 1) != 1)
                _exit(12);
        }
    }
    close(ready[1]);
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    char out[8192], want[64];
    int rc = run("compact --store db", out, sizeof(out));
    uint64_t before = 0, after = 0;
    int arc = h2t_store_compact("db", &before, &after);
    char detail[1024];
    snprintf(detail, sizeof(detail), "%s", h2t_err_detail());
    int status;
    kill(child, SIGKILL);
    ASSERT_EQ(waitpid(child, &status, 0), child);
    if (!WIFSIGNALED(status))
        TEST_FAILF("the writer stopped by itself (status %d)", status);
    snprintf(want, sizeof(want), "open in process %ld", (long)child);
    if (rc != 1 || !strstr(out, want))
        TEST_FAILF("compact while a writer runs: exit %d, output:\n%s", rc, out);
    ASSERT_EQ(arc, H2T_EBUSY);
    ASSERT_CONTAINS(detail, want);
    ASSERT_EQ(access("db/compact.tmp", F_OK), -1);
    /* the writer's committed batches are all there and read the same after a compaction */
    ASSERT_OK(h2t_store_open("db", 0, &st));
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(st, eid, &e));
    uint32_t done = e->samples_done;
    h2t_extraction_destroy(e);
    h2t_store_close(st);
    ASSERT(done >= 13);
    ASSERT_EQ(run("compact --store db", out, sizeof(out)), 0);
    ASSERT_EQ(run("verify --store db", out, sizeof(out)), 0);
    ASSERT_OK(h2t_store_open("db", 0, &st));
    ASSERT_OK(h2t_store_extraction_get(st, eid, &e));
    ASSERT_EQ(e->samples_done, done);
    h2t_extraction_destroy(e);
    float v[8];
    ASSERT_OK(h2t_store_feature_get(st, eid, 0, done - 1, v, 8));
    ASSERT(v[3] == safety_value(NULL, 0, done - 1, 3, 0));
    h2t_store_close(st);
    /* a compaction in progress: the open lock held exclusively with its pid */
    int fd = open("db/" H2T_STORE_OPEN_LOCK, O_RDWR);
    ASSERT(fd >= 0);
    ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
    ASSERT_EQ(pwrite(fd, "4242\n", 5, 0), 5);
    ASSERT_EQ(h2t_store_open("db", H2T_STORE_RDONLY, &st), H2T_EBUSY);
    ASSERT_CONTAINS(h2t_err_detail(), "being compacted by process 4242");
    ASSERT_EQ(run("verify --store db", out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "being compacted by process 4242");
    close(fd);
    ASSERT_OK(h2t_store_open("db", H2T_STORE_RDONLY, &st));
    h2t_store_close(st);
}
