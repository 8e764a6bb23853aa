/* sha256.h - SHA-256 (FIPS 180-4), for the spec hashes models record. */
#ifndef FN_SHA256_H
#define FN_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct fn_sha256 {
    uint32_t h[8];
    uint64_t total;
    uint8_t block[64];
    size_t used;
} fn_sha256;

void fn_sha256_init(fn_sha256 *s);
void fn_sha256_update(fn_sha256 *s, const void *data, size_t n);
void fn_sha256_final(fn_sha256 *s, uint8_t out[32]);
/* One-shot digest as 64 lowercase hex digits plus NUL. */
void fn_sha256_hex(const void *data, size_t n, char out[65]);

#endif
