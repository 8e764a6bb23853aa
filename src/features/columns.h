/*
 * columns.h - feature columns: a JSON spec that turns tf.Features into model
 * inputs, with TensorFlow feature_column meaning.
 *
 * Each column is one field. Transforming features yields (field, index,
 * value) triples, exactly libffm's `field:index:value`, plus the dense
 * vectors of embedding columns. Indices are global: column c owns the range
 * [offset(c), offset(c) + size(c)), so FM/FFM/DeepFM see one index space.
 *
 * Column types (see DESIGN.md and docs/feature-columns.md):
 *   numeric                 value, or (value - mean) / std; "shape" values (default 1)
 *   bucketized              number of boundaries <= value (TensorFlow's rule)
 *   categorical_hash        XXH3-64 of the bytes (int64: its decimal text) mod size
 *   categorical_vocabulary  position in the vocabulary; unknown values go to
 *                           num_oov_buckets hashed buckets, or are dropped
 *   categorical_identity    the int64 value itself, in [0, num_buckets)
 *   crossed                 XXH3-64 of the values of several keys joined by "_X_"
 *   embedding               a dense float vector of fixed dimension
 * A multi-valued categorical key yields one triple per value, each 1/n.
 *
 * A missing feature gives the column's default (numeric: "default" or 0;
 * categorical: "default" when given, else nothing; embedding: zeros). A
 * feature of the wrong type is an error naming the column and the key.
 */
#ifndef FN_COLUMNS_H
#define FN_COLUMNS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/status.h"
#include "tensorflow/feature.pb-c.h"

typedef struct fn_columns fn_columns;

typedef enum fn_column_source {
    FN_SOURCE_USER = 0,
    FN_SOURCE_ITEM,
    FN_SOURCE_CONTEXT,
    FN_SOURCE_DERIVED, /* computed per request, e.g. query_item_cosine */
    FN_SOURCE_COUNT,
} fn_column_source;

typedef enum fn_column_type {
    FN_COLUMN_NUMERIC = 0,
    FN_COLUMN_BUCKETIZED,
    FN_COLUMN_HASH,
    FN_COLUMN_VOCABULARY,
    FN_COLUMN_IDENTITY,
    FN_COLUMN_CROSSED,
    FN_COLUMN_EMBEDDING,
} fn_column_type;

/* Reads and validates a spec file; vocabulary files are relative to its folder. */
fn_status fn_columns_load(const char *path, fn_columns **out, fn_error *err);
/* Parses a spec from memory; base_dir resolves vocabulary files (NULL: current folder). */
fn_status fn_columns_parse(const char *json, size_t n, const char *base_dir, fn_columns **out,
                           fn_error *err);
void fn_columns_free(fn_columns *c);

/* Number of columns, which is the number of fields. */
size_t fn_columns_count(const fn_columns *c);
const char *fn_columns_name(const fn_columns *c, size_t col);
fn_column_type fn_columns_type(const fn_columns *c, size_t col);
/* First global index of the column and how many indices it owns. */
uint32_t fn_columns_offset(const fn_columns *c, size_t col);
uint32_t fn_columns_size(const fn_columns *c, size_t col);
/* Bitmask of (1 << fn_column_source) the column reads from. */
unsigned fn_columns_sources(const fn_columns *c, size_t col);
/* Size of the whole index space (sum of column sizes). */
uint64_t fn_columns_num_features(const fn_columns *c);
/* Length of the dense vector: the sum of embedding dimensions. */
size_t fn_columns_dense_dim(const fn_columns *c);
/* Offset of an embedding column's vector within the dense vector. */
size_t fn_columns_dense_offset(const fn_columns *c, size_t col);
/* Column index by name, or -1. */
long fn_columns_find(const fn_columns *c, const char *name);

/*
 * SHA-256 (64 hex digits) of the spec's canonical form: keys sorted, no
 * whitespace, every number written as a double, vocabulary files inlined.
 * Models record it and refuse a spec with another hash.
 */
const char *fn_columns_sha256(const fn_columns *c);
/* The canonical JSON the hash is computed over. */
const char *fn_columns_canonical(const fn_columns *c);

const char *fn_column_type_name(fn_column_type t);
const char *fn_column_source_name(fn_column_source s);

typedef struct fn_feature_triple {
    uint32_t field;
    uint32_t index;
    float value;
} fn_feature_triple;

/* Where a transform writes. Reuse one across calls; free with fn_column_output_free. */
typedef struct fn_column_output {
    fn_feature_triple *triples;
    size_t n, cap;
    float *dense; /* fn_columns_dense_dim floats */
    size_t dense_dim;
} fn_column_output;

void fn_column_output_free(fn_column_output *o);

/* The Features of each source; any may be NULL (everything missing). */
typedef struct fn_column_sources {
    const Tensorflow__Features *src[FN_SOURCE_COUNT];
} fn_column_sources;

/*
 * Transforms the columns whose sources all lie in source_mask (a bitmask of
 * 1 << fn_column_source; FN_SOURCES_ALL for every column), replacing out's
 * triples and writing those columns' dense parts. Serving calls it once for
 * the user and context part of a request and once per candidate for the rest.
 */
#define FN_SOURCES_ALL ((1u << FN_SOURCE_COUNT) - 1)
fn_status fn_columns_transform(const fn_columns *c, const fn_column_sources *src,
                               unsigned source_mask, fn_column_output *out, fn_error *err);

/* Appends one libffm line: label, then " field:index:value" per triple, then '\n'. */
void fn_columns_libffm_line(float label, const fn_column_output *o, fn_buf *line);

#endif
