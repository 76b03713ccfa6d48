/* cuda_fused_bwd.cu: backward of the fused ops on the GPU into the gradient targets it is handed
 * (ptr receives grad + beta * ptr): Linear as two sgemms (beta passed through) and a column sum,
 * the norms' column (and, for LayerNorm, row) sums in the CPU's order with SyncBN's sums staged
 * through the host all-reduce, and softmax-CE's probs - onehot scaled by the incoming gradient,
 * which is read on the device. */
#include "core/cuda/cuda_internal.h"
#include "core/kernel_math.h"

#define GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* What a target holds before this backward adds to it: 0 (beta 0 overwrites) or beta * old. */
__device__ static inline float target_base(const float *p, int64_t i, float beta) {
  return beta == 0.0f ? 0.0f : beta * p[i];
}

/* ---- kernels ---- */

/* db[j] = base + sum over rows of g[i, j], float, row order. */
__global__ void column_sum_kernel(const float *g, int64_t n, int64_t d, float *db, float beta) {
  GRID_STRIDE(j, d) {
    float acc = target_base(db, j, beta);
    for (int64_t i = 0; i < n; i++) acc += g[i * d + j];
    db[j] = acc;
  }
}

/* Per column: dw += sum g*xhat, db += sum g (float, row order), and for batchnorm's dx the double
 * sums s1 = sum dxhat, s2 = sum dxhat*xhat into acc[j], acc[d+j]. */
__global__ void norm_col_kernel(const float *g, const float *xhat, const float *w, int64_t n, int64_t d,
                                float *dw, float beta_w, float *db, float beta_b, double *acc) {
  GRID_STRIDE(j, d) {
    float sw = dw ? target_base(dw, j, beta_w) : 0.0f, sb = db ? target_base(db, j, beta_b) : 0.0f;
    double s1 = 0.0, s2 = 0.0;
    float wj = w ? w[j] : 1.0f;
    for (int64_t i = 0; i < n; i++) {
      float gv = g[i * d + j], hv = xhat[i * d + j];
      sb += gv;
      sw += gv * hv;
      double dh = ndl_km_norm_dxhat(gv, wj);
      s1 += dh;
      s2 += dh * (double)hv;
    }
    if (dw) dw[j] = sw;
    if (db) db[j] = sb;
    if (acc) {
      acc[j] = s1;
      acc[d + j] = s2;
    }
  }
}

/* LayerNorm: per row, s1 = sum dxhat and s2 = sum dxhat*xhat into acc[i], acc[n+i]. */
__global__ void norm_row_kernel(const float *g, const float *xhat, const float *w, int64_t n, int64_t d,
                                double *acc) {
  GRID_STRIDE(i, n) {
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = 0; j < d; j++) {
      double dh = ndl_km_norm_dxhat(g[i * d + j], w ? w[j] : 1.0f);
      s1 += dh;
      s2 += dh * (double)xhat[i * d + j];
    }
    acc[i] = s1;
    acc[n + i] = s2;
  }
}

/* dx = base + invstd * (dxhat - s1/count - xhat * s2/count); sums per column (batch) or row. */
__global__ void norm_dx_kernel(const float *g, const float *xhat, const float *w, const float *invstd,
                               const double *acc, int64_t n, int64_t d, float inv_count, int per_row,
                               float *dx, float beta) {
  int64_t ns = per_row ? n : d;
  GRID_STRIDE(e, n * d) {
    int64_t i = e / d, j = e - i * d, k = per_row ? i : j;
    float m1 = (float)acc[k] * inv_count, m2 = (float)acc[ns + k] * inv_count;
    dx[e] = target_base(dx, e, beta) + ndl_km_norm_dx(g[e], w ? w[j] : 1.0f, xhat[e], invstd[k], m1, m2);
  }
}

__global__ void ce_backward_kernel(const float *g, double denom, const float *probs, const int32_t *labels,
                                   int64_t n, int64_t c, float *dz, float beta) {
  float scale = (float)((double)g[0] / denom);
  GRID_STRIDE(e, n * c) {
    int64_t i = e / c, j = e - i * c;
    float v = target_base(dz, e, beta) + scale * probs[e];
    if (j == labels[i]) v -= scale;
    dz[e] = v;
  }
}

/* ---- launchers ---- */

