/*
 * fuzz_example.c - the tf.Example wire parser and the proto3 JSON mapping.
 * Property: once an Example has been printed as JSON, parsing that JSON and
 * printing it again gives the same text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "features/example.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Tensorflow__Example *ex;
    fn_error err;
    if (fn_example_decode(data, size, &ex, &err) != FN_OK) return 0;
    fn_buf a = FN_BUF_INIT, b = FN_BUF_INIT;
    fn_example_to_json(ex, &a);
    fn_example_free(ex);
    /* Duplicate map keys on the wire print as duplicate JSON keys, which parsing rejects. */
    if (fn_example_from_json(a.data, a.len, &ex, &err) == FN_OK) {
        fn_example_to_json(ex, &b);
        fn_example_free(ex);
        fn_buf c = FN_BUF_INIT;
        if (fn_example_from_json(b.data, b.len, &ex, &err) != FN_OK) {
            fprintf(stderr, "printed JSON does not parse back: %s\n%s\n", err.msg, b.data);
            abort();
        }
        fn_example_to_json(ex, &c);
        fn_example_free(ex);
        if (c.len != b.len || memcmp(c.data, b.data, b.len) != 0) {
            fprintf(stderr, "JSON round trip differs:\n%s\n%s\n", b.data, c.data);
            abort();
        }
        fn_buf_free(&c);
    }
    fn_buf_free(&a);
    fn_buf_free(&b);
    return 0;
}
