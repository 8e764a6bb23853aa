/* softmax.c - row softmax (max-subtracted), in place. */
#include <math.h>

#include "cpu_impl.h"
#include "vmath.h"

typedef struct job {
    float *x;
    int64_t d;
} job;

static void rows_portable(void *ctx, int64_t r0, int64_t r1)
{
    job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        float *x = j->x + r * j->d;
        float m = -INFINITY;
        for (int64_t i = 0; i < j->d; i++) m = x[i] > m ? x[i] : m;
        double s = 0;
        for (int64_t i = 0; i < j->d; i++) {
            x[i] = expf(x[i] - m);
            s += x[i];
        }
        float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < j->d; i++) x[i] *= inv;
    }
}

static FN_AVX2 void rows_avx2(void *ctx, int64_t r0, int64_t r1)
{
    job *j = ctx;
    int64_t n8 = j->d & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        float *x = j->x + r * j->d;
        __m256 vm = _mm256_set1_ps(-INFINITY);
        int64_t i = 0;
        for (; i < n8; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        float m = fn_v_hmax(vm);
        for (; i < j->d; i++) m = x[i] > m ? x[i] : m;
        vm = _mm256_set1_ps(m);
        __m256 acc = _mm256_setzero_ps();
        for (i = 0; i < n8; i += 8) {
            __m256 e = fn_v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
            _mm256_storeu_ps(x + i, e);
            acc = _mm256_add_ps(acc, e);
        }
        float s = fn_v_hsum(acc);
        for (; i < j->d; i++) {
            x[i] = expf(x[i] - m);
            s += x[i];
        }
        __m256 inv = _mm256_set1_ps(1.0f / s);
        for (i = 0; i < n8; i += 8)
            _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
        for (; i < j->d; i++) x[i] *= 1.0f / s;
    }
}

fn_status fn_cpu_softmax(fn_backend *b, fn_tensor *x, fn_error *err)
{
    if (x->dtype != FN_F32) return fn_cpu_f32_only("softmax", x, err);
    fn_cpu *c = fn_cpu_of(b);
    job j = {x->data, x->ne[x->ndim - 1]};
    fn_cpu_for_rows(c, fn_tensor_rows(x), 1 + 8192 / j.d, c->simd ? rows_avx2 : rows_portable, &j);
    return FN_OK;
}
