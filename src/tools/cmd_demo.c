/*
 * cmd_demo.c - `funnel demo`: prepares the demo data set that `make run`
 * serves. It converts MovieLens-100k (RecBole or GroupLens layout) into
 * TFRecord files of tf.Example plus a feature-column spec, or, without data,
 * generates a clearly labelled synthetic catalog in the same format. The
 * reading, generating and writing live in demo_*.c; docs/demo-data.md lists
 * the files, keys and the train/test split.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "common/buf.h"
#include "demo_data.h"

static const char usage_text[] =
    "usage: funnel demo --data DIR --out DIR [--semantic MODEL_DIR] [--json]\n"
    "       funnel demo --synthetic [--seed N] --out DIR [--json]\n"
    "\n"
    "Converts MovieLens-100k in DIR into the demo data set: users.tfrecord,\n"
    "items.tfrecord, interactions.tfrecord, train.tfrecord and test.tfrecord (tf.Example),\n"
    "features.json (a feature-column spec for them) and SOURCE.txt. DIR holds either the\n"
    "RecBole atomic files ml-100k.inter/.item/.user or GroupLens's u.data/u.item/u.user.\n"
    "Each user's last 20% of ratings by time (round(n/5), ties by item id) form the test set;\n"
    "train.tfrecord is also written split the same way for early stopping: each user's last\n"
    "10% of training ratings in valid.tfrecord, the rest in fit.tfrecord.\n"
    "Without --data, or with --synthetic, it generates a synthetic catalog in the same\n"
    "format instead, and says so on stderr and in SOURCE.txt.\n"
    "\n"
    "options:\n"
    "  --data DIR     folder holding MovieLens-100k\n"
    "  --out DIR      output folder (created if needed; files in it are replaced)\n"
    "  --synthetic    generate synthetic data instead of reading MovieLens\n"
    "  --seed N       seed of the synthetic data (default 42); the same seed gives the\n"
    "                 same files\n"
    "  --json         print the counts as a JSON object\n"
    "  --semantic DIR also embed item texts with the encoder model in DIR: items get an\n"
    "                 `embedding`; train/test rows the cosines of the item against the\n"
    "                 user's earlier training ratings: `user_item_cosine` (the liked items),\n"
    "                 `user_item_disliked_cosine` (the others), `user_item_taste_cosine`\n"
    "                 (weighted by rating minus the user's mean); features-semantic.json\n"
    "                 adds those columns to the spec\n";

enum { OPT_DATA = 1, OPT_OUT, OPT_SYNTHETIC, OPT_SEED, OPT_JSON, OPT_SEMANTIC, OPT_HELP };

static const struct option long_opts[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"out", required_argument, NULL, OPT_OUT},
    {"synthetic", no_argument, NULL, OPT_SYNTHETIC},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", no_argument, NULL, OPT_JSON},
    {"semantic", required_argument, NULL, OPT_SEMANTIC},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Synthetic data must never pass for MovieLens: say it where nobody can miss it. */
static void warn_synthetic(const char *why, uint64_t seed, const char *out)
{
    fprintf(stderr,
            "funnel demo: ******************************************************************\n"
            "funnel demo: SYNTHETIC DATA (%s): generating a made-up catalog\n"
            "funnel demo: with seed %llu. It is NOT MovieLens; see %s/SOURCE.txt.\n"
            "funnel demo: ******************************************************************\n",
            why, (unsigned long long)seed, out);
}

static void print_summary(const fn_demo_data *d, const char *out, const fn_demo_summary *s,
                          int json)
{
    fn_buf b = FN_BUF_INIT;
    if (json) {
        fn_buf_puts(&b, "{\"source\": ");
        fn_buf_json_string(&b, d->source, strlen(d->source));
        fn_buf_printf(&b, ", \"synthetic\": %s, \"out\": ", d->synthetic ? "true" : "false");
        fn_buf_json_string(&b, out, strlen(out));
        fn_buf_printf(&b,
                      ", \"users\": %zu, \"items\": %zu, \"interactions\": %zu, \"train\": %zu, "
                      "\"test\": %zu, \"fit\": %zu, \"valid\": %zu, \"columns\": %zu}\n",
                      s->users, s->items, s->interactions, s->train, s->test, s->fit, s->valid,
                      s->columns);
    } else {
        fn_buf_printf(&b, "%s\nwritten to %s:\n", d->source, out);
        fn_buf_printf(&b,
                      "  users.tfrecord        %7zu\n  items.tfrecord        %7zu\n"
                      "  interactions.tfrecord %7zu\n  train.tfrecord        %7zu\n"
                      "  test.tfrecord         %7zu\n  fit.tfrecord          %7zu\n"
                      "  valid.tfrecord        %7zu\n  features.json         %7zu columns\n"
                      "  SOURCE.txt\n",
                      s->users, s->items, s->interactions, s->train, s->test, s->fit, s->valid,
                      s->columns);
    }
    fwrite(b.data, 1, b.len, stdout);
    fn_buf_free(&b);
}

static int run(const char *data_dir, const char *out, int synthetic, uint64_t seed, int json,
               const char *semantic)
{
    fn_demo_data d;
    fn_demo_summary sum;
    fn_error err = {0};
    fn_status st = fn_demo_data_init(&d, &err);
    if (st == FN_OK) {
        if (synthetic) {
            st = fn_demo_synthetic(seed, &d, &err);
        } else {
            st = fn_demo_load_movielens(data_dir, &d, &err);
        }
    }
    if (st == FN_OK) st = fn_demo_data_index(&d, &err);
    if (st == FN_OK) st = fn_demo_split(&d, &err);
    if (st == FN_OK && semantic) st = fn_demo_semantic(&d, semantic, &err);
    if (st == FN_OK) st = fn_demo_write(&d, out, &sum, &err);
    if (st != FN_OK) {
        fn_demo_data_free(&d);
        return fn_cli_fail("demo", &err);
    }
    print_summary(&d, out, &sum, json);
    fn_demo_data_free(&d);
    if (fflush(stdout) != 0) {
        fn_error_set(&err, FN_ERR_IO, "writing to standard output failed");
        return fn_cli_fail("demo", &err);
    }
    return FN_EXIT_OK;
}

int fn_cmd_demo(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *semantic = NULL;
    int synthetic = 0, json = 0, has_seed = 0;
    uint64_t seed = 42;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_SYNTHETIC:
            synthetic = 1;
            break;
        case OPT_SEED:
            if (!fn_cli_u64("demo", "--seed", optarg, &seed)) return FN_EXIT_USAGE;
            has_seed = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_SEMANTIC:
            semantic = optarg;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("demo", "unknown option");
        }
    }
    if (optind < argc) return fn_cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    if (!out || !*out) return fn_cli_usage_error("demo", "--out is required");
    if (data && !*data) return fn_cli_usage_error("demo", "--data needs a folder");
    if (data && synthetic)
        return fn_cli_usage_error("demo", "--data and --synthetic exclude each other");
    if (data && has_seed)
        return fn_cli_usage_error("demo", "--seed applies to synthetic data only");
    if (!data) warn_synthetic(synthetic ? "--synthetic" : "no --data given", seed, out);
    return run(data, out, !data, seed, json, semantic);
}
