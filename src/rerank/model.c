/*
 * model.c - the list-aware reranker: its tensors, the forward pass on the
 * kernel layer, per-request scoring and scoring whole list sets.
 * Files (safetensors) are in model_file.c, training in train.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "model_impl.h"

#define RR_LN_EPS        1e-5f
#define RR_PREDICT_LISTS 32 /* lists per forward pass when scoring a list set */

fn_rerank_options fn_rerank_options_default(void)
{
    return (fn_rerank_options){
        .d_model = 64,
        .n_heads = 4,
        .n_layers = 1,
        .d_ff = 128,
        .positions = 0,
        .max_items = 200,
        .loss = FN_RERANK_LAMBDARANK,
        .ndcg_k = 10,
        .lambda_k = 0,
        .lr = 1e-3f,
        .l2 = 1e-5f,
        .dropout = 0.1f,
        .epochs = 100,
        .patience = 10,
        .batch = 16,
        .seed = 1,
        .threads = 0,
        .device = "cpu",
        .progress = 0,
    };
}

const char *fn_rerank_loss_name(fn_rerank_loss loss)
{
    return loss == FN_RERANK_LISTNET ? "listnet" : "lambdarank";
}

fn_status fn_rerank_loss_parse(const char *name, fn_rerank_loss *out, fn_error *err)
{
    if (!strcmp(name, "listnet"))
        *out = FN_RERANK_LISTNET;
    else if (!strcmp(name, "lambdarank"))
        *out = FN_RERANK_LAMBDARANK;
    else
        return fn_error_set(err, FN_ERR_INVALID,
                            "unknown rerank loss '%s' (expected listnet or lambdarank)", name);
    return FN_OK;
}

static fn_status check_options(const fn_rerank_options *o, fn_error *err)
{
    const char *bad = NULL;
    if (o->d_model < 1 || o->d_model > 4096)
        bad = "d_model must be in 1..4096";
    else if (o->n_heads < 1 || o->d_model % o->n_heads)
        bad = "n_heads must divide d_model";
    else if (o->n_layers < 0 || o->n_layers > RR_MAX_LAYERS)
        bad = "n_layers must be in 0..8";
    else if (o->d_ff < 1 || o->d_ff > 65536)
        bad = "d_ff must be in 1..65536";
    else if (o->max_items < 1 || o->max_items > 4096)
        bad = "max_items must be in 1..4096";
    else if (o->ndcg_k < 1)
        bad = "ndcg_k must be at least 1";
    else if (o->lambda_k < 0)
        bad = "lambda_k must be >= 0";
    else if (!(o->lr > 0) || !isfinite(o->lr))
        bad = "lr must be positive";
    else if (!(o->l2 >= 0) || !isfinite(o->l2))
        bad = "l2 must be >= 0";
    else if (!(o->dropout >= 0 && o->dropout < 1))
        bad = "dropout must be in [0, 1)";
    else if (o->epochs < 1)
        bad = "epochs must be at least 1";
    else if (o->patience < 1)
        bad = "patience must be at least 1";
    else if (o->batch < 1 || o->batch > 4096)
        bad = "batch must be in 1..4096";
    else if (o->threads < 0)
        bad = "threads must be >= 0";
    if (bad) return fn_error_set(err, FN_ERR_INVALID, "rerank options: %s", bad);
    return FN_OK;
}

static void set_tensor(fn_reranker *r, int slot, const char *name, int ndim, int64_t d0, int64_t d1)
{
    snprintf(r->names[slot], sizeof r->names[slot], "%s", name);
    r->ndim[slot] = ndim;
    r->shape[slot][0] = d0;
    r->shape[slot][1] = d1;
}

