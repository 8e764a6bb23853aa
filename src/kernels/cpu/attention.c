/*
 * attention.c - fused multi-head self-attention with a padding mask.
 *
 * One task per (sequence, head). For each query, keys are visited in tiles
 * of TILE with an online softmax: the running maximum m, the running sum l
 * and the weighted sum of values are rescaled when m grows, so the T x T score
 * matrix never exists and memory stays O(T * D) per task.
 */
#include <math.h>
#include <string.h>

#include "cpu_impl.h"
#include "vmath.h"

#define TILE         32
#define MAX_HEAD_DIM 256

typedef struct job {
    const float *qkv;
    const int32_t *mask;
    float *out;
    int64_t t, heads, hd, width; /* width = 3 * heads * hd */
    float scale;
} job;

static void task_portable(const job *j, int64_t b, int64_t h)
{
    const int32_t *mask = j->mask + b * j->t;
    const float *base = j->qkv + b * j->t * j->width;
    float acc[MAX_HEAD_DIM], s[TILE];
    for (int64_t i = 0; i < j->t; i++) {
        const float *q = base + i * j->width + h * j->hd;
        float m = -INFINITY, l = 0;
        memset(acc, 0, (size_t)j->hd * sizeof *acc);
        for (int64_t j0 = 0; j0 < j->t; j0 += TILE) {
            int64_t n = j->t - j0 < TILE ? j->t - j0 : TILE;
            float tmax = -INFINITY;
            for (int64_t k = 0; k < n; k++) {
                if (!mask[j0 + k]) {
                    s[k] = -INFINITY;
                    continue;
                }
                const float *key = base + (j0 + k) * j->width + (j->heads + h) * j->hd;
                float dot = 0;
                for (int64_t d = 0; d < j->hd; d++) dot += q[d] * key[d];
                s[k] = dot * j->scale;
                tmax = s[k] > tmax ? s[k] : tmax;
            }
            if (tmax == -INFINITY) continue; /* every key of the tile is padding */
            float mnew = tmax > m ? tmax : m;
            float corr = expf(m - mnew); /* 0 on the first tile: m is -inf */
            l *= corr;
            for (int64_t d = 0; d < j->hd; d++) acc[d] *= corr;
            for (int64_t k = 0; k < n; k++) {
                if (s[k] == -INFINITY) continue;
                float p = expf(s[k] - mnew);
                l += p;
                const float *v = base + (j0 + k) * j->width + (2 * j->heads + h) * j->hd;
                for (int64_t d = 0; d < j->hd; d++) acc[d] += p * v[d];
            }
            m = mnew;
        }
        float *o = j->out + (b * j->t + i) * j->heads * j->hd + h * j->hd;
        float inv = l > 0 ? 1.0f / l : 0.0f;
        for (int64_t d = 0; d < j->hd; d++) o[d] = acc[d] * inv;
    }
}

/*
 * AVX-512, head_dim a multiple of 16. Each tile of KT keys is transposed once
 * into kt[d][KT] and met by QB queries (the whole sequence when it is short),
 * four queries at a time: a query's KT scores are head_dim broadcast FMAs into
 * two vectors (no horizontal sums), four queries give eight independent FMA
 * chains, and the value sum walks the keys with the four queries' running
 * outputs in registers. The softmax of a tile is two vector exps per query.
 */
#define QB 32
#define KT 32
#define QG 4

