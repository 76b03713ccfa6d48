/* cuda_internal.h: what the files of the CUDA backend share: the check macros (one per API), the
 * backend's stream and cuBLAS handle, the per-call device scratch, the strided view a kernel reads
 * through, and the launchers each .cu file exports to the compute switch (cuda_backend.cu).
 * Internal to core/cuda/ (compiled by nvcc only); everything outside sees core/backend.h. */
#ifndef NDL_CUDA_INTERNAL_H
#define NDL_CUDA_INTERNAL_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/cuda/cublas_dyn.h"

/* " on rank N" when the process was started by an MPI launcher (from its environment), else "":
 * the backend knows no process group, but a message from one of N ranks should say which. */
const char *ndl_cuda_rank_tag(void);

/* Abort naming the statement, file:line, rank and CUDA's message: a failed launch or API call on
 * the backend's stream is a bug or a lost device, not something a caller can retry. */
#define NDL_CUDA_CHECK(stmt)                                                                        \
  do {                                                                                              \
    cudaError_t e_ = (stmt);                                                                        \
    if (e_ != cudaSuccess) NDL_ABORT("cuda%s: %s failed: %s (%s)", ndl_cuda_rank_tag(), #stmt,      \
                                     cudaGetErrorName(e_), cudaGetErrorString(e_));                 \
  } while (0)

