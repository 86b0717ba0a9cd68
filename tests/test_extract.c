/* The extraction pass end to end on tests/data/extract_tiny.onnx (made by
 * tests/data/make_extract_tiny.py): stored features against a hand computation, reuse of the
 * same request, selection / limit / scale, bad input before anything is written, the SIGKILL
 * resume test, and the `h2tdb extract` command. */
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "extract/extract.h"
#include "tests/fixture.h"
#include "tests/test.h"

#include <jpeglib.h>

#include <png.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ---- fixtures ---- */

/* n float32 samples 1 x 8 x 8 in [-1, 1) and labels i % 3 */
static float *make_float_npy(const char *img, const char *lab, uint32_t n)
{
    float *x = malloc(sizeof(float) * 64 * n);
    uint32_t s = 12345;
    for (uint32_t i = 0; i < 64 * n; i++)
        x[i] = (float)(fixture_lcg32(&s) % 2000) / 1000.0f - 1.0f;
    char shape[64];
    FILE *f = fopen(img, "wb");
    snprintf(shape, sizeof shape, "(%u, 1, 8, 8)", n);
    fixture_npy_header(f, "<f4", shape);
    fwrite(x, sizeof(float), 64 * (size_t)n, f);
    fclose(f);
    f = fopen(lab, "wb");
    snprintf(shape, sizeof shape, "(%u,)", n);
    fixture_npy_header(f, "<i4", shape);
    for (uint32_t i = 0; i < n; i++) {
        int32_t v = (int32_t)(i % 3);
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
    return x;
}

/* The tiny model by hand, T = 8: conv/relu 2x8x8 -> n = 2, p = 4 -> 2x2x2 in (H, W, C)
 * order; gap 2x1x1 -> p = 0 -> global average (2); fc 3 as is. */
static void hand(const float *x, float conv[8], float relu[8], float gap[2], float fc[3])
{
    for (int c = 0; c < 2; c++) {
        double all = 0;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                double a = 0, r = 0;
                for (int h = 4 * i; h < 4 * i + 4; h++)
                    for (int w = 4 * j; w < 4 * j + 4; w++) {
                        double v = c == 0 ? x[h * 8 + w] + 0.5 : -x[h * 8 + w];
                        a += v;
                        r += v > 0 ? v : 0;
                    }
                conv[(i * 2 + j) * 2 + c] = (float)(a / 16);
                relu[(i * 2 + j) * 2 + c] = (float)(r / 16);
                all += r;
            }
        gap[c] = (float)(all / 64);
    }
    const float W[2][3] = {{1, 2, 0}, {-1, 0, 3}}, b[3] = {0.25f, -0.5f, 1};
    for (int k = 0; k < 3; k++)
        fc[k] = gap[0] * W[0][k] + gap[1] * W[1][k] + b[k];
}

static const char *tiny_model(void)
{
    return test_src_path("tests/data/extract_tiny.onnx");
}

