/*
 * encoder.c - loading a BERT sentence encoder and running its forward pass
 * on the kernel layer. The weights are read once from the mapped safetensors
 * file (f32, f16 or bf16) into backend tensors; Q, K and V are fused into one
 * [3H, H] projection so each layer does one GEMM for them and the attention
 * op reads the three from one row per token.
 */
#include "encoder.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "kernels/backend.h"
#include "tokenizer.h"

#define MAX_LAYERS     64
#define MAX_GRAPHS     32 /* batch shapes kept recorded */
#define MAX_WORKSPACES 64

typedef struct layer {
    /* Weights in PyTorch's [out, in] layout; the backend may keep packed copies. */
    fn_tensor *wqkv, *bqkv;   /* [3H, H], [3H] */
    fn_tensor *wo, *bo;       /* attention output [H, H], [H] */
    fn_tensor *ln1_g, *ln1_b; /* attention.output.LayerNorm */
    fn_tensor *wi, *bi;       /* intermediate [I, H], [I] */
    fn_tensor *wo2, *bo2;     /* output [H, I], [H] */
    fn_tensor *ln2_g, *ln2_b; /* output.LayerNorm */
} layer;

typedef struct config {
    int64_t hidden, heads, layers, inter, vocab, max_pos;
    double eps;
    size_t max_len;
    int normalize;
} config;

/* What one encode call works in: activations, host staging, the recorded graphs. */
typedef struct workspace {
    int busy;
    size_t cap_tokens, cap_batch;
    fn_tensor *ids, *pos_ids, *mask, *x, *qkv, *att, *tmp, *inter, *pooled;
    int32_t *h_ids, *h_pos, *h_mask;
    float *h_pooled;
    /* Recorded forward passes by batch shape, on devices with graphs (CUDA). */
    struct {
        int64_t b, t;
        fn_graph *g;
    } graphs[MAX_GRAPHS];
    size_t n_graphs, next_graph;
    uint16_t *h_half; /* pooled rows as read from a bf16/f16 device */
} workspace;

struct fn_encoder {
    fn_backend *be;
    fn_dtype dt; /* weights and activations: f32 on the CPU, bf16 or f16 on CUDA */
    fn_tokenizer *tok;
    config cfg;
    size_t max_batch;
    fn_tensor *word, *pos, *ln_g, *ln_b; /* pos has token type 0 folded in */
    layer layers[MAX_LAYERS];

    /* Calls run at once on as many workspaces (the weights are shared and only read);
     * more callers wait for one to come free. */
    pthread_mutex_t lock; /* guards busy flags */
    pthread_cond_t freed;
    workspace ws[MAX_WORKSPACES];
    size_t n_ws;
    atomic_int no_graphs; /* the backend has none */
};

/* ---- configuration ----------------------------------------------------------- */

static fn_status read_json(const char *dir, const char *name, int required, json_t **out,
                           fn_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    json_error_t jerr;
    *out = json_load_file(path, 0, &jerr);
    if (*out) return FN_OK;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required) return FN_OK;
        return fn_error_set(err, FN_ERR_NOT_FOUND, "encoder: %s is missing", path);
    }
    fclose(f);
    return fn_error_set(err, FN_ERR_CORRUPT, "encoder: %s: invalid JSON at line %d: %s", path,
                        jerr.line, jerr.text);
}

