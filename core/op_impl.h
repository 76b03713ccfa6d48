/* op_impl.h: internals shared by the files that build op nodes and their gradients (ops.c,
 * nn_ops.c, autograd.c). Not for backends (they see backend.h only). Not part of the public API. */
#ifndef NDL_OP_IMPL_H
#define NDL_OP_IMPL_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Keep the node's graph edges when grad mode is on and an input requires a gradient; strip them
 * otherwise. Clears grad/adj/name. Returns t. */
ndl_tensor *ndl_op_record(ndl_ctx *ctx, ndl_tensor *t);

/* 1 when every non-NULL in[0..n) lives on the context backend's device; else 0 with NDL_ERR_ARG on
 * ctx naming both devices (what names the op). */
int ndl_check_devices(ndl_ctx *ctx, const char *what, const ndl_tensor *const *in, int n);

/* During ndl_graph_backward: the contiguous gradient buffer a kernel may accumulate (+=) into
 * directly for t (a leaf requiring a gradient), allocating a zeroed one if needed; NULL otherwise. */
float *ndl_grad_sink(ndl_ctx *ctx, ndl_tensor *t);

/* g where a > 0, else 0, in one pass; no graph (relu's backward when no graph is built). */
ndl_tensor *ndl_relu_grad(ndl_ctx *ctx, ndl_tensor *g, ndl_tensor *a);

/* Gradients of a fused op's inputs: the backend writes each into its leaf's gradient buffer
 * (accumulating, via ndl_grad_sink) or into a new grads[i] (NULL where not needed). */
void ndl_fused_backward(ndl_ctx *ctx, ndl_tensor *node, ndl_tensor **grads);

#ifdef __cplusplus
}
#endif
#endif
