/*
 * columns.c - feature-column specs: parsing and validation, the canonical
 * form and its hash, and the transform from tf.Features to triples.
 *
 * The transform sits on the serving path (once per candidate), so a parsed
 * spec keeps everything it needs precomputed: global offsets, vocabulary hash
 * tables, and the key each column reads.
 */
#include "columns.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/file.h"
#include "common/sha256.h"
#include "example.h"

#define MAX_CROSS_COMBINATIONS 4096
#define CROSS_SEPARATOR        "_X_"

/* Vocabulary lookup: open addressing over (hash, position). */
typedef struct vocab {
    char **words;
    size_t *lens;
    size_t n;
    uint32_t *slots; /* position + 1, 0 = empty */
    uint64_t *slot_hash;
    size_t nslots; /* power of two, at least twice n */
} vocab;

typedef struct column {
    char *name;
    fn_column_type type;
    unsigned sources; /* bitmask of sources read */
    /* Keys read and where from (-1: the first source that has the key). */
    char **keys;
    int *key_source;
    size_t nkeys;
    uint32_t offset, size;
    size_t dense_offset;

    int has_default;
    double default_num; /* numeric, bucketized, identity */
    char *default_str;  /* hash, vocabulary */

    uint32_t shape; /* numeric */
    int has_norm;
    double mean, std;

    double *bounds; /* bucketized */
    size_t nbounds;

    uint64_t buckets; /* hash, crossed, identity; vocabulary: oov buckets */
    vocab voc;

    uint32_t dim; /* embedding */
} column;

struct fn_columns {
    column *cols;
    size_t n;
    uint64_t num_features;
    size_t dense_dim;
    char *canonical;
    char sha256[65];
};

static const char *type_names[] = {
    "numeric", "bucketized", "categorical_hash", "categorical_vocabulary", "categorical_identity",
    "crossed", "embedding"};
static const char *source_names[] = {"user", "item", "context", "derived"};

const char *fn_column_type_name(fn_column_type t)
{
    return (unsigned)t < sizeof type_names / sizeof *type_names ? type_names[t] : "unknown";
}

const char *fn_column_source_name(fn_column_source s)
{
    return (unsigned)s < FN_SOURCE_COUNT ? source_names[s] : "unknown";
}

/* ---- vocabulary -------------------------------------------------------------- */

static uint64_t hash_bytes(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

static long vocab_find(const vocab *v, const char *s, size_t n, uint64_t h)
{
    if (!v->nslots) return -1;
    for (size_t i = h & (v->nslots - 1);; i = (i + 1) & (v->nslots - 1)) {
        uint32_t pos = v->slots[i];
        if (!pos) return -1;
        if (v->slot_hash[i] == h && v->lens[pos - 1] == n && memcmp(v->words[pos - 1], s, n) == 0)
            return pos - 1;
    }
}

/* Builds the table; returns the position of a duplicate word, or -1. */
static long vocab_index(vocab *v)
{
    size_t ns = 16;
    while (ns < 2 * v->n) ns *= 2;
    v->nslots = ns;
    v->slots = calloc(ns, sizeof *v->slots);
    v->slot_hash = calloc(ns, sizeof *v->slot_hash);
    if (!v->slots || !v->slot_hash) return -2;
    for (size_t w = 0; w < v->n; w++) {
        uint64_t h = hash_bytes(v->words[w], v->lens[w]);
        if (vocab_find(v, v->words[w], v->lens[w], h) >= 0) return (long)w;
        size_t i = h & (ns - 1);
        while (v->slots[i]) i = (i + 1) & (ns - 1);
        v->slots[i] = (uint32_t)w + 1;
        v->slot_hash[i] = h;
    }
    return -1;
}

static void vocab_free(vocab *v)
{
    for (size_t i = 0; i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->lens);
    free(v->slots);
    free(v->slot_hash);
}

/* ---- spec parsing -------------------------------------------------------------- */

typedef struct parser {
    fn_error *err;
    const char *base_dir;
    size_t col;        /* column being parsed */
    const char *cname; /* its name, once known */
} parser;

static fn_status spec_error(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static fn_status spec_error(parser *p, const char *fmt, ...)
{
    char what[FN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->cname)
        return fn_error_set(p->err, FN_ERR_INVALID, "feature spec: column '%s' (#%zu): %s",
                            p->cname, p->col, what);
    return fn_error_set(p->err, FN_ERR_INVALID, "feature spec: column #%zu: %s", p->col, what);
}

static fn_status check_fields(parser *p, json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, k) == 0) ok = 1;
        if (!ok) return spec_error(p, "unknown field '%s'", k);
    }
    return FN_OK;
}

