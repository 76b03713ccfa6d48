/* cuda_matmul.cu: GEMMs through cuBLAS sgemm on row-major data (the row-major trick: C^T = B^T A^T
 * in cuBLAS's column-major terms, so no operand is copied). 2-D transposed views go through the
 * op flags, any other layout through a scratch copy; batched matmul folds batch dims into rows. */
#include "core/cuda/cuda_internal.h"

/* A 2-D view as an sgemm operand (core/cpu/cpu_backend.c's rule): pointer, op and leading dim. */
static const float *gemm_operand(const ndl_tensor *t, cublasOperation_t *op, int *ld, cudaStream_t st) {
  int64_t r = t->shape[0], c = t->shape[1];
  if (t->strides[1] == 1 && t->strides[0] >= (c > 1 ? c : 1) && (r == 1 || t->strides[0] > 0)) {
    *op = CUBLAS_OP_N; /* row-major as is: column-major, its transpose */
    *ld = (int)(r == 1 ? (c > 1 ? c : 1) : t->strides[0]);
    return ndl_tensor_ptr(t);
  }
  if (t->strides[0] == 1 && t->strides[1] >= (r > 1 ? r : 1) && c > 1) {
    *op = CUBLAS_OP_T;
    *ld = (int)t->strides[1];
    return ndl_tensor_ptr(t);
  }
  *op = CUBLAS_OP_N;
  *ld = (int)(c > 1 ? c : 1);
  return ndl_cuda_contiguous(t, st);
}

__global__ void scale_kernel(float *c, float beta, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    c[i] *= beta;
}

ndl_status ndl_cuda_gemm(ndl_ctx *ctx, const ndl_tensor *a, const ndl_tensor *b, float *c, float beta,
                         cudaStream_t st) {
  int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
  if (m == 0 || n == 0) return NDL_OK;
  if (k == 0) { /* BLAS semantics: C = beta * C, and beta = 0 overwrites C */
    if (beta == 0.0f) {
      NDL_CUDA_CHECK(cudaMemsetAsync(c, 0, (size_t)(m * n) * sizeof(float), st));
    } else if (beta != 1.0f) {
      scale_kernel<<<ndl_cuda_blocks(m * n), NDL_CUDA_THREADS, 0, st>>>(c, beta, m * n);
      NDL_CUDA_CHECK_LAUNCH();
    }
    return NDL_OK;
  }
  cublasOperation_t ta, tb;
  int lda, ldb;
  const float *pa = gemm_operand(a, &ta, &lda, st), *pb = gemm_operand(b, &tb, &ldb, st);
  if (!pa || !pb) return ndl_cuda_scratch_fail(ctx, "matmul operand", (size_t)(m * k + k * n) * sizeof(float));
  const float alpha = 1.0f;
  /* row-major C[m,n] = A B  <=>  column-major C^T[n,m] = B^T A^T */
  NDL_CUBLAS_CHECK(ndl_cublas.sgemm(ndl_cuda_cublas_on(st), tb, ta, (int)n, (int)m, (int)k, &alpha, pb, ldb, pa, lda,
                                    &beta, c, (int)n));
  return NDL_OK;
}

ndl_status ndl_cuda_matmul(ndl_ctx *ctx, ndl_tensor *node, cudaStream_t st) {
  const ndl_tensor *a = node->src[0], *b = node->src[1];
  if (a->ndim == 2) return ndl_cuda_gemm(ctx, a, b, ndl_tensor_ptr(node), 0.0f, st);
  /* batch dims fold into rows once a is contiguous */
  int64_t k = a->shape[a->ndim - 1], rows = 1;
  for (int d = 0; d < a->ndim - 1; d++) rows *= a->shape[d];
  int64_t rows2[2] = {rows, k};
  const float *pa = ndl_cuda_contiguous(a, st);
  if (!pa) return ndl_cuda_scratch_fail(ctx, "matmul input", (size_t)(rows * k) * sizeof(float));
  ndl_tensor a2;
  ndl_tensor_init_view(&a2, (float *)pa, 2, rows2);
  return ndl_cuda_gemm(ctx, &a2, b, ndl_tensor_ptr(node), 0.0f, st);
}
