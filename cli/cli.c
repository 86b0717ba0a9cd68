/*
 * cli/cli.c - option parsing and printing shared by the service commands.
 */
#include "cli/cli.h"

#include "common/err.h"
#include "common/train_spec.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void h2t_cli_init(h2t_cli *c, const char *cmd, int argc, char **argv)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->argc = argc;
    c->argv = argv;
    c->i = 0;
    c->timeout_ms = 0;
}

int h2t_cli_next(h2t_cli *c)
{
    while (++c->i < c->argc) {
        const char *a = c->argv[c->i];
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a, '=');
            c->inline_val = NULL;
            if (eq && (size_t)(eq - a) < sizeof(c->argbuf)) {
                memcpy(c->argbuf, a, (size_t)(eq - a));
                c->argbuf[eq - a] = 0;
                c->arg = c->argbuf;
                c->inline_val = eq + 1;
            } else {
                c->arg = a;
            }
            return 1;
        }
        if (!strcmp(a, "-h")) {
            c->arg = "--help";
            c->inline_val = NULL;
            return 1;
        }
        if (c->all_pos) {
            c->all_pos[c->n_all_pos++] = a;
        } else if (c->npos < (int)(sizeof(c->pos) / sizeof(c->pos[0]))) {
            c->pos[c->npos++] = a;
        } else {
            fprintf(stderr, "h2tdb %s: too many arguments at '%s'\n", c->cmd, a);
            c->bad = 1;
        }
    }
    return 0;
}

int h2t_cli_is(const h2t_cli *c, const char *name)
{
    return !strcmp(c->arg, name);
}

const char *h2t_cli_value(h2t_cli *c)
{
    if (c->inline_val)
        return c->inline_val;
    if (c->i + 1 >= c->argc) {
        fprintf(stderr, "h2tdb %s: %s needs a value\n", c->cmd, c->arg);
        c->bad = 1;
        return NULL;
    }
    return c->argv[++c->i];
}

int h2t_cli_u64(h2t_cli *c, const char *v, unsigned long long *out)
{
    if (!v)
        return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-') {
        fprintf(stderr, "h2tdb %s: %s '%s': want a non-negative integer\n", c->cmd, c->arg, v);
        c->bad = 1;
        return -1;
    }
    *out = x;
    return 0;
}

int h2t_cli_u64_range(h2t_cli *c, const char *v, unsigned long long lo, unsigned long long hi,
                      unsigned long long *out)
{
    unsigned long long x;
    if (h2t_cli_u64(c, v, &x) != 0)
        return -1;
    if (x < lo || x > hi) { /* never clamped: the value typed, and what is allowed */
        fprintf(stderr, "h2tdb %s: %s %s: want %llu..%llu\n", c->cmd, c->arg, v, lo, hi);
        c->bad = 1;
        return -1;
    }
    *out = x;
    return 0;
}

int h2t_cli_double(h2t_cli *c, const char *v, double *out)
{
    if (!v)
        return -1;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x)) {
        fprintf(stderr, "h2tdb %s: %s '%s': want a number\n", c->cmd, c->arg, v);
        c->bad = 1;
        return -1;
    }
    *out = x;
    return 0;
}

int h2t_cli_common(h2t_cli *c)
{
    if (h2t_cli_is(c, "--server"))
        c->server = h2t_cli_value(c);
    else if (h2t_cli_is(c, "--token-file"))
        c->token_file = h2t_cli_value(c);
    else if (h2t_cli_is(c, "--json"))
        c->json = 1;
    else if (h2t_cli_is(c, "--help"))
        c->help = 1;
    else if (h2t_cli_is(c, "--timeout")) {
        double s;
        if (h2t_cli_double(c, h2t_cli_value(c), &s) == 0)
            c->timeout_ms = (int)(s * 1000);
    } else
        return 0;
    return 1;
}

void h2t_cli_unknown(h2t_cli *c)
{
    fprintf(stderr, "h2tdb %s: unknown option '%s' (h2tdb %s --help)\n", c->cmd, c->arg, c->cmd);
    c->bad = 1;
}

int h2t_cli_fail(const h2t_cli *c, int rc)
{
    const char *d = h2t_err_detail();
    fprintf(stderr, "h2tdb %s: %s%s%s\n", c->cmd, h2t_strerror(rc), *d ? ": " : "", d);
    return 1;
}

h2t_client *h2t_cli_connect(h2t_cli *c)
{
    h2t_client *cl = NULL;
    int rc = h2t_client_connect(c->server, c->token_file, c->timeout_ms, &cl);
    if (rc < 0) {
        h2t_cli_fail(c, rc);
        return NULL;
    }
    return cl;
}

int h2t_cli_request(h2t_cli *c, h2t_msg *req, int want, h2t_msg *rep)
{
    h2t_client *cl = h2t_cli_connect(c);
    if (!cl)
        return 1;
    int rc = h2t_client_call(cl, req, want, rep);
    h2t_client_close(cl);
    return rc < 0 ? h2t_cli_fail(c, rc) : 0;
}

void h2t_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

const char *h2t_cli_job_state(int state)
{
    static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
    return state >= 0 && state < 5 ? names[state] : "unknown";
}

const char *h2t_cli_method_name(int method)
{
    return method >= 0 ? h2t_method_name((uint32_t)method) : "unknown";
}

void h2t_cli_job_print(FILE *f, const h2t_msg_job *j, int json)
{
    const char *task = j->has_spec ? j->spec.task : "";
    const char *method = j->has_spec ? h2t_cli_method_name(j->spec.spec.method) : "";
    if (json) {
        fprintf(f, "{\"id\": %" PRIu64 ", \"state\": ", j->id);
        h2t_json_str(f, h2t_cli_job_state(j->state));
        fprintf(f, ", \"progress\": %.4f, \"stage\": ", j->progress);
        h2t_json_str(f, j->stage);
        fprintf(f, ", \"attempts\": %u, \"task\": ", j->attempts);
        h2t_json_str(f, task);
        fprintf(f, ", \"method\": ");
        h2t_json_str(f, method);
        fprintf(f, ", \"error\": ");
        h2t_json_str(f, j->error);
        fprintf(f,
                ", \"created_ms\": %" PRIu64 ", \"started_ms\": %" PRIu64
                ", \"finished_ms\": %" PRIu64 "%s}",
                j->created_ms, j->started_ms, j->finished_ms,
                j->reused ? ", \"reused\": true" : "");
        return;
    }
    fprintf(f, "%-6" PRIu64 " %-9s %5.1f%%  %-10s %-8s attempts %u", j->id,
            h2t_cli_job_state(j->state), 100.0 * j->progress, task, method, j->attempts);
    if (j->stage && *j->stage && j->state <= 1)
        fprintf(f, "  [%s]", j->stage);
    if (j->error && *j->error)
        fprintf(f, "  error: %s", j->error);
    if (j->finished_ms > j->started_ms && j->started_ms)
        fprintf(f, "  %.1fs", (double)(j->finished_ms - j->started_ms) / 1000.0);
}

void h2t_cli_list_print(FILE *f, const void *v, size_t n, size_t size, const char *header,
                        h2t_cli_item_fn item, int json)
{
    if (json)
        fputc('[', f);
    else if (header)
        fputs(header, f);
    for (size_t i = 0; i < n; i++) {
        if (json && i)
            fputs(",\n ", f);
        item(f, (const char *)v + i * size, json);
        if (!json)
            fputc('\n', f);
    }
    if (json)
        fputs("]\n", f);
}
