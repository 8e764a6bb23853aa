/*
 * check_store.c - the RocksDB feature store: opening and its errors, the
 * version rule, multi-get through the cache and the cache's bounds,
 * invalidation, concurrent writers and readers, counters and metadata,
 * corrupt values, item numbers (arrival order, once per id under racing
 * writers, the upgrade of a format 1 store), and durability when the writer
 * is SIGKILLed mid-stream (records and their numbers).
 *
 * Tests that fork (another process holding the lock, the kill test) never
 * open RocksDB in the forking process before the fork: RocksDB's background
 * threads do not survive fork, so only fresh processes may use it.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/file.h"
#include "features/example.h"
#include "features/store.h"
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

/* ---- helpers (no Check asserts: the forked writers use them too) ---- */

/* Features of test record (a, b): int64 "a", int64 "b", bytes "tag" = "a-b", float "half" = a/2. */
static Tensorflow__Features *build_features(int64_t a, int64_t b)
{
    Tensorflow__Features *f = fn_features_new();
    char tag[64];
    snprintf(tag, sizeof tag, "%lld-%lld", (long long)a, (long long)b);
    float half = (float)a / 2;
    if (!f || fn_features_set_int64s(f, "a", &a, 1, NULL) != FN_OK ||
        fn_features_set_int64s(f, "b", &b, 1, NULL) != FN_OK ||
        fn_features_set_string(f, "tag", tag, NULL) != FN_OK ||
        fn_features_set_floats(f, "half", &half, 1, NULL) != FN_OK) {
        fn_features_free(f);
        return NULL;
    }
    return f;
}

static int features_match(const Tensorflow__Features *f, int64_t a, int64_t b)
{
    const Tensorflow__Feature *fa = fn_features_get(f, "a"), *fb = fn_features_get(f, "b");
    const Tensorflow__Feature *ft = fn_features_get(f, "tag"), *fh = fn_features_get(f, "half");
    char tag[64];
    snprintf(tag, sizeof tag, "%lld-%lld", (long long)a, (long long)b);
    return f && f->n_feature == 4 && fa && fn_feature_kind_of(fa) == FN_FEATURE_INT64 &&
           fa->int64_list->n_value == 1 && fa->int64_list->value[0] == a && fb &&
           fn_feature_kind_of(fb) == FN_FEATURE_INT64 && fb->int64_list->n_value == 1 &&
           fb->int64_list->value[0] == b && ft && fn_feature_kind_of(ft) == FN_FEATURE_BYTES &&
           ft->bytes_list->n_value == 1 && ft->bytes_list->value[0].len == strlen(tag) &&
           memcmp(ft->bytes_list->value[0].data, tag, strlen(tag)) == 0 && fh &&
           fn_feature_kind_of(fh) == FN_FEATURE_FLOAT && fh->float_list->n_value == 1 &&
           fh->float_list->value[0] == (float)a / 2;
}

/* The vector of test record (a, b): [a, b, 0.25]. */
static int vector_matches(const fn_store_record *r, int64_t a, int64_t b)
{
    size_t n;
    const float *v = fn_store_record_vector(r, &n);
    return n == 3 && v[0] == (float)a && v[1] == (float)b && v[2] == 0.25f;
}

static fn_status put_test(fn_store *s, fn_store_family fam, const char *id, uint64_t version,
                          int64_t a, int64_t b, int *applied, fn_error *err)
{
    Tensorflow__Features *f = build_features(a, b);
    if (!f) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    float v[3] = {(float)a, (float)b, 0.25f};
    fn_status st = fn_store_put(s, fam, id, strlen(id), version, f, v, 3, applied, err);
    fn_features_free(f);
    return st;
}

static fn_store *open_ok(const char *dir, const fn_store_options *o)
{
    fn_error err = {0};
    fn_store *s = NULL;
    ck_assert_msg(fn_store_open(dir, o, &s, &err) == FN_OK, "%s", err.msg);
    return s;
}

static fn_store *create_ok(const char *dir)
{
    fn_store_options o = {.create_if_missing = 1};
    return open_ok(dir, &o);
}

static void put_ok(fn_store *s, fn_store_family fam, const char *id, uint64_t version, int64_t a,
                   int64_t b, int want_applied)
{
    fn_error err = {0};
    int applied = -1;
    ck_assert_msg(put_test(s, fam, id, version, a, b, &applied, &err) == FN_OK, "%s", err.msg);
    ck_assert_int_eq(applied, want_applied);
}

/* Gets id and checks it is test record (a, b) at version. */
static void get_matches(fn_store *s, fn_store_family fam, const char *id, uint64_t version,
                        int64_t a, int64_t b)
{
    fn_error err = {0};
    fn_store_record *r = NULL;
    ck_assert_msg(fn_store_get(s, fam, id, strlen(id), &r, &err) == FN_OK, "%s: %s", id, err.msg);
    ck_assert_uint_eq(fn_store_record_version(r), version);
    ck_assert_msg(features_match(fn_store_record_features(r), a, b), "%s: features differ", id);
    ck_assert_msg(vector_matches(r, a, b), "%s: vector differs", id);
    fn_store_record_release(r);
}

static void expect_error(fn_status got, fn_status want, const fn_error *err, const char *fragment)
{
    ck_assert_msg(got == want, "status %d (%s), expected %d", (int)got, err->msg, (int)want);
    ck_assert_msg(strstr(err->msg, fragment), "message '%s' lacks '%s'", err->msg, fragment);
}

/* RocksDB opened behind the store's back with all its families, as damage (or an older funnel)
 * would. */
typedef struct raw_db {
    rocksdb_options_t *o;
    rocksdb_t *db;
    char **names;
    size_t ncf;
    rocksdb_column_family_handle_t **h;
} raw_db;

static void raw_open(const char *dir, raw_db *r)
{
    char *e = NULL;
    r->o = rocksdb_options_create();
    r->names = rocksdb_list_column_families(r->o, dir, &r->ncf, &e);
    ck_assert_msg(!e, "%s", e);
    r->h = calloc(r->ncf, sizeof *r->h);
    const rocksdb_options_t **co = calloc(r->ncf, sizeof *co);
    for (size_t i = 0; i < r->ncf; i++) co[i] = r->o;
    r->db = rocksdb_open_column_families(r->o, dir, (int)r->ncf, (const char *const *)r->names, co,
                                         r->h, &e);
    ck_assert_msg(!e, "%s", e);
    free(co);
}

static rocksdb_column_family_handle_t *raw_family(const raw_db *r, const char *family)
{
    for (size_t i = 0; i < r->ncf; i++)
        if (strcmp(r->names[i], family) == 0) return r->h[i];
    ck_abort_msg("no family %s", family);
    return NULL;
}

static void raw_close(raw_db *r)
{
    for (size_t i = 0; i < r->ncf; i++) rocksdb_column_family_handle_destroy(r->h[i]);
    rocksdb_close(r->db);
    rocksdb_list_column_families_destroy(r->names, r->ncf);
    free(r->h);
    rocksdb_options_destroy(r->o);
}

/* Writes a value into a column family behind the store's back, as damage would. */
static void raw_put(const char *dir, const char *family, const char *key, const void *val, size_t n)
{
    raw_db r;
    raw_open(dir, &r);
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    char *e = NULL;
    rocksdb_put_cf(r.db, w, raw_family(&r, family), key, strlen(key), val, n, &e);
    ck_assert_msg(!e, "%s", e);
    rocksdb_writeoptions_destroy(w);
    raw_close(&r);
}

/* Forking tests need Check's fork mode: without it, this process may hold RocksDB threads. */
static int fork_mode(void)
{
    const char *f = getenv("CK_FORK");
    if (f && strcmp(f, "no") == 0) {
        fprintf(stderr, "skipped: needs CK_FORK=yes\n");
        return 0;
    }
    return 1;
}

/* ---- open ---- */

