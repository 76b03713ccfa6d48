/* optim_kernels.c: the CPU backend's optimizer update over the flat buffers (optim.c builds the
 * update, backend.h). Each kind is one float32 loop over core/kernel_math.h's per-element math,
 * split over the thread pool in chunks on 16-float boundaries; every element is independent, so
 * any split gives the same bits. Compiled with -ffp-contract=off (numpy's rounding, no FMA). */
#include "core/backend.h"
#include "core/cpu/cpu_kernels.h"
#include "core/kernel_math.h"
#include "core/simd.h"
#include "core/threadpool.h"

static void sgd_loop(float *restrict theta, const float *restrict grad, int64_t n, float lr, float wd) {
  for (int64_t i = 0; i < n; i++) theta[i] = ndl_km_sgd(theta[i], grad[i], lr, wd);
}

static void momentum_loop(float *restrict theta, const float *restrict grad, float *restrict u, int64_t n,
                          float m, float one_m, float lr, float wd, int nesterov) {
  for (int64_t i = 0; i < n; i++) theta[i] = ndl_km_sgd_momentum(theta[i], grad[i], &u[i], m, one_m, lr, wd, nesterov);
}

/* `decoupled` is a literal in each caller, so each clone below is a branch-free vectorized loop. */
static inline void adam_loop(float *restrict theta, const float *restrict grad, float *restrict m,
                             float *restrict v, int64_t n, const float *restrict k, const int decoupled) {
  const float kk[10] = {k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9]};
  for (int64_t i = 0; i < n; i++) theta[i] = ndl_km_adam(theta[i], grad[i], &m[i], &v[i], kk, decoupled);
}

NDL_SIMD_CLONES static void adam_coupled(float *restrict theta, const float *restrict grad, float *restrict m,
                                         float *restrict v, int64_t n, const float *k) {
  adam_loop(theta, grad, m, v, n, k, 0);
}

NDL_SIMD_CLONES static void adam_decoupled(float *restrict theta, const float *restrict grad, float *restrict m,
                                           float *restrict v, int64_t n, const float *k) {
  adam_loop(theta, grad, m, v, n, k, 1);
}

static void rmsprop_loop(float *restrict theta, const float *restrict grad, float *restrict cache, int64_t n,
                         float d, float one_d, float lr, float eps, float wd) {
  for (int64_t i = 0; i < n; i++) theta[i] = ndl_km_rmsprop(theta[i], grad[i], &cache[i], d, one_d, lr, eps, wd);
}

/* Elements [lo, hi) of the update. */
static void update_range(const ndl_optim_update *u, int64_t lo, int64_t hi) {
  float *theta = u->theta + lo, *st = u->state ? u->state + lo : NULL;
  const float *grad = u->grad + lo;
  const int64_t n = hi - lo;
  switch (u->kind) {
    case NDL_UPDATE_SGD: sgd_loop(theta, grad, n, u->lr, u->wd); break;
    case NDL_UPDATE_SGD_MOMENTUM: momentum_loop(theta, grad, st, n, u->k[0], u->k[1], u->lr, u->wd, 0); break;
    case NDL_UPDATE_SGD_NESTEROV: momentum_loop(theta, grad, st, n, u->k[0], u->k[1], u->lr, u->wd, 1); break;
    case NDL_UPDATE_ADAM: adam_coupled(theta, grad, st, st + u->state_stride, n, u->k); break;
    case NDL_UPDATE_ADAMW: adam_decoupled(theta, grad, st, st + u->state_stride, n, u->k); break;
    case NDL_UPDATE_RMSPROP: rmsprop_loop(theta, grad, st, n, u->k[0], u->k[1], u->lr, u->k[2], u->wd); break;
    default: NDL_ABORT("cpu optimizer update: bad kind %d", (int)u->kind);
  }
}

static void update_chunk(void *arg, int64_t part) {
  const ndl_optim_update *u = arg;
  int parts = ndl_threadpool_threads();
  int64_t n = u->n;
  /* chunk edges on 16-float boundaries keep every chunk's vector loop aligned */
  int64_t lo = n * part / parts / 16 * 16, hi = part + 1 == parts ? n : n * (part + 1) / parts / 16 * 16;
  update_range(u, lo, hi);
}

void ndl_cpu_optim_update(const ndl_optim_update *u) {
  int threads = ndl_threadpool_threads();
  if (threads == 1 || u->n < 8192) {
    update_range(u, 0, u->n);
    return;
  }
  ndl_parallel_for(threads, update_chunk, (void *)u);
}
