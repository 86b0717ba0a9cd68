/*
 * tests/test_server.c - the service end to end: a real server on an ephemeral loopback port
 * (in a thread, or a forked process for the kill test) and the real client library.
 */
#include "tests/fixture.h"
#include "tests/srv_thread.h"
#include "tests/test.h"

#include "client/client.h"
#include "common/err.h"
#include "common/util.h"
#include "server/server.h"
#include "storage/store.h"

#include <fcntl.h>
#include <lmdb.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_SAMPLES 240
#define N_CLASSES 3

/* A store with one synthetic extraction "ext": 2 layers (8 and 4 features) whose values
 * depend on the class, 180 train + 60 test samples. */
static float fixture_value(void *ctx, uint32_t l, uint32_t i, uint32_t j, uint32_t label)
{
    if (l == 0)
        return fixture_lcg_unit(ctx) - 0.5f + (j == label ? 2.0f : 0.0f);
    return (float)((i * 7 + j) % 5) * 0.1f;
}

static h2t_store *fixture(const char *dir)
{
    static const char *const names[N_CLASSES] = {"alpha", "beta", "gamma"};
    static const h2t_layer_info layers[2] = {
        {.name = "l1", .op = "Relu", .rank = 2, .shape = {8}, .dim = 8},
        {.name = "l2", .op = "Gemm", .rank = 2, .shape = {4}, .dim = 4},
    };
    uint64_t s = 12345;
    fixture_spec sp = {.source = {.uri = "synth:", .hash = 1, .class_names = names},
                       .model = {.hash = 2},
                       .ext = {.config = "synthetic", .hash = 3, .target_size = 512, .done = 1},
                       .samples = {.n = N_SAMPLES, .classes = N_CLASSES, .train = 180},
                       FIXTURE_LAYERS(layers),
                       .features = {.written = N_SAMPLES, .value = fixture_value, .ctx = &s}};
    h2t_store *st = NULL;
    ASSERT_OK(fixture_store_build(dir, H2T_STORE_CREATE, &sp, &st, NULL));
    return st;
}

/* ---- a slow runner for cancel/restart tests: steps x 10 ms, then the solver ---- */
typedef struct slow_cfg {
    int steps;
} slow_cfg;

static int slow_runner(void *ud, h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                       h2t_solver_progress_fn progress, void *pud, const atomic_int *cancel,
                       void **blob, size_t *len)
{
    slow_cfg *c = ud;
    for (int i = 0; i < c->steps; i++) {
        if (atomic_load(cancel))
            return h2t_err_set(H2T_ECANCELED, "cancelled at step %d", i);
        progress(pud, (double)i / c->steps, "sleeping");
        usleep(10000);
    }
    return h2t_srv_runner_solver(NULL, st, task, spec, progress, pud, cancel, blob, len);
}

static h2t_client *connect_ok(const test_srv *t)
{
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t->addr, NULL, 20000, &c));
    return c;
}

static void create_task(h2t_client *c, const char *name, const char *train, uint32_t shots)
{
    h2t_msg req = {.type = H2T_MSG_CREATE_TASK}, rep;
    req.u.create_task.name = name;
    req.u.create_task.extraction = "ext";
    req.u.create_task.train = train;
    req.u.create_task.test = "test";
    req.u.create_task.shots = shots;
    ASSERT_OK(h2t_client_call(c, &req, H2T_MSG_TASK, &rep));
    h2t_msg_free(&rep);
}

static uint64_t submit(h2t_client *c, const char *task, int method)
{
    h2t_msg req = {.type = H2T_MSG_TRAIN}, rep;
    req.u.train.task = task;
    req.u.train.spec.method = (uint32_t)method;
    req.u.train.spec.lambdas[0] = 1e-3;
    req.u.train.spec.n_lambdas = 1;
    if (method == H2T_METHOD_HEAD2TOE) {
        req.u.train.spec.keeps[0] = 0.5;
        req.u.train.spec.n_keeps = 1;
    }
    req.u.train.spec.folds = 2;
    ASSERT_OK(h2t_client_call(c, &req, H2T_MSG_JOB, &rep));
    uint64_t id = rep.u.job.id;
    ASSERT(rep.u.job.state == H2T_JOB_QUEUED || rep.u.job.state == H2T_JOB_RUNNING);
    h2t_msg_free(&rep);
    return id;
}

static int watch_state(h2t_client *c, uint64_t id)
{
    h2t_msg fin;
    ASSERT_OK(h2t_client_watch(c, id, NULL, NULL, &fin));
    int st = fin.u.job.state;
    h2t_msg_free(&fin);
    return st;
}

