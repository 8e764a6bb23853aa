/*
 * deepfm.c - DeepFM (see deepfm_impl.h): parameters, prediction over a
 * dataset, per-request scoring, files. Training is deepfm_train.c.
 *
 * Request scoring splits the first MLP layer: its input is the sum of the
 * shared triples' field embeddings and the candidate's, so
 * W0 (e_shared + e_cand) + b0 = [W0 e_shared + b0] + W0 e_cand. The bracket
 * is computed once per request; each candidate multiplies only the columns of
 * the fields candidates use (the item's), one GEMM for the whole request,
 * with the bracket added as the bias. The FM part folds the shared triples in
 * once as fm.c does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deepfm_impl.h"
#include "fm_train.h"

#define INIT_V       0.05f
#define PREDICT_ROWS 2048 /* rows per forward pass when predicting a dataset */

struct dfm_ctx {
    dfm_ctx *next;
    fn_backend *b; /* CPU, one thread: requests run side by side, not split */
    float *buf;
    size_t cap; /* floats in buf */
};

/* ---- the sparse part ---- */

void dfm_sparse_add(const deepfm *f, const fn_feature_triple *x, size_t nx, const int32_t *pos,
                    float *lin, float *S, float *Q, float *e)
{
    const int k = f->k;
    const float *w = f->P + f->lin_off, *V = f->P + f->emb_off;
    for (size_t i = 0; i < nx; i++) {
        if (x[i].index >= f->n || x[i].field >= f->F) continue;
        const float xv = x[i].value, *v = V + (size_t)x[i].index * k;
        *lin += w[x[i].index] * xv;
        float *ef = !e ? NULL : e + (pos ? (size_t)pos[x[i].field] : (size_t)x[i].field * k);
        for (int d = 0; d < k; d++) {
            float vx = v[d] * xv;
            S[d] += vx;
            Q[d] += vx * vx;
            if (ef) ef[d] += vx;
        }
    }
}

float dfm_fm_logit(const deepfm *f, float lin, const float *S, const float *Q)
{
    float t = 0;
    for (int d = 0; d < f->k; d++) t += S[d] * S[d] - Q[d];
    return f->P[0] + lin + 0.5f * t;
}

void dfm_tensor_name(const deepfm *f, int layer, int is_bias, char *out, size_t cap)
{
    const char *what = is_bias ? "bias" : "weight";
    if (layer == f->L - 1)
        snprintf(out, cap, "mlp.out.%s", what);
    else
        snprintf(out, cap, "mlp.%d.%s", layer, what);
}

/* ---- the model ---- */

static size_t pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static void release(fn_model *m);

static fn_status init_parts(fn_model *m, fn_error *err);

/* On failure the half-made model is released here (model.c frees only m). */
static fn_status init(fn_model *m, fn_error *err)
{
    fn_status st = init_parts(m, err);
    if (st != FN_OK) release(m);
    return st;
}

