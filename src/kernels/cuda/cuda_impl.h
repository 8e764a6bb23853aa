/*
 * cuda_impl.h - the CUDA backend's state and the kernel launchers of
 * ops.cu, shared by the host code in cuda.c (C) and the kernels (CUDA C).
 * Every launcher queues work on the backend's stream and returns the launch
 * error, if any; dtype is an fn_dtype (F32, F16 or BF16), math is in f32.
 */
#ifndef FN_CUDA_IMPL_H
#define FN_CUDA_IMPL_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t fn_cuda_bias_act(cudaStream_t s, void *x, const void *bias, int64_t rows, int64_t cols,
                             int dtype, int act);
cudaError_t fn_cuda_layernorm(cudaStream_t s, const void *x, const void *res, const void *gamma,
                              const void *beta, float eps, void *out, int64_t rows, int64_t d,
                              int dtype);
cudaError_t fn_cuda_softmax(cudaStream_t s, void *x, int64_t rows, int64_t d, int dtype);
cudaError_t fn_cuda_attention(cudaStream_t s, const void *qkv, const int32_t *mask, void *out,
                              int64_t batch, int64_t t, int64_t heads, int64_t hd, int dtype);
/* An input error found on the device, reported at the next sync: the first
 * out-of-range gather id (pos -1: none). */
typedef struct fn_cuda_fault {
    int32_t pos, id;
    int64_t limit;
} fn_cuda_fault;

/* Ids outside [0, v) read row 0 and are recorded in *fault (first one wins). */
cudaError_t fn_cuda_gather(cudaStream_t s, const void *table, const int32_t *ids, int64_t n,
                           int64_t v, int64_t d, int accumulate, void *out, int dtype,
                           fn_cuda_fault *fault);
cudaError_t fn_cuda_mean_pool(cudaStream_t s, const void *x, const int32_t *mask, void *out,
                              int64_t batch, int64_t t, int64_t d, int dtype);
cudaError_t fn_cuda_l2_normalize(cudaStream_t s, void *x, int64_t rows, int64_t d, int dtype);

/* Training ops (train_ops.cu), f32 only; act is an fn_act. */
cudaError_t fn_cuda_act_backward(cudaStream_t s, const float *pre, const float *dy, float *dx,
                                 int64_t n, int act);
/* out[j] = beta out[j] + sum over rows of x[r, j]; beta 0 does not read out. */
cudaError_t fn_cuda_sum_rows(cudaStream_t s, const float *x, float beta, float *out, int64_t rows,
                             int64_t cols);
/* The mask rule of dropout_mask.h: element i drops when fn_dropout_bits(key, i) < threshold. */
cudaError_t fn_cuda_dropout(cudaStream_t s, float *x, int64_t n, uint64_t key, uint32_t threshold,
                            float scale);
/* fn_adam_step of backend_impl.h, which this header does not include. */
typedef struct fn_cuda_adam_args {
    float lr_t, rsqrt_bc2, beta1, beta2, eps, l2;
} fn_cuda_adam_args;
cudaError_t fn_cuda_adam(cudaStream_t s, float *param, const float *grad, float *m, float *v,
                         int64_t n, fn_cuda_adam_args a);
/* y += alpha x over n elements. */
cudaError_t fn_cuda_axpy(cudaStream_t s, float alpha, const float *x, float *y, int64_t n);
/* dgamma and dbeta may be NULL; dx may alias dout, x or res. */
cudaError_t fn_cuda_layernorm_backward(cudaStream_t s, const float *x, const float *res,
                                       const float *gamma, float eps, const float *dout, float *dx,
                                       float *dgamma, float *dbeta, int64_t rows, int64_t d);
/* dqkv [batch, t, 3 heads hd] is overwritten; hd <= 256. */
cudaError_t fn_cuda_attention_backward(cudaStream_t s, const float *qkv, const int32_t *mask,
                                       const float *dout, float *dqkv, int64_t batch, int64_t t,
                                       int64_t heads, int64_t hd);

#ifdef __cplusplus
}
#endif

#endif
