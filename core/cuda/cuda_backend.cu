/* cuda_backend.cu: the CUDA backend's vtable: device discovery (ndl_backend_cuda), the one stream
 * and cuBLAS handle, device memory (alloc/free/copy/fill/sync), the per-call scratch, the compute
 * switch over the op set, and step replay by stream capture. Kernels live in the other .cu files;
 * the CPU backend is the oracle for every result (tests/test_cuda_ops.cc). The vtable entries are
 * the only place that names the stream; every launcher takes it as a parameter. */
#include <mutex>
#include <stdio.h>
#include <stdlib.h>

#include "core/cuda/cuda_internal.h"

namespace {

struct scratch_block {
  char *ptr;
  size_t size;
};

#define NDL_SCRATCH_BLOCKS 32
/* cuBLAS's fixed workspace, so it allocates nothing while a step is captured */
const size_t kCublasWorkspace = (size_t)32 << 20;
#define NDL_DEFERRED_FREES 64

struct cuda_state {
  cudaStream_t stream;
  cublasHandle_t cublas;
  void *cublas_ws; /* kCublasWorkspace bytes */
  cudaStream_t cublas_stream; /* the stream cuBLAS was last set to (with cublas_ws as its workspace) */
  scratch_block blocks[NDL_SCRATCH_BLOCKS];
  int nblocks, cur;
  size_t off;
  int capturing;    /* between graph_begin and graph_end: no allocation, no sync */
  int capture_broken; /* something could not be recorded: graph_end returns NULL */
  void *deferred[NDL_DEFERRED_FREES]; /* frees asked for while capturing */
  int ndeferred;
  int graphs_alive; /* scratch addresses are baked into these: never free a block then */
};

cuda_state g;
std::once_flag g_once;
const char *g_why = NULL;
char g_why_buf[256];

/* Record why the backend is unavailable (one line) and return 0. */
int init_fail_line(const char *line) {
  snprintf(g_why_buf, sizeof g_why_buf, "%s", line);
  (void)cudaGetLastError(); /* clear it, so later calls start clean */
  g_why = g_why_buf;
  return 0;
}

int init_fail(const char *what, const char *err) {
  char line[256];
  snprintf(line, sizeof line, "no CUDA device usable: %s: %s", what, err);
  return init_fail_line(line);
}

int cuda_init_state(void) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return init_fail("cudaGetDeviceCount", cudaGetErrorString(e));
  if (count == 0) return init_fail("cudaGetDeviceCount", "0 devices visible");
  /* cuBLAS only now, with a device there: a machine without one never maps it */
  const char *why = ndl_cublas_load();
  if (why) return init_fail_line(why);
  if ((e = cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking)) != cudaSuccess)
    return init_fail("cudaStreamCreateWithFlags", cudaGetErrorString(e));
  cublasStatus_t s = ndl_cublas.create(&g.cublas);
  if (s != CUBLAS_STATUS_SUCCESS) return init_fail("cublasCreate", ndl_cublas.status_string(s));
  /* fp32 GEMMs as the CPU computes them: no TF32 tensor-op rounding */
  NDL_CUBLAS_CHECK(ndl_cublas.set_math_mode(g.cublas, CUBLAS_DEFAULT_MATH));
  if ((e = cudaMalloc(&g.cublas_ws, kCublasWorkspace)) != cudaSuccess)
    return init_fail("cudaMalloc (cuBLAS workspace)", cudaGetErrorString(e));
  (void)ndl_cuda_cublas_on(g.stream);
  return 1;
}

void cuda_init(void) { (void)cuda_init_state(); }

/* ---- scratch ---- */

size_t round_up(size_t b) { return (b + 255) / 256 * 256; }

int scratch_grow(size_t bytes) {
  if (g.capturing || g.nblocks == NDL_SCRATCH_BLOCKS) return 0;
  size_t last = g.nblocks ? g.blocks[g.nblocks - 1].size : 0;
  size_t size = bytes > 2 * last ? bytes : 2 * last;
  if (size < ((size_t)1 << 20)) size = (size_t)1 << 20;
  void *p = NULL;
  if (cudaMalloc(&p, size) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  g.blocks[g.nblocks].ptr = (char *)p;
  g.blocks[g.nblocks].size = size;
  g.nblocks++;
  return 1;
}

/* ---- memory ---- */

void *cuda_alloc(size_t bytes) {
  if (g.capturing) { /* the step's memory is allocated by its eager run before the capture */
    g.capture_broken = 1;
    return NULL;
  }
  void *p = NULL;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
    (void)cudaGetLastError();
    return NULL;
  }
  return p;
}

void cuda_free(void *p) {
  if (!p) return;
  if (g.capturing) { /* cudaFree would wait for the stream: freed once the capture ends */
    g.capture_broken = 1;
    if (g.ndeferred < NDL_DEFERRED_FREES) g.deferred[g.ndeferred++] = p;
    return;
  }
  NDL_CUDA_CHECK(cudaFree(p));
}

