/*
 * tests/test_python.c - the Python client (python/h2tdb) against a real server: a synthetic
 * store and a server with a token in this process, then /usr/bin/python3 (or $H2T_PYTHON)
 * running python/tests/test_client.py from the source tree (the protocol module generated at
 * import by protoc), and the documented install (pip into a venv that sees Debian's
 * python3-protobuf and python3-numpy, offline) used from outside the tree.
 *
 * The server's runner is the solver, except for tasks whose name starts with "slow": those
 * report progress every 10 ms for up to 30 s first (stage "sleeping"), so that the Python
 * tests can watch progress and cancel a running job; and tasks named "fail*", whose jobs
 * fail with an error naming the task. The server's frame limit is 64 KiB (PY_MAX_FRAME), so
 * that a request can exceed it. python_client_classify serves a store extracted from PNG
 * images with tests/data/extract_tiny.onnx and runs python/tests/test_classify.py.
 */
#include "tests/fixture.h"
#include "tests/srv_thread.h"
#include "tests/test.h"

#include "common/err.h"
#include "extract/extract.h"
#include "server/server.h"
#include "storage/store.h"

#include <errno.h>
#include <png.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_SAMPLES 240
#define N_CLASSES 3
#define PY_MAX_FRAME 65536

/* Layer l1 (8 features) carries the class, layer l2 (4) does not. 180 train, 60 test. */
static float fixture_value(void *ctx, uint32_t l, uint32_t i, uint32_t j, uint32_t label)
{
    if (l == 0)
        return fixture_lcg_unit(ctx) - 0.5f + (j == label ? 2.0f : 0.0f);
    return (float)((i * 7 + j) % 5) * 0.1f;
}

static h2t_store *fixture(void)
{
    static const char *const names[N_CLASSES] = {"alpha", "beta", "gamma"};
    static const h2t_layer_info layers[2] = {
        {.name = "l1", .op = "Relu", .rank = 2, .shape = {8}, .dim = 8},
        {.name = "l2", .op = "Gemm", .rank = 2, .shape = {4}, .dim = 4},
    };
    uint64_t s = 12345;
    fixture_spec sp = {.source = {.uri = "synth:", .hash = 1, .class_names = names},
                       .model = {.hash = 2},
                       .ext = {.config = "synthetic", .hash = 3, .target_size = 512, .done = 1},
                       .samples = {.n = N_SAMPLES, .classes = N_CLASSES, .train = 180},
                       FIXTURE_LAYERS(layers),
                       .features = {.written = N_SAMPLES, .value = fixture_value, .ctx = &s}};
    h2t_store *st = NULL;
    ASSERT_OK(fixture_store_build("store", H2T_STORE_CREATE, &sp, &st, NULL));
    return st;
}

static int py_runner(void *ud, h2t_store *st, const h2t_task *task, const h2t_train_spec *spec,
                     h2t_solver_progress_fn progress, void *pud, const atomic_int *cancel,
                     void **blob, size_t *len)
{
    (void)ud;
    if (!strncmp(task->name, "fail", 4))
        return h2t_err_set(H2T_EINVAL, "task %s fails on purpose", task->name);
    if (!strncmp(task->name, "slow", 4)) {
        for (int i = 0; i < 3000; i++) {
            if (atomic_load(cancel))
                return h2t_err_set(H2T_ECANCELED, "cancelled at step %d", i);
            progress(pud, (double)i / 3000, "sleeping");
            usleep(10000);
        }
    }
    return h2t_srv_runner_solver(NULL, st, task, spec, progress, pud, cancel, blob, len);
}

/* A server with a token and py_runner on st (the synthetic store when NULL); more (may be
 * NULL) sets more of the configuration before the start. */
static void start_with(test_srv *t, h2t_store *st, void (*more)(h2t_srv_config *))
{
    FILE *f = fopen("token", "w");
    ASSERT(f);
    fputs("py-s3cret-token-0123\n", f);
    fclose(f);
    ASSERT_EQ(chmod("token", 0600), 0);
    t->st = st ? st : fixture();
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    cfg.token_file = "token";
    cfg.runner = py_runner;
    cfg.max_frame = PY_MAX_FRAME;
    if (more)
        more(&cfg);
    test_srv_start(t, &cfg);
}

static void start(test_srv *t)
{
    start_with(t, NULL, NULL);
}

/* classify: the model found in the source tree's tests/data, at most 8 images a request */
static void classify_cfg(h2t_srv_config *cfg)
{
    cfg->models_dir = test_src_path("tests/data");
    cfg->classify_max_images = 8;
}

