/* cpu_backend.c: the CPU backend's compute switch and its vtable (host memory: malloc, memcpy).
 * Non-contiguous inputs are made contiguous in step-arena scratch first; reductions move the
 * reduced axes last and reduce inner blocks; matmul goes straight into cblas_sgemm, expressing 2-D
 * transposed views through the sgemm flags. */
#include <cblas.h>
#include <string.h>

#include "core/backend.h"
#include "core/blas_select.h"
#include "core/cpu/cpu_kernels.h"
#include "core/threadpool.h"

const float *ndl_cpu_contiguous(ndl_ctx *ctx, const ndl_tensor *t) {
  if (ndl_tensor_is_contiguous(t)) return ndl_tensor_ptr(t);
  float *tmp = ndl_ctx_alloc(ctx, (size_t)ndl_tensor_numel(t) * sizeof(float));
  if (tmp) ndl_cpu_strided_copy(t, tmp);
  return tmp;
}

static ndl_status compute_reduce(ndl_ctx *ctx, ndl_tensor *node) {
  ndl_tensor view;
  int64_t inner = ndl_reduce_view(node, &view);
  const float *in = ndl_cpu_contiguous(ctx, &view);
  if (!in) return ctx->status;
  ndl_cpu_reduce(node->op, in, ndl_tensor_ptr(node), ndl_tensor_numel(node), inner);
  return NDL_OK;
}

/* Describe a 2-D view as an sgemm operand: pointer, transpose flag and leading dimension. */
static const float *gemm_operand(ndl_ctx *ctx, const ndl_tensor *t, enum CBLAS_TRANSPOSE *trans,
                                 int *ld) {
  int64_t r = t->shape[0], c = t->shape[1];
  if (t->strides[1] == 1 && t->strides[0] >= (c > 1 ? c : 1) && (r == 1 || t->strides[0] > 0)) {
    *trans = CblasNoTrans;
    *ld = (int)(r == 1 ? (c > 1 ? c : 1) : t->strides[0]);
    return ndl_tensor_ptr(t);
  }
  if (t->strides[0] == 1 && t->strides[1] >= (r > 1 ? r : 1) && c > 1) {
    *trans = CblasTrans;
    *ld = (int)t->strides[1];
    return ndl_tensor_ptr(t);
  }
  *trans = CblasNoTrans;
  *ld = (int)(c > 1 ? c : 1);
  return ndl_cpu_contiguous(ctx, t);
}

/* GEMMs of at least this many FLOPs are computed as NDL_GEMM_BLOCKS fixed row blocks, in parallel
 * when the pool has threads and one after the other otherwise, so the result is the same for any
 * thread count (OpenBLAS may round a block differently from the whole). Smaller GEMMs gain nothing
 * from a split at this workload's sizes. */
#define NDL_GEMM_SPLIT_FLOPS 8e6
#define NDL_GEMM_BLOCKS 2

typedef struct gemm_job {
  enum CBLAS_TRANSPOSE ta, tb;
  int64_t m, n, k;
  const float *a;
  int lda;
  const float *b;
  int ldb;
  float beta;
  float *c;
  int parts;
} gemm_job;

/* Rows [part*m/parts, (part+1)*m/parts) of C, one single-threaded sgemm. */
static void gemm_part(void *arg, int64_t part) {
  const gemm_job *j = arg;
  int64_t r0 = j->m * part / j->parts, r1 = j->m * (part + 1) / j->parts;
  if (r1 <= r0) return;
  const float *a = j->ta == CblasNoTrans ? j->a + r0 * j->lda : j->a + r0;
  cblas_sgemm(CblasRowMajor, j->ta, j->tb, (int)(r1 - r0), (int)j->n, (int)j->k, 1.0f, a, j->lda, j->b,
              j->ldb, j->beta, j->c + r0 * j->n, (int)j->n);
}

ndl_status ndl_cpu_gemm(ndl_ctx *ctx, const ndl_tensor *a, const ndl_tensor *b, float *c, float beta) {
  int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
  if (m == 0 || n == 0) return NDL_OK;
  if (k == 0) { /* BLAS semantics: C = beta * C, and beta = 0 overwrites C (no 0 * garbage) */
    if (beta == 0.0f) memset(c, 0, (size_t)(m * n) * sizeof(float));
    else if (beta != 1.0f)
      for (int64_t i = 0; i < m * n; i++) c[i] *= beta;
    return NDL_OK;
  }
  enum CBLAS_TRANSPOSE ta, tb;
  int lda, ldb;
  const float *pa = gemm_operand(ctx, a, &ta, &lda), *pb = gemm_operand(ctx, b, &tb, &ldb);
  if (!pa || !pb) return ctx->status;
  gemm_job job = {ta, tb, m, n, k, pa, lda, pb, ldb, beta, c, 1};
  if (m >= 16 * NDL_GEMM_BLOCKS && 2.0 * (double)m * n * k >= NDL_GEMM_SPLIT_FLOPS) {
    job.parts = NDL_GEMM_BLOCKS;
    if (ndl_blas_concurrent_ok()) {
      ndl_parallel_for(NDL_GEMM_BLOCKS, gemm_part, &job);
    } else { /* a BLAS that is not thread-safe: the same blocks, one after the other */
      for (int p = 0; p < NDL_GEMM_BLOCKS; p++) gemm_part(&job, p);
    }
  } else {
    gemm_part(&job, 0);
  }
  return NDL_OK;
}

