/*
 * bench/solver.c - the solver against its peers on one synthetic 1000 x 50k problem (the shape
 * of a real Head2Toe matrix: 50 layers x 1000 features, 10 classes, per-layer L2-normalised),
 * every figure measured in this run, single-threaded everywhere (OPENBLAS_NUM_THREADS=1 for
 * h2tdb, numpy and R):
 *   (a) L2 linear probe: h2tdb L-BFGS vs scikit-learn LogisticRegression(lbfgs), same C
 *   (b) group lasso along the same 10-point lambda path: h2tdb FISTA + strong rules vs glmnet
 *       type.multinomial="grouped", objectives computed by the same R code
 *   (c) the full Head2Toe search: 5 folds x 2 lambdas x 5 keeps + final head
 *   plus OpenBLAS sgemm's peak (1000^2 x 4096) next to the solver's effective GFLOP/s.
 *   build/bench/solver [n_train n_test layers dim classes]   (peers need python3-sklearn, glmnet)
 * The Adam path's cost per step (--adam-steps S: one selection fit of S steps on n_train x
 * layers*dim synthetic features, e.g. `build/bench/solver --adam-steps 50 100 0 161 433 10`).
 * Jobs as the service runs them, on a stored task (h2t_solver_run, the method's defaults):
 *   --job METHOD --store DIR --task NAME [--threads T]: one job, one "job" line (wall and CPU
 *   time, the choice, CV and test accuracy);
 *   --vs REF --job M1[,M2] --store DIR --task NAME [--rounds R]: the same jobs built from the
 *   git commit REF (its library, this bench's source, in a temporary directory) and from this
 *   build, run alternately in child processes, medians and ranges of each side.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/blas.h"
#include "common/err.h"
#include "common/util.h"
#include "solver/internal.h" /* h2t_solver__gram, timed on its own */
#include "solver/solver.h"

static int dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "bench solver: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* per-layer L2 normalisation of each row (a zero block stays zero) */
static void normalise(float *X, uint32_t n, uint32_t L, const uint32_t *dims, uint32_t D)
{
    for (uint32_t i = 0; i < n; i++) {
        float *x = X + (size_t)i * D;
        for (uint32_t l = 0; l < L; x += dims[l], l++) {
            double q = 0;
            for (uint32_t j = 0; j < dims[l]; j++)
                q += (double)x[j] * x[j];
            for (uint32_t j = 0; q > 0 && j < dims[l]; j++)
                x[j] = (float)(x[j] / sqrt(q));
        }
    }
}

/* Real features: the first ntr train-split and nte test-split samples of an extraction in a
 * store opened read-only; every layer; labels from the extraction's source. */
static int load_store(const char *dir, uint32_t ext, uint32_t ntr, uint32_t nte, float **Xtr,
                      float **Xte, uint32_t **ytr, uint32_t **yte, uint32_t *L, uint32_t **dims,
                      uint32_t *D, uint32_t *K)
{
    h2t_store *st = NULL;
    h2t_extraction *e = NULL;
    h2t_source *src = NULL;
    uint32_t *str = malloc(ntr * 4 + 4), *ste = malloc(nte * 4 + 4);
    int rc = h2t_store_open(dir, H2T_STORE_RDONLY, &st);
    if (rc < 0 || (rc = h2t_store_extraction_get(st, ext, &e)) < 0 ||
        (rc = h2t_store_source_get(st, e->source, &src)) < 0)
        goto out;
    uint32_t a = 0, b = 0;
    for (uint32_t i = 0; i < e->samples_done && i < src->n_samples; i++) {
        if (src->split[i] == H2T_SPLIT_TRAIN && a < ntr)
            str[a++] = i;
        else if (src->split[i] == H2T_SPLIT_TEST && b < nte)
            ste[b++] = i;
    }
    if (a < ntr || b < nte) {
        rc = h2t_err_set(H2T_EINVAL, "extraction %u has %u train / %u test samples stored", ext, a,
                         b);
        goto out;
    }
    *L = e->n_layers;
    *D = (uint32_t)e->total_dim;
    *K = src->n_classes;
    *dims = malloc(e->n_layers * 4);
    *Xtr = malloc((size_t)ntr * *D * 4);
    *Xte = malloc((size_t)nte * *D * 4);
    *ytr = malloc(ntr * 4);
    *yte = malloc(nte * 4);
    uint64_t off = 0;
    for (uint32_t l = 0; l < e->n_layers && rc == 0; l++) {
        (*dims)[l] = e->layers[l].dim;
        rc = h2t_store_layer_read(st, ext, l, str, 0, ntr, *Xtr + off, *D);
        if (rc == 0)
            rc = h2t_store_layer_read(st, ext, l, ste, 0, nte, *Xte + off, *D);
        off += e->layers[l].dim;
    }
    for (uint32_t i = 0; i < ntr; i++)
        (*ytr)[i] = src->labels[str[i]];
    for (uint32_t i = 0; i < nte; i++)
        (*yte)[i] = src->labels[ste[i]];
out:
    if (rc < 0)
        fprintf(stderr, "bench solver: store %s: %s: %s\n", dir, h2t_strerror(rc),
                h2t_err_detail());
    h2t_source_destroy(src);
    h2t_extraction_destroy(e);
    h2t_store_close(st);
    free(str);
    free(ste);
    return rc;
}

