/*
 * deepfm_train.c - DeepFM training: shuffled mini-batches, the MLP's forward
 * and backward passes on the kernel layer (the CPU backend, or CUDA when
 * asked), validation every epoch with early stopping and the best epoch
 * kept.
 *
 * A batch: the host sums each example's sparse part (FM terms and field
 * embeddings, deepfm.c), the backend runs the MLP on the field embeddings
 * (GEMM, bias, activation, dropout; then the same backwards), and the host
 * adds the gradient that comes back for the embeddings to the FM part's own
 * and updates the bias and the rows the batch touched: by AdaGrad as FM's and
 * FFM's (accumulators from 1, the batch's summed gradient, so a learning rate
 * means what it does for FM whatever the batch size), or with
 * --sparse-optimizer adam by lazy Adam (a row's moments move only when a
 * batch uses it, as TensorFlow's LazyAdam, with the bias correction of the
 * global step). The MLP trains by plain Adam on the backend. Adam moves a
 * weight by about lr a step whatever the size of its gradient; AdaGrad's
 * steps are in proportion to it, which fits features seen a few times by
 * what they showed. L2 is added to the gradient of every weight updated. The
 * bias starts at the log-odds of the training labels. The loss is the
 * batch's mean log loss.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/progress.h"
#include "deepfm_impl.h"
#include "fm_train.h"

#define ADAM_BETA1 0.9f
#define ADAM_BETA2 0.999f
#define ADAM_EPS   1e-8f

typedef struct trainer {
    fn_model *m;
    deepfm *f;
    const fn_train_options *o;
    fn_backend *b;
    int L;
    int64_t cap; /* rows of a batch */
    /* The MLP on b: parameters, gradients, Adam's moments. */
    fn_tensor *W[DFM_MAX_LAYERS], *bias[DFM_MAX_LAYERS];
    fn_tensor *gW[DFM_MAX_LAYERS], *gb[DFM_MAX_LAYERS];
    fn_tensor *mW[DFM_MAX_LAYERS], *vW[DFM_MAX_LAYERS], *mb[DFM_MAX_LAYERS], *vb[DFM_MAX_LAYERS];
    /* Activations of a batch: x [cap, D]; per hidden layer pre-activation, output and its
       gradient; the output layer's logits and their gradient. */
    fn_tensor *x, *dx, *pre[FN_MAX_HIDDEN], *h[FN_MAX_HIDDEN], *dh[FN_MAX_HIDDEN], *out, *dout;
    /* Host side of a batch. */
    float *X, *dX, *S, *fmv, *mlp, *g;
    /* The sparse part's gradient and Adam's moments (AdaGrad: its accumulators in vP, no mP),
       in the layout of f->P. */
    float *gP, *mP, *vP;
    uint8_t *mark;
    uint64_t *touched;
    size_t n_touched;
    int64_t step;
    /* Host copies of the MLP: the current weights and the best epoch's. */
    float *cur, *best, *bestP;
    size_t mlp_floats;
} trainer;

static fn_tensor rows_view(const fn_tensor *t, int64_t rows)
{
    int64_t d[2] = {rows, t->ne[1]};
    return fn_tensor_view(t, 2, d);
}

static fn_status new_tensor(fn_backend *b, int64_t r, int64_t c, fn_tensor **t, fn_error *err)
{
    int64_t d[2] = {r, c};
    return c ? fn_tensor_new(b, FN_F32, 2, d, t, err) : fn_tensor_new(b, FN_F32, 1, d, t, err);
}

static fn_status zeroed(fn_backend *b, const fn_tensor *like, fn_tensor **t, fn_error *err)
{
    fn_status st = like->ndim == 2 ? new_tensor(b, like->ne[0], like->ne[1], t, err)
                                   : new_tensor(b, like->ne[0], 0, t, err);
    if (st != FN_OK) return st;
    size_t n = fn_tensor_nbytes(*t);
    void *z = calloc(1, n);
    if (!z) return fn_error_set(err, FN_ERR_NOMEM, "deepfm train: out of memory");
    st = fn_tensor_write(*t, z, n, err);
    free(z);
    return st;
}

