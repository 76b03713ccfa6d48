/* cuda_elementwise.cu: element-wise kernels of the CUDA backend: strided copy/store/accumulate, fill,
 * the binary, scalar and unary ops (inputs read through their strides, so broadcast and permuted
 * views need no copy), dropout, unslice and the batch gather. One thread per element, grid-stride
 * loops; the arithmetic is the CPU backend's (core/cpu/elementwise.c), expression for expression. */
#include "core/cuda/cuda_internal.h"
#include "core/kernel_math.h"

#define GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---- kernels ---- */

__global__ void strided_copy_kernel(ndl_cuda_view v, float *out, int64_t n) {
  GRID_STRIDE(i, n) out[i] = v.base[ndl_cuda_view_off(v, i)];
}

__global__ void strided_store_kernel(ndl_cuda_view src, ndl_cuda_view dst, int64_t n) {
  float *d = (float *)dst.base;
  GRID_STRIDE(i, n) d[ndl_cuda_view_off(dst, i)] = src.base[ndl_cuda_view_off(src, i)];
}

__global__ void accumulate_kernel(float *dst, ndl_cuda_view v, int64_t n) {
  GRID_STRIDE(i, n) dst[i] += v.base[ndl_cuda_view_off(v, i)];
}

__global__ void fill_kernel(float *dst, float value, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = value;
}

__global__ void binary_kernel(ndl_op op, ndl_cuda_view va, ndl_cuda_view vb, float *out, int64_t n) {
  GRID_STRIDE(i, n) {
    float a = va.base[ndl_cuda_view_off(va, i)], b = vb.base[ndl_cuda_view_off(vb, i)], r;
    switch (op) {
      case NDL_OP_ADD: r = a + b; break;
      case NDL_OP_SUB: r = a - b; break;
      case NDL_OP_MUL: r = a * b; break;
      case NDL_OP_DIV: r = a / b; break;
      case NDL_OP_POW: r = powf(a, b); break;
      case NDL_OP_MAXIMUM: r = a >= b || a != a ? a : b; break;
      case NDL_OP_EQ: r = a == b ? 1.0f : 0.0f; break;
      case NDL_OP_GT: r = a > b ? 1.0f : 0.0f; break;
      case NDL_OP_GE: r = a >= b ? 1.0f : 0.0f; break;
      case NDL_OP_RELU_GRAD: r = b > 0.0f ? a : 0.0f; break;
      default: r = __int_as_float(0x7fc00000); break; /* unreachable: the launcher checks op */
    }
    out[i] = r;
  }
}

__global__ void unary_kernel(ndl_op op, ndl_cuda_view va, float s, float *out, int64_t n) {
  GRID_STRIDE(i, n) {
    float a = va.base[ndl_cuda_view_off(va, i)], r;
    switch (op) {
      case NDL_OP_ADD_SCALAR: r = a + s; break;
      case NDL_OP_MUL_SCALAR: r = a * s; break;
      case NDL_OP_DIV_SCALAR: r = a / s; break;
      case NDL_OP_RDIV_SCALAR: r = s / a; break;
      case NDL_OP_POW_SCALAR: r = s == 2.0f ? a * a : powf(a, s); break;
      case NDL_OP_GT_SCALAR: r = a > s ? 1.0f : 0.0f; break;
      case NDL_OP_NEG: r = -a; break;
      case NDL_OP_LOG: r = logf(a); break;
      case NDL_OP_EXP: r = expf(a); break;
      case NDL_OP_RELU: r = !(a <= 0.0f) ? a : 0.0f; break; /* NaN stays NaN */
      case NDL_OP_TANH: r = tanhf(a); break;
      default: r = __int_as_float(0x7fc00000); break; /* unreachable: the launcher checks op */
    }
    out[i] = r;
  }
}

__global__ void dropout_kernel(ndl_cuda_view vx, ndl_cuda_view vm, float keep, float *out, int64_t n) {
  GRID_STRIDE(i, n) out[i] = ndl_km_dropout(vx.base[ndl_cuda_view_off(vx, i)], vm.base[ndl_cuda_view_off(vm, i)], keep);
}

__global__ void gather_kernel(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                              const int64_t *idx, int64_t n, int64_t row_len) {
  GRID_STRIDE(e, n * row_len) {
    int64_t i = e / row_len, c = e - i * row_len, r = idx[i];
    dst[e] = src[r * row_len + c];
    if (c == 0 && dst_labels) dst_labels[i] = labels[r];
  }
  if (row_len == 0 && dst_labels) /* label-only gather */
    GRID_STRIDE(i, n) dst_labels[i] = labels[idx[i]];
}

/* ---- launchers ---- */

