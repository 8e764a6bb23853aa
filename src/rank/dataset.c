/*
 * dataset.c - training and evaluation data in memory: libffm text or
 * TFRecord files of tf.Example through a feature-column spec, both turned
 * into the same CSR of (field, index, value) triples.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "features/example.h"
#include "features/tfrecord.h"
#include "rank.h"

typedef struct builder {
    fn_dataset *d;
    size_t cap_rows, cap_triples;
} builder;

static fn_status builder_new(builder *b, fn_error *err)
{
    b->d = calloc(1, sizeof *b->d);
    b->cap_rows = b->cap_triples = 0;
    if (!b->d) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    b->d->offsets = malloc(sizeof *b->d->offsets);
    if (!b->d->offsets) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    b->d->offsets[0] = 0;
    return FN_OK;
}

/* Appends one example: its label and triples. */
static fn_status builder_add(builder *b, float label, const fn_feature_triple *t, size_t n,
                             fn_error *err)
{
    fn_dataset *d = b->d;
    if (d->n + 1 >= b->cap_rows) {
        size_t cap = b->cap_rows ? b->cap_rows * 2 : 1024;
        float *l = realloc(d->labels, cap * sizeof *l);
        if (l) d->labels = l;
        uint64_t *o = realloc(d->offsets, (cap + 1) * sizeof *o);
        if (o) d->offsets = o;
        if (!l || !o) return fn_error_set(err, FN_ERR_NOMEM, "out of memory reading examples");
        b->cap_rows = cap;
    }
    uint64_t used = d->offsets[d->n];
    if (used + n > b->cap_triples) {
        size_t cap = b->cap_triples ? b->cap_triples * 2 : 16384;
        while (cap < used + n) cap *= 2;
        fn_feature_triple *tr = realloc(d->triples, cap * sizeof *tr);
        if (!tr) return fn_error_set(err, FN_ERR_NOMEM, "out of memory reading examples");
        d->triples = tr;
        b->cap_triples = cap;
    }
    if (n) memcpy(d->triples + used, t, n * sizeof *t);
    for (size_t i = 0; i < n; i++) {
        if (t[i].field + 1 > d->n_fields) d->n_fields = t[i].field + 1;
        if ((uint64_t)t[i].index + 1 > d->n_features) d->n_features = (uint64_t)t[i].index + 1;
    }
    d->labels[d->n] = label;
    d->offsets[++d->n] = used + n;
    return FN_OK;
}

void fn_dataset_free(fn_dataset *d)
{
    if (!d) return;
    free(d->labels);
    free(d->offsets);
    free(d->triples);
    free(d);
}

/* Parses one libffm line into triples; FN_ERR_INVALID names the token. */
static fn_status parse_line(char *line, float *label, fn_feature_triple **t, size_t *n, size_t *cap,
                            const char *path, size_t lineno, fn_error *err)
{
    char *save = NULL, *tok = strtok_r(line, " \t", &save), *end;
    errno = 0;
    double y = strtod(tok, &end);
    if (*end || errno || !isfinite(y))
        return fn_error_set(err, FN_ERR_INVALID, "%s: line %zu: label '%s' is not a number", path,
                            lineno, tok);
    *label = y > 0 ? 1.0f : 0.0f; /* libffm's rule: positive when > 0, else negative */
    *n = 0;
    int col = 1;
    while ((tok = strtok_r(NULL, " \t", &save))) {
        col++;
        unsigned long f, i;
        char *p = tok;
        errno = 0;
        f = strtoul(p, &end, 10);
        if (end == p || *end != ':' || errno || f > UINT32_MAX - 1) goto bad;
        p = end + 1;
        i = strtoul(p, &end, 10);
        if (end == p || *end != ':' || errno || i > UINT32_MAX - 1) goto bad;
        p = end + 1;
        float v = strtof(p, &end);
        if (end == p || *end || errno || !isfinite(v)) goto bad; /* inf would poison training */
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            fn_feature_triple *g = realloc(*t, *cap * sizeof *g);
            if (!g) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
            *t = g;
        }
        (*t)[(*n)++] = (fn_feature_triple){(uint32_t)f, (uint32_t)i, v};
    }
    return FN_OK;
bad:
    return fn_error_set(err, FN_ERR_INVALID, "%s: line %zu: token %d '%s' is not field:index:value",
                        path, lineno, col, tok);
}

