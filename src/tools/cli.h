/*
 * cli.h - what every `funnel` subcommand shares: the command table, usage and
 * error reporting, option value parsing. Exit codes: 0 success, 1 failure,
 * 2 bad usage.
 */
#ifndef FN_CLI_H
#define FN_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/status.h"

enum { FN_EXIT_OK = 0, FN_EXIT_FAIL = 1, FN_EXIT_USAGE = 2 };

typedef struct fn_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} fn_command;

/* Subcommands, one file each. */
int fn_cmd_tfrecord(int argc, char **argv);
int fn_cmd_features(int argc, char **argv);
int fn_cmd_store(int argc, char **argv);
int fn_cmd_demo(int argc, char **argv);
int fn_cmd_encode(int argc, char **argv);
int fn_cmd_train(int argc, char **argv);
int fn_cmd_eval(int argc, char **argv);
int fn_cmd_index(int argc, char **argv);
int fn_cmd_cooc(int argc, char **argv);
int fn_cmd_recall(int argc, char **argv);

/* Prints "funnel CMD: message" for err to stderr; returns FN_EXIT_FAIL. */
int fn_cli_fail(const char *cmd, const fn_error *err);
/* Prints "funnel CMD: <formatted>" and the hint to run --help; returns FN_EXIT_USAGE. */
int fn_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a whole decimal number for option opt; prints a usage error and returns 0 on failure. */
int fn_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int fn_cli_i64(const char *cmd, const char *opt, const char *s, int64_t *out);

/* Writes a buffer to stdout, returning FN_ERR_IO (with a message) when stdout is closed. */
fn_status fn_cli_write_stdout(const fn_buf *b, fn_error *err);

#endif
