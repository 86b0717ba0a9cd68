/*
 * cli/cmd_fit.c - `h2tdb fit`: train a head on a stored task without a server, in this process
 * (h2t_solver_run, the server's solver path) or row-sharded over MPI ranks (`mpirun -np N
 * h2tdb fit --mpi`: each rank reads its range of the task's rows, h2t_solver_run_store_shard
 * reduces through MPI_Allreduce, rank 0 writes the head).
 */
#include "cli/cli.h"
#include "cli/cmds.h"
#include "common/err.h"
#include "common/mpi.h"
#include "common/util.h"
#include "solver/solver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char fit_usage[] =
    "usage: h2tdb fit --store DIR --task NAME [--method METHOD] [train options] [--mpi]\n"
    "                 [--export DIR] [--predictions FILE] [--mem-limit BYTES] [--stats] [--json]\n"
    "       mpirun -np N h2tdb fit --mpi --store DIR --task NAME ...\n\n"
    "Train a head on a task stored in DIR (h2tdb task create wrote it) without a server and\n"
    "print one line (method, chosen cell, CV and test accuracy, objective, time; --json: the\n"
    "result as `h2tdb result --json` prints it). The train options are those of h2tdb train\n"
    "(--method, --lambdas, --keep, --folds, --fold-kind, --cv-repeats, --one-se, --seed,\n"
    "--threads, ...); the same spec gives the same head as a server's job.\n\n"
    "--mpi: row-sharded over the MPI ranks this process was started with: rank r of N reads\n"
    "only its share of the task's training rows (whole row blocks, [nb r / N, nb (r + 1) / N)\n"
    "of nb = 4, 16 or 64 fixed blocks) and test rows [n r / N, n (r + 1) / N) from DIR (every\n"
    "rank opens DIR, read only), every sum over rows is taken by those blocks, gathered with\n"
    "MPI_Allreduce and added in a fixed order, and every rank ends with the same head; rank 0\n"
    "prints and writes. The head is a single process's bit for bit at the same OpenBLAS\n"
    "thread count; CV folds are the same. Methods linear, all, head2toe, ncm, layer, auto without\n"
    "knn; the fast optimiser (docs/solver.md). A rank that fails stops every rank with an\n"
    "error naming it. DIR a store set's folder (extract --mpi, set-manifest) and as many ranks\n"
    "as shards: rank r holds the task's rows whose samples are in shard r and reads only that\n"
    "shard's store; with another rank count the ranks take row ranges read through the set.\n\n"
    "--export DIR: the head as `h2tdb result --export` writes it (weights.npy, bias.npy,\n"
    "features.npy, cv_acc.npy, result.json). --predictions FILE: the predicted class of each\n"
    "test row, one per line, in task order. --mem-limit: the design matrix's memory budget\n"
    "(default: available memory, within the memory cgroup's and RLIMIT_DATA's limits); a\n"
    "matrix above it lies in a file-backed mapping in $H2T_SPILL_DIR (else $TMPDIR, else\n"
    "/var/tmp) instead of memory (docs/solver.md). --stats: each rank prints its wall time\n"
    "and peak RSS to stderr (and its store-set shard).\n";

/* MPI_Allreduce as the solver's reducer; a failed collective ends the job naming the rank. */
static void mpi_sum(void *ud, double *buf, size_t n)
{
    (void)ud;
    if (h2t_mpi_allreduce(buf, n, H2T_MPI_F64, H2T_MPI_SUM) < 0) {
        fprintf(stderr, "h2tdb fit: %s\n", h2t_err_detail());
        h2t_mpi_abort(1);
    }
}

static int write_predictions(const char *path, const uint32_t *pred, uint32_t n)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return h2t_err_set(H2T_EIO, "%s: cannot create", tmp);
    for (uint32_t i = 0; i < n; i++)
        fprintf(f, "%u\n", pred[i]);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return h2t_err_set(H2T_EIO, "%s: cannot write", path);
    }
    return 0;
}