void cuda_copy(void *dst, const void *src, size_t bytes, ndl_copy_kind kind) {
  if (!bytes) return;
  if (g.capturing && kind != NDL_COPY_D2D) { /* host memory cannot be part of a replayed step */
    g.capture_broken = 1;
    return;
  }
  switch (kind) {
    case NDL_COPY_H2D: {
      NDL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g.stream));
      /* from pageable memory the call returns once src is staged; pinned memory is read later */
      cudaPointerAttributes a;
      if (cudaPointerGetAttributes(&a, src) == cudaSuccess && a.type == cudaMemoryTypeHost)
        NDL_CUDA_CHECK(cudaStreamSynchronize(g.stream));
      (void)cudaGetLastError();
      break;
    }
    case NDL_COPY_D2H:
      NDL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g.stream));
      NDL_CUDA_CHECK(cudaStreamSynchronize(g.stream));
      break;
    case NDL_COPY_D2D:
      NDL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g.stream));
      break;
  }
}

void cuda_sync(void) {
  if (g.capturing) { /* a captured step cannot wait for itself */
    g.capture_broken = 1;
    return;
  }
  NDL_CUDA_CHECK(cudaStreamSynchronize(g.stream));
}

/* ---- compute ---- */

ndl_status cuda_compute(ndl_ctx *ctx, ndl_tensor *node) {
  ndl_cuda_scratch_reset();
  cudaStream_t st = g.stream;
  float *out = ndl_tensor_ptr(node);
  int64_t n = ndl_tensor_numel(node);
  switch (node->op) {
    case NDL_OP_ADD: case NDL_OP_SUB: case NDL_OP_MUL: case NDL_OP_DIV: case NDL_OP_POW:
    case NDL_OP_MAXIMUM: case NDL_OP_EQ: case NDL_OP_GT: case NDL_OP_GE: case NDL_OP_RELU_GRAD:
      ndl_cuda_binary(node->op, node->src[0], node->src[1], out, n, st);
      return NDL_OK;
    case NDL_OP_DROPOUT:
      ndl_cuda_dropout(node->src[0], node->src[1], node->scalar, out, n, st);
      return NDL_OK;
    case NDL_OP_ADD_SCALAR: case NDL_OP_MUL_SCALAR: case NDL_OP_DIV_SCALAR:
    case NDL_OP_RDIV_SCALAR: case NDL_OP_POW_SCALAR: case NDL_OP_GT_SCALAR: case NDL_OP_NEG:
    case NDL_OP_LOG: case NDL_OP_EXP: case NDL_OP_RELU: case NDL_OP_TANH:
      ndl_cuda_unary(node->op, node->src[0], node->scalar, out, n, st);
      return NDL_OK;
    case NDL_OP_SUM: case NDL_OP_MAX: case NDL_OP_LOGSUMEXP:
      ndl_cuda_reduce(node, st);
      return NDL_OK;
    case NDL_OP_RESHAPE: case NDL_OP_COMPACT:
      ndl_cuda_strided_copy(node->src[0], out, st);
      return NDL_OK;
    case NDL_OP_UNSLICE:
      ndl_cuda_unslice(node, out, st);
      return NDL_OK;
    case NDL_OP_MATMUL:
      return ndl_cuda_matmul(ctx, node, st);
    case NDL_OP_LINEAR: case NDL_OP_BATCHNORM: case NDL_OP_LAYERNORM: case NDL_OP_SOFTMAX_CE:
      return ndl_cuda_fused_forward(ctx, node, st);
    default:
      NDL_ABORT("cuda backend: op %s has no compute (views are built in ops.c)", ndl_op_name(node->op));
  }
  return NDL_OK;
}

void cuda_fused_backward(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *targets) {
  ndl_cuda_scratch_reset();
  ndl_cuda_fused_backward(ctx, node, targets, g.stream);
}

/* ---- the vtable's memory and update entries: the launchers on the backend's stream ---- */

void cuda_fill(float *dst, float value, int64_t n) { ndl_cuda_fill(dst, value, n, g.stream); }
void cuda_strided_copy(const ndl_tensor *src, float *out) { ndl_cuda_strided_copy(src, out, g.stream); }
void cuda_accumulate(float *dst, const ndl_tensor *src) { ndl_cuda_accumulate(dst, src, g.stream); }
void cuda_optim_update(const ndl_optim_update *u) { ndl_cuda_optim_update(u, g.stream); }
void cuda_gather_batch(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                       const int64_t *idx, int64_t n, int64_t row_len) {
  ndl_cuda_gather_batch(dst, dst_labels, src, labels, idx, n, row_len, g.stream);
}

/* ---- step replay ---- */

