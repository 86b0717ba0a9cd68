/*
 * cli/cmd_admin.c - the store's life cycle, on the store directly (no server):
 *   h2tdb verify  --store DIR [--json]                  check every record, block, checksum
 *   h2tdb rm      --store DIR extraction|task|job ID [--force]
 *   h2tdb compact --store DIR                           give removed space back
 * rm and compact take the store's service lock: they refuse while a server runs on it.
 */
#include "cli/cli.h"
#include "cli/cmds.h"
#include "common/err.h"
#include "proto/proto.h"
#include "storage/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char verify_usage[] =
    "usage: h2tdb verify --store DIR [--json]\n\n"
    "Check the whole store: every record through its decoder (a result against its\n"
    "checksum), every feature block's size and per-layer CRC32C, the blocks covering each\n"
    "extraction's stored samples, every statistics record's checksum. Prints one line per\n"
    "problem (the table and record, or the extraction, layer and samples) and exits 1 when\n"
    "anything is damaged, 0 when nothing is. Blocks written by builds before checksums\n"
    "(store format 1 and 2) are counted as unchecked. The store is opened read-only.\n";

static const char rm_usage[] =
    "usage: h2tdb rm --store DIR extraction ID|NAME [--force]\n"
    "       h2tdb rm --store DIR task NAME [--force]\n"
    "       h2tdb rm --store DIR job ID [--force]\n\n"
    "Remove an extraction (its features and statistics), a task, or a job (and its\n"
    "result). What others depend on is refused unless --force: an extraction with tasks\n"
    "over it (--force removes those tasks too), a task that jobs were trained on (--force\n"
    "leaves the jobs, whose predict then fails), a queued or running job. Refused while a\n"
    "server runs on the store (stop it first). Space is given back by h2tdb compact.\n";

static const char compact_usage[] =
    "usage: h2tdb compact --store DIR\n\n"
    "Give the space of removed records back to the file system: the store is copied with\n"
    "LMDB's compaction and the copy replaces data.mdb in one rename. Refused while a\n"
    "server or any other process (an extraction, a reader) has the store open, naming it;\n"
    "while it runs, other processes cannot open the store.\n";

static void print_problem(void *ud, const char *problem)
{
    int json = *(int *)ud;
    if (json) {
        static int first = 1;
        printf("%s", first ? "" : ",\n  ");
        first = 0;
        h2t_json_str(stdout, problem);
    } else {
        printf("damaged: %s\n", problem);
    }
}

int h2t_cmd_verify(int argc, char **argv)
{
    h2t_cli cli;
    const char *store = NULL;
    int json = 0;
    h2t_cli_init(&cli, "verify", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_is(&cli, "--help"))
            cli.help = 1;
        else if (h2t_cli_is(&cli, "--store"))
            store = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--json"))
            json = 1;
        else
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(verify_usage, stdout);
        return 0;
    }
    if (cli.bad || cli.npos || !store) {
        if (!store && !cli.bad)
            fprintf(stderr, "h2tdb verify: --store DIR is required\n");
        fputs(verify_usage, stderr);
        return 2;
    }
    h2t_store *st = NULL;
    int rc = h2t_store_open(store, H2T_STORE_RDONLY, &st);
    if (rc < 0)
        return h2t_cli_fail(&cli, rc);
    h2t_store_verify_report r;
    if (json)
        printf("{\"problems\": [");
    rc = h2t_store_verify(st, print_problem, &json, &r);
    h2t_store_close(st);
    if (rc < 0) {
        if (json)
            printf("]}\n");
        return h2t_cli_fail(&cli, rc);
    }
    if (json)
        printf("],\n \"records\": %" PRIu64 ", \"extractions\": %" PRIu64 ", \"blocks\": %" PRIu64
               ", \"unchecked_blocks\": %" PRIu64 ", \"damaged\": %" PRIu64 "}\n",
               r.records, r.extractions, r.blocks, r.unchecked_blocks, r.damaged);
    else
        printf("%s: %" PRIu64 " records, %" PRIu64 " extraction(s), %" PRIu64
               " feature blocks (%" PRIu64 " written without checksums): %s\n",
               store, r.records, r.extractions, r.blocks, r.unchecked_blocks,
               r.damaged ? "DAMAGED" : "ok");
    if (r.damaged && !json)
        fprintf(stderr, "h2tdb verify: %" PRIu64 " problem(s) in %s\n", r.damaged, store);
    return r.damaged ? 1 : 0;
}