int h2t_cmd_fit(int argc, char **argv)
{
    h2t_cli cli;
    h2t_train_spec req = {0}, spec;
    const char *store = NULL, *task_name = NULL, *export_dir = NULL, *pred_path = NULL;
    int mpi = 0, ks_given = 0, stats = 0;
    uint64_t mem_limit = 0;
    req.method = H2T_METHOD_HEAD2TOE;
    h2t_cli_init(&cli, "fit", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_is(&cli, "--help")) {
            cli.help = 1;
        } else if (h2t_cli_is(&cli, "--json")) {
            cli.json = 1;
        } else if (h2t_cli_spec_option(&cli, &req, &ks_given)) {
            continue;
        } else if (h2t_cli_is(&cli, "--store")) {
            store = h2t_cli_value(&cli);
        } else if (h2t_cli_is(&cli, "--task")) {
            task_name = h2t_cli_value(&cli);
        } else if (h2t_cli_is(&cli, "--export")) {
            export_dir = h2t_cli_value(&cli);
        } else if (h2t_cli_is(&cli, "--predictions")) {
            pred_path = h2t_cli_value(&cli);
        } else if (h2t_cli_is(&cli, "--mpi")) {
            mpi = 1;
        } else if (h2t_cli_is(&cli, "--mem-limit")) {
            unsigned long long v;
            if (h2t_cli_u64(&cli, h2t_cli_value(&cli), &v) == 0)
                mem_limit = v;
        } else if (h2t_cli_is(&cli, "--stats")) {
            stats = 1;
        } else {
            h2t_cli_unknown(&cli);
        }
    }
    if (cli.help) {
        fputs(fit_usage, stdout);
        return 0;
    }
    if (ks_given && req.method != H2T_METHOD_KNN) {
        fprintf(stderr, "h2tdb fit: --k is the knn grid: it needs --method knn\n");
        cli.bad = 1;
    }
    if (!cli.bad && (cli.npos || !store || !task_name)) {
        fprintf(stderr, "h2tdb fit: --store DIR and --task NAME are required\n");
        cli.bad = 1;
    }
    if (cli.bad) {
        fputs(fit_usage, stderr);
        return 2;
    }
    int rc = h2t_train_spec_resolve(&req, &spec);
    if (rc < 0)
        return h2t_cli_fail(&cli, rc);
    spec.mem_limit = mem_limit;
    if (mpi && h2t_mpi_init(&argc, &argv, H2T_MPI_THREAD_FUNNELED) < 0) {
        fprintf(stderr, "h2tdb fit: %s\n", h2t_err_detail());
        return 1;
    }
    int rank = h2t_mpi_rank(), size = h2t_mpi_size();
    h2t_store *st = NULL;
    h2t_store_set set = {0};
    int by_shard = 0; /* a store set with one shard per rank: rank r holds shard r's rows */
    h2t_task *task = NULL;
    h2t_result *res = NULL;
    uint32_t *pred = NULL;
    double t0 = h2t_now_s();
    rc = h2t_store_open(store, H2T_STORE_RDONLY, &st);
    if (rc == 0 && mpi && h2t_store_is_set(st) && (rc = h2t_store_set_read(store, &set)) == 0) {
        by_shard = set.n_shards == (uint32_t)size;
        if (!by_shard && rank == 0)
            fprintf(stderr,
                    "h2tdb fit: %s is a set of %u shards on %d ranks: each rank takes a range of "
                    "the rows, read through the set (as many ranks as shards: each its own)\n",
                    store, set.n_shards, size);
    }
    if (rc == 0)
        rc = h2t_store_task_get(st, task_name, &task);
    if (rc == 0 && !(pred = malloc((size_t)task->n_test * sizeof(uint32_t) + 1)))
        rc = h2t_err_set(H2T_ENOMEM, "predictions");
    if (mpi) { /* before the first reduction: every rank stops when one cannot start */
        if (rc < 0)
            h2t_err_wrap(rc, "rank %d of %d: ", rank, size);
        rc = h2t_mpi_agree(rc, NULL);
    }
    if (rc < 0)
        goto out;
    h2t_reducer red = {mpi_sum, NULL};
    const h2t_store_set_shard *mine = by_shard ? &set.shards[rank] : NULL;
    if (mine)
        rc = h2t_solver_run_store_samples(st, task, &spec, &red, mine->lo, mine->hi, NULL, NULL,
                                          &res);
    else if (mpi)
        rc = h2t_solver_run_store_shard(st, task, &spec, &red, (uint32_t)rank, (uint32_t)size, NULL,
                                        NULL, &res);
    else
        rc = h2t_solver_run(st, task, &spec, NULL, NULL, NULL, &res);
    if (rc == 0 && mine)
        rc = h2t_solver_predict_task_samples(st, task, res, &red, mine->lo, mine->hi, pred);
    else if (rc == 0)
        rc = h2t_solver_predict_task(st, task, res, mpi ? &red : NULL, (uint32_t)rank,
                                     (uint32_t)size, pred);
    if (rc < 0 && mpi) { /* the others wait in a reduction: end the job, naming this rank */
        fprintf(stderr, "h2tdb fit: rank %d of %d: %s: %s\n", rank, size, h2t_strerror(rc),
                h2t_err_detail());
        h2t_mpi_abort(1);
    }
    if (rc == 0 && stats) { /* one line per rank: its time and peak memory */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        char where[4200] = ""; /* one write per line: the ranks share the terminal */
        if (mine)
            snprintf(where, sizeof where, " (shard %d: samples %u..%u, %s)", rank, mine->lo,
                     mine->hi, mine->path);
        fprintf(stderr, "h2tdb fit: rank %d of %d: %.2f s, peak RSS %.1f MiB%s\n", rank, size,
                h2t_now_s() - t0, ru.ru_maxrss / 1024.0, where);
    }
    if (rc < 0 || rank != 0)
        goto out;
    if (export_dir && (rc = h2t_result_export(res, export_dir)) < 0)
        goto out;
    if (pred_path && (rc = write_predictions(pred_path, pred, task->n_test)) < 0)
        goto out;
    if (cli.json) {
        char *js = h2t_result_json(res);
        if (!js) {
            rc = h2t_err_set(H2T_ENOMEM, "result JSON");
            goto out;
        }
        printf("%s\n", js);
        free(js);
    } else {
        printf("fit %s: %s, lambda %g keep %g (%u features), cv %.2f%%, test %.2f%% (%u/%u), "
               "objective %.10g, %d rank%s, %.2f s\n",
               task->name, h2t_method_name(res->method), res->lambda, res->keep, res->n_kept,
               100 * res->val_acc, 100 * res->test_acc, res->test_correct, res->n_test,
               res->final_fit.objective, size, size == 1 ? "" : "s", h2t_now_s() - t0);
    }
out:
    if (rc < 0)
        h2t_cli_fail(&cli, rc);
    h2t_store_set_free(&set);
    free(pred);
    h2t_result_destroy(res);
    h2t_task_destroy(task);
    h2t_store_close(st);
    if (mpi)
        h2t_mpi_finalize();
    return rc < 0 ? 1 : 0;
}
