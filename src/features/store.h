/*
 * store.h - the feature store: user and item records in an embedded RocksDB.
 *
 * The ranking path reads a user record and hundreds of item records per
 * request; Kafka ingestion and `funnel store load` write them. A record is
 * (version, tensorflow.Features, optional float vector), kept on disk as a
 * serialized funnel.v1.StoredRecord under its id in the column family of its
 * kind (users, items). Three more families hold uint64 counters, raw
 * key/value metadata, and the items' numbers (see below).
 *
 * Contract:
 *  - Last writer wins by version: a put with a lower version than the stored
 *    one is ignored and the caller is told so; an equal version overwrites,
 *    so replaying an update is harmless and a corrected record can be reloaded
 *    under the same version. The read-compare-write is atomic against other
 *    putters in the same process (striped mutexes by id hash; a batch commit
 *    excludes all other writers); across processes RocksDB's LOCK file admits
 *    one writer.
 *  - A put, delete, counter add, meta put or batch commit that returned FN_OK
 *    is durable: it went through the write-ahead log with fsync.
 *  - Reads go through a bounded LRU cache (entries and bytes) of immutable,
 *    reference-counted record handles, so a cache hit costs a hash lookup and
 *    a reference, never a copy. Handles stay valid after the entry is evicted
 *    or replaced, until the caller releases them. A cached record is always
 *    the stored one: writes drop it before and after they reach RocksDB, so a
 *    read that starts after a put returned never sees the older record, and
 *    no reader sees a record and then an older one.
 *  - Ids (and counter and meta keys) are byte strings of 1 to FN_STORE_ID_MAX
 *    bytes, not NUL-terminated in general; `funnel store load` writes int64
 *    ids as decimal text.
 *  - Every function is thread-safe on one fn_store, except close; a batch or
 *    an iterator is used by one thread at a time.
 */
#ifndef FN_STORE_H
#define FN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/status.h"
#include "tensorflow/feature.pb-c.h"

#define FN_STORE_ID_MAX 1024

typedef struct fn_store fn_store;
typedef struct fn_store_record fn_store_record;
typedef struct fn_store_batch fn_store_batch;
typedef struct fn_store_iter fn_store_iter;

/* The families that hold records. Counters and metadata have their own calls. */
typedef enum fn_store_family {
    FN_STORE_USERS = 0,
    FN_STORE_ITEMS = 1,
} fn_store_family;

/* "users" or "items" ("?" for anything else). */
const char *fn_store_family_name(fn_store_family family);
/* Parses "users" or "items"; FN_ERR_INVALID otherwise. */
fn_status fn_store_family_parse(const char *name, fn_store_family *out);

typedef struct fn_store_options {
    /* Open an existing store for reading only: no lock is taken, so this works while another
     * process writes (it sees the store as of the open); writes return FN_ERR_UNSUPPORTED. */
    int read_only;
    /* Read-write only: create the folder and the store when missing. */
    int create_if_missing;
    /* Cache bounds; 0 takes the default (100000 records, 256 MiB). A record is charged the
     * memory it holds, including its decoded features. */
    size_t cache_max_entries;
    size_t cache_max_bytes;
    /* No cache: every read decodes from RocksDB (tools that scan once). */
    int cache_disabled;
} fn_store_options;

/*
 * Opens the store in folder path (opts may be NULL: read-write, no create,
 * default cache). Missing families are created. A folder that holds no store
 * (or something else) is FN_ERR_NOT_FOUND / FN_ERR_INVALID; a store that
 * another process (or this one) has open for writing is FN_ERR_IO with a
 * message saying it is locked; a newer on-disk format is FN_ERR_UNSUPPORTED.
 */
fn_status fn_store_open(const char *path, const fn_store_options *opts, fn_store **out,
                        fn_error *err);
/* Closes the store (free its batches and iterators first). Record handles obtained from it stay
 * valid. Safe on NULL. */
void fn_store_close(fn_store *s);
/* The folder the store was opened from. */
const char *fn_store_path(const fn_store *s);

/* ---- records ---- */

