// test_core_edges.cc: edge cases of core from the review of issue 9 item 14: a GEMM with an empty
// inner dimension (BLAS semantics), a caller-owned leaf whose step-arena gradient is released by
// ndl_ctx_reset, BatchNorm/LayerNorm without weight or bias, and size products that would overflow
// int64/size_t (shapes, step tensors, reshape, parameters, the arena).
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/nn_ops.h"
#include "core/cpu/cpu_kernels.h"
#include "core/op_impl.h"
#include "core/ops.h"
#include "core/params.h"
#include "test_util.h"

namespace {

class CoreEdges : public CtxTest {};

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- (a) k = 0 ----

TEST_F(CoreEdges, GemmWithEmptyInnerDimFollowsBlas) {
  int64_t sa[2] = {3, 0}, sb[2] = {0, 4};
  ndl_tensor a, b;
  ndl_tensor_init_view(&a, nullptr, 2, sa);
  ndl_tensor_init_view(&b, nullptr, 2, sb);
  std::vector<float> c(12, kNaN);  // garbage, as arena memory may hold
  ASSERT_EQ(ndl_cpu_gemm(ctx, &a, &b, c.data(), 0.0f), NDL_OK);
  for (float v : c) EXPECT_EQ(v, 0.0f);  // beta = 0: C = 0, never 0 * garbage
  std::vector<float> d(12, 5.0f);
  ASSERT_EQ(ndl_cpu_gemm(ctx, &a, &b, d.data(), 1.0f), NDL_OK);
  for (float v : d) EXPECT_EQ(v, 5.0f);  // beta = 1: C unchanged
  ASSERT_EQ(ndl_cpu_gemm(ctx, &a, &b, d.data(), 0.5f), NDL_OK);
  for (float v : d) EXPECT_EQ(v, 2.5f);
}

TEST_F(CoreEdges, MatmulAndLinearWithEmptyInnerDim) {
  // Leave NaN where the next step's outputs will be allocated, as a previous step would.
  ndl_tensor *junk = ndl_tensor_full(ctx, 1, std::vector<int64_t>{4096}.data(), kNaN);
  ASSERT_NE(junk, nullptr);
  ndl_ctx_reset(ctx);
  ndl_tensor *x = ndl_tensor_empty(ctx, 2, std::vector<int64_t>{3, 0}.data());
  ndl_tensor *w = ndl_tensor_empty(ctx, 2, std::vector<int64_t>{0, 4}.data());
  ndl_tensor *y = ndl_matmul(ctx, x, w);
  EXPECT_TENSOR_NEAR(std::vector<float>(12, 0.0f), y, 0, 0);
  ndl_tensor *b = make_tensor(ctx, {4}, {1, 2, 3, 4});
  ndl_tensor *z = ndl_linear(ctx, x, w, b);
  EXPECT_TENSOR_NEAR(std::vector<float>({1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}), z, 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>(12, 0.0f), ndl_linear(ctx, x, w, nullptr), 0, 0);
}

// ---- (b) caller-owned leaf, arena gradient, reset ----

TEST_F(CoreEdges, CallerOwnedLeafGradientReleasedByResetIsRefused) {
  float data[3] = {1, 2, 3};
  int64_t shape[1] = {3};
  ndl_tensor x;  // caller-owned: not in the arena, no gradient storage of its own
  ndl_tensor_init_view(&x, data, 1, shape);
  ndl_tensor_set_requires_grad(&x, 1);
  auto backward = [&]() {
    return ndl_graph_backward(ctx, ndl_sum(ctx, ndl_mul(ctx, &x, &x), nullptr, 0), nullptr);
  };
  ASSERT_EQ(backward(), NDL_OK) << ndl_last_error();
  ASSERT_NE(x.grad, nullptr);
  EXPECT_TENSOR_NEAR(std::vector<float>({2, 4, 6}), x.grad, 0, 0);
  ASSERT_EQ(backward(), NDL_OK);  // same step: accumulates
  EXPECT_TENSOR_NEAR(std::vector<float>({4, 8, 12}), x.grad, 0, 0);

  ndl_ctx_reset(ctx);  // x.grad now points into released step memory
  EXPECT_EQ(backward(), NDL_ERR_ARG);
  EXPECT_NE(std::string(ndl_last_error()).find("released by ndl_ctx_reset"), std::string::npos)
      << ndl_last_error();

  x.grad = nullptr;  // what the message asks for
  ndl_ctx_reset(ctx);
  ASSERT_EQ(backward(), NDL_OK) << ndl_last_error();
  EXPECT_TENSOR_NEAR(std::vector<float>({2, 4, 6}), x.grad, 0, 0);

  // A fused op writes leaf gradients through a sink: the same refusal applies.
  ndl_ctx_reset(ctx);
  const int32_t label = 1;
  int64_t s2[2] = {1, 3};
  ndl_tensor z;
  ndl_tensor_init_view(&z, data, 2, s2);
  ndl_tensor_set_requires_grad(&z, 1);
  ASSERT_EQ(ndl_graph_backward(ctx, ndl_softmax_cross_entropy(ctx, &z, &label, 1.0), nullptr), NDL_OK);
  ndl_ctx_reset(ctx);
  EXPECT_EQ(ndl_graph_backward(ctx, ndl_softmax_cross_entropy(ctx, &z, &label, 1.0), nullptr), NDL_ERR_ARG);

  // Caller-owned gradient storage is the caller's: kept across resets.
  float gbuf[3] = {0, 0, 0};
  ndl_tensor g;
  ndl_tensor_init_view(&g, gbuf, 1, shape);
  x.grad = &g;
  ndl_ctx_reset(ctx);
  ASSERT_EQ(backward(), NDL_OK) << ndl_last_error();
  ndl_ctx_reset(ctx);
  ASSERT_EQ(backward(), NDL_OK) << ndl_last_error();
  EXPECT_EQ(gbuf[2], 12.0f);
}

// ---- (c) norms without weight/bias ----

struct NormRun {
  std::vector<float> y, dx, dw, db;
};

// Forward and backward of sum(y * r) for the fused norm with the given weight/bias (NULL allowed).
NormRun run_norm(ndl_ctx *ctx, int batch, int sync, bool with_w, bool with_b) {
  ndl_ctx_reset(ctx);
  NormRun r;
  ndl_tensor *x = uniform(ctx, {5, 4}, -2, 2, 11);
  ndl_tensor *rw = uniform(ctx, {5, 4}, -1, 1, 12);
  ndl_tensor *w = with_w ? make_tensor(ctx, {4}, {1, 1, 1, 1}) : nullptr;
  ndl_tensor *b = with_b ? make_tensor(ctx, {4}, {0, 0, 0, 0}) : nullptr;
  for (ndl_tensor *t : {x, w, b})
    if (t) ndl_tensor_set_requires_grad(t, 1);
  auto id = [](void *, double *, int64_t) { return NDL_OK; };
  ndl_tensor *y = batch ? ndl_batchnorm_train(ctx, x, w, b, 1e-5f, 0, sync ? +id : nullptr, nullptr,
                                              nullptr, nullptr)
                        : ndl_layernorm(ctx, x, w, b, 1e-5f);
  EXPECT_NE(y, nullptr) << ndl_last_error();
  if (!y) return r;
  r.y = tensor_values(y);
  EXPECT_EQ(ndl_graph_backward(ctx, ndl_sum(ctx, ndl_mul(ctx, y, rw), nullptr, 0), nullptr), NDL_OK)
      << ndl_last_error();
  r.dx = tensor_values(x->grad);
  if (w) r.dw = tensor_values(w->grad);
  if (b) r.db = tensor_values(b->grad);
  return r;
}

TEST_F(CoreEdges, NormsWithoutWeightOrBiasActAsOneAndZero) {
  for (int batch : {1, 0})
    for (int sync : {0, 1}) {
      if (!batch && sync) continue;
      NormRun ref = run_norm(ctx, batch, sync, true, true);
      for (int mask = 0; mask < 3; mask++) {
        bool with_w = mask == 2, with_b = mask == 1;
        NormRun got = run_norm(ctx, batch, sync, with_w, with_b);
        SCOPED_TRACE(testing::Message() << "batch " << batch << " sync " << sync << " w " << with_w
                                        << " b " << with_b);
        EXPECT_EQ(got.y, ref.y);
        EXPECT_EQ(got.dx, ref.dx);
        if (with_w) {
          EXPECT_EQ(got.dw, ref.dw);
        }
        if (with_b) {
          EXPECT_EQ(got.db, ref.db);
        }
      }
    }
}

// ---- (d) size overflow ----

TEST_F(CoreEdges, ShapeNumelNeverWraps) {
  int64_t big[2] = {(int64_t)1 << 40, (int64_t)1 << 40};  // 2^80: wraps to 0 in int64
  EXPECT_EQ(ndl_shape_numel(2, big), -1);
  int64_t ok[3] = {(int64_t)1 << 31, (int64_t)1 << 31, 2};  // 2^63 overflows by one
  EXPECT_EQ(ndl_shape_numel(3, ok), -1);
  int64_t fits[2] = {(int64_t)1 << 31, ((int64_t)1 << 31) - 1};
  EXPECT_EQ(ndl_shape_numel(2, fits), ((int64_t)1 << 62) - ((int64_t)1 << 31));
  int64_t zero[3] = {(int64_t)1 << 40, 0, (int64_t)1 << 40};
  EXPECT_EQ(ndl_shape_numel(3, zero), 0);
}

TEST_F(CoreEdges, HugeStepTensorIsAStatusNotAWrappedAllocation) {
  int64_t big[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  EXPECT_EQ(ndl_tensor_empty(ctx, 2, big), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_NOMEM);
  EXPECT_NE(std::string(ndl_last_error()).find("[1099511627776,1099511627776]"), std::string::npos)
      << ndl_last_error();
  ndl_ctx_reset(ctx);
  int64_t product_fits[2] = {(int64_t)1 << 31, (int64_t)1 << 31};  // 2^62 elements: bytes would wrap
  EXPECT_EQ(ndl_tensor_zeros(ctx, 2, product_fits), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_NOMEM);
  ndl_ctx_reset(ctx);
  // an op whose output would be huge: broadcasting a scalar view to 2^80 elements, then compacting
  ndl_tensor *one = make_tensor(ctx, {1, 1}, {1.0f});
  ndl_tensor *view = ndl_broadcast_to(ctx, one, 2, big);
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(ndl_compact(ctx, view), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_NOMEM);
  ndl_ctx_reset(ctx);
  // reshape whose known dims overflow
  ndl_tensor *e = ndl_tensor_empty(ctx, 1, std::vector<int64_t>{0}.data());
  int64_t to[3] = {-1, (int64_t)1 << 40, (int64_t)1 << 40};
  EXPECT_EQ(ndl_reshape(ctx, e, 3, to), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  ndl_ctx_reset(ctx);
  int64_t to2[2] = {(int64_t)1 << 40, (int64_t)1 << 40};  // product wraps to 0 == numel of e
  EXPECT_EQ(ndl_reshape(ctx, e, 2, to2), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
}

TEST_F(CoreEdges, HugeParameterIsAStatus) {
  ndl_params p;
  ndl_params_init(&p, 1);
  int64_t big[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  EXPECT_EQ(ndl_params_add(&p, "w", 2, big), nullptr);
  EXPECT_NE(std::string(ndl_last_error()).find("parameter w"), std::string::npos) << ndl_last_error();
  int64_t large[1] = {(int64_t)1 << 62};
  EXPECT_EQ(ndl_params_add(&p, "v", 1, large), nullptr);
  int64_t small[1] = {3};
  ASSERT_NE(ndl_params_add(&p, "u", 1, small), nullptr);  // the store still works
  EXPECT_EQ(p.numel, 3);
  ndl_params_free(&p);
}

TEST_F(CoreEdges, ArenaRefusesSizesThatWouldWrap) {
  ndl_arena a;
  ndl_arena_init(&a, 0);
  EXPECT_EQ(ndl_arena_alloc(&a, SIZE_MAX), nullptr);
  EXPECT_EQ(ndl_arena_alloc(&a, SIZE_MAX - 10), nullptr);
  EXPECT_EQ(ndl_arena_alloc(&a, (size_t)1 << 60), nullptr);
  EXPECT_NE(ndl_arena_alloc(&a, 100), nullptr);
  ndl_arena_free(&a);
}

}  // namespace
