// test_device.cc: the device-neutral core on the CPU backend: the context carries its backend,
// tensors carry a device tag that node building checks (naming both devices), memory moves
// through the vtable, and fused backward receives its gradient targets (pointer + beta) instead of
// pulling them from autograd.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/kernel_math.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "core/params.h"
#include "nn/module.h"
#include "optim/optim.h"
#include "test_util.h"

namespace {

class Device : public CtxTest {};

TEST_F(Device, ContextCarriesTheCpuBackendAndTensorsItsDevice) {
  EXPECT_EQ(ctx->backend, ndl_backend_cpu());
  EXPECT_EQ(ndl_backend_for(NDL_DEV_CPU), ndl_backend_cpu());
  EXPECT_EQ(ndl_backend_for(NDL_DEV_CUDA), ndl_backend_cuda(nullptr));  // NULL without a GPU or CUDA build
  int64_t s[2] = {2, 3};
  ndl_tensor *t = ndl_tensor_full(ctx, 2, s, 1.5f);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->device, NDL_DEV_CPU);
  EXPECT_STREQ(ndl_device_name(NDL_DEV_CUDA), "cuda");
  ndl_tensor *v = ndl_transpose(ctx, t, 0, 1);  // a view keeps its input's device
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->device, NDL_DEV_CPU);
}

TEST_F(Device, NodeBuildingRefusesInputsOnDifferentDevicesNamingBoth) {
  int64_t s[2] = {2, 3};
  ndl_tensor *a = ndl_tensor_full(ctx, 2, s, 1.0f), *b = ndl_tensor_full(ctx, 2, s, 2.0f);
  ASSERT_TRUE(a && b);
  b->device = NDL_DEV_CUDA;  // as if it lived on a GPU
  EXPECT_EQ(ndl_add(ctx, a, b), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_ARG);
  std::string msg = ndl_last_error();
  EXPECT_NE(msg.find("add"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cpu"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda"), std::string::npos) << msg;
  EXPECT_NE(msg.find("devices differ"), std::string::npos) << msg;
}

TEST_F(Device, UnaryAndViewOpsRefuseATensorOffTheContextDevice) {
  int64_t s[2] = {2, 3};
  ndl_tensor *a = ndl_tensor_full(ctx, 2, s, 1.0f);
  a->device = NDL_DEV_CUDA;
  EXPECT_EQ(ndl_exp(ctx, a), nullptr);
  std::string msg = ndl_last_error();
  EXPECT_NE(msg.find("exp: input 0[2,3] on cuda, context's backend cpu on cpu"), std::string::npos) << msg;
  ndl_ctx_reset(ctx);
  a = ndl_tensor_full(ctx, 2, s, 1.0f);
  a->device = NDL_DEV_CUDA;
  EXPECT_EQ(ndl_transpose(ctx, a, 0, 1), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_ARG);
}

TEST_F(Device, FusedOpsCheckDevicesToo) {
  int64_t xs[2] = {4, 3}, ws[2] = {3, 2};
  ndl_tensor *x = ndl_tensor_full(ctx, 2, xs, 1.0f), *w = ndl_tensor_full(ctx, 2, ws, 0.5f);
  w->device = NDL_DEV_CUDA;
  EXPECT_EQ(ndl_linear(ctx, x, w, nullptr), nullptr);
  std::string msg = ndl_last_error();
  EXPECT_NE(msg.find("linear: input 0[4,3] on cpu, input 1[3,2] on cuda"), std::string::npos) << msg;
}

// A backend that forwards to the CPU one and records the targets handed to fused backward.
std::vector<ndl_grad_target> seen;
void spy_fused_backward(ndl_ctx *c, ndl_tensor *node, const ndl_grad_target *t) {
  seen.assign(t, t + NDL_MAX_SRC);
  ndl_backend_cpu()->fused_backward(c, node, t);
}

