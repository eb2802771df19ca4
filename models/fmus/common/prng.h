/*
 * prng.h -- a small deterministic pseudo-random number generator for sensor noise.
 *
 *   - generator: xoshiro256** (Blackman & Vigna), 256-bit state, period 2^256 - 1;
 *   - seeding:   splitmix64 expands one 64-bit key into the four state words; the key is
 *                the FMU's `seed` parameter mixed with a per-model stream id (FNV-1a hash
 *                of the model identifier), so two different models given the same seed
 *                draw independent streams;
 *   - uniform:   53-bit doubles in (0, 1];
 *   - Gaussian:  Box-Muller transform; each pair of uniforms gives two standard normal
 *                variates, the second one is kept in the generator (`spare`) for the
 *                next call.
 *
 * The generator is plain old data (no pointers) so that a model can keep it inside its
 * ModelData: it is then saved, restored and serialized together with the rest of the FMU
 * state, and restore-then-step reproduces the same draws bit for bit.
 *
 * Header only (static inline): include it from a model source; nothing to link.
 */
#ifndef COSIM_PRNG_H
#define COSIM_PRNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];     /* xoshiro256** state, never all zero */
    double spare;      /* second Box-Muller variate, valid when has_spare != 0 */
    int32_t has_spare;
    int32_t reserved;  /* explicit padding: keeps the serialized bytes deterministic */
} Prng;

static inline uint64_t prng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* FNV-1a 64-bit hash of a string: the stream id of a model. */
static inline uint64_t prng_stream_id(const char *name)
{
    uint64_t h = UINT64_C(0xCBF29CE484222325);
    for (; name != NULL && *name != '\0'; name++) {
        h ^= (uint64_t)(unsigned char)*name;
        h *= UINT64_C(0x00000100000001B3);
    }
    return h;
}

/* (Re)seed: the same (seed, stream) always gives the same sequence. */
static inline void prng_seed(Prng *g, int64_t seed, uint64_t stream)
{
    uint64_t x = (uint64_t)seed ^ stream;
    int i;
    for (i = 0; i < 4; i++) g->s[i] = prng_splitmix64(&x);
    if ((g->s[0] | g->s[1] | g->s[2] | g->s[3]) == 0) g->s[0] = UINT64_C(1); /* cannot happen in practice */
    g->spare = 0.0;
    g->has_spare = 0;
    g->reserved = 0;
}

static inline uint64_t prng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* Next 64 random bits (xoshiro256**). */
static inline uint64_t prng_next(Prng *g)
{
    uint64_t *s = g->s;
    uint64_t result = prng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = prng_rotl(s[3], 45);
    return result;
}

/* Uniform double in (0, 1] with 53 random bits (never 0, so log() is finite). */
static inline double prng_uniform(Prng *g)
{
    return (double)((prng_next(g) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* Standard normal variate (mean 0, standard deviation 1), Box-Muller. */
static inline double prng_gauss(Prng *g)
{
    const double two_pi = 6.283185307179586476925286766559;
    double u1, u2, r;
    if (g->has_spare) {
        g->has_spare = 0;
        return g->spare;
    }
    u1 = prng_uniform(g);
    u2 = prng_uniform(g);
    r = sqrt(-2.0 * log(u1));
    g->spare = r * sin(two_pi * u2);
    g->has_spare = 1;
    return r * cos(two_pi * u2);
}

/* A noisy measurement of `value`: value + std * N(0, 1). One variate is drawn whatever
 * `std` is (so the stream of one sensor does not depend on another sensor's setting);
 * std == 0 returns `value` exactly. */
static inline double prng_measure(Prng *g, double value, double std)
{
    double z = prng_gauss(g);
    return std == 0.0 ? value : value + std * z;
}

/* Seed a model's generator from its `seed` parameter and the model identifier. */
#define PRNG_SEED_MODEL(g, seed) prng_seed((g), (int64_t)(seed), prng_stream_id(MODEL_IDENTIFIER_STRING))

#endif /* COSIM_PRNG_H */
