/*
 * check_rank_fm.c - FM and FFM (src/rank/fm.c, ffm.c, fm_train.c), and
 * DeepFM wherever the same contract holds (src/rank/deepfm*.c): damaged
 * model files refused by name, interactions a linear model cannot learn,
 * the Criteo sample, early stopping, determinism, files, and request scoring
 * that must agree with prediction on the concatenated example.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/safetensors.h"
#include "rank/rank.h"
#include "rank/rank_impl.h" /* fn_rank_uniform: the initialisation, replayed by hand */
#include "rank_util.h"
#include "test_util.h"

/* Tests looping over 2 cover FM and FFM; over 3, DeepFM too. */
static const fn_model_kind kinds[3] = {FN_MODEL_FM, FN_MODEL_FFM, FN_MODEL_DEEPFM};

/* ---- damaged files ---- */

START_TEST(damaged_files_refused)
{
    fn_model_kind kind = kinds[_i];
    char *dir = fn_test_tmpdir(), *good = fn_test_path(dir, "good.safetensors"),
         *bad = fn_test_path(dir, "bad.safetensors");
    fn_dataset *d = random_data(200, 5, 40, 7);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 1;
    fn_model *m = train_ok(&o, d, NULL, NULL);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(m, good, &err) == FN_OK, "%s", err.msg);
    const char *shape = kind == FN_MODEL_FFM ? "[5, 40, 4]" : "[8, 40]"; /* same size, permuted */

    /* Truncated: the last tensor's data runs past the end. */
    fn_buf b = FN_BUF_INIT;
    fn_test_read_file(good, &b);
    fn_test_write_file(bad, b.data, b.len - 5);
    /* The last tensor in the file is the one named: DeepFM's MLP comes after the embedding. */
    expect_refused(bad, FN_ERR_CORRUPT, "truncated",
                   kind == FN_MODEL_DEEPFM ? "': data_offsets"
                                           : "tensor 'embedding': data_offsets");
    fn_test_write_file(bad, b.data, 5);
    expect_refused(bad, FN_ERR_CORRUPT, "5 bytes", "too short");

    edit_model(good, bad, "embedding", shape, -1, 0);
    expect_refused(bad, FN_ERR_CORRUPT, "wrong shape", "tensor 'embedding' is F32");
    edit_model(good, bad, "embedding", NULL, 17, 0);
    expect_refused(bad, FN_ERR_CORRUPT, "NaN", "tensor 'embedding' holds NaN at element 17");
    if (kind != FN_MODEL_FFM) {
        edit_model(good, bad, "linear", NULL, 3, 0);
        expect_refused(bad, FN_ERR_CORRUPT, "NaN linear", "tensor 'linear' holds NaN");
        edit_model(good, bad, "linear", NULL, -1, 1);
        expect_refused(bad, FN_ERR_CORRUPT, "no linear", "no tensor 'linear'");
        edit_model(good, bad, "bias", "[2]", -1, 0);
        expect_refused(bad, FN_ERR_CORRUPT, "bias shape", "'bias'");
    } else {
        edit_model(good, bad, "embedding", NULL, -1, 1);
        expect_refused(bad, FN_ERR_CORRUPT, "no embedding", "no tensor 'embedding'");
    }
    /* The untouched file still loads. */
    fn_model *back = NULL;
    ck_assert_msg(fn_model_load(good, NULL, &back, &err) == FN_OK, "%s", err.msg);
    fn_model_free(back);
    fn_buf_free(&b);
    fn_model_free(m);
    fn_dataset_free(d);
    fn_test_rmtree(dir);
    free(good);
    free(bad);
    free(dir);
}
END_TEST

