/* check_tfrecord.c - TFRecord framing: round trips, TensorFlow's files, damage. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "features/example.h"
#include "features/tfrecord.h"
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

/* Record i of a test file: i*1000 bytes (so some exceed the 1 MiB read chunk). */
static size_t record_len(size_t i)
{
    return i == 7 ? (size_t)3 << 20 : i * 1000;
}

static void fill_record(uint8_t *p, size_t n, size_t i)
{
    for (size_t k = 0; k < n; k++) p[k] = (uint8_t)(k * 31 + i);
}

static char *write_test_file(const char *name, fn_tfrecord_compression c, size_t nrec)
{
    char *path = fn_test_path(tmp, name);
    fn_error err = {0};
    fn_tfrecord_writer *w;
    ck_assert_int_eq(fn_tfrecord_writer_open(path, c, &w, &err), FN_OK);
    for (size_t i = 0; i < nrec; i++) {
        size_t n = record_len(i);
        uint8_t *p = malloc(n ? n : 1);
        fill_record(p, n, i);
        ck_assert_int_eq(fn_tfrecord_write(w, p, n, &err), FN_OK);
        free(p);
    }
    ck_assert_msg(fn_tfrecord_writer_close(w, &err) == FN_OK, "%s", err.msg);
    return path;
}

static void check_reads_back(const char *path, const fn_tfrecord_read_options *o, size_t nrec)
{
    fn_error err = {0};
    fn_tfrecord_reader *r;
    ck_assert_msg(fn_tfrecord_reader_open(path, o, &r, &err) == FN_OK, "%s", err.msg);
    for (size_t i = 0; i < nrec; i++) {
        const uint8_t *d;
        size_t n;
        ck_assert_msg(fn_tfrecord_read(r, &d, &n, &err) == FN_OK, "%s", err.msg);
        ck_assert_uint_eq(n, record_len(i));
        uint8_t *want = malloc(n ? n : 1);
        fill_record(want, n, i);
        ck_assert(n == 0 || memcmp(d, want, n) == 0);
        free(want);
    }
    const uint8_t *d;
    size_t n;
    ck_assert_int_eq(fn_tfrecord_read(r, &d, &n, &err), FN_END);
    ck_assert_uint_eq(fn_tfrecord_reader_stats(r)->records, nrec);
    fn_tfrecord_reader_close(r);
}

START_TEST(round_trip_plain_gzip_zlib)
{
    char *plain = write_test_file("a.tfrecord", FN_TFRECORD_PLAIN, 10);
    char *gz = write_test_file("a.tfrecord.gz", FN_TFRECORD_GZIP, 10);
    char *zl = write_test_file("a.tfrecord.z", FN_TFRECORD_ZLIB, 10);
    check_reads_back(plain, NULL, 10);
    check_reads_back(gz, NULL, 10); /* detected by its magic */
    fn_tfrecord_read_options o = {.compression = FN_TFRECORD_ZLIB};
    check_reads_back(zl, &o, 10);
    struct stat a, b;
    stat(plain, &a);
    stat(gz, &b);
    ck_assert_int_lt(b.st_size, a.st_size / 4); /* the patterned data compresses */
    free(plain);
    free(gz);
    free(zl);
}
END_TEST

START_TEST(empty_file_and_empty_record)
{
    char *path = write_test_file("empty.tfrecord", FN_TFRECORD_PLAIN, 0);
    check_reads_back(path, NULL, 0);
    free(path);
    path = write_test_file("one.tfrecord", FN_TFRECORD_PLAIN, 1); /* record 0 is empty */
    check_reads_back(path, NULL, 1);
    struct stat sb;
    stat(path, &sb);
    ck_assert_int_eq(sb.st_size, 16);
    free(path);
}
END_TEST

