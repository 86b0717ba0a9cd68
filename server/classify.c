/*
 * server/classify.c - the classify request: a finished job's head applied to encoded images
 * (classify/classify.h), on the thread pool. Classifiers (the pruned backbone, its executor,
 * the head) are kept for the next request of the same job: at most cfg.classify_cache of them,
 * each used by one request at a time (a second request for a busy job builds its own, which
 * then takes the place of the least recently used idle one or is closed).
 */
#include "classify/classify.h"
#include "common/err.h"
#include "common/util.h"
#include "server/internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct cls_entry {
    uint64_t job;
    h2t_classifier *c;
    int in_use;
    uint64_t used; /* a counter: the least recently used entry has the lowest */
} cls_entry;

struct srv_cls_cache {
    pthread_mutex_t mu;
    cls_entry *v;
    uint32_t n, cap;
    uint64_t clock;
    uint64_t loads; /* classifiers built (h2t_classifier_open calls that succeeded) */
};

int h2t_srv_cls_cache_create(uint32_t cap, srv_cls_cache **out)
{
    srv_cls_cache *k = calloc(1, sizeof *k);
    if (!k || !(k->v = calloc(cap ? cap : 1, sizeof *k->v))) {
        free(k);
        return h2t_err_set(H2T_ENOMEM, "classifier cache");
    }
    k->cap = cap;
    pthread_mutex_init(&k->mu, NULL);
    *out = k;
    return 0;
}

