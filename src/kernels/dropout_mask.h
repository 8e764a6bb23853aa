/*
 * dropout_mask.h - which elements dropout zeroes, one rule for every backend:
 * element i of a tensor drops when 32 bits hashed from (seed, i) fall below a
 * threshold of p * 2^32. The decision is integer-only, so the CPU and CUDA
 * backends draw the same mask, and the backward pass (the same call on the
 * gradient) drops the same elements. Included by C and by CUDA sources.
 *
 * The hash is SplitMix64 (Steele et al.) run from a state seeded by the
 * mixed seed: state_i = mix(seed) + (i + 1) * golden, bits = mix(state_i).
 */
#ifndef FN_DROPOUT_MASK_H
#define FN_DROPOUT_MASK_H

#include <stdint.h>

#ifdef __CUDACC__
#define FN_HOST_DEVICE __host__ __device__
#else
#define FN_HOST_DEVICE
#endif

#define FN_GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

static inline FN_HOST_DEVICE uint64_t fn_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The per-call key: mixing the seed keeps nearby seeds from giving shifted masks. */
static inline FN_HOST_DEVICE uint64_t fn_dropout_key(uint64_t seed)
{
    return fn_mix64(seed);
}

/* 32 random bits for element i under key. */
static inline FN_HOST_DEVICE uint32_t fn_dropout_bits(uint64_t key, uint64_t i)
{
    return (uint32_t)(fn_mix64(key + (i + 1) * FN_GOLDEN_GAMMA) >> 32);
}

/* p * 2^32 for p in [0, 1): an element drops when its bits are below this. */
static inline FN_HOST_DEVICE uint32_t fn_dropout_threshold(float p)
{
    return (uint32_t)((double)p * 4294967296.0);
}

#endif
