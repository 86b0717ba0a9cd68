/*
 * extract/extract.h - data sources, preprocessing, Head2Toe pooling and the one-pass
 * extraction driver: every selected tensor of an ONNX backbone, pooled per docs/head2toe.md, for
 * every sample of a dataset, written to the store batch by batch (resumable).
 *
 *     h2t_extract_opts o;
 *     h2t_extract_opts_init(&o);
 *     o.model_path = "models/mobilenet_v2.onnx";
 *     o.data_spec = "idx:/usr/share/datasets/fashion-mnist";
 *     o.n_train = 1000; // the first 1000 train and the first 2000 test images
 *     o.n_test = 2000;
 *     h2t_extract_plan *p;
 *     if (h2t_extract_plan_create(&o, &p) < 0) // checks model and data; writes nothing
 *         return;
 *     h2t_store *st;
 *     if (h2t_store_open("feats", H2T_STORE_CREATE, &st) == 0) {
 *         h2t_extract_result r;
 *         h2t_extract_plan_run(p, st, &r); // reuses, resumes or runs the extraction
 *         h2t_store_close(st);
 *     }
 *     h2t_extract_plan_destroy(p);
 *
 * Data sources (spec strings):
 *   idx:DIR       MNIST-style IDX files, gzipped or not (detected by content):
 *                 train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 *                 t10k-labels-idx1-ubyte, each optionally ".gz" (also the "train-images.idx3-
 *                 ubyte" spelling). Train samples first, then test; the split is recorded.
 *                 Class names: DIR/classes.txt (one per line) if present; else the Fashion-MNIST
 *                 names when DIR's base name contains "fashion"; else "0".."K-1".
 *   folder:DIR    one sub-folder per class (class names = folder names, sorted bytewise),
 *                 *.png / *.jpg / *.jpeg inside (sorted bytewise, other files ignored);
 *                 every sample is in the train split.
 *   npy:IMG.npy[,LAB.npy]  uint8 images N x H x W [x C] (NHWC, C = 1, 3 or 4), or float32
 *                 N x C x H x W used as-is (no resize, no scaling: it must match the model's
 *                 input shape). Labels: any integer dtype, shape (N,); without labels every
 *                 sample has label 0 of one class "none". Class names "0".."max label".
 * Content hash of a source: SHA-256 over the decompressed IDX payloads / the npy files / every
 * (class, file name, file bytes) of a folder. The same bytes give the same source record.
 *
 * Sample selection: h2t_data_select keeps the first n_train train samples and the first
 * n_test test samples (in source order) and renumbers them 0.. (train first). The selected set
 * is a source of its own (its name and URI say "[train:N,test:M]", its hash covers the
 * selection); sample ids in the store are its sample numbers. `limit` instead keeps the
 * registered source whole and extracts only its first `limit` samples (ids = source ids).
 *
 * Preprocessing (uint8 images): bilinear resize to the model's H x W with half-pixel centres
 * (align_corners = false: src = (dst + 0.5) * in / out - 0.5, clamped to [0, in - 1]; the same
 * as TF2 tf.image.resize and PyTorch interpolate(align_corners=False) without antialias), no
 * crop; channels: gray -> replicated to 3 when the model takes 3, RGB -> gray by
 * 0.299 R + 0.587 G + 0.114 B when it takes 1, alpha dropped; then v in [0, 255] maps linearly
 * to [lo, hi]. [lo, hi] comes from the ONNX metadata_props key "h2tdb.preprocess"
 * ("scale=lo,hi"), else [-1, 1]; opts.scale overrides both.
 *
 * Pooling (docs/head2toe.md, "Features"; one target size T for every layer; per sample):
 *   4-D (C x H x W): C >= T: global average -> C. Else n = floor(sqrt(floor(T / C))),
 *       ph = floor(H / n), pw = floor(W / n); if ph or pw is 0: global average; else average
 *       windows ph x pw, stride ph x pw, no padding, trailing rows/columns dropped ->
 *       floor(H/ph) x floor(W/pw) x C features in (H, W, C) order. For H == W this is exactly
 *       the reference (p = floor(W / n)); for H != W each axis gets its own window so the grid
 *       stays about n x n (T stays approximate, never multiplied by the aspect ratio).
 *   3-D (L tokens x C): C >= T: mean over tokens -> C. Else p = int(L / (T / C)), T / C a true
 *       quotient in double (the reference code's arithmetic; the 4-D rule's T / C is an
 *       integer quotient); if p is 0: mean over tokens (as the 4-D fallback); else 1-D
 *       windows of p tokens, stride p, trailing tokens dropped -> floor(L / p) x C features in
 *       (token, C) order. A tensor whose token 0 is a class token (h2t_tensor_form.cls) follows
 *       opts.cls: POOL as above; ONLY: token 0's C values; APART: token 0's C values, then the
 *       rule over tokens 1..L-1.
 *   2-D (C): used as is.
 * The axes come from the tensor's form (model.h): sequence-first L x N x C tensors are pooled
 * as N x L x C; N x C x L ones (channels first) as tokens along L; channels-last maps
 * N x H x W x C with the 4-D rule over H, W; attention weights and heads (when asked for) as
 * NCHW maps with one channel per head.
 *
 * Layer rule (default, h2t_layers_choose): every node output of rank 2, 3 or 4 (batch
 * included) whose form is not NONE (a sample can be read from it), except the graph input,
 * attention weights and heads apart (q, k, v, scores, per-head values), and the outputs of ops
 * that only move, copy or describe values (their numbers are already in the tensor they come
 * from, or are not data): Reshape, Flatten, Identity, Dropout, Squeeze, Unsqueeze, Transpose,
 * Expand, Cast, Shape, Size, Constant, ConstantOfShape. Such a view IS taken when the data it
 * comes from was in no readable tensor (batch folded, heads apart): the first view with a
 * batch axis of, e.g., the attention output of torch's MultiheadAttention. Tensors of rank
 * 2..4 that are not taken for a reason other than being a view are listed (passed over, with
 * the reason). With opts.layers_regex (POSIX extended, matched against the tensor name,
 * unanchored) the regex replaces the op and attention exclusions; the rank, form and
 * graph-input rules still apply.
 *
 * The pass: the extraction's identity is SHA-256 of a canonical config string (model file
 * SHA-256, source hash, sample count, target size, dtype, layer rule, preprocessing, and the
 * forward batch when above 1, and "pool=derived" when derived layers are in use, see
 * opts.pool_direct, and "forms=v1 cls=MODE" when the layers or their pooling differ from the
 * first layer rule's: token tensors, other axis orders, a class-token mode). The same request twice
 * reuses the stored extraction (nothing recomputed); an interrupted one resumes from its
 * samples_done marker. Each batch (one store transaction): read + preprocess, run the model with
 * the selected tensors observed (by default one sample per forward pass, opts.threads samples at a
 * time, each on its own executor), pool each tensor in the executor's callback, then write all
 * layers, statistics and the marker together. Batches are pipelined (two buffers of pooled rows and
 * of input): the calling thread commits batch b and reads batch b + 2 while batch b + 1 runs on the
 * forward threads; commits stay strictly in batch order, one transaction each, every store
 * call on the calling thread. Features are bitwise the same for any batch or thread setting
 * at forward batch 1.
 *
 * Threads: a plan and a data handle are used by one thread at a time; the pass starts and
 * joins its own forward and worker threads (the data handle and the store are used only by
 * the calling thread).
 */
