/*
 * check_recall_channels.c - the non-ANN recall channels on small examples
 * computed by hand: popularity (argument errors, the empty table, decay
 * halving at one half-life, weights, top order with ties by id) and item
 * co-occurrence (exact counts and cosine scores, windows, repeated items,
 * top-K cut and ties by id, candidates summed over recent items with those
 * excluded, save/load round trip, truncated, bit-flipped and foreign files
 * refused), the merge of channels (round-robin quotas, de-duplication,
 * bitmasks and scores, the cap, empty channels) and the user vector (mean of
 * normalised item vectors, then a search of a small Flat index).
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

/* ---- merge ---- */

#define ITEMS(...) ((const fn_recall_item[]){__VA_ARGS__})

static size_t merge(const fn_recall_channel *ch, size_t nc, size_t cap, fn_recall_candidate *out,
                    double *scores)
{
    fn_error err = {0};
    size_t got = 99;
    ck_assert_msg(fn_recall_merge(ch, nc, cap, out, scores, &got, &err) == FN_OK, "%s", err.msg);
    return got;
}

static void expect_ids(const fn_recall_candidate *out, size_t got, const char *const *want,
                       size_t n)
{
    ck_assert_uint_eq(got, n);
    for (size_t i = 0; i < n; i++) ck_assert_str_eq(out[i].id, want[i]);
}