int cuda_graph_begin(void) {
  if (g.capturing) return -1;
  if (cudaStreamBeginCapture(g.stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  g.capturing = 1;
  g.capture_broken = 0;
  return 0;
}

void *cuda_graph_end(void) {
  if (!g.capturing) return NULL;
  g.capturing = 0;
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture(g.stream, &graph);
  for (int i = 0; i < g.ndeferred; i++) NDL_CUDA_CHECK(cudaFree(g.deferred[i]));
  g.ndeferred = 0;
  if (e != cudaSuccess || !graph || g.capture_broken) {
    (void)cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    return NULL;
  }
  cudaGraphExec_t exec = NULL;
  e = cudaGraphInstantiate(&exec, graph, 0);
  NDL_CUDA_CHECK(cudaGraphDestroy(graph));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return NULL;
  }
  g.graphs_alive++;
  return (void *)exec;
}

int cuda_graph_replay(void *graph) {
  if (!graph || g.capturing) return -1;
  if (cudaGraphLaunch((cudaGraphExec_t)graph, g.stream) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return 0;
}

void cuda_graph_free(void *graph) {
  if (!graph) return;
  NDL_CUDA_CHECK(cudaStreamSynchronize(g.stream)); /* a queued replay may still run it */
  NDL_CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
  g.graphs_alive--;
}

void *cuda_stream_handle(void) { return (void *)g.stream; }

ndl_backend make_backend(void) {
  ndl_backend b;
  b.name = "cuda";
  b.device = NDL_DEV_CUDA;
  b.compute = cuda_compute;
  b.fused_backward = cuda_fused_backward;
  b.alloc = cuda_alloc;
  b.free = cuda_free;
  b.copy = cuda_copy;
  b.fill = cuda_fill;
  b.strided_copy = cuda_strided_copy;
  b.accumulate = cuda_accumulate;
  b.sync = cuda_sync;
  b.optim_update = cuda_optim_update;
  b.gather_batch = cuda_gather_batch;
  b.graph_begin = cuda_graph_begin;
  b.graph_end = cuda_graph_end;
  b.graph_replay = cuda_graph_replay;
  b.graph_free = cuda_graph_free;
  b.stream = cuda_stream_handle;
  return b;
}

const ndl_backend g_backend = make_backend();

}  // namespace

int ndl_cuda_capturing(void) { return g.capturing; }

const char *ndl_cuda_rank_tag(void) {
  static char tag[48];
  const char *names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
  for (const char *n : names) {
    const char *v = getenv(n);
    if (v && *v) {
      snprintf(tag, sizeof tag, " on rank %.20s", v);
      return tag;
    }
  }
  return "";
}
void ndl_cuda_capture_break(void) { g.capture_broken = 1; }
cublasHandle_t ndl_cuda_cublas_on(cudaStream_t st) {
  if (st != g.cublas_stream) { /* cublasSetStream resets the workspace to cuBLAS's own pool: set ours again */
    NDL_CUBLAS_CHECK(ndl_cublas.set_stream(g.cublas, st));
    NDL_CUBLAS_CHECK(ndl_cublas.set_workspace(g.cublas, g.cublas_ws, kCublasWorkspace));
    g.cublas_stream = st;
  }
  return g.cublas;
}

void ndl_cuda_scratch_reset(void) {
  if (g.nblocks > 1 && !g.capturing && g.graphs_alive == 0) { /* fold the chain into one block */
    size_t total = 0;
    for (int i = 0; i < g.nblocks; i++) total += g.blocks[i].size;
    NDL_CUDA_CHECK(cudaStreamSynchronize(g.stream)); /* queued kernels may still read them */
    for (int i = 0; i < g.nblocks; i++) NDL_CUDA_CHECK(cudaFree(g.blocks[i].ptr));
    g.nblocks = 0;
    (void)scratch_grow(total); /* on failure the next request grows from nothing */
  }
  g.cur = 0;
  g.off = 0;
}

void *ndl_cuda_scratch(size_t bytes) {
  bytes = round_up(bytes ? bytes : 1);
  for (;;) {
    if (g.cur < g.nblocks) {
      scratch_block *b = &g.blocks[g.cur];
      if (g.off + bytes <= b->size) {
        void *p = b->ptr + g.off;
        g.off += bytes;
        return p;
      }
      if (g.cur + 1 < g.nblocks) { /* the next block of the chain */
        g.cur++;
        g.off = 0;
        continue;
      }
    }
    if (!scratch_grow(bytes)) return NULL;
    g.cur = g.nblocks - 1;
    g.off = 0;
  }
}

ndl_status ndl_cuda_scratch_fail(ndl_ctx *ctx, const char *what, size_t bytes) {
  return ndl_ctx_fail(ctx, NDL_ERR_NOMEM, "cuda: %s: out of device memory for %zu bytes of scratch%s", what, bytes,
                      g.capturing ? " while capturing a step (run it once uncaptured first)" : "");
}

ndl_cuda_view ndl_cuda_view_of(const ndl_tensor *t) {
  ndl_cuda_view v;
  v.base = t->data + t->offset;
  v.ndim = t->ndim;
  v.contiguous = ndl_tensor_is_contiguous(t);
  for (int d = 0; d < NDL_MAX_DIMS; d++) {
    v.shape[d] = d < t->ndim ? t->shape[d] : 1;
    v.strides[d] = d < t->ndim ? t->strides[d] : 0;
  }
  return v;
}

extern "C" const ndl_backend *ndl_backend_cuda(const char **why) {
  std::call_once(g_once, cuda_init);
  if (g_why) {
    if (why) *why = g_why;
    return NULL;
  }
  return &g_backend;
}
