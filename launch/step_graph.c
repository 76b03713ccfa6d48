/* step_graph.c: --cuda-graph. The forward and backward of a full batch are captured once in a
 * context of their own (reset only here, so every address the graph holds stays valid) and replayed
 * for every later full batch. The first full batch runs eagerly in that context, so its arenas have
 * grown to the step's size and the capture allocates nothing. What the host fills during the step
 * (dropout masks) is recorded by the capture and filled and uploaded again before each replay
 * (core/host_feed.c), so the draws follow the eager run's. The gradient zeroing, all-reduce,
 * optimizer update and metrics stay eager around the replay: an optimizer's per-step scalars (Adam's
 * bias correction) are kernel arguments that a replay would freeze.
 * Leaves out: deciding when capture applies (launch/trainer_device.c: no dropout, no SyncBN). */
#include "launch/step_graph.h"

#include <stdio.h>
#include <string.h>

ndl_status ndl_step_graph_new(const ndl_backend *be, ndl_step_graph **out) {
  NDL_ASSERT(be && be->graph_begin && be->graph_end && be->graph_replay && be->graph_free && out);
  *out = NULL;
  ndl_step_graph *g = ndl_calloc(1, sizeof *g);
  if (!g || !(g->ctx = ndl_ctx_new_on(be))) {
    ndl_free(g);
    return ndl_errorf(NDL_ERR_NOMEM, "--cuda-graph: out of memory for the captured step's context");
  }
  g->be = be;
  *out = g;
  return NDL_OK;
}

void ndl_step_graph_off(ndl_step_graph *g, const char *why) {
  if (!g || g->off) return;
  g->off = 1;
  snprintf(g->why, sizeof g->why, "%s", why);
}

ndl_status ndl_step_graph_run(ndl_step_graph *g, int full, ndl_ctx *eager_ctx, ndl_step_fn fn, void *arg,
                              ndl_tensor **logits, ndl_tensor **loss) {
  if (!g || g->off || !full) return fn(arg, eager_ctx, logits, loss);
  if (g->exec) {
    if (ndl_ctx_feed(g->ctx, 1) != NDL_OK) return g->ctx->status; /* this step's host fills, uploaded */
    if (g->be->graph_replay(g->exec) != 0)
      return ndl_errorf(NDL_ERR_NOMEM, "--cuda-graph: the %s backend could not replay the captured step", g->be->name);
    *logits = g->logits;
    *loss = g->loss;
    return NDL_OK;
  }
  ndl_ctx_reset(g->ctx);
  if (!g->warm) {
    ndl_status st = fn(arg, g->ctx, logits, loss);
    g->warm = st == NDL_OK;
    return st;
  }
  if (g->be->graph_begin() != 0) {
    ndl_step_graph_off(g, "the backend could not start a capture");
    return fn(arg, eager_ctx, logits, loss);
  }
  ndl_tensor *lg = NULL, *ls = NULL;
  ndl_ctx_record_feeds(g->ctx, 1);
  ndl_status st = fn(arg, g->ctx, &lg, &ls);
  ndl_ctx_record_feeds(g->ctx, 0);
  void *exec = g->be->graph_end(); /* always ends the capture, even after a failed build */
  if (st != NDL_OK || !exec) {
    char why[200];
    snprintf(why, sizeof why, "capture failed (%s)", st != NDL_OK ? ndl_last_error() : "no graph came back");
    if (exec) g->be->graph_free(exec);
    ndl_ctx_reset(g->ctx);
    ndl_step_graph_off(g, why);
    return fn(arg, eager_ctx, logits, loss); /* nothing of the capture ran: the step runs eagerly */
  }
  g->exec = exec;
  g->logits = lg;
  g->loss = ls;
  if (ndl_ctx_feed(g->ctx, 0) != NDL_OK) return g->ctx->status; /* the fills made during the capture */
  if (g->be->graph_replay(exec) != 0)
    return ndl_errorf(NDL_ERR_NOMEM, "--cuda-graph: the %s backend could not replay the captured step", g->be->name);
  *logits = lg;
  *loss = ls;
  return NDL_OK;
}

void ndl_step_graph_free(ndl_step_graph *g) {
  if (!g) return;
  if (g->exec) g->be->graph_free(g->exec);
  ndl_ctx_free(g->ctx);
  ndl_free(g);
}
