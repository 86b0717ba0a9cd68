/*
 * tests/test_server_loop.c - the server's fast paths: requests pipelined in one write
 * (answered on the loop, replies gathered per read callback and written in order, a big reply
 * among small ones, a broken frame after good ones), statistics served on the loop or the
 * thread pool by size, and the job threads' BLAS budget and priority.
 */
#include "tests/fixture.h"
#include "tests/srv_thread.h"
#include "tests/test.h"

#include "client/client.h"
#include "common/err.h"
#include "common/util.h"
#include "server/server.h"
#include "storage/store.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define N 40
#define BIG 4096 /* per-feature stats of this layer: a reply over 64 KiB */

/* "ext": N samples (30 train, 10 test), 2 classes, layers "small" (8) and "big" (BIG):
 * small[s][j] = (s * 8 + j) % 13 - label, big[s][j] = ((s * BIG + j) % 7) / 2. */
static float loop_value(void *ctx, uint32_t l, uint32_t s, uint32_t j, uint32_t label)
{
    (void)ctx;
    if (l == 0)
        return (float)((s * 8 + j) % 13) - (float)label;
    return (float)(((size_t)s * BIG + j) % 7) * 0.5f;
}

static const h2t_layer_info loop_layers[2] = {
    {.name = "small", .rank = 2, .shape = {8}, .dim = 8},
    {.name = "big", .rank = 2, .shape = {BIG}, .dim = BIG},
};
static const char *const loop_names[2] = {"a", "b"};
static const fixture_spec loop_spec = {.source = {.class_names = loop_names},
                                       .samples = {.n = N, .classes = 2, .train = 30},
                                       FIXTURE_LAYERS(loop_layers),
                                       .features = {.value = loop_value}};

/* Samples [first, first + n) of "ext". */
static void write_samples(h2t_store *st, uint32_t eid, uint32_t first, uint32_t n)
{
    ASSERT_OK(fixture_features_write(st, eid, &loop_spec, first, n));
}

/* The fixture store in dir with the first `written` samples. */
static h2t_store *fixture(const char *dir, uint32_t written)
{
    fixture_spec sp = loop_spec;
    sp.features.written = written;
    h2t_store *st = NULL;
    ASSERT_OK(fixture_store_build(dir, H2T_STORE_CREATE, &sp, &st, NULL));
    return st;
}

/* A server on a fresh fixture store holding the first `written` samples (0: all N). */
static void loop_start(test_srv *t, uint32_t written, h2t_srv_config *cfg)
{
    static int n_stores;
    char dir[32];
    snprintf(dir, sizeof(dir), "st%d", n_stores++);
    t->st = fixture(dir, written ? written : N);
    test_srv_start(t, cfg);
}

/* Append the frame of m to buf. */
static void put(uint8_t **buf, size_t *len, const h2t_msg *m)
{
    uint8_t *f;
    size_t fl;
    ASSERT_OK(h2t_proto_encode(m, &f, &fl));
    *buf = realloc(*buf, *len + fl);
    ASSERT(*buf);
    memcpy(*buf + *len, f, fl);
    *len += fl;
    free(f);
}

static h2t_msg stats_req(uint64_t id, const char *layer, int per_feature)
{
    h2t_msg m = {.id = id, .type = H2T_MSG_STATS_REQ};
    m.u.stats_req.extraction = "ext";
    m.u.stats_req.layer = layer;
    m.u.stats_req.per_feature = per_feature;
    return m;
}

