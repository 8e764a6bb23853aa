/*
 * train.c - training the reranker on lists: mini-batches of lists padded to
 * the batch's longest, the forward and backward passes on the kernel layer
 * (CPU or CUDA backend), a listwise loss on the host (the lists are short),
 * Adam, and validation NDCG with early stopping that keeps the best epoch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/rng.h"
#include "model_impl.h"

#define RR_LN_EPS 1e-5f

/* Gradients and Adam moments of every weight, and the activations' gradients. */
typedef struct trainer {
    fn_reranker *r;
    fn_backend *be; /* where the passes run: a threaded CPU backend, or the model's CUDA one */
    rr_acts *a;
    fn_tensor *g[RR_MAX_TENSORS], *m[RR_MAX_TENSORS], *v[RR_MAX_TENSORS];
    fn_tensor *ds, *dh, *dz, *dt, *da, *dff, *dqkv;
    float *host, *scores, *dscores, *zeros;
    int64_t cap_rows;
} trainer;

static fn_status trainer_new(trainer *tr, fn_reranker *r, int64_t cap_rows, fn_error *err)
{
    memset(tr, 0, sizeof *tr);
    tr->r = r;
    tr->cap_rows = cap_rows;
    fn_status st;
    if (fn_backend_device(r->be) == FN_DEVICE_CPU)
        st = fn_backend_cpu_new(r->o.threads, FN_CPU_BEST, &tr->be, err);
    else
        tr->be = r->be, st = FN_OK;
    if (st != FN_OK) return st;
    if ((st = rr_acts_new(tr->be, r, cap_rows, &tr->a, err)) != FN_OK) return st;
    size_t zeros = 0;
    for (int i = RR_IN_W; i < r->n_tensors && st == FN_OK; i++) {
        if (!r->ndim[i]) continue;
        const int64_t *sh = r->shape[i];
        const size_t n = (size_t)(r->ndim[i] == 2 ? sh[0] * sh[1] : sh[0]);
        if (n > zeros) zeros = n;
        if ((st = fn_tensor_new(tr->be, FN_F32, r->ndim[i], sh, &tr->g[i], err)) ||
            (st = fn_tensor_new(tr->be, FN_F32, r->ndim[i], sh, &tr->m[i], err)) ||
            (st = fn_tensor_new(tr->be, FN_F32, r->ndim[i], sh, &tr->v[i], err)))
            return st;
    }
    const int64_t d = r->o.d_model, ff = r->o.d_ff;
    if (zeros < (size_t)(cap_rows * 3 * d)) zeros = (size_t)(cap_rows * 3 * d);
#define NEW2(t, cols)                                                                              \
    if (st == FN_OK) st = fn_tensor_new(tr->be, FN_F32, 2, (int64_t[]){cap_rows, (cols)}, &(t), err)
    NEW2(tr->ds, 1);
    NEW2(tr->dh, d);
    NEW2(tr->dz, d);
    NEW2(tr->dt, d);
    NEW2(tr->da, d);
    NEW2(tr->dff, ff);
    NEW2(tr->dqkv, 3 * d);
#undef NEW2
    if (st != FN_OK) return st;
    tr->host = malloc((size_t)cap_rows * (r->F + 2) * sizeof *tr->host);
    tr->scores = malloc((size_t)cap_rows * sizeof *tr->scores);
    tr->dscores = malloc((size_t)cap_rows * sizeof *tr->dscores);
    tr->zeros = calloc(zeros, sizeof *tr->zeros);
    if (!tr->host || !tr->scores || !tr->dscores || !tr->zeros)
        return fn_error_set(err, FN_ERR_NOMEM, "rerank train: out of memory");
    /* Adam's moments start at zero. */
    for (int i = RR_IN_W; i < r->n_tensors && st == FN_OK; i++) {
        if (!r->ndim[i]) continue;
        const size_t nb = fn_tensor_nbytes(tr->m[i]);
        if ((st = fn_tensor_write(tr->m[i], tr->zeros, nb, err)) == FN_OK)
            st = fn_tensor_write(tr->v[i], tr->zeros, nb, err);
    }
    return st;
}

