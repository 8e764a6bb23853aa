/*
 * check_rerank_model.c - the list-aware reranker: its gradients against
 * finite differences of its loss, that self-attention learns what a per-item
 * model cannot (relevance relative to the rest of the list), training on the
 * LETOR sample, files (round trip, damaged ones), scoring one request against
 * scoring a list set, long lists, concurrent scoring and determinism.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "rerank/model_impl.h"
#include "rerank/rerank.h"
#include "test_util.h"

static uint64_t rng_state;

static double urand(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static double nrand(void)
{
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static fn_listset *new_listset(size_t n_lists, size_t per_list, uint32_t F)
{
    fn_listset *d = calloc(1, sizeof *d);
    ck_assert_ptr_nonnull(d);
    d->n_lists = n_lists;
    d->n_items = n_lists * per_list;
    d->n_features = F;
    d->offsets = malloc((n_lists + 1) * sizeof *d->offsets);
    d->labels = calloc(d->n_items, sizeof *d->labels);
    d->features = calloc(d->n_items * F, sizeof *d->features);
    ck_assert(d->offsets && d->labels && d->features);
    for (size_t i = 0; i <= n_lists; i++) d->offsets[i] = i * per_list;
    return d;
}

/*
 * Lists whose relevant item is the one nearest the list's own mean: feature 0 is c + noise
 * with c drawn per list from a wide range, so an item's value alone says nothing about its
 * label; only a model that sees the rest of the list can rank. Feature 1 is noise.
 */
static fn_listset *middle_item_lists(size_t n_lists, size_t per_list, uint64_t seed)
{
    rng_state = seed;
    fn_listset *d = new_listset(n_lists, per_list, 2);
    for (size_t l = 0; l < n_lists; l++) {
        const double c = 8 * urand() - 4;
        float *x = d->features + l * per_list * 2;
        double mean = 0;
        for (size_t i = 0; i < per_list; i++) {
            x[2 * i] = (float)(c + nrand());
            x[2 * i + 1] = (float)nrand();
            mean += x[2 * i];
        }
        mean /= (double)per_list;
        size_t best = 0;
        for (size_t i = 1; i < per_list; i++)
            if (fabs(x[2 * i] - mean) < fabs(x[2 * best] - mean)) best = i;
        d->labels[l * per_list + best] = 1;
    }
    return d;
}

static fn_rerank_options small_options(void)
{
    fn_rerank_options o = fn_rerank_options_default();
    o.d_model = 16;
    o.n_heads = 2;
    o.d_ff = 32;
    o.threads = 1;
    o.dropout = 0;
    return o;
}

/* ---- gradients ---- */

static void check_gradients(fn_rerank_options o)
{
    fn_listset *d = middle_item_lists(3, 7, 5);
    d->offsets[1] = 4; /* lists of 4, 10 and 7 items: padding in the batch */
    d->offsets[2] = 14;
    for (size_t i = 0; i < d->n_items; i++) d->labels[i] = (float)(i * 7 % 5) / 2;
    float mean[2] = {0.1f, -0.2f}, scale[2] = {0.5f, 1.5f};
    fn_reranker *r;
    fn_error err = {0};
    ck_assert_int_eq(rr_new(&o, 2, mean, scale, &r, &err), FN_OK);
    float *grads[RR_MAX_TENSORS] = {0};
    for (int i = RR_IN_W; i < r->n_tensors; i++)
        if (r->ndim[i]) grads[i] = malloc(fn_tensor_nbytes(r->t[i]));
    const size_t lists[3] = {0, 1, 2};
    double loss;
    ck_assert_msg(rr_batch_grads(r, d, lists, 3, &loss, grads, &err) == FN_OK, "%s", err.msg);
    ck_assert(isfinite(loss) && loss > 0);
    int checked = 0, tensors = 0;
    double worst = 0;
    for (int i = RR_IN_W; i < r->n_tensors; i++) {
        if (!r->ndim[i]) continue;
        tensors++;
        const size_t n = fn_tensor_nbytes(r->t[i]) / sizeof(float);
        float *w = malloc(n * sizeof *w);
        ck_assert_int_eq(fn_tensor_read(r->t[i], w, n * sizeof *w, &err), FN_OK);
        /* a few elements of every tensor, spread over it */
        for (size_t j = 0; j < n; j += n / 3 + 1) {
            const float keep = w[j], h = 1e-2f;
            double lp, lm;
            w[j] = keep + h;
            ck_assert_int_eq(fn_tensor_write(r->t[i], w, n * sizeof *w, &err), FN_OK);
            ck_assert_int_eq(rr_batch_grads(r, d, lists, 3, &lp, NULL, &err), FN_OK);
            w[j] = keep - h;
            ck_assert_int_eq(fn_tensor_write(r->t[i], w, n * sizeof *w, &err), FN_OK);
            ck_assert_int_eq(rr_batch_grads(r, d, lists, 3, &lm, NULL, &err), FN_OK);
            w[j] = keep;
            ck_assert_int_eq(fn_tensor_write(r->t[i], w, n * sizeof *w, &err), FN_OK);
            const double fd = (lp - lm) / (2.0 * h) / 3.0, g = grads[i][j];
            const double diff = fabs(fd - g) / (fabs(fd) + fabs(g) + 1e-3);
            if (diff > worst) worst = diff;
            ck_assert_msg(diff < 2e-2, "%s[%zu]: backward %.6g, finite difference %.6g",
                          r->names[i], j, g, fd);
            checked++;
        }
        free(w);
    }
    ck_assert_int_gt(checked, tensors);
    for (int i = 0; i < RR_MAX_TENSORS; i++) free(grads[i]);
    fn_reranker_free(r);
    fn_listset_free(d);
}

