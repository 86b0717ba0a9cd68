/*
 * server/server.c - the event loop: listener, connections, the read -> frame -> dispatch ->
 * reply path, watchers, timeouts, signals and the graceful stop. Handlers are in handlers.c,
 * jobs in jobs.c.
 */
#include "server/internal.h"

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_conn {
    uv_tcp_t tcp;
    h2t_srv *srv;
    srv_conn *prev, *next;
    h2t_proto_reader rd;
    int authed;
    int unauth;   /* counted in srv->n_unauth: a token is needed and Auth has not come yet */
    int closing;  /* uv_close called */
    int draining; /* error sent, shutting down */
    int refs;     /* 1 for the handle + 1 per request on the thread pool */
    uint32_t in_flight, n_watches;
    uint64_t opened_ms, last_ms, frame_ms, drain_ms;
    char peer[64]; /* "ADDR:PORT" of the client, for the log */
};

#define SRV_BATCH_MAX 65536 /* replies up to this size are gathered per read callback */

typedef struct srv_write {
    uv_write_t req;
    uint8_t *frame;
} srv_write;

typedef struct srv_work {
    uv_work_t req;
    srv_conn *conn;
    const srv_route *route;
    h2t_msg msg;
    uint8_t *frame;
    size_t len;
} srv_work;

static uint64_t now_ms(void)
{
    return h2t_now_ns() / 1000000u;
}

static void conn_unref(srv_conn *c)
{
    if (--c->refs == 0) {
        h2t_proto_reader_free(&c->rd);
        free(c);
    }
}

static void on_conn_closed(uv_handle_t *h)
{
    conn_unref((srv_conn *)h->data);
}

