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
#include "features/example.h"

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
int fn_cmd_index_edit(int argc, char **argv); /* `funnel index add|delete|rebuild` */
int fn_cmd_cooc(int argc, char **argv);
int fn_cmd_recall(int argc, char **argv);
int fn_cmd_rerank(int argc, char **argv);
int fn_cmd_rerank_lists(int argc, char **argv); /* `funnel rerank lists`, rerank_lists.c */

/* Prints "funnel CMD: message" for err to stderr; returns FN_EXIT_FAIL. */
int fn_cli_fail(const char *cmd, const fn_error *err);
/* Prints "funnel CMD: <formatted>" and the hint to run --help; returns FN_EXIT_USAGE. */
int fn_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a whole decimal number for option opt; prints a usage error and returns 0 on failure. */
int fn_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int fn_cli_i64(const char *cmd, const char *opt, const char *s, int64_t *out);
/* A whole number from lo to hi, or a number (double) from lo to hi; 0 after a usage error. */
int fn_cli_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out);
int fn_cli_u64_in(const char *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                  uint64_t *out);
int fn_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                  double *out);

/* Longest id a command reads from a record, in bytes. */
#define FN_CLI_ID_MAX 1024

/*
 * The id under key in a record's features, NUL-terminated in out: the first
 * bytes value (1 to FN_CLI_ID_MAX bytes, no NUL), or the decimal text of the
 * first int64 value. A missing feature is FN_ERR_INVALID (bad input).
 */
fn_status fn_cli_feature_id(const Tensorflow__Features *f, const char *key,
                            char out[FN_CLI_ID_MAX + 1], fn_error *err);
/* fn_features_first_number, with a missing feature FN_ERR_INVALID (bad input). */
fn_status fn_cli_feature_number(const Tensorflow__Features *f, const char *key, double *v,
                                fn_error *err);

/*
 * Writes n floats, one per line, each in the fewest digits that give its exact value (so
 * others recompute the same metrics), to path atomically.
 */
fn_status fn_cli_write_floats(const char *path, const float *v, size_t n, fn_error *err);

/* Writes a buffer to stdout, returning FN_ERR_IO (with a message) when stdout is closed. */
fn_status fn_cli_write_stdout(const fn_buf *b, fn_error *err);

#endif
