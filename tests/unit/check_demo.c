/*
 * check_demo.c - tests of `funnel demo` (src/tools/demo_*.c), run through the
 * built funnel binary since the command is not a library: the MovieLens-100k
 * conversion (counts, the per-user time split, the label rule, UTF-8 titles,
 * the committed spec), both input layouts on small hand-made files, the
 * determinism of synthetic data, and errors that name the file and the line.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/buf.h"
#include "features/columns.h"
#include "features/example.h"
#include "features/tfrecord.h"
#include "test_util.h"

/* ---- reading what funnel demo wrote ---- */

typedef void (*example_fn)(const Tensorflow__Example *ex, void *ctx);

/* Calls fn for every Example of dir/name; returns how many there are. */
static size_t for_each_example(const char *dir, const char *name, example_fn fn, void *ctx)
{
    char *path = fn_test_path(dir, name);
    fn_error err = {0};
    fn_tfrecord_reader *r;
    ck_assert_msg(fn_tfrecord_reader_open(path, NULL, &r, &err) == FN_OK, "%s", err.msg);
    fn_arena *arena = fn_arena_new(0);
    ck_assert_ptr_nonnull(arena);
    size_t n = 0;
    for (;;) {
        const uint8_t *data;
        size_t len;
        fn_status st = fn_tfrecord_read(r, &data, &len, &err);
        if (st == FN_END) break;
        ck_assert_msg(st == FN_OK, "%s", err.msg);
        Tensorflow__Example *ex;
        fn_arena_reset(arena);
        ck_assert_msg(fn_example_decode_arena(data, len, arena, &ex, &err) == FN_OK, "%s: %s", path,
                      err.msg);
        if (fn) fn(ex, ctx);
        n++;
    }
    fn_arena_free(arena);
    fn_tfrecord_reader_close(r);
    free(path);
    return n;
}

static const Tensorflow__Feature *feat(const Tensorflow__Example *ex, const char *key)
{
    return fn_features_get(fn_example_features(ex), key);
}

static int64_t get_int(const Tensorflow__Example *ex, const char *key)
{
    const Tensorflow__Feature *f = feat(ex, key);
    ck_assert_msg(f && fn_feature_kind_of(f) == FN_FEATURE_INT64 && f->int64_list->n_value == 1,
                  "'%s' is not one int64", key);
    return f->int64_list->value[0];
}

static float get_float(const Tensorflow__Example *ex, const char *key)
{
    const Tensorflow__Feature *f = feat(ex, key);
    ck_assert_msg(f && fn_feature_kind_of(f) == FN_FEATURE_FLOAT && f->float_list->n_value == 1,
                  "'%s' is not one float", key);
    return f->float_list->value[0];
}

/* The i-th bytes value as a string in out; 0 when the key is absent. */
static int get_str_at(const Tensorflow__Example *ex, const char *key, size_t i, char *out,
                      size_t cap)
{
    const Tensorflow__Feature *f = feat(ex, key);
    if (!f) return 0;
    ck_assert_msg(fn_feature_kind_of(f) == FN_FEATURE_BYTES, "'%s' is not bytes", key);
    ck_assert_uint_lt(i, f->bytes_list->n_value);
    const ProtobufCBinaryData *v = &f->bytes_list->value[i];
    ck_assert_uint_lt(v->len, cap);
    memcpy(out, v->data, v->len);
    out[v->len] = '\0';
    return 1;
}

static int get_str(const Tensorflow__Example *ex, const char *key, char *out, size_t cap)
{
    return get_str_at(ex, key, 0, out, cap);
}

/* Ids are decimal text in bytes features. */
static long get_id(const Tensorflow__Example *ex, const char *key)
{
    char s[32], *end;
    ck_assert_msg(get_str(ex, key, s, sizeof s), "'%s' is missing", key);
    long v = strtol(s, &end, 10);
    ck_assert_msg(*end == '\0' && v > 0, "'%s' is '%s', not an id", key, s);
    return v;
}

