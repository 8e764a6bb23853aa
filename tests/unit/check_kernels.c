/*
 * check_kernels.c - every op on every backend against a plain-C double
 * precision reference, on random inputs of awkward sizes (odd lengths, one
 * row, masks with all but one token padded, sequences with none).
 *
 * Backends: the CPU with its AVX2/FMA kernels (when the CPU has them), the CPU
 * with its portable kernels, and CUDA when a GPU is present (skipped with a
 * message otherwise), in f32 and, on CUDA, in bf16 and f16. f32 must agree
 * to 1e-5 and the half types to 1e-2, relative to the largest reference value
 * of the output; references use the inputs rounded to the tested dtype.
 * The training ops (f32 only) are checked the same way; dropout must draw
 * exactly the mask of dropout_mask.h on every backend, and the reference for
 * attention's backward pass is itself checked against central differences
 * of the forward reference.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "test_util.h"
#include "kernels/dropout_mask.h"

#define TOL_F32  1e-5
#define TOL_HALF 1e-2

static fn_backend *backends[4];
static const char *backend_labels[4];
static int n_backends;

static void setup_backends(void)
{
    fn_error err = {0};
    n_backends = 0;
    fn_backend *b;
    /* Every CPU kernel level this machine has, deduplicated by name. */
    static const fn_cpu_simd levels[] = {FN_CPU_BEST, FN_CPU_AVX2, FN_CPU_PORTABLE};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(fn_backend_cpu_new(2, levels[i], &b, &err), FN_OK);
        int dup = 0;
        for (int k = 0; k < n_backends; k++)
            dup |= strcmp(backend_labels[k], fn_backend_name(b)) == 0;
        if (dup) {
            fn_backend_free(b);
            continue;
        }
        backends[n_backends] = b;
        backend_labels[n_backends++] = fn_backend_name(b);
    }
    /* Opened here, in the test's own process: CUDA does not survive a fork. */
    if (fn_backend_cuda_new(0, &b, &err) == FN_OK) {
        backends[n_backends] = b;
        backend_labels[n_backends++] = fn_backend_name(b);
    } else if (fn_test_cuda_expected()) {
        fn_test_cuda_unavailable("kernels on CUDA", err.msg);
    }
}

static void teardown_backends(void)
{
    for (int i = 0; i < n_backends; i++) fn_backend_free(backends[i]);
    n_backends = 0;
}

static uint64_t rng_state = 88172645463325252ull;

static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float *random_floats(size_t n, double scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)((urand() * 2 - 1) * scale);
    return p;
}

/* Rounds host floats to what dtype can hold, so references see the same inputs. */
static void quantize(float *p, size_t n, fn_dtype dt)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == FN_BF16) p[i] = fn_bf16_to_f32(fn_f32_to_bf16(p[i]));
        if (dt == FN_F16) p[i] = fn_f16_to_f32(fn_f32_to_f16(p[i]));
    }
}

/* A tensor on backend b holding host data (copied; floats converted to dt). */
static fn_tensor *upload(fn_backend *b, fn_dtype dt, int ndim, const int64_t *dims,
                         const void *host)
{
    fn_error err = {0};
    fn_tensor *t;
    ck_assert_msg(fn_tensor_new(b, dt, ndim, dims, &t, &err) == FN_OK, "%s", err.msg);
    if (!host) return t;
    size_t n = (size_t)fn_tensor_numel(t);
    if (dt == FN_BF16 || dt == FN_F16) {
        uint16_t *h = malloc(n * sizeof *h);
        for (size_t i = 0; i < n; i++)
            h[i] = dt == FN_BF16 ? fn_f32_to_bf16(((const float *)host)[i])
                                 : fn_f32_to_f16(((const float *)host)[i]);
        ck_assert_int_eq(fn_tensor_write(t, h, n * sizeof *h, &err), FN_OK);
        free(h);
    } else {
        ck_assert_int_eq(fn_tensor_write(t, host, fn_tensor_nbytes(t), &err), FN_OK);
    }
    return t;
}

/* The tensor's values as floats (converted from f16/bf16). */
static float *download(const fn_tensor *t)
{
    fn_error err = {0};
    size_t n = (size_t)fn_tensor_numel(t);
    float *p = malloc(n * sizeof *p);
    if (t->dtype == FN_BF16 || t->dtype == FN_F16) {
        uint16_t *h = malloc(n * sizeof *h);
        ck_assert_msg(fn_tensor_read(t, h, n * sizeof *h, &err) == FN_OK, "%s", err.msg);
        for (size_t i = 0; i < n; i++)
            p[i] = t->dtype == FN_BF16 ? fn_bf16_to_f32(h[i]) : fn_f16_to_f32(h[i]);
        free(h);
    } else {
        ck_assert_msg(fn_tensor_read(t, p, fn_tensor_nbytes(t), &err) == FN_OK, "%s", err.msg);
    }
    return p;
}

/* The float dtypes a backend is tested in: f32 everywhere, bf16 and f16 on CUDA. */
static int n_dtypes(const fn_backend *b)
{
    return fn_backend_device(b) == FN_DEVICE_CUDA ? 3 : 1;
}

static const fn_dtype test_dtypes[3] = {FN_F32, FN_BF16, FN_F16};

static double tol_of(fn_dtype dt)
{
    return dt == FN_F32 ? TOL_F32 : TOL_HALF;
}

/* "cpu-avx2 (2 threads) f32" */
/* Loops over every backend and every dtype it is tested in; DT is the dtype. */
#define FOR_BACKEND_DTYPE                                                                          \
    for (int bi = 0; bi < n_backends; bi++)                                                        \
        for (int di = 0; di < n_dtypes(backends[bi]); di++)
#define DT (test_dtypes[di])

static const char *label(int bi, fn_dtype dt)
{
    static char s[160];
    snprintf(s, sizeof s, "%s %s", backend_labels[bi], fn_dtype_name(dt));
    return s;
}

/* max |got - want| / max |want|; asserts it is within tol. */
/*
 * max |got - want| / max(max |want|, scale) must be within tol. scale is the
 * size of what was summed (sum of |terms|) where cancellation can make the
 * result itself small; 0 where it cannot.
 */
static void expect_close_scaled(const char *what, const char *backend, const float *got,
                                const double *want, size_t n, double tol, double scale)
{
    double maxref = scale > 1e-30 ? scale : 1e-30, maxerr = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(want[i]) > maxref) maxref = fabs(want[i]);
        double e = fabs((double)got[i] - want[i]);
        if (isnan(got[i])) e = INFINITY;
        if (e > maxerr) {
            maxerr = e;
            worst = i;
        }
    }
    ck_assert_msg(maxerr / maxref <= tol,
                  "%s on %s: relative error %.3g at %zu (got %.9g, want %.9g)", what, backend,
                  maxerr / maxref, worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0);
}

static void expect_close(const char *what, const char *backend, const float *got,
                         const double *want, size_t n, double tol)
{
    expect_close_scaled(what, backend, got, want, n, tol, 0);
}

/* ---- gemm ---- */

/* Largest alpha * sum |a b| + beta |c| over the outputs: the size of what gemm sums. */
static double gemm_scale(const float *a, int ta, const float *b, int tb, const float *c0,
                         int64_t batch, int64_t m, int64_t n, int64_t k, int64_t sa, int64_t sb,
                         float alpha, float beta)
{
    double best = 0;
    for (int64_t p = 0; p < batch; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t l = 0; l < k; l++)
                    s += fabs(ta ? a[p * sa + l * m + i] : a[p * sa + i * k + l]) *
                         fabs(tb ? b[p * sb + j * k + l] : b[p * sb + l * n + j]);
                s = fabs(alpha) * s + fabs(beta) * fabs(c0[(p * m + i) * n + j]);
                best = s > best ? s : best;
            }
    return best;
}

static void ref_gemm(const float *a, int ta, const float *b, int tb, double *c, const float *c0,
                     int64_t batch, int64_t m, int64_t n, int64_t k, int64_t sa, int64_t sb,
                     float alpha, float beta)
{
    for (int64_t p = 0; p < batch; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t l = 0; l < k; l++) {
                    double x = ta ? a[p * sa + l * m + i] : a[p * sa + i * k + l];
                    double y = tb ? b[p * sb + j * k + l] : b[p * sb + l * n + j];
                    s += x * y;
                }
                int64_t o = (p * m + i) * n + j;
                c[o] = alpha * s + beta * (double)c0[o];
            }
}

START_TEST(gemm_all_transposes_and_broadcast)
{
    static const int64_t sizes[][4] = {{1, 1, 1, 1},     {1, 7, 5, 3},      {2, 33, 17, 65},
                                       {3, 1, 130, 9},   {1, 64, 384, 384}, {1, 16, 1536, 384},
                                       {1, 5, 37, 1543}, {1, 65, 70, 33}};
    FOR_BACKEND_DTYPE
    {
        fn_backend *be = backends[bi];
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int bcast = 0; bcast < 2; bcast++) {
                        int64_t batch = sizes[s][0], m = sizes[s][1], n = sizes[s][2],
                                k = sizes[s][3];
                        int64_t bb = bcast ? 1 : batch; /* B shared across the batch: weights */
                        int64_t da[3] = {batch, ta ? k : m, ta ? m : k};
                        int64_t db[3] = {bb, tb ? n : k, tb ? k : n};
                        int64_t dc[3] = {batch, m, n};
                        float *ha = random_floats((size_t)(batch * m * k), 1);
                        float *hb = random_floats((size_t)(bb * k * n), 1);
                        float *hc = random_floats((size_t)(batch * m * n), 1);
                        quantize(ha, (size_t)(batch * m * k), DT);
                        quantize(hb, (size_t)(bb * k * n), DT);
                        quantize(hc, (size_t)(batch * m * n), DT);
                        fn_tensor *a = upload(be, DT, 3, da, ha);
                        fn_tensor *b = upload(be, DT, 3, db, hb);
                        fn_tensor *c = upload(be, DT, 3, dc, hc);
                        fn_error err = {0};
                        ck_assert_msg(fn_op_gemm(be, a, ta, b, tb, c, 0.75f, 0.5f, &err) == FN_OK,
                                      "%s", err.msg);
                        double *want = malloc((size_t)(batch * m * n) * sizeof *want);
                        ref_gemm(ha, ta, hb, tb, want, hc, batch, m, n, k, m * k, bcast ? 0 : k * n,
                                 0.75f, 0.5f);
                        float *got = download(c);
                        double scale = gemm_scale(ha, ta, hb, tb, hc, batch, m, n, k, m * k,
                                                  bcast ? 0 : k * n, 0.75f, 0.5f);
                        expect_close_scaled("gemm", label(bi, DT), got, want,
                                            (size_t)(batch * m * n), tol_of(DT), scale);
                        free(ha), free(hb), free(hc), free(want), free(got);
                        fn_tensor_free(a), fn_tensor_free(b), fn_tensor_free(c);
                    }
    }
}
END_TEST

