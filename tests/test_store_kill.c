/* tests/test_store_kill.c - crash safety: a writer killed with SIGKILL at random points (map
 * growth included: the store starts with a 256 KiB map) loses nothing committed, and the
 * progress marker (samples_done) always agrees with the features and statistics present; a new
 * writer resumes from the marker. */
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"
#include "tests/test.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { KILL_NL = 3, KILL_N = 2000000, KILL_ROUNDS = 20 };
static const uint32_t kill_dims[KILL_NL] = {300, 7, 1024};

static uint64_t kstate;
static uint32_t krnd(void)
{
    kstate ^= kstate << 13;
    kstate ^= kstate >> 7;
    kstate ^= kstate << 17;
    return (uint32_t)(kstate >> 11);
}

static float kval(uint32_t l, uint32_t s, uint32_t j)
{
    return (float)((l * 7919u + s * 31u + j) % 100003u) * 0.01f - 500.0f;
}

static int write_batch(h2t_store *st, uint32_t ext, uint32_t first, uint32_t n, float **bufs)
{
    for (uint32_t l = 0; l < KILL_NL; l++)
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < kill_dims[l]; j++)
                bufs[l][(size_t)i * kill_dims[l] + j] = kval(l, first + i, j);
    return h2t_store_features_write(st, ext, first, n, (const float *const *)bufs);
}

/* the killed child: resume from the marker and write batches of 1..48 samples forever */
static void writer_child(uint32_t ext, uint64_t seed)
{
    kstate = seed | 1;
    h2t_store *st;
    if (h2t_store_open("db", 0, &st) != 0)
        _exit(10);
    float *bufs[KILL_NL];
    for (uint32_t l = 0; l < KILL_NL; l++)
        bufs[l] = malloc((size_t)48 * kill_dims[l] * 4);
    h2t_extraction *e;
    if (h2t_store_extraction_get(st, ext, &e) != 0)
        _exit(11);
    uint32_t at = e->samples_done;
    h2t_extraction_destroy(e);
    for (;;) {
        uint32_t n = 1 + krnd() % 48;
        if (write_batch(st, ext, at, n, bufs) != 0)
            _exit(12);
        at += n;
    }
}

static void check_store(uint32_t ext, uint32_t *done_out)
{
    h2t_store *st;
    ASSERT_OK(h2t_store_open("db", 0, &st));
    h2t_extraction *e;
    ASSERT_OK(h2t_store_extraction_get(st, ext, &e));
    uint32_t done = e->samples_done;
    h2t_extraction_destroy(e);
    for (uint32_t l = 0; l < KILL_NL; l++) {
        uint32_t dim = kill_dims[l];
        if (done) {
            float *m = malloc((size_t)done * dim * 4);
            ASSERT_OK(h2t_store_layer_read(st, ext, l, NULL, 0, done, m, dim));
            for (uint32_t s = 0; s < done; s++)
                for (uint32_t j = 0; j < dim; j++)
                    if (m[(size_t)s * dim + j] != kval(l, s, j))
                        TEST_FAILF("layer %u sample %u feature %u: %g, wrote %g (done %u)", l, s, j,
                                   m[(size_t)s * dim + j], kval(l, s, j), done);
            free(m);
        }
        float v[1024];
        int rc = h2t_store_feature_get(st, ext, l, done, v, dim);
        if (rc != H2T_ENOTFOUND)
            TEST_FAILF("layer %u: sample %u == samples_done is readable (rc %d)", l, done, rc);
        ASSERT_EQ(h2t_store_feature_get(st, ext, l, done + 47, v, dim), H2T_ENOTFOUND);
        h2t_layer_stats *s;
        ASSERT_OK(h2t_store_stats_get(st, ext, l, &s));
        ASSERT_EQ(s->count, done);
        h2t_layer_stats_destroy(s);
    }
    h2t_store_close(st);
    *done_out = done;
}

TEST_TIMEOUT(store_kill_writer_recovers, 180)
{
    uint64_t seed = h2t_now_ns() ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "  kill test seed %llu\n", (unsigned long long)seed);
    kstate = seed | 1;
    h2t_store *st;
    /* a small map, so that the killed writers also grow it */
    ASSERT_OK(h2t_store_open_map("db", H2T_STORE_CREATE, 256 << 10, &st));
    h2t_source src = {0};
    snprintf(src.name, sizeof(src.name), "big");
    src.n_samples = 0;
    uint32_t sid, mid, ext;
    int reused;
    ASSERT_OK(h2t_store_source_put(st, &src, &sid, &reused));
    h2t_model_rec m = {0};
    snprintf(m.name, sizeof(m.name), "m");
    ASSERT_OK(h2t_store_model_put(st, &m, &mid, &reused));
    h2t_layer_info L[KILL_NL];
    memset(L, 0, sizeof(L));
    for (uint32_t l = 0; l < KILL_NL; l++) {
        snprintf(L[l].name, sizeof(L[l].name), "l%u", l);
        L[l].dim = kill_dims[l];
    }
    h2t_extraction e = {0};
    e.source = sid;
    e.model = mid;
    e.n_samples = KILL_N;
    e.n_layers = KILL_NL;
    e.layers = L;
    ASSERT_OK(h2t_store_extraction_begin(st, &e, &ext, &reused));
    h2t_store_close(st);

    uint32_t prev = 0, done = 0;
    int grew = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0)
            writer_child(ext, seed + (uint64_t)round * 1000003u);
        /* random points: sometimes during open, mostly mid-stream */
        uint32_t delay_us = round % 4 == 0 ? krnd() % 2000 : 5000 + krnd() % 60000;
        usleep(delay_us);
        ASSERT_EQ(kill(pid, SIGKILL), 0);
        int status;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            TEST_FAILF("round %d: writer exited with %d before the kill", round,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        check_store(ext, &done);
        ASSERT_GE(done, prev);
        grew += done > prev;
        prev = done;
    }
    ASSERT_GT(grew, KILL_ROUNDS / 3); /* most kills landed after some progress */
    /* resume in this process from the marker, then check once more */
    ASSERT_OK(h2t_store_open("db", 0, &st));
    float *bufs[KILL_NL];
    for (uint32_t l = 0; l < KILL_NL; l++)
        bufs[l] = malloc((size_t)48 * kill_dims[l] * 4);
    ASSERT_EQ(write_batch(st, ext, done + 1, 5, bufs), H2T_ESTATE);
    ASSERT_OK(write_batch(st, ext, done, 5, bufs));
    for (uint32_t l = 0; l < KILL_NL; l++)
        free(bufs[l]);
    h2t_store_close(st);
    uint32_t after;
    check_store(ext, &after);
    ASSERT_EQ(after, done + 5);
    ASSERT_OK(h2t_store_open("db", 0, &st));
    h2t_store_meta meta;
    ASSERT_OK(h2t_store_meta_get(st, &meta));
    h2t_store_close(st);
    ASSERT_GT(meta.map_size, 256 << 10); /* the writers grew the map on the way */
    fprintf(stderr, "  %d kills, %u samples committed\n", KILL_ROUNDS, after);
}
