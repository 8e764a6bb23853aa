/*
 * query_cache.h - a bounded LRU cache of query vectors, shared by the
 * request threads: a repeated query skips the encoder. Thread-safe (one
 * mutex; lookups copy the vector out).
 */
#ifndef FN_SERVER_QUERY_CACHE_H
#define FN_SERVER_QUERY_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fn_query_cache fn_query_cache;

/* capacity entries of dim floats; NULL when out of memory. capacity 0 caches nothing. */
fn_query_cache *fn_query_cache_new(size_t capacity, size_t dim);
void fn_query_cache_free(fn_query_cache *c);
/* Copies the cached vector of text into out (dim floats) and returns 1, or returns 0. */
int fn_query_cache_get(fn_query_cache *c, const char *text, size_t len, float *out);
/* Stores text's vector, evicting the least recently used entry when full. */
void fn_query_cache_put(fn_query_cache *c, const char *text, size_t len, const float *vec);
/* Lookups that hit and missed so far. */
void fn_query_cache_stats(fn_query_cache *c, uint64_t *hits, uint64_t *misses);

#endif
