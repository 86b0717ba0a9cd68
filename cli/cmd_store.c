/*
 * cli/cmd_store.c - commands that read a store directly (no server):
 *   h2tdb ls     --store DIR [--json]                    sources, models, extractions, tasks, jobs
 *   h2tdb layers --store DIR EXTRACTION [--json]         name, op, shape, pooled dim, offset
 *   h2tdb dump   --store DIR EXTRACTION --layer NAME --sample I [--raw | --json]
 * The store is opened read-only, so these work while an extraction is being written. DIR may
 * be a store set's folder (extract --mpi: its manifest), or --store may be given once per
 * shard store of a sharded extraction: either way the shards read as one extraction.
 */
#include "cli/cmds.h"
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_ARGS_MAX 4096 /* --store given this many times at most (a store set's shards) */

typedef struct store_args {
    const char *store, *layer, *sample, *pos;
    const char *stores[STORE_ARGS_MAX]; /* every --store, in order */
    int n_stores;
    int json, raw, help;
} store_args;

/* parse --store DIR, --layer NAME, --sample I (or --opt=value), --json, --raw, --help and at
 * most one positional argument; returns 0 or prints the problem and returns 2 */
static int parse_args(const char *cmd, int argc, char **argv, store_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char **dst = NULL;
        size_t nlen = 0;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            a->help = 1;
            continue;
        }
        if (!strcmp(s, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(s, "--raw")) {
            a->raw = 1;
            continue;
        }
        if (!strncmp(s, "--store", 7))
            dst = &a->store, nlen = 7;
        else if (!strncmp(s, "--layer", 7))
            dst = &a->layer, nlen = 7;
        else if (!strncmp(s, "--sample", 8))
            dst = &a->sample, nlen = 8;
        if (dst && (s[nlen] == '=' || s[nlen] == '\0')) {
            if (s[nlen] == '\0' && i + 1 >= argc) {
                fprintf(stderr, "h2tdb %s: %s needs a value (h2tdb %s --help)\n", cmd, s, cmd);
                return 2;
            }
            *dst = s[nlen] == '=' ? s + nlen + 1 : argv[++i];
            if (dst == &a->store) {
                if (a->n_stores == STORE_ARGS_MAX) {
                    fprintf(stderr, "h2tdb %s: more than %d --store\n", cmd, STORE_ARGS_MAX);
                    return 2;
                }
                a->stores[a->n_stores++] = a->store;
            }
            continue;
        }
        if (s[0] == '-' && s[1]) {
            fprintf(stderr, "h2tdb %s: unknown option '%s' (h2tdb %s --help)\n", cmd, s, cmd);
            return 2;
        }
        if (a->pos) {
            fprintf(stderr, "h2tdb %s: unexpected argument '%s' (h2tdb %s --help)\n", cmd, s, cmd);
            return 2;
        }
        a->pos = s;
    }
    return 0;
}

