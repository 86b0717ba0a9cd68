/*
 * extract/dnnl_conv.c - convolutions on oneDNN's convolution primitive, loaded at run time
 * (contract: extract/dnnl_conv.h).
 *
 * The functions of oneDNN's C API used here are looked up with dlsym in libdnnl.so.2 (the
 * library extract/gemm.c opened first, which also capped its instruction set to H2T_CPU_MAX);
 * their types come from the installed header. Each primitive is created for one sample with
 * a user scratchpad, so it holds no per-run state; each calling thread has its own stream.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/err.h"
#include "common/util.h"
#include "extract/dnnl_conv.h"
#include "extract/gemm.h"
#include "extract/kern.h"

/* H2T_NO_DNNL_H builds the stand-ins below even where the header is installed (to check that
 * a machine without it builds). */
#if defined(__has_include) && !defined(H2T_NO_DNNL_H)
#if __has_include(<oneapi/dnnl/dnnl.h>)
#define H2T_HAVE_DNNL_H 1
#endif
#endif

void h2t_dconv_to_blocked(const float *x, int64_t n, int64_t C, int64_t HW, float *y)
{
    int64_t B = h2t_dconv_block(), Cp = h2t_dconv_padded(C);
    for (int64_t s = 0; s < n; s++)
        for (int64_t cb = 0; cb < Cp / B; cb++) {
            float *yb = y + (s * Cp + cb * B) * HW;
            for (int64_t i = 0; i < B; i++) {
                int64_t c = cb * B + i;
                const float *xc = x + (s * C + c) * HW;
                for (int64_t p = 0; p < HW; p++)
                    yb[p * B + i] = c < C ? xc[p] : 0.f;
            }
        }
}

void h2t_dconv_from_blocked(const float *x, int64_t n, int64_t C, int64_t HW, float *y)
{
    int64_t B = h2t_dconv_block(), Cp = h2t_dconv_padded(C);
    for (int64_t s = 0; s < n; s++)
        for (int64_t c = 0; c < C; c++) {
            const float *xb = x + (s * Cp + c / B * B) * HW + c % B;
            float *yc = y + (s * C + c) * HW;
            for (int64_t p = 0; p < HW; p++)
                yc[p] = xb[p * B];
        }
}

int h2t_dconv_block(void)
{
    return h2t_cpu_has(H2T_CPU_AVX512F) ? 16 : 8;
}

int64_t h2t_dconv_padded(int64_t C)
{
    int64_t B = h2t_dconv_block();
    return (C + B - 1) / B * B;
}

#ifndef H2T_HAVE_DNNL_H

int h2t_dconv_available(void)
{
    return 0;
}

int h2t_dconv_select(int on)
{
    return on ? h2t_err_set(H2T_EUNSUPPORTED, "conv: built without oneDNN's header") : 0;
}

int h2t_dconv_winograd(int on)
{
    (void)on;
    return 0;
}

int h2t_dconv_create(const h2t_dconv_geo *g, const float *w, const float *bias, int act, float lo,
                     float hi, int sum, h2t_dconv **out)
{
    (void)g, (void)w, (void)bias, (void)act, (void)lo, (void)hi, (void)sum;
    *out = NULL;
    return h2t_err_set(H2T_EUNSUPPORTED, "conv: built without oneDNN's header");
}

int h2t_dconv_src_blocked(const h2t_dconv *c)
{
    (void)c;
    return 0;
}

int h2t_dconv_group(const h2t_dconv *c)
{
    (void)c;
    return 1;
}

double h2t_dconv_macs(const h2t_dconv *c)
{
    (void)c;
    return 0;
}

size_t h2t_dconv_scratch(const h2t_dconv *c)
{
    (void)c;
    return 0;
}

const char *h2t_dconv_impl(const h2t_dconv *c)
{
    (void)c;
    return "";
}

int h2t_dconv_run(const h2t_dconv *c, const float *x, int x_blk, const float *res, int res_blk,
                  float *y, int y_blk, float *scratch)
{
    (void)c, (void)x, (void)x_blk, (void)res, (void)res_blk, (void)y, (void)y_blk, (void)scratch;
    return h2t_err_set(H2T_ESTATE, "conv: built without oneDNN's header");
}

