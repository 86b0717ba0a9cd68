/*
 * bench/server.c - load on the h2tdb server while a train job runs, with the load generator
 * in a separate process. This process is the server: a synthetic store in a temporary
 * directory (4000 samples, 3 layers of 512 features, 10 classes), h2t_srv on 127.0.0.1 with
 * an ephemeral port, and a real head2toe train job running on the server's job worker. The
 * load generator is this binary exec'd again (--load PORT ...): 64 libuv connections with
 * DEPTH requests in flight each (default 1), alternating stats(one layer) and health for
 * SECONDS, giving requests/s and p50/p99 latency; then 1000 idle connections held at once
 * while a 1001st connection measures health latency. Loopback only, bounded in count and
 * time (a run is killed after SECONDS + 60 s). The server process reports the CPU time of its
 * threads during the load window (event loop, job worker, the rest) and the load
 * generator's own, so one sees where the 2 cores went.
 *
 * Before the load, the start of two train jobs on the same task through this server: the
 * time from submit until a job reaches its first cross-validation stage (its design matrix
 * read from the store, or shared: solver.h h2t_design_cache), each cancelled there.
 *
 * Usage: build/bench/server [SECONDS] [--runs R] [--depth D] [--threads T]
 *                           [--store DIR --task NAME] [--start-only] [--spin US] [--no-idle]
 *                           [--same-session] [--gen-spin US]
 *   SECONDS   load window per run (default 5)
 *   --runs    runs (each a fresh load process; the median is printed), default 3
 *   --depth   requests in flight per connection (default 1: request, wait, next)
 *   --threads the train job's BLAS threads (default 0: the server's choice)
 *   --store   measure the job start on an existing store's task instead of the synthetic
 *             store (the server writes its jobs there: use a copy); implies --start-only
 *   --start-only  only the job start, no load runs
 *   --spin US     the server's h2t_srv_config.spin_us (default: the server's default)
 *   --no-idle     job threads niced only, not SCHED_IDLE (h2t_srv_config.job_idle = 0)
 *   --same-session  the load generator in this process's session instead of a session of
 *                 its own (see one_run)
 *   --gen-spin US the generator polls this long after a reply before sleeping (default 50;
 *                 0: sleep at once; see load_run)
 */
#include "server/server.h"
#include "client/client.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/store.h"
#include "tests/fixture.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#define N_CONNS 64
#define N_IDLE 1000
#define MAX_DEPTH 32
#define MAX_LAT 20000000
#define MAX_RUNS 15
#define ACC_BYTES 65536

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench/server: %s: %s: %s\n", what, h2t_strerror(rc), h2t_err_detail());
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* ======================= the load generator (child process) ======================= */

typedef struct lconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uint64_t sent_ns[MAX_DEPTH];
    uint32_t k; /* requests sent */
    size_t have;
    uint8_t acc[ACC_BYTES]; /* replies being read: whole frames are consumed in place */
} lconn;

typedef struct load {
    int depth;
    uint8_t *frames[2][MAX_DEPTH]; /* [stats, health][slot]: request id = slot + 1 */
    size_t frame_len[2][MAX_DEPTH];
    uint64_t *lat;
    size_t n_lat, n_bad;
    uint64_t deadline_ns;
    unsigned activity; /* replies read: the spin loop's sign of life */
} load;

static load L;

static void on_lwrite(uv_write_t *req, int status)
{
    if (status < 0) {
        fprintf(stderr, "bench/server: load write: %s\n", uv_strerror(status));
        exit(1);
    }
    free(req);
}

/* Send the requests for the given slots in one write: a direct write first, what the socket
 * does not take now is copied and queued. */
