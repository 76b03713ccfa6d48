// test_nan.cc: NaN propagates like numpy through relu, maximum, max, logsumexp, logsoftmax, the fused
// softmax cross-entropy and SyncBN's variance (issue 9 item 7), backward passes over NaN do not crash,
// and a model with one NaN weight gives a NaN loss (what ndl-train's exit-6 check looks at) in both
// the fused and the composed formulation.
#include <cmath>
#include <limits>
#include <vector>

#include "core/autograd.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "nn/models.h"
#include "nn/module.h"
#include "test_util.h"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// got[i] is NaN exactly where want[i] is, and equal elsewhere.
::testing::AssertionResult same_with_nan(const std::vector<float> &want, const ndl_tensor *got) {
  if (!got) return ::testing::AssertionFailure() << "tensor is NULL: " << ndl_last_error();
  std::vector<float> v = tensor_values(got);
  if (v.size() != want.size()) return ::testing::AssertionFailure() << "size " << v.size();
  for (size_t i = 0; i < v.size(); i++) {
    bool ok = std::isnan(want[i]) ? std::isnan(v[i]) : v[i] == want[i];
    if (!ok) return ::testing::AssertionFailure() << "[" << i << "] got " << v[i] << ", want " << want[i];
  }
  return ::testing::AssertionSuccess();
}

class NaNProp : public CtxTest {
 protected:
  ndl_tensor *leaf(std::initializer_list<int64_t> shape, const std::vector<float> &v) {
    ndl_tensor *t = make_tensor(ctx, shape, v);
    ndl_tensor_set_requires_grad(t, 1);
    return t;
  }
  // Backward of sum(y) runs to the end with an OK status and a gradient of a's shape.
  void expect_backward_ok(ndl_tensor *y, ndl_tensor *a) {
    ASSERT_NE(y, nullptr) << ndl_last_error();
    ndl_tensor *s = ndl_sum(ctx, y, nullptr, 0);
    ASSERT_EQ(ndl_graph_backward(ctx, s, nullptr), NDL_OK) << ndl_last_error();
    ASSERT_NE(a->grad, nullptr);
    EXPECT_TRUE(ndl_shape_equal(a->grad, a));
  }
};

TEST_F(NaNProp, Relu) {
  ndl_tensor *a = leaf({5}, {kNaN, -1.0f, 2.0f, -0.0f, -kNaN});
  ndl_tensor *y = ndl_relu(ctx, a);
  EXPECT_TRUE(same_with_nan({kNaN, 0.0f, 2.0f, 0.0f, kNaN}, y));
  expect_backward_ok(y, a);
  std::vector<float> g = tensor_values(a->grad);
  EXPECT_EQ(g[1], 0.0f);
  EXPECT_EQ(g[2], 1.0f);
}

TEST_F(NaNProp, Maximum) {
  ndl_tensor *a = leaf({4}, {kNaN, 1.0f, 2.0f, kNaN});
  ndl_tensor *b = leaf({4}, {0.0f, kNaN, 1.0f, kNaN});
  ndl_tensor *y = ndl_maximum(ctx, a, b);
  EXPECT_TRUE(same_with_nan({kNaN, kNaN, 2.0f, kNaN}, y));
  expect_backward_ok(y, a);
  EXPECT_NE(b->grad, nullptr);
}

TEST_F(NaNProp, MaxReduction) {
  ndl_tensor *a = leaf({3, 3}, {1.0f, kNaN, 3.0f, 4.0f, 5.0f, 6.0f, kNaN, -kInf, 7.0f});
  int ax = 1;
  ndl_tensor *y = ndl_max(ctx, a, &ax, 1);
  EXPECT_TRUE(same_with_nan({kNaN, 6.0f, kNaN}, y));
  expect_backward_ok(y, a);
  int ax0 = 0;
  EXPECT_TRUE(same_with_nan({kNaN, kNaN, 7.0f}, ndl_max(ctx, a, &ax0, 1)));
  EXPECT_TRUE(same_with_nan({kNaN}, ndl_max(ctx, a, nullptr, 0)));
  ndl_tensor *one = make_tensor(ctx, {2}, {1.0f, kNaN});  // numpy: max([1, nan]) = nan
  EXPECT_TRUE(same_with_nan({kNaN}, ndl_max(ctx, one, nullptr, 0)));
}

TEST_F(NaNProp, LogSumExpAndLogSoftmax) {
  // rows: NaN after a finite value, after -inf, after +inf, first, and a clean row
  ndl_tensor *a = leaf({5, 2}, {1.0f, kNaN, -kInf, kNaN, kInf, kNaN, kNaN, 1.0f, 0.0f, 0.0f});
  int ax = 1;
  ndl_tensor *y = ndl_logsumexp(ctx, a, &ax, 1);
  EXPECT_TRUE(same_with_nan({kNaN, kNaN, kNaN, kNaN, std::log(2.0f)}, y));
  expect_backward_ok(y, a);
  ndl_tensor *ls = ndl_logsoftmax(ctx, make_tensor(ctx, {2, 3}, {-kInf, kNaN, 0.0f, 1.0f, 1.0f, 1.0f}));
  ASSERT_NE(ls, nullptr) << ndl_last_error();
  std::vector<float> v = tensor_values(ls);
  for (int j = 0; j < 3; j++) EXPECT_TRUE(std::isnan(v[j])) << j;
  for (int j = 3; j < 6; j++) EXPECT_NEAR(v[j], -std::log(3.0f), 1e-6) << j;
}

