/*
 * model_file.c - the reranker as a safetensors file: every weight under its
 * PyTorch-like name, the options in __metadata__ (funnel.model = "reranker").
 * Loading checks the metadata, every tensor's shape and that every weight is
 * finite, and names the file and the tensor when something is wrong.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "model_impl.h"

#define RR_MODEL_NAME "reranker"

static int64_t numel(const fn_reranker *r, int i)
{
    return r->ndim[i] == 2 ? r->shape[i][0] * r->shape[i][1] : r->shape[i][0];
}

fn_status fn_reranker_save(const fn_reranker *r, const char *path, fn_error *err)
{
    fn_safetensors_writer *w = fn_safetensors_writer_new();
    float *host[RR_MAX_TENSORS] = {0};
    if (!w) return fn_error_set(err, FN_ERR_NOMEM, "save %s: out of memory", path);
    fn_status st = FN_OK;
    for (int i = 0; i < r->n_tensors && st == FN_OK; i++) {
        if (!r->ndim[i]) continue;
        const float *data = i == RR_MEAN ? r->mean : i == RR_SCALE ? r->scale : NULL;
        if (!data) {
            const size_t nb = (size_t)numel(r, i) * sizeof(float);
            if (!(host[i] = malloc(nb))) {
                st = fn_error_set(err, FN_ERR_NOMEM, "save %s: out of memory", path);
                break;
            }
            if ((st = fn_tensor_read(r->t[i], host[i], nb, err)) != FN_OK) break;
            data = host[i];
        }
        st = fn_safetensors_writer_add(w, r->names[i], FN_ST_F32, r->ndim[i], r->shape[i], data,
                                       err);
    }
    const fn_rerank_options *o = &r->o;
    char v[64];
#define META(key, fmt, val)                                                                        \
    if (st == FN_OK) {                                                                             \
        snprintf(v, sizeof v, fmt, val);                                                           \
        st = fn_safetensors_writer_meta(w, key, v, err);                                           \
    }
    META("funnel.model", "%s", RR_MODEL_NAME);
    META("funnel.features", "%u", r->F);
    META("funnel.d_model", "%d", o->d_model);
    META("funnel.n_heads", "%d", o->n_heads);
    META("funnel.n_layers", "%d", o->n_layers);
    META("funnel.d_ff", "%d", o->d_ff);
    META("funnel.positions", "%d", o->positions);
    META("funnel.max_items", "%d", o->max_items);
    META("funnel.loss", "%s", fn_rerank_loss_name(o->loss));
    META("funnel.ndcg_k", "%d", o->ndcg_k);
    META("funnel.lambda_k", "%d", o->lambda_k);
    META("funnel.lr", "%.9g", (double)o->lr);
    META("funnel.l2", "%.9g", (double)o->l2);
    META("funnel.dropout", "%.9g", (double)o->dropout);
    META("funnel.batch", "%d", o->batch);
    META("funnel.seed", "%llu", (unsigned long long)o->seed);
#undef META
    if (st == FN_OK) st = fn_safetensors_writer_write(w, path, err);
    fn_safetensors_writer_free(w);
    for (int i = 0; i < RR_MAX_TENSORS; i++) free(host[i]);
    return st;
}

/* ---- loading ---- */

static fn_status meta_str(const fn_safetensors *st, const char *key, const char **out,
                          fn_error *err)
{
    *out = fn_safetensors_metadata(st, key);
    if (!*out)
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: metadata '%s' is missing",
                            fn_safetensors_path(st), key);
    return FN_OK;
}

static fn_status meta_int(const fn_safetensors *st, const char *key, long long lo, long long hi,
                          long long *out, fn_error *err)
{
    const char *v;
    fn_status s = meta_str(st, key, &v, err);
    if (s != FN_OK) return s;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return fn_error_set(err, FN_ERR_CORRUPT,
                            "%s: metadata '%s' = '%s' is not a whole number in %lld..%lld",
                            fn_safetensors_path(st), key, v, lo, hi);
    *out = x;
    return FN_OK;
}

static fn_status meta_float(const fn_safetensors *st, const char *key, float *out, fn_error *err)
{
    const char *v;
    fn_status s = meta_str(st, key, &v, err);
    if (s != FN_OK) return s;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: metadata '%s' = '%s' is not a number",
                            fn_safetensors_path(st), key, v);
    *out = (float)x;
    return FN_OK;
}

