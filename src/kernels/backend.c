/*
 * backend.c - the checks every op shares (dtypes, devices, shapes), then the
 * backend's function. Backends can trust what reaches them.
 */
#include "backend_impl.h"

#include <math.h>
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "dropout_mask.h"

static void shape_str(const fn_tensor *t, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "%s[", fn_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, i ? ",%lld" : "%lld", (long long)t->ne[i]);
    if (o < cap) snprintf(out + o, cap - o, "]");
}

static fn_status bad_shape(fn_error *err, const char *op, const char *what, const fn_tensor *t)
{
    char s[96];
    shape_str(t, s, sizeof s);
    return fn_error_set(err, FN_ERR_INVALID, "%s: %s (got %s)", op, what, s);
}

/* Same device as the backend, the expected dtype, a plausible rank. */
static fn_status check(fn_backend *b, const char *op, const char *name, const fn_tensor *t,
                       fn_dtype dt, int min_dims, int max_dims, fn_error *err)
{
    if (!t || !t->data) return fn_error_set(err, FN_ERR_INVALID, "%s: %s is missing", op, name);
    if (t->device != b->device)
        return fn_error_set(err, FN_ERR_INVALID,
                            "%s: %s lives on another device than the %s backend", op, name,
                            b->name);
    if (t->dtype != dt) {
        char what[64];
        snprintf(what, sizeof what, "%s must be %s", name, fn_dtype_name(dt));
        return bad_shape(err, op, what, t);
    }
    if (t->ndim < min_dims || t->ndim > max_dims) {
        char what[64];
        snprintf(what, sizeof what, "%s must have %d to %d dimensions", name, min_dims, max_dims);
        return bad_shape(err, op, what, t);
    }
    return FN_OK;
}

/*
 * Per-op time accounting, on when FUNNEL_OP_PROFILE is set: calls and
 * wall time per op, printed to stderr when the backend is freed. On devices
 * that queue work the times are those of queueing unless the program syncs.
 */
enum {
    OP_GEMM,
    OP_LINEAR,
    OP_BIAS_ACT,
    OP_LAYERNORM,
    OP_SOFTMAX,
    OP_ATTENTION,
    OP_GATHER,
    OP_MEAN_POOL,
    OP_L2_NORMALIZE,
    OP_COPY,
    OP_ACT_BACKWARD,
    OP_SUM_ROWS,
    OP_DROPOUT,
    OP_ADAM,
    OP_AXPY,
    OP_LAYERNORM_BACKWARD,
    OP_ATTENTION_BACKWARD,
    OP_COUNT
};
_Static_assert(OP_COUNT <= FN_PROFILED_OPS, "raise FN_PROFILED_OPS");
static const char *op_names[OP_COUNT] = {
    [OP_GEMM] = "gemm",
    [OP_LINEAR] = "linear",
    [OP_BIAS_ACT] = "bias_act",
    [OP_LAYERNORM] = "layernorm",
    [OP_SOFTMAX] = "softmax",
    [OP_ATTENTION] = "attention",
    [OP_GATHER] = "gather",
    [OP_MEAN_POOL] = "mean_pool",
    [OP_L2_NORMALIZE] = "l2_normalize",
    [OP_COPY] = "copy",
    [OP_ACT_BACKWARD] = "act_backward",
    [OP_SUM_ROWS] = "sum_rows",
    [OP_DROPOUT] = "dropout",
    [OP_ADAM] = "adam",
    [OP_AXPY] = "axpy",
    [OP_LAYERNORM_BACKWARD] = "layernorm_backward",
    [OP_ATTENTION_BACKWARD] = "attention_backward",
};

static int profiling = -1;

static int profile_on(void)
{
    if (profiling < 0) profiling = getenv("FUNNEL_OP_PROFILE") != NULL;
    return profiling;
}

#define PROFILED(b, op, call)                                                                      \
    do {                                                                                           \
        if (!profile_on()) return call;                                                            \
        uint64_t t0_ = fn_now_ns();                                                                \
        fn_status st_ = call;                                                                      \
        (b)->prof_ns[op] += fn_now_ns() - t0_;                                                     \
        (b)->prof_calls[op]++;                                                                     \
        return st_;                                                                                \
    } while (0)