static void send_slots(lconn *c, const int *slots, int n)
{
    if (n == 0)
        return;
    uv_buf_t b[MAX_DEPTH];
    size_t total = 0;
    uint64_t now = h2t_now_ns();
    for (int i = 0; i < n; i++) {
        int kind = (int)(c->k++ & 1);
        b[i] = uv_buf_init((char *)L.frames[kind][slots[i]], (unsigned)L.frame_len[kind][slots[i]]);
        total += b[i].len;
        c->sent_ns[slots[i]] = now;
    }
    int w = uv_try_write((uv_stream_t *)&c->tcp, b, (unsigned)n);
    if (w == (int)total)
        return;
    if (w < 0 && w != UV_EAGAIN) {
        fprintf(stderr, "bench/server: load write: %s\n", uv_strerror(w));
        exit(1);
    }
    size_t skip = w > 0 ? (size_t)w : 0, left = total - skip;
    uv_write_t *req = malloc(sizeof(*req) + left);
    if (!req) {
        fprintf(stderr, "bench/server: out of memory\n");
        exit(1);
    }
    char *copy = (char *)(req + 1), *q = copy;
    for (int i = 0; i < n; i++) {
        size_t from = skip < b[i].len ? skip : b[i].len;
        memcpy(q, b[i].base + from, b[i].len - from);
        q += b[i].len - from;
        skip -= from;
    }
    uv_buf_t rest = uv_buf_init(copy, (unsigned)left);
    if (uv_write(req, (uv_stream_t *)&c->tcp, &rest, 1, on_lwrite) < 0) {
        fprintf(stderr, "bench/server: load write failed\n");
        exit(1);
    }
}

static void on_lalloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)s;
    lconn *c = h->data;
    b->base = (char *)c->acc + c->have;
    b->len = sizeof(c->acc) - c->have;
}

/* A reply's request id and body field number, read from the packed Envelope (id = field 1,
 * varint; the body follows): enough to match the slot and count error replies without
 * decoding. Returns 0 when the bytes are not of that shape. */
static int reply_peek(const uint8_t *p, uint32_t n, uint64_t *id, uint32_t *body)
{
    uint32_t i = 1;
    uint64_t v = 0;
    if (n < 2 || p[0] != 0x08)
        return 0;
    for (int sh = 0; i < n && sh < 64; sh += 7) {
        uint8_t b = p[i++];
        v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80))
            break;
    }
    if (i >= n)
        return 0;
    uint32_t tag = p[i] & 0x7f;
    if ((p[i] & 0x80) && i + 1 < n)
        tag |= (uint32_t)(p[i + 1] & 0x7f) << 7;
    *id = v;
    *body = tag >> 3;
    return 1;
}

static void on_lread(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    lconn *c = s->data;
    L.activity++;
    if (nread < 0) {
        fprintf(stderr, "bench/server: a load connection closed: %s\n", uv_strerror((int)nread));
        exit(1);
    }
    c->have += (size_t)nread;
    uint64_t now = h2t_now_ns();
    int again[MAX_DEPTH], n_again = 0;
    size_t off = 0;
    while (c->have - off >= 4) {
        uint32_t len = h2t_be32_get(c->acc + off);
        if (len > sizeof(c->acc) - 4) {
            fprintf(stderr, "bench/server: reply of %u bytes is too big\n", len);
            exit(1);
        }
        if (c->have - off - 4 < len)
            break;
        uint64_t id = 0;
        uint32_t body = 0;
        if (!reply_peek(c->acc + off + 4, len, &id, &body) || id < 1 || id > (uint64_t)L.depth) {
            fprintf(stderr, "bench/server: a reply without a known request id\n");
            exit(1);
        }
        if (body != H2T_MSG_STATS && body != H2T_MSG_HEALTH)
            L.n_bad++;
        int slot = (int)id - 1;
        if (L.n_lat < MAX_LAT)
            L.lat[L.n_lat++] = now - c->sent_ns[slot];
        if (now < L.deadline_ns)
            again[n_again++] = slot;
        off += 4 + (size_t)len;
    }
    memmove(c->acc, c->acc + off, c->have - off);
    c->have -= off;
    send_slots(c, again, n_again);
    if (now >= L.deadline_ns && n_again == 0)
        uv_read_stop(s);
}

