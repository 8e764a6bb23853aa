/*
 * cmd_index.c - `funnel index build|search`: builds an ANN index (src/recall,
 * FAISS through its C API) from an .fvecs file, and measures one: recall@k
 * against ground truth and queries per second, one query at a time on one
 * thread, as ANN benchmarks count them.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/file.h"
#include "common/progress.h"
#include "features/example.h"
#include "features/store.h"
#include "llm/encoder.h"
#include "recall/recall.h"

static const char usage_text[] =
    "usage: funnel index build (--vectors FILE.fvecs | --store DIR) --factory STR --out FILE\n"
    "                          [--vector-key KEY] [--text-key KEY [--model DIR]]\n"
    "                          [--ef N] [--nprobe N] [--threads N] [--json]\n"
    "       funnel index search --index FILE --queries FILE.fvecs -k K [--ef N] [--nprobe N]\n"
    "                          [--ground-truth FILE.ivecs | --exact [--vectors FILE.fvecs]]\n"
    "                          [--ids OUT.ivecs] [--results OUT.jsonl] [--json]\n"
    "       funnel index delete|rebuild --index FILE ... (see funnel index delete --help)\n"
    "\n"
    "build   build a FAISS index over the vectors of FILE.fvecs, item ids being their row\n"
    "        numbers (0, 1, ...), and write it to FILE (FAISS's index file with funnel's\n"
    "        trailer: tombstones, defaults, checksum). Vectors are L2-normalised and\n"
    "        compared by inner product (cosine). Indexes that need training (IVF, PQ) are\n"
    "        trained on all the vectors first.\n"
    "        With --store, the vectors are those of the items of the feature store in DIR\n"
    "        (opened read-only): each item's stored vector (or its float_list feature\n"
    "        --vector-key), else its bytes feature --text-key run through the encoder.\n"
    "        Items get ids 0, 1, ... in the store's order (item id byte order), and\n"
    "        FILE.ids maps them back: line i + 2 holds the item id of index id i (after a\n"
    "        header line; bytes below 0x20, 0x7f and '%' as %XX; a CRC32C line ends it).\n"
    "        It is written atomically after the index; a --vectors build removes a stale\n"
    "        one. An item with neither a vector nor the text is an error, or left out\n"
    "        of the index with --skip-missing.\n"
    "search  run the queries of FILE.fvecs one at a time on one thread and print the\n"
    "        queries per second and, when the true neighbours are known, recall@k: the\n"
    "        share of the k true nearest neighbours among the k results, averaged.\n"
    "\n"
    "options:\n"
    "  --factory STR        FAISS index factory string: \"HNSW32,Flat\", \"IVF1024,Flat\",\n"
    "                       \"IVF256,PQ48\", \"Flat\" (exact), ...\n"
    "  --vectors FILE       build: the vectors to index (.fvecs); search --exact: the\n"
    "                       indexed vectors to compute the truth from (default: the vectors\n"
    "                       read back from the index, exact for Flat storage, decoded for\n"
    "                       PQ/SQ codes)\n"
    "  --out FILE           build: where to write the index (and, with --store, FILE.ids)\n"
    "  --store DIR          build: index the items of this feature store\n"
    "  --vector-key KEY     build --store: take the vectors from this float_list feature\n"
    "                       instead of the items' stored vectors\n"
    "  --text-key KEY       build --store: encode this bytes feature (UTF-8 text) for items\n"
    "                       without a vector\n"
    "  --skip-missing       build --store: leave out items with neither a vector nor the\n"
    "                       --text-key feature (counted as \"skipped\") instead of failing\n"
    "  --model DIR          build --text-key: the encoder model folder (default\n"
    "                       models/all-MiniLM-L6-v2)\n"
    "  --ef N               HNSW efSearch (build: the default saved with the index)\n"
    "  --nprobe N           IVF lists probed (build: the default saved with the index)\n"
    "  --threads N          build: threads for training, adding and encoding (default: all\n"
    "                       CPUs; search always runs its queries on one thread)\n"
    "  --index FILE         search: the index from 'funnel index build'\n"
    "  --queries FILE       search: query vectors (.fvecs)\n"
    "  -k K                 search: results per query\n"
    "  --ground-truth FILE  search: true neighbour ids per query (.ivecs, at least k each,\n"
    "                       best first)\n"
    "  --exact              search: compute the true neighbours by brute force\n"
    "  --ids OUT            search: write the k result ids per query as .ivecs (-1 where\n"
    "                       fewer than k were found)\n"
    "  --results OUT        search: write one JSON line per query, {\"ids\": [...],\n"
    "                       \"scores\": [...]}, best first; the ids are the item ids of\n"
    "                       INDEX.ids when that file exists, else the int64 index ids\n"
    "  --json               print the figures as one JSON object: build {\"factory\",\n"
    "                       \"vectors\", \"dim\", \"train_s\", \"add_s\", \"out\"}; search "
    "{\"k\",\n"
    "                       \"queries\", \"qps\", \"recall@k\" (when the truth is known), ...}\n";

enum {
    OPT_VECTORS = 1,
    OPT_STORE,
    OPT_FACTORY,
    OPT_OUT,
    OPT_EF,
    OPT_NPROBE,
    OPT_INDEX,
    OPT_QUERIES,
    OPT_GT,
    OPT_EXACT,
    OPT_IDS,
    OPT_JSON,
    OPT_THREADS,
    OPT_VECTOR_KEY,
    OPT_TEXT_KEY,
    OPT_MODEL,
    OPT_RESULTS,
    OPT_SKIP_MISSING,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"vectors", required_argument, NULL, OPT_VECTORS},
    {"store", required_argument, NULL, OPT_STORE},
    {"factory", required_argument, NULL, OPT_FACTORY},
    {"out", required_argument, NULL, OPT_OUT},
    {"ef", required_argument, NULL, OPT_EF},
    {"nprobe", required_argument, NULL, OPT_NPROBE},
    {"index", required_argument, NULL, OPT_INDEX},
    {"queries", required_argument, NULL, OPT_QUERIES},
    {"k", required_argument, NULL, 'k'},
    {"ground-truth", required_argument, NULL, OPT_GT},
    {"exact", no_argument, NULL, OPT_EXACT},
    {"ids", required_argument, NULL, OPT_IDS},
    {"json", no_argument, NULL, OPT_JSON},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"vector-key", required_argument, NULL, OPT_VECTOR_KEY},
    {"text-key", required_argument, NULL, OPT_TEXT_KEY},
    {"model", required_argument, NULL, OPT_MODEL},
    {"results", required_argument, NULL, OPT_RESULTS},
    {"skip-missing", no_argument, NULL, OPT_SKIP_MISSING},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct options {
    const char *vectors, *store, *factory, *out, *index, *queries, *gt, *ids, *results;
    const char *vector_key, *text_key, *model;
    uint64_t k, threads;
    int has_k, exact, json, has_threads, skip_missing;
    fn_ann_params params;
} options;

/* Vectors added per call while building: the progress bar moves between them. */
#define BUILD_CHUNK 4096
/* Texts encoded together when building from the store. */
#define ENCODE_CHUNK  256
#define DEFAULT_MODEL "models/all-MiniLM-L6-v2"

