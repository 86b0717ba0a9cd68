/* A finished job's head on new images (classify/classify.h, h2tdb classify) on
 * tests/data/extract_tiny.onnx: the probabilities of images the store holds equal those of the
 * stored features through the solver's head (what h2tdb predict computes) for linear, all and
 * head2toe heads; only the needed part of the backbone runs; the bad inputs fail with the input
 * named and nothing written. */
#include "classify/classify.h"
#include "client/client.h"
#include "common/err.h"
#include "onnx/onnx.pb-c.h"
#include "proto/proto.h"
#include "solver/solver.h"
#include "tests/fixture.h"
#include "tests/srv_thread.h"
#include "tests/test.h"

#include <png.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_IMG 12

/* Gray 10 x 12 PNG number i (resized to the model's 8 x 8 by the preprocessing). */
static void write_png(const char *path, uint32_t i)
{
    uint8_t px[120];
    uint32_t s = 99 + i;
    for (int k = 0; k < 120; k++)
        px[k] = (uint8_t)((fixture_lcg32(&s) & 127) + (i % 3) * 60);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 12;
    im.height = 10;
    im.format = PNG_FORMAT_GRAY;
    ASSERT(png_image_write_to_file(&im, path, 0, px, 0, NULL));
}

static const char *img_path(uint32_t i, char *buf, size_t n)
{
    snprintf(buf, n, "imgs/c%u/%02u.png", i % 3, i);
    return buf;
}

/* Images in three class folders, extracted from model (tests/data/...) at target size T with
 * class-token mode cls into store "st"; a task over it (train: samples 0..7, test: 8..11).
 * Returns the extraction. */
static uint32_t build_store_model(const char *model, uint32_t T, int cls)
{
    ASSERT_EQ(mkdir("imgs", 0755), 0);
    char p[64];
    for (int c = 0; c < 3; c++) {
        snprintf(p, sizeof p, "imgs/c%d", c);
        ASSERT_EQ(mkdir(p, 0755), 0);
    }
    for (uint32_t i = 0; i < N_IMG; i++)
        write_png(img_path(i, p, sizeof p), i);
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path(model);
    o.data_spec = "folder:imgs";
    o.target_size = T;
    o.cls = cls;
    o.batch = 4;
    h2t_extract_plan *plan;
    ASSERT_OK(h2t_extract_plan_create(&o, &plan));
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    h2t_extract_result r;
    ASSERT_OK(h2t_extract_plan_run(plan, st, &r));
    h2t_extract_plan_destroy(plan);
    h2t_source *src;
    ASSERT_OK(h2t_store_source_get(st, r.source, &src));
    h2t_task t = {.extraction = r.extraction, .n_classes = src->n_classes};
    snprintf(t.name, sizeof t.name, "t");
    t.class_names = src->class_names;
    uint32_t train[8], test[4], ltrain[8], ltest[4];
    for (uint32_t i = 0; i < N_IMG; i++) {
        if (i < 8) {
            train[i] = i;
            ltrain[i] = src->labels[i];
        } else {
            test[i - 8] = i;
            ltest[i - 8] = src->labels[i];
        }
    }
    t.n_train = 8;
    t.train = train;
    t.train_labels = ltrain;
    t.n_test = 4;
    t.test = test;
    t.test_labels = ltest;
    ASSERT_OK(h2t_store_task_put(st, &t, 0));
    h2t_source_destroy(src);
    h2t_store_close(st);
    return r.extraction;
}

/* extract_tiny.onnx at T = 8 (conv 8, relu 8, gap 2, fc 3 features). */
static uint32_t build_store(void)
{
    return build_store_model("tests/data/extract_tiny.onnx", 8, H2T_CLS_POOL);
}

/* A job of `method` on task t: with finish 1 solved and stored DONE with its result (as the
 * server does), 0 left queued, -1 stored FAILED. With
 * rename_layer, the head's first layer is renamed (a head for another model). */