/* Runs `funnel demo ARGS`, stdout and stderr together into out (may be NULL). */
static int run_demo(const char *args, fn_buf *out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' demo %s 2>&1", fn_test_funnel_bin(), args);
    return fn_test_run(cmd, out);
}

static int contains(const fn_buf *b, const char *s)
{
    return b->data && strstr(b->data, s) != NULL;
}

/* ---- MovieLens-100k, converted once for the whole TCase ---- */

static char *ml_dir; /* the data, NULL when absent */
static char *ml_tmp, *ml_out;
static int ml_rc = -1;
static fn_buf ml_log = FN_BUF_INIT;

static void movielens_setup(void)
{
    char *inter = fn_test_data("ml-100k/ml-100k.inter");
    if (!inter) return;
    free(inter);
    ml_dir = fn_test_data("ml-100k");
    ml_tmp = fn_test_tmpdir();
    ml_out = fn_test_path(ml_tmp, "out");
    char args[2048];
    snprintf(args, sizeof args, "--data '%s' --out '%s'", ml_dir, ml_out);
    ml_rc = run_demo(args, &ml_log);
}

static void movielens_teardown(void)
{
    fn_test_rmtree(ml_tmp);
    free(ml_tmp), free(ml_out), free(ml_dir);
    fn_buf_free(&ml_log);
    ml_tmp = ml_out = ml_dir = NULL;
}

/* Skips a test (with a note) when the public data sets are absent. */
#define NEED_MOVIELENS()                                                                           \
    do {                                                                                           \
        if (!ml_dir) {                                                                             \
            fprintf(stderr, "skipped: ml-100k not found under the public data sets\n");            \
            return;                                                                                \
        }                                                                                          \
        ck_assert_msg(ml_rc == 0, "funnel demo failed (%d): %s", ml_rc,                            \
                      ml_log.data ? ml_log.data : "");                                             \
    } while (0)

typedef struct id_set {
    unsigned char seen[4096];
    size_t distinct;
} id_set;

static void collect_user(const Tensorflow__Example *ex, void *ctx)
{
    id_set *s = ctx;
    long id = get_id(ex, "user_id");
    ck_assert_int_lt(id, 4096);
    if (!s->seen[id]++) s->distinct++;
    ck_assert_int_gt(get_int(ex, "age"), 0);
    char g[8];
    ck_assert(get_str(ex, "gender", g, sizeof g));
    ck_assert(strcmp(g, "M") == 0 || strcmp(g, "F") == 0);
}

START_TEST(movielens_counts)
{
    NEED_MOVIELENS();
    id_set users = {0};
    ck_assert_uint_eq(for_each_example(ml_out, "users.tfrecord", collect_user, &users), 943);
    ck_assert_uint_eq(users.distinct, 943);
    ck_assert_uint_eq(for_each_example(ml_out, "items.tfrecord", NULL, NULL), 1682);
    ck_assert_uint_eq(for_each_example(ml_out, "interactions.tfrecord", NULL, NULL), 100000);
    size_t train = for_each_example(ml_out, "train.tfrecord", NULL, NULL);
    size_t test = for_each_example(ml_out, "test.tfrecord", NULL, NULL);
    ck_assert_uint_eq(train + test, 100000);
    /* Every user has at least 20 ratings, so about a fifth of them are test. */
    ck_assert_uint_gt(test, 19000);
    ck_assert_uint_lt(test, 21000);
    ck_assert_msg(contains(&ml_log, "100000"), "the summary lacks the counts: %s", ml_log.data);
    ck_assert_msg(!contains(&ml_log, "SYNTHETIC"), "real data reported as synthetic");
    fn_buf src = FN_BUF_INIT;
    char *path = fn_test_path(ml_out, "SOURCE.txt");
    fn_test_read_file(path, &src);
    ck_assert(contains(&src, "MovieLens-100k"));
    ck_assert(!contains(&src, "SYNTHETIC"));
    fn_buf_free(&src);
    free(path);
}
END_TEST