#ifndef H2T_EXTRACT_EXTRACT_H
#define H2T_EXTRACT_EXTRACT_H

#include "extract/model.h"
#include "storage/store.h"

#include <stddef.h>
#include <stdint.h>

/* ---- data sources ---- */
typedef struct h2t_data h2t_data;

/* Limits on what a source may declare, checked when it is opened (H2T_ECORRUPT naming the
 * file, line or sample): a class name in classes.txt is at most H2T_CLASS_NAME_MAX bytes (a
 * longer line is an error, never two classes), and labels are below H2T_DATA_CLASSES_MAX (one
 * damaged label must not make millions of classes). */
#define H2T_CLASS_NAME_MAX 510
#define H2T_DATA_CLASSES_MAX 65536u

enum { H2T_PIX_U8 = 0, H2T_PIX_F32 = 1 };

typedef struct h2t_data_info {
    const char *kind;         /* "idx", "folder", "npy"; static */
    char name[128];           /* default source name (DIR / file base name [+ selection]) */
    char uri[1024];           /* the spec [+ "[train:N,test:M]"] */
    uint8_t hash[32];         /* content hash (covers the selection) */
    uint32_t n_samples;       /* samples 0..n_samples-1: train first, then test */
    uint32_t n_train, n_test; /* split sizes */
    uint32_t n_classes;
    char **class_names;     /* n_classes strings */
    const uint32_t *labels; /* n_samples */
    const uint8_t *split;   /* n_samples H2T_SPLIT_* */
    int pixel;              /* H2T_PIX_*: uint8 HWC images or float32 CHW tensors */
    uint32_t c, h, w;       /* sample shape; 0 = varies per sample (folder) */
} h2t_data_info;

