/*
 * cmd_store.c - `funnel store load|get|dump|delete|upgrade`: fills the feature
 * store from a TFRecord file of tf.Example, prints what it holds as JSON lines
 * and removes records, so a store can be seeded offline before funneld serves
 * from it and inspected and pruned while it does.
 *
 * load checks the whole file before it writes anything, so a record without
 * an id fails the load with the store untouched rather than half-loaded.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/arena.h"
#include "common/clock.h"
#include "common/progress.h"
#include "features/example.h"
#include "features/store.h"
#include "features/tfrecord.h"
#include "proto/pbjson.h"

static const char usage_text[] =
    "usage: funnel store load --store DIR --family users|items --input FILE.tfrecord\n"
    "                         --id-key KEY [--version N | --version-key KEY]\n"
    "                         [--vector-key KEY] [--json]\n"
    "       funnel store get --store DIR --family users|items ID\n"
    "       funnel store dump --store DIR --family users|items\n"
    "       funnel store delete --store DIR --family users|items (ID... | --ids FILE)\n"
    "                           [--json]\n"
    "       funnel store upgrade --store DIR\n"
    "\n"
    "load  put each tf.Example of FILE (plain or gzip TFRecord) into the store as the\n"
    "      record of its id. The id comes from feature KEY: one bytes value, or one\n"
    "      int64 value written as decimal text; a record without it is an error. A\n"
    "      record older (lower version) than the stored one is ignored: last writer\n"
    "      wins; an equal version overwrites. The file is checked in full before\n"
    "      anything is written; each batch is synced to disk as it is written.\n"
    "get   print the record of ID; exit 1 when there is none\n"
    "dump  print every record of the family, in id byte order\n"
    "delete  remove the records of the IDs (given as arguments, or one per line of\n"
    "      FILE, - for stdin) whatever their version, each in a synced write;\n"
    "      ids without a record are counted, not an error. An item keeps its number, so\n"
    "      `funnel index delete --items ID --store DIR` still finds it, and a later\n"
    "      load of the same id gets the same number back. The ANN index keeps the\n"
    "      item until that index delete (or a rebuild from the store)\n"
    "upgrade  bring a store of an older format up to this funnel's (format 1: number\n"
    "      its items, in id byte order); any open for writing does it too\n"
    "\n"
    "get and dump print one JSON line per record:\n"
    "  {\"id\": \"...\", \"number\": N, \"version\": N, \"features\": <tensorflow.Features\n"
    "   in proto3 JSON>, \"vector\": [...]}   (vector only when the record has one;\n"
    "   number for items: the item's stable int64 id, its id in ANN indexes)\n"
    "They open the store read-only, so they work while another process writes it.\n"
    "\n"
    "options:\n"
    "  --store DIR        the store folder (load creates it when missing)\n"
    "  --family F         users or items\n"
    "  --input FILE       load: the TFRecord file of tf.Example\n"
    "  --id-key KEY       load: the feature holding each record's id\n"
    "  --version N        load: the version of every record (default: the current\n"
    "                     Unix time in milliseconds, so that a reload wins)\n"
    "  --version-key KEY  load: take each record's version from this int64 feature\n"
    "  --vector-key KEY   load: move this float_list feature out of the features into\n"
    "                     the record's vector (records without it get no vector)\n"
    "  --ids FILE         delete: the ids, one per line (- for stdin)\n"
    "  --json             load, delete: print the summary as a JSON object on stdout\n"
    "Put -- before an ID that starts with '-'.\n";

enum {
    OPT_STORE = 1,
    OPT_FAMILY,
    OPT_INPUT,
    OPT_ID_KEY,
    OPT_VERSION,
    OPT_VERSION_KEY,
    OPT_VECTOR_KEY,
    OPT_IDS,
    OPT_JSON,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"store", required_argument, NULL, OPT_STORE},
    {"family", required_argument, NULL, OPT_FAMILY},
    {"input", required_argument, NULL, OPT_INPUT},
    {"id-key", required_argument, NULL, OPT_ID_KEY},
    {"version", required_argument, NULL, OPT_VERSION},
    {"version-key", required_argument, NULL, OPT_VERSION_KEY},
    {"vector-key", required_argument, NULL, OPT_VECTOR_KEY},
    {"ids", required_argument, NULL, OPT_IDS},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct options {
    const char *store;
    const char *family_name;
    fn_store_family family;
    const char *input;
    const char *id_key;
    uint64_t version;
    int has_version;
    const char *version_key;
    const char *vector_key;
    const char *ids;
    int json;
} options;

/* Records per synced batch: enough to amortise the fsync, few enough to show progress. */
#define LOAD_BATCH       1000
#define LOAD_BATCH_BYTES ((size_t)8 << 20)