static void trainer_free(trainer *t)
{
    for (int l = 0; l < DFM_MAX_LAYERS; l++) {
        fn_tensor *all[] = {t->W[l],  t->bias[l], t->gW[l], t->gb[l],
                            t->mW[l], t->vW[l],   t->mb[l], t->vb[l]};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) fn_tensor_free(all[i]);
    }
    for (int l = 0; l < FN_MAX_HIDDEN; l++) {
        fn_tensor_free(t->pre[l]);
        fn_tensor_free(t->h[l]);
        fn_tensor_free(t->dh[l]);
    }
    fn_tensor_free(t->x);
    fn_tensor_free(t->dx);
    fn_tensor_free(t->out);
    fn_tensor_free(t->dout);
    fn_backend_free(t->b);
    free(t->X);
    free(t->gP);
    free(t->mP);
    free(t->vP);
    free(t->mark);
    free(t->touched);
    free(t->cur);
    free(t->best);
    free(t->bestP);
}

static fn_status trainer_init(trainer *t, fn_error *err)
{
    deepfm *f = t->f;
    const fn_train_options *o = t->o;
    const int64_t *dims = f->dims, D = dims[0];
    fn_status st;
    const char *dev = o->device ? o->device : "cpu";
    if (strcmp(dev, "cuda") == 0)
        st = fn_backend_cuda_new(0, &t->b, err);
    else if (strcmp(dev, "cpu") == 0)
        st = fn_backend_cpu_new(o->threads, FN_CPU_BEST, &t->b, err);
    else
        st =
            fn_error_set(err, FN_ERR_INVALID, "deepfm train: device is cpu or cuda, not '%s'", dev);
    if (st != FN_OK) return st;

    t->mlp_floats = 0;
    for (int l = 0; l < t->L; l++) {
        if ((st = new_tensor(t->b, dims[l + 1], dims[l], &t->W[l], err)) ||
            (st = new_tensor(t->b, dims[l + 1], 0, &t->bias[l], err)) ||
            (st = fn_tensor_write(t->W[l], f->W[l]->data, fn_tensor_nbytes(f->W[l]), err)) ||
            (st = fn_tensor_write(t->bias[l], f->b[l]->data, fn_tensor_nbytes(f->b[l]), err)) ||
            (st = new_tensor(t->b, dims[l + 1], dims[l], &t->gW[l], err)) ||
            (st = new_tensor(t->b, dims[l + 1], 0, &t->gb[l], err)) ||
            (st = zeroed(t->b, t->W[l], &t->mW[l], err)) ||
            (st = zeroed(t->b, t->W[l], &t->vW[l], err)) ||
            (st = zeroed(t->b, t->bias[l], &t->mb[l], err)) ||
            (st = zeroed(t->b, t->bias[l], &t->vb[l], err)))
            return st;
        t->mlp_floats += (size_t)(dims[l + 1] * (dims[l] + 1));
    }
    for (int l = 0; l + 1 < t->L; l++)
        if ((st = new_tensor(t->b, t->cap, dims[l + 1], &t->pre[l], err)) ||
            (st = new_tensor(t->b, t->cap, dims[l + 1], &t->h[l], err)) ||
            (st = new_tensor(t->b, t->cap, dims[l + 1], &t->dh[l], err)))
            return st;
    if ((st = new_tensor(t->b, t->cap, D, &t->x, err)) ||
        (st = new_tensor(t->b, t->cap, D, &t->dx, err)) ||
        (st = new_tensor(t->b, t->cap, 1, &t->out, err)) ||
        (st = new_tensor(t->b, t->cap, 1, &t->dout, err)))
        return st;

    size_t cap = (size_t)t->cap, k = (size_t)f->k;
    t->X = malloc(cap * (2 * (size_t)D + k + 4) * sizeof(float));
    t->gP = fn_fm_alloc(f->n_param);
    const int adagrad = o->sparse_opt == FN_SPARSE_ADAGRAD;
    t->mP = adagrad ? NULL : fn_fm_alloc(f->n_param);
    t->vP = fn_fm_alloc(f->n_param);
    t->mark = calloc((size_t)f->n, 1);
    t->touched = malloc(cap * 64 * sizeof *t->touched); /* grown when a batch needs more */
    t->cur = malloc(t->mlp_floats * sizeof(float));
    if (!t->X || !t->gP || (!adagrad && !t->mP) || !t->vP || !t->mark || !t->touched || !t->cur)
        return fn_error_set(err, FN_ERR_NOMEM, "deepfm train: out of memory for %llu features",
                            (unsigned long long)f->n);
    if (adagrad)
        for (size_t i = 0; i < f->n_param; i++) t->vP[i] = 1.0f;
    t->dX = t->X + cap * (size_t)D;
    t->S = t->dX + cap * (size_t)D;
    t->fmv = t->S + cap * k;
    t->mlp = t->fmv + cap;
    t->g = t->mlp + cap;
    return FN_OK;
}

