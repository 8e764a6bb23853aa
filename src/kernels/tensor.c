/* tensor.c - sizes, views and half-precision conversions. */
#include "tensor.h"

#include <string.h>

size_t fn_dtype_size(fn_dtype t)
{
    switch (t) {
    case FN_F32:
    case FN_I32:
        return 4;
    case FN_F16:
    case FN_BF16:
        return 2;
    case FN_I8:
        return 1;
    }
    return 0;
}

const char *fn_dtype_name(fn_dtype t)
{
    switch (t) {
    case FN_F32:
        return "f32";
    case FN_F16:
        return "f16";
    case FN_BF16:
        return "bf16";
    case FN_I8:
        return "i8";
    case FN_I32:
        return "i32";
    }
    return "?";
}

int64_t fn_tensor_numel(const fn_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

size_t fn_tensor_nbytes(const fn_tensor *t)
{
    return (size_t)fn_tensor_numel(t) * fn_dtype_size(t->dtype);
}

int64_t fn_tensor_rows(const fn_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i + 1 < t->ndim; i++) n *= t->ne[i];
    return n;
}

fn_tensor fn_tensor_view(const fn_tensor *t, int ndim, const int64_t *dims)
{
    fn_tensor v = *t;
    v.owns = 0;
    v.aux = NULL;
    v.ndim = ndim;
    for (int i = 0; i < FN_MAX_DIMS; i++) v.ne[i] = i < ndim ? dims[i] : 1;
    return v;
}

fn_tensor fn_tensor_host(fn_dtype dt, int ndim, const int64_t *dims, void *data)
{
    fn_tensor t = {.dtype = dt, .device = FN_DEVICE_CPU, .ndim = ndim, .data = data};
    for (int i = 0; i < FN_MAX_DIMS; i++) t.ne[i] = i < ndim ? dims[i] : 1;
    return t;
}

uint16_t fn_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float fn_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t fn_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to infinity */
    if (abs < 0x38800000u) {
        /* Subnormal half: scale into place with the FPU's rounding. */
        float a;
        memcpy(&a, &abs, 4);
        uint32_t r = (uint32_t)(a * 16777216.0f + 0.5f);
        float back = (float)r;
        if (back - a * 16777216.0f == 0.5f && (r & 1)) r--; /* ties to even */
        return (uint16_t)(sign | r);
    }
    uint32_t m = abs + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((abs >> 13) & 1);
    return (uint16_t)(sign | (m >> 13));
}

float fn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    float f;
    if (exp == 0) {
        f = (float)man / 16777216.0f;
        if (sign) f = -f;
        return f;
    }
    uint32_t u = exp == 31 ? sign | 0x7f800000u | (man << 13)
                           : sign | ((exp + 127 - 15) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}
