/* status.c - status names and error messages. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *fn_status_name(fn_status s)
{
    switch (s) {
    case FN_END:
        return "end of stream";
    case FN_OK:
        return "ok";
    case FN_ERR_INVALID:
        return "invalid argument";
    case FN_ERR_IO:
        return "i/o error";
    case FN_ERR_CORRUPT:
        return "corrupt data";
    case FN_ERR_NOMEM:
        return "out of memory";
    case FN_ERR_NOT_FOUND:
        return "not found";
    case FN_ERR_UNSUPPORTED:
        return "unsupported";
    case FN_ERR_INTERNAL:
        return "internal error";
    case FN_ERR_EXISTS:
        return "already exists";
    }
    return "unknown error";
}

fn_status fn_error_set(fn_error *err, fn_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

fn_status fn_error_prefix(fn_error *err, const char *fmt, ...)
{
    if (!err) return FN_ERR_INTERNAL;
    char prefix[FN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Assemble "prefix: old" and cut it to the buffer; truncation is fine for messages. */
    size_t plen = strlen(prefix), olen = strlen(err->msg);
    char joined[2 * FN_ERROR_MSG_MAX + 2];
    memcpy(joined, prefix, plen);
    memcpy(joined + plen, ": ", 2);
    memcpy(joined + plen + 2, err->msg, olen + 1);
    size_t n = plen + 2 + olen;
    if (n >= sizeof err->msg) n = sizeof err->msg - 1;
    memcpy(err->msg, joined, n);
    err->msg[n] = '\0';
    return err->code;
}

void fn_error_clear(fn_error *err)
{
    if (!err) return;
    err->code = FN_OK;
    err->msg[0] = '\0';
}
