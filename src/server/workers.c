/*
 * workers.c - the pool of threads that runs funneld's RPCs, so that the
 * event loop keeps accepting, reading and answering health checks while a
 * Rank call (milliseconds of scoring) is computed.
 *
 * The hand-off is memcached's: the loop thread parses the transport and
 * queues a job (fn_job embedded in the transport's own struct, holding copies
 * of the request bytes); a worker runs it and puts it on a done-list, then
 * wakes the loop through a persistent event made active from the worker
 * (libevent's pthreads locking makes event_active safe there). The loop
 * thread runs each job's done(), which alone touches transport objects, so
 * no connection or request is ever used from a worker.
 *
 * The queue is bounded (--queue): a job beyond it is refused at once and the
 * transport answers "server busy", since a client waiting behind a long
 * queue would time out anyway and the memory would grow without bound.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "server_impl.h"

struct fn_workers {
    fn_server *s;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a job was queued, or stopping began */
    fn_job *head, *tail; /* queued, not started */
    size_t queued, cap;
    fn_job *done_head, *done_tail; /* finished, waiting for the loop thread */
    size_t running;                /* taken by a worker, not on the done-list yet */
    int stopping;
    pthread_t *threads;
    int n_threads;
    struct event *notify; /* made active when the done-list turns non-empty */
};

static void push_done(fn_workers *w, fn_job *job, int *was_empty)
{
    job->next = NULL;
    *was_empty = w->done_head == NULL;
    if (w->done_tail)
        w->done_tail->next = job;
    else
        w->done_head = job;
    w->done_tail = job;
}

static void *worker_main(void *arg)
{
    fn_workers *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stopping) pthread_cond_wait(&w->wake, &w->mu);
        fn_job *job = w->head;
        if (!job) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        w->head = job->next;
        if (!w->head) w->tail = NULL;
        w->queued--;
        w->running++;
        pthread_mutex_unlock(&w->mu);

        job->run(w->s, job);

        int was_empty;
        pthread_mutex_lock(&w->mu);
        push_done(w, job, &was_empty);
        w->running--;
        pthread_mutex_unlock(&w->mu);
        /* One wake-up per batch: the loop takes the whole list at once. */
        if (was_empty) event_active(w->notify, EV_READ, 0);
    }
}

/* Runs done() of every finished job, in the calling (loop) thread. */
static void drain_done(fn_workers *w)
{
    pthread_mutex_lock(&w->mu);
    fn_job *job = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (job) {
        fn_job *next = job->next;
        job->done(w->s, job);
        job = next;
    }
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    drain_done(arg);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

fn_status fn_workers_start(fn_server *s, fn_error *err)
{
    fn_workers *w = calloc(1, sizeof *w);
    if (!w) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    w->s = s;
    w->cap = (size_t)(s->cfg.queue > 0 ? s->cfg.queue : 1);
    int want = s->cfg.workers > 0 ? s->cfg.workers : online_cpus();
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    s->workers = w;
    w->notify = event_new(s->base, -1, EV_PERSIST, on_notify, w);
    w->threads = calloc((size_t)want, sizeof *w->threads);
    if (!w->notify || !w->threads)
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory setting up the worker pool");
    for (int i = 0; i < want; i++) {
        int rc = pthread_create(&w->threads[i], NULL, worker_main, w);
        if (rc != 0)
            return fn_error_set(err, FN_ERR_INTERNAL, "starting worker thread %d of %d failed: %s",
                                i + 1, want, strerror(rc));
        w->n_threads++;
    }
    fn_log_info("funneld: %d worker threads, at most %zu calls queued", w->n_threads, w->cap);
    return FN_OK;
}

int fn_workers_submit(fn_server *s, fn_job *job)
{
    fn_workers *w = s->workers;
    if (s->draining) return FN_WORKERS_DRAINING;
    if (!w || w->n_threads == 0) return -1;
    job->next = NULL;
    job->cancelled = 0;
    pthread_mutex_lock(&w->mu);
    if (w->stopping || w->queued >= w->cap) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    w->queued++;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

size_t fn_workers_queued(fn_server *s)
{
    fn_workers *w = s->workers;
    if (!w) return 0;
    pthread_mutex_lock(&w->mu);
    size_t n = w->queued;
    pthread_mutex_unlock(&w->mu);
    return n;
}

int fn_workers_idle(fn_server *s)
{
    fn_workers *w = s->workers;
    if (!w) return 1;
    pthread_mutex_lock(&w->mu);
    int idle = !w->queued && !w->running && !w->done_head;
    pthread_mutex_unlock(&w->mu);
    return idle;
}

int fn_workers_threads(const fn_server *s)
{
    return s->workers ? s->workers->n_threads : 0;
}

void fn_workers_stop(fn_server *s)
{
    fn_workers *w = s->workers;
    if (!w) return;
    /*
     * Jobs not started are cancelled rather than run: the loop has stopped, so
     * their answers could not be sent anyway. Running ones finish (a Rank call
     * is milliseconds) and are answered below, before the transports close.
     */
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    size_t cancelled = 0;
    while (w->head) {
        fn_job *job = w->head;
        w->head = job->next;
        job->cancelled = 1;
        int was_empty;
        push_done(w, job, &was_empty);
        cancelled++;
    }
    w->tail = NULL;
    w->queued = 0;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->n_threads; i++) pthread_join(w->threads[i], NULL);
    if (cancelled) fn_log_info("funneld: shutdown cancelled %zu queued calls", cancelled);
    drain_done(w);
    if (w->notify) event_free(w->notify);
    free(w->threads);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
    free(w);
    s->workers = NULL;
}
