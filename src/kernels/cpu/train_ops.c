/*
 * train_ops.c - the CPU backend's training ops, for the DeepFM MLP and the
 * reranker: copy, the backward pass of an activation, column sums (bias
 * gradients), dropout, the Adam step, axpy (gradient accumulation), and the
 * backward passes of layernorm and of attention.
 *
 * The elementwise ops split the elements over the pool in chunks of at least
 * CHUNK; column sums split the columns. Each keeps its portable loop next to
 * its AVX2 one. Dropout has only the portable one: its hash needs 64-bit
 * multiplies that AVX2 lacks, and its mask must match the CUDA backend's bit
 * for bit (dropout_mask.h). The two backward passes are portable C on every
 * kernel level, accumulating in double: they run once per training step, not
 * per request.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_impl.h"
#include "kernels/dropout_mask.h"
#include "vmath.h"

/* Elements per task: below this, handing work to threads costs more than it saves. */
#define CHUNK 16384

fn_status fn_cpu_copy(fn_backend *b, const fn_tensor *src, fn_tensor *dst, fn_error *err)
{
    (void)b, (void)err;
    if (dst->data != src->data) memmove(dst->data, src->data, fn_tensor_nbytes(src));
    return FN_OK;
}

/* ---- activation backward: dx = dy act'(pre) ---- */

typedef struct act_job {
    const float *pre, *dy;
    float *dx;
    fn_act act;
} act_job;

/* d/dx of x Phi(x) (GELU, erf form): Phi(x) + x phi(x). */
static float gelu_grad(float x)
{
    float cdf = 0.5f * erfcf(-x * 0.70710678118654752f);
    return cdf + x * 0.39894228040143268f * expf(-0.5f * x * x);
}

static float act_grad(float pre, fn_act act)
{
    if (act == FN_ACT_RELU) return pre > 0 ? 1.0f : 0.0f;
    if (act == FN_ACT_GELU) return gelu_grad(pre);
    return 1.0f;
}

static void act_portable(void *ctx, int64_t i0, int64_t i1)
{
    act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->dx[i] = j->dy[i] * act_grad(j->pre[i], j->act);
}

static FN_AVX2 void act_avx2(void *ctx, int64_t i0, int64_t i1)
{
    act_job *j = ctx;
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        __m256 pre = _mm256_loadu_ps(j->pre + i), dy = _mm256_loadu_ps(j->dy + i);
        if (j->act == FN_ACT_RELU)
            dy = _mm256_and_ps(dy, _mm256_cmp_ps(pre, _mm256_setzero_ps(), _CMP_GT_OQ));
        if (j->act == FN_ACT_GELU) dy = _mm256_mul_ps(dy, fn_v_gelu_grad(pre));
        _mm256_storeu_ps(j->dx + i, dy);
    }
    act_portable(ctx, i, i1);
}

fn_status fn_cpu_act_backward(fn_backend *b, const fn_tensor *pre, const fn_tensor *dy, fn_act act,
                              fn_tensor *dx, fn_error *err)
{
    if (act == FN_ACT_NONE) return fn_cpu_copy(b, dy, dx, err);
    fn_cpu *c = fn_cpu_of(b);
    act_job j = {pre->data, dy->data, dx->data, act};
    fn_cpu_for_rows(c, fn_tensor_numel(pre), CHUNK, c->simd ? act_avx2 : act_portable, &j);
    return FN_OK;
}

/* ---- column sums: out[j] = beta out[j] + sum_i x[i, j] ---- */

/* Columns per block: one 64-byte line of each row. Sums run in double, row by row. */
#define SUM_BLOCK 16

typedef struct sum_job {
    const float *x;
    float *out;
    int64_t rows, cols;
    float beta;
} sum_job;

static void sum_store(const sum_job *j, int64_t c0, int64_t n, const double *acc)
{
    for (int64_t k = 0; k < n; k++) {
        double s = acc[k];
        /* beta 0 does not read out, as in BLAS: whatever it held (NaN too) is replaced. */
        if (j->beta != 0) s += (double)j->beta * j->out[c0 + k];
        j->out[c0 + k] = (float)s;
    }
}

static void sum_block_portable(const sum_job *j, int64_t c0, int64_t n)
{
    double acc[SUM_BLOCK] = {0};
    for (int64_t r = 0; r < j->rows; r++) {
        const float *x = j->x + r * j->cols + c0;
        for (int64_t k = 0; k < n; k++) acc[k] += x[k];
    }
    sum_store(j, c0, n, acc);
}

