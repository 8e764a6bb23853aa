/* cmd_store.c - placeholder until the command lands. */
#include <stdio.h>

#include "cli.h"

int fn_cmd_store(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "funnel store: not built yet\n");
    return FN_EXIT_FAIL;
}
