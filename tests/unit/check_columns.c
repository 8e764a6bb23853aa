/* check_columns.c - feature-column specs: validation, every column type, the spec hash. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "features/columns.h"
#include "features/example.h"
#include "test_util.h"

static fn_columns *parse_ok(const char *json)
{
    fn_error err = {0};
    fn_columns *c = NULL;
    ck_assert_msg(fn_columns_parse(json, strlen(json), NULL, &c, &err) == FN_OK, "%s", err.msg);
    return c;
}

static void parse_fails(const char *json, const char *fragment)
{
    fn_error err = {0};
    fn_columns *c = NULL;
    ck_assert_msg(fn_columns_parse(json, strlen(json), NULL, &c, &err) == FN_ERR_INVALID,
                  "accepted %s", json);
    ck_assert_msg(strstr(err.msg, fragment), "message '%s' lacks '%s'", err.msg, fragment);
    ck_assert_ptr_null(c);
}

START_TEST(spec_errors_name_column_and_problem)
{
    parse_fails("{", "invalid JSON");
    parse_fails("[]", "top level must be an object");
    parse_fails("{\"columns\": []}", "'columns' must be a non-empty array");
    parse_fails("{\"cols\": []}", "unknown top-level field 'cols'");
    parse_fails("{\"columns\": [{\"type\": \"numeric\", \"source\": \"user\", \"key\": \"a\"}]}",
                "column #0: missing field 'name'");
    parse_fails("{\"columns\": [{\"name\": \"a\", \"type\": \"numerical\", \"source\": \"user\", "
                "\"key\": \"a\"}]}",
                "column 'a' (#0): unknown type 'numerical'");
    parse_fails("{\"columns\": [{\"name\": \"a\", \"type\": \"numeric\", \"source\": \"user\"}]}",
                "column 'a' (#0): missing field 'key'");
    parse_fails("{\"columns\": [{\"name\": \"a\", \"type\": \"numeric\", \"source\": \"shop\", "
                "\"key\": \"a\"}]}",
                "unknown source 'shop'");
    parse_fails("{\"columns\": [{\"name\": \"a\", \"type\": \"bucketized\", \"source\": \"user\", "
                "\"key\": \"a\", \"boundaries\": [1, 3, 3]}]}",
                "column 'a' (#0): boundaries must be strictly increasing (3 then 3)");
    parse_fails("{\"columns\": [{\"name\": \"a\", \"type\": \"numeric\", \"source\": \"user\", "
                "\"key\": \"a\"}, {\"name\": \"a\", \"type\": \"numeric\", \"source\": \"user\", "
                "\"key\": \"b\"}]}",
                "column 'a' (#1): name used twice");
    parse_fails("{\"columns\": [{\"name\": \"h\", \"type\": \"categorical_hash\", \"source\": "
                "\"item\", \"key\": \"a\", \"bucket_size\": 10}]}",
                "column 'h' (#0): unknown field 'bucket_size'");
    parse_fails("{\"columns\": [{\"name\": \"h\", \"type\": \"categorical_hash\", \"source\": "
                "\"item\", \"key\": \"a\", \"hash_bucket_size\": 0}]}",
                "'hash_bucket_size' must be a whole number from 1");
    parse_fails("{\"columns\": [{\"name\": \"v\", \"type\": \"categorical_vocabulary\", "
                "\"source\": \"item\", \"key\": \"a\", \"vocabulary\": [\"x\", \"y\", \"x\"]}]}",
                "column 'v' (#0): vocabulary entry 'x' appears twice");
    parse_fails("{\"columns\": [{\"name\": \"v\", \"type\": \"categorical_vocabulary\", "
                "\"source\": \"item\", \"key\": \"a\"}]}",
                "exactly one of 'vocabulary' and 'vocabulary_file'");
    parse_fails("{\"columns\": [{\"name\": \"v\", \"type\": \"categorical_vocabulary\", "
                "\"source\": \"item\", \"key\": \"a\", \"vocabulary_file\": \"nope.txt\"}]}",
                "nope.txt");
    parse_fails("{\"columns\": [{\"name\": \"n\", \"type\": \"numeric\", \"source\": \"user\", "
                "\"key\": \"a\", \"normalizer\": {\"mean\": 1, \"std\": 0}}]}",
                "normalizer std must be positive");
    parse_fails("{\"columns\": [{\"name\": \"i\", \"type\": \"categorical_identity\", \"source\": "
                "\"user\", \"key\": \"a\", \"num_buckets\": 3, \"default\": 3}]}",
                "'default' must be a whole number below num_buckets");
    parse_fails("{\"columns\": [{\"name\": \"x\", \"type\": \"crossed\", \"keys\": [\"a\"], "
                "\"hash_bucket_size\": 10}]}",
                "'keys' must be an array of at least two key names");
    parse_fails("{\"columns\": [{\"name\": \"e\", \"type\": \"embedding\", \"source\": \"item\", "
                "\"key\": \"v\"}]}",
                "column 'e' (#0): missing field 'dimension'");
}
END_TEST

/* Features built from a tiny text form: "key=f:1.5,2" "key=i:3" "key=b:x|y". */
static Tensorflow__Features *features_of(const char *spec)
{
    Tensorflow__Features *f = fn_features_new();
    fn_error err = {0};
    char *copy = strdup(spec), *save = NULL;
    for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        *eq = '\0';
        char kind = eq[1];
        char *vals = eq + 3, *vs = NULL;
        Tensorflow__Feature *feat;
        fn_feature_kind k = kind == 'f'   ? FN_FEATURE_FLOAT
                            : kind == 'i' ? FN_FEATURE_INT64
                                          : FN_FEATURE_BYTES;
        ck_assert_int_eq(fn_features_put(f, tok, k, &feat, &err), FN_OK);
        for (char *v = strtok_r(vals, kind == 'b' ? "|" : ",", &vs); v;
             v = strtok_r(NULL, kind == 'b' ? "|" : ",", &vs)) {
            if (k == FN_FEATURE_FLOAT) {
                float x = strtof(v, NULL);
                fn_feature_add_floats(feat, &x, 1);
            } else if (k == FN_FEATURE_INT64) {
                int64_t x = strtoll(v, NULL, 10);
                fn_feature_add_int64s(feat, &x, 1);
            } else {
                fn_feature_add_bytes(feat, v, strlen(v));
            }
        }
    }
    free(copy);
    return f;
}