START_TEST(empty_and_unseen)
{
    fn_model_kind kind = kinds[_i];
    fn_dataset *tr = random_data(100, 4, 30, 3);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 1;
    fn_model *m = train_ok(&o, tr, NULL, NULL);
    /* An example without triples, one whose triples are all outside the model (skipped, as
       libffm does), and one with a single known triple. */
    fn_dataset *d = ds_new(3, 3);
    ds_add(d, 0, NULL, 0);
    fn_feature_triple unseen[2] = {{2, 1000, 1}, {9, 2000, 1}}, one = {1, 5, 1};
    ds_add(d, 1, unseen, 2);
    ds_add(d, 0, &one, 1);
    float *p = predict_all(m, d, 1);
    ck_assert_float_eq(p[0], p[1]); /* both are the model's prior: FFM 1/2, FM sigmoid(bias) */
    if (kind == FN_MODEL_FFM) {
        ck_assert_float_eq(p[0], 0.5f);
        ck_assert_float_eq(p[2], 0.5f); /* FFM has no linear term: one triple has no pair */
    }
    ck_assert(isfinite(p[2]));
    /* A request with no candidates writes nothing; one without shared triples still scores. */
    fn_error err = {0};
    size_t offs[2] = {0, 1};
    float out[1] = {-1};
    fn_score_request q = {.cand = &one, .cand_offsets = offs, .n_cand = 0};
    ck_assert_int_eq(fn_model_score(m, &q, out, &err), FN_OK);
    ck_assert_float_eq(out[0], -1);
    q.n_cand = 1;
    ck_assert_int_eq(fn_model_score(m, &q, out, &err), FN_OK);
    ck_assert_float_eq_tol(out[0], p[2], 1e-7);
    /* Bad options are refused with the option named. */
    fn_model *x = NULL;
    o.l2 = -1;
    ck_assert_int_eq(fn_model_train(&o, tr, NULL, NULL, &x, NULL, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "l2"), "%s", err.msg);
    ck_assert_ptr_null(x);
    free(p);
    fn_dataset_free(d);
    fn_dataset_free(tr);
    fn_model_free(m);
}
END_TEST

/* ---- learning ---- */

START_TEST(learns_an_interaction)
{
    fn_model_kind kind = kinds[_i];
    fn_dataset *tr = xor_data(4000, 1), *te = xor_data(1000, 2);
    /* Every feature alone is uninformative (see xor_data). */
    for (uint32_t j = 0; j < 4; j++) {
        size_t n = 0, pos = 0;
        for (size_t i = 0; i < tr->n; i++)
            for (uint64_t t = tr->offsets[i]; t < tr->offsets[i + 1]; t++)
                if (tr->triples[t].index == j) n++, pos += tr->labels[i] > 0.5f;
        ck_assert_uint_eq(2 * pos, n);
    }
    fn_train_options o = quiet_opts(kind);
    fn_train_report rep;
    fn_model *m = train_ok(&o, tr, te, &rep);
    double auc = auc_of(m, te);
    ck_assert_msg(auc > 0.99, "%s AUC %.4f on a XOR", fn_model_kind_name(kind), auc);
    ck_assert_msg(rep.best_valid_loss < 0.2, "log loss %.4f", rep.best_valid_loss);
    fn_model_free(m);
    fn_dataset_free(tr);
    fn_dataset_free(te);
}
END_TEST

/* DeepFM on 200 rows: small batches for enough steps, dropout against the MLP overfitting. */
static fn_train_options criteo_opts(fn_model_kind kind)
{
    fn_train_options o = quiet_opts(kind);
    if (kind == FN_MODEL_DEEPFM) o.batch = 16, o.dropout = 0.5f;
    return o;
}

