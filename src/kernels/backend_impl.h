/*
 * backend_impl.h - what a backend implements: a table of functions called by
 * backend.c after it has checked shapes, dtypes and devices, so backends hold
 * only arithmetic and memory movement.
 */
#ifndef FN_BACKEND_IMPL_H
#define FN_BACKEND_IMPL_H

#include "backend.h"

typedef struct fn_gemm_args {
    const fn_tensor *a, *b;
    fn_tensor *c;
    int trans_a, trans_b;
    int64_t batch, m, n, k;
    int64_t stride_a, stride_b, stride_c; /* elements between batches; 0 broadcasts */
    float alpha, beta;
} fn_gemm_args;

/* An Adam step as backends run it: the bias corrections folded in, computed in double. */
typedef struct fn_adam_step {
    float lr_t;         /* lr / (1 - beta1^step) */
    float rsqrt_bc2;    /* 1 / sqrt(1 - beta2^step) */
    float beta1, beta2; /* m = beta1 m + (1 - beta1) g; v likewise with g^2 */
    float eps, l2;
} fn_adam_step;

typedef struct fn_backend_ops {
    fn_status (*alloc)(fn_backend *b, fn_tensor *t, fn_error *err);
    void (*release)(fn_backend *b, fn_tensor *t);
    fn_status (*write)(fn_backend *b, fn_tensor *t, const void *host, size_t n, fn_error *err);
    fn_status (*read)(fn_backend *b, const fn_tensor *t, void *host, size_t n, fn_error *err);
    fn_status (*sync)(fn_backend *b, fn_error *err);
    void (*destroy)(fn_backend *b);

    fn_status (*gemm)(fn_backend *b, const fn_gemm_args *g, fn_error *err);
    fn_status (*bias_act)(fn_backend *b, fn_tensor *x, const fn_tensor *bias, fn_act act,
                          fn_error *err);
    fn_status (*layernorm)(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                           const fn_tensor *gamma, const fn_tensor *beta, float eps, fn_tensor *out,
                           fn_error *err);
    fn_status (*softmax)(fn_backend *b, fn_tensor *x, fn_error *err);
    fn_status (*attention)(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask, int n_heads,
                           fn_tensor *out, fn_error *err);
    fn_status (*gather)(fn_backend *b, const fn_tensor *table, const fn_tensor *ids, int accumulate,
                        fn_tensor *out, fn_error *err);
    fn_status (*mean_pool)(fn_backend *b, const fn_tensor *x, const fn_tensor *mask, fn_tensor *out,
                           fn_error *err);
    fn_status (*l2_normalize)(fn_backend *b, fn_tensor *x, fn_error *err);
    fn_status (*linear)(fn_backend *b, const fn_tensor *x, fn_tensor *w, const fn_tensor *bias,
                        fn_act act, fn_tensor *out, fn_error *err);
    /* Training ops (f32; copy any dtype). */
    fn_status (*copy)(fn_backend *b, const fn_tensor *src, fn_tensor *dst, fn_error *err);
    fn_status (*act_backward)(fn_backend *b, const fn_tensor *pre, const fn_tensor *dy, fn_act act,
                              fn_tensor *dx, fn_error *err);
    /* beta 0: out is not read (NaN in it does not spread). */
    fn_status (*sum_rows)(fn_backend *b, const fn_tensor *x, float beta, fn_tensor *out,
                          fn_error *err);
    /* Element i becomes 0 when fn_dropout_bits(key, i) < threshold, else x * scale
       (dropout_mask.h); backend.c derives key, threshold and scale once for every backend. */
    fn_status (*dropout)(fn_backend *b, fn_tensor *x, uint64_t key, uint32_t threshold, float scale,
                         fn_error *err);
    /* param -= lr_t m / (sqrt(v) rsqrt_bc2 + eps) after the moment updates. */
    fn_status (*adam)(fn_backend *b, fn_tensor *param, const fn_tensor *grad, fn_tensor *m,
                      fn_tensor *v, const fn_adam_step *s, fn_error *err);
    fn_status (*axpy)(fn_backend *b, float alpha, const fn_tensor *x, fn_tensor *y, fn_error *err);
    /* dgamma and dbeta may be NULL; dx may alias dout, x or residual. */
    fn_status (*layernorm_backward)(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                                    const fn_tensor *gamma, float eps, const fn_tensor *dout,
                                    fn_tensor *dx, fn_tensor *dgamma, fn_tensor *dbeta,
                                    fn_error *err);
    /* dqkv aliases neither qkv nor dout. */
    fn_status (*attention_backward)(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask,
                                    int n_heads, const fn_tensor *dout, fn_tensor *dqkv,
                                    fn_error *err);
    /* Frees t->aux (may be NULL when a backend never makes any). */
    void (*drop_aux)(fn_backend *b, fn_tensor *t);
    /* Graph recording (NULL when unsupported). */
    fn_status (*graph_begin)(fn_backend *b, fn_error *err);
    fn_status (*graph_end)(fn_backend *b, void **graph, fn_error *err);
    fn_status (*graph_launch)(fn_backend *b, void *graph, fn_error *err);
    void (*graph_free)(fn_backend *b, void *graph);
} fn_backend_ops;

#define FN_PROFILED_OPS 24

struct fn_backend {
    const fn_backend_ops *ops;
    fn_device device;
    char name[128];
    void *impl;
    uint64_t prof_ns[FN_PROFILED_OPS], prof_calls[FN_PROFILED_OPS]; /* FUNNEL_OP_PROFILE */
};

#endif