/* The items of the store, in iteration order: their ids and vectors (row i is ANN id i). */
typedef struct store_items {
    size_t n, cap, dim;
    char **ids;
    size_t *lens;
    float *vecs;      /* n rows of dim floats once dim is known */
    size_t n_encoded; /* rows that came from the encoder */
    size_t n_skipped; /* items left out by --skip-missing */
    size_t first_vec; /* the item whose vector fixed dim (for messages) */
    fn_encoder *enc;  /* loaded on the first text */
    char **texts;     /* texts waiting to be encoded, rows pending[] */
    size_t *text_lens;
    size_t *pending;
    size_t n_pending;
    float *enc_out; /* ENCODE_CHUNK rows of the encoder's dimension */
} store_items;

static void store_items_free(store_items *si)
{
    for (size_t i = 0; i < si->n; i++) free(si->ids[i]);
    for (size_t i = 0; i < si->n_pending; i++) free(si->texts[i]);
    free(si->ids), free(si->lens), free(si->vecs), free(si->texts), free(si->text_lens);
    free(si->pending), free(si->enc_out);
    fn_encoder_free(si->enc);
}

/* A printable form of an item id for messages (ids are bytes; they are cut at 200). */
static void id_text(const char *id, size_t len, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 5 < cap; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x20 || c == 0x7f)
            j += (size_t)snprintf(out + j, cap - j, "\\x%02x", c);
        else
            out[j++] = (char)c;
    }
    out[j] = '\0';
}

/* Fixes the dimension (first vector) or checks a vector of item row against it. */
static fn_status check_dim(store_items *si, size_t row, size_t d, const char *what, fn_error *err)
{
    char a[256], b[256];
    if (d == 0) {
        id_text(si->ids[row], si->lens[row], a, sizeof a);
        return fn_error_set(err, FN_ERR_INVALID, "item '%s': %s is empty", a, what);
    }
    if (si->dim == 0) {
        si->dim = d;
        si->first_vec = row;
        float *v = malloc(si->cap * d * sizeof *v);
        if (!v) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        si->vecs = v;
        return FN_OK;
    }
    if (d == si->dim) return FN_OK;
    id_text(si->ids[row], si->lens[row], a, sizeof a);
    id_text(si->ids[si->first_vec], si->lens[si->first_vec], b, sizeof b);
    return fn_error_set(err, FN_ERR_INVALID,
                        "item '%s': %s of dimension %zu, but item '%s' has dimension %zu (all "
                        "vectors must have one dimension)",
                        a, what, d, b, si->dim);
}

