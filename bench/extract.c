/*
 * bench/extract.c - forward-pass throughput of h2tdb's executor against ONNX Runtime.
 *
 * For MobileNetV2 (the nsfwjs conversion), ResNet-50 (random weights) and ViT-B/16 (the zoo's
 * vit_b_16 at opset 17, deploy/export_zoo.py) at 224 x 224, batch 32: images/s of h2tdb
 * (extract/model.h, OpenBLAS with 2 threads) and of ONNX Runtime (onnxruntime-node through
 * bench/extract_ort.js, 2 intra-op threads) in the same run, alternating blocks of runs so
 * that all see the same machine load; each side first runs until two consecutive runs agree
 * within 3% (at most 10 warm-up runs, counted in the output); the figure is the median over
 * all timed runs of each with their range, and the ratio h2tdb / ORT. The CPU model, the
 * load average and the instruction sets each side uses (h2tdb's dispatch, OpenBLAS's build and
 * core, the CPU flags ONNX Runtime's own CPUID dispatch sees) are printed first. A model the
 * executor cannot run yet (an operator missing) gets ONNX Runtime's figures alone and the reason.
 * ORT runs twice: with its graph optimisations (the default: Conv+BatchNorm+activation fused, so
 * those intermediates never exist) and without (every tensor materialised, which is what an
 * extraction needs since Head2Toe reads the BatchNorm and activation outputs too).
 *
 *     build/bench/extract [--runs R] [--rounds K] [--batch B] [--threads T] [--models a,b]
 *                         [--no-ort] [--profile] [--observe]
 *
 * Defaults: 3 runs per block, 2 rounds, batch 32, 2 threads, mobilenet_v2,resnet50,vit_b_16.
 * Model names as bench/bench_model.h resolves them (models/NAME.onnx from
 * deploy/fetch_model.sh --all, run first: idempotent; zoo names such as vit_b_16 or
 * swin_t-opset13 from models/zoo/, exported when missing); run from the repository root
 * (make bench does). Inputs: seeded uniform noise in [-1, 1] (throughput
 * does not depend on the values). --profile: instead of the comparison, h2tdb's time per
 * operator type (every tensor observed, a node's time = the gap between callbacks; Conv split
 * by kernel: depthwise, 1x1, kxk through im2col; a Pad's time counted with the conv after it)
 * and the multiply-adds per image. The comparison prints the GFLOP per image and the sustained
 * GFLOP/s of each side (2 x the multiply-adds of Conv, Gemm and MatMul with constant weights,
 * from the shapes of one batch-1 run), and before the models OpenBLAS sgemm's sustained GFLOP/s
 * on 2048^3 with the same threads (median of 3 after a warm-up), the machine's GEMM rate to
 * read them against.
 * --observe: h2tdb observes every tensor (a no-op callback), as an extraction does: no
 * intermediate is elided or folded, so the fair peer is ORT opt=disabled.
 *
 * The full extraction (forward + pooling + store, and the share of time outside the forward
 * pass) is bench/extract_full.c: it drives extract/extract.h's h2t_extract_plan_run over
 * Fashion-MNIST and reads h2t_extract_result's t_forward / t_total.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_model.h"
#include "common/blas.h"
#include "common/cpu.h"
#include "common/err.h"
#include "extract/gemm.h"
#include "extract/kern.h"
#include "extract/model.h"
#include "extract/onnx_graph.h"

typedef struct bench_opts {
    int runs, rounds, batch, threads, ort, profile, observe;
    char models[256];
} bench_opts;

/* --profile: time per operator type, from the gaps between the executor's per-tensor
 * callbacks (every tensor observed; a node's time is the gap since the previous tensor). */
#define PROF_MAX_OPS 64
typedef struct prof {
    const h2t_model *m;
    double last;
    int n_ops;
    const char *op[PROF_MAX_OPS];
    double sec[PROF_MAX_OPS];
    int count[PROF_MAX_OPS];
} prof;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The class a tensor's producer falls in for the profile ("Conv" split by the kernel that
 * runs it: "Conv depthwise", "Conv 1x1", "Conv kxk" for the im2col ones), and its
 * multiply-adds for the whole tensor (shape: as the callback reports it): Conv, and Gemm and
 * MatMul with a constant second operand; 0 for the rest. Reads the loaded graph
 * (extract/onnx_graph.h). */
