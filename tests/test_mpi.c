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
#include "extract/extract.h"
#include "tests/fixture.h"
#include "tests/test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* n float32 samples 1 x 8 x 8 in [-1, 1), labels i % 3, at x.npy and y.npy */
static void make_data(uint32_t n)
{
    ASSERT_EQ(fixture_npy_grid8(n), 0);
}

/* mpirun -np 3 h2tdb extract --mpi: three shard stores and a manifest that names them; bitwise
 * the shards of extract --shard I/3 (h2tdb merge of them equals the unsharded extraction,
 * tests/test_extract_shard.c); a rank that fails is named by the others, no manifest is
 * written, and the rerun resumes every shard. */
TEST_TIMEOUT(mpi_extract_mpirun, 240)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    const char *mpirun = mpirun_prefix(3);
    if (!mpirun)
        return;
    make_data(11);
    const char *model = test_src_path("tests/data/extract_tiny.onnx");
    char cmd[4096], out[16384];
    /* rank 1 cannot open its store: a non-empty folder that is not a store */
    ASSERT_EQ(system("mkdir -p set/shard-1-of-3 && echo x >set/shard-1-of-3/junk"), 0);
    snprintf(cmd, sizeof cmd,
             "%s %s extract --store set --model %s --data npy:x.npy,y.npy --target-size 8 "
             "--batch 2 --mpi 2>&1",
             mpirun, bin, model);
    ASSERT_NE(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "rank 1 of 3: set/shard-1-of-3 is not an h2tdb store");
    ASSERT_CONTAINS(out, "rank 0 of 3: stopped: rank 1 of 3 failed");
    ASSERT_CONTAINS(out, "rank 2 of 3: stopped: rank 1 of 3 failed");
    ASSERT(access("set/store-set.txt", F_OK) != 0);
    /* the blocker gone, the same command finishes: shards 0 and 2 reused, 1 computed */
    ASSERT_EQ(system("rm -r set/shard-1-of-3"), 0);
    int rc = sh(cmd, out, sizeof out);
    if (rc != 0)
        TEST_FAILF("rerun exited %d:\n%s", rc, out);
    ASSERT_CONTAINS(out, "rank 0 of 3: shard 0/3 in set/shard-0-of-3: extraction 1, 3 samples "
                         "(already complete)");
    ASSERT_CONTAINS(out, "rank 1 of 3: shard 1/3 in set/shard-1-of-3: extraction 1, 4 samples "
                         "(computed)");
    ASSERT_CONTAINS(out, "store set set: 3 shards, 11 samples");
    h2t_store_set s;
    ASSERT_OK(h2t_store_set_read("set", &s));
    ASSERT_EQ(s.n_shards, 3);
    ASSERT_EQ(s.n_samples, 11);
    ASSERT_EQ(s.shards[2].lo, 7);
    ASSERT_EQ(s.shards[2].hi, 11);
    ASSERT_CONTAINS(s.shards[2].path, "set/shard-2-of-3");
    h2t_store_set_free(&s);
    /* the shards merge into the unsharded extraction: same identity as extract without --mpi */
    snprintf(cmd, sizeof cmd,
             "%s merge --store merged --batch 2 set/shard-0-of-3 set/shard-1-of-3 "
             "set/shard-2-of-3 >/dev/null 2>&1 && %s extract --store merged --model %s "
             "--data npy:x.npy,y.npy --target-size 8 --batch 2 2>&1",
             bin, bin, model);
    rc = sh(cmd, out, sizeof out);
    if (rc != 0)
        TEST_FAILF("merge + extract exited %d:\n%s", rc, out);
    ASSERT_CONTAINS(out, "already complete (11 samples");
    /* the set read as one by the store commands: its folder, or the shard stores one by one */
    snprintf(cmd, sizeof cmd, "%s ls --store set 2>&1", bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 0);
    ASSERT_CONTAINS(out, "a store set of 3 shard stores read as one");
    ASSERT_CONTAINS(out, "11/11  done");
    char a[4096], b[4096];
    snprintf(cmd, sizeof cmd, "%s dump --store merged 1 --layer conv --sample 9 --json 2>&1", bin);
    ASSERT_EQ(sh(cmd, a, sizeof a), 0);
    snprintf(cmd, sizeof cmd, "%s dump --store set 1 --layer conv --sample 9 --json 2>&1", bin);
    ASSERT_EQ(sh(cmd, b, sizeof b), 0);
    ASSERT_STREQ(a, b);
    snprintf(cmd, sizeof cmd,
             "%s dump --store set/shard-2-of-3 --store set/shard-0-of-3 --store set/shard-1-of-3 "
             "1 --layer conv --sample 9 --json 2>&1",
             bin);
    ASSERT_EQ(sh(cmd, b, sizeof b), 0);
    ASSERT_STREQ(a, b);
    snprintf(cmd, sizeof cmd, "%s layers --store set/shard-0-of-3 --store set/shard-2-of-3 1 2>&1",
             bin);
    ASSERT_EQ(sh(cmd, out, sizeof out), 1);
    ASSERT_CONTAINS(out, "shard 1/3 is missing");
    /* --mpi with --shard is a usage error */
    snprintf(cmd, sizeof cmd,
             "%s extract --store s --model %s --data npy:x.npy --shard 0/2 --mpi 2>&1", bin, model);
    ASSERT_EQ(sh(cmd, out, sizeof out), 2);
    ASSERT_CONTAINS(out, "--mpi takes the shard from the rank");
}

