/* norm.c: BatchNorm1d (batch statistics in training with running-statistic updates, running
 * statistics in eval; synchronized across ranks when the env has an all-reduce) and LayerNorm1d.
 * Both have a fused path (default) and the composed needle formulation (env->fused = 0). */
#include <math.h>
#include <string.h>

#include "core/kernel_math.h"
#include "core/ops.h"
#include "nn/module_impl.h"

typedef struct {
  ndl_module base;
  int64_t dim;
  float eps, momentum;
  ndl_tensor *weight, *bias;               /* [dim] parameters */
  ndl_tensor *running_mean, *running_var;  /* [dim] buffers */
  ndl_tensor *num_batches;                 /* [1] buffer, saved as PyTorch's I64 num_batches_tracked */
} norm_module;

/* w[dim] viewed as [1,dim] and broadcast to x's shape. */
static ndl_tensor *rowvec(ndl_ctx *ctx, ndl_tensor *v, const ndl_tensor *x) {
  int64_t s[2] = {1, x->shape[1]};
  return ndl_broadcast_to(ctx, ndl_reshape(ctx, v, 2, s), 2, x->shape);
}

/* Composed normalization over `axis` (0: batch, 1: layer): returns (x - mean) / sqrt(var + eps) and
 * the mean/var nodes of the statistics. */
static ndl_tensor *composed_normalize(ndl_ctx *ctx, ndl_tensor *x, int axis, float eps,
                                      ndl_tensor **mean_out, ndl_tensor **var_out) {
  int64_t n = x->shape[axis];
  int64_t keep[2] = {axis == 0 ? 1 : x->shape[0], axis == 0 ? x->shape[1] : 1};
  ndl_tensor *mean = ndl_div_scalar(ctx, ndl_sum(ctx, x, &axis, 1), (float)n);
  ndl_tensor *xm = ndl_sub(ctx, x, ndl_broadcast_to(ctx, ndl_reshape(ctx, mean, 2, keep), 2, x->shape));
  ndl_tensor *var = ndl_div_scalar(ctx, ndl_sum(ctx, ndl_pow_scalar(ctx, xm, 2.0f), &axis, 1), (float)n);
  ndl_tensor *std = ndl_pow_scalar(ctx, ndl_add_scalar(ctx, var, eps), 0.5f);
  *mean_out = mean;
  *var_out = var;
  return ndl_div(ctx, xm, ndl_broadcast_to(ctx, ndl_reshape(ctx, std, 2, keep), 2, x->shape));
}

/* num_batches_tracked += 1, on the buffers' device (an accumulate of a 1 off the host: no read back). */
static void count_batch(ndl_ctx *ctx, norm_module *b) {
  if (b->num_batches->device == NDL_DEV_CPU) {
    ndl_tensor_ptr(b->num_batches)[0] += 1.0f;
    return;
  }
  ndl_tensor *one = ndl_tensor_full(ctx, 1, b->num_batches->shape, 1.0f);
  if (one) ndl_tensor_accumulate(b->num_batches, one);
}

/* The composed path's update of the running statistics from the batch's mean/var nodes (the fused
 * path folds them in its forward, ndl_batchnorm_train_running: the same float arithmetic,
 * kernel_math.h ndl_km_running). Callers skip it for an empty batch (a rank's empty slice under
 * --no-sync-bn): its 0/0 statistics would make the running ones NaN. Off the host, a reference path
 * with a round trip through host scratch. */
static void update_running(ndl_ctx *ctx, norm_module *b, const ndl_tensor *mean_t, const ndl_tensor *var_t) {
  float keep = (float)(1.0 - (double)b->momentum), m = b->momentum;
  int host = ndl_ctx_data_on_host(ctx);
  size_t bytes = (size_t)b->dim * sizeof(float);
  float *rm = ndl_tensor_ptr(b->running_mean), *rv = ndl_tensor_ptr(b->running_var);
  const float *mean = ndl_tensor_ptr(mean_t), *var = ndl_tensor_ptr(var_t);
  if (!host) {
    float *h = ndl_ctx_alloc(ctx, 4 * bytes);
    if (!h) return;
    /* the statistics are fresh contiguous nodes, the buffers contiguous views */
    ctx->backend->copy(h, rm, bytes, NDL_COPY_D2H);
    ctx->backend->copy(h + b->dim, rv, bytes, NDL_COPY_D2H);
    ctx->backend->copy(h + 2 * b->dim, mean, bytes, NDL_COPY_D2H);
    ctx->backend->copy(h + 3 * b->dim, var, bytes, NDL_COPY_D2H);
    rm = h;
    rv = h + b->dim;
    mean = h + 2 * b->dim;
    var = h + 3 * b->dim;
  }
  for (int64_t j = 0; j < b->dim; j++) {
    rm[j] = ndl_km_running(rm[j], mean[j], keep, m);
    rv[j] = ndl_km_running(rv[j], var[j], keep, m);
  }
  if (!host) {
    ctx->backend->copy(ndl_tensor_ptr(b->running_mean), rm, bytes, NDL_COPY_H2D);
    ctx->backend->copy(ndl_tensor_ptr(b->running_var), rv, bytes, NDL_COPY_H2D);
  }
  count_batch(ctx, b);
}