static double accuracy(const float *X, const uint32_t *y, uint32_t n, uint32_t d, uint32_t K,
                       const float *W, const float *b)
{
    float *Z = malloc((size_t)n * K * 4);
    for (uint32_t i = 0; i < n; i++)
        memcpy(Z + (size_t)i * K, b, K * 4);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)K, (int)d, 1, X, (int)d, W,
                (int)K, 1, Z, (int)K);
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t best = 0;
        for (uint32_t k = 1; k < K; k++)
            if (Z[(size_t)i * K + k] > Z[(size_t)i * K + best])
                best = k;
        c += best == y[i];
    }
    free(Z);
    return (double)c / n;
}

static double sgemm_peak(void)
{
    int m = 1000, k = 4096;
    float *A = malloc((size_t)m * k * 4), *B = malloc((size_t)k * m * 4),
          *C = malloc((size_t)m * m * 4);
    for (size_t i = 0; i < (size_t)m * k; i++) {
        A[i] = (float)(i % 13) * 0.01f;
        B[i] = (float)(i % 7) * 0.01f;
    }
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t = h2t_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, k, 1, A, k, B, m, 0, C, m);
        double g = 2.0 * m * m * k / (h2t_now_s() - t) / 1e9;
        best = g > best ? g : best;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

static int run_peer(const char *cmd, char *line, size_t len)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    line[0] = 0;
    char buf[1024];
    while (fgets(buf, sizeof(buf), p))
        if (!strncmp(buf, "sklearn ", 8) || !strncmp(buf, "glmnet ", 7))
            snprintf(line, len, "%s", buf);
    int st = pclose(p);
    return st == 0 && line[0] ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: build/bench/solver [n_train n_test layers dim classes] [--parts abc] "
                    "[--no-peers] [--threads T] [--label-noise P] [--signal A] [--every E] "
                    "[--store DIR [--extraction ID]]\n"
                    "       build/bench/solver --job METHOD[,METHOD] --store DIR --task NAME "
                    "[--threads T] [--vs REF [--rounds R]]\n"
                    "       build/bench/solver --adam-steps STEPS [n_train 0 layers dim classes] "
                    "[--threads T]\n");
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The Adam path's cost per step: one group-penalised selection fit (lambda 1e-4, batch 128,
 * the reference's defaults) of `steps` steps on n x (layers x dim) synthetic features, K
 * classes; one line "adam n N d D k K steps S wall W cpu C ms_per_step M objective F". */