static fn_status get_int(json_t *cfg, const char *dir, const char *key, int64_t *out, fn_error *err)
{
    json_t *v = json_object_get(cfg, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return fn_error_set(err, FN_ERR_CORRUPT,
                            "encoder: %s/config.json: '%s' is missing or not a positive integer",
                            dir, key);
    *out = json_integer_value(v);
    return FN_OK;
}

static fn_status read_config(const char *dir, config *c, fn_error *err)
{
    json_t *cfg = NULL, *sbert = NULL, *modules = NULL;
    fn_status st = read_json(dir, "config.json", 1, &cfg, err);
    if (st != FN_OK) return st;
    if ((st = get_int(cfg, dir, "hidden_size", &c->hidden, err)) ||
        (st = get_int(cfg, dir, "num_attention_heads", &c->heads, err)) ||
        (st = get_int(cfg, dir, "num_hidden_layers", &c->layers, err)) ||
        (st = get_int(cfg, dir, "intermediate_size", &c->inter, err)) ||
        (st = get_int(cfg, dir, "vocab_size", &c->vocab, err)) ||
        (st = get_int(cfg, dir, "max_position_embeddings", &c->max_pos, err)))
        goto done;
    json_t *eps = json_object_get(cfg, "layer_norm_eps");
    c->eps = json_is_number(eps) ? json_number_value(eps) : 1e-12;
    const char *act = json_string_value(json_object_get(cfg, "hidden_act"));
    if (act && strcmp(act, "gelu") != 0) {
        st = fn_error_set(err, FN_ERR_UNSUPPORTED,
                          "encoder: %s/config.json: hidden_act '%s' (only gelu is implemented)",
                          dir, act);
        goto done;
    }
    if (c->hidden % c->heads != 0 || c->layers > MAX_LAYERS) {
        st = fn_error_set(err, FN_ERR_UNSUPPORTED,
                          "encoder: %s/config.json: %lld heads do not divide hidden size %lld, "
                          "or more than %d layers",
                          dir, (long long)c->heads, (long long)c->hidden, MAX_LAYERS);
        goto done;
    }
    /* sentence-transformers' own sequence length, when the folder has its config. */
    c->max_len = (size_t)c->max_pos;
    if ((st = read_json(dir, "sentence_bert_config.json", 0, &sbert, err))) goto done;
    json_t *msl = sbert ? json_object_get(sbert, "max_seq_length") : NULL;
    if (json_is_integer(msl) && json_integer_value(msl) > 0 && json_integer_value(msl) < c->max_pos)
        c->max_len = (size_t)json_integer_value(msl);
    /* Normalisation is a module of its own in sentence-transformers; BERT alone has none. */
    c->normalize = 1;
    if ((st = read_json(dir, "modules.json", 0, &modules, err))) goto done;
    if (json_is_array(modules)) {
        c->normalize = 0;
        size_t i;
        json_t *m;
        json_array_foreach(modules, i, m)
        {
            const char *type = json_string_value(json_object_get(m, "type"));
            if (type && strstr(type, "Normalize")) c->normalize = 1;
        }
    }
done:
    json_decref(cfg);
    json_decref(sbert);
    json_decref(modules);
    return st;
}

/* ---- weights ------------------------------------------------------------------ */

/* Copies a tensor's values as f32 into dst (count floats), converting f16/bf16. */
static fn_status to_f32(const fn_safetensors *st, const char *name, int64_t rows, int64_t cols,
                        float *dst, fn_error *err)
{
    const fn_st_tensor *t = fn_safetensors_find(st, name);
    if (!t)
        return fn_error_set(err, FN_ERR_CORRUPT, "encoder: %s has no tensor '%s'",
                            fn_safetensors_path(st), name);
    int64_t want[2] = {rows, cols};
    int nd = cols ? 2 : 1;
    int ok = t->ndim == nd && t->shape[0] == want[0] && (nd == 1 || t->shape[1] == want[1]);
    if (!ok || (t->dtype != FN_ST_F32 && t->dtype != FN_ST_F16 && t->dtype != FN_ST_BF16))
        return fn_safetensors_expect(st, name, FN_ST_F32, nd, want, &t, err) == FN_OK
                   ? fn_error_set(err, FN_ERR_CORRUPT, "encoder: tensor '%s' has dtype %s", name,
                                  fn_st_dtype_name(t->dtype))
                   : err->code;
    size_t n = (size_t)(rows * (cols ? cols : 1));
    if (t->dtype == FN_ST_F32) {
        memcpy(dst, t->data, n * sizeof *dst);
    } else {
        const uint16_t *h = t->data;
        for (size_t i = 0; i < n; i++)
            dst[i] = t->dtype == FN_ST_BF16 ? fn_bf16_to_f32(h[i]) : fn_f16_to_f32(h[i]);
    }
    return FN_OK;
}

/* A [rows, cols] (or [rows] when cols is 0) tensor in the encoder's dtype from host floats. */
static fn_status upload(fn_encoder *e, const float *host, int64_t rows, int64_t cols,
                        fn_tensor **out, fn_error *err)
{
    int64_t dims[2] = {rows, cols};
    fn_status st = fn_tensor_new(e->be, e->dt, cols ? 2 : 1, dims, out, err);
    if (st != FN_OK) return st;
    size_t n = (size_t)(rows * (cols ? cols : 1));
    if (e->dt == FN_F32) return fn_tensor_write(*out, host, n * sizeof(float), err);
    uint16_t *h = malloc(n * sizeof *h);
    if (!h) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        h[i] = e->dt == FN_BF16 ? fn_f32_to_bf16(host[i]) : fn_f32_to_f16(host[i]);
    st = fn_tensor_write(*out, h, n * sizeof *h, err);
    free(h);
    return st;
}

/* Loads tensor `name` ([rows, cols], or [rows] when cols is 0) onto the backend. */
static fn_status load(fn_encoder *e, const fn_safetensors *st, const char *name, int64_t rows,
                      int64_t cols, fn_tensor **out, fn_error *err)
{
    float *tmp = malloc((size_t)(rows * (cols ? cols : 1)) * sizeof *tmp);
    if (!tmp) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    fn_status s = to_f32(st, name, rows, cols, tmp, err);
    if (s == FN_OK) s = upload(e, tmp, rows, cols, out, err);
    free(tmp);
    return s;
}

/* HF names prefix everything with "bert." when saved from BertForX; accept both. */
static const char *prefix_of(const fn_safetensors *st)
{
    return fn_safetensors_find(st, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
}

static fn_status load_layer(fn_encoder *e, const fn_safetensors *st, const char *pre, int l,
                            fn_error *err)
{
    const int64_t h = e->cfg.hidden, in = e->cfg.inter;
    layer *ly = &e->layers[l];
    char name[256];
    fn_status s = FN_OK;
    /* Q, K, V stacked into one projection. */
    float *w = malloc((size_t)(3 * h * h) * sizeof *w), *b = malloc((size_t)(3 * h) * sizeof *b);
    if (!w || !b) {
        free(w), free(b);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    static const char *qkv[3] = {"query", "key", "value"};
    for (int i = 0; i < 3 && s == FN_OK; i++) {
        snprintf(name, sizeof name, "%sencoder.layer.%d.attention.self.%s.weight", pre, l, qkv[i]);
        s = to_f32(st, name, h, h, w + i * h * h, err);
        if (s != FN_OK) break;
        snprintf(name, sizeof name, "%sencoder.layer.%d.attention.self.%s.bias", pre, l, qkv[i]);
        s = to_f32(st, name, h, 0, b + i * h, err);
    }
    if (s == FN_OK) s = upload(e, w, 3 * h, h, &ly->wqkv, err);
    if (s == FN_OK) s = upload(e, b, 3 * h, 0, &ly->bqkv, err);
    free(w), free(b);
    struct {
        const char *suffix;
        int64_t rows, cols;
        fn_tensor **dst;
    } parts[] = {
        {"attention.output.dense.weight", h, h, &ly->wo},
        {"attention.output.dense.bias", h, 0, &ly->bo},
        {"attention.output.LayerNorm.weight", h, 0, &ly->ln1_g},
        {"attention.output.LayerNorm.bias", h, 0, &ly->ln1_b},
        {"intermediate.dense.weight", in, h, &ly->wi},
        {"intermediate.dense.bias", in, 0, &ly->bi},
        {"output.dense.weight", h, in, &ly->wo2},
        {"output.dense.bias", h, 0, &ly->bo2},
        {"output.LayerNorm.weight", h, 0, &ly->ln2_g},
        {"output.LayerNorm.bias", h, 0, &ly->ln2_b},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && s == FN_OK; i++) {
        snprintf(name, sizeof name, "%sencoder.layer.%d.%s", pre, l, parts[i].suffix);
        s = load(e, st, name, parts[i].rows, parts[i].cols, parts[i].dst, err);
    }
    return s;
}

static fn_status load_weights(fn_encoder *e, const char *dir, fn_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fn_safetensors *st;
    fn_status s = fn_safetensors_open(path, &st, err);
    if (s != FN_OK) return fn_error_prefix(err, "encoder");
    const char *pre = prefix_of(st);
    const int64_t h = e->cfg.hidden;
    char name[256];
    snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", pre);
    s = load(e, st, name, e->cfg.vocab, h, &e->word, err);
    if (s == FN_OK) {
        /* Every token has type 0 here: fold that row into the position table. */
        float *pos = malloc((size_t)(e->cfg.max_pos * h) * sizeof *pos);
        float *tt = malloc((size_t)h * sizeof *tt);
        if (!pos || !tt) s = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        snprintf(name, sizeof name, "%sembeddings.position_embeddings.weight", pre);
        if (s == FN_OK) s = to_f32(st, name, e->cfg.max_pos, h, pos, err);
        const fn_st_tensor *ttt;
        snprintf(name, sizeof name, "%sembeddings.token_type_embeddings.weight", pre);
        if (s == FN_OK && !(ttt = fn_safetensors_find(st, name)))
            s = fn_error_set(err, FN_ERR_CORRUPT, "encoder: %s has no tensor '%s'", path, name);
        if (s == FN_OK && (ttt->ndim != 2 || ttt->shape[1] != h))
            s = fn_error_set(err, FN_ERR_CORRUPT, "encoder: %s: '%s' is not [types, %lld]", path,
                             name, (long long)h);
        if (s == FN_OK) {
            /* Row 0 only: read it whatever the number of types. */
            const fn_st_tensor *t = ttt;
            for (int64_t i = 0; i < h; i++)
                tt[i] = t->dtype == FN_ST_F32    ? ((const float *)t->data)[i]
                        : t->dtype == FN_ST_BF16 ? fn_bf16_to_f32(((const uint16_t *)t->data)[i])
                                                 : fn_f16_to_f32(((const uint16_t *)t->data)[i]);
            for (int64_t p = 0; p < e->cfg.max_pos; p++)
                for (int64_t i = 0; i < h; i++) pos[p * h + i] += tt[i];
            s = upload(e, pos, e->cfg.max_pos, h, &e->pos, err);
        }
        free(pos), free(tt);
    }
    snprintf(name, sizeof name, "%sembeddings.LayerNorm.weight", pre);
    if (s == FN_OK) s = load(e, st, name, h, 0, &e->ln_g, err);
    snprintf(name, sizeof name, "%sembeddings.LayerNorm.bias", pre);
    if (s == FN_OK) s = load(e, st, name, h, 0, &e->ln_b, err);
    for (int l = 0; l < e->cfg.layers && s == FN_OK; l++) s = load_layer(e, st, pre, l, err);
    fn_safetensors_close(st);
    return s;
}

/* ---- workspace ----------------------------------------------------------------- */

static void free_graphs(workspace *w)
{
    for (size_t i = 0; i < w->n_graphs; i++) fn_graph_free(w->graphs[i].g);
    w->n_graphs = w->next_graph = 0;
}

static void free_workspace(workspace *w)
{
    free_graphs(w); /* graphs point into the workspace */
    fn_tensor *ts[] = {w->ids, w->pos_ids, w->mask,  w->x,     w->qkv,
                       w->att, w->tmp,     w->inter, w->pooled};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) fn_tensor_free(ts[i]);
    w->ids = w->pos_ids = w->mask = w->x = w->qkv = w->att = w->tmp = w->inter = w->pooled = NULL;
    free(w->h_ids), free(w->h_pos), free(w->h_mask), free(w->h_pooled), free(w->h_half);
    w->h_ids = w->h_pos = w->h_mask = NULL;
    w->h_pooled = NULL;
    w->h_half = NULL;
    w->cap_tokens = w->cap_batch = 0;
}

/*
 * Makes room for batch texts of tokens tokens in all. It grows to what calls need (in
 * powers of two from 256 tokens, so a few growths cover every shape), not to max_batch x
 * max_len at once: a serving encoder of short queries keeps small workspaces.
 */
static fn_status reserve(fn_encoder *e, workspace *w, size_t batch, size_t tokens, fn_error *err)
{
    if (tokens <= w->cap_tokens && batch <= w->cap_batch) return FN_OK;
    size_t grown = 256;
    while (grown < tokens) grown *= 2;
    tokens = grown;
    if (tokens < w->cap_tokens) tokens = w->cap_tokens;
    if (batch < w->cap_batch) batch = w->cap_batch;
    free_workspace(w);
    const int64_t h = e->cfg.hidden, n = (int64_t)tokens;
    int64_t d_ids = n, d_x[2] = {n, h}, d_qkv[2] = {n, 3 * h}, d_in[2] = {n, e->cfg.inter},
            d_pool[2] = {(int64_t)batch, h};
    fn_status s;
    if ((s = fn_tensor_new(e->be, FN_I32, 1, &d_ids, &w->ids, err)) ||
        (s = fn_tensor_new(e->be, FN_I32, 1, &d_ids, &w->pos_ids, err)) ||
        (s = fn_tensor_new(e->be, FN_I32, 1, &d_ids, &w->mask, err)) ||
        (s = fn_tensor_new(e->be, e->dt, 2, d_x, &w->x, err)) ||
        (s = fn_tensor_new(e->be, e->dt, 2, d_qkv, &w->qkv, err)) ||
        (s = fn_tensor_new(e->be, e->dt, 2, d_x, &w->att, err)) ||
        (s = fn_tensor_new(e->be, e->dt, 2, d_x, &w->tmp, err)) ||
        (s = fn_tensor_new(e->be, e->dt, 2, d_in, &w->inter, err)) ||
        (s = fn_tensor_new(e->be, e->dt, 2, d_pool, &w->pooled, err))) {
        free_workspace(w);
        return s;
    }
    w->h_ids = malloc(tokens * sizeof *w->h_ids);
    w->h_pos = malloc(tokens * sizeof *w->h_pos);
    w->h_mask = malloc(tokens * sizeof *w->h_mask);
    w->h_pooled = malloc(batch * (size_t)h * sizeof *w->h_pooled);
    w->h_half = malloc(batch * (size_t)h * sizeof *w->h_half);
    if (!w->h_ids || !w->h_pos || !w->h_mask || !w->h_pooled || !w->h_half) {
        free_workspace(w);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    w->cap_tokens = tokens;
    w->cap_batch = batch;
    return FN_OK;
}

/* ---- forward ------------------------------------------------------------------- */

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        fn_status s_ = (expr);                                                                     \
        if (s_ != FN_OK) return s_;                                                                \
    } while (0)

/* Queues the forward pass of one padded batch whose inputs are on the device. */
static fn_status forward_ops(fn_encoder *e, workspace *w, int64_t b, int64_t t, fn_error *err)
{
    const int64_t h = e->cfg.hidden, n = b * t;
    fn_backend *be = e->be;
    int64_t d_n = n, d_bt[2] = {b, t}, d_x[2] = {n, h}, d_x3[3] = {b, t, h}, d_q[2] = {n, 3 * h},
            d_q3[3] = {b, t, 3 * h}, d_in[2] = {n, e->cfg.inter}, d_pool[2] = {b, h};
    fn_tensor ids = fn_tensor_view(w->ids, 1, &d_n), pos = fn_tensor_view(w->pos_ids, 1, &d_n);
    fn_tensor mask = fn_tensor_view(w->mask, 2, d_bt);
    fn_tensor x = fn_tensor_view(w->x, 2, d_x), x3 = fn_tensor_view(w->x, 3, d_x3);
    fn_tensor qkv = fn_tensor_view(w->qkv, 2, d_q), qkv3 = fn_tensor_view(w->qkv, 3, d_q3);
    fn_tensor att = fn_tensor_view(w->att, 2, d_x), att3 = fn_tensor_view(w->att, 3, d_x3);
    fn_tensor tmp = fn_tensor_view(w->tmp, 2, d_x), inter = fn_tensor_view(w->inter, 2, d_in);
    fn_tensor pooled = fn_tensor_view(w->pooled, 2, d_pool);
    TRY(fn_op_gather(be, e->word, &ids, 0, &x, err));
    TRY(fn_op_gather(be, e->pos, &pos, 1, &x, err));
    TRY(fn_op_layernorm(be, &x, NULL, e->ln_g, e->ln_b, (float)e->cfg.eps, &x, err));
    for (int64_t l = 0; l < e->cfg.layers; l++) {
        const layer *ly = &e->layers[l];
        TRY(fn_op_linear(be, &x, ly->wqkv, ly->bqkv, FN_ACT_NONE, &qkv, err));
        TRY(fn_op_attention(be, &qkv3, &mask, (int)e->cfg.heads, &att3, err));
        TRY(fn_op_linear(be, &att, ly->wo, ly->bo, FN_ACT_NONE, &tmp, err));
        TRY(fn_op_layernorm(be, &tmp, &x, ly->ln1_g, ly->ln1_b, (float)e->cfg.eps, &x, err));
        TRY(fn_op_linear(be, &x, ly->wi, ly->bi, FN_ACT_GELU, &inter, err));
        TRY(fn_op_linear(be, &inter, ly->wo2, ly->bo2, FN_ACT_NONE, &tmp, err));
        TRY(fn_op_layernorm(be, &tmp, &x, ly->ln2_g, ly->ln2_b, (float)e->cfg.eps, &x, err));
    }
    TRY(fn_op_mean_pool(be, &x3, &mask, &pooled, err));
    if (e->cfg.normalize) TRY(fn_op_l2_normalize(be, &pooled, err));
    return FN_OK;
}

/*
 * Runs one padded batch (b texts of t tokens, inputs in the host arrays).
 * Where the backend records graphs, the pass of each batch shape is recorded
 * once and replayed with a single launch afterwards (the workspace stays put
 * until it grows, which drops the graphs).
 */
static fn_status forward(fn_encoder *e, workspace *w, int64_t b, int64_t t, fn_error *err)
{
    const int64_t n = b * t;
    size_t ib = (size_t)n * sizeof(int32_t);
    fn_tensor ids = fn_tensor_view(w->ids, 1, &n), pos = fn_tensor_view(w->pos_ids, 1, &n);
    fn_tensor mask = fn_tensor_view(w->mask, 1, &n);
    TRY(fn_tensor_write(&ids, w->h_ids, ib, err));
    TRY(fn_tensor_write(&pos, w->h_pos, ib, err));
    TRY(fn_tensor_write(&mask, w->h_mask, ib, err));
    if (atomic_load(&e->no_graphs)) return forward_ops(e, w, b, t, err);
    for (size_t i = 0; i < w->n_graphs; i++)
        if (w->graphs[i].b == b && w->graphs[i].t == t) return fn_graph_launch(w->graphs[i].g, err);
    fn_status s = fn_backend_graph_begin(e->be, err);
    if (s == FN_ERR_UNSUPPORTED) {
        atomic_store(&e->no_graphs, 1);
        return forward_ops(e, w, b, t, err);
    }
    if (s != FN_OK) return s;
    s = forward_ops(e, w, b, t, err);
    fn_graph *g = NULL;
    fn_error end_err = {0};
    fn_status se = fn_backend_graph_end(e->be, &g, &end_err);
    if (s != FN_OK) {
        fn_graph_free(g);
        return s;
    }
    if (se != FN_OK) {
        *err = end_err;
        return se;
    }
    /* Keep it, replacing the oldest when full. */
    size_t slot;
    if (w->n_graphs < MAX_GRAPHS) {
        slot = w->n_graphs++;
    } else {
        slot = w->next_graph;
        w->next_graph = (w->next_graph + 1) % MAX_GRAPHS;
        fn_graph_free(w->graphs[slot].g);
    }
    w->graphs[slot].b = b, w->graphs[slot].t = t, w->graphs[slot].g = g;
    return fn_graph_launch(g, err);
}

/* ---- public -------------------------------------------------------------------- */

fn_status fn_encoder_load(const char *dir, const fn_encoder_options *opts, fn_encoder **out,
                          fn_error *err)
{
    fn_encoder_options o = {0};
    if (opts) o = *opts;
    fn_encoder *e = calloc(1, sizeof *e);
    if (!e) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->freed, NULL);
    atomic_init(&e->no_graphs, 0);
    e->n_ws = 1;
    fn_status s = read_config(dir, &e->cfg, err);
    if (s != FN_OK) goto fail;
    if (o.max_len) {
        if (o.max_len < 2 || o.max_len > (size_t)e->cfg.max_pos) {
            s = fn_error_set(err, FN_ERR_INVALID, "encoder: max_len %zu is outside [2, %lld]",
                             o.max_len, (long long)e->cfg.max_pos);
            goto fail;
        }
        e->cfg.max_len = o.max_len;
    }
    e->max_batch = o.max_batch ? o.max_batch : 32;
    const char *dev = o.device ? o.device : "cpu";
    e->dt = FN_F32;
    if (strcmp(dev, "cpu") == 0) {
        s = fn_backend_cpu_new(o.threads, FN_CPU_BEST, &e->be, err);
    } else if (strcmp(dev, "cuda") == 0) {
        s = fn_backend_cuda_new(0, &e->be, err);
        e->dt = o.precision && strcmp(o.precision, "f16") == 0   ? FN_F16
                : o.precision && strcmp(o.precision, "f32") == 0 ? FN_F32
                                                                 : FN_BF16;
    } else {
        s = fn_error_set(err, FN_ERR_INVALID, "encoder: unknown device '%s' (cpu or cuda)", dev);
    }
    if (s != FN_OK) goto fail;
    if (o.precision && strcmp(o.precision, "f32") && strcmp(o.precision, "bf16") &&
        strcmp(o.precision, "f16")) {
        s = fn_error_set(err, FN_ERR_INVALID, "encoder: unknown precision '%s' (f32, bf16, f16)",
                         o.precision);
        goto fail;
    }
    if (e->dt != FN_F32 && fn_backend_device(e->be) == FN_DEVICE_CPU) e->dt = FN_F32;
    /* The CPU backend's ops may run from several threads at once; a device has one stream. */
    if (o.workspaces > MAX_WORKSPACES) {
        s = fn_error_set(err, FN_ERR_INVALID, "encoder: %zu workspaces, at most %d", o.workspaces,
                         MAX_WORKSPACES);
        goto fail;
    }
    if (o.workspaces > 1 && fn_backend_device(e->be) == FN_DEVICE_CPU) e->n_ws = o.workspaces;
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    fn_tokenizer_options to = fn_tokenizer_options_default();
    to.max_len = e->cfg.max_len;
    if ((s = fn_tokenizer_load(path, &to, &e->tok, err)) != FN_OK) {
        fn_error_prefix(err, "encoder");
        goto fail;
    }
    if ((int64_t)fn_tokenizer_vocab_size(e->tok) > e->cfg.vocab) {
        s = fn_error_set(err, FN_ERR_CORRUPT, "encoder: %s has %zu tokens, the model only %lld",
                         path, fn_tokenizer_vocab_size(e->tok), (long long)e->cfg.vocab);
        goto fail;
    }
    if ((s = load_weights(e, dir, err)) != FN_OK) goto fail;
    *out = e;
    return FN_OK;
fail:
    fn_encoder_free(e);
    return s;
}

void fn_encoder_free(fn_encoder *e)
{
    if (!e) return;
    for (size_t i = 0; i < MAX_WORKSPACES; i++) free_workspace(&e->ws[i]);
    fn_tensor_free(e->word), fn_tensor_free(e->pos);
    fn_tensor_free(e->ln_g), fn_tensor_free(e->ln_b);
    for (int l = 0; l < MAX_LAYERS; l++) {
        layer *ly = &e->layers[l];
        fn_tensor *ts[] = {ly->wqkv, ly->bqkv, ly->wo,  ly->bo,  ly->ln1_g, ly->ln1_b,
                           ly->wi,   ly->bi,   ly->wo2, ly->bo2, ly->ln2_g, ly->ln2_b};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) fn_tensor_free(ts[i]);
    }
    fn_tokenizer_free(e->tok);
    if (e->be) fn_backend_free(e->be);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->freed);
    free(e);
}

