/*
 * store_numbers.c - item numbers: the stable int64 that stands for an item id
 * where strings cannot go (the ANN index's ids).
 *
 * They live in the item_numbers family under two kinds of keys, written in
 * the same batch as the item's first record:
 *   'i' + item id            -> the number, 8 bytes little-endian
 *   'n' + number, big-endian -> the item id
 * Big-endian numbers sort in number order, so the last 'n' key gives the next
 * number at open and a scan from a number reads the newer items only.
 */
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define FAMILY  "item_numbers"
#define REV_LEN 9

static void rev_key(char out[REV_LEN], int64_t number)
{
    out[0] = 'n';
    for (int i = 0; i < 8; i++) out[1 + i] = (char)((uint64_t)number >> (56 - 8 * i));
}

static int64_t rev_number(const char *key)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = (x << 8) | (unsigned char)key[1 + i];
    return (int64_t)x;
}

static size_t fwd_key(char *out, const char *id, size_t id_len)
{
    out[0] = 'i';
    memcpy(out + 1, id, id_len);
    return id_len + 1;
}

static fn_status unnumbered(const fn_store *s, const char *op, fn_error *err)
{
    return st_error(s, err, FN_ERR_UNSUPPORTED, op, FAMILY, NULL, 0,
                    "the store is of format " FORMAT_UNNUMBERED
                    ", from before item numbers; open it for writing once "
                    "(funnel store upgrade --store DIR) to number its items");
}

/* The highest number given so far, plus one (0 in a store without any). */
static fn_status find_next(fn_store *s, int64_t *next, fn_error *err)
{
    char last[REV_LEN];
    rev_key(last, INT64_MAX);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cfs[CF_NUMBERS]);
    rocksdb_iter_seek_for_prev(it, last, sizeof last);
    *next = 0;
    fn_status st = FN_OK;
    if (rocksdb_iter_valid(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen == REV_LEN && k[0] == 'n' && rev_number(k) == INT64_MAX) {
            st = st_error(s, err, FN_ERR_CORRUPT, "open", FAMILY, NULL, 0,
                          "the last number given is %lld: no number is left", (long long)INT64_MAX);
        } else if (klen == REV_LEN && k[0] == 'n') {
            *next = rev_number(k) + 1;
        } else if (k[0] == 'n') {
            st = st_error(s, err, FN_ERR_CORRUPT, "open", FAMILY, NULL, 0,
                          "a number key of %zu bytes, not %d", klen, REV_LEN);
        }
    } else {
        char *rerr = NULL;
        rocksdb_iter_get_error(it, &rerr);
        if (rerr) st = st_rocksdb_fail(s, err, "open", FAMILY, NULL, 0, rerr);
    }
    rocksdb_iter_destroy(it);
    return st;
}

static void stage(fn_store *s, rocksdb_writebatch_t *wb, const char *id, size_t id_len,
                  int64_t number)
{
    char fwd[1 + FN_STORE_ID_MAX], rev[REV_LEN], val[8];
    size_t n = fwd_key(fwd, id, id_len);
    rev_key(rev, number);
    for (int i = 0; i < 8; i++) val[i] = (char)((uint64_t)number >> (8 * i));
    rocksdb_writebatch_put_cf(wb, s->cfs[CF_NUMBERS], fwd, n, val, sizeof val);
    rocksdb_writebatch_put_cf(wb, s->cfs[CF_NUMBERS], rev, sizeof rev, id, id_len);
}

/* Format 1 to 2: every item numbered in id byte order, with the new marker, in one write. */
static fn_status upgrade(fn_store *s, fn_error *err)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->scan_opts, s->cfs[CF_ITEMS]);
    int64_t next = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen >= 1 && klen <= FN_STORE_ID_MAX) stage(s, wb, k, klen, next++);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (!rerr) {
        rocksdb_writebatch_put_cf(wb, s->cfs[CF_META], FORMAT_KEY, strlen(FORMAT_KEY),
                                  FORMAT_VERSION, strlen(FORMAT_VERSION));
        rocksdb_write(s->db, s->wopts, wb, &rerr);
    }
    rocksdb_writebatch_destroy(wb);
    if (rerr)
        return st_rocksdb_fail(s, err, "upgrade to format " FORMAT_VERSION, NULL, NULL, 0, rerr);
    atomic_store(&s->next_number, next);
    return FN_OK;
}

