/* test_util.h - helpers shared by the Check suites. */
#ifndef FN_TEST_UTIL_H
#define FN_TEST_UTIL_H

#include <check.h>
#include <stddef.h>

#include "common/buf.h"
#include "features/example.h"
#include "features/tfrecord.h"

/* A fresh temporary folder (removed with fn_test_rmtree). */
char *fn_test_tmpdir(void);
/* Removes a folder and everything below it. */
void fn_test_rmtree(const char *path);
/* Joins folder and name into a new string. */
char *fn_test_path(const char *dir, const char *name);
/* A path under the public data sets (../shared/data), or NULL when they are absent. */
char *fn_test_data(const char *rel);
/*
 * A file of the all-MiniLM-L6-v2 model folder ($FUNNEL_MODEL_DIR, or models/
 * in the source tree), or NULL with a SKIPPED line on stderr when absent.
 */
char *fn_test_model(const char *name);
/* Writes n bytes to path (plain, not atomic: test fixtures). */
void fn_test_write_file(const char *path, const void *data, size_t n);
/* Reads a whole file; aborts the test when it cannot. */
void fn_test_read_file(const char *path, fn_buf *out);
/* Writes ex to w as one record and frees it (fixture files of tf.Example); fails the test on error.
 */
void fn_test_write_example(fn_tfrecord_writer *w, Tensorflow__Example *ex);
/* Runs a shell command, capturing stdout into out (may be NULL); returns its exit status. */
int fn_test_run(const char *cmd, fn_buf *out);
/* The funnel CLI binary built next to the tests. */
const char *fn_test_funnel_bin(void);

/*
 * 1 when this machine should run the CUDA tests: the NVIDIA driver is loaded
 * (/proc/driver/nvidia/version or /dev/nvidiactl) or FUNNEL_TEST_REQUIRE_CUDA=1.
 * It looks without touching CUDA: a process that initialised CUDA cannot
 * use it in the children Check forks for the tests.
 */
int fn_test_cuda_expected(void);
/*
 * A CUDA test found no usable device (why: the error). Where one is expected
 * that fails the test; elsewhere it prints "SKIPPED what: why" and returns,
 * and the caller returns too.
 */
void fn_test_cuda_unavailable(const char *what, const char *why);

#endif
