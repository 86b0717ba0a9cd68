/*
 * extract/extract.c - the one-pass extraction driver: plan (model + data + preprocessing +
 * layer table + pooling, nothing written), then register source and model, begin or find the
 * extraction by its config hash, and run the missing batches, each written with its progress
 * marker in one store transaction. See extract/extract.h.
 */
#include "extract/extract.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LAYER_RULE_VERSION "v1"
/* The forms rule (batch axis, channel axis, class tokens, attention; the reference's 3-D
 * window): named in the identity of every extraction it changes (see plan_layers). */
#define FORMS_RULE_VERSION "v1"
#define MAX_FILE_BYTES ((size_t)4 << 30)

/* Derived layers. Head2Toe pooling averages within channels, so a layer that is affine in
 * other selected layers, channel by channel, has features affine in theirs: a
 * BatchNormalization output's window averages are a[c] * (its input's) + b[c]; an Add of two
 * same-shaped tensors has the sum of their features; a zero Pad of the spatial axes whose
 * windows cover the same input cells (the same grid, nothing padded before) has its input's
 * features, and a globally averaged one has them times (H W of the input) / (H W of the
 * output). Such a layer is never observed (so the executor need not write its tensor: BN
 * stays in the conv chain's registers, the Pad folds into the next conv's padding) and its
 * features are computed from its sources' pooled features, in double, once the sample's
 * forward pass is done. The numbers differ from pooling the tensor itself only by float
 * rounding (the tensor's own elements are rounded before they are summed; tested against
 * opts.pool_direct), and the identity says "pool=derived". */
typedef struct derive {
    int kind;      /* H2T_LIN_*: NONE = pooled from the layer's own tensor */
    int src[2];    /* source layers (earlier in the table) */
    double *a, *b; /* AFFINE, per channel, OWNED */
    double scale;  /* PAD */
} derive;

struct h2t_extract_plan {
    h2t_extract_opts o;
    char model_path[1024], name[128], source_name[128], regex[256];
    uint8_t *model_buf;
    size_t model_len;
    uint8_t model_sha[32];
    h2t_model *m;
    h2t_data *d;
    h2t_prep prep;
    char prep_desc[256];
    uint32_t n_samples; /* planned: limit applied, the shard's range when sharded */
    uint32_t base;      /* the source sample of planned sample 0 (a shard's first) */
    int fb;             /* samples per forward pass */
    uint32_t n_layers;
    int *tensors;           /* tensor index of each layer */
    h2t_pool_plan *pools;   /* pooling of each layer */
    h2t_layer_info *layers; /* the layer table for the store */
    int *layer_of;          /* tensor index -> layer or -1 */
    derive *der;            /* per layer: how a derived layer follows from others */
    int *bax;               /* per layer: the tensor's batch axis */
    h2t_layer_sel sel;      /* the layer rule's choice (forms, passed-over tensors) */
    int forms_tag;          /* 1: the identity names the forms rule and the class-token mode */
    uint32_t n_derived;
    uint64_t total_dim;
    char config[512];
    uint8_t config_hash[32];
};

void h2t_extract_opts_init(h2t_extract_opts *o)
{
    memset(o, 0, sizeof *o);
    o->target_size = 512;
    o->n_train = UINT32_MAX;
    o->n_test = UINT32_MAX;
    o->batch = 32;
    o->forward_batch = 1;
    o->dtype = H2T_DTYPE_F32;
}

/* Ops whose output only moves, copies or describes values (the v1 rule's exclusions). */
static int pure_op(const char *op)
{
    static const char *const ops[] = {
        "Reshape", "Flatten", "Identity", "Dropout", "Squeeze",  "Unsqueeze",       "Transpose",
        "Expand",  "Cast",    "Shape",    "Size",    "Constant", "ConstantOfShape", NULL,
    };
    for (const char *const *o = ops; *o; o++)
        if (!strcmp(op, *o))
            return 1;
    return 0;
}

int h2t_layer_rule_default(const h2t_tensor_info *t)
{
    return !t->is_input && t->rank >= 2 && t->rank <= 4 && !pure_op(t->op);
}

void h2t_layer_sel_free(h2t_layer_sel *s)
{
    free(s->idx);
    free(s->forms);
    free(s->skip);
    memset(s, 0, sizeof *s);
}

/* The default rule (extract.h "Layer rule"): a computed tensor is taken when a sample can be
 * read from it; a pure op's output is taken only when its input could not be read (the
 * first readable view of data whose batch was folded). covered[t]: t's numbers are in a
 * selected layer, a graph input or constants. */
int h2t_layers_choose(const h2t_model *m, const char *regex, h2t_layer_sel *out)
{
    memset(out, 0, sizeof *out);
    regex_t re;
    if (regex) {
        int e = regcomp(&re, regex, REG_EXTENDED | REG_NOSUB);
        if (e) {
            char msg[128];
            regerror(e, &re, msg, sizeof msg);
            return h2t_err_set(H2T_EINVAL, "layer regex '%s': %s", regex, msg);
        }
    }
    int nt = h2t_model_n_tensors(m), rc = 0;
    size_t cap = (size_t)(nt ? nt : 1);
    h2t_tensor_form *forms = malloc(sizeof *forms * cap);
    uint8_t *covered = calloc(cap, 1);
    out->idx = malloc(sizeof(int) * cap);
    out->forms = malloc(sizeof *out->forms * cap);
    out->skip = malloc(sizeof *out->skip * cap);
    if (!forms || !covered || !out->idx || !out->forms || !out->skip) {
        rc = h2t_err_set(H2T_ENOMEM, "layer list");
        goto out;
    }
    if ((rc = h2t_model_tensor_forms(m, forms)) < 0)
        goto out;
    for (int i = 0; i < nt; i++) {
        const h2t_tensor_info *t = h2t_model_tensor(m, i);
        const h2t_tensor_form *f = &forms[i];
        int in_range = t->rank < 0 || (t->rank >= 2 && t->rank <= 4);
        int sel = 0;
        const char *why = NULL;
        if (t->is_input || t->is_static || t->dtype != 1) {
            covered[i] = 1; /* the input, data computed before the run, masks */
            continue;
        }
        if (regex) {
            if (regexec(&re, t->name, 0, NULL, 0) != 0 || !in_range)
                continue;
            sel = f->form != H2T_FORM_NONE;
            why = f->why;
        } else if (pure_op(t->op)) {
            int src = h2t_model_tensor_src(m, i);
            covered[i] = src < 0 || covered[src];
            if (covered[i] || f->form == H2T_FORM_NONE || f->form == H2T_FORM_ATTN ||
                f->form == H2T_FORM_HEADS)
                continue;
            sel = 1; /* the first readable view of a folded tensor */
        } else if (f->form == H2T_FORM_ATTN) {
            covered[i] = 1;
            why = "attention weights: left out by default (--layers selects them)";
        } else if (f->form == H2T_FORM_HEADS) {
            why = "attention heads apart (q, k, v, scores, per-head values): left out by default "
                  "(--layers selects them)";
        } else if (f->form == H2T_FORM_NONE) {
            why = in_range ? f->why : NULL;
        } else {
            sel = 1;
        }
        if (sel) {
            covered[i] = 1;
            out->forms[out->n] = *f;
            out->idx[out->n++] = i;
        } else if (why) {
            out->skip[out->n_skip].tensor = i;
            out->skip[out->n_skip++].why = why;
        }
    }
    if (out->n == 0) {
        const char *first = out->n_skip ? out->skip[0].why : "";
        const char *name = out->n_skip ? h2t_model_tensor(m, out->skip[0].tensor)->name : "";
        rc = regex ? h2t_err_set(H2T_ENOTFOUND,
                                 "no tensor of rank 2-4 that can be pooled matches '%s' (%d passed "
                                 "over%s%s%s%s)",
                                 regex, out->n_skip, out->n_skip ? ", e.g. '" : "", name,
                                 out->n_skip ? "': " : "", first)
                   : h2t_err_set(H2T_ENOTFOUND,
                                 "the layer rule selects no tensor (%d passed over%s%s%s%s)",
                                 out->n_skip, out->n_skip ? ", e.g. '" : "", name,
                                 out->n_skip ? "': " : "", first);
    }
out:
    free(forms);
    free(covered);
    if (regex)
        regfree(&re);
    return rc;
}