static fn_status get_string(parser *p, json_t *obj, const char *field, int required, char **out)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        if (required) return spec_error(p, "missing field '%s'", field);
        return FN_OK;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return spec_error(p, "'%s' must be a non-empty string", field);
    if (memchr(json_string_value(v), '\0', json_string_length(v)))
        return spec_error(p, "'%s' holds a NUL character", field);
    *out = strdup(json_string_value(v));
    return *out ? FN_OK : fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
}

static fn_status get_number(parser *p, json_t *obj, const char *field, int required, double *out,
                            int *present)
{
    json_t *v = json_object_get(obj, field);
    if (present) *present = v != NULL;
    if (!v) return required ? spec_error(p, "missing field '%s'", field) : FN_OK;
    if (!json_is_number(v)) return spec_error(p, "'%s' must be a number", field);
    *out = json_number_value(v);
    if (!isfinite(*out)) return spec_error(p, "'%s' must be finite", field);
    return FN_OK;
}

/* A positive whole number no larger than max. */
static fn_status get_count(parser *p, json_t *obj, const char *field, int required, uint64_t max,
                           uint64_t *out)
{
    json_t *v = json_object_get(obj, field);
    if (!v) return required ? spec_error(p, "missing field '%s'", field) : FN_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || (uint64_t)json_integer_value(v) > max)
        return spec_error(p, "'%s' must be a whole number from 1 to %llu", field,
                          (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return FN_OK;
}

static fn_status parse_source(parser *p, const char *s, int *out)
{
    for (int i = 0; i < FN_SOURCE_COUNT; i++)
        if (strcmp(s, source_names[i]) == 0) {
            *out = i;
            return FN_OK;
        }
    return spec_error(p, "unknown source '%s' (expected user, item, context or derived)", s);
}

/* A JSON string or integer as the text it stands for (vocabulary words, defaults). */
static char *word_of(json_t *v)
{
    if (json_is_string(v)) return strdup(json_string_value(v));
    if (json_is_integer(v)) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        return strdup(tmp);
    }
    return NULL;
}

static fn_status add_word(parser *p, vocab *v, const char *w, size_t n)
{
    char **words = realloc(v->words, (v->n + 1) * sizeof *words);
    if (!words) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
    v->words = words;
    size_t *lens = realloc(v->lens, (v->n + 1) * sizeof *lens);
    if (!lens) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
    v->lens = lens;
    char *copy = malloc(n + 1);
    if (!copy) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
    memcpy(copy, w, n);
    copy[n] = '\0';
    v->words[v->n] = copy;
    v->lens[v->n++] = n;
    return FN_OK;
}

static fn_status load_vocab_file(parser *p, const char *file, vocab *v)
{
    char *path;
    if (file[0] == '/' || !p->base_dir) {
        path = strdup(file);
    } else {
        size_t n = strlen(p->base_dir) + strlen(file) + 2;
        path = malloc(n);
        if (path) snprintf(path, n, "%s/%s", p->base_dir, file);
    }
    if (!path) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
    fn_buf b = FN_BUF_INIT;
    fn_error ferr = {0};
    fn_status st = fn_file_read_all(path, (size_t)1 << 30, &b, &ferr);
    if (st != FN_OK) {
        st = spec_error(p, "vocabulary_file: %s", ferr.msg);
        goto done;
    }
    size_t line = 0;
    for (size_t i = 0; i < b.len;) {
        line++;
        const char *s = b.data + i;
        const char *nl = memchr(s, '\n', b.len - i);
        size_t n = nl ? (size_t)(nl - s) : b.len - i;
        i += n + (nl ? 1 : 0);
        if (n && s[n - 1] == '\r') n--;
        if (n == 0) {
            st = spec_error(p, "vocabulary_file %s: line %zu is empty", path, line);
            goto done;
        }
        if ((st = add_word(p, v, s, n)) != FN_OK) goto done;
    }
    if (v->n == 0) st = spec_error(p, "vocabulary_file %s is empty", path);
done:
    fn_buf_free(&b);
    free(path);
    return st;
}

/* Reads "vocabulary" or "vocabulary_file"; rewrites the canonical copy to an inline list. */
static fn_status parse_vocab(parser *p, json_t *obj, json_t *canon, column *c)
{
    json_t *inl = json_object_get(obj, "vocabulary");
    json_t *file = json_object_get(obj, "vocabulary_file");
    if (!!inl == !!file)
        return spec_error(p, "give exactly one of 'vocabulary' and 'vocabulary_file'");
    fn_status st;
    if (inl) {
        if (!json_is_array(inl) || json_array_size(inl) == 0)
            return spec_error(p, "'vocabulary' must be a non-empty array");
        size_t i;
        json_t *w;
        json_array_foreach(inl, i, w)
        {
            char *s = word_of(w);
            if (!s) return spec_error(p, "vocabulary entry %zu must be a string or integer", i);
            st = add_word(p, &c->voc, s, strlen(s));
            free(s);
            if (st != FN_OK) return st;
        }
    } else {
        if (!json_is_string(file)) return spec_error(p, "'vocabulary_file' must be a string");
        if ((st = load_vocab_file(p, json_string_value(file), &c->voc)) != FN_OK) return st;
        json_t *arr = json_array();
        for (size_t i = 0; i < c->voc.n; i++)
            json_array_append_new(arr, json_stringn(c->voc.words[i], c->voc.lens[i]));
        json_object_del(canon, "vocabulary_file");
        json_object_set_new(canon, "vocabulary", arr);
    }
    long dup = vocab_index(&c->voc);
    if (dup == -2) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
    if (dup >= 0) return spec_error(p, "vocabulary entry '%s' appears twice", c->voc.words[dup]);
    return FN_OK;
}

