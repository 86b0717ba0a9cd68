/*
 * common/train_spec.h - the options of a train job: one plain struct, and a table of its
 * members that every generic use of the options goes through.
 *
 * The struct is shared by the solver (solver/solver.h runs a spec), the wire (proto/proto.h
 * carries a request's spec in h2t_msg_train), the server (resolves, compares and runs specs)
 * and the command line. It holds no wire types, so the solver does not depend on proto/.
 *
 * The table (h2t_train_spec_fields) names each member, its type, offset and size, and the
 * h2tdb.TrainRequest field that carries it (NULL: the member is not on the wire). From it come:
 *  - the one conversion from/to the wire (proto/proto.c matches rows to TrainRequest fields by
 *    name through protobuf-c's descriptor),
 *  - the equality and hash that decide whether a finished job is reused (every member, so a
 *    new option can never be left out of the comparison),
 *  - the request defaults (solver: h2t_train_spec_resolve replaces each zero by the method's
 *    default).
 * tests/test_train_spec.c fails when a member has no row (the rows' sizes must add up to
 * sizeof(h2t_train_spec): the struct has no padding) and when a row's wire field is missing,
 * of another type, or a TrainRequest field has no row.
 *
 * Adding an option: the member below (keep the struct free of padding), its row in
 * common/train_spec.c, the TrainRequest field in proto/h2tdb.proto when the service carries
 * it (same name as the row's wire name), its default and check in solver/run.c
 * (h2t_train_spec_default, h2t_train_spec_check), and its flag in cli/cmd_jobs.c.
 *
 * Two meanings of the same struct: a solver spec is complete (h2t_train_spec_default, then
 * overrides); a request (the wire, h2t_msg_train.spec) leaves a member 0 (a grid or list
 * empty) for "the method's default", and h2t_train_spec_resolve turns it into a solver spec.
 *
 *     #include "solver/solver.h"
 *     h2t_train_spec a, b;
 *     h2t_train_spec_default(&a, H2T_METHOD_HEAD2TOE);
 *     b = a;
 *     b.seed = 7;
 *     int same = h2t_train_spec_equal(&a, &b);           // 0
 *     uint64_t ha = h2t_train_spec_hash(&a);             // != h2t_train_spec_hash(&b)
 */
#ifndef H2T_COMMON_TRAIN_SPEC_H
#define H2T_COMMON_TRAIN_SPEC_H

#include <stddef.h>
#include <stdint.h>

/* Methods (docs/solver.md). The numbers are the wire's h2tdb.Method. */
enum {
    H2T_METHOD_LINEAR = 0,   /* L2 probe on the backbone's pooled representation */
    H2T_METHOD_ALL = 1,      /* L2 head on every layer */
    H2T_METHOD_HEAD2TOE = 2, /* group-lasso selection over every layer, then a head */
    H2T_METHOD_KNN = 3,      /* k nearest training rows by cosine (the probe layer) */
    H2T_METHOD_NCM = 4,      /* nearest class mean by cosine (every layer) */
    H2T_METHOD_LAYER = 5,    /* an L2 probe per layer, the best layer by CV */
    H2T_METHOD_AUTO = 6,     /* CV chooses among the six methods above */
    H2T_METHOD_COUNT = 7
};
/* How the training samples are split into CV folds (h2t_train_spec.fold_kind). */
enum {
    H2T_FOLDS_STRATIFIED = 1, /* each class dealt over the folds in a seeded order (default) */
    H2T_FOLDS_CONTIGUOUS = 2  /* fold f = samples [f n / k, (f + 1) n / k) in task order */
};
/* What head2toe scores and keeps (h2t_train_spec.select_group). */
enum {
    H2T_SELECT_FEATURE = 1, /* each feature by its own rank (default) */
    H2T_SELECT_LAYER = 2    /* whole layers, each by the group norm of all its features */
};
enum { H2T_PENALTY_NONE = 0, H2T_PENALTY_L2 = 1, H2T_PENALTY_GROUP = 2 };
enum { H2T_OPT_FAST = 0, H2T_OPT_ADAM = 1 };

#define H2T_SPEC_MAX_GRID 32 /* values in a lambda or keep grid */

/* A training job. Plain data; the only pointer (layers) is BORROWED for the duration of a
 * call. Members are ordered so that the struct has no padding (see the test above). */
