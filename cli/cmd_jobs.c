/*
 * cli/cmd_jobs.c - `h2tdb train | job | jobs | cancel | result | predict`: train jobs on
 * a server, their progress, results and heads. `train` gets back the finished job with the
 * very same spec when there is one (the server decides: TrainRequest.retrain, Job.reused).
 */
#include "classify/classify.h"
#include "cli/cli.h"
#include "cli/cmds.h"
#include "common/err.h"
#include "solver/solver.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char common_opts[] =
    "common options: --server ADDR (default $H2T_SERVER or 127.0.0.1:7433), --token-file F\n"
    "(or $H2T_TOKEN_FILE), --json, --timeout SECONDS\n";

static int usage(const char *text, int code)
{
    fprintf(code ? stderr : stdout, "%s\n%s", text, common_opts);
    return code;
}

static int parse_job_id(h2t_cli *cli, uint64_t *id)
{
    if (cli->npos != 1) {
        fprintf(stderr, "h2tdb %s: give one job id\n", cli->cmd);
        return -1;
    }
    char *end;
    unsigned long long v = strtoull(cli->pos[0], &end, 10);
    if (!*cli->pos[0] || *end || cli->pos[0][0] == '-') {
        fprintf(stderr, "h2tdb %s: '%s' is not a job id (a number, see h2tdb jobs)\n", cli->cmd,
                cli->pos[0]);
        return -1;
    }
    *id = v;
    return 0;
}

/* After the options of a command on one job: the exit status when it stops here (--help: 0;
 * a bad option or job id: 2, with the usage), or -1 to go on with the job id in *id. */
static int job_args_end(h2t_cli *cli, const char *text, uint64_t *id)
{
    if (cli->help)
        return usage(text, 0);
    if (cli->bad || parse_job_id(cli, id) < 0)
        return usage(text, 2);
    return -1;
}

/* "1e-4,1e-5" -> doubles */
static int parse_list(h2t_cli *cli, const char *v, double *out, uint32_t cap, uint32_t *n)
{
    *n = 0;
    if (!v)
        return -1;
    const char *p = v;
    while (*p) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || (*end && *end != ',') || *n == cap) {
            fprintf(stderr, "h2tdb %s: %s '%s': want up to %u comma-separated numbers\n", cli->cmd,
                    cli->arg, v, cap);
            cli->bad = 1;
            return -1;
        }
        out[(*n)++] = x;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* ---------------- progress ---------------- */

typedef struct watch_view {
    int tty, json;
    double t0;
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

/* The current option's value as an index into names (its enum value); an unknown word is an
 * error naming the option and every accepted word. */
static void parse_choice(h2t_cli *cli, const char *const *names, uint32_t n, uint32_t *out)
{
    const char *v = h2t_cli_value(cli);
    if (!v)
        return;
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return;
        }
    fprintf(stderr, "h2tdb %s: %s '%s': want", cli->cmd, cli->arg, v);
    for (uint32_t i = 0; i < n; i++)
        fprintf(stderr, "%s %s", i == 0 ? "" : i == n - 1 ? " or" : ",", names[i]);
    fputc('\n', stderr);
    cli->bad = 1;
}

/* "linear,knn,..." -> bit (1 << method) each; auto itself is not a candidate. */
static int parse_methods(h2t_cli *cli, const char *list, uint32_t *mask)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", list);
    *mask = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint32_t m;
        if (h2t_method_parse(tok, &m) < 0 || m == H2T_METHOD_AUTO) {
            fprintf(stderr,
                    "h2tdb %s: %s: '%s' is not a candidate (linear, all, head2toe, knn, ncm, "
                    "layer)\n",
                    cli->cmd, cli->arg, tok);
            return -1;
        }
        *mask |= 1u << m;
    }
    if (!*mask) {
        fprintf(stderr, "h2tdb %s: %s: no method listed\n", cli->cmd, cli->arg);
        return -1;
    }
    return 0;
}