/* ---- load ---- */

/* What one Example becomes: its id, version and, without the vector feature, its features. */
typedef struct load_record {
    fn_buf id;
    uint64_t version;
    Tensorflow__Features features; /* a shallow view of the Example's, minus the vector */
    Tensorflow__Features__FeatureEntry **entries;
    size_t entries_cap;
    const float *vector;
    size_t n_vector;
} load_record;

/* "a float_list", "an int64_list": kind names for messages. */
static const char *article(fn_feature_kind k)
{
    return k == FN_FEATURE_INT64 ? "an" : "a";
}

static fn_status one_value(const Tensorflow__Feature *f, const char *what, const char *key,
                           fn_error *err)
{
    size_t n = fn_feature_size(f);
    if (n != 1)
        return fn_error_set(err, FN_ERR_INVALID, "%s feature '%s' holds %zu values, not one", what,
                            key, n);
    return FN_OK;
}

static fn_status take_id(const Tensorflow__Features *f, const options *o, load_record *r,
                         fn_error *err)
{
    const Tensorflow__Feature *feat = fn_features_get(f, o->id_key);
    if (!feat) return fn_error_set(err, FN_ERR_INVALID, "id feature '%s' is missing", o->id_key);
    fn_buf_reset(&r->id);
    switch (fn_feature_kind_of(feat)) {
    case FN_FEATURE_BYTES:
        if (one_value(feat, "id", o->id_key, err) != FN_OK) return FN_ERR_INVALID;
        fn_buf_append(&r->id, feat->bytes_list->value[0].data, feat->bytes_list->value[0].len);
        break;
    case FN_FEATURE_INT64:
        if (one_value(feat, "id", o->id_key, err) != FN_OK) return FN_ERR_INVALID;
        fn_buf_printf(&r->id, "%lld", (long long)feat->int64_list->value[0]);
        break;
    default:
        return fn_error_set(err, FN_ERR_INVALID,
                            "id feature '%s' holds %s %s where a bytes_list or int64_list is "
                            "expected",
                            o->id_key, article(fn_feature_kind_of(feat)),
                            fn_feature_kind_name(fn_feature_kind_of(feat)));
    }
    if (r->id.len == 0)
        return fn_error_set(err, FN_ERR_INVALID, "id feature '%s' is empty", o->id_key);
    if (r->id.len > FN_STORE_ID_MAX)
        return fn_error_set(err, FN_ERR_INVALID, "id feature '%s' is longer than %d bytes",
                            o->id_key, FN_STORE_ID_MAX);
    if (r->id.oom) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    return FN_OK;
}

