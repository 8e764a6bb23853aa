/*
 * cpu.c - the CPU backend: creation (thread pool, OpenBLAS threads, AVX2
 * detection), memory, and the op table. The ops live in one file per family.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_impl.h"

typedef struct rows_job {
    fn_cpu_rows_fn fn;
    void *ctx;
    int64_t rows, chunk;
} rows_job;

static void rows_task(void *ctx, size_t i)
{
    rows_job *j = ctx;
    int64_t r0 = (int64_t)i * j->chunk;
    int64_t r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    j->fn(j->ctx, r0, r1);
}

void fn_cpu_for_rows(fn_cpu *c, int64_t rows, int64_t min_rows, fn_cpu_rows_fn fn, void *ctx)
{
    if (rows <= 0) return;
    if (min_rows < 1) min_rows = 1;
    /* A few chunks per thread balance uneven rows without much scheduling. */
    int64_t tasks = (int64_t)c->threads * 4;
    int64_t chunk = (rows + tasks - 1) / tasks;
    if (chunk < min_rows) chunk = min_rows;
    int64_t n = (rows + chunk - 1) / chunk;
    if (n == 1) {
        fn(ctx, 0, rows);
        return;
    }
    rows_job j = {fn, ctx, rows, chunk};
    fn_pool_run(c->pool, (size_t)n, rows_task, &j);
}

fn_status fn_cpu_f32_only(const char *op, const fn_tensor *t, fn_error *err)
{
    return fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: the CPU backend computes in f32, not %s", op,
                        fn_dtype_name(t->dtype));
}

static fn_status cpu_alloc(fn_backend *b, fn_tensor *t, fn_error *err)
{
    (void)b;
    size_t n = fn_tensor_nbytes(t);
    t->data = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!t->data) return fn_error_set(err, FN_ERR_NOMEM, "cpu: cannot allocate %zu bytes", n);
    return FN_OK;
}

static void cpu_release(fn_backend *b, fn_tensor *t)
{
    (void)b;
    free(t->data);
    t->data = NULL;
}

static fn_status cpu_write(fn_backend *b, fn_tensor *t, const void *host, size_t n, fn_error *err)
{
    (void)b, (void)err;
    memcpy(t->data, host, n);
    return FN_OK;
}

static fn_status cpu_read(fn_backend *b, const fn_tensor *t, void *host, size_t n, fn_error *err)
{
    (void)b, (void)err;
    memcpy(host, t->data, n);
    return FN_OK;
}

static fn_status cpu_sync(fn_backend *b, fn_error *err)
{
    (void)b, (void)err;
    return FN_OK;
}

static void cpu_destroy(fn_backend *b)
{
    fn_cpu *c = fn_cpu_of(b);
    fn_pool_free(c->pool);
    free(c);
    free(b);
}

static const fn_backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .release = cpu_release,
    .write = cpu_write,
    .read = cpu_read,
    .sync = cpu_sync,
    .destroy = cpu_destroy,
    .gemm = fn_cpu_gemm,
    .bias_act = fn_cpu_bias_act,
    .layernorm = fn_cpu_layernorm,
    .softmax = fn_cpu_softmax,
    .attention = fn_cpu_attention,
    .gather = fn_cpu_gather,
    .mean_pool = fn_cpu_mean_pool,
    .l2_normalize = fn_cpu_l2_normalize,
    .linear = fn_cpu_linear,
    .copy = fn_cpu_copy,
    .act_backward = fn_cpu_act_backward,
    .sum_rows = fn_cpu_sum_rows,
    .dropout = fn_cpu_dropout,
    .adam = fn_cpu_adam,
    .axpy = fn_cpu_axpy,
    .layernorm_backward = fn_cpu_layernorm_backward,
    .attention_backward = fn_cpu_attention_backward,
    .drop_aux = fn_cpu_drop_aux,
};

fn_status fn_backend_cpu_new(int threads, fn_cpu_simd simd, fn_backend **out, fn_error *err)
{
    fn_backend *b = calloc(1, sizeof *b);
    fn_cpu *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    fn_status st = fn_pool_new(threads, &c->pool, err);
    if (st != FN_OK) {
        free(b);
        free(c);
        return st;
    }
    c->threads = fn_pool_threads(c->pool);
    const char *env = getenv("FUNNEL_CPU_SIMD");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "portable") == 0)) simd = FN_CPU_PORTABLE;
    if (env && strcmp(env, "avx2") == 0 && simd > FN_CPU_AVX2) simd = FN_CPU_AVX2;
    c->simd =
        simd >= FN_CPU_AVX2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    c->avx512 = c->simd && simd == FN_CPU_BEST && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    /* sgemm runs inside our pool (gemm.c splits the work): OpenBLAS's own threads would
       spin against ours. */
    openblas_set_num_threads(1);
    b->ops = &cpu_ops;
    b->device = FN_DEVICE_CPU;
    b->impl = c;
    snprintf(b->name, sizeof b->name, "cpu-%s (%d threads)",
             c->avx512 ? "avx512"
             : c->simd ? "avx2"
                       : "portable",
             c->threads);
    *out = b;
    return FN_OK;
}
