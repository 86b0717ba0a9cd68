/*
 * tests/test_server_jobs.c - what train jobs share: the design-matrix cache (solver.h
 * h2t_design_cache, used by the server's default runner) and the reuse of finished jobs whose
 * spec a submit repeats (TrainRequest.retrain, Job.reused), through a real server and client.
 */
#include "tests/fixture.h"
#include "tests/srv_thread.h"
#include "tests/test.h"

#include "client/client.h"
#include "common/err.h"
#include "common/util.h"
#include "server/server.h"
#include "solver/solver.h"
#include "storage/store.h"

#include <pthread.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS 300
#define NC 3

/* One extraction "ext": 3 layers (16, 8, 4 features; class signal in the first two),
 * 240 train + 60 test samples. */
static float fixture_value(void *ctx, uint32_t l, uint32_t i, uint32_t j, uint32_t label)
{
    (void)i;
    return fixture_lcg_unit(ctx) - 0.5f + (l < 2 && j == label * (l + 1) ? 1.5f : 0.f);
}

static h2t_store *fixture(void)
{
    static const char *const names[NC] = {"a", "b", "c"};
    static const h2t_layer_info layers[3] = {
        {.name = "l0", .op = "Relu", .rank = 2, .shape = {16}, .dim = 16},
        {.name = "l1", .op = "Relu", .rank = 2, .shape = {8}, .dim = 8},
        {.name = "l2", .op = "Relu", .rank = 2, .shape = {4}, .dim = 4},
    };
    uint64_t s = 99;
    fixture_spec sp = {.source = {.hash = 1, .class_names = names},
                       .ext = {.hash = 7, .done = 1},
                       .samples = {.n = NS, .classes = NC, .train = 240},
                       FIXTURE_LAYERS(layers),
                       .features = {.written = NS, .value = fixture_value, .ctx = &s}};
    h2t_store *st = NULL;
    ASSERT_OK(fixture_store_build("store", H2T_STORE_CREATE, &sp, &st, NULL));
    return st;
}

static h2t_task *make_task(h2t_store *st, const char *train)
{
    h2t_msg_task_spec sp = {0};
    sp.name = "t";
    sp.extraction = "ext";
    sp.train = train;
    sp.test = "test";
    h2t_task *t = NULL;
    ASSERT_OK(h2t_srv_task_build(st, &sp, 0, &t));
    return t;
}

static void spec_for(h2t_train_spec *s, uint32_t method, uint64_t seed)
{
    h2t_train_spec_default(s, method);
    s->folds = 3;
    s->seed = seed;
    s->threads = 1;
    if (method == H2T_METHOD_HEAD2TOE) {
        s->n_lambdas = 1;
        s->lambdas[0] = 1e-3;
        s->n_keeps = 2;
        s->keeps[0] = 0.25;
        s->keeps[1] = 0.5;
    }
}

/* The numbers of two results are the same bits (timings aside). */
static void same_result(const h2t_result *a, const h2t_result *b)
{
    ASSERT_EQ(a->n_kept, b->n_kept);
    ASSERT_EQ(a->n_classes, b->n_classes);
    ASSERT_EQ(a->n_layers, b->n_layers);
    ASSERT_EQ(a->total_dim, b->total_dim);
    ASSERT(a->test_acc == b->test_acc && a->val_acc == b->val_acc);
    ASSERT(a->lambda == b->lambda && a->keep == b->keep);
    ASSERT(!memcmp(a->layer_ids, b->layer_ids, a->n_layers * sizeof(uint32_t)));
    ASSERT(!memcmp(a->features, b->features, a->n_kept * sizeof(h2t_feature_ref)));
    ASSERT(!memcmp(a->weights, b->weights, (size_t)a->n_kept * a->n_classes * sizeof(float)));
    ASSERT(!memcmp(a->bias, b->bias, a->n_classes * sizeof(float)));
}

