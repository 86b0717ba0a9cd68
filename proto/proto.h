/*
 * proto/proto.h - the h2tdb wire protocol at the C level: plain structs for every message of
 * proto/h2tdb.proto, the frame codec, and an incremental frame reader. The only place in
 * h2tdb that includes protobuf-c.h is proto/; servers and clients use this header.
 *
 * A frame is a 4-byte big-endian payload length followed by a packed h2tdb.Envelope
 * (request id + one body). The reader checks the length against its limit before it
 * allocates anything.
 *
 *     int fd = 3; // a connected socket
 *     h2t_msg req = {.id = 7, .type = H2T_MSG_STATS_REQ};
 *     req.u.stats_req.extraction = "mnv2";
 *     uint8_t *frame;
 *     size_t len;
 *     if (h2t_proto_encode(&req, &frame, &len) == 0) {
 *         if (write(fd, frame, len) < 0)
 *             perror("write");
 *         free(frame);
 *     }
 *
 *     uint8_t bytes[4096];
 *     ssize_t n = read(fd, bytes, sizeof bytes);
 *     const uint8_t *buf = bytes;
 *     h2t_proto_reader rd;
 *     h2t_proto_reader_init(&rd, H2T_PROTO_MAX_FRAME);
 *     while (n > 0) {
 *         size_t used;
 *         const uint8_t *payload;
 *         uint32_t plen;
 *         int rc = h2t_proto_reader_feed(&rd, buf, (size_t)n, &used, &payload, &plen);
 *         if (rc < 0)
 *             break; // an oversized frame: reply with an error and close
 *         buf += used;
 *         n -= (ssize_t)used;
 *         h2t_msg m;
 *         if (rc == 1 && h2t_proto_decode(payload, plen, &m) == 0) {
 *             // ... handle m ...
 *             h2t_msg_free(&m);
 *         }
 *     }
 *     h2t_proto_reader_free(&rd);
 *
 * Ownership: a message you fill for h2t_proto_encode may point at anything (BORROWED for the
 * call). A message filled by h2t_proto_decode OWNS everything it points at until
 * h2t_msg_free(); never h2t_msg_free a message you filled yourself.
 * Threads: no shared state; every function is safe on any thread.
 */
#ifndef H2T_PROTO_PROTO_H
#define H2T_PROTO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/train_spec.h"

#define H2T_PROTO_MAX_FRAME (16u << 20) /* default frame limit (payload bytes) */

/* Message types: the Envelope oneof field numbers of h2tdb.proto. */
enum {
    H2T_MSG_NONE = 0,
    H2T_MSG_ERROR = 2,
    H2T_MSG_AUTH = 3,
    H2T_MSG_AUTH_OK = 4,
    H2T_MSG_HEALTH_REQ = 5,
    H2T_MSG_HEALTH = 6,
    H2T_MSG_LIST_EXTRACTIONS = 7,
    H2T_MSG_EXTRACTION_LIST = 8,
    H2T_MSG_DESCRIBE_EXTRACTION = 9,
    H2T_MSG_EXTRACTION = 10,
    H2T_MSG_LAYERS_REQ = 11,
    H2T_MSG_LAYER_TABLE = 12,
    H2T_MSG_STATS_REQ = 13,
    H2T_MSG_STATS = 14,
    H2T_MSG_FEATURES_REQ = 15,
    H2T_MSG_FEATURES = 16,
    H2T_MSG_CREATE_TASK = 17,
    H2T_MSG_LIST_TASKS = 18,
    H2T_MSG_TASK = 19,
    H2T_MSG_TASK_LIST = 20,
    H2T_MSG_TRAIN = 21,
    H2T_MSG_GET_JOB = 22,
    H2T_MSG_WATCH_JOB = 23,
    H2T_MSG_CANCEL_JOB = 24,
    H2T_MSG_LIST_JOBS = 25,
    H2T_MSG_JOB = 26,
    H2T_MSG_JOB_LIST = 27,
    H2T_MSG_GET_RESULT = 28,
    H2T_MSG_RESULT = 29,
    H2T_MSG_PREDICT = 30,
    H2T_MSG_PREDICTION = 31,
    H2T_MSG_CLASSIFY = 32,
    H2T_MSG_CLASSIFICATION = 33,
    H2T_MSG_MAX = 34
};

