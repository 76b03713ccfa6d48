/* rng.c: MT19937 exactly as numpy's legacy RandomState (randomkit): init_genrand seeding, standard
 * tempering, 53-bit doubles, polar gauss with cache, masked-rejection bounded integers and the
 * Fisher-Yates permutation numpy uses. No init_by_array (array seeds) and no other distributions. */
#include "core/rng.h"

#include <math.h>
#include <string.h>

#include "core/simd.h"

void ndl_rng_seed(ndl_rng *r, uint32_t seed) {
  r->mt[0] = seed;
  for (int i = 1; i < NDL_RNG_N; i++)
    r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
  r->pos = NDL_RNG_N;
  r->has_gauss = 0;
  r->gauss = 0.0;
}

ndl_status ndl_rng_check(const ndl_rng *r) {
  if (r->pos < 0 || r->pos > NDL_RNG_N)
    return ndl_errorf(NDL_ERR_FORMAT, "RNG position %d, expected 0..%d", r->pos, NDL_RNG_N);
  if (r->has_gauss != 0 && r->has_gauss != 1)
    return ndl_errorf(NDL_ERR_FORMAT, "RNG has_gauss %d, expected 0 or 1", r->has_gauss);
  if (!isfinite(r->gauss)) return ndl_errorf(NDL_ERR_FORMAT, "RNG cached gauss is not finite");
  return NDL_OK;
}

ndl_status ndl_rng_set_state(ndl_rng *r, const uint32_t *mt, int64_t pos, int64_t has_gauss, double gauss) {
  if (pos < 0 || pos > NDL_RNG_N)
    return ndl_errorf(NDL_ERR_FORMAT, "RNG position %lld, expected 0..%d", (long long)pos, NDL_RNG_N);
  if (has_gauss != 0 && has_gauss != 1)
    return ndl_errorf(NDL_ERR_FORMAT, "RNG has_gauss %lld, expected 0 or 1", (long long)has_gauss);
  if (!isfinite(gauss)) return ndl_errorf(NDL_ERR_FORMAT, "RNG cached gauss is not finite");
  memcpy(r->mt, mt, sizeof r->mt);
  r->pos = (int)pos;
  r->has_gauss = (int)has_gauss;
  r->gauss = gauss;
  return NDL_OK;
}

/* MT19937's twist of mt[i] from words of the old state (y = upper bit of a, lower bits of b). */
static inline uint32_t twist(uint32_t far, uint32_t a, uint32_t b) {
  uint32_t y = (a & 0x80000000u) | (b & 0x7fffffffu);
  return far ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
}

/* The in-place twist of all 624 words, as vector loops: mt[i], mt[i+1] are read from a copy of the
 * old state (old has room for one more word: the new mt[0], which the reference pairs with
 * mt[623]), so no element's read waits on a write; mt[i+397-624] (i >= 227) is a word this twist
 * already wrote, 227 elements back, farther than any vector. Same integers as the scalar loop. */
NDL_SIMD_CLONES static void regenerate_words(uint32_t *restrict mt, uint32_t *restrict old) {
  memcpy(old, mt, NDL_RNG_N * sizeof(uint32_t));
  for (int i = 0; i < NDL_RNG_N - 397; i++) mt[i] = twist(old[i + 397], old[i], old[i + 1]);
  old[NDL_RNG_N] = mt[0]; /* the last word pairs with the new mt[0], as in the reference */
  for (int i = NDL_RNG_N - 397; i < NDL_RNG_N; i++) mt[i] = twist(mt[i + 397 - NDL_RNG_N], old[i], old[i + 1]);
}

static void regenerate(ndl_rng *r) {
  uint32_t old[NDL_RNG_N + 1];
  regenerate_words(r->mt, old);
  r->pos = 0;
}

static inline uint32_t temper(uint32_t y) {
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  return y ^ (y >> 18);
}

static inline uint32_t next_u32(ndl_rng *r) {
  if (r->pos >= NDL_RNG_N) regenerate(r);
  return temper(r->mt[r->pos++]);
}

static inline double next_rand(ndl_rng *r) {
  uint32_t a = next_u32(r) >> 5, b = next_u32(r) >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

uint32_t ndl_rng_u32(ndl_rng *r) { return next_u32(r); }

double ndl_rng_rand(ndl_rng *r) { return next_rand(r); }

/* out[k] = (rand from words w[2k], w[2k+1]) <= p, for k < count: a vectorizable block. */
NDL_SIMD_CLONES static void bernoulli_block(const uint32_t *restrict w, int64_t count, double p,
                                            float *restrict out) {
  for (int64_t k = 0; k < count; k++) {
    int32_t a = (int32_t)(temper(w[2 * k]) >> 5), b = (int32_t)(temper(w[2 * k + 1]) >> 6);
    double u = ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
    out[k] = u <= p ? 1.0f : 0.0f;
  }
}

void ndl_rng_fill_bernoulli(ndl_rng *r, float *out, int64_t n, double p) {
  int64_t i = 0;
  while (i < n) {
    if (r->pos >= NDL_RNG_N) regenerate(r);
    int64_t pairs = (NDL_RNG_N - r->pos) / 2;
    if (pairs == 0) { /* the two words of this draw straddle a regeneration */
      out[i++] = next_rand(r) <= p ? 1.0f : 0.0f;
      continue;
    }
    int64_t take = pairs < n - i ? pairs : n - i;
    bernoulli_block(r->mt + r->pos, take, p, out + i);
    r->pos += (int)(2 * take);
    i += take;
  }
}

void ndl_rng_skip_rand(ndl_rng *r, int64_t n) {
  int64_t words = 2 * n;
  while (words > 0) {
    if (r->pos >= NDL_RNG_N) regenerate(r);
    int64_t take = NDL_RNG_N - r->pos < words ? NDL_RNG_N - r->pos : words;
    r->pos += (int)take;
    words -= take;
  }
}

double ndl_rng_randn(ndl_rng *r) {
  if (r->has_gauss) {
    r->has_gauss = 0;
    return r->gauss;
  }
  double x1, x2, r2;
  do {
    x1 = 2.0 * ndl_rng_rand(r) - 1.0;
    x2 = 2.0 * ndl_rng_rand(r) - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  double f = sqrt(-2.0 * log(r2) / r2);
  r->gauss = f * x1;
  r->has_gauss = 1;
  return f * x2;
}

/* Uniform integer in [0, max] by masked rejection. */
static uint64_t bounded(ndl_rng *r, uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  uint64_t v;
  if (max <= 0xffffffffu) {
    while ((v = (ndl_rng_u32(r) & mask)) > max) {
    }
  } else {
    do {
      v = (((uint64_t)ndl_rng_u32(r) << 32) | ndl_rng_u32(r)) & mask;
    } while (v > max);
  }
  return v;
}

int64_t ndl_rng_randint(ndl_rng *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)bounded(r, (uint64_t)(hi - 1 - lo));
}

void ndl_rng_permutation(ndl_rng *r, int64_t n, int64_t *out) {
  for (int64_t i = 0; i < n; i++) out[i] = i;
  for (int64_t i = n - 1; i >= 1; i--) {
    int64_t j = (int64_t)bounded(r, (uint64_t)i);
    int64_t t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
}

void ndl_rng_fill_rand(ndl_rng *r, float *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)next_rand(r);
}

void ndl_rng_fill_randn(ndl_rng *r, float *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)ndl_rng_randn(r);
}

void ndl_rng_fill_randint(ndl_rng *r, float *out, int64_t n, int64_t lo, int64_t hi) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)ndl_rng_randint(r, lo, hi);
}