static fn_status transform(const fn_columns *c, const char *feats, fn_column_output *o,
                           fn_error *err)
{
    Tensorflow__Features *f = features_of(feats);
    fn_column_sources src;
    for (int s = 0; s < FN_SOURCE_COUNT; s++) src.src[s] = f;
    fn_status st = fn_columns_transform(c, &src, FN_SOURCES_ALL, o, err);
    fn_features_free(f);
    return st;
}

/* The libffm line of a transform, without the label. */
static const char *line_of(const fn_columns *c, const char *feats)
{
    static fn_buf b;
    fn_column_output o = {0};
    fn_error err = {0};
    ck_assert_msg(transform(c, feats, &o, &err) == FN_OK, "%s", err.msg);
    fn_buf_reset(&b);
    fn_columns_libffm_line(1, &o, &b);
    fn_column_output_free(&o);
    b.data[--b.len] = '\0'; /* drop the newline */
    return b.data + 2;      /* and the label "1 " */
}

static void transform_fails(const fn_columns *c, const char *feats, const char *fragment)
{
    fn_column_output o = {0};
    fn_error err = {0};
    ck_assert_int_eq(transform(c, feats, &o, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, fragment), "message '%s' lacks '%s'", err.msg, fragment);
    fn_column_output_free(&o);
}