static const char *op_class(const h2t_model *m, int tensor, const int64_t *shape, int rank,
                            double *macs)
{
    const char *op = h2t_model_tensor(m, tensor)->op;
    int v = m->info_value[tensor], pi = v >= 0 ? m->values[v].producer : -1;
    double numel = 1;

    *macs = 0;
    if (pi < 0)
        return op;
    for (int i = 0; i < rank; i++)
        numel *= (double)shape[i];
    const onnx_node *nd = &m->nodes[pi];
    const onnx_value *w = nd->n_in > 1 && nd->in[1] >= 0 ? &m->values[nd->in[1]] : NULL;
    if (!strcmp(op, "Conv") && w && w->rank >= 3) {
        int64_t k = 1;
        for (int i = 2; i < w->rank; i++)
            k *= w->shape[i];
        *macs = numel * (double)(w->shape[1] * k);
        if (nd->p.group > 1 && nd->p.group == w->shape[0])
            return "Conv depthwise";
        return k == 1 ? "Conv 1x1" : "Conv kxk";
    }
    if (!strcmp(op, "Gemm") && w && w->kind == ONNX_VAL_CONST && w->rank == 2)
        *macs = numel * (double)(nd->p.trans_b ? w->shape[1] : w->shape[0]);
    else if (!strcmp(op, "MatMul") && w && w->kind == ONNX_VAL_CONST && w->rank >= 2)
        *macs = numel * (double)w->shape[w->rank - 2];
    return op;
}

typedef struct macs_ctx {
    const h2t_model *m;
    double macs;
} macs_ctx;

static int macs_cb(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    macs_ctx *c = ctx;
    double macs;

    (void)data;
    op_class(c->m, tensor, shape, rank, &macs);
    c->macs += macs;
    return 0;
}

/* Multiply-adds of one image: one batch-1 run observing every tensor, summed from the
 * shapes (op_class); the executor observes nothing again afterwards. */
static int model_macs(const h2t_model *m, h2t_exec *x, const float *input, double *out)
{
    macs_ctx c = {m, 0};
    int rc;

    for (int i = 0; i < h2t_model_n_tensors(m); i++)
        if (!h2t_model_tensor(m, i)->is_input && (rc = h2t_exec_observe(x, i, 1)) < 0)
            return rc;
    rc = h2t_exec_run(x, input, 1, macs_cb, &c);
    for (int i = 0; i < h2t_model_n_tensors(m) && rc >= 0; i++)
        rc = h2t_exec_observe(x, i, 0);
    *out = c.macs;
    return rc;
}

static int prof_cb(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    prof *p = ctx;
    double t = now_s(), macs;
    const char *op = op_class(p->m, tensor, shape, rank, &macs);
    int i = 0;

    (void)data;
    /* a Pad runs in one step with the convolution it pads (exec.c's fused chains) and is
     * reported first: the step's time goes to the conv, whose report comes next */
    if (!strcmp(op, "Pad"))
        return 0;
    while (i < p->n_ops && strcmp(p->op[i], op) != 0)
        i++;
    if (i == p->n_ops && p->n_ops < PROF_MAX_OPS)
        p->op[p->n_ops++] = op;
    if (i < p->n_ops) {
        p->sec[i] += t - p->last;
        p->count[i]++;
    }
    p->last = t;
    return 0;
}