static fn_status take_version(const Tensorflow__Features *f, const options *o, load_record *r,
                              fn_error *err)
{
    if (!o->version_key) {
        r->version = o->version;
        return FN_OK;
    }
    const Tensorflow__Feature *feat = fn_features_get(f, o->version_key);
    if (!feat)
        return fn_error_set(err, FN_ERR_INVALID, "version feature '%s' is missing", o->version_key);
    if (fn_feature_kind_of(feat) != FN_FEATURE_INT64)
        return fn_error_set(err, FN_ERR_INVALID,
                            "version feature '%s' holds %s %s where an int64_list is expected",
                            o->version_key, article(fn_feature_kind_of(feat)),
                            fn_feature_kind_name(fn_feature_kind_of(feat)));
    if (one_value(feat, "version", o->version_key, err) != FN_OK) return FN_ERR_INVALID;
    int64_t v = feat->int64_list->value[0];
    if (v < 0)
        return fn_error_set(err, FN_ERR_INVALID, "version feature '%s' is negative (%lld)",
                            o->version_key, (long long)v);
    r->version = (uint64_t)v;
    return FN_OK;
}

/* Splits the vector feature off: the record keeps every other entry, in the same order. */
static fn_status take_vector(const Tensorflow__Features *f, const options *o, load_record *r,
                             fn_error *err)
{
    r->vector = NULL;
    r->n_vector = 0;
    if (f) {
        r->features = *f;
    } else {
        Tensorflow__Features empty = TENSORFLOW__FEATURES__INIT;
        r->features = empty;
    }
    if (!o->vector_key || !f) return FN_OK;
    const Tensorflow__Feature *feat = fn_features_get(f, o->vector_key);
    if (!feat) return FN_OK;
    if (fn_feature_kind_of(feat) != FN_FEATURE_FLOAT)
        return fn_error_set(err, FN_ERR_INVALID,
                            "vector feature '%s' holds %s %s where a float_list is expected",
                            o->vector_key, article(fn_feature_kind_of(feat)),
                            fn_feature_kind_name(fn_feature_kind_of(feat)));
    r->vector = feat->float_list->value;
    r->n_vector = feat->float_list->n_value;
    if (r->entries_cap < f->n_feature) {
        void *p = realloc(r->entries, f->n_feature * sizeof *r->entries);
        if (!p) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        r->entries = p;
        r->entries_cap = f->n_feature;
    }
    size_t n = 0;
    for (size_t i = 0; i < f->n_feature; i++)
        if (strcmp(f->feature[i]->key, o->vector_key) != 0) r->entries[n++] = f->feature[i];
    r->features.feature = r->entries;
    r->features.n_feature = n;
    return FN_OK;
}

/*
 * Reads FILE once. With store NULL it only checks every record and counts
 * them; with a store it loads them in synced batches.
 */
static fn_status load_pass(const options *o, fn_store *store, uint64_t total, uint64_t *records,
                           size_t *loaded, size_t *ignored, fn_error *err)
{
    fn_tfrecord_reader *rd;
    fn_status st = fn_tfrecord_reader_open(o->input, NULL, &rd, err);
    if (st != FN_OK) return st;
    fn_arena *arena = fn_arena_new(0);
    fn_store_batch *batch = NULL;
    fn_progress *bar = NULL;
    load_record rec = {FN_BUF_INIT, 0, TENSORFLOW__FEATURES__INIT, NULL, 0, NULL, 0};
    uint64_t n = 0;
    size_t batch_bytes = 0;
    if (!arena) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (store) {
        if ((st = fn_store_batch_new(store, &batch, err)) != FN_OK) goto done;
        bar = fn_progress_new("records", total);
    }
    for (;; n++) {
        const uint8_t *data;
        size_t len;
        st = fn_tfrecord_read(rd, &data, &len, err);
        if (st == FN_END) break;
        if (st != FN_OK) goto done;
        Tensorflow__Example *ex;
        fn_arena_reset(arena);
        st = fn_example_decode_arena(data, len, arena, &ex, err);
        const Tensorflow__Features *f = st == FN_OK ? fn_example_features(ex) : NULL;
        if (st == FN_OK) st = take_id(f, o, &rec, err);
        if (st == FN_OK) st = take_version(f, o, &rec, err);
        if (st == FN_OK) st = take_vector(f, o, &rec, err);
        if (st == FN_OK && batch)
            st = fn_store_batch_put(batch, o->family, rec.id.data, rec.id.len, rec.version,
                                    &rec.features, rec.vector, rec.n_vector, err);
        if (st != FN_OK) {
            fn_error_prefix(err, "%s: record %llu at byte offset %llu", o->input,
                            (unsigned long long)n,
                            (unsigned long long)fn_tfrecord_reader_record_offset(rd));
            goto done;
        }
        batch_bytes += len;
        if (batch &&
            (fn_store_batch_count(batch) >= LOAD_BATCH || batch_bytes >= LOAD_BATCH_BYTES)) {
            size_t a, i;
            batch_bytes = 0;
            if ((st = fn_store_batch_commit(batch, &a, &i, err)) != FN_OK) goto done;
            *loaded += a;
            *ignored += i;
            fn_progress_update(bar, n + 1, NULL);
        }
    }
    st = FN_OK;
    if (batch) {
        size_t a, i;
        if ((st = fn_store_batch_commit(batch, &a, &i, err)) != FN_OK) goto done;
        *loaded += a;
        *ignored += i;
        fn_progress_update(bar, n, NULL);
    }
done:
    *records = n;
    fn_progress_finish(bar);
    fn_store_batch_free(batch);
    fn_buf_free(&rec.id);
    free(rec.entries);
    fn_arena_free(arena);
    fn_tfrecord_reader_close(rd);
    return st;
}

