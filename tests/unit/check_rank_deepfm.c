/*
 * check_rank_deepfm.c - what only DeepFM has (src/rank/deepfm*.c): the MLP
 * by its definition against the file's tensors (ReLU, GELU, no hidden
 * layer), dropout, its options refused by name, damaged MLP tensors, and the
 * CUDA backend when there is a GPU. The contract it shares with FM and FFM
 * (files, early stopping, request scoring, threads) is tested in
 * check_rank_fm.c over all three kinds.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "rank/rank.h"
#include "rank_util.h"
#include "test_util.h"

static fn_train_options dfm_opts(int n_hidden, const int *hidden, int relu)
{
    fn_train_options o = quiet_opts(FN_MODEL_DEEPFM);
    o.n_hidden = n_hidden;
    for (int i = 0; i < n_hidden; i++) o.hidden[i] = hidden[i];
    o.relu = relu;
    return o;
}

static double act_ref(double x, int relu)
{
    return relu ? (x > 0 ? x : 0) : 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

/* The DeepFM logit from the saved tensors, in double: FM part plus the MLP over fields. */
static double logit_ref(const char *path, int n_hidden, int relu, uint32_t F, size_t k,
                        const fn_feature_triple *x, size_t nx)
{
    size_t nb, nw, nv;
    float *bias = read_tensor(path, "bias", &nb), *w = read_tensor(path, "linear", &nw),
          *V = read_tensor(path, "embedding", &nv);
    double t = bias[0], S[64] = {0}, Q[64] = {0}, in[512] = {0}, out[512];
    for (size_t a = 0; a < nx; a++) {
        t += (double)w[x[a].index] * x[a].value;
        for (size_t d = 0; d < k; d++) {
            double vx = (double)V[x[a].index * k + d] * x[a].value;
            S[d] += vx;
            Q[d] += vx * vx;
            in[x[a].field * k + d] += vx;
        }
    }
    for (size_t d = 0; d < k; d++) t += 0.5 * (S[d] * S[d] - Q[d]);
    size_t width = F * k;
    for (int l = 0; l <= n_hidden; l++) {
        char wn[32], bn[32];
        if (l == n_hidden) {
            snprintf(wn, sizeof wn, "mlp.out.weight");
            snprintf(bn, sizeof bn, "mlp.out.bias");
        } else {
            snprintf(wn, sizeof wn, "mlp.%d.weight", l);
            snprintf(bn, sizeof bn, "mlp.%d.bias", l);
        }
        size_t nW, nB;
        float *W = read_tensor(path, wn, &nW), *B = read_tensor(path, bn, &nB);
        ck_assert_uint_eq(nW, nB * width);
        for (size_t o = 0; o < nB; o++) {
            double z = B[o];
            for (size_t i = 0; i < width; i++) z += (double)W[o * width + i] * in[i];
            out[o] = l == n_hidden ? z : act_ref(z, relu);
        }
        memcpy(in, out, nB * sizeof *in);
        width = nB;
        free(W);
        free(B);
    }
    free(bias);
    free(w);
    free(V);
    return t + in[0];
}

START_TEST(matches_the_formula)
{
    /* Two ReLU layers, one GELU layer, none (the MLP is one linear layer). */
    static const int hidden[3][2] = {{16, 8}, {12, 0}, {0, 0}};
    static const int n_hidden[3] = {2, 1, 0}, relu[3] = {1, 0, 1};
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "m.safetensors");
    const uint32_t F = 6, n = 70;
    fn_dataset *tr = random_data(600, F, n, 61);
    fn_train_options o = dfm_opts(n_hidden[_i], hidden[_i], relu[_i]);
    o.k = 5;
    o.epochs = 3;
    o.batch = 64;
    o.lr = 0.02f; /* fast enough to fit the random labels a little */
    fn_model *m = train_ok(&o, tr, NULL, NULL);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(m, path, &err) == FN_OK, "%s", err.msg);
    float *p = predict_all(m, tr, 1);
    double worst = 0;
    for (size_t i = 0; i < 200; i++) {
        const fn_feature_triple *x = tr->triples + tr->offsets[i];
        double t = logit_ref(path, n_hidden[_i], relu[_i], F, 5, x,
                             (size_t)(tr->offsets[i + 1] - tr->offsets[i]));
        double want = 1 / (1 + exp(-t)), diff = fabs(want - p[i]);
        if (diff > worst) worst = diff;
        ck_assert_msg(diff < 2e-6, "row %zu: %.9g, by the formula %.9g", i, p[i], want);
    }
    /* The model moved away from its start: the formula is not checked on a constant. */
    double lo = 1, hi = 0;
    for (size_t i = 0; i < tr->n; i++) lo = fmin(lo, p[i]), hi = fmax(hi, p[i]);
    ck_assert_msg(hi - lo > 0.05, "predictions span only [%g, %g]", lo, hi);
    fprintf(stderr, "deepfm (%d hidden, %s): largest difference to the formula %.3g\n",
            n_hidden[_i], relu[_i] ? "relu" : "gelu", worst);
    free(p);
    fn_model_free(m);
    fn_dataset_free(tr);
    fn_test_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