size_t fn_encoder_dim(const fn_encoder *e)
{
    return (size_t)e->cfg.hidden;
}

size_t fn_encoder_max_len(const fn_encoder *e)
{
    return e->cfg.max_len;
}

const char *fn_encoder_device_name(const fn_encoder *e)
{
    return fn_backend_name(e->be);
}

typedef struct tokenized {
    int32_t *ids; /* max_len per text */
    size_t *len;
    size_t *order; /* texts by decreasing length */
} tokenized;

static int by_length_desc(const void *a, const void *b, void *ctx)
{
    const tokenized *tk = ctx;
    size_t la = tk->len[*(const size_t *)a], lb = tk->len[*(const size_t *)b];
    if (la != lb) return la < lb ? 1 : -1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static fn_status encode_in(fn_encoder *e, workspace *w, const char *const *texts,
                           const size_t *lens, size_t n, float *out, tokenized *tk, fn_error *err)
{
    const size_t ml = e->cfg.max_len, h = (size_t)e->cfg.hidden;
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]);
        fn_status s =
            fn_tokenizer_encode(e->tok, texts[i], len, tk->ids + i * ml, ml, &tk->len[i], err);
        if (s != FN_OK) return fn_error_prefix(err, "encoder: text %zu", i);
        tk->order[i] = i;
    }
    /* Length-sorted batches waste little on padding. */
    qsort_r(tk->order, n, sizeof *tk->order, by_length_desc, tk);
    for (size_t start = 0; start < n; start += e->max_batch) {
        size_t b = n - start < e->max_batch ? n - start : e->max_batch;
        size_t t = tk->len[tk->order[start]]; /* the longest comes first */
        fn_status s = reserve(e, w, e->max_batch, b * t, err);
        if (s != FN_OK) return s;
        for (size_t k = 0; k < b; k++) {
            size_t src = tk->order[start + k], len = tk->len[src];
            for (size_t p = 0; p < t; p++) {
                size_t o = k * t + p;
                w->h_ids[o] = p < len ? tk->ids[src * ml + p] : 0;
                w->h_mask[o] = p < len;
                w->h_pos[o] = (int32_t)p;
            }
        }
        if ((s = forward(e, w, (int64_t)b, (int64_t)t, err)) != FN_OK) return s;
        int64_t d_pool[2] = {(int64_t)b, (int64_t)h};
        fn_tensor pooled = fn_tensor_view(w->pooled, 2, d_pool);
        if (e->dt == FN_F32) {
            s = fn_tensor_read(&pooled, w->h_pooled, b * h * sizeof(float), err);
        } else {
            s = fn_tensor_read(&pooled, w->h_half, b * h * sizeof(uint16_t), err);
            for (size_t i = 0; s == FN_OK && i < b * h; i++)
                w->h_pooled[i] =
                    e->dt == FN_BF16 ? fn_bf16_to_f32(w->h_half[i]) : fn_f16_to_f32(w->h_half[i]);
        }
        if (s != FN_OK) return s;
        for (size_t k = 0; k < b; k++)
            memcpy(out + tk->order[start + k] * h, w->h_pooled + k * h, h * sizeof(float));
    }
    return FN_OK;
}

fn_status fn_encoder_encode(fn_encoder *e, const char *const *texts, const size_t *lens, size_t n,
                            float *out, fn_error *err)
{
    if (n == 0) return FN_OK;
    tokenized tk = {malloc(n * e->cfg.max_len * sizeof(int32_t)), malloc(n * sizeof(size_t)),
                    malloc(n * sizeof(size_t))};
    fn_status s;
    if (!tk.ids || !tk.len || !tk.order) {
        s = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    } else {
        pthread_mutex_lock(&e->lock);
        workspace *w = NULL;
        for (;;) {
            for (size_t i = 0; !w && i < e->n_ws; i++)
                if (!e->ws[i].busy) w = &e->ws[i];
            if (w) break;
            pthread_cond_wait(&e->freed, &e->lock);
        }
        w->busy = 1;
        pthread_mutex_unlock(&e->lock);
        s = encode_in(e, w, texts, lens, n, out, &tk, err);
        pthread_mutex_lock(&e->lock);
        w->busy = 0;
        pthread_cond_signal(&e->freed);
        pthread_mutex_unlock(&e->lock);
    }
    free(tk.ids), free(tk.len), free(tk.order);
    return s;
}