int h2t_dconv_run_group(const h2t_dconv *c, const float *x, int x_blk, const float *res,
                        int res_blk, float *y, int y_blk, float *scratch)
{
    return h2t_dconv_run(c, x, x_blk, res, res_blk, y, y_blk, scratch);
}

void h2t_dconv_free(h2t_dconv *c)
{
    (void)c;
}

#else

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>

#define DNNL_FNS(X)                                                                                \
    X(dnnl_engine_create)                                                                          \
    X(dnnl_stream_create)                                                                          \
    X(dnnl_stream_destroy)                                                                         \
    X(dnnl_memory_desc_init_by_tag)                                                                \
    X(dnnl_memory_desc_get_size)                                                                   \
    X(dnnl_memory_create)                                                                          \
    X(dnnl_memory_destroy)                                                                         \
    X(dnnl_dilated_convolution_forward_desc_init)                                                  \
    X(dnnl_primitive_attr_create)                                                                  \
    X(dnnl_primitive_attr_destroy)                                                                 \
    X(dnnl_primitive_attr_set_scratchpad_mode)                                                     \
    X(dnnl_primitive_attr_set_post_ops)                                                            \
    X(dnnl_post_ops_create)                                                                        \
    X(dnnl_post_ops_destroy)                                                                       \
    X(dnnl_post_ops_append_eltwise)                                                                \
    X(dnnl_post_ops_append_sum)                                                                    \
    X(dnnl_primitive_desc_iterator_create)                                                         \
    X(dnnl_primitive_desc_iterator_next)                                                           \
    X(dnnl_primitive_desc_iterator_fetch)                                                          \
    X(dnnl_primitive_desc_iterator_destroy)                                                        \
    X(dnnl_memory_desc_equal)                                                                      \
    X(dnnl_primitive_desc_destroy)                                                                 \
    X(dnnl_primitive_desc_query)                                                                   \
    X(dnnl_primitive_desc_query_md)                                                                \
    X(dnnl_reorder_primitive_desc_create)                                                          \
    X(dnnl_primitive_create)                                                                       \
    X(dnnl_primitive_destroy)                                                                      \
    X(dnnl_primitive_execute)

static struct {
#define FIELD(name) __typeof__(&name) name;
    DNNL_FNS(FIELD)
#undef FIELD
    void (*omp_threads)(int);
    dnnl_engine_t eng;
} D;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_loaded;
static int g_on = -1;   /* -1: not chosen yet */
static int g_wino = -1; /* -1: not chosen yet */
static pthread_key_t g_stream_key;
static _Thread_local dnnl_stream_t t_stream;
static _Thread_local int t_one_thread;

static void stream_release(void *p)
{
    D.dnnl_stream_destroy((dnnl_stream_t)p);
}