/* Copies a safetensors file with the first `from` of its header replaced by `to`, as long. */
static void replace_in_file(const char *src, const char *dst, const char *from, const char *to)
{
    ck_assert_uint_eq(strlen(from), strlen(to));
    fn_buf b = {0};
    fn_test_read_file(src, &b);
    char *at = b.len > 8 ? strstr(b.data + 8, from) : NULL; /* in the JSON header */
    ck_assert_msg(at != NULL, "%s not in %s", from, src);
    memcpy(at, to, strlen(to));
    fn_test_write_file(dst, b.data, b.len);
    fn_buf_free(&b);
}

START_TEST(file_layout)
{
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "m.safetensors"),
         *bad = fn_test_path(dir, "bad.safetensors");
    fn_dataset *tr = random_data(300, 4, 50, 71);
    static const int hidden[2] = {10, 6};
    fn_train_options o = dfm_opts(2, hidden, 0);
    o.epochs = 1;
    o.k = 3;
    fn_model *m = train_ok(&o, tr, NULL, NULL);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(m, path, &err) == FN_OK, "%s", err.msg);
    /* PyTorch's Linear layout, in layer order, and the hyperparameters in the metadata. */
    static const struct {
        const char *name;
        int ndim;
        int64_t d0, d1;
    } want[] = {
        {"bias", 1, 1, 0},           {"linear", 1, 50, 0},        {"embedding", 2, 50, 3},
        {"mlp.0.weight", 2, 10, 12}, {"mlp.0.bias", 1, 10, 0},    {"mlp.1.weight", 2, 6, 10},
        {"mlp.1.bias", 1, 6, 0},     {"mlp.out.weight", 2, 1, 6}, {"mlp.out.bias", 1, 1, 0}};
    fn_safetensors *st;
    ck_assert_msg(fn_safetensors_open(path, &st, &err) == FN_OK, "%s", err.msg);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const fn_st_tensor *t = fn_safetensors_find(st, want[i].name);
        ck_assert_msg(t != NULL, "no tensor %s", want[i].name);
        ck_assert_int_eq(t->ndim, want[i].ndim);
        ck_assert_int_eq(t->shape[0], want[i].d0);
        if (want[i].ndim == 2) ck_assert_int_eq(t->shape[1], want[i].d1);
    }
    ck_assert_str_eq(fn_safetensors_metadata(st, "funnel.model"), "deepfm");
    ck_assert_str_eq(fn_safetensors_metadata(st, "funnel.hidden"), "10,6");
    ck_assert_str_eq(fn_safetensors_metadata(st, "funnel.activation"), "gelu");
    /* How the sparse part trained: AdaGrad at its own rate unless told otherwise. */
    ck_assert_str_eq(fn_safetensors_metadata(st, "funnel.sparse_optimizer"), "adagrad");
    ck_assert_float_eq((float)strtod(fn_safetensors_metadata(st, "funnel.sparse_lr"), NULL),
                       FN_SPARSE_ADAGRAD_LR);
    fn_safetensors_close(st);
    /* An optimizer this funnel does not know is a damaged file (same length, valid JSON). */
    replace_in_file(path, bad, "\"adagrad\"", "\"adagrax\"");
    expect_refused(bad, FN_ERR_CORRUPT, "unknown optimizer", "unknown sparse optimizer 'adagrax'");

    edit_model(path, bad, "mlp.1.weight", "[10, 6]", -1, 0);
    expect_refused(bad, FN_ERR_CORRUPT, "transposed layer", "tensor 'mlp.1.weight' is F32");
    edit_model(path, bad, "mlp.0.bias", NULL, 4, 0);
    expect_refused(bad, FN_ERR_CORRUPT, "NaN bias", "tensor 'mlp.0.bias' holds NaN at element 4");
    edit_model(path, bad, "mlp.out.weight", NULL, -1, 1);
    expect_refused(bad, FN_ERR_CORRUPT, "no output layer", "no tensor 'mlp.out.weight'");
    fn_model_free(m);
    fn_dataset_free(tr);
    fn_test_rmtree(dir);
    free(path);
    free(bad);
    free(dir);
}
END_TEST

