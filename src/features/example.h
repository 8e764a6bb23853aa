/*
 * example.h - tf.Example and tf.Features through protobuf-c.
 *
 * Messages are the protobuf-c structs generated from proto/tensorflow; every
 * message built or decoded here is released with fn_example_free /
 * fn_features_free (protobuf_c_message_free_unpacked underneath), whether it
 * came from the wire, from JSON or from the builders below.
 */
#ifndef FN_EXAMPLE_H
#define FN_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/buf.h"
#include "common/status.h"
#include "tensorflow/example.pb-c.h"
#include "tensorflow/feature.pb-c.h"

typedef enum fn_feature_kind {
    FN_FEATURE_NONE = 0, /* a Feature with no list set */
    FN_FEATURE_BYTES,
    FN_FEATURE_FLOAT,
    FN_FEATURE_INT64,
} fn_feature_kind;

/* Parses serialized tf.Example bytes. */
fn_status fn_example_decode(const uint8_t *data, size_t len, Tensorflow__Example **out,
                            fn_error *err);
/*
 * Parses serialized tf.Example bytes into memory from arena: no per-field
 * malloc, nothing to free; the Example lives until the arena is reset. For
 * bulk reading (training data, stat --decode).
 */
fn_status fn_example_decode_arena(const uint8_t *data, size_t len, fn_arena *arena,
                                  Tensorflow__Example **out, fn_error *err);
/* Parses serialized tf.Features bytes. */
fn_status fn_features_decode(const uint8_t *data, size_t len, Tensorflow__Features **out,
                             fn_error *err);
/* Appends the wire form of a message (Example, Features, any protobuf-c message). */
fn_status fn_proto_pack(const ProtobufCMessage *msg, fn_buf *out, fn_error *err);

/* One line of proto3 JSON, as Python's MessageToJson(indent=None). */
void fn_example_to_json(const Tensorflow__Example *ex, fn_buf *out);
/* Parses proto3 JSON of a tensorflow.Example. */
fn_status fn_example_from_json(const char *text, size_t n, Tensorflow__Example **out,
                               fn_error *err);

void fn_example_free(Tensorflow__Example *ex);
void fn_features_free(Tensorflow__Features *f);

/* The feature stored under key, or NULL. Features may be NULL (no features). */
const Tensorflow__Feature *fn_features_get(const Tensorflow__Features *f, const char *key);
/* The features of an Example, or NULL when it has none. */
const Tensorflow__Features *fn_example_features(const Tensorflow__Example *ex);

fn_feature_kind fn_feature_kind_of(const Tensorflow__Feature *f);
/*
 * The first value of a float_list or int64_list feature (labels, ratings).
 * FN_ERR_NOT_FOUND "feature 'key' is missing" when absent or empty,
 * FN_ERR_INVALID when it holds bytes.
 */
fn_status fn_features_first_number(const Tensorflow__Features *f, const char *key, double *out,
                                   fn_error *err);
/*
 * An entity id from a feature, NUL-terminated into out (cap bytes): the first bytes value (1
 * to cap - 1 bytes, no NUL) or the decimal text of the first int64 value. A missing feature,
 * another kind or an id that does not fit is FN_ERR_INVALID naming the key.
 */
fn_status fn_features_id(const Tensorflow__Features *f, const char *key, char *out, size_t cap,
                         fn_error *err);
/* Number of values in the feature's list (0 for none). */
size_t fn_feature_size(const Tensorflow__Feature *f);
const char *fn_feature_kind_name(fn_feature_kind k);

/* ---- building messages ---- */

Tensorflow__Example *fn_example_new(void);
Tensorflow__Features *fn_features_new(void);
/* The Example's Features, created on first use (NULL when out of memory). */
Tensorflow__Features *fn_example_mutable_features(Tensorflow__Example *ex);

/*
 * The feature under key, created with an empty list of the given kind when
 * missing. A key holding another kind is FN_ERR_INVALID, naming the key.
 */
fn_status fn_features_put(Tensorflow__Features *f, const char *key, fn_feature_kind kind,
                          Tensorflow__Feature **out, fn_error *err);

/* Append values to a feature's list (which must be of that kind). */
fn_status fn_feature_add_bytes(Tensorflow__Feature *f, const void *data, size_t n);
fn_status fn_feature_add_floats(Tensorflow__Feature *f, const float *v, size_t n);
fn_status fn_feature_add_int64s(Tensorflow__Feature *f, const int64_t *v, size_t n);

/* Shorthands: put key with kind and append the values. */
fn_status fn_features_set_bytes(Tensorflow__Features *f, const char *key, const void *data,
                                size_t n, fn_error *err);
fn_status fn_features_set_string(Tensorflow__Features *f, const char *key, const char *s,
                                 fn_error *err);
fn_status fn_features_set_floats(Tensorflow__Features *f, const char *key, const float *v, size_t n,
                                 fn_error *err);
fn_status fn_features_set_int64s(Tensorflow__Features *f, const char *key, const int64_t *v,
                                 size_t n, fn_error *err);

#endif
