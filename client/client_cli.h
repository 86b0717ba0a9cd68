/*
 * client/client_cli.h - what the service commands (cmd_serve.c, cmd_jobs.c, cmd_task.c)
 * share: option parsing, connecting with --server/--token-file, JSON string output, and the
 * printing of jobs. Not a public contract.
 *
 *     h2t_cli cli;
 *     h2t_cli_init(&cli, "jobs", argc, argv);
 *     while (h2t_cli_next(&cli)) {
 *         if (h2t_cli_common(&cli)) continue;      // --server, --token-file, --json, --help
 *         if (h2t_cli_is(&cli, "--limit")) limit = h2t_cli_value(&cli); ...
 *     }
 */
#ifndef H2T_CLIENT_CLIENT_CLI_H
#define H2T_CLIENT_CLIENT_CLI_H

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

/* Connect as the options say; prints the error and returns NULL on failure. */
h2t_client *h2t_cli_connect(h2t_cli *c);
/* Print "h2tdb CMD: strerror: detail" to stderr; returns 1 (the exit status). */
int h2t_cli_fail(const h2t_cli *c, int rc);

/* JSON string with quotes and escapes. */
void h2t_json_str(FILE *f, const char *s);
/* Print a job as one line (human) or a JSON object. */
void h2t_cli_job_print(FILE *f, const h2t_msg_job *j, int json);
const char *h2t_cli_job_state(int state);
const char *h2t_cli_method_name(int method);

#endif
