/* module.h: needle's nn modules as small vtables (base struct first). Parameters and buffers are
 * registered, with their PyTorch state_dict names, in the flat stores of an ndl_nn_env that the
 * model owns; modules only borrow views into them. train/eval recurse into every child. */
#ifndef NDL_MODULE_H
#define NDL_MODULE_H

#include "core/nn_ops.h"
#include "core/params.h"
#include "core/rng.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif


/* What modules share: the stores, the one RNG stream and this process's slice of the global batch. */
typedef struct ndl_nn_env {
  ndl_params params;  /* trainable parameters (owned) */
  ndl_params buffers; /* running statistics (owned) */
  ndl_rng *rng;       /* borrowed: initializer draws and dropout masks */
  int64_t global_rows; /* rows of the global batch; 0 means the local batch is the global one */
  int64_t row_offset;  /* first global row of the local batch */
  int fused;           /* 1: fused kernels (default); 0: composed reference ops */
  ndl_allreduce sync; /* SyncBN's all-reduce: sync.host NULL on one process */
} ndl_nn_env;

void ndl_nn_env_init(ndl_nn_env *env, ndl_rng *rng);
/* The same with both stores on device d: the model's forward then runs on a context of d's
 * backend. Constructors initialize on the stores' host mirrors and push each tensor. */
void ndl_nn_env_init_on(ndl_nn_env *env, ndl_rng *rng, ndl_device device);
void ndl_nn_env_free(ndl_nn_env *env);

typedef struct ndl_module ndl_module;
typedef struct ndl_module_vtable {
  const char *kind;
  ndl_tensor *(*forward)(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x);
} ndl_module_vtable;

#define NDL_MODULE_MAX_PARAMS 4
struct ndl_module {
  const ndl_module_vtable *vt;
  ndl_nn_env *env; /* borrowed */
  int training;
  int nchildren;
  ndl_module **children; /* owned */
  int nparams;
  ndl_tensor *params[NDL_MODULE_MAX_PARAMS]; /* own trainable tensors, borrowed from env->params */
};

/* Run the module; NULL when the context has failed (status and message on ctx). */
ndl_tensor *ndl_module_forward(ndl_module *m, ndl_ctx *ctx, ndl_tensor *x);
/* Set training (1) or eval (0) mode on m and every descendant. */
void ndl_module_train(ndl_module *m, int training);
/* Number of trainable scalars in m and its descendants. */
int64_t ndl_module_num_params(const ndl_module *m);
/* Free m and its children; NULL is a no-op. Parameters stay in the env's stores. */
void ndl_module_free(ndl_module *m);

/* Constructors: owned modules, or NULL (message via ndl_last_error) when out of memory.
 * `name` is the state_dict prefix of the module's tensors ("3.0.fn.1"). Modules given as children
 * are owned by the new module (and freed if construction fails). */
ndl_module *ndl_nn_identity(ndl_nn_env *env);
ndl_module *ndl_nn_relu(ndl_nn_env *env);
/* (N, ...) -> (N, prod(...)) */
ndl_module *ndl_nn_flatten(ndl_nn_env *env);
/* weight (in,out) = kaiming_uniform(in,out), then bias (1,out) = kaiming_uniform(out,1); y = xW + b,
 * x of any rank (..., in). */
ndl_module *ndl_nn_linear(ndl_nn_env *env, const char *name, int64_t in, int64_t out, int bias);
ndl_module *ndl_nn_sequential(ndl_nn_env *env, int n, ndl_module *const *children);
/* fn(x) + x */
ndl_module *ndl_nn_residual(ndl_nn_env *env, ndl_module *fn);
/* weight ones(dim), bias zeros(dim); running_mean zeros, running_var ones (buffers) and
 * num_batches_tracked; biased batch var; r = (1-m) r + m stat. Uses the SyncBN all-reduce of the env
 * when it has one. */
ndl_module *ndl_nn_batchnorm1d(ndl_nn_env *env, const char *name, int64_t dim, float eps,
                               float momentum);
ndl_module *ndl_nn_layernorm1d(ndl_nn_env *env, const char *name, int64_t dim, float eps);
/* train: keep iff rand <= 1-p (one rand per element of the global batch, row-major), scale 1/(1-p). */
ndl_module *ndl_nn_dropout(ndl_nn_env *env, float p);

/* Linear with CS231n init when kaiming == 0: weight ~ N(0, normal_std^2), zero bias. */
ndl_module *ndl_nn_linear_init(ndl_nn_env *env, const char *name, int64_t in, int64_t out, int bias,
                               int kaiming, double normal_std);
/* The weight of a Linear module (borrowed), or NULL for other kinds. */
ndl_tensor *ndl_nn_linear_weight(ndl_module *m);

/* BatchNorm1d's buffers (borrowed) for tests and checkpoints. */
ndl_tensor *ndl_nn_batchnorm_running_mean(ndl_module *bn);
ndl_tensor *ndl_nn_batchnorm_running_var(ndl_module *bn);

/* Softmax cross-entropy: sum over rows of logsumexp(z) - z[y], divided by denom (the global batch
 * size; 0 means the number of rows). Returns a 0-d tensor. labels: N int32 in the context
 * backend's memory, in [0, C) (core/nn_ops.h). */
ndl_tensor *ndl_nn_softmax_loss(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                int64_t denom);
/* The same, adding the batch's loss-row sum and error count to sums[0], sums[1] (2 doubles in
 * the backend's memory; ndl_softmax_cross_entropy_sums). */
ndl_tensor *ndl_nn_softmax_loss_sums(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                     int64_t denom, double *sums);

/* needle's composed SoftmaxLoss (logsumexp - sum(z * one_hot)), the reference of the fused one
 * (labels as above; read back to the host to build the one-hot there). */
ndl_tensor *ndl_nn_softmax_loss_composed(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                         int64_t denom);
/* CS231n regularization 0.5 * reg * sum of squared Linear weights of the model (0-d). */
ndl_tensor *ndl_nn_l2_penalty(ndl_ctx *ctx, ndl_module *model, float reg);

#ifdef __cplusplus
}
#endif
#endif