static void dconv_load(void)
{
    /* extract/gemm.c loads the library first and sets its instruction-set ceiling */
    if (!h2t_gemm_dnnl_available())
        return;
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    int ok = 1;
#define LOOKUP(name)                                                                               \
    D.name = (__typeof__(&name))dlsym(h, #name);                                                   \
    ok = ok && D.name != NULL;
    DNNL_FNS(LOOKUP)
#undef LOOKUP
    D.omp_threads = (void (*)(int))dlsym(h, "omp_set_num_threads");
    if (!ok || !D.omp_threads || D.dnnl_engine_create(&D.eng, dnnl_cpu, 0) != dnnl_success ||
        pthread_key_create(&g_stream_key, stream_release) != 0) {
        dlclose(h);
        return;
    }
    g_loaded = 1; /* the handle stays open for the process */
}

static int loaded(void)
{
    pthread_once(&g_once, dconv_load);
    return g_loaded;
}

int h2t_dconv_available(void)
{
    int on = __atomic_load_n(&g_on, __ATOMIC_ACQUIRE);
    if (on >= 0)
        return on;
    const char *e = getenv("H2T_CONV");
    on = loaded() && h2t_gemm_lib() == H2T_GEMM_DNNL && !(e && !strcmp(e, "gemm"));
    __atomic_store_n(&g_on, on, __ATOMIC_RELEASE);
    return on;
}

int h2t_dconv_select(int on)
{
    if (on && !(loaded() && h2t_gemm_lib() == H2T_GEMM_DNNL))
        return h2t_err_set(H2T_EUNSUPPORTED,
                           "conv: oneDNN's convolutions need libdnnl.so.2 and H2T_GEMM=dnnl");
    __atomic_store_n(&g_on, on ? 1 : 0, __ATOMIC_RELEASE);
    return 0;
}

int h2t_dconv_winograd(int on)
{
    if (on < 0) {
        on = __atomic_load_n(&g_wino, __ATOMIC_ACQUIRE);
        if (on >= 0)
            return on;
        const char *e = getenv("H2T_CONV");
        on = !(e && !strcmp(e, "direct"));
    }
    __atomic_store_n(&g_wino, on ? 1 : 0, __ATOMIC_RELEASE);
    return on ? 1 : 0;
}

/* Winograd's F(2x2, 3x3) (or F(4x4, 3x3), as oneDNN chooses) for a 3x3 stride-1 convolution
 * of at least 32 channels in and out over at least 14 x 14 outputs: there it measured 1.3-1.8x
 * the direct kernel on one sample (docs/benchmarks.md); on 7 x 7 outputs of 512 channels or
 * 16 channels it was slower. The choice depends on the geometry alone, so every run and every
 * process computes a convolution the same way. */
static int wino_pays(const h2t_dconv_geo *g)
{
    return h2t_dconv_winograd(-1) && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 &&
           g->dh == 1 && g->dw == 1 && g->G == 1 && g->C >= 32 && g->M >= 32 &&
           g->OH * g->OW >= 196;
}

/* oneDNN on one thread for the calling thread (its OpenMP settings are per thread). */
static void one_thread(void)
{
    if (!t_one_thread) {
        D.omp_threads(1);
        t_one_thread = 1;
    }
}

static dnnl_stream_t stream(void)
{
    if (!t_stream) {
        if (D.dnnl_stream_create(&t_stream, D.eng, dnnl_stream_default_flags) != dnnl_success) {
            t_stream = NULL;
            return NULL;
        }
        pthread_setspecific(g_stream_key, t_stream);
    }
    return t_stream;
}

/* One batch size's primitive: the descriptors of its input and output (blocked, and their NCHW
 * views), the reorders at a boundary with NCHW tensors (NULL when not needed) and the floats of
 * scratch each part takes. */
typedef struct dconv_var {
    dnnl_primitive_t conv, r_src, r_dst, r_res;
    dnnl_memory_desc_t src_md, dst_md, x_md, y_md, pad_md;
    size_t n_src, n_dst, n_pad;
} dconv_var;

struct h2t_dconv {
    h2t_dconv_geo g;
    dconv_var v[2];         /* [0]: one sample; [1]: H2T_DCONV_GROUP samples (conv NULL if none) */
    dnnl_memory_t wei, bia; /* owned copies in oneDNN's layout, shared by both */
    dnnl_memory_t wei_g;    /* the group form's weights where their layout differs, else NULL */
    float *bias;            /* bia's buffer */
    int src_blk, sum;
    char impl[64];
};

static size_t floats_of(const dnnl_memory_desc_t *md)
{
    return (D.dnnl_memory_desc_get_size(md) + 63) / 64 * 16;
}

static dnnl_primitive_t reorder_make(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b)
{
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p = NULL;
    if (D.dnnl_reorder_primitive_desc_create(&pd, a, D.eng, b, D.eng, NULL) != dnnl_success)
        return NULL;
    if (D.dnnl_primitive_create(&p, pd) != dnnl_success)
        p = NULL;
    D.dnnl_primitive_desc_destroy(pd);
    return p;
}

static void var_free(dconv_var *v)
{
    dnnl_primitive_t *p[4] = {&v->conv, &v->r_src, &v->r_dst, &v->r_res};
    for (int i = 0; i < 4; i++)
        if (*p[i])
            D.dnnl_primitive_destroy(*p[i]);
}

static void mem_free(dnnl_memory_t *m)
{
    if (*m)
        D.dnnl_memory_destroy(*m);
    *m = NULL;
}

void h2t_dconv_free(h2t_dconv *c)
{
    if (!c)
        return;
    var_free(&c->v[0]);
    var_free(&c->v[1]);
    mem_free(&c->wei);
    mem_free(&c->wei_g);
    mem_free(&c->bia);
    free(c->bias);
    free(c);
}

/* Run a primitive with n (arg, memory descriptor, pointer) triples; 0 or H2T_ESTATE. */
static int exec_prim(dnnl_primitive_t p, int n, const int *arg, const dnnl_memory_desc_t *const *md,
                     void *const *ptr, const char *what)
{
    dnnl_exec_arg_t a[6];
    int made = 0, rc = 0;
    dnnl_stream_t s = stream();
    if (!s)
        return h2t_err_set(H2T_ESTATE, "conv: oneDNN stream not created");
    for (; made < n; made++) {
        a[made].arg = arg[made];
        if (D.dnnl_memory_create(&a[made].memory, md[made], D.eng, ptr[made]) != dnnl_success) {
            rc = h2t_err_set(H2T_ESTATE, "conv: oneDNN memory for the %s", what);
            goto out;
        }
    }
    if (D.dnnl_primitive_execute(p, s, n, a) != dnnl_success)
        rc = h2t_err_set(H2T_ESTATE, "conv: oneDNN refused to run the %s", what);
out:
    for (int i = 0; i < made; i++)
        D.dnnl_memory_destroy(a[i].memory);
    return rc;
}

static int reorder_run(dnnl_primitive_t p, const dnnl_memory_desc_t *a, const void *from,
                       const dnnl_memory_desc_t *b, void *to, const char *what)
{
    int arg[2] = {DNNL_ARG_FROM, DNNL_ARG_TO};
    const dnnl_memory_desc_t *md[2] = {a, b};
    void *ptr[2] = {(void *)from, to};
    return exec_prim(p, 2, arg, md, ptr, what);
}

/* The activations' descriptors of n samples; nonzero when oneDNN refuses them. */
static int var_descs(const h2t_dconv *c, int64_t n, dconv_var *v)
{
    const h2t_dconv_geo *g = &c->g;
    dnnl_format_tag_t blk = h2t_dconv_block() == 16 ? dnnl_nChw16c : dnnl_nChw8c;
    dnnl_dims_t sd = {n, g->C, g->H, g->W}, dd = {n, g->M, g->OH, g->OW};
    return D.dnnl_memory_desc_init_by_tag(&v->x_md, 4, sd, dnnl_f32, dnnl_nchw) ||
           D.dnnl_memory_desc_init_by_tag(&v->y_md, 4, dd, dnnl_f32, dnnl_nchw) ||
           D.dnnl_memory_desc_init_by_tag(&v->src_md, 4, sd, dnnl_f32,
                                          c->src_blk ? blk : dnnl_nchw) ||
           D.dnnl_memory_desc_init_by_tag(&v->dst_md, 4, dd, dnnl_f32, blk);
}

/* The convolution of algorithm alg over v's descriptors: oneDNN's first choice when want is
 * NULL, else its implementation named want; NULL when there is none. */
static dnnl_primitive_desc_t pd_find(const h2t_dconv *c, const dconv_var *v, dnnl_alg_kind_t alg,
                                     const dnnl_memory_desc_t *wmd, const dnnl_memory_desc_t *bmd,
                                     dnnl_primitive_attr_t attr, const char *want)
{
    const h2t_dconv_geo *g = &c->g;
    dnnl_dims_t st = {g->sh, g->sw}, dl = {g->dh - 1, g->dw - 1}, pl = {g->pt, g->pl};
    dnnl_dims_t pr = {(g->OH - 1) * g->sh + (g->kh - 1) * g->dh + 1 - g->H - g->pt,
                      (g->OW - 1) * g->sw + (g->kw - 1) * g->dw + 1 - g->W - g->pl};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_iterator_t it;
    dnnl_primitive_desc_t pd = NULL;
    if (D.dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, alg, &v->src_md,
                                                     wmd, bmd, &v->dst_md, st, dl, pl,
                                                     pr) != dnnl_success ||
        D.dnnl_primitive_desc_iterator_create(&it, &cd, attr, D.eng, NULL) != dnnl_success)
        return NULL;
    do {
        const char *impl = NULL;
        pd = D.dnnl_primitive_desc_iterator_fetch(it);
        if (!pd)
            break;
        D.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (!want || (impl && !strcmp(impl, want)))
            break;
        D.dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    } while (D.dnnl_primitive_desc_iterator_next(it) == dnnl_success);
    D.dnnl_primitive_desc_iterator_destroy(it);
    return pd;
}