START_TEST(criteo_sample)
{
    fn_model_kind kind = kinds[_i];
    char *trp = fn_test_data("criteo-ffm/small_train.txt"),
         *tep = fn_test_data("criteo-ffm/small_test.txt");
    if (!trp || !tep) {
        fprintf(stderr, "skipped: public data sets not found\n");
        free(trp);
        free(tep);
        return;
    }
    fn_error err = {0};
    fn_dataset *tr, *te;
    ck_assert_msg(fn_dataset_read_libffm(trp, &tr, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fn_dataset_read_libffm(tep, &te, &err) == FN_OK, "%s", err.msg);
    /* The training loss falls from the first epoch to the fifth. */
    fn_train_options o = criteo_opts(kind);
    fn_train_report one, five;
    o.epochs = 1;
    fn_model *m = train_ok(&o, tr, NULL, &one);
    fn_model_free(m);
    o.epochs = 5;
    m = train_ok(&o, tr, NULL, &five);
    ck_assert_msg(five.train_loss < one.train_loss - 0.02, "train loss %.4f -> %.4f",
                  one.train_loss, five.train_loss);
    ck_assert_int_eq(five.epochs_run, 5);
    ck_assert_int_eq(five.best_epoch, 5);
    ck_assert(isnan(five.best_valid_loss));
    ck_assert(five.examples_per_s > 0);
    fn_model_free(m);
    /*
     * With validation and the defaults, against a constant at the training set's positive
     * rate (AUC 1/2, and its log loss). 200 rows, most features seen once: the ranking beats
     * the constant clearly, the log loss only just (FFM, without a bias, roughly matches it).
     */
    double pos = 0;
    for (size_t i = 0; i < tr->n; i++) pos += tr->labels[i];
    pos /= (double)tr->n;
    float *c = malloc(te->n * sizeof *c);
    for (size_t i = 0; i < te->n; i++) c[i] = (float)pos;
    double base_ll = fn_metric_logloss(c, te->labels, te->n);
    free(c);
    o = criteo_opts(kind);
    o.epochs = 20;
    fn_train_report rep;
    m = train_ok(&o, tr, te, &rep);
    float *p = predict_all(m, te, 1);
    double auc = fn_metric_auc(p, te->labels, te->n), ll = fn_metric_logloss(p, te->labels, te->n);
    fprintf(stderr, "criteo-ffm %s: AUC %.4f, log loss %.4f (constant %.4f), best epoch %d\n",
            fn_model_kind_name(kind), auc, ll, base_ll, rep.best_epoch);
    /* DeepFM's MLP has more to learn from 200 rows than FM's pairs: it ranks less well here. */
    ck_assert_msg(auc > (kind == FN_MODEL_DEEPFM ? 0.57 : 0.6), "%s AUC %.4f",
                  fn_model_kind_name(kind), auc);
    ck_assert_msg(ll < base_ll + 0.005, "%s log loss %.4f, constant %.4f", fn_model_kind_name(kind),
                  ll, base_ll);
    ck_assert_double_eq_tol(ll, rep.best_valid_loss, 1e-9);
    free(p);
    fn_model_free(m);
    fn_dataset_free(tr);
    fn_dataset_free(te);
    free(trp);
    free(tep);
}
END_TEST

START_TEST(early_stopping_keeps_best)
{
    /* A learning rate far too high on few examples with labels unrelated to the features:
       the validation loss is best early and then climbs. */
    fn_model_kind kind = kinds[_i];
    fn_dataset *tr = random_data(300, 6, 60, 11), *va = random_data(300, 6, 60, 12);
    fn_train_options o = quiet_opts(kind);
    o.lr = 1.0f;
    o.epochs = 30;
    o.patience = 3;
    fn_train_report rep;
    fn_model *m = train_ok(&o, tr, va, &rep);
    ck_assert_msg(rep.best_epoch < rep.epochs_run, "best %d of %d", rep.best_epoch, rep.epochs_run);
    ck_assert_int_eq(rep.epochs_run, rep.best_epoch + o.patience);
    /* The model kept is the best epoch's: its validation loss is the reported one, and its
       predictions are those of a run of exactly best_epoch epochs. */
    float *p = predict_all(m, va, 1);
    ck_assert_double_eq_tol(fn_metric_logloss(p, va->labels, va->n), rep.best_valid_loss, 1e-9);
    o.epochs = rep.best_epoch;
    fn_train_report rep2;
    fn_model *m2 = train_ok(&o, tr, NULL, &rep2);
    float *p2 = predict_all(m2, va, 1);
    ck_assert_mem_eq(p, p2, va->n * sizeof *p);
    free(p);
    free(p2);
    fn_model_free(m);
    fn_model_free(m2);
    fn_dataset_free(tr);
    fn_dataset_free(va);
}
END_TEST

/*
 * Four items of graded targets 0.1, 0.4, 0.6, 0.9, each example one item and a constant
 * feature (FFM has neither bias nor linear term: its pairs carry everything). Binary labels
 * (positive above 0.5) would teach 0 or 1.
 */
static fn_dataset *graded_items(size_t n, int binary)
{
    static const float grade[4] = {0.1f, 0.4f, 0.6f, 0.9f};
    fn_dataset *d = ds_new(n, 2 * n);
    for (size_t i = 0; i < n; i++) {
        fn_feature_triple t[2] = {{0, (uint32_t)(i % 4), 1.0f}, {1, 4, 1.0f}};
        float g = grade[i % 4];
        ds_add(d, binary ? (float)(g > 0.5f) : g, t, 2);
    }
    d->n_fields = 2;
    d->n_features = 5;
    return d;
}

START_TEST(graded_targets_are_learned)
{
    fn_model_kind kind = kinds[_i];
    fn_dataset *graded = graded_items(4000, 0), *binary = graded_items(4000, 1);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 30;
    if (kind == FN_MODEL_DEEPFM) o.lr = 0.01f;
    fn_model *m = train_ok(&o, graded, NULL, NULL), *mb = train_ok(&o, binary, NULL, NULL);
    float *p = predict_all(m, graded, 1), *pb = predict_all(mb, graded, 1);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(fabsf(p[i] - graded->labels[i]) < 0.05f, "%s item %d: %.3f for target %.2f",
                      fn_model_kind_name(kind), i, (double)p[i], (double)graded->labels[i]);
        /* the binary labels' model is sure of the side, and far from the grade */
        ck_assert_msg(fabsf(pb[i] - graded->labels[i]) > 0.05f, "%s binary item %d: %.3f",
                      fn_model_kind_name(kind), i, (double)pb[i]);
    }
    /* graded training reports the graded cross-entropy: near the targets' own entropy */
    double h = 0;
    for (int i = 0; i < 4; i++) {
        double g = graded->labels[i];
        h -= (g * log(g) + (1 - g) * log(1 - g)) / 4;
    }
    ck_assert_double_le(fn_metric_logloss(p, graded->labels, graded->n), h + 0.01);
    free(p), free(pb);
    fn_model_free(m), fn_model_free(mb);
    fn_dataset_free(graded), fn_dataset_free(binary);
}
END_TEST