static void on_lconnect(uv_connect_t *req, int status)
{
    lconn *c = req->data;
    if (status < 0) {
        fprintf(stderr, "bench/server: connect: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_lalloc, on_lread);
    int slots[MAX_DEPTH];
    for (int i = 0; i < L.depth; i++)
        slots[i] = i;
    send_slots(c, slots, L.depth);
}

static double cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Prints two lines on stdout for the server process:
 *   load REQUESTS SECONDS P50_NS P99_NS MAX_NS BAD CPU_S
 *   idle HELD SERVER_COUNT P50_NS P99_NS */
/* Run the generator's loop, polling for spin_us after the last reply before sleeping in
 * epoll (the server's h2t_srv_run does the same): a client that sleeps between replies pays a
 * wake-up per reply, which on this VM made the generator, not the server, the limit. */
static void load_run(uv_loop_t *loop, uint32_t spin_us)
{
    uint64_t spin_ns = (uint64_t)spin_us * 1000u, last = h2t_now_ns();
    unsigned seen = L.activity;
    int alive = 1;
    while (alive) {
        if (spin_ns == 0 || h2t_now_ns() - last > spin_ns) {
            alive = uv_run(loop, UV_RUN_ONCE);
            last = h2t_now_ns();
        } else {
            alive = uv_run(loop, UV_RUN_NOWAIT);
        }
        if (L.activity != seen) {
            seen = L.activity;
            last = h2t_now_ns();
        }
    }
}

static int load_main(int port, double secs, int depth, uint32_t spin_us)
{
    raise_nofile();
    h2t_log_set_level(H2T_LOG_LWARN);
    L.depth = depth;
    for (int s = 0; s < depth; s++) {
        h2t_msg sq = {.id = (uint64_t)s + 1, .type = H2T_MSG_STATS_REQ};
        sq.u.stats_req.extraction = "ext";
        sq.u.stats_req.layer = "l1";
        h2t_msg hq = {.id = (uint64_t)s + 1, .type = H2T_MSG_HEALTH_REQ};
        if (h2t_proto_encode(&sq, &L.frames[0][s], &L.frame_len[0][s]) < 0 ||
            h2t_proto_encode(&hq, &L.frames[1][s], &L.frame_len[1][s]) < 0)
            die("encode", H2T_ENOMEM);
    }
    L.lat = malloc(MAX_LAT * sizeof(*L.lat));
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    lconn *lc = calloc(N_CONNS, sizeof(*lc));
    if (!L.lat || !lc)
        die("load", H2T_ENOMEM);
    double cpu0 = cpu_self_s();
    double t0 = h2t_now_s();
    L.deadline_ns = h2t_now_ns() + (uint64_t)(secs * 1e9);
    for (int i = 0; i < N_CONNS; i++) {
        uv_tcp_init(&loop, &lc[i].tcp);
        lc[i].tcp.data = &lc[i];
        lc[i].creq.data = &lc[i];
        lc[i].k = (uint32_t)i;
        uv_tcp_nodelay(&lc[i].tcp, 1);
        uv_tcp_connect(&lc[i].creq, &lc[i].tcp, (const struct sockaddr *)&sa, on_lconnect);
    }
    load_run(&loop, spin_us);
    double el = h2t_now_s() - t0;
    double cpu = cpu_self_s() - cpu0;
    qsort(L.lat, L.n_lat, sizeof(*L.lat), cmp_u64);
    size_t n = L.n_lat;
    printf("load %zu %.6f %llu %llu %llu %zu %.3f\n", n, el,
           (unsigned long long)(n ? L.lat[n / 2] : 0),
           (unsigned long long)(n ? L.lat[n * 99 / 100] : 0),
           (unsigned long long)(n ? L.lat[n - 1] : 0), L.n_bad, cpu);
    fflush(stdout);
    for (int i = 0; i < N_CONNS; i++)
        uv_close((uv_handle_t *)&lc[i].tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    /* 1000 idle connections held at once (blocking sockets, no request), then health
     * latency on one more connection meanwhile */
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    h2t_client **idle = calloc(N_IDLE, sizeof(*idle));
    h2t_client *c;
    int rc;
    if ((rc = h2t_client_connect(addr, NULL, 10000, &c)) < 0)
        die("connect", rc);
    int held = 0;
    for (int i = 0; i < N_IDLE; i++) {
        if (h2t_client_connect(addr, NULL, 10000, &idle[i]) < 0)
            break;
        held++;
    }
    usleep(200000);
    uint64_t hl[200];
    uint32_t conns = 0;
    for (int i = 0; i < 200; i++) {
        h2t_msg h = {.type = H2T_MSG_HEALTH_REQ}, rep;
        uint64_t a = h2t_now_ns();
        if ((rc = h2t_client_call(c, &h, H2T_MSG_HEALTH, &rep)) < 0)
            die("health", rc);
        hl[i] = h2t_now_ns() - a;
        conns = rep.u.health.connections;
        h2t_msg_free(&rep);
    }
    qsort(hl, 200, sizeof(*hl), cmp_u64);
    printf("idle %d %u %llu %llu\n", held, conns, (unsigned long long)hl[100],
           (unsigned long long)hl[198]);
    fflush(stdout);
    for (int i = 0; i < held; i++)
        h2t_client_close(idle[i]);
    h2t_client_close(c);
    free(idle);
    free(lc);
    free(L.lat);
    for (int s = 0; s < depth; s++) {
        free(L.frames[0][s]);
        free(L.frames[1][s]);
    }
    return 0;
}

/* ======================= the server process ======================= */

static pid_t loop_tid;
static atomic_int loop_done;

static void *srv_main(void *arg)
{
    loop_tid = (pid_t)syscall(SYS_gettid);
    /* libuv's pool threads start from this thread and inherit the name */
    pthread_setname_np(pthread_self(), "h2t-loop");
    h2t_srv_run(arg);
    atomic_store(&loop_done, 1);
    return NULL;
}

/* CPU seconds of this process's threads: the event loop, libuv's thread pool (started by the
 * loop thread, so named "h2t-loop" too), the job worker(s) (named "h2t-job" by the server),
 * and the rest (OpenBLAS's threads, main). */
typedef struct thread_cpu {
    double loop, pool, job, other;
} thread_cpu;

static void threads_cpu(thread_cpu *t)
{
    memset(t, 0, sizeof(*t));
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    long hz = sysconf(_SC_CLK_TCK);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close)
            continue;
        unsigned long ut = 0, stt = 0;
        /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
         * utime stime */
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) !=
            2)
            continue;
        double s = (double)(ut + stt) / (double)hz;
        if (atoi(e->d_name) == loop_tid)
            t->loop += s;
        else if (!strncmp(open + 1, "h2t-loop", 8))
            t->pool += s;
        else if (!strncmp(open + 1, "h2t-job", 7))
            t->job += s;
        else
            t->other += s;
    }
    closedir(d);
}

