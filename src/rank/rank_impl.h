/*
 * rank_impl.h - what a model kind implements (fm.c, ffm.c, deepfm.c): a
 * table of functions behind fn_model. model.c does what every kind shares:
 * options, dispatch, the safetensors file with its metadata and checks,
 * parallel prediction over a dataset.
 */
#ifndef FN_RANK_IMPL_H
#define FN_RANK_IMPL_H

#include "common/progress.h"
#include "common/rng.h"
#include "common/safetensors.h"
#include "rank.h"

typedef struct fn_model_ops {
    fn_model_kind kind;
    /* Optional: the whole dataset at once, parallelised by the kind itself over `threads`
       (DeepFM: batches through the kernel layer). Without it, model.c calls predict on row
       ranges from several threads. */
    fn_status (*predict_all)(const fn_model *m, const fn_dataset *d, int threads, float *out,
                             fn_error *err);
    /* Allocates parameters for m->n_fields, m->n_features and m->hp, initialised from hp.seed. */
    fn_status (*init)(fn_model *m, fn_error *err);
    /* Trains the initialised model in place (the best epoch's weights kept). */
    fn_status (*train)(fn_model *m, const fn_train_options *opts, const fn_dataset *train,
                       const fn_dataset *valid, fn_train_report *report, fn_error *err);
    /* Probabilities for examples [row0, row0 + n) of d (one thread; model.c splits rows).
       NULL when the kind has predict_all. */
    fn_status (*predict)(const fn_model *m, const fn_dataset *d, size_t row0, size_t n, float *out,
                         fn_error *err);
    /* One request's candidates, the shared part folded in once. */
    fn_status (*score)(const fn_model *m, const fn_score_request *req, float *out, fn_error *err);
    /* Adds the parameter tensors to w (names and shapes documented per kind). */
    fn_status (*save)(const fn_model *m, fn_safetensors_writer *w, fn_error *err);
    /* Reads the parameter tensors, checking names and shapes, into an initialised model. */
    fn_status (*load)(fn_model *m, const fn_safetensors *st, fn_error *err);
    void (*free)(fn_model *m);
} fn_model_ops;

struct fn_model {
    const fn_model_ops *ops;
    fn_train_options hp; /* hyperparameters; device and progress are not kept */
    uint32_t n_fields;
    uint64_t n_features;
    char spec_sha256[65];
    void *impl;
};

extern const fn_model_ops fn_fm_ops;
extern const fn_model_ops fn_ffm_ops;
extern const fn_model_ops fn_deepfm_ops;

/* Numerically safe logistic function. */
static inline float fn_sigmoid(float x)
{
    if (x >= 0) {
        float e = __builtin_expf(-x);
        return 1.0f / (1.0f + e);
    }
    float e = __builtin_expf(x);
    return e / (1.0f + e);
}

/*
 * Checks every float of a loaded tensor is finite; FN_ERR_CORRUPT naming the
 * file and tensor otherwise. Kinds call it on what they load.
 */
fn_status fn_rank_check_finite(const fn_safetensors *st, const fn_st_tensor *t, fn_error *err);
/*
 * Copies tensor `name` of a model file into dst after checking it is F32 of
 * the given shape with every value finite; a missing tensor is FN_ERR_CORRUPT
 * (a model file without its weights).
 */
fn_status fn_rank_load_f32(const fn_safetensors *st, const char *name, int ndim,
                           const int64_t *shape, float *dst, fn_error *err);

/*
 * FM's parameter block, shared by FM and DeepFM: P holds the bias at 0, the
 * linear weights at lin_off and the n x k embedding at emb_off; in the file,
 * "bias" [1], "linear" [n], "embedding" [n, k].
 */
fn_status fn_rank_save_fm_block(fn_safetensors_writer *w, const float *P, size_t lin_off,
                                size_t emb_off, uint64_t n, int k, fn_error *err);
fn_status fn_rank_load_fm_block(const fn_safetensors *st, float *P, size_t lin_off, size_t emb_off,
                                uint64_t n, int k, fn_error *err);

/*
 * The epoch bookkeeping every kind's training loop shares: the validation
 * metrics, the line each epoch leaves on the terminal, early stopping after
 * `patience` epochs without a better validation metric (o->valid_metric),
 * divergence, and the report.
 */
typedef struct fn_epochs {
    const fn_train_options *o;
    const char *kind;
    const fn_dataset *valid; /* NULL without validation */
    size_t n;                /* training examples an epoch */
    int best_epoch, run;     /* 0 until an epoch counts */
    double best_loss, best_auc, train_loss;
    double train_s; /* the caller adds the seconds spent training (not validating) */
} fn_epochs;

fn_epochs fn_epochs_start(const fn_train_options *o, const char *kind, const fn_dataset *valid,
                          size_t n);
/*
 * After epoch `epoch` (1-based), with valid_probs the model's predictions for
 * the validation set (NULL without one): its line ("epoch e/E loss x valid y
 * auc z") closes bar and goes to the debug log, its figures to o->on_epoch.
 * *is_best: the best epoch so far, whose weights the caller keeps now.
 * Returns 1 when training should stop (patience spent, or the loss diverged).
 */
int fn_epochs_after(fn_epochs *e, int epoch, double train_loss, const float *valid_probs,
                    fn_progress *bar, int *is_best);
/*
 * After the loop: FN_ERR_INVALID when no finite epoch can be kept (training
 * diverged), else fills rep; *restore is 1 when the
 * best epoch is not the last one run (the caller puts its weights back).
 */
fn_status fn_epochs_finish(const fn_epochs *e, fn_train_report *rep, int *restore, fn_error *err);

#endif