/* The learning curve on_epoch receives. */
typedef struct curve {
    int n;
    fn_epoch_stats at[16];
} curve;

static void keep_epoch(const fn_epoch_stats *s, void *ctx)
{
    curve *c = ctx;
    if (c->n < 16) c->at[c->n] = *s;
    c->n++;
}

/* Early stopping on the validation AUC keeps the epoch of the best AUC, and reports it; every
   epoch's figures reach on_epoch, and are those of a model trained for that many epochs. */
START_TEST(early_stopping_on_auc)
{
    fn_model_kind kind = kinds[_i];
    fn_dataset *tr = random_data(300, 6, 60, 11), *va = random_data(300, 6, 60, 12);
    fn_train_options o = quiet_opts(kind);
    o.lr = 1.0f;
    o.epochs = 12;
    o.patience = 12; /* every epoch runs: the best AUC's is kept */
    o.valid_metric = FN_VALID_AUC;
    curve c = {0};
    o.on_epoch = keep_epoch, o.on_epoch_ctx = &c;
    fn_train_report rep;
    fn_model *m = train_ok(&o, tr, va, &rep);
    ck_assert_int_eq(rep.epochs_run, 12);
    ck_assert_int_eq(c.n, 12);
    float *p = predict_all(m, va, 1);
    ck_assert_double_eq_tol(fn_metric_auc(p, va->labels, va->n), rep.best_valid_auc, 1e-12);
    ck_assert_double_eq_tol(fn_metric_logloss(p, va->labels, va->n), rep.best_valid_loss, 1e-9);
    ck_assert_double_eq(c.at[rep.best_epoch - 1].valid_auc, rep.best_valid_auc);
    ck_assert_double_eq(c.at[11].train_loss, rep.train_loss);
    /* no epoch has a higher validation AUC than the one kept */
    for (int e = 1; e <= 12; e++) {
        fn_train_options oe = o;
        oe.epochs = e;
        oe.on_epoch = NULL;
        fn_model *me = train_ok(&oe, tr, NULL, NULL);
        float *pe = predict_all(me, va, 1);
        ck_assert_double_le(fn_metric_auc(pe, va->labels, va->n), rep.best_valid_auc + 1e-12);
        ck_assert_int_eq(c.at[e - 1].epoch, e);
        ck_assert_double_eq_tol(fn_metric_auc(pe, va->labels, va->n), c.at[e - 1].valid_auc, 1e-12);
        ck_assert_double_eq_tol(fn_metric_logloss(pe, va->labels, va->n), c.at[e - 1].valid_loss,
                                1e-9);
        free(pe);
        fn_model_free(me);
    }
    free(p);
    fn_model_free(m);
    fn_dataset_free(tr);
    fn_dataset_free(va);
}
END_TEST