static int cmd_load(const options *opts)
{
    if (!opts->input) return fn_cli_usage_error("store", "load needs --input FILE");
    if (!opts->id_key) return fn_cli_usage_error("store", "load needs --id-key KEY");
    if (opts->has_version && opts->version_key)
        return fn_cli_usage_error("store", "--version and --version-key exclude each other");
    options with_version = *opts;
    const options *o = &with_version;
    /* One clock reading for the whole file: its records are one generation. */
    if (!opts->has_version) with_version.version = (uint64_t)fn_wall_ms();
    fn_error err = {0};
    uint64_t t0 = fn_now_ns(), total = 0, done = 0;
    size_t loaded = 0, ignored = 0;
    if (load_pass(o, NULL, 0, &total, &loaded, &ignored, &err) != FN_OK)
        return fn_cli_fail("store load", &err);
    fn_store_options so = {.create_if_missing = 1, .cache_disabled = 1};
    fn_store *s;
    if (fn_store_open(o->store, &so, &s, &err) != FN_OK) return fn_cli_fail("store load", &err);
    fn_status st = load_pass(o, s, total, &done, &loaded, &ignored, &err);
    fn_store_close(s);
    if (st != FN_OK) {
        fn_cli_fail("store load", &err);
        fprintf(stderr,
                "funnel store load: %zu records were loaded (and %zu ignored as older) before "
                "the failure; loading the file again is safe\n",
                loaded, ignored);
        return FN_EXIT_FAIL;
    }
    double secs = (double)(fn_now_ns() - t0) / 1e9;
    fprintf(stderr,
            "funnel store: %llu records from %s: loaded %zu into %s (family %s), ignored %zu "
            "older than the stored ones\n",
            (unsigned long long)done, o->input, loaded, o->store, o->family_name, ignored);
    if (o->json)
        printf("{\"records\": %llu, \"loaded\": %zu, \"ignored_older\": %zu, \"seconds\": %.3f}\n",
               (unsigned long long)done, loaded, ignored, secs);
    return FN_EXIT_OK;
}

/* ---- get, dump ---- */

