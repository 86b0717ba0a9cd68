/* tests/test_store_cli.c - `h2tdb ls`, `h2tdb layers`, `h2tdb dump` ($H2T_BIN) on a store the
 * test builds through the store API. */
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"
#include "tests/fixture.h"
#include "tests/test.h"

#include <sys/wait.h>

static const char *bin(void)
{
    const char *b = getenv("H2T_BIN");
    if (!b || !b[0])
        TEST_FAILF("H2T_BIN is not set (make test sets it)");
    return b;
}

/* run `$H2T_BIN args` through sh; stdout (and stderr when merge) into out; exit status */
static int run(const char *args, int merge, char *out, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s %s %s", bin(), args, merge ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p)
        TEST_FAILF("popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static float cval(uint32_t l, uint32_t s, uint32_t j)
{
    return (float)l * 100.0f + (float)s + (float)j * 0.125f;
}

static float cval_fn(void *ctx, uint32_t l, uint32_t s, uint32_t j, uint32_t label)
{
    (void)ctx;
    (void)label;
    return cval(l, s, j);
}

static void build_store(void)
{
    static const char *const cn[2] = {"circle", "square \"q\""};
    static const h2t_layer_info L[2] = {
        {.name = "conv1/relu:0", .op = "Relu", .rank = 4, .shape = {16, 32, 32}, .dim = 10},
        {.name = "logits", .op = "Gemm", .rank = 2, .shape = {2}, .dim = 2},
    };
    /* labels 0 1 0 1 0 1, all train; 4 of the 6 samples written */
    fixture_spec sp = {
        .source = {.name = "shapes", .uri = "folder:/data/shapes", .class_names = cn},
        .model = {.name = "tinynet", .input_shape = {0, 3, 32, 32}},
        .ext = {.name = "shapes-tiny", .dtype = H2T_DTYPE_F32},
        .samples = {.n = 6, .classes = 2, .train = 6},
        FIXTURE_LAYERS(L),
        .features = {.written = 4, .value = cval_fn}};
    h2t_store *st;
    uint32_t ext;
    ASSERT_OK(fixture_store_build("db", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &sp, &st, &ext));
    h2t_task t = {0};
    snprintf(t.name, sizeof(t.name), "circles-vs-squares");
    t.extraction = ext;
    t.n_classes = 2;
    uint32_t tr[2] = {0, 1}, trl[2] = {0, 1};
    t.n_train = 2;
    t.train = tr;
    t.train_labels = trl;
    ASSERT_OK(h2t_store_task_put(st, &t, 0));
    uint64_t jid;
    ASSERT_OK(h2t_store_job_create(st, "x", 1, &jid));
    ASSERT_OK(h2t_store_job_finish(st, jid, H2T_JOB_FAILED, "diverged", NULL, 0));
    h2t_store_close(st);
}

TEST(store_cli_ls)
{
    build_store();
    static char out[65536];
    ASSERT_EQ(run("ls --store db", 1, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "shapes");
    ASSERT_CONTAINS(out, "folder:/data/shapes");
    ASSERT_CONTAINS(out, "tinynet");
    ASSERT_CONTAINS(out, "shapes-tiny");
    ASSERT_CONTAINS(out, "4/6");
    ASSERT_CONTAINS(out, "running");
    ASSERT_CONTAINS(out, "circles-vs-squares");
    ASSERT_CONTAINS(out, "diverged");
    ASSERT_EQ(run("ls --store=db --json", 0, out, sizeof(out)), 0);
    ASSERT(out[0] == '{');
    ASSERT_CONTAINS(out, "\"name\":\"shapes-tiny\"");
    ASSERT_CONTAINS(out, "\"samples_done\":4");
    ASSERT_CONTAINS(out, "\"square \\\"q\\\"\"");
    ASSERT_CONTAINS(out, "\"state\":\"failed\"");
    ASSERT_CONTAINS(out, "\"tasks\":[{\"name\":\"circles-vs-squares\"");
    /* bad input: named, non-zero */
    ASSERT_EQ(run("ls --store nowhere", 1, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "h2tdb ls:");
    ASSERT_CONTAINS(out, "nowhere");
    ASSERT_EQ(run("ls", 1, out, sizeof(out)), 2);
    ASSERT_CONTAINS(out, "--store");
    ASSERT_EQ(run("ls --store db --bogus", 1, out, sizeof(out)), 2);
    ASSERT_CONTAINS(out, "--bogus");
    ASSERT_EQ(run("ls --help", 1, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "usage: h2tdb ls");
    /* a directory that is not a store */
    ASSERT_EQ(system("mkdir -p plain && echo hi > plain/readme"), 0);
    ASSERT_EQ(run("ls --store plain", 1, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "plain");
}

TEST(store_cli_layers)
{
    build_store();
    static char out[65536];
    ASSERT_EQ(run("layers --store db shapes-tiny", 1, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "conv1/relu:0");
    ASSERT_CONTAINS(out, "Relu");
    ASSERT_CONTAINS(out, "16x32x32");
    ASSERT_CONTAINS(out, "logits");
    ASSERT_CONTAINS(out, "12 features");
    ASSERT_EQ(run("layers --store db 1 --json", 0, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "\"name\":\"logits\",\"op\":\"Gemm\",\"shape\":[2],\"dim\":2,"
                         "\"offset\":10");
    ASSERT_CONTAINS(out, "\"shape\":[16,32,32]");
    ASSERT_EQ(run("layers --store db nosuch", 1, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "nosuch");
    ASSERT_EQ(run("layers --store db", 1, out, sizeof(out)), 2);
    ASSERT_EQ(run("layers --help", 1, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "usage: h2tdb layers");
}

TEST(store_cli_dump)
{
    build_store();
    static char out[65536];
    ASSERT_EQ(
        run("dump --store db shapes-tiny --layer conv1/relu:0 --sample 3", 1, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "10 values");
    ASSERT_CONTAINS(out, "3 3.125 3.25");
    ASSERT_EQ(run("dump --store db 1 --layer logits --sample 2 --json", 0, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "\"values\":[102,102.125]");
    /* --raw: exactly dim little-endian floats */
    ASSERT_EQ(system("$H2T_BIN dump --store db 1 --layer conv1/relu:0 --sample 1 --raw > v.bin"),
              0);
    FILE *f = fopen("v.bin", "rb");
    ASSERT(f != NULL);
    uint8_t buf[64];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    ASSERT_EQ(n, 40);
    for (uint32_t j = 0; j < 10; j++) {
        uint32_t x = (uint32_t)buf[4 * j] | (uint32_t)buf[4 * j + 1] << 8 |
                     (uint32_t)buf[4 * j + 2] << 16 | (uint32_t)buf[4 * j + 3] << 24;
        float v;
        memcpy(&v, &x, 4);
        ASSERT_EQ(v, cval(0, 1, j));
    }
    /* errors name the bad input */
    ASSERT_EQ(run("dump --store db 1 --layer logits --sample 4", 1, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "sample 4 not stored");
    ASSERT_EQ(run("dump --store db 1 --layer fc7 --sample 0", 1, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "fc7");
    ASSERT_EQ(run("dump --store db 1 --layer logits --sample x1", 1, out, sizeof(out)), 2);
    ASSERT_CONTAINS(out, "x1");
    ASSERT_EQ(run("dump --store db 1 --layer logits --sample -1", 1, out, sizeof(out)), 2);
    ASSERT_EQ(run("dump --store db 7 --layer logits --sample 0", 1, out, sizeof(out)), 1);
    ASSERT_CONTAINS(out, "'7'");
    ASSERT_EQ(run("dump --store db 1 --layer logits", 1, out, sizeof(out)), 2);
    ASSERT_EQ(run("dump --store db 1 --layer logits --sample 0 --raw --json", 1, out, sizeof(out)),
              2);
    ASSERT_EQ(run("dump --help", 1, out, sizeof(out)), 0);
    ASSERT_CONTAINS(out, "--raw");
}