/* Profile o->runs batches by operator type and print the shares. */
static int profile_model(const char *name, const h2t_model *m, h2t_exec *x, const float *input,
                         const bench_opts *o)
{
    prof p = {.m = m};
    double total = 0;
    int rc;

    for (int i = 0; i < h2t_model_n_tensors(m); i++) {
        if (!h2t_model_tensor(m, i)->is_input && (rc = h2t_exec_observe(x, i, 1)) < 0)
            return rc;
    }
    /* one run unmeasured: the plan for the observed set and its arena's first touch */
    if ((rc = h2t_exec_run(x, input, o->batch, NULL, NULL)) < 0)
        return rc;
    for (int r = 0; r < o->runs; r++) {
        double t0 = now_s();
        p.last = t0;
        if ((rc = h2t_exec_run(x, input, o->batch, prof_cb, &p)) < 0)
            return rc;
        total += now_s() - t0;
    }
    for (int i = 0; i < h2t_model_n_tensors(m); i++) {
        if ((rc = h2t_exec_observe(x, i, 0)) < 0)
            return rc;
    }
    printf("profile %s batch %d (%d runs, %.2f s/batch):", name, o->batch, o->runs,
           total / o->runs);
    for (int done = 0; done < p.n_ops; done++) {
        int best = -1;
        for (int i = 0; i < p.n_ops; i++) {
            if (p.count[i] >= 0 && (best < 0 || p.sec[i] > p.sec[best]))
                best = i;
        }
        printf(" %s %.1f%% (%.2f ms/img)", p.op[best], 100 * p.sec[best] / total,
               1e3 * p.sec[best] / o->runs / o->batch);
        p.count[best] = -1;
    }
    printf("\n");
    return 0;
}

static int noop_cb(void *ctx, int tensor, const float *data, const int64_t *shape, int rank)
{
    (void)ctx, (void)tensor, (void)data, (void)shape, (void)rank;
    return 0;
}

/* One block of h2tdb runs on an executor that observes nothing (forward pass only), or every
 * tensor with --observe. */
static int h2t_block(h2t_exec *x, const float *input, const bench_opts *o, double *ips, int *n)
{
    for (int r = 0; r < o->runs; r++) {
        double t0 = now_s();
        int rc = h2t_exec_run(x, input, o->batch, o->observe ? noop_cb : NULL, NULL);
        if (rc < 0)
            return rc;
        ips[(*n)++] = o->batch / (now_s() - t0);
    }
    return 0;
}

/* Runs until two consecutive runs agree within 3% (at least 2, at most 10 runs); returns the
 * number of runs or an error. The first run also pages in the arena. */
static int h2t_warmup(h2t_exec *x, const float *input, const bench_opts *o)
{
    double prev = 0;
    for (int k = 1; k <= 10; k++) {
        double t0 = now_s(), t;
        int rc = h2t_exec_run(x, input, o->batch, o->observe ? noop_cb : NULL, NULL);
        if (rc < 0)
            return rc;
        t = now_s() - t0;
        if (k >= 2 && t < prev * 1.03 && prev < t * 1.03)
            return k;
        prev = t;
    }
    return 10;
}

