/*
 * fm.c - factorization machines (Rendle, "Factorization Machines", ICDM
 * 2010): a bias, a linear term and factorized pairwise interactions,
 *
 *     logit = b + sum_i w_i x_i + 1/2 sum_d [(sum_i v_id x_i)^2 - sum_i v_id^2 x_i^2]
 *
 * computed in O(n k) through the per-factor sums S_d = sum_i v_id x_i and
 * Q_d = sum_i v_id^2 x_i^2. Fields play no part (FFM is the field-aware kind).
 *
 * Training: AdaGrad per weight, as ffm.c, so one learning rate suits sparse
 * features seen a million times and seen twice: accumulators start at 1,
 * g = dloss/dparam + l2 param (L2 on the weights an example touches, none on
 * the bias), G += g^2, param -= lr g / sqrt(G). The gradients of an example
 * come from the S_d of its forward pass: d logit / d v_id = x_i (S_d - v_id x_i).
 * Initialisation: w = 0, b = 0, v uniform in [-0.1, 0.1) (libFM's scale,
 * and centred: without instance normalisation a positive start as FFM's
 * would give a logit that grows with the square of the number of fields).
 * Indices outside the model (unseen in training) are skipped.
 *
 * Layout: one 64-byte aligned block P = [b, padding to 16 floats | w: n,
 * padding to a multiple of 16 | V: n x k], the file's "bias", "linear" and
 * "embedding" tensors; a feature's k factors are contiguous. AdaGrad's
 * accumulators are a second block of the same layout, only while training.
 *
 * Request scoring folds the shared triples in once: their linear sum and S_d,
 * Q_d; a candidate adds its own triples to copies of those and finishes the
 * formula.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fm_train.h"
#include "rank_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FM_X86 1
#define AVX2   __attribute__((target("avx2,fma")))
#endif

#define MAX_K  1024 /* model.c's bound on k: the per-example sums live on the stack */
#define INIT_V 0.1f

typedef struct fm {
    float *P;       /* everything: bias, linear, embedding */
    float *G;       /* AdaGrad accumulators in P's layout; only while training */
    size_t n_param; /* floats in P */
    size_t lin_off, emb_off;
    uint64_t n;
    int k;
    int avx2;
} fm;

/* The sums a logit is finished from. */
typedef struct fm_sums {
    float lin;
    float S[MAX_K], Q[MAX_K];
} fm_sums;

/* ---- kernels: plain C, and AVX2 chosen at run time (f->avx2) ---- */

static void add_portable(const fm *f, const fn_feature_triple *x, size_t nx, fm_sums *s)
{
    const int k = f->k;
    const float *w = f->P + f->lin_off, *V = f->P + f->emb_off;
    for (size_t i = 0; i < nx; i++) {
        if (x[i].index >= f->n) continue;
        float xv = x[i].value;
        const float *v = V + (size_t)x[i].index * k;
        s->lin += w[x[i].index] * xv;
        for (int d = 0; d < k; d++) {
            float vx = v[d] * xv;
            s->S[d] += vx;
            s->Q[d] += vx * vx;
        }
    }
}

static float pairs_portable(const fm *f, const fm_sums *s)
{
    float t = 0;
    for (int d = 0; d < f->k; d++) t += s->S[d] * s->S[d] - s->Q[d];
    return 0.5f * t;
}

#ifdef FM_X86
static inline AVX2 float hsum256(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static AVX2 void add_avx2(const fm *f, const fn_feature_triple *x, size_t nx, fm_sums *s)
{
    const int k = f->k;
    const float *w = f->P + f->lin_off, *V = f->P + f->emb_off;
    for (size_t i = 0; i < nx; i++) {
        if (x[i].index >= f->n) continue;
        float xv = x[i].value;
        const float *v = V + (size_t)x[i].index * k;
        s->lin += w[x[i].index] * xv;
        __m256 x8 = _mm256_set1_ps(xv);
        int d = 0;
        for (; d + 8 <= k; d += 8) {
            __m256 vx = _mm256_mul_ps(_mm256_loadu_ps(v + d), x8);
            _mm256_storeu_ps(s->S + d, _mm256_add_ps(_mm256_loadu_ps(s->S + d), vx));
            _mm256_storeu_ps(s->Q + d, _mm256_fmadd_ps(vx, vx, _mm256_loadu_ps(s->Q + d)));
        }
        for (; d < k; d++) {
            float vx = v[d] * xv;
            s->S[d] += vx;
            s->Q[d] += vx * vx;
        }
    }
}

static AVX2 float pairs_avx2(const fm *f, const fm_sums *s)
{
    const int k = f->k;
    __m256 acc = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= k; d += 8) {
        __m256 S = _mm256_loadu_ps(s->S + d);
        acc = _mm256_add_ps(acc, _mm256_fmsub_ps(S, S, _mm256_loadu_ps(s->Q + d)));
    }
    float t = hsum256(acc);
    for (; d < k; d++) t += s->S[d] * s->S[d] - s->Q[d];
    return 0.5f * t;
}
#endif