/* One sample as stored: uint8 H x W x C (C = 1, 3 or 4) or float32 C x H x W. */
typedef struct h2t_image {
    int pixel;
    uint32_t c, h, w;
    const void *data; /* BORROWED: valid until the next h2t_data_read on the handle */
} h2t_image;

/* Open and validate a source (every file's header, sizes, labels; hashes the content).
 * Errors: H2T_EINVAL (bad spec: names it), H2T_ENOTFOUND / H2T_EIO (missing or unreadable
 * file: named), H2T_ECORRUPT (bad IDX/npy magic, header, count, truncated file, labels count
 * != images count, not a PNG/JPEG: names the file), H2T_EUNSUPPORTED (dtype / layout),
 * H2T_ETOOBIG, H2T_ENOMEM. *out OWNED: h2t_data_close. */
int h2t_data_open(const char *spec, h2t_data **out);
void h2t_data_close(h2t_data *d);
/* BORROWED: valid until h2t_data_select or h2t_data_close. */
const h2t_data_info *h2t_data_info_get(const h2t_data *d);
/* Keep the first n_train train samples and the first n_test test samples (UINT32_MAX = all of
 * that split), renumbered train first. Errors: H2T_EINVAL (more than the split holds, or
 * nothing left: the detail gives the split sizes). */
int h2t_data_select(h2t_data *d, uint32_t n_train, uint32_t n_test);
/* Read sample i. Errors: H2T_EINVAL (i out of range), H2T_EIO / H2T_ECORRUPT (image file
 * unreadable or undecodable: named). */
int h2t_data_read(h2t_data *d, uint32_t i, h2t_image *out);
/* Check what can be checked of every sample without decoding its pixels: a folder image's
 * header (PNG IHDR, JPEG frame header: size, channels; a CMYK JPEG is refused). A no-op for
 * IDX and npy (their open checks everything). Damage inside an image's compressed data is
 * found only when h2t_data_read decodes it. Errors: as h2t_data_read, naming the image. */
int h2t_data_check(h2t_data *d);

/* Decode one PNG or JPEG image held in memory (buf, len BORROWED; what names it in errors) with
 * the decoders of folder sources (gray or RGB, 8 bits, alpha dropped). out->data points into
 * *pixels, OWNED by the caller (free(); NULL on failure). Errors: H2T_ECORRUPT (neither PNG
 * nor JPEG, or a broken or truncated image: names it), H2T_EUNSUPPORTED (CMYK, a size above
 * 65535), H2T_ENOMEM. */
int h2t_image_decode(const void *buf, size_t len, const char *what, h2t_image *out,
                     uint8_t **pixels);

/* ---- preprocessing ---- */
typedef struct h2t_prep {
    uint32_t c, h, w; /* model input per sample */
    float lo, hi;     /* uint8 0 -> lo, 255 -> hi */
} h2t_prep;

/* Parse "scale=lo,hi" (also "lo,hi"; whitespace-separated key=value tokens, unknown keys
 * refused) into p->lo/hi. Errors: H2T_EINVAL naming the text. */
int h2t_prep_parse(const char *text, h2t_prep *p);
/* One image into out (c*h*w floats, CHW). Errors: H2T_ESHAPE (float tensor whose shape is not
 * the model's; channel count that cannot be converted). */
int h2t_prep_image(const h2t_prep *p, const h2t_image *img, float *out);
/* "resize=bilinear-halfpixel size=CxHxW scale=lo,hi" into buf. */
void h2t_prep_describe(const h2t_prep *p, int pixel, char *buf, size_t n);
/* Value of metadata_props[key] of an ONNX model held in memory; *found = 0 when absent.
 * Errors: H2T_ECORRUPT (not an ONNX model), H2T_ETOOBIG (value longer than n - 1). */