static const char *pd_impl(dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    D.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return impl ? impl : "?";
}

/* An optimised kernel: oneDNN's reference and im2col ones lose to the executor's path. */
static int impl_fast(const char *impl)
{
    return strncmp(impl, "ref", 3) && !strstr(impl, "gemm");
}

static const dnnl_memory_desc_t *pd_weights(dnnl_primitive_desc_t pd)
{
    return D.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
}

/* v's primitive from pd, its scratch sizes and its reorders; 0 or H2T_EUNSUPPORTED. */
static int var_make(h2t_dconv *c, dconv_var *v, dnnl_primitive_desc_t pd)
{
    v->pad_md = *D.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    v->n_pad = floats_of(&v->pad_md);
    v->n_src = c->src_blk ? floats_of(&v->src_md) : 0;
    v->n_dst = floats_of(&v->dst_md);
    if (D.dnnl_primitive_create(&v->conv, pd) != dnnl_success) {
        v->conv = NULL;
        return h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN primitive %s not created", c->impl);
    }
    if ((c->src_blk && !(v->r_src = reorder_make(&v->x_md, &v->src_md))) ||
        !(v->r_dst = reorder_make(&v->dst_md, &v->y_md)) ||
        (c->sum && !(v->r_res = reorder_make(&v->y_md, &v->dst_md))))
        return h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN reorders");
    return 0;
}