TEST(server_pipelined_replies_in_order)
{
    test_srv t = {0};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    loop_start(&t, 0, &cfg);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    /* twice: 10 requests in one write, all answered on the loop, a >64 KiB reply in the
     * middle; then an unknown layer (an error reply, the connection stays) */
    for (int round = 0; round < 2; round++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        for (uint64_t id = 1; id <= 10; id++) {
            h2t_msg m;
            if (id % 3 == 1)
                m = (h2t_msg){.id = id, .type = H2T_MSG_HEALTH_REQ};
            else if (id == 5)
                m = stats_req(id, "big", 1);
            else
                m = stats_req(id, id % 3 == 2 ? "small" : "", 0);
            put(&buf, &len, &m);
        }
        h2t_msg bad = stats_req(11, "nope", 0);
        put(&buf, &len, &bad);
        ASSERT_OK(h2t_client_send_raw(c, buf, len));
        free(buf);
        for (uint64_t id = 1; id <= 11; id++) {
            h2t_msg r;
            ASSERT_OK(h2t_client_recv(c, &r));
            ASSERT_EQ(r.id, id);
            if (id == 11) {
                ASSERT_EQ(r.type, H2T_MSG_ERROR);
                ASSERT_EQ(r.u.error.code, H2T_ENOTFOUND);
                ASSERT_CONTAINS(r.u.error.message, "nope");
            } else if (id % 3 == 1) {
                ASSERT_EQ(r.type, H2T_MSG_HEALTH);
            } else {
                ASSERT_EQ(r.type, H2T_MSG_STATS);
                const h2t_msg_layer_stats *s = &r.u.stats.layers[0];
                if (id == 5) {
                    ASSERT_EQ(r.u.stats.n_layers, 1);
                    ASSERT_EQ(s->dim, BIG);
                    ASSERT_EQ(s->n_mean, BIG);
                    ASSERT_EQ(s->n_fmax, BIG);
                    ASSERT_NEAR(s->mean[0], 1.4375, 1e-9); /* (sample % 7) / 2 over 40 */
                    ASSERT_EQ(s->count, N);
                } else if (id % 3 == 2) {
                    ASSERT_EQ(r.u.stats.n_layers, 1);
                    ASSERT_EQ(s->dim, 8);
                    ASSERT_EQ(s->n_mean, 0);
                } else {
                    ASSERT_EQ(r.u.stats.n_layers, 2);
                    ASSERT_EQ(r.u.stats.layers[1].dim, BIG);
                }
            }
            h2t_msg_free(&r);
        }
    }
    h2t_client_close(c);
    test_srv_finish(&t);
}

TEST(server_pipelined_then_broken_frame)
{
    test_srv t = {0};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    loop_start(&t, 0, &cfg);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    uint8_t *buf = NULL;
    size_t len = 0;
    h2t_msg h1 = {.id = 1, .type = H2T_MSG_HEALTH_REQ};
    h2t_msg s2 = stats_req(2, "small", 1);
    put(&buf, &len, &h1);
    put(&buf, &len, &s2);
    static const uint8_t junk[] = {0, 0, 0, 3, 0xff, 0xff, 0xff}; /* not an Envelope */
    buf = realloc(buf, len + sizeof(junk));
    memcpy(buf + len, junk, sizeof(junk));
    len += sizeof(junk);
    h2t_msg h3 = {.id = 3, .type = H2T_MSG_HEALTH_REQ}; /* after the broken frame: ignored */
    put(&buf, &len, &h3);
    ASSERT_OK(h2t_client_send_raw(c, buf, len));
    free(buf);
    h2t_msg r;
    ASSERT_OK(h2t_client_recv(c, &r));
    ASSERT_EQ(r.id, 1);
    ASSERT_EQ(r.type, H2T_MSG_HEALTH);
    h2t_msg_free(&r);
    ASSERT_OK(h2t_client_recv(c, &r));
    ASSERT_EQ(r.id, 2);
    ASSERT_EQ(r.type, H2T_MSG_STATS);
    ASSERT_EQ(r.u.stats.layers[0].n_var, 8);
    h2t_msg_free(&r);
    ASSERT_OK(h2t_client_recv(c, &r));
    ASSERT_EQ(r.type, H2T_MSG_ERROR);
    ASSERT_EQ(r.u.error.code, H2T_EPROTO);
    h2t_msg_free(&r);
    ASSERT_EQ(h2t_client_recv(c, &r), H2T_ENET); /* closed after the error */
    h2t_client_close(c);

    /* another client is not disturbed */
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    h2t_msg q = {.type = H2T_MSG_HEALTH_REQ};
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_HEALTH, &r));
    h2t_msg_free(&r);
    h2t_client_close(c);
    test_srv_finish(&t);
}