TEST(server_design_cache_once_and_identical)
{
    h2t_store *st = fixture();
    h2t_task *task = make_task(st, "train");
    h2t_design_cache *dc = NULL;
    ASSERT_OK(h2t_design_cache_create(1u << 30, &dc));
    h2t_train_spec s1, s2, s3;
    spec_for(&s1, H2T_METHOD_HEAD2TOE, 0);
    spec_for(&s2, H2T_METHOD_ALL, 0);
    spec_for(&s3, H2T_METHOD_LINEAR, 0);
    h2t_result *ref1 = NULL, *ref3 = NULL, *r1 = NULL, *r2 = NULL, *r3 = NULL, *again = NULL;
    ASSERT_OK(h2t_solver_run(st, task, &s1, NULL, NULL, NULL, &ref1)); /* separate loads */
    ASSERT_OK(h2t_solver_run(st, task, &s3, NULL, NULL, NULL, &ref3));
    ASSERT_OK(h2t_solver_run_cached(dc, st, task, &s1, NULL, NULL, NULL, &r1));
    h2t_design_cache_stats ds;
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.loads, 1);
    ASSERT_EQ(ds.hits, 0);
    ASSERT_EQ(ds.entries, 1);
    ASSERT_EQ(ds.in_use, 0);
    ASSERT_EQ(ds.bytes, (uint64_t)NS * 28 * sizeof(float));
    /* another method and a linear probe (one of the layers) on the same samples: no load */
    ASSERT_OK(h2t_solver_run_cached(dc, st, task, &s2, NULL, NULL, NULL, &r2));
    ASSERT_OK(h2t_solver_run_cached(dc, st, task, &s3, NULL, NULL, NULL, &r3));
    ASSERT_OK(h2t_solver_run_cached(dc, st, task, &s1, NULL, NULL, NULL, &again));
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.loads, 1);
    ASSERT_EQ(ds.hits, 3);
    same_result(r1, ref1);
    same_result(again, ref1);
    same_result(r3, ref3);
    ASSERT_EQ(r3->n_layers, 1);
    /* another sample list is another matrix */
    h2t_task *other = make_task(st, "train:120");
    h2t_result *r4 = NULL;
    ASSERT_OK(h2t_solver_run_cached(dc, st, other, &s1, NULL, NULL, NULL, &r4));
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.loads, 2);
    ASSERT_EQ(ds.entries, 2);
    ASSERT_EQ(r4->n_train, 120);
    h2t_result_destroy(r4);
    h2t_task_destroy(other);
    h2t_result_destroy(ref1);
    h2t_result_destroy(ref3);
    h2t_result_destroy(r1);
    h2t_result_destroy(r2);
    h2t_result_destroy(r3);
    h2t_result_destroy(again);
    h2t_design_cache_destroy(dc);
    h2t_task_destroy(task);
    h2t_store_close(st);
}

TEST(server_design_cache_budget_frees)
{
    h2t_store *st = fixture();
    h2t_task *a = make_task(st, "train");
    h2t_task *b = make_task(st, "train:150");
    h2t_train_spec s;
    spec_for(&s, H2T_METHOD_ALL, 0);
    h2t_design_cache_stats ds;
    h2t_result *r = NULL;
    /* budget 0: freed when the last job releases it */
    h2t_design_cache *dc = NULL;
    ASSERT_OK(h2t_design_cache_create(0, &dc));
    ASSERT_OK(h2t_solver_run_cached(dc, st, a, &s, NULL, NULL, NULL, &r));
    h2t_result_destroy(r);
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.entries, 0);
    ASSERT_EQ(ds.bytes, 0);
    ASSERT_OK(h2t_solver_run_cached(dc, st, a, &s, NULL, NULL, NULL, &r));
    h2t_result_destroy(r);
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.loads, 2); /* nothing was kept to share */
    h2t_design_cache_destroy(dc);
    /* a budget for one matrix: the least recently used one goes */
    uint64_t one = (uint64_t)NS * 28 * sizeof(float);
    ASSERT_OK(h2t_design_cache_create(one, &dc));
    ASSERT_OK(h2t_solver_run_cached(dc, st, a, &s, NULL, NULL, NULL, &r));
    h2t_result_destroy(r);
    ASSERT_OK(h2t_solver_run_cached(dc, st, b, &s, NULL, NULL, NULL, &r));
    h2t_result_destroy(r);
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.entries, 1);
    ASSERT_LE(ds.bytes, one);
    ASSERT_OK(h2t_solver_run_cached(dc, st, b, &s, NULL, NULL, NULL, &r)); /* b stayed */
    h2t_result_destroy(r);
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.loads, 2);
    ASSERT_EQ(ds.hits, 1);
    /* a cancelled job's load leaves nothing behind */
    h2t_task *c = make_task(st, "train:90");
    atomic_int cancel;
    atomic_init(&cancel, 1);
    ASSERT_EQ(h2t_solver_run_cached(dc, st, c, &s, NULL, NULL, &cancel, &r), H2T_ECANCELED);
    h2t_design_cache_stats_get(dc, &ds);
    ASSERT_EQ(ds.entries, 1);
    ASSERT_EQ(ds.in_use, 0);
    h2t_task_destroy(c);
    h2t_design_cache_destroy(dc);
    h2t_task_destroy(a);
    h2t_task_destroy(b);
    h2t_store_close(st);
}