static void profile_dump(const fn_backend *b)
{
    uint64_t total = 0;
    for (int i = 0; i < OP_COUNT; i++) total += b->prof_ns[i];
    if (!total) return;
    fprintf(stderr, "op profile of %s:\n", b->name);
    for (int i = 0; i < OP_COUNT; i++)
        if (b->prof_calls[i])
            fprintf(stderr, "  %-18s %9llu calls %10.3f ms %5.1f%%\n", op_names[i],
                    (unsigned long long)b->prof_calls[i], (double)b->prof_ns[i] / 1e6,
                    100.0 * (double)b->prof_ns[i] / (double)total);
}

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        fn_status st_ = (expr);                                                                    \
        if (st_ != FN_OK) return st_;                                                              \
    } while (0)

void fn_backend_free(fn_backend *b)
{
    if (!b) return;
    if (profile_on()) profile_dump(b);
    b->ops->destroy(b);
}

const char *fn_backend_name(const fn_backend *b)
{
    return b->name;
}

fn_device fn_backend_device(const fn_backend *b)
{
    return b->device;
}

fn_status fn_backend_sync(fn_backend *b, fn_error *err)
{
    return b->ops->sync(b, err);
}

struct fn_graph {
    fn_backend *b;
    void *impl;
};

fn_status fn_backend_graph_begin(fn_backend *b, fn_error *err)
{
    if (!b->ops->graph_begin)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: no graphs", b->name);
    return b->ops->graph_begin(b, err);
}