static int bench_model(const char *name, const bench_opts *o)
{
    char path[512], ver[64] = "?", why[512] = "";
    h2t_model *m = NULL;
    h2t_exec *x = NULL;
    float *input = NULL;
    double *ips_h = NULL, *ips_o = NULL, *ips_n = NULL;
    int n_h = 0, n_o = 0, n_n = 0, rc, warm = 0, warm_o = 0, warm_n = 0;
    double macs = 0; /* multiply-adds per image (model_macs) */
    size_t per = 1, total;
    const h2t_tensor_info *in;
    uint32_t seed = 12345;

    rc = bench_model_path(name, path, sizeof path);
    if (rc < 0)
        goto out;
    rc = h2t_model_load(path, &m);
    if (rc == H2T_EUNSUPPORTED && o->ort && !o->profile) {
        /* ONNX Runtime's figures alone, and why h2tdb has none */
        snprintf(why, sizeof why, "%s", h2t_err_detail());
        rc = 0;
    } else if (rc < 0) {
        goto out;
    }
    ips_h = calloc((size_t)(o->runs * o->rounds), sizeof *ips_h);
    ips_o = calloc((size_t)(o->runs * o->rounds), sizeof *ips_o);
    ips_n = calloc((size_t)(o->runs * o->rounds), sizeof *ips_n);
    if (!ips_h || !ips_o || !ips_n) {
        rc = h2t_err_set(H2T_ENOMEM, "bench buffers for %s", name);
        goto out;
    }
    if (m) {
        in = h2t_model_input(m);
        for (int i = 1; i < in->rank; i++)
            per *= (size_t)in->shape[i];
        total = per * (size_t)o->batch;
        input = malloc(total * sizeof *input);
        if (!input) {
            rc = h2t_err_set(H2T_ENOMEM, "bench input for %s", name);
            goto out;
        }
        for (size_t i = 0; i < total; i++) {
            seed = seed * 1103515245u + 12345u;
            input[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
        }
        rc = h2t_exec_create(m, o->batch, &x);
        if (rc < 0)
            goto out;
        for (int i = 0; o->observe && i < h2t_model_n_tensors(m); i++) {
            if ((rc = h2t_exec_observe(x, i, 1)) < 0)
                goto out;
        }
        if (o->profile) {
            rc = h2t_exec_run(x, input, o->batch, NULL, NULL); /* page in the arena */
            if (rc >= 0)
                rc = profile_model(name, m, x, input, o);
            goto out;
        }
        if ((rc = model_macs(m, x, input, &macs)) < 0)
            goto out;
        if ((rc = h2t_warmup(x, input, o)) < 0)
            goto out;
        warm = rc;
    }
    for (int k = 0; k < o->rounds; k++) {
        if (o->ort && (rc = bench_ort_runs(path, "all", o->batch, o->runs, o->threads, ips_o, &n_o,
                                           ver, sizeof ver, &warm_o)) < 0)
            goto out;
        if (o->ort && (rc = bench_ort_runs(path, "disabled", o->batch, o->runs, o->threads, ips_n,
                                           &n_n, ver, sizeof ver, &warm_n)) < 0)
            goto out;
        if (x && (rc = h2t_block(x, input, o, ips_h, &n_h)) < 0)
            goto out;
    }
    if (o->ort) {
        double mh = x ? median(ips_h, n_h) : 0, mo = median(ips_o, n_o), mn = median(ips_n, n_n);
        printf("extract forward %s (%s) batch %d, %d threads each, median of %d runs each "
               "(min-max)%s:\n",
               name, path, o->batch, o->threads, n_o,
               o->observe ? ", h2tdb observing every tensor" : "");
        if (x)
            printf("  h2tdb                          %7.2f img/s (%.2f-%.2f)  after %d warm-up "
                   "runs\n",
                   mh, ips_h[0], ips_h[n_h - 1], warm);
        else
            printf("  h2tdb                          cannot run it yet: %s\n", why);
        printf("  onnxruntime %-6s opt=all      %7.2f img/s (%.2f-%.2f)  after %d warm-up runs",
               ver, mo, ips_o[0], ips_o[n_o - 1], warm_o);
        if (x)
            printf("  ratio h2tdb/ort %.2f", mh / mo);
        printf("\n  onnxruntime %-6s opt=disabled %7.2f img/s (%.2f-%.2f)  after %d warm-up runs",
               ver, mn, ips_n[0], ips_n[n_n - 1], warm_n);
        if (x)
            printf("  ratio h2tdb/ort %.2f", mh / mn);
        printf("\n");
        if (macs > 0)
            printf("  %.3f GFLOP per image (2 x multiply-adds of Conv, Gemm, MatMul): sustained "
                   "h2tdb %.1f, onnxruntime opt=all %.1f GFLOP/s\n",
                   2e-9 * macs, 2e-9 * macs * mh, 2e-9 * macs * mo);
    } else {
        double mh = median(ips_h, n_h);
        printf("extract forward %-13s batch %d: h2tdb %.1f img/s (%.1f-%.1f, median of %d runs "
               "after %d warm-up, %d threads%s)\n",
               name, o->batch, mh, ips_h[0], ips_h[n_h - 1], n_h, warm, o->threads,
               o->observe ? ", every tensor observed" : "");
        if (macs > 0)
            printf("  %.3f GFLOP per image: sustained %.1f GFLOP/s\n", 2e-9 * macs,
                   2e-9 * macs * mh);
    }
    fflush(stdout);
out:
    free(ips_h);
    free(ips_o);
    free(ips_n);
    free(input);
    h2t_exec_destroy(x);
    h2t_model_destroy(m);
    return rc;
}

/* OpenBLAS sgemm on 2048^3 (the threads set by h2t_blas_threads): median GFLOP/s of 3 runs
 * after a warm-up; 0 when the matrices cannot be allocated. */
static double sgemm_gflops(void)
{
    const int n = 2048;
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)),
          *c = malloc(nn * sizeof(float));
    double g[3] = {0, 0, 0};
    if (a && b && c) {
        for (size_t i = 0; i < nn; i++) {
            a[i] = (float)((i * 7 + 3) % 17) / 17.0f - 0.5f;
            b[i] = (float)((i * 11 + 5) % 19) / 19.0f - 0.5f;
        }
        for (int r = -1; r < 3; r++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                        c, n);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            if (r >= 0)
                g[r] = 2.0 * n * (double)nn / s * 1e-9;
        }
    }
    free(a);
    free(b);
    free(c);
    return median(g, 3);
}

