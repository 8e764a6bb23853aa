/*
 * listset.c - the lists the reranker trains and is evaluated on, read from
 * svmrank/LETOR text or from TFRecord files of tf.Example into dense rows.
 *
 * Both readers first collect what each row holds (sparse idx:value pairs for
 * text, the dense float list for TFRecord), because the width of the rows is
 * only known at the end of the file; the dense matrix is filled once, with
 * its size checked for overflow. Groups are checked while reading: a qid
 * that comes back after another one is an error at the line or record where
 * it comes back, since a list split in two would quietly change every metric.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "features/example.h"
#include "features/tfrecord.h"
#include "rerank.h"

/* Longest token quoted in an error message. */
#define TOKEN_SHOWN 64

/*
 * Makes room for `need` elements of `elem` bytes in the array p of *cap
 * elements, doubling. Returns the (possibly moved) array, or NULL with p
 * untouched when out of memory or when the size would overflow.
 */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2) return NULL;
        c *= 2;
    }
    if (c > SIZE_MAX / elem) return NULL;
    void *q = realloc(p, c * elem);
    if (q) *cap = c;
    return q;
}

/* ---- a set of qids (bytes keys), remembering where each list started ---- */

typedef struct qid_entry {
    uint64_t hash;
    size_t off, len; /* the key in pool */
    size_t where;    /* line or record where its list started */
} qid_entry;

typedef struct qid_set {
    qid_entry *e;
    size_t n, cap_e;
    size_t *slot; /* entry index + 1; 0 is empty */
    size_t n_slot;
    char *pool;
    size_t pool_len, pool_cap;
} qid_set;

static uint64_t hash_bytes(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void qid_set_free(qid_set *s)
{
    free(s->e);
    free(s->slot);
    free(s->pool);
}

static size_t qid_set_find(const qid_set *s, const void *key, size_t len, uint64_t h)
{
    size_t mask = s->n_slot - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        size_t k = s->slot[i];
        if (!k) return i;
        const qid_entry *e = &s->e[k - 1];
        if (e->hash == h && e->len == len && memcmp(s->pool + e->off, key, len) == 0) return i;
    }
}

/*
 * Adds key, started at `where`. When it is already there, *seen_at gets the
 * place where its first list started and the set is unchanged; else 0.
 */
static fn_status qid_set_add(qid_set *s, const void *key, size_t len, size_t where, size_t *seen_at,
                             fn_error *err)
{
    *seen_at = 0;
    uint64_t h = hash_bytes(key, len);
    if (s->n_slot) {
        size_t k = s->slot[qid_set_find(s, key, len, h)];
        if (k) {
            *seen_at = s->e[k - 1].where;
            return FN_OK;
        }
    }
    /* Keep the table at most half full so that probes stay short. */
    if ((s->n + 1) * 2 > s->n_slot) {
        size_t n_slot = s->n_slot ? s->n_slot * 2 : 256;
        if (n_slot > SIZE_MAX / sizeof *s->slot) goto nomem;
        size_t *slot = calloc(n_slot, sizeof *slot);
        if (!slot) goto nomem;
        size_t *old = s->slot, n_old = s->n_slot;
        s->slot = slot;
        s->n_slot = n_slot;
        for (size_t i = 0; i < n_old; i++)
            if (old[i]) {
                const qid_entry *e = &s->e[old[i] - 1];
                slot[qid_set_find(s, s->pool + e->off, e->len, e->hash)] = old[i];
            }
        free(old);
    }
    qid_entry *e = grow(s->e, &s->cap_e, s->n + 1, sizeof *e);
    if (!e) goto nomem;
    s->e = e;
    if (len > SIZE_MAX - s->pool_len) goto nomem;
    char *pool = grow(s->pool, &s->pool_cap, s->pool_len + len, 1);
    if (!pool) goto nomem;
    s->pool = pool;
    if (len) memcpy(s->pool + s->pool_len, key, len);
    s->e[s->n] = (qid_entry){h, s->pool_len, len, where};
    s->pool_len += len;
    s->slot[qid_set_find(s, key, len, h)] = ++s->n;
    return FN_OK;
nomem:
    return fn_error_set(err, FN_ERR_NOMEM, "out of memory keeping qids");
}

/* ---- rows and lists being read ---- */

