/*
 * deepfm_impl.h - what deepfm.c (the model, inference, files) and
 * deepfm_train.c (mini-batch training) share.
 *
 * DeepFM (Guo et al., "DeepFM: A Factorization-Machine based Neural Network
 * for CTR Prediction", IJCAI 2017): one set of feature embeddings feeds both
 *
 *   - an FM part: bias + sum_i w_i x_i + 1/2 sum_d [(sum_i v_id x_i)^2 - sum_i v_id^2 x_i^2]
 *     (fm.c's formula), and
 *   - an MLP over the concatenated field embeddings e_f = sum_{i in field f} v_i x_i
 *     (F fields of k floats: D = F k inputs), hidden layers with ReLU or GELU
 *     and dropout, one output,
 *
 * and the logit is their sum. A multi-valued field (genres) sums its
 * features' vectors; a dense column (an embedding of 384 floats) becomes a
 * learned projection of the vector onto k dimensions.
 *
 * The sparse part (bias, linear, embedding) lives on the host in fm.c's
 * layout: the features an example touches are few, and gathering and
 * scattering them is host work. The MLP's weights are kernel-layer tensors
 * ("mlp.{i}.weight" [out, in] as PyTorch's Linear, "mlp.{i}.bias", and
 * "mlp.out.weight" [1, last], "mlp.out.bias" [1]) on a CPU backend of the
 * model's own; training copies them to its backend (CPU or CUDA) and back.
 */
#ifndef FN_DEEPFM_IMPL_H
#define FN_DEEPFM_IMPL_H

#include <pthread.h>

#include "kernels/backend.h"
#include "rank_impl.h"

#define DFM_MAX_LAYERS (FN_MAX_HIDDEN + 1) /* hidden layers and the output layer */

typedef struct dfm_ctx dfm_ctx;

typedef struct deepfm {
    /* [bias, padding to 16 | linear: n, padding to 16 | embedding: n x k] */
    float *P;
    size_t n_param, lin_off, emb_off;
    uint64_t n;
    int k;
    uint32_t F;
    int L;                            /* layers: the hidden ones, then the output layer */
    int64_t dims[DFM_MAX_LAYERS + 1]; /* dims[0] = F k inputs, dims[i + 1] = layer i's outputs */
    fn_act act;
    fn_backend *home; /* CPU, one thread: owns W and b (their data is host memory) */
    fn_tensor *W[DFM_MAX_LAYERS], *b[DFM_MAX_LAYERS];
    /* Scoring contexts (a backend and buffers each) for concurrent requests. */
    pthread_mutex_t lock;
    dfm_ctx *idle;
} deepfm;

/*
 * Sums of an example's sparse part: the FM terms and, when e is not NULL, its
 * field embeddings (added to, not cleared). S and Q hold k floats each. A
 * field's k floats start at e + field * k, or at e + pos[field] when pos is
 * given (a request's candidates keep only the fields they use).
 */
void dfm_sparse_add(const deepfm *f, const fn_feature_triple *x, size_t nx, const int32_t *pos,
                    float *lin, float *S, float *Q, float *e);
/* bias + lin + 1/2 sum_d (S_d^2 - Q_d). */
float dfm_fm_logit(const deepfm *f, float lin, const float *S, const float *Q);

/* The MLP's tensors, in layer order, as the file names them ("mlp.0.weight", "mlp.out.bias"). */
void dfm_tensor_name(const deepfm *f, int layer, int is_bias, char *out, size_t cap);

/* Training (deepfm_train.c). */
fn_status dfm_train(fn_model *m, const fn_train_options *o, const fn_dataset *train,
                    const fn_dataset *valid, fn_train_report *rep, fn_error *err);

/* Probabilities of rows [r0, r0 + n) of d on a CPU backend of `threads` threads (0: all). */
fn_status dfm_predict_rows(const fn_model *m, const fn_dataset *d, size_t r0, size_t n, int threads,
                           float *out, fn_error *err);

#endif