/* *m: the weights w (in the user layout user) reordered into layout wmd; 0 or H2T_ENOMEM. */
static int weights_make(dnnl_memory_t *m, const dnnl_memory_desc_t *wmd,
                        const dnnl_memory_desc_t *user, const float *w)
{
    dnnl_memory_t wu = NULL;
    dnnl_primitive_t rw = NULL;
    dnnl_stream_t s = stream();
    int rc = 0;
    if (D.dnnl_memory_create(m, wmd, D.eng, DNNL_MEMORY_ALLOCATE) != dnnl_success) {
        *m = NULL;
        return h2t_err_set(H2T_ENOMEM, "conv: oneDNN weights");
    }
    if (D.dnnl_memory_create(&wu, user, D.eng, (void *)w) != dnnl_success) {
        wu = NULL;
        rc = h2t_err_set(H2T_ENOMEM, "conv: oneDNN weights");
    } else if (!(rw = reorder_make(user, wmd))) {
        rc = h2t_err_set(H2T_ENOMEM, "conv: oneDNN weight reorder");
    } else {
        dnnl_exec_arg_t wa[2] = {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, *m}};
        if (!s || D.dnnl_primitive_execute(rw, s, 2, wa) != dnnl_success)
            rc = h2t_err_set(H2T_ESTATE, "conv: oneDNN weight reorder");
    }
    if (rw)
        D.dnnl_primitive_destroy(rw);
    if (wu)
        D.dnnl_memory_destroy(wu);
    return rc;
}

static int var_run(const h2t_dconv *c, const dconv_var *v, const float *x, int x_blk,
                   const float *res, int res_blk, float *y, int y_blk, float *scratch);

/* Whether the group form gives each sample the one-sample form's bits: a group of seeded
 * pseudo-random inputs (and residuals), its first and last samples run alone. Used where the
 * two forms' weights layouts differ (oneDNN's blocking may then differ too); the answer is the
 * same every time for a geometry, oneDNN and CPU. 1, 0, or H2T_ENOMEM. */