/*
 * Stores a record for id unless the stored one has a higher version.
 * features may be NULL (none); vector/n_vector may be NULL/0 (no vector).
 * *applied (may be NULL) is 1 when written, 0 when ignored as older. A
 * stored value that does not decode is FN_ERR_CORRUPT (it is not overwritten:
 * its version is unknown; fn_store_delete clears it).
 */
fn_status fn_store_put(fn_store *s, fn_store_family family, const char *id, size_t id_len,
                       uint64_t version, const Tensorflow__Features *features, const float *vector,
                       size_t n_vector, int *applied, fn_error *err);

/*
 * Looks up one record. On FN_OK *out is a handle the caller releases; a
 * missing id is FN_ERR_NOT_FOUND (with a message naming it); a stored value
 * that does not decode is FN_ERR_CORRUPT naming the id.
 */
fn_status fn_store_get(fn_store *s, fn_store_family family, const char *id, size_t id_len,
                       fn_store_record **out, fn_error *err);

/*
 * Looks up n ids at once (one RocksDB MultiGet for the cache misses).
 * id_lens may be NULL when every id is a NUL-terminated string. On FN_OK
 * out[i] is a handle for ids[i] or NULL when it has no record; release the
 * handles (fn_store_records_release). On error no handles are returned (out
 * is all NULL); a corrupt stored value fails the call naming its id.
 */
fn_status fn_store_multi_get(fn_store *s, fn_store_family family, size_t n, const char *const *ids,
                             const size_t *id_lens, fn_store_record **out, fn_error *err);

/* Removes id's record whatever its version (repair, tests); absent ids are fine. */
fn_status fn_store_delete(fn_store *s, fn_store_family family, const char *id, size_t id_len,
                          fn_error *err);

/* ---- record handles: immutable, reference-counted, safe to share across threads ---- */

uint64_t fn_store_record_version(const fn_store_record *r);
/* The record's features, or NULL when it has none; valid while the handle is held. */
const Tensorflow__Features *fn_store_record_features(const fn_store_record *r);
/* The record's vector and its length in *n (NULL and 0 when it has none). */
const float *fn_store_record_vector(const fn_store_record *r, size_t *n);
/* Takes another reference (for handing the record to another owner). Returns r. */
fn_store_record *fn_store_record_retain(fn_store_record *r);
/* Drops a reference; the last one frees the record. Safe on NULL. */
void fn_store_record_release(fn_store_record *r);
/* Releases n handles (NULL entries skipped) and sets them to NULL. */
void fn_store_records_release(fn_store_record **records, size_t n);

/* ---- batches: bulk loads with one fsync per commit ---- */

fn_status fn_store_batch_new(fn_store *s, fn_store_batch **out, fn_error *err);
/* Queues a put (serialized now; the arguments may be reused at once). */
fn_status fn_store_batch_put(fn_store_batch *b, fn_store_family family, const char *id,
                             size_t id_len, uint64_t version, const Tensorflow__Features *features,
                             const float *vector, size_t n_vector, fn_error *err);
/* Puts queued since the last commit. */
size_t fn_store_batch_count(const fn_store_batch *b);
/*
 * Applies the queued puts atomically with one synced write, under the same
 * version rule as fn_store_put (puts of one id within the batch are compared
 * with each other in order, too). *applied and *ignored (may be NULL) count
 * the puts written and those ignored as older. Empties the batch, also on
 * failure, in which case nothing of it was written.
 */
fn_status fn_store_batch_commit(fn_store_batch *b, size_t *applied, size_t *ignored, fn_error *err);
/* Frees the batch, dropping uncommitted puts. Safe on NULL. */
void fn_store_batch_free(fn_store_batch *b);

/* ---- iteration (dump): every record of a family in id byte order, not cached ---- */

fn_status fn_store_iter_open(fn_store *s, fn_store_family family, fn_store_iter **out,
                             fn_error *err);
/*
 * The next record: *id and *id_len stay valid until the next call, *rec is a
 * handle the caller releases. FN_END after the last; FN_ERR_CORRUPT names an
 * undecodable record's id.
 */
