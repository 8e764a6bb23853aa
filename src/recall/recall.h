/*
 * recall.h - the recall stage: approximate nearest neighbours over item
 * vectors through FAISS's C API (the faiss/c_api headers, FAISS 1.7.3 built with
 * AVX2 by scripts/build-faiss), plus the .fvecs/.ivecs files of ANN benchmarks,
 * the non-ANN channels (popularity, item co-occurrence) declared after it, and
 * the merge of the channels and the user vector at the end.
 *
 * An fn_ann is one FAISS index built by factory string ("HNSW32,Flat",
 * "IVF1024,Flat", "IVF256,PQ48", "Flat", ...) with inner product as metric,
 * wrapped in an IndexIDMap2 so that vectors carry caller-chosen int64 ids.
 * Vectors are L2-normalised on the way in (adds, training and queries), so
 * scores are cosine similarities.
 *
 * Contract:
 *  - Ids are non-negative int64 (FAISS uses -1 for "no result"); an id is in
 *    the index at most once. Deleting an id leaves a tombstone: the vector
 *    stays in the FAISS index but is filtered out of every result (searches
 *    over-fetch, doubling k, until k live results come back or the index is
 *    exhausted). A tombstoned id cannot be added again until fn_ann_rebuild
 *    compacts the index (it re-adds the live vectors to an emptied copy of
 *    the trained index, so no retraining happens).
 *  - Search parameters are per request: efSearch (HNSW) and nprobe (IVF);
 *    0 takes the index's default (set by fn_ann_set_defaults, saved with the
 *    index). Asking for a parameter that the index has no use for is
 *    FN_ERR_INVALID.
 *  - Thread safety: searches run concurrently with each other; add, delete,
 *    train, rebuild, set_defaults and save take the index exclusively.
 *    Searches that ask for different parameters take turns (FAISS keeps
 *    efSearch/nprobe in the index), searches with equal ones run together.
 *  - Files: FAISS's own index file, followed by a funnel trailer (tombstones,
 *    factory string, defaults, then a 48-byte footer: magic, version, sizes,
 *    CRC32C of everything before it), written to a temporary name, fsynced,
 *    renamed. FAISS ignores the trailer, so faiss.read_index() opens the file
 *    as it is; fn_ann_load refuses a file without a valid trailer (damaged,
 *    truncated or not ours) and one of another dimension than expected.
 */
#ifndef FN_RECALL_H
#define FN_RECALL_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct fn_ann fn_ann;

/* Defaults of a new index: efSearch for HNSW, nprobe for IVF (at most nlist). */
#define FN_ANN_DEFAULT_EF_SEARCH 64
#define FN_ANN_DEFAULT_NPROBE    16

/* Per-request search parameters; 0 takes the index's default. */
typedef struct fn_ann_params {
    int ef_search; /* HNSW: candidate list size while searching */
    int nprobe;    /* IVF: inverted lists visited */
} fn_ann_params;

/*
 * Creates an empty index of dimension dim from a FAISS factory string
 * (metric: inner product). An unknown or invalid factory string is
 * FN_ERR_INVALID with FAISS's reason.
 */
fn_status fn_ann_new(const char *factory, size_t dim, fn_ann **out, fn_error *err);
/* Frees the index. Safe on NULL. */
void fn_ann_free(fn_ann *a);

size_t fn_ann_dim(const fn_ann *a);
/* The factory string the index was built from. */
const char *fn_ann_factory(const fn_ann *a);
/* Live vectors (added and not deleted). */
size_t fn_ann_count(fn_ann *a);
/* Tombstones: deleted vectors still held until fn_ann_rebuild. */
size_t fn_ann_deleted(fn_ann *a);
/* 1 when id is live in the index. */
int fn_ann_contains(fn_ann *a, int64_t id);
/* 1 when id is a tombstone (deleted, held until fn_ann_rebuild; it cannot be added again). */
int fn_ann_is_deleted(fn_ann *a, int64_t id);
/* 1 when the index can take vectors (IVF and PQ need fn_ann_train first). */
int fn_ann_is_trained(fn_ann *a);
/* Which per-request parameters apply: 1 when efSearch / nprobe do. */
int fn_ann_has_ef_search(const fn_ann *a);
int fn_ann_has_nprobe(const fn_ann *a);

/*
 * Sets the index's default search parameters (0 leaves one as it is); they
 * are saved with the index. A parameter the index has no use for is
 * FN_ERR_INVALID.
 */
fn_status fn_ann_set_defaults(fn_ann *a, const fn_ann_params *p, fn_error *err);
/* The defaults in force (0 for a parameter that does not apply). */
fn_ann_params fn_ann_defaults(fn_ann *a);

