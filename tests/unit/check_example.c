/* check_example.c - tf.Example building, lookup and wire decoding. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/example.h"
#include "features/interactions.h"
#include "features/tfrecord.h"
#include "test_util.h"

START_TEST(build_lookup_and_kinds)
{
    Tensorflow__Features *f = fn_features_new();
    fn_error err = {0};
    ck_assert_int_eq(fn_features_set_string(f, "title", "Toy Story", &err), FN_OK);
    ck_assert_int_eq(fn_features_set_string(f, "genres", "Animation", &err), FN_OK);
    ck_assert_int_eq(fn_features_set_string(f, "genres", "Comedy", &err), FN_OK);
    int64_t year = 1995;
    ck_assert_int_eq(fn_features_set_int64s(f, "year", &year, 1, &err), FN_OK);
    /* Appending a float to a bytes feature is refused and names the key. */
    float x = 1;
    ck_assert_int_eq(fn_features_set_floats(f, "genres", &x, 1, &err), FN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "'genres' holds a bytes_list"));
    const Tensorflow__Feature *g = fn_features_get(f, "genres");
    ck_assert_int_eq(fn_feature_kind_of(g), FN_FEATURE_BYTES);
    ck_assert_uint_eq(fn_feature_size(g), 2);
    ck_assert_mem_eq(g->bytes_list->value[1].data, "Comedy", 6);
    ck_assert_ptr_null(fn_features_get(f, "missing"));
    ck_assert_ptr_null(fn_features_get(NULL, "title"));
    ck_assert_uint_eq(fn_feature_size(NULL), 0);
    ck_assert_int_eq(fn_feature_kind_of(NULL), FN_FEATURE_NONE);
    fn_features_free(f);
}
END_TEST

START_TEST(wire_round_trip_and_garbage)
{
    Tensorflow__Example *ex = fn_example_new();
    fn_error err = {0};
    float v[] = {1.5f, -2.0f};
    ck_assert_int_eq(fn_features_set_floats(fn_example_mutable_features(ex), "v", v, 2, &err),
                     FN_OK);
    fn_buf wire = FN_BUF_INIT;
    ck_assert_int_eq(fn_proto_pack(&ex->base, &wire, &err), FN_OK);
    Tensorflow__Example *back;
    ck_assert_int_eq(fn_example_decode((uint8_t *)wire.data, wire.len, &back, &err), FN_OK);
    const Tensorflow__Feature *f = fn_features_get(back->features, "v");
    ck_assert_int_eq(f->float_list->n_value, 2);
    ck_assert(f->float_list->value[1] == -2.0f);
    fn_example_free(back);
    /* Truncated wire bytes are refused, not half-read. */
    ck_assert_int_eq(fn_example_decode((uint8_t *)wire.data, wire.len - 1, &back, &err),
                     FN_ERR_CORRUPT);
    const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    ck_assert_int_eq(fn_example_decode(garbage, sizeof garbage, &back, &err), FN_ERR_CORRUPT);
    /* An empty message is a valid, empty Example. */
    ck_assert_int_eq(fn_example_decode((const uint8_t *)"", 0, &back, &err), FN_OK);
    ck_assert_ptr_null(fn_example_features(back));
    fn_example_free(back);
    fn_example_free(ex);
    fn_buf_free(&wire);
}
END_TEST

/* Appends one interaction record; label < 0: none. */
static void put_interaction(fn_tfrecord_writer *w, const char *user, int64_t item, int64_t t,
                            double label)
{
    Tensorflow__Example *ex = fn_example_new();
    Tensorflow__Features *f = fn_example_mutable_features(ex);
    fn_error err = {0};
    ck_assert_int_eq(fn_features_set_string(f, "user_id", user, &err), FN_OK);
    ck_assert_int_eq(fn_features_set_int64s(f, "item_id", &item, 1, &err), FN_OK);
    ck_assert_int_eq(fn_features_set_int64s(f, "timestamp", &t, 1, &err), FN_OK);
    float l = (float)label;
    if (label >= 0) ck_assert_int_eq(fn_features_set_floats(f, "label", &l, 1, &err), FN_OK);
    fn_test_write_example(w, ex);
}

