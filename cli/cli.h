/*
 * cli/cli.h - what the service commands (cmd_serve.c, cmd_jobs.c, cmd_task.c,
 * cmd_compare.c, cmd_report.c) share: option parsing, connecting with --server/--token-file,
 * one request and its reply, JSON string output, the printing of jobs and of lists. Not a
 * public contract.
 *
 *     void job_item(FILE *f, const void *item, int json); // prints one h2t_msg_job
 *     char *argv[] = {"jobs", "--json", NULL};           // the command's own arguments
 *     h2t_cli cli;
 *     h2t_cli_init(&cli, "jobs", 2, argv);
 *     while (h2t_cli_next(&cli))
 *         if (!h2t_cli_common(&cli)) // --server, --token-file, --json, --timeout, --help
 *             h2t_cli_unknown(&cli);
 *     h2t_msg req = {.type = H2T_MSG_LIST_JOBS}, rep;
 *     if (cli.bad || h2t_cli_request(&cli, &req, H2T_MSG_JOB_LIST, &rep))
 *         return; // the error is printed: exit status 1
 *     h2t_cli_list_print(stdout, rep.u.job_list.v, rep.u.job_list.n, sizeof(h2t_msg_job), NULL,
 *                        job_item, cli.json);
 *     h2t_msg_free(&rep);
 */
#ifndef H2T_CLI_CLI_H
#define H2T_CLI_CLI_H

#include <stdio.h>

#include "client/client.h"

typedef struct h2t_cli {
    const char *cmd;
    int argc;
    char **argv;
    int i;           /* index of the current argument */
    const char *arg; /* the current argument ("--name" part of "--name=value") */
    char argbuf[64];
    const char *inline_val; /* value after '=' */
    const char *server, *token_file;
    int json, help, bad;
    int timeout_ms;
    const char *pos[8]; /* positional arguments */
    int npos;
    /* Set by a command that takes any number of positional arguments (files): an array of at
     * least argc entries (caller-OWNED) that receives them all instead of pos. */
    const char **all_pos;
    int n_all_pos;
} h2t_cli;

void h2t_cli_init(h2t_cli *c, const char *cmd, int argc, char **argv);
/* Advance to the next option; positional arguments are collected into pos. 0 at the end. */
int h2t_cli_next(h2t_cli *c);
int h2t_cli_is(const h2t_cli *c, const char *name);
/* The value of the current option (next argument or after '='); NULL and c->bad set when
 * missing (an error is printed). */
const char *h2t_cli_value(h2t_cli *c);
/* Handle --server, --token-file, --json, --timeout, --help; 1 when handled. */
int h2t_cli_common(h2t_cli *c);
/* Report an unknown option (sets bad). */
void h2t_cli_unknown(h2t_cli *c);
/* Parse an unsigned/double option value; print an error naming the option when bad. */
int h2t_cli_u64(h2t_cli *c, const char *v, unsigned long long *out);
int h2t_cli_double(h2t_cli *c, const char *v, double *out);
/* As h2t_cli_u64, and within lo..hi: a value outside is an error quoting the value as typed
 * and the range (never clamped). */
int h2t_cli_u64_range(h2t_cli *c, const char *v, unsigned long long lo, unsigned long long hi,
                      unsigned long long *out);

/* The train-spec options of h2tdb train and fit (cmd_jobs.c: --method, --lambdas, --keep,
 * --k, --folds, --fold-kind, --cv-repeats, --one-se, --final-l2s, --select-group,
 * --auto-methods, --optimizer, --steps, --lr, --seed, --threads) into a request spec sp (0 = the
 * method's default); *ks_given set by --k. 1 when the current option is one of them (a bad value
 * sets c->bad), else 0. */
int h2t_cli_spec_option(h2t_cli *c, h2t_train_spec *sp, int *ks_given);

/* Connect as the options say; prints the error and returns NULL on failure. */
h2t_client *h2t_cli_connect(h2t_cli *c);
/* Print "h2tdb CMD: strerror: detail" to stderr; returns 1 (the exit status). */
int h2t_cli_fail(const h2t_cli *c, int rc);
/* One request on a connection of its own: connect as the options say, send req (BORROWED),
 * wait for the reply of type want, close. 0 with *rep OWNED by the caller (h2t_msg_free);
 * 1 (the exit status) with the error printed as h2t_cli_fail does and nothing in *rep. */
int h2t_cli_request(h2t_cli *c, h2t_msg *req, int want, h2t_msg *rep);

/* h2tdb result J --export-onnx FILE --store DIR (cmd_classify.c): the job's classifier from
 * the store (read only) and the model file, written as ONNX; the status to exit with. */
int h2t_cli_export_onnx(h2t_cli *c, const char *store, uint64_t job, const char *model,
                        const char *models, const char *path);

/* JSON string with quotes and escapes. */
void h2t_json_str(FILE *f, const char *s);
/* Print a job as one line (human) or a JSON object. */
void h2t_cli_job_print(FILE *f, const h2t_msg_job *j, int json);
const char *h2t_cli_job_state(int state);
const char *h2t_cli_method_name(int method);

/* Prints one list item (BORROWED): a line's text without its newline, or a JSON value. */
typedef void (*h2t_cli_item_fn)(FILE *f, const void *item, int json);
/* Print the n items of size bytes each at v (BORROWED): with json a JSON array, one item a
 * line ("[a,\n b]\n", "[]\n" when empty); otherwise header (NULL: none) and then each item
 * on a line of its own. */
void h2t_cli_list_print(FILE *f, const void *v, size_t n, size_t size, const char *header,
                        h2t_cli_item_fn item, int json);

#endif
