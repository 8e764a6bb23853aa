/*
 * rank_util.h - what the rank suites (check_rank_fm.c, check_rank_deepfm.c)
 * share: small data sets built in memory, training and prediction that fail
 * the test on error, model-file edits, random scoring requests.
 */
#ifndef FN_RANK_UTIL_H
#define FN_RANK_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h" /* the suites draw their data with the project's own generator */
#include "rank/rank.h"

/* An in-memory dataset with room for rows and triples; fn_dataset_free releases it. */
fn_dataset *ds_new(size_t rows, size_t triples);
void ds_add(fn_dataset *d, float label, const fn_feature_triple *t, size_t n);
/* label = a XOR b over four fields (two of noise): no feature alone tells anything. */
fn_dataset *xor_data(size_t n, uint64_t seed);
/* Random examples over fields [0, m) and indices [0, n), values in [-1, 2). */
fn_dataset *random_data(size_t rows, uint32_t m, uint32_t n, uint64_t seed);

float *predict_all(const fn_model *m, const fn_dataset *d, int threads);
double auc_of(const fn_model *m, const fn_dataset *d);
fn_model *train_ok(const fn_train_options *o, const fn_dataset *tr, const fn_dataset *va,
                   fn_train_report *rep);
/* The kind's defaults on one thread. */
fn_train_options quiet_opts(fn_model_kind kind);

/*
 * Copies a safetensors model file, changing tensor `name`: new_shape (JSON,
 * NULL to keep) rewrites its header entry, nan_at >= 0 puts a NaN at that
 * element, drop removes it from the header.
 */
void edit_model(const char *src, const char *dst, const char *name, const char *new_shape,
                long nan_at, int drop);
/* Loading path fails with want, and the message names the file and contains `tensor`. */
void expect_refused(const char *path, fn_status want, const char *what, const char *tensor);
/* A tensor of a saved model, copied out (n: its floats). */
float *read_tensor(const char *path, const char *name, size_t *n);

/* A request of random shared triples and candidates (fields overlap the shared ones). */
typedef struct request {
    fn_feature_triple shared[12];
    size_t n_shared;
    fn_feature_triple *cand;
    size_t *offs;
    size_t n_cand;
} request;

void request_random(request *r, size_t n_cand, uint32_t m, uint32_t n, uint64_t *s);
void request_free(request *r);
fn_score_request request_view(const request *r);
/* Each candidate as one example: the shared triples, then its own. */
fn_dataset *request_concat(const request *r);

#endif