START_TEST(dropout_trains_not_predicts)
{
    fn_dataset *tr = xor_data(6000, 81), *te = xor_data(1000, 82);
    fn_train_options o = quiet_opts(FN_MODEL_DEEPFM);
    o.dropout = 0.3f;
    o.epochs = 20;
    fn_train_report rep;
    fn_model *m = train_ok(&o, tr, te, &rep);
    double auc = auc_of(m, te);
    ck_assert_msg(auc > 0.99, "AUC %.4f with dropout 0.3", auc);
    /* Dropout is for training: predictions repeat. */
    float *a = predict_all(m, te, 1), *b = predict_all(m, te, 1);
    ck_assert_mem_eq(a, b, te->n * sizeof *a);
    /* And it changed the training: another model than without it. */
    o.dropout = 0;
    fn_model *plain = train_ok(&o, tr, te, NULL);
    float *c = predict_all(plain, te, 1);
    ck_assert_msg(memcmp(a, c, te->n * sizeof *a) != 0, "dropout changed nothing");
    free(a);
    free(b);
    free(c);
    fn_model_free(m);
    fn_model_free(plain);
    fn_dataset_free(tr);
    fn_dataset_free(te);
}
END_TEST

/*
 * The sparse part by AdaGrad (the MLP still by Adam) learns what Adam's does; the file says
 * so and the default learning rate; with Adam, an explicit sparse learning rate equal to --lr
 * is the default one, to the bit; a file without the record is an Adam-trained one.
 */
START_TEST(adagrad_sparse_part)
{
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "m.safetensors");
    fn_dataset *tr = xor_data(6000, 83), *te = xor_data(1000, 84);
    fn_train_options o = quiet_opts(FN_MODEL_DEEPFM);
    o.epochs = 20;
    o.sparse_opt = FN_SPARSE_ADAGRAD;
    fn_model *m = train_ok(&o, tr, te, NULL);
    double auc = auc_of(m, te);
    ck_assert_msg(auc > 0.99, "AUC %.4f with the sparse part by AdaGrad", auc);
    fn_error err = {0};
    ck_assert_msg(fn_model_save(m, path, &err) == FN_OK, "%s", err.msg);
    fn_safetensors *st;
    ck_assert_msg(fn_safetensors_open(path, &st, &err) == FN_OK, "%s", err.msg);
    ck_assert_str_eq(fn_safetensors_metadata(st, "funnel.sparse_optimizer"), "adagrad");
    ck_assert_float_eq((float)strtod(fn_safetensors_metadata(st, "funnel.sparse_lr"), NULL),
                       FN_SPARSE_ADAGRAD_LR);
    fn_safetensors_close(st);
    fn_model *back = NULL;
    ck_assert_msg(fn_model_load(path, NULL, &back, &err) == FN_OK, "%s", err.msg);
    float *a = predict_all(m, te, 1), *b = predict_all(back, te, 1);
    ck_assert_mem_eq(a, b, te->n * sizeof *a);
    /* Without the record (keys renamed away), the file is taken for an Adam-trained one. */
    char *old = fn_test_path(dir, "old.safetensors"),
         *again = fn_test_path(dir, "again.safetensors");
    replace_in_file(path, old, "\"funnel.sparse_optimizer\"", "\"funnel.sparse_optimizex\"");
    replace_in_file(old, old, "\"funnel.sparse_lr\"", "\"funnel.sparse_lx\"");
    fn_model *older = NULL;
    ck_assert_msg(fn_model_load(old, NULL, &older, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fn_model_save(older, again, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fn_safetensors_open(again, &st, &err) == FN_OK, "%s", err.msg);
    ck_assert_str_eq(fn_safetensors_metadata(st, "funnel.sparse_optimizer"), "adam");
    fn_safetensors_close(st);
    fn_model_free(older);
    free(old), free(again);
    /* Another training than Adam's. */
    o.sparse_opt = FN_SPARSE_ADAM;
    fn_model *adam = train_ok(&o, tr, te, NULL);
    float *c = predict_all(adam, te, 1);
    ck_assert_msg(memcmp(a, c, te->n * sizeof *a) != 0, "AdaGrad trained as Adam did");
    o.sparse_lr = o.lr;
    fn_model *same = train_ok(&o, tr, te, NULL);
    float *d = predict_all(same, te, 1);
    ck_assert_mem_eq(c, d, te->n * sizeof *c);
    free(a), free(b), free(c), free(d);
    fn_model_free(m), fn_model_free(back), fn_model_free(adam), fn_model_free(same);
    fn_dataset_free(tr);
    fn_dataset_free(te);
    fn_test_rmtree(dir);
    free(path);
    free(dir);
}
END_TEST

static void expect_bad_option(const fn_train_options *o, const fn_dataset *d, const char *word)
{
    fn_error err = {0};
    fn_model *m = NULL;
    fn_status st = fn_model_train(o, d, NULL, NULL, &m, NULL, &err);
    ck_assert_msg(st == FN_ERR_INVALID, "%s: status %d (%s)", word, st, err.msg);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, word), "message '%s' does not name %s", err.msg, word);
}

