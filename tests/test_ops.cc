// test_ops.cc: forward values of the op set, including needle's published values (rtol=atol=1e-5),
// matmul against a naive loop for every transpose layout, and shape/axes error messages.
#include <cmath>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"
#include "test_util.h"

class Ops : public CtxTest {};

TEST_F(Ops, NeedlePowerScalar) {
  ndl_tensor *y = ndl_pow_scalar(ctx, get_tensor(ctx, {2, 2}), 2.0f);
  EXPECT_TENSOR_NEAR(std::vector<float>({11.222499f, 17.639997f, 0.0625f, 20.25f}), y, 1e-5, 1e-5);
}

TEST_F(Ops, NeedleGradOfSumOfSquares) {
  ndl_tensor *x = get_tensor(ctx, {2, 2});
  ndl_tensor_set_requires_grad(x, 1);
  ASSERT_EQ(ndl_graph_backward(ctx, ndl_sum(ctx, ndl_pow_scalar(ctx, x, 2.0f), nullptr, 0), nullptr), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({6.7f, 8.4f, 0.5f, 9.0f}), x->grad, 1e-5, 1e-5);
}

TEST_F(Ops, NeedleLogSoftmax) {
  ndl_tensor *y = ndl_logsoftmax(ctx, get_tensor(ctx, {3, 3}));
  std::vector<float> v = tensor_values(y);
  EXPECT_VALUES_NEAR(std::vector<float>({-1.6436583f, -2.7936583f, -0.29365814f}),
                     std::vector<float>(v.begin(), v.begin() + 3), 1e-5, 1e-5);
}

TEST_F(Ops, NeedleLogSoftmaxIsStableForHugeInputs) {
  ndl_tensor *y = ndl_logsoftmax(ctx, ndl_mul_scalar(ctx, get_tensor(ctx, {3, 3}), 1e5f));
  EXPECT_TENSOR_NEAR(std::vector<float>({-135000.02f, -250000.f, 0.f, 0.f, -65000.f, -80000.f, 0.f,
                                         -290000.f, -210000.f}),
                     y, 1e-5, 1e-5);
}

TEST_F(Ops, NeedleGradOfSumOfLogSoftmaxSquared) {
  ndl_tensor *x = get_tensor(ctx, {3, 3});
  ndl_tensor_set_requires_grad(x, 1);
  ndl_tensor *loss = ndl_sum(ctx, ndl_pow_scalar(ctx, ndl_logsoftmax(ctx, x), 2.0f), nullptr, 0);
  ASSERT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK);
  std::vector<float> g = tensor_values(x->grad);
  EXPECT_VALUES_NEAR(std::vector<float>({-1.4585897f, -5.008274f, 6.4668627f}),
                     std::vector<float>(g.begin(), g.begin() + 3), 1e-5, 1e-5);
}

TEST_F(Ops, NeedleLogSumExpOverTwoAxes) {
  int axes[2] = {1, 2};
  ndl_tensor *y = ndl_logsumexp(ctx, get_tensor(ctx, {3, 3, 3}), axes, 2);
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->ndim, 1);
  EXPECT_TENSOR_NEAR(std::vector<float>({5.366029f, 4.9753823f, 6.208126f}), y, 1e-5, 1e-5);
}

TEST_F(Ops, NeedleLogSumExpOverLastAxis) {
  int axis = 1;
  ndl_tensor *y = ndl_logsumexp(ctx, get_tensor(ctx, {3, 10}), &axis, 1);
  EXPECT_TENSOR_NEAR(std::vector<float>({5.705309f, 5.976375f, 5.696459f}), y, 1e-5, 1e-5);
}

TEST_F(Ops, LogSumExpHandlesHugeAndMinusInfinity) {
  ndl_tensor *x = make_tensor(ctx, {2, 2}, {1e10f, 1e10f, -INFINITY, -INFINITY});
  int axis = 1;
  std::vector<float> v = tensor_values(ndl_logsumexp(ctx, x, &axis, 1));
  EXPECT_FLOAT_EQ(v[0], 1e10f + std::log(2.0f));
  EXPECT_TRUE(std::isinf(v[1]) && v[1] < 0);
}

