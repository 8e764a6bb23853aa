/*
 * rng.h - the one small random generator of funnel (splitmix64): weight
 * initialisation and training shuffles, reproducible from a seed.
 */
#ifndef FN_RNG_H
#define FN_RNG_H

#include <stddef.h>
#include <stdint.h>

/* The next 64 random bits of a splitmix64 state (the state advances). */
uint64_t fn_rng_next(uint64_t *state);
/* Uniform float in [0, 1) (24 bits). */
float fn_rng_uniform(uint64_t *state);
/* idx = a random permutation of [0, n). */
void fn_rng_shuffle(size_t *idx, size_t n, uint64_t *state);

#endif