/* The raw ratings, read straight from ml-100k.inter, independently of funnel. */
typedef struct raw_rating {
    long user, item, ts;
    int rating;
} raw_rating;

static raw_rating *read_raw(size_t *n)
{
    char *path = fn_test_path(ml_dir, "ml-100k.inter");
    fn_buf b = FN_BUF_INIT;
    fn_test_read_file(path, &b);
    raw_rating *r = malloc(100001 * sizeof *r);
    ck_assert_ptr_nonnull(r);
    size_t k = 0;
    char *line = strchr(b.data, '\n') + 1; /* past the header */
    while (line && *line) {
        ck_assert_uint_lt(k, 100001);
        ck_assert_int_eq(
            sscanf(line, "%ld\t%ld\t%d\t%ld", &r[k].user, &r[k].item, &r[k].rating, &r[k].ts), 4);
        k++;
        line = strchr(line, '\n');
        if (line) line++;
    }
    fn_buf_free(&b);
    free(path);
    *n = k;
    return r;
}

static int cmp_raw(const void *a, const void *b)
{
    const raw_rating *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

/* Where each (user, item) landed: 1 train, 2 test, indexed user * 2000 + item. */
typedef struct placement {
    unsigned char *where;
    unsigned char mark;
} placement;

static void place(const Tensorflow__Example *ex, void *ctx)
{
    placement *p = ctx;
    long u = get_id(ex, "user_id"), i = get_id(ex, "item_id");
    ck_assert(u < 1000 && i < 2000);
    ck_assert_msg(p->where[u * 2000 + i] == 0, "user %ld item %ld appears twice", u, i);
    p->where[u * 2000 + i] = p->mark;
}

START_TEST(movielens_split_takes_each_users_latest)
{
    NEED_MOVIELENS();
    size_t n;
    raw_rating *raw = read_raw(&n);
    ck_assert_uint_eq(n, 100000);
    placement p = {calloc(1000 * 2000, 1), 1};
    ck_assert_ptr_nonnull(p.where);
    for_each_example(ml_out, "train.tfrecord", place, &p);
    p.mark = 2;
    for_each_example(ml_out, "test.tfrecord", place, &p);
    /* Each user's ratings by (timestamp, item id); the last round(n/5) are test. */
    qsort(raw, n, sizeof *raw, cmp_raw);
    size_t users = 0;
    for (size_t start = 0; start < n;) {
        size_t end = start;
        while (end < n && raw[end].user == raw[start].user) end++;
        size_t count = end - start, n_test = (count + 2) / 5;
        for (size_t k = start; k < end; k++) {
            int want = k >= end - n_test ? 2 : 1;
            ck_assert_msg(p.where[raw[k].user * 2000 + raw[k].item] == want,
                          "user %ld item %ld (rating %zu of %zu, time %ld) is in %s", raw[k].user,
                          raw[k].item, k - start + 1, count, raw[k].ts,
                          want == 2 ? "train, not test" : "test, not train");
        }
        users++;
        start = end;
    }
    ck_assert_uint_eq(users, 943);
    /* Pinned cases. User 1: 272 ratings, 54 test; items 12 and 58 share the timestamp at the
     * boundary, so the item id decides: 12 stays in train, 58 is the first test rating. */
    ck_assert_int_eq(p.where[1 * 2000 + 12], 1);
    ck_assert_int_eq(p.where[1 * 2000 + 58], 2);
    /* User 2: 62 ratings, 12 test; 302 and 311 tie at the boundary. */
    ck_assert_int_eq(p.where[2 * 2000 + 302], 1);
    ck_assert_int_eq(p.where[2 * 2000 + 311], 2);
    free(p.where);
    free(raw);
}
END_TEST

typedef struct label_count {
    size_t positive, total;
} label_count;

static void check_label(const Tensorflow__Example *ex, void *ctx)
{
    label_count *c = ctx;
    float rating = get_float(ex, "rating");
    int64_t label = get_int(ex, "label");
    ck_assert_msg(label == (rating >= 4.0f), "rating %g has label %lld", rating, (long long)label);
    ck_assert_int_gt(get_int(ex, "timestamp"), 800000000);
    c->positive += label == 1;
    c->total++;
}

START_TEST(movielens_label_is_rating_at_least_4)
{
    NEED_MOVIELENS();
    label_count inter = {0}, joined = {0};
    for_each_example(ml_out, "interactions.tfrecord", check_label, &inter);
    for_each_example(ml_out, "train.tfrecord", check_label, &joined);
    for_each_example(ml_out, "test.tfrecord", check_label, &joined);
    /* 34174 fours and 21201 fives (SOURCE.md of the data). */
    ck_assert_uint_eq(inter.positive, 55375);
    ck_assert_uint_eq(joined.positive, 55375);
    ck_assert_uint_eq(joined.total, 100000);
}
END_TEST

typedef struct item_check {
    int seen_543, seen_267, seen_1412, seen_1633;
} item_check;

static void check_item(const Tensorflow__Example *ex, void *ctx)
{
    item_check *c = ctx;
    char title[256], genre[64];
    long id = get_id(ex, "item_id");
    if (id == 543) {
        ck_assert(get_str(ex, "title", title, sizeof title));
        ck_assert_str_eq(title, "Mis\xc3\xa9rables, Les");
        ck_assert_int_eq(get_int(ex, "year"), 1995);
        ck_assert_uint_eq(fn_feature_size(feat(ex, "genres")), 2);
        get_str_at(ex, "genres", 0, genre, sizeof genre);
        ck_assert_str_eq(genre, "Drama");
        get_str_at(ex, "genres", 1, genre, sizeof genre);
        ck_assert_str_eq(genre, "Musical");
        c->seen_543 = 1;
    } else if (id == 1633) {
        ck_assert(get_str(ex, "title", title, sizeof title));
        ck_assert_str_eq(title, "\xc3\x81 k\xc3\xb6ldum klaka (Cold Fever)");
        c->seen_1633 = 1;
    } else if (id == 267) {
        /* The placeholder row: no title, no year, genre "unknown". */
        ck_assert_ptr_null(feat(ex, "title"));
        ck_assert_ptr_null(feat(ex, "year"));
        get_str(ex, "genres", genre, sizeof genre);
        ck_assert_str_eq(genre, "unknown");
        c->seen_267 = 1;
    } else if (id == 1412) {
        /* RecBole's year is "V" here; the title's "(1995)" has the year. */
        ck_assert(get_str(ex, "title", title, sizeof title));
        ck_assert_str_eq(title, "Land Before Time III: The Time of the Great Giving");
        ck_assert_int_eq(get_int(ex, "year"), 1995);
        c->seen_1412 = 1;
    }
}

START_TEST(movielens_items_keep_utf8_titles)
{
    NEED_MOVIELENS();
    item_check c = {0};
    for_each_example(ml_out, "items.tfrecord", check_item, &c);
    ck_assert(c.seen_543 && c.seen_1633 && c.seen_267 && c.seen_1412);
}
END_TEST

static void check_joined(const Tensorflow__Example *ex, void *ctx)
{
    int *found = ctx;
    if (get_id(ex, "user_id") != 196 || get_id(ex, "item_id") != 242) return;
    char s[64];
    ck_assert_int_eq(get_int(ex, "age"), 49);
    ck_assert(get_str(ex, "gender", s, sizeof s));
    ck_assert_str_eq(s, "M");
    ck_assert(get_str(ex, "occupation", s, sizeof s));
    ck_assert_str_eq(s, "writer");
    ck_assert(get_str(ex, "zip_code", s, sizeof s));
    ck_assert_str_eq(s, "55105");
    ck_assert(get_str(ex, "title", s, sizeof s));
    ck_assert_str_eq(s, "Kolya");
    ck_assert_int_eq(get_int(ex, "year"), 1996);
    ck_assert(get_str(ex, "genres", s, sizeof s));
    ck_assert_str_eq(s, "Comedy");
    ck_assert_int_eq(get_int(ex, "timestamp"), 881250949);
    ck_assert(get_float(ex, "rating") == 3.0f);
    ck_assert_int_eq(get_int(ex, "label"), 0);
    (*found)++;
}

START_TEST(movielens_joined_example_has_user_and_item)
{
    NEED_MOVIELENS();
    int found = 0;
    for_each_example(ml_out, "train.tfrecord", check_joined, &found);
    for_each_example(ml_out, "test.tfrecord", check_joined, &found);
    ck_assert_int_eq(found, 1);
}
END_TEST

START_TEST(movielens_spec_matches_committed_config)
{
    NEED_MOVIELENS();
    char *made = fn_test_path(ml_out, "features.json");
    const char *committed = FUNNEL_SOURCE_DIR "/configs/features/movielens.json";
    fn_buf a = FN_BUF_INIT, b = FN_BUF_INIT;
    fn_test_read_file(made, &a);
    fn_test_read_file(committed, &b);
    ck_assert_msg(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
                  "%s differs from configs/features/movielens.json; regenerate it with funnel demo",
                  made);
    fn_columns *c;
    fn_error err = {0};
    ck_assert_msg(fn_columns_load(committed, &c, &err) == FN_OK, "%s", err.msg);
    ck_assert_int_ge(fn_columns_find(c, "occupation_x_genres"), 0);
    ck_assert_int_ge(fn_columns_find(c, "genres"), 0);
    fn_columns_free(c);
    fn_buf_free(&a);
    fn_buf_free(&b);
    free(made);
}
END_TEST

/* ---- small hand-made inputs in both layouts ---- */

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = fn_test_path(dir, name);
    fn_test_write_file(p, text, strlen(text));
    free(p);
}

