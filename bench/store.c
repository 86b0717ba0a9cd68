/*
 * bench/store.c - the feature store against memcpy, in one run.
 *
 * 1000 samples x 50 layers x 1024 f32 features (204.8 MB). Prints, as medians of several runs:
 *   - write throughput of h2t_store_features_write (batches of B samples, default 64, every
 *     batch one durable transaction; and again with H2T_STORE_NOSYNC) next to a memcpy of the
 *     same bytes;
 *   - throughput of assembling the 1000 x 51200 design matrix with h2t_store_layer_read (one
 *     cursor walk per layer) next to a memcpy of the same bytes into the same buffer;
 *   - the store's size on disk (data.mdb) divided by the raw float bytes.
 * Targets: assembly >= 0.5 of memcpy, size ratio <= 1.05.
 *
 *     build/bench/store [batch] [runs]
 *     build/bench/store mnv2 [samples] [runs]
 *
 * mnv2: the extraction pass's store writes alone. One extraction with MobileNetV2's 161
 * pooled layer widths (those of `h2tdb layers` for models/mobilenet_v2.onnx at T 512; 69,749
 * features per sample), `samples` (default 3000) written in batches of 32, each batch one
 * durable h2t_store_features_write as the pass does. Per run: the calling thread's CPU
 * milliseconds per image inside the writes (what bench/extract_full calls "store"; the system
 * part in parentheses: the kernel's copy into the page cache and fsync), the wall
 * milliseconds per image, a memcpy of the same feature bytes in the same run, and the store's
 * size / raw float bytes; medians over the runs (default 3), then the layers read back and
 * compared with what was written.
 */
#include "storage/store.h"
#include "common/err.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { NS = 1000, NL = 50, DIM = 1024 };

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(int rc, const char *what)
{
    fprintf(stderr, "bench/store: %s: %s: %s\n", what, h2t_strerror(rc), h2t_err_detail());
    exit(1);
}

/* A source and a model named name and an extraction of ns samples over the nl layers L
 * (BORROWED) in st: the extraction's id. */
static uint32_t bench_extraction(h2t_store *st, const char *name, uint32_t dtype, uint32_t ns,
                                 h2t_layer_info *L, uint32_t nl)
{
    h2t_source src = {0};
    snprintf(src.name, sizeof(src.name), "%s", name);
    h2t_model_rec m = {0};
    snprintf(m.name, sizeof(m.name), "%s", name);
    uint32_t sid, mid, ext;
    int reused, rc;
    if ((rc = h2t_store_source_put(st, &src, &sid, &reused)) < 0 ||
        (rc = h2t_store_model_put(st, &m, &mid, &reused)) < 0)
        die(rc, "source/model");
    h2t_extraction e = {0};
    e.source = sid;
    e.model = mid;
    e.dtype = dtype;
    e.n_samples = ns;
    e.n_layers = nl;
    e.layers = L;
    if ((rc = h2t_store_extraction_begin(st, &e, &ext, &reused)) < 0)
        die(rc, "extraction");
    return ext;
}

static uint32_t make_store(const char *dir, unsigned flags, uint32_t dtype, uint32_t batch,
                           float **feat, double *seconds)
{
    h2t_store *st;
    int rc;
    if ((rc = h2t_store_open(dir, H2T_STORE_CREATE | flags, &st)) < 0)
        die(rc, "open");
    h2t_layer_info *L = calloc(NL, sizeof(*L));
    for (int l = 0; l < NL; l++) {
        snprintf(L[l].name, sizeof(L[l].name), "block%d/out", l);
        L[l].dim = DIM;
    }
    uint32_t ext = bench_extraction(st, "bench", dtype, NS, L, NL);
    free(L);
    const float *ptr[NL];
    double t0 = h2t_now_s();
    for (uint32_t at = 0; at < NS; at += batch) {
        uint32_t n = at + batch > NS ? NS - at : batch;
        for (int l = 0; l < NL; l++)
            ptr[l] = feat[l] + (size_t)at * DIM;
        if ((rc = h2t_store_features_write(st, ext, at, n, ptr)) < 0)
            die(rc, "write");
    }
    *seconds = h2t_now_s() - t0;
    h2t_store_close(st);
    return ext;
}

