/* op_impl.h: internals shared by the files that build op nodes and their gradients (ops.c,
 * nn_ops.c, autograd.c, the CPU backend). Not part of the public API. */
#ifndef NDL_OP_IMPL_H
#define NDL_OP_IMPL_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Keep the node's graph edges when grad mode is on and an input requires a gradient; strip them
 * otherwise. Clears grad/adj/name. Returns t. */
ndl_tensor *ndl_op_record(ndl_ctx *ctx, ndl_tensor *t);

/* During ndl_graph_backward: the contiguous gradient buffer a kernel may accumulate (+=) into
 * directly for t (a leaf requiring a gradient), allocating a zeroed one if needed; NULL otherwise. */
float *ndl_grad_sink(ndl_ctx *ctx, ndl_tensor *t);

/* c[m,n] = a[m,k] . b[k,n] + beta * c for 2-D views of any strides (transposed views go through
 * the sgemm flags); c contiguous. */
ndl_status ndl_cpu_gemm(ndl_ctx *ctx, const ndl_tensor *a, const ndl_tensor *b, float *c, float beta);

/* A 2-D view of t with its two axes swapped (no allocation). */
ndl_tensor ndl_view_transposed(const ndl_tensor *t);

/* g where a > 0, else 0, in one pass; no graph (relu's backward when no graph is built). */
ndl_tensor *ndl_relu_grad(ndl_ctx *ctx, ndl_tensor *g, ndl_tensor *a);

/* Gradients of a fused op's inputs (NULL where written through ndl_grad_sink or not needed). */
void ndl_fused_backward(ndl_ctx *ctx, ndl_tensor *node, ndl_tensor **grads);

#ifdef __cplusplus
}
#endif
#endif