START_TEST(gemm_2d_and_shape_errors)
{
    fn_backend *be = backends[0];
    int64_t da[2] = {4, 3}, db[2] = {5, 3}, dc[2] = {4, 5}, dbad[2] = {4, 4};
    float *ha = random_floats(12, 1), *hb = random_floats(15, 1), zero[20] = {0};
    fn_tensor *a = upload(be, FN_F32, 2, da, ha), *b = upload(be, FN_F32, 2, db, hb);
    fn_tensor *c = upload(be, FN_F32, 2, dc, zero), *bad = upload(be, FN_F32, 2, dbad, NULL);
    fn_error err = {0};
    ck_assert_int_eq(fn_op_gemm(be, a, 0, b, 1, c, 1, 0, &err), FN_OK);
    double want[20];
    ref_gemm(ha, 0, hb, 1, want, zero, 1, 4, 5, 3, 0, 0, 1, 0);
    float *got = download(c);
    expect_close("gemm 2-D", backend_labels[0], got, want, 20, TOL_F32);
    ck_assert_int_eq(fn_op_gemm(be, a, 0, b, 0, c, 1, 0, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "gemm: shapes do not multiply"), "%s", err.msg);
    ck_assert_int_eq(fn_op_gemm(be, a, 0, b, 1, bad, 1, 0, &err), FN_ERR_INVALID);
    free(ha), free(hb), free(got);
    fn_tensor_free(a), fn_tensor_free(b), fn_tensor_free(c), fn_tensor_free(bad);
}
END_TEST

/* ---- bias + activation ---- */

static double ref_act(double x, fn_act act)
{
    if (act == FN_ACT_RELU) return x > 0 ? x : 0;
    if (act == FN_ACT_GELU) return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    return x;
}

START_TEST(bias_act_relu_gelu)
{
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {5, 37}, {33, 384}, {3, 1536}};
    FOR_BACKEND_DTYPE
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int act = 0; act < 3; act++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                int64_t rows = shapes[s][0], cols = shapes[s][1];
                float *hx = random_floats((size_t)(rows * cols), 6);
                float *hb = random_floats((size_t)cols, 1);
                quantize(hx, (size_t)(rows * cols), DT);
                quantize(hb, (size_t)cols, DT);
                fn_tensor *x = upload(backends[bi], DT, 2, shapes[s], hx);
                fn_tensor *b = upload(backends[bi], DT, 1, &cols, hb);
                fn_error err = {0};
                ck_assert_int_eq(
                    fn_op_bias_act(backends[bi], x, with_bias ? b : NULL, (fn_act)act, &err),
                    FN_OK);
                double *want = malloc((size_t)(rows * cols) * sizeof *want);
                for (int64_t i = 0; i < rows * cols; i++)
                    want[i] = ref_act((double)hx[i] + (with_bias ? hb[i % cols] : 0), act);
                float *got = download(x);
                expect_close(act == FN_ACT_GELU   ? "gelu"
                             : act == FN_ACT_RELU ? "relu"
                                                  : "bias",
                             label(bi, DT), got, want, (size_t)(rows * cols), TOL_F32);
                free(hx), free(hb), free(want), free(got);
                fn_tensor_free(x), fn_tensor_free(b);
            }
}
END_TEST

START_TEST(linear_layers)
{
    /* M, K, N: tails of every tile size (8/6 rows, 32/16 columns), one row, one column,
       score heads (a few outputs over many rows, K with and without a tail of 8), and large
       batches whose K spans several blocks of the blocked loop (256 deep) with a tail. */
    static const int64_t shapes[][3] = {
        {1, 1, 1},     {1, 384, 1536}, {16, 384, 384}, {7, 37, 33},     {13, 1536, 384},
        {70, 64, 100}, {3, 5, 1153},   {128, 96, 17},  {300, 70, 45},   {100, 64, 1},
        {33, 37, 3},   {1000, 200, 4}, {260, 600, 40}, {1025, 1536, 56}};
    FOR_BACKEND_DTYPE
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int act = 0; act < 3; act++) {
            int64_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
            int64_t dx[2] = {m, k}, dw[2] = {n, k}, dout[2] = {m, n};
            float *hx = random_floats((size_t)(m * k), 1), *hw = random_floats((size_t)(n * k), 1);
            float *hb = random_floats((size_t)n, 1);
            quantize(hx, (size_t)(m * k), DT), quantize(hw, (size_t)(n * k), DT);
            quantize(hb, (size_t)n, DT);
            fn_backend *be = backends[bi];
            fn_tensor *x = upload(be, DT, 2, dx, hx), *w = upload(be, DT, 2, dw, hw);
            fn_tensor *bias = upload(be, DT, 1, &n, hb), *out = upload(be, DT, 2, dout, NULL);
            fn_error err = {0};
            int with_bias = act != 1;
            ck_assert_msg(fn_op_linear(be, x, w, with_bias ? bias : NULL, (fn_act)act, out, &err) ==
                              FN_OK,
                          "%s", err.msg);
            double *want = malloc((size_t)(m * n) * sizeof *want);
            for (int64_t i = 0; i < m; i++)
                for (int64_t o = 0; o < n; o++) {
                    double sum = with_bias ? hb[o] : 0;
                    for (int64_t l = 0; l < k; l++) sum += (double)hx[i * k + l] * hw[o * k + l];
                    want[i * n + o] = ref_act(sum, (fn_act)act);
                }
            float *got = download(out);
            expect_close("linear", label(bi, DT), got, want, (size_t)(m * n), tol_of(DT));
            /* New weights replace any packed copy of the old ones. */
            for (int64_t i = 0; i < n * k; i++) hw[i] = -hw[i];
            fn_tensor_free(w);
            w = upload(be, DT, 2, dw, hw);
            ck_assert_int_eq(fn_op_linear(be, x, w, NULL, FN_ACT_NONE, out, &err), FN_OK);
            free(got);
            got = download(out);
            for (int64_t i = 0; i < m; i++)
                for (int64_t o = 0; o < n; o++) {
                    double sum = 0;
                    for (int64_t l = 0; l < k; l++) sum += (double)hx[i * k + l] * hw[o * k + l];
                    want[i * n + o] = sum;
                }
            expect_close("linear (rewritten W)", label(bi, DT), got, want, (size_t)(m * n),
                         tol_of(DT));
            free(hx), free(hw), free(hb), free(want), free(got);
            fn_tensor_free(x), fn_tensor_free(w), fn_tensor_free(bias), fn_tensor_free(out);
        }
}
END_TEST

START_TEST(linear_rewrite_same_tensor)
{
    /* Writing into a weight that was already used must drop its packed copy. */
    fn_backend *be = backends[0];
    int64_t dx[2] = {2, 3}, dw[2] = {2, 3}, dout[2] = {2, 2};
    float hx[6] = {1, 2, 3, 4, 5, 6}, w1[6] = {1, 0, 0, 0, 1, 0}, w2[6] = {0, 0, 1, 1, 1, 1};
    fn_tensor *x = upload(be, FN_F32, 2, dx, hx), *w = upload(be, FN_F32, 2, dw, w1);
    fn_tensor *out = upload(be, FN_F32, 2, dout, NULL);
    fn_error err = {0};
    ck_assert_int_eq(fn_op_linear(be, x, w, NULL, FN_ACT_NONE, out, &err), FN_OK);
    float *got = download(out);
    ck_assert(got[0] == 1 && got[1] == 2 && got[2] == 4 && got[3] == 5);
    free(got);
    ck_assert_int_eq(fn_tensor_write(w, w2, sizeof w2, &err), FN_OK);
    ck_assert_int_eq(fn_op_linear(be, x, w, NULL, FN_ACT_NONE, out, &err), FN_OK);
    got = download(out);
    ck_assert(got[0] == 3 && got[1] == 6 && got[2] == 6 && got[3] == 15);
    int64_t dbad[2] = {2, 4};
    fn_tensor *bad = upload(be, FN_F32, 2, dbad, NULL);
    ck_assert_int_eq(fn_op_linear(be, x, bad, NULL, FN_ACT_NONE, out, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "linear: W must be [out, in]"), "%s", err.msg);
    free(got);
    fn_tensor_free(x), fn_tensor_free(w), fn_tensor_free(out), fn_tensor_free(bad);
}
END_TEST

/* GELU's tail: for x far below zero the value is tiny; relative accuracy must hold there too. */
START_TEST(gelu_negative_tail_relative)
{
    for (int bi = 0; bi < n_backends; bi++) {
        int64_t n = 64;
        float hx[64];
        for (int i = 0; i < 64; i++) hx[i] = -0.1f - 0.08f * (float)i; /* down to about -5.1 */
        fn_tensor *x = upload(backends[bi], FN_F32, 1, &n, hx);
        fn_error err = {0};
        ck_assert_int_eq(fn_op_bias_act(backends[bi], x, NULL, FN_ACT_GELU, &err), FN_OK);
        float *got = download(x);
        for (int i = 0; i < 64; i++) {
            double want = ref_act(hx[i], FN_ACT_GELU);
            ck_assert_msg(fabs(got[i] - want) <= 1e-5 * fabs(want), "gelu(%g) on %s: %.9g vs %.9g",
                          hx[i], backend_labels[bi], got[i], want);
        }
        free(got);
        fn_tensor_free(x);
    }
}
END_TEST

/* ---- layernorm, softmax, l2 ---- */

START_TEST(layernorm_with_and_without_residual)
{
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {4, 384}, {33, 385}};
    FOR_BACKEND_DTYPE
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int with_res = 0; with_res < 2; with_res++) {
            int64_t rows = shapes[s][0], d = shapes[s][1], n = rows * d;
            float *hx = random_floats((size_t)n, 3), *hr = random_floats((size_t)n, 3);
            for (int64_t i = 0; i < n; i++) hx[i] += 5.0f; /* a mean far from zero */
            float *hg = random_floats((size_t)d, 1), *hb = random_floats((size_t)d, 1);
            quantize(hx, (size_t)n, DT), quantize(hr, (size_t)n, DT);
            quantize(hg, (size_t)d, DT), quantize(hb, (size_t)d, DT);
            fn_backend *be = backends[bi];
            fn_tensor *x = upload(be, DT, 2, shapes[s], hx);
            fn_tensor *r = upload(be, DT, 2, shapes[s], hr);
            fn_tensor *g = upload(be, DT, 1, &d, hg), *b = upload(be, DT, 1, &d, hb);
            fn_tensor *out = with_res ? r : upload(be, DT, 2, shapes[s], NULL);
            fn_error err = {0};
            ck_assert_int_eq(fn_op_layernorm(be, x, with_res ? r : NULL, g, b, 1e-12f, out, &err),
                             FN_OK);
            double *want = malloc((size_t)n * sizeof *want);
            for (int64_t i = 0; i < rows; i++) {
                double mean = 0, var = 0;
                for (int64_t j = 0; j < d; j++)
                    mean += (double)hx[i * d + j] + (with_res ? hr[i * d + j] : 0);
                mean /= (double)d;
                for (int64_t j = 0; j < d; j++) {
                    double v = (double)hx[i * d + j] + (with_res ? hr[i * d + j] : 0) - mean;
                    var += v * v;
                }
                double rstd = 1 / sqrt(var / (double)d + 1e-12);
                for (int64_t j = 0; j < d; j++) {
                    double v = (double)hx[i * d + j] + (with_res ? hr[i * d + j] : 0);
                    want[i * d + j] = (v - mean) * rstd * hg[j] + hb[j];
                }
            }
            /* A one-wide row normalises to beta exactly. */
            float *got = download(out);
            expect_close("layernorm", label(bi, DT), got, want, (size_t)n, tol_of(DT));
            free(hx), free(hr), free(hg), free(hb), free(want), free(got);
            fn_tensor_free(x), fn_tensor_free(r), fn_tensor_free(g), fn_tensor_free(b);
            if (!with_res) fn_tensor_free(out);
        }
}
END_TEST