static void sum_portable(void *ctx, int64_t b0, int64_t b1)
{
    sum_job *j = ctx;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t c0 = blk * SUM_BLOCK;
        sum_block_portable(j, c0, j->cols - c0 < SUM_BLOCK ? j->cols - c0 : SUM_BLOCK);
    }
}

static FN_AVX2 void sum_avx2(void *ctx, int64_t b0, int64_t b1)
{
    sum_job *j = ctx;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t c0 = blk * SUM_BLOCK;
        if (j->cols - c0 < SUM_BLOCK) {
            sum_block_portable(j, c0, j->cols - c0);
            continue;
        }
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t r = 0; r < j->rows; r++) {
            const float *x = j->x + r * j->cols + c0;
            __m256 lo = _mm256_loadu_ps(x), hi = _mm256_loadu_ps(x + 8);
            a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(lo)));
            a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(lo, 1)));
            a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm256_castps256_ps128(hi)));
            a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm256_extractf128_ps(hi, 1)));
        }
        double acc[SUM_BLOCK];
        _mm256_storeu_pd(acc, a0);
        _mm256_storeu_pd(acc + 4, a1);
        _mm256_storeu_pd(acc + 8, a2);
        _mm256_storeu_pd(acc + 12, a3);
        sum_store(j, c0, SUM_BLOCK, acc);
    }
}

fn_status fn_cpu_sum_rows(fn_backend *b, const fn_tensor *x, float beta, fn_tensor *out,
                          fn_error *err)
{
    (void)err;
    fn_cpu *c = fn_cpu_of(b);
    sum_job j = {x->data, out->data, fn_tensor_rows(x), x->ne[x->ndim - 1], beta};
    int64_t blocks = (j.cols + SUM_BLOCK - 1) / SUM_BLOCK;
    fn_cpu_for_rows(c, blocks, 1 + CHUNK / (SUM_BLOCK * j.rows), c->simd ? sum_avx2 : sum_portable,
                    &j);
    return FN_OK;
}

/* ---- dropout ---- */

typedef struct drop_job {
    float *x;
    uint64_t key;
    uint32_t threshold;
    float scale;
} drop_job;

static void drop_part(void *ctx, int64_t i0, int64_t i1)
{
    drop_job *j = ctx;
    for (int64_t i = i0; i < i1; i++)
        j->x[i] = fn_dropout_bits(j->key, (uint64_t)i) < j->threshold ? 0.0f : j->x[i] * j->scale;
}

fn_status fn_cpu_dropout(fn_backend *b, fn_tensor *x, uint64_t key, uint32_t threshold, float scale,
                         fn_error *err)
{
    (void)err;
    drop_job j = {x->data, key, threshold, scale};
    fn_cpu_for_rows(fn_cpu_of(b), fn_tensor_numel(x), CHUNK, drop_part, &j);
    return FN_OK;
}

/* ---- Adam ---- */

typedef struct adam_job {
    float *p, *m, *v;
    const float *g;
    fn_adam_step s;
} adam_job;

static void adam_portable(void *ctx, int64_t i0, int64_t i1)
{
    adam_job *j = ctx;
    const fn_adam_step *s = &j->s;
    float c1 = 1 - s->beta1, c2 = 1 - s->beta2;
    for (int64_t i = i0; i < i1; i++) {
        float g = j->g[i] + s->l2 * j->p[i];
        float m = s->beta1 * j->m[i] + c1 * g;
        float v = s->beta2 * j->v[i] + c2 * g * g;
        j->m[i] = m;
        j->v[i] = v;
        j->p[i] -= s->lr_t * m / (sqrtf(v) * s->rsqrt_bc2 + s->eps);
    }
}

