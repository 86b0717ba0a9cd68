#include "cli/cmds.h"

#include <stdio.h>

#define H2T_VERSION "0.1.0"

int h2t_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("h2tdb %s\n", H2T_VERSION);
    return 0;
}