static fn_status set_single_key(parser *p, json_t *obj, column *c)
{
    char *source = NULL;
    fn_status st = get_string(p, obj, "source", 1, &source);
    if (st != FN_OK) return st;
    int s = 0;
    st = parse_source(p, source, &s);
    free(source);
    if (st != FN_OK) return st;
    c->keys = calloc(1, sizeof *c->keys);
    c->key_source = calloc(1, sizeof *c->key_source);
    if (!c->keys || !c->key_source) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
    c->nkeys = 1;
    c->key_source[0] = s;
    c->sources = 1u << s;
    return get_string(p, obj, "key", 1, &c->keys[0]);
}

static fn_status parse_crossed_keys(parser *p, json_t *obj, column *c)
{
    json_t *keys = json_object_get(obj, "keys");
    if (!json_is_array(keys) || json_array_size(keys) < 2)
        return spec_error(p, "'keys' must be an array of at least two key names");
    json_t *sources = json_object_get(obj, "sources");
    json_t *source = json_object_get(obj, "source");
    if (sources && source) return spec_error(p, "give 'source' or 'sources', not both");
    if (sources && (!json_is_array(sources) || json_array_size(sources) != json_array_size(keys)))
        return spec_error(p, "'sources' must be an array as long as 'keys'");
    c->nkeys = json_array_size(keys);
    c->keys = calloc(c->nkeys, sizeof *c->keys);
    c->key_source = calloc(c->nkeys, sizeof *c->key_source);
    if (!c->keys || !c->key_source) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->nkeys; i++) {
        json_t *k = json_array_get(keys, i);
        if (!json_is_string(k) || json_string_length(k) == 0)
            return spec_error(p, "keys[%zu] must be a non-empty string", i);
        c->keys[i] = strdup(json_string_value(k));
        if (!c->keys[i]) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
        json_t *s = sources ? json_array_get(sources, i) : source;
        c->key_source[i] = -1;
        if (s) {
            if (!json_is_string(s)) return spec_error(p, "sources must be strings");
            fn_status st = parse_source(p, json_string_value(s), &c->key_source[i]);
            if (st != FN_OK) return st;
            c->sources |= 1u << c->key_source[i];
        } else {
            c->sources = FN_SOURCES_ALL; /* looked up in every source */
        }
    }
    return FN_OK;
}