fn_status rr_layout(fn_reranker *r, fn_error *err)
{
    fn_status st = check_options(&r->o, err);
    if (st != FN_OK) return st;
    if (r->F < 1) return fn_error_set(err, FN_ERR_INVALID, "reranker: no features");
    const int64_t F = r->F, d = r->o.d_model, ff = r->o.d_ff;
    memset(r->ndim, 0, sizeof r->ndim);
    set_tensor(r, RR_MEAN, "input.mean", 1, F, 0);
    set_tensor(r, RR_SCALE, "input.scale", 1, F, 0);
    set_tensor(r, RR_IN_W, "input.weight", 2, d, F);
    set_tensor(r, RR_IN_B, "input.bias", 1, d, 0);
    if (r->o.positions) set_tensor(r, RR_POS, "position", 2, r->o.max_items, d);
    set_tensor(r, RR_SC_W, "score.weight", 2, 1, d);
    set_tensor(r, RR_SC_B, "score.bias", 1, 1, 0);
    static const char *const parts[RR_LAYER_TENSORS] = {
        "qkv.weight", "qkv.bias", "out.weight", "out.bias", "ln1.weight", "ln1.bias",
        "ff1.weight", "ff1.bias", "ff2.weight", "ff2.bias", "ln2.weight", "ln2.bias"};
    for (int l = 0; l < r->o.n_layers; l++) {
        for (int j = 0; j < RR_LAYER_TENSORS; j++) {
            char name[48];
            snprintf(name, sizeof name, "layers.%d.%s", l, parts[j]);
            int64_t d0 = d, d1 = 0;
            int nd = 1;
            switch (j) {
            case RL_QKV_W:
                nd = 2, d0 = 3 * d, d1 = d;
                break;
            case RL_QKV_B:
                d0 = 3 * d;
                break;
            case RL_OUT_W:
                nd = 2, d1 = d;
                break;
            case RL_FF1_W:
                nd = 2, d0 = ff, d1 = d;
                break;
            case RL_FF1_B:
                d0 = ff;
                break;
            case RL_FF2_W:
                nd = 2, d1 = ff;
                break;
            default:
                break;
            }
            set_tensor(r, RR_LT(l, j), name, nd, d0, d1);
        }
    }
    r->n_tensors = RR_LAYER0 + r->o.n_layers * RR_LAYER_TENSORS;
    return FN_OK;
}

static fn_status new_backend(const char *device, int threads, fn_backend **out, fn_error *err)
{
    if (!device || !strcmp(device, "cpu"))
        return fn_backend_cpu_new(threads, FN_CPU_BEST, out, err);
    if (!strcmp(device, "cuda")) return fn_backend_cuda_new(0, out, err);
    *out = NULL;
    return fn_error_set(err, FN_ERR_INVALID, "reranker: unknown device '%s' (cpu or cuda)", device);
}

fn_status rr_alloc_weights(fn_reranker *r, fn_error *err)
{
    fn_status st = new_backend(r->o.device, 1, &r->be, err);
    if (st != FN_OK) return st;
    /* the caller's string may not outlive the model */
    r->o.device = fn_backend_device(r->be) == FN_DEVICE_CPU ? "cpu" : "cuda";
    if (!(r->mean = calloc(r->F, sizeof *r->mean)) || !(r->scale = calloc(r->F, sizeof *r->scale)))
        return fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
    for (int i = RR_IN_W; i < r->n_tensors; i++) {
        if (!r->ndim[i]) continue;
        if ((st = fn_tensor_new(r->be, FN_F32, r->ndim[i], r->shape[i], &r->t[i], err)) != FN_OK)
            return st;
    }
    if ((st = fn_tensor_new(r->be, FN_F32, 2, r->shape[RR_IN_W], &r->in_w_fold, err)) != FN_OK)
        return st;
    return fn_tensor_new(r->be, FN_F32, 1, r->shape[RR_IN_B], &r->in_b_fold, err);
}

static int64_t slot_numel(const fn_reranker *r, int i)
{
    return r->ndim[i] == 2 ? r->shape[i][0] * r->shape[i][1] : r->shape[i][0];
}