TEST(DeviceBackend, FusedBackwardReceivesFlatGradientTargetsWithBeta) {
  ndl_backend spy = *ndl_backend_cpu();
  spy.fused_backward = spy_fused_backward;
  ndl_ctx *c = ndl_ctx_new_on(&spy);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->backend, &spy);
  ndl_params p;
  ndl_params_init(&p, 1);
  int64_t ws[2] = {3, 2}, bs[1] = {2}, xs[2] = {4, 3};
  ndl_tensor *w = ndl_params_add(&p, "w", 2, ws), *b = ndl_params_add(&p, "b", 1, bs);
  ASSERT_TRUE(w && b);
  for (int64_t i = 0; i < p.numel; i++) p.data[i] = 0.1f * (float)(i + 1);
  ndl_tensor *x = ndl_tensor_full(c, 2, xs, 1.0f);  // needs no gradient
  ndl_tensor *y = ndl_linear(c, x, w, b);
  ASSERT_NE(y, nullptr);
  ndl_tensor *loss = ndl_sum(c, y, nullptr, 0);
  ASSERT_EQ(ndl_graph_backward(c, loss, nullptr), NDL_OK);
  ASSERT_EQ(seen.size(), (size_t)NDL_MAX_SRC);
  EXPECT_EQ(seen[0].ptr, nullptr);                   // x: not needed
  EXPECT_EQ(seen[1].ptr, ndl_tensor_ptr(w->grad));   // w: its slot in the flat gradient buffer
  EXPECT_EQ(seen[1].beta, 1.0f);
  EXPECT_EQ(seen[2].ptr, ndl_tensor_ptr(b->grad));
  EXPECT_EQ(seen[2].beta, 1.0f);
  EXPECT_FLOAT_EQ(p.grad[0], 4.0f);  // dw = x^T . ones: every entry 4
  EXPECT_FLOAT_EQ(b->grad->data[b->grad->offset], 4.0f);
  // ndl_graph_grad has no leaf sinks: the backend is handed fresh tensors to overwrite (beta 0)
  ndl_ctx_reset(c);
  ndl_params_zero_grad(&p);
  x = ndl_tensor_full(c, 2, xs, 1.0f);
  ndl_tensor_set_requires_grad(x, 1);
  y = ndl_linear(c, x, w, b);
  loss = ndl_sum(c, y, nullptr, 0);
  ndl_tensor *wrt[1] = {x}, *g[1] = {nullptr};
  ASSERT_EQ(ndl_graph_grad(c, loss, nullptr, 1, wrt, g, 0), NDL_OK);
  EXPECT_NE(seen[0].ptr, nullptr);
  EXPECT_EQ(seen[0].beta, 0.0f);
  EXPECT_NE(seen[0].ptr, ndl_tensor_ptr(w->grad));
  EXPECT_FLOAT_EQ(tensor_values(g[0])[0], 0.1f + 0.2f);  // row 0 of w summed
  EXPECT_EQ(p.grad[0], 0.0f);  // the flat buffer untouched by ndl_graph_grad
  ndl_params_free(&p);
  ndl_ctx_free(c);
}

TEST_F(Device, OnTheCpuTensorDataSharesTheHostArenaAndTheDataArenaStaysEmpty) {
  int64_t s[2] = {64, 64};
  ndl_tensor *t = ndl_tensor_full(ctx, 2, s, 1.0f);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(ndl_ctx_data_on_host(ctx));
  EXPECT_EQ((size_t)((unsigned char *)t->data - (unsigned char *)t), (sizeof(ndl_tensor) + 63) / 64 * 64)
      << "node and data in one block, as before";
  EXPECT_EQ(ctx->data.head, nullptr);
  EXPECT_EQ(ctx->data.high_water, 0u);
  void *p = ndl_ctx_alloc_data(ctx, 100);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(ctx->data.head, nullptr);
}