/* The same for cuBLAS calls (through the table of cublas_dyn.h, loaded by then). */
#define NDL_CUBLAS_CHECK(stmt)                                                                      \
  do {                                                                                              \
    cublasStatus_t s_ = (stmt);                                                                     \
    if (s_ != CUBLAS_STATUS_SUCCESS) NDL_ABORT("cublas%s: %s failed: %s (%s)", ndl_cuda_rank_tag(), \
                                               #stmt, ndl_cublas.status_name(s_), ndl_cublas.status_string(s_)); \
  } while (0)

/* Check the last kernel launch (configuration errors surface here, faults at the next sync). */
#define NDL_CUDA_CHECK_LAUNCH() NDL_CUDA_CHECK(cudaGetLastError())

/* Threads per block of the element-wise kernels and of the block reductions (a power of two). */
#define NDL_CUDA_THREADS 256

/* Blocks for a grid-stride loop over n items. */
static inline unsigned ndl_cuda_blocks(int64_t n) {
  int64_t b = (n + NDL_CUDA_THREADS - 1) / NDL_CUDA_THREADS;
  if (b < 1) b = 1;
  if (b > 65535) b = 65535;
  return (unsigned)b;
}

/* A strided view as a kernel reads it (passed by value): element i in row-major order of shape
 * lives at base[offset of i]. */
typedef struct ndl_cuda_view {
  const float *base; /* data + offset */
  int ndim;
  int contiguous;
  int64_t shape[NDL_MAX_DIMS];
  int64_t strides[NDL_MAX_DIMS];
} ndl_cuda_view;

/* Describe t (device memory) for a kernel. */
ndl_cuda_view ndl_cuda_view_of(const ndl_tensor *t);

#ifdef __CUDACC__
/* Offset from base of element i (row-major index) of v. */
__device__ static inline int64_t ndl_cuda_view_off(const ndl_cuda_view &v, int64_t i) {
  if (v.contiguous) return i;
  int64_t off = 0;
  for (int d = v.ndim - 1; d >= 0; d--) {
    int64_t n = v.shape[d];
    off += (i % n) * v.strides[d];
    i /= n;
  }
  return off;
}
#endif

/* ---- backend state (cuda_backend.cu) ---- */
/* The cuBLAS handle, its work queued on st with the backend's fixed workspace (cublasSetStream
 * resets the workspace to cuBLAS's pool, which would allocate inside a captured step). */
cublasHandle_t ndl_cuda_cublas_on(cudaStream_t st);
/* Whether a step is being captured (graph_begin..graph_end): work that cannot be recorded (host
 * copies, syncs, allocation) must not run then; ndl_cuda_capture_break makes graph_end fail, so the
 * caller runs the step eagerly instead. */
int ndl_cuda_capturing(void);
void ndl_cuda_capture_break(void);
/* Device scratch for the current compute/backward call: valid until the next ndl_cuda_scratch_reset
 * (stream order keeps earlier users safe). NULL when it cannot grow (out of memory, or growing
 * while a graph is being captured). */
void *ndl_cuda_scratch(size_t bytes);
/* Start a new call's scratch (at the top of compute and fused_backward). */
void ndl_cuda_scratch_reset(void);
/* Fail ctx for scratch that could not be had; returns the status. */
ndl_status ndl_cuda_scratch_fail(ndl_ctx *ctx, const char *what, size_t bytes);

/* ---- launchers: each queues its kernels on the stream it is given (the entries in
 * cuda_backend.cu pass the backend's) ---- */
/* cuda_elementwise.cu */
void ndl_cuda_strided_copy(const ndl_tensor *src, float *out, cudaStream_t st);
void ndl_cuda_accumulate(float *dst, const ndl_tensor *src, cudaStream_t st);
void ndl_cuda_fill(float *dst, float value, int64_t n, cudaStream_t st);
/* Contiguous data of t: its own memory or a scratch copy (NULL: out of scratch). */
const float *ndl_cuda_contiguous(const ndl_tensor *t, cudaStream_t st);
/* out[i] = a op b for the binary ops and RELU_GRAD, inputs of any strides (out's shape). */
void ndl_cuda_binary(ndl_op op, const ndl_tensor *a, const ndl_tensor *b, float *out, int64_t n, cudaStream_t st);
/* out = op(a, s) for the scalar and unary ops. */
void ndl_cuda_unary(ndl_op op, const ndl_tensor *a, float s, float *out, int64_t n, cudaStream_t st);
/* out = (x * mask) / keep. */
void ndl_cuda_dropout(const ndl_tensor *x, const ndl_tensor *mask, float keep, float *out, int64_t n,
                      cudaStream_t st);
/* out = zeros with g stored into the view (UNSLICE). */
void ndl_cuda_unslice(const ndl_tensor *node, float *out, cudaStream_t st);
void ndl_cuda_gather_batch(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                           const int64_t *idx, int64_t n, int64_t row_len, cudaStream_t st);
/* cuda_reduce.cu: SUM, MAX, LOGSUMEXP over node->iparams[0..naxes). */
void ndl_cuda_reduce(const ndl_tensor *node, cudaStream_t st);
/* cuda_matmul.cu: c = a . b + beta*c (2-D views, any strides; c contiguous); non-OK: no scratch. */
ndl_status ndl_cuda_gemm(ndl_ctx *ctx, const ndl_tensor *a, const ndl_tensor *b, float *c, float beta,
                         cudaStream_t st);
ndl_status ndl_cuda_matmul(ndl_ctx *ctx, ndl_tensor *node, cudaStream_t st);
/* cuda_fused.cu / cuda_fused_bwd.cu */
ndl_status ndl_cuda_fused_forward(ndl_ctx *ctx, ndl_tensor *node, cudaStream_t st);
void ndl_cuda_fused_backward(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *targets, cudaStream_t st);
/* SyncBN: sum n doubles of device memory across ranks through s->sync.device when the process
 * group has one (NCCL), else staged through the host around s->sync.host (synchronous either way);
 * a failure is recorded on ctx and s->status. */
ndl_status ndl_cuda_allreduce_staged(ndl_ctx *ctx, ndl_norm_state *s, double *dev, int64_t n, cudaStream_t st);
/* A norm's weight or bias as contiguous device floats; NULL for NULL (the kernels read 1 / 0). */
const float *ndl_cuda_norm_param(const ndl_tensor *p, cudaStream_t st);
/* cuda_optim.cu */
void ndl_cuda_optim_update(const ndl_optim_update *u, cudaStream_t st);

#endif
