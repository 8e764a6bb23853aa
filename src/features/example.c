/* example.c - tf.Example decoding, lookup and building over protobuf-c structs. */
#include "example.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/pbjson.h"

fn_status fn_example_decode(const uint8_t *data, size_t len, Tensorflow__Example **out,
                            fn_error *err)
{
    Tensorflow__Example *ex = tensorflow__example__unpack(NULL, len, data);
    if (!ex)
        return fn_error_set(err, FN_ERR_CORRUPT,
                            "%zu bytes are not a valid serialized tensorflow.Example", len);
    *out = ex;
    return FN_OK;
}

static void *arena_alloc(void *ctx, size_t n)
{
    return fn_arena_alloc(ctx, n);
}

static void arena_free(void *ctx, void *p)
{
    (void)ctx, (void)p; /* released with the arena */
}

fn_status fn_example_decode_arena(const uint8_t *data, size_t len, fn_arena *arena,
                                  Tensorflow__Example **out, fn_error *err)
{
    ProtobufCAllocator alloc = {arena_alloc, arena_free, arena};
    Tensorflow__Example *ex = tensorflow__example__unpack(&alloc, len, data);
    if (!ex)
        return fn_error_set(err, FN_ERR_CORRUPT,
                            "%zu bytes are not a valid serialized tensorflow.Example", len);
    *out = ex;
    return FN_OK;
}

fn_status fn_features_decode(const uint8_t *data, size_t len, Tensorflow__Features **out,
                             fn_error *err)
{
    Tensorflow__Features *f = tensorflow__features__unpack(NULL, len, data);
    if (!f)
        return fn_error_set(err, FN_ERR_CORRUPT,
                            "%zu bytes are not a valid serialized tensorflow.Features", len);
    *out = f;
    return FN_OK;
}

fn_status fn_proto_pack(const ProtobufCMessage *msg, fn_buf *out, fn_error *err)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (fn_buf_reserve(out, n) != FN_OK) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    size_t w = protobuf_c_message_pack(msg, (uint8_t *)out->data + out->len);
    out->len += w;
    out->data[out->len] = '\0';
    return FN_OK;
}

void fn_example_to_json(const Tensorflow__Example *ex, fn_buf *out)
{
    fn_pbjson_encode(&ex->base, out);
}

fn_status fn_example_from_json(const char *text, size_t n, Tensorflow__Example **out, fn_error *err)
{
    ProtobufCMessage *m;
    fn_status st = fn_pbjson_parse(&tensorflow__example__descriptor, text, n, 0, &m, err);
    if (st != FN_OK) return st;
    *out = (Tensorflow__Example *)m;
    return FN_OK;
}

void fn_example_free(Tensorflow__Example *ex)
{
    if (ex) protobuf_c_message_free_unpacked(&ex->base, NULL);
}

void fn_features_free(Tensorflow__Features *f)
{
    if (f) protobuf_c_message_free_unpacked(&f->base, NULL);
}

const Tensorflow__Feature *fn_features_get(const Tensorflow__Features *f, const char *key)
{
    if (!f) return NULL;
    for (size_t i = 0; i < f->n_feature; i++) {
        const Tensorflow__Features__FeatureEntry *e = f->feature[i];
        if (e->key && strcmp(e->key, key) == 0) return e->value;
    }
    return NULL;
}

const Tensorflow__Features *fn_example_features(const Tensorflow__Example *ex)
{
    return ex ? ex->features : NULL;
}

fn_feature_kind fn_feature_kind_of(const Tensorflow__Feature *f)
{
    if (!f) return FN_FEATURE_NONE;
    switch (f->kind_case) {
    case TENSORFLOW__FEATURE__KIND_BYTES_LIST:
        return FN_FEATURE_BYTES;
    case TENSORFLOW__FEATURE__KIND_FLOAT_LIST:
        return FN_FEATURE_FLOAT;
    case TENSORFLOW__FEATURE__KIND_INT64_LIST:
        return FN_FEATURE_INT64;
    default:
        return FN_FEATURE_NONE;
    }
}

fn_status fn_features_first_number(const Tensorflow__Features *fs, const char *key, double *out,
                                   fn_error *err)
{
    const Tensorflow__Feature *f = fn_features_get(fs, key);
    fn_feature_kind k = fn_feature_kind_of(f);
    if (fn_feature_size(f) == 0)
        return fn_error_set(err, FN_ERR_NOT_FOUND, "feature '%s' is missing", key);
    if (k == FN_FEATURE_FLOAT) {
        *out = f->float_list->value[0];
    } else if (k == FN_FEATURE_INT64) {
        *out = (double)f->int64_list->value[0];
    } else {
        return fn_error_set(err, FN_ERR_INVALID, "feature '%s' holds a %s, not a number", key,
                            fn_feature_kind_name(k));
    }
    return FN_OK;
}