/*
 * Trains the index on n vectors (k-means for IVF, codebooks for PQ); does
 * nothing when it needs no training or is trained already. Too few vectors
 * (IVF needs at least nlist) is FN_ERR_INVALID with FAISS's reason.
 */
fn_status fn_ann_train(fn_ann *a, size_t n, const float *vecs, fn_error *err);

/*
 * Adds n vectors (n rows of dim floats) under ids. All or nothing: a
 * negative id, an id given twice, one already in the index (live or
 * tombstoned: FN_ERR_EXISTS), a non-finite value, or an untrained index
 * fails the call with nothing added.
 */
fn_status fn_ann_add(fn_ann *a, size_t n, const float *vecs, const int64_t *ids, fn_error *err);

/*
 * Deletes n ids (tombstones); ids that are not live are skipped. *deleted
 * (may be NULL) gets how many were live.
 */
fn_status fn_ann_delete(fn_ann *a, size_t n, const int64_t *ids, size_t *deleted, fn_error *err);

/*
 * Searches nq queries (rows of dim floats) for their k best live vectors by
 * inner product of the normalised vectors. ids and scores (nq * k each,
 * scores may be NULL) get, per query, the results best first; when fewer
 * than k live vectors are found the rest are -1 and -INFINITY. p may be NULL
 * (defaults).
 */
fn_status fn_ann_search(fn_ann *a, size_t nq, const float *queries, size_t k,
                        const fn_ann_params *p, int64_t *ids, float *scores, fn_error *err);

/*
 * Compacts the index: the live vectors (as FAISS stores them: exact for
 * Flat storage, decoded for PQ/SQ codes) are re-added to an emptied copy of
 * the trained index and the tombstones dropped. Nothing changes on failure.
 */
fn_status fn_ann_rebuild(fn_ann *a, fn_error *err);

/*
 * The live vectors as FAISS stores them and their ids, in insertion order:
 * *n rows into *vecs and *ids (malloc'ed; the caller frees both).
 */
fn_status fn_ann_vectors(fn_ann *a, size_t *n, int64_t **ids, float **vecs, fn_error *err);

/* The live ids, in no particular order: *n into *ids (malloc'ed; the caller frees it). */
fn_status fn_ann_live_ids(fn_ann *a, size_t *n, int64_t **ids, fn_error *err);

/* Writes the index and its tombstones to path atomically (see the file format above). */
fn_status fn_ann_save(fn_ann *a, const char *path, fn_error *err);

/*
 * Loads an index written by fn_ann_save. expected_dim 0 accepts any
 * dimension; otherwise another dimension is FN_ERR_INVALID naming both. A
 * missing file is FN_ERR_NOT_FOUND; a damaged, truncated or foreign file is
 * FN_ERR_CORRUPT naming the file and the check that failed.
 */
fn_status fn_ann_load(const char *path, size_t expected_dim, fn_ann **out, fn_error *err);

/*
 * How many OpenMP threads FAISS uses for the calls this thread makes from
 * now on (training, adds, batch searches; 0: one per CPU). FAISS opens a
 * thread team even for a single query, so a thread that serves one query at
 * a time sets 1. FN_ERR_UNSUPPORTED when FAISS's OpenMP runtime is not found.
 */
fn_status fn_ann_set_threads(int n, fn_error *err);

/*
 * Item ids: an index built from the feature store (`funnel index build
 * --store`) holds each item under the store's number for it
 * (fn_store_item_number), a stable int64 that stays the item's across
 * builds, adds and deletes; the store maps numbers back to item ids.
 */

/* ---- .fvecs / .ivecs: per row an int32 count, then that many float32 / int32 ---- */

/*
 * Reads a whole .fvecs file: *n rows of *dim floats into *vecs (malloc'ed).
 * Rows of differing dimension, a truncated row or an empty file are
 * FN_ERR_CORRUPT naming the file and the row.
 */
fn_status fn_vecs_read_fvecs(const char *path, size_t *n, size_t *dim, float **vecs, fn_error *err);
/* Reads a whole .ivecs file (all rows of one length) the same way. */
fn_status fn_vecs_read_ivecs(const char *path, size_t *n, size_t *dim, int32_t **vecs,
                             fn_error *err);
/* Writes n rows of dim int32 values as .ivecs, atomically. */
fn_status fn_vecs_write_ivecs(const char *path, size_t n, size_t dim, const int32_t *vecs,
                              fn_error *err);
/* Writes n rows of dim floats as .fvecs, atomically. */
fn_status fn_vecs_write_fvecs(const char *path, size_t n, size_t dim, const float *vecs,
                              fn_error *err);

/* ---- non-ANN channels: popularity and item co-occurrence ---- */

