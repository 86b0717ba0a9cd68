#include "common/err.h"
#include "solver/solver.h"
#include "tests/test.h"

static void set_layer(h2t_layer_info *l, const char *name, const char *op, uint32_t rank,
                      uint32_t c, uint32_t h, uint32_t w)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    snprintf(l->op, sizeof(l->op), "%s", op);
    l->rank = rank;
    l->shape[0] = c;
    l->shape[1] = h;
    l->shape[2] = w;
    l->dim = c;
}

/* The linear probe reads the pooled pre-logits, not the model's own classifier. */
TEST(solver_probe_layer_is_the_prelogits)
{
    h2t_layer_info L[6];
    h2t_extraction e = {.n_layers = 6, .layers = L};
    set_layer(&L[0], "conv", "Conv", 4, 32, 56, 56);
    set_layer(&L[1], "out_relu", "Clip", 4, 1280, 7, 7);
    set_layer(&L[2], "average_pooling2d_1", "AveragePool", 4, 1280, 1, 1); /* MobileNetV2 */
    set_layer(&L[3], "dense_1", "Gemm", 2, 256, 0, 0);
    set_layer(&L[4], "dense_3/linear", "Gemm", 2, 5, 0, 0);
    set_layer(&L[5], "dense_3", "Softmax", 2, 5, 0, 0);
    ASSERT_EQ(h2t_solver_probe_layer(&e), 2);
    /* torchvision ResNet: GlobalAveragePool -> Flatten -> Gemm (1000 logits) */
    set_layer(&L[2], "/avgpool/GlobalAveragePool_output_0", "GlobalAveragePool", 4, 2048, 1, 1);
    set_layer(&L[3], "logits", "Gemm", 2, 1000, 0, 0);
    e.n_layers = 4;
    ASSERT_EQ(h2t_solver_probe_layer(&e), 2);
    /* a strided AveragePool that leaves a map is not the pooled representation */
    set_layer(&L[2], "pool", "AveragePool", 4, 64, 3, 3);
    ASSERT_EQ(h2t_solver_probe_layer(&e), 3);
    /* no pooling at all: the last layer */
    e.n_layers = 2;
    ASSERT_EQ(h2t_solver_probe_layer(&e), 1);
}
