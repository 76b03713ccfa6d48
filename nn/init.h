/* init.h: needle's initializers, drawing from the numpy-compatible RNG in row-major order of a
 * (fan_in, fan_out) array; values are computed in double as numpy does, then cast to float32. */
#ifndef NDL_INIT_H
#define NDL_INIT_H

#include <stdint.h>

#include "core/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* rand(low, high) = U * (high - low) + low, n values. */
void ndl_init_rand(ndl_rng *r, float *out, int64_t n, double low, double high);
/* randn(mean, std) = N * std + mean, n values. */
void ndl_init_randn(ndl_rng *r, float *out, int64_t n, double mean, double std);
void ndl_init_constant(float *out, int64_t n, float c);
void ndl_init_ones(float *out, int64_t n);
void ndl_init_zeros(float *out, int64_t n);
/* randb: 1 where rand() <= p (needle's randb), n values. */
void ndl_init_randb(ndl_rng *r, float *out, int64_t n, double p);
/* One-hot rows: out[n, classes] with out[i, labels[i]] = 1. */
void ndl_init_one_hot(float *out, int64_t n, int classes, const int32_t *labels);
/* fan_in*fan_out values of shape (fan_in, fan_out). */
void ndl_init_xavier_uniform(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out, double gain);
void ndl_init_xavier_normal(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out, double gain);
void ndl_init_kaiming_uniform(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out);
void ndl_init_kaiming_normal(ndl_rng *r, float *out, int64_t fan_in, int64_t fan_out);

#ifdef __cplusplus
}
#endif
#endif
