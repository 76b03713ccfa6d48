/* elementwise.c: element-wise, scalar and unary loops, strided copy/store/accumulate, and the
 * inner-block reductions of the CPU backend. One switch per call, a tight loop per case (no function
 * pointer per element), so the compiler vectorizes the contiguous cases. */
#include <math.h>
#include <string.h>

#include "core/cpu/cpu_kernels.h"
#include "core/kernel_math.h"
#include "core/simd.h"

/* Walk every element of a strided view in row-major order: body sees `off` (source offset) and `i`. */
#define STRIDED_FOR(t, BODY)                                                      \
  do {                                                                            \
    int nd_ = (t)->ndim;                                                          \
    int64_t n_ = ndl_tensor_numel(t), idx_[NDL_MAX_DIMS] = {0};                    \
    if (n_ == 0) break;                                                           \
    int64_t inner_ = nd_ ? (t)->shape[nd_ - 1] : 1;                                \
    int64_t istride_ = nd_ ? (t)->strides[nd_ - 1] : 0;                            \
    for (int64_t base_i_ = 0; base_i_ < n_; base_i_ += inner_) {                   \
      int64_t boff_ = (t)->offset;                                                \
      for (int d_ = 0; d_ < nd_ - 1; d_++) boff_ += idx_[d_] * (t)->strides[d_];   \
      for (int64_t j_ = 0; j_ < inner_; j_++) {                                   \
        int64_t off = boff_ + j_ * istride_, i = base_i_ + j_;                     \
        (void)off; (void)i;                                                       \
        BODY;                                                                     \
      }                                                                           \
      for (int d_ = nd_ - 2; d_ >= 0; d_--) {                                     \
        if (++idx_[d_] < (t)->shape[d_]) break;                                   \
        idx_[d_] = 0;                                                             \
      }                                                                           \
    }                                                                             \
  } while (0)

void ndl_cpu_strided_copy(const ndl_tensor *src, float *out) {
  if (ndl_tensor_is_contiguous(src)) {
    memcpy(out, ndl_tensor_ptr(src), (size_t)ndl_tensor_numel(src) * sizeof(float));
    return;
  }
  const float *d = src->data;
  STRIDED_FOR(src, out[i] = d[off]);
}

void ndl_cpu_strided_store(const float *src, const ndl_tensor *dst) {
  float *d = dst->data;
  STRIDED_FOR(dst, d[off] = src[i]);
}

void ndl_cpu_accumulate(float *dst, const ndl_tensor *src) {
  const float *s = src->data;
  if (ndl_tensor_is_contiguous(src)) {
    const float *p = ndl_tensor_ptr(src);
    int64_t n = ndl_tensor_numel(src);
    for (int64_t i = 0; i < n; i++) dst[i] += p[i];
    return;
  }
  STRIDED_FOR(src, dst[i] += s[off]);
}

NDL_SIMD_CLONES void ndl_cpu_binary(ndl_op op, const float *restrict a, const float *restrict b, float *restrict out,
                    int64_t n) {
  int64_t i;
  switch (op) {
    case NDL_OP_ADD: for (i = 0; i < n; i++) out[i] = a[i] + b[i]; break;
    case NDL_OP_SUB: for (i = 0; i < n; i++) out[i] = a[i] - b[i]; break;
    case NDL_OP_MUL: for (i = 0; i < n; i++) out[i] = a[i] * b[i]; break;
    case NDL_OP_DIV: for (i = 0; i < n; i++) out[i] = a[i] / b[i]; break;
    case NDL_OP_POW: for (i = 0; i < n; i++) out[i] = powf(a[i], b[i]); break;
    case NDL_OP_MAXIMUM: /* NaN in either input gives NaN (numpy); one blend per element */
      for (i = 0; i < n; i++) out[i] = a[i] >= b[i] || a[i] != a[i] ? a[i] : b[i];
      break;
    case NDL_OP_EQ: for (i = 0; i < n; i++) out[i] = a[i] == b[i] ? 1.0f : 0.0f; break;
    case NDL_OP_GT: for (i = 0; i < n; i++) out[i] = a[i] > b[i] ? 1.0f : 0.0f; break;
    case NDL_OP_GE: for (i = 0; i < n; i++) out[i] = a[i] >= b[i] ? 1.0f : 0.0f; break;
    case NDL_OP_RELU_GRAD: for (i = 0; i < n; i++) out[i] = b[i] > 0.0f ? a[i] : 0.0f; break;
    default: NDL_ABORT("cpu binary: op %s is not binary", ndl_op_name(op));
  }
}

