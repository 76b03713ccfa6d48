/* ops.c: building op nodes. Checks shapes and axes when a node is built (naming both shapes),
 * allocates the result in the step arena, asks the context's backend to compute it and records the
 * node for autograd when grad mode is on and an input requires a gradient. View ops (reshape of a
 * contiguous tensor, broadcast_to, permute, slice) share storage and compute nothing. */
#include "core/ops.h"

#include <string.h>

#include "core/backend.h"
#include "core/op_impl.h"

#define SHAPE_STR(t, buf) ndl_shape_format((t)->ndim, (t)->shape, buf, sizeof buf)

static int differentiable(ndl_op op) {
  return !(op == NDL_OP_EQ || op == NDL_OP_GT || op == NDL_OP_GE || op == NDL_OP_GT_SCALAR ||
           op == NDL_OP_RELU_GRAD);
}

ndl_tensor *ndl_op_record(ndl_ctx *ctx, ndl_tensor *t) {
  int any = 0;
  for (int i = 0; i < NDL_MAX_SRC; i++) any |= t->src[i] && t->src[i]->requires_grad;
  int needs = ctx->grad_enabled && differentiable(t->op) && any;
  t->grad = t->adj = NULL;
  t->arena_grad = NULL;
  t->name = NULL;
  t->requires_grad = (uint8_t)needs;
  if (!needs) {
    t->op = NDL_OP_NONE;
    memset(t->src, 0, sizeof t->src);
  }
  return t;
}

/* Allocate and compute a node with a fresh contiguous output. */
static ndl_tensor *compute_node(ndl_ctx *ctx, ndl_op op, int ndim, const int64_t *shape,
                                ndl_tensor *a, ndl_tensor *b, float scalar, const int64_t *iparams,
                                int naxes) {
  const ndl_tensor *in[2] = {a, b};
  if (!ndl_check_devices(ctx, ndl_op_name(op), in, 2)) return NULL;
  ndl_tensor *t = ndl_tensor_empty(ctx, ndim, shape);
  if (!t) return NULL;
  t->op = op;
  t->src[0] = a;
  t->src[1] = b;
  t->scalar = scalar;
  t->naxes = naxes;
  if (iparams) memcpy(t->iparams, iparams, sizeof t->iparams);
  if (ctx->backend->compute(ctx, t) != NDL_OK) return NULL;
  return ndl_op_record(ctx, t);
}

/* A node sharing a's storage with the given geometry. */
static ndl_tensor *view_node(ndl_ctx *ctx, ndl_op op, ndl_tensor *a, int ndim, const int64_t *shape,
                             const int64_t *strides, int64_t offset) {
  const ndl_tensor *in[1] = {a};
  if (!ndl_check_devices(ctx, ndl_op_name(op), in, 1)) return NULL;
  ndl_tensor *t = ndl_ctx_alloc(ctx, sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  t->data = a->data;
  t->device = a->device;
  t->offset = offset;
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
  memcpy(t->strides, strides, (size_t)ndim * sizeof(int64_t));
  t->op = op;
  t->src[0] = a;
  return t;
}

static int alive(ndl_ctx *ctx, const ndl_tensor *a, const ndl_tensor *b, int binary) {
  if (ctx->status != NDL_OK) return 0;
  if (!a || (binary && !b)) {
    ndl_ctx_fail(ctx, NDL_ERR_ARG, "op given a NULL tensor");
    return 0;
  }
  return 1;
}

int ndl_check_devices(ndl_ctx *ctx, const char *what, const ndl_tensor *const *in, int n) {
  ndl_device want = ctx->backend->device;
  for (int i = 0; i < n; i++) {
    if (!in[i] || in[i]->device == want) continue;
    char sa[128], sw[128];
    const ndl_tensor *first = in[0];
    if (i > 0 && first && first->device != in[i]->device) /* two inputs disagree: name both */
      ndl_ctx_fail(ctx, NDL_ERR_ARG, "%s: input 0%s on %s, input %d%s on %s: devices differ", what,
                   SHAPE_STR(first, sw), ndl_device_name(first->device), i, SHAPE_STR(in[i], sa),
                   ndl_device_name(in[i]->device));
    else
      ndl_ctx_fail(ctx, NDL_ERR_ARG, "%s: input %d%s on %s, context's backend %s on %s: devices differ",
                   what, i, SHAPE_STR(in[i], sa), ndl_device_name(in[i]->device), ctx->backend->name,
                   ndl_device_name(want));
    return 0;
  }
  return 1;
}

static ndl_tensor *binary_scalar(ndl_ctx *ctx, ndl_op op, ndl_tensor *a, ndl_tensor *b, float s) {
  if (!alive(ctx, a, b, 1)) return NULL;
  if (!ndl_shape_equal(a, b)) {
    char sa[128], sb[128];
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "%s: a%s b%s: shapes differ (no implicit broadcasting)",
                 ndl_op_name(op), SHAPE_STR(a, sa), SHAPE_STR(b, sb));
    return NULL;
  }
  return compute_node(ctx, op, a->ndim, a->shape, a, b, s, NULL, 0);
}

