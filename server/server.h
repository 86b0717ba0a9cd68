/*
 * server/server.h - the h2tdb service: a libuv TCP server over one store, a dispatch table
 * (one row per request type, proto/proto.h), a persistent job queue run by worker threads,
 * and the selection syntax that turns a task spec into sample lists. The only place in h2tdb
 * that includes uv.h.
 *
 *     h2t_store *store;
 *     if (h2t_store_open("feats", 0, &store) < 0)
 *         return;
 *     h2t_srv_config cfg;
 *     h2t_srv_config_default(&cfg);
 *     cfg.listen = "127.0.0.1:0"; // an ephemeral port,
 *     cfg.port_file = "port";     // written here once listening
 *     h2t_srv *srv;
 *     if (h2t_srv_create(&cfg, store, &srv) == 0) {
 *         h2t_srv_run(srv); // until SIGINT/SIGTERM or h2t_srv_stop
 *         h2t_srv_destroy(srv);
 *     }
 *     h2t_store_close(store);
 *
 * Threads: the event loop runs on the thread that calls h2t_srv_run and never blocks: small
 * store reads (health, job state, statistics of up to H2T_SRV_LOOP_STATS_MAX features: LMDB
 * reads of memory-mapped pages, a few microseconds) run on the loop; larger reads and every
 * store write run on libuv's thread pool; train jobs run on cfg.workers threads of their own
 * (named "h2t-job"), at a lower priority (cfg.job_nice) and with at most cfg.job_threads BLAS
 * threads each (by default the CPUs less one shared by the workers, at least 1: on 2 CPUs and
 * 1 worker a job uses 1 thread), so that the loop keeps a core while a job runs. A train
 * request's own thread count may lower that, never raise it. Progress travels from a worker
 * to the loop through a uv_async, and the loop pushes it to every watcher of the job.
 * Where the kernel puts the threads matters as much as their priority: a worker thread runs
 * under SCHED_IDLE (cfg.job_idle), so a CPU that runs only a job counts as idle when the
 * kernel places a woken thread (Linux select_idle_sibling); with nice 10 alone the loop and
 * its clients are woken onto one CPU while the job keeps the other. And the loop polls for
 * cfg.spin_us after its last event before it sleeps in epoll: under load it never sleeps, so
 * it is never woken, and a wake-up never moves it onto its clients' CPU (docs/service.md).
 * (OpenBLAS's own threads, used when cfg.job_threads > 1, keep the normal policy.)
 *
 * One server a store: h2t_srv_create takes the store's service lock (storage/store.h,
 * DIR/serve.lock) and fails with H2T_EBUSY naming the pid of the server that holds it; the
 * lock is released by h2t_srv_destroy, or by the kernel when the process dies.
 *
 * Jobs live in the store (storage/store.h jobs table). On start the server queues every
 * QUEUED job again and re-runs every RUNNING one (a server that was killed: attempts + 1).
 * A job reaches DONE only through h2t_store_job_finish with its result, once; a worker
 * checks the stored state before it starts a job, so a finished job never runs again. On a
 * graceful stop a running job is interrupted (the solver's cancel flag) and put back to
 * QUEUED, so the next start runs it again.
 *
 * Protection: bound to 127.0.0.1 by default; with a token every connection must send Auth
 * first (constant-time compare) or gets an error and is closed; a non-loopback address
 * without a token is refused unless cfg.insecure_bind; frame lengths are checked against
 * cfg.max_frame (before Auth: H2T_SRV_AUTH_FRAME_MAX) and a frame's buffer grows only with
 * the bytes that arrived; at most cfg.max_conns connections, of which at most
 * cfg.max_unauth_conns wait for Auth (a new connection past either limit closes the oldest
 * unauthenticated one, so idle sockets cannot lock out clients with the token); a
 * connection idle for cfg.idle_timeout_ms (no request in flight, no watch), or that leaves a
 * frame or the Auth unfinished for cfg.slow_timeout_ms, is closed; a client that does not
 * read its replies (more than cfg.max_pending_write bytes queued) is closed.
 */
#ifndef H2T_SERVER_SERVER_H
#define H2T_SERVER_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"
#include "solver/solver.h"
#include "storage/store.h"