START_TEST(merge_empty_and_bad_arguments)
{
    fn_recall_candidate out[8];
    double scores[8 * 3];
    fn_error err = {0};
    size_t got = 7;
    /* No channels, empty channels, cap 0: nothing, and no error. */
    ck_assert_uint_eq(merge(NULL, 0, 8, out, scores), 0);
    fn_recall_channel empty[2] = {{NULL, 0, 5}, {NULL, 0, 5}};
    ck_assert_uint_eq(merge(empty, 2, 8, out, scores), 0);
    fn_recall_channel one[1] = {{ITEMS({"a", 1}), 1, 5}};
    ck_assert_uint_eq(merge(one, 1, 0, out, scores), 0);
    /* One empty channel beside a full one. */
    fn_recall_channel mixed[2] = {{NULL, 0, 5}, {ITEMS({"a", 1}, {"b", 0.5}), 2, 5}};
    ck_assert_uint_eq(merge(mixed, 2, 8, out, scores), 2);
    ck_assert_uint_eq(out[0].channels, 2);
    ck_assert_uint_eq(out[0].source, 1);
    ck_assert(isnan(scores[0]));
    ck_assert_double_eq(scores[1], 1);
    /* Errors. */
    fn_recall_channel many[FN_RECALL_MAX_CHANNELS + 1];
    memset(many, 0, sizeof many);
    ck_assert_int_eq(fn_recall_merge(many, FN_RECALL_MAX_CHANNELS + 1, 8, out, NULL, &got, &err),
                     FN_ERR_INVALID);
    ck_assert_uint_eq(got, 0);
    ck_assert_int_eq(fn_recall_merge(many, FN_RECALL_MAX_CHANNELS, 8, out, NULL, &got, &err),
                     FN_OK);
    fn_recall_channel null_list[1] = {{NULL, 3, 5}};
    ck_assert_int_eq(fn_recall_merge(null_list, 1, 8, out, NULL, &got, &err), FN_ERR_INVALID);
    fn_recall_channel empty_id[1] = {{ITEMS({"a", 1}, {"", 2}), 2, 5}};
    ck_assert_int_eq(fn_recall_merge(empty_id, 1, 8, out, NULL, &got, &err), FN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty id"));
    fn_recall_channel null_id[1] = {{ITEMS({NULL, 1}), 1, 5}};
    ck_assert_int_eq(fn_recall_merge(null_id, 1, 8, out, NULL, &got, &err), FN_ERR_INVALID);
}
END_TEST

START_TEST(merge_round_robin_quotas_and_dedup)
{
    /* ann: a b c d e; pop: b x a y; cooc: c z */
    fn_recall_channel ch[3] = {
        {ITEMS({"a", .9}, {"b", .8}, {"c", .7}, {"d", .6}, {"e", .5}), 5, 3},
        {ITEMS({"b", 40}, {"x", 30}, {"a", 20}, {"y", 10}), 4, 2},
        {ITEMS({"c", 2}, {"z", 1}), 2, 5},
    };
    fn_recall_candidate out[16];
    double sc[16 * 3];
    /* Round 1: ann a, pop b, cooc c. Round 2: ann d (b, c taken), pop x, cooc z.
     * Round 3: ann e (quota 3 reached after), pop at quota, cooc exhausted. */
    size_t got = merge(ch, 3, 16, out, sc);
    const char *want[] = {"a", "b", "c", "d", "x", "z", "e"};
    expect_ids(out, got, want, 7);
    const uint32_t src[] = {0, 1, 2, 0, 1, 2, 0};
    /* Bitmasks cover the whole lists: pop's "a" is past its quota but still marks. */
    const uint32_t mask[] = {3, 3, 5, 1, 2, 4, 1};
    for (size_t i = 0; i < got; i++) {
        ck_assert_uint_eq(out[i].source, src[i]);
        ck_assert_uint_eq(out[i].channels, mask[i]);
    }
    /* Per-channel scores, NaN where absent. */
    ck_assert_double_eq(sc[0 * 3 + 0], .9);
    ck_assert_double_eq(sc[0 * 3 + 1], 20);
    ck_assert(isnan(sc[0 * 3 + 2]));
    ck_assert_double_eq(sc[1 * 3 + 0], .8);
    ck_assert_double_eq(sc[1 * 3 + 1], 40);
    ck_assert_double_eq(sc[2 * 3 + 2], 2);
    ck_assert_double_eq(sc[2 * 3 + 0], .7);
    ck_assert(isnan(sc[4 * 3 + 0]));
    ck_assert_double_eq(sc[4 * 3 + 1], 30);
    ck_assert_double_eq(sc[5 * 3 + 2], 1);
    /* "y" is in pop's list past its quota and no other channel has it: not a candidate. */
    for (size_t i = 0; i < got; i++) ck_assert_str_ne(out[i].id, "y");
    /* scores may be NULL. */
    ck_assert_uint_eq(merge(ch, 3, 16, out, NULL), 7);
    /* Deterministic: the same lists give the same result. */
    fn_recall_candidate again[16];
    double sc2[16 * 3];
    ck_assert_uint_eq(merge(ch, 3, 16, again, sc2), 7);
    for (size_t i = 0; i < 7; i++) {
        ck_assert_str_eq(again[i].id, out[i].id);
        ck_assert_uint_eq(again[i].channels, out[i].channels);
    }
}
END_TEST

START_TEST(merge_cap_is_shared_round_robin)
{
    fn_recall_channel ch[2] = {
        {ITEMS({"a1", 1}, {"a2", 1}, {"a3", 1}, {"a4", 1}), 4, 4},
        {ITEMS({"b1", 1}, {"b2", 1}, {"b3", 1}, {"b4", 1}), 4, 4},
    };
    fn_recall_candidate out[8];
    size_t got = merge(ch, 2, 3, out, NULL);
    const char *want[] = {"a1", "b1", "a2"};
    expect_ids(out, got, want, 3);
    got = merge(ch, 2, 1, out, NULL);
    ck_assert_uint_eq(got, 1);
    ck_assert_str_eq(out[0].id, "a1");
    /* A cap above what the quotas allow: the quotas bind. */
    ch[0].quota = 1;
    ch[1].quota = 2;
    got = merge(ch, 2, 8, out, NULL);
    const char *want2[] = {"a1", "b1", "b2"};
    expect_ids(out, got, want2, 3);
    /* A channel whose quota outlasts the others keeps taking alone. */
    ch[0].quota = 4;
    ch[1].quota = 1;
    got = merge(ch, 2, 8, out, NULL);
    const char *want3[] = {"a1", "b1", "a2", "a3", "a4"};
    expect_ids(out, got, want3, 5);
}
END_TEST

START_TEST(merge_quota_zero_and_repeated_ids)
{
    /* Channel 1 has quota 0: it adds nothing but marks and scores what others took.
     * Channel 0 lists "a" twice: the first (best) place and score count. */
    fn_recall_channel ch[2] = {
        {ITEMS({"a", 5}, {"a", 1}, {"b", 4}), 3, 2},
        {ITEMS({"c", 9}, {"b", 8}), 2, 0},
    };
    fn_recall_candidate out[4];
    double sc[4 * 2];
    size_t got = merge(ch, 2, 4, out, sc);
    const char *want[] = {"a", "b"};
    expect_ids(out, got, want, 2);
    ck_assert_double_eq(sc[0], 5);
    ck_assert(isnan(sc[1]));
    ck_assert_uint_eq(out[1].channels, 3);
    ck_assert_double_eq(sc[2], 4);
    ck_assert_double_eq(sc[3], 8);
    /* Identical channels: everything found by both, taken by the first. */
    fn_recall_channel same[2] = {{ch[0].items, 3, 5}, {ch[0].items, 3, 5}};
    got = merge(same, 2, 4, out, sc);
    ck_assert_uint_eq(got, 2);
    ck_assert_uint_eq(out[0].channels, 3);
    ck_assert_uint_eq(out[0].source, 0);
    ck_assert_uint_eq(out[1].source, 1); /* round 1: channel 1's next new item is "b" */
}
END_TEST

/* ---- user vector ---- */

START_TEST(user_vector_mean_of_normalised_items)
{
    fn_error err = {0};
    float out[3];
    /* (2,0,0) and (0,0,5) weigh the same after normalising: mean (1,0,1)/sqrt(2). */
    const float v[] = {2, 0, 0, 0, 0, 5};
    ck_assert_int_eq(fn_recall_user_vector(2, 3, v, out, &err), FN_OK);
    ck_assert_float_eq_tol(out[0], (float)(1 / sqrt(2.0)), 1e-6f);
    ck_assert_float_eq_tol(out[1], 0, 1e-6f);
    ck_assert_float_eq_tol(out[2], (float)(1 / sqrt(2.0)), 1e-6f);
    ck_assert_int_eq(fn_recall_user_vector(1, 3, v, out, &err), FN_OK);
    ck_assert_float_eq(out[0], 1);
    /* No vectors, a zero vector, NaN, vectors that cancel. */
    ck_assert_int_eq(fn_recall_user_vector(0, 3, v, out, &err), FN_ERR_INVALID);
    const float zero[] = {1, 0, 0, 0, 0, 0};
    ck_assert_int_eq(fn_recall_user_vector(2, 3, zero, out, &err), FN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "zero"));
    const float bad[] = {1, NAN, 0};
    ck_assert_int_eq(fn_recall_user_vector(1, 3, bad, out, &err), FN_ERR_INVALID);
    const float cancel[] = {1, 0, 0, -3, 0, 0};
    ck_assert_int_eq(fn_recall_user_vector(2, 3, cancel, out, &err), FN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "cancel"));
}
END_TEST

