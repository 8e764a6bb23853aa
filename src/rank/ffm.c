/*
 * ffm.c - field-aware factorization machines, libffm's algorithm (Juan et
 * al., "Field-aware Factorization Machines for CTR Prediction", RecSys 2016;
 * github.com/ycjuan/libffm, ffm.cpp):
 *
 *     logit = sum over pairs a < b of <w[j_a][f_b], w[j_b][f_a]> x_a x_b r
 *
 * with no bias and no linear term, r = 1 / sum_a x_a^2 with instance
 * normalisation (libffm's default; the sum runs over every triple of the
 * example) and 1 without. Training is libffm's: per example, kappa =
 * dloss/dlogit = -y / (1 + exp(y logit)) (y = +-1), then for every pair and
 * factor g = lambda w + kappa x_a x_b r w_other, AdaGrad G += g^2,
 * w -= eta g / sqrt(G), both sides of a pair from their old values;
 * accumulators start at 1, weights uniform in [0, 1/sqrt(k)); defaults k 4,
 * eta 0.2, lambda 2e-5. Where libffm's SSE code takes rsqrt's approximation
 * we divide by the exact square root. Triples outside the model (an index or
 * field unseen in training) are skipped, as libffm does.
 *
 * Glossary (libffm's): m fields, n features, k factors; j a feature index,
 * f a field, d a factor; x a value; W the weights, G the accumulators; row =
 * m k floats, one feature's vectors for every field.
 *
 * Layout: W is one 64-byte aligned block [n][m][k], exactly the file's
 * "embedding" tensor, so a feature's vectors for all fields lie in one row.
 * G is a separate block of the same shape that exists only while training.
 * libffm interleaves weights and accumulators for locality in training; we
 * keep W plain so that it is written and read as it lies and so that request
 * scoring can take one long dot product per candidate triple (see score).
 *
 * Request scoring folds the shared triples in once: for every candidate field
 * f, C[f] holds, for each shared field g, B[g][f] = sum over shared triples s
 * in field g of w[j_s][f] x_s, side by side over g. A candidate triple (j, f,
 * x) then meets every shared triple in one dot of w[j]'s row with C[f] over
 * the shared fields' span. The shared-shared pair sum is computed once; per
 * candidate only its own pairs remain. With normalisation the scale depends
 * on the whole example, so it is applied per candidate to the three partial
 * sums: r = 1 / (sum of shared x^2 + sum of the candidate's x^2).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fm_train.h"
#include "rank_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FFM_X86 1
#define AVX2    __attribute__((target("avx2,fma")))
#endif

typedef struct ffm {
    float *W; /* [n][m][k] */
    float *G; /* AdaGrad accumulators, same shape; only while training */
    uint64_t n;
    uint32_t m;
    int k;
    size_t row; /* m k */
    int avx2;
} ffm;

static inline int in_model(const ffm *f, const fn_feature_triple *x)
{
    return x->index < f->n && x->field < f->m;
}

/* The instance normalisation scale of an example (1 without normalisation). */
static float scale_of(const fn_model *m, const fn_feature_triple *x, size_t nx)
{
    if (!m->hp.normalize) return 1.0f;
    float s = 0;
    for (size_t a = 0; a < nx; a++) s += x[a].value * x[a].value;
    return s > 0 ? 1.0f / s : 1.0f; /* all-zero values: every pair is 0 whatever r is */
}

/* ---- kernels: plain C, and AVX2 chosen at run time (f->avx2) ---- */

/* The pair sum: sum over a < b of <w[j_a][f_b], w[j_b][f_a]> x_a x_b r. */
static float wtx_portable(const ffm *f, const fn_feature_triple *x, size_t nx, float r)
{
    const int k = f->k;
    float t = 0;
    for (size_t a = 0; a < nx; a++) {
        if (!in_model(f, &x[a])) continue;
        const float *wa = f->W + x[a].index * f->row;
        for (size_t b = a + 1; b < nx; b++) {
            if (!in_model(f, &x[b])) continue;
            const float *w1 = wa + (size_t)x[b].field * k;
            const float *w2 = f->W + x[b].index * f->row + (size_t)x[a].field * k;
            float s = 0;
            for (int d = 0; d < k; d++) s += w1[d] * w2[d];
            t += s * (x[a].value * x[b].value * r);
        }
    }
    return t;
}