TEST(server_every_request)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    h2t_msg rep;

    h2t_msg q = {.type = H2T_MSG_HEALTH_REQ};
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_HEALTH, &rep));
    ASSERT_CONTAINS(rep.u.health.version, "h2tdb");
    ASSERT_EQ(rep.u.health.workers, 1);
    h2t_msg_free(&rep);

    q = (h2t_msg){.type = H2T_MSG_LIST_EXTRACTIONS};
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_EXTRACTION_LIST, &rep));
    ASSERT_EQ(rep.u.extraction_list.n, 1);
    ASSERT_STREQ(rep.u.extraction_list.v[0].name, "ext");
    ASSERT_STREQ(rep.u.extraction_list.v[0].source, "synth");
    ASSERT_STREQ(rep.u.extraction_list.v[0].model, "toy");
    ASSERT_EQ(rep.u.extraction_list.v[0].total_dim, 12);
    h2t_msg_free(&rep);

    q = (h2t_msg){.type = H2T_MSG_DESCRIBE_EXTRACTION};
    q.u.ext_ref.extraction = "ext";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_EXTRACTION, &rep));
    ASSERT_EQ(rep.u.extraction.n_train, 180);
    ASSERT_EQ(rep.u.extraction.n_test, 60);
    ASSERT_EQ(rep.u.extraction.n_class_names, 3);
    ASSERT_STREQ(rep.u.extraction.class_names[1], "beta");
    ASSERT_EQ(rep.u.extraction.n_layer_info, 2);
    h2t_msg_free(&rep);

    q = (h2t_msg){.type = H2T_MSG_LAYERS_REQ};
    q.u.ext_ref.extraction = "1";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_LAYER_TABLE, &rep));
    ASSERT_EQ(rep.u.layer_table.n_layers, 2);
    ASSERT_STREQ(rep.u.layer_table.layers[1].name, "l2");
    ASSERT_EQ(rep.u.layer_table.layers[1].offset, 8);
    h2t_msg_free(&rep);

    q = (h2t_msg){.type = H2T_MSG_STATS_REQ};
    q.u.stats_req.extraction = "ext";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_STATS, &rep));
    ASSERT_EQ(rep.u.stats.n_layers, 2);
    ASSERT_EQ(rep.u.stats.layers[0].count, N_SAMPLES);
    ASSERT_EQ(rep.u.stats.layers[0].n_mean, 0);
    h2t_msg_free(&rep);
    q.u.stats_req.layer = "l2";
    q.u.stats_req.per_feature = 1;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_STATS, &rep));
    ASSERT_EQ(rep.u.stats.n_layers, 1);
    ASSERT_EQ(rep.u.stats.layers[0].n_mean, 4);
    /* feature 0 of l2: (i*7 % 5) * 0.1 over 240 samples: every residue 48 times -> mean 0.2 */
    ASSERT_NEAR(rep.u.stats.layers[0].mean[0], 0.2, 1e-6);
    h2t_msg_free(&rep);
    q.u.stats_req.layer = "nope";
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_STATS, &rep), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "nope");

    /* features, paged */
    q = (h2t_msg){.type = H2T_MSG_FEATURES_REQ};
    q.u.features_req.extraction = "ext";
    q.u.features_req.layer = "l2";
    q.u.features_req.first = 10;
    q.u.features_req.count = 25;
    q.u.features_req.limit = 10;
    uint32_t seen = 0;
    for (;;) {
        ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_FEATURES, &rep));
        ASSERT_EQ(rep.u.features.dim, 4);
        for (size_t i = 0; i < rep.u.features.n_samples; i++) {
            uint32_t smp = rep.u.features.samples[i];
            ASSERT_EQ(smp, 10 + seen);
            ASSERT_NEAR(rep.u.features.values[i * 4 + 1], ((smp * 7 + 1) % 5) * 0.1, 1e-6);
            seen++;
        }
        int done = rep.u.features.done;
        uint32_t next = rep.u.features.next_first;
        h2t_msg_free(&rep);
        if (done)
            break;
        q.u.features_req.count -= next - q.u.features_req.first;
        q.u.features_req.first = next;
    }
    ASSERT_EQ(seen, 25);

    /* tasks: plain, k-shot, a map file's coarse grouping */
    create_task(c, "all3", "train:120", 0);
    create_task(c, "shot", "train", 5);
    q = (h2t_msg){.type = H2T_MSG_CREATE_TASK};
    h2t_msg_map_entry map[] = {{"alpha", "first"}, {"*", "rest"}};
    q.u.create_task.name = "coarse";
    q.u.create_task.extraction = "ext";
    q.u.create_task.train = "train[0:90]+ids:200-209";
    q.u.create_task.test = "test";
    q.u.create_task.map = map;
    q.u.create_task.n_map = 2;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_TASK, &rep));
    ASSERT_EQ(rep.u.task.n_class_names, 2);
    ASSERT_EQ(rep.u.task.n_train, 100);
    ASSERT_EQ(rep.u.task.train_per_class[0], 33); /* 30 alphas in 0..89, 3 in 200..209 */
    h2t_msg_free(&rep);
    h2t_msg_map_entry bad[] = {{"delta", "x"}};
    q.u.create_task.map = bad;
    q.u.create_task.n_map = 1;
    q.u.create_task.name = "bad";
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_TASK, &rep), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "delta");
    q.u.create_task.n_map = 0;
    q.u.create_task.train = "train:500";
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_TASK, &rep), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "train:500");

    q = (h2t_msg){.type = H2T_MSG_LIST_TASKS};
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_TASK_LIST, &rep));
    ASSERT_EQ(rep.u.task_list.n, 3);
    h2t_msg_free(&rep);

    /* a train job through the real solver, watched to the end */
    uint64_t id = submit(c, "all3", H2T_METHOD_HEAD2TOE);
    ASSERT_EQ(watch_state(c, id), H2T_JOB_DONE);
    q = (h2t_msg){.type = H2T_MSG_GET_JOB};
    q.u.job_ref.job = id;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.state, H2T_JOB_DONE);
    ASSERT_EQ(rep.u.job.attempts, 1);
    ASSERT(rep.u.job.has_spec);
    ASSERT_STREQ(rep.u.job.spec.task, "all3");
    h2t_msg_free(&rep);

    q = (h2t_msg){.type = H2T_MSG_LIST_JOBS};
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB_LIST, &rep));
    ASSERT_EQ(rep.u.job_list.n, 1);
    h2t_msg_free(&rep);

    q = (h2t_msg){.type = H2T_MSG_GET_RESULT};
    q.u.get_result.job = id;
    q.u.get_result.include_head = 1;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_RESULT, &rep));
    ASSERT_GT(rep.u.result.test_accuracy, 0.9); /* the classes are well separated */
    ASSERT_GT(rep.u.result.blob_len, 0);
    ASSERT_CONTAINS(rep.u.result.summary, "test accuracy");
    h2t_result *r = NULL;
    ASSERT_OK(h2t_result_decode(rep.u.result.blob, rep.u.result.blob_len, &r));
    ASSERT_EQ(r->n_classes, 3);
    h2t_result_destroy(r);
    h2t_msg_free(&rep);

    q = (h2t_msg){.type = H2T_MSG_PREDICT};
    q.u.predict.job = id;
    q.u.predict.samples = "test:30";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_PREDICTION, &rep));
    ASSERT_EQ(rep.u.prediction.n_samples, 30);
    ASSERT_EQ(rep.u.prediction.samples[0], 180);
    ASSERT_GT(rep.u.prediction.accuracy, 0.9);
    h2t_msg_free(&rep);

    /* unknown ids and wrong states name what was wrong */
    q = (h2t_msg){.type = H2T_MSG_GET_JOB};
    q.u.job_ref.job = 999;
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_JOB, &rep), H2T_ENOTFOUND);
    q = (h2t_msg){.type = H2T_MSG_CANCEL_JOB};
    q.u.job_ref.job = id;
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_JOB, &rep), H2T_ESTATE);
    ASSERT_CONTAINS(h2t_err_detail(), "already done");
    q = (h2t_msg){.type = H2T_MSG_GET_RESULT};
    q.u.get_result.job = 999;
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_RESULT, &rep), H2T_ENOTFOUND);
    q = (h2t_msg){.type = H2T_MSG_TRAIN};
    q.u.train.task = "missing";
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_JOB, &rep), H2T_ENOTFOUND);
    ASSERT_CONTAINS(h2t_err_detail(), "missing");
    q.u.train.task = "all3";
    q.u.train.spec.lambdas[0] = -1;
    q.u.train.spec.n_lambdas = 1;
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_JOB, &rep), H2T_EINVAL);
    q = (h2t_msg){.type = H2T_MSG_DESCRIBE_EXTRACTION};
    q.u.ext_ref.extraction = "nosuch";
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_EXTRACTION, &rep), H2T_ENOTFOUND);
    /* a reply type sent as a request: an error, and the connection stays usable */
    q = (h2t_msg){.type = H2T_MSG_AUTH_OK};
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_JOB, &rep), H2T_EPROTO);
    q = (h2t_msg){.type = H2T_MSG_HEALTH_REQ};
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_HEALTH, &rep));
    h2t_msg_free(&rep);

    h2t_client_close(c);
    test_srv_finish(&t);
}

