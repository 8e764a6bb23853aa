/*
 * index_edit.c - `funnel index add`, `delete` and `rebuild`: the maintenance
 * of an index file between builds. add puts in the feature store's items
 * that the index does not hold yet, under their store numbers, without
 * touching the rest; delete marks items as tombstones (searches skip them and
 * over-fetch so k results still come back); rebuild compacts the tombstones
 * away, re-adding the live vectors under their own ids. Each writes the index
 * atomically, in place or to --out.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/clock.h"
#include "common/progress.h"
#include "features/store.h"
#include "index_store.h"
#include "recall/recall.h"

static const char usage_text[] =
    "usage: funnel index add --index FILE --store DIR [--vector-key KEY]\n"
    "                        [--text-key KEY [--model DIR]] [--skip-missing]\n"
    "                        [--threads N] [--out FILE] [--json]\n"
    "       funnel index delete --index FILE (--ids N[,N...] | --items ID[,ID...] --store DIR)\n"
    "                           [--out FILE] [--json]\n"
    "       funnel index rebuild --index FILE [--out FILE] [--json]\n"
    "\n"
    "add      add the items of the feature store that the index does not hold yet\n"
    "         (new since the build or the last add), each under the store's number for\n"
    "         it, with its vector taken as `funnel index build --store` takes it. Items\n"
    "         in the index are left as they are; deleted ones stay out until a rebuild.\n"
    "delete   mark vectors deleted (tombstones): searches leave them out and fetch\n"
    "         more so that k results still come back. --ids gives index ids (row\n"
    "         numbers of a --vectors build, store numbers of a --store build), --items\n"
    "         item ids of a --store build, looked up in the store. Ids that are not in\n"
    "         the index, or deleted already, are reported and skipped.\n"
    "rebuild  compact the index: the live vectors are added again, under the same ids,\n"
    "         to an emptied copy of the trained index, and the tombstones dropped.\n"
    "\n"
    "Each writes FILE again atomically, or --out FILE.\n"
    "\n"
    "options:\n"
    "  --index FILE      the index (funnel index build)\n"
    "  --store DIR       add: the feature store the index was built from; delete --items:\n"
    "                    where the item ids are looked up\n"
    "  --vector-key KEY  add: take vectors from this float_list feature\n"
    "  --text-key KEY    add: encode this bytes feature for items without a vector\n"
    "  --model DIR       add --text-key: the encoder (default models/all-MiniLM-L6-v2)\n"
    "  --skip-missing    add: leave out items with neither a vector nor the text\n"
    "  --threads N       add: threads for encoding and adding (default: all CPUs)\n"
    "  --ids LIST        delete: index ids, comma-separated\n"
    "  --items LIST      delete: item ids, comma-separated (with --store)\n"
    "  --out FILE        where to write (default: FILE itself)\n"
    "  --json            add: {\"added\", \"encoded\", \"already\", \"deleted_kept_out\",\n"
    "                    \"skipped\", \"live\", \"out\"}; delete: {\"asked\", \"deleted\", "
    "\"live\",\n"
    "                    \"tombstones\", \"out\"}; rebuild: {\"live\", \"tombstones_before\",\n"
    "                    \"seconds\", \"out\"}\n";

typedef struct args {
    const char *index, *ids, *items, *out, *store, *vector_key, *text_key, *model;
    uint64_t threads;
    int json, skip_missing, has_threads;
} args;

static int parse(const char *cmd, int argc, char **argv, args *a)
{
    enum { O_STORE = 256, O_VECTOR_KEY, O_TEXT_KEY, O_MODEL, O_SKIP, O_THREADS };
    static const struct option opts[] = {{"index", required_argument, 0, 'i'},
                                         {"ids", required_argument, 0, 'd'},
                                         {"items", required_argument, 0, 't'},
                                         {"out", required_argument, 0, 'o'},
                                         {"json", no_argument, 0, 'j'},
                                         {"store", required_argument, 0, O_STORE},
                                         {"vector-key", required_argument, 0, O_VECTOR_KEY},
                                         {"text-key", required_argument, 0, O_TEXT_KEY},
                                         {"model", required_argument, 0, O_MODEL},
                                         {"skip-missing", no_argument, 0, O_SKIP},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    *a = (args){0};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            a->index = optarg;
            break;
        case 'd':
            a->ids = optarg;
            break;
        case 't':
            a->items = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'j':
            a->json = 1;
            break;
        case O_STORE:
            a->store = optarg;
            break;
        case O_VECTOR_KEY:
            a->vector_key = optarg;
            break;
        case O_TEXT_KEY:
            a->text_key = optarg;
            break;
        case O_MODEL:
            a->model = optarg;
            break;
        case O_SKIP:
            a->skip_missing = 1;
            break;
        case O_THREADS:
            if (!fn_cli_u64_in(cmd, "--threads", optarg, 0, 4096, &a->threads))
                return FN_EXIT_USAGE;
            a->has_threads = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        case ':':
            return fn_cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default:
            return fn_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return fn_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!a->index) return fn_cli_usage_error(cmd, "--index FILE is required");
    return -1;
}

/*
 * Prints a --json summary: the fields fmt formats (an opening brace and
 * "key": value pairs, each followed by ", "), then "out": the file written,
 * escaped as a JSON string.
 */