/* libffm's update of every pair's two vectors (kappa: dloss/dlogit). */
static void update_portable(ffm *f, const fn_feature_triple *x, size_t nx, float r, float kappa,
                            float eta, float lambda)
{
    const int k = f->k;
    for (size_t a = 0; a < nx; a++) {
        if (!in_model(f, &x[a])) continue;
        for (size_t b = a + 1; b < nx; b++) {
            if (!in_model(f, &x[b])) continue;
            size_t o1 = x[a].index * f->row + (size_t)x[b].field * k;
            size_t o2 = x[b].index * f->row + (size_t)x[a].field * k;
            float *w1 = f->W + o1, *w2 = f->W + o2, *g1 = f->G + o1, *g2 = f->G + o2;
            float kv = kappa * x[a].value * x[b].value * r;
            for (int d = 0; d < k; d++) {
                /* Both from the old values; if w1 and w2 are one vector (a feature
                   repeated in its field) the second store wins, as in libffm. */
                float u = w1[d], v = w2[d];
                float gu = lambda * u + kv * v, gv = lambda * v + kv * u;
                float Gu = g1[d] + gu * gu, Gv = g2[d] + gv * gv;
                g1[d] = Gu;
                g2[d] = Gv;
                w1[d] = u - eta / sqrtf(Gu) * gu;
                w2[d] = v - eta / sqrtf(Gv) * gv;
            }
        }
    }
}

/*
 * A candidate's pairs with the shared triples through C (see the top of the file):
 * sum over its triples a of x_a <w[j_a][fields of C], C[f_a]>, span floats each.
 */
static float cross_portable(const ffm *f, const fn_feature_triple *x, size_t nx, const float *C,
                            size_t off, size_t span)
{
    float t = 0;
    for (size_t a = 0; a < nx; a++) {
        const float *w = f->W + x[a].index * f->row + off, *c = C + (size_t)x[a].field * span;
        float s = 0;
        for (size_t i = 0; i < span; i++) s += w[i] * c[i];
        t += x[a].value * s;
    }
    return t;
}

#ifdef FFM_X86
static inline AVX2 float hsum128(__m128 v)
{
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static inline AVX2 float hsum256(__m256 v)
{
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

/* Examples of up to this many triples take the k = 4 paths, their row pointers on the stack. */
#define FAST_TRIPLES 64

/* The example's triples inside the model as row pointers, field offsets (floats) and values. */
static inline size_t gather(const ffm *f, const fn_feature_triple *x, size_t nx, float **row,
                            size_t *fo, float *xv)
{
    size_t n = 0;
    for (size_t a = 0; a < nx; a++) {
        if (!in_model(f, &x[a])) continue;
        row[n] = f->W + x[a].index * f->row;
        fo[n] = (size_t)x[a].field * (size_t)f->k;
        xv[n++] = x[a].value;
    }
    return n;
}

/*
 * k = 4, libffm's default: a vector is one SSE register. Two accumulators, so that one pair's
 * FMA need not wait for the previous pair's (the chain would cost 4 cycles a pair).
 */
static AVX2 float wtx4_avx2(float *const *row, const size_t *fo, const float *xv, size_t n, float r)
{
    __m128 acc0 = _mm_setzero_ps(), acc1 = _mm_setzero_ps();
    for (size_t a = 0; a + 1 < n; a++) {
        const float *ra = row[a];
        size_t fa = fo[a], b = a + 1;
        float xa = xv[a] * r;
        for (; b + 2 <= n; b += 2) {
            __m128 p0 = _mm_mul_ps(_mm_loadu_ps(ra + fo[b]), _mm_loadu_ps(row[b] + fa));
            __m128 p1 = _mm_mul_ps(_mm_loadu_ps(ra + fo[b + 1]), _mm_loadu_ps(row[b + 1] + fa));
            acc0 = _mm_fmadd_ps(p0, _mm_set1_ps(xa * xv[b]), acc0);
            acc1 = _mm_fmadd_ps(p1, _mm_set1_ps(xa * xv[b + 1]), acc1);
        }
        if (b < n)
            acc0 = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(ra + fo[b]), _mm_loadu_ps(row[b] + fa)),
                                _mm_set1_ps(xa * xv[b]), acc0);
    }
    return hsum128(_mm_add_ps(acc0, acc1));
}