void ndl_cuda_strided_copy(const ndl_tensor *src, float *out, cudaStream_t st) {
  int64_t n = ndl_tensor_numel(src);
  if (n == 0) return;
  if (ndl_tensor_is_contiguous(src)) {
    NDL_CUDA_CHECK(cudaMemcpyAsync(out, ndl_tensor_ptr(src), (size_t)n * sizeof(float),
                                   cudaMemcpyDeviceToDevice, st));
    return;
  }
  strided_copy_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(ndl_cuda_view_of(src), out, n);
  NDL_CUDA_CHECK_LAUNCH();
}

void ndl_cuda_accumulate(float *dst, const ndl_tensor *src, cudaStream_t st) {
  int64_t n = ndl_tensor_numel(src);
  if (n == 0) return;
  accumulate_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(dst, ndl_cuda_view_of(src), n);
  NDL_CUDA_CHECK_LAUNCH();
}

void ndl_cuda_fill(float *dst, float value, int64_t n, cudaStream_t st) {
  if (n <= 0) return;
  fill_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(dst, value, n);
  NDL_CUDA_CHECK_LAUNCH();
}

const float *ndl_cuda_contiguous(const ndl_tensor *t, cudaStream_t st) {
  if (ndl_tensor_is_contiguous(t)) return ndl_tensor_ptr(t);
  float *tmp = (float *)ndl_cuda_scratch((size_t)ndl_tensor_numel(t) * sizeof(float));
  if (tmp) ndl_cuda_strided_copy(t, tmp, st);
  return tmp;
}

void ndl_cuda_binary(ndl_op op, const ndl_tensor *a, const ndl_tensor *b, float *out, int64_t n, cudaStream_t st) {
  switch (op) {
    case NDL_OP_ADD: case NDL_OP_SUB: case NDL_OP_MUL: case NDL_OP_DIV: case NDL_OP_POW:
    case NDL_OP_MAXIMUM: case NDL_OP_EQ: case NDL_OP_GT: case NDL_OP_GE: case NDL_OP_RELU_GRAD: break;
    default: NDL_ABORT("cuda binary: op %s is not binary", ndl_op_name(op));
  }
  if (n == 0) return;
  binary_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(op, ndl_cuda_view_of(a), ndl_cuda_view_of(b), out, n);
  NDL_CUDA_CHECK_LAUNCH();
}

void ndl_cuda_unary(ndl_op op, const ndl_tensor *a, float s, float *out, int64_t n, cudaStream_t st) {
  switch (op) {
    case NDL_OP_ADD_SCALAR: case NDL_OP_MUL_SCALAR: case NDL_OP_DIV_SCALAR: case NDL_OP_RDIV_SCALAR:
    case NDL_OP_POW_SCALAR: case NDL_OP_GT_SCALAR: case NDL_OP_NEG: case NDL_OP_LOG: case NDL_OP_EXP:
    case NDL_OP_RELU: case NDL_OP_TANH: break;
    default: NDL_ABORT("cuda unary: op %s is not unary", ndl_op_name(op));
  }
  if (n == 0) return;
  unary_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(op, ndl_cuda_view_of(a), s, out, n);
  NDL_CUDA_CHECK_LAUNCH();
}

void ndl_cuda_dropout(const ndl_tensor *x, const ndl_tensor *mask, float keep, float *out, int64_t n,
                      cudaStream_t st) {
  if (n == 0) return;
  dropout_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(
      ndl_cuda_view_of(x), ndl_cuda_view_of(mask), keep, out, n);
  NDL_CUDA_CHECK_LAUNCH();
}

void ndl_cuda_unslice(const ndl_tensor *node, float *out, cudaStream_t st) {
  int64_t n = ndl_tensor_numel(node);
  ndl_cuda_fill(out, 0.0f, n, st);
  /* the gradient written into the sliced view of the output (core/cpu/cpu_backend.c's view) */
  ndl_tensor view = *node;
  view.data = out;
  view.offset = 0;
  for (int d = 0; d < node->ndim; d++) {
    view.offset += node->iparams[d] * node->strides[d];
    view.strides[d] = node->strides[d] * node->iparams[NDL_MAX_DIMS + d];
    view.shape[d] = node->src[0]->shape[d];
  }
  int64_t m = ndl_tensor_numel(&view);
  if (m == 0) return;
  ndl_cuda_view dst = ndl_cuda_view_of(&view);
  dst.contiguous = 0; /* written through the strides */
  strided_store_kernel<<<ndl_cuda_blocks(m), NDL_CUDA_THREADS, 0, st>>>(
      ndl_cuda_view_of(node->src[0]), dst, m);
  NDL_CUDA_CHECK_LAUNCH();
}

void ndl_cuda_gather_batch(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                           const int64_t *idx, int64_t n, int64_t row_len, cudaStream_t st) {
  if (n <= 0) return;
  int64_t work = row_len > 0 ? n * row_len : n;
  gather_kernel<<<ndl_cuda_blocks(work), NDL_CUDA_THREADS, 0, st>>>(dst, dst_labels, src, labels, idx, n, row_len);
  NDL_CUDA_CHECK_LAUNCH();
}