static fn_status parse_column(parser *p, json_t *obj, json_t *canon, column *c)
{
    static const char *const common_fields[] = {"name", "type",    "source",
                                                "key",  "default", "description"};
    static const char *const numeric[] = {"name",        "type",       "source", "key", "default",
                                          "description", "normalizer", "shape",  NULL};
    static const char *const bucketized[] = {"name",    "type",        "source",     "key",
                                             "default", "description", "boundaries", NULL};
    static const char *const hashf[] = {"name",    "type",        "source",           "key",
                                        "default", "description", "hash_bucket_size", NULL};
    static const char *const vocabf[] = {"name",
                                         "type",
                                         "source",
                                         "key",
                                         "default",
                                         "description",
                                         "vocabulary",
                                         "vocabulary_file",
                                         "num_oov_buckets",
                                         NULL};
    static const char *const identity[] = {"name",    "type",        "source",      "key",
                                           "default", "description", "num_buckets", NULL};
    static const char *const crossed[] = {
        "name", "type", "keys", "source", "sources", "description", "hash_bucket_size", NULL};
    static const char *const embedding[] = {"name",        "type",      "source", "key",
                                            "description", "dimension", NULL};
    (void)common_fields;

    if (!json_is_object(obj)) return spec_error(p, "must be an object");
    fn_status st = get_string(p, obj, "name", 1, &c->name);
    if (st != FN_OK) return st;
    p->cname = c->name;
    char *type = NULL;
    if ((st = get_string(p, obj, "type", 1, &type)) != FN_OK) return st;
    int t = -1;
    for (size_t i = 0; i < sizeof type_names / sizeof *type_names; i++)
        if (strcmp(type, type_names[i]) == 0) t = (int)i;
    if (t < 0) {
        st = spec_error(p,
                        "unknown type '%s' (expected numeric, bucketized, categorical_hash, "
                        "categorical_vocabulary, categorical_identity, crossed or embedding)",
                        type);
        free(type);
        return st;
    }
    free(type);
    c->type = (fn_column_type)t;
    static const char *const *allowed[] = {numeric,  bucketized, hashf,    vocabf,
                                           identity, crossed,    embedding};
    if ((st = check_fields(p, obj, allowed[t])) != FN_OK) return st;
    if (c->type == FN_COLUMN_CROSSED) {
        st = parse_crossed_keys(p, obj, c);
    } else {
        st = set_single_key(p, obj, c);
    }
    if (st != FN_OK) return st;

    json_t *def = json_object_get(obj, "default");
    uint64_t u = 0;
    switch (c->type) {
    case FN_COLUMN_NUMERIC: {
        json_t *norm = json_object_get(obj, "normalizer");
        if (norm) {
            static const char *const nf[] = {"mean", "std", NULL};
            if (!json_is_object(norm)) return spec_error(p, "'normalizer' must be an object");
            if ((st = check_fields(p, norm, nf)) != FN_OK) return st;
            if ((st = get_number(p, norm, "mean", 1, &c->mean, NULL)) != FN_OK) return st;
            if ((st = get_number(p, norm, "std", 1, &c->std, NULL)) != FN_OK) return st;
            if (!(c->std > 0)) return spec_error(p, "normalizer std must be positive");
            c->has_norm = 1;
        }
        u = 1;
        if ((st = get_count(p, obj, "shape", 0, 1u << 20, &u)) != FN_OK) return st;
        c->shape = (uint32_t)u;
        c->size = c->shape;
        if ((st = get_number(p, obj, "default", 0, &c->default_num, &c->has_default)) != FN_OK)
            return st;
        break;
    }
    case FN_COLUMN_BUCKETIZED: {
        json_t *b = json_object_get(obj, "boundaries");
        if (!json_is_array(b) || json_array_size(b) == 0)
            return spec_error(p, "'boundaries' must be a non-empty array of numbers");
        c->nbounds = json_array_size(b);
        c->bounds = calloc(c->nbounds, sizeof *c->bounds);
        if (!c->bounds) return fn_error_set(p->err, FN_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < c->nbounds; i++) {
            json_t *v = json_array_get(b, i);
            if (!json_is_number(v)) return spec_error(p, "boundaries[%zu] must be a number", i);
            c->bounds[i] = json_number_value(v);
            if (i && !(c->bounds[i] > c->bounds[i - 1]))
                return spec_error(p, "boundaries must be strictly increasing (%g then %g)",
                                  c->bounds[i - 1], c->bounds[i]);
        }
        c->size = (uint32_t)c->nbounds + 1;
        if ((st = get_number(p, obj, "default", 0, &c->default_num, &c->has_default)) != FN_OK)
            return st;
        break;
    }
    case FN_COLUMN_HASH:
    case FN_COLUMN_CROSSED:
        if ((st = get_count(p, obj, "hash_bucket_size", 1, UINT32_MAX, &c->buckets)) != FN_OK)
            return st;
        c->size = (uint32_t)c->buckets;
        if (def) {
            if (!(c->default_str = word_of(def)))
                return spec_error(p, "'default' must be a string or integer");
            c->has_default = 1;
        }
        break;
    case FN_COLUMN_VOCABULARY:
        if ((st = parse_vocab(p, obj, canon, c)) != FN_OK) return st;
        c->buckets = 0;
        if (json_object_get(obj, "num_oov_buckets")) {
            json_t *v = json_object_get(obj, "num_oov_buckets");
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > (json_int_t)UINT32_MAX)
                return spec_error(p, "'num_oov_buckets' must be a whole number >= 0");
            c->buckets = (uint64_t)json_integer_value(v);
        }
        if (c->voc.n + c->buckets > UINT32_MAX) return spec_error(p, "too many indices");
        c->size = (uint32_t)(c->voc.n + c->buckets);
        if (def) {
            if (!(c->default_str = word_of(def)))
                return spec_error(p, "'default' must be a string or integer");
            c->has_default = 1;
        }
        break;
    case FN_COLUMN_IDENTITY:
        if ((st = get_count(p, obj, "num_buckets", 1, UINT32_MAX, &c->buckets)) != FN_OK) return st;
        c->size = (uint32_t)c->buckets;
        if (def) {
            if (!json_is_integer(def) || json_integer_value(def) < 0 ||
                (uint64_t)json_integer_value(def) >= c->buckets)
                return spec_error(p, "'default' must be a whole number below num_buckets");
            c->default_num = (double)json_integer_value(def);
            c->has_default = 1;
        }
        break;
    case FN_COLUMN_EMBEDDING:
        if ((st = get_count(p, obj, "dimension", 1, 1u << 16, &u)) != FN_OK) return st;
        c->dim = (uint32_t)u;
        c->size = c->dim;
        break;
    }
    return FN_OK;
}