int h2t_prep_model_metadata(const void *buf, size_t len, const char *key, char *out, size_t n,
                            int *found);

/* ---- pooling ---- */
enum {
    H2T_POOL_FLAT = 0,  /* 2-D: as is */
    H2T_POOL_GAP = 1,   /* 4-D: global average over H, W */
    H2T_POOL_GRID = 2,  /* 4-D: ph x pw windows */
    H2T_POOL_TMEAN = 3, /* 3-D: mean over tokens [t0, h) */
    H2T_POOL_TWIN = 4,  /* 3-D: windows of ph tokens from t0 */
    H2T_POOL_CLS = 5,   /* 3-D: the class token (token 0) only */
};

/* How token 0 of a token tensor that carries a class token is pooled (the reference's
 * cls_token_pool: normal, only_cls, nopool_cls). */
enum {
    H2T_CLS_POOL = 0,  /* pooled with the other tokens */
    H2T_CLS_ONLY = 1,  /* its C values are the features; the other tokens are dropped */
    H2T_CLS_APART = 2, /* its C values first, then the 3-D rule over tokens 1..L-1 */
};

typedef struct h2t_pool_plan {
    int kind;         /* H2T_POOL_* */
    uint32_t c, h, w; /* per-sample: 4-D C, H, W; 3-D h = tokens, c = channels; 2-D c */
    uint32_t ph, pw;  /* window (GRID, TWIN) */
    uint32_t oh, ow;  /* output grid (GRID: oh x ow; TWIN: oh token windows) */
    uint32_t dim;     /* pooled features */
    int form;         /* H2T_FORM_* (model.h): the order of the axes in memory */
    int cls;          /* H2T_CLS_* (token forms) */
    uint32_t t0;      /* first pooled token (1 when the class token is kept apart) */
    uint32_t lead;    /* 1: the features start with the class token's C values */
} h2t_pool_plan;

/* Plan the pooling of a tensor of form `form` (H2T_FORM_*, not NONE) whose per-sample dims
 * are dims[], in the tensor's axis order with the batch axis removed: FLAT: C; NLC and LNC:
 * L, C; NCL: C, L; NCHW: C, H, W; NHWC: H, W, C; ATTN: heads, Lq, Lk (pooled as an NCHW map
 * with one channel per head). cls: H2T_CLS_*, other than POOL only for NLC / LNC (the caller
 * decides whether token 0 is a class token). Errors: H2T_EUNSUPPORTED (form NONE or unknown),
 * H2T_EINVAL (target 0, a class-token mode for another form), H2T_ESHAPE (a zero dimension),
 * H2T_ETOOBIG (dim above 2^31). */
int h2t_pool_plan_form(int form, const uint32_t *dims, uint32_t target, int cls,
                       h2t_pool_plan *out);
/* The same by rank alone, batch first: 2-D FLAT, 3-D NLC, 4-D NCHW, class token pooled.
 * shape[0..rank) with shape[0], the batch, ignored. Errors: H2T_EUNSUPPORTED (other ranks),
 * H2T_ESHAPE (a non-positive dimension), H2T_EINVAL (target 0), H2T_ETOOBIG. */
int h2t_pool_plan_make(int rank, const int64_t *shape, uint32_t target, h2t_pool_plan *out);
/* Floats of one sample (the per-sample tensor's element count). */
size_t h2t_pool_sample_floats(const h2t_pool_plan *p);
/* Pool sample s of a whole tensor of nb samples (data as the executor reports it: batch first,
 * or L x nb x C for an LNC plan). */
void h2t_pool_apply_sample(const h2t_pool_plan *p, const float *data, int nb, int s, float *out);
/* Pool one sample x (the per-sample tensor, contiguous) into out (dim floats), with the
 * fastest kernels this CPU runs (h2t_pool_isa_best). The sums have one fixed order (see
 * extract/pool.c), so every kernel set gives bitwise the same features. */
void h2t_pool_apply(const h2t_pool_plan *p, const float *x, float *out);

/* The version of the pooling kernels' summation order (extract/pool.c). Any change that
 * alters a single feature bit of h2t_pool_apply / h2t_pool_stream must bump it: it enters the
 * extraction's identity (the config string says "pool=...-oN" when N > 1), so a store never
 * mixes features of two orders in one extraction. */