START_TEST(deterministic_with_one_thread)
{
    fn_model_kind kind = kinds[_i];
    char *dir = fn_test_tmpdir(), *a = fn_test_path(dir, "a"), *b = fn_test_path(dir, "b");
    fn_dataset *tr = xor_data(3000, 5);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 3;
    o.seed = 42;
    fn_model *ma = train_ok(&o, tr, NULL, NULL), *mb = train_ok(&o, tr, NULL, NULL);
    o.seed = 43;
    fn_model *mc = train_ok(&o, tr, NULL, NULL);
    /* The same seed: the same bytes on disk. */
    fn_error err = {0};
    ck_assert_msg(fn_model_save(ma, a, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fn_model_save(mb, b, &err) == FN_OK, "%s", err.msg);
    fn_buf ba = FN_BUF_INIT, bb = FN_BUF_INIT;
    fn_test_read_file(a, &ba);
    fn_test_read_file(b, &bb);
    ck_assert_uint_eq(ba.len, bb.len);
    ck_assert_msg(memcmp(ba.data, bb.data, ba.len) == 0, "same seed, different weights");
    /* Another seed: other weights (initialisation and order). */
    float *pa = predict_all(ma, tr, 1), *pc = predict_all(mc, tr, 1);
    ck_assert_msg(memcmp(pa, pc, tr->n * sizeof *pa) != 0, "another seed, the same model");
    free(pa);
    free(pc);
    fn_buf_free(&ba);
    fn_buf_free(&bb);
    fn_model_free(ma);
    fn_model_free(mb);
    fn_model_free(mc);
    fn_dataset_free(tr);
    fn_test_rmtree(dir);
    free(a);
    free(b);
    free(dir);
}
END_TEST

START_TEST(hogwild_threads_learn)
{
    /* Several threads update the weights without locks: not reproducible, but as good. */
    fn_model_kind kind = kinds[_i];
    fn_dataset *tr = xor_data(20000, 8), *te = xor_data(1000, 9);
    fn_train_options o = fn_train_options_default(kind);
    o.threads = 4;
    fn_train_report rep;
    fn_model *m = train_ok(&o, tr, te, &rep);
    double auc = auc_of(m, te);
    ck_assert_msg(auc > 0.99, "%s AUC %.4f with 4 threads", fn_model_kind_name(kind), auc);
    /* Prediction over threads is the single-thread prediction (DeepFM's GEMMs, split
       otherwise, may sum a row in another order: the same to float precision). */
    float *p1 = predict_all(m, tr, 1), *p4 = predict_all(m, tr, 4);
    if (kind != FN_MODEL_DEEPFM)
        ck_assert_mem_eq(p1, p4, tr->n * sizeof *p1);
    else
        for (size_t i = 0; i < tr->n; i++)
            ck_assert_msg(fabsf(p1[i] - p4[i]) <= 1e-6f, "row %zu: %.9g vs %.9g", i, p1[i], p4[i]);
    free(p1);
    free(p4);
    fn_model_free(m);
    fn_dataset_free(tr);
    fn_dataset_free(te);
}
END_TEST

/* ---- files ---- */

/* The FFM logit by its definition, in double, from the file's "embedding" [n, m, k]. */
static double ffm_logit_ref(const float *W, uint32_t m, size_t k, const fn_feature_triple *x,
                            size_t nx, int normalize)
{
    double r = 1, sq = 0, t = 0;
    for (size_t a = 0; a < nx; a++) sq += (double)x[a].value * x[a].value;
    if (normalize && sq > 0) r = 1 / sq;
    for (size_t a = 0; a < nx; a++)
        for (size_t b = a + 1; b < nx; b++) {
            const float *w1 = W + ((size_t)x[a].index * m + x[b].field) * k,
                        *w2 = W + ((size_t)x[b].index * m + x[a].field) * k;
            double dot = 0;
            for (size_t d = 0; d < k; d++) dot += (double)w1[d] * w2[d];
            t += dot * x[a].value * x[b].value * r;
        }
    return t;
}

/* The FM logit by its definition (every pair, not the O(n k) rewriting), in double. */
static double fm_logit_ref(float bias, const float *w, const float *V, size_t k,
                           const fn_feature_triple *x, size_t nx)
{
    double t = bias;
    for (size_t a = 0; a < nx; a++) {
        t += (double)w[x[a].index] * x[a].value;
        for (size_t b = a + 1; b < nx; b++) {
            double dot = 0;
            for (size_t d = 0; d < k; d++)
                dot += (double)V[x[a].index * k + d] * V[x[b].index * k + d];
            t += dot * x[a].value * x[b].value;
        }
    }
    return t;
}

START_TEST(matches_the_formula)
{
    /* FM; FFM with and without normalisation: predict against the definitions, computed
       from the tensors of the saved file (so the file's layout is what the comments say). */
    fn_model_kind kind = _i == 0 ? FN_MODEL_FM : FN_MODEL_FFM;
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "m.safetensors");
    fn_dataset *d = random_data(400, 6, 50, 61);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 2;
    o.k = 6;
    o.normalize = _i == 1;
    fn_model *m = train_ok(&o, d, NULL, NULL);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(m, path, &err) == FN_OK, "%s", err.msg);
    float *p = predict_all(m, d, 1);
    size_t n_emb, n_lin, n_bias;
    float *emb = read_tensor(path, "embedding", &n_emb), *lin = NULL, *bias = NULL;
    if (kind == FN_MODEL_FM) {
        lin = read_tensor(path, "linear", &n_lin);
        bias = read_tensor(path, "bias", &n_bias);
        ck_assert_uint_eq(n_lin, 50);
        ck_assert_uint_eq(n_bias, 1);
        ck_assert_uint_eq(n_emb, 50 * 6);
    } else {
        ck_assert_uint_eq(n_emb, 50 * 6 * 6);
    }
    for (size_t i = 0; i < d->n; i++) {
        const fn_feature_triple *x = d->triples + d->offsets[i];
        size_t nx = d->offsets[i + 1] - d->offsets[i];
        double t = kind == FN_MODEL_FM ? fm_logit_ref(bias[0], lin, emb, 6, x, nx)
                                       : ffm_logit_ref(emb, 6, 6, x, nx, o.normalize);
        double want = 1 / (1 + exp(-t));
        ck_assert_msg(fabs(p[i] - want) < 1e-6, "row %zu: predict %.9g, formula %.9g", i, p[i],
                      want);
    }
    free(emb);
    free(lin);
    free(bias);
    free(p);
    fn_model_free(m);
    fn_dataset_free(d);
    fn_test_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