static const char *python(void)
{
    const char *p = getenv("H2T_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

/* Gray 12 x 10 PNG number i of class i % 3 (a class-dependent brightness plus noise) at
 * imgs/cK/NN.png: the folder source numbers the samples by class folder, then file name. */
static void write_png(uint32_t i)
{
    uint8_t px[120];
    uint64_t s = 7 + i;
    for (int k = 0; k < 120; k++)
        px[k] = (uint8_t)(fixture_lcg_unit(&s) * 100.0f + (float)(i % 3) * 70.0f);
    char path[64];
    snprintf(path, sizeof(path), "imgs/c%u", i % 3);
    if (i < 3)
        ASSERT_EQ(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "imgs/c%u/%02u.png", i % 3, i);
    png_image im;
    memset(&im, 0, sizeof(im));
    im.version = PNG_IMAGE_VERSION;
    im.width = 12;
    im.height = 10;
    im.format = PNG_FORMAT_GRAY;
    ASSERT(png_image_write_to_file(&im, path, 0, px, 0, NULL));
}

/* 12 such images extracted with tests/data/extract_tiny.onnx at T = 8 into store "st" (layers
 * conv 8, relu 8, gap 2, fc 3), so that the server can classify new images with the model. */
static h2t_store *image_store(void)
{
    ASSERT_EQ(mkdir("imgs", 0755), 0);
    for (uint32_t i = 0; i < 12; i++)
        write_png(i);
    h2t_extract_opts o;
    h2t_extract_opts_init(&o);
    o.model_path = test_src_path("tests/data/extract_tiny.onnx");
    o.data_spec = "folder:imgs";
    o.name = "imgs";
    o.target_size = 8;
    h2t_extract_plan *plan = NULL;
    ASSERT_OK(h2t_extract_plan_create(&o, &plan));
    h2t_store *st = NULL;
    ASSERT_OK(h2t_store_open("st", H2T_STORE_CREATE | H2T_STORE_NOSYNC, &st));
    h2t_extract_result r;
    ASSERT_OK(h2t_extract_plan_run(plan, st, &r));
    h2t_extract_plan_destroy(plan);
    return st;
}

/* Run /bin/sh -c script with the server's address and token file in the environment
 * (H2TDB_TEST_ADDR, H2TDB_TEST_TOKEN_FILE, PY = the interpreter, SRC = the source tree);
 * returns its exit status. */
static int run_sh(const test_srv *t, const char *script)
{
    char tok[4096];
    snprintf(tok, sizeof(tok), "%s/token", test_tmpdir());
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("H2TDB_TEST_ADDR", t->addr, 1);
        setenv("H2TDB_TEST_TOKEN_FILE", tok, 1);
        char max[32];
        snprintf(max, sizeof(max), "%d", PY_MAX_FRAME);
        setenv("H2TDB_TEST_MAX_FRAME", max, 1);
        char imgs[4096];
        snprintf(imgs, sizeof(imgs), "%s/imgs", test_tmpdir());
        setenv("H2TDB_TEST_IMAGES", imgs, 1);
        setenv("PY", python(), 1);
        setenv("SRC", test_src_path(""), 1);
        setenv("PYTHONDONTWRITEBYTECODE", "1", 1); /* nothing written into the source tree */
        unsetenv("H2T_TOKEN_FILE");
        unsetenv("H2T_SERVER");
        unsetenv("PYTHONPATH");
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST_TIMEOUT(python_client, 120)
{
    test_srv t = {0};
    start(&t);
    int rc = run_sh(&t, "cd \"$SRC/python\" && PYTHONPATH=\"$SRC/python\" \"$PY\" "
                        "tests/test_client.py 2>&1");
    ASSERT_EQ(rc, 0);
    test_srv_finish(&t);
}

TEST_TIMEOUT(python_client_install, 120)
{
    test_srv t = {0};
    start(&t);
    /* a copy of the package and the .proto, laid out as in the repository, installed
     * offline into a venv that sees the system's packages, then used from elsewhere */
    int rc = run_sh(&t, "set -e; mkdir -p src/python; cp -r \"$SRC/proto\" src/; "
                        "cp -r \"$SRC/python/setup.py\" \"$SRC/python/h2tdb\" src/python/; "
                        "\"$PY\" -m venv --system-site-packages --without-pip venv; "
                        "venv/bin/python -m pip install -q --no-index --no-cache-dir "
                        "./src/python 2>&1; "
                        "rm -rf src; cd /; "
                        "\"$OLDPWD/venv/bin/python\" \"$SRC/python/tests/installed.py\" 2>&1");
    ASSERT_EQ(rc, 0);
    test_srv_finish(&t);
}

TEST_TIMEOUT(python_client_classify, 120)
{
    test_srv t = {0};
    start_with(&t, image_store(), classify_cfg);
    int rc = run_sh(&t, "cd \"$SRC/python\" && PYTHONPATH=\"$SRC/python\" \"$PY\" "
                        "tests/test_classify.py 2>&1");
    ASSERT_EQ(rc, 0);
    test_srv_finish(&t);
}