static fn_status init_parts(fn_model *m, fn_error *err)
{
    const fn_train_options *hp = &m->hp;
    if (hp->n_hidden < 0 || hp->n_hidden > FN_MAX_HIDDEN)
        return fn_error_set(err, FN_ERR_INVALID, "deepfm: %d hidden layers (at most %d)",
                            hp->n_hidden, FN_MAX_HIDDEN);
    if ((uint64_t)m->n_fields * (uint64_t)hp->k > (1u << 20))
        return fn_error_set(err, FN_ERR_INVALID,
                            "deepfm: %u fields x k %d make an MLP input of more than %u floats",
                            m->n_fields, hp->k, 1u << 20);
    if (!(hp->dropout >= 0 && hp->dropout < 1))
        return fn_error_set(err, FN_ERR_INVALID, "deepfm: dropout must be in [0, 1), not %g",
                            (double)hp->dropout);
    deepfm *f = calloc(1, sizeof *f);
    if (!f) return fn_error_set(err, FN_ERR_NOMEM, "deepfm: out of memory");
    m->impl = f;
    pthread_mutex_init(&f->lock, NULL);
    f->n = m->n_features;
    f->k = hp->k;
    f->F = m->n_fields;
    f->act = hp->relu ? FN_ACT_RELU : FN_ACT_GELU;
    f->L = hp->n_hidden + 1;
    f->dims[0] = (int64_t)f->F * f->k;
    for (int i = 0; i < hp->n_hidden; i++) f->dims[i + 1] = hp->hidden[i];
    f->dims[f->L] = 1;

    f->lin_off = 16;
    if (f->n < SIZE_MAX / sizeof(float) / ((size_t)f->k + 1) - 64) {
        f->emb_off = f->lin_off + pad16((size_t)f->n);
        f->n_param = f->emb_off + (size_t)f->n * (size_t)f->k;
        f->P = fn_fm_alloc(f->n_param);
    }
    if (!f->P)
        return fn_error_set(err, FN_ERR_NOMEM, "deepfm: no memory for %llu features x k %d",
                            (unsigned long long)f->n, f->k);
    uint64_t state = hp->seed;
    float *V = f->P + f->emb_off;
    for (size_t i = 0; i < (size_t)f->n * (size_t)f->k; i++)
        V[i] = INIT_V * (2.0f * fn_rng_uniform(&state) - 1.0f);

    fn_status st = fn_backend_cpu_new(1, FN_CPU_BEST, &f->home, err);
    if (st != FN_OK) return st;
    /* PyTorch's Linear initialisation: weights and biases uniform in +-1/sqrt(fan_in). */
    for (int l = 0; l < f->L; l++) {
        int64_t wd[2] = {f->dims[l + 1], f->dims[l]}, bd = f->dims[l + 1];
        if ((st = fn_tensor_new(f->home, FN_F32, 2, wd, &f->W[l], err)) ||
            (st = fn_tensor_new(f->home, FN_F32, 1, &bd, &f->b[l], err)))
            return fn_error_prefix(err, "deepfm: layer %d", l);
        float bound = 1.0f / sqrtf((float)f->dims[l]), *w = f->W[l]->data, *b = f->b[l]->data;
        for (int64_t i = 0; i < wd[0] * wd[1]; i++)
            w[i] = bound * (2.0f * fn_rng_uniform(&state) - 1.0f);
        for (int64_t i = 0; i < bd; i++) b[i] = bound * (2.0f * fn_rng_uniform(&state) - 1.0f);
    }
    return FN_OK;
}

static void release(fn_model *m)
{
    deepfm *f = m->impl;
    if (!f) return;
    for (dfm_ctx *c = f->idle, *next; c; c = next) {
        next = c->next;
        fn_backend_free(c->b);
        free(c->buf);
        free(c);
    }
    for (int l = 0; l < f->L; l++) {
        fn_tensor_free(f->W[l]);
        fn_tensor_free(f->b[l]);
    }
    fn_backend_free(f->home);
    pthread_mutex_destroy(&f->lock);
    free(f->P);
    free(f);
    m->impl = NULL;
}

/* ---- the MLP on host buffers ---- */

static fn_act layer_act(const deepfm *f, int l)
{
    return l < f->L - 1 ? f->act : FN_ACT_NONE;
}

/*
 * Runs layers first.. of the MLP on n rows: in holds layer `first`'s input
 * ([n, dims[first]]); a and b are scratch of n x (widest layer) floats; the
 * logits go to out [n].
 */
static fn_status run_layers(fn_backend *be, const deepfm *f, int first, float *in, int64_t n,
                            float *a, float *b, float *out, fn_error *err)
{
    for (int l = first; l < f->L; l++) {
        int64_t xd[2] = {n, f->dims[l]}, yd[2] = {n, f->dims[l + 1]};
        float *y = l == f->L - 1 ? out : (in == a ? b : a);
        fn_tensor x = fn_tensor_host(FN_F32, 2, xd, in), t = fn_tensor_host(FN_F32, 2, yd, y);
        fn_status st = fn_op_linear(be, &x, f->W[l], f->b[l], layer_act(f, l), &t, err);
        if (st != FN_OK) return fn_error_prefix(err, "deepfm: layer %d", l);
        in = y;
    }
    return FN_OK;
}