START_TEST(softmax_rows)
{
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 100}, {2, 1000}};
    FOR_BACKEND_DTYPE
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], d = shapes[s][1], n = rows * d;
        float *hx = random_floats((size_t)n, 30); /* large logits: needs the max shift */
        quantize(hx, (size_t)n, DT);
        fn_tensor *x = upload(backends[bi], DT, 2, shapes[s], hx);
        fn_error err = {0};
        ck_assert_int_eq(fn_op_softmax(backends[bi], x, &err), FN_OK);
        double *want = malloc((size_t)n * sizeof *want);
        for (int64_t i = 0; i < rows; i++) {
            double m = -INFINITY, sum = 0;
            for (int64_t j = 0; j < d; j++) m = fmax(m, hx[i * d + j]);
            for (int64_t j = 0; j < d; j++) sum += exp(hx[i * d + j] - m);
            for (int64_t j = 0; j < d; j++) want[i * d + j] = exp(hx[i * d + j] - m) / sum;
        }
        float *got = download(x);
        expect_close("softmax", label(bi, DT), got, want, (size_t)n, tol_of(DT));
        free(hx), free(want), free(got);
        fn_tensor_free(x);
    }
}
END_TEST

START_TEST(l2_normalize_rows_and_zero_row)
{
    FOR_BACKEND_DTYPE
    {
        int64_t dims[2] = {4, 37};
        float *hx = random_floats(4 * 37, 2);
        memset(hx + 37, 0, 37 * sizeof *hx); /* row 1 is zero: stays zero */
        quantize(hx, 4 * 37, DT);
        fn_tensor *x = upload(backends[bi], DT, 2, dims, hx);
        fn_error err = {0};
        ck_assert_int_eq(fn_op_l2_normalize(backends[bi], x, &err), FN_OK);
        double want[4 * 37];
        for (int i = 0; i < 4; i++) {
            double s = 0;
            for (int j = 0; j < 37; j++) s += (double)hx[i * 37 + j] * hx[i * 37 + j];
            double nrm = fmax(sqrt(s), 1e-12);
            for (int j = 0; j < 37; j++) want[i * 37 + j] = hx[i * 37 + j] / nrm;
        }
        float *got = download(x);
        expect_close("l2_normalize", label(bi, DT), got, want, 4 * 37, tol_of(DT));
        free(hx), free(got);
        fn_tensor_free(x);
    }
}
END_TEST

/* ---- attention ---- */

static void ref_attention(const float *qkv, const int32_t *mask, int64_t bs, int64_t t, int64_t h,
                          int64_t d, double *out)
{
    int64_t w = 3 * h * d;
    double *s = malloc((size_t)t * sizeof *s);
    for (int64_t b = 0; b < bs; b++)
        for (int64_t hh = 0; hh < h; hh++)
            for (int64_t i = 0; i < t; i++) {
                const float *q = qkv + (b * t + i) * w + hh * d;
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < t; j++) {
                    s[j] = -INFINITY;
                    if (!mask[b * t + j]) continue;
                    const float *k = qkv + (b * t + j) * w + (h + hh) * d;
                    double dot = 0;
                    for (int64_t x = 0; x < d; x++) dot += (double)q[x] * k[x];
                    s[j] = dot / sqrt((double)d);
                    m = fmax(m, s[j]);
                }
                for (int64_t j = 0; j < t; j++) sum += s[j] == -INFINITY ? 0 : exp(s[j] - m);
                double *o = out + (b * t + i) * h * d + hh * d;
                for (int64_t x = 0; x < d; x++) o[x] = 0;
                for (int64_t j = 0; j < t && sum > 0; j++) {
                    if (s[j] == -INFINITY) continue;
                    double p = exp(s[j] - m) / sum;
                    const float *v = qkv + (b * t + j) * w + (2 * h + hh) * d;
                    for (int64_t x = 0; x < d; x++) o[x] += p * v[x];
                }
            }
    free(s);
}

START_TEST(attention_against_reference)
{
    /* B, T, heads, head_dim; head_dim 5 and 12 take the portable path on every backend;
       24 and 40 end in 8 dimensions past 16-wide chunks; T 130 at 64 and T 300 at 40 span
       more than one query block of the AVX2 path (8,192 floats of running outputs). */
    static const int64_t cases[][4] = {
        {1, 1, 1, 8},    {1, 5, 2, 32},  {3, 33, 12, 32},  {2, 70, 3, 16}, {2, 9, 2, 5},
        {1, 130, 4, 64}, {2, 17, 1, 12}, {4, 128, 12, 32}, {2, 45, 2, 24}, {1, 300, 2, 40}};
    FOR_BACKEND_DTYPE
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t bs = cases[c][0], t = cases[c][1], h = cases[c][2], d = cases[c][3];
        int64_t dq[3] = {bs, t, 3 * h * d}, dm[2] = {bs, t}, dout[3] = {bs, t, h * d};
        float *hq = random_floats((size_t)(bs * t * 3 * h * d), 2);
        quantize(hq, (size_t)(bs * t * 3 * h * d), DT);
        int32_t *hm = malloc((size_t)(bs * t) * sizeof *hm);
        for (int64_t b = 0; b < bs; b++)
            for (int64_t i = 0; i < t; i++) {
                /* Sequence 0: a random length; 1: all but one padded; 2: none real. */
                int64_t len = b % 3 == 0   ? 1 + (int64_t)(urand() * (double)t) % t
                              : b % 3 == 1 ? 1
                                           : 0;
                hm[b * t + i] = i < len;
            }
        fn_backend *be = backends[bi];
        fn_tensor *q = upload(be, DT, 3, dq, hq), *m = upload(be, FN_I32, 2, dm, hm);
        fn_tensor *o = upload(be, DT, 3, dout, NULL);
        fn_error err = {0};
        ck_assert_msg(fn_op_attention(be, q, m, (int)h, o, &err) == FN_OK, "%s", err.msg);
        double *want = malloc((size_t)(bs * t * h * d) * sizeof *want);
        ref_attention(hq, hm, bs, t, h, d, want);
        float *got = download(o);
        char what[64];
        snprintf(what, sizeof what, "attention B%lld T%lld H%lld D%lld", (long long)bs,
                 (long long)t, (long long)h, (long long)d);
        expect_close(what, label(bi, DT), got, want, (size_t)(bs * t * h * d), tol_of(DT));
        free(hq), free(hm), free(want), free(got);
        fn_tensor_free(q), fn_tensor_free(m), fn_tensor_free(o);
    }
}
END_TEST

START_TEST(attention_shape_errors)
{
    fn_backend *be = backends[0];
    int64_t dq[3] = {1, 4, 30}, dm[2] = {1, 4}, dout[3] = {1, 4, 10}, dm_bad[2] = {1, 5};
    fn_tensor *q = upload(be, FN_F32, 3, dq, NULL), *m = upload(be, FN_I32, 2, dm, NULL);
    fn_tensor *o = upload(be, FN_F32, 3, dout, NULL), *mb = upload(be, FN_I32, 2, dm_bad, NULL);
    fn_error err = {0};
    ck_assert_int_eq(fn_op_attention(be, q, m, 4, o, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "3 * heads * head_dim"), "%s", err.msg);
    ck_assert_int_eq(fn_op_attention(be, q, mb, 2, o, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "mask must be [B, T]"), "%s", err.msg);
    ck_assert_int_eq(fn_op_attention(be, q, q, 2, o, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "mask must be i32"), "%s", err.msg);
    fn_tensor_free(q), fn_tensor_free(m), fn_tensor_free(o), fn_tensor_free(mb);
}
END_TEST

/* ---- gather, mean pool ---- */

START_TEST(gather_and_accumulate)
{
    FOR_BACKEND_DTYPE
    {
        fn_backend *be = backends[bi];
        int64_t dt[2] = {50, 37}, nid = 9, dout[2] = {9, 37};
        float *ht = random_floats(50 * 37, 1), *ho = random_floats(9 * 37, 1);
        quantize(ht, 50 * 37, DT), quantize(ho, 9 * 37, DT);
        int32_t ids[9] = {0, 49, 3, 3, 17, 0, 48, 1, 25};
        fn_tensor *tab = upload(be, DT, 2, dt, ht), *id = upload(be, FN_I32, 1, &nid, ids);
        fn_tensor *o = upload(be, DT, 2, dout, ho);
        fn_error err = {0};
        for (int acc = 0; acc < 2; acc++) {
            fn_tensor_free(o);
            o = upload(be, DT, 2, dout, ho);
            ck_assert_int_eq(fn_op_gather(be, tab, id, acc, o, &err), FN_OK);
            double want[9 * 37];
            for (int i = 0; i < 9; i++)
                for (int j = 0; j < 37; j++)
                    want[i * 37 + j] = ht[ids[i] * 37 + j] + (acc ? ho[i * 37 + j] : 0);
            float *got = download(o);
            expect_close("gather", label(bi, DT), got, want, 9 * 37, tol_of(DT));
            free(got);
        }
        int32_t bad[9] = {0, 1, 2, 50, 0, 0, 0, 0, 0};
        fn_tensor *idb = upload(be, FN_I32, 1, &nid, bad);
        /* Queued devices report the bad id at the next synchronisation. */
        fn_status st = fn_op_gather(be, tab, idb, 0, o, &err);
        if (st == FN_OK) st = fn_backend_sync(be, &err);
        ck_assert_int_eq(st, FN_ERR_INVALID);
        ck_assert_msg(strstr(err.msg, "id 50 at position 3 is outside [0, 50)"), "%s", err.msg);
        free(ht), free(ho);
        fn_tensor_free(tab), fn_tensor_free(id), fn_tensor_free(o), fn_tensor_free(idb);
    }
}
END_TEST

