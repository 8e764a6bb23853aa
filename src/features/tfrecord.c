/*
 * tfrecord.c - TFRecord framing over plain, gzip and zlib streams.
 *
 * The reader is layered: a byte source (file descriptor or memory), an
 * optional inflater, and the framing parser on top, which pulls exactly the
 * bytes it needs. Offsets in messages are offsets in the uncompressed stream;
 * for compressed files the compressed offset is named as well.
 */
#include "tfrecord.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/file.h"

#define CHUNK              (1u << 20)
#define DEFAULT_MAX_RECORD (1ull << 30)

struct fn_tfrecord_reader {
    char *name;
    int fd;             /* -1 when reading from memory */
    int own_fd;         /* close fd on close */
    const uint8_t *mem; /* memory source */
    size_t mem_len;

    /* Raw (possibly compressed) input window. */
    uint8_t *in;
    size_t in_pos, in_end;
    uint64_t in_consumed; /* raw bytes before in[0] */
    int in_eof;

    /* Inflate state, when compressed. */
    int compressed;
    int zlib_format;
    z_stream zs;
    int zs_ready;
    int zs_stream_end; /* the current gzip member ended */
    uint8_t *out;      /* inflated window */
    size_t out_pos, out_end;

    fn_tfrecord_read_options opts;
    uint8_t *rec;
    size_t rec_cap;
    uint64_t offset; /* uncompressed bytes consumed */
    uint64_t last_record_offset;
    fn_tfrecord_stats stats;
    fn_status sticky; /* error repeated after a failure */
    char sticky_msg[FN_ERROR_MSG_MAX];
};

/* ---- raw input ----------------------------------------------------------- */