static int64_t widest(const deepfm *f)
{
    int64_t w = 1;
    for (int l = 0; l <= f->L; l++)
        if (f->dims[l] > w) w = f->dims[l];
    return w;
}

fn_status dfm_predict_rows(const fn_model *m, const fn_dataset *d, size_t r0, size_t n, int threads,
                           float *out, fn_error *err)
{
    const deepfm *f = m->impl;
    const size_t D = (size_t)f->dims[0], W = (size_t)widest(f), k = (size_t)f->k;
    size_t rows = n < PREDICT_ROWS ? n : PREDICT_ROWS;
    float *X = malloc(rows * (D + 2 * W + 1) * sizeof *X), *A = X + rows * D, *B = A + rows * W,
          *fmv = B + rows * W;
    float *SQ = malloc(2 * k * sizeof *SQ);
    fn_backend *be = NULL;
    fn_status st = FN_OK;
    if (!X || !SQ) {
        st = fn_error_set(err, FN_ERR_NOMEM, "deepfm: out of memory for %zu rows", rows);
        goto done;
    }
    if ((st = fn_backend_cpu_new(threads, FN_CPU_BEST, &be, err)) != FN_OK) goto done;
    for (size_t lo = 0; lo < n; lo += rows) {
        size_t nb = n - lo < rows ? n - lo : rows;
        memset(X, 0, nb * D * sizeof *X);
        for (size_t i = 0; i < nb; i++) {
            size_t r = r0 + lo + i;
            float lin = 0;
            memset(SQ, 0, 2 * k * sizeof *SQ);
            dfm_sparse_add(f, d->triples + d->offsets[r], d->offsets[r + 1] - d->offsets[r], NULL,
                           &lin, SQ, SQ + k, X + i * D);
            fmv[i] = dfm_fm_logit(f, lin, SQ, SQ + k);
        }
        if ((st = run_layers(be, f, 0, X, (int64_t)nb, A, B, out + lo, err)) != FN_OK) goto done;
        for (size_t i = 0; i < nb; i++) out[lo + i] = fn_sigmoid(fmv[i] + out[lo + i]);
    }
done:
    fn_backend_free(be);
    free(X);
    free(SQ);
    return st;
}

/* Threads split the GEMMs; the sum order in a row can depend on the split, so a count other
   than the one used in training validation may change the last bits. */
static fn_status predict_all(const fn_model *m, const fn_dataset *d, int threads, float *out,
                             fn_error *err)
{
    return dfm_predict_rows(m, d, 0, d->n, threads, out, err);
}

/* ---- per-request scoring ---- */

static fn_status ctx_take(deepfm *f, dfm_ctx **out, fn_error *err)
{
    pthread_mutex_lock(&f->lock);
    dfm_ctx *c = f->idle;
    if (c) f->idle = c->next;
    pthread_mutex_unlock(&f->lock);
    if (!c) {
        if (!(c = calloc(1, sizeof *c)))
            return fn_error_set(err, FN_ERR_NOMEM, "deepfm: out of memory");
        fn_status st = fn_backend_cpu_new(1, FN_CPU_BEST, &c->b, err);
        if (st != FN_OK) {
            free(c);
            return st;
        }
    }
    *out = c;
    return FN_OK;
}

static void ctx_give(deepfm *f, dfm_ctx *c)
{
    pthread_mutex_lock(&f->lock);
    c->next = f->idle;
    f->idle = c;
    pthread_mutex_unlock(&f->lock);
}

static int ctx_reserve(dfm_ctx *c, size_t floats)
{
    if (floats <= c->cap) return 1;
    float *p = malloc(floats * sizeof *p);
    if (!p) return 0;
    free(c->buf);
    c->buf = p;
    c->cap = floats;
    return 1;
}