static int check_dims(ndl_ctx *ctx, const char *kind, const norm_module *b, const ndl_tensor *x) {
  if (x->ndim == 2 && x->shape[1] == b->dim) return 1;
  char sx[128];
  ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "%s(%lld): input %s: expected [N,%lld]", kind, (long long)b->dim,
               ndl_shape_format(x->ndim, x->shape, sx, sizeof sx), (long long)b->dim);
  return 0;
}

static ndl_tensor *batchnorm_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  norm_module *b = (norm_module *)m;
  if (!check_dims(ctx, "BatchNorm1d", b, x)) return NULL;
  if (!m->training) {
    ndl_tensor *den = ndl_pow_scalar(ctx, ndl_add_scalar(ctx, b->running_var, b->eps), 0.5f);
    ndl_tensor *xh = ndl_div(ctx, ndl_sub(ctx, x, rowvec(ctx, b->running_mean, x)), rowvec(ctx, den, x));
    return ndl_add(ctx, ndl_mul(ctx, rowvec(ctx, b->weight, x), xh), rowvec(ctx, b->bias, x));
  }
  ndl_nn_env *env = m->env;
  if (env->fused || env->sync.host) {
    /* SyncBN averages over the global batch; plain BN over this process's rows. The fused op folds
     * the batch statistics into the running buffers unless the global batch is empty. */
    int64_t rows = env->sync.host ? env->global_rows : 0;
    ndl_tensor *y = ndl_batchnorm_train_running(ctx, x, b->weight, b->bias, b->eps, rows, &env->sync,
                                                ndl_tensor_ptr(b->running_mean),
                                                ndl_tensor_ptr(b->running_var), b->momentum);
    if (y && (env->sync.host ? rows > 0 || x->shape[0] > 0 : x->shape[0] > 0)) count_batch(ctx, b);
    return y;
  }
  ndl_tensor *mean, *var;
  ndl_tensor *xh = composed_normalize(ctx, x, 0, b->eps, &mean, &var);
  ndl_tensor *y = ndl_add(ctx, ndl_mul(ctx, rowvec(ctx, b->weight, x), xh), rowvec(ctx, b->bias, x));
  if (y && x->shape[0] > 0) update_running(ctx, b, mean, var);
  return y;
}

static ndl_tensor *layernorm_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  norm_module *b = (norm_module *)m;
  if (!check_dims(ctx, "LayerNorm1d", b, x)) return NULL;
  if (m->env->fused) return ndl_layernorm(ctx, x, b->weight, b->bias, b->eps);
  ndl_tensor *mean, *var;
  ndl_tensor *xh = composed_normalize(ctx, x, 1, b->eps, &mean, &var);
  return ndl_add(ctx, ndl_mul(ctx, rowvec(ctx, b->weight, x), xh), rowvec(ctx, b->bias, x));
}

static const ndl_module_vtable batchnorm_vt = {"BatchNorm1d", batchnorm_forward};
static const ndl_module_vtable layernorm_vt = {"LayerNorm1d", layernorm_forward};

static norm_module *norm_new(ndl_nn_env *env, const ndl_module_vtable *vt, const char *name,
                             int64_t dim, float eps) {
  norm_module *b = (norm_module *)ndl_module_alloc(env, vt, sizeof *b, 0, NULL);
  if (!b) return NULL;
  b->dim = dim;
  b->eps = eps;
  b->weight = ndl_module_add_param(&b->base, &env->params, name, "weight", 1, &dim);
  b->bias = ndl_module_add_param(&b->base, &env->params, name, "bias", 1, &dim);
  if (!b->weight || !b->bias) {
    ndl_module_free(&b->base);
    return NULL;
  }
  float *w = ndl_params_host_ptr(&env->params, b->weight);
  for (int64_t j = 0; j < dim; j++) w[j] = 1.0f;
  ndl_params_push_tensor(&env->params, b->weight);
  return b;
}

ndl_module *ndl_nn_batchnorm1d(ndl_nn_env *env, const char *name, int64_t dim, float eps,
                               float momentum) {
  norm_module *b = norm_new(env, &batchnorm_vt, name, dim, eps);
  if (!b) return NULL;
  int64_t one = 1;
  b->momentum = momentum;
  b->running_mean = ndl_module_add_param(&b->base, &env->buffers, name, "running_mean", 1, &dim);
  b->running_var = ndl_module_add_param(&b->base, &env->buffers, name, "running_var", 1, &dim);
  b->num_batches = ndl_module_add_param(&b->base, &env->buffers, name, "num_batches_tracked", 1, &one);
  if (!b->running_mean || !b->running_var || !b->num_batches) {
    ndl_module_free(&b->base);
    return NULL;
  }
  float *rv = ndl_params_host_ptr(&env->buffers, b->running_var);
  for (int64_t j = 0; j < dim; j++) rv[j] = 1.0f;
  ndl_params_push_tensor(&env->buffers, b->running_var);
  return &b->base;
}

ndl_module *ndl_nn_layernorm1d(ndl_nn_env *env, const char *name, int64_t dim, float eps) {
  norm_module *b = norm_new(env, &layernorm_vt, name, dim, eps);
  return b ? &b->base : NULL;
}

ndl_tensor *ndl_nn_batchnorm_running_mean(ndl_module *bn) {
  return bn->vt == &batchnorm_vt ? ((norm_module *)bn)->running_mean : NULL;
}

ndl_tensor *ndl_nn_batchnorm_running_var(ndl_module *bn) {
  return bn->vt == &batchnorm_vt ? ((norm_module *)bn)->running_var : NULL;
}
