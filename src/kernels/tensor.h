/*
 * tensor.h - the one tensor type of the compute layer: a dense, row-major
 * array of up to four dimensions, of one dtype, living on one device.
 *
 * The fields are public because every op checks shapes and strides on its hot
 * path; the data is owned by the backend that allocated it. ne[ndim - 1] is
 * the innermost (contiguous) dimension.
 */
#ifndef FN_TENSOR_H
#define FN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum fn_dtype {
    FN_F32 = 0,
    FN_F16,
    FN_BF16,
    FN_I8,
    FN_I32, /* token ids, masks */
} fn_dtype;

typedef enum fn_device {
    FN_DEVICE_CPU = 0,
    FN_DEVICE_CUDA,
} fn_device;

#define FN_MAX_DIMS 4

struct fn_backend;

typedef struct fn_tensor {
    fn_dtype dtype;
    fn_device device;
    int ndim;
    int64_t ne[FN_MAX_DIMS];
    void *data;
    struct fn_backend *backend; /* where data lives; NULL for host wrappers */
    int owns;                   /* 1: fn_tensor_free releases data (views own nothing) */
    /* Backend-private data derived from the contents (a weight packed for the CPU's linear
     * kernel); made on first use, dropped when the tensor is written or freed. */
    void *aux;
} fn_tensor;

size_t fn_dtype_size(fn_dtype t);
const char *fn_dtype_name(fn_dtype t);
/* Number of elements. */
int64_t fn_tensor_numel(const fn_tensor *t);
size_t fn_tensor_nbytes(const fn_tensor *t);
/* Rows when seen as a matrix: the product of every dimension but the last. */
int64_t fn_tensor_rows(const fn_tensor *t);

/*
 * A view of the first elements of t with another shape (same dtype, device
 * and backend, no more elements than t). Views own nothing; batches shorter
 * than a workspace use them.
 */
fn_tensor fn_tensor_view(const fn_tensor *t, int ndim, const int64_t *dims);
/* Wraps host memory as a CPU tensor (owning nothing). */
fn_tensor fn_tensor_host(fn_dtype dt, int ndim, const int64_t *dims, void *data);

/* float <-> bfloat16 / IEEE half, round to nearest even. */
uint16_t fn_f32_to_bf16(float f);
float fn_bf16_to_f32(uint16_t h);
uint16_t fn_f32_to_f16(float f);
float fn_f16_to_f32(uint16_t h);

#endif