/* Refills the raw window; returns FN_OK (possibly setting in_eof) or FN_ERR_IO. */
static fn_status raw_fill(fn_tfrecord_reader *r, fn_error *err)
{
    if (r->in_pos < r->in_end || r->in_eof) return FN_OK;
    if (r->mem) {
        r->in_eof = 1; /* memory is handed over whole at open */
        return FN_OK;
    }
    r->in_consumed += r->in_end;
    r->in_pos = r->in_end = 0;
    for (;;) {
        ssize_t n = read(r->fd, r->in, CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return fn_error_set(err, FN_ERR_IO, "%s: read error at byte offset %llu: %s", r->name,
                                (unsigned long long)r->in_consumed, strerror(errno));
        if (n == 0) r->in_eof = 1;
        r->in_end = (size_t)n;
        return FN_OK;
    }
}

static uint64_t raw_offset(const fn_tfrecord_reader *r)
{
    return r->in_consumed + r->in_pos;
}

/* ---- inflate ------------------------------------------------------------- */

static fn_status inflate_init(fn_tfrecord_reader *r, fn_error *err)
{
    memset(&r->zs, 0, sizeof r->zs);
    int wbits = r->zlib_format ? 15 : 15 + 16;
    if (inflateInit2(&r->zs, wbits) != Z_OK)
        return fn_error_set(err, FN_ERR_NOMEM, "%s: cannot start inflating", r->name);
    r->zs_ready = 1;
    r->out = malloc(CHUNK);
    if (!r->out) return fn_error_set(err, FN_ERR_NOMEM, "%s: out of memory", r->name);
    return FN_OK;
}

/* Inflates more bytes into the out window. Leaves out_pos == out_end at the end of the stream. */
static fn_status inflate_fill(fn_tfrecord_reader *r, fn_error *err)
{
    const char *kind = r->zlib_format ? "zlib" : "gzip";
    r->out_pos = r->out_end = 0;
    while (r->out_end == 0) {
        fn_status st = raw_fill(r, err);
        if (st != FN_OK) return st;
        if (r->in_pos == r->in_end) {
            if (r->zs_stream_end) return FN_OK; /* clean end after a whole member */
            return fn_error_set(err, FN_ERR_CORRUPT,
                                "%s: truncated %s stream at compressed byte offset %llu "
                                "(uncompressed offset %llu)",
                                r->name, kind, (unsigned long long)raw_offset(r),
                                (unsigned long long)r->offset);
        }
        if (r->zs_stream_end) {
            /* Another gzip member follows (concatenated files are one stream). */
            if (r->zlib_format)
                return fn_error_set(err, FN_ERR_CORRUPT,
                                    "%s: trailing bytes after the zlib stream at compressed "
                                    "byte offset %llu",
                                    r->name, (unsigned long long)raw_offset(r));
            inflateReset(&r->zs);
            r->zs_stream_end = 0;
        }
        r->zs.next_in = r->in + r->in_pos;
        r->zs.avail_in = (uInt)(r->in_end - r->in_pos);
        r->zs.next_out = r->out;
        r->zs.avail_out = CHUNK;
        int z = inflate(&r->zs, Z_NO_FLUSH);
        size_t used = (size_t)(r->zs.next_in - (r->in + r->in_pos));
        r->in_pos += used;
        r->out_end = CHUNK - r->zs.avail_out;
        if (z == Z_STREAM_END) {
            r->zs_stream_end = 1;
        } else if (z != Z_OK) {
            return fn_error_set(err, FN_ERR_CORRUPT,
                                "%s: corrupt %s stream at compressed byte offset %llu "
                                "(uncompressed offset %llu): %s",
                                r->name, kind, (unsigned long long)raw_offset(r),
                                (unsigned long long)(r->offset + r->out_end),
                                r->zs.msg ? r->zs.msg : zError(z));
        }
    }
    return FN_OK;
}

/* ---- the uncompressed byte stream ------------------------------------------ */

/* Reads up to n bytes; *got < n only at the end of the stream. */
static fn_status stream_read(fn_tfrecord_reader *r, uint8_t *dst, size_t n, size_t *got,
                             fn_error *err)
{
    *got = 0;
    while (*got < n) {
        const uint8_t *src;
        size_t avail;
        if (r->compressed) {
            if (r->out_pos == r->out_end) {
                fn_status st = inflate_fill(r, err);
                if (st != FN_OK) return st;
                if (r->out_end == 0) break;
            }
            src = r->out + r->out_pos;
            avail = r->out_end - r->out_pos;
        } else {
            fn_status st = raw_fill(r, err);
            if (st != FN_OK) return st;
            if (r->in_pos == r->in_end) break;
            src = r->in + r->in_pos;
            avail = r->in_end - r->in_pos;
        }
        size_t take = avail < n - *got ? avail : n - *got;
        memcpy(dst + *got, src, take);
        *got += take;
        if (r->compressed) {
            r->out_pos += take;
        } else {
            r->in_pos += take;
        }
    }
    r->offset += *got;
    return FN_OK;
}

/*
 * When the next n bytes lie whole in the current window, consumes them and
 * returns a pointer to them (no copy); otherwise returns NULL and consumes nothing.
 */
static const uint8_t *stream_take(fn_tfrecord_reader *r, size_t n)
{
    const uint8_t *p;
    if (r->compressed) {
        if (r->out_end - r->out_pos < n) return NULL;
        p = r->out + r->out_pos;
        r->out_pos += n;
    } else {
        if (r->in_end - r->in_pos < n) return NULL;
        p = r->in + r->in_pos;
        r->in_pos += n;
    }
    r->offset += n;
    return p;
}

/* ---- open / close -------------------------------------------------------- */

static fn_status reader_new(const char *name, const fn_tfrecord_read_options *opts,
                            fn_tfrecord_reader **out, fn_error *err)
{
    fn_tfrecord_reader *r = calloc(1, sizeof *r);
    if (!r) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    r->fd = -1;
    r->name = strdup(name);
    if (opts) r->opts = *opts;
    if (!r->opts.max_record_bytes) r->opts.max_record_bytes = DEFAULT_MAX_RECORD;
    if (!r->name) {
        free(r);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    *out = r;
    return FN_OK;
}

/* Decides on compression from the options and the first bytes, and sets up inflate. */
static fn_status reader_start(fn_tfrecord_reader *r, fn_error *err)
{
    fn_status st = raw_fill(r, err);
    if (st != FN_OK) return st;
    fn_tfrecord_compression c = r->opts.compression;
    if (c == FN_TFRECORD_AUTO) {
        /* Peek at the magic: a plain file starts with a length, rarely 0x1f8b. */
        int gz =
            r->in_end - r->in_pos >= 2 && r->in[r->in_pos] == 0x1f && r->in[r->in_pos + 1] == 0x8b;
        c = gz ? FN_TFRECORD_GZIP : FN_TFRECORD_PLAIN;
    }
    if (c == FN_TFRECORD_PLAIN) return FN_OK;
    r->compressed = 1;
    r->zlib_format = c == FN_TFRECORD_ZLIB;
    if (r->in_pos == r->in_end)
        return fn_error_set(err, FN_ERR_CORRUPT, "%s: empty file where a %s stream was expected",
                            r->name, r->zlib_format ? "zlib" : "gzip");
    return inflate_init(r, err);
}

fn_status fn_tfrecord_reader_open(const char *path, const fn_tfrecord_read_options *opts,
                                  fn_tfrecord_reader **out, fn_error *err)
{
    int is_stdin = strcmp(path, "-") == 0;
    fn_tfrecord_reader *r = NULL;
    fn_status st = reader_new(is_stdin ? "(stdin)" : path, opts, &r, err);
    if (st != FN_OK) return st;
    if (is_stdin) {
        r->fd = STDIN_FILENO;
    } else {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            st = fn_error_set(err, errno == ENOENT ? FN_ERR_NOT_FOUND : FN_ERR_IO,
                              "cannot open %s: %s", path, strerror(errno));
            fn_tfrecord_reader_close(r);
            return st;
        }
        r->own_fd = 1;
        posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    r->in = malloc(CHUNK);
    if (!r->in) {
        fn_tfrecord_reader_close(r);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    st = reader_start(r, err);
    if (st != FN_OK) {
        fn_tfrecord_reader_close(r);
        return st;
    }
    *out = r;
    return FN_OK;
}

fn_status fn_tfrecord_reader_open_memory(const void *data, size_t n, const char *name,
                                         const fn_tfrecord_read_options *opts,
                                         fn_tfrecord_reader **out, fn_error *err)
{
    fn_tfrecord_reader *r = NULL;
    fn_status st = reader_new(name ? name : "(memory)", opts, &r, err);
    if (st != FN_OK) return st;
    /* The whole buffer is the raw window; raw_fill reports its end. */
    r->mem = n ? data : (const uint8_t *)"";
    r->mem_len = n;
    r->in = (uint8_t *)r->mem;
    r->in_end = n;
    st = reader_start(r, err);
    if (st != FN_OK) {
        fn_tfrecord_reader_close(r);
        return st;
    }
    *out = r;
    return FN_OK;
}

void fn_tfrecord_reader_close(fn_tfrecord_reader *r)
{
    if (!r) return;
    if (r->own_fd && r->fd >= 0) close(r->fd);
    if (r->zs_ready) inflateEnd(&r->zs);
    if (!r->mem) free(r->in);
    free(r->out);
    free(r->rec);
    free(r->name);
    free(r);
}

const fn_tfrecord_stats *fn_tfrecord_reader_stats(const fn_tfrecord_reader *r)
{
    return &r->stats;
}

uint64_t fn_tfrecord_reader_record_offset(const fn_tfrecord_reader *r)
{
    return r->last_record_offset;
}

/* ---- framing --------------------------------------------------------------- */

static uint64_t load_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void store_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static fn_status fail(fn_tfrecord_reader *r, fn_status st, fn_error *err)
{
    r->sticky = st;
    if (err) memcpy(r->sticky_msg, err->msg, sizeof r->sticky_msg);
    return st;
}

/*
 * After a damaged length, slides forward one byte at a time until 12 bytes
 * form a length whose CRC matches, then reports that header. Resync reads the
 * rest of the stream at worst, still in constant memory.
 */
static fn_status resync(fn_tfrecord_reader *r, uint8_t hdr[12], int *found, fn_error *err)
{
    *found = 0;
    for (;;) {
        memmove(hdr, hdr + 1, 11);
        size_t got;
        fn_status st = stream_read(r, hdr + 11, 1, &got, err);
        if (st != FN_OK) return st;
        if (got == 0) {
            r->stats.skipped_bytes += 11; /* the rest of the window */
            return FN_OK;
        }
        r->stats.skipped_bytes++; /* the byte that slid out */
        if (fn_crc32c_mask(fn_crc32c(hdr, 8)) == load_u32(hdr + 8) &&
            load_u64(hdr) <= r->opts.max_record_bytes) {
            *found = 1;
            return FN_OK;
        }
    }
}

fn_status fn_tfrecord_read(fn_tfrecord_reader *r, const uint8_t **data, size_t *len, fn_error *err)
{
    if (r->sticky != FN_OK) {
        if (err) {
            err->code = r->sticky;
            memcpy(err->msg, r->sticky_msg, sizeof err->msg);
        }
        return r->sticky;
    }
    uint8_t hdr[12];
    size_t got;
    int have_header = 0;
    for (;;) {
        uint64_t start = r->offset;
        fn_status st;
        if (!have_header) {
            st = stream_read(r, hdr, 12, &got, err);
            if (st != FN_OK) return fail(r, st, err);
            if (got == 0) return FN_END;
        } else {
            start = r->offset - 12;
            got = 12;
            have_header = 0;
        }
        unsigned long long recno = (unsigned long long)r->stats.records;
        if (got < 12) {
            if (r->opts.skip_corrupt) {
                r->stats.skipped_records++;
                r->stats.skipped_bytes += got;
                return FN_END;
            }
            fn_error_set(err, FN_ERR_CORRUPT,
                         "%s: record %llu at byte offset %llu: truncated header (%zu of 12 "
                         "bytes)",
                         r->name, recno, (unsigned long long)start, got);
            return fail(r, FN_ERR_CORRUPT, err);
        }
        uint64_t n = load_u64(hdr);
        uint32_t want = load_u32(hdr + 8), have = fn_crc32c_mask(fn_crc32c(hdr, 8));
        if (want != have || n > r->opts.max_record_bytes) {
            if (r->opts.skip_corrupt) {
                int found;
                r->stats.skipped_records++;
                st = resync(r, hdr, &found, err);
                if (st != FN_OK) return fail(r, st, err);
                if (!found) return FN_END;
                have_header = 1;
                continue;
            }
            if (want != have) {
                fn_error_set(err, FN_ERR_CORRUPT,
                             "%s: record %llu at byte offset %llu: length CRC mismatch "
                             "(stored 0x%08x, computed 0x%08x)",
                             r->name, recno, (unsigned long long)start, want, have);
            } else {
                fn_error_set(err, FN_ERR_CORRUPT,
                             "%s: record %llu at byte offset %llu: length %llu exceeds the "
                             "limit of %llu bytes",
                             r->name, recno, (unsigned long long)start, (unsigned long long)n,
                             (unsigned long long)r->opts.max_record_bytes);
            }
            return fail(r, FN_ERR_CORRUPT, err);
        }
        /* Most records lie whole in the read window: hand them out in place. */
        const uint8_t *rec = stream_take(r, (size_t)n + 4);
        if (rec) {
            got = (size_t)n + 4;
            goto check_data;
        }
        if (n + 4 > r->rec_cap) {
            size_t cap = r->rec_cap ? r->rec_cap : 4096;
            while (cap < n + 4) cap *= 2;
            uint8_t *p = realloc(r->rec, cap);
            if (!p) {
                fn_error_set(err, FN_ERR_NOMEM, "%s: record %llu: cannot hold %llu bytes", r->name,
                             recno, (unsigned long long)n);
                return fail(r, FN_ERR_NOMEM, err);
            }
            r->rec = p;
            r->rec_cap = cap;
        }
        st = stream_read(r, r->rec, n + 4, &got, err);
        if (st != FN_OK) return fail(r, st, err);
        if (got < n + 4) {
            if (r->opts.skip_corrupt) {
                r->stats.skipped_records++;
                r->stats.skipped_bytes += 12 + got;
                return FN_END;
            }
            fn_error_set(err, FN_ERR_CORRUPT,
                         "%s: record %llu at byte offset %llu: truncated (%llu of %llu data "
                         "bytes and CRC present)",
                         r->name, recno, (unsigned long long)start, (unsigned long long)got,
                         (unsigned long long)(n + 4));
            return fail(r, FN_ERR_CORRUPT, err);
        }
        rec = r->rec;
    check_data:
        want = load_u32(rec + n);
        have = fn_crc32c_mask(fn_crc32c(rec, n));
        if (want != have) {
            if (r->opts.skip_corrupt) {
                r->stats.skipped_records++;
                r->stats.skipped_bytes += 12 + n + 4;
                continue;
            }
            fn_error_set(err, FN_ERR_CORRUPT,
                         "%s: record %llu at byte offset %llu: data CRC mismatch (stored "
                         "0x%08x, computed 0x%08x)",
                         r->name, recno, (unsigned long long)start, want, have);
            return fail(r, FN_ERR_CORRUPT, err);
        }
        r->stats.records++;
        r->stats.bytes = r->offset;
        r->last_record_offset = start;
        *data = rec;
        *len = (size_t)n;
        return FN_OK;
    }
}

/* ---- writer ------------------------------------------------------------------ */

struct fn_tfrecord_writer {
    char *name;
    fn_atomic_file *file; /* NULL when writing to stdout */
    int fd;
    int compressed;
    z_stream zs;
    int zs_ready;
    uint8_t *buf; /* pending output (compressed bytes when compressed) */
    size_t len;
};

static fn_status writer_flush(fn_tfrecord_writer *w, fn_error *err)
{
    fn_status st = fn_write_all(w->fd, w->buf, w->len, w->name, err);
    w->len = 0;
    return st;
}

/* Appends raw bytes to the output, deflating them when compressed. */
static fn_status writer_put(fn_tfrecord_writer *w, const void *data, size_t n, int flush,
                            fn_error *err)
{
    if (!w->compressed) {
        if (w->len + n > CHUNK) {
            fn_status st = writer_flush(w, err);
            if (st != FN_OK) return st;
            if (n >= CHUNK) return fn_write_all(w->fd, data, n, w->name, err);
        }
        memcpy(w->buf + w->len, data, n);
        w->len += n;
        return FN_OK;
    }
    w->zs.next_in = (Bytef *)data;
    w->zs.avail_in = (uInt)n;
    for (;;) {
        w->zs.next_out = w->buf + w->len;
        w->zs.avail_out = (uInt)(CHUNK - w->len);
        int z = deflate(&w->zs, flush ? Z_FINISH : Z_NO_FLUSH);
        if (z == Z_STREAM_ERROR)
            return fn_error_set(err, FN_ERR_INTERNAL, "%s: deflate failed", w->name);
        w->len = CHUNK - w->zs.avail_out;
        if (w->len == CHUNK) {
            fn_status st = writer_flush(w, err);
            if (st != FN_OK) return st;
            continue;
        }
        if (flush ? z == Z_STREAM_END : w->zs.avail_in == 0) return FN_OK;
    }
}

fn_status fn_tfrecord_writer_open(const char *path, fn_tfrecord_compression compression,
                                  fn_tfrecord_writer **out, fn_error *err)
{
    fn_tfrecord_writer *w = calloc(1, sizeof *w);
    if (!w) return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    w->name = strdup(strcmp(path, "-") == 0 ? "(stdout)" : path);
    w->buf = malloc(CHUNK);
    if (!w->name || !w->buf) {
        fn_tfrecord_writer_abort(w);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory");
    }
    if (compression == FN_TFRECORD_GZIP || compression == FN_TFRECORD_ZLIB) {
        int wbits = compression == FN_TFRECORD_ZLIB ? 15 : 15 + 16;
        if (deflateInit2(&w->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) !=
            Z_OK) {
            fn_tfrecord_writer_abort(w);
            return fn_error_set(err, FN_ERR_NOMEM, "cannot start deflating");
        }
        w->zs_ready = 1;
        w->compressed = 1;
    }
    if (strcmp(path, "-") == 0) {
        w->fd = STDOUT_FILENO;
    } else {
        fn_status st = fn_atomic_file_open(path, &w->file, err);
        if (st != FN_OK) {
            fn_tfrecord_writer_abort(w);
            return st;
        }
        w->fd = fn_atomic_file_fd(w->file);
    }
    *out = w;
    return FN_OK;
}

void fn_tfrecord_frame_header(uint64_t len, uint8_t out[12])
{
    store_u64(out, len);
    store_u32(out + 8, fn_crc32c_mask(fn_crc32c(out, 8)));
}

uint32_t fn_tfrecord_data_crc(const void *data, size_t len)
{
    return fn_crc32c_mask(fn_crc32c(data, len));
}

fn_status fn_tfrecord_write(fn_tfrecord_writer *w, const void *data, size_t len, fn_error *err)
{
    uint8_t hdr[12], foot[4];
    fn_tfrecord_frame_header(len, hdr);
    store_u32(foot, fn_tfrecord_data_crc(data, len));
    fn_status st = writer_put(w, hdr, 12, 0, err);
    if (st == FN_OK) st = writer_put(w, data, len, 0, err);
    if (st == FN_OK) st = writer_put(w, foot, 4, 0, err);
    return st;
}

fn_status fn_tfrecord_writer_close(fn_tfrecord_writer *w, fn_error *err)
{
    fn_status st = FN_OK;
    if (w->compressed) st = writer_put(w, "", 0, 1, err);
    if (st == FN_OK) st = writer_flush(w, err);
    if (st == FN_OK && w->file) {
        st = fn_atomic_file_commit(w->file, err);
        w->file = NULL;
    }
    fn_tfrecord_writer_abort(w);
    return st;
}

void fn_tfrecord_writer_abort(fn_tfrecord_writer *w)
{
    if (!w) return;
    if (w->file) fn_atomic_file_abort(w->file);
    if (w->zs_ready) deflateEnd(&w->zs);
    free(w->buf);
    free(w->name);
    free(w);
}