TEST(server_cancel_running_job)
{
    test_srv t = {.st = fixture("store")};
    slow_cfg sc = {.steps = 3000}; /* 30 s unless cancelled */
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.runner = slow_runner;
    cfg.runner_ud = &sc;
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    create_task(c, "t", "train", 0);
    uint64_t a = submit(c, "t", H2T_METHOD_LINEAR);
    uint64_t b = submit(c, "t", H2T_METHOD_LINEAR); /* queued behind a */
    h2t_msg q = {.type = H2T_MSG_GET_JOB}, rep;
    q.u.job_ref.job = a;
    for (int i = 0; i < 500; i++) {
        ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
        int st = rep.u.job.state;
        double p = rep.u.job.progress;
        h2t_msg_free(&rep);
        if (st == H2T_JOB_RUNNING && p > 0)
            break;
        usleep(10000);
    }
    q = (h2t_msg){.type = H2T_MSG_CANCEL_JOB};
    q.u.job_ref.job = b;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.state, H2T_JOB_CANCELLED);
    h2t_msg_free(&rep);
    double t0 = h2t_now_s();
    q.u.job_ref.job = a;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    h2t_msg_free(&rep);
    ASSERT_EQ(watch_state(c, a), H2T_JOB_CANCELLED);
    ASSERT_LT(h2t_now_s() - t0, 2.0); /* stopped promptly, not after 30 s */
    h2t_client_close(c);
    test_srv_finish(&t);
}

static void put_token(const char *path, const char *tok, int mode)
{
    FILE *f = fopen(path, "w");
    fputs(tok, f);
    fclose(f);
    ASSERT_EQ(chmod(path, (mode_t)mode), 0);
}

TEST(server_token)
{
    put_token("token", "s3cret-token-0123456789\n", 0600);
    put_token("wrong", "s3cret-token-012345678X\n", 0600);
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.token_file = "token";
    test_srv_start(&t, &cfg);
    h2t_client *c = NULL;
    /* a wrong token is refused, and the log line names the client's address */
    fflush(stderr);
    int saved = dup(2);
    int logfd = open("log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(logfd, 2);
    int rc = h2t_client_connect(t.addr, "wrong", 5000, &c);
    usleep(100000);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(logfd);
    ASSERT_EQ(rc, H2T_EAUTH);
    char logbuf[4096] = {0};
    FILE *lf = fopen("log", "r");
    ASSERT(fread(logbuf, 1, sizeof(logbuf) - 1, lf) > 0);
    fclose(lf);
    ASSERT_CONTAINS(logbuf, "refused a connection from 127.0.0.1:");
    ASSERT_CONTAINS(logbuf, "wrong token");
    /* the client refuses a token file others may read, too */
    ASSERT_EQ(chmod("wrong", 0644), 0);
    ASSERT_EQ(h2t_client_connect(t.addr, "wrong", 5000, &c), H2T_EPERM);
    /* no token: the first request is refused and the connection closed */
    unsetenv("H2T_TOKEN_FILE");
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 5000, &c));
    h2t_msg q = {.type = H2T_MSG_HEALTH_REQ}, rep;
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_HEALTH, &rep), H2T_EAUTH);
    ASSERT_EQ(h2t_client_recv(c, &rep), H2T_ENET);
    h2t_client_close(c);
    ASSERT_OK(h2t_client_connect(t.addr, "token", 5000, &c));
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_HEALTH, &rep));
    h2t_msg_free(&rep);
    h2t_client_close(c);
    test_srv_finish(&t);

    /* a non-loopback address needs a token or --insecure-bind */
    h2t_store *st = NULL;
    ASSERT_OK(h2t_store_open("store", 0, &st));
    h2t_srv *srv = NULL;
    h2t_srv_config_default(&cfg);
    cfg.listen = "0.0.0.0:0";
    cfg.handle_signals = 0;
    ASSERT_EQ(h2t_srv_create(&cfg, st, &srv), H2T_EPERM);
    ASSERT_CONTAINS(h2t_err_detail(), "0.0.0.0");
    cfg.insecure_bind = 1;
    ASSERT_OK(h2t_srv_create(&cfg, st, &srv));
    h2t_srv_destroy(srv);
    cfg.listen = "127.0.0.1:99999";
    ASSERT_EQ(h2t_srv_create(&cfg, st, &srv), H2T_EINVAL);
    /* token files: readable by others (like ssh keys) or too short are refused */
    cfg.listen = "127.0.0.1:0";
    cfg.token_file = "token";
    ASSERT_EQ(chmod("token", 0640), 0);
    ASSERT_EQ(h2t_srv_create(&cfg, st, &srv), H2T_EPERM);
    ASSERT_CONTAINS(h2t_err_detail(), "chmod 600 token");
    put_token("short", "abc\n", 0600);
    cfg.token_file = "short";
    ASSERT_EQ(h2t_srv_create(&cfg, st, &srv), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "at least 16");
    h2t_store_close(st);
}

/* Send raw bytes; expect an Error frame with code, then the connection closed. */
static void expect_error_close(const test_srv *t, const void *bytes, size_t n, int code)
{
    h2t_client *c = connect_ok(t);
    ASSERT_OK(h2t_client_send_raw(c, bytes, n));
    h2t_msg m;
    ASSERT_OK(h2t_client_recv(c, &m));
    ASSERT_EQ(m.type, H2T_MSG_ERROR);
    ASSERT_EQ(m.u.error.code, code);
    h2t_msg_free(&m);
    ASSERT_EQ(h2t_client_recv(c, &m), H2T_ENET);
    h2t_client_close(c);
}

TEST(server_bad_frames_and_limits)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.max_frame = 4096;
    cfg.max_conns = 4;
    cfg.slow_timeout_ms = 300;
    cfg.idle_timeout_ms = 600;
    test_srv_start(&t, &cfg);
    /* oversized: refused from the header alone */
    uint8_t big[4] = {0x7f, 0xff, 0xff, 0xff};
    expect_error_close(&t, big, 4, H2T_ETOOBIG);
    /* malformed payload */
    uint8_t junk[9] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_error_close(&t, junk, sizeof(junk), H2T_EPROTO);
    /* empty envelope */
    uint8_t empty[4] = {0, 0, 0, 0};
    expect_error_close(&t, empty, 4, H2T_EPROTO);
    /* truncated: half a frame, then silence: closed after the slow timeout */
    uint8_t half[6] = {0, 0, 0, 20, 0x08, 0x01};
    expect_error_close(&t, half, sizeof(half), H2T_ETIMEDOUT);
    /* idle connections are closed; the server keeps serving others */
    h2t_client *idle = connect_ok(&t);
    usleep(1000000);
    h2t_msg m;
    ASSERT_OK(h2t_client_recv(idle, &m));
    ASSERT_EQ(m.u.error.code, H2T_ETIMEDOUT);
    h2t_msg_free(&m);
    h2t_client_close(idle);
    /* connection limit */
    h2t_client *cs[4];
    for (int i = 0; i < 4; i++)
        cs[i] = connect_ok(&t);
    h2t_client *extra = connect_ok(&t);
    ASSERT_OK(h2t_client_recv(extra, &m));
    ASSERT_EQ(m.u.error.code, H2T_EBUSY);
    h2t_msg_free(&m);
    h2t_client_close(extra);
    h2t_msg q = {.type = H2T_MSG_HEALTH_REQ};
    ASSERT_OK(h2t_client_call(cs[0], &q, H2T_MSG_HEALTH, &m));
    h2t_msg_free(&m);
    for (int i = 0; i < 4; i++)
        h2t_client_close(cs[i]);
    test_srv_finish(&t);
}