fn_status rr_new(const fn_rerank_options *o, uint32_t F, const float *mean, const float *scale,
                 fn_reranker **out, fn_error *err)
{
    *out = NULL;
    fn_reranker *r = calloc(1, sizeof *r);
    if (!r) return fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->freed, NULL);
    r->o = *o;
    r->F = F;
    fn_status st = rr_layout(r, err);
    if (st == FN_OK) st = rr_alloc_weights(r, err);
    if (st != FN_OK) {
        fn_reranker_free(r);
        return st;
    }
    memcpy(r->mean, mean, F * sizeof *mean);
    memcpy(r->scale, scale, F * sizeof *scale);
    /* Xavier-uniform matrices (variance kept through the layers at the start), zero biases,
     * LayerNorm at identity, small position vectors. */
    uint64_t rng = o->seed * 0x2545f4914f6cdd1dull + 17;
    size_t cap = 0;
    for (int i = RR_IN_W; i < r->n_tensors; i++)
        if (r->ndim[i] && (size_t)slot_numel(r, i) > cap) cap = (size_t)slot_numel(r, i);
    float *h = malloc(cap * sizeof *h);
    if (!h) {
        fn_reranker_free(r);
        return fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
    }
    for (int i = RR_IN_W; i < r->n_tensors && st == FN_OK; i++) {
        if (!r->ndim[i]) continue;
        const int64_t n = slot_numel(r, i);
        const char *name = r->names[i];
        const size_t len = strlen(name);
        const int is_ln_w = len > 10 && !strcmp(name + len - 10, "ln1.weight")   ? 1
                            : len > 10 && !strcmp(name + len - 10, "ln2.weight") ? 1
                                                                                 : 0;
        float a = 0;
        if (i == RR_POS)
            a = 0.02f;
        else if (r->ndim[i] == 2 && !is_ln_w)
            a = sqrtf(6.0f / (float)(r->shape[i][0] + r->shape[i][1]));
        for (int64_t j = 0; j < n; j++)
            h[j] = is_ln_w ? 1.0f : a * (2.0f * fn_rng_uniform(&rng) - 1.0f);
        st = fn_tensor_write(r->t[i], h, (size_t)n * sizeof *h, err);
    }
    free(h);
    if (st != FN_OK) {
        fn_reranker_free(r);
        return st;
    }
    *out = r;
    return FN_OK;
}

fn_status rr_copy_weights(fn_reranker *dst, const fn_reranker *src, fn_error *err)
{
    fn_status st = FN_OK;
    for (int i = RR_IN_W; i < src->n_tensors && st == FN_OK; i++) {
        if (!src->ndim[i]) continue;
        const size_t nb = (size_t)slot_numel(src, i) * sizeof(float);
        float *h = malloc(nb);
        if (!h) return fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
        st = fn_tensor_read(src->t[i], h, nb, err);
        if (st == FN_OK) st = fn_tensor_write(dst->t[i], h, nb, err);
        free(h);
    }
    return st;
}

/* ---- activations and the forward pass ---- */

fn_status rr_acts_new(fn_backend *be, const fn_reranker *r, int64_t cap_rows, rr_acts **out,
                      fn_error *err)
{
    rr_acts *a = calloc(1, sizeof *a);
    if (!a) return fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
    a->cap_rows = cap_rows;
    const int64_t d = r->o.d_model, ff = r->o.d_ff;
    fn_status st = FN_OK;
#define NEW2(t, cols)                                                                              \
    if (st == FN_OK) st = fn_tensor_new(be, FN_F32, 2, (int64_t[]){cap_rows, (cols)}, &(t), err)
    NEW2(a->x, (int64_t)r->F);
    NEW2(a->h0, d);
    NEW2(a->score, 1);
    for (int l = 0; l < r->o.n_layers; l++) {
        rr_layer_acts *L = &a->l[l];
        NEW2(L->qkv, 3 * d);
        NEW2(L->att, d);
        NEW2(L->o, d);
        NEW2(L->h1, d);
        NEW2(L->f1pre, ff);
        NEW2(L->f1, ff);
        NEW2(L->f2, d);
        NEW2(L->out, d);
    }
#undef NEW2
    if (st == FN_OK) st = fn_tensor_new(be, FN_I32, 1, &cap_rows, &a->ids, err);
    if (st == FN_OK) st = fn_tensor_new(be, FN_I32, 1, &cap_rows, &a->mask, err);
    if (st != FN_OK) {
        rr_acts_free(a);
        return st;
    }
    *out = a;
    return FN_OK;
}

