/*
 * bench/extract_full.c - the whole extraction pass: forward + pooling + store writes.
 *
 * Runs extract/extract.h's pass (h2t_extract_plan_create + h2t_extract_plan_run) over the
 * first --limit samples of Fashion-MNIST (Debian dataset-fashion-mnist) into a fresh store in
 * a temporary folder, with the model's default layer rule (every selected tensor pooled to
 * --target features and written), and prints images/s of the whole pass and the share of time
 * spent outside the forward pass (read + preprocess, pooling, store), from the pass's own
 * timers (h2t_extract_result t_total, t_forward, t_read, t_pool, t_write), then the same split
 * in process CPU milliseconds per image (cpu_forward, cpu_pool, cpu_read, cpu_write, and the
 * rest: setup, thread starts), which a busy machine does not skew, then the store's part
 * split (h2t_store_write_times: statistics, rows, CRC32C, LMDB, the commit's CPU and wall),
 * with the CPU model and the load average at the start and the end. The forward-only peer
 * comparison is bench/extract.c.
 *
 *     build/bench/extract_full [--model mobilenet_v2] [--limit 320] [--batch 32]
 *                              [--threads 2] [--target 512] [--data SPEC] [--pool-only REPS]
 *                              [--ort] [--rounds K] [--keep-cache]
 *
 * --ort: the whole pass against ONNX Runtime computing the same tensors: a copy of the model
 * whose graph outputs are the layer rule's tensors (tests/conformance/expose_all.py --only),
 * run by bench/extract_ort.js with the same batch and threads, with graph optimisations (all)
 * and without (disabled). ORT only computes them (no pooling, no store); h2tdb's figure is the
 * whole pass. One untimed warm-up pass, then K rounds (default 3) of one pass (a fresh store
 * each) and 3 ORT runs of each kind; medians with their range, the CPU model and the load
 * average. Zoo models (vit_b_16, swin_t-opset13, ...) as bench/bench_model.h names them.
 *
 * --keep-cache: the pass leaves the feature blocks it writes in the page cache
 * (h2t_extract_opts.keep_cache; by default each is dropped once durable).
 *
 * --pool-only REPS: no pass; pooling alone on the model's selected tensor shapes, written and
 * pooled after each whole tensor and in ~32 KiB channel chunks, then the pieces of one real
 * forward pass replayed as the pass pools them (every layer observed, and only the Conv and
 * Clip outputs that the pass pools when the other layers derive theirs; see pool_only and
 * pool_in_pass below).
 *
 * Run from the repository root (make bench does); models/NAME.onnx comes from
 * deploy/fetch_model.sh --all, run first (idempotent).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_model.h"
#include "common/cpu.h"
#include "common/err.h"
#include "extract/extract.h"
#include "storage/store.h"

/* ---- --pool-only: pooling alone on the model's own tensor shapes ----
 *
 * Every selected tensor gets its own buffer; per image each buffer is written (memcpy of a
 * repeated 4 KiB pattern, standing in for the kernel that produces it) and then pooled, in
 * graph order. Three ways, each timed with the thread's CPU clock around one whole image:
 *   after:   write the whole tensor, then pool it (what the pass does: the executor calls
 *            back once per tensor), with the AVX and the generic kernels;
 *   chunked: write about 32 KiB of whole channels, pool those channels at once
 *            (h2t_pool_apply_channels), next chunk: what a producer could do while the
 *            chunk is still in L1/L2;
 *   write:   the chunked writes alone, subtracted from chunked.
 * Minimum and median over the repetitions, in ms per image. */
typedef struct pool_sim {
    uint32_t n;
    h2t_pool_plan *pp;
    size_t *per;
    float **buf, **out;
    float tab[1024]; /* the values written, repeated */
} pool_sim;

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* x[k] = tab[k % 1024] for k in [a, b): memcpy speed, like a kernel's stores */
static void fill(const pool_sim *ps, float *x, size_t a, size_t b)
{
    while (a < b) {
        size_t off = a & 1023, len = 1024 - off < b - a ? 1024 - off : b - a;
        memcpy(x + a, ps->tab + off, len * sizeof(float));
        a += len;
    }
}

