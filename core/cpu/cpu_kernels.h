/* cpu_kernels.h: plain C loops of the CPU backend over contiguous float arrays, plus the strided
 * copy that makes any view contiguous. Internal to core/cpu/ (callers elsewhere go through the
 * backend vtable, core/backend.h; tests of the CPU kernels may include it). */
#ifndef NDL_CPU_KERNELS_H
#define NDL_CPU_KERNELS_H

#include <stdint.h>

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Contiguous data of t: its own memory when possible, else a step-arena copy (NULL on OOM). */
const float *ndl_cpu_contiguous(ndl_ctx *ctx, const ndl_tensor *t);
/* Copy any strided view into out in row-major order. */
void ndl_cpu_strided_copy(const ndl_tensor *src, float *out);
/* Write contiguous src (row-major) into the strided view dst. */
void ndl_cpu_strided_store(const float *src, const ndl_tensor *dst);
/* dst[i] += src (any strides, row-major order). */
void ndl_cpu_accumulate(float *dst, const ndl_tensor *src);
/* out = a op b for ADD SUB MUL DIV POW MAXIMUM EQ GT GE. */
void ndl_cpu_binary(ndl_op op, const float *a, const float *b, float *out, int64_t n);
/* out = (x * mask) / keep (needle's dropout arithmetic, one pass). */
void ndl_cpu_masked_div(const float *x, const float *mask, float keep, float *out, int64_t n);
/* out = op(a, s) for the *_SCALAR ops and the unary ops (s unused there). */
void ndl_cpu_unary(ndl_op op, const float *a, float s, float *out, int64_t n);
/* out[i] = reduce(in[i*inner .. (i+1)*inner)) for SUM, MAX, LOGSUMEXP. */
void ndl_cpu_reduce(ndl_op op, const float *in, float *out, int64_t outer, int64_t inner);

/* c[m,n] = a[m,k] . b[k,n] + beta * c for 2-D views of any strides (transposed views go through
 * the sgemm flags); c contiguous. */
ndl_status ndl_cpu_gemm(ndl_ctx *ctx, const ndl_tensor *a, const ndl_tensor *b, float *c, float beta);

/* One optimizer update over the flat buffers, split over the thread pool (optim_kernels.c). */
void ndl_cpu_optim_update(const ndl_optim_update *u);

/* Fused ops (nn_kernels.c): forward of LINEAR, BATCHNORM, LAYERNORM, SOFTMAX_CE and their backward
 * into the given targets (backend.h). */
ndl_status ndl_cpu_fused_forward(ndl_ctx *ctx, ndl_tensor *node);
void ndl_cpu_fused_backward(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *targets);

#ifdef __cplusplus
}
#endif
#endif