static const char recbole_user[] = "user_id:token\tage:token\tgender:token\toccupation:token\t"
                                   "zip_code:token\n"
                                   "1\t24\tM\ttechnician\t85711\n"
                                   "2\t53\tF\tother\tT8H1N\n";
/* Columns in another order than RecBole writes them: found by name. */
static const char recbole_item[] = "item_id:token\trelease_year:token\tmovie_title:token_seq\t"
                                   "class:token_seq\n"
                                   "1\t1995\tToy Story\tAnimation Children's Comedy\n"
                                   "2\t1995\tMis\xc3\xa9rables, Les\tDrama Musical\n"
                                   "3\tunkonwn\tunkonwn\tunknown\n";
static const char recbole_inter[] = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                    "1\t1\t5\t100\n"
                                    "1\t2\t3\t200\n"
                                    "2\t1\t4\t150\n";

/* A RecBole folder with the given files (NULL: that file left out). */
static char *recbole_dir(const char *user, const char *item, const char *inter)
{
    char *dir = fn_test_tmpdir();
    if (user) write_text(dir, "ml-100k.user", user);
    if (item) write_text(dir, "ml-100k.item", item);
    if (inter) write_text(dir, "ml-100k.inter", inter);
    return dir;
}

static int demo_in(const char *dir, fn_buf *out)
{
    char args[2048];
    snprintf(args, sizeof args, "--data '%s' --out '%s/out'", dir, dir);
    return run_demo(args, out);
}