static AVX2 void update4_avx2(ffm *f, float *const *row, const size_t *fo, const float *xv,
                              size_t n, float r, float kappa, float eta, float lambda)
{
    const __m128 lam = _mm_set1_ps(lambda), et = _mm_set1_ps(eta);
    for (size_t a = 0; a + 1 < n; a++) {
        float ka = kappa * xv[a] * r;
        for (size_t b = a + 1; b < n; b++) {
            float *w1 = row[a] + fo[b], *w2 = row[b] + fo[a];
            float *g1 = f->G + (w1 - f->W), *g2 = f->G + (w2 - f->W);
            __m128 kv = _mm_set1_ps(ka * xv[b]);
            __m128 u = _mm_loadu_ps(w1), v = _mm_loadu_ps(w2);
            __m128 gu = _mm_fmadd_ps(lam, u, _mm_mul_ps(kv, v));
            __m128 gv = _mm_fmadd_ps(lam, v, _mm_mul_ps(kv, u));
            __m128 Gu = _mm_fmadd_ps(gu, gu, _mm_loadu_ps(g1));
            __m128 Gv = _mm_fmadd_ps(gv, gv, _mm_loadu_ps(g2));
            _mm_storeu_ps(g1, Gu);
            _mm_storeu_ps(g2, Gv);
            _mm_storeu_ps(w1, _mm_sub_ps(u, _mm_div_ps(_mm_mul_ps(et, gu), _mm_sqrt_ps(Gu))));
            _mm_storeu_ps(w2, _mm_sub_ps(v, _mm_div_ps(_mm_mul_ps(et, gv), _mm_sqrt_ps(Gv))));
        }
    }
}

/* Any k: blocks of 8, then one of 4, then single floats (k = 4 goes to wtx4_avx2). */
static AVX2 float wtx_avx2(const ffm *f, const fn_feature_triple *x, size_t nx, float r)
{
    const int k = f->k;
    if (k == 4 && nx <= FAST_TRIPLES) {
        float *row[FAST_TRIPLES], xv[FAST_TRIPLES];
        size_t fo[FAST_TRIPLES], n = gather(f, x, nx, row, fo, xv);
        return wtx4_avx2(row, fo, xv, n, r);
    }
    __m256 acc8 = _mm256_setzero_ps();
    __m128 acc4 = _mm_setzero_ps();
    float acc1 = 0;
    for (size_t a = 0; a < nx; a++) {
        if (!in_model(f, &x[a])) continue;
        const float *wa = f->W + x[a].index * f->row;
        for (size_t b = a + 1; b < nx; b++) {
            if (!in_model(f, &x[b])) continue;
            const float *w1 = wa + (size_t)x[b].field * k;
            const float *w2 = f->W + x[b].index * f->row + (size_t)x[a].field * k;
            float v = x[a].value * x[b].value * r;
            int d = 0;
            if (k >= 8) {
                __m256 v8 = _mm256_set1_ps(v);
                for (; d + 8 <= k; d += 8)
                    acc8 = _mm256_fmadd_ps(
                        _mm256_mul_ps(_mm256_loadu_ps(w1 + d), _mm256_loadu_ps(w2 + d)), v8, acc8);
            }
            if (d + 4 <= k) {
                acc4 = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(w1 + d), _mm_loadu_ps(w2 + d)),
                                    _mm_set1_ps(v), acc4);
                d += 4;
            }
            for (; d < k; d++) acc1 += w1[d] * w2[d] * v;
        }
    }
    return hsum256(acc8) + hsum128(acc4) + acc1;
}