START_TEST(memory_reader)
{
    char *path = write_test_file("m.tfrecord", FN_TFRECORD_GZIP, 6);
    fn_buf b = FN_BUF_INIT;
    fn_test_read_file(path, &b);
    fn_error err = {0};
    fn_tfrecord_reader *r;
    ck_assert_int_eq(fn_tfrecord_reader_open_memory(b.data, b.len, "mem", NULL, &r, &err), FN_OK);
    size_t count = 0;
    const uint8_t *d;
    size_t n;
    while (fn_tfrecord_read(r, &d, &n, &err) == FN_OK) {
        ck_assert_uint_eq(n, record_len(count));
        count++;
    }
    ck_assert_uint_eq(count, 6);
    fn_tfrecord_reader_close(r);
    fn_buf_free(&b);
    free(path);
}
END_TEST

START_TEST(reads_tensorflow_written_file)
{
    char *path = fn_test_data("deepctr-samples/criteo_sample.tr.tfrecords");
    if (!path) {
        fprintf(stderr, "skipped: public data sets not found\n");
        return;
    }
    fn_error err = {0};
    fn_tfrecord_reader *r;
    ck_assert_int_eq(fn_tfrecord_reader_open(path, NULL, &r, &err), FN_OK);
    const uint8_t *d;
    size_t n, count = 0;
    fn_status st;
    while ((st = fn_tfrecord_read(r, &d, &n, &err)) == FN_OK) {
        Tensorflow__Example *ex;
        ck_assert_int_eq(fn_example_decode(d, n, &ex, &err), FN_OK);
        const Tensorflow__Feature *label = fn_features_get(fn_example_features(ex), "label");
        ck_assert_int_eq(fn_feature_kind_of(label), FN_FEATURE_FLOAT);
        float y = label->float_list->value[0];
        ck_assert(y == 0.0f || y == 1.0f);
        ck_assert_int_eq(fn_feature_kind_of(fn_features_get(ex->features, "C1")), FN_FEATURE_INT64);
        ck_assert_int_eq(fn_feature_kind_of(fn_features_get(ex->features, "I1")), FN_FEATURE_FLOAT);
        fn_example_free(ex);
        count++;
    }
    ck_assert_int_eq(st, FN_END);
    ck_assert_uint_eq(count, 160); /* the sample's documented record count */
    fn_tfrecord_reader_close(r);
    free(path);
}
END_TEST

/* Reads until the first error; returns its status and leaves its message in err. */
static fn_status read_all(const char *path, const fn_tfrecord_read_options *o, fn_error *err,
                          size_t *count)
{
    fn_tfrecord_reader *r;
    fn_status st = fn_tfrecord_reader_open(path, o, &r, err);
    if (st != FN_OK) return st;
    const uint8_t *d;
    size_t n;
    *count = 0;
    while ((st = fn_tfrecord_read(r, &d, &n, err)) == FN_OK) (*count)++;
    if (st != FN_END) {
        /* The error sticks. */
        fn_error again = {0};
        ck_assert_int_eq(fn_tfrecord_read(r, &d, &n, &again), st);
        ck_assert_str_eq(again.msg, err->msg);
    }
    fn_tfrecord_reader_close(r);
    return st;
}

static void flip_byte(const char *path, size_t offset)
{
    fn_buf b = FN_BUF_INIT;
    fn_test_read_file(path, &b);
    ck_assert_uint_lt(offset, b.len);
    b.data[offset] ^= 0x40;
    fn_test_write_file(path, b.data, b.len);
    fn_buf_free(&b);
}

static void truncate_to(const char *path, size_t len)
{
    ck_assert_int_eq(truncate(path, (off_t)len), 0);
}

/* Byte offset where record i starts in a plain test file. */
static size_t record_offset(size_t i)
{
    size_t off = 0;
    for (size_t k = 0; k < i; k++) off += 16 + record_len(k);
    return off;
}