/* Checks a row (finite, non-zero) and L2-normalises it in place. */
static fn_status normalise_row(store_items *si, size_t row, fn_error *err)
{
    float *v = si->vecs + row * si->dim;
    double ss = 0;
    for (size_t k = 0; k < si->dim; k++) ss += (double)v[k] * v[k];
    if (!(ss > 0) || !isfinite(ss)) {
        char a[256];
        id_text(si->ids[row], si->lens[row], a, sizeof a);
        return fn_error_set(err, FN_ERR_INVALID, "item '%s': vector is %s", a,
                            ss == 0 ? "all zeros" : "not finite");
    }
    float inv = (float)(1.0 / sqrt(ss));
    for (size_t k = 0; k < si->dim; k++) v[k] *= inv;
    return FN_OK;
}

/* Encodes the pending texts into their rows. */
static fn_status flush_texts(store_items *si, fn_error *err)
{
    if (!si->n_pending) return FN_OK;
    fn_status st = fn_encoder_encode(si->enc, (const char *const *)si->texts, si->text_lens,
                                     si->n_pending, si->enc_out, err);
    if (st != FN_OK) {
        char a[256];
        size_t r = si->pending[0];
        id_text(si->ids[r], si->lens[r], a, sizeof a);
        fn_error_prefix(err, "encoding the texts of %zu items from '%s'", si->n_pending, a);
        return st;
    }
    size_t d = fn_encoder_dim(si->enc), m = si->n_pending;
    for (size_t i = 0; i < m; i++) free(si->texts[i]);
    si->n_pending = 0;
    for (size_t i = 0; i < m; i++) {
        size_t r = si->pending[i];
        if ((st = check_dim(si, r, d, "encoded text", err)) != FN_OK) return st;
        memcpy(si->vecs + r * d, si->enc_out + i * d, d * sizeof(float));
        if ((st = normalise_row(si, r, err)) != FN_OK) return st;
    }
    si->n_encoded += m;
    return FN_OK;
}

static fn_status queue_text(store_items *si, const options *o, size_t row, const char *text,
                            size_t len, fn_error *err)
{
    if (!si->enc) {
        fn_encoder_options eo = {.threads = (int)o->threads, .max_batch = 0};
        const char *model = o->model ? o->model : DEFAULT_MODEL;
        fn_status st = fn_encoder_load(model, &eo, &si->enc, err);
        if (st != FN_OK) return fn_error_prefix(err, "loading the encoder (--model %s)", model);
        si->texts = malloc(ENCODE_CHUNK * sizeof *si->texts);
        si->text_lens = malloc(ENCODE_CHUNK * sizeof *si->text_lens);
        si->pending = malloc(ENCODE_CHUNK * sizeof *si->pending);
        si->enc_out = malloc(ENCODE_CHUNK * fn_encoder_dim(si->enc) * sizeof *si->enc_out);
        if (!si->texts || !si->text_lens || !si->pending || !si->enc_out)
            return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        fprintf(stderr, "funnel index: encoding item texts ('%s') with %s on %s\n", o->text_key,
                model, fn_encoder_device_name(si->enc));
    }
    char *t = malloc(len + 1);
    if (!t) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    memcpy(t, text, len);
    t[len] = '\0';
    si->texts[si->n_pending] = t;
    si->text_lens[si->n_pending] = len;
    si->pending[si->n_pending++] = row;
    return si->n_pending == ENCODE_CHUNK ? flush_texts(si, err) : FN_OK;
}