static int run_adam_steps(uint32_t steps, uint32_t n, uint32_t D, uint32_t K)
{
    float *X = malloc((size_t)n * D * sizeof(float) + 1), *W = malloc((size_t)D * K * 4 + 1);
    float *b = malloc(K * sizeof(float) + 1);
    uint32_t *y = malloc(n * sizeof(uint32_t) + 1);
    if (!X || !W || !b || !y) {
        fprintf(stderr, "bench solver: no memory for %u x %u\n", n, D);
        return 1;
    }
    uint64_t rs = 17;
    for (uint32_t i = 0; i < n; i++) {
        y[i] = i % K;
        for (uint32_t j = 0; j < D; j++)
            X[(size_t)i * D + j] =
                (float)(h2t_rng_unif(&rs) * 0.01 + (j % (K * 7) == y[i] * 7 ? 0.02 : 0.0));
    }
    h2t_solver_opts o = {0};
    h2t_fit_info info;
    double c0 = cpu_seconds(), t0 = h2t_now_s();
    int rc = h2t_solver__fit_adam(X, y, n, D, K, H2T_PENALTY_GROUP, 1e-4, 0.01, steps, 128, 0, &o,
                                  W, b, &info);
    double wall = h2t_now_s() - t0, cpu = cpu_seconds() - c0;
    if (rc < 0)
        fprintf(stderr, "bench solver: adam: %s\n", h2t_err_detail());
    else
        printf("adam n %u d %u k %u steps %u wall %.3f cpu %.3f ms_per_step %.2f objective %.9g\n",
               n, D, K, steps, wall, cpu, 1e3 * wall / steps, info.objective);
    free(X);
    free(W);
    free(b);
    free(y);
    return rc < 0;
}

/* FNV-1a over bytes, continuing from h */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t q = 0; q < n; q++)
        h = (h ^ b[q]) * 1099511628211ull;
    return h;
}

/* A digest of what a job's numbers are: the CV table, the fold accuracies, the head's weights
 * and bias, both fits' objectives. Two builds with the same digest gave the same result bit for
 * bit. */
static uint64_t result_digest(const h2t_result *r)
{
    uint64_t h = 14695981039346656037ull;
    size_t cells = (size_t)r->n_lambdas * r->n_keeps;
    if (r->cv_acc)
        h = fnv(h, r->cv_acc, cells * sizeof(double));
    if (r->fold_acc)
        h = fnv(h, r->fold_acc, r->folds * sizeof(double));
    if (r->weights)
        h = fnv(h, r->weights, (size_t)r->n_classes * r->n_kept * sizeof(float));
    if (r->bias)
        h = fnv(h, r->bias, r->n_classes * sizeof(float));
    h = fnv(h, &r->select_fit.objective, sizeof(double));
    h = fnv(h, &r->final_fit.objective, sizeof(double));
    return h;
}

/* One job on a stored task with the method's defaults, as the service runs it: one line
 * "job METHOD TASK wall W cpu C load L cv V final F lambda X keep K kept N val A test B digest
 * H" (H: result_digest, in hex). */
static int run_job(const char *dir, const char *task_name, const char *method, int threads)
{
    uint32_t m;
    if (h2t_method_parse(method, &m) < 0) {
        fprintf(stderr, "bench solver: unknown method %s\n", method);
        return 2;
    }
    h2t_store *st = NULL;
    h2t_task *task = NULL;
    h2t_result *r = NULL;
    int rc = h2t_store_open(dir, H2T_STORE_RDONLY, &st);
    if (rc == 0)
        rc = h2t_store_task_get(st, task_name, &task);
    h2t_train_spec spec;
    h2t_train_spec_default(&spec, m);
    spec.threads = (uint32_t)threads;
    double c0 = cpu_seconds(), t0 = h2t_now_s();
    if (rc == 0)
        rc = h2t_solver_run(st, task, &spec, NULL, NULL, NULL, &r);
    double wall = h2t_now_s() - t0, cpu = cpu_seconds() - c0;
    if (rc < 0) {
        fprintf(stderr, "bench solver: %s on %s: %s: %s\n", method, task_name, h2t_strerror(rc),
                h2t_err_detail());
    } else {
        printf("job %s %s wall %.3f cpu %.3f load %.3f cv %.3f final %.3f lambda %g keep %g kept "
               "%u val %.4f test %.4f digest %016llx\n",
               method, task_name, wall, cpu, r->t_load, r->t_cv, r->t_final, r->lambda, r->keep,
               r->n_kept, r->val_acc, r->test_acc, (unsigned long long)result_digest(r));
    }
    h2t_result_destroy(r);
    h2t_task_destroy(task);
    h2t_store_close(st);
    return rc < 0 ? 1 : 0;
}