/* The request once its buffers are laid out (see score). */
typedef struct req_bufs {
    float *e_shared; /* D: the shared triples' field embeddings */
    float *z;        /* h0: W0 e_shared + b0 */
    float *W0c;      /* h0 x Dc: W0's columns of the candidates' fields */
    float *Ec;       /* n x Dc: the candidates' own field embeddings, compacted */
    float *A, *B;    /* n x widest: layer outputs */
    float *fmv, *mlp;
    float *SQ;    /* 4 k: shared S, Q; candidate S, Q */
    int32_t *pos; /* F: a field's column in Ec, or -1 */
} req_bufs;

static fn_status score_with(const deepfm *f, dfm_ctx *c, const fn_score_request *q, float *out,
                            fn_error *err)
{
    const size_t k = (size_t)f->k, D = (size_t)f->dims[0], n = q->n_cand, h0 = (size_t)f->dims[1],
                 W = (size_t)widest(f);
    req_bufs r;
    size_t need = D + h0 + h0 * D + n * D + 2 * n * W + 2 * n + 4 * k + f->F;
    if (!ctx_reserve(c, need))
        return fn_error_set(err, FN_ERR_NOMEM, "deepfm: out of memory for %zu candidates", n);
    r.e_shared = c->buf;
    r.z = r.e_shared + D;
    r.W0c = r.z + h0;
    r.Ec = r.W0c + h0 * D;
    r.A = r.Ec + n * D;
    r.B = r.A + n * W;
    r.fmv = r.B + n * W;
    r.mlp = r.fmv + n;
    r.SQ = r.mlp + n;
    r.pos = (int32_t *)(r.SQ + 4 * k); /* int32 and float have one size and alignment */

    /* The shared part: FM sums and W0 e_shared + b0. */
    float lin_s = 0;
    memset(r.e_shared, 0, D * sizeof(float));
    memset(r.SQ, 0, 2 * k * sizeof(float));
    dfm_sparse_add(f, q->shared, q->n_shared, NULL, &lin_s, r.SQ, r.SQ + k, r.e_shared);
    const float *W0 = f->W[0]->data;
    int64_t ed[2] = {1, (int64_t)D}, zd2[2] = {1, (int64_t)h0};
    fn_tensor Es = fn_tensor_host(FN_F32, 2, ed, r.e_shared),
              Zs = fn_tensor_host(FN_F32, 2, zd2, r.z);
    fn_status st = fn_op_linear(c->b, &Es, f->W[0], f->b[0], FN_ACT_NONE, &Zs, err);
    if (st != FN_OK) return fn_error_prefix(err, "deepfm: shared part of layer 0");

    /* The fields candidates use, and W0's columns for them. */
    for (uint32_t fl = 0; fl < f->F; fl++) r.pos[fl] = -1;
    size_t Dc = 0;
    for (size_t t = q->cand_offsets[0]; t < q->cand_offsets[n]; t++) {
        uint32_t fl = q->cand[t].field;
        if (fl < f->F && r.pos[fl] < 0) {
            r.pos[fl] = (int32_t)Dc;
            Dc += k;
        }
    }
    for (size_t o = 0; o < h0; o++)
        for (uint32_t fl = 0; fl < f->F; fl++)
            if (r.pos[fl] >= 0)
                memcpy(r.W0c + o * Dc + (size_t)r.pos[fl], W0 + o * D + (size_t)fl * k,
                       k * sizeof(float));

    /* Each candidate's own embeddings (compacted) and FM logit. */
    memset(r.Ec, 0, n * Dc * sizeof(float));
    float *S = r.SQ + 2 * k, *Q = S + k;
    for (size_t i = 0; i < n; i++) {
        float lin = lin_s;
        memcpy(S, r.SQ, 2 * k * sizeof(float));
        size_t t0 = q->cand_offsets[i], t1 = q->cand_offsets[i + 1];
        dfm_sparse_add(f, q->cand + t0, t1 - t0, r.pos, &lin, S, Q, r.Ec + i * Dc);
        r.fmv[i] = dfm_fm_logit(f, lin, S, Q);
    }

    /* First layer: Ec W0c^T + z, the activation; then the rest. */
    fn_act a0 = layer_act(f, 0);
    float *h1 = f->L == 1 ? r.mlp : r.A;
    int64_t hd[2] = {(int64_t)n, (int64_t)h0}, zd = (int64_t)h0;
    fn_tensor H = fn_tensor_host(FN_F32, 2, hd, h1), Z = fn_tensor_host(FN_F32, 1, &zd, r.z);
    if (Dc > 0) {
        int64_t ed[2] = {(int64_t)n, (int64_t)Dc}, wd[2] = {(int64_t)h0, (int64_t)Dc};
        fn_tensor E = fn_tensor_host(FN_F32, 2, ed, r.Ec),
                  Wc = fn_tensor_host(FN_F32, 2, wd, r.W0c);
        st = fn_op_gemm(c->b, &E, 0, &Wc, 1, &H, 1.0f, 0.0f, err);
    } else { /* no candidate triples: every row is the shared part */
        memset(h1, 0, n * h0 * sizeof(float));
        st = FN_OK;
    }
    if (st == FN_OK) st = fn_op_bias_act(c->b, &H, &Z, a0, err);
    if (st != FN_OK) return fn_error_prefix(err, "deepfm: layer 0");
    if (f->L > 1 && (st = run_layers(c->b, f, 1, r.A, (int64_t)n, r.A, r.B, r.mlp, err)) != FN_OK)
        return st;
    for (size_t i = 0; i < n; i++) out[i] = fn_sigmoid(r.fmv[i] + r.mlp[i]);
    return FN_OK;
}

