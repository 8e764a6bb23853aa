/* gemm.c - matrix products through OpenBLAS's sgemm, one call per batch entry. */
#include <cblas.h>

#include "cpu_impl.h"

fn_status fn_cpu_gemm(fn_backend *b, const fn_gemm_args *g, fn_error *err)
{
    (void)b;
    if (g->c->dtype != FN_F32) return fn_cpu_f32_only("gemm", g->c, err);
    const float *a = g->a->data, *bm = g->b->data;
    float *c = g->c->data;
    /* Leading dimensions of the stored (untransposed) matrices. */
    int lda = (int)(g->trans_a ? g->m : g->k);
    int ldb = (int)(g->trans_b ? g->k : g->n);
    for (int64_t i = 0; i < g->batch; i++)
        cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                    g->trans_b ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k,
                    g->alpha, a + i * g->stride_a, lda, bm + i * g->stride_b, ldb, g->beta,
                    c + i * g->stride_c, (int)g->n);
    return FN_OK;
}
