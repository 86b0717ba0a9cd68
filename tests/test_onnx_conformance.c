/*
 * tests/test_onnx_conformance.c - ONNX's own operator node tests (Debian libonnx-testdata)
 * against the executor. Every test directory whose model loads (only supported operators,
 * attributes and data types) is run on each of its test_data_set_N and compared with the
 * expected outputs: |got - want| <= 1e-5 + 1e-4 * |want| (NaN matches NaN). Models refused
 * with H2T_EUNSUPPORTED are counted as skipped; any other load error is a failure.
 * One line per node test, then "onnx conformance: P passed, F failed, S skipped-unsupported".
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "extract/model.h"
#include "tests/test.h"

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"
#define RTOL 1e-4
#define ATOL 1e-5

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entries of dir starting with prefix (caller frees each and the array). */
static int list_dir(const char *dir, const char *prefix, char ***out)
{
    DIR *d = opendir(dir);
    int n = 0, cap = 64;
    char **v = malloc((size_t)cap * sizeof *v);
    if (!d || !v) {
        if (d)
            closedir(d);
        free(v);
        *out = NULL;
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)))
            continue;
        if (n == cap) {
            cap *= 2;
            v = realloc(v, (size_t)cap * sizeof *v);
        }
        v[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

typedef struct tset {
    h2t_tensor f[16];
    h2t_itensor i[16];
    int nf, ni;
} tset;

static void tset_free(tset *t)
{
    for (int k = 0; k < t->nf; k++)
        free(t->f[k].data);
    for (int k = 0; k < t->ni; k++)
        free(t->i[k].data);
    memset(t, 0, sizeof *t);
}

/* Read prefix_K.pb files of a data set; is_out keeps the order of outputs in f[] (int64
 * outputs converted to float). Returns 0, or -1 with why filled. */
static int read_set(const char *dir, const char *prefix, int is_out, tset *t, char *why,
                    size_t wlen)
{
    for (int k = 0; k < 16; k++) {
        char path[1200];
        size_t len;
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, k);
        void *buf = slurp(path, &len);
        if (!buf)
            return 0;
        h2t_tensor ft;
        h2t_itensor it;
        int is64 = 0;
        memset(&ft, 0, sizeof ft);
        memset(&it, 0, sizeof it);
        int rc = h2t_tensor_pb_read(buf, len, &ft, &it, &is64);
        free(buf);
        if (rc < 0) {
            snprintf(why, wlen, "%s_%d.pb: %s", prefix, k, h2t_err_detail());
            return rc;
        }
        if (is64 && is_out) {
            int64_t n = 1;
            for (int d = 0; d < it.rank; d++)
                n *= it.shape[d];
            memcpy(ft.name, it.name, sizeof ft.name);
            ft.rank = it.rank;
            memcpy(ft.shape, it.shape, sizeof ft.shape);
            ft.data = malloc((size_t)(n ? n : 1) * sizeof(float));
            for (int64_t j = 0; j < n; j++)
                ft.data[j] = (float)it.data[j];
            free(it.data);
            is64 = 0;
        }
        if (is64)
            t->i[t->ni++] = it;
        else
            t->f[t->nf++] = ft;
    }
    return 0;
}

/* FNV-1a over the outputs' bytes (bitwise comparison across thread counts). */
static uint64_t outputs_hash(const h2t_tensor *t, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int k = 0; k < n; k++) {
        int64_t cnt = 1;
        for (int d = 0; d < t[k].rank; d++)
            cnt *= t[k].shape[d];
        const unsigned char *b = (const unsigned char *)t[k].data;
        for (size_t i = 0; i < (size_t)cnt * sizeof(float); i++)
            h = (h ^ b[i]) * 1099511628211ull;
    }
    return h;
}

/* Run one data set; returns 1 on match, 0 on mismatch/error with why filled. hash (when not
 * NULL) receives outputs_hash of what was computed. */