START_TEST(mean_pool_masked)
{
    FOR_BACKEND_DTYPE
    {
        fn_backend *be = backends[bi];
        int64_t dx[3] = {3, 6, 11}, dm[2] = {3, 6}, dout[2] = {3, 11};
        float *hx = random_floats(3 * 6 * 11, 4);
        quantize(hx, 3 * 6 * 11, DT);
        int32_t hm[18] = {1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        fn_tensor *x = upload(be, DT, 3, dx, hx), *m = upload(be, FN_I32, 2, dm, hm);
        fn_tensor *o = upload(be, DT, 2, dout, NULL);
        fn_error err = {0};
        ck_assert_int_eq(fn_op_mean_pool(be, x, m, o, &err), FN_OK);
        double want[33] = {0};
        for (int b = 0; b < 3; b++) {
            int n = 0;
            for (int t = 0; t < 6; t++) {
                if (!hm[b * 6 + t]) continue;
                n++;
                for (int j = 0; j < 11; j++) want[b * 11 + j] += hx[(b * 6 + t) * 11 + j];
            }
            for (int j = 0; j < 11 && n; j++) want[b * 11 + j] /= n;
        }
        float *got = download(o);
        expect_close("mean_pool", label(bi, DT), got, want, 33, tol_of(DT));
        for (int j = 0; j < 11; j++) ck_assert(got[22 + j] == 0.0f); /* no real token: zeros */
        free(hx), free(got);
        fn_tensor_free(x), fn_tensor_free(m), fn_tensor_free(o);
    }
}
END_TEST

START_TEST(half_precision_conversions)
{
    ck_assert_uint_eq(fn_f32_to_bf16(1.0f), 0x3f80);
    ck_assert(fn_bf16_to_f32(0x3f80) == 1.0f);
    ck_assert_uint_eq(fn_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(fn_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(fn_f32_to_f16(1e6f), 0x7c00);
    ck_assert(fn_f16_to_f32(0x0001) == 5.9604645e-8f);
    for (int i = 0; i < 10000; i++) {
        float x = (float)((urand() * 2 - 1) * 1000);
        ck_assert(fabsf(fn_bf16_to_f32(fn_f32_to_bf16(x)) - x) <= fabsf(x) / 256);
        ck_assert(fabsf(fn_f16_to_f32(fn_f32_to_f16(x)) - x) <= fabsf(x) / 2048 + 1e-7f);
    }
}
END_TEST

/* ---- training ops: copy, act_backward, sum_rows, dropout, adam (f32) ---- */

/*
 * The shapes of the elementwise training tests: one element, odd lengths,
 * tails of 8, and one large enough to be split over the CPU's threads.
 */
static const int64_t train_shapes[][2] = {{1, 1},    {3, 17}, {33, 129},
                                          {1, 1000}, {7, 9},  {300, 257}};
#define N_TRAIN_SHAPES (sizeof train_shapes / sizeof train_shapes[0])

static int bits_equal(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

START_TEST(copy_any_dtype_and_shape)
{
    for (int bi = 0; bi < n_backends; bi++) {
        fn_backend *be = backends[bi];
        int64_t ds[2] = {3, 17}, dd[1] = {51};
        float *hx = random_floats(51, 5);
        fn_tensor *src = upload(be, FN_F32, 2, ds, hx), *dst = upload(be, FN_F32, 1, dd, NULL);
        fn_error err = {0};
        ck_assert_msg(fn_op_copy(be, src, dst, &err) == FN_OK, "%s", err.msg);
        float *got = download(dst);
        ck_assert_msg(bits_equal(got, hx, 51), "copy on %s changed the values", backend_labels[bi]);
        /* Any dtype: the bytes move as they are. */
        int64_t n = 5, d2[2] = {5, 1};
        int32_t ids[5] = {7, -1, 0, 123456789, 42}, back[5];
        fn_tensor *a = upload(be, FN_I32, 1, &n, ids), *b = upload(be, FN_I32, 2, d2, NULL);
        ck_assert_int_eq(fn_op_copy(be, a, b, &err), FN_OK);
        ck_assert_int_eq(fn_tensor_read(b, back, sizeof back, &err), FN_OK);
        ck_assert(memcmp(back, ids, sizeof ids) == 0);
        free(hx), free(got);
        fn_tensor_free(src), fn_tensor_free(dst), fn_tensor_free(a), fn_tensor_free(b);
    }
}
END_TEST

/* act'(x), and GELU's through its erf form: Phi(x) + x phi(x). */
static double ref_act_grad(double x, fn_act act)
{
    if (act == FN_ACT_RELU) return x > 0 ? 1 : 0;
    if (act == FN_ACT_GELU)
        return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    return 1;
}

START_TEST(act_backward_against_reference)
{
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t s = 0; s < N_TRAIN_SHAPES; s++)
            for (int act = 0; act < 3; act++)
                for (int in_place = 0; in_place < 2; in_place++) {
                    fn_backend *be = backends[bi];
                    int64_t n = train_shapes[s][0] * train_shapes[s][1];
                    float *hp = random_floats((size_t)n, 5), *hd = random_floats((size_t)n, 2);
                    if (n > 3) hp[1] = 0.0f, hp[2] = -0.0f; /* ReLU' at 0 is 0, as PyTorch has it */
                    fn_tensor *pre = upload(be, FN_F32, 2, train_shapes[s], hp);
                    fn_tensor *dy = upload(be, FN_F32, 2, train_shapes[s], hd);
                    fn_tensor *dx = in_place ? dy : upload(be, FN_F32, 2, train_shapes[s], NULL);
                    fn_error err = {0};
                    ck_assert_msg(fn_op_act_backward(be, pre, dy, (fn_act)act, dx, &err) == FN_OK,
                                  "%s", err.msg);
                    double *want = malloc((size_t)n * sizeof *want);
                    for (int64_t i = 0; i < n; i++)
                        want[i] = (double)hd[i] * ref_act_grad(hp[i], (fn_act)act);
                    float *got = download(dx);
                    char what[64];
                    snprintf(what, sizeof what, "act_backward %d %lldx%lld%s", act,
                             (long long)train_shapes[s][0], (long long)train_shapes[s][1],
                             in_place ? " in place" : "");
                    expect_close(what, backend_labels[bi], got, want, (size_t)n, TOL_F32);
                    free(hp), free(hd), free(want), free(got);
                    fn_tensor_free(pre), fn_tensor_free(dy);
                    if (!in_place) fn_tensor_free(dx);
                }
}
END_TEST

static double ref_gelu(double x)
{
    return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

/* GELU' (reference and every backend) against a central difference of GELU itself. */
START_TEST(gelu_grad_finite_difference)
{
    int64_t n = 241;
    float hp[241], ones[241];
    for (int i = 0; i < 241; i++) hp[i] = -6.0f + 0.05f * (float)i, ones[i] = 1;
    for (int i = 0; i < 241; i++) {
        double h = 1e-4, fd = (ref_gelu(hp[i] + h) - ref_gelu(hp[i] - h)) / (2 * h);
        ck_assert_msg(fabs(ref_act_grad(hp[i], FN_ACT_GELU) - fd) < 1e-8,
                      "GELU'(%g): %.12g vs %.12g", hp[i], ref_act_grad(hp[i], FN_ACT_GELU), fd);
    }
    for (int bi = 0; bi < n_backends; bi++) {
        fn_backend *be = backends[bi];
        fn_tensor *pre = upload(be, FN_F32, 1, &n, hp), *dy = upload(be, FN_F32, 1, &n, ones);
        fn_error err = {0};
        ck_assert_int_eq(fn_op_act_backward(be, pre, dy, FN_ACT_GELU, dy, &err), FN_OK);
        float *got = download(dy);
        for (int i = 0; i < 241; i++) {
            double h = 1e-4, fd = (ref_gelu(hp[i] + h) - ref_gelu(hp[i] - h)) / (2 * h);
            ck_assert_msg(fabs(got[i] - fd) < 1e-5, "GELU'(%g) on %s: %.9g, difference %.9g", hp[i],
                          backend_labels[bi], got[i], fd);
        }
        free(got);
        fn_tensor_free(pre), fn_tensor_free(dy);
    }
}
END_TEST

START_TEST(sum_rows_beta_0_and_1)
{
    static const int64_t shapes[][2] = {{1, 1},  {3, 17}, {33, 129}, {1000, 3},
                                        {2, 40}, {5, 16}, {300, 257}};
    static const float betas[] = {0, 1, 0.5f};
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t k = 0; k < 3; k++) {
                fn_backend *be = backends[bi];
                int64_t rows = shapes[s][0], cols = shapes[s][1];
                float *hx = random_floats((size_t)(rows * cols), 3);
                float *ho = random_floats((size_t)cols, 3);
                float beta = betas[k];
                fn_tensor *x = upload(be, FN_F32, 2, shapes[s], hx);
                fn_tensor *out = upload(be, FN_F32, 1, &cols, ho);
                fn_error err = {0};
                ck_assert_msg(fn_op_sum_rows(be, x, beta, out, &err) == FN_OK, "%s", err.msg);
                double *want = malloc((size_t)cols * sizeof *want), scale = 0;
                for (int64_t j = 0; j < cols; j++) {
                    double sum = (double)beta * ho[j], mag = fabs(sum);
                    for (int64_t i = 0; i < rows; i++)
                        sum += hx[i * cols + j], mag += fabs(hx[i * cols + j]);
                    want[j] = sum;
                    scale = mag > scale ? mag : scale;
                }
                float *got = download(out);
                char what[64];
                snprintf(what, sizeof what, "sum_rows %lldx%lld beta %g", (long long)rows,
                         (long long)cols, (double)beta);
                expect_close_scaled(what, backend_labels[bi], got, want, (size_t)cols, TOL_F32,
                                    scale);
                free(hx), free(ho), free(want), free(got);
                fn_tensor_free(x), fn_tensor_free(out);
            }
}
END_TEST

START_TEST(sum_rows_3d_and_beta_0_ignores_out)
{
    for (int bi = 0; bi < n_backends; bi++) {
        fn_backend *be = backends[bi];
        int64_t dx[3] = {2, 5, 19}, n = 19;
        float hx[190], ho[19];
        for (int i = 0; i < 190; i++) hx[i] = (float)(i % 7) - 3;
        for (int j = 0; j < 19; j++) ho[j] = NAN;
        fn_tensor *x = upload(be, FN_F32, 3, dx, hx), *out = upload(be, FN_F32, 1, &n, ho);
        fn_error err = {0};
        ck_assert_int_eq(fn_op_sum_rows(be, x, 0, out, &err), FN_OK);
        float *got = download(out);
        for (int j = 0; j < 19; j++) {
            double want = 0;
            for (int r = 0; r < 10; r++) want += hx[r * 19 + j];
            ck_assert_msg(got[j] == (float)want, "sum_rows 3-D on %s: column %d %g, want %g",
                          backend_labels[bi], j, got[j], want);
        }
        free(got);
        fn_tensor_free(x), fn_tensor_free(out);
    }
}
END_TEST

/* The mask every backend must draw: element i dropped (1) or kept (0). */
static unsigned char *ref_dropout_mask(size_t n, float p, uint64_t seed)
{
    unsigned char *drop = malloc(n ? n : 1);
    uint64_t key = fn_dropout_key(seed);
    uint32_t threshold = fn_dropout_threshold(p);
    for (size_t i = 0; i < n; i++) drop[i] = fn_dropout_bits(key, i) < threshold;
    return drop;
}

/* Values in [1, 2): never zero, so a zero output is a dropped element. */
static float *positive_floats(size_t n)
{
    float *p = random_floats(n, 0.5);
    for (size_t i = 0; i < n; i++) p[i] += 1.5f;
    return p;
}

START_TEST(dropout_p0_is_identity)
{
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t s = 0; s < N_TRAIN_SHAPES; s++) {
            int64_t n = train_shapes[s][0] * train_shapes[s][1];
            float *hx = random_floats((size_t)n, 4);
            fn_tensor *x = upload(backends[bi], FN_F32, 2, train_shapes[s], hx);
            fn_error err = {0};
            ck_assert_int_eq(fn_op_dropout(backends[bi], x, 0.0f, 99, &err), FN_OK);
            float *got = download(x);
            ck_assert_msg(bits_equal(got, hx, (size_t)n), "dropout p=0 on %s changed x",
                          backend_labels[bi]);
            free(hx), free(got);
            fn_tensor_free(x);
        }
}
END_TEST

/* p = 0.5 on 100k elements: about half drop, the rest double exactly, the mask is the shared one.
 */
START_TEST(dropout_half_scales_kept_by_two)
{
    int64_t n = 100000;
    unsigned char *drop = ref_dropout_mask((size_t)n, 0.5f, 12345);
    for (int bi = 0; bi < n_backends; bi++) {
        float *hx = positive_floats((size_t)n);
        fn_tensor *x = upload(backends[bi], FN_F32, 1, &n, hx);
        fn_error err = {0};
        ck_assert_int_eq(fn_op_dropout(backends[bi], x, 0.5f, 12345, &err), FN_OK);
        float *got = download(x);
        int64_t dropped = 0;
        for (int64_t i = 0; i < n; i++) {
            dropped += got[i] == 0;
            ck_assert_msg(got[i] == (drop[i] ? 0.0f : 2 * hx[i]),
                          "dropout on %s at %lld: %.9g from %.9g (mask says %s)",
                          backend_labels[bi], (long long)i, got[i], hx[i],
                          drop[i] ? "drop" : "keep");
        }
        double frac = (double)dropped / (double)n; /* binomial sd 0.0016 */
        ck_assert_msg(fabs(frac - 0.5) < 0.01, "dropout on %s dropped %.4f", backend_labels[bi],
                      frac);
        free(hx), free(got);
        fn_tensor_free(x);
    }
    free(drop);
}
END_TEST

START_TEST(dropout_mask_depends_on_seed_only)
{
    int64_t n = 100000, d2[2] = {250, 400};
    float p = 0.3f, scale = (float)(1.0 / (1.0 - (double)p));
    for (int bi = 0; bi < n_backends; bi++) {
        fn_backend *be = backends[bi];
        float *ones = malloc((size_t)n * sizeof *ones);
        for (int64_t i = 0; i < n; i++) ones[i] = 1;
        fn_error err = {0};
        /* The same seed twice, on tensors of different shapes: the same mask. */
        fn_tensor *a = upload(be, FN_F32, 1, &n, ones), *b = upload(be, FN_F32, 2, d2, ones);
        fn_tensor *c = upload(be, FN_F32, 1, &n, ones);
        ck_assert_int_eq(fn_op_dropout(be, a, p, 7, &err), FN_OK);
        ck_assert_int_eq(fn_op_dropout(be, b, p, 7, &err), FN_OK);
        ck_assert_int_eq(fn_op_dropout(be, c, p, 8, &err), FN_OK);
        float *ga = download(a), *gb = download(b), *gc = download(c);
        ck_assert_msg(bits_equal(ga, gb, (size_t)n), "dropout on %s: seed 7 twice differs",
                      backend_labels[bi]);
        int64_t differ = 0, dropped = 0;
        for (int64_t i = 0; i < n; i++) {
            differ += (ga[i] == 0) != (gc[i] == 0);
            dropped += ga[i] == 0;
            ck_assert(ga[i] == 0 || ga[i] == scale);
        }
        /* Independent masks disagree on 2 p (1 - p) = 0.42 of the elements. */
        ck_assert_msg(differ > n / 3, "dropout on %s: seeds 7 and 8 differ at %lld of %lld",
                      backend_labels[bi], (long long)differ, (long long)n);
        ck_assert_msg(fabs((double)dropped / (double)n - p) < 0.01, "dropped %lld",
                      (long long)dropped);
        /* The backward pass: the same seed on the gradient drops what the forward pass dropped. */
        float *hg = random_floats((size_t)n, 3);
        fn_tensor *g = upload(be, FN_F32, 1, &n, hg);
        ck_assert_int_eq(fn_op_dropout(be, g, p, 7, &err), FN_OK);
        float *gg = download(g);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(gg[i] == (ga[i] == 0 ? 0.0f : hg[i] * scale),
                          "dropout backward on %s at %lld: %.9g from %.9g", backend_labels[bi],
                          (long long)i, gg[i], hg[i]);
        free(ones), free(ga), free(gb), free(gc), free(hg), free(gg);
        fn_tensor_free(a), fn_tensor_free(b), fn_tensor_free(c), fn_tensor_free(g);
    }
}
END_TEST

/* Odd sizes and several p: every backend draws the shared mask. */
START_TEST(dropout_matches_shared_mask)
{
    static const float ps[] = {0.1f, 0.5f, 0.9f};
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t s = 0; s < N_TRAIN_SHAPES; s++)
            for (size_t k = 0; k < 3; k++) {
                int64_t n = train_shapes[s][0] * train_shapes[s][1];
                uint64_t seed = 0xdeadbeefcafef00dull + s;
                float *hx = positive_floats((size_t)n);
                unsigned char *drop = ref_dropout_mask((size_t)n, ps[k], seed);
                float scale = (float)(1.0 / (1.0 - (double)ps[k]));
                fn_tensor *x = upload(backends[bi], FN_F32, 2, train_shapes[s], hx);
                fn_error err = {0};
                ck_assert_int_eq(fn_op_dropout(backends[bi], x, ps[k], seed, &err), FN_OK);
                float *got = download(x);
                for (int64_t i = 0; i < n; i++)
                    ck_assert_msg(got[i] == (drop[i] ? 0.0f : hx[i] * scale),
                                  "dropout p=%g on %s at %lld: %.9g", (double)ps[k],
                                  backend_labels[bi], (long long)i, got[i]);
                free(hx), free(drop), free(got);
                fn_tensor_free(x);
            }
}
END_TEST

typedef struct ref_adam_state {
    double *p, *m, *v;
} ref_adam_state;

/* The contract of backend.h, in double. */
static void ref_adam(ref_adam_state *r, const float *g, size_t n, const fn_adam *o)
{
    double bc1 = 1 - pow(o->beta1, (double)o->step), bc2 = 1 - pow(o->beta2, (double)o->step);
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] + (double)o->l2 * r->p[i];
        r->m[i] = o->beta1 * r->m[i] + (1 - (double)o->beta1) * gi;
        r->v[i] = o->beta2 * r->v[i] + (1 - (double)o->beta2) * gi * gi;
        r->p[i] -= o->lr * (r->m[i] / bc1) / (sqrt(r->v[i] / bc2) + o->eps);
    }
}