START_TEST(open_close_reopen)
{
    char *dir = fn_test_path(tmp, "s");
    fn_store *s = create_ok(dir);
    ck_assert_str_eq(fn_store_path(s), dir);
    put_ok(s, FN_STORE_USERS, "u1", 3, 1, 2, 1);
    put_ok(s, FN_STORE_ITEMS, "u1", 4, 5, 6, 1); /* same id, other family */
    fn_store_close(s);
    s = open_ok(dir, NULL);
    get_matches(s, FN_STORE_USERS, "u1", 3, 1, 2);
    get_matches(s, FN_STORE_ITEMS, "u1", 4, 5, 6);
    fn_store_close(s);
    fn_store_options ro = {.read_only = 1};
    s = open_ok(dir, &ro);
    get_matches(s, FN_STORE_ITEMS, "u1", 4, 5, 6);
    fn_error err = {0};
    int applied = -1;
    expect_error(put_test(s, FN_STORE_ITEMS, "u2", 1, 1, 1, &applied, &err), FN_ERR_UNSUPPORTED,
                 &err, "read-only");
    ck_assert_int_eq(applied, 0);
    uint64_t c;
    expect_error(fn_store_counter_add(s, "c", 1, 1, &c, &err), FN_ERR_UNSUPPORTED, &err,
                 "read-only");
    fn_store_close(s);
    fn_store_close(NULL);
    free(dir);
}
END_TEST

START_TEST(open_errors_name_the_folder)
{
    fn_error err = {0};
    fn_store *s = (fn_store *)1;
    char *missing = fn_test_path(tmp, "missing");
    expect_error(fn_store_open(missing, NULL, &s, &err), FN_ERR_NOT_FOUND, &err, "no store there");
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.msg, missing), "%s", err.msg);
    fn_store_options ro = {.read_only = 1};
    expect_error(fn_store_open(missing, &ro, &s, &err), FN_ERR_NOT_FOUND, &err, "no store there");
    /* An existing folder that is not a store: read-only says so, read-write will not adopt it. */
    char *other = fn_test_path(tmp, "other");
    char *file = fn_test_path(other, "notes.txt");
    ck_assert_int_eq(fn_mkdir_p(other, &err), FN_OK);
    fn_test_write_file(file, "hello", 5);
    expect_error(fn_store_open(other, &ro, &s, &err), FN_ERR_NOT_FOUND, &err, "not a store");
    fn_store_options create = {.create_if_missing = 1};
    expect_error(fn_store_open(other, &create, &s, &err), FN_ERR_INVALID, &err, "not a store");
    expect_error(fn_store_open(file, &ro, &s, &err), FN_ERR_INVALID, &err, "not a folder");
    expect_error(fn_store_open("", NULL, &s, &err), FN_ERR_INVALID, &err, "empty path");

    /* Open twice for writing in one process: RocksDB's lock refuses the second. */
    char *dir = fn_test_path(tmp, "s");
    fn_store *a = create_ok(dir);
    expect_error(fn_store_open(dir, NULL, &s, &err), FN_ERR_IO, &err, "locked");
    ck_assert_msg(strstr(err.msg, dir), "%s", err.msg);
    /* Readers take no lock. */
    fn_store *r = open_ok(dir, &ro);
    fn_store_close(r);
    fn_store_close(a);

    /* A store written by a newer funnel is refused, not misread. */
    a = open_ok(dir, NULL);
    ck_assert_int_eq(fn_store_meta_put(a, "funnel.store.format", "99", 2, &err), FN_OK);
    fn_store_close(a);
    expect_error(fn_store_open(dir, NULL, &s, &err), FN_ERR_UNSUPPORTED, &err, "format '99'");
    free(dir);
    free(file);
    free(other);
    free(missing);
}
END_TEST

START_TEST(locked_by_another_process)
{
    if (!fork_mode()) return;
    char *dir = fn_test_path(tmp, "s");
    int ready[2], release[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(release), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        close(release[1]);
        fn_store_options o = {.create_if_missing = 1};
        fn_store *s;
        fn_error err = {0};
        if (fn_store_open(dir, &o, &s, &err) != FN_OK) {
            fprintf(stderr, "child: %s\n", err.msg);
            _exit(2);
        }
        if (put_test(s, FN_STORE_USERS, "held", 7, 1, 2, NULL, &err) != FN_OK) _exit(3);
        char c = 1;
        if (write(ready[1], &c, 1) != 1) _exit(4);
        while (read(release[0], &c, 1) > 0) {
        }
        fn_store_close(s);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    char c;
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    fn_error err = {0};
    fn_store *s = NULL;
    expect_error(fn_store_open(dir, NULL, &s, &err), FN_ERR_IO, &err, "locked");
    ck_assert_msg(strstr(err.msg, "another process"), "%s", err.msg);
    /* A reader still gets in, and sees what the writer synced. */
    fn_store_options ro = {.read_only = 1};
    s = open_ok(dir, &ro);
    get_matches(s, FN_STORE_USERS, "held", 7, 1, 2);
    fn_store_close(s);
    close(release[1]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    free(dir);
}
END_TEST

/* ---- records ---- */

START_TEST(round_trip_features_and_vector)
{
    fn_store *s = create_ok(tmp);
    put_ok(s, FN_STORE_ITEMS, "i1", 10, 42, -7, 1);
    get_matches(s, FN_STORE_ITEMS, "i1", 10, 42, -7);

    /* No features, no vector; and an id with a NUL byte and non-ASCII bytes. */
    fn_error err = {0};
    const char bin[] = {'x', '\0', (char)0xff, 'y'};
    int applied = 0;
    ck_assert_int_eq(
        fn_store_put(s, FN_STORE_USERS, bin, sizeof bin, 1, NULL, NULL, 0, &applied, &err), FN_OK);
    ck_assert_int_eq(applied, 1);
    fn_store_record *r;
    ck_assert_int_eq(fn_store_get(s, FN_STORE_USERS, bin, sizeof bin, &r, &err), FN_OK);
    ck_assert_uint_eq(fn_store_record_version(r), 1);
    ck_assert_ptr_null(fn_store_record_features(r));
    size_t n = 99;
    ck_assert_ptr_null(fn_store_record_vector(r, &n));
    ck_assert_uint_eq(n, 0);
    fn_store_record_release(r);
    ck_assert_int_eq(fn_store_get(s, FN_STORE_USERS, bin, 1, &r, &err), FN_ERR_NOT_FOUND);

    /* Special floats survive in the vector. */
    float v[4] = {NAN, INFINITY, -0.0f, 1e-40f};
    ck_assert_int_eq(fn_store_put(s, FN_STORE_ITEMS, "f", 1, 5, NULL, v, 4, NULL, &err), FN_OK);
    ck_assert_int_eq(fn_store_get(s, FN_STORE_ITEMS, "f", 1, &r, &err), FN_OK);
    const float *got = fn_store_record_vector(r, &n);
    ck_assert_uint_eq(n, 4);
    ck_assert(isnan(got[0]) && isinf(got[1]) && got[2] == 0 && signbit(got[2]) && got[3] == 1e-40f);
    fn_store_record_release(r);

    /* Bad arguments name the problem. */
    expect_error(fn_store_put(s, FN_STORE_ITEMS, "", 0, 1, NULL, NULL, 0, NULL, &err),
                 FN_ERR_INVALID, &err, "empty id");
    char *long_id = malloc(FN_STORE_ID_MAX + 2);
    memset(long_id, 'k', FN_STORE_ID_MAX + 1);
    long_id[FN_STORE_ID_MAX + 1] = '\0';
    expect_error(
        fn_store_put(s, FN_STORE_ITEMS, long_id, FN_STORE_ID_MAX + 1, 1, NULL, NULL, 0, NULL, &err),
        FN_ERR_INVALID, &err, "longer than");
    expect_error(fn_store_get(s, (fn_store_family)7, "a", 1, &r, &err), FN_ERR_INVALID, &err,
                 "family 7");
    free(long_id);
    fn_store_close(s);
}
END_TEST

START_TEST(version_rule_last_writer_wins)
{
    fn_store *s = create_ok(tmp);
    put_ok(s, FN_STORE_ITEMS, "k", 100, 1, 1, 1);
    put_ok(s, FN_STORE_ITEMS, "k", 99, 2, 2, 0); /* older: ignored */
    get_matches(s, FN_STORE_ITEMS, "k", 100, 1, 1);
    put_ok(s, FN_STORE_ITEMS, "k", 100, 3, 3, 1); /* equal: overwrites */
    get_matches(s, FN_STORE_ITEMS, "k", 100, 3, 3);
    put_ok(s, FN_STORE_ITEMS, "k", 101, 4, 4, 1); /* newer: applied */
    get_matches(s, FN_STORE_ITEMS, "k", 101, 4, 4);
    put_ok(s, FN_STORE_ITEMS, "k", 0, 5, 5, 0);
    /* Versions are per family and id. */
    put_ok(s, FN_STORE_USERS, "k", 1, 6, 6, 1);
    fn_store_close(s);
    s = open_ok(tmp, NULL);
    get_matches(s, FN_STORE_ITEMS, "k", 101, 4, 4);
    get_matches(s, FN_STORE_USERS, "k", 1, 6, 6);
    fn_store_close(s);
}
END_TEST

START_TEST(missing_id_is_not_found)
{
    fn_store *s = create_ok(tmp);
    fn_error err = {0};
    fn_store_record *r = (fn_store_record *)1;
    expect_error(fn_store_get(s, FN_STORE_USERS, "nobody", 6, &r, &err), FN_ERR_NOT_FOUND, &err,
                 "id \"nobody\"");
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err.msg, "family users") && strstr(err.msg, tmp), "%s", err.msg);
    /* Deleting makes a record missing again; deleting a missing one is fine. */
    put_ok(s, FN_STORE_USERS, "gone", 1, 1, 1, 1);
    get_matches(s, FN_STORE_USERS, "gone", 1, 1, 1);
    ck_assert_int_eq(fn_store_delete(s, FN_STORE_USERS, "gone", 4, &err), FN_OK);
    ck_assert_int_eq(fn_store_get(s, FN_STORE_USERS, "gone", 4, &r, &err), FN_ERR_NOT_FOUND);
    ck_assert_int_eq(fn_store_delete(s, FN_STORE_USERS, "gone", 4, &err), FN_OK);
    fn_store_close(s);
}
END_TEST

