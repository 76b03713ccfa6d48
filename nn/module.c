/* module.c: the module base (forward dispatch, train/eval recursion, parameter counting, freeing),
 * the env, and the structural modules: Identity, ReLU, Flatten, Sequential, Residual. */
#include "nn/module.h"

#include <string.h>

#include "core/ops.h"
#include "nn/module_impl.h"

void ndl_nn_env_init(ndl_nn_env *env, ndl_rng *rng) { ndl_nn_env_init_on(env, rng, NDL_DEV_CPU); }

void ndl_nn_env_init_on(ndl_nn_env *env, ndl_rng *rng, ndl_device device) {
  memset(env, 0, sizeof *env);
  ndl_params_init_on(&env->params, 1, device);
  ndl_params_init_on(&env->buffers, 0, device);
  env->rng = rng;
  env->fused = 1;
}

void ndl_nn_env_free(ndl_nn_env *env) {
  ndl_params_free(&env->params);
  ndl_params_free(&env->buffers);
}

ndl_tensor *ndl_module_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  if (!x || ctx->status != NDL_OK) return NULL;
  return m->vt->forward(m, ctx, x);
}

void ndl_module_train(ndl_module *m, int training) {
  m->training = training;
  for (int i = 0; i < m->nchildren; i++) ndl_module_train(m->children[i], training);
}

int64_t ndl_module_num_params(const ndl_module *m) {
  int64_t n = 0;
  for (int i = 0; i < m->nparams; i++) n += ndl_tensor_numel(m->params[i]);
  for (int i = 0; i < m->nchildren; i++) n += ndl_module_num_params(m->children[i]);
  return n;
}

void ndl_module_free(ndl_module *m) {
  if (!m) return;
  for (int i = 0; i < m->nchildren; i++) ndl_module_free(m->children[i]);
  ndl_free(m->children);
  ndl_free(m);
}

ndl_module *ndl_module_alloc(ndl_nn_env *env, const ndl_module_vtable *vt, size_t size, int nchildren,
                             ndl_module *const *children) {
  ndl_module *m = ndl_calloc(1, size);
  ndl_module **kids = nchildren ? ndl_malloc((size_t)nchildren * sizeof *kids) : NULL;
  int ok = m && (nchildren == 0 || kids);
  for (int i = 0; i < nchildren; i++) ok = ok && children[i];
  if (!ok) {
    for (int i = 0; i < nchildren; i++) ndl_module_free(children[i]);
    ndl_free(kids);
    ndl_free(m);
    ndl_errorf(NDL_ERR_NOMEM, "out of memory building a %s module", vt->kind);
    return NULL;
  }
  m->vt = vt;
  m->env = env;
  m->training = 1;
  m->nchildren = nchildren;
  m->children = kids;
  if (nchildren) memcpy(kids, children, (size_t)nchildren * sizeof *kids);
  return m;
}

ndl_tensor *ndl_module_add_param(ndl_module *m, ndl_params *store, const char *prefix,
                                 const char *leaf, int ndim, const int64_t *shape) {
  char name[256];
  snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
  ndl_tensor *t = ndl_params_add(store, name, ndim, shape);
  if (t && store->trainable) {
    NDL_ASSERT(m->nparams < NDL_MODULE_MAX_PARAMS);
    m->params[m->nparams++] = t;
  }
  return t;
}

/* ---- structural modules ---- */

static ndl_tensor *identity_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  (void)m;
  (void)ctx;
  return x;
}
static const ndl_module_vtable identity_vt = {"Identity", identity_forward};
ndl_module *ndl_nn_identity(ndl_nn_env *env) {
  return ndl_module_alloc(env, &identity_vt, sizeof(ndl_module), 0, NULL);
}

static ndl_tensor *relu_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  (void)m;
  return ndl_relu(ctx, x);
}
static const ndl_module_vtable relu_vt = {"ReLU", relu_forward};
ndl_module *ndl_nn_relu(ndl_nn_env *env) {
  return ndl_module_alloc(env, &relu_vt, sizeof(ndl_module), 0, NULL);
}

static ndl_tensor *flatten_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  (void)m;
  int64_t shape[2] = {x->ndim ? x->shape[0] : 1, -1};
  return ndl_reshape(ctx, x, 2, shape);
}
static const ndl_module_vtable flatten_vt = {"Flatten", flatten_forward};
ndl_module *ndl_nn_flatten(ndl_nn_env *env) {
  return ndl_module_alloc(env, &flatten_vt, sizeof(ndl_module), 0, NULL);
}

static ndl_tensor *sequential_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  for (int i = 0; i < m->nchildren && x; i++) x = ndl_module_forward(m->children[i], ctx, x);
  return x;
}
static const ndl_module_vtable sequential_vt = {"Sequential", sequential_forward};
ndl_module *ndl_nn_sequential(ndl_nn_env *env, int n, ndl_module *const *children) {
  return ndl_module_alloc(env, &sequential_vt, sizeof(ndl_module), n, children);
}

static ndl_tensor *residual_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x) {
  return ndl_add(ctx, ndl_module_forward(m->children[0], ctx, x), x);
}
static const ndl_module_vtable residual_vt = {"Residual", residual_forward};
ndl_module *ndl_nn_residual(ndl_nn_env *env, ndl_module *fn) {
  return ndl_module_alloc(env, &residual_vt, sizeof(ndl_module), 1, &fn);
}
