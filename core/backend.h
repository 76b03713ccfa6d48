/* backend.h: the compute vtable behind the op set. ops.c builds and checks nodes; a backend fills
 * a node's (contiguous, already allocated) output from its inputs. The CPU backend is the oracle. */
#ifndef NDL_BACKEND_H
#define NDL_BACKEND_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_backend {
  const char *name;
  /* Compute node's output from node->src and node params; returns a status (set on ctx too). */
  ndl_status (*compute)(ndl_ctx *ctx, ndl_tensor *node);
  /* Gradients of a fused node's inputs from node->adj (NULL where accumulated through a sink). */
  void (*fused_backward)(ndl_ctx *ctx, ndl_tensor *node, ndl_tensor **grads);
} ndl_backend;

/* The CPU backend (OpenBLAS sgemm + C loops). */
const ndl_backend *ndl_backend_cpu(void);

#ifdef __cplusplus
}
#endif
#endif
