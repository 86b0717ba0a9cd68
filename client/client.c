/*
 * client/client.c - the blocking client: sockets, frames, id matching.
 */
#include "client/client.h"

#include "common/err.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENT_MAX_FRAME (256u << 20)

struct h2t_client {
    int fd;
    int timeout_ms;
    uint64_t next_id;
    char addr[256];
    h2t_proto_reader rd;
    uint8_t buf[65536];
    size_t have, off; /* unread bytes buf[off, have) */
};

const char *h2t_client_default_addr(void)
{
    const char *e = getenv("H2T_SERVER");
    return e && *e ? e : "127.0.0.1:7433";
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[256];
    long port;
    int v6;
    memset(ss, 0, sizeof(*ss));
    int rc = h2t_addr_split(s, "server address", host, sizeof(host), &port, &v6);
    if (rc < 0)
        return rc;
    if (port == 0)
        return h2t_err_set(H2T_EINVAL, "server address '%s': port 0 (want the server's port)", s);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return h2t_err_set(H2T_EINVAL, "server address '%s': bad IPv6 host", s);
        *sl = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return h2t_err_set(H2T_EINVAL, "server address '%s': bad host '%s' (want an IP)", s,
                               host);
        *sl = sizeof(*a);
    }
    return 0;
}

static int wait_fd(h2t_client *c, short ev)
{
    if (c->timeout_ms <= 0)
        return 0;
    struct pollfd p = {.fd = c->fd, .events = ev};
    for (;;) {
        int r = poll(&p, 1, c->timeout_ms);
        if (r > 0)
            return 0;
        if (r == 0)
            return h2t_err_set(H2T_ETIMEDOUT, "server %s did not answer within %d ms", c->addr,
                               c->timeout_ms);
        if (errno != EINTR)
            return h2t_err_set(H2T_ENET, "poll: %s", strerror(errno));
    }
}

