/*
 * proto/proto.c - C-level messages <-> protobuf-c Envelope, frames and the frame reader.
 * Encoding builds the generated structs over the caller's (borrowed) data; decoding keeps the
 * unpacked Envelope alive and points the C structs into it, so strings and numeric arrays are
 * never copied; only arrays of sub-messages get C arrays of their own.
 */
#include "proto/proto.h"

#include "common/err.h"
#include "common/util.h"
#include "proto/h2tdb.pb-c.h"

#include <stdlib.h>
#include <string.h>

_Static_assert((int)H2T_MSG_PREDICTION == (int)H2TDB__ENVELOPE__BODY_PREDICTION, "oneof numbers");
_Static_assert((int)H2T_MSG_CLASSIFICATION == (int)H2TDB__ENVELOPE__BODY_CLASSIFICATION,
               "oneof numbers");
_Static_assert((int)H2T_MSG_ERROR == (int)H2TDB__ENVELOPE__BODY_ERROR, "oneof numbers");
_Static_assert((int)H2T_MSG_JOB == (int)H2TDB__ENVELOPE__BODY_JOB, "oneof numbers");

/* ---- a list of allocations freed together ---- */
typedef struct allocs {
    void **p;
    size_t n, cap;
    int failed;
    int err; /* a code other than H2T_ENOMEM that made it fail (detail set) */
} allocs;

static void *al_calloc(allocs *a, size_t n, size_t size)
{
    if (a->failed)
        return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        void **np = realloc(a->p, cap * sizeof(*np));
        if (!np) {
            a->failed = 1;
            return NULL;
        }
        a->p = np;
        a->cap = cap;
    }
    void *q = calloc(n ? n : 1, size ? size : 1);
    if (!q) {
        a->failed = 1;
        return NULL;
    }
    a->p[a->n++] = q;
    return q;
}

static void al_free(allocs *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->p[i]);
    free(a->p);
    memset(a, 0, sizeof(*a));
}

/* protobuf-c takes non-const pointers but never writes through them when packing */
static char *S(const char *s)
{
    return (char *)(s ? s : "");
}
#define MUT(T, p) ((T *)(uintptr_t)(p))

/* ======================= encode: C -> protobuf-c ======================= */

static H2tdb__Layer *enc_layers(allocs *a, const h2t_msg_layer *v, size_t n, H2tdb__Layer ***out)
{
    H2tdb__Layer *m = al_calloc(a, n, sizeof(*m));
    H2tdb__Layer **pp = al_calloc(a, n, sizeof(*pp));
    if (!m || !pp)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        h2tdb__layer__init(&m[i]);
        m[i].name = S(v[i].name);
        m[i].op = S(v[i].op);
        m[i].n_shape = v[i].n_shape;
        m[i].shape = MUT(uint32_t, v[i].shape);
        m[i].dim = v[i].dim;
        m[i].offset = v[i].offset;
        pp[i] = &m[i];
    }
    *out = pp;
    return m;
}

static H2tdb__Extraction *enc_extraction(allocs *a, const h2t_msg_extraction *e)
{
    H2tdb__Extraction *m = al_calloc(a, 1, sizeof(*m));
    if (!m)
        return NULL;
    h2tdb__extraction__init(m);
    m->id = e->id;
    m->name = S(e->name);
    m->source = S(e->source);
    m->model = S(e->model);
    m->n_samples = e->n_samples;
    m->samples_done = e->samples_done;
    m->state = e->state;
    m->total_dim = e->total_dim;
    m->target_size = e->target_size;
    m->dtype = e->dtype;
    m->config = S(e->config);
    m->layer_count = e->n_layers;
    m->n_class_names = e->n_class_names;
    m->class_names = MUT(char *, e->class_names);
    m->n_train = e->n_train;
    m->n_test = e->n_test;
    if (e->n_layer_info) {
        if (!enc_layers(a, e->layers, e->n_layer_info, &m->layers))
            return NULL;
        m->n_layers = e->n_layer_info;
    }
    return m;
}

static H2tdb__Task *enc_task(allocs *a, const h2t_msg_task *t)
{
    H2tdb__Task *m = al_calloc(a, 1, sizeof(*m));
    if (!m)
        return NULL;
    h2tdb__task__init(m);
    m->name = S(t->name);
    m->extraction = t->extraction;
    m->n_class_names = t->n_class_names;
    m->class_names = MUT(char *, t->class_names);
    m->shots = t->shots;
    m->n_train = t->n_train;
    m->n_val = t->n_val;
    m->n_test = t->n_test;
    m->created_ms = t->created_ms;
    m->n_train_per_class = t->n_train_per_class;
    m->train_per_class = MUT(uint32_t, t->train_per_class);
    return m;
}

/* ---- the train spec <-> TrainRequest, row by row (common/train_spec.h) ---- */

/* The TrainRequest field of a row, or NULL when the row has no wire name or the field is
 * missing or of another type (h2t_proto_train_spec_check says which). */
static const ProtobufCFieldDescriptor *spec_wire_field(const h2t_spec_field *f)
{
    if (!f->wire)
        return NULL;
    const ProtobufCFieldDescriptor *d =
        protobuf_c_message_descriptor_get_field_by_name(&h2tdb__train_request__descriptor, f->wire);
    if (!d)
        return NULL;
    int repeated = d->label == PROTOBUF_C_LABEL_REPEATED;
    switch (f->type) {
    case H2T_SPEC_U32:
        return !repeated && (d->type == PROTOBUF_C_TYPE_UINT32 || d->type == PROTOBUF_C_TYPE_ENUM)
                   ? d
                   : NULL;
    case H2T_SPEC_U64:
        return !repeated &&
                       (d->type == PROTOBUF_C_TYPE_UINT64 || d->type == PROTOBUF_C_TYPE_FIXED64)
                   ? d
                   : NULL;
    case H2T_SPEC_F64:
        return !repeated && d->type == PROTOBUF_C_TYPE_DOUBLE ? d : NULL;
    case H2T_SPEC_GRID:
        return repeated && d->type == PROTOBUF_C_TYPE_DOUBLE ? d : NULL;
    case H2T_SPEC_LIST:
        return repeated && d->type == PROTOBUF_C_TYPE_UINT32 ? d : NULL;
    default:
        return NULL;
    }
}