/* Adds the example's triples to s. */
static void add(const fm *f, const fn_feature_triple *x, size_t nx, fm_sums *s)
{
#ifdef FM_X86
    if (f->avx2) {
        add_avx2(f, x, nx, s);
        return;
    }
#endif
    add_portable(f, x, nx, s);
}

static float logit(const fm *f, const fm_sums *s)
{
#ifdef FM_X86
    if (f->avx2) return f->P[0] + s->lin + pairs_avx2(f, s);
#endif
    return f->P[0] + s->lin + pairs_portable(f, s);
}

static void sums_clear(const fm *f, fm_sums *s)
{
    s->lin = 0;
    memset(s->S, 0, (size_t)f->k * sizeof *s->S);
    memset(s->Q, 0, (size_t)f->k * sizeof *s->Q);
}

/* ---- the model ---- */

static size_t pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static fn_status init(fn_model *m, fn_error *err)
{
    if (m->hp.k > MAX_K)
        return fn_error_set(err, FN_ERR_INVALID, "fm: k %d is above %d", m->hp.k, MAX_K);
    fm *f = calloc(1, sizeof *f);
    if (!f) return fn_error_set(err, FN_ERR_NOMEM, "fm: out of memory");
    f->n = m->n_features;
    f->k = m->hp.k;
    f->avx2 = fn_fm_use_avx2();
    f->lin_off = 16;
    if (f->n < SIZE_MAX / sizeof(float) / ((size_t)f->k + 1) - 64) {
        f->emb_off = f->lin_off + pad16((size_t)f->n);
        f->n_param = f->emb_off + (size_t)f->n * (size_t)f->k;
        f->P = fn_fm_alloc(f->n_param);
    }
    if (!f->P) {
        free(f);
        return fn_error_set(err, FN_ERR_NOMEM, "fm: no memory for %llu features x k %d weights",
                            (unsigned long long)m->n_features, m->hp.k);
    }
    uint64_t state = m->hp.seed;
    float *V = f->P + f->emb_off;
    for (size_t i = 0; i < (size_t)f->n * (size_t)f->k; i++)
        V[i] = INIT_V * (2.0f * fn_rng_uniform(&state) - 1.0f);
    m->impl = f;
    return FN_OK;
}

static void release(fn_model *m)
{
    fm *f = m->impl;
    if (!f) return;
    free(f->P);
    free(f->G);
    free(f);
    m->impl = NULL;
}

static inline float adagrad(float *p, float *G, float g, float lr)
{
    *G += g * g;
    return *p -= lr * g / sqrtf(*G);
}

#ifdef FM_X86
/* The factor update of one triple: v -= lr g / sqrt(G), g = gx (S - v x) + l2 v. */
static AVX2 void update_v_avx2(float *v, float *G, const float *S, int k, float gx, float xv,
                               float lr, float l2)
{
    const __m256 gx8 = _mm256_set1_ps(gx), x8 = _mm256_set1_ps(xv), l28 = _mm256_set1_ps(l2),
                 lr8 = _mm256_set1_ps(lr);
    int d = 0;
    for (; d + 8 <= k; d += 8) {
        __m256 vv = _mm256_loadu_ps(v + d);
        __m256 g = _mm256_mul_ps(gx8, _mm256_fnmadd_ps(vv, x8, _mm256_loadu_ps(S + d)));
        g = _mm256_fmadd_ps(l28, vv, g);
        __m256 GG = _mm256_fmadd_ps(g, g, _mm256_loadu_ps(G + d));
        _mm256_storeu_ps(G + d, GG);
        _mm256_storeu_ps(
            v + d, _mm256_sub_ps(vv, _mm256_div_ps(_mm256_mul_ps(lr8, g), _mm256_sqrt_ps(GG))));
    }
    for (; d < k; d++) adagrad(v + d, G + d, gx * (S[d] - v[d] * xv) + l2 * v[d], lr);
}
#endif