static void expect_close(const float *got, const float *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-6f + 1e-5f * fabsf(want[i]),
                      "%s[%zu]: trained %.9g, by hand %.9g", what, i, got[i], want[i]);
}

START_TEST(one_step_by_hand)
{
    /*
     * One epoch over one example is one step from the initialisation: replayed here from the
     * seed and the update rules in the files' comments (libffm's for FFM). FFM with k 4 (its
     * fast path) and 5, FM with k 3 and 8.
     */
    static const int ks[4] = {4, 5, 3, 8};
    fn_model_kind kind = _i < 2 ? FN_MODEL_FFM : FN_MODEL_FM;
    const size_t k = (size_t)ks[_i];
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "m.safetensors");
    fn_feature_triple x[3] = {{0, 0, 1.0f}, {1, 1, 0.5f}, {2, 2, -2.0f}};
    fn_dataset *d = ds_new(1, 3);
    ds_add(d, kind == FN_MODEL_FFM ? 1.0f : 0.0f, x, 3);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 1;
    o.seed = 9;
    o.k = (int)k;
    o.l2 = 0.05f; /* large enough that a wrong regularisation term shows */
    fn_model *m = train_ok(&o, d, NULL, NULL);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(m, path, &err) == FN_OK, "%s", err.msg);
    const float eta = o.lr, lambda = o.l2;
    uint64_t state = o.seed;
    size_t n;
    if (kind == FN_MODEL_FFM) {
        enum { M = 3 };
        float *W = malloc(3 * M * k * sizeof *W), *trained = read_tensor(path, "embedding", &n);
        ck_assert_uint_eq(n, 3 * M * k);
        for (size_t i = 0; i < 3 * M * k; i++)
            W[i] = (1.0f / sqrtf((float)k)) * fn_rng_uniform(&state);
        float r = 1.0f / (1.0f + 0.25f + 4.0f);
        double t = ffm_logit_ref(W, M, k, x, 3, 1);
        float kappa = (float)(-1.0 / (1.0 + exp(t))); /* y = +1 */
        for (size_t a = 0; a < 3; a++)
            for (size_t b = a + 1; b < 3; b++) {
                float *w1 = W + (x[a].index * M + x[b].field) * k,
                      *w2 = W + (x[b].index * M + x[a].field) * k;
                float kv = kappa * x[a].value * x[b].value * r;
                for (size_t dd = 0; dd < k; dd++) {
                    float u = w1[dd], v = w2[dd], gu = lambda * u + kv * v,
                          gv = lambda * v + kv * u;
                    w1[dd] = u - eta * gu / sqrtf(1.0f + gu * gu);
                    w2[dd] = v - eta * gv / sqrtf(1.0f + gv * gv);
                }
            }
        expect_close(trained, W, n, "embedding");
        free(W);
        free(trained);
    } else {
        float *V = malloc(3 * k * sizeof *V), w[3] = {0, 0, 0}, b = 0;
        for (size_t i = 0; i < 3 * k; i++) V[i] = 0.1f * (2.0f * fn_rng_uniform(&state) - 1.0f);
        double t = fm_logit_ref(0, w, V, k, x, 3);
        float g = (float)(1.0 / (1.0 + exp(-t))); /* p - label, label 0 */
        float S[8] = {0};
        for (size_t a = 0; a < 3; a++)
            for (size_t dd = 0; dd < k; dd++) S[dd] += V[a * k + dd] * x[a].value;
        b = -eta * g / sqrtf(1.0f + g * g); /* no L2 on the bias */
        for (size_t a = 0; a < 3; a++) {
            float gw = g * x[a].value; /* + l2 * 0 */
            w[a] = -eta * gw / sqrtf(1.0f + gw * gw);
            for (size_t dd = 0; dd < k; dd++) {
                float v = V[a * k + dd];
                float gv = g * x[a].value * (S[dd] - v * x[a].value) + lambda * v;
                V[a * k + dd] = v - eta * gv / sqrtf(1.0f + gv * gv);
            }
        }
        float *tb = read_tensor(path, "bias", &n), *tw = read_tensor(path, "linear", &n),
              *tv = read_tensor(path, "embedding", &n);
        ck_assert_uint_eq(n, 3 * k);
        expect_close(tb, &b, 1, "bias");
        expect_close(tw, w, 3, "linear");
        expect_close(tv, V, 3 * k, "embedding");
        free(tb);
        free(tw);
        free(tv);
        free(V);
    }
    fn_model_free(m);
    fn_dataset_free(d);
    fn_test_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