static FN_AVX2 void adam_avx2(void *ctx, int64_t i0, int64_t i1)
{
    adam_job *j = ctx;
    const fn_adam_step *s = &j->s;
    const __m256 b1 = _mm256_set1_ps(s->beta1), b2 = _mm256_set1_ps(s->beta2);
    const __m256 c1 = _mm256_set1_ps(1 - s->beta1), c2 = _mm256_set1_ps(1 - s->beta2);
    const __m256 l2 = _mm256_set1_ps(s->l2), lr = _mm256_set1_ps(s->lr_t);
    const __m256 rbc2 = _mm256_set1_ps(s->rsqrt_bc2), eps = _mm256_set1_ps(s->eps);
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        __m256 p = _mm256_loadu_ps(j->p + i);
        __m256 g = _mm256_fmadd_ps(l2, p, _mm256_loadu_ps(j->g + i));
        __m256 m = _mm256_fmadd_ps(b1, _mm256_loadu_ps(j->m + i), _mm256_mul_ps(c1, g));
        __m256 v =
            _mm256_fmadd_ps(b2, _mm256_loadu_ps(j->v + i), _mm256_mul_ps(_mm256_mul_ps(c2, g), g));
        __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(v), rbc2, eps);
        _mm256_storeu_ps(j->m + i, m);
        _mm256_storeu_ps(j->v + i, v);
        _mm256_storeu_ps(j->p + i, _mm256_sub_ps(p, _mm256_div_ps(_mm256_mul_ps(lr, m), den)));
    }
    adam_portable(ctx, i, i1);
}

fn_status fn_cpu_adam(fn_backend *b, fn_tensor *param, const fn_tensor *grad, fn_tensor *m,
                      fn_tensor *v, const fn_adam_step *s, fn_error *err)
{
    (void)err;
    fn_cpu *c = fn_cpu_of(b);
    adam_job j = {param->data, m->data, v->data, grad->data, *s};
    fn_cpu_for_rows(c, fn_tensor_numel(param), CHUNK, c->simd ? adam_avx2 : adam_portable, &j);
    return FN_OK;
}

/* ---- axpy: y += alpha x ---- */

typedef struct axpy_job {
    const float *x;
    float *y;
    float alpha;
} axpy_job;

static void axpy_portable(void *ctx, int64_t i0, int64_t i1)
{
    axpy_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->y[i] += j->alpha * j->x[i];
}

static FN_AVX2 void axpy_avx2(void *ctx, int64_t i0, int64_t i1)
{
    axpy_job *j = ctx;
    const __m256 a = _mm256_set1_ps(j->alpha);
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(j->y + i,
                         _mm256_fmadd_ps(a, _mm256_loadu_ps(j->x + i), _mm256_loadu_ps(j->y + i)));
    axpy_portable(ctx, i, i1);
}

fn_status fn_cpu_axpy(fn_backend *b, float alpha, const fn_tensor *x, fn_tensor *y, fn_error *err)
{
    (void)err;
    fn_cpu *c = fn_cpu_of(b);
    axpy_job j = {x->data, y->data, alpha};
    fn_cpu_for_rows(c, fn_tensor_numel(x), CHUNK, c->simd ? axpy_avx2 : axpy_portable, &j);
    return FN_OK;
}

/* ---- layernorm backward ----
 * With v = x + residual, xhat = (v - mean) rstd and out = xhat gamma + beta:
 *   dgamma = sum over rows of dout xhat, dbeta = sum over rows of dout,
 *   dv = rstd (g - mean(g) - xhat mean(g xhat)) with g = dout gamma.
 * Three passes: each row's mean and rstd (kept, in double), the column sums
 * (split over columns, as sum_rows), then dx (split over rows). dx is written
 * last, so it may be dout, x or residual. */

typedef struct lnb_job {
    const float *x, *res, *gamma, *dout;
    float *dx, *dgamma, *dbeta;
    double *stats; /* mean, rstd per row */
    int64_t rows, d;
    double eps;
} lnb_job;

/* v = x + residual, rounded to f32 as the forward op rounds it. */
static inline float lnb_v(const lnb_job *j, int64_t i)
{
    return j->x[i] + (j->res ? j->res[i] : 0.0f);
}

/* Two passes (mean, then squared deviations), as the forward op computes them. */
static void lnb_stats(void *ctx, int64_t r0, int64_t r1)
{
    lnb_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        double sum = 0, var = 0;
        for (int64_t i = 0; i < j->d; i++) sum += lnb_v(j, r * j->d + i);
        double mean = sum / (double)j->d;
        for (int64_t i = 0; i < j->d; i++) {
            double e = lnb_v(j, r * j->d + i) - mean;
            var += e * e;
        }
        j->stats[2 * r] = mean;
        j->stats[2 * r + 1] = 1.0 / sqrt(var / (double)j->d + j->eps);
    }
}

