/* backend.h: the device vtable behind the op set. ops.c/nn_ops.c build and check nodes; a backend
 * fills a node's (contiguous, already allocated) output from its inputs, runs fused backward into
 * gradient targets it is handed, and moves memory on its device. A backend is a leaf: it sees this
 * header and tensor.h, never autograd. The CPU backend is the oracle. */
#ifndef NDL_BACKEND_H
#define NDL_BACKEND_H

#include <stddef.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sum-all-reduce n doubles in place across ranks (SyncBN's statistics); returns a status. */
typedef ndl_status (*ndl_allreduce_fn)(void *handle, double *buf, int64_t n);

/* SyncBN's all-reduce as a process group offers it: host sums host memory (every backend can
 * stage through it); device (NULL: none) sums memory of the computing backend in place, that
 * backend's earlier work on it complete (NCCL), so a device backend need not stage it. */
typedef struct ndl_allreduce {
  ndl_allreduce_fn host, device;
  void *handle;
} ndl_allreduce;

/* Saved state of the fused ops (node->aux), written by forward, read by backward. */
typedef struct ndl_norm_state {
  float eps;
  int64_t count;              /* rows (batchnorm: global) or columns (layernorm) averaged over */
  ndl_allreduce sync;         /* batchnorm only: SyncBN's all-reduce (sync.host NULL on one process) */
  float *xhat, *invstd, *mean, *var; /* backend memory (the data arena), like the tensors */
  /* batchnorm: when running_mean is non-NULL, forward folds the batch statistics into
   * running_mean/running_var (backend memory, d floats each) with this momentum, needle's rule:
   * r = (1 - momentum) * r + momentum * batch (biased var); skipped for a 0-row global batch. */
  float *running_mean, *running_var;
  float momentum;
  ndl_status status;          /* failure of an all-reduce during compute */
} ndl_norm_state;

typedef struct ndl_ce_state {
  /* backend memory, in [0, C) by the caller's contract (data sets are checked at load); the CPU
   * backend still checks (NDL_ERR_ARG naming the row), a device backend need not */
  int32_t *labels;
  double denom;
  float *probs;    /* backend memory */
  /* When non-NULL (backend memory, 2 doubles): forward adds the sum of the rows' losses
   * (logsumexp - z[label], not divided by denom) to sums[0] and the number of rows whose first
   * arg-max differs from the label to sums[1], so a trainer reads its epoch metrics once. The
   * first arg-max is kernel_math.h's ndl_km_argmax_first (strict >, so NaN never wins). */
  double *sums;
} ndl_ce_state;

/* Where a fused backward writes the gradient of input i: ptr (contiguous, numel of the input)
 * receives grad + beta * ptr (beta 0: overwrite, 1: accumulate into a flat gradient buffer).
 * ptr NULL: that input needs no gradient. */
typedef struct ndl_grad_target {
  float *ptr;
  float beta;
} ndl_grad_target;

/* Direction of a copy between host memory and the backend's device memory. */
typedef enum ndl_copy_kind { NDL_COPY_H2D, NDL_COPY_D2H, NDL_COPY_D2D } ndl_copy_kind;

/* One optimizer update over flat buffers (elements [0, n)): theta, grad, state as laid out by
 * optim/ (Adam: m then v, each n floats at state and state + state_stride). Scalars are already
 * rounded to float32 as optim.h describes. */
typedef enum ndl_update_kind {
  NDL_UPDATE_SGD,          /* theta -= lr * (g + wd*theta) */
  NDL_UPDATE_SGD_MOMENTUM, /* dampened momentum in state; k[0] = m, k[1] = 1 - m */
  NDL_UPDATE_SGD_NESTEROV, /* the same with the look-ahead */
  NDL_UPDATE_ADAM,         /* coupled L2; k[] as in optim.c */
  NDL_UPDATE_ADAMW,        /* decoupled decay */
  NDL_UPDATE_RMSPROP       /* k[0] = decay, k[1] = 1 - decay, k[2] = eps */
} ndl_update_kind;

typedef struct ndl_optim_update {
  ndl_update_kind kind;
  float *theta;
  const float *grad;
  float *state;
  int64_t state_stride; /* distance between Adam's m and v */
  int64_t n;
  float lr, wd;
  float k[10];
} ndl_optim_update;