START_TEST(numeric_and_bucketized)
{
    fn_columns *c = parse_ok(
        "{\"columns\": ["
        "{\"name\": \"age\", \"type\": \"numeric\", \"source\": \"user\", \"key\": \"age\", "
        "\"normalizer\": {\"mean\": 30, \"std\": 10}, \"default\": 30},"
        "{\"name\": \"age_b\", \"type\": \"bucketized\", \"source\": \"user\", \"key\": \"age\", "
        "\"boundaries\": [18, 25, 35]},"
        "{\"name\": \"xy\", \"type\": \"numeric\", \"source\": \"item\", \"key\": \"xy\", "
        "\"shape\": 2}]}");
    ck_assert_uint_eq(fn_columns_offset(c, 1), 1);
    ck_assert_uint_eq(fn_columns_size(c, 1), 4);
    ck_assert_uint_eq(fn_columns_offset(c, 2), 5);
    ck_assert_uint_eq(fn_columns_num_features(c), 7);
    ck_assert_str_eq(line_of(c, "age=f:45 xy=f:1,2"), "0:0:1.5 1:4:1 2:5:1 2:6:2");
    /* TensorFlow's rule: bucket = number of boundaries <= v. */
    ck_assert_str_eq(line_of(c, "age=f:17 xy=f:0,0"), "0:0:-1.3 1:1:1 2:5:0 2:6:0");
    ck_assert_str_eq(line_of(c, "age=f:18 xy=f:0,0"), "0:0:-1.2 1:2:1 2:5:0 2:6:0");
    ck_assert_str_eq(line_of(c, "age=i:25 xy=f:0,0"), "0:0:-0.5 1:3:1 2:5:0 2:6:0");
    ck_assert_str_eq(line_of(c, "age=f:35 xy=f:0,0"), "0:0:0.5 1:4:1 2:5:0 2:6:0");
    /* Missing: the numeric default (normalized), no bucket, zeros. */
    ck_assert_str_eq(line_of(c, ""), "0:0:0 2:5:0 2:6:0");
    transform_fails(c, "age=b:old",
                    "column 'age': feature 'age' holds a bytes_list where a "
                    "float_list or int64_list is expected");
    transform_fails(c, "age=f:1,2", "feature 'age' has 2 values, expected 1");
    transform_fails(c, "age=f:nan", "holds NaN");
    transform_fails(c, "age=f:inf xy=f:0,0", "feature 'age' value inf is infinite once normalized");
    transform_fails(c, "age=f:30 xy=f:0,-inf", "feature 'xy' value -inf is infinite");
    transform_fails(c, "xy=f:1", "feature 'xy' has 1 values, expected 2");
    fn_columns_free(c);
}
END_TEST

static uint32_t h(const char *s, uint64_t mod)
{
    return (uint32_t)(XXH3_64bits(s, strlen(s)) % mod);
}

START_TEST(categorical_hash_vocabulary_identity)
{
    fn_columns *c = parse_ok(
        "{\"columns\": ["
        "{\"name\": \"item\", \"type\": \"categorical_hash\", \"source\": \"item\", "
        "\"key\": \"id\", \"hash_bucket_size\": 1000},"
        "{\"name\": \"genre\", \"type\": \"categorical_vocabulary\", \"source\": \"item\", "
        "\"key\": \"genres\", \"vocabulary\": [\"Action\", \"Comedy\", \"Drama\"], "
        "\"num_oov_buckets\": 2},"
        "{\"name\": \"occ\", \"type\": \"categorical_vocabulary\", \"source\": \"user\", "
        "\"key\": \"occ\", \"vocabulary\": [\"artist\", 7]},"
        "{\"name\": \"g\", \"type\": \"categorical_identity\", \"source\": \"user\", "
        "\"key\": \"gid\", \"num_buckets\": 3}]}");
    char want[256];
    /* int64 values hash as their decimal text, like bytes "42". */
    snprintf(want, sizeof want, "0:%u:1 1:1001:1 2:1005:1 3:1008:1", h("42", 1000));
    ck_assert_str_eq(line_of(c, "id=i:42 genres=b:Comedy occ=b:artist gid=i:1"), want);
    ck_assert_str_eq(
        line_of(c, "id=b:42 genres=b:Comedy occ=i:7 gid=i:2"),
        (snprintf(want, sizeof want, "0:%u:1 1:1001:1 2:1006:1 3:1009:1", h("42", 1000)), want));
    /* Multi-valued: 1/n each; unknown words go to hashed OOV buckets. */
    snprintf(want, sizeof want, "1:1000:0.33333334 1:1002:0.33333334 1:%u:0.33333334",
             1000 + 3 + h("Western", 2));
    ck_assert_str_eq(line_of(c, "genres=b:Action|Drama|Western"), want);
    /* No OOV buckets: unknown words are dropped. */
    ck_assert_str_eq(line_of(c, "occ=b:pilot|artist"), "2:1005:1");
    transform_fails(c, "gid=i:3", "column 'g': feature 'gid' value 3 is outside [0, 3)");
    transform_fails(c, "gid=b:1", "feature 'gid' holds a bytes_list where an int64_list");
    transform_fails(c, "id=f:1.5", "column 'item': feature 'id' holds a float_list");
    fn_columns_free(c);
}
END_TEST