static void lnb_params(void *ctx, int64_t b0, int64_t b1)
{
    lnb_job *j = ctx;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t c0 = blk * SUM_BLOCK, n = j->d - c0 < SUM_BLOCK ? j->d - c0 : SUM_BLOCK;
        double ag[SUM_BLOCK] = {0}, ab[SUM_BLOCK] = {0};
        for (int64_t r = 0; r < j->rows; r++) {
            double mean = j->stats[2 * r], rstd = j->stats[2 * r + 1];
            for (int64_t k = 0; k < n; k++) {
                int64_t i = r * j->d + c0 + k;
                ag[k] += j->dout[i] * ((lnb_v(j, i) - mean) * rstd);
                ab[k] += j->dout[i];
            }
        }
        for (int64_t k = 0; k < n; k++) {
            if (j->dgamma) j->dgamma[c0 + k] = (float)ag[k];
            if (j->dbeta) j->dbeta[c0 + k] = (float)ab[k];
        }
    }
}

static void lnb_dx(void *ctx, int64_t r0, int64_t r1)
{
    lnb_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        double mean = j->stats[2 * r], rstd = j->stats[2 * r + 1], sg = 0, sgx = 0;
        const int64_t o = r * j->d;
        for (int64_t i = 0; i < j->d; i++) {
            double g = (double)j->dout[o + i] * j->gamma[i];
            sg += g;
            sgx += g * ((lnb_v(j, o + i) - mean) * rstd);
        }
        sg /= (double)j->d, sgx /= (double)j->d;
        /* Element i is read before it is written: dx may alias dout, x or residual. */
        for (int64_t i = 0; i < j->d; i++) {
            double xhat = (lnb_v(j, o + i) - mean) * rstd;
            double g = (double)j->dout[o + i] * j->gamma[i];
            j->dx[o + i] = (float)(rstd * (g - sg - xhat * sgx));
        }
    }
}

fn_status fn_cpu_layernorm_backward(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                                    const fn_tensor *gamma, float eps, const fn_tensor *dout,
                                    fn_tensor *dx, fn_tensor *dgamma, fn_tensor *dbeta,
                                    fn_error *err)
{
    fn_cpu *c = fn_cpu_of(b);
    lnb_job j = {.x = x->data,
                 .res = residual ? residual->data : NULL,
                 .gamma = gamma->data,
                 .dout = dout->data,
                 .dx = dx->data,
                 .dgamma = dgamma ? dgamma->data : NULL,
                 .dbeta = dbeta ? dbeta->data : NULL,
                 .rows = fn_tensor_rows(x),
                 .d = x->ne[x->ndim - 1],
                 .eps = eps};
    j.stats = malloc((size_t)j.rows * 2 * sizeof *j.stats);
    if (!j.stats)
        return fn_error_set(err, FN_ERR_NOMEM, "layernorm_backward: no memory for %lld rows",
                            (long long)j.rows);
    int64_t min_rows = 1 + 8192 / j.d;
    fn_cpu_for_rows(c, j.rows, min_rows, lnb_stats, &j);
    if (j.dgamma || j.dbeta) {
        int64_t blocks = (j.d + SUM_BLOCK - 1) / SUM_BLOCK;
        fn_cpu_for_rows(c, blocks, 1 + CHUNK / (SUM_BLOCK * j.rows), lnb_params, &j);
    }
    fn_cpu_for_rows(c, j.rows, min_rows, lnb_dx, &j);
    free(j.stats);
    return FN_OK;
}

/* ---- attention backward ----
 * One task per (sequence, head), which owns that head's slices of dq, dk and
 * dv for every token of the sequence, so tasks never share an output. With
 * p_ij = softmax_j(s_ij) over the real keys, s_ij = scale q_i . k_j:
 *   dv_j += p_ij dout_i
 *   ds_ij = p_ij (dout_i . v_j - delta_i), delta_i = dout_i . out_i
 *   dq_i = scale sum_j ds_ij k_j,  dk_j += scale ds_ij q_i
 * For each query, a first walk over the keys recomputes the softmax (running
 * max and sum, in double) for m_i, l_i and delta_i = sum_j p_ij dout_i . v_j
 * (= dout_i . out_i); a second recomputes the scores and accumulates the
 * gradients. Memory is O(D) per task. Masked keys get no gradient; a sequence with no real key has
 * a constant (zero) output, so all its gradients are zero; a padded query is computed as the
 * forward op computes it, over the real keys. */