static int pair_same(const h2t_dconv *c)
{
    const int G = H2T_DCONV_GROUP;
    size_t in1 = D.dnnl_memory_desc_get_size(&c->v[0].src_md) / sizeof(float);
    size_t out1 = D.dnnl_memory_desc_get_size(&c->v[0].dst_md) / sizeof(float);
    float *x = h2t_aalloc(in1 * G, sizeof(float)), *r = h2t_aalloc(out1 * G, sizeof(float));
    float *y = h2t_aalloc(out1 * G, sizeof(float)), *y1 = h2t_aalloc(out1, sizeof(float));
    float *scr = h2t_aalloc(h2t_dconv_scratch(c) + 1, sizeof(float));
    int same = H2T_ENOMEM;
    if (!x || !r || !y || !y1 || !scr) {
        h2t_err_set(H2T_ENOMEM, "conv: oneDNN check of %s", c->impl);
        goto out;
    }
    uint32_t s = 12345;
    for (size_t i = 0; i < in1 * G; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)(s >> 8) / 8388608.f - 1.f;
    }
    for (size_t i = 0; i < out1 * G; i++) {
        s = s * 1103515245u + 12345u;
        r[i] = (float)(s >> 8) / 8388608.f - 1.f;
    }
    same = 0;
    if (var_run(c, &c->v[1], x, 1, r, 1, y, 1, scr) < 0)
        goto out;
    for (int n = 0; n < G; n += G - 1) {
        if (var_run(c, &c->v[0], x + in1 * n, 1, r + out1 * n, 1, y1, 1, scr) < 0 ||
            memcmp(y1, y + out1 * n, out1 * sizeof(float)) != 0)
            goto out;
    }
    same = 1;
out:
    h2t_afree(x);
    h2t_afree(r);
    h2t_afree(y);
    h2t_afree(y1);
    h2t_afree(scr);
    return same;
}

/* Candidate a of the convolution's kernel, made whole (primitives, reorders, weights):
 * a = 0 Winograd, 1 direct: oneDNN's choice for a group of H2T_DCONV_GROUP samples and the same
 * implementation for one sample (its sums per sample are then the group form's: the same
 * weights layout, or else pair_same checks it), both forms whether or not the caller runs
 * groups, so every executor computes a convolution the same way; a = 2: oneDNN's direct
 * choice for one sample alone. 0, H2T_EUNSUPPORTED (try the next), H2T_ENOMEM. */
static int candidate(h2t_dconv *c, int a, const dnnl_memory_desc_t *wmd,
                     const dnnl_memory_desc_t *user, const float *w, const dnnl_memory_desc_t *bmd,
                     dnnl_primitive_attr_t attr)
{
    dnnl_alg_kind_t alg = a == 0 ? dnnl_convolution_winograd : dnnl_convolution_direct;
    dnnl_primitive_desc_t p1 = NULL, pg = NULL;
    int rc;
    if (a < 2) {
        pg = pd_find(c, &c->v[1], alg, wmd, bmd, attr, NULL);
        p1 = pg && impl_fast(pd_impl(pg)) ? pd_find(c, &c->v[0], alg, wmd, bmd, attr, pd_impl(pg))
                                          : NULL;
        if (!p1) {
            rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: no oneDNN kernel for one sample and groups");
            goto out;
        }
    } else {
        p1 = pd_find(c, &c->v[0], alg, wmd, bmd, attr, NULL);
        if (!p1) {
            rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN has no convolution for this geometry");
            goto out;
        }
        if (!impl_fast(pd_impl(p1))) {
            rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN's only convolution here is %s",
                             pd_impl(p1));
            goto out;
        }
    }
    snprintf(c->impl, sizeof c->impl, "%s", pd_impl(p1));
    if ((rc = var_make(c, &c->v[0], p1)) < 0 || (pg && (rc = var_make(c, &c->v[1], pg)) < 0) ||
        (rc = weights_make(&c->wei, pd_weights(p1), user, w)) < 0)
        goto out;
    if (pg && !D.dnnl_memory_desc_equal(pd_weights(p1), pd_weights(pg))) {
        if ((rc = weights_make(&c->wei_g, pd_weights(pg), user, w)) < 0 || (rc = pair_same(c)) < 0)
            goto out;
        rc = rc ? 0 : h2t_err_set(H2T_EUNSUPPORTED, "conv: %s gives groups other sums", c->impl);
    }