/* number: the item's number, -1 for none (users, an unnumbered store) */
static void record_json(fn_buf *b, const char *id, size_t id_len, int64_t number,
                        const fn_store_record *r)
{
    fn_buf_puts(b, "{\"id\": ");
    fn_buf_json_string(b, id, id_len);
    if (number >= 0) fn_buf_printf(b, ", \"number\": %lld", (long long)number);
    fn_buf_printf(
        b, ", \"version\": %llu, \"features\": ", (unsigned long long)fn_store_record_version(r));
    const Tensorflow__Features *f = fn_store_record_features(r);
    if (f)
        fn_pbjson_encode(&f->base, b);
    else
        fn_buf_puts(b, "{}");
    size_t n;
    const float *v = fn_store_record_vector(r, &n);
    if (n) {
        fn_buf_puts(b, ", \"vector\": [");
        for (size_t i = 0; i < n; i++) {
            if (i) fn_buf_puts(b, ", ");
            fn_buf_json_float(b, v[i]);
        }
        fn_buf_putc(b, ']');
    }
    fn_buf_puts(b, "}\n");
}

/* The item's number for record_json: -1 for users and in a store without numbers. */
static fn_status number_of(fn_store *s, fn_store_family family, const char *id, size_t id_len,
                           int64_t *out, fn_error *err)
{
    *out = -1;
    if (family != FN_STORE_ITEMS) return FN_OK;
    fn_status st = fn_store_item_number(s, id, id_len, out, err);
    return st == FN_ERR_UNSUPPORTED || st == FN_ERR_NOT_FOUND ? FN_OK : st;
}

static fn_status open_read_only(const options *o, fn_store **s, fn_error *err)
{
    fn_store_options so = {.read_only = 1, .cache_disabled = 1};
    return fn_store_open(o->store, &so, s, err);
}

static int flush_stdout(const char *cmd, fn_buf *out)
{
    fn_error err = {0};
    if (fn_cli_write_stdout(out, &err) != FN_OK) return fn_cli_fail(cmd, &err);
    if (fflush(stdout) != 0) {
        fn_error_set(&err, FN_ERR_IO, "writing to standard output failed");
        return fn_cli_fail(cmd, &err);
    }
    return FN_EXIT_OK;
}

static int cmd_get(const options *o, const char *id)
{
    fn_error err = {0};
    fn_store *s;
    if (open_read_only(o, &s, &err) != FN_OK) return fn_cli_fail("store get", &err);
    fn_store_record *r;
    int64_t number = -1;
    fn_status st = fn_store_get(s, o->family, id, strlen(id), &r, &err);
    if (st == FN_OK && (st = number_of(s, o->family, id, strlen(id), &number, &err)) != FN_OK)
        fn_store_record_release(r);
    fn_store_close(s);
    if (st != FN_OK) return fn_cli_fail("store get", &err);
    fn_buf out = FN_BUF_INIT;
    record_json(&out, id, strlen(id), number, r);
    fn_store_record_release(r);
    int rc = flush_stdout("store get", &out);
    fn_buf_free(&out);
    return rc;
}

static int cmd_dump(const options *o)
{
    fn_error err = {0};
    fn_store *s;
    if (open_read_only(o, &s, &err) != FN_OK) return fn_cli_fail("store dump", &err);
    fn_store_iter *it;
    if (fn_store_iter_open(s, o->family, &it, &err) != FN_OK) {
        fn_store_close(s);
        return fn_cli_fail("store dump", &err);
    }
    fn_buf out = FN_BUF_INIT;
    int rc = FN_EXIT_OK;
    for (;;) {
        const char *id;
        size_t id_len;
        fn_store_record *r;
        fn_status st = fn_store_iter_next(it, &id, &id_len, &r, &err);
        if (st == FN_END) break;
        if (st != FN_OK) {
            rc = fn_cli_fail("store dump", &err);
            break;
        }
        int64_t number;
        st = number_of(s, o->family, id, id_len, &number, &err);
        if (st == FN_OK) record_json(&out, id, id_len, number, r);
        fn_store_record_release(r);
        if (st != FN_OK) {
            rc = fn_cli_fail("store dump", &err);
            break;
        }
        if (out.len >= (1u << 16)) {
            if ((rc = flush_stdout("store dump", &out)) != FN_EXIT_OK) break;
            fn_buf_reset(&out);
        }
    }
    /* Records read before a failure are printed too: the error says where it stopped. */
    int frc = flush_stdout("store dump", &out);
    if (rc == FN_EXIT_OK) rc = frc;
    fn_buf_free(&out);
    fn_store_iter_close(it);
    fn_store_close(s);
    return rc;
}

