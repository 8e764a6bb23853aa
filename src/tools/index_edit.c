/*
 * index_edit.c - `funnel index delete` and `funnel index rebuild`: the
 * maintenance of an index file between builds. delete marks items as
 * tombstones (searches skip them and over-fetch so k results still come
 * back); rebuild compacts the tombstones away, re-adding the live vectors
 * under their own ids. Both write the index atomically, in place or to
 * --out; with --out, the item id map (FILE.ids) goes along, since ids do
 * not change.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/clock.h"
#include "common/file.h"
#include "recall/recall.h"

static const char usage_text[] =
    "usage: funnel index delete --index FILE (--ids N[,N...] | --items ID[,ID...])\n"
    "                           [--out FILE] [--json]\n"
    "       funnel index rebuild --index FILE [--out FILE] [--json]\n"
    "\n"
    "delete   mark vectors deleted (tombstones): searches leave them out and fetch\n"
    "         more so that k results still come back. --ids gives index ids (row\n"
    "         numbers of a --vectors build), --items item ids of a --store build\n"
    "         (looked up in FILE.ids). Ids that are not in the index, or deleted\n"
    "         already, are reported and skipped.\n"
    "rebuild  compact the index: the live vectors are added again, under the same ids,\n"
    "         to an emptied copy of the trained index, and the tombstones dropped.\n"
    "\n"
    "Both write FILE again atomically, or --out FILE (and, when FILE.ids exists,\n"
    "OUT.ids with it).\n"
    "\n"
    "options:\n"
    "  --index FILE    the index (funnel index build)\n"
    "  --ids LIST      delete: index ids, comma-separated\n"
    "  --items LIST    delete: item ids, comma-separated (needs FILE.ids)\n"
    "  --out FILE      where to write (default: FILE itself)\n"
    "  --json          delete: {\"asked\", \"deleted\", \"live\", \"tombstones\", \"out\"};\n"
    "                  rebuild: {\"live\", \"tombstones_before\", \"seconds\", \"out\"}\n";

typedef struct args {
    const char *index, *ids, *items, *out;
    int json;
} args;

static int parse(const char *cmd, int argc, char **argv, args *a)
{
    static const struct option opts[] = {{"index", required_argument, 0, 'i'},
                                         {"ids", required_argument, 0, 'd'},
                                         {"items", required_argument, 0, 't'},
                                         {"out", required_argument, 0, 'o'},
                                         {"json", no_argument, 0, 'j'},
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

/* Copies FILE.ids to OUT.ids atomically when the index has one and goes elsewhere. */
static fn_status carry_ids(const char *index, const char *out, fn_error *err)
{
    if (!strcmp(index, out)) return FN_OK;
    size_t li = strlen(index), lo = strlen(out);
    char *from = malloc(li + 5), *to = malloc(lo + 5);
    fn_status st = from && to ? FN_OK : fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    fn_buf b = FN_BUF_INIT;
    if (st == FN_OK) {
        sprintf(from, "%s.ids", index), sprintf(to, "%s.ids", out);
        st = fn_file_read_all(from, (size_t)1 << 34, &b, err);
        if (st == FN_ERR_NOT_FOUND) {
            st = FN_OK; /* an index of --vectors: no id map */
        } else if (st == FN_OK) {
            st = fn_file_write_atomic(to, b.data, b.len, err);
        }
    }
    fn_buf_free(&b);
    free(from), free(to);
    return st;
}

/* The index ids of the item ids in names, through FILE.ids; unknown items get -1. */
static fn_status resolve_items(const char *index, char **names, size_t n, int64_t *ids,
                               fn_error *err)
{
    char *path = malloc(strlen(index) + 5);
    if (!path) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    sprintf(path, "%s.ids", index);
    fn_ann_ids *map = NULL;
    fn_status st = fn_ann_ids_load(path, &map, err);
    if (st == FN_ERR_NOT_FOUND)
        st = fn_error_set(err, FN_ERR_INVALID,
                          "%s not found: --items needs the id map of a --store build "
                          "(use --ids for a --vectors build)",
                          path);
    free(path);
    if (st != FN_OK) return st;
    for (size_t k = 0; k < n; k++) ids[k] = -1;
    const size_t count = fn_ann_ids_count(map);
    for (size_t i = 0; i < count; i++) {
        const char *name = fn_ann_ids_get(map, (int64_t)i, NULL);
        for (size_t k = 0; k < n; k++)
            if (ids[k] < 0 && !strcmp(name, names[k])) ids[k] = (int64_t)i;
    }
    fn_ann_ids_free(map);
    return FN_OK;
}

static int run_delete(const args *a)
{
    static const char *cmd = "index delete";
    if (!a->ids == !a->items) return fn_cli_usage_error(cmd, "give --ids or --items");
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
        long long v = strtoll(parts[k], &end, 10);
        if (*end || v < 0) {
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
    if (st == FN_OK && a->items) st = resolve_items(a->index, parts, n, ids, &err);
    fn_ann *ann = NULL;
    if (st == FN_OK) st = fn_ann_load(a->index, 0, &ann, &err);
    size_t deleted = 0;
    /* unknown items (-1) are reported, the rest deleted */
    size_t known = 0;
    for (size_t k = 0; st == FN_OK && k < n; k++) {
        if (ids[k] < 0)
            fprintf(stderr, "funnel %s: item '%s' is not in the index: skipped\n", cmd, parts[k]);
        else
            ids[known++] = ids[k];
    }
    if (st == FN_OK) st = fn_ann_delete(ann, known, ids, &deleted, &err);
    if (st == FN_OK && deleted < known)
        fprintf(stderr, "funnel %s: %zu of the ids were not live (absent or deleted already)\n",
                cmd, known - deleted);
    const char *out = a->out ? a->out : a->index;
    if (st == FN_OK) st = fn_ann_save(ann, out, &err);
    if (st == FN_OK) st = carry_ids(a->index, out, &err);
    if (st == FN_OK) {
        if (a->json)
            printf("{\"asked\": %zu, \"deleted\": %zu, \"live\": %zu, \"tombstones\": %zu, "
                   "\"out\": \"%s\"}\n",
                   n, deleted, fn_ann_count(ann), fn_ann_deleted(ann), out);
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
    if (st == FN_OK) st = carry_ids(a->index, out, &err);
    if (st == FN_OK) {
        if (a->json)
            printf("{\"live\": %zu, \"tombstones_before\": %zu, \"seconds\": %.3f, "
                   "\"out\": \"%s\"}\n",
                   fn_ann_count(ann), before, seconds, out);
        else
            printf("rebuilt: %zu live vectors, %zu tombstones dropped in %.2f s; wrote %s\n",
                   fn_ann_count(ann), before, seconds, out);
    }
    fn_ann_free(ann);
    return st == FN_OK ? FN_EXIT_OK : fn_cli_fail(cmd, &err);
}

int fn_cmd_index_edit(int argc, char **argv)
{
    const int del = !strcmp(argv[0], "delete");
    args a;
    int rc = parse(del ? "index delete" : "index rebuild", argc, argv, &a);
    if (rc >= 0) return rc;
    return del ? run_delete(&a) : run_rebuild(&a);
}
