/* autograd.c: reverse-mode differentiation. A post-order DFS over nodes that require a gradient
 * gives the topological order; adjoints flow back through one switch of vector-Jacobian products
 * written with the op set itself (so create_graph yields a differentiable result). Adjoints that
 * meet are summed. All scratch lives in the step arena; every node's adj is cleared on return. */
#include "core/autograd.h"

#include <string.h>

#include "core/backend.h"
#include "core/op_impl.h"
#include "core/ops.h"

typedef struct node_list {
  ndl_tensor **items;
  int count, cap;
} node_list;

static int list_push(ndl_ctx *ctx, node_list *l, ndl_tensor *t) {
  if (l->count == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    ndl_tensor **items = ndl_ctx_alloc(ctx, (size_t)cap * sizeof *items);
    if (!items) return 0;
    if (l->count) memcpy(items, l->items, (size_t)l->count * sizeof *items);
    l->items = items;
    l->cap = cap;
  }
  l->items[l->count++] = t;
  return 1;
}

static int wants_grad(const ndl_tensor *t) { return t && t->requires_grad; }

/* Post-order of the nodes reachable from out through inputs that require a gradient. */
static ndl_status topo_order(ndl_ctx *ctx, ndl_tensor *out, node_list *order) {
  node_list stack = {0};
  uint32_t mark = ++ctx->mark;
  out->mark = mark;
  if (!list_push(ctx, &stack, out)) return ctx->status;
  while (stack.count) {
    ndl_tensor *t = stack.items[stack.count - 1];
    ndl_tensor *next = NULL;
    for (int i = 0; i < NDL_MAX_SRC && !next; i++)
      if (wants_grad(t->src[i]) && t->src[i]->mark != mark) next = t->src[i];
    if (next) {
      next->mark = mark;
      if (!list_push(ctx, &stack, next)) return ctx->status;
    } else {
      stack.count--;
      if (!list_push(ctx, order, t)) return ctx->status;
    }
  }
  return NDL_OK;
}

float *ndl_grad_sink(ndl_ctx *ctx, ndl_tensor *t) {
  if (!ctx->backward_to_leaves || t->op != NDL_OP_NONE || !t->requires_grad) return NULL;
  if (!t->grad) {
    t->grad = ndl_tensor_zeros(ctx, t->ndim, t->shape);
    t->arena_grad = t->grad;
    t->grad_epoch = ctx->epoch;
  }
  if (!t->grad || !ndl_tensor_is_contiguous(t->grad)) return NULL;
  return ndl_tensor_ptr(t->grad);
}

/* Sum a contribution into t's adjoint, or straight into a leaf's gradient during backward. */
static void add_adjoint(ndl_ctx *ctx, ndl_tensor *t, ndl_tensor *contrib) {
  if (!contrib || !wants_grad(t) || ctx->status != NDL_OK) return;
  NDL_ASSERT(ndl_shape_equal(t, contrib));
  float *sink = ndl_grad_sink(ctx, t);
  if (sink) ctx->backend->accumulate(sink, contrib);
  else t->adj = t->adj ? ndl_add(ctx, t->adj, contrib) : contrib;
}

/* The keepdims shape of a reduction node's input, broadcast back to the input. */
static ndl_tensor *expand_reduced(ndl_ctx *ctx, const ndl_tensor *node, ndl_tensor *v) {
  const ndl_tensor *a = node->src[0];
  int64_t keep[NDL_MAX_DIMS];
  memcpy(keep, a->shape, sizeof keep);
  for (int i = 0; i < node->naxes; i++) keep[node->iparams[i]] = 1;
  v = ndl_reshape(ctx, v, a->ndim, keep);
  return ndl_broadcast_to(ctx, v, a->ndim, a->shape);
}