static h2t_extract_opts tiny_opts(const char *spec)
{
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = tiny_model();
    o.data_spec = spec;
    o.target_size = 8;
    o.batch = 4;
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

/* ---- tests ---- */

TEST(extract_pass_hand_computed)
{
    float *x = make_float_npy("x.npy", "y.npy", 10);
    h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
    o.name = "tiny";
    h2t_extract_result r;
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_EQ(r.reused, 0);
    ASSERT_EQ(r.computed, 10);
    ASSERT_EQ(r.n_layers, 4);
    ASSERT_EQ(r.total_dim, 8 + 8 + 2 + 3);

    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", 0, &st));
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(st, r.extraction, &e));
    ASSERT_STREQ(e->name, "tiny");
    ASSERT_EQ(e->state, H2T_EXT_DONE);
    ASSERT_EQ(e->samples_done, 10);
    ASSERT_EQ(e->n_layers, 4);
    const char *names[4] = {"conv", "relu", "gap", "fc"},
               *ops[4] = {"Conv", "Relu", "GlobalAveragePool", "Gemm"};
    const uint32_t dims[4] = {8, 8, 2, 3};
    for (int l = 0; l < 4; l++) {
        ASSERT_STREQ(e->layers[l].name, names[l]);
        ASSERT_STREQ(e->layers[l].op, ops[l]);
        ASSERT_EQ(e->layers[l].dim, dims[l]);
    }
    ASSERT_EQ(e->layers[0].shape[0], 2);
    ASSERT_EQ(e->layers[0].shape[2], 8);
    ASSERT_CONTAINS(e->config, "input=float32-as-is");
    h2t_extraction_destroy(e);
    for (uint32_t s = 0; s < 10; s++) {
        float want[4][8], got[8];
        hand(x + 64 * s, want[0], want[1], want[2], want[3]);
        for (uint32_t l = 0; l < 4; l++) {
            ASSERT_OK(h2t_store_feature_get(st, r.extraction, l, s, got, dims[l]));
            for (uint32_t k = 0; k < dims[l]; k++)
                ASSERT_NEAR(got[k], want[l][k], 1e-5);
        }
    }
    h2t_source *src;
    ASSERT_OK(h2t_store_source_get(st, r.source, &src));
    ASSERT_EQ(src->n_samples, 10);
    ASSERT_EQ(src->n_classes, 3);
    ASSERT_EQ(src->labels[4], 1);
    h2t_source_destroy(src);
    h2t_store_close(st);

    /* the same request again: reused, nothing computed */
    h2t_extract_result r2;
    ASSERT_OK(run_once("st", &o, &r2));
    ASSERT_EQ(r2.reused, 1);
    ASSERT_EQ(r2.computed, 0);
    ASSERT_EQ(r2.extraction, r.extraction);
    /* a changed config (target size, limit) is a new extraction; the name must then differ */
    o.target_size = 16;
    ASSERT_EQ(run_once("st", &o, &r2), H2T_EEXIST);
    o.name = NULL;
    ASSERT_OK(run_once("st", &o, &r2));
    ASSERT_NE(r2.extraction, r.extraction);
    ASSERT_EQ(r2.total_dim, 2 * 2 * 2 * 2 + 2 + 3); /* T/C = 8 -> n = 2, p = 4 still */
    o.target_size = 8;
    o.limit = 5;
    ASSERT_OK(run_once("st", &o, &r2));
    ASSERT_EQ(r2.n_samples, 5);
    ASSERT_EQ(r2.computed, 5);
    ASSERT_EQ(r2.source, r.source); /* --limit keeps the source whole */
    /* a forward batch above 1 is part of the identity (batched GEMMs may differ in the last
     * bits); commits are then whole forward batches (4 rounds up to 6) */
    o.limit = 0;
    o.forward_batch = 3;
    ASSERT_OK(run_once("st", &o, &r2));
    ASSERT_CONTAINS(r2.config, "forward-batch=3");
    ASSERT_NE(r2.extraction, r.extraction);
    ASSERT_OK(h2t_store_open("st", 0, &st));
    for (uint32_t s = 0; s < 10; s++) {
        float want[4][8], got[3];
        hand(x + 64 * s, want[0], want[1], want[2], want[3]);
        ASSERT_OK(h2t_store_feature_get(st, r2.extraction, 3, s, got, 3));
        for (int k = 0; k < 3; k++)
            ASSERT_NEAR(got[k], want[3][k], 1e-5);
    }
    h2t_store_close(st);
    free(x);
}

static void make_idx_gz(uint32_t ntrain, uint32_t ntest)
{
    mkdir("mn", 0755);
    const char *f[4] = {"mn/train-images-idx3-ubyte.gz", "mn/train-labels-idx1-ubyte.gz",
                        "mn/t10k-images-idx3-ubyte.gz", "mn/t10k-labels-idx1-ubyte.gz"};
    uint32_t s = 7;
    for (int split = 0; split < 2; split++) {
        uint32_t n = split ? ntest : ntrain;
        uint8_t hdr[16] = {0, 0, 8, 3};
        h2t_be32_put(hdr + 4, n);
        h2t_be32_put(hdr + 8, 28);
        h2t_be32_put(hdr + 12, 28);
        gzFile g = gzopen(f[split * 2], "wb");
        gzwrite(g, hdr, 16);
        for (uint32_t i = 0; i < n * 784; i++) {
            uint8_t v = (uint8_t)(fixture_lcg32(&s) & 255);
            gzwrite(g, &v, 1);
        }
        gzclose(g);
        uint8_t lh[8] = {0, 0, 8, 1};
        h2t_be32_put(lh + 4, n);
        g = gzopen(f[split * 2 + 1], "wb");
        gzwrite(g, lh, 8);
        for (uint32_t i = 0; i < n; i++) {
            uint8_t v = (uint8_t)(i % 10);
            gzwrite(g, &v, 1);
        }
        gzclose(g);
    }
}

TEST(extract_pass_idx_selection_and_scale)
{
    make_idx_gz(6, 4);
    h2t_extract_opts o = tiny_opts("idx:mn");
    o.n_train = 3;
    o.n_test = 2;
    h2t_extract_result r;
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_EQ(r.n_samples, 5);
    ASSERT_CONTAINS(r.config, "scale=0,1"); /* from the model's metadata */
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", 0, &st));
    h2t_source *src;
    ASSERT_OK(h2t_store_source_get(st, r.source, &src));
    ASSERT_STREQ(src->name, "mn[train:3,test:2]");
    ASSERT_EQ(src->n_samples, 5);
    ASSERT_EQ(src->split[2], H2T_SPLIT_TRAIN);
    ASSERT_EQ(src->split[3], H2T_SPLIT_TEST);
    ASSERT_EQ(src->labels[3], 0); /* first test image */
    h2t_source_destroy(src);
    /* sample 3 = the first test image: resized 28 -> 8 and scaled to [0, 1] by hand here */
    h2t_data *d;
    ASSERT_OK(h2t_data_open("idx:mn", &d));
    h2t_image im;
    ASSERT_OK(h2t_data_read(d, 6, &im));
    h2t_prep pp = {1, 8, 8, 0, 1};
    float x[64], want[4][8], got[8];
    ASSERT_OK(h2t_prep_image(&pp, &im, x));
    h2t_data_close(d);
    for (int i = 0; i < 64; i++)
        ASSERT(x[i] >= 0 && x[i] <= 1);
    hand(x, want[0], want[1], want[2], want[3]);
    ASSERT_OK(h2t_store_feature_get(st, r.extraction, 3, 3, got, 3));
    for (int k = 0; k < 3; k++)
        ASSERT_NEAR(got[k], want[3][k], 1e-5);
    h2t_store_close(st);
    /* --scale overrides the model: another extraction with other numbers */
    o.has_scale = 1;
    o.scale_lo = -1;
    o.scale_hi = 1;
    h2t_extract_result r2;
    ASSERT_OK(run_once("st", &o, &r2));
    ASSERT_NE(r2.extraction, r.extraction);
    ASSERT_CONTAINS(r2.config, "scale=-1,1");
    ASSERT_EQ(r2.source, r.source);
    /* f16 storage is its own extraction too */
    o.dtype = H2T_DTYPE_F16;
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_NE(r2.extraction, r.extraction);
}