#define H2T_POOL_ORDER 2

/* Kernel sets: the x86-64 baseline (SSE2), AVX and AVX-512F (runtime-checked; H2T_CPU_MAX,
 * common/cpu.h, lowers the choice). */
enum { H2T_POOL_ISA_GENERIC = 0, H2T_POOL_ISA_AVX = 1, H2T_POOL_ISA_AVX512 = 2 };
/* The best kernel set this CPU (and OS) runs. */
int h2t_pool_isa_best(void);
/* h2t_pool_apply with a chosen kernel set (for tests and benchmarks); a set the CPU lacks
 * falls back to the best one it runs (h2t_pool_isa_best). */
void h2t_pool_apply_isa(const h2t_pool_plan *p, const float *x, float *out, int isa);
/* Pool only channels [c0, c1) of a 4-D sample (GAP or GRID plans): x is the whole sample
 * (C x H x W; only those channels are read), out the whole dim-float vector (only those
 * channels' features are written). Pooling every channel range of a partition gives exactly
 * h2t_pool_apply's vector: this is what a producer can call while a range is still in the
 * cache. Other kinds take only [0, C). Errors: H2T_EINVAL (bad range: named). */
int h2t_pool_apply_channels(const h2t_pool_plan *p, const float *x, uint32_t c0, uint32_t c1,
                            float *out);

/* Streaming: pool a 4-D sample whose channels arrive in spans of their planes (a producer's
 * output tiles), while each span is still in the cache. Per channel, the spans must come in
 * order and be contiguous, from value 0 of the plane to its end ((off, len) within each
 * channel's H x W plane, the same for every channel of [c0, c1)); channels are independent,
 * so their spans may interleave. state: h2t_pool_stream_bytes(p) bytes (8-byte aligned),
 * caller-OWNED, no initialisation needed (a channel's state starts at its value 0). A span of
 * whole planes (off 0, len H x W) is h2t_pool_apply_channels and needs no state. The features
 * are bitwise h2t_pool_apply's: every value is added in the same order (tested).
 * h2t_pool_stream_bytes: 0 when the plan pools whole planes only (not GAP/GRID, or W above
 * 4096). Errors: H2T_EINVAL (bad range, or a partial span for such a plan). */
size_t h2t_pool_stream_bytes(const h2t_pool_plan *p);
int h2t_pool_stream(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0, uint32_t c1,
                    size_t off, size_t len, float *out);
/* The same with a chosen kernel set (H2T_POOL_ISA_*), for tests. */
int h2t_pool_stream_isa(const h2t_pool_plan *p, void *state, const float *x, uint32_t c0,
                        uint32_t c1, size_t off, size_t len, float *out, int isa);

/* Streaming from a blocked layout (oneDNN's nChw<B>c, extract/dnnl_conv.h; B = 8 or 16): a
 * piece holds the channels [c0, c1) of one block (c0 a multiple of B, c1 - c0 <= B), values
 * [off, off + len) of their planes, value p of channel c0 + i at x[(p - off) * B + i] (the
 * block's lanes from c1 - c0 up are ignored). As with h2t_pool_stream, each channel's pieces
 * come in order from value 0 to its plane's end, blocks are independent, and the features
 * are bitwise h2t_pool_apply's on the same tensor in NCHW (extract/pool_blk.c). state:
 * h2t_pool_stream_blk_bytes(p, B) bytes (8-byte aligned), caller-OWNED, no initialisation
 * needed; 0 when the plan cannot be streamed (not a channels-first GAP / GRID, or W above
 * 4096). Errors: H2T_EINVAL (a bad piece, or such a plan).
 *
 *     float st[64 * 16], x[4 * 16] = {0}, out[16]; // one 16-channel block of 2 x 2 planes: GAP
 *     uint32_t dims[3] = {16, 2, 2};
 *     h2t_pool_plan p;
 *     h2t_pool_plan_form(H2T_FORM_NCHW, dims, 8, H2T_CLS_POOL, &p);
 *     h2t_pool_stream_blk(&p, st, x, 16, 0, 16, 0, 4, out); // out[c]: channel c's mean */