#define ATTB_MAX_HEAD_DIM 256

typedef struct attb_job {
    const float *qkv, *dout;
    const int32_t *mask;
    float *dqkv;
    int64_t t, heads, hd, width; /* width = 3 * heads * hd */
    float scale;
} attb_job;

static float dot_f32(const float *a, const float *b, int64_t n)
{
    float s = 0;
    for (int64_t d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

static void attb_task(void *ctx, size_t idx)
{
    const attb_job *j = ctx;
    const int64_t b = (int64_t)idx / j->heads, h = (int64_t)idx % j->heads, hd = j->hd;
    const int32_t *mask = j->mask + b * j->t;
    const float *base = j->qkv + b * j->t * j->width;
    float *dbase = j->dqkv + b * j->t * j->width;
    const int64_t qo = h * hd, ko = (j->heads + h) * hd, vo = (2 * j->heads + h) * hd;
    int any = 0;
    for (int64_t i = 0; i < j->t; i++) {
        memset(dbase + i * j->width + qo, 0, (size_t)hd * sizeof(float));
        memset(dbase + i * j->width + ko, 0, (size_t)hd * sizeof(float));
        memset(dbase + i * j->width + vo, 0, (size_t)hd * sizeof(float));
        any |= mask[i] != 0;
    }
    if (!any) return;
    double dq[ATTB_MAX_HEAD_DIM];
    for (int64_t i = 0; i < j->t; i++) {
        const float *q = base + i * j->width + qo;
        const float *go = j->dout + (b * j->t + i) * j->heads * hd + h * hd;
        /* delta = sum_k p_k dp_k with the dp_k of the second walk, bit for bit, so that
           ds is exactly 0 when one key takes all the weight, as in exact arithmetic. */
        double m = -INFINITY, l = 0, dsum = 0;
        for (int64_t d = 0; d < hd; d++) dq[d] = 0;
        for (int64_t k = 0; k < j->t; k++) {
            if (!mask[k]) continue;
            double s = (double)(dot_f32(q, base + k * j->width + ko, hd) * j->scale);
            double dp = (double)dot_f32(go, base + k * j->width + vo, hd);
            if (s > m) {
                double corr = exp(m - s); /* 0 on the first real key: m is -inf */
                l = l * corr + 1;
                dsum = dsum * corr + dp;
                m = s;
            } else {
                double p = exp(s - m);
                l += p;
                dsum += p * dp;
            }
        }
        double inv_l = 1.0 / l, delta = dsum * inv_l;
        for (int64_t k = 0; k < j->t; k++) {
            if (!mask[k]) continue;
            const float *key = base + k * j->width + ko, *v = base + k * j->width + vo;
            double s = (double)(dot_f32(q, key, hd) * j->scale);
            double p = exp(s - m) * inv_l;
            double ds = p * ((double)dot_f32(go, v, hd) - delta);
            float *dk = dbase + k * j->width + ko, *dv = dbase + k * j->width + vo;
            float dsk = (float)(ds * j->scale), pf = (float)p;
            for (int64_t d = 0; d < hd; d++) {
                dq[d] += ds * key[d];
                dk[d] += dsk * q[d];
                dv[d] += pf * go[d];
            }
        }
        float *dqo = dbase + i * j->width + qo;
        for (int64_t d = 0; d < hd; d++) dqo[d] = (float)(dq[d] * j->scale);
    }
}

fn_status fn_cpu_attention_backward(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask,
                                    int n_heads, const fn_tensor *dout, fn_tensor *dqkv,
                                    fn_error *err)
{
    fn_cpu *c = fn_cpu_of(b);
    attb_job j = {.qkv = qkv->data,
                  .dout = dout->data,
                  .mask = mask->data,
                  .dqkv = dqkv->data,
                  .t = qkv->ne[1],
                  .heads = n_heads,
                  .width = qkv->ne[2]};
    j.hd = j.width / (3 * j.heads);
    if (j.hd > ATTB_MAX_HEAD_DIM)
        return fn_error_set(err, FN_ERR_UNSUPPORTED,
                            "attention_backward: head dimension %lld exceeds %d", (long long)j.hd,
                            ATTB_MAX_HEAD_DIM);
    j.scale = 1.0f / sqrtf((float)j.hd);
    fn_pool_run(c->pool, (size_t)(qkv->ne[0] * j.heads), attb_task, &j);
    return FN_OK;
}