/* ---- delete ---- */

/* The ids of --ids FILE (- for stdin), one per line, into the arena; blank lines skipped. */
static fn_status read_ids(const char *path, fn_arena *arena, char ***ids, size_t *n, fn_error *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) return fn_error_set(err, FN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    fn_status st = FN_OK;
    char *line = NULL;
    size_t cap = 0, have = 0, lineno = 0;
    ssize_t len;
    *ids = NULL;
    *n = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if ((size_t)len > FN_STORE_ID_MAX) {
            st = fn_error_set(err, FN_ERR_INVALID, "%s:%zu: the id is longer than %d bytes", path,
                              lineno, FN_STORE_ID_MAX);
            break;
        }
        if (*n == have) {
            size_t grow = have ? 2 * have : 64;
            char **p = realloc(*ids, grow * sizeof *p);
            if (!p) {
                st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
                break;
            }
            *ids = p;
            have = grow;
        }
        if (!((*ids)[(*n)++] = fn_arena_strndup(arena, line, (size_t)len))) {
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (st == FN_OK && ferror(f)) st = fn_error_set(err, FN_ERR_IO, "reading %s failed", path);
    free(line);
    if (f != stdin) fclose(f);
    return st;
}

static int cmd_delete(const options *o, char **arg_ids, size_t n_args)
{
    fn_error err = {0};
    fn_arena *arena = fn_arena_new(0);
    char **file_ids = NULL, **ids = arg_ids;
    size_t n = n_args;
    if (!arena) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        return fn_cli_fail("store delete", &err);
    }
    int rc = FN_EXIT_OK;
    fn_store *s = NULL;
    fn_store_record **found = NULL;
    if (o->ids) {
        if (read_ids(o->ids, arena, &file_ids, &n, &err) != FN_OK) {
            rc = fn_cli_fail("store delete", &err);
            goto done;
        }
        ids = file_ids;
        if (n == 0) {
            rc = fn_cli_usage_error("store", "--ids %s holds no ids", o->ids);
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!*ids[i] || strlen(ids[i]) > FN_STORE_ID_MAX) {
            rc = fn_cli_usage_error("store", "id %zu is %s", i + 1, *ids[i] ? "too long" : "empty");
            goto done;
        }
    fn_store_options so = {.cache_disabled = 1};
    if (fn_store_open(o->store, &so, &s, &err) != FN_OK) {
        rc = fn_cli_fail("store delete", &err);
        goto done;
    }
    /* Which ids have a record, for the count; then the deletes. */
    size_t present = 0;
    if (n && !(found = calloc(n, sizeof *found))) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        rc = fn_cli_fail("store delete", &err);
        goto done;
    }
    if (n &&
        fn_store_multi_get(s, o->family, n, (const char *const *)ids, NULL, found, &err) != FN_OK) {
        rc = fn_cli_fail("store delete", &err);
        goto done;
    }
    for (size_t i = 0; i < n; i++) present += found[i] != NULL;
    for (size_t i = 0; i < n; i++)
        if (fn_store_delete(s, o->family, ids[i], strlen(ids[i]), &err) != FN_OK) {
            rc = fn_cli_fail("store delete", &err);
            fprintf(stderr, "funnel store delete: the first %zu ids were deleted before it\n", i);
            goto done;
        }
    fprintf(stderr, "funnel store: deleted %zu %s records from %s (%zu of the %zu ids had none)\n",
            present, o->family_name, o->store, n - present, n);
    if (o->json)
        printf("{\"ids\": %zu, \"deleted\": %zu, \"absent\": %zu}\n", n, present, n - present);
done:
    if (found) {
        for (size_t i = 0; i < n; i++) fn_store_record_release(found[i]);
        free(found);
    }
    fn_store_close(s);
    free(file_ids);
    fn_arena_free(arena);
    return rc;
}