static int wait_job(h2t_cli *cli, h2t_client *c, uint64_t id)
{
    watch_view w = {isatty(2), cli->json, 0};
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
    return st == 2 ? 0 : 1;
}

/* ---------------- train ---------------- */

static const char train_usage[] =
    "usage: h2tdb train --task NAME [--method METHOD] [--optimizer fast|adam]\n"
    "                   [--lambdas L1,L2,..] [--keep F1,F2,..] [--k K1,K2,..] [--folds K]\n"
    "                   [--fold-kind stratified|contiguous] [--cv-repeats R] [--one-se]\n"
    "                   [--auto-methods M1,M2,..] [--final-l2s L1,L2,..]\n"
    "                   [--select-group feature|layer] [--steps N] [--lr X] [--seed S]\n"
    "                   [--threads N] [--retrain] [--wait]\n\n"
    "METHOD: head2toe (default), linear, all, knn, ncm, layer or auto (docs/solver.md).\n"
    "--k: the knn grid of k (default 1,3,5,10,20). --fold-kind: stratified (default: every fold\n"
    "keeps the class proportions, seeded by --seed) or contiguous (blocks in task order).\n"
    "--cv-repeats: stratified CV repeated with other fold seeds (default 3 below 500 training\n"
    "samples, else 1). --one-se: the simplest grid cell within one standard error of the best.\n"
    "--auto-methods: auto's candidates (default all six). --final-l2s: head2toe's final-head L2\n"
    "grid, chosen by CV with each keep fraction (default: a fixed 1e-6). --select-group: head2toe\n"
    "scores and keeps single features (default) or whole layers (a layer's group norm).\n\n"
    "Submit a train job for a task (h2tdb task create) and print its id. When a finished job\n"
    "has the very same spec (task and its samples, extraction, method and every option after\n"
    "defaults), the server answers with that job instead (\"reused\"); --retrain trains again.\n"
    "--wait follows the job to the end (a live progress line on a terminal) and exits 0 only\n"
    "when it is done. Defaults: method head2toe, the solver's grids (docs/head2toe.md), 5 folds,\n"
    "seed 0.\n";

int h2t_cli_spec_option(h2t_cli *cli, h2t_train_spec *sp, int *ks_given)
{
    unsigned long long v;
    if (h2t_cli_is(cli, "--method")) {
        const char *methods[H2T_METHOD_COUNT];
        for (uint32_t m = 0; m < H2T_METHOD_COUNT; m++)
            methods[m] = h2t_method_name(m);
        parse_choice(cli, methods, H2T_METHOD_COUNT, &sp->method); /* the solver's numbering */
    } else if (h2t_cli_is(cli, "--optimizer")) {
        static const char *const opts[] = {"fast", "adam"};
        parse_choice(cli, opts, 2, &sp->optimizer);
    } else if (h2t_cli_is(cli, "--lambdas"))
        parse_list(cli, h2t_cli_value(cli), sp->lambdas, H2T_SPEC_MAX_GRID, &sp->n_lambdas);
    else if (h2t_cli_is(cli, "--keep"))
        parse_list(cli, h2t_cli_value(cli), sp->keeps, H2T_SPEC_MAX_GRID, &sp->n_keeps);
    else if (h2t_cli_is(cli, "--k")) {
        parse_list(cli, h2t_cli_value(cli), sp->lambdas, H2T_SPEC_MAX_GRID, &sp->n_lambdas);
        *ks_given = 1;
    } else if (h2t_cli_is(cli, "--fold-kind")) {
        static const char *const kinds[] = {"stratified", "contiguous"};
        uint32_t k = 0;
        parse_choice(cli, kinds, 2, &k);
        sp->fold_kind = k + H2T_FOLDS_STRATIFIED;
    } else if (h2t_cli_is(cli, "--cv-repeats")) {
        if (h2t_cli_u64_range(cli, h2t_cli_value(cli), 0, 20, &v) == 0)
            sp->cv_repeats = (uint32_t)v;
    } else if (h2t_cli_is(cli, "--one-se"))
        sp->one_se = 1;
    else if (h2t_cli_is(cli, "--final-l2s"))
        parse_list(cli, h2t_cli_value(cli), sp->final_l2s, H2T_SPEC_MAX_GRID, &sp->n_final_l2s);
    else if (h2t_cli_is(cli, "--select-group")) {
        static const char *const groups[] = {"feature", "layer"};
        uint32_t g = 0;
        parse_choice(cli, groups, 2, &g);
        sp->select_group = g + H2T_SELECT_FEATURE;
    } else if (h2t_cli_is(cli, "--auto-methods")) {
        const char *list = h2t_cli_value(cli);
        if (list && parse_methods(cli, list, &sp->auto_methods) < 0)
            cli->bad = 1;
    } else if (h2t_cli_is(cli, "--folds")) {
        if (h2t_cli_u64_range(cli, h2t_cli_value(cli), 1, 100, &v) == 0)
            sp->folds = (uint32_t)v;
    } else if (h2t_cli_is(cli, "--steps")) {
        if (h2t_cli_u64_range(cli, h2t_cli_value(cli), 1, 100000000, &v) == 0)
            sp->steps = (uint32_t)v;
    } else if (h2t_cli_is(cli, "--threads")) {
        if (h2t_cli_u64_range(cli, h2t_cli_value(cli), 0, 256, &v) == 0)
            sp->threads = (uint32_t)v;
    } else if (h2t_cli_is(cli, "--seed")) {
        if (h2t_cli_u64(cli, h2t_cli_value(cli), &v) == 0)
            sp->seed = v;
    } else if (h2t_cli_is(cli, "--lr"))
        h2t_cli_double(cli, h2t_cli_value(cli), &sp->lr);
    else
        return 0;
    return 1;
}

