/*
 * index_store.c - the items of a feature store as rows to index: each item's
 * stored vector (or a float_list feature), else its text run through the
 * encoder in batches, L2-normalised, under the store's number for the item.
 * `funnel index build --store` indexes them all; `funnel index add` only
 * those the index does not hold yet.
 */
#include "index_store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/progress.h"
#include "features/example.h"
#include "features/store.h"

#define ENCODE_CHUNK  256
#define DEFAULT_MODEL "models/all-MiniLM-L6-v2"

void store_items_free(store_items *si)
{
    for (size_t i = 0; i < si->n; i++) free(si->ids[i]);
    for (size_t i = 0; i < si->n_pending; i++) free(si->texts[i]);
    free(si->ids), free(si->lens), free(si->numbers), free(si->vecs), free(si->texts);
    free(si->text_lens);
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

/* The dimension every vector must have: the index's when adding to one, else 0 (any). */
static size_t index_dim(const index_source *o)
{
    return o->known ? fn_ann_dim(o->known) : 0;
}

/* Fixes the dimension (first vector) or checks a vector of item row against it. */
static fn_status check_dim(store_items *si, const index_source *o, size_t row, size_t d,
                           const char *what, fn_error *err)
{
    char a[256], b[256];
    if (d == 0) {
        id_text(si->ids[row], si->lens[row], a, sizeof a);
        return fn_error_set(err, FN_ERR_INVALID, "item '%s': %s is empty", a, what);
    }
    if (index_dim(o) && d != index_dim(o)) {
        id_text(si->ids[row], si->lens[row], a, sizeof a);
        return fn_error_set(err, FN_ERR_INVALID,
                            "item '%s': %s of dimension %zu, the index %zu: the index was built "
                            "from other vectors",
                            a, what, d, index_dim(o));
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
static fn_status flush_texts(store_items *si, const index_source *o, fn_error *err)
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
        if ((st = check_dim(si, o, r, d, "encoded text", err)) != FN_OK) return st;
        memcpy(si->vecs + r * d, si->enc_out + i * d, d * sizeof(float));
        if ((st = normalise_row(si, r, err)) != FN_OK) return st;
    }
    si->n_encoded += m;
    return FN_OK;
}

static fn_status queue_text(store_items *si, const index_source *o, size_t row, const char *text,
                            size_t len, fn_error *err)
{
    if (!si->enc) {
        fn_encoder_options eo = {.threads = (int)o->threads, .max_batch = 0};
        const char *model = o->model ? o->model : DEFAULT_MODEL;
        fn_status st = fn_encoder_load(model, &eo, &si->enc, err);
        if (st != FN_OK) return fn_error_prefix(err, "loading the encoder (--model %s)", model);
        /* before any text is encoded: a whole store's texts can take minutes */
        if (index_dim(o) && fn_encoder_dim(si->enc) != index_dim(o))
            return fn_error_set(err, FN_ERR_INVALID,
                                "the encoder %s gives vectors of dimension %zu, the index %zu: "
                                "the index was built from other vectors",
                                model, fn_encoder_dim(si->enc), index_dim(o));
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
    return si->n_pending == ENCODE_CHUNK ? flush_texts(si, o, err) : FN_OK;
}

/* Whether the index being added to holds number, live or deleted (counted): the item stays out. */
static int known_to_index(store_items *si, const index_source *o, int64_t number)
{
    if (!o->known) return 0;
    if (fn_ann_contains(o->known, number)) {
        si->n_present++;
        return 1;
    }
    if (fn_ann_is_deleted(o->known, number)) {
        si->n_tombstoned++;
        return 1;
    }
    return 0;
}

/* Takes one item: its id, and its vector or its text. */
static fn_status take_item(store_items *si, const index_source *o, const char *id, size_t id_len,
                           int64_t number, const fn_store_record *rec, fn_error *err)
{
    char a[256];
    if (si->n == si->cap) {
        size_t cap = si->cap ? si->cap * 2 : 1024;
        char **ids = realloc(si->ids, cap * sizeof *ids);
        if (ids) si->ids = ids;
        size_t *lens = ids ? realloc(si->lens, cap * sizeof *lens) : NULL;
        if (lens) si->lens = lens;
        int64_t *nums = lens ? realloc(si->numbers, cap * sizeof *nums) : NULL;
        if (nums) si->numbers = nums;
        float *v = nums && si->dim ? realloc(si->vecs, cap * si->dim * sizeof *v) : NULL;
        if (v) si->vecs = v;
        if (!ids || !lens || !nums || (si->dim && !v))
            return fn_error_set(err, FN_ERR_NOMEM, "out of memory at %zu items", si->n);
        si->cap = cap;
    }
    size_t row = si->n;
    si->numbers[row] = number;
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
        fn_status st = check_dim(si, o, row, d, what, err);
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

/* A scan of the store's items: where it is, and its progress. */
typedef struct reader {
    const index_source *o;
    store_items *si;
    fn_store *s;
    fn_progress *bar;
    size_t seen;
} reader;

static void tick(reader *r)
{
    if ((++r->seen & 1023) == 0) fn_progress_update(r->bar, r->seen, NULL);
}

/* Every item record, in id order (index build). */
static fn_status read_all(reader *r, fn_error *err)
{
    fn_store_iter *it = NULL;
    fn_status st = fn_store_iter_open(r->s, FN_STORE_ITEMS, &it, err);
    while (st == FN_OK) {
        const char *id;
        size_t id_len;
        fn_store_record *rec;
        if ((st = fn_store_iter_next(it, &id, &id_len, &rec, err)) != FN_OK) break;
        int64_t number;
        st = fn_store_item_number(r->s, id, id_len, &number, err);
        if (st == FN_OK) st = take_item(r->si, r->o, id, id_len, number, rec, err);
        fn_store_record_release(rec);
        tick(r);
    }
    fn_store_iter_close(it);
    return st == FN_END ? FN_OK : st;
}

/* One numbered item of an index add: its record is read only when the index lacks it. */
static fn_status take_numbered(void *ctx, int64_t number, const char *id, size_t id_len,
                               fn_error *err)
{
    reader *r = ctx;
    tick(r);
    if (known_to_index(r->si, r->o, number)) return FN_OK;
    fn_store_record *rec;
    fn_status st = fn_store_get(r->s, FN_STORE_ITEMS, id, id_len, &rec, err);
    if (st == FN_ERR_NOT_FOUND) { /* deleted from the store: its number stays, it is no item */
        fn_error_clear(err);
        return FN_OK;
    }
    if (st != FN_OK) return st;
    st = take_item(r->si, r->o, id, id_len, number, rec, err);
    fn_store_record_release(rec);
    return st;
}

fn_status index_read_store(const index_source *o, store_items *si, fn_error *err)
{
    fn_store_options so = {.read_only = 1, .cache_disabled = 1};
    reader r = {.o = o, .si = si};
    fn_status st = fn_store_open(o->store, &so, &r.s, err);
    if (st == FN_OK) {
        r.bar = fn_progress_new("items", 0);
        /* Adding to an index: the numbers, in order, are a short scan of small keys, and
           only the items the index lacks have their records read and decoded. */
        st = o->known ? fn_store_item_numbers_scan(r.s, 0, take_numbered, &r, err)
                      : read_all(&r, err);
        if (st == FN_OK) st = flush_texts(si, o, err);
        if (st != FN_OK) fn_error_prefix(err, "store %s", o->store);
        fn_progress_finish(r.bar);
    }
    fn_store_close(r.s);
    return st;
}