typedef struct ndl_backend {
  const char *name;
  ndl_device device;
  /* Compute node's output from node->src and node params; returns a status (set on ctx too). */
  ndl_status (*compute)(ndl_ctx *ctx, ndl_tensor *node);
  /* Gradients of a fused node's inputs from node->adj into targets[0..NDL_MAX_SRC). */
  void (*fused_backward)(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *targets);
  /* ---- memory on the device ----
   * Host code never dereferences this memory (tests/fenced_backend.c proves it for the core, nn/ and
   * optim/): it moves through copy, fill, accumulate and the entries below. The context's data arena
   * takes its chunks from alloc (64-byte aligned), parameter stores and optimizer state too. */
  void *(*alloc)(size_t bytes);        /* NULL on failure */
  void (*free)(void *p);               /* NULL is a no-op */
  void (*copy)(void *dst, const void *src, size_t bytes, ndl_copy_kind kind);
  void (*fill)(float *dst, float value, int64_t n);
  void (*strided_copy)(const ndl_tensor *src, float *out); /* compact any view into out */
  void (*accumulate)(float *dst, const ndl_tensor *src);   /* dst += src, src any strides */
  void (*sync)(void);                  /* wait for queued work (no-op on the CPU) */
  /* One optimizer update over the flat buffers (optim.c calls it). */
  void (*optim_update)(const ndl_optim_update *u);
  /* ---- device-resident data (all pointers in this backend's memory) ---- */
  /* One batch from a data set held on the device: for i < n, dst[i,:] = src[idx[i],:] (rows of
   * row_len floats) and dst_labels[i] = labels[idx[i]]. */
  void (*gather_batch)(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                       const int64_t *idx, int64_t n, int64_t row_len);
  /* ---- step replay (NULL on backends without it, e.g. the CPU) ---- */
  /* Start recording the work queued on the backend's stream instead of running it; 0 on success. */
  int (*graph_begin)(void);
  /* Stop recording; returns an executable graph handle, or NULL when capture failed. */
  void *(*graph_end)(void);
  /* Queue one replay of a recorded graph; 0 on success. */
  int (*graph_replay)(void *graph);
  void (*graph_free)(void *graph);
  /* The queue the backend's work runs on (a cudaStream_t), so that a collective (NCCL) can be
   * queued behind the backward and recorded in a step capture; NULL member or NULL result: unknown
   * (dist/ then syncs and runs the collective on a stream of its own). */
  void *(*stream)(void);
} ndl_backend;

/* A reduction node's input (SUM/MAX/LOGSUMEXP over node->iparams[0..naxes)) as a view with the
 * kept axes first and the reduced ones last, each in their order: output element i reduces the
 * `inner` elements of row i of the view. Returns inner. Shared by the backends. */
static inline int64_t ndl_reduce_view(const ndl_tensor *node, ndl_tensor *view) {
  const ndl_tensor *a = node->src[0];
  int reduced[NDL_MAX_DIMS] = {0}, k = 0;
  int64_t inner = 1;
  *view = *a;
  for (int i = 0; i < node->naxes; i++) reduced[node->iparams[i]] = 1;
  for (int d = 0; d < a->ndim; d++)
    if (!reduced[d]) {
      view->shape[k] = a->shape[d];
      view->strides[k++] = a->strides[d];
    }
  for (int d = 0; d < a->ndim; d++)
    if (reduced[d]) {
      view->shape[k] = a->shape[d];
      view->strides[k++] = a->strides[d];
      inner *= a->shape[d];
    }
  return inner;
}

/* The CPU backend (OpenBLAS sgemm + C loops). */
const ndl_backend *ndl_backend_cpu(void);
/* The CUDA backend (cuBLAS + kernels on one stream of the current device), or NULL when this build
 * has none (NDL_CUDA off) or no GPU is visible; *why (may be NULL) gets a one-line reason then. */
const ndl_backend *ndl_backend_cuda(const char **why);
/* 1 when this build has the CUDA backend (NDL_CUDA), whether or not a GPU is visible. */
int ndl_backend_cuda_built(void);
/* The backend that owns memory of device d; NULL when this build has none for it. */
const ndl_backend *ndl_backend_for(ndl_device d);
/* Tests: make b (device NDL_DEV_TEST, e.g. tests/fenced_backend.c) what ndl_backend_for(NDL_DEV_TEST)
 * returns; NULL unregisters. Not thread-safe: call before creating contexts or stores on it. */
void ndl_backend_register_test(const ndl_backend *b);

#ifdef __cplusplus
}
#endif
#endif