size_t fn_feature_size(const Tensorflow__Feature *f)
{
    switch (fn_feature_kind_of(f)) {
    case FN_FEATURE_BYTES:
        return f->bytes_list ? f->bytes_list->n_value : 0;
    case FN_FEATURE_FLOAT:
        return f->float_list ? f->float_list->n_value : 0;
    case FN_FEATURE_INT64:
        return f->int64_list ? f->int64_list->n_value : 0;
    default:
        return 0;
    }
}

const char *fn_feature_kind_name(fn_feature_kind k)
{
    switch (k) {
    case FN_FEATURE_BYTES:
        return "bytes_list";
    case FN_FEATURE_FLOAT:
        return "float_list";
    case FN_FEATURE_INT64:
        return "int64_list";
    default:
        return "no list";
    }
}

Tensorflow__Example *fn_example_new(void)
{
    Tensorflow__Example *ex = malloc(sizeof *ex);
    if (ex) tensorflow__example__init(ex);
    return ex;
}

Tensorflow__Features *fn_features_new(void)
{
    Tensorflow__Features *f = malloc(sizeof *f);
    if (f) tensorflow__features__init(f);
    return f;
}

Tensorflow__Features *fn_example_mutable_features(Tensorflow__Example *ex)
{
    if (!ex->features) ex->features = fn_features_new();
    return ex->features;
}

/* A new Feature holding an empty list of the given kind. */
static Tensorflow__Feature *feature_new(fn_feature_kind kind)
{
    Tensorflow__Feature *f = malloc(sizeof *f);
    if (!f) return NULL;
    tensorflow__feature__init(f);
    switch (kind) {
    case FN_FEATURE_BYTES:
        f->bytes_list = malloc(sizeof *f->bytes_list);
        if (!f->bytes_list) break;
        tensorflow__bytes_list__init(f->bytes_list);
        f->kind_case = TENSORFLOW__FEATURE__KIND_BYTES_LIST;
        return f;
    case FN_FEATURE_FLOAT:
        f->float_list = malloc(sizeof *f->float_list);
        if (!f->float_list) break;
        tensorflow__float_list__init(f->float_list);
        f->kind_case = TENSORFLOW__FEATURE__KIND_FLOAT_LIST;
        return f;
    case FN_FEATURE_INT64:
        f->int64_list = malloc(sizeof *f->int64_list);
        if (!f->int64_list) break;
        tensorflow__int64_list__init(f->int64_list);
        f->kind_case = TENSORFLOW__FEATURE__KIND_INT64_LIST;
        return f;
    default:
        return f;
    }
    free(f);
    return NULL;
}

fn_status fn_features_put(Tensorflow__Features *fs, const char *key, fn_feature_kind kind,
                          Tensorflow__Feature **out, fn_error *err)
{
    for (size_t i = 0; i < fs->n_feature; i++) {
        Tensorflow__Features__FeatureEntry *e = fs->feature[i];
        if (strcmp(e->key, key) != 0) continue;
        fn_feature_kind have = fn_feature_kind_of(e->value);
        if (have != kind)
            return fn_error_set(err, FN_ERR_INVALID, "feature '%s' holds a %s, not a %s", key,
                                fn_feature_kind_name(have), fn_feature_kind_name(kind));
        *out = e->value;
        return FN_OK;
    }
    Tensorflow__Features__FeatureEntry **arr =
        realloc(fs->feature, (fs->n_feature + 1) * sizeof *arr);
    if (!arr) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    fs->feature = arr;
    Tensorflow__Features__FeatureEntry *e = malloc(sizeof *e);
    if (!e) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    tensorflow__features__feature_entry__init(e);
    e->key = strdup(key);
    e->value = feature_new(kind);
    if (!e->key || !e->value) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    arr[fs->n_feature++] = e;
    *out = e->value;
    return FN_OK;
}

/* Grows a repeated field's array by n elements of size sz. */
static void *grow(void *arr, size_t have, size_t n, size_t sz)
{
    return realloc(arr, (have + n ? have + n : 1) * sz);
}