TEST(extract_pass_layers_regex)
{
    free(make_float_npy("x.npy", "y.npy", 3));
    h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
    o.layers_regex = "^(relu|fc|flat)$"; /* the regex replaces the op exclusions */
    h2t_extract_plan *p;
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    uint32_t n;
    uint64_t td;
    const h2t_layer_info *li = h2t_extract_plan_layers(p, &n, &td);
    ASSERT_EQ(n, 3);
    ASSERT_STREQ(li[0].name, "relu");
    ASSERT_STREQ(li[1].name, "flat");
    ASSERT_STREQ(li[2].name, "fc");
    ASSERT_EQ(td, 8 + 2 + 3);
    h2t_extract_plan_destroy(p);
    o.layers_regex = "nothing-matches";
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_ENOTFOUND);
    o.layers_regex = "(";
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "layer regex");
}

TEST(extract_pass_bad_input_writes_nothing)
{
    free(make_float_npy("x.npy", "y.npy", 3));
    h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
    h2t_extract_plan *p = NULL;
    o.model_path = "missing.onnx";
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "missing.onnx");
    FILE *f = fopen("junk.onnx", "wb");
    fputs("this is not a protobuf at all", f);
    fclose(f);
    o.model_path = "junk.onnx";
    ASSERT(h2t_extract_plan_create(&o, &p) < 0);
    o.model_path = tiny_model();
    /* float tensors of another shape cannot feed the model */
    f = fopen("small.npy", "wb");
    fixture_npy_header(f, "<f4", "(2, 1, 4, 4)");
    float z[32] = {0};
    fwrite(z, 4, 32, f);
    fclose(f);
    o.data_spec = "npy:small.npy";
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_ESHAPE);
    ASSERT_CONTAINS(h2t_err_detail(), "1x4x4");
    o.data_spec = "npy:x.npy,y.npy";
    o.n_train = 5; /* more than the source holds */
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EINVAL);
    o.n_train = UINT32_MAX;
    o.batch = 0;
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EINVAL);
    ASSERT(p == NULL);
    struct stat sb;
    ASSERT(stat("st", &sb) != 0); /* no store was created by any of this */
}

static int stop_after_two(void *ctx, uint32_t done, uint32_t total)
{
    (void)total;
    int *calls = ctx;
    return ++*calls == 2 && done < total;
}

/* Compare two stores' extraction feature for feature and statistic for statistic. */
static void compare_stores(const char *a, uint32_t ea, const char *b, uint32_t eb, uint32_t n)
{
    h2t_store *sa, *sb;
    ASSERT_OK(h2t_store_open(a, 0, &sa));
    ASSERT_OK(h2t_store_open(b, 0, &sb));
    h2t_extraction *xa, *xb;
    ASSERT_OK(h2t_store_extraction_get(sa, ea, &xa));
    ASSERT_OK(h2t_store_extraction_get(sb, eb, &xb));
    ASSERT_EQ(xa->samples_done, n);
    ASSERT_EQ(xb->samples_done, n);
    ASSERT_EQ(xa->state, H2T_EXT_DONE);
    ASSERT_EQ(xb->state, H2T_EXT_DONE);
    ASSERT(memcmp(xa->config_hash, xb->config_hash, 32) == 0);
    ASSERT_EQ(xa->n_layers, xb->n_layers);
    for (uint32_t l = 0; l < xa->n_layers; l++) {
        uint32_t dim = xa->layers[l].dim;
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
        h2t_layer_stats_destroy(ta);
        h2t_layer_stats_destroy(tb);
    }
    h2t_extraction_destroy(xa);
    h2t_extraction_destroy(xb);
    h2t_store_close(sa);
    h2t_store_close(sb);
}

