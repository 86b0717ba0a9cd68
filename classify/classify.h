/*
 * classify/classify.h - a finished job's head applied to new images, and the same classifier
 * written as one ONNX file.
 *
 * A classifier is built from a store (read only: nothing is ever written), a finished job and
 * the ONNX file of the job's extraction. It holds the part of the backbone the head needs (the
 * graph cut after the kept layers' tensors by h2t_onnx_prune: tensors no kept feature depends on
 * are never computed), each kept layer's pooling as the extraction planned it
 * (h2t_layer_pool_plan with the extraction's target size and class-token mode, applied with
 * h2t_pool_apply_sample), the extraction's preprocessing (the stored model record's
 * "scale=lo,hi", the model's input size), and the head (h2t_result_proba: each layer's kept
 * columns L2-normalised over the subset, then softmax(W x + b)). On a sample the store holds, the
 * probabilities equal those of the stored features (h2tdb predict) up to float rounding: a layer
 * the extraction derived from others (extract.c, "Derived layers") is pooled here from its own
 * tensor, and f16 stores round their features.
 *
 *     h2t_store *st;
 *     if (h2t_store_open("feats", H2T_STORE_RDONLY, &st) < 0)
 *         return;
 *     h2t_classifier_opts o;
 *     h2t_classifier_opts_init(&o);
 *     o.model_path = "models/mobilenet_v2.onnx"; // NULL: models_dir / the stored model name
 *     h2t_classifier *c;
 *     if (h2t_classifier_open(st, 3, &o, &c) == 0) {
 *         const h2t_classifier_info *ci = h2t_classifier_info_get(c);
 *         float *prob = malloc(ci->n_classes * sizeof(float));
 *         uint8_t png[] = {0}; // the bytes of a PNG or JPEG file
 *         if (prob && h2t_classifier_run_encoded(c, png, sizeof png, "x.png", prob) == 0)
 *             printf("%s %.3f\n", ci->class_names[0], prob[0]);
 *         free(prob);
 *         h2t_classifier_export_onnx(c, "head.onnx"); // the whole classifier as ONNX
 *         h2t_classifier_close(c);
 *     }
 *     h2t_store_close(st);
 *
 * Threads: a classifier is used by one thread at a time (it owns one executor).
 */
#ifndef H2T_CLASSIFY_CLASSIFY_H
#define H2T_CLASSIFY_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#include "extract/extract.h"
#include "storage/store.h"

typedef struct h2t_classifier h2t_classifier;

typedef struct h2t_classifier_opts {
    /* The extraction's ONNX file (BORROWED). NULL: models_dir/<the stored model name>. */
    const char *model_path;
    const char *models_dir; /* NULL = "models"; BORROWED */
    /* Images whose decoded width x height is above this are refused (H2T_ETOOBIG naming the
     * image); 0 = 64 Mi pixels. */
    uint64_t max_pixels;
} h2t_classifier_opts;

typedef struct h2t_classifier_info {
    uint64_t job;
    uint32_t extraction;
    char task[128];
    char model_name[128];
    uint32_t method;    /* H2T_METHOD_* */
    uint32_t n_classes; /* the task's classes */
    const char *const *class_names;
    uint32_t n_layers;    /* layers the head reads (kept features > 0) */
    uint32_t n_kept;      /* features the head reads */
    uint32_t c, h, w;     /* the model's input per sample */
    float lo, hi;         /* pixel 0 -> lo, 255 -> hi */
    char preprocess[256]; /* the stored model record's preprocessing text */
    char config[512];     /* the extraction's identity text */
    /* compute per sample (h2t_model_cost_get): the whole backbone and the part the head needs */
    double macs, macs_needed;
    int nodes, nodes_needed;
} h2t_classifier_info;

void h2t_classifier_opts_init(h2t_classifier_opts *o);