int h2t_proto_train_spec_check(void)
{
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        if (f->wire && !spec_wire_field(f))
            return h2t_err_set(H2T_EPROTO,
                               "train spec member %s: no TrainRequest.%s of a matching type",
                               f->name, f->wire);
    }
    const ProtobufCMessageDescriptor *md = &h2tdb__train_request__descriptor;
    for (unsigned k = 0; k < md->n_fields; k++) {
        const char *name = md->fields[k].name;
        if (!strcmp(name, "task") || !strcmp(name, "retrain") || !strcmp(name, "inputs_digest"))
            continue;
        size_t i = 0;
        while (i < h2t_train_spec_n_fields &&
               !(h2t_train_spec_fields[i].wire && !strcmp(h2t_train_spec_fields[i].wire, name)))
            i++;
        if (i == h2t_train_spec_n_fields)
            return h2t_err_set(H2T_EPROTO,
                               "TrainRequest.%s: no member of h2t_train_spec carries it "
                               "(common/train_spec.c)",
                               name);
    }
    return 0;
}

/* Point m's fields at s's members (BORROWED by m). Errors: H2T_EPROTO (a row that does not
 * match its field), H2T_EINVAL (a grid count over its capacity). */
static int spec_to_wire(const h2t_train_spec *s, H2tdb__TrainRequest *m)
{
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        if (!f->wire)
            continue;
        const ProtobufCFieldDescriptor *d = spec_wire_field(f);
        if (!d)
            return h2t_proto_train_spec_check();
        const char *src = (const char *)s + f->off;
        char *dst = (char *)m + d->offset;
        if (f->type == H2T_SPEC_GRID || f->type == H2T_SPEC_LIST) {
            uint32_t n;
            memcpy(&n, (const char *)s + f->count_off, sizeof(n));
            if (f->type == H2T_SPEC_GRID && n > H2T_SPEC_MAX_GRID)
                return h2t_err_set(H2T_EINVAL, "train spec %s: %u values, at most %d", f->name, n,
                                   H2T_SPEC_MAX_GRID);
            size_t count = n;
            const void *p = f->type == H2T_SPEC_GRID ? (const void *)src : NULL;
            if (f->type == H2T_SPEC_LIST)
                memcpy(&p, src, sizeof(p));
            if (!p)
                count = 0;
            memcpy((char *)m + d->quantifier_offset, &count, sizeof(count));
            memcpy(dst, &p, sizeof(p)); /* protobuf-c's pointer, never written through */
        } else {
            memcpy(dst, src, f->size); /* uint32 / enum (int), 64-bit: the same sizes */
        }
    }
    return 0;
}

/* Copy m's fields into s's members (members without a wire field are left as they are).
 * Errors: H2T_EPROTO (a grid longer than its capacity, or a row that does not match). */
static int spec_from_wire(const H2tdb__TrainRequest *m, h2t_train_spec *s)
{
    for (size_t i = 0; i < h2t_train_spec_n_fields; i++) {
        const h2t_spec_field *f = &h2t_train_spec_fields[i];
        if (!f->wire)
            continue;
        const ProtobufCFieldDescriptor *d = spec_wire_field(f);
        if (!d)
            return h2t_proto_train_spec_check();
        const char *src = (const char *)m + d->offset;
        char *dst = (char *)s + f->off;
        if (f->type == H2T_SPEC_GRID || f->type == H2T_SPEC_LIST) {
            size_t count;
            const void *p;
            memcpy(&count, (const char *)m + d->quantifier_offset, sizeof(count));
            memcpy(&p, src, sizeof(p));
            if (f->type == H2T_SPEC_GRID && count > H2T_SPEC_MAX_GRID)
                return h2t_err_set(H2T_EPROTO, "TrainRequest.%s: %zu values, at most %d", f->wire,
                                   count, H2T_SPEC_MAX_GRID);
            if (count > UINT32_MAX)
                return h2t_err_set(H2T_EPROTO, "TrainRequest.%s: %zu values", f->wire, count);
            uint32_t n = (uint32_t)count;
            memcpy((char *)s + f->count_off, &n, sizeof(n));
            if (f->type == H2T_SPEC_GRID) {
                if (n)
                    memcpy(dst, p, n * sizeof(double));
            } else {
                memcpy(dst, &p, sizeof(p)); /* points into the decoded message */
            }
        } else {
            memcpy(dst, src, f->size);
        }
    }
    return 0;
}

static H2tdb__TrainRequest *enc_train(allocs *a, const h2t_msg_train *t)
{
    H2tdb__TrainRequest *m = al_calloc(a, 1, sizeof(*m));
    if (!m)
        return NULL;
    h2tdb__train_request__init(m);
    m->task = S(t->task);
    int rc = spec_to_wire(&t->spec, m);
    if (rc < 0) {
        a->failed = 1;
        a->err = rc;
        return NULL;
    }
    m->retrain = t->retrain != 0;
    m->inputs_digest = t->inputs_digest;
    return m;
}

static H2tdb__Job *enc_job(allocs *a, const h2t_msg_job *j)
{
    H2tdb__Job *m = al_calloc(a, 1, sizeof(*m));
    if (!m)
        return NULL;
    h2tdb__job__init(m);
    m->id = j->id;
    m->state = (H2tdb__JobState)j->state;
    m->attempts = j->attempts;
    m->progress = j->progress;
    m->stage = S(j->stage);
    m->error = S(j->error);
    m->created_ms = j->created_ms;
    m->started_ms = j->started_ms;
    m->finished_ms = j->finished_ms;
    if (j->has_spec && !(m->spec = enc_train(a, &j->spec)))
        return NULL;
    m->reused = j->reused != 0;
    return m;
}