/* Takes one item: its id, and its vector or its text. */
static fn_status take_item(store_items *si, const options *o, const char *id, size_t id_len,
                           const fn_store_record *rec, fn_error *err)
{
    char a[256];
    if (si->n == si->cap) {
        size_t cap = si->cap ? si->cap * 2 : 1024;
        char **ids = realloc(si->ids, cap * sizeof *ids);
        if (ids) si->ids = ids;
        size_t *lens = ids ? realloc(si->lens, cap * sizeof *lens) : NULL;
        if (lens) si->lens = lens;
        float *v = lens && si->dim ? realloc(si->vecs, cap * si->dim * sizeof *v) : NULL;
        if (v) si->vecs = v;
        if (!ids || !lens || (si->dim && !v))
            return fn_error_set(err, FN_ERR_NOMEM, "out of memory at %zu items", si->n);
        si->cap = cap;
    }
    size_t row = si->n;
    if (!(si->ids[row] = malloc(id_len + 1)))
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    memcpy(si->ids[row], id, id_len);
    si->ids[row][id_len] = '\0';
    si->lens[row] = id_len;
    si->n++;

    const Tensorflow__Features *f = fn_store_record_features(rec);
    const float *vec = NULL;
    size_t d = 0;
    const char *what = "stored vector";
    if (o->vector_key) {
        const Tensorflow__Feature *feat = fn_features_get(f, o->vector_key);
        if (feat && fn_feature_kind_of(feat) != FN_FEATURE_FLOAT) {
            id_text(id, id_len, a, sizeof a);
            return fn_error_set(err, FN_ERR_INVALID,
                                "item '%s': feature '%s' holds a %s where a float_list is "
                                "expected",
                                a, o->vector_key, fn_feature_kind_name(fn_feature_kind_of(feat)));
        }
        if (feat) {
            vec = feat->float_list->value;
            d = feat->float_list->n_value;
            what = "vector feature";
        }
    } else {
        vec = fn_store_record_vector(rec, &d);
    }
    if (vec) {
        fn_status st = check_dim(si, row, d, what, err);
        if (st != FN_OK) return st;
        memcpy(si->vecs + row * si->dim, vec, d * sizeof *vec);
        return normalise_row(si, row, err);
    }
    const Tensorflow__Feature *tf = o->text_key ? fn_features_get(f, o->text_key) : NULL;
    if (!tf && o->skip_missing) {
        free(si->ids[row]);
        si->n--;
        si->n_skipped++;
        return FN_OK;
    }
    if (!tf) {
        id_text(id, id_len, a, sizeof a);
        if (o->text_key)
            return fn_error_set(err, FN_ERR_INVALID,
                                "item '%s' has neither a vector%s%s%s nor a text feature '%s' "
                                "(--skip-missing leaves such items out)",
                                a, o->vector_key ? " (feature '" : "",
                                o->vector_key ? o->vector_key : "", o->vector_key ? "')" : "",
                                o->text_key);
        return fn_error_set(err, FN_ERR_INVALID,
                            "item '%s' has no vector%s%s%s (give --text-key to encode a text "
                            "feature instead, or --skip-missing to leave such items out)",
                            a, o->vector_key ? " (feature '" : "",
                            o->vector_key ? o->vector_key : "", o->vector_key ? "')" : "");
    }
    if (fn_feature_kind_of(tf) != FN_FEATURE_BYTES || tf->bytes_list->n_value < 1) {
        id_text(id, id_len, a, sizeof a);
        return fn_error_set(err, FN_ERR_INVALID,
                            "item '%s': text feature '%s' holds %s where a bytes_list with a "
                            "text is expected",
                            a, o->text_key,
                            fn_feature_kind_of(tf) == FN_FEATURE_BYTES
                                ? "an empty bytes_list"
                                : fn_feature_kind_name(fn_feature_kind_of(tf)));
    }
    /* Several values (a title and its subtitle, ...) are joined with spaces. */
    fn_buf t = FN_BUF_INIT;
    for (size_t i = 0; i < tf->bytes_list->n_value; i++) {
        if (i) fn_buf_putc(&t, ' ');
        fn_buf_append(&t, tf->bytes_list->value[i].data, tf->bytes_list->value[i].len);
    }
    fn_status st = t.oom ? fn_error_set(err, FN_ERR_NOMEM, "out of memory")
                         : queue_text(si, o, row, t.data ? t.data : "", t.len, err);
    fn_buf_free(&t);
    return st;
}

/* Reads every item of the store: ids in iteration order, normalised vectors. */
static fn_status read_store_items(const options *o, store_items *si, fn_error *err)
{
    fn_store_options so = {.read_only = 1, .cache_disabled = 1};
    fn_store *s = NULL;
    fn_store_iter *it = NULL;
    fn_status st = fn_store_open(o->store, &so, &s, err);
    if (st == FN_OK) st = fn_store_iter_open(s, FN_STORE_ITEMS, &it, err);
    fn_progress *bar = st == FN_OK ? fn_progress_new("items", 0) : NULL;
    while (st == FN_OK) {
        const char *id;
        size_t id_len;
        fn_store_record *rec;
        st = fn_store_iter_next(it, &id, &id_len, &rec, err);
        if (st == FN_END) {
            if ((st = flush_texts(si, err)) != FN_OK) fn_error_prefix(err, "store %s", o->store);
            break;
        }
        if (st != FN_OK) break;
        st = take_item(si, o, id, id_len, rec, err);
        fn_store_record_release(rec);
        if (st != FN_OK) fn_error_prefix(err, "store %s", o->store);
        if ((si->n & 1023) == 0) fn_progress_update(bar, si->n, NULL);
    }
    if (bar) fn_progress_finish(bar);
    fn_store_iter_close(it);
    fn_store_close(s);
    if (st == FN_OK && si->n == 0)
        st = si->n_skipped
                 ? fn_error_set(err, FN_ERR_INVALID,
                                "store %s has no items to index: all %zu lack a vector "
                                "and a text",
                                o->store, si->n_skipped)
                 : fn_error_set(err, FN_ERR_INVALID, "store %s has no items to index", o->store);
    return st;
}