typedef struct seen {
    char text[256];
    int stop_at; /* the callback fails at this record (1-based); 0: never */
    int n;
} seen;

static fn_status note(void *ctx, const fn_interaction *x, fn_error *err)
{
    seen *s = ctx;
    size_t len = strlen(s->text);
    snprintf(s->text + len, sizeof s->text - len, "%s/%s/%lld/%g ", x->user, x->item,
             (long long)x->t, x->label);
    if (++s->n == s->stop_at) return fn_error_set(err, FN_ERR_INVALID, "stopped here");
    return FN_OK;
}

START_TEST(interaction_log)
{
    char *dir = fn_test_tmpdir(), *path = fn_test_path(dir, "log.tfrecord");
    fn_error err = {0};
    fn_tfrecord_writer *w;
    ck_assert_int_eq(fn_tfrecord_writer_open(path, FN_TFRECORD_PLAIN, &w, &err), FN_OK);
    put_interaction(w, "u1", 7, 100, 1);
    put_interaction(w, "u2", 8, 200, -1);
    put_interaction(w, "u1", 9, 300, 0);
    ck_assert_int_eq(fn_tfrecord_writer_close(w, &err), FN_OK);
    /* ids as text (int64 as decimal), an absent optional label counts 1 */
    fn_interaction_keys k = {"user_id", "item_id", "timestamp", "label", 1};
    seen s = {0};
    uint64_t n = 0;
    ck_assert_int_eq(fn_interactions_read(path, &k, note, &s, &n, &err), FN_OK);
    ck_assert_str_eq(s.text, "u1/7/100/1 u2/8/200/1 u1/9/300/0 ");
    ck_assert_uint_eq(n, 3);
    /* keys not read: time 0, label 1 */
    fn_interaction_keys bare = {"user_id", "item_id", NULL, NULL, 0};
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(fn_interactions_read(path, &bare, note, &s, NULL, &err), FN_OK);
    ck_assert_str_eq(s.text, "u1/7/0/1 u2/8/0/1 u1/9/0/1 ");
    /* a required label that is missing names the record */
    k.label_optional = 0;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(fn_interactions_read(path, &k, note, &s, &n, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "log.tfrecord: record 2 at byte offset") &&
                      strstr(err.msg, "feature 'label' is missing"),
                  "%s", err.msg);
    /* the callback's error stops the read, with the same prefix */
    k.label_optional = 1;
    memset(&s, 0, sizeof s);
    s.stop_at = 3;
    ck_assert_int_eq(fn_interactions_read(path, &k, note, &s, &n, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "record 3 at byte offset") && strstr(err.msg, "stopped here"),
                  "%s", err.msg);
    /* a missing id key and a missing file */
    fn_interaction_keys wrong = {"nobody", "item_id", NULL, NULL, 0};
    ck_assert_int_eq(fn_interactions_read(path, &wrong, note, &s, NULL, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "record 1") && strstr(err.msg, "nobody"), "%s", err.msg);
    char *none = fn_test_path(dir, "none.tfrecord");
    ck_assert_int_ne(fn_interactions_read(none, &k, note, &s, NULL, &err), FN_OK);
    ck_assert_msg(strstr(err.msg, "none.tfrecord"), "%s", err.msg);
    free(none), free(path), free(dir);
}
END_TEST

Suite *example_suite(void)
{
    Suite *s = suite_create("example");
    TCase *t = tcase_create("example");
    tcase_add_test(t, build_lookup_and_kinds);
    tcase_add_test(t, wire_round_trip_and_garbage);
    tcase_add_test(t, interaction_log);
    suite_add_tcase(s, t);
    return s;
}
