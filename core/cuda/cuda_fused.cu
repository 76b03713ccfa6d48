/* cuda_fused.cu: forward of the fused ops on the GPU: Linear (bias rows, then sgemm with beta 1),
 * BatchNorm (per-column statistics in double, SyncBN's sums staged through the host all-reduce
 * callback, the running-stat update), LayerNorm (per-row statistics) and softmax cross-entropy
 * (per-row softmax, then one thread summing the rows' losses in row order, plus the epoch sums).
 * One thread per column/row walks its rows/columns in the CPU's order, so these are its bits. */
#include <stdlib.h>

#include "core/cuda/cuda_internal.h"
#include "core/kernel_math.h"

#define GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---- kernels ---- */

__global__ void bias_rows_kernel(float *y, ndl_cuda_view b, int64_t n, int64_t out) {
  GRID_STRIDE(e, n * out) y[e] = b.base[ndl_cuda_view_off(b, e % out)];
}

/* Two passes per column over the local rows: mean, then the squared deviations from it. */
__global__ void bn_stats_kernel(const float *x, int64_t n, int64_t d, double count, float *mean, float *var) {
  GRID_STRIDE(j, d) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) acc += x[i * d + j];
    float m = (float)(acc / count);
    acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
      double c = (double)x[i * d + j] - (double)m;
      acc += c * c;
    }
    mean[j] = m;
    var[j] = (float)(acc / count);
  }
}

/* SyncBN: the local sums of x and x^2 per column, into acc[0..d) and acc[d..2d). */
__global__ void bn_sums_sq_kernel(const float *x, int64_t n, int64_t d, double *acc) {
  GRID_STRIDE(j, d) {
    double s = 0.0, q = 0.0;
    for (int64_t i = 0; i < n; i++) {
      double v = x[i * d + j];
      s += v;
      q += v * v;
    }
    acc[j] = s;
    acc[d + j] = q;
  }
}

/* SyncBN: mean and E[x^2] - mean^2 (clamped at 0; NaN stays NaN) from the global sums. */
__global__ void bn_stats_from_sums_kernel(const double *acc, int64_t d, double count, float *mean, float *var) {
  GRID_STRIDE(j, d) {
    double m = acc[j] / count, v = acc[d + j] / count - m * m;
    mean[j] = (float)m;
    var[j] = (float)(v < 0.0 ? 0.0 : v);
  }
}

/* invstd per column, and the running statistics folded in when asked. */
__global__ void bn_finish_kernel(int64_t d, float eps, const float *mean, const float *var, float *invstd,
                                 float *run_mean, float *run_var, float keep, float momentum) {
  GRID_STRIDE(j, d) {
    invstd[j] = ndl_km_invstd(var[j], eps);
    if (run_mean) {
      run_mean[j] = ndl_km_running(run_mean[j], mean[j], keep, momentum);
      run_var[j] = ndl_km_running(run_var[j], var[j], keep, momentum);
    }
  }
}

/* y = xhat * w + b per element; stats per column (batch) or per row (layer). */
__global__ void norm_apply_kernel(const float *x, int64_t n, int64_t d, const float *mean, const float *invstd,
                                  const float *w, const float *b, int per_row, float *xhat, float *y) {
  GRID_STRIDE(e, n * d) {
    int64_t i = e / d, j = e - i * d, s = per_row ? i : j;
    y[e] = ndl_km_norm_apply(x[e], mean[s], invstd[s], w ? w[j] : 1.0f, b ? b[j] : 0.0f, &xhat[e]);
  }
}

__global__ void ln_stats_kernel(const float *x, int64_t n, int64_t d, float eps, float *mean, float *var,
                                float *invstd) {
  GRID_STRIDE(i, n) {
    const float *xr = x + i * d;
    double sum = 0.0, sq = 0.0;
    for (int64_t j = 0; j < d; j++) sum += xr[j];
    double m = sum / (double)d;
    for (int64_t j = 0; j < d; j++) sq += ((double)xr[j] - m) * ((double)xr[j] - m);
    mean[i] = (float)m;
    var[i] = (float)(sq / (double)d);
    invstd[i] = ndl_km_invstd(var[i], eps);
  }
}

/* Per row: probabilities, the row's loss (logsumexp - z[label]) and whether its first arg-max
 * misses the label. */