START_TEST(gradients_match_finite_differences)
{
    fn_rerank_options o = small_options();
    o.loss = FN_RERANK_LISTNET; /* smooth: LambdaRank's weights jump when ranks swap */
    o.n_layers = 2;
    o.positions = 1;
    o.max_items = 12;
    check_gradients(o);
    o.n_layers = 0;
    o.positions = 0;
    check_gradients(o);
}
END_TEST

/* ---- learning ---- */

static double mean_ndcg(const fn_reranker *r, const fn_listset *d, int k)
{
    float *s = malloc(d->n_items * sizeof *s);
    fn_error err = {0};
    ck_assert_msg(fn_reranker_predict(r, d, s, &err) == FN_OK, "%s", err.msg);
    double sum = 0;
    for (size_t i = 0; i < d->n_lists; i++) {
        const uint64_t lo = d->offsets[i];
        sum += fn_metric_ndcg(s + lo, d->labels + lo, d->offsets[i + 1] - lo, k);
    }
    free(s);
    return sum / (double)d->n_lists;
}

START_TEST(attention_ranks_what_a_per_item_model_cannot)
{
    fn_listset *train = middle_item_lists(600, 10, 1), *valid = middle_item_lists(100, 10, 2),
               *test = middle_item_lists(300, 10, 3);
    fn_rerank_options o = small_options();
    o.d_model = 32;
    o.d_ff = 64;
    o.epochs = 40;
    o.lr = 3e-3f;
    o.threads = 0;
    fn_reranker *att, *flat;
    fn_rerank_report rep;
    fn_error err = {0};
    ck_assert_msg(fn_reranker_train(&o, train, valid, &att, &rep, &err) == FN_OK, "%s", err.msg);
    o.n_layers = 0;
    ck_assert_msg(fn_reranker_train(&o, train, valid, &flat, &rep, &err) == FN_OK, "%s", err.msg);
    const double a1 = mean_ndcg(att, test, 1), f1 = mean_ndcg(flat, test, 1);
    fprintf(stderr, "middle item: NDCG@1 self-attention %.3f, per-item %.3f\n", a1, f1);
    /* one item in ten is relevant: a blind ranking finds it first a tenth of the time */
    ck_assert_msg(a1 > 0.6, "self-attention NDCG@1 %.3f", a1);
    ck_assert_msg(f1 < 0.35, "per-item NDCG@1 %.3f", f1);
    fn_reranker_free(att);
    fn_reranker_free(flat);
    fn_listset_free(train);
    fn_listset_free(valid);
    fn_listset_free(test);
}
END_TEST

