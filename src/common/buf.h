/*
 * buf.h - a growable byte buffer, and the text formatting funnel's outputs
 * share: JSON strings escaped as Python's json module does, floats in their
 * shortest round-trip form, base64.
 */
#ifndef FN_BUF_H
#define FN_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct fn_buf {
    char *data; /* always NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
    int oom; /* set once an allocation failed; later appends do nothing */
} fn_buf;

#define FN_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void fn_buf_free(fn_buf *b);
/* Empties the buffer, keeping its memory. */
void fn_buf_reset(fn_buf *b);
/* Makes room for n more bytes; returns FN_ERR_NOMEM on failure. */
fn_status fn_buf_reserve(fn_buf *b, size_t n);
void fn_buf_append(fn_buf *b, const void *data, size_t n);
void fn_buf_puts(fn_buf *b, const char *s);
void fn_buf_putc(fn_buf *b, char c);
void fn_buf_printf(fn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fn_buf_vprintf(fn_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/*
 * Appends s (n bytes, UTF-8) as a quoted JSON string, escaped exactly as
 * Python's json.dumps with ensure_ascii=True: \" \\ \n \r \t \b \f, other
 * control characters and every non-ASCII code point as \uXXXX (surrogate
 * pairs above U+FFFF). Invalid UTF-8 bytes are written as U+FFFD.
 */
void fn_buf_json_string(fn_buf *b, const char *s, size_t n);

/*
 * Appends a float32 as Python's protobuf json_format writes it: the shortest
 * decimal that reads back to the same float32, in Python's repr style
 * ("1.0", "0.1", "1e-05", "3.4e+38"); NaN and infinities as the JSON strings
 * "NaN", "Infinity", "-Infinity".
 */
void fn_buf_json_float(fn_buf *b, float v);

/* A double as Python's repr and json_format write it ("0.1", "1e+16", "NaN" quoted). */
void fn_buf_json_double(fn_buf *b, double v);
/* A metric in a command's --json report: null when NaN (not measured), else as above. */
void fn_buf_json_metric(fn_buf *b, double v);

/* The shortest decimal that reads back to v as a float32, e.g. "0.1", "1", "1e-05". */
void fn_buf_float(fn_buf *b, float v);

/* Appends base64 (standard alphabet, with padding). */
void fn_buf_base64(fn_buf *b, const uint8_t *data, size_t n);

/*
 * Decodes standard or URL-safe base64, padding optional (as proto3 JSON
 * parsers accept). Returns FN_ERR_INVALID on a bad character or length.
 */
fn_status fn_base64_decode(const char *s, size_t n, fn_buf *out);

/* 1 when n bytes at s are valid UTF-8 (no overlongs, no surrogates). */
int fn_utf8_valid(const char *s, size_t n);

#endif