out:
    if (p1)
        D.dnnl_primitive_desc_destroy(p1);
    if (pg)
        D.dnnl_primitive_desc_destroy(pg);
    return rc;
}

int h2t_dconv_create(const h2t_dconv_geo *g, const float *w, const float *bias, int act, float lo,
                     float hi, int sum, h2t_dconv **out)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    int rc = 0;
    *out = NULL;
    if (!h2t_dconv_available())
        return h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN's convolutions are not in use");
    one_thread();
    h2t_dconv *c = calloc(1, sizeof *c);
    if (!c)
        return h2t_err_set(H2T_ENOMEM, "conv: oneDNN convolution");
    c->g = *g;
    c->sum = sum;
    c->src_blk = g->C >= 8;
    int grp = g->G > 1;
    dnnl_dims_t bd = {g->M}, wd4 = {g->M, g->C, g->kh, g->kw},
                wd5 = {g->G, g->M / g->G, g->C / g->G, g->kh, g->kw};
    dnnl_memory_desc_t wmd_any, wmd_user, bmd;
    if (var_descs(c, 1, &c->v[0]) || var_descs(c, H2T_DCONV_GROUP, &c->v[1]) ||
        D.dnnl_memory_desc_init_by_tag(&wmd_any, grp ? 5 : 4, grp ? wd5 : wd4, dnnl_f32,
                                       dnnl_format_tag_any) ||
        D.dnnl_memory_desc_init_by_tag(&wmd_user, grp ? 5 : 4, grp ? wd5 : wd4, dnnl_f32,
                                       grp ? dnnl_goihw : dnnl_oihw) ||
        D.dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x)) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN memory descriptors");
        goto out;
    }
    if (D.dnnl_primitive_attr_create(&attr) || D.dnnl_post_ops_create(&po) ||
        D.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ||
        (sum && D.dnnl_post_ops_append_sum(po, 1.f)) ||
        (act == H2T_ACT_RELU && D.dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0, 0)) ||
        (act == H2T_ACT_CLIP &&
         D.dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_clip_v2, lo, hi)) ||
        D.dnnl_primitive_attr_set_post_ops(attr, po)) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN post-ops");
        goto out;
    }
    if (bias) {
        c->bias = malloc((size_t)g->M * sizeof(float));
        if (!c->bias || D.dnnl_memory_create(&c->bia, &bmd, D.eng, c->bias) != dnnl_success) {
            c->bia = NULL;
            rc = h2t_err_set(H2T_ENOMEM, "conv: oneDNN bias");
            goto out;
        }
        memcpy(c->bias, bias, (size_t)g->M * sizeof(float));
    }
    for (int a = wino_pays(g) ? 0 : 1; a < 3; a++) {
        rc = candidate(c, a, &wmd_any, &wmd_user, w, bias ? &bmd : NULL, attr);
        if (rc == 0 || rc == H2T_ENOMEM)
            break;
        for (int i = 0; i < 2; i++) {
            var_free(&c->v[i]);
            c->v[i].conv = c->v[i].r_src = c->v[i].r_dst = c->v[i].r_res = NULL;
        }
        mem_free(&c->wei);
        mem_free(&c->wei_g);
    }
    if (rc < 0)
        goto out;
    if (g->N < H2T_DCONV_GROUP) { /* the group form was made to choose the kernel only */
        var_free(&c->v[1]);
        memset(&c->v[1], 0, sizeof c->v[1]);
        mem_free(&c->wei_g);
    }
out:
    if (po)
        D.dnnl_post_ops_destroy(po);
    if (attr)
        D.dnnl_primitive_attr_destroy(attr);
    if (rc < 0)
        h2t_dconv_free(c);
    else
        *out = c;
    return rc;
}

int h2t_dconv_src_blocked(const h2t_dconv *c)
{
    return c->src_blk;
}

