/* autograd.h: reverse-mode differentiation over the nodes built by ops.h.
 * Gradients are computed with the same ops, so with create_graph the result is itself a graph
 * and can be differentiated again. All temporaries live in the step arena. */
#ifndef NDL_AUTOGRAD_H
#define NDL_AUTOGRAD_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Backpropagate out (seeded with out_grad, or ones when NULL) and accumulate (+=) into the
 * .grad of every leaf that requires a gradient (allocating a zeroed step tensor if .grad is NULL). */
ndl_status ndl_graph_backward(ndl_ctx *ctx, ndl_tensor *out, ndl_tensor *out_grad);

/* d(sum of out * out_grad)/d wrt[i] into grads[i] (zeros if wrt[i] does not reach out).
 * With create_graph the grads are differentiable nodes. Leaves' .grad are untouched. */
ndl_status ndl_graph_grad(ndl_ctx *ctx, ndl_tensor *out, ndl_tensor *out_grad, int n,
                          ndl_tensor *const *wrt, ndl_tensor **grads, int create_graph);

#ifdef __cplusplus
}
#endif
#endif