static ndl_status compute_matmul(ndl_ctx *ctx, ndl_tensor *node) {
  const ndl_tensor *a = node->src[0], *b = node->src[1];
  if (a->ndim == 2) return ndl_cpu_gemm(ctx, a, b, ndl_tensor_ptr(node), 0.0f);
  /* batch dims fold into rows once a is contiguous */
  int64_t k = a->shape[a->ndim - 1], rows = 1;
  for (int d = 0; d < a->ndim - 1; d++) rows *= a->shape[d];
  int64_t rows2[2] = {rows, k};
  const float *pa = ndl_cpu_contiguous(ctx, a);
  if (!pa) return ctx->status;
  ndl_tensor a2;
  ndl_tensor_init_view(&a2, (float *)pa, 2, rows2);
  return ndl_cpu_gemm(ctx, &a2, b, ndl_tensor_ptr(node), 0.0f);
}

static ndl_status cpu_compute(ndl_ctx *ctx, ndl_tensor *node) {
  float *out = ndl_tensor_ptr(node);
  int64_t n = ndl_tensor_numel(node);
  switch (node->op) {
    case NDL_OP_ADD: case NDL_OP_SUB: case NDL_OP_MUL: case NDL_OP_DIV: case NDL_OP_POW:
    case NDL_OP_MAXIMUM: case NDL_OP_EQ: case NDL_OP_GT: case NDL_OP_GE: case NDL_OP_RELU_GRAD: {
      const float *a = ndl_cpu_contiguous(ctx, node->src[0]);
      const float *b = ndl_cpu_contiguous(ctx, node->src[1]);
      if (!a || !b) return ctx->status;
      ndl_cpu_binary(node->op, a, b, out, n);
      return NDL_OK;
    }
    case NDL_OP_DROPOUT: {
      const float *x = ndl_cpu_contiguous(ctx, node->src[0]), *m = ndl_cpu_contiguous(ctx, node->src[1]);
      if (!x || !m) return ctx->status;
      ndl_cpu_masked_div(x, m, node->scalar, out, n);
      return NDL_OK;
    }
    case NDL_OP_ADD_SCALAR: case NDL_OP_MUL_SCALAR: case NDL_OP_DIV_SCALAR:
    case NDL_OP_RDIV_SCALAR: case NDL_OP_POW_SCALAR: case NDL_OP_GT_SCALAR: case NDL_OP_NEG:
    case NDL_OP_LOG: case NDL_OP_EXP: case NDL_OP_RELU: case NDL_OP_TANH: {
      const float *a = ndl_cpu_contiguous(ctx, node->src[0]);
      if (!a) return ctx->status;
      ndl_cpu_unary(node->op, a, node->scalar, out, n);
      return NDL_OK;
    }
    case NDL_OP_SUM: case NDL_OP_MAX: case NDL_OP_LOGSUMEXP:
      return compute_reduce(ctx, node);
    case NDL_OP_RESHAPE: case NDL_OP_COMPACT:
      ndl_cpu_strided_copy(node->src[0], out);
      return NDL_OK;
    case NDL_OP_UNSLICE: {
      /* zeros, then the gradient written into the sliced view of the output */
      memset(out, 0, (size_t)n * sizeof(float));
      ndl_tensor view = *node;
      for (int d = 0; d < node->ndim; d++) {
        view.offset += node->iparams[d] * node->strides[d];
        view.strides[d] = node->strides[d] * node->iparams[NDL_MAX_DIMS + d];
        view.shape[d] = node->src[0]->shape[d];
      }
      const float *g = ndl_cpu_contiguous(ctx, node->src[0]);
      if (!g) return ctx->status;
      ndl_cpu_strided_store(g, &view);
      return NDL_OK;
    }
    case NDL_OP_MATMUL:
      return compute_matmul(ctx, node);
    case NDL_OP_LINEAR: case NDL_OP_BATCHNORM: case NDL_OP_LAYERNORM: case NDL_OP_SOFTMAX_CE:
      return ndl_cpu_fused_forward(ctx, node);
    default:
      NDL_ABORT("cpu backend: op %s has no compute (views are built in ops.c)", ndl_op_name(node->op));
  }
}

static void *cpu_alloc(size_t bytes) { return ndl_malloc(bytes); }
static void cpu_free(void *p) { ndl_free(p); }
static void cpu_copy(void *dst, const void *src, size_t bytes, ndl_copy_kind kind) {
  (void)kind; /* host and "device" memory are the same */
  if (bytes) memcpy(dst, src, bytes);
}
static void cpu_fill(float *dst, float value, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = value;
}
static void cpu_sync(void) {}
static void cpu_gather_batch(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                             const int64_t *idx, int64_t n, int64_t row_len) {
  for (int64_t i = 0; i < n; i++) {
    memcpy(dst + i * row_len, src + idx[i] * row_len, (size_t)row_len * sizeof(float));
    dst_labels[i] = labels[idx[i]];
  }
}

static const ndl_backend cpu_backend = {
    .name = "cpu",
    .device = NDL_DEV_CPU,
    .compute = cpu_compute,
    .fused_backward = ndl_cpu_fused_backward,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .strided_copy = ndl_cpu_strided_copy,
    .accumulate = ndl_cpu_accumulate,
    .sync = cpu_sync,
    .optim_update = ndl_cpu_optim_update,
    .gather_batch = cpu_gather_batch,
};

const ndl_backend *ndl_backend_cpu(void) { return &cpu_backend; }
