/* nn_kernels.c: CPU kernels of the fused ops: Linear (bias rows then sgemm with beta 1; backward as
 * two sgemms and a column sum into the gradient targets it is handed: beta 1 accumulates into
 * parameter gradients in place), BatchNorm and
 * LayerNorm (two-pass mean/variance in double, analytic backward), softmax cross-entropy. */
#include <math.h>
#include <string.h>

#include "core/blas_select.h"
#include "core/cpu/cpu_kernels.h"
#include "core/kernel_math.h"
#include "core/simd.h"
#include "core/threadpool.h"

/* out[j] += sum over rows of a[i, j] (float accumulation, row order). */
NDL_SIMD_CLONES static void add_column_sums(const float *restrict a, int64_t n, int64_t d, float *restrict out) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) out[j] += a[i * d + j];
}

static ndl_status linear_forward(ndl_ctx *ctx, ndl_tensor *node) {
  const ndl_tensor *x = node->src[0], *w = node->src[1], *b = node->src[2];
  float *y = ndl_tensor_ptr(node);
  int64_t n = node->shape[0], out = node->shape[1];
  float beta = 0.0f;
  if (b) {
    const float *bp = ndl_cpu_contiguous(ctx, b);
    if (!bp) return ctx->status;
    for (int64_t i = 0; i < n; i++) memcpy(y + i * out, bp, (size_t)out * sizeof(float));
    beta = 1.0f;
  }
  return ndl_cpu_gemm(ctx, x, w, y, beta);
}

/* Column sums (double accumulation) of a contiguous [rows, cols] array into acc[cols]; with
 * center != NULL the sums of squared deviations from center[j]. */
NDL_SIMD_CLONES static void column_sums(const float *restrict a, int64_t rows, int64_t cols,
                                        const float *restrict center, double *restrict acc) {
  memset(acc, 0, (size_t)cols * sizeof(double));
  for (int64_t i = 0; i < rows; i++) {
    const float *r = a + i * cols;
    if (center)
      for (int64_t j = 0; j < cols; j++) {
        double c = (double)r[j] - (double)center[j];
        acc[j] += c * c;
      }
    else
      for (int64_t j = 0; j < cols; j++) acc[j] += r[j];
  }
}

/* y = xhat * w + b with xhat = (x - mean) * invstd, per column. */
NDL_SIMD_CLONES static void bn_apply(const float *restrict x, int64_t n, int64_t d, const float *restrict mean,
                                     const float *restrict invstd, const float *restrict w,
                                     const float *restrict b, float *restrict xhat, float *restrict y) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++)
      y[i * d + j] = ndl_km_norm_apply(x[i * d + j], mean[j], invstd[j], w[j], b[j], &xhat[i * d + j]);
}

/* A norm's weight or bias as d contiguous floats; NULL (affine off) reads as d copies of fill. */
static const float *norm_param(ndl_ctx *ctx, const ndl_tensor *p, int64_t d, float fill) {
  if (p) return ndl_cpu_contiguous(ctx, p);
  float *v = ndl_ctx_alloc(ctx, (size_t)d * sizeof(float));
  for (int64_t j = 0; v && j < d; j++) v[j] = fill;
  return v;
}

static ndl_status allreduce(ndl_ctx *ctx, ndl_norm_state *s, double *buf, int64_t n) {
  ndl_status st = s->sync.host(s->sync.handle, buf, n);
  if (st != NDL_OK) return ndl_ctx_fail(ctx, st, "batchnorm: all-reduce failed: %s", ndl_last_error());
  return NDL_OK;
}

/* Sums over the local rows of x and x^2 per column, into acc[0..d) and acc[d..2d). */
NDL_SIMD_CLONES static void column_sums_sq(const float *restrict x, int64_t n, int64_t d, double *restrict acc) {
  memset(acc, 0, (size_t)(2 * d) * sizeof(double));
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) {
      double v = x[i * d + j];
      acc[j] += v;
      acc[d + j] += v * v;
    }
}

