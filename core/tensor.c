/* tensor.c: the context (arena, backend, grad mode, sticky status), shape helpers, creating step
 * tensors and element access. Memory moves through the backend's vtable (core/backend.h);
 * computation lives in the backends; node building in ops.c. */
#include "core/tensor.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"

static const char *const op_names[] = {
#define NDL_OP_NAME(name, text) text,
    NDL_OP_TABLE(NDL_OP_NAME)
#undef NDL_OP_NAME
};
_Static_assert(sizeof op_names / sizeof op_names[0] == NDL_OP_COUNT, "op name table out of sync");

const char *ndl_op_name(ndl_op op) {
  if ((int)op < 0 || op >= NDL_OP_COUNT) NDL_ABORT("bad op value %d", (int)op);
  return op_names[op];
}

const char *ndl_device_name(ndl_device d) {
  switch (d) {
    case NDL_DEV_CPU: return "cpu";
    case NDL_DEV_CUDA: return "cuda";
    case NDL_DEV_TEST: return "test";
  }
  return "unknown device";
}

/* The backend owning t's memory; aborts when this build has none (a bug: no such tensor can exist). */
static const ndl_backend *backend_of(const ndl_tensor *t) {
  const ndl_backend *b = ndl_backend_for(t->device);
  if (!b) NDL_ABORT("no backend for device %s in this build", ndl_device_name(t->device));
  return b;
}

static atomic_ullong epochs; /* source of unique ndl_ctx.epoch values */

ndl_ctx *ndl_ctx_new(void) { return ndl_ctx_new_on(NULL); }

ndl_ctx *ndl_ctx_new_on(const ndl_backend *backend) {
  ndl_ctx *ctx = ndl_malloc(sizeof *ctx);
  if (!ctx) return NULL;
  memset(ctx, 0, sizeof *ctx);
  ctx->backend = backend ? backend : ndl_backend_cpu();
  ndl_arena_init(&ctx->arena, (size_t)1 << 20);
  ndl_arena_init_on(&ctx->data, (size_t)1 << 20, ctx->backend->alloc, ctx->backend->free);
  ctx->grad_enabled = 1;
  ctx->epoch = atomic_fetch_add(&epochs, 1) + 1;
  return ctx;
}

void ndl_ctx_free(ndl_ctx *ctx) {
  if (!ctx) return;
  ndl_arena_free(&ctx->arena);
  ndl_arena_free(&ctx->data);
  ndl_free(ctx);
}

void ndl_ctx_reset(ndl_ctx *ctx) {
  ndl_arena_reset(&ctx->arena);
  ndl_arena_reset(&ctx->data);
  ctx->status = NDL_OK;
  ctx->epoch = atomic_fetch_add(&epochs, 1) + 1;
  ctx->feeds = ctx->feeds_last = NULL; /* (they lived in the arena) */
}

int ndl_ctx_set_grad(ndl_ctx *ctx, int enabled) {
  int old = ctx->grad_enabled;
  ctx->grad_enabled = enabled;
  return old;
}

ndl_status ndl_ctx_fail(ndl_ctx *ctx, ndl_status s, const char *fmt, ...) {
  if (ctx->status != NDL_OK) return s; /* keep the first error and its message */
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ctx->status = s;
  return ndl_errorf(s, "%s", msg);
}

void *ndl_ctx_alloc(ndl_ctx *ctx, size_t bytes) {
  void *p = ndl_arena_alloc(&ctx->arena, bytes);
  if (!p) ndl_ctx_fail(ctx, NDL_ERR_NOMEM, "out of memory: step arena could not grow by %zu bytes", bytes);
  return p;
}

int ndl_ctx_data_on_host(const ndl_ctx *ctx) { return ctx->backend->device == NDL_DEV_CPU; }

void *ndl_ctx_alloc_data(ndl_ctx *ctx, size_t bytes) {
  if (ndl_ctx_data_on_host(ctx)) return ndl_ctx_alloc(ctx, bytes);
  void *p = ndl_arena_alloc(&ctx->data, bytes);
  if (!p)
    ndl_ctx_fail(ctx, NDL_ERR_NOMEM, "out of memory: %s step arena could not grow by %zu bytes",
                 ctx->backend->name, bytes);
  return p;
}

int64_t ndl_shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return -1;
  return n;
}

char *ndl_shape_format(int ndim, const int64_t *shape, char *buf, int buflen) {
  int pos = snprintf(buf, (size_t)buflen, "[");
  for (int i = 0; i < ndim && pos < buflen; i++)
    pos += snprintf(buf + pos, (size_t)(buflen - pos), i ? ",%lld" : "%lld", (long long)shape[i]);
  if (pos < buflen) snprintf(buf + pos, (size_t)(buflen - pos), "]");
  return buf;
}

int ndl_shape_equal(const ndl_tensor *a, const ndl_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

int64_t ndl_tensor_numel(const ndl_tensor *t) { return ndl_shape_numel(t->ndim, t->shape); }

int ndl_tensor_is_contiguous(const ndl_tensor *t) {
  int64_t expect = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->strides[i] != expect) return 0;
    expect *= t->shape[i];
  }
  return 1;
}

void ndl_tensor_init_view(ndl_tensor *t, float *data, int ndim, const int64_t *shape) {
  NDL_ASSERT(ndim >= 0 && ndim <= NDL_MAX_DIMS);
  memset(t, 0, sizeof *t);
  t->data = data;
  t->ndim = ndim;
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    t->shape[i] = shape[i];
    t->strides[i] = stride;
    stride *= shape[i];
  }
}

