/* optim.c: SGD (needle's dampened momentum, optional Nesterov), Adam, AdamW and RMSProp over the
 * flat parameter store. Each step is one float32 loop over params->data, reading params->grad,
 * with scalars rounded to float32 exactly as numpy does for float32 arrays and Python floats.
 * Leaves out: per-parameter groups, AMSGrad, gradient clipping, schedules (set o->lr instead). */
#include "optim/optim.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/simd.h"
#include "core/threadpool.h"

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

/* ---- update loops ---- */

static void sgd_step(ndl_optim *o, int64_t lo, int64_t hi) {
  const sgd *s = (const sgd *)o;
  float *theta = o->params->data + lo;
  const float *grad = o->params->grad + lo;
  const int64_t n = hi - lo;
  const float lr = (float)o->lr, wd = (float)o->weight_decay;
  if (!o->state) { /* momentum 0: u = 0*u + 1*g = g, so no buffer is needed */
    for (int64_t i = 0; i < n; i++) {
      float g = grad[i] + wd * theta[i];
      theta[i] = theta[i] - lr * g;
    }
    return;
  }
  const float m = (float)s->momentum, one_m = (float)(1.0 - s->momentum);
  float *u = o->state + lo;
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i] + wd * theta[i];
    u[i] = m * u[i] + one_m * g;
    float d = s->nesterov ? m * u[i] + one_m * g : u[i];
    theta[i] = theta[i] - lr * d;
  }
}

/* Shared by Adam (coupled L2: g = grad + wd*θ) and AdamW (θ *= 1 - lr*wd, then raw grad). */
/* One Adam update over the flat buffer; `decoupled` is a literal in each caller, so each clone
 * below compiles to a branch-free vectorized loop. */
static inline void adam_loop(float *restrict theta, const float *restrict grad, float *restrict m,
                             float *restrict v, int64_t n, float b1, float one_b1, float b2, float one_b2,
                             float inv_bc1, float inv_bc2, float lr, float eps, float wd, float shrink,
                             const int decoupled) {
  for (int64_t i = 0; i < n; i++) {
    float g;
    if (decoupled) {
      theta[i] = theta[i] * shrink;
      g = grad[i];
    } else {
      g = grad[i] + wd * theta[i];
    }
    m[i] = b1 * m[i] + one_b1 * g;
    v[i] = b2 * v[i] + one_b2 * (g * g);
    float m_hat = m[i] * inv_bc1, v_hat = v[i] * inv_bc2;
    theta[i] = theta[i] - (lr * m_hat) / (sqrtf(v_hat) + eps);
  }
}

NDL_SIMD_CLONES static void adam_coupled(float *restrict theta, const float *restrict grad, float *restrict m,
                                         float *restrict v, int64_t n, const float *k) {
  adam_loop(theta, grad, m, v, n, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], 0);
}

NDL_SIMD_CLONES static void adam_decoupled(float *restrict theta, const float *restrict grad, float *restrict m,
                                           float *restrict v, int64_t n, const float *k) {
  adam_loop(theta, grad, m, v, n, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], 1);
}

static void adam_update(ndl_optim *o, int decoupled, int64_t lo, int64_t hi) {
  const adam *a = (const adam *)o;
  const int64_t n = hi - lo, total = o->params->numel;
  const double t = (double)o->t; /* already incremented by ndl_optim_step */
  /* scalars rounded to float32 once, as numpy does for float32 arrays and Python floats */
  const float k[10] = {(float)a->beta1, (float)(1.0 - a->beta1), (float)a->beta2, (float)(1.0 - a->beta2),
                       (float)(1.0 / (1.0 - pow(a->beta1, t))), (float)(1.0 / (1.0 - pow(a->beta2, t))), (float)o->lr,
                       (float)a->eps, decoupled ? 0.0f : (float)o->weight_decay,
                       (float)(1.0 - o->lr * o->weight_decay)};
  float *theta = o->params->data + lo, *m = o->state + lo, *v = o->state + total + lo;
  const float *grad = o->params->grad + lo;
  if (decoupled) adam_decoupled(theta, grad, m, v, n, k);
  else adam_coupled(theta, grad, m, v, n, k);
}

static void adam_step(ndl_optim *o, int64_t lo, int64_t hi) { adam_update(o, 0, lo, hi); }
static void adamw_step(ndl_optim *o, int64_t lo, int64_t hi) { adam_update(o, 1, lo, hi); }

static void rmsprop_step(ndl_optim *o, int64_t lo, int64_t hi) {
  const rmsprop *r = (const rmsprop *)o;
  float *theta = o->params->data + lo;
  const float *grad = o->params->grad + lo;
  const int64_t n = hi - lo;
  float *cache = o->state + lo;
  const float lr = (float)o->lr, wd = (float)o->weight_decay, eps = (float)r->eps;
  const float d = (float)r->decay, one_d = (float)(1.0 - r->decay);
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i] + wd * theta[i];
    cache[i] = d * cache[i] + one_d * (g * g);
    theta[i] = theta[i] - (lr * g) / (sqrtf(cache[i]) + eps);
  }
}

static const ndl_optim_vtable sgd_vt = {"sgd", 1, sgd_step};
static const ndl_optim_vtable sgd_plain_vt = {"sgd", 0, sgd_step};
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

static void step_chunk(void *arg, int64_t part) {
  ndl_optim *o = arg;
  int parts = ndl_threadpool_threads();
  int64_t n = o->params->numel;
  /* chunk edges on 16-float boundaries keep every chunk's vector loop aligned */
  int64_t lo = n * part / parts / 16 * 16, hi = part + 1 == parts ? n : n * (part + 1) / parts / 16 * 16;
  o->vt->step(o, lo, hi);
}

void ndl_optim_step(ndl_optim *o) {
  NDL_ASSERT(o && o->params && o->params->grad);
  /* the store must not grow after the optimizer sized its state */
  NDL_ASSERT(o->state_numel == o->vt->state_per_param * o->params->numel);
  o->t++;
  /* every element is independent, so any split gives the same bits */
  int threads = ndl_threadpool_threads();
  if (threads == 1 || o->params->numel < 8192) {
    o->vt->step(o, 0, o->params->numel);
    return;
  }
  ndl_parallel_for(threads, step_chunk, o);
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
