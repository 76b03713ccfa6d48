/* params.h: a store of named tensors living in one flat data buffer (and, for trainable stores,
 * one flat gradient buffer of the same layout). Modules register parameters (or buffers such as
 * BatchNorm running statistics) here; optimizers and dist/ work on the flat buffers directly. */
#ifndef NDL_PARAMS_H
#define NDL_PARAMS_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_params {
  int count, cap;
  ndl_tensor **tensors; /* owned structs, in registration order; views into data (grad into grad) */
  char **names;         /* owned copies */
  float *data;          /* flat values, numel floats (owned, the device's memory) */
  float *grad;          /* flat gradients (owned, the device's memory), NULL for a buffer store */
  /* Host mirror of data (numel floats): init, --save/--load, checkpoints and broadcasts work here,
   * with ndl_params_pull/push around them. On the host (NDL_DEV_CPU) it IS data: no copy. */
  float *host;
  int64_t numel, capacity;
  int trainable;        /* 1: parameters with gradients; 0: buffers */
  ndl_device device;    /* where data and grad live (NDL_DEV_CPU: host memory) */
} ndl_params;

/* Empty store on the host; trainable stores give every tensor requires_grad and a .grad view. */
void ndl_params_init(ndl_params *p, int trainable);
/* Empty store whose data and grad live on device d (its backend must exist: ndl_backend_for). */
void ndl_params_init_on(ndl_params *p, int trainable, ndl_device d);
/* Host mirror <- device data (no-op on the host). */
void ndl_params_pull(ndl_params *p);
/* Device data <- host mirror (no-op on the host). */
void ndl_params_push(ndl_params *p);
/* Device data of one registered tensor <- its host mirror (no-op on the host). */
void ndl_params_push_tensor(ndl_params *p, const ndl_tensor *t);
/* The host mirror of a registered tensor (contiguous, numel floats). */
static inline float *ndl_params_host_ptr(const ndl_params *p, const ndl_tensor *t) {
  return p->host + t->offset;
}
/* Register a zero-filled tensor; returns it (borrowed, stable address) or NULL with NDL_ERR_NOMEM. */
ndl_tensor *ndl_params_add(ndl_params *p, const char *name, int ndim, const int64_t *shape);
/* Index of the tensor with this name, or -1. */
int ndl_params_find(const ndl_params *p, const char *name);
/* Set every gradient to zero (explicit, never implicit). */
void ndl_params_zero_grad(ndl_params *p);
/* Free buffers, names and tensor structs; safe on a zeroed or already freed store. */
void ndl_params_free(ndl_params *p);

#ifdef __cplusplus
}
#endif
#endif
