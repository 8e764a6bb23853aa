/*
 * fm_train.c - the Hogwild epoch loop FM and FFM share (see fm_train.h):
 * shuffled chunks over the pool's threads, per-epoch validation, early
 * stopping with the best epoch's weights kept, the report and the progress
 * bar.
 */
#include "fm_train.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/pool.h"
#include "common/progress.h"

/* Examples per chunk: small enough to balance threads and to move the progress bar, large
   enough that taking a chunk costs nothing next to its updates. */
#define CHUNK 1024

/* Examples whose weights are fetched ahead of their update (when the kind can). */
#define PREFETCH_AHEAD 1

typedef struct epoch_job {
    const fn_fm_trainer *t;
    const fn_dataset *d;
    const size_t *order;
    double *chunk_loss; /* per chunk, summed in chunk order afterwards: reproducible */
    /* What the progress bar shows while the epoch runs. */
    atomic_size_t done;
    _Atomic double loss_sum;
    atomic_flag drawing;
    fn_progress *bar;
    uint64_t bar_base; /* examples of earlier epochs */
    int epoch, epochs;
} epoch_job;

static void add_double(_Atomic double *a, double x)
{
    double old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, old + x, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static void epoch_task(void *ctx, size_t c)
{
    epoch_job *j = ctx;
    size_t lo = c * CHUNK, hi = lo + CHUNK < j->d->n ? lo + CHUNK : j->d->n;
    double loss = 0;
    for (size_t i = lo; i < hi; i++) {
        if (j->t->prefetch && i + PREFETCH_AHEAD < hi)
            j->t->prefetch(j->t->m, j->d, j->order[i + PREFETCH_AHEAD]);
        loss += j->t->step(j->t->m, j->d, j->order[i]);
    }
    j->chunk_loss[c] = loss;
    if (!j->bar) return;
    size_t done = atomic_fetch_add(&j->done, hi - lo) + (hi - lo);
    add_double(&j->loss_sum, loss);
    /* fn_progress is not thread-safe: whoever holds the flag draws, the others go on. */
    if (atomic_flag_test_and_set(&j->drawing)) return;
    char extra[64];
    snprintf(extra, sizeof extra, "epoch %d/%d loss %.5f", j->epoch, j->epochs,
             atomic_load(&j->loss_sum) / (double)done);
    fn_progress_update(j->bar, j->bar_base + done, extra);
    atomic_flag_clear(&j->drawing);
}

typedef struct valid_job {
    const fn_model *m;
    const fn_dataset *d;
    float *out;
    fn_status st;
    fn_error err;
    atomic_flag failed;
} valid_job;

static void valid_task(void *ctx, size_t c)
{
    valid_job *j = ctx;
    size_t lo = c * CHUNK, n = j->d->n - lo < CHUNK ? j->d->n - lo : CHUNK;
    fn_error e = {0};
    fn_status st = j->m->ops->predict(j->m, j->d, lo, n, j->out + lo, &e);
    if (st != FN_OK && !atomic_flag_test_and_set(&j->failed)) { /* the first error is kept */
        j->st = st;
        j->err = e;
    }
}

/* The model's predictions for the validation set, over the pool's threads. */
static fn_status valid_predict(fn_pool *pool, const fn_model *m, const fn_dataset *d, float *probs,
                               fn_error *err)
{
    valid_job j = {.m = m, .d = d, .out = probs, .st = FN_OK, .failed = ATOMIC_FLAG_INIT};
    fn_pool_run(pool, (d->n + CHUNK - 1) / CHUNK, valid_task, &j);
    if (j.st != FN_OK) {
        if (err) *err = j.err;
        return fn_error_prefix(err, "train: validation");
    }
    return FN_OK;
}

fn_status fn_fm_train_epochs(const fn_fm_trainer *t, const fn_train_options *o,
                             const fn_dataset *train, const fn_dataset *valid, fn_train_report *rep,
                             fn_error *err)
{
    const char *kind = fn_model_kind_name(t->m->hp.kind);
    size_t n = train->n, n_chunks = (n + CHUNK - 1) / CHUNK;
    size_t *order = malloc(n * sizeof *order);
    double *chunk_loss = malloc(n_chunks * sizeof *chunk_loss);
    float *best = valid ? fn_fm_alloc(t->n_params) : NULL;
    float *probs = valid ? malloc(valid->n * sizeof *probs) : NULL;
    fn_pool *pool = NULL;
    fn_status st = FN_OK;
    if (!order || !chunk_loss || (valid && (!best || !probs))) {
        st = fn_error_set(err, FN_ERR_NOMEM, "%s train: out of memory for %zu examples", kind, n);
        goto done;
    }
    if ((st = fn_pool_new(o->threads, &pool, err)) != FN_OK) goto done;

    /* The shuffle has its own stream, apart from the initialisation's (seeded by seed too). */
    uint64_t shuffle_state = o->seed ^ 0x5f0e1d2c3b4a6978ull;
    fn_epochs e = fn_epochs_start(o, kind, valid, n);
    for (int epoch = 1; epoch <= o->epochs; epoch++) {
        fn_rng_shuffle(order, n, &shuffle_state);
        epoch_job j = {.t = t,
                       .d = train,
                       .order = order,
                       .chunk_loss = chunk_loss,
                       .drawing = ATOMIC_FLAG_INIT,
                       .bar = o->progress ? fn_progress_new("examples", n) : NULL,
                       .epoch = epoch,
                       .epochs = o->epochs};
        atomic_init(&j.done, 0);
        atomic_init(&j.loss_sum, 0.0);
        uint64_t t0 = fn_now_ns();
        fn_pool_run(pool, n_chunks, epoch_task, &j);
        e.train_s += (double)(fn_now_ns() - t0) / 1e9;
        double sum = 0;
        for (size_t c = 0; c < n_chunks; c++) sum += chunk_loss[c];
        if (valid && (st = valid_predict(pool, t->m, valid, probs, err)) != FN_OK) {
            fn_progress_finish(j.bar);
            goto done;
        }
        int is_best, stop = fn_epochs_after(&e, epoch, sum / (double)n, probs, j.bar, &is_best);
        if (is_best) memcpy(best, t->params, t->n_params * sizeof *best);
        if (stop) break;
    }
    int restore;
    if ((st = fn_epochs_finish(&e, rep, &restore, err)) == FN_OK && restore)
        memcpy(t->params, best, t->n_params * sizeof *best);
done:
    fn_pool_free(pool);
    free(order);
    free(chunk_loss);
    free(best);
    free(probs);
    return st;
}

float *fn_fm_alloc(size_t n)
{
    if (n == 0 || n > (SIZE_MAX - 63) / sizeof(float)) return NULL;
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63; /* aligned_alloc wants a multiple */
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* log(1 + exp(z)) without overflow: the log loss of a logit t is softplus(-y t), y = +-1. */
static double softplus(double z)
{
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

double fn_logistic_loss(double t, double y, double *grad)
{
    if (y >= 1) {
        *grad = -1.0 / (1.0 + exp(t));
        return softplus(-t);
    }
    if (y <= 0) {
        *grad = 1.0 / (1.0 + exp(-t));
        return softplus(t);
    }
    *grad = (t >= 0 ? 1.0 / (1.0 + exp(-t)) : exp(t) / (1.0 + exp(t))) - y;
    return y * softplus(-t) + (1 - y) * softplus(t);
}

int fn_fm_use_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    const char *env = getenv("FUNNEL_CPU_SIMD");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "portable") == 0)) return 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}