/* Push node->adj back to its inputs. */
static void backprop_node(ndl_ctx *ctx, ndl_tensor *node) {
  ndl_tensor *g = node->adj, *a = node->src[0], *b = node->src[1];
  ndl_tensor *ga = NULL, *gb = NULL;
  float s = node->scalar;
  switch (node->op) {
    case NDL_OP_ADD: ga = g; gb = g; break;
    case NDL_OP_SUB: ga = g; gb = ndl_neg(ctx, g); break;
    case NDL_OP_MUL: ga = ndl_mul(ctx, g, b); gb = ndl_mul(ctx, g, a); break;
    case NDL_OP_DIV:
      ga = ndl_div(ctx, g, b);
      gb = ndl_neg(ctx, ndl_div(ctx, ndl_mul(ctx, g, node), b));
      break;
    case NDL_OP_POW:
      if (wants_grad(a)) ga = ndl_mul(ctx, g, ndl_mul(ctx, b, ndl_pow(ctx, a, ndl_add_scalar(ctx, b, -1.0f))));
      if (wants_grad(b)) gb = ndl_mul(ctx, g, ndl_mul(ctx, node, ndl_log(ctx, a)));
      break;
    case NDL_OP_MAXIMUM:
      ga = ndl_mul(ctx, g, ndl_ge(ctx, a, b));
      gb = ndl_mul(ctx, g, ndl_gt(ctx, b, a));
      break;
    case NDL_OP_DROPOUT: ga = ndl_dropout(ctx, g, b, s); break; /* the mask itself gets none */
    case NDL_OP_ADD_SCALAR: ga = g; break;
    case NDL_OP_MUL_SCALAR: ga = ndl_mul_scalar(ctx, g, s); break;
    case NDL_OP_DIV_SCALAR: ga = ndl_div_scalar(ctx, g, s); break;
    case NDL_OP_RDIV_SCALAR: ga = ndl_neg(ctx, ndl_mul(ctx, g, ndl_div(ctx, node, a))); break;
    case NDL_OP_POW_SCALAR:
      ga = ndl_mul(ctx, g, ndl_mul_scalar(ctx, ndl_pow_scalar(ctx, a, s - 1.0f), s));
      break;
    case NDL_OP_NEG: ga = ndl_neg(ctx, g); break;
    case NDL_OP_LOG: ga = ndl_div(ctx, g, a); break;
    case NDL_OP_EXP: ga = ndl_mul(ctx, g, node); break;
    case NDL_OP_RELU:
      /* the composed form when a graph is built; one pass (g where a > 0) otherwise */
      ga = ctx->grad_enabled ? ndl_mul(ctx, g, ndl_gt_scalar(ctx, a, 0.0f)) : ndl_relu_grad(ctx, g, a);
      break;
    case NDL_OP_TANH:
      ga = ndl_mul(ctx, g, ndl_add_scalar(ctx, ndl_neg(ctx, ndl_mul(ctx, node, node)), 1.0f));
      break;
    case NDL_OP_SUM: ga = expand_reduced(ctx, node, g); break;
    case NDL_OP_MAX:
      ga = ndl_mul(ctx, expand_reduced(ctx, node, g), ndl_eq(ctx, a, expand_reduced(ctx, node, node)));
      break;
    case NDL_OP_LOGSUMEXP:
      ga = ndl_mul(ctx, expand_reduced(ctx, node, g),
                   ndl_exp(ctx, ndl_sub(ctx, a, expand_reduced(ctx, node, node))));
      break;
    case NDL_OP_RESHAPE: ga = ndl_reshape(ctx, g, a->ndim, a->shape); break;
    case NDL_OP_COMPACT: ga = g; break;
    case NDL_OP_BROADCAST: {
      int axes[NDL_MAX_DIMS], n = 0, lead = node->ndim - a->ndim;
      for (int d = 0; d < node->ndim; d++)
        if (d < lead || (a->shape[d - lead] == 1 && node->shape[d] != 1)) axes[n++] = d;
      ga = n ? ndl_reshape(ctx, ndl_sum(ctx, g, axes, n), a->ndim, a->shape) : g;
      break;
    }
    case NDL_OP_PERMUTE: {
      int inv[NDL_MAX_DIMS];
      for (int d = 0; d < node->ndim; d++) inv[node->iparams[d]] = d;
      ga = ndl_permute(ctx, g, inv);
      break;
    }
    case NDL_OP_SLICE:
      ga = ndl_unslice(ctx, g, a, node->iparams, node->iparams + NDL_MAX_DIMS);
      break;
    case NDL_OP_UNSLICE: {
      int64_t stop[NDL_MAX_DIMS];
      for (int d = 0; d < a->ndim; d++)
        stop[d] = node->iparams[d] + (a->shape[d] - 1) * node->iparams[NDL_MAX_DIMS + d] + 1;
      ga = ndl_slice(ctx, g, node->iparams, stop, node->iparams + NDL_MAX_DIMS);
      break;
    }
    case NDL_OP_MATMUL: {
      int64_t k = a->shape[a->ndim - 1], n = b->shape[1];
      if (wants_grad(a)) ga = ndl_matmul(ctx, g, ndl_transpose(ctx, b, 0, 1));
      if (wants_grad(b)) {
        int64_t a2[2] = {-1, k}, g2[2] = {-1, n};
        ndl_tensor *a_rows = a->ndim == 2 ? a : ndl_reshape(ctx, a, 2, a2);
        ndl_tensor *g_rows = g->ndim == 2 ? g : ndl_reshape(ctx, g, 2, g2);
        gb = ndl_matmul(ctx, ndl_transpose(ctx, a_rows, 0, 1), g_rows);
      }
      break;
    }
    case NDL_OP_LINEAR: case NDL_OP_BATCHNORM: case NDL_OP_LAYERNORM: case NDL_OP_SOFTMAX_CE: {
      ndl_tensor *gs[NDL_MAX_SRC] = {NULL, NULL, NULL};
      ndl_fused_backward(ctx, node, gs);
      ga = gs[0];
      gb = gs[1];
      add_adjoint(ctx, node->src[2], gs[2]);
      break;
    }
    default:
      NDL_ABORT("autograd: no gradient for op %s", ndl_op_name(node->op));
  }
  add_adjoint(ctx, a, ga);
  add_adjoint(ctx, b, gb);
}