size_t h2t_pool_stream_blk_bytes(const h2t_pool_plan *p, int B);
int h2t_pool_stream_blk(const h2t_pool_plan *p, void *state, const float *x, int B, uint32_t c0,
                        uint32_t c1, size_t off, size_t len, float *out);
int h2t_pool_stream_blk_isa(const h2t_pool_plan *p, void *state, const float *x, int B, uint32_t c0,
                            uint32_t c1, size_t off, size_t len, float *out, int isa);

/* The pooling the extraction plans for tensor t of a model whose form is f (h2t_model_tensor_forms
 * of the whole model), at target size `target`, class-token mode cls_mode (H2T_CLS_*, used for a
 * token tensor whose token 0 is a class token, or every token tensor when cls_first): the one
 * function behind every extraction's layer table, and what applies a head to new images with
 * the extraction's pooling. dims[0..*n_dims) get the per-sample dims (batch axis removed, as
 * h2t_layer_info.shape). Errors as h2t_pool_plan_form, the detail naming the tensor. */
int h2t_layer_pool_plan(const h2t_tensor_info *t, const h2t_tensor_form *f, uint32_t target,
                        int cls_mode, int cls_first, h2t_pool_plan *out, uint32_t dims[3],
                        int *n_dims);

/* ---- the layer rule ---- */
/* 1 when the first layer rule ("default-v1": rank 2..4, not the graph input, not a pure op;
 * forms not looked at) selects tensor t, else 0. The identity of an extraction whose layers
 * and pooling are the same under both rules stays that of v1 (see "The pass"). */
int h2t_layer_rule_default(const h2t_tensor_info *t);

/* The layers the rule takes and the tensors it passes over with a reason. */
typedef struct h2t_layer_skip {
    int tensor;      /* tensor index */
    const char *why; /* static text */
} h2t_layer_skip;
typedef struct h2t_layer_sel {
    int n;                  /* selected tensors */
    int *idx;               /* their indices, graph order; OWNED */
    h2t_tensor_form *forms; /* their forms; OWNED */
    int n_skip;
    h2t_layer_skip *skip; /* OWNED */
} h2t_layer_sel;
/* Apply the layer rule (regex NULL = the default rule; see "Layer rule" above) to m. Every
 * out field is OWNED: h2t_layer_sel_free (also after an error). Errors: H2T_EINVAL (bad
 * regex: names it), H2T_ENOTFOUND (nothing selected: the detail counts the tensors passed
 * over and gives the first reason), H2T_ENOMEM. */
int h2t_layers_choose(const h2t_model *m, const char *regex, h2t_layer_sel *out);
void h2t_layer_sel_free(h2t_layer_sel *s);
/* Indices of the selected tensors only (h2t_layers_choose). *idx OWNED: free(). */
int h2t_layers_select(const h2t_model *m, const char *regex, int **idx, int *n);

