/*
 * file.h - reading whole files, and writing files so that a reader never sees
 * a partial one: every file funnel writes goes to a temporary name in the
 * same folder, is fsynced, then renamed over the target (and the folder
 * fsynced), so a crash leaves either the old file or the new one.
 */
#ifndef FN_FILE_H
#define FN_FILE_H

#include <stddef.h>

#include "buf.h"
#include "status.h"

/* Reads a whole file into out (appending). Fails if it is larger than max_bytes. */
fn_status fn_file_read_all(const char *path, size_t max_bytes, fn_buf *out, fn_error *err);

typedef struct fn_atomic_file fn_atomic_file;

/* Creates a temporary file next to path; nothing appears at path until commit. */
fn_status fn_atomic_file_open(const char *path, fn_atomic_file **out, fn_error *err);
/* The descriptor of the temporary file, for callers that write themselves. */
int fn_atomic_file_fd(const fn_atomic_file *f);
/* Writes all n bytes (retrying short writes). */
fn_status fn_atomic_file_write(fn_atomic_file *f, const void *data, size_t n, fn_error *err);
/* fsync, rename over the target, fsync the folder; frees f in every case. */
fn_status fn_atomic_file_commit(fn_atomic_file *f, fn_error *err);
/* Removes the temporary file and frees f. Safe on NULL. */
void fn_atomic_file_abort(fn_atomic_file *f);

/* Writes n bytes to fd, retrying on EINTR and short writes. */
fn_status fn_write_all(int fd, const void *data, size_t n, const char *what, fn_error *err);

/* Writes data to path atomically (open, write, commit). */
fn_status fn_file_write_atomic(const char *path, const void *data, size_t n, fn_error *err);

/* Creates a folder and its parents (like mkdir -p). */
fn_status fn_mkdir_p(const char *path, fn_error *err);

#endif
