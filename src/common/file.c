/* file.c - whole-file reads and atomic (temp + fsync + rename) writes. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fn_atomic_file {
    char *path;
    char *tmp;
    int fd;
};

fn_status fn_file_read_all(const char *path, size_t max_bytes, fn_buf *out, fn_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fn_status st = errno == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO;
        return fn_error_set(err, st, "cannot open %s: %s", path, strerror(errno));
    }
    size_t start = out->len;
    for (;;) {
        if (fn_buf_reserve(out, 65536) != FN_OK) {
            close(fd);
            return fn_error_set(err, FN_ERR_NOMEM, "reading %s: out of memory", path);
        }
        ssize_t n = read(fd, out->data + out->len, 65536);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return fn_error_set(err, FN_ERR_IO, "reading %s: %s", path, strerror(e));
        }
        if (n == 0) break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len - start > max_bytes) {
            close(fd);
            return fn_error_set(err, FN_ERR_INVALID, "%s is larger than %zu bytes", path,
                                max_bytes);
        }
    }
    close(fd);
    return FN_OK;
}

fn_status fn_write_all(int fd, const void *data, size_t n, const char *what, fn_error *err)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return fn_error_set(err, FN_ERR_IO, "writing %s: %s", what, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return FN_OK;
}

fn_status fn_atomic_file_open(const char *path, fn_atomic_file **out, fn_error *err)
{
    fn_atomic_file *f = calloc(1, sizeof *f);
    if (!f) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    size_t n = strlen(path);
    f->path = strdup(path);
    f->tmp = malloc(n + 16);
    if (!f->path || !f->tmp) {
        free(f->path);
        free(f->tmp);
        free(f);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    snprintf(f->tmp, n + 16, "%s.tmp.XXXXXX", path);
    f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        fn_status st = fn_error_set(err, FN_ERR_IO, "cannot create a temporary file for %s: %s",
                                    path, strerror(errno));
        free(f->path);
        free(f->tmp);
        free(f);
        return st;
    }
    /* mkostemp creates 0600; written files get the usual umask-governed mode. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(f->fd, 0666 & ~mask);
    *out = f;
    return FN_OK;
}

int fn_atomic_file_fd(const fn_atomic_file *f)
{
    return f->fd;
}

fn_status fn_atomic_file_write(fn_atomic_file *f, const void *data, size_t n, fn_error *err)
{
    return fn_write_all(f->fd, data, n, f->path, err);
}

static void atomic_free(fn_atomic_file *f)
{
    free(f->path);
    free(f->tmp);
    free(f);
}

static void fsync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
}

fn_status fn_atomic_file_commit(fn_atomic_file *f, fn_error *err)
{
    fn_status st = FN_OK;
    if (fsync(f->fd) != 0) {
        st = fn_error_set(err, FN_ERR_IO, "fsync %s: %s", f->path, strerror(errno));
    }
    if (close(f->fd) != 0 && st == FN_OK) {
        st = fn_error_set(err, FN_ERR_IO, "close %s: %s", f->path, strerror(errno));
    }
    f->fd = -1;
    if (st == FN_OK && rename(f->tmp, f->path) != 0) {
        st = fn_error_set(err, FN_ERR_IO, "rename %s to %s: %s", f->tmp, f->path, strerror(errno));
    }
    if (st != FN_OK) {
        unlink(f->tmp);
    } else {
        fsync_parent(f->path);
    }
    atomic_free(f);
    return st;
}

void fn_atomic_file_abort(fn_atomic_file *f)
{
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    unlink(f->tmp);
    atomic_free(f);
}

fn_status fn_file_write_atomic(const char *path, const void *data, size_t n, fn_error *err)
{
    fn_atomic_file *f;
    fn_status st = fn_atomic_file_open(path, &f, err);
    if (st != FN_OK) return st;
    st = fn_atomic_file_write(f, data, n, err);
    if (st != FN_OK) {
        fn_atomic_file_abort(f);
        return st;
    }
    return fn_atomic_file_commit(f, err);
}

fn_status fn_mkdir_p(const char *path, fn_error *err)
{
    char *p = strdup(path);
    if (!p) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                fn_status st =
                    fn_error_set(err, FN_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
                free(p);
                return st;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return fn_error_set(err, FN_ERR_IO, "%s exists and is not a folder", path);
    return FN_OK;
}