/* One example: forward pass, log loss, AdaGrad step on every weight it touches. */
static double step(fn_model *m, const fn_dataset *d, size_t row)
{
    fm *f = m->impl;
    const fn_feature_triple *x = d->triples + d->offsets[row];
    size_t nx = (size_t)(d->offsets[row + 1] - d->offsets[row]);
    const int k = f->k;
    const float lr = m->hp.lr, l2 = m->hp.l2;
    fm_sums s;
    sums_clear(f, &s);
    add(f, x, nx, &s);
    float t = logit(f, &s);
    double dt, loss = fn_logistic_loss((double)t, d->labels[row], &dt);
    float g = (float)dt; /* dloss/dlogit = p - label */
    float *w = f->P + f->lin_off, *V = f->P + f->emb_off;
    float *Gw = f->G + f->lin_off, *GV = f->G + f->emb_off;
    adagrad(&f->P[0], &f->G[0], g, lr);
    for (size_t i = 0; i < nx; i++) {
        uint64_t j = x[i].index;
        if (j >= f->n) continue;
        float xv = x[i].value, gx = g * xv;
        adagrad(&w[j], &Gw[j], gx + l2 * w[j], lr);
        float *v = V + (size_t)j * k, *G = GV + (size_t)j * k;
#ifdef FM_X86
        if (f->avx2) {
            update_v_avx2(v, G, s.S, k, gx, xv, lr, l2);
            continue;
        }
#endif
        for (int dd = 0; dd < k; dd++)
            adagrad(v + dd, G + dd, gx * (s.S[dd] - v[dd] * xv) + l2 * v[dd], lr);
    }
    return loss;
}

/* The weights and accumulators example `row` will update, asked for ahead (see fm_train.h). */
static void prefetch_example(const fn_model *m, const fn_dataset *d, size_t row)
{
    const fm *f = m->impl;
    for (uint64_t t = d->offsets[row]; t < d->offsets[row + 1]; t++) {
        uint64_t j = d->triples[t].index;
        if (j >= f->n) continue;
        size_t v = f->emb_off + (size_t)j * (size_t)f->k;
        __builtin_prefetch(f->P + f->lin_off + j, 1);
        __builtin_prefetch(f->G + f->lin_off + j, 1);
        for (size_t b = 0; b < (size_t)f->k; b += 16) {
            __builtin_prefetch(f->P + v + b, 1);
            __builtin_prefetch(f->G + v + b, 1);
        }
    }
}

static fn_status train(fn_model *m, const fn_train_options *o, const fn_dataset *t,
                       const fn_dataset *v, fn_train_report *r, fn_error *err)
{
    fm *f = m->impl;
    if (!(o->l2 >= 0) || !isfinite(o->l2))
        return fn_error_set(err, FN_ERR_INVALID, "fm train: l2 must be a number >= 0, not %g",
                            (double)o->l2);
    if (!(f->G = fn_fm_alloc(f->n_param)))
        return fn_error_set(err, FN_ERR_NOMEM, "fm train: no memory for %zu accumulators",
                            f->n_param);
    for (size_t i = 0; i < f->n_param; i++) f->G[i] = 1.0f;
    fn_fm_trainer tr = {
        .m = m, .step = step, .prefetch = prefetch_example, .params = f->P, .n_params = f->n_param};
    fn_status st = fn_fm_train_epochs(&tr, o, t, v, r, err);
    free(f->G);
    f->G = NULL;
    return st;
}

static fn_status predict(const fn_model *m, const fn_dataset *d, size_t r0, size_t n, float *out,
                         fn_error *err)
{
    (void)err;
    const fm *f = m->impl;
    fm_sums s;
    for (size_t i = 0; i < n; i++) {
        const fn_feature_triple *x = d->triples + d->offsets[r0 + i];
        size_t nx = (size_t)(d->offsets[r0 + i + 1] - d->offsets[r0 + i]);
        sums_clear(f, &s);
        add(f, x, nx, &s);
        out[i] = fn_sigmoid(logit(f, &s));
    }
    return FN_OK;
}

static fn_status score(const fn_model *m, const fn_score_request *q, float *out, fn_error *err)
{
    (void)err;
    const fm *f = m->impl;
    const size_t kb = (size_t)f->k * sizeof(float);
    fm_sums shared, s;
    sums_clear(f, &shared);
    add(f, q->shared, q->n_shared, &shared);
    for (size_t c = 0; c < q->n_cand; c++) {
        s.lin = shared.lin;
        memcpy(s.S, shared.S, kb);
        memcpy(s.Q, shared.Q, kb);
        add(f, q->cand + q->cand_offsets[c], q->cand_offsets[c + 1] - q->cand_offsets[c], &s);
        out[c] = fn_sigmoid(logit(f, &s));
    }
    return FN_OK;
}

/* "bias" [1], "linear" [n_features], "embedding" [n_features, k], F32. */
static fn_status save(const fn_model *m, fn_safetensors_writer *w, fn_error *err)
{
    const fm *f = m->impl;
    return fn_rank_save_fm_block(w, f->P, f->lin_off, f->emb_off, f->n, f->k, err);
}

static fn_status load(fn_model *m, const fn_safetensors *st, fn_error *err)
{
    fm *f = m->impl;
    return fn_rank_load_fm_block(st, f->P, f->lin_off, f->emb_off, f->n, f->k, err);
}

const fn_model_ops fn_fm_ops = {.kind = FN_MODEL_FM,
                                .init = init,
                                .train = train,
                                .predict = predict,
                                .score = score,
                                .save = save,
                                .load = load,
                                .free = release};
