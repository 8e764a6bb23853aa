/* rng.c - splitmix64 (Steele, Lea and Flood), uniform floats and Fisher-Yates shuffles. */
#include "rng.h"

uint64_t fn_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float fn_rng_uniform(uint64_t *state)
{
    return (float)(fn_rng_next(state) >> 40) / 16777216.0f;
}

void fn_rng_shuffle(size_t *idx, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(fn_rng_next(state) % i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
