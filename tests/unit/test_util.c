/* test_util.c - temporary folders, data paths and command runs for the suites. */
#define _XOPEN_SOURCE 700
#include "test_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/file.h"

char *fn_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *p = fn_test_path(base && *base ? base : "/tmp", "funnel-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void fn_test_rmtree(const char *path)
{
    if (path) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *fn_test_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *fn_test_data(const char *rel)
{
    const char *dir = getenv("FUNNEL_DATA_DIR");
    char *p = fn_test_path(dir && *dir ? dir : FUNNEL_DATA_DIR, rel);
    if (access(p, R_OK) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

char *fn_test_model(const char *name)
{
    const char *dir = getenv("FUNNEL_MODEL_DIR");
    char *p = fn_test_path(dir && *dir ? dir : FUNNEL_SOURCE_DIR "/models/all-MiniLM-L6-v2", name);
    if (access(p, R_OK) != 0) {
        fprintf(stderr,
                "SKIPPED (model absent): %s not found; run scripts/fetch-model or set "
                "FUNNEL_MODEL_DIR\n",
                p);
        free(p);
        return NULL;
    }
    return p;
}

void fn_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

void fn_test_read_file(const char *path, fn_buf *out)
{
    fn_error err = {0};
    fn_status st = fn_file_read_all(path, (size_t)1 << 30, out, &err);
    ck_assert_msg(st == FN_OK, "%s", err.msg);
}

int fn_test_run(const char *cmd, fn_buf *out)
{
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        if (out) fn_buf_append(out, chunk, n);
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char *fn_test_funnel_bin(void)
{
    return FUNNEL_BINARY_DIR "/src/tools/funnel";
}

int fn_test_cuda_expected(void)
{
    const char *req = getenv("FUNNEL_TEST_REQUIRE_CUDA");
    if (req && strcmp(req, "1") == 0) return 1;
    return access("/proc/driver/nvidia/version", R_OK) == 0 || access("/dev/nvidiactl", F_OK) == 0;
}

void fn_test_cuda_unavailable(const char *what, const char *why)
{
    ck_assert_msg(!fn_test_cuda_expected(),
                  "%s: this machine has an NVIDIA driver (or FUNNEL_TEST_REQUIRE_CUDA=1) but CUDA "
                  "is not usable: %s",
                  what, why);
    fprintf(stderr, "SKIPPED %s: %s\n", what, why);
}

void fn_test_write_example(fn_tfrecord_writer *w, Tensorflow__Example *ex)
{
    fn_error err = {0};
    fn_buf wire = FN_BUF_INIT;
    ck_assert_msg(fn_proto_pack(&ex->base, &wire, &err) == FN_OK, "%s", err.msg);
    ck_assert_msg(fn_tfrecord_write(w, wire.data, wire.len, &err) == FN_OK, "%s", err.msg);
    fn_buf_free(&wire);
    fn_example_free(ex);
}
