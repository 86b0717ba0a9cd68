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
#include "tests/fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static h2t_srv *srv;
static h2t_store *st;

static float fixture_value(void *ctx, uint32_t l, uint32_t i, uint32_t j, uint32_t label)
{
    (void)ctx;
    (void)l;
    (void)label;
    return (float)(i * 3 + j);
}

/* "ext": 8 samples (6 train), 2 classes, one layer "l" of 3 features; a task "t" on it. */
static void fixture(const char *dir)
{
    static const char *const names[2] = {"a", "b"};
    static const h2t_layer_info L[] = {{.name = "l", .rank = 2, .shape = {3}, .dim = 3}};
    fixture_spec sp = {.source = {.name = "s", .class_names = names},
                       .model = {.name = "m"},
                       .samples = {.n = 8, .classes = 2, .train = 6},
                       FIXTURE_LAYERS(L),
                       .features = {.written = 8, .value = fixture_value}};
    if (fixture_store_build(dir, H2T_STORE_CREATE, &sp, &st, NULL) < 0)
        abort();
    h2t_msg_task_spec spec = {.name = "t", .extraction = "ext", .train = "train"};
    h2t_task *t = NULL;
    if (h2t_srv_task_build(st, &spec, 0, &t) < 0 || h2t_store_task_put(st, t, 0) < 0)
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
    fixture(dir);
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.workers = 0; /* jobs are queued and stored, never run: the fuzzer stays fast */
    cfg.max_frame = 1u << 20;
    if (fixture_srv_start(&cfg, st, NULL, NULL, &srv, NULL, 0) < 0)
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