fn_status fn_store_iter_next(fn_store_iter *it, const char **id, size_t *id_len,
                             fn_store_record **rec, fn_error *err);
void fn_store_iter_close(fn_store_iter *it);

/* ---- counters: uint64 per key (wrapping at 2^64), durable like puts ---- */

/* Adds delta to the counter at key (missing counts as 0); *value (may be NULL) gets the sum. */
fn_status fn_store_counter_add(fn_store *s, const char *key, size_t key_len, uint64_t delta,
                               uint64_t *value, fn_error *err);
/* The counter's value, 0 when it was never added to. */
fn_status fn_store_counter_get(fn_store *s, const char *key, size_t key_len, uint64_t *value,
                               fn_error *err);

/* ---- metadata: raw string keys and byte values. Keys starting "funnel." are reserved. ---- */

fn_status fn_store_meta_put(fn_store *s, const char *key, const void *value, size_t n,
                            fn_error *err);
/* Appends the value to out; FN_ERR_NOT_FOUND when the key is missing. */
fn_status fn_store_meta_get(fn_store *s, const char *key, fn_buf *out, fn_error *err);

/*
 * ---- item numbers: a stable int64 per item id ----
 *
 * Where a string id cannot go (the ANN index's int64 ids) an item is known
 * by its number. The first put of an item id the store has not numbered
 * gives it the next number (0, 1, 2, ... in the order items first arrive; a
 * write that fails can leave a gap) in the same synced write as the record.
 * A number never changes and is never reused: deleting the record keeps it,
 * and a later put of the id finds it again. A store of format 1 (from before
 * numbers) gets its items numbered in id byte order when it is first opened
 * for writing; opened read-only it has none, and these calls say so
 * (FN_ERR_UNSUPPORTED).
 */

/* The item's number; FN_ERR_NOT_FOUND for an id never stored. */
fn_status fn_store_item_number(fn_store *s, const char *id, size_t id_len, int64_t *out,
                               fn_error *err);
/* Appends the item id of number to id; FN_ERR_NOT_FOUND when no item has it. */
fn_status fn_store_item_by_number(fn_store *s, int64_t number, fn_buf *id, fn_error *err);
/* One past the highest number given (0 when none): what the next new item gets. */
int64_t fn_store_item_numbers_end(fn_store *s);

/* Called per numbered item; a status other than FN_OK stops the scan and is returned. */
typedef fn_status (*fn_store_number_fn)(void *ctx, int64_t number, const char *id, size_t id_len,
                                        fn_error *err);
/* Calls fn for every item numbered from `from` on, in number order. */
fn_status fn_store_item_numbers_scan(fn_store *s, int64_t from, fn_store_number_fn fn, void *ctx,
                                     fn_error *err);

/*
 * A number -> item id table read in one scan, for the ranking path that turns
 * hundreds of ANN results into ids per request. Immutable once loaded (items
 * numbered later are not in it), so threads share it freely.
 */
typedef struct fn_store_item_names fn_store_item_names;

fn_status fn_store_item_names_load(fn_store *s, fn_store_item_names **out, fn_error *err);
/* Safe on NULL. */
void fn_store_item_names_free(fn_store_item_names *t);
/* Numbered items in the table. */
size_t fn_store_item_names_count(const fn_store_item_names *t);
/* The id of number (NUL-terminated; its length in *len, may be NULL), or NULL when none. */
const char *fn_store_item_names_get(const fn_store_item_names *t, int64_t number, size_t *len);

/* ---- cache figures ---- */

typedef struct fn_store_stats {
    uint64_t cache_hits;      /* lookups answered from the cache */
    uint64_t cache_misses;    /* lookups that went to RocksDB (found or not) */
    uint64_t cache_evictions; /* entries pushed out by the bounds */
    size_t cache_entries;     /* records cached now */
    size_t cache_bytes;       /* their charge now */
    size_t cache_max_entries; /* the bounds in force (0 when the cache is disabled) */
    size_t cache_max_bytes;
} fn_store_stats;

void fn_store_get_stats(fn_store *s, fn_store_stats *out);

#endif