static fn_status read_options(const fn_safetensors *st, fn_reranker *r, fn_error *err)
{
    const char *model, *loss;
    fn_status s = meta_str(st, "funnel.model", &model, err);
    if (s != FN_OK) return s;
    if (strcmp(model, RR_MODEL_NAME))
        return fn_error_set(err, FN_ERR_INVALID, "%s: a '%s' model, not a reranker",
                            fn_safetensors_path(st), model);
    fn_rerank_options *o = &r->o;
    long long F = 0, lk = 0, dm = 0, nh = 0, nl = 0, ff = 0, pos = 0, mi = 0, k = 0, batch = 0,
              seed = 0;
    if ((s = meta_int(st, "funnel.features", 1, 1 << 24, &F, err)) ||
        (s = meta_int(st, "funnel.d_model", 1, 4096, &dm, err)) ||
        (s = meta_int(st, "funnel.n_heads", 1, 4096, &nh, err)) ||
        (s = meta_int(st, "funnel.n_layers", 0, RR_MAX_LAYERS, &nl, err)) ||
        (s = meta_int(st, "funnel.d_ff", 1, 65536, &ff, err)) ||
        (s = meta_int(st, "funnel.positions", 0, 1, &pos, err)) ||
        (s = meta_int(st, "funnel.max_items", 1, 4096, &mi, err)) ||
        (s = meta_int(st, "funnel.ndcg_k", 1, 1 << 20, &k, err)) ||
        (s = meta_int(st, "funnel.lambda_k", 0, 1 << 20, &lk, err)) ||
        (s = meta_int(st, "funnel.batch", 1, 4096, &batch, err)) ||
        (s = meta_int(st, "funnel.seed", 0, INT64_MAX, &seed, err)) ||
        (s = meta_float(st, "funnel.lr", &o->lr, err)) ||
        (s = meta_float(st, "funnel.l2", &o->l2, err)) ||
        (s = meta_float(st, "funnel.dropout", &o->dropout, err)) ||
        (s = meta_str(st, "funnel.loss", &loss, err)))
        return s;
    if (fn_rerank_loss_parse(loss, &o->loss, NULL) != FN_OK)
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: metadata 'funnel.loss' = '%s' is unknown",
                            fn_safetensors_path(st), loss);
    r->F = (uint32_t)F;
    o->d_model = (int)dm, o->n_heads = (int)nh, o->n_layers = (int)nl, o->d_ff = (int)ff;
    o->positions = (int)pos, o->max_items = (int)mi, o->ndcg_k = (int)k, o->batch = (int)batch;
    o->lambda_k = (int)lk;
    o->seed = (uint64_t)seed;
    return FN_OK;
}

static fn_status read_tensor(const fn_safetensors *st, fn_reranker *r, int i, float *dst,
                             fn_error *err)
{
    const fn_st_tensor *t;
    fn_status s =
        fn_safetensors_expect(st, r->names[i], FN_ST_F32, r->ndim[i], r->shape[i], &t, err);
    if (s != FN_OK) return s;
    const int64_t n = numel(r, i);
    memcpy(dst, t->data, (size_t)n * sizeof *dst);
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(dst[j]))
            return fn_error_set(err, FN_ERR_CORRUPT,
                                "%s: tensor '%s' has a non-finite value at %lld",
                                fn_safetensors_path(st), r->names[i], (long long)j);
    if (i == RR_SCALE)
        for (int64_t j = 0; j < n; j++)
            if (!(dst[j] > 0))
                return fn_error_set(err, FN_ERR_CORRUPT,
                                    "%s: tensor 'input.scale' is not positive at %lld",
                                    fn_safetensors_path(st), (long long)j);
    return FN_OK;
}

fn_status fn_reranker_load(const char *path, const char *device, int threads, fn_reranker **out,
                           fn_error *err)
{
    *out = NULL;
    fn_safetensors *st = NULL;
    fn_status s = fn_safetensors_open(path, &st, err);
    if (s != FN_OK) return s;
    fn_reranker *r = calloc(1, sizeof *r);
    float *h = NULL;
    if (!r) {
        fn_safetensors_close(st);
        return fn_error_set(err, FN_ERR_NOMEM, "load %s: out of memory", path);
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->freed, NULL);
    r->o = fn_rerank_options_default();
    r->o.device = device ? device : "cpu";
    r->o.threads = threads;
    if ((s = read_options(st, r, err)) != FN_OK) goto done;
    if ((s = rr_layout(r, err)) != FN_OK) {
        s = fn_error_set(err, FN_ERR_CORRUPT, "%s: %s", path, err ? err->msg : "bad options");
        goto done;
    }
    if ((s = rr_alloc_weights(r, err)) != FN_OK) goto done;
    size_t cap = 0;
    for (int i = RR_IN_W; i < r->n_tensors; i++)
        if (r->ndim[i] && (size_t)numel(r, i) > cap) cap = (size_t)numel(r, i);
    if (!(h = malloc(cap * sizeof *h))) {
        s = fn_error_set(err, FN_ERR_NOMEM, "load %s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < r->n_tensors && s == FN_OK; i++) {
        if (!r->ndim[i]) continue;
        float *dst = i == RR_MEAN ? r->mean : i == RR_SCALE ? r->scale : h;
        s = read_tensor(st, r, i, dst, err);
        if (s == FN_OK && dst == h)
            s = fn_tensor_write(r->t[i], h, (size_t)numel(r, i) * sizeof *h, err);
    }
    if (s == FN_OK) s = rr_warm(r, err);
done:
    free(h);
    fn_safetensors_close(st);
    if (s != FN_OK) {
        fn_reranker_free(r);
        return s;
    }
    *out = r;
    return FN_OK;
}
