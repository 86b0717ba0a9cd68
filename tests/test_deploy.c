/* deploy/: the Kubernetes manifests (deploy/k8s/check.py: parsed, required fields, selectors
 * and ports linked, every h2tdb option they use known to the binary under test) and
 * deploy/slurm/extract_mpi.sbatch (shellcheck where installed; run without Slurm with
 * MPIRUN=echo, it prints the mpirun command line it would start). The scripts under a real
 * one-machine Slurm: make slurm-check (root, deploy/deps.sh --slurm). */
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int sh(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_TIMEOUT(deploy_k8s_manifests, 120)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    const char *py = getenv("H2T_PYTHON");
    if (!py || !*py)
        py = "/usr/bin/python3";
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, "PYTHONDONTWRITEBYTECODE=1 %s %s %s 2>&1", py,
             test_src_path("deploy/k8s/check.py"), bin);
    int rc = sh(cmd, out, sizeof out);
    if (rc != 0)
        TEST_FAILF("deploy/k8s/check.py exited %d:\n%s", rc, out);
    ASSERT_CONTAINS(out, "k8s check: ok (3 objects");
    fprintf(stderr, "  %s", out);
}

TEST(deploy_slurm_mpi_script)
{
    const char *script = test_src_path("deploy/slurm/extract_mpi.sbatch");
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd,
             "MPIRUN='echo mpirun --oversubscribe' H2TDB=/opt/h2tdb SLURM_CPUS_PER_TASK=3 "
             "sh %s m.onnx npy:x.npy out --batch 4 2>&1",
             script);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_STREQ(out, "mpirun --oversubscribe /opt/h2tdb extract --store out --model m.onnx "
                      "--data npy:x.npy --threads 3 --no-progress --mpi --batch 4\n");
    snprintf(cmd, sizeof cmd, "sh %s m.onnx 2>&1", script);
    ASSERT_EQ(sh(cmd, out, sizeof out), 2);
    ASSERT_CONTAINS(out, "usage: sbatch --ntasks=N");
    if (system("command -v shellcheck >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "shellcheck %s %s 2>&1", script,
                 test_src_path("deploy/slurm/check.sh"));
        ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    }
}
