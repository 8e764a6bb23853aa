/*
 * cmd_cooc.c - `funnel cooc build|neighbours|candidates`: builds the item
 * co-occurrence table of the recall stage (src/recall) from a TFRecord of
 * tf.Example interactions, and queries one: an item's neighbours, or the
 * candidates for a user's recent items.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/buf.h"
#include "common/progress.h"
#include "features/interactions.h"
#include "recall/recall.h"

static const char usage_text[] =
    "usage: funnel cooc build --interactions FILE.tfrecord --out FILE [--user-key KEY]\n"
    "                         [--item-key KEY] [--time-key KEY] [--label-key KEY\n"
    "                         [--min-label X]] [--top K] [--window W] [--json]\n"
    "       funnel cooc neighbours --cooc FILE --item ID [-k N] [--json]\n"
    "       funnel cooc candidates --cooc FILE --recent ID[,ID...] [-k N] [--json]\n"
    "\n"
    "build       count, per pair of items, the users who interacted with both (at most W\n"
    "            interactions apart in the user's history ordered by time; an item met\n"
    "            twice counts at its latest time), score each pair by cosine\n"
    "            c(i,j) / sqrt(n_i n_j) (n_i: users of item i), keep each item's K best\n"
    "            neighbours (ties by id) and write the table to FILE (header, checksums,\n"
    "            written atomically). FILE.tfrecord holds one tf.Example per interaction,\n"
    "            as 'funnel demo' writes interactions.tfrecord.\n"
    "neighbours  print an item's neighbours, best first.\n"
    "candidates  print the items co-occurring with the recent items: per item the sum of\n"
    "            its scores as a neighbour of each recent item, the recent items excluded.\n"
    "\n"
    "options:\n"
    "  --interactions FILE  build: TFRecord (plain or gzip) of tf.Example interactions\n"
    "  --out FILE           build: where to write the table\n"
    "  --user-key KEY       build: the user id feature, bytes or int64 (default user_id)\n"
    "  --item-key KEY       build: the item id feature, bytes or int64 (default item_id)\n"
    "  --time-key KEY       build: the time feature, int64 or float (default timestamp)\n"
    "  --label-key KEY      build: keep only interactions whose KEY (int64 or float) is at\n"
    "                       least --min-label (default: keep all)\n"
    "  --min-label X        build: the threshold for --label-key (default 1)\n"
    "  --top K              build: neighbours kept per item (default 100, at most 100000)\n"
    "  --window W           build: pair an interaction with the user's W interactions\n"
    "                       before it only (default 0: all of the user's items)\n"
    "  --cooc FILE          neighbours, candidates: a table from 'funnel cooc build'\n"
    "  --item ID            neighbours: the item\n"
    "  --recent IDS         candidates: the user's recent items, comma-separated\n"
    "  -k N                 neighbours, candidates: results (default 10)\n"
    "  --json               build: {\"records\", \"kept\", \"users\", \"items\", \"pairs\",\n"
    "                       \"neighbours\", \"top\", \"window\", \"out\"}; neighbours:\n"
    "                       {\"item\", \"users\", \"neighbours\": [{\"id\", \"score\"}...]};\n"
    "                       candidates: {\"recent\", \"candidates\": [{\"id\", \"score\"}...]}\n";

enum {
    OPT_INTERACTIONS = 1,
    OPT_OUT,
    OPT_USER_KEY,
    OPT_ITEM_KEY,
    OPT_TIME_KEY,
    OPT_LABEL_KEY,
    OPT_MIN_LABEL,
    OPT_TOP,
    OPT_WINDOW,
    OPT_COOC,
    OPT_ITEM,
    OPT_RECENT,
    OPT_JSON,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"interactions", required_argument, NULL, OPT_INTERACTIONS},
    {"out", required_argument, NULL, OPT_OUT},
    {"user-key", required_argument, NULL, OPT_USER_KEY},
    {"item-key", required_argument, NULL, OPT_ITEM_KEY},
    {"time-key", required_argument, NULL, OPT_TIME_KEY},
    {"label-key", required_argument, NULL, OPT_LABEL_KEY},
    {"min-label", required_argument, NULL, OPT_MIN_LABEL},
    {"top", required_argument, NULL, OPT_TOP},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"cooc", required_argument, NULL, OPT_COOC},
    {"item", required_argument, NULL, OPT_ITEM},
    {"recent", required_argument, NULL, OPT_RECENT},
    {"k", required_argument, NULL, 'k'},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct options {
    const char *interactions, *out, *user_key, *item_key, *time_key, *label_key;
    const char *cooc, *item, *recent;
    double min_label;
    uint64_t top, window, k;
    int has_min_label, has_top, has_window, has_k, json;
} options;

/* The builder and the counts of a build, for the reader's callback. */
typedef struct build_ctx {
    const options *o;
    fn_cooc_builder *b;
    fn_progress *bar;
    uint64_t records, kept;
} build_ctx;