/* Rewrites every integer as a real, so 34 and 34.0 hash alike. */
static void canon_numbers(json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            if (json_is_integer(x)) {
                json_object_set_new(v, k, json_real((double)json_integer_value(x)));
            } else {
                canon_numbers(x);
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (json_is_integer(x)) {
                json_array_set_new(v, i, json_real((double)json_integer_value(x)));
            } else {
                canon_numbers(x);
            }
        }
    }
}

static void column_free(column *c)
{
    free(c->name);
    for (size_t i = 0; i < c->nkeys; i++) free(c->keys[i]);
    free(c->keys);
    free(c->key_source);
    free(c->default_str);
    free(c->bounds);
    vocab_free(&c->voc);
}

void fn_columns_free(fn_columns *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) column_free(&c->cols[i]);
    free(c->cols);
    free(c->canonical);
    free(c);
}

fn_status fn_columns_parse(const char *json, size_t n, const char *base_dir, fn_columns **out,
                           fn_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fn_error_set(err, FN_ERR_INVALID,
                            "feature spec: invalid JSON at line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    fn_columns *c = calloc(1, sizeof *c);
    json_t *canon = json_deep_copy(root);
    parser p = {.err = err, .base_dir = base_dir};
    fn_status st = FN_OK;
    if (!c || !canon) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!json_is_object(root)) {
        st = fn_error_set(err, FN_ERR_INVALID, "feature spec: top level must be an object");
        goto done;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "columns") && strcmp(k, "name") && strcmp(k, "description")) {
            st = fn_error_set(err, FN_ERR_INVALID, "feature spec: unknown top-level field '%s'", k);
            goto done;
        }
    }
    json_t *cols = json_object_get(root, "columns");
    json_t *ccols = json_object_get(canon, "columns");
    if (!json_is_array(cols) || json_array_size(cols) == 0) {
        st = fn_error_set(err, FN_ERR_INVALID, "feature spec: 'columns' must be a non-empty array");
        goto done;
    }
    c->cols = calloc(json_array_size(cols), sizeof *c->cols);
    if (!c->cols) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < json_array_size(cols); i++) {
        p.col = i;
        p.cname = NULL;
        column *col = &c->cols[c->n++];
        st = parse_column(&p, json_array_get(cols, i), json_array_get(ccols, i), col);
        if (st != FN_OK) goto done;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->cols[j].name, col->name) == 0) {
                st = spec_error(&p, "name used twice (also column #%zu)", j);
                goto done;
            }
        col->offset = (uint32_t)offset;
        offset += col->size;
        if (offset > UINT32_MAX) {
            st = spec_error(&p, "the columns need more than 2^32 indices in all");
            goto done;
        }
        if (col->type == FN_COLUMN_EMBEDDING) {
            col->dense_offset = c->dense_dim;
            c->dense_dim += col->dim;
        }
    }
    c->num_features = offset;
    canon_numbers(canon);
    c->canonical = json_dumps(canon, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII |
                                         JSON_REAL_PRECISION(17));
    if (!c->canonical) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto done;
    }
    fn_sha256_hex(c->canonical, strlen(c->canonical), c->sha256);
done:
    json_decref(root);
    json_decref(canon);
    if (st != FN_OK) {
        fn_columns_free(c);
        return st;
    }
    *out = c;
    return FN_OK;
}

fn_status fn_columns_load(const char *path, fn_columns **out, fn_error *err)
{
    fn_buf b = FN_BUF_INIT;
    fn_status st = fn_file_read_all(path, (size_t)64 << 20, &b, err);
    if (st != FN_OK) {
        fn_buf_free(&b);
        return st;
    }
    char *dir = strdup(path);
    if (!dir) {
        fn_buf_free(&b);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        if (slash == dir) strcpy(dir, "/");
    }
    st = fn_columns_parse(b.data ? b.data : "", b.len, slash ? dir : ".", out, err);
    if (st != FN_OK) fn_error_prefix(err, "%s", path);
    free(dir);
    fn_buf_free(&b);
    return st;
}

/* ---- accessors ------------------------------------------------------------------- */

size_t fn_columns_count(const fn_columns *c)
{
    return c->n;
}

const char *fn_columns_name(const fn_columns *c, size_t col)
{
    return c->cols[col].name;
}

fn_column_type fn_columns_type(const fn_columns *c, size_t col)
{
    return c->cols[col].type;
}

uint32_t fn_columns_offset(const fn_columns *c, size_t col)
{
    return c->cols[col].offset;
}

uint32_t fn_columns_size(const fn_columns *c, size_t col)
{
    return c->cols[col].size;
}

unsigned fn_columns_sources(const fn_columns *c, size_t col)
{
    return c->cols[col].sources;
}

uint64_t fn_columns_num_features(const fn_columns *c)
{
    return c->num_features;
}