static void trainer_free(trainer *tr)
{
    rr_acts_free(tr->a);
    for (int i = 0; i < RR_MAX_TENSORS; i++) {
        fn_tensor_free(tr->g[i]);
        fn_tensor_free(tr->m[i]);
        fn_tensor_free(tr->v[i]);
    }
    fn_tensor *t[] = {tr->ds, tr->dh, tr->dz, tr->dt, tr->da, tr->dff, tr->dqkv};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) fn_tensor_free(t[i]);
    if (tr->r && tr->be != tr->r->be) fn_backend_free(tr->be);
    free(tr->host);
    free(tr->scores);
    free(tr->dscores);
    free(tr->zeros);
}

/* ---- losses (host) ---- */

/* ListNet's top-one form: cross-entropy of softmax(scores) against softmax(labels). */
static double listnet(const float *s, const float *y, int64_t n, float scale, float *ds)
{
    double smax = -INFINITY, ymax = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (s[i] > smax) smax = s[i];
        if (y[i] > ymax) ymax = y[i];
    }
    double zs = 0, zy = 0;
    for (int64_t i = 0; i < n; i++) {
        zs += exp(s[i] - smax);
        zy += exp(y[i] - ymax);
    }
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        const double p = exp(s[i] - smax) / zs, t = exp(y[i] - ymax) / zy;
        loss -= t * (s[i] - smax - log(zs));
        ds[i] = (float)(scale * (p - t));
    }
    return loss;
}

typedef struct by_score {
    float s;
    int64_t i;
} by_score;

static int cmp_desc(const void *a, const void *b)
{
    const by_score *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * LambdaRank (Burges, "From RankNet to LambdaRank to LambdaMART"): for each
 * pair with y_i > y_j, a logistic loss on s_i - s_j weighted by |delta
 * NDCG@k| of swapping the two at their current ranks (0 when both are below
 * k). work holds n by_score and n ranks.
 */
static double lambdarank(const float *s, const float *y, int64_t n, int k, float scale, float *ds,
                         by_score *work, int64_t *rank)
{
    for (int64_t i = 0; i < n; i++) ds[i] = 0;
    /* ideal DCG@k from the labels */
    for (int64_t i = 0; i < n; i++) work[i] = (by_score){y[i], i};
    qsort(work, (size_t)n, sizeof *work, cmp_desc);
    double idcg = 0;
    for (int64_t p = 0; p < n && p < k; p++) idcg += (exp2(work[p].s) - 1) / log2((double)p + 2);
    if (idcg <= 0) return 0;
    for (int64_t i = 0; i < n; i++) work[i] = (by_score){s[i], i};
    qsort(work, (size_t)n, sizeof *work, cmp_desc);
    for (int64_t p = 0; p < n; p++) rank[work[p].i] = p;
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            if (!(y[i] > y[j])) continue;
            const double di = rank[i] < k ? 1 / log2((double)rank[i] + 2) : 0,
                         dj = rank[j] < k ? 1 / log2((double)rank[j] + 2) : 0;
            const double delta = fabs((exp2(y[i]) - exp2(y[j])) * (di - dj)) / idcg;
            if (delta == 0) continue;
            const double z = (double)s[i] - s[j];
            /* log(1 + e^-z) and its slope, stable for large |z| */
            loss += delta * (z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z)));
            const double rho = 1 / (1 + exp(z));
            ds[i] -= (float)(scale * delta * rho);
            ds[j] += (float)(scale * delta * rho);
        }
    }
    return loss;
}

/* ---- one step ---- */

#define TRY(call)                                                                                  \
    do {                                                                                           \
        if ((st = (call)) != FN_OK) return st;                                                     \
    } while (0)

