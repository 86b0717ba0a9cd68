/*
 * client/cmd_train.c - `h2tdb train`: submit a train job, or get back the finished job that
 * already has the same spec (the server decides: proto TrainRequest.retrain, Job.reused);
 * --retrain trains again; --wait follows the job to its end.
 */
#include "client/client_cli.h"
#include "client/cmds.h"
#include "common/err.h"
#include "solver/solver.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char train_usage[] =
    "usage: h2tdb train --task NAME [--method linear|all|head2toe] [--optimizer fast|adam]\n"
    "                   [--lambdas L1,L2,..] [--keep F1,F2,..] [--folds K] [--steps N]\n"
    "                   [--lr X] [--seed S] [--threads N] [--retrain] [--wait]\n\n"
    "Submit a train job for a task (h2tdb task create) and print its id. When a finished job\n"
    "has the very same spec (task and its samples, extraction, method and every option after\n"
    "defaults), the server answers with that job instead (\"reused\"); --retrain trains again.\n"
    "--wait follows the job to the end (a live progress line on a terminal) and exits 0 only\n"
    "when it is done. Defaults: method head2toe, the solver's grids (HEAD2TOE.md), 5 folds,\n"
    "seed 0.\n\n"
    "common options: --server ADDR (default $H2T_SERVER or 127.0.0.1:7433), --token-file F\n"
    "(or $H2T_TOKEN_FILE), --json, --timeout SECONDS\n";

/* "1e-4,1e-5" -> doubles */
static int parse_list(h2t_cli *cli, const char *v, double *out, size_t cap, size_t *n)
{
    *n = 0;
    if (!v)
        return -1;
    const char *p = v;
    while (*p) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || (*end && *end != ',') || *n == cap) {
            fprintf(stderr, "h2tdb %s: %s '%s': want up to %zu comma-separated numbers\n", cli->cmd,
                    cli->arg, v, cap);
            cli->bad = 1;
            return -1;
        }
        out[(*n)++] = x;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* The current option's value as an index into names (its enum value). */
static void parse_choice(h2t_cli *cli, const char *const *names, int n, int *out)
{
    const char *v = h2t_cli_value(cli);
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return;
        }
    fprintf(stderr, "h2tdb %s: %s '%s': want", cli->cmd, cli->arg, v);
    for (int i = 0; i < n; i++)
        fprintf(stderr, "%s %s", i == 0 ? "" : i == n - 1 ? " or" : ",", names[i]);
    fputc('\n', stderr);
    cli->bad = 1;
}

typedef struct watch_view {
    int tty, json;
} watch_view;

static void on_job(void *ud, const h2t_msg_job *j)
{
    watch_view *w = ud;
    if (w->json) {
        h2t_cli_job_print(stdout, j, 1);
        fputc('\n', stdout);
        fflush(stdout);
        return;
    }
    if (!w->tty)
        return;
    fprintf(stderr, "\r\033[Kjob %" PRIu64 " %-9s %5.1f%%  %s", j->id, h2t_cli_job_state(j->state),
            100.0 * j->progress, j->stage ? j->stage : "");
    fflush(stderr);
}

static int wait_job(h2t_cli *cli, h2t_client *c, uint64_t id)
{
    watch_view w = {isatty(2), cli->json};
    h2t_msg fin;
    int rc = h2t_client_watch(c, id, on_job, &w, &fin);
    if (w.tty && !w.json)
        fputs("\r\033[K", stderr);
    if (rc < 0)
        return h2t_cli_fail(cli, rc);
    int st = fin.u.job.state;
    if (!cli->json) {
        h2t_cli_job_print(stdout, &fin.u.job, 0);
        fputc('\n', stdout);
    }
    h2t_msg_free(&fin);
    return st == H2T_JOB_DONE ? 0 : 1;
}