static void watches_drop_conn(h2t_srv *srv, srv_conn *c)
{
    srv_watch **pp = &srv->watches;
    while (*pp) {
        srv_watch *w = *pp;
        if (w->conn == c) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
    c->n_watches = 0;
}

static void conn_close(srv_conn *c)
{
    if (c->closing)
        return;
    h2t_srv *srv = c->srv;
    c->closing = 1;
    if (srv->batch_conn == c) {
        srv->batch_conn = NULL;
        srv->batch_len = 0;
    }
    watches_drop_conn(srv, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    if (c->draining)
        srv->n_draining--;
    if (c->unauth) {
        c->unauth = 0;
        srv->n_unauth--;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_write(uv_write_t *req, int status)
{
    (void)status;
    srv_write *w = (srv_write *)req;
    free(w->frame);
    free(w);
}

/* Write len bytes at p; buf (OWNED, may be p's allocation or NULL) is freed once written.
 * Tries a direct write first (no request, no callback); what the socket does not take now is
 * queued with uv_write, after anything queued before. */
static void conn_write(srv_conn *c, uint8_t *buf, const uint8_t *p, size_t len)
{
    if (c->closing) {
        free(buf);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)len) {
        free(buf);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        free(buf);
        conn_close(c);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    srv_write *w = malloc(sizeof(*w));
    if (!w) {
        free(buf);
        conn_close(c);
        return;
    }
    if (!buf) { /* the bytes are borrowed (the batch buffer): keep a copy */
        buf = malloc(len - done);
        if (!buf) {
            free(w);
            conn_close(c);
            return;
        }
        memcpy(buf, p + done, len - done);
        p = buf;
        done = 0;
    }
    w->frame = buf;
    b = uv_buf_init((char *)p + done, (unsigned)(len - done));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(buf);
        free(w);
        conn_close(c);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > c->srv->cfg.max_pending_write) {
        H2T_LOG_WARN("server", "closing a client that does not read its replies");
        conn_close(c);
    }
}

/* Write the replies gathered while reading a connection, in one write. */
static void batch_flush(h2t_srv *srv)
{
    srv_conn *c = srv->batch_conn;
    srv->batch_conn = NULL;
    if (c && srv->batch_len)
        conn_write(c, NULL, srv->batch, srv->batch_len);
    srv->batch_len = 0;
    if (srv->batch_cap > SRV_BATCH_MAX) { /* a big reply grew it: give the memory back */
        free(srv->batch);
        srv->batch = NULL;
        srv->batch_cap = 0;
    }
}

void h2t_srv_conn_send(srv_conn *c, uint8_t *frame, size_t len)
{
    if (!frame)
        return;
    if (c->closing) {
        free(frame);
        return;
    }
    h2t_srv *srv = c->srv;
    if (srv->batch_conn == c && len <= SRV_BATCH_MAX) {
        if (srv->batch_len + len > srv->batch_cap) {
            size_t cap = srv->batch_cap ? srv->batch_cap : 4096;
            while (cap < srv->batch_len + len)
                cap *= 2;
            uint8_t *nb = realloc(srv->batch, cap);
            if (!nb) {
                free(frame);
                conn_close(c);
                return;
            }
            srv->batch = nb;
            srv->batch_cap = cap;
        }
        memcpy(srv->batch + srv->batch_len, frame, len);
        srv->batch_len += len;
        free(frame);
        return;
    }
    if (srv->batch_conn == c) /* a big reply: what came before goes first */
        batch_flush(srv);
    conn_write(c, frame, frame, len);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    srv_conn *c = req->data;
    free(req);
    conn_close(c);
}

/* Reply with an error, then close once it is written (broken frame, auth, limits). */
static void conn_fail(srv_conn *c, uint64_t id, int rc)
{
    if (c->closing || c->draining)
        return;
    size_t len = 0;
    uint8_t *f = h2t_srv_error_frame(id, rc, &len);
    if (c->srv->batch_conn == c) /* the replies so far, then the error, then the shutdown */
        batch_flush(c->srv);
    h2t_srv_conn_send(c, f, len);
    if (c->closing)
        return;
    c->draining = 1;
    c->srv->n_draining++;
    c->drain_ms = now_ms();
    uv_read_stop((uv_stream_t *)&c->tcp);
    h2t_proto_reader_free(&c->rd); /* nothing more is read: give its buffer back now */
    uv_shutdown_t *sd = malloc(sizeof(*sd));
    if (!sd) {
        conn_close(c);
        return;
    }
    sd->data = c;
    if (uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(sd);
        conn_close(c);
    }
}

/* ---------------- watchers ---------------- */

static int job_terminal(int state)
{
    return state == H2T_JOB_DONE || state == H2T_JOB_FAILED || state == H2T_JOB_CANCELLED;
}

/* Frame of the job's current state for request id; *state gets the state. */
static uint8_t *job_frame(h2t_srv *srv, uint64_t req_id, uint64_t job, int *state, size_t *len)
{
    h2t_job *j = NULL;
    int rc = h2t_store_job_get(srv->st, job, &j);
    if (rc < 0) {
        *state = -1;
        return h2t_srv_error_frame(req_id, rc, len);
    }
    h2t_msg spec_msg = {0};
    char stage[64];
    h2t_msg m = {.id = req_id, .type = H2T_MSG_JOB};
    h2t_srv_job_msg(srv, j, &m.u.job, &spec_msg, stage, sizeof(stage));
    *state = m.u.job.state;
    uint8_t *f = h2t_srv_encode_or_error(&m, len);
    h2t_msg_free(&spec_msg);
    h2t_job_destroy(j);
    return f;
}

static void watch_start(srv_conn *c, const h2t_msg *req)
{
    h2t_srv *srv = c->srv;
    int state;
    size_t len;
    uint8_t *f = job_frame(srv, req->id, req->u.job_ref.job, &state, &len);
    h2t_srv_conn_send(c, f, len);
    if (state < 0 || job_terminal(state) || c->closing)
        return;
    srv_watch *w = calloc(1, sizeof(*w));
    if (!w) {
        conn_fail(c, req->id, h2t_err_set(H2T_ENOMEM, "watch"));
        return;
    }
    w->conn = c;
    w->req_id = req->id;
    w->job = req->u.job_ref.job;
    w->next = srv->watches;
    srv->watches = w;
    c->n_watches++;
}

static void watches_notify(h2t_srv *srv, uint64_t job)
{
    int state = -1;
    for (srv_watch **pp = &srv->watches; *pp;) {
        srv_watch *w = *pp;
        if (w->job != job) {
            pp = &w->next;
            continue;
        }
        size_t len;
        uint8_t *f = job_frame(srv, w->req_id, job, &state, &len);
        h2t_srv_conn_send(w->conn, f, len);
        if (state < 0 || job_terminal(state)) {
            *pp = w->next;
            w->conn->n_watches--;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* ---------------- requests ---------------- */

static void work_run(uv_work_t *req)
{
    srv_work *w = (srv_work *)req;
    h2t_srv *srv = w->conn->srv;
    h2t_err_clear();
    int rc = w->route->fn(srv, &w->msg, &w->frame, &w->len);
    if (rc < 0)
        w->frame = h2t_srv_error_frame(w->msg.id, rc, &w->len);
}

static void work_done(uv_work_t *req, int status)
{
    (void)status;
    srv_work *w = (srv_work *)req;
    srv_conn *c = w->conn;
    c->srv->activity++;
    c->in_flight--;
    c->last_ms = now_ms();
    h2t_srv_conn_send(c, w->frame, w->len); /* frees when closing */
    h2t_msg_free(&w->msg);
    free(w);
    conn_unref(c);
}

static int token_equal(const h2t_srv *srv, const uint8_t *t, size_t n)
{
    /* constant time in the presented bytes: no early exit on the first difference */
    unsigned diff = (unsigned)(n ^ srv->token_len);
    for (size_t i = 0; i < srv->token_len; i++)
        diff |= (unsigned)(srv->token[i] ^ (i < n ? t[i] : 0));
    return diff == 0;
}

static void handle_frame(srv_conn *c, const uint8_t *payload, uint32_t plen)
{
    h2t_srv *srv = c->srv;
    h2t_msg m;
    h2t_err_clear();
    int rc = h2t_proto_decode(payload, plen, &m);
    if (rc < 0) {
        conn_fail(c, 0, rc);
        return;
    }
    atomic_fetch_add(&srv->requests, 1);
    H2T_LOG_DEBUG("server", "request %s id %llu", h2t_msg_type_name(m.type),
                  (unsigned long long)m.id);
    if (m.type == H2T_MSG_AUTH) {
        if (srv->has_token && !token_equal(srv, m.u.auth.token, m.u.auth.token_len)) {
            H2T_LOG_WARN("server", "refused a connection from %s: wrong token", c->peer);
            conn_fail(c, m.id, h2t_err_set(H2T_EAUTH, "wrong token"));
        } else {
            c->authed = 1;
            if (c->unauth) {
                c->unauth = 0;
                srv->n_unauth--;
            }
            c->rd.max = srv->cfg.max_frame; /* the next frame may be a big request */
            h2t_msg ok = {.id = m.id, .type = H2T_MSG_AUTH_OK};
            size_t len = 0;
            uint8_t *f = h2t_srv_encode_or_error(&ok, &len);
            h2t_srv_conn_send(c, f, len);
        }
        h2t_msg_free(&m);
        return;
    }
    if (srv->has_token && !c->authed) {
        H2T_LOG_WARN("server", "refused a connection from %s: a request before auth", c->peer);
        conn_fail(c, m.id,
                  h2t_err_set(H2T_EAUTH, "this server needs a token: send auth first "
                                         "(h2tdb --token-file FILE)"));
        h2t_msg_free(&m);
        return;
    }
    const srv_route *r = h2t_srv_route(m.type);
    if (!r) {
        size_t len = 0;
        rc = h2t_err_set(H2T_EPROTO, "'%s' is not a request", h2t_msg_type_name(m.type));
        uint8_t *f = h2t_srv_error_frame(m.id, rc, &len);
        h2t_srv_conn_send(c, f, len);
        h2t_msg_free(&m);
        return;
    }
    if (m.type == H2T_MSG_WATCH_JOB) {
        watch_start(c, &m);
        h2t_msg_free(&m);
        return;
    }
    if (r->off_loop == SRV_OFF_LOOP_IF_BIG) { /* statistics: the loop unless big */
        uint8_t *f = NULL;
        size_t len = 0;
        if (h2t_srv_stats_on_loop(srv, &m, &f, &len)) {
            h2t_srv_conn_send(c, f, len);
            h2t_msg_free(&m);
            return;
        }
    } else if (r->off_loop == SRV_ON_LOOP) {
        uint8_t *f = NULL;
        size_t len = 0;
        rc = r->fn(srv, &m, &f, &len);
        if (rc < 0)
            f = h2t_srv_error_frame(m.id, rc, &len);
        h2t_srv_conn_send(c, f, len);
        h2t_msg_free(&m);
        return;
    }
    srv_work *w = calloc(1, sizeof(*w));
    if (!w) {
        conn_fail(c, m.id, h2t_err_set(H2T_ENOMEM, "request"));
        h2t_msg_free(&m);
        return;
    }
    w->conn = c;
    w->route = r;
    w->msg = m;
    c->refs++;
    c->in_flight++;
    if (uv_queue_work(&srv->loop, &w->req, work_run, work_done) < 0) {
        c->refs--;
        c->in_flight--;
        h2t_msg_free(&w->msg);
        free(w);
        conn_fail(c, m.id, h2t_err_set(H2T_EBUSY, "cannot queue the request"));
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    srv_conn *c = h->data;
    buf->base = c->srv->rbuf;
    buf->len = sizeof(c->srv->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    srv_conn *c = s->data;
    c->srv->activity++;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    uint64_t t = now_ms();
    c->last_ms = t;
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t n = (size_t)nread;
    h2t_srv *srv = c->srv;
    srv->batch_conn = c;
    while (n > 0 && !c->closing && !c->draining) {
        int was_partial = h2t_proto_reader_partial(&c->rd);
        if (!was_partial && n >= 4) { /* a whole frame in the buffer: no copy */
            uint32_t flen = h2t_be32_get(p);
            if (flen <= c->rd.max && n - 4 >= flen) {
                c->frame_ms = t;
                handle_frame(c, p + 4, flen);
                p += 4 + (size_t)flen;
                n -= 4 + (size_t)flen;
                continue;
            }
        }
        size_t used;
        const uint8_t *payload;
        uint32_t plen;
        int rc = h2t_proto_reader_feed(&c->rd, p, n, &used, &payload, &plen);
        if (rc < 0) {
            H2T_LOG_WARN("server", "closing a client: %s", h2t_err_detail());
            conn_fail(c, 0, rc);
            return;
        }
        if (!was_partial)
            c->frame_ms = t;
        p += used;
        n -= used;
        if (rc == 1)
            handle_frame(c, payload, plen);
    }
    if (srv->batch_conn == c)
        batch_flush(srv);
}

/* The client's address as "ADDR:PORT" ("[ADDR]:PORT" for IPv6) into c->peer. */
static void peer_name(srv_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[48] = "?";
    snprintf(c->peer, sizeof(c->peer), "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)&ss, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", host,
                 ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)&ss, host, sizeof(host));
        snprintf(c->peer, sizeof(c->peer), "%s:%d", host,
                 ntohs(((const struct sockaddr_in *)&ss)->sin_port));
    }
}

/* The connection open longest that has not authenticated and is not closing, other than
 * except; NULL when there is none. The list is newest first. */
static srv_conn *oldest_unauth(h2t_srv *srv, const srv_conn *except)
{
    srv_conn *old = NULL;
    for (srv_conn *c = srv->conns; c; c = c->next)
        if (c != except && c->unauth && !c->draining && !c->closing)
            old = c;
    return old;
}

static void on_connection(uv_stream_t *server, int status)
{
    h2t_srv *srv = server->data;
    srv->activity++;
    if (status < 0 || srv->stopping)
        return;
    srv_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = srv;
    c->refs = 1;
    c->authed = !srv->has_token;
    /* before Auth only a small frame is read: the Auth itself */
    h2t_proto_reader_init(&c->rd, c->authed || srv->cfg.max_frame < H2T_SRV_AUTH_FRAME_MAX
                                      ? srv->cfg.max_frame
                                      : H2T_SRV_AUTH_FRAME_MAX);
    uv_tcp_init(&srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    c->opened_ms = c->last_ms = now_ms();
    peer_name(c);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (!c->authed) {
        c->unauth = 1;
        srv->n_unauth++;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    H2T_LOG_DEBUG("server", "connection %u accepted", srv->n_conns);
    /* Connections that have not authenticated yield their slots: past either limit the
     * oldest of them is closed, so idle sockets cannot lock out clients with the token. */
    while (srv->n_unauth > srv->cfg.max_unauth_conns ||
           srv->n_conns - srv->n_draining > srv->cfg.max_conns) {
        srv_conn *old = oldest_unauth(srv, c);
        if (!old)
            break;
        conn_fail(old, 0,
                  h2t_err_set(H2T_EBUSY,
                              "closed: too many connections without auth (limits: %u without "
                              "auth, %u in all)",
                              srv->cfg.max_unauth_conns, srv->cfg.max_conns));
    }
    if (srv->n_conns - srv->n_draining > srv->cfg.max_conns ||
        srv->n_unauth > srv->cfg.max_unauth_conns) {
        conn_fail(c, 0,
                  h2t_err_set(H2T_EBUSY, "too many connections (limit %u)", srv->cfg.max_conns));
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---------------- timers, wake-ups, stop ---------------- */

static void on_sweep(uv_timer_t *t)
{
    h2t_srv *srv = t->data;
    uint64_t now = now_ms();
    const h2t_srv_config *cfg = &srv->cfg;
    for (srv_conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->draining) {
            if (now - c->drain_ms > cfg->slow_timeout_ms)
                conn_close(c);
        } else if (!c->authed && now - c->opened_ms > cfg->slow_timeout_ms) {
            H2T_LOG_WARN("server", "closing a connection from %s: no auth within %u ms", c->peer,
                         cfg->slow_timeout_ms);
            conn_fail(c, 0,
                      h2t_err_set(H2T_ETIMEDOUT, "no auth within %u ms", cfg->slow_timeout_ms));
        } else if (h2t_proto_reader_partial(&c->rd) && now - c->frame_ms > cfg->slow_timeout_ms) {
            conn_fail(c, 0,
                      h2t_err_set(H2T_ETIMEDOUT, "frame not completed within %u ms",
                                  cfg->slow_timeout_ms));
        } else if (c->in_flight == 0 && c->n_watches == 0 &&
                   now - c->last_ms > cfg->idle_timeout_ms) {
            conn_fail(c, 0, h2t_err_set(H2T_ETIMEDOUT, "idle for %u ms", cfg->idle_timeout_ms));
        }
    }
}

static void close_if_open(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

static void begin_stop(h2t_srv *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    H2T_LOG_INFO("server", "stopping");
    pthread_mutex_lock(&srv->mu);
    srv->loop_gone = 1;
    pthread_mutex_unlock(&srv->mu);
    close_if_open((uv_handle_t *)&srv->listener);
    close_if_open((uv_handle_t *)&srv->wake);
    close_if_open((uv_handle_t *)&srv->sweep);
    close_if_open((uv_handle_t *)&srv->sig_int);
    close_if_open((uv_handle_t *)&srv->sig_term);
    while (srv->conns)
        conn_close(srv->conns);
}

static void on_wake(uv_async_t *a)
{
    h2t_srv *srv = a->data;
    if (atomic_load(&srv->stop_requested)) {
        begin_stop(srv);
        return;
    }
    pthread_mutex_lock(&srv->mu);
    uint64_t *ids = srv->changed;
    size_t n = srv->n_changed;
    srv->changed = NULL;
    srv->n_changed = srv->cap_changed = 0;
    pthread_mutex_unlock(&srv->mu);
    for (size_t i = 0; i < n; i++)
        if (srv->watches)
            watches_notify(srv, ids[i]);
    free(ids);
}

static void on_signal(uv_signal_t *s, int signum)
{
    h2t_srv *srv = s->data;
    H2T_LOG_INFO("server", "signal %d: graceful stop", signum);
    begin_stop(srv);
}

void h2t_srv_stop(h2t_srv *srv)
{
    atomic_store(&srv->stop_requested, 1);
    pthread_mutex_lock(&srv->mu); /* begin_stop sets loop_gone under mu before closing wake */
    if (!srv->loop_gone)
        uv_async_send(&srv->wake);
    pthread_mutex_unlock(&srv->mu);
}

/* ---------------- create / run / destroy ---------------- */

void h2t_srv_config_default(h2t_srv_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = "127.0.0.1:7433";
    cfg->workers = 1;
    cfg->max_frame = H2T_PROTO_MAX_FRAME;
    cfg->max_conns = 4096;
    cfg->max_unauth_conns = 64;
    cfg->idle_timeout_ms = 300000;
    cfg->slow_timeout_ms = 10000;
    cfg->max_pending_write = (size_t)64 << 20;
    cfg->handle_signals = 1;
    cfg->job_nice = 10;
    cfg->job_idle = 1;
    cfg->spin_us = 50;
    cfg->design_cache_bytes = (uint64_t)1 << 30;
    cfg->max_selection = H2T_SRV_SEL_MAX_DEFAULT;
    cfg->models_dir = "models";
    cfg->classify_max_images = 64;
    cfg->classify_max_bytes = (uint64_t)8 << 20;
    cfg->classify_cache = 4;
    cfg->predict_mem_bytes = (uint64_t)64 << 20;
}

static int parse_listen(const char *s, struct sockaddr_storage *ss, int *loopback)
{
    char host[256];
    long port;
    int v6;
    int rc = h2t_addr_split(s, "listen address", host, sizeof(host), &port, &v6);
    if (rc < 0)
        return rc;
    rc = v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss)
            : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
    if (rc < 0)
        return h2t_err_set(H2T_EINVAL, "listen address '%s': bad host '%s'", s, host);
    if (v6)
        *loopback = !strcmp(host, "::1");
    else
        *loopback = ((const uint8_t *)&((struct sockaddr_in *)ss)->sin_addr)[0] == 127;
    return 0;
}

static int read_token(h2t_srv *srv, const char *path)
{
    size_t n = 0;
    int rc = h2t_token_read(path, srv->token, sizeof(srv->token), &n);
    if (rc < 0)
        return rc;
    srv->token_len = n;
    srv->has_token = 1;
    return 0;
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return h2t_err_set(H2T_EIO, "port file %s: %s", tmp, strerror(errno));
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return h2t_err_set(H2T_EIO, "port file %s: %s", path, strerror(errno));
    return 0;
}

static void loop_teardown(h2t_srv *srv)
{
    if (!srv->loop_init)
        return;
    srv->stopping = 0; /* let begin_stop run its closes even if it ran before */
    begin_stop(srv);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
    srv->loop_init = 0;
}

int h2t_srv_create(const h2t_srv_config *cfg, h2t_store *st, h2t_srv **out)
{
    int rc = 0;
    h2t_srv *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return h2t_err_set(H2T_ENOMEM, "server");
    srv->cfg = *cfg;
    if (!srv->cfg.listen || !*srv->cfg.listen)
        srv->cfg.listen = "127.0.0.1:7433";
    snprintf(srv->listen_buf, sizeof(srv->listen_buf), "%s", srv->cfg.listen);
    srv->cfg.listen = srv->listen_buf;
    srv->cfg.token_file = NULL;
    srv->cfg.port_file = NULL;
    if (!srv->cfg.max_frame)
        srv->cfg.max_frame = H2T_PROTO_MAX_FRAME;
    if (!srv->cfg.max_conns)
        srv->cfg.max_conns = 4096;
    if (!srv->cfg.max_unauth_conns)
        srv->cfg.max_unauth_conns = 64;
    if (!srv->cfg.idle_timeout_ms)
        srv->cfg.idle_timeout_ms = 300000;
    if (!srv->cfg.slow_timeout_ms)
        srv->cfg.slow_timeout_ms = 10000;
    if (!srv->cfg.max_pending_write)
        srv->cfg.max_pending_write = (size_t)64 << 20;
    if (!srv->cfg.max_selection)
        srv->cfg.max_selection = H2T_SRV_SEL_MAX_DEFAULT;
    if (!srv->cfg.predict_mem_bytes)
        srv->cfg.predict_mem_bytes = (uint64_t)64 << 20;
    if (srv->cfg.max_selection > H2T_SRV_SEL_MAX_LIMIT) {
        uint32_t v = srv->cfg.max_selection;
        free(srv);
        return h2t_err_set(H2T_EINVAL, "max selection %u: at most %u ids", v,
                           H2T_SRV_SEL_MAX_LIMIT);
    }
    srv->st = st;
    srv->runner = cfg->runner ? cfg->runner : h2t_srv_runner_solver;
    srv->runner_ud = cfg->runner_ud;
    if ((rc = h2t_design_cache_create(cfg->design_cache_bytes, &srv->design)) < 0) {
        free(srv);
        return rc;
    }
    if ((rc = h2t_srv_cls_cache_create(cfg->classify_cache, &srv->cls)) < 0) {
        h2t_design_cache_destroy(srv->design);
        free(srv);
        return rc;
    }
    if (!cfg->runner)
        srv->runner_ud = srv->design;
    srv->started_ms = h2t_wall_ms();
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that went away is a write error, not a signal */

    /* one service per store: a second one would run the first one's jobs again */
    if ((rc = h2t_store_service_lock(st)) < 0)
        goto fail;
    srv->service_locked = 1;
    if (cfg->token_file && (rc = read_token(srv, cfg->token_file)) < 0)
        goto fail;
    struct sockaddr_storage ss;
    int loopback = 0;
    if ((rc = parse_listen(srv->cfg.listen, &ss, &loopback)) < 0)
        goto fail;
    if (!loopback && !srv->has_token && !cfg->insecure_bind) {
        rc = h2t_err_set(H2T_EPERM,
                         "refusing to listen on %s without a token: anyone who can reach it "
                         "could use the store (give --token-file, or --insecure-bind)",
                         srv->cfg.listen);
        goto fail;
    }
    if (uv_loop_init(&srv->loop) < 0) {
        rc = h2t_err_set(H2T_ENET, "uv_loop_init failed");
        goto fail;
    }
    srv->loop_init = 1;
    uv_tcp_init(&srv->loop, &srv->listener);
    srv->listener.data = srv;
    uv_async_init(&srv->loop, &srv->wake, on_wake);
    srv->wake.data = srv;
    uv_timer_init(&srv->loop, &srv->sweep);
    srv->sweep.data = srv;
    uv_signal_init(&srv->loop, &srv->sig_int);
    uv_signal_init(&srv->loop, &srv->sig_term);
    srv->sig_int.data = srv->sig_term.data = srv;
    int e = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    if (e < 0) {
        rc = h2t_err_set(H2T_ENET, "listen on %s: %s", srv->cfg.listen, uv_strerror(e));
        goto fail;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
    srv->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    uint32_t tick = srv->cfg.slow_timeout_ms < srv->cfg.idle_timeout_ms ? srv->cfg.slow_timeout_ms
                                                                        : srv->cfg.idle_timeout_ms;
    tick = tick / 4 < 1000 ? (tick / 4 ? tick / 4 : 1) : 1000;
    uv_timer_start(&srv->sweep, on_sweep, tick, tick);
    if (cfg->handle_signals) {
        uv_signal_start(&srv->sig_int, on_signal, SIGINT);
        uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    }
    if ((rc = h2t_srv_jobs_start(srv)) < 0)
        goto fail;
    if (cfg->port_file && (rc = write_port_file(cfg->port_file, srv->port)) < 0)
        goto fail;
    H2T_LOG_INFO("server", "listening on %s (port %d)%s, %u worker(s)", srv->cfg.listen, srv->port,
                 srv->has_token ? ", token required" : "", srv->n_workers);
    *out = srv;
    return 0;
fail:
    h2t_srv_jobs_stop(srv);
    loop_teardown(srv);
    if (srv->service_locked)
        h2t_store_service_unlock(st);
    h2t_design_cache_destroy(srv->design);
    h2t_srv_cls_cache_destroy(srv->cls);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
    return rc;
}

int h2t_srv_port(const h2t_srv *srv)
{
    return srv->port;
}

int h2t_srv_run(h2t_srv *srv)
{
    /* poll without sleeping while events keep coming (the activity count moves), sleep in
     * epoll once none came for spin_us: under load the loop is never woken up, and so never
     * moved by the kernel's wake-up placement (server.h, Threads) */
    uint64_t spin_ns = (uint64_t)srv->cfg.spin_us * 1000u, last = h2t_now_ns();
    unsigned seen = srv->activity;
    int alive = 1;
    while (alive) {
        if (spin_ns == 0 || h2t_now_ns() - last > spin_ns) {
            alive = uv_run(&srv->loop, UV_RUN_ONCE);
            last = h2t_now_ns();
        } else {
            alive = uv_run(&srv->loop, UV_RUN_NOWAIT);
        }
        if (srv->activity != seen) {
            seen = srv->activity;
            last = h2t_now_ns();
        }
    }
    h2t_srv_jobs_stop(srv);
    H2T_LOG_INFO("server", "stopped");
    return 0;
}

void h2t_srv_destroy(h2t_srv *srv)
{
    if (!srv)
        return;
    h2t_srv_jobs_stop(srv);
    loop_teardown(srv);
    while (srv->watches) {
        srv_watch *w = srv->watches;
        srv->watches = w->next;
        free(w);
    }
    free(srv->changed);
    free(srv->batch);
    h2t_srv_stats_cache_free(srv);
    h2t_design_cache_destroy(srv->design);
    h2t_srv_cls_cache_destroy(srv->cls);
    if (srv->service_locked)
        h2t_store_service_unlock(srv->st);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
}

/* ---------------- network-free path (fuzz, tests) ---------------- */

static int append_frame(uint8_t **buf, size_t *len, uint8_t *f, size_t flen)
{
    if (!f)
        return h2t_err_set(H2T_ENOMEM, "reply");
    uint8_t *nb = realloc(*buf, *len + flen);
    if (!nb) {
        free(f);
        return h2t_err_set(H2T_ENOMEM, "reply");
    }
    memcpy(nb + *len, f, flen);
    *buf = nb;
    *len += flen;
    free(f);
    return 0;
}

int h2t_srv_handle_payload(h2t_srv *srv, const uint8_t *payload, size_t len, uint8_t **replies,
                           size_t *replies_len)
{
    uint8_t *out = NULL;
    size_t out_len = 0, flen = 0;
    uint8_t *f = NULL;
    h2t_msg m;
    h2t_err_clear();
    int rc = h2t_proto_decode(payload, len, &m);
    if (rc < 0) {
        f = h2t_srv_error_frame(0, rc, &flen);
    } else if (m.type == H2T_MSG_AUTH) {
        h2t_msg ok = {.id = m.id, .type = H2T_MSG_AUTH_OK};
        f = h2t_srv_encode_or_error(&ok, &flen);
    } else {
        const srv_route *r = h2t_srv_route(m.type);
        if (!r) {
            rc = h2t_err_set(H2T_EPROTO, "'%s' is not a request", h2t_msg_type_name(m.type));
            f = h2t_srv_error_frame(m.id, rc, &flen);
        } else if (m.type == H2T_MSG_WATCH_JOB) {
            int state;
            f = job_frame(srv, m.id, m.u.job_ref.job, &state, &flen);
        } else {
            rc = r->fn(srv, &m, &f, &flen);
            if (rc < 0)
                f = h2t_srv_error_frame(m.id, rc, &flen);
        }
    }
    h2t_msg_free(&m);
    rc = append_frame(&out, &out_len, f, flen);
    if (rc < 0) {
        free(out);
        return rc;
    }
    *replies = out;
    *replies_len = out_len;
    return 0;
}