static AVX2 void update_avx2(ffm *f, const fn_feature_triple *x, size_t nx, float r, float kappa,
                             float eta, float lambda)
{
    const int k = f->k;
    if (k == 4 && nx <= FAST_TRIPLES) {
        float *row[FAST_TRIPLES], xv[FAST_TRIPLES];
        size_t fo[FAST_TRIPLES], n = gather(f, x, nx, row, fo, xv);
        update4_avx2(f, row, fo, xv, n, r, kappa, eta, lambda);
        return;
    }
    const __m256 lam8 = _mm256_set1_ps(lambda), eta8 = _mm256_set1_ps(eta);
    const __m128 lam4 = _mm_set1_ps(lambda), eta4 = _mm_set1_ps(eta);
    for (size_t a = 0; a < nx; a++) {
        if (!in_model(f, &x[a])) continue;
        for (size_t b = a + 1; b < nx; b++) {
            if (!in_model(f, &x[b])) continue;
            size_t o1 = x[a].index * f->row + (size_t)x[b].field * k;
            size_t o2 = x[b].index * f->row + (size_t)x[a].field * k;
            float *w1 = f->W + o1, *w2 = f->W + o2, *g1 = f->G + o1, *g2 = f->G + o2;
            float kv = kappa * x[a].value * x[b].value * r;
            int d = 0;
            if (k >= 8) {
                __m256 kv8 = _mm256_set1_ps(kv);
                for (; d + 8 <= k; d += 8) {
                    __m256 u = _mm256_loadu_ps(w1 + d), v = _mm256_loadu_ps(w2 + d);
                    __m256 gu = _mm256_fmadd_ps(lam8, u, _mm256_mul_ps(kv8, v));
                    __m256 gv = _mm256_fmadd_ps(lam8, v, _mm256_mul_ps(kv8, u));
                    __m256 Gu = _mm256_fmadd_ps(gu, gu, _mm256_loadu_ps(g1 + d));
                    __m256 Gv = _mm256_fmadd_ps(gv, gv, _mm256_loadu_ps(g2 + d));
                    _mm256_storeu_ps(g1 + d, Gu);
                    _mm256_storeu_ps(g2 + d, Gv);
                    _mm256_storeu_ps(w1 + d, _mm256_sub_ps(u, _mm256_div_ps(_mm256_mul_ps(eta8, gu),
                                                                            _mm256_sqrt_ps(Gu))));
                    _mm256_storeu_ps(w2 + d, _mm256_sub_ps(v, _mm256_div_ps(_mm256_mul_ps(eta8, gv),
                                                                            _mm256_sqrt_ps(Gv))));
                }
            }
            if (d + 4 <= k) {
                __m128 kv4 = _mm_set1_ps(kv);
                __m128 u = _mm_loadu_ps(w1 + d), v = _mm_loadu_ps(w2 + d);
                __m128 gu = _mm_fmadd_ps(lam4, u, _mm_mul_ps(kv4, v));
                __m128 gv = _mm_fmadd_ps(lam4, v, _mm_mul_ps(kv4, u));
                __m128 Gu = _mm_fmadd_ps(gu, gu, _mm_loadu_ps(g1 + d));
                __m128 Gv = _mm_fmadd_ps(gv, gv, _mm_loadu_ps(g2 + d));
                _mm_storeu_ps(g1 + d, Gu);
                _mm_storeu_ps(g2 + d, Gv);
                _mm_storeu_ps(w1 + d,
                              _mm_sub_ps(u, _mm_div_ps(_mm_mul_ps(eta4, gu), _mm_sqrt_ps(Gu))));
                _mm_storeu_ps(w2 + d,
                              _mm_sub_ps(v, _mm_div_ps(_mm_mul_ps(eta4, gv), _mm_sqrt_ps(Gv))));
                d += 4;
            }
            for (; d < k; d++) {
                float u = w1[d], v = w2[d];
                float gu = lambda * u + kv * v, gv = lambda * v + kv * u;
                float Gu = g1[d] + gu * gu, Gv = g2[d] + gv * gv;
                g1[d] = Gu;
                g2[d] = Gv;
                w1[d] = u - eta / sqrtf(Gu) * gu;
                w2[d] = v - eta / sqrtf(Gv) * gv;
            }
        }
    }
}