START_TEST(batch_applies_version_rule)
{
    fn_store *s = create_ok(tmp);
    put_ok(s, FN_STORE_ITEMS, "old", 50, 1, 1, 1);
    fn_error err = {0};
    fn_store_batch *b;
    ck_assert_int_eq(fn_store_batch_new(s, &b, &err), FN_OK);
    Tensorflow__Features *f = build_features(9, 9);
    float v[3] = {9, 9, 0.25f};
    /* Against the store: older ignored, newer applied; within the batch: compared in order. */
    ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_ITEMS, "old", 3, 49, f, v, 3, &err), FN_OK);
    ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_ITEMS, "new", 3, 5, f, v, 3, &err), FN_OK);
    Tensorflow__Features *g = build_features(8, 8);
    float w[3] = {8, 8, 0.25f};
    ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_ITEMS, "new", 3, 4, g, w, 3, &err), FN_OK);
    ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_ITEMS, "dup", 3, 1, f, v, 3, &err), FN_OK);
    ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_ITEMS, "dup", 3, 2, g, w, 3, &err), FN_OK);
    ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_USERS, "dup", 3, 1, f, v, 3, &err), FN_OK);
    ck_assert_uint_eq(fn_store_batch_count(b), 6);
    size_t applied = 99, ignored = 99;
    ck_assert_msg(fn_store_batch_commit(b, &applied, &ignored, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(applied, 4);
    ck_assert_uint_eq(ignored, 2);
    ck_assert_uint_eq(fn_store_batch_count(b), 0);
    get_matches(s, FN_STORE_ITEMS, "old", 50, 1, 1);
    get_matches(s, FN_STORE_ITEMS, "new", 5, 9, 9);
    get_matches(s, FN_STORE_ITEMS, "dup", 2, 8, 8);
    get_matches(s, FN_STORE_USERS, "dup", 1, 9, 9);
    ck_assert_int_eq(fn_store_batch_commit(b, &applied, &ignored, &err), FN_OK);
    ck_assert_uint_eq(applied, 0);
    fn_store_batch_free(b);
    fn_features_free(f);
    fn_features_free(g);
    fn_store_close(s);
    fn_store_batch_free(NULL);
}
END_TEST

/* ---- multi-get and the cache ---- */

#define MANY 600

static char **many_ids(size_t n)
{
    char **ids = calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        ids[i] = malloc(32);
        snprintf(ids[i], 32, "item-%zu", i);
    }
    return ids;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

/* Every third id of many_ids has no record; the others are (i, 2i) at version i+1. */
static void load_many(fn_store *s, char **ids, size_t n)
{
    fn_error err = {0};
    fn_store_batch *b;
    ck_assert_int_eq(fn_store_batch_new(s, &b, &err), FN_OK);
    for (size_t i = 0; i < n; i++) {
        if (i % 3 == 2) continue;
        Tensorflow__Features *f = build_features((int64_t)i, 2 * (int64_t)i);
        float v[3] = {(float)i, (float)(2 * i), 0.25f};
        ck_assert_int_eq(
            fn_store_batch_put(b, FN_STORE_ITEMS, ids[i], strlen(ids[i]), i + 1, f, v, 3, &err),
            FN_OK);
        fn_features_free(f);
    }
    ck_assert_msg(fn_store_batch_commit(b, NULL, NULL, &err) == FN_OK, "%s", err.msg);
    fn_store_batch_free(b);
}

/* Multi-gets ids[first] .. ids[first + n - 1] and checks each against load_many. */
static void multi_get_checks(fn_store *s, char **ids, size_t first, size_t n)
{
    fn_error err = {0};
    fn_store_record **all = calloc(first + n, sizeof *all), **out = all + first;
    ck_assert_msg(fn_store_multi_get(s, FN_STORE_ITEMS, n, (const char *const *)ids + first, NULL,
                                     out, &err) == FN_OK,
                  "%s", err.msg);
    for (size_t i = first; i < first + n; i++) {
        if (i % 3 == 2) {
            ck_assert_msg(all[i] == NULL, "%s should be missing", ids[i]);
            continue;
        }
        ck_assert_msg(all[i] != NULL, "%s missing", ids[i]);
        ck_assert_uint_eq(fn_store_record_version(all[i]), i + 1);
        ck_assert(features_match(fn_store_record_features(all[i]), (int64_t)i, 2 * (int64_t)i));
        ck_assert(vector_matches(all[i], (int64_t)i, 2 * (int64_t)i));
    }
    fn_store_records_release(out, n);
    for (size_t i = 0; i < n; i++) ck_assert_ptr_null(out[i]);
    free(all);
}

START_TEST(multi_get_hundreds_hits_and_misses)
{
    fn_store *s = create_ok(tmp);
    char **ids = many_ids(MANY);
    load_many(s, ids, MANY);
    size_t present = MANY - MANY / 3;
    fn_store_stats st;
    multi_get_checks(s, ids, 0, MANY);
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_hits, 0);
    ck_assert_uint_eq(st.cache_misses, MANY);
    ck_assert_uint_eq(st.cache_entries, present);
    ck_assert_uint_gt(st.cache_bytes, 0);
    multi_get_checks(s, ids, 0, MANY);
    fn_store_get_stats(s, &st);
    /* Found records come from the cache now; missing ids are asked again (not cached). */
    ck_assert_uint_eq(st.cache_hits, present);
    ck_assert_uint_eq(st.cache_misses, MANY + MANY / 3);
    ck_assert_uint_eq(st.cache_evictions, 0);

    /* Explicit lengths, duplicates, and an empty call. */
    const char *some[3] = {"item-0xyz", "item-0", "item-0"};
    size_t lens[3] = {6, 6, 6};
    fn_store_record *out[3];
    fn_error err = {0};
    ck_assert_int_eq(fn_store_multi_get(s, FN_STORE_ITEMS, 3, some, lens, out, &err), FN_OK);
    ck_assert(out[0] && out[1] && out[2] && out[0] == out[1]); /* one shared cached handle */
    fn_store_records_release(out, 3);
    ck_assert_int_eq(fn_store_multi_get(s, FN_STORE_ITEMS, 0, some, lens, out, &err), FN_OK);
    const char *bad[2] = {"item-0", ""};
    expect_error(fn_store_multi_get(s, FN_STORE_ITEMS, 2, bad, NULL, out, &err), FN_ERR_INVALID,
                 &err, "empty id");
    ck_assert(out[0] == NULL && out[1] == NULL);
    fn_store_close(s);

    /* Without a cache every lookup is a miss and the answers are the same. */
    fn_store_options nc = {.cache_disabled = 1};
    s = open_ok(tmp, &nc);
    multi_get_checks(s, ids, 0, MANY);
    multi_get_checks(s, ids, 0, MANY);
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_hits, 0);
    ck_assert_uint_eq(st.cache_entries, 0);
    ck_assert_uint_eq(st.cache_max_entries, 0);
    fn_store_close(s);
    free_ids(ids, MANY);
}
END_TEST

