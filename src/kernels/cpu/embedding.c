/* embedding.c - table lookups by id, and masked mean pooling over tokens. */
#include <string.h>

#include "cpu_impl.h"

fn_status fn_cpu_gather(fn_backend *b, const fn_tensor *table, const fn_tensor *ids, int accumulate,
                        fn_tensor *out, fn_error *err)
{
    (void)b;
    if (table->dtype != FN_F32) return fn_cpu_f32_only("gather", table, err);
    const int32_t *id = ids->data;
    int64_t n = fn_tensor_numel(ids), v = table->ne[0], d = table->ne[1];
    /* Check every id before writing anything, so a bad one leaves out untouched. */
    for (int64_t i = 0; i < n; i++)
        if (id[i] < 0 || id[i] >= v)
            return fn_error_set(err, FN_ERR_INVALID,
                                "gather: id %d at position %lld is outside [0, %lld)", id[i],
                                (long long)i, (long long)v);
    const float *t = table->data;
    float *o = out->data;
    for (int64_t i = 0; i < n; i++) {
        const float *row = t + (int64_t)id[i] * d;
        float *dst = o + i * d;
        if (accumulate) {
            for (int64_t k = 0; k < d; k++) dst[k] += row[k];
        } else {
            memcpy(dst, row, (size_t)d * sizeof *dst);
        }
    }
    return FN_OK;
}

fn_status fn_cpu_mean_pool(fn_backend *b, const fn_tensor *x, const fn_tensor *mask, fn_tensor *out,
                           fn_error *err)
{
    (void)b;
    if (x->dtype != FN_F32) return fn_cpu_f32_only("mean_pool", x, err);
    int64_t bs = x->ne[0], t = x->ne[1], d = x->ne[2];
    const float *xs = x->data;
    const int32_t *m = mask->data;
    float *o = out->data;
    for (int64_t i = 0; i < bs; i++) {
        float *dst = o + i * d;
        memset(dst, 0, (size_t)d * sizeof *dst);
        int64_t count = 0;
        for (int64_t k = 0; k < t; k++) {
            if (!m[i * t + k]) continue;
            const float *row = xs + (i * t + k) * d;
            for (int64_t j = 0; j < d; j++) dst[j] += row[j];
            count++;
        }
        if (count)
            for (int64_t j = 0; j < d; j++) dst[j] /= (float)count;
    }
    return FN_OK;
}
