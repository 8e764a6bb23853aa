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

#ifdef __cplusplus
}
#endif

#endif
