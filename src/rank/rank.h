/*
 * rank.h - the rank stage: click-through-rate models (FM, FFM, DeepFM) over
 * feature-column triples, their training, scoring, files and metrics.
 *
 * Data comes in as (field, index, value) triples: from TFRecord files of
 * tf.Example through a feature-column spec, or from libffm text. A model is
 * trained on an in-memory fn_dataset, saved as safetensors (with the model
 * kind, the spec's SHA-256 and the hyperparameters in __metadata__), and
 * scores either a dataset (evaluation) or one request's candidates, where the
 * features shared by every candidate (user, context) are folded in once.
 */
#ifndef FN_RANK_H
#define FN_RANK_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "features/columns.h"

/* ---- datasets ---- */

/* Examples as triples in CSR form: example i owns triples[offsets[i] .. offsets[i + 1]). */
typedef struct fn_dataset {
    size_t n;
    float *labels; /* n targets in [0, 1]: 1 positive, 0 negative (libffm's -1 reads as 0), or a
                      grade in between (fn_label_rule) */
    uint64_t *offsets;
    fn_feature_triple *triples;
    uint32_t n_fields;   /* fields in use: max field + 1, or the spec's column count */
    uint64_t n_features; /* index space: max index + 1, or the spec's size */
} fn_dataset;

/*
 * Reads libffm text: one example per line, "label field:index:value ...".
 * A malformed line is FN_ERR_INVALID naming the file, line and token.
 */
fn_status fn_dataset_read_libffm(const char *path, fn_dataset **out, fn_error *err);
/*
 * How a TFRecord label becomes a training target: the first value of feature
 * `key`, binary (positive when > 0.5) or, when graded, (v - lo) / (hi - lo)
 * clipped to [0, 1]. Graded targets train on what a binary label throws away:
 * with ratings of 1 to 5 and lo 2.5, hi 4.5, a 3 weighs 0.25 and a 4 0.75, so
 * the model learns how far an example is from the threshold the label draws.
 */
typedef struct fn_label_rule {
    const char *key;
    int graded;
    double lo, hi; /* graded only; lo < hi */
} fn_label_rule;

/*
 * Reads a TFRecord file of tf.Example and applies the feature columns (every
 * key from the one Example); the label follows the rule.
 */
fn_status fn_dataset_read_tfrecord(const char *path, const fn_columns *spec,
                                   const fn_label_rule *label, fn_dataset **out, fn_error *err);
void fn_dataset_free(fn_dataset *d);

/* ---- metrics ---- */

/*
 * Area under the ROC curve, exact (rank statistic, tied scores count half); NaN if one class.
 * Labels above 0.5 are the positives.
 */
double fn_metric_auc(const float *scores, const float *labels, size_t n);
/*
 * Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps] with eps = DBL_EPSILON;
 * a graded target y counts -(y log p + (1 - y) log(1 - p)).
 */
double fn_metric_logloss(const float *probs, const float *labels, size_t n);

/* ---- models ---- */

typedef enum fn_model_kind {
    FN_MODEL_FM = 0,
    FN_MODEL_FFM,
    FN_MODEL_DEEPFM,
} fn_model_kind;

typedef struct fn_model fn_model;

#define FN_MAX_HIDDEN 8

/* What early stopping and the choice of the epoch kept watch on the validation set. */
typedef enum fn_valid_metric {
    FN_VALID_LOGLOSS = 0, /* lower is better (the default) */
    FN_VALID_AUC,         /* higher is better; targets above 0.5 are the positives */
} fn_valid_metric;

/*
 * How DeepFM trains its sparse part (the bias, the linear weights and the
 * field embeddings); its MLP always trains with Adam at lr.
 */
typedef enum fn_sparse_optimizer {
    FN_SPARSE_ADAM = 0, /* lazy Adam at lr on the batch's mean gradient */
    FN_SPARSE_ADAGRAD,  /* AdaGrad as FM and FFM, on the sum of the batch's examples' gradients
                           (DeepFM's default) */
} fn_sparse_optimizer;

/* The default AdaGrad learning rate of DeepFM's sparse part: FM's default. */
#define FN_SPARSE_ADAGRAD_LR 0.05f

/* One epoch's figures, as training reports them after the epoch. */
typedef struct fn_epoch_stats {
    int epoch;         /* 1-based */
    double train_loss; /* the epoch's mean training log loss */
    double valid_loss; /* validation log loss; NaN without validation */
    double valid_auc;  /* validation AUC; NaN without validation or with one class */
} fn_epoch_stats;

