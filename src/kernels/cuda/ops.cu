/*
 * ops.cu - the CUDA backend's kernels (everything but GEMM, which is
 * cuBLAS's). Values are loaded as f32 from f32, f16 or bf16 storage and
 * stored back in the tensor's dtype; reductions run in f32 in registers and
 * shared memory.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "cuda_impl.h"

/* fn_dtype values (kernels/tensor.h). */
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2

__device__ __forceinline__ float ld(const void *p, int64_t i, int dt)
{
    if (dt == DT_F32) return ((const float *)p)[i];
    if (dt == DT_F16) return __half2float(((const __half *)p)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

__device__ __forceinline__ void st(void *p, int64_t i, float v, int dt)
{
    if (dt == DT_F32) {
        ((float *)p)[i] = v;
    } else if (dt == DT_F16) {
        ((__half *)p)[i] = __float2half_rn(v);
    } else {
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    }
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum (or max) over the block; every thread gets the result. blockDim.x <= 1024. */
__device__ float block_reduce(float v, int is_max)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads(); /* part[] may still be read from a previous call */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float r = lane < nw ? part[lane] : (is_max ? -INFINITY : 0.0f);
    return is_max ? warp_max(r) : warp_sum(r);
}

static int threads_for(int64_t d)
{
    int t = 32;
    while (t < d && t < 256) t *= 2;
    return t;
}

/* ---- bias + activation ---- */

__global__ void k_bias_act(void *x, const void *bias, int64_t rows, int64_t cols, int dt, int act)
{
    int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = ld(x, i, dt) + (bias ? ld(bias, i % cols, dt) : 0.0f);
        if (act == 1) v = fmaxf(v, 0.0f);
        if (act == 2) v = 0.5f * v * erfcf(-v * 0.70710678118654752f);
        st(x, i, v, dt);
    }
}

extern "C" cudaError_t fn_cuda_bias_act(cudaStream_t s, void *x, const void *bias, int64_t rows,
                                        int64_t cols, int dtype, int act)
{
    int64_t n = rows * cols;
    int blocks = (int)((n + 255) / 256 < 65535 ? (n + 255) / 256 : 65535);
    k_bias_act<<<blocks, 256, 0, s>>>(x, bias, rows, cols, dtype, act);
    return cudaGetLastError();
}

/* ---- layernorm ---- */

__global__ void k_layernorm(const void *x, const void *res, const void *g, const void *b, float eps,
                            void *out, int64_t d, int dt)
{
    int64_t row = blockIdx.x, base = row * d;
    float s = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += ld(x, base + i, dt) + (res ? ld(res, base + i, dt) : 0.0f);
    float mean = block_reduce(s, 0) / (float)d;
    float q = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = ld(x, base + i, dt) + (res ? ld(res, base + i, dt) : 0.0f) - mean;
        q += v * v;
    }
    float rstd = rsqrtf(block_reduce(q, 0) / (float)d + eps);
    /* out may alias x or res: each element is read and written by the same thread. */
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = ld(x, base + i, dt) + (res ? ld(res, base + i, dt) : 0.0f);
        st(out, base + i, (v - mean) * rstd * ld(g, i, dt) + ld(b, i, dt), dt);
    }
}

extern "C" cudaError_t fn_cuda_layernorm(cudaStream_t s, const void *x, const void *res,
                                         const void *gamma, const void *beta, float eps, void *out,
                                         int64_t rows, int64_t d, int dtype)
{
    k_layernorm<<<(unsigned)rows, threads_for(d), 0, s>>>(x, res, gamma, beta, eps, out, d, dtype);
    return cudaGetLastError();
}

/* ---- softmax ---- */

__global__ void k_softmax(void *x, int64_t d, int dt)
{
    int64_t base = blockIdx.x * d;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) m = fmaxf(m, ld(x, base + i, dt));
    m = block_reduce(m, 1);
    float s = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += __expf(ld(x, base + i, dt) - m);
    float inv = 1.0f / block_reduce(s, 0);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        st(x, base + i, __expf(ld(x, base + i, dt) - m) * inv, dt);
}

extern "C" cudaError_t fn_cuda_softmax(cudaStream_t s, void *x, int64_t rows, int64_t d, int dtype)
{
    k_softmax<<<(unsigned)rows, threads_for(d), 0, s>>>(x, d, dtype);
    return cudaGetLastError();
}

/* ---- attention ----
 * One warp per query row of one head: lane l holds dimensions l, l+32, ... of
 * the query and of the running output. Keys stream through with an online
 * softmax (running max, running sum, rescaled output), so nothing T x T is
 * stored. Keys and values of the (sequence, head) are staged in shared
 * memory in tiles shared by the block's warps. */
#define ATT_WARPS 4
#define ATT_MAX_PER_LANE 8 /* head_dim <= 256 */

