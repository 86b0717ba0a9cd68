/*
 * classify/internal.h - the classifier's record, shared by classify.c (open, run) and
 * export_onnx.c (the same classifier as ONNX). Not a public contract.
 */
#ifndef H2T_CLASSIFY_INTERNAL_H
#define H2T_CLASSIFY_INTERNAL_H

#include "classify/classify.h"
#include "extract/prune.h"
#include "solver/solver.h"

/* One layer the head reads. */
typedef struct cls_slot {
    char name[256];     /* tensor name */
    int tensor;         /* its index in the pruned model */
    uint32_t layer;     /* index among the result's layers */
    uint64_t offset;    /* start of its features in the result's concatenated vector */
    uint32_t kept0;     /* its first column in the head */
    h2t_pool_plan pool; /* the extraction's pooling of the tensor */
} cls_slot;

struct h2t_classifier {
    h2t_classifier_info info;
    h2t_result *r;  /* the head; OWNED */
    h2t_task *task; /* class names; OWNED */
    void *pruned;   /* the pruned ONNX bytes; OWNED */
    size_t pruned_len;
    h2t_model *m; /* the pruned model, loaded; OWNED */
    h2t_exec *x_exec;
    h2t_prep prep;
    uint8_t model_sha[32];
    uint64_t max_pixels;
    uint32_t n_slots;
    cls_slot *slots; /* OWNED */
    float *x;        /* the result's D features of one sample (kept layers filled) */
    float *input;    /* one preprocessed sample */
    uint8_t *seen;   /* per slot: pooled in this run */
};

#endif
