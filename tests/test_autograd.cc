// test_autograd.cc: accumulation into a tensor used twice, detach and no-grad mode, gradients of
// views, and higher-order gradients through create_graph (d2/dx2 of x^3 and of a composed function).
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "test_util.h"

class Autograd : public CtxTest {};

TEST_F(Autograd, TensorUsedTwiceGetsTheSum) {
  ndl_tensor *x = make_tensor(ctx, {3}, {1, 2, 3});
  ndl_tensor_set_requires_grad(x, 1);
  // y = sum(x*x + x) -> dy/dx = 2x + 1
  ndl_tensor *y = ndl_sum(ctx, ndl_add(ctx, ndl_mul(ctx, x, x), x), nullptr, 0);
  ASSERT_EQ(ndl_graph_backward(ctx, y, nullptr), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({3, 5, 7}), x->grad, 0, 0);
  // a second backward accumulates (+=) into the same grad
  y = ndl_sum(ctx, ndl_mul_scalar(ctx, x, 2.f), nullptr, 0);
  ASSERT_EQ(ndl_graph_backward(ctx, y, nullptr), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({5, 7, 9}), x->grad, 0, 0);
}

TEST_F(Autograd, DetachAndNoGradRecordNothing) {
  ndl_tensor *x = make_tensor(ctx, {2}, {1, 2});
  ndl_tensor_set_requires_grad(x, 1);
  ndl_tensor *d = ndl_tensor_detach(ctx, ndl_mul(ctx, x, x));
  EXPECT_EQ(d->op, NDL_OP_NONE);
  EXPECT_FALSE(d->requires_grad);
  int old = ndl_ctx_set_grad(ctx, 0);
  ndl_tensor *y = ndl_mul(ctx, x, x);
  ndl_ctx_set_grad(ctx, old);
  EXPECT_EQ(y->op, NDL_OP_NONE);
  EXPECT_FALSE(y->requires_grad);
  // y*x only differentiates through the recorded x
  ndl_tensor *z = ndl_sum(ctx, ndl_mul(ctx, y, x), nullptr, 0);
  ASSERT_EQ(ndl_graph_backward(ctx, z, nullptr), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({1, 4}), x->grad, 0, 0);
}

TEST_F(Autograd, GradientsOfViewsHaveTheInputShape) {
  ndl_tensor *x = get_tensor(ctx, {2, 3});
  ndl_tensor_set_requires_grad(x, 1);
  int64_t st[2] = {0, 1}, sp[2] = {2, 3}, to[3] = {4, 2, 3};
  ndl_tensor *s = ndl_slice(ctx, x, st, sp, nullptr);                 // [2,2]
  ndl_tensor *b = ndl_broadcast_to(ctx, x, 3, to);                     // [4,2,3]
  ndl_tensor *t = ndl_transpose(ctx, x, 0, 1);                         // [3,2]
  ndl_tensor *y = ndl_add(ctx, ndl_sum(ctx, s, nullptr, 0),
                          ndl_add(ctx, ndl_sum(ctx, b, nullptr, 0), ndl_sum(ctx, ndl_mul_scalar(ctx, t, 10.f), nullptr, 0)));
  ASSERT_EQ(ndl_graph_backward(ctx, y, nullptr), NDL_OK);
  ASSERT_TRUE(ndl_shape_equal(x->grad, x));
  EXPECT_TENSOR_NEAR(std::vector<float>({14, 15, 15, 14, 15, 15}), x->grad, 0, 0);
}

TEST_F(Autograd, SecondDerivativeOfCube) {
  ndl_tensor *x = make_tensor(ctx, {3}, {-1, 0.5f, 2});
  ndl_tensor_set_requires_grad(x, 1);
  ndl_tensor *y = ndl_sum(ctx, ndl_pow_scalar(ctx, x, 3.f), nullptr, 0);
  ndl_tensor *g1;
  ASSERT_EQ(ndl_graph_grad(ctx, y, nullptr, 1, &x, &g1, 1), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({3, 0.75f, 12}), g1, 1e-6, 1e-6);  // 3x^2
  ASSERT_TRUE(g1->requires_grad) << "create_graph must give a differentiable gradient";
  ndl_tensor *g2;
  ASSERT_EQ(ndl_graph_grad(ctx, ndl_sum(ctx, g1, nullptr, 0), nullptr, 1, &x, &g2, 1), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({-6, 3, 12}), g2, 1e-6, 1e-6);  // 6x
  ndl_tensor *g3;
  ASSERT_EQ(ndl_graph_grad(ctx, ndl_sum(ctx, g2, nullptr, 0), nullptr, 1, &x, &g3, 0), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({6, 6, 6}), g3, 1e-6, 1e-6);
  EXPECT_EQ(x->grad, nullptr) << "graph_grad must not touch .grad";
}

TEST_F(Autograd, SecondDerivativeOfComposedFunction) {
  // f(x) = sum(exp(x) * tanh(x)); f'' = e^x (tanh + 2 sech^2 - 2 tanh sech^2)
  std::vector<float> xs = {-0.7f, 0.2f, 1.1f};
  ndl_tensor *x = make_tensor(ctx, {3}, xs);
  ndl_tensor_set_requires_grad(x, 1);
  ndl_tensor *f = ndl_sum(ctx, ndl_mul(ctx, ndl_exp(ctx, x), ndl_tanh(ctx, x)), nullptr, 0);
  ndl_tensor *g1, *g2;
  ASSERT_EQ(ndl_graph_grad(ctx, f, nullptr, 1, &x, &g1, 1), NDL_OK);
  ASSERT_EQ(ndl_graph_grad(ctx, ndl_sum(ctx, g1, nullptr, 0), nullptr, 1, &x, &g2, 0), NDL_OK);
  std::vector<float> ref;
  for (float v : xs) {
    double t = std::tanh((double)v), s2 = 1 - t * t, e = std::exp((double)v);
    ref.push_back((float)(e * (t + 2 * s2 - 2 * t * s2)));
  }
  EXPECT_TENSOR_NEAR(ref, g2, 1e-5, 1e-5);
}

TEST_F(Autograd, GradOfUnreachedInputIsZero) {
  ndl_tensor *x = make_tensor(ctx, {2}, {1, 2}), *w = make_tensor(ctx, {2}, {3, 4});
  ndl_tensor_set_requires_grad(x, 1);
  ndl_tensor_set_requires_grad(w, 1);
  ndl_tensor *wrt[2] = {x, w}, *g[2];
  ASSERT_EQ(ndl_graph_grad(ctx, ndl_sum(ctx, x, nullptr, 0), nullptr, 2, wrt, g, 0), NDL_OK);
  EXPECT_TENSOR_NEAR(std::vector<float>({1, 1}), g[0], 0, 0);
  EXPECT_TENSOR_NEAR(std::vector<float>({0, 0}), g[1], 0, 0);
}

TEST_F(Autograd, BackwardShapeErrorsAreReported) {
  ndl_tensor *x = make_tensor(ctx, {2}, {1, 2});
  ndl_tensor_set_requires_grad(x, 1);
  ndl_tensor *seed = make_tensor(ctx, {3}, {1, 1, 1});
  EXPECT_EQ(ndl_graph_backward(ctx, ndl_mul(ctx, x, x), seed), NDL_ERR_SHAPE);
}