/* the jobs whose train spec names the task: a comma list into buf; their count */
static uint32_t task_users(h2t_store *st, const char *task, char *buf, size_t cap)
{
    h2t_job **jv = NULL;
    size_t n = 0, len = 0;
    uint32_t users = 0;
    buf[0] = '\0';
    if (h2t_store_job_list(st, &jv, &n) < 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        h2t_msg m;
        if (!jv[i]->spec_len || h2t_proto_decode(jv[i]->spec, jv[i]->spec_len, &m) < 0)
            continue;
        if (m.type == H2T_MSG_TRAIN && m.u.train.task && !strcmp(m.u.train.task, task)) {
            users++;
            if (len < cap - 1)
                len += (size_t)snprintf(buf + len, cap - len, "%s%" PRIu64, len ? ", " : "",
                                        jv[i]->id);
        }
        h2t_msg_free(&m);
    }
    h2t_job_list_destroy(jv, n);
    return users;
}

int h2t_cmd_rm(int argc, char **argv)
{
    h2t_cli cli;
    const char *store = NULL;
    int force = 0;
    h2t_cli_init(&cli, "rm", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_is(&cli, "--help"))
            cli.help = 1;
        else if (h2t_cli_is(&cli, "--store"))
            store = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--force"))
            force = 1;
        else
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(rm_usage, stdout);
        return 0;
    }
    const char *kind = cli.npos > 0 ? cli.pos[0] : "";
    if (cli.bad || cli.npos != 2 || !store ||
        (strcmp(kind, "extraction") && strcmp(kind, "task") && strcmp(kind, "job"))) {
        if (!cli.bad)
            fprintf(stderr, "h2tdb rm: want --store DIR, then extraction, task or job and "
                            "what to remove\n");
        fputs(rm_usage, stderr);
        return 2;
    }
    const char *what = cli.pos[1];
    h2t_store *st = NULL;
    int rc = h2t_store_open(store, 0, &st);
    if (rc < 0)
        return h2t_cli_fail(&cli, rc);
    if ((rc = h2t_store_service_lock(st)) < 0)
        goto out;
    if (!strcmp(kind, "extraction")) {
        uint32_t id = 0, removed = 0;
        if ((rc = h2t_store_extraction_find(st, what, &id)) < 0 ||
            (rc = h2t_store_extraction_delete(st, id, force, &removed)) < 0)
            goto out;
        printf("removed extraction %u%s", id, removed ? "" : "\n");
        if (removed)
            printf(" and %u task(s) over it\n", removed);
    } else if (!strcmp(kind, "task")) {
        char users[256];
        h2t_task *t = NULL;
        if ((rc = h2t_store_task_get(st, what, &t)) < 0)
            goto out;
        h2t_task_destroy(t);
        uint32_t n = task_users(st, what, users, sizeof(users));
        if (n && !force) {
            rc = h2t_err_set(H2T_ESTATE,
                             "task '%s' was trained on by %u job(s): %s (their predict needs it; "
                             "h2tdb rm --force removes it anyway)",
                             what, n, users);
            goto out;
        }
        if ((rc = h2t_store_task_delete(st, what)) < 0)
            goto out;
        printf("removed task '%s'\n", what);
    } else {
        char *end;
        unsigned long long id = strtoull(what, &end, 10);
        if (!*what || *end) {
            rc = h2t_err_set(H2T_EINVAL, "job '%s': want a job id", what);
            goto out;
        }
        if ((rc = h2t_store_job_delete(st, id, force)) < 0)
            goto out;
        printf("removed job %llu\n", id);
    }
out:
    h2t_store_close(st);
    return rc < 0 ? h2t_cli_fail(&cli, rc) : 0;
}

int h2t_cmd_compact(int argc, char **argv)
{
    h2t_cli cli;
    const char *store = NULL;
    h2t_cli_init(&cli, "compact", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_is(&cli, "--help"))
            cli.help = 1;
        else if (h2t_cli_is(&cli, "--store"))
            store = h2t_cli_value(&cli);
        else
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(compact_usage, stdout);
        return 0;
    }
    if (cli.bad || cli.npos || !store) {
        if (!store && !cli.bad)
            fprintf(stderr, "h2tdb compact: --store DIR is required\n");
        fputs(compact_usage, stderr);
        return 2;
    }
    uint64_t before = 0, after = 0;
    int rc = h2t_store_compact(store, &before, &after);
    if (rc < 0)
        return h2t_cli_fail(&cli, rc);
    printf("%s: data.mdb %" PRIu64 " -> %" PRIu64 " bytes\n", store, before, after);
    return 0;
}
