/*
 * server/internal.h - what the server's files share (not a public contract).
 *   server.c   the loop: listener, connections, frames, timeouts, watchers, signals
 *   handlers.c the dispatch table, one handler per request type, and the reply encoders
 *   jobs.c     the job queue, worker threads, cancel, progress, restart recovery, and the
 *              stored job spec's decoder
 *   task.c     selections and label maps -> task records
 * Calls go one way: server.c -> handlers.c -> jobs.c and task.c (server.c also starts and
 * stops jobs.c). handlers.c never calls into server.c, jobs.c and task.c into neither: a
 * function that two files need lives in the lower one.
 */
#ifndef H2T_SERVER_INTERNAL_H
#define H2T_SERVER_INTERNAL_H

#include "server/server.h"

#include <pthread.h>
#include <uv.h>

typedef struct srv_conn srv_conn;

#define SRV_STATS_CACHE 16                 /* encoded statistics replies kept by the loop */
#define SRV_STATS_CACHE_BYTES (256u << 10) /* larger replies are not kept */

/* a statistics reply encoded with request id 0, and what it is valid for */
typedef struct srv_stats_entry {
    uint32_t ext, layer; /* layer UINT32_MAX: every layer */
    int per_feature;
    uint32_t samples_done;
    uint64_t updated_ms;
    uint8_t *frame; /* OWNED; NULL: an empty slot */
    size_t len;
} srv_stats_entry;

/* one in-memory record per job that is queued or running in this process */
typedef struct srv_job {
    uint64_t id;
    int state;         /* H2T_JOB_QUEUED or H2T_JOB_RUNNING */
    atomic_int cancel; /* set by cancel or by the server stopping */
    int user_cancel;   /* cancel came from a client (not the server stopping) */
    double progress;
    char stage[64];
    uint32_t attempts;
    uint64_t started_ms;
    uint64_t persisted_ms; /* last progress write to the store */
    struct srv_job *next;
} srv_job;

typedef struct srv_watch {
    srv_conn *conn;
    uint64_t req_id, job;
    struct srv_watch *next;
} srv_watch;

typedef struct srv_cls_cache srv_cls_cache;

struct h2t_srv {
    h2t_srv_config cfg;
    char listen_buf[256];
    uint8_t token[256];
    size_t token_len;
    int has_token;
    h2t_store *st;
    int service_locked; /* this server holds the store's service lock (one server a store) */
    h2t_srv_runner_fn runner;
    void *runner_ud;
    h2t_design_cache *design; /* shared by the default runner's jobs */
    srv_cls_cache *cls;       /* classifiers kept for classify requests (classify.c) */

    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wake;
    uv_timer_t sweep;
    uv_signal_t sig_int, sig_term;
    int port;
    int loop_init, handles_init;
    atomic_int stop_requested;
    int stopping; /* loop side */

    srv_conn *conns;
    uint32_t n_conns;
    uint32_t n_unauth;   /* connections waiting for Auth (a token is set) */
    uint32_t n_draining; /* connections closing after an error reply */
    char rbuf[65536];    /* the loop's one read buffer: read_cb consumes it before returning */
    /* replies to the connection being read, written once at the end of its read callback */
    srv_conn *batch_conn;
    uint8_t *batch;
    size_t batch_len, batch_cap;
    srv_stats_entry stats_cache[SRV_STATS_CACHE]; /* loop thread only */
    unsigned stats_next;
    srv_watch *watches;
    uint64_t started_ms;
    atomic_ullong requests;
    unsigned activity; /* loop thread only: reads, accepts, pool replies (h2t_srv_run spins) */

    /* jobs: everything below under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_job *jobs;     /* queued and running, in queue order */
    uint64_t *changed; /* job ids whose watchers need a frame */
    size_t n_changed, cap_changed;
    int workers_stop;
    int loop_gone; /* the async handle is closed: workers must not wake the loop */
    pthread_t *workers;
    uint32_t n_workers;
    uint32_t n_running;
    uint32_t job_threads; /* BLAS threads per job (resolved from cfg.job_threads) */
};

