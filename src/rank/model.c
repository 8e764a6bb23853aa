/*
 * model.c - what every model kind shares: default options, dispatch to the
 * kind, the safetensors file (kind, spec hash and hyperparameters in
 * __metadata__, each checked on load), and prediction over a dataset split
 * across threads.
 */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/pool.h"
#include "rank_impl.h"

#define FORMAT_VERSION "1"

static const fn_model_ops *ops_of(fn_model_kind kind)
{
    switch (kind) {
    case FN_MODEL_FM:
        return &fn_fm_ops;
    case FN_MODEL_FFM:
        return &fn_ffm_ops;
    case FN_MODEL_DEEPFM:
        return &fn_deepfm_ops;
    }
    return NULL;
}

const char *fn_model_kind_name(fn_model_kind kind)
{
    switch (kind) {
    case FN_MODEL_FM:
        return "fm";
    case FN_MODEL_FFM:
        return "ffm";
    case FN_MODEL_DEEPFM:
        return "deepfm";
    }
    return "?";
}

fn_status fn_model_kind_parse(const char *name, fn_model_kind *out)
{
    for (int k = FN_MODEL_FM; k <= FN_MODEL_DEEPFM; k++)
        if (strcmp(name, fn_model_kind_name((fn_model_kind)k)) == 0) {
            *out = (fn_model_kind)k;
            return FN_OK;
        }
    return FN_ERR_INVALID;
}

const char *fn_sparse_optimizer_name(fn_sparse_optimizer o)
{
    return o == FN_SPARSE_ADAGRAD ? "adagrad" : o == FN_SPARSE_ADAM ? "adam" : "?";
}

fn_status fn_sparse_optimizer_parse(const char *name, fn_sparse_optimizer *out)
{
    for (int o = FN_SPARSE_ADAM; o <= FN_SPARSE_ADAGRAD; o++)
        if (strcmp(name, fn_sparse_optimizer_name((fn_sparse_optimizer)o)) == 0) {
            *out = (fn_sparse_optimizer)o;
            return FN_OK;
        }
    return FN_ERR_INVALID;
}

float fn_train_sparse_lr(const fn_train_options *o)
{
    if (o->sparse_lr > 0) return o->sparse_lr;
    return o->sparse_opt == FN_SPARSE_ADAGRAD ? FN_SPARSE_ADAGRAD_LR : o->lr;
}

fn_train_options fn_train_options_default(fn_model_kind kind)
{
    fn_train_options o = {.kind = kind, .epochs = 10, .patience = 2, .seed = 1, .threads = 0};
    switch (kind) {
    case FN_MODEL_FM:
        o.k = 8, o.lr = 0.05f, o.l2 = 1e-5f;
        break;
    case FN_MODEL_FFM:
        /* libffm's defaults: k 4, eta 0.2, lambda 2e-5, instance normalisation on. */
        o.k = 4, o.lr = 0.2f, o.l2 = 2e-5f, o.normalize = 1;
        break;
    case FN_MODEL_DEEPFM:
        o.k = 8, o.lr = 1e-3f, o.l2 = 1e-4f, o.batch = 256, o.relu = 1, o.dropout = 0.0f;
        /* AdaGrad ranks better than lazy Adam on MovieLens-100k, binary and graded labels,
           with and without the semantic features (BENCHMARKS.md). */
        o.sparse_opt = FN_SPARSE_ADAGRAD;
        o.hidden[0] = 200, o.hidden[1] = 200, o.n_hidden = 2;
        break;
    }
    return o;
}