static ndl_tensor *binary(ndl_ctx *ctx, ndl_op op, ndl_tensor *a, ndl_tensor *b) {
  return binary_scalar(ctx, op, a, b, 0.0f);
}

static ndl_tensor *unary(ndl_ctx *ctx, ndl_op op, ndl_tensor *a, float s) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  return compute_node(ctx, op, a->ndim, a->shape, a, NULL, s, NULL, 0);
}

ndl_tensor *ndl_add(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_ADD, a, b); }
ndl_tensor *ndl_sub(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_SUB, a, b); }
ndl_tensor *ndl_mul(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_MUL, a, b); }
ndl_tensor *ndl_div(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_DIV, a, b); }
ndl_tensor *ndl_pow(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_POW, a, b); }
ndl_tensor *ndl_maximum(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) {
  return binary(c, NDL_OP_MAXIMUM, a, b);
}
ndl_tensor *ndl_dropout(ndl_ctx *c, ndl_tensor *x, ndl_tensor *mask, float keep) {
  return binary_scalar(c, NDL_OP_DROPOUT, x, mask, keep);
}
ndl_tensor *ndl_eq(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_EQ, a, b); }
ndl_tensor *ndl_gt(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_GT, a, b); }
ndl_tensor *ndl_ge(ndl_ctx *c, ndl_tensor *a, ndl_tensor *b) { return binary(c, NDL_OP_GE, a, b); }
ndl_tensor *ndl_relu_grad(ndl_ctx *c, ndl_tensor *g, ndl_tensor *a) {
  return binary(c, NDL_OP_RELU_GRAD, g, a);
}
ndl_tensor *ndl_gt_scalar(ndl_ctx *c, ndl_tensor *a, float s) {
  return unary(c, NDL_OP_GT_SCALAR, a, s);
}
ndl_tensor *ndl_add_scalar(ndl_ctx *c, ndl_tensor *a, float s) {
  return unary(c, NDL_OP_ADD_SCALAR, a, s);
}
ndl_tensor *ndl_mul_scalar(ndl_ctx *c, ndl_tensor *a, float s) {
  return unary(c, NDL_OP_MUL_SCALAR, a, s);
}
ndl_tensor *ndl_div_scalar(ndl_ctx *c, ndl_tensor *a, float s) {
  return unary(c, NDL_OP_DIV_SCALAR, a, s);
}
ndl_tensor *ndl_rdiv_scalar(ndl_ctx *c, ndl_tensor *a, float s) {
  return unary(c, NDL_OP_RDIV_SCALAR, a, s);
}
ndl_tensor *ndl_pow_scalar(ndl_ctx *c, ndl_tensor *a, float s) {
  return unary(c, NDL_OP_POW_SCALAR, a, s);
}
ndl_tensor *ndl_neg(ndl_ctx *c, ndl_tensor *a) { return unary(c, NDL_OP_NEG, a, 0.0f); }
ndl_tensor *ndl_log(ndl_ctx *c, ndl_tensor *a) { return unary(c, NDL_OP_LOG, a, 0.0f); }
ndl_tensor *ndl_exp(ndl_ctx *c, ndl_tensor *a) { return unary(c, NDL_OP_EXP, a, 0.0f); }
ndl_tensor *ndl_relu(ndl_ctx *c, ndl_tensor *a) { return unary(c, NDL_OP_RELU, a, 0.0f); }
ndl_tensor *ndl_tanh(ndl_ctx *c, ndl_tensor *a) { return unary(c, NDL_OP_TANH, a, 0.0f); }

