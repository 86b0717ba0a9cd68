/*
 * server/handlers.c - the dispatch table: one row per request type, and its handler. A
 * handler reads the request, talks to the store, and encodes its reply into *frame; on
 * failure it returns a negative code with the detail set (the caller turns it into an Error
 * reply). Rows marked off_loop run on libuv's thread pool, the others on the loop (only
 * small, non-blocking work there).
 */
#include "server/internal.h"

#include "common/err.h"
#include "common/util.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEATURE_PAGE_BYTES (8u << 20) /* a features reply stays under this */

/* ---------------- replies ---------------- */

static int reply(const h2t_msg *m, uint8_t **frame, size_t *len)
{
    return h2t_proto_encode(m, frame, len);
}

uint8_t *h2t_srv_error_frame(uint64_t id, int rc, size_t *len)
{
    /* the code travels as a number: the text is only the detail (the client adds strerror) */
    char text[1024];
    const char *d = h2t_err_detail();
    snprintf(text, sizeof(text), "%s", *d ? d : h2t_strerror(rc));
    h2t_msg m = {.id = id, .type = H2T_MSG_ERROR};
    m.u.error.code = rc;
    m.u.error.message = text;
    uint8_t *f = NULL;
    if (h2t_proto_encode(&m, &f, len) < 0)
        return NULL;
    return f;
}

uint8_t *h2t_srv_encode_or_error(const h2t_msg *m, size_t *len)
{
    uint8_t *f = NULL;
    int rc = h2t_proto_encode(m, &f, len);
    if (rc < 0)
        return h2t_srv_error_frame(m->id, rc, len);
    return f;
}

static int find_extraction(h2t_srv *srv, const char *ref, h2t_extraction **out)
{
    if (!ref || !*ref)
        return h2t_err_set(H2T_EINVAL, "no extraction given (an id or a name)");
    uint32_t id;
    int rc = h2t_store_extraction_find(srv->st, ref, &id);
    if (rc < 0)
        return rc;
    return h2t_store_extraction_get(srv->st, id, out);
}

/* ---------------- health ---------------- */

static int h_health(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_msg m = {.id = req->id, .type = H2T_MSG_HEALTH};
    h2t_msg_health *h = &m.u.health;
    h->version = "h2tdb 0.1.0";
    h->uptime_ms = h2t_wall_ms() - srv->started_ms;
    h->connections = srv->n_conns;
    h2t_srv_jobs_counts(srv, &h->jobs_queued, &h->jobs_running);
    h->workers = srv->n_workers;
    h->requests = atomic_load(&srv->requests);
    h2t_design_cache_stats ds;
    h2t_design_cache_stats_get(srv->design, &ds);
    h->design_loads = ds.loads;
    h->design_hits = ds.hits;
    h->design_bytes = ds.bytes;
    h->designs = ds.entries;
    return reply(&m, frame, len);
}

/* ---------------- extractions ---------------- */

static void fill_layers(const h2t_extraction *e, h2t_msg_layer *v)
{
    for (uint32_t i = 0; i < e->n_layers; i++) {
        const h2t_layer_info *L = &e->layers[i];
        v[i].name = L->name;
        v[i].op = L->op;
        v[i].n_shape = L->rank > 1 ? L->rank - 1 : 0;
        if (v[i].n_shape > 4)
            v[i].n_shape = 4;
        v[i].shape = L->shape;
        v[i].dim = L->dim;
        v[i].offset = L->offset;
    }
}

static void fill_extraction(const h2t_extraction *e, const char *source, const char *model,
                            h2t_msg_extraction *x)
{
    x->id = e->id;
    x->name = e->name;
    x->source = source;
    x->model = model;
    x->n_samples = e->n_samples;
    x->samples_done = e->samples_done;
    x->state = e->state;
    x->total_dim = e->total_dim;
    x->target_size = e->target_size;
    x->dtype = e->dtype;
    x->config = e->config;
    x->n_layers = e->n_layers;
}

static int h_list_extractions(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_extraction **ev = NULL;
    h2t_source **sv = NULL;
    h2t_model_rec *mv = NULL;
    size_t ne = 0, ns = 0, nm = 0;
    h2t_msg_extraction *x = NULL;
    int rc;
    if ((rc = h2t_store_extraction_list(srv->st, &ev, &ne)) < 0 ||
        (rc = h2t_store_source_list(srv->st, &sv, &ns)) < 0 ||
        (rc = h2t_store_model_list(srv->st, &mv, &nm)) < 0)
        goto out;
    x = calloc(ne ? ne : 1, sizeof(*x));
    if (!x) {
        rc = h2t_err_set(H2T_ENOMEM, "extraction list");
        goto out;
    }
    for (size_t i = 0; i < ne; i++) {
        const char *src = "", *model = "";
        for (size_t k = 0; k < ns; k++)
            if (sv[k]->id == ev[i]->source)
                src = sv[k]->name;
        for (size_t k = 0; k < nm; k++)
            if (mv[k].id == ev[i]->model)
                model = mv[k].name;
        fill_extraction(ev[i], src, model, &x[i]);
    }
    h2t_msg m = {.id = req->id, .type = H2T_MSG_EXTRACTION_LIST};
    m.u.extraction_list.n = ne;
    m.u.extraction_list.v = x;
    rc = reply(&m, frame, len);
out:
    free(x);
    h2t_extraction_list_destroy(ev, ne);
    h2t_source_list_destroy(sv, ns);
    free(mv);
    return rc;
}

