/*
 * check_rerank.c - the rerank stage's lists and metrics: reading svmrank text
 * (the LETOR sample with its group files, qid runs, every kind of bad input)
 * and TFRecord lists, and NDCG / average precision on hand-computed lists.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/example.h"
#include "features/tfrecord.h"
#include "rerank/rerank.h"
#include "test_util.h"

static char *tmp;

static void tmp_setup(void)
{
    tmp = fn_test_tmpdir();
}

static void tmp_teardown(void)
{
    fn_test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
}

static char *write_tmp(const char *name, const char *text)
{
    char *p = fn_test_path(tmp, name);
    fn_test_write_file(p, text, strlen(text));
    return p;
}

/* ---- the LETOR sample ---- */

static void check_letor(const char *name, const char *query, size_t rows, size_t lists,
                        const size_t grades[5], float first_label, uint32_t first_col,
                        float first_value)
{
    char *path = fn_test_data(name);
    if (!path) {
        fprintf(stderr, "skipped: public data sets not found\n");
        return;
    }
    char *qpath = NULL;
    if (query) {
        qpath = fn_test_data(query);
        ck_assert_ptr_nonnull(qpath);
    }
    fn_error err = {0};
    fn_listset *d;
    ck_assert_msg(fn_listset_read_svmrank(path, qpath, 0, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n_items, rows);
    ck_assert_uint_eq(d->n_lists, lists);
    ck_assert_uint_eq(d->n_features, 300);
    ck_assert_uint_eq(d->offsets[0], 0);
    ck_assert_uint_eq(d->offsets[lists], rows);
    for (size_t i = 0; i < lists; i++) ck_assert_uint_lt(d->offsets[i], d->offsets[i + 1]);
    size_t count[5] = {0};
    for (size_t i = 0; i < rows; i++) {
        float y = d->labels[i];
        ck_assert(y >= 0 && y <= 4 && y == floorf(y));
        count[(int)y]++;
    }
    for (int g = 0; g < 5; g++) ck_assert_uint_eq(count[g], grades[g]);
    ck_assert(d->labels[0] == first_label);
    ck_assert(d->features[first_col] == first_value);
    ck_assert(d->features[0] == (first_col == 0 ? first_value : 0.0f)); /* absent is 0 */

    /* Scored by their own labels, every list is in its ideal order. */
    fn_rank_metrics m;
    fn_listset_metrics(d, d->labels, &m);
    ck_assert_uint_eq(m.n_lists, lists);
    ck_assert_double_eq_tol(m.ndcg1, 1.0, 1e-12);
    ck_assert_double_eq_tol(m.ndcg10, 1.0, 1e-12);
    ck_assert_double_eq_tol(m.map, 1.0, 1e-12);

    /* A model's width that is larger widens every row with zeros. */
    fn_listset *w;
    ck_assert_msg(fn_listset_read_svmrank(path, qpath, 310, &w, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(w->n_features, 310);
    ck_assert(w->features[310 + 299] == d->features[300 + 299]);
    ck_assert(w->features[300] == 0 && w->features[309] == 0);
    fn_listset_free(w);
    fn_listset_free(d);
    free(qpath);
    free(path);
}

START_TEST(letor_train_with_group_file)
{
    /* As the data set's SOURCE.md counts them; the first line is "0 10:0.89 ...". */
    static const size_t grades[5] = {645, 1211, 858, 222, 69};
    check_letor("letor-lambdarank/rank.train", NULL, 3005, 201, grades, 0.0f, 9, 0.89f);
    char *path = fn_test_data("letor-lambdarank/rank.train");
    if (!path) return;
    fn_error err = {0};
    fn_listset *d;
    ck_assert_int_eq(fn_listset_read_svmrank(path, NULL, 0, &d, &err), FN_OK);
    /* rank.train.query starts 1, 13, 5. */
    ck_assert_uint_eq(d->offsets[1], 1);
    ck_assert_uint_eq(d->offsets[2], 14);
    ck_assert_uint_eq(d->offsets[3], 19);
    fn_listset_free(d);
    free(path);
}
END_TEST

START_TEST(letor_test_with_explicit_query)
{
    static const size_t grades[5] = {206, 256, 252, 44, 10};
    check_letor("letor-lambdarank/rank.test", "letor-lambdarank/rank.test.query", 768, 50, grades,
                2.0f, 0, 0.74f);
}
END_TEST

/* ---- svmrank text ---- */

START_TEST(qid_runs_comments_and_widths)
{
    char *p = write_tmp("q.txt", "# a header comment\n"
                                 "2 qid:10 1:0.5 3:1 # a trailing comment\n"
                                 "\n"
                                 "0\tqid:10 2:0.25\r\n"
                                 "1 qid:7 3:2\n"
                                 "3 qid:8\n");
    fn_error err = {0};
    fn_listset *d;
    ck_assert_msg(fn_listset_read_svmrank(p, NULL, 0, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n_items, 4);
    ck_assert_uint_eq(d->n_lists, 3);
    ck_assert_uint_eq(d->offsets[0], 0);
    ck_assert_uint_eq(d->offsets[1], 2);
    ck_assert_uint_eq(d->offsets[2], 3);
    ck_assert_uint_eq(d->offsets[3], 4);
    ck_assert_uint_eq(d->n_features, 3);
    static const float want[4][3] = {{0.5f, 0, 1}, {0, 0.25f, 0}, {0, 0, 2}, {0, 0, 0}};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) ck_assert(d->features[i * 3 + j] == want[i][j]);
    ck_assert(d->labels[0] == 2 && d->labels[1] == 0 && d->labels[2] == 1 && d->labels[3] == 3);
    fn_listset_free(d);

    /* min_features widens; a smaller one changes nothing. */
    ck_assert_int_eq(fn_listset_read_svmrank(p, NULL, 6, &d, &err), FN_OK);
    ck_assert_uint_eq(d->n_features, 6);
    ck_assert(d->features[6 + 1] == 0.25f && d->features[6 + 5] == 0);
    fn_listset_free(d);
    ck_assert_int_eq(fn_listset_read_svmrank(p, NULL, 2, &d, &err), FN_OK);
    ck_assert_uint_eq(d->n_features, 3);
    fn_listset_free(d);
    /* The widest row a list may have is read. */
    char *wide = write_tmp("wide.txt", "1 qid:1 2:0.5 65536:1\n");
    ck_assert_msg(fn_listset_read_svmrank(wide, NULL, 0, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n_features, FN_LISTSET_MAX_FEATURES);
    ck_assert(d->features[1] == 0.5f && d->features[65535] == 1);
    fn_listset_free(d);
    free(wide);

    /* A group file wins over the qid tokens (here: one list of all four rows). */
    char *q = write_tmp("groups", "4\n");
    ck_assert_msg(fn_listset_read_svmrank(p, q, 0, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n_lists, 1);
    ck_assert_uint_eq(d->offsets[1], 4);
    fn_listset_free(d);
    free(q);
    free(p);
}
END_TEST

START_TEST(group_file_next_to_the_data)
{
    char *p = write_tmp("g.txt", "1 1:1\n0 2:1\n2 1:0.5\n");
    char *q = write_tmp("g.txt.query", "2\n1\n\n");
    fn_error err = {0};
    fn_listset *d;
    ck_assert_msg(fn_listset_read_svmrank(p, NULL, 0, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n_lists, 2);
    ck_assert_uint_eq(d->offsets[1], 2);
    ck_assert_uint_eq(d->offsets[2], 3);
    fn_listset_free(d);
    free(q);
    free(p);
}
END_TEST

/* Reads text (and an optional group file) expecting FN_ERR_INVALID with `want` in the message. */
static void expect_invalid(const char *text, const char *groups, const char *want)
{
    char *p = write_tmp("bad.txt", text);
    char *q = groups ? write_tmp("bad.txt.query", groups) : NULL;
    fn_error err = {0};
    fn_listset *d = (fn_listset *)1;
    fn_status st = fn_listset_read_svmrank(p, NULL, 0, &d, &err);
    ck_assert_msg(st == FN_ERR_INVALID, "status %d for %s", st, text);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(err.msg, want), "'%s' lacks '%s'", err.msg, want);
    if (q) remove(q);
    remove(p);
    free(q);
    free(p);
}

START_TEST(text_errors_name_file_line_and_token)
{
    expect_invalid("1 qid:1 1:1\n0 qid:1 3:abc\n", NULL, "bad.txt:2: token '3:abc'");
    expect_invalid("1 qid:1 1:1 2:\n", NULL, "token '2:': the value is not a number");
    expect_invalid("1 qid:1 7\n", NULL, "token '7': expected idx:value");
    expect_invalid("1 qid:1 x:1\n", NULL, "token 'x:1'");
    expect_invalid("1 qid:1 -2:1\n", NULL, "token '-2:1'");
    expect_invalid("1 qid:1 0:1\n", NULL, "bad.txt:1: token '0:1': indexes start at 1");
    /* the rows are dense: one huge index would size every row */
    expect_invalid("1 qid:1 4294967296:1\n", NULL, "the index is above 65536");
    expect_invalid("2 qid:1 1244444444:0.25\n", NULL,
                   "token '1244444444:0.25': the index is above");
    expect_invalid("1 qid:1 65537:1\n", NULL, "the most columns a list's (dense) rows may have");
    expect_invalid("1 qid:1 3:1 2:1\n", NULL, "token '2:1': indexes must increase");
    expect_invalid("1 qid:1 3:1 3:1\n", NULL, "indexes must increase");
    expect_invalid("1 qid:1 1:1e99\n", NULL, "the value is not finite");
    expect_invalid("1 qid:1 1:nan\n", NULL, "the value is not finite");
    expect_invalid("1 qid:1 1:1\n-1 qid:1 1:1\n", NULL, "bad.txt:2: token '-1': the label must be");
    expect_invalid("nan qid:1 1:1\n", NULL, "the label must be");
    expect_invalid("inf qid:1 1:1\n", NULL, "the label must be");
    expect_invalid("1e39 qid:1 1:1\n", NULL, "the label must be"); /* not finite as a float */
    expect_invalid("good qid:1 1:1\n", NULL, "token 'good': the label is not a number");
    expect_invalid("qid:1 1:1\n", NULL, "the label is not a number");
    expect_invalid("1 qid:x 1:1\n", NULL, "token 'qid:x': the qid is not an integer");
    expect_invalid("1 qid:-1 1:1\n", NULL, "the qid is not an integer");
    expect_invalid("1 1:1 qid:1\n", NULL, "token 'qid:1'"); /* the qid comes first */
    expect_invalid("1 qid:1 1:1\n1 qid:1 1:1 \x01:2\n", NULL, "bad.txt:2: token");
    /* Lists must be runs. */
    expect_invalid("1 qid:1 1:1\n0 qid:2 1:1\n0 qid:3 1:1\n2 qid:1 1:1\n", NULL,
                   "bad.txt:4: qid:1 comes back after other qids (its list started at line 1)");
    /* No groups at all, or qids on some lines only. */
    expect_invalid("1 1:1\n0 2:1\n", NULL, "bad.txt:1: no qid: token and no group file");
    expect_invalid("1 qid:3 1:1\n0 2:1\n", NULL, "bad.txt:2: no qid: token, while the lines");
    /* Group files: the counts must add up, and be positive integers. */
    expect_invalid("1 1:1\n0 2:1\n2 1:1\n", "2\n", "add up to 2 rows, but");
    expect_invalid("1 1:1\n0 2:1\n2 1:1\n", "2\n2\n", "the 2 group counts add up to 4 rows");
    expect_invalid("1 1:1\n0 2:1\n2 1:1\n", "2\n2\n", "has 3 rows");
    expect_invalid("1 1:1\n", "1\n0\n", "bad.txt.query:2: '0' is not a positive row count");
    expect_invalid("1 1:1\n", "one\n", "bad.txt.query:1: 'one' is not a positive row count");
    expect_invalid("1 1:1\n", "-1\n", "is not a positive row count");
    expect_invalid("1 1:1\n", "99999999999999999999\n", "is not a positive row count");
    expect_invalid("1 1:1\n", "18446744073709551615\n1\n", "the counts overflow");
    /* No items: refused rather than an empty set (see rerank.h). */
    expect_invalid("", NULL, "holds no items");
    expect_invalid("# only a comment\n\n", NULL, "holds no items");
    expect_invalid("", "", "holds no items");
    /* A long token is cut in the message. */
    char line[300] = "1 qid:1 1:";
    memset(line + strlen(line), '9', 200);
    line[210] = 'x';
    line[211] = '\n';
    line[212] = '\0';
    char *p = write_tmp("long.txt", line);
    fn_error err = {0};
    fn_listset *d;
    ck_assert_int_eq(fn_listset_read_svmrank(p, NULL, 0, &d, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "...': the value") && strlen(err.msg) < 200, "%s", err.msg);
    free(p);
    /* A NUL byte would hide the rest of its line from the parser. */
    static const char nul[] = "1 qid:1 1:1\n1 qid:1 1:1\0 9:9\n";
    p = fn_test_path(tmp, "nul.txt");
    fn_test_write_file(p, nul, sizeof nul - 1);
    ck_assert_int_eq(fn_listset_read_svmrank(p, NULL, 0, &d, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "nul.txt:2: a NUL byte"), "%s", err.msg);
    free(p);
}
END_TEST

START_TEST(missing_files)
{
    fn_error err = {0};
    fn_listset *d;
    ck_assert_int_eq(fn_listset_read_svmrank("/nonexistent/rank.txt", NULL, 0, &d, &err),
                     FN_ERR_NOT_FOUND);
    ck_assert_msg(strstr(err.msg, "/nonexistent/rank.txt"), "%s", err.msg);
    char *p = write_tmp("ok.txt", "1 qid:1 1:1\n");
    char *q = fn_test_path(tmp, "absent.query");
    ck_assert_int_eq(fn_listset_read_svmrank(p, q, 0, &d, &err), FN_ERR_NOT_FOUND);
    ck_assert_msg(strstr(err.msg, "absent.query"), "%s", err.msg);
    ck_assert_int_eq(fn_listset_read_tfrecord(q, "label", "x", 0, &d, &err), FN_ERR_NOT_FOUND);
    fn_listset_free(NULL);
    free(q);
    free(p);
}
END_TEST

/* ---- TFRecord ---- */

#define NO_QID INT64_MIN

typedef struct tf_item {
    int64_t qid; /* NO_QID: none */
    const char *bqid;
    float label;
    int n; /* features; -1: none */
    float f[4];
} tf_item;

static char *write_tfrecord(const char *name, const tf_item *it, size_t n)
{
    char *path = fn_test_path(tmp, name);
    fn_error err = {0};
    fn_tfrecord_writer *w;
    ck_assert_int_eq(fn_tfrecord_writer_open(path, FN_TFRECORD_PLAIN, &w, &err), FN_OK);
    for (size_t i = 0; i < n; i++) {
        Tensorflow__Example *ex = fn_example_new();
        Tensorflow__Features *fs = fn_example_mutable_features(ex);
        ck_assert_ptr_nonnull(fs);
        if (it[i].bqid)
            ck_assert_int_eq(fn_features_set_string(fs, "qid", it[i].bqid, &err), FN_OK);
        else if (it[i].qid != NO_QID)
            ck_assert_int_eq(fn_features_set_int64s(fs, "qid", &it[i].qid, 1, &err), FN_OK);
        int64_t y = (int64_t)it[i].label; /* labels as int64, as TF pipelines often write them */
        ck_assert_int_eq(fn_features_set_int64s(fs, "rel", &y, 1, &err), FN_OK);
        if (it[i].n >= 0)
            ck_assert_int_eq(fn_features_set_floats(fs, "x", it[i].f, (size_t)it[i].n, &err),
                             FN_OK);
        fn_test_write_example(w, ex);
    }
    ck_assert_msg(fn_tfrecord_writer_close(w, &err) == FN_OK, "%s", err.msg);
    return path;
}

START_TEST(tfrecord_lists)
{
    static const tf_item items[] = {
        {5, NULL, 2, 3, {1, 2, 3}},
        {5, NULL, 0, 3, {4, 5, 6}},
        {3, NULL, 1, 3, {7, 8, 9}},
        {-7, NULL, 4, 3, {0.5f, 0, -1}},
    };
    char *p = write_tfrecord("lists.tfrecord", items, 4);
    fn_error err = {0};
    fn_listset *d;
    ck_assert_msg(fn_listset_read_tfrecord(p, "rel", "x", 0, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n_items, 4);
    ck_assert_uint_eq(d->n_lists, 3);
    ck_assert_uint_eq(d->offsets[1], 2);
    ck_assert_uint_eq(d->offsets[2], 3);
    ck_assert_uint_eq(d->offsets[3], 4);
    ck_assert_uint_eq(d->n_features, 3);
    ck_assert(d->labels[0] == 2 && d->labels[1] == 0 && d->labels[2] == 1 && d->labels[3] == 4);
    ck_assert(d->features[4] == 5 && d->features[9] == 0.5f && d->features[11] == -1);
    fn_listset_free(d);
    /* Widened to a model's width. */
    ck_assert_int_eq(fn_listset_read_tfrecord(p, "rel", "x", 5, &d, &err), FN_OK);
    ck_assert_uint_eq(d->n_features, 5);
    ck_assert(d->features[5 + 1] == 5 && d->features[5 + 3] == 0 && d->features[5 + 4] == 0);
    fn_listset_free(d);
    free(p);

    /* Bytes qids; shorter lists padded up to min_features. */
    static const tf_item padded[] = {
        {0, "q-a", 1, 2, {1, 2}},
        {0, "q-a", 0, 4, {1, 2, 3, 4}},
        {0, "q-b", 3, 0, {0}},
    };
    p = write_tfrecord("padded.tfrecord", padded, 3);
    ck_assert_msg(fn_listset_read_tfrecord(p, "rel", "x", 4, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(d->n_lists, 2);
    ck_assert_uint_eq(d->n_features, 4);
    ck_assert(d->features[1] == 2 && d->features[2] == 0 && d->features[7] == 4);
    fn_listset_free(d);
    /* Without min_features the lengths must agree. */
    ck_assert_int_eq(fn_listset_read_tfrecord(p, "rel", "x", 0, &d, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "record 1 at byte offset") &&
                      strstr(err.msg, "features 'x' hold 4 values; the examples before hold 2"),
                  "%s", err.msg);
    free(p);
}
END_TEST

static void expect_tf_invalid(const tf_item *items, size_t n, const char *want)
{
    char *p = write_tfrecord("bad.tfrecord", items, n);
    fn_error err = {0};
    fn_listset *d = (fn_listset *)1;
    ck_assert_int_eq(fn_listset_read_tfrecord(p, "rel", "x", 0, &d, &err), FN_ERR_INVALID);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(err.msg, want), "'%s' lacks '%s'", err.msg, want);
    ck_assert_msg(strstr(err.msg, "bad.tfrecord"), "%s", err.msg);
    remove(p);
    free(p);
}

START_TEST(tfrecord_errors)
{
    static const tf_item back[] = {
        {1, NULL, 0, 1, {1}}, {2, NULL, 0, 1, {1}}, {1, NULL, 0, 1, {1}}};
    expect_tf_invalid(back, 3, "record 2 at byte offset");
    expect_tf_invalid(back, 3, "qid 1 comes back after other qids (its list started at record 0)");
    static const tf_item bback[] = {{0, "a", 0, 1, {1}}, {0, "b", 0, 1, {1}}, {0, "a", 0, 1, {1}}};
    expect_tf_invalid(bback, 3, "qid 'a' comes back");
    static const tf_item noqid[] = {{1, NULL, 0, 1, {1}}, {NO_QID, NULL, 0, 1, {1}}};
    expect_tf_invalid(noqid, 2, "record 1 at byte offset");
    expect_tf_invalid(noqid, 2, "feature 'qid' is missing");
    static const tf_item mixed[] = {{1, NULL, 0, 1, {1}}, {0, "1", 0, 1, {1}}};
    expect_tf_invalid(mixed, 2, "feature 'qid' holds a bytes_list here and a int64_list");
    static const tf_item nofeat[] = {{1, NULL, 0, -1, {0}}};
    expect_tf_invalid(nofeat, 1, "features 'x' are missing");
    static const tf_item nan_feat[] = {{1, NULL, 0, 2, {1, NAN}}};
    expect_tf_invalid(nan_feat, 1, "features 'x' value 1 is not finite");
    static const tf_item neg[] = {{1, NULL, -2, 1, {1}}};
    expect_tf_invalid(neg, 1, "label 'rel' is -2");
    expect_tf_invalid(back, 0, "holds no examples");

    char *p = write_tfrecord("ok.tfrecord", back, 1);
    fn_error err = {0};
    fn_listset *d;
    ck_assert_int_eq(fn_listset_read_tfrecord(p, "grade", "x", 0, &d, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "record 0 at byte offset 0: label feature 'grade' is missing"),
                  "%s", err.msg);
    ck_assert_int_eq(fn_listset_read_tfrecord(p, "rel", "qid", 0, &d, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "features 'qid' hold a int64_list, not a float_list"), "%s",
                  err.msg);
    free(p);
    /* Damage is the reader's error, named with the file. */
    p = write_tmp("junk.tfrecord", "this is not a tfrecord file at all");
    ck_assert_int_ne(fn_listset_read_tfrecord(p, "rel", "x", 0, &d, &err), FN_OK);
    ck_assert_msg(strstr(err.msg, "junk.tfrecord"), "%s", err.msg);
    free(p);
}
END_TEST

/* ---- metrics ---- */

#define L2(x) log2((double)(x))

START_TEST(ndcg_and_ap_by_hand)
{
    /* Ranked labels 0, 1, 2 against the ideal 2, 1, 0. */
    float s[] = {3, 2, 1}, y[] = {0, 1, 2};
    double dcg3 = 1 / L2(3) + 3 / L2(4), ideal3 = 3 + 1 / L2(3);
    ck_assert_double_eq_tol(fn_metric_ndcg(s, y, 3, 3), dcg3 / ideal3, 1e-15);
    ck_assert_double_eq_tol(fn_metric_ndcg(s, y, 3, 1), 0.0, 1e-15);
    ck_assert_double_eq_tol(fn_metric_ndcg(s, y, 3, 2), (1 / L2(3)) / ideal3, 1e-15);
    ck_assert_double_eq_tol(fn_metric_average_precision(s, y, 3), (1.0 / 2 + 2.0 / 3) / 2, 1e-15);

    /* Graded gains are 2^label - 1: label 3 weighs 7, label 1 weighs 1. */
    float s2[] = {0.9f, 0.1f}, y2[] = {1, 3};
    ck_assert_double_eq_tol(fn_metric_ndcg(s2, y2, 2, 2), (1 + 7 / L2(3)) / (7 + 1 / L2(3)), 1e-15);

    /* k larger than the list, and k <= 0, mean the whole list. */
    float s3[] = {2, 1}, y3[] = {1, 2};
    double whole = (1 + 3 / L2(3)) / (3 + 1 / L2(3));
    ck_assert_double_eq_tol(fn_metric_ndcg(s3, y3, 2, 10), whole, 1e-15);
    ck_assert_double_eq_tol(fn_metric_ndcg(s3, y3, 2, 0), whole, 1e-15);
    ck_assert_double_eq_tol(fn_metric_average_precision(s3, y3, 2), 1.0, 1e-15);
}
END_TEST

START_TEST(ties_keep_input_order)
{
    float s[] = {1, 1, 1}, y[] = {0, 0, 1};
    ck_assert_double_eq_tol(fn_metric_ndcg(s, y, 3, 3), 1 / L2(4), 1e-15);
    ck_assert_double_eq_tol(fn_metric_ndcg(s, y, 3, 2), 0.0, 1e-15);
    ck_assert_double_eq_tol(fn_metric_average_precision(s, y, 3), 1.0 / 3, 1e-15);
    float y_first[] = {1, 0, 0};
    ck_assert_double_eq(fn_metric_ndcg(s, y_first, 3, 1), 1.0);
    /* A tie between a higher and a lower score: only the tied pair keeps order. */
    float s2[] = {0.5f, 0.7f, 0.5f}, y2[] = {0, 1, 2};
    /* Order: item 1 (label 1), item 0 (label 0), item 2 (label 2). */
    double dcg = 1 + 3 / L2(4), ideal = 3 + 1 / L2(3);
    ck_assert_double_eq_tol(fn_metric_ndcg(s2, y2, 3, 3), dcg / ideal, 1e-15);
    ck_assert_double_eq_tol(fn_metric_average_precision(s2, y2, 3), (1 + 2.0 / 3) / 2, 1e-15);
    /* NaN ranks last. */
    float s3[] = {NAN, 1}, y3[] = {1, 0};
    ck_assert_double_eq_tol(fn_metric_ndcg(s3, y3, 2, 2), 1 / L2(3), 1e-15);
}
END_TEST

START_TEST(no_relevant_item_counts_one)
{
    float s[] = {0.3f, 0.9f}, y[] = {0, 0};
    ck_assert_double_eq(fn_metric_ndcg(s, y, 2, 1), 1.0);
    ck_assert_double_eq(fn_metric_ndcg(s, y, 2, 10), 1.0);
    ck_assert_double_eq(fn_metric_average_precision(s, y, 2), 1.0);
    ck_assert_double_eq(fn_metric_ndcg(s, y, 0, 5), 1.0);
    ck_assert_double_eq(fn_metric_average_precision(s, y, 0), 1.0);
    /* One item, relevant: perfect whatever its score. */
    float one = 1;
    ck_assert_double_eq(fn_metric_ndcg(s, &one, 1, 10), 1.0);
}
END_TEST

/* The O(n^2) definition: a stable insertion sort, then the sums. */
static void brute(const float *s, const float *y, size_t n, int k, double *ndcg, double *ap)
{
    size_t *o = malloc(n * sizeof *o);
    float *ideal = malloc(n * sizeof *ideal);
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && s[o[j - 1]] < s[i]) {
            o[j] = o[j - 1];
            j--;
        }
        o[j] = i;
        j = i;
        while (j > 0 && ideal[j - 1] < y[i]) {
            ideal[j] = ideal[j - 1];
            j--;
        }
        ideal[j] = y[i];
    }
    double dcg = 0, idcg = 0, hits = 0, sum = 0;
    for (size_t p = 0; p < n; p++) {
        if ((int)p < k) {
            dcg += (pow(2, y[o[p]]) - 1) / L2(p + 2);
            idcg += (pow(2, ideal[p]) - 1) / L2(p + 2);
        }
        if (y[o[p]] > 0) sum += ++hits / (double)(p + 1);
    }
    *ndcg = idcg > 0 ? dcg / idcg : 1;
    *ap = hits > 0 ? sum / hits : 1;
    free(o);
    free(ideal);
}

START_TEST(long_lists_match_the_definition)
{
    enum { N = 700 };
    float s[N], y[N];
    srand(11);
    for (int i = 0; i < N; i++) {
        s[i] = (float)(rand() % 40); /* many ties */
        y[i] = (float)(rand() % 5 == 0 ? rand() % 5 : 0);
    }
    for (size_t n = 1; n <= N; n = n * 3 + 1) {
        for (int k = 1; k <= 20; k += 9) {
            double nd, ap;
            brute(s, y, n, k, &nd, &ap);
            ck_assert_double_eq_tol(fn_metric_ndcg(s, y, n, k), nd, 1e-12);
            ck_assert_double_eq_tol(fn_metric_average_precision(s, y, n), ap, 1e-12);
        }
    }
}
END_TEST

START_TEST(listset_means)
{
    /* Lists: [3 2 1 | labels 0 1 2], [tied, no relevant item], [one relevant item on top]. */
    uint64_t off[] = {0, 3, 5, 6};
    float y[] = {0, 1, 2, 0, 0, 1}, s[] = {3, 2, 1, 5, 5, 0};
    fn_listset d = {3, 6, off, y, NULL, 0};
    fn_rank_metrics m;
    fn_listset_metrics(&d, s, &m);
    double a3 = (1 / L2(3) + 3 / L2(4)) / (3 + 1 / L2(3));
    double a1 = 0, a5 = a3;
    double ap = (1.0 / 2 + 2.0 / 3) / 2;
    ck_assert_uint_eq(m.n_lists, 3);
    ck_assert_double_eq_tol(m.ndcg1, (a1 + 2) / 3, 1e-15);
    ck_assert_double_eq_tol(m.ndcg3, (a3 + 2) / 3, 1e-15);
    ck_assert_double_eq_tol(m.ndcg5, (a5 + 2) / 3, 1e-15);
    ck_assert_double_eq_tol(m.ndcg10, (a5 + 2) / 3, 1e-15);
    ck_assert_double_eq_tol(m.map, (ap + 2) / 3, 1e-15);
    /* No lists: the means are undefined. */
    uint64_t zero = 0;
    fn_listset empty = {0, 0, &zero, NULL, NULL, 0};
    fn_listset_metrics(&empty, NULL, &m);
    ck_assert_uint_eq(m.n_lists, 0);
    ck_assert(isnan(m.ndcg10) && isnan(m.map));
}
END_TEST

Suite *rerank_suite(void);
Suite *rerank_suite(void)
{
    Suite *s = suite_create("rerank");
    TCase *t = tcase_create("metrics");
    tcase_add_test(t, no_relevant_item_counts_one);
    tcase_add_test(t, ties_keep_input_order);
    tcase_add_test(t, ndcg_and_ap_by_hand);
    tcase_add_test(t, long_lists_match_the_definition);
    tcase_add_test(t, listset_means);
    suite_add_tcase(s, t);
    t = tcase_create("svmrank");
    tcase_add_checked_fixture(t, tmp_setup, tmp_teardown);
    tcase_add_test(t, missing_files);
    tcase_add_test(t, text_errors_name_file_line_and_token);
    tcase_add_test(t, qid_runs_comments_and_widths);
    tcase_add_test(t, group_file_next_to_the_data);
    tcase_add_test(t, letor_train_with_group_file);
    tcase_add_test(t, letor_test_with_explicit_query);
    suite_add_tcase(s, t);
    t = tcase_create("tfrecord");
    tcase_add_checked_fixture(t, tmp_setup, tmp_teardown);
    tcase_add_test(t, tfrecord_errors);
    tcase_add_test(t, tfrecord_lists);
    suite_add_tcase(s, t);
    return s;
}
