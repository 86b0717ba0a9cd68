/*
 * extract/prune.h - the part of an ONNX backbone that a set of tensors needs: the graph cut
 * after the tensors (every node none of them depends on dropped, with the initializers and
 * inputs only those nodes read), and what that part costs against the whole graph.
 *
 * A trained head reads a few layers; applying it to new images needs only the nodes those
 * layers depend on (a Head2Toe head that kept early layers skips most of the backbone). The
 * pruned model is an ONNX model of its own: load it (h2t_model_load_mem) and run it like any
 * other, its graph outputs being the asked tensors, or write it out.
 *
 *     FILE *f = fopen("mobilenet_v2.onnx", "rb");  // or any bytes of an ONNX model
 *     static char buf[1 << 20];
 *     size_t len = f ? fread(buf, 1, sizeof(buf), f) : 0;
 *     const char *keep[] = {"conv1", "block3"};
 *     void *pruned = NULL;
 *     size_t plen = 0;
 *     if (h2t_onnx_prune(buf, len, "mobilenet_v2.onnx", keep, 2, &pruned, &plen) == 0) {
 *         h2t_model *m = NULL;
 *         if (h2t_model_load_mem(pruned, plen, "pruned", &m) == 0) {
 *             h2t_model_cost c;
 *             h2t_model_cost_get(m, keep, 2, &c); // c.macs_needed == c.macs: all is needed
 *             h2t_model_destroy(m);
 *         }
 *         free(pruned);
 *     }
 *     if (f) fclose(f);
 */
#ifndef H2T_EXTRACT_PRUNE_H
#define H2T_EXTRACT_PRUNE_H

#include <stddef.h>

#include "extract/model.h"

/* The ONNX model in buf (len bytes, BORROWED; what names it in errors) cut to what the n
 * tensors (graph inputs or node outputs, by name; BORROWED) need: the nodes they depend on in
 * their original order, the initializers and graph inputs those nodes read (the float input
 * is always kept), value_info of the kept tensors, and the n tensors as the graph outputs
 * (a repeated name once), in the asked order. Opsets, metadata and the other model fields are
 * kept as they are. *out is OWNED by the caller (free()). Errors: H2T_ECORRUPT (not an ONNX
 * model), H2T_ENOTFOUND (a name that is no graph input and no node output: detail names it),
 * H2T_EINVAL (n < 1), H2T_EUNSUPPORTED (a node holding a subgraph: If, Loop, Scan),
 * H2T_ENOMEM. */
int h2t_onnx_prune(const void *buf, size_t len, const char *what, const char *const *tensors, int n,
                   void **out, size_t *out_len);

/* The compute of a loaded model, whole and the part that n tensors need (n = 0: the whole).
 * MACs count the multiply-accumulates of one sample in the products (Conv, ConvTranspose,
 * Gemm, MatMul) from the inferred shapes; other operators count as nodes only. A dimension
 * that follows the batch counts once (a batch folded with another axis, N*heads, counts the
 * other factor as 1). */
typedef struct h2t_model_cost {
    int nodes, nodes_needed;
    double macs, macs_needed;
} h2t_model_cost;

/* Errors: H2T_ENOTFOUND (a tensor name the model does not have: detail names it). */
int h2t_model_cost_get(const h2t_model *m, const char *const *tensors, int n, h2t_model_cost *out);

#endif