NDL_SIMD_CLONES void ndl_cpu_masked_div(const float *restrict x, const float *restrict mask, float keep,
                                        float *restrict out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = ndl_km_dropout(x[i], mask[i], keep);
}

NDL_SIMD_CLONES void ndl_cpu_unary(ndl_op op, const float *restrict a, float s, float *restrict out, int64_t n) {
  int64_t i;
  switch (op) {
    case NDL_OP_ADD_SCALAR: for (i = 0; i < n; i++) out[i] = a[i] + s; break;
    case NDL_OP_MUL_SCALAR: for (i = 0; i < n; i++) out[i] = a[i] * s; break;
    case NDL_OP_DIV_SCALAR: for (i = 0; i < n; i++) out[i] = a[i] / s; break;
    case NDL_OP_RDIV_SCALAR: for (i = 0; i < n; i++) out[i] = s / a[i]; break;
    case NDL_OP_POW_SCALAR:
      if (s == 2.0f) for (i = 0; i < n; i++) out[i] = a[i] * a[i];
      else for (i = 0; i < n; i++) out[i] = powf(a[i], s);
      break;
    case NDL_OP_GT_SCALAR: for (i = 0; i < n; i++) out[i] = a[i] > s ? 1.0f : 0.0f; break;
    case NDL_OP_NEG: for (i = 0; i < n; i++) out[i] = -a[i]; break;
    case NDL_OP_LOG: for (i = 0; i < n; i++) out[i] = logf(a[i]); break;
    case NDL_OP_EXP: for (i = 0; i < n; i++) out[i] = expf(a[i]); break;
    case NDL_OP_RELU: /* !(a <= 0): NaN stays NaN */
      for (i = 0; i < n; i++) out[i] = !(a[i] <= 0.0f) ? a[i] : 0.0f;
      break;
    case NDL_OP_TANH: for (i = 0; i < n; i++) out[i] = tanhf(a[i]); break;
    default: NDL_ABORT("cpu unary: op %s is not unary", ndl_op_name(op));
  }
}

/* Largest of x[0..n) (n >= 1), NaN when any element is NaN (numpy's max; a plain `x > m` skips NaN). */
static inline float max_nan(const float *x, int64_t n) {
  float m = x[0];
  for (int64_t j = 1; j < n; j++) m = ndl_km_max_nan(m, x[j]);
  return m;
}

void ndl_cpu_reduce(ndl_op op, const float *in, float *out, int64_t outer, int64_t inner) {
  for (int64_t o = 0; o < outer; o++) {
    const float *x = in + o * inner;
    switch (op) {
      case NDL_OP_SUM: {
        double s = 0.0;
        for (int64_t j = 0; j < inner; j++) s += x[j];
        out[o] = (float)s;
        break;
      }
      case NDL_OP_MAX:
        out[o] = inner ? max_nan(x, inner) : -INFINITY;
        break;
      case NDL_OP_LOGSUMEXP: {
        float m = inner ? max_nan(x, inner) : -INFINITY;
        if (isinf(m) || m != m) {
          out[o] = m; /* all -inf, +inf present, or NaN present */
          break;
        }
        double s = 0.0;
        for (int64_t j = 0; j < inner; j++) s += ndl_km_exp_shifted(x[j], m);
        out[o] = ndl_km_lse_f(s, m);
        break;
      }
      default: NDL_ABORT("cpu reduce: op %s is not a reduction", ndl_op_name(op));
    }
  }
}