__attribute__((format(printf, 3, 4))) static fn_status print_json(fn_error *err, const char *out,
                                                                  const char *fmt, ...)
{
    fn_buf b = FN_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    fn_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    fn_buf_puts(&b, "\"out\": ");
    fn_buf_json_string(&b, out, strlen(out));
    fn_buf_puts(&b, "}\n");
    fn_status st =
        b.oom ? fn_error_set(err, FN_ERR_NOMEM, "out of memory") : fn_cli_write_stdout(&b, err);
    fn_buf_free(&b);
    return st;
}

/* Splits a comma-separated list in place into *parts (malloc'ed); empty entries are errors. */
static int split_list(const char *cmd, const char *opt, char *s, char ***parts, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    char **v = malloc(cap * sizeof *v);
    if (!v) {
        fn_error err = {0};
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        return fn_cli_fail(cmd, &err);
    }
    *n = 0;
    for (char *tok = s;;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        if (!*tok) {
            free(v);
            return fn_cli_usage_error(cmd, "%s: an empty entry in the list", opt);
        }
        v[(*n)++] = tok;
        if (!comma) break;
        tok = comma + 1;
    }
    *parts = v;
    return -1;
}

/* The index ids of the item ids in names: their store numbers; unknown items get -1. */
static fn_status resolve_items(const char *store, char **names, size_t n, int64_t *ids,
                               fn_error *err)
{
    fn_store_options so = {.read_only = 1, .cache_disabled = 1};
    fn_store *s = NULL;
    fn_status st = fn_store_open(store, &so, &s, err);
    for (size_t k = 0; st == FN_OK && k < n; k++) {
        st = fn_store_item_number(s, names[k], strlen(names[k]), &ids[k], err);
        if (st == FN_ERR_NOT_FOUND) { /* reported by the caller, ids[k] is -1 */
            fn_error_clear(err);
            st = FN_OK;
        }
    }
    fn_store_close(s);
    return st;
}