static void linear_backward(ndl_ctx *ctx, ndl_tensor *node, const float *g, const ndl_grad_target *tg,
                            cudaStream_t st) {
  ndl_tensor *x = node->src[0], *w = node->src[1];
  int64_t n = node->shape[0], out = node->shape[1];
  ndl_tensor gt;
  ndl_tensor_init_view(&gt, (float *)g, 2, node->shape);
  if (tg[0].ptr) {
    ndl_tensor wt = ndl_view_transposed(w);
    if (ndl_cuda_gemm(ctx, &gt, &wt, tg[0].ptr, tg[0].beta, st) != NDL_OK) return;
  }
  if (tg[1].ptr) {
    ndl_tensor xt = ndl_view_transposed(x);
    if (ndl_cuda_gemm(ctx, &xt, &gt, tg[1].ptr, tg[1].beta, st) != NDL_OK) return;
  }
  if (tg[2].ptr && out > 0) {
    column_sum_kernel<<<ndl_cuda_blocks(out), NDL_CUDA_THREADS, 0, st>>>(g, n, out, tg[2].ptr, tg[2].beta);
    NDL_CUDA_CHECK_LAUNCH();
  }
}

static void norm_backward(ndl_ctx *ctx, ndl_tensor *node, const float *g, const ndl_grad_target *tg,
                          cudaStream_t st) {
  ndl_norm_state *s = (ndl_norm_state *)node->aux;
  int batch = node->op == NDL_OP_BATCHNORM;
  int64_t n = node->shape[0], d = node->shape[1], ns = batch ? d : n;
  const float *w = ndl_cuda_norm_param(node->src[1], st);
  if (node->src[1] && !w) {
    ndl_cuda_scratch_fail(ctx, "norm weight", (size_t)d * sizeof(float));
    return;
  }
  int need_dx = tg[0].ptr != NULL;
  double *acc = need_dx ? (double *)ndl_cuda_scratch((size_t)(2 * (ns > 0 ? ns : 1)) * sizeof(double)) : NULL;
  if (need_dx && !acc) {
    ndl_cuda_scratch_fail(ctx, "norm backward sums", (size_t)(2 * ns) * sizeof(double));
    return;
  }
  if ((tg[1].ptr || tg[2].ptr || (batch && acc)) && d > 0) {
    norm_col_kernel<<<ndl_cuda_blocks(d), NDL_CUDA_THREADS, 0, st>>>(g, s->xhat, w, n, d, tg[1].ptr, tg[1].beta,
                                                                     tg[2].ptr, tg[2].beta, batch ? acc : NULL);
    NDL_CUDA_CHECK_LAUNCH();
  }
  if (!need_dx) return;
  if (!batch && n > 0) {
    norm_row_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(g, s->xhat, w, n, d, acc);
    NDL_CUDA_CHECK_LAUNCH();
  }
  if (batch && s->sync.host && ndl_cuda_allreduce_staged(ctx, s, acc, 2 * ns, st) != NDL_OK) return;
  if (n * d == 0) return;
  norm_dx_kernel<<<ndl_cuda_blocks(n * d), NDL_CUDA_THREADS, 0, st>>>(
      g, s->xhat, w, s->invstd, acc, n, d, (float)(1.0 / (double)s->count), !batch, tg[0].ptr, tg[0].beta);
  NDL_CUDA_CHECK_LAUNCH();
}

static void softmax_ce_backward(ndl_tensor *node, const float *g, const ndl_grad_target *tg, cudaStream_t st) {
  ndl_ce_state *s = (ndl_ce_state *)node->aux;
  int64_t n = node->src[0]->shape[0], c = node->src[0]->shape[1];
  if (!tg[0].ptr || n * c == 0) return;
  ce_backward_kernel<<<ndl_cuda_blocks(n * c), NDL_CUDA_THREADS, 0, st>>>(
      g, s->denom, s->probs, s->labels, n, c, tg[0].ptr, tg[0].beta);
  NDL_CUDA_CHECK_LAUNCH();
}

void ndl_cuda_fused_backward(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *targets, cudaStream_t st) {
  const float *g = ndl_cuda_contiguous(node->adj, st);
  if (!g) {
    ndl_cuda_scratch_fail(ctx, "fused backward gradient", (size_t)ndl_tensor_numel(node->adj) * sizeof(float));
    return;
  }
  switch (node->op) {
    case NDL_OP_LINEAR: linear_backward(ctx, node, g, targets, st); break;
    case NDL_OP_BATCHNORM: case NDL_OP_LAYERNORM: norm_backward(ctx, node, g, targets, st); break;
    case NDL_OP_SOFTMAX_CE: softmax_ce_backward(node, g, targets, st); break;
    default: NDL_ABORT("cuda fused backward: op %s is not fused", ndl_op_name(node->op));
  }
}