ndl_tensor *ndl_tensor_empty(ndl_ctx *ctx, int ndim, const int64_t *shape) {
  if (ctx->status != NDL_OK) return NULL;
  char buf[128];
  if (ndim < 0 || ndim > NDL_MAX_DIMS) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "tensor: %d dims, at most %d supported", ndim, NDL_MAX_DIMS);
    return NULL;
  }
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0) {
      ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "tensor: negative dimension in shape %s",
                   ndl_shape_format(ndim, shape, buf, sizeof buf));
      return NULL;
    }
  int64_t n = ndl_shape_numel(ndim, shape);
  if (n < 0 || n > NDL_MAX_NUMEL) {
    ndl_ctx_fail(ctx, NDL_ERR_NOMEM, "tensor: shape %s has too many elements (at most %lld)",
                 ndl_shape_format(ndim, shape, buf, sizeof buf), (long long)NDL_MAX_NUMEL);
    return NULL;
  }
  size_t head = (sizeof(ndl_tensor) + NDL_ALIGN - 1) / NDL_ALIGN * NDL_ALIGN;
  if (ndl_ctx_data_on_host(ctx)) { /* node and data in one host block */
    unsigned char *mem = ndl_ctx_alloc(ctx, head + (size_t)n * sizeof(float));
    if (!mem) return NULL;
    ndl_tensor *t = (ndl_tensor *)mem;
    ndl_tensor_init_view(t, (float *)(mem + head), ndim, shape);
    t->device = ctx->backend->device;
    return t;
  }
  ndl_tensor *t = ndl_ctx_alloc(ctx, sizeof *t);
  float *data = ndl_ctx_alloc_data(ctx, (size_t)n * sizeof(float));
  if (!t || !data) return NULL;
  ndl_tensor_init_view(t, data, ndim, shape);
  t->device = ctx->backend->device;
  return t;
}

ndl_tensor *ndl_tensor_full(ndl_ctx *ctx, int ndim, const int64_t *shape, float value) {
  ndl_tensor *t = ndl_tensor_empty(ctx, ndim, shape);
  if (!t) return NULL;
  ctx->backend->fill(ndl_tensor_ptr(t), value, ndl_tensor_numel(t));
  return t;
}

ndl_tensor *ndl_tensor_zeros(ndl_ctx *ctx, int ndim, const int64_t *shape) {
  return ndl_tensor_full(ctx, ndim, shape, 0.0f);
}

ndl_tensor *ndl_tensor_from(ndl_ctx *ctx, int ndim, const int64_t *shape, const float *values) {
  ndl_tensor *t = ndl_tensor_empty(ctx, ndim, shape);
  if (t) ctx->backend->copy(ndl_tensor_ptr(t), values, (size_t)ndl_tensor_numel(t) * sizeof(float), NDL_COPY_H2D);
  return t;
}

float ndl_tensor_get(const ndl_tensor *t, const int64_t *index) {
  int64_t off = t->offset;
  for (int i = 0; i < t->ndim; i++) {
    NDL_ASSERT(index[i] >= 0 && index[i] < t->shape[i]);
    off += index[i] * t->strides[i];
  }
  if (t->device == NDL_DEV_CPU) return t->data[off];
  float v;
  backend_of(t)->copy(&v, t->data + off, sizeof v, NDL_COPY_D2H);
  return v;
}

float *ndl_tensor_host_begin(ndl_ctx *ctx, ndl_tensor *t) {
  NDL_ASSERT(ndl_tensor_is_contiguous(t));
  if (t->device == NDL_DEV_CPU) return ndl_tensor_ptr(t);
  return ndl_ctx_alloc(ctx, (size_t)ndl_tensor_numel(t) * sizeof(float));
}

void ndl_tensor_host_end(ndl_ctx *ctx, ndl_tensor *t, const float *host) {
  if (!host || host == ndl_tensor_ptr(t)) return;
  ctx->backend->copy(ndl_tensor_ptr(t), host, (size_t)ndl_tensor_numel(t) * sizeof(float), NDL_COPY_H2D);
}

void ndl_tensor_copy_out(const ndl_tensor *t, float *out) { backend_of(t)->strided_copy(t, out); }

ndl_tensor ndl_view_transposed(const ndl_tensor *t) {
  ndl_tensor v = *t;
  v.shape[0] = t->shape[1];
  v.shape[1] = t->shape[0];
  v.strides[0] = t->strides[1];
  v.strides[1] = t->strides[0];
  return v;
}

void ndl_tensor_set_requires_grad(ndl_tensor *t, int on) { t->requires_grad = (uint8_t)(on != 0); }

ndl_tensor *ndl_tensor_detach(ndl_ctx *ctx, ndl_tensor *t) {
  if (!t || ctx->status != NDL_OK) return NULL;
  ndl_tensor *d = ndl_ctx_alloc(ctx, sizeof *d);
  if (!d) return NULL;
  *d = *t;
  d->op = NDL_OP_NONE;
  memset(d->src, 0, sizeof d->src);
  d->aux = NULL;
  d->requires_grad = 0;
  d->grad = d->adj = NULL;
  d->arena_grad = NULL;
  return d;
}

void ndl_tensor_accumulate(ndl_tensor *dst, const ndl_tensor *src) {
  NDL_ASSERT(ndl_shape_equal(dst, src));
  NDL_ASSERT(ndl_tensor_is_contiguous(dst));
  NDL_ASSERT(dst->device == src->device);
  backend_of(dst)->accumulate(ndl_tensor_ptr(dst), src);
}
