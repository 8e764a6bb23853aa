/*
 * fuzz_safetensors.c - the safetensors reader on arbitrary files (model files
 * are downloaded or handed over). The input becomes a memory file that is
 * opened by path, as models are; whatever opens must describe itself: every
 * tensor's bytes are its shape's elements times its dtype's size, inside the
 * mapping (reading them all lets the sanitizer see any range that is not).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
        if (fd < 0) return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) return 0;
    fn_safetensors *st;
    fn_error err;
    if (fn_safetensors_open(path, &st, &err) != FN_OK) return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < fn_safetensors_count(st); i++) {
        const fn_st_tensor *t = fn_safetensors_at(st, i);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
        if (numel * fn_st_dtype_size(t->dtype) != t->nbytes) abort();
        for (size_t b = 0; b < t->nbytes; b++) sink ^= ((const uint8_t *)t->data)[b];
        if (fn_safetensors_find(st, t->name) == NULL) abort();
    }
    fn_safetensors_metadata(st, "funnel.model");
    fn_safetensors_close(st);
    (void)sink;
    return 0;
}
