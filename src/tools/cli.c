/* cli.c - shared helpers for subcommands. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

int fn_cli_fail(const char *cmd, const fn_error *err)
{
    fprintf(stderr, "funnel %s: %s\n", cmd,
            err && err->msg[0] ? err->msg : fn_status_name(err ? err->code : FN_ERR_INTERNAL));
    return FN_EXIT_FAIL;
}

int fn_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "funnel %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'funnel %s --help' for usage.\n", cmd);
    return FN_EXIT_USAGE;
}

int fn_cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) goto bad;
    *out = v;
    return 1;
bad:
    fn_cli_usage_error(cmd, "%s expects a non-negative whole number, got '%s'", opt, s ? s : "");
    return 0;
}

int fn_cli_i64(const char *cmd, const char *opt, const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s) goto bad;
    long long v = strtoll(s, &end, 10);
    if (*end || errno) goto bad;
    *out = v;
    return 1;
bad:
    fn_cli_usage_error(cmd, "%s expects a whole number, got '%s'", opt, s ? s : "");
    return 0;
}

fn_status fn_cli_write_stdout(const fn_buf *b, fn_error *err)
{
    if (b->len && fwrite(b->data, 1, b->len, stdout) != b->len)
        return fn_error_set(err, FN_ERR_IO, "writing to standard output: %s", strerror(errno));
    return FN_OK;
}

fn_status fn_cli_feature_id(const Tensorflow__Features *f, const char *key,
                            char out[FN_CLI_ID_MAX + 1], fn_error *err)
{
    return fn_features_id(f, key, out, FN_CLI_ID_MAX + 1, err);
}

fn_status fn_cli_feature_number(const Tensorflow__Features *f, const char *key, double *v,
                                fn_error *err)
{
    fn_status st = fn_features_first_number(f, key, v, err);
    if (st == FN_ERR_NOT_FOUND) /* a missing feature is bad input, not a lookup miss */
        return fn_error_set(err, FN_ERR_INVALID, "feature '%s' is missing", key);
    return st;
}

fn_status fn_cli_write_floats(const char *path, const float *v, size_t n, fn_error *err)
{
    fn_buf b = FN_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        fn_buf_json_double(&b, (double)v[i]);
        fn_buf_putc(&b, '\n');
    }
    fn_status st = b.oom ? fn_error_set(err, FN_ERR_NOMEM, "out of memory")
                         : fn_file_write_atomic(path, b.data ? b.data : "", b.len, err);
    fn_buf_free(&b);
    return st;
}

int fn_cli_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out)
{
    int64_t v;
    if (!fn_cli_i64(cmd, opt, s, &v)) return 0;
    if (v < lo || v > hi) {
        fn_cli_usage_error(cmd, "%s must be from %d to %d, got %s", opt, lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int fn_cli_u64_in(const char *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                  uint64_t *out)
{
    uint64_t v;
    if (!fn_cli_u64(cmd, opt, s, &v)) return 0;
    if (v < lo || v > hi) {
        fn_cli_usage_error(cmd, "%s must be from %llu to %llu, got %s", opt, (unsigned long long)lo,
                           (unsigned long long)hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

int fn_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                  double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fn_cli_usage_error(cmd, "%s expects a number from %g to %g, got '%s'", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}
