/*
 * classify/classify.c - a finished job's head on new images: the job, its task, extraction and
 * model record from the store; the model file checked against the stored SHA-256; the backbone
 * pruned to the kept layers' tensors; each kept layer pooled with the extraction's plan; the
 * head applied by the solver's own function. See classify/classify.h.
 */
#include "classify/internal.h"

#include "common/err.h"
#include "common/util.h"
#include "proto/proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_MODEL_BYTES ((size_t)4 << 30)
#define DEFAULT_MAX_PIXELS ((uint64_t)64 << 20)

void h2t_classifier_opts_init(h2t_classifier_opts *o)
{
    memset(o, 0, sizeof *o);
}

/* The class-token mode of an extraction from its identity text ("forms=v1 cls=apart-first"):
 * absent means the first rule's (pooled with the other tokens). */
static void config_cls(const char *config, int *mode, int *first)
{
    *mode = H2T_CLS_POOL;
    *first = 0;
    const char *p = strstr(config, " cls=");
    if (!p)
        return;
    p += 5;
    if (!strncmp(p, "only", 4))
        *mode = H2T_CLS_ONLY;
    else if (!strncmp(p, "apart", 5))
        *mode = H2T_CLS_APART;
    size_t n = strcspn(p, " ");
    *first = n >= 6 && !strncmp(p + n - 6, "-first", 6);
}

/* "scale=lo,hi" out of a stored preprocessing text ("resize=... size=... scale=lo,hi"). */
static int prep_from_record(const char *text, h2t_prep *p, const char *what)
{
    const char *s = strstr(text, "scale=");
    if (!s)
        return 0; /* the default [-1, 1] */
    char tok[64];
    size_t n = strcspn(s, " ");
    if (n >= sizeof tok)
        return h2t_err_set(H2T_ECORRUPT, "%s: preprocessing '%s'", what, text);
    memcpy(tok, s, n);
    tok[n] = '\0';
    int rc = h2t_prep_parse(tok, p);
    return rc < 0 ? h2t_err_wrap(rc, "%s: stored preprocessing: ", what) : 0;
}

static const char *job_state_name(uint32_t s)
{
    static const char *const st[] = {"queued", "running", "done", "failed", "cancelled"};
    return s < 5 ? st[s] : "in an unknown state";
}

static int on_tensor(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    h2t_classifier *c = ctx;
    (void)shape;
    (void)rank;
    for (uint32_t s = 0; s < c->n_slots; s++) {
        const cls_slot *sl = &c->slots[s];
        if (sl->tensor != tensor)
            continue;
        h2t_pool_apply_sample(&sl->pool, data, 1, 0, c->x + sl->offset);
        c->seen[s] = 1;
    }
    return 0;
}

