/*
 * test_main.c - runs the Check suites (all, or the one named by CK_RUN_SUITE).
 * Any error logged by library code during a test fails it: errors must come
 * back as statuses, and a test that expects one asserts on the status.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "kernels/backend.h"

#define FN_SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef FN_SUITE

static void fail_on_error(fn_log_level level, const char *msg, void *ctx)
{
    (void)ctx;
    if (level == FN_LOG_ERROR) ck_abort_msg("error logged: %s", msg);
    if (level <= FN_LOG_WARN) fprintf(stderr, "log: %s\n", msg);
}

int main(int argc, char **argv)
{
    (void)argc;
    fn_kernels_init(argv);
    fn_log_set_hook(fail_on_error, NULL);
    SRunner *sr = srunner_create(NULL);
#define FN_SUITE(name) srunner_add_suite(sr, name##_suite());
#include "suites.inc"
#undef FN_SUITE
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
