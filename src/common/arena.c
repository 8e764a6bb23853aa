/* arena.c - bump allocation over a list of blocks. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct block {
    struct block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} block;

struct fn_arena {
    block *head; /* current block first */
    size_t chunk;
    size_t used;
};

fn_arena *fn_arena_new(size_t chunk)
{
    fn_arena *a = calloc(1, sizeof *a);
    if (a) a->chunk = chunk ? chunk : 65536;
    return a;
}

void *fn_arena_alloc(fn_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    block *b = a->head;
    if (!b || b->size - b->used < n) {
        size_t size = n > a->chunk ? n : a->chunk;
        block *nb = malloc(sizeof *nb + size);
        if (!nb) return NULL;
        nb->size = size;
        nb->used = 0;
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    a->used += n;
    return p;
}

char *fn_arena_strndup(fn_arena *a, const char *s, size_t n)
{
    char *copy = fn_arena_alloc(a, n + 1);
    if (!copy) return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

void fn_arena_reset(fn_arena *a)
{
    /* Keep the largest block: after a few records it fits a whole one. */
    block *keep = NULL;
    for (block *b = a->head, *next; b; b = next) {
        next = b->next;
        if (!keep || b->size > keep->size) {
            if (keep) free(keep);
            keep = b;
        } else {
            free(b);
        }
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
    a->used = 0;
}

void fn_arena_free(fn_arena *a)
{
    if (!a) return;
    for (block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

size_t fn_arena_used(const fn_arena *a)
{
    return a->used;
}