static FN_AVX512 void task_avx512(const job *j, int64_t b, int64_t h)
{
    const int32_t *mask = j->mask + b * j->t;
    const float *base = j->qkv + b * j->t * j->width;
    const int64_t hd = j->hd, nv = hd / 16;
    _Alignas(64) float kt[MAX_HEAD_DIM * KT], ps[QG][KT];
    _Alignas(64) float acc[QB][MAX_HEAD_DIM];
    float m[QB], l[QB];
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sc = _mm512_set1_ps(j->scale);
    for (int64_t q0 = 0; q0 < j->t; q0 += QB) {
        int64_t qn = j->t - q0 < QB ? j->t - q0 : QB;
        for (int64_t i = 0; i < qn; i++) {
            m[i] = -INFINITY, l[i] = 0;
            memset(acc[i], 0, (size_t)hd * sizeof(float));
        }
        for (int64_t j0 = 0; j0 < j->t; j0 += KT) {
            int64_t n = j->t - j0 < KT ? j->t - j0 : KT;
            uint32_t valid = 0;
            for (int64_t k = 0; k < n; k++)
                if (mask[j0 + k]) valid |= 1u << k;
            if (!valid) continue; /* a tile of padding */
            for (int64_t k = 0; k < KT; k++) {
                const float *key = base + (j0 + k) * j->width + (j->heads + h) * hd;
                for (int64_t d = 0; d < hd; d++) kt[d * KT + k] = k < n ? key[d] : 0.0f;
            }
            const __mmask16 v0 = (__mmask16)(valid & 0xFFFF), v1 = (__mmask16)(valid >> 16);
            const float *vbase = base + j0 * j->width + (2 * j->heads + h) * hd;
            for (int64_t i = 0; i < qn; i += QG) {
                int g = qn - i < QG ? (int)(qn - i) : QG;
                const float *q[QG];
                for (int r = 0; r < QG; r++)
                    q[r] = base + (q0 + i + (r < g ? r : 0)) * j->width + h * hd;
                __m512 s[QG][2];
#pragma GCC unroll 4
                for (int r = 0; r < QG; r++) s[r][0] = s[r][1] = _mm512_setzero_ps();
                for (int64_t d = 0; d < hd; d++) {
                    __m512 k0 = _mm512_load_ps(kt + d * KT), k1 = _mm512_load_ps(kt + d * KT + 16);
#pragma GCC unroll 4
                    for (int r = 0; r < QG; r++) {
                        __m512 qd = _mm512_set1_ps(q[r][d]);
                        s[r][0] = _mm512_fmadd_ps(qd, k0, s[r][0]);
                        s[r][1] = _mm512_fmadd_ps(qd, k1, s[r][1]);
                    }
                }
                float corr[QG];
                for (int r = 0; r < g; r++) {
                    __m512 a0 = _mm512_mask_mul_ps(ninf, v0, s[r][0], sc);
                    __m512 a1 = _mm512_mask_mul_ps(ninf, v1, s[r][1], sc);
                    float tmax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
                    float mnew = tmax > m[i + r] ? tmax : m[i + r];
                    corr[r] = expf(m[i + r] - mnew);
                    __m512 vm = _mm512_set1_ps(mnew);
                    __m512 p0 = _mm512_maskz_mov_ps(v0, fn_v_exp512(_mm512_sub_ps(a0, vm)));
                    __m512 p1 = _mm512_maskz_mov_ps(v1, fn_v_exp512(_mm512_sub_ps(a1, vm)));
                    l[i + r] = l[i + r] * corr[r] + _mm512_reduce_add_ps(_mm512_add_ps(p0, p1));
                    _mm512_store_ps(ps[r], p0);
                    _mm512_store_ps(ps[r] + 16, p1);
                    m[i + r] = mnew;
                }
                for (int r = g; r < QG; r++) corr[r] = 0; /* rows beyond the block: unused */
                /* acc = acc * corr + sum_k p_k v_k, 16 dims at a time, four queries' sums in
                   registers across the keys (masked keys have p = 0). */
                for (int64_t d = 0; d < nv; d++) {
                    __m512 a[QG];
#pragma GCC unroll 4
                    for (int r = 0; r < QG; r++)
                        a[r] = r < g ? _mm512_mul_ps(_mm512_load_ps(acc[i + r] + 16 * d),
                                                     _mm512_set1_ps(corr[r]))
                                     : _mm512_setzero_ps();
                    for (int64_t k = 0; k < n; k++) {
                        __m512 vk = _mm512_loadu_ps(vbase + k * j->width + 16 * d);
#pragma GCC unroll 4
                        for (int r = 0; r < QG; r++)
                            a[r] = _mm512_fmadd_ps(_mm512_set1_ps(ps[r][k]), vk, a[r]);
                    }
                    for (int r = 0; r < g; r++) _mm512_store_ps(acc[i + r] + 16 * d, a[r]);
                }
            }
        }
        for (int64_t i = 0; i < qn; i++) {
            float *o = j->out + (b * j->t + q0 + i) * j->heads * hd + h * hd;
            float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
            for (int64_t d = 0; d < hd; d++) o[d] = acc[i][d] * inv;
        }
    }
}