static H2tdb__LayerStats *enc_layer_stats(allocs *a, const h2t_msg_layer_stats *s)
{
    H2tdb__LayerStats *m = al_calloc(a, 1, sizeof(*m));
    if (!m)
        return NULL;
    h2tdb__layer_stats__init(m);
    m->layer = S(s->layer);
    m->dim = s->dim;
    m->count = s->count;
    m->norm_mean = s->norm_mean;
    m->norm_min = s->norm_min;
    m->norm_max = s->norm_max;
    m->mean_of_means = s->mean_of_means;
    m->mean_of_vars = s->mean_of_vars;
    m->min = s->min;
    m->max = s->max;
    m->n_mean = s->n_mean;
    m->mean = MUT(double, s->mean);
    m->n_var = s->n_var;
    m->var = MUT(double, s->var);
    m->n_fmin = s->n_fmin;
    m->fmin = MUT(float, s->fmin);
    m->n_fmax = s->n_fmax;
    m->fmax = MUT(float, s->fmax);
    return m;
}

/* Allocate a one-field message struct, init it and hang it on the envelope. */
#define ONE(field, T, init)                                                                        \
    do {                                                                                           \
        T *x_ = al_calloc(a, 1, sizeof(T));                                                        \
        if (!x_)                                                                                   \
            return H2T_ENOMEM;                                                                     \
        init(x_);                                                                                  \
        env->field = x_;                                                                           \
    } while (0)