fn_status fn_feature_add_bytes(Tensorflow__Feature *f, const void *data, size_t n)
{
    if (fn_feature_kind_of(f) != FN_FEATURE_BYTES) return FN_ERR_INVALID;
    Tensorflow__BytesList *l = f->bytes_list;
    ProtobufCBinaryData *v = grow(l->value, l->n_value, 1, sizeof *v);
    if (!v) return FN_ERR_NOMEM;
    l->value = v;
    uint8_t *copy = NULL;
    if (n) {
        copy = malloc(n);
        if (!copy) return FN_ERR_NOMEM;
        memcpy(copy, data, n);
    }
    v[l->n_value].data = copy;
    v[l->n_value].len = n;
    l->n_value++;
    return FN_OK;
}

fn_status fn_feature_add_floats(Tensorflow__Feature *f, const float *vals, size_t n)
{
    if (fn_feature_kind_of(f) != FN_FEATURE_FLOAT) return FN_ERR_INVALID;
    Tensorflow__FloatList *l = f->float_list;
    float *v = grow(l->value, l->n_value, n, sizeof *v);
    if (!v) return FN_ERR_NOMEM;
    if (n) memcpy(v + l->n_value, vals, n * sizeof *v);
    l->value = v;
    l->n_value += n;
    return FN_OK;
}

fn_status fn_feature_add_int64s(Tensorflow__Feature *f, const int64_t *vals, size_t n)
{
    if (fn_feature_kind_of(f) != FN_FEATURE_INT64) return FN_ERR_INVALID;
    Tensorflow__Int64List *l = f->int64_list;
    int64_t *v = grow(l->value, l->n_value, n, sizeof *v);
    if (!v) return FN_ERR_NOMEM;
    if (n) memcpy(v + l->n_value, vals, n * sizeof *v);
    l->value = v;
    l->n_value += n;
    return FN_OK;
}

static fn_status nomem_if(fn_status st, fn_error *err)
{
    return st == FN_OK ? FN_OK : fn_error_set(err, st, "out of memory");
}

fn_status fn_features_set_bytes(Tensorflow__Features *fs, const char *key, const void *data,
                                size_t n, fn_error *err)
{
    Tensorflow__Feature *f = NULL;
    fn_status st = fn_features_put(fs, key, FN_FEATURE_BYTES, &f, err);
    return st != FN_OK ? st : nomem_if(fn_feature_add_bytes(f, data, n), err);
}

fn_status fn_features_set_string(Tensorflow__Features *fs, const char *key, const char *s,
                                 fn_error *err)
{
    return fn_features_set_bytes(fs, key, s, strlen(s), err);
}

fn_status fn_features_set_floats(Tensorflow__Features *fs, const char *key, const float *v,
                                 size_t n, fn_error *err)
{
    Tensorflow__Feature *f = NULL;
    fn_status st = fn_features_put(fs, key, FN_FEATURE_FLOAT, &f, err);
    return st != FN_OK ? st : nomem_if(fn_feature_add_floats(f, v, n), err);
}

fn_status fn_features_set_int64s(Tensorflow__Features *fs, const char *key, const int64_t *v,
                                 size_t n, fn_error *err)
{
    Tensorflow__Feature *f = NULL;
    fn_status st = fn_features_put(fs, key, FN_FEATURE_INT64, &f, err);
    return st != FN_OK ? st : nomem_if(fn_feature_add_int64s(f, v, n), err);
}

fn_status fn_features_id(const Tensorflow__Features *f, const char *key, char *out, size_t cap,
                         fn_error *err)
{
    const Tensorflow__Feature *ft = fn_features_get(f, key);
    fn_feature_kind k = fn_feature_kind_of(ft);
    if (!ft || !fn_feature_size(ft))
        return fn_error_set(err, FN_ERR_INVALID, "feature '%s' is missing", key);
    if (k == FN_FEATURE_INT64) {
        snprintf(out, cap, "%" PRId64, (int64_t)ft->int64_list->value[0]);
        return FN_OK;
    }
    if (k != FN_FEATURE_BYTES)
        return fn_error_set(err, FN_ERR_INVALID, "feature '%s' is a %s, ids are bytes or int64",
                            key, fn_feature_kind_name(k));
    const ProtobufCBinaryData *b = &ft->bytes_list->value[0];
    if (!b->len || b->len >= cap || memchr(b->data, 0, b->len))
        return fn_error_set(err, FN_ERR_INVALID,
                            "feature '%s': an id must be 1 to %zu bytes without NUL, got %zu bytes",
                            key, cap - 1, b->len);
    memcpy(out, b->data, b->len);
    out[b->len] = '\0';
    return FN_OK;
}
