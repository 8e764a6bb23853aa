/*
 * train_ops.cu - the CUDA backend's training kernels (f32): the backward
 * pass of an activation, column sums (bias gradients), dropout with the mask
 * rule every backend shares (dropout_mask.h), and the Adam step. Copies are
 * cudaMemcpyAsync in cuda.c.
 */
#include <math.h>

#include "cuda_impl.h"
#include "kernels/dropout_mask.h"

/* Grid-stride launches: enough blocks to fill the device, no more than the grid allows. */
static int blocks_for(int64_t n)
{
    int64_t b = (n + 255) / 256;
    return (int)(b < 1 ? 1 : b < 65535 ? b : 65535);
}

#define FOR_EACH(i, n)                                                                             \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

/* ---- activation backward ---- */

__global__ void k_act_backward(const float *pre, const float *dy, float *dx, int64_t n, int act)
{
    FOR_EACH(i, n)
    {
        float x = pre[i], d = 1.0f;
        if (act == 1) d = x > 0 ? 1.0f : 0.0f;
        if (act == 2)
            d = 0.5f * erfcf(-x * 0.70710678118654752f) +
                x * 0.39894228040143268f * expf(-0.5f * x * x);
        dx[i] = dy[i] * d;
    }
}

extern "C" cudaError_t fn_cuda_act_backward(cudaStream_t s, const float *pre, const float *dy,
                                            float *dx, int64_t n, int act)
{
    k_act_backward<<<blocks_for(n), 256, 0, s>>>(pre, dy, dx, n, act);
    return cudaGetLastError();
}

/* ---- column sums ----
 * A block of 32 x SUM_ROWS_Y threads owns 32 columns: thread (tx, ty) sums
 * rows ty, ty + SUM_ROWS_Y, ... of column tx (reads coalesced along the row),
 * then the partial sums meet in shared memory. */
#define SUM_ROWS_Y 8

__global__ void k_sum_rows(const float *x, float beta, float *out, int64_t rows, int64_t cols)
{
    __shared__ float part[SUM_ROWS_Y][33];
    int64_t col = blockIdx.x * 32 + threadIdx.x;
    float s = 0;
    if (col < cols)
        for (int64_t r = threadIdx.y; r < rows; r += SUM_ROWS_Y) s += x[r * cols + col];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || col >= cols) return;
    for (int y = 1; y < SUM_ROWS_Y; y++) s += part[y][threadIdx.x];
    /* beta 0 does not read out, as in BLAS. */
    out[col] = beta != 0 ? beta * out[col] + s : s;
}

extern "C" cudaError_t fn_cuda_sum_rows(cudaStream_t s, const float *x, float beta, float *out,
                                        int64_t rows, int64_t cols)
{
    dim3 block(32, SUM_ROWS_Y);
    k_sum_rows<<<(unsigned)((cols + 31) / 32), block, 0, s>>>(x, beta, out, rows, cols);
    return cudaGetLastError();
}

/* ---- dropout ---- */

__global__ void k_dropout(float *x, int64_t n, uint64_t key, uint32_t threshold, float scale)
{
    FOR_EACH(i, n)
    {
        x[i] = fn_dropout_bits(key, (uint64_t)i) < threshold ? 0.0f : x[i] * scale;
    }
}

extern "C" cudaError_t fn_cuda_dropout(cudaStream_t s, float *x, int64_t n, uint64_t key,
                                       uint32_t threshold, float scale)
{
    k_dropout<<<blocks_for(n), 256, 0, s>>>(x, n, key, threshold, scale);
    return cudaGetLastError();
}

/* ---- Adam ---- */

__global__ void k_adam(float *p, const float *grad, float *m, float *v, int64_t n,
                       fn_cuda_adam_args a)
{
    float c1 = 1 - a.beta1, c2 = 1 - a.beta2;
    FOR_EACH(i, n)
    {
        float g = grad[i] + a.l2 * p[i];
        float mi = a.beta1 * m[i] + c1 * g;
        float vi = a.beta2 * v[i] + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] -= a.lr_t * mi / (sqrtf(vi) * a.rsqrt_bc2 + a.eps);
    }
}

extern "C" cudaError_t fn_cuda_adam(cudaStream_t s, float *param, const float *grad, float *m,
                                    float *v, int64_t n, fn_cuda_adam_args a)
{
    k_adam<<<blocks_for(n), 256, 0, s>>>(param, grad, m, v, n, a);
    return cudaGetLastError();
}
