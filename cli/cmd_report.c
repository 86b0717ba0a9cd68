/*
 * cli/cmd_report.c - `h2tdb report JOB`: an SVG of a finished job's head (kept features
 * per layer, validation accuracy against keep fraction), from the server or straight from a
 * store.
 */
#include "cli/cli.h"
#include "cli/cmds.h"
#include "cli/report.h"
#include "common/err.h"
#include "storage/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char report_help[] =
    "usage: h2tdb report [--server ADDR | --store DIR] JOB [--out FILE.svg] [--title TEXT]\n"
    "\n"
    "Draw a finished train job as an SVG picture: the features the head kept per layer, in\n"
    "depth order (which depths Head2Toe chose), and the mean cross-validation accuracy\n"
    "against the keep fraction for each lambda of the search (the chosen cell circled).\n"
    "\n"
    "  --server ADDR    ask a running `h2tdb serve` (default $H2T_SERVER or 127.0.0.1:7433)\n"
    "  --store DIR      read the result straight from a store instead (no server needed)\n"
    "  --token-file F   token for a server that requires one\n"
    "  --out FILE       where to write (default job-JOB.svg); written whole or not at all\n"
    "  --title TEXT     the picture's title (default \"h2tdb job JOB\")\n";

int h2t_cmd_report(int argc, char **argv)
{
    h2t_cli cli;
    const char *store_dir = NULL, *out = NULL, *title = NULL;
    h2t_cli_init(&cli, "report", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_is(&cli, "--store"))
            store_dir = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--out"))
            out = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--title"))
            title = h2t_cli_value(&cli);
        else if (!h2t_cli_common(&cli))
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(report_help, stdout);
        return 0;
    }
    if (cli.bad)
        return 2;
    if (cli.npos != 1) {
        fprintf(stderr, "h2tdb report: expected one JOB id (h2tdb report --help)\n");
        return 2;
    }
    unsigned long long job;
    if (h2t_cli_u64(&cli, cli.pos[0], &job) != 0)
        return 2;

    void *blob = NULL;
    size_t len = 0;
    int rc;
    h2t_msg rep;
    int have_rep = 0;
    if (store_dir) {
        h2t_store *st = NULL;
        rc = h2t_store_open(store_dir, H2T_STORE_RDONLY, &st);
        if (rc == 0) {
            rc = h2t_store_result_get(st, job, &blob, &len);
            h2t_store_close(st);
        }
        if (rc)
            return h2t_cli_fail(&cli, rc);
    } else {
        h2t_msg req = {.type = H2T_MSG_GET_RESULT};
        req.u.get_result.job = job;
        req.u.get_result.include_head = 1;
        if (h2t_cli_request(&cli, &req, H2T_MSG_RESULT, &rep))
            return 1;
        have_rep = 1;
        blob = (void *)rep.u.result.blob;
        len = rep.u.result.blob_len;
    }

    h2t_result *r = NULL;
    rc = h2t_result_decode(blob, len, &r);
    if (have_rep)
        h2t_msg_free(&rep);
    else
        free(blob);
    if (rc)
        return h2t_cli_fail(&cli, rc);

    char def_out[64], def_title[64];
    snprintf(def_out, sizeof(def_out), "job-%llu.svg", job);
    snprintf(def_title, sizeof(def_title), "h2tdb job %llu", job);
    rc = h2t_report_svg(r, title ? title : def_title, out ? out : def_out);
    if (rc) {
        h2t_result_destroy(r);
        return h2t_cli_fail(&cli, rc);
    }
    if (cli.json) {
        printf("{\"job\": %llu, \"svg\": \"%s\"", job, out ? out : def_out);
        if (r->n_curve) {
            printf(", \"layer_curve\": [");
            for (uint32_t i = 0; i < r->n_curve; i++)
                printf("%s{\"layer\": %u, \"cv_acc\": %.6f}", i ? ", " : "", r->curve_layers[i],
                       r->curve_acc[i]);
            printf("]");
        }
        printf("}\n");
    } else {
        if (r->n_curve) { /* which depth transfers best, as text too */
            printf("probe CV accuracy per layer (%u folds x %u repeats):\n", r->folds,
                   r->cv_repeats);
            for (uint32_t i = 0; i < r->n_curve; i++)
                printf("  layer %4u  %6.2f%%%s\n", r->curve_layers[i], 100 * r->curve_acc[i],
                       r->n_layers && r->curve_layers[i] == r->layer_ids[0] ? "  <- chosen" : "");
        }
        printf("wrote %s\n", out ? out : def_out);
    }
    h2t_result_destroy(r);
    return 0;
}
