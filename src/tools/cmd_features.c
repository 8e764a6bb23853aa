/*
 * cmd_features.c - `funnel features`: applies a feature-column spec to a
 * TFRecord file of tf.Example and prints libffm lines, so funnel's data feeds
 * libffm/xLearn and their data sets can be compared with ours.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "features/columns.h"
#include "features/example.h"
#include "features/tfrecord.h"

static const char usage_text[] =
    "usage: funnel features --spec SPEC.json --input FILE.tfrecord [--label KEY] [--limit N]\n"
    "       funnel features --spec SPEC.json --describe [--json]\n"
    "\n"
    "Prints one libffm line per tf.Example: `label field:index:value ...`, with one\n"
    "field per column and global indices (column offset + index within the column).\n"
    "Every key is read from the one Example (sources do not apply).\n"
    "\n"
    "options:\n"
    "  --spec FILE      feature-column spec (JSON)\n"
    "  --input FILE     TFRecord file of tf.Example (plain or gzip)\n"
    "  --label KEY      feature holding the label (default: label); an Example\n"
    "                   without it is an error\n"
    "  --limit N        stop after N examples\n"
    "  --describe       print the columns: field, type, offset, size; and the spec hash\n"
    "  --json           with --describe: one JSON object\n";

enum { OPT_SPEC = 1, OPT_INPUT, OPT_LABEL, OPT_LIMIT, OPT_DESCRIBE, OPT_JSON, OPT_HELP };

static const struct option long_opts[] = {
    {"spec", required_argument, NULL, OPT_SPEC},   {"input", required_argument, NULL, OPT_INPUT},
    {"label", required_argument, NULL, OPT_LABEL}, {"limit", required_argument, NULL, OPT_LIMIT},
    {"describe", no_argument, NULL, OPT_DESCRIBE}, {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},         {NULL, 0, NULL, 0},
};

static void describe(const fn_columns *c, int json)
{
    fn_buf b = FN_BUF_INIT;
    size_t n = fn_columns_count(c);
    if (json) {
        fn_buf_printf(&b,
                      "{\"sha256\": \"%s\", \"num_features\": %llu, \"dense_dim\": %zu, "
                      "\"columns\": [",
                      fn_columns_sha256(c), (unsigned long long)fn_columns_num_features(c),
                      fn_columns_dense_dim(c));
        for (size_t i = 0; i < n; i++) {
            fn_buf_puts(&b, i ? ", {\"name\": " : "{\"name\": ");
            fn_buf_json_string(&b, fn_columns_name(c, i), strlen(fn_columns_name(c, i)));
            fn_buf_printf(&b, ", \"field\": %zu, \"type\": \"%s\", \"offset\": %u, \"size\": %u}",
                          i, fn_column_type_name(fn_columns_type(c, i)), fn_columns_offset(c, i),
                          fn_columns_size(c, i));
        }
        fn_buf_puts(&b, "]}\n");
    } else {
        fn_buf_printf(&b, "%-6s %-24s %-24s %10s %10s\n", "field", "name", "type", "offset",
                      "size");
        for (size_t i = 0; i < n; i++)
            fn_buf_printf(&b, "%-6zu %-24s %-24s %10u %10u\n", i, fn_columns_name(c, i),
                          fn_column_type_name(fn_columns_type(c, i)), fn_columns_offset(c, i),
                          fn_columns_size(c, i));
        fn_buf_printf(&b, "features %llu, dense dimension %zu\nsha256 %s\n",
                      (unsigned long long)fn_columns_num_features(c), fn_columns_dense_dim(c),
                      fn_columns_sha256(c));
    }
    fn_cli_write_stdout(&b, NULL);
    fn_buf_free(&b);
}

/* The label of an Example: the first value of a float or int64 feature. */
static fn_status get_label(const Tensorflow__Example *ex, const char *key, float *out,
                           fn_error *err)
{
    double v;
    fn_status st = fn_features_first_number(fn_example_features(ex), key, &v, err);
    if (st == FN_ERR_NOT_FOUND) /* a missing label is bad input, not a lookup miss */
        return fn_error_set(err, FN_ERR_INVALID, "label feature '%s' is missing", key);
    if (st != FN_OK) return fn_error_prefix(err, "label");
    *out = (float)v;
    return FN_OK;
}

