/*
 * cli/cmd_task.c - `h2tdb task create | tasks | stats`: downstream tasks over an
 * extraction and per-layer feature statistics, through a server.
 */
#include "cli/cli.h"
#include "cli/cmds.h"
#include "common/err.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char task_usage[] =
    "usage: h2tdb task create NAME --extraction E [--train SEL] [--test SEL] [--val SEL]\n"
    "                         [--map FILE] [--shots K] [--replace]\n\n"
    "A task is labels and sample lists over one extraction (E: its id or name).\n"
    "SEL picks samples of the extraction's source, parts joined by '+':\n"
    "  train            every train-split sample     (default for --train)\n"
    "  test             every test-split sample      (default for --test)\n"
    "  train:1000       the first 1000 train-split samples\n"
    "  test[0:2000]     positions 0..1999 of the test split (A or B may be left out)\n"
    "  ids:1,5,7-9      sample ids (ranges inclusive)\n"
    "  none             nothing (--test, --val)\n"
    "--map FILE regroups classes: one 'FROM = TO' per line, FROM a class name or id of the\n"
    "source, TO the task's class ('-' drops those samples), '* = TO' for every class not\n"
    "named, '#' comments. Example (Fashion-MNIST):\n"
    "  Sandal = footwear\n  Sneaker = footwear\n  Ankle boot = footwear\n"
    "  T-shirt/top = tops\n  Pullover = tops\n  Coat = tops\n  Shirt = tops\n  * = other\n"
    "--shots K keeps the first K training samples of each class (k-shot).\n";

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

typedef struct map_file {
    h2t_msg_map_entry *v;
    size_t n;
    char **lines;
} map_file;

static void map_file_free(map_file *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->lines[i]);
    free(m->lines);
    free(m->v);
}

static int map_file_read(const char *path, map_file *m)
{
    memset(m, 0, sizeof(*m));
    FILE *f = fopen(path, "r");
    if (!f)
        return h2t_err_set(H2T_EIO, "--map %s: %s", path, strerror(errno));
    char buf[1024];
    size_t lineno = 0, cap = 0;
    int rc = 0;
    while (fgets(buf, sizeof(buf), f)) {
        lineno++;
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = 0;
        char *s = trim(buf);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = h2t_err_set(H2T_EINVAL, "--map %s line %zu: want 'FROM = TO', got '%s'", path,
                             lineno, s);
            break;
        }
        *eq = 0;
        char *from = trim(s), *to = trim(eq + 1);
        if (!*from || !*to) {
            rc = h2t_err_set(H2T_EINVAL, "--map %s line %zu: empty class name", path, lineno);
            break;
        }
        if (m->n == cap) {
            cap = cap ? 2 * cap : 16;
            h2t_msg_map_entry *nv = realloc(m->v, cap * sizeof(*nv));
            char **nl = realloc(m->lines, cap * sizeof(*nl));
            if (nv)
                m->v = nv;
            if (nl)
                m->lines = nl;
            if (!nv || !nl) {
                rc = h2t_err_set(H2T_ENOMEM, "--map");
                break;
            }
        }
        size_t fl = strlen(from), tl = strlen(to);
        char *line = malloc(fl + tl + 2);
        if (!line) {
            rc = h2t_err_set(H2T_ENOMEM, "--map");
            break;
        }
        memcpy(line, from, fl + 1);
        memcpy(line + fl + 1, to, tl + 1);
        m->lines[m->n] = line;
        m->v[m->n].from = line;
        m->v[m->n].to = line + fl + 1;
        m->n++;
    }
    fclose(f);
    if (rc == 0 && m->n == 0)
        rc = h2t_err_set(H2T_EINVAL, "--map %s has no 'FROM = TO' lines", path);
    if (rc < 0)
        map_file_free(m);
    return rc;
}