/* Validate axes into sorted, distinct, non-negative iparams; NULL axes = all. Returns count or -1. */
static int normalize_axes(ndl_ctx *ctx, const char *what, const ndl_tensor *a, const int *axes,
                          int naxes, int64_t *out) {
  char sa[128];
  int used[NDL_MAX_DIMS] = {0}, n = 0;
  if (!axes) {
    for (int d = 0; d < a->ndim; d++) out[n++] = d;
    return n;
  }
  if (naxes < 0 || naxes > a->ndim) {
    ndl_ctx_fail(ctx, NDL_ERR_AXES, "%s: %d axes given for a%s", what, naxes, SHAPE_STR(a, sa));
    return -1;
  }
  for (int i = 0; i < naxes; i++) {
    int ax = axes[i] < 0 ? axes[i] + a->ndim : axes[i];
    if (ax < 0 || ax >= a->ndim) {
      ndl_ctx_fail(ctx, NDL_ERR_AXES, "%s: axis %d out of range for a%s", what, axes[i],
                   SHAPE_STR(a, sa));
      return -1;
    }
    if (used[ax]) {
      ndl_ctx_fail(ctx, NDL_ERR_AXES, "%s: axis %d repeated for a%s", what, axes[i], SHAPE_STR(a, sa));
      return -1;
    }
    used[ax] = 1;
  }
  for (int d = 0; d < a->ndim; d++)
    if (used[d]) out[n++] = d;
  return n;
}

static ndl_tensor *reduce(ndl_ctx *ctx, ndl_op op, ndl_tensor *a, const int *axes, int naxes) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  int64_t ip[2 * NDL_MAX_DIMS] = {0}, shape[NDL_MAX_DIMS];
  int n = normalize_axes(ctx, ndl_op_name(op), a, axes, naxes, ip);
  if (n < 0) return NULL;
  int reduced[NDL_MAX_DIMS] = {0}, k = 0;
  for (int i = 0; i < n; i++) reduced[ip[i]] = 1;
  for (int d = 0; d < a->ndim; d++) {
    if (!reduced[d]) shape[k++] = a->shape[d];
    else if (a->shape[d] == 0 && op != NDL_OP_SUM) {
      char sa[128];
      ndl_ctx_fail(ctx, NDL_ERR_AXES, "%s: axis %d of a%s is empty", ndl_op_name(op), d,
                   SHAPE_STR(a, sa));
      return NULL;
    }
  }
  return compute_node(ctx, op, k, shape, a, NULL, 0.0f, ip, n);
}

ndl_tensor *ndl_sum(ndl_ctx *c, ndl_tensor *a, const int *axes, int n) {
  return reduce(c, NDL_OP_SUM, a, axes, n);
}
ndl_tensor *ndl_max(ndl_ctx *c, ndl_tensor *a, const int *axes, int n) {
  return reduce(c, NDL_OP_MAX, a, axes, n);
}
ndl_tensor *ndl_logsumexp(ndl_ctx *c, ndl_tensor *a, const int *axes, int n) {
  return reduce(c, NDL_OP_LOGSUMEXP, a, axes, n);
}

ndl_tensor *ndl_logsoftmax(ndl_ctx *ctx, ndl_tensor *a) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  if (a->ndim == 0) {
    ndl_ctx_fail(ctx, NDL_ERR_AXES, "logsoftmax: needs at least 1 dim, got a 0-d tensor");
    return NULL;
  }
  int last = a->ndim - 1;
  int64_t keep[NDL_MAX_DIMS];
  memcpy(keep, a->shape, sizeof keep);
  keep[last] = 1;
  ndl_tensor *lse = ndl_logsumexp(ctx, a, &last, 1);
  lse = ndl_reshape(ctx, lse, a->ndim, keep);
  lse = ndl_broadcast_to(ctx, lse, a->ndim, a->shape);
  return ndl_sub(ctx, a, lse);
}