/* ---- the pass ---- */
typedef struct h2t_extract_opts {
    const char *model_path;   /* BORROWED */
    const char *data_spec;    /* BORROWED */
    const char *name;         /* extraction name, NULL = none; BORROWED */
    const char *source_name;  /* NULL = the data's default name; BORROWED */
    const char *layers_regex; /* NULL = the default layer rule; BORROWED */
    uint32_t target_size;     /* Head2Toe T, default 512 */
    uint32_t limit;           /* 0 = every sample; else the first `limit` samples */
    uint32_t n_train, n_test; /* selection (UINT32_MAX = all), see h2t_data_select */
    int batch;                /* samples per store transaction, default 32 */
    /* Samples per forward pass, default 1. At 1 every sample is computed alone, so the
     * features do not depend on any batch setting, and each tensor is pooled while it is still
     * in the cache. Above 1 (batched GEMMs may then differ in the last bits) it becomes part of
     * the extraction's identity, and batch is rounded up to a multiple of it. */
    int forward_batch;
    /* Threads, 0 = one per CPU online. At forward_batch 1: that many samples run at once,
     * each with its own executor and OpenBLAS on one thread (h2t_blas_threads(1), process-
     * wide). Above 1: OpenBLAS threads (h2t_blas_threads(threads) when > 0) and pooling
     * threads over the samples of a forward batch. */
    int threads;
    uint32_t dtype; /* H2T_DTYPE_* */
    int has_scale;  /* 1: scale_lo/hi override the model's preprocessing */
    float scale_lo, scale_hi;
    int progress; /* 1: progress bar on stderr when it is a terminal */
    /* 1: pool every layer from its own tensor. 0 (default): a layer that is an affine
     * function of other selected layers (BatchNormalization, Add of same-shaped tensors, a
     * zero Pad whose windows match its input's) gets its features from theirs, and its
     * tensor is never observed (see extract.c, "Derived layers"). Part of the identity. */
    int pool_direct;
    /* H2T_CLS_*: how the class token of token tensors is pooled (default POOL). Part of the
     * identity when the model has token tensors. Another mode with no class token found is
     * an error (H2T_EINVAL) unless cls_first. */
    int cls;
    /* 1: token 0 of every batch-first or sequence-first token tensor is a class token
     * (the reference's behaviour), instead of only the tensors downstream of a Concat that
     * prepends a learned token (model.h, h2t_tensor_form.cls). Part of the identity. */
    int cls_first;
    /* 1: the feature blocks the pass writes stay in the page cache. 0 (default): each is
     * dropped from it once durable (h2t_store_features_cache), so the pass recycles the same
     * memory batch after batch (docs/extraction.md, "Where an extraction's CPU goes"); later
     * reads of the features then come from the disk. Not part of the identity. */
    int keep_cache;
    /* Called after each committed batch (done = samples_done), on the calling thread while
     * the next batch's forward pass runs; a non-zero return stops the pass with H2T_ECANCELED
     * (that forward pass is finished and its rows dropped; the store stays resumable at
     * done). May be NULL. */
    int (*on_batch)(void *ctx, uint32_t done, uint32_t total);
    void *ctx;
    /* Shard shard_i of shard_n (shard_n 0 = the whole source): the contiguous sample range
     * [floor(n * i / N), floor(n * (i + 1) / N)) of the n planned samples (limit applied),
     * stored as that extraction's samples 0.. (see h2t_extract_shard_parse). The identity is
     * the whole extraction's config plus " shard=I/N"; the stored config also names the whole
     * extraction's config hash (" of=HEX"), which h2tdb merge gives the merged store.
     * Errors of plan_create: H2T_EINVAL (i >= N, or N > n). */
    uint32_t shard_i, shard_n;
} h2t_extract_opts;

/* The range of shard i of n over n_samples samples: [*lo, *hi). */
void h2t_extract_shard_range(uint32_t n_samples, uint32_t i, uint32_t n, uint32_t *lo,
                             uint32_t *hi);
/* Parse a shard extraction's stored config (h2t_extraction.config): *i, *n, the whole
 * extraction's config hash (32 bytes) and the whole extraction's config (the stored one
 * without its shard fields; wlen bytes at most, NUL-terminated) and its sample count.
 * Returns 1 for a shard's config, 0 for an unsharded one, H2T_ECORRUPT for a damaged shard
 * field. */
/* h2t_extract_merge's outcome. */
typedef struct h2t_extract_merge_result {
    uint32_t extraction, source, model; /* in the output store */
    uint32_t n_samples, n_shards;
    uint32_t resumed_from; /* samples already in the output store at start */
    uint32_t written;      /* samples written by this call */
    int reused;            /* 1: the output store already held the whole extraction */
} h2t_extract_merge_result;
/* Write the whole extraction of the shard stores dirs[0..n_dirs) (each holding one shard
 * extraction, extract --shard I/N) into the store out_dir (created when missing): the whole
 * extraction's identity (config hash and config without the shard fields; an unsharded extract
 * of the same request then finds it complete), its source and model records, and every sample's
 * rows in source order, written through h2t_store_features_write in batches of `batch` samples
 * from sample 0, so the statistics are bitwise those of the unsharded extraction run at
 * --batch `batch` (f32; f16 extractions merge the statistics of the stored f16 values). The
 * shard stores are only read. Resumable: a merge stopped midway continues from the output's
 * samples_done. Errors (each naming the store): H2T_EINVAL (a store given twice, a shard of
 * another extraction, a shard in two stores, more than one shard extraction in a store),
 * H2T_ENOTFOUND (a shard missing, a store without a shard extraction), H2T_ESTATE (a shard not
 * complete), and the store's. */
int h2t_extract_merge(const char *out_dir, const char *const *dirs, size_t n_dirs, int batch,
                      h2t_extract_merge_result *res);
