/*
 * cuda.c - the CUDA backend: device selection, memory, the stream all ops
 * queue on, cuBLAS for GEMM (f32, f16, bf16 storage, f32 accumulation), and
 * the kernels of ops.cu for the rest. Missing GPUs and CUDA errors become
 * fn_status with the CUDA message; nothing aborts.
 */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "kernels/backend_impl.h"

#define BLAS_WORKSPACE (32u << 20)

typedef struct fn_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_workspace; /* fixed, so cuBLAS allocates nothing while a graph records */
    fn_cuda_fault *fault; /* device: input errors found by kernels */
    int recording;        /* a graph is being recorded: no synchronisation allowed */
} fn_cuda;

static fn_cuda *cuda_of(fn_backend *b)
{
    return (fn_cuda *)b->impl;
}

static fn_status cuda_fail(fn_error *err, const char *what, cudaError_t e)
{
    return fn_error_set(err, e == cudaErrorMemoryAllocation ? FN_ERR_NOMEM : FN_ERR_INTERNAL,
                        "cuda: %s: %s", what, cudaGetErrorString(e));
}

#define CU(what, expr)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (expr);                                                                   \
        if (e_ != cudaSuccess) return cuda_fail(err, what, e_);                                    \
    } while (0)

static fn_status blas_fail(fn_error *err, cublasStatus_t s)
{
    return fn_error_set(err, FN_ERR_INTERNAL, "cuda: cuBLAS GEMM failed with status %d", (int)s);
}

static int supported(fn_dtype t)
{
    return t == FN_F32 || t == FN_F16 || t == FN_BF16;
}

static fn_status dtype_error(const char *op, fn_dtype t, fn_error *err)
{
    return fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: the CUDA backend has no %s kernels", op,
                        fn_dtype_name(t));
}

/* After a synchronisation: reports (and clears) an input error a kernel recorded. */
static fn_status check_fault(fn_cuda *c, fn_error *err)
{
    fn_cuda_fault f;
    CU("read fault flag", cudaMemcpy(&f, c->fault, sizeof f, cudaMemcpyDeviceToHost));
    if (f.pos < 0) return FN_OK;
    fn_cuda_fault clear = {-1, 0, 0};
    CU("clear fault flag", cudaMemcpy(c->fault, &clear, sizeof clear, cudaMemcpyHostToDevice));
    return fn_error_set(err, FN_ERR_INVALID, "gather: id %d at position %d is outside [0, %lld)",
                        f.id, f.pos, (long long)f.limit);
}

static fn_status cuda_alloc(fn_backend *b, fn_tensor *t, fn_error *err)
{
    CU("set device", cudaSetDevice(cuda_of(b)->device));
    size_t n = fn_tensor_nbytes(t);
    CU("allocate", cudaMalloc(&t->data, n ? n : 1));
    return FN_OK;
}

static void cuda_release(fn_backend *b, fn_tensor *t)
{
    (void)b;
    cudaFree(t->data);
    t->data = NULL;
}

static fn_status while_recording(fn_error *err, const char *what)
{
    return fn_error_set(err, FN_ERR_INVALID, "cuda: cannot %s while a graph is being recorded",
                        what);
}

static fn_status cuda_write(fn_backend *b, fn_tensor *t, const void *host, size_t n, fn_error *err)
{
    fn_cuda *c = cuda_of(b);
    if (c->recording) return while_recording(err, "copy to the device");
    CU("copy to device", cudaMemcpyAsync(t->data, host, n, cudaMemcpyHostToDevice, c->stream));
    /* The host buffer may be reused as soon as we return. */
    CU("copy to device", cudaStreamSynchronize(c->stream));
    return FN_OK;
}

static fn_status cuda_read(fn_backend *b, const fn_tensor *t, void *host, size_t n, fn_error *err)
{
    fn_cuda *c = cuda_of(b);
    if (c->recording) return while_recording(err, "copy to the host");
    CU("copy to host", cudaMemcpyAsync(host, t->data, n, cudaMemcpyDeviceToHost, c->stream));
    CU("copy to host", cudaStreamSynchronize(c->stream));
    return check_fault(c, err);
}

static fn_status cuda_sync(fn_backend *b, fn_error *err)
{
    if (cuda_of(b)->recording) return while_recording(err, "synchronize");
    CU("synchronize", cudaStreamSynchronize(cuda_of(b)->stream));
    return check_fault(cuda_of(b), err);
}