/*
 * An item id with a score, as the channels return them, best first. id
 * points into the channel that returned it and lives as long as it does.
 */
typedef struct fn_recall_item {
    const char *id;
    double score;
} fn_recall_item;

/*
 * Popularity: time-decayed interaction counts per item. An interaction of
 * weight w at time t (seconds) adds w * 2^(-(now - t) / half_life) to its
 * item's score, so an interaction one half-life old counts half; ones after
 * `now` count as at `now` (full weight). Ids are NUL-terminated strings.
 * Adds go in until fn_popularity_finalize, which ranks the items (score
 * descending, ties by id in byte order); fn_popularity_top needs a finalized
 * table, fn_popularity_score works at any time. Not thread-safe while adding;
 * a finalized table is read-only and may be shared.
 */
typedef struct fn_popularity fn_popularity;

/* half_life_s: finite and > 0 (FN_ERR_INVALID otherwise). */
fn_status fn_popularity_new(double half_life_s, int64_t now, fn_popularity **out, fn_error *err);
/* Safe on NULL. */
void fn_popularity_free(fn_popularity *p);
/*
 * Adds one interaction. An empty id, a negative or non-finite weight, or a
 * finalized table is FN_ERR_INVALID.
 */
fn_status fn_popularity_add(fn_popularity *p, const char *item, int64_t t, double weight,
                            fn_error *err);
/* Ranks the items; later adds are refused. Calling it twice is harmless. */
fn_status fn_popularity_finalize(fn_popularity *p, fn_error *err);
/* Distinct items seen. */
size_t fn_popularity_count(const fn_popularity *p);
/*
 * The n most popular items into out (room for n), best first; *got gets
 * min(n, count). FN_ERR_INVALID before fn_popularity_finalize.
 */
fn_status fn_popularity_top(const fn_popularity *p, size_t n, fn_recall_item *out, size_t *got,
                            fn_error *err);
/* The item's decayed score; 0 for an item never seen. */
double fn_popularity_score(const fn_popularity *p, const char *item);

/*
 * Item co-occurrence (item-to-item). A builder takes interactions (user,
 * item, time); per user they are ordered by time (ties by item id) and an
 * item the user met more than once is kept at its latest interaction. Two
 * items co-occur for a user when at most `window` positions apart in that
 * sequence (each item pairs with the user's last `window` items before it;
 * window 0: every pair of the user's items). With c(i,j) the users for whom
 * i and j co-occur and n_i the users of i, the score is the cosine
 * c(i,j) / sqrt(n_i * n_j) (in (0, 1], stored as float32), and each item
 * keeps its top_k neighbours: score descending, ties by id in byte order.
 * Filtering (labels, ratings) is the caller's: the builder counts what it
 * is given. Pairs are counted in memory: a user with m items yields about
 * m * min(m, window) pairs.
 *
 * File: a 64-byte header (magic "FNCOOC\0\0", version, measure, counts,
 * top_k, window, users, CRC32C of the body, CRC32C of the header), then the
 * item and neighbour offsets (uint64), neighbour indices (uint32), scores
 * (float32), users per item (uint32) and the ids (sorted, NUL-terminated),
 * all little-endian, written to a temporary name, fsynced, renamed.
 * fn_cooc_load checks sizes, both checksums and every offset and index, so
 * a damaged or truncated file is FN_ERR_CORRUPT naming the file and the
 * check, never a crash. A loaded table is read-only and may be shared
 * between threads.
 */
typedef struct fn_cooc_builder fn_cooc_builder;
typedef struct fn_cooc fn_cooc;

#define FN_COOC_DEFAULT_TOP_K 100

typedef struct fn_cooc_options {
    uint32_t top_k;  /* neighbours kept per item; 0: FN_COOC_DEFAULT_TOP_K */
    uint32_t window; /* pairs at most this many positions apart; 0: all */
} fn_cooc_options;

/* opts may be NULL (defaults). */
fn_status fn_cooc_builder_new(const fn_cooc_options *opts, fn_cooc_builder **out, fn_error *err);
/* Safe on NULL. */
void fn_cooc_builder_free(fn_cooc_builder *b);
/* Adds one interaction; empty ids are FN_ERR_INVALID. */
fn_status fn_cooc_builder_add(fn_cooc_builder *b, const char *user, const char *item, int64_t t,
                              fn_error *err);
/* Interactions added so far. */
size_t fn_cooc_builder_count(const fn_cooc_builder *b);
/*
 * Counts the pairs and builds the table (the builder stays as it was).
 * *pairs (may be NULL) gets the distinct co-occurring item pairs.
 */
fn_status fn_cooc_build(fn_cooc_builder *b, fn_cooc **out, uint64_t *pairs, fn_error *err);