/* assemble the design matrix from the store at dir `runs` times (after one warm-up), each
 * next to a memcpy of the same bytes; check the result against the written values */
static void assemble(const char *dir, uint32_t ext, float *mat, const float *flat, size_t raw,
                     int runs, double *rd, double *rmc, float **feat, int f16)
{
    h2t_store *st;
    int rc = h2t_store_open(dir, H2T_STORE_RDONLY, &st);
    if (rc < 0)
        die(rc, "reopen");
    for (int r = 0; r < runs + 1; r++) { /* run 0 warms the page cache and the mapping */
        double t0 = h2t_now_s();
        for (uint32_t l = 0; l < NL; l++)
            if ((rc = h2t_store_layer_read(st, ext, l, NULL, 0, NS, mat + (size_t)l * DIM,
                                           (size_t)NL * DIM)) < 0)
                die(rc, "layer_read");
        double t1 = h2t_now_s();
        memcpy(mat, flat, raw);
        double t2 = h2t_now_s();
        if (r > 0) {
            rd[r - 1] = t1 - t0;
            rmc[r - 1] = t2 - t1;
        }
    }
    /* the assembled matrix must hold the written values */
    for (int l = 0; l < NL; l += 7) {
        h2t_store_layer_read(st, ext, (uint32_t)l, NULL, 0, NS, mat + (size_t)l * DIM,
                             (size_t)NL * DIM);
        for (int s = 0; s < NS; s += 97)
            for (int j = 0; j < DIM; j++) {
                float want = feat[l][(size_t)s * DIM + j];
                if (f16)
                    want = h2t_f16_to_f32(h2t_f32_to_f16(want));
                if (mat[(size_t)s * NL * DIM + (size_t)l * DIM + j] == want)
                    continue;
                fprintf(stderr, "bench/store: assembled matrix differs at layer %d sample %d\n", l,
                        s);
                exit(1);
            }
    }
    h2t_store_close(st);
}

/* MobileNetV2's pooled widths, layer-table order (h2tdb layers, T 512) */
static const uint16_t mnv2_dims[] = {
    507, 512, 512, 512, 512, 512, 512, 400,  400,  384,  384,  384, 384, 384, 384, 384, 384, 384,
    144, 144, 144, 144, 144, 144, 384, 384,  384,  144,  144,  144, 144, 144, 144, 144, 512, 512,
    192, 192, 192, 192, 192, 192, 512, 512,  512,  192,  192,  192, 192, 192, 192, 512, 512, 512,
    192, 192, 192, 192, 192, 192, 192, 256,  256,  384,  384,  384, 384, 384, 384, 256, 256, 256,
    384, 384, 384, 384, 384, 384, 256, 256,  256,  384,  384,  384, 384, 384, 384, 256, 256, 256,
    384, 384, 384, 384, 384, 384, 384, 384,  576,  576,  576,  576, 576, 576, 384, 384, 384, 576,
    576, 576, 576, 576, 576, 384, 384, 384,  576,  576,  576,  576, 576, 576, 576, 160, 160, 960,
    960, 960, 960, 960, 960, 160, 160, 160,  960,  960,  960,  960, 960, 960, 160, 160, 160, 960,
    960, 960, 960, 960, 960, 320, 320, 1280, 1280, 1280, 1280, 256, 256, 128, 128, 5,   5};
enum { MNV2_NL = sizeof(mnv2_dims) / sizeof(mnv2_dims[0]), MNV2_BATCH = 32 };

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the calling thread's system (kernel) CPU seconds */
static double thread_sys_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* one fresh store in dir: ns samples written in batches of 32; per image CPU and wall ms of the
 * writes, a memcpy of the same bytes (ms per image), size / raw; then every layer read back */