static fn_status model_new(const fn_train_options *hp, uint32_t fields, uint64_t features,
                           const char *spec_sha256, fn_model **out, fn_error *err)
{
    const fn_model_ops *ops = ops_of(hp->kind);
    if (!ops) return fn_error_set(err, FN_ERR_INVALID, "unknown model kind %d", (int)hp->kind);
    if (fields == 0 || features == 0)
        return fn_error_set(err, FN_ERR_INVALID, "a model needs at least one field and feature");
    if (hp->k < 1 || hp->k > 1024)
        return fn_error_set(err, FN_ERR_INVALID, "k must be from 1 to 1024, not %d", hp->k);
    fn_model *m = calloc(1, sizeof *m);
    if (!m) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    m->ops = ops;
    m->hp = *hp;
    m->hp.device = NULL;
    m->n_fields = fields;
    m->n_features = features;
    snprintf(m->spec_sha256, sizeof m->spec_sha256, "%s", spec_sha256 ? spec_sha256 : "");
    fn_status st = ops->init(m, err);
    if (st != FN_OK) {
        free(m);
        return st;
    }
    *out = m;
    return FN_OK;
}

fn_status fn_model_train(const fn_train_options *opts, const fn_dataset *train,
                         const fn_dataset *valid, const char *spec_sha256, fn_model **out,
                         fn_train_report *report, fn_error *err)
{
    if (!train || train->n == 0)
        return fn_error_set(err, FN_ERR_INVALID, "train: the training data has no examples");
    if (opts->epochs < 1) return fn_error_set(err, FN_ERR_INVALID, "train: epochs must be >= 1");
    if (!(opts->lr > 0))
        return fn_error_set(err, FN_ERR_INVALID, "train: learning rate must be > 0");
    uint32_t fields = train->n_fields;
    uint64_t features = train->n_features;
    if (valid && valid->n) {
        /* Validation rows may use indices the training rows never did (new ids). */
        if (valid->n_fields > fields) fields = valid->n_fields;
        if (valid->n_features > features) features = valid->n_features;
    }
    fn_model *m;
    fn_status st = model_new(opts, fields, features, spec_sha256, &m, err);
    if (st != FN_OK) return st;
    fn_train_report rep = {.best_valid_loss = NAN, .best_valid_auc = NAN};
    st = m->ops->train(m, opts, train, valid && valid->n ? valid : NULL, &rep, err);
    if (st != FN_OK) {
        fn_model_free(m);
        return st;
    }
    if (report) *report = rep;
    *out = m;
    return FN_OK;
}

void fn_model_free(fn_model *m)
{
    if (!m) return;
    m->ops->free(m);
    free(m);
}

fn_model_kind fn_model_kind_of(const fn_model *m)
{
    return m->hp.kind;
}

uint32_t fn_model_fields(const fn_model *m)
{
    return m->n_fields;
}

uint64_t fn_model_features(const fn_model *m)
{
    return m->n_features;
}

const char *fn_model_spec_sha256(const fn_model *m)
{
    return m->spec_sha256;
}

/* ---- prediction ---- */

typedef struct predict_job {
    const fn_model *m;
    const fn_dataset *d;
    float *out;
    size_t chunk;
    pthread_mutex_t lock; /* guards st and err */
    fn_status st;
    fn_error err;
} predict_job;

static void predict_task(void *ctx, size_t i)
{
    predict_job *j = ctx;
    size_t r0 = i * j->chunk, n = j->d->n - r0 < j->chunk ? j->d->n - r0 : j->chunk;
    fn_error e = {0};
    fn_status st = j->m->ops->predict(j->m, j->d, r0, n, j->out + r0, &e);
    if (st == FN_OK) return;
    pthread_mutex_lock(&j->lock);
    if (j->st == FN_OK) { /* the first error is reported; later ones are alike */
        j->st = st;
        j->err = e;
    }
    pthread_mutex_unlock(&j->lock);
}

fn_status fn_model_predict(const fn_model *m, const fn_dataset *d, int threads, float *out,
                           fn_error *err)
{
    if (d->n == 0) return FN_OK;
    if (m->ops->predict_all) return m->ops->predict_all(m, d, threads, out, err);
    if (threads == 1) return m->ops->predict(m, d, 0, d->n, out, err);
    fn_pool *pool;
    fn_status st = fn_pool_new(threads, &pool, err);
    if (st != FN_OK) return st;
    predict_job j = {.m = m, .d = d, .out = out, .chunk = 4096};
    pthread_mutex_init(&j.lock, NULL);
    fn_pool_run(pool, (d->n + j.chunk - 1) / j.chunk, predict_task, &j);
    fn_pool_free(pool);
    pthread_mutex_destroy(&j.lock);
    if (j.st != FN_OK && err) *err = j.err;
    return j.st;
}

