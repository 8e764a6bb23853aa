/*
 * gemm_skinny.c - C = alpha A W^T + beta C for few rows of A (a query, a
 * short batch) with W in PyTorch's [out, in] layout, without sgemm's packing.
 *
 * With 16 rows, OpenBLAS spends half its time packing the weights. Here each
 * block of 4 weight rows (at most 4 x K floats, L1-sized) is read once and
 * met by every row of A in blocks of 4, so the weights stream from memory
 * once per call; a tile of accumulators covers a few rows of A against 4
 * weight rows (AVX-512 when the CPU has it, else AVX2).
 */
#include "cpu_impl.h"
#include "vmath.h"

typedef struct job {
    const float *a, *w;
    float *c;
    int64_t m, n, k;
    float alpha, beta;
    int64_t block; /* weight rows per task */
    int avx512;
} job;

static inline FN_AVX2 void store(const job *j, int64_t i, int64_t n, float v)
{
    float *dst = j->c + i * j->n + n;
    *dst = j->alpha * v + (j->beta != 0 ? j->beta * *dst : 0.0f);
}

/*
 * Rows [i0, i0 + mi) of A against weight rows [n0, n0 + ni), mi <= MR, ni <= 4.
 * AVX2 has 16 vector registers: 2 x 4 accumulators, 4 weight vectors and one
 * input vector fit without spilling.
 */
#define MR2 2
static FN_AVX2 void tile_avx2(const job *j, int64_t i0, int mi, int64_t n0, int ni)
{
    __m256 acc[MR2][4];
#pragma GCC unroll 2
    for (int r = 0; r < MR2; r++)
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) acc[r][s] = _mm256_setzero_ps();
    const float *ar[MR2], *wr[4];
    for (int r = 0; r < MR2; r++) ar[r] = j->a + (i0 + (r < mi ? r : 0)) * j->k;
    for (int s = 0; s < 4; s++) wr[s] = j->w + (n0 + (s < ni ? s : 0)) * j->k;
    int64_t k8 = j->k & ~(int64_t)7, kk = 0;
    for (; kk < k8; kk += 8) {
        __m256 w0 = _mm256_loadu_ps(wr[0] + kk), w1 = _mm256_loadu_ps(wr[1] + kk);
        __m256 w2 = _mm256_loadu_ps(wr[2] + kk), w3 = _mm256_loadu_ps(wr[3] + kk);
#pragma GCC unroll 2
        for (int r = 0; r < MR2; r++) {
            __m256 x = _mm256_loadu_ps(ar[r] + kk);
            acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(x, w2, acc[r][2]);
            acc[r][3] = _mm256_fmadd_ps(x, w3, acc[r][3]);
        }
    }
    /* Constant indices (unrolled, guarded) keep acc in registers through the k loop. */
#pragma GCC unroll 2
    for (int r = 0; r < MR2; r++)
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            if (r >= mi || s >= ni) continue;
            float v = fn_v_hsum(acc[r][s]);
            for (int64_t t = kk; t < j->k; t++) v += ar[r][t] * wr[s][t];
            store(j, i0 + r, n0 + s, v);
        }
}

/* AVX-512 has 32 registers: a 4 x 4 tile of 16-lane accumulators. */
#define MR5 4
static FN_AVX512 void tile_avx512(const job *j, int64_t i0, int mi, int64_t n0, int ni)
{
    __m512 acc[MR5][4];
#pragma GCC unroll 4
    for (int r = 0; r < MR5; r++)
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) acc[r][s] = _mm512_setzero_ps();
    const float *ar[MR5], *wr[4];
    for (int r = 0; r < MR5; r++) ar[r] = j->a + (i0 + (r < mi ? r : 0)) * j->k;
    for (int s = 0; s < 4; s++) wr[s] = j->w + (n0 + (s < ni ? s : 0)) * j->k;
    int64_t k16 = j->k & ~(int64_t)15, kk = 0;
    for (; kk < k16; kk += 16) {
        __m512 w0 = _mm512_loadu_ps(wr[0] + kk), w1 = _mm512_loadu_ps(wr[1] + kk);
        __m512 w2 = _mm512_loadu_ps(wr[2] + kk), w3 = _mm512_loadu_ps(wr[3] + kk);
#pragma GCC unroll 4
        for (int r = 0; r < MR5; r++) {
            __m512 x = _mm512_loadu_ps(ar[r] + kk);
            acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(x, w2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(x, w3, acc[r][3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR5; r++)
#pragma GCC unroll 4
        for (int s = 0; s < 4; s++) {
            if (r >= mi || s >= ni) continue;
            float v = _mm512_reduce_add_ps(acc[r][s]);
            for (int64_t t = kk; t < j->k; t++) v += ar[r][t] * wr[s][t];
            store(j, i0 + r, n0 + s, v);
        }
}

static void task(void *ctx, size_t idx)
{
    const job *j = ctx;
    int64_t n0 = (int64_t)idx * j->block;
    int64_t n1 = n0 + j->block < j->n ? n0 + j->block : j->n;
    for (int64_t n = n0; n < n1; n += 4) {
        int ni = n1 - n < 4 ? (int)(n1 - n) : 4;
        if (j->avx512) {
            for (int64_t i = 0; i < j->m; i += MR5)
                tile_avx512(j, i, j->m - i < MR5 ? (int)(j->m - i) : MR5, n, ni);
        } else {
            for (int64_t i = 0; i < j->m; i += MR2)
                tile_avx2(j, i, j->m - i < MR2 ? (int)(j->m - i) : MR2, n, ni);
        }
    }
}

int fn_cpu_gemm_skinny(fn_cpu *c, const fn_gemm_args *g)
{
    if (!c->simd || g->trans_a || !g->trans_b || g->batch != 1 || g->m > FN_SKINNY_MAX_ROWS)
        return 0;
    job j = {g->a->data, g->b->data, g->c->data, g->m, g->n, g->k, g->alpha, g->beta, 0, c->avx512};
    /* Weight rows per task: a multiple of 4, a few tasks per thread. */
    int64_t tasks = (int64_t)c->threads * 2;
    j.block = ((g->n + tasks - 1) / tasks + 3) & ~(int64_t)3;
    if (j.block < 16) j.block = 16;
    fn_pool_run(c->pool, (size_t)((g->n + j.block - 1) / j.block), task, &j);
    return 1;
}
