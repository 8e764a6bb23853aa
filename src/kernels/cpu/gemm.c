/*
 * gemm.c - matrix products through OpenBLAS's sgemm, run single-threaded
 * inside the backend's own thread pool: the output is split into row (or,
 * for short matrices, column) blocks, one sgemm each. One set of threads for
 * every op means no second pool spinning against ours on a small machine.
 */
#include <cblas.h>

#include "cpu_impl.h"

typedef struct job {
    const fn_gemm_args *g;
    int split_rows; /* 1: blocks of rows of C; 0: blocks of columns */
    int64_t block;
} job;

/* One sgemm over rows [i0, i1) and columns [j0, j1) of C, for batch entry p. */
static void sub_gemm(const fn_gemm_args *g, int64_t p, int64_t i0, int64_t i1, int64_t j0,
                     int64_t j1)
{
    const float *a = (const float *)g->a->data + p * g->stride_a;
    const float *b = (const float *)g->b->data + p * g->stride_b;
    float *c = (float *)g->c->data + p * g->stride_c;
    int64_t lda = g->trans_a ? g->m : g->k, ldb = g->trans_b ? g->k : g->n;
    a += g->trans_a ? i0 : i0 * lda;
    b += g->trans_b ? j0 * ldb : j0;
    c += i0 * g->n + j0;
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, (int)(i1 - i0), (int)(j1 - j0), (int)g->k,
                g->alpha, a, (int)lda, b, (int)ldb, g->beta, c, (int)g->n);
}

static void batch_task(void *ctx, size_t p)
{
    const job *j = ctx;
    sub_gemm(j->g, (int64_t)p, 0, j->g->m, 0, j->g->n);
}

static void block_task(void *ctx, size_t i)
{
    const job *j = ctx;
    const fn_gemm_args *g = j->g;
    int64_t lo = (int64_t)i * j->block;
    if (j->split_rows) {
        int64_t hi = lo + j->block < g->m ? lo + j->block : g->m;
        sub_gemm(g, 0, lo, hi, 0, g->n);
    } else {
        int64_t hi = lo + j->block < g->n ? lo + j->block : g->n;
        sub_gemm(g, 0, 0, g->m, lo, hi);
    }
}

fn_status fn_cpu_gemm(fn_backend *b, const fn_gemm_args *g, fn_error *err)
{
    if (g->c->dtype != FN_F32) return fn_cpu_f32_only("gemm", g->c, err);
    fn_cpu *c = fn_cpu_of(b);
    if (fn_cpu_gemm_skinny(c, g)) return FN_OK;
    double flops = 2.0 * (double)g->m * (double)g->n * (double)g->k * (double)g->batch;
    job j = {.g = g};
    if (c->threads == 1 || flops < 2e6) {
        for (int64_t p = 0; p < g->batch; p++) sub_gemm(g, p, 0, g->m, 0, g->n);
        return FN_OK;
    }
    if (g->batch >= c->threads) {
        fn_pool_run(c->pool, (size_t)g->batch, batch_task, &j);
        return FN_OK;
    }
    for (int64_t p = 0; p < g->batch; p++) {
        /* Entry p as a one-entry product over shifted copies of the operands. */
        fn_gemm_args one = *g;
        fn_tensor ta = *g->a, tb = *g->b, tc = *g->c;
        ta.data = (float *)g->a->data + p * g->stride_a;
        tb.data = (float *)g->b->data + p * g->stride_b;
        tc.data = (float *)g->c->data + p * g->stride_c;
        one.a = &ta, one.b = &tb, one.c = &tc, one.batch = 1;
        job jp = {.g = &one};
        /* Rows when there are enough of them (sgemm blocks want 16+ rows each); else columns. */
        int64_t parts = c->threads;
        if (one.m >= 16 * parts) {
            jp.split_rows = 1;
            jp.block = (one.m + parts - 1) / parts;
            jp.block = (jp.block + 15) & ~(int64_t)15;
            fn_pool_run(c->pool, (size_t)((one.m + jp.block - 1) / jp.block), block_task, &jp);
        } else {
            jp.split_rows = 0;
            jp.block = (one.n + parts - 1) / parts;
            jp.block = (jp.block + 15) & ~(int64_t)15;
            fn_pool_run(c->pool, (size_t)((one.n + jp.block - 1) / jp.block), block_task, &jp);
        }
    }
    return FN_OK;
}
