/*
 * rng.h - a small seeded random number generator (xoshiro256**).
 *
 * maas has no global random state: every function that needs randomness
 * (weight initialization, shuffling, dropout) takes a maas_rng the caller
 * owns, so a training run reproduces exactly from its seed.
 */
#ifndef MAAS_RNG_H
#define MAAS_RNG_H

#include <stdint.h>

typedef struct maas_rng {
    uint64_t s[4];
} maas_rng;

/* Seeds the generator; any 64-bit seed (including 0) is fine. */
void maas_rng_init(maas_rng *rng, uint64_t seed);

/* Next raw 64-bit value. */
uint64_t maas_rng_next(maas_rng *rng);

/* Uniform double in [0, 1). */
double maas_rng_uniform(maas_rng *rng);

/* Uniform integer in [0, n); n must be > 0. Unbiased. */
uint64_t maas_rng_below(maas_rng *rng, uint64_t n);

/* Standard normal sample (mean 0, stddev 1). */
double maas_rng_normal(maas_rng *rng);

/* Standard normal sample redrawn until it lies within [-2, 2]. */
double maas_rng_truncated_normal(maas_rng *rng);

#endif