START_TEST(save_load_identical)
{
    fn_model_kind kind = kinds[_i];
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "m.safetensors");
    fn_dataset *tr = random_data(500, 7, 90, 21);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 2;
    o.k = 5; /* not a multiple of the SIMD width */
    fn_model *m = train_ok(&o, tr, NULL, NULL);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(m, path, &err) == FN_OK, "%s", err.msg);
    fn_model *back = NULL;
    ck_assert_msg(fn_model_load(path, NULL, &back, &err) == FN_OK, "%s", err.msg);
    ck_assert_int_eq(fn_model_kind_of(back), kind);
    ck_assert_uint_eq(fn_model_fields(back), 7);
    ck_assert_uint_eq(fn_model_features(back), 90);
    float *p = predict_all(m, tr, 1), *q = predict_all(back, tr, 1);
    ck_assert_mem_eq(p, q, tr->n * sizeof *p);
    free(p);
    free(q);
    fn_model_free(back);
    fn_model_free(m);
    fn_dataset_free(tr);
    fn_test_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

/* ---- request scoring ---- */

START_TEST(score_equals_predict)
{
    /* FM, FFM with and without instance normalisation, DeepFM (whose GEMMs sum in another
       order for a request than for a dataset: close, not equal). */
    fn_model_kind kind = _i == 0 ? FN_MODEL_FM : _i == 3 ? FN_MODEL_DEEPFM : FN_MODEL_FFM;
    const double tol = kind == FN_MODEL_DEEPFM ? 1e-5 : 1e-6;
    const uint32_t m = 9, n = 120;
    fn_dataset *tr = random_data(2000, m, n, 31);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 2;
    o.normalize = _i == 2 ? 0 : o.normalize;
    fn_model *model = train_ok(&o, tr, NULL, NULL);
    uint64_t s = 77;
    static const size_t sizes[] = {1, 7, 1000};
    double worst = 0;
    for (int round = 0; round < 20; round++) {
        request r;
        request_random(&r, sizes[round % 3], m, n, &s);
        fn_score_request q = request_view(&r);
        float *got = malloc(r.n_cand * sizeof *got), *again = malloc(r.n_cand * sizeof *again);
        fn_error err = {0};
        ck_assert_msg(fn_model_score(model, &q, got, &err) == FN_OK, "%s", err.msg);
        ck_assert_msg(fn_model_score(model, &q, again, &err) == FN_OK, "%s", err.msg);
        ck_assert_mem_eq(got, again, r.n_cand * sizeof *got); /* deterministic */
        fn_dataset *d = request_concat(&r);
        float *want = predict_all(model, d, 1);
        for (size_t c = 0; c < r.n_cand; c++) {
            double diff = fabs((double)got[c] - want[c]);
            if (diff > worst) worst = diff;
            ck_assert_msg(diff <= tol, "round %d candidate %zu: score %.9g, predict %.9g", round, c,
                          got[c], want[c]);
        }
        fn_dataset_free(d);
        free(want);
        free(got);
        free(again);
        request_free(&r);
    }
    fprintf(stderr, "%s%s: score vs predict, largest difference %.3g\n", fn_model_kind_name(kind),
            _i == 2 ? " (no normalisation)" : "", worst);
    fn_model_free(model);
    fn_dataset_free(tr);
}
END_TEST

typedef struct score_thread {
    const fn_model *m;
    const fn_score_request *q;
    const float *want;
    int mismatches;
} score_thread;

static void *score_loop(void *arg)
{
    score_thread *t = arg;
    float *out = malloc(t->q->n_cand * sizeof *out);
    for (int i = 0; i < 50; i++) {
        fn_error err = {0};
        if (fn_model_score(t->m, t->q, out, &err) != FN_OK ||
            memcmp(out, t->want, t->q->n_cand * sizeof *out) != 0)
            t->mismatches++;
    }
    free(out);
    return NULL;
}

