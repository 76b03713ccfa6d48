/* params.c: the flat parameter/buffer store. Growing the flat buffers re-points every registered
 * view, so tensor struct addresses stay stable while the storage is one contiguous block. */
#include "core/params.h"

#include <string.h>

void ndl_params_init(ndl_params *p, int trainable) {
  memset(p, 0, sizeof *p);
  p->trainable = trainable;
}

static int grow(ndl_params *p, int64_t need) {
  if (need < 0 || need > NDL_MAX_NUMEL) return 0; /* also keeps cap *= 2 and the byte sizes from wrapping */
  if (need > p->capacity) {
    int64_t cap = p->capacity ? p->capacity : 1024;
    while (cap < need) cap *= 2;
    /* re-point the views after each move: a failed second realloc must not leave them dangling */
    float *data = ndl_realloc(p->data, (size_t)p->numel * 4, (size_t)cap * 4);
    if (!data) return 0;
    p->data = data;
    for (int i = 0; i < p->count; i++) p->tensors[i]->data = p->data;
    if (p->trainable) {
      float *grad = ndl_realloc(p->grad, (size_t)p->numel * 4, (size_t)cap * 4);
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
  memset(p->data + p->numel, 0, (size_t)n * sizeof(float));
  if (p->trainable) {
    ndl_tensor_init_view(g, p->grad, ndim, shape);
    g->offset = p->numel;
    memset(p->grad + p->numel, 0, (size_t)n * sizeof(float));
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
  if (p->grad) memset(p->grad, 0, (size_t)p->numel * sizeof(float));
}

void ndl_params_free(ndl_params *p) {
  for (int i = 0; i < p->count; i++) ndl_free(p->tensors[i]);
  ndl_free(p->tensors);
  ndl_free(p->names);
  ndl_free(p->data);
  ndl_free(p->grad);
  int trainable = p->trainable;
  memset(p, 0, sizeof *p);
  p->trainable = trainable;
}
