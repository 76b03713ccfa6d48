/* nn_ops.c: building the fused nodes (shape and device checks, saved-state allocation, graph
 * recording) and dispatching their backward to the context's backend with the gradient targets
 * (a leaf's flat gradient buffer, accumulated, or a new step tensor). Kernels live in the backends. */
#include "core/nn_ops.h"

#include <string.h>

#include "core/backend.h"
#include "core/op_impl.h"

#define SHAPE_STR(t, buf) ndl_shape_format((t)->ndim, (t)->shape, buf, sizeof buf)

static ndl_tensor *fused_node(ndl_ctx *ctx, ndl_op op, int ndim, const int64_t *shape, ndl_tensor *a,
                              ndl_tensor *b, ndl_tensor *c, void *aux) {
  const ndl_tensor *in[3] = {a, b, c};
  if (!ndl_check_devices(ctx, ndl_op_name(op), in, 3)) return NULL;
  ndl_tensor *t = ndl_tensor_empty(ctx, ndim, shape);
  if (!t) return NULL;
  t->op = op;
  t->src[0] = a;
  t->src[1] = b;
  t->src[2] = c;
  t->aux = aux;
  if (ctx->backend->compute(ctx, t) != NDL_OK) return NULL;
  return ndl_op_record(ctx, t);
}

static int check_vec(ndl_ctx *ctx, const char *what, const ndl_tensor *x, const ndl_tensor *v,
                     int64_t d) {
  if (!v || ndl_tensor_numel(v) == d) return 1;
  char sx[128], sv[128];
  ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "%s: x%s param%s: parameter must have %lld elements", what,
               SHAPE_STR(x, sx), SHAPE_STR(v, sv), (long long)d);
  return 0;
}

static int check_2d(ndl_ctx *ctx, const char *what, const ndl_tensor *x) {
  if (ctx->status != NDL_OK) return 0;
  if (!x) {
    ndl_ctx_fail(ctx, NDL_ERR_ARG, "%s: NULL input", what);
    return 0;
  }
  if (x->ndim == 2) return 1;
  char sx[128];
  ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "%s: x%s: expected 2 dims", what, SHAPE_STR(x, sx));
  return 0;
}

ndl_tensor *ndl_linear(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b) {
  if (!check_2d(ctx, "linear", x) || !check_2d(ctx, "linear", w)) return NULL;
  char sx[128], sw[128];
  if (x->shape[1] != w->shape[0]) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "linear: x%s w%s: inner dims differ", SHAPE_STR(x, sx),
                 SHAPE_STR(w, sw));
    return NULL;
  }
  if (!check_vec(ctx, "linear", x, b, w->shape[1])) return NULL;
  int64_t shape[2] = {x->shape[0], w->shape[1]};
  return fused_node(ctx, NDL_OP_LINEAR, 2, shape, x, w, b, NULL);
}

static ndl_norm_state *norm_state(ndl_ctx *ctx, const ndl_tensor *x, int64_t stat_len, float eps,
                                  int64_t count) {
  ndl_norm_state *s = ndl_ctx_alloc(ctx, sizeof *s);
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->eps = eps;
  s->count = count;
  /* the struct on the host (the backend reads its fields), the arrays on the device */
  s->xhat = ndl_ctx_alloc_data(ctx, (size_t)ndl_tensor_numel(x) * sizeof(float));
  s->invstd = ndl_ctx_alloc_data(ctx, (size_t)stat_len * sizeof(float));
  s->mean = ndl_ctx_alloc_data(ctx, (size_t)stat_len * sizeof(float));
  s->var = ndl_ctx_alloc_data(ctx, (size_t)stat_len * sizeof(float));
  return ctx->status == NDL_OK ? s : NULL;
}

