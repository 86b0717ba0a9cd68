/*
 * cli/cmd_classify.c - `h2tdb classify`: a finished job's head on new images, from a store
 * directly (classify/classify.h: nothing is written) or through a server (--server: the
 * classify request carries the encoded images).
 *
 *   h2tdb classify --store DIR --job J [--model FILE] (--data SPEC | FILE|FOLDER...) [--top K]
 *   h2tdb classify --server ADDR --job J FILE|FOLDER... [--top K]
 */
#include "classify/classify.h"
#include "cli/cli.h"
#include "cli/cmds.h"
#include "common/err.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* What was classified: inputs' names and n x K probabilities. */
typedef struct outcome {
    char **names;
    float *prob;
    uint32_t n, cap, k;
} outcome;

static void outcome_free(outcome *o)
{
    for (uint32_t i = 0; i < o->n; i++)
        free(o->names[i]);
    free(o->names);
    free(o->prob);
}

/* A slot for one more input's probabilities; NULL when out of memory. */
static float *outcome_add(outcome *o, const char *name)
{
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 16;
        char **nn = realloc(o->names, cap * sizeof *nn);
        if (!nn)
            return NULL;
        o->names = nn;
        float *np = realloc(o->prob, (size_t)cap * o->k * sizeof *np);
        if (!np)
            return NULL;
        o->prob = np;
        o->cap = cap;
    }
    if (!(o->names[o->n] = strdup(name)))
        return NULL;
    return o->prob + (size_t)o->n++ * o->k;
}

static int image_name(const char *n)
{
    const char *d = strrchr(n, '.');
    return d && (!strcasecmp(d, ".png") || !strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The image files an argument names: a file as is; a folder's *.png / *.jpg / *.jpeg and those
 * of its sub-folders (one level: a folder source's class folders), sorted by path. */
typedef struct file_list {
    char **v;
    size_t n, cap;
} file_list;

static int list_push(file_list *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        char **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return h2t_err_set(H2T_ENOMEM, "file list");
        l->v = nv;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(path)))
        return h2t_err_set(H2T_ENOMEM, "file list");
    l->n++;
    return 0;
}

static int list_dir(file_list *l, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return h2t_err_set(H2T_EIO, "folder %s: %s", dir, strerror(errno));
    size_t first = l->n;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth == 0)
            rc = list_dir(l, p, 1);
        else if (S_ISREG(sb.st_mode) && image_name(de->d_name))
            rc = list_push(l, p);
    }
    closedir(d);
    if (depth == 0 && rc == 0 && l->n > first)
        qsort(l->v + first, l->n - first, sizeof *l->v, cmp_str);
    return rc;
}

static int expand_args(const char **args, int n, file_list *l)
{
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (stat(args[i], &sb) != 0)
            return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "%s: %s", args[i],
                               strerror(errno));
        size_t before = l->n;
        int rc = S_ISDIR(sb.st_mode) ? list_dir(l, args[i], 0) : list_push(l, args[i]);
        if (rc < 0)
            return rc;
        if (S_ISDIR(sb.st_mode) && l->n == before)
            return h2t_err_set(H2T_ENOTFOUND, "folder %s: no .png / .jpg / .jpeg image", args[i]);
    }
    return 0;
}

