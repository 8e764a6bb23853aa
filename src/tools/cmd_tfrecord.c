/*
 * cmd_tfrecord.c - `funnel tfrecord cat|from-jsonl|stat`: TFRecord files of
 * tf.Example to and from proto3 JSON lines, and integrity checks.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/clock.h"
#include "features/example.h"
#include "features/tfrecord.h"

static const char usage_text[] =
    "usage: funnel tfrecord cat FILE [--limit N] [--skip-corrupt] [--compression C]\n"
    "       funnel tfrecord from-jsonl IN OUT [--gzip | --zlib]\n"
    "       funnel tfrecord stat FILE [--decode] [--skip-corrupt] [--compression C] [--json]\n"
    "\n"
    "cat         print each record as one line of proto3 JSON of tensorflow.Example\n"
    "            (as Python's json_format.MessageToJson(msg, indent=None) prints it)\n"
    "from-jsonl  read such lines (IN may be - for stdin) and write a TFRecord file;\n"
    "            OUT appears only once complete\n"
    "stat        check every record's framing and CRCs (with --decode, also parse each\n"
    "            as a tf.Example); print records, bytes and MB/s\n"
    "\n"
    "options:\n"
    "  --limit N          stop after N records\n"
    "  --skip-corrupt     skip damaged records (counted on stderr) instead of failing\n"
    "  --compression C    auto (default: gzip when the file starts with its magic),\n"
    "                     none, gzip or zlib\n"
    "  --gzip, --zlib     compress the output\n"
    "  --decode           stat: parse every record as a tf.Example too\n"
    "  --json             print figures as a JSON object\n";

enum {
    OPT_LIMIT = 1,
    OPT_SKIP,
    OPT_COMPRESSION,
    OPT_GZIP,
    OPT_ZLIB,
    OPT_JSON,
    OPT_DECODE,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"skip-corrupt", no_argument, NULL, OPT_SKIP},
    {"compression", required_argument, NULL, OPT_COMPRESSION},
    {"gzip", no_argument, NULL, OPT_GZIP},
    {"zlib", no_argument, NULL, OPT_ZLIB},
    {"json", no_argument, NULL, OPT_JSON},
    {"decode", no_argument, NULL, OPT_DECODE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct options {
    uint64_t limit; /* 0: no limit */
    int has_limit;
    fn_tfrecord_read_options read;
    fn_tfrecord_compression out_compression;
    int json;
    int decode;
} options;

static int parse_compression(const char *s, fn_tfrecord_compression *out)
{
    if (strcmp(s, "auto") == 0) {
        *out = FN_TFRECORD_AUTO;
    } else if (strcmp(s, "none") == 0 || strcmp(s, "plain") == 0) {
        *out = FN_TFRECORD_PLAIN;
    } else if (strcmp(s, "gzip") == 0) {
        *out = FN_TFRECORD_GZIP;
    } else if (strcmp(s, "zlib") == 0) {
        *out = FN_TFRECORD_ZLIB;
    } else {
        return 0;
    }
    return 1;
}

static void report_skipped(const char *path, const fn_tfrecord_reader *r)
{
    const fn_tfrecord_stats *s = fn_tfrecord_reader_stats(r);
    if (s->skipped_records)
        fprintf(stderr, "funnel tfrecord: %s: skipped %llu damaged records (%llu bytes)\n", path,
                (unsigned long long)s->skipped_records, (unsigned long long)s->skipped_bytes);
}

