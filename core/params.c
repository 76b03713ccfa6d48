/* params.c: the flat parameter/buffer store. Growing the flat buffers re-points every registered
 * view, so tensor struct addresses stay stable while the storage is one contiguous block. data and
 * grad live on the store's device (through its backend's memory entries); host is their mirror,
 * the same block on the host. */
#include "core/params.h"

#include <string.h>

#include "core/backend.h"

void ndl_params_init(ndl_params *p, int trainable) { ndl_params_init_on(p, trainable, NDL_DEV_CPU); }

void ndl_params_init_on(ndl_params *p, int trainable, ndl_device d) {
  memset(p, 0, sizeof *p);
  p->trainable = trainable;
  p->device = d;
  NDL_ASSERT(ndl_backend_for(d) != NULL);
}

static int on_host(const ndl_params *p) { return p->device == NDL_DEV_CPU; }

/* A device block of new_n floats holding the first old_n of *buf; NULL on failure (*buf kept). */
static float *device_grow(const ndl_backend *be, float *buf, int64_t old_n, int64_t new_n) {
  float *q = be->alloc((size_t)new_n * 4);
  if (!q) return NULL;
  if (old_n) be->copy(q, buf, (size_t)old_n * 4, NDL_COPY_D2D);
  be->free(buf);
  return q;
}

static int grow(ndl_params *p, int64_t need) {
  if (need < 0 || need > NDL_MAX_NUMEL) return 0; /* also keeps cap *= 2 and the byte sizes from wrapping */
  if (need > p->capacity) {
    int64_t cap = p->capacity ? p->capacity : 1024;
    while (cap < need) cap *= 2;
    /* re-point the views after each move: a failed second realloc must not leave them dangling */
    if (on_host(p)) {
      float *data = ndl_realloc(p->data, (size_t)p->numel * 4, (size_t)cap * 4);
      if (!data) return 0;
      p->data = p->host = data;
    } else {
      float *host = ndl_realloc(p->host, (size_t)p->numel * 4, (size_t)cap * 4);
      if (!host) return 0;
      p->host = host;
      float *data = device_grow(ndl_backend_for(p->device), p->data, p->numel, cap);
      if (!data) return 0;
      p->data = data;
    }
    for (int i = 0; i < p->count; i++) p->tensors[i]->data = p->data;
    if (p->trainable) {
      float *grad = on_host(p) ? ndl_realloc(p->grad, (size_t)p->numel * 4, (size_t)cap * 4)
                               : device_grow(ndl_backend_for(p->device), p->grad, p->numel, cap);
      if (!grad) return 0;
      p->grad = grad;
      for (int i = 0; i < p->count; i++) p->tensors[i]->grad->data = p->grad;
    }
    p->capacity = cap;
  }
  if (p->count == p->cap) {
    int cap = p->cap ? 2 * p->cap : 16;
    ndl_tensor **t = ndl_realloc(p->tensors, (size_t)p->cap * sizeof *t, (size_t)cap * sizeof *t);
    if (!t) return 0;
    p->tensors = t;
    char **n = ndl_realloc(p->names, (size_t)p->cap * sizeof *n, (size_t)cap * sizeof *n);
    if (!n) return 0;
    p->names = n;
    p->cap = cap;
  }
  return 1;
}

/* Zero n floats of a device buffer at offset off. */
static void zero_range(const ndl_params *p, float *buf, int64_t off, int64_t n) {
  if (on_host(p)) memset(buf + off, 0, (size_t)n * sizeof(float));
  else ndl_backend_for(p->device)->fill(buf + off, 0.0f, n);
}

ndl_tensor *ndl_params_add(ndl_params *p, const char *name, int ndim, const int64_t *shape) {
  int64_t n = ndl_shape_numel(ndim, shape);
  size_t name_len = strlen(name) + 1;
  if (n < 0 || n > NDL_MAX_NUMEL) {
    char buf[128];
    ndl_errorf(NDL_ERR_NOMEM, "parameter %s: shape %s has too many elements", name,
               ndl_shape_format(ndim, shape, buf, sizeof buf));
    return NULL;
  }
  if (!grow(p, p->numel + n)) {
    ndl_errorf(NDL_ERR_NOMEM, "out of memory registering parameter %s", name);
    return NULL;
  }
  /* one block: the tensor, its grad view, its name */
  unsigned char *mem = ndl_malloc(2 * sizeof(ndl_tensor) + name_len);
  if (!mem) {
    ndl_errorf(NDL_ERR_NOMEM, "out of memory registering parameter %s", name);
    return NULL;
  }
  ndl_tensor *t = (ndl_tensor *)mem, *g = t + 1;
  char *copy = (char *)(g + 1);
  memcpy(copy, name, name_len);
  ndl_tensor_init_view(t, p->data, ndim, shape);
  t->offset = p->numel;
  t->name = copy;
  t->device = p->device;
  zero_range(p, p->data, p->numel, n);
  if (!on_host(p)) memset(p->host + p->numel, 0, (size_t)n * sizeof(float));
  if (p->trainable) {
    ndl_tensor_init_view(g, p->grad, ndim, shape);
    g->offset = p->numel;
    g->device = p->device;
    zero_range(p, p->grad, p->numel, n);
    t->grad = g;
    t->requires_grad = 1;
  }
  p->tensors[p->count] = t;
  p->names[p->count] = copy;
  p->count++;
  p->numel += n;
  return t;
}

int ndl_params_find(const ndl_params *p, const char *name) {
  for (int i = 0; i < p->count; i++)
    if (strcmp(p->names[i], name) == 0) return i;
  return -1;
}

void ndl_params_zero_grad(ndl_params *p) {
  if (p->grad) zero_range(p, p->grad, 0, p->numel);
}

void ndl_params_pull(ndl_params *p) {
  if (on_host(p) || !p->numel) return;
  ndl_backend_for(p->device)->copy(p->host, p->data, (size_t)p->numel * 4, NDL_COPY_D2H);
}

void ndl_params_push(ndl_params *p) {
  if (on_host(p) || !p->numel) return;
  ndl_backend_for(p->device)->copy(p->data, p->host, (size_t)p->numel * 4, NDL_COPY_H2D);
}

void ndl_params_push_tensor(ndl_params *p, const ndl_tensor *t) {
  if (on_host(p)) return;
  int64_t n = ndl_tensor_numel(t);
  NDL_ASSERT(t->data == p->data && t->offset >= 0 && t->offset + n <= p->numel);
  ndl_backend_for(p->device)->copy(p->data + t->offset, p->host + t->offset, (size_t)n * 4, NDL_COPY_H2D);
}

void ndl_params_free(ndl_params *p) {
  for (int i = 0; i < p->count; i++) ndl_free(p->tensors[i]);
  ndl_free(p->tensors);
  ndl_free(p->names);
  if (on_host(p)) {
    ndl_free(p->data);
    ndl_free(p->grad);
  } else {
    const ndl_backend *be = ndl_backend_for(p->device);
    be->free(p->data);
    be->free(p->grad);
    ndl_free(p->host);
  }
  int trainable = p->trainable;
  ndl_device device = p->device;
  memset(p, 0, sizeof *p);
  p->trainable = trainable;
  p->device = device;
}
