/* init.c: needle's init functions (rand, randn, constant, ones, zeros, randb, one_hot, xavier and
 * kaiming uniform/normal with gain sqrt(2) for relu). Only the relu nonlinearity is supported. */
#include "nn/init.h"

#include <math.h>
#include <string.h>

void ndl_init_rand(ndl_rng *r, float *out, int64_t n, double low, double high) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)(ndl_rng_rand(r) * (high - low) + low);
}

void ndl_init_randn(ndl_rng *r, float *out, int64_t n, double mean, double std) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)(ndl_rng_randn(r) * std + mean);
}

void ndl_init_constant(float *out, int64_t n, float c) {
  for (int64_t i = 0; i < n; i++) out[i] = c;
}

void ndl_init_ones(float *out, int64_t n) { ndl_init_constant(out, n, 1.0f); }

void ndl_init_zeros(float *out, int64_t n) { memset(out, 0, (size_t)n * sizeof(float)); }

void ndl_init_randb(ndl_rng *r, float *out, int64_t n, double p) {
  for (int64_t i = 0; i < n; i++) out[i] = ndl_rng_rand(r) <= p ? 1.0f : 0.0f;
}

void ndl_init_one_hot(float *out, int64_t n, int classes, const int32_t *labels) {
  memset(out, 0, (size_t)(n * classes) * sizeof(float));
  for (int64_t i = 0; i < n; i++) out[i * classes + labels[i]] = 1.0f;
}

void ndl_init_xavier_uniform(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out, double gain) {
  double a = gain * sqrt(6.0 / (double)(fan_in + fan_out));
  ndl_init_rand(r, out, fan_in * fan_out, -a, a);
}

void ndl_init_xavier_normal(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out, double gain) {
  ndl_init_randn(r, out, fan_in * fan_out, 0.0, gain * sqrt(2.0 / (double)(fan_in + fan_out)));
}

void ndl_init_kaiming_uniform(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out) {
  double bound = sqrt(2.0) * sqrt(3.0 / (double)fan_in);
  ndl_init_rand(r, out, fan_in * fan_out, -bound, bound);
}

void ndl_init_kaiming_normal(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out) {
  ndl_init_randn(r, out, fan_in * fan_out, 0.0, sqrt(2.0) / sqrt((double)fan_in));
}