static fn_status backward(trainer *tr, float p, uint64_t seed, fn_error *err)
{
    fn_reranker *r = tr->r;
    fn_backend *be = tr->be;
    rr_acts *a = tr->a;
    fn_tensor **w = r->t, **g = tr->g;
    const int64_t B = a->B, T = a->T, R = B * T, d = r->o.d_model;
    fn_status st;
    fn_tensor ds = rr_rows(tr->ds, R), dh = rr_rows(tr->dh, R), dz = rr_rows(tr->dz, R),
              dt = rr_rows(tr->dt, R), da = rr_rows(tr->da, R), dff = rr_rows(tr->dff, R),
              dqkv = rr_rows(tr->dqkv, R);
    fn_tensor da3 = fn_tensor_view(tr->da, 3, (int64_t[]){B, T, d}),
              dqkv3 = fn_tensor_view(tr->dqkv, 3, (int64_t[]){B, T, 3 * d});
    fn_tensor mask = fn_tensor_view(a->mask, 2, (int64_t[]){B, T});
    const int L = r->o.n_layers;
    fn_tensor top = rr_rows(L ? a->l[L - 1].out : a->h0, R);
    TRY(fn_op_gemm(be, &ds, 1, &top, 0, g[RR_SC_W], 1, 0, err));
    TRY(fn_op_sum_rows(be, &ds, 0, g[RR_SC_B], err));
    TRY(fn_op_gemm(be, &ds, 0, w[RR_SC_W], 0, &dh, 1, 0, err));
    for (int l = L - 1; l >= 0; l--) {
        const rr_layer_acts *A = &a->l[l];
        fn_tensor *const *lw = w + RR_LT(l, 0);
        fn_tensor **lg = g + RR_LT(l, 0);
        fn_tensor in = rr_rows(l ? a->l[l - 1].out : a->h0, R);
        fn_tensor qkv3 = fn_tensor_view(A->qkv, 3, (int64_t[]){B, T, 3 * d});
        fn_tensor att = rr_rows(A->att, R), o = rr_rows(A->o, R), h1 = rr_rows(A->h1, R),
                  f1pre = rr_rows(A->f1pre, R), f1 = rr_rows(A->f1, R), f2 = rr_rows(A->f2, R);
        /* out = LN2(f2 + h1), f2 = drop(ff2(gelu(ff1(h1)))) */
        TRY(fn_op_layernorm_backward(be, &f2, &h1, lw[RL_LN2_W], RR_LN_EPS, &dh, &dz, lg[RL_LN2_W],
                                     lg[RL_LN2_B], err));
        TRY(fn_op_copy(be, &dz, &dt, err));
        if (p > 0) TRY(fn_op_dropout(be, &dt, p, rr_dropout_seed(seed, l, 1), err));
        TRY(fn_op_gemm(be, &dt, 1, &f1, 0, lg[RL_FF2_W], 1, 0, err));
        TRY(fn_op_sum_rows(be, &dt, 0, lg[RL_FF2_B], err));
        TRY(fn_op_gemm(be, &dt, 0, lw[RL_FF2_W], 0, &dff, 1, 0, err));
        TRY(fn_op_act_backward(be, &f1pre, &dff, FN_ACT_GELU, &dff, err));
        TRY(fn_op_gemm(be, &dff, 1, &h1, 0, lg[RL_FF1_W], 1, 0, err));
        TRY(fn_op_sum_rows(be, &dff, 0, lg[RL_FF1_B], err));
        TRY(fn_op_gemm(be, &dff, 0, lw[RL_FF1_W], 0, &dh, 1, 0, err));
        TRY(fn_op_axpy(be, 1, &dz, &dh, err)); /* h1's residual path */
        /* h1 = LN1(o + in), o = drop(out(attention(qkv(in)))) */
        TRY(fn_op_layernorm_backward(be, &o, &in, lw[RL_LN1_W], RR_LN_EPS, &dh, &dz, lg[RL_LN1_W],
                                     lg[RL_LN1_B], err));
        TRY(fn_op_copy(be, &dz, &dt, err));
        if (p > 0) TRY(fn_op_dropout(be, &dt, p, rr_dropout_seed(seed, l, 0), err));
        TRY(fn_op_gemm(be, &dt, 1, &att, 0, lg[RL_OUT_W], 1, 0, err));
        TRY(fn_op_sum_rows(be, &dt, 0, lg[RL_OUT_B], err));
        TRY(fn_op_gemm(be, &dt, 0, lw[RL_OUT_W], 0, &da, 1, 0, err));
        TRY(fn_op_attention_backward(be, &qkv3, &mask, r->o.n_heads, &da3, &dqkv3, err));
        TRY(fn_op_gemm(be, &dqkv, 1, &in, 0, lg[RL_QKV_W], 1, 0, err));
        TRY(fn_op_sum_rows(be, &dqkv, 0, lg[RL_QKV_B], err));
        TRY(fn_op_gemm(be, &dqkv, 0, lw[RL_QKV_W], 0, &dh, 1, 0, err));
        TRY(fn_op_axpy(be, 1, &dz, &dh, err)); /* in's residual path */
    }
    fn_tensor x = rr_rows(a->x, R);
    if (r->o.positions) {
        /* position t's gradient: the sum over the batch's lists of their row t */
        fn_tensor dh_lists = fn_tensor_view(tr->dh, 2, (int64_t[]){B, T * d});
        int64_t td = T * d;
        fn_tensor gpos = fn_tensor_view(g[RR_POS], 1, &td);
        TRY(fn_tensor_write(g[RR_POS], tr->zeros, fn_tensor_nbytes(g[RR_POS]), err));
        TRY(fn_op_sum_rows(be, &dh_lists, 0, &gpos, err));
    }
    TRY(fn_op_gemm(be, &dh, 1, &x, 0, g[RR_IN_W], 1, 0, err));
    TRY(fn_op_sum_rows(be, &dh, 0, g[RR_IN_B], err));
    return FN_OK;
}