START_TEST(score_from_many_threads)
{
    fn_model_kind kind = kinds[_i];
    fn_dataset *tr = random_data(1000, 8, 100, 41);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 1;
    fn_model *m = train_ok(&o, tr, NULL, NULL);
    uint64_t s = 5;
    request r;
    request_random(&r, 1000, 8, 100, &s);
    fn_score_request q = request_view(&r);
    float *want = malloc(r.n_cand * sizeof *want);
    fn_error err = {0};
    ck_assert_int_eq(fn_model_score(m, &q, want, &err), FN_OK);
    pthread_t th[4];
    score_thread st[4];
    for (int i = 0; i < 4; i++) {
        st[i] = (score_thread){.m = m, .q = &q, .want = want};
        ck_assert_int_eq(pthread_create(&th[i], NULL, score_loop, &st[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(st[i].mismatches, 0);
    }
    free(want);
    request_free(&r);
    fn_model_free(m);
    fn_dataset_free(tr);
}
END_TEST

START_TEST(simd_matches_portable)
{
    /* The AVX2 kernels against the plain C ones (the same when the CPU has no AVX2). */
    fn_model_kind kind = kinds[_i];
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "m.safetensors");
    fn_dataset *tr = random_data(1500, 6, 80, 51);
    fn_train_options o = quiet_opts(kind);
    o.epochs = 2;
    o.k = 13; /* 8 + 4 + 1: every tail of the kernels */
    fn_model *simd = train_ok(&o, tr, NULL, NULL);
    setenv("FUNNEL_CPU_SIMD", "portable", 1);
    fn_model *plain = train_ok(&o, tr, NULL, NULL);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(simd, path, &err) == FN_OK, "%s", err.msg);
    fn_model *loaded = NULL; /* the SIMD-trained weights, scored by the plain code */
    ck_assert_msg(fn_model_load(path, NULL, &loaded, &err) == FN_OK, "%s", err.msg);
    unsetenv("FUNNEL_CPU_SIMD");
    float *ps = predict_all(simd, tr, 1), *pp = predict_all(plain, tr, 1),
          *pl = predict_all(loaded, tr, 1);
    for (size_t i = 0; i < tr->n; i++) {
        ck_assert_msg(fabsf(ps[i] - pl[i]) <= 1e-6f, "row %zu: %.9g vs %.9g", i, ps[i], pl[i]);
        /* Training sums in another order: close, not equal. */
        ck_assert_msg(fabsf(ps[i] - pp[i]) <= 1e-3f, "row %zu: %.9g vs %.9g", i, ps[i], pp[i]);
    }
    free(ps);
    free(pp);
    free(pl);
    fn_model_free(simd);
    fn_model_free(plain);
    fn_model_free(loaded);
    fn_dataset_free(tr);
    fn_test_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

Suite *rank_fm_suite(void)
{
    Suite *s = suite_create("rank_fm");
    TCase *t = tcase_create("edges");
    tcase_add_loop_test(t, damaged_files_refused, 0, 3);
    tcase_add_loop_test(t, empty_and_unseen, 0, 3);
    suite_add_tcase(s, t);
    t = tcase_create("learning");
    tcase_set_timeout(t, 300);
    tcase_add_loop_test(t, learns_an_interaction, 0, 3);
    tcase_add_loop_test(t, criteo_sample, 0, 3);
    tcase_add_loop_test(t, early_stopping_keeps_best, 0, 3);
    tcase_add_loop_test(t, early_stopping_on_auc, 0, 3);
    tcase_add_loop_test(t, graded_targets_are_learned, 0, 3);
    tcase_add_loop_test(t, deterministic_with_one_thread, 0, 3);
    tcase_add_loop_test(t, hogwild_threads_learn, 0, 3);
    suite_add_tcase(s, t);
    t = tcase_create("formulas");
    tcase_add_loop_test(t, matches_the_formula, 0, 3);
    tcase_add_loop_test(t, one_step_by_hand, 0, 4);
    suite_add_tcase(s, t);
    t = tcase_create("files");
    tcase_add_loop_test(t, save_load_identical, 0, 3);
    suite_add_tcase(s, t);
    t = tcase_create("scoring");
    tcase_set_timeout(t, 300);
    tcase_add_loop_test(t, score_equals_predict, 0, 4);
    tcase_add_loop_test(t, score_from_many_threads, 0, 3);
    tcase_add_loop_test(t, simd_matches_portable, 0, 3);
    suite_add_tcase(s, t);
    return s;
}
