/*
 * cli/cmd_compare.c - `h2tdb compare JOB...`: finished jobs side by side (task, method,
 * accuracy, chosen hyperparameters, features kept and where, time): the table the demo prints.
 */
#include "cli/cli.h"
#include "cli/cmds.h"
#include "common/err.h"
#include "solver/solver.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char compare_help[] =
    "usage: h2tdb compare [--server ADDR] JOB [JOB...] [--json]\n"
    "\n"
    "Finished train jobs side by side: task, method, test and mean CV validation accuracy,\n"
    "the chosen lambda and keep fraction, features kept of all looked at, how the kept\n"
    "features spread over depth (quarters of the layer list, input side first: Q1/Q2/Q3/Q4;\n"
    "the layer's name for a one-layer probe), the job's wall time, and notes: knn's k, the\n"
    "Adam optimiser, head2toe's final-head L2 when CV chose it (--final-l2s) and whole-layer\n"
    "scoring (--select-group layer).\n";

/* The options a row's other columns do not show. */
static void notes(const h2t_result *r, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    if (r->method == H2T_METHOD_KNN)
        n += (size_t)snprintf(out + n, cap - n, "k %u ", r->knn_k);
    if (r->optimizer == H2T_OPT_ADAM && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "adam ");
    if (r->method == H2T_METHOD_HEAD2TOE && r->final_l2s && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "final-L2 %g ", r->final_l2);
    if (r->method == H2T_METHOD_HEAD2TOE && r->select_group == H2T_SELECT_LAYER && n < cap)
        n += (size_t)snprintf(out + n, cap - n, "whole-layers ");
    if (n && n <= cap)
        out[n - 1] = 0; /* the trailing space */
}

/* Kept features per quarter of the layer list (depth order). */
static void quarters(const h2t_result *r, uint64_t q[4])
{
    memset(q, 0, 4 * sizeof(q[0]));
    for (uint32_t i = 0; i < r->n_layers; i++)
        q[(uint64_t)i * 4 / r->n_layers] += r->layer_kept[i];
}

int h2t_cmd_compare(int argc, char **argv)
{
    h2t_cli cli;
    h2t_cli_init(&cli, "compare", argc, argv);
    while (h2t_cli_next(&cli))
        if (!h2t_cli_common(&cli))
            h2t_cli_unknown(&cli);
    if (cli.help) {
        fputs(compare_help, stdout);
        return 0;
    }
    if (cli.bad || cli.npos == 0) {
        fprintf(stderr, "h2tdb compare: expected one or more JOB ids (h2tdb compare --help)\n");
        return 2;
    }
    uint64_t ids[sizeof(cli.pos) / sizeof(cli.pos[0])];
    for (int i = 0; i < cli.npos; i++) {
        unsigned long long v;
        if (h2t_cli_u64(&cli, cli.pos[i], &v) != 0)
            return 2;
        ids[i] = v;
    }
    h2t_client *c = h2t_cli_connect(&cli);
    if (!c)
        return 1;
    int status = 0;
    if (cli.json)
        printf("[");
    else
        printf("%-5s %-16s %-13s %7s %7s %8s %6s %15s %-23s %7s  %s\n", "job", "task", "method",
               "test%", "val%", "lambda", "keep", "kept/D", "kept Q1/Q2/Q3/Q4", "time", "notes");
    for (int i = 0; i < cli.npos; i++) {
        h2t_msg jreq = {.type = H2T_MSG_GET_JOB}, jrep, rreq = {.type = H2T_MSG_GET_RESULT}, rrep;
        jreq.u.job_ref.job = ids[i];
        int rc = h2t_client_call(c, &jreq, H2T_MSG_JOB, &jrep);
        if (rc < 0) {
            status = h2t_cli_fail(&cli, rc);
            break;
        }
        rreq.u.get_result.job = ids[i];
        rreq.u.get_result.include_head = 1;
        rc = h2t_client_call(c, &rreq, H2T_MSG_RESULT, &rrep);
        if (rc < 0) {
            h2t_msg_free(&jrep);
            status = h2t_cli_fail(&cli, rc);
            break;
        }
        h2t_result *r = NULL;
        rc = h2t_result_decode(rrep.u.result.blob, rrep.u.result.blob_len, &r);
        if (rc < 0) {
            h2t_msg_free(&jrep);
            h2t_msg_free(&rrep);
            status = h2t_cli_fail(&cli, rc);
            break;
        }
        const char *task = jrep.u.job.has_spec && jrep.u.job.spec.task ? jrep.u.job.spec.task : "?";
        double secs = jrep.u.job.finished_ms > jrep.u.job.started_ms
                          ? (double)(jrep.u.job.finished_ms - jrep.u.job.started_ms) / 1000.0
                          : r->t_total;
        uint64_t q[4];
        quarters(r, q);
        char method[24], note[96]; /* auto's results name the method it chose */
        notes(r, note, sizeof(note));
        snprintf(method, sizeof(method), "%s%s", r->n_auto ? "auto:" : "",
                 h2t_cli_method_name((int)r->method));
        if (cli.json) {
            printf("%s{\"job\": %" PRIu64 ", \"task\": ", i ? ", " : "", ids[i]);
            h2t_json_str(stdout, task);
            printf(", \"method\": \"%s\", \"test_acc\": %.6f, \"val_acc\": %.6f, \"lambda\": %g, "
                   "\"keep\": %g, \"kept\": %u, \"dim\": %" PRIu64 ", \"kept_quarters\": [%" PRIu64
                   ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "], \"seconds\": %.2f, \"notes\": ",
                   method, r->test_acc, r->val_acc, r->lambda, r->keep, r->n_kept, r->total_dim,
                   q[0], q[1], q[2], q[3], secs);
            h2t_json_str(stdout, note);
            printf("}");
        } else {
            char kept[32], qs[48], keep[16];
            snprintf(kept, sizeof(kept), "%u/%" PRIu64, r->n_kept, r->total_dim);
            if (r->n_layers == 1) /* one layer (a probe): its name says more than quarters */
                snprintf(qs, sizeof(qs), "%s",
                         r->layer_names && r->layer_names[0] ? r->layer_names[0] : "one layer");
            else
                snprintf(qs, sizeof(qs), "%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64, q[0], q[1],
                         q[2], q[3]);
            if (r->method == H2T_METHOD_HEAD2TOE)
                snprintf(keep, sizeof(keep), "%g", r->keep);
            else
                snprintf(keep, sizeof(keep), "-");
            printf("%-5" PRIu64 " %-16.16s %-13s %7.2f %7.2f %8g %6s %15s %-23.23s %6.1fs  %s\n",
                   ids[i], task, method, 100 * r->test_acc, 100 * r->val_acc, r->lambda, keep, kept,
                   qs, secs, note);
        }
        h2t_result_destroy(r);
        h2t_msg_free(&jrep);
        h2t_msg_free(&rrep);
    }
    if (cli.json)
        printf("]\n");
    h2t_client_close(c);
    return status;
}
