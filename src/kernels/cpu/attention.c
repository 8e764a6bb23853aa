/*
 * attention.c - fused multi-head self-attention with a padding mask.
 *
 * One task per (sequence, head). For each query, keys are visited in tiles
 * of TILE with an online softmax: the running maximum m, the running sum l
 * and the weighted sum of values are rescaled when m grows, so the T x T score
 * matrix never exists and memory stays O(T * D) per task.
 */
#include <math.h>
#include <string.h>

#include "cpu_impl.h"
#include "vmath.h"

#define TILE         32
#define MAX_HEAD_DIM 256

typedef struct job {
    const float *qkv;
    const int32_t *mask;
    float *out;
    int64_t t, heads, hd, width; /* width = 3 * heads * hd */
    float scale;
} job;

static void task_portable(const job *j, int64_t b, int64_t h)
{
    const int32_t *mask = j->mask + b * j->t;
    const float *base = j->qkv + b * j->t * j->width;
    float acc[MAX_HEAD_DIM], s[TILE];
    for (int64_t i = 0; i < j->t; i++) {
        const float *q = base + i * j->width + h * j->hd;
        float m = -INFINITY, l = 0;
        memset(acc, 0, (size_t)j->hd * sizeof *acc);
        for (int64_t j0 = 0; j0 < j->t; j0 += TILE) {
            int64_t n = j->t - j0 < TILE ? j->t - j0 : TILE;
            float tmax = -INFINITY;
            for (int64_t k = 0; k < n; k++) {
                if (!mask[j0 + k]) {
                    s[k] = -INFINITY;
                    continue;
                }
                const float *key = base + (j0 + k) * j->width + (j->heads + h) * j->hd;
                float dot = 0;
                for (int64_t d = 0; d < j->hd; d++) dot += q[d] * key[d];
                s[k] = dot * j->scale;
                tmax = s[k] > tmax ? s[k] : tmax;
            }
            if (tmax == -INFINITY) continue; /* every key of the tile is padding */
            float mnew = tmax > m ? tmax : m;
            float corr = expf(m - mnew); /* 0 on the first tile: m is -inf */
            l *= corr;
            for (int64_t d = 0; d < j->hd; d++) acc[d] *= corr;
            for (int64_t k = 0; k < n; k++) {
                if (s[k] == -INFINITY) continue;
                float p = expf(s[k] - mnew);
                l += p;
                const float *v = base + (j0 + k) * j->width + (2 * j->heads + h) * j->hd;
                for (int64_t d = 0; d < j->hd; d++) acc[d] += p * v[d];
            }
            m = mnew;
        }
        float *o = j->out + (b * j->t + i) * j->heads * j->hd + h * j->hd;
        float inv = l > 0 ? 1.0f / l : 0.0f;
        for (int64_t d = 0; d < j->hd; d++) o[d] = acc[d] * inv;
    }
}

/* head_dim a multiple of 8, at most MAX_HEAD_DIM. */
static FN_AVX2 void task_avx2(const job *j, int64_t b, int64_t h)
{
    const int32_t *mask = j->mask + b * j->t;
    const float *base = j->qkv + b * j->t * j->width;
    const int64_t nv = j->hd / 8;
    __m256 acc[MAX_HEAD_DIM / 8], qv[MAX_HEAD_DIM / 8];
    _Alignas(32) float s[TILE];
    for (int64_t i = 0; i < j->t; i++) {
        const float *q = base + i * j->width + h * j->hd;
        for (int64_t d = 0; d < nv; d++) {
            qv[d] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * d), _mm256_set1_ps(j->scale));
            acc[d] = _mm256_setzero_ps();
        }
        float m = -INFINITY, l = 0;
        for (int64_t j0 = 0; j0 < j->t; j0 += TILE) {
            int64_t n = j->t - j0 < TILE ? j->t - j0 : TILE;
            float tmax = -INFINITY;
            for (int64_t k = 0; k < n; k++) {
                if (!mask[j0 + k]) {
                    s[k] = -INFINITY;
                    continue;
                }
                const float *key = base + (j0 + k) * j->width + (j->heads + h) * j->hd;
                __m256 dot = _mm256_mul_ps(qv[0], _mm256_loadu_ps(key));
                for (int64_t d = 1; d < nv; d++)
                    dot = _mm256_fmadd_ps(qv[d], _mm256_loadu_ps(key + 8 * d), dot);
                s[k] = fn_v_hsum(dot);
                tmax = s[k] > tmax ? s[k] : tmax;
            }
            if (tmax == -INFINITY) continue;
            float mnew = tmax > m ? tmax : m;
            float corr = expf(m - mnew);
            __m256 vc = _mm256_set1_ps(corr);
            l *= corr;
            for (int64_t d = 0; d < nv; d++) acc[d] = _mm256_mul_ps(acc[d], vc);
            /* Exponentiate the tile's scores eight at a time (-inf gives 0). */
            for (int64_t k = n; k < TILE; k++) s[k] = -INFINITY;
            __m256 vm = _mm256_set1_ps(mnew);
            for (int64_t k = 0; k < n; k += 8) {
                __m256 x = _mm256_load_ps(s + k);
                __m256 valid = _mm256_cmp_ps(x, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ);
                __m256 e = _mm256_and_ps(fn_v_exp(_mm256_sub_ps(x, vm)), valid);
                _mm256_store_ps(s + k, e);
            }
            for (int64_t k = 0; k < n; k++) {
                if (s[k] == 0.0f) continue;
                l += s[k];
                const float *v = base + (j0 + k) * j->width + (2 * j->heads + h) * j->hd;
                __m256 p = _mm256_set1_ps(s[k]);
                for (int64_t d = 0; d < nv; d++)
                    acc[d] = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8 * d), acc[d]);
            }
            m = mnew;
        }
        float *o = j->out + (b * j->t + i) * j->heads * j->hd + h * j->hd;
        __m256 inv = _mm256_set1_ps(l > 0 ? 1.0f / l : 0.0f);
        for (int64_t d = 0; d < nv; d++) _mm256_storeu_ps(o + 8 * d, _mm256_mul_ps(acc[d], inv));
    }
}

typedef struct pjob {
    const job *j;
    int simd;
} pjob;

static void run_task(void *ctx, size_t idx)
{
    const pjob *p = ctx;
    int64_t b = (int64_t)idx / p->j->heads, h = (int64_t)idx % p->j->heads;
    if (p->simd) {
        task_avx2(p->j, b, h);
    } else {
        task_portable(p->j, b, h);
    }
}

fn_status fn_cpu_attention(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask, int n_heads,
                           fn_tensor *out, fn_error *err)
{
    if (qkv->dtype != FN_F32) return fn_cpu_f32_only("attention", qkv, err);
    fn_cpu *c = fn_cpu_of(b);
    job j = {.qkv = qkv->data,
             .mask = mask->data,
             .out = out->data,
             .t = qkv->ne[1],
             .heads = n_heads,
             .width = qkv->ne[2]};
    j.hd = j.width / (3 * j.heads);
    if (j.hd > MAX_HEAD_DIM)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "attention: head dimension %lld exceeds %d",
                            (long long)j.hd, MAX_HEAD_DIM);
    j.scale = 1.0f / sqrtf((float)j.hd);
    pjob p = {&j, c->simd && j.hd % 8 == 0};
    fn_pool_run(c->pool, (size_t)(qkv->ne[0] * j.heads), run_task, &p);
    return FN_OK;
}
