/*
 * arena.h - a bump allocator for data that dies together: a parsed record, a
 * request. Allocation is a pointer increment; everything is released at once
 * by fn_arena_reset (which keeps the memory for the next use) or fn_arena_free.
 */
#ifndef FN_ARENA_H
#define FN_ARENA_H

#include <stddef.h>

typedef struct fn_arena fn_arena;

/* chunk: bytes per block (0 for 64 KiB). NULL when out of memory. */
fn_arena *fn_arena_new(size_t chunk);
/* 16-byte aligned memory, or NULL when out of memory. */
void *fn_arena_alloc(fn_arena *a, size_t n);
/* A NUL-terminated copy of the n bytes at s, or NULL when out of memory. */
char *fn_arena_strndup(fn_arena *a, const char *s, size_t n);
/* Forgets every allocation; keeps one block for reuse. */
void fn_arena_reset(fn_arena *a);
void fn_arena_free(fn_arena *a);
/* Bytes handed out since the last reset. */
size_t fn_arena_used(const fn_arena *a);

#endif