// The label range is the caller's contract (data sets are validated at load); the CPU backend
// still refuses a label outside [0, C), naming the row, in the fused and the composed loss.
TEST_F(Device, CpuSoftmaxCrossEntropyRefusesOutOfRangeLabels) {
  int64_t s[2] = {3, 4};
  for (int32_t bad : {-1, 4}) {
    ndl_ctx_reset(ctx);
    ndl_tensor *z = ndl_tensor_full(ctx, 2, s, 0.5f);
    int32_t labels[3] = {0, 3, bad};
    EXPECT_EQ(ndl_softmax_cross_entropy(ctx, z, labels, 0), nullptr);
    EXPECT_EQ(ctx->status, NDL_ERR_ARG);
    std::string msg = ndl_last_error();
    EXPECT_NE(msg.find("label " + std::to_string(bad) + " of row 2 outside [0,4)"), std::string::npos) << msg;
    ndl_ctx_reset(ctx);
    z = ndl_tensor_full(ctx, 2, s, 0.5f);
    EXPECT_EQ(ndl_nn_softmax_loss_composed(ctx, z, labels, 0), nullptr);
    EXPECT_EQ(ctx->status, NDL_ERR_ARG);
  }
}

// sums[0] += the rows' loss sum, sums[1] += rows whose first arg-max differs from the label (the
// trainer's count_errors: strict >, so the earliest of tied maxima wins and NaN never does).
TEST_F(Device, CpuSoftmaxCrossEntropyAccumulatesLossSumAndErrors) {
  std::vector<float> z = {1, 1, 0,    // tie 0/1: arg-max 0, label 1 -> error
                          0, 2, 2,    // tie 1/2: arg-max 1, label 1 -> right
                          3, 0, 0,    // arg-max 0, label 0 -> right
                          0, 0, 1};   // arg-max 2, label 0 -> error
  int32_t labels[4] = {1, 1, 0, 0};
  double sums[2] = {0.5, 1.0};
  ndl_tensor *t = ndl_tensor_from(ctx, 2, std::vector<int64_t>({4, 3}).data(), z.data());
  ndl_tensor *loss = ndl_softmax_cross_entropy_sums(ctx, t, labels, 8.0, sums);
  ASSERT_NE(loss, nullptr) << ndl_last_error();
  EXPECT_EQ(sums[1], 1.0 + 2.0);
  double rows = 0;
  for (int i = 0; i < 4; i++) {
    double m = std::max(std::max(z[3 * i], z[3 * i + 1]), z[3 * i + 2]), e = 0;
    for (int j = 0; j < 3; j++) e += std::exp((double)z[3 * i + j] - m);
    rows += std::log(e) + m - z[3 * i + labels[i]];
  }
  EXPECT_NEAR(sums[0] - 0.5, rows, 1e-6);
  EXPECT_EQ(tensor_values(loss)[0], (float)((sums[0] - 0.5) / 8.0));
  // without a sums buffer nothing else changes: the same loss bits
  ndl_tensor *again = ndl_softmax_cross_entropy(ctx, t, labels, 8.0);
  EXPECT_EQ(tensor_values(again)[0], tensor_values(loss)[0]);
}

// The fused op's running-statistic update is the composed one, bit for bit; an empty batch skips it.
TEST_F(Device, CpuBatchNormFoldsRunningStatsAsTheComposedUpdate) {
  const int64_t n = 5, d = 3;
  ndl_tensor *x = uniform(ctx, {n, d}, -2, 3, 11);
  float rm[d] = {0.25f, -1.0f, 3.0f}, rv[d] = {1.0f, 0.5f, 2.0f}, mean[d], var[d];
  float rm0[d], rv0[d];
  memcpy(rm0, rm, sizeof rm);
  memcpy(rv0, rv, sizeof rv);
  const float momentum = 0.1f;
  ASSERT_NE(ndl_batchnorm_train(ctx, x, nullptr, nullptr, 1e-5f, 0, nullptr, nullptr, mean, var), nullptr);
  ASSERT_NE(ndl_batchnorm_train_running(ctx, x, nullptr, nullptr, 1e-5f, 0, nullptr, rm, rv, momentum),
            nullptr);
  float keep = (float)(1.0 - (double)momentum);
  for (int j = 0; j < d; j++) {
    float a = keep * rm0[j], b = momentum * mean[j];
    EXPECT_EQ(rm[j], a + b) << j;
    a = keep * rv0[j];
    b = momentum * var[j];
    EXPECT_EQ(rv[j], a + b) << j;
  }
  memcpy(rm0, rm, sizeof rm);
  int64_t empty[2] = {0, d};
  ndl_tensor *x0 = ndl_tensor_empty(ctx, 2, empty);
  ASSERT_NE(ndl_batchnorm_train_running(ctx, x0, nullptr, nullptr, 1e-5f, 0, nullptr, rm, rv, momentum),
            nullptr);
  EXPECT_EQ(0, memcmp(rm, rm0, sizeof rm)) << "a 0-row batch leaves the running stats alone (no NaN)";
}

