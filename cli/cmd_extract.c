/*
 * cli/cmd_extract.c - `h2tdb extract`: one pass of an ONNX backbone over a data source,
 * every selected layer pooled and stored (extract/extract.h). The model and the data are
 * checked before the store is opened, so bad input leaves nothing behind.
 */
#include "cli/cmds.h"
#include "cli/extract_mpi.h"
#include "common/err.h"
#include "common/util.h"
#include "extract/extract.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void extract_usage(FILE *f)
{
    fprintf(f, "usage: h2tdb extract --store DIR --model M.onnx --data SPEC [options]\n"
               "\n"
               "Run the model once over the data and store every selected layer's output, pooled\n"
               "the Head2Toe way, one feature vector per (layer, sample). The same request again\n"
               "reuses the stored extraction; an interrupted one resumes where it stopped.\n"
               "\n"
               "data SPEC:\n"
               "  idx:DIR                 MNIST-style IDX files (train-*, t10k-*), gzipped or not\n"
               "  folder:DIR              one sub-folder per class with PNG/JPEG images\n"
               "  npy:IMAGES.npy[,LABELS.npy]  uint8 N x H x W [x C], or float32 N x C x H x W\n"
               "                          used as-is\n"
               "options:\n"
               "  --name NAME             name of the extraction (unique in the store)\n"
               "  --source-name NAME      name of the data source (default: the directory name)\n"
               "  --target-size T         Head2Toe pooling target per layer (default 512)\n"
               "  --train N, --test M     only the first N train and first M test samples: a\n"
               "                          source of its own, numbered train first (e.g. --train\n"
               "                          1000 --test 2000); 'all' keeps a whole split\n"
               "  --limit N               only the first N samples of the source (quick subsets)\n"
               "  --shard I/N             only shard I of N (contiguous sample ranges, one store\n"
               "                          each; h2tdb merge joins them; docs/deployment.md)\n"
               "  --mpi                   under mpirun -np N: rank I extracts shard I/N into\n"
               "                          DIR/shard-I-of-N; rank 0 then writes the manifest\n"
               "                          DIR/store-set.txt (--store DIR holds them all)\n"
               "  --layers REGEX          tensors whose name matches (POSIX extended) instead of\n"
               "                          the default rule (every node output of rank 2-4 but\n"
               "                          reshapes/identities, attention weights and heads)\n"
               "  --batch B               samples per store transaction (default 32)\n"
               "  --forward-batch F       samples per forward pass (default 1: batch-independent\n"
               "                          numbers, pooled while in cache; F > 1 is part of the\n"
               "                          extraction's identity)\n"
               "  --threads N             threads (default: one per CPU): at forward batch 1,\n"
               "                          N samples at a time, each on one OpenBLAS thread;\n"
               "                          above 1, OpenBLAS threads and pooling threads\n"
               "  --dtype f32|f16         stored feature type (default f32)\n"
               "  --scale LO,HI           map pixel 0..255 to LO..HI (default: the model's\n"
               "                          h2tdb.preprocess metadata, else -1,1); every option\n"
               "                          also takes --opt=VALUE, e.g. --scale=-1,1\n"
               "  --cls pool|only|apart   the class token of token tensors: pooled with the\n"
               "                          others (default), its features only, or its features\n"
               "                          then the others pooled (only tensors computed from a\n"
               "                          Concat that prepends a learned token have one)\n"
               "  --cls-token auto|first  auto (default): that detection; first: token 0 of\n"
               "                          every token tensor is a class token\n"
               "  --plan                  print the layers that would be stored (form, pooling,\n"
               "                          features) and the tensors passed over, and stop\n"
               "  --pool-direct           pool every layer from its own tensor; by default a\n"
               "                          BatchNormalization, same-shape Add or zero Pad layer\n"
               "                          gets its features from its inputs' (equal up to float\n"
               "                          rounding, and faster; a different extraction\n"
               "                          identity: 'pool=derived' in its config)\n"
               "  --keep-cache            leave the written features in the page cache (by\n"
               "                          default each batch's block is dropped from it once\n"
               "                          durable: the pass recycles the same memory)\n"
               "  --no-progress           no progress bar (it is drawn only on a terminal)\n"
               "  --json                  print the result as JSON\n");
}