static void cuda_destroy(fn_backend *b)
{
    fn_cuda *c = cuda_of(b);
    if (c) {
        cudaSetDevice(c->device);
        if (c->fault) cudaFree(c->fault);
        if (c->blas_workspace) cudaFree(c->blas_workspace);
        if (c->blas) cublasDestroy(c->blas);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(b);
}

static cudaDataType_t cuda_type(fn_dtype t)
{
    return t == FN_F16 ? CUDA_R_16F : t == FN_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands. */
static fn_status cuda_gemm(fn_backend *b, const fn_gemm_args *g, fn_error *err)
{
    fn_cuda *c = cuda_of(b);
    if (!supported(g->c->dtype)) return dtype_error("gemm", g->c->dtype, err);
    cudaDataType_t t = cuda_type(g->c->dtype);
    int lda = (int)(g->trans_a ? g->m : g->k), ldb = (int)(g->trans_b ? g->k : g->n);
    cublasStatus_t s = cublasGemmStridedBatchedEx(
        c->blas, g->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        (int)g->n, (int)g->m, (int)g->k, &g->alpha, g->b->data, t, ldb, g->stride_b, g->a->data, t,
        lda, g->stride_a, &g->beta, g->c->data, t, (int)g->n, g->stride_c, (int)g->batch,
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? FN_OK : blas_fail(err, s);
}

static fn_status cuda_bias_act(fn_backend *b, fn_tensor *x, const fn_tensor *bias, fn_act act,
                               fn_error *err)
{
    if (!supported(x->dtype)) return dtype_error("bias_act", x->dtype, err);
    int64_t cols = x->ne[x->ndim - 1];
    CU("bias_act", fn_cuda_bias_act(cuda_of(b)->stream, x->data, bias ? bias->data : NULL,
                                    fn_tensor_rows(x), cols, (int)x->dtype, (int)act));
    return FN_OK;
}

static fn_status cuda_layernorm(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                                const fn_tensor *gamma, const fn_tensor *beta, float eps,
                                fn_tensor *out, fn_error *err)
{
    if (!supported(x->dtype)) return dtype_error("layernorm", x->dtype, err);
    CU("layernorm", fn_cuda_layernorm(cuda_of(b)->stream, x->data, residual ? residual->data : NULL,
                                      gamma->data, beta->data, eps, out->data, fn_tensor_rows(x),
                                      x->ne[x->ndim - 1], (int)x->dtype));
    return FN_OK;
}

static fn_status cuda_softmax(fn_backend *b, fn_tensor *x, fn_error *err)
{
    if (!supported(x->dtype)) return dtype_error("softmax", x->dtype, err);
    CU("softmax", fn_cuda_softmax(cuda_of(b)->stream, x->data, fn_tensor_rows(x),
                                  x->ne[x->ndim - 1], (int)x->dtype));
    return FN_OK;
}

static fn_status cuda_attention(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask,
                                int n_heads, fn_tensor *out, fn_error *err)
{
    if (!supported(qkv->dtype)) return dtype_error("attention", qkv->dtype, err);
    int64_t hd = qkv->ne[2] / (3 * n_heads);
    if (hd > 256)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "attention: head dimension %lld exceeds 256",
                            (long long)hd);
    CU("attention", fn_cuda_attention(cuda_of(b)->stream, qkv->data, mask->data, out->data,
                                      qkv->ne[0], qkv->ne[1], n_heads, hd, (int)qkv->dtype));
    return FN_OK;
}

/* Ids are checked on the device; a bad one is reported at the next sync or read. */
static fn_status cuda_gather(fn_backend *b, const fn_tensor *table, const fn_tensor *ids,
                             int accumulate, fn_tensor *out, fn_error *err)
{
    fn_cuda *c = cuda_of(b);
    if (!supported(table->dtype)) return dtype_error("gather", table->dtype, err);
    CU("gather",
       fn_cuda_gather(c->stream, table->data, ids->data, fn_tensor_numel(ids), table->ne[0],
                      table->ne[1], accumulate, out->data, (int)table->dtype, c->fault));
    return FN_OK;
}

static fn_status cuda_mean_pool(fn_backend *b, const fn_tensor *x, const fn_tensor *mask,
                                fn_tensor *out, fn_error *err)
{
    if (!supported(x->dtype)) return dtype_error("mean_pool", x->dtype, err);
    CU("mean_pool", fn_cuda_mean_pool(cuda_of(b)->stream, x->data, mask->data, out->data, x->ne[0],
                                      x->ne[1], x->ne[2], (int)x->dtype));
    return FN_OK;
}

static fn_status cuda_l2_normalize(fn_backend *b, fn_tensor *x, fn_error *err)
{
    if (!supported(x->dtype)) return dtype_error("l2_normalize", x->dtype, err);
    CU("l2_normalize", fn_cuda_l2_normalize(cuda_of(b)->stream, x->data, fn_tensor_rows(x),
                                            x->ne[x->ndim - 1], (int)x->dtype));
    return FN_OK;
}

/* cuBLAS GEMM against W^T, then one pass for bias and activation. */
static fn_status cuda_linear(fn_backend *b, const fn_tensor *x, fn_tensor *w, const fn_tensor *bias,
                             fn_act act, fn_tensor *out, fn_error *err)
{
    int64_t m = fn_tensor_rows(x), n = w->ne[0], k = w->ne[1];
    int64_t da[2] = {m, k}, dc[2] = {m, n};
    fn_tensor xa = fn_tensor_view(x, 2, da), oc = fn_tensor_view(out, 2, dc);
    fn_gemm_args g = {.a = &xa,
                      .b = w,
                      .c = &oc,
                      .trans_b = 1,
                      .batch = 1,
                      .m = m,
                      .n = n,
                      .k = k,
                      .stride_c = m * n,
                      .alpha = 1,
                      .beta = 0};
    fn_status st = cuda_gemm(b, &g, err);
    if (st != FN_OK || (!bias && act == FN_ACT_NONE)) return st;
    return cuda_bias_act(b, &oc, bias, act, err);
}

/* ---- training ops ---- */

/* Any dtype: the bytes move on the stream, so graphs can record copies too. */
static fn_status cuda_copy(fn_backend *b, const fn_tensor *src, fn_tensor *dst, fn_error *err)
{
    if (src->data == dst->data) return FN_OK;
    CU("copy", cudaMemcpyAsync(dst->data, src->data, fn_tensor_nbytes(src),
                               cudaMemcpyDeviceToDevice, cuda_of(b)->stream));
    return FN_OK;
}

static fn_status cuda_act_backward(fn_backend *b, const fn_tensor *pre, const fn_tensor *dy,
                                   fn_act act, fn_tensor *dx, fn_error *err)
{
    if (act == FN_ACT_NONE) return cuda_copy(b, dy, dx, err);
    CU("act_backward", fn_cuda_act_backward(cuda_of(b)->stream, pre->data, dy->data, dx->data,
                                            fn_tensor_numel(pre), (int)act));
    return FN_OK;
}

static fn_status cuda_sum_rows(fn_backend *b, const fn_tensor *x, float beta, fn_tensor *out,
                               fn_error *err)
{
    CU("sum_rows", fn_cuda_sum_rows(cuda_of(b)->stream, x->data, beta, out->data, fn_tensor_rows(x),
                                    x->ne[x->ndim - 1]));
    return FN_OK;
}

static fn_status cuda_dropout(fn_backend *b, fn_tensor *x, uint64_t key, uint32_t threshold,
                              float scale, fn_error *err)
{
    CU("dropout",
       fn_cuda_dropout(cuda_of(b)->stream, x->data, fn_tensor_numel(x), key, threshold, scale));
    return FN_OK;
}

static fn_status cuda_adam(fn_backend *b, fn_tensor *param, const fn_tensor *grad, fn_tensor *m,
                           fn_tensor *v, const fn_adam_step *s, fn_error *err)
{
    fn_cuda_adam_args a = {s->lr_t, s->rsqrt_bc2, s->beta1, s->beta2, s->eps, s->l2};
    CU("adam", fn_cuda_adam(cuda_of(b)->stream, param->data, grad->data, m->data, v->data,
                            fn_tensor_numel(param), a));
    return FN_OK;
}

static fn_status cuda_axpy(fn_backend *b, float alpha, const fn_tensor *x, fn_tensor *y,
                           fn_error *err)
{
    CU("axpy", fn_cuda_axpy(cuda_of(b)->stream, alpha, x->data, y->data, fn_tensor_numel(x)));
    return FN_OK;
}

static fn_status cuda_layernorm_backward(fn_backend *b, const fn_tensor *x,
                                         const fn_tensor *residual, const fn_tensor *gamma,
                                         float eps, const fn_tensor *dout, fn_tensor *dx,
                                         fn_tensor *dgamma, fn_tensor *dbeta, fn_error *err)
{
    CU("layernorm_backward",
       fn_cuda_layernorm_backward(cuda_of(b)->stream, x->data, residual ? residual->data : NULL,
                                  gamma->data, eps, dout->data, dx->data,
                                  dgamma ? dgamma->data : NULL, dbeta ? dbeta->data : NULL,
                                  fn_tensor_rows(x), x->ne[x->ndim - 1]));
    return FN_OK;
}

static fn_status cuda_attention_backward(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask,
                                         int n_heads, const fn_tensor *dout, fn_tensor *dqkv,
                                         fn_error *err)
{
    int64_t hd = qkv->ne[2] / (3 * n_heads);
    if (hd > 256)
        return fn_error_set(err, FN_ERR_UNSUPPORTED,
                            "attention_backward: head dimension %lld exceeds 256", (long long)hd);
    CU("attention_backward",
       fn_cuda_attention_backward(cuda_of(b)->stream, qkv->data, mask->data, dout->data, dqkv->data,
                                  qkv->ne[0], qkv->ne[1], n_heads, hd));
    return FN_OK;
}

static fn_status cuda_graph_begin(fn_backend *b, fn_error *err)
{
    fn_cuda *c = cuda_of(b);
    CU("begin graph", cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->recording = 1;
    return FN_OK;
}

static fn_status cuda_graph_end(fn_backend *b, void **graph, fn_error *err)
{
    fn_cuda *c = cuda_of(b);
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    c->recording = 0;
    CU("end graph", cudaStreamEndCapture(c->stream, &g));
    cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) return cuda_fail(err, "instantiate graph", e);
    *graph = exec;
    return FN_OK;
}

static fn_status cuda_graph_launch(fn_backend *b, void *graph, fn_error *err)
{
    CU("launch graph", cudaGraphLaunch((cudaGraphExec_t)graph, cuda_of(b)->stream));
    return FN_OK;
}

static void cuda_graph_free(fn_backend *b, void *graph)
{
    (void)b;
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

static const fn_backend_ops cuda_ops = {
    .alloc = cuda_alloc,
    .release = cuda_release,
    .write = cuda_write,
    .read = cuda_read,
    .sync = cuda_sync,
    .destroy = cuda_destroy,
    .gemm = cuda_gemm,
    .bias_act = cuda_bias_act,
    .layernorm = cuda_layernorm,
    .softmax = cuda_softmax,
    .attention = cuda_attention,
    .gather = cuda_gather,
    .mean_pool = cuda_mean_pool,
    .l2_normalize = cuda_l2_normalize,
    .linear = cuda_linear,
    .copy = cuda_copy,
    .act_backward = cuda_act_backward,
    .sum_rows = cuda_sum_rows,
    .dropout = cuda_dropout,
    .adam = cuda_adam,
    .axpy = cuda_axpy,
    .layernorm_backward = cuda_layernorm_backward,
    .attention_backward = cuda_attention_backward,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
};

fn_status fn_backend_cuda_new(int device, fn_backend **out, fn_error *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "cuda: no CUDA device available (%s)",
                            e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    if (device < 0 || device >= count)
        return fn_error_set(err, FN_ERR_INVALID, "cuda: device %d does not exist (%d found)",
                            device, count);
    fn_backend *b = calloc(1, sizeof *b);
    fn_cuda *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b), free(c);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    b->ops = &cuda_ops;
    b->device = FN_DEVICE_CUDA;
    b->impl = c;
    c->device = device;
    fn_status st = FN_OK;
    struct cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->fault, sizeof *c->fault)) != cudaSuccess ||
        (e = cudaMalloc(&c->blas_workspace, BLAS_WORKSPACE)) != cudaSuccess) {
        st = cuda_fail(err, "start", e);
    } else if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS ||
               cublasSetStream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS ||
               cublasSetWorkspace(c->blas, c->blas_workspace, BLAS_WORKSPACE) !=
                   CUBLAS_STATUS_SUCCESS) {
        st = fn_error_set(err, FN_ERR_INTERNAL, "cuda: cannot start cuBLAS");
    } else {
        fn_cuda_fault clear = {-1, 0, 0};
        if ((e = cudaMemcpy(c->fault, &clear, sizeof clear, cudaMemcpyHostToDevice)) != cudaSuccess)
            st = cuda_fail(err, "start", e);
    }
    if (st != FN_OK) {
        cuda_destroy(b);
        return st;
    }
    snprintf(b->name, sizeof b->name, "cuda:%d (%.100s)", device, prop.name);
    *out = b;
    return FN_OK;
}
