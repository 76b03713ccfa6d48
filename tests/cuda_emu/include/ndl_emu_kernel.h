/* ndl_emu_kernel.h (tests/cuda_emu): the CUDA kernel language for the emulated device, included by
 * cuda_runtime.h in C++ units compiled with __CUDACC__ (the rewritten CUDA sources of core/cuda/). A launch
 * k<<<grid, block, shared, stream>>>(args) is rewritten (emu_sources.cmake) to
 * ndl_emu::launch_kernel(ndl_emu::config(grid, block, shared, stream), "k", k, args): the arguments
 * are copied at the launch, as CUDA does, and the kernel runs when its stream is drained, one block
 * after another, each thread of a block a fiber, so __syncthreads is a real barrier (a thread order
 * shuffled per barrier phase makes a missing one show). */
#ifndef NDL_EMU_KERNEL_H
#define NDL_EMU_KERNEL_H

#include <math.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace ndl_emu {

extern thread_local uint3 thread_idx, block_idx;
extern thread_local dim3 block_dim, grid_dim;

struct launch_config {
  dim3 grid, block;
  size_t shared;
  cudaStream_t stream;
};

inline launch_config config(dim3 grid, dim3 block, size_t shared = 0, cudaStream_t stream = 0) {
  return launch_config{grid, block, shared, stream};
}

/* Check the configuration (an error is the thread's last error, as a real launch's), then queue
 * body to run once per thread of the grid. */
void launch(const launch_config &c, const char *name, std::function<void()> body);

template <typename... P, typename... A>
void launch_kernel(const launch_config &c, const char *name, void (*kernel)(P...), A &&...a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
  launch(c, name, [kernel, args]() { std::apply(kernel, args); });
}

/* The block barrier (aborts outside a kernel, or when the block's threads diverge on it). */
void syncthreads();

inline float int_as_float(int i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}
inline int float_as_int(float f) {
  int i;
  memcpy(&i, &f, sizeof i);
  return i;
}

}  // namespace ndl_emu

#define threadIdx (::ndl_emu::thread_idx)
#define blockIdx (::ndl_emu::block_idx)
#define blockDim (::ndl_emu::block_dim)
#define gridDim (::ndl_emu::grid_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __syncthreads() ::ndl_emu::syncthreads()
#define __int_as_float(i) ::ndl_emu::int_as_float(i)
#define __float_as_int(f) ::ndl_emu::float_as_int(f)

#endif