static int parse_u32(const char *s, uint32_t *out, int allow_all)
{
    if (allow_all && !strcmp(s, "all")) {
        *out = UINT32_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || v >= UINT32_MAX || s[0] == '-')
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, "h2tdb extract: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (h2tdb extract --help)\n");
    return 2;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* The tensors the layer rule passed over, one line per reason with up to `names` names
 * (all when names is 0), on stderr. */
static void print_skipped(const h2t_extract_plan *p, int names)
{
    int n;
    const h2t_layer_skip *sk = h2t_extract_plan_skipped(p, &n);
    const h2t_model *m = h2t_extract_plan_model(p);
    if (n)
        fprintf(stderr, "h2tdb extract: %d tensor%s passed over:\n", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        int first = 1, count = 0;
        for (int k = 0; k < i && first; k++)
            first = strcmp(sk[k].why, sk[i].why) != 0;
        if (!first)
            continue;
        for (int k = i; k < n; k++)
            count += !strcmp(sk[k].why, sk[i].why);
        fprintf(stderr, "  %d: %s:", count, sk[i].why);
        for (int k = i, shown = 0; k < n; k++) {
            if (strcmp(sk[k].why, sk[i].why))
                continue;
            if (names && shown == names) {
                fprintf(stderr, " ...");
                break;
            }
            fprintf(stderr, " %s", h2t_model_tensor(m, sk[k].tensor)->name);
            shown++;
        }
        fputc('\n', stderr);
    }
}

static void print_plan(const h2t_extract_plan *p)
{
    uint32_t n;
    uint64_t td;
    const h2t_layer_info *li = h2t_extract_plan_layers(p, &n, &td);
    printf("%u layers, %llu features per sample\n", n, (unsigned long long)td);
    printf("%5s  %-40s %-20s %-16s %-52s %8s\n", "#", "NAME", "OP", "SHAPE", "POOLING", "DIM");
    for (uint32_t l = 0; l < n; l++) {
        char shape[64] = "", pool[128];
        for (uint32_t k = 0, at = 0; k + 1 < li[l].rank && k < 4 && at < sizeof shape; k++)
            at += (uint32_t)snprintf(shape + at, sizeof shape - at, "%s%u", k ? "x" : "",
                                     li[l].shape[k]);
        h2t_extract_plan_describe(p, l, pool, sizeof pool);
        printf("%5u  %-40s %-20s %-16s %-52s %8u\n", l, li[l].name, li[l].op, shape, pool,
               li[l].dim);
    }
    print_skipped(p, 0);
}

