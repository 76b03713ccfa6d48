/* step_graph.h: --cuda-graph: one training step's forward and backward captured once through the
 * backend's graph_begin/graph_end and replayed for every later full batch. */
#ifndef NDL_STEP_GRAPH_H
#define NDL_STEP_GRAPH_H

#include "core/backend.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds a step's forward, loss and backward in ctx (all device work queued on the backend). It may
 * be called twice for one step (a capture that failed, then eagerly): it must then undo the host
 * state the first call consumed (the trainer restores the shared RNG). */
typedef ndl_status (*ndl_step_fn)(void *arg, ndl_ctx *ctx, ndl_tensor **logits, ndl_tensor **loss);

typedef struct ndl_step_graph {
  const ndl_backend *be; /* borrowed */
  ndl_ctx *ctx;          /* the captured step's context: reset only here, so its addresses stay */
  void *exec;            /* the replayable step, NULL before capture */
  int warm;              /* the eager step in ctx ran: its arenas are the step's size */
  int off;               /* eager from now on: why says why, said once by the caller */
  char why[240];
  int said;              /* the caller reported why (--verbose) */
  ndl_tensor *logits, *loss; /* the captured step's outputs (in ctx) */
} ndl_step_graph;

/* A graph over backend be (which must have graph_begin); *out owned. NDL_ERR_NOMEM on failure. */
ndl_status ndl_step_graph_new(const ndl_backend *be, ndl_step_graph **out);
/* Stop capturing for good, with a reason for --verbose (the first reason stays). */
void ndl_step_graph_off(ndl_step_graph *g, const char *why);
/* Run one step's forward and backward. g NULL or off, or a partial batch (full 0): fn in eager_ctx.
 * Otherwise: the first full batch runs fn eagerly in g->ctx, the second is captured and replayed,
 * every later one replayed (fn not called); a failed capture turns g off and runs fn eagerly.
 * *logits and *loss are valid until the next call or the reset of the context they are in. */
ndl_status ndl_step_graph_run(ndl_step_graph *g, int full, ndl_ctx *eager_ctx, ndl_step_fn fn, void *arg,
                              ndl_tensor **logits, ndl_tensor **loss);
void ndl_step_graph_free(ndl_step_graph *g);

#ifdef __cplusplus
}
#endif
#endif