START_TEST(recbole_small)
{
    char *dir = recbole_dir(recbole_user, recbole_item, recbole_inter);
    fn_buf log = FN_BUF_INIT;
    ck_assert_msg(demo_in(dir, &log) == 0, "%s", log.data);
    char *out = fn_test_path(dir, "out");
    ck_assert_uint_eq(for_each_example(out, "users.tfrecord", NULL, NULL), 2);
    ck_assert_uint_eq(for_each_example(out, "items.tfrecord", NULL, NULL), 3);
    /* User 1 has 2 ratings (round(0.4) = 0 test), user 2 one: everything is train. */
    ck_assert_uint_eq(for_each_example(out, "train.tfrecord", NULL, NULL), 3);
    ck_assert_uint_eq(for_each_example(out, "test.tfrecord", NULL, NULL), 0);
    fn_test_rmtree(dir);
    free(dir), free(out);
    fn_buf_free(&log);
}
END_TEST

static void check_grouplens_item(const Tensorflow__Example *ex, void *ctx)
{
    int *seen = ctx;
    char s[128];
    if (get_id(ex, "item_id") != 2) return;
    ck_assert(get_str(ex, "title", s, sizeof s));
    ck_assert_str_eq(s, "Mis\xc3\xa9rables, Les");
    ck_assert_int_eq(get_int(ex, "year"), 1995);
    ck_assert_uint_eq(fn_feature_size(feat(ex, "genres")), 2);
    get_str_at(ex, "genres", 0, s, sizeof s);
    ck_assert_str_eq(s, "Drama");
    get_str_at(ex, "genres", 1, s, sizeof s);
    ck_assert_str_eq(s, "Musical");
    *seen = 1;
}