static uint64_t add_job(uint32_t method, int finish, int rename_layer)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_NOSYNC, &st));
    h2t_task *task;
    ASSERT_OK(h2t_store_task_get(st, "t", &task));
    h2t_msg m = {.type = H2T_MSG_TRAIN};
    m.u.train.task = "t";
    h2t_train_spec_default(&m.u.train.spec, method);
    m.u.train.spec.folds = 2;
    m.u.train.spec.n_lambdas = 1;
    m.u.train.spec.lambdas[0] = method == H2T_METHOD_KNN ? 3 : 1e-3; /* knn: k */
    if (method == H2T_METHOD_HEAD2TOE) {
        m.u.train.spec.n_keeps = 1;
        m.u.train.spec.keeps[0] = 0.4;
    }
    uint8_t *frame;
    size_t len;
    ASSERT_OK(h2t_proto_encode(&m, &frame, &len));
    uint64_t id;
    ASSERT_OK(h2t_store_job_create(st, frame + 4, len - 4, &id));
    free(frame);
    if (finish < 0)
        ASSERT_OK(h2t_store_job_finish(st, id, H2T_JOB_FAILED, "stopped on purpose", NULL, 0));
    if (finish > 0) {
        h2t_result *r = NULL;
        ASSERT_OK(h2t_solver_run(st, task, &m.u.train.spec, NULL, NULL, NULL, &r));
        if (rename_layer) {
            free(r->layer_names[0]);
            r->layer_names[0] = strdup("other_model_layer");
        }
        void *blob;
        size_t blen;
        ASSERT_OK(h2t_result_encode(r, &blob, &blen));
        ASSERT_OK(h2t_store_job_finish(st, id, H2T_JOB_DONE, NULL, blob, blen));
        free(blob);
        h2t_result_destroy(r);
    }
    h2t_task_destroy(task);
    h2t_store_close(st);
    return id;
}

/* The probabilities predict computes for sample i: the stored features through the head. */
static void stored_proba(h2t_store *st, uint32_t ext, const h2t_result *r, uint32_t i, float *prob)
{
    uint64_t D = 0;
    for (uint32_t l = 0; l < r->n_layers; l++)
        D += r->layer_dims[l];
    float *x = calloc(D, sizeof(float));
    uint64_t off = 0;
    for (uint32_t l = 0; l < r->n_layers; l++) {
        ASSERT_OK(h2t_store_layer_read(st, ext, r->layer_ids[l], &i, 0, 1, x + off, D));
        off += r->layer_dims[l];
    }
    ASSERT_OK(h2t_result_proba(r, x, 1, NULL, prob));
    free(x);
}

static h2t_classifier *open_job(uint64_t job, const char *model, int *rc)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_RDONLY, &st));
    h2t_classifier_opts o;
    h2t_classifier_opts_init(&o);
    o.model_path = model ? model : test_src_path("tests/data/extract_tiny.onnx");
    h2t_classifier *c = NULL;
    *rc = h2t_classifier_open(st, job, &o, &c);
    h2t_store_close(st);
    return c;
}

static void read_file(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ASSERT(f);
    *buf = malloc(1 << 16);
    *len = fread(*buf, 1, 1 << 16, f);
    fclose(f);
}

TEST_TIMEOUT(classify_equals_predict_every_method, 120)
{
    uint32_t ext = build_store();
    const uint32_t methods[3] = {H2T_METHOD_LINEAR, H2T_METHOD_ALL, H2T_METHOD_HEAD2TOE};
    for (int mi = 0; mi < 3; mi++) {
        uint64_t job = add_job(methods[mi], 1, 0);
        int rc;
        h2t_classifier *c = open_job(job, NULL, &rc);
        ASSERT_OK(rc);
        const h2t_classifier_info *ci = h2t_classifier_info_get(c);
        ASSERT_EQ(ci->n_classes, 3);
        ASSERT_STREQ(ci->class_names[2], "c2");
        /* the tiny model's MACs: conv 2 x 64, fc 2 x 3 */
        ASSERT(fabs(ci->macs - 134) < 1e-9);
        if (methods[mi] == H2T_METHOD_LINEAR) /* the gap layer: the fc product never runs */
            ASSERT(fabs(ci->macs_needed - 128) < 1e-9);
        if (methods[mi] == H2T_METHOD_ALL)
            ASSERT(fabs(ci->macs_needed - 134) < 1e-9);
        ASSERT(ci->macs_needed <= ci->macs);
        h2t_store *st;
        ASSERT_OK(h2t_store_open("st", H2T_STORE_RDONLY, &st));
        void *blob;
        size_t blen;
        h2t_result *r;
        ASSERT_OK(h2t_store_result_get(st, job, &blob, &blen));
        ASSERT_OK(h2t_result_decode(blob, blen, &r));
        free(blob);
        double worst = 0;
        for (uint32_t i = 0; i < N_IMG; i++) {
            char p[64];
            uint8_t *buf;
            size_t len;
            read_file(img_path(i, p, sizeof p), &buf, &len);
            float got[3], want[3];
            ASSERT_OK(h2t_classifier_run_encoded(c, buf, len, p, got));
            free(buf);
            /* the folder source's order: class folders, then file names */
            stored_proba(st, ext, r, (i % 3) * (N_IMG / 3) + i / 3, want);
            for (int k = 0; k < 3; k++) {
                double d = fabs((double)got[k] - want[k]);
                worst = d > worst ? d : worst;
            }
        }
        if (worst > 1e-5)
            TEST_FAILF("method %u: classify and predict differ by %g", methods[mi], worst);
        h2t_result_destroy(r);
        h2t_store_close(st);
        h2t_classifier_close(c);
    }
}

