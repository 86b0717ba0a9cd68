/*
 * tests/fuzz/fuzz_sel.c - libFuzzer target: arbitrary text as a task selection (SEL, see
 * server/server.h) over 1000 samples with a fuzzed split, with a small cap, so that the cap,
 * the ranges and the parser's error paths are all reached. Built and run by run.sh sel.
 */
#include "common/err.h"
#include "server/server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t split[1000];
    for (int i = 0; i < 1000; i++)
        split[i] = size ? (data[i % size] >> 3) & 1 : 0;
    char *sel = malloc(size + 1);
    if (!sel)
        return 0;
    memcpy(sel, data, size);
    sel[size] = 0;
    uint32_t *ids = NULL, n = 0;
    uint32_t avail = size ? 1 + data[0] * 1000u / 256 : 1000;
    if (h2t_srv_sel_resolve(sel, "--train", split, avail, 5000, &ids, &n) == 0) {
        if (n > 5000)
            abort();
        for (uint32_t i = 0; i < n; i++)
            if (ids[i] >= avail)
                abort();
        free(ids);
    }
    free(sel);
    return 0;
}