START_TEST(bad_data_crc_names_record_and_offset)
{
    char *path = write_test_file("d.tfrecord", FN_TFRECORD_PLAIN, 6);
    flip_byte(path, record_offset(3) + 12 + 5);
    fn_error err = {0};
    size_t count;
    ck_assert_int_eq(read_all(path, NULL, &err, &count), FN_ERR_CORRUPT);
    ck_assert_uint_eq(count, 3);
    char want[128];
    snprintf(want, sizeof want, "record 3 at byte offset %zu: data CRC mismatch", record_offset(3));
    ck_assert_msg(strstr(err.msg, want) && strstr(err.msg, "d.tfrecord"), "%s", err.msg);
    /* Skipping counts the damaged record and returns the others. */
    fn_tfrecord_read_options o = {.skip_corrupt = 1};
    fn_tfrecord_reader *r;
    ck_assert_int_eq(fn_tfrecord_reader_open(path, &o, &r, &err), FN_OK);
    const uint8_t *d;
    size_t n;
    count = 0;
    while (fn_tfrecord_read(r, &d, &n, &err) == FN_OK) count++;
    ck_assert_uint_eq(count, 5);
    ck_assert_uint_eq(fn_tfrecord_reader_stats(r)->skipped_records, 1);
    fn_tfrecord_reader_close(r);
    free(path);
}
END_TEST

START_TEST(bad_length_crc_and_resync)
{
    char *path = write_test_file("l.tfrecord", FN_TFRECORD_PLAIN, 6);
    flip_byte(path, record_offset(2) + 1);
    fn_error err = {0};
    size_t count;
    ck_assert_int_eq(read_all(path, NULL, &err, &count), FN_ERR_CORRUPT);
    ck_assert_uint_eq(count, 2);
    ck_assert_msg(strstr(err.msg, "length CRC mismatch"), "%s", err.msg);
    fn_tfrecord_read_options o = {.skip_corrupt = 1};
    fn_tfrecord_reader *r;
    ck_assert_int_eq(fn_tfrecord_reader_open(path, &o, &r, &err), FN_OK);
    const uint8_t *d;
    size_t n;
    size_t seen[8], k = 0;
    while (fn_tfrecord_read(r, &d, &n, &err) == FN_OK && k < 8) seen[k++] = n;
    /* Records 0, 1, then resync lands on record 3 and reads on. */
    ck_assert_uint_eq(k, 5);
    ck_assert_uint_eq(seen[2], record_len(3));
    ck_assert_uint_eq(fn_tfrecord_reader_stats(r)->skipped_records, 1);
    ck_assert_uint_eq(fn_tfrecord_reader_stats(r)->skipped_bytes, 16 + record_len(2));
    fn_tfrecord_reader_close(r);
    free(path);
}
END_TEST

START_TEST(truncated_record)
{
    char *path = write_test_file("t.tfrecord", FN_TFRECORD_PLAIN, 5);
    truncate_to(path, record_offset(4) + 12 + 100);
    fn_error err = {0};
    size_t count;
    ck_assert_int_eq(read_all(path, NULL, &err, &count), FN_ERR_CORRUPT);
    ck_assert_uint_eq(count, 4);
    ck_assert_msg(strstr(err.msg, "record 4") && strstr(err.msg, "truncated"), "%s", err.msg);
    truncate_to(path, record_offset(4) + 5); /* inside the header */
    ck_assert_int_eq(read_all(path, NULL, &err, &count), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "truncated header"), "%s", err.msg);
    fn_tfrecord_read_options o = {.skip_corrupt = 1};
    ck_assert_int_eq(read_all(path, &o, &err, &count), FN_END);
    ck_assert_uint_eq(count, 4);
    free(path);
}
END_TEST