TEST_F(NaNProp, FusedSoftmaxCrossEntropy) {
  const int32_t labels[3] = {0, 1, 2};
  for (int row = 0; row < 3; row++)
    for (int col = 0; col < 3; col++) {
      std::vector<float> z(9, 0.5f);
      z[(size_t)(row * 3 + col)] = kNaN;
      ndl_tensor *logits = leaf({3, 3}, z);
      ndl_tensor *loss = ndl_softmax_cross_entropy(ctx, logits, labels, 3.0);
      ASSERT_NE(loss, nullptr) << ndl_last_error();
      EXPECT_TRUE(std::isnan(ndl_tensor_ptr(loss)[0])) << "NaN at " << row << "," << col;
      ASSERT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK) << ndl_last_error();
      ndl_ctx_reset(ctx);
    }
  // +inf next to NaN: still NaN (a max that skipped the NaN would give inf - inf, NaN only by luck)
  ndl_tensor *logits = make_tensor(ctx, {1, 3}, {kInf, kNaN, 0.0f});
  ndl_tensor *loss = ndl_softmax_cross_entropy(ctx, logits, labels, 1.0);
  ASSERT_NE(loss, nullptr);
  EXPECT_TRUE(std::isnan(ndl_tensor_ptr(loss)[0]));
}

ndl_status identity_allreduce(void *, double *, int64_t) { return NDL_OK; }

// SyncBN computes var = E[x^2] - mean^2 and clamps rounding below zero: a NaN variance must stay NaN
// (it goes into the running statistics), not become 0.
TEST_F(NaNProp, SyncBatchNormVarianceKeepsNaN) {
  ndl_tensor *x = leaf({3, 2}, {1.0f, 2.0f, kNaN, 3.0f, 0.0f, 4.0f});
  ndl_tensor *w = make_tensor(ctx, {2}, {1.0f, 1.0f}), *b = make_tensor(ctx, {2}, {0.0f, 0.0f});
  float mean[2], var[2];
  for (int sync = 0; sync < 2; sync++) {
    ndl_tensor *y = ndl_batchnorm_train(ctx, x, w, b, 1e-5f, 3,
                                        sync ? identity_allreduce : nullptr, nullptr, mean, var);
    ASSERT_NE(y, nullptr) << ndl_last_error();
    EXPECT_TRUE(std::isnan(mean[0]) && std::isnan(var[0])) << "sync " << sync << ": " << mean[0] << " " << var[0];
    EXPECT_FALSE(std::isnan(mean[1]) || std::isnan(var[1])) << "sync " << sync;
    std::vector<float> v = tensor_values(y);
    EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[2]) && std::isnan(v[4])) << "sync " << sync;
    EXPECT_FALSE(std::isnan(v[1])) << "sync " << sync;
  }
}

// A blown-up layer must reach the loss: one NaN weight in the first Linear of an MLPResNet (whose
// ReLUs used to map the NaN column to 0) makes the loss NaN, fused and composed; backward runs.
class NaNModel : public CtxTest, public ::testing::WithParamInterface<int> {};

TEST_P(NaNModel, OneNaNWeightGivesNaNLoss) {
  ndl_nn_env env;
  ndl_nn_env_init(&env, test_rng());
  env.fused = GetParam();
  ndl_rng_seed(test_rng(), 3);
  ndl_module *model = ndl_nn_mlp_resnet(&env, 8, 16, 2, 4, NDL_NORM_BATCH, 0.0f);
  ASSERT_NE(model, nullptr) << ndl_last_error();
  const int32_t labels[6] = {0, 1, 2, 3, 0, 1};
  for (int poison = 0; poison < 2; poison++) {
    ndl_tensor *x = uniform(ctx, {6, 8}, -1.0, 1.0, 7);  // a step tensor: made again after each reset
    if (poison) ndl_tensor_ptr(env.params.tensors[0])[0] = kNaN;  // first Linear's weight [0,0]
    ASSERT_STREQ(env.params.names[0], "0.weight");
    ndl_tensor *loss = ndl_nn_softmax_loss(ctx, ndl_module_forward(model, ctx, x), labels, 6);
    ASSERT_NE(loss, nullptr) << ndl_last_error();
    float lv = ndl_tensor_ptr(loss)[0];
    if (poison) EXPECT_TRUE(std::isnan(lv)) << "loss " << lv << " (fused " << env.fused << ")";
    else EXPECT_TRUE(std::isfinite(lv)) << lv;
    EXPECT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK) << ndl_last_error();
    ndl_ctx_reset(ctx);
  }
  ndl_module_free(model);
  ndl_nn_env_free(&env);
}

INSTANTIATE_TEST_SUITE_P(FusedAndComposed, NaNModel, ::testing::Values(1, 0));

}  // namespace