/* As cross_portable; one horizontal sum per candidate, not per triple. */
static AVX2 float cross_avx2(const ffm *f, const fn_feature_triple *x, size_t nx, const float *C,
                             size_t off, size_t span)
{
    __m256 acc8 = _mm256_setzero_ps();
    __m128 acc4 = _mm_setzero_ps();
    float acc1 = 0;
    for (size_t a = 0; a < nx; a++) {
        const float *w = f->W + x[a].index * f->row + off, *c = C + (size_t)x[a].field * span;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 16 <= span; i += 16) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(c + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(c + i + 8), s1);
        }
        if (i + 8 <= span) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(c + i), s0);
            i += 8;
        }
        acc8 = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), _mm256_set1_ps(x[a].value), acc8);
        if (i + 4 <= span) {
            acc4 = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(w + i), _mm_loadu_ps(c + i)),
                                _mm_set1_ps(x[a].value), acc4);
            i += 4;
        }
        float s = 0;
        for (; i < span; i++) s += w[i] * c[i];
        acc1 += x[a].value * s;
    }
    return hsum256(acc8) + hsum128(acc4) + acc1;
}
#endif

static float wtx(const ffm *f, const fn_feature_triple *x, size_t nx, float r)
{
#ifdef FFM_X86
    if (f->avx2) return wtx_avx2(f, x, nx, r);
#endif
    return wtx_portable(f, x, nx, r);
}

static float cross(const ffm *f, const fn_feature_triple *x, size_t nx, const float *C, size_t off,
                   size_t span)
{
#ifdef FFM_X86
    if (f->avx2) return cross_avx2(f, x, nx, C, off, span);
#endif
    return cross_portable(f, x, nx, C, off, span);
}

/*
 * Asks for the cache lines a candidate's scoring will read. A request's candidates are items
 * spread over a table much larger than the caches; fetching a few candidates ahead overlaps
 * those misses instead of waiting on each in turn. A short row (up to 16 lines: m k <= 256) is
 * fetched whole; of a longer one, the shared fields' span (cross) and the vectors for the
 * candidate's other fields (its own pairs).
 */
static void prefetch_cand(const ffm *f, const fn_feature_triple *x, size_t nx, size_t off,
                          size_t span)
{
    const size_t row_bytes = f->row * sizeof(float);
    for (size_t a = 0; a < nx; a++) {
        const char *row = (const char *)(f->W + x[a].index * f->row);
        uintptr_t lo = (uintptr_t)row, hi = lo + row_bytes;
        if (row_bytes > 1024) {
            lo = (uintptr_t)(row + off * sizeof(float));
            hi = lo + span * sizeof(float);
            for (size_t b = 0; b < nx; b++)
                if (b != a) __builtin_prefetch(row + (size_t)x[b].field * f->k * sizeof(float));
        }
        for (uintptr_t p = lo & ~(uintptr_t)63; p < hi; p += 64) __builtin_prefetch((void *)p);
    }
}

/* ---- the model ---- */

