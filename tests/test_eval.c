/*
 * tests/test_eval.c - the evaluation suite's pure parts (deploy/eval/test_eval.py under
 * /usr/bin/python3 or $H2T_PYTHON): the generators' sample-id selections and class maps over
 * a folder source's order, and the results table, CV-choice count, CSV and SVG chart.
 * Rendering (PIL, fonts) and the server run belong to make eval, not here.
 */
#include "tests/test.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

TEST_TIMEOUT(eval_suite_parts, 60)
{
    const char *py = getenv("H2T_PYTHON");
    if (!py || !*py)
        py = "/usr/bin/python3";
    const char *script = test_src_path("deploy/eval/test_eval.py");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        setenv("PYTHONDONTWRITEBYTECODE", "1", 1); /* nothing written into the source tree */
        execl(py, py, script, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}