static void collect_test_items(const Tensorflow__Example *ex, void *ctx)
{
    fn_buf *b = ctx;
    fn_buf_printf(b, "%ld,", get_id(ex, "item_id"));
}

START_TEST(grouplens_latin1_and_tie_break)
{
    char *dir = fn_test_tmpdir();
    write_text(dir, "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n");
    /* Latin-1 0xE9 (e acute), as in GroupLens's original u.item. */
    write_text(dir, "u.item",
               "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "2|Mis\xe9rables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|"
               "0|0|0\n"
               "3|Two (1990)|||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "4|Four|01-Jan-1971||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "5|Five (1980)|||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n");
    /* User 1: 8 ratings (items 1-3 twice), round(1.6) = 2 test. Items 5 and 4 tie at time 40 and
     * item 3 at 30 comes before them: test = {4, 5}. Item 5 is listed before item 4 on purpose. */
    write_text(dir, "u.data",
               "1\t1\t5\t10\n1\t2\t3\t20\n1\t3\t4\t30\n1\t5\t2\t40\n1\t4\t1\t40\n"
               "2\t1\t4\t5\n2\t2\t4\t5\n2\t3\t4\t5\n2\t4\t4\t5\n2\t5\t4\t5\n"
               "1\t1\t1\t1\n1\t2\t1\t2\n1\t3\t1\t3\n");
    fn_buf log = FN_BUF_INIT;
    ck_assert_msg(demo_in(dir, &log) == 0, "%s", log.data);
    ck_assert_msg(contains(&log, "GroupLens"), "%s", log.data);
    char *out = fn_test_path(dir, "out");
    int seen = 0;
    for_each_example(out, "items.tfrecord", check_grouplens_item, &seen);
    ck_assert(seen);
    /* User 2: five ratings at the same second; the highest item id is the one test rating. */
    fn_buf items = FN_BUF_INIT;
    for_each_example(out, "test.tfrecord", collect_test_items, &items);
    ck_assert_str_eq(items.data, "5,4,5,");
    fn_test_rmtree(dir);
    free(dir), free(out);
    fn_buf_free(&log);
    fn_buf_free(&items);
}
END_TEST

/* ---- errors name the file and the line ---- */

static void expect_error(char *dir, int want_rc, const char *want)
{
    fn_buf log = FN_BUF_INIT;
    int rc = demo_in(dir, &log);
    ck_assert_msg(rc == want_rc, "exit %d, expected %d: %s", rc, want_rc, log.data);
    ck_assert_msg(contains(&log, want), "output lacks '%s': %s", want, log.data);
    fn_test_rmtree(dir);
    free(dir);
    fn_buf_free(&log);
}