// The module's fused path hands its buffers to the fused op: after 3 batches and an empty one they
// hold the composed update of the batch statistics, counted 3 times; the composed path counts the same.
TEST_F(Device, BatchNormModuleFoldsBatchStatsIntoItsBuffersAndSkipsAnEmptyBatch) {
  for (int fused : {1, 0}) {
    ndl_rng r;
    ndl_rng_seed(&r, 5);
    ndl_nn_env e;
    ndl_nn_env_init(&e, &r);
    e.fused = fused;
    ndl_module *bn = ndl_nn_batchnorm1d(&e, "bn", 4, 1e-5f, 0.1f);
    ASSERT_NE(bn, nullptr);
    std::vector<float> rm(4, 0.0f), rv(4, 1.0f);
    for (int step = 0; step < 3; step++) {
      ndl_ctx_reset(ctx);
      ndl_tensor *x = uniform(ctx, {6, 4}, -1, 2, 20 + step);
      ASSERT_NE(ndl_module_forward(bn, ctx, x), nullptr) << ndl_last_error();
      if (!fused) continue;
      float mean[4], var[4];
      ASSERT_NE(ndl_batchnorm_train(ctx, x, nullptr, nullptr, 1e-5f, 0, nullptr, nullptr, mean, var), nullptr);
      for (int j = 0; j < 4; j++) {
        rm[j] = ndl_km_running(rm[j], mean[j], 0.9f, 0.1f);
        rv[j] = ndl_km_running(rv[j], var[j], 0.9f, 0.1f);
      }
    }
    ndl_ctx_reset(ctx);
    int64_t empty[2] = {0, 4};
    ASSERT_NE(ndl_module_forward(bn, ctx, ndl_tensor_empty(ctx, 2, empty)), nullptr);
    ndl_tensor *m = ndl_nn_batchnorm_running_mean(bn), *v = ndl_nn_batchnorm_running_var(bn);
    if (fused) {
      EXPECT_EQ(tensor_values(m), rm);
      EXPECT_EQ(tensor_values(v), rv);
    }
    EXPECT_FALSE(std::isnan(tensor_values(m)[0]));
    EXPECT_EQ(e.buffers.data[e.buffers.numel - 1], 3.0f) << "num_batches_tracked, fused " << fused;
    ndl_module_free(bn);
    ndl_nn_env_free(&e);
  }
}

TEST(DeviceParams, OnTheCpuTheHostMirrorIsTheDataAndPullPushAreNoOps) {
  ndl_params p;
  ndl_params_init(&p, 1);
  int64_t s[1] = {3000};  // grows past the first capacity: the mirror follows the data
  ndl_tensor *a = ndl_params_add(&p, "a", 1, s), *b = ndl_params_add(&p, "b", 1, s);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(p.host, p.data);
  EXPECT_EQ(ndl_params_host_ptr(&p, b), ndl_tensor_ptr(b));
  ndl_params_host_ptr(&p, b)[1] = 7.0f;
  ndl_params_pull(&p);
  ndl_params_push(&p);
  ndl_params_push_tensor(&p, b);
  EXPECT_EQ(ndl_tensor_ptr(b)[1], 7.0f);
  ndl_optim *o = ndl_optim_adam_new(&p, 0.1, 0.9, 0.999, 1e-8, 0);
  ASSERT_NE(o, nullptr);
  int64_t n = 0;
  EXPECT_EQ(ndl_optim_state(o, &n), o->state);
  EXPECT_EQ(n, 2 * p.numel);
  ndl_optim_pull(o);
  ndl_optim_push(o);
  ndl_optim_free(o);
  ndl_params_free(&p);
}