void rr_acts_free(rr_acts *a)
{
    if (!a) return;
    fn_tensor_free(a->x);
    fn_tensor_free(a->h0);
    fn_tensor_free(a->score);
    fn_tensor_free(a->ids);
    fn_tensor_free(a->mask);
    for (int l = 0; l < RR_MAX_LAYERS; l++) {
        rr_layer_acts *L = &a->l[l];
        fn_tensor *t[] = {L->qkv, L->att, L->o, L->h1, L->f1pre, L->f1, L->f2, L->out};
        for (size_t i = 0; i < sizeof t / sizeof *t; i++) fn_tensor_free(t[i]);
    }
    free(a);
}

fn_status rr_acts_load(rr_acts *a, const fn_reranker *r, const float *const *feats,
                       const int64_t *n_items, int64_t B, int64_t T, int standardise, float *host,
                       fn_error *err)
{
    const int64_t R = B * T, F = r->F;
    if (R > a->cap_rows || T > r->o.max_items)
        return fn_error_set(err, FN_ERR_INTERNAL, "reranker: batch of %lld x %lld over capacity",
                            (long long)B, (long long)T);
    float *x = host;
    int32_t *ids = (int32_t *)(host + R * F), *mask = ids + R;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < T; t++) {
            float *row = x + (b * T + t) * F;
            const int real = t < n_items[b];
            ids[b * T + t] = (int32_t)t;
            mask[b * T + t] = real;
            if (!real) {
                memset(row, 0, (size_t)F * sizeof *row);
                continue;
            }
            const float *src = feats[b] + t * F;
            if (!standardise) {
                memcpy(row, src, (size_t)F * sizeof *row);
                continue;
            }
            for (int64_t j = 0; j < F; j++) row[j] = (src[j] - r->mean[j]) * r->scale[j];
        }
    }
    a->B = B;
    a->T = T;
    fn_tensor vx = rr_rows(a->x, R), vi = fn_tensor_view(a->ids, 1, &R),
              vm = fn_tensor_view(a->mask, 1, &R);
    fn_status st = fn_tensor_write(&vx, x, (size_t)(R * F) * sizeof *x, err);
    if (st == FN_OK) st = fn_tensor_write(&vi, ids, (size_t)R * sizeof *ids, err);
    if (st == FN_OK) st = fn_tensor_write(&vm, mask, (size_t)R * sizeof *mask, err);
    return st;
}

uint64_t rr_dropout_seed(uint64_t seed, int layer, int site)
{
    /* a splitmix64 draw from a state of its own per (seed, layer, site) */
    uint64_t s = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(layer * 4 + site);
    return fn_rng_next(&s);
}