ndl_tensor *ndl_batchnorm_train_running(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b,
                                        float eps, int64_t global_rows, const ndl_allreduce *sync,
                                        float *running_mean, float *running_var, float momentum) {
  if (!check_2d(ctx, "batchnorm", x)) return NULL;
  int64_t d = x->shape[1];
  if (!check_vec(ctx, "batchnorm", x, w, d) || !check_vec(ctx, "batchnorm", x, b, d)) return NULL;
  NDL_ASSERT(!running_mean == !running_var);
  if (global_rows <= 0) global_rows = x->shape[0];
  ndl_norm_state *s = norm_state(ctx, x, d, eps, global_rows);
  if (!s) return NULL;
  if (sync && sync->host) s->sync = *sync;
  s->running_mean = running_mean;
  s->running_var = running_var;
  s->momentum = momentum;
  return fused_node(ctx, NDL_OP_BATCHNORM, 2, x->shape, x, w, b, s);
}

ndl_tensor *ndl_batchnorm_train(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b, float eps,
                                int64_t global_rows, ndl_allreduce_fn allreduce, void *handle,
                                float *mean_out, float *var_out) {
  ndl_allreduce sync = {allreduce, NULL, handle};
  ndl_tensor *y = ndl_batchnorm_train_running(ctx, x, w, b, eps, global_rows, &sync, NULL, NULL, 0.0f);
  if (!y) return NULL;
  const ndl_norm_state *s = y->aux;
  size_t bytes = (size_t)x->shape[1] * sizeof(float);
  if (mean_out) ctx->backend->copy(mean_out, s->mean, bytes, NDL_COPY_D2D);
  if (var_out) ctx->backend->copy(var_out, s->var, bytes, NDL_COPY_D2D);
  return y;
}

ndl_tensor *ndl_layernorm(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b, float eps) {
  if (!check_2d(ctx, "layernorm", x)) return NULL;
  int64_t d = x->shape[1];
  if (!check_vec(ctx, "layernorm", x, w, d) || !check_vec(ctx, "layernorm", x, b, d)) return NULL;
  ndl_norm_state *s = norm_state(ctx, x, x->shape[0], eps, d);
  if (!s) return NULL;
  return fused_node(ctx, NDL_OP_LAYERNORM, 2, x->shape, x, w, b, s);
}

ndl_tensor *ndl_softmax_cross_entropy_sums(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                           double denom, double *sums) {
  if (!check_2d(ctx, "softmax_cross_entropy", logits)) return NULL;
  int64_t n = logits->shape[0], c = logits->shape[1];
  ndl_ce_state *s = ndl_ctx_alloc(ctx, sizeof *s);
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->labels = ndl_ctx_alloc_data(ctx, (size_t)n * sizeof(int32_t));
  s->probs = ndl_ctx_alloc_data(ctx, (size_t)(n * c) * sizeof(float));
  if (ctx->status != NDL_OK) return NULL;
  /* a copy: the caller's batch buffer may be refilled before backward reads the labels */
  ctx->backend->copy(s->labels, labels, (size_t)n * sizeof(int32_t), NDL_COPY_D2D);
  s->denom = denom > 0 ? denom : (double)n;
  s->sums = sums;
  return fused_node(ctx, NDL_OP_SOFTMAX_CE, 0, NULL, logits, NULL, NULL, s);
}

ndl_tensor *ndl_softmax_cross_entropy(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                      double denom) {
  return ndl_softmax_cross_entropy_sums(ctx, logits, labels, denom, NULL);
}

void ndl_fused_backward(ndl_ctx *ctx, ndl_tensor *node, ndl_tensor **grads) {
  if (ctx->grad_enabled) {
    ndl_ctx_fail(ctx, NDL_ERR_ARG,
                 "%s: fused ops are differentiable once; build with composed ops for create_graph",
                 ndl_op_name(node->op));
    return;
  }
  ndl_grad_target targets[NDL_MAX_SRC] = {{NULL, 0.0f}, {NULL, 0.0f}, {NULL, 0.0f}};
  for (int i = 0; i < NDL_MAX_SRC; i++) {
    ndl_tensor *src = node->src[i];
    if (!src || !src->requires_grad) continue;
    float *sink = ndl_grad_sink(ctx, src);
    if (sink) {
      targets[i] = (ndl_grad_target){sink, 1.0f};
    } else {
      grads[i] = ndl_tensor_empty(ctx, src->ndim, src->shape);
      if (!grads[i]) return;
      targets[i] = (ndl_grad_target){ndl_tensor_ptr(grads[i]), 0.0f};
    }
  }
  ctx->backend->fused_backward(ctx, node, targets);
}