/* ---- server.c ---- */
/* Send a frame on a connection (frame OWNED by the callee). Loop thread only. */
void h2t_srv_conn_send(srv_conn *c, uint8_t *frame, size_t len);

/* ---- handlers.c ---- */
/* Encode an error reply for request id from rc and the thread's detail; NULL on ENOMEM. */
uint8_t *h2t_srv_error_frame(uint64_t id, int rc, size_t *len);
/* Encode m into a frame or, if that fails, an error frame. Never NULL unless out of memory. */
uint8_t *h2t_srv_encode_or_error(const h2t_msg *m, size_t *len);
typedef int (*srv_handler_fn)(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len);
enum { SRV_ON_LOOP = 0, SRV_OFF_LOOP = 1, SRV_OFF_LOOP_IF_BIG = 2 };
typedef struct srv_route {
    const char *name;
    srv_handler_fn fn;
    int off_loop; /* SRV_*: run on the loop, on the thread pool, or decided per request */
} srv_route;
/* The row for a request type, or NULL for a type that is not a request. */
const srv_route *h2t_srv_route(int type);
/* A statistics request on the loop: 1 with *frame set (the reply, or an error reply) when it
 * was small enough, 0 when it belongs on the thread pool. Loop thread only (the cache). */
int h2t_srv_stats_on_loop(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len);
void h2t_srv_stats_cache_free(h2t_srv *srv);
/* Fill a Job message from a stored job overlaid with live progress. Strings in out point into
 * j and live; out->spec points into spec_msg (decode it with h2t_srv_job_spec; free after). */
void h2t_srv_job_msg(h2t_srv *srv, const h2t_job *j, h2t_msg_job *out, h2t_msg *spec_msg,
                     char *stage_buf, size_t stage_len);

/* ---- classify.c ---- */
/* The classifier cache (at most cap kept). Errors: H2T_ENOMEM. */
int h2t_srv_cls_cache_create(uint32_t cap, srv_cls_cache **out);
void h2t_srv_cls_cache_destroy(srv_cls_cache *k); /* NULL is a no-op */
/* The ONNX classifier of finished job `job` (h2t_classifier_onnx through the cache); *out
 * OWNED (free()). Thread pool. Errors: h2t_classifier_open's, the export's. */
int h2t_srv_classifier_onnx(h2t_srv *srv, uint64_t job, void **out, size_t *len);
/* The classify request's handler (thread pool). */
int h2t_srv_classify(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len);

/* ---- jobs.c ---- */
int h2t_srv_jobs_start(h2t_srv *srv); /* recover stored jobs, start workers */
void h2t_srv_jobs_stop(h2t_srv *srv); /* interrupt, join, running -> QUEUED */
/* Queue a new job id (already stored as QUEUED). */
int h2t_srv_jobs_enqueue(h2t_srv *srv, uint64_t id);
/* Cancel: queued -> CANCELLED now; running -> flag (the worker finishes it CANCELLED).
 * Errors: H2T_ENOTFOUND, H2T_ESTATE (already finished). */
int h2t_srv_jobs_cancel(h2t_srv *srv, uint64_t id);
/* Live progress of a queued/running job; 0 when known, H2T_ENOTFOUND otherwise. */
int h2t_srv_jobs_live(h2t_srv *srv, uint64_t id, int *state, double *progress, char *stage,
                      size_t stage_len);
void h2t_srv_jobs_counts(h2t_srv *srv, uint32_t *queued, uint32_t *running);
/* Mark a job changed and wake the loop (any thread). */
void h2t_srv_jobs_changed(h2t_srv *srv, uint64_t id);
/* Decode a stored job spec (a packed Envelope with a train body). OWNED msg: h2t_msg_free. */
int h2t_srv_job_spec(const h2t_job *j, h2t_msg *msg);

#endif