/* The frame reader allocates as bytes arrive, not what a header announces. */
TEST(server_frame_reader_grows_with_data)
{
    h2t_proto_reader rd;
    h2t_proto_reader_init(&rd, 16u << 20);
    uint8_t hdr[14] = {0x00, 0xff, 0xff, 0xf0}; /* 16 MiB - 16 announced, 10 bytes sent */
    size_t used = 0;
    const uint8_t *payload = NULL;
    uint32_t plen = 0;
    ASSERT_EQ(h2t_proto_reader_feed(&rd, hdr, sizeof(hdr), &used, &payload, &plen), 0);
    ASSERT_EQ(used, sizeof(hdr));
    ASSERT_LE(malloc_usable_size(rd.buf), 64 * 1024);
    /* the rest in pieces: the payload arrives whole, byte for byte */
    uint32_t len = 0xfffff0;
    uint8_t *chunk = malloc(1 << 16);
    for (int i = 0; i < (1 << 16); i++)
        chunk[i] = (uint8_t)i;
    uint32_t sent = 10;
    int rc = 0;
    while (rc == 0) {
        size_t n = len - sent < (1u << 16) ? len - sent : (1u << 16);
        rc = h2t_proto_reader_feed(&rd, chunk, n, &used, &payload, &plen);
        ASSERT(rc >= 0);
        ASSERT_EQ(used, n);
        sent += (uint32_t)n;
        if (rc == 0) /* never more than twice what arrived */
            ASSERT_LE(malloc_usable_size(rd.buf), 2 * (size_t)sent + 64 * 1024);
    }
    ASSERT_EQ(plen, len);
    ASSERT_EQ(payload[10], 0);
    ASSERT_EQ(payload[len - 1], (uint8_t)((len - 10 - 1) % (1u << 16)));
    free(chunk);
    h2t_proto_reader_free(&rd);
}

/* With a token, connections that have not authenticated can neither hold much memory (a
 * frame before auth is at most H2T_SRV_AUTH_FRAME_MAX bytes) nor fill the connection slots:
 * past cfg.max_unauth_conns the oldest unauthenticated one is closed, and a real client
 * still gets in while idle unauthenticated sockets sit on every slot. */
TEST(server_unauthenticated_budget)
{
    FILE *f = fopen("token", "w");
    fputs("s3cret-token-0123456789\n", f);
    fclose(f);
    chmod("token", 0600);
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.token_file = "token";
    cfg.max_conns = 8;
    cfg.max_unauth_conns = 4;

    test_srv_start(&t, &cfg);
    unsetenv("H2T_TOKEN_FILE");
    /* a big frame before auth is refused from its header */
    uint8_t big[4] = {0x00, 0x10, 0x00, 0x00};
    expect_error_close(&t, big, 4, H2T_ETOOBIG);
    /* idle unauthenticated sockets on every slot, each with a frame started */
    h2t_client *idle[8];
    uint8_t part[6] = {0, 0, 0x0f, 0xff, 0x0a, 0x01};
    for (int i = 0; i < 8; i++) {
        ASSERT_OK(h2t_client_connect(t.addr, NULL, 5000, &idle[i]));
        ASSERT_OK(h2t_client_send_raw(idle[i], part, sizeof(part)));
    }
    usleep(100000);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, "token", 5000, &c));
    h2t_msg q = {.type = H2T_MSG_HEALTH_REQ}, m;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_HEALTH, &m));
    h2t_msg_free(&m);
    h2t_client_close(c);
    /* the oldest unauthenticated ones were told why */
    ASSERT_OK(h2t_client_recv(idle[0], &m));
    ASSERT_EQ(m.type, H2T_MSG_ERROR);
    ASSERT_EQ(m.u.error.code, H2T_EBUSY);
    h2t_msg_free(&m);
    for (int i = 0; i < 8; i++)
        h2t_client_close(idle[i]);
    test_srv_finish(&t);
}

/* One server a store: a second one refuses, naming the holder's pid, and never touches the
 * first one's jobs; a lock file left by a dead server is taken over. */
TEST(server_one_per_store)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    test_srv_start(&t, &cfg);
    h2t_srv *second = NULL;
    h2t_srv_config c2;
    h2t_srv_config_default(&c2);
    c2.listen = "127.0.0.1:0";
    c2.handle_signals = 0;
    ASSERT_EQ(h2t_srv_create(&c2, t.st, &second), H2T_EBUSY);
    char want[64];
    snprintf(want, sizeof(want), "process %ld", (long)getpid());
    ASSERT_CONTAINS(h2t_err_detail(), want);
    ASSERT_CONTAINS(h2t_err_detail(), "serve.lock");
    /* from another process too (a forked child opens its own handle) */
    pid_t pid = fork();
    if (pid == 0) {
        h2t_store *st2 = NULL;
        h2t_srv *s2 = NULL;
        int rc = h2t_store_open("store", 0, &st2);
        if (rc == 0)
            rc = h2t_srv_create(&c2, st2, &s2);
        _exit(rc == H2T_EBUSY && strstr(h2t_err_detail(), want) ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    h2t_client *c = connect_ok(&t);
    h2t_msg q = {.type = H2T_MSG_HEALTH_REQ}, m;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_HEALTH, &m));
    h2t_msg_free(&m);
    h2t_client_close(c);
    test_srv_finish(&t);

    /* stale: the file names a process that is gone and holds no lock */
    FILE *f = fopen("store/serve.lock", "w");
    fputs("999999999\n", f);
    fclose(f);
    t = (test_srv){.st = NULL};
    ASSERT_OK(h2t_store_open("store", 0, &t.st));
    test_srv_start(&t, &cfg);
    char buf[32] = {0};
    f = fopen("store/serve.lock", "r");
    ASSERT(fgets(buf, sizeof(buf), f) != NULL);
    fclose(f);
    ASSERT_EQ(strtol(buf, NULL, 10), (long)getpid());
    test_srv_finish(&t);
}

/* A damaged job record does not stop the server from starting: the job is listed as failed
 * with the reason, and the other jobs run. */
TEST(server_starts_with_a_damaged_job)
{
    h2t_store *st = fixture("store");
    uint64_t bad = 0;
    ASSERT_OK(h2t_store_job_create(st, "x", 1, &bad));
    h2t_store_close(st);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    ASSERT_EQ(mdb_env_open(env, "store", 0, 0644), 0);
    ASSERT_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "jobs", 0, &dbi), 0);
    uint8_t key[8];
    h2t_be64_put(key, bad);
    MDB_val k = {8, key}, v = {7, "garbage"};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    test_srv t = {0};
    ASSERT_OK(h2t_store_open("store", 0, &t.st));
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    create_task(c, "t", "train", 0);
    uint64_t good = submit(c, "t", H2T_METHOD_LINEAR);
    ASSERT_EQ(watch_state(c, good), H2T_JOB_DONE);
    h2t_msg q = {.type = H2T_MSG_LIST_JOBS}, m;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB_LIST, &m));
    ASSERT_EQ(m.u.job_list.n, 2);
    ASSERT_EQ(m.u.job_list.v[0].id, bad);
    ASSERT_EQ(m.u.job_list.v[0].state, H2T_JOB_FAILED);
    ASSERT_CONTAINS(m.u.job_list.v[0].error, "damaged record");
    h2t_msg_free(&m);
    h2t_client_close(c);
    test_srv_finish(&t);
}

