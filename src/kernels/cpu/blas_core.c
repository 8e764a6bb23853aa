/*
 * blas_core.c - making sure OpenBLAS runs its fast kernels.
 *
 * Debian's OpenBLAS is a DYNAMIC_ARCH build: when the library loads, it picks
 * kernels from the CPU's family and model. On CPUs it does not know by model
 * (virtual machines report a generic "Intel Xeon Processor") it falls back
 * to its Prescott kernels, 5-6 times slower than its AVX-512 ones on the
 * same machine. OPENBLAS_CORETYPE overrides the choice but is read only at
 * load time, so a program calls fn_kernels_init(argv) first thing in main:
 * when the choice was the fallback and the CPU has better instructions, it
 * sets OPENBLAS_CORETYPE from the CPU's features and re-executes itself.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"

char *openblas_get_corename(void);

static const char *best_core(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void fn_kernels_init(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return; /* chosen already, by the user or by us */
    const char *have = openblas_get_corename();
    const char *want = best_core();
    if (!want || !have) return;
    /* Only the generic fallbacks are overridden; a core OpenBLAS recognised is kept. */
    if (strcasecmp(have, "Prescott") != 0 && strcasecmp(have, "Core2") != 0 &&
        strcasecmp(have, "Nehalem") != 0 && strcasecmp(have, "Sandybridge") != 0)
        return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    if (argv && argv[0]) execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernels rather than stop. */
}

const char *fn_kernels_blas_core(void)
{
    return openblas_get_corename();
}