int h2t_cmd_train(int argc, char **argv)
{
    h2t_cli cli;
    h2t_msg req = {.type = H2T_MSG_TRAIN}, rep;
    h2t_msg_train *t = &req.u.train;
    h2t_train_spec *sp = &t->spec; /* a request: 0 = the method's default */
    int wait = 0, ks_given = 0;
    sp->method = H2T_METHOD_HEAD2TOE;
    h2t_cli_init(&cli, "train", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--task"))
            t->task = h2t_cli_value(&cli);
        else if (h2t_cli_spec_option(&cli, sp, &ks_given))
            continue;
        else if (h2t_cli_is(&cli, "--retrain"))
            t->retrain = 1;
        else if (h2t_cli_is(&cli, "--wait"))
            wait = 1;
        else
            h2t_cli_unknown(&cli);
    }
    if (cli.help)
        return usage(train_usage, 0);
    if (ks_given && sp->method != H2T_METHOD_KNN) {
        fprintf(stderr, "h2tdb train: --k is the knn grid: it needs --method knn\n");
        return usage(train_usage, 2);
    }
    if (cli.bad || cli.npos || !t->task) {
        if (!t->task && !cli.bad)
            fprintf(stderr, "h2tdb train: --task NAME is required\n");
        return usage(train_usage, 2);
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

/* ---------------- job / jobs / cancel ---------------- */

/* Send req, whose reply is a job, and print that job; the exit status. */
static int job_reply(h2t_cli *cli, h2t_msg *req)
{
    h2t_msg rep;
    if (h2t_cli_request(cli, req, H2T_MSG_JOB, &rep))
        return 1;
    h2t_cli_job_print(stdout, &rep.u.job, cli->json);
    fputc('\n', stdout);
    h2t_msg_free(&rep);
    return 0;
}

int h2t_cmd_job(int argc, char **argv)
{
    static const char text[] = "usage: h2tdb job ID [--watch]\n\n"
                               "Show a job; --watch follows it until it finishes.\n";
    h2t_cli cli;
    int watch = 0;
    uint64_t id;
    h2t_cli_init(&cli, "job", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--watch"))
            watch = 1;
        else
            h2t_cli_unknown(&cli);
    }
    int status = job_args_end(&cli, text, &id);
    if (status >= 0)
        return status;
    if (watch) {
        h2t_client *c = h2t_cli_connect(&cli);
        if (!c)
            return 1;
        status = wait_job(&cli, c, id);
        h2t_client_close(c);
        return status;
    }
    h2t_msg req = {.type = H2T_MSG_GET_JOB};
    req.u.job_ref.job = id;
    return job_reply(&cli, &req);
}

/* h2t_cli_list_print's item printer for jobs */
static void job_item(FILE *f, const void *job, int json)
{
    h2t_cli_job_print(f, job, json);
}

int h2t_cmd_jobs(int argc, char **argv)
{
    static const char text[] = "usage: h2tdb jobs\n\nList every job of the server's store.\n";
    h2t_cli cli;
    h2t_cli_init(&cli, "jobs", argc, argv);
    while (h2t_cli_next(&cli))
        if (!h2t_cli_common(&cli))
            h2t_cli_unknown(&cli);
    if (cli.help)
        return usage(text, 0);
    if (cli.bad || cli.npos)
        return usage(text, 2);
    h2t_msg req = {.type = H2T_MSG_LIST_JOBS}, rep;
    if (h2t_cli_request(&cli, &req, H2T_MSG_JOB_LIST, &rep))
        return 1;
    /* the columns of h2t_cli_job_print's line */
    static const char header[] = "id     state       done  task       method  \n";
    h2t_cli_list_print(stdout, rep.u.job_list.v, rep.u.job_list.n, sizeof(h2t_msg_job), header,
                       job_item, cli.json);
    h2t_msg_free(&rep);
    return 0;
}

int h2t_cmd_cancel(int argc, char **argv)
{
    static const char text[] =
        "usage: h2tdb cancel ID\n\nCancel a queued or running job (a running solve stops "
        "within a moment).\n";
    h2t_cli cli;
    uint64_t id;
    h2t_cli_init(&cli, "cancel", argc, argv);
    while (h2t_cli_next(&cli))
        if (!h2t_cli_common(&cli))
            h2t_cli_unknown(&cli);
    int status = job_args_end(&cli, text, &id);
    if (status >= 0)
        return status;
    h2t_msg req = {.type = H2T_MSG_CANCEL_JOB};
    req.u.job_ref.job = id;
    return job_reply(&cli, &req);
}

/* ---------------- result / predict ---------------- */

int h2t_cmd_result(int argc, char **argv)
{
    static const char text[] =
        "usage: h2tdb result ID [--export DIR]\n"
        "       h2tdb result ID --export-onnx FILE [--store DIR [--model FILE] [--models DIR]]\n\n"
        "Show a finished job's result: accuracy, chosen hyperparameters, kept features.\n"
        "--export DIR writes the head: weights.npy (classes x k), bias.npy, features.npy\n"
        "(k x 2: layer, index), cv_acc.npy and result.json. --json prints result.json.\n"
        "--export-onnx FILE writes one ONNX classifier (image tensor in, class probabilities\n"
        "out: the backbone part the head needs, the pooling, re-normalisation and head as\n"
        "standard operators), built by the server (which finds the model file under its\n"
        "--models DIR), or with --store DIR from the store directly (only read) and the\n"
        "extraction's model file (--model FILE, default --models DIR/<stored name>, models).\n";
    h2t_cli cli;
    const char *export_dir = NULL, *onnx = NULL, *store = NULL, *model = NULL, *models = NULL;
    uint64_t id;
    h2t_cli_init(&cli, "result", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--export"))
            export_dir = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--export-onnx"))
            onnx = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--store"))
            store = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--model"))
            model = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--models"))
            models = h2t_cli_value(&cli);
        else
            h2t_cli_unknown(&cli);
    }
    int status = job_args_end(&cli, text, &id);
    if (status >= 0)
        return status;
    if (store || model || models) {
        if (!onnx || !store || export_dir || cli.server) {
            fprintf(stderr,
                    "h2tdb result: --store, --model and --models go with --export-onnx FILE "
                    "(and not with --export or --server)\n%s",
                    text);
            return 2;
        }
        return h2t_cli_export_onnx(&cli, store, id, model, models, onnx);
    }
    h2t_msg req = {.type = H2T_MSG_GET_RESULT}, rep;
    req.u.get_result.job = id;
    req.u.get_result.include_head = export_dir != NULL;
    req.u.get_result.include_onnx = onnx != NULL;
    if (h2t_cli_request(&cli, &req, H2T_MSG_RESULT, &rep))
        return 1;
    status = 0;
    if (onnx) {
        int rc = rep.u.result.onnx_len
                     ? h2t_classify_write_file(onnx, rep.u.result.onnx, rep.u.result.onnx_len)
                     : h2t_err_set(H2T_EPROTO, "the server sent no ONNX classifier");
        if (rc < 0)
            status = h2t_cli_fail(&cli, rc);
        else if (!cli.json)
            printf("classifier written to %s (%zu bytes)\n", onnx, rep.u.result.onnx_len);
    }
    if (export_dir) {
        h2t_result *r = NULL;
        int rc = h2t_result_decode(rep.u.result.blob, rep.u.result.blob_len, &r);
        if (rc == 0)
            rc = h2t_result_export(r, export_dir);
        h2t_result_destroy(r);
        if (rc < 0)
            status = h2t_cli_fail(&cli, rc);
        else if (!cli.json)
            printf("head written to %s/\n", export_dir);
    }
    if (cli.json)
        printf("%s\n", rep.u.result.json);
    else
        printf("%s\n", rep.u.result.summary);
    h2t_msg_free(&rep);
    return status;
}

int h2t_cmd_predict(int argc, char **argv)
{
    static const char text[] =
        "usage: h2tdb predict JOB [--samples SEL]\n\n"
        "Apply a finished job's head to stored samples of its extraction (default: the test\n"
        "split, SEL as in h2tdb task create) and print one line per sample; accuracy is over\n"
        "the samples the job's task labels.\n";
    h2t_cli cli;
    uint64_t id;
    h2t_msg req = {.type = H2T_MSG_PREDICT}, rep;
    h2t_cli_init(&cli, "predict", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--samples"))
            req.u.predict.samples = h2t_cli_value(&cli);
        else
            h2t_cli_unknown(&cli);
    }
    int status = job_args_end(&cli, text, &id);
    if (status >= 0)
        return status;
    req.u.predict.job = id;
    if (h2t_cli_request(&cli, &req, H2T_MSG_PREDICTION, &rep))
        return 1;
    const h2t_msg_prediction *p = &rep.u.prediction;
    if (cli.json)
        printf("{\"accuracy\": %.6f, \"predictions\": [", p->accuracy);
    for (size_t i = 0; i < p->n_samples; i++) {
        uint32_t k = p->predicted[i];
        const char *name = k < p->n_class_names ? p->class_names[k] : "?";
        uint32_t lab = i < p->n_labels ? p->labels[i] : UINT32_MAX;
        if (cli.json) {
            printf("%s{\"sample\": %u, \"class\": %u, \"name\": ", i ? ", " : "", p->samples[i], k);
            h2t_json_str(stdout, name);
            if (lab != UINT32_MAX)
                printf(", \"label\": %u", lab);
            if (p->n_probs == p->n_samples * p->n_class_names && p->n_class_names) {
                printf(", \"probs\": [");
                for (size_t q = 0; q < p->n_class_names; q++)
                    printf("%s%.9g", q ? ", " : "", (double)p->probs[i * p->n_class_names + q]);
                fputc(']', stdout);
            }
            fputc('}', stdout);
        } else {
            printf("%u\t%s", p->samples[i], name);
            if (lab != UINT32_MAX)
                printf("\t%s", lab == k ? "ok" : "wrong");
            fputc('\n', stdout);
        }
    }
    if (cli.json)
        printf("]}\n");
    else
        printf("accuracy %.4f over the labelled samples\n", p->accuracy);
    h2t_msg_free(&rep);
    return 0;
}