static ndl_status batchnorm_forward(ndl_ctx *ctx, ndl_tensor *node) {
  ndl_norm_state *s = node->aux;
  int64_t n = node->shape[0], d = node->shape[1];
  const float *x = ndl_cpu_contiguous(ctx, node->src[0]);
  const float *w = norm_param(ctx, node->src[1], d, 1.0f), *b = norm_param(ctx, node->src[2], d, 0.0f);
  double *acc = ndl_ctx_alloc(ctx, (size_t)(2 * d) * sizeof(double));
  if (!x || !w || !b || !acc) return ctx->status;
  double count = (double)s->count;
  if (s->sync.host) { /* SyncBN: one collective of (sum x, sum x^2), in double */
    column_sums_sq(x, n, d, acc);
    if (allreduce(ctx, s, acc, 2 * d) != NDL_OK) return ctx->status;
    for (int64_t j = 0; j < d; j++) {
      double mean = acc[j] / count, var = acc[d + j] / count - mean * mean;
      s->mean[j] = (float)mean;
      s->var[j] = (float)(var < 0.0 ? 0.0 : var); /* clamps rounding below 0; NaN stays NaN */
    }
  } else { /* two passes over the local rows */
    column_sums(x, n, d, NULL, acc);
    for (int64_t j = 0; j < d; j++) s->mean[j] = (float)(acc[j] / count);
    column_sums(x, n, d, s->mean, acc);
    for (int64_t j = 0; j < d; j++) s->var[j] = (float)(acc[j] / count);
  }
  for (int64_t j = 0; j < d; j++) s->invstd[j] = ndl_km_invstd(s->var[j], s->eps);
  bn_apply(x, n, d, s->mean, s->invstd, w, b, s->xhat, ndl_tensor_ptr(node));
  if (s->running_mean && s->count > 0) { /* an empty global batch's 0/0 would make them NaN */
    float keep = (float)(1.0 - (double)s->momentum), m = s->momentum;
    for (int64_t j = 0; j < d; j++) {
      s->running_mean[j] = ndl_km_running(s->running_mean[j], s->mean[j], keep, m);
      s->running_var[j] = ndl_km_running(s->running_var[j], s->var[j], keep, m);
    }
  }
  return NDL_OK;
}

static ndl_status layernorm_forward(ndl_ctx *ctx, ndl_tensor *node) {
  ndl_norm_state *s = node->aux;
  int64_t n = node->shape[0], d = node->shape[1];
  const float *x = ndl_cpu_contiguous(ctx, node->src[0]);
  const float *w = norm_param(ctx, node->src[1], d, 1.0f), *b = norm_param(ctx, node->src[2], d, 0.0f);
  if (!x || !w || !b) return ctx->status;
  float *y = ndl_tensor_ptr(node);
  for (int64_t i = 0; i < n; i++) {
    const float *xr = x + i * d;
    double sum = 0.0, sq = 0.0;
    for (int64_t j = 0; j < d; j++) sum += xr[j];
    double mean = sum / (double)d;
    for (int64_t j = 0; j < d; j++) sq += ((double)xr[j] - mean) * ((double)xr[j] - mean);
    s->mean[i] = (float)mean;
    s->var[i] = (float)(sq / (double)d);
    s->invstd[i] = ndl_km_invstd(s->var[i], s->eps);
    float *hr = s->xhat + i * d, *yr = y + i * d;
    for (int64_t j = 0; j < d; j++) yr[j] = ndl_km_norm_apply(xr[j], s->mean[i], s->invstd[i], w[j], b[j], &hr[j]);
  }
  return NDL_OK;
}

static ndl_status softmax_ce_forward(ndl_ctx *ctx, ndl_tensor *node) {
  ndl_ce_state *s = node->aux;
  int64_t n = node->src[0]->shape[0], c = node->src[0]->shape[1];
  for (int64_t i = 0; i < n; i++) /* the caller's contract (backend.h); cheap to keep checking here */
    if (s->labels[i] < 0 || s->labels[i] >= c)
      return ndl_ctx_fail(ctx, NDL_ERR_ARG, "softmax_cross_entropy: label %d of row %lld outside [0,%lld)",
                          s->labels[i], (long long)i, (long long)c);
  const float *z = ndl_cpu_contiguous(ctx, node->src[0]);
  if (!z) return ctx->status;
  double total = 0.0;
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *zr = z + i * c;
    float *pr = s->probs + i * c;
    double lse = ndl_km_softmax_row(zr, pr, c);
    total += lse - (double)zr[s->labels[i]];
    if (s->sums) wrong += ndl_km_argmax_first(zr, c) != s->labels[i];
  }
  ndl_tensor_ptr(node)[0] = (float)(total / s->denom);
  if (s->sums) {
    s->sums[0] += total;
    s->sums[1] += (double)wrong;
  }
  return NDL_OK;
}