/* one image: mode 0 after (isa), 1 chunked, 2 chunked writes only */
static void pool_sim_image(const pool_sim *ps, int mode, int isa)
{
    for (uint32_t l = 0; l < ps->n; l++) {
        const h2t_pool_plan *p = &ps->pp[l];
        float *x = ps->buf[l];
        int four = p->kind == H2T_POOL_GAP || p->kind == H2T_POOL_GRID;
        if (mode == 0 || !four) {
            fill(ps, x, 0, ps->per[l]);
            if (mode != 2)
                h2t_pool_apply_isa(p, x, ps->out[l], isa);
            continue;
        }
        size_t hw = ps->per[l] / p->c;
        uint32_t nc = hw < 8192 ? (uint32_t)(8192 / hw) : 1;
        for (uint32_t c0 = 0; c0 < p->c; c0 += nc) {
            uint32_t c1 = p->c - c0 < nc ? p->c : c0 + nc;
            fill(ps, x, c0 * hw, c1 * hw);
            if (mode == 1)
                h2t_pool_apply_channels(p, x, c0, c1, ps->out[l]);
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *pool_isa_name(int isa)
{
    return isa == H2T_POOL_ISA_AVX512 ? "AVX-512" : isa == H2T_POOL_ISA_AVX ? "AVX" : "generic";
}

/* reps rounds of the four ways in turn (so that a busy moment hits all four alike); per way
 * the minimum and the median over the rounds */
static void pool_sim_time(const pool_sim *ps, int reps, double mn[4], double md[4])
{
    static const int modes[4] = {0, 0, 1, 2};
    const int isas[4] = {h2t_pool_isa_best(), H2T_POOL_ISA_GENERIC, 0, 0};
    double t[4][64];
    if (reps > 64)
        reps = 64;
    for (int k = 0; k < 4; k++)
        pool_sim_image(ps, modes[k], isas[k]); /* warm-up */
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 4; k++) {
            double c0 = thread_cpu_s();
            pool_sim_image(ps, modes[k], isas[k]);
            t[k][r] = thread_cpu_s() - c0;
        }
    for (int k = 0; k < 4; k++) {
        qsort(t[k], (size_t)reps, sizeof t[k][0], cmp_double);
        mn[k] = 1e3 * t[k][0];
        md[k] = 1e3 * t[k][reps / 2];
    }
}

/* ---- --pool-only, in the pass: the pieces of one real forward pass, replayed ----
 *
 * One forward pass at batch 1 (h2t_exec_run_ranges, as the pass runs it) records every call
 * the executor makes for the observed tensors: a piece (channels [c0, c1), plane values
 * [off, off + len)) of a fused conv chain's output, or a whole tensor. The replay writes each
 * piece (fill, as the chain's epilogue would) and pools it at once exactly as extract.c's
 * on_range / on_tensor do (h2t_pool_apply_channels for whole planes, h2t_pool_stream for
 * partial ones, h2t_pool_apply for whole tensors), so the kernels see the pass's shapes,
 * piece sizes and cache state. Only the pooling calls are timed (time-stamp counter, as
 * extract.c does), and so is, in alternate rounds, a plain loop that reads the same pieces once:
 * the floor of any pooling of them. Two sets: every layer observed (pool_direct = 1), and only
 * the Conv and Clip outputs (the layers the pass pools from their own tensors when the others
 * derive their features). */
typedef struct rec_call {
    uint32_t layer, c0, c1, whole;
    size_t off, len;
} rec_call;

typedef struct rec {
    const int *layer_of; /* per model tensor: layer index or -1 */
    rec_call *v;
    size_t n, cap;
} rec;

static int rec_push(rec *r, rec_call c)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 1024;
        rec_call *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return h2t_err_set(H2T_ENOMEM, "pool-only call record");
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = c;
    return 0;
}

static int rec_tensor(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    rec *r = ctx;
    (void)data, (void)shape, (void)rank;
    if (r->layer_of[tensor] < 0)
        return 0;
    rec_call c = {(uint32_t)r->layer_of[tensor], 0, 0, 1, 0, 0};
    return rec_push(r, c);
}

static int rec_range(void *ctx, int tensor, const float *data, const int64_t *shape, int rank,
                     int sample, int c0, int c1, int64_t off, int64_t len)
{
    rec *r = ctx;
    (void)data, (void)shape, (void)rank, (void)sample;
    if (r->layer_of[tensor] < 0)
        return 0;
    rec_call c = {
        (uint32_t)r->layer_of[tensor], (uint32_t)c0, (uint32_t)c1, 0, (size_t)off, (size_t)len};
    return rec_push(r, c);
}

/* Record the calls of one forward pass observing the layers whose op is in ops (NULL: all). */
static int rec_pass(const char *model_path, const h2t_layer_info *li, uint32_t nl,
                    const char *const *ops, rec *r, uint32_t *n_obs)
{
    h2t_model *m = NULL;
    h2t_exec *x = NULL;
    int *layer_of = NULL, rc;
    float *in = NULL;
    *n_obs = 0;
    if ((rc = h2t_model_load(model_path, &m)) < 0 || (rc = h2t_exec_create(m, 1, &x)) < 0)
        goto out;
    int nt = h2t_model_n_tensors(m);
    if (!(layer_of = malloc(sizeof(int) * (size_t)nt))) {
        rc = h2t_err_set(H2T_ENOMEM, "pool-only");
        goto out;
    }
    for (int t = 0; t < nt; t++)
        layer_of[t] = -1;
    for (uint32_t l = 0; l < nl; l++) {
        int keep = !ops;
        for (int k = 0; ops && ops[k]; k++)
            keep |= !strcmp(li[l].op, ops[k]);
        int t = h2t_model_tensor_find(m, li[l].name);
        if (!keep || t < 0)
            continue;
        layer_of[t] = (int)l;
        (*n_obs)++;
        if ((rc = h2t_exec_observe(x, t, 1)) < 0)
            goto out;
    }
    const h2t_tensor_info *ti = h2t_model_input(m);
    size_t n = 1;
    for (int k = 1; k < ti->rank; k++)
        n *= (size_t)ti->shape[k];
    if (!(in = malloc(sizeof(float) * n))) {
        rc = h2t_err_set(H2T_ENOMEM, "pool-only input");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        in[i] = (float)((i * 37) % 255) / 127.5f - 1.0f;
    r->layer_of = layer_of;
    h2t_blas_threads(1);
    rc = h2t_exec_run_ranges(x, in, 1, rec_tensor, rec_range, r);
out:
    free(in);
    free(layer_of);
    r->layer_of = NULL;
    h2t_exec_destroy(x);
    h2t_model_destroy(m);
    return rc;
}

/* The time-stamp counter (as extract.c times its pooling callbacks: a CPU clock read costs a
 * system call per piece), converted to seconds with its rate over the whole replay. */
static uint64_t ticks(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_ia32_rdtsc();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The floor: every value of a piece read once, four independent 8-float sums per channel (AVX
 * where the CPU has it), no order kept: what any pooling of these pieces pays for the loads. */
#if defined(__x86_64__) && defined(__GNUC__)
typedef float bv8 __attribute__((vector_size(32)));
typedef float bv8u __attribute__((vector_size(32), aligned(4)));
#define BLD8(p) (*(const bv8u *)(const void *)(p))
__attribute__((target("avx"))) static void read_once_avx(const float *x, size_t hw, uint32_t c0,
                                                         uint32_t c1, size_t off, size_t len,
                                                         float *out)
{
    for (uint32_t c = c0; c < c1; c++) {
        const float *q = x + c * hw + off;
        bv8 a0 = {0, 0, 0, 0, 0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
        size_t k = 0;
        for (; k + 32 <= len; k += 32) {
            a0 += BLD8(q + k);
            a1 += BLD8(q + k + 8);
            a2 += BLD8(q + k + 16);
            a3 += BLD8(q + k + 24);
        }
        for (; k + 8 <= len; k += 8)
            a0 += BLD8(q + k);
        float t = 0;
        for (; k < len; k++)
            t += q[k];
        a0 = (a0 + a1) + (a2 + a3);
        out[c] = t + a0[0] + a0[7];
    }
}
#endif

static void read_once(const float *x, size_t hw, uint32_t c0, uint32_t c1, size_t off, size_t len,
                      float *out)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (h2t_cpu_has(H2T_CPU_AVX)) {
        read_once_avx(x, hw, c0, c1, off, len, out);
        return;
    }
#endif
    for (uint32_t c = c0; c < c1; c++) {
        const float *q = x + c * hw + off;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        size_t k = 0;
        for (; k + 4 <= len; k += 4) {
            a0 += q[k];
            a1 += q[k + 1];
            a2 += q[k + 2];
            a3 += q[k + 3];
        }
        for (; k < len; k++)
            a0 += q[k];
        out[c] = (a0 + a1) + (a2 + a3);
    }
}

/* One replay of the recorded calls: each piece written (fill), then pooled as extract.c pools
 * it (mode 0) or read once (mode 1); returns the ticks spent in the pooling (or reading) calls
 * alone. All tensors share the buffer x (as the executor's arena reuses its buffers: the values
 * are never read again after their piece is pooled). */
static uint64_t rec_replay(const pool_sim *ps, const rec *r, void **states, float *x, int mode)
{
    uint64_t spent = 0;
    for (size_t i = 0; i < r->n; i++) {
        const rec_call *c = &r->v[i];
        const h2t_pool_plan *p = &ps->pp[c->layer];
        float *out = ps->out[c->layer];
        size_t hw = (size_t)p->h * p->w;
        if (c->whole)
            fill(ps, x, 0, ps->per[c->layer]);
        else if (c->off == 0 && c->len == hw)
            fill(ps, x, c->c0 * hw, c->c1 * hw);
        else
            for (uint32_t ch = c->c0; ch < c->c1; ch++)
                fill(ps, x, ch * hw + c->off, ch * hw + c->off + c->len);
        uint64_t t0 = ticks();
        if (mode == 1 && c->whole)
            read_once(x, ps->per[c->layer], 0, 1, 0, ps->per[c->layer], out);
        else if (mode == 1)
            read_once(x, hw, c->c0, c->c1, c->off, c->len, out);
        else if (c->whole)
            h2t_pool_apply(p, x, out);
        else if (c->off == 0 && c->len == hw)
            h2t_pool_apply_channels(p, x, c->c0, c->c1, out);
        else if (!states[c->layer])
            h2t_pool_apply(p, x, out); /* whole planes only (never on MobileNetV2) */
        else
            h2t_pool_stream(p, states[c->layer], x, c->c0, c->c1, c->off, c->len, out);
        spent += ticks() - t0;
    }
    return spent;
}

/* reps rounds of (pool, read once) on the recorded pass; min and median ms per image of each;
 * *floats the values pooled per image */
static int rec_time(const pool_sim *ps, const rec *r, int reps, double mn[2], double md[2],
                    size_t *floats)
{
    void **states = calloc(ps->n, sizeof(void *));
    size_t max = 0;
    for (uint32_t l = 0; l < ps->n; l++)
        max = ps->per[l] > max ? ps->per[l] : max;
    float *x = malloc(sizeof(float) * max);
    double t[2][64];
    int rc = 0;
    if (!states || !x) {
        free(states);
        free(x);
        return h2t_err_set(H2T_ENOMEM, "pool-only states");
    }
    *floats = 0;
    for (size_t i = 0; i < r->n; i++) {
        const rec_call *c = &r->v[i];
        const h2t_pool_plan *p = &ps->pp[c->layer];
        *floats += c->whole ? ps->per[c->layer] : (size_t)(c->c1 - c->c0) * c->len;
        size_t sb = h2t_pool_stream_bytes(p);
        if (!c->whole && sb && !states[c->layer] && !(states[c->layer] = malloc(sb))) {
            rc = h2t_err_set(H2T_ENOMEM, "pool-only states");
            goto out;
        }
    }
    if (reps > 64)
        reps = 64;
    rec_replay(ps, r, states, x, 0);
    rec_replay(ps, r, states, x, 1);
    double s0 = mono_s();
    uint64_t k0 = ticks();
    for (int k = 0; k < reps; k++)
        for (int mode = 0; mode < 2; mode++)
            t[mode][k] = (double)rec_replay(ps, r, states, x, mode);
    double rate = (double)(ticks() - k0) / (mono_s() - s0); /* ticks per second */
    for (int k = 0; k < 2; k++) {
        qsort(t[k], (size_t)reps, sizeof t[k][0], cmp_double);
        mn[k] = 1e3 * t[k][0] / rate;
        md[k] = 1e3 * t[k][reps / 2] / rate;
    }
out:
    for (uint32_t l = 0; l < ps->n; l++)
        free(states[l]);
    free(states);
    free(x);
    return rc;
}

static int pool_in_pass(const pool_sim *ps, const h2t_layer_info *li, const char *model_path,
                        int reps)
{
    static const char *const direct[] = {"Conv", "Clip", NULL};
    for (int set = 0; set < 2; set++) {
        rec r = {NULL, NULL, 0, 0};
        uint32_t n_obs = 0;
        size_t floats = 0, whole = 0;
        double mn[2], md[2];
        int rc = rec_pass(model_path, li, ps->n, set ? direct : NULL, &r, &n_obs);
        if (rc == 0)
            rc = rec_time(ps, &r, reps, mn, md, &floats);
        for (size_t i = 0; i < r.n; i++)
            whole += r.v[i].whole ||
                     (r.v[i].off == 0 &&
                      r.v[i].len == (size_t)ps->pp[r.v[i].layer].h * ps->pp[r.v[i].layer].w);
        free(r.v);
        if (rc < 0)
            return rc;
        printf("  in the pass, %s (%u tensors, %.2f M floats, %zu calls, %zu of whole planes): "
               "pooling %.3f / %.3f ms/image (%.1f G floats/s); the same pieces read once %.3f / "
               "%.3f\n",
               set ? "Conv and Clip outputs" : "every layer", n_obs, 1e-6 * (double)floats, r.n,
               whole, mn[0], md[0], 1e-6 * (double)floats / mn[0], mn[1], md[1]);
    }
    return 0;
}

static int pool_only(h2t_extract_plan *plan, const char *model, const char *model_path,
                     uint32_t target, int reps)
{
    uint32_t n = 0;
    uint64_t total = 0;
    const h2t_layer_info *li = h2t_extract_plan_layers(plan, &n, &total);
    pool_sim ps = {n,
                   calloc(n, sizeof(h2t_pool_plan)),
                   calloc(n, sizeof(size_t)),
                   calloc(n, sizeof(float *)),
                   calloc(n, sizeof(float *)),
                   {0}};
    for (int k = 0; k < 1024; k++)
        ps.tab[k] = (float)((k * 37) % 1024) * 0.002f - 1.0f;
    int rc = 0;
    size_t floats = 0;
    if (!ps.pp || !ps.per || !ps.buf || !ps.out) {
        rc = h2t_err_set(H2T_ENOMEM, "pool-only buffers");
        goto out;
    }
    for (uint32_t l = 0; l < n; l++) {
        int64_t shape[4] = {1, 1, 1, 1};
        for (uint32_t k = 1; k < li[l].rank; k++)
            shape[k] = li[l].shape[k - 1];
        if ((rc = h2t_pool_plan_make((int)li[l].rank, shape, target, &ps.pp[l])) < 0)
            goto out;
        ps.per[l] = 1;
        for (uint32_t k = 1; k < li[l].rank; k++)
            ps.per[l] *= li[l].shape[k - 1];
        floats += ps.per[l];
        ps.buf[l] = malloc(sizeof(float) * ps.per[l]);
        ps.out[l] = malloc(sizeof(float) * ps.pp[l].dim);
        if (!ps.buf[l] || !ps.out[l]) {
            rc = h2t_err_set(H2T_ENOMEM, "pool-only buffers");
            goto out;
        }
    }
    double mn[4], md[4];
    pool_sim_time(&ps, reps, mn, md);
    /* the writes are timed with the pooling; subtract the same writes done alone */
    printf("pool only       %-13s %u tensors, %zu floats (%.1f MB) per image, T=%u, best kernels "
           "%s, %d rounds, thread CPU ms/image min / median:\n"
           "  write + pool after the whole tensor: best %.3f / %.3f, generic %.3f / %.3f\n"
           "  write + pool per ~32 KiB channel chunk (best): %.3f / %.3f\n"
           "  the writes alone: %.3f / %.3f\n"
           "  pooling = minus the writes (mins): after the tensor best %.3f, generic %.3f; per "
           "chunk %.3f\n",
           model, n, floats, 4e-6 * (double)floats, target, pool_isa_name(h2t_pool_isa_best()),
           reps, mn[0], md[0], mn[1], md[1], mn[2], md[2], mn[3], md[3], mn[0] - mn[3],
           mn[1] - mn[3], mn[2] - mn[3]);
    rc = pool_in_pass(&ps, li, model_path, reps);
out:
    for (uint32_t l = 0; l < n && ps.buf && ps.out; l++) {
        free(ps.buf[l]);
        free(ps.out[l]);
    }
    free(ps.pp);
    free(ps.per);
    free(ps.buf);
    free(ps.out);
    return rc;
}

/* median of v[0..n) (sorted in place: v[0] and v[n - 1] are then the range) */
static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The layer rule's tensor names into dir/layers.txt and a copy of the model with them as graph
 * outputs into dir/exposed.onnx, for ONNX Runtime to compute what the pass pools. */
static int expose_layers(h2t_extract_plan *plan, const char *model_path, const char *dir,
                         char *exposed, size_t n)
{
    char names[600], cmd[2048];
    uint32_t n_layers = 0;
    uint64_t total = 0;
    const h2t_layer_info *li = h2t_extract_plan_layers(plan, &n_layers, &total);
    FILE *f;

    snprintf(names, sizeof names, "%s/layers.txt", dir);
    snprintf(exposed, n, "%s/exposed.onnx", dir);
    f = fopen(names, "w");
    if (!f)
        return h2t_err_set(H2T_EIO, "%s", names);
    for (uint32_t l = 0; l < n_layers; l++)
        fprintf(f, "%s\n", li[l].name);
    if (fclose(f) != 0)
        return h2t_err_set(H2T_EIO, "%s", names);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/conformance/expose_all.py '%s' '%s' --only '%s'", model_path,
             exposed, names);
    if (system(cmd) != 0)
        return h2t_err_set(H2T_EIO, "%s failed", cmd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = "mobilenet_v2";
    const char *data = "idx:/usr/share/datasets/fashion-mnist";
    char path[512], dir[] = "/tmp/h2t-bench-extract-XXXXXX", cmd[600], sub[600];
    char exposed[600], ver[64] = "?", cpu[256];
    h2t_extract_opts o;
    h2t_extract_plan *plan = NULL;
    h2t_extract_result res;
    h2t_store_write_times wt;
    h2t_store *st = NULL;
    int rc = 0, made = 0, pool_reps = 0, ort = 0, rounds = 0, passes;
    int n_pass = 0, n_all = 0, n_dis = 0, warm_all = 0, warm_dis = 0;
    double ips_pass[64], ips_all[192], ips_dis[192];
    uint32_t n_layers = 0;
    uint64_t total_dim = 0;

    h2t_extract_opts_init(&o);
    o.limit = 320;
    o.batch = 32;
    o.threads = 2;
    o.progress = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--ort") == 0) {
            ort = 1;
            i--;
            continue;
        }
        if (strcmp(a, "--keep-cache") == 0) {
            o.keep_cache = 1;
            i--;
            continue;
        }
        if (strcmp(a, "--pool-only") == 0) {
            pool_reps = v ? atoi(v) : 0;
            if (pool_reps < 1) {
                fprintf(stderr, "extract_full: --pool-only REPS (1..64)\n");
                return 2;
            }
            continue;
        }
        if (!v) {
            fprintf(stderr, "usage: extract_full [--model NAME] [--limit N] [--batch B] "
                            "[--threads T] [--target T] [--data SPEC] [--pool-only REPS] "
                            "[--ort] [--rounds K] [--keep-cache]\n");
            return 2;
        }
        if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--limit") == 0)
            o.limit = (uint32_t)atol(v);
        else if (strcmp(a, "--batch") == 0)
            o.batch = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o.threads = atoi(v);
        else if (strcmp(a, "--target") == 0)
            o.target_size = (uint32_t)atol(v);
        else if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--rounds") == 0)
            rounds = atoi(v);
        else {
            fprintf(stderr, "extract_full: unknown option %s\n", a);
            return 2;
        }
    }
    if (rounds < 0 || rounds > 64) {
        fprintf(stderr, "extract_full: --rounds 1..64\n");
        return 2;
    }
    if (rounds == 0)
        rounds = ort ? 3 : 1;
    passes = ort ? rounds + 1 : rounds; /* with --ort the first pass is a warm-up */
    if (system("./deploy/fetch_model.sh --all >/dev/null") != 0) {
        fprintf(stderr, "extract_full: deploy/fetch_model.sh --all failed (run from the "
                        "repository root)\n");
        return 1;
    }
    if ((rc = bench_model_path(model, path, sizeof path)) < 0)
        goto out;
    o.model_path = path;
    o.data_spec = data;
    if (!mkdtemp(dir)) {
        rc = h2t_err_set(H2T_EIO, "mkdtemp %s", dir);
        goto out;
    }
    made = 1;
    if ((rc = h2t_extract_plan_create(&o, &plan)) < 0)
        goto out;
    h2t_extract_plan_layers(plan, &n_layers, &total_dim);
    if (pool_reps) {
        rc = pool_only(plan, model, path, o.target_size, pool_reps);
        goto out;
    }
    bench_cpu_model(cpu, sizeof cpu);
    printf("cpu: %s; load average %.2f at the start\n", cpu, bench_loadavg());
    if (ort && (rc = expose_layers(plan, path, dir, exposed, sizeof exposed)) < 0)
        goto out;
    for (int r = 0; r < passes; r++) {
        /* a fresh plan and store per pass: the same request into one store would be reused */
        if (r > 0) {
            h2t_extract_plan_destroy(plan);
            plan = NULL;
            if ((rc = h2t_extract_plan_create(&o, &plan)) < 0)
                goto out;
        }
        snprintf(sub, sizeof sub, "%s/store%d", dir, r);
        if ((rc = h2t_store_open(sub, H2T_STORE_CREATE, &st)) < 0)
            goto out;
        if ((rc = h2t_extract_plan_run(plan, st, &res)) < 0)
            goto out;
        h2t_store_write_times_get(st, &wt);
        h2t_store_close(st);
        st = NULL;
        if (ort && r == 0)
            continue;
        ips_pass[n_pass++] = res.computed / res.t_total;
        if (ort && ((rc = bench_ort_runs(exposed, "all", o.batch, 3, o.threads, ips_all, &n_all,
                                         ver, sizeof ver, &warm_all)) < 0 ||
                    (rc = bench_ort_runs(exposed, "disabled", o.batch, 3, o.threads, ips_dis,
                                         &n_dis, ver, sizeof ver, &warm_dis)) < 0))
            goto out;
    }
    {
        double outside = res.t_total - res.t_forward;
        double n = res.computed ? res.computed : 1;
        double other =
            res.cpu_total - res.cpu_forward - res.cpu_pool - res.cpu_read - res.cpu_write;
        printf("extract full    %-13s %u samples of %s, batch %d, %d threads, %u layers, "
               "%llu features/sample: %.1f img/s; forward %.1f%%, outside the forward pass "
               "%.1f%% (read+preprocess %.1f%%, pooling %.1f%%, store %.1f%%)\n",
               model, res.computed, data, o.batch, o.threads, n_layers,
               (unsigned long long)total_dim, res.computed / res.t_total,
               100 * res.t_forward / res.t_total, 100 * outside / res.t_total,
               100 * res.t_read / res.t_total, 100 * res.t_pool / res.t_total,
               100 * res.t_write / res.t_total);
        /* the CPU split, which a busy machine does not skew */
        printf("extract full    %-13s CPU ms/image: forward %.2f, outside %.3f (pooling %.3f, "
               "read+preprocess %.3f, store %.3f, other %.3f); outside the forward pass %.1f%% "
               "of the CPU\n",
               model, 1e3 * res.cpu_forward / n, 1e3 * (res.cpu_total - res.cpu_forward) / n,
               1e3 * res.cpu_pool / n, 1e3 * res.cpu_read / n, 1e3 * res.cpu_write / n,
               1e3 * other / n,
               res.cpu_total > 0 ? 100 * (res.cpu_total - res.cpu_forward) / res.cpu_total : 0);
        /* the store's part, split (h2t_store_write_times): CPU of the writing thread */
        printf("extract full    %-13s store CPU ms/image %.3f: statistics %.3f, rows into the "
               "block %.3f, CRC32C %.3f, LMDB in the transaction %.3f, commit %.3f (its wall "
               "%.3f: %.3f waiting for the disk); %llu batches\n",
               model, 1e3 * wt.cpu_s / n, 1e3 * wt.stats_cpu_s / n, 1e3 * wt.rows_cpu_s / n,
               1e3 * wt.crc_cpu_s / n,
               1e3 * (wt.cpu_s - wt.stats_cpu_s - wt.rows_cpu_s - wt.crc_cpu_s - wt.commit_cpu_s) /
                   n,
               1e3 * wt.commit_cpu_s / n, 1e3 * wt.commit_s / n,
               1e3 * (wt.commit_s - wt.commit_cpu_s) / n, (unsigned long long)wt.calls);
        printf("extract full    %-13s load average %.2f at the end\n", model, bench_loadavg());
    }
    if (ort) {
        double mp = median_of(ips_pass, n_pass), ma = median_of(ips_all, n_all);
        double md = median_of(ips_dis, n_dis);
        printf("extract full vs ORT %s (%s), %u layer tensors, batch %d, %d threads each, "
               "medians (min-max) of %d passes after a warm-up pass and of %d ORT runs:\n"
               "  h2tdb whole pass (forward, pooling, store)    %7.2f img/s (%.2f-%.2f)\n"
               "  onnxruntime %-6s the same tensors, opt=all      %7.2f img/s (%.2f-%.2f) after "
               "%d warm-up runs  ratio h2tdb/ort %.2f\n"
               "  onnxruntime %-6s the same tensors, opt=disabled %7.2f img/s (%.2f-%.2f) after "
               "%d warm-up runs  ratio h2tdb/ort %.2f\n",
               model, path, n_layers, o.batch, o.threads, n_pass, n_all, mp, ips_pass[0],
               ips_pass[n_pass - 1], ver, ma, ips_all[0], ips_all[n_all - 1], warm_all, mp / ma,
               ver, md, ips_dis[0], ips_dis[n_dis - 1], warm_dis, mp / md);
    }
out:
    if (rc < 0)
        fprintf(stderr, "extract_full: %s: %s (%s)\n", model, h2t_strerror(rc), h2t_err_detail());
    h2t_store_close(st);
    h2t_extract_plan_destroy(plan);
    if (made) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "extract_full: could not remove %s\n", dir);
    }
    return rc < 0 ? 1 : 0;
}
