/*
 * client/cmds.h - the command table of the h2tdb command line.
 * A command is int run(int argc, char **argv) with argv[0] = the command name; it returns
 * the process exit status (0 ok, 1 failure, 2 usage error) and prints errors to stderr as
 * "h2tdb CMD: what was wrong". Add a row to H2T_CMD_TABLE for each new command.
 */
#ifndef H2T_CLIENT_CMDS_H
#define H2T_CLIENT_CMDS_H

typedef struct h2t_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} h2t_cmd;

int h2t_cmd_version(int argc, char **argv);
int h2t_cmd_ls(int argc, char **argv);
int h2t_cmd_layers(int argc, char **argv);
int h2t_cmd_dump(int argc, char **argv);

#define H2T_CMD_TABLE                                                                              \
    {"version", "print the version", h2t_cmd_version},                                             \
        {"ls", "list a store's sources, models, extractions, tasks and jobs", h2t_cmd_ls},         \
        {"layers", "the layer table of an extraction", h2t_cmd_layers},                            \
        {"dump", "print one stored feature vector (layer, sample)", h2t_cmd_dump},

#endif
