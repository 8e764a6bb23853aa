/* safetensors.c - mapped reading with range checks, and atomic writing. */
#include "safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "file.h"

#define MAX_HEADER (100u << 20)

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [FN_ST_F32] = {"F32", 4},   [FN_ST_F16] = {"F16", 2}, [FN_ST_BF16] = {"BF16", 2},
    [FN_ST_F64] = {"F64", 8},   [FN_ST_I64] = {"I64", 8}, [FN_ST_I32] = {"I32", 4},
    [FN_ST_I16] = {"I16", 2},   [FN_ST_I8] = {"I8", 1},   [FN_ST_U8] = {"U8", 1},
    [FN_ST_BOOL] = {"BOOL", 1},
};

const char *fn_st_dtype_name(fn_st_dtype t)
{
    return (unsigned)t <= FN_ST_BOOL ? dtypes[t].name : "?";
}

size_t fn_st_dtype_size(fn_st_dtype t)
{
    return (unsigned)t <= FN_ST_BOOL ? dtypes[t].size : 0;
}

struct fn_safetensors {
    char *path;
    void *map;
    size_t map_len;
    fn_st_tensor *tensors;
    size_t n;
    char **meta_keys, **meta_values;
    size_t n_meta;
};

static fn_status corrupt(fn_error *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fn_status corrupt(fn_error *err, const char *path, const char *fmt, ...)
{
    char what[FN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return fn_error_set(err, FN_ERR_CORRUPT, "%s: %s", path, what);
}

void fn_safetensors_close(fn_safetensors *st)
{
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    free(st);
}

static fn_status parse_metadata(fn_safetensors *st, json_t *meta, fn_error *err)
{
    if (!json_is_object(meta)) return corrupt(err, st->path, "__metadata__ is not an object");
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v)
    {
        if (!json_is_string(v))
            return corrupt(err, st->path, "__metadata__ value of '%s' is not a string", k);
        st->meta_keys[st->n_meta] = strdup(k);
        st->meta_values[st->n_meta] = strdup(json_string_value(v));
        if (!st->meta_keys[st->n_meta] || !st->meta_values[st->n_meta++])
            return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    return FN_OK;
}

static fn_status parse_tensor(fn_safetensors *st, const char *name, json_t *desc,
                              const uint8_t *data, size_t data_len, fn_st_tensor *t, fn_error *err)
{
    if (!json_is_object(desc)) return corrupt(err, st->path, "tensor '%s': not an object", name);
    json_t *dt = json_object_get(desc, "dtype"), *shape = json_object_get(desc, "shape"),
           *off = json_object_get(desc, "data_offsets");
    if (!json_is_string(dt)) return corrupt(err, st->path, "tensor '%s': no dtype", name);
    int found = 0;
    for (int i = 0; i <= FN_ST_BOOL; i++)
        if (strcmp(json_string_value(dt), dtypes[i].name) == 0) {
            t->dtype = (fn_st_dtype)i;
            found = 1;
        }
    if (!found)
        return corrupt(err, st->path, "tensor '%s': unknown dtype '%s'", name,
                       json_string_value(dt));
    if (!json_is_array(shape) || json_array_size(shape) > FN_ST_MAX_DIMS)
        return corrupt(err, st->path, "tensor '%s': shape must be an array of at most %d sizes",
                       name, FN_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return corrupt(err, st->path, "tensor '%s': shape[%d] is not a size", name, i);
        t->shape[i] = json_integer_value(d);
        if (t->shape[i] && numel > UINT64_MAX / (uint64_t)t->shape[i])
            return corrupt(err, st->path, "tensor '%s': shape overflows", name);
        numel *= (uint64_t)t->shape[i];
    }
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
        return corrupt(err, st->path, "tensor '%s': data_offsets must be [begin, end]", name);
    json_int_t b = json_integer_value(json_array_get(off, 0));
    json_int_t e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b || (uint64_t)e > data_len)
        return corrupt(err, st->path,
                       "tensor '%s': data_offsets [%lld, %lld] fall outside the %zu data bytes "
                       "(truncated file?)",
                       name, (long long)b, (long long)e, data_len);
    /* the byte count too: 2^62 F32 elements are 2^64 bytes, which would wrap to 0 */
    if (numel > UINT64_MAX / dtypes[t->dtype].size)
        return corrupt(err, st->path, "tensor '%s': shape overflows", name);
    uint64_t want = numel * dtypes[t->dtype].size;
    if ((uint64_t)(e - b) != want)
        return corrupt(err, st->path, "tensor '%s': %lld bytes for %llu elements of %s", name,
                       (long long)(e - b), (unsigned long long)numel, dtypes[t->dtype].name);
    t->data = data + b;
    t->nbytes = (size_t)want;
    t->name = strdup(name);
    return t->name ? FN_OK : fn_error_set(err, FN_ERR_NOMEM, "out of memory");
}

fn_status fn_safetensors_open(const char *path, fn_safetensors **out, fn_error *err)
{
    fn_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    fn_status status = FN_OK;
    json_t *root = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        status = fn_error_set(err, errno == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO,
                              "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        status = fn_error_set(err, FN_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (sb.st_size < 8) {
        close(fd);
        status = corrupt(err, path, "%lld bytes: too short for a safetensors file",
                         (long long)sb.st_size);
        goto fail;
    }
    st->map_len = (size_t)sb.st_size;
    st->map = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        status = fn_error_set(err, FN_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    const uint8_t *p = st->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > MAX_HEADER || hlen > st->map_len - 8) {
        status = corrupt(err, path, "header length %llu exceeds the file (%zu bytes)",
                         (unsigned long long)hlen, st->map_len);
        goto fail;
    }
    json_error_t jerr;
    root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        status = corrupt(err, path, "header is not a JSON object: %s", root ? "" : jerr.text);
        goto fail;
    }
    const uint8_t *data = p + 8 + hlen;
    size_t data_len = st->map_len - 8 - (size_t)hlen;
    st->tensors = calloc(json_object_size(root) + 1, sizeof *st->tensors);
    if (!st->tensors) {
        status = fn_error_set(err, FN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "__metadata__") == 0) {
            status = parse_metadata(st, v, err);
        } else {
            status = parse_tensor(st, k, v, data, data_len, &st->tensors[st->n], err);
            if (status == FN_OK) st->n++;
        }
        if (status != FN_OK) goto fail;
    }
    json_decref(root);
    madvise(st->map, st->map_len, MADV_WILLNEED);
    *out = st;
    return FN_OK;