size_t fn_columns_dense_dim(const fn_columns *c)
{
    return c->dense_dim;
}

size_t fn_columns_dense_offset(const fn_columns *c, size_t col)
{
    return c->cols[col].dense_offset;
}

long fn_columns_find(const fn_columns *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->cols[i].name, name) == 0) return (long)i;
    return -1;
}

const char *fn_columns_sha256(const fn_columns *c)
{
    return c->sha256;
}

const char *fn_columns_canonical(const fn_columns *c)
{
    return c->canonical;
}

/* ---- transform ------------------------------------------------------------------- */

void fn_column_output_free(fn_column_output *o)
{
    free(o->triples);
    free(o->dense);
    memset(o, 0, sizeof *o);
}

static fn_status emit(fn_column_output *o, uint32_t field, uint32_t index, float value,
                      fn_error *err)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        fn_feature_triple *t = realloc(o->triples, cap * sizeof *t);
        if (!t) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        o->triples = t;
        o->cap = cap;
    }
    o->triples[o->n++] = (fn_feature_triple){field, index, value};
    return FN_OK;
}

/* Gives each of the last k triples the value 1/k (multi-valued categorical keys). */
static void spread(fn_column_output *o, size_t k)
{
    for (size_t i = o->n - k; i < o->n; i++) o->triples[i].value = 1.0f / (float)k;
}

static const Tensorflow__Feature *lookup(const fn_column_sources *src, int source, const char *key)
{
    if (source >= 0) return fn_features_get(src->src[source], key);
    for (int s = 0; s < FN_SOURCE_COUNT; s++) {
        const Tensorflow__Feature *f = fn_features_get(src->src[s], key);
        if (f) return f;
    }
    return NULL;
}

static fn_status wrong_type(const column *c, const char *key, fn_feature_kind have,
                            const char *want, fn_error *err)
{
    return fn_error_set(err, FN_ERR_INVALID,
                        "column '%s': feature '%s' holds a %s where %s is expected", c->name, key,
                        fn_feature_kind_name(have), want);
}

/* The i-th numeric value of a float or int64 feature. */
static double num_at(const Tensorflow__Feature *f, size_t i)
{
    return fn_feature_kind_of(f) == FN_FEATURE_FLOAT ? (double)f->float_list->value[i]
                                                     : (double)f->int64_list->value[i];
}

static fn_status numeric_values(const column *c, const Tensorflow__Feature *f, size_t want,
                                size_t *have, fn_error *err)
{
    fn_feature_kind k = fn_feature_kind_of(f);
    *have = fn_feature_size(f);
    if (*have == 0) return FN_OK; /* an empty list counts as missing */
    if (k != FN_FEATURE_FLOAT && k != FN_FEATURE_INT64)
        return wrong_type(c, c->keys[0], k, "a float_list or int64_list", err);
    if (*have != want)
        return fn_error_set(err, FN_ERR_INVALID,
                            "column '%s': feature '%s' has %zu values, expected %zu", c->name,
                            c->keys[0], *have, want);
    for (size_t i = 0; i < *have; i++)
        if (isnan(num_at(f, i)))
            return fn_error_set(err, FN_ERR_INVALID, "column '%s': feature '%s' holds NaN", c->name,
                                c->keys[0]);
    return FN_OK;
}

/* Calls fn for each categorical value of f as bytes (int64 values as decimal text). */
typedef fn_status (*value_fn)(const column *c, uint32_t field, const char *s, size_t n,
                              fn_column_output *o, fn_error *err);

static fn_status for_each_word(const column *c, uint32_t field, const char *key,
                               const Tensorflow__Feature *f, value_fn fn, fn_column_output *o,
                               fn_error *err)
{
    fn_feature_kind k = fn_feature_kind_of(f);
    size_t n = fn_feature_size(f);
    if (n == 0) return FN_OK;
    if (k == FN_FEATURE_BYTES) {
        for (size_t i = 0; i < n; i++) {
            const ProtobufCBinaryData *b = &f->bytes_list->value[i];
            fn_status st = fn(c, field, (const char *)b->data, b->len, o, err);
            if (st != FN_OK) return st;
        }
        return FN_OK;
    }
    if (k == FN_FEATURE_INT64) {
        for (size_t i = 0; i < n; i++) {
            char tmp[24];
            int len = snprintf(tmp, sizeof tmp, "%lld", (long long)f->int64_list->value[i]);
            fn_status st = fn(c, field, tmp, (size_t)len, o, err);
            if (st != FN_OK) return st;
        }
        return FN_OK;
    }
    return wrong_type(c, key, k, "a bytes_list or int64_list", err);
}

static fn_status hash_value(const column *c, uint32_t field, const char *s, size_t n,
                            fn_column_output *o, fn_error *err)
{
    return emit(o, field, c->offset + (uint32_t)(hash_bytes(s, n) % c->buckets), 1.0f, err);
}