ndl_tensor *ndl_reshape(ndl_ctx *ctx, ndl_tensor *a, int ndim, const int64_t *shape_in) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  char sa[128], sb[128];
  int64_t shape[NDL_MAX_DIMS];
  int infer = -1;
  if (ndim < 0 || ndim > NDL_MAX_DIMS) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "reshape: %d dims requested for a%s", ndim, SHAPE_STR(a, sa));
    return NULL;
  }
  int64_t known = 1;
  for (int i = 0; i < ndim; i++) {
    shape[i] = shape_in[i];
    if (shape[i] == -1 && infer < 0) infer = i;
    else if (shape[i] < 0 || __builtin_mul_overflow(known, shape[i], &known)) infer = -2;
  }
  int64_t n = ndl_tensor_numel(a);
  if (infer >= 0 && known > 0 && n % known == 0) shape[infer] = n / known;
  if (infer == -2 || ndl_shape_numel(ndim, shape) != n || (infer >= 0 && known == 0)) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "reshape: a%s -> %s: element counts differ", SHAPE_STR(a, sa),
                 ndl_shape_format(ndim, shape_in, sb, sizeof sb));
    return NULL;
  }
  if (!ndl_tensor_is_contiguous(a))
    return compute_node(ctx, NDL_OP_RESHAPE, ndim, shape, a, NULL, 0.0f, NULL, 0);
  int64_t strides[NDL_MAX_DIMS], s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  ndl_tensor *t = view_node(ctx, NDL_OP_RESHAPE, a, ndim, shape, strides, a->offset);
  return t ? ndl_op_record(ctx, t) : NULL;
}

ndl_tensor *ndl_broadcast_to(ndl_ctx *ctx, ndl_tensor *a, int ndim, const int64_t *shape) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  char sa[128], sb[128];
  if (ndim < a->ndim || ndim > NDL_MAX_DIMS) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "broadcast_to: a%s -> %s: target has fewer dims",
                 SHAPE_STR(a, sa), ndl_shape_format(ndim, shape, sb, sizeof sb));
    return NULL;
  }
  int64_t strides[NDL_MAX_DIMS];
  int lead = ndim - a->ndim;
  for (int d = 0; d < ndim; d++) {
    if (d < lead) {
      strides[d] = 0;
      continue;
    }
    int64_t have = a->shape[d - lead];
    if (have == shape[d]) {
      strides[d] = a->strides[d - lead];
    } else if (have == 1) {
      strides[d] = 0;
    } else {
      ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "broadcast_to: a%s -> %s: dim %d is %lld, not 1 or %lld",
                   SHAPE_STR(a, sa), ndl_shape_format(ndim, shape, sb, sizeof sb), d,
                   (long long)have, (long long)shape[d]);
      return NULL;
    }
  }
  ndl_tensor *t = view_node(ctx, NDL_OP_BROADCAST, a, ndim, shape, strides, a->offset);
  return t ? ndl_op_record(ctx, t) : NULL;
}

ndl_tensor *ndl_permute(ndl_ctx *ctx, ndl_tensor *a, const int *axes) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  int64_t shape[NDL_MAX_DIMS], strides[NDL_MAX_DIMS];
  int seen[NDL_MAX_DIMS] = {0};
  for (int d = 0; d < a->ndim; d++) {
    if (axes[d] < 0 || axes[d] >= a->ndim || seen[axes[d]]) {
      char sa[128];
      ndl_ctx_fail(ctx, NDL_ERR_AXES, "permute: axes are not a permutation of 0..%d for a%s",
                   a->ndim - 1, SHAPE_STR(a, sa));
      return NULL;
    }
    seen[axes[d]] = 1;
    shape[d] = a->shape[axes[d]];
    strides[d] = a->strides[axes[d]];
  }
  ndl_tensor *t = view_node(ctx, NDL_OP_PERMUTE, a, a->ndim, shape, strides, a->offset);
  if (!t) return NULL;
  for (int d = 0; d < a->ndim; d++) t->iparams[d] = axes[d];
  return ndl_op_record(ctx, t);
}