/* predict holds at most cfg.predict_mem_bytes of feature rows: a server with a budget of one
 * row predicts in chunks the same classes (and labels) as the head computed here at once */
TEST(server_predict_in_chunks)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.predict_mem_bytes = 50; /* at most 12 features: one to four rows a chunk */
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    create_task(c, "t", "train", 0);
    uint64_t id = submit(c, "t", H2T_METHOD_LINEAR);
    ASSERT_EQ(watch_state(c, id), H2T_JOB_DONE);
    h2t_msg q = {.type = H2T_MSG_PREDICT}, rep;
    q.u.predict.job = id;
    q.u.predict.samples = "train[170:]+test:25";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_PREDICTION, &rep));
    ASSERT_EQ(rep.u.prediction.n_samples, 35);
    void *blob = NULL;
    size_t blen = 0;
    h2t_result *r = NULL;
    ASSERT_OK(h2t_store_result_get(t.st, id, &blob, &blen));
    ASSERT_OK(h2t_result_decode(blob, blen, &r));
    float x[35 * 12];
    uint32_t ids[35], pred[35];
    for (uint32_t i = 0; i < 35; i++)
        ids[i] = i < 10 ? 170 + i : 180 + (i - 10);
    uint64_t off = 0, D = 0;
    for (uint32_t l = 0; l < r->n_layers; l++)
        D += r->layer_dims[l];
    ASSERT_LE(D, 12);
    uint32_t eid = 0;
    ASSERT_OK(h2t_store_extraction_find(t.st, "ext", &eid));
    for (uint32_t l = 0; l < r->n_layers; l++) {
        ASSERT_OK(h2t_store_layer_read(t.st, eid, r->layer_ids[l], ids, 0, 35, x + off, D));
        off += r->layer_dims[l];
    }
    ASSERT_OK(h2t_result_predict(r, x, 35, pred));
    for (uint32_t i = 0; i < 35; i++) {
        ASSERT_EQ(rep.u.prediction.samples[i], ids[i]);
        ASSERT_EQ(rep.u.prediction.predicted[i], pred[i]);
        ASSERT_EQ(rep.u.prediction.labels[i], ids[i] % N_CLASSES); /* train and test listed */
    }
    h2t_msg_free(&rep);
    h2t_result_destroy(r);
    free(blob);
    h2t_client_close(c);
    test_srv_finish(&t);
}

/* a predict whose reply would exceed what the server queues for one client is refused before
 * any work, naming the figures, instead of being computed and dropped with the connection */
TEST(server_predict_reply_over_budget_refused)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.max_pending_write = 65536 + 2000;
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    create_task(c, "t", "train", 0);
    uint64_t id = submit(c, "t", H2T_METHOD_LINEAR);
    ASSERT_EQ(watch_state(c, id), H2T_JOB_DONE);
    h2t_msg q = {.type = H2T_MSG_PREDICT}, rep;
    q.u.predict.job = id;
    q.u.predict.samples = "test:25";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_PREDICTION, &rep));
    ASSERT_EQ(rep.u.prediction.n_samples, 25);
    h2t_msg_free(&rep);
    q.u.predict.samples = "train+test";
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_PREDICTION, &rep), H2T_ETOOBIG);
    ASSERT_CONTAINS(h2t_err_detail(), "fewer samples");
    /* the connection stays usable */
    q.u.predict.samples = "test:5";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_PREDICTION, &rep));
    ASSERT_EQ(rep.u.prediction.n_samples, 5);
    h2t_msg_free(&rep);
    h2t_client_close(c);
    test_srv_finish(&t);
}

typedef struct hammer {
    const test_srv *t;
    int ok;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    h2t_client *c = NULL;
    if (h2t_client_connect(h->t->addr, NULL, 20000, &c) < 0)
        return NULL;
    for (int i = 0; i < 200; i++) {
        h2t_msg q = {.type = (i & 1) ? H2T_MSG_STATS_REQ : H2T_MSG_HEALTH_REQ}, rep;
        q.u.stats_req.extraction = "ext";
        q.u.stats_req.layer = (i & 1) ? "l1" : NULL;
        if (h2t_client_call(c, &q, (i & 1) ? H2T_MSG_STATS : H2T_MSG_HEALTH, &rep) == 0) {
            h->ok++;
            h2t_msg_free(&rep);
        }
    }
    h2t_client_close(c);
    return NULL;
}

TEST(server_concurrent_clients)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    test_srv_start(&t, &cfg);
    pthread_t th[8];
    hammer h[8];
    for (int i = 0; i < 8; i++) {
        h[i] = (hammer){&t, 0};
        pthread_create(&th[i], NULL, hammer_main, &h[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(h[i].ok, 200);
    }
    test_srv_finish(&t);
}

/* ---- kill -9 and restart: a server process with the slow runner ---- */
static pid_t spawn_server(int steps)
{
    unlink("port");
    pid_t pid = fork();
    if (pid == 0) {
        h2t_store *st = NULL;
        if (h2t_store_open("store", 0, &st) < 0)
            _exit(3);
        slow_cfg sc = {.steps = steps};
        h2t_srv_config cfg;
        h2t_srv_config_default(&cfg);
        cfg.listen = "127.0.0.1:0";
        cfg.port_file = "port";
        cfg.runner = slow_runner;
        cfg.runner_ud = &sc;
        h2t_srv *srv = NULL;
        if (h2t_srv_create(&cfg, st, &srv) < 0)
            _exit(4);
        h2t_srv_run(srv);
        h2t_srv_destroy(srv);
        h2t_store_close(st);
        _exit(0);
    }
    return pid;
}

static void port_addr(char *addr, size_t n)
{
    int port = 0;
    for (int i = 0; i < 500 && port == 0; i++) {
        FILE *f = fopen("port", "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (!port)
            usleep(10000);
    }
    ASSERT_GT(port, 0);
    snprintf(addr, n, "127.0.0.1:%d", port);
}

TEST(server_kill_and_restart)
{
    h2t_store_close(fixture("store"));
    pid_t pid = spawn_server(100000); /* job 1 runs "forever" */
    test_srv t = {0};
    port_addr(t.addr, sizeof(t.addr));
    h2t_client *c = connect_ok(&t);
    create_task(c, "t", "train", 0);
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = submit(c, "t", H2T_METHOD_LINEAR);
    h2t_msg q = {.type = H2T_MSG_GET_JOB}, rep;
    q.u.job_ref.job = ids[0];
    int running = 0;
    for (int i = 0; i < 1500 && !running; i++) {
        ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
        /* running as the store records it: the worker shows RUNNING before its attempt is
         * committed, and a kill in between leaves the job queued with no attempt */
        running = rep.u.job.state == H2T_JOB_RUNNING && rep.u.job.attempts >= 1;
        h2t_msg_free(&rep);
        usleep(10000);
    }
    ASSERT(running);
    h2t_client_close(c);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);

    pid = spawn_server(5);
    port_addr(t.addr, sizeof(t.addr));
    c = connect_ok(&t);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(watch_state(c, ids[i]), H2T_JOB_DONE);
    q.u.job_ref.job = ids[0];
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.attempts, 2); /* interrupted once, re-run once */
    h2t_msg_free(&rep);
    q.u.job_ref.job = ids[2];
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.attempts, 1);
    h2t_msg_free(&rep);
    h2t_client_close(c);
    /* graceful stop, then a restart runs nothing again */
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    h2t_store *st = NULL;
    ASSERT_OK(h2t_store_open("store", 0, &st));
    for (int i = 0; i < 3; i++) {
        h2t_job *j = NULL;
        ASSERT_OK(h2t_store_job_get(st, ids[i], &j));
        ASSERT_EQ(j->state, H2T_JOB_DONE);
        h2t_job_destroy(j);
    }
    h2t_store_close(st);
}