typedef struct job_run {
    double wall, cpu, load, cv, final, lambda, keep, val, test;
    unsigned kept;
    char digest[32]; /* "-" when the build's bench prints none */
} job_run;

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), dbl_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void cpu_model(char *out, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, len, "unknown");
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(out, len, "%s", strchr(line, ':') + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
}

/* The baseline: REF's tree (git archive) in a temporary directory, its library built there
 * with this bench's source next to it. Writes the binary's path. */
static int build_baseline(const char *ref, char *bin, size_t len, char *tmp, size_t tlen)
{
    char cmd[8192];
    snprintf(tmp, tlen, "/tmp/h2t-bench-base-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    snprintf(cmd, sizeof(cmd),
             "set -e; git archive --format=tar %s | tar -x -C %s && cp bench/solver.c "
             "%s/bench/solver.c && "
             "make -s -C %s -j2 build/bench/solver >%s/build.log 2>&1 || "
             "{ echo 'bench solver: building %s failed, see %s/build.log' >&2; exit 1; }",
             ref, tmp, tmp, tmp, tmp, ref, tmp);
    if (system(cmd) != 0)
        return -1;
    snprintf(bin, len, "%s/build/bench/solver", tmp);
    return 0;
}

static int run_child(const char *bin, const char *dir, const char *task, const char *method,
                     int threads, job_run *out)
{
    char cmd[8192], line[1024];
    snprintf(cmd, sizeof(cmd), "%s --store '%s' --task '%s' --job %s --threads %d", bin, dir, task,
             method, threads);
    FILE *p = popen(cmd, "r");
    int got = 0;
    snprintf(out->digest, sizeof(out->digest), "-");
    while (p && fgets(line, sizeof(line), p)) {
        char mm[64], tt[256];
        int f = sscanf(line,
                       "job %63s %255s wall %lf cpu %lf load %lf cv %lf final %lf lambda %lf keep "
                       "%lf kept %u val %lf test %lf digest %31s",
                       mm, tt, &out->wall, &out->cpu, &out->load, &out->cv, &out->final,
                       &out->lambda, &out->keep, &out->kept, &out->val, &out->test, out->digest);
        got |= f >= 12;
    }
    int st = p ? pclose(p) : -1;
    return st == 0 && got ? 0 : -1;
}

/* Alternate the baseline and this build R rounds (ABAB.. then BABA..: each side first half the
 * time), every job in its own process; print each run and the medians. */
