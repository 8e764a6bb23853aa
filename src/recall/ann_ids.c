/*
 * ann_ids.c - the item id sidecar of an ANN index built from the feature
 * store: line i + 1 holds the string item id of ANN id i (see recall.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/file.h"
#include "recall.h"

#define IDS_MAGIC     "funnel-ann-ids"
#define IDS_VERSION   1
#define IDS_MAX_BYTES ((size_t)1 << 34) /* 16 GiB: far above any real catalogue */

struct fn_ann_ids {
    size_t n;
    char **ids; /* NUL-terminated copies (ids may hold NUL bytes too: lens says) */
    size_t *lens;
};

static int needs_escape(unsigned char c)
{
    return c < 0x20 || c == 0x7f || c == '%';
}

fn_status fn_ann_ids_save(const char *path, size_t n, const char *const *ids, const size_t *lens,
                          fn_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    fn_buf b = FN_BUF_INIT;
    fn_buf_printf(&b, "%s %d %zu\n", IDS_MAGIC, IDS_VERSION, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(ids[i]);
        if (len == 0) {
            fn_buf_free(&b);
            return fn_error_set(err, FN_ERR_INVALID, "%s: item id %zu is empty", path, i);
        }
        for (size_t k = 0; k < len; k++) {
            unsigned char c = (unsigned char)ids[i][k];
            if (needs_escape(c)) {
                char e[3] = {'%', hex[c >> 4], hex[c & 15]};
                fn_buf_append(&b, e, sizeof e);
            } else {
                fn_buf_putc(&b, (char)c);
            }
        }
        fn_buf_putc(&b, '\n');
    }
    if (b.oom) {
        fn_buf_free(&b);
        return fn_error_set(err, FN_ERR_NOMEM, "out of memory writing %s", path);
    }
    uint32_t crc = fn_crc32c(b.data, b.len);
    fn_buf_printf(&b, "end %08x\n", (unsigned)crc);
    fn_status st = b.oom ? fn_error_set(err, FN_ERR_NOMEM, "out of memory writing %s", path)
                         : fn_file_write_atomic(path, b.data, b.len, err);
    fn_buf_free(&b);
    return st;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

void fn_ann_ids_free(fn_ann_ids *ids)
{
    if (!ids) return;
    for (size_t i = 0; i < ids->n; i++) free(ids->ids[i]);
    free(ids->ids);
    free(ids->lens);
    free(ids);
}

fn_status fn_ann_ids_load(const char *path, fn_ann_ids **out, fn_error *err)
{
    *out = NULL;
    fn_buf b = FN_BUF_INIT;
    fn_ann_ids *r = NULL;
    fn_status st = fn_file_read_all(path, IDS_MAX_BYTES, &b, err);
    if (st != FN_OK) goto done;
    /* The trailer: "end XXXXXXXX\n", the CRC32C of everything before it. */
    const size_t tlen = 13;
    if (b.len < tlen || memcmp(b.data + b.len - tlen, "end ", 4) != 0 ||
        b.data[b.len - 1] != '\n') {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: not a funnel item id file, or truncated", path);
        goto done;
    }
    uint32_t want = 0;
    for (size_t i = b.len - tlen + 4; i < b.len - 1; i++) {
        int d = hex_digit(b.data[i]);
        if (d < 0) {
            st = fn_error_set(err, FN_ERR_CORRUPT, "%s: bad checksum line", path);
            goto done;
        }
        want = want << 4 | (uint32_t)d;
    }
    size_t body = b.len - tlen;
    if (fn_crc32c(b.data, body) != want) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: checksum mismatch", path);
        goto done;
    }
    const char *p = b.data, *end = b.data + body;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    int version = 0;
    size_t n = 0;
    char head[96];
    if (!nl || (size_t)(nl - p) >= sizeof head) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: bad header", path);
        goto done;
    }
    memcpy(head, p, (size_t)(nl - p));
    head[nl - p] = '\0';
    char magic[32];
    if (sscanf(head, "%31s %d %zu", magic, &version, &n) != 3 || strcmp(magic, IDS_MAGIC) != 0) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: bad header", path);
        goto done;
    }
    if (version != IDS_VERSION) {
        st = fn_error_set(err, FN_ERR_UNSUPPORTED, "%s: format version %d, this funnel reads %d",
                          path, version, IDS_VERSION);
        goto done;
    }
    if (n > body) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: header claims %zu ids", path, n);
        goto done;
    }
    p = nl + 1;
    r = calloc(1, sizeof *r);
    if (r) r->ids = calloc(n ? n : 1, sizeof *r->ids);
    if (r) r->lens = calloc(n ? n : 1, sizeof *r->lens);
    if (!r || !r->ids || !r->lens) {
        st = fn_error_set(err, FN_ERR_NOMEM, "out of memory reading %s", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (!nl || nl == p) {
            st = fn_error_set(err, FN_ERR_CORRUPT, "%s: line %zu: %s", path, i + 2,
                              nl ? "empty id" : "fewer ids than the header says");
            goto done;
        }
        char *id = malloc((size_t)(nl - p) + 1);
        if (!id) {
            st = fn_error_set(err, FN_ERR_NOMEM, "out of memory reading %s", path);
            goto done;
        }
        r->ids[r->n++] = id;
        size_t len = 0;
        for (const char *q = p; q < nl; q++) {
            if (*q != '%') {
                id[len++] = *q;
                continue;
            }
            int hi = q + 2 < nl ? hex_digit(q[1]) : -1, lo = hi >= 0 ? hex_digit(q[2]) : -1;
            if (lo < 0) {
                st = fn_error_set(err, FN_ERR_CORRUPT, "%s: line %zu: bad %%-escape", path, i + 2);
                goto done;
            }
            id[len++] = (char)(hi << 4 | lo);
            q += 2;
        }
        id[len] = '\0';
        r->lens[i] = len;
        p = nl + 1;
    }
    if (p != end) {
        st = fn_error_set(err, FN_ERR_CORRUPT, "%s: more ids than the header's %zu", path, n);
        goto done;
    }
    *out = r;
    r = NULL;
done:
    fn_ann_ids_free(r);
    fn_buf_free(&b);
    return st;
}

size_t fn_ann_ids_count(const fn_ann_ids *ids)
{
    return ids->n;
}

const char *fn_ann_ids_get(const fn_ann_ids *ids, int64_t id, size_t *len)
{
    if (id < 0 || (uint64_t)id >= ids->n) return NULL;
    if (len) *len = ids->lens[id];
    return ids->ids[id];
}