__global__ void ce_rows_kernel(const float *z, const int32_t *labels, int64_t n, int64_t c, float *probs,
                               double *row_loss, int *row_wrong) {
  GRID_STRIDE(i, n) {
    const float *zr = z + i * c;
    float *pr = probs + i * c;
    double lse = ndl_km_softmax_row(zr, pr, c);
    row_loss[i] = lse - (double)zr[labels[i]];
    row_wrong[i] = ndl_km_argmax_first(zr, c) != labels[i];
  }
}

/* One thread: the rows' losses in row order (the CPU's sum), the mean loss and the epoch sums. */
__global__ void ce_total_kernel(const double *row_loss, const int *row_wrong, int64_t n, double denom,
                                float *loss, double *sums) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double total = 0.0;
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; i++) {
    total += row_loss[i];
    wrong += row_wrong[i];
  }
  loss[0] = (float)(total / denom);
  if (sums) {
    sums[0] += total;
    sums[1] += (double)wrong;
  }
}

/* ---- launchers ---- */

ndl_status ndl_cuda_allreduce_staged(ndl_ctx *ctx, ndl_norm_state *s, double *dev, int64_t n, cudaStream_t st) {
  size_t bytes = (size_t)n * sizeof(double);
  if (ndl_cuda_capturing()) { /* the host callback cannot be part of a replayed step */
    ndl_cuda_capture_break();
    return ndl_ctx_fail(ctx, NDL_ERR_ARG, "batchnorm: SyncBN's all-reduce cannot run inside a captured step");
  }
  if (s->sync.device) { /* the process group sums device memory itself (NCCL) */
    NDL_CUDA_CHECK(cudaStreamSynchronize(st)); /* the sums it reads are complete */
    ndl_status r = s->sync.device(s->sync.handle, dev, n);
    if (r != NDL_OK) {
      s->status = r;
      return ndl_ctx_fail(ctx, r, "batchnorm: all-reduce failed: %s", ndl_last_error());
    }
    return NDL_OK;
  }
  double *host = (double *)malloc(bytes ? bytes : 1);
  if (!host) return ndl_ctx_fail(ctx, NDL_ERR_NOMEM, "batchnorm: no host memory to stage %zu bytes", bytes);
  NDL_CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, st));
  NDL_CUDA_CHECK(cudaStreamSynchronize(st));
  ndl_status r = s->sync.host(s->sync.handle, host, n);
  if (r == NDL_OK) {
    NDL_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, st));
    NDL_CUDA_CHECK(cudaStreamSynchronize(st));
  }
  free(host);
  if (r != NDL_OK) {
    s->status = r;
    return ndl_ctx_fail(ctx, r, "batchnorm: all-reduce failed: %s", ndl_last_error());
  }
  return NDL_OK;
}

const float *ndl_cuda_norm_param(const ndl_tensor *p, cudaStream_t st) { return p ? ndl_cuda_contiguous(p, st) : NULL; }

static ndl_status linear_forward(ndl_ctx *ctx, ndl_tensor *node, cudaStream_t st) {
  const ndl_tensor *x = node->src[0], *w = node->src[1], *b = node->src[2];
  float *y = ndl_tensor_ptr(node);
  int64_t n = node->shape[0], out = node->shape[1];
  float beta = 0.0f;
  if (b) {
    if (n * out > 0) {
      bias_rows_kernel<<<ndl_cuda_blocks(n * out), NDL_CUDA_THREADS, 0, st>>>(y, ndl_cuda_view_of(b), n, out);
      NDL_CUDA_CHECK_LAUNCH();
    }
    beta = 1.0f;
  }
  return ndl_cuda_gemm(ctx, x, w, y, beta, st);
}

