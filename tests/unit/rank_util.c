/* rank_util.c - data sets, requests and model-file edits the rank suites share. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/safetensors.h"
#include "rank_util.h"
#include "test_util.h"

/* An in-memory dataset with room for rows and triples; fn_dataset_free releases it. */
fn_dataset *ds_new(size_t rows, size_t triples)
{
    fn_dataset *d = calloc(1, sizeof *d);
    ck_assert_ptr_nonnull(d);
    d->labels = malloc((rows ? rows : 1) * sizeof *d->labels);
    d->offsets = calloc(rows + 1, sizeof *d->offsets);
    d->triples = malloc((triples ? triples : 1) * sizeof *d->triples);
    ck_assert(d->labels && d->offsets && d->triples);
    return d;
}

void ds_add(fn_dataset *d, float label, const fn_feature_triple *t, size_t n)
{
    uint64_t at = d->offsets[d->n];
    if (n) memcpy(d->triples + at, t, n * sizeof *t);
    for (size_t i = 0; i < n; i++) {
        if (t[i].field + 1 > d->n_fields) d->n_fields = t[i].field + 1;
        if ((uint64_t)t[i].index + 1 > d->n_features) d->n_features = (uint64_t)t[i].index + 1;
    }
    d->labels[d->n] = label;
    d->offsets[++d->n] = at + n;
}

/*
 * label = a XOR b: field 0 holds a (index a), field 1 holds b (index 2 + b),
 * fields 2 and 3 hold noise (indices 4..13, 14..23). The four (a, b) cells
 * come equally often, so every feature alone has a positive rate of exactly
 * 1/2: no weighted sum of features separates the classes, only the pair does.
 */
fn_dataset *xor_data(size_t n, uint64_t seed)
{
    fn_dataset *d = ds_new(n, n * 4);
    for (size_t i = 0; i < n; i++) {
        uint32_t a = (uint32_t)(i & 1), b = (uint32_t)((i >> 1) & 1);
        fn_feature_triple t[4] = {{0, a, 1.0f},
                                  {1, 2 + b, 1.0f},
                                  {2, 4 + (uint32_t)(fn_rng_next(&seed) % 10), 1.0f},
                                  {3, 14 + (uint32_t)(fn_rng_next(&seed) % 10), 1.0f}};
        ds_add(d, (float)(a ^ b), t, 4);
    }
    return d;
}

/* Random examples over fields [0, m) and indices [0, n), values in [-1, 2). */
fn_dataset *random_data(size_t rows, uint32_t m, uint32_t n, uint64_t seed)
{
    fn_dataset *d = ds_new(rows, rows * 8);
    for (size_t i = 0; i < rows; i++) {
        fn_feature_triple t[8];
        size_t c = 1 + fn_rng_next(&seed) % 8;
        for (size_t j = 0; j < c; j++)
            t[j] = (fn_feature_triple){(uint32_t)(fn_rng_next(&seed) % m),
                                       (uint32_t)(fn_rng_next(&seed) % n),
                                       3.0f * fn_rng_uniform(&seed) - 1.0f};
        ds_add(d, (float)(fn_rng_next(&seed) & 1), t, c);
    }
    /* The whole index space, so that requests may use any of it. */
    d->n_fields = m;
    d->n_features = n;
    return d;
}