fn_status st_numbers_open(fn_store *s, int old_format, fn_error *err)
{
    atomic_init(&s->next_number, 0);
    if (old_format && s->read_only) return FN_OK; /* s->numbered stays 0 */
    if (!s->cfs[CF_NUMBERS])                      /* read-only, format 2, and the family is gone */
        return st_error(s, err, FN_ERR_CORRUPT, "open", NULL, NULL, 0,
                        "a store of format " FORMAT_VERSION " without its '" FAMILY
                        "' column family");
    s->numbered = 1;
    if (old_format) return upgrade(s, err);
    int64_t next;
    fn_status st = find_next(s, &next, err);
    if (st == FN_OK) atomic_store(&s->next_number, next);
    return st;
}

/*
 * Looks up the number of an id: FN_ERR_NOT_FOUND when it has none, with a
 * message unless quiet (a put asking whether to number a new item).
 */
static fn_status lookup(fn_store *s, const char *op, const char *id, size_t id_len, int quiet,
                        int64_t *out, fn_error *err)
{
    char fwd[1 + FN_STORE_ID_MAX];
    size_t n = fwd_key(fwd, id, id_len), vlen = 0;
    char *rerr = NULL;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cfs[CF_NUMBERS], fwd, n, &vlen, &rerr);
    if (rerr) return st_rocksdb_fail(s, err, op, FAMILY, id, id_len, rerr);
    if (!v)
        return quiet ? FN_ERR_NOT_FOUND
                     : st_error(s, err, FN_ERR_NOT_FOUND, op, FAMILY, id, id_len, "no such item");
    fn_status st = FN_OK;
    if (vlen != 8) {
        st = st_error(s, err, FN_ERR_CORRUPT, op, FAMILY, id, id_len,
                      "the stored number has %zu bytes, not 8", vlen);
    } else {
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--) x = (x << 8) | (unsigned char)v[i];
        *out = (int64_t)x;
        if (*out < 0)
            st = st_error(s, err, FN_ERR_CORRUPT, op, FAMILY, id, id_len,
                          "the stored number is negative");
    }
    rocksdb_free(v);
    return st;
}

fn_status st_number_stage(fn_store *s, rocksdb_writebatch_t *wb, const char *id, size_t id_len,
                          fn_error *err)
{
    int64_t have;
    fn_status st = lookup(s, "put", id, id_len, 1, &have, err);
    if (st != FN_ERR_NOT_FOUND) return st;
    /* A number taken by a write that then fails stays unused: numbers are unique, not dense. */
    stage(s, wb, id, id_len, atomic_fetch_add(&s->next_number, 1));
    return FN_OK;
}

fn_status fn_store_item_number(fn_store *s, const char *id, size_t id_len, int64_t *out,
                               fn_error *err)
{
    fn_status st;
    *out = -1;
    if (!s->numbered) return unnumbered(s, "item number", err);
    if ((st = st_check_id(s, "item number", FAMILY, id, id_len, err)) != FN_OK) return st;
    return lookup(s, "item number", id, id_len, 0, out, err);
}

fn_status fn_store_item_by_number(fn_store *s, int64_t number, fn_buf *id, fn_error *err)
{
    if (!s->numbered) return unnumbered(s, "item by number", err);
    if (number < 0)
        return st_error(s, err, FN_ERR_INVALID, "item by number", FAMILY, NULL, 0,
                        "number %lld is negative", (long long)number);
    char rev[REV_LEN];
    rev_key(rev, number);
    size_t vlen = 0;
    char *rerr = NULL;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cfs[CF_NUMBERS], rev, sizeof rev, &vlen, &rerr);
    if (rerr) return st_rocksdb_fail(s, err, "item by number", FAMILY, NULL, 0, rerr);
    if (!v)
        return st_error(s, err, FN_ERR_NOT_FOUND, "item by number", FAMILY, NULL, 0,
                        "no item has number %lld", (long long)number);
    fn_buf_append(id, v, vlen);
    rocksdb_free(v);
    if (id->oom)
        return st_error(s, err, FN_ERR_NOMEM, "item by number", FAMILY, NULL, 0, "out of memory");
    return FN_OK;
}

