/* nn_ops.h: fused ops for the hot layers of the models: Linear with bias, BatchNorm (train mode,
 * optionally synchronized across ranks through an all-reduce callback), LayerNorm and softmax
 * cross-entropy. Each computes its forward in one pass, saves what its analytic backward needs,
 * and accumulates parameter gradients straight into their flat buffers during ndl_graph_backward.
 * They are once-differentiable: ndl_graph_grad with create_graph rejects them (use composed ops). */
#ifndef NDL_NN_OPS_H
#define NDL_NN_OPS_H

#include "core/backend.h" /* ndl_allreduce_fn, the saved-state structs */

#ifdef __cplusplus
extern "C" {
#endif

/* x[N,in] . w[in,out] + b[1,out] (b may be NULL). */
ndl_tensor *ndl_linear(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b);

/* Training-mode batch norm of x[N,D] with weight/bias [D]: batch mean and biased variance over
 * global_rows rows. Without allreduce: the local N rows, two passes (mean, then squared deviations).
 * With it (SyncBN): one all-reduce of the double sums of x and x^2 over all ranks, var = E[x^2] -
 * mean^2 in double; the backward sums go through one more all-reduce. The batch
 * mean and variance are written to mean_out/var_out (D floats each in the context backend's
 * memory, may be NULL). */
ndl_tensor *ndl_batchnorm_train(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b, float eps,
                                int64_t global_rows, ndl_allreduce_fn allreduce, void *handle,
                                float *mean_out, float *var_out);
/* The same, folding the batch statistics into running_mean/running_var (D floats each in the
 * backend's memory, both NULL for none) inside the fused forward: r = keep*r + momentum*stat with
 * keep = float(1 - momentum), skipped when the global batch has 0 rows (backend.h). sync: SyncBN's
 * all-reduce (NULL, or a NULL host function: one process). */
ndl_tensor *ndl_batchnorm_train_running(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b,
                                        float eps, int64_t global_rows, const ndl_allreduce *sync,
                                        float *running_mean, float *running_var, float momentum);

/* Per-row layer norm of x[N,D] with weight/bias [D]. In both norms a NULL weight reads as 1 and a
 * NULL bias as 0 (PyTorch's affine=False). */
ndl_tensor *ndl_layernorm(ndl_ctx *ctx, ndl_tensor *x, ndl_tensor *w, ndl_tensor *b, float eps);

/* sum_i (logsumexp(z_i) - z_i[labels_i]) / denom over rows of logits[N,C]; a 0-d tensor.
 * labels: N int32 in the context backend's memory (device labels: a trainer on a GPU gathers them
 * there), each in [0, C). The range is the caller's contract, checked where data enters (data sets
 * at load); the CPU backend also checks it (NDL_ERR_ARG naming the row), a device backend need not. */
ndl_tensor *ndl_softmax_cross_entropy(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                      double denom);
/* The same, also adding this batch's metrics to sums (2 doubles in the backend's memory, may be
 * NULL): sums[0] += sum of the rows' losses (not divided by denom), sums[1] += rows whose first
 * arg-max differs from the label. A trainer zeroes sums per epoch and reads them once. */
ndl_tensor *ndl_softmax_cross_entropy_sums(ndl_ctx *ctx, ndl_tensor *logits, const int32_t *labels,
                                           double denom, double *sums);

#ifdef __cplusplus
}
#endif
#endif
