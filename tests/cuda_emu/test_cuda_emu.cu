// test_cuda_emu.cu: the emulated device checks what it claims to (tests/cuda_emu/README.md): kernels
// see every thread index once, __syncthreads is a barrier and a missing one shows, streams run only
// when synchronized (so cross-stream order matters), stream capture records and replays, launch and
// memory errors are CUDA's, and a host access to device memory, a kernel running past an allocation
// or a barrier some threads skip abort with one line. Written in CUDA: rewritten and compiled like
// core/cuda/ (emu_sources.cmake); the cuBLAS checks call the emulator's cuBLAS through the loader.
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <vector>

namespace {

__global__ void index_kernel(int *out, int n) {
  int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  int w = gridDim.x * blockDim.x;
  if (x + y * w < n) out[x + y * w] += 1 + x + 1000 * y;
}

// Sum of in[0..256) by a shared-memory tree: right only if every level waits for the one before.
__global__ void tree_sum_kernel(const float *in, float *out, int synced) {
  __shared__ float sh[256];
  sh[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  for (int s = 128; s > 0; s >>= 1) {
    float mine = threadIdx.x < (unsigned)s ? sh[threadIdx.x] + sh[threadIdx.x + s] : 0.0f;
    if (synced) __syncthreads();
    if (threadIdx.x < (unsigned)s) sh[threadIdx.x] = mine;
    if (synced) __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

// A race: each thread reads its neighbour's slot with no barrier between the write and the read.
__global__ void racy_shift_kernel(float *out) {
  __shared__ float sh[256];
  sh[threadIdx.x] = (float)threadIdx.x;
  out[threadIdx.x] = sh[(threadIdx.x + 1) % 256];
}

__global__ void divergent_barrier_kernel(float *out) {
  if (threadIdx.x < 16) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void fill_kernel(float *p, float v, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] = v;
}

__global__ void add_kernel(float *p, float v, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] += v;
}

template <typename T>
T *device_alloc(size_t n) {
  void *p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
  return static_cast<T *>(p);
}

template <typename T>
std::vector<T> to_host(const T *d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

TEST(CudaEmu, EveryThreadOfATwoDimensionalGridRunsOnce) {
  const int n = 6 * 5 * 8 * 4;
  int *d = device_alloc<int>(n);
  ASSERT_EQ(cudaMemsetAsync(d, 0, n * sizeof(int), 0), cudaSuccess);
  index_kernel<<<dim3(6, 5), dim3(8, 4)>>>(d, n);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> h = to_host(d, n);
  for (int y = 0; y < 20; y++)
    for (int x = 0; x < 48; x++) ASSERT_EQ(h[x + y * 48], 1 + x + 1000 * y) << x << "," << y;
  ASSERT_EQ(cudaFree(d), cudaSuccess);
}

TEST(CudaEmu, SyncthreadsIsABarrierAndAMissingOneShows) {
  std::vector<float> in(256);
  for (int i = 0; i < 256; i++) in[i] = (float)(i % 7) + 0.25f;
  float want = 0;
  for (float v : in) want += v;
  float *din = device_alloc<float>(256), *dout = device_alloc<float>(256);
  ASSERT_EQ(cudaMemcpy(din, in.data(), sizeof(float) * 256, cudaMemcpyHostToDevice), cudaSuccess);
  tree_sum_kernel<<<1, 256>>>(din, dout, 1);
  EXPECT_EQ(to_host(dout, 1)[0], want);
  // Without the barriers the threads' shuffled order reads half-updated levels.
  bool wrong = false;
  for (int trial = 0; trial < 4 && !wrong; trial++) {
    tree_sum_kernel<<<1, 256>>>(din, dout, 0);
    wrong = to_host(dout, 1)[0] != want;
  }
  EXPECT_TRUE(wrong) << "four unsynchronized tree sums all came out right";
  racy_shift_kernel<<<1, 256>>>(dout);
  std::vector<float> h = to_host(dout, 256);
  int stale = 0;
  for (int i = 0; i < 256; i++) stale += h[i] != (float)((i + 1) % 256);
  EXPECT_GT(stale, 0) << "a read racing its neighbour's write always saw the write";
  cudaFree(din);
  cudaFree(dout);
}

TEST(CudaEmuDeath, ABarrierSomeThreadsLeaveAborts) {
  EXPECT_DEATH(
      {
        float *d = device_alloc<float>(64);
        divergent_barrier_kernel<<<1, 64>>>(d);
        cudaDeviceSynchronize();
      },
      "divergent_barrier_kernel.*16 thread\\(s\\) of the block left");
}

TEST(CudaEmuDeath, HostCodeTouchingDeviceMemoryAborts) {
  EXPECT_DEATH(
      {
        volatile float *d = device_alloc<float>(16);
        d[3] = 1.0f;
      },
      "host code touched device memory");
}

TEST(CudaEmuDeath, AKernelPastItsAllocationAborts) {
  EXPECT_DEATH(
      {
        float *d = device_alloc<float>(1000);
        fill_kernel<<<4, 256>>>(d, 1.0f, 1000 + 64);  // 64 floats past the 256-byte-rounded end
        cudaDeviceSynchronize();
      },
      "fill_kernel touched .*outside every device allocation");
}

TEST(CudaEmu, StreamsRunWhenSynchronizedSoCrossStreamOrderMatters) {
  cudaStream_t a, b;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  float *d = device_alloc<float>(32);
  ASSERT_EQ(cudaMemsetAsync(d, 0, 32 * sizeof(float), a), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  fill_kernel<<<1, 32, 0, a>>>(d, 3.0f, 32);
  float h = -1;
  ASSERT_EQ(cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, b), cudaSuccess);
  EXPECT_EQ(h, 0.0f) << "work queued on stream a ran before a was synchronized";
  ASSERT_EQ(cudaStreamQuery(a), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, b), cudaSuccess);
  EXPECT_EQ(h, 3.0f);
  // a host->device copy stages its bytes at the call
  float src = 7.0f;
  ASSERT_EQ(cudaMemcpyAsync(d, &src, sizeof src, cudaMemcpyHostToDevice, a), cudaSuccess);
  src = 8.0f;
  ASSERT_EQ(cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, a), cudaSuccess);
  EXPECT_EQ(h, 7.0f);
  cudaFree(d);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST(CudaEmu, CaptureRecordsReplaysAndRefusesWhatCannotBeRecorded) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  float *d = device_alloc<float>(8);
  fill_kernel<<<1, 8, 0, s>>>(d, 1.0f, 8);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  float v = 2.0f;
  add_kernel<<<1, 8, 0, s>>>(d, v, 8);
  v = 100.0f;  // arguments are copied at the launch
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(to_host(d, 8)[0], 1.0f) << "captured work ran at capture";
  cudaGraphExec_t e = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(to_host(d, 8)[7], 5.0f);
  // a synchronize, an allocation or a host copy inside a capture invalidates it
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  void *p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, 64), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t bad = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(bad, nullptr);
  (void)cudaGetLastError();
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaFree(d);
  cudaStreamDestroy(s);
}

TEST(CudaEmu, LaunchAndMemoryErrorsAreCudasOwn) {
  float *d = device_alloc<float>(4);
  fill_kernel<<<1, 2048>>>(d, 1.0f, 4);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the last error is cleared by reading it";
  fill_kernel<<<dim3(1, 70000), 1>>>(d, 1.0f, 4);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  float h[8];
  EXPECT_EQ(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), cudaErrorInvalidValue) << "8 floats from 4";
  EXPECT_EQ(cudaMemcpy(h, h + 4, 4, cudaMemcpyDeviceToHost), cudaErrorInvalidValue) << "host memory as device";
  EXPECT_EQ(cudaFree(h), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(d + 1), cudaErrorInvalidValue);
  void *huge = nullptr;
  EXPECT_EQ(cudaMalloc(&huge, (size_t)1 << 50), cudaErrorMemoryAllocation);
  cudaPointerAttributes a;
  ASSERT_EQ(cudaPointerGetAttributes(&a, d), cudaSuccess);
  EXPECT_EQ(a.type, cudaMemoryTypeDevice);
  ASSERT_EQ(cudaPointerGetAttributes(&a, h), cudaSuccess);
  EXPECT_EQ(a.type, cudaMemoryTypeUnregistered);
  (void)cudaGetLastError();
  cudaFree(d);
}