static int cmd_build(const options *o)
{
    fn_error err = {0};
    float *vecs = NULL;
    int64_t *ids = NULL;
    fn_ann *ann = NULL;
    size_t n = 0, dim = 0;
    int rc = FN_EXIT_FAIL;
    store_items si = {0};
    fn_buf ids_path = FN_BUF_INIT;
    fn_buf_printf(&ids_path, "%s.ids", o->out);
    if (ids_path.oom) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (fn_ann_set_threads((int)o->threads, &err) != FN_OK) goto done;
    if (o->store) {
        if (read_store_items(o, &si, &err) != FN_OK) goto done;
        n = si.n, dim = si.dim, vecs = si.vecs;
        si.vecs = NULL;
    } else if (fn_vecs_read_fvecs(o->vectors, &n, &dim, &vecs, &err) != FN_OK) {
        goto done;
    }
    if (fn_ann_new(o->factory, dim, &ann, &err) != FN_OK) goto done;
    if ((o->params.ef_search || o->params.nprobe) &&
        fn_ann_set_defaults(ann, &o->params, &err) != FN_OK)
        goto done;
    uint64_t t0 = fn_now_ns();
    if (fn_ann_train(ann, n, vecs, &err) != FN_OK) goto done;
    uint64_t t1 = fn_now_ns();
    if (!(ids = malloc(n * sizeof *ids))) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i;
    fn_progress *bar = fn_progress_new("vectors", n);
    for (size_t i = 0; i < n; i += BUILD_CHUNK) {
        size_t m = n - i < BUILD_CHUNK ? n - i : BUILD_CHUNK;
        if (fn_ann_add(ann, m, vecs + i * dim, ids + i, &err) != FN_OK) {
            fn_progress_finish(bar);
            goto done;
        }
        fn_progress_update(bar, i + m, NULL);
    }
    fn_progress_finish(bar);
    uint64_t t2 = fn_now_ns();
    if (fn_ann_save(ann, o->out, &err) != FN_OK) goto done;
    if (o->store) {
        /* The index is useless without its ids: a failure here takes it away again. */
        if (fn_ann_ids_save(ids_path.data, n, (const char *const *)si.ids, si.lens, &err) !=
            FN_OK) {
            unlink(o->out);
            goto done;
        }
    } else if (unlink(ids_path.data) == 0) {
        fprintf(stderr, "funnel index: removed %s, the item ids of the index it replaced\n",
                ids_path.data);
    }
    double train_s = (double)(t1 - t0) / 1e9, add_s = (double)(t2 - t1) / 1e9;
    fn_buf b = FN_BUF_INIT;
    if (o->json) {
        fn_buf_puts(&b, "{\"factory\": ");
        fn_buf_json_string(&b, o->factory, strlen(o->factory));
        fn_buf_printf(&b, ", \"vectors\": %zu, \"dim\": %zu, \"train_s\": %.3f, \"add_s\": %.3f", n,
                      dim, train_s, add_s);
        fn_ann_params d = fn_ann_defaults(ann);
        if (d.ef_search) fn_buf_printf(&b, ", \"ef_search\": %d", d.ef_search);
        if (d.nprobe) fn_buf_printf(&b, ", \"nprobe\": %d", d.nprobe);
        fn_buf_puts(&b, ", \"out\": ");
        fn_buf_json_string(&b, o->out, strlen(o->out));
        if (o->store) {
            fn_buf_printf(&b, ", \"encoded\": %zu, \"skipped\": %zu, \"ids\": ", si.n_encoded,
                          si.n_skipped);
            fn_buf_json_string(&b, ids_path.data, ids_path.len);
        }
        fn_buf_puts(&b, "}\n");
    } else {
        fn_buf_printf(&b,
                      "built %s over %zu vectors of dimension %zu: train %.2f s, add %.2f s\n"
                      "wrote %s\n",
                      o->factory, n, dim, train_s, add_s, o->out);
        if (o->store)
            fn_buf_printf(&b,
                          "wrote %s (%zu item ids; %zu items encoded from text, %zu without a "
                          "vector or text skipped)\n",
                          ids_path.data, n, si.n_encoded, si.n_skipped);
    }
    fn_status st = fn_cli_write_stdout(&b, &err);
    fn_buf_free(&b);
    if (st == FN_OK) rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("index", &err);
    free(vecs);
    free(ids);
    fn_ann_free(ann);
    store_items_free(&si);
    fn_buf_free(&ids_path);
    return rc;
}

/*
 * The true k nearest neighbours of the queries by brute force (an exact Flat
 * index) over the index's live vectors: those of --vectors when given (rows
 * the index no longer holds are left out), else the ones read back from it.
 */