/* Build the classifier of finished job `job` of store st (read only; st only used during the
 * call). Checks, each error naming the input: the job exists (H2T_ENOTFOUND) and is DONE
 * (H2T_ESTATE: its state), its task and extraction exist, the model file is found (H2T_ENOTFOUND
 * naming the path) and is the extraction's (its SHA-256 equals the stored model's, else
 * H2T_ESTATE "has changed"), the head's layers are the extraction's layers by name and pooled
 * dim (H2T_EINVAL "a head for another model"). Other errors: those of h2t_model_load_mem,
 * h2t_onnx_prune, h2t_exec_create, H2T_ENOMEM. *out OWNED: h2t_classifier_close. */
int h2t_classifier_open(h2t_store *st, uint64_t job, const h2t_classifier_opts *o,
                        h2t_classifier **out);
void h2t_classifier_close(h2t_classifier *c); /* NULL is a no-op */
/* BORROWED: valid until h2t_classifier_close. */
const h2t_classifier_info *h2t_classifier_info_get(const h2t_classifier *c);

/* Classify one image (uint8 H x W x C, any size: resized as the extraction did; or a float32
 * C x H x W tensor of the model's input shape). prob gets n_classes probabilities. `what`
 * names the image in errors. Errors: H2T_ESHAPE (a float tensor of another shape, a channel
 * count the model cannot take), H2T_ETOOBIG (more pixels than opts.max_pixels), the
 * executor's. */
int h2t_classifier_run(h2t_classifier *c, const h2t_image *img, const char *what, float *prob);
/* The same for the bytes of a PNG or JPEG file (h2t_image_decode). Errors: H2T_ECORRUPT (does
 * not decode: names `what`), and h2t_classifier_run's. */
int h2t_classifier_run_encoded(h2t_classifier *c, const void *buf, size_t len, const char *what,
                               float *prob);

/* Write the classifier as one self-contained ONNX model to path, atomically (path.tmp, then
 * rename): input the model's image tensor (N x C x H x W, preprocessed as info.lo/hi say),
 * output "probabilities" (N x n_classes), the probabilities h2t_result_proba computes (a knn
 * head: each class's share of the k votes, and a second output "label", N int64: the vote's
 * class with its tie rule). The pruned backbone; per kept layer its pooling as standard
 * operators (maps: GlobalAveragePool / AveragePool with the layer's window, Transpose to the
 * (H, W, C) order; tokens: Gather of the class token or of the pooled tokens, Reshape to
 * windows, ReduceMean; Flatten), Gather of the kept indices, the per-layer L2
 * re-normalisation (the sum of squares as a MatMul with ones, Sqrt, Add of the smallest normal
 * float so a zero subset stays zero, Div), Concat, then Gemm and Softmax (linear heads: linear,
 * all, head2toe, ncm, layer, auto's winner) or the knn vote (MatMul with the stored rows,
 * TopK, Gather of one-hot labels, ReduceSum, ArgMax; classify/export_onnx.c). Metadata props:
 * h2tdb.classes (JSON array), h2tdb.preprocess (scale=lo,hi), h2tdb.preprocess_full,
 * h2tdb.extraction (the identity text), h2tdb.job, h2tdb.task, h2tdb.model_sha256. Errors:
 * H2T_EUNSUPPORTED (a layer whose form has no ONNX pooling here, named; a knn head on a model
 * of opset below 11), H2T_EIO (naming the file; nothing is left at path), H2T_ENOMEM. */
int h2t_classifier_export_onnx(const h2t_classifier *c, const char *path);
/* Write len bytes to path atomically (path.tmp, fsync, rename; nothing left at path.tmp on
 * failure), as h2t_classifier_export_onnx does. Errors: H2T_EIO naming the file. */
int h2t_classify_write_file(const char *path, const void *bytes, size_t len);
/* The same ONNX model's bytes in memory: *out OWNED (free()). Errors as above but H2T_EIO. */
int h2t_classifier_onnx(const h2t_classifier *c, void **out, size_t *len);

#endif
