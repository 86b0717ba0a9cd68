/*
 * tests/runner.c - runs every registered test in a forked child with a timeout and a fresh
 * temporary directory. Usage: h2tdb-tests [-l] [-j N] [PATTERN...]   (PATTERN: substring of
 * the test name; T=... in make). Last line: "tests: N passed, M failed".
 */
#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    test_fn fn;
    int timeout_s;
} test_case;

static test_case *cases;
static int n_cases, cap_cases;
static char tmpdir_path[4096];
static char srcdir[4096];

void test_register(const char *name, test_fn fn, int timeout_s)
{
    if (n_cases == cap_cases) {
        cap_cases = cap_cases ? 2 * cap_cases : 256;
        cases = realloc(cases, (size_t)cap_cases * sizeof(*cases));
        if (!cases)
            abort();
    }
    cases[n_cases++] = (test_case){name, fn, timeout_s};
}

const char *test_src_path(const char *rel)
{
    static char ring[8][4096];
    static int k;
    char *b = ring[k++ & 7];
    snprintf(b, 4096, "%s/%s", srcdir, rel);
    return b;
}

const char *test_tmpdir(void)
{
    return tmpdir_path;
}

void test_fail(void)
{
    fflush(stdout);
    fflush(stderr);
    _exit(1);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    chmod(p, 0700); /* tests make read-only dirs on purpose */
    return remove(p);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const test_case *)a)->name, ((const test_case *)b)->name);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run_one(const test_case *tc, const char *base)
{
    snprintf(tmpdir_path, sizeof(tmpdir_path), "%s/%s.XXXXXX", base, tc->name);
    if (!mkdtemp(tmpdir_path)) {
        fprintf(stderr, "runner: mkdtemp %s: %s\n", tmpdir_path, strerror(errno));
        return 1;
    }
    double t0 = now_s();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        if (chdir(tmpdir_path) != 0)
            _exit(2);
        setenv("H2T_TEST_DIR", tmpdir_path, 1);
        alarm((unsigned)tc->timeout_s);
        tc->fn();
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    kill(-pid, SIGKILL); /* anything the test left running */
    double el = now_s() - t0;
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok) {
        printf("ok   %-48s %7.2fs\n", tc->name, el);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        printf("FAIL %-48s timed out after %ds\n", tc->name, tc->timeout_s);
    } else if (WIFSIGNALED(status)) {
        printf("FAIL %-48s killed by signal %d (%s)\n", tc->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    } else {
        printf("FAIL %-48s exit %d\n", tc->name, WEXITSTATUS(status));
    }
    fflush(stdout);
    nftw(tmpdir_path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return !ok;
}

int main(int argc, char **argv)
{
    int list = 0;
    const char *pats[64];
    int npats = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-l"))
            list = 1;
        else if (npats < 64)
            pats[npats++] = argv[i];
    }
    const char *sd = getenv("H2T_SRCDIR");
    if (sd)
        snprintf(srcdir, sizeof(srcdir), "%s", sd);
    else if (!getcwd(srcdir, sizeof(srcdir)))
        snprintf(srcdir, sizeof(srcdir), ".");
    setenv("H2T_SRCDIR", srcdir, 1);
    qsort(cases, (size_t)n_cases, sizeof(*cases), by_name);

    char base[4096];
    const char *t = getenv("TMPDIR");
    snprintf(base, sizeof(base), "%s/h2tdb-tests.XXXXXX", t ? t : "/tmp");
    if (!list && !mkdtemp(base)) {
        fprintf(stderr, "runner: cannot create %s: %s\n", base, strerror(errno));
        return 2;
    }
    int passed = 0, failed = 0;
    char failed_names[8192] = "";
    for (int i = 0; i < n_cases; i++) {
        int match = npats == 0;
        for (int k = 0; k < npats && !match; k++)
            match = strstr(cases[i].name, pats[k]) != NULL;
        if (!match)
            continue;
        if (list) {
            printf("%s\n", cases[i].name);
            continue;
        }
        if (run_one(&cases[i], base)) {
            failed++;
            size_t l = strlen(failed_names);
            snprintf(failed_names + l, sizeof(failed_names) - l, " %s", cases[i].name);
        } else {
            passed++;
        }
    }
    if (list)
        return 0;
    rmdir(base);
    if (failed)
        printf("failed:%s\n", failed_names);
    printf("tests: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