fn_status fn_model_score(const fn_model *m, const fn_score_request *req, float *out, fn_error *err)
{
    for (size_t i = 0; i < req->n_shared; i++)
        if (req->shared[i].index >= m->n_features || req->shared[i].field >= m->n_fields)
            return fn_error_set(err, FN_ERR_INVALID,
                                "score: shared triple %zu (%u:%u) is outside the model's %u "
                                "fields and %llu features",
                                i, req->shared[i].field, req->shared[i].index, m->n_fields,
                                (unsigned long long)m->n_features);
    size_t nc = req->cand_offsets[req->n_cand];
    for (size_t i = 0; i < nc; i++)
        if (req->cand[i].index >= m->n_features || req->cand[i].field >= m->n_fields)
            return fn_error_set(err, FN_ERR_INVALID,
                                "score: candidate triple %zu (%u:%u) is outside the model's %u "
                                "fields and %llu features",
                                i, req->cand[i].field, req->cand[i].index, m->n_fields,
                                (unsigned long long)m->n_features);
    return m->ops->score(m, req, out, err);
}

/* ---- files ---- */

static fn_status put_meta(fn_safetensors_writer *w, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fn_status put_meta(fn_safetensors_writer *w, const char *key, const char *fmt, ...)
{
    char v[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    return fn_safetensors_writer_meta(w, key, v, NULL);
}

fn_status fn_model_save(const fn_model *m, const char *path, fn_error *err)
{
    fn_safetensors_writer *w = fn_safetensors_writer_new();
    if (!w) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    char hidden[128] = "";
    for (int i = 0; i < m->hp.n_hidden; i++) {
        size_t o = strlen(hidden);
        snprintf(hidden + o, sizeof hidden - o, i ? ",%d" : "%d", m->hp.hidden[i]);
    }
    fn_status st = FN_OK;
    if (put_meta(w, "funnel.model", "%s", fn_model_kind_name(m->hp.kind)) ||
        put_meta(w, "funnel.format", FORMAT_VERSION) ||
        put_meta(w, "funnel.feature_spec_sha256", "%s", m->spec_sha256) ||
        put_meta(w, "funnel.fields", "%u", m->n_fields) ||
        put_meta(w, "funnel.features", "%llu", (unsigned long long)m->n_features) ||
        put_meta(w, "funnel.k", "%d", m->hp.k) || put_meta(w, "funnel.lr", "%.9g", m->hp.lr) ||
        put_meta(w, "funnel.l2", "%.9g", m->hp.l2) ||
        put_meta(w, "funnel.epochs", "%d", m->hp.epochs) ||
        put_meta(w, "funnel.seed", "%llu", (unsigned long long)m->hp.seed) ||
        put_meta(w, "funnel.normalize", "%d", m->hp.normalize) ||
        put_meta(w, "funnel.hidden", "%s", hidden) ||
        put_meta(w, "funnel.activation", "%s", m->hp.relu ? "relu" : "gelu") ||
        put_meta(w, "funnel.dropout", "%.9g", m->hp.dropout) ||
        (m->hp.kind == FN_MODEL_DEEPFM &&
         (put_meta(w, "funnel.sparse_optimizer", "%s",
                   fn_sparse_optimizer_name(m->hp.sparse_opt)) ||
          put_meta(w, "funnel.sparse_lr", "%.9g", fn_train_sparse_lr(&m->hp)))))
        st = fn_error_set(err, FN_ERR_INTERNAL, "save: cannot write metadata");
    if (st == FN_OK) st = m->ops->save(m, w, err);
    if (st == FN_OK) st = fn_safetensors_writer_write(w, path, err);
    fn_safetensors_writer_free(w);
    return st;
}

/* A metadata value that must be there. */
static fn_status meta(const fn_safetensors *st, const char *key, const char **out, fn_error *err)
{
    *out = fn_safetensors_metadata(st, key);
    if (!*out)
        return fn_error_set(err, FN_ERR_CORRUPT,
                            "%s: metadata '%s' is missing (not a funnel model?)",
                            fn_safetensors_path(st), key);
    return FN_OK;
}

static fn_status meta_int(const fn_safetensors *st, const char *key, long long lo, long long hi,
                          long long *out, fn_error *err)
{
    const char *v;
    fn_status s = meta(st, key, &v, err);
    if (s != FN_OK) return s;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end || errno || x < lo || x > hi)
        return fn_error_set(err, FN_ERR_CORRUPT,
                            "%s: metadata '%s' = '%s' is not a whole number "
                            "in [%lld, %lld]",
                            fn_safetensors_path(st), key, v, lo, hi);
    *out = x;
    return FN_OK;
}

static fn_status meta_float(const fn_safetensors *st, const char *key, float *out, fn_error *err)
{
    const char *v;
    fn_status s = meta(st, key, &v, err);
    if (s != FN_OK) return s;
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end || !isfinite(x))
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: metadata '%s' = '%s' is not a number",
                            fn_safetensors_path(st), key, v);
    *out = (float)x;
    return FN_OK;
}