START_TEST(vocabulary_file_relative_to_spec)
{
    char *dir = fn_test_tmpdir();
    char *voc = fn_test_path(dir, "genres.txt");
    fn_test_write_file(voc, "Action\r\nComedy\nDrama\n", 21);
    char *spec = fn_test_path(dir, "spec.json");
    const char *js = "{\"columns\": [{\"name\": \"genre\", \"type\": \"categorical_vocabulary\", "
                     "\"source\": \"item\", \"key\": \"g\", \"vocabulary_file\": \"genres.txt\"}]}";
    fn_test_write_file(spec, js, strlen(js));
    fn_error err = {0};
    fn_columns *c;
    ck_assert_msg(fn_columns_load(spec, &c, &err) == FN_OK, "%s", err.msg);
    ck_assert_uint_eq(fn_columns_size(c, 0), 3);
    ck_assert_str_eq(line_of(c, "g=b:Drama"), "0:2:1");
    /* Same words inline: the same canonical form and hash. */
    fn_columns *inl = parse_ok("{\"columns\": [{\"name\": \"genre\", \"type\": "
                               "\"categorical_vocabulary\", \"source\": \"item\", \"key\": \"g\", "
                               "\"vocabulary\": [\"Action\", \"Comedy\", \"Drama\"]}]}");
    ck_assert_str_eq(fn_columns_sha256(c), fn_columns_sha256(inl));
    fn_columns_free(c);
    fn_columns_free(inl);
    fn_test_write_file(voc, "Action\n\nDrama\n", 14);
    ck_assert_int_eq(fn_columns_load(spec, &c, &err), FN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "line 2 is empty") && strstr(err.msg, "spec.json"), "%s",
                  err.msg);
    free(voc);
    free(spec);
    fn_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(crossed_and_embedding)
{
    fn_columns *c = parse_ok(
        "{\"columns\": ["
        "{\"name\": \"x\", \"type\": \"crossed\", \"keys\": [\"occ\", \"genres\"], "
        "\"hash_bucket_size\": 100},"
        "{\"name\": \"vec\", \"type\": \"embedding\", \"source\": \"item\", \"key\": \"v\", "
        "\"dimension\": 3}]}");
    ck_assert_uint_eq(fn_columns_dense_dim(c), 3);
    char want[256];
    snprintf(want, sizeof want, "0:%u:1 1:100:0.5 1:102:-2", h("artist_X_Comedy", 100));
    ck_assert_str_eq(line_of(c, "occ=b:artist genres=b:Comedy v=f:0.5,0,-2"), want);
    snprintf(want, sizeof want, "0:%u:0.5 0:%u:0.5", h("7_X_A", 100), h("7_X_B", 100));
    ck_assert_str_eq(line_of(c, "occ=i:7 genres=b:A|B"), want);
    /* A missing key crosses to nothing; a missing vector is zeros. */
    fn_column_output o = {0};
    fn_error err = {0};
    ck_assert_int_eq(transform(c, "occ=b:artist", &o, &err), FN_OK);
    ck_assert_uint_eq(o.n, 0);
    ck_assert(o.dense[0] == 0 && o.dense[2] == 0);
    ck_assert_int_eq(transform(c, "v=f:1,2,3", &o, &err), FN_OK);
    ck_assert(o.dense[0] == 1 && o.dense[2] == 3);
    fn_column_output_free(&o);
    transform_fails(c, "v=f:1,2", "feature 'v' has 2 values, expected dimension 3");
    transform_fails(c, "occ=f:1 genres=b:A", "column 'x': feature 'occ' holds a float_list");
    fn_columns_free(c);
}
END_TEST

START_TEST(source_mask_splits_user_and_item)
{
    fn_columns *c = parse_ok(
        "{\"columns\": ["
        "{\"name\": \"u\", \"type\": \"categorical_hash\", \"source\": \"user\", \"key\": \"id\", "
        "\"hash_bucket_size\": 10},"
        "{\"name\": \"i\", \"type\": \"categorical_hash\", \"source\": \"item\", \"key\": \"id\", "
        "\"hash_bucket_size\": 10},"
        "{\"name\": \"q\", \"type\": \"numeric\", \"source\": \"context\", \"key\": \"hour\"}]}");
    ck_assert_uint_eq(fn_columns_sources(c, 0), 1u << FN_SOURCE_USER);
    Tensorflow__Features *user = features_of("id=b:u7"), *item = features_of("id=b:i9"),
                         *ctx = features_of("hour=i:13");
    fn_column_sources src = {{user, item, ctx, NULL}};
    fn_column_output o = {0};
    fn_error err = {0};
    unsigned request_part = (1u << FN_SOURCE_USER) | (1u << FN_SOURCE_CONTEXT);
    ck_assert_int_eq(fn_columns_transform(c, &src, request_part, &o, &err), FN_OK);
    ck_assert_uint_eq(o.n, 2);
    ck_assert_uint_eq(o.triples[0].index, h("u7", 10));
    ck_assert_uint_eq(o.triples[1].field, 2);
    ck_assert(o.triples[1].value == 13.0f);
    ck_assert_int_eq(fn_columns_transform(c, &src, 1u << FN_SOURCE_ITEM, &o, &err), FN_OK);
    ck_assert_uint_eq(o.n, 1);
    ck_assert_uint_eq(o.triples[0].index, 10 + h("i9", 10));
    fn_column_output_free(&o);
    fn_features_free(user);
    fn_features_free(item);
    fn_features_free(ctx);
    fn_columns_free(c);
}
END_TEST