TEST(server_selection_syntax)
{
    uint8_t split[10] = {0, 0, 1, 0, 1, 0, 0, 1, 0, 0};
    uint32_t *ids = NULL, n = 0;
    ASSERT_OK(h2t_srv_sel_resolve("train:3", "--train", split, 10, 0, &ids, &n));
    ASSERT_EQ(n, 3);
    ASSERT_EQ(ids[2], 3);
    free(ids);
    ASSERT_OK(h2t_srv_sel_resolve("test[1:]+ids:0,8-9", "--test", split, 10, 0, &ids, &n));
    ASSERT_EQ(n, 5); /* test split is 2, 4, 7: positions 1.. are 4, 7; then 0, 8, 9 */
    ASSERT_EQ(ids[0], 4);
    ASSERT_EQ(ids[1], 7);
    ASSERT_EQ(ids[2], 0);
    ASSERT_EQ(ids[4], 9);
    free(ids);
    ASSERT_OK(h2t_srv_sel_resolve("train", "--train", split, 6, 0, &ids, &n));
    ASSERT_EQ(n, 4); /* only samples < 6 are eligible */
    free(ids);
    ASSERT_EQ(h2t_srv_sel_resolve("train:8", "--train", split, 10, 0, &ids, &n), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "only 7");
    ASSERT_EQ(h2t_srv_sel_resolve("trian:3", "--train", split, 10, 0, &ids, &n), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "trian:3");
    ASSERT_EQ(h2t_srv_sel_resolve("ids:3-1", "--train", split, 10, 0, &ids, &n), H2T_EINVAL);
    ASSERT_EQ(h2t_srv_sel_resolve("ids:12", "--train", split, 10, 0, &ids, &n), H2T_EINVAL);
    ASSERT_EQ(h2t_srv_sel_resolve("train[5:2]", "--train", split, 10, 0, &ids, &n), H2T_EINVAL);
    ASSERT_EQ(h2t_srv_sel_resolve("train+", "--train", split, 10, 0, &ids, &n), H2T_EINVAL);
    ASSERT_EQ(h2t_srv_sel_resolve("", "--train", split, 10, 0, &ids, &n), H2T_EINVAL);
}

/* A selection that repeats ranges expands past the server's cap: an error naming the cap and
 * the option, not a 32-bit capacity overflow (realloc to 0, then a double free). */
TEST(server_selection_cap)
{
    uint8_t split[10] = {0};
    uint32_t *ids = NULL, n = 0;
    ASSERT_OK(h2t_srv_sel_resolve("ids:0-9,0-9", "--train", split, 10, 20, &ids, &n));
    ASSERT_EQ(n, 20);
    free(ids);
    ASSERT_EQ(h2t_srv_sel_resolve("ids:0-9,0-9,0", "--train", split, 10, 20, &ids, &n),
              H2T_ETOOBIG);
    ASSERT_CONTAINS(h2t_err_detail(), "more than 20 samples");
    ASSERT_CONTAINS(h2t_err_detail(), "--max-selection");

    /* through the server: a create_task request of a few KB asking for millions of ids */
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.max_selection = 100000;
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    size_t cap = 64 * 1024;
    char *sel = malloc(cap);
    size_t len = 0;
    while (len + 16 < cap)
        len += (size_t)snprintf(sel + len, cap - len, "ids:0-%u+", N_SAMPLES - 1);
    sel[len - 1] = 0;
    h2t_msg req = {.type = H2T_MSG_CREATE_TASK}, rep;
    req.u.create_task.name = "huge";
    req.u.create_task.extraction = "ext";
    req.u.create_task.train = sel;
    ASSERT_EQ(h2t_client_call(c, &req, H2T_MSG_TASK, &rep), H2T_ETOOBIG);
    ASSERT_CONTAINS(h2t_err_detail(), "more than 100000 samples");
    free(sel);
    /* the connection and the server are fine */
    create_task(c, "small", "ids:0-9,0-9", 0);
    h2t_client_close(c);
    test_srv_finish(&t);

    /* a cap past the limit is refused at start */
    h2t_store *st = NULL;
    ASSERT_OK(h2t_store_open("store", 0, &st));
    h2t_srv *srv = NULL;
    h2t_srv_config_default(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.handle_signals = 0;
    cfg.max_selection = H2T_SRV_SEL_MAX_LIMIT + 1u;
    ASSERT_EQ(h2t_srv_create(&cfg, st, &srv), H2T_EINVAL);
    h2t_store_close(st);
}

/* The libFuzzer target (frame reader, decoder, dispatch) for a short while: make fuzz runs
 * it longer. Builds it with clang on the first run. */
TEST_TIMEOUT(server_fuzz_frames, 600)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s 20 >fuzz.log 2>&1", test_src_path("tests/fuzz/run.sh"));
    int rc = system(cmd);
    if (rc != 0)
        system("cat fuzz.log >&2");
    ASSERT_EQ(rc, 0);
}

/* Every seed of every libFuzzer target once, the regression inputs of earlier findings among
 * them (tests/fuzz/seeds/TARGET/regression-*, docs/robustness.md). */
TEST_TIMEOUT(fuzz_seeds_replay, 900)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s 0 frame onnx data sel store >fuzz.log 2>&1",
             test_src_path("tests/fuzz/run.sh"));
    int rc = system(cmd);
    if (rc != 0)
        system("cat fuzz.log >&2");
    ASSERT_EQ(rc, 0);
}

/* Run the h2tdb binary under test ($H2T_BIN) with a shell command line; its stdout+stderr
 * into out (NUL-terminated), its exit status returned. */
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
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The demo's two result commands through the real binary: compare (the table) and report
 * (the SVG), from the server and straight from the store; bad ids name the job. */