typedef struct builder {
    float *labels;
    size_t n_items, cap_labels;
    uint64_t *offsets; /* list starts, n_lists of them while reading; then n_lists + 1 */
    size_t n_lists, cap_offsets;
    uint64_t *row_start; /* per row: where its values start in idx/val; n_items + 1 */
    size_t cap_rows;
    int dense;     /* TFRecord: a row's values are its columns 0.. in order, no idx kept */
    uint32_t *idx; /* svmrank: the 0-based column of each value */
    float *val;
    size_t n_vals, cap_idx, cap_val;
    uint32_t width; /* columns seen so far */
} builder;

static void builder_free(builder *b)
{
    free(b->labels);
    free(b->offsets);
    free(b->row_start);
    free(b->idx);
    free(b->val);
}

static fn_status nomem(fn_error *err, const char *what)
{
    return fn_error_set(err, FN_ERR_NOMEM, "out of memory reading %s", what);
}

/* Starts a row with this label; its values follow through builder_value. */
static fn_status builder_row(builder *b, float label)
{
    float *l = grow(b->labels, &b->cap_labels, b->n_items + 1, sizeof *l);
    if (!l) return FN_ERR_NOMEM;
    b->labels = l;
    uint64_t *r = grow(b->row_start, &b->cap_rows, b->n_items + 2, sizeof *r);
    if (!r) return FN_ERR_NOMEM;
    b->row_start = r;
    r[b->n_items] = b->n_vals;
    b->labels[b->n_items++] = label;
    r[b->n_items] = b->n_vals;
    return FN_OK;
}

static fn_status builder_value(builder *b, uint32_t col, float v)
{
    if (b->n_vals == SIZE_MAX) return FN_ERR_NOMEM;
    if (!b->dense) {
        uint32_t *ix = grow(b->idx, &b->cap_idx, b->n_vals + 1, sizeof *ix);
        if (!ix) return FN_ERR_NOMEM;
        b->idx = ix;
        b->idx[b->n_vals] = col;
    }
    float *vv = grow(b->val, &b->cap_val, b->n_vals + 1, sizeof *vv);
    if (!vv) return FN_ERR_NOMEM;
    b->val = vv;
    b->val[b->n_vals++] = v;
    b->row_start[b->n_items] = b->n_vals;
    return FN_OK;
}

/* Starts a list at row `start`. */
static fn_status builder_list(builder *b, size_t start)
{
    uint64_t *o = grow(b->offsets, &b->cap_offsets, b->n_lists + 2, sizeof *o);
    if (!o) return FN_ERR_NOMEM;
    b->offsets = o;
    o[b->n_lists++] = start;
    return FN_OK;
}

/*
 * Turns what was read into the listset: offsets closed with n_items, rows of
 * max(width, min_features) columns. Dense rows (TFRecord) are padded with 0.
 */
static fn_status builder_finish(builder *b, uint32_t min_features, const char *path,
                                fn_listset **out, fn_error *err)
{
    if (b->n_lists == 0) { /* the readers refuse an empty file; this keeps offsets[0] valid */
        if (builder_list(b, 0) != FN_OK) return nomem(err, path);
    }
    fn_listset *d = calloc(1, sizeof *d);
    if (!d) return nomem(err, path);
    uint32_t w = b->width > min_features ? b->width : min_features;
    size_t cells = b->n_items;
    if (w && cells > SIZE_MAX / sizeof(float) / w) {
        free(d);
        return fn_error_set(err, FN_ERR_NOMEM, "%s: %zu rows of %u features do not fit in memory",
                            path, b->n_items, w);
    }
    cells *= w;
    d->features = calloc(cells ? cells : 1, sizeof *d->features);
    if (!d->features) {
        free(d);
        return fn_error_set(err, FN_ERR_NOMEM, "%s: out of memory for %zu rows of %u features",
                            path, b->n_items, w);
    }
    for (size_t i = 0; i < b->n_items; i++) {
        float *row = d->features + i * (size_t)w;
        uint64_t s = b->row_start[i], e = b->row_start[i + 1];
        if (b->dense)
            memcpy(row, b->val + s, (size_t)(e - s) * sizeof *row);
        else
            for (uint64_t j = s; j < e; j++) row[b->idx[j]] = b->val[j];
    }
    b->offsets[b->n_lists] = b->n_items; /* builder_list left room for it */
    d->n_lists = b->n_lists;
    d->n_items = b->n_items;
    d->offsets = b->offsets;
    d->labels = b->labels;
    d->n_features = w;
    b->offsets = NULL;
    b->labels = NULL;
    *out = d;
    return FN_OK;
}

