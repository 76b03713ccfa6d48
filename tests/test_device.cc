// test_device.cc: the device-neutral core on the CPU backend: the context carries its backend,
// tensors carry a device tag that node building checks (naming both devices), memory moves
// through the vtable, and fused backward receives its gradient targets (pointer + beta) instead of
// pulling them from autograd.
#include <gtest/gtest.h>

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
#include "test_util.h"

namespace {

class Device : public CtxTest {};

TEST_F(Device, ContextCarriesTheCpuBackendAndTensorsItsDevice) {
  EXPECT_EQ(ctx->backend, ndl_backend_cpu());
  EXPECT_EQ(ndl_backend_for(NDL_DEV_CPU), ndl_backend_cpu());
  EXPECT_EQ(ndl_backend_for(NDL_DEV_CUDA), nullptr);  // no CUDA backend in this build yet
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
