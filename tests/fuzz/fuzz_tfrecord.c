/*
 * fuzz_tfrecord.c - the TFRecord reader (framing, CRCs, gzip/zlib) and the
 * tf.Example parser behind it, on arbitrary bytes. The first byte picks the
 * compression and whether damaged records are skipped.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "features/example.h"
#include "features/tfrecord.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    fn_tfrecord_read_options o = {
        .compression = (fn_tfrecord_compression)(data[0] & 3),
        .skip_corrupt = (data[0] >> 2) & 1,
        .max_record_bytes = 1 << 20,
    };
    fn_tfrecord_reader *r;
    fn_error err;
    if (fn_tfrecord_reader_open_memory(data + 1, size - 1, "fuzz", &o, &r, &err) != FN_OK) return 0;
    fn_buf json = FN_BUF_INIT;
    const uint8_t *rec;
    size_t len;
    while (fn_tfrecord_read(r, &rec, &len, &err) == FN_OK) {
        Tensorflow__Example *ex;
        if (fn_example_decode(rec, len, &ex, &err) != FN_OK) continue;
        fn_buf_reset(&json);
        fn_example_to_json(ex, &json);
        fn_example_free(ex);
    }
    fn_buf_free(&json);
    fn_tfrecord_reader_close(r);
    return 0;
}
