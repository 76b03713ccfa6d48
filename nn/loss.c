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
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= c) {
      ndl_ctx_fail(ctx, NDL_ERR_ARG, "softmax loss: label %d of row %lld outside [0,%lld)", labels[i],
                   (long long)i, (long long)c);
      return NULL;
    }
  ndl_init_one_hot(ndl_tensor_ptr(onehot), n, (int)c, labels);
  int axis = 1;
  ndl_tensor *lse = ndl_logsumexp(ctx, logits, &axis, 1);
  ndl_tensor *picked = ndl_sum(ctx, ndl_mul(ctx, logits, onehot), &axis, 1);
  return ndl_div_scalar(ctx, ndl_sum(ctx, ndl_sub(ctx, lse, picked), NULL, 0),
                        (float)(denom > 0 ? denom : n));
}

ndl_tensor *ndl_nn_softmax_loss(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                int64_t denom) {
  if (!logits || ctx->status != NDL_OK) return NULL;
  return ndl_softmax_cross_entropy(ctx, logits, labels, (double)denom);
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
