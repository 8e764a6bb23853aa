/*
 * vecs.c - .fvecs and .ivecs, the vector files of ANN benchmarks (SIFT,
 * GloVe, ...): per row a little-endian int32 count, then that many float32
 * or int32 values. `funnel encode --fvecs` writes them; `funnel index`
 * reads base and query vectors and ground truth, and writes result ids.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "recall.h"

#define VECS_MAX_DIM (1 << 20)

/* Reads rows of 4-byte values (float32 or int32: only their size matters here). */
static fn_status read_vecs(const char *path, size_t *n_out, size_t *dim_out, void **out,
                           fn_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return fn_error_set(err, errno == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO, "%s: %s", path,
                            strerror(errno));
    fn_status st = FN_OK;
    char *data = NULL;
    struct stat sb;
    int32_t d;
    if (fstat(fileno(fp), &sb) != 0) {
        st = fn_error_set(err, FN_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (fread(&d, sizeof d, 1, fp) != 1) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: empty file, no vectors", path);
        goto done;
    }
    if (d <= 0 || d > VECS_MAX_DIM) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: row 0 has dimension %d", path, (int)d);
        goto done;
    }
    size_t dim = (size_t)d, row = 4 + 4 * dim, size = (size_t)sb.st_size;
    if (size % row != 0) {
        st = fn_error_set(err, FN_ERR_CORRUPT,
                          "%s: %zu bytes are not whole rows of dimension %zu (truncated?)", path,
                          size, dim);
        goto done;
    }
    size_t n = size / row;
    if (!(data = malloc(n * dim * 4))) {
        st = fn_error_set(err, FN_ERR_NOMEM, "%s: out of memory for %zu vectors", path, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && fread(&d, sizeof d, 1, fp) != 1) {
            st = fn_error_set(err, FN_ERR_IO, "%s: reading row %zu failed", path, i);
            goto done;
        }
        if ((size_t)d != dim) {
            st = fn_error_set(err, FN_ERR_CORRUPT, "%s: row %zu has dimension %d, row 0 has %zu",
                              path, i, (int)d, dim);
            goto done;
        }
        if (fread(data + i * dim * 4, 4, dim, fp) != dim) {
            st = fn_error_set(err, FN_ERR_IO, "%s: reading row %zu failed", path, i);
            goto done;
        }
    }
    *n_out = n;
    *dim_out = dim;
    *out = data;
    data = NULL;
done:
    fclose(fp);
    free(data);
    return st;
}

fn_status fn_vecs_read_fvecs(const char *path, size_t *n, size_t *dim, float **vecs, fn_error *err)
{
    void *v = NULL;
    fn_status st = read_vecs(path, n, dim, &v, err);
    *vecs = v;
    return st;
}

fn_status fn_vecs_read_ivecs(const char *path, size_t *n, size_t *dim, int32_t **vecs,
                             fn_error *err)
{
    void *v = NULL;
    fn_status st = read_vecs(path, n, dim, &v, err);
    *vecs = v;
    return st;
}

static fn_status write_vecs(const char *path, size_t n, size_t dim, const void *vecs, fn_error *err)
{
    if (dim == 0 || dim > VECS_MAX_DIM)
        return fn_error_set(err, FN_ERR_INVALID, "%s: dimension %zu is not in 1..%d", path, dim,
                            VECS_MAX_DIM);
    fn_atomic_file *f;
    fn_status st = fn_atomic_file_open(path, &f, err);
    if (st != FN_OK) return st;
    int32_t d = (int32_t)dim;
    for (size_t i = 0; i < n && st == FN_OK; i++) {
        st = fn_atomic_file_write(f, &d, sizeof d, err);
        if (st == FN_OK)
            st = fn_atomic_file_write(f, (const char *)vecs + i * dim * 4, dim * 4, err);
    }
    if (st != FN_OK) {
        fn_atomic_file_abort(f);
        return st;
    }
    return fn_atomic_file_commit(f, err);
}

fn_status fn_vecs_write_ivecs(const char *path, size_t n, size_t dim, const int32_t *vecs,
                              fn_error *err)
{
    return write_vecs(path, n, dim, vecs, err);
}

fn_status fn_vecs_write_fvecs(const char *path, size_t n, size_t dim, const float *vecs,
                              fn_error *err)
{
    return write_vecs(path, n, dim, vecs, err);
}