static int enc_body(allocs *a, const h2t_msg *msg, H2tdb__Envelope *env)
{
    const __typeof__(msg->u) *u = &msg->u;
    switch (msg->type) {
    case H2T_MSG_ERROR:
        ONE(error, H2tdb__Error, h2tdb__error__init);
        env->error->code = u->error.code;
        env->error->message = S(u->error.message);
        break;
    case H2T_MSG_AUTH:
        ONE(auth, H2tdb__Auth, h2tdb__auth__init);
        env->auth->token.data = MUT(uint8_t, u->auth.token);
        env->auth->token.len = u->auth.token_len;
        break;
    case H2T_MSG_AUTH_OK:
        ONE(auth_ok, H2tdb__AuthOk, h2tdb__auth_ok__init);
        break;
    case H2T_MSG_HEALTH_REQ:
        ONE(health_req, H2tdb__HealthRequest, h2tdb__health_request__init);
        break;
    case H2T_MSG_HEALTH: {
        ONE(health, H2tdb__Health, h2tdb__health__init);
        H2tdb__Health *h = env->health;
        h->version = S(u->health.version);
        h->uptime_ms = u->health.uptime_ms;
        h->connections = u->health.connections;
        h->jobs_queued = u->health.jobs_queued;
        h->jobs_running = u->health.jobs_running;
        h->workers = u->health.workers;
        h->requests = u->health.requests;
        h->design_loads = u->health.design_loads;
        h->design_hits = u->health.design_hits;
        h->design_bytes = u->health.design_bytes;
        h->designs = u->health.designs;
        break;
    }
    case H2T_MSG_LIST_EXTRACTIONS:
        ONE(list_extractions, H2tdb__ListExtractionsRequest, h2tdb__list_extractions_request__init);
        break;
    case H2T_MSG_EXTRACTION_LIST: {
        ONE(extraction_list, H2tdb__ExtractionList, h2tdb__extraction_list__init);
        size_t n = u->extraction_list.n;
        H2tdb__Extraction **pp = al_calloc(a, n, sizeof(*pp));
        if (!pp)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (!(pp[i] = enc_extraction(a, &u->extraction_list.v[i])))
                return H2T_ENOMEM;
        env->extraction_list->n_extractions = n;
        env->extraction_list->extractions = pp;
        break;
    }
    case H2T_MSG_DESCRIBE_EXTRACTION:
        ONE(describe_extraction, H2tdb__DescribeExtractionRequest,
            h2tdb__describe_extraction_request__init);
        env->describe_extraction->extraction = S(u->ext_ref.extraction);
        break;
    case H2T_MSG_EXTRACTION:
        if (!(env->extraction = enc_extraction(a, &u->extraction)))
            return H2T_ENOMEM;
        break;
    case H2T_MSG_LAYERS_REQ:
        ONE(layers_req, H2tdb__LayersRequest, h2tdb__layers_request__init);
        env->layers_req->extraction = S(u->ext_ref.extraction);
        break;
    case H2T_MSG_LAYER_TABLE:
        ONE(layer_table, H2tdb__LayerTable, h2tdb__layer_table__init);
        env->layer_table->extraction = u->layer_table.extraction;
        if (u->layer_table.n_layers) {
            if (!enc_layers(a, u->layer_table.layers, u->layer_table.n_layers,
                            &env->layer_table->layers))
                return H2T_ENOMEM;
            env->layer_table->n_layers = u->layer_table.n_layers;
        }
        break;
    case H2T_MSG_STATS_REQ:
        ONE(stats_req, H2tdb__StatsRequest, h2tdb__stats_request__init);
        env->stats_req->extraction = S(u->stats_req.extraction);
        env->stats_req->layer = S(u->stats_req.layer);
        env->stats_req->per_feature = u->stats_req.per_feature != 0;
        break;
    case H2T_MSG_STATS: {
        ONE(stats, H2tdb__Stats, h2tdb__stats__init);
        size_t n = u->stats.n_layers;
        H2tdb__LayerStats **pp = al_calloc(a, n, sizeof(*pp));
        if (!pp)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (!(pp[i] = enc_layer_stats(a, &u->stats.layers[i])))
                return H2T_ENOMEM;
        env->stats->extraction = u->stats.extraction;
        env->stats->n_layers = n;
        env->stats->layers = pp;
        break;
    }
    case H2T_MSG_FEATURES_REQ: {
        ONE(features_req, H2tdb__FeaturesRequest, h2tdb__features_request__init);
        H2tdb__FeaturesRequest *f = env->features_req;
        f->extraction = S(u->features_req.extraction);
        f->layer = S(u->features_req.layer);
        f->first = u->features_req.first;
        f->count = u->features_req.count;
        f->n_samples = u->features_req.n_samples;
        f->samples = MUT(uint32_t, u->features_req.samples);
        f->limit = u->features_req.limit;
        break;
    }
    case H2T_MSG_FEATURES: {
        ONE(features, H2tdb__Features, h2tdb__features__init);
        H2tdb__Features *f = env->features;
        f->layer = u->features.layer;
        f->dim = u->features.dim;
        f->n_samples = u->features.n_samples;
        f->samples = MUT(uint32_t, u->features.samples);
        f->n_values = u->features.n_values;
        f->values = MUT(float, u->features.values);
        f->next_first = u->features.next_first;
        f->done = u->features.done != 0;
        break;
    }
    case H2T_MSG_CREATE_TASK: {
        ONE(create_task, H2tdb__CreateTaskRequest, h2tdb__create_task_request__init);
        const h2t_msg_task_spec *t = &u->create_task;
        H2tdb__TaskSpec *s = al_calloc(a, 1, sizeof(*s));
        size_t n = t->n_map;
        H2tdb__MapEntry *me = al_calloc(a, n, sizeof(*me));
        H2tdb__MapEntry **pp = al_calloc(a, n, sizeof(*pp));
        if (!s || !me || !pp)
            return H2T_ENOMEM;
        h2tdb__task_spec__init(s);
        s->name = S(t->name);
        s->extraction = S(t->extraction);
        s->train = S(t->train);
        s->test = S(t->test);
        s->val = S(t->val);
        for (size_t i = 0; i < n; i++) {
            h2tdb__map_entry__init(&me[i]);
            me[i].from = S(t->map[i].from);
            me[i].to = S(t->map[i].to);
            pp[i] = &me[i];
        }
        s->n_map = n;
        s->map = pp;
        s->shots = t->shots;
        s->replace = t->replace != 0;
        env->create_task->spec = s;
        break;
    }
    case H2T_MSG_LIST_TASKS:
        ONE(list_tasks, H2tdb__ListTasksRequest, h2tdb__list_tasks_request__init);
        break;
    case H2T_MSG_TASK:
        if (!(env->task = enc_task(a, &u->task)))
            return H2T_ENOMEM;
        break;
    case H2T_MSG_TASK_LIST: {
        ONE(task_list, H2tdb__TaskList, h2tdb__task_list__init);
        size_t n = u->task_list.n;
        H2tdb__Task **pp = al_calloc(a, n, sizeof(*pp));
        if (!pp)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (!(pp[i] = enc_task(a, &u->task_list.v[i])))
                return H2T_ENOMEM;
        env->task_list->n_tasks = n;
        env->task_list->tasks = pp;
        break;
    }
    case H2T_MSG_TRAIN:
        if (!(env->train = enc_train(a, &u->train)))
            return H2T_ENOMEM;
        break;
    case H2T_MSG_GET_JOB:
        ONE(get_job, H2tdb__GetJobRequest, h2tdb__get_job_request__init);
        env->get_job->job = u->job_ref.job;
        break;
    case H2T_MSG_WATCH_JOB:
        ONE(watch_job, H2tdb__WatchJobRequest, h2tdb__watch_job_request__init);
        env->watch_job->job = u->job_ref.job;
        break;
    case H2T_MSG_CANCEL_JOB:
        ONE(cancel_job, H2tdb__CancelJobRequest, h2tdb__cancel_job_request__init);
        env->cancel_job->job = u->job_ref.job;
        break;
    case H2T_MSG_LIST_JOBS:
        ONE(list_jobs, H2tdb__ListJobsRequest, h2tdb__list_jobs_request__init);
        break;
    case H2T_MSG_JOB:
        if (!(env->job = enc_job(a, &u->job)))
            return H2T_ENOMEM;
        break;
    case H2T_MSG_JOB_LIST: {
        ONE(job_list, H2tdb__JobList, h2tdb__job_list__init);
        size_t n = u->job_list.n;
        H2tdb__Job **pp = al_calloc(a, n, sizeof(*pp));
        if (!pp)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (!(pp[i] = enc_job(a, &u->job_list.v[i])))
                return H2T_ENOMEM;
        env->job_list->n_jobs = n;
        env->job_list->jobs = pp;
        break;
    }
    case H2T_MSG_GET_RESULT:
        ONE(get_result, H2tdb__GetResultRequest, h2tdb__get_result_request__init);
        env->get_result->job = u->get_result.job;
        env->get_result->include_head = u->get_result.include_head != 0;
        env->get_result->include_onnx = u->get_result.include_onnx != 0;
        break;
    case H2T_MSG_RESULT: {
        ONE(result, H2tdb__Result, h2tdb__result__init);
        H2tdb__Result *r = env->result;
        r->job = u->result.job;
        r->summary = S(u->result.summary);
        r->val_accuracy = u->result.val_accuracy;
        r->test_accuracy = u->result.test_accuracy;
        r->n_kept = u->result.n_kept;
        r->n_classes = u->result.n_classes;
        r->blob.data = MUT(uint8_t, u->result.blob);
        r->blob.len = u->result.blob_len;
        r->json = S(u->result.json);
        r->onnx.data = MUT(uint8_t, u->result.onnx);
        r->onnx.len = u->result.onnx_len;
        break;
    }
    case H2T_MSG_PREDICT: {
        ONE(predict, H2tdb__PredictRequest, h2tdb__predict_request__init);
        H2tdb__PredictRequest *p = env->predict;
        p->job = u->predict.job;
        p->samples = S(u->predict.samples);
        p->n_ids = u->predict.n_ids;
        p->ids = MUT(uint32_t, u->predict.ids);
        break;
    }
    case H2T_MSG_PREDICTION: {
        ONE(prediction, H2tdb__Prediction, h2tdb__prediction__init);
        H2tdb__Prediction *p = env->prediction;
        p->n_samples = u->prediction.n_samples;
        p->samples = MUT(uint32_t, u->prediction.samples);
        p->n_predicted = u->prediction.n_predicted;
        p->predicted = MUT(uint32_t, u->prediction.predicted);
        p->n_labels = u->prediction.n_labels;
        p->labels = MUT(uint32_t, u->prediction.labels);
        p->n_class_names = u->prediction.n_class_names;
        p->class_names = MUT(char *, u->prediction.class_names);
        p->accuracy = u->prediction.accuracy;
        p->n_probs = u->prediction.n_probs;
        p->probs = MUT(float, u->prediction.probs);
        break;
    }
    case H2T_MSG_CLASSIFY: {
        ONE(classify, H2tdb__ClassifyRequest, h2tdb__classify_request__init);
        H2tdb__ClassifyRequest *p = env->classify;
        const h2t_msg_classify_req *q = &u->classify;
        p->job = q->job;
        if (q->n_images) {
            ProtobufCBinaryData *im = al_calloc(a, q->n_images, sizeof(*im));
            if (!im)
                return H2T_ENOMEM;
            for (size_t i = 0; i < q->n_images; i++) {
                im[i].data = MUT(uint8_t, q->images[i]);
                im[i].len = q->image_lens[i];
            }
            p->n_images = q->n_images;
            p->images = im;
        }
        p->n_names = q->n_names;
        p->names = MUT(char *, q->names);
        break;
    }
    case H2T_MSG_CLASSIFICATION: {
        ONE(classification, H2tdb__Classification, h2tdb__classification__init);
        H2tdb__Classification *p = env->classification;
        const h2t_msg_classification *q = &u->classification;
        p->job = q->job;
        p->n_classes = q->n_classes;
        p->n_class_names = q->n_class_names;
        p->class_names = MUT(char *, q->class_names);
        p->n_probs = q->n_probs;
        p->probs = MUT(float, q->probs);
        p->n_predicted = q->n_images;
        p->predicted = MUT(uint32_t, q->predicted);
        p->macs = q->macs;
        p->macs_needed = q->macs_needed;
        p->cached = q->cached != 0;
        p->classifier_loads = q->classifier_loads;
        break;
    }
    default:
        return h2t_err_set(H2T_EINVAL, "cannot encode message type %d", msg->type);
    }
    env->body_case = (H2tdb__Envelope__BodyCase)msg->type;
    return 0;
}

