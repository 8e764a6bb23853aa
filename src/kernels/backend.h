/*
 * backend.h - the compute layer's one interface, with a CPU backend (OpenBLAS
 * sgemm plus AVX2/FMA kernels, threaded) and a CUDA backend (cuBLAS plus .cu
 * kernels). The encoder, the DeepFM MLP and the listwise reranker are written
 * against these ops only; they never include a device header.
 *
 * Every op checks dtypes, devices and shapes and returns FN_ERR_INVALID with a
 * message naming the op and the mismatch; a backend that cannot run a dtype
 * returns FN_ERR_UNSUPPORTED. Ops are asynchronous on devices that queue work;
 * fn_tensor_read and fn_backend_sync wait for them, and report the input
 * errors the device found meanwhile (a gather id out of range).
 */
#ifndef FN_BACKEND_H
#define FN_BACKEND_H

#include "common/status.h"
#include "tensor.h"

typedef struct fn_backend fn_backend;

typedef enum fn_act {
    FN_ACT_NONE = 0,
    FN_ACT_RELU,
    FN_ACT_GELU, /* the erf form: x/2 (1 + erf(x / sqrt 2)) */
} fn_act;

/* Which CPU kernels to run; the CPU's own features cap the choice. */
typedef enum fn_cpu_simd {
    FN_CPU_PORTABLE = 0, /* plain C (and OpenBLAS) */
    FN_CPU_AVX2 = 1,     /* AVX2 + FMA */
    FN_CPU_BEST = 2,     /* AVX-512 where a kernel has it, else AVX2 */
} fn_cpu_simd;

/*
 * The CPU backend. threads: parallelism of the kernels (0: all online CPUs).
 * FUNNEL_CPU_SIMD=portable|avx2 in the environment lowers the choice.
 */
fn_status fn_backend_cpu_new(int threads, fn_cpu_simd simd, fn_backend **out, fn_error *err);
/*
 * The CUDA backend on device ordinal `device`. FN_ERR_UNSUPPORTED with a clear
 * message when funnel was built without CUDA or no GPU is present.
 */
fn_status fn_backend_cuda_new(int device, fn_backend **out, fn_error *err);
void fn_backend_free(fn_backend *b);
/* "cpu-avx2", "cpu-portable", "cuda:0 (NVIDIA H100 ...)". */
const char *fn_backend_name(const fn_backend *b);
fn_device fn_backend_device(const fn_backend *b);
/* Waits for queued work. */
fn_status fn_backend_sync(fn_backend *b, fn_error *err);

/*
 * Call first thing in main (before any thread starts): makes OpenBLAS use the
 * kernels this CPU supports when it fell back to generic ones, by setting
 * OPENBLAS_CORETYPE and re-executing the program (argv as given to main).
 * Returns when nothing needed changing.
 */
void fn_kernels_init(char **argv);
/* The kernel family OpenBLAS runs ("SkylakeX", "Haswell", ...). */
const char *fn_kernels_blas_core(void);

/*
 * Graphs: on devices that support them (CUDA), the ops queued between begin
 * and end are recorded instead of run, and the graph replays them with one
 * launch; fixed-shape forward passes use this to save the per-op launch
 * cost. The tensors the ops use must stay allocated while the graph lives.
 * FN_ERR_UNSUPPORTED on backends without graphs (the CPU): run the ops.
 */
typedef struct fn_graph fn_graph;
fn_status fn_backend_graph_begin(fn_backend *b, fn_error *err);
/* Ends recording; on failure (or after an op failed while recording) *out is NULL. */
fn_status fn_backend_graph_end(fn_backend *b, fn_graph **out, fn_error *err);
fn_status fn_graph_launch(fn_graph *g, fn_error *err);
void fn_graph_free(fn_graph *g);

/* ---- tensors ---- */

/* A new uninitialised tensor on b. Free with fn_tensor_free. */
fn_status fn_tensor_new(fn_backend *b, fn_dtype dt, int ndim, const int64_t *dims, fn_tensor **out,
                        fn_error *err);
void fn_tensor_free(fn_tensor *t);
/* Copies nbytes (must equal the tensor's size) from host memory into t. */
fn_status fn_tensor_write(fn_tensor *t, const void *host, size_t nbytes, fn_error *err);
/* Copies t into host memory (waits for pending work). */
fn_status fn_tensor_read(const fn_tensor *t, void *host, size_t nbytes, fn_error *err);

/* ---- ops ---- */

/*
 * C = alpha * op(A) op(B) + beta * C, where op(X) is X or its transpose.
 * 2-D: A [M,K] (trans_a: [K,M]), B [K,N] (trans_b: [N,K]), C [M,N].
 * 3-D: the same per batch; A, B or C may have batch 1 to broadcast (weights).
 * trans_b with B = [out, in] is PyTorch's Linear layout.
 */
fn_status fn_op_gemm(fn_backend *b, const fn_tensor *a, int trans_a, const fn_tensor *bm,
                     int trans_b, fn_tensor *c, float alpha, float beta, fn_error *err);

/*
 * A dense layer: out = act(x W^T + bias), x [M, K] (or [.., K]), W [N, K] in
 * PyTorch's Linear layout, bias [N] or NULL, out [M, N]. Backends may keep a
 * repacked copy of W made on first use (tensor aux), so W is passed mutable;
 * writing W drops it.
 */
fn_status fn_op_linear(fn_backend *b, const fn_tensor *x, fn_tensor *w, const fn_tensor *bias,
                       fn_act act, fn_tensor *out, fn_error *err);

/* x[r, :] = act(x[r, :] + bias) for every row; bias [cols] or NULL. */
fn_status fn_op_bias_act(fn_backend *b, fn_tensor *x, const fn_tensor *bias, fn_act act,
                         fn_error *err);

