/*
 * tests/fuzz/fuzz_onnx.c - libFuzzer target: arbitrary bytes as an ONNX model through the
 * loader and shape inference (h2t_model_load_mem), and the layer table of a model that loads.
 * No executor: a model may declare activations of any size up to H2T_ONNX_MAX_ELEMS, and
 * planning their memory is the executor's job, not the loader's. Built and run by
 * tests/fuzz/run.sh onnx.
 */
#include "common/err.h"
#include "common/log.h"
#include "extract/model.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    h2t_log_set_level(H2T_LOG_LOFF);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    h2t_model *m = NULL;
    if (h2t_model_load_mem(data, size, "fuzz.onnx", &m) != 0)
        return 0;
    int n = h2t_model_n_tensors(m);
    for (int i = 0; i < n; i++) {
        const h2t_tensor_info *t = h2t_model_tensor(m, i);
        if (!t || !t->name)
            abort();
    }
    h2t_model_destroy(m);
    return 0;
}