START_TEST(letor_sample_learns)
{
    char *tr = fn_test_data("letor-lambdarank/rank.train"),
         *te = fn_test_data("letor-lambdarank/rank.test");
    if (!tr) {
        fprintf(stderr, "SKIPPED letor_sample_learns: data sets not found\n");
        return;
    }
    fn_listset *train, *test;
    fn_error err = {0};
    ck_assert_msg(fn_listset_read_svmrank(tr, NULL, 0, &train, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fn_listset_read_svmrank(te, NULL, train->n_features, &test, &err) == FN_OK, "%s",
                  err.msg);
    fn_rerank_options o = fn_rerank_options_default();
    o.epochs = 15;
    fn_reranker *r;
    fn_rerank_report rep;
    ck_assert_msg(fn_reranker_train(&o, train, NULL, &r, &rep, &err) == FN_OK, "%s", err.msg);
    ck_assert_int_eq(rep.epochs_run, 15);
    ck_assert(isnan(rep.best_valid_ndcg));
    /* the input order of the file as a ranking, for scale */
    float *s = malloc(test->n_items * sizeof *s);
    for (size_t i = 0; i < test->n_items; i++) s[i] = -(float)i;
    fn_rank_metrics base, got;
    fn_listset_metrics(test, s, &base);
    ck_assert_int_eq(fn_reranker_predict(r, test, s, &err), FN_OK);
    fn_listset_metrics(test, s, &got);
    fprintf(stderr, "letor: NDCG@10 %.4f (file order %.4f)\n", got.ndcg10, base.ndcg10);
    ck_assert_msg(got.ndcg10 > base.ndcg10 + 0.05 && got.ndcg10 > 0.70, "NDCG@10 %.4f vs %.4f",
                  got.ndcg10, base.ndcg10);
    free(s);
    fn_reranker_free(r);
    fn_listset_free(train);
    fn_listset_free(test);
    free(tr);
    free(te);
}
END_TEST

/* ---- files, scoring ---- */

static fn_reranker *trained_small(const fn_listset *d, int positions)
{
    fn_rerank_options o = small_options();
    o.epochs = 3;
    o.positions = positions;
    o.max_items = 16;
    fn_reranker *r;
    fn_error err = {0};
    ck_assert_msg(fn_reranker_train(&o, d, NULL, &r, NULL, &err) == FN_OK, "%s", err.msg);
    return r;
}

START_TEST(save_load_scores_the_same)
{
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "r.safetensors");
    fn_listset *d = middle_item_lists(40, 12, 9);
    fn_reranker *r = trained_small(d, 1), *back;
    fn_error err = {0};
    ck_assert_int_eq(fn_reranker_save(r, path, &err), FN_OK);
    ck_assert_msg(fn_reranker_load(path, "cpu", 1, &back, &err) == FN_OK, "%s", err.msg);
    ck_assert_int_eq(fn_reranker_features(back), 2);
    ck_assert_int_eq(fn_reranker_options(back)->positions, 1);
    float *a = malloc(d->n_items * sizeof *a), *b = malloc(d->n_items * sizeof *b);
    ck_assert_int_eq(fn_reranker_predict(r, d, a, &err), FN_OK);
    ck_assert_int_eq(fn_reranker_predict(back, d, b, &err), FN_OK);
    ck_assert_mem_eq(a, b, d->n_items * sizeof *a);
    /* one request scores as the list set did */
    for (size_t l = 0; l < d->n_lists; l += 7) {
        float s[12];
        ck_assert_int_eq(fn_reranker_score(back, d->features + l * 24, 12, s, &err), FN_OK);
        for (int i = 0; i < 12; i++) ck_assert_float_eq_tol(s[i], a[l * 12 + i], 1e-5);
    }
    free(a);
    free(b);
    fn_reranker_free(r);
    fn_reranker_free(back);
    fn_listset_free(d);
    fn_test_rmtree(dir);
    free(dir);
    free(path);
}
END_TEST

static void expect_load_error(const char *path, const char *needle)
{
    fn_reranker *r = NULL;
    fn_error err = {0};
    ck_assert_int_ne(fn_reranker_load(path, "cpu", 1, &r, &err), FN_OK);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err.msg, needle), "expected '%s' in: %s", needle, err.msg);
}