TEST(extract_pass_cancel_and_resume)
{
    free(make_float_npy("x.npy", "y.npy", 30));
    h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
    h2t_extract_result ref, r;
    ASSERT_OK(run_once("ref", &o, &ref));
    int calls = 0;
    o.on_batch = stop_after_two;
    o.ctx = &calls;
    ASSERT_EQ(run_once("st", &o, &r), H2T_ECANCELED);
    ASSERT_EQ(r.computed, 8);
    o.on_batch = NULL;
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_EQ(r.resumed_from, 8);
    ASSERT_EQ(r.computed, 22);
    compare_stores("ref", ref.extraction, "st", r.extraction, 30);
}

TEST(extract_pass_pool_threads_identical)
{
    /* batch 512 x 2x8x8 tensors crosses the size where pooling is split over threads */
    free(make_float_npy("x.npy", "y.npy", 1100));
    h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
    o.batch = 512;
    o.forward_batch = 512;
    o.threads = 1;
    h2t_extract_result a, b;
    ASSERT_OK(run_once("one", &o, &a));
    o.threads = 3;
    ASSERT_OK(run_once("three", &o, &b));
    compare_stores("one", a.extraction, "three", b.extraction, 1100);
    /* forward batch 1: samples spread over 3 workers with an executor each */
    o.forward_batch = 1;
    o.batch = 7;
    ASSERT_OK(run_once("w3", &o, &b));
    o.threads = 1;
    ASSERT_OK(run_once("w1", &o, &a));
    compare_stores("w1", a.extraction, "w3", b.extraction, 1100);
}

static uint32_t samples_done_of(const char *dir)
{
    h2t_store *st;
    if (h2t_store_open(dir, 0, &st) < 0)
        return 0;
    h2t_extraction **v;
    size_t n;
    uint32_t done = 0;
    if (h2t_store_extraction_list(st, &v, &n) == 0) {
        if (n)
            done = v[0]->samples_done;
        h2t_extraction_list_destroy(v, n);
    }
    h2t_store_close(st);
    return done;
}

/* on_batch of the killed children: say "the pass is running" once through a pipe */
static int signal_running(void *ctx, uint32_t done, uint32_t total)
{
    (void)done;
    (void)total;
    int *fd = ctx;
    if (*fd >= 0) {
        if (write(*fd, "r", 1) != 1)
            _exit(4);
        close(*fd);
        *fd = -1;
    }
    return 0;
}

TEST_TIMEOUT(extract_resume_after_sigkill, 120)
{
    const uint32_t N = 4000;
    free(make_float_npy("x.npy", "y.npy", N));
    h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
    o.batch = 2;
    h2t_extract_result ref, r;
    h2t_log_set_level(H2T_LOG_LWARN); /* no "resuming at" line per round */
    ASSERT_OK(run_once("ref", &o, &ref));
    double t_run = ref.t_total;
    /* Each child runs the pass; once its first batch is committed it says so, and the parent
     * kills it after a random delay of up to 1/25 of a full pass: the kills land anywhere in
     * the batch loop (reads, forward, pooling, inside commits), and at least 10 of them land
     * before the end. */
    srand(4242);
    int kills = 0;
    uint32_t last = 0;
    for (int round = 0; round < 40 && kills < 12; round++) {
        int pfd[2];
        ASSERT_EQ(pipe(pfd), 0);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            h2t_extract_opts co = o;
            int wfd = pfd[1];
            co.on_batch = signal_running;
            co.ctx = &wfd;
            h2t_extract_result cr;
            _exit(run_once("st", &co, &cr) == 0 ? 0 : 3);
        }
        close(pfd[1]);
        char ch;
        ssize_t got = read(pfd[0], &ch, 1);
        close(pfd[0]);
        double delay = t_run / 25 * rand() / RAND_MAX;
        if (got == 1)
            usleep((useconds_t)(1e6 * delay));
        kill(pid, SIGKILL);
        int status;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status)) {
            ASSERT_EQ(WEXITSTATUS(status), 0); /* finished before the kill */
            break;
        }
        ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        kills++;
        uint32_t done = samples_done_of("st");
        ASSERT_GE(done, last);  /* progress is never lost */
        ASSERT_EQ(done % 2, 0); /* the marker only moves by whole batches */
        ASSERT_LT(done, N);
        last = done;
    }
    ASSERT_GE(kills, 10);
    ASSERT_GT(last, 0);
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_EQ(r.resumed_from, last);
    ASSERT_EQ(r.computed, N - last);
    compare_stores("ref", ref.extraction, "st", r.extraction, N);
    /* and the finished store reuses */
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_EQ(r.reused, 1);
}

/* ---- the command line ---- */