typedef struct h2t_msg_error {
    int32_t code; /* negative H2T_E* */
    const char *message;
} h2t_msg_error;

typedef struct h2t_msg_auth {
    const uint8_t *token;
    size_t token_len;
} h2t_msg_auth;

typedef struct h2t_msg_health {
    const char *version;
    uint64_t uptime_ms;
    uint32_t connections, jobs_queued, jobs_running, workers;
    uint64_t requests;
    uint64_t design_loads, design_hits, design_bytes;
    uint32_t designs;
} h2t_msg_health;

typedef struct h2t_msg_layer {
    const char *name, *op;
    size_t n_shape;
    const uint32_t *shape; /* per sample */
    uint32_t dim;
    uint64_t offset;
} h2t_msg_layer;

typedef struct h2t_msg_extraction {
    uint32_t id;
    const char *name, *source, *model;
    uint32_t n_samples, samples_done, state;
    uint64_t total_dim;
    uint32_t target_size, dtype;
    const char *config;
    uint32_t n_layers;
    size_t n_class_names; /* describe only */
    const char *const *class_names;
    uint32_t n_train, n_test; /* describe only */
    size_t n_layer_info;      /* describe only */
    const h2t_msg_layer *layers;
} h2t_msg_extraction;

typedef struct h2t_msg_extraction_list {
    size_t n;
    const h2t_msg_extraction *v;
} h2t_msg_extraction_list;

typedef struct h2t_msg_ext_ref { /* describe, layers */
    const char *extraction;      /* id or name */
} h2t_msg_ext_ref;

typedef struct h2t_msg_layer_table {
    uint32_t extraction;
    size_t n_layers;
    const h2t_msg_layer *layers;
} h2t_msg_layer_table;

typedef struct h2t_msg_stats_req {
    const char *extraction, *layer; /* layer "" = every layer */
    int per_feature;
} h2t_msg_stats_req;

typedef struct h2t_msg_layer_stats {
    const char *layer;
    uint32_t dim;
    uint64_t count;
    double norm_mean, norm_min, norm_max, mean_of_means, mean_of_vars;
    float min, max;
    size_t n_mean, n_var, n_fmin, n_fmax; /* per feature, when asked */
    const double *mean, *var;
    const float *fmin, *fmax;
} h2t_msg_layer_stats;

typedef struct h2t_msg_stats {
    uint32_t extraction;
    size_t n_layers;
    const h2t_msg_layer_stats *layers;
} h2t_msg_stats;

typedef struct h2t_msg_features_req {
    const char *extraction, *layer;
    uint32_t first, count;
    size_t n_samples;
    const uint32_t *samples;
    uint32_t limit;
} h2t_msg_features_req;

typedef struct h2t_msg_features {
    uint32_t layer, dim;
    size_t n_samples;
    const uint32_t *samples;
    size_t n_values;
    const float *values; /* n_samples x dim */
    uint32_t next_first;
    int done;
} h2t_msg_features;

typedef struct h2t_msg_map_entry {
    const char *from, *to;
} h2t_msg_map_entry;

typedef struct h2t_msg_task_spec {
    const char *name, *extraction, *train, *test, *val;
    size_t n_map;
    const h2t_msg_map_entry *map;
    uint32_t shots;
    int replace;
} h2t_msg_task_spec;

typedef struct h2t_msg_task {
    const char *name;
    uint32_t extraction;
    size_t n_class_names;
    const char *const *class_names;
    uint32_t shots, n_train, n_val, n_test;
    uint64_t created_ms;
    size_t n_train_per_class;
    const uint32_t *train_per_class;
} h2t_msg_task;

typedef struct h2t_msg_task_list {
    size_t n;
    const h2t_msg_task *v;
} h2t_msg_task_list;