static fn_status init(fn_model *m, fn_error *err)
{
    ffm *f = calloc(1, sizeof *f);
    if (!f) return fn_error_set(err, FN_ERR_NOMEM, "ffm: out of memory");
    f->n = m->n_features;
    f->m = m->n_fields;
    f->k = m->hp.k;
    f->row = (size_t)f->m * (size_t)f->k;
    f->avx2 = fn_fm_use_avx2();
    size_t total = 0;
    if (f->n <= SIZE_MAX / sizeof(float) / f->row) total = (size_t)f->n * f->row;
    if (!total || !(f->W = fn_fm_alloc(total))) {
        free(f);
        return fn_error_set(err, FN_ERR_NOMEM,
                            "ffm: no memory for %llu features x %u fields x k %d weights",
                            (unsigned long long)m->n_features, m->n_fields, m->hp.k);
    }
    /* libffm's initialisation, in its order: uniform [0, 1) / sqrt(k). */
    uint64_t state = m->hp.seed;
    float coef = 1.0f / sqrtf((float)f->k);
    for (size_t i = 0; i < total; i++) f->W[i] = coef * fn_rng_uniform(&state);
    m->impl = f;
    return FN_OK;
}

static void release(fn_model *m)
{
    ffm *f = m->impl;
    if (!f) return;
    free(f->W);
    free(f->G);
    free(f);
    m->impl = NULL;
}

/* One example: libffm's forward pass, loss and update. */
static double step(fn_model *m, const fn_dataset *d, size_t row)
{
    ffm *f = m->impl;
    const fn_feature_triple *x = d->triples + d->offsets[row];
    size_t nx = (size_t)(d->offsets[row + 1] - d->offsets[row]);
    float r = scale_of(m, x, nx);
    float t = wtx(f, x, nx, r);
    /* libffm: loss log1p(exp(-y t)), kappa = -y exp(-y t) / (1 + exp(-y t)) for y = +-1 */
    double dt, loss = fn_logistic_loss((double)t, d->labels[row], &dt);
    float kappa = (float)dt;
#ifdef FFM_X86
    if (f->avx2)
        update_avx2(f, x, nx, r, kappa, m->hp.lr, m->hp.l2);
    else
#endif
        update_portable(f, x, nx, r, kappa, m->hp.lr, m->hp.l2);
    return loss;
}

/*
 * Training reads and writes the whole row of every triple of an example, in W and in G; on a
 * table larger than the caches those are misses, which this overlaps with the example before.
 */
static void prefetch_example(const fn_model *m, const fn_dataset *d, size_t row)
{
    const ffm *f = m->impl;
    const size_t row_bytes = f->row * sizeof(float);
    for (uint64_t t = d->offsets[row]; t < d->offsets[row + 1]; t++) {
        if (!in_model(f, &d->triples[t])) continue;
        size_t o = d->triples[t].index * f->row;
        uintptr_t w = (uintptr_t)(f->W + o), g = (uintptr_t)(f->G + o);
        for (size_t b = 0; b < row_bytes; b += 64) {
            __builtin_prefetch((void *)(w + b), 1);
            __builtin_prefetch((void *)(g + b), 1);
        }
    }
}

static fn_status train(fn_model *m, const fn_train_options *o, const fn_dataset *t,
                       const fn_dataset *v, fn_train_report *r, fn_error *err)
{
    ffm *f = m->impl;
    if (!(o->l2 >= 0) || !isfinite(o->l2))
        return fn_error_set(err, FN_ERR_INVALID, "ffm train: l2 must be a number >= 0, not %g",
                            (double)o->l2);
    size_t total = (size_t)f->n * f->row;
    if (!(f->G = fn_fm_alloc(total)))
        return fn_error_set(err, FN_ERR_NOMEM, "ffm train: no memory for %zu accumulators", total);
    for (size_t i = 0; i < total; i++) f->G[i] = 1.0f; /* libffm's start */
    fn_fm_trainer tr = {
        .m = m, .step = step, .prefetch = prefetch_example, .params = f->W, .n_params = total};
    fn_status st = fn_fm_train_epochs(&tr, o, t, v, r, err);
    free(f->G);
    f->G = NULL;
    return st;
}

