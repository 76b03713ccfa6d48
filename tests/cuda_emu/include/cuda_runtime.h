/* cuda_runtime.h (tests/cuda_emu): the part of the CUDA runtime API needle-c calls, for the emulated
 * device: the backend's .cu files, rewritten by tests/cuda_emu/emu_sources.cmake, compile with g++
 * against this header and run their kernels on the CPU (tests/cuda_emu/README.md). Types and
 * enumerator values follow CUDA 13's driver_types.h, so code that compiles here compiles against the
 * real header (CI also builds it with nvcc). C and C++; the kernel language (threadIdx, __shared__,
 * __syncthreads, launches) only for C++ translation units compiled with __CUDACC__ defined. */
#ifndef NDL_CUDA_EMU_RUNTIME_H
#define NDL_CUDA_EMU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorUnknown = 999
} cudaError_t;

typedef struct CUstream_st *cudaStream_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};

enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3
};

struct cudaPointerAttributes {
  enum cudaMemoryType type;
  int device;
  void *devicePointer;
  void *hostPointer;
};

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

const char *cudaGetErrorName(cudaError_t error);
const char *cudaGetErrorString(cudaError_t error);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream);
cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *attributes, const void *ptr);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

/* ---- the emulator's own entry points (for the fake cuBLAS and NCCL of tests/cuda_emu) ---- */

/* Queue work on stream (or record it, while the stream is captured): start(arg) runs when the
 * stream reaches it, with device memory accessible; poll(arg) (NULL: done at once) is then asked
 * until it returns nonzero; drop(arg) (may be NULL) frees arg once the work is done or the graph
 * holding it is destroyed. Returns the call's status (a capture-invalidating call fails). */
cudaError_t ndl_emu_enqueue(cudaStream_t stream, void (*start)(void *), int (*poll)(void *), void (*drop)(void *),
                            void *arg);
/* Make [ptr, ptr+bytes) (device memory) accessible to threads other than the one running queued
 * work (OpenBLAS's, a peer reading it through MPI), from a start(arg) until the work is done. */
void ndl_emu_open(const void *ptr, size_t bytes);
/* Whether work queued on stream now would be recorded by a capture instead of run. */
int ndl_emu_capturing(cudaStream_t stream);
/* Whether [ptr, ptr+bytes) lies inside one live device allocation (0: it does not). */
int ndl_emu_device_range(const void *ptr, size_t bytes);
/* Abort the process with one line naming the emulator (a usage the real device would fault on). */
void ndl_emu_fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif

#if defined(__cplusplus) && defined(__CUDACC__)
#include "ndl_emu_kernel.h"
#endif

#endif