fn_status rr_forward(fn_backend *be, const fn_reranker *r, fn_tensor *const *w, rr_acts *a,
                     float dropout, uint64_t seed, fn_error *err)
{
    const int64_t B = a->B, T = a->T, R = B * T, d = r->o.d_model;
    fn_tensor x = rr_rows(a->x, R), h0 = rr_rows(a->h0, R), s = rr_rows(a->score, R);
    fn_tensor ids = fn_tensor_view(a->ids, 1, &R),
              mask = fn_tensor_view(a->mask, 2, (int64_t[]){B, T});
    fn_status st = fn_op_linear(be, &x, w[RR_IN_W], w[RR_IN_B], FN_ACT_NONE, &h0, err);
    if (st == FN_OK && r->o.positions) st = fn_op_gather(be, w[RR_POS], &ids, 1, &h0, err);
    fn_tensor cur = h0;
    for (int l = 0; l < r->o.n_layers && st == FN_OK; l++) {
        const rr_layer_acts *L = &a->l[l];
        fn_tensor *const *lw = w + RR_LT(l, 0);
        fn_tensor qkv = rr_rows(L->qkv, R), att = rr_rows(L->att, R), o = rr_rows(L->o, R),
                  h1 = rr_rows(L->h1, R), f1pre = rr_rows(L->f1pre, R), f1 = rr_rows(L->f1, R),
                  f2 = rr_rows(L->f2, R), out = rr_rows(L->out, R);
        fn_tensor qkv3 = fn_tensor_view(L->qkv, 3, (int64_t[]){B, T, 3 * d}),
                  att3 = fn_tensor_view(L->att, 3, (int64_t[]){B, T, d});
        st = fn_op_linear(be, &cur, lw[RL_QKV_W], lw[RL_QKV_B], FN_ACT_NONE, &qkv, err);
        if (st == FN_OK) st = fn_op_attention(be, &qkv3, &mask, r->o.n_heads, &att3, err);
        if (st == FN_OK)
            st = fn_op_linear(be, &att, lw[RL_OUT_W], lw[RL_OUT_B], FN_ACT_NONE, &o, err);
        if (st == FN_OK && dropout > 0)
            st = fn_op_dropout(be, &o, dropout, rr_dropout_seed(seed, l, 0), err);
        if (st == FN_OK)
            st = fn_op_layernorm(be, &o, &cur, lw[RL_LN1_W], lw[RL_LN1_B], RR_LN_EPS, &h1, err);
        if (st == FN_OK)
            st = fn_op_linear(be, &h1, lw[RL_FF1_W], lw[RL_FF1_B], FN_ACT_NONE, &f1pre, err);
        if (st == FN_OK) st = fn_op_copy(be, &f1pre, &f1, err);
        if (st == FN_OK) st = fn_op_bias_act(be, &f1, NULL, FN_ACT_GELU, err);
        if (st == FN_OK)
            st = fn_op_linear(be, &f1, lw[RL_FF2_W], lw[RL_FF2_B], FN_ACT_NONE, &f2, err);
        if (st == FN_OK && dropout > 0)
            st = fn_op_dropout(be, &f2, dropout, rr_dropout_seed(seed, l, 1), err);
        if (st == FN_OK)
            st = fn_op_layernorm(be, &f2, &h1, lw[RL_LN2_W], lw[RL_LN2_B], RR_LN_EPS, &out, err);
        cur = out;
    }
    if (st == FN_OK) st = fn_op_linear(be, &cur, w[RR_SC_W], w[RR_SC_B], FN_ACT_NONE, &s, err);
    return st;
}

/* ---- the model ---- */

struct rr_ctx {
    fn_backend *be; /* own one-thread CPU backend, or the model's CUDA backend */
    rr_acts *acts;  /* max_items rows */
    float *host;    /* max_items (F + 2) floats */
    float *scores;
    rr_ctx *next;
};

static void ctx_free(const fn_reranker *r, rr_ctx *c)
{
    if (!c) return;
    rr_acts_free(c->acts);
    if (c->be != r->be) fn_backend_free(c->be);
    free(c->host);
    free(c->scores);
    free(c);
}

void fn_reranker_free(fn_reranker *r)
{
    if (!r) return;
    while (r->idle) {
        rr_ctx *c = r->idle;
        r->idle = c->next;
        ctx_free(r, c);
    }
    for (int i = 0; i < RR_MAX_TENSORS; i++) fn_tensor_free(r->t[i]);
    fn_tensor_free(r->in_w_fold);
    fn_tensor_free(r->in_b_fold);
    fn_backend_free(r->be);
    free(r->mean);
    free(r->scale);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->freed);
    free(r);
}

uint32_t fn_reranker_features(const fn_reranker *r)
{
    return r->F;
}

const fn_rerank_options *fn_reranker_options(const fn_reranker *r)
{
    return &r->o;
}

static int on_cpu(const fn_reranker *r)
{
    return fn_backend_device(r->be) == FN_DEVICE_CPU;
}

