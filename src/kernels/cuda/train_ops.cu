/*
 * train_ops.cu - the CUDA backend's training kernels (f32): the backward
 * pass of an activation, column sums (bias gradients), dropout with the mask
 * rule every backend shares (dropout_mask.h), the Adam step, axpy, and the
 * backward passes of layernorm and of attention. Copies are cudaMemcpyAsync
 * in cuda.c. Outputs that kernels accumulate into with atomics are cleared
 * on the stream first, so graphs can record these ops too.
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

/* ---- axpy ---- */

__global__ void k_axpy(float alpha, const float *x, float *y, int64_t n)
{
    FOR_EACH(i, n)
    {
        y[i] += alpha * x[i];
    }
}

extern "C" cudaError_t fn_cuda_axpy(cudaStream_t s, float alpha, const float *x, float *y,
                                    int64_t n)
{
    k_axpy<<<blocks_for(n), 256, 0, s>>>(alpha, x, y, n);
    return cudaGetLastError();
}

/* ---- reductions for the backward passes ---- */

static __device__ __forceinline__ float tr_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets it. */
static __device__ float tr_block_sum(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = tr_warp_sum(v);
    __syncthreads(); /* part[] may still be read from a previous call */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return tr_warp_sum(lane < nw ? part[lane] : 0.0f);
}

/* ---- layernorm backward ----
 * A block walks a run of rows. Per row: mean and rstd as the forward kernel
 * computes them, then the two row sums of g = dout gamma that dx needs, then
 * dx = rstd (g - mean(g) - xhat mean(g xhat)); each element is read and
 * written by one thread, so dx may alias dout, x or residual. Thread k owns
 * columns k, k + blockDim.x, ... in every row, so it sums their dgamma and
 * dbeta terms in shared memory without races; each block then adds its sums
 * to dgamma and dbeta (cleared beforehand) with one atomic per column. When
 * 2 d floats do not fit in shared memory, the terms go to the atomics at once. */
#define LNB_SHARED_MAX 49152

__global__ void k_layernorm_backward(const float *x, const float *res, const float *gamma,
                                     float eps, const float *dout, float *dx, float *dgamma,
                                     float *dbeta, int64_t rows, int64_t d, int64_t per_block,
                                     int direct)
{
    extern __shared__ float sums[]; /* [d] dgamma terms, then [d] dbeta terms */
    const int params = dgamma != NULL || dbeta != NULL;
    const int staged = params && !direct;
    if (staged)
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x) sums[i] = sums[d + i] = 0.0f;
    int64_t r0 = blockIdx.x * per_block, r1 = r0 + per_block < rows ? r0 + per_block : rows;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * d;
        float s = 0;
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
            s += x[o + i] + (res ? res[o + i] : 0.0f);
        float mean = tr_block_sum(s) / (float)d;
        float q = 0;
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
            float v = x[o + i] + (res ? res[o + i] : 0.0f) - mean;
            q += v * v;
        }
        float rstd = rsqrtf(tr_block_sum(q) / (float)d + eps);
        float sg = 0, sgx = 0;
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
            float xhat = (x[o + i] + (res ? res[o + i] : 0.0f) - mean) * rstd;
            float g = dout[o + i] * gamma[i];
            sg += g;
            sgx += g * xhat;
        }
        sg = tr_block_sum(sg) / (float)d;
        sgx = tr_block_sum(sgx) / (float)d;
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
            float xhat = (x[o + i] + (res ? res[o + i] : 0.0f) - mean) * rstd;
            float dy = dout[o + i];
            if (staged) {
                sums[i] += dy * xhat;
                sums[d + i] += dy;
            } else if (params) {
                if (dgamma) atomicAdd(dgamma + i, dy * xhat);
                if (dbeta) atomicAdd(dbeta + i, dy);
            }
            dx[o + i] = rstd * (dy * gamma[i] - sg - xhat * sgx);
        }
    }
    if (!staged) return;
    /* Each thread flushes the columns it summed itself: no barrier needed. */
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        if (dgamma) atomicAdd(dgamma + i, sums[i]);
        if (dbeta) atomicAdd(dbeta + i, sums[d + i]);
    }
}

extern "C" cudaError_t fn_cuda_layernorm_backward(cudaStream_t s, const float *x, const float *res,
                                                  const float *gamma, float eps, const float *dout,
                                                  float *dx, float *dgamma, float *dbeta,
                                                  int64_t rows, int64_t d)
{
    cudaError_t e;
    if (dgamma && (e = cudaMemsetAsync(dgamma, 0, (size_t)d * sizeof(float), s)) != cudaSuccess)
        return e;
    if (dbeta && (e = cudaMemsetAsync(dbeta, 0, (size_t)d * sizeof(float), s)) != cudaSuccess)
        return e;
    /* Enough blocks to fill the device; a run of rows per block keeps the atomics few. */
    int64_t per_block = (rows + 1023) / 1024, blocks = (rows + per_block - 1) / per_block;
    int threads = 32;
    while (threads < d && threads < 256) threads *= 2;
    size_t shm = (size_t)(2 * d) * sizeof(float);
    int direct = shm > LNB_SHARED_MAX;
    if (direct || (!dgamma && !dbeta)) shm = 0;
    k_layernorm_backward<<<(unsigned)blocks, threads, shm, s>>>(
        x, res, gamma, eps, dout, dx, dgamma, dbeta, rows, d, per_block, direct);
    return cudaGetLastError();
}