static int run_delete(const args *a)
{
    static const char *cmd = "index delete";
    if (!a->ids == !a->items) return fn_cli_usage_error(cmd, "give --ids or --items");
    if (!a->items != !a->store)
        return fn_cli_usage_error(cmd, "--items goes with --store DIR (the store the index was "
                                       "built from), and --store with --items");
    char *list = strdup(a->ids ? a->ids : a->items);
    char **parts = NULL;
    size_t n = 0;
    fn_error err = {0};
    if (!list) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        return fn_cli_fail(cmd, &err);
    }
    int rc = split_list(cmd, a->ids ? "--ids" : "--items", list, &parts, &n);
    if (rc >= 0) {
        free(list);
        return rc;
    }
    int64_t *ids = malloc(n * sizeof *ids);
    fn_status st = ids ? FN_OK : fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
    for (size_t k = 0; st == FN_OK && a->ids && k < n; k++) {
        char *end;
        errno = 0;
        long long v = strtoll(parts[k], &end, 10);
        /* digits only: no sign or space, and nothing past int64 */
        if (!isdigit((unsigned char)parts[k][0]) || *end || errno) {
            rc = fn_cli_usage_error(cmd, "--ids: '%s' is not an index id (a whole number >= 0)",
                                    parts[k]);
            st = FN_ERR_INVALID;
        }
        ids[k] = v;
    }
    if (rc >= 0) {
        free(ids), free(parts), free(list);
        return rc;
    }
    if (st == FN_OK && a->items) st = resolve_items(a->store, parts, n, ids, &err);
    fn_ann *ann = NULL;
    if (st == FN_OK) st = fn_ann_load(a->index, 0, &ann, &err);
    size_t deleted = 0;
    /* unknown items (-1) are reported, the rest deleted */
    size_t known = 0;
    for (size_t k = 0; st == FN_OK && k < n; k++) {
        if (ids[k] < 0)
            fprintf(stderr, "funnel %s: item '%s' is not in the store: skipped\n", cmd, parts[k]);
        else
            ids[known++] = ids[k];
    }
    if (st == FN_OK) st = fn_ann_delete(ann, known, ids, &deleted, &err);
    if (st == FN_OK && deleted < known)
        fprintf(stderr, "funnel %s: %zu of the ids were not live (absent or deleted already)\n",
                cmd, known - deleted);
    const char *out = a->out ? a->out : a->index;
    if (st == FN_OK) st = fn_ann_save(ann, out, &err);
    if (st == FN_OK) {
        if (a->json)
            st = print_json(&err, out,
                            "{\"asked\": %zu, \"deleted\": %zu, \"live\": %zu, "
                            "\"tombstones\": %zu, ",
                            n, deleted, fn_ann_count(ann), fn_ann_deleted(ann));
        else
            printf("deleted %zu of %zu; %zu live, %zu tombstones; wrote %s\n", deleted, n,
                   fn_ann_count(ann), fn_ann_deleted(ann), out);
    }
    fn_ann_free(ann);
    free(ids), free(parts), free(list);
    return st == FN_OK ? FN_EXIT_OK : fn_cli_fail(cmd, &err);
}

static int run_rebuild(const args *a)
{
    static const char *cmd = "index rebuild";
    if (a->ids || a->items) return fn_cli_usage_error(cmd, "--ids and --items go with delete");
    fn_error err = {0};
    fn_ann *ann = NULL;
    fn_status st = fn_ann_load(a->index, 0, &ann, &err);
    const size_t before = st == FN_OK ? fn_ann_deleted(ann) : 0;
    const uint64_t t0 = fn_now_ns();
    if (st == FN_OK) st = fn_ann_rebuild(ann, &err);
    const double seconds = (double)(fn_now_ns() - t0) * 1e-9;
    const char *out = a->out ? a->out : a->index;
    if (st == FN_OK) st = fn_ann_save(ann, out, &err);
    if (st == FN_OK) {
        if (a->json)
            st = print_json(&err, out,
                            "{\"live\": %zu, \"tombstones_before\": %zu, "
                            "\"seconds\": %.3f, ",
                            fn_ann_count(ann), before, seconds);
        else
            printf("rebuilt: %zu live vectors, %zu tombstones dropped in %.2f s; wrote %s\n",
                   fn_ann_count(ann), before, seconds, out);
    }
    fn_ann_free(ann);
    return st == FN_OK ? FN_EXIT_OK : fn_cli_fail(cmd, &err);
}