void fn_listset_free(fn_listset *d)
{
    if (!d) return;
    free(d->offsets);
    free(d->labels);
    free(d->features);
    free(d);
}

static int is_finite_label(double y)
{
    return isfinite(y) && y >= 0 && isfinite((float)y);
}

/* ---- svmrank / LETOR text ---- */

/* A decimal integer with digits only (strtoull alone would take "-1" and " 7"). */
static int parse_u64(const char *s, const char *stop, uint64_t *out)
{
    if (s == stop) return 0;
    uint64_t v = 0;
    for (const char *p = s; p < stop; p++) {
        if (*p < '0' || *p > '9') return 0;
        unsigned dgt = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - dgt) / 10) return 0;
        v = v * 10 + dgt;
    }
    *out = v;
    return 1;
}

/* Reads the group file: counts into *counts (n of them), checked as positive. */
static fn_status read_query_file(FILE *f, const char *qpath, uint64_t **counts, size_t *n,
                                 fn_error *err)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0, cap_c = 0;
    ssize_t len;
    fn_status st = FN_OK;
    *counts = NULL;
    *n = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && strchr(" \t\r\n", line[len - 1])) line[--len] = '\0';
        char *s = line + strspn(line, " \t");
        if (*s == '\0') continue; /* a trailing blank line holds no group */
        uint64_t c;
        if (!parse_u64(s, line + len, &c) || c == 0) {
            st = fn_error_set(err, FN_ERR_INVALID, "%s:%zu: '%.*s' is not a positive row count",
                              qpath, lineno, TOKEN_SHOWN, s);
            break;
        }
        uint64_t *g = grow(*counts, &cap_c, *n + 1, sizeof *g);
        if (!g) {
            st = nomem(err, qpath);
            break;
        }
        *counts = g;
        g[(*n)++] = c;
    }
    if (st == FN_OK && ferror(f)) st = fn_error_set(err, FN_ERR_IO, "reading %s failed", qpath);
    free(line);
    if (st != FN_OK) {
        free(*counts);
        *counts = NULL;
    }
    return st;
}

/* Opens the group file: query_path, else path.query when it exists; *f NULL for none. */
static fn_status open_query_file(const char *path, const char *query_path, FILE **f, char **qpath,
                                 fn_error *err)
{
    *f = NULL;
    *qpath = NULL;
    size_t n = strlen(path) + sizeof ".query";
    char *p = query_path ? strdup(query_path) : malloc(n);
    if (!p) return nomem(err, path);
    if (!query_path) snprintf(p, n, "%s.query", path);
    *f = fopen(p, "r");
    if (!*f) {
        int e = errno;
        if (!query_path && e == ENOENT) {
            free(p);
            return FN_OK;
        }
        fn_status st = fn_error_set(err, e == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO,
                                    "cannot open %s: %s", p, strerror(e));
        free(p);
        return st;
    }
    *qpath = p;
    return FN_OK;
}

/* What one text line holds, for grouping. */
typedef struct text_row {
    int has_qid;
    uint64_t qid;
} text_row;

static fn_status bad_token(fn_error *err, const char *path, size_t lineno, const char *tok,
                           const char *why)
{
    return fn_error_set(err, FN_ERR_INVALID, "%s:%zu: token '%.*s%s': %s", path, lineno,
                        TOKEN_SHOWN, tok, strlen(tok) > TOKEN_SHOWN ? "..." : "", why);
}

