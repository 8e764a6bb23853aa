/*
 * fm_train.h - what FM and FFM share (fm.c, ffm.c): the epoch loop of their
 * training and aligned float storage.
 *
 * Training is Hogwild: every epoch shuffles the example order from the seed,
 * cuts it into chunks, and the pool's threads take chunks and update the one
 * set of weights without locks (the updates of one sparse example touch few
 * weights, so collisions are rare and harmless to convergence). With one
 * thread the run is deterministic. Threads pay off when features are sparse;
 * weights that nearly every example updates (FM's bias, a gender or an age
 * bucket) keep their cache lines moving between cores, and on data made of
 * such features (MovieLens-100k) two threads are slower than one.
 *
 * After each epoch the validation set's log loss (or AUC, o->valid_metric)
 * decides early stopping; the best epoch's weights are copied aside and put
 * back at the end. A kind supplies only its per-example update (and,
 * optionally, a prefetch of the weights an example will touch).
 */
#ifndef FN_FM_TRAIN_H
#define FN_FM_TRAIN_H

#include <stddef.h>

#include "rank_impl.h"

/* Updates the weights on example `row` of d; returns its log loss before the update. */
typedef double (*fn_fm_step)(fn_model *m, const fn_dataset *d, size_t row);

typedef struct fn_fm_trainer {
    fn_model *m;
    fn_fm_step step;
    /* Optional: asks for the cache lines of example `row`'s weights, a few steps ahead. */
    void (*prefetch)(const fn_model *m, const fn_dataset *d, size_t row);
    float *params;   /* every weight the model keeps, in one block (snapshot of the best epoch) */
    size_t n_params; /* floats */
} fn_fm_trainer;

/*
 * Runs up to o->epochs epochs (o->threads threads, 0 = all CPUs), with
 * validation and early stopping after o->patience epochs without a better
 * validation metric (patience < 1: never stop early, still keep the best).
 * Fills rep. A loss that is not finite (divergence, e.g. a learning rate far
 * too high) is FN_ERR_INVALID unless a finite best epoch can be kept.
 */
fn_status fn_fm_train_epochs(const fn_fm_trainer *t, const fn_train_options *o,
                             const fn_dataset *train, const fn_dataset *valid, fn_train_report *rep,
                             fn_error *err);

/*
 * n floats, zeroed, 64-byte aligned (a cache line: the k-wide vectors of the
 * SIMD kernels never straddle more lines than they must); free with free().
 * NULL when n is 0 or too large.
 */
float *fn_fm_alloc(size_t n);

/*
 * The log loss of logit t against target y in [0, 1], and in *grad its
 * derivative dloss/dt = sigmoid(t) - y, neither overflowing for a large |t|.
 * Targets of 1 and 0 take the binary forms (softplus(-t), -1 / (1 + e^t)),
 * exactly, so that binary training is what libffm computes.
 */
double fn_logistic_loss(double t, double y, double *grad);

/* The CPU has AVX2 and FMA and FUNNEL_CPU_SIMD does not ask for the portable code. */
int fn_fm_use_avx2(void);

#endif
