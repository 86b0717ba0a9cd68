/*
 * server/jobs.c - the job queue: worker threads that run train jobs, cancellation, progress
 * (to the store, throttled, and to the loop for watchers), and recovery of stored jobs when
 * the server starts. The store is the truth: a job's in-memory record exists only while it is
 * queued or running in this process.
 */
#include "server/internal.h"

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROGRESS_PERSIST_MS 500

typedef struct run_ctx {
    h2t_srv *srv;
    srv_job *jb;
    h2t_job *rec; /* the stored record, updated with progress */
} run_ctx;

/* ---------------- spec ---------------- */

int h2t_srv_job_spec(const h2t_job *j, h2t_msg *msg)
{
    int rc = h2t_proto_decode(j->spec, j->spec_len, msg);
    if (rc < 0)
        return rc;
    if (msg->type != H2T_MSG_TRAIN) {
        h2t_msg_free(msg);
        return h2t_err_set(H2T_ECORRUPT, "job %" PRIu64 ": stored spec is not a train request",
                           j->id);
    }
    return 0;
}

int h2t_srv_runner_solver(void *ud, h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                          h2t_solver_progress_fn progress, void *pud, const atomic_int *cancel,
                          void **blob, size_t *len)
{
    h2t_result *r = NULL;
    int rc = h2t_solver_run_cached(ud, st, task, spec, progress, pud, cancel, &r);
    if (rc < 0)
        return rc;
    rc = h2t_result_encode(r, blob, len);
    h2t_result_destroy(r);
    return rc;
}

/* ---------------- queue bookkeeping (under mu) ---------------- */