static void mnv2_run(const char *dir, uint32_t ns, float **feat, double *cpu, double *sys,
                     double *wall, double *mc, double *size_ratio, double *read_mbs, float *back,
                     h2t_store_write_times *wt)
{
    h2t_store *st;
    int rc;
    if ((rc = h2t_store_open(dir, H2T_STORE_CREATE, &st)) < 0)
        die(rc, "open");
    h2t_layer_info *L = calloc(MNV2_NL, sizeof(*L));
    uint64_t total = 0;
    for (int l = 0; l < MNV2_NL; l++) {
        snprintf(L[l].name, sizeof(L[l].name), "layer%d", l);
        L[l].dim = mnv2_dims[l];
        total += mnv2_dims[l];
    }
    uint32_t ext = bench_extraction(st, "bench-mnv2", H2T_DTYPE_F32, ns, L, MNV2_NL);
    free(L);
    /* the batch's values change from batch to batch (the statistics see new numbers): the
     * buffers hold 2 batches, used alternately */
    const float *ptr[MNV2_NL];
    double c = 0, w = 0, k = 0;
    for (uint32_t at = 0; at < ns; at += MNV2_BATCH) {
        uint32_t n = at + MNV2_BATCH > ns ? ns - at : MNV2_BATCH;
        for (int l = 0; l < MNV2_NL; l++)
            ptr[l] = feat[l] + (size_t)((at / MNV2_BATCH) & 1) * MNV2_BATCH * mnv2_dims[l];
        double c0 = thread_cpu_s(), k0 = thread_sys_s(), w0 = h2t_now_s();
        if ((rc = h2t_store_features_write(st, ext, at, n, ptr)) < 0)
            die(rc, "write");
        c += thread_cpu_s() - c0;
        k += thread_sys_s() - k0;
        w += h2t_now_s() - w0;
    }
    /* memcpy of the same bytes, from the same buffers */
    double m0 = h2t_now_s();
    size_t off = 0;
    for (uint32_t at = 0; at < ns; at += MNV2_BATCH) {
        uint32_t n = at + MNV2_BATCH > ns ? ns - at : MNV2_BATCH;
        off = 0;
        for (int l = 0; l < MNV2_NL; l++) {
            size_t b = (size_t)n * mnv2_dims[l] * 4;
            memcpy((uint8_t *)back + off,
                   feat[l] + (size_t)((at / MNV2_BATCH) & 1) * MNV2_BATCH * mnv2_dims[l], b);
            off += b;
        }
    }
    *mc = 1e3 * (h2t_now_s() - m0) / ns;
    *cpu = 1e3 * c / ns;
    *sys = 1e3 * k / ns;
    *wall = 1e3 * w / ns;
    h2t_store_write_times_get(st, wt);
    h2t_store_close(st);
    struct stat sb;
    char data[300];
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    *size_ratio = stat(data, &sb) == 0 ? (double)sb.st_size / ((double)ns * total * 4) : 0;
    /* read back from a fresh handle: every layer, every sample, bit for bit; the reads are
     * timed (the pages are in the page cache: they were just written) */
    if ((rc = h2t_store_open(dir, H2T_STORE_RDONLY, &st)) < 0)
        die(rc, "reopen");
    double rt = 0;
    for (int l = 0; l < MNV2_NL; l++) {
        uint32_t d = mnv2_dims[l];
        double r0 = h2t_now_s();
        if ((rc = h2t_store_layer_read(st, ext, (uint32_t)l, NULL, 0, ns, back, d)) < 0)
            die(rc, "layer_read");
        rt += h2t_now_s() - r0;
        for (uint32_t s = 0; s < ns; s++) {
            const float *want = feat[l] + (size_t)((s / MNV2_BATCH) & 1) * MNV2_BATCH * d +
                                (size_t)(s % MNV2_BATCH) * d;
            if (memcmp(back + (size_t)s * d, want, (size_t)d * 4) != 0) {
                fprintf(stderr, "bench/store: mnv2 layer %d sample %u reads back different\n", l,
                        s);
                exit(1);
            }
        }
    }
    *read_mbs = (double)ns * total * 4 / 1e6 / rt;
    h2t_store_close(st);
}