static int h_describe(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_extraction *e = NULL;
    h2t_source *src = NULL;
    h2t_msg_layer *layers = NULL;
    h2t_model_rec model;
    memset(&model, 0, sizeof(model));
    int rc = find_extraction(srv, req->u.ext_ref.extraction, &e);
    if (rc < 0)
        goto out;
    if ((rc = h2t_store_source_get(srv->st, e->source, &src)) < 0)
        goto out;
    if (h2t_store_model_get(srv->st, e->model, &model) < 0)
        h2t_err_clear(); /* an extraction without its model record still describes */
    layers = calloc(e->n_layers ? e->n_layers : 1, sizeof(*layers));
    if (!layers) {
        rc = h2t_err_set(H2T_ENOMEM, "describe");
        goto out;
    }
    fill_layers(e, layers);
    h2t_msg m = {.id = req->id, .type = H2T_MSG_EXTRACTION};
    h2t_msg_extraction *x = &m.u.extraction;
    fill_extraction(e, src->name, model.name, x);
    x->n_class_names = src->n_classes;
    x->class_names = (const char *const *)src->class_names;
    uint32_t lim = e->samples_done < src->n_samples ? e->samples_done : src->n_samples;
    for (uint32_t i = 0; i < lim; i++) {
        if (src->split[i] == H2T_SPLIT_TRAIN)
            x->n_train++;
        else
            x->n_test++;
    }
    x->n_layer_info = e->n_layers;
    x->layers = layers;
    rc = reply(&m, frame, len);
out:
    free(layers);
    h2t_source_destroy(src);
    h2t_extraction_destroy(e);
    return rc;
}

static int h_layers(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_extraction *e = NULL;
    h2t_msg_layer *layers = NULL;
    int rc = find_extraction(srv, req->u.ext_ref.extraction, &e);
    if (rc < 0)
        return rc;
    layers = calloc(e->n_layers ? e->n_layers : 1, sizeof(*layers));
    if (!layers) {
        rc = h2t_err_set(H2T_ENOMEM, "layers");
        goto out;
    }
    fill_layers(e, layers);
    h2t_msg m = {.id = req->id, .type = H2T_MSG_LAYER_TABLE};
    m.u.layer_table.extraction = e->id;
    m.u.layer_table.n_layers = e->n_layers;
    m.u.layer_table.layers = layers;
    rc = reply(&m, frame, len);
out:
    free(layers);
    h2t_extraction_destroy(e);
    return rc;
}

/* ---------------- statistics and feature slices ---------------- */

/* The Stats reply to q over extraction e (BORROWED), for request id. */
static int stats_encode(h2t_srv *srv, const h2t_extraction *e, const h2t_msg_stats_req *q,
                        uint64_t id, uint8_t **frame, size_t *len)
{
    h2t_layer_stats **ls = NULL;
    h2t_msg_layer_stats *out = NULL;
    double *var = NULL;
    uint32_t first = 0, n = 0;
    int rc = 0;
    if (q->layer && *q->layer) {
        if ((rc = h2t_extraction_layer_find(e, q->layer, &first)) < 0)
            goto out;
        n = 1;
    } else {
        if (q->per_feature) {
            rc = h2t_err_set(H2T_EINVAL, "per-feature statistics need one layer (--layer NAME)");
            goto out;
        }
        n = e->n_layers;
    }
    ls = calloc(n ? n : 1, sizeof(*ls));
    out = calloc(n ? n : 1, sizeof(*out));
    if (!ls || !out) {
        rc = h2t_err_set(H2T_ENOMEM, "stats");
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = h2t_store_stats_get(srv->st, e->id, first + i, &ls[i])) < 0)
            goto out;
        const h2t_layer_stats *s = ls[i];
        h2t_msg_layer_stats *o = &out[i];
        o->layer = e->layers[first + i].name;
        o->dim = s->dim;
        o->count = s->count;
        o->norm_mean = s->norm_mean;
        o->norm_min = s->norm_min;
        o->norm_max = s->norm_max;
        double sm = 0, sv = 0;
        float mn = s->dim ? FLT_MAX : 0, mx = s->dim ? -FLT_MAX : 0;
        for (uint32_t j = 0; j < s->dim; j++) {
            sm += s->mean[j];
            sv += s->count ? s->m2[j] / (double)s->count : 0;
            if (s->min[j] < mn)
                mn = s->min[j];
            if (s->max[j] > mx)
                mx = s->max[j];
        }
        o->mean_of_means = s->dim ? sm / s->dim : 0;
        o->mean_of_vars = s->dim ? sv / s->dim : 0;
        o->min = s->count ? mn : 0;
        o->max = s->count ? mx : 0;
        if (q->per_feature) {
            var = malloc((s->dim ? s->dim : 1) * sizeof(*var));
            if (!var) {
                rc = h2t_err_set(H2T_ENOMEM, "stats");
                goto out;
            }
            for (uint32_t j = 0; j < s->dim; j++)
                var[j] = s->count ? s->m2[j] / (double)s->count : 0;
            o->n_mean = o->n_var = o->n_fmin = o->n_fmax = s->dim;
            o->mean = s->mean;
            o->var = var;
            o->fmin = s->min;
            o->fmax = s->max;
        }
    }
    h2t_msg m = {.id = id, .type = H2T_MSG_STATS};
    m.u.stats.extraction = e->id;
    m.u.stats.n_layers = n;
    m.u.stats.layers = out;
    rc = reply(&m, frame, len);