/* A leaf's .grad that backward allocated in the step arena before the last ndl_ctx_reset (or in
 * another context) is released memory: refuse rather than accumulate into it. */
static ndl_status check_leaf_grads(ndl_ctx *ctx, const node_list *order) {
  for (int i = 0; i < order->count; i++) {
    const ndl_tensor *t = order->items[i];
    if (t->op != NDL_OP_NONE || !t->grad || t->grad != t->arena_grad || t->grad_epoch == ctx->epoch) continue;
    char sa[128];
    return ndl_ctx_fail(ctx, NDL_ERR_ARG,
                        "backward: leaf %s%s holds a step-arena gradient released by ndl_ctx_reset; "
                        "set its .grad to NULL (or to caller-owned storage) first",
                        t->name ? t->name : "tensor", ndl_shape_format(t->ndim, t->shape, sa, sizeof sa));
  }
  return NDL_OK;
}

/* Fill adjoints of every node reachable from out; the order is returned for the callers. */
static ndl_status run_backward(ndl_ctx *ctx, ndl_tensor *out, ndl_tensor *out_grad, int create_graph,
                               node_list *order) {
  if (ctx->status != NDL_OK) return ctx->status;
  if (!out) return ndl_ctx_fail(ctx, NDL_ERR_ARG, "backward: output is NULL");
  if (out_grad && !ndl_shape_equal(out, out_grad)) {
    char sa[128], sb[128];
    return ndl_ctx_fail(ctx, NDL_ERR_SHAPE, "backward: output%s out_grad%s: shapes differ",
                        ndl_shape_format(out->ndim, out->shape, sa, sizeof sa),
                        ndl_shape_format(out_grad->ndim, out_grad->shape, sb, sizeof sb));
  }
  if (!out->requires_grad) return NDL_OK;
  if (topo_order(ctx, out, order) != NDL_OK) return ctx->status;
  if (ctx->backward_to_leaves && check_leaf_grads(ctx, order) != NDL_OK) return ctx->status;
  int old = ndl_ctx_set_grad(ctx, create_graph);
  out->adj = out_grad ? out_grad : ndl_tensor_full(ctx, out->ndim, out->shape, 1.0f);
  for (int i = order->count - 1; i >= 0 && ctx->status == NDL_OK; i--) {
    ndl_tensor *t = order->items[i];
    if (t->adj && t->op != NDL_OP_NONE) backprop_node(ctx, t);
  }
  ndl_ctx_set_grad(ctx, old);
  return ctx->status;
}

static void clear_adjoints(node_list *order) {
  for (int i = 0; i < order->count; i++) order->items[i]->adj = NULL;
}

ndl_status ndl_graph_backward(ndl_ctx *ctx, ndl_tensor *out, ndl_tensor *out_grad) {
  node_list order = {0};
  ctx->backward_to_leaves = 1;
  ndl_status st = run_backward(ctx, out, out_grad, 0, &order);
  ctx->backward_to_leaves = 0;
  for (int i = 0; i < order.count && st == NDL_OK; i++) {
    ndl_tensor *t = order.items[i];
    if (t->op != NDL_OP_NONE || !t->adj) continue;
    if (!t->grad) {
      t->grad = ndl_tensor_zeros(ctx, t->ndim, t->shape);
      t->arena_grad = t->grad;
      t->grad_epoch = ctx->epoch;
      if (!t->grad) st = ctx->status;
    }
    if (t->grad) ndl_tensor_accumulate(t->grad, t->adj);
  }
  clear_adjoints(&order);
  return st;
}

ndl_status ndl_graph_grad(ndl_ctx *ctx, ndl_tensor *out, ndl_tensor *out_grad, int n,
                          ndl_tensor *const *wrt, ndl_tensor **grads, int create_graph) {
  node_list order = {0};
  ndl_status st = run_backward(ctx, out, out_grad, create_graph, &order);
  for (int i = 0; i < n; i++) {
    grads[i] = NULL;
    if (st != NDL_OK) continue;
    grads[i] = wrt[i]->adj ? wrt[i]->adj : ndl_tensor_zeros(ctx, wrt[i]->ndim, wrt[i]->shape);
    if (!grads[i]) st = ctx->status;
  }
  clear_adjoints(&order);
  return st;
}
