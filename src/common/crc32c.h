/*
 * crc32c.h - CRC-32C (Castagnoli), as TFRecord framing uses it. Runs on the
 * SSE4.2 crc32 instruction where the CPU has it, on a table otherwise.
 */
#ifndef FN_CRC32C_H
#define FN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over n bytes. */
uint32_t fn_crc32c_extend(uint32_t crc, const void *data, size_t n);

static inline uint32_t fn_crc32c(const void *data, size_t n)
{
    return fn_crc32c_extend(0, data, n);
}

/* TFRecord's masked form: rotate right by 15, add a constant. */
static inline uint32_t fn_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* The table implementation alone, for tests that compare both paths. */
uint32_t fn_crc32c_extend_portable(uint32_t crc, const void *data, size_t n);

#endif