static fn_status read_hyper(const fn_safetensors *st, fn_train_options *hp, uint32_t *fields,
                            uint64_t *features, fn_error *err)
{
    const char *path = fn_safetensors_path(st), *v;
    long long x;
    fn_status s;
    if ((s = meta(st, "funnel.model", &v, err))) return s;
    fn_model_kind kind;
    if (fn_model_kind_parse(v, &kind) != FN_OK)
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: unknown model kind '%s'", path, v);
    *hp = fn_train_options_default(kind);
    if ((s = meta(st, "funnel.format", &v, err))) return s;
    if (strcmp(v, FORMAT_VERSION) != 0)
        return fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: model format %s (this funnel reads %s)",
                            path, v, FORMAT_VERSION);
    if ((s = meta_int(st, "funnel.fields", 1, UINT32_MAX, &x, err))) return s;
    *fields = (uint32_t)x;
    if ((s = meta_int(st, "funnel.features", 1, (long long)1 << 40, &x, err))) return s;
    *features = (uint64_t)x;
    if ((s = meta_int(st, "funnel.k", 1, 1024, &x, err))) return s;
    hp->k = (int)x;
    if ((s = meta_int(st, "funnel.normalize", 0, 1, &x, err))) return s;
    hp->normalize = (int)x;
    if ((s = meta_float(st, "funnel.lr", &hp->lr, err)) ||
        (s = meta_float(st, "funnel.l2", &hp->l2, err)) ||
        (s = meta_float(st, "funnel.dropout", &hp->dropout, err)))
        return s;
    /* DeepFM's sparse optimizer: a record of how it was trained. Files without it are older
       than the choice, and were trained with Adam at lr. */
    hp->sparse_opt = FN_SPARSE_ADAM;
    if ((v = fn_safetensors_metadata(st, "funnel.sparse_optimizer")) &&
        fn_sparse_optimizer_parse(v, &hp->sparse_opt) != FN_OK)
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: unknown sparse optimizer '%s'", path, v);
    if (fn_safetensors_metadata(st, "funnel.sparse_lr") &&
        (s = meta_float(st, "funnel.sparse_lr", &hp->sparse_lr, err)))
        return s;
    if ((s = meta(st, "funnel.activation", &v, err))) return s;
    if (strcmp(v, "relu") && strcmp(v, "gelu"))
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: unknown activation '%s'", path, v);
    hp->relu = strcmp(v, "relu") == 0;
    if ((s = meta(st, "funnel.hidden", &v, err))) return s;
    hp->n_hidden = 0;
    for (const char *p = v; *p;) {
        char *end;
        long h = strtol(p, &end, 10);
        if (end == p || h < 1 || h > 65536 || hp->n_hidden == FN_MAX_HIDDEN ||
            (*end != ',' && *end != '\0'))
            return fn_error_set(err, FN_ERR_CORRUPT,
                                "%s: metadata 'funnel.hidden' = '%s' is not "
                                "a list of layer sizes",
                                path, v);
        hp->hidden[hp->n_hidden++] = (int)h;
        p = *end ? end + 1 : end;
    }
    return FN_OK;
}

