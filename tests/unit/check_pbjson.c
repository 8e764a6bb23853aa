/* check_pbjson.c - the proto3 JSON mapping over protobuf-c descriptors. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "features/example.h"
#include "funnel/v1/funnel.pb-c.h"
#include "funnel/v1/records.pb-c.h"
#include "proto/pbjson.h"

static Tensorflow__Example *sample_example(void)
{
    Tensorflow__Example *ex = fn_example_new();
    Tensorflow__Features *f = fn_example_mutable_features(ex);
    fn_error err = {0};
    float fl[] = {0.1f, 1.0f, 1e-5f, -0.0f, NAN};
    int64_t il[] = {1, -5, (int64_t)1 << 62};
    ck_assert_int_eq(fn_features_set_floats(f, "b", fl, 5, &err), FN_OK);
    ck_assert_int_eq(fn_features_set_int64s(f, "a", il, 3, &err), FN_OK);
    ck_assert_int_eq(fn_features_set_bytes(f, "\xc3\xa9\x01", "hi\xff", 3, &err), FN_OK);
    ck_assert_int_eq(fn_features_set_bytes(f, "\xc3\xa9\x01", "", 0, &err), FN_OK);
    Tensorflow__Feature *empty;
    ck_assert_int_eq(fn_features_put(f, "z", FN_FEATURE_BYTES, &empty, &err), FN_OK);
    return ex;
}

/* What Python's json_format.MessageToJson(ex, indent=None) prints for sample_example(). */
static const char sample_json[] =
    "{\"features\": {\"feature\": {"
    "\"b\": {\"floatList\": {\"value\": [0.1, 1.0, 1e-05, -0.0, \"NaN\"]}}, "
    "\"a\": {\"int64List\": {\"value\": [\"1\", \"-5\", \"4611686018427387904\"]}}, "
    "\"\\u00e9\\u0001\": {\"bytesList\": {\"value\": [\"aGn/\", \"\"]}}, "
    "\"z\": {\"bytesList\": {}}}}}";

START_TEST(encodes_like_python)
{
    Tensorflow__Example *ex = sample_example();
    fn_buf b = FN_BUF_INIT;
    fn_example_to_json(ex, &b);
    ck_assert_str_eq(b.data, sample_json);
    fn_example_free(ex);
    fn_buf_reset(&b);
    Tensorflow__Example empty = TENSORFLOW__EXAMPLE__INIT;
    fn_example_to_json(&empty, &b);
    ck_assert_str_eq(b.data, "{}");
    fn_buf_free(&b);
}
END_TEST

START_TEST(decode_encode_round_trip)
{
    fn_error err = {0};
    Tensorflow__Example *ex;
    ck_assert_msg(fn_example_from_json(sample_json, strlen(sample_json), &ex, &err) == FN_OK, "%s",
                  err.msg);
    fn_buf b = FN_BUF_INIT;
    fn_example_to_json(ex, &b);
    ck_assert_str_eq(b.data, sample_json);
    /* And through the wire format. */
    fn_buf wire = FN_BUF_INIT;
    ck_assert_int_eq(fn_proto_pack(&ex->base, &wire, &err), FN_OK);
    Tensorflow__Example *back;
    ck_assert_int_eq(fn_example_decode((uint8_t *)wire.data, wire.len, &back, &err), FN_OK);
    fn_buf_reset(&b);
    fn_example_to_json(back, &b);
    ck_assert_str_eq(b.data, sample_json);
    fn_example_free(ex);
    fn_example_free(back);
    fn_buf_free(&b);
    fn_buf_free(&wire);
}
END_TEST

START_TEST(decode_accepts_proto3_variants)
{
    /* Proto field names, int64 as numbers, floats as strings, URL-safe base64, nulls. */
    const char *j = "{\"features\": {\"feature\": {"
                    "\"n\": {\"int64_list\": {\"value\": [3, \"-4\", 5.0]}}, "
                    "\"f\": {\"float_list\": {\"value\": [\"Infinity\", \"-1.5\", 2]}}, "
                    "\"s\": {\"bytes_list\": {\"value\": [\"aGn_\"]}}, "
                    "\"x\": {\"bytes_list\": null}}}}";
    fn_error err = {0};
    Tensorflow__Example *ex;
    ck_assert_msg(fn_example_from_json(j, strlen(j), &ex, &err) == FN_OK, "%s", err.msg);
    const Tensorflow__Feature *n = fn_features_get(ex->features, "n");
    ck_assert_int_eq(n->int64_list->n_value, 3);
    ck_assert_int_eq(n->int64_list->value[1], -4);
    ck_assert_int_eq(n->int64_list->value[2], 5);
    const Tensorflow__Feature *f = fn_features_get(ex->features, "f");
    ck_assert(isinf(f->float_list->value[0]));
    ck_assert(f->float_list->value[1] == -1.5f);
    const Tensorflow__Feature *s = fn_features_get(ex->features, "s");
    ck_assert_mem_eq(s->bytes_list->value[0].data, "hi\xff", 3);
    fn_example_free(ex);
}
END_TEST