/* Any size the preprocessing can resize is taken; a float tensor of another shape, an image
 * that does not decode, more pixels than the limit are refused naming the image. */
TEST(classify_bad_images_named)
{
    build_store();
    uint64_t job = add_job(H2T_METHOD_ALL, 1, 0);
    int rc;
    h2t_classifier *c = open_job(job, NULL, &rc);
    ASSERT_OK(rc);
    float prob[3];
    ASSERT_EQ(h2t_classifier_run_encoded(c, "GIF89a....", 10, "cat.gif", prob), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "cat.gif");
    uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}; /* a header and nothing */
    ASSERT_EQ(h2t_classifier_run_encoded(c, png, sizeof png, "cut.png", prob), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "cut.png");
    float t[16] = {0};
    h2t_image img = {.pixel = H2T_PIX_F32, .c = 1, .h = 4, .w = 4, .data = t};
    ASSERT_EQ(h2t_classifier_run(c, &img, "tensor 7", prob), H2T_ESHAPE);
    ASSERT_CONTAINS(h2t_err_detail(), "tensor 7");
    uint8_t px[3 * 40 * 50];
    memset(px, 100, sizeof px);
    h2t_image big = {.pixel = H2T_PIX_U8, .c = 3, .h = 40, .w = 50, .data = px};
    ASSERT_OK(h2t_classifier_run(c, &big, "rgb 50x40", prob)); /* RGB, another size: resized */
    ASSERT(fabs(prob[0] + prob[1] + prob[2] - 1) < 1e-6);
    h2t_classifier_close(c);
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_RDONLY, &st));
    h2t_classifier_opts o;
    h2t_classifier_opts_init(&o);
    o.model_path = test_src_path("tests/data/extract_tiny.onnx");
    o.max_pixels = 1000;
    ASSERT_OK(h2t_classifier_open(st, job, &o, &c));
    h2t_store_close(st);
    ASSERT_EQ(h2t_classifier_run(c, &big, "rgb 50x40", prob), H2T_ETOOBIG);
    ASSERT_CONTAINS(h2t_err_detail(), "rgb 50x40");
    h2t_classifier_close(c);
}

/* An unfinished job, a model file that is not the extraction's, a head whose layers are not
 * the extraction's: refused with the input named. */
TEST(classify_bad_job_model_head)
{
    build_store();
    uint64_t queued = add_job(H2T_METHOD_LINEAR, 0, 0);
    uint64_t other = add_job(H2T_METHOD_LINEAR, 1, 1);
    uint64_t good = add_job(H2T_METHOD_LINEAR, 1, 0);
    int rc;
    ASSERT(open_job(queued, NULL, &rc) == NULL);
    ASSERT_EQ(rc, H2T_ESTATE);
    ASSERT_CONTAINS(h2t_err_detail(), "not finished");
    ASSERT(open_job(99, NULL, &rc) == NULL);
    ASSERT_EQ(rc, H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "job 99");
    ASSERT(open_job(other, NULL, &rc) == NULL);
    ASSERT_EQ(rc, H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "another model");
    const char *affine = test_src_path("tests/data/extract_affine.onnx");
    ASSERT(open_job(good, affine, &rc) == NULL);
    ASSERT_EQ(rc, H2T_ESTATE);
    ASSERT_CONTAINS(h2t_err_detail(), "extract_affine.onnx");
    ASSERT_CONTAINS(h2t_err_detail(), "changed");
    ASSERT(open_job(good, "no/such.onnx", &rc) == NULL);
    ASSERT_EQ(rc, H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "no/such.onnx");
}

