/*
 * cli/cmd_serve.c - `h2tdb serve`: the service over one store, until SIGINT/SIGTERM.
 */
#include "cli/cli.h"
#include "cli/cmds.h"
#include "common/err.h"
#include "server/server.h"
#include "storage/store.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char serve_usage[] =
    "usage: h2tdb serve --store DIR [--listen ADDR] [--token-file F] [--workers N]\n"
    "                   [--port-file F] [--max-conns N] [--max-frame BYTES]\n"
    "                   [--idle-timeout S] [--insecure-bind] [--job-priority P]\n"
    "                   [--design-cache-mb N] [--spin-us N] [--max-selection N]\n"
    "                   [--models DIR] [--classify-max-images N] [--classify-max-bytes N]\n\n"
    "Serve the store over TCP (default 127.0.0.1:7433; port 0 picks a free port, written\n"
    "to --port-file). With --token-file every client must present the file's token\n"
    "(h2tdb COMMAND --token-file F, or $H2T_TOKEN_FILE). Listening on a non-loopback\n"
    "address needs a token, or --insecure-bind. Jobs are kept in the store: queued and\n"
    "interrupted jobs run again after a restart. SIGINT/SIGTERM stop gracefully.\n"
    "  --max-selection N  sample ids one selection (a task's list, predict's samples)\n"
    "                 may expand to (default 16777216, 1..1073741824)\n"
    "  --models DIR   where classify requests find the extractions' ONNX files, by their\n"
    "                 stored names (default models)\n"
    "  --classify-max-images N, --classify-max-bytes N  images and bytes of encoded images\n"
    "                 one classify request may carry (default 64 and 8388608)\n\n"
    "Trade-offs between requests and train jobs:\n"
    "  --job-priority idle|low|normal  jobs run under SCHED_IDLE at nice 10 (idle, the\n"
    "                 default: requests first, jobs get what is left), at nice 10 (low), or\n"
    "                 as the server (normal: jobs keep their share beside other programs)\n"
    "  --design-cache-mb N  design matrices kept in memory for later jobs on the same\n"
    "                 extraction when no job uses them (default 1024; 0: freed at once)\n"
    "  --spin-us N    the event loop polls this long after its last event before it sleeps\n"
    "                 (default 50; 0: never polls, least CPU when lightly loaded)\n";

int h2t_cmd_serve(int argc, char **argv)
{
    h2t_cli cli;
    h2t_srv_config cfg;
    h2t_srv_config_default(&cfg);
    const char *store_dir = NULL;
    unsigned long long v;
    h2t_cli_init(&cli, "serve", argc, argv);
    while (h2t_cli_next(&cli)) {
        if (h2t_cli_is(&cli, "--help"))
            cli.help = 1;
        else if (h2t_cli_is(&cli, "--store"))
            store_dir = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--listen"))
            cfg.listen = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--token-file"))
            cfg.token_file = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--port-file"))
            cfg.port_file = h2t_cli_value(&cli);
        else if (h2t_cli_is(&cli, "--insecure-bind"))
            cfg.insecure_bind = 1;
        else if (h2t_cli_is(&cli, "--workers")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 1, 64, &v) == 0)
                cfg.workers = (uint32_t)v;
        } else if (h2t_cli_is(&cli, "--max-conns")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 1, 1000000, &v) == 0)
                cfg.max_conns = (uint32_t)v;
        } else if (h2t_cli_is(&cli, "--max-frame")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 1024, 1u << 30, &v) == 0)
                cfg.max_frame = (uint32_t)v;
        } else if (h2t_cli_is(&cli, "--idle-timeout")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 1, 86400, &v) == 0)
                cfg.idle_timeout_ms = (uint32_t)(v * 1000);
        } else if (h2t_cli_is(&cli, "--job-priority")) {
            static const char *const prio[] = {"idle", "low", "normal"};
            const char *p = h2t_cli_value(&cli);
            int k = 0;
            while (p && k < 3 && strcmp(p, prio[k]) != 0)
                k++;
            if (p && k == 3) {
                fprintf(stderr, "h2tdb serve: --job-priority '%s': want idle, low or normal\n", p);
                cli.bad = 1;
            } else if (p) {
                cfg.job_idle = k == 0;
                cfg.job_nice = k == 2 ? 0 : 10;
            }
        } else if (h2t_cli_is(&cli, "--design-cache-mb")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 0, 1ull << 24, &v) == 0)
                cfg.design_cache_bytes = (uint64_t)v << 20;
        } else if (h2t_cli_is(&cli, "--max-selection")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 1, H2T_SRV_SEL_MAX_LIMIT, &v) == 0)
                cfg.max_selection = (uint32_t)v;
        } else if (h2t_cli_is(&cli, "--models")) {
            cfg.models_dir = h2t_cli_value(&cli);
        } else if (h2t_cli_is(&cli, "--classify-max-images")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 1, 1000000, &v) == 0)
                cfg.classify_max_images = (uint32_t)v;
        } else if (h2t_cli_is(&cli, "--classify-max-bytes")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 1, 1ull << 30, &v) == 0)
                cfg.classify_max_bytes = v;
        } else if (h2t_cli_is(&cli, "--spin-us")) {
            if (h2t_cli_u64_range(&cli, h2t_cli_value(&cli), 0, 100000, &v) == 0)
                cfg.spin_us = (uint32_t)v;
        } else
            h2t_cli_unknown(&cli);
    }
    if (cli.help) {
        fputs(serve_usage, stdout);
        return 0;
    }
    if (cli.bad || cli.npos) {
        if (cli.npos)
            fprintf(stderr, "h2tdb serve: unexpected argument '%s'\n", cli.pos[0]);
        fputs(serve_usage, stderr);
        return 2;
    }
    if (!store_dir) {
        fprintf(stderr, "h2tdb serve: --store DIR is required\n%s", serve_usage);
        return 2;
    }
    h2t_store *st = NULL;
    h2t_srv *srv = NULL;
    /* An empty store may be served (extractions can be written into it later), but a serve
     * that fails to start must not leave a new store behind. */
    int created = 0;
    int rc = h2t_store_open(store_dir, 0, &st);
    if (rc == H2T_ENOTFOUND) {
        created = access(store_dir, F_OK) != 0 ? 2 : 1; /* 2: the directory is ours too */
        rc = h2t_store_open(store_dir, H2T_STORE_CREATE, &st);
    }
    if (rc < 0) {
        h2t_err_wrap(rc, "store %s: ", store_dir);
        return h2t_cli_fail(&cli, rc);
    }
    if ((rc = h2t_srv_create(&cfg, st, &srv)) < 0) {
        h2t_cli_fail(&cli, rc);
        h2t_store_close(st);
        if (created) {
            char p[4096];
            snprintf(p, sizeof(p), "%s/data.mdb", store_dir);
            remove(p);
            snprintf(p, sizeof(p), "%s/lock.mdb", store_dir);
            remove(p);
            snprintf(p, sizeof(p), "%s/" H2T_STORE_SERVICE_LOCK, store_dir);
            remove(p);
            snprintf(p, sizeof(p), "%s/" H2T_STORE_OPEN_LOCK, store_dir);
            remove(p);
            if (created == 2)
                rmdir(store_dir);
        }
        return 1;
    }
    rc = h2t_srv_run(srv);
    h2t_srv_destroy(srv);
    h2t_store_close(st);
    return rc < 0 ? h2t_cli_fail(&cli, rc) : 0;
}
