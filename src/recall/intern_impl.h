/*
 * intern_impl.h - string interning for the recall channels (internal): each
 * distinct id string gets a dense index 0, 1, 2, ... in order of first
 * appearance, so that popularity and co-occurrence count over arrays instead
 * of strings. Open addressing over FNV-1a hashes; the strings are copied.
 */
#ifndef FN_RECALL_INTERN_IMPL_H
#define FN_RECALL_INTERN_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct fn_intern {
    char **strs;     /* index -> string (owned, NUL-terminated) */
    size_t n, cap;   /* strings held, room in strs */
    uint32_t *slots; /* hash table: index + 1, 0 for empty */
    size_t nslots;   /* a power of two */
} fn_intern;

/* The table's hash of a NUL-terminated id (FNV-1a, high bits folded in). */
uint64_t fn_intern_hash(const char *s);

/* Frees everything; leaves an empty, reusable table. */
void fn_intern_free(fn_intern *t);

/*
 * The index of s, added when new. FN_ERR_NOMEM, or FN_ERR_INVALID past
 * UINT32_MAX - 1 strings.
 */
fn_status fn_intern_put(fn_intern *t, const char *s, uint32_t *index, fn_error *err);

/* The index of s, or -1 when it was never put. */
int64_t fn_intern_find(const fn_intern *t, const char *s);

#endif