/* A dropout seed per step and layer, apart from the other streams seeded by seed. */
static uint64_t dropout_seed(const trainer *t, int layer)
{
    return (t->o->seed ^ 0xd1b54a32d192ed03ull) * 0x9e3779b97f4a7c15ull +
           (uint64_t)t->step * DFM_MAX_LAYERS + (uint64_t)layer;
}

/* The MLP forward on rows of t->x; logits in t->out. */
static fn_status mlp_forward(trainer *t, int64_t nb, fn_error *err)
{
    const float p = t->o->dropout;
    fn_tensor in = rows_view(t->x, nb);
    fn_status st = FN_OK;
    for (int l = 0; l < t->L && st == FN_OK; l++) {
        int last = l == t->L - 1;
        fn_tensor z = rows_view(last ? t->out : t->pre[l], nb);
        if ((st = fn_op_gemm(t->b, &in, 0, t->W[l], 1, &z, 1.0f, 0.0f, err)) ||
            (st = fn_op_bias_act(t->b, &z, t->bias[l], FN_ACT_NONE, err)) || last)
            break;
        fn_tensor h = rows_view(t->h[l], nb);
        if ((st = fn_op_copy(t->b, &z, &h, err)) ||
            (st = fn_op_bias_act(t->b, &h, NULL, t->f->act, err)))
            break;
        if (p > 0) st = fn_op_dropout(t->b, &h, p, dropout_seed(t, l), err);
        in = h;
    }
    return st;
}

/* The MLP backward from t->dout, to the parameter gradients and t->dx. */
static fn_status mlp_backward(trainer *t, int64_t nb, fn_error *err)
{
    const float p = t->o->dropout;
    fn_tensor dz = rows_view(t->dout, nb);
    fn_status st = FN_OK;
    for (int l = t->L - 1; l >= 0 && st == FN_OK; l--) {
        fn_tensor in = rows_view(l == 0 ? t->x : t->h[l - 1], nb);
        if ((st = fn_op_gemm(t->b, &dz, 1, &in, 0, t->gW[l], 1.0f, 0.0f, err)) ||
            (st = fn_op_sum_rows(t->b, &dz, 0.0f, t->gb[l], err)))
            break;
        fn_tensor dn = rows_view(l == 0 ? t->dx : t->dh[l - 1], nb);
        if ((st = fn_op_gemm(t->b, &dz, 0, t->W[l], 0, &dn, 1.0f, 0.0f, err)) || l == 0) break;
        if (p > 0 && (st = fn_op_dropout(t->b, &dn, p, dropout_seed(t, l - 1), err))) break;
        fn_tensor pre = rows_view(t->pre[l - 1], nb);
        st = fn_op_act_backward(t->b, &pre, &dn, t->f->act, &dn, err);
        dz = dn;
    }
    fn_adam a = {.lr = t->o->lr,
                 .beta1 = ADAM_BETA1,
                 .beta2 = ADAM_BETA2,
                 .eps = ADAM_EPS,
                 .l2 = t->o->l2,
                 .step = t->step};
    for (int l = 0; l < t->L && st == FN_OK; l++)
        if ((st = fn_op_adam(t->b, t->W[l], t->gW[l], t->mW[l], t->vW[l], &a, err)) == FN_OK)
            st = fn_op_adam(t->b, t->bias[l], t->gb[l], t->mb[l], t->vb[l], &a, err);
    return st;
}

/* Adam as fn_op_adam computes it: c1 = 1 - beta1^step, c2 = 1 - beta2^step. */
static inline void adam_host(float *p, float *g, float *m, float *v, float l2, float lr, float c1,
                             float c2)
{
    float gg = *g + l2 * *p;
    *m = ADAM_BETA1 * *m + (1 - ADAM_BETA1) * gg;
    *v = ADAM_BETA2 * *v + (1 - ADAM_BETA2) * gg * gg;
    *p -= lr * (*m / c1) / (sqrtf(*v / c2) + ADAM_EPS);
    *g = 0;
}