START_TEST(damaged_files_are_named)
{
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "r.safetensors"),
         *bad = fn_test_path(dir, "bad.safetensors");
    fn_listset *d = middle_item_lists(10, 5, 4);
    fn_reranker *r = trained_small(d, 0);
    fn_error err = {0};
    ck_assert_int_eq(fn_reranker_save(r, path, &err), FN_OK);
    fn_buf good = FN_BUF_INIT;
    fn_test_read_file(path, &good);
    /* truncated */
    fn_test_write_file(bad, good.data, good.len - 9);
    expect_load_error(bad, "bad.safetensors");
    /* a NaN weight: the last float of the file is the last tensor's */
    fn_buf nan = FN_BUF_INIT;
    fn_buf_append(&nan, good.data, good.len);
    const float qnan = NAN;
    memcpy(nan.data + nan.len - sizeof qnan, &qnan, sizeof qnan);
    fn_test_write_file(bad, nan.data, nan.len);
    expect_load_error(bad, "non-finite");
    /* a tensor of another shape, and another kind of model */
    fn_safetensors_writer *w = fn_safetensors_writer_new();
    float z[64] = {0};
    int64_t shape[2] = {3, 3};
    ck_assert_int_eq(fn_safetensors_writer_add(w, "input.weight", FN_ST_F32, 2, shape, z, &err),
                     FN_OK);
    const char *meta[][2] = {
        {"funnel.model", "reranker"}, {"funnel.features", "2"},   {"funnel.d_model", "16"},
        {"funnel.n_heads", "2"},      {"funnel.n_layers", "0"},   {"funnel.d_ff", "32"},
        {"funnel.positions", "0"},    {"funnel.max_items", "16"}, {"funnel.loss", "listnet"},
        {"funnel.ndcg_k", "10"},      {"funnel.lambda_k", "0"},   {"funnel.lr", "0.001"},
        {"funnel.l2", "0"},           {"funnel.dropout", "0"},    {"funnel.batch", "4"},
        {"funnel.seed", "1"}};
    for (size_t i = 0; i < sizeof meta / sizeof *meta; i++)
        ck_assert_int_eq(fn_safetensors_writer_meta(w, meta[i][0], meta[i][1], &err), FN_OK);
    ck_assert_int_eq(fn_safetensors_writer_write(w, bad, &err), FN_OK);
    fn_safetensors_writer_free(w);
    expect_load_error(bad, "input");
    w = fn_safetensors_writer_new();
    ck_assert_int_eq(fn_safetensors_writer_meta(w, "funnel.model", "deepfm", &err), FN_OK);
    ck_assert_int_eq(fn_safetensors_writer_write(w, bad, &err), FN_OK);
    fn_safetensors_writer_free(w);
    expect_load_error(bad, "not a reranker");
    fn_buf_free(&good);
    fn_buf_free(&nan);
    fn_reranker_free(r);
    fn_listset_free(d);
    fn_test_rmtree(dir);
    free(dir);
    free(path);
    free(bad);
}
END_TEST

START_TEST(items_past_max_items_keep_their_order_below)
{
    fn_listset *d = middle_item_lists(20, 10, 6);
    fn_reranker *r = trained_small(d, 1); /* max_items 16 */
    rng_state = 77;
    float x[2 * 40], s[40], head[16];
    for (int i = 0; i < 80; i++) x[i] = (float)nrand();
    fn_error err = {0};
    ck_assert_int_eq(fn_reranker_score(r, x, 40, s, &err), FN_OK);
    ck_assert_int_eq(fn_reranker_score(r, x, 16, head, &err), FN_OK);
    float lo = INFINITY;
    for (int i = 0; i < 16; i++) {
        ck_assert_float_eq(s[i], head[i]);
        lo = fminf(lo, s[i]);
    }
    for (int i = 16; i < 40; i++) ck_assert(s[i] < lo && (i == 16 || s[i] < s[i - 1]));
    fn_reranker_free(r);
    fn_listset_free(d);
}
END_TEST

typedef struct score_job {
    const fn_reranker *r;
    const fn_listset *d;
    float *out;
    fn_status st;
} score_job;

static void *score_all(void *p)
{
    score_job *j = p;
    for (size_t l = 0; l < j->d->n_lists && j->st == FN_OK; l++) {
        const uint64_t lo = j->d->offsets[l], n = j->d->offsets[l + 1] - lo;
        j->st =
            fn_reranker_score(j->r, j->d->features + lo * j->d->n_features, n, j->out + lo, NULL);
    }
    return NULL;
}

