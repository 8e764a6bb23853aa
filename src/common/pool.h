/*
 * pool.h - a fixed set of worker threads that run one parallel loop at a time:
 * fn_pool_run(pool, n, fn, ctx) calls fn(ctx, i) for every i in [0, n) across
 * the workers and the calling thread, and returns when all are done. Compute
 * kernels split rows or heads this way; the pool is created once per backend.
 */
#ifndef FN_POOL_H
#define FN_POOL_H

#include <stddef.h>

#include "status.h"

typedef struct fn_pool fn_pool;
typedef void (*fn_pool_task)(void *ctx, size_t i);

/* threads: total parallelism including the caller (0: the number of online CPUs). */
fn_status fn_pool_new(int threads, fn_pool **out, fn_error *err);
void fn_pool_free(fn_pool *p);
int fn_pool_threads(const fn_pool *p);
/*
 * Runs fn(ctx, i) for i in [0, n). Calls from several threads are serialised.
 * With n == 1 or a one-thread pool, runs inline.
 */
void fn_pool_run(fn_pool *p, size_t n, fn_pool_task fn, void *ctx);

#endif