START_TEST(error_malformed_ratings_line)
{
    const char *inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                        "1\t1\t5\t100\n"
                        "1\t2\t3\n";
    expect_error(recbole_dir(recbole_user, recbole_item, inter), 1,
                 "ml-100k.inter: line 3: expected 4 TAB-separated fields, found 3");
}
END_TEST

START_TEST(error_bad_value)
{
    const char *user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                       "1\t24\tM\ttechnician\t85711\n"
                       "2\tfifty\tF\tother\t94043\n";
    expect_error(recbole_dir(user, recbole_item, recbole_inter), 1,
                 "ml-100k.user: line 3: age 'fifty' is not a whole number");
    const char *inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                        "1\t1\t9\t100\n";
    expect_error(recbole_dir(recbole_user, recbole_item, inter), 1,
                 "ml-100k.inter: line 2: rating '9' is not a number from 0 to 5");
}
END_TEST

START_TEST(error_unknown_user_and_duplicate)
{
    const char *inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                        "1\t1\t5\t100\n"
                        "7\t1\t5\t100\n";
    expect_error(recbole_dir(recbole_user, recbole_item, inter), 1,
                 "ml-100k.inter: line 3: user 7 is not in");
    const char *user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                       "1\t24\tM\ttechnician\t85711\n"
                       "1\t25\tM\ttechnician\t85711\n";
    expect_error(recbole_dir(user, recbole_item, recbole_inter), 1,
                 "ml-100k.user: line 3: user 1 already appeared at line 2");
}
END_TEST

START_TEST(error_header_and_missing_file)
{
    const char *item = "item_id:token\tmovie_title:token_seq\tclass:token_seq\n1\tA\tDrama\n";
    expect_error(recbole_dir(recbole_user, item, recbole_inter), 1,
                 "ml-100k.item: line 1: the header has no column 'release_year'");
    expect_error(recbole_dir(recbole_user, NULL, recbole_inter), 1, "ml-100k.item");
    expect_error(recbole_dir(NULL, NULL, NULL), 1, "holds no MovieLens-100k");
    char *dir = fn_test_tmpdir();
    write_text(dir, "u.user", "1|24|M|technician|85711\n");
    write_text(dir, "u.item", "1|Toy Story (1995)|01-Jan-1995\n");
    write_text(dir, "u.data", "1\t1\t5\t10\n");
    expect_error(dir, 1, "u.item: line 1: expected 24 |-separated fields, found 3");
}
END_TEST

START_TEST(error_usage)
{
    fn_buf log = FN_BUF_INIT;
    ck_assert_int_eq(run_demo("--data x --synthetic --out y", &log), 2);
    ck_assert(contains(&log, "exclude each other"));
    fn_buf_reset(&log);
    ck_assert_int_eq(run_demo("--synthetic", &log), 2);
    ck_assert(contains(&log, "--out is required"));
    fn_buf_reset(&log);
    ck_assert_int_eq(run_demo("--help", &log), 0);
    ck_assert(contains(&log, "--synthetic"));
    fn_buf_free(&log);
}
END_TEST

/* ---- synthetic data ---- */

static const char *const outputs[] = {"users.tfrecord", "items.tfrecord", "interactions.tfrecord",
                                      "train.tfrecord", "test.tfrecord",  "features.json",
                                      "SOURCE.txt"};

static int same_file(const char *a_dir, const char *b_dir, const char *name)
{
    char *a = fn_test_path(a_dir, name), *b = fn_test_path(b_dir, name);
    fn_buf x = FN_BUF_INIT, y = FN_BUF_INIT;
    fn_test_read_file(a, &x);
    fn_test_read_file(b, &y);
    int same = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
    fn_buf_free(&x), fn_buf_free(&y);
    free(a), free(b);
    return same;
}