/*
 * out = LayerNorm(x + residual) * gamma + beta over the last dimension, with
 * the biased variance as PyTorch computes it. residual may be NULL; out may
 * be x or residual.
 */
fn_status fn_op_layernorm(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                          const fn_tensor *gamma, const fn_tensor *beta, float eps, fn_tensor *out,
                          fn_error *err);

/* Softmax over the last dimension, in place. */
fn_status fn_op_softmax(fn_backend *b, fn_tensor *x, fn_error *err);

/*
 * Multi-head self-attention with a padding mask, without materialising the
 * score matrix: an online softmax over tiles of keys (FlashAttention-style).
 * qkv [B, T, 3*H*D]: each token's query, key and value (heads contiguous
 * within each); mask [B, T] int32, nonzero for real tokens; out [B, T, H*D].
 * Scores are scaled by 1/sqrt(D). Masked keys get no weight; a sequence with
 * no real token gives zeros.
 */
fn_status fn_op_attention(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask, int n_heads,
                          fn_tensor *out, fn_error *err);

/*
 * out[i, :] = table[ids[i], :] (accumulate: +=). table [V, D], ids int32 [N],
 * out [N, D]. An id outside [0, V) is FN_ERR_INVALID naming it: at once on the
 * CPU (out untouched), at the next sync or read on devices that queue work.
 */
fn_status fn_op_gather(fn_backend *b, const fn_tensor *table, const fn_tensor *ids, int accumulate,
                       fn_tensor *out, fn_error *err);

/* out[b, :] = mean of x[b, t, :] over t with mask[b, t] != 0 (zeros when none). */
fn_status fn_op_mean_pool(fn_backend *b, const fn_tensor *x, const fn_tensor *mask, fn_tensor *out,
                          fn_error *err);

/* Each row divided by max(its L2 norm, 1e-12), in place (PyTorch's F.normalize). */
fn_status fn_op_l2_normalize(fn_backend *b, fn_tensor *x, fn_error *err);

/* ---- training ops (the DeepFM MLP, the reranker) ---- */

/* dst = src (same dtype and element count; shapes may differ). */
fn_status fn_op_copy(fn_backend *b, const fn_tensor *src, fn_tensor *dst, fn_error *err);

/*
 * The backward pass of an activation: dx = dy * act'(pre), elementwise, where
 * pre is the activation's input (before bias_act/linear applied it). dx may
 * be dy. GELU's derivative is that of the erf form.
 */
fn_status fn_op_act_backward(fn_backend *b, const fn_tensor *pre, const fn_tensor *dy, fn_act act,
                             fn_tensor *dx, fn_error *err);

/* out[j] = beta * out[j] + sum_i x[i, j] over the rows of x [.., N]; out [N] (bias gradients).
   With beta 0, out is not read (as BLAS: a NaN already there does not spread). */
fn_status fn_op_sum_rows(fn_backend *b, const fn_tensor *x, float beta, fn_tensor *out,
                         fn_error *err);

/*
 * The backward pass of fn_op_attention: from the forward's qkv [B, T, 3*H*D] and
 * mask [B, T] and dout = dL/d(out) [B, T, H*D], writes dqkv = dL/d(qkv)
 * [B, T, 3*H*D] (overwritten). Recomputes each query's scores from q and k (no
 * T x T matrix is kept), so it is the exact derivative of the forward op,
 * including its handling of masked keys and of sequences with no real token.
 * dqkv must not be qkv or dout. f32 only.
 */
fn_status fn_op_attention_backward(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask,
                                   int n_heads, const fn_tensor *dout, fn_tensor *dqkv,
                                   fn_error *err);

/*
 * The backward pass of fn_op_layernorm, given the forward's x, residual (NULL if
 * none), gamma and eps, and dout = dL/d(out): dx = dL/d(x + residual) (the same
 * for x and for residual), shaped like x; dgamma and dbeta [D] are overwritten
 * with their gradients summed over rows (either may be NULL). dx may be dout.
 * f32 only.
 */
fn_status fn_op_layernorm_backward(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                                   const fn_tensor *gamma, float eps, const fn_tensor *dout,
                                   fn_tensor *dx, fn_tensor *dgamma, fn_tensor *dbeta,
                                   fn_error *err);

/* y += alpha * x, elementwise; f32, the same element count (shapes may differ). */
fn_status fn_op_axpy(fn_backend *b, float alpha, const fn_tensor *x, fn_tensor *y, fn_error *err);

/*
 * Inverted dropout, in place: each element is zeroed with probability p and
 * the rest scaled by 1 / (1 - p). Which elements drop is a hash of (seed, the
 * element's index), the same on every backend, so calling it again with the
 * same seed on the gradient is the backward pass. p = 0 leaves x as it is.
 */
fn_status fn_op_dropout(fn_backend *b, fn_tensor *x, float p, uint64_t seed, fn_error *err);

/*
 * One Adam step (Kingma and Ba) on f32 tensors of one shape, L2 added to the
 * gradient: g = grad + l2 param; m = beta1 m + (1 - beta1) g;
 * v = beta2 v + (1 - beta2) g^2; param -= lr mhat / (sqrt(vhat) + eps) with
 * mhat = m / (1 - beta1^step), vhat = v / (1 - beta2^step); step is 1-based.
 * Drops param's repacked copy (aux), as a write does.
 */
typedef struct fn_adam {
    float lr, beta1, beta2, eps, l2;
    int64_t step;
} fn_adam;
fn_status fn_op_adam(fn_backend *b, fn_tensor *param, const fn_tensor *grad, fn_tensor *m,
                     fn_tensor *v, const fn_adam *opt, fn_error *err);

#endif
