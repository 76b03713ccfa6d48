/* kernel_math.h: the per-element math of the kernels, written once and shared by every backend:
 * optimizer updates, BatchNorm/LayerNorm normalize and backward terms, dropout scaling, the pieces
 * of logsumexp. Plain static inline float/double functions with no memory of their own, marked
 * NDL_HD (__host__ __device__ under nvcc), so the CPU tests exercise the math a GPU kernel runs.
 * Operation order is the contract (numpy float32 rounding, no FMA contraction where it matters). */
#ifndef NDL_KERNEL_MATH_H
#define NDL_KERNEL_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define NDL_HD __host__ __device__
#else
#define NDL_HD
#endif

/* ---- optimizers (scalars already rounded to float32; g is the raw gradient) ---- */

/* SGD without momentum: theta - lr * (g + wd*theta). */
NDL_HD static inline float ndl_km_sgd(float theta, float g, float lr, float wd) {
  float d = g + wd * theta;
  return theta - lr * d;
}

/* SGD with needle's dampened momentum: u = m*u + (1-m)*d; steps by u, or with nesterov by the
 * look-ahead m*u + (1-m)*d. Updates *u; returns the new theta. */
NDL_HD static inline float ndl_km_sgd_momentum(float theta, float g, float *u, float m, float one_m,
                                              float lr, float wd, int nesterov) {
  float d = g + wd * theta;
  float nu = m * *u + one_m * d;
  *u = nu;
  float step = nesterov ? m * nu + one_m * d : nu;
  return theta - lr * step;
}

/* Adam (k as laid out by optim.c: b1, 1-b1, b2, 1-b2, 1/(1-b1^t), 1/(1-b2^t), lr, eps, wd, shrink).
 * decoupled (AdamW): theta *= shrink first and the raw gradient is used; else g + wd*theta.
 * Updates *m, *v; returns the new theta. */
NDL_HD static inline float ndl_km_adam(float theta, float grad, float *m, float *v, const float *k,
                                      const int decoupled) {
  float g;
  if (decoupled) {
    theta = theta * k[9];
    g = grad;
  } else {
    g = grad + k[8] * theta;
  }
  float nm = k[0] * *m + k[1] * g;
  float nv = k[2] * *v + k[3] * (g * g);
  *m = nm;
  *v = nv;
  float m_hat = nm * k[4], v_hat = nv * k[5];
  return theta - (k[6] * m_hat) / (sqrtf(v_hat) + k[7]);
}

/* RMSProp: cache = d*cache + (1-d)*g*g; theta - lr*g/(sqrt(cache)+eps). Updates *cache. */
NDL_HD static inline float ndl_km_rmsprop(float theta, float grad, float *cache, float d, float one_d,
                                         float lr, float eps, float wd) {
  float g = grad + wd * theta;
  float c = d * *cache + one_d * (g * g);
  *cache = c;
  return theta - (lr * g) / (sqrtf(c) + eps);
}

/* ---- normalization ---- */

/* 1/sqrt(var + eps) in double, rounded once. */
NDL_HD static inline float ndl_km_invstd(float var, float eps) {
  return (float)(1.0 / sqrt((double)var + (double)eps));
}

/* xhat = (x - mean) * invstd (stored through *xhat); returns y = xhat * w + b. */
NDL_HD static inline float ndl_km_norm_apply(float x, float mean, float invstd, float w, float b,
                                            float *xhat) {
  float h = (x - mean) * invstd;
  *xhat = h;
  return h * w + b;
}

/* dxhat = g * w, widened for the double backward sums. */
NDL_HD static inline double ndl_km_norm_dxhat(float g, float w) { return (double)(g * w); }

/* One element of a norm's dx: invstd * (g*w - m1 - xhat*m2), m1 = s1/count, m2 = s2/count. */
NDL_HD static inline float ndl_km_norm_dx(float g, float w, float xhat, float invstd, float m1, float m2) {
  return invstd * (g * w - m1 - xhat * m2);
}

/* BatchNorm's running statistic: keep*r + m*batch (keep = float(1 - momentum) in double, m =
 * momentum), two float products then a float sum: nn/norm.c's composed update, bit for bit. */
NDL_HD static inline float ndl_km_running(float r, float batch, float keep, float m) {
  float a = keep * r, b = m * batch;
  return a + b;
}

/* The first arg-max of a row of c floats (a strict > scan: the earliest of equal maxima; NaN never
 * wins): the trainer's error-count rule. */
NDL_HD static inline long long ndl_km_argmax_first(const float *z, long long c) {
  long long best = 0;
  for (long long j = 1; j < c; j++)
    if (z[j] > z[best]) best = j;
  return best;
}

/* ---- dropout ---- */

/* needle's dropout arithmetic: (x * mask) / keep. */
NDL_HD static inline float ndl_km_dropout(float x, float mask, float keep) { return (x * mask) / keep; }

/* ---- logsumexp pieces ---- */

/* One step of a NaN-propagating running max (numpy's max; a plain x > m would skip NaN). */
NDL_HD static inline float ndl_km_max_nan(float m, float x) { return x > m || x != x ? x : m; }

/* exp(x - m): one term of the shifted sum. */
NDL_HD static inline float ndl_km_exp_shifted(float x, float m) { return expf(x - m); }

/* reduce's logsumexp: log of the shifted sum rounded to float, plus m in float. */
NDL_HD static inline float ndl_km_lse_f(double s, float m) { return (float)log(s) + m; }

/* softmax-CE's logsumexp from the shifted sum s and the max m, in double. */
NDL_HD static inline double ndl_km_lse(double s, float m) { return log(s) + (double)m; }

/* One row of softmax-CE's forward: probs p[0..c) of logits z (NaN-propagating max, shifted exps
 * summed in double, scaled by the float reciprocal); returns the row's logsumexp in double. */
NDL_HD static inline double ndl_km_softmax_row(const float *z, float *p, long long c) {
  float m = z[0]; /* NaN-propagating max: a NaN logit makes the loss NaN */
  for (long long j = 1; j < c; j++) m = ndl_km_max_nan(m, z[j]);
  double sum = 0.0;
  for (long long j = 0; j < c; j++) {
    p[j] = ndl_km_exp_shifted(z[j], m);
    sum += p[j];
  }
  float inv = (float)(1.0 / sum);
  for (long long j = 0; j < c; j++) p[j] *= inv;
  return ndl_km_lse(sum, m);
}

#endif
