/*
 * cli/cmds.h - the command table of the h2tdb command line.
 * A command is int run(int argc, char **argv) with argv[0] = the command name; it returns
 * the process exit status (0 ok, 1 failure, 2 usage error) and prints errors to stderr as
 * "h2tdb CMD: what was wrong". Add a row to H2T_CMD_TABLE for each new command.
 */
#ifndef H2T_CLI_CMDS_H
#define H2T_CLI_CMDS_H

typedef struct h2t_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} h2t_cmd;

int h2t_cmd_version(int argc, char **argv);
int h2t_cmd_extract(int argc, char **argv);
int h2t_cmd_merge(int argc, char **argv); /* cli/cmd_merge.c */
int h2t_cmd_ls(int argc, char **argv);
int h2t_cmd_layers(int argc, char **argv);
int h2t_cmd_dump(int argc, char **argv);
int h2t_cmd_serve(int argc, char **argv); /* service: cli/cmd_serve.c, cmd_jobs.c, cmd_task.c */
int h2t_cmd_task(int argc, char **argv);
int h2t_cmd_tasks(int argc, char **argv);
int h2t_cmd_train(int argc, char **argv);
int h2t_cmd_fit(int argc, char **argv); /* cli/cmd_fit.c */
int h2t_cmd_job(int argc, char **argv);
int h2t_cmd_jobs(int argc, char **argv);
int h2t_cmd_cancel(int argc, char **argv);
int h2t_cmd_result(int argc, char **argv);
int h2t_cmd_predict(int argc, char **argv);
int h2t_cmd_classify(int argc, char **argv); /* cli/cmd_classify.c */
int h2t_cmd_stats(int argc, char **argv);
int h2t_cmd_report(int argc, char **argv);  /* cli/cmd_report.c */
int h2t_cmd_compare(int argc, char **argv); /* cli/cmd_compare.c */
int h2t_cmd_verify(int argc, char **argv);  /* cli/cmd_admin.c */
int h2t_cmd_rm(int argc, char **argv);
int h2t_cmd_compact(int argc, char **argv);
int h2t_cmd_mpi_check(int argc, char **argv);    /* cli/cmd_mpi.c */
int h2t_cmd_set_manifest(int argc, char **argv); /* cli/cmd_set.c */

#define H2T_CMD_TABLE                                                                              \
    {"version", "print the version", h2t_cmd_version},                                             \
        {"ls", "list a store's sources, models, extractions, tasks and jobs", h2t_cmd_ls},         \
        {"layers", "the layer table of an extraction", h2t_cmd_layers},                            \
        {"dump", "print one stored feature vector (layer, sample)", h2t_cmd_dump},                 \
        {"extract", "run a model once over a dataset and store every layer's features",            \
         h2t_cmd_extract},                                                                         \
        {"merge", "one store from the shard stores of extract --shard I/N", h2t_cmd_merge},        \
        {"set-manifest", "name a folder's shard stores in a manifest: read them as one store",     \
         h2t_cmd_set_manifest},                                                                    \
        {"serve", "serve a store over TCP: tasks, train jobs, statistics", h2t_cmd_serve},         \
        {"task", "create a task (labels and sample lists) on a server", h2t_cmd_task},             \
        {"tasks", "list the tasks of a server", h2t_cmd_tasks},                                    \
        {"train", "submit a train job (linear, all, head2toe) [--wait]", h2t_cmd_train},           \
        {"fit", "train a head on a stored task without a server [--mpi: row-sharded]",             \
         h2t_cmd_fit},                                                                             \
        {"job", "show or --watch one job", h2t_cmd_job},                                           \
        {"jobs", "list the jobs of a server", h2t_cmd_jobs},                                       \
        {"cancel", "cancel a queued or running job", h2t_cmd_cancel},                              \
        {"result", "a finished job's result; --export DIR writes the head", h2t_cmd_result},       \
        {"predict", "apply a job's head to stored samples", h2t_cmd_predict},                      \
        {"classify", "apply a job's head to new images (only the backbone part it needs)",         \
         h2t_cmd_classify},                                                                        \
        {"stats", "per-layer feature statistics of an extraction", h2t_cmd_stats},                 \
        {"report", "draw a job's head as SVG: kept features per layer, CV accuracy",               \
         h2t_cmd_report},                                                                          \
        {"compare", "finished jobs side by side: accuracy, hyperparameters, kept features",        \
         h2t_cmd_compare},                                                                         \
        {"verify", "check every record, feature block and checksum of a store", h2t_cmd_verify},   \
        {"rm", "remove an extraction, task or job from a store", h2t_cmd_rm},                      \
        {"compact", "give a store's removed space back to the file system", h2t_cmd_compact},      \
        {"mpi-check", "check an MPI launch: mpirun -np N h2tdb mpi-check", h2t_cmd_mpi_check},

#endif