static int run_vs(const char *ref, const char *self, const char *dir, const char *task,
                  const char *methods, int threads, int rounds)
{
    char base[4096], tmp[256], cpu[256], mlist[256];
    double la[3];
    cpu_model(cpu, sizeof(cpu));
    if (getloadavg(la, 3) < 0)
        la[0] = la[1] = la[2] = -1;
    printf("bench solver --vs %s: CPU %s, %ld CPU(s) online, load average %.2f %.2f %.2f at the "
           "start; task %s of %s; --threads %d; %d round(s)\n",
           ref, cpu, sysconf(_SC_NPROCESSORS_ONLN), la[0], la[1], la[2], task, dir, threads,
           rounds);
    if (build_baseline(ref, base, sizeof(base), tmp, sizeof(tmp)) < 0)
        return 1;
    snprintf(mlist, sizeof(mlist), "%s", methods);
    int rc = 0;
    for (char *save = NULL, *m = strtok_r(mlist, ",", &save); m && !rc;
         m = strtok_r(NULL, ",", &save)) {
        job_run runs[2][64];
        int n = rounds > 64 ? 64 : rounds;
        for (int r = 0; r < n && !rc; r++)
            for (int q = 0; q < 2 && !rc; q++) {
                int side = (q + r) % 2; /* 0: baseline, 1: this build */
                job_run *o = &runs[side][r];
                if (run_child(side ? self : base, dir, task, m, threads, o) < 0) {
                    fprintf(stderr, "bench solver: %s run of %s failed\n",
                            side ? "this build's" : "the baseline's", m);
                    rc = 1;
                    break;
                }
                if (getloadavg(la, 3) < 0)
                    la[0] = -1;
                printf("  %-8s %-9s round %d: wall %8.2f s  cpu %8.2f s  (cv %.2f, final %.2f)  "
                       "lambda %g keep %g kept %u  val %.2f%%  test %.2f%%  digest %s  load %.2f\n",
                       m, side ? "this" : ref, r + 1, o->wall, o->cpu, o->cv, o->final, o->lambda,
                       o->keep, o->kept, 100 * o->val, 100 * o->test, o->digest, la[0]);
            }
        if (rc)
            break;
        for (int side = 0; side < 2; side++) {
            double w[64], c[64], wl = 1e300, wh = 0, cl = 1e300, ch = 0;
            for (int r = 0; r < n; r++) {
                w[r] = runs[side][r].wall;
                c[r] = runs[side][r].cpu;
                wl = w[r] < wl ? w[r] : wl;
                wh = w[r] > wh ? w[r] : wh;
                cl = c[r] < cl ? c[r] : cl;
                ch = c[r] > ch ? c[r] : ch;
            }
            printf("%s %s: median wall %.2f s (%.2f-%.2f), median cpu %.2f s (%.2f-%.2f), test "
                   "%.2f%%, val %.2f%%, lambda %g keep %g\n",
                   m, side ? "this build" : ref, median(w, n), wl, wh, median(c, n), cl, ch,
                   100 * runs[side][0].test, 100 * runs[side][0].val, runs[side][0].lambda,
                   runs[side][0].keep);
        }
        int same = 1;
        for (int r = 0; r < n; r++)
            for (int side = 0; side < 2; side++)
                same &= !strcmp(runs[side][r].digest, runs[0][0].digest);
        printf("%s: results %s\n", m,
               same ? "the same bit for bit on every run (digest)"
                    : "differ between runs or builds (digest)");
    }
    if (getloadavg(la, 3) < 0)
        la[0] = la[1] = la[2] = -1;
    printf("load average %.2f %.2f %.2f at the end\n", la[0], la[1], la[2]);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "bench solver: could not remove %s\n", tmp);
    return rc;
}