/* The instruction sets each side uses: h2tdb's own dispatch (common/cpu.h after H2T_CPU_MAX)
 * and OpenBLAS's core (chosen when it loaded, from OPENBLAS_CORETYPE or its own CPUID probe);
 * ONNX Runtime reports nothing, so its line gives the CPU flags its CPUID dispatch sees. */
static void print_isa(void)
{
    char feat[128], disp[160], blas[512], flags[256], gemm[400];
    const char *max = getenv("H2T_CPU_MAX");

    h2t_cpu_describe(feat, sizeof feat);
    h2t_kern_describe(disp, sizeof disp);
    h2t_blas_describe(blas, sizeof blas);
    h2t_gemm_describe(gemm, sizeof gemm);
    bench_cpu_flags(flags, sizeof flags);
    printf("isa h2tdb: %s; usable %s (H2T_CPU_MAX=%s); %s\n", disp, feat, max ? max : "(unset)",
           gemm);
    printf("isa OpenBLAS: %s\n", blas);
    printf("isa onnxruntime: MLAS picks its kernels by CPUID at load (no environment override, "
           "not reported); it sees %s -> %s\n",
           flags,
           strstr(flags, "avx512f") ? "its AVX-512F float kernels"
           : strstr(flags, "avx2")  ? "its AVX2+FMA float kernels"
                                    : "its SSE/AVX float kernels");
}

int main(int argc, char **argv)
{
    bench_opts o = {.runs = 3, .rounds = 2, .batch = 32, .threads = 2, .ort = 1};
    char *save = NULL, cpu[256];

    snprintf(o.models, sizeof o.models, "mobilenet_v2,resnet50,vit_b_16");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-ort") == 0 || strcmp(a, "--profile") == 0 ||
            strcmp(a, "--observe") == 0) {
            if (a[2] == 'n')
                o.ort = 0;
            else if (a[2] == 'p')
                o.profile = 1;
            else
                o.observe = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "usage: extract [--runs R] [--rounds K] [--batch B] [--threads T] "
                            "[--models a,b] [--no-ort] [--profile] [--observe]\n");
            return 2;
        }
        i++;
        if (strcmp(a, "--runs") == 0)
            o.runs = atoi(v);
        else if (strcmp(a, "--rounds") == 0)
            o.rounds = atoi(v);
        else if (strcmp(a, "--batch") == 0)
            o.batch = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o.threads = atoi(v);
        else if (strcmp(a, "--models") == 0)
            snprintf(o.models, sizeof o.models, "%s", v);
        else {
            fprintf(stderr, "extract: unknown option %s\n", a);
            return 2;
        }
    }
    if (o.runs < 1 || o.rounds < 1 || o.batch < 1 || o.threads < 1) {
        fprintf(stderr, "extract: --runs, --rounds, --batch and --threads must be >= 1\n");
        return 2;
    }
    /* models and onnxruntime-node; quiet and quick when everything is there */
    if (system("./deploy/fetch_model.sh --all >/dev/null") != 0) {
        fprintf(stderr, "extract: deploy/fetch_model.sh --all failed (run from the repository "
                        "root)\n");
        return 1;
    }
    bench_cpu_model(cpu, sizeof cpu);
    printf("cpu: %s; load average %.2f at the start\n", cpu, bench_loadavg());
    print_isa();
    h2t_blas_threads(o.threads);
    printf("sgemm OpenBLAS 2048^3, %d threads: %.1f GFLOP/s (median of 3 after a warm-up)\n",
           o.threads, sgemm_gflops());
    for (char *name = strtok_r(o.models, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        int rc = bench_model(name, &o);
        if (rc < 0) {
            fprintf(stderr, "extract: %s: %s (%s)\n", name, h2t_strerror(rc), h2t_err_detail());
            return 1;
        }
    }
    return 0;
}