fn_status fn_backend_graph_end(fn_backend *b, fn_graph **out, fn_error *err)
{
    *out = NULL;
    if (!b->ops->graph_end) return fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: no graphs", b->name);
    void *impl = NULL;
    fn_status st = b->ops->graph_end(b, &impl, err);
    if (st != FN_OK) return st;
    fn_graph *g = malloc(sizeof *g);
    if (!g) {
        b->ops->graph_free(b, impl);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    g->b = b;
    g->impl = impl;
    *out = g;
    return FN_OK;
}

fn_status fn_graph_launch(fn_graph *g, fn_error *err)
{
    return g->b->ops->graph_launch(g->b, g->impl, err);
}

void fn_graph_free(fn_graph *g)
{
    if (!g) return;
    g->b->ops->graph_free(g->b, g->impl);
    free(g);
}

fn_status fn_tensor_new(fn_backend *b, fn_dtype dt, int ndim, const int64_t *dims, fn_tensor **out,
                        fn_error *err)
{
    if (ndim < 1 || ndim > FN_MAX_DIMS)
        return fn_error_set(err, FN_ERR_INVALID, "tensor: %d dimensions (1 to %d allowed)", ndim,
                            FN_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (dims[i] < 1)
            return fn_error_set(err, FN_ERR_INVALID, "tensor: dimension %d is %lld", i,
                                (long long)dims[i]);
    fn_tensor *t = calloc(1, sizeof *t);
    if (!t) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    *t = fn_tensor_host(dt, ndim, dims, NULL);
    t->device = b->device;
    t->backend = b;
    t->owns = 1;
    fn_status st = b->ops->alloc(b, t, err);
    if (st != FN_OK) {
        free(t);
        return st;
    }
    *out = t;
    return FN_OK;
}

/* New contents: whatever a backend derived from the old ones (a packed weight) is stale. */
static void drop_aux(fn_tensor *t)
{
    if (t->aux && t->backend && t->backend->ops->drop_aux) t->backend->ops->drop_aux(t->backend, t);
}

void fn_tensor_free(fn_tensor *t)
{
    if (!t) return;
    drop_aux(t);
    if (t->backend && t->owns) t->backend->ops->release(t->backend, t);
    free(t);
}

fn_status fn_tensor_write(fn_tensor *t, const void *host, size_t nbytes, fn_error *err)
{
    if (nbytes != fn_tensor_nbytes(t))
        return fn_error_set(err, FN_ERR_INVALID, "tensor write: %zu bytes for a tensor of %zu",
                            nbytes, fn_tensor_nbytes(t));
    drop_aux(t);
    if (t->device == FN_DEVICE_CPU) {
        memcpy(t->data, host, nbytes);
        return FN_OK;
    }
    if (!t->backend)
        return fn_error_set(err, FN_ERR_INVALID, "tensor write: a device tensor without a backend");
    return t->backend->ops->write(t->backend, t, host, nbytes, err);
}

fn_status fn_tensor_read(const fn_tensor *t, void *host, size_t nbytes, fn_error *err)
{
    if (nbytes != fn_tensor_nbytes(t))
        return fn_error_set(err, FN_ERR_INVALID, "tensor read: %zu bytes for a tensor of %zu",
                            nbytes, fn_tensor_nbytes(t));
    if (t->device == FN_DEVICE_CPU) {
        memcpy(host, t->data, nbytes);
        return FN_OK;
    }
    if (!t->backend)
        return fn_error_set(err, FN_ERR_INVALID, "tensor read: a device tensor without a backend");
    return t->backend->ops->read(t->backend, t, host, nbytes, err);
}

/* The batch count and matrix dims of a 2-D or 3-D gemm operand. */
static void mat_dims(const fn_tensor *t, int64_t *batch, int64_t *rows, int64_t *cols)
{
    *batch = t->ndim == 3 ? t->ne[0] : 1;
    *rows = t->ne[t->ndim - 2];
    *cols = t->ne[t->ndim - 1];
}

fn_status fn_op_gemm(fn_backend *b, const fn_tensor *a, int trans_a, const fn_tensor *bm,
                     int trans_b, fn_tensor *c, float alpha, float beta, fn_error *err)
{
    fn_dtype dt = c ? c->dtype : FN_F32;
    CHECK(check(b, "gemm", "C", c, dt, 2, 3, err));
    CHECK(check(b, "gemm", "A", a, dt, 2, 3, err));
    CHECK(check(b, "gemm", "B", bm, dt, 2, 3, err));
    int64_t ba, ra, ca, bb, rb, cb, bc, rc, cc;
    mat_dims(a, &ba, &ra, &ca);
    mat_dims(bm, &bb, &rb, &cb);
    mat_dims(c, &bc, &rc, &cc);
    int64_t m = trans_a ? ca : ra, k = trans_a ? ra : ca;
    int64_t kb = trans_b ? cb : rb, n = trans_b ? rb : cb;
    if (k != kb || m != rc || n != cc) {
        char sa[96], sb[96], sc[96];
        shape_str(a, sa, sizeof sa);
        shape_str(bm, sb, sizeof sb);
        shape_str(c, sc, sizeof sc);
        return fn_error_set(err, FN_ERR_INVALID,
                            "gemm: shapes do not multiply: A %s%s x B %s%s -> C %s", sa,
                            trans_a ? "^T" : "", sb, trans_b ? "^T" : "", sc);
    }
    int64_t batch = ba > bb ? ba : bb;
    if (bc > batch) batch = bc;
    if ((ba != 1 && ba != batch) || (bb != 1 && bb != batch) || bc != batch)
        return fn_error_set(err, FN_ERR_INVALID,
                            "gemm: batch sizes %lld, %lld -> %lld do not broadcast", (long long)ba,
                            (long long)bb, (long long)bc);
    fn_gemm_args g = {.a = a,
                      .b = bm,
                      .c = c,
                      .trans_a = trans_a,
                      .trans_b = trans_b,
                      .batch = batch,
                      .m = m,
                      .n = n,
                      .k = k,
                      .stride_a = ba == 1 ? 0 : ra * ca,
                      .stride_b = bb == 1 ? 0 : rb * cb,
                      .stride_c = rc * cc,
                      .alpha = alpha,
                      .beta = beta};
    PROFILED(b, OP_GEMM, b->ops->gemm(b, &g, err));
}

fn_status fn_op_linear(fn_backend *b, const fn_tensor *x, fn_tensor *w, const fn_tensor *bias,
                       fn_act act, fn_tensor *out, fn_error *err)
{
    fn_dtype dt = x ? x->dtype : FN_F32;
    CHECK(check(b, "linear", "x", x, dt, 1, 4, err));
    CHECK(check(b, "linear", "W", w, dt, 2, 2, err));
    CHECK(check(b, "linear", "out", out, dt, 1, 4, err));
    int64_t k = x->ne[x->ndim - 1], n = w->ne[0];
    if (w->ne[1] != k)
        return bad_shape(err, "linear", "W must be [out, in] with in = x's last dimension", w);
    if (out->ne[out->ndim - 1] != n || fn_tensor_rows(out) != fn_tensor_rows(x))
        return bad_shape(err, "linear", "out must be [rows of x, out features of W]", out);
    if (bias) {
        CHECK(check(b, "linear", "bias", bias, dt, 1, 1, err));
        if (bias->ne[0] != n)
            return bad_shape(err, "linear", "bias must have W's out features", bias);
    }
    if (act != FN_ACT_NONE && act != FN_ACT_RELU && act != FN_ACT_GELU)
        return fn_error_set(err, FN_ERR_INVALID, "linear: unknown activation %d", (int)act);
    PROFILED(b, OP_LINEAR, b->ops->linear(b, x, w, bias, act, out, err));
}

fn_status fn_op_bias_act(fn_backend *b, fn_tensor *x, const fn_tensor *bias, fn_act act,
                         fn_error *err)
{
    CHECK(check(b, "bias_act", "x", x, x ? x->dtype : FN_F32, 1, 4, err));
    if (x->dtype != FN_F32 && x->dtype != FN_BF16 && x->dtype != FN_F16)
        return bad_shape(err, "bias_act", "x must be a float type", x);
    if (bias) {
        CHECK(check(b, "bias_act", "bias", bias, x->dtype, 1, 1, err));
        if (bias->ne[0] != x->ne[x->ndim - 1])
            return bad_shape(err, "bias_act", "bias length must equal the last dimension of x",
                             bias);
    }
    if (act != FN_ACT_NONE && act != FN_ACT_RELU && act != FN_ACT_GELU)
        return fn_error_set(err, FN_ERR_INVALID, "bias_act: unknown activation %d", (int)act);
    PROFILED(b, OP_BIAS_ACT, b->ops->bias_act(b, x, bias, act, err));
}

static int same_shape(const fn_tensor *a, const fn_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return 0;
    return 1;
}

fn_status fn_op_layernorm(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                          const fn_tensor *gamma, const fn_tensor *beta, float eps, fn_tensor *out,
                          fn_error *err)
{
    fn_dtype dt = x ? x->dtype : FN_F32;
    CHECK(check(b, "layernorm", "x", x, dt, 1, 4, err));
    CHECK(check(b, "layernorm", "out", out, dt, 1, 4, err));
    CHECK(check(b, "layernorm", "gamma", gamma, dt, 1, 1, err));
    CHECK(check(b, "layernorm", "beta", beta, dt, 1, 1, err));
    if (residual) {
        CHECK(check(b, "layernorm", "residual", residual, dt, 1, 4, err));
        if (!same_shape(x, residual))
            return bad_shape(err, "layernorm", "residual must have the shape of x", residual);
    }
    if (!same_shape(x, out))
        return bad_shape(err, "layernorm", "out must have the shape of x", out);
    int64_t d = x->ne[x->ndim - 1];
    if (gamma->ne[0] != d || beta->ne[0] != d)
        return bad_shape(err, "layernorm", "gamma and beta must match the last dimension", gamma);
    if (!(eps > 0)) return fn_error_set(err, FN_ERR_INVALID, "layernorm: eps must be positive");
    PROFILED(b, OP_LAYERNORM, b->ops->layernorm(b, x, residual, gamma, beta, eps, out, err));
}

fn_status fn_op_softmax(fn_backend *b, fn_tensor *x, fn_error *err)
{
    CHECK(check(b, "softmax", "x", x, x ? x->dtype : FN_F32, 1, 4, err));
    PROFILED(b, OP_SOFTMAX, b->ops->softmax(b, x, err));
}

fn_status fn_op_attention(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask, int n_heads,
                          fn_tensor *out, fn_error *err)
{
    fn_dtype dt = qkv ? qkv->dtype : FN_F32;
    CHECK(check(b, "attention", "qkv", qkv, dt, 3, 3, err));
    CHECK(check(b, "attention", "mask", mask, FN_I32, 2, 2, err));
    CHECK(check(b, "attention", "out", out, dt, 3, 3, err));
    int64_t bs = qkv->ne[0], t = qkv->ne[1], w = qkv->ne[2];
    if (n_heads < 1 || w % (3 * (int64_t)n_heads) != 0)
        return bad_shape(err, "attention", "qkv's last dimension must be 3 * heads * head_dim",
                         qkv);
    int64_t hd = w / 3;
    if (out->ne[0] != bs || out->ne[1] != t || out->ne[2] != hd)
        return bad_shape(err, "attention", "out must be [B, T, heads * head_dim]", out);
    if (mask->ne[0] != bs || mask->ne[1] != t)
        return bad_shape(err, "attention", "mask must be [B, T]", mask);
    PROFILED(b, OP_ATTENTION, b->ops->attention(b, qkv, mask, n_heads, out, err));
}

fn_status fn_op_gather(fn_backend *b, const fn_tensor *table, const fn_tensor *ids, int accumulate,
                       fn_tensor *out, fn_error *err)
{
    fn_dtype dt = table ? table->dtype : FN_F32;
    CHECK(check(b, "gather", "table", table, dt, 2, 2, err));
    CHECK(check(b, "gather", "ids", ids, FN_I32, 1, 4, err));
    CHECK(check(b, "gather", "out", out, dt, 2, 4, err));
    if (fn_tensor_rows(out) != fn_tensor_numel(ids) || out->ne[out->ndim - 1] != table->ne[1])
        return bad_shape(err, "gather", "out must hold one table row per id", out);
    PROFILED(b, OP_GATHER, b->ops->gather(b, table, ids, accumulate, out, err));
}

fn_status fn_op_mean_pool(fn_backend *b, const fn_tensor *x, const fn_tensor *mask, fn_tensor *out,
                          fn_error *err)
{
    fn_dtype dt = x ? x->dtype : FN_F32;
    CHECK(check(b, "mean_pool", "x", x, dt, 3, 3, err));
    CHECK(check(b, "mean_pool", "mask", mask, FN_I32, 2, 2, err));
    CHECK(check(b, "mean_pool", "out", out, dt, 2, 2, err));
    if (mask->ne[0] != x->ne[0] || mask->ne[1] != x->ne[1])
        return bad_shape(err, "mean_pool", "mask must be [B, T] of x", mask);
    if (out->ne[0] != x->ne[0] || out->ne[1] != x->ne[2])
        return bad_shape(err, "mean_pool", "out must be [B, D]", out);
    PROFILED(b, OP_MEAN_POOL, b->ops->mean_pool(b, x, mask, out, err));
}

fn_status fn_op_l2_normalize(fn_backend *b, fn_tensor *x, fn_error *err)
{
    CHECK(check(b, "l2_normalize", "x", x, x ? x->dtype : FN_F32, 1, 4, err));
    PROFILED(b, OP_L2_NORMALIZE, b->ops->l2_normalize(b, x, err));
}

/* ---- training ops ---- */

/* The training ops compute in f32: half types are valid tensors they do not handle. */
static fn_status f32_only(const char *op, const char *name, const fn_tensor *t, fn_error *err)
{
    if (t->dtype == FN_F32) return FN_OK;
    if (t->dtype == FN_F16 || t->dtype == FN_BF16)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: %s is %s; only f32 is supported", op,
                            name, fn_dtype_name(t->dtype));
    char what[64];
    snprintf(what, sizeof what, "%s must be f32", name);
    return bad_shape(err, op, what, t);
}

static fn_status check_act(const char *op, fn_act act, fn_error *err)
{
    if (act != FN_ACT_NONE && act != FN_ACT_RELU && act != FN_ACT_GELU)
        return fn_error_set(err, FN_ERR_INVALID, "%s: unknown activation %d", op, (int)act);
    return FN_OK;
}

fn_status fn_op_copy(fn_backend *b, const fn_tensor *src, fn_tensor *dst, fn_error *err)
{
    fn_dtype dt = src ? src->dtype : FN_F32;
    CHECK(check(b, "copy", "src", src, dt, 1, 4, err));
    CHECK(check(b, "copy", "dst", dst, dt, 1, 4, err));
    if (fn_tensor_numel(dst) != fn_tensor_numel(src)) {
        char s[96];
        shape_str(src, s, sizeof s);
        char what[160];
        snprintf(what, sizeof what, "dst must have as many elements as src %s", s);
        return bad_shape(err, "copy", what, dst);
    }
    drop_aux(dst);
    PROFILED(b, OP_COPY, b->ops->copy(b, src, dst, err));
}

fn_status fn_op_act_backward(fn_backend *b, const fn_tensor *pre, const fn_tensor *dy, fn_act act,
                             fn_tensor *dx, fn_error *err)
{
    CHECK(check(b, "act_backward", "pre", pre, pre ? pre->dtype : FN_F32, 1, 4, err));
    CHECK(f32_only("act_backward", "pre", pre, err));
    CHECK(check(b, "act_backward", "dy", dy, FN_F32, 1, 4, err));
    CHECK(check(b, "act_backward", "dx", dx, FN_F32, 1, 4, err));
    if (!same_shape(dy, pre)) return bad_shape(err, "act_backward", "dy must have pre's shape", dy);
    if (!same_shape(dx, pre)) return bad_shape(err, "act_backward", "dx must have pre's shape", dx);
    CHECK(check_act("act_backward", act, err));
    drop_aux(dx);
    PROFILED(b, OP_ACT_BACKWARD, b->ops->act_backward(b, pre, dy, act, dx, err));
}

fn_status fn_op_sum_rows(fn_backend *b, const fn_tensor *x, float beta, fn_tensor *out,
                         fn_error *err)
{
    CHECK(check(b, "sum_rows", "x", x, x ? x->dtype : FN_F32, 1, 4, err));
    CHECK(f32_only("sum_rows", "x", x, err));
    CHECK(check(b, "sum_rows", "out", out, FN_F32, 1, 1, err));
    if (out->ne[0] != x->ne[x->ndim - 1])
        return bad_shape(err, "sum_rows", "out's length must equal the last dimension of x", out);
    if (!isfinite(beta)) return fn_error_set(err, FN_ERR_INVALID, "sum_rows: beta is not finite");
    drop_aux(out);
    PROFILED(b, OP_SUM_ROWS, b->ops->sum_rows(b, x, beta, out, err));
}

fn_status fn_op_dropout(fn_backend *b, fn_tensor *x, float p, uint64_t seed, fn_error *err)
{
    CHECK(check(b, "dropout", "x", x, x ? x->dtype : FN_F32, 1, 4, err));
    CHECK(f32_only("dropout", "x", x, err));
    if (!(p >= 0 && p < 1))
        return fn_error_set(err, FN_ERR_INVALID, "dropout: p is %g, not in [0, 1)", (double)p);
    if (p == 0) return FN_OK;
    drop_aux(x);
    /* Derived here, once, so that every backend draws the same mask and scale. */
    float scale = (float)(1.0 / (1.0 - (double)p));
    PROFILED(b, OP_DROPOUT,
             b->ops->dropout(b, x, fn_dropout_key(seed), fn_dropout_threshold(p), scale, err));
}

fn_status fn_op_adam(fn_backend *b, fn_tensor *param, const fn_tensor *grad, fn_tensor *m,
                     fn_tensor *v, const fn_adam *opt, fn_error *err)
{
    CHECK(check(b, "adam", "param", param, param ? param->dtype : FN_F32, 1, 4, err));
    CHECK(f32_only("adam", "param", param, err));
    CHECK(check(b, "adam", "grad", grad, FN_F32, 1, 4, err));
    CHECK(check(b, "adam", "m", m, FN_F32, 1, 4, err));
    CHECK(check(b, "adam", "v", v, FN_F32, 1, 4, err));
    if (!same_shape(grad, param))
        return bad_shape(err, "adam", "grad must have param's shape", grad);
    if (!same_shape(m, param)) return bad_shape(err, "adam", "m must have param's shape", m);
    if (!same_shape(v, param)) return bad_shape(err, "adam", "v must have param's shape", v);
    if (m->data == v->data || m->data == param->data || v->data == param->data)
        return fn_error_set(err, FN_ERR_INVALID, "adam: param, m and v must be distinct tensors");
    if (!opt) return fn_error_set(err, FN_ERR_INVALID, "adam: the hyperparameters are missing");
    if (opt->step < 1)
        return fn_error_set(err, FN_ERR_INVALID, "adam: step is %lld; steps count from 1",
                            (long long)opt->step);
    if (!(isfinite(opt->lr) && opt->lr >= 0))
        return fn_error_set(err, FN_ERR_INVALID, "adam: lr %g is not finite and >= 0",
                            (double)opt->lr);
    if (!(opt->beta1 >= 0 && opt->beta1 < 1) || !(opt->beta2 >= 0 && opt->beta2 < 1))
        return fn_error_set(err, FN_ERR_INVALID, "adam: beta1 %g and beta2 %g must be in [0, 1)",
                            (double)opt->beta1, (double)opt->beta2);
    if (!(isfinite(opt->eps) && opt->eps > 0))
        return fn_error_set(err, FN_ERR_INVALID, "adam: eps %g is not finite and > 0",
                            (double)opt->eps);
    if (!(isfinite(opt->l2) && opt->l2 >= 0))
        return fn_error_set(err, FN_ERR_INVALID, "adam: l2 %g is not finite and >= 0",
                            (double)opt->l2);
    double bc1 = 1 - pow(opt->beta1, (double)opt->step);
    double bc2 = 1 - pow(opt->beta2, (double)opt->step);
    fn_adam_step s = {.lr_t = (float)(opt->lr / bc1),
                      .rsqrt_bc2 = (float)(1 / sqrt(bc2)),
                      .beta1 = opt->beta1,
                      .beta2 = opt->beta2,
                      .eps = opt->eps,
                      .l2 = opt->l2};
    if (!isfinite(s.lr_t))
        return fn_error_set(err, FN_ERR_INVALID, "adam: lr / (1 - beta1^step) overflows f32");
    drop_aux(param);
    PROFILED(b, OP_ADAM, b->ops->adam(b, param, grad, m, v, &s, err));
}

fn_status fn_op_axpy(fn_backend *b, float alpha, const fn_tensor *x, fn_tensor *y, fn_error *err)
{
    CHECK(check(b, "axpy", "x", x, x ? x->dtype : FN_F32, 1, 4, err));
    CHECK(f32_only("axpy", "x", x, err));
    CHECK(check(b, "axpy", "y", y, FN_F32, 1, 4, err));
    if (fn_tensor_numel(y) != fn_tensor_numel(x)) {
        char s[96];
        shape_str(x, s, sizeof s);
        char what[160];
        snprintf(what, sizeof what, "y must have as many elements as x %s", s);
        return bad_shape(err, "axpy", what, y);
    }
    if (!isfinite(alpha)) return fn_error_set(err, FN_ERR_INVALID, "axpy: alpha is not finite");
    drop_aux(y);
    PROFILED(b, OP_AXPY, b->ops->axpy(b, alpha, x, y, err));
}

fn_status fn_op_layernorm_backward(fn_backend *b, const fn_tensor *x, const fn_tensor *residual,
                                   const fn_tensor *gamma, float eps, const fn_tensor *dout,
                                   fn_tensor *dx, fn_tensor *dgamma, fn_tensor *dbeta,
                                   fn_error *err)
{
    const char *op = "layernorm_backward";
    CHECK(check(b, op, "x", x, x ? x->dtype : FN_F32, 1, 4, err));
    CHECK(f32_only(op, "x", x, err));
    if (residual) {
        CHECK(check(b, op, "residual", residual, FN_F32, 1, 4, err));
        if (!same_shape(residual, x))
            return bad_shape(err, op, "residual must have x's shape", residual);
    }
    CHECK(check(b, op, "gamma", gamma, FN_F32, 1, 1, err));
    CHECK(check(b, op, "dout", dout, FN_F32, 1, 4, err));
    CHECK(check(b, op, "dx", dx, FN_F32, 1, 4, err));
    int64_t d = x->ne[x->ndim - 1];
    if (gamma->ne[0] != d)
        return bad_shape(err, op, "gamma must match the last dimension of x", gamma);
    if (!same_shape(dout, x)) return bad_shape(err, op, "dout must have x's shape", dout);
    if (!same_shape(dx, x)) return bad_shape(err, op, "dx must have x's shape", dx);
    if (dgamma) {
        CHECK(check(b, op, "dgamma", dgamma, FN_F32, 1, 1, err));
        if (dgamma->ne[0] != d)
            return bad_shape(err, op, "dgamma must match the last dimension of x", dgamma);
    }
    if (dbeta) {
        CHECK(check(b, op, "dbeta", dbeta, FN_F32, 1, 1, err));
        if (dbeta->ne[0] != d)
            return bad_shape(err, op, "dbeta must match the last dimension of x", dbeta);
    }
    if (dgamma && dbeta && dgamma->data == dbeta->data)
        return fn_error_set(err, FN_ERR_INVALID, "%s: dgamma and dbeta must be distinct tensors",
                            op);
    if (!(eps > 0)) return fn_error_set(err, FN_ERR_INVALID, "%s: eps must be positive", op);
    drop_aux(dx);
    if (dgamma) drop_aux(dgamma);
    if (dbeta) drop_aux(dbeta);
    PROFILED(b, OP_LAYERNORM_BACKWARD,
             b->ops->layernorm_backward(b, x, residual, gamma, eps, dout, dx, dgamma, dbeta, err));
}

fn_status fn_op_attention_backward(fn_backend *b, const fn_tensor *qkv, const fn_tensor *mask,
                                   int n_heads, const fn_tensor *dout, fn_tensor *dqkv,
                                   fn_error *err)
{
    const char *op = "attention_backward";
    CHECK(check(b, op, "qkv", qkv, qkv ? qkv->dtype : FN_F32, 3, 3, err));
    CHECK(f32_only(op, "qkv", qkv, err));
    CHECK(check(b, op, "mask", mask, FN_I32, 2, 2, err));
    CHECK(check(b, op, "dout", dout, FN_F32, 3, 3, err));
    CHECK(check(b, op, "dqkv", dqkv, FN_F32, 3, 3, err));
    int64_t bs = qkv->ne[0], t = qkv->ne[1], w = qkv->ne[2];
    if (n_heads < 1 || w % (3 * (int64_t)n_heads) != 0)
        return bad_shape(err, op, "qkv's last dimension must be 3 * heads * head_dim", qkv);
    if (mask->ne[0] != bs || mask->ne[1] != t)
        return bad_shape(err, op, "mask must be [B, T]", mask);
    if (dout->ne[0] != bs || dout->ne[1] != t || dout->ne[2] != w / 3)
        return bad_shape(err, op, "dout must be [B, T, heads * head_dim]", dout);
    if (!same_shape(dqkv, qkv)) return bad_shape(err, op, "dqkv must have qkv's shape", dqkv);
    /* dqkv is cleared before the inputs are read. */
    if (dqkv->data == qkv->data || dqkv->data == dout->data)
        return fn_error_set(err, FN_ERR_INVALID, "%s: dqkv must be distinct from qkv and dout", op);
    drop_aux(dqkv);
    PROFILED(b, OP_ATTENTION_BACKWARD,
             b->ops->attention_backward(b, qkv, mask, n_heads, dout, dqkv, err));
}