START_TEST(cache_bounds_are_respected)
{
    char **ids = many_ids(MANY);
    fn_store *s = create_ok(tmp);
    load_many(s, ids, MANY);
    fn_store_close(s);

    fn_store_options by_count = {.cache_max_entries = 50};
    s = open_ok(tmp, &by_count);
    fn_store_stats st;
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_max_entries, 50);
    /* Least recently used goes first: A (20 records), B (30) fill the cache; touching A again
     * makes B the oldest, so C (30 more) pushes out B and keeps A. */
    multi_get_checks(s, ids, 0, 30);  /* A: ids 0..29 */
    multi_get_checks(s, ids, 30, 45); /* B: ids 30..74 */
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_entries, 50);
    ck_assert_uint_eq(st.cache_evictions, 0);
    multi_get_checks(s, ids, 0, 30);
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_hits, 20);
    multi_get_checks(s, ids, 75, 45); /* C: ids 75..119 */
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_evictions, 30);
    multi_get_checks(s, ids, 0, 30);
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_hits, 40);
    multi_get_checks(s, ids, 30, 45);
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_hits, 40);
    /* Hundreds at once through a cache of 50: the answers are right and the bound holds. */
    multi_get_checks(s, ids, 0, MANY);
    multi_get_checks(s, ids, 0, MANY);
    fn_store_get_stats(s, &st);
    ck_assert_uint_le(st.cache_entries, 50);
    fn_store_close(s);

    size_t max_bytes = 64 << 10;
    fn_store_options by_bytes = {.cache_max_bytes = max_bytes};
    s = open_ok(tmp, &by_bytes);
    multi_get_checks(s, ids, 0, MANY);
    fn_store_get_stats(s, &st);
    ck_assert_uint_le(st.cache_bytes, max_bytes);
    ck_assert_uint_gt(st.cache_entries, 0);
    ck_assert_uint_lt(st.cache_entries, MANY - MANY / 3);
    ck_assert_uint_gt(st.cache_evictions, 0);
    fn_store_close(s);
    free_ids(ids, MANY);
}
END_TEST

START_TEST(puts_invalidate_cached_records)
{
    fn_store *s = create_ok(tmp);
    put_ok(s, FN_STORE_ITEMS, "x", 1, 1, 1, 1);
    fn_error err = {0};
    fn_store_record *old;
    ck_assert_int_eq(fn_store_get(s, FN_STORE_ITEMS, "x", 1, &old, &err), FN_OK); /* cached */
    put_ok(s, FN_STORE_ITEMS, "x", 2, 2, 2, 1);
    get_matches(s, FN_STORE_ITEMS, "x", 2, 2, 2);
    /* A handle taken before the put still reads the record it was given. */
    ck_assert_uint_eq(fn_store_record_version(old), 1);
    ck_assert(features_match(fn_store_record_features(old), 1, 1));
    fn_store_record_release(old);
    /* An ignored put leaves the cached record alone. */
    put_ok(s, FN_STORE_ITEMS, "x", 1, 3, 3, 0);
    get_matches(s, FN_STORE_ITEMS, "x", 2, 2, 2);
    /* Batches and deletes invalidate too. */
    fn_store_batch *b;
    ck_assert_int_eq(fn_store_batch_new(s, &b, &err), FN_OK);
    Tensorflow__Features *f = build_features(4, 4);
    float v[3] = {4, 4, 0.25f};
    ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_ITEMS, "x", 1, 3, f, v, 3, &err), FN_OK);
    ck_assert_int_eq(fn_store_batch_commit(b, NULL, NULL, &err), FN_OK);
    fn_store_batch_free(b);
    fn_features_free(f);
    get_matches(s, FN_STORE_ITEMS, "x", 3, 4, 4);
    ck_assert_int_eq(fn_store_delete(s, FN_STORE_ITEMS, "x", 1, &err), FN_OK);
    fn_store_record *r;
    ck_assert_int_eq(fn_store_get(s, FN_STORE_ITEMS, "x", 1, &r, &err), FN_ERR_NOT_FOUND);
    fn_store_stats st;
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_entries, 0);
    fn_store_close(s);
}
END_TEST

/* ---- concurrency: single puts, batches and multi-gets on shared keys at once ---- */

#define N_KEYS    40
#define N_WRITERS 6
#define N_READERS 3
#define PUTS_EACH 150

typedef struct writer_arg {
    fn_store *s;
    unsigned seed;
    int batched;                  /* puts go through a batch committed every ten */
    uint64_t max_version[N_KEYS]; /* highest version this writer tried per key */
    char failure[FN_ERROR_MSG_MAX];
} writer_arg;

typedef struct reader_arg {
    fn_store *s;
    atomic_int *stop;
    uint64_t reads;
    char failure[FN_ERROR_MSG_MAX];
} reader_arg;

static void key_name(char *buf, size_t n, int k)
{
    snprintf(buf, n, "key-%d", k);
}

/* Record data is a function of the version, so a reader can tell a torn or mixed record. */
static void *writer_main(void *p)
{
    writer_arg *w = p;
    fn_error err = {0};
    fn_store_batch *b = NULL;
    if (w->batched && fn_store_batch_new(w->s, &b, &err) != FN_OK) {
        snprintf(w->failure, sizeof w->failure, "%s", err.msg);
        return NULL;
    }
    for (int i = 0; i < PUTS_EACH; i++) {
        int k = rand_r(&w->seed) % N_KEYS;
        uint64_t version = 1 + (uint64_t)(rand_r(&w->seed) % 100000);
        char id[32];
        key_name(id, sizeof id, k);
        fn_status st;
        if (b) {
            Tensorflow__Features *f = build_features((int64_t)version, k);
            float v[3] = {(float)version, (float)k, 0.25f};
            st = fn_store_batch_put(b, FN_STORE_ITEMS, id, strlen(id), version, f, v, 3, &err);
            fn_features_free(f);
            if (st == FN_OK && fn_store_batch_count(b) == 10)
                st = fn_store_batch_commit(b, NULL, NULL, &err);
        } else {
            st = put_test(w->s, FN_STORE_ITEMS, id, version, (int64_t)version, k, NULL, &err);
        }
        if (st != FN_OK) {
            snprintf(w->failure, sizeof w->failure, "%s", err.msg);
            break;
        }
        if (version > w->max_version[k]) w->max_version[k] = version;
        uint64_t c;
        if (fn_store_counter_add(w->s, "puts", 4, 1, &c, &err) != FN_OK) {
            snprintf(w->failure, sizeof w->failure, "%s", err.msg);
            break;
        }
    }
    if (b && !w->failure[0] && fn_store_batch_commit(b, NULL, NULL, &err) != FN_OK)
        snprintf(w->failure, sizeof w->failure, "%s", err.msg);
    fn_store_batch_free(b);
    return NULL;
}