out:
    for (uint32_t i = 0; ls && i < n; i++)
        h2t_layer_stats_destroy(ls[i]);
    free(ls);
    free(out);
    free(var);
    return rc;
}

static int h_stats(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_extraction *e = NULL;
    int rc = find_extraction(srv, req->u.stats_req.extraction, &e);
    if (rc < 0)
        return rc;
    rc = stats_encode(srv, e, &req->u.stats_req, req->id, frame, len);
    h2t_extraction_destroy(e);
    return rc;
}

/* Statistics on the loop: requests over at most H2T_SRV_LOOP_STATS_MAX features, answered
 * from a small cache of encoded replies. A cached reply is valid while the extraction's
 * samples_done and updated_ms are unchanged: the store writes statistics only together with
 * a feature batch, which moves both in the same transaction. */
int h2t_srv_stats_on_loop(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    const h2t_msg_stats_req *q = &req->u.stats_req;
    h2t_extraction *e = NULL;
    uint8_t *f0 = NULL;
    size_t len0 = 0;
    int rc = find_extraction(srv, q->extraction, &e);
    if (rc < 0)
        goto fail; /* an error reply is small */
    uint32_t layer = UINT32_MAX;
    uint64_t features = e->total_dim;
    if (q->layer && *q->layer) {
        if ((rc = h2t_extraction_layer_find(e, q->layer, &layer)) < 0)
            goto fail;
        features = e->layers[layer].dim;
    }
    if (features > H2T_SRV_LOOP_STATS_MAX) {
        h2t_extraction_destroy(e);
        return 0;
    }
    int pf = q->per_feature != 0;
    srv_stats_entry *hit = NULL;
    for (int i = 0; i < SRV_STATS_CACHE && !hit; i++) {
        srv_stats_entry *c = &srv->stats_cache[i];
        if (c->frame && c->ext == e->id && c->layer == layer && c->per_feature == pf &&
            c->samples_done == e->samples_done && c->updated_ms == e->updated_ms)
            hit = c;
    }
    if (!hit) {
        if ((rc = stats_encode(srv, e, q, 0, &f0, &len0)) < 0)
            goto fail;
        if (len0 <= SRV_STATS_CACHE_BYTES) {
            hit = &srv->stats_cache[srv->stats_next++ % SRV_STATS_CACHE];
            free(hit->frame);
            *hit = (srv_stats_entry){.ext = e->id,
                                     .layer = layer,
                                     .per_feature = pf,
                                     .samples_done = e->samples_done,
                                     .updated_ms = e->updated_ms,
                                     .frame = f0,
                                     .len = len0};
            f0 = NULL;
        }
    }
    rc = hit ? h2t_proto_reframe(req->id, hit->frame, hit->len, frame, len)
             : h2t_proto_reframe(req->id, f0, len0, frame, len);
    if (rc < 0)
        goto fail;
    free(f0);
    h2t_extraction_destroy(e);
    return 1;
fail:
    free(f0);
    h2t_extraction_destroy(e);
    *frame = h2t_srv_error_frame(req->id, rc, len);
    return 1;
}

void h2t_srv_stats_cache_free(h2t_srv *srv)
{
    for (int i = 0; i < SRV_STATS_CACHE; i++) {
        free(srv->stats_cache[i].frame);
        srv->stats_cache[i].frame = NULL;
    }
}

static int h_features(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    const h2t_msg_features_req *q = &req->u.features_req;
    h2t_extraction *e = NULL;
    float *vals = NULL;
    uint32_t *ids = NULL;
    uint32_t layer;
    int rc = find_extraction(srv, q->extraction, &e);
    if (rc < 0)
        return rc;
    if ((rc = h2t_extraction_layer_find(e, q->layer, &layer)) < 0)
        goto out;
    uint32_t dim = e->layers[layer].dim;
    uint64_t row_bytes = (uint64_t)dim * 4 + 8;
    uint64_t cap =
        FEATURE_PAGE_BYTES < srv->cfg.max_frame ? FEATURE_PAGE_BYTES : srv->cfg.max_frame / 2;
    uint32_t max_rows = (uint32_t)(cap / row_bytes);
    if (max_rows == 0)
        max_rows = 1;
    if (q->limit && q->limit < max_rows)
        max_rows = q->limit;
    uint32_t total, start;
    if (q->n_samples) {
        if (q->first >= q->n_samples) {
            rc = h2t_err_set(H2T_EINVAL, "first %u is past the %zu samples listed", q->first,
                             q->n_samples);
            goto out;
        }
        start = q->first;
        total = (uint32_t)q->n_samples;
    } else {
        if (q->count == 0) {
            rc = h2t_err_set(H2T_EINVAL, "features: give a sample count or a sample list");
            goto out;
        }
        if ((uint64_t)q->first + q->count > e->samples_done) {
            rc = h2t_err_set(
                H2T_ENOTFOUND, "samples [%u, %" PRIu64 ") of extraction '%s': only %u are stored",
                q->first, (uint64_t)q->first + q->count, q->extraction, e->samples_done);
            goto out;
        }
        start = q->first;
        total = q->first + q->count;
    }
    uint32_t n = total - start < max_rows ? total - start : max_rows;
    vals = malloc((size_t)n * dim * sizeof(float) + 1);
    ids = malloc((size_t)n * sizeof(uint32_t) + 1);
    if (!vals || !ids) {
        rc = h2t_err_set(H2T_ENOMEM, "features page of %u rows", n);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++)
        ids[i] = q->n_samples ? q->samples[start + i] : start + i;
    rc = h2t_store_layer_read(srv->st, e->id, layer, ids, 0, n, vals, dim);
    if (rc < 0)
        goto out;
    h2t_msg m = {.id = req->id, .type = H2T_MSG_FEATURES};
    h2t_msg_features *f = &m.u.features;
    f->layer = layer;
    f->dim = dim;
    f->n_samples = n;
    f->samples = ids;
    f->n_values = (size_t)n * dim;
    f->values = vals;
    f->done = start + n >= total;
    f->next_first = f->done ? 0 : start + n;
    rc = reply(&m, frame, len);
out:
    free(vals);
    free(ids);
    h2t_extraction_destroy(e);
    return rc;
}