START_TEST(synthetic_is_deterministic_and_labelled)
{
    char *dir = fn_test_tmpdir();
    char args[2048];
    fn_buf log = FN_BUF_INIT;
    snprintf(args, sizeof args, "--synthetic --seed 7 --out '%s/a'", dir);
    ck_assert_msg(run_demo(args, &log) == 0, "%s", log.data);
    ck_assert_msg(contains(&log, "SYNTHETIC DATA"), "no loud warning: %s", log.data);
    /* Without --data it is synthetic too. */
    snprintf(args, sizeof args, "--seed 7 --out '%s/b'", dir);
    ck_assert_msg(run_demo(args, &log) == 0, "%s", log.data);
    snprintf(args, sizeof args, "--synthetic --seed 8 --out '%s/c'", dir);
    ck_assert_msg(run_demo(args, &log) == 0, "%s", log.data);
    char *a = fn_test_path(dir, "a"), *b = fn_test_path(dir, "b"), *c = fn_test_path(dir, "c");
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++)
        ck_assert_msg(same_file(a, b, outputs[i]), "%s differs for the same seed", outputs[i]);
    ck_assert(!same_file(a, c, "train.tfrecord"));
    fn_buf src = FN_BUF_INIT;
    char *path = fn_test_path(a, "SOURCE.txt");
    fn_test_read_file(path, &src);
    ck_assert_msg(strncmp(src.data, "SYNTHETIC DATA", 14) == 0, "%s", src.data);
    ck_assert(contains(&src, "--seed 7"));
    /* Same format: the label rule holds, and the spec it writes loads. */
    label_count lc = {0};
    for_each_example(a, "train.tfrecord", check_label, &lc);
    for_each_example(a, "test.tfrecord", check_label, &lc);
    ck_assert_uint_eq(lc.total, for_each_example(a, "interactions.tfrecord", NULL, NULL));
    ck_assert_uint_gt(lc.positive, lc.total / 5);
    ck_assert_uint_lt(lc.positive, lc.total * 4 / 5);
    ck_assert_uint_eq(for_each_example(a, "users.tfrecord", collect_user, &(id_set){0}), 600);
    char *spec = fn_test_path(a, "features.json");
    fn_columns *cols;
    fn_error err = {0};
    ck_assert_msg(fn_columns_load(spec, &cols, &err) == FN_OK, "%s", err.msg);
    fn_columns_free(cols);
    fn_test_rmtree(dir);
    free(dir), free(a), free(b), free(c), free(path), free(spec);
    fn_buf_free(&src);
    fn_buf_free(&log);
}
END_TEST

Suite *demo_suite(void)
{
    Suite *s = suite_create("demo");
    TCase *tc = tcase_create("movielens");
    tcase_add_unchecked_fixture(tc, movielens_setup, movielens_teardown);
    tcase_add_test(tc, movielens_counts);
    tcase_add_test(tc, movielens_split_takes_each_users_latest);
    tcase_add_test(tc, movielens_label_is_rating_at_least_4);
    tcase_add_test(tc, movielens_items_keep_utf8_titles);
    tcase_add_test(tc, movielens_joined_example_has_user_and_item);
    tcase_add_test(tc, movielens_spec_matches_committed_config);
    suite_add_tcase(s, tc);

    tc = tcase_create("layouts");
    tcase_add_test(tc, recbole_small);
    tcase_add_test(tc, grouplens_latin1_and_tie_break);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, error_malformed_ratings_line);
    tcase_add_test(tc, error_bad_value);
    tcase_add_test(tc, error_unknown_user_and_duplicate);
    tcase_add_test(tc, error_header_and_missing_file);
    tcase_add_test(tc, error_usage);
    suite_add_tcase(s, tc);

    tc = tcase_create("synthetic");
    tcase_add_test(tc, synthetic_is_deterministic_and_labelled);
    suite_add_tcase(s, tc);
    return s;
}