/* Safe on NULL. */
void fn_cooc_free(fn_cooc *c);
/* Writes the table to path atomically. */
fn_status fn_cooc_save(const fn_cooc *c, const char *path, fn_error *err);
/*
 * Loads a table written by fn_cooc_save: FN_ERR_NOT_FOUND for a missing
 * file, FN_ERR_CORRUPT for a damaged, truncated or foreign one,
 * FN_ERR_UNSUPPORTED for another format version.
 */
fn_status fn_cooc_load(const char *path, fn_cooc **out, fn_error *err);

size_t fn_cooc_items(const fn_cooc *c);
/* Neighbours stored over all items. */
size_t fn_cooc_neighbour_count(const fn_cooc *c);
uint32_t fn_cooc_top_k(const fn_cooc *c);
uint32_t fn_cooc_window(const fn_cooc *c);
/* Users the table was built from (with at least one item). */
uint64_t fn_cooc_users(const fn_cooc *c);
/* Users who interacted with item; 0 for an unknown item. */
uint32_t fn_cooc_item_users(const fn_cooc *c, const char *item);

/*
 * The item's first k neighbours (at most top_k) into out (room for k), best
 * first; *got gets how many. An item not in the table is FN_ERR_NOT_FOUND;
 * one without neighbours gives *got = 0.
 */
fn_status fn_cooc_neighbours(const fn_cooc *c, const char *item, size_t k, fn_recall_item *out,
                             size_t *got, fn_error *err);

/*
 * Candidates for a user from their recent items: each item's score is the
 * sum of its neighbour scores over the n_recent items (an id given twice
 * counts twice; ids not in the table add nothing), the recent items
 * themselves excluded; the best k into out (room for k), ties by id; *got
 * gets how many.
 */
fn_status fn_cooc_candidates(const fn_cooc *c, const char *const *recent, size_t n_recent, size_t k,
                             fn_recall_item *out, size_t *got, fn_error *err);

/* ---- merging the channels, and the user vector ---- */

/* Channels a merge takes: the candidate bitmask is a uint32_t. */
#define FN_RECALL_MAX_CHANNELS 32

/* One channel's ranked list (best first) and how many new items it may add. */
typedef struct fn_recall_channel {
    const fn_recall_item *items;
    size_t n;
    size_t quota; /* new items this channel may contribute; 0: it only marks and scores */
} fn_recall_channel;

/* A merged candidate. id points into the list of the channel that took it. */
typedef struct fn_recall_candidate {
    const char *id;
    uint32_t channels; /* bit c set: channel c's list holds the id */
    uint32_t source;   /* the channel whose quota took it */
} fn_recall_candidate;

/*
 * Merges n_channels ranked lists into at most cap candidates in out (room
 * for cap); *got gets how many. Round-robin in channel order: each round,
 * every channel that has taken fewer than its quota of new items takes its
 * next item not taken yet (by any channel); rounds go on until cap
 * candidates are taken or no channel can take more. So out is in the order
 * taken, each channel's items in its own order, and with a cap below the
 * quotas' sum the channels share it evenly rather than the first ones
 * filling it. Then every channel marks every candidate anywhere in its whole
 * list (also past its quota, or with quota 0): bit c of channels, and
 * scores[i * n_channels + c] (scores may be NULL; else room for
 * cap * n_channels) gets the channel's score for candidate i, NAN where the
 * channel did not find it. An id twice in one list counts at its first
 * (best) place. Deterministic: the result depends on the lists only. More
 * than FN_RECALL_MAX_CHANNELS channels, a list of n > 0 items that is NULL,
 * or an empty or NULL id is FN_ERR_INVALID.
 */
fn_status fn_recall_merge(const fn_recall_channel *ch, size_t n_channels, size_t cap,
                          fn_recall_candidate *out, double *scores, size_t *got, fn_error *err);

/*
 * The user vector of the user-ANN channel: the mean of n item vectors (rows
 * of dim floats, e.g. the embeddings of the user's last N items), each
 * L2-normalised first so that every item weighs the same (the index
 * compares normalised vectors too), then the mean L2-normalised into out
 * (dim floats). No vectors, a zero or non-finite vector, or vectors whose
 * mean is zero is FN_ERR_INVALID.
 */
fn_status fn_recall_user_vector(size_t n, size_t dim, const float *vecs, float *out, fn_error *err);

/*
 * fn_recall_user_vector of the n item vectors (of the index's dimension),
 * then fn_ann_search for its k best items (ids and scores as there; the
 * items themselves are not excluded: the caller filters what the user has
 * seen).
 */
fn_status fn_recall_user_ann(fn_ann *a, size_t n, const float *item_vecs, size_t k,
                             const fn_ann_params *p, int64_t *ids, float *scores, fn_error *err);

#endif