#define H2T_SRV_DEFAULT_PORT 7433
/* selections (task lists, predict samples) expand to at most cfg.max_selection ids each:
 * the default, and the most a server accepts (4 bytes an id: 64 MiB and 4 GiB a list) */
#define H2T_SRV_SEL_MAX_DEFAULT (1u << 24)
#define H2T_SRV_SEL_MAX_LIMIT (1u << 30)
/* With a token, a frame read before Auth is at most this long (an Auth frame is far
 * shorter): unauthenticated connections together hold at most
 * cfg.max_unauth_conns x H2T_SRV_AUTH_FRAME_MAX bytes of frames (256 KiB by default). */
#define H2T_SRV_AUTH_FRAME_MAX 4096u
/* statistics requests over at most this many features are answered on the event loop */
#define H2T_SRV_LOOP_STATS_MAX 16384u

/* A job runner: trains the job's head and returns the solver's result blob (*blob OWNED by
 * the server afterwards, free()). Called on a worker thread with the job's resolved spec
 * (h2t_train_spec_resolve of the stored request; threads capped at the server's budget,
 * BORROWED for the call). progress(pud, fraction, stage)
 * may be called any number of times; cancel becomes non-zero when the job is cancelled or the
 * server stops, and the runner should then return H2T_ECANCELED promptly. Any other negative
 * code fails the job with h2t_err_detail() as its error text. The default runner is the
 * solver (h2t_srv_runner_solver). */
typedef int (*h2t_srv_runner_fn)(void *ud, h2t_store *st, const h2t_task *task,
                                 const h2t_train_spec *spec, h2t_solver_progress_fn progress,
                                 void *pud, const atomic_int *cancel, void **blob, size_t *len);

typedef struct h2t_srv_config {
    const char *listen;        /* "HOST:PORT", "PORT" or "[V6]:PORT"; default "127.0.0.1:7433" */
    const char *token_file;    /* NULL: no token. BORROWED for h2t_srv_create */
    const char *port_file;     /* write the bound port here (atomically) once listening */
    int insecure_bind;         /* allow a non-loopback address without a token */
    uint32_t workers;          /* job threads (default 1) */
    uint32_t max_frame;        /* payload limit in bytes (default H2T_PROTO_MAX_FRAME) */
    uint32_t max_conns;        /* default 4096 */
    uint32_t max_unauth_conns; /* connections that have not sent Auth yet (with a token), default
                                  64: past it the oldest of them is closed */
    uint32_t idle_timeout_ms;  /* default 300000 */
    uint32_t slow_timeout_ms;  /* unfinished frame / missing auth, default 10000 */
    size_t max_pending_write;  /* bytes of replies queued for one client, default 64 MiB */
    int handle_signals;        /* stop gracefully on SIGINT/SIGTERM (default 1) */
    h2t_srv_runner_fn runner;  /* NULL: h2t_srv_runner_solver */
    void *runner_ud;
    /* the version of a method's results for the job reuse test (NULL:
     * h2t_solver_results_version); a job is reused only under the same version */
    uint32_t (*results_version)(uint32_t method);
    uint32_t job_threads;   /* BLAS threads per job; 0 (default): max(1, (CPUs - 1) / workers) */
    int job_nice;           /* nice value of the job threads (default 10; 0 = unchanged) */
    int job_idle;           /* job threads under SCHED_IDLE (default 1): see "Threads" above */
    uint32_t spin_us;       /* the loop polls this long after its last event before it sleeps
                               (default 50; 0 = sleep at once) */
    uint32_t max_selection; /* ids one selection may expand to (default
                               H2T_SRV_SEL_MAX_DEFAULT, at most H2T_SRV_SEL_MAX_LIMIT) */
    uint64_t predict_mem_bytes;  /* feature rows a predict request holds at once (default 64
                                    MiB): more samples are predicted in chunks */
    uint64_t design_cache_bytes; /* design matrices kept for later jobs when no job uses them
                                    (solver.h h2t_design_cache; default 1 GiB; 0 = freed when
                                    the last job using one ends) */
    /* classify requests (server/classify.c): the directory holding the extractions' ONNX
     * files by their stored names (default "models"), at most classify_max_images images
     * (default 64) and classify_max_bytes bytes of encoded images (default 8 MiB) per request,
     * and classify_cache classifiers kept for the next request (default 4; 0 = none kept) */
    const char *models_dir;
    uint32_t classify_max_images;
    uint32_t classify_cache;
    uint64_t classify_max_bytes;
} h2t_srv_config;