fail:
    json_decref(root);
    fn_safetensors_close(st);
    return status;
}

size_t fn_safetensors_count(const fn_safetensors *st)
{
    return st->n;
}

const fn_st_tensor *fn_safetensors_at(const fn_safetensors *st, size_t i)
{
    return i < st->n ? &st->tensors[i] : NULL;
}

const fn_st_tensor *fn_safetensors_find(const fn_safetensors *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *fn_safetensors_metadata(const fn_safetensors *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

const char *fn_safetensors_path(const fn_safetensors *st)
{
    return st->path;
}

static void shape_text(int ndim, const int64_t *shape, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(out + o, cap - o, "]");
}

fn_status fn_safetensors_expect(const fn_safetensors *st, const char *name, fn_st_dtype dtype,
                                int ndim, const int64_t *shape, const fn_st_tensor **out,
                                fn_error *err)
{
    const fn_st_tensor *t = fn_safetensors_find(st, name);
    if (!t) return fn_error_set(err, FN_ERR_NOT_FOUND, "%s: no tensor '%s'", st->path, name);
    int ok = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[128], have[128];
        shape_text(ndim, shape, want, sizeof want);
        shape_text(t->ndim, t->shape, have, sizeof have);
        return corrupt(err, st->path, "tensor '%s' is %s %s, expected %s %s", name,
                       fn_st_dtype_name(t->dtype), have, fn_st_dtype_name(dtype), want);
    }
    *out = t;
    return FN_OK;
}

/* ---- writing ---- */

typedef struct wtensor {
    char *name;
    fn_st_dtype dtype;
    int ndim;
    int64_t shape[FN_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

struct fn_safetensors_writer {
    wtensor *t;
    size_t n;
    json_t *meta;
};

fn_safetensors_writer *fn_safetensors_writer_new(void)
{
    fn_safetensors_writer *w = calloc(1, sizeof *w);
    if (w && !(w->meta = json_object())) {
        free(w);
        return NULL;
    }
    return w;
}

void fn_safetensors_writer_free(fn_safetensors_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w);
}

fn_status fn_safetensors_writer_add(fn_safetensors_writer *w, const char *name, fn_st_dtype dtype,
                                    int ndim, const int64_t *shape, const void *data, fn_error *err)
{
    if (strcmp(name, "__metadata__") == 0 || ndim < 0 || ndim > FN_ST_MAX_DIMS)
        return fn_error_set(err, FN_ERR_INVALID, "safetensors: bad tensor '%s'", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return fn_error_set(err, FN_ERR_INVALID, "safetensors: tensor '%s' added twice", name);
    wtensor *t = realloc(w->t, (w->n + 1) * sizeof *t);
    if (!t) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    w->t = t;
    wtensor *x = &w->t[w->n];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    if (!x->name) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    x->dtype = dtype;
    x->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        x->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    x->data = data;
    x->nbytes = numel * fn_st_dtype_size(dtype);
    w->n++;
    return FN_OK;
}

fn_status fn_safetensors_writer_meta(fn_safetensors_writer *w, const char *key, const char *value,
                                     fn_error *err)
{
    if (json_object_set_new(w->meta, key, json_string(value)) != 0)
        return fn_error_set(err, FN_ERR_INVALID, "safetensors: metadata '%s' is not valid UTF-8",
                            key);
    return FN_OK;
}

fn_status fn_safetensors_writer_write(fn_safetensors_writer *w, const char *path, fn_error *err)
{
    json_t *root = json_object();
    if (!root) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    if (json_object_size(w->meta)) json_object_set(root, "__metadata__", w->meta);
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        wtensor *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *desc =
            json_pack("{s:s, s:o, s:[I, I]}", "dtype", fn_st_dtype_name(t->dtype), "shape", shape,
                      "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        json_object_set_new(root, t->name, desc);
        off += t->nbytes;
    }
    char *header = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!header) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    /* Pad the header with spaces so the data starts 8-byte aligned, as the format suggests. */
    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;
    fn_buf head = FN_BUF_INIT;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fn_buf_append(&head, len8, 8);
    fn_buf_append(&head, header, hlen);
    for (size_t i = hlen; i < padded; i++) fn_buf_putc(&head, ' ');
    free(header);
    if (head.oom) {
        fn_buf_free(&head);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    fn_atomic_file *f = NULL;
    fn_status st = fn_atomic_file_open(path, &f, err);
    if (st == FN_OK) st = fn_atomic_file_write(f, head.data, head.len, err);
    for (size_t i = 0; st == FN_OK && i < w->n; i++)
        st = fn_atomic_file_write(f, w->t[i].data, w->t[i].nbytes, err);
    fn_buf_free(&head);
    if (st != FN_OK) {
        if (f) fn_atomic_file_abort(f);
        return st;
    }
    return fn_atomic_file_commit(f, err);
}
