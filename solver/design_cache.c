/*
 * solver/design_cache.c - assembled design matrices shared by the jobs that read them
 * (solver.h, "Shared design matrices"). An entry is the matrix of one extraction over one
 * sample list (train + val, then test) and a set of layers, read from the store, checked and
 * normalised exactly as h2t_solver_run does it; a job runs on it through
 * h2t_solver_run_normalised, which copies the layers it uses: the numbers of h2t_solver_run,
 * so its result. Entries are immutable once loaded; a job holds a reference while it copies.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h"
#include "solver/solver.h"

enum { DC_LOADING = 0, DC_READY = 1, DC_FAILED = 2 };

typedef struct dc_entry {
    /* the key: what the numbers depend on */
    uint32_t ext, ext_done;
    uint64_t ext_updated;
    uint32_t n_tr, n_te;
    uint32_t *samples; /* n_tr + n_te: train, val, then test (the task's order) */
    uint32_t n_layers;
    uint32_t *lids; /* extraction layer index of each entry layer, in extraction order */
    uint32_t *dims;
    char **names;
    /* the matrix */
    uint32_t D;
    float *X; /* (n_tr + n_te) x D, normalised per layer, h2t_aalloc; immutable once READY */
    uint64_t bytes;
    int state, refs;
    uint64_t last_used;
    struct dc_entry *next;
} dc_entry;

struct h2t_design_cache {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t budget;
    dc_entry *entries;
    uint64_t tick, loads, hits, bytes;
};

static void entry_free(dc_entry *e)
{
    if (!e)
        return;
    free(e->samples);
    free(e->lids);
    free(e->dims);
    if (e->names)
        for (uint32_t l = 0; l < e->n_layers; l++)
            free(e->names[l]);
    free(e->names);
    h2t_afree(e->X);
    free(e);
}

int h2t_design_cache_create(uint64_t budget, h2t_design_cache **out)
{
    h2t_design_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return h2t_err_set(H2T_ENOMEM, "design cache");
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->budget = budget;
    *out = c;
    return 0;
}

