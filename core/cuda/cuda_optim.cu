/* cuda_optim.cu: one optimizer update over the flat buffers, one kernel for every kind: each thread
 * applies core/kernel_math.h's per-element update (the CPU's own function) to its elements, so with
 * FMA contraction off (--fmad=false) the GPU's parameters are the CPU's bits. */
#include "core/cuda/cuda_internal.h"
#include "core/kernel_math.h"

/* The scalars of an update, passed by value. */
struct optim_args {
  ndl_update_kind kind;
  float *theta;
  const float *grad;
  float *state;
  int64_t state_stride, n;
  float lr, wd;
  float k[10];
};

__global__ void optim_kernel(optim_args a) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += (int64_t)gridDim.x * blockDim.x) {
    float t = a.theta[i], g = a.grad[i];
    switch (a.kind) {
      case NDL_UPDATE_SGD: t = ndl_km_sgd(t, g, a.lr, a.wd); break;
      case NDL_UPDATE_SGD_MOMENTUM:
        t = ndl_km_sgd_momentum(t, g, &a.state[i], a.k[0], a.k[1], a.lr, a.wd, 0);
        break;
      case NDL_UPDATE_SGD_NESTEROV:
        t = ndl_km_sgd_momentum(t, g, &a.state[i], a.k[0], a.k[1], a.lr, a.wd, 1);
        break;
      case NDL_UPDATE_ADAM: t = ndl_km_adam(t, g, &a.state[i], &a.state[a.state_stride + i], a.k, 0); break;
      case NDL_UPDATE_ADAMW: t = ndl_km_adam(t, g, &a.state[i], &a.state[a.state_stride + i], a.k, 1); break;
      case NDL_UPDATE_RMSPROP:
        t = ndl_km_rmsprop(t, g, &a.state[i], a.k[0], a.k[1], a.lr, a.k[2], a.wd);
        break;
    }
    a.theta[i] = t;
  }
}

void ndl_cuda_optim_update(const ndl_optim_update *u, cudaStream_t st) {
  switch (u->kind) {
    case NDL_UPDATE_SGD: case NDL_UPDATE_SGD_MOMENTUM: case NDL_UPDATE_SGD_NESTEROV: case NDL_UPDATE_ADAM:
    case NDL_UPDATE_ADAMW: case NDL_UPDATE_RMSPROP: break;
    default: NDL_ABORT("cuda optimizer update: bad kind %d", (int)u->kind);
  }
  if (u->kind != NDL_UPDATE_SGD && !u->state) NDL_ABORT("cuda optimizer update: kind %d without state", (int)u->kind);
  if (u->n <= 0) return;
  optim_args a;
  a.kind = u->kind;
  a.theta = u->theta;
  a.grad = u->grad;
  a.state = u->state;
  a.state_stride = u->state_stride;
  a.n = u->n;
  a.lr = u->lr;
  a.wd = u->wd;
  for (int i = 0; i < 10; i++) a.k[i] = u->k[i];
  optim_kernel<<<ndl_cuda_blocks(u->n), NDL_CUDA_THREADS, 0, st>>>(a);
  NDL_CUDA_CHECK_LAUNCH();
}
