/*
 * model_impl.h - what model.c (the reranker, scoring, files) and train.c
 * (training on lists) share.
 *
 * The model (after Pei et al., "Personalized Re-ranking for Recommendation",
 * RecSys 2019): each item of a list is a row of dense features, standardised
 * with the training set's means and deviations, projected to d_model, plus a
 * learned embedding of its input position when asked; n_layers post-LN
 * transformer encoder layers (multi-head self-attention over the list, then a
 * GELU feed-forward layer, each with a residual and LayerNorm) let every
 * item's vector see the others; a linear head gives each item its score.
 * Padding items (short lists in a batch) are masked out of the attention.
 *
 * Every weight is a kernel-layer tensor with a PyTorch-like name
 * ("layers.0.qkv.weight" [3 d, d] as nn.Linear stores it, q, k and v
 * stacked, heads contiguous within each); the forward pass is kernel-layer
 * ops only, on the CPU or CUDA backend.
 */
#ifndef FN_RERANK_MODEL_IMPL_H
#define FN_RERANK_MODEL_IMPL_H

#include <pthread.h>

#include "kernels/backend.h"
#include "rerank.h"

#define RR_MAX_LAYERS    8
#define RR_LAYER_TENSORS 12
/* input.mean, input.scale, input.weight, input.bias, position, layers..., score.weight/bias */
#define RR_MAX_TENSORS (6 + RR_MAX_LAYERS * RR_LAYER_TENSORS)

/* Tensor slots. */
enum {
    RR_MEAN = 0,
    RR_SCALE,
    RR_IN_W,
    RR_IN_B,
    RR_POS,
    RR_SC_W,
    RR_SC_B,
    RR_LAYER0 /* then RR_LAYER_TENSORS per layer, in the order below */
};
enum {
    RL_QKV_W = 0,
    RL_QKV_B,
    RL_OUT_W,
    RL_OUT_B,
    RL_LN1_W,
    RL_LN1_B,
    RL_FF1_W,
    RL_FF1_B,
    RL_FF2_W,
    RL_FF2_B,
    RL_LN2_W,
    RL_LN2_B,
};
#define RR_LT(layer, which) (RR_LAYER0 + (layer)*RR_LAYER_TENSORS + (which))

typedef struct rr_ctx rr_ctx;

struct fn_reranker {
    fn_rerank_options o;
    uint32_t F;
    int n_tensors;
    char names[RR_MAX_TENSORS][48];
    int ndim[RR_MAX_TENSORS];
    int64_t shape[RR_MAX_TENSORS][2];
    /* Weights on `be` (the host's memory for the CPU); input.mean/scale are used on the host. */
    fn_backend *be;
    fn_tensor *t[RR_MAX_TENSORS];
    float *mean, *scale; /* host copies, F each */
    /* The input layer with the standardisation folded in (W diag(scale), b - W diag(scale)
     * mean), made by rr_fold: scoring feeds the raw features through it. */
    fn_tensor *in_w_fold, *in_b_fold;
    /* Scoring contexts (a one-thread CPU backend and buffers each) for concurrent requests;
     * on CUDA one context, taken in turn. */
    pthread_mutex_t lock;
    pthread_cond_t freed;
    rr_ctx *idle;
    int n_ctx;
};

/* Activations of one forward pass, each [cap_rows, width]; a batch of B lists x T places
 * uses the first B T rows (views). Kept for the backward pass. */
typedef struct rr_layer_acts {
    fn_tensor *qkv, *att, *o, *h1, *f1pre, *f1, *f2, *out;
} rr_layer_acts;

typedef struct rr_acts {
    int64_t cap_rows, B, T;
    fn_tensor *x;    /* [cap_rows, F] standardised features */
    fn_tensor *ids;  /* [cap_rows] int32: each row's place in its list */
    fn_tensor *mask; /* [cap_rows] int32, seen as [B, T] */
    fn_tensor *h0;   /* [cap_rows, d] */
    rr_layer_acts l[RR_MAX_LAYERS];
    fn_tensor *score; /* [cap_rows, 1] */
} rr_acts;

/* The first rows of t as a [rows, width] matrix. */
static inline fn_tensor rr_rows(const fn_tensor *t, int64_t rows)
{
    int64_t d[2] = {rows, t->ne[t->ndim - 1]};
    return fn_tensor_view(t, 2, d);
}

/* Makes the tensor table (names, shapes) of a model with options o over F features. */
fn_status rr_layout(fn_reranker *r, fn_error *err);
/* Allocates r's weights on r->be (uninitialised). */
fn_status rr_alloc_weights(fn_reranker *r, fn_error *err);
/* A new model with weights drawn from opts->seed (training's start). */
fn_status rr_new(const fn_rerank_options *o, uint32_t F, const float *mean, const float *scale,
                 fn_reranker **out, fn_error *err);

fn_status rr_acts_new(fn_backend *be, const fn_reranker *r, int64_t cap_rows, rr_acts **out,
                      fn_error *err);
void rr_acts_free(rr_acts *a);
/*
 * A batch: B lists of T places whose rows are feats (n_items[b] rows each, row-major, F
 * floats; items past T are left out), standardised when asked (training; scoring
 * runs the raw features through the folded input layer), with ids and mask, written to a
 * (a->B, a->T set). host is scratch of B T (F + 2) floats.
 */
fn_status rr_acts_load(rr_acts *a, const fn_reranker *r, const float *const *feats,
                       const int64_t *n_items, int64_t B, int64_t T, int standardise, float *host,
                       fn_error *err);
/*
 * The forward pass over a's batch with weights w (tensors on be's device): dropout p (0 at
 * inference) with seeds from seed. Scores land in a->score's first B T rows.
 */
fn_status rr_forward(fn_backend *be, const fn_reranker *r, fn_tensor *const *w, rr_acts *a,
                     float dropout, uint64_t seed, fn_error *err);
/* A dropout site's seed: a hash of the step's seed, the layer and the site. */
uint64_t rr_dropout_seed(uint64_t seed, int layer, int site);

/*
 * Scores two dummy lists (one item, and many) so that every weight's backend-private
 * repacked copy exists before concurrent callers share the model.
 */
fn_status rr_warm(fn_reranker *r, fn_error *err);
/* Remakes the folded input layer from the current weights (after loading, after training
 * steps and before scoring with them). */
fn_status rr_fold(fn_reranker *r, fn_error *err);

/*
 * The loss of lists[0..B) of d as one batch without dropout, summed over the lists, and, when
 * grads is not NULL, the gradient of its mean over the lists for every weight, into
 * grads[slot] (host arrays of the slot's size; slots before RR_IN_W are not trained). For the
 * gradient check.
 */
fn_status rr_batch_grads(fn_reranker *r, const fn_listset *d, const size_t *lists, int64_t B,
                         double *loss, float **grads, fn_error *err);

/* Copies src's weights into dst's (same layout, any devices). */
fn_status rr_copy_weights(fn_reranker *dst, const fn_reranker *src, fn_error *err);

#endif
