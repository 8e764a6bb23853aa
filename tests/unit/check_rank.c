/* check_rank.c - what every CTR model shares: metrics, datasets, options. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "features/example.h"
#include "features/tfrecord.h"
#include "rank/rank.h"
#include "test_util.h"

START_TEST(auc_exact_with_ties)
{
    float y[] = {0, 0, 1, 1};
    float perfect[] = {0.1f, 0.2f, 0.8f, 0.9f}, reversed[] = {0.9f, 0.8f, 0.2f, 0.1f};
    float tied[] = {0.5f, 0.5f, 0.5f, 0.5f}, partial[] = {0.1f, 0.4f, 0.4f, 0.9f};
    ck_assert_double_eq(fn_metric_auc(perfect, y, 4), 1.0);
    ck_assert_double_eq(fn_metric_auc(reversed, y, 4), 0.0);
    ck_assert_double_eq(fn_metric_auc(tied, y, 4), 0.5);
    /* Pairs (neg, pos): (0.1,0.4) win, (0.1,0.9) win, (0.4,0.4) tie, (0.4,0.9) win: 3.5/4. */
    ck_assert_double_eq(fn_metric_auc(partial, y, 4), 0.875);
    float one_class[] = {1, 1};
    ck_assert(isnan(fn_metric_auc(perfect, one_class, 2)));
    ck_assert(isnan(fn_metric_auc(perfect, y, 0)));
}
END_TEST

START_TEST(auc_matches_pairwise_count)
{
    /* Against the O(n^2) definition on random scores with many ties. */
    enum { N = 600 };
    float s[N], y[N];
    srand(3);
    for (int i = 0; i < N; i++) {
        s[i] = (float)(rand() % 50) / 50.0f;
        y[i] = (float)(rand() % 3 == 0);
    }
    double wins = 0, pairs = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (y[i] > 0.5f && y[j] < 0.5f) {
                pairs++;
                wins += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
            }
    ck_assert_double_eq_tol(fn_metric_auc(s, y, N), wins / pairs, 1e-12);
}
END_TEST

START_TEST(logloss_and_clipping)
{
    float y[] = {1, 0}, half[] = {0.5f, 0.5f}, sure_wrong[] = {0.0f, 1.0f};
    ck_assert_double_eq_tol(fn_metric_logloss(half, y, 2), log(2.0), 1e-15);
    /* Clipped at DBL_EPSILON, as scikit-learn's log_loss does for float64 input. */
    ck_assert_double_eq_tol(fn_metric_logloss(sure_wrong, y, 2), -log(2.220446049250313e-16), 1e-9);
    ck_assert(isnan(fn_metric_logloss(half, y, 0)));
    /* graded targets: the cross-entropy against the grade, the binary form at 0 and 1 */
    float g[] = {0.25f, 0.75f, 1.0f}, p[] = {0.4f, 0.6f, 0.9f};
    double want = 0;
    for (int i = 0; i < 3; i++) want -= g[i] * log(p[i]) + (1 - g[i]) * log(1 - (double)p[i]);
    ck_assert_double_eq_tol(fn_metric_logloss(p, g, 3), want / 3, 1e-12);
    /* the AUC's positives are the targets above 0.5 */
    ck_assert_double_eq_tol(fn_metric_auc(p, g, 3), 1.0, 1e-15);
}
END_TEST

static char *write_tmp(const char *dir, const char *name, const char *text)
{
    char *p = fn_test_path(dir, name);
    fn_test_write_file(p, text, strlen(text));
    return p;
}

