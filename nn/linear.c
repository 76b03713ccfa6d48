/* linear.c: Linear (y = xW + b over any leading dims) and Dropout. Linear draws its weight then its
 * bias from the env's RNG at construction (needle's order); Dropout draws one rand per element of the
 * whole global batch so every rank sees the same stream and keeps its own rows. */
#include "core/ops.h"
#include "core/nn_ops.h"
#include "nn/init.h"
#include "nn/module_impl.h"

typedef struct {
  ndl_module base;
  int64_t in, out;
  ndl_tensor *weight, *bias;
} linear_module;

static ndl_tensor *linear_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  linear_module *l = (linear_module *)m;
  if (m->env->fused && x->ndim == 2) return ndl_linear(ctx, x, l->weight, l->bias);
  ndl_tensor *y = ndl_matmul(ctx, x, l->weight);
  if (!l->bias || !y) return y;
  int64_t shape[NDL_MAX_DIMS];
  for (int d = 0; d < y->ndim; d++) shape[d] = 1;
  shape[y->ndim - 1] = l->out;
  ndl_tensor *b = ndl_reshape(ctx, l->bias, y->ndim, shape);
  return ndl_add(ctx, y, ndl_broadcast_to(ctx, b, y->ndim, y->shape));
}

static const ndl_module_vtable linear_vt = {"Linear", linear_forward};

ndl_module *ndl_nn_linear_init(ndl_nn_env *env, const char *name, int64_t in, int64_t out, int bias,
                               int kaiming, double normal_std) {
  linear_module *l = (linear_module *)ndl_module_alloc(env, &linear_vt, sizeof *l, 0, NULL);
  if (!l) return NULL;
  l->in = in;
  l->out = out;
  int64_t ws[2] = {in, out}, bs[2] = {1, out};
  l->weight = ndl_module_add_param(&l->base, &env->params, name, "weight", 2, ws);
  if (bias) l->bias = ndl_module_add_param(&l->base, &env->params, name, "bias", 2, bs);
  if (!l->weight || (bias && !l->bias)) {
    ndl_module_free(&l->base);
    return NULL;
  }
  /* drawn on the host mirror, then pushed (no-op on the host) */
  if (kaiming) {
    ndl_init_kaiming_uniform(env->rng, ndl_params_host_ptr(&env->params, l->weight), in, out);
    if (bias) ndl_init_kaiming_uniform(env->rng, ndl_params_host_ptr(&env->params, l->bias), out, 1);
  } else {
    ndl_init_randn(env->rng, ndl_params_host_ptr(&env->params, l->weight), in * out, 0.0, normal_std);
  }
  ndl_params_push_tensor(&env->params, l->weight);
  if (bias) ndl_params_push_tensor(&env->params, l->bias);
  return &l->base;
}

ndl_module *ndl_nn_linear(ndl_nn_env *env, const char *name, int64_t in, int64_t out, int bias) {
  return ndl_nn_linear_init(env, name, in, out, bias, 1, 0.0);
}

ndl_tensor *ndl_nn_linear_weight(ndl_module *m) {
  return m->vt == &linear_vt ? ((linear_module *)m)->weight : NULL;
}

/* ---- Dropout ---- */

typedef struct {
  ndl_module base;
  float p;
} dropout_module;

/* One mask's draws from the shared stream: the rows before this rank's slice skipped, its own
 * drawn, the rest skipped (a host fill: a captured step replays it, core/host_feed.c). */
typedef struct dropout_draw {
  ndl_rng *rng;
  int64_t before, after; /* draws skipped */
  double keep;
} dropout_draw;

static void dropout_fill(const void *arg, float *host, int64_t n) {
  const dropout_draw *dd = arg;
  ndl_rng_skip_rand(dd->rng, dd->before);
  ndl_rng_fill_bernoulli(dd->rng, host, n, dd->keep);
  ndl_rng_skip_rand(dd->rng, dd->after);
}

static ndl_tensor *dropout_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  dropout_module *d = (dropout_module *)m;
  if (!m->training) return x;
  /* cols from the shape, not numel / rows: an empty local slice (rows 0) must still skip the draws
   * of the other ranks' rows, or its stream falls behind theirs */
  int64_t rows = x->ndim ? x->shape[0] : 1, cols = 1;
  for (int dim = 1; dim < x->ndim; dim++) cols *= x->shape[dim];
  int64_t global_rows = m->env->global_rows ? m->env->global_rows : rows;
  int64_t first = m->env->global_rows ? m->env->row_offset : 0;
  ndl_tensor *mask = ndl_tensor_empty(ctx, x->ndim, x->shape);
  if (!mask) return NULL;
  double keep = 1.0 - (double)d->p;
  dropout_draw dd = {m->env->rng, first * cols, (global_rows - first - rows) * cols, keep};
  if (ndl_tensor_host_fill(ctx, mask, dropout_fill, &dd, sizeof dd) != NDL_OK) return NULL; /* drawn on the host */
  if (!m->env->fused) return ndl_div_scalar(ctx, ndl_mul(ctx, x, mask), (float)keep);
  return ndl_dropout(ctx, x, mask, (float)keep);
}

static const ndl_module_vtable dropout_vt = {"Dropout", dropout_forward};

ndl_module *ndl_nn_dropout(ndl_nn_env *env, float p) {
  dropout_module *d = (dropout_module *)ndl_module_alloc(env, &dropout_vt, sizeof *d, 0, NULL);
  if (d) d->p = p;
  return d ? &d->base : NULL;
}
