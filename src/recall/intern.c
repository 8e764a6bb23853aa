/*
 * intern.c - string -> dense index for the recall channels (see
 * intern_impl.h).
 */
#include "intern_impl.h"

#include <stdlib.h>
#include <string.h>

uint64_t fn_intern_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

void fn_intern_free(fn_intern *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->strs[i]);
    free(t->strs);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

int64_t fn_intern_find(const fn_intern *t, const char *s)
{
    if (!t->nslots) return -1;
    size_t mask = t->nslots - 1;
    for (size_t h = (size_t)fn_intern_hash(s) & mask;; h = (h + 1) & mask) {
        uint32_t v = t->slots[h];
        if (!v) return -1;
        if (strcmp(t->strs[v - 1], s) == 0) return (int64_t)(v - 1);
    }
}

static fn_status grow(fn_intern *t, fn_error *err)
{
    size_t nslots = t->nslots ? t->nslots * 2 : 64;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots) return fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu ids", t->n);
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)fn_intern_hash(t->strs[i]) & (nslots - 1);
        while (slots[h]) h = (h + 1) & (nslots - 1);
        slots[h] = (uint32_t)(i + 1);
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    return FN_OK;
}

fn_status fn_intern_put(fn_intern *t, const char *s, uint32_t *index, fn_error *err)
{
    int64_t found = fn_intern_find(t, s);
    if (found >= 0) {
        *index = (uint32_t)found;
        return FN_OK;
    }
    if (t->n >= UINT32_MAX - 1)
        return fn_error_set(err, FN_ERR_INVALID, "more than %u distinct ids", UINT32_MAX - 1);
    if ((t->n + 1) * 2 > t->nslots && grow(t, err) != FN_OK) return FN_ERR_NOMEM;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **strs = realloc(t->strs, cap * sizeof *strs);
        if (!strs) return fn_error_set(err, FN_ERR_NOMEM, "out of memory for %zu ids", t->n);
        t->strs = strs;
        t->cap = cap;
    }
    char *copy = strdup(s);
    if (!copy) return fn_error_set(err, FN_ERR_NOMEM, "out of memory for id '%.64s'", s);
    size_t mask = t->nslots - 1, h = (size_t)fn_intern_hash(s) & mask;
    while (t->slots[h]) h = (h + 1) & mask;
    t->strs[t->n] = copy;
    t->slots[h] = (uint32_t)(t->n + 1);
    *index = (uint32_t)t->n++;
    return FN_OK;
}