int h2t_layers_select(const h2t_model *m, const char *regex, int **idx, int *n)
{
    h2t_layer_sel s;
    int rc = h2t_layers_choose(m, regex, &s);
    if (rc == 0) {
        *idx = s.idx;
        *n = s.n;
        s.idx = NULL;
    }
    h2t_layer_sel_free(&s);
    return rc;
}

static const char *base_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int same_pool(const h2t_pool_plan *a, const h2t_pool_plan *b)
{
    return a->kind == b->kind && a->c == b->c && a->h == b->h && a->w == b->w && a->ph == b->ph &&
           a->pw == b->pw && a->oh == b->oh && a->ow == b->ow && a->dim == b->dim &&
           a->form == b->form && a->cls == b->cls && a->t0 == b->t0 && a->lead == b->lead;
}

/* One average over each whole channel plane: GAP, or a 1 x 1 grid whose window is the plane. */
static int whole_plane(const h2t_pool_plan *p)
{
    return p->kind == H2T_POOL_GAP ||
           (p->kind == H2T_POOL_GRID && p->oh == 1 && p->ow == 1 && p->ph == p->h && p->pw == p->w);
}

/* Which layers follow from earlier layers (see "Derived layers" above). */
static int plan_derived(h2t_extract_plan *p)
{
    if (!(p->der = calloc(p->n_layers, sizeof *p->der)))
        return h2t_err_set(H2T_ENOMEM, "layer table");
    for (uint32_t l = 0; l < p->n_layers; l++) {
        h2t_tensor_lin lin;
        int rc = h2t_model_tensor_lin(p->m, p->tensors[l], &lin);
        if (rc < 0)
            return rc;
        derive *d = &p->der[l];
        const h2t_pool_plan *y = &p->pools[l];
        int s0 = lin.src[0] >= 0 ? p->layer_of[lin.src[0]] : -1;
        int s1 = lin.src[1] >= 0 ? p->layer_of[lin.src[1]] : -1;
        const h2t_pool_plan *x0 = s0 >= 0 && (uint32_t)s0 < l ? &p->pools[s0] : NULL;
        const h2t_pool_plan *x1 = s1 >= 0 && (uint32_t)s1 < l ? &p->pools[s1] : NULL;
        int grid4 =
            (y->kind == H2T_POOL_GAP || y->kind == H2T_POOL_GRID) && y->form == H2T_FORM_NCHW;
        if (lin.kind == H2T_LIN_AFFINE && x0 && grid4 && same_pool(x0, y) &&
            lin.channels == (int64_t)y->c) {
            d->kind = H2T_LIN_AFFINE;
            d->a = lin.a;
            d->b = lin.b;
            lin.a = lin.b = NULL;
        } else if (lin.kind == H2T_LIN_SUM && x0 && x1 && same_pool(x0, y) && same_pool(x1, y)) {
            d->kind = H2T_LIN_SUM;
        } else if (lin.kind == H2T_LIN_PAD && x0 && x0->c == y->c && grid4 &&
                   x0->form == H2T_FORM_NCHW) {
            if (y->kind == H2T_POOL_GRID && x0->kind == H2T_POOL_GRID && x0->ph == y->ph &&
                x0->pw == y->pw && x0->oh == y->oh && x0->ow == y->ow && lin.pads[0] == 0 &&
                lin.pads[1] == 0) {
                d->kind = H2T_LIN_PAD; /* the same cells: oh * ph <= the input's H */
                d->scale = 1;
            } else if (whole_plane(y) && whole_plane(x0)) {
                d->kind = H2T_LIN_PAD;
                d->scale = (double)x0->h * x0->w / ((double)y->h * y->w);
            }
        }
        h2t_tensor_lin_free(&lin);
        if (d->kind != H2T_LIN_NONE) {
            d->src[0] = s0;
            d->src[1] = s1;
            p->n_derived++;
        }
    }
    return 0;
}

/* The derived layers' features of rows row0 .. row0 + nb - 1 of bufs, in layer order (a
 * source is always an earlier layer, computed or derived before). */
static void derive_rows(const h2t_extract_plan *p, float **bufs, int row0, int nb, uint8_t *seen)
{
    for (uint32_t l = 0; p->n_derived && l < p->n_layers; l++) {
        const derive *d = &p->der[l];
        if (d->kind == H2T_LIN_NONE)
            continue;
        size_t dim = p->layers[l].dim;
        uint32_t C = p->pools[l].c;
        for (int s = row0; s < row0 + nb; s++) {
            float *y = bufs[l] + (size_t)s * dim;
            const float *x0 = bufs[d->src[0]] + (size_t)s * dim;
            if (d->kind == H2T_LIN_AFFINE) {
                /* (H, W, C) order: dim / C cells of C channels (no division per feature) */
                for (size_t f0 = 0; f0 < dim; f0 += C)
                    for (uint32_t c = 0; c < C; c++)
                        y[f0 + c] = (float)(d->a[c] * (double)x0[f0 + c] + d->b[c]);
            } else if (d->kind == H2T_LIN_SUM) {
                const float *x1 = bufs[d->src[1]] + (size_t)s * dim;
                for (size_t f = 0; f < dim; f++)
                    y[f] = (float)((double)x0[f] + (double)x1[f]);
            } else if (d->scale == 1) {
                memcpy(y, x0, sizeof(float) * dim);
            } else {
                for (size_t f = 0; f < dim; f++)
                    y[f] = (float)(d->scale * (double)x0[f]);
            }
        }
        if (seen)
            seen[l] = 1;
    }
}

/* Whether the v1 rule (one form per rank, batch first, the integer 3-D window) would take
 * the same tensors and pool them the same way: then the identity stays v1's. */