/* Vectors added per call: the progress bar moves between them. */
#define ADD_CHUNK 4096

static int run_add(const args *a)
{
    static const char *cmd = "index add";
    if (a->ids || a->items) return fn_cli_usage_error(cmd, "--ids and --items go with delete");
    if (!a->store) return fn_cli_usage_error(cmd, "--store DIR is required");
    if (a->model && !a->text_key) return fn_cli_usage_error(cmd, "--model goes with --text-key");
    fn_error err = {0};
    fn_ann *ann = NULL;
    store_items si = {0};
    fn_status st = fn_ann_set_threads((int)a->threads, &err);
    if (st == FN_OK) st = fn_ann_load(a->index, 0, &ann, &err);
    index_source src = {.store = a->store,
                        .vector_key = a->vector_key,
                        .text_key = a->text_key,
                        .model = a->model,
                        .threads = a->threads,
                        .skip_missing = a->skip_missing,
                        .known = ann};
    if (st == FN_OK) st = index_read_store(&src, &si, &err);
    if (st == FN_OK && si.n && !fn_ann_is_trained(ann))
        st = fn_error_set(&err, FN_ERR_INVALID, "%s is not trained", a->index);
    fn_progress *bar = st == FN_OK && si.n ? fn_progress_new("vectors", si.n) : NULL;
    for (size_t i = 0; st == FN_OK && i < si.n; i += ADD_CHUNK) {
        size_t m = si.n - i < ADD_CHUNK ? si.n - i : ADD_CHUNK;
        st = fn_ann_add(ann, m, si.vecs + i * si.dim, si.numbers + i, &err);
        fn_progress_update(bar, i + m, NULL);
    }
    if (bar) fn_progress_finish(bar);
    const char *out = a->out ? a->out : a->index;
    /* nothing new: the index is left as it is (or copied to --out) */
    if (st == FN_OK && (si.n || a->out)) st = fn_ann_save(ann, out, &err);
    if (st == FN_OK) {
        if (a->json)
            st = print_json(&err, out,
                            "{\"added\": %zu, \"encoded\": %zu, \"already\": %zu, "
                            "\"deleted_kept_out\": %zu, \"skipped\": %zu, "
                            "\"live\": %zu, ",
                            si.n, si.n_encoded, si.n_present, si.n_tombstoned, si.n_skipped,
                            fn_ann_count(ann));
        else
            printf("added %zu items (%zu encoded from text); %zu were in the index already, %zu "
                   "deleted ones kept out until a rebuild, %zu without a vector or text skipped; "
                   "%zu live; %s %s\n",
                   si.n, si.n_encoded, si.n_present, si.n_tombstoned, si.n_skipped,
                   fn_ann_count(ann), si.n || a->out ? "wrote" : "left", out);
    }
    fn_ann_free(ann);
    store_items_free(&si);
    return st == FN_OK ? FN_EXIT_OK : fn_cli_fail(cmd, &err);
}

int fn_cmd_index_edit(int argc, char **argv)
{
    const char *cmd = !strcmp(argv[0], "add")      ? "index add"
                      : !strcmp(argv[0], "delete") ? "index delete"
                                                   : "index rebuild";
    args a;
    int rc = parse(cmd, argc, argv, &a);
    if (rc >= 0) return rc;
    if (strcmp(argv[0], "add") != 0 &&
        (a.vector_key || a.text_key || a.model || a.skip_missing || a.has_threads))
        return fn_cli_usage_error(cmd, "--vector-key, --text-key, --model, --skip-missing and "
                                       "--threads go with add");
    if (!strcmp(argv[0], "add")) return run_add(&a);
    if (!strcmp(argv[0], "delete")) return run_delete(&a);
    if (a.store) return fn_cli_usage_error(cmd, "--store goes with add and delete");
    return run_rebuild(&a);
}