static int cmd_cat(const char *path, const options *o)
{
    fn_error err = {0};
    fn_tfrecord_reader *r;
    if (fn_tfrecord_reader_open(path, &o->read, &r, &err) != FN_OK)
        return fn_cli_fail("tfrecord cat", &err);
    fn_buf out = FN_BUF_INIT;
    int rc = FN_EXIT_OK;
    uint64_t n = 0;
    for (; !o->has_limit || n < o->limit; n++) {
        const uint8_t *data;
        size_t len;
        fn_status st = fn_tfrecord_read(r, &data, &len, &err);
        if (st == FN_END) break;
        if (st != FN_OK) {
            rc = fn_cli_fail("tfrecord cat", &err);
            break;
        }
        Tensorflow__Example *ex;
        if (fn_example_decode(data, len, &ex, &err) != FN_OK) {
            fn_error_prefix(&err, "%s: record %llu at byte offset %llu", path,
                            (unsigned long long)n,
                            (unsigned long long)fn_tfrecord_reader_record_offset(r));
            rc = fn_cli_fail("tfrecord cat", &err);
            break;
        }
        fn_example_to_json(ex, &out);
        fn_buf_putc(&out, '\n');
        fn_example_free(ex);
        if (out.len >= (1u << 16)) {
            if (fn_cli_write_stdout(&out, &err) != FN_OK) {
                rc = fn_cli_fail("tfrecord cat", &err);
                break;
            }
            fn_buf_reset(&out);
        }
    }
    /* Records read before a failure are printed too: the error says where it stopped. */
    fn_error werr = {0};
    if (fn_cli_write_stdout(&out, &werr) != FN_OK && rc == FN_EXIT_OK)
        rc = fn_cli_fail("tfrecord cat", &werr);
    if (fflush(stdout) != 0 && rc == FN_EXIT_OK) {
        fn_error_set(&err, FN_ERR_IO, "writing to standard output failed");
        rc = fn_cli_fail("tfrecord cat", &err);
    }
    report_skipped(path, r);
    fn_buf_free(&out);
    fn_tfrecord_reader_close(r);
    return rc;
}

static int cmd_from_jsonl(const char *in_path, const char *out_path, const options *o)
{
    fn_error err = {0};
    FILE *in = strcmp(in_path, "-") == 0 ? stdin : fopen(in_path, "r");
    if (!in) {
        fn_error_set(&err, FN_ERR_IO, "cannot open %s: %m", in_path);
        return fn_cli_fail("tfrecord from-jsonl", &err);
    }
    fn_tfrecord_writer *w;
    if (fn_tfrecord_writer_open(out_path, o->out_compression, &w, &err) != FN_OK) {
        if (in != stdin) fclose(in);
        return fn_cli_fail("tfrecord from-jsonl", &err);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0, records = 0;
    fn_buf packed = FN_BUF_INIT;
    int rc = FN_EXIT_OK;
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        size_t start = 0;
        while (start < (size_t)n && (line[start] == ' ' || line[start] == '\t')) start++;
        if (start == (size_t)n) continue; /* blank lines separate nothing */
        Tensorflow__Example *ex;
        if (fn_example_from_json(line + start, (size_t)n - start, &ex, &err) != FN_OK) {
            fn_error_prefix(&err, "%s: line %llu", in_path, (unsigned long long)lineno);
            rc = FN_EXIT_FAIL;
            break;
        }
        fn_buf_reset(&packed);
        fn_status st = fn_proto_pack(&ex->base, &packed, &err);
        fn_example_free(ex);
        if (st == FN_OK) st = fn_tfrecord_write(w, packed.data, packed.len, &err);
        if (st != FN_OK) {
            rc = FN_EXIT_FAIL;
            break;
        }
        records++;
    }
    if (rc == FN_EXIT_OK && ferror(in)) {
        fn_error_set(&err, FN_ERR_IO, "reading %s failed", in_path);
        rc = FN_EXIT_FAIL;
    }
    free(line);
    fn_buf_free(&packed);
    if (in != stdin) fclose(in);
    if (rc != FN_EXIT_OK) {
        fn_tfrecord_writer_abort(w);
        return fn_cli_fail("tfrecord from-jsonl", &err);
    }
    if (fn_tfrecord_writer_close(w, &err) != FN_OK) return fn_cli_fail("tfrecord from-jsonl", &err);
    fprintf(stderr, "funnel tfrecord: wrote %llu records to %s\n", (unsigned long long)records,
            out_path);
    return FN_EXIT_OK;
}