int h2t_proto_encode(const h2t_msg *m, uint8_t **frame, size_t *len)
{
    allocs a = {0};
    H2tdb__Envelope env = H2TDB__ENVELOPE__INIT;
    uint8_t *buf = NULL;
    env.id = m->id;
    int rc = enc_body(&a, m, &env);
    if (a.err)
        rc = a.err;
    if (rc < 0)
        goto out;
    if (a.failed) {
        rc = h2t_err_set(H2T_ENOMEM, "encoding %s", h2t_msg_type_name(m->type));
        goto out;
    }
    size_t n = protobuf_c_message_get_packed_size(&env.base);
    if (n > 0xffffffffu) {
        rc = h2t_err_set(H2T_ETOOBIG, "%s message of %zu bytes", h2t_msg_type_name(m->type), n);
        goto out;
    }
    buf = malloc(n + 4);
    if (!buf) {
        rc = h2t_err_set(H2T_ENOMEM, "frame of %zu bytes", n + 4);
        goto out;
    }
    h2t_be32_put(buf, (uint32_t)n);
    protobuf_c_message_pack(&env.base, buf + 4);
    *frame = buf;
    *len = n + 4;
    buf = NULL;
out:
    free(buf);
    al_free(&a);
    return rc;
}

int h2t_proto_reframe(uint64_t id, const uint8_t *frame0, size_t len0, uint8_t **frame, size_t *len)
{
    /* an Envelope packed with id 0 starts with its body's tag (field >= 2), never field 1 */
    if (len0 < 4 || h2t_be32_get(frame0) != len0 - 4 || (len0 > 4 && (frame0[4] >> 3) == 1))
        return h2t_err_set(H2T_EINVAL, "reframe: not a frame of an Envelope with id 0");
    uint8_t key[11];
    size_t k = 0;
    if (id) {
        key[k++] = 0x08; /* field 1, varint */
        for (uint64_t v = id; k < sizeof(key); v >>= 7) {
            key[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
            if (v < 0x80)
                break;
        }
    }
    size_t n = len0 - 4 + k;
    if (n > 0xffffffffu)
        return h2t_err_set(H2T_ETOOBIG, "reframe: a payload of %zu bytes", n);
    uint8_t *buf = malloc(n + 4);
    if (!buf)
        return h2t_err_set(H2T_ENOMEM, "frame of %zu bytes", n + 4);
    h2t_be32_put(buf, (uint32_t)n);
    memcpy(buf + 4, key, k);
    memcpy(buf + 4 + k, frame0 + 4, len0 - 4);
    *frame = buf;
    *len = n + 4;
    return 0;
}

/* ======================= decode: protobuf-c -> C ======================= */

typedef struct decoded {
    H2tdb__Envelope *env;
    allocs a;
} decoded;

static int dec_layers(allocs *a, H2tdb__Layer **v, size_t n, const h2t_msg_layer **out)
{
    h2t_msg_layer *m = al_calloc(a, n, sizeof(*m));
    if (!m)
        return H2T_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        m[i].name = v[i]->name;
        m[i].op = v[i]->op;
        m[i].n_shape = v[i]->n_shape;
        m[i].shape = v[i]->shape;
        m[i].dim = v[i]->dim;
        m[i].offset = v[i]->offset;
    }
    *out = m;
    return 0;
}

static int dec_extraction(allocs *a, const H2tdb__Extraction *m, h2t_msg_extraction *e)
{
    e->id = m->id;
    e->name = m->name;
    e->source = m->source;
    e->model = m->model;
    e->n_samples = m->n_samples;
    e->samples_done = m->samples_done;
    e->state = m->state;
    e->total_dim = m->total_dim;
    e->target_size = m->target_size;
    e->dtype = m->dtype;
    e->config = m->config;
    e->n_layers = m->layer_count;
    e->n_class_names = m->n_class_names;
    e->class_names = (const char *const *)m->class_names;
    e->n_train = m->n_train;
    e->n_test = m->n_test;
    e->n_layer_info = m->n_layers;
    return m->n_layers ? dec_layers(a, m->layers, m->n_layers, &e->layers) : 0;
}