/* A task as one line or a JSON object (h2t_cli_item_fn: item is an h2t_msg_task). */
static void task_print(FILE *f, const void *item, int json)
{
    const h2t_msg_task *t = item;
    if (json) {
        fprintf(f, "{\"name\": ");
        h2t_json_str(f, t->name);
        fprintf(f, ", \"extraction\": %u, \"classes\": [", t->extraction);
        for (size_t i = 0; i < t->n_class_names; i++) {
            if (i)
                fprintf(f, ", ");
            h2t_json_str(f, t->class_names[i]);
        }
        fprintf(f, "], \"shots\": %u, \"n_train\": %u, \"n_val\": %u, \"n_test\": %u", t->shots,
                t->n_train, t->n_val, t->n_test);
        if (t->n_train_per_class) {
            fprintf(f, ", \"train_per_class\": [");
            for (size_t i = 0; i < t->n_train_per_class; i++)
                fprintf(f, "%s%u", i ? ", " : "", t->train_per_class[i]);
            fprintf(f, "]");
        }
        fprintf(f, "}");
        return;
    }
    fprintf(f, "%-20s extraction %-4u classes %-3zu train %-6u val %-5u test %-6u", t->name,
            t->extraction, t->n_class_names, t->n_train, t->n_val, t->n_test);
    if (t->shots)
        fprintf(f, " shots %u", t->shots);
    fprintf(f, "  [");
    for (size_t i = 0; i < t->n_class_names && i < 12; i++)
        fprintf(f, "%s%s", i ? ", " : "", t->class_names[i]);
    fprintf(f, "%s]", t->n_class_names > 12 ? ", ..." : "");
}

int h2t_cmd_task(int argc, char **argv)
{
    h2t_cli cli;
    h2t_msg req = {.type = H2T_MSG_CREATE_TASK}, rep;
    h2t_msg_task_spec *s = &req.u.create_task;
    const char *map_path = NULL;
    unsigned long long v;
    h2t_cli_init(&cli, "task", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--extraction"))
            s->extraction = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--train"))
            s->train = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--test"))
            s->test = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--val"))
            s->val = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--map"))
            map_path = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--replace"))
            s->replace = 1;
        else if (h2t_cli_is(&cli, "--shots")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 0, UINT32_MAX, &v) == 0)
                s->shots = (uint32_t)v;
        } else
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(task_usage, stdout);
        return 0;
    }
    if (cli.npos == 1 && !strcmp(cli.pos[0], "list")) {
        char *args[] = {"tasks", NULL};
        (void)args;
        fprintf(stderr, "h2tdb task: use 'h2tdb tasks' to list tasks\n");
        return 2;
    }
    if (cli.bad || cli.npos != 2 || strcmp(cli.pos[0], "create") || !s->extraction) {
        if (!cli.bad && (cli.npos < 1 || strcmp(cli.pos[0], "create")))
            fprintf(stderr, "h2tdb task: want 'task create NAME ...'\n");
        else if (!cli.bad && cli.npos != 2)
            fprintf(stderr, "h2tdb task create: give one task NAME\n");
        else if (!cli.bad)
            fprintf(stderr, "h2tdb task create: --extraction E is required\n");
        fputs(task_usage, stderr);
        return 2;
    }
    s->name = cli.pos[1];
    map_file mf = {0};
    int rc;
    if (map_path) {
        if ((rc = map_file_read(map_path, &mf)) < 0)
            return h2t_cli_fail(&cli, rc);
        s->map = mf.v;
        s->n_map = mf.n;
    }
    int status = h2t_cli_request(&cli, &req, H2T_MSG_TASK, &rep);
    map_file_free(&mf);
    if (status)
        return status;
    task_print(stdout, &rep.u.task, cli.json);
    fputc('\n', stdout);
    if (!cli.json && rep.u.task.n_train_per_class) {
        printf("train samples per class:");
        for (size_t i = 0; i < rep.u.task.n_train_per_class; i++)
            printf(" %s=%u", rep.u.task.class_names[i], rep.u.task.train_per_class[i]);
        printf("\n");
    }
    h2t_msg_free(&rep);
    return 0;
}