static int run(const char *spec_path, const char *input, const char *label, uint64_t limit)
{
    fn_error err = {0};
    fn_columns *cols = NULL;
    fn_tfrecord_reader *r = NULL;
    if (fn_columns_load(spec_path, &cols, &err) != FN_OK) return fn_cli_fail("features", &err);
    if (fn_tfrecord_reader_open(input, NULL, &r, &err) != FN_OK) {
        fn_columns_free(cols);
        return fn_cli_fail("features", &err);
    }
    fn_column_output out = {0};
    fn_buf line = FN_BUF_INIT;
    int rc = FN_EXIT_OK;
    for (uint64_t n = 0; !limit || n < limit; n++) {
        const uint8_t *data;
        size_t len;
        fn_status st = fn_tfrecord_read(r, &data, &len, &err);
        if (st == FN_END) break;
        if (st != FN_OK) {
            rc = fn_cli_fail("features", &err);
            break;
        }
        Tensorflow__Example *ex = NULL;
        float y = 0;
        st = fn_example_decode(data, len, &ex, &err);
        if (st == FN_OK) st = get_label(ex, label, &y, &err);
        if (st == FN_OK) {
            fn_column_sources src;
            for (int s = 0; s < FN_SOURCE_COUNT; s++) src.src[s] = fn_example_features(ex);
            st = fn_columns_transform(cols, &src, FN_SOURCES_ALL, &out, &err);
        }
        fn_example_free(ex);
        if (st != FN_OK) {
            fn_error_prefix(&err, "%s: record %llu at byte offset %llu", input,
                            (unsigned long long)n,
                            (unsigned long long)fn_tfrecord_reader_record_offset(r));
            rc = fn_cli_fail("features", &err);
            break;
        }
        fn_columns_libffm_line(y, &out, &line);
        if (line.len >= (1u << 16)) {
            if (fn_cli_write_stdout(&line, &err) != FN_OK) {
                rc = fn_cli_fail("features", &err);
                break;
            }
            fn_buf_reset(&line);
        }
    }
    if (rc == FN_EXIT_OK && fn_cli_write_stdout(&line, &err) != FN_OK)
        rc = fn_cli_fail("features", &err);
    fn_buf_free(&line);
    fn_column_output_free(&out);
    fn_tfrecord_reader_close(r);
    fn_columns_free(cols);
    return rc;
}

int fn_cmd_features(int argc, char **argv)
{
    const char *spec = NULL, *input = NULL, *label = "label";
    uint64_t limit = 0;
    int do_describe = 0, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_SPEC:
            spec = optarg;
            break;
        case OPT_INPUT:
            input = optarg;
            break;
        case OPT_LABEL:
            label = optarg;
            break;
        case OPT_LIMIT:
            if (!fn_cli_u64("features", "--limit", optarg, &limit)) return FN_EXIT_USAGE;
            break;
        case OPT_DESCRIBE:
            do_describe = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("features", "unknown option");
        }
    }
    if (optind < argc)
        return fn_cli_usage_error("features", "unexpected argument '%s'", argv[optind]);
    if (!spec) return fn_cli_usage_error("features", "--spec is required");
    if (do_describe) {
        fn_error err = {0};
        fn_columns *cols;
        if (fn_columns_load(spec, &cols, &err) != FN_OK) return fn_cli_fail("features", &err);
        describe(cols, json);
        fn_columns_free(cols);
        return FN_EXIT_OK;
    }
    if (!input) return fn_cli_usage_error("features", "--input is required");
    return run(spec, input, label, limit);
}