static fn_status exact_truth(const options *o, fn_ann *ann, size_t nq, const float *q, size_t k,
                             int64_t *truth, fn_error *err)
{
    size_t n = 0, dim = 0;
    float *vecs = NULL;
    int64_t *ids = NULL;
    fn_ann *flat = NULL;
    fn_status st;
    if (o->vectors) {
        if ((st = fn_vecs_read_fvecs(o->vectors, &n, &dim, &vecs, err)) != FN_OK) goto done;
        if (dim != fn_ann_dim(ann)) {
            st = fn_error_set(err, FN_ERR_INVALID, "%s: dimension %zu, the index has %zu",
                              o->vectors, dim, fn_ann_dim(ann));
            goto done;
        }
        if (!(ids = malloc((n ? n : 1) * sizeof *ids))) {
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
            goto done;
        }
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
            if (!fn_ann_contains(ann, (int64_t)i)) continue;
            memmove(vecs + live * dim, vecs + i * dim, dim * sizeof *vecs);
            ids[live++] = (int64_t)i;
        }
        n = live;
    } else {
        dim = fn_ann_dim(ann);
        if ((st = fn_ann_vectors(ann, &n, &ids, &vecs, err)) != FN_OK) goto done;
    }
    if ((st = fn_ann_new("Flat", dim, &flat, err)) != FN_OK) goto done;
    if ((st = fn_ann_add(flat, n, vecs, ids, err)) != FN_OK) goto done;
    st = fn_ann_search(flat, nq, q, k, NULL, truth, NULL, err);
done:
    if (st != FN_OK) fn_error_prefix(err, "computing the exact neighbours");
    free(vecs);
    free(ids);
    fn_ann_free(flat);
    return st;
}

/* INDEX.ids when it exists (NULL in *out when not). */
static fn_status load_names(const char *index, fn_ann_ids **out, fn_error *err)
{
    fn_buf path = FN_BUF_INIT;
    fn_buf_printf(&path, "%s.ids", index);
    if (path.oom) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    fn_status st = fn_ann_ids_load(path.data, out, err);
    if (st == FN_ERR_NOT_FOUND) {
        *out = NULL;
        st = FN_OK;
    }
    fn_buf_free(&path);
    return st;
}

/* One JSON line per query: the result ids (item ids when names is set) and scores. */
static fn_status write_results(const char *path, const fn_ann_ids *names, size_t nq, size_t k,
                               const int64_t *res, const float *scores, fn_error *err)
{
    fn_buf b = FN_BUF_INIT;
    for (size_t i = 0; i < nq; i++) {
        size_t got = 0;
        while (got < k && res[i * k + got] >= 0) got++;
        fn_buf_puts(&b, "{\"ids\": [");
        for (size_t j = 0; j < got; j++) {
            if (j) fn_buf_puts(&b, ", ");
            size_t len;
            if (!names) {
                fn_buf_printf(&b, "%lld", (long long)res[i * k + j]);
                continue;
            }
            const char *name = fn_ann_ids_get(names, res[i * k + j], &len);
            if (!name) {
                fn_buf_free(&b);
                return fn_error_set(err, FN_ERR_INVALID,
                                    "the index returned id %lld but its .ids file holds %zu item "
                                    "ids: it belongs to another index",
                                    (long long)res[i * k + j], fn_ann_ids_count(names));
            }
            fn_buf_json_string(&b, name, len);
        }
        fn_buf_puts(&b, "], \"scores\": [");
        for (size_t j = 0; j < got; j++) {
            if (j) fn_buf_puts(&b, ", ");
            fn_buf_json_float(&b, scores[i * k + j]);
        }
        fn_buf_puts(&b, "]}\n");
    }
    fn_status st = b.oom ? fn_error_set(err, FN_ERR_NOMEM, "out of memory")
                         : fn_file_write_atomic(path, b.data ? b.data : "", b.len, err);
    fn_buf_free(&b);
    return st;
}