static int same_as_v1(const h2t_extract_plan *p)
{
    int nt = h2t_model_n_tensors(p->m), same = 1;
    uint32_t l = 0;
    regex_t re;
    if (p->o.layers_regex && regcomp(&re, p->o.layers_regex, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    for (int i = 0; i < nt && same; i++) {
        const h2t_tensor_info *t = h2t_model_tensor(p->m, i);
        if (t->is_static || t->dtype != 1)
            continue; /* never data: neither rule takes it */
        int v1 = p->o.layers_regex ? !t->is_input && t->rank >= 2 && t->rank <= 4 &&
                                         regexec(&re, t->name, 0, NULL, 0) == 0
                                   : h2t_layer_rule_default(t);
        if (!v1)
            continue;
        int f = l < p->n_layers ? p->pools[l].form : H2T_FORM_NONE;
        same = l < p->n_layers && p->tensors[l] == i && (f == H2T_FORM_FLAT || f == H2T_FORM_NCHW);
        l++;
    }
    if (p->o.layers_regex)
        regfree(&re);
    return same && l == p->n_layers;
}

int h2t_layer_pool_plan(const h2t_tensor_info *t, const h2t_tensor_form *f, uint32_t target,
                        int cls_mode, int cls_first, h2t_pool_plan *out, uint32_t dims[3],
                        int *n_dims)
{
    int tokens = f->form == H2T_FORM_NLC || f->form == H2T_FORM_LNC;
    int cls = tokens && (f->cls || cls_first) ? cls_mode : H2T_CLS_POOL;
    int k = 0;
    dims[0] = dims[1] = dims[2] = 0;
    int folded = t->batch_axis == H2T_BATCH_FOLDED; /* N*heads x Lq x Lk: heads x Lq x Lk */
    if (folded)
        dims[k++] = t->batch_fold > 0 && t->batch_fold <= UINT32_MAX ? (uint32_t)t->batch_fold : 0;
    for (int a = folded; a < t->rank && k < 3; a++)
        if (a != t->batch_axis)
            dims[k++] = t->shape[a] > 0 && t->shape[a] <= UINT32_MAX ? (uint32_t)t->shape[a] : 0;
    *n_dims = k;
    int rc = h2t_pool_plan_form(f->form, dims, target, cls, out);
    if (rc < 0)
        return h2t_err_wrap(rc, "tensor '%s' (%s): ", t->name, t->op);
    return 0;
}

static int plan_layers(h2t_extract_plan *p)
{
    int rc = h2t_layers_choose(p->m, p->o.layers_regex, &p->sel);
    if (rc < 0)
        return rc;
    int n = p->sel.n;
    p->tensors = p->sel.idx;
    p->sel.idx = NULL;
    p->n_layers = (uint32_t)n;
    int nt = h2t_model_n_tensors(p->m);
    p->pools = calloc((size_t)n, sizeof *p->pools);
    p->layers = calloc((size_t)n, sizeof *p->layers);
    p->bax = calloc((size_t)n, sizeof *p->bax);
    p->layer_of = malloc(sizeof(int) * (size_t)nt);
    if (!p->pools || !p->layers || !p->bax || !p->layer_of)
        return h2t_err_set(H2T_ENOMEM, "layer table");
    for (int i = 0; i < nt; i++)
        p->layer_of[i] = -1;
    int n_cls = 0;
    for (int l = 0; l < n; l++) {
        const h2t_tensor_info *t = h2t_model_tensor(p->m, p->tensors[l]);
        const h2t_tensor_form *f = &p->sel.forms[l];
        int tokens = f->form == H2T_FORM_NLC || f->form == H2T_FORM_LNC;
        n_cls += tokens && (f->cls || p->o.cls_first);
        uint32_t dims[3];
        int k;
        p->bax[l] = t->batch_axis;
        if ((rc = h2t_layer_pool_plan(t, f, p->o.target_size, p->o.cls, p->o.cls_first,
                                      &p->pools[l], dims, &k)) < 0)
            return rc;
        h2t_layer_info *li = &p->layers[l];
        if (strlen(t->name) >= sizeof li->name)
            return h2t_err_set(H2T_ETOOBIG, "tensor name longer than %zu bytes: %.64s...",
                               sizeof li->name - 1, t->name);
        snprintf(li->name, sizeof li->name, "%s", t->name);
        snprintf(li->op, sizeof li->op, "%s", t->op);
        li->rank = (uint32_t)(t->rank + (t->batch_axis == H2T_BATCH_FOLDED)); /* with the batch */
        for (int a = 0; a < k; a++)
            li->shape[a] = dims[a];
        li->dim = p->pools[l].dim;
        li->offset = p->total_dim;
        p->total_dim += li->dim;
        p->layer_of[p->tensors[l]] = l;
    }
    if (p->o.cls != H2T_CLS_POOL && n_cls == 0)
        return h2t_err_set(H2T_EINVAL,
                           "%s: --cls %s: no selected token tensor carries a class token (none "
                           "is computed from a Concat that prepends a learned token); "
                           "--cls-token first treats token 0 of every token tensor as one",
                           p->o.model_path, p->o.cls == H2T_CLS_ONLY ? "only" : "apart");
    p->forms_tag = !same_as_v1(p) || p->o.cls != H2T_CLS_POOL || p->o.cls_first;
    return p->o.pool_direct ? 0 : plan_derived(p);
}

int h2t_extract_plan_create(const h2t_extract_opts *o, h2t_extract_plan **out)
{
    if (!o->model_path || !o->data_spec)
        return h2t_err_set(H2T_EINVAL, "a model and a data source are required");
    if (o->target_size == 0)
        return h2t_err_set(H2T_EINVAL, "target size 0");
    if (o->batch < 1 || o->batch > 4096)
        return h2t_err_set(H2T_EINVAL, "batch %d (1..4096)", o->batch);
    if (o->dtype != H2T_DTYPE_F32 && o->dtype != H2T_DTYPE_F16)
        return h2t_err_set(H2T_EINVAL, "dtype %u", o->dtype);
    if (o->forward_batch < 0 || o->forward_batch > 4096)
        return h2t_err_set(H2T_EINVAL, "forward batch %d (1..4096)", o->forward_batch);
    if (o->cls != H2T_CLS_POOL && o->cls != H2T_CLS_ONLY && o->cls != H2T_CLS_APART)
        return h2t_err_set(H2T_EINVAL, "class-token mode %d", o->cls);
    if (o->has_scale && !(o->scale_lo != o->scale_hi))
        return h2t_err_set(H2T_EINVAL, "scale %g,%g", (double)o->scale_lo, (double)o->scale_hi);
    h2t_extract_plan *p = calloc(1, sizeof *p);
    if (!p)
        return h2t_err_set(H2T_ENOMEM, "plan");
    int rc;
    p->o = *o;
    /* Batched matrix products may differ in the last bits with the batch size, so a forward
     * batch above 1 is part of the identity, and commits hold whole forward batches so that
     * forward batches always start at multiples of fb whatever --batch is. */
    p->fb = o->forward_batch > 0 ? o->forward_batch : 1;
    if (p->o.batch % p->fb)
        p->o.batch += p->fb - p->o.batch % p->fb;
    /* keep copies of the borrowed strings: the plan may outlive the caller's buffers */
    snprintf(p->model_path, sizeof p->model_path, "%s", o->model_path);
    p->o.model_path = p->model_path;
    p->o.data_spec = NULL; /* only used here */
    if (o->name) {
        if (strlen(o->name) >= sizeof p->name) {
            rc = h2t_err_set(H2T_EINVAL, "name longer than %zu bytes", sizeof p->name - 1);
            goto fail;
        }
        snprintf(p->name, sizeof p->name, "%s", o->name);
        p->o.name = p->name;
    }
    if (o->source_name) {
        snprintf(p->source_name, sizeof p->source_name, "%s", o->source_name);
        p->o.source_name = p->source_name;
    }
    if (o->layers_regex) {
        if (strlen(o->layers_regex) >= sizeof p->regex) {
            rc = h2t_err_set(H2T_EINVAL, "layer regex longer than %zu bytes", sizeof p->regex - 1);
            goto fail;
        }
        snprintf(p->regex, sizeof p->regex, "%s", o->layers_regex);
        p->o.layers_regex = p->regex;
    }

    /* the model: one read serves the hash, the metadata and the parser */
    if ((rc = h2t_file_read(o->model_path, "model file", MAX_FILE_BYTES, &p->model_buf,
                            &p->model_len)) < 0)
        goto fail;
    h2t_sha256 hs;
    h2t_sha256_init(&hs);
    h2t_sha256_update(&hs, p->model_buf, p->model_len);
    h2t_sha256_final(&hs, p->model_sha);
    if ((rc = h2t_model_load_mem(p->model_buf, p->model_len, o->model_path, &p->m)) < 0)
        goto fail;
    for (int i = 0; i < h2t_model_n_tensors(p->m); i++) {
        const h2t_tensor_info *t = h2t_model_tensor(p->m, i);
        if (t->is_input && t->dtype != 1) {
            rc = h2t_err_set(H2T_EUNSUPPORTED,
                             "%s: model input '%s' is not float32 data (ONNX type %d): h2tdb "
                             "extract feeds one float32 image tensor N x C x H x W",
                             o->model_path, t->name, t->dtype);
            goto fail;
        }
    }
    const h2t_tensor_info *in = h2t_model_input(p->m);
    if (!in || in->rank != 4 || in->shape[1] <= 0 || in->shape[2] <= 0 || in->shape[3] <= 0) {
        rc = h2t_err_set(H2T_EUNSUPPORTED,
                         "%s: the model input must be N x C x H x W with fixed C, H, W",
                         o->model_path);
        goto fail;
    }
    if (in->shape[0] > 0 && in->shape[0] < p->fb) {
        rc = h2t_err_set(H2T_ESHAPE, "%s: the model takes batches of %lld, the forward batch is %d",
                         o->model_path, (long long)in->shape[0], p->fb);
        goto fail;
    }
    p->prep.c = (uint32_t)in->shape[1];
    p->prep.h = (uint32_t)in->shape[2];
    p->prep.w = (uint32_t)in->shape[3];
    p->prep.lo = -1;
    p->prep.hi = 1;
    char meta[256];
    int found;
    if ((rc = h2t_prep_model_metadata(p->model_buf, p->model_len, "h2tdb.preprocess", meta,
                                      sizeof meta, &found)) < 0)
        goto fail;
    if (found && (rc = h2t_prep_parse(meta, &p->prep)) < 0) {
        rc = h2t_err_wrap(rc, "%s: metadata h2tdb.preprocess: ", o->model_path);
        goto fail;
    }
    if (o->has_scale) {
        p->prep.lo = o->scale_lo;
        p->prep.hi = o->scale_hi;
    }

    /* the data */
    if ((rc = h2t_data_open(o->data_spec, &p->d)) < 0)
        goto fail;
    if ((o->n_train != UINT32_MAX || o->n_test != UINT32_MAX) &&
        (rc = h2t_data_select(p->d, o->n_train, o->n_test)) < 0)
        goto fail;
    /* every image's header now, before any store is opened: not after batches were stored */
    if ((rc = h2t_data_check(p->d)) < 0)
        goto fail;
    const h2t_data_info *di = h2t_data_info_get(p->d);
    if (di->pixel == H2T_PIX_F32 &&
        (di->c != p->prep.c || di->h != p->prep.h || di->w != p->prep.w)) {
        rc = h2t_err_set(H2T_ESHAPE,
                         "%s: float32 tensors are %ux%ux%u but the model takes %ux%ux%u "
                         "(float tensors are used as-is)",
                         o->data_spec, di->c, di->h, di->w, p->prep.c, p->prep.h, p->prep.w);
        goto fail;
    }
    if (di->pixel == H2T_PIX_U8 && p->prep.c != 1 && p->prep.c != 3) {
        rc = h2t_err_set(H2T_ESHAPE, "%s: the model takes %u channels; images give 1 or 3",
                         o->model_path, p->prep.c);
        goto fail;
    }
    p->n_samples = di->n_samples;
    if (o->limit && o->limit < p->n_samples)
        p->n_samples = o->limit;
    uint32_t whole_n = p->n_samples;
    if (o->shard_n) {
        if (o->shard_i >= o->shard_n || o->shard_n > whole_n) {
            rc = h2t_err_set(H2T_EINVAL,
                             "shard %u/%u: the shard must be below the count (0..%u) and the "
                             "count at most the %u samples",
                             o->shard_i, o->shard_n, o->shard_n - 1, whole_n);
            goto fail;
        }
        uint32_t lo, hi;
        h2t_extract_shard_range(whole_n, o->shard_i, o->shard_n, &lo, &hi);
        p->base = lo;
        p->n_samples = hi - lo;
    }
    h2t_prep_describe(&p->prep, di->pixel, p->prep_desc, sizeof p->prep_desc);

    if ((rc = plan_layers(p)) < 0)
        goto fail;

    /* identity: everything that changes the numbers */
    char fbs[128] = "";
    if (p->fb > 1)
        snprintf(fbs, sizeof fbs, " forward-batch=%d", p->fb);
    /* the pooling: nothing for the first order with every layer pooled from its tensor (the
     * identity of stores made before derived layers existed) */
    if (p->n_derived || H2T_POOL_ORDER > 1) {
        size_t fl = strlen(fbs);
        snprintf(fbs + fl, sizeof fbs - fl, " pool=%s", p->n_derived ? "derived" : "direct");
        fl = strlen(fbs);
        if (H2T_POOL_ORDER > 1)
            snprintf(fbs + fl, sizeof fbs - fl, "-o%d", H2T_POOL_ORDER);
    }
    /* the forms rule and the class-token mode: only where they change what v1 did */
    if (p->forms_tag) {
        static const char *const cls_names[] = {"pool", "only", "apart"};
        size_t fl = strlen(fbs);
        snprintf(fbs + fl, sizeof fbs - fl, " forms=%s cls=%s%s", FORMS_RULE_VERSION,
                 cls_names[p->o.cls], p->o.cls_first ? "-first" : "");
    }
    char mh[65], sh[65], full[2048];
    h2t_hex(p->model_sha, 32, mh);
    h2t_hex(di->hash, 32, sh);
    int len = snprintf(full, sizeof full,
                       "model=%s source=%s samples=%u target=%u dtype=%s layers=%s%s %s%s", mh, sh,
                       whole_n, o->target_size, o->dtype == H2T_DTYPE_F16 ? "f16" : "f32",
                       o->layers_regex ? "regex:" : "default-" LAYER_RULE_VERSION,
                       o->layers_regex ? o->layers_regex : "", p->prep_desc, fbs);
    if (len < 0 || (size_t)len >= sizeof full) {
        rc = h2t_err_set(H2T_EINVAL, "configuration too long");
        goto fail;
    }
    h2t_sha256_init(&hs);
    h2t_sha256_update(&hs, full, (size_t)len);
    h2t_sha256_final(&hs, p->config_hash);
    /* the stored, human-readable config: short hashes (the full ones are in the records) */
    len = snprintf(p->config, sizeof p->config,
                   "model=%.16s source=%.16s samples=%u target=%u dtype=%s layers=%s%s %s%s", mh,
                   sh, whole_n, o->target_size, o->dtype == H2T_DTYPE_F16 ? "f16" : "f32",
                   o->layers_regex ? "regex:" : "default-" LAYER_RULE_VERSION,
                   o->layers_regex ? o->layers_regex : "", p->prep_desc, fbs);
    if (o->shard_n) {
        /* a shard: the whole extraction's identity plus the shard; the stored config names
         * the whole one's hash for the merge */
        char whole[65], tail[128];
        h2t_hex(p->config_hash, 32, whole);
        snprintf(tail, sizeof tail, " shard=%u/%u", o->shard_i, o->shard_n);
        int clen = len;
        len += snprintf(full + len, sizeof full - (size_t)len, "%s", tail);
        clen +=
            snprintf(p->config + clen, sizeof p->config - (size_t)clen, "%s of=%s", tail, whole);
        if ((size_t)len >= sizeof full || (size_t)clen >= sizeof p->config) {
            rc = h2t_err_set(H2T_EINVAL, "configuration too long for a shard");
            goto fail;
        }
        h2t_sha256_init(&hs);
        h2t_sha256_update(&hs, full, (size_t)len);
        h2t_sha256_final(&hs, p->config_hash);
    }
    *out = p;
    return 0;
fail:
    h2t_extract_plan_destroy(p);
    return rc;
}

void h2t_extract_shard_range(uint32_t n_samples, uint32_t i, uint32_t n, uint32_t *lo, uint32_t *hi)
{
    h2t_store_shard_range(n_samples, i, n, lo, hi);
}

int h2t_extract_shard_parse(const char *config, uint32_t *i, uint32_t *n, uint8_t hash[32],
                            char *whole, size_t wlen, uint32_t *n_samples)
{
    return h2t_store_shard_parse(config, i, n, hash, whole, wlen, n_samples);
}

void h2t_extract_plan_destroy(h2t_extract_plan *p)
{
    if (!p)
        return;
    h2t_data_close(p->d);
    h2t_model_destroy(p->m);
    free(p->model_buf);
    free(p->tensors);
    free(p->pools);
    free(p->layers);
    free(p->layer_of);
    free(p->bax);
    h2t_layer_sel_free(&p->sel);
    for (uint32_t l = 0; p->der && l < p->n_layers; l++) {
        free(p->der[l].a);
        free(p->der[l].b);
    }
    free(p->der);
    free(p);
}

const h2t_layer_info *h2t_extract_plan_layers(const h2t_extract_plan *p, uint32_t *n,
                                              uint64_t *total_dim)
{
    if (n)
        *n = p->n_layers;
    if (total_dim)
        *total_dim = p->total_dim;
    return p->layers;
}

void h2t_extract_plan_describe(const h2t_extract_plan *p, uint32_t l, char *buf, size_t n)
{
    if (!n)
        return;
    buf[0] = '\0';
    if (l >= p->n_layers)
        return;
    const h2t_pool_plan *q = &p->pools[l];
    const char *fn = h2t_form_name(q->form);
    switch (q->kind) {
    case H2T_POOL_FLAT:
        snprintf(buf, n, "%s, as is -> %u", fn, q->c);
        break;
    case H2T_POOL_GAP:
        snprintf(buf, n, "%s, mean -> %u", fn, q->dim);
        break;
    case H2T_POOL_GRID:
        snprintf(buf, n, "%s, %ux%u windows -> %ux%ux%u", fn, q->ph, q->pw, q->oh, q->ow, q->c);
        break;
    case H2T_POOL_CLS:
        snprintf(buf, n, "%s, class token only -> %u", fn, q->c);
        break;
    case H2T_POOL_TMEAN:
        if (q->lead)
            snprintf(buf, n, "%s, class token + mean of %u -> %u + %u", fn, q->h - 1, q->c, q->c);
        else
            snprintf(buf, n, "%s, mean -> %u", fn, q->c);
        break;
    default:
        if (q->lead)
            snprintf(buf, n, "%s, class token + %u-token windows of %u -> %u + %ux%u", fn, q->ph,
                     q->h - 1, q->c, q->oh, q->c);
        else
            snprintf(buf, n, "%s, %u-token windows -> %ux%u", fn, q->ph, q->oh, q->c);
        break;
    }
}

const h2t_layer_skip *h2t_extract_plan_skipped(const h2t_extract_plan *p, int *n)
{
    *n = p->sel.n_skip;
    return p->sel.skip;
}

const h2t_model *h2t_extract_plan_model(const h2t_extract_plan *p)
{
    return p->m;
}

/* ---- the pass ---- */

/* CPU seconds of the process (every thread: BLAS and pooling threads included), or of the
 * calling thread. On a shared machine the wall-clock split is skewed by waiting; the CPU
 * split is not. */
static double cpu_s(int this_thread)
{
    struct timespec ts;
    clock_gettime(this_thread ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct pool_part {
    const h2t_pool_plan *pp;
    const float *data;
    float *dst;
    int nb;
    int s0, s1;
} pool_part;

static void *pool_part_run(void *arg)
{
    pool_part *j = arg;
    for (int s = j->s0; s < j->s1; s++)
        h2t_pool_apply_sample(j->pp, j->data, j->nb, s, j->dst + (size_t)s * j->pp->dim);
    return NULL;
}

#define POOL_MAX_THREADS 16
#define POOL_MIN_FLOATS (1 << 16) /* below this a thread costs more than it saves */

/* Pool the nb samples of one tensor, split over up to nt threads (sample ranges). A thread
 * that cannot be started leaves its range to the calling thread. */
static void pool_batch(const h2t_pool_plan *pp, const float *data, int nb, float *dst, int nt)
{
    if (nt > POOL_MAX_THREADS)
        nt = POOL_MAX_THREADS;
    if (nt > nb)
        nt = nb;
    if (nt < 2 || h2t_pool_sample_floats(pp) * (size_t)nb < POOL_MIN_FLOATS) {
        pool_part j = {pp, data, dst, nb, 0, nb};
        pool_part_run(&j);
        return;
    }
    pool_part parts[POOL_MAX_THREADS];
    pthread_t th[POOL_MAX_THREADS];
    int started[POOL_MAX_THREADS] = {0};
    for (int t = 0; t < nt; t++) {
        parts[t] = (pool_part){pp, data, dst, nb, nb * t / nt, nb * (t + 1) / nt};
        if (t > 0)
            started[t] = pthread_create(&th[t], NULL, pool_part_run, &parts[t]) == 0;
    }
    pool_part_run(&parts[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            pool_part_run(&parts[t]);
    }
}

/* A cheap clock for the pooling callbacks (up to ~900 per MobileNetV2 image): the time-stamp
 * counter on x86-64 (about 10 ns to read, constant rate on CPUs of the last decade; only
 * ratios of it are used), else the wall clock in ns. */
static inline uint64_t pool_ticks(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_ia32_rdtsc();
#else
    return (uint64_t)(h2t_now_s() * 1e9);
#endif
}

typedef struct run_ctx {
    h2t_extract_plan *p;
    int pool_threads;
    float **bufs; /* per layer: batch x dim */
    uint8_t *seen;
    int nb, row0;          /* samples in this forward run, and their first row in bufs */
    double t_pool, c_pool; /* wall and CPU seconds in pooling */
    double t_run;          /* wall seconds in forward runs (not thread_clock: the caller splits
                            * the runs' CPU by t_pool / t_run) */
    uint64_t ticks_pool;   /* ticks (pool_ticks) in pooling during the current forward run */
    uint32_t ranges;       /* on_range calls, for timing one in RANGE_TIMED */
    uint32_t runs;         /* forward runs so far: the timed calls' phase */
    int thread_clock;      /* c_pool from this thread's CPU clock (sample workers) */
    void **states;         /* per layer: streaming pooling state (h2t_pool_stream), then per
                            * layer the blocked one (h2t_pool_stream_blk); lazy */
} run_ctx;

/* The layer of a reported tensor (*l = -1: not a layer), its shape checked against the plan
 * (batch c->nb), and its floats per sample. H2T_ESHAPE names the tensor. */
static int reported_layer(const run_ctx *c, int tensor, const int64_t *shape, int rank, int *l,
                          size_t *per)
{
    const h2t_extract_plan *p = c->p;
    *l = tensor >= 0 && tensor < h2t_model_n_tensors(p->m) ? p->layer_of[tensor] : -1;
    if (*l < 0)
        return 0;
    const h2t_layer_info *li = &p->layers[*l];
    int ba = p->bax[*l], folded = ba == H2T_BATCH_FOLDED;
    int64_t nb = folded ? (int64_t)c->nb * li->shape[0] : c->nb; /* N*heads x Lq x Lk */
    if (folded)
        ba = 0;
    if ((uint32_t)(rank + folded) != li->rank || shape[ba] != nb)
        return h2t_err_set(H2T_ESHAPE,
                           "tensor '%s': rank %d batch %lld (axis %d), planned rank %u batch %lld",
                           li->name, rank, (long long)shape[ba], ba, li->rank, (long long)nb);
    *per = folded ? li->shape[0] : 1;
    for (int k = 0, j = folded; k < rank; k++) {
        if (k == ba)
            continue;
        if ((uint32_t)shape[k] != li->shape[j])
            return h2t_err_set(H2T_ESHAPE, "tensor '%s': dimension %d is %lld, planned %u",
                               li->name, k, (long long)shape[k], li->shape[j]);
        *per *= (size_t)shape[k];
        j++;
    }
    return 0;
}

static int on_tensor(void *vctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    run_ctx *c = vctx;
    h2t_extract_plan *p = c->p;
    uint64_t t0 = pool_ticks();
    int l, rc;
    size_t per;
    if ((rc = reported_layer(c, tensor, shape, rank, &l, &per)) < 0 || l < 0)
        return rc;
    const h2t_layer_info *li = &p->layers[l];
    (void)per;
    pool_batch(&p->pools[l], data, c->nb, c->bufs[l] + (size_t)c->row0 * li->dim, c->pool_threads);
    c->seen[l] = 1;
    c->ticks_pool += pool_ticks() - t0;
    return 0;
}

/* A piece of a tensor as a fused conv chain writes it (h2t_exec_run_ranges, forward batch 1):
 * pooled at once, while it is still in the cache. The streaming pooling adds every value in
 * the order of whole-tensor pooling, so the features are bitwise the same. There are about
 * 1600 such calls per MobileNetV2 image and a time-stamp read costs about 20 ns on the
 * development VM, so one call in RANGE_TIMED is timed and counts RANGE_TIMED times; the timed
 * calls move by one each forward run, so over the pass every call is timed as often. */
#define RANGE_TIMED 4
static int on_range(void *vctx, int tensor, const float *data, const int64_t *shape, int rank,
                    int sample, int c0, int c1, int64_t off, int64_t len)
{
    run_ctx *c = vctx;
    h2t_extract_plan *p = c->p;
    int timed = c->ranges++ % RANGE_TIMED == 0;
    uint64_t t0 = timed ? pool_ticks() : 0;
    int l, rc;
    size_t per;
    if ((rc = reported_layer(c, tensor, shape, rank, &l, &per)) < 0 || l < 0)
        return rc;
    const h2t_layer_info *li = &p->layers[l];
    const h2t_pool_plan *pp = &p->pools[l];
    if (rank != 4 || sample < 0 || sample >= c->nb || pp->form != H2T_FORM_NCHW)
        return h2t_err_set(H2T_ESHAPE, "tensor '%s': a piece of sample %d of a rank-%d tensor",
                           li->name, sample, rank);
    size_t hw = (size_t)shape[2] * (size_t)shape[3];
    const float *xs = data + (size_t)sample * per;
    float *out = c->bufs[l] + (size_t)(c->row0 + sample) * li->dim;
    int last = (uint32_t)c1 == pp->c && (size_t)(off + len) == hw;
    if (off == 0 && (size_t)len == hw) {
        rc = h2t_pool_apply_channels(pp, xs, (uint32_t)c0, (uint32_t)c1, out);
    } else if (h2t_pool_stream_bytes(pp) == 0) {
        if (last) /* whole planes only: the pieces come in order, this one is the last */
            h2t_pool_apply(pp, xs, out);
    } else {
        if (!c->states[l] && !(c->states[l] = malloc(h2t_pool_stream_bytes(pp))))
            return h2t_err_set(H2T_ENOMEM, "pooling state of layer %s", li->name);
        rc = h2t_pool_stream(pp, c->states[l], xs, (uint32_t)c0, (uint32_t)c1, (size_t)off,
                             (size_t)len, out);
    }
    if (rc < 0)
        return h2t_err_wrap(rc, "tensor '%s': ", li->name);
    if (last)
        c->seen[l] = 1;
    if (timed)
        c->ticks_pool += RANGE_TIMED * (pool_ticks() - t0);
    return 0;
}

/* A piece of a tensor in oneDNN's blocked layout, as a conv chain on oneDNN's primitive hands
 * it over (h2t_exec_run_blocked, forward batch 1): pooled at once, in the order of
 * whole-tensor pooling, so the features are bitwise those of pooling the same values in NCHW.
 * Timed as on_range. */
static int on_blk(void *vctx, int tensor, const float *data, const int64_t *shape, int rank,
                  int sample, int B, int c0, int c1, int64_t off, int64_t len)
{
    run_ctx *c = vctx;
    h2t_extract_plan *p = c->p;
    int timed = c->ranges++ % RANGE_TIMED == 0;
    uint64_t t0 = timed ? pool_ticks() : 0;
    int l, rc;
    size_t per;
    if ((rc = reported_layer(c, tensor, shape, rank, &l, &per)) < 0 || l < 0)
        return rc;
    const h2t_layer_info *li = &p->layers[l];
    const h2t_pool_plan *pp = &p->pools[l];
    size_t sb = h2t_pool_stream_blk_bytes(pp, B);
    if (rank != 4 || sample < 0 || sample >= c->nb || sb == 0)
        return h2t_err_set(H2T_ESHAPE,
                           "tensor '%s': a blocked piece of sample %d of a rank-%d tensor",
                           li->name, sample, rank);
    void **st = &c->states[p->n_layers + l];
    if (!*st && !(*st = malloc(sb)))
        return h2t_err_set(H2T_ENOMEM, "pooling state of layer %s", li->name);
    float *out = c->bufs[l] + (size_t)(c->row0 + sample) * li->dim;
    rc = h2t_pool_stream_blk(pp, *st, data, B, (uint32_t)c0, (uint32_t)c1, (size_t)off, (size_t)len,
                             out);
    if (rc < 0)
        return h2t_err_wrap(rc, "tensor '%s': ", li->name);
    if ((uint32_t)c1 == pp->c && (size_t)(off + len) == (size_t)shape[2] * (size_t)shape[3])
        c->seen[l] = 1;
    if (timed)
        c->ticks_pool += RANGE_TIMED * (pool_ticks() - t0);
    return 0;
}

/* Run one forward pass with the pooling callbacks, and split its time: a CPU-time clock
 * costs a system call (about 0.9 us on the development VM, and there are up to ~900 callbacks
 * per MobileNetV2 image), a wall clock 30 ns, the time-stamp counter ~10 ns. So the callbacks
 * read only pool_ticks, and the run's wall time (and a sample worker's CPU time) is split in
 * proportion to the ticks spent in the callbacks. */
static int run_forward(run_ctx *c, h2t_exec *x, const float *input, int n)
{
    double w0 = h2t_now_s(), c0 = c->thread_clock ? cpu_s(1) : 0;
    c->ticks_pool = 0;
    c->ranges = c->runs++;
    uint64_t k0 = pool_ticks();
    /* forward batch 1: the fused chains report their outputs piece by piece */
    int rc = n == 1 && c->states ? h2t_exec_run_blocked(x, input, n, on_tensor, on_range, on_blk, c)
                                 : h2t_exec_run(x, input, n, on_tensor, c);
    uint64_t k1 = pool_ticks();
    if (rc == 0 && c->p->n_derived) { /* counted as pooling */
        derive_rows(c->p, c->bufs, c->row0, n, c->seen);
        uint64_t k2 = pool_ticks();
        c->ticks_pool += k2 - k1;
        k1 = k2;
    }
    double dw = h2t_now_s() - w0;
    double share = k1 > k0 ? (double)c->ticks_pool / (double)(k1 - k0) : 0;
    share = share < 1 ? share : 1;
    c->t_pool += dw * share;
    c->t_run += dw;
    /* a sample worker's own CPU clock; otherwise the process's CPU clock also counts the
     * calling thread's store writes, which overlap the runs, so the caller splits the
     * forward threads' CPU (process minus calling thread) by t_pool / t_run instead */
    if (c->thread_clock)
        c->c_pool += (cpu_s(1) - c0) * share;
    return rc;
}

/* Sample workers (forward batch 1 and several threads): each has its own executor and takes
 * the batch's samples one at a time from a shared counter, with OpenBLAS on one thread,
 * pooling into the sample's rows of the shared batch buffers. Small per-sample GEMMs
 * parallelise badly inside OpenBLAS; whole samples in parallel do not, and each tensor is
 * pooled while still in this core's cache. Taking samples as they come (not k, k + W, ...)
 * keeps the workers finishing together when a core is shared (with the store writes that
 * overlap the forward pass, or another process); a sample's features do not depend on
 * which worker computes it. */
typedef struct worker {
    run_ctx c;
    h2t_exec *x;
    const float *input;
    size_t in_per;
    int k, W, nb;
    atomic_int *next; /* the batch's next sample to take */
    atomic_int *stop; /* set by a worker that failed: the others stop taking samples */
    int rc;
    char err[512];
    pthread_t th;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->rc = 0;
    while (w->rc == 0 && !atomic_load(w->stop)) {
        int s = atomic_fetch_add(w->next, 1);
        if (s >= w->nb)
            break;
        w->c.nb = 1;
        w->c.row0 = s;
        memset(w->c.seen, 0, w->c.p->n_layers);
        w->rc = run_forward(&w->c, w->x, w->input + (size_t)s * w->in_per, 1);
        for (uint32_t l = 0; w->rc == 0 && l < w->c.p->n_layers; l++)
            if (!w->c.seen[l])
                w->rc = h2t_err_set(H2T_ESTATE, "the executor did not report tensor '%s'",
                                    w->c.p->layers[l].name);
    }
    if (w->rc < 0) { /* the detail is thread-local: carry it to the caller */
        atomic_store(w->stop, 1);
        snprintf(w->err, sizeof w->err, "%s", h2t_err_detail());
    }
    return NULL;
}

/* Run nb samples on the W workers (worker 0 on the calling thread). */
static int workers_run(worker *ws, int W, const float *input, int nb)
{
    int started[POOL_MAX_THREADS] = {0};
    atomic_int next, stop;
    atomic_init(&next, 0);
    atomic_init(&stop, 0);
    for (int k = 0; k < W; k++) {
        ws[k].input = input;
        ws[k].nb = nb;
        ws[k].next = &next;
        ws[k].stop = &stop;
        if (k > 0)
            started[k] = pthread_create(&ws[k].th, NULL, worker_main, &ws[k]) == 0;
    }
    worker_main(&ws[0]);
    for (int k = 1; k < W; k++) {
        if (started[k])
            pthread_join(ws[k].th, NULL);
        else
            worker_main(&ws[k]); /* no thread: do its share here */
    }
    for (int k = 0; k < W; k++)
        if (ws[k].rc < 0)
            return h2t_err_set(ws[k].rc, "%s", ws[k].err);
    return 0;
}

/* The forward pass of one batch (every sample pooled into bufs), on its own thread so that
 * the calling thread meanwhile commits the previous batch and reads the next one. */
typedef struct fwd_job {
    h2t_extract_plan *p;
    run_ctx *c; /* W == 1 */
    worker *ws; /* W > 1 */
    int W, FB;
    h2t_exec *x; /* W == 1 */
    const float *input;
    size_t in_per;
    float **bufs; /* per layer: the batch's rows */
    int nb;
    int rc;
    char err[512];
    double wall; /* seconds this batch's forward pass took */
    pthread_t th;
} fwd_job;

static void *fwd_main(void *arg)
{
    fwd_job *j = arg;
    double t0 = h2t_now_s();
    int rc = 0;
    if (j->W > 1) {
        for (int k = 0; k < j->W; k++)
            j->ws[k].c.bufs = j->bufs;
        rc = workers_run(j->ws, j->W, j->input, j->nb);
    }
    /* forward in sub-batches of FB: each tensor is pooled right after it is computed, and at a
     * small FB it is still in the cache then (docs/extraction.md) */
    for (int s0 = 0; j->W == 1 && rc == 0 && s0 < j->nb; s0 += j->FB) {
        run_ctx *c = j->c;
        c->bufs = j->bufs;
        c->nb = j->nb - s0 < j->FB ? j->nb - s0 : j->FB;
        c->row0 = s0;
        memset(c->seen, 0, j->p->n_layers);
        rc = run_forward(c, j->x, j->input + (size_t)s0 * j->in_per, c->nb);
        for (uint32_t l = 0; rc == 0 && l < j->p->n_layers; l++)
            if (!c->seen[l])
                rc = h2t_err_set(H2T_ESTATE, "the executor did not report tensor '%s'",
                                 j->p->layers[l].name);
    }
    j->rc = rc;
    if (rc < 0) /* the detail is thread-local: carry it to the caller */
        snprintf(j->err, sizeof j->err, "%s", h2t_err_detail());
    j->wall = h2t_now_s() - t0;
    return NULL;
}

/* Observe every layer's tensor but the derived layers'. blocked (forward batch 1, whose runs
 * take blocked pieces): the 4-D channels-first layers that h2t_pool_stream_blk pools are
 * observed in blocked pieces, so that the conv chains writing them run on oneDNN's
 * primitive (model.h, h2t_exec_run_blocked). */
static int observe_layers(const h2t_extract_plan *p, h2t_exec *x, int blocked)
{
    for (uint32_t l = 0; l < p->n_layers; l++) {
        int rc;
        if (p->der && p->der[l].kind != H2T_LIN_NONE)
            continue;
        int blk = blocked && p->bax[l] == 0 && p->layers[l].rank == 4 &&
                  h2t_pool_stream_blk_bytes(&p->pools[l], 16) > 0;
        if ((rc = blk ? h2t_exec_observe_blocked(x, p->tensors[l], 1)
                      : h2t_exec_observe(x, p->tensors[l], 1)) < 0)
            return rc;
    }
    return 0;
}

/* Read and preprocess samples first .. first + nb - 1 into input. */
static int read_batch(h2t_extract_plan *p, uint32_t first, int nb, float *input, size_t in_per)
{
    for (int s = 0; s < nb; s++) {
        h2t_image im;
        int rc;
        if ((rc = h2t_data_read(p->d, p->base + first + (uint32_t)s, &im)) < 0 ||
            (rc = h2t_prep_image(&p->prep, &im, input + (size_t)s * in_per)) < 0)
            return h2t_err_wrap(rc, "sample %u: ", p->base + first + (uint32_t)s);
    }
    return 0;
}

int h2t_extract_plan_run(h2t_extract_plan *p, h2t_store *st, h2t_extract_result *res)
{
    const h2t_data_info *di = h2t_data_info_get(p->d);
    h2t_extract_result r;
    memset(&r, 0, sizeof r);
    double t_start = h2t_now_s(), cpu_start = cpu_s(0);
    snprintf(r.config, sizeof r.config, "%s", p->config);
    r.n_samples = p->n_samples;
    r.n_layers = p->n_layers;
    r.n_derived = p->n_derived;
    r.total_dim = p->total_dim;

    h2t_model_rec mr;
    memset(&mr, 0, sizeof mr);
    snprintf(mr.name, sizeof mr.name, "%s", base_of(p->model_path));
    memcpy(mr.sha256, p->model_sha, 32);
    const h2t_tensor_info *in = h2t_model_input(p->m);
    mr.input_shape[0] = in->shape[0] > 0 ? (uint32_t)in->shape[0] : 0;
    mr.input_shape[1] = p->prep.c;
    mr.input_shape[2] = p->prep.h;
    mr.input_shape[3] = p->prep.w;
    snprintf(mr.preprocess, sizeof mr.preprocess, "%s", p->prep_desc);
    int reused, rc;
    if ((rc = h2t_store_model_put(st, &mr, &r.model, &reused)) < 0)
        goto early;

    h2t_source src;
    memset(&src, 0, sizeof src);
    snprintf(src.name, sizeof src.name, "%s", p->o.source_name ? p->o.source_name : di->name);
    snprintf(src.uri, sizeof src.uri, "%s", di->uri);
    memcpy(src.hash, di->hash, 32);
    src.n_samples = di->n_samples;
    src.n_classes = di->n_classes;
    src.class_names = di->class_names;
    src.labels = (uint32_t *)di->labels;
    src.split = (uint8_t *)di->split;
    if ((rc = h2t_store_source_put(st, &src, &r.source, &reused)) < 0)
        goto early;

    h2t_extraction spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "%s", p->o.name ? p->o.name : "");
    spec.source = r.source;
    spec.model = r.model;
    spec.target_size = p->o.target_size;
    spec.dtype = p->o.dtype;
    snprintf(spec.config, sizeof spec.config, "%s", p->config);
    memcpy(spec.config_hash, p->config_hash, 32);
    spec.n_samples = p->n_samples;
    spec.n_layers = p->n_layers;
    spec.layers = p->layers;
    if ((rc = h2t_store_extraction_begin(st, &spec, &r.extraction, &reused)) < 0)
        goto early;
    h2t_extraction *e;
    if ((rc = h2t_store_extraction_get(st, r.extraction, &e)) < 0)
        goto early;
    uint32_t done = e->samples_done, state = e->state;
    h2t_extraction_destroy(e);
    r.resumed_from = done;
    if (done >= p->n_samples) {
        if (state != H2T_EXT_DONE &&
            (rc = h2t_store_extraction_set_state(st, r.extraction, H2T_EXT_DONE)) < 0)
            goto early;
        r.reused = 1;
        r.t_total = h2t_now_s() - t_start;
        *res = r;
        return 0;
    }
    if (state != H2T_EXT_RUNNING &&
        (rc = h2t_store_extraction_set_state(st, r.extraction, H2T_EXT_RUNNING)) < 0)
        goto early;
    if (done)
        H2T_LOG_INFO("extract", "extraction %u: resuming at sample %u of %u", r.extraction, done,
                     p->n_samples);

    /* the executor and the batch buffers */
    int B = p->o.batch;
    if ((uint32_t)B > p->n_samples)
        B = (int)p->n_samples;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = p->o.threads > 0 ? p->o.threads : (ncpu > 0 ? (int)ncpu : 1);
    if (nthreads > POOL_MAX_THREADS)
        nthreads = POOL_MAX_THREADS;
    int W = p->fb == 1 && nthreads > 1 ? (nthreads < B ? nthreads : B) : 1;
    worker ws[POOL_MAX_THREADS];
    memset(ws, 0, sizeof ws);
    if (W > 1)
        h2t_blas_threads(1);
    else if (p->o.threads > 0)
        h2t_blas_threads(p->o.threads);
    h2t_exec *x = NULL;
    run_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.pool_threads = nthreads;
    size_t in_per = (size_t)p->prep.c * p->prep.h * p->prep.w;
    /* double buffers: batch b's rows are written to the store while batch b + 1 is computed
     * into the other buffer, and batch b + 2 is read into the input batch b has finished */
    float *input[2] = {NULL, NULL};
    float **bufs[2] = {NULL, NULL};
    input[0] = malloc(sizeof(float) * in_per * (size_t)B);
    input[1] = malloc(sizeof(float) * in_per * (size_t)B);
    bufs[0] = calloc(p->n_layers, sizeof *bufs[0]);
    bufs[1] = calloc(p->n_layers, sizeof *bufs[1]);
    c.bufs = bufs[0];
    c.seen = calloc(p->n_layers, 1);
    c.states = calloc(2 * (size_t)p->n_layers, sizeof *c.states);
    h2t_progress *bar = NULL;
    double t_loop = 0, fwd_wall = 0;
    int keep_was = -1; /* the store's page-cache setting before the pass (-1: not changed) */
    if (!input[0] || !input[1] || !bufs[0] || !bufs[1] || !c.seen || !c.states) {
        rc = h2t_err_set(H2T_ENOMEM, "batch buffers");
        goto out;
    }
    for (int i = 0; i < 2; i++)
        for (uint32_t l = 0; l < p->n_layers; l++)
            if (!(bufs[i][l] = malloc(sizeof(float) * p->layers[l].dim * (size_t)B))) {
                rc = h2t_err_set(H2T_ENOMEM, "batch buffers (%u x %u floats for layer %s)", B,
                                 p->layers[l].dim, p->layers[l].name);
                goto out;
            }
    int FB = p->fb < B ? p->fb : B;
    if ((rc = h2t_exec_create(p->m, FB, &x)) < 0)
        goto out;
    if ((rc = observe_layers(p, x, FB == 1)) < 0)
        goto out;
    for (int k = 0; k < W; k++) {
        worker *w = &ws[k];
        w->c = c;
        w->c.pool_threads = 1;
        w->c.thread_clock = 1;
        w->c.seen = calloc(p->n_layers, 1);
        w->c.states = k == 0 ? c.states : calloc(2 * (size_t)p->n_layers, sizeof *c.states);
        w->k = k;
        w->W = W;
        w->in_per = in_per;
        if (!w->c.seen || !w->c.states) {
            rc = h2t_err_set(H2T_ENOMEM, "worker %d", k);
            goto out;
        }
        if (k == 0) {
            w->x = x; /* the first worker uses the executor made above */
            continue;
        }
        if ((rc = h2t_exec_create(p->m, 1, &w->x)) < 0)
            goto out;
        if ((rc = observe_layers(p, w->x, FB == 1)) < 0)
            goto out;
    }
    if (p->o.progress)
        bar = h2t_progress_create("extract", p->n_samples - done, "img");

    uint32_t done0 = done;
    keep_was = h2t_store_features_cache(st, p->o.keep_cache);
    r.t_setup = h2t_now_s() - t_start;
    t_loop = h2t_now_s();
    /* The pipeline, all store calls on this thread, batches committed strictly in order:
     * round i starts the forward pass of batch i on its own thread, then commits batch i - 1
     * (one transaction: features, statistics, marker; on_batch after it) and reads batch
     * i + 1, then joins. An error stops the pass after the round it happens in, the earliest
     * batch's error reported (a write of batch i - 1 before the forward of batch i); a read
     * error of batch i + 1 is reported after batch i is committed, as a serial pass would. */
    int cur = 0, have_in = 0, in_nb = 0, have_prev = 0, prev_nb = 0, rrc = 0;
    uint32_t next = done, in_first = 0, prev_first = 0;
    char rerr[512] = "";
    {
        int nb = p->n_samples - next < (uint32_t)B ? (int)(p->n_samples - next) : B;
        double t0 = h2t_now_s(), c0 = cpu_s(1);
        if ((rc = read_batch(p, next, nb, input[cur], in_per)) < 0)
            goto out;
        r.t_read += h2t_now_s() - t0;
        r.cpu_read += cpu_s(1) - c0;
        have_in = 1;
        in_first = next;
        in_nb = nb;
        next += (uint32_t)nb;
    }
    while (have_in || have_prev) {
        fwd_job job;
        memset(&job, 0, sizeof job);
        int started = 0;
        double cs0 = cpu_s(0), pool0 = c.t_pool, run0 = c.t_run, wc0 = 0;
        for (int k = 0; k < W; k++)
            wc0 += ws[k].c.c_pool;
        if (have_in) {
            job = (fwd_job){.p = p,
                            .c = &c,
                            .ws = ws,
                            .W = W,
                            .FB = FB,
                            .x = x,
                            .input = input[cur],
                            .in_per = in_per,
                            .bufs = bufs[cur],
                            .nb = in_nb};
            started = pthread_create(&job.th, NULL, fwd_main, &job) == 0;
            if (!started)
                fwd_main(&job); /* no thread: the forward pass first, then the write */
        }
        /* this thread's CPU from here to the join is store, read and bookkeeping, not
         * forward */
        double ct0 = cpu_s(1);
        int wrc = 0, stop = 0;
        if (have_prev) {
            double t0 = h2t_now_s(), c0 = cpu_s(1);
            wrc = h2t_store_features_write(st, r.extraction, prev_first, (uint32_t)prev_nb,
                                           (const float *const *)bufs[cur ^ 1]);
            r.t_write += h2t_now_s() - t0;
            r.cpu_write += cpu_s(1) - c0;
            if (wrc == 0) {
                done += (uint32_t)prev_nb;
                r.computed += (uint32_t)prev_nb;
                h2t_progress_update(bar, done - done0);
                stop = p->o.on_batch && p->o.on_batch(p->o.ctx, done, p->n_samples);
            }
        }
        int nb_next = 0;
        if (!wrc && !stop && have_in && next < p->n_samples) {
            nb_next = p->n_samples - next < (uint32_t)B ? (int)(p->n_samples - next) : B;
            double t0 = h2t_now_s(), c0 = cpu_s(1);
            if ((rrc = read_batch(p, next, nb_next, input[cur ^ 1], in_per)) < 0)
                snprintf(rerr, sizeof rerr, "%s", h2t_err_detail());
            r.t_read += h2t_now_s() - t0;
            r.cpu_read += cpu_s(1) - c0;
        }
        double ct1 = cpu_s(1);
        if (started)
            pthread_join(job.th, NULL);
        if (have_in) {
            /* the forward threads' CPU: the process's minus this thread's */
            double fcpu = (cpu_s(0) - cs0) - (ct1 - ct0), pcpu;
            if (W > 1) {
                double wc1 = 0;
                for (int k = 0; k < W; k++)
                    wc1 += ws[k].c.c_pool;
                pcpu = wc1 - wc0;
                /* wall: the workers' own pooling clocks also count the time they waited for
                 * a core, so the batch's forward wall time is split in CPU proportions */
                c.t_pool += fcpu > 0 ? job.wall * pcpu / fcpu : 0;
            } else {
                double dr = c.t_run - run0;
                pcpu = dr > 0 ? fcpu * (c.t_pool - pool0) / dr : 0;
            }
            pcpu = pcpu < fcpu ? pcpu : fcpu;
            c.c_pool += pcpu;
            r.cpu_forward += fcpu - pcpu;
            r.t_forward += job.wall - (c.t_pool - pool0);
            fwd_wall += job.wall;
        }
        if (wrc < 0) {
            rc = wrc;
            goto out;
        }
        if (stop) {
            rc = h2t_err_set(H2T_ECANCELED, "stopped at sample %u of %u (resumable)", done,
                             p->n_samples);
            goto out;
        }
        if (have_in && job.rc < 0) {
            rc = h2t_err_set(job.rc, "%s", job.err);
            goto out;
        }
        have_prev = have_in;
        prev_first = in_first;
        prev_nb = in_nb;
        have_in = nb_next > 0 && rrc == 0;
        if (have_in) {
            in_first = next;
            in_nb = nb_next;
            next += (uint32_t)nb_next;
        }
        cur ^= 1;
    }
    if (rrc < 0) {
        rc = h2t_err_set(rrc, "%s", rerr);
        goto out;
    }
    h2t_progress_finish(bar);
    rc = h2t_store_extraction_set_state(st, r.extraction, H2T_EXT_DONE);
out:
    if (keep_was >= 0)
        h2t_store_features_cache(st, keep_was);
    r.t_pool = c.t_pool;
    r.cpu_pool = c.c_pool;
    r.t_total = h2t_now_s() - t_start;
    if (t_loop > 0) {
        r.t_exposed = h2t_now_s() - t_loop - fwd_wall;
        r.t_exposed = r.t_exposed > 0 ? r.t_exposed : 0;
    }
    r.cpu_total = cpu_s(0) - cpu_start;
    h2t_progress_destroy(bar);
    for (int k = 0; k < W; k++) {
        free(ws[k].c.seen);
        if (k > 0 && ws[k].c.states) {
            for (uint32_t l = 0; l < 2 * p->n_layers; l++)
                free(ws[k].c.states[l]);
            free(ws[k].c.states);
        }
        if (k > 0)
            h2t_exec_destroy(ws[k].x);
    }
    if (c.states)
        for (uint32_t l = 0; l < 2 * p->n_layers; l++)
            free(c.states[l]);
    free(c.states);
    h2t_exec_destroy(x);
    for (int i = 0; i < 2; i++) {
        if (bufs[i])
            for (uint32_t l = 0; l < p->n_layers; l++)
                free(bufs[i][l]);
        free(bufs[i]);
        free(input[i]);
    }
    free(c.seen);
    if (rc < 0 && rc != H2T_ECANCELED) {
        /* a failed pass is marked so (ls shows it); a rerun resumes at samples_done, and
         * h2tdb rm removes it. Best effort: the pass's own error is the one reported. */
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", h2t_err_detail());
        h2t_store_extraction_set_state(st, r.extraction, H2T_EXT_FAILED);
        h2t_err_set(rc, "%s", keep);
    }
    if (res)
        *res = r; /* on failure too: ids and timings say where it stopped */
    return rc;
early: /* failed before the pass: the records made so far, nothing computed */
    r.t_total = h2t_now_s() - t_start;
    if (res)
        *res = r;
    return rc;
}