void h2t_srv_cls_cache_destroy(srv_cls_cache *k)
{
    if (!k)
        return;
    for (uint32_t i = 0; i < k->n; i++)
        h2t_classifier_close(k->v[i].c);
    free(k->v);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* An idle cached classifier of job (marked in use), or NULL. */
static h2t_classifier *cache_take(srv_cls_cache *k, uint64_t job)
{
    h2t_classifier *c = NULL;
    pthread_mutex_lock(&k->mu);
    for (uint32_t i = 0; i < k->n; i++)
        if (k->v[i].job == job && !k->v[i].in_use) {
            k->v[i].in_use = 1;
            k->v[i].used = ++k->clock;
            c = k->v[i].c;
            break;
        }
    pthread_mutex_unlock(&k->mu);
    return c;
}

/* Hand c back: it stays cached (it was, or there is room, or an idle entry is evicted for it),
 * or is closed. */
static void cache_give(srv_cls_cache *k, uint64_t job, h2t_classifier *c)
{
    h2t_classifier *drop = NULL;
    pthread_mutex_lock(&k->mu);
    uint32_t i;
    for (i = 0; i < k->n; i++)
        if (k->v[i].c == c) {
            k->v[i].in_use = 0;
            break;
        }
    if (i == k->n) { /* built for this request */
        if (k->n < k->cap) {
            k->v[k->n++] = (cls_entry){.job = job, .c = c, .used = ++k->clock};
        } else {
            uint32_t lru = k->n;
            for (uint32_t q = 0; q < k->n; q++)
                if (!k->v[q].in_use && (lru == k->n || k->v[q].used < k->v[lru].used))
                    lru = q;
            if (lru < k->n) {
                drop = k->v[lru].c;
                k->v[lru] = (cls_entry){.job = job, .c = c, .used = ++k->clock};
            } else {
                drop = c;
            }
        }
    }
    pthread_mutex_unlock(&k->mu);
    h2t_classifier_close(drop);
}

/* A classifier of job: an idle cached one (*cached 1), or a new one. *loads: the classifiers
 * built so far, this one included. */
static int classifier_get(h2t_srv *srv, uint64_t job, h2t_classifier **out, int *cached,
                          uint64_t *loads)
{
    srv_cls_cache *k = srv->cls;
    *cached = (*out = cache_take(k, job)) != NULL;
    if (!*cached) {
        h2t_classifier_opts o;
        h2t_classifier_opts_init(&o);
        o.models_dir = srv->cfg.models_dir;
        int rc = h2t_classifier_open(srv->st, job, &o, out);
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&k->mu);
    k->loads += !*cached;
    *loads = k->loads;
    pthread_mutex_unlock(&k->mu);
    return 0;
}

int h2t_srv_classifier_onnx(h2t_srv *srv, uint64_t job, void **out, size_t *len)
{
    h2t_classifier *c = NULL;
    int cached;
    uint64_t loads;
    int rc = classifier_get(srv, job, &c, &cached, &loads);
    if (rc < 0)
        return rc;
    rc = h2t_classifier_onnx(c, out, len);
    cache_give(srv->cls, job, c);
    return rc;
}

int h2t_srv_classify(h2t_srv *srv, const h2t_msg *req, uint8_t **frame, size_t *len)
{
    const h2t_msg_classify_req *q = &req->u.classify;
    const h2t_srv_config *cfg = &srv->cfg;
    if (q->n_images == 0)
        return h2t_err_set(H2T_EINVAL, "classify: no image in the request");
    if (q->n_names && q->n_names != q->n_images)
        return h2t_err_set(H2T_EINVAL, "classify: %zu names for %zu images", q->n_names,
                           q->n_images);
    if (q->n_images > cfg->classify_max_images)
        return h2t_err_set(H2T_ETOOBIG,
                           "classify: %zu images, the server takes at most %u per request "
                           "(serve --classify-max-images)",
                           q->n_images, cfg->classify_max_images);
    uint64_t bytes = 0;
    for (size_t i = 0; i < q->n_images; i++)
        bytes += q->image_lens[i];
    if (bytes > cfg->classify_max_bytes)
        return h2t_err_set(H2T_ETOOBIG,
                           "classify: %" PRIu64
                           " bytes of images, the server takes at most %" PRIu64
                           " per request (serve --classify-max-bytes)",
                           bytes, cfg->classify_max_bytes);
    h2t_classifier *c = NULL;
    int cached;
    uint64_t loads;
    int rc = classifier_get(srv, q->job, &c, &cached, &loads);
    if (rc < 0)
        return rc;
    const h2t_classifier_info *ci = h2t_classifier_info_get(c);
    uint32_t K = ci->n_classes;
    float *probs = malloc(q->n_images * K * sizeof *probs);
    uint32_t *pred = malloc(q->n_images * sizeof *pred);
    if (!probs || !pred) {
        rc = h2t_err_set(H2T_ENOMEM, "classify: %zu images", q->n_images);
        goto out;
    }
    for (size_t i = 0; i < q->n_images; i++) {
        char name[64];
        const char *what = q->n_names ? q->names[i] : name;
        snprintf(name, sizeof name, "%zu", i);
        float *p = probs + i * K;
        if ((rc = h2t_classifier_run_encoded(c, q->images[i], q->image_lens[i], what, p)) < 0) {
            rc = h2t_err_wrap(rc, "classify: image %zu: ", i);
            goto out;
        }
        pred[i] = 0;
        for (uint32_t k = 1; k < K; k++)
            if (p[k] > p[pred[i]])
                pred[i] = k;
    }
    h2t_msg m = {.id = req->id, .type = H2T_MSG_CLASSIFICATION};
    h2t_msg_classification *a = &m.u.classification;
    a->job = q->job;
    a->n_classes = K;
    a->n_class_names = K;
    a->class_names = ci->class_names;
    a->n_probs = q->n_images * K;
    a->probs = probs;
    a->n_images = q->n_images;
    a->predicted = pred;
    a->macs = ci->macs;
    a->macs_needed = ci->macs_needed;
    a->cached = cached;
    a->classifier_loads = loads;
    rc = h2t_proto_encode(&m, frame, len);
out:
    free(probs);
    free(pred);
    cache_give(srv->cls, q->job, c);
    return rc;
}
