/* ops.h: the differentiable op set. Each call checks shapes when the node is built (a message names
 * both shapes), computes the result on the CPU backend, and records the node when grad mode is on and
 * an input requires a gradient. Results are step tensors (freed by ndl_ctx_reset). On error the op
 * returns NULL and sets the context's sticky status; any op given a NULL input returns NULL.
 * No implicit broadcasting: element-wise inputs must have equal shapes (use ndl_broadcast_to). */
#ifndef NDL_OPS_H
#define NDL_OPS_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* element-wise, equal shapes */
ndl_tensor *ndl_add(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_sub(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_mul(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_div(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_pow(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_maximum(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
/* comparisons give 1.0f / 0.0f and carry no gradient */
ndl_tensor *ndl_eq(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_gt(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_ge(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);
ndl_tensor *ndl_gt_scalar(ndl_ctx *ctx, ndl_tensor *a, float s);

/* scalar and unary */
ndl_tensor *ndl_add_scalar(ndl_ctx *ctx, ndl_tensor *a, float s);
ndl_tensor *ndl_mul_scalar(ndl_ctx *ctx, ndl_tensor *a, float s);
ndl_tensor *ndl_div_scalar(ndl_ctx *ctx, ndl_tensor *a, float s);
/* s / a */
ndl_tensor *ndl_rdiv_scalar(ndl_ctx *ctx, ndl_tensor *a, float s);
ndl_tensor *ndl_pow_scalar(ndl_ctx *ctx, ndl_tensor *a, float s);
ndl_tensor *ndl_neg(ndl_ctx *ctx, ndl_tensor *a);
ndl_tensor *ndl_log(ndl_ctx *ctx, ndl_tensor *a);
ndl_tensor *ndl_exp(ndl_ctx *ctx, ndl_tensor *a);
ndl_tensor *ndl_relu(ndl_ctx *ctx, ndl_tensor *a);
ndl_tensor *ndl_tanh(ndl_ctx *ctx, ndl_tensor *a);

/* Reductions over a set of distinct axes (negative counts from the end), removing them;
 * axes == NULL reduces all axes to a 0-d tensor. */
ndl_tensor *ndl_sum(ndl_ctx *ctx, ndl_tensor *a, const int *axes, int naxes);
ndl_tensor *ndl_max(ndl_ctx *ctx, ndl_tensor *a, const int *axes, int naxes);
/* log(sum(exp(a))) over axes, max-shifted (stable for huge inputs). */
ndl_tensor *ndl_logsumexp(ndl_ctx *ctx, ndl_tensor *a, const int *axes, int naxes);
/* a - logsumexp over the last axis, broadcast back. */
ndl_tensor *ndl_logsoftmax(ndl_ctx *ctx, ndl_tensor *a);

/* views (no copy, except reshape of a non-contiguous tensor) */
/* One dim may be -1. */
ndl_tensor *ndl_reshape(ndl_ctx *ctx, ndl_tensor *a, int ndim, const int64_t *shape);
/* numpy rules: align right, size-1 (or new leading) dims stretch. */
ndl_tensor *ndl_broadcast_to(ndl_ctx *ctx, ndl_tensor *a, int ndim, const int64_t *shape);
/* axes is a permutation of 0..ndim-1. */
ndl_tensor *ndl_permute(ndl_ctx *ctx, ndl_tensor *a, const int *axes);
/* Swap two axes (default use: the last two). */
ndl_tensor *ndl_transpose(ndl_ctx *ctx, ndl_tensor *a, int axis0, int axis1);
/* Per dim start (0 <= start <= stop <= shape), stop, step >= 1; step NULL means 1. */
ndl_tensor *ndl_slice(ndl_ctx *ctx, ndl_tensor *a, const int64_t *start, const int64_t *stop,
                      const int64_t *step);
/* Contiguous copy of a (a itself if already contiguous). */
ndl_tensor *ndl_compact(ndl_ctx *ctx, ndl_tensor *a);

/* (x * mask) / keep in one pass: needle's Dropout with a given 0/1 mask (mask gets no gradient). Its
 * gradient is the same op applied to the incoming gradient, so it is differentiable to any order. */
ndl_tensor *ndl_dropout(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *mask, float keep);

/* a[..., m, k] x b[k, n] -> [..., m, n] (needle semantics, batched N-D x 2-D) on sgemm. */
ndl_tensor *ndl_matmul(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b);

/* Build a node from its op and inputs (used by autograd for slice's adjoint). */
ndl_tensor *ndl_unslice(ndl_ctx *ctx, ndl_tensor *g, const ndl_tensor *like_input,
                        const int64_t *start, const int64_t *step);

#ifdef __cplusplus
}
#endif
#endif