int h2t_extract_shard_parse(const char *config, uint32_t *i, uint32_t *n, uint8_t hash[32],
                            char *whole, size_t wlen, uint32_t *n_samples);

typedef struct h2t_extract_result {
    uint32_t extraction, source, model;
    int reused;            /* 1: the extraction was already complete: nothing computed */
    uint32_t resumed_from; /* samples_done found at start (0 for a fresh one) */
    uint32_t n_samples, n_layers, computed;
    uint32_t n_derived; /* layers whose features follow from other layers' (opts.pool_direct) */
    uint64_t total_dim;
    /* seconds: whole pass; setup (store records, executor plan, buffers); forward
     * (h2t_exec_run minus pooling); read+preprocess; pooling (inside the executor callbacks);
     * store writes (features, statistics, marker). Plan creation (model load, data open and
     * hash) comes before and is not counted. The pass is a pipeline: the store write of batch
     * b and the read of batch b + 2 run on the calling thread while batch b + 1's forward pass
     * (and pooling) runs on others, so t_read and t_write overlap t_forward + t_pool and the
     * parts do not add up to t_total; t_exposed is the wall time of the batch loop in which no
     * forward pass ran (the first batch's read, the last batch's write, and any round whose
     * write + read outlasted its forward pass). t_total is about t_setup + t_forward + t_pool
     * + t_exposed. */
    double t_total, t_setup, t_forward, t_read, t_pool, t_write, t_exposed;
    /* process CPU seconds (all threads) of the whole pass, the forward pass and pooling: the
     * split that a busy machine does not skew. Pooling's share of each forward run's CPU time
     * is its share of the run's wall time (CPU-time clocks are system calls, too dear to read
     * around each of the 161 callbacks per image); forward = the runs' CPU minus pooling. */
    double cpu_total, cpu_forward, cpu_pool;
    /* CPU seconds of read + preprocess and of the store writes (features, statistics,
     * progress marker): the calling thread's CPU clock around them. cpu_forward and cpu_pool
     * count only the forward threads (the process's CPU during each round minus the calling
     * thread's), so the overlapped writes are never counted as forward CPU. */
    double cpu_read, cpu_write;
    char config[512];
} h2t_extract_result;

typedef struct h2t_extract_plan h2t_extract_plan;

void h2t_extract_opts_init(h2t_extract_opts *o);
/* Load and check the model, open and check the data, resolve preprocessing, select layers
 * and plan their pooling. Writes nothing. Errors: those of h2t_model_load, h2t_data_open,
 * h2t_layers_select; H2T_ESHAPE (the data cannot feed the model's input); H2T_EINVAL (bad
 * option: named). *out OWNED: h2t_extract_plan_destroy. */
int h2t_extract_plan_create(const h2t_extract_opts *o, h2t_extract_plan **out);
void h2t_extract_plan_destroy(h2t_extract_plan *p);
/* The layer table the plan will store (BORROWED from the plan) and the total pooled dim. */
const h2t_layer_info *h2t_extract_plan_layers(const h2t_extract_plan *p, uint32_t *n,
                                              uint64_t *total_dim);
/* How layer l (< n) is pooled, as text: "tokens 197x768 cls-apart win 19 -> 10x768",
 * written into buf (always NUL-terminated). */
void h2t_extract_plan_describe(const h2t_extract_plan *p, uint32_t l, char *buf, size_t n);
/* The tensors the layer rule passed over (with the reason), BORROWED from the plan; names
 * through h2t_extract_plan_model. */
const h2t_layer_skip *h2t_extract_plan_skipped(const h2t_extract_plan *p, int *n);
const h2t_model *h2t_extract_plan_model(const h2t_extract_plan *p);
/* Register source and model, begin or find the extraction, run what is missing. *res is
 * filled on failure too (ids, samples computed, timings). Errors: the
 * store's, the executor's, H2T_ECANCELED (on_batch asked to stop: the extraction stays
 * RUNNING), a data read error (an image whose compressed data is damaged). After any error but
 * H2T_ECANCELED the extraction is marked H2T_EXT_FAILED; either way it keeps samples
 * [0, samples_done), a rerun resumes there (and marks it RUNNING again), and h2tdb rm removes
 * it. */
int h2t_extract_plan_run(h2t_extract_plan *p, h2t_store *st, h2t_extract_result *res);

#endif