fn_status fn_model_load(const char *path, const char *expect_spec_sha256, fn_model **out,
                        fn_error *err)
{
    fn_safetensors *st;
    fn_status s = fn_safetensors_open(path, &st, err);
    if (s != FN_OK) return s;
    fn_train_options hp;
    uint32_t fields = 0;
    uint64_t features = 0;
    const char *sha = NULL;
    fn_model *m = NULL;
    if ((s = read_hyper(st, &hp, &fields, &features, err))) goto done;
    if ((s = meta(st, "funnel.feature_spec_sha256", &sha, err))) goto done;
    if (expect_spec_sha256 && strcmp(sha, expect_spec_sha256) != 0) {
        s = fn_error_set(err, FN_ERR_INVALID,
                         "%s was trained on feature spec %.12s..., not on this one (%.12s...): "
                         "retrain it or use its spec",
                         path, *sha ? sha : "(none: libffm data)", expect_spec_sha256);
        goto done;
    }
    if ((s = model_new(&hp, fields, features, sha, &m, err))) goto done;
    if ((s = m->ops->load(m, st, err))) {
        fn_model_free(m);
        m = NULL;
    }
done:
    fn_safetensors_close(st);
    if (s == FN_OK) *out = m;
    return s;
}

/* ---- helpers for the kinds ---- */

fn_status fn_rank_check_finite(const fn_safetensors *st, const fn_st_tensor *t, fn_error *err)
{
    if (t->dtype != FN_ST_F32) return FN_OK;
    const float *f = t->data;
    size_t n = t->nbytes / sizeof *f;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i]))
            return fn_error_set(err, FN_ERR_CORRUPT, "%s: tensor '%s' holds %s at element %zu",
                                fn_safetensors_path(st), t->name, isnan(f[i]) ? "NaN" : "infinity",
                                i);
    return FN_OK;
}

fn_status fn_rank_load_f32(const fn_safetensors *st, const char *name, int ndim,
                           const int64_t *shape, float *dst, fn_error *err)
{
    const fn_st_tensor *t;
    fn_status s = fn_safetensors_expect(st, name, FN_ST_F32, ndim, shape, &t, err);
    if (s == FN_ERR_NOT_FOUND) s = FN_ERR_CORRUPT;
    if (s == FN_OK) s = fn_rank_check_finite(st, t, err);
    if (s != FN_OK) {
        if (err) err->code = s;
        return s;
    }
    memcpy(dst, t->data, t->nbytes);
    return FN_OK;
}

fn_status fn_rank_save_fm_block(fn_safetensors_writer *w, const float *P, size_t lin_off,
                                size_t emb_off, uint64_t n, int k, fn_error *err)
{
    int64_t one = 1, nn = (int64_t)n, nk[2] = {(int64_t)n, k};
    fn_status st = fn_safetensors_writer_add(w, "bias", FN_ST_F32, 1, &one, P, err);
    if (st == FN_OK)
        st = fn_safetensors_writer_add(w, "linear", FN_ST_F32, 1, &nn, P + lin_off, err);
    if (st == FN_OK)
        st = fn_safetensors_writer_add(w, "embedding", FN_ST_F32, 2, nk, P + emb_off, err);
    return st;
}

