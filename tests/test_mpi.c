/* common/mpi.h: a world of one before h2t_mpi_init (collectives are identities), the build
 * without MPI (compiled here from common/mpi.c without H2T_HAVE_MPI: init fails with "built
 * without MPI"), and `mpirun -np 3 h2tdb mpi-check` (each collective across three ranks, and
 * a failed rank named on every rank).
 *
 * The mpirun tests run the ranks with ASAN_OPTIONS=detect_leaks=0: OpenMPI's plugins leave
 * allocations behind at MPI_Finalize that LeakSanitizer reports as "<unknown module>" (the
 * plugins are unloaded by then), so no suppression file can name them. Address and UB checks
 * stay on; the code these ranks run is covered with leak checks by the tests without mpirun. */
#include "common/err.h"
#include "common/mpi.h"
#include "tests/test.h"

#include <stdint.h>
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

TEST(mpi_world_of_one)
{
    ASSERT_EQ(h2t_mpi_active(), 0);
    ASSERT_EQ(h2t_mpi_rank(), 0);
    ASSERT_EQ(h2t_mpi_size(), 1);
    ASSERT_OK(h2t_mpi_barrier());
    double v[3] = {1.5, -2, 7};
    ASSERT_OK(h2t_mpi_allreduce(v, 3, H2T_MPI_F64, H2T_MPI_SUM));
    ASSERT(v[0] == 1.5 && v[1] == -2 && v[2] == 7);
    ASSERT_EQ(h2t_mpi_allreduce(NULL, 2, H2T_MPI_F32, H2T_MPI_MAX), H2T_EINVAL);
    int32_t w = 0x1234;
    ASSERT_OK(h2t_mpi_bcast(&w, sizeof w, 0));
    ASSERT_EQ(w, 0x1234);
    ASSERT_EQ(h2t_mpi_bcast(&w, sizeof w, 1), H2T_EINVAL);
    int32_t got = 0;
    ASSERT_OK(h2t_mpi_allgather(&w, &got, sizeof w));
    ASSERT_EQ(got, 0x1234);
    int bad = -1;
    ASSERT_OK(h2t_mpi_agree(0, &bad));
    ASSERT_EQ(bad, -1);
    h2t_err_set(H2T_EIO, "disk gone");
    ASSERT_EQ(h2t_mpi_agree(H2T_EIO, &bad), H2T_EIO);
    ASSERT_EQ(bad, 0);
    ASSERT_CONTAINS(h2t_err_detail(), "disk gone");
    char lib[128];
    ASSERT(strlen(h2t_mpi_library(lib, sizeof lib)) > 0);
}

/* common/mpi.c built without H2T_HAVE_MPI, as `make MPI=0` or a machine without mpicc does */
TEST(mpi_built_without)
{
    FILE *f = fopen("main.c", "w");
    ASSERT(f != NULL);
    fputs("#include \"common/mpi.h\"\n#include \"common/err.h\"\n#include <stdio.h>\n"
          "int main(void) {\n"
          "  double x = 2;\n"
          "  int rc = h2t_mpi_init(NULL, NULL, H2T_MPI_THREAD_FUNNELED);\n"
          "  printf(\"built=%d rc=%d size=%d detail=%s\\n\", h2t_mpi_built(), rc,\n"
          "         h2t_mpi_size(), h2t_err_detail());\n"
          "  return h2t_mpi_allreduce(&x, 1, H2T_MPI_F64, H2T_MPI_SUM) != 0 || x != 2;\n"
          "}\n",
          f);
    ASSERT_EQ(fclose(f), 0);
    char cmd[4096], out[4096];
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 -D_GNU_SOURCE -I%s main.c %s %s -o nompi 2>&1 && ./nompi 2>&1",
             test_src_path("."), test_src_path("common/mpi.c"), test_src_path("common/err.c"));
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "built=0");
    ASSERT_CONTAINS(out, "size=1");
    char want[64];
    snprintf(want, sizeof want, "rc=%d", H2T_EUNSUPPORTED);
    ASSERT_CONTAINS(out, want);
    ASSERT_CONTAINS(out, "built without MPI");
}

/* "mpirun ... -np N " with the flags a container and root need, or NULL (test skipped, said
 * so) when mpirun is absent. */
static const char *mpirun_prefix(int np)
{
    static char buf[512];
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "  mpirun not installed (deploy/deps.sh installs openmpi-bin): "
                        "skipped\n");
        return NULL;
    }
    /* root is refused unless both variables are set; shared memory without CMA (ptrace is
     * often denied in containers) */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
    setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1", 1);
    snprintf(buf, sizeof buf, "mpirun --oversubscribe -np %d", np);
    return buf;
}

TEST_TIMEOUT(mpi_mpirun_check, 120)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    const char *mpirun = mpirun_prefix(3);
    if (!mpirun)
        return;
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd, "%s %s mpi-check 2>&1", mpirun, bin);
    int rc = sh(cmd, out, sizeof out);
    if (rc != 0)
        TEST_FAILF("mpi-check exited %d:\n%s", rc, out);
    ASSERT_CONTAINS(out, "mpi-check: 3 ranks");
    ASSERT_CONTAINS(out, "agree ok");
    /* rank 1 fails: the other two name it and every rank exits 1 */
    snprintf(cmd, sizeof cmd, "%s %s mpi-check --fail-rank 1 2>&1", mpirun, bin);
    ASSERT_NE(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "rank 1 of 3: failing as asked");
    const char *a = strstr(out, "rank 1 of 3 failed");
    ASSERT(a != NULL);
    ASSERT(strstr(a + 1, "rank 1 of 3 failed") != NULL);
    ASSERT(strstr(out, "mpi-check: 3 ranks") == NULL);
}
