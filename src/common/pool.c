/*
 * pool.c - worker threads for parallel loops, with the caller taking part.
 *
 * A forward pass runs dozens of short parallel loops, each a few tens of
 * microseconds; waking sleeping threads through the kernel costs about as
 * much. So workers spin (with pause) for up to SPIN_NS after their last loop
 * before they sleep on a condition variable, and the caller spins while it
 * waits for the last worker. Idle pools sleep; busy ones never enter the
 * kernel.
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_NS 2000000u /* 2 ms */
/* Pauses (~50 ns each) the caller spins on the last workers before it yields the core. */
#define YIELD_AFTER_SPINS 2048u

struct fn_pool {
    int nthreads; /* workers + caller */
    pthread_t *workers;
    pthread_mutex_t lock; /* guards sleepers and the condition */
    pthread_cond_t wake;
    pthread_mutex_t run_lock; /* one loop at a time */
    int sleepers;
    atomic_ulong generation;
    atomic_int stopping;
    /* The loop in progress, published by the release increment of generation. */
    fn_pool_task fn;
    void *ctx;
    size_t n;
    atomic_size_t next;
    atomic_int active; /* workers still inside the current loop */
};

/* Takes indices until none are left. */
static void drain(fn_pool *p)
{
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) return;
        p->fn(p->ctx, i);
    }
}

/* Waits until generation moves past seen (or the pool stops); spins first, then sleeps. */
static void await_work(fn_pool *p, unsigned long seen)
{
    uint64_t start = fn_now_ns();
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
            atomic_load(&p->stopping))
            return;
        cpu_relax();
        if ((spins & 255) == 255 && fn_now_ns() - start > SPIN_NS) break;
    }
    pthread_mutex_lock(&p->lock);
    p->sleepers++;
    while (atomic_load(&p->generation) == seen && !atomic_load(&p->stopping))
        pthread_cond_wait(&p->wake, &p->lock);
    p->sleepers--;
    pthread_mutex_unlock(&p->lock);
}

static void *worker(void *arg)
{
    fn_pool *p = arg;
    unsigned long seen = 0;
    for (;;) {
        await_work(p, seen);
        if (atomic_load(&p->stopping)) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        drain(p);
        atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
    }
    return NULL;
}

fn_status fn_pool_new(int threads, fn_pool **out, fn_error *err)
{
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    fn_pool *p = calloc(1, sizeof *p);
    if (!p) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    p->nthreads = threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->workers) {
        fn_pool_free(p);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&p->workers[i], NULL, worker, p) != 0) {
            p->nthreads = i + 1; /* the ones started, plus the caller */
            fn_pool_free(p);
            return fn_error_set(err, FN_ERR_INTERNAL, "cannot start worker thread %d", i);
        }
    }
    *out = p;
    return FN_OK;
}

void fn_pool_free(fn_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stopping, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    if (p->workers)
        for (int i = 0; i < p->nthreads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->run_lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}

int fn_pool_threads(const fn_pool *p)
{
    return p ? p->nthreads : 1;
}

void fn_pool_run(fn_pool *p, size_t n, fn_pool_task fn, void *ctx)
{
    if (!p || p->nthreads == 1 || n <= 1) {
        for (size_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    atomic_store(&p->active, p->nthreads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    /* Under the lock: a worker about to sleep either sees the new generation or is woken. */
    pthread_mutex_lock(&p->lock);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p);
    /* A worker the kernel has descheduled (another process wants the core) would keep the
       caller spinning for a whole time slice, every loop: after a short spin, give the core
       up so that it can run. */
    for (unsigned spins = 0; atomic_load_explicit(&p->active, memory_order_acquire) > 0; spins++) {
        cpu_relax();
        if (spins >= YIELD_AFTER_SPINS) sched_yield();
    }
    pthread_mutex_unlock(&p->run_lock);
}