static float store_value(void *ctx, uint32_t l, uint32_t i, uint32_t j, uint32_t label)
{
    (void)i;
    return fixture_lcg_unit(ctx) + (j == label * (l + 1) ? 0.3f : 0.0f);
}

/* A store with one extraction: n samples, 3 layers of 512 features, 10 classes. */
static h2t_store *make_store(const char *dir, uint32_t n)
{
    static const h2t_layer_info layers[3] = {
        {.name = "l0", .rank = 2, .shape = {512}, .dim = 512},
        {.name = "l1", .rank = 2, .shape = {512}, .dim = 512},
        {.name = "l2", .rank = 2, .shape = {512}, .dim = 512},
    };
    uint64_t s = 1;
    fixture_spec sp = {.samples = {.n = n, .classes = 10, .train = n * 3 / 4},
                       FIXTURE_LAYERS(layers),
                       .features = {.written = n, .value = store_value, .ctx = &s}};
    h2t_store *st = NULL;
    int rc = fixture_store_build(dir, H2T_STORE_CREATE, &sp, &st, NULL);
    if (rc < 0)
        die("store", rc);
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

/* Submit a head2toe job and wait until a worker runs it. */
static uint64_t start_job(h2t_client *c, uint32_t threads)
{
    h2t_msg q = {.type = H2T_MSG_TRAIN}, rep;
    q.u.train.task = "t";
    q.u.train.spec.method = H2T_METHOD_HEAD2TOE;
    q.u.train.spec.threads = threads;
    q.u.train.retrain = 1; /* a new job even when an earlier run's finished */
    int rc = h2t_client_call(c, &q, H2T_MSG_JOB, &rep);
    if (rc < 0)
        die("train", rc);
    uint64_t job = rep.u.job.id;
    h2t_msg_free(&rep);
    double progress;
    while (job_state(c, job, &progress) == H2T_JOB_QUEUED)
        usleep(10000);
    usleep(300000); /* past the job's start-up (task load) into the solve */
    return job;
}

static void cancel_job(h2t_client *c, uint64_t job)
{
    h2t_msg q = {.type = H2T_MSG_CANCEL_JOB}, rep;
    q.u.job_ref.job = job;
    if (h2t_client_call(c, &q, H2T_MSG_JOB, &rep) == 0)
        h2t_msg_free(&rep);
}

/* Seconds from submitting a head2toe job (seed) on task until its first cross-validation
 * stage, polled every millisecond; the job is then cancelled and waited for. */
static double job_start_s(h2t_client *c, const char *task, uint64_t seed)
{
    h2t_msg q = {.type = H2T_MSG_TRAIN}, rep;
    q.u.train.task = task;
    q.u.train.spec.method = H2T_METHOD_HEAD2TOE;
    q.u.train.spec.seed = seed;
    q.u.train.retrain = 1;
    double t0 = h2t_now_s(), t = -1;
    int rc = h2t_client_call(c, &q, H2T_MSG_JOB, &rep);
    if (rc < 0)
        die("train", rc);
    uint64_t job = rep.u.job.id;
    h2t_msg_free(&rep);
    for (;;) {
        h2t_msg g = {.type = H2T_MSG_GET_JOB};
        g.u.job_ref.job = job;
        if ((rc = h2t_client_call(c, &g, H2T_MSG_JOB, &rep)) < 0)
            die("get job", rc);
        int st = rep.u.job.state;
        int cv = rep.u.job.stage && !strncmp(rep.u.job.stage, "cv", 2);
        if (st > H2T_JOB_RUNNING) {
            fprintf(stderr, "bench/server: job %llu ended before its cross-validation: %s\n",
                    (unsigned long long)job, rep.u.job.error ? rep.u.job.error : "");
            exit(1);
        }
        h2t_msg_free(&rep);
        if (cv) {
            t = h2t_now_s() - t0;
            break;
        }
        usleep(1000);
    }
    cancel_job(c, job);
    int st;
    double progress;
    while ((st = job_state(c, job, &progress)) <= H2T_JOB_RUNNING)
        usleep(2000);
    return t;
}

/* The server's runner here: the default solver runner, through the bench's design cache or,
 * while `plain` is set, without it (h2t_solver_run: every job reads its own matrix) */
typedef struct bench_runner {
    h2t_design_cache *dc;
    atomic_int plain;
} bench_runner;

static int bench_run(void *ud, h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                     h2t_solver_progress_fn progress, void *pud, const atomic_int *cancel,
                     void **blob, size_t *len)
{
    bench_runner *b = ud;
    return h2t_srv_runner_solver(atomic_load(&b->plain) ? NULL : b->dc, st, task, spec, progress,
                                 pud, cancel, blob, len);
}

static void measure_job_start(h2t_client *c, const char *task, bench_runner *br)
{
    atomic_store(&br->plain, 1);
    double u = job_start_s(c, task, 100);
    atomic_store(&br->plain, 0);
    double a = job_start_s(c, task, 101);
    double b = job_start_s(c, task, 102);
    h2t_design_cache_stats ds;
    h2t_design_cache_stats_get(br->dc, &ds);
    printf("job start (submit -> first cross-validation stage) on task %s: without the design "
           "cache %.3f s; with it, first job %.3f s, second job %.3f s (%.1fx faster than "
           "without); matrices read %llu, shared %llu, held %.1f MB\n",
           task, u, a, b, b > 0 ? u / b : 0, (unsigned long long)ds.loads,
           (unsigned long long)ds.hits, ds.bytes / 1e6);
}

typedef struct run_result {
    double rps, p50, p99, max, el, gen_cpu, hp50, hp99;
    size_t n, bad;
    int held;
    unsigned counted;
    thread_cpu cpu;
    int job_ran; /* the job was running at the end of the window */
} run_result;

/* One run: exec the load generator, read its two lines. */
static int one_run(const char *self, int port, double secs, int depth, int own_session,
                   int gen_spin, h2t_client *c, uint64_t job, run_result *r)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    char a_port[16], a_secs[32], a_depth[16];
    snprintf(a_port, sizeof(a_port), "%d", port);
    snprintf(a_secs, sizeof(a_secs), "%g", secs);
    snprintf(a_depth, sizeof(a_depth), "%d", depth);
    char a_spin[16];
    snprintf(a_spin, sizeof(a_spin), "%d", gen_spin);
    /* posix_spawn, not fork: OpenBLAS's fork handler would wait for the running job's BLAS
     * threads */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char secs_cap[32];
    snprintf(secs_cap, sizeof(secs_cap), "%d", (int)secs + 60);
    char *args[] = {(char *)"timeout", secs_cap, (char *)self, (char *)"--load", a_port, a_secs,
                    a_depth,           a_spin,   NULL};
    pid_t pid;
    extern char **environ;
    /* the generator in a session of its own, as a real client is: with the kernel's autogroup
     * scheduling (on here) a server and generator in one session share one group's CPU
     * share against the other sessions on the machine */
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    if (own_session)
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID);
    int e = posix_spawnp(&pid, "timeout", &fa, &at, args, environ); /* bounded in time */
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    thread_cpu t0, t1;
    threads_cpu(&t0);
    char line[512];
    int got = 0;
    memset(r, 0, sizeof(*r));
    while (fgets(line, sizeof(line), f)) {
        unsigned long long p50, p99, mx;
        if (!strncmp(line, "load ", 5) &&
            sscanf(line + 5, "%zu %lf %llu %llu %llu %zu %lf", &r->n, &r->el, &p50, &p99, &mx,
                   &r->bad, &r->gen_cpu) == 7) {
            threads_cpu(&t1);
            double progress;
            r->job_ran = job_state(c, job, &progress) == H2T_JOB_RUNNING;
            r->cpu.loop = t1.loop - t0.loop;
            r->cpu.job = t1.job - t0.job;
            r->cpu.pool = t1.pool - t0.pool;
            r->cpu.other = t1.other - t0.other;
            r->rps = r->n / r->el;
            r->p50 = p50 / 1e6;
            r->p99 = p99 / 1e6;
            r->max = mx / 1e6;
            got |= 1;
        } else if (!strncmp(line, "idle ", 5)) {
            unsigned long long h50, h99;
            if (sscanf(line + 5, "%d %u %llu %llu", &r->held, &r->counted, &h50, &h99) == 4) {
                r->hp50 = h50 / 1e6;
                r->hp99 = h99 / 1e6;
                got |= 2;
            }
        }
    }
    fclose(f);
    int status;
    waitpid(pid, &status, 0);
    if (got != 3 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench/server: the load generator failed (status %d)\n", status);
        return -1;
    }
    return 0;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "--load"))
        return load_main(atoi(argv[2]), atof(argv[3]), atoi(argv[4]), (uint32_t)atoi(argv[5]));
    double secs = 5;
    int runs = 3, depth = 1, start_only = 0, spin_us = -1, job_idle = 1, own_session = 1,
        gen_spin = 50;
    uint32_t threads = 0;
    const char *store_dir = NULL, *task = "t";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--store") && i + 1 < argc)
            store_dir = argv[++i];
        else if (!strcmp(argv[i], "--task") && i + 1 < argc)
            task = argv[++i];
        else if (!strcmp(argv[i], "--start-only"))
            start_only = 1;
        else if (!strcmp(argv[i], "--spin") && i + 1 < argc)
            spin_us = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-idle"))
            job_idle = 0;
        else if (!strcmp(argv[i], "--same-session"))
            own_session = 0;
        else if (!strcmp(argv[i], "--gen-spin") && i + 1 < argc)
            gen_spin = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--depth") && i + 1 < argc)
            depth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = (uint32_t)atoi(argv[++i]);
        else if (argv[i][0] != '-')
            secs = atof(argv[i]);
        else {
            fprintf(stderr,
                    "usage: %s [SECONDS] [--runs R] [--depth D] [--threads T] [--store DIR "
                    "--task NAME] [--start-only] [--spin US] [--no-idle] [--same-session] "
                    "[--gen-spin US]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!(secs > 0 && secs <= 120))
        secs = 5;
    if (runs < 1 || runs > MAX_RUNS)
        runs = 3;
    if (depth < 1 || depth > MAX_DEPTH)
        depth = 1;
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0)
        return 1;
    self[sl] = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    h2t_log_set_level(H2T_LOG_LWARN);
    raise_nofile();
    char dir[] = "/tmp/h2t-bench-server-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    if (store_dir)
        start_only = 1;
    h2t_store *st = NULL;
    int rc;
    if (store_dir) {
        int orc = h2t_store_open(store_dir, 0, &st);
        if (orc < 0)
            die("store", orc);
    } else {
        st = make_store(dir, 4000);
    }
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    if (spin_us >= 0)
        cfg.spin_us = (uint32_t)spin_us;
    cfg.job_idle = job_idle;
    bench_runner br;
    if ((rc = h2t_design_cache_create(cfg.design_cache_bytes, &br.dc)) < 0)
        die("design cache", rc);
    atomic_init(&br.plain, 0);
    cfg.runner = bench_run;
    cfg.runner_ud = &br;
    h2t_srv *srv = NULL;
    pthread_t th;
    char addr[64];
    if ((rc = fixture_srv_start(&cfg, st, srv_main, &th, &srv, addr, sizeof(addr))) < 0)
        die("server", rc);
    int port = h2t_srv_port(srv);

    h2t_client *c;
    if ((rc = h2t_client_connect(addr, NULL, 60000, &c)) < 0)
        die("connect", rc);
    if (!store_dir) {
        h2t_msg q = {.type = H2T_MSG_CREATE_TASK}, rep;
        q.u.create_task.name = "t";
        q.u.create_task.extraction = "ext";
        if ((rc = h2t_client_call(c, &q, H2T_MSG_TASK, &rep)) < 0)
            die("task", rc);
        h2t_msg_free(&rep);
    }
    measure_job_start(c, task, &br);
    if (start_only)
        runs = 0;

    if (runs)
        printf("server load: server process (store, h2t_srv, head2toe job: 3000 train x 1536 "
               "features, BLAS threads %s) + load process (%d connections x depth %d, stats(l1, "
               "512 features) / health alternating), %g s x %d runs, %ld CPUs online\n",
               threads ? "from the request" : "server's choice", N_CONNS, depth, secs, runs,
               sysconf(_SC_NPROCESSORS_ONLN));
    if (threads)
        printf("  (request asks for %u BLAS thread(s))\n", threads);
    double rps[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], hp99[MAX_RUNS], us[MAX_RUNS], gus[MAX_RUNS];
    uint64_t job = 0;
    int ok = 0;
    for (int i = 0; i < runs; i++) {
        double progress;
        if (!job || job_state(c, job, &progress) != H2T_JOB_RUNNING)
            job = start_job(c, threads);
        run_result r;
        if (one_run(self, port, secs, depth, own_session, gen_spin, c, job, &r) < 0)
            break;
        printf("  run %d: %zu requests in %.2f s -> %.0f req/s   p50 %.3f ms   p99 %.3f ms   "
               "max %.3f ms%s\n",
               i + 1, r.n, r.el, r.rps, r.p50, r.p99, r.max,
               r.job_ran ? "" : "   (the job was NOT running at the end)");
        if (r.bad)
            printf("         %zu replies were not stats/health (errors)\n", r.bad);
        printf("         CPU s in the window: server loop %.2f, thread pool %.2f, job worker "
               "%.2f, other server threads (BLAS) %.2f, load generator %.2f; loop+pool %.1f us "
               "per request\n",
               r.cpu.loop, r.cpu.pool, r.cpu.job, r.cpu.other, r.gen_cpu,
               r.n ? (r.cpu.loop + r.cpu.pool) / r.n * 1e6 : 0);
        printf("         idle: %d connections held, server counts %u open; health p50 %.3f ms "
               "p99 %.3f ms meanwhile\n",
               r.held, r.counted, r.hp50, r.hp99);
        rps[ok] = r.rps;
        p50[ok] = r.p50;
        p99[ok] = r.p99;
        hp99[ok] = r.hp99;
        us[ok] = r.n ? (r.cpu.loop + r.cpu.pool) / r.n * 1e6 : 0;
        gus[ok] = r.n ? r.gen_cpu / r.n * 1e6 : 0;
        ok++;
    }
    if (ok)
        printf("  median of %d: %.0f req/s   p50 %.3f ms   p99 %.3f ms; idle health p99 %.3f "
               "ms; server CPU (loop+pool) %.1f us/request, load generator %.1f us/request\n",
               ok, median(rps, ok), median(p50, ok), median(p99, ok), median(hp99, ok),
               median(us, ok), median(gus, ok));
    uint64_t t_cancel = h2t_now_ns();
    if (job)
        cancel_job(c, job);
    h2t_client_close(c);
    h2t_srv_stop(srv); /* returns after the workers stopped (the job's cancel flag) */
    while (!atomic_load(&loop_done) && h2t_now_ns() - t_cancel < 30000000000ull)
        usleep(10000);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), store_dir ? "rmdir %s" : "rm -rf %s", dir);
    if (!atomic_load(&loop_done)) {
        /* bounded: do not wait for a solve that ignores its cancel flag */
        printf("  note: the train job did not stop within 30 s of its cancel; exiting\n");
        if (system(cmd) != 0)
            fprintf(stderr, "bench/server: could not remove %s\n", dir);
        _exit(ok == runs ? 0 : 1);
    }
    printf("  the job stopped %.2f s after its cancel\n", (h2t_now_ns() - t_cancel) / 1e9);
    pthread_join(th, NULL);
    h2t_srv_destroy(srv);
    h2t_design_cache_destroy(br.dc);
    h2t_store_close(st);
    if (system(cmd) != 0)
        fprintf(stderr, "bench/server: could not remove %s\n", dir);
    return ok == runs ? 0 : 1;
}
