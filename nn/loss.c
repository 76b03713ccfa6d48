/* loss.c: SoftmaxLoss (mean softmax cross-entropy, needle's formulation when composed; the fused
 * kernel by default) and the CS231n L2 penalty 0.5*reg*sum(W^2) over the weights of Linear modules. */
#include "core/nn_ops.h"
#include "core/ops.h"
#include "nn/init.h"
#include "nn/models.h"
#include "nn/module.h"

ndl_tensor *ndl_nn_softmax_loss_composed(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                         int64_t denom) {
  if (!logits || ctx->status != NDL_OK) return NULL;
  if (logits->ndim != 2) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "softmax loss: logits must be [N,C], got %d dims", logits->ndim);
    return NULL;
  }
  int64_t n = logits->shape[0], c = logits->shape[1];
  ndl_tensor *onehot = ndl_tensor_empty(ctx, 2, logits->shape);
  if (!onehot) return NULL;
  const int32_t *host_labels = labels;
  if (!ndl_ctx_data_on_host(ctx)) { /* the reference path: read the device labels back */
    int32_t *h = ndl_ctx_alloc(ctx, (size_t)n * sizeof(int32_t) + 1);
    if (!h) return NULL;
    ctx->backend->copy(h, labels, (size_t)n * sizeof(int32_t), NDL_COPY_D2H);
    host_labels = h;
  }
  for (int64_t i = 0; i < n; i++)
    if (host_labels[i] < 0 || host_labels[i] >= c) {
      ndl_ctx_fail(ctx, NDL_ERR_ARG, "softmax loss: label %d of row %lld outside [0,%lld)", host_labels[i],
                   (long long)i, (long long)c);
      return NULL;
    }
  float *oh = ndl_tensor_host_begin(ctx, onehot);
  if (!oh) return NULL;
  ndl_init_one_hot(oh, n, (int)c, host_labels);
  ndl_tensor_host_end(ctx, onehot, oh);
  int axis = 1;
  ndl_tensor *lse = ndl_logsumexp(ctx, logits, &axis, 1);
  ndl_tensor *picked = ndl_sum(ctx, ndl_mul(ctx, logits, onehot), &axis, 1);
  return ndl_div_scalar(ctx, ndl_sum(ctx, ndl_sub(ctx, lse, picked), NULL, 0),
                        (float)(denom > 0 ? denom : n));
}

ndl_tensor *ndl_nn_softmax_loss(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                int64_t denom) {
  return ndl_nn_softmax_loss_sums(ctx, logits, labels, denom, NULL);
}

ndl_tensor *ndl_nn_softmax_loss_sums(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                     int64_t denom, double *sums) {
  if (!logits || ctx->status != NDL_OK) return NULL;
  return ndl_softmax_cross_entropy_sums(ctx, logits, labels, (double)denom, sums);
}

static ndl_tensor *l2_sum(ndl_ctx *ctx, ndl_module *m, ndl_tensor *acc) {
  ndl_tensor *w = ndl_nn_linear_weight(m);
  if (w) {
    ndl_tensor *s = ndl_sum(ctx, ndl_mul(ctx, w, w), NULL, 0);
    acc = acc ? ndl_add(ctx, acc, s) : s;
  }
  for (int i = 0; i < m->nchildren; i++) acc = l2_sum(ctx, m->children[i], acc);
  return acc;
}

ndl_tensor *ndl_nn_l2_penalty(ndl_ctx *ctx, ndl_module *model, float reg) {
  ndl_tensor *s = l2_sum(ctx, model, NULL);
  if (!s) return ndl_tensor_zeros(ctx, 0, NULL);
  return ndl_mul_scalar(ctx, s, 0.5f * reg);
}