START_TEST(truncated_and_corrupt_gzip)
{
    char *path = write_test_file("g.tfrecord.gz", FN_TFRECORD_GZIP, 8);
    struct stat sb;
    stat(path, &sb);
    fn_error err = {0};
    size_t count;
    truncate_to(path, (size_t)sb.st_size / 2);
    ck_assert_int_eq(read_all(path, NULL, &err, &count), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "truncated gzip stream at compressed byte offset"), "%s",
                  err.msg);
    free(path);

    path = write_test_file("h.tfrecord.gz", FN_TFRECORD_GZIP, 8);
    stat(path, &sb);
    flip_byte(path, (size_t)sb.st_size / 3);
    ck_assert_int_eq(read_all(path, NULL, &err, &count), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "h.tfrecord.gz"), "%s", err.msg);
    free(path);

    /* Not gzip at all, but said to be. */
    path = write_test_file("p.tfrecord", FN_TFRECORD_PLAIN, 3);
    fn_tfrecord_read_options o = {.compression = FN_TFRECORD_GZIP};
    ck_assert_int_eq(read_all(path, &o, &err, &count), FN_ERR_CORRUPT);
    ck_assert_msg(strstr(err.msg, "corrupt gzip stream"), "%s", err.msg);
    free(path);
}
END_TEST

START_TEST(concatenated_gzip_members)
{
    char *a = write_test_file("a.gz", FN_TFRECORD_GZIP, 3);
    char *b = write_test_file("b.gz", FN_TFRECORD_GZIP, 3);
    fn_buf x = FN_BUF_INIT;
    fn_test_read_file(a, &x);
    fn_test_read_file(b, &x);
    char *c = fn_test_path(tmp, "c.gz");
    fn_test_write_file(c, x.data, x.len);
    fn_error err = {0};
    size_t count;
    ck_assert_int_eq(read_all(c, NULL, &err, &count), FN_END);
    ck_assert_uint_eq(count, 6);
    fn_buf_free(&x);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(length_limit)
{
    char *path = write_test_file("big.tfrecord", FN_TFRECORD_PLAIN, 8);
    fn_tfrecord_read_options o = {.max_record_bytes = 1 << 20};
    fn_error err = {0};
    size_t count;
    ck_assert_int_eq(read_all(path, &o, &err, &count), FN_ERR_CORRUPT);
    ck_assert_uint_eq(count, 7);
    ck_assert_msg(strstr(err.msg, "exceeds the limit"), "%s", err.msg);
    free(path);
}
END_TEST

START_TEST(writer_abort_and_replace)
{
    char *path = write_test_file("w.tfrecord", FN_TFRECORD_PLAIN, 3);
    fn_error err = {0};
    fn_tfrecord_writer *w;
    ck_assert_int_eq(fn_tfrecord_writer_open(path, FN_TFRECORD_PLAIN, &w, &err), FN_OK);
    ck_assert_int_eq(fn_tfrecord_write(w, "x", 1, &err), FN_OK);
    fn_tfrecord_writer_abort(w);
    check_reads_back(path, NULL, 3); /* the old file is untouched */
    ck_assert_int_eq(fn_tfrecord_reader_open("/nonexistent/x.tfrecord", NULL, NULL, &err),
                     FN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/x.tfrecord"));
    free(path);
}
END_TEST

Suite *tfrecord_suite(void)
{
    Suite *s = suite_create("tfrecord");
    TCase *t = tcase_create("round trips");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, empty_file_and_empty_record);
    tcase_add_test(t, round_trip_plain_gzip_zlib);
    tcase_add_test(t, memory_reader);
    tcase_add_test(t, concatenated_gzip_members);
    tcase_add_test(t, writer_abort_and_replace);
    suite_add_tcase(s, t);
    t = tcase_create("tensorflow files");
    tcase_add_test(t, reads_tensorflow_written_file);
    suite_add_tcase(s, t);
    t = tcase_create("damage");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, bad_data_crc_names_record_and_offset);
    tcase_add_test(t, bad_length_crc_and_resync);
    tcase_add_test(t, truncated_record);
    tcase_add_test(t, truncated_and_corrupt_gzip);
    tcase_add_test(t, length_limit);
    suite_add_tcase(s, t);
    return s;
}
