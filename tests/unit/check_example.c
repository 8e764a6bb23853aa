/* check_example.c - tf.Example building, lookup and wire decoding. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "features/example.h"

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

Suite *example_suite(void)
{
    Suite *s = suite_create("example");
    TCase *t = tcase_create("example");
    tcase_add_test(t, build_lookup_and_kinds);
    tcase_add_test(t, wire_round_trip_and_garbage);
    suite_add_tcase(s, t);
    return s;
}