/* AdaGrad as fm.c's: G += g^2, p -= lr g / sqrt(G); g is scale times the gradient held. */
static inline void adagrad_host(float *p, float *g, float *G, float l2, float lr, float scale)
{
    float gg = *g * scale + l2 * *p;
    *G += gg * gg;
    *p -= lr * gg / sqrtf(*G);
    *g = 0;
}

static int touch(trainer *t, uint64_t j, size_t *cap_touched)
{
    if (t->mark[j]) return 1;
    if (t->n_touched == *cap_touched) {
        uint64_t *p = realloc(t->touched, 2 * *cap_touched * sizeof *p);
        if (!p) return 0;
        t->touched = p;
        *cap_touched *= 2;
    }
    t->mark[j] = 1;
    t->touched[t->n_touched++] = j;
    return 1;
}

/* The sparse part's optimizer for one step: lazy Adam, or AdaGrad on scale times the mean. */
typedef struct sparse_step {
    int adagrad;
    float lr, c1, c2, scale;
} sparse_step;

/* Weight i of f->P (layout shared by gP, mP, vP), its gradient cleared. */
static inline void step_weight(trainer *t, const sparse_step *s, size_t i, float l2)
{
    if (s->adagrad)
        adagrad_host(&t->f->P[i], &t->gP[i], &t->vP[i], l2, s->lr, s->scale);
    else
        adam_host(&t->f->P[i], &t->gP[i], &t->mP[i], &t->vP[i], l2, s->lr, s->c1, s->c2);
}

/* A step on the bias and on the rows the batch touched (their marks cleared); nb times the
   mean gradient held is the batch's sum, what AdaGrad steps on. */
static void sparse_update(trainer *t, size_t nb)
{
    deepfm *f = t->f;
    const size_t k = (size_t)f->k;
    const float l2 = t->o->l2;
    const sparse_step s = {.adagrad = t->o->sparse_opt == FN_SPARSE_ADAGRAD,
                           .lr = fn_train_sparse_lr(t->o),
                           .c1 = (float)(1.0 - pow(ADAM_BETA1, (double)t->step)),
                           .c2 = (float)(1.0 - pow(ADAM_BETA2, (double)t->step)),
                           .scale = (float)nb};
    step_weight(t, &s, 0, 0.0f); /* the bias (no L2, as FM's) is in every example */
    for (size_t q = 0; q < t->n_touched; q++) {
        uint64_t j = t->touched[q];
        t->mark[j] = 0;
        step_weight(t, &s, f->lin_off + (size_t)j, l2);
        for (size_t c = 0; c < k; c++) step_weight(t, &s, f->emb_off + (size_t)j * k + c, l2);
    }
}

/* The sparse part's gradient from the batch, then a step of its optimizer on what it touched. */
static fn_status sparse_backward(trainer *t, const fn_dataset *d, const size_t *rows, size_t nb,
                                 size_t *cap_touched, fn_error *err)
{
    deepfm *f = t->f;
    const size_t k = (size_t)f->k, D = (size_t)f->dims[0];
    const float *V = f->P + f->emb_off;
    float *gw = t->gP + f->lin_off, *gV = t->gP + f->emb_off;
    t->n_touched = 0;
    for (size_t i = 0; i < nb; i++) {
        const float g = t->g[i], *S = t->S + i * k, *dx = t->dX + i * D;
        t->gP[0] += g;
        for (uint64_t q = d->offsets[rows[i]]; q < d->offsets[rows[i] + 1]; q++) {
            const fn_feature_triple *x = &d->triples[q];
            if (x->index >= f->n || x->field >= f->F) continue;
            if (!touch(t, x->index, cap_touched))
                return fn_error_set(err, FN_ERR_NOMEM, "deepfm train: out of memory");
            const float xv = x->value, *v = V + (size_t)x->index * k,
                        *de = dx + (size_t)x->field * k;
            float *gv = gV + (size_t)x->index * k;
            gw[x->index] += g * xv;
            for (size_t c = 0; c < k; c++) gv[c] += xv * (g * (S[c] - v[c] * xv) + de[c]);
        }
    }
    sparse_update(t, nb);
    return FN_OK;
}

