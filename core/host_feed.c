/* host_feed.c: tensors the host fills every step (dropout masks), in a step that is captured once
 * and replayed (--cuda-graph): an upload cannot be part of the graph, so while a capture records, a
 * host fill is done and kept (its function, a copy of its argument, its host buffer, its tensor, all
 * in the context's arena, which the captured step's context never resets), and before each replay
 * ndl_ctx_feed runs the fills again, in the captured order, and uploads them to the same addresses.
 * Leaves out: deciding when a step is captured (launch/step_graph.c). */
#include <string.h>

#include "core/backend.h"
#include "core/tensor.h"

typedef struct ndl_host_feed {
  struct ndl_host_feed *next;
  ndl_tensor *t;
  float *host; /* numel floats: the values to upload */
  int64_t n;
  ndl_host_fill_fn fill;
  unsigned char arg[NDL_HOST_FEED_ARG];
} ndl_host_feed;

ndl_status ndl_tensor_host_fill(ndl_ctx *ctx, ndl_tensor *t, ndl_host_fill_fn fill, const void *arg,
                                size_t arg_bytes) {
  NDL_ASSERT(ctx && t && fill && arg_bytes <= NDL_HOST_FEED_ARG);
  float *host = ndl_tensor_host_begin(ctx, t);
  if (!host) return ctx->status;
  int64_t n = ndl_tensor_numel(t);
  fill(arg, host, n);
  if (!ctx->recording_feeds || host == ndl_tensor_ptr(t)) { /* not captured, or host memory itself */
    ndl_tensor_host_end(ctx, t, host);
    return ctx->status;
  }
  ndl_host_feed *f = ndl_ctx_alloc(ctx, sizeof *f);
  if (!f) return ctx->status;
  f->next = NULL;
  f->t = t;
  f->host = host;
  f->n = n;
  f->fill = fill;
  memset(f->arg, 0, sizeof f->arg);
  memcpy(f->arg, arg, arg_bytes);
  if (ctx->feeds_last) ctx->feeds_last->next = f;
  else ctx->feeds = f;
  ctx->feeds_last = f;
  return ctx->status;
}

void ndl_ctx_record_feeds(ndl_ctx *ctx, int on) {
  if (on) ctx->feeds = ctx->feeds_last = NULL;
  ctx->recording_feeds = on != 0;
}

ndl_status ndl_ctx_feed(ndl_ctx *ctx, int refill) {
  for (ndl_host_feed *f = ctx->feeds; f; f = f->next) {
    if (refill) f->fill(f->arg, f->host, f->n);
    ctx->backend->copy(ndl_tensor_ptr(f->t), f->host, (size_t)f->n * sizeof(float), NDL_COPY_H2D);
  }
  return ctx->status;
}