TEST(DeviceBackend, CpuGatherBatchPicksRowsAndLabels) {
  const ndl_backend *be = ndl_backend_cpu();
  ASSERT_NE(be->gather_batch, nullptr);
  std::vector<float> src = {0, 1, 10, 11, 20, 21, 30, 31};
  std::vector<int32_t> labels = {5, 6, 7, 8};
  std::vector<int64_t> idx = {3, 0, 3};
  std::vector<float> dst(6, -1);
  std::vector<int32_t> dl(3, -1);
  be->gather_batch(dst.data(), dl.data(), src.data(), labels.data(), idx.data(), 3, 2);
  EXPECT_EQ(dst, std::vector<float>({30, 31, 0, 1, 30, 31}));
  EXPECT_EQ(dl, std::vector<int32_t>({8, 5, 8}));
  be->gather_batch(dst.data(), dl.data(), src.data(), labels.data(), idx.data(), 0, 2);  // n 0: nothing
  EXPECT_EQ(dl[0], 8);
}

// The shared per-element math (compiled here as host code, as nvcc would for a device).
TEST(KernelMath, PerElementFunctionsFollowTheirFormulas) {
  EXPECT_EQ(ndl_km_sgd(1.0f, 0.5f, 0.1f, 0.0f), 1.0f - 0.1f * 0.5f);
  float u = 0.0f;
  EXPECT_EQ(ndl_km_sgd_momentum(1.0f, 0.5f, &u, 0.9f, 0.1f, 0.1f, 0.0f, 0), 1.0f - 0.1f * (0.1f * 0.5f));
  EXPECT_EQ(u, 0.1f * 0.5f);
  float m = 0.0f, v = 0.0f;
  const float k[10] = {0.9f, 0.1f, 0.999f, 0.001f, 10.0f, 1000.0f, 0.01f, 1e-8f, 0.0f, 1.0f};
  float th = ndl_km_adam(1.0f, 2.0f, &m, &v, k, 0);
  EXPECT_EQ(m, 0.1f * 2.0f);
  EXPECT_EQ(v, 0.001f * 4.0f);
  EXPECT_EQ(th, 1.0f - (0.01f * (m * 10.0f)) / (sqrtf(v * 1000.0f) + 1e-8f));
  float c = 0.0f;
  EXPECT_EQ(ndl_km_rmsprop(1.0f, 2.0f, &c, 0.99f, 0.01f, 0.1f, 1e-8f, 0.0f), 1.0f - (0.1f * 2.0f) / (sqrtf(0.04f) + 1e-8f));
  float h = 0.0f;
  EXPECT_EQ(ndl_km_norm_apply(3.0f, 1.0f, 0.5f, 2.0f, 1.0f, &h), 3.0f);
  EXPECT_EQ(h, 1.0f);
  EXPECT_EQ(ndl_km_norm_dx(1.0f, 2.0f, 1.0f, 0.5f, 0.5f, 0.25f), 0.5f * (2.0f - 0.5f - 0.25f));
  EXPECT_EQ(ndl_km_dropout(3.0f, 1.0f, 0.5f), 6.0f);
  EXPECT_TRUE(std::isnan(ndl_km_max_nan(1.0f, NAN)));  // NaN propagates, unlike a plain x > m
  EXPECT_TRUE(std::isnan(ndl_km_max_nan(NAN, 5.0f)));  // and a NaN running max stays NaN
  EXPECT_EQ(ndl_km_max_nan(1.0f, 2.0f), 2.0f);
  EXPECT_NEAR(ndl_km_lse(2.0, 1.0f), std::log(2.0) + 1.0, 1e-12);
  EXPECT_EQ(ndl_km_invstd(3.0f, 1.0f), 0.5f);
}

}  // namespace