float *predict_all(const fn_model *m, const fn_dataset *d, int threads)
{
    float *p = malloc((d->n ? d->n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    fn_error err = {0};
    ck_assert_msg(fn_model_predict(m, d, threads, p, &err) == FN_OK, "%s", err.msg);
    return p;
}

double auc_of(const fn_model *m, const fn_dataset *d)
{
    float *p = predict_all(m, d, 1);
    double auc = fn_metric_auc(p, d->labels, d->n);
    free(p);
    return auc;
}

fn_model *train_ok(const fn_train_options *o, const fn_dataset *tr, const fn_dataset *va,
                   fn_train_report *rep)
{
    fn_error err = {0};
    fn_model *m = NULL;
    fn_train_report r;
    ck_assert_msg(fn_model_train(o, tr, va, NULL, &m, rep ? rep : &r, &err) == FN_OK, "%s",
                  err.msg);
    return m;
}

fn_train_options quiet_opts(fn_model_kind kind)
{
    fn_train_options o = fn_train_options_default(kind);
    o.threads = 1;
    return o;
}

/*
 * Copies a safetensors model file, changing tensor `name`: new_shape (JSON,
 * NULL to keep) rewrites its header entry, nan_at >= 0 puts a NaN at that
 * element, drop removes it from the header.
 */
void edit_model(const char *src, const char *dst, const char *name, const char *new_shape,
                long nan_at, int drop)
{
    fn_buf b = FN_BUF_INIT;
    fn_test_read_file(src, &b);
    ck_assert_uint_ge(b.len, 8);
    const uint8_t *p = (const uint8_t *)b.data;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    json_error_t jerr;
    json_t *root = json_loadb(b.data + 8, (size_t)hlen, 0, &jerr);
    ck_assert_msg(root != NULL, "%s", jerr.text);
    json_t *t = json_object_get(root, name);
    ck_assert_ptr_nonnull(t);
    size_t begin =
        (size_t)json_integer_value(json_array_get(json_object_get(t, "data_offsets"), 0));
    if (nan_at >= 0) {
        float nan = NAN;
        memcpy(b.data + 8 + hlen + begin + (size_t)nan_at * sizeof nan, &nan, sizeof nan);
    }
    if (new_shape) json_object_set_new(t, "shape", json_loads(new_shape, 0, NULL));
    if (drop) json_object_del(root, name);
    char *head = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t n = strlen(head), padded = (n + 7) & ~(size_t)7;
    fn_buf out = FN_BUF_INIT;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fn_buf_append(&out, len8, 8);
    fn_buf_append(&out, head, n);
    for (size_t i = n; i < padded; i++) fn_buf_putc(&out, ' ');
    fn_buf_append(&out, b.data + 8 + hlen, b.len - 8 - (size_t)hlen);
    fn_test_write_file(dst, out.data, out.len);
    free(head);
    json_decref(root);
    fn_buf_free(&out);
    fn_buf_free(&b);
}

void expect_refused(const char *path, fn_status want, const char *what, const char *tensor)
{
    fn_error err = {0};
    fn_model *m = NULL;
    fn_status st = fn_model_load(path, NULL, &m, &err);
    ck_assert_msg(st == want, "%s: status %d, want %d (%s)", what, st, want, err.msg);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, tensor), "%s: message '%s'", what,
                  err.msg);
}

/* A tensor of a saved model, copied out (n: its floats). */
float *read_tensor(const char *path, const char *name, size_t *n)
{
    fn_safetensors *st;
    fn_error err = {0};
    ck_assert_msg(fn_safetensors_open(path, &st, &err) == FN_OK, "%s", err.msg);
    const fn_st_tensor *t = fn_safetensors_find(st, name);
    ck_assert_msg(t && t->dtype == FN_ST_F32, "%s: no F32 tensor '%s'", path, name);
    float *out = malloc(t->nbytes);
    memcpy(out, t->data, t->nbytes);
    *n = t->nbytes / sizeof *out;
    fn_safetensors_close(st);
    return out;
}

void request_random(request *r, size_t n_cand, uint32_t m, uint32_t n, uint64_t *s)
{
    r->n_shared = fn_rng_next(s) % 13;
    for (size_t i = 0; i < r->n_shared; i++)
        r->shared[i] =
            (fn_feature_triple){(uint32_t)(fn_rng_next(s) % m), (uint32_t)(fn_rng_next(s) % n),
                                3.0f * fn_rng_uniform(s) - 1};
    r->n_cand = n_cand;
    r->cand = malloc(n_cand * 6 * sizeof *r->cand + 1);
    r->offs = malloc((n_cand + 1) * sizeof *r->offs);
    r->offs[0] = 0;
    for (size_t c = 0; c < n_cand; c++) {
        size_t k = fn_rng_next(s) % 7; /* 0..6 own triples; fields overlap the shared ones */
        for (size_t i = 0; i < k; i++)
            r->cand[r->offs[c] + i] =
                (fn_feature_triple){(uint32_t)(fn_rng_next(s) % m), (uint32_t)(fn_rng_next(s) % n),
                                    3.0f * fn_rng_uniform(s) - 1};
        r->offs[c + 1] = r->offs[c] + k;
    }
}

void request_free(request *r)
{
    free(r->cand);
    free(r->offs);
}

fn_score_request request_view(const request *r)
{
    return (fn_score_request){.shared = r->shared,
                              .n_shared = r->n_shared,
                              .cand = r->cand,
                              .cand_offsets = r->offs,
                              .n_cand = r->n_cand};
}

/* Each candidate as one example: the shared triples, then its own. */
fn_dataset *request_concat(const request *r)
{
    fn_dataset *d = ds_new(r->n_cand, r->n_cand * (r->n_shared + 6));
    fn_feature_triple t[20];
    for (size_t c = 0; c < r->n_cand; c++) {
        size_t k = r->offs[c + 1] - r->offs[c];
        memcpy(t, r->shared, r->n_shared * sizeof *t);
        memcpy(t + r->n_shared, r->cand + r->offs[c], k * sizeof *t);
        ds_add(d, 0, t, r->n_shared + k);
    }
    return d;
}
