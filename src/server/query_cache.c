/*
 * query_cache.c - the LRU cache of query vectors: an open-addressing table
 * of slots (keys hashed with FNV-1a, linear probing, tombstone-free deletion
 * by re-inserting the rest of the cluster) and a doubly linked recency list
 * through the entries, all under one mutex. Entries are preallocated, so a
 * warm cache allocates only the keys.
 */
#include "query_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *key;
    size_t len;
    uint64_t hash;
    int prev, next; /* recency list; -1 ends it */
} entry;

struct fn_query_cache {
    pthread_mutex_t lock;
    size_t cap, dim, n, n_slots;
    entry *e;
    float *vecs;    /* cap x dim */
    int *slots;     /* n_slots: entry index or -1 */
    int head, tail; /* most and least recently used */
    uint64_t hits, misses;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

fn_query_cache *fn_query_cache_new(size_t capacity, size_t dim)
{
    fn_query_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cap = capacity, c->dim = dim, c->head = c->tail = -1;
    c->n_slots = 16;
    while (c->n_slots < 2 * capacity) c->n_slots *= 2;
    c->e = calloc(capacity ? capacity : 1, sizeof *c->e);
    c->vecs = malloc((capacity ? capacity : 1) * dim * sizeof *c->vecs);
    c->slots = malloc(c->n_slots * sizeof *c->slots);
    if (!c->e || !c->vecs || !c->slots) {
        free(c->e), free(c->vecs), free(c->slots), free(c);
        return NULL;
    }
    for (size_t i = 0; i < c->n_slots; i++) c->slots[i] = -1;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void fn_query_cache_free(fn_query_cache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) free(c->e[i].key);
    pthread_mutex_destroy(&c->lock);
    free(c->e), free(c->vecs), free(c->slots), free(c);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find(const fn_query_cache *c, const char *key, size_t len, uint64_t h)
{
    size_t i = h & (c->n_slots - 1);
    for (; c->slots[i] >= 0; i = (i + 1) & (c->n_slots - 1)) {
        const entry *e = &c->e[c->slots[i]];
        if (e->hash == h && e->len == len && !memcmp(e->key, key, len)) break;
    }
    return i;
}

static void unlink_entry(fn_query_cache *c, int x)
{
    entry *e = &c->e[x];
    if (e->prev >= 0)
        c->e[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next >= 0)
        c->e[e->next].prev = e->prev;
    else
        c->tail = e->prev;
}

static void push_front(fn_query_cache *c, int x)
{
    c->e[x].prev = -1;
    c->e[x].next = c->head;
    if (c->head >= 0) c->e[c->head].prev = x;
    c->head = x;
    if (c->tail < 0) c->tail = x;
}

/* Empties slot i and moves the rest of its probe cluster so lookups still find them. */
static void remove_slot(fn_query_cache *c, size_t i)
{
    const size_t mask = c->n_slots - 1;
    c->slots[i] = -1;
    for (size_t j = (i + 1) & mask; c->slots[j] >= 0; j = (j + 1) & mask) {
        int x = c->slots[j];
        c->slots[j] = -1;
        const entry *e = &c->e[x];
        c->slots[find(c, e->key, e->len, e->hash)] = x;
    }
}

int fn_query_cache_get(fn_query_cache *c, const char *text, size_t len, float *out)
{
    if (!c->cap) return 0;
    const uint64_t h = fnv1a(text, len);
    pthread_mutex_lock(&c->lock);
    const size_t i = find(c, text, len, h);
    const int x = c->slots[i];
    if (x >= 0) {
        memcpy(out, c->vecs + (size_t)x * c->dim, c->dim * sizeof *out);
        unlink_entry(c, x);
        push_front(c, x);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return x >= 0;
}

void fn_query_cache_put(fn_query_cache *c, const char *text, size_t len, const float *vec)
{
    if (!c->cap) return;
    const uint64_t h = fnv1a(text, len);
    char *key = malloc(len ? len : 1);
    if (!key) return; /* a cache that cannot grow just misses */
    memcpy(key, text, len);
    pthread_mutex_lock(&c->lock);
    size_t i = find(c, text, len, h);
    int x = c->slots[i];
    if (x >= 0) { /* another thread stored it meanwhile */
        pthread_mutex_unlock(&c->lock);
        free(key);
        return;
    }
    if (c->n < c->cap) {
        x = (int)c->n++;
    } else { /* evict the least recently used */
        x = c->tail;
        unlink_entry(c, x);
        remove_slot(c, find(c, c->e[x].key, c->e[x].len, c->e[x].hash));
        free(c->e[x].key);
        i = find(c, text, len, h);
    }
    c->e[x] = (entry){key, len, h, -1, -1};
    memcpy(c->vecs + (size_t)x * c->dim, vec, c->dim * sizeof *vec);
    c->slots[i] = x;
    push_front(c, x);
    pthread_mutex_unlock(&c->lock);
}

void fn_query_cache_stats(fn_query_cache *c, uint64_t *hits, uint64_t *misses)
{
    pthread_mutex_lock(&c->lock);
    *hits = c->hits, *misses = c->misses;
    pthread_mutex_unlock(&c->lock);
}
