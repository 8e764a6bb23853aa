/*
 * status.h - the one error convention of funnel.
 *
 * Every fallible function returns an fn_status (FN_OK or a negative error
 * kind) and, when the caller passes an fn_error, fills it with a message that
 * names the operation and the object (file, key, column) that failed. Library
 * code never prints and carries on, and never exits.
 */
#ifndef FN_STATUS_H
#define FN_STATUS_H

#include <stddef.h>

typedef enum fn_status {
    FN_END = 1, /* a stream has no more items; not an error */
    FN_OK = 0,
    FN_ERR_INVALID = -1,     /* bad input or argument */
    FN_ERR_IO = -2,          /* the operating system refused a read or write */
    FN_ERR_CORRUPT = -3,     /* a file or message failed its checks */
    FN_ERR_NOMEM = -4,       /* out of memory */
    FN_ERR_NOT_FOUND = -5,   /* a key, file or entity does not exist */
    FN_ERR_UNSUPPORTED = -6, /* valid but not handled (a format version, a device) */
    FN_ERR_INTERNAL = -7,    /* a broken invariant or a library failure */
    FN_ERR_EXISTS = -8,      /* something that must not exist already does */
} fn_status;

#define FN_ERROR_MSG_MAX 512

typedef struct fn_error {
    fn_status code;
    char msg[FN_ERROR_MSG_MAX];
} fn_error;

/* Short name of a status ("invalid argument", "corrupt data", ...). */
const char *fn_status_name(fn_status s);

/*
 * Records code and a printf-style message in err (which may be NULL) and
 * returns code, so that callers can write `return fn_error_set(err, ...)`.
 */
fn_status fn_error_set(fn_error *err, fn_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Puts "prefix: " in front of the message already in err, to add context on
 * the way up ("reading items.tfrecord: ..."). Returns err->code.
 */
fn_status fn_error_prefix(fn_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears err (code FN_OK, empty message). */
void fn_error_clear(fn_error *err);

#endif