static fn_status vocab_value(const column *c, uint32_t field, const char *s, size_t n,
                             fn_column_output *o, fn_error *err)
{
    uint64_t h = hash_bytes(s, n);
    long pos = vocab_find(&c->voc, s, n, h);
    if (pos >= 0) return emit(o, field, c->offset + (uint32_t)pos, 1.0f, err);
    if (c->buckets == 0) return FN_OK; /* unknown value, no OOV buckets: dropped */
    return emit(o, field, c->offset + (uint32_t)(c->voc.n + h % c->buckets), 1.0f, err);
}

static fn_status identity_value(const column *c, uint32_t field, int64_t v, fn_column_output *o,
                                fn_error *err)
{
    if (v < 0 || (uint64_t)v >= c->buckets) {
        if (!c->has_default)
            return fn_error_set(err, FN_ERR_INVALID,
                                "column '%s': feature '%s' value %lld is outside [0, %llu)",
                                c->name, c->keys[0], (long long)v, (unsigned long long)c->buckets);
        v = (int64_t)c->default_num;
    }
    return emit(o, field, c->offset + (uint32_t)v, 1.0f, err);
}

/* crossed: walks the cartesian product of the keys' values depth-first. */
typedef struct cross_state {
    const column *c;
    const Tensorflow__Feature **feats;
    char buf[4096];
    uint32_t field;
    fn_column_output *o;
} cross_state;

static fn_status cross_rec(cross_state *cs, size_t k, size_t len, fn_error *err)
{
    const column *c = cs->c;
    if (k == c->nkeys) return hash_value(c, cs->field, cs->buf, len, cs->o, err);
    const Tensorflow__Feature *f = cs->feats[k];
    size_t n = fn_feature_size(f);
    for (size_t i = 0; i < n; i++) {
        char tmp[24];
        const char *s;
        size_t sn;
        if (fn_feature_kind_of(f) == FN_FEATURE_BYTES) {
            s = (const char *)f->bytes_list->value[i].data;
            sn = f->bytes_list->value[i].len;
        } else {
            sn = (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)f->int64_list->value[i]);
            s = tmp;
        }
        size_t sep = k ? strlen(CROSS_SEPARATOR) : 0;
        if (len + sep + sn > sizeof cs->buf)
            return fn_error_set(err, FN_ERR_INVALID,
                                "column '%s': crossed values longer than %zu bytes", c->name,
                                sizeof cs->buf);
        memcpy(cs->buf + len, CROSS_SEPARATOR, sep);
        memcpy(cs->buf + len + sep, s, sn);
        fn_status st = cross_rec(cs, k + 1, len + sep + sn, err);
        if (st != FN_OK) return st;
    }
    return FN_OK;
}

static fn_status transform_crossed(const column *c, uint32_t field, const fn_column_sources *src,
                                   fn_column_output *o, fn_error *err)
{
    const Tensorflow__Feature *feats[64];
    if (c->nkeys > 64)
        return fn_error_set(err, FN_ERR_INVALID, "column '%s': too many crossed keys", c->name);
    uint64_t combos = 1;
    for (size_t k = 0; k < c->nkeys; k++) {
        feats[k] = lookup(src, c->key_source[k], c->keys[k]);
        size_t n = fn_feature_size(feats[k]);
        if (n == 0) return FN_OK; /* crossing with nothing gives nothing */
        fn_feature_kind kind = fn_feature_kind_of(feats[k]);
        if (kind != FN_FEATURE_BYTES && kind != FN_FEATURE_INT64)
            return wrong_type(c, c->keys[k], kind, "a bytes_list or int64_list", err);
        combos *= n;
        if (combos > MAX_CROSS_COMBINATIONS)
            return fn_error_set(err, FN_ERR_INVALID,
                                "column '%s': crossing gives more than %d combinations", c->name,
                                MAX_CROSS_COMBINATIONS);
    }
    cross_state cs = {.c = c, .feats = feats, .field = field, .o = o};
    size_t before = o->n;
    fn_status st = cross_rec(&cs, 0, 0, err);
    if (st == FN_OK && o->n > before) spread(o, o->n - before);
    return st;
}

/* Applies a categorical column's default (a word) when its key is missing. */
static fn_status categorical_default(const column *c, uint32_t field, value_fn fn,
                                     fn_column_output *o, fn_error *err)
{
    if (!c->has_default) return FN_OK;
    return fn(c, field, c->default_str, strlen(c->default_str), o, err);
}