/* One batch: forward, loss, backward, updates. Adds the batch's summed log loss to *loss. */
static fn_status batch_step(trainer *t, const fn_dataset *d, const size_t *rows, size_t nb,
                            size_t *cap_touched, double *loss, fn_error *err)
{
    deepfm *f = t->f;
    const size_t k = (size_t)f->k, D = (size_t)f->dims[0];
    t->step++;
    memset(t->X, 0, nb * D * sizeof(float));
    for (size_t i = 0; i < nb; i++) {
        float lin = 0, Q[1024], *S = t->S + i * k;
        memset(S, 0, k * sizeof *S);
        memset(Q, 0, k * sizeof *Q);
        size_t r = rows[i];
        dfm_sparse_add(f, d->triples + d->offsets[r], d->offsets[r + 1] - d->offsets[r], NULL, &lin,
                       S, Q, t->X + i * D);
        t->fmv[i] = dfm_fm_logit(f, lin, S, Q);
    }
    fn_tensor x = rows_view(t->x, (int64_t)nb), out = rows_view(t->out, (int64_t)nb),
              dout = rows_view(t->dout, (int64_t)nb), dx = rows_view(t->dx, (int64_t)nb);
    fn_status st = fn_tensor_write(&x, t->X, nb * D * sizeof(float), err);
    if (st == FN_OK) st = mlp_forward(t, (int64_t)nb, err);
    if (st == FN_OK) st = fn_tensor_read(&out, t->mlp, nb * sizeof(float), err);
    if (st != FN_OK) return st;
    for (size_t i = 0; i < nb; i++) {
        double dt;
        *loss += fn_logistic_loss((double)(t->fmv[i] + t->mlp[i]), d->labels[rows[i]], &dt);
        t->g[i] = (float)(dt / (double)nb); /* dloss/dlogit = p - label, mean over the batch */
    }
    if ((st = fn_tensor_write(&dout, t->g, nb * sizeof(float), err)) ||
        (st = mlp_backward(t, (int64_t)nb, err)) ||
        (st = fn_tensor_read(&dx, t->dX, nb * D * sizeof(float), err)))
        return st;
    return sparse_backward(t, d, rows, nb, cap_touched, err);
}

/* Copies the trained MLP into host memory (dst) and into the model's own tensors. */
static fn_status publish(trainer *t, float *dst, fn_error *err)
{
    fn_status st = FN_OK;
    float *p = dst;
    for (int l = 0; l < t->L && st == FN_OK; l++) {
        size_t nw = fn_tensor_nbytes(t->W[l]), nbias = fn_tensor_nbytes(t->bias[l]);
        if ((st = fn_tensor_read(t->W[l], p, nw, err)) ||
            (st = fn_tensor_write(t->f->W[l], p, nw, err)))
            break;
        p += nw / sizeof(float);
        if ((st = fn_tensor_read(t->bias[l], p, nbias, err)) ||
            (st = fn_tensor_write(t->f->b[l], p, nbias, err)))
            break;
        p += nbias / sizeof(float);
    }
    return st;
}

/* Puts saved host weights (publish's layout) back into the model's tensors. */
static fn_status restore(trainer *t, const float *src, fn_error *err)
{
    fn_status st = FN_OK;
    for (int l = 0; l < t->L && st == FN_OK; l++) {
        size_t nw = fn_tensor_nbytes(t->f->W[l]), nbias = fn_tensor_nbytes(t->f->b[l]);
        st = fn_tensor_write(t->f->W[l], src, nw, err);
        src += nw / sizeof(float);
        if (st == FN_OK) st = fn_tensor_write(t->f->b[l], src, nbias, err);
        src += nbias / sizeof(float);
    }
    return st;
}

