/* cuda_reduce.cu: SUM, MAX and LOGSUMEXP over any axes. The input is read through a view with the
 * reduced axes moved last (as the CPU backend does); one block per output element reduces its
 * inner block with a fixed-shape shared-memory tree (sums in double), so results are the same on
 * every run. The CPU sums in row order: the two agree to rounding (tests use 1e-5 relative). */
#include <math.h>

#include "core/cuda/cuda_internal.h"
#include "core/kernel_math.h"

/* Tree-reduce one double per thread in shared memory (blockDim.x == NDL_CUDA_THREADS); thread 0
 * gets the total. Fixed pairing: deterministic. */
__device__ static double block_sum(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = NDL_CUDA_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}

/* NaN-propagating max of one float per thread (every thread gets the result). */
__device__ static float block_max(float v, float *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = NDL_CUDA_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] = ndl_km_max_nan(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  float r = sh[0];
  __syncthreads();
  return r;
}

__global__ void reduce_kernel(ndl_op op, ndl_cuda_view v, float *out, int64_t outer, int64_t inner) {
  __shared__ double shd[NDL_CUDA_THREADS];
  __shared__ float shf[NDL_CUDA_THREADS];
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    int64_t base = o * inner;
    if (op == NDL_OP_SUM) {
      double s = 0.0;
      for (int64_t j = threadIdx.x; j < inner; j += blockDim.x) s += v.base[ndl_cuda_view_off(v, base + j)];
      s = block_sum(s, shd);
      if (threadIdx.x == 0) out[o] = (float)s;
      continue;
    }
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x)
      m = ndl_km_max_nan(m, v.base[ndl_cuda_view_off(v, base + j)]);
    m = block_max(m, shf);
    if (op == NDL_OP_MAX) {
      if (threadIdx.x == 0) out[o] = m;
      continue;
    }
    if (isinf(m) || m != m) { /* all -inf, +inf present, or NaN present */
      if (threadIdx.x == 0) out[o] = m;
      continue;
    }
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < inner; j += blockDim.x)
      s += ndl_km_exp_shifted(v.base[ndl_cuda_view_off(v, base + j)], m);
    s = block_sum(s, shd);
    if (threadIdx.x == 0) out[o] = ndl_km_lse_f(s, m);
  }
}

void ndl_cuda_reduce(const ndl_tensor *node, cudaStream_t st) {
  if (node->op != NDL_OP_SUM && node->op != NDL_OP_MAX && node->op != NDL_OP_LOGSUMEXP)
    NDL_ABORT("cuda reduce: op %s is not a reduction", ndl_op_name(node->op));
  ndl_tensor view;
  int64_t inner = ndl_reduce_view(node, &view);
  int64_t outer = ndl_tensor_numel(node);
  if (outer == 0) return;
  unsigned blocks = outer > 65535 ? 65535u : (unsigned)outer;
  reduce_kernel<<<blocks, NDL_CUDA_THREADS, 0, st>>>(node->op, ndl_cuda_view_of(&view),
                                                     ndl_tensor_ptr(node), outer, inner);
  NDL_CUDA_CHECK_LAUNCH();
}
