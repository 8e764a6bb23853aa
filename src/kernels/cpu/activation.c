/* activation.c - bias add fused with ReLU or GELU (erf form), row-parallel. */
#include <math.h>

#include "cpu_impl.h"
#include "vmath.h"

typedef struct job {
    float *x;
    const float *bias;
    int64_t cols;
    fn_act act;
} job;

static void rows_portable(void *ctx, int64_t r0, int64_t r1)
{
    job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        float *x = j->x + r * j->cols;
        for (int64_t i = 0; i < j->cols; i++) {
            float v = x[i] + (j->bias ? j->bias[i] : 0.0f);
            if (j->act == FN_ACT_RELU) v = v > 0 ? v : 0;
            if (j->act == FN_ACT_GELU) v = fn_gelu_ref(v);
            x[i] = v;
        }
    }
}

static FN_AVX2 void rows_avx2(void *ctx, int64_t r0, int64_t r1)
{
    job *j = ctx;
    int64_t n8 = j->cols & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        float *x = j->x + r * j->cols;
        int64_t i = 0;
        for (; i < n8; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            if (j->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(j->bias + i));
            if (j->act == FN_ACT_RELU) v = _mm256_max_ps(v, _mm256_setzero_ps());
            if (j->act == FN_ACT_GELU) v = fn_v_gelu(v);
            _mm256_storeu_ps(x + i, v);
        }
        for (; i < j->cols; i++) {
            float v = x[i] + (j->bias ? j->bias[i] : 0.0f);
            if (j->act == FN_ACT_RELU) v = v > 0 ? v : 0;
            if (j->act == FN_ACT_GELU) v = fn_gelu_ref(v);
            x[i] = v;
        }
    }
}

fn_status fn_cpu_bias_act(fn_backend *b, fn_tensor *x, const fn_tensor *bias, fn_act act,
                          fn_error *err)
{
    if (x->dtype != FN_F32) return fn_cpu_f32_only("bias_act", x, err);
    fn_cpu *c = fn_cpu_of(b);
    job j = {x->data, bias ? bias->data : NULL, x->ne[x->ndim - 1], act};
    int64_t min_rows = 1 + 16384 / (j.cols ? j.cols : 1);
    fn_cpu_for_rows(c, fn_tensor_rows(x), min_rows, c->simd ? rows_avx2 : rows_portable, &j);
    return FN_OK;
}