int main(int argc, char **argv)
{
    uint32_t num[5] = {1000, 1000, 50, 1000, 10}, nnum = 0, every = 50;
    const char *parts = "abc", *store = NULL, *job = NULL, *task = NULL, *vs = NULL;
    uint32_t ext = 1;
    int peers = 1, threads = 1, rounds = 3, adam_steps = 0;
    double noise = 0.2, amp = 0.5;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--parts") && a + 1 < argc)
            parts = argv[++a];
        else if (!strcmp(argv[a], "--store") && a + 1 < argc)
            store = argv[++a];
        else if (!strcmp(argv[a], "--extraction") && a + 1 < argc)
            ext = (uint32_t)atoi(argv[++a]);
        else if (!strcmp(argv[a], "--job") && a + 1 < argc)
            job = argv[++a];
        else if (!strcmp(argv[a], "--task") && a + 1 < argc)
            task = argv[++a];
        else if (!strcmp(argv[a], "--vs") && a + 1 < argc)
            vs = argv[++a];
        else if (!strcmp(argv[a], "--rounds") && a + 1 < argc)
            rounds = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--adam-steps") && a + 1 < argc)
            adam_steps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--no-peers"))
            peers = 0;
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc)
            threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--label-noise") && a + 1 < argc)
            noise = atof(argv[++a]);
        else if (!strcmp(argv[a], "--signal") && a + 1 < argc)
            amp = atof(argv[++a]);
        else if (!strcmp(argv[a], "--every") && a + 1 < argc)
            every = (uint32_t)atoi(argv[++a]);
        else if (argv[a][0] != '-' && nnum < 5)
            num[nnum++] = (uint32_t)atoi(argv[a]);
        else {
            usage();
            return 2;
        }
    }
    if (threads < 1 || !every || rounds < 1 || ((job || vs) && (!job || !store || !task))) {
        usage();
        return 2;
    }
    if (adam_steps > 0) { /* n_train, layers x dim, classes from the positional numbers */
        h2t_blas_threads(threads);
        return run_adam_steps((uint32_t)adam_steps, num[0], num[2] * num[3], num[4]);
    }
    if (job) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        h2t_blas_threads(threads);
        if (vs)
            return run_vs(vs, argv[0], store, task, job, threads, rounds);
        if (strchr(job, ',')) {
            usage();
            return 2;
        }
        return run_job(store, task, job, threads);
    }
    if (store && nnum < 2)
        num[1] = 2000; /* the demo protocol: 1000 train, 2000 test */
    uint32_t ntr = num[0], nte = num[1], L = num[2], dl = num[3], K = num[4];
    uint32_t D = L * dl;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char tenv[16];
    snprintf(tenv, sizeof(tenv), "%d", threads);
    setenv("OPENBLAS_NUM_THREADS", tenv, 1); /* the peers inherit it */
    setenv("OMP_NUM_THREADS", tenv, 1);
    setenv("MKL_NUM_THREADS", tenv, 1);
    h2t_blas_threads(threads);
    float *Xtr = NULL, *Xte = NULL, *mu = NULL;
    uint32_t *ytr = NULL, *yte = NULL, *dims = NULL;
    if (store) {
        if (load_store(store, ext, ntr, nte, &Xtr, &Xte, &ytr, &yte, &L, &dims, &D, &K) < 0)
            return 1;
        printf("bench solver: real features, store %s extraction %u (read-only): %u train + %u "
               "test samples, %u layers, %u features, %u classes; %d thread(s) for h2tdb and "
               "numpy/sklearn (OPENBLAS/OMP_NUM_THREADS), glmnet is single-threaded\n",
               store, ext, ntr, nte, L, D, K, threads);
    } else {
        printf("bench solver: %u train + %u test samples, %u layers x %u = %u features, %u "
               "classes; 1 in %u features informative (class means %g N(0,1), noise N(0,1)), "
               "%.0f%% of labels replaced by a random class; %d thread(s) for h2tdb and "
               "numpy/sklearn (OPENBLAS/OMP_NUM_THREADS), glmnet is single-threaded\n",
               ntr, nte, L, dl, D, K, every, amp, 100 * noise, threads);
        Xtr = malloc((size_t)ntr * D * 4);
        Xte = malloc((size_t)nte * D * 4);
        mu = calloc((size_t)K * D, 4);
        ytr = malloc(ntr * 4);
        yte = malloc(nte * 4);
        dims = malloc(L * 4);
        for (uint32_t l = 0; l < L; l++)
            dims[l] = dl;
        uint64_t s = 2024;
        for (uint32_t j = 0; j < D; j += every)
            for (uint32_t c = 0; c < K; c++)
                mu[(size_t)c * D + j] = (float)(amp * h2t_rng_gauss(&s));
        for (uint32_t i = 0; i < ntr + nte; i++) {
            uint32_t c = (uint32_t)(h2t_rng_next(&s) % K);
            float *x = i < ntr ? Xtr + (size_t)i * D : Xte + (size_t)(i - ntr) * D;
            for (uint32_t j = 0; j < D; j++)
                x[j] = (float)(mu[(size_t)c * D + j] + h2t_rng_gauss(&s));
            if ((h2t_rng_next(&s) >> 11) * (1.0 / 9007199254740992.0) < noise) /* label noise */
                c = (uint32_t)(h2t_rng_next(&s) % K);
            (i < ntr ? ytr : yte)[i < ntr ? i : i - ntr] = c;
        }
    }
    int32_t *yi = malloc((ntr > nte ? ntr : nte) * 4);
    normalise(Xtr, ntr, L, dims, D);
    normalise(Xte, nte, L, dims, D);
    char dir[] = "/tmp/h2t-bench-solver-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    for (uint32_t i = 0; i < ntr; i++)
        yi[i] = (int32_t)ytr[i];
    if (dump(dir, "Xtr.f32", Xtr, (size_t)ntr * D * 4) || dump(dir, "ytr.i32", yi, ntr * 4))
        return 1;
    for (uint32_t i = 0; i < nte; i++)
        yi[i] = (int32_t)yte[i];
    if (dump(dir, "Xte.f32", Xte, (size_t)nte * D * 4) || dump(dir, "yte.i32", yi, nte * 4))
        return 1;
    double peak = sgemm_peak();
    printf("OpenBLAS sgemm peak (1000x1000x4096): %.1f GFLOP/s\n", peak);
    float *W = calloc((size_t)D * K, 4), *b = calloc(K, 4);
    h2t_train_spec sp;
    h2t_train_spec_default(&sp, H2T_METHOD_ALL);
    h2t_fit_info fi;
    char cmd[8192], line[1024];

    double t0 = 0;
    int rc = 0;
    float *G = malloc((size_t)D * K * 4), gb[64];
    if (K > 64) {
        fprintf(stderr, "bench solver: at most 64 classes\n");
        return 2;
    }
    if (!strchr(parts, 'a'))
        goto part_b;
    /* (a) L2 probe, lambda = 1 / (C n). For n < D the solver takes the kernel form: one Gram
     * X X^T (dsyrk over column blocks, timed here on its own for the GFLOP/s figure), then n x n x
     * K iterations */
    double C = 1.0, lam = 1.0 / (C * ntr);
    double *Gm = malloc((size_t)ntr * ntr * 8);
    t0 = h2t_now_s();
    h2t_solver__gram(Xtr, ntr, D, Gm);
    double tgram = h2t_now_s() - t0;
    free(Gm);
    t0 = h2t_now_s();
    rc = h2t_solver_fit(Xtr, ytr, ntr, D, K, H2T_PENALTY_L2, lam, &sp, W, b, &fi);
    double ta = h2t_now_s() - t0;
    if (rc < 0) {
        fprintf(stderr, "fit: %s\n", h2t_err_detail());
        return 1;
    }
    double acc = accuracy(Xte, yte, nte, D, K, W, b);
    double gf = (double)ntr * (ntr + 1) * D / tgram / 1e9;
    printf("(a) h2tdb L2 probe (C=%g): %.3f s, %u iters, |grad|max %.2g, test acc %.4f; its Gram "
           "X X^T alone (dsyrk blocks) %.3f s = %.1f GFLOP/s (%.0f%% of sgemm peak)\n",
           C, ta, fi.iters, fi.grad_norm, acc, tgram, gf, 100 * gf / peak);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 bench/solver_sklearn.py %s %u %u %u %u %g", dir,
             ntr, nte, D, K, C);
    if (!peers) {
    } else if (run_peer(cmd, line, sizeof(line)) == 0) {
        double ts = 0, as = 0;
        int it = 0;
        sscanf(line + 8, "%lf %lf %d", &ts, &as, &it);
        printf("(a) sklearn lbfgs: %.3f s, %d iters, test acc %.4f -> h2tdb %.1fx faster\n", ts, it,
               as, ts / ta);
    } else {
        printf("(a) sklearn: not run (python3-sklearn missing?)\n");
    }

