/*
 * train_ops.c - the CPU backend's training ops, for the DeepFM MLP and the
 * reranker: copy, the backward pass of an activation, column sums (bias
 * gradients), dropout and the Adam step.
 *
 * The elementwise ops split the elements over the pool in chunks of at least
 * CHUNK; column sums split the columns. Each keeps its portable loop next to
 * its AVX2 one. Dropout has only the portable one: its hash needs 64-bit
 * multiplies that AVX2 lacks, and its mask must match the CUDA backend's bit
 * for bit (dropout_mask.h).
 */
#include <math.h>
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