static void expect_error(const char *json, const char *fragment)
{
    fn_error err = {0};
    Tensorflow__Example *ex = NULL;
    fn_status st = fn_example_from_json(json, strlen(json), &ex, &err);
    ck_assert_msg(st == FN_ERR_INVALID, "accepted %s", json);
    ck_assert_msg(strstr(err.msg, fragment), "message '%s' lacks '%s'", err.msg, fragment);
    ck_assert_ptr_null(ex);
}

START_TEST(decode_errors_name_the_field)
{
    expect_error("{\"features\": {\"feature\": {\"age\": {\"int64List\": {\"value\": [1, "
                 "\"x\"]}}}}}",
                 "features.feature[\"age\"].int64List.value[1]: expected an integer string");
    expect_error("{\"features\": {\"feature\": {\"age\": {\"floatList\": {\"value\": [true]}}}}}",
                 "floatList.value[0]: expected a number");
    expect_error("{\"features\": {\"feature\": {\"a\": {\"floatList\": {}, \"int64List\": {}}}}}",
                 "more than one member of a oneof");
    expect_error("{\"feature\": {}}", "feature: unknown field of tensorflow.Example");
    expect_error("{\"features\": {\"feature\": {\"a\": {\"bytesList\": {\"value\": "
                 "[\"!!\"]}}}}}",
                 "invalid base64");
    expect_error("{\"features\": 3}", "features: expected an object");
    expect_error("{\"features\": {}, \"features\": {}}", "invalid JSON");
    expect_error("[1]", "expected an object");
    expect_error("{\"features\": {\"feature\": {\"a\": {\"int64List\": {\"value\": "
                 "[\"99999999999999999999\"]}}}}}",
                 "expected an integer string");
    expect_error("{\"features\": {\"feature\": {\"a\": {\"floatList\": {\"value\": [1e39]}}}}}",
                 "float out of range");
    expect_error("{", "invalid JSON at line 1");
}
END_TEST

START_TEST(other_messages_enums_maps_strings)
{
    const char *j = "{\"userId\": \"u1\", \"itemId\": \"i\\u00e9\", \"kind\": \"CLICK\", "
                    "\"timestampMs\": \"1700000000000\", \"position\": 3}";
    fn_error err = {0};
    ProtobufCMessage *m;
    ck_assert_msg(fn_pbjson_parse(&funnel__v1__event__descriptor, j, strlen(j), 0, &m, &err) ==
                      FN_OK,
                  "%s", err.msg);
    Funnel__V1__Event *e = (Funnel__V1__Event *)m;
    ck_assert_str_eq(e->user_id, "u1");
    ck_assert_int_eq(e->kind, FUNNEL__V1__EVENT__KIND__CLICK);
    ck_assert_int_eq(e->timestamp_ms, 1700000000000LL);
    fn_buf b = FN_BUF_INIT;
    fn_pbjson_encode(m, &b);
    ck_assert_str_eq(b.data, j);
    protobuf_c_message_free_unpacked(m, NULL);

    const char *r = "{\"requestId\": \"r\", \"items\": [{\"id\": \"a\", \"score\": 0.5, "
                    "\"channels\": [\"ann\", \"popular\"]}], \"degraded\": [\"rerank\"], "
                    "\"modelVersions\": {\"ctr\": \"v2\", \"ann\": \"v1\"}}";
    ck_assert_msg(
        fn_pbjson_parse(&funnel__v1__rank_response__descriptor, r, strlen(r), 0, &m, &err) == FN_OK,
        "%s", err.msg);
    fn_buf_reset(&b);
    fn_pbjson_encode(m, &b);
    ck_assert_str_eq(b.data, r);
    protobuf_c_message_free_unpacked(m, NULL);

    const char *bad = "{\"kind\": \"NOT_A_KIND\"}";
    ck_assert_int_eq(fn_pbjson_parse(&funnel__v1__event__descriptor, bad, strlen(bad), 0, &m, &err),
                     FN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "kind: unknown enum value name"));
    const char *unk = "{\"userId\": \"u\", \"extra\": 1}";
    ck_assert_int_eq(fn_pbjson_parse(&funnel__v1__event__descriptor, unk, strlen(unk), 0, &m, &err),
                     FN_ERR_INVALID);
    ck_assert_int_eq(fn_pbjson_parse(&funnel__v1__event__descriptor, unk, strlen(unk),
                                     FN_PBJSON_IGNORE_UNKNOWN, &m, &err),
                     FN_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    const char *nul = "{\"userId\": \"a\\u0000b\"}";
    ck_assert_int_eq(fn_pbjson_parse(&funnel__v1__event__descriptor, nul, strlen(nul), 0, &m, &err),
                     FN_ERR_INVALID);
    fn_buf_free(&b);
}
END_TEST

Suite *pbjson_suite(void)
{
    Suite *s = suite_create("pbjson");
    TCase *t = tcase_create("encode");
    tcase_add_test(t, encodes_like_python);
    tcase_add_test(t, decode_encode_round_trip);
    suite_add_tcase(s, t);
    t = tcase_create("decode");
    tcase_add_test(t, decode_accepts_proto3_variants);
    tcase_add_test(t, decode_errors_name_the_field);
    tcase_add_test(t, other_messages_enums_maps_strings);
    suite_add_tcase(s, t);
    return s;
}