ndl_tensor *ndl_transpose(ndl_ctx *ctx, ndl_tensor *a, int axis0, int axis1) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  int axes[NDL_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) axes[d] = d;
  int i = axis0 < 0 ? axis0 + a->ndim : axis0, j = axis1 < 0 ? axis1 + a->ndim : axis1;
  if (i < 0 || i >= a->ndim || j < 0 || j >= a->ndim) {
    char sa[128];
    ndl_ctx_fail(ctx, NDL_ERR_AXES, "transpose: axes (%d,%d) out of range for a%s", axis0, axis1,
                 SHAPE_STR(a, sa));
    return NULL;
  }
  axes[i] = j;
  axes[j] = i;
  return ndl_permute(ctx, a, axes);
}

ndl_tensor *ndl_slice(ndl_ctx *ctx, ndl_tensor *a, const int64_t *start, const int64_t *stop,
                      const int64_t *step) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  int64_t shape[NDL_MAX_DIMS], strides[NDL_MAX_DIMS], offset = a->offset;
  for (int d = 0; d < a->ndim; d++) {
    int64_t st = step ? step[d] : 1;
    if (st < 1 || start[d] < 0 || start[d] > stop[d] || stop[d] > a->shape[d]) {
      char sa[128];
      ndl_ctx_fail(ctx, NDL_ERR_AXES, "slice: dim %d range %lld:%lld:%lld invalid for a%s", d,
                   (long long)start[d], (long long)stop[d], (long long)st, SHAPE_STR(a, sa));
      return NULL;
    }
    shape[d] = (stop[d] - start[d] + st - 1) / st;
    strides[d] = a->strides[d] * st;
    offset += start[d] * a->strides[d];
  }
  ndl_tensor *t = view_node(ctx, NDL_OP_SLICE, a, a->ndim, shape, strides, offset);
  if (!t) return NULL;
  for (int d = 0; d < a->ndim; d++) {
    t->iparams[d] = start[d];
    t->iparams[NDL_MAX_DIMS + d] = step ? step[d] : 1;
  }
  return ndl_op_record(ctx, t);
}

ndl_tensor *ndl_unslice(ndl_ctx *ctx, ndl_tensor *g, const ndl_tensor *like_input,
                        const int64_t *start, const int64_t *step) {
  if (!alive(ctx, g, like_input, 1)) return NULL;
  int64_t ip[2 * NDL_MAX_DIMS] = {0};
  for (int d = 0; d < g->ndim; d++) {
    ip[d] = start[d];
    ip[NDL_MAX_DIMS + d] = step[d];
  }
  return compute_node(ctx, NDL_OP_UNSLICE, like_input->ndim, like_input->shape, g, NULL, 0.0f, ip,
                      0);
}

ndl_tensor *ndl_compact(ndl_ctx *ctx, ndl_tensor *a) {
  if (!alive(ctx, a, NULL, 0)) return NULL;
  if (ndl_tensor_is_contiguous(a)) return a;
  return compute_node(ctx, NDL_OP_COMPACT, a->ndim, a->shape, a, NULL, 0.0f, NULL, 0);
}

ndl_tensor *ndl_matmul(ndl_ctx *ctx, ndl_tensor *a, ndl_tensor *b) {
  if (!alive(ctx, a, b, 1)) return NULL;
  char sa[128], sb[128];
  if (a->ndim < 2 || b->ndim != 2) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "matmul: a%s b%s: needs a with >= 2 dims and a 2-D b",
                 SHAPE_STR(a, sa), SHAPE_STR(b, sb));
    return NULL;
  }
  if (a->shape[a->ndim - 1] != b->shape[0]) {
    ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "matmul: a%s b%s: inner dims differ", SHAPE_STR(a, sa),
                 SHAPE_STR(b, sb));
    return NULL;
  }
  int64_t shape[NDL_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  shape[a->ndim - 1] = b->shape[1];
  return compute_node(ctx, NDL_OP_MATMUL, a->ndim, shape, a, b, 0.0f, NULL, 0);
}