static int plan_slots(h2t_classifier *c, const h2t_model *full, const h2t_extraction *e,
                      const char *model_path)
{
    const h2t_result *r = c->r;
    int rc = 0, nt = h2t_model_n_tensors(full);
    h2t_tensor_form *forms = calloc((size_t)nt, sizeof *forms);
    c->slots = calloc(r->n_layers ? r->n_layers : 1, sizeof *c->slots);
    if (!forms || !c->slots) {
        free(forms);
        return h2t_err_set(H2T_ENOMEM, "classifier layers");
    }
    if ((rc = h2t_model_tensor_forms(full, forms)) < 0)
        goto out;
    int cls_mode, cls_first;
    config_cls(e->config, &cls_mode, &cls_first);
    uint64_t off = 0;
    for (uint32_t l = 0; l < r->n_layers; l++, off += r->layer_dims[l - 1]) {
        if (r->layer_ids[l] >= e->n_layers) {
            rc = h2t_err_set(H2T_EINVAL,
                             "job %" PRIu64 ": a head for another model: layer %u of the head is "
                             "not in extraction %u (%u layers)",
                             c->info.job, r->layer_ids[l], e->id, e->n_layers);
            goto out;
        }
        const h2t_layer_info *li = &e->layers[r->layer_ids[l]];
        const char *hn = r->layer_names ? r->layer_names[l] : "";
        if ((hn && hn[0] && strcmp(hn, li->name)) || r->layer_dims[l] != li->dim) {
            rc = h2t_err_set(H2T_EINVAL,
                             "job %" PRIu64 ": a head for another model: its layer %u is '%s' "
                             "(%u features), extraction %u's is '%s' (%u features)",
                             c->info.job, l, hn ? hn : "", r->layer_dims[l], e->id, li->name,
                             li->dim);
            goto out;
        }
        if (r->layer_kept[l] == 0)
            continue;
        int t = h2t_model_tensor_find(full, li->name);
        if (t < 0) {
            rc = h2t_err_set(H2T_EINVAL,
                             "%s: a head for another model: it has no tensor '%s' (layer %u of "
                             "extraction %u)",
                             model_path, li->name, r->layer_ids[l], e->id);
            goto out;
        }
        cls_slot *sl = &c->slots[c->n_slots];
        uint32_t dims[3];
        int k;
        if ((rc = h2t_layer_pool_plan(h2t_model_tensor(full, t), &forms[t], e->target_size,
                                      cls_mode, cls_first, &sl->pool, dims, &k)) < 0)
            goto out;
        if (sl->pool.dim != li->dim) {
            rc = h2t_err_set(H2T_EINVAL,
                             "%s: a head for another model: tensor '%s' pools to %u features, "
                             "the extraction stored %u",
                             model_path, li->name, sl->pool.dim, li->dim);
            goto out;
        }
        snprintf(sl->name, sizeof sl->name, "%s", li->name);
        sl->layer = l;
        sl->offset = off;
        sl->kept0 = 0;
        for (uint32_t q = 0; q < l; q++)
            sl->kept0 += r->layer_kept[q];
        c->n_slots++;
    }
out:
    free(forms);
    return rc;
}