/*
 * AVX2, head_dim a multiple of 8: the AVX-512 scheme above with 8-lane vectors,
 * shaped for AVX2's 16 registers. A tile of KT2 keys is transposed once per
 * query block; the block holds as many queries as fit ACC2 floats of running
 * outputs (a whole list of 100 items for 16-dimension heads), so short
 * sequences transpose their keys once. Scores are taken two queries at a time
 * (eight accumulators, head_dim broadcast FMAs each, no horizontal sum per key)
 * and only over the tile's used vectors (a last tile of 4 keys costs one, not
 * four). The value sum then runs QG2 queries together over 16 dimensions: per
 * key two value loads and four broadcasts feed eight FMAs.
 */
#define KT2  32
#define QG2  4
#define ACC2 8192

/*
 * Two queries against a tile's first nkv * 8 keys: their scores, the online
 * softmax step (running maximum m, sum l, the rescale corr of what was summed
 * before) and the tile's probabilities in ps. Called with a constant nkv, so
 * that every loop over vectors unrolls and the accumulators stay in registers
 * (at -O2 a loop with a variable bound kept them in memory). qc == qa and
 * both == 0 when the block has one query left.
 */
static inline __attribute__((always_inline)) FN_AVX2 void
pair_softmax(const float *kt, const __m256 *vmask, __m256 sc, int64_t hd, const float *qa,
             const float *qc, const int nkv, int both, float *m, float *l, float *corr,
             float (*ps)[KT2])
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 s[2][4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) s[0][v] = s[1][v] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const float *kd = kt + d * KT2;
        const __m256 a = _mm256_set1_ps(qa[d]), c = _mm256_set1_ps(qc[d]);
#pragma GCC unroll 4
        for (int v = 0; v < nkv; v++) {
            const __m256 k = _mm256_load_ps(kd + 8 * v);
            s[0][v] = _mm256_fmadd_ps(a, k, s[0][v]);
            s[1][v] = _mm256_fmadd_ps(c, k, s[1][v]);
        }
    }
#pragma GCC unroll 2
    for (int u = 0; u < 2; u++) {
        if (u == 1 && !both) break;
        __m256 x[4], mx = ninf;
#pragma GCC unroll 4
        for (int v = 0; v < nkv; v++) {
            x[v] = _mm256_blendv_ps(ninf, _mm256_mul_ps(s[u][v], sc), vmask[v]);
            mx = _mm256_max_ps(mx, x[v]);
        }
        const float tmax = fn_v_hmax(mx);
        const float mnew = tmax > m[u] ? tmax : m[u];
        /* the running maximum rarely moves after the first tiles: no exp then */
        corr[u] = mnew == m[u] ? 1.0f : expf(m[u] - mnew);
        const __m256 vm = _mm256_set1_ps(mnew);
        __m256 sum = _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int v = 0; v < nkv; v++) {
            const __m256 p = _mm256_and_ps(fn_v_exp(_mm256_sub_ps(x[v], vm)), vmask[v]);
            sum = _mm256_add_ps(sum, p);
            _mm256_store_ps(ps[u] + 8 * v, p);
        }
        l[u] = l[u] * corr[u] + fn_v_hsum(sum);
        m[u] = mnew;
    }
}

/*
 * kt[d][k] = key k's dimension d for the tile's first n keys (row stride
 * width), zeros up to nkv * 8 keys: eight keys by eight dimensions at a time
 * through the register transpose of unpacks, shuffles and lane permutes.
 */