/* Parses one non-blank line (comment already cut) into a row of b. */
static fn_status parse_text_line(char *line, builder *b, text_row *row, const char *path,
                                 size_t lineno, fn_error *err)
{
    char *save = NULL, *tok = strtok_r(line, " \t", &save), *end;
    errno = 0;
    double y = strtod(tok, &end);
    if (*end || end == tok) return bad_token(err, path, lineno, tok, "the label is not a number");
    if (!is_finite_label(y))
        return bad_token(err, path, lineno, tok,
                         "the label must be a finite number >= 0 (graded relevance)");
    if (builder_row(b, (float)y) != FN_OK) return nomem(err, path);
    row->has_qid = 0;
    uint64_t prev = 0; /* 1-based index of the previous pair; 0 before the first */
    int first = 1;
    while ((tok = strtok_r(NULL, " \t", &save))) {
        char *colon = strchr(tok, ':');
        if (!colon) return bad_token(err, path, lineno, tok, "expected idx:value");
        if (first && colon - tok == 3 && memcmp(tok, "qid", 3) == 0) {
            first = 0;
            if (!parse_u64(colon + 1, colon + strlen(colon), &row->qid))
                return bad_token(err, path, lineno, tok, "the qid is not an integer >= 0");
            row->has_qid = 1;
            continue;
        }
        first = 0;
        uint64_t ix;
        if (!parse_u64(tok, colon, &ix))
            return bad_token(err, path, lineno, tok, "expected idx:value with an integer idx");
        if (ix == 0) return bad_token(err, path, lineno, tok, "indexes start at 1");
        if (ix > FN_LISTSET_MAX_FEATURES) {
            char why[96];
            snprintf(why, sizeof why,
                     "the index is above %u, the most columns a list's (dense) rows may have",
                     FN_LISTSET_MAX_FEATURES);
            return bad_token(err, path, lineno, tok, why);
        }
        if (ix <= prev)
            return bad_token(err, path, lineno, tok,
                             "indexes must increase along a line (svmlight's rule)");
        prev = ix;
        errno = 0;
        float v = strtof(colon + 1, &end);
        if (end == colon + 1 || *end)
            return bad_token(err, path, lineno, tok, "the value is not a number");
        if (!isfinite(v)) return bad_token(err, path, lineno, tok, "the value is not finite");
        if (builder_value(b, (uint32_t)(ix - 1), v) != FN_OK) return nomem(err, path);
        if (ix > b->width) b->width = (uint32_t)ix;
    }
    return FN_OK;
}

