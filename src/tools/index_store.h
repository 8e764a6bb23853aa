/*
 * index_store.h - reading a feature store's items as rows for an ANN index
 * (index_store.c), shared by `funnel index build --store` and `funnel index
 * add`.
 */
#ifndef FN_TOOLS_INDEX_STORE_H
#define FN_TOOLS_INDEX_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "llm/encoder.h"
#include "recall/recall.h"

/* Where the rows come from. */
typedef struct index_source {
    const char *store;      /* the store folder (opened read-only) */
    const char *vector_key; /* take vectors from this float_list feature, not the stored vector */
    const char *text_key;   /* encode this bytes feature for items without a vector */
    const char *model;      /* the encoder (NULL: models/all-MiniLM-L6-v2) */
    uint64_t threads;       /* encoder threads (0: one per CPU) */
    int skip_missing;       /* leave out items with neither a vector nor the text */
    fn_ann *known;          /* NULL, or the index added to: its items stay out, live or deleted,
                               and every vector must have its dimension */
} index_source;

/* The rows read: in item id byte order for a build, in number order for an add. */
typedef struct store_items {
    size_t n, cap, dim;
    char **ids;          /* item ids, NUL-terminated */
    size_t *lens;        /* their lengths */
    int64_t *numbers;    /* the store's numbers for them: their ids in the index */
    float *vecs;         /* n rows of dim floats, L2-normalised, once dim is known */
    size_t n_encoded;    /* rows that came from the encoder */
    size_t n_skipped;    /* items left out by skip_missing */
    size_t n_present;    /* items left out as live in `known` */
    size_t n_tombstoned; /* items left out as deleted in `known` (until a rebuild) */
    /* private: the encoder, loaded on the first text, and the texts waiting for it */
    size_t first_vec;
    fn_encoder *enc;
    char **texts;
    size_t *text_lens;
    size_t *pending;
    size_t n_pending;
    float *enc_out;
} store_items;

/*
 * Reads the items of src->store into si (zeroed by the caller). An item
 * without a vector or the text (unless skip_missing), a vector of another
 * dimension or not finite, or a store without item numbers fails the call
 * naming the store and the item. No rows is not an error here.
 */
fn_status index_read_store(const index_source *src, store_items *si, fn_error *err);
void store_items_free(store_items *si);

#endif
