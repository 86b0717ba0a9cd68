/*
 * tests/fuzz/fuzz_data.c - libFuzzer target: arbitrary bytes as the files of a data source,
 * opened and every sample read: the first byte picks the reader (npy images, npy images +
 * labels, IDX train images + labels, a folder holding one PNG or JPEG), the rest is the file.
 * Built and run by tests/fuzz/run.sh data.
 */
#include "common/err.h"
#include "common/log.h"
#include "extract/extract.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    h2t_log_set_level(H2T_LOG_LOFF);
    const char *base = getenv("H2T_FUZZ_DIR"); /* run.sh removes it afterwards */
    snprintf(dir, sizeof(dir), "%s/data", base ? base : "/tmp/h2t-fuzz");
    mkdir(dir, 0755);
    return 0;
}

static void put(const char *name, const uint8_t *d, size_t n)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        abort();
    if (n)
        fwrite(d, 1, n, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int kind = data[0] % 4;
    data++;
    size--;
    char spec[4300];
    /* the second file (labels) is the tail after a split point given by the next byte */
    size_t cut = size ? (size_t)data[0] * size / 256 : 0;
    switch (kind) {
    case 0:
        put("x.npy", data, size);
        snprintf(spec, sizeof(spec), "npy:%s/x.npy", dir);
        break;
    case 1:
        put("x.npy", data, cut);
        put("y.npy", data + cut, size - cut);
        snprintf(spec, sizeof(spec), "npy:%s/x.npy,%s/y.npy", dir, dir);
        break;
    case 2: {
        char sub[4200];
        snprintf(sub, sizeof(sub), "%s/idx", dir);
        mkdir(sub, 0755);
        put("idx/train-images-idx3-ubyte", data, cut);
        put("idx/train-labels-idx1-ubyte", data + cut, size - cut);
        snprintf(spec, sizeof(spec), "idx:%s/idx", dir);
        break;
    }
    default: {
        char sub[4200];
        snprintf(sub, sizeof(sub), "%s/f", dir);
        mkdir(sub, 0755);
        snprintf(sub, sizeof(sub), "%s/f/c", dir);
        mkdir(sub, 0755);
        put(size && data[0] & 1 ? "f/c/a.jpg" : "f/c/a.png", data, size);
        snprintf(spec, sizeof(spec), "folder:%s/f", dir);
        break;
    }
    }
    h2t_data *d = NULL;
    if (h2t_data_open(spec, &d) == 0) {
        h2t_data_check(d);
        const h2t_data_info *in = h2t_data_info_get(d);
        for (uint32_t i = 0; i < in->n_samples && i < 64; i++) {
            h2t_image im;
            h2t_data_read(d, i, &im);
        }
        h2t_data_close(d);
    }
    /* a folder image of the other kind must not be picked up next time */
    char p[4200];
    snprintf(p, sizeof(p), "%s/f/c/a.jpg", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/f/c/a.png", dir);
    unlink(p);
    return 0;
}
