/*
 * solver/layers.c - which layer a linear probe reads when the job names none.
 *
 * A linear probe means the backbone's final representation: the pooled pre-logits of a CNN,
 * not the logits of whatever classifier the exported model ends with (nsfwjs's MobileNetV2 ends
 * in a 5-class softmax; torchvision's ResNets in 1000 ImageNet logits). That is the last layer
 * produced by a global pooling (GlobalAveragePool, GlobalMaxPool, ReduceMean) or whose map is
 * spatially 1x1 (an AveragePool over the whole map); when the graph has none (a plain MLP,
 * tokens), the last layer.
 */
#include "solver/solver.h"

#include <string.h>

uint32_t h2t_solver_probe_layer(const h2t_extraction *e)
{
    if (!e || e->n_layers == 0)
        return 0;
    for (uint32_t l = e->n_layers; l-- > 0;) {
        const h2t_layer_info *li = &e->layers[l];
        if (!strcmp(li->op, "GlobalAveragePool") || !strcmp(li->op, "GlobalMaxPool") ||
            !strcmp(li->op, "ReduceMean"))
            return l;
        if (li->rank == 4 && li->shape[1] == 1 && li->shape[2] == 1 &&
            (!strcmp(li->op, "AveragePool") || !strcmp(li->op, "MaxPool")))
            return l;
    }
    return e->n_layers - 1;
}