/* mpirun -np 3 h2tdb extract --mpi with rank 1 killed (SIGKILL) mid-run, as soon as its shard
 * store's file exists (a timer could fire after a fast machine's rank had finished): mpirun ends
 * the job naming rank 1, no manifest is written; the same command again resumes (or, killed before
 * its first commit, computes) every shard and writes the manifest; every shard store verifies clean
 * and their merge is the complete unsharded extraction. */
TEST_TIMEOUT(mpi_extract_rank_killed_resumes, 240)
{
    const char *bin = getenv("H2T_BIN");
    if (!bin)
        TEST_FAILF("H2T_BIN is not set (run through make test)");
    const char *mpirun = mpirun_prefix(3);
    if (!mpirun)
        return;
    make_data(1500);
    const char *model = test_src_path("tests/data/extract_tiny.onnx");
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "%s sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (while [ ! -s "
             "set/shard-1-of-3/data.mdb ]; do sleep 0.01; done; kill -9 $$) & fi; "
             "exec %s extract --store set --model %s --data npy:x.npy,y.npy --target-size 8 "
             "--batch 2 --mpi --no-progress' 2>&1",
             mpirun, bin, model);
    ASSERT_NE(sh(cmd, out, sizeof out), 0);
    if (!strstr(out, "rank 1"))
        TEST_FAILF("no rank named:\n%s", out);
    ASSERT(access("set/store-set.txt", F_OK) != 0);
    snprintf(cmd, sizeof cmd,
             "%s %s extract --store set --model %s --data npy:x.npy,y.npy --target-size 8 "
             "--batch 2 --mpi --no-progress 2>&1",
             mpirun, bin, model);
    int rc = sh(cmd, out, sizeof out);
    if (rc != 0)
        TEST_FAILF("rerun exited %d:\n%s", rc, out);
    fprintf(stderr, "%s", out);
    ASSERT(strstr(out, "rank 1 of 3: shard 1/3 in set/shard-1-of-3: extraction 1, 500 samples "
                       "(resumed)") ||
           strstr(out, "rank 1 of 3: shard 1/3 in set/shard-1-of-3: extraction 1, 500 samples "
                       "(computed)"));
    ASSERT_CONTAINS(out, "store set set: 3 shards, 1500 samples");
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "%s verify --store set/shard-%d-of-3 2>&1", bin, i);
        if (sh(cmd, out, sizeof out) != 0)
            TEST_FAILF("%s:\n%s", cmd, out);
    }
    snprintf(cmd, sizeof cmd,
             "%s merge --store merged --batch 2 set/shard-0-of-3 set/shard-1-of-3 "
             "set/shard-2-of-3 >/dev/null 2>&1 && %s extract --store merged --model %s "
             "--data npy:x.npy,y.npy --target-size 8 --batch 2 2>&1",
             bin, bin, model);
    rc = sh(cmd, out, sizeof out);
    if (rc != 0)
        TEST_FAILF("merge + extract exited %d:\n%s", rc, out);
    ASSERT_CONTAINS(out, "already complete (1500 samples");
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    ASSERT_EQ(fclose(f), 0);
}

/* the manifest: written and read back; damaged, missing, duplicated and misplaced shard lines
 * refused, naming the line */
TEST(mpi_set_manifest)
{
    uint8_t h[32];
    for (int k = 0; k < 32; k++)
        h[k] = (uint8_t)(k * 7);
    uint32_t counts[3] = {3, 4, 4};
    ASSERT_EQ(mkdir("d", 0777), 0);
    ASSERT_OK(h2t_store_set_write("d", 3, h, "model=x samples=11", 11, counts, 4, NULL));
    h2t_store_set s;
    ASSERT_OK(h2t_store_set_read("d/store-set.txt", &s));
    ASSERT_EQ(memcmp(s.whole_hash, h, 32), 0);
    ASSERT_STREQ(s.config, "model=x samples=11");
    ASSERT_EQ(s.batch, 4);
    ASSERT_EQ(s.shards[1].lo, 3);
    ASSERT_EQ(s.shards[1].hi, 7);
    ASSERT_STREQ(s.shards[1].path, "d/shard-1-of-3");
    h2t_store_set_free(&s);
    counts[1] = 5;
    ASSERT_EQ(h2t_store_set_write("d", 3, h, "c", 11, counts, 4, NULL), H2T_EINVAL);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 1/3 holds 5 samples");

    const char *head = "h2tdb-store-set 1\nextraction "
                       "00000000000000000000000000000000000000000000000000000000000000ff\n"
                       "samples 11\nshards 3\nconfig c\n";
    char text[1024];
    snprintf(text, sizeof text, "%sshard 0 0 3 a\nshard 1 3 7 b\n", head);
    put("m1", text);
    ASSERT_EQ(h2t_store_set_read("m1", &s), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 2/3 is missing");
    snprintf(text, sizeof text, "%sshard 0 0 3 a\nshard 1 3 7 b\nshard 1 3 7 c\n", head);
    put("m2", text);
    ASSERT_EQ(h2t_store_set_read("m2", &s), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "m2 line 8: shard 1 is listed twice");
    snprintf(text, sizeof text, "%sshard 0 0 4 a\n", head);
    put("m3", text);
    ASSERT_EQ(h2t_store_set_read("m3", &s), H2T_ECORRUPT);
    ASSERT_CONTAINS(h2t_err_detail(), "shard 0 covers 0..4, its range of 11 samples is 0..3");
    put("m4", "h2tdb-store-set 2\n");
    ASSERT_EQ(h2t_store_set_read("m4", &s), H2T_ECORRUPT);
    ASSERT_EQ(h2t_store_set_read("nothing-here", &s), H2T_ENOTFOUND);
}