/* One interaction: kept when its label reaches --min-label (or there is no --label-key). */
static fn_status take_interaction(void *ctx, const fn_interaction *x, fn_error *err)
{
    build_ctx *c = ctx;
    if ((++c->records & 4095) == 0) fn_progress_update(c->bar, c->records, NULL);
    if (c->o->label_key && !(x->label >= c->o->min_label)) return FN_OK;
    c->kept++;
    return fn_cooc_builder_add(c->b, x->user, x->item, x->t, err);
}

static int cmd_build(const options *o)
{
    fn_error err = {0};
    fn_cooc_builder *b = NULL;
    fn_cooc *c = NULL;
    int rc = FN_EXIT_FAIL;
    uint64_t records = 0, kept = 0, pairs = 0;
    fn_cooc_options co = {.top_k = o->has_top ? (uint32_t)o->top : FN_COOC_DEFAULT_TOP_K,
                          .window = (uint32_t)o->window};
    if (fn_cooc_builder_new(&co, &b, &err) != FN_OK) goto done;
    const fn_interaction_keys keys = {o->user_key, o->item_key, o->time_key, o->label_key, 0};
    build_ctx bc = {o, b, fn_progress_new("records", 0), 0, 0};
    fn_status st = fn_interactions_read(o->interactions, &keys, take_interaction, &bc, NULL, &err);
    records = bc.records, kept = bc.kept;
    fn_progress_update(bc.bar, records, NULL);
    fn_progress_finish(bc.bar);
    if (st != FN_OK) goto done;
    if (fn_cooc_build(b, &c, &pairs, &err) != FN_OK) goto done;
    if (fn_cooc_save(c, o->out, &err) != FN_OK) goto done;
    fn_buf out = FN_BUF_INIT;
    if (o->json) {
        fn_buf_printf(&out,
                      "{\"records\": %llu, \"kept\": %llu, \"users\": %llu, \"items\": %zu, "
                      "\"pairs\": %llu, \"neighbours\": %zu, \"top\": %u, \"window\": %u, "
                      "\"out\": ",
                      (unsigned long long)records, (unsigned long long)kept,
                      (unsigned long long)fn_cooc_users(c), fn_cooc_items(c),
                      (unsigned long long)pairs, fn_cooc_neighbour_count(c), fn_cooc_top_k(c),
                      fn_cooc_window(c));
        fn_buf_json_string(&out, o->out, strlen(o->out));
        fn_buf_puts(&out, "}\n");
    } else {
        fn_buf_printf(&out,
                      "%llu records, %llu kept: %llu users, %zu items, %llu co-occurring pairs, "
                      "%zu neighbours kept (top %u",
                      (unsigned long long)records, (unsigned long long)kept,
                      (unsigned long long)fn_cooc_users(c), fn_cooc_items(c),
                      (unsigned long long)pairs, fn_cooc_neighbour_count(c), fn_cooc_top_k(c));
        if (fn_cooc_window(c)) fn_buf_printf(&out, ", window %u", fn_cooc_window(c));
        fn_buf_printf(&out, ")\nwrote %s\n", o->out);
    }
    st = fn_cli_write_stdout(&out, &err);
    fn_buf_free(&out);
    if (st == FN_OK) rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("cooc", &err);
    fn_cooc_builder_free(b);
    fn_cooc_free(c);
    return rc;
}

/*
 * Prints results as text lines "id<TAB>score" or as a JSON array; neighbour
 * scores are float32 in the table and print as such.
 */
static void put_results(fn_buf *out, const fn_recall_item *v, size_t n, int json, int f32)
{
    if (json) fn_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        if (json) {
            if (i) fn_buf_puts(out, ", ");
            fn_buf_puts(out, "{\"id\": ");
            fn_buf_json_string(out, v[i].id, strlen(v[i].id));
            fn_buf_puts(out, ", \"score\": ");
            if (f32)
                fn_buf_json_float(out, (float)v[i].score);
            else
                fn_buf_json_double(out, v[i].score);
            fn_buf_putc(out, '}');
        } else {
            fn_buf_printf(out, "%s\t%.6g\n", v[i].id, v[i].score);
        }
    }
    if (json) fn_buf_putc(out, ']');
}