START_TEST(concurrent_scoring_and_determinism)
{
    fn_listset *d = middle_item_lists(60, 9, 12);
    fn_reranker *r1 = trained_small(d, 1), *r2 = trained_small(d, 1);
    float *ref = malloc(d->n_items * sizeof *ref), *other = malloc(d->n_items * sizeof *other);
    score_job one = {r1, d, ref, FN_OK};
    score_all(&one);
    ck_assert_int_eq(one.st, FN_OK);
    /* the same seed and data give the same model (one thread) */
    score_job two = {r2, d, other, FN_OK};
    score_all(&two);
    ck_assert_mem_eq(ref, other, d->n_items * sizeof *ref);
    pthread_t th[4];
    score_job jobs[4];
    float *outs[4];
    for (int t = 0; t < 4; t++) {
        outs[t] = malloc(d->n_items * sizeof *outs[t]);
        jobs[t] = (score_job){r1, d, outs[t], FN_OK};
        pthread_create(&th[t], NULL, score_all, &jobs[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        ck_assert_int_eq(jobs[t].st, FN_OK);
        ck_assert_mem_eq(outs[t], ref, d->n_items * sizeof *ref);
        free(outs[t]);
    }
    free(ref);
    free(other);
    fn_reranker_free(r1);
    fn_reranker_free(r2);
    fn_listset_free(d);
}
END_TEST

START_TEST(bad_options_and_data_are_named)
{
    fn_listset *d = middle_item_lists(5, 4, 1);
    fn_rerank_options o = small_options();
    fn_reranker *r = NULL;
    fn_error err = {0};
    o.n_heads = 3;
    ck_assert_int_eq(fn_reranker_train(&o, d, NULL, &r, NULL, &err), FN_ERR_INVALID);
    ck_assert(strstr(err.msg, "n_heads"));
    o = small_options();
    o.device = "tpu";
    ck_assert_int_eq(fn_reranker_train(&o, d, NULL, &r, NULL, &err), FN_ERR_INVALID);
    ck_assert(strstr(err.msg, "tpu"));
    o = small_options();
    fn_listset *narrow = new_listset(2, 3, 1);
    ck_assert_int_eq(fn_reranker_train(&o, d, narrow, &r, NULL, &err), FN_ERR_INVALID);
    ck_assert(strstr(err.msg, "features"));
    ck_assert_ptr_null(r);
    fn_listset_free(narrow);
    fn_listset_free(d);
}
END_TEST

START_TEST(cuda_matches_cpu)
{
    fn_backend *probe;
    fn_error perr = {0};
    if (fn_backend_cuda_new(0, &probe, &perr) != FN_OK) {
        fn_test_cuda_unavailable("reranker cuda_matches_cpu", perr.msg);
        return;
    }
    fn_backend_free(probe);
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "r.safetensors");
    fn_listset *d = middle_item_lists(50, 11, 3);
    fn_reranker *cpu = trained_small(d, 1), *gpu, *gpu_trained;
    fn_error err = {0};
    ck_assert_int_eq(fn_reranker_save(cpu, path, &err), FN_OK);
    ck_assert_msg(fn_reranker_load(path, "cuda", 0, &gpu, &err) == FN_OK, "%s", err.msg);
    float *a = malloc(d->n_items * sizeof *a), *b = malloc(d->n_items * sizeof *b);
    ck_assert_int_eq(fn_reranker_predict(cpu, d, a, &err), FN_OK);
    ck_assert_msg(fn_reranker_predict(gpu, d, b, &err) == FN_OK, "%s", err.msg);
    for (size_t i = 0; i < d->n_items; i++) ck_assert_float_eq_tol(a[i], b[i], 1e-3);
    /* training on the device gives a model of the same quality */
    fn_rerank_options o = small_options();
    o.epochs = 3;
    o.positions = 1;
    o.max_items = 16;
    o.device = "cuda";
    ck_assert_msg(fn_reranker_train(&o, d, NULL, &gpu_trained, NULL, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fabs(mean_ndcg(gpu_trained, d, 5) - mean_ndcg(cpu, d, 5)) < 0.05,
                  "CUDA-trained NDCG@5 differs");
    free(a);
    free(b);
    fn_reranker_free(cpu);
    fn_reranker_free(gpu);
    fn_reranker_free(gpu_trained);
    fn_listset_free(d);
    fn_test_rmtree(dir);
    free(dir);
    free(path);
}
END_TEST

Suite *rerank_model_suite(void);
Suite *rerank_model_suite(void)
{
    Suite *s = suite_create("rerank_model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, gradients_match_finite_differences);
    tcase_add_test(tc, attention_ranks_what_a_per_item_model_cannot);
    tcase_add_test(tc, letor_sample_learns);
    tcase_add_test(tc, save_load_scores_the_same);
    tcase_add_test(tc, damaged_files_are_named);
    tcase_add_test(tc, items_past_max_items_keep_their_order_below);
    tcase_add_test(tc, concurrent_scoring_and_determinism);
    tcase_add_test(tc, bad_options_and_data_are_named);
    tcase_add_test(tc, cuda_matches_cpu);
    suite_add_tcase(s, tc);
    return s;
}