static int fail(const char *cmd, int rc)
{
    char buf[1400];
    fprintf(stderr, "h2tdb %s: %s\n", cmd, h2t_err_format(rc, buf, sizeof(buf)));
    return 1;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static const char *ext_state_name(uint32_t s)
{
    return s == H2T_EXT_RUNNING  ? "running"
           : s == H2T_EXT_DONE   ? "done"
           : s == H2T_EXT_FAILED ? "failed"
                                 : "?";
}

static const char *job_state_name(uint32_t s)
{
    static const char *const n[] = {"queued", "running", "done", "failed", "cancelled"};
    return s <= H2T_JOB_CANCELLED ? n[s] : "?";
}

static int open_store(const char *cmd, const store_args *a, h2t_store **st)
{
    if (!a->store) {
        fprintf(stderr, "h2tdb %s: --store DIR is required (h2tdb %s --help)\n", cmd, cmd);
        return 2;
    }
    /* one store (or a store set's folder), or the shard stores of a set given one by one */
    int rc = a->n_stores > 1
                 ? h2t_store_open_set(a->stores, (size_t)a->n_stores, 0, H2T_STORE_RDONLY, st)
                 : h2t_store_open(a->store, H2T_STORE_RDONLY, st);
    return rc < 0 ? fail(cmd, rc) : 0;
}

/* ---- ls ---- */

typedef struct listing {
    h2t_source **src;
    size_t nsrc;
    h2t_model_rec *models;
    size_t nmodels;
    h2t_extraction **ext;
    size_t next;
    h2t_task **tasks;
    size_t ntasks;
    h2t_job **jobs;
    size_t njobs;
    int set_shards; /* h2t_store_is_set */
} listing;

static void ls_text(const char *dir, const h2t_store_meta *m, const listing *l)
{
    printf("store %s  (format %u, %.1f MB used, map %.1f MB)\n", dir, m->format_version,
           (double)m->used_bytes / 1e6, (double)m->map_size / 1e6);
    if (l->set_shards)
        printf("a store set of %d shard stores read as one (tasks and jobs: its work store)\n",
               l->set_shards);
    printf("\nsources (%zu)\n", l->nsrc);
    if (l->nsrc)
        printf("  %-4s %-24s %8s %7s  %s\n", "ID", "NAME", "SAMPLES", "CLASSES", "URI");
    for (size_t i = 0; i < l->nsrc; i++)
        printf("  %-4u %-24s %8u %7u  %s\n", l->src[i]->id, l->src[i]->name, l->src[i]->n_samples,
               l->src[i]->n_classes, l->src[i]->uri);
    printf("\nmodels (%zu)\n", l->nmodels);
    if (l->nmodels)
        printf("  %-4s %-24s %-16s %s\n", "ID", "NAME", "INPUT", "SHA256");
    for (size_t i = 0; i < l->nmodels; i++) {
        const h2t_model_rec *m2 = &l->models[i];
        char hex[65], in[64];
        h2t_hex(m2->sha256, 32, hex);
        hex[16] = '\0';
        snprintf(in, sizeof(in), "%ux%ux%u", m2->input_shape[1], m2->input_shape[2],
                 m2->input_shape[3]);
        printf("  %-4u %-24s %-16s %s...\n", m2->id, m2->name, in, hex);
    }
    printf("\nextractions (%zu)\n", l->next);
    if (l->next)
        printf("  %-4s %-20s %6s %5s %5s %6s %10s %15s  %s\n", "ID", "NAME", "SOURCE", "MODEL",
               "DTYPE", "LAYERS", "DIM", "DONE", "STATE");
    for (size_t i = 0; i < l->next; i++) {
        const h2t_extraction *e = l->ext[i];
        char done[32];
        snprintf(done, sizeof(done), "%u/%u", e->samples_done, e->n_samples);
        printf("  %-4u %-20s %6u %5u %5s %6u %10" PRIu64 " %15s  %s\n", e->id,
               e->name[0] ? e->name : "-", e->source, e->model,
               e->dtype == H2T_DTYPE_F16 ? "f16" : "f32", e->n_layers, e->total_dim, done,
               ext_state_name(e->state));
    }
    printf("\ntasks (%zu)\n", l->ntasks);
    if (l->ntasks)
        printf("  %-24s %10s %7s %7s %7s %7s %5s\n", "NAME", "EXTRACTION", "CLASSES", "TRAIN",
               "VAL", "TEST", "SHOTS");
    for (size_t i = 0; i < l->ntasks; i++) {
        const h2t_task *t = l->tasks[i];
        printf("  %-24s %10u %7u %7u %7u %7u %5u\n", t->name, t->extraction, t->n_classes,
               t->n_train, t->n_val, t->n_test, t->shots);
    }
    printf("\njobs (%zu)\n", l->njobs);
    if (l->njobs)
        printf("  %-6s %-10s %8s  %-20s %s\n", "ID", "STATE", "PROGRESS", "STAGE", "ERROR");
    for (size_t i = 0; i < l->njobs; i++) {
        const h2t_job *j = l->jobs[i];
        printf("  %-6" PRIu64 " %-10s %7.1f%%  %-20s %s\n", j->id, job_state_name(j->state),
               100.0 * j->progress, j->stage[0] ? j->stage : "-", j->error);
    }
}

static void ls_json(const char *dir, const h2t_store_meta *m, const listing *l)
{
    printf("{\"store\":");
    json_str(stdout, dir);
    printf(",\"format_version\":%u,\"used_bytes\":%" PRIu64 ",\"map_size\":%" PRIu64,
           m->format_version, m->used_bytes, m->map_size);
    printf(",\"sources\":[");
    for (size_t i = 0; i < l->nsrc; i++) {
        const h2t_source *s = l->src[i];
        printf("%s{\"id\":%u,\"name\":", i ? "," : "", s->id);
        json_str(stdout, s->name);
        printf(",\"uri\":");
        json_str(stdout, s->uri);
        printf(",\"samples\":%u,\"classes\":[", s->n_samples);
        for (uint32_t c = 0; c < s->n_classes; c++) {
            if (c)
                putchar(',');
            json_str(stdout, s->class_names[c]);
        }
        printf("]}");
    }
    printf("],\"models\":[");
    for (size_t i = 0; i < l->nmodels; i++) {
        const h2t_model_rec *mo = &l->models[i];
        char hex[65];
        h2t_hex(mo->sha256, 32, hex);
        printf("%s{\"id\":%u,\"name\":", i ? "," : "", mo->id);
        json_str(stdout, mo->name);
        printf(",\"sha256\":\"%s\",\"input_shape\":[%u,%u,%u,%u],\"preprocess\":", hex,
               mo->input_shape[0], mo->input_shape[1], mo->input_shape[2], mo->input_shape[3]);
        json_str(stdout, mo->preprocess);
        putchar('}');
    }
    printf("],\"extractions\":[");
    for (size_t i = 0; i < l->next; i++) {
        const h2t_extraction *e = l->ext[i];
        char hex[65];
        h2t_hex(e->config_hash, 32, hex);
        printf("%s{\"id\":%u,\"name\":", i ? "," : "", e->id);
        json_str(stdout, e->name);
        printf(",\"source\":%u,\"model\":%u,\"dtype\":\"%s\",\"target_size\":%u,\"config\":",
               e->source, e->model, e->dtype == H2T_DTYPE_F16 ? "f16" : "f32", e->target_size);
        json_str(stdout, e->config);
        printf(",\"config_hash\":\"%s\",\"layers\":%u,\"total_dim\":%" PRIu64
               ",\"samples_done\":%u,\"n_samples\":%u,\"state\":\"%s\",\"created_ms\":%" PRIu64
               ",\"updated_ms\":%" PRIu64 "}",
               hex, e->n_layers, e->total_dim, e->samples_done, e->n_samples,
               ext_state_name(e->state), e->created_ms, e->updated_ms);
    }
    printf("],\"tasks\":[");
    for (size_t i = 0; i < l->ntasks; i++) {
        const h2t_task *t = l->tasks[i];
        printf("%s{\"name\":", i ? "," : "");
        json_str(stdout, t->name);
        printf(",\"extraction\":%u,\"classes\":%u,\"train\":%u,\"val\":%u,\"test\":%u,"
               "\"shots\":%u}",
               t->extraction, t->n_classes, t->n_train, t->n_val, t->n_test, t->shots);
    }
    printf("],\"jobs\":[");
    for (size_t i = 0; i < l->njobs; i++) {
        const h2t_job *j = l->jobs[i];
        printf("%s{\"id\":%" PRIu64 ",\"state\":\"%s\",\"attempts\":%u,\"progress\":%.4f,"
               "\"stage\":",
               i ? "," : "", j->id, job_state_name(j->state), j->attempts, j->progress);
        json_str(stdout, j->stage);
        printf(",\"error\":");
        json_str(stdout, j->error);
        printf(",\"created_ms\":%" PRIu64 ",\"finished_ms\":%" PRIu64 "}", j->created_ms,
               j->finished_ms);
    }
    printf("]}\n");
}

int h2t_cmd_ls(int argc, char **argv)
{
    store_args a;
    int rc = parse_args("ls", argc, argv, &a);
    if (rc)
        return rc;
    if (a.help) {
        printf("usage: h2tdb ls --store DIR [--json]\n\n"
               "List what a store holds: sources (datasets), models, extractions (with their\n"
               "progress), tasks and jobs. The store is opened read-only.\n\n"
               "  --store DIR   the store directory, a store set's folder (extract --mpi), or\n"
               "                once per shard store (extract --shard I/N) to read them as one\n"
               "  --json        one JSON object instead of tables\n");
        return 0;
    }
    if (a.pos || a.layer || a.sample || a.raw) {
        fprintf(stderr, "h2tdb ls: takes only --store DIR and --json (h2tdb ls --help)\n");
        return 2;
    }
    h2t_store *st;
    if ((rc = open_store("ls", &a, &st)) != 0)
        return rc;
    listing l;
    memset(&l, 0, sizeof(l));
    l.set_shards = h2t_store_is_set(st);
    h2t_store_meta m;
    int status = 0;
    if ((rc = h2t_store_meta_get(st, &m)) < 0 ||
        (rc = h2t_store_source_list(st, &l.src, &l.nsrc)) < 0 ||
        (rc = h2t_store_model_list(st, &l.models, &l.nmodels)) < 0 ||
        (rc = h2t_store_extraction_list(st, &l.ext, &l.next)) < 0 ||
        (rc = h2t_store_task_list(st, &l.tasks, &l.ntasks)) < 0 ||
        (rc = h2t_store_job_list(st, &l.jobs, &l.njobs)) < 0) {
        status = fail("ls", rc);
        goto out;
    }
    if (a.json)
        ls_json(h2t_store_dir(st), &m, &l);
    else
        ls_text(h2t_store_dir(st), &m, &l);
out:
    h2t_source_list_destroy(l.src, l.nsrc);
    free(l.models);
    h2t_extraction_list_destroy(l.ext, l.next);
    h2t_task_list_destroy(l.tasks, l.ntasks);
    h2t_job_list_destroy(l.jobs, l.njobs);
    h2t_store_close(st);
    return status;
}

/* ---- layers ---- */

static void shape_str(const h2t_layer_info *li, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    uint32_t n = li->rank > 1 ? li->rank - 1 : 0;
    if (n > 4)
        n = 4;
    for (uint32_t i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%u", i ? "x" : "", li->shape[i]);
    if (!n)
        snprintf(buf, len, "-");
}

static int load_extraction(const char *cmd, h2t_store *st, const char *q, h2t_extraction **e)
{
    uint32_t id;
    int rc = h2t_store_extraction_find(st, q, &id);
    if (rc == 0)
        rc = h2t_store_extraction_get(st, id, e);
    return rc < 0 ? fail(cmd, rc) : 0;
}

int h2t_cmd_layers(int argc, char **argv)
{
    store_args a;
    int rc = parse_args("layers", argc, argv, &a);
    if (rc)
        return rc;
    if (a.help) {
        printf("usage: h2tdb layers --store DIR EXTRACTION [--json]\n\n"
               "The layer table of one extraction (by id or name): for each layer its ONNX\n"
               "tensor name, the op that produced it, the per-sample tensor shape, the pooled\n"
               "feature count and its offset in the concatenated feature vector.\n\n"
               "  --store DIR   the store directory, a store set's folder (extract --mpi), or\n"
               "                once per shard store (extract --shard I/N) to read them as one\n"
               "  --json        a JSON object instead of a table\n");
        return 0;
    }
    if (!a.pos) {
        fprintf(stderr, "h2tdb layers: name an EXTRACTION (id or name; h2tdb ls lists them)\n");
        return 2;
    }
    if (a.layer || a.sample || a.raw) {
        fprintf(stderr, "h2tdb layers: takes --store DIR, EXTRACTION and --json only\n");
        return 2;
    }
    h2t_store *st;
    if ((rc = open_store("layers", &a, &st)) != 0)
        return rc;
    h2t_extraction *e;
    if ((rc = load_extraction("layers", st, a.pos, &e)) != 0) {
        h2t_store_close(st);
        return rc;
    }
    char shape[96];
    if (a.json) {
        printf("{\"extraction\":%u,\"name\":", e->id);
        json_str(stdout, e->name);
        printf(",\"total_dim\":%" PRIu64 ",\"layers\":[", e->total_dim);
        for (uint32_t i = 0; i < e->n_layers; i++) {
            const h2t_layer_info *li = &e->layers[i];
            printf("%s{\"index\":%u,\"name\":", i ? "," : "", i);
            json_str(stdout, li->name);
            printf(",\"op\":");
            json_str(stdout, li->op);
            printf(",\"shape\":[");
            for (uint32_t k = 0; k + 1 < li->rank && k < 4; k++)
                printf("%s%u", k ? "," : "", li->shape[k]);
            printf("],\"dim\":%u,\"offset\":%" PRIu64 "}", li->dim, li->offset);
        }
        printf("]}\n");
    } else {
        printf("extraction %u %s: %u layers, %" PRIu64 " features\n", e->id, e->name, e->n_layers,
               e->total_dim);
        printf("%5s  %-40s %-20s %-16s %8s %10s\n", "#", "NAME", "OP", "SHAPE", "DIM", "OFFSET");
        for (uint32_t i = 0; i < e->n_layers; i++) {
            const h2t_layer_info *li = &e->layers[i];
            shape_str(li, shape, sizeof(shape));
            printf("%5u  %-40s %-20s %-16s %8u %10" PRIu64 "\n", i, li->name,
                   li->op[0] ? li->op : "-", shape, li->dim, li->offset);
        }
    }
    h2t_extraction_destroy(e);
    h2t_store_close(st);
    return 0;
}

/* ---- dump ---- */

int h2t_cmd_dump(int argc, char **argv)
{
    store_args a;
    int rc = parse_args("dump", argc, argv, &a);
    if (rc)
        return rc;
    if (a.help) {
        printf("usage: h2tdb dump --store DIR EXTRACTION --layer NAME --sample I [--raw | --json]\n"
               "\n"
               "Print the pooled feature vector of one sample at one layer (as float32, also\n"
               "for extractions stored in f16).\n\n"
               "  --store DIR    the store directory, a store set's folder (extract --mpi), or\n"
               "                 once per shard store (extract --shard I/N) to read them as one\n"
               "  --layer NAME   the layer's ONNX tensor name (h2tdb layers lists them)\n"
               "  --sample I     the sample number (0-based)\n"
               "  --raw          write the vector as little-endian float32 bytes to stdout\n"
               "  --json         a JSON object instead of text\n");
        return 0;
    }
    if (!a.pos) {
        fprintf(stderr, "h2tdb dump: name an EXTRACTION (id or name; h2tdb ls lists them)\n");
        return 2;
    }
    if (!a.layer || !a.sample) {
        fprintf(stderr, "h2tdb dump: --layer NAME and --sample I are required\n");
        return 2;
    }
    if (a.raw && a.json) {
        fprintf(stderr, "h2tdb dump: --raw and --json exclude each other\n");
        return 2;
    }
    char *end;
    errno = 0;
    unsigned long long sample = strtoull(a.sample, &end, 10);
    if (!a.sample[0] || *end || errno || a.sample[0] == '-' || sample > UINT32_MAX) {
        fprintf(stderr, "h2tdb dump: --sample '%s' is not a sample number\n", a.sample);
        return 2;
    }
    h2t_store *st;
    if ((rc = open_store("dump", &a, &st)) != 0)
        return rc;
    h2t_extraction *e = NULL;
    float *v = NULL;
    int status = 0;
    uint32_t layer;
    if ((status = load_extraction("dump", st, a.pos, &e)) != 0)
        goto out;
    if ((rc = h2t_extraction_layer_find(e, a.layer, &layer)) < 0) {
        status = fail("dump", rc);
        goto out;
    }
    uint32_t dim = e->layers[layer].dim;
    if (!(v = malloc((size_t)dim * 4))) {
        status = fail("dump", h2t_err_set(H2T_ENOMEM, "a vector of %u floats", dim));
        goto out;
    }
    if ((rc = h2t_store_feature_get(st, e->id, layer, (uint32_t)sample, v, dim)) < 0) {
        status = fail("dump", rc);
        goto out;
    }
    if (a.raw) {
        uint8_t *b = (uint8_t *)v; /* little-endian whatever the host */
        for (uint32_t j = 0; j < dim; j++) {
            uint32_t x;
            memcpy(&x, &v[j], 4);
            b[4 * j] = (uint8_t)x, b[4 * j + 1] = (uint8_t)(x >> 8);
            b[4 * j + 2] = (uint8_t)(x >> 16), b[4 * j + 3] = (uint8_t)(x >> 24);
        }
        if (fwrite(b, 4, dim, stdout) != dim || fflush(stdout) != 0) {
            fprintf(stderr, "h2tdb dump: writing to stdout: %s\n", strerror(errno));
            status = 1;
        }
    } else if (a.json) {
        printf("{\"extraction\":%u,\"layer\":", e->id);
        json_str(stdout, a.layer);
        printf(",\"sample\":%llu,\"dim\":%u,\"values\":[", sample, dim);
        for (uint32_t j = 0; j < dim; j++)
            printf("%s%.9g", j ? "," : "", v[j]);
        printf("]}\n");
    } else {
        printf("# extraction %u layer %s sample %llu: %u values\n", e->id, a.layer, sample, dim);
        for (uint32_t j = 0; j < dim; j++)
            printf("%.9g%c", v[j], (j % 8 == 7 || j + 1 == dim) ? '\n' : ' ');
    }
out:
    free(v);
    h2t_extraction_destroy(e);
    h2t_store_close(st);
    return status;
}
