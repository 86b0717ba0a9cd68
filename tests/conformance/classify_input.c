/*
 * tests/conformance/classify_input.c - the preprocessed input of an exported classifier, for
 * tests/conformance/classify_ort.sh: samples of a data source, selected as an extraction
 * selects them, preprocessed as the extraction did (extract/extract.h: the model's input size,
 * its h2tdb.preprocess scale), written as raw little-endian float32 N x C x H x W.
 *
 *     build/conformance/classify_input MODEL.onnx idx:DIR TRAIN TEST FIRST COUNT OUT.f32
 *
 * Selects the first TRAIN train and TEST test samples (h2t_data_select), writes samples
 * FIRST .. FIRST + COUNT - 1 of the selection (fewer at its end) and prints N,C,H,W.
 * Exit status 0 on success, 1 on any error (named on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "extract/extract.h"

static int fail(int rc)
{
    fprintf(stderr, "classify_input: %s: %s\n", h2t_strerror(rc), h2t_err_detail());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: classify_input MODEL.onnx SPEC TRAIN TEST FIRST COUNT OUT.f32\n");
        return 2;
    }
    uint32_t n_train = (uint32_t)strtoul(argv[3], NULL, 10);
    uint32_t n_test = (uint32_t)strtoul(argv[4], NULL, 10);
    uint32_t first = (uint32_t)strtoul(argv[5], NULL, 10);
    uint32_t count = (uint32_t)strtoul(argv[6], NULL, 10);
    h2t_model *m = NULL;
    int rc = h2t_model_load(argv[1], &m);
    if (rc < 0)
        return fail(rc);
    const h2t_tensor_info *in = h2t_model_input(m);
    h2t_prep prep = {.c = (uint32_t)in->shape[1],
                     .h = (uint32_t)in->shape[2],
                     .w = (uint32_t)in->shape[3],
                     .lo = -1,
                     .hi = 1};
    h2t_model_destroy(m);
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return 1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
        return 1;
    fclose(f);
    char meta[256];
    int found = 0;
    if ((rc = h2t_prep_model_metadata(buf, (size_t)len, "h2tdb.preprocess", meta, sizeof meta,
                                      &found)) < 0)
        return fail(rc);
    free(buf);
    if (found && (rc = h2t_prep_parse(meta, &prep)) < 0)
        return fail(rc);
    h2t_data *d = NULL;
    if ((rc = h2t_data_open(argv[2], &d)) < 0 || (rc = h2t_data_select(d, n_train, n_test)) < 0)
        return fail(rc);
    const h2t_data_info *di = h2t_data_info_get(d);
    uint32_t end = first + count < di->n_samples ? first + count : di->n_samples;
    size_t per = (size_t)prep.c * prep.h * prep.w;
    float *x = malloc(per * sizeof(float));
    FILE *o = fopen(argv[7], "wb");
    if (!x || !o)
        return 1;
    for (uint32_t i = first; i < end; i++) {
        h2t_image img;
        if ((rc = h2t_data_read(d, i, &img)) < 0 || (rc = h2t_prep_image(&prep, &img, x)) < 0)
            return fail(rc);
        if (fwrite(x, sizeof(float), per, o) != per)
            return 1;
    }
    if (fclose(o) != 0)
        return 1;
    printf("%u,%u,%u,%u\n", end > first ? end - first : 0, prep.c, prep.h, prep.w);
    free(x);
    h2t_data_close(d);
    return 0;
}