/* ---------------- tasks ---------------- */

static void fill_task(const h2t_task *t, h2t_msg_task *o)
{
    o->name = t->name;
    o->extraction = t->extraction;
    o->n_class_names = t->n_classes;
    o->class_names = (const char *const *)t->class_names;
    o->shots = t->shots;
    o->n_train = t->n_train;
    o->n_val = t->n_val;
    o->n_test = t->n_test;
    o->created_ms = t->created_ms;
}

static int h_create_task(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_task *t = NULL;
    uint32_t *per = NULL;
    int rc = h2t_srv_task_build(srv->st, &req->u.create_task, srv->cfg.max_selection, &t);
    if (rc < 0)
        return rc;
    if ((rc = h2t_store_task_put(srv->st, t, req->u.create_task.replace)) < 0)
        goto out;
    per = calloc(t->n_classes ? t->n_classes : 1, sizeof(*per));
    if (!per) {
        rc = h2t_err_set(H2T_ENOMEM, "task");
        goto out;
    }
    for (uint32_t i = 0; i < t->n_train; i++)
        per[t->train_labels[i]]++;
    h2t_msg m = {.id = req->id, .type = H2T_MSG_TASK};
    fill_task(t, &m.u.task);
    m.u.task.n_train_per_class = t->n_classes;
    m.u.task.train_per_class = per;
    rc = reply(&m, frame, len);
out:
    free(per);
    h2t_task_destroy(t);
    return rc;
}