static void dec_task(const H2tdb__Task *m, h2t_msg_task *t)
{
    t->name = m->name;
    t->extraction = m->extraction;
    t->n_class_names = m->n_class_names;
    t->class_names = (const char *const *)m->class_names;
    t->shots = m->shots;
    t->n_train = m->n_train;
    t->n_val = m->n_val;
    t->n_test = m->n_test;
    t->created_ms = m->created_ms;
    t->n_train_per_class = m->n_train_per_class;
    t->train_per_class = m->train_per_class;
}

static int dec_train(const H2tdb__TrainRequest *m, h2t_msg_train *t)
{
    memset(t, 0, sizeof(*t));
    t->task = m->task;
    t->retrain = m->retrain;
    t->inputs_digest = m->inputs_digest;
    return spec_from_wire(m, &t->spec);
}

static int dec_job(const H2tdb__Job *m, h2t_msg_job *j)
{
    j->id = m->id;
    j->state = (int)m->state;
    j->attempts = m->attempts;
    j->progress = m->progress;
    j->stage = m->stage;
    j->error = m->error;
    j->created_ms = m->created_ms;
    j->started_ms = m->started_ms;
    j->finished_ms = m->finished_ms;
    j->has_spec = m->spec != NULL;
    j->reused = m->reused;
    if (m->spec)
        return dec_train(m->spec, &j->spec);
    return 0;
}

static void dec_layer_stats(const H2tdb__LayerStats *m, h2t_msg_layer_stats *s)
{
    s->layer = m->layer;
    s->dim = m->dim;
    s->count = m->count;
    s->norm_mean = m->norm_mean;
    s->norm_min = m->norm_min;
    s->norm_max = m->norm_max;
    s->mean_of_means = m->mean_of_means;
    s->mean_of_vars = m->mean_of_vars;
    s->min = m->min;
    s->max = m->max;
    s->n_mean = m->n_mean;
    s->mean = m->mean;
    s->n_var = m->n_var;
    s->var = m->var;
    s->n_fmin = m->n_fmin;
    s->fmin = m->fmin;
    s->n_fmax = m->n_fmax;
    s->fmax = m->fmax;
}

