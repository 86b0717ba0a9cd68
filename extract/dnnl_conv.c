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
    X(dnnl_primitive_desc_create)                                                                  \
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
static int g_on = -1; /* -1: not chosen yet */
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

struct h2t_dconv {
    h2t_dconv_geo g;
    dnnl_primitive_t conv, r_src, r_dst, r_res;    /* reorders: NULL when not needed */
    dnnl_memory_desc_t src_md, dst_md, x_md, y_md; /* x_md / y_md: NCHW of the input / output */
    dnnl_memory_t wei, bia;                        /* owned copies in oneDNN's layout */
    float *bias;                                   /* bia's buffer */
    size_t n_src, n_dst, n_pad;                    /* scratch floats: src, dst, scratchpad */
    dnnl_memory_desc_t pad_md;
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

void h2t_dconv_free(h2t_dconv *c)
{
    if (!c)
        return;
    if (c->conv)
        D.dnnl_primitive_destroy(c->conv);
    if (c->r_src)
        D.dnnl_primitive_destroy(c->r_src);
    if (c->r_dst)
        D.dnnl_primitive_destroy(c->r_dst);
    if (c->r_res)
        D.dnnl_primitive_destroy(c->r_res);
    if (c->wei)
        D.dnnl_memory_destroy(c->wei);
    if (c->bia)
        D.dnnl_memory_destroy(c->bia);
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

int h2t_dconv_create(const h2t_dconv_geo *g, const float *w, const float *bias, int act, float lo,
                     float hi, int sum, h2t_dconv **out)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t rw = NULL;
    dnnl_memory_t wu = NULL;
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
    int grp = g->G > 1;
    dnnl_format_tag_t blk = h2t_dconv_block() == 16 ? dnnl_nChw16c : dnnl_nChw8c;
    dnnl_dims_t sd = {1, g->C, g->H, g->W}, dd = {1, g->M, g->OH, g->OW}, bd = {g->M};
    dnnl_dims_t wd4 = {g->M, g->C, g->kh, g->kw},
                wd5 = {g->G, g->M / g->G, g->C / g->G, g->kh, g->kw};
    dnnl_dims_t st = {g->sh, g->sw}, dl = {g->dh - 1, g->dw - 1}, pl = {g->pt, g->pl};
    dnnl_dims_t pr = {(g->OH - 1) * g->sh + (g->kh - 1) * g->dh + 1 - g->H - g->pt,
                      (g->OW - 1) * g->sw + (g->kw - 1) * g->dw + 1 - g->W - g->pl};
    dnnl_memory_desc_t wmd_any, wmd_user, bmd;
    c->src_blk = g->C >= 8;
    if (D.dnnl_memory_desc_init_by_tag(&c->x_md, 4, sd, dnnl_f32, dnnl_nchw) ||
        D.dnnl_memory_desc_init_by_tag(&c->y_md, 4, dd, dnnl_f32, dnnl_nchw) ||
        D.dnnl_memory_desc_init_by_tag(&c->src_md, 4, sd, dnnl_f32, c->src_blk ? blk : dnnl_nchw) ||
        D.dnnl_memory_desc_init_by_tag(&c->dst_md, 4, dd, dnnl_f32, blk) ||
        D.dnnl_memory_desc_init_by_tag(&wmd_any, grp ? 5 : 4, grp ? wd5 : wd4, dnnl_f32,
                                       dnnl_format_tag_any) ||
        D.dnnl_memory_desc_init_by_tag(&wmd_user, grp ? 5 : 4, grp ? wd5 : wd4, dnnl_f32,
                                       grp ? dnnl_goihw : dnnl_oihw) ||
        D.dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x)) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN memory descriptors");
        goto out;
    }
    dnnl_convolution_desc_t cd;
    if (D.dnnl_dilated_convolution_forward_desc_init(
            &cd, dnnl_forward_inference, dnnl_convolution_direct, &c->src_md, &wmd_any,
            bias ? &bmd : NULL, &c->dst_md, st, dl, pl, pr) != dnnl_success) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN refuses the convolution's geometry");
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
    if (D.dnnl_primitive_desc_create(&pd, &cd, attr, D.eng, NULL) != dnnl_success) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN has no convolution for this geometry");
        goto out;
    }
    const char *impl = NULL;
    D.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(c->impl, sizeof c->impl, "%s", impl ? impl : "?");
    if (!impl || !strncmp(impl, "ref", 3) || strstr(impl, "gemm")) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN's only convolution here is %s", c->impl);
        goto out;
    }
    const dnnl_memory_desc_t *wmd = D.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *pmd = D.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    c->pad_md = *pmd;
    c->n_pad = floats_of(pmd);
    c->n_src = c->src_blk ? floats_of(&c->src_md) : 0;
    c->n_dst = floats_of(&c->dst_md);
    if (D.dnnl_primitive_create(&c->conv, pd) != dnnl_success) {
        c->conv = NULL;
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN primitive %s not created", c->impl);
        goto out;
    }
    /* weights and bias: copies in oneDNN's layout, owned by the primitive's memories */
    if (D.dnnl_memory_create(&c->wei, wmd, D.eng, DNNL_MEMORY_ALLOCATE) ||
        D.dnnl_memory_create(&wu, &wmd_user, D.eng, (void *)w) ||
        !(rw = reorder_make(&wmd_user, wmd))) {
        rc = h2t_err_set(H2T_ENOMEM, "conv: oneDNN weights");
        goto out;
    }
    dnnl_exec_arg_t wa[2] = {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, c->wei}};
    dnnl_stream_t s = stream();
    if (!s || D.dnnl_primitive_execute(rw, s, 2, wa) != dnnl_success) {
        rc = h2t_err_set(H2T_ESTATE, "conv: oneDNN weight reorder");
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
    if ((c->src_blk && !(c->r_src = reorder_make(&c->x_md, &c->src_md))) ||
        !(c->r_dst = reorder_make(&c->dst_md, &c->y_md)) ||
        (sum && !(c->r_res = reorder_make(&c->y_md, &c->dst_md)))) {
        rc = h2t_err_set(H2T_EUNSUPPORTED, "conv: oneDNN reorders");
        goto out;
    }
out:
    if (rw)
        D.dnnl_primitive_destroy(rw);
    if (wu)
        D.dnnl_memory_destroy(wu);
    if (pd)
        D.dnnl_primitive_desc_destroy(pd);
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

size_t h2t_dconv_scratch(const h2t_dconv *c)
{
    return c->n_src + c->n_dst + c->n_pad;
}

const char *h2t_dconv_impl(const h2t_dconv *c)
{
    return c->impl;
}

int h2t_dconv_run(const h2t_dconv *c, const float *x, int x_blk, const float *res, int res_blk,
                  float *y, int y_blk, float *scratch)
{
    int rc;
    one_thread();
    const void *src = x;
    float *dst = y_blk ? y : scratch + c->n_src;
    if (c->src_blk && !x_blk) {
        if ((rc = reorder_run(c->r_src, &c->x_md, x, &c->src_md, scratch, "input reorder")) < 0)
            return rc;
        src = scratch;
    }
    if (c->sum) {
        if (res_blk)
            memcpy(dst, res, D.dnnl_memory_desc_get_size(&c->dst_md));
        else if ((rc = reorder_run(c->r_res, &c->y_md, res, &c->dst_md, dst, "residual reorder")) <
                 0)
            return rc;
    }
    int arg[5] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD, DNNL_ARG_BIAS};
    const dnnl_memory_desc_t *md[4] = {&c->src_md, NULL, &c->dst_md, &c->pad_md};
    void *ptr[4] = {(void *)src, NULL, dst, scratch + c->n_src + c->n_dst};
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
    a[made].memory = c->wei;
    int n = made + 1;
    if (c->bia) {
        a[n].arg = DNNL_ARG_BIAS;
        a[n].memory = c->bia;
        n++;
    }
    if (D.dnnl_primitive_execute(c->conv, s, n, a) != dnnl_success)
        rc = h2t_err_set(H2T_ESTATE, "conv: oneDNN refused to run %s", c->impl);
out:
    for (int i = 0; i < made; i++)
        D.dnnl_memory_destroy(a[i].memory);
    if (rc == 0 && !y_blk)
        rc = reorder_run(c->r_dst, &c->dst_md, dst, &c->y_md, y, "output reorder");
    return rc;
}

#endif