static fn_status run_epochs(trainer *t, const fn_dataset *train, const fn_dataset *valid,
                            fn_train_report *rep, fn_error *err)
{
    const fn_train_options *o = t->o;
    size_t n = train->n, cap_touched = (size_t)t->cap * 64;
    size_t *order = malloc(n * sizeof *order);
    float *probs = valid ? malloc(valid->n * sizeof *probs) : NULL;
    if (valid) {
        t->best = malloc(t->mlp_floats * sizeof(float));
        t->bestP = fn_fm_alloc(t->f->n_param);
    }
    fn_status st = FN_OK;
    if (!order || (valid && (!probs || !t->best || !t->bestP))) {
        st = fn_error_set(err, FN_ERR_NOMEM, "deepfm train: out of memory for %zu examples", n);
        goto done;
    }
    uint64_t shuffle_state = o->seed ^ 0x5f0e1d2c3b4a6978ull;
    fn_epochs e = fn_epochs_start(o, "deepfm", valid, n);
    for (int epoch = 1; epoch <= o->epochs; epoch++) {
        fn_rng_shuffle(order, n, &shuffle_state);
        fn_progress *bar = o->progress ? fn_progress_new("examples", n) : NULL;
        double sum = 0;
        uint64_t t0 = fn_now_ns();
        for (size_t lo = 0; lo < n && st == FN_OK; lo += (size_t)t->cap) {
            size_t nb = n - lo < (size_t)t->cap ? n - lo : (size_t)t->cap;
            st = batch_step(t, train, order + lo, nb, &cap_touched, &sum, err);
            if (bar) {
                char extra[64];
                snprintf(extra, sizeof extra, "epoch %d/%d loss %.5f", epoch, o->epochs,
                         sum / (double)(lo + nb));
                fn_progress_update(bar, lo + nb, extra);
            }
        }
        e.train_s += (double)(fn_now_ns() - t0) / 1e9;
        if (st == FN_OK) st = publish(t, t->cur, err);
        if (st == FN_OK && valid &&
            (st = dfm_predict_rows(t->m, valid, 0, valid->n, o->threads, probs, err)) != FN_OK)
            fn_error_prefix(err, "deepfm train: validation");
        if (st != FN_OK) {
            fn_progress_finish(bar);
            goto done;
        }
        int is_best, stop = fn_epochs_after(&e, epoch, sum / (double)n, probs, bar, &is_best);
        if (is_best) {
            memcpy(t->best, t->cur, t->mlp_floats * sizeof(float));
            memcpy(t->bestP, t->f->P, t->f->n_param * sizeof(float));
        }
        if (stop) break;
    }
    int again;
    if ((st = fn_epochs_finish(&e, rep, &again, err)) == FN_OK && again) {
        memcpy(t->f->P, t->bestP, t->f->n_param * sizeof(float));
        st = restore(t, t->best, err);
    }
done:
    free(order);
    free(probs);
    return st;
}

fn_status dfm_train(fn_model *m, const fn_train_options *o, const fn_dataset *train,
                    const fn_dataset *valid, fn_train_report *rep, fn_error *err)
{
    if (!(o->l2 >= 0) || !isfinite(o->l2))
        return fn_error_set(err, FN_ERR_INVALID, "deepfm train: l2 must be a number >= 0, not %g",
                            (double)o->l2);
    if (o->sparse_opt != FN_SPARSE_ADAM && o->sparse_opt != FN_SPARSE_ADAGRAD)
        return fn_error_set(err, FN_ERR_INVALID, "deepfm train: unknown sparse optimizer %d",
                            (int)o->sparse_opt);
    if (!(o->sparse_lr >= 0) || !isfinite(o->sparse_lr))
        return fn_error_set(err, FN_ERR_INVALID,
                            "deepfm train: sparse learning rate must be a number >= 0, not %g",
                            (double)o->sparse_lr);
    if (o->batch < 1)
        return fn_error_set(err, FN_ERR_INVALID, "deepfm train: batch must be >= 1, not %d",
                            o->batch);
    if (!(o->dropout >= 0 && o->dropout < 1))
        return fn_error_set(err, FN_ERR_INVALID, "deepfm train: dropout must be in [0, 1), not %g",
                            (double)o->dropout);
    /* The bias starts at the log-odds of the training labels: Adam moves a weight by about lr
       a step, so from 0 a rare positive class would take hundreds of steps to be priced in,
       and small data sets never get them. */
    double pos = 0;
    for (size_t i = 0; i < train->n; i++) pos += train->labels[i]; /* graded ones count part */
    double rate = fmin(fmax(pos / (double)train->n, 1e-6), 1 - 1e-6);
    ((deepfm *)m->impl)->P[0] = (float)log(rate / (1 - rate));
    trainer t = {.m = m, .f = m->impl, .o = o, .L = ((deepfm *)m->impl)->L};
    t.cap = (size_t)o->batch < train->n ? o->batch : (int64_t)train->n;
    fn_status st = trainer_init(&t, err);
    if (st == FN_OK) st = run_epochs(&t, train, valid, rep, err);
    trainer_free(&t);
    return st;
}