void h2t_design_cache_destroy(h2t_design_cache *c)
{
    if (!c)
        return;
    while (c->entries) {
        dc_entry *e = c->entries;
        c->entries = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

void h2t_design_cache_stats_get(h2t_design_cache *c, h2t_design_cache_stats *s)
{
    memset(s, 0, sizeof(*s));
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    s->loads = c->loads;
    s->hits = c->hits;
    s->bytes = c->bytes;
    for (dc_entry *e = c->entries; e; e = e->next) {
        s->entries++;
        s->in_use += e->refs > 0;
    }
    pthread_mutex_unlock(&c->mu);
}

/* Drop failed entries nobody waits on, then the least recently used unreferenced ready
 * entries while the cache holds more than its budget. Under mu. */
static void evict_locked(h2t_design_cache *c)
{
    for (dc_entry **pp = &c->entries; *pp;) {
        dc_entry *e = *pp;
        if (e->state == DC_FAILED && e->refs == 0) {
            *pp = e->next;
            c->bytes -= e->bytes;
            entry_free(e);
        } else {
            pp = &e->next;
        }
    }
    while (c->bytes > c->budget) {
        dc_entry **victim = NULL;
        for (dc_entry **pp = &c->entries; *pp; pp = &(*pp)->next)
            if ((*pp)->refs == 0 && (*pp)->state == DC_READY &&
                (!victim || (*pp)->last_used < (*victim)->last_used))
                victim = pp;
        if (!victim)
            break;
        dc_entry *e = *victim;
        *victim = e->next;
        c->bytes -= e->bytes;
        entry_free(e);
    }
}

static void release(h2t_design_cache *c, dc_entry *e)
{
    pthread_mutex_lock(&c->mu);
    e->refs--;
    e->last_used = ++c->tick;
    evict_locked(c);
    pthread_mutex_unlock(&c->mu);
}

/* The entry position of extraction layer lid, or -1. */
static int entry_layer(const dc_entry *e, uint32_t lid)
{
    for (uint32_t l = 0; l < e->n_layers; l++)
        if (e->lids[l] == lid)
            return (int)l;
    return -1;
}

static int entry_matches(const dc_entry *e, const h2t_extraction *x, const uint32_t *samples,
                         uint32_t n_tr, uint32_t n_te, const uint32_t *need, uint32_t n_need)
{
    if (e->state == DC_FAILED || e->ext != x->id || e->ext_done != x->samples_done ||
        e->ext_updated != x->updated_ms || e->n_tr != n_tr || e->n_te != n_te ||
        memcmp(e->samples, samples, ((size_t)n_tr + n_te) * sizeof(uint32_t)) != 0)
        return 0;
    for (uint32_t i = 0; i < n_need; i++)
        if (entry_layer(e, need[i]) < 0)
            return 0;
    return 1;
}

/* Read the entry's layers from the store (outside the lock: nobody reads X until READY). */
static int entry_load(dc_entry *e, h2t_store *st, const atomic_int *cancel)
{
    uint32_t N = e->n_tr + e->n_te, off = 0;
    /* not zeroed: the layer reads write every element (h2t_afree is free()) */
    e->X = aligned_alloc(64, ((size_t)N * e->D * sizeof(float) + 63) & ~(size_t)63);
    if (!e->X)
        return h2t_err_set(H2T_ENOMEM, "design matrix %u x %u (%llu bytes)", N, e->D,
                           (unsigned long long)N * e->D * 4);
    for (uint32_t l = 0; l < e->n_layers; l++) {
        if (cancel && atomic_load_explicit(cancel, memory_order_relaxed))
            return h2t_err_set(H2T_ECANCELED, "job cancelled (load)");
        int rc = h2t_store_layer_read(st, e->ext, e->lids[l], e->samples, 0, N, e->X + off, e->D);
        if (rc < 0)
            return h2t_err_wrap(rc, "reading layer %u (%s): ", e->lids[l], e->names[l]);
        for (uint32_t i = 0; i < N; i++) {
            const float *x = e->X + (size_t)i * e->D + off;
            for (uint32_t k = 0; k < e->dims[l]; k++)
                if (!isfinite(x[k]))
                    return h2t_err_set(H2T_ENUMERIC,
                                       "%s in layer %u (%s) feature %u of %s sample %u",
                                       isnan(x[k]) ? "NaN" : "infinity", e->lids[l], e->names[l], k,
                                       i < e->n_tr ? "train" : "test", e->samples[i]);
        }
        /* normalised here once, exactly as h2t_solver_run does it (per row and layer block,
         * double accumulation): jobs copy the blocks and do not normalise again */
        for (uint32_t i = 0; i < N; i++) {
            float *x = e->X + (size_t)i * e->D + off;
            double s = 0;
            for (uint32_t k = 0; k < e->dims[l]; k++)
                s += (double)x[k] * x[k];
            if (s > 0) {
                double inv = 1.0 / sqrt(s);
                for (uint32_t k = 0; k < e->dims[l]; k++)
                    x[k] = (float)(x[k] * inv);
            }
        }
        off += e->dims[l];
    }
    return 0;
}

/* A new LOADING entry for the key (not yet in the list). */
static int entry_new(const h2t_extraction *x, const uint32_t *samples, uint32_t n_tr, uint32_t n_te,
                     const uint32_t *want, uint32_t n_want, dc_entry **out)
{
    dc_entry *e = calloc(1, sizeof(*e));
    uint32_t N = n_tr + n_te;
    if (!e)
        return h2t_err_set(H2T_ENOMEM, "design cache entry");
    e->ext = x->id;
    e->ext_done = x->samples_done;
    e->ext_updated = x->updated_ms;
    e->n_tr = n_tr;
    e->n_te = n_te;
    e->n_layers = n_want;
    e->samples = malloc((size_t)N * sizeof(uint32_t) + 1);
    e->lids = malloc((size_t)n_want * sizeof(uint32_t) + 1);
    e->dims = malloc((size_t)n_want * sizeof(uint32_t) + 1);
    e->names = calloc(n_want + 1, sizeof(char *));
    if (!e->samples || !e->lids || !e->dims || !e->names) {
        entry_free(e);
        return h2t_err_set(H2T_ENOMEM, "design cache entry");
    }
    memcpy(e->samples, samples, (size_t)N * sizeof(uint32_t));
    uint64_t D = 0;
    for (uint32_t l = 0; l < n_want; l++) {
        const h2t_layer_info *L = &x->layers[want[l]];
        e->lids[l] = want[l];
        e->dims[l] = L->dim;
        e->names[l] = strdup(L->name);
        if (!e->names[l]) {
            entry_free(e);
            return h2t_err_set(H2T_ENOMEM, "design cache entry");
        }
        D += L->dim;
    }
    if (D == 0 || D > UINT32_MAX) {
        entry_free(e);
        return h2t_err_set(H2T_EINVAL, "design matrix of %llu features", (unsigned long long)D);
    }
    e->D = (uint32_t)D;
    e->bytes = (uint64_t)N * D * sizeof(float);
    e->refs = 1;
    e->state = DC_LOADING;
    *out = e;
    return 0;
}

/* Find or load the entry for the key; *e is referenced (release it). *loaded: this call read
 * the store. */
static int acquire(h2t_design_cache *c, h2t_store *st, const h2t_extraction *x,
                   const uint32_t *samples, uint32_t n_tr, uint32_t n_te, const uint32_t *need,
                   uint32_t n_need, const uint32_t *want, uint32_t n_want, const atomic_int *cancel,
                   dc_entry **out, int *loaded)
{
    pthread_mutex_lock(&c->mu);
    for (;;) {
        dc_entry *e = c->entries;
        while (e && !entry_matches(e, x, samples, n_tr, n_te, need, n_need))
            e = e->next;
        if (!e)
            break;
        e->refs++;
        while (e->state == DC_LOADING) { /* another job is reading it: wait, not twice */
            if (cancel && atomic_load_explicit(cancel, memory_order_relaxed))
                break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        }
        if (e->state == DC_READY) {
            c->hits++;
            e->last_used = ++c->tick;
            pthread_mutex_unlock(&c->mu);
            *out = e;
            *loaded = 0;
            return 0;
        }
        e->refs--;
        if (cancel && atomic_load_explicit(cancel, memory_order_relaxed)) {
            evict_locked(c);
            pthread_mutex_unlock(&c->mu);
            return h2t_err_set(H2T_ECANCELED, "job cancelled (load)");
        }
        evict_locked(c); /* its loader failed (or was cancelled): drop it and load again */
    }
    dc_entry *e = NULL;
    int rc = entry_new(x, samples, n_tr, n_te, want, n_want, &e);
    if (rc < 0) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    e->next = c->entries;
    c->entries = e;
    c->bytes += e->bytes;
    c->loads++;
    pthread_mutex_unlock(&c->mu);

    rc = entry_load(e, st, cancel);

    pthread_mutex_lock(&c->mu);
    e->state = rc < 0 ? DC_FAILED : DC_READY;
    e->last_used = ++c->tick;
    if (rc < 0)
        e->refs--;
    evict_locked(c); /* over budget: older unreferenced entries go first */
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (rc < 0)
        return rc;
    *out = e;
    *loaded = 1;
    return 0;
}

int h2t_solver_run_cached(h2t_design_cache *c, h2t_store *st, const h2t_task *task,
                          const h2t_train_spec *spec, h2t_solver_progress_fn progress, void *ud,
                          const atomic_int *cancel, h2t_result **out)
{
    if (!c)
        return h2t_solver_run(st, task, spec, progress, ud, cancel, out);
    h2t_extraction *x = NULL;
    uint32_t *samples = NULL, *y = NULL, *need = NULL, *want = NULL, *pos = NULL;
    dc_entry *e = NULL;
    int loaded = 0;
    int rc = h2t_train_spec_check(spec);
    if (rc < 0)
        return rc;
    if ((rc = h2t_solver__task_check(st, task, out)) < 0)
        return rc;
    double t0 = h2t_now_s();
    if (progress)
        progress(ud, 0, "load");
    if ((rc = h2t_store_extraction_get(st, task->extraction, &x)) < 0)
        return rc;
    uint32_t n_tr = task->n_train + task->n_val, n_te = task->n_test, N = n_tr + n_te;
    /* the layers the job reads (as h2t_solver_run picks them) and the ones an entry loads:
     * every layer for every-layer methods, only the listed ones otherwise */
    int probe_only = spec->method == H2T_METHOD_LINEAR || spec->method == H2T_METHOD_KNN;
    uint32_t n_need = spec->n_layers ? spec->n_layers : probe_only ? 1 : x->n_layers;
    need = malloc((size_t)n_need * sizeof(uint32_t) + 1);
    pos = malloc((size_t)n_need * sizeof(uint32_t) + 1);
    want = malloc(((size_t)n_need + x->n_layers) * sizeof(uint32_t) + 1);
    samples = malloc((size_t)N * sizeof(uint32_t));
    y = malloc((size_t)N * sizeof(uint32_t));
    if (!need || !pos || !want || !samples || !y) {
        rc = h2t_err_set(H2T_ENOMEM, "sample lists");
        goto out;
    }
    for (uint32_t l = 0; l < n_need; l++) {
        need[l] = spec->n_layers ? spec->layers[l] : probe_only ? h2t_solver_probe_layer(x) : l;
        if (need[l] >= x->n_layers) {
            rc = h2t_err_set(H2T_EINVAL, "layer index %u out of range (%u layers)", need[l],
                             x->n_layers);
            goto out;
        }
    }
    /* the entry's layers: ascending and without repeats */
    uint32_t n_want = 0;
    for (uint32_t l = 0; l < x->n_layers; l++)
        for (uint32_t q = 0; q < n_need; q++)
            if (need[q] == l) {
                want[n_want++] = l;
                break;
            }
    h2t_solver__task_lists(task, samples, y);
    uint64_t need_bytes = 0;
    for (uint32_t l = 0; l < n_want; l++)
        need_bytes += (uint64_t)N * x->layers[want[l]].dim * sizeof(float);
    uint64_t avail = spec->mem_limit ? spec->mem_limit : h2t_solver__mem_available();
    if (need_bytes > avail / 2) {
        /* no room for a shared matrix and the job's working copy: load for this job only */
        h2t_extraction_destroy(x);
        free(need);
        free(pos);
        free(want);
        free(samples);
        free(y);
        return h2t_solver_run(st, task, spec, progress, ud, cancel, out);
    }
    if ((rc = acquire(c, st, x, samples, n_tr, n_te, need, n_need, want, n_want, cancel, &e,
                      &loaded)) < 0)
        goto out;
    if (progress)
        progress(ud, 0, loaded ? "load" : "load (shared matrix)");
    for (uint32_t l = 0; l < n_need; l++)
        pos[l] = (uint32_t)entry_layer(e, need[l]);
    h2t_train_spec s = *spec;
    s.layers = pos;
    s.n_layers = n_need;
    h2t_dataset d = {.n_train = n_tr,
                     .n_test = n_te,
                     .n_classes = task->n_classes,
                     .n_layers = e->n_layers,
                     .x_train = e->X,
                     .y_train = y,
                     .x_test = e->X + (size_t)n_tr * e->D,
                     .y_test = y + n_tr,
                     .layer_dims = e->dims,
                     .layer_ids = e->lids,
                     .layer_names = (const char *const *)e->names};
    int probe_at = entry_layer(e, h2t_solver_probe_layer(x));
    if (probe_at >= 0) {
        d.has_probe = 1;
        d.probe = (uint32_t)probe_at;
    }
    double t1 = h2t_now_s();
    rc = h2t_solver_run_normalised(&d, &s, progress, ud, cancel, out);
    if (rc == 0) { /* the job's load time includes reading (or waiting for) the matrix */
        (*out)->t_load += t1 - t0;
        (*out)->t_total += t1 - t0;
    }
out:
    if (e)
        release(c, e);
    h2t_extraction_destroy(x);
    free(need);
    free(pos);
    free(want);
    free(samples);
    free(y);
    return rc;
}