/* A scoring context: a fresh one on the CPU (requests run side by side), the one on CUDA. */
static fn_status ctx_take(fn_reranker *r, rr_ctx **out, fn_error *err)
{
    pthread_mutex_lock(&r->lock);
    while (!r->idle && !on_cpu(r) && r->n_ctx > 0) pthread_cond_wait(&r->freed, &r->lock);
    rr_ctx *c = r->idle;
    if (c)
        r->idle = c->next;
    else
        r->n_ctx++;
    pthread_mutex_unlock(&r->lock);
    if (c) {
        *out = c;
        return FN_OK;
    }
    fn_status st = FN_ERR_NOMEM;
    const int64_t cap = r->o.max_items;
    if (!(c = calloc(1, sizeof *c))) goto fail;
    if (!(c->host = malloc((size_t)cap * (r->F + 2) * sizeof *c->host)) ||
        !(c->scores = malloc((size_t)cap * sizeof *c->scores)))
        goto fail;
    if (on_cpu(r))
        st = fn_backend_cpu_new(1, FN_CPU_BEST, &c->be, err);
    else
        c->be = r->be, st = FN_OK;
    if (st != FN_OK) goto fail;
    if ((st = rr_acts_new(c->be, r, cap, &c->acts, err)) != FN_OK) goto fail;
    *out = c;
    return FN_OK;
fail:
    if (st == FN_ERR_NOMEM) fn_error_set(err, st, "reranker: out of memory");
    ctx_free(r, c);
    pthread_mutex_lock(&r->lock);
    r->n_ctx--;
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->lock);
    return st;
}

static void ctx_give(fn_reranker *r, rr_ctx *c)
{
    pthread_mutex_lock(&r->lock);
    c->next = r->idle;
    r->idle = c;
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->lock);
}

/* The weights scoring runs with: the model's, the input layer folded (raw features in). */
static void scoring_weights(const fn_reranker *r, fn_tensor **w)
{
    memcpy(w, r->t, sizeof r->t);
    w[RR_IN_W] = r->in_w_fold;
    w[RR_IN_B] = r->in_b_fold;
}

fn_status rr_fold(fn_reranker *r, fn_error *err)
{
    const int64_t d = r->shape[RR_IN_W][0], F = r->F;
    float *w = malloc((size_t)(d * F) * sizeof *w), *b = malloc((size_t)d * sizeof *b);
    fn_status st = w && b ? FN_OK : fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
    if (st == FN_OK) st = fn_tensor_read(r->t[RR_IN_W], w, (size_t)(d * F) * sizeof *w, err);
    if (st == FN_OK) st = fn_tensor_read(r->t[RR_IN_B], b, (size_t)d * sizeof *b, err);
    for (int64_t j = 0; st == FN_OK && j < d; j++) {
        double shift = 0;
        for (int64_t f = 0; f < F; f++) {
            const double ws = (double)w[j * F + f] * r->scale[f];
            shift += ws * r->mean[f];
            w[j * F + f] = (float)ws;
        }
        b[j] = (float)(b[j] - shift);
    }
    if (st == FN_OK) st = fn_tensor_write(r->in_w_fold, w, (size_t)(d * F) * sizeof *w, err);
    if (st == FN_OK) st = fn_tensor_write(r->in_b_fold, b, (size_t)d * sizeof *b, err);
    free(w);
    free(b);
    return st;
}

/* Items past the scored ones: below the lowest score, in input order. */
static void score_tail(float *scores, size_t scored, size_t n)
{
    if (scored >= n) return;
    float lo = INFINITY;
    for (size_t i = 0; i < scored; i++) lo = fminf(lo, scores[i]);
    for (size_t i = scored; i < n; i++) scores[i] = lo - 1.0f - (float)(i - scored);
}

fn_status fn_reranker_score(const fn_reranker *cr, const float *features, size_t n, float *scores,
                            fn_error *err)
{
    fn_reranker *r = (fn_reranker *)cr; /* the context pool changes; the weights do not */
    if (n == 0) return FN_OK;
    if (!features || !scores)
        return fn_error_set(err, FN_ERR_INVALID, "reranker: features or scores is NULL");
    rr_ctx *c;
    fn_status st = ctx_take(r, &c, err);
    if (st != FN_OK) return st;
    const int64_t m = n < (size_t)r->o.max_items ? (int64_t)n : r->o.max_items;
    fn_tensor *w[RR_MAX_TENSORS];
    scoring_weights(r, w);
    st = rr_acts_load(c->acts, r, &features, &m, 1, m, 0, c->host, err);
    if (st == FN_OK) st = rr_forward(c->be, r, w, c->acts, 0, 0, err);
    if (st == FN_OK) {
        fn_tensor s = rr_rows(c->acts->score, m);
        st = fn_tensor_read(&s, scores, (size_t)m * sizeof *scores, err);
    }
    ctx_give(r, c);
    if (st == FN_OK) score_tail(scores, (size_t)m, n);
    return st;
}