int h2t_cmd_tasks(int argc, char **argv)
{
    static const char text[] = "usage: h2tdb tasks [--server ADDR] [--json]\n\n"
                               "List the tasks of the server's store.\n";
    h2t_cli cli;
    h2t_cli_init(&cli, "tasks", argc, argv);
    while (h2t_cli_next(&cli))
        if (!h2t_cli_common(&cli))
            h2t_cli_unknown(&cli);
    if (cli.help) {
        fputs(text, stdout);
        return 0;
    }
    if (cli.bad || cli.npos) {
        fputs(text, stderr);
        return 2;
    }
    h2t_msg req = {.type = H2T_MSG_LIST_TASKS}, rep;
    if (h2t_cli_request(&cli, &req, H2T_MSG_TASK_LIST, &rep))
        return 1;
    h2t_cli_list_print(stdout, rep.u.task_list.v, rep.u.task_list.n, sizeof(h2t_msg_task), NULL,
                       task_print, cli.json);
    h2t_msg_free(&rep);
    return 0;
}

int h2t_cmd_stats(int argc, char **argv)
{
    static const char text[] =
        "usage: h2tdb stats EXTRACTION [--layer NAME [--per-feature]]\n\n"
        "Feature statistics of an extraction (id or name), from a server: per layer the\n"
        "pooled dimension, samples merged, L2-norm mean/min/max, mean of the per-feature\n"
        "means and variances, overall min/max. --per-feature (one layer) adds every\n"
        "feature's mean, variance, min and max.\n";
    h2t_cli cli;
    h2t_msg req = {.type = H2T_MSG_STATS_REQ}, rep;
    h2t_cli_init(&cli, "stats", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_common(&cli))
            continue;
        if (h2t_cli_is(&cli, "--layer"))
            req.u.stats_req.layer = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--per-feature"))
            req.u.stats_req.per_feature = 1;
        else
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(text, stdout);
        return 0;
    }
    if (cli.bad || cli.npos != 1) {
        if (!cli.bad)
            fprintf(stderr, "h2tdb stats: give one EXTRACTION (id or name)\n");
        fputs(text, stderr);
        return 2;
    }
    req.u.stats_req.extraction = cli.pos[0];
    if (h2t_cli_request(&cli, &req, H2T_MSG_STATS, &rep))
        return 1;
    const h2t_msg_stats *s = &rep.u.stats;
    if (cli.json)
        printf("{\"extraction\": %u, \"layers\": [", s->extraction);
    else
        printf("%-40s %7s %7s %10s %10s %10s %11s %11s %10s %10s\n", "layer", "dim", "count",
               "norm_mean", "norm_min", "norm_max", "mean(mean)", "mean(var)", "min", "max");
    for (size_t i = 0; i < s->n_layers; i++) {
        const h2t_msg_layer_stats *l = &s->layers[i];
        if (cli.json) {
            printf("%s{\"layer\": ", i ? ",\n " : "");
            h2t_json_str(stdout, l->layer);
            printf(", \"dim\": %u, \"count\": %" PRIu64
                   ", \"norm_mean\": %.9g, \"norm_min\": %.9g, \"norm_max\": %.9g"
                   ", \"mean_of_means\": %.9g, \"mean_of_vars\": %.9g, \"min\": %.9g, "
                   "\"max\": %.9g",
                   l->dim, l->count, l->norm_mean, l->norm_min, l->norm_max, l->mean_of_means,
                   l->mean_of_vars, l->min, l->max);
            if (l->n_mean) {
                printf(", \"features\": [");
                for (size_t j = 0; j < l->n_mean; j++)
                    printf("%s[%.9g, %.9g, %.9g, %.9g]", j ? ", " : "", l->mean[j], l->var[j],
                           l->fmin[j], l->fmax[j]);
                printf("]");
            }
            printf("}");
        } else {
            printf("%-40s %7u %7" PRIu64 " %10.4g %10.4g %10.4g %11.4g %11.4g %10.4g %10.4g\n",
                   l->layer, l->dim, l->count, l->norm_mean, l->norm_min, l->norm_max,
                   l->mean_of_means, l->mean_of_vars, l->min, l->max);
            if (l->n_mean) {
                printf("%8s %12s %12s %12s %12s\n", "feature", "mean", "var", "min", "max");
                for (size_t j = 0; j < l->n_mean; j++)
                    printf("%8zu %12.6g %12.6g %12.6g %12.6g\n", j, l->mean[j], l->var[j],
                           l->fmin[j], l->fmax[j]);
            }
        }
    }
    if (cli.json)
        printf("]}\n");
    h2t_msg_free(&rep);
    return 0;
}