typedef struct cc_arg {
    h2t_design_cache *dc;
    h2t_store *st;
    const h2t_task *task;
    h2t_train_spec spec;
    h2t_result *res;
    int rc;
} cc_arg;

static void *cc_main(void *p)
{
    cc_arg *a = p;
    a->rc = h2t_solver_run_cached(a->dc, a->st, a->task, &a->spec, NULL, NULL, NULL, &a->res);
    return NULL;
}

TEST(server_design_cache_concurrent_jobs)
{
    h2t_store *st = fixture();
    h2t_task *task = make_task(st, "train");
    h2t_design_cache *dc = NULL;
    ASSERT_OK(h2t_design_cache_create(0, &dc));
    cc_arg a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (cc_arg){.dc = dc, .st = st, .task = task};
        spec_for(&a[i].spec, i % 2 ? H2T_METHOD_LINEAR : H2T_METHOD_HEAD2TOE, 0);
        ASSERT_EQ(pthread_create(&th[i], NULL, cc_main, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ASSERT_OK(a[i].rc);
    }
    h2t_design_cache_stats ds;
    h2t_design_cache_stats_get(dc, &ds);
    /* the jobs that overlapped shared a load; every matrix is freed once all are done */
    ASSERT_EQ(ds.loads + ds.hits, 4);
    ASSERT_EQ(ds.entries, 0);
    ASSERT_EQ(ds.bytes, 0);
    h2t_result *ref = NULL;
    ASSERT_OK(h2t_solver_run(st, task, &a[0].spec, NULL, NULL, NULL, &ref));
    same_result(a[0].res, ref);
    same_result(a[2].res, ref);
    same_result(a[1].res, a[3].res);
    h2t_result_destroy(ref);
    for (int i = 0; i < 4; i++)
        h2t_result_destroy(a[i].res);
    h2t_design_cache_destroy(dc);
    h2t_task_destroy(task);
    h2t_store_close(st);
}

/* ---- through the server ---- */

/* a runner that fails seed 13 and sleeps (until cancelled) on seed 14, else the solver */
static int test_runner(void *ud, h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                       h2t_solver_progress_fn progress, void *pud, const atomic_int *cancel,
                       void **blob, size_t *len)
{
    if (spec->seed == 13)
        return h2t_err_set(H2T_EINVAL, "seed 13 fails");
    while (spec->seed == 14) {
        if (atomic_load(cancel))
            return h2t_err_set(H2T_ECANCELED, "cancelled");
        progress(pud, 0.5, "sleeping");
        usleep(5000);
    }
    return h2t_srv_runner_solver(ud, st, task, spec, progress, pud, cancel, blob, len);
}

static void start(test_srv *t, int custom)
{
    t->st = fixture();
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    if (custom)
        cfg.runner = test_runner;
    test_srv_start(t, &cfg);
}

static void create_task(h2t_client *c, const char *name, const char *train, int replace)
{
    h2t_msg req = {.type = H2T_MSG_CREATE_TASK}, rep;
    req.u.create_task.name = name;
    req.u.create_task.extraction = "ext";
    req.u.create_task.train = train;
    req.u.create_task.test = "test";
    req.u.create_task.replace = replace;
    ASSERT_OK(h2t_client_call(c, &req, H2T_MSG_TASK, &rep));
    h2t_msg_free(&rep);
}

/* A small head2toe request; the caller changes one field. */
static h2t_msg_train base_train(void)
{
    h2t_msg_train t = {0};
    t.task = "t";
    t.spec.method = H2T_METHOD_HEAD2TOE;
    t.spec.lambdas[0] = 1e-3;
    t.spec.n_lambdas = 1;
    t.spec.keeps[0] = 0.5;
    t.spec.n_keeps = 1;
    t.spec.folds = 2;
    return t;
}

/* Submit; *reused gets the reply's mark. */
static uint64_t submit(h2t_client *c, const h2t_msg_train *t, int *reused)
{
    h2t_msg req = {.type = H2T_MSG_TRAIN}, rep;
    req.u.train = *t;
    ASSERT_OK(h2t_client_call(c, &req, H2T_MSG_JOB, &rep));
    uint64_t id = rep.u.job.id;
    *reused = rep.u.job.reused;
    if (*reused)
        ASSERT_EQ(rep.u.job.state, H2T_JOB_DONE);
    h2t_msg_free(&rep);
    return id;
}

static int watch(h2t_client *c, uint64_t id)
{
    h2t_msg fin;
    ASSERT_OK(h2t_client_watch(c, id, NULL, NULL, &fin));
    int st = fin.u.job.state;
    h2t_msg_free(&fin);
    return st;
}

static void health(h2t_client *c, h2t_msg_health *out)
{
    h2t_msg req = {.type = H2T_MSG_HEALTH_REQ}, rep;
    ASSERT_OK(h2t_client_call(c, &req, H2T_MSG_HEALTH, &rep));
    *out = rep.u.health;
    out->version = NULL;
    h2t_msg_free(&rep);
}

TEST(server_reuse_identical_spec_only)
{
    test_srv t = {0};
    start(&t, 1);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    create_task(c, "t", "train", 0);
    create_task(c, "t2", "train", 0); /* the same samples under another name */
    h2t_msg_train base = base_train();
    int reused;
    uint64_t first = submit(c, &base, &reused);
    ASSERT_EQ(reused, 0);
    ASSERT_EQ(watch(c, first), H2T_JOB_DONE);
    /* the identical spec: that job, marked reused */
    ASSERT_EQ(submit(c, &base, &reused), first);
    ASSERT_EQ(reused, 1);
    /* defaults spelled out are the same spec: steps and lr are the defaults (500, 0.01) */
    h2t_msg_train same = base;
    same.spec.steps = 500;
    same.spec.lr = 0.01;
    ASSERT_EQ(submit(c, &same, &reused), first);
    ASSERT_EQ(reused, 1);
    /* every differing option is a new job */
    h2t_msg_train v[11];
    for (int i = 0; i < 11; i++)
        v[i] = base;
    v[0].spec.method = H2T_METHOD_ALL;
    v[1].spec.optimizer = H2T_OPT_ADAM;
    v[2].spec.lambdas[0] = 1e-2;
    v[3].spec.keeps[0] = 0.25;
    v[4].spec.folds = 3;
    v[5].spec.steps = 50;
    v[6].spec.lr = 0.05;
    v[7].spec.seed = 1;
    v[8].spec.threads = 1;
    v[9].task = "t2";
    v[10].spec.n_keeps = 0; /* the default keep grid */
    uint64_t ids[11];
    for (int i = 0; i < 11; i++) {
        ids[i] = submit(c, &v[i], &reused);
        if (reused || ids[i] == first)
            TEST_FAILF("variant %d was reused", i);
    }
    for (int i = 0; i < 11; i++)
        ASSERT_EQ(watch(c, ids[i]), H2T_JOB_DONE);
    /* --retrain runs again, and the newest finished job is the one reused next */
    h2t_msg_train re = base;
    re.retrain = 1;
    uint64_t again = submit(c, &re, &reused);
    ASSERT_EQ(reused, 0);
    ASSERT_NE(again, first);
    ASSERT_EQ(watch(c, again), H2T_JOB_DONE);
    ASSERT_EQ(submit(c, &base, &reused), again);
    ASSERT_EQ(reused, 1);
    /* the task replaced with other samples under the same name: a new job */
    create_task(c, "t", "train:150", 1);
    uint64_t other = submit(c, &base, &reused);
    ASSERT_EQ(reused, 0);
    ASSERT_EQ(watch(c, other), H2T_JOB_DONE);
    /* ... and replaced again with its first samples: the first content, reused */
    create_task(c, "t", "train", 1);
    ASSERT_EQ(submit(c, &base, &reused), again);
    ASSERT_EQ(reused, 1);
    h2t_client_close(c);
    test_srv_finish(&t);
}

/* the results versions a test server answers with (results_version below) */
static uint32_t test_versions[H2T_METHOD_COUNT];

static uint32_t test_results_version(uint32_t method)
{
    return method < H2T_METHOD_COUNT ? test_versions[method] : 0;
}

TEST(server_reuse_only_under_the_same_results_version)
{
    /* the solver's own: every method has a version, auto's rises with a candidate's */
    for (uint32_t m = 0; m < H2T_METHOD_COUNT; m++)
        ASSERT(h2t_solver_results_version(m) >= 1);
    ASSERT_EQ(h2t_solver_results_version(H2T_METHOD_COUNT), 0);
    uint32_t raised = 0;
    for (uint32_t m = 0; m < H2T_METHOD_AUTO; m++)
        raised += h2t_solver_results_version(m) - 1;
    ASSERT(h2t_solver_results_version(H2T_METHOD_AUTO) >= 1 + raised);

    for (uint32_t m = 0; m < H2T_METHOD_COUNT; m++)
        test_versions[m] = 1;
    test_srv t = {0};
    t.st = fixture();
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.results_version = test_results_version;
    test_srv_start(&t, &cfg);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    create_task(c, "t", "train", 0);
    h2t_msg_train h2t = base_train(), all = base_train();
    all.spec.method = H2T_METHOD_ALL;
    all.spec.n_keeps = 0;
    int reused;
    uint64_t h1 = submit(c, &h2t, &reused), a1 = submit(c, &all, &reused);
    ASSERT_EQ(watch(c, h1), H2T_JOB_DONE);
    ASSERT_EQ(watch(c, a1), H2T_JOB_DONE);
    /* version 1 adds nothing to the digest, so version 1 jobs stay the stored jobs' match */
    ASSERT_EQ(submit(c, &h2t, &reused), h1);
    ASSERT_EQ(reused, 1);
    /* head2toe's results change: its job trains again, all layers' is still reused */
    test_versions[H2T_METHOD_HEAD2TOE] = 2;
    uint64_t h2 = submit(c, &h2t, &reused);
    ASSERT_EQ(reused, 0);
    ASSERT_NE(h2, h1);
    ASSERT_EQ(watch(c, h2), H2T_JOB_DONE);
    ASSERT_EQ(submit(c, &all, &reused), a1);
    ASSERT_EQ(reused, 1);
    /* ... and the job trained under version 2 is the one reused under version 2 */
    ASSERT_EQ(submit(c, &h2t, &reused), h2);
    ASSERT_EQ(reused, 1);
    h2t_client_close(c);
    test_srv_finish(&t);
}

TEST(server_reuse_not_failed_or_cancelled)
{
    test_srv t = {0};
    start(&t, 1);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    create_task(c, "t", "train", 0);
    int reused;
    h2t_msg_train bad = base_train();
    bad.spec.seed = 13;
    uint64_t f1 = submit(c, &bad, &reused);
    ASSERT_EQ(watch(c, f1), H2T_JOB_FAILED);
    uint64_t f2 = submit(c, &bad, &reused);
    ASSERT_EQ(reused, 0);
    ASSERT_NE(f2, f1);
    ASSERT_EQ(watch(c, f2), H2T_JOB_FAILED);
    h2t_msg_train slow = base_train();
    slow.spec.seed = 14;
    uint64_t s1 = submit(c, &slow, &reused);
    /* while it runs, the same spec is not "finished": a new (queued) job */
    uint64_t s2 = submit(c, &slow, &reused);
    ASSERT_EQ(reused, 0);
    ASSERT_NE(s2, s1);
    h2t_msg q = {.type = H2T_MSG_CANCEL_JOB}, rep;
    q.u.job_ref.job = s2;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    h2t_msg_free(&rep);
    q.u.job_ref.job = s1;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    h2t_msg_free(&rep);
    ASSERT_EQ(watch(c, s1), H2T_JOB_CANCELLED);
    ASSERT_EQ(watch(c, s2), H2T_JOB_CANCELLED);
    uint64_t s3 = submit(c, &slow, &reused);
    ASSERT_EQ(reused, 0);
    ASSERT(s3 != s1 && s3 != s2);
    q.u.job_ref.job = s3;
    ASSERT_OK(h2t_client_call(c, &q, H2T_MSG_JOB, &rep));
    h2t_msg_free(&rep);
    ASSERT_EQ(watch(c, s3), H2T_JOB_CANCELLED);
    h2t_client_close(c);
    test_srv_finish(&t);
}

TEST(server_jobs_share_one_design_matrix)
{
    test_srv t = {0};
    start(&t, 0); /* the default runner: the server's cache */
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    create_task(c, "t", "train", 0);
    int reused;
    h2t_msg_train a = base_train(), b = base_train();
    b.spec.seed = 5; /* another job on the same matrix */
    uint64_t ja = submit(c, &a, &reused);
    uint64_t jb = submit(c, &b, &reused);
    ASSERT_EQ(watch(c, ja), H2T_JOB_DONE);
    ASSERT_EQ(watch(c, jb), H2T_JOB_DONE);
    h2t_msg_health h;
    health(c, &h);
    ASSERT_EQ(h.design_loads, 1);
    ASSERT_EQ(h.design_hits, 1);
    ASSERT_EQ(h.designs, 1);
    ASSERT_EQ(h.design_bytes, (uint64_t)NS * 28 * sizeof(float));
    h2t_client_close(c);
    test_srv_finish(&t);
}

/* ---- the command line ---- */

static int run_cli(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_cli(char *out, size_t n, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    const char *bin = getenv("H2T_BIN"); /* make test: the ASan build of h2tdb */
    ASSERT(bin != NULL);
    snprintf(cmd, sizeof(cmd), "%s %s", bin, args);
    FILE *p = popen(cmd, "r");
    ASSERT(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_TIMEOUT(server_cli_train_reused_and_retrain, 120)
{
    test_srv t = {0};
    start(&t, 0);
    h2t_client *c = NULL;
    ASSERT_OK(h2t_client_connect(t.addr, NULL, 20000, &c));
    create_task(c, "t", "train", 0);
    h2t_client_close(c);
    char out[4096];
    const char *opts = "--task t --method linear --lambdas 1e-3 --folds 2";
    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s %s --wait", t.addr, opts), 0);
    unsigned long long first = 0;
    ASSERT(sscanf(out, "job %llu queued", &first) == 1);
    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s %s --wait", t.addr, opts), 0);
    unsigned long long id = 0;
    if (sscanf(out, "job %llu reused", &id) != 1 || id != first)
        TEST_FAILF("expected job %llu reused, got: %s", first, out);
    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s %s --json", t.addr, opts), 0);
    ASSERT(strstr(out, "\"reused\": true") && strstr(out, "\"state\": \"done\""));
    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s %s --retrain", t.addr, opts), 0);
    ASSERT(sscanf(out, "job %llu queued", &id) == 1 && id != first);
    ASSERT_EQ(run_cli(out, sizeof(out), "train --server %s %s --seed 3", t.addr, opts), 0);
    ASSERT(strstr(out, "queued"));
    test_srv_finish(&t);
}