static int cmd_upgrade(const options *o)
{
    fn_error err = {0};
    fn_store *s;
    fn_store_options so = {.cache_disabled = 1};
    if (fn_store_open(o->store, &so, &s, &err) != FN_OK) return fn_cli_fail("store upgrade", &err);
    fprintf(stderr, "funnel store: %s is up to date (format 2; item numbers given: %lld)\n",
            o->store, (long long)fn_store_item_numbers_end(s));
    fn_store_close(s);
    return FN_EXIT_OK;
}

int fn_cmd_store(int argc, char **argv)
{
    options o = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_STORE:
            o.store = optarg;
            break;
        case OPT_FAMILY:
            o.family_name = optarg;
            if (fn_store_family_parse(optarg, &o.family) != FN_OK)
                return fn_cli_usage_error("store", "--family must be users or items, not '%s'",
                                          optarg);
            break;
        case OPT_INPUT:
            o.input = optarg;
            break;
        case OPT_ID_KEY:
            o.id_key = optarg;
            break;
        case OPT_VERSION:
            if (!fn_cli_u64("store", "--version", optarg, &o.version)) return FN_EXIT_USAGE;
            o.has_version = 1;
            break;
        case OPT_VERSION_KEY:
            o.version_key = optarg;
            break;
        case OPT_VECTOR_KEY:
            o.vector_key = optarg;
            break;
        case OPT_IDS:
            o.ids = optarg;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("store", "unknown option");
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) {
        fputs(usage_text, stderr);
        return FN_EXIT_USAGE;
    }
    const char *sub = args[0];
    int is_load = strcmp(sub, "load") == 0, is_delete = strcmp(sub, "delete") == 0;
    if (!is_load && !is_delete && strcmp(sub, "get") != 0 && strcmp(sub, "dump") != 0 &&
        strcmp(sub, "upgrade") != 0)
        return fn_cli_usage_error("store", "unknown subcommand '%s'", sub);
    if (!o.store) return fn_cli_usage_error("store", "--store is required");
    if (strcmp(sub, "upgrade") == 0) {
        if (nargs != 1 || o.family_name || o.input || o.id_key || o.has_version || o.version_key ||
            o.vector_key || o.ids || o.json)
            return fn_cli_usage_error("store", "upgrade takes --store DIR only");
        return cmd_upgrade(&o);
    }
    if (!o.family_name) return fn_cli_usage_error("store", "--family is required");
    if (!is_load && (o.input || o.id_key || o.has_version || o.version_key || o.vector_key))
        return fn_cli_usage_error("store", "--input, --id-key, --version, --version-key and "
                                           "--vector-key apply to load only");
    if (o.ids && !is_delete) return fn_cli_usage_error("store", "--ids applies to delete only");
    if (o.json && !is_load && !is_delete)
        return fn_cli_usage_error("store", "--json applies to load and delete only");
    if (is_delete) {
        if ((nargs > 1) == (o.ids != NULL))
            return fn_cli_usage_error("store", "delete takes the IDs as arguments or --ids FILE "
                                               "(one of the two)");
        return cmd_delete(&o, args + 1, (size_t)(nargs - 1));
    }
    if (is_load) {
        if (nargs != 1) return fn_cli_usage_error("store", "load takes no arguments");
        return cmd_load(&o);
    }
    if (strcmp(sub, "get") == 0) {
        if (nargs != 2) return fn_cli_usage_error("store", "get takes one ID");
        if (!*args[1]) return fn_cli_usage_error("store", "the ID is empty");
        return cmd_get(&o, args[1]);
    }
    if (nargs != 1) return fn_cli_usage_error("store", "dump takes no arguments");
    return cmd_dump(&o);
}