static fn_status adam_step(trainer *tr, int64_t step, fn_error *err)
{
    fn_reranker *r = tr->r;
    const fn_adam opt = {
        .lr = r->o.lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .l2 = r->o.l2, .step = step};
    fn_status st = FN_OK;
    for (int i = RR_IN_W; i < r->n_tensors && st == FN_OK; i++)
        if (r->ndim[i]) st = fn_op_adam(tr->be, r->t[i], tr->g[i], tr->m[i], tr->v[i], &opt, err);
    return st;
}

/*
 * One mini-batch: forward, loss and its gradient on the host, backward, and (step > 0) an Adam
 * step; dropout p.
 */
static fn_status train_batch(trainer *tr, const fn_listset *d, const size_t *lists, int64_t B,
                             int64_t step, float p, uint64_t seed, double *loss, by_score *work,
                             int64_t *rank, fn_error *err)
{
    fn_reranker *r = tr->r;
    const float *feats[4096];
    int64_t len[4096], T = 1;
    for (int64_t b = 0; b < B; b++) {
        const uint64_t lo = d->offsets[lists[b]], hi = d->offsets[lists[b] + 1];
        feats[b] = d->features + lo * d->n_features;
        len[b] = (int64_t)(hi - lo) < r->o.max_items ? (int64_t)(hi - lo) : r->o.max_items;
        if (len[b] > T) T = len[b];
    }
    fn_status st;
    TRY(rr_acts_load(tr->a, r, feats, len, B, T, 1, tr->host, err));
    TRY(rr_forward(tr->be, r, r->t, tr->a, p, seed, err));
    const int64_t R = B * T;
    fn_tensor s = rr_rows(tr->a->score, R);
    TRY(fn_tensor_read(&s, tr->scores, (size_t)R * sizeof *tr->scores, err));
    const float scale = 1.0f / (float)B;
    for (int64_t i = 0; i < R; i++) tr->dscores[i] = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *y = d->labels + d->offsets[lists[b]];
        const float *sc = tr->scores + b * T;
        float *g = tr->dscores + b * T;
        *loss += r->o.loss == FN_RERANK_LISTNET
                     ? listnet(sc, y, len[b], scale, g)
                     : lambdarank(sc, y, len[b], r->o.lambda_k ? r->o.lambda_k : (int)len[b], scale,
                                  g, work, rank);
    }
    fn_tensor ds = rr_rows(tr->ds, R);
    TRY(fn_tensor_write(&ds, tr->dscores, (size_t)R * sizeof *tr->dscores, err));
    TRY(backward(tr, p, seed, err));
    return step > 0 ? adam_step(tr, step, err) : FN_OK;
}

/* ---- the loop ---- */

/* Per-feature mean and 1 / standard deviation over the training items (1 for a constant). */
static fn_status standardise(const fn_listset *d, float *mean, float *scale, fn_error *err)
{
    const size_t F = d->n_features;
    double *s = calloc(2 * F, sizeof *s);
    if (!s) return fn_error_set(err, FN_ERR_NOMEM, "rerank train: out of memory");
    for (size_t i = 0; i < d->n_items; i++)
        for (size_t j = 0; j < F; j++) {
            const double x = d->features[i * F + j];
            s[j] += x;
            s[F + j] += x * x;
        }
    for (size_t j = 0; j < F; j++) {
        const double m = s[j] / (double)d->n_items, var = s[F + j] / (double)d->n_items - m * m;
        mean[j] = (float)m;
        scale[j] = var > 1e-12 ? (float)(1 / sqrt(var)) : 1.0f;
    }
    free(s);
    return FN_OK;
}

