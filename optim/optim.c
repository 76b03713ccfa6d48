/* optim.c: SGD (needle's dampened momentum, optional Nesterov), Adam, AdamW and RMSProp over the
 * flat parameter store. Each step rounds its scalars to float32 exactly as numpy does for float32
 * arrays and Python floats, then hands one update over the flat buffers to the store's backend
 * (backend.h optim_update; the per-element math is core/kernel_math.h).
 * Leaves out: per-parameter groups, AMSGrad, gradient clipping, schedules (set o->lr instead). */
#include "optim/optim.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/backend.h"

typedef struct sgd {
  ndl_optim base;
  double momentum;
  int nesterov;
} sgd;

typedef struct adam {
  ndl_optim base;
  double beta1, beta2, eps;
} adam;

typedef struct rmsprop {
  ndl_optim base;
  double decay, eps;
} rmsprop;

/* ---- updates: scalars rounded to float32 here, the loop in the params' backend ---- */

static void sgd_prepare(const ndl_optim *o, ndl_optim_update *u) {
  const sgd *s = (const sgd *)o;
  if (!o->state) { /* momentum 0: u = 0*u + 1*g = g, so no buffer is needed */
    u->kind = NDL_UPDATE_SGD;
    return;
  }
  u->kind = s->nesterov ? NDL_UPDATE_SGD_NESTEROV : NDL_UPDATE_SGD_MOMENTUM;
  u->k[0] = (float)s->momentum;
  u->k[1] = (float)(1.0 - s->momentum);
}

/* Adam (coupled L2: g = grad + wd*θ) and AdamW (θ *= 1 - lr*wd, then raw grad). */
static void adam_prepare(const ndl_optim *o, ndl_optim_update *u, int decoupled) {
  const adam *a = (const adam *)o;
  const double t = (double)o->t; /* already incremented by ndl_optim_step */
  /* scalars rounded to float32 once, as numpy does for float32 arrays and Python floats */
  const float k[10] = {(float)a->beta1, (float)(1.0 - a->beta1), (float)a->beta2, (float)(1.0 - a->beta2),
                       (float)(1.0 / (1.0 - pow(a->beta1, t))), (float)(1.0 / (1.0 - pow(a->beta2, t))), (float)o->lr,
                       (float)a->eps, decoupled ? 0.0f : (float)o->weight_decay,
                       (float)(1.0 - o->lr * o->weight_decay)};
  memcpy(u->k, k, sizeof k);
  u->kind = decoupled ? NDL_UPDATE_ADAMW : NDL_UPDATE_ADAM;
  u->state_stride = o->params->numel;
}

static void adam_step(const ndl_optim *o, ndl_optim_update *u) { adam_prepare(o, u, 0); }
static void adamw_step(const ndl_optim *o, ndl_optim_update *u) { adam_prepare(o, u, 1); }

static void rmsprop_step(const ndl_optim *o, ndl_optim_update *u) {
  const rmsprop *r = (const rmsprop *)o;
  u->kind = NDL_UPDATE_RMSPROP;
  u->k[0] = (float)r->decay;
  u->k[1] = (float)(1.0 - r->decay);
  u->k[2] = (float)r->eps;
}

static const ndl_optim_vtable sgd_vt = {"sgd", 1, sgd_prepare};
static const ndl_optim_vtable sgd_plain_vt = {"sgd", 0, sgd_prepare};
static const ndl_optim_vtable adam_vt = {"adam", 2, adam_step};
static const ndl_optim_vtable adamw_vt = {"adamw", 2, adamw_step};
static const ndl_optim_vtable rmsprop_vt = {"rmsprop", 1, rmsprop_step};

/* ---- construction ---- */

static int in_unit(double x) { return x >= 0.0 && x < 1.0; } /* [0,1); false for NaN */

static ndl_status check_common(const char *name, const ndl_params *p, double lr, double wd) {
  if (!p || !p->trainable)
    return ndl_errorf(NDL_ERR_ARG, "%s: parameter store is %s", name, p ? "not trainable" : "NULL");
  if (!(lr >= 0.0)) return ndl_errorf(NDL_ERR_ARG, "%s: learning rate %g < 0", name, lr);
  if (!(wd >= 0.0)) return ndl_errorf(NDL_ERR_ARG, "%s: weight decay %g < 0", name, wd);
  return NDL_OK;
}

/* The object (size bytes, zeroed, base filled) with a zeroed state, or NULL with NDL_ERR_NOMEM. */
static ndl_optim *optim_alloc(size_t size, const ndl_optim_vtable *vt, ndl_params *p, double lr,
                              double wd) {
  ndl_optim *o = ndl_calloc(1, size);
  int64_t numel = vt->state_per_param * p->numel;
  float *state = numel ? ndl_calloc((size_t)numel, sizeof(float)) : NULL;
  if (!o || (numel && !state)) {
    ndl_free(o);
    ndl_free(state);
    ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory for %lld state floats", vt->name,
               (long long)numel);
    return NULL;
  }
  o->vt = vt;
  o->params = p;
  o->lr = lr;
  o->weight_decay = wd;
  o->t = 0;
  o->state = state;
  o->state_numel = numel;
  return o;
}

