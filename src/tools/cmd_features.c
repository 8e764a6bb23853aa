/* cmd_features.c - placeholder until the command lands. */
#include <stdio.h>

#include "cli.h"

int fn_cmd_features(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "funnel features: not built yet\n");
    return FN_EXIT_FAIL;
}