static double valid_ndcg(fn_reranker *r, const fn_listset *valid, float *scores, fn_status *st,
                         fn_error *err)
{
    if ((*st = rr_fold(r, err)) != FN_OK) return NAN;
    if ((*st = fn_reranker_predict(r, valid, scores, err)) != FN_OK) return NAN;
    double sum = 0;
    for (size_t i = 0; i < valid->n_lists; i++) {
        const uint64_t lo = valid->offsets[i], n = valid->offsets[i + 1] - lo;
        sum += fn_metric_ndcg(scores + lo, valid->labels + lo, n, r->o.ndcg_k);
    }
    return valid->n_lists ? sum / (double)valid->n_lists : NAN;
}

/* Host copies of every weight (the best epoch's), or back into the model. */
static fn_status snapshot(fn_reranker *r, float **keep, int restore, fn_error *err)
{
    fn_status st = FN_OK;
    for (int i = RR_IN_W; i < r->n_tensors && st == FN_OK; i++) {
        if (!r->ndim[i]) continue;
        const size_t nb = fn_tensor_nbytes(r->t[i]);
        if (!keep[i] && !(keep[i] = malloc(nb)))
            return fn_error_set(err, FN_ERR_NOMEM, "rerank train: out of memory");
        st = restore ? fn_tensor_write(r->t[i], keep[i], nb, err)
                     : fn_tensor_read(r->t[i], keep[i], nb, err);
    }
    return st;
}

static fn_status check_data(const fn_listset *d, const char *what, uint32_t F, fn_error *err)
{
    if (!d->n_lists || !d->n_items)
        return fn_error_set(err, FN_ERR_INVALID, "rerank train: the %s data has no lists", what);
    if (d->n_features != F)
        return fn_error_set(err, FN_ERR_INVALID,
                            "rerank train: the %s data has %u features, the training data %u "
                            "(read both with the same width)",
                            what, d->n_features, F);
    return FN_OK;
}