int h2t_dconv_group(const h2t_dconv *c)
{
    return c->v[1].conv ? H2T_DCONV_GROUP : 1;
}

double h2t_dconv_macs(const h2t_dconv *c)
{
    const h2t_dconv_geo *g = &c->g;
    return (double)g->M * (double)(g->OH * g->OW) * (double)(g->C / g->G * g->kh * g->kw);
}

size_t h2t_dconv_scratch(const h2t_dconv *c)
{
    size_t n = 0;
    for (int i = 0; i < 2; i++) {
        const dconv_var *v = &c->v[i];
        size_t k = v->conv ? v->n_src + v->n_dst + v->n_pad : 0;
        n = k > n ? k : n;
    }
    return n;
}

const char *h2t_dconv_impl(const h2t_dconv *c)
{
    return c->impl;
}

static int var_run(const h2t_dconv *c, const dconv_var *v, const float *x, int x_blk,
                   const float *res, int res_blk, float *y, int y_blk, float *scratch)
{
    int rc;
    one_thread();
    const void *src = x;
    float *dst = y_blk ? y : scratch + v->n_src;
    if (c->src_blk && !x_blk) {
        if ((rc = reorder_run(v->r_src, &v->x_md, x, &v->src_md, scratch, "input reorder")) < 0)
            return rc;
        src = scratch;
    }
    if (c->sum && res != dst) { /* res == dst: the residual is in the output's buffer */
        if (res_blk)
            memcpy(dst, res, D.dnnl_memory_desc_get_size(&v->dst_md));
        else if ((rc = reorder_run(v->r_res, &v->y_md, res, &v->dst_md, dst, "residual reorder")) <
                 0)
            return rc;
    }
    int arg[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD};
    const dnnl_memory_desc_t *md[4] = {&v->src_md, NULL, &v->dst_md, &v->pad_md};
    void *ptr[4] = {(void *)src, NULL, dst, scratch + v->n_src + v->n_dst};
    /* the weights and bias are the primitive's own memories: passed as they are */
    dnnl_exec_arg_t a[6];
    int made = 0;
    dnnl_stream_t s = stream();
    if (!s)
        return h2t_err_set(H2T_ESTATE, "conv: oneDNN stream not created");
    rc = 0;
    for (int i = 0; i < 4; i++) {
        if (i == 1)
            continue;
        a[made].arg = arg[i];
        if (D.dnnl_memory_create(&a[made].memory, md[i], D.eng, ptr[i]) != dnnl_success) {
            rc = h2t_err_set(H2T_ESTATE, "conv: oneDNN memory");
            goto out;
        }
        made++;
    }
    a[made].arg = DNNL_ARG_WEIGHTS;
    a[made].memory = v == &c->v[1] && c->wei_g ? c->wei_g : c->wei;
    int n = made + 1;
    if (c->bia) {
        a[n].arg = DNNL_ARG_BIAS;
        a[n].memory = c->bia;
        n++;
    }
    if (D.dnnl_primitive_execute(v->conv, s, n, a) != dnnl_success)
        rc = h2t_err_set(H2T_ESTATE, "conv: oneDNN refused to run %s", c->impl);
out:
    for (int i = 0; i < made; i++)
        D.dnnl_memory_destroy(a[i].memory);
    if (rc == 0 && !y_blk)
        rc = reorder_run(v->r_dst, &v->dst_md, dst, &v->y_md, y, "output reorder");
    return rc;
}

int h2t_dconv_run(const h2t_dconv *c, const float *x, int x_blk, const float *res, int res_blk,
                  float *y, int y_blk, float *scratch)
{
    return var_run(c, &c->v[0], x, x_blk, res, res_blk, y, y_blk, scratch);
}

int h2t_dconv_run_group(const h2t_dconv *c, const float *x, int x_blk, const float *res,
                        int res_blk, float *y, int y_blk, float *scratch)
{
    if (!c->v[1].conv)
        return h2t_err_set(H2T_EINVAL, "conv: %s has no group form", c->impl);
    return var_run(c, &c->v[1], x, x_blk, res, res_blk, y, y_blk, scratch);
}

#endif