static int cmd_search(const options *o)
{
    fn_error err = {0};
    fn_ann *ann = NULL;
    float *q = NULL;
    int32_t *gt = NULL, *out_ids = NULL;
    int64_t *res = NULL, *truth = NULL;
    float *scores = NULL;
    fn_ann_ids *names = NULL;
    size_t nq = 0, qdim = 0, gn = 0, gdim = 0, k = (size_t)o->k;
    int rc = FN_EXIT_FAIL;
    if (fn_ann_load(o->index, 0, &ann, &err) != FN_OK) goto done;
    if (o->results && load_names(o->index, &names, &err) != FN_OK) goto done;
    if (fn_vecs_read_fvecs(o->queries, &nq, &qdim, &q, &err) != FN_OK) goto done;
    if (qdim != fn_ann_dim(ann)) {
        fn_error_set(&err, FN_ERR_INVALID, "%s: queries of dimension %zu, the index has %zu",
                     o->queries, qdim, fn_ann_dim(ann));
        goto done;
    }
    fn_ann_params p = o->params;
    if (p.ef_search && !fn_ann_has_ef_search(ann)) {
        fn_error_set(&err, FN_ERR_INVALID, "--ef applies to HNSW indexes, not '%s'",
                     fn_ann_factory(ann));
        goto done;
    }
    if (p.nprobe && !fn_ann_has_nprobe(ann)) {
        fn_error_set(&err, FN_ERR_INVALID, "--nprobe applies to IVF indexes, not '%s'",
                     fn_ann_factory(ann));
        goto done;
    }
    res = malloc(nq * k * sizeof *res);
    truth = malloc(nq * k * sizeof *truth);
    out_ids = malloc(nq * k * sizeof *out_ids);
    scores = malloc(nq * k * sizeof *scores);
    if (!res || !truth || !out_ids || !scores) {
        fn_error_set(&err, FN_ERR_NOMEM, "out of memory for %zu x %zu results", nq, k);
        goto done;
    }
    int have_truth = 0;
    if (o->gt) {
        if (fn_vecs_read_ivecs(o->gt, &gn, &gdim, &gt, &err) != FN_OK) goto done;
        if (gn < nq || gdim < k) {
            fn_error_set(&err, FN_ERR_INVALID,
                         "%s: %zu rows of %zu neighbours; %zu queries at -k %zu need %zu of at "
                         "least %zu",
                         o->gt, gn, gdim, nq, k, nq, k);
            goto done;
        }
        for (size_t i = 0; i < nq; i++)
            for (size_t j = 0; j < k; j++) truth[i * k + j] = gt[i * gdim + j];
        have_truth = 1;
    } else if (o->exact) {
        if (exact_truth(o, ann, nq, q, k, truth, &err) != FN_OK) goto done;
        have_truth = 1;
    }

    /* One query at a time on one thread: the latency-bound serving case. */
    if (fn_ann_set_threads(1, &err) != FN_OK) goto done;
    fn_progress *bar = fn_progress_new("queries", nq);
    uint64_t t0 = fn_now_ns();
    for (size_t i = 0; i < nq; i++) {
        if (fn_ann_search(ann, 1, q + i * qdim, k, &p, res + i * k, scores + i * k, &err) !=
            FN_OK) {
            fn_progress_finish(bar);
            fn_error_prefix(&err, "query %zu", i);
            goto done;
        }
        if ((i & 255) == 255) fn_progress_update(bar, i + 1, NULL);
    }
    double secs = (double)(fn_now_ns() - t0) / 1e9;
    fn_progress_finish(bar);
    double qps = secs > 0 ? (double)nq / secs : 0;

    double recall = 0;
    if (have_truth) {
        size_t hits = 0;
        for (size_t i = 0; i < nq; i++)
            for (size_t j = 0; j < k; j++) {
                int64_t t = truth[i * k + j];
                for (size_t r = 0; r < k && t >= 0; r++)
                    if (res[i * k + r] == t) {
                        hits++;
                        break;
                    }
            }
        recall = nq ? (double)hits / (double)(nq * k) : 0;
    }
    if (o->ids) {
        for (size_t i = 0; i < nq * k; i++) {
            if (res[i] > INT32_MAX) {
                fn_error_set(&err, FN_ERR_INVALID, "id %lld does not fit an .ivecs int32",
                             (long long)res[i]);
                goto done;
            }
            out_ids[i] = (int32_t)res[i];
        }
        if (nq && fn_vecs_write_ivecs(o->ids, nq, k, out_ids, &err) != FN_OK) goto done;
    }

    if (o->results && write_results(o->results, names, nq, k, res, scores, &err) != FN_OK)
        goto done;

    fn_ann_params d = fn_ann_defaults(ann);
    int ef = p.ef_search ? p.ef_search : d.ef_search, np = p.nprobe ? p.nprobe : d.nprobe;
    fn_buf b = FN_BUF_INIT;
    if (o->json) {
        fn_buf_printf(&b, "{\"k\": %zu, \"queries\": %zu, \"qps\": %.1f", k, nq, qps);
        if (have_truth) {
            fn_buf_puts(&b, ", \"recall@k\": ");
            fn_buf_json_double(&b, recall);
        }
        fn_buf_puts(&b, ", \"factory\": ");
        fn_buf_json_string(&b, fn_ann_factory(ann), strlen(fn_ann_factory(ann)));
        if (ef) fn_buf_printf(&b, ", \"ef_search\": %d", ef);
        if (np) fn_buf_printf(&b, ", \"nprobe\": %d", np);
        fn_buf_printf(&b, ", \"vectors\": %zu}\n", fn_ann_count(ann));
    } else {
        fn_buf_printf(&b, "%s", fn_ann_factory(ann));
        if (ef) fn_buf_printf(&b, " efSearch %d", ef);
        if (np) fn_buf_printf(&b, " nprobe %d", np);
        fn_buf_printf(&b, ": %zu queries, k %zu, %.1f queries/s", nq, k, qps);
        if (have_truth) fn_buf_printf(&b, ", recall@%zu %.4f", k, recall);
        fn_buf_putc(&b, '\n');
    }
    fn_status st = fn_cli_write_stdout(&b, &err);
    fn_buf_free(&b);
    if (st == FN_OK) rc = FN_EXIT_OK;
done:
    if (rc != FN_EXIT_OK) fn_cli_fail("index", &err);
    fn_ann_free(ann);
    free(q), free(gt), free(out_ids), free(res), free(truth), free(scores);
    fn_ann_ids_free(names);
    return rc;
}