fn_status fn_listset_read_svmrank(const char *path, const char *query_path, uint32_t min_features,
                                  fn_listset **out, fn_error *err)
{
    *out = NULL;
    FILE *qf = NULL;
    char *qpath = NULL;
    uint64_t *counts = NULL;
    size_t n_counts = 0;
    fn_status st = open_query_file(path, query_path, &qf, &qpath, err);
    if (st != FN_OK) return st;
    int groups = qf != NULL; /* counts from a group file, rather than qid tokens */
    if (groups) {
        st = read_query_file(qf, qpath, &counts, &n_counts, err);
        fclose(qf);
        if (st != FN_OK) {
            free(qpath);
            return st;
        }
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        free(qpath);
        free(counts);
        return fn_error_set(err, e == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO, "cannot open %s: %s",
                            path, strerror(e));
    }
    builder b = {0};
    qid_set seen = {0};
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    uint64_t cur = 0;
    ssize_t len;
    while (st == FN_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (memchr(line, '\0', (size_t)len)) {
            st = fn_error_set(err, FN_ERR_INVALID, "%s:%zu: a NUL byte: not a text file", path,
                              lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = line + strspn(line, " \t\r\n");
        len = (ssize_t)strlen(s);
        while (len > 0 && strchr(" \t\r\n", s[len - 1])) s[--len] = '\0';
        if (*s == '\0') continue; /* blank and comment-only lines hold no item */
        text_row row = {0, 0};
        st = parse_text_line(s, &b, &row, path, lineno, err);
        if (st != FN_OK || groups) continue; /* with a group file, qid tokens are not used */
        if (!row.has_qid) {
            st = b.n_items == 1
                     ? fn_error_set(err, FN_ERR_INVALID,
                                    "%s:%zu: no qid: token and no group file (%s.query): cannot "
                                    "tell where the lists start",
                                    path, lineno, path)
                     : fn_error_set(err, FN_ERR_INVALID,
                                    "%s:%zu: no qid: token, while the lines above have one", path,
                                    lineno);
            break;
        }
        if (b.n_items > 1 && row.qid == cur) continue;
        size_t seen_at;
        uint8_t key[8];
        for (int i = 0; i < 8; i++) key[i] = (uint8_t)(row.qid >> (8 * i));
        st = qid_set_add(&seen, key, sizeof key, lineno, &seen_at, err);
        if (st == FN_OK && seen_at)
            st = fn_error_set(err, FN_ERR_INVALID,
                              "%s:%zu: qid:%llu comes back after other qids (its list started "
                              "at line %zu); a list's lines must be consecutive",
                              path, lineno, (unsigned long long)row.qid, seen_at);
        /* The row is read already: its list starts at it. */
        if (st == FN_OK && builder_list(&b, b.n_items - 1) != FN_OK) st = nomem(err, path);
        cur = row.qid;
    }
    if (st == FN_OK && ferror(f)) st = fn_error_set(err, FN_ERR_IO, "reading %s failed", path);
    fclose(f);
    free(line);
    qid_set_free(&seen);
    if (st == FN_OK && b.n_items == 0)
        st = fn_error_set(err, FN_ERR_INVALID, "%s holds no items (no lines with a label)", path);
    if (st == FN_OK && groups) {
        uint64_t sum = 0;
        for (size_t i = 0; i < n_counts && st == FN_OK; i++) {
            if (counts[i] > UINT64_MAX - sum) {
                st = fn_error_set(err, FN_ERR_INVALID, "%s: the counts overflow", qpath);
                break;
            }
            sum += counts[i];
        }
        if (st == FN_OK && sum != b.n_items)
            st = fn_error_set(err, FN_ERR_INVALID,
                              "%s: the %zu group counts add up to %llu rows, but %s has %zu rows",
                              qpath, n_counts, (unsigned long long)sum, path, b.n_items);
        for (size_t i = 0, at = 0; i < n_counts && st == FN_OK; at += counts[i++])
            if (builder_list(&b, at) != FN_OK) st = nomem(err, path);
    }
    free(counts);
    free(qpath);
    if (st == FN_OK) st = builder_finish(&b, min_features, path, out, err);
    builder_free(&b);
    return st;
}

/* ---- TFRecord of tf.Example ---- */

/* The qid of one example as a key: int64 as 8 bytes, bytes as they are. */
static fn_status example_qid(const Tensorflow__Features *fs, fn_feature_kind *kind,
                             const uint8_t **key, size_t *len, uint8_t buf[8], fn_error *err)
{
    const Tensorflow__Feature *f = fn_features_get(fs, "qid");
    fn_feature_kind k = fn_feature_kind_of(f);
    if (fn_feature_size(f) == 0)
        return fn_error_set(err, FN_ERR_INVALID, "feature 'qid' is missing");
    if (k == FN_FEATURE_INT64) {
        uint64_t v = (uint64_t)f->int64_list->value[0];
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(v >> (8 * i));
        *key = buf;
        *len = 8;
    } else if (k == FN_FEATURE_BYTES) {
        *key = f->bytes_list->value[0].data;
        *len = f->bytes_list->value[0].len;
    } else {
        return fn_error_set(err, FN_ERR_INVALID, "feature 'qid' holds a %s, not int64 or bytes",
                            fn_feature_kind_name(k));
    }
    if (*kind == FN_FEATURE_NONE) *kind = k;
    if (k != *kind)
        return fn_error_set(err, FN_ERR_INVALID,
                            "feature 'qid' holds a %s here and a %s in the first example",
                            fn_feature_kind_name(k), fn_feature_kind_name(*kind));
    return FN_OK;
}

/* A qid for a message: the number, or the bytes when printable. */
static void show_qid(const uint8_t *key, size_t len, fn_feature_kind kind, char *out, size_t n)
{
    if (kind == FN_FEATURE_INT64) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) v |= (uint64_t)key[i] << (8 * i);
        snprintf(out, n, "%lld", (long long)v);
        return;
    }
    size_t i = 0;
    for (; i < len && i < TOKEN_SHOWN && key[i] >= 0x20 && key[i] < 0x7f; i++) {
    }
    if (i == len)
        snprintf(out, n, "'%.*s'", (int)len, (const char *)key);
    else
        snprintf(out, n, "(%zu bytes, not printable)", len);
}

/* The label and the features of one example into a row of b. */
static fn_status example_row(builder *b, const Tensorflow__Features *fs, const char *label_key,
                             const char *features_key, uint32_t min_features, int64_t *ref_len,
                             fn_error *err)
{
    double y;
    fn_status st = fn_features_first_number(fs, label_key, &y, err);
    if (st == FN_ERR_NOT_FOUND)
        return fn_error_set(err, FN_ERR_INVALID, "label feature '%s' is missing", label_key);
    if (st != FN_OK) return fn_error_prefix(err, "label");
    if (!is_finite_label(y))
        return fn_error_set(err, FN_ERR_INVALID,
                            "label '%s' is %g; it must be a finite number >= 0 (graded relevance)",
                            label_key, y);
    const Tensorflow__Feature *f = fn_features_get(fs, features_key);
    fn_feature_kind k = fn_feature_kind_of(f);
    if (!f || k == FN_FEATURE_NONE)
        return fn_error_set(err, FN_ERR_INVALID, "features '%s' are missing", features_key);
    if (k != FN_FEATURE_FLOAT)
        return fn_error_set(err, FN_ERR_INVALID, "features '%s' hold a %s, not a float_list",
                            features_key, fn_feature_kind_name(k));
    size_t n = fn_feature_size(f);
    if (n > UINT32_MAX)
        return fn_error_set(err, FN_ERR_INVALID, "features '%s' hold %zu values: too many",
                            features_key, n);
    /* Lists up to min_features are padded; the longer ones must all be as long. */
    if (!(min_features > 0 && n <= min_features)) {
        if (*ref_len < 0) {
            *ref_len = (int64_t)n;
        } else if ((int64_t)n != *ref_len) {
            return fn_error_set(err, FN_ERR_INVALID,
                                "features '%s' hold %zu values; the examples before hold %lld",
                                features_key, n, (long long)*ref_len);
        }
    }
    if (builder_row(b, (float)y) != FN_OK) return FN_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        float v = f->float_list->value[i];
        if (!isfinite(v))
            return fn_error_set(err, FN_ERR_INVALID, "features '%s' value %zu is not finite",
                                features_key, i);
        if (builder_value(b, 0, v) != FN_OK) return FN_ERR_NOMEM;
    }
    if (n > b->width) b->width = (uint32_t)n;
    return FN_OK;
}