int h2t_client_send_raw(h2t_client *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        int rc = wait_fd(c, POLLOUT);
        if (rc < 0)
            return rc;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return h2t_err_set(H2T_ENET, "send to %s: %s", c->addr, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int h2t_client_send(h2t_client *c, h2t_msg *req)
{
    uint8_t *f = NULL;
    size_t len = 0;
    req->id = ++c->next_id;
    int rc = h2t_proto_encode(req, &f, &len);
    if (rc < 0)
        return rc;
    rc = h2t_client_send_raw(c, f, len);
    free(f);
    return rc;
}

int h2t_client_recv(h2t_client *c, h2t_msg *resp)
{
    for (;;) {
        while (c->off < c->have) {
            size_t used;
            const uint8_t *payload;
            uint32_t plen;
            int rc = h2t_proto_reader_feed(&c->rd, c->buf + c->off, c->have - c->off, &used,
                                           &payload, &plen);
            if (rc < 0)
                return rc;
            c->off += used;
            if (rc == 1)
                return h2t_proto_decode(payload, plen, resp);
        }
        c->off = c->have = 0;
        int rc = wait_fd(c, POLLIN);
        if (rc < 0)
            return rc;
        ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return h2t_err_set(H2T_ENET, "receive from %s: %s", c->addr, strerror(errno));
        if (n == 0)
            return h2t_err_set(H2T_ENET, "server %s closed the connection", c->addr);
        c->have = (size_t)n;
    }
}

static int error_of(const h2t_msg *m)
{
    int code = m->u.error.code;
    if (code >= 0 || code <= H2T_ELAST)
        code = H2T_EPROTO;
    return h2t_err_set(code, "%s", m->u.error.message ? m->u.error.message : "");
}

int h2t_client_call(h2t_client *c, h2t_msg *req, int want, h2t_msg *resp)
{
    int rc = h2t_client_send(c, req);
    if (rc < 0)
        return rc;
    for (;;) {
        h2t_msg m;
        if ((rc = h2t_client_recv(c, &m)) < 0)
            return rc;
        if (m.id != req->id && !(m.id == 0 && m.type == H2T_MSG_ERROR)) {
            h2t_msg_free(&m); /* a reply to an earlier request: not ours */
            continue;
        }
        if (m.type == H2T_MSG_ERROR) {
            rc = error_of(&m);
            h2t_msg_free(&m);
            return rc;
        }
        if (m.type != want) {
            rc = h2t_err_set(H2T_EPROTO, "expected a '%s' reply, got '%s'", h2t_msg_type_name(want),
                             h2t_msg_type_name(m.type));
            h2t_msg_free(&m);
            return rc;
        }
        *resp = m;
        return 0;
    }
}

int h2t_client_watch(h2t_client *c, uint64_t job, h2t_client_job_cb cb, void *ud, h2t_msg *final)
{
    h2t_msg req = {.type = H2T_MSG_WATCH_JOB};
    req.u.job_ref.job = job;
    int rc = h2t_client_send(c, &req);
    if (rc < 0)
        return rc;
    for (;;) {
        h2t_msg m;
        if ((rc = h2t_client_recv(c, &m)) < 0)
            return rc;
        if (m.id != req.id && !(m.id == 0 && m.type == H2T_MSG_ERROR)) {
            h2t_msg_free(&m);
            continue;
        }
        if (m.type == H2T_MSG_ERROR) {
            rc = error_of(&m);
            h2t_msg_free(&m);
            return rc;
        }
        if (m.type != H2T_MSG_JOB) {
            h2t_msg_free(&m);
            return h2t_err_set(H2T_EPROTO, "watch: unexpected '%s' reply",
                               h2t_msg_type_name(m.type));
        }
        if (cb)
            cb(ud, &m.u.job);
        int st = m.u.job.state;
        if (st == 2 || st == 3 || st == 4) { /* DONE, FAILED, CANCELLED */
            if (final)
                *final = m;
            else
                h2t_msg_free(&m);
            return 0;
        }
        h2t_msg_free(&m);
    }
}

int h2t_client_connect(const char *addr, const char *token_file, int timeout_ms, h2t_client **out)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (!addr || !*addr)
        addr = h2t_client_default_addr();
    int rc = parse_addr(addr, &ss, &sl);
    if (rc < 0)
        return rc;
    h2t_client *c = calloc(1, sizeof(*c));
    if (!c)
        return h2t_err_set(H2T_ENOMEM, "client");
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->timeout_ms = timeout_ms;
    h2t_proto_reader_init(&c->rd, CLIENT_MAX_FRAME);
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        rc = h2t_err_set(H2T_ENET, "socket: %s", strerror(errno));
        goto fail;
    }
    if (connect(c->fd, (struct sockaddr *)&ss, sl) < 0) {
        rc = h2t_err_set(H2T_ENET, "cannot connect to %s: %s%s", addr, strerror(errno),
                         errno == ECONNREFUSED ? " (is `h2tdb serve` running there?)" : "");
        goto fail;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!token_file) {
        const char *e = getenv("H2T_TOKEN_FILE");
        token_file = e && *e ? e : NULL;
    }
    if (token_file) {
        uint8_t tok[512];
        size_t tlen = 0;
        if ((rc = h2t_token_read(token_file, tok, sizeof(tok), &tlen)) < 0)
            goto fail;
        h2t_msg req = {.type = H2T_MSG_AUTH}, rep;
        req.u.auth.token = tok;
        req.u.auth.token_len = tlen;
        rc = h2t_client_call(c, &req, H2T_MSG_AUTH_OK, &rep);
        memset(tok, 0, sizeof(tok));
        if (rc < 0)
            goto fail;
        h2t_msg_free(&rep);
    }
    *out = c;
    return 0;
fail:
    h2t_client_close(c);
    return rc;
}

void h2t_client_close(h2t_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    h2t_proto_reader_free(&c->rd);
    free(c);
}

int h2t_client_fd(const h2t_client *c)
{
    return c->fd;
}

int h2t_client_classify(h2t_client *c, uint64_t job, const uint8_t *const *images,
                        const size_t *lens, const char *const *names, size_t n, h2t_msg *resp)
{
    h2t_msg req = {.type = H2T_MSG_CLASSIFY};
    req.u.classify.job = job;
    req.u.classify.n_images = n;
    req.u.classify.images = images;
    req.u.classify.image_lens = lens;
    req.u.classify.n_names = names ? n : 0;
    req.u.classify.names = names;
    return h2t_client_call(c, &req, H2T_MSG_CLASSIFICATION, resp);
}