static int parse_param(const char *opt, const char *s, int *out)
{
    uint64_t v;
    if (!fn_cli_u64("index", opt, s, &v)) return 0;
    if (v < 1 || v > 1000000) {
        fn_cli_usage_error("index", "%s must be from 1 to 1000000", opt);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int fn_cmd_index(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "delete") || !strcmp(argv[1], "rebuild")))
        return fn_cmd_index_edit(argc - 1, argv + 1);
    options o = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hk:", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_VECTORS:
            o.vectors = optarg;
            break;
        case OPT_STORE:
            o.store = optarg;
            break;
        case OPT_FACTORY:
            o.factory = optarg;
            break;
        case OPT_OUT:
            o.out = optarg;
            break;
        case OPT_EF:
            if (!parse_param("--ef", optarg, &o.params.ef_search)) return FN_EXIT_USAGE;
            break;
        case OPT_NPROBE:
            if (!parse_param("--nprobe", optarg, &o.params.nprobe)) return FN_EXIT_USAGE;
            break;
        case OPT_INDEX:
            o.index = optarg;
            break;
        case OPT_QUERIES:
            o.queries = optarg;
            break;
        case 'k':
            if (!fn_cli_u64("index", "-k", optarg, &o.k)) return FN_EXIT_USAGE;
            if (o.k < 1 || o.k > 100000)
                return fn_cli_usage_error("index", "-k must be from 1 to 100000");
            o.has_k = 1;
            break;
        case OPT_GT:
            o.gt = optarg;
            break;
        case OPT_EXACT:
            o.exact = 1;
            break;
        case OPT_IDS:
            o.ids = optarg;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case OPT_THREADS:
            if (!fn_cli_u64("index", "--threads", optarg, &o.threads)) return FN_EXIT_USAGE;
            if (o.threads > 4096)
                return fn_cli_usage_error("index", "--threads must be at most 4096");
            o.has_threads = 1;
            break;
        case OPT_VECTOR_KEY:
            o.vector_key = optarg;
            break;
        case OPT_TEXT_KEY:
            o.text_key = optarg;
            break;
        case OPT_MODEL:
            o.model = optarg;
            break;
        case OPT_RESULTS:
            o.results = optarg;
            break;
        case OPT_SKIP_MISSING:
            o.skip_missing = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return FN_EXIT_OK;
        default:
            return fn_cli_usage_error("index", "unknown option");
        }
    }
    if (optind >= argc)
        return fn_cli_usage_error("index", "give a subcommand: build, search, delete or rebuild");
    const char *sub = argv[optind];
    if (optind + 1 < argc)
        return fn_cli_usage_error("index", "unexpected argument '%s'", argv[optind + 1]);
    if (strcmp(sub, "build") == 0) {
        if (o.index || o.queries || o.has_k || o.gt || o.exact || o.ids || o.results)
            return fn_cli_usage_error("index", "--index, --queries, -k, --ground-truth, --exact, "
                                               "--ids and --results apply to search only");
        if (!o.vectors == !o.store)
            return fn_cli_usage_error("index", "build takes --vectors FILE.fvecs or --store DIR");
        if (!o.factory || !o.out)
            return fn_cli_usage_error("index", "build needs --factory and --out");
        if (!o.store && (o.vector_key || o.text_key || o.model || o.skip_missing))
            return fn_cli_usage_error(
                "index", "--vector-key, --text-key, --model and --skip-missing go with --store");
        if (o.model && !o.text_key)
            return fn_cli_usage_error("index", "--model goes with --text-key");
        return cmd_build(&o);
    }
    if (strcmp(sub, "search") == 0) {
        if (o.factory || o.out || o.store || o.has_threads || o.vector_key || o.text_key || o.model)
            return fn_cli_usage_error("index", "--factory, --out, --store, --vector-key, "
                                               "--text-key, --model and --threads apply to "
                                               "build only");
        if (!o.index || !o.queries || !o.has_k)
            return fn_cli_usage_error("index", "search needs --index, --queries and -k");
        if (o.gt && o.exact)
            return fn_cli_usage_error("index", "give --ground-truth or --exact, not both");
        if (o.vectors && !o.exact)
            return fn_cli_usage_error("index", "--vectors goes with build, or with search --exact");
        return cmd_search(&o);
    }
    return fn_cli_usage_error("index", "unknown subcommand '%s' (build, search, delete or rebuild)",
                              sub);
}