static FN_AVX2 void transpose_keys(const float *keys, int64_t width, int64_t n, int nkv, int64_t hd,
                                   float *kt)
{
    for (int v = 0; v < nkv; v++) {
        const float *rows[8];
        for (int k = 0; k < 8; k++) rows[k] = 8 * v + k < n ? keys + (8 * v + k) * width : NULL;
        for (int64_t d = 0; d < hd; d += 8) {
            __m256 r[8];
            for (int k = 0; k < 8; k++)
                r[k] = rows[k] ? _mm256_loadu_ps(rows[k] + d) : _mm256_setzero_ps();
            const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
            const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
            const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
            const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = kt + d * KT2 + 8 * v;
            _mm256_store_ps(o + 0 * KT2, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_store_ps(o + 1 * KT2, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_store_ps(o + 2 * KT2, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_store_ps(o + 3 * KT2, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_store_ps(o + 4 * KT2, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_store_ps(o + 5 * KT2, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_store_ps(o + 6 * KT2, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_store_ps(o + 7 * KT2, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
}

static FN_AVX2 void task_avx2(const job *j, int64_t b, int64_t h)
{
    const int32_t *mask = j->mask + b * j->t;
    const float *base = j->qkv + b * j->t * j->width;
    const int64_t hd = j->hd;
    const int64_t qb = ACC2 / hd < j->t ? ACC2 / hd : j->t;
    _Alignas(32) float kt[MAX_HEAD_DIM * KT2], ps[QG2][KT2];
    _Alignas(32) float acc[ACC2];
    float m[ACC2 / 8], l[ACC2 / 8];
    const __m256 sc = _mm256_set1_ps(j->scale);
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    memset(ps, 0, sizeof ps); /* rows past a block's last query are summed, never stored */
    for (int64_t q0 = 0; q0 < j->t; q0 += qb) {
        const int64_t qn = j->t - q0 < qb ? j->t - q0 : qb;
        for (int64_t i = 0; i < qn; i++) m[i] = -INFINITY, l[i] = 0;
        memset(acc, 0, (size_t)(qn * hd) * sizeof(float));
        for (int64_t j0 = 0; j0 < j->t; j0 += KT2) {
            const int64_t n = j->t - j0 < KT2 ? j->t - j0 : KT2;
            const int nkv = (int)((n + 7) / 8);
            uint32_t valid = 0;
            for (int64_t k = 0; k < n; k++)
                if (mask[j0 + k]) valid |= 1u << k;
            if (!valid) continue; /* a tile of padding */
            transpose_keys(base + j0 * j->width + (j->heads + h) * hd, j->width, n, nkv, hd, kt);
            __m256 vmask[4];
            for (int v = 0; v < 4; v++) {
                const __m256i vb = _mm256_set1_epi32((int)(valid >> (8 * v)));
                vmask[v] = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(vb, bit), bit));
            }
            const float *vbase = base + j0 * j->width + (2 * j->heads + h) * hd;
            for (int64_t i = 0; i < qn; i += QG2) {
                const int g = qn - i < QG2 ? (int)(qn - i) : QG2;
                float corr[QG2] = {0};
                for (int r = 0; r < g; r += 2) {
                    const float *qa = base + (q0 + i + r) * j->width + h * hd;
                    const int both = r + 1 < g;
                    const float *qc = both ? qa + j->width : qa;
                    float *mr = m + i + r, *lr = l + i + r, *cr = corr + r;
                    if (nkv == 4) {
                        pair_softmax(kt, vmask, sc, hd, qa, qc, 4, both, mr, lr, cr, ps + r);
                    } else if (nkv == 3) {
                        pair_softmax(kt, vmask, sc, hd, qa, qc, 3, both, mr, lr, cr, ps + r);
                    } else if (nkv == 2) {
                        pair_softmax(kt, vmask, sc, hd, qa, qc, 2, both, mr, lr, cr, ps + r);
                    } else {
                        pair_softmax(kt, vmask, sc, hd, qa, qc, 1, both, mr, lr, cr, ps + r);
                    }
                }
                /* acc = acc * corr + sum_k p_k v_k for the group's queries, 16 dimensions
                   at a time (masked keys have p = 0; rows past g are not stored). */
                float *ar[QG2];
                for (int r = 0; r < QG2; r++) ar[r] = acc + (i + (r < g ? r : 0)) * hd;
                int64_t d = 0;
                for (; d + 16 <= hd; d += 16) {
                    __m256 a[QG2][2];
#pragma GCC unroll 4
                    for (int r = 0; r < QG2; r++) {
                        const __m256 c = _mm256_set1_ps(corr[r]);
                        a[r][0] = _mm256_mul_ps(_mm256_load_ps(ar[r] + d), c);
                        a[r][1] = _mm256_mul_ps(_mm256_load_ps(ar[r] + d + 8), c);
                    }
                    for (int64_t k = 0; k < n; k++) {
                        const float *vk = vbase + k * j->width + d;
                        const __m256 v0 = _mm256_loadu_ps(vk), v1 = _mm256_loadu_ps(vk + 8);
#pragma GCC unroll 4
                        for (int r = 0; r < QG2; r++) {
                            const __m256 p = _mm256_set1_ps(ps[r][k]);
                            a[r][0] = _mm256_fmadd_ps(p, v0, a[r][0]);
                            a[r][1] = _mm256_fmadd_ps(p, v1, a[r][1]);
                        }
                    }
                    for (int r = 0; r < g; r++) {
                        _mm256_store_ps(ar[r] + d, a[r][0]);
                        _mm256_store_ps(ar[r] + d + 8, a[r][1]);
                    }
                }
                if (d < hd) { /* the last 8 dimensions of a head_dim of 8 mod 16 */
                    __m256 a[QG2];
#pragma GCC unroll 4
                    for (int r = 0; r < QG2; r++)
                        a[r] = _mm256_mul_ps(_mm256_load_ps(ar[r] + d), _mm256_set1_ps(corr[r]));
                    for (int64_t k = 0; k < n; k++) {
                        const __m256 v0 = _mm256_loadu_ps(vbase + k * j->width + d);
#pragma GCC unroll 4
                        for (int r = 0; r < QG2; r++)
                            a[r] = _mm256_fmadd_ps(_mm256_set1_ps(ps[r][k]), v0, a[r]);
                    }
                    for (int r = 0; r < g; r++) _mm256_store_ps(ar[r] + d, a[r]);
                }
            }
        }
        for (int64_t i = 0; i < qn; i++) {
            float *o = j->out + (b * j->t + q0 + i) * j->heads * hd + h * hd;
            const __m256 inv = _mm256_set1_ps(l[i] > 0 ? 1.0f / l[i] : 0.0f);
            for (int64_t d = 0; d < hd; d += 8)
                _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_load_ps(acc + i * hd + d), inv));
        }
    }
}

typedef struct pjob {
    const job *j;
    int simd; /* 0 portable, 1 AVX2, 2 AVX-512 */
} pjob;

static void run_task(void *ctx, size_t idx)
{
    const pjob *p = ctx;
    int64_t b = (int64_t)idx / p->j->heads, h = (int64_t)idx % p->j->heads;
    if (p->simd == 2) {
        task_avx512(p->j, b, h);
    } else if (p->simd == 1) {
        task_avx2(p->j, b, h);
    } else {
        task_portable(p->j, b, h);
    }
}

fn_status fn_cpu_attention(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask, int n_heads,
                           fn_tensor *out, fn_error *err)
{
    if (qkv->dtype != FN_F32) return fn_cpu_f32_only("attention", qkv, err);
    fn_cpu *c = fn_cpu_of(b);
    job j = {.qkv = qkv->data,
             .mask = mask->data,
             .out = out->data,
             .t = qkv->ne[1],
             .heads = n_heads,
             .width = qkv->ne[2]};
    j.hd = j.width / (3 * j.heads);
    if (j.hd > MAX_HEAD_DIM)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "attention: head dimension %lld exceeds %d",
                            (long long)j.hd, MAX_HEAD_DIM);
    j.scale = 1.0f / sqrtf((float)j.hd);
    pjob p = {&j, c->avx512 && j.hd % 16 == 0 ? 2 : c->simd && j.hd % 8 == 0 ? 1 : 0};
    fn_pool_run(c->pool, (size_t)(qkv->ne[0] * j.heads), run_task, &p);
    return FN_OK;
}
