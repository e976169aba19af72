#include "maas/base.h"
#include "maas/rng.h"

/* splitmix64 expands the seed into the xoshiro state, as its authors advise. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void maas_rng_init(maas_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

uint64_t maas_rng_next(maas_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double maas_rng_uniform(maas_rng *rng) {
    return (double)(maas_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t maas_rng_below(maas_rng *rng, uint64_t n) {
    /* Rejection sampling removes the modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = maas_rng_next(rng);
    while (r >= limit);
    return r % n;
}

double maas_rng_normal(maas_rng *rng) {
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - maas_rng_uniform(rng);
    double u2 = maas_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double maas_rng_truncated_normal(maas_rng *rng) {
    double z;
    do z = maas_rng_normal(rng);
    while (z < -2.0 || z > 2.0);
    return z;
}