part_b:
    if (!strchr(parts, 'b'))
        goto part_c;
    /* (b) group lasso along a 10-point path from lambda_max to 0.05 lambda_max */
    memset(W, 0, (size_t)D * K * 4);
    for (uint32_t c = 0; c < K; c++) {
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < ntr; i++)
            cnt += ytr[i] == c;
        b[c] = (float)log((cnt ? cnt : 0.5) / (double)ntr);
    }
    h2t_solver_loss_grad(Xtr, ytr, ntr, D, K, W, b, G, gb);
    double lmax = 0;
    for (uint32_t j = 0; j < D; j++) {
        double q = 0;
        for (uint32_t c = 0; c < K; c++)
            q += (double)G[(size_t)j * K + c] * G[(size_t)j * K + c];
        lmax = sqrt(q) > lmax ? sqrt(q) : lmax;
    }
    double path[10];
    for (int q = 0; q < 10; q++)
        path[q] = lmax * pow(0.05, (q + 1) / 10.0);
    if (dump(dir, "path.f64", path, sizeof(path)))
        return 1;
    t0 = h2t_now_s();
    uint32_t iters = 0;
    h2t_fit_info pinfo[10];
    if ((rc = h2t_solver_fit_path(Xtr, ytr, ntr, D, K, path, 10, &sp, W, b, pinfo)) < 0) {
        fprintf(stderr, "fit: %s\n", h2t_err_detail());
        return 1;
    }
    for (int q = 0; q < 10; q++)
        iters += pinfo[q].iters;
    fi = pinfo[9];
    double tb = h2t_now_s() - t0;
    printf("(b) h2tdb group lasso path to lambda %.4g (%.2f lambda_max): %.3f s, %u inner iters, "
           "KKT %.2g (converged %u), objective %.9g\n",
           path[9], 0.05, tb, iters, fi.grad_norm, fi.converged, fi.objective);
    if (dump(dir, "W.f32", W, (size_t)D * K * 4) || dump(dir, "b.f32", b, K * 4))
        return 1;
    snprintf(cmd, sizeof(cmd), "Rscript bench/solver_glmnet.R %s %u %u %u", dir, ntr, D, K);
    if (!peers) {
    } else if (run_peer(cmd, line, sizeof(line)) == 0) {
        double tg = 0, og = 0, oh = 0;
        int nzg = 0, nzh = 0;
        sscanf(line + 7, "%lf %lf %d %lf %d", &tg, &og, &nzg, &oh, &nzh);
        printf("(b) glmnet grouped: %.3f s, objective %.9g (%d rows) vs h2tdb %.9g (%d rows), "
               "rel %+.2e -> h2tdb %.1fx faster\n",
               tg, og, nzg, oh, nzh, (oh - og) / og, tg / tb);
    } else {
        printf("(b) glmnet: not run (r-cran-glmnet missing?)\n");
    }

