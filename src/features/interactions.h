/*
 * interactions.h - reading an interaction log: a TFRecord file of
 * tf.Example, one per interaction (user, item, time, label), as `funnel
 * demo` writes interactions.tfrecord and its splits. The co-occurrence
 * build, recall evaluation, the serving pipeline's histories and the
 * reranker's training lists all read such logs through here.
 */
#ifndef FN_INTERACTIONS_H
#define FN_INTERACTIONS_H

#include <stdint.h>

#include "common/status.h"

/* Longest user or item id read, in bytes. */
#define FN_INTERACTION_ID_MAX 1024

/* One interaction; the strings are valid during the callback only. */
typedef struct fn_interaction {
    const char *user, *item;
    int64_t t;    /* 0 when the time key is not read */
    double label; /* 1 when the label is not read, or optional and absent */
} fn_interaction;

typedef struct fn_interaction_keys {
    const char *user, *item; /* bytes or int64 ids (int64 as decimal text) */
    const char *time;        /* int64 or float; NULL: not read */
    const char *label;       /* the first number; NULL: not read */
    int label_optional;      /* a record without the label counts 1 instead of failing */
} fn_interaction_keys;

/* Called for each record in file order; a status other than FN_OK stops the read with it. */
typedef fn_status (*fn_interaction_fn)(void *ctx, const fn_interaction *x, fn_error *err);

/*
 * Reads path (plain or gzip TFRecord) and calls fn for every record. A
 * record without a key it must read, an id that is not bytes or int64 or
 * is too long, a time out of the int64 range: FN_ERR_INVALID. Every error of
 * a record, the callback's included, is prefixed with the file, the record
 * number (1-based) and its byte offset; a damaged file is the TFRecord
 * reader's error. *records (may be NULL) gets the records read.
 */
fn_status fn_interactions_read(const char *path, const fn_interaction_keys *keys,
                               fn_interaction_fn fn, void *ctx, uint64_t *records, fn_error *err);

#endif