static void *reader_main(void *p)
{
    reader_arg *r = p;
    char names[N_KEYS][32];
    const char *ids[N_KEYS];
    uint64_t seen[N_KEYS] = {0};
    for (int k = 0; k < N_KEYS; k++) {
        key_name(names[k], sizeof names[k], k);
        ids[k] = names[k];
    }
    fn_error err = {0};
    while (!atomic_load(r->stop) && !r->failure[0]) {
        fn_store_record *out[N_KEYS];
        if (fn_store_multi_get(r->s, FN_STORE_ITEMS, N_KEYS, ids, NULL, out, &err) != FN_OK) {
            snprintf(r->failure, sizeof r->failure, "%s", err.msg);
            break;
        }
        for (int k = 0; k < N_KEYS && !r->failure[0]; k++) {
            if (!out[k]) {
                if (seen[k])
                    snprintf(r->failure, sizeof r->failure, "%s vanished after version %llu",
                             ids[k], (unsigned long long)seen[k]);
                continue;
            }
            uint64_t v = fn_store_record_version(out[k]);
            if (v < seen[k])
                snprintf(r->failure, sizeof r->failure, "%s went back from version %llu to %llu",
                         ids[k], (unsigned long long)seen[k], (unsigned long long)v);
            else if (!features_match(fn_store_record_features(out[k]), (int64_t)v, k) ||
                     !vector_matches(out[k], (int64_t)v, k))
                snprintf(r->failure, sizeof r->failure, "%s version %llu holds other data", ids[k],
                         (unsigned long long)v);
            seen[k] = v;
        }
        fn_store_records_release(out, N_KEYS);
        r->reads++;
    }
    return NULL;
}

START_TEST(concurrent_putters_and_readers)
{
    /* A cache smaller than the key set, so eviction races with invalidation too. */
    fn_store_options o = {.create_if_missing = 1, .cache_max_entries = N_KEYS / 2};
    fn_store *s = open_ok(tmp, &o);
    atomic_int stop = 0;
    writer_arg w[N_WRITERS];
    reader_arg r[N_READERS];
    pthread_t wt[N_WRITERS], rt[N_READERS];
    memset(w, 0, sizeof w);
    memset(r, 0, sizeof r);
    for (int i = 0; i < N_READERS; i++) {
        r[i].s = s;
        r[i].stop = &stop;
        ck_assert_int_eq(pthread_create(&rt[i], NULL, reader_main, &r[i]), 0);
    }
    for (int i = 0; i < N_WRITERS; i++) {
        w[i].s = s;
        w[i].seed = 1234u + (unsigned)i;
        w[i].batched = i < 2;
        ck_assert_int_eq(pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < N_WRITERS; i++) pthread_join(wt[i], NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < N_READERS; i++) pthread_join(rt[i], NULL);
    for (int i = 0; i < N_WRITERS; i++) ck_assert_msg(!w[i].failure[0], "%s", w[i].failure);
    for (int i = 0; i < N_READERS; i++) {
        ck_assert_msg(!r[i].failure[0], "%s", r[i].failure);
        ck_assert_uint_gt(r[i].reads, 0);
    }
    /* Every key holds the highest version any writer tried, with that version's data. */
    for (int k = 0; k < N_KEYS; k++) {
        uint64_t want = 0;
        for (int i = 0; i < N_WRITERS; i++)
            if (w[i].max_version[k] > want) want = w[i].max_version[k];
        if (!want) continue;
        char id[32];
        key_name(id, sizeof id, k);
        get_matches(s, FN_STORE_ITEMS, id, want, (int64_t)want, k);
    }
    uint64_t puts = 0;
    fn_error err = {0};
    ck_assert_int_eq(fn_store_counter_get(s, "puts", 4, &puts, &err), FN_OK);
    ck_assert_uint_eq(puts, N_WRITERS * PUTS_EACH);
    fn_store_close(s);
}
END_TEST

/* ---- counters and metadata ---- */

START_TEST(counters_and_meta)
{
    fn_store *s = create_ok(tmp);
    fn_error err = {0};
    uint64_t v = 99;
    ck_assert_int_eq(fn_store_counter_get(s, "clicks:42", 9, &v, &err), FN_OK);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(fn_store_counter_add(s, "clicks:42", 9, 5, &v, &err), FN_OK);
    ck_assert_uint_eq(v, 5);
    ck_assert_int_eq(fn_store_counter_add(s, "clicks:42", 9, 7, NULL, &err), FN_OK);
    ck_assert_int_eq(fn_store_counter_add(s, "max", 3, UINT64_MAX, &v, &err), FN_OK);
    ck_assert_int_eq(fn_store_counter_add(s, "max", 3, 2, &v, &err), FN_OK);
    ck_assert_uint_eq(v, 1); /* wraps */
    expect_error(fn_store_counter_add(s, "", 0, 1, &v, &err), FN_ERR_INVALID, &err, "empty");

    fn_buf b = FN_BUF_INIT;
    expect_error(fn_store_meta_get(s, "model", &b, &err), FN_ERR_NOT_FOUND, &err, "\"model\"");
    ck_assert_int_eq(fn_store_meta_put(s, "model", "fm-v3\0x", 7, &err), FN_OK);
    ck_assert_int_eq(fn_store_meta_put(s, "empty", "", 0, &err), FN_OK);
    fn_store_close(s);

    s = open_ok(tmp, NULL);
    ck_assert_int_eq(fn_store_counter_get(s, "clicks:42", 9, &v, &err), FN_OK);
    ck_assert_uint_eq(v, 12);
    ck_assert_int_eq(fn_store_meta_get(s, "model", &b, &err), FN_OK);
    ck_assert_uint_eq(b.len, 7);
    ck_assert(memcmp(b.data, "fm-v3\0x", 7) == 0);
    fn_buf_reset(&b);
    ck_assert_int_eq(fn_store_meta_get(s, "empty", &b, &err), FN_OK);
    ck_assert_uint_eq(b.len, 0);
    /* The format marker is kept in meta. */
    ck_assert_int_eq(fn_store_meta_get(s, "funnel.store.format", &b, &err), FN_OK);
    fn_store_close(s);

    /* A counter value of the wrong size is corrupt, named. */
    raw_put(tmp, "counters", "bad", "abc", 3);
    s = open_ok(tmp, NULL);
    expect_error(fn_store_counter_get(s, "bad", 3, &v, &err), FN_ERR_CORRUPT, &err, "\"bad\"");
    expect_error(fn_store_counter_add(s, "bad", 3, 1, &v, &err), FN_ERR_CORRUPT, &err, "3 bytes");
    fn_store_close(s);
    fn_buf_free(&b);
}
END_TEST

/* ---- corrupt values ---- */

START_TEST(corrupt_value_names_the_id)
{
    fn_store *s = create_ok(tmp);
    put_ok(s, FN_STORE_ITEMS, "a-good", 1, 1, 1, 1);
    put_ok(s, FN_STORE_ITEMS, "c-good", 1, 3, 3, 1);
    fn_store_close(s);
    /* 0xff... is a varint that never ends: no protobuf parser can accept it. */
    raw_put(tmp, "items", "b-bad", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);

    s = open_ok(tmp, NULL);
    fn_error err = {0};
    fn_store_record *r;
    expect_error(fn_store_get(s, FN_STORE_ITEMS, "b-bad", 5, &r, &err), FN_ERR_CORRUPT, &err,
                 "id \"b-bad\"");
    ck_assert_msg(strstr(err.msg, "family items") && strstr(err.msg, "StoredRecord"), "%s",
                  err.msg);
    const char *ids[3] = {"a-good", "b-bad", "c-good"};
    fn_store_record *out[3];
    expect_error(fn_store_multi_get(s, FN_STORE_ITEMS, 3, ids, NULL, out, &err), FN_ERR_CORRUPT,
                 &err, "\"b-bad\"");
    ck_assert(!out[0] && !out[1] && !out[2]);
    get_matches(s, FN_STORE_ITEMS, "a-good", 1, 1, 1);
    /* A put cannot know the damaged record's version, so it refuses. */
    int applied = -1;
    expect_error(put_test(s, FN_STORE_ITEMS, "b-bad", 9, 2, 2, &applied, &err), FN_ERR_CORRUPT,
                 &err, "\"b-bad\"");
    ck_assert_int_eq(applied, 0);
    /* A dump stops at it, naming it, after the records before it. */
    fn_store_iter *it;
    ck_assert_int_eq(fn_store_iter_open(s, FN_STORE_ITEMS, &it, &err), FN_OK);
    const char *id;
    size_t id_len;
    ck_assert_int_eq(fn_store_iter_next(it, &id, &id_len, &r, &err), FN_OK);
    ck_assert(id_len == 6 && memcmp(id, "a-good", 6) == 0);
    fn_store_record_release(r);
    expect_error(fn_store_iter_next(it, &id, &id_len, &r, &err), FN_ERR_CORRUPT, &err, "\"b-bad\"");
    fn_store_iter_close(it);
    /* Deleting clears the damage. */
    ck_assert_int_eq(fn_store_delete(s, FN_STORE_ITEMS, "b-bad", 5, &err), FN_OK);
    put_ok(s, FN_STORE_ITEMS, "b-bad", 9, 2, 2, 1);
    get_matches(s, FN_STORE_ITEMS, "b-bad", 9, 2, 2);
    fn_store_close(s);
}
END_TEST

START_TEST(dump_iterates_in_id_order)
{
    fn_store *s = create_ok(tmp);
    fn_error err = {0};
    fn_store_iter *it;
    const char *id;
    size_t id_len;
    fn_store_record *r;
    ck_assert_int_eq(fn_store_iter_open(s, FN_STORE_USERS, &it, &err), FN_OK);
    ck_assert_int_eq(fn_store_iter_next(it, &id, &id_len, &r, &err), FN_END);
    fn_store_iter_close(it);
    const char *order[] = {"1", "10", "2", "b", "a"};
    for (int i = 0; i < 5; i++) put_ok(s, FN_STORE_USERS, order[i], 1, i, i, 1);
    put_ok(s, FN_STORE_ITEMS, "other", 1, 0, 0, 1);
    const char *want[] = {"1", "10", "2", "a", "b"};
    const int64_t want_a[] = {0, 1, 2, 4, 3};
    ck_assert_int_eq(fn_store_iter_open(s, FN_STORE_USERS, &it, &err), FN_OK);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(fn_store_iter_next(it, &id, &id_len, &r, &err), FN_OK);
        ck_assert(id_len == strlen(want[i]) && memcmp(id, want[i], id_len) == 0);
        ck_assert(features_match(fn_store_record_features(r), want_a[i], want_a[i]));
        fn_store_record_release(r);
    }
    ck_assert_int_eq(fn_store_iter_next(it, &id, &id_len, &r, &err), FN_END);
    fn_store_iter_close(it);
    fn_store_close(s);
}
END_TEST