// The emulator's cuBLAS, loaded as the backend loads cuBLAS (NDL_CUBLAS_LIB, set by the runtime).
struct emu_cublas {
  void *lib = nullptr;
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  emu_cublas() {
    const char *path = getenv("NDL_CUBLAS_LIB");
    lib = path ? dlopen(path, RTLD_NOW) : nullptr;
    if (!lib) return;
    create = reinterpret_cast<decltype(create)>(dlsym(lib, "cublasCreate_v2"));
    sgemm = reinterpret_cast<decltype(sgemm)>(dlsym(lib, "cublasSgemm_v2"));
  }
};

TEST(CudaEmu, CublasSgemmIsColumnMajorAndChecksItsArguments) {
  emu_cublas cb;
  ASSERT_TRUE(cb.create && cb.sgemm) << "NDL_CUBLAS_LIB: " << (getenv("NDL_CUBLAS_LIB") ? getenv("NDL_CUBLAS_LIB") : "unset");
  cublasHandle_t h;
  ASSERT_EQ(cb.create(&h), CUBLAS_STATUS_SUCCESS);
  const int m = 3, n = 2, k = 4;
  std::vector<float> a(m * k), b(k * n), want(m * n, 0.0f);
  for (int i = 0; i < m * k; i++) a[i] = (float)(i + 1);
  for (int i = 0; i < k * n; i++) b[i] = (float)(2 * i - 3);
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++)
      for (int p = 0; p < k; p++) want[i + j * m] += a[i + p * m] * b[p + j * k];
  float *da = device_alloc<float>(a.size()), *db = device_alloc<float>(b.size()), *dc = device_alloc<float>(m * n);
  cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
  const float one = 1.0f, zero = 0.0f;
  ASSERT_EQ(cb.sgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, m, db, k, &zero, dc, m), CUBLAS_STATUS_SUCCESS);
  std::vector<float> c = to_host(dc, m * n);
  for (int i = 0; i < m * n; i++) EXPECT_EQ(c[i], want[i]) << i;
  EXPECT_EQ(cb.sgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, m - 1, db, k, &zero, dc, m),
            CUBLAS_STATUS_INVALID_VALUE) << "lda < m";
  EXPECT_EQ(cb.sgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, n, k, &one, da, m, db, k, &zero, dc, m),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_DEATH(cb.sgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k + 1, &one, da, m, db, k + 1, &zero, dc, m),
               "cublasSgemm: A .* is not inside one device allocation");
}

}  // namespace