static int h_list_tasks(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_task **tv = NULL;
    size_t n = 0;
    int rc = h2t_store_task_list(srv->st, &tv, &n);
    if (rc < 0)
        return rc;
    h2t_msg_task *v = calloc(n ? n : 1, sizeof(*v));
    if (!v) {
        rc = h2t_err_set(H2T_ENOMEM, "task list");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        fill_task(tv[i], &v[i]);
    h2t_msg m = {.id = req->id, .type = H2T_MSG_TASK_LIST};
    m.u.task_list.n = n;
    m.u.task_list.v = v;
    rc = reply(&m, frame, len);
out:
    free(v);
    h2t_task_list_destroy(tv, n);
    return rc;
}

/* ---------------- jobs ---------------- */

void h2t_srv_job_msg(h2t_srv *srv, const h2t_job *j, h2t_msg_job *out, h2t_msg *spec_msg,
                     char *stage_buf, size_t stage_len)
{
    memset(out, 0, sizeof(*out));
    out->id = j->id;
    out->state = (int)j->state;
    out->attempts = j->attempts;
    out->progress = j->progress;
    out->stage = j->stage;
    out->error = j->error;
    out->created_ms = j->created_ms;
    out->started_ms = j->started_ms;
    out->finished_ms = j->finished_ms;
    int state;
    double progress;
    if (j->state <= H2T_JOB_RUNNING &&
        h2t_srv_jobs_live(srv, j->id, &state, &progress, stage_buf, stage_len) == 0) {
        out->state = state;
        out->progress = progress;
        out->stage = stage_buf;
    }
    if (h2t_srv_job_spec(j, spec_msg) == 0) {
        out->has_spec = 1;
        out->spec = spec_msg->u.train;
    } else {
        h2t_err_clear();
    }
}

static int job_reply_ex(h2t_srv *srv, uint64_t req_id, uint64_t id, int reused, uint8_t **frame,
                        size_t *len)
{
    h2t_job *j = NULL;
    int rc = h2t_store_job_get(srv->st, id, &j);
    if (rc < 0)
        return rc;
    h2t_msg spec = {0};
    char stage[64];
    h2t_msg m = {.id = req_id, .type = H2T_MSG_JOB};
    h2t_srv_job_msg(srv, j, &m.u.job, &spec, stage, sizeof(stage));
    m.u.job.reused = reused;
    rc = reply(&m, frame, len);
    h2t_msg_free(&spec);
    h2t_job_destroy(j);
    return rc;
}

static int job_reply(h2t_srv *srv, uint64_t req_id, uint64_t id, uint8_t **frame, size_t *len)
{
    return job_reply_ex(srv, req_id, id, 0, frame, len);
}

/* ---- reuse of finished jobs ----
 * A submit whose spec equals a finished (DONE) job's is answered with that job (reused = 1)
 * unless it asks to retrain. Equal means: the same task name, the same inputs digest (the
 * task's content and the extraction's identity, so a task replaced with other samples, or
 * an extraction made again from another config, does not match), and every option equal
 * after the server resolved the defaults (h2t_train_spec_equal over every member of the
 * h2t_train_spec_resolve of both, the request's thread count included): --lambdas 1e-4,1e-5
 * is the head2toe default grid. The digest also holds the method's results version
 * (h2t_solver_results_version) from 2 on, so a solver change that may change a method's
 * results retrains that method's jobs and no other's; at version 1 it adds nothing, so jobs
 * stored before versions were kept still match. */

static void digest_u32(h2t_sha256 *h, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    h2t_sha256_update(h, b, 4);
}

static void digest_u32s(h2t_sha256 *h, const uint32_t *v, uint32_t n)
{
    digest_u32(h, n);
    for (uint32_t i = 0; i < n; i++)
        digest_u32(h, v[i]);
}

/* The first 8 bytes of SHA-256 over the task's content, its extraction's identity and the
 * method's results version (above 1). */
static int inputs_digest(h2t_srv *srv, const h2t_task *t, uint32_t method, uint64_t *out)
{
    h2t_extraction *e = NULL;
    int rc = h2t_store_extraction_get(srv->st, t->extraction, &e);
    if (rc < 0)
        return rc;
    h2t_sha256 h;
    h2t_sha256_init(&h);
    /* The version stands for the solver's defaults: a stored spec keeps 0 for "default" and
     * is resolved with today's defaults, so when a default changes (version 2: stratified
     * and repeated CV folds) the version changes and no job trained under the old defaults
     * is reused for a request that would now train differently. */
    h2t_sha256_update(&h, "h2tdb inputs 2", 14);
    digest_u32(&h, e->id);
    h2t_sha256_update(&h, e->config_hash, sizeof(e->config_hash));
    digest_u32(&h, t->n_classes);
    for (uint32_t c = 0; c < t->n_classes; c++) {
        size_t n = strlen(t->class_names[c]);
        digest_u32(&h, (uint32_t)n);
        h2t_sha256_update(&h, t->class_names[c], n);
    }
    digest_u32(&h, t->shots);
    digest_u32s(&h, t->train, t->n_train);
    digest_u32s(&h, t->train_labels, t->n_train);
    digest_u32s(&h, t->val, t->n_val);
    digest_u32s(&h, t->val_labels, t->n_val);
    digest_u32s(&h, t->test, t->n_test);
    digest_u32s(&h, t->test_labels, t->n_test);
    uint32_t ver = srv->cfg.results_version ? srv->cfg.results_version(method)
                                            : h2t_solver_results_version(method);
    if (ver > 1) {
        h2t_sha256_update(&h, "results", 7);
        digest_u32(&h, ver);
    }
    uint8_t d[32];
    h2t_sha256_final(&h, d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | d[i];
    *out = v;
    h2t_extraction_destroy(e);
    return 0;
}

/* The newest DONE job with the same task, inputs digest and resolved spec, or 0. */
static int find_reusable(h2t_srv *srv, const h2t_msg_train *t, const h2t_train_spec *ts,
                         uint64_t digest, uint64_t *found)
{
    h2t_job **jv = NULL;
    size_t n = 0;
    int rc = h2t_store_job_list(srv->st, &jv, &n);
    if (rc < 0)
        return rc;
    *found = 0;
    for (size_t i = n; i-- > 0 && !*found;) {
        if (jv[i]->state != H2T_JOB_DONE)
            continue;
        h2t_msg m;
        h2t_train_spec js;
        if (h2t_srv_job_spec(jv[i], &m) < 0) {
            h2t_err_clear();
            continue;
        }
        const h2t_msg_train *o = &m.u.train;
        if (o->inputs_digest == digest && o->task && !strcmp(o->task, t->task) &&
            h2t_train_spec_resolve(&o->spec, &js) == 0 && h2t_train_spec_equal(&js, ts))
            *found = jv[i]->id;
        h2t_err_clear();
        h2t_msg_free(&m);
    }
    h2t_job_list_destroy(jv, n);
    return 0;
}

static int h_train(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    const h2t_msg_train *t = &req->u.train;
    h2t_task *task = NULL;
    uint8_t *spec = NULL;
    size_t spec_len = 0;
    uint64_t id = 0;
    h2t_train_spec ts;
    if (!t->task || !*t->task)
        return h2t_err_set(H2T_EINVAL, "train: no task given (--task NAME)");
    uint64_t digest = 0, prev = 0;
    int rc = h2t_store_task_get(srv->st, t->task, &task);
    if (rc < 0)
        return h2t_err_wrap(rc, "train: task '%s': ", t->task);
    if ((rc = h2t_train_spec_resolve(&t->spec, &ts)) < 0) {
        h2t_task_destroy(task);
        return rc;
    }
    rc = inputs_digest(srv, task, ts.method, &digest);
    h2t_task_destroy(task);
    if (rc < 0)
        return h2t_err_wrap(rc, "train: task '%s': ", t->task);
    if (!t->retrain) {
        if ((rc = find_reusable(srv, t, &ts, digest, &prev)) < 0)
            return rc;
        if (prev)
            return job_reply_ex(srv, req->id, prev, 1, frame, len);
    }
    h2t_msg sm = {.id = 0, .type = H2T_MSG_TRAIN};
    sm.u.train = *t;
    sm.u.train.retrain = 0; /* a request's wish, not part of the job */
    sm.u.train.inputs_digest = digest;
    if ((rc = h2t_proto_encode(&sm, &spec, &spec_len)) < 0)
        return rc;
    /* the stored spec is the payload without the frame header */
    rc = h2t_store_job_create(srv->st, spec + 4, spec_len - 4, &id);
    free(spec);
    if (rc < 0)
        return rc;
    if ((rc = h2t_srv_jobs_enqueue(srv, id)) < 0)
        return rc;
    return job_reply(srv, req->id, id, frame, len);
}

static int h_get_job(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    return job_reply(srv, req->id, req->u.job_ref.job, frame, len);
}

static int h_cancel(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    int rc = h2t_srv_jobs_cancel(srv, req->u.job_ref.job);
    if (rc < 0)
        return rc;
    return job_reply(srv, req->id, req->u.job_ref.job, frame, len);
}

static int h_list_jobs(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_job **jv = NULL;
    size_t n = 0;
    int rc = h2t_store_job_list(srv->st, &jv, &n);
    if (rc < 0)
        return rc;
    h2t_msg_job *v = calloc(n ? n : 1, sizeof(*v));
    h2t_msg *specs = calloc(n ? n : 1, sizeof(*specs));
    char(*stages)[64] = calloc(n ? n : 1, sizeof(*stages));
    if (!v || !specs || !stages) {
        rc = h2t_err_set(H2T_ENOMEM, "job list");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        h2t_srv_job_msg(srv, jv[i], &v[i], &specs[i], stages[i], sizeof(stages[i]));
    h2t_msg m = {.id = req->id, .type = H2T_MSG_JOB_LIST};
    m.u.job_list.n = n;
    m.u.job_list.v = v;
    rc = reply(&m, frame, len);
out:
    for (size_t i = 0; specs && i < n; i++)
        h2t_msg_free(&specs[i]);
    free(specs);
    free(stages);
    free(v);
    h2t_job_list_destroy(jv, n);
    return rc;
}

/* ---------------- results ---------------- */

static const char *method_name(uint32_t m)
{
    return h2t_method_name(m);
}

/* The finished job's decoded result. Errors: H2T_ENOTFOUND, H2T_ESTATE (not DONE). */
static int load_result(h2t_srv *srv, uint64_t id, h2t_job **job, h2t_result **res, void **blob,
                       size_t *blob_len)
{
    h2t_job *j = NULL;
    int rc = h2t_store_job_get(srv->st, id, &j);
    if (rc < 0)
        return rc;
    if (j->state != H2T_JOB_DONE) {
        static const char *const st[] = {"queued", "running", "done", "failed", "cancelled"};
        rc = h2t_err_set(H2T_ESTATE, "job %" PRIu64 " has no result: it is %s%s%s", id,
                         j->state < 5 ? st[j->state] : "?", j->error[0] ? ": " : "", j->error);
        h2t_job_destroy(j);
        return rc;
    }
    if ((rc = h2t_store_result_get(srv->st, id, blob, blob_len)) < 0 ||
        (rc = h2t_result_decode(*blob, *blob_len, res)) < 0) {
        free(*blob);
        *blob = NULL;
        h2t_job_destroy(j);
        return rc;
    }
    *job = j;
    return 0;
}

static int h_get_result(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    h2t_job *j = NULL;
    h2t_result *r = NULL;
    void *blob = NULL;
    size_t blob_len = 0;
    char *json = NULL;
    void *onnx = NULL;
    int rc = load_result(srv, req->u.get_result.job, &j, &r, &blob, &blob_len);
    if (rc < 0)
        return rc;
    char summary[2048];
    static const char *const opt[] = {"fast", "adam"};
    snprintf(summary, sizeof(summary),
             "job %" PRIu64 ": %s (%s optimiser), seed %" PRIu64 "\n"
             "classes %u, train %u, test %u samples\n"
             "chosen: lambda %g, keep %g -> %u of %" PRIu64 " features from %u layer(s)\n"
             "cross-validation: %u %s folds x %u repeat(s)%s, best mean accuracy %.4f\n"
             "test accuracy: %.4f (%u/%u)\n"
             "final head: %s after %u iterations (gradient %.2e)\n"
             "time: load %.2fs, cv %.2fs, final %.2fs, total %.2fs",
             j->id, method_name(r->method), r->optimizer < 2 ? opt[r->optimizer] : "?", r->seed,
             r->n_classes, r->n_train, r->n_test, r->lambda, r->keep, r->n_kept, r->total_dim,
             r->n_layers, r->folds,
             r->fold_kind == H2T_FOLDS_STRATIFIED ? "stratified" : "contiguous", r->cv_repeats,
             r->one_se ? ", one-SE rule" : "", r->val_acc, r->test_acc, r->test_correct, r->n_test,
             r->final_fit.converged ? "converged" : "NOT converged", r->final_fit.iters,
             r->final_fit.grad_norm, r->t_load, r->t_cv, r->t_final, r->t_total);
    /* what the newer methods chose */
    size_t sl = strlen(summary);
    if (r->method == H2T_METHOD_KNN)
        snprintf(summary + sl, sizeof(summary) - sl, "\nknn: k %u over %u training rows", r->knn_k,
                 r->n_protos);
    else if (r->method == H2T_METHOD_HEAD2TOE)
        snprintf(summary + sl, sizeof(summary) - sl, "\nhead2toe: %s scoring, final head L2 %g%s",
                 r->select_group == H2T_SELECT_LAYER ? "whole-layer" : "per-feature", r->final_l2,
                 r->final_l2s ? " (chosen by CV)" : "");
    else if (r->method == H2T_METHOD_LAYER && r->n_layers)
        snprintf(summary + sl, sizeof(summary) - sl, "\nlayer: the best probe is layer %u (%s)",
                 r->layer_ids[0], r->layer_names[0]);
    sl = strlen(summary);
    if (r->n_auto) {
        sl += (size_t)snprintf(summary + sl, sizeof(summary) - sl,
                               "\nauto chose %s; CV:", method_name(r->method));
        for (uint32_t q = 0; q < r->n_auto && sl < sizeof(summary); q++)
            sl += (size_t)snprintf(summary + sl, sizeof(summary) - sl, " %s %.4f+-%.4f",
                                   method_name(r->auto_methods[q]), r->auto_acc[q], r->auto_se[q]);
    }
    json = h2t_result_json(r);
    if (!json) {
        rc = h2t_err_set(H2T_ENOMEM, "result json");
        goto out;
    }
    h2t_msg m = {.id = req->id, .type = H2T_MSG_RESULT};
    h2t_msg_result *o = &m.u.result;
    o->job = j->id;
    o->summary = summary;
    o->val_accuracy = r->val_acc;
    o->test_accuracy = r->test_acc;
    o->n_kept = r->n_kept;
    o->n_classes = r->n_classes;
    o->json = json;
    if (req->u.get_result.include_head) {
        o->blob = blob;
        o->blob_len = blob_len;
    }
    if (req->u.get_result.include_onnx) {
        if ((rc = h2t_srv_classifier_onnx(srv, j->id, &onnx, &o->onnx_len)) < 0)
            goto out;
        o->onnx = onnx;
    }
    rc = reply(&m, frame, len);
out:
    free(onnx);
    free(json);
    free(blob);
    h2t_result_destroy(r);
    h2t_job_destroy(j);
    return rc;
}

static int h_predict(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    const h2t_msg_predict_req *q = &req->u.predict;
    h2t_job *j = NULL;
    h2t_result *r = NULL;
    void *blob = NULL;
    size_t blob_len = 0;
    h2t_msg spec = {0};
    h2t_task *task = NULL;
    h2t_extraction *e = NULL;
    h2t_source *src = NULL;
    uint32_t *ids = NULL, *pred = NULL, *labels = NULL, *lab_of = NULL;
    uint32_t n = 0;
    float *x = NULL, *probs = NULL;
    int rc = load_result(srv, q->job, &j, &r, &blob, &blob_len);
    if (rc < 0)
        return rc;
    if ((rc = h2t_srv_job_spec(j, &spec)) < 0)
        goto out;
    if ((rc = h2t_store_task_get(srv->st, spec.u.train.task, &task)) < 0)
        goto out;
    if ((rc = h2t_store_extraction_get(srv->st, task->extraction, &e)) < 0)
        goto out;
    if (q->n_ids) {
        if (q->n_ids > srv->cfg.max_selection) {
            rc = h2t_err_set(H2T_ETOOBIG,
                             "predict: %zu sample ids, more than %u (the server's limit; start it "
                             "with h2tdb serve --max-selection N to change it)",
                             (size_t)q->n_ids, srv->cfg.max_selection);
            goto out;
        }
        n = (uint32_t)q->n_ids;
        ids = malloc(n * sizeof(*ids));
        if (!ids) {
            rc = h2t_err_set(H2T_ENOMEM, "predict");
            goto out;
        }
        memcpy(ids, q->ids, n * sizeof(*ids));
    } else {
        if ((rc = h2t_store_source_get(srv->st, e->source, &src)) < 0)
            goto out;
        uint32_t avail = e->samples_done < src->n_samples ? e->samples_done : src->n_samples;
        if ((rc = h2t_srv_sel_resolve(q->samples && *q->samples ? q->samples : "test", "samples",
                                      src->split, avail, srv->cfg.max_selection, &ids, &n)) < 0)
            goto out;
    }
    uint64_t D = 0;
    for (uint32_t l = 0; l < r->n_layers; l++)
        D += r->layer_dims[l];
    if (n == 0) {
        rc = h2t_err_set(H2T_EINVAL, "predict: no samples");
        goto out;
    }
    /* the reply goes out in one frame, which the server queues for the client at most
     * cfg.max_pending_write bytes of: a bigger one is refused before any work (per sample at
     * most three 5-byte varints, id, class and label, and a float per class) */
    uint64_t reply_max = (uint64_t)n * (15 + 4 * (uint64_t)r->n_classes) + 65536;
    if (reply_max > srv->cfg.max_pending_write) {
        rc = h2t_err_set(H2T_ETOOBIG,
                         "predict: %u samples x %u classes make a reply of up to %" PRIu64
                         " bytes, more than the %zu bytes the server queues for one client; "
                         "ask for fewer samples at a time (--samples)",
                         n, r->n_classes, reply_max, srv->cfg.max_pending_write);
        goto out;
    }
    /* feature rows in chunks of at most cfg.predict_mem_bytes: memory does not grow with the
     * number of samples asked for */
    uint64_t row = D * sizeof(float);
    uint64_t chunk = row ? srv->cfg.predict_mem_bytes / row : n;
    chunk = chunk < 1 ? 1 : chunk > n ? n : chunk;
    x = malloc((size_t)(row ? chunk * row : 1));
    pred = calloc(n, sizeof(*pred));
    labels = malloc(n * sizeof(*labels));
    probs = malloc((size_t)n * r->n_classes * sizeof(*probs));
    lab_of = malloc((size_t)(e->n_samples ? e->n_samples : 1) * sizeof(*lab_of));
    if (!x || !pred || !labels || !probs || !lab_of) {
        rc = h2t_err_set(H2T_ENOMEM, "predict: %u samples x %" PRIu64 " features", n, D);
        goto out;
    }
    for (uint32_t done = 0; done < n; done += (uint32_t)chunk) {
        uint32_t k = n - done < chunk ? n - done : (uint32_t)chunk;
        uint64_t off = 0;
        for (uint32_t l = 0; l < r->n_layers; l++) {
            if ((rc = h2t_store_layer_read(srv->st, e->id, r->layer_ids[l], ids + done, 0, k,
                                           x + off, D)) < 0)
                goto out;
            off += r->layer_dims[l];
        }
        if ((rc = h2t_result_proba(r, x, k, pred + done, probs + (size_t)done * r->n_classes)) < 0)
            goto out;
    }
    /* the task's label of each sample, when the task lists it (test, then train, then val) */
    for (uint32_t i = 0; i < e->n_samples; i++)
        lab_of[i] = UINT32_MAX;
    const uint32_t *lists[3] = {task->val, task->train, task->test};
    const uint32_t *lab[3] = {task->val_labels, task->train_labels, task->test_labels};
    uint32_t cnt[3] = {task->n_val, task->n_train, task->n_test};
    for (int k = 0; k < 3; k++)
        for (uint32_t s = cnt[k]; s-- > 0;) /* the first listing wins */
            if (lists[k][s] < e->n_samples)
                lab_of[lists[k][s]] = lab[k][s];
    uint32_t labelled = 0, correct = 0;
    for (uint32_t i = 0; i < n; i++) {
        labels[i] = ids[i] < e->n_samples ? lab_of[ids[i]] : UINT32_MAX;
        if (labels[i] != UINT32_MAX) {
            labelled++;
            correct += labels[i] == pred[i];
        }
    }
    h2t_msg m = {.id = req->id, .type = H2T_MSG_PREDICTION};
    h2t_msg_prediction *p = &m.u.prediction;
    p->n_samples = p->n_predicted = p->n_labels = n;
    p->samples = ids;
    p->predicted = pred;
    p->labels = labels;
    p->n_class_names = task->n_classes;
    p->class_names = (const char *const *)task->class_names;
    p->accuracy = labelled ? (double)correct / labelled : 0;
    p->n_probs = (size_t)n * r->n_classes;
    p->probs = probs;
    rc = reply(&m, frame, len);
out:
    free(probs);
    free(x);
    free(ids);
    free(pred);
    free(labels);
    free(lab_of);
    h2t_source_destroy(src);
    h2t_extraction_destroy(e);
    h2t_task_destroy(task);
    h2t_msg_free(&spec);
    free(blob);
    h2t_result_destroy(r);
    h2t_job_destroy(j);
    return rc;
}

/* ---------------- the table ---------------- */

static const srv_route routes[H2T_MSG_MAX] = {
    [H2T_MSG_HEALTH_REQ] = {"health", h_health, 0},
    [H2T_MSG_LIST_EXTRACTIONS] = {"list_extractions", h_list_extractions, 1},
    [H2T_MSG_DESCRIBE_EXTRACTION] = {"describe_extraction", h_describe, 1},
    [H2T_MSG_LAYERS_REQ] = {"layers", h_layers, 1},
    [H2T_MSG_STATS_REQ] = {"stats", h_stats, SRV_OFF_LOOP_IF_BIG}, /* stats_on_loop */
    [H2T_MSG_FEATURES_REQ] = {"features", h_features, 1},
    [H2T_MSG_CREATE_TASK] = {"create_task", h_create_task, 1},
    [H2T_MSG_LIST_TASKS] = {"list_tasks", h_list_tasks, 1},
    [H2T_MSG_TRAIN] = {"train", h_train, 1},
    [H2T_MSG_GET_JOB] = {"get_job", h_get_job, 0},
    [H2T_MSG_WATCH_JOB] = {"watch_job", h_get_job, 0}, /* server.c keeps the watch open */
    [H2T_MSG_CANCEL_JOB] = {"cancel_job", h_cancel, 1},
    [H2T_MSG_LIST_JOBS] = {"list_jobs", h_list_jobs, 1},
    [H2T_MSG_GET_RESULT] = {"get_result", h_get_result, 1},
    [H2T_MSG_PREDICT] = {"predict", h_predict, 1},
    [H2T_MSG_CLASSIFY] = {"classify", h2t_srv_classify, 1},
};

const srv_route *h2t_srv_route(int type)
{
    if (type <= 0 || type >= H2T_MSG_MAX || !routes[type].fn)
        return NULL;
    return &routes[type];
}