typedef struct h2t_srv h2t_srv;

void h2t_srv_config_default(h2t_srv_config *cfg);

/* Create the server on an open store (BORROWED: must outlive the server): read the token,
 * bind and listen, write the port file, start the workers, and queue the stored jobs that
 * are QUEUED or RUNNING. Errors: H2T_EBUSY (another server holds the store: the detail
 * names its pid), H2T_EINVAL (bad address or setting, detail names it),
 * H2T_EPERM (non-loopback without a token), H2T_EIO (token file), H2T_ENET (bind/listen:
 * detail says why), H2T_ENOMEM, store errors. */
int h2t_srv_create(const h2t_srv_config *cfg, h2t_store *st, h2t_srv **out);
/* Run the event loop until a stop; then stop the workers (running jobs back to QUEUED).
 * Returns 0 or H2T_ENET. */
int h2t_srv_run(h2t_srv *srv);
/* Ask a running server to stop; safe from any thread and from a signal handler's thread. */
void h2t_srv_stop(h2t_srv *srv);
/* The bound TCP port (useful with port 0). */
int h2t_srv_port(const h2t_srv *srv);
/* Free everything; NULL is a no-op. Only after h2t_srv_run returned (or was never called). */
void h2t_srv_destroy(h2t_srv *srv);

/* The default runner: h2t_solver_run_cached with the spec, result encoded.
 * ud: NULL, or an h2t_design_cache (the server passes its own) to share design matrices
 * between jobs. */
int h2t_srv_runner_solver(void *ud, h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                          h2t_solver_progress_fn progress, void *pud, const atomic_int *cancel,
                          void **blob, size_t *len);

/* ---- tasks: selections and label maps (server/task.c) ----
 * SEL, one or more parts joined by '+':
 *   train | test          every extracted sample of that split, in sample order
 *   train:N | test:N      the first N samples of the split
 *   train[A:B]            positions A..B-1 within the split (A or B may be left out)
 *   ids:LIST              sample ids: "1,5,7-9" (ranges inclusive)
 *   none                  nothing (test and val only)
 * Map entries: from = a source class name (exact, then case-insensitive) or numeric id, or
 * "*" for every class not named; to = the task's class name, or "-" to drop the samples.
 * Shots K: keep the first K training samples of each task class (selection order). */

/* Resolve sel over the given labels/splits into sample ids (OWNED: free()). what names the
 * argument in errors ("--train"). Only samples < avail are eligible. At most max_ids ids (0 or
 * more than H2T_SRV_SEL_MAX_LIMIT: H2T_SRV_SEL_MAX_LIMIT); a sample listed twice counts twice.
 * Errors: H2T_EINVAL (syntax, or fewer samples than asked: detail shows the part),
 * H2T_ETOOBIG (more than max_ids: detail names the cap and the serve option that sets it). */
int h2t_srv_sel_resolve(const char *sel, const char *what, const uint8_t *split, uint32_t avail,
                        uint32_t max_ids, uint32_t **ids, uint32_t *n);

/* Build a task record from a create request over the store (OWNED: h2t_task_destroy); each
 * list expands to at most max_ids ids (as h2t_srv_sel_resolve).
 * Errors: H2T_EINVAL (selection, map, shots: detail names it), H2T_ETOOBIG (a list past
 * max_ids), H2T_ENOTFOUND (extraction). */
int h2t_srv_task_build(h2t_store *st, const h2t_msg_task_spec *spec, uint32_t max_ids,
                       h2t_task **out);

/* Process one request payload as if it came from an authenticated connection, without a
 * network: decode, dispatch, run the handler inline, and return every reply frame (a
 * length-prefixed sequence, OWNED: free()). For the fuzz target and tests. */
int h2t_srv_handle_payload(h2t_srv *srv, const uint8_t *payload, size_t len, uint8_t **replies,
                           size_t *replies_len);

#endif
