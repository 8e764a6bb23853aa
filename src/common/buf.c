/* buf.c - growable buffer and shared text formatting. */
#include "buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fn_buf_free(fn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void fn_buf_reset(fn_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

fn_status fn_buf_reserve(fn_buf *b, size_t n)
{
    if (b->oom) return FN_ERR_NOMEM;
    if (b->len + n + 1 <= b->cap) return FN_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return FN_ERR_NOMEM;
    }
    b->data = p;
    b->cap = cap;
    return FN_OK;
}

void fn_buf_append(fn_buf *b, const void *data, size_t n)
{
    if (fn_buf_reserve(b, n) != FN_OK) return;
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void fn_buf_puts(fn_buf *b, const char *s)
{
    fn_buf_append(b, s, strlen(s));
}

void fn_buf_putc(fn_buf *b, char c)
{
    fn_buf_append(b, &c, 1);
}

void fn_buf_vprintf(fn_buf *b, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n >= 0 && fn_buf_reserve(b, (size_t)n) == FN_OK) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
}

void fn_buf_printf(fn_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fn_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* Decodes one UTF-8 sequence at s[0..n); returns its length, or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int fn_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_decode(p + i, n - i, &cp);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

void fn_buf_json_string(fn_buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    fn_buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            size_t j = i;
            while (j < n && p[j] >= 0x20 && p[j] < 0x7F && p[j] != '"' && p[j] != '\\') j++;
            fn_buf_append(b, p + i, j - i);
            i = j;
            continue;
        }
        switch (c) {
        case '"':
            fn_buf_puts(b, "\\\"");
            i++;
            continue;
        case '\\':
            fn_buf_puts(b, "\\\\");
            i++;
            continue;
        case '\n':
            fn_buf_puts(b, "\\n");
            i++;
            continue;
        case '\r':
            fn_buf_puts(b, "\\r");
            i++;
            continue;
        case '\t':
            fn_buf_puts(b, "\\t");
            i++;
            continue;
        case '\b':
            fn_buf_puts(b, "\\b");
            i++;
            continue;
        case '\f':
            fn_buf_puts(b, "\\f");
            i++;
            continue;
        default:
            break;
        }
        uint32_t cp;
        size_t k = utf8_decode(p + i, n - i, &cp);
        if (!k) {
            cp = 0xFFFD;
            k = 1;
        }
        if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            fn_buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
        } else {
            fn_buf_printf(b, "\\u%04x", cp);
        }
        i += k;
    }
    fn_buf_putc(b, '"');
}

/*
 * Fewest significant digits, from min_prec up, whose "%.*e" form reads back
 * to v (as a float32 when is_float, else as a double). Fills digits (no dot,
 * no trailing zeros) and the decimal exponent of the first digit. Python's
 * json_format starts floats at 6 digits, which matters only for subnormals
 * (1.4013e-45, not 1e-45).
 */
static void shortest_digits(double v, int is_float, int min_prec, char *digits, int *exp10)
{
    char tmp[64];
    for (int prec = min_prec; prec <= (is_float ? 9 : 17); prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        double back = strtod(tmp, NULL);
        if (is_float ? (float)back == (float)v : back == v) break;
    }
    /* tmp is "-d.ddde[+-]xx"; collect the digits and the exponent. */
    const char *p = tmp;
    if (*p == '-') p++;
    int n = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[n++] = *p;
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';
    *exp10 = atoi(p + 1);
}

/* Writes digits with exponent e in Python repr style (fixed for -4 <= e < 16). */
static void put_repr(fn_buf *b, int neg, const char *digits, int e, int force_point)
{
    int n = (int)strlen(digits);
    if (neg) fn_buf_putc(b, '-');
    if (e >= -4 && e < 16) {
        if (e < 0) {
            fn_buf_puts(b, "0.");
            for (int i = 0; i < -e - 1; i++) fn_buf_putc(b, '0');
            fn_buf_puts(b, digits);
        } else if (n <= e + 1) {
            fn_buf_puts(b, digits);
            for (int i = n; i < e + 1; i++) fn_buf_putc(b, '0');
            if (force_point) fn_buf_puts(b, ".0");
        } else {
            fn_buf_append(b, digits, (size_t)e + 1);
            fn_buf_putc(b, '.');
            fn_buf_puts(b, digits + e + 1);
        }
    } else {
        fn_buf_putc(b, digits[0]);
        if (n > 1) {
            fn_buf_putc(b, '.');
            fn_buf_puts(b, digits + 1);
        }
        fn_buf_printf(b, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
}

/* NaN, infinities and zeros as json_format writes them; 0 when v is none of those. */
static int json_special(fn_buf *b, double v)
{
    if (isnan(v)) {
        fn_buf_puts(b, "\"NaN\"");
    } else if (isinf(v)) {
        fn_buf_puts(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else if (v == 0.0) {
        fn_buf_puts(b, signbit(v) ? "-0.0" : "0.0");
    } else {
        return 0;
    }
    return 1;
}

void fn_buf_json_float(fn_buf *b, float v)
{
    if (json_special(b, v)) return;
    char digits[32];
    int e;
    shortest_digits(v, 1, 6, digits, &e);
    put_repr(b, signbit(v) != 0, digits, e, 1);
}

void fn_buf_json_double(fn_buf *b, double v)
{
    if (json_special(b, v)) return;
    char digits[32];
    int e;
    shortest_digits(v, 0, 1, digits, &e);
    put_repr(b, signbit(v) != 0, digits, e, 1);
}

void fn_buf_json_metric(fn_buf *b, double v)
{
    if (isnan(v)) {
        fn_buf_puts(b, "null");
    } else {
        fn_buf_json_double(b, v);
    }
}

void fn_buf_float(fn_buf *b, float v)
{
    if (isnan(v)) {
        fn_buf_puts(b, "nan");
        return;
    }
    if (isinf(v)) {
        fn_buf_puts(b, v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0.0f) {
        fn_buf_puts(b, "0");
        return;
    }
    char digits[32];
    int e;
    shortest_digits(v, 1, 1, digits, &e);
    put_repr(b, signbit(v) != 0, digits, e, 0);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void fn_buf_base64(fn_buf *b, const uint8_t *d, size_t n)
{
    if (fn_buf_reserve(b, (n + 2) / 3 * 4) != FN_OK) return;
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

fn_status fn_base64_decode(const char *s, size_t n, fn_buf *out)
{
    while (n > 0 && s[n - 1] == '=') n--;
    if (n % 4 == 1) return FN_ERR_INVALID;
    if (fn_buf_reserve(out, n / 4 * 3 + 3) != FN_OK) return FN_ERR_NOMEM;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0) return FN_ERR_INVALID;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[out->len++] = (char)((acc >> bits) & 0xFF);
        }
    }
    out->data[out->len] = '\0';
    return FN_OK;
}