fn_status fn_listset_read_tfrecord(const char *path, const char *label_key,
                                   const char *features_key, uint32_t min_features,
                                   fn_listset **out, fn_error *err)
{
    *out = NULL;
    if (!label_key || !features_key)
        return fn_error_set(err, FN_ERR_INVALID, "reading %s: no label or features key", path);
    fn_tfrecord_reader *r;
    fn_status st = fn_tfrecord_reader_open(path, NULL, &r, err);
    if (st != FN_OK) return st;
    builder b = {.dense = 1};
    qid_set seen = {0};
    fn_buf cur = FN_BUF_INIT;
    fn_feature_kind qid_kind = FN_FEATURE_NONE;
    int64_t ref_len = -1;
    fn_arena *arena = fn_arena_new(0);
    if (!arena) st = nomem(err, path);
    for (size_t rec = 0; st == FN_OK; rec++) {
        const uint8_t *data;
        size_t len;
        st = fn_tfrecord_read(r, &data, &len, err);
        if (st == FN_END) {
            st = FN_OK;
            break;
        }
        if (st != FN_OK) break; /* the reader names the file and the offset */
        fn_arena_reset(arena);
        Tensorflow__Example *ex;
        const uint8_t *key = NULL;
        size_t klen = 0;
        uint8_t kbuf[8];
        st = fn_example_decode_arena(data, len, arena, &ex, err);
        const Tensorflow__Features *fs = st == FN_OK ? fn_example_features(ex) : NULL;
        if (st == FN_OK) st = example_qid(fs, &qid_kind, &key, &klen, kbuf, err);
        if (st == FN_OK)
            st = example_row(&b, fs, label_key, features_key, min_features, &ref_len, err);
        if (st == FN_ERR_NOMEM) st = nomem(err, path);
        if (st == FN_OK && !(rec > 0 && klen == cur.len && memcmp(key, cur.data, klen) == 0)) {
            size_t seen_at;
            st = qid_set_add(&seen, key, klen, rec + 1, &seen_at, err);
            if (st == FN_OK && seen_at) {
                char shown[TOKEN_SHOWN + 32];
                show_qid(key, klen, qid_kind, shown, sizeof shown);
                st = fn_error_set(err, FN_ERR_INVALID,
                                  "qid %s comes back after other qids (its list started at "
                                  "record %zu); a list's examples must be consecutive",
                                  shown, seen_at - 1);
            }
            if (st == FN_OK && builder_list(&b, b.n_items - 1) != FN_OK) st = nomem(err, path);
            fn_buf_reset(&cur);
            fn_buf_append(&cur, key, klen);
            if (st == FN_OK && cur.oom) st = nomem(err, path);
        }
        if (st != FN_OK && st != FN_ERR_NOMEM)
            fn_error_prefix(err, "%s: record %zu at byte offset %llu", path, rec,
                            (unsigned long long)fn_tfrecord_reader_record_offset(r));
    }
    fn_tfrecord_reader_close(r);
    fn_arena_free(arena);
    fn_buf_free(&cur);
    qid_set_free(&seen);
    if (st == FN_OK && b.n_items == 0)
        st = fn_error_set(err, FN_ERR_INVALID, "%s holds no examples", path);
    if (st == FN_OK) st = builder_finish(&b, min_features, path, out, err);
    builder_free(&b);
    return st;
}