static fn_status transform_column(const fn_columns *cs, size_t ci, const fn_column_sources *src,
                                  fn_column_output *o, fn_error *err)
{
    const column *c = &cs->cols[ci];
    uint32_t field = (uint32_t)ci;
    if (c->type == FN_COLUMN_CROSSED) return transform_crossed(c, field, src, o, err);
    const Tensorflow__Feature *f = lookup(src, c->key_source[0], c->keys[0]);
    size_t before = o->n, have;
    fn_status st = FN_OK;
    switch (c->type) {
    case FN_COLUMN_NUMERIC:
        if ((st = numeric_values(c, f, c->shape, &have, err)) != FN_OK) return st;
        for (uint32_t i = 0; i < c->shape && st == FN_OK; i++) {
            const double raw = have ? num_at(f, i) : (c->has_default ? c->default_num : 0.0);
            double v = c->has_norm ? (raw - c->mean) / c->std : raw;
            if (!isfinite((float)v)) /* a model input of inf turns every score into NaN */
                return fn_error_set(err, FN_ERR_INVALID, "column '%s': feature '%s' value %g is %s",
                                    c->name, c->keys[0], raw,
                                    c->has_norm ? "infinite once normalized" : "infinite");
            st = emit(o, field, c->offset + i, (float)v, err);
        }
        return st;
    case FN_COLUMN_BUCKETIZED: {
        if ((st = numeric_values(c, f, 1, &have, err)) != FN_OK) return st;
        if (!have && !c->has_default) return FN_OK;
        double v = have ? num_at(f, 0) : c->default_num;
        /* Binary search for the number of boundaries <= v. */
        size_t lo = 0, hi = c->nbounds;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (c->bounds[mid] <= v) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return emit(o, field, c->offset + (uint32_t)lo, 1.0f, err);
    }
    case FN_COLUMN_HASH:
    case FN_COLUMN_VOCABULARY: {
        value_fn fn = c->type == FN_COLUMN_HASH ? hash_value : vocab_value;
        if (fn_feature_size(f) == 0) {
            st = categorical_default(c, field, fn, o, err);
        } else {
            st = for_each_word(c, field, c->keys[0], f, fn, o, err);
        }
        break;
    }
    case FN_COLUMN_IDENTITY: {
        size_t n = fn_feature_size(f);
        if (n == 0) {
            if (c->has_default)
                st = emit(o, field, c->offset + (uint32_t)c->default_num, 1.0f, err);
            break;
        }
        if (fn_feature_kind_of(f) != FN_FEATURE_INT64)
            return wrong_type(c, c->keys[0], fn_feature_kind_of(f), "an int64_list", err);
        for (size_t i = 0; i < n && st == FN_OK; i++)
            st = identity_value(c, field, f->int64_list->value[i], o, err);
        break;
    }
    case FN_COLUMN_EMBEDDING: {
        float *dense = o->dense + c->dense_offset;
        size_t n = fn_feature_size(f);
        if (n == 0) {
            memset(dense, 0, c->dim * sizeof *dense);
            return FN_OK;
        }
        if (fn_feature_kind_of(f) != FN_FEATURE_FLOAT)
            return wrong_type(c, c->keys[0], fn_feature_kind_of(f), "a float_list", err);
        if (n != c->dim)
            return fn_error_set(err, FN_ERR_INVALID,
                                "column '%s': feature '%s' has %zu values, expected dimension %u",
                                c->name, c->keys[0], n, c->dim);
        for (uint32_t i = 0; i < c->dim; i++) {
            float v = f->float_list->value[i];
            if (isnan(v))
                return fn_error_set(err, FN_ERR_INVALID, "column '%s': feature '%s' holds NaN",
                                    c->name, c->keys[0]);
            dense[i] = v;
            if (v != 0.0f && (st = emit(o, field, c->offset + i, v, err)) != FN_OK) return st;
        }
        return FN_OK;
    }
    default:
        break;
    }
    if (st == FN_OK && o->n - before > 1) spread(o, o->n - before);
    return st;
}

fn_status fn_columns_transform(const fn_columns *c, const fn_column_sources *src,
                               unsigned source_mask, fn_column_output *out, fn_error *err)
{
    static const fn_column_sources none;
    if (!src) src = &none;
    out->n = 0;
    if (out->dense_dim != c->dense_dim) {
        float *d = realloc(out->dense, (c->dense_dim ? c->dense_dim : 1) * sizeof *d);
        if (!d) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        out->dense = d;
        out->dense_dim = c->dense_dim;
    }
    for (size_t i = 0; i < c->n; i++) {
        if ((c->cols[i].sources & ~source_mask) != 0) continue;
        fn_status st = transform_column(c, i, src, out, err);
        if (st != FN_OK) return st;
    }
    return FN_OK;
}

void fn_columns_libffm_line(float label, const fn_column_output *o, fn_buf *line)
{
    fn_buf_float(line, label);
    for (size_t i = 0; i < o->n; i++) {
        const fn_feature_triple *t = &o->triples[i];
        fn_buf_printf(line, " %u:%u:", t->field, t->index);
        fn_buf_float(line, t->value);
    }
    fn_buf_putc(line, '\n');
}