ndl_status ndl_cpu_fused_forward(ndl_ctx *ctx, ndl_tensor *node) {
  switch (node->op) {
    case NDL_OP_LINEAR: return linear_forward(ctx, node);
    case NDL_OP_BATCHNORM: return batchnorm_forward(ctx, node);
    case NDL_OP_LAYERNORM: return layernorm_forward(ctx, node);
    case NDL_OP_SOFTMAX_CE: return softmax_ce_forward(ctx, node);
    default: NDL_ABORT("fused forward: op %s is not fused", ndl_op_name(node->op));
  }
}

/* The target's pointer, zeroed first when it is to be overwritten (beta 0); NULL: not needed. */
static float *target_zeroed(const ndl_grad_target *t, int64_t n) {
  if (t->ptr && t->beta == 0.0f) memset(t->ptr, 0, (size_t)n * sizeof(float));
  return t->ptr;
}

typedef struct linear_bw_job {
  ndl_ctx *ctx;
  ndl_tensor gt, wt, xt;
  const float *g;
  float *dx, *dw, *db;
  float beta_x, beta_w;
  int64_t n, out;
} linear_bw_job;

/* Task 0: dx = g . w^T; task 1: dw = x^T . g and db = column sums of g. Independent outputs. */
static void linear_bw_task(void *arg, int64_t task) {
  linear_bw_job *j = arg;
  if (task == 0 && j->dx) ndl_cpu_gemm(j->ctx, &j->gt, &j->wt, j->dx, j->beta_x);
  if (task == 1 && j->dw) ndl_cpu_gemm(j->ctx, &j->xt, &j->gt, j->dw, j->beta_w);
  if (task == 1 && j->db) add_column_sums(j->g, j->n, j->out, j->db);
}

static void linear_backward(ndl_ctx *ctx, ndl_tensor *node, const float *g, const ndl_grad_target *tg) {
  ndl_tensor *x = node->src[0], *w = node->src[1];
  linear_bw_job j = {.ctx = ctx, .g = g, .n = node->shape[0], .out = node->shape[1]};
  ndl_tensor_init_view(&j.gt, (float *)g, 2, node->shape);
  j.wt = ndl_view_transposed(w);
  j.xt = ndl_view_transposed(x);
  j.dx = tg[0].ptr;
  j.dw = tg[1].ptr;
  j.beta_x = tg[0].beta;
  j.beta_w = tg[1].beta;
  j.db = target_zeroed(&tg[2], j.out);
  /* The two products run concurrently on two threads when both are needed; operands that would
   * need a contiguous copy (step-arena allocation, single-threaded), or a BLAS that is not
   * thread-safe, keep it sequential. */
  int parallel = j.dx && j.dw && ndl_threadpool_threads() > 1 && ndl_tensor_is_contiguous(x) &&
                 ndl_tensor_is_contiguous(w) && ndl_blas_concurrent_ok();
  if (parallel) {
    ndl_parallel_for(2, linear_bw_task, &j);
  } else {
    linear_bw_task(&j, 0);
    linear_bw_task(&j, 1);
  }
}

/* Column pass of batchnorm backward: dw += sum g*xhat, db += sum g, and the double sums
 * s1 = sum dxhat, s2 = sum dxhat*xhat over rows (dxhat = g*w). */
NDL_SIMD_CLONES static void bn_backward_sums(const float *restrict g, const float *restrict xhat,
                                             const float *restrict w, int64_t n, int64_t d,
                                             float *restrict dw, float *restrict db, double *restrict s1,
                                             double *restrict s2) {
  if (db) add_column_sums(g, n, d, db);
  for (int64_t i = 0; i < n; i++) {
    const float *gr = g + i * d, *hr = xhat + i * d;
    if (dw)
      for (int64_t j = 0; j < d; j++) dw[j] += gr[j] * hr[j];
    if (s1)
      for (int64_t j = 0; j < d; j++) {
        double dh = ndl_km_norm_dxhat(gr[j], w[j]);
        s1[j] += dh;
        s2[j] += dh * (double)hr[j];
      }
  }
}