START_TEST(bad_options_named)
{
    fn_dataset *d = random_data(100, 3, 20, 91);
    fn_train_options o = quiet_opts(FN_MODEL_DEEPFM);
    o.dropout = 1.0f;
    expect_bad_option(&o, d, "dropout");
    o = quiet_opts(FN_MODEL_DEEPFM);
    o.batch = 0;
    expect_bad_option(&o, d, "batch");
    o = quiet_opts(FN_MODEL_DEEPFM);
    o.device = "tpu";
    expect_bad_option(&o, d, "tpu");
    o = quiet_opts(FN_MODEL_DEEPFM);
    o.sparse_lr = NAN;
    expect_bad_option(&o, d, "sparse learning rate");
    o = quiet_opts(FN_MODEL_DEEPFM);
    o.sparse_opt = (fn_sparse_optimizer)7;
    expect_bad_option(&o, d, "sparse optimizer 7");
    fn_dataset_free(d);
}
END_TEST

START_TEST(cuda_matches_cpu)
{
    fn_dataset *tr = xor_data(3000, 101), *te = xor_data(500, 102);
    fn_train_options o = quiet_opts(FN_MODEL_DEEPFM);
    o.epochs = 3;
    o.device = "cuda";
    /* The sparse part trains on the host with either optimizer; the MLP on the device. */
    o.sparse_opt = _i ? FN_SPARSE_ADAGRAD : FN_SPARSE_ADAM;
    fn_error err = {0};
    fn_model *gpu = NULL;
    fn_train_report rep;
    fn_status st = fn_model_train(&o, tr, NULL, NULL, &gpu, &rep, &err);
    if (st == FN_ERR_UNSUPPORTED) {
        fn_test_cuda_unavailable("deepfm on CUDA", err.msg);
        fn_dataset_free(tr);
        fn_dataset_free(te);
        return;
    }
    ck_assert_msg(st == FN_OK, "%s", err.msg);
    o.device = "cpu";
    fn_model *cpu = train_ok(&o, tr, NULL, NULL);
    /* The same steps in another summation order: close after three epochs. */
    float *a = predict_all(gpu, te, 1), *b = predict_all(cpu, te, 1);
    for (size_t i = 0; i < te->n; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) < 1e-3f, "%s, row %zu: cuda %.6f, cpu %.6f",
                      fn_sparse_optimizer_name(o.sparse_opt), i, a[i], b[i]);
    free(a);
    free(b);
    fn_model_free(gpu);
    fn_model_free(cpu);
    fn_dataset_free(tr);
    fn_dataset_free(te);
}
END_TEST

Suite *rank_deepfm_suite(void)
{
    Suite *s = suite_create("rank_deepfm");
    TCase *t = tcase_create("model");
    tcase_set_timeout(t, 300);
    tcase_add_loop_test(t, matches_the_formula, 0, 3);
    tcase_add_test(t, file_layout);
    tcase_add_test(t, dropout_trains_not_predicts);
    tcase_add_test(t, adagrad_sparse_part);
    tcase_add_test(t, bad_options_named);
    tcase_add_loop_test(t, cuda_matches_cpu, 0, 2);
    suite_add_tcase(s, t);
    return s;
}
