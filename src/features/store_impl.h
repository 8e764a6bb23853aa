/*
 * store_impl.h - the store's fields and error helpers, shared by store.c
 * (records, batches, counters, metadata) and store_numbers.c (item numbers).
 */
#ifndef FN_FEATURES_STORE_IMPL_H
#define FN_FEATURES_STORE_IMPL_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>

#include "store.h"

/* Column families: ours first, in this order, then any others the database has. */
enum { CF_DEFAULT, CF_USERS, CF_ITEMS, CF_COUNTERS, CF_META, CF_NUMBERS, CF_OURS };

#define N_STRIPES 256

/* The store's own "file header": a format version in the meta family. Format 2 added item
 * numbers; a format 1 store is upgraded when opened for writing. */
#define FORMAT_KEY        "funnel.store.format"
#define FORMAT_VERSION    "2"
#define FORMAT_UNNUMBERED "1"

typedef struct cache_shard cache_shard;

struct fn_store {
    char *path;
    int read_only;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_readoptions_t *ropts;
    rocksdb_readoptions_t *scan_opts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_column_family_handle_t **cfs; /* ours first (CF_*), then any others found */
    size_t n_cfs;
    /* Single puts hold it shared (plus their stripe), a batch commit exclusively. */
    pthread_rwlock_t writers;
    pthread_mutex_t stripes[N_STRIPES];
    cache_shard *shards;
    size_t n_shards;
    atomic_uint_least64_t hits, misses;
    /* Item numbers: 0 in a store of format 1 opened read-only (it has none yet). */
    int numbered;
    atomic_int_least64_t next_number; /* the number the next new item gets */
};

/*
 * "OP: store PATH, family FAMILY, id "ID": DETAIL" - every message names the
 * operation and the object; family and id are left out when NULL.
 */
__attribute__((format(printf, 8, 9))) fn_status st_error(const fn_store *s, fn_error *err,
                                                         fn_status code, const char *op,
                                                         const char *family, const char *id,
                                                         size_t id_len, const char *fmt, ...);
/* Turns RocksDB's errptr into a status (by its kind) and frees it. */
fn_status st_rocksdb_fail(const fn_store *s, fn_error *err, const char *op, const char *family,
                          const char *id, size_t id_len, char *rerr);
/* An id (or key) of 1 to FN_STORE_ID_MAX bytes. */
fn_status st_check_id(const fn_store *s, const char *op, const char *family, const char *id,
                      size_t id_len, fn_error *err);
fn_status st_check_writable(const fn_store *s, const char *op, fn_error *err);

/* ---- item numbers (store_numbers.c) ---- */

/*
 * At open, after the format check (old_format: the store says format 1, from
 * before item numbers): finds the next number; a format 1 store opened for
 * writing gets its items numbered in id byte order and the format marker
 * moved on, in one synced write; opened read-only it stays without numbers.
 */
fn_status st_numbers_open(fn_store *s, int old_format, fn_error *err);

/*
 * Adds to wb the number keys of an item id that has no number yet, nothing
 * when it has one (an item put before and deleted keeps its number). Callers
 * skip it when the id has a stored record: every stored item is numbered.
 * Writers of the id must be excluded by the caller (its stripe or the batch
 * lock), so an id is numbered once.
 */
fn_status st_number_stage(fn_store *s, rocksdb_writebatch_t *wb, const char *id, size_t id_len,
                          fn_error *err);

#endif