/* A train request. spec is a request spec (common/train_spec.h: 0 or an empty grid = the
 * method's default); only its members with a wire name travel (h2t_train_spec_fields), the
 * others decode as 0. Method and optimizer numbers are H2T_METHOD_* and H2T_OPT_* (h2tdb.Method
 * and h2tdb.Optimizer have the same). A grid of more than H2T_SPEC_MAX_GRID values does not
 * decode (H2T_EPROTO naming the field). */
typedef struct h2t_msg_train {
    const char *task;
    h2t_train_spec spec;
    int retrain;            /* train again even when a finished job has this spec */
    uint64_t inputs_digest; /* server-filled in stored specs: task + extraction identity */
} h2t_msg_train;

typedef struct h2t_msg_job {
    uint64_t id;
    int state; /* H2T_JOB_* of storage/store.h (same numbers) */
    uint32_t attempts;
    double progress;
    const char *stage, *error;
    uint64_t created_ms, started_ms, finished_ms;
    int has_spec;
    h2t_msg_train spec;
    int reused; /* a submit's reply: an earlier finished job with the same spec */
} h2t_msg_job;

typedef struct h2t_msg_job_ref { /* get, watch, cancel */
    uint64_t job;
} h2t_msg_job_ref;

typedef struct h2t_msg_job_list {
    size_t n;
    const h2t_msg_job *v;
} h2t_msg_job_list;

typedef struct h2t_msg_result_req {
    uint64_t job;
    int include_head;
    int include_onnx;
} h2t_msg_result_req;

typedef struct h2t_msg_result {
    uint64_t job;
    const char *summary;
    double val_accuracy, test_accuracy;
    uint32_t n_kept, n_classes;
    const uint8_t *blob;
    size_t blob_len;
    const char *json;
    const uint8_t *onnx; /* the ONNX classifier (include_onnx) */
    size_t onnx_len;
} h2t_msg_result;

typedef struct h2t_msg_predict_req {
    uint64_t job;
    const char *samples; /* SEL over the job's extraction, or "" */
    size_t n_ids;
    const uint32_t *ids;
} h2t_msg_predict_req;

typedef struct h2t_msg_prediction {
    size_t n_samples;
    const uint32_t *samples;
    size_t n_predicted;
    const uint32_t *predicted;
    size_t n_labels;
    const uint32_t *labels;
    size_t n_class_names;
    const char *const *class_names;
    double accuracy;
    size_t n_probs; /* n_samples x n_class_names, or 0 */
    const float *probs;
} h2t_msg_prediction;

/* A head applied to encoded images (PNG / JPEG bytes); names (n_names == 0 or n_images) name
 * them in errors. */
typedef struct h2t_msg_classify_req {
    uint64_t job;
    size_t n_images;
    const uint8_t *const *images;
    const size_t *image_lens;
    size_t n_names;
    const char *const *names;
} h2t_msg_classify_req;

typedef struct h2t_msg_classification {
    uint64_t job;
    uint32_t n_classes;
    size_t n_class_names;
    const char *const *class_names;
    size_t n_probs; /* n_images x n_classes */
    const float *probs;
    size_t n_images; /* entries of predicted */
    const uint32_t *predicted;
    double macs, macs_needed;
    int cached;                /* 1: served by a classifier kept from an earlier request */
    uint64_t classifier_loads; /* classifiers the server has built since it started */
} h2t_msg_classification;

typedef struct h2t_msg {
    uint64_t id; /* request id, echoed by every reply */
    int type;    /* H2T_MSG_* */
    union {
        h2t_msg_error error;
        h2t_msg_auth auth;
        h2t_msg_health health;
        h2t_msg_extraction_list extraction_list;
        h2t_msg_ext_ref ext_ref; /* DESCRIBE_EXTRACTION, LAYERS_REQ */
        h2t_msg_extraction extraction;
        h2t_msg_layer_table layer_table;
        h2t_msg_stats_req stats_req;
        h2t_msg_stats stats;
        h2t_msg_features_req features_req;
        h2t_msg_features features;
        h2t_msg_task_spec create_task;
        h2t_msg_task task;
        h2t_msg_task_list task_list;
        h2t_msg_train train;
        h2t_msg_job_ref job_ref; /* GET_JOB, WATCH_JOB, CANCEL_JOB */
        h2t_msg_job job;
        h2t_msg_job_list job_list;
        h2t_msg_result_req get_result;
        h2t_msg_result result;
        h2t_msg_predict_req predict;
        h2t_msg_prediction prediction;
        h2t_msg_classify_req classify;
        h2t_msg_classification classification;
    } u;
    void *owned_; /* decode only: what h2t_msg_free releases */
} h2t_msg;