static ndl_status norm_forward(ndl_ctx *ctx, ndl_tensor *node, cudaStream_t st) {
  ndl_norm_state *s = (ndl_norm_state *)node->aux;
  int batch = node->op == NDL_OP_BATCHNORM;
  int64_t n = node->shape[0], d = node->shape[1];
  const float *x = ndl_cuda_contiguous(node->src[0], st);
  if (!x) return ndl_cuda_scratch_fail(ctx, "norm input", (size_t)(n * d) * sizeof(float));
  const float *w = ndl_cuda_norm_param(node->src[1], st), *b = ndl_cuda_norm_param(node->src[2], st);
  if ((node->src[1] && !w) || (node->src[2] && !b)) return ndl_cuda_scratch_fail(ctx, "norm parameter", (size_t)d * 4);
  if (batch) {
    double count = (double)s->count;
    if (s->sync.host) { /* SyncBN: one all-reduce of (sum x, sum x^2), in double */
      double *acc = (double *)ndl_cuda_scratch((size_t)(2 * d) * sizeof(double));
      if (!acc) return ndl_cuda_scratch_fail(ctx, "batchnorm sums", (size_t)(2 * d) * sizeof(double));
      bn_sums_sq_kernel<<<ndl_cuda_blocks(d), NDL_CUDA_THREADS, 0, st>>>(x, n, d, acc);
      NDL_CUDA_CHECK_LAUNCH();
      if (ndl_cuda_allreduce_staged(ctx, s, acc, 2 * d, st) != NDL_OK) return ctx->status;
      bn_stats_from_sums_kernel<<<ndl_cuda_blocks(d), NDL_CUDA_THREADS, 0, st>>>(acc, d, count, s->mean, s->var);
    } else {
      bn_stats_kernel<<<ndl_cuda_blocks(d), NDL_CUDA_THREADS, 0, st>>>(x, n, d, count, s->mean, s->var);
    }
    NDL_CUDA_CHECK_LAUNCH();
    int fold = s->running_mean && s->running_var && s->count > 0;
    bn_finish_kernel<<<ndl_cuda_blocks(d), NDL_CUDA_THREADS, 0, st>>>(d, s->eps, s->mean, s->var, s->invstd,
                                                                      fold ? s->running_mean : NULL,
                                                                      fold ? s->running_var : NULL,
                                                                      (float)(1.0 - (double)s->momentum), s->momentum);
    NDL_CUDA_CHECK_LAUNCH();
  } else {
    ln_stats_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(x, n, d, s->eps, s->mean, s->var, s->invstd);
    NDL_CUDA_CHECK_LAUNCH();
  }
  if (n * d > 0) {
    norm_apply_kernel<<<ndl_cuda_blocks(n * d), NDL_CUDA_THREADS, 0, st>>>(x, n, d, s->mean, s->invstd, w, b, !batch,
                                                                           s->xhat, ndl_tensor_ptr(node));
    NDL_CUDA_CHECK_LAUNCH();
  }
  return NDL_OK;
}

static ndl_status softmax_ce_forward(ndl_ctx *ctx, ndl_tensor *node, cudaStream_t st) {
  ndl_ce_state *s = (ndl_ce_state *)node->aux;
  int64_t n = node->src[0]->shape[0], c = node->src[0]->shape[1];
  const float *z = ndl_cuda_contiguous(node->src[0], st);
  double *row_loss = (double *)ndl_cuda_scratch((size_t)(n > 0 ? n : 1) * sizeof(double));
  int *row_wrong = (int *)ndl_cuda_scratch((size_t)(n > 0 ? n : 1) * sizeof(int));
  if (!z || !row_loss || !row_wrong) return ndl_cuda_scratch_fail(ctx, "softmax_cross_entropy", (size_t)(n * c) * 4);
  if (n > 0 && c > 0) {
    ce_rows_kernel<<<ndl_cuda_blocks(n), NDL_CUDA_THREADS, 0, st>>>(z, s->labels, n, c, s->probs, row_loss, row_wrong);
    NDL_CUDA_CHECK_LAUNCH();
  }
  ce_total_kernel<<<1, 1, 0, st>>>(row_loss, row_wrong, c > 0 ? n : 0, s->denom, ndl_tensor_ptr(node), s->sums);
  NDL_CUDA_CHECK_LAUNCH();
  return NDL_OK;
}

ndl_status ndl_cuda_fused_forward(ndl_ctx *ctx, ndl_tensor *node, cudaStream_t st) {
  switch (node->op) {
    case NDL_OP_LINEAR: return linear_forward(ctx, node, st);
    case NDL_OP_BATCHNORM: case NDL_OP_LAYERNORM: return norm_forward(ctx, node, st);
    case NDL_OP_SOFTMAX_CE: return softmax_ce_forward(ctx, node, st);
    default: NDL_ABORT("cuda fused forward: op %s is not fused", ndl_op_name(node->op));
  }
  return NDL_OK;
}
