/* check_common.c - tests of src/common: hashing, CRC32C, text formatting, files. */
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/arena.h"
#include "common/buf.h"
#include "common/crc32c.h"
#include "common/file.h"
#include "common/safetensors.h"
#include "common/sha256.h"
#include "common/status.h"
#include "test_util.h"

START_TEST(sha256_fips_vectors)
{
    char hex[65];
    fn_sha256_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    fn_sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    fn_sha256_hex(two, strlen(two), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* A million 'a', fed in uneven pieces. */
    fn_sha256 s;
    uint8_t d[32];
    char a[997];
    memset(a, 'a', sizeof a);
    fn_sha256_init(&s);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof a ? left : sizeof a;
        fn_sha256_update(&s, a, n);
        left -= n;
    }
    fn_sha256_final(&s, d);
    ck_assert_uint_eq(d[0], 0xcd);
    ck_assert_uint_eq(d[1], 0xc7);
    ck_assert_uint_eq(d[31], 0xd0);
}
END_TEST

START_TEST(crc32c_known_values)
{
    ck_assert_uint_eq(fn_crc32c("123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(fn_crc32c("", 0), 0);
    uint8_t zeros[32] = {0};
    ck_assert_uint_eq(fn_crc32c(zeros, 32), 0x8a9136aau); /* RFC 3720 B.4 */
    uint8_t ones[32];
    memset(ones, 0xff, sizeof ones);
    ck_assert_uint_eq(fn_crc32c(ones, 32), 0x62a8ab43u);
}
END_TEST

START_TEST(crc32c_hardware_matches_table)
{
    uint8_t buf[4096 + 16];
    srand(7);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rand();
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n < 300; n += 7) {
            uint32_t a = fn_crc32c_extend(0x1234, buf + off, n);
            uint32_t b = fn_crc32c_extend_portable(0x1234, buf + off, n);
            ck_assert_uint_eq(a, b);
        }
    /* Extending in pieces equals one pass. */
    uint32_t whole = fn_crc32c(buf, 4096);
    uint32_t parts = fn_crc32c_extend(fn_crc32c(buf, 1000), buf + 1000, 3096);
    ck_assert_uint_eq(whole, parts);
}
END_TEST

static const char *json_string_of(const char *s, size_t n)
{
    static fn_buf b;
    fn_buf_reset(&b);
    fn_buf_json_string(&b, s, n);
    return b.data;
}

START_TEST(json_string_escapes_like_python)
{
    ck_assert_str_eq(json_string_of("", 0), "\"\"");
    ck_assert_str_eq(json_string_of("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
    ck_assert_str_eq(json_string_of("\n\r\t\b\f\x01", 6), "\"\\n\\r\\t\\b\\f\\u0001\"");
    ck_assert_str_eq(json_string_of("\xc3\xa9", 2), "\"\\u00e9\"");
    ck_assert_str_eq(json_string_of("\xe4\xb8\xad", 3), "\"\\u4e2d\"");
    ck_assert_str_eq(json_string_of("\xf0\x9f\x98\x80", 4), "\"\\ud83d\\ude00\"");
    ck_assert_str_eq(json_string_of("\xff", 1), "\"\\ufffd\"");
    ck_assert_str_eq(json_string_of("a\0b", 3), "\"a\\u0000b\"");
}
END_TEST

static const char *json_float_of(float v)
{
    static fn_buf b;
    fn_buf_reset(&b);
    fn_buf_json_float(&b, v);
    return b.data;
}

START_TEST(json_float_like_python_json_format)
{
    /* Expected strings are what Python's json_format printed for these floats. */
    ck_assert_str_eq(json_float_of(0.1f), "0.1");
    ck_assert_str_eq(json_float_of(1.0f), "1.0");
    ck_assert_str_eq(json_float_of(1e-5f), "1e-05");
    ck_assert_str_eq(json_float_of(1e20f), "1e+20");
    ck_assert_str_eq(json_float_of(123456789.0f), "123456790.0");
    ck_assert_str_eq(json_float_of(3.4e38f), "3.4e+38");
    ck_assert_str_eq(json_float_of(1e16f), "1e+16");
    ck_assert_str_eq(json_float_of(1e15f), "1000000000000000.0");
    ck_assert_str_eq(json_float_of(0.0001f), "0.0001");
    ck_assert_str_eq(json_float_of(-0.0f), "-0.0");
    ck_assert_str_eq(json_float_of(2.5e-7f), "2.5e-07");
    ck_assert_str_eq(json_float_of(0.005793039f), "0.005793039");
    ck_assert_str_eq(json_float_of(-1.5f), "-1.5");
    ck_assert_str_eq(json_float_of(1e-45f), "1.4013e-45"); /* subnormal: 6 digits at least */
    ck_assert_str_eq(json_float_of(0.0f / 0.0f), "\"NaN\"");
    ck_assert_str_eq(json_float_of(1.0f / 0.0f), "\"Infinity\"");
    ck_assert_str_eq(json_float_of(-1.0f / 0.0f), "\"-Infinity\"");
}
END_TEST

START_TEST(base64_round_trip_and_errors)
{
    const char *in = "hi\xff";
    fn_buf b = FN_BUF_INIT, d = FN_BUF_INIT;
    fn_buf_base64(&b, (const uint8_t *)in, 3);
    ck_assert_str_eq(b.data, "aGn/");
    for (size_t n = 0; n < 40; n++) {
        uint8_t raw[40];
        for (size_t i = 0; i < n; i++) raw[i] = (uint8_t)(i * 37 + n);
        fn_buf_reset(&b);
        fn_buf_reset(&d);
        fn_buf_base64(&b, raw, n);
        ck_assert_int_eq(fn_base64_decode(b.data ? b.data : "", b.len, &d), FN_OK);
        ck_assert_uint_eq(d.len, n);
        ck_assert(n == 0 || memcmp(d.data, raw, n) == 0);
    }
    fn_buf_reset(&d);
    ck_assert_int_eq(fn_base64_decode("a", 1, &d), FN_ERR_INVALID);
    ck_assert_int_eq(fn_base64_decode("ab!d", 4, &d), FN_ERR_INVALID);
    fn_buf_reset(&d);
    ck_assert_int_eq(fn_base64_decode("aGn_", 4, &d), FN_OK); /* URL-safe alphabet */
    ck_assert_mem_eq(d.data, "hi\xff", 3);
    fn_buf_free(&b);
    fn_buf_free(&d);
}
END_TEST

START_TEST(utf8_validation)
{
    ck_assert(fn_utf8_valid("", 0));
    ck_assert(fn_utf8_valid("caf\xc3\xa9", 5));
    ck_assert(!fn_utf8_valid("\xc3", 1));             /* truncated */
    ck_assert(!fn_utf8_valid("\xc0\xaf", 2));         /* overlong */
    ck_assert(!fn_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!fn_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
}
END_TEST

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

START_TEST(atomic_file_appears_only_on_commit)
{
    char *dir = fn_test_tmpdir();
    char *path = fn_test_path(dir, "out.bin");
    fn_error err = {0};
    fn_atomic_file *f;
    ck_assert_int_eq(fn_atomic_file_open(path, &f, &err), FN_OK);
    ck_assert_int_eq(fn_atomic_file_write(f, "hello", 5, &err), FN_OK);
    struct stat sb;
    ck_assert_int_ne(stat(path, &sb), 0); /* not there before commit */
    ck_assert_int_eq(fn_atomic_file_commit(f, &err), FN_OK);
    fn_buf b = FN_BUF_INIT;
    fn_test_read_file(path, &b);
    ck_assert_str_eq(b.data, "hello");
    /* An aborted rewrite leaves the old file and no temporary. */
    ck_assert_int_eq(fn_atomic_file_open(path, &f, &err), FN_OK);
    ck_assert_int_eq(fn_atomic_file_write(f, "other", 5, &err), FN_OK);
    fn_atomic_file_abort(f);
    fn_buf_reset(&b);
    fn_test_read_file(path, &b);
    ck_assert_str_eq(b.data, "hello");
    ck_assert_int_eq(count_entries(dir), 1);
    fn_buf_free(&b);
    /* A missing folder is an error naming the path. */
    char *bad = fn_test_path(dir, "no/such/out.bin");
    ck_assert_int_eq(fn_file_write_atomic(bad, "x", 1, &err), FN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "no/such/out.bin"));
    free(bad);
    free(path);
    fn_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(read_all_limits_and_errors)
{
    char *dir = fn_test_tmpdir();
    char *path = fn_test_path(dir, "f");
    fn_test_write_file(path, "0123456789", 10);
    fn_buf b = FN_BUF_INIT;
    fn_error err = {0};
    ck_assert_int_eq(fn_file_read_all(path, 100, &b, &err), FN_OK);
    ck_assert_uint_eq(b.len, 10);
    fn_buf_reset(&b);
    ck_assert_int_eq(fn_file_read_all(path, 5, &b, &err), FN_ERR_INVALID);
    char *missing = fn_test_path(dir, "missing");
    ck_assert_int_eq(fn_file_read_all(missing, 5, &b, &err), FN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing"));
    char *deep = fn_test_path(dir, "a/b/c");
    ck_assert_int_eq(fn_mkdir_p(deep, &err), FN_OK);
    ck_assert_int_eq(fn_mkdir_p(deep, &err), FN_OK);
    ck_assert_int_eq(fn_mkdir_p(path, &err), FN_ERR_IO); /* a file is in the way */
    fn_buf_free(&b);
    free(deep);
    free(missing);
    free(path);
    fn_test_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(error_prefix_keeps_message)
{
    fn_error err = {0};
    ck_assert_int_eq(fn_error_set(&err, FN_ERR_CORRUPT, "bad CRC"), FN_ERR_CORRUPT);
    fn_error_prefix(&err, "reading %s", "x.tfrecord");
    ck_assert_str_eq(err.msg, "reading x.tfrecord: bad CRC");
    ck_assert_int_eq(err.code, FN_ERR_CORRUPT);
    ck_assert_int_eq(fn_error_set(NULL, FN_ERR_IO, "ignored"), FN_ERR_IO);
}
END_TEST

START_TEST(arena_alignment_reuse_and_big_blocks)
{
    fn_arena *a = fn_arena_new(1024);
    ck_assert_ptr_nonnull(a);
    char *prev = NULL;
    for (int i = 1; i < 200; i++) {
        char *p = fn_arena_alloc(a, (size_t)i);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 16, 0);
        memset(p, i, (size_t)i);
        if (prev) ck_assert_int_eq((unsigned char)prev[0], (unsigned char)(i - 1));
        prev = p;
    }
    /* strndup copies n bytes (embedded NULs too) and terminates them */
    char *dup = fn_arena_strndup(a, "ab\0cd-rest", 5);
    ck_assert_ptr_nonnull(dup);
    ck_assert(memcmp(dup, "ab\0cd", 5) == 0 && dup[5] == '\0');
    ck_assert_str_eq(fn_arena_strndup(a, "", 0), "");
    char *big = fn_arena_alloc(a, 100000); /* larger than a block */
    ck_assert_ptr_nonnull(big);
    memset(big, 1, 100000);
    ck_assert_uint_ge(fn_arena_used(a), 100000);
    fn_arena_reset(a);
    ck_assert_uint_eq(fn_arena_used(a), 0);
    /* The big block was kept: this fits without a new one. */
    char *again = fn_arena_alloc(a, 90000);
    ck_assert_ptr_eq(again, big);
    fn_arena_free(a);
}
END_TEST

/* A safetensors file of header text hdr followed by n data bytes of value 0x11. */
static char *write_st(const char *dir, const char *hdr, size_t n)
{
    char *path = fn_test_path(dir, "t.safetensors");
    size_t h = strlen(hdr);
    uint8_t *b = malloc(8 + h + n + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, hdr, h);
    memset(b + 8 + h, 0x11, n);
    fn_test_write_file(path, b, 8 + h + n);
    free(b);
    return path;
}

static void expect_st_corrupt(const char *dir, const char *hdr, size_t n, const char *fragment)
{
    char *path = write_st(dir, hdr, n);
    fn_safetensors *st = NULL;
    fn_error err = {0};
    ck_assert_int_eq(fn_safetensors_open(path, &st, &err), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, fragment), "'%s' lacks '%s'", err.msg, fragment);
    ck_assert_msg(strstr(err.msg, "t.safetensors"), "'%s' names no file", err.msg);
    ck_assert_ptr_null(st);
    free(path);
}

START_TEST(safetensors_round_trip_and_damaged_headers)
{
    char *dir = fn_test_tmpdir();
    char *path = fn_test_path(dir, "w.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    fn_error err = {0};
    fn_safetensors_writer *w = fn_safetensors_writer_new();
    ck_assert_int_eq(fn_safetensors_writer_add(w, "a", FN_ST_F32, 2, shape, a, &err), FN_OK);
    ck_assert_int_eq(fn_safetensors_writer_meta(w, "k", "v", &err), FN_OK);
    ck_assert_int_eq(fn_safetensors_writer_write(w, path, &err), FN_OK);
    fn_safetensors_writer_free(w);
    fn_safetensors *st = NULL;
    ck_assert_int_eq(fn_safetensors_open(path, &st, &err), FN_OK);
    const fn_st_tensor *t = NULL;
    ck_assert_int_eq(fn_safetensors_expect(st, "a", FN_ST_F32, 2, shape, &t, &err), FN_OK);
    ck_assert_int_eq(memcmp(t->data, a, sizeof a), 0);
    ck_assert_str_eq(fn_safetensors_metadata(st, "k"), "v");
    int64_t other[2] = {3, 2};
    ck_assert_int_eq(fn_safetensors_expect(st, "a", FN_ST_F32, 2, other, &t, &err), FN_ERR_CORRUPT);
    ck_assert_int_eq(fn_safetensors_expect(st, "b", FN_ST_F32, 2, shape, &t, &err),
                     FN_ERR_NOT_FOUND);
    fn_safetensors_close(st);

    expect_st_corrupt(dir, "{\"a\":", 0, "header is not a JSON object");
    expect_st_corrupt(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8,
                      "outside the 8 data bytes");
    expect_st_corrupt(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                      "8 bytes for 3 elements");
    expect_st_corrupt(dir, "{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                      "unknown dtype 'F31'");
    expect_st_corrupt(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                      "shape[0] is not a size");
    /* 2^62 F32 elements are 2^64 bytes: the count must not wrap to the 0 bytes given */
    expect_st_corrupt(dir,
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                      "\"data_offsets\":[0,0]}}",
                      0, "shape overflows");
    expect_st_corrupt(dir,
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,0]}}",
                      0, "shape overflows");
    /* a header length beyond the file */
    char *p2 = fn_test_path(dir, "t.safetensors");
    fn_test_write_file(p2, "\xff\xff\xff\xff\x00\x00\x00\x00{}", 10);
    ck_assert_int_eq(fn_safetensors_open(p2, &st, &err), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "exceeds the file"), "%s", err.msg);
    free(p2);
    fn_test_rmtree(dir);
    free(path), free(dir);
}
END_TEST

Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *t = tcase_create("hashing");
    tcase_add_test(t, sha256_fips_vectors);
    tcase_add_test(t, crc32c_known_values);
    tcase_add_test(t, crc32c_hardware_matches_table);
    suite_add_tcase(s, t);
    t = tcase_create("text");
    tcase_add_test(t, json_string_escapes_like_python);
    tcase_add_test(t, json_float_like_python_json_format);
    tcase_add_test(t, base64_round_trip_and_errors);
    tcase_add_test(t, utf8_validation);
    suite_add_tcase(s, t);
    t = tcase_create("files");
    tcase_add_test(t, atomic_file_appears_only_on_commit);
    tcase_add_test(t, read_all_limits_and_errors);
    tcase_add_test(t, error_prefix_keeps_message);
    tcase_add_test(t, arena_alignment_reuse_and_big_blocks);
    tcase_add_test(t, safetensors_round_trip_and_damaged_headers);
    suite_add_tcase(s, t);
    return s;
}