static int run_set(const h2t_model *m, const char *dir, char *why, size_t wlen, uint64_t *hash)
{
    tset in, want;
    memset(&in, 0, sizeof in);
    memset(&want, 0, sizeof want);
    h2t_tensor *got = NULL;
    int ngot = 0, ok = 0;
    if (read_set(dir, "input", 0, &in, why, wlen) < 0 ||
        read_set(dir, "output", 1, &want, why, wlen) < 0)
        goto out;
    int rc = h2t_model_run_once_i64(m, in.f, in.nf, in.i, in.ni, &got, &ngot);
    if (rc < 0) {
        snprintf(why, wlen, "run: %s: %s", h2t_strerror(rc), h2t_err_detail());
        goto out;
    }
    if (hash)
        *hash = outputs_hash(got, ngot);
    if (ngot != want.nf) {
        snprintf(why, wlen, "%d outputs, expected %d", ngot, want.nf);
        goto out;
    }
    for (int k = 0; k < ngot; k++) {
        const h2t_tensor *g = &got[k], *w = &want.f[k];
        int64_t n = 1;
        if (g->rank != w->rank) {
            snprintf(why, wlen, "output %d: rank %d, expected %d", k, g->rank, w->rank);
            goto out;
        }
        for (int d = 0; d < g->rank; d++) {
            if (g->shape[d] != w->shape[d]) {
                snprintf(why, wlen, "output %d: dim %d is %lld, expected %lld", k, d,
                         (long long)g->shape[d], (long long)w->shape[d]);
                goto out;
            }
            n *= g->shape[d];
        }
        for (int64_t j = 0; j < n; j++) {
            double a = g->data[j], b = w->data[j];
            if (isnan(a) && isnan(b))
                continue;
            if (a == b)
                continue; /* infinities */
            if (!(fabs(a - b) <= ATOL + RTOL * fabs(b))) {
                snprintf(why, wlen, "output %d[%lld]: %.8g, expected %.8g", k, (long long)j, a, b);
                goto out;
            }
        }
    }
    ok = 1;
out:
    h2t_tensors_free(got, ngot);
    tset_free(&in);
    tset_free(&want);
    return ok;
}

typedef struct counts {
    int passed, failed, skipped;
    char **pass_names; /* OWNED by run_dir's caller (counts_free): the passed tests */
} counts;

static void counts_free(counts *c)
{
    for (int i = 0; i < c->passed; i++)
        free(c->pass_names[i]);
    free(c->pass_names);
}

/* Every test_* directory under root; threads > 1: each data set also run with OpenBLAS (and
 * the executor) on that many threads, the outputs required bitwise equal. */
static void run_dir(const char *root, int threads, counts *c)
{
    char **tests;
    int n = list_dir(root, "test_", &tests);
    if (n <= 0)
        TEST_FAILF("no ONNX node tests under %s", root);
    c->pass_names = calloc((size_t)n + 1, sizeof(char *));
    for (int t = 0; t < n; t++) {
        char dir[1024], path[1100], why[600] = "";
        snprintf(dir, sizeof dir, "%s/%s", root, tests[t]);
        snprintf(path, sizeof path, "%s/model.onnx", dir);
        h2t_model *m = NULL;
        int rc = h2t_model_load(path, &m);
        if (rc == H2T_EUNSUPPORTED) {
            c->skipped++;
            printf("  skip %s: %s\n", tests[t], h2t_err_detail());
            continue;
        }
        if (rc < 0) {
            c->failed++;
            printf("  FAIL %s: load: %s: %s\n", tests[t], h2t_strerror(rc), h2t_err_detail());
            continue;
        }
        char **sets;
        int ns = list_dir(dir, "test_data_set_", &sets), ok = ns > 0;
        if (ns <= 0)
            snprintf(why, sizeof why, "no data sets");
        for (int s = 0; s < ns && ok; s++) {
            char sd[1200];
            uint64_t h1 = 0, h2 = 0;
            snprintf(sd, sizeof sd, "%s/%s", dir, sets[s]);
            h2t_blas_threads(1);
            ok = run_set(m, sd, why, sizeof why, &h1);
            if (ok && threads > 1) {
                h2t_blas_threads(threads);
                ok = run_set(m, sd, why, sizeof why, &h2);
                h2t_blas_threads(1);
                if (ok && h1 != h2) {
                    ok = 0;
                    snprintf(why, sizeof why, "outputs differ between 1 and %d threads", threads);
                }
            }
        }
        free_list(sets, ns > 0 ? ns : 0);
        h2t_model_destroy(m);
        if (ok) {
            c->pass_names[c->passed++] = strdup(tests[t]);
            printf("  pass %s\n", tests[t]);
        } else {
            c->failed++;
            printf("  FAIL %s: %s\n", tests[t], why);
        }
    }
    free_list(tests, n);
}