fn_status fn_reranker_predict(const fn_reranker *cr, const fn_listset *d, float *out, fn_error *err)
{
    fn_reranker *r = (fn_reranker *)cr;
    if (d->n_features > r->F)
        return fn_error_set(err, FN_ERR_INVALID, "reranker: the data has %u features, the model %u",
                            d->n_features, r->F);
    if (d->n_features < r->F)
        return fn_error_set(err, FN_ERR_INVALID,
                            "reranker: the data has %u features, the model %u (read it with the "
                            "model's width)",
                            d->n_features, r->F);
    const int64_t T = r->o.max_items, cap = RR_PREDICT_LISTS * T;
    fn_tensor *w[RR_MAX_TENSORS];
    scoring_weights(r, w);
    fn_backend *be = NULL;
    rr_ctx *cuda_ctx = NULL;
    rr_acts *a = NULL;
    float *host = malloc((size_t)cap * (r->F + 2) * sizeof *host);
    float *s = malloc((size_t)cap * sizeof *s);
    fn_status st = host && s ? FN_OK : fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
    if (st == FN_OK) {
        if (on_cpu(r))
            st = fn_backend_cpu_new(r->o.threads, FN_CPU_BEST, &be, err);
        else if ((st = ctx_take(r, &cuda_ctx, err)) == FN_OK)
            be = cuda_ctx->be;
    }
    if (st == FN_OK) st = rr_acts_new(be, r, cap, &a, err);
    for (size_t i0 = 0; st == FN_OK && i0 < d->n_lists; i0 += RR_PREDICT_LISTS) {
        const size_t B = d->n_lists - i0 < RR_PREDICT_LISTS ? d->n_lists - i0 : RR_PREDICT_LISTS;
        const float *feats[RR_PREDICT_LISTS];
        int64_t len[RR_PREDICT_LISTS], Tb = 1;
        for (size_t b = 0; b < B; b++) {
            const uint64_t lo = d->offsets[i0 + b], hi = d->offsets[i0 + b + 1];
            feats[b] = d->features + lo * d->n_features;
            len[b] = (int64_t)(hi - lo) < T ? (int64_t)(hi - lo) : T;
            if (len[b] > Tb) Tb = len[b];
        }
        st = rr_acts_load(a, r, feats, len, (int64_t)B, Tb, 0, host, err);
        if (st == FN_OK) st = rr_forward(be, r, w, a, 0, 0, err);
        if (st == FN_OK) {
            fn_tensor sv = rr_rows(a->score, (int64_t)B * Tb);
            st = fn_tensor_read(&sv, s, (size_t)((int64_t)B * Tb) * sizeof *s, err);
        }
        for (size_t b = 0; st == FN_OK && b < B; b++) {
            const uint64_t lo = d->offsets[i0 + b], n = d->offsets[i0 + b + 1] - lo;
            memcpy(out + lo, s + (int64_t)b * Tb, (size_t)len[b] * sizeof *out);
            score_tail(out + lo, (size_t)len[b], n);
        }
    }
    rr_acts_free(a);
    if (cuda_ctx)
        ctx_give(r, cuda_ctx);
    else
        fn_backend_free(be);
    free(host);
    free(s);
    return st;
}

fn_status rr_warm(fn_reranker *r, fn_error *err)
{
    fn_status fs = rr_fold(r, err);
    if (fs != FN_OK) return fs;
    const size_t n = r->o.max_items < 64 ? (size_t)r->o.max_items : 64;
    float *x = calloc(n * r->F, sizeof *x), *s = malloc(n * sizeof *s);
    fn_status st = x && s ? FN_OK : fn_error_set(err, FN_ERR_NOMEM, "reranker: out of memory");
    if (st == FN_OK) st = fn_reranker_score(r, x, 1, s, err);
    if (st == FN_OK) st = fn_reranker_score(r, x, n, s, err);
    free(x);
    free(s);
    return st;
}
