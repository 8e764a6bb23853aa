/*
 * safetensors.h - the safetensors file format: an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and byte range (and
 * a string map __metadata__), then the raw little-endian data.
 *
 * funnel reads Hugging Face models (the encoder) and writes its own models
 * (FM, FFM, DeepFM, the reranker) in it, so PyTorch can produce the first and
 * inspect the second. Reading maps the file and checks every range; a
 * truncated or inconsistent file is FN_ERR_CORRUPT naming the file and the
 * tensor. Writing goes through a temporary file, fsync and rename.
 */
#ifndef FN_SAFETENSORS_H
#define FN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum fn_st_dtype {
    FN_ST_F32 = 0,
    FN_ST_F16,
    FN_ST_BF16,
    FN_ST_F64,
    FN_ST_I64,
    FN_ST_I32,
    FN_ST_I16,
    FN_ST_I8,
    FN_ST_U8,
    FN_ST_BOOL,
} fn_st_dtype;

#define FN_ST_MAX_DIMS 8

typedef struct fn_st_tensor {
    const char *name;
    fn_st_dtype dtype;
    int ndim;
    int64_t shape[FN_ST_MAX_DIMS];
    const void *data; /* in the mapped file; valid until fn_safetensors_close */
    size_t nbytes;
} fn_st_tensor;

typedef struct fn_safetensors fn_safetensors;

fn_status fn_safetensors_open(const char *path, fn_safetensors **out, fn_error *err);
void fn_safetensors_close(fn_safetensors *st);
size_t fn_safetensors_count(const fn_safetensors *st);
const fn_st_tensor *fn_safetensors_at(const fn_safetensors *st, size_t i);
/* The tensor called name, or NULL. */
const fn_st_tensor *fn_safetensors_find(const fn_safetensors *st, const char *name);
/* A __metadata__ value, or NULL. */
const char *fn_safetensors_metadata(const fn_safetensors *st, const char *key);
const char *fn_safetensors_path(const fn_safetensors *st);

/*
 * The tensor called name, checked to have dtype and the given shape (ndim
 * dims); FN_ERR_NOT_FOUND or FN_ERR_CORRUPT naming the file and tensor otherwise.
 */
fn_status fn_safetensors_expect(const fn_safetensors *st, const char *name, fn_st_dtype dtype,
                                int ndim, const int64_t *shape, const fn_st_tensor **out,
                                fn_error *err);

const char *fn_st_dtype_name(fn_st_dtype t);
size_t fn_st_dtype_size(fn_st_dtype t);

/* ---- writing ---- */

typedef struct fn_safetensors_writer fn_safetensors_writer;

fn_safetensors_writer *fn_safetensors_writer_new(void);
/* Adds a tensor; data is not copied and must stay valid until write. Names must be unique. */
fn_status fn_safetensors_writer_add(fn_safetensors_writer *w, const char *name, fn_st_dtype dtype,
                                    int ndim, const int64_t *shape, const void *data,
                                    fn_error *err);
fn_status fn_safetensors_writer_meta(fn_safetensors_writer *w, const char *key, const char *value,
                                     fn_error *err);
/* Writes the file atomically (tensors in the order added, 8-byte aligned). */
fn_status fn_safetensors_writer_write(fn_safetensors_writer *w, const char *path, fn_error *err);
void fn_safetensors_writer_free(fn_safetensors_writer *w);

#endif