ndl_optim *ndl_optim_sgd_new(ndl_params *params, double lr, double momentum, double weight_decay,
                             int nesterov) {
  if (check_common("sgd", params, lr, weight_decay) != NDL_OK) return NULL;
  if (!in_unit(momentum)) {
    ndl_errorf(NDL_ERR_ARG, "sgd: momentum %g not in [0,1)", momentum);
    return NULL;
  }
  const ndl_optim_vtable *vt = momentum == 0.0 ? &sgd_plain_vt : &sgd_vt;
  sgd *s = (sgd *)optim_alloc(sizeof(sgd), vt, params, lr, weight_decay);
  if (!s) return NULL;
  s->momentum = momentum;
  s->nesterov = nesterov != 0;
  return &s->base;
}

static ndl_optim *adam_new(const ndl_optim_vtable *vt, ndl_params *params, double lr, double beta1,
                           double beta2, double eps, double weight_decay) {
  if (check_common(vt->name, params, lr, weight_decay) != NDL_OK) return NULL;
  if (!in_unit(beta1) || !in_unit(beta2)) {
    ndl_errorf(NDL_ERR_ARG, "%s: betas (%g, %g) not in [0,1)", vt->name, beta1, beta2);
    return NULL;
  }
  if (!(eps >= 0.0)) {
    ndl_errorf(NDL_ERR_ARG, "%s: eps %g < 0", vt->name, eps);
    return NULL;
  }
  adam *a = (adam *)optim_alloc(sizeof(adam), vt, params, lr, weight_decay);
  if (!a) return NULL;
  a->beta1 = beta1;
  a->beta2 = beta2;
  a->eps = eps;
  return &a->base;
}

ndl_optim *ndl_optim_adam_new(ndl_params *params, double lr, double beta1, double beta2,
                              double eps, double weight_decay) {
  return adam_new(&adam_vt, params, lr, beta1, beta2, eps, weight_decay);
}

ndl_optim *ndl_optim_adamw_new(ndl_params *params, double lr, double beta1, double beta2,
                               double eps, double weight_decay) {
  return adam_new(&adamw_vt, params, lr, beta1, beta2, eps, weight_decay);
}

ndl_optim *ndl_optim_rmsprop_new(ndl_params *params, double lr, double decay, double eps,
                                 double weight_decay) {
  if (check_common("rmsprop", params, lr, weight_decay) != NDL_OK) return NULL;
  if (!in_unit(decay)) {
    ndl_errorf(NDL_ERR_ARG, "rmsprop: decay %g not in [0,1)", decay);
    return NULL;
  }
  if (!(eps >= 0.0)) {
    ndl_errorf(NDL_ERR_ARG, "rmsprop: eps %g < 0", eps);
    return NULL;
  }
  rmsprop *r = (rmsprop *)optim_alloc(sizeof(rmsprop), &rmsprop_vt, params, lr, weight_decay);
  if (!r) return NULL;
  r->decay = decay;
  r->eps = eps;
  return &r->base;
}

/* ---- base operations ---- */

void ndl_optim_step(ndl_optim *o) {
  NDL_ASSERT(o && o->params && o->params->grad);
  /* the store must not grow after the optimizer sized its state */
  NDL_ASSERT(o->state_numel == o->vt->state_per_param * o->params->numel);
  const ndl_backend *be = ndl_backend_for(o->params->device);
  NDL_ASSERT(be && be->optim_update);
  o->t++;
  ndl_optim_update u;
  memset(&u, 0, sizeof u);
  u.theta = o->params->data;
  u.grad = o->params->grad;
  u.state = o->state;
  u.n = o->params->numel;
  u.lr = (float)o->lr;
  u.wd = (float)o->weight_decay;
  o->vt->prepare(o, &u);
  be->optim_update(&u);
}

void ndl_optim_zero_grad(ndl_optim *o) { ndl_params_zero_grad(o->params); }

void ndl_optim_free(ndl_optim *o) {
  if (!o) return;
  ndl_free(o->state);
  ndl_free(o);
}

const char *ndl_optim_name(const ndl_optim *o) { return o->vt->name; }

float *ndl_optim_state(ndl_optim *o, int64_t *numel) {
  if (numel) *numel = o->state_numel;
  return o->state;
}

int64_t ndl_optim_step_count(const ndl_optim *o) { return o->t; }

void ndl_optim_set_step_count(ndl_optim *o, int64_t t) {
  NDL_ASSERT(t >= 0);
  o->t = t;
}

ndl_status ndl_optim_load_state(ndl_optim *o, const float *state, int64_t numel, int64_t t) {
  if (numel != o->state_numel)
    return ndl_errorf(NDL_ERR_MISMATCH, "%s: checkpoint has %lld state floats, optimizer %lld",
                      o->vt->name, (long long)numel, (long long)o->state_numel);
  if (t < 0) return ndl_errorf(NDL_ERR_ARG, "%s: step count %lld < 0", o->vt->name, (long long)t);
  if (numel) memcpy(o->state, state, (size_t)numel * sizeof(float));
  o->t = t;
  return NDL_OK;
}
