/*
 * tests/fixture.h - a synthetic store (one source, one model, one extraction whose features a
 * callback gives) and a server on an ephemeral loopback port, for the tests, the fuzz target
 * (tests/fuzz/) and the benchmarks (bench/). Header-only: the benchmarks and the fuzz target
 * link none of the test objects.
 *
 *     static float value(void *ctx, uint32_t layer, uint32_t sample, uint32_t j, uint32_t label)
 *     {
 *         return (float)(j == label);
 *     }
 *     static const h2t_layer_info layers[] = {{.name = "l", .rank = 2, .shape = {4}, .dim = 4}};
 *     fixture_spec sp = {.ext = {.name = "feats"}, .samples = {.n = 40, .classes = 2, .train = 30},
 *                        FIXTURE_LAYERS(layers), .features = {.written = 40, .value = value}};
 *     h2t_store *st;
 *     uint32_t eid;
 *     if (fixture_store_build("store", H2T_STORE_CREATE, &sp, &st, &eid) < 0) ...
 *     h2t_srv_config cfg;
 *     h2t_srv_config_default(&cfg);
 *     h2t_srv *srv;
 *     pthread_t th;
 *     char addr[64];
 *     if (fixture_srv_start(&cfg, st, run_main, &th, &srv, addr, sizeof(addr)) < 0) ...
 */
#ifndef H2T_TESTS_FIXTURE_H
#define H2T_TESTS_FIXTURE_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "server/server.h"
#include "storage/store.h"

/* The value of feature j of `layer` for `sample` (whose label is `label`). Called layer by
 * layer, sample by sample, j by j, so a callback may draw from a generator in ctx. */
typedef float (*fixture_value_fn)(void *ctx, uint32_t layer, uint32_t sample, uint32_t j,
                                  uint32_t label);

/* What fixture_store_build puts into a store. Sample i has label i % samples.classes and
 * split TRAIN when i < samples.train, TEST after. Strings and arrays are BORROWED for the call;
 * NULL strings take the defaults named; the hashes are the first byte of each record's identity. */
typedef struct fixture_spec {
    struct {
        const char *name;               /* NULL: "synth" */
        const char *uri;                /* NULL: "" */
        uint8_t hash;                   /* content hash */
        const char *const *class_names; /* samples.classes names; NULL: "c0", "c1", ... */
    } source;
    struct {
        const char *name; /* NULL: "toy" */
        uint8_t hash;     /* sha256 */
        uint32_t input_shape[4];
    } model;
    struct {
        const char *name;   /* NULL: "ext" */
        const char *config; /* NULL: "" */
        uint8_t hash;       /* config hash */
        uint32_t target_size, dtype;
        int done; /* mark the extraction H2T_EXT_DONE after the writes */
    } ext;
    struct {
        uint32_t n, classes, train; /* sample count, class count, train samples */
    } samples;
    const h2t_layer_info *layers; /* n_layers (offset is the store's): FIXTURE_LAYERS */
    uint32_t n_layers;
    struct {
        uint32_t written; /* samples [0, written) are written by the build */
        fixture_value_fn value;
        void *ctx; /* for value */
    } features;
} fixture_spec;

/* .layers and .n_layers of a fixture_spec from an array of h2t_layer_info. */
#define FIXTURE_LAYERS(a) .layers = (a), .n_layers = (uint32_t)(sizeof(a) / sizeof((a)[0]))