static void list_free(file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static int read_all(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return h2t_err_set(errno == ENOENT ? H2T_ENOTFOUND : H2T_EIO, "image %s: %s", path,
                           strerror(errno));
    int rc = 0;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                rc = h2t_err_set(H2T_ENOMEM, "image %s", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                rc = h2t_err_set(H2T_EIO, "image %s: read error", path);
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* The output: one line per input (its top K classes with probabilities), or one JSON object
 * (every probability too). */
static void print_outcome(const outcome *o, const char *const *class_names, uint32_t top, int json,
                          const char *head_json)
{
    uint32_t K = o->k;
    if (top > K)
        top = K;
    uint32_t *order = malloc((K ? K : 1) * sizeof *order);
    if (json)
        printf("{%s\"predictions\": [", head_json);
    for (uint32_t i = 0; i < o->n; i++) {
        const float *p = o->prob + (size_t)i * K;
        /* the top classes: highest probability first, the lower class on ties */
        for (uint32_t k = 0; k < K; k++)
            order[k] = k;
        for (uint32_t a = 0; a < top; a++)
            for (uint32_t b = a + 1; b < K; b++)
                if (p[order[b]] > p[order[a]]) {
                    uint32_t t = order[a];
                    order[a] = order[b];
                    order[b] = t;
                }
        if (json) {
            printf("%s\n  {\"input\": ", i ? "," : "");
            h2t_json_str(stdout, o->names[i]);
            printf(", \"class\": %u, \"name\": ", order[0]);
            h2t_json_str(stdout, class_names[order[0]]);
            printf(", \"top\": [");
            for (uint32_t a = 0; a < top; a++) {
                printf("%s{\"class\": %u, \"name\": ", a ? ", " : "", order[a]);
                h2t_json_str(stdout, class_names[order[a]]);
                printf(", \"prob\": %.9g}", (double)p[order[a]]);
            }
            printf("], \"probs\": [");
            for (uint32_t k = 0; k < K; k++)
                printf("%s%.9g", k ? ", " : "", (double)p[k]);
            printf("]}");
        } else {
            printf("%s", o->names[i]);
            for (uint32_t a = 0; a < top; a++)
                printf("\t%s %.4f", class_names[order[a]], (double)p[order[a]]);
            printf("\n");
        }
    }
    if (json)
        printf("\n]}\n");
    free(order);
}

static int classify_local(h2t_cli *cli, const char *store, uint64_t job, const char *model,
                          const char *models, const char *data, const file_list *files,
                          uint32_t top)
{
    h2t_store *st = NULL;
    h2t_classifier *c = NULL;
    h2t_data *d = NULL;
    outcome o = {0};
    int rc = h2t_store_open(store, H2T_STORE_RDONLY, &st);
    if (rc < 0)
        return h2t_cli_fail(cli, rc);
    h2t_classifier_opts opts;
    h2t_classifier_opts_init(&opts);
    opts.model_path = model;
    opts.models_dir = models;
    rc = h2t_classifier_open(st, job, &opts, &c);
    h2t_store_close(st); /* the classifier needs the store only to open */
    if (rc < 0)
        return h2t_cli_fail(cli, rc);
    const h2t_classifier_info *ci = h2t_classifier_info_get(c);
    o.k = ci->n_classes;
    if (data) {
        if ((rc = h2t_data_open(data, &d)) < 0)
            goto out;
        const h2t_data_info *di = h2t_data_info_get(d);
        for (uint32_t i = 0; i < di->n_samples && rc == 0; i++) {
            char name[64];
            snprintf(name, sizeof name, "sample %u", i);
            h2t_image img;
            float *p = outcome_add(&o, name);
            if (!p)
                rc = h2t_err_set(H2T_ENOMEM, "predictions");
            else if ((rc = h2t_data_read(d, i, &img)) == 0)
                rc = h2t_classifier_run(c, &img, name, p);
        }
    } else {
        for (size_t i = 0; i < files->n && rc == 0; i++) {
            uint8_t *buf = NULL;
            size_t len = 0;
            float *p = outcome_add(&o, files->v[i]);
            if (!p)
                rc = h2t_err_set(H2T_ENOMEM, "predictions");
            else if ((rc = read_all(files->v[i], &buf, &len)) == 0)
                rc = h2t_classifier_run_encoded(c, buf, len, files->v[i], p);
            free(buf);
        }
    }
    if (rc < 0)
        goto out;
    char head[1024];
    double frac = ci->macs > 0 ? ci->macs_needed / ci->macs : 1;
    if (cli->json) {
        snprintf(head, sizeof head,
                 "\"job\": %" PRIu64 ", \"task\": \"%s\", \"layers\": %u, \"features\": %u, "
                 "\"macs\": %.0f, \"macs_needed\": %.0f, \"compute_fraction\": %.6f, ",
                 job, ci->task, ci->n_layers, ci->n_kept, ci->macs, ci->macs_needed, frac);
    } else {
        fprintf(stderr,
                "job %" PRIu64 ": the head reads %u features of %u layer(s); the backbone part "
                "it needs: %.3g of %.3g MMACs per image (%.1f%%), %d of %d nodes\n",
                job, ci->n_kept, ci->n_layers, ci->macs_needed / 1e6, ci->macs / 1e6, 100 * frac,
                ci->nodes_needed, ci->nodes);
    }
    print_outcome(&o, ci->class_names, top, cli->json, head);
out:
    outcome_free(&o);
    h2t_data_close(d);
    h2t_classifier_close(c);
    return rc < 0 ? h2t_cli_fail(cli, rc) : 0;
}

int h2t_cli_export_onnx(h2t_cli *cli, const char *store, uint64_t job, const char *model,
                        const char *models, const char *path)
{
    h2t_store *st = NULL;
    h2t_classifier *c = NULL;
    int rc = h2t_store_open(store, H2T_STORE_RDONLY, &st);
    if (rc < 0)
        return h2t_cli_fail(cli, rc);
    h2t_classifier_opts opts;
    h2t_classifier_opts_init(&opts);
    opts.model_path = model;
    opts.models_dir = models;
    rc = h2t_classifier_open(st, job, &opts, &c);
    h2t_store_close(st);
    if (rc == 0)
        rc = h2t_classifier_export_onnx(c, path);
    if (rc < 0) {
        h2t_classifier_close(c);
        return h2t_cli_fail(cli, rc);
    }
    const h2t_classifier_info *ci = h2t_classifier_info_get(c);
    double frac = ci->macs > 0 ? ci->macs_needed / ci->macs : 1;
    if (cli->json) {
        printf("{\"job\": %" PRIu64 ", \"onnx\": ", job);
        h2t_json_str(stdout, path);
        printf(", \"classes\": %u, \"layers\": %u, \"features\": %u, \"macs\": %.0f, "
               "\"macs_needed\": %.0f, \"compute_fraction\": %.6f}\n",
               ci->n_classes, ci->n_layers, ci->n_kept, ci->macs, ci->macs_needed, frac);
    } else {
        printf("classifier of job %" PRIu64 " written to %s: input %ux%ux%u (scale %g..%g), "
               "%u classes, %u features of %u layer(s), %.3g of %.3g MMACs per image (%.1f%%)\n",
               job, path, ci->c, ci->h, ci->w, (double)ci->lo, (double)ci->hi, ci->n_classes,
               ci->n_kept, ci->n_layers, ci->macs_needed / 1e6, ci->macs / 1e6, 100 * frac);
    }
    h2t_classifier_close(c);
    return 0;
}

static int classify_remote(h2t_cli *cli, uint64_t job, const file_list *files, uint32_t top)
{
    h2t_msg req = {.type = H2T_MSG_CLASSIFY}, rep;
    h2t_msg_classify_req *q = &req.u.classify;
    size_t n = files->n;
    uint8_t **images = calloc(n ? n : 1, sizeof *images);
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    int status = 1, rc = 0;
    if (!images || !lens) {
        rc = h2t_err_set(H2T_ENOMEM, "request");
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = read_all(files->v[i], &images[i], &lens[i]);
    if (rc < 0)
        goto out;
    q->job = job;
    q->n_images = q->n_names = n;
    q->images = (const uint8_t *const *)images;
    q->image_lens = lens;
    q->names = (const char *const *)files->v;
    if (h2t_cli_request(cli, &req, H2T_MSG_CLASSIFICATION, &rep))
        goto out;
    const h2t_msg_classification *a = &rep.u.classification;
    if (a->n_probs != a->n_images * a->n_classes || a->n_images != n ||
        a->n_class_names != a->n_classes) {
        rc = h2t_err_set(H2T_EPROTO,
                         "classify reply: %zu probabilities for %zu images of %u classes",
                         a->n_probs, a->n_images, a->n_classes);
    } else {
        outcome o = {.names = files->v,
                     .prob = (float *)(uintptr_t)a->probs,
                     .n = (uint32_t)n,
                     .k = a->n_classes};
        char head[512];
        double frac = a->macs > 0 ? a->macs_needed / a->macs : 1;
        if (cli->json)
            snprintf(head, sizeof head,
                     "\"job\": %" PRIu64 ", \"macs\": %.0f, \"macs_needed\": %.0f, "
                     "\"compute_fraction\": %.6f, \"cached\": %s, \"classifier_loads\": %" PRIu64
                     ", ",
                     job, a->macs, a->macs_needed, frac, a->cached ? "true" : "false",
                     a->classifier_loads);
        else
            fprintf(stderr,
                    "job %" PRIu64 ": the backbone part the head needs: %.3g of %.3g MMACs per "
                    "image (%.1f%%)\n",
                    job, a->macs_needed / 1e6, a->macs / 1e6, 100 * frac);
        print_outcome(&o, a->class_names, top, cli->json, head);
        status = 0;
    }
    h2t_msg_free(&rep);
out:
    if (rc < 0)
        status = h2t_cli_fail(cli, rc);
    for (size_t i = 0; images && i < n; i++)
        free(images[i]);
    free(images);
    free(lens);
    return status;
}

int h2t_cmd_classify(int argc, char **argv)
{
    static const char text[] =
        "usage: h2tdb classify --store DIR --job J [--model FILE] [--models DIR]\n"
        "                      (--data SPEC | FILE|FOLDER...) [--top K] [--json]\n"
        "       h2tdb classify --server ADDR --job J FILE|FOLDER... [--top K] [--json]\n\n"
        "Apply a finished job's head to new images: only the part of the backbone the kept\n"
        "layers need runs, each kept layer is pooled as the extraction pooled it, the head\n"
        "normalises and weighs as it was trained. Prints each input's top K classes (default\n"
        "1) with probabilities; --json prints every probability. The store is only read.\n"
        "  --model FILE   the extraction's ONNX file (default: DIR/<stored model name> of\n"
        "                 --models DIR, default models); its SHA-256 must be the stored one\n"
        "  --data SPEC    a data source (idx:, folder:, npy:) instead of files\n"
        "  FOLDER         its .png/.jpg/.jpeg files and those of its sub-folders\n"
        "  --server ADDR  send the images to a server (h2tdb serve) as one classify request\n";
    h2t_cli cli;
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos)
        return 1;
    const char *store = NULL, *model = NULL, *models = NULL, *data = NULL, *job_s = NULL;
    unsigned long long job = 0, top = 1;
    h2t_cli_init(&cli, "classify", argc, argv);
    cli.all_pos = pos;
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--store"))
            store = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--job"))
            h2t_cli_u64(&cli, job_s = h2t_cli_value(&cli), &job);
        else if (h2t_cli_is(&cli, "--model"))
            model = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--models"))
            models = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--data"))
            data = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--top"))
            h2t_cli_u64(&cli, h2t_cli_value(&cli), &top);
        else
            h2t_cli_unknown(&cli);
    }
    int status = 0;
    file_list files = {0};
    if (cli.help) {
        fputs(text, stdout);
        goto out;
    }
    status = 2;
    if (cli.bad)
        goto out;
    if (!job_s || (!store == !cli.server) || (data && cli.n_all_pos) || (!data && !cli.n_all_pos) ||
        (data && cli.server) || top == 0 || top > 1000000) {
        fprintf(stderr, "h2tdb classify: %s\n%s",
                !job_s                  ? "--job J is required"
                : !store == !cli.server ? "give --store DIR or --server ADDR (one of them)"
                : data && cli.server    ? "--data reads a source here: with --server give files"
                : top == 0 || top > 1e6 ? "--top K wants 1 or more"
                                        : "give --data SPEC or image files / folders (one of them)",
                text);
        goto out;
    }
    int rc = expand_args(pos, cli.n_all_pos, &files);
    if (rc < 0) {
        status = h2t_cli_fail(&cli, rc);
        goto out;
    }
    status = store ? classify_local(&cli, store, job, model, models, data, &files, (uint32_t)top)
                   : classify_remote(&cli, job, &files, (uint32_t)top);
out:
    list_free(&files);
    free(pos);
    return status;
}