START_TEST(hash_of_canonical_form)
{
    fn_columns *a = parse_ok("{\"columns\": [{\"name\": \"b\", \"type\": \"bucketized\", "
                             "\"source\": \"user\", \"key\": \"age\", \"boundaries\": [18, 25]}]}");
    fn_columns *b = parse_ok("{ \"columns\" : [ { \"boundaries\": [18.0, 25.0], \"key\": \"age\","
                             "\n \"source\": \"user\", \"type\": \"bucketized\", \"name\": \"b\" } "
                             "] }");
    fn_columns *c = parse_ok("{\"columns\": [{\"name\": \"b\", \"type\": \"bucketized\", "
                             "\"source\": \"user\", \"key\": \"age\", \"boundaries\": [18, 26]}]}");
    ck_assert_uint_eq(strlen(fn_columns_sha256(a)), 64);
    ck_assert_str_eq(fn_columns_sha256(a), fn_columns_sha256(b));
    ck_assert_str_ne(fn_columns_sha256(a), fn_columns_sha256(c));
    ck_assert_str_eq(fn_columns_canonical(a), "{\"columns\":[{\"boundaries\":[18.0,25.0],"
                                              "\"key\":\"age\",\"name\":\"b\",\"source\":\"user\","
                                              "\"type\":\"bucketized\"}]}");
    fn_columns_free(a);
    fn_columns_free(b);
    fn_columns_free(c);
}
END_TEST

START_TEST(criteo_tensorflow_file_to_libffm)
{
    char *path = fn_test_data("deepctr-samples/criteo_sample.tr.tfrecords");
    if (!path) {
        fprintf(stderr, "skipped: public data sets not found\n");
        return;
    }
    char *dir = fn_test_tmpdir();
    char *spec = fn_test_path(dir, "criteo.json");
    /* 13 dense features (already scaled to [0, 1]) and 26 categorical ones. */
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
                      "\"item\", \"key\": \"C%d\", \"hash_bucket_size\": 1000}%s",
                      i, i, i < 26 ? "," : "]}");
    fn_test_write_file(spec, js.data, js.len);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s features --spec %s --input %s", fn_test_funnel_bin(), spec, path);
    fn_buf out = FN_BUF_INIT;
    ck_assert_int_eq(fn_test_run(cmd, &out), 0);
    /* 160 lines, each a 0/1 label and 39 fields in order. */
    size_t lines = 0;
    for (char *line = out.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        *next++ = '\0';
        ck_assert(line[0] == '0' || line[0] == '1');
        int fields = 0;
        for (char *p = strchr(line, ' '); p; p = strchr(p + 1, ' ')) {
            unsigned f, idx;
            ck_assert_int_eq(sscanf(p + 1, "%u:%u:", &f, &idx), 2);
            ck_assert_uint_eq(f, (unsigned)fields);
            ck_assert_uint_lt(idx, 13 + 26 * 1000);
            fields++;
        }
        ck_assert_int_eq(fields, 39);
        lines++;
    }
    ck_assert_uint_eq(lines, 160);
    fn_buf_free(&js);
    fn_buf_free(&out);
    free(spec);
    fn_test_rmtree(dir);
    free(dir);
    free(path);
}
END_TEST

Suite *columns_suite(void)
{
    Suite *s = suite_create("columns");
    TCase *t = tcase_create("spec");
    tcase_add_test(t, spec_errors_name_column_and_problem);
    tcase_add_test(t, hash_of_canonical_form);
    tcase_add_test(t, vocabulary_file_relative_to_spec);
    suite_add_tcase(s, t);
    t = tcase_create("transform");
    tcase_add_test(t, numeric_and_bucketized);
    tcase_add_test(t, categorical_hash_vocabulary_identity);
    tcase_add_test(t, crossed_and_embedding);
    tcase_add_test(t, source_mask_splits_user_and_item);
    suite_add_tcase(s, t);
    t = tcase_create("real data");
    tcase_add_test(t, criteo_tensorflow_file_to_libffm);
    suite_add_tcase(s, t);
    return s;
}
