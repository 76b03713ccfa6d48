/* optim.h: optimizers over a flat parameter store (SGD with needle's dampened momentum, Adam,
 * AdamW, RMSProp). Each optimizer is a small vtable object, base struct first; its whole state
 * (momentum buffers, moments, caches) is ONE flat float buffer laid out like params->data, so a
 * checkpoint is a single copy and dist/ can treat it as one block.
 *
 * Numerics: updates run in float32, in the operation order numpy applies to float32 arrays with
 * Python-float scalars: a scalar such as (1 - beta1) or (1 - beta1**t) is computed in double,
 * then rounded to float32, then combined elementwise in float32 (no FMA contraction). This is
 * why hyperparameters are doubles. Optimizers read params->grad and never write it. */
#ifndef NDL_OPTIM_H
#define NDL_OPTIM_H

#include <stdint.h>

#include "core/params.h"
#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ndl_optim_update;
typedef struct ndl_optim ndl_optim;

typedef struct ndl_optim_vtable {
  const char *name;            /* "sgd", "adam", "adamw", "rmsprop" */
  int state_per_param;         /* state floats per parameter float (0, 1 or 2) */
  /* fill the update's kind and float32 scalars k[] (core/backend.h) for the step o->t */
  void (*prepare)(const ndl_optim *o, struct ndl_optim_update *u);
} ndl_optim_vtable;

/* Base struct; every optimizer starts with it. Fields are readable; lr may be set between steps
 * (a schedule). Other fields are managed by the functions below. */
struct ndl_optim {
  const ndl_optim_vtable *vt;
  ndl_params *params;   /* borrowed; must outlive the optimizer and keep its numel */
  double lr;            /* learning rate (a Python float in needle; rounded to float32 when used) */
  double weight_decay;  /* L2 (coupled, added to the gradient) or, for AdamW, decoupled */
  int64_t t;            /* steps taken (Adam's bias-correction counter; counted for all) */
  float *state;         /* owned, state_numel floats, zero at start; NULL when state_numel == 0 */
  int64_t state_numel;  /* vt->state_per_param * params->numel */
};

/* SGD as needle hw2: g = grad + wd*θ; u = m*u + (1-m)*g; θ -= lr*u (dampened momentum, u starts
 * at 0). nesterov != 0: after updating u, θ -= lr*(m*u + (1-m)*g) (the look-ahead with the same
 * dampening). Momentum 0 keeps no state (θ -= lr*g, bitwise what needle computes).
 * State: u (numel floats) when momentum != 0, else none. Returns an owned optimizer, or NULL with
 * NDL_ERR_NOMEM (out of memory) / NDL_ERR_ARG (NULL or non-trainable store, lr < 0, momentum not
 * in [0,1), wd < 0). Nesterov with momentum 0 is plain SGD. */
ndl_optim *ndl_optim_sgd_new(ndl_params *params, double lr, double momentum, double weight_decay,
                             int nesterov);

/* Adam as needle hw2: t += 1; g = grad + wd*θ; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 * m̂ = m*(1/(1-b1^t)); v̂ = v*(1/(1-b2^t)) (reciprocals computed in double, rounded once);
 * θ -= lr*m̂/(sqrt(v̂)+eps). Defaults (SPEC §2): lr 0.01,
 * b1 0.9, b2 0.999, eps 1e-8, wd 0. State: m then v (2*numel floats). Owned, or NULL with
 * NDL_ERR_NOMEM / NDL_ERR_ARG (NULL or non-trainable store, lr < 0, beta not in [0,1), eps < 0,
 * wd < 0). */
ndl_optim *ndl_optim_adam_new(ndl_params *params, double lr, double beta1, double beta2,
                              double eps, double weight_decay);

/* AdamW: decoupled decay in PyTorch's order: θ *= (1 - lr*wd) first, then the Adam update above
 * with the raw gradient (same m̂, v̂ formula and operation order as needle's Adam).
 * State: m then v (2*numel floats). Owned, or NULL as for Adam. */
ndl_optim *ndl_optim_adamw_new(ndl_params *params, double lr, double beta1, double beta2,
                               double eps, double weight_decay);

/* RMSProp as CS231n optim.py: g = grad + wd*θ; cache = decay*cache + (1-decay)*g*g;
 * θ -= lr*g/(sqrt(cache)+eps). Defaults: decay 0.99, eps 1e-8. State: cache (numel floats).
 * Owned, or NULL with NDL_ERR_NOMEM / NDL_ERR_ARG (NULL or non-trainable store, lr < 0, decay
 * not in [0,1), eps < 0, wd < 0). */
ndl_optim *ndl_optim_rmsprop_new(ndl_params *params, double lr, double decay, double eps,
                                 double weight_decay);

/* One update from the current gradients; t += 1. Aborts if params->numel changed. */
void ndl_optim_step(ndl_optim *o);
/* Zero the flat gradient buffer (ndl_params_zero_grad). */
void ndl_optim_zero_grad(ndl_optim *o);
/* Free the optimizer and its state; NULL is a no-op. The params store is not touched. */
void ndl_optim_free(ndl_optim *o);

/* Kind name ("sgd", "adam", "adamw", "rmsprop"); static string. */
const char *ndl_optim_name(const ndl_optim *o);
/* The flat state buffer (borrowed, writable; NULL when empty) and its length in floats. */
float *ndl_optim_state(ndl_optim *o, int64_t *numel);
/* Steps taken so far (checkpoint this with the state). */
int64_t ndl_optim_step_count(const ndl_optim *o);
/* Set the step counter alone (a resumed step count received from rank 0); NDL_ASSERT t >= 0. */
void ndl_optim_set_step_count(ndl_optim *o, int64_t t);
/* Restore a checkpoint: copy numel floats into the state and set the step counter.
 * NDL_ERR_MISMATCH (state untouched) when numel differs from the state size;
 * NDL_ERR_ARG if t < 0. */
ndl_status ndl_optim_load_state(ndl_optim *o, const float *state, int64_t numel, int64_t t);

#ifdef __cplusplus
}
#endif
#endif