START_TEST(adam_steps_against_reference)
{
    /* Steps 1 to 5, then a late step whose bias corrections are about 1. */
    static const int64_t steps[] = {1, 2, 3, 4, 5, 1000};
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t s = 0; s < N_TRAIN_SHAPES; s++) {
            fn_backend *be = backends[bi];
            size_t n = (size_t)(train_shapes[s][0] * train_shapes[s][1]);
            float *hp = random_floats(n, 0.5), *zero = calloc(n, sizeof *zero);
            ref_adam_state r = {malloc(n * sizeof(double)), calloc(n, sizeof(double)),
                                calloc(n, sizeof(double))};
            for (size_t i = 0; i < n; i++) r.p[i] = hp[i];
            fn_tensor *p = upload(be, FN_F32, 2, train_shapes[s], hp);
            fn_tensor *m = upload(be, FN_F32, 2, train_shapes[s], zero);
            fn_tensor *v = upload(be, FN_F32, 2, train_shapes[s], zero);
            fn_adam opt = {.lr = 0.05f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .l2 = 0.01f};
            for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
                float *hg = random_floats(n, 1);
                for (size_t i = 0; i < n; i += 5) hg[i] = 0; /* only L2 moves these */
                fn_tensor *g = upload(be, FN_F32, 2, train_shapes[s], hg);
                opt.step = steps[k];
                fn_error err = {0};
                ck_assert_msg(fn_op_adam(be, p, g, m, v, &opt, &err) == FN_OK, "%s", err.msg);
                ref_adam(&r, hg, n, &opt);
                free(hg);
                fn_tensor_free(g);
            }
            float *gp = download(p), *gm = download(m), *gv = download(v);
            char what[64];
            snprintf(what, sizeof what, "adam %lldx%lld", (long long)train_shapes[s][0],
                     (long long)train_shapes[s][1]);
            expect_close(what, backend_labels[bi], gp, r.p, n, TOL_F32);
            expect_close("adam m", backend_labels[bi], gm, r.m, n, TOL_F32);
            expect_close("adam v", backend_labels[bi], gv, r.v, n, TOL_F32);
            free(hp), free(zero), free(r.p), free(r.m), free(r.v), free(gp), free(gm), free(gv);
            fn_tensor_free(p), fn_tensor_free(m), fn_tensor_free(v);
        }
}
END_TEST

/* x W^T against the weights W holds now (read back). */
static void expect_linear_uses(fn_backend *be, const char *what, const fn_tensor *x, fn_tensor *w,
                               fn_tensor *out, int64_t rows, int64_t k, int64_t n)
{
    fn_error err = {0};
    ck_assert_int_eq(fn_op_linear(be, x, w, NULL, FN_ACT_NONE, out, &err), FN_OK);
    float *hx = download(x), *hw = download(w), *got = download(out);
    double *want = malloc((size_t)(rows * n) * sizeof *want);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t o = 0; o < n; o++) {
            double sum = 0;
            for (int64_t l = 0; l < k; l++) sum += (double)hx[i * k + l] * hw[o * k + l];
            want[i * n + o] = sum;
        }
    expect_close(what, fn_backend_name(be), got, want, (size_t)(rows * n), TOL_F32);
    free(hx), free(hw), free(got), free(want);
}