START_TEST(user_ann_on_a_flat_index)
{
    fn_error err = {0};
    fn_ann *a = NULL;
    ck_assert_int_eq(fn_ann_new("Flat", 4, &a, &err), FN_OK);
    /* Items along the axes and between them. */
    const float items[] = {
        1, 0, 0, 0, /* 10 */
        0, 1, 0, 0, /* 11 */
        0, 0, 1, 0, /* 12 */
        0, 0, 0, 1, /* 13 */
        1, 1, 0, 0, /* 14: between 10 and 11 */
        0, 0, 1, 1, /* 15 */
    };
    const int64_t ids[] = {10, 11, 12, 13, 14, 15};
    ck_assert_int_eq(fn_ann_add(a, 6, items, ids, &err), FN_OK);
    /* The user met 10 and 11 (11 given long): the mean direction is item 14's. */
    const float seen[] = {1, 0, 0, 0, 0, 7, 0, 0};
    int64_t got[3];
    float sc[3];
    ck_assert_msg(fn_recall_user_ann(a, 2, seen, 3, NULL, got, sc, &err) == FN_OK, "%s", err.msg);
    ck_assert_int_eq(got[0], 14);
    ck_assert_float_eq_tol(sc[0], 1, 1e-5f);
    /* Then 10 and 11 tie at cos 1/sqrt(2), in either order. */
    ck_assert(got[1] == 10 || got[1] == 11);
    ck_assert(got[2] == 10 || got[2] == 11);
    ck_assert_float_eq_tol(sc[1], (float)(1 / sqrt(2.0)), 1e-5f);
    /* One seed item: the user vector is that item's. */
    ck_assert_int_eq(fn_recall_user_ann(a, 1, items + 2 * 4, 1, NULL, got, sc, &err), FN_OK);
    ck_assert_int_eq(got[0], 12);
    /* No seed items is an error, not an empty answer. */
    ck_assert_int_eq(fn_recall_user_ann(a, 0, seen, 3, NULL, got, sc, &err), FN_ERR_INVALID);
    fn_ann_free(a);
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
    t = tcase_create("merge");
    tcase_add_test(t, merge_empty_and_bad_arguments);
    tcase_add_test(t, merge_round_robin_quotas_and_dedup);
    tcase_add_test(t, merge_cap_is_shared_round_robin);
    tcase_add_test(t, merge_quota_zero_and_repeated_ids);
    suite_add_tcase(s, t);
    t = tcase_create("user_vector");
    tcase_add_test(t, user_vector_mean_of_normalised_items);
    tcase_add_test(t, user_ann_on_a_flat_index);
    suite_add_tcase(s, t);
    return s;
}
