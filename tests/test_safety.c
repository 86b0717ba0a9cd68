/*
 * tests/test_safety.c - the command line's refusals and the store's life cycle through
 * $H2T_BIN: options outside their range, and (see the store tests for the API) rm, verify and
 * compact on a store the test builds.
 */
#include "common/err.h"
#include "common/util.h"
#include "storage/store.h"
#include "tests/fixture.h"
#include "tests/test.h"

#include <sys/wait.h>

/* run `$H2T_BIN args` through sh with stderr merged into out; the exit status */
static int run(const char *args, char *out, size_t cap)
{
    const char *b = getenv("H2T_BIN");
    if (!b || !b[0])
        TEST_FAILF("H2T_BIN is not set (make test sets it)");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", b, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        TEST_FAILF("popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Options outside their range are refused quoting the value typed and the range, never
 * clamped to another number (--steps 99999999999 was queued as 100000000). */
TEST(cli_options_out_of_range_refused)
{
    static const struct {
        const char *args, *want;
    } cases[] = {
        {"train --task t --steps 99999999999", "--steps 99999999999: want 1..100000000"},
        {"train --task t --folds 10000", "--folds 10000: want 1..100"},
        {"train --task t --threads 100000", "--threads 100000: want 0..256"},
        {"task create x --extraction e --shots 99999999999", "--shots 99999999999: want 0.."},
        {"serve --store s --workers 100000", "--workers 100000: want 1..64"},
        {"serve --store s --max-conns 0", "--max-conns 0: want 1..1000000"},
        {"serve --store s --idle-timeout 999999", "--idle-timeout 999999: want 1..86400"},
        {"serve --store s --max-frame 99999999999", "--max-frame 99999999999: want 1024.."},
        {"serve --store s --max-selection 0", "--max-selection 0: want 1..1073741824"},
    };
    char out[8192];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = run(cases[i].args, out, sizeof(out));
        if (rc != 2 || !strstr(out, cases[i].want))
            TEST_FAILF("h2tdb %s: exit %d, output:\n%s\n(wanted exit 2 and \"%s\")", cases[i].args,
                       rc, out, cases[i].want);
    }
}