int h2t_cmd_extract(int argc, char **argv)
{
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.progress = 1;
    const char *store_dir = NULL;
    int json = 0, plan_only = 0, mpi = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            extract_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--no-progress")) {
            o.progress = 0;
            continue;
        }
        if (!strcmp(a, "--pool-direct")) {
            o.pool_direct = 1;
            continue;
        }
        if (!strcmp(a, "--keep-cache")) {
            o.keep_cache = 1;
            continue;
        }
        if (!strcmp(a, "--plan")) {
            plan_only = 1;
            continue;
        }
        if (!strcmp(a, "--mpi")) {
            mpi = 1;
            continue;
        }
        char name[64];
        const char *v;
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof(name)) { /* --opt=value (also for negative numbers) */
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            a = name;
            v = eq + 1;
        } else if (i + 1 >= argc) {
            return usage_err("%s needs a value", a);
        } else {
            v = argv[++i];
        }
        uint32_t u;
        if (!strcmp(a, "--store"))
            store_dir = v;
        else if (!strcmp(a, "--model"))
            o.model_path = v;
        else if (!strcmp(a, "--data"))
            o.data_spec = v;
        else if (!strcmp(a, "--name"))
            o.name = v;
        else if (!strcmp(a, "--source-name"))
            o.source_name = v;
        else if (!strcmp(a, "--layers"))
            o.layers_regex = v;
        else if (!strcmp(a, "--target-size")) {
            if (parse_u32(v, &o.target_size, 0) < 0 || o.target_size == 0)
                return usage_err("--target-size '%s': a positive integer", v);
        } else if (!strcmp(a, "--limit")) {
            if (parse_u32(v, &o.limit, 0) < 0 || o.limit == 0)
                return usage_err("--limit '%s': a positive integer", v);
        } else if (!strcmp(a, "--shard")) {
            unsigned si, sn;
            int used = 0;
            if (sscanf(v, "%u/%u%n", &si, &sn, &used) != 2 || v[used] != '\0' || sn == 0 ||
                si >= sn)
                return usage_err("--shard '%s': I/N with 0 <= I < N", v);
            o.shard_i = si;
            o.shard_n = sn;
        } else if (!strcmp(a, "--train")) {
            if (parse_u32(v, &o.n_train, 1) < 0)
                return usage_err("--train '%s': a count or 'all'", v);
        } else if (!strcmp(a, "--test")) {
            if (parse_u32(v, &o.n_test, 1) < 0)
                return usage_err("--test '%s': a count or 'all'", v);
        } else if (!strcmp(a, "--batch")) {
            if (parse_u32(v, &u, 0) < 0 || u == 0 || u > 4096)
                return usage_err("--batch '%s': 1..4096", v);
            o.batch = (int)u;
        } else if (!strcmp(a, "--forward-batch")) {
            if (parse_u32(v, &u, 0) < 0 || u == 0 || u > 4096)
                return usage_err("--forward-batch '%s': 1..4096", v);
            o.forward_batch = (int)u;
        } else if (!strcmp(a, "--threads")) {
            if (parse_u32(v, &u, 0) < 0 || u > 1024)
                return usage_err("--threads '%s': 0..1024", v);
            o.threads = (int)u;
        } else if (!strcmp(a, "--cls")) {
            if (!strcmp(v, "pool"))
                o.cls = H2T_CLS_POOL;
            else if (!strcmp(v, "only"))
                o.cls = H2T_CLS_ONLY;
            else if (!strcmp(v, "apart"))
                o.cls = H2T_CLS_APART;
            else
                return usage_err("--cls '%s': pool, only or apart", v);
        } else if (!strcmp(a, "--cls-token")) {
            if (strcmp(v, "auto") && strcmp(v, "first"))
                return usage_err("--cls-token '%s': auto or first", v);
            o.cls_first = !strcmp(v, "first");
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32"))
                o.dtype = H2T_DTYPE_F32;
            else if (!strcmp(v, "f16"))
                o.dtype = H2T_DTYPE_F16;
            else
                return usage_err("--dtype '%s': f32 or f16", v);
        } else if (!strcmp(a, "--scale")) {
            h2t_prep pp = {0, 0, 0, 0, 0};
            if (h2t_prep_parse(v, &pp) < 0)
                return usage_err("--scale '%s': LO,HI (two different numbers)", v);
            o.has_scale = 1;
            o.scale_lo = pp.lo;
            o.scale_hi = pp.hi;
        } else
            return usage_err("unknown option '%s'", a);
    }
    if (!store_dir && !plan_only)
        return usage_err("%s is required", "--store DIR");
    if (!o.model_path)
        return usage_err("%s is required", "--model M.onnx");
    if (!o.data_spec)
        return usage_err("%s is required", "--data SPEC");
    if (json)
        o.progress = 0;
    if (mpi) {
        if (o.shard_n)
            return usage_err("%s: --mpi takes the shard from the rank (I/N = rank/size)",
                             "--shard");
        if (plan_only || json)
            return usage_err("%s does not go with --mpi", plan_only ? "--plan" : "--json");
        return h2t_extract_mpi_run(&o, store_dir);
    }

    char eb[1024];
    h2t_extract_plan *p = NULL;
    h2t_store *st = NULL;
    int rc = h2t_extract_plan_create(&o, &p);
    if (rc < 0) {
        fprintf(stderr, "h2tdb extract: %s\n", h2t_err_format(rc, eb, sizeof eb));
        return 1;
    }
    if (plan_only) {
        print_plan(p);
        h2t_extract_plan_destroy(p);
        return 0;
    }
    if (!json)
        print_skipped(p, 3);
    if ((rc = h2t_store_open(store_dir, H2T_STORE_CREATE, &st)) < 0) {
        fprintf(stderr, "h2tdb extract: %s: %s\n", store_dir, h2t_err_format(rc, eb, sizeof eb));
        h2t_extract_plan_destroy(p);
        return 1;
    }
    uint32_t nl;
    uint64_t td;
    h2t_extract_plan_layers(p, &nl, &td);
    if (!json && isatty(STDERR_FILENO))
        fprintf(stderr, "h2tdb extract: %u layers, %llu features per sample\n", nl,
                (unsigned long long)td);
    h2t_extract_result r;
    rc = h2t_extract_plan_run(p, st, &r);
    h2t_store_close(st);
    h2t_extract_plan_destroy(p);
    if (rc < 0) {
        fprintf(stderr, "h2tdb extract: %s\n", h2t_err_format(rc, eb, sizeof eb));
        if (r.extraction && r.computed + r.resumed_from > 0)
            fprintf(stderr,
                    "h2tdb extract: extraction %u holds %u of %u samples; run the same "
                    "command again to resume\n",
                    r.extraction, r.resumed_from + r.computed, r.n_samples);
        return 1;
    }
    double rate = r.t_total > 0 ? r.computed / r.t_total : 0;
    double outside = r.t_total > 0 ? (r.t_total - r.t_forward) / r.t_total : 0;
    double cpu_outside = r.cpu_total > 0 ? (r.cpu_total - r.cpu_forward) / r.cpu_total : 0;
    if (json) {
        printf("{\"extraction\": %u, \"source\": %u, \"model\": %u, \"reused\": %s, "
               "\"resumed_from\": %u, \"computed\": %u, \"samples\": %u, \"layers\": %u, "
               "\"derived_layers\": %u, "
               "\"total_dim\": %llu, \"seconds\": %.3f, \"images_per_s\": %.2f, "
               "\"setup_s\": %.3f, \"forward_s\": %.3f, \"read_s\": %.3f, \"pool_s\": %.3f, "
               "\"write_s\": %.3f, \"exposed_s\": %.3f, "
               "\"outside_forward\": %.4f, \"cpu_s\": %.3f, \"cpu_forward_s\": %.3f, "
               "\"cpu_pool_s\": %.3f, \"cpu_read_s\": %.3f, \"cpu_write_s\": %.3f, "
               "\"cpu_outside_forward\": %.4f, \"config\": ",
               r.extraction, r.source, r.model, r.reused ? "true" : "false", r.resumed_from,
               r.computed, r.n_samples, r.n_layers, r.n_derived, (unsigned long long)r.total_dim,
               r.t_total, rate, r.t_setup, r.t_forward, r.t_read, r.t_pool, r.t_write, r.t_exposed,
               outside, r.cpu_total, r.cpu_forward, r.cpu_pool, r.cpu_read, r.cpu_write,
               cpu_outside);
        json_str(r.config);
        printf("}\n");
    } else if (r.reused) {
        printf("extraction %u: already complete (%u samples, %u layers, %llu features); "
               "nothing to do\n",
               r.extraction, r.n_samples, r.n_layers, (unsigned long long)r.total_dim);
    } else {
        printf("extraction %u: %u samples (%u computed now%s), %u layers (%u from their "
               "inputs' features), %llu features per sample\n",
               r.extraction, r.n_samples, r.computed, r.resumed_from ? ", resumed" : "", r.n_layers,
               r.n_derived, (unsigned long long)r.total_dim);
        printf("  %.1f s, %.1f images/s; setup %.2f s, forward %.1f s, pooling %.2f s; "
               "read+preprocess %.2f s and store %.2f s beside the forward pass, %.2f s of it "
               "not overlapped (%.1f%% outside the forward pass)\n",
               r.t_total, rate, r.t_setup, r.t_forward, r.t_pool, r.t_read, r.t_write, r.t_exposed,
               100 * outside);
        printf("  CPU %.1f s: forward %.1f s, pooling %.2f s (%.1f%% outside the forward "
               "pass)\n",
               r.cpu_total, r.cpu_forward, r.cpu_pool, 100 * cpu_outside);
    }
    return 0;
}
