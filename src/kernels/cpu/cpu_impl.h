/*
 * cpu_impl.h - the CPU backend's internals: its state, a row-splitting helper
 * over the thread pool, and one function per op family (one file each). Each
 * op keeps a portable C version next to its AVX2/FMA version; `simd` picks.
 */
#ifndef FN_CPU_IMPL_H
#define FN_CPU_IMPL_H

#include "common/pool.h"
#include "kernels/backend_impl.h"

typedef struct fn_cpu {
    fn_pool *pool;
    int threads;
    int simd;   /* 1: AVX2 + FMA kernels */
    int avx512; /* with simd: AVX-512 where a kernel has it */
} fn_cpu;

static inline fn_cpu *fn_cpu_of(fn_backend *b)
{
    return (fn_cpu *)b->impl;
}

typedef void (*fn_cpu_rows_fn)(void *ctx, int64_t r0, int64_t r1);

/* Calls fn over [0, rows) in chunks of at least min_rows, spread over the pool. */
void fn_cpu_for_rows(fn_cpu *c, int64_t rows, int64_t min_rows, fn_cpu_rows_fn fn, void *ctx);

fn_status fn_cpu_gemm(fn_backend *b, const fn_gemm_args *g, fn_error *err);
/* Rows of A up to which the unpacked kernel beats sgemm (measured on AVX-512 Xeon cores). */
#define FN_SKINNY_MAX_ROWS 48
/* Runs A W^T for few rows without packing; returns 0 when the shape is not its case. */
int fn_cpu_gemm_skinny(fn_cpu *c, const fn_gemm_args *g);
fn_status fn_cpu_bias_act(fn_backend *b, fn_tensor *x, const fn_tensor *bias, fn_act act,
                          fn_error *err);
fn_status fn_cpu_layernorm(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                           const fn_tensor *gamma, const fn_tensor *beta, float eps, fn_tensor *out,
                           fn_error *err);
fn_status fn_cpu_softmax(fn_backend *b, fn_tensor *x, fn_error *err);
fn_status fn_cpu_attention(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask, int n_heads,
                           fn_tensor *out, fn_error *err);
fn_status fn_cpu_gather(fn_backend *b, const fn_tensor *table, const fn_tensor *ids, int accumulate,
                        fn_tensor *out, fn_error *err);
fn_status fn_cpu_mean_pool(fn_backend *b, const fn_tensor *x, const fn_tensor *mask, fn_tensor *out,
                           fn_error *err);
fn_status fn_cpu_l2_normalize(fn_backend *b, fn_tensor *x, fn_error *err);
fn_status fn_cpu_linear(fn_backend *b, const fn_tensor *x, fn_tensor *w, const fn_tensor *bias,
                        fn_act act, fn_tensor *out, fn_error *err);
void fn_cpu_drop_aux(fn_backend *b, fn_tensor *t);
/* train_ops.c */
fn_status fn_cpu_copy(fn_backend *b, const fn_tensor *src, fn_tensor *dst, fn_error *err);
fn_status fn_cpu_act_backward(fn_backend *b, const fn_tensor *pre, const fn_tensor *dy, fn_act act,
                              fn_tensor *dx, fn_error *err);
fn_status fn_cpu_sum_rows(fn_backend *b, const fn_tensor *x, float beta, fn_tensor *out,
                          fn_error *err);
fn_status fn_cpu_dropout(fn_backend *b, fn_tensor *x, uint64_t key, uint32_t threshold, float scale,
                         fn_error *err);
fn_status fn_cpu_adam(fn_backend *b, fn_tensor *param, const fn_tensor *grad, fn_tensor *m,
                      fn_tensor *v, const fn_adam_step *s, fn_error *err);
fn_status fn_cpu_axpy(fn_backend *b, float alpha, const fn_tensor *x, fn_tensor *y, fn_error *err);
fn_status fn_cpu_layernorm_backward(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                                    const fn_tensor *gamma, float eps, const fn_tensor *dout,
                                    fn_tensor *dx, fn_tensor *dgamma, fn_tensor *dbeta,
                                    fn_error *err);
fn_status fn_cpu_attention_backward(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask,
                                    int n_heads, const fn_tensor *dout, fn_tensor *dqkv,
                                    fn_error *err);

/* f32 only for now: other dtypes are refused with this message. */
fn_status fn_cpu_f32_only(const char *op, const fn_tensor *t, fn_error *err);

#endif