part_c:
    if (!strchr(parts, 'c'))
        goto done;
    /* (c) the whole Head2Toe search */
    h2t_train_spec hs;
    h2t_train_spec_default(&hs, H2T_METHOD_HEAD2TOE);
    h2t_dataset ds = {.n_train = ntr,
                      .n_test = nte,
                      .n_classes = K,
                      .n_layers = L,
                      .x_train = Xtr,
                      .y_train = ytr,
                      .x_test = Xte,
                      .y_test = yte,
                      .layer_dims = dims};
    h2t_result *r = NULL;
    t0 = h2t_now_s();
    if ((rc = h2t_solver_run_data(&ds, &hs, NULL, NULL, NULL, &r)) < 0) {
        fprintf(stderr, "head2toe: %s\n", h2t_err_detail());
        return 1;
    }
    double tc = h2t_now_s() - t0;
    printf("(c) h2tdb head2toe 5-fold x %u lambdas x %u keeps + final: %.3f s (cv %.3f, final "
           "%.3f), lambda %g keep %g, val %.4f test %.4f, final head converged %u (|grad|max "
           "%.2g, %u iters)\n",
           hs.n_lambdas, hs.n_keeps, tc, r->t_cv, r->t_final, r->lambda, r->keep, r->val_acc,
           r->test_acc, r->final_fit.converged, r->final_fit.grad_norm, r->final_fit.iters);
    h2t_result_destroy(r);
done:
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench solver: could not remove %s\n", dir);
    free(Xtr);
    free(Xte);
    free(mu);
    free(ytr);
    free(yte);
    free(yi);
    free(W);
    free(b);
    free(G);
    free(dims);
    return 0;
}