fn_status fn_rank_load_fm_block(const fn_safetensors *st, float *P, size_t lin_off, size_t emb_off,
                                uint64_t n, int k, fn_error *err)
{
    int64_t one = 1, nn = (int64_t)n, nk[2] = {(int64_t)n, k};
    fn_status s = fn_rank_load_f32(st, "bias", 1, &one, P, err);
    if (s == FN_OK) s = fn_rank_load_f32(st, "linear", 1, &nn, P + lin_off, err);
    if (s == FN_OK) s = fn_rank_load_f32(st, "embedding", 2, nk, P + emb_off, err);
    return s;
}

fn_epochs fn_epochs_start(const fn_train_options *o, const char *kind, const fn_dataset *valid,
                          size_t n)
{
    return (fn_epochs){.o = o,
                       .kind = kind,
                       .valid = valid,
                       .n = n,
                       .best_loss = INFINITY,
                       .best_auc = NAN,
                       .train_loss = NAN};
}

int fn_epochs_after(fn_epochs *e, int epoch, double train_loss, const float *valid_probs,
                    fn_progress *bar, int *is_best)
{
    double valid_loss = NAN, valid_auc = NAN;
    if (e->valid) {
        valid_loss = fn_metric_logloss(valid_probs, e->valid->labels, e->valid->n);
        valid_auc = fn_metric_auc(valid_probs, e->valid->labels, e->valid->n);
    }
    char line[112];
    int len = snprintf(line, sizeof line, "epoch %d/%d loss %.5f", epoch, e->o->epochs, train_loss);
    if (e->valid)
        snprintf(line + len, sizeof line - (size_t)len, " valid %.5f auc %.5f", valid_loss,
                 valid_auc);
    fn_progress_update(bar, e->n, line);
    fn_progress_finish(bar); /* one line per epoch stays on the terminal, as libffm's table */
    fn_log_debug("%s train: %s", e->kind, line);
    if (e->o->on_epoch) {
        fn_epoch_stats s = {.epoch = epoch,
                            .train_loss = train_loss,
                            .valid_loss = valid_loss,
                            .valid_auc = valid_auc};
        e->o->on_epoch(&s, e->o->on_epoch_ctx);
    }

    e->run = epoch;
    e->train_loss = train_loss;
    *is_best = 0;
    if (!e->valid) {
        if (!isfinite(train_loss)) return 1;
        e->best_epoch = epoch;
        return 0;
    }
    /* NaN is never better; a tie keeps the earlier epoch; a validation set of one class (AUC
       NaN) is judged by its log loss */
    int better = valid_loss < e->best_loss;
    if (e->o->valid_metric == FN_VALID_AUC && !isnan(valid_auc))
        better = isfinite(valid_loss) && (isnan(e->best_auc) || valid_auc > e->best_auc);
    if (better) {
        e->best_loss = valid_loss;
        e->best_auc = valid_auc;
        e->best_epoch = epoch;
        *is_best = 1;
    } else if (e->o->patience >= 1 && epoch - e->best_epoch >= e->o->patience) {
        return 1;
    }
    return !isfinite(train_loss); /* diverged: nothing better will come */
}

fn_status fn_epochs_finish(const fn_epochs *e, fn_train_report *rep, int *restore, fn_error *err)
{
    if (e->best_epoch == 0 || (!e->valid && !isfinite(e->train_loss)))
        return fn_error_set(err, FN_ERR_INVALID,
                            "%s train: the %s loss is not finite after epoch %d: training "
                            "diverged (lower the learning rate)",
                            e->kind, e->valid ? "validation" : "training", e->run);
    *restore = e->valid && e->best_epoch != e->run;
    rep->epochs_run = e->run;
    rep->best_epoch = e->best_epoch;
    rep->best_valid_loss = e->valid ? e->best_loss : NAN;
    rep->best_valid_auc = e->valid ? e->best_auc : NAN;
    rep->train_loss = e->train_loss;
    rep->examples_per_s = e->train_s > 0 ? (double)e->n * e->run / e->train_s : 0;
    return FN_OK;
}