static int dec_body(allocs *a, const H2tdb__Envelope *env, h2t_msg *msg)
{
    __typeof__(msg->u) *u = &msg->u;
    int rc;
    msg->type = (int)env->body_case;
    switch (env->body_case) {
    case H2TDB__ENVELOPE__BODY_ERROR:
        u->error.code = env->error->code;
        u->error.message = env->error->message;
        break;
    case H2TDB__ENVELOPE__BODY_AUTH:
        u->auth.token = env->auth->token.data;
        u->auth.token_len = env->auth->token.len;
        break;
    case H2TDB__ENVELOPE__BODY_AUTH_OK:
    case H2TDB__ENVELOPE__BODY_HEALTH_REQ:
    case H2TDB__ENVELOPE__BODY_LIST_EXTRACTIONS:
    case H2TDB__ENVELOPE__BODY_LIST_TASKS:
    case H2TDB__ENVELOPE__BODY_LIST_JOBS:
        break;
    case H2TDB__ENVELOPE__BODY_HEALTH: {
        const H2tdb__Health *h = env->health;
        u->health.version = h->version;
        u->health.uptime_ms = h->uptime_ms;
        u->health.connections = h->connections;
        u->health.jobs_queued = h->jobs_queued;
        u->health.jobs_running = h->jobs_running;
        u->health.workers = h->workers;
        u->health.requests = h->requests;
        u->health.design_loads = h->design_loads;
        u->health.design_hits = h->design_hits;
        u->health.design_bytes = h->design_bytes;
        u->health.designs = h->designs;
        break;
    }
    case H2TDB__ENVELOPE__BODY_EXTRACTION_LIST: {
        size_t n = env->extraction_list->n_extractions;
        h2t_msg_extraction *v = al_calloc(a, n, sizeof(*v));
        if (!v)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (dec_extraction(a, env->extraction_list->extractions[i], &v[i]) < 0)
                return H2T_ENOMEM;
        u->extraction_list.n = n;
        u->extraction_list.v = v;
        break;
    }
    case H2TDB__ENVELOPE__BODY_DESCRIBE_EXTRACTION:
        u->ext_ref.extraction = env->describe_extraction->extraction;
        break;
    case H2TDB__ENVELOPE__BODY_EXTRACTION:
        return dec_extraction(a, env->extraction, &u->extraction);
    case H2TDB__ENVELOPE__BODY_LAYERS_REQ:
        u->ext_ref.extraction = env->layers_req->extraction;
        break;
    case H2TDB__ENVELOPE__BODY_LAYER_TABLE:
        u->layer_table.extraction = env->layer_table->extraction;
        u->layer_table.n_layers = env->layer_table->n_layers;
        if (env->layer_table->n_layers)
            return dec_layers(a, env->layer_table->layers, env->layer_table->n_layers,
                              &u->layer_table.layers);
        break;
    case H2TDB__ENVELOPE__BODY_STATS_REQ:
        u->stats_req.extraction = env->stats_req->extraction;
        u->stats_req.layer = env->stats_req->layer;
        u->stats_req.per_feature = env->stats_req->per_feature;
        break;
    case H2TDB__ENVELOPE__BODY_STATS: {
        size_t n = env->stats->n_layers;
        h2t_msg_layer_stats *v = al_calloc(a, n, sizeof(*v));
        if (!v)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            dec_layer_stats(env->stats->layers[i], &v[i]);
        u->stats.extraction = env->stats->extraction;
        u->stats.n_layers = n;
        u->stats.layers = v;
        break;
    }
    case H2TDB__ENVELOPE__BODY_FEATURES_REQ: {
        const H2tdb__FeaturesRequest *f = env->features_req;
        u->features_req.extraction = f->extraction;
        u->features_req.layer = f->layer;
        u->features_req.first = f->first;
        u->features_req.count = f->count;
        u->features_req.n_samples = f->n_samples;
        u->features_req.samples = f->samples;
        u->features_req.limit = f->limit;
        break;
    }
    case H2TDB__ENVELOPE__BODY_FEATURES: {
        const H2tdb__Features *f = env->features;
        u->features.layer = f->layer;
        u->features.dim = f->dim;
        u->features.n_samples = f->n_samples;
        u->features.samples = f->samples;
        u->features.n_values = f->n_values;
        u->features.values = f->values;
        u->features.next_first = f->next_first;
        u->features.done = f->done;
        break;
    }
    case H2TDB__ENVELOPE__BODY_CREATE_TASK: {
        const H2tdb__TaskSpec *s = env->create_task->spec;
        if (!s)
            return h2t_err_set(H2T_EPROTO, "create_task without a spec");
        h2t_msg_task_spec *t = &u->create_task;
        t->name = s->name;
        t->extraction = s->extraction;
        t->train = s->train;
        t->test = s->test;
        t->val = s->val;
        t->shots = s->shots;
        t->replace = s->replace;
        t->n_map = s->n_map;
        h2t_msg_map_entry *me = al_calloc(a, s->n_map, sizeof(*me));
        if (!me)
            return H2T_ENOMEM;
        for (size_t i = 0; i < s->n_map; i++) {
            me[i].from = s->map[i]->from;
            me[i].to = s->map[i]->to;
        }
        t->map = me;
        break;
    }
    case H2TDB__ENVELOPE__BODY_TASK:
        dec_task(env->task, &u->task);
        break;
    case H2TDB__ENVELOPE__BODY_TASK_LIST: {
        size_t n = env->task_list->n_tasks;
        h2t_msg_task *v = al_calloc(a, n, sizeof(*v));
        if (!v)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            dec_task(env->task_list->tasks[i], &v[i]);
        u->task_list.n = n;
        u->task_list.v = v;
        break;
    }
    case H2TDB__ENVELOPE__BODY_TRAIN:
        return dec_train(env->train, &u->train);
    case H2TDB__ENVELOPE__BODY_GET_JOB:
        u->job_ref.job = env->get_job->job;
        break;
    case H2TDB__ENVELOPE__BODY_WATCH_JOB:
        u->job_ref.job = env->watch_job->job;
        break;
    case H2TDB__ENVELOPE__BODY_CANCEL_JOB:
        u->job_ref.job = env->cancel_job->job;
        break;
    case H2TDB__ENVELOPE__BODY_JOB:
        return dec_job(env->job, &u->job);
    case H2TDB__ENVELOPE__BODY_JOB_LIST: {
        size_t n = env->job_list->n_jobs;
        h2t_msg_job *v = al_calloc(a, n, sizeof(*v));
        if (!v)
            return H2T_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if ((rc = dec_job(env->job_list->jobs[i], &v[i])) < 0)
                return rc;
        u->job_list.n = n;
        u->job_list.v = v;
        break;
    }
    case H2TDB__ENVELOPE__BODY_GET_RESULT:
        u->get_result.job = env->get_result->job;
        u->get_result.include_head = env->get_result->include_head;
        u->get_result.include_onnx = env->get_result->include_onnx;
        break;
    case H2TDB__ENVELOPE__BODY_RESULT: {
        const H2tdb__Result *r = env->result;
        u->result.job = r->job;
        u->result.summary = r->summary;
        u->result.val_accuracy = r->val_accuracy;
        u->result.test_accuracy = r->test_accuracy;
        u->result.n_kept = r->n_kept;
        u->result.n_classes = r->n_classes;
        u->result.blob = r->blob.data;
        u->result.blob_len = r->blob.len;
        u->result.json = r->json;
        u->result.onnx = r->onnx.data;
        u->result.onnx_len = r->onnx.len;
        break;
    }
    case H2TDB__ENVELOPE__BODY_PREDICT:
        u->predict.job = env->predict->job;
        u->predict.samples = env->predict->samples;
        u->predict.n_ids = env->predict->n_ids;
        u->predict.ids = env->predict->ids;
        break;
    case H2TDB__ENVELOPE__BODY_PREDICTION: {
        const H2tdb__Prediction *p = env->prediction;
        u->prediction.n_samples = p->n_samples;
        u->prediction.samples = p->samples;
        u->prediction.n_predicted = p->n_predicted;
        u->prediction.predicted = p->predicted;
        u->prediction.n_labels = p->n_labels;
        u->prediction.labels = p->labels;
        u->prediction.n_class_names = p->n_class_names;
        u->prediction.class_names = (const char *const *)p->class_names;
        u->prediction.accuracy = p->accuracy;
        u->prediction.n_probs = p->n_probs;
        u->prediction.probs = p->probs;
        break;
    }
    case H2TDB__ENVELOPE__BODY_CLASSIFY: {
        const H2tdb__ClassifyRequest *p = env->classify;
        h2t_msg_classify_req *q = &u->classify;
        q->job = p->job;
        if (p->n_images) {
            const uint8_t **im = al_calloc(a, p->n_images, sizeof(*im));
            size_t *lens = al_calloc(a, p->n_images, sizeof(*lens));
            if (!im || !lens)
                return H2T_ENOMEM;
            for (size_t i = 0; i < p->n_images; i++) {
                im[i] = p->images[i].data;
                lens[i] = p->images[i].len;
            }
            q->images = im;
            q->image_lens = lens;
        }
        q->n_images = p->n_images;
        q->n_names = p->n_names;
        q->names = (const char *const *)p->names;
        break;
    }
    case H2TDB__ENVELOPE__BODY_CLASSIFICATION: {
        const H2tdb__Classification *p = env->classification;
        h2t_msg_classification *q = &u->classification;
        q->job = p->job;
        q->n_classes = p->n_classes;
        q->n_class_names = p->n_class_names;
        q->class_names = (const char *const *)p->class_names;
        q->n_probs = p->n_probs;
        q->probs = p->probs;
        q->n_images = p->n_predicted;
        q->predicted = p->predicted;
        q->macs = p->macs;
        q->macs_needed = p->macs_needed;
        q->cached = p->cached;
        q->classifier_loads = p->classifier_loads;
        break;
    }
    case H2TDB__ENVELOPE__BODY__NOT_SET:
    default:
        if (env->base.n_unknown_fields)
            return h2t_err_set(H2T_EPROTO, "unknown message type (field %u)",
                               (unsigned)env->base.unknown_fields[0].tag);
        return h2t_err_set(H2T_EPROTO, "envelope without a body");
    }
    return 0;
}