TEST_F(Ops, ElementwiseAndScalarValues) {
  ndl_tensor *a = make_tensor(ctx, {2, 2}, {1, -2, 3, 4});
  ndl_tensor *b = make_tensor(ctx, {2, 2}, {2, 2, -1, 4});
  EXPECT_TENSOR_NEAR(std::vector<float>({3, 0, 2, 8}), ndl_add(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({-1, -4, 4, 0}), ndl_sub(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({2, -4, -3, 16}), ndl_mul(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({0.5f, -1, -3, 1}), ndl_div(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({1, 4, 1.f / 3, 256}), ndl_pow(ctx, a, b), 1e-6, 1e-6);
  EXPECT_TENSOR_NEAR(std::vector<float>({2, 2, 3, 4}), ndl_maximum(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({0, 0, 0, 1}), ndl_eq(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({0, 0, 1, 0}), ndl_gt(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({0, 0, 1, 1}), ndl_ge(ctx, a, b), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({1, 0, 3, 4}), ndl_relu(ctx, a), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({-1, 2, -3, -4}), ndl_neg(ctx, a), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({2.5f, -0.5f, 4.5f, 5.5f}), ndl_add_scalar(ctx, a, 1.5f), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({0.5f, -1, 1.5f, 2}), ndl_div_scalar(ctx, a, 2), 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({2, -1, 2.f / 3, 0.5f}), ndl_rdiv_scalar(ctx, a, 2), 1e-7, 1e-7);
  EXPECT_TENSOR_NEAR(std::vector<float>({std::tanh(1.f), std::tanh(-2.f), std::tanh(3.f), std::tanh(4.f)}),
                     ndl_tanh(ctx, a), 1e-6, 1e-6);
  EXPECT_TENSOR_NEAR(std::vector<float>({std::exp(1.f), std::exp(-2.f), std::exp(3.f), std::exp(4.f)}),
                     ndl_exp(ctx, a), 1e-6, 1e-6);
  EXPECT_TENSOR_NEAR(std::vector<float>({0, 0, std::log(3.f), std::log(4.f)}),
                     ndl_log(ctx, ndl_maximum(ctx, a, ndl_tensor_full(ctx, 2, a->shape, 1.f))), 1e-6, 1e-6);
}

TEST_F(Ops, SumAndMaxOverAxesSets) {
  ndl_tensor *x = get_tensor(ctx, {2, 3, 4});
  std::vector<float> v = tensor_values(x);
  int ax02[2] = {0, 2}, ax_neg = -1;
  std::vector<float> s02(3, 0.f), m1(8, -1e9f);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++) {
        float e = v[(i * 3 + j) * 4 + k];
        s02[j] += e;
      }
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++) m1[i * 4 + k] = std::max(m1[i * 4 + k], v[(i * 3 + j) * 4 + k]);
  EXPECT_TENSOR_NEAR(s02, ndl_sum(ctx, x, ax02, 2), 1e-5, 1e-6);
  int ax1 = 1;
  EXPECT_TENSOR_NEAR(m1, ndl_max(ctx, x, &ax1, 1), 0, 0);
  ndl_tensor *total = ndl_sum(ctx, x, nullptr, 0);
  EXPECT_EQ(total->ndim, 0);
  double ref = 0;
  for (float e : v) ref += e;
  EXPECT_NEAR(tensor_values(total)[0], ref, 1e-4);
  ndl_tensor *last = ndl_sum(ctx, x, &ax_neg, 1);
  EXPECT_EQ(last->ndim, 2);
  EXPECT_EQ(last->shape[1], 3);
}

// Naive reference for a[rows, k] x b[k, n] on any strides.
static std::vector<float> naive_matmul(const ndl_tensor *a, const ndl_tensor *b) {
  std::vector<float> av = tensor_values(a), bv = tensor_values(b);
  int64_t k = b->shape[0], n = b->shape[1], rows = (int64_t)av.size() / k;
  std::vector<float> c((size_t)(rows * n), 0.f);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++) s += (double)av[i * k + p] * bv[p * n + j];
      c[i * n + j] = (float)s;
    }
  return c;
}

TEST_F(Ops, MatmulAllTransposeLayoutsAndBatches) {
  ndl_tensor *a = get_tensor(ctx, {5, 7}), *at = ndl_transpose(ctx, get_tensor(ctx, {7, 5}), 0, 1);
  ndl_tensor *b = get_tensor(ctx, {7, 3}), *bt = ndl_transpose(ctx, get_tensor(ctx, {3, 7}), 0, 1);
  for (ndl_tensor *x : {a, at})
    for (ndl_tensor *y : {b, bt}) {
      ndl_tensor *c = ndl_matmul(ctx, x, y);
      ASSERT_NE(c, nullptr) << ndl_last_error();
      EXPECT_EQ(c->shape[0], 5);
      EXPECT_EQ(c->shape[1], 3);
      EXPECT_TENSOR_NEAR(naive_matmul(x, y), c, 1e-4, 1e-5);
    }
  ndl_tensor *batched = get_tensor(ctx, {2, 4, 5, 7});
  ndl_tensor *c = ndl_matmul(ctx, batched, b);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->ndim, 4);
  EXPECT_EQ(c->shape[3], 3);
  EXPECT_TENSOR_NEAR(naive_matmul(batched, b), c, 1e-4, 1e-5);
  // a sliced (strided rows) left operand and a permuted batched one
  int64_t st[2] = {0, 0}, sp[2] = {5, 7}, step[2] = {2, 1};
  ndl_tensor *sl = ndl_slice(ctx, a, st, sp, step);
  EXPECT_TENSOR_NEAR(naive_matmul(sl, b), ndl_matmul(ctx, sl, b), 1e-4, 1e-5);
  int perm[3] = {1, 0, 2};
  ndl_tensor *pb = ndl_permute(ctx, get_tensor(ctx, {4, 2, 7}), perm);
  EXPECT_TENSOR_NEAR(naive_matmul(pb, b), ndl_matmul(ctx, pb, b), 1e-4, 1e-5);
}

TEST_F(Ops, ShapeMismatchNamesBothShapes) {
  ndl_tensor *c = ndl_add(ctx, get_tensor(ctx, {2, 3}), get_tensor(ctx, {3, 2}));
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_NE(std::string(ndl_last_error()).find("a[2,3] b[3,2]"), std::string::npos) << ndl_last_error();
  // sticky: later ops fail too, and a reset clears it
  EXPECT_EQ(ndl_neg(ctx, get_tensor(ctx, {2})), nullptr);
  ndl_ctx_reset(ctx);
  EXPECT_NE(ndl_neg(ctx, get_tensor(ctx, {2})), nullptr);
}

TEST_F(Ops, MatmulInnerDimMismatch) {
  EXPECT_EQ(ndl_matmul(ctx, get_tensor(ctx, {64, 128}), get_tensor(ctx, {96, 32})), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_STREQ(ndl_last_error(), "matmul: a[64,128] b[96,32]: inner dims differ");
}

TEST_F(Ops, BadAxes) {
  ndl_tensor *x = get_tensor(ctx, {2, 3});
  int bad = 2;
  EXPECT_EQ(ndl_sum(ctx, x, &bad, 1), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_AXES);
  EXPECT_NE(std::string(ndl_last_error()).find("axis 2 out of range for a[2,3]"), std::string::npos)
      << ndl_last_error();
  ndl_ctx_reset(ctx);
  int dup[2] = {1, -1};
  EXPECT_EQ(ndl_max(ctx, get_tensor(ctx, {2, 3}), dup, 2), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_AXES);
  ndl_ctx_reset(ctx);
  int perm[2] = {0, 0};
  EXPECT_EQ(ndl_permute(ctx, get_tensor(ctx, {2, 3}), perm), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_AXES);
}

TEST_F(Ops, BadReshapeAndBroadcast) {
  int64_t s[2] = {4, 2};
  EXPECT_EQ(ndl_reshape(ctx, get_tensor(ctx, {2, 3}), 2, s), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_NE(std::string(ndl_last_error()).find("a[2,3] -> [4,2]"), std::string::npos);
  ndl_ctx_reset(ctx);
  int64_t t[2] = {4, 3};
  EXPECT_EQ(ndl_broadcast_to(ctx, get_tensor(ctx, {2, 3}), 2, t), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_NE(std::string(ndl_last_error()).find("a[2,3] -> [4,3]"), std::string::npos);
}

TEST_F(Ops, OutOfMemoryIsReportedThroughStatus) {
  ndl_alloc_set_limit(ndl_alloc_live_count() > 0 ? (size_t)64 << 20 : (size_t)64 << 20);
  int64_t huge[2] = {1 << 20, 1 << 10};  // 4 GiB of floats
  ndl_tensor *t = ndl_tensor_empty(ctx, 2, huge);
  ndl_alloc_set_limit(0);
  EXPECT_EQ(t, nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_NOMEM);
  EXPECT_NE(std::string(ndl_last_error()).find("out of memory"), std::string::npos);
  EXPECT_STREQ(ndl_status_str(NDL_ERR_NOMEM), "out of memory");
}
