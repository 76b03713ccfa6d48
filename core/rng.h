/* rng.h: numpy's legacy RandomState (MT19937) reproduced bit for bit: seed, raw u32, rand,
 * randn (polar Box-Muller with one cached value), randint, permutation. The whole state is a plain
 * struct; a state read from outside (checkpoints) goes through ndl_rng_set_state, which validates it. */
#ifndef NDL_RNG_H
#define NDL_RNG_H

#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NDL_RNG_N 624

typedef struct ndl_rng {
  uint32_t mt[NDL_RNG_N];
  int pos;
  int has_gauss;
  double gauss;
} ndl_rng;

/* NDL_OK when r is a state the draws can use: pos in [0, NDL_RNG_N], has_gauss 0 or 1, gauss finite;
 * NDL_ERR_FORMAT naming the field otherwise. */
ndl_status ndl_rng_check(const ndl_rng *r);
/* Set r to a saved state (mt[NDL_RNG_N] words, position, cached gauss) after ndl_rng_check's tests;
 * on NDL_ERR_FORMAT r is unchanged. */
ndl_status ndl_rng_set_state(ndl_rng *r, const uint32_t *mt, int64_t pos, int64_t has_gauss, double gauss);
/* numpy.random.seed(s): the plain init_genrand recurrence (not init_by_array). */
void ndl_rng_seed(ndl_rng *r, uint32_t seed);
/* One tempered 32-bit draw. */
uint32_t ndl_rng_u32(ndl_rng *r);
/* Uniform double in [0,1) with 53 bits (numpy random_sample). */
double ndl_rng_rand(ndl_rng *r);
/* Standard normal (numpy legacy gauss). */
double ndl_rng_randn(ndl_rng *r);
/* Integer in [lo, hi) by masked rejection (numpy legacy randint); hi > lo. */
int64_t ndl_rng_randint(ndl_rng *r, int64_t lo, int64_t hi);
/* numpy permutation(n) into out[n]. */
void ndl_rng_permutation(ndl_rng *r, int64_t n, int64_t *out);
/* Fill out[n] with float32(rand()) / float32(randn()) / float32(randint(lo,hi)) in draw order. */
void ndl_rng_fill_rand(ndl_rng *r, float *out, int64_t n);
void ndl_rng_fill_randn(ndl_rng *r, float *out, int64_t n);
/* out[i] = 1.0f where rand() <= p else 0.0f (needle's randb, compared in double), n draws. */
void ndl_rng_fill_bernoulli(ndl_rng *r, float *out, int64_t n, double p);
/* Advance past n rand() draws without using them. */
void ndl_rng_skip_rand(ndl_rng *r, int64_t n);
void ndl_rng_fill_randint(ndl_rng *r, float *out, int64_t n, int64_t lo, int64_t hi);

#ifdef __cplusplus
}
#endif
#endif