/* Adam and copy change a weight in place: a packed copy of the old one must not be used. */
START_TEST(adam_and_copy_drop_packed_weights)
{
    for (int bi = 0; bi < n_backends; bi++) {
        fn_backend *be = backends[bi];
        int64_t dx[2] = {4, 37}, dw[2] = {9, 37}, dout[2] = {4, 9};
        float *hx = random_floats(4 * 37, 1), *hw = random_floats(9 * 37, 1);
        float *hg = random_floats(9 * 37, 1), *zero = calloc(9 * 37, sizeof *zero);
        fn_tensor *x = upload(be, FN_F32, 2, dx, hx), *w = upload(be, FN_F32, 2, dw, hw);
        fn_tensor *g = upload(be, FN_F32, 2, dw, hg), *m = upload(be, FN_F32, 2, dw, zero);
        fn_tensor *v = upload(be, FN_F32, 2, dw, zero), *out = upload(be, FN_F32, 2, dout, NULL);
        expect_linear_uses(be, "linear before adam", x, w, out, 4, 37, 9);
        fn_adam opt = {.lr = 0.5f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .step = 1};
        fn_error err = {0};
        ck_assert_int_eq(fn_op_adam(be, w, g, m, v, &opt, &err), FN_OK);
        expect_linear_uses(be, "linear after adam", x, w, out, 4, 37, 9);
        ck_assert_int_eq(fn_op_copy(be, g, w, &err), FN_OK);
        expect_linear_uses(be, "linear after copy", x, w, out, 4, 37, 9);
        free(hx), free(hw), free(hg), free(zero);
        fn_tensor_free(x), fn_tensor_free(w), fn_tensor_free(g), fn_tensor_free(m);
        fn_tensor_free(v), fn_tensor_free(out);
    }
}
END_TEST

/* call (which passes the macro's `err`) fails with code and a message containing text. */
#define EXPECT_ERR(call, code, text)                                                               \
    do {                                                                                           \
        fn_error e_ = {0};                                                                         \
        fn_error *err = &e_;                                                                       \
        ck_assert_int_eq((call), (code));                                                          \
        ck_assert_msg(strstr(e_.msg, (text)), "message: %s", e_.msg);                              \
    } while (0)

START_TEST(training_ops_invalid_arguments)
{
    fn_backend *be = backends[0];
    int64_t d34[2] = {3, 4}, d43[2] = {4, 3}, d5 = 5, d4 = 4, d3 = 3;
    float zero[12] = {0};
    fn_tensor *a = upload(be, FN_F32, 2, d34, zero), *b = upload(be, FN_F32, 2, d43, zero);
    fn_tensor *c = upload(be, FN_F32, 2, d34, zero), *e = upload(be, FN_F32, 2, d34, zero);
    fn_tensor *v5 = upload(be, FN_F32, 1, &d5, NULL), *v4 = upload(be, FN_F32, 1, &d4, NULL);
    fn_tensor *v3 = upload(be, FN_F32, 1, &d3, NULL), *i12 = upload(be, FN_I32, 2, d34, NULL);
    fn_tensor *h = upload(be, FN_BF16, 2, d34, NULL);

    EXPECT_ERR(fn_op_copy(be, a, v5, err), FN_ERR_INVALID, "copy: dst must have as many elements");
    EXPECT_ERR(fn_op_copy(be, a, i12, err), FN_ERR_INVALID, "copy: dst must be f32");
    EXPECT_ERR(fn_op_copy(be, NULL, a, err), FN_ERR_INVALID, "copy: src is missing");

    EXPECT_ERR(fn_op_act_backward(be, a, b, FN_ACT_RELU, c, err), FN_ERR_INVALID,
               "act_backward: dy must have pre's shape");
    EXPECT_ERR(fn_op_act_backward(be, a, c, FN_ACT_RELU, b, err), FN_ERR_INVALID,
               "act_backward: dx must have pre's shape");
    EXPECT_ERR(fn_op_act_backward(be, a, c, (fn_act)7, c, err), FN_ERR_INVALID,
               "act_backward: unknown activation 7");
    EXPECT_ERR(fn_op_act_backward(be, h, c, FN_ACT_RELU, c, err), FN_ERR_UNSUPPORTED,
               "act_backward: pre is bf16; only f32");
    EXPECT_ERR(fn_op_act_backward(be, i12, c, FN_ACT_RELU, c, err), FN_ERR_INVALID,
               "act_backward: pre must be f32");
    EXPECT_ERR(fn_op_act_backward(be, a, NULL, FN_ACT_RELU, c, err), FN_ERR_INVALID,
               "act_backward: dy is missing");

    EXPECT_ERR(fn_op_sum_rows(be, a, 0, v3, err), FN_ERR_INVALID,
               "sum_rows: out's length must equal the last dimension of x");
    EXPECT_ERR(fn_op_sum_rows(be, a, 0, c, err), FN_ERR_INVALID, "sum_rows: out must have 1 to 1");
    EXPECT_ERR(fn_op_sum_rows(be, a, NAN, v4, err), FN_ERR_INVALID, "sum_rows: beta is not finite");
    EXPECT_ERR(fn_op_sum_rows(be, h, 0, v4, err), FN_ERR_UNSUPPORTED, "only f32");

    EXPECT_ERR(fn_op_dropout(be, a, 1.0f, 1, err), FN_ERR_INVALID,
               "dropout: p is 1, not in [0, 1)");
    EXPECT_ERR(fn_op_dropout(be, a, -0.1f, 1, err), FN_ERR_INVALID, "not in [0, 1)");
    EXPECT_ERR(fn_op_dropout(be, a, NAN, 1, err), FN_ERR_INVALID, "not in [0, 1)");
    EXPECT_ERR(fn_op_dropout(be, NULL, 0.5f, 1, err), FN_ERR_INVALID, "dropout: x is missing");
    EXPECT_ERR(fn_op_dropout(be, i12, 0.5f, 1, err), FN_ERR_INVALID, "dropout: x must be f32");

    fn_adam ok = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .step = 1};
    fn_adam bad = ok;
    EXPECT_ERR(fn_op_adam(be, a, b, c, e, &ok, err), FN_ERR_INVALID,
               "adam: grad must have param's shape");
    EXPECT_ERR(fn_op_adam(be, a, c, v5, e, &ok, err), FN_ERR_INVALID,
               "adam: m must have param's shape");
    EXPECT_ERR(fn_op_adam(be, a, c, e, b, &ok, err), FN_ERR_INVALID,
               "adam: v must have param's shape");
    EXPECT_ERR(fn_op_adam(be, a, c, e, e, &ok, err), FN_ERR_INVALID, "must be distinct");
    EXPECT_ERR(fn_op_adam(be, a, c, b, NULL, &ok, err), FN_ERR_INVALID, "adam: v is missing");
    EXPECT_ERR(fn_op_adam(be, h, c, e, b, &ok, err), FN_ERR_UNSUPPORTED, "adam: param is bf16");
    fn_tensor *f = upload(be, FN_F32, 2, d34, zero);
    EXPECT_ERR(fn_op_adam(be, a, c, e, f, NULL, err), FN_ERR_INVALID,
               "adam: the hyperparameters are missing");
    bad.step = 0;
    EXPECT_ERR(fn_op_adam(be, a, c, e, f, &bad, err), FN_ERR_INVALID, "adam: step is 0");
    bad = ok, bad.lr = NAN;
    EXPECT_ERR(fn_op_adam(be, a, c, e, f, &bad, err), FN_ERR_INVALID, "adam: lr nan");
    bad = ok, bad.beta1 = 1;
    EXPECT_ERR(fn_op_adam(be, a, c, e, f, &bad, err), FN_ERR_INVALID, "must be in [0, 1)");
    bad = ok, bad.beta2 = -0.5f;
    EXPECT_ERR(fn_op_adam(be, a, c, e, f, &bad, err), FN_ERR_INVALID, "must be in [0, 1)");
    bad = ok, bad.eps = 0;
    EXPECT_ERR(fn_op_adam(be, a, c, e, f, &bad, err), FN_ERR_INVALID, "adam: eps 0");
    bad = ok, bad.l2 = INFINITY;
    EXPECT_ERR(fn_op_adam(be, a, c, e, f, &bad, err), FN_ERR_INVALID, "adam: l2 inf");
    fn_error err = {0};
    ck_assert_msg(fn_op_adam(be, a, c, e, f, &ok, &err) == FN_OK, "%s", err.msg);

    fn_tensor_free(a), fn_tensor_free(b), fn_tensor_free(c), fn_tensor_free(e);
    fn_tensor_free(f), fn_tensor_free(v5), fn_tensor_free(v4), fn_tensor_free(v3);
    fn_tensor_free(i12), fn_tensor_free(h);
}
END_TEST

/* ---- axpy, layernorm backward, attention backward ---- */

START_TEST(axpy_against_reference)
{
    static const float alphas[] = {1, -0.5f, 0};
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t s = 0; s < N_TRAIN_SHAPES; s++)
            for (size_t k = 0; k < 3; k++)
                for (int same = 0; same < 2; same++) {
                    fn_backend *be = backends[bi];
                    int64_t n = train_shapes[s][0] * train_shapes[s][1];
                    float *hx = random_floats((size_t)n, 3), *hy = random_floats((size_t)n, 2);
                    /* y is flat while x is 2-D: only the element counts must agree. */
                    fn_tensor *y = upload(be, FN_F32, 1, &n, hy);
                    fn_tensor *x = same ? y : upload(be, FN_F32, 2, train_shapes[s], hx);
                    fn_error err = {0};
                    ck_assert_msg(fn_op_axpy(be, alphas[k], x, y, &err) == FN_OK, "%s", err.msg);
                    double *want = malloc((size_t)n * sizeof *want);
                    for (int64_t i = 0; i < n; i++)
                        want[i] = (double)hy[i] + (double)alphas[k] * (same ? hy[i] : hx[i]);
                    float *got = download(y);
                    char what[64];
                    snprintf(what, sizeof what, "axpy %g %lldx%lld%s", (double)alphas[k],
                             (long long)train_shapes[s][0], (long long)train_shapes[s][1],
                             same ? " x = y" : "");
                    expect_close(what, backend_labels[bi], got, want, (size_t)n, TOL_F32);
                    free(hx), free(hy), free(want), free(got);
                    if (!same) fn_tensor_free(x);
                    fn_tensor_free(y);
                }
}
END_TEST

/*
 * The gradients of LayerNorm(x + residual) * gamma + beta in double: with
 * xhat = (v - mean) rstd and g = dout gamma, dv = rstd (g - mean(g) - xhat
 * mean(g xhat)); dgamma and dbeta sum dout xhat and dout over rows.
 */
static void ref_layernorm_backward(const float *x, const float *res, const float *gamma, double eps,
                                   const float *dout, int64_t rows, int64_t d, double *dx,
                                   double *dgamma, double *dbeta)
{
    for (int64_t j = 0; j < d; j++) dgamma[j] = dbeta[j] = 0;
    double *xhat = malloc((size_t)d * sizeof *xhat);
    for (int64_t r = 0; r < rows; r++) {
        const int64_t o = r * d;
        double mean = 0, var = 0, sg = 0, sgx = 0;
        for (int64_t j = 0; j < d; j++) mean += (double)x[o + j] + (res ? res[o + j] : 0);
        mean /= (double)d;
        for (int64_t j = 0; j < d; j++) {
            double v = (double)x[o + j] + (res ? res[o + j] : 0) - mean;
            var += v * v;
        }
        double rstd = 1 / sqrt(var / (double)d + eps);
        for (int64_t j = 0; j < d; j++) {
            xhat[j] = ((double)x[o + j] + (res ? res[o + j] : 0) - mean) * rstd;
            double g = (double)dout[o + j] * gamma[j];
            sg += g;
            sgx += g * xhat[j];
            dgamma[j] += (double)dout[o + j] * xhat[j];
            dbeta[j] += dout[o + j];
        }
        sg /= (double)d, sgx /= (double)d;
        for (int64_t j = 0; j < d; j++)
            dx[o + j] = rstd * ((double)dout[o + j] * gamma[j] - sg - xhat[j] * sgx);
    }
    free(xhat);
}