int h2t_classifier_open(h2t_store *st, uint64_t job, const h2t_classifier_opts *o,
                        h2t_classifier **out)
{
    h2t_classifier_opts dflt;
    if (!o) {
        h2t_classifier_opts_init(&dflt);
        o = &dflt;
    }
    h2t_classifier *c = calloc(1, sizeof *c);
    if (!c)
        return h2t_err_set(H2T_ENOMEM, "classifier");
    h2t_job *j = NULL;
    h2t_msg spec = {0};
    h2t_extraction *e = NULL;
    h2t_model *full = NULL;
    uint8_t *model = NULL;
    void *blob = NULL;
    size_t model_len = 0, blob_len = 0;
    const char **names = NULL;
    char path[1200];
    c->info.job = job;
    c->max_pixels = o->max_pixels ? o->max_pixels : DEFAULT_MAX_PIXELS;
    int rc = h2t_store_job_get(st, job, &j);
    if (rc < 0) {
        rc = h2t_err_wrap(rc, "job %" PRIu64 ": ", job);
        goto fail;
    }
    if (j->state != H2T_JOB_DONE) {
        rc = h2t_err_set(H2T_ESTATE, "job %" PRIu64 " is not finished: it is %s%s%s", job,
                         job_state_name(j->state), j->error[0] ? ": " : "", j->error);
        goto fail;
    }
    if ((rc = h2t_store_result_get(st, job, &blob, &blob_len)) < 0 ||
        (rc = h2t_result_decode(blob, blob_len, &c->r)) < 0) {
        rc = h2t_err_wrap(rc, "job %" PRIu64 " result: ", job);
        goto fail;
    }
    if ((rc = h2t_proto_decode(j->spec, j->spec_len, &spec)) < 0 || spec.type != H2T_MSG_TRAIN) {
        rc = h2t_err_set(H2T_ECORRUPT, "job %" PRIu64 ": stored spec is not a train request", job);
        goto fail;
    }
    if ((rc = h2t_store_task_get(st, spec.u.train.task, &c->task)) < 0)
        goto fail;
    if ((rc = h2t_store_extraction_get(st, c->task->extraction, &e)) < 0)
        goto fail;
    h2t_model_rec rec;
    if ((rc = h2t_store_model_get(st, e->model, &rec)) < 0)
        goto fail;
    if (c->r->n_classes != c->task->n_classes) {
        rc = h2t_err_set(H2T_ECORRUPT, "job %" PRIu64 ": the head has %u classes, task %s %u", job,
                         c->r->n_classes, c->task->name, c->task->n_classes);
        goto fail;
    }
    if (o->model_path)
        snprintf(path, sizeof path, "%s", o->model_path);
    else
        snprintf(path, sizeof path, "%s/%s", o->models_dir ? o->models_dir : "models", rec.name);
    if ((rc = h2t_file_read(path, "model file", MAX_MODEL_BYTES, &model, &model_len)) < 0) {
        if (!o->model_path)
            rc = h2t_err_wrap(rc, "extraction %u's model %s: ", e->id, rec.name);
        goto fail;
    }
    uint8_t sha[32];
    h2t_sha256 hs;
    h2t_sha256_init(&hs);
    h2t_sha256_update(&hs, model, model_len);
    h2t_sha256_final(&hs, sha);
    memcpy(c->model_sha, sha, 32);
    if (memcmp(sha, rec.sha256, 32)) {
        char a[65], b[65];
        h2t_hex(sha, 32, a);
        h2t_hex(rec.sha256, 32, b);
        rc = h2t_err_set(H2T_ESTATE,
                         "model file %s has changed since extraction %u (or is another model): "
                         "its sha256 is %.16s..., the extraction's model %s had %.16s...",
                         path, e->id, a, rec.name, b);
        goto fail;
    }
    if ((rc = h2t_model_load_mem(model, model_len, path, &full)) < 0)
        goto fail;
    if ((rc = plan_slots(c, full, e, path)) < 0)
        goto fail;
    if (c->n_slots == 0) {
        rc = h2t_err_set(H2T_EINVAL, "job %" PRIu64 ": the head keeps no feature", job);
        goto fail;
    }
    names = calloc(c->n_slots, sizeof *names);
    if (!names) {
        rc = h2t_err_set(H2T_ENOMEM, "classifier");
        goto fail;
    }
    for (uint32_t s = 0; s < c->n_slots; s++)
        names[s] = c->slots[s].name;
    h2t_model_cost cost;
    if ((rc = h2t_model_cost_get(full, names, (int)c->n_slots, &cost)) < 0)
        goto fail;
    if ((rc = h2t_onnx_prune(model, model_len, path, names, (int)c->n_slots, &c->pruned,
                             &c->pruned_len)) < 0)
        goto fail;
    if ((rc = h2t_model_load_mem(c->pruned, c->pruned_len, path, &c->m)) < 0)
        goto fail;
    for (uint32_t s = 0; s < c->n_slots; s++)
        c->slots[s].tensor = h2t_model_tensor_find(c->m, c->slots[s].name);
    const h2t_tensor_info *in = h2t_model_input(c->m);
    c->prep.c = rec.input_shape[1];
    c->prep.h = rec.input_shape[2];
    c->prep.w = rec.input_shape[3];
    c->prep.lo = -1;
    c->prep.hi = 1;
    if (!in || in->rank != 4 || in->shape[1] != c->prep.c || in->shape[2] != c->prep.h ||
        in->shape[3] != c->prep.w) {
        rc = h2t_err_set(H2T_ESHAPE, "%s: the input is not the stored %ux%ux%u", path, c->prep.c,
                         c->prep.h, c->prep.w);
        goto fail;
    }
    if ((rc = prep_from_record(rec.preprocess, &c->prep, path)) < 0)
        goto fail;
    if ((rc = h2t_exec_create(c->m, 1, &c->x_exec)) < 0)
        goto fail;
    for (uint32_t s = 0; s < c->n_slots; s++)
        if ((rc = h2t_exec_observe(c->x_exec, c->slots[s].tensor, 1)) < 0)
            goto fail;
    uint64_t D = 0;
    for (uint32_t l = 0; l < c->r->n_layers; l++)
        D += c->r->layer_dims[l];
    c->x = calloc(D ? D : 1, sizeof(float));
    c->input = malloc((size_t)c->prep.c * c->prep.h * c->prep.w * sizeof(float));
    c->seen = calloc(c->n_slots, 1);
    if (!c->x || !c->input || !c->seen) {
        rc = h2t_err_set(H2T_ENOMEM, "classifier buffers");
        goto fail;
    }
    h2t_classifier_info *ci = &c->info;
    ci->extraction = e->id;
    snprintf(ci->task, sizeof ci->task, "%s", c->task->name);
    snprintf(ci->model_name, sizeof ci->model_name, "%s", rec.name);
    ci->method = c->r->method;
    ci->n_classes = c->r->n_classes;
    ci->class_names = (const char *const *)c->task->class_names;
    ci->n_layers = c->n_slots;
    ci->n_kept = c->r->n_kept;
    ci->c = c->prep.c;
    ci->h = c->prep.h;
    ci->w = c->prep.w;
    ci->lo = c->prep.lo;
    ci->hi = c->prep.hi;
    snprintf(ci->preprocess, sizeof ci->preprocess, "%s", rec.preprocess);
    snprintf(ci->config, sizeof ci->config, "%s", e->config);
    ci->macs = cost.macs;
    ci->macs_needed = cost.macs_needed;
    ci->nodes = cost.nodes;
    ci->nodes_needed = cost.nodes_needed;
    *out = c;
    c = NULL;
fail:
    free(names);
    h2t_model_destroy(full);
    free(model);
    free(blob);
    h2t_extraction_destroy(e);
    h2t_msg_free(&spec);
    h2t_job_destroy(j);
    h2t_classifier_close(c);
    return rc;
}

