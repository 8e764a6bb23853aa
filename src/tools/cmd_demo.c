/* cmd_demo.c - placeholder until the command lands. */
#include <stdio.h>

#include "cli.h"

int fn_cmd_demo(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "funnel demo: not built yet\n");
    return FN_EXIT_FAIL;
}