START_TEST(libffm_reading_and_errors)
{
    char *dir = fn_test_tmpdir();
    char *ok = write_tmp(dir, "ok.txt", "1 0:3:1 1:7:0.5\n\n-1 2:1:2\n0\r\n");
    fn_error err = {0};
    fn_dataset *d;
    ck_assert_msg(fn_dataset_read_libffm(ok, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n, 3); /* the blank line holds no example */
    ck_assert(d->labels[0] == 1 && d->labels[1] == 0 && d->labels[2] == 0);
    ck_assert_uint_eq(d->n_fields, 3);
    ck_assert_uint_eq(d->n_features, 8);
    ck_assert_uint_eq(d->offsets[3], 3);
    ck_assert_uint_eq(d->triples[1].index, 7);
    ck_assert(d->triples[1].value == 0.5f);
    fn_dataset_free(d);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"1 0:3:1\nyes 1:2:3\n", "line 2: label 'yes' is not a number"},
        {"1 0:3:1 1:x:3\n", "line 1: token 3 '1:x:3' is not field:index:value"},
        {"1 0:3\n", "token 2 '0:3' is not field:index:value"},
        {"1 0:3:1:2\n", "token 2 '0:3:1:2'"},
        {"1 -1:3:1\n", "token 2"},
        {"nan 0:3:1\n", "line 1: label 'nan' is not a number"},
        {"1 0:3:1 1:4:inf\n", "token 3 '1:4:inf' is not field:index:value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *p = write_tmp(dir, "bad.txt", bad[i].text);
        ck_assert_int_eq(fn_dataset_read_libffm(p, &d, &err), FN_ERR_INVALID);
        ck_assert_msg(strstr(err.msg, bad[i].want) && strstr(err.msg, "bad.txt"), "%s", err.msg);
        free(p);
    }
    ck_assert_int_eq(fn_dataset_read_libffm("/nonexistent.txt", &d, &err), FN_ERR_NOT_FOUND);
    free(ok);
    fn_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(criteo_libffm_sample)
{
    char *path = fn_test_data("criteo-ffm/small_train.txt");
    if (!path) {
        fprintf(stderr, "skipped: public data sets not found\n");
        return;
    }
    fn_error err = {0};
    fn_dataset *d;
    ck_assert_msg(fn_dataset_read_libffm(path, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n, 200);
    ck_assert_uint_eq(d->n_fields, 18); /* as the data set's SOURCE.md says */
    ck_assert_uint_le(d->n_features, 10000);
    size_t pos = 0;
    for (size_t i = 0; i < d->n; i++) pos += d->labels[i] > 0.5f;
    ck_assert(pos > 0 && pos < d->n);
    fn_dataset_free(d);
    free(path);
}
END_TEST

START_TEST(tfrecord_through_a_spec)
{
    char *path = fn_test_data("deepctr-samples/criteo_sample.tr.tfrecords");
    if (!path) {
        fprintf(stderr, "skipped: public data sets not found\n");
        return;
    }
    fn_buf js = FN_BUF_INIT;
    fn_buf_puts(&js, "{\"columns\": [");
    for (int i = 1; i <= 13; i++)
        fn_buf_printf(&js,
                      "{\"name\": \"I%d\", \"type\": \"numeric\", \"source\": \"item\", "
                      "\"key\": \"I%d\"},",
                      i, i);
    for (int i = 1; i <= 26; i++)
        fn_buf_printf(&js,
                      "{\"name\": \"C%d\", \"type\": \"categorical_hash\", \"source\": "
                      "\"item\", \"key\": \"C%d\", \"hash_bucket_size\": 100}%s",
                      i, i, i < 26 ? "," : "]}");
    fn_error err = {0};
    fn_columns *spec;
    ck_assert_int_eq(fn_columns_parse(js.data, js.len, NULL, &spec, &err), FN_OK);
    fn_dataset *d;
    ck_assert_msg(
        fn_dataset_read_tfrecord(path, spec, &(fn_label_rule){.key = "label"}, &d, &err) == FN_OK,
        "%s", err.msg);
    ck_assert_uint_eq(d->n, 160);
    ck_assert_uint_eq(d->n_fields, 39);
    ck_assert_uint_eq(d->n_features, 13 + 26 * 100);
    ck_assert_uint_eq(d->offsets[1], 39); /* one triple per column */
    fn_dataset_free(d);
    ck_assert_int_eq(
        fn_dataset_read_tfrecord(path, spec, &(fn_label_rule){.key = "clicked"}, &d, &err),
        FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "record 0 at byte offset 0: label feature 'clicked' is missing"),
                  "%s", err.msg);
    fn_columns_free(spec);
    fn_buf_free(&js);
    free(path);
}
END_TEST

/* A TFRecord file of examples with a float "rating" and one categorical "item". */
static char *write_ratings(const char *dir, const float *ratings, size_t n)
{
    char *path = fn_test_path(dir, "ratings.tfrecord");
    fn_error err = {0};
    fn_tfrecord_writer *w;
    ck_assert_int_eq(fn_tfrecord_writer_open(path, FN_TFRECORD_PLAIN, &w, &err), FN_OK);
    for (size_t i = 0; i < n; i++) {
        Tensorflow__Example *ex = fn_example_new();
        Tensorflow__Features *f = fn_example_mutable_features(ex);
        ck_assert_int_eq(fn_features_set_floats(f, "rating", &ratings[i], 1, &err), FN_OK);
        ck_assert_int_eq(fn_features_set_string(f, "item", i % 2 ? "a" : "b", &err), FN_OK);
        fn_test_write_example(w, ex);
    }
    ck_assert_int_eq(fn_tfrecord_writer_close(w, &err), FN_OK);
    return path;
}

START_TEST(graded_labels)
{
    static const char spec_json[] = "{\"columns\": [{\"name\": \"item\", \"type\": "
                                    "\"categorical_hash\", \"source\": \"item\", \"key\": "
                                    "\"item\", \"hash_bucket_size\": 10}]}";
    fn_error err = {0};
    fn_columns *spec;
    ck_assert_int_eq(fn_columns_parse(spec_json, strlen(spec_json), NULL, &spec, &err), FN_OK);
    char *dir = fn_test_tmpdir();
    const float ratings[] = {1, 2.5f, 3, 4, 4.5f, 5};
    char *path = write_ratings(dir, ratings, 6);
    fn_dataset *d;
    /* graded: (v - 2.5) / 2 clipped to [0, 1] */
    fn_label_rule graded = {.key = "rating", .graded = 1, .lo = 2.5, .hi = 4.5};
    ck_assert_msg(fn_dataset_read_tfrecord(path, spec, &graded, &d, &err) == FN_OK, "%s", err.msg);
    const float want[] = {0, 0, 0.25f, 0.75f, 1, 1};
    for (size_t i = 0; i < 6; i++) ck_assert_float_eq(d->labels[i], want[i]);
    fn_dataset_free(d);
    /* binary: positive above 0.5 */
    fn_label_rule binary = {.key = "rating"};
    ck_assert_int_eq(fn_dataset_read_tfrecord(path, spec, &binary, &d, &err), FN_OK);
    for (size_t i = 0; i < 6; i++) ck_assert_float_eq(d->labels[i], 1.0f);
    fn_dataset_free(d);
    /* an empty range, a label that is not a number */
    graded.hi = 2.5;
    ck_assert_int_eq(fn_dataset_read_tfrecord(path, spec, &graded, &d, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "range [2.5, 2.5] is empty"), "%s", err.msg);
    free(path);
    const float nan_rating[] = {4, NAN};
    path = write_ratings(dir, nan_rating, 2);
    ck_assert_int_eq(fn_dataset_read_tfrecord(path, spec, &binary, &d, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "record 1") && strstr(err.msg, "label feature 'rating' holds"),
                  "%s", err.msg);
    free(path);
    fn_columns_free(spec);
    fn_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(options_and_kinds)
{
    fn_model_kind k;
    ck_assert_int_eq(fn_model_kind_parse("ffm", &k), FN_OK);
    ck_assert_int_eq(k, FN_MODEL_FFM);
    ck_assert_int_eq(fn_model_kind_parse("lr", &k), FN_ERR_INVALID);
    fn_train_options o = fn_train_options_default(FN_MODEL_FFM);
    ck_assert_int_eq(o.k, 4);
    ck_assert_int_eq(o.normalize, 1);
    o = fn_train_options_default(FN_MODEL_DEEPFM);
    ck_assert_int_gt(o.n_hidden, 0);
    /* Training without data is refused before anything is allocated. */
    fn_dataset empty = {0};
    fn_error err = {0};
    fn_model *m = NULL;
    ck_assert_int_eq(fn_model_train(&o, &empty, NULL, NULL, &m, NULL, &err), FN_ERR_INVALID);
    ck_assert_ptr_null(m);
}
END_TEST

Suite *rank_suite(void)
{
    Suite *s = suite_create("rank");
    TCase *t = tcase_create("metrics");
    tcase_add_test(t, auc_exact_with_ties);
    tcase_add_test(t, auc_matches_pairwise_count);
    tcase_add_test(t, logloss_and_clipping);
    suite_add_tcase(s, t);
    t = tcase_create("datasets");
    tcase_add_test(t, libffm_reading_and_errors);
    tcase_add_test(t, criteo_libffm_sample);
    tcase_add_test(t, tfrecord_through_a_spec);
    tcase_add_test(t, graded_labels);
    suite_add_tcase(s, t);
    t = tcase_create("options");
    tcase_add_test(t, options_and_kinds);
    suite_add_tcase(s, t);
    return s;
}
