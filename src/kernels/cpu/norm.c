/* norm.c - LayerNorm with a fused residual add, and L2 normalisation of rows. */
#include <math.h>

#include "cpu_impl.h"
#include "vmath.h"

typedef struct ln_job {
    const float *x, *res, *gamma, *beta;
    float *out;
    int64_t d;
    float eps;
} ln_job;

/* Two passes (mean, then squared deviations) as PyTorch does, in double. */
static void ln_portable(void *ctx, int64_t r0, int64_t r1)
{
    ln_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * j->d, *res = j->res ? j->res + r * j->d : NULL;
        float *o = j->out + r * j->d;
        double sum = 0;
        for (int64_t i = 0; i < j->d; i++) {
            float v = x[i] + (res ? res[i] : 0.0f);
            o[i] = v;
            sum += v;
        }
        double mean = sum / (double)j->d, var = 0;
        for (int64_t i = 0; i < j->d; i++) var += (o[i] - mean) * (o[i] - mean);
        double rstd = 1.0 / sqrt(var / (double)j->d + j->eps);
        for (int64_t i = 0; i < j->d; i++)
            o[i] = (float)((o[i] - mean) * rstd) * j->gamma[i] + j->beta[i];
    }
}

static FN_AVX2 void ln_avx2(void *ctx, int64_t r0, int64_t r1)
{
    ln_job *j = ctx;
    int64_t n8 = j->d & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * j->d, *res = j->res ? j->res + r * j->d : NULL;
        float *o = j->out + r * j->d;
        __m256 acc = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i < n8; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res + i));
            _mm256_storeu_ps(o + i, v);
            acc = _mm256_add_ps(acc, v);
        }
        float sum = fn_v_hsum(acc);
        for (; i < j->d; i++) {
            o[i] = x[i] + (res ? res[i] : 0.0f);
            sum += o[i];
        }
        float mean = sum / (float)j->d;
        __m256 vm = _mm256_set1_ps(mean);
        acc = _mm256_setzero_ps();
        for (i = 0; i < n8; i += 8) {
            __m256 dv = _mm256_sub_ps(_mm256_loadu_ps(o + i), vm);
            acc = _mm256_fmadd_ps(dv, dv, acc);
        }
        float var = fn_v_hsum(acc);
        for (; i < j->d; i++) var += (o[i] - mean) * (o[i] - mean);
        float rstd = 1.0f / sqrtf(var / (float)j->d + j->eps);
        __m256 vr = _mm256_set1_ps(rstd);
        for (i = 0; i < n8; i += 8) {
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(o + i), vm), vr);
            v = _mm256_fmadd_ps(v, _mm256_loadu_ps(j->gamma + i), _mm256_loadu_ps(j->beta + i));
            _mm256_storeu_ps(o + i, v);
        }
        for (; i < j->d; i++) o[i] = (o[i] - mean) * rstd * j->gamma[i] + j->beta[i];
    }
}

fn_status fn_cpu_layernorm(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                           const fn_tensor *gamma, const fn_tensor *beta, float eps, fn_tensor *out,
                           fn_error *err)
{
    if (x->dtype != FN_F32) return fn_cpu_f32_only("layernorm", x, err);
    fn_cpu *c = fn_cpu_of(b);
    ln_job j = {x->data,     residual ? residual->data : NULL,
                gamma->data, beta->data,
                out->data,   x->ne[x->ndim - 1],
                eps};
    fn_cpu_for_rows(c, fn_tensor_rows(x), 1 + 8192 / j.d, c->simd ? ln_avx2 : ln_portable, &j);
    return FN_OK;
}

typedef struct l2_job {
    float *x;
    int64_t d;
} l2_job;

static void l2_portable(void *ctx, int64_t r0, int64_t r1)
{
    l2_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        float *x = j->x + r * j->d;
        double s = 0;
        for (int64_t i = 0; i < j->d; i++) s += (double)x[i] * x[i];
        double n = sqrt(s);
        float inv = (float)(1.0 / (n > 1e-12 ? n : 1e-12));
        for (int64_t i = 0; i < j->d; i++) x[i] *= inv;
    }
}

static FN_AVX2 void l2_avx2(void *ctx, int64_t r0, int64_t r1)
{
    l2_job *j = ctx;
    int64_t n8 = j->d & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        float *x = j->x + r * j->d;
        __m256 acc = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i < n8; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            acc = _mm256_fmadd_ps(v, v, acc);
        }
        float s = fn_v_hsum(acc);
        for (; i < j->d; i++) s += x[i] * x[i];
        float n = sqrtf(s);
        float inv = 1.0f / (n > 1e-12f ? n : 1e-12f);
        __m256 vi = _mm256_set1_ps(inv);
        for (i = 0; i < n8; i += 8)
            _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
        for (; i < j->d; i++) x[i] *= inv;
    }
}

fn_status fn_cpu_l2_normalize(fn_backend *b, fn_tensor *x, fn_error *err)
{
    if (x->dtype != FN_F32) return fn_cpu_f32_only("l2_normalize", x, err);
    fn_cpu *c = fn_cpu_of(b);
    l2_job j = {x->data, x->ne[x->ndim - 1]};
    fn_cpu_for_rows(c, fn_tensor_rows(x), 1 + 8192 / j.d, c->simd ? l2_avx2 : l2_portable, &j);
    return FN_OK;
}