static int sh(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(extract_cli)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    free(make_float_npy("x.npy", "y.npy", 6));
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd,
             "%s extract --store st --model %s --data npy:x.npy,y.npy --target-size 8 --batch 4 "
             "--name t1 --json 2>&1",
             bin, tiny_model());
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "\"extraction\": 1");
    ASSERT_CONTAINS(out, "\"computed\": 6");
    ASSERT_CONTAINS(out, "\"reused\": false");
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "\"reused\": true");
    snprintf(cmd, sizeof cmd, "%s extract --help", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "--target-size");
    /* bad input: named, exit 1, no store directory left behind */
    snprintf(cmd, sizeof cmd, "%s extract --store st2 --model %s --data idx:nowhere 2>&1", bin,
             tiny_model());
    ASSERT_EQ(sh(cmd, out, sizeof out), 1);
    ASSERT_CONTAINS(out, "nowhere");
    struct stat sb;
    ASSERT(stat("st2", &sb) != 0);
    snprintf(cmd, sizeof cmd, "%s extract --store st2 --model %s 2>&1", bin, tiny_model());
    ASSERT_EQ(sh(cmd, out, sizeof out), 2); /* usage: --data missing */
    ASSERT_CONTAINS(out, "--data");
    snprintf(cmd, sizeof cmd, "%s extract --store st2 --model %s --data npy:x.npy --dtype f64 2>&1",
             bin, tiny_model());
    ASSERT_EQ(sh(cmd, out, sizeof out), 2);
    ASSERT_CONTAINS(out, "f64");
}

/* ---- the pipelined pass: errors and cancellation of any stage stop it cleanly ---- */

/* Gray 8x8 PNG number i (pixels from i) at path. */
static void write_gray_png(const char *path, uint32_t i)
{
    uint8_t px[64];
    uint32_t s = 777 + i;
    for (int k = 0; k < 64; k++)
        px[k] = (uint8_t)(fixture_lcg32(&s) & 255);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 8;
    im.height = 8;
    im.format = PNG_FORMAT_GRAY;
    ASSERT(png_image_write_to_file(&im, path, 0, px, 0, NULL));
}

/* A read error of batch k + 1 (a file gone after planning) is met while batch k runs: the
 * pass still commits batch k, then reports the read error with the file named; the store
 * holds exactly the batches before it and resumes to the uninterrupted result. Both forward
 * modes: sample workers (threads 2) and one forward thread (threads 1, forward batch 2). */
/* An error before the pass (here a store opened read-only refuses the model record) still
 * fills the result: no stale bytes read as "holds N of M samples". */
TEST(extract_pass_result_filled_on_early_error)
{
    free(make_float_npy("x.npy", "y.npy", 8));
    h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
    h2t_extract_result r;
    ASSERT_OK(run_once("st", &o, &r)); /* a store to open read-only */
    h2t_extract_plan *p;
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_RDONLY, &st));
    memset(&r, 0xab, sizeof r);
    ASSERT_EQ(h2t_extract_plan_run(p, st, &r), H2T_EPERM);
    ASSERT_EQ(r.extraction, 0);
    ASSERT_EQ(r.computed, 0);
    ASSERT_EQ(r.resumed_from, 0);
    ASSERT_EQ(r.n_samples, 8);
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
}

/* A folder image whose header cannot be read, or a CMYK JPEG, is refused by the plan, before
 * any store is opened (it was found after batches were committed, and the extraction stayed
 * "running" for good). */
TEST(extract_plan_checks_every_image_first)
{
    ASSERT_EQ(mkdir("imgs", 0755), 0);
    ASSERT_EQ(mkdir("imgs/a", 0755), 0);
    char path[64];
    for (uint32_t i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "imgs/a/%02u.png", i);
        write_gray_png(path, i);
    }
    FILE *f = fopen("imgs/a/03.png", "r+b"); /* damage the IHDR chunk's length */
    ASSERT(f != NULL);
    fseek(f, 8, SEEK_SET);
    fputc(0x7f, f);
    fclose(f);
    h2t_extract_opts o = tiny_opts("folder:imgs");
    h2t_extract_plan *p = NULL;
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "imgs/a/03.png");
    write_gray_png("imgs/a/03.png", 3);
    /* a CMYK JPEG */
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    f = fopen("imgs/a/04.jpg", "wb");
    jpeg_stdio_dest(&ci, f);
    ci.image_width = 4;
    ci.image_height = 4;
    ci.input_components = 4;
    ci.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_start_compress(&ci, TRUE);
    uint8_t row[16] = {0};
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    fclose(f);
    jpeg_destroy_compress(&ci);
    ASSERT_EQ(h2t_extract_plan_create(&o, &p), H2T_EUNSUPPORTED);
    ASSERT_CONTAINS(h2t_err_detail(), "imgs/a/04.jpg: CMYK");
    unlink("imgs/a/04.jpg");
    ASSERT_OK(h2t_extract_plan_create(&o, &p));
    h2t_extract_plan_destroy(p);
}

