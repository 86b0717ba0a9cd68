/*
 * bench/prune.c - how much of a backbone a head needs: for the tensors at 1/4, 1/2, 3/4 and
 * the end of each model's tensor list, the nodes and multiply-accumulates per sample that the
 * tensor depends on (h2t_model_cost_get) against the whole model, and the size of the model
 * cut to it (h2t_onnx_prune), loaded back to check it computes the same count.
 *
 *     build/bench/prune [MODEL.onnx ...]   (default: models/mobilenet_v2.onnx, resnet18,
 *                                           resnet50; a missing file is skipped)
 *
 * Counts, not times: the same on every machine.
 */
#include "extract/prune.h"
#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n)) &&
            fread(b, 1, (size_t)n, f) != (size_t)n) {
            free(b);
            b = NULL;
        }
        *len = n > 0 ? (size_t)n : 0;
    }
    fclose(f);
    return b;
}

static int report(const char *path)
{
    size_t len = 0;
    char *buf = read_file(path, &len);
    if (!buf) {
        printf("%s: not found, skipped\n", path);
        return 0;
    }
    h2t_model *m = NULL;
    h2t_model_cost whole;
    int rc = h2t_model_load_mem(buf, len, path, &m);
    if (rc == 0)
        rc = h2t_model_cost_get(m, NULL, 0, &whole);
    if (rc < 0) {
        fprintf(stderr, "%s\n", h2t_err_detail());
        free(buf);
        h2t_model_destroy(m);
        return 1;
    }
    printf("%s: %d nodes, %.1f M MACs per sample, %zu bytes\n", path, whole.nodes, whole.macs / 1e6,
           len);
    int nt = h2t_model_n_tensors(m);
    for (int q = 1; q <= 4 && rc == 0; q++) {
        const char *keep[] = {h2t_model_tensor(m, nt * q / 4 - 1)->name};
        h2t_model_cost need, cut = {0};
        void *pruned = NULL;
        size_t plen = 0;
        h2t_model *pm = NULL;
        if ((rc = h2t_model_cost_get(m, keep, 1, &need)) == 0 &&
            (rc = h2t_onnx_prune(buf, len, path, keep, 1, &pruned, &plen)) == 0 &&
            (rc = h2t_model_load_mem(pruned, plen, "pruned", &pm)) == 0)
            rc = h2t_model_cost_get(pm, NULL, 0, &cut);
        if (rc == 0)
            printf("  %d/4 %-50s %4d nodes %8.1f M MACs (%5.1f%%), pruned model %10zu bytes%s\n", q,
                   keep[0], need.nodes_needed, need.macs_needed / 1e6,
                   100.0 * need.macs_needed / (whole.macs > 0 ? whole.macs : 1), plen,
                   cut.macs == need.macs_needed && cut.nodes == need.nodes_needed
                       ? ""
                       : "  (pruned model's count differs!)");
        else
            fprintf(stderr, "%s\n", h2t_err_detail());
        h2t_model_destroy(pm);
        free(pruned);
    }
    h2t_model_destroy(m);
    free(buf);
    return rc < 0;
}

int main(int argc, char **argv)
{
    static const char *const defaults[] = {"models/mobilenet_v2.onnx", "models/resnet18.onnx",
                                           "models/resnet50.onnx"};
    int bad = 0;
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            bad |= report(argv[i]);
    else
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
            bad |= report(defaults[i]);
    return bad;
}