TEST_TIMEOUT(server_cli_compare_and_report, 120)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    create_task(c, "t3", "train", 0);
    uint64_t lin = submit(c, "t3", H2T_METHOD_LINEAR);
    uint64_t h2t = submit(c, "t3", H2T_METHOD_HEAD2TOE);
    ASSERT_EQ(watch_state(c, lin), H2T_JOB_DONE);
    ASSERT_EQ(watch_state(c, h2t), H2T_JOB_DONE);
    h2t_client_close(c);

    static char out[16384];
    ASSERT_EQ(run_cli(out, sizeof(out), "compare --server %s %llu %llu", t.addr,
                      (unsigned long long)lin, (unsigned long long)h2t),
              0);
    ASSERT_CONTAINS(out, "test%");
    ASSERT_CONTAINS(out, "linear");
    ASSERT_CONTAINS(out, "head2toe");
    ASSERT_CONTAINS(out, "/12 "); /* kept of all 12 features looked at by head2toe */
    ASSERT_EQ(run_cli(out, sizeof(out), "compare --server %s %llu --json", t.addr,
                      (unsigned long long)h2t),
              0);
    ASSERT_CONTAINS(out, "\"method\": \"head2toe\"");
    ASSERT_CONTAINS(out, "\"dim\": 12");

    ASSERT_EQ(run_cli(out, sizeof(out), "report --server %s %llu --out r.svg --title T1", t.addr,
                      (unsigned long long)h2t),
              0);
    ASSERT_CONTAINS(out, "wrote r.svg");
    FILE *f = fopen("r.svg", "r");
    ASSERT(f != NULL);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    ASSERT_CONTAINS(out, "<svg");
    ASSERT_CONTAINS(out, ">T1</text>");
    ASSERT_CONTAINS(out, "l1: "); /* the layer bars carry their names */
    /* straight from the store (read-only, while the server holds it) */
    ASSERT_EQ(
        run_cli(out, sizeof(out), "report --store store %llu --out s.svg", (unsigned long long)h2t),
        0);
    ASSERT(access("s.svg", F_OK) == 0);

    /* errors name the bad input, exit non-zero, leave no file behind */
    ASSERT_EQ(run_cli(out, sizeof(out), "compare --server %s 999", t.addr), 1);
    ASSERT_CONTAINS(out, "999");
    ASSERT_EQ(run_cli(out, sizeof(out), "report --store store 999 --out bad.svg"), 1);
    ASSERT_CONTAINS(out, "999");
    ASSERT(access("bad.svg", F_OK) != 0);
    ASSERT_EQ(run_cli(out, sizeof(out), "compare --server %s", t.addr), 2);
    /* a serve that cannot start leaves no new store behind */
    ASSERT_EQ(run_cli(out, sizeof(out), "serve --store fresh --listen 127.0.0.1:99999"), 1);
    ASSERT_CONTAINS(out, "bad port '99999'");
    ASSERT(access("fresh", F_OK) != 0);
    ASSERT_EQ(run_cli(out, sizeof(out), "serve --store fresh --job-priority urgent"), 2);
    ASSERT_CONTAINS(out, "--job-priority 'urgent': want idle, low or normal");
    ASSERT(access("fresh", F_OK) != 0);
    ASSERT_EQ(run_cli(out, sizeof(out), "serve --help"), 0);
    ASSERT_CONTAINS(out, "--design-cache-mb N");
    test_srv_finish(&t);
}

/* The methods over the same cache through the real binary and the server: train --wait,
 * result, predict (the head's own layers read back from the store), compare and report. */
TEST_TIMEOUT(server_cli_new_methods, 120)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    create_task(c, "t3", "train", 0);
    static char out[16384];
    static const char *const methods[] = {"knn", "ncm", "layer", "auto"};
    unsigned long long ids[4];
    for (int m = 0; m < 4; m++) {
        ASSERT_EQ(run_cli(out, sizeof(out),
                          "train --server %s --task t3 --method %s --folds 3 --wait --json", t.addr,
                          methods[m]),
                  0);
        const char *p = strstr(out, "\"id\": ");
        ASSERT(p != NULL);
        ASSERT_EQ(sscanf(p, "\"id\": %llu", &ids[m]), 1);
        h2t_msg q = {.type = H2T_MSG_GET_RESULT}, rep;
        q.u.get_result.job = ids[m];
        q.u.get_result.include_head = 1;
        ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_RESULT, &rep));
        double test_acc = rep.u.result.test_accuracy;
        /* the classes are well separated in l1; knn reads the probe layer (l2: no signal) */
        ASSERT(m == 0 || test_acc > 0.9);
        h2t_result *r = NULL;
        ASSERT_OK(h2t_result_decode(rep.u.result.blob, rep.u.result.blob_len, &r));
        if (m == 0) {
            ASSERT_EQ(r->method, H2T_METHOD_KNN);
            ASSERT_EQ(r->n_protos, 180);
            ASSERT_EQ(r->n_layers, 1);
            ASSERT_EQ(r->layer_ids[0], 1);
            ASSERT_CONTAINS(rep.u.result.summary, "knn: k ");
        } else if (m == 1) {
            ASSERT_EQ(r->method, H2T_METHOD_NCM);
        } else if (m == 2) {
            ASSERT_EQ(r->method, H2T_METHOD_LAYER);
            ASSERT_EQ(r->n_curve, 2);
            ASSERT_CONTAINS(rep.u.result.json, "\"layer_curve\"");
        } else {
            ASSERT_EQ(r->n_auto, 6);
            ASSERT_CONTAINS(rep.u.result.summary, "auto chose ");
            ASSERT_CONTAINS(rep.u.result.json, "\"auto\": {\"chosen\"");
        }
        ASSERT_EQ(r->fold_kind, H2T_FOLDS_STRATIFIED);
        ASSERT_EQ(r->cv_repeats, 3); /* 180 training samples: repeated */
        ASSERT_CONTAINS(rep.u.result.summary, "3 stratified folds x 3 repeat(s)");
        h2t_result_destroy(r);
        h2t_msg_free(&rep);
        /* predict on the test split agrees with the job's test accuracy */
        q = (h2t_msg){.type = H2T_MSG_PREDICT};
        q.u.predict.job = ids[m];
        q.u.predict.samples = "test";
        ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_PREDICTION, &rep));
        ASSERT_NEAR(rep.u.prediction.accuracy, test_acc, 1e-9);
        h2t_msg_free(&rep);
    }
    h2t_client_close(c);
    ASSERT_EQ(run_cli(out, sizeof(out), "compare --server %s %llu %llu %llu %llu", t.addr, ids[0],
                      ids[1], ids[2], ids[3]),
              0);
    ASSERT_CONTAINS(out, "knn");
    ASSERT_CONTAINS(out, "ncm");
    ASSERT_CONTAINS(out, "layer");
    ASSERT_CONTAINS(out, "auto:");
    ASSERT_CONTAINS(out, "notes");
    ASSERT_CONTAINS(out, "  k "); /* knn's k in its notes */
    /* head2toe's new options through the command line, the server and compare */
    unsigned long long hid = 0;
    ASSERT_EQ(run_cli(out, sizeof(out),
                      "train --server %s --task t3 --method head2toe --folds 3 --keep 0.5,1 "
                      "--final-l2s 1e-6,1e-2 --select-group layer --wait --json",
                      t.addr),
              0);
    ASSERT_EQ(sscanf(strstr(out, "\"id\": "), "\"id\": %llu", &hid), 1);
    ASSERT_EQ(run_cli(out, sizeof(out), "compare --server %s %llu", t.addr, hid), 0);
    ASSERT_CONTAINS(out, "final-L2 ");
    ASSERT_CONTAINS(out, "whole-layers");
    ASSERT_EQ(run_cli(out, sizeof(out), "compare --server %s %llu --json", t.addr, hid), 0);
    ASSERT_CONTAINS(out, "whole-layers\"}");
    ASSERT_EQ(run_cli(out, sizeof(out), "report --server %s %llu --out l.svg", t.addr, ids[2]), 0);
    ASSERT_CONTAINS(out, "probe CV accuracy per layer");
    ASSERT_CONTAINS(out, "<- chosen");
    FILE *f = fopen("l.svg", "r");
    ASSERT(f != NULL);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    ASSERT_CONTAINS(out, "CV accuracy of a linear probe on each layer");
    test_srv_finish(&t);
}