/* Node tests of the shape, logic and type operators that must pass, not skip (data types
 * these operators do not take, float16 / double / uint8 / string, are left out). */
static const char *const MUST_PASS[] = {
    "test_and2d",
    "test_and_bcast4v4d",
    "test_constantofshape_float_ones",
    "test_constantofshape_int_shape_zero",
    "test_constantofshape_int_zeros",
    "test_equal",
    "test_equal_bcast",
    "test_expand_dim_changed",
    "test_expand_dim_unchanged",
    "test_gather_0",
    "test_gather_2d_indices",
    "test_gather_negative_indices",
    "test_greater",
    "test_greater_bcast",
    "test_greater_equal",
    "test_greater_equal_bcast",
    "test_less",
    "test_less_bcast",
    "test_less_equal",
    "test_less_equal_bcast",
    "test_mod_broadcast",
    "test_mod_int64_fmod",
    "test_mod_mixed_sign_float32",
    "test_mod_mixed_sign_int32",
    "test_mod_mixed_sign_int64",
    "test_not_2d",
    "test_not_4d",
    "test_or2d",
    "test_or_bcast4v4d",
    "test_range_int32_type_negative_delta",
    "test_scatternd",
    "test_scatternd_add",
    "test_scatternd_multiply",
    "test_shape",
    "test_shape_clip_end",
    "test_shape_start_negative_1",
    "test_size",
    "test_size_example",
    "test_split_equal_parts_1d",
    "test_split_equal_parts_2d",
    "test_split_equal_parts_default_axis",
    "test_split_variable_parts_1d",
    "test_split_variable_parts_2d",
    "test_split_variable_parts_default_axis",
    "test_split_zero_size_splits",
    "test_tile",
    "test_tile_precomputed",
    "test_where_example",
    "test_where_long_example",
    "test_xor2d",
    "test_xor_bcast4v4d",
};

TEST_TIMEOUT(onnx_conformance_node_tests, 240)
{
    counts c = {0};
    run_dir(NODE_DIR, 1, &c);
    printf("onnx conformance: %d passed, %d failed, %d skipped-unsupported (rtol %g, atol %g)\n",
           c.passed, c.failed, c.skipped, RTOL, ATOL);
    fflush(stdout);
    int missing = 0;
    for (size_t i = 0; i < sizeof MUST_PASS / sizeof MUST_PASS[0]; i++) {
        char dir[1024];
        struct stat st;
        snprintf(dir, sizeof dir, "%s/%s", NODE_DIR, MUST_PASS[i]);
        if (stat(dir, &st) != 0)
            continue; /* not in this version of the test data */
        int found = 0;
        for (int k = 0; k < c.passed && !found; k++)
            found = !strcmp(c.pass_names[k], MUST_PASS[i]);
        if (!found) {
            printf("  must pass: %s\n", MUST_PASS[i]);
            missing++;
        }
    }
    int passed = c.passed, failed = c.failed;
    counts_free(&c);
    ASSERT_GT(passed, 280);
    ASSERT_EQ(failed, 0);
    ASSERT_EQ(missing, 0);
}

/* tests/data/nodes: the numeric operators the Debian test data leaves out in float32
 * (make_nodes.py, test_nn_*), and the data types, values computed before the run and shape /
 * logic operators as exports use them (make_onnx_nodes.py, test_opt_*); every one must load
 * and pass, on 1 and 3 threads alike. */