/* ---- the job threads: BLAS budget and priority ---- */
typedef struct seen {
    pthread_mutex_t mu;
    uint32_t threads[4];
    int nice[4];
    int policy[4];
    int n;
} seen;

static int record_runner(void *ud, h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                         h2t_solver_progress_fn progress, void *pud, const atomic_int *cancel,
                         void **blob, size_t *len)
{
    (void)st, (void)task, (void)progress, (void)pud, (void)cancel, (void)blob, (void)len;
    seen *s = ud;
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    pthread_mutex_lock(&s->mu);
    if (s->n < 4) {
        s->threads[s->n] = spec->threads;
        s->nice[s->n] = nice;
        s->policy[s->n] = sched_getscheduler(0); /* Linux: the calling thread */
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
    return h2t_err_set(H2T_EINVAL, "recorded");
}

static void train_and_wait(h2t_client *c, uint32_t threads)
{
    h2t_msg q = {.type = H2T_MSG_TRAIN}, r;
    q.u.train.task = "t";
    q.u.train.spec.method = H2T_METHOD_LINEAR;
    q.u.train.spec.threads = threads;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &r));
    uint64_t id = r.u.job.id;
    h2t_msg_free(&r);
    ASSERT_OK(h2t_client_watch(c, id, NULL, NULL, &r));
    ASSERT_EQ(r.u.job.state, H2T_JOB_FAILED);
    ASSERT_CONTAINS(r.u.job.error, "recorded");
    h2t_msg_free(&r);
}

static void job_threads_case(uint32_t cfg_threads, uint32_t workers, uint32_t expect_budget)
{
    seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    test_srv t = {0};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.runner = record_runner;
    cfg.runner_ud = &s;
    cfg.job_threads = cfg_threads;
    cfg.workers = workers;
    loop_start(&t, 0, &cfg);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    h2t_msg q = {.type = H2T_MSG_CREATE_TASK}, r;
    q.u.create_task.name = "t";
    q.u.create_task.extraction = "ext";
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_TASK, &r));
    h2t_msg_free(&r);
    train_and_wait(c, 0);   /* the server's budget */
    train_and_wait(c, 1);   /* fewer: kept */
    train_and_wait(c, 200); /* more: capped */
    h2t_client_close(c);
    test_srv_finish(&t);
    ASSERT_EQ(s.n, 3);
    ASSERT_EQ(s.threads[0], expect_budget);
    ASSERT_EQ(s.threads[1], 1);
    ASSERT_EQ(s.threads[2], expect_budget);
    for (int i = 0; i < 3; i++) {
        ASSERT_GE(s.nice[i], 10);
        ASSERT_EQ(s.policy[i], SCHED_IDLE); /* the loop's wake-ups preempt it (server.h) */
    }
}

TEST(server_job_threads_and_priority)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t auto1 = cpus - 1 >= 1 ? (uint32_t)(cpus - 1) : 1;
    uint32_t auto2 = (cpus - 1) / 2 >= 1 ? (uint32_t)((cpus - 1) / 2) : 1;
    job_threads_case(0, 1, auto1);
    job_threads_case(0, 2, auto2);
    job_threads_case(3, 1, 3);
}