fn_status fn_reranker_train(const fn_rerank_options *o, const fn_listset *train,
                            const fn_listset *valid, fn_reranker **out, fn_rerank_report *rep,
                            fn_error *err)
{
    *out = NULL;
    fn_status st = check_data(train, "training", train->n_features, err);
    if (st == FN_OK && valid) st = check_data(valid, "validation", train->n_features, err);
    if (st != FN_OK) return st;
    const uint32_t F = train->n_features;
    float *mean = malloc(F * sizeof *mean), *scale = malloc(F * sizeof *scale);
    size_t *order = malloc(train->n_lists * sizeof *order);
    by_score *work = malloc((size_t)o->max_items * sizeof *work);
    int64_t *rank = malloc((size_t)o->max_items * sizeof *rank);
    float *vscores = valid ? malloc(valid->n_items * sizeof *vscores) : NULL;
    float *keep[RR_MAX_TENSORS] = {0};
    fn_reranker *r = NULL;
    trainer tr = {0};
    if (!mean || !scale || !order || !work || !rank || (valid && !vscores)) {
        st = fn_error_set(err, FN_ERR_NOMEM, "rerank train: out of memory");
        goto done;
    }
    if ((st = standardise(train, mean, scale, err)) != FN_OK) goto done;
    if ((st = rr_new(o, F, mean, scale, &r, err)) != FN_OK) goto done;
    if ((st = trainer_new(&tr, r, (int64_t)o->batch * o->max_items, err)) != FN_OK) goto done;
    uint64_t rng = o->seed ^ 0x5851f42d4c957f2dull;
    int64_t step = 0;
    int best = 0, since = 0, epoch = 0;
    double best_ndcg = -INFINITY, loss = 0;
    const double t0 = (double)fn_now_ns() * 1e-9;
    fn_progress *bar = NULL;
    for (epoch = 1; epoch <= o->epochs; epoch++) {
        fn_rng_shuffle(order, train->n_lists, &rng);
        if (o->progress) {
            char label[48];
            snprintf(label, sizeof label, "epoch %d/%d lists", epoch, o->epochs);
            bar = fn_progress_new(label, train->n_lists);
        }
        loss = 0;
        for (size_t i0 = 0; i0 < train->n_lists; i0 += (size_t)o->batch) {
            const size_t B =
                train->n_lists - i0 < (size_t)o->batch ? train->n_lists - i0 : (size_t)o->batch;
            step++;
            st = train_batch(&tr, train, order + i0, (int64_t)B, step, o->dropout,
                             rr_dropout_seed(o->seed, 100, (int)(step & 0x3fffffff)), &loss, work,
                             rank, err);
            if (st != FN_OK) break;
            if (bar) {
                char extra[48];
                snprintf(extra, sizeof extra, "loss %.4f", loss / (double)(i0 + B));
                fn_progress_update(bar, i0 + B, extra);
            }
        }
        fn_progress_finish(bar);
        bar = NULL;
        if (st != FN_OK) goto done;
        loss /= (double)train->n_lists;
        if (!isfinite(loss)) {
            st = fn_error_set(err, FN_ERR_INVALID,
                              "rerank train: the loss diverged at epoch %d (%g); lower the "
                              "learning rate",
                              epoch, loss);
            goto done;
        }
        const double nd = valid ? valid_ndcg(r, valid, vscores, &st, err) : NAN;
        if (st != FN_OK) goto done;
        if (o->on_epoch) o->on_epoch(epoch, loss, nd, o->on_epoch_ctx);
        if (!valid) {
            fn_log(FN_LOG_DEBUG, "rerank epoch %d/%d loss %.6f", epoch, o->epochs, loss);
            continue;
        }
        fn_log(FN_LOG_DEBUG, "rerank epoch %d/%d loss %.6f valid ndcg@%d %.6f", epoch, o->epochs,
               loss, o->ndcg_k, nd);
        if (o->progress)
            fprintf(stderr, "epoch %d/%d loss %.5f valid ndcg@%d %.5f\n", epoch, o->epochs, loss,
                    o->ndcg_k, nd);
        if (nd > best_ndcg) {
            best_ndcg = nd, best = epoch, since = 0;
            if ((st = snapshot(r, keep, 0, err)) != FN_OK) goto done;
        } else if (++since >= o->patience) {
            epoch++;
            break;
        }
    }
    epoch--;
    if (valid && best && best != epoch && (st = snapshot(r, keep, 1, err)) != FN_OK) goto done;
    if ((st = rr_warm(r, err)) != FN_OK) goto done;
    if (rep) {
        const double secs = (double)fn_now_ns() * 1e-9 - t0;
        *rep = (fn_rerank_report){
            .epochs_run = epoch,
            .best_epoch = valid ? best : epoch,
            .best_valid_ndcg = valid ? best_ndcg : NAN,
            .train_loss = loss,
            .lists_per_s = secs > 0 ? (double)train->n_lists * epoch / secs : 0,
        };
    }
done:
    trainer_free(&tr);
    for (int i = 0; i < RR_MAX_TENSORS; i++) free(keep[i]);
    free(mean);
    free(scale);
    free(order);
    free(work);
    free(rank);
    free(vscores);
    if (st != FN_OK) {
        fn_reranker_free(r);
        return st;
    }
    *out = r;
    return FN_OK;
}

fn_status rr_batch_grads(fn_reranker *r, const fn_listset *d, const size_t *lists, int64_t B,
                         double *loss, float **grads, fn_error *err)
{
    trainer tr = {0};
    by_score *work = malloc((size_t)r->o.max_items * sizeof *work);
    int64_t *rank = malloc((size_t)r->o.max_items * sizeof *rank);
    fn_status st = work && rank ? trainer_new(&tr, r, B * r->o.max_items, err)
                                : fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    *loss = 0;
    if (st == FN_OK) st = train_batch(&tr, d, lists, B, 0, 0, 0, loss, work, rank, err);
    for (int i = RR_IN_W; st == FN_OK && grads && i < r->n_tensors; i++)
        if (r->ndim[i]) st = fn_tensor_read(tr.g[i], grads[i], fn_tensor_nbytes(tr.g[i]), err);
    trainer_free(&tr);
    free(work);
    free(rank);
    return st;
}
