/*
 * check_recall_channels.c - the non-ANN recall channels on small examples
 * computed by hand: popularity (argument errors, the empty table, decay
 * halving at one half-life, weights, top order with ties by id) and item
 * co-occurrence (exact counts and cosine scores, windows, repeated items,
 * top-K cut and ties by id, candidates summed over recent items with those
 * excluded, save/load round trip, truncated, bit-flipped and foreign files
 * refused).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "recall/recall.h"
#include "test_util.h"

static char *tmp;

static void setup(void)
{
    tmp = fn_test_tmpdir();
}

static void teardown(void)
{
    fn_test_rmtree(tmp);
    free(tmp);
}

#define EPS 1e-6

/* ---- popularity ---- */

START_TEST(popularity_bad_arguments)
{
    fn_popularity *p = NULL;
    fn_error err = {0};
    ck_assert_int_eq(fn_popularity_new(0, 100, &p, &err), FN_ERR_INVALID);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(fn_popularity_new(-5, 100, &p, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_popularity_new(NAN, 100, &p, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_popularity_new(INFINITY, 100, &p, &err), FN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "half-life"));
    ck_assert_int_eq(fn_popularity_new(10, 100, &p, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "", 100, 1, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_popularity_add(p, "a", 100, -1, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_popularity_add(p, "a", 100, NAN, &err), FN_ERR_INVALID);
    ck_assert_uint_eq(fn_popularity_count(p), 0);
    fn_recall_item out[4];
    size_t got = 9;
    ck_assert_int_eq(fn_popularity_top(p, 4, out, &got, &err), FN_ERR_INVALID);
    ck_assert_uint_eq(got, 0);
    ck_assert_int_eq(fn_popularity_finalize(p, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_top(p, 4, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 0); /* empty table */
    ck_assert_int_eq(fn_popularity_add(p, "a", 100, 1, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_popularity_finalize(p, &err), FN_OK); /* twice is harmless */
    fn_popularity_free(p);
    fn_popularity_free(NULL);
}
END_TEST

START_TEST(popularity_decay_halves_at_one_half_life)
{
    fn_popularity *p = NULL;
    fn_error err = {0};
    const int64_t now = 1000000, h = 3600;
    ck_assert_int_eq(fn_popularity_new((double)h, now, &p, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "now", now, 1, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "one", now - h, 1, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "two", now - 2 * h, 1, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "half", now - h / 2, 1, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "future", now + 5 * h, 1, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "weighted", now - h, 4, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "zero", now, 0, &err), FN_OK);
    ck_assert_double_eq(fn_popularity_score(p, "now"), 1.0);
    ck_assert_double_eq(fn_popularity_score(p, "one"), 0.5);
    ck_assert_double_eq(fn_popularity_score(p, "two"), 0.25);
    ck_assert_double_eq_tol(fn_popularity_score(p, "half"), 1 / sqrt(2.0), 1e-12);
    ck_assert_double_eq(fn_popularity_score(p, "future"), 1.0); /* counted as at now */
    ck_assert_double_eq(fn_popularity_score(p, "weighted"), 2.0);
    ck_assert_double_eq(fn_popularity_score(p, "zero"), 0.0);
    ck_assert_double_eq(fn_popularity_score(p, "never"), 0.0);
    /* Sums: two more at one half-life add 0.5 each. */
    ck_assert_int_eq(fn_popularity_add(p, "one", now - h, 1, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_add(p, "one", now - h, 1, &err), FN_OK);
    ck_assert_double_eq(fn_popularity_score(p, "one"), 1.5);
    ck_assert_uint_eq(fn_popularity_count(p), 7);
    fn_popularity_free(p);
}
END_TEST

START_TEST(popularity_top_order_and_ties_by_id)
{
    fn_popularity *p = NULL;
    fn_error err = {0};
    ck_assert_int_eq(fn_popularity_new(100, 0, &p, &err), FN_OK);
    /* b, 10 and 9 tie at 2 (ties in byte order: "10" < "9" < "b"); a has 3, c has 1. */
    const char *adds[] = {"b", "9", "a", "c", "10", "b", "a", "9", "a", "10"};
    for (size_t i = 0; i < sizeof adds / sizeof adds[0]; i++)
        ck_assert_int_eq(fn_popularity_add(p, adds[i], 0, 1, &err), FN_OK);
    ck_assert_int_eq(fn_popularity_finalize(p, &err), FN_OK);
    fn_recall_item out[10];
    size_t got = 0;
    ck_assert_int_eq(fn_popularity_top(p, 10, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 5);
    const char *want[] = {"a", "10", "9", "b", "c"};
    const double score[] = {3, 2, 2, 2, 1};
    for (size_t i = 0; i < 5; i++) {
        ck_assert_str_eq(out[i].id, want[i]);
        ck_assert_double_eq(out[i].score, score[i]);
    }
    ck_assert_int_eq(fn_popularity_top(p, 2, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 2);
    ck_assert_str_eq(out[1].id, "10");
    ck_assert_int_eq(fn_popularity_top(p, 0, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 0);
    fn_popularity_free(p);
}
END_TEST

/* ---- co-occurrence ---- */

typedef struct inter {
    const char *user, *item;
    int64_t t;
} inter;

/*
 * u1: A B C, u2: A B, u3: B C D (in time order; added shuffled). Users per
 * item: A 2, B 3, C 2, D 1. With every pair: c(A,B) 2, c(A,C) 1, c(B,C) 2,
 * c(B,D) 1, c(C,D) 1.
 */
static const inter small[] = {
    {"u3", "D", 30}, {"u1", "A", 1},  {"u2", "B", 12}, {"u1", "C", 3},
    {"u3", "B", 10}, {"u2", "A", 11}, {"u1", "B", 2},  {"u3", "C", 20},
};

static fn_cooc *build(const inter *v, size_t n, uint32_t top_k, uint32_t window, uint64_t *pairs)
{
    fn_cooc_builder *b = NULL;
    fn_cooc *c = NULL;
    fn_error err = {0};
    fn_cooc_options o = {.top_k = top_k, .window = window};
    ck_assert_int_eq(fn_cooc_builder_new(&o, &b, &err), FN_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fn_cooc_builder_add(b, v[i].user, v[i].item, v[i].t, &err) == FN_OK, "%s",
                      err.msg);
    ck_assert_uint_eq(fn_cooc_builder_count(b), n);
    ck_assert_msg(fn_cooc_build(b, &c, pairs, &err) == FN_OK, "%s", err.msg);
    fn_cooc_builder_free(b);
    return c;
}

/* Checks the neighbours of item against ids and scores (n of them). */
static void expect_neighbours(const fn_cooc *c, const char *item, size_t k, size_t n,
                              const char *const *ids, const double *scores)
{
    fn_recall_item out[16];
    size_t got = 99;
    fn_error err = {0};
    ck_assert_msg(fn_cooc_neighbours(c, item, k, out, &got, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(got == n, "%s: %zu neighbours, expected %zu", item, got, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(strcmp(out[i].id, ids[i]) == 0, "%s: neighbour %zu is %s, expected %s", item,
                      i, out[i].id, ids[i]);
        ck_assert_double_eq_tol(out[i].score, scores[i], EPS);
    }
}

START_TEST(cooc_bad_arguments_and_empty)
{
    fn_cooc_builder *b = NULL;
    fn_cooc *c = NULL;
    fn_error err = {0};
    fn_cooc_options o = {.top_k = 1000000};
    ck_assert_int_eq(fn_cooc_builder_new(&o, &b, &err), FN_ERR_INVALID);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(fn_cooc_builder_new(NULL, &b, &err), FN_OK);
    ck_assert_int_eq(fn_cooc_builder_add(b, "", "a", 1, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_cooc_builder_add(b, "u", "", 1, &err), FN_ERR_INVALID);
    ck_assert_int_eq(fn_cooc_builder_add(b, NULL, "a", 1, &err), FN_ERR_INVALID);
    uint64_t pairs = 9;
    ck_assert_int_eq(fn_cooc_build(b, &c, &pairs, &err), FN_OK);
    ck_assert_uint_eq(pairs, 0);
    ck_assert_uint_eq(fn_cooc_items(c), 0);
    ck_assert_uint_eq(fn_cooc_users(c), 0);
    ck_assert_uint_eq(fn_cooc_top_k(c), FN_COOC_DEFAULT_TOP_K);
    fn_recall_item out[2];
    size_t got = 9;
    ck_assert_int_eq(fn_cooc_neighbours(c, "a", 2, out, &got, &err), FN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "'a'"));
    ck_assert_uint_eq(got, 0);
    const char *recent[] = {"a"};
    ck_assert_int_eq(fn_cooc_candidates(c, recent, 1, 2, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 0);
    /* The empty table round-trips too. */
    char *path = fn_test_path(tmp, "empty.cooc");
    ck_assert_int_eq(fn_cooc_save(c, path, &err), FN_OK);
    fn_cooc_free(c);
    ck_assert_int_eq(fn_cooc_load(path, &c, &err), FN_OK);
    ck_assert_uint_eq(fn_cooc_items(c), 0);
    fn_cooc_free(c);
    free(path);
    /* One user with one item: an item without neighbours. */
    ck_assert_int_eq(fn_cooc_builder_add(b, "u", "a", 1, &err), FN_OK);
    ck_assert_int_eq(fn_cooc_build(b, &c, &pairs, &err), FN_OK);
    ck_assert_uint_eq(fn_cooc_items(c), 1);
    ck_assert_uint_eq(fn_cooc_users(c), 1);
    ck_assert_uint_eq(fn_cooc_item_users(c, "a"), 1);
    ck_assert_int_eq(fn_cooc_neighbours(c, "a", 2, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 0);
    fn_cooc_free(c);
    fn_cooc_builder_free(b);
    fn_cooc_free(NULL);
    fn_cooc_builder_free(NULL);
}
END_TEST

START_TEST(cooc_counts_and_cosine)
{
    uint64_t pairs = 0;
    fn_cooc *c = build(small, sizeof small / sizeof small[0], 10, 0, &pairs);
    ck_assert_uint_eq(pairs, 5);
    ck_assert_uint_eq(fn_cooc_items(c), 4);
    ck_assert_uint_eq(fn_cooc_users(c), 3);
    ck_assert_uint_eq(fn_cooc_neighbour_count(c), 10); /* both directions of 5 pairs */
    ck_assert_uint_eq(fn_cooc_item_users(c, "A"), 2);
    ck_assert_uint_eq(fn_cooc_item_users(c, "B"), 3);
    ck_assert_uint_eq(fn_cooc_item_users(c, "D"), 1);
    ck_assert_uint_eq(fn_cooc_item_users(c, "E"), 0);
    double ab = 2 / sqrt(6.0), ac = 0.5, bc = 2 / sqrt(6.0), bd = 1 / sqrt(3.0), cd = 1 / sqrt(2.0);
    /* B: A and C tie at 2/sqrt(6): by id, A first. */
    expect_neighbours(c, "A", 10, 2, (const char *[]){"B", "C"}, (double[]){ab, ac});
    expect_neighbours(c, "B", 10, 3, (const char *[]){"A", "C", "D"}, (double[]){ab, bc, bd});
    expect_neighbours(c, "C", 10, 3, (const char *[]){"B", "D", "A"}, (double[]){bc, cd, ac});
    expect_neighbours(c, "D", 10, 2, (const char *[]){"C", "B"}, (double[]){cd, bd});
    /* k below the stored count. */
    expect_neighbours(c, "B", 1, 1, (const char *[]){"A"}, (double[]){ab});
    fn_cooc_free(c);
}
END_TEST

START_TEST(cooc_top_k_cut_keeps_ties_by_id)
{
    fn_cooc *c = build(small, sizeof small / sizeof small[0], 1, 0, NULL);
    ck_assert_uint_eq(fn_cooc_top_k(c), 1);
    ck_assert_uint_eq(fn_cooc_neighbour_count(c), 4);
    expect_neighbours(c, "B", 10, 1, (const char *[]){"A"}, (double[]){2 / sqrt(6.0)});
    expect_neighbours(c, "C", 10, 1, (const char *[]){"B"}, (double[]){2 / sqrt(6.0)});
    fn_cooc_free(c);
    /* Ties in byte order: "10" < "9" < "a". One user with x and three others. */
    const inter v[] = {{"u", "x", 1}, {"u", "9", 2}, {"u", "a", 3}, {"u", "10", 4}};
    c = build(v, 4, 2, 0, NULL);
    expect_neighbours(c, "x", 10, 2, (const char *[]){"10", "9"}, (double[]){1, 1});
    fn_cooc_free(c);
}
END_TEST

START_TEST(cooc_window_and_repeated_items)
{
    uint64_t pairs = 0;
    /* window 1: adjacent items only: u1 A-B, B-C; u2 A-B; u3 B-C, C-D. */
    fn_cooc *c = build(small, sizeof small / sizeof small[0], 10, 1, &pairs);
    ck_assert_uint_eq(pairs, 3);
    ck_assert_uint_eq(fn_cooc_window(c), 1);
    expect_neighbours(c, "A", 10, 1, (const char *[]){"B"}, (double[]){2 / sqrt(6.0)});
    expect_neighbours(c, "B", 10, 2, (const char *[]){"A", "C"},
                      (double[]){2 / sqrt(6.0), 2 / sqrt(6.0)});
    expect_neighbours(c, "D", 10, 1, (const char *[]){"C"}, (double[]){1 / sqrt(2.0)});
    fn_cooc_free(c);
    /*
     * A user who met A twice: A is kept at its latest time, so the sequence is
     * B C A and with window 1 the pairs are B-C and C-A, not A-B; A counts one
     * user. Equal times order by item id.
     */
    const inter v[] = {{"u", "A", 1}, {"u", "B", 2}, {"u", "C", 3}, {"u", "A", 4},
                       {"w", "Z", 5}, {"w", "Y", 5}, {"w", "X", 5}};
    c = build(v, sizeof v / sizeof v[0], 10, 1, &pairs);
    ck_assert_uint_eq(fn_cooc_item_users(c, "A"), 1);
    expect_neighbours(c, "A", 10, 1, (const char *[]){"C"}, (double[]){1});
    expect_neighbours(c, "B", 10, 1, (const char *[]){"C"}, (double[]){1});
    /* w: X Y Z by id at equal times: X-Y, Y-Z. */
    expect_neighbours(c, "X", 10, 1, (const char *[]){"Y"}, (double[]){1});
    expect_neighbours(c, "Y", 10, 2, (const char *[]){"X", "Z"}, (double[]){1, 1});
    ck_assert_uint_eq(pairs, 4);
    fn_cooc_free(c);
    /* window 2 on B C A: every pair. */
    c = build(v, 4, 10, 2, &pairs);
    ck_assert_uint_eq(pairs, 3);
    fn_cooc_free(c);
}
END_TEST

START_TEST(cooc_candidates_sum_and_exclude_recent)
{
    fn_cooc *c = build(small, sizeof small / sizeof small[0], 10, 0, NULL);
    fn_recall_item out[8];
    size_t got = 0;
    fn_error err = {0};
    double ab = 2 / sqrt(6.0), ac = 0.5, bc = 2 / sqrt(6.0), bd = 1 / sqrt(3.0), cd = 1 / sqrt(2.0);
    const char *r1[] = {"A"};
    ck_assert_int_eq(fn_cooc_candidates(c, r1, 1, 8, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 2);
    ck_assert_str_eq(out[0].id, "B");
    ck_assert_double_eq_tol(out[0].score, ab, EPS);
    ck_assert_str_eq(out[1].id, "C");
    ck_assert_double_eq_tol(out[1].score, ac, EPS);
    /* A and B: C = ac + bc, D = bd; A and B themselves excluded; unknown ids add nothing. */
    const char *r2[] = {"A", "nope", "B"};
    ck_assert_int_eq(fn_cooc_candidates(c, r2, 3, 8, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 2);
    ck_assert_str_eq(out[0].id, "C");
    ck_assert_double_eq_tol(out[0].score, ac + bc, EPS);
    ck_assert_str_eq(out[1].id, "D");
    ck_assert_double_eq_tol(out[1].score, bd, EPS);
    /* An id given twice counts twice; k cuts. */
    const char *r3[] = {"D", "D"};
    ck_assert_int_eq(fn_cooc_candidates(c, r3, 2, 1, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 1);
    ck_assert_str_eq(out[0].id, "C");
    ck_assert_double_eq_tol(out[0].score, 2 * cd, EPS);
    /* Everything recent: nothing left. */
    const char *r4[] = {"A", "B", "C", "D"};
    ck_assert_int_eq(fn_cooc_candidates(c, r4, 4, 8, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 0);
    ck_assert_int_eq(fn_cooc_candidates(c, r4, 0, 8, out, &got, &err), FN_OK);
    ck_assert_uint_eq(got, 0);
    fn_cooc_free(c);
}
END_TEST

START_TEST(cooc_save_load_round_trip)
{
    fn_cooc *c = build(small, sizeof small / sizeof small[0], 2, 0, NULL), *d = NULL;
    fn_error err = {0};
    char *path = fn_test_path(tmp, "t.cooc"), *again = fn_test_path(tmp, "again.cooc");
    ck_assert_int_eq(fn_cooc_save(c, path, &err), FN_OK);
    ck_assert_msg(fn_cooc_load(path, &d, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(fn_cooc_items(d), 4);
    ck_assert_uint_eq(fn_cooc_users(d), 3);
    ck_assert_uint_eq(fn_cooc_top_k(d), 2);
    ck_assert_uint_eq(fn_cooc_neighbour_count(d), fn_cooc_neighbour_count(c));
    const char *items[] = {"A", "B", "C", "D"};
    for (size_t i = 0; i < 4; i++) {
        fn_recall_item x[4], y[4];
        size_t nx, ny;
        ck_assert_int_eq(fn_cooc_neighbours(c, items[i], 4, x, &nx, &err), FN_OK);
        ck_assert_int_eq(fn_cooc_neighbours(d, items[i], 4, y, &ny, &err), FN_OK);
        ck_assert_uint_eq(nx, ny);
        for (size_t j = 0; j < nx; j++) {
            ck_assert_str_eq(x[j].id, y[j].id);
            ck_assert_double_eq(x[j].score, y[j].score);
        }
        ck_assert_uint_eq(fn_cooc_item_users(c, items[i]), fn_cooc_item_users(d, items[i]));
    }
    /* Saving what was loaded gives the same bytes. */
    ck_assert_int_eq(fn_cooc_save(d, again, &err), FN_OK);
    fn_buf a = FN_BUF_INIT, b = FN_BUF_INIT;
    fn_test_read_file(path, &a);
    fn_test_read_file(again, &b);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert_int_eq(memcmp(a.data, b.data, a.len), 0);
    fn_buf_free(&a), fn_buf_free(&b);
    fn_cooc_free(c), fn_cooc_free(d);
    free(path), free(again);
}
END_TEST

START_TEST(cooc_damaged_files_are_refused)
{
    fn_cooc *c = build(small, sizeof small / sizeof small[0], 10, 0, NULL), *d = NULL;
    fn_error err = {0};
    char *path = fn_test_path(tmp, "t.cooc"), *bad = fn_test_path(tmp, "bad.cooc");
    ck_assert_int_eq(fn_cooc_save(c, path, &err), FN_OK);
    fn_cooc_free(c);
    fn_buf img = FN_BUF_INIT;
    fn_test_read_file(path, &img);
    ck_assert_uint_gt(img.len, 64);

    char *missing = fn_test_path(tmp, "missing.cooc");
    ck_assert_int_eq(fn_cooc_load(missing, &d, &err), FN_ERR_NOT_FOUND);
    free(missing);

    /* Every truncation, down to the empty file. */
    for (size_t n = 0; n < img.len; n++) {
        fn_test_write_file(bad, img.data, n);
        fn_status st = fn_cooc_load(bad, &d, &err);
        ck_assert_msg(st == FN_ERR_CORRUPT, "truncated to %zu bytes: status %d", n, st);
        ck_assert_ptr_null(d);
        ck_assert_msg(strstr(err.msg, bad) != NULL, "message does not name the file: %s", err.msg);
        if (n >= 64) ck_assert_msg(strstr(err.msg, "truncated") != NULL, "%s", err.msg);
    }
    /* One flipped bit anywhere. */
    fn_buf copy = FN_BUF_INIT;
    fn_buf_append(&copy, img.data, img.len);
    for (size_t i = 0; i < img.len; i++) {
        copy.data[i] ^= (char)(1u << (i % 8));
        fn_test_write_file(bad, copy.data, copy.len);
        fn_status st = fn_cooc_load(bad, &d, &err);
        ck_assert_msg(st == FN_ERR_CORRUPT, "bit flipped in byte %zu: status %d", i, st);
        ck_assert_ptr_nonnull(strstr(err.msg, bad));
        copy.data[i] = img.data[i];
    }
    /* A trailing byte, and a foreign file. */
    fn_buf_putc(&copy, 0);
    fn_test_write_file(bad, copy.data, copy.len);
    ck_assert_int_eq(fn_cooc_load(bad, &d, &err), FN_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "trailing"));
    char foreign[100];
    memset(foreign, 'x', sizeof foreign);
    fn_test_write_file(bad, foreign, sizeof foreign);
    ck_assert_int_eq(fn_cooc_load(bad, &d, &err), FN_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "magic"));
    /* The intact file still loads. */
    ck_assert_int_eq(fn_cooc_load(path, &d, &err), FN_OK);
    fn_cooc_free(d);
    fn_buf_free(&copy), fn_buf_free(&img);
    free(path), free(bad);
}
END_TEST

Suite *recall_channels_suite(void)
{
    Suite *s = suite_create("recall_channels");
    TCase *t = tcase_create("popularity");
    tcase_add_test(t, popularity_bad_arguments);
    tcase_add_test(t, popularity_decay_halves_at_one_half_life);
    tcase_add_test(t, popularity_top_order_and_ties_by_id);
    suite_add_tcase(s, t);
    t = tcase_create("cooc");
    tcase_add_test(t, cooc_counts_and_cosine);
    tcase_add_test(t, cooc_top_k_cut_keeps_ties_by_id);
    tcase_add_test(t, cooc_window_and_repeated_items);
    tcase_add_test(t, cooc_candidates_sum_and_exclude_recent);
    suite_add_tcase(s, t);
    t = tcase_create("files");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, cooc_bad_arguments_and_empty);
    tcase_add_test(t, cooc_save_load_round_trip);
    tcase_add_test(t, cooc_damaged_files_are_refused);
    suite_add_tcase(s, t);
    return s;
}