TEST(server_proto_reframe)
{
    h2t_msg m = {.type = H2T_MSG_HEALTH};
    m.u.health.version = "v";
    m.u.health.connections = 3;
    uint8_t *f0, *f, *g;
    size_t l0, l, lg;
    ASSERT_OK(h2t_proto_encode(&m, &f0, &l0));
    static const uint64_t ids[] = {0, 1, 127, 128, 300, 1ull << 40, UINT64_MAX};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        m.id = ids[i];
        ASSERT_OK(h2t_proto_encode(&m, &g, &lg));
        ASSERT_OK(h2t_proto_reframe(ids[i], f0, l0, &f, &l));
        ASSERT_EQ(l, lg);
        ASSERT(memcmp(f, g, l) == 0);
        h2t_msg d;
        ASSERT_OK(h2t_proto_decode(f + 4, l - 4, &d));
        ASSERT_EQ(d.id, ids[i]);
        ASSERT_EQ(d.u.health.connections, 3);
        h2t_msg_free(&d);
        free(g);
        if (i == 4) { /* a frame that has an id already is refused */
            ASSERT_EQ(h2t_proto_reframe(5, f, l, &g, &lg), H2T_EINVAL);
        }
        free(f);
    }
    ASSERT_EQ(h2t_proto_reframe(1, f0, l0 - 1, &f, &l), H2T_EINVAL); /* length mismatch */
    free(f0);
}

static h2t_msg stats_call(h2t_client *c, const char *layer, int per_feature)
{
    h2t_msg q = stats_req(0, layer, per_feature), r;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_STATS, &r));
    return r;
}

TEST(server_stats_cache_follows_writes)
{
    test_srv t = {0};
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    loop_start(&t, N / 2, &cfg);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    /* twice each (the second from the cache), per layer, every layer, per feature */
    double mean_half = 0;
    for (int k = 0; k < 2; k++) {
        h2t_msg r = stats_call(c, "small", 0);
        ASSERT_EQ(r.u.stats.layers[0].count, N / 2);
        if (k == 0)
            mean_half = r.u.stats.layers[0].mean_of_means;
        ASSERT_NEAR(r.u.stats.layers[0].mean_of_means, mean_half, 0);
        h2t_msg_free(&r);
        r = stats_call(c, "", 0);
        ASSERT_EQ(r.u.stats.n_layers, 2);
        ASSERT_EQ(r.u.stats.layers[1].count, N / 2);
        h2t_msg_free(&r);
        r = stats_call(c, "small", 1);
        ASSERT_EQ(r.u.stats.layers[0].n_mean, 8);
        h2t_msg_free(&r);
    }
    /* the store changes under the running server: the next replies follow */
    uint32_t eid;
    ASSERT_OK(h2t_store_extraction_find(t.st, "ext", &eid));
    write_samples(t.st, eid, N / 2, N / 2);
    h2t_layer_stats *ls;
    ASSERT_OK(h2t_store_stats_get(t.st, eid, 0, &ls));
    double want = 0, want0 = ls->mean[0];
    for (uint32_t j = 0; j < 8; j++)
        want += ls->mean[j] / 8;
    h2t_layer_stats_destroy(ls);
    ASSERT(fabs(want - mean_half) > 1e-6);
    for (int k = 0; k < 2; k++) {
        h2t_msg r = stats_call(c, "small", 0);
        ASSERT_EQ(r.u.stats.layers[0].count, N);
        ASSERT_NEAR(r.u.stats.layers[0].mean_of_means, want, 1e-12);
        h2t_msg_free(&r);
        r = stats_call(c, "", 0);
        ASSERT_EQ(r.u.stats.layers[1].count, N);
        h2t_msg_free(&r);
        r = stats_call(c, "small", 1);
        ASSERT_EQ(r.u.stats.layers[0].count, N);
        ASSERT_NEAR(r.u.stats.layers[0].mean[0], want0, 0);
        h2t_msg_free(&r);
    }
    /* unknown names are error replies from the loop path too */
    h2t_msg q = stats_req(0, "nope", 0), r;
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_STATS, &r), H2T_ENOTFOUND);
    q.u.stats_req.extraction = "nope";
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_STATS, &r), H2T_ENOTFOUND);
    q = stats_req(0, "", 1); /* per feature over every layer */
    ASSERT_EQ(h2t_client_call(c, &q, H2T_MSG_STATS, &r), H2T_EINVAL);
    h2t_client_close(c);
    test_srv_finish(&t);
}