int h2t_proto_decode(const uint8_t *payload, size_t len, h2t_msg *out)
{
    memset(out, 0, sizeof(*out));
    decoded *d = calloc(1, sizeof(*d));
    if (!d)
        return h2t_err_set(H2T_ENOMEM, "decoding a frame of %zu bytes", len);
    int rc = 0;
    d->env = h2tdb__envelope__unpack(NULL, len, payload);
    if (!d->env) {
        rc = h2t_err_set(H2T_EPROTO, "malformed frame: %zu bytes are not an h2tdb.Envelope", len);
        goto fail;
    }
    h2t_msg m = {.id = d->env->id};
    rc = dec_body(&d->a, d->env, &m);
    if (rc == 0 && d->a.failed)
        rc = h2t_err_set(H2T_ENOMEM, "decoding a frame of %zu bytes", len);
    if (rc < 0)
        goto fail;
    m.owned_ = d;
    *out = m;
    return 0;
fail:
    if (d->env)
        h2tdb__envelope__free_unpacked(d->env, NULL);
    al_free(&d->a);
    free(d);
    return rc;
}

void h2t_msg_free(h2t_msg *m)
{
    if (!m)
        return;
    decoded *d = m->owned_;
    if (d) {
        h2tdb__envelope__free_unpacked(d->env, NULL);
        al_free(&d->a);
        free(d);
    }
    memset(m, 0, sizeof(*m));
}

const char *h2t_msg_type_name(int type)
{
    static const char *const names[H2T_MSG_MAX] = {
        [H2T_MSG_ERROR] = "error",
        [H2T_MSG_AUTH] = "auth",
        [H2T_MSG_AUTH_OK] = "auth_ok",
        [H2T_MSG_HEALTH_REQ] = "health_req",
        [H2T_MSG_HEALTH] = "health",
        [H2T_MSG_LIST_EXTRACTIONS] = "list_extractions",
        [H2T_MSG_EXTRACTION_LIST] = "extraction_list",
        [H2T_MSG_DESCRIBE_EXTRACTION] = "describe_extraction",
        [H2T_MSG_EXTRACTION] = "extraction",
        [H2T_MSG_LAYERS_REQ] = "layers_req",
        [H2T_MSG_LAYER_TABLE] = "layer_table",
        [H2T_MSG_STATS_REQ] = "stats_req",
        [H2T_MSG_STATS] = "stats",
        [H2T_MSG_FEATURES_REQ] = "features_req",
        [H2T_MSG_FEATURES] = "features",
        [H2T_MSG_CREATE_TASK] = "create_task",
        [H2T_MSG_LIST_TASKS] = "list_tasks",
        [H2T_MSG_TASK] = "task",
        [H2T_MSG_TASK_LIST] = "task_list",
        [H2T_MSG_TRAIN] = "train",
        [H2T_MSG_GET_JOB] = "get_job",
        [H2T_MSG_WATCH_JOB] = "watch_job",
        [H2T_MSG_CANCEL_JOB] = "cancel_job",
        [H2T_MSG_LIST_JOBS] = "list_jobs",
        [H2T_MSG_JOB] = "job",
        [H2T_MSG_JOB_LIST] = "job_list",
        [H2T_MSG_GET_RESULT] = "get_result",
        [H2T_MSG_RESULT] = "result",
        [H2T_MSG_PREDICT] = "predict",
        [H2T_MSG_PREDICTION] = "prediction",
        [H2T_MSG_CLASSIFY] = "classify",
        [H2T_MSG_CLASSIFICATION] = "classification",
    };
    if (type <= 0 || type >= H2T_MSG_MAX || !names[type])
        return "unknown";
    return names[type];
}

/* ======================= frame reader ======================= */

void h2t_proto_reader_init(h2t_proto_reader *r, uint32_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
}

int h2t_proto_reader_feed(h2t_proto_reader *r, const uint8_t *data, size_t n, size_t *used,
                          const uint8_t **payload, uint32_t *len)
{
    size_t off = 0;
    *used = 0;
    if (r->done) { /* the previous frame was handed out: start the next one */
        free(r->buf);
        r->buf = NULL;
        r->done = 0;
        r->hdr_have = 0;
        r->len = r->have = r->cap = 0;
    }
    while (r->hdr_have < 4) {
        if (off == n)
            return 0;
        r->hdr[r->hdr_have++] = data[off++];
        *used = off;
        if (r->hdr_have == 4) {
            r->len = h2t_be32_get(r->hdr);
            if (r->len > r->max)
                return h2t_err_set(H2T_ETOOBIG, "frame of %u bytes exceeds the limit of %u", r->len,
                                   r->max);
            r->have = 0;
        }
    }
    size_t take = n - off;
    if (take > r->len - r->have)
        take = r->len - r->have;
    if (r->have + take > r->cap || !r->buf) { /* grow with what arrived, doubling */
        uint32_t need = r->have + (uint32_t)take, cap = r->cap > 2048 ? r->cap : 2048;
        while (cap < need)
            cap = cap > UINT32_MAX / 2 ? UINT32_MAX : 2 * cap;
        if (cap > r->len)
            cap = r->len > need ? r->len : need;
        uint8_t *nb = realloc(r->buf, cap ? cap : 1);
        if (!nb)
            return h2t_err_set(H2T_ENOMEM, "frame of %u bytes", r->len);
        r->buf = nb;
        r->cap = cap;
    }
    if (take)
        memcpy(r->buf + r->have, data + off, take);
    r->have += (uint32_t)take;
    off += take;
    *used = off;
    if (r->have < r->len)
        return 0;
    r->done = 1;
    *payload = r->buf;
    *len = r->len;
    return 1;
}

int h2t_proto_reader_partial(const h2t_proto_reader *r)
{
    return !r->done && r->hdr_have > 0;
}

void h2t_proto_reader_free(h2t_proto_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}