static int run_cli(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_cli(char *out, size_t n, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    const char *bin = getenv("H2T_BIN");
    ASSERT(bin != NULL);
    snprintf(cmd, sizeof(cmd), "%s %s", bin, args);
    FILE *p = popen(cmd, "r");
    ASSERT(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The command: files and folders, --json with every probability, the top K, the compute
 * report; a bad file fails naming it; the store's files are not touched. */
TEST_TIMEOUT(classify_cli, 120)
{
    build_store();
    uint64_t job = add_job(H2T_METHOD_HEAD2TOE, 1, 0);
    const char *model = test_src_path("tests/data/extract_tiny.onnx");
    struct stat before, after;
    ASSERT_EQ(stat("st/data.mdb", &before), 0);
    char out[16384];
    ASSERT_EQ(run_cli(out, sizeof out,
                      "classify --store st --job %llu --model %s imgs/c1/01.png imgs/c2 --top 2 "
                      "2>&1",
                      (unsigned long long)job, model),
              0);
    ASSERT_CONTAINS(out, "MMACs per image");
    ASSERT_CONTAINS(out, "imgs/c1/01.png\tc");
    ASSERT_CONTAINS(out, "imgs/c2/11.png\tc");
    ASSERT_EQ(run_cli(out, sizeof out, "classify --store st --job %llu --model %s --json imgs",
                      (unsigned long long)job, model),
              0);
    ASSERT_CONTAINS(out, "\"compute_fraction\": ");
    ASSERT_CONTAINS(out, "\"input\": \"imgs/c0/09.png\"");
    ASSERT_CONTAINS(out, "\"probs\": [");
    ASSERT_EQ(run_cli(out, sizeof out,
                      "classify --store st --job %llu --model %s --data "
                      "folder:imgs --json",
                      (unsigned long long)job, model),
              0);
    ASSERT_CONTAINS(out, "\"input\": \"sample 11\"");
    FILE *f = fopen("bad.png", "wb");
    fputs("not an image", f);
    fclose(f);
    ASSERT_EQ(run_cli(out, sizeof out, "classify --store st --job %llu --model %s bad.png 2>&1",
                      (unsigned long long)job, model),
              1);
    ASSERT_CONTAINS(out, "bad.png");
    ASSERT_EQ(run_cli(out, sizeof out, "classify --store st --job %llu imgs 2>&1",
                      (unsigned long long)job),
              1);
    ASSERT_CONTAINS(out, "models/extract_tiny.onnx");
    ASSERT_EQ(run_cli(out, sizeof out, "classify --store st imgs 2>&1"), 2);
    ASSERT_EQ(stat("st/data.mdb", &after), 0);
    ASSERT_EQ(before.st_size, after.st_size);
    ASSERT_EQ(before.st_mtime, after.st_mtime);
}

/* The classify request: the probabilities of the store-direct classifier, the classifier kept
 * for the next request, the caps on images and bytes named, a bad image named, the command's
 * --server path. */
TEST_TIMEOUT(classify_service, 120)
{
    build_store();
    uint64_t job = add_job(H2T_METHOD_ALL, 1, 0);
    /* (before the server: one store handle per process; failed: the server runs queued jobs) */
    uint64_t failed = add_job(H2T_METHOD_LINEAR, -1, 0);
    int rc;
    h2t_classifier *local = open_job(job, NULL, &rc);
    ASSERT_OK(rc);
    test_srv t = {0};
    ASSERT_OK(h2t_store_open("st", H2T_STORE_NOSYNC, &t.st));
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.models_dir = test_src_path("tests/data");
    cfg.classify_max_images = 4;
    cfg.classify_max_bytes = 4096;
    test_srv_start(&t, &cfg);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    uint8_t *img[5];
    size_t lens[5];
    char paths[5][64];
    const char *names[5];
    for (int i = 0; i < 5; i++) {
        read_file(img_path((uint32_t)i, paths[i], sizeof paths[i]), &img[i], &lens[i]);
        names[i] = paths[i];
    }
    for (int round = 0; round < 2; round++) { /* the second is served by the kept classifier */
        h2t_msg rep;
        ASSERT_OK(h2t_client_classify(c, job, (const uint8_t *const *)img, lens, names, 4, &rep));
        const h2t_msg_classification *a = &rep.u.classification;
        ASSERT_EQ(a->n_classes, 3);
        ASSERT_EQ(a->n_probs, 12);
        ASSERT_STREQ(a->class_names[1], "c1");
        ASSERT(a->macs_needed > 0 && a->macs_needed <= a->macs);
        /* one classifier built, by the first request; the second is served by it */
        ASSERT_EQ(a->cached, round == 1);
        ASSERT_EQ(a->classifier_loads, 1);
        for (int i = 0; i < 4; i++) {
            float want[3];
            ASSERT_OK(h2t_classifier_run_encoded(local, img[i], lens[i], names[i], want));
            for (int k = 0; k < 3; k++)
                ASSERT(a->probs[i * 3 + k] == want[k]);
            ASSERT(a->predicted[i] < 3);
        }
        h2t_msg_free(&rep);
    }
    h2t_msg rep;
    ASSERT_EQ(h2t_client_classify(c, job, (const uint8_t *const *)img, lens, names, 5, &rep),
              H2T_ETOOBIG);
    ASSERT_CONTAINS(h2t_err_detail(), "at most 4");
    uint8_t *big = calloc(5000, 1);
    memcpy(big, img[0], lens[0]);
    size_t big_len = 5000;
    const uint8_t *one[1] = {big};
    ASSERT_EQ(h2t_client_classify(c, job, one, &big_len, NULL, 1, &rep), H2T_ETOOBIG);
    ASSERT_CONTAINS(h2t_err_detail(), "at most 4096");
    const uint8_t *bad[2] = {img[0], (const uint8_t *)"not an image"};
    size_t bad_len[2] = {lens[0], 12};
    const char *bad_names[2] = {"ok.png", "broken.png"};
    ASSERT_EQ(h2t_client_classify(c, job, bad, bad_len, bad_names, 2, &rep), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "broken.png");
    ASSERT_EQ(h2t_client_classify(c, failed, one, lens, NULL, 1, &rep), H2T_ESTATE);
    ASSERT_CONTAINS(h2t_err_detail(), "not finished");
    h2t_client_close(c);
    char out[8192];
    ASSERT_EQ(run_cli(out, sizeof out, "classify --server %s --job %llu --json imgs/c0", t.addr,
                      (unsigned long long)job),
              0);
    ASSERT_CONTAINS(out, "\"input\": \"imgs/c0/00.png\"");
    ASSERT_CONTAINS(out, "\"compute_fraction\": 1.000000");
    /* the ONNX classifier built by the server is the store-direct one, byte for byte */
    ASSERT_EQ(run_cli(out, sizeof out, "result %llu --export-onnx srv.onnx --server %s",
                      (unsigned long long)job, t.addr),
              0);
    ASSERT_CONTAINS(out, "written to srv.onnx");
    ASSERT_OK(h2t_classifier_export_onnx(local, "local.onnx"));
    uint8_t *a, *b;
    size_t alen, blen;
    read_file("srv.onnx", &a, &alen);
    read_file("local.onnx", &b, &blen);
    ASSERT_EQ(alen, blen);
    ASSERT(memcmp(a, b, alen) == 0);
    free(a);
    free(b);
    ASSERT_EQ(run_cli(out, sizeof out, "result %llu --export-onnx f.onnx --server %s 2>&1",
                      (unsigned long long)failed, t.addr),
              1);
    ASSERT(access("f.onnx", F_OK) != 0);
    free(big);
    for (int i = 0; i < 5; i++)
        free(img[i]);
    h2t_classifier_close(local);
    test_srv_finish(&t);
}

/* Preprocess image i for classifier c (its input N x C x H x W, N = 1) into t. */
static void image_tensor(const h2t_classifier *c, const char *input, uint32_t i, h2t_tensor *t)
{
    const h2t_classifier_info *ci = h2t_classifier_info_get(c);
    h2t_prep prep = {.c = ci->c, .h = ci->h, .w = ci->w, .lo = ci->lo, .hi = ci->hi};
    char p[64];
    uint8_t *buf, *pix;
    size_t len;
    read_file(img_path(i, p, sizeof p), &buf, &len);
    h2t_image img;
    ASSERT_OK(h2t_image_decode(buf, len, p, &img, &pix));
    memset(t, 0, sizeof *t);
    t->rank = 4;
    t->shape[0] = 1;
    t->shape[1] = ci->c;
    t->shape[2] = ci->h;
    t->shape[3] = ci->w;
    snprintf(t->name, sizeof t->name, "%s", input);
    t->data = malloc(sizeof(float) * ci->c * ci->h * ci->w);
    ASSERT_OK(h2t_prep_image(&prep, &img, t->data));
    free(pix);
    free(buf);
}

/* Export job's classifier (model: its backbone) to head.onnx, run that file in h2tdb's own
 * executor on every image and return the largest difference from classify's probabilities. */
static double export_vs_classify(uint64_t job, const char *model)
{
    int rc;
    h2t_classifier *c = open_job(job, model, &rc);
    ASSERT_OK(rc);
    const h2t_classifier_info *ci = h2t_classifier_info_get(c);
    ASSERT_OK(h2t_classifier_export_onnx(c, "head.onnx"));
    ASSERT(access("head.onnx.tmp", F_OK) != 0);
    h2t_model *m;
    ASSERT_OK(h2t_model_load("head.onnx", &m));
    double worst = 0;
    for (uint32_t i = 0; i < N_IMG; i++) {
        char p[64];
        uint8_t *buf;
        size_t len;
        read_file(img_path(i, p, sizeof p), &buf, &len);
        float want[16];
        ASSERT(ci->n_classes <= 16);
        ASSERT_OK(h2t_classifier_run_encoded(c, buf, len, p, want));
        free(buf);
        h2t_tensor t;
        image_tensor(c, h2t_model_input(m)->name, i, &t);
        h2t_tensor *outs = NULL;
        int n_out = 0;
        ASSERT_OK(h2t_model_run_once(m, &t, 1, &outs, &n_out));
        ASSERT_EQ(n_out, 1);
        ASSERT_STREQ(outs[0].name, "probabilities");
        ASSERT_EQ(outs[0].shape[1], ci->n_classes);
        for (uint32_t k = 0; k < ci->n_classes; k++) {
            double d = fabs((double)outs[0].data[k] - want[k]);
            worst = d > worst ? d : worst;
        }
        h2t_tensors_free(outs, n_out);
        free(t.data);
    }
    h2t_model_destroy(m);
    h2t_classifier_close(c);
    return worst;
}

/* The exported ONNX classifier, run by h2tdb's own executor, gives the probabilities of
 * h2tdb classify (and so of predict) for every method whose head is linear (linear, all,
 * head2toe, ncm, layer, auto: the winner's head); metadata present; written by h2tdb result
 * --export-onnx too. */
TEST_TIMEOUT(classify_export_onnx_runs, 180)
{
    build_store();
    const uint32_t methods[6] = {H2T_METHOD_LINEAR, H2T_METHOD_ALL,   H2T_METHOD_HEAD2TOE,
                                 H2T_METHOD_NCM,    H2T_METHOD_LAYER, H2T_METHOD_AUTO};
    uint64_t jobs[6];
    for (int mi = 0; mi < 6; mi++)
        jobs[mi] = add_job(methods[mi], 1, 0);
    for (int mi = 0; mi < 6; mi++) {
        double worst = export_vs_classify(jobs[mi], NULL);
        if (worst > 1e-5)
            TEST_FAILF("method %u: the exported model and classify differ by %g", methods[mi],
                       worst);
        uint8_t *bytes;
        size_t len;
        read_file("head.onnx", &bytes, &len);
        char val[512];
        int found;
        ASSERT_OK(h2t_prep_model_metadata(bytes, len, "h2tdb.classes", val, sizeof val, &found));
        ASSERT(found);
        ASSERT_STREQ(val, "[\"c0\",\"c1\",\"c2\"]");
        ASSERT_OK(h2t_prep_model_metadata(bytes, len, "h2tdb.preprocess", val, sizeof val, &found));
        ASSERT_STREQ(val, "scale=0,1");
        ASSERT_OK(h2t_prep_model_metadata(bytes, len, "h2tdb.extraction", val, sizeof val, &found));
        ASSERT_CONTAINS(val, "target=8");
        ASSERT_OK(h2t_prep_model_metadata(bytes, len, "h2tdb.job", val, sizeof val, &found));
        ASSERT_CONTAINS(val, methods[mi] == H2T_METHOD_AUTO ? "(" : h2t_method_name(methods[mi]));
        free(bytes);
    }
    char out[4096];
    ASSERT_EQ(run_cli(out, sizeof out, "result %llu --export-onnx cli.onnx --store st --model %s",
                      (unsigned long long)jobs[2], test_src_path("tests/data/extract_tiny.onnx")),
              0);
    ASSERT_CONTAINS(out, "written to cli.onnx");
    ASSERT(access("cli.onnx", F_OK) == 0);
    ASSERT_EQ(run_cli(out, sizeof out, "result 99 --export-onnx x.onnx --store st 2>&1"), 1);
    ASSERT_CONTAINS(out, "job 99");
    ASSERT(access("x.onnx", F_OK) != 0);
}

static const Onnx__TensorProto *find_init(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, name))
            return g->initializer[i];
    TEST_FAILF("no initializer %s in the exported knn classifier", name);
    return NULL;
}

/* A knn head exports as its vote: outputs probabilities and label; the graph up to the
 * similarities (normalisation, MatMul with the stored rows) runs in h2tdb's executor, whose
 * TopK and vote are ONNX Runtime's to run (make conformance-classify): here the vote the graph
 * states (TopK's lower index first on equal values, counts / k, label = ArgMax(counts + (sims +
 * k) / (2k + 1))) is applied to the executor's similarities with the file's own initializers
 * and must give classify's vote shares exactly and predict's class. */
TEST_TIMEOUT(classify_export_knn, 120)
{
    uint32_t ext = build_store();
    uint64_t job = add_job(H2T_METHOD_KNN, 1, 0);
    int rc;
    h2t_classifier *c = open_job(job, NULL, &rc);
    ASSERT_OK(rc);
    ASSERT_OK(h2t_classifier_export_onnx(c, "knn.onnx"));
    uint8_t *bytes;
    size_t len;
    read_file("knn.onnx", &bytes, &len);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, bytes);
    ASSERT(mp && mp->graph);
    Onnx__GraphProto *g = mp->graph;
    ASSERT_EQ(g->n_output, 2);
    ASSERT_STREQ(g->output[0]->name, "probabilities");
    ASSERT_STREQ(g->output[1]->name, "label");
    size_t topk = g->n_node, argmax = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        if (!strcmp(g->node[i]->op_type, "TopK") && topk == g->n_node)
            topk = i;
        if (!strcmp(g->node[i]->op_type, "ArgMax"))
            argmax = i;
    }
    ASSERT(topk < g->n_node && argmax > topk);
    ASSERT_STREQ(g->node[topk]->input[0], "h2t_knn_sim");
    for (size_t a = 0; a < g->node[topk]->n_attribute; a++) {
        const Onnx__AttributeProto *at = g->node[topk]->attribute[a];
        if (!strcmp(at->name, "largest") || !strcmp(at->name, "sorted"))
            ASSERT_EQ(at->i, 1);
    }
    const Onnx__TensorProto *kt = find_init(g, "h2t_knn_k"), *oh = find_init(g, "h2t_knn_onehot");
    uint32_t k = (uint32_t)kt->int64_data[0], np = (uint32_t)oh->dims[0], K = (uint32_t)oh->dims[1];
    ASSERT_EQ(K, 3);
    ASSERT_EQ(k, 3); /* the job's k */
    ASSERT_EQ(np, 8);
    uint32_t *lab = malloc(np * sizeof *lab);
    for (uint32_t p = 0; p < np; p++) {
        lab[p] = K;
        for (uint32_t q = 0; q < K; q++)
            if (oh->float_data[p * K + q] == 1)
                lab[p] = q;
        ASSERT(lab[p] < K);
    }
    /* the graph cut after the similarities: what h2tdb's executor runs */
    size_t n_node = g->n_node;
    char *out_name = g->output[0]->name;
    g->n_node = topk;
    g->output[0]->name = "h2t_knn_sim";
    g->output[0]->type->tensor_type->shape->dim[1]->dim_value = np;
    g->n_output = 1;
    size_t clen = onnx__model_proto__get_packed_size(mp);
    uint8_t *cut = malloc(clen);
    onnx__model_proto__pack(mp, cut);
    g->n_output = 2;
    g->n_node = n_node;
    g->output[0]->name = out_name;
    onnx__model_proto__free_unpacked(mp, NULL);
    h2t_model *m;
    ASSERT_OK(h2t_model_load_mem(cut, clen, "knn-cut.onnx", &m));
    h2t_store *st;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_RDONLY, &st));
    void *blob;
    size_t blen;
    h2t_result *r;
    ASSERT_OK(h2t_store_result_get(st, job, &blob, &blen));
    ASSERT_OK(h2t_result_decode(blob, blen, &r));
    free(blob);
    uint64_t D = 0;
    for (uint32_t l = 0; l < r->n_layers; l++)
        D += r->layer_dims[l];
    for (uint32_t i = 0; i < N_IMG; i++) {
        h2t_tensor t;
        image_tensor(c, h2t_model_input(m)->name, i, &t);
        h2t_tensor *outs = NULL;
        int n_out = 0;
        ASSERT_OK(h2t_model_run_once(m, &t, 1, &outs, &n_out));
        ASSERT_EQ(outs[0].shape[1], np);
        const float *sim = outs[0].data;
        /* TopK: descending, the lower index first on equal values */
        uint32_t top[8];
        uint8_t used[8] = {0};
        for (uint32_t q = 0; q < k; q++) {
            uint32_t best = np;
            for (uint32_t p = 0; p < np; p++)
                if (!used[p] && (best == np || sim[p] > sim[best]))
                    best = p;
            used[best] = 1;
            top[q] = best;
        }
        float counts[3] = {0}, sims[3] = {0}, shares[3];
        for (uint32_t q = 0; q < k; q++) {
            counts[lab[top[q]]] += 1;
            sims[lab[top[q]]] += sim[top[q]];
        }
        uint32_t label = 0;
        float best = -1;
        for (uint32_t q = 0; q < K; q++) {
            shares[q] = counts[q] / (float)k;
            float score = counts[q] + (sims[q] + (float)k) / (float)(2 * k + 1);
            if (score > best) {
                best = score;
                label = q;
            }
        }
        char p[64];
        uint8_t *buf;
        size_t blen2;
        read_file(img_path(i, p, sizeof p), &buf, &blen2);
        float want[3];
        ASSERT_OK(h2t_classifier_run_encoded(c, buf, blen2, p, want));
        free(buf);
        for (uint32_t q = 0; q < K; q++)
            ASSERT(shares[q] == want[q]);
        /* predict's class of the stored sample (the folder source's order) */
        uint32_t s = (i % 3) * (N_IMG / 3) + i / 3, pred;
        float *x = calloc(D, sizeof(float));
        uint64_t off = 0;
        for (uint32_t l = 0; l < r->n_layers; l++) {
            ASSERT_OK(h2t_store_layer_read(st, ext, r->layer_ids[l], &s, 0, 1, x + off, D));
            off += r->layer_dims[l];
        }
        ASSERT_OK(h2t_result_proba(r, x, 1, &pred, NULL));
        ASSERT_EQ(label, pred);
        free(x);
        h2t_tensors_free(outs, n_out);
        free(t.data);
    }
    h2t_result_destroy(r);
    h2t_store_close(st);
    h2t_model_destroy(m);
    free(cut);
    free(lab);
    free(bytes);
    h2t_classifier_close(c);
}

