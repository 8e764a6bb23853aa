/*
 * tfrecord.h - streaming TFRecord reader and writer.
 *
 * A TFRecord file is a sequence of records, each framed as
 *   uint64 length | uint32 masked CRC32C(length) | data | uint32 masked CRC32C(data)
 * (little-endian), optionally inside a gzip or zlib stream. Training data,
 * logs and demo data are TFRecord files of tf.Example. Both directions run in
 * constant memory: the reader holds one record (plus a read chunk), the
 * writer one chunk.
 *
 * Damage is never silent: a bad CRC, a truncated record or a broken gzip
 * stream is an error naming the file, the record number and the byte offset,
 * unless the caller asks to skip damaged records, and then each is counted.
 */
#ifndef FN_TFRECORD_H
#define FN_TFRECORD_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef enum fn_tfrecord_compression {
    FN_TFRECORD_AUTO = 0, /* reading: gzip when the file starts with its magic, else plain */
    FN_TFRECORD_PLAIN,
    FN_TFRECORD_GZIP,
    FN_TFRECORD_ZLIB, /* TensorFlow's "ZLIB" option: a zlib stream */
} fn_tfrecord_compression;

typedef struct fn_tfrecord_reader fn_tfrecord_reader;
typedef struct fn_tfrecord_writer fn_tfrecord_writer;

typedef struct fn_tfrecord_read_options {
    fn_tfrecord_compression compression;
    /* Skip damaged records (and resynchronise) instead of failing; see the counters. */
    int skip_corrupt;
    /* Refuse records longer than this (0: 1 GiB), so a damaged length cannot exhaust memory. */
    uint64_t max_record_bytes;
} fn_tfrecord_read_options;

typedef struct fn_tfrecord_stats {
    uint64_t records;         /* records returned */
    uint64_t bytes;           /* bytes of the (uncompressed) stream consumed */
    uint64_t skipped_records; /* damaged records skipped (skip_corrupt only) */
    uint64_t skipped_bytes;   /* bytes passed over while resynchronising */
} fn_tfrecord_stats;

/* Opens path ("-" for standard input). opts may be NULL for the defaults. */
fn_status fn_tfrecord_reader_open(const char *path, const fn_tfrecord_read_options *opts,
                                  fn_tfrecord_reader **out, fn_error *err);

/* Reads from n bytes of memory (not copied; must outlive the reader). name is for messages. */
fn_status fn_tfrecord_reader_open_memory(const void *data, size_t n, const char *name,
                                         const fn_tfrecord_read_options *opts,
                                         fn_tfrecord_reader **out, fn_error *err);

/*
 * Reads the next record. On FN_OK, *data and *len hold it until the next call.
 * Returns FN_END after the last record, FN_ERR_CORRUPT on damage, FN_ERR_IO on
 * a read error; after an error the reader only returns that error again.
 */
fn_status fn_tfrecord_read(fn_tfrecord_reader *r, const uint8_t **data, size_t *len, fn_error *err);

const fn_tfrecord_stats *fn_tfrecord_reader_stats(const fn_tfrecord_reader *r);
/* Byte offset in the uncompressed stream where the last returned record starts. */
uint64_t fn_tfrecord_reader_record_offset(const fn_tfrecord_reader *r);
void fn_tfrecord_reader_close(fn_tfrecord_reader *r);

/*
 * Opens a writer. A file is written to a temporary name and appears at path
 * only on fn_tfrecord_writer_close; "-" writes to standard output.
 * compression: PLAIN, GZIP or ZLIB (AUTO means PLAIN).
 */
fn_status fn_tfrecord_writer_open(const char *path, fn_tfrecord_compression compression,
                                  fn_tfrecord_writer **out, fn_error *err);
fn_status fn_tfrecord_write(fn_tfrecord_writer *w, const void *data, size_t len, fn_error *err);
/* Flushes, fsyncs and renames into place; frees w in every case. */
fn_status fn_tfrecord_writer_close(fn_tfrecord_writer *w, fn_error *err);
/* Discards everything written; frees w. Safe on NULL. */
void fn_tfrecord_writer_abort(fn_tfrecord_writer *w);

/* Frames one record into out (12 + len + 4 bytes), for callers that write themselves. */
void fn_tfrecord_frame_header(uint64_t len, uint8_t out[12]);
uint32_t fn_tfrecord_data_crc(const void *data, size_t len);

#endif