static int cmd_query(const options *o, int neighbours)
{
    fn_error err = {0};
    fn_cooc *c = NULL;
    fn_recall_item *res = NULL;
    char *list = NULL;
    const char **recent = NULL;
    size_t nr = 0, got = 0, k = o->has_k ? (size_t)o->k : 10;
    int rc = FN_EXIT_FAIL;
    if (fn_cooc_load(o->cooc, &c, &err) != FN_OK) goto done;
    if (!(res = malloc(k * sizeof *res))) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (neighbours) {
        if (fn_cooc_neighbours(c, o->item, k, res, &got, &err) != FN_OK) {
            fn_error_prefix(&err, "%s", o->cooc);
            goto done;
        }
    } else {
        size_t cap = 1;
        for (const char *s = o->recent; *s; s++) cap += *s == ',';
        list = strdup(o->recent);
        recent = malloc(cap * sizeof *recent);
        if (!list || !recent) {
            fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
            recent[nr++] = t;
        if (fn_cooc_candidates(c, recent, nr, k, res, &got, &err) != FN_OK) goto done;
    }
    fn_buf out = FN_BUF_INIT;
    if (o->json) {
        if (neighbours) {
            fn_buf_puts(&out, "{\"item\": ");
            fn_buf_json_string(&out, o->item, strlen(o->item));
            fn_buf_printf(&out,
                          ", \"users\": %u, \"neighbours\": ", fn_cooc_item_users(c, o->item));
        } else {
            fn_buf_puts(&out, "{\"recent\": [");
            for (size_t i = 0; i < nr; i++) {
                if (i) fn_buf_puts(&out, ", ");
                fn_buf_json_string(&out, recent[i], strlen(recent[i]));
            }
            fn_buf_puts(&out, "], \"candidates\": ");
        }
        put_results(&out, res, got, 1, neighbours);
        fn_buf_puts(&out, "}\n");
    } else {
        put_results(&out, res, got, 0, neighbours);
    }
    fn_status st = fn_cli_write_stdout(&out, &err);
    fn_buf_free(&out);
    if (st == FN_OK) rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("cooc", &err);
    fn_cooc_free(c);
    free(res);
    free(list);
    free(recent);
    return rc;
}

int fn_cmd_cooc(int argc, char **argv)
{
    options o = {
        .user_key = "user_id", .item_key = "item_id", .time_key = "timestamp", .min_label = 1};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hk:", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_INTERACTIONS:
            o.interactions = optarg;
            break;
        case OPT_OUT:
            o.out = optarg;
            break;
        case OPT_USER_KEY:
            o.user_key = optarg;
            break;
        case OPT_ITEM_KEY:
            o.item_key = optarg;
            break;
        case OPT_TIME_KEY:
            o.time_key = optarg;
            break;
        case OPT_LABEL_KEY:
            o.label_key = optarg;
            break;
        case OPT_MIN_LABEL: {
            char *end;
            o.min_label = strtod(optarg, &end);
            if (!*optarg || *end || !isfinite(o.min_label))
                return fn_cli_usage_error("cooc", "--min-label expects a number, got '%s'", optarg);
            o.has_min_label = 1;
            break;
        }
        case OPT_TOP:
            if (!fn_cli_u64_in("cooc", "--top", optarg, 1, 100000, &o.top)) return FN_EXIT_USAGE;
            o.has_top = 1;
            break;
        case OPT_WINDOW:
            if (!fn_cli_u64_in("cooc", "--window", optarg, 0, UINT32_MAX, &o.window))
                return FN_EXIT_USAGE;
            o.has_window = 1;
            break;
        case OPT_COOC:
            o.cooc = optarg;
            break;
        case OPT_ITEM:
            o.item = optarg;
            break;
        case OPT_RECENT:
            o.recent = optarg;
            break;
        case 'k':
            if (!fn_cli_u64_in("cooc", "-k", optarg, 1, 100000, &o.k)) return FN_EXIT_USAGE;
            o.has_k = 1;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("cooc", "unknown option");
        }
    }
    if (optind >= argc)
        return fn_cli_usage_error("cooc", "give a subcommand: build, neighbours or candidates");
    const char *sub = argv[optind];
    if (optind + 1 < argc)
        return fn_cli_usage_error("cooc", "unexpected argument '%s'", argv[optind + 1]);
    int build_opts = o.interactions || o.out || o.label_key || o.has_min_label || o.has_top ||
                     o.has_window || strcmp(o.user_key, "user_id") ||
                     strcmp(o.item_key, "item_id") || strcmp(o.time_key, "timestamp");
    if (strcmp(sub, "build") == 0) {
        if (o.cooc || o.item || o.recent || o.has_k)
            return fn_cli_usage_error("cooc", "--cooc, --item, --recent and -k apply to "
                                              "neighbours and candidates, not build");
        if (!o.interactions || !o.out)
            return fn_cli_usage_error("cooc", "build needs --interactions and --out");
        if (o.has_min_label && !o.label_key)
            return fn_cli_usage_error("cooc", "--min-label goes with --label-key");
        return cmd_build(&o);
    }
    int neighbours = strcmp(sub, "neighbours") == 0 || strcmp(sub, "neighbors") == 0;
    if (neighbours || strcmp(sub, "candidates") == 0) {
        if (build_opts)
            return fn_cli_usage_error("cooc", "--interactions, --out, --*-key, --min-label, "
                                              "--top and --window apply to build only");
        if (!o.cooc) return fn_cli_usage_error("cooc", "%s needs --cooc FILE", sub);
        if (neighbours && !o.item) return fn_cli_usage_error("cooc", "neighbours needs --item ID");
        if (neighbours && o.recent)
            return fn_cli_usage_error("cooc", "--recent applies to candidates");
        if (!neighbours && !o.recent)
            return fn_cli_usage_error("cooc", "candidates needs --recent ID[,ID...]");
        if (!neighbours && o.item)
            return fn_cli_usage_error("cooc", "--item applies to neighbours");
        return cmd_query(&o, neighbours);
    }
    return fn_cli_usage_error("cooc", "unknown subcommand '%s' (build, neighbours or candidates)",
                              sub);
}
