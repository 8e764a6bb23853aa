/* pool.c - worker threads for parallel loops, with the caller taking part. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct fn_pool {
    int nthreads; /* workers + caller */
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_mutex_t run_lock; /* one loop at a time */
    unsigned long generation;
    int stopping;
    /* The loop in progress. */
    fn_pool_task fn;
    void *ctx;
    size_t n;
    atomic_size_t next;
    int active; /* workers still inside the current loop */
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

static void *worker(void *arg)
{
    fn_pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stopping && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
        if (p->stopping) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        drain(p);
        pthread_mutex_lock(&p->lock);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
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
    pthread_cond_init(&p->done, NULL);
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
    p->stopping = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    if (p->workers)
        for (int i = 0; i < p->nthreads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->run_lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
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
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    p->active = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p);
    pthread_mutex_lock(&p->lock);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->run_lock);
}