fn_status fn_dataset_read_libffm(const char *path, fn_dataset **out, fn_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fn_error_set(err, errno == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO,
                            "cannot open %s: %s", path, strerror(errno));
    builder b;
    fn_status st = builder_new(&b, err);
    char *line = NULL;
    size_t cap = 0, tcap = 0, lineno = 0;
    fn_feature_triple *t = NULL;
    ssize_t len;
    while (st == FN_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        size_t s = strspn(line, " \t");
        if (line[s] == '\0') continue; /* blank lines hold no example */
        float y = 0;
        size_t n = 0;
        st = parse_line(line + s, &y, &t, &n, &tcap, path, lineno, err);
        if (st == FN_OK) st = builder_add(&b, y, t, n, err);
    }
    if (st == FN_OK && ferror(f)) st = fn_error_set(err, FN_ERR_IO, "reading %s failed", path);
    fclose(f);
    free(line);
    free(t);
    if (st != FN_OK) {
        fn_dataset_free(b.d);
        return st;
    }
    *out = b.d;
    return FN_OK;
}

static fn_status example_label(const Tensorflow__Example *ex, const fn_label_rule *rule, float *out,
                               fn_error *err)
{
    double v;
    fn_status st = fn_features_first_number(fn_example_features(ex), rule->key, &v, err);
    if (st == FN_ERR_NOT_FOUND) /* a missing label is bad input, not a lookup miss */
        return fn_error_set(err, FN_ERR_INVALID, "label feature '%s' is missing", rule->key);
    if (st != FN_OK) return fn_error_prefix(err, "label");
    if (!isfinite(v))
        return fn_error_set(err, FN_ERR_INVALID, "label feature '%s' holds %g", rule->key, v);
    if (!rule->graded) {
        *out = v > 0.5 ? 1.0f : 0.0f;
        return FN_OK;
    }
    double y = (v - rule->lo) / (rule->hi - rule->lo);
    *out = y <= 0 ? 0.0f : y >= 1 ? 1.0f : (float)y;
    return FN_OK;
}

fn_status fn_dataset_read_tfrecord(const char *path, const fn_columns *spec,
                                   const fn_label_rule *label, fn_dataset **out, fn_error *err)
{
    if (label->graded && !(label->lo < label->hi))
        return fn_error_set(err, FN_ERR_INVALID, "graded label '%s': range [%g, %g] is empty",
                            label->key, label->lo, label->hi);
    fn_tfrecord_reader *r;
    fn_status st = fn_tfrecord_reader_open(path, NULL, &r, err);
    if (st != FN_OK) return st;
    builder b;
    fn_arena *arena = fn_arena_new(0);
    fn_column_output o = {0};
    st = arena ? builder_new(&b, err) : fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    for (size_t row = 0; st == FN_OK; row++) {
        const uint8_t *data;
        size_t len;
        st = fn_tfrecord_read(r, &data, &len, err);
        if (st == FN_END) {
            st = FN_OK;
            break;
        }
        if (st != FN_OK) break; /* named by the reader */
        Tensorflow__Example *ex;
        fn_arena_reset(arena);
        float y = 0;
        st = fn_example_decode_arena(data, len, arena, &ex, err);
        if (st == FN_OK) st = example_label(ex, label, &y, err);
        if (st == FN_OK) {
            fn_column_sources src;
            for (int s = 0; s < FN_SOURCE_COUNT; s++) src.src[s] = fn_example_features(ex);
            st = fn_columns_transform(spec, &src, FN_SOURCES_ALL, &o, err);
        }
        if (st == FN_OK) st = builder_add(&b, y, o.triples, o.n, err);
        if (st != FN_OK) /* the reader's own errors name the file already */
            fn_error_prefix(err, "%s: record %zu at byte offset %llu", path, row,
                            (unsigned long long)fn_tfrecord_reader_record_offset(r));
    }
    fn_column_output_free(&o);
    fn_arena_free(arena);
    fn_tfrecord_reader_close(r);
    if (st != FN_OK) {
        if (arena) fn_dataset_free(b.d);
        return st;
    }
    /* The spec fixes the index space, whatever this file happens to use. */
    b.d->n_fields = (uint32_t)fn_columns_count(spec);
    b.d->n_features = fn_columns_num_features(spec);
    *out = b.d;
    return FN_OK;
}