static fn_status predict(const fn_model *m, const fn_dataset *d, size_t r0, size_t n, float *out,
                         fn_error *err)
{
    (void)err;
    const ffm *f = m->impl;
    for (size_t i = 0; i < n; i++) {
        const fn_feature_triple *x = d->triples + d->offsets[r0 + i];
        size_t nx = (size_t)(d->offsets[r0 + i + 1] - d->offsets[r0 + i]);
        out[i] = fn_sigmoid(wtx(f, x, nx, scale_of(m, x, nx)));
    }
    return FN_OK;
}

/* Candidates whose rows are fetched ahead of their scoring (see prefetch_cand). */
#define PREFETCH_AHEAD 4

/* model.c has checked that every triple lies inside the model. */
static fn_status score(const fn_model *m, const fn_score_request *q, float *out, fn_error *err)
{
    const ffm *f = m->impl;
    const size_t k = (size_t)f->k;
    uint32_t gmin = UINT32_MAX, gmax = 0;
    float shared_sq = 0;
    for (size_t s = 0; s < q->n_shared; s++) {
        if (q->shared[s].field < gmin) gmin = q->shared[s].field;
        if (q->shared[s].field > gmax) gmax = q->shared[s].field;
        shared_sq += q->shared[s].value * q->shared[s].value;
    }
    /* C[f] over the shared fields gmin..gmax: span floats per candidate field. */
    size_t span = q->n_shared ? (size_t)(gmax - gmin + 1) * k : 0, off = (size_t)gmin * k;
    float *C = NULL;
    if (span && !(C = fn_fm_alloc(span * f->m)))
        return fn_error_set(err, FN_ERR_NOMEM, "ffm score: out of memory");
    for (size_t s = 0; s < q->n_shared; s++) {
        const float *w = f->W + q->shared[s].index * f->row;
        float x = q->shared[s].value;
        /* B[g][fc] += w[j][fc] x for every candidate field fc: g's slot in each C[fc]. */
        float *c = C + (size_t)(q->shared[s].field - gmin) * k;
        for (uint32_t fc = 0; fc < f->m; fc++, c += span, w += k)
            for (size_t d = 0; d < k; d++) c[d] += w[d] * x;
    }
    float ss = wtx(f, q->shared, q->n_shared, 1.0f);
    for (size_t c = 0; c < q->n_cand; c++) {
        if (c + PREFETCH_AHEAD < q->n_cand) {
            size_t p = c + PREFETCH_AHEAD;
            prefetch_cand(f, q->cand + q->cand_offsets[p],
                          q->cand_offsets[p + 1] - q->cand_offsets[p], off, span);
        }
        const fn_feature_triple *x = q->cand + q->cand_offsets[c];
        size_t nx = q->cand_offsets[c + 1] - q->cand_offsets[c];
        float sq = shared_sq;
        for (size_t a = 0; a < nx; a++) sq += x[a].value * x[a].value;
        float cs = span ? cross(f, x, nx, C, off, span) : 0;
        float r = m->hp.normalize && sq > 0 ? 1.0f / sq : 1.0f;
        out[c] = fn_sigmoid(r * (ss + cs + wtx(f, x, nx, 1.0f)));
    }
    free(C);
    return FN_OK;
}

/* "embedding" [n_features, n_fields, k], F32: W as it lies. */
static fn_status save(const fn_model *m, fn_safetensors_writer *w, fn_error *err)
{
    const ffm *f = m->impl;
    int64_t shape[3] = {(int64_t)f->n, (int64_t)f->m, (int64_t)f->k};
    return fn_safetensors_writer_add(w, "embedding", FN_ST_F32, 3, shape, f->W, err);
}

static fn_status load(fn_model *m, const fn_safetensors *st, fn_error *err)
{
    ffm *f = m->impl;
    int64_t shape[3] = {(int64_t)f->n, (int64_t)f->m, (int64_t)f->k};
    return fn_rank_load_f32(st, "embedding", 3, shape, f->W, err);
}

const fn_model_ops fn_ffm_ops = {.kind = FN_MODEL_FFM,
                                 .init = init,
                                 .train = train,
                                 .predict = predict,
                                 .score = score,
                                 .save = save,
                                 .load = load,
                                 .free = release};