/* ---- item numbers ---- */

static int64_t number_of(fn_store *s, const char *id)
{
    fn_error err = {0};
    int64_t n = -2;
    ck_assert_msg(fn_store_item_number(s, id, strlen(id), &n, &err) == FN_OK, "%s: %s", id,
                  err.msg);
    return n;
}

static void by_number_is(fn_store *s, int64_t number, const char *id)
{
    fn_error err = {0};
    fn_buf b = FN_BUF_INIT;
    ck_assert_msg(fn_store_item_by_number(s, number, &b, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(b.len == strlen(id) && memcmp(b.data, id, b.len) == 0,
                  "number %lld: '%.*s', expected '%s'", (long long)number, (int)b.len, b.data, id);
    fn_buf_free(&b);
}

typedef struct scanned {
    int64_t numbers[16];
    char ids[16][16];
    size_t n;
} scanned;

static fn_status take_scanned(void *ctx, int64_t number, const char *id, size_t id_len,
                              fn_error *err)
{
    (void)err;
    scanned *sc = ctx;
    if (sc->n == 16 || id_len >= 16) return FN_ERR_INVALID;
    sc->numbers[sc->n] = number;
    memcpy(sc->ids[sc->n], id, id_len);
    sc->ids[sc->n][id_len] = '\0';
    sc->n++;
    return FN_OK;
}

START_TEST(items_are_numbered_once_in_arrival_order)
{
    fn_store *s = create_ok(tmp);
    fn_error err = {0};
    int64_t n;
    ck_assert_int_eq(fn_store_item_numbers_end(s), 0);
    put_ok(s, FN_STORE_ITEMS, "m", 1, 1, 1, 1);
    put_ok(s, FN_STORE_ITEMS, "b", 1, 2, 2, 1);
    put_ok(s, FN_STORE_USERS, "u", 1, 3, 3, 1); /* users get none */
    put_ok(s, FN_STORE_ITEMS, "m", 2, 4, 4, 1); /* a newer record keeps the number */
    put_ok(s, FN_STORE_ITEMS, "b", 0, 5, 5, 0); /* an older one is ignored */
    ck_assert_int_eq(number_of(s, "m"), 0);
    ck_assert_int_eq(number_of(s, "b"), 1);
    expect_error(fn_store_item_number(s, "u", 1, &n, &err), FN_ERR_NOT_FOUND, &err, "\"u\"");
    ck_assert_int_eq(n, -1);
    by_number_is(s, 0, "m");
    by_number_is(s, 1, "b");
    fn_buf b = FN_BUF_INIT;
    expect_error(fn_store_item_by_number(s, 2, &b, &err), FN_ERR_NOT_FOUND, &err, "number 2");
    expect_error(fn_store_item_by_number(s, -1, &b, &err), FN_ERR_INVALID, &err, "negative");
    expect_error(fn_store_item_number(s, "", 0, &n, &err), FN_ERR_INVALID, &err, "empty id");

    /* a deleted item keeps its number, and gets it back when put again */
    ck_assert_int_eq(fn_store_delete(s, FN_STORE_ITEMS, "m", 1, &err), FN_OK);
    ck_assert_int_eq(number_of(s, "m"), 0);
    put_ok(s, FN_STORE_ITEMS, "m", 1, 6, 6, 1);
    ck_assert_int_eq(number_of(s, "m"), 0);

    /* a batch numbers its new items in order, an id put twice once */
    fn_store_batch *bt;
    ck_assert_int_eq(fn_store_batch_new(s, &bt, &err), FN_OK);
    const char *ids[] = {"z", "b", "a", "z", "c"};
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(
            fn_store_batch_put(bt, FN_STORE_ITEMS, ids[i], 1, 7 + i, NULL, NULL, 0, &err), FN_OK);
    ck_assert_int_eq(fn_store_batch_put(bt, FN_STORE_USERS, "v", 1, 1, NULL, NULL, 0, &err), FN_OK);
    size_t applied = 0;
    ck_assert_msg(fn_store_batch_commit(bt, &applied, NULL, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(applied, 6);
    fn_store_batch_free(bt);
    ck_assert_int_eq(number_of(s, "z"), 2);
    ck_assert_int_eq(number_of(s, "b"), 1);
    ck_assert_int_eq(number_of(s, "a"), 3);
    ck_assert_int_eq(number_of(s, "c"), 4);
    ck_assert_int_eq(fn_store_item_numbers_end(s), 5);

    /* a scan from a number reads the later ones, in order */
    scanned sc = {0};
    ck_assert_int_eq(fn_store_item_numbers_scan(s, 2, take_scanned, &sc, &err), FN_OK);
    ck_assert_uint_eq(sc.n, 3);
    ck_assert(sc.numbers[0] == 2 && strcmp(sc.ids[0], "z") == 0);
    ck_assert(sc.numbers[2] == 4 && strcmp(sc.ids[2], "c") == 0);
    fn_store_close(s);

    /* numbers survive a reopen, read-only too, and the next new item goes on from them */
    fn_store_options ro = {.read_only = 1};
    s = open_ok(tmp, &ro);
    ck_assert_int_eq(fn_store_item_numbers_end(s), 5);
    fn_store_item_names *names;
    ck_assert_msg(fn_store_item_names_load(s, &names, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(fn_store_item_names_count(names), 5);
    size_t len = 0;
    ck_assert_str_eq(fn_store_item_names_get(names, 3, &len), "a");
    ck_assert_uint_eq(len, 1);
    ck_assert_ptr_null(fn_store_item_names_get(names, 5, NULL));
    ck_assert_ptr_null(fn_store_item_names_get(names, -1, NULL));
    fn_store_item_names_free(names);
    fn_store_close(s);
    s = open_ok(tmp, NULL);
    put_ok(s, FN_STORE_ITEMS, "new", 1, 1, 1, 1);
    ck_assert_int_eq(number_of(s, "new"), 5);
    fn_buf_free(&b);
    fn_store_close(s);
}
END_TEST

/* Makes a store look as format 1 left it: no item_numbers family, marker "1". */
static void make_format_1(const char *dir)
{
    raw_put(dir, "meta", "funnel.store.format", "1", 1);
    raw_db r;
    raw_open(dir, &r);
    char *e = NULL;
    rocksdb_drop_column_family(r.db, raw_family(&r, "item_numbers"), &e);
    ck_assert_msg(!e, "%s", e);
    raw_close(&r);
}

START_TEST(format_1_store_is_numbered_when_opened_for_writing)
{
    fn_store *s = create_ok(tmp);
    put_ok(s, FN_STORE_ITEMS, "q", 1, 1, 1, 1);
    put_ok(s, FN_STORE_ITEMS, "c", 1, 2, 2, 1);
    put_ok(s, FN_STORE_ITEMS, "k", 1, 3, 3, 1);
    fn_store_close(s);
    make_format_1(tmp);

    /* read-only: the records are there, the numbers are not, and the message says what to do */
    fn_store_options ro = {.read_only = 1};
    fn_error err = {0};
    int64_t n;
    s = open_ok(tmp, &ro);
    get_matches(s, FN_STORE_ITEMS, "k", 1, 3, 3);
    expect_error(fn_store_item_number(s, "k", 1, &n, &err), FN_ERR_UNSUPPORTED, &err,
                 "funnel store upgrade");
    fn_store_item_names *names = NULL;
    expect_error(fn_store_item_names_load(s, &names, &err), FN_ERR_UNSUPPORTED, &err, "format 1");
    fn_store_close(s);

    /* writable: numbered in id byte order, and the store says format 2 */
    s = open_ok(tmp, NULL);
    ck_assert_int_eq(number_of(s, "c"), 0);
    ck_assert_int_eq(number_of(s, "k"), 1);
    ck_assert_int_eq(number_of(s, "q"), 2);
    put_ok(s, FN_STORE_ITEMS, "a", 1, 4, 4, 1);
    ck_assert_int_eq(number_of(s, "a"), 3);
    fn_buf b = FN_BUF_INIT;
    ck_assert_int_eq(fn_store_meta_get(s, "funnel.store.format", &b, &err), FN_OK);
    ck_assert(b.len == 1 && b.data[0] == '2');
    fn_buf_free(&b);
    fn_store_close(s);
    s = open_ok(tmp, &ro);
    ck_assert_int_eq(number_of(s, "q"), 2);
    fn_store_close(s);
}
END_TEST

typedef struct numberer {
    fn_store *s;
    int thread;
    int failed;
} numberer;

/* Puts ids "k0".."k299", each thread in its own order, so that every id is raced for. */
static void *numberer_main(void *p)
{
    numberer *w = p;
    for (int i = 0; i < 300 && !w->failed; i++) {
        char id[16];
        int k = w->thread % 2 ? 299 - i : i;
        snprintf(id, sizeof id, "k%d", k);
        fn_error err = {0};
        if (put_test(w->s, FN_STORE_ITEMS, id, 1, k, k, NULL, &err) != FN_OK) w->failed = 1;
    }
    return NULL;
}

START_TEST(concurrent_puts_number_each_item_once)
{
    fn_store *s = create_ok(tmp);
    numberer w[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        w[t] = (numberer){.s = s, .thread = t};
        ck_assert_int_eq(pthread_create(&th[t], NULL, numberer_main, &w[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        ck_assert_msg(!w[t].failed, "thread %d failed a put", t);
    }
    /* 300 items, 300 distinct numbers, each leading back to its item */
    unsigned char seen[300] = {0};
    for (int k = 0; k < 300; k++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", k);
        int64_t n = number_of(s, id);
        ck_assert_msg(n >= 0 && n < 300 && !seen[n], "%s: number %lld", id, (long long)n);
        seen[n] = 1;
        by_number_is(s, n, id);
    }
    ck_assert_int_eq(fn_store_item_numbers_end(s), 300);
    fn_store_close(s);
}
END_TEST

/* ---- the kill test ---- */

#define KILL_ROUNDS 6
#define HOT_EVERY   4
#define MAX_ACKS    (1 << 20)

/* Put number seq of round r: mostly fresh ids, every HOT_EVERY-th an update of "hot". */
static void kill_put_id(char *buf, size_t n, int round, uint32_t seq, uint64_t *version)
{
    if (seq % HOT_EVERY == HOT_EVERY - 1) {
        snprintf(buf, n, "hot");
        *version = (uint64_t)round * 1000000 + seq + 1;
    } else {
        snprintf(buf, n, "r%d-%u", round, (unsigned)seq);
        *version = (uint64_t)round + 1;
    }
}

/* The writer: sync puts one after another, each acknowledged on fd once it returned. */
static void kill_writer(const char *dir, int round, int fd)
{
    fn_store_options o = {.create_if_missing = 1};
    fn_store *s;
    fn_error err = {0};
    if (fn_store_open(dir, &o, &s, &err) != FN_OK) {
        fprintf(stderr, "writer: %s\n", err.msg);
        _exit(2);
    }
    for (uint32_t seq = 0; seq < MAX_ACKS; seq++) {
        char id[32];
        uint64_t version;
        kill_put_id(id, sizeof id, round, seq, &version);
        int applied = 0;
        if (put_test(s, FN_STORE_ITEMS, id, version, round, seq, &applied, &err) != FN_OK ||
            !applied) {
            fprintf(stderr, "writer: %s\n", applied ? "not applied" : err.msg);
            _exit(3);
        }
        if (write(fd, &seq, sizeof seq) != sizeof seq) _exit(4);
    }
    _exit(5); /* the parent should have killed us long ago */
}

typedef struct ack {
    int round;
    uint32_t seq;
} ack;

/* The verifier, in a fresh process as a restarted server would be: every ack must be there. */
static void kill_verify(const char *dir, const ack *acks, size_t n, int fd)
{
    char msg[2 * FN_ERROR_MSG_MAX] = "";
    fn_store *s;
    fn_error err = {0};
    if (fn_store_open(dir, NULL, &s, &err) != FN_OK) {
        snprintf(msg, sizeof msg, "reopen: %s", err.msg);
        goto out;
    }
    uint64_t hot_min = 0;
    for (size_t i = 0; i < n && !msg[0]; i++) {
        char id[32];
        uint64_t version;
        kill_put_id(id, sizeof id, acks[i].round, acks[i].seq, &version);
        if (strcmp(id, "hot") == 0) {
            if (version > hot_min) hot_min = version;
            continue;
        }
        fn_store_record *r;
        if (fn_store_get(s, FN_STORE_ITEMS, id, strlen(id), &r, &err) != FN_OK) {
            snprintf(msg, sizeof msg, "acknowledged put lost: %s", err.msg);
            break;
        }
        if (fn_store_record_version(r) != version ||
            !features_match(fn_store_record_features(r), acks[i].round, acks[i].seq) ||
            !vector_matches(r, acks[i].round, acks[i].seq))
            snprintf(msg, sizeof msg, "acknowledged put %s came back different", id);
        fn_store_record_release(r);
        /* its number went in with it, and leads back to it */
        int64_t number;
        fn_buf back = FN_BUF_INIT;
        if (!msg[0] && fn_store_item_number(s, id, strlen(id), &number, &err) != FN_OK)
            snprintf(msg, sizeof msg, "acknowledged item without a number: %s", err.msg);
        else if (!msg[0] && (fn_store_item_by_number(s, number, &back, &err) != FN_OK ||
                             back.len != strlen(id) || memcmp(back.data, id, back.len) != 0))
            snprintf(msg, sizeof msg, "number %lld of %s leads elsewhere", (long long)number, id);
        fn_buf_free(&back);
    }
    if (!msg[0] && hot_min) {
        fn_store_record *r;
        if (fn_store_get(s, FN_STORE_ITEMS, "hot", 3, &r, &err) != FN_OK) {
            snprintf(msg, sizeof msg, "hot: %s", err.msg);
        } else {
            /* A put after the last ack may have landed too; whatever is there must be whole. */
            uint64_t v = fn_store_record_version(r);
            int round = (int)((v - 1) / 1000000);
            uint32_t seq = (uint32_t)((v - 1) % 1000000);
            if (v < hot_min)
                snprintf(msg, sizeof msg, "hot is at version %llu, acknowledged %llu",
                         (unsigned long long)v, (unsigned long long)hot_min);
            else if (!features_match(fn_store_record_features(r), round, seq) ||
                     !vector_matches(r, round, seq))
                snprintf(msg, sizeof msg, "hot version %llu holds other data",
                         (unsigned long long)v);
            fn_store_record_release(r);
        }
    }
    fn_store_close(s);
out:
    if (write(fd, msg, strlen(msg)) < 0) _exit(4);
    _exit(msg[0] ? 1 : 0);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

START_TEST(acknowledged_puts_survive_sigkill)
{
    if (!fork_mode()) return;
    char *dir = fn_test_path(tmp, "s");
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    size_t n_acks = 0, cap = 4096;
    ack *acks = malloc(cap * sizeof *acks);
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            kill_writer(dir, round, fds[1]);
        }
        close(fds[1]);
        uint32_t seq;
        /* Kill only once the writer is writing, at a random moment after that. */
        ssize_t got = read(fds[0], &seq, sizeof seq);
        ck_assert_msg(got == sizeof seq, "round %d (seed %u): the writer died before its first put",
                      round, seed);
        unsigned delay = (unsigned)rand_r(&seed) % 60;
        sleep_ms(delay);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "round %d (seed %u): the writer ended on its own (status %d)", round, seed,
                      status);
        size_t before = n_acks;
        do {
            if (n_acks == cap) {
                cap *= 2;
                acks = realloc(acks, cap * sizeof *acks);
                ck_assert_ptr_nonnull(acks);
            }
            acks[n_acks].round = round;
            acks[n_acks].seq = seq;
            n_acks++;
        } while (read(fds[0], &seq, sizeof seq) == sizeof seq);
        close(fds[0]);
        fprintf(stderr, "kill test round %d: killed after %u ms, %zu puts acknowledged\n", round,
                delay, n_acks - before);

        int vfd[2];
        ck_assert_int_eq(pipe(vfd), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(vfd[0]);
            kill_verify(dir, acks, n_acks, vfd[1]);
        }
        close(vfd[1]);
        char msg[2 * FN_ERROR_MSG_MAX + 1] = "";
        ssize_t m = read(vfd[0], msg, 2 * FN_ERROR_MSG_MAX);
        if (m > 0) msg[m] = '\0';
        close(vfd[0]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "round %d (seed %u): %s (status %d)", round, seed, msg, status);
    }
    free(acks);
    free(dir);
}
END_TEST

/* ---- real data ---- */

START_TEST(movielens_users_round_trip)
{
    char *path = fn_test_data("ml-100k/ml-100k.user");
    if (!path) {
        fprintf(stderr, "skipped: public data sets not found\n");
        return;
    }
    fn_buf text = FN_BUF_INIT;
    fn_test_read_file(path, &text);
    fn_store *s = create_ok(tmp);
    fn_error err = {0};
    fn_store_batch *b;
    ck_assert_int_eq(fn_store_batch_new(s, &b, &err), FN_OK);
    /* user_id:token age:token gender:token occupation:token zip_code:token */
    enum { MAX_USERS = 2000 };
    char *ids[MAX_USERS];
    int64_t ages[MAX_USERS];
    size_t n = 0;
    char *save = NULL;
    char *line = strtok_r(text.data, "\n", &save); /* the header */
    while ((line = strtok_r(NULL, "\n", &save)) && n < MAX_USERS) {
        char *fields[5], *fs = NULL;
        int k = 0;
        for (char *t = strtok_r(line, "\t", &fs); t && k < 5; t = strtok_r(NULL, "\t", &fs))
            fields[k++] = t;
        ck_assert_int_eq(k, 5);
        Tensorflow__Features *f = fn_features_new();
        ages[n] = atoll(fields[1]);
        ck_assert_int_eq(fn_features_set_int64s(f, "age", &ages[n], 1, &err), FN_OK);
        ck_assert_int_eq(fn_features_set_string(f, "gender", fields[2], &err), FN_OK);
        ck_assert_int_eq(fn_features_set_string(f, "occupation", fields[3], &err), FN_OK);
        ck_assert_int_eq(fn_features_set_string(f, "zip_code", fields[4], &err), FN_OK);
        ck_assert_int_eq(fn_store_batch_put(b, FN_STORE_USERS, fields[0], strlen(fields[0]), 1, f,
                                            NULL, 0, &err),
                         FN_OK);
        fn_features_free(f);
        ids[n++] = strdup(fields[0]);
    }
    ck_assert_uint_eq(n, 943);
    size_t applied;
    ck_assert_int_eq(fn_store_batch_commit(b, &applied, NULL, &err), FN_OK);
    ck_assert_uint_eq(applied, 943);
    fn_store_batch_free(b);
    /* Ask for every user and a few that do not exist, in one call, twice. */
    const char *ask[1000];
    for (size_t i = 0; i < 1000; i++) ask[i] = i < n ? ids[i] : "no-such-user";
    for (int pass = 0; pass < 2; pass++) {
        fn_store_record *out[1000];
        ck_assert_int_eq(fn_store_multi_get(s, FN_STORE_USERS, 1000, ask, NULL, out, &err), FN_OK);
        for (size_t i = 0; i < 1000; i++) {
            if (i >= n) {
                ck_assert_ptr_null(out[i]);
                continue;
            }
            const Tensorflow__Feature *age =
                fn_features_get(fn_store_record_features(out[i]), "age");
            ck_assert(age && age->int64_list->value[0] == ages[i]);
        }
        fn_store_records_release(out, 1000);
    }
    fn_store_stats st;
    fn_store_get_stats(s, &st);
    ck_assert_uint_eq(st.cache_hits, 943);
    fn_store_close(s);
    for (size_t i = 0; i < n; i++) free(ids[i]);
    fn_buf_free(&text);
    free(path);
}
END_TEST

Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *t = tcase_create("open");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, open_close_reopen);
    tcase_add_test(t, open_errors_name_the_folder);
    tcase_add_test(t, locked_by_another_process);
    suite_add_tcase(s, t);
    t = tcase_create("records");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, missing_id_is_not_found);
    tcase_add_test(t, round_trip_features_and_vector);
    tcase_add_test(t, version_rule_last_writer_wins);
    tcase_add_test(t, batch_applies_version_rule);
    tcase_add_test(t, dump_iterates_in_id_order);
    suite_add_tcase(s, t);
    t = tcase_create("cache");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, multi_get_hundreds_hits_and_misses);
    tcase_add_test(t, cache_bounds_are_respected);
    tcase_add_test(t, puts_invalidate_cached_records);
    suite_add_tcase(s, t);
    t = tcase_create("concurrency");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, concurrent_putters_and_readers);
    suite_add_tcase(s, t);
    t = tcase_create("counters and meta");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, counters_and_meta);
    suite_add_tcase(s, t);
    t = tcase_create("corrupt");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, corrupt_value_names_the_id);
    suite_add_tcase(s, t);
    t = tcase_create("item numbers");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, items_are_numbered_once_in_arrival_order);
    tcase_add_test(t, format_1_store_is_numbered_when_opened_for_writing);
    tcase_add_test(t, concurrent_puts_number_each_item_once);
    suite_add_tcase(s, t);
    t = tcase_create("durability");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, acknowledged_puts_survive_sigkill);
    suite_add_tcase(s, t);
    t = tcase_create("real data");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, movielens_users_round_trip);
    suite_add_tcase(s, t);
    return s;
}