START_TEST(layernorm_backward_against_reference)
{
    /* One row of one (dx is 0), odd widths, a width past 256 threads, rows over the pool. */
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 16}, {33, 385}, {300, 64}};
    const float eps = 1e-5f;
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int with_res = 0; with_res < 2; with_res++)
                /* 0: dx apart, dgamma and dbeta; 1: dx = dout, dgamma only; 2: dbeta only;
                   3: dx = dout, neither. */
                for (int variant = 0; variant < 4; variant++) {
                    fn_backend *be = backends[bi];
                    int64_t rows = shapes[s][0], d = shapes[s][1], n = rows * d;
                    float *hx = random_floats((size_t)n, 3), *hr = random_floats((size_t)n, 3);
                    for (int64_t i = 0; i < n; i++) hx[i] += 5.0f; /* a mean far from zero */
                    float *hg = random_floats((size_t)d, 1), *hd = random_floats((size_t)n, 2);
                    float *nan = malloc((size_t)n * sizeof *nan);
                    for (int64_t i = 0; i < n; i++) nan[i] = NAN; /* outputs are overwritten */
                    fn_tensor *x = upload(be, FN_F32, 2, shapes[s], hx);
                    fn_tensor *r = with_res ? upload(be, FN_F32, 2, shapes[s], hr) : NULL;
                    fn_tensor *g = upload(be, FN_F32, 1, &d, hg);
                    fn_tensor *dout = upload(be, FN_F32, 2, shapes[s], hd);
                    int in_place = variant == 1 || variant == 3;
                    fn_tensor *dx = in_place ? dout : upload(be, FN_F32, 2, shapes[s], nan);
                    fn_tensor *dg = variant <= 1 ? upload(be, FN_F32, 1, &d, nan) : NULL;
                    fn_tensor *db =
                        variant == 0 || variant == 2 ? upload(be, FN_F32, 1, &d, nan) : NULL;
                    fn_error err = {0};
                    ck_assert_msg(
                        fn_op_layernorm_backward(be, x, r, g, eps, dout, dx, dg, db, &err) == FN_OK,
                        "%s", err.msg);
                    double *wdx = malloc((size_t)n * sizeof *wdx);
                    double *wdg = malloc((size_t)d * sizeof *wdg),
                           *wdb = malloc((size_t)d * sizeof *wdb);
                    ref_layernorm_backward(hx, with_res ? hr : NULL, hg, eps, hd, rows, d, wdx, wdg,
                                           wdb);
                    char what[96];
                    snprintf(what, sizeof what, "layernorm_backward %lldx%lld%s variant %d",
                             (long long)rows, (long long)d, with_res ? " residual" : "", variant);
                    float *got = download(dx);
                    expect_close(what, backend_labels[bi], got, wdx, (size_t)n, TOL_F32);
                    free(got);
                    if (dg) {
                        got = download(dg);
                        expect_close("layernorm_backward dgamma", backend_labels[bi], got, wdg,
                                     (size_t)d, TOL_F32);
                        free(got);
                    }
                    if (db) {
                        got = download(db);
                        expect_close("layernorm_backward dbeta", backend_labels[bi], got, wdb,
                                     (size_t)d, TOL_F32);
                        free(got);
                    }
                    free(hx), free(hr), free(hg), free(hd), free(nan);
                    free(wdx), free(wdg), free(wdb);
                    fn_tensor_free(x), fn_tensor_free(r), fn_tensor_free(g), fn_tensor_free(dout);
                    if (!in_place) fn_tensor_free(dx);
                    fn_tensor_free(dg), fn_tensor_free(db);
                }
}
END_TEST

/*
 * The gradients of attention in double, from the full T x T probabilities
 * of every (sequence, head): dv_j = sum_i p_ij dout_i; ds_ij = p_ij (dout_i .
 * v_j - sum_k p_ik dout_i . v_k); dq_i = sum_j ds_ij k_j / sqrt(D);
 * dk_j = sum_i ds_ij q_i / sqrt(D). Masked keys have p = 0; a sequence with
 * no real token has zero output, hence zero gradients.
 */
static void ref_attention_backward(const float *qkv, const int32_t *mask, const float *dout,
                                   int64_t bs, int64_t t, int64_t h, int64_t d, double *dqkv)
{
    int64_t w = 3 * h * d;
    double *p = malloc((size_t)(t * t) * sizeof *p), *dp = malloc((size_t)(t * t) * sizeof *dp);
    double scale = 1 / sqrt((double)d);
    for (int64_t i = 0; i < bs * t * w; i++) dqkv[i] = 0;
    for (int64_t b = 0; b < bs; b++)
        for (int64_t hh = 0; hh < h; hh++) {
            const float *tok = qkv + b * t * w;
            double *dtok = dqkv + b * t * w;
            for (int64_t i = 0; i < t; i++) {
                const float *q = tok + i * w + hh * d;
                const float *go = dout + (b * t + i) * h * d + hh * d;
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < t; j++) {
                    p[i * t + j] = -INFINITY;
                    if (!mask[b * t + j]) continue;
                    const float *k = tok + j * w + (h + hh) * d;
                    double dot = 0;
                    for (int64_t x = 0; x < d; x++) dot += (double)q[x] * k[x];
                    p[i * t + j] = dot * scale;
                    m = fmax(m, p[i * t + j]);
                }
                for (int64_t j = 0; j < t; j++) {
                    p[i * t + j] = p[i * t + j] == -INFINITY ? 0 : exp(p[i * t + j] - m);
                    sum += p[i * t + j];
                }
                double delta = 0;
                for (int64_t j = 0; j < t; j++) {
                    if (sum > 0) p[i * t + j] /= sum;
                    const float *v = tok + j * w + (2 * h + hh) * d;
                    double dot = 0;
                    for (int64_t x = 0; x < d; x++) dot += (double)go[x] * v[x];
                    dp[i * t + j] = dot;
                    delta += p[i * t + j] * dot;
                }
                for (int64_t j = 0; j < t; j++) {
                    double ds = p[i * t + j] * (dp[i * t + j] - delta);
                    const float *k = tok + j * w + (h + hh) * d;
                    for (int64_t x = 0; x < d; x++) {
                        dtok[i * w + hh * d + x] += ds * scale * k[x];
                        dtok[j * w + (h + hh) * d + x] += ds * scale * q[x];
                        dtok[j * w + (2 * h + hh) * d + x] += p[i * t + j] * go[x];
                    }
                }
            }
        }
    free(p), free(dp);
}

/* sum of dout . attention(qkv), through the forward reference. */
static double attention_loss(const float *qkv, const int32_t *mask, const float *dout, int64_t bs,
                             int64_t t, int64_t h, int64_t d)
{
    double *out = malloc((size_t)(bs * t * h * d) * sizeof *out), l = 0;
    ref_attention(qkv, mask, bs, t, h, d, out);
    for (int64_t i = 0; i < bs * t * h * d; i++) l += out[i] * dout[i];
    free(out);
    return l;
}

/*
 * The backward reference against central differences of the forward
 * reference (itself checked against every backend's forward op), on a case
 * small enough to perturb every input: a padded query, a masked key, and a
 * sequence with no real token.
 */
START_TEST(attention_backward_reference_finite_difference)
{
    const int64_t bs = 2, t = 3, h = 2, d = 4, n = bs * t * 3 * h * d;
    const int32_t mask[6] = {1, 1, 0, 0, 0, 0};
    float *qkv = random_floats((size_t)n, 1.5), *dout = random_floats((size_t)(bs * t * h * d), 1);
    double *g = malloc((size_t)n * sizeof *g), gmax = 0;
    ref_attention_backward(qkv, mask, dout, bs, t, h, d, g);
    for (int64_t e = 0; e < n; e++) gmax = fmax(gmax, fabs(g[e]));
    ck_assert(gmax > 0.1);
    for (int64_t e = 0; e < n; e++) {
        float x0 = qkv[e];
        qkv[e] = x0 + 1e-3f;
        double lp = attention_loss(qkv, mask, dout, bs, t, h, d), xp = qkv[e];
        qkv[e] = x0 - 1e-3f;
        double lm = attention_loss(qkv, mask, dout, bs, t, h, d), xm = qkv[e];
        qkv[e] = x0;
        /* The perturbation actually applied: x +- 1e-3 rounded to f32. */
        double fd = (lp - lm) / (xp - xm);
        ck_assert_msg(fabs(fd - g[e]) <= 1e-5 * gmax,
                      "d/dqkv[%lld]: reference %.9g, difference %.9g", (long long)e, g[e], fd);
    }
    free(qkv), free(dout), free(g);
}
END_TEST

/* dqkv's query, key or value part (which 0, 1, 2) as a contiguous array. */
static void qkv_part(const float *src, const double *srcd, int64_t rows, int64_t hd, int which,
                     float *out, double *outd)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t x = 0; x < hd; x++) {
            if (src) out[r * hd + x] = src[r * 3 * hd + which * hd + x];
            if (srcd) outd[r * hd + x] = srcd[r * 3 * hd + which * hd + x];
        }
}