/* ---- attention backward ----
 * One warp per query row of one head, as in the forward kernel: lane l holds
 * dimensions l, l+32, ... of q, dout and dq. A first walk over the keys
 * recomputes the softmax online for the row's max m, sum l and delta =
 * sum_k p_k dout . v_k (= dout . out); a second recomputes each score and
 * adds ds scale q, ds = p (dout . v - delta), to dk and p dout to dv with
 * atomics (the keys are shared by every query's warp), while dq stays in
 * registers. dqkv is
 * cleared first, so masked keys and sequences with no real token keep zero
 * gradients. */
#define ATTB_WARPS        4
#define ATTB_MAX_PER_LANE 8 /* head_dim <= 256 */

/* This lane's parts of q . k and dout . v for key row k; both walks call it, so that
   they see the same scores and the same dout . v bit for bit. */
static __device__ __forceinline__ void attb_dots(const float *q, const float *go, const float *key,
                                                 const float *v, int per, int lane, int64_t hd,
                                                 float *dot, float *dp)
{
    float a = 0, c = 0;
    for (int r = 0; r < per; r++) {
        int64_t dd = lane + 32 * r;
        if (dd < hd) a += q[r] * key[dd], c += go[r] * v[dd];
    }
    *dot = tr_warp_sum(a);
    *dp = tr_warp_sum(c);
}

__global__ void k_attention_backward(const float *qkv, const int32_t *mask, const float *dout,
                                     float *dqkv, int64_t t, int64_t heads, int64_t hd, float scale)
{
    int64_t b = blockIdx.y / heads, h = blockIdx.y % heads;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t i = (int64_t)blockIdx.x * ATTB_WARPS + warp; /* this warp's query */
    if (i >= t) return; /* no block-wide barriers below: a whole warp leaves */
    const int64_t w = 3 * heads * hd, ko = (heads + h) * hd, vo = (2 * heads + h) * hd;
    const int32_t *mrow = mask + b * t;
    const float *base = qkv + b * t * w;
    float *dbase = dqkv + b * t * w;
    const float *gorow = dout + (b * t + i) * heads * hd + h * hd;
    int per = (int)((hd + 31) / 32);
    float q[ATTB_MAX_PER_LANE], go[ATTB_MAX_PER_LANE], dq[ATTB_MAX_PER_LANE];
    for (int r = 0; r < per; r++) {
        int64_t dd = lane + 32 * r;
        q[r] = dd < hd ? base[i * w + h * hd + dd] : 0.0f;
        go[r] = dd < hd ? gorow[dd] : 0.0f;
        dq[r] = 0.0f;
    }
    /* delta = sum_k p_k (dout . v_k), summed online with the softmax: ds is exactly 0
       when one key takes all the weight, as in exact arithmetic. */
    float m = -INFINITY, l = 0.0f, dsum = 0.0f;
    for (int64_t k = 0; k < t; k++) {
        if (!mrow[k]) continue;
        float dot, dp;
        attb_dots(q, go, base + k * w + ko, base + k * w + vo, per, lane, hd, &dot, &dp);
        float sc = dot * scale, mn = fmaxf(m, sc);
        float corr = expf(m - mn), p = expf(sc - mn);
        l = l * corr + p;
        dsum = dsum * corr + p * dp;
        m = mn;
    }
    if (l == 0.0f) return; /* no real key: the output is constant, dqkv stays zero */
    float inv = 1.0f / l, delta = dsum * inv;
    for (int64_t k = 0; k < t; k++) {
        if (!mrow[k]) continue;
        const float *key = base + k * w + ko;
        float dot, dp;
        attb_dots(q, go, key, base + k * w + vo, per, lane, hd, &dot, &dp);
        float p = expf(dot * scale - m) * inv;
        float ds = p * (dp - delta);
        float *dk = dbase + k * w + ko, *dv = dbase + k * w + vo;
        for (int r = 0; r < per; r++) {
            int64_t dd = lane + 32 * r;
            if (dd >= hd) continue;
            dq[r] += ds * key[dd];
            atomicAdd(dk + dd, ds * scale * q[r]);
            atomicAdd(dv + dd, p * go[r]);
        }
    }
    for (int r = 0; r < per; r++) {
        int64_t dd = lane + 32 * r;
        if (dd < hd) dbase[i * w + h * hd + dd] = dq[r] * scale;
    }
}

extern "C" cudaError_t fn_cuda_attention_backward(cudaStream_t s, const float *qkv,
                                                  const int32_t *mask, const float *dout,
                                                  float *dqkv, int64_t batch, int64_t t,
                                                  int64_t heads, int64_t hd)
{
    if (hd > 32 * ATTB_MAX_PER_LANE) return cudaErrorInvalidValue;
    cudaError_t e =
        cudaMemsetAsync(dqkv, 0, (size_t)(batch * t * 3 * heads * hd) * sizeof(float), s);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((t + ATTB_WARPS - 1) / ATTB_WARPS), (unsigned)(batch * heads));
    k_attention_backward<<<grid, ATTB_WARPS * 32, 0, s>>>(qkv, mask, dout, dqkv, t, heads, hd,
                                                          rsqrtf((float)hd));
    return cudaGetLastError();
}
