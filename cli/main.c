/*
 * cli/main.c - the h2tdb command line: a table of commands, one row each.
 * Each command lives in cli/cmd_*.c and is declared in cli/cmds.h.
 */
#include "cli/cmds.h"
#include "common/err.h"

#include <stdio.h>
#include <string.h>

static const h2t_cmd commands[] = {H2T_CMD_TABLE};

static void usage(FILE *f)
{
    fprintf(f, "usage: h2tdb COMMAND [options]   (h2tdb COMMAND --help for each)\n\n"
               "h2tdb is a feature-cache database and training service for transfer learning:\n"
               "one pass stores every layer's features of a backbone, then Head2Toe heads are\n"
               "trained over them without running the backbone again.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "h2tdb: unknown command '%s' (h2tdb --help lists them)\n", argv[1]);
    return 2;
}