static int mnv2_main(uint32_t ns, int runs)
{
    float *feat[MNV2_NL];
    uint64_t x = 88172645463325252ull;
    for (int l = 0; l < MNV2_NL; l++) {
        size_t cnt = (size_t)2 * MNV2_BATCH * mnv2_dims[l];
        feat[l] = h2t_aalloc(cnt, 4);
        for (size_t i = 0; i < cnt; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            feat[l][i] = (float)(x >> 40) / (float)(1 << 22); /* like pooled ReLU outputs */
        }
    }
    float *back =
        h2t_aalloc((size_t)ns * 1280 > (size_t)MNV2_BATCH * 69749 ? (size_t)ns * 1280
                                                                  : (size_t)MNV2_BATCH * 69749,
                   4);
    char tmpl[] = "/tmp/h2t-bench-store-XXXXXX";
    char *base = mkdtemp(tmpl);
    if (!base || !back) {
        fprintf(stderr, "bench/store: mkdtemp or out of memory\n");
        return 1;
    }
    double cpu[50], sys[50], wall[50], mc[50], rd[50], size = 0;
    char dir[256], cmd[300];
    for (int r = 0; r < runs; r++) {
        snprintf(dir, sizeof(dir), "%s/m%d", base, r);
        h2t_store_write_times wt;
        mnv2_run(dir, ns, feat, &cpu[r], &sys[r], &wall[r], &mc[r], &size, &rd[r], back, &wt);
        printf("  run %d: write CPU %.3f ms/image (system %.3f), wall %.3f ms/image, memcpy "
               "%.3f ms/image, size / raw %.4f, layer reads %.0f MB/s\n"
               "         split (h2t_store_write_times), CPU ms/image: statistics %.3f, rows %.3f, "
               "CRC32C %.3f, commit %.3f (wall %.3f)\n",
               r + 1, cpu[r], sys[r], wall[r], mc[r], size, rd[r], 1e3 * wt.stats_cpu_s / ns,
               1e3 * wt.rows_cpu_s / ns, 1e3 * wt.crc_cpu_s / ns, 1e3 * wt.commit_cpu_s / ns,
               1e3 * wt.commit_s / ns);
        fflush(stdout);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench/store: could not remove %s\n", dir);
    }
    printf("store mnv2: %u samples x %d layers (69749 f32 features), batch %d, medians of %d: "
           "write CPU %.3f ms/image (system %.3f), wall %.3f ms/image, memcpy of the bytes "
           "%.3f ms/image, size / raw %.4f; every layer read back (%.0f MB/s) bit-exact\n",
           ns, MNV2_NL, MNV2_BATCH, runs, median(cpu, runs), median(sys, runs), median(wall, runs),
           median(mc, runs), size, median(rd, runs));
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "bench/store: could not remove %s\n", base);
    for (int l = 0; l < MNV2_NL; l++)
        h2t_afree(feat[l]);
    h2t_afree(back);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "mnv2") == 0) {
        long ns = argc > 2 ? atol(argv[2]) : 3000;
        int runs = argc > 3 ? atoi(argv[3]) : 3;
        if (ns < 1 || ns > 1000000 || runs < 1 || runs > 50) {
            fprintf(stderr, "usage: store mnv2 [samples 1..1000000] [runs 1..50]\n");
            return 2;
        }
        return mnv2_main((uint32_t)ns, runs);
    }
    uint32_t batch = argc > 1 ? (uint32_t)atoi(argv[1]) : 64;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (batch == 0 || runs < 1 || runs > 50) {
        fprintf(stderr, "usage: store [batch>0] [runs 1..50]\n");
        return 2;
    }
    const size_t raw = (size_t)NS * NL * DIM * 4;
    const double mb = (double)raw / 1e6;
    float *feat[NL];
    uint64_t x = 88172645463325252ull;
    for (int l = 0; l < NL; l++) {
        feat[l] = h2t_aalloc((size_t)NS * DIM, 4);
        for (size_t i = 0; i < (size_t)NS * DIM; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            feat[l][i] = (float)(x >> 40) / (float)(1 << 24) - 0.5f;
        }
    }
    float *mat = h2t_aalloc((size_t)NS * NL * DIM, 4);
    float *flat = h2t_aalloc((size_t)NS * NL * DIM, 4);
    if (!mat || !flat) {
        fprintf(stderr, "bench/store: out of memory\n");
        return 1;
    }
    memset(flat, 1, raw);
    char tmpl[] = "/tmp/h2t-bench-store-XXXXXX";
    char *base = mkdtemp(tmpl);
    if (!base) {
        perror("mkdtemp");
        return 1;
    }
    char dir[256], cmd[300];
    double wr[50], wns[50], wmc[50], rd[50], rmc[50];
    struct stat sb;
    double size_ratio = 0;
    uint32_t ext = 0;
    int wruns = runs < 3 ? runs : 3; /* each write run builds a fresh 205 MB store */
    for (int r = 0; r < wruns; r++) {
        snprintf(dir, sizeof(dir), "%s/n%d", base, r); /* without fsync per batch */
        make_store(dir, H2T_STORE_NOSYNC, H2T_DTYPE_F32, batch, feat, &wns[r]);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench/store: could not remove %s\n", dir);
        snprintf(dir, sizeof(dir), "%s/s%d", base, r);
        ext = make_store(dir, 0, H2T_DTYPE_F32, batch, feat, &wr[r]);
        double t0 = h2t_now_s();
        for (int l = 0; l < NL; l++)
            memcpy(mat + (size_t)l * NS * DIM, feat[l], (size_t)NS * DIM * 4);
        wmc[r] = h2t_now_s() - t0;
        char data[300];
        snprintf(data, sizeof(data), "%s/data.mdb", dir);
        if (stat(data, &sb) == 0)
            size_ratio = (double)sb.st_size / (double)raw;
        if (r + 1 < wruns) {
            snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
            if (system(cmd) != 0)
                fprintf(stderr, "bench/store: could not remove %s\n", dir);
        }
    }
    assemble(dir, ext, mat, flat, raw, runs, rd, rmc, feat, 0);
    /* the same features stored as f16 (converted back to f32 while assembling) */
    double rd16[50], rmc16[50], t16;
    snprintf(dir, sizeof(dir), "%s/h", base);
    uint32_t ext16 = make_store(dir, H2T_STORE_NOSYNC, H2T_DTYPE_F16, batch, feat, &t16);
    snprintf(cmd, sizeof(cmd), "%s/data.mdb", dir);
    double size16 = stat(cmd, &sb) == 0 ? (double)sb.st_size / (double)raw : 0;
    assemble(dir, ext16, mat, flat, raw, runs, rd16, rmc16, feat, 1);
    double w = median(wr, wruns), wn = median(wns, wruns), wm = median(wmc, wruns);
    double a = median(rd, runs), am = median(rmc, runs);
    printf("store bench: %d samples x %d layers x %d f32 = %.1f MB, batch %u, medians of %d "
           "write / %d assembly runs\n",
           NS, NL, DIM, mb, batch, wruns, runs);
    printf("  write     %8.1f MB/s   memcpy %8.1f MB/s   ratio %.3f   (fsync per batch)\n", mb / w,
           mb / wm, wm / w);
    printf("  write     %8.1f MB/s   memcpy %8.1f MB/s   ratio %.3f   (H2T_STORE_NOSYNC)\n",
           mb / wn, mb / wm, wm / wn);
    printf("  assemble  %8.1f MB/s   memcpy %8.1f MB/s   ratio %.3f   (target >= 0.5)\n", mb / a,
           mb / am, am / a);
    printf("  size on disk / raw floats: %.4f   (target <= 1.05)\n", size_ratio);
    double a16 = median(rd16, runs), am16 = median(rmc16, runs);
    printf("  f16 store: assemble %8.1f MB/s of f32   memcpy %8.1f MB/s   ratio %.3f;   size / "
           "raw f32 bytes %.4f\n",
           mb / a16, mb / am16, am16 / a16, size16);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "bench/store: could not remove %s\n", base);
    for (int l = 0; l < NL; l++)
        h2t_afree(feat[l]);
    h2t_afree(mat);
    h2t_afree(flat);
    return 0;
}