/* 32-bit LCG step (Numerical Recipes constants), the top 24 bits: test images and labels. */
static inline uint32_t fixture_lcg32(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* A .npy version 1.0 header (descr e.g. "<f4", shape e.g. "(3, 1, 8, 8)"), padded to 64. */
static inline void fixture_npy_header(FILE *f, const char *descr, const char *shape)
{
    char dict[200];
    int l = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    size_t total = 10 + (size_t)l + 1, pad = (64 - total % 64) % 64;
    uint16_t hl = (uint16_t)(l + 1 + pad);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 255, f);
    fputc(hl >> 8, f);
    fwrite(dict, 1, (size_t)l, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
}

/* n float32 samples 1 x 8 x 8 in [-1, 1) (seeded, the same every call) with labels i % 3, written
 * to x.npy and y.npy in the working directory: the npy source the shard and MPI tests extract.
 * Returns 0, or -1 when a file cannot be written. */
static inline int fixture_npy_grid8(uint32_t n)
{
    char shape[64];
    uint32_t s = 4242;
    FILE *f = fopen("x.npy", "wb");
    if (!f)
        return -1;
    snprintf(shape, sizeof shape, "(%u, 1, 8, 8)", n);
    fixture_npy_header(f, "<f4", shape);
    for (uint32_t i = 0; i < 64 * n; i++) {
        float v = (float)(fixture_lcg32(&s) % 2000) / 1000.0f - 1.0f;
        fwrite(&v, 4, 1, f);
    }
    if (fclose(f) != 0)
        return -1;
    f = fopen("y.npy", "wb");
    if (!f)
        return -1;
    snprintf(shape, sizeof shape, "(%u,)", n);
    fixture_npy_header(f, "<i4", shape);
    for (uint32_t i = 0; i < n; i++) {
        int32_t v = (int32_t)(i % 3);
        fwrite(&v, 4, 1, f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* The next uniform value in [0, 1) of a 64-bit LCG (Knuth's MMIX constants) in *s. */
static inline float fixture_lcg_unit(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffff) / 65536.0f;
}

/* Write samples [first, first + n) of every layer of extraction eid, values from
 * sp->features.value. Errors: H2T_ENOMEM, those of h2t_store_features_write. */
static inline int fixture_features_write(h2t_store *st, uint32_t eid, const fixture_spec *sp,
                                         uint32_t first, uint32_t n)
{
    int rc = 0;
    float **f = calloc(sp->n_layers, sizeof(*f));
    if (!f)
        return h2t_err_set(H2T_ENOMEM, "fixture: %u layers", sp->n_layers);
    for (uint32_t l = 0; l < sp->n_layers; l++) {
        uint32_t dim = sp->layers[l].dim;
        f[l] = malloc((size_t)n * dim * sizeof(float) + 1);
        if (!f[l]) {
            rc = h2t_err_set(H2T_ENOMEM, "fixture: %u x %u features", n, dim);
            goto out;
        }
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < dim; j++)
                f[l][(size_t)i * dim + j] = sp->features.value(sp->features.ctx, l, first + i, j,
                                                               (first + i) % sp->samples.classes);
    }
    rc = h2t_store_features_write(st, eid, first, n, (const float *const *)f);
out:
    for (uint32_t l = 0; l < sp->n_layers; l++)
        free(f[l]);
    free(f);
    return rc;
}

/* Create (H2T_STORE_CREATE in flags) or open the store in dir and put the source, model and
 * extraction of sp into it, with samples [0, sp->features.written) written. *st is OWNED by the
 * caller (h2t_store_close); *eid is the extraction's id (eid may be NULL). Errors: those of
 * the store calls, H2T_ENOMEM; nothing is left open on an error. */
static inline int fixture_store_build(const char *dir, unsigned flags, const fixture_spec *sp,
                                      h2t_store **st, uint32_t *eid)
{
    h2t_store *s = NULL;
    uint32_t *labels = malloc(sp->samples.n * sizeof(uint32_t) + 1);
    uint8_t *split = malloc(sp->samples.n + 1);
    char **names = calloc(sp->samples.classes + 1, sizeof(char *));
    h2t_layer_info *layers = malloc(sp->n_layers * sizeof(h2t_layer_info) + 1);
    int rc = 0;
    if (!labels || !split || !names || !layers) {
        rc = h2t_err_set(H2T_ENOMEM, "fixture: %u samples", sp->samples.n);
        goto out;
    }
    for (uint32_t i = 0; i < sp->samples.n; i++) {
        labels[i] = i % sp->samples.classes;
        split[i] = i < sp->samples.train ? H2T_SPLIT_TRAIN : H2T_SPLIT_TEST;
    }
    for (uint32_t k = 0; k < sp->samples.classes; k++) {
        char dflt[16];
        snprintf(dflt, sizeof(dflt), "c%u", k);
        const char *name = sp->source.class_names ? sp->source.class_names[k] : dflt;
        if (!(names[k] = strdup(name))) {
            rc = h2t_err_set(H2T_ENOMEM, "fixture: class %u", k);
            goto out;
        }
    }
    memcpy(layers, sp->layers, sp->n_layers * sizeof(h2t_layer_info));
    h2t_source src = {0};
    snprintf(src.name, sizeof(src.name), "%s", sp->source.name ? sp->source.name : "synth");
    snprintf(src.uri, sizeof(src.uri), "%s", sp->source.uri ? sp->source.uri : "");
    src.hash[0] = sp->source.hash;
    src.n_samples = sp->samples.n;
    src.n_classes = sp->samples.classes;
    src.class_names = names;
    src.labels = labels;
    src.split = split;
    h2t_model_rec m = {.sha256 = {sp->model.hash}};
    snprintf(m.name, sizeof(m.name), "%s", sp->model.name ? sp->model.name : "toy");
    memcpy(m.input_shape, sp->model.input_shape, sizeof(m.input_shape));
    h2t_extraction e = {.target_size = sp->ext.target_size,
                        .dtype = sp->ext.dtype,
                        .config_hash = {sp->ext.hash},
                        .n_samples = sp->samples.n,
                        .n_layers = sp->n_layers,
                        .layers = layers};
    snprintf(e.name, sizeof(e.name), "%s", sp->ext.name ? sp->ext.name : "ext");
    snprintf(e.config, sizeof(e.config), "%s", sp->ext.config ? sp->ext.config : "");
    uint32_t id;
    int reused;
    if ((rc = h2t_store_open(dir, flags, &s)) < 0 ||
        (rc = h2t_store_source_put(s, &src, &e.source, &reused)) < 0 ||
        (rc = h2t_store_model_put(s, &m, &e.model, &reused)) < 0 ||
        (rc = h2t_store_extraction_begin(s, &e, &id, &reused)) < 0)
        goto out;
    if (sp->features.written &&
        (rc = fixture_features_write(s, id, sp, 0, sp->features.written)) < 0)
        goto out;
    if (sp->ext.done && (rc = h2t_store_extraction_set_state(s, id, H2T_EXT_DONE)) < 0)
        goto out;
    *st = s;
    s = NULL;
    if (eid)
        *eid = id;
out:
    h2t_store_close(s);
    for (uint32_t k = 0; names && k < sp->samples.classes; k++)
        free(names[k]);
    free(names);
    free(labels);
    free(split);
    free(layers);
    return rc;
}

/* Create a server on st listening on 127.0.0.1 with an ephemeral port, signal handling off
 * (cfg->listen and cfg->handle_signals are set here), and when thread_main is not NULL start
 * thread_main(*srv) on a new thread *th (it is to call h2t_srv_run). addr (cap bytes; may be
 * NULL) gets "127.0.0.1:PORT". *srv is OWNED by the caller (h2t_srv_destroy after the join).
 * Errors: those of h2t_srv_create, H2T_ENOMEM (no thread; nothing is left created). */
static inline int fixture_srv_start(h2t_srv_config *cfg, h2t_store *st,
                                    void *(*thread_main)(void *), pthread_t *th, h2t_srv **srv,
                                    char *addr, size_t cap)
{
    cfg->listen = "127.0.0.1:0";
    cfg->handle_signals = 0;
    h2t_srv *s = NULL;
    int rc = h2t_srv_create(cfg, st, &s);
    if (rc < 0)
        return rc;
    if (thread_main && pthread_create(th, NULL, thread_main, s) != 0) {
        h2t_srv_destroy(s);
        return h2t_err_set(H2T_ENOMEM, "fixture: no server thread");
    }
    if (addr)
        snprintf(addr, cap, "127.0.0.1:%d", h2t_srv_port(s));
    *srv = s;
    return 0;
}

#endif