/* A transformer: the tiny torchvision ViT (tests/data/vit_tiny-opset{13,17}.onnx) at T = 32
 * with each class-token mode, so the token layers pool every way the extraction does: 2-token
 * windows (the fifth token dropped), token means, the class token alone and the class token
 * then windows over the others, batch-first and sequence-first. The exported all and head2toe
 * classifiers, run by h2tdb's executor, give classify's probabilities. */
TEST_TIMEOUT(classify_export_onnx_vit, 300)
{
    const char *models[2] = {"tests/data/vit_tiny-opset13.onnx",
                             "tests/data/vit_tiny-opset17.onnx"};
    const int modes[3] = {H2T_CLS_POOL, H2T_CLS_ONLY, H2T_CLS_APART};
    for (int mo = 0; mo < 2; mo++)
        for (int cm = 0; cm < 3; cm++) {
            ASSERT_EQ(system("rm -rf st imgs"), 0);
            build_store_model(models[mo], 32, modes[cm]);
            uint32_t methods[2] = {H2T_METHOD_ALL, H2T_METHOD_HEAD2TOE};
            for (int mi = 0; mi < 2; mi++) {
                uint64_t job = add_job(methods[mi], 1, 0);
                double worst = export_vs_classify(job, test_src_path(models[mo]));
                if (worst > 1e-5)
                    TEST_FAILF("%s, class-token mode %d, method %u: the exported model and "
                               "classify differ by %g",
                               models[mo], modes[cm], methods[mi], worst);
            }
        }
}

/* With the classifier cache off (serve's classify_cache 0) every request builds its own: the
 * counter the replies carry is what shows the cache of classify_service at work. */
TEST_TIMEOUT(classify_service_cache_off, 120)
{
    build_store();
    uint64_t job = add_job(H2T_METHOD_LINEAR, 1, 0);
    test_srv t = {0};
    ASSERT_OK(h2t_store_open("st", H2T_STORE_NOSYNC, &t.st));
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.models_dir = test_src_path("tests/data");
    cfg.classify_cache = 0;
    test_srv_start(&t, &cfg);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    char path[64];
    uint8_t *img;
    size_t len;
    read_file(img_path(0, path, sizeof path), &img, &len);
    const uint8_t *one[1] = {img};
    for (int round = 0; round < 3; round++) {
        h2t_msg rep;
        ASSERT_OK(h2t_client_classify(c, job, one, &len, NULL, 1, &rep));
        ASSERT_EQ(rep.u.classification.cached, 0);
        ASSERT_EQ(rep.u.classification.classifier_loads, (uint64_t)round + 1);
        h2t_msg_free(&rep);
    }
    free(img);
    h2t_client_close(c);
    test_srv_finish(&t);
}