/* `h2tdb train`'s options reach the stored job spec (the command line -> the wire -> the
 * store -> the wire); a bad option names itself and sends nothing. */
TEST(server_cli_train_options)
{
    test_srv t = {.st = fixture("store")};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.workers = 0; /* the job stays queued: only its spec is looked at */
    test_srv_start(&t, &cfg);
    h2t_client *c = connect_ok(&t);
    create_task(c, "t3", "train", 0);

    static char out[4096];
    ASSERT_EQ(run_cli(out, sizeof(out),
                      "train --server %s --task t3 --method all --optimizer adam "
                      "--lambdas 1e-3,2e-4 --keep 0.5,0.75,1 --folds 3 --steps 7 --lr 0.02 "
                      "--seed 9 --threads 2",
                      t.addr),
              0);
    unsigned long long id = 0;
    ASSERT_EQ(sscanf(out, "job %llu queued", &id), 1);
    h2t_msg q = {.type = H2T_MSG_GET_JOB}, rep;
    q.u.job_ref.job = id;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.has_spec, 1);
    const h2t_msg_train *s = &rep.u.job.spec;
    ASSERT_STREQ(s->task, "t3");
    ASSERT_EQ(s->spec.method, H2T_METHOD_ALL);
    ASSERT_EQ(s->spec.optimizer, H2T_OPT_ADAM);
    ASSERT_EQ(s->spec.n_lambdas, 2);
    ASSERT(s->spec.lambdas[0] == 1e-3 && s->spec.lambdas[1] == 2e-4);
    ASSERT_EQ(s->spec.n_keeps, 3);
    ASSERT(s->spec.keeps[0] == 0.5 && s->spec.keeps[1] == 0.75 && s->spec.keeps[2] == 1);
    ASSERT_EQ(s->spec.folds, 3);
    ASSERT_EQ(s->spec.steps, 7);
    ASSERT(s->spec.lr == 0.02);
    ASSERT_EQ(s->spec.seed, 9);
    ASSERT_EQ(s->spec.threads, 2);
    ASSERT_EQ(s->retrain, 0);
    ASSERT(s->inputs_digest != 0); /* the server's */
    h2t_msg_free(&rep);

    /* --json prints the job */
    ASSERT_EQ(
        run_cli(out, sizeof(out), "train --server %s --task t3 --method linear --json", t.addr), 0);
    ASSERT_CONTAINS(out, "\"task\": \"t3\", \"method\": \"linear\"");

    /* the new methods and the CV options reach the stored spec too */
    ASSERT_EQ(run_cli(out, sizeof(out),
                      "train --server %s --task t3 --method knn --k 1,5 --fold-kind contiguous "
                      "--one-se",
                      t.addr),
              0);
    ASSERT_EQ(sscanf(out, "job %llu queued", &id), 1);
    q.u.job_ref.job = id;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.spec.spec.method, H2T_METHOD_KNN);
    ASSERT_EQ(rep.u.job.spec.spec.n_lambdas, 2);
    ASSERT(rep.u.job.spec.spec.lambdas[0] == 1 && rep.u.job.spec.spec.lambdas[1] == 5);
    ASSERT_EQ(rep.u.job.spec.spec.fold_kind, H2T_FOLDS_CONTIGUOUS);
    ASSERT_EQ(rep.u.job.spec.spec.one_se, 1);
    h2t_msg_free(&rep);
    ASSERT_EQ(run_cli(out, sizeof(out),
                      "train --server %s --task t3 --method auto --auto-methods linear,ncm,layer "
                      "--cv-repeats 2 --fold-kind stratified",
                      t.addr),
              0);
    ASSERT_EQ(sscanf(out, "job %llu queued", &id), 1);
    q.u.job_ref.job = id;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.spec.spec.method, H2T_METHOD_AUTO);
    ASSERT_EQ(rep.u.job.spec.spec.auto_methods,
              (1u << H2T_METHOD_LINEAR) | (1u << H2T_METHOD_NCM) | (1u << H2T_METHOD_LAYER));
    ASSERT_EQ(rep.u.job.spec.spec.cv_repeats, 2);
    ASSERT_EQ(rep.u.job.spec.spec.fold_kind, H2T_FOLDS_STRATIFIED);
    h2t_msg_free(&rep);
    ASSERT_EQ(run_cli(out, sizeof(out),
                      "train --server %s --task t3 --final-l2s 1e-6,1e-3 --select-group layer",
                      t.addr),
              0);
    ASSERT_EQ(sscanf(out, "job %llu queued", &id), 1);
    q.u.job_ref.job = id;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    ASSERT_EQ(rep.u.job.spec.spec.method, H2T_METHOD_HEAD2TOE);
    ASSERT_EQ(rep.u.job.spec.spec.n_final_l2s, 2);
    ASSERT(rep.u.job.spec.spec.final_l2s[0] == 1e-6 && rep.u.job.spec.spec.final_l2s[1] == 1e-3);
    ASSERT_EQ(rep.u.job.spec.spec.select_group, H2T_SELECT_LAYER);
    h2t_msg_free(&rep);
    /* a spec the solver refuses is refused at submit, naming the option */
    ASSERT_EQ(run_cli(out, sizeof(out),
                      "train --server %s --task t3 --fold-kind contiguous --cv-repeats 3", t.addr),
              1);
    ASSERT_CONTAINS(out, "cv_repeats 3 with contiguous folds");

    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s --task t3 --method svm", t.addr), 2);
    ASSERT_CONTAINS(out, "--method 'svm': want linear, all, head2toe, knn, ncm, layer or auto");
    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s --task t3 --k 3", t.addr), 2);
    ASSERT_CONTAINS(out, "--k is the knn grid: it needs --method knn");
    ASSERT_EQ(run_cli(out, sizeof(out),
                      "train --server %s --task t3 --method auto --auto-methods linear,svm",
                      t.addr),
              2);
    ASSERT_CONTAINS(out, "'svm' is not a candidate");
    ASSERT_EQ(
        run_cli(out, sizeof(out),
                "train --server %s --task t3 --lambdas "
                "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,"
                "30,31,32,33",
                t.addr),
        2);
    ASSERT_CONTAINS(out, "want up to 32 comma-separated numbers");
    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s --task t3 --lr -1", t.addr), 1);
    ASSERT_CONTAINS(out, "learning rate -1");
    h2t_client_close(c);
    test_srv_finish(&t);
}