TEST(extract_pass_pipeline_read_error)
{
    ASSERT_EQ(mkdir("imgs", 0755), 0);
    ASSERT_EQ(mkdir("imgs/a", 0755), 0);
    ASSERT_EQ(mkdir("imgs/b", 0755), 0);
    char path[64];
    for (uint32_t i = 0; i < 10; i++) {
        snprintf(path, sizeof path, "imgs/%s/%02u.png", i < 5 ? "a" : "b", i);
        write_gray_png(path, i);
    }
    for (int mode = 0; mode < 2; mode++) {
        h2t_extract_opts o = tiny_opts("folder:imgs");
        o.batch = 2;
        o.threads = mode == 0 ? 2 : 1;
        o.forward_batch = mode == 0 ? 1 : 2;
        h2t_extract_result ref, r;
        const char *refdir = mode == 0 ? "ref0" : "ref1", *dir = mode == 0 ? "st0" : "st1";
        ASSERT_OK(run_once(refdir, &o, &ref));
        ASSERT_EQ(ref.computed, 10);
        h2t_extract_plan *p;
        ASSERT_OK(h2t_extract_plan_create(&o, &p));
        ASSERT_EQ(unlink("imgs/b/06.png"), 0); /* sample 6: the fourth batch */
        h2t_store *st;
        ASSERT_OK(h2t_store_open(dir, H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
        int rc = h2t_extract_plan_run(p, st, &r);
        ASSERT(rc < 0);
        ASSERT_CONTAINS(h2t_err_detail(), "06.png");
        ASSERT_CONTAINS(h2t_err_detail(), "sample 6");
        ASSERT_EQ(r.computed, 6);
        h2t_extraction *e = NULL; /* marked failed, and resumable */
        ASSERT_OK(h2t_store_extraction_get(st, r.extraction, &e));
        ASSERT_EQ(e->state, H2T_EXT_FAILED);
        h2t_extraction_destroy(e);
        h2t_store_close(st);
        h2t_extract_plan_destroy(p);
        ASSERT_EQ(samples_done_of(dir), 6);
        write_gray_png("imgs/b/06.png", 6);
        ASSERT_OK(run_once(dir, &o, &r));
        ASSERT_EQ(r.resumed_from, 6);
        ASSERT_EQ(r.computed, 4);
        compare_stores(refdir, ref.extraction, dir, r.extraction, 10);
    }
}

/* A store error of batch k (an f16 extraction meeting a value above 65504 in sample 9) is met
 * while batch k + 1 runs: the pass stops with the store's detail, batch k + 1's rows are
 * dropped, and the marker stays at batch k's first sample. */
TEST(extract_pass_pipeline_write_error)
{
    float *x = make_float_npy("x.npy", "y.npy", 16);
    for (int k = 0; k < 64; k++)
        x[9 * 64 + k] = 1e6f;
    FILE *f = fopen("x.npy", "r+b");
    ASSERT(f != NULL);
    ASSERT_EQ(fseek(f, -(long)(sizeof(float) * 64 * 16), SEEK_END), 0);
    ASSERT_EQ(fwrite(x, sizeof(float), 64 * 16, f), 64 * 16);
    fclose(f);
    free(x);
    for (int threads = 1; threads <= 2; threads++) {
        h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
        o.dtype = H2T_DTYPE_F16;
        o.threads = threads;
        h2t_extract_result r;
        const char *dir = threads == 1 ? "st1" : "st2";
        ASSERT_EQ(run_once(dir, &o, &r), H2T_ENUMERIC);
        ASSERT_CONTAINS(h2t_err_detail(), "sample 9");
        ASSERT_EQ(r.computed, 8);
        ASSERT_EQ(samples_done_of(dir), 8);
    }
}

/* The time split of a pipelined pass stays consistent: the forward threads' CPU (forward +
 * pooling) and the calling thread's (read, store) are disjoint parts of the process's CPU,
 * and the loop's wall time not covered by a forward pass is within the total. */
TEST(extract_pass_pipeline_time_split)
{
    free(make_float_npy("x.npy", "y.npy", 40));
    for (int threads = 1; threads <= 2; threads++) {
        h2t_extract_opts o = tiny_opts("npy:x.npy,y.npy");
        o.threads = threads;
        h2t_extract_result r;
        ASSERT_OK(run_once(threads == 1 ? "st1" : "st2", &o, &r));
        ASSERT_EQ(r.computed, 40);
        ASSERT(r.cpu_forward >= 0 && r.cpu_pool >= 0 && r.cpu_read >= 0 && r.cpu_write > 0);
        ASSERT(r.cpu_forward + r.cpu_pool + r.cpu_read + r.cpu_write <= r.cpu_total + 0.005);
        ASSERT(r.t_exposed >= 0 && r.t_exposed <= r.t_total);
        ASSERT(r.t_forward >= 0 && r.t_pool >= 0 && r.t_write > 0);
        ASSERT(r.t_setup + r.t_forward + r.t_pool + r.t_exposed <= r.t_total + 0.005);
    }
}

/* ---- derived layers (tests/data/extract_affine.onnx, made by make_extract_affine.py) ---- */

static h2t_extract_opts affine_opts(void)
{
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path("tests/data/extract_affine.onnx");
    o.data_spec = "npy:x.npy,y.npy";
    o.target_size = 16;
    o.batch = 6;
    return o;
}

static int layer_index(const h2t_extraction *e, const char *name)
{
    for (uint32_t l = 0; l < e->n_layers; l++)
        if (!strcmp(e->layers[l].name, name))
            return (int)l;
    return -1;
}

TEST(extract_lin_model_relations)
{
    h2t_model *m;
    ASSERT_OK(h2t_model_load(test_src_path("tests/data/extract_affine.onnx"), &m));
    struct {
        const char *name;
        int kind;
        const char *src0, *src1;
    } want[] = {{"c1", H2T_LIN_NONE, NULL, NULL},   {"b1", H2T_LIN_AFFINE, "c1", NULL},
                {"r1", H2T_LIN_NONE, NULL, NULL},   {"p1", H2T_LIN_PAD, "r1", NULL},
                {"b2", H2T_LIN_AFFINE, "d1", NULL}, {"a1", H2T_LIN_SUM, "b2", "b3"},
                {"p2", H2T_LIN_PAD, "r1", NULL},    {"a2", H2T_LIN_SUM, "a1", "c2"},
                {"q", H2T_LIN_NONE, NULL, NULL},    {"hp", H2T_LIN_PAD, "h", NULL},
                {"g", H2T_LIN_NONE, NULL, NULL},    {"fc", H2T_LIN_NONE, NULL, NULL}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int t = h2t_model_tensor_find(m, want[i].name);
        ASSERT(t >= 0);
        h2t_tensor_lin lin;
        ASSERT_OK(h2t_model_tensor_lin(m, t, &lin));
        if (lin.kind != want[i].kind)
            TEST_FAILF("%s: kind %d, want %d", want[i].name, lin.kind, want[i].kind);
        if (want[i].src0)
            ASSERT_EQ(lin.src[0], h2t_model_tensor_find(m, want[i].src0));
        if (want[i].src1)
            ASSERT_EQ(lin.src[1], h2t_model_tensor_find(m, want[i].src1));
        if (lin.kind == H2T_LIN_AFFINE) {
            ASSERT_EQ(lin.channels, 4);
            for (int c = 0; c < 4; c++) /* scale in [0.5, 2], var in [0.2, 3] */
                ASSERT(lin.a[c] > 0.28 && lin.a[c] < 4.48);
        }
        if (!strcmp(want[i].name, "p2")) {
            for (int k = 0; k < 4; k++)
                ASSERT_EQ(lin.pads[k], 1);
        }
        h2t_tensor_lin_free(&lin);
    }
    h2t_tensor_lin lin;
    ASSERT_EQ(h2t_model_tensor_lin(m, 1000, &lin), H2T_EINVAL);
    h2t_model_destroy(m);
}

/* A config of every layer pooled from its own tensor: "pool=direct-oN" for a pooling order
 * N above 1, nothing for order 1 (the identity of stores made before derived layers). */
static void assert_direct_config(const char *config)
{
    char want[32];
    snprintf(want, sizeof want, "pool=direct-o%d", H2T_POOL_ORDER);
    if (H2T_POOL_ORDER > 1)
        ASSERT_CONTAINS(config, want);
    else
        ASSERT(strstr(config, "pool=") == NULL);
}

/* Features of layer l of an extraction, n samples. OWNED. */
static float *layer_all(h2t_store *st, uint32_t e, uint32_t l, uint32_t dim, uint32_t n)
{
    float *f = malloc(sizeof(float) * dim * n);
    if (h2t_store_layer_read(st, e, l, NULL, 0, n, f, dim) < 0) {
        free(f);
        return NULL;
    }
    return f;
}

TEST(extract_derived_layers_match_direct_pooling)
{
    free(make_float_npy("x.npy", "y.npy", 20));
    h2t_extract_opts o = affine_opts();
    h2t_extract_result rd, rp;
    ASSERT_OK(run_once("st", &o, &rd));
    /* b1, p1, b2, b3, a1, a2 and hp; p2 (other windows), q (a broadcast constant) are not */
    ASSERT_EQ(rd.n_derived, 7);
    ASSERT_CONTAINS(rd.config, " pool=derived");
    o.pool_direct = 1;
    ASSERT_OK(run_once("st", &o, &rp));
    ASSERT_EQ(rp.n_derived, 0);
    ASSERT_NE(rp.extraction, rd.extraction); /* another identity */
    assert_direct_config(rp.config);

    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", 0, &st));
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(st, rd.extraction, &e));
    h2t_model *m;
    ASSERT_OK(h2t_model_load(o.model_path, &m));
    const char *derived[] = {"b1", "p1", "b2", "b3", "a1", "a2", "hp"};
    for (uint32_t l = 0; l < e->n_layers; l++) {
        uint32_t dim = e->layers[l].dim;
        float *fd = layer_all(st, rd.extraction, l, dim, 20);
        float *fp = layer_all(st, rp.extraction, l, dim, 20);
        ASSERT(fd && fp);
        int is_derived = 0;
        for (size_t k = 0; k < sizeof derived / sizeof derived[0]; k++)
            is_derived |= !strcmp(e->layers[l].name, derived[k]);
        double big = 0, worst = 0;
        for (size_t i = 0; i < (size_t)dim * 20; i++) {
            big = fabs(fp[i]) > big ? fabs(fp[i]) : big;
            double d = fabs((double)fd[i] - fp[i]);
            worst = d > worst ? d : worst;
        }
        if (!is_derived && memcmp(fd, fp, sizeof(float) * dim * 20) != 0)
            TEST_FAILF("layer %s is pooled from its tensor in both, yet differs",
                       e->layers[l].name);
        if (worst > 4e-7 * (big > 1 ? big : 1))
            TEST_FAILF("layer %s: derived and pooled differ by %g (largest value %g)",
                       e->layers[l].name, worst, big);
        free(fd);
        free(fp);
    }
    /* the derivations themselves, bitwise: b1 = a c1 + b per channel, hp = h * 16 / 36, p1 = r1 */
    int lc1 = layer_index(e, "c1"), lb1 = layer_index(e, "b1"), lr1 = layer_index(e, "r1"),
        lp1 = layer_index(e, "p1"), lh = layer_index(e, "h"), lhp = layer_index(e, "hp"),
        la1 = layer_index(e, "a1"), lb2 = layer_index(e, "b2"), lb3 = layer_index(e, "b3");
    ASSERT(lc1 >= 0 && lb1 >= 0 && lr1 >= 0 && lp1 >= 0 && lh >= 0 && lhp >= 0 && la1 >= 0);
    ASSERT_EQ(e->layers[lb1].dim, 16); /* 2 x 2 windows x 4 channels */
    ASSERT_EQ(e->layers[lhp].dim, 16); /* 16 channels, each averaged whole */
    h2t_tensor_lin lin;
    ASSERT_OK(h2t_model_tensor_lin(m, h2t_model_tensor_find(m, "b1"), &lin));
    float *c1 = layer_all(st, rd.extraction, (uint32_t)lc1, 16, 20),
          *b1 = layer_all(st, rd.extraction, (uint32_t)lb1, 16, 20),
          *r1 = layer_all(st, rd.extraction, (uint32_t)lr1, 16, 20),
          *p1 = layer_all(st, rd.extraction, (uint32_t)lp1, 16, 20),
          *h = layer_all(st, rd.extraction, (uint32_t)lh, 16, 20),
          *hp = layer_all(st, rd.extraction, (uint32_t)lhp, 16, 20),
          *a1 = layer_all(st, rd.extraction, (uint32_t)la1, 16, 20),
          *b2 = layer_all(st, rd.extraction, (uint32_t)lb2, 16, 20),
          *b3 = layer_all(st, rd.extraction, (uint32_t)lb3, 16, 20);
    for (size_t i = 0; i < 16 * 20; i++) {
        size_t c = i % 4; /* (H, W, C) order */
        ASSERT_EQ((double)b1[i], (double)(float)(lin.a[c] * (double)c1[i] + lin.b[c]));
        ASSERT_EQ((double)p1[i], (double)r1[i]);
        ASSERT_EQ((double)hp[i], (double)(float)(16.0 / 36.0 * (double)h[i]));
        ASSERT_EQ((double)a1[i], (double)(float)((double)b2[i] + (double)b3[i]));
    }
    h2t_tensor_lin_free(&lin);
    free(c1), free(b1), free(r1), free(p1), free(h), free(hp), free(a1), free(b2), free(b3);
    h2t_model_destroy(m);
    h2t_extraction_destroy(e);
    h2t_store_close(st);
}

TEST(extract_derived_layers_threads_and_resume)
{
    free(make_float_npy("x.npy", "y.npy", 40));
    h2t_extract_opts o = affine_opts();
    o.threads = 1;
    h2t_extract_result a, b;
    ASSERT_OK(run_once("one", &o, &a));
    o.threads = 3; /* the same batch: the statistics are merged batch by batch */
    ASSERT_OK(run_once("three", &o, &b));
    compare_stores("one", a.extraction, "three", b.extraction, 40);
    /* stopped after two batches and resumed: the same features */
    int calls = 0;
    o.on_batch = stop_after_two;
    o.ctx = &calls;
    ASSERT_EQ(run_once("cut", &o, &b), H2T_ECANCELED);
    o.on_batch = NULL;
    ASSERT_OK(run_once("cut", &o, &b));
    ASSERT_EQ(b.resumed_from, 12);
    compare_stores("one", a.extraction, "cut", b.extraction, 40);
}

TEST(extract_derived_layers_need_their_sources)
{
    /* b1 alone: its source c1 is not a layer, so b1 is pooled from its own tensor and the
     * identity is the direct one; with c1 selected too it is derived */
    free(make_float_npy("x.npy", "y.npy", 6));
    h2t_extract_opts o = affine_opts();
    o.layers_regex = "^b1$";
    h2t_extract_result r;
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_EQ(r.n_layers, 1);
    ASSERT_EQ(r.n_derived, 0);
    assert_direct_config(r.config);
    o.layers_regex = "^(c1|b1)$";
    ASSERT_OK(run_once("st", &o, &r));
    ASSERT_EQ(r.n_layers, 2);
    ASSERT_EQ(r.n_derived, 1);
    ASSERT_CONTAINS(r.config, "pool=derived");
}