int h2t_cmd_train_submit(int argc, char **argv)
{
    h2t_cli cli;
    h2t_msg req = {.type = H2T_MSG_TRAIN}, rep;
    h2t_msg_train *t = &req.u.train;
    double lambdas[H2T_SOLVER_MAX_GRID], keeps[H2T_SOLVER_MAX_GRID];
    unsigned long long v;
    int wait = 0;
    t->method = H2T_PROTO_METHOD_HEAD2TOE;
    h2t_cli_init(&cli, "train", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--task"))
            t->task = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--method")) {
            static const char *const methods[] = {"linear", "all", "head2toe"};
            parse_choice(&cli, methods, 3, &t->method); /* the solver's numbering */
        } else if (h2t_cli_is(&cli, "--optimizer")) {
            static const char *const opts[] = {"fast", "adam"};
            parse_choice(&cli, opts, 2, &t->optimizer);
        } else if (h2t_cli_is(&cli, "--lambdas")) {
            if (parse_list(&cli, h2t_cli_value(&cli), lambdas, H2T_SOLVER_MAX_GRID,
                           &t->n_lambdas) == 0)
                t->lambdas = lambdas;
        } else if (h2t_cli_is(&cli, "--keep")) {
            if (parse_list(&cli, h2t_cli_value(&cli), keeps, H2T_SOLVER_MAX_GRID,
                           &t->n_keep_fractions) == 0)
                t->keep_fractions = keeps;
        } else if (h2t_cli_is(&cli, "--folds")) {
            if (h2t_cli_u64(&cli, h2t_cli_value(&cli), &v) == 0)
                t->folds = (uint32_t)(v > 1000 ? 1000 : v);
        } else if (h2t_cli_is(&cli, "--steps")) {
            if (h2t_cli_u64(&cli, h2t_cli_value(&cli), &v) == 0)
                t->steps = (uint32_t)(v > 100000000 ? 100000000 : v);
        } else if (h2t_cli_is(&cli, "--threads")) {
            if (h2t_cli_u64(&cli, h2t_cli_value(&cli), &v) == 0)
                t->threads = (uint32_t)(v > 256 ? 257 : v);
        } else if (h2t_cli_is(&cli, "--seed")) {
            if (h2t_cli_u64(&cli, h2t_cli_value(&cli), &v) == 0)
                t->seed = v;
        } else if (h2t_cli_is(&cli, "--lr"))
            h2t_cli_double(&cli, h2t_cli_value(&cli), &t->lr);
        else if (h2t_cli_is(&cli, "--retrain"))
            t->retrain = 1;
        else if (h2t_cli_is(&cli, "--wait"))
            wait = 1;
        else
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(train_usage, stdout);
        return 0;
    }
    if (cli.bad || cli.npos || !t->task) {
        if (!t->task && !cli.bad)
            fprintf(stderr, "h2tdb train: --task NAME is required\n");
        fputs(train_usage, stderr);
        return 2;
    }
    h2t_client *c = h2t_cli_connect(&cli);
    if (!c)
        return 1;
    int rc = h2t_client_call(c, &req, H2T_MSG_JOB, &rep);
    if (rc < 0) {
        h2t_client_close(c);
        return h2t_cli_fail(&cli, rc);
    }
    uint64_t id = rep.u.job.id;
    int reused = rep.u.job.reused;
    if (cli.json && (!wait || reused)) {
        h2t_cli_job_print(stdout, &rep.u.job, 1);
        fputc('\n', stdout);
    } else if (!cli.json && reused) {
        printf("job %" PRIu64 " reused: it finished with the same spec (--retrain trains again)\n",
               id);
    } else if (!cli.json) {
        printf("job %" PRIu64 " queued\n", id);
        fflush(stdout);
    }
    h2t_msg_free(&rep);
    /* a reused job is finished: --wait has nothing to follow */
    int status = wait && !reused ? wait_job(&cli, c, id) : 0;
    h2t_client_close(c);
    return status;
}