TEST_TIMEOUT(onnx_conformance_own_node_tests, 120)
{
    counts c = {0};
    run_dir(test_src_path("tests/data/nodes"), 3, &c);
    printf("own node tests: %d passed, %d failed, %d skipped\n", c.passed, c.failed, c.skipped);
    fflush(stdout);
    int passed = c.passed, failed = c.failed, skipped = c.skipped;
    counts_free(&c);
    ASSERT_GT(passed, 40);
    ASSERT_EQ(failed, 0);
    ASSERT_EQ(skipped, 0);
}

/* tests/data/refused (written by tests/data/nodes/make_nodes.py): models the numeric operators
 * refuse at load, each with H2T_EUNSUPPORTED and a detail naming what (expect.tsv). */
TEST(onnx_numeric_ops_refuse_clearly)
{
    char path[1200], line[512];
    snprintf(path, sizeof path, "%s", test_src_path("tests/data/refused/expect.tsv"));
    FILE *f = fopen(path, "r");
    ASSERT(f);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        tab[strcspn(tab + 1, "\n") + 1] = 0;
        char model[700];
        snprintf(model, sizeof model, "tests/data/refused/%s", line);
        h2t_model *m = NULL;
        int rc = h2t_model_load(test_src_path(model), &m);
        if (rc != H2T_EUNSUPPORTED || !strstr(h2t_err_detail(), tab + 1)) {
            fclose(f);
            h2t_model_destroy(m);
            TEST_FAILF("%s: %d (%s), expected unsupported naming \"%s\"", line, rc,
                       h2t_err_detail(), tab + 1);
        }
        n++;
    }
    fclose(f);
    ASSERT_GE(n, 8);
}

/* The dynamic-batch node tests through an executor of batch 4 on 2 threads, where the batch
 * may be split into slices: operators that mix the samples of axis 0 (LayerNormalization over
 * axis 0, an Einsum moving axis 0) must keep it whole, the others may split; the outputs are
 * the expected ones either way. */
TEST(onnx_numeric_ops_batch_split)
{
    const char *names[] = {"test_nn_layernorm_axis0_mixes", "test_nn_einsum_moves_axis0",
                           "test_nn_layernorm_dynamic_batch"};
    for (int t = 0; t < 3; t++) {
        char dir[1024], path[1100], why[256] = "";
        snprintf(dir, sizeof dir, "%s/%s", test_src_path("tests/data/nodes"), names[t]);
        snprintf(path, sizeof path, "%s/model.onnx", dir);
        h2t_model *m = NULL;
        h2t_exec *x = NULL;
        tset in, want;
        memset(&in, 0, sizeof in);
        memset(&want, 0, sizeof want);
        ASSERT_OK(h2t_model_load(path, &m));
        snprintf(path, sizeof path, "%s/test_data_set_0", dir);
        ASSERT(read_set(path, "input", 0, &in, why, sizeof why) == 0);
        ASSERT(read_set(path, "output", 1, &want, why, sizeof why) == 0);
        ASSERT_EQ(in.f[0].shape[0], 4);
        h2t_blas_threads(2);
        ASSERT_OK(h2t_exec_create(m, 4, &x));
        ASSERT_OK(h2t_exec_run(x, in.f[0].data, 4, NULL, NULL));
        int64_t shape[8];
        int rank = 0;
        const float *y = h2t_exec_output(x, 0, shape, &rank);
        ASSERT(y && rank == want.f[0].rank);
        int64_t n = 1;
        for (int d = 0; d < rank; d++)
            n *= shape[d];
        for (int64_t j = 0; j < n; j++)
            if (!(fabs(y[j] - want.f[0].data[j]) <= ATOL + RTOL * fabs(want.f[0].data[j])))
                TEST_FAILF("%s [%lld]: %g, expected %g", names[t], (long long)j, y[j],
                           want.f[0].data[j]);
        h2t_blas_threads(1);
        h2t_exec_destroy(x);
        h2t_model_destroy(m);
        tset_free(&in);
        tset_free(&want);
    }
}