static srv_job *find_locked(h2t_srv *srv, uint64_t id)
{
    for (srv_job *j = srv->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static void unlink_locked(h2t_srv *srv, srv_job *jb)
{
    for (srv_job **pp = &srv->jobs; *pp; pp = &(*pp)->next)
        if (*pp == jb) {
            *pp = jb->next;
            return;
        }
}

static int append_locked(h2t_srv *srv, uint64_t id)
{
    srv_job *jb = calloc(1, sizeof(*jb));
    if (!jb)
        return h2t_err_set(H2T_ENOMEM, "job %" PRIu64, id);
    jb->id = id;
    jb->state = H2T_JOB_QUEUED;
    atomic_init(&jb->cancel, 0);
    srv_job **pp = &srv->jobs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = jb;
    return 0;
}

void h2t_srv_jobs_changed(h2t_srv *srv, uint64_t id)
{
    pthread_mutex_lock(&srv->mu);
    int seen = 0;
    for (size_t i = 0; i < srv->n_changed; i++)
        if (srv->changed[i] == id)
            seen = 1;
    if (!seen) {
        if (srv->n_changed == srv->cap_changed) {
            size_t cap = srv->cap_changed ? 2 * srv->cap_changed : 16;
            uint64_t *nv = realloc(srv->changed, cap * sizeof(*nv));
            if (nv) {
                srv->changed = nv;
                srv->cap_changed = cap;
            }
        }
        if (srv->n_changed < srv->cap_changed)
            srv->changed[srv->n_changed++] = id;
    }
    if (!srv->loop_gone && srv->loop_init)
        uv_async_send(&srv->wake);
    pthread_mutex_unlock(&srv->mu);
}

int h2t_srv_jobs_live(h2t_srv *srv, uint64_t id, int *state, double *progress, char *stage,
                      size_t stage_len)
{
    int rc = H2T_ENOTFOUND;
    pthread_mutex_lock(&srv->mu);
    srv_job *jb = find_locked(srv, id);
    if (jb && jb->state == H2T_JOB_RUNNING) {
        *state = jb->state;
        *progress = jb->progress;
        snprintf(stage, stage_len, "%s", jb->stage);
        rc = 0;
    }
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

void h2t_srv_jobs_counts(h2t_srv *srv, uint32_t *queued, uint32_t *running)
{
    uint32_t q = 0, r = 0;
    pthread_mutex_lock(&srv->mu);
    for (srv_job *j = srv->jobs; j; j = j->next) {
        if (j->state == H2T_JOB_RUNNING)
            r++;
        else
            q++;
    }
    pthread_mutex_unlock(&srv->mu);
    *queued = q;
    *running = r;
}

int h2t_srv_jobs_enqueue(h2t_srv *srv, uint64_t id)
{
    pthread_mutex_lock(&srv->mu);
    int rc = append_locked(srv, id);
    pthread_cond_signal(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

int h2t_srv_jobs_cancel(h2t_srv *srv, uint64_t id)
{
    pthread_mutex_lock(&srv->mu);
    srv_job *jb = find_locked(srv, id);
    if (jb && jb->state == H2T_JOB_RUNNING) {
        jb->user_cancel = 1;
        atomic_store(&jb->cancel, 1);
        pthread_mutex_unlock(&srv->mu);
        h2t_srv_jobs_changed(srv, id);
        return 0;
    }
    if (jb) /* queued: no worker can take it once it is off the list */
        unlink_locked(srv, jb);
    pthread_mutex_unlock(&srv->mu);
    free(jb);
    h2t_job *j = NULL;
    int rc = h2t_store_job_get(srv->st, id, &j);
    if (rc < 0)
        return rc;
    int state = (int)j->state;
    h2t_job_destroy(j);
    if (state != H2T_JOB_QUEUED && state != H2T_JOB_RUNNING) {
        static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
        return h2t_err_set(H2T_ESTATE, "job %" PRIu64 " is already %s", id,
                           state < 5 ? names[state] : "finished");
    }
    rc = h2t_store_job_finish(srv->st, id, H2T_JOB_CANCELLED, "cancelled before it started", NULL,
                              0);
    h2t_srv_jobs_changed(srv, id);
    return rc;
}

/* ---------------- workers ---------------- */

static void on_progress(void *ud, double fraction, const char *stage)
{
    run_ctx *ctx = ud;
    h2t_srv *srv = ctx->srv;
    if (!(fraction >= 0))
        fraction = 0;
    if (fraction > 1)
        fraction = 1;
    pthread_mutex_lock(&srv->mu);
    ctx->jb->progress = fraction;
    snprintf(ctx->jb->stage, sizeof(ctx->jb->stage), "%s", stage ? stage : "");
    pthread_mutex_unlock(&srv->mu);
    uint64_t now = h2t_now_ns() / 1000000u;
    if (now - ctx->jb->persisted_ms >= PROGRESS_PERSIST_MS) {
        ctx->jb->persisted_ms = now;
        ctx->rec->progress = fraction;
        snprintf(ctx->rec->stage, sizeof(ctx->rec->stage), "%s", stage ? stage : "");
        if (h2t_store_job_update(srv->st, ctx->rec) < 0)
            H2T_LOG_WARN("jobs", "job %" PRIu64 ": progress not saved: %s", ctx->jb->id,
                         h2t_err_detail());
    }
    h2t_srv_jobs_changed(srv, ctx->jb->id);
}

static void run_job(h2t_srv *srv, srv_job *jb)
{
    h2t_job *j = NULL;
    h2t_task *task = NULL;
    h2t_msg spec = {0};
    void *blob = NULL;
    size_t blob_len = 0;
    char err[512] = "";
    int rc = h2t_store_job_get(srv->st, jb->id, &j);
    if (rc < 0) {
        H2T_LOG_ERROR("jobs", "job %" PRIu64 ": %s", jb->id, h2t_err_detail());
        return;
    }
    if (j->state != H2T_JOB_QUEUED && j->state != H2T_JOB_RUNNING) {
        H2T_LOG_INFO("jobs", "job %" PRIu64 " already finished: not run again", jb->id);
        goto out;
    }
    j->state = H2T_JOB_RUNNING;
    j->attempts++;
    j->started_ms = h2t_wall_ms();
    j->progress = 0;
    snprintf(j->stage, sizeof(j->stage), "starting");
    j->error[0] = 0;
    if ((rc = h2t_store_job_update(srv->st, j)) < 0) {
        H2T_LOG_ERROR("jobs", "job %" PRIu64 ": cannot mark running: %s", jb->id, h2t_err_detail());
        goto out;
    }
    pthread_mutex_lock(&srv->mu);
    jb->attempts = j->attempts;
    jb->started_ms = j->started_ms;
    snprintf(jb->stage, sizeof(jb->stage), "starting");
    pthread_mutex_unlock(&srv->mu);
    h2t_srv_jobs_changed(srv, jb->id);
    H2T_LOG_INFO("jobs", "job %" PRIu64 ": started (attempt %u)", jb->id, j->attempts);

    h2t_err_clear();
    h2t_train_spec ts;
    if ((rc = h2t_srv_job_spec(j, &spec)) == 0 &&
        (rc = h2t_train_spec_resolve(&spec.u.train.spec, &ts)) == 0 &&
        (rc = h2t_store_task_get(srv->st, spec.u.train.task, &task)) == 0) {
        run_ctx ctx = {srv, jb, j};
        jb->persisted_ms = h2t_now_ns() / 1000000u;
        /* the request may ask for fewer BLAS threads than the server's budget, not more */
        if (ts.threads == 0 || ts.threads > srv->job_threads)
            ts.threads = srv->job_threads;
        rc = srv->runner(srv->runner_ud, srv->st, task, &ts, on_progress, &ctx, &jb->cancel, &blob,
                         &blob_len);
    }
    if (rc < 0)
        h2t_err_format(rc, err, sizeof(err));
    int user_cancel;
    pthread_mutex_lock(&srv->mu);
    user_cancel = jb->user_cancel;
    pthread_mutex_unlock(&srv->mu);
    int wrc;
    if (rc == 0) {
        wrc = h2t_store_job_finish(srv->st, jb->id, H2T_JOB_DONE, NULL, blob, blob_len);
        H2T_LOG_INFO("jobs", "job %" PRIu64 ": done", jb->id);
    } else if (rc == H2T_ECANCELED && !user_cancel) {
        /* the server is stopping: the next start runs the job again */
        j->state = H2T_JOB_QUEUED;
        j->progress = 0;
        snprintf(j->stage, sizeof(j->stage), "interrupted by a server stop");
        wrc = h2t_store_job_update(srv->st, j);
        H2T_LOG_INFO("jobs", "job %" PRIu64 ": interrupted, queued for the next start", jb->id);
    } else if (rc == H2T_ECANCELED) {
        wrc = h2t_store_job_finish(srv->st, jb->id, H2T_JOB_CANCELLED, "cancelled by a client",
                                   NULL, 0);
        H2T_LOG_INFO("jobs", "job %" PRIu64 ": cancelled", jb->id);
    } else {
        wrc = h2t_store_job_finish(srv->st, jb->id, H2T_JOB_FAILED, err, NULL, 0);
        H2T_LOG_WARN("jobs", "job %" PRIu64 ": failed: %s", jb->id, err);
    }
    if (wrc < 0)
        H2T_LOG_ERROR("jobs", "job %" PRIu64 ": final state not saved: %s", jb->id,
                      h2t_err_detail());
out:
    free(blob);
    h2t_task_destroy(task);
    h2t_msg_free(&spec);
    h2t_job_destroy(j);
}

static void *worker_main(void *arg)
{
    h2t_srv *srv = arg;
    /* a job yields to the event loop: lower this thread's priority (Linux: per thread) */
    if (srv->cfg.job_nice > 0 &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), srv->cfg.job_nice) != 0)
        H2T_LOG_WARN("jobs", "cannot lower the job thread's priority: %s", strerror(errno));
#ifdef SCHED_IDLE
    struct sched_param sp = {.sched_priority = 0};
    if (srv->cfg.job_idle && pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        H2T_LOG_WARN("jobs", "cannot put the job thread under SCHED_IDLE");
#endif
    pthread_mutex_lock(&srv->mu);
    for (;;) {
        srv_job *jb = NULL;
        while (!srv->workers_stop) {
            for (jb = srv->jobs; jb && jb->state != H2T_JOB_QUEUED; jb = jb->next) {
            }
            if (jb)
                break;
            pthread_cond_wait(&srv->cv, &srv->mu);
        }
        if (srv->workers_stop)
            break;
        jb->state = H2T_JOB_RUNNING;
        srv->n_running++;
        pthread_mutex_unlock(&srv->mu);
        run_job(srv, jb);
        pthread_mutex_lock(&srv->mu);
        srv->n_running--;
        unlink_locked(srv, jb);
        uint64_t id = jb->id;
        free(jb);
        pthread_mutex_unlock(&srv->mu);
        h2t_srv_jobs_changed(srv, id);
        pthread_mutex_lock(&srv->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

int h2t_srv_jobs_start(h2t_srv *srv)
{
    h2t_job **jv = NULL;
    size_t n = 0;
    int rc = h2t_store_job_list(srv->st, &jv, &n);
    if (rc < 0)
        return rc;
    uint32_t queued = 0, rerun = 0;
    pthread_mutex_lock(&srv->mu);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (jv[i]->damaged) /* listed as failed; the others still run */
            H2T_LOG_WARN("jobs", "job %llu: %s; left as failed (h2tdb rm job %llu removes it)",
                         (unsigned long long)jv[i]->id, jv[i]->error,
                         (unsigned long long)jv[i]->id);
        else if (jv[i]->state == H2T_JOB_QUEUED || jv[i]->state == H2T_JOB_RUNNING) {
            rc = append_locked(srv, jv[i]->id);
            if (jv[i]->state == H2T_JOB_RUNNING)
                rerun++;
            else
                queued++;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    h2t_job_list_destroy(jv, n);
    if (rc < 0)
        return rc;
    if (queued || rerun)
        H2T_LOG_INFO("jobs", "recovered %u queued job(s) and %u interrupted one(s) to re-run",
                     queued, rerun);
    if (srv->cfg.workers == 0)
        return 0;
    srv->job_threads = srv->cfg.job_threads;
    if (srv->job_threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        long per = cpus > 1 ? (cpus - 1) / (long)srv->cfg.workers : 1;
        srv->job_threads = per < 1 ? 1 : (uint32_t)per;
    }
    srv->workers = calloc(srv->cfg.workers, sizeof(*srv->workers));
    if (!srv->workers)
        return h2t_err_set(H2T_ENOMEM, "workers");
    for (uint32_t i = 0; i < srv->cfg.workers; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0)
            return h2t_err_set(H2T_ENOMEM, "cannot start worker thread %u", i);
        pthread_setname_np(srv->workers[i], "h2t-job");
        srv->n_workers++;
    }
    return 0;
}

void h2t_srv_jobs_stop(h2t_srv *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->workers_stop = 1;
    for (srv_job *j = srv->jobs; j; j = j->next)
        if (j->state == H2T_JOB_RUNNING)
            atomic_store(&j->cancel, 1);
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (uint32_t i = 0; i < srv->n_workers; i++)
        pthread_join(srv->workers[i], NULL);
    srv->n_workers = 0;
    free(srv->workers);
    srv->workers = NULL;
    pthread_mutex_lock(&srv->mu);
    while (srv->jobs) {
        srv_job *j = srv->jobs;
        srv->jobs = j->next;
        free(j);
    }
    pthread_mutex_unlock(&srv->mu);
}