typedef struct fn_train_options {
    fn_model_kind kind;
    int k;        /* latent factors (FM 8, FFM 4, DeepFM 8 by default) */
    float lr;     /* learning rate */
    float l2;     /* L2 regularisation */
    int epochs;   /* at most this many passes */
    int patience; /* stop after this many epochs without a better validation metric */
    fn_valid_metric valid_metric;
    uint64_t seed; /* initialisation and shuffling */
    int threads;   /* 0: all online CPUs */
    int normalize; /* FFM: scale each example's values to unit length (libffm -norm) */
    /* DeepFM */
    int hidden[FN_MAX_HIDDEN];
    int n_hidden;
    int relu; /* 1 ReLU, 0 GELU */
    float dropout;
    int batch; /* mini-batch size */
    fn_sparse_optimizer sparse_opt;
    float sparse_lr;    /* the sparse part's learning rate; 0: lr with Adam, FN_SPARSE_ADAGRAD_LR
                           with AdaGrad */
    const char *device; /* "cpu" or "cuda" */
    int progress;       /* draw a progress bar on a terminal */
    /* Called after every epoch (NULL: not at all), e.g. to keep the learning curve: every
       epoch's validation figures, not only the best epoch's, are what choosing a number of
       epochs across several folds needs. */
    void (*on_epoch)(const fn_epoch_stats *s, void *ctx);
    void *on_epoch_ctx;
} fn_train_options;

/* Defaults for a kind (as documented in `funnel train --help`). */
fn_train_options fn_train_options_default(fn_model_kind kind);
const char *fn_model_kind_name(fn_model_kind kind);
fn_status fn_model_kind_parse(const char *name, fn_model_kind *out);
const char *fn_sparse_optimizer_name(fn_sparse_optimizer o);
fn_status fn_sparse_optimizer_parse(const char *name, fn_sparse_optimizer *out);
/* The learning rate DeepFM's sparse part trains at under o (sparse_lr, or its default). */
float fn_train_sparse_lr(const fn_train_options *o);

typedef struct fn_train_report {
    int epochs_run;
    int best_epoch;         /* 1-based; the model kept is this epoch's */
    double best_valid_loss; /* the kept epoch's validation log loss; NaN without validation */
    double best_valid_auc;  /* and its AUC (NaN also when the set has one class) */
    double train_loss;      /* of the last epoch */
    double examples_per_s;
} fn_train_report;

/*
 * Trains a model of opts->kind. With valid, each epoch ends with a validation
 * pass; training stops after `patience` epochs without improvement and the
 * best epoch's weights are kept. spec_sha256 (NULL for libffm data) is
 * recorded in the model.
 */
fn_status fn_model_train(const fn_train_options *opts, const fn_dataset *train,
                         const fn_dataset *valid, const char *spec_sha256, fn_model **out,
                         fn_train_report *report, fn_error *err);
void fn_model_free(fn_model *m);
fn_model_kind fn_model_kind_of(const fn_model *m);
uint32_t fn_model_fields(const fn_model *m);
uint64_t fn_model_features(const fn_model *m);
/* The spec hash the model was trained with ("" for libffm data). */
const char *fn_model_spec_sha256(const fn_model *m);

/* Writes the model as safetensors (temporary file, fsync, rename). */
fn_status fn_model_save(const fn_model *m, const char *path, fn_error *err);
/*
 * Loads a model. expect_spec_sha256 (NULL to skip) must equal the recorded
 * hash. A truncated file, a tensor of the wrong shape, NaN or infinite
 * weights, unknown metadata values: FN_ERR_CORRUPT naming the file and what.
 */
fn_status fn_model_load(const char *path, const char *expect_spec_sha256, fn_model **out,
                        fn_error *err);

/*
 * Predicted probabilities for every example of d, in order (threads: 0 = all CPUs).
 * FM and FFM give the same bits for any thread count; DeepFM's GEMMs split over threads
 * may sum a row in another order (the same to float precision).
 */
fn_status fn_model_predict(const fn_model *m, const fn_dataset *d, int threads, float *out,
                           fn_error *err);

/*
 * One request: triples shared by every candidate (user, context) and each
 * candidate's own (item, derived). Probabilities go to out[n_cand]. The
 * shared part's contribution is computed once. Deterministic; safe to call
 * from several threads on one model.
 */
typedef struct fn_score_request {
    const fn_feature_triple *shared;
    size_t n_shared;
    const fn_feature_triple *cand; /* all candidates' triples, one after another */
    const size_t *cand_offsets;    /* n_cand + 1 */
    size_t n_cand;
} fn_score_request;

fn_status fn_model_score(const fn_model *m, const fn_score_request *req, float *out, fn_error *err);

#endif