/* dx += invstd * (dxhat - s1/count - xhat * s2/count), per column (batch) or per row (layer). */
NDL_SIMD_CLONES static void norm_dx(const float *restrict g, const float *restrict xhat, const float *restrict w,
                                    const float *restrict invstd, const float *restrict sums, int64_t n,
                                    int64_t d, float inv_count, int per_row, float *restrict dx) {
  int64_t ns = per_row ? n : d;
  for (int64_t i = 0; i < n; i++) {
    const float *gr = g + i * d, *hr = xhat + i * d;
    float *dr = dx + i * d;
    if (per_row) {
      float inv = invstd[i], m1 = sums[i] * inv_count, m2 = sums[ns + i] * inv_count;
      for (int64_t j = 0; j < d; j++) dr[j] += ndl_km_norm_dx(gr[j], w[j], hr[j], inv, m1, m2);
    } else {
      for (int64_t j = 0; j < d; j++)
        dr[j] += ndl_km_norm_dx(gr[j], w[j], hr[j], invstd[j], sums[j] * inv_count, sums[ns + j] * inv_count);
    }
  }
}

/* Shared by both norms: dw, db as column sums; dx from the row (layernorm) or column (batchnorm)
 * sums s1 = sum dxhat and s2 = sum dxhat*xhat. */
static void norm_backward(ndl_ctx *ctx, ndl_tensor *node, const float *g, const ndl_grad_target *tg) {
  ndl_norm_state *s = node->aux;
  int batch = node->op == NDL_OP_BATCHNORM;
  int64_t n = node->shape[0], d = node->shape[1], ns = batch ? d : n;
  const float *w = norm_param(ctx, node->src[1], d, 1.0f);
  int need_dx = tg[0].ptr != NULL;
  double *acc = need_dx ? ndl_ctx_alloc(ctx, (size_t)(2 * ns) * sizeof(double)) : NULL;
  float *sums = need_dx ? ndl_ctx_alloc(ctx, (size_t)(2 * ns) * sizeof(float)) : NULL;
  if (!w || ctx->status != NDL_OK) return;
  float *dw = target_zeroed(&tg[1], d), *db = target_zeroed(&tg[2], d);
  if (acc) memset(acc, 0, (size_t)(2 * ns) * sizeof(double));
  if (batch) {
    bn_backward_sums(g, s->xhat, w, n, d, dw, db, acc, acc ? acc + d : NULL);
  } else {
    bn_backward_sums(g, s->xhat, w, n, d, dw, db, NULL, NULL);
    for (int64_t i = 0; acc && i < n; i++)
      for (int64_t j = 0; j < d; j++) {
        double dh = ndl_km_norm_dxhat(g[i * d + j], w[j]);
        acc[i] += dh;
        acc[ns + i] += dh * (double)s->xhat[i * d + j];
      }
  }
  if (!need_dx) return;
  if (batch && s->sync.host && allreduce(ctx, s, acc, 2 * ns) != NDL_OK) return;
  for (int64_t k = 0; k < 2 * ns; k++) sums[k] = (float)acc[k];
  float *dx = target_zeroed(&tg[0], n * d);
  norm_dx(g, s->xhat, w, s->invstd, sums, n, d, (float)(1.0 / (double)s->count), !batch, dx);
}

static void softmax_ce_backward(ndl_tensor *node, float g, const ndl_grad_target *tg) {
  ndl_ce_state *s = node->aux;
  ndl_tensor *z = node->src[0];
  int64_t n = z->shape[0], c = z->shape[1];
  float *dz = target_zeroed(&tg[0], n * c);
  if (!dz) return;
  float scale = (float)((double)g / s->denom);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < c; j++) dz[i * c + j] += scale * s->probs[i * c + j];
    dz[i * c + s->labels[i]] -= scale;
  }
}

void ndl_cpu_fused_backward(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *targets) {
  const float *g = ndl_cpu_contiguous(ctx, node->adj);
  if (!g) return;
  switch (node->op) {
    case NDL_OP_LINEAR: linear_backward(ctx, node, g, targets); break;
    case NDL_OP_BATCHNORM: case NDL_OP_LAYERNORM: norm_backward(ctx, node, g, targets); break;
    case NDL_OP_SOFTMAX_CE: softmax_ce_backward(node, g[0], targets); break;
    default: NDL_ABORT("fused backward: op %s is not fused", ndl_op_name(node->op));
  }
}
