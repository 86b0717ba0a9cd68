/*
 * tests/fuzz/fuzz_frame.c - libFuzzer target: arbitrary bytes through the frame reader (the
 * server's limit check included), the Envelope decoder and the request dispatch with every
 * handler, over a store that holds one small extraction and task. Built and run by
 * tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined).
 */
#include "common/err.h"
#include "common/log.h"
#include "proto/proto.h"
#include "server/server.h"
#include "storage/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static h2t_srv *srv;
static h2t_store *st;

static void fixture(void)
{
    static char c0[] = "a", c1[] = "b";
    char *names[2] = {c0, c1};
    uint32_t labels[8];
    uint8_t split[8];
    float f[8 * 3];
    for (int i = 0; i < 8; i++) {
        labels[i] = (uint32_t)(i & 1);
        split[i] = i < 6 ? 0 : 1;
        for (int j = 0; j < 3; j++)
            f[i * 3 + j] = (float)(i * 3 + j);
    }
    h2t_source src = {0};
    snprintf(src.name, sizeof(src.name), "s");
    src.n_samples = 8;
    src.n_classes = 2;
    src.class_names = names;
    src.labels = labels;
    src.split = split;
    uint32_t sid, mid, eid;
    int reused;
    h2t_model_rec m = {0};
    snprintf(m.name, sizeof(m.name), "m");
    h2t_layer_info L = {0};
    snprintf(L.name, sizeof(L.name), "l");
    L.rank = 2;
    L.shape[0] = 3;
    L.dim = 3;
    h2t_extraction e = {0};
    snprintf(e.name, sizeof(e.name), "ext");
    e.n_samples = 8;
    e.n_layers = 1;
    e.layers = &L;
    const float *ptrs[1] = {f};
    if (h2t_store_source_put(st, &src, &sid, &reused) < 0 ||
        h2t_store_model_put(st, &m, &mid, &reused) < 0)
        abort();
    e.source = sid;
    e.model = mid;
    if (h2t_store_extraction_begin(st, &e, &eid, &reused) < 0 ||
        h2t_store_features_write(st, eid, 0, 8, ptrs) < 0)
        abort();
    h2t_msg_task_spec spec = {.name = "t", .extraction = "ext", .train = "train"};
    h2t_task *t = NULL;
    if (h2t_srv_task_build(st, &spec, &t) < 0 || h2t_store_task_put(st, t, 0) < 0)
        abort();
    h2t_task_destroy(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    h2t_log_set_level(H2T_LOG_LOFF);
    char dir[4096];
    const char *base = getenv("H2T_FUZZ_DIR"); /* run.sh removes it afterwards */
    snprintf(dir, sizeof(dir), "%s/store", base ? base : "/tmp/h2t-fuzz");
    if (h2t_store_open(dir, H2T_STORE_CREATE, &st) < 0)
        abort();
    fixture();
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.workers = 0; /* jobs are queued and stored, never run: the fuzzer stays fast */
    cfg.handle_signals = 0;
    cfg.max_frame = 1u << 20;
    if (h2t_srv_create(&cfg, st, &srv) < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    h2t_proto_reader rd;
    h2t_proto_reader_init(&rd, 1u << 20);
    while (size > 0) {
        size_t used;
        const uint8_t *payload;
        uint32_t plen;
        int rc = h2t_proto_reader_feed(&rd, data, size, &used, &payload, &plen);
        if (rc < 0)
            break; /* oversized: the server replies and closes */
        data += used;
        size -= used;
        if (rc == 1) {
            uint8_t *replies = NULL;
            size_t rlen = 0;
            if (h2t_srv_handle_payload(srv, payload, plen, &replies, &rlen) == 0) {
                /* every reply must be a frame the client can decode */
                size_t off = 0;
                while (off + 4 <= rlen) {
                    uint32_t n = ((uint32_t)replies[off] << 24) |
                                 ((uint32_t)replies[off + 1] << 16) |
                                 ((uint32_t)replies[off + 2] << 8) | replies[off + 3];
                    h2t_msg m;
                    if (off + 4 + n > rlen || h2t_proto_decode(replies + off + 4, n, &m) < 0)
                        abort();
                    h2t_msg_free(&m);
                    off += 4 + n;
                }
                free(replies);
            }
        }
    }
    h2t_proto_reader_free(&rd);
    return 0;
}