START_TEST(attention_backward_against_reference)
{
    /* B, T, heads, head_dim: one token, odd lengths, one and four heads, several key tiles. */
    static const int64_t cases[][4] = {{1, 1, 1, 8},   {3, 1, 4, 16}, {3, 7, 1, 16},  {3, 7, 4, 8},
                                       {3, 37, 4, 16}, {3, 37, 1, 8}, {2, 70, 2, 32}, {2, 9, 2, 5}};
    for (int bi = 0; bi < n_backends; bi++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            int64_t bs = cases[c][0], t = cases[c][1], h = cases[c][2], d = cases[c][3];
            int64_t dq[3] = {bs, t, 3 * h * d}, dm[2] = {bs, t}, dd[3] = {bs, t, h * d};
            int64_t n = bs * t * 3 * h * d, no = bs * t * h * d;
            float *hq = random_floats((size_t)n, 2), *hd = random_floats((size_t)no, 1);
            float *nan = malloc((size_t)n * sizeof *nan);
            for (int64_t i = 0; i < n; i++) nan[i] = NAN; /* dqkv is overwritten */
            int32_t *hm = malloc((size_t)(bs * t) * sizeof *hm);
            for (int64_t b = 0; b < bs; b++) {
                /* Sequence 0: a random length; 1: all but one padded; 2: none real. */
                int64_t len = b % 3 == 0   ? 1 + (int64_t)(urand() * (double)t) % t
                              : b % 3 == 1 ? 1
                                           : 0;
                for (int64_t i = 0; i < t; i++) hm[b * t + i] = i < len;
            }
            fn_backend *be = backends[bi];
            fn_tensor *q = upload(be, FN_F32, 3, dq, hq), *m = upload(be, FN_I32, 2, dm, hm);
            fn_tensor *go = upload(be, FN_F32, 3, dd, hd), *dqkv = upload(be, FN_F32, 3, dq, nan);
            fn_error err = {0};
            ck_assert_msg(fn_op_attention_backward(be, q, m, (int)h, go, dqkv, &err) == FN_OK, "%s",
                          err.msg);
            double *want = malloc((size_t)n * sizeof *want);
            ref_attention_backward(hq, hm, hd, bs, t, h, d, want);
            float *got = download(dqkv);
            /* Exact zeros where the forward does not depend on the input at all. */
            for (int64_t b = 0; b < bs; b++)
                for (int64_t i = 0; i < t; i++)
                    for (int64_t x = 0; x < 3 * h * d; x++) {
                        int none = b % 3 == 2, masked_kv = !hm[b * t + i] && x >= h * d;
                        if (none || masked_kv)
                            ck_assert_msg(got[(b * t + i) * 3 * h * d + x] == 0.0f,
                                          "attention_backward on %s: dqkv[%lld, %lld, %lld] is %g",
                                          backend_labels[bi], (long long)b, (long long)i,
                                          (long long)x, got[(b * t + i) * 3 * h * d + x]);
                    }
            static const char *parts[3] = {"dq", "dk", "dv"};
            float *gp = malloc((size_t)no * sizeof *gp);
            double *wp = malloc((size_t)no * sizeof *wp);
            for (int which = 0; which < 3; which++) {
                qkv_part(got, want, bs * t, h * d, which, gp, wp);
                char what[96];
                snprintf(what, sizeof what, "attention_backward %s B%lld T%lld H%lld D%lld",
                         parts[which], (long long)bs, (long long)t, (long long)h, (long long)d);
                expect_close(what, backend_labels[bi], gp, wp, (size_t)no, TOL_F32);
            }
            free(hq), free(hd), free(nan), free(hm), free(want), free(got), free(gp), free(wp);
            fn_tensor_free(q), fn_tensor_free(m), fn_tensor_free(go), fn_tensor_free(dqkv);
        }
}
END_TEST

START_TEST(backward_ops_invalid_arguments)
{
    fn_backend *be = backends[0];
    int64_t d34[2] = {3, 4}, d43[2] = {4, 3}, d4 = 4, d3 = 3, d5 = 5;
    int64_t dq[3] = {1, 4, 30}, dq2[3] = {1, 4, 31}, dm[2] = {1, 4}, dm5[2] = {1, 5};
    int64_t dg[3] = {1, 4, 10}, dg9[3] = {1, 4, 9};
    fn_tensor *a = upload(be, FN_F32, 2, d34, NULL), *b = upload(be, FN_F32, 2, d43, NULL);
    fn_tensor *c = upload(be, FN_F32, 2, d34, NULL), *i12 = upload(be, FN_I32, 2, d34, NULL);
    fn_tensor *h = upload(be, FN_BF16, 2, d34, NULL), *v4 = upload(be, FN_F32, 1, &d4, NULL);
    fn_tensor *v3 = upload(be, FN_F32, 1, &d3, NULL), *v5 = upload(be, FN_F32, 1, &d5, NULL);
    fn_tensor *w4 = upload(be, FN_F32, 1, &d4, NULL);
    fn_tensor *q = upload(be, FN_F32, 3, dq, NULL), *q2 = upload(be, FN_F32, 3, dq2, NULL);
    fn_tensor *qh = upload(be, FN_BF16, 3, dq, NULL), *dqkv = upload(be, FN_F32, 3, dq, NULL);
    fn_tensor *m = upload(be, FN_I32, 2, dm, NULL), *m5 = upload(be, FN_I32, 2, dm5, NULL);
    fn_tensor *mf = upload(be, FN_F32, 2, dm, NULL);
    fn_tensor *go = upload(be, FN_F32, 3, dg, NULL), *go9 = upload(be, FN_F32, 3, dg9, NULL);

    EXPECT_ERR(fn_op_axpy(be, 1, a, v5, err), FN_ERR_INVALID,
               "axpy: y must have as many elements as x");
    EXPECT_ERR(fn_op_axpy(be, 1, i12, a, err), FN_ERR_INVALID, "axpy: x must be f32");
    EXPECT_ERR(fn_op_axpy(be, 1, a, i12, err), FN_ERR_INVALID, "axpy: y must be f32");
    EXPECT_ERR(fn_op_axpy(be, 1, h, a, err), FN_ERR_UNSUPPORTED, "axpy: x is bf16; only f32");
    EXPECT_ERR(fn_op_axpy(be, NAN, a, c, err), FN_ERR_INVALID, "axpy: alpha is not finite");
    EXPECT_ERR(fn_op_axpy(be, 1, a, NULL, err), FN_ERR_INVALID, "axpy: y is missing");

    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v4, 1e-5f, b, c, v4, w4, err), FN_ERR_INVALID,
               "layernorm_backward: dout must have x's shape");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v4, 1e-5f, c, b, v4, w4, err), FN_ERR_INVALID,
               "layernorm_backward: dx must have x's shape");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, b, v4, 1e-5f, c, c, NULL, NULL, err), FN_ERR_INVALID,
               "layernorm_backward: residual must have x's shape");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v3, 1e-5f, c, c, NULL, NULL, err),
               FN_ERR_INVALID, "layernorm_backward: gamma must match the last dimension");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v4, 1e-5f, c, c, v3, NULL, err),
               FN_ERR_INVALID, "layernorm_backward: dgamma must match the last dimension");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v4, 1e-5f, c, c, NULL, v5, err),
               FN_ERR_INVALID, "layernorm_backward: dbeta must match the last dimension");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v4, 1e-5f, c, c, w4, w4, err), FN_ERR_INVALID,
               "dgamma and dbeta must be distinct");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v4, 0, c, c, NULL, NULL, err), FN_ERR_INVALID,
               "layernorm_backward: eps must be positive");
    EXPECT_ERR(fn_op_layernorm_backward(be, h, NULL, v4, 1e-5f, c, c, NULL, NULL, err),
               FN_ERR_UNSUPPORTED, "layernorm_backward: x is bf16; only f32");
    EXPECT_ERR(fn_op_layernorm_backward(be, a, NULL, v4, 1e-5f, NULL, c, NULL, NULL, err),
               FN_ERR_INVALID, "layernorm_backward: dout is missing");

    EXPECT_ERR(fn_op_attention_backward(be, q, m, 4, go, dqkv, err), FN_ERR_INVALID,
               "attention_backward: qkv's last dimension must be 3 * heads * head_dim");
    EXPECT_ERR(fn_op_attention_backward(be, q, m5, 2, go, dqkv, err), FN_ERR_INVALID,
               "attention_backward: mask must be [B, T]");
    EXPECT_ERR(fn_op_attention_backward(be, q, mf, 2, go, dqkv, err), FN_ERR_INVALID,
               "attention_backward: mask must be i32");
    EXPECT_ERR(fn_op_attention_backward(be, q, m, 2, go9, dqkv, err), FN_ERR_INVALID,
               "attention_backward: dout must be [B, T, heads * head_dim]");
    EXPECT_ERR(fn_op_attention_backward(be, q, m, 2, go, q2, err), FN_ERR_INVALID,
               "attention_backward: dqkv must have qkv's shape");
    EXPECT_ERR(fn_op_attention_backward(be, q, m, 2, go, q, err), FN_ERR_INVALID,
               "attention_backward: dqkv must be distinct from qkv and dout");
    EXPECT_ERR(fn_op_attention_backward(be, qh, m, 2, go, dqkv, err), FN_ERR_UNSUPPORTED,
               "attention_backward: qkv is bf16; only f32");
    EXPECT_ERR(fn_op_attention_backward(be, q, m, 0, go, dqkv, err), FN_ERR_INVALID,
               "3 * heads * head_dim");

    fn_tensor_free(a), fn_tensor_free(b), fn_tensor_free(c), fn_tensor_free(i12);
    fn_tensor_free(h), fn_tensor_free(v4), fn_tensor_free(v3), fn_tensor_free(v5);
    fn_tensor_free(w4), fn_tensor_free(q), fn_tensor_free(q2), fn_tensor_free(qh);
    fn_tensor_free(dqkv), fn_tensor_free(m), fn_tensor_free(m5), fn_tensor_free(mf);
    fn_tensor_free(go), fn_tensor_free(go9);
}
END_TEST

Suite *kernels_suite(void)
{
    /* Said without opening CUDA: this process forks the tests, and CUDA does not survive that. */
    const char *only = getenv("CK_RUN_SUITE"); /* quiet when other suites run */
    if (!fn_test_cuda_expected() && (!only || strcmp(only, "kernels") == 0))
        fprintf(stderr, "kernels: CUDA backend skipped: no NVIDIA driver on this machine\n");
    Suite *s = suite_create("kernels");
    TCase *t = tcase_create("ops");
    tcase_add_checked_fixture(t, setup_backends, teardown_backends);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, gemm_all_transposes_and_broadcast);
    tcase_add_test(t, gemm_2d_and_shape_errors);
    tcase_add_test(t, linear_layers);
    tcase_add_test(t, linear_rewrite_same_tensor);
    tcase_add_test(t, bias_act_relu_gelu);
    tcase_add_test(t, gelu_negative_tail_relative);
    tcase_add_test(t, layernorm_with_and_without_residual);
    tcase_add_test(t, softmax_rows);
    tcase_add_test(t, l2_normalize_rows_and_zero_row);
    tcase_add_test(t, attention_against_reference);
    tcase_add_test(t, attention_shape_errors);
    tcase_add_test(t, gather_and_accumulate);
    tcase_add_test(t, mean_pool_masked);
    suite_add_tcase(s, t);
    t = tcase_create("training");
    tcase_add_checked_fixture(t, setup_backends, teardown_backends);
    tcase_set_timeout(t, 300);
    tcase_add_test(t, training_ops_invalid_arguments);
    tcase_add_test(t, copy_any_dtype_and_shape);
    tcase_add_test(t, act_backward_against_reference);
    tcase_add_test(t, gelu_grad_finite_difference);
    tcase_add_test(t, sum_rows_beta_0_and_1);
    tcase_add_test(t, sum_rows_3d_and_beta_0_ignores_out);
    tcase_add_test(t, dropout_p0_is_identity);
    tcase_add_test(t, dropout_half_scales_kept_by_two);
    tcase_add_test(t, dropout_mask_depends_on_seed_only);
    tcase_add_test(t, dropout_matches_shared_mask);
    tcase_add_test(t, adam_steps_against_reference);
    tcase_add_test(t, adam_and_copy_drop_packed_weights);
    tcase_add_test(t, backward_ops_invalid_arguments);
    tcase_add_test(t, axpy_against_reference);
    tcase_add_test(t, layernorm_backward_against_reference);
    tcase_add_test(t, attention_backward_reference_finite_difference);
    tcase_add_test(t, attention_backward_against_reference);
    suite_add_tcase(s, t);
    t = tcase_create("tensor");
    tcase_add_test(t, half_precision_conversions);
    suite_add_tcase(s, t);
    return s;
}