/* Encode m as one frame (4-byte big-endian length + packed Envelope). *frame is OWNED by the
 * caller (free()). Errors: H2T_EINVAL (unknown type), H2T_ETOOBIG (payload over 4 GiB - 1),
 * H2T_ENOMEM. */
int h2t_proto_encode(const h2t_msg *m, uint8_t **frame, size_t *len);

/* The frame of a message for request id, from the frame of the same message encoded with id 0
 * (a reply cached once and sent to many requests): the id field goes in front of the body, as
 * h2t_proto_encode writes it, so the result equals encoding the message with that id.
 * *frame OWNED (free()). Errors: H2T_EINVAL (frame0 is not a frame with id 0), H2T_ETOOBIG,
 * H2T_ENOMEM. */
int h2t_proto_reframe(uint64_t id, const uint8_t *frame0, size_t len0, uint8_t **frame,
                      size_t *len);

/* Decode one payload (without its 4-byte header) into *out, which OWNS its contents until
 * h2t_msg_free. Errors: H2T_EPROTO (malformed bytes, empty envelope, unknown body type: the
 * detail says which), H2T_ENOMEM. On error *out is zeroed and needs no free. */
int h2t_proto_decode(const uint8_t *payload, size_t len, h2t_msg *out);

/* Release what a decoded message owns and zero it. A zeroed message is a no-op. */
void h2t_msg_free(h2t_msg *m);

/* Check the wire side of h2t_train_spec_fields against h2tdb.TrainRequest: every row with a
 * wire name names a TrainRequest field of a matching type (U32: uint32 or enum, U64: uint64 or
 * fixed64, F64: double, GRID: repeated double, LIST: repeated uint32), and every TrainRequest
 * field is a row's or one of task, retrain, inputs_digest. Errors: H2T_EPROTO naming the
 * field. */
int h2t_proto_train_spec_check(void);

/* "stats_req", "job", ... ("unknown" for anything else). Static text. */
const char *h2t_msg_type_name(int type);

/* Incremental frame reader: feed bytes as they arrive, get whole payloads. The header is
 * checked against max first, and the payload buffer grows with the bytes that arrived (at
 * most twice those, never what the header merely announces), so a peer holds only as much
 * memory as it sent. max may be changed between frames (the server raises it after Auth). */
typedef struct h2t_proto_reader {
    uint32_t max;      /* payload limit */
    uint8_t hdr[4];    /* length header being read */
    uint32_t hdr_have; /* header bytes so far */
    uint8_t *buf;      /* payload being read (OWNED); cap bytes allocated */
    uint32_t len, have, cap;
    int done; /* a complete payload is in buf (returned by the last feed) */
} h2t_proto_reader;

void h2t_proto_reader_init(h2t_proto_reader *r, uint32_t max);
/* Consume up to n bytes of data. Returns 1 with *payload (BORROWED until the next feed or
 * free) and *len when a frame completed, 0 when more bytes are needed; *used says how many
 * bytes were consumed (stop at the end of a frame, so feed the rest again).
 * Errors: H2T_ETOOBIG (the header announces more than max: detail gives both), H2T_ENOMEM. */
int h2t_proto_reader_feed(h2t_proto_reader *r, const uint8_t *data, size_t n, size_t *used,
                          const uint8_t **payload, uint32_t *len);
/* 1 when a frame was started but not finished (some bytes pending). */
int h2t_proto_reader_partial(const h2t_proto_reader *r);
void h2t_proto_reader_free(h2t_proto_reader *r);

#endif