static int cmd_stat(const char *path, const options *o)
{
    fn_error err = {0};
    fn_tfrecord_reader *r;
    uint64_t t0 = fn_now_ns();
    if (fn_tfrecord_reader_open(path, &o->read, &r, &err) != FN_OK)
        return fn_cli_fail("tfrecord stat", &err);
    uint64_t payload = 0, max_len = 0, features = 0;
    fn_arena *arena = fn_arena_new(0);
    fn_status st;
    if (!arena) {
        fn_tfrecord_reader_close(r);
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        return fn_cli_fail("tfrecord stat", &err);
    }
    for (;;) {
        const uint8_t *data;
        size_t len;
        st = fn_tfrecord_read(r, &data, &len, &err);
        if (st != FN_OK) break;
        payload += len;
        if (len > max_len) max_len = len;
        if (o->decode) {
            Tensorflow__Example *ex;
            fn_arena_reset(arena);
            if ((st = fn_example_decode_arena(data, len, arena, &ex, &err)) != FN_OK) {
                fn_error_prefix(&err, "%s: record %llu at byte offset %llu", path,
                                (unsigned long long)fn_tfrecord_reader_stats(r)->records - 1,
                                (unsigned long long)fn_tfrecord_reader_record_offset(r));
                break;
            }
            features += ex->features ? ex->features->n_feature : 0;
        }
    }
    double secs = (double)(fn_now_ns() - t0) / 1e9;
    int rc = FN_EXIT_OK;
    if (st != FN_END) {
        rc = fn_cli_fail("tfrecord stat", &err);
    } else {
        const fn_tfrecord_stats *s = fn_tfrecord_reader_stats(r);
        double mbps = secs > 0 ? (double)s->bytes / 1e6 / secs : 0;
        if (o->json) {
            printf("{\"records\": %llu, \"bytes\": %llu, \"payload_bytes\": %llu, "
                   "\"max_record_bytes\": %llu, \"skipped_records\": %llu, \"features\": %llu, "
                   "\"seconds\": %.6f, \"mb_per_s\": %.1f}\n",
                   (unsigned long long)s->records, (unsigned long long)s->bytes,
                   (unsigned long long)payload, (unsigned long long)max_len,
                   (unsigned long long)s->skipped_records, (unsigned long long)features, secs,
                   mbps);
        } else {
            printf("records          %llu\nbytes            %llu\npayload bytes    %llu\n"
                   "largest record   %llu\nskipped records  %llu\n",
                   (unsigned long long)s->records, (unsigned long long)s->bytes,
                   (unsigned long long)payload, (unsigned long long)max_len,
                   (unsigned long long)s->skipped_records);
            if (o->decode) printf("features         %llu\n", (unsigned long long)features);
            printf("seconds          %.3f\nMB/s             %.1f\n", secs, mbps);
        }
    }
    report_skipped(path, r);
    fn_arena_free(arena);
    fn_tfrecord_reader_close(r);
    return rc;
}

int fn_cmd_tfrecord(int argc, char **argv)
{
    options o = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_LIMIT:
            if (!fn_cli_u64("tfrecord", "--limit", optarg, &o.limit)) return FN_EXIT_USAGE;
            o.has_limit = 1;
            break;
        case OPT_SKIP:
            o.read.skip_corrupt = 1;
            break;
        case OPT_COMPRESSION:
            if (!parse_compression(optarg, &o.read.compression))
                return fn_cli_usage_error("tfrecord", "unknown compression '%s'", optarg);
            break;
        case OPT_GZIP:
            o.out_compression = FN_TFRECORD_GZIP;
            break;
        case OPT_ZLIB:
            o.out_compression = FN_TFRECORD_ZLIB;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case OPT_DECODE:
            o.decode = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("tfrecord", "unknown option");
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) {
        fputs(usage_text, stderr);
        return FN_EXIT_USAGE;
    }
    const char *sub = args[0];
    if (strcmp(sub, "cat") == 0) {
        if (nargs != 2) return fn_cli_usage_error("tfrecord", "cat takes one FILE");
        return cmd_cat(args[1], &o);
    }
    if (strcmp(sub, "from-jsonl") == 0) {
        if (nargs != 3) return fn_cli_usage_error("tfrecord", "from-jsonl takes IN and OUT");
        return cmd_from_jsonl(args[1], args[2], &o);
    }
    if (strcmp(sub, "stat") == 0) {
        if (nargs != 2) return fn_cli_usage_error("tfrecord", "stat takes one FILE");
        return cmd_stat(args[1], &o);
    }
    return fn_cli_usage_error("tfrecord", "unknown subcommand '%s'", sub);
}