__global__ void k_attention(const void *qkv, const int32_t *mask, void *out, int64_t t,
                            int64_t heads, int64_t hd, int dt, float scale, int tile)
{
    extern __shared__ float smem[]; /* [tile][hd] keys, then values, then the tile's mask */
    float *ks = smem, *vs = smem + tile * hd;
    int *ms = (int *)(vs + tile * hd);
    int64_t b = blockIdx.y / heads, h = blockIdx.y % heads;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t i = (int64_t)blockIdx.x * ATT_WARPS + warp; /* this warp's query */
    int64_t w = 3 * heads * hd;
    const int32_t *mrow = mask + b * t;
    int per = (int)((hd + 31) / 32);
    float q[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
    for (int r = 0; r < per; r++) {
        int64_t dd = lane + 32 * r;
        q[r] = (i < t && dd < hd) ? ld(qkv, (b * t + i) * w + h * hd + dd, dt) * scale : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < t; j0 += tile) {
        int64_t n = t - j0 < tile ? t - j0 : tile;
        __syncthreads();
        for (int64_t e = threadIdx.x; e < n * hd; e += blockDim.x) {
            int64_t k = e / hd, dd = e % hd, row = (b * t + j0 + k) * w;
            ks[k * hd + dd] = ld(qkv, row + (heads + h) * hd + dd, dt);
            vs[k * hd + dd] = ld(qkv, row + (2 * heads + h) * hd + dd, dt);
        }
        for (int64_t k = threadIdx.x; k < n; k += blockDim.x) ms[k] = mrow[j0 + k];
        __syncthreads();
        if (i >= t) continue;
        for (int64_t k = 0; k < n; k++) {
            if (!ms[k]) continue;
            float dot = 0;
            for (int r = 0; r < per; r++) {
                int64_t dd = lane + 32 * r;
                if (dd < hd) dot += q[r] * ks[k * hd + dd];
            }
            dot = warp_sum(dot);
            float mn = fmaxf(m, dot);
            float corr = __expf(m - mn), p = __expf(dot - mn);
            l = l * corr + p;
            for (int r = 0; r < per; r++) {
                int64_t dd = lane + 32 * r;
                if (dd < hd) acc[r] = acc[r] * corr + p * vs[k * hd + dd];
            }
            m = mn;
        }
    }
    if (i >= t) return;
    float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int r = 0; r < per; r++) {
        int64_t dd = lane + 32 * r;
        if (dd < hd) st(out, (b * t + i) * heads * hd + h * hd + dd, acc[r] * inv, dt);
    }
}

extern "C" cudaError_t fn_cuda_attention(cudaStream_t s, const void *qkv, const int32_t *mask,
                                         void *out, int64_t batch, int64_t t, int64_t heads,
                                         int64_t hd, int dtype)
{
    if (hd > 32 * ATT_MAX_PER_LANE) return cudaErrorInvalidValue;
    /* Keys and values of a tile within the default 48 KiB of shared memory. */
    int tile = (int)(40960 / (2 * hd * (int64_t)sizeof(float)));
    if (tile > 64) tile = 64;
    dim3 grid((unsigned)((t + ATT_WARPS - 1) / ATT_WARPS), (unsigned)(batch * heads));
    size_t shm = (size_t)(2 * tile * hd) * sizeof(float) + (size_t)tile * sizeof(int);
    k_attention<<<grid, ATT_WARPS * 32, shm, s>>>(qkv, mask, out, t, heads, hd, dtype,
                                                  rsqrtf((float)hd), tile);
    return cudaGetLastError();
}

/* ---- gather, mean pool, l2 ---- */

__global__ void k_gather(const void *table, const int32_t *ids, int64_t n, int64_t v, int64_t d,
                         int acc, void *out, int dt, fn_cuda_fault *fault)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n * d;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / d, k = e % d;
        int32_t id = ids[i];
        if (id < 0 || id >= v) {
            if (k == 0 && atomicCAS(&fault->pos, -1, (int32_t)i) == -1) {
                fault->id = id;
                fault->limit = v;
            }
            id = 0;
        }
        float x = ld(table, (int64_t)id * d + k, dt);
        if (acc) x += ld(out, e, dt);
        st(out, e, x, dt);
    }
}

extern "C" cudaError_t fn_cuda_gather(cudaStream_t s, const void *table, const int32_t *ids,
                                      int64_t n, int64_t v, int64_t d, int accumulate, void *out,
                                      int dtype, fn_cuda_fault *fault)
{
    int64_t total = n * d;
    int blocks = (int)((total + 255) / 256 < 65535 ? (total + 255) / 256 : 65535);
    k_gather<<<blocks > 0 ? blocks : 1, 256, 0, s>>>(table, ids, n, v, d, accumulate, out, dtype,
                                                     fault);
    return cudaGetLastError();
}

__global__ void k_mean_pool(const void *x, const int32_t *mask, void *out, int64_t t, int64_t d,
                            int dt)
{
    int64_t b = blockIdx.x;
    int count = 0;
    for (int64_t k = 0; k < t; k++) count += mask[b * t + k] != 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        float s = 0;
        for (int64_t k = 0; k < t; k++)
            if (mask[b * t + k]) s += ld(x, (b * t + k) * d + j, dt);
        st(out, b * d + j, count ? s / (float)count : 0.0f, dt);
    }
}

extern "C" cudaError_t fn_cuda_mean_pool(cudaStream_t s, const void *x, const int32_t *mask,
                                         void *out, int64_t batch, int64_t t, int64_t d, int dtype)
{
    k_mean_pool<<<(unsigned)batch, threads_for(d), 0, s>>>(x, mask, out, t, d, dtype);
    return cudaGetLastError();
}

__global__ void k_l2(void *x, int64_t d, int dt)
{
    int64_t base = blockIdx.x * d;
    float q = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = ld(x, base + i, dt);
        q += v * v;
    }
    float inv = 1.0f / fmaxf(sqrtf(block_reduce(q, 0)), 1e-12f);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) st(x, base + i, ld(x, base + i, dt) * inv, dt);
}

extern "C" cudaError_t fn_cuda_l2_normalize(cudaStream_t s, void *x, int64_t rows, int64_t d,
                                            int dtype)
{
    k_l2<<<(unsigned)rows, threads_for(d), 0, s>>>(x, d, dtype);
    return cudaGetLastError();
}