typedef struct h2t_train_spec {
    uint32_t method;    /* H2T_METHOD_* */
    uint32_t penalty;   /* linear/all: H2T_PENALTY_* (default L2); head2toe: selection is
                           always group lasso and the final head unregularised */
    uint32_t optimizer; /* H2T_OPT_* */
    uint32_t n_lambdas; /* grid: L2 strength (linear/all) or group-lasso lambda (head2toe) */
    double lambdas[H2T_SPEC_MAX_GRID];
    uint32_t n_keeps; /* head2toe keep fractions, each in (0, 1] */
    uint32_t folds;   /* k of k-fold CV (>= 2; default 5); 1 = no CV (grid must be 1x1) */
    double keeps[H2T_SPEC_MAX_GRID];
    uint64_t seed;          /* Adam init and batch order */
    const uint32_t *layers; /* layer indices of the extraction to use, NULL = method default */
    uint32_t n_layers;      /* entries in layers */
    uint32_t steps;         /* Adam steps (default 500) */
    double lr;              /* Adam learning rate (default 0.01) */
    uint32_t batch;         /* Adam batch (default 128) */
    uint32_t max_iter;      /* fast path: iteration cap per fit (default 2000) */
    double gtol;            /* fast path: gradient max-abs stop (default 1e-5) */
    double final_l2;        /* ridge of "unregularised" heads (default 1e-6), see solver.h */
    uint32_t path_len;      /* fast path: lambda path points from lambda_max (default 20) */
    uint32_t threads;       /* OpenBLAS threads, 0 = leave as is (at most 256) */
    uint64_t mem_limit;     /* memory budget of the design matrix, 0 = available memory;
                               above it the matrix lies in a file-backed mapping */
    uint32_t fold_kind;     /* H2T_FOLDS_* (default stratified) */
    uint32_t cv_repeats;    /* CV repeated with other fold seeds, averaged; 0 = 3 when the
                               training set has fewer than 500 samples, else 1 (stratified
                               folds only: contiguous folds are the same every time) */
    uint32_t one_se;        /* 1: the simplest cell within one standard error of the best */
    uint32_t auto_methods;  /* auto: bit (1 << H2T_METHOD_*) per candidate; 0 = all six */
    uint32_t n_final_l2s;   /* head2toe: values in final_l2s; 0 = the final head uses final_l2 */
    uint32_t select_group;  /* head2toe: H2T_SELECT_* (default feature) */
    uint32_t cell_test;     /* 1: the result also reports the test accuracy of every grid cell
                               (each cell's head refit on all training samples); reporting
                               only, never used for a choice */
    uint32_t reserved;      /* 0; keeps the struct free of padding */
    double final_l2s[H2T_SPEC_MAX_GRID]; /* head2toe: the final head's L2 grid, chosen by CV
                                            jointly with keep (each keep x each value) */
} h2t_train_spec;

/* The method's name ("linear", "all", "head2toe", "knn", "ncm", "layer", "auto"); "unknown"
 * for a number out of range. Static storage. */
const char *h2t_method_name(uint32_t method);
/* The method named s (the names above); -1 when s names none. */
int h2t_method_parse(const char *s, uint32_t *method);

/* Member types of the table. */
enum {
    H2T_SPEC_U32 = 1, /* uint32_t (on the wire: uint32 or an enum) */
    H2T_SPEC_U64,     /* uint64_t (uint64 or fixed64) */
    H2T_SPEC_F64,     /* double */
    H2T_SPEC_GRID,    /* double[H2T_SPEC_MAX_GRID]; its count is the uint32_t at count_off */
    H2T_SPEC_LIST,    /* const uint32_t * (BORROWED); its count is the uint32_t at count_off */
    H2T_SPEC_COUNT    /* the uint32_t count of a GRID or LIST row (handled with that row) */
};

typedef struct h2t_spec_field {
    const char *name;   /* the member */
    const char *wire;   /* the h2tdb.TrainRequest field that carries it; NULL: none */
    uint32_t type;      /* H2T_SPEC_* */
    uint32_t off, size; /* offsetof, sizeof of the member */
    uint32_t count_off; /* GRID, LIST: offsetof the count member; else 0 */
} h2t_spec_field;

/* Every member of h2t_train_spec, in declaration order. */
extern const h2t_spec_field h2t_train_spec_fields[];
extern const size_t h2t_train_spec_n_fields;

/* The row of a member by name, or NULL. */
const h2t_spec_field *h2t_train_spec_field(const char *name);

/* 1 when every member of a and b is equal (doubles bit for bit; a grid or list by its count
 * and its first count values, so unused grid slots do not matter), else 0. */
int h2t_train_spec_equal(const h2t_train_spec *a, const h2t_train_spec *b);

/* A 64-bit hash of every member (the first 8 bytes of SHA-256 over the members' names and
 * values, big-endian, in table order): equal specs have equal hashes. */
uint64_t h2t_train_spec_hash(const h2t_train_spec *s);

#endif
