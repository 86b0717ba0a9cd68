/*
 * bench/server.c - load on the h2tdb server while a train job runs: 64 libuv connections
 * (one request in flight each) alternating stats(one layer) and health for a fixed window,
 * giving requests/s and p50/p99 latency; then 1000 idle connections held at once while a
 * 65th client measures health latency. Loopback only, bounded in count and time. The server
 * runs in this process (a thread) over a synthetic store in a temporary directory; the job is
 * a real head2toe solve. Usage: build/bench/server [SECONDS]   (default 5)
 */
#include "server/server.h"
#include "client/client.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#define N_CONNS 64
#define N_IDLE 1000
#define MAX_LAT 20000000

typedef struct lconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    h2t_proto_reader rd;
    uint64_t sent_ns;
    int k;
    char buf[65536];
} lconn;

static uint8_t *frames[2];
static size_t frame_len[2];
static uint64_t *lat;
static size_t n_lat;
static uint64_t deadline_ns;
static int stopping;

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench/server: %s: %s: %s\n", what, h2t_strerror(rc), h2t_err_detail());
    exit(1);
}

static void send_next(lconn *c)
{
    uv_buf_t b = uv_buf_init((char *)frames[c->k & 1], (unsigned)frame_len[c->k & 1]);
    c->k++;
    c->sent_ns = h2t_now_ns();
    uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, NULL);
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)s;
    lconn *c = h->data;
    b->base = c->buf;
    b->len = sizeof(c->buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    lconn *c = s->data;
    if (n < 0) {
        fprintf(stderr, "bench/server: a connection closed: %s\n", uv_strerror((int)n));
        exit(1);
    }
    const uint8_t *p = (const uint8_t *)b->base;
    size_t left = (size_t)n;
    while (left > 0) {
        size_t used;
        const uint8_t *payload;
        uint32_t plen;
        int rc = h2t_proto_reader_feed(&c->rd, p, left, &used, &payload, &plen);
        if (rc < 0)
            die("reply", rc);
        p += used;
        left -= used;
        if (rc == 1) {
            uint64_t now = h2t_now_ns();
            if (n_lat < MAX_LAT)
                lat[n_lat++] = now - c->sent_ns;
            if (now < deadline_ns)
                send_next(c);
            else if (!stopping) {
                stopping = 1;
            }
            if (now >= deadline_ns)
                uv_read_stop(s);
        }
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    lconn *c = req->data;
    if (status < 0) {
        fprintf(stderr, "bench/server: connect: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    send_next(c);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *srv_main(void *arg)
{
    h2t_srv_run(arg);
    return NULL;
}

/* A store with one extraction: n samples, 3 layers of 512 features, 10 classes. */
static h2t_store *make_store(const char *dir, uint32_t n)
{
    h2t_store *st;
    int rc = h2t_store_open(dir, H2T_STORE_CREATE, &st);
    if (rc < 0)
        die("store", rc);
    char *names[10];
    char nb[10][8];
    uint32_t *labels = malloc(n * sizeof(*labels));
    uint8_t *split = malloc(n);
    for (int k = 0; k < 10; k++) {
        snprintf(nb[k], sizeof(nb[k]), "c%d", k);
        names[k] = nb[k];
    }
    for (uint32_t i = 0; i < n; i++) {
        labels[i] = i % 10;
        split[i] = i < n * 3 / 4 ? H2T_SPLIT_TRAIN : H2T_SPLIT_TEST;
    }
    h2t_source src = {0};
    snprintf(src.name, sizeof(src.name), "synth");
    src.n_samples = n;
    src.n_classes = 10;
    src.class_names = names;
    src.labels = labels;
    src.split = split;
    uint32_t sid, mid, eid;
    int reused;
    h2t_model_rec m = {0};
    snprintf(m.name, sizeof(m.name), "toy");
    h2t_layer_info L[3] = {0};
    for (int l = 0; l < 3; l++) {
        snprintf(L[l].name, sizeof(L[l].name), "l%d", l);
        L[l].rank = 2;
        L[l].shape[0] = 512;
        L[l].dim = 512;
    }
    h2t_extraction e = {0};
    snprintf(e.name, sizeof(e.name), "ext");
    e.n_samples = n;
    e.n_layers = 3;
    e.layers = L;
    if ((rc = h2t_store_source_put(st, &src, &sid, &reused)) < 0 ||
        (rc = h2t_store_model_put(st, &m, &mid, &reused)) < 0)
        die("fixture", rc);
    e.source = sid;
    e.model = mid;
    if ((rc = h2t_store_extraction_begin(st, &e, &eid, &reused)) < 0)
        die("fixture", rc);
    float *f[3];
    uint64_t s = 1;
    for (int l = 0; l < 3; l++) {
        f[l] = malloc((size_t)n * 512 * sizeof(float));
        for (size_t i = 0; i < (size_t)n * 512; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            f[l][i] = (float)((s >> 40) & 0xffff) / 65536.0f +
                      ((i % 512) == labels[i / 512] * (uint32_t)(l + 1) ? 0.3f : 0.0f);
        }
    }
    const float *ptrs[3] = {f[0], f[1], f[2]};
    if ((rc = h2t_store_features_write(st, eid, 0, n, ptrs)) < 0)
        die("features", rc);
    for (int l = 0; l < 3; l++)
        free(f[l]);
    free(labels);
    free(split);
    return st;
}

static int job_state(h2t_client *c, uint64_t id, double *progress)
{
    h2t_msg q = {.type = H2T_MSG_GET_JOB}, rep;
    q.u.job_ref.job = id;
    int rc = h2t_client_call(c, &q, H2T_MSG_JOB, &rep);
    if (rc < 0)
        die("get job", rc);
    int st = rep.u.job.state;
    *progress = rep.u.job.progress;
    h2t_msg_free(&rep);
    return st;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 5;
    if (secs <= 0 || secs > 120)
        secs = 5;
    h2t_log_set_level(H2T_LOG_LWARN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    char dir[] = "/tmp/h2t-bench-server-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    h2t_store *st = make_store(dir, 4000);
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.handle_signals = 0;
    h2t_srv *srv;
    int rc = h2t_srv_create(&cfg, st, &srv);
    if (rc < 0)
        die("server", rc);
    pthread_t th;
    pthread_create(&th, NULL, srv_main, srv);
    int port = h2t_srv_port(srv);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

    /* the train job that runs during the measurement */
    h2t_client *c;
    if ((rc = h2t_client_connect(addr, NULL, 60000, &c)) < 0)
        die("connect", rc);
    h2t_msg q = {.type = H2T_MSG_CREATE_TASK}, rep;
    q.u.create_task.name = "t";
    q.u.create_task.extraction = "ext";
    if ((rc = h2t_client_call(c, &q, H2T_MSG_TASK, &rep)) < 0)
        die("task", rc);
    h2t_msg_free(&rep);
    q = (h2t_msg){.type = H2T_MSG_TRAIN};
    q.u.train.task = "t";
    q.u.train.method = H2T_PROTO_METHOD_HEAD2TOE;
    q.u.train.threads = 1;
    if ((rc = h2t_client_call(c, &q, H2T_MSG_JOB, &rep)) < 0)
        die("train", rc);
    uint64_t job = rep.u.job.id;
    h2t_msg_free(&rep);
    double progress;
    while (job_state(c, job, &progress) == H2T_JOB_QUEUED)
        usleep(10000);

    /* encoded requests */
    h2t_msg hq = {.id = 1, .type = H2T_MSG_HEALTH_REQ};
    h2t_msg sq = {.id = 2, .type = H2T_MSG_STATS_REQ};
    sq.u.stats_req.extraction = "ext";
    sq.u.stats_req.layer = "l1";
    if (h2t_proto_encode(&sq, &frames[0], &frame_len[0]) < 0 ||
        h2t_proto_encode(&hq, &frames[1], &frame_len[1]) < 0)
        return 1;
    lat = malloc(MAX_LAT * sizeof(*lat));

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    lconn *lc = calloc(N_CONNS, sizeof(*lc));
    double t0 = h2t_now_s();
    deadline_ns = h2t_now_ns() + (uint64_t)(secs * 1e9);
    for (int i = 0; i < N_CONNS; i++) {
        uv_tcp_init(&loop, &lc[i].tcp);
        lc[i].tcp.data = &lc[i];
        lc[i].creq.data = &lc[i];
        lc[i].k = i;
        h2t_proto_reader_init(&lc[i].rd, 1u << 24);
        uv_tcp_nodelay(&lc[i].tcp, 1);
        uv_tcp_connect(&lc[i].creq, &lc[i].tcp, (const struct sockaddr *)&sa, on_connect);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    double el = h2t_now_s() - t0;
    int st_after = job_state(c, job, &progress);
    qsort(lat, n_lat, sizeof(*lat), cmp_u64);
    double p50 = n_lat ? lat[n_lat / 2] / 1e6 : 0, p99 = n_lat ? lat[n_lat * 99 / 100] / 1e6 : 0;
    printf("server load: %d connections, stats(l1, 512 features)+health alternating, %.1f s\n",
           N_CONNS, el);
    printf("  requests %zu  -> %.0f req/s   p50 %.3f ms   p99 %.3f ms   max %.3f ms\n", n_lat,
           n_lat / el, p50, p99, n_lat ? lat[n_lat - 1] / 1e6 : 0);
    printf("  train job (head2toe, 3000 train x 1536 features, 1 BLAS thread) during the "
           "window: %s at the end (progress %.0f%%)\n",
           st_after == H2T_JOB_RUNNING ? "still running" : "FINISHED EARLY", 100 * progress);
    for (int i = 0; i < N_CONNS; i++) {
        h2t_proto_reader_free(&lc[i].rd);
        uv_close((uv_handle_t *)&lc[i].tcp, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    /* 1000 idle connections held at once (blocking sockets, no request) */
    h2t_client **idle = calloc(N_IDLE, sizeof(*idle));
    int held = 0;
    for (int i = 0; i < N_IDLE; i++) {
        if ((rc = h2t_client_connect(addr, NULL, 10000, &idle[i])) < 0)
            break;
        held++;
    }
    usleep(200000);
    uint64_t hl[200];
    uint32_t conns = 0;
    for (int i = 0; i < 200; i++) {
        h2t_msg h = {.type = H2T_MSG_HEALTH_REQ};
        uint64_t a = h2t_now_ns();
        if ((rc = h2t_client_call(c, &h, H2T_MSG_HEALTH, &rep)) < 0)
            die("health", rc);
        hl[i] = h2t_now_ns() - a;
        conns = rep.u.health.connections;
        h2t_msg_free(&rep);
    }
    qsort(hl, 200, sizeof(*hl), cmp_u64);
    printf("idle: %d connections held, server counts %u open; health p50 %.3f ms p99 %.3f ms "
           "meanwhile\n",
           held, conns, hl[100] / 1e6, hl[198] / 1e6);
    for (int i = 0; i < held; i++)
        h2t_client_close(idle[i]);
    free(idle);

    q = (h2t_msg){.type = H2T_MSG_CANCEL_JOB};
    q.u.job_ref.job = job;
    if (h2t_client_call(c, &q, H2T_MSG_JOB, &rep) == 0)
        h2t_msg_free(&rep);
    h2t_client_close(c);
    h2t_srv_stop(srv);
    pthread_join(th, NULL);
    h2t_srv_destroy(srv);
    h2t_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench/server: could not remove %s\n", dir);
    free(lc);
    free(lat);
    free(frames[0]);
    free(frames[1]);
    uv_loop_close(&loop);
    return 0;
}