int64_t fn_store_item_numbers_end(fn_store *s)
{
    return atomic_load(&s->next_number);
}

fn_status fn_store_item_numbers_scan(fn_store *s, int64_t from, fn_store_number_fn fn, void *ctx,
                                     fn_error *err)
{
    if (!s->numbered) return unnumbered(s, "item numbers", err);
    char start[REV_LEN];
    rev_key(start, from < 0 ? 0 : from);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->scan_opts, s->cfs[CF_NUMBERS]);
    fn_status st = FN_OK;
    for (rocksdb_iter_seek(it, start, sizeof start); st == FN_OK && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (k[0] != 'n') break;
        if (klen != REV_LEN || vlen < 1 || vlen > FN_STORE_ID_MAX)
            st = st_error(s, err, FN_ERR_CORRUPT, "item numbers", FAMILY, NULL, 0,
                          "a number entry of %zu + %zu bytes", klen, vlen);
        else
            st = fn(ctx, rev_number(k), v, vlen, err);
    }
    if (st == FN_OK) {
        char *rerr = NULL;
        rocksdb_iter_get_error(it, &rerr);
        if (rerr) st = st_rocksdb_fail(s, err, "item numbers", FAMILY, NULL, 0, rerr);
    }
    rocksdb_iter_destroy(it);
    return st;
}

/* ---- a loaded number -> id table ---- */

struct fn_store_item_names {
    size_t n;      /* numbers below n may have a name */
    size_t *off;   /* per number: where its id starts in bytes, SIZE_MAX for none */
    uint32_t *len; /* its length */
    fn_buf bytes;  /* the ids, each NUL-terminated */
    size_t count;  /* numbers with an id */
};

static fn_status take_name(void *ctx, int64_t number, const char *id, size_t id_len, fn_error *err)
{
    fn_store_item_names *t = ctx;
    /* Numbers given after the table was sized (a writer in this process) wait for a reload. */
    if ((uint64_t)number >= t->n) return FN_OK;
    t->off[number] = t->bytes.len;
    t->len[number] = (uint32_t)id_len;
    fn_buf_append(&t->bytes, id, id_len);
    fn_buf_putc(&t->bytes, '\0');
    t->count++;
    return t->bytes.oom ? fn_error_set(err, FN_ERR_NOMEM, "item names: out of memory") : FN_OK;
}

fn_status fn_store_item_names_load(fn_store *s, fn_store_item_names **out, fn_error *err)
{
    *out = NULL;
    if (!s->numbered) return unnumbered(s, "item names", err);
    fn_store_item_names *t = calloc(1, sizeof *t);
    if (!t) return fn_error_set(err, FN_ERR_NOMEM, "item names: out of memory");
    t->n = (size_t)fn_store_item_numbers_end(s);
    t->off = malloc((t->n ? t->n : 1) * sizeof *t->off);
    t->len = calloc(t->n ? t->n : 1, sizeof *t->len);
    if (!t->off || !t->len) {
        size_t n = t->n;
        fn_store_item_names_free(t);
        return fn_error_set(err, FN_ERR_NOMEM, "item names: out of memory for %zu numbers", n);
    }
    for (size_t i = 0; i < t->n; i++) t->off[i] = SIZE_MAX;
    fn_status st = fn_store_item_numbers_scan(s, 0, take_name, t, err);
    if (st != FN_OK) {
        fn_store_item_names_free(t);
        return st;
    }
    *out = t;
    return FN_OK;
}

void fn_store_item_names_free(fn_store_item_names *t)
{
    if (!t) return;
    free(t->off);
    free(t->len);
    fn_buf_free(&t->bytes);
    free(t);
}

size_t fn_store_item_names_count(const fn_store_item_names *t)
{
    return t->count;
}

const char *fn_store_item_names_get(const fn_store_item_names *t, int64_t number, size_t *len)
{
    if (number < 0 || (uint64_t)number >= t->n || t->off[number] == SIZE_MAX) return NULL;
    if (len) *len = t->len[number];
    return t->bytes.data + t->off[number];
}