void h2t_classifier_close(h2t_classifier *c)
{
    if (!c)
        return;
    h2t_exec_destroy(c->x_exec);
    h2t_model_destroy(c->m);
    free(c->pruned);
    free(c->slots);
    free(c->x);
    free(c->input);
    free(c->seen);
    h2t_result_destroy(c->r);
    h2t_task_destroy(c->task);
    free(c);
}

const h2t_classifier_info *h2t_classifier_info_get(const h2t_classifier *c)
{
    return &c->info;
}

int h2t_classifier_run(h2t_classifier *c, const h2t_image *img, const char *what, float *prob)
{
    if (!what)
        what = "image";
    if ((uint64_t)img->w * img->h > c->max_pixels)
        return h2t_err_set(H2T_ETOOBIG, "image %s: %ux%u pixels, the limit is %" PRIu64, what,
                           img->w, img->h, c->max_pixels);
    if (img->w == 0 || img->h == 0)
        return h2t_err_set(H2T_ESHAPE, "image %s: empty (%ux%u)", what, img->w, img->h);
    int rc = h2t_prep_image(&c->prep, img, c->input);
    if (rc < 0)
        return h2t_err_wrap(rc, "image %s: ", what);
    memset(c->seen, 0, c->n_slots);
    if ((rc = h2t_exec_run(c->x_exec, c->input, 1, on_tensor, c)) < 0)
        return h2t_err_wrap(rc, "image %s: ", what);
    for (uint32_t s = 0; s < c->n_slots; s++)
        if (!c->seen[s])
            return h2t_err_set(H2T_EINVAL, "image %s: tensor '%s' was not computed", what,
                               c->slots[s].name);
    return h2t_result_proba(c->r, c->x, 1, NULL, prob);
}

int h2t_classifier_run_encoded(h2t_classifier *c, const void *buf, size_t len, const char *what,
                               float *prob)
{
    h2t_image img;
    uint8_t *pix = NULL;
    int rc = h2t_image_decode(buf, len, what ? what : "image", &img, &pix);
    if (rc == 0)
        rc = h2t_classifier_run(c, &img, what, prob);
    free(pix);
    return rc;
}