static fn_status score(const fn_model *m, const fn_score_request *q, float *out, fn_error *err)
{
    if (q->n_cand == 0) return FN_OK;
    deepfm *f = m->impl;
    dfm_ctx *c = NULL;
    fn_status st = ctx_take(f, &c, err);
    if (st != FN_OK) return st;
    st = score_with(f, c, q, out, err);
    ctx_give(f, c);
    return st;
}

/* ---- files ---- */

/* "bias" [1], "linear" [n], "embedding" [n, k] as fm.c; then the MLP's layers. */
static fn_status save(const fn_model *m, fn_safetensors_writer *w, fn_error *err)
{
    const deepfm *f = m->impl;
    fn_status st = fn_rank_save_fm_block(w, f->P, f->lin_off, f->emb_off, f->n, f->k, err);
    for (int l = 0; l < f->L && st == FN_OK; l++) {
        char name[64];
        dfm_tensor_name(f, l, 0, name, sizeof name);
        st = fn_safetensors_writer_add(w, name, FN_ST_F32, 2, f->W[l]->ne, f->W[l]->data, err);
        dfm_tensor_name(f, l, 1, name, sizeof name);
        if (st == FN_OK)
            st = fn_safetensors_writer_add(w, name, FN_ST_F32, 1, f->b[l]->ne, f->b[l]->data, err);
    }
    return st;
}

static fn_status load(fn_model *m, const fn_safetensors *st, fn_error *err)
{
    deepfm *f = m->impl;
    fn_status s = fn_rank_load_fm_block(st, f->P, f->lin_off, f->emb_off, f->n, f->k, err);
    for (int l = 0; l < f->L && s == FN_OK; l++) {
        char name[64];
        dfm_tensor_name(f, l, 0, name, sizeof name);
        /* Straight into the tensors' host memory; nothing is packed from them yet. */
        s = fn_rank_load_f32(st, name, 2, f->W[l]->ne, f->W[l]->data, err);
        dfm_tensor_name(f, l, 1, name, sizeof name);
        if (s == FN_OK) s = fn_rank_load_f32(st, name, 1, f->b[l]->ne, f->b[l]->data, err);
    }
    return s;
}

static fn_status train(fn_model *m, const fn_train_options *o, const fn_dataset *t,
                       const fn_dataset *v, fn_train_report *r, fn_error *err)
{
    return dfm_train(m, o, t, v, r, err);
}

const fn_model_ops fn_deepfm_ops = {.kind = FN_MODEL_DEEPFM,
                                    .predict_all = predict_all,
                                    .init = init,
                                    .train = train,
                                    .predict = NULL,
                                    .score = score,
                                    .save = save,
                                    .load = load,
                                    .free = release};
