// test_gradcheck.cc: a central-difference gradient check of every differentiable op (and of
// broadcasting, multi-axis reductions, batched and transposed matmul, non-contiguous views fed
// into element-wise ops and reductions). The checker weighs the output with fixed random weights,
// backpropagates, and compares each input's gradient with (L(x+eps) - L(x-eps)) / 2eps evaluated
// in double from float outputs with grad mode off (the checker is shared: test_util.h). Two tests
// prove the checker can fail.
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "test_util.h"

namespace {

// Values with |x| in [0.1, 1): keeps relu away from its kink at 0.
ndl_tensor *away_from_zero(ndl_ctx *ctx, std::initializer_list<int64_t> shape, uint32_t seed) {
  ndl_tensor *t = uniform(ctx, shape, -1.0, 1.0, seed);
  float *p = ndl_tensor_ptr(t);
  for (int64_t i = 0; i < ndl_tensor_numel(t); i++) p[i] = (p[i] < 0 ? -0.1f : 0.1f) + 0.9f * p[i];
  return t;
}

// Distinct values 0.1 apart in shuffled order: max has no ties within +-eps.
ndl_tensor *distinct(ndl_ctx *ctx, std::initializer_list<int64_t> shape, uint32_t seed) {
  std::vector<int64_t> dims(shape);
  int64_t n = ndl_shape_numel((int)dims.size(), dims.data());
  ndl_rng rng;
  ndl_rng_seed(&rng, seed);
  std::vector<int64_t> perm((size_t)n);
  ndl_rng_permutation(&rng, n, perm.data());
  std::vector<float> v((size_t)n);
  for (int64_t i = 0; i < n; i++) v[(size_t)i] = (float)(0.1 * (double)perm[(size_t)i] - 0.05 * (double)n);
  return ndl_tensor_from(ctx, (int)dims.size(), dims.data(), v.data());
}

class GradCheck : public CtxTest {};

// ---- the checker itself ----

TEST_F(GradCheck, CheckerRejectsAScaledGradient) {
  GradFn f = [](ndl_ctx *c, const Inputs &in) { return ndl_mul(c, in[0], in[1]); };
  Inputs in = {uniform(ctx, {3, 4}, 0.5, 1.5, 1), uniform(ctx, {3, 4}, 0.5, 1.5, 2)};
  EXPECT_TRUE(grad_check(ctx, f, in));
  GradCheckOpts wrong;
  wrong.grad_scale = 1.1;
  ::testing::AssertionResult r = grad_check(ctx, f, in, wrong);
  EXPECT_FALSE(r) << "a gradient 10% off must be rejected";
  EXPECT_NE(std::string(r.message()).find("mismatch"), std::string::npos) << r.message();
}

TEST_F(GradCheck, CheckerRejectsAGraphThatHidesADependency) {
  // x * detach(x): backward sees d/dx = x, the true derivative is 2x
  GradFn f = [](ndl_ctx *c, const Inputs &in) {
    return ndl_mul(c, in[0], ndl_tensor_detach(c, in[0]));
  };
  EXPECT_FALSE(grad_check(ctx, f, {uniform(ctx, {2, 3}, 0.5, 1.5, 3)}));
}

// ---- element-wise binary ----

TEST_F(GradCheck, Add) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_add(c, in[0], in[1]); },
                         {uniform(ctx, {3, 4}, -1, 1, 1), uniform(ctx, {3, 4}, -1, 1, 2)}));
}

TEST_F(GradCheck, Sub) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_sub(c, in[0], in[1]); },
                         {uniform(ctx, {3, 4}, -1, 1, 3), uniform(ctx, {3, 4}, -1, 1, 4)}));
}

TEST_F(GradCheck, Mul) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_mul(c, in[0], in[1]); },
                         {uniform(ctx, {3, 4}, -1, 1, 5), uniform(ctx, {3, 4}, -1, 1, 6)}));
}

TEST_F(GradCheck, Div) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_div(c, in[0], in[1]); },
                         {uniform(ctx, {3, 4}, -1, 1, 7), uniform(ctx, {3, 4}, 0.5, 2, 8)}));
}

TEST_F(GradCheck, Pow) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_pow(c, in[0], in[1]); },
                         {uniform(ctx, {3, 4}, 0.5, 2, 9), uniform(ctx, {3, 4}, -1, 2, 10)}));
}

TEST_F(GradCheck, MaximumAwayFromTies) {
  ndl_tensor *a = uniform(ctx, {4, 5}, -1, 1, 11);
  ndl_tensor *b = uniform(ctx, {4, 5}, -1, 1, 12);
  float *pa = ndl_tensor_ptr(a), *pb = ndl_tensor_ptr(b);
  int a_wins = 0;
  for (int i = 0; i < 20; i++) {
    if (std::fabs(pa[i] - pb[i]) < 0.1f) pb[i] = pa[i] + (i % 2 ? 0.2f : -0.2f);
    a_wins += pa[i] > pb[i];
  }
  ASSERT_GT(a_wins, 0);
  ASSERT_LT(a_wins, 20);  // both inputs win somewhere
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_maximum(c, in[0], in[1]); },
                         {a, b}));
}

// ---- scalar and unary ----

TEST_F(GradCheck, AddScalar) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_add_scalar(c, in[0], 2.5f); },
                         {uniform(ctx, {3, 4}, -1, 1, 13)}));
}

TEST_F(GradCheck, MulScalar) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_mul_scalar(c, in[0], -1.7f); },
                         {uniform(ctx, {3, 4}, -1, 1, 14)}));
}

TEST_F(GradCheck, DivScalar) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_div_scalar(c, in[0], 0.4f); },
                         {uniform(ctx, {3, 4}, -1, 1, 15)}));
}

TEST_F(GradCheck, RdivScalar) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_rdiv_scalar(c, in[0], 1.5f); },
                         {uniform(ctx, {3, 4}, 0.5, 2, 16)}));
}

TEST_F(GradCheck, PowScalarIntegerSquareAndFractional) {
  ndl_tensor *x = uniform(ctx, {3, 4}, 0.5, 1.5, 17);
  for (float s : {3.0f, 2.0f, 0.5f, -1.5f}) {
    SCOPED_TRACE(s);
    EXPECT_TRUE(grad_check(ctx, [s](ndl_ctx *c, const Inputs &in) { return ndl_pow_scalar(c, in[0], s); },
                           {x}));
  }
}

TEST_F(GradCheck, Neg) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_neg(c, in[0]); },
                         {uniform(ctx, {3, 4}, -1, 1, 18)}));
}

TEST_F(GradCheck, Log) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_log(c, in[0]); },
                         {uniform(ctx, {3, 4}, 0.5, 3, 19)}));
}

TEST_F(GradCheck, Exp) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_exp(c, in[0]); },
                         {uniform(ctx, {3, 4}, -1.5, 1.5, 20)}));
}

TEST_F(GradCheck, ReluAwayFromZero) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_relu(c, in[0]); },
                         {away_from_zero(ctx, {4, 5}, 21)}));
}

TEST_F(GradCheck, Tanh) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_tanh(c, in[0]); },
                         {uniform(ctx, {3, 4}, -2, 2, 22)}));
}

// ---- reductions over one, several and all axes ----

struct AxisSet {
  std::vector<int> axes;  // empty means all (axes == NULL)
};

static ndl_tensor *reduce_with(ndl_ctx *c, ndl_tensor *x, ndl_op op, const std::vector<int> &axes) {
  const int *p = axes.empty() ? nullptr : axes.data();
  int n = (int)axes.size();
  switch (op) {
    case NDL_OP_SUM: return ndl_sum(c, x, p, n);
    case NDL_OP_MAX: return ndl_max(c, x, p, n);
    default: return ndl_logsumexp(c, x, p, n);
  }
}

static const std::vector<std::vector<int>> kAxisSets = {{0}, {1}, {-1}, {0, 2}, {1, 2}, {2, 0, 1}, {}};

TEST_F(GradCheck, SumOverAxisSets) {
  ndl_tensor *x = uniform(ctx, {2, 3, 4}, -1, 1, 23);
  for (const std::vector<int> &axes : kAxisSets) {
    SCOPED_TRACE(::testing::PrintToString(axes));
    EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return reduce_with(c, in[0], NDL_OP_SUM, axes); },
                           {x}));
  }
}

TEST_F(GradCheck, MaxOverAxisSetsWithoutTies) {
  ndl_tensor *x = distinct(ctx, {2, 3, 4}, 24);
  for (const std::vector<int> &axes : kAxisSets) {
    SCOPED_TRACE(::testing::PrintToString(axes));
    EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return reduce_with(c, in[0], NDL_OP_MAX, axes); },
                           {x}));
  }
}

TEST_F(GradCheck, LogSumExpOverAxisSets) {
  ndl_tensor *x = uniform(ctx, {2, 3, 4}, -2, 2, 25);
  for (const std::vector<int> &axes : kAxisSets) {
    SCOPED_TRACE(::testing::PrintToString(axes));
    EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return reduce_with(c, in[0], NDL_OP_LOGSUMEXP, axes); },
                           {x}));
  }
}

TEST_F(GradCheck, LogSumExpOfLargeShiftedValues) {
  // the max shift must not change the gradient (softmax of the inputs)
  ndl_tensor *x = uniform(ctx, {3, 5}, 50, 52, 26);
  int axis = 1;
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_logsumexp(c, in[0], &axis, 1); },
                         {x}));
}

TEST_F(GradCheck, LogSoftmax) {
  GradFn f = [](ndl_ctx *c, const Inputs &in) { return ndl_logsoftmax(c, in[0]); };
  EXPECT_TRUE(grad_check(ctx, f, {uniform(ctx, {3, 5}, -2, 2, 27)}));
  EXPECT_TRUE(grad_check(ctx, f, {uniform(ctx, {2, 3, 4}, -2, 2, 28)}));
  EXPECT_TRUE(grad_check(ctx, f, {uniform(ctx, {6}, -2, 2, 29)}));
}

// ---- views ----

TEST_F(GradCheck, ReshapeContiguousAndInferred) {
  int64_t to[2] = {4, -1};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_mul(c, ndl_reshape(c, in[0], 2, to), ndl_reshape(c, in[1], 2, to));
  }, {uniform(ctx, {2, 3, 4}, -1, 1, 30), uniform(ctx, {24}, -1, 1, 31)}));
}

TEST_F(GradCheck, ReshapeOfNonContiguousView) {
  int64_t to[1] = {12};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_reshape(c, ndl_transpose(c, in[0], 0, 1), 1, to);
  }, {uniform(ctx, {3, 4}, -1, 1, 32)}));
}

TEST_F(GradCheck, BroadcastTo) {
  int64_t to3[3] = {2, 3, 4}, to2[2] = {2, 3};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_broadcast_to(c, in[0], 3, to3); },
                         {uniform(ctx, {3, 1}, -1, 1, 33)}));
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_broadcast_to(c, in[0], 3, to3); },
                         {uniform(ctx, {4}, -1, 1, 34)}));
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_broadcast_to(c, in[0], 3, to3); },
                         {uniform(ctx, {1, 3, 4}, -1, 1, 35)}));
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_broadcast_to(c, in[0], 2, to2); },
                         {uniform(ctx, {}, -1, 1, 36)}));
}

TEST_F(GradCheck, BroadcastThenElementwise) {
  // bias-style (1,3) and (3,) rows, a (4,1) column, all stretched to (4,3)
  int64_t to[2] = {4, 3};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    ndl_tensor *row = ndl_broadcast_to(c, in[1], 2, to), *vec = ndl_broadcast_to(c, in[2], 2, to);
    ndl_tensor *col = ndl_broadcast_to(c, in[3], 2, to);
    return ndl_div(c, ndl_mul(c, ndl_add(c, in[0], row), vec), col);
  }, {uniform(ctx, {4, 3}, -1, 1, 37), uniform(ctx, {1, 3}, -1, 1, 38), uniform(ctx, {3}, -1, 1, 39),
      uniform(ctx, {4, 1}, 0.5, 2, 40)}));
}

TEST_F(GradCheck, Permute) {
  int perm[3] = {2, 0, 1};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_permute(c, in[0], perm); },
                         {uniform(ctx, {2, 3, 4}, -1, 1, 41)}));
}

TEST_F(GradCheck, Transpose) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_transpose(c, in[0], 0, 1); },
                         {uniform(ctx, {3, 4}, -1, 1, 42)}));
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_transpose(c, in[0], -1, 0); },
                         {uniform(ctx, {2, 3, 4}, -1, 1, 43)}));
}

TEST_F(GradCheck, SliceWithSteps) {
  int64_t st[2] = {1, 0}, sp[2] = {5, 6}, step[2] = {2, 3};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_slice(c, in[0], st, sp, step); },
                         {uniform(ctx, {5, 6}, -1, 1, 44)}));
  int64_t st3[3] = {0, 1, 1}, sp3[3] = {2, 3, 4};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_slice(c, in[0], st3, sp3, nullptr); },
                         {uniform(ctx, {2, 3, 4}, -1, 1, 45)}));
}

TEST_F(GradCheck, Unslice) {
  int64_t st[2] = {1, 0}, step[2] = {2, 3};
  ndl_tensor *like = ndl_tensor_zeros(ctx, 2, std::vector<int64_t>({5, 6}).data());
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_unslice(c, in[0], like, st, step); },
                         {uniform(ctx, {2, 2}, -1, 1, 46)}));
}

TEST_F(GradCheck, SecondDerivativeThroughSlice) {
  // f = d/dx sum(w * slice(x)^3): an unslice node, differentiated again through slice
  int64_t st[2] = {0, 1}, sp[2] = {4, 5}, step[2] = {2, 2};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) -> ndl_tensor * {
    int old = ndl_ctx_set_grad(c, 1);  // the inner gradient needs a graph even in the numeric pass
    ndl_tensor *y = ndl_sum(c, ndl_pow_scalar(c, ndl_slice(c, in[0], st, sp, step), 3.0f), nullptr, 0);
    ndl_tensor *g = nullptr;
    ndl_graph_grad(c, y, nullptr, 1, &in[0], &g, 1);
    ndl_ctx_set_grad(c, old);
    return g;
  }, {uniform(ctx, {4, 5}, -1, 1, 47)}));
}

TEST_F(GradCheck, Compact) {
  GradFn f = [](ndl_ctx *c, const Inputs &in) { return ndl_compact(c, ndl_transpose(c, in[0], 0, 1)); };
  EXPECT_TRUE(grad_check(ctx, f, {uniform(ctx, {3, 4}, -1, 1, 48)}));
  int64_t st[2] = {0, 1}, sp[2] = {3, 4}, step[2] = {1, 2};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) { return ndl_compact(c, ndl_slice(c, in[0], st, sp, step)); },
                         {uniform(ctx, {3, 4}, -1, 1, 49)}));
}

// ---- matmul ----

TEST_F(GradCheck, Matmul2D) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_matmul(c, in[0], in[1]); },
                         {uniform(ctx, {3, 4}, -1, 1, 50), uniform(ctx, {4, 5}, -1, 1, 51)}));
}

TEST_F(GradCheck, Matmul2DTransposedOperands) {
  // a^T b, a b^T, a^T b^T: the sgemm transpose flags in forward and backward
  Inputs in = {uniform(ctx, {4, 3}, -1, 1, 52), uniform(ctx, {5, 4}, -1, 1, 53)};
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &v) {
    return ndl_matmul(c, ndl_transpose(c, v[0], 0, 1), ndl_transpose(c, v[1], 0, 1));
  }, in));
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &v) {
    return ndl_matmul(c, ndl_transpose(c, v[0], 0, 1), v[1]);
  }, {uniform(ctx, {4, 3}, -1, 1, 54), uniform(ctx, {4, 5}, -1, 1, 55)}));
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &v) {
    return ndl_matmul(c, v[0], ndl_transpose(c, v[1], 0, 1));
  }, {uniform(ctx, {3, 4}, -1, 1, 56), uniform(ctx, {5, 4}, -1, 1, 57)}));
}

TEST_F(GradCheck, MatmulBatched) {
  EXPECT_TRUE(grad_check(ctx, [](ndl_ctx *c, const Inputs &in) { return ndl_matmul(c, in[0], in[1]); },
                         {uniform(ctx, {2, 3, 4, 5}, -1, 1, 58), uniform(ctx, {5, 2}, -1, 1, 59)}));
}

TEST_F(GradCheck, MatmulBatchedNonContiguousAndSlicedOperands) {
  int perm[3] = {1, 0, 2};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_matmul(c, ndl_permute(c, in[0], perm), in[1]);
  }, {uniform(ctx, {3, 2, 4}, -1, 1, 60), uniform(ctx, {4, 3}, -1, 1, 61)}));
  int64_t st[2] = {0, 1}, sp[2] = {5, 6}, step[2] = {2, 2};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_matmul(c, ndl_slice(c, in[0], st, sp, step), in[1]);
  }, {uniform(ctx, {5, 6}, -1, 1, 62), uniform(ctx, {3, 2}, -1, 1, 63)}));
  int64_t to[2] = {4, 3};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_matmul(c, in[0], ndl_broadcast_to(c, in[1], 2, to));
  }, {uniform(ctx, {2, 4}, -1, 1, 64), uniform(ctx, {1, 3}, -1, 1, 65)}));
}

// ---- non-contiguous inputs into element-wise ops and reductions ----

TEST_F(GradCheck, ElementwiseOnNonContiguousViews) {
  int64_t st[2] = {0, 1}, sp[2] = {6, 4}, step[2] = {2, 1};
  int64_t to[2] = {3, 3};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    ndl_tensor *t = ndl_transpose(c, in[0], 0, 1);         // [3,3] strides (1,3)
    ndl_tensor *s = ndl_slice(c, in[1], st, sp, step);      // [3,3] strided rows, offset 1
    ndl_tensor *b = ndl_broadcast_to(c, in[2], 2, to);      // [3,3] stride-0 rows
    return ndl_add(c, ndl_mul(c, ndl_tanh(c, t), ndl_exp(c, s)), ndl_mul(c, ndl_sub(c, t, b), b));
  }, {uniform(ctx, {3, 3}, -1, 1, 66), uniform(ctx, {6, 4}, -1, 1, 67), uniform(ctx, {1, 3}, -1, 1, 68)}));
}

TEST_F(GradCheck, ReductionsOfNonContiguousViews) {
  int ax02[2] = {0, 2}, ax1 = 1;
  int perm[3] = {2, 0, 1};
  int64_t st[3] = {0, 0, 1}, sp[3] = {2, 3, 5}, step[3] = {1, 2, 2};
  int64_t to[3] = {2, 3, 4};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_sum(c, ndl_permute(c, in[0], perm), ax02, 2);
  }, {uniform(ctx, {2, 3, 4}, -1, 1, 69)}));
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_max(c, ndl_slice(c, in[0], st, sp, step), ax02, 2);
  }, {distinct(ctx, {2, 3, 5}, 70)}));
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_logsumexp(c, ndl_transpose(c, in[0], 0, 2), &ax1, 1);
  }, {uniform(ctx, {2, 3, 4}, -1, 1, 71)}));
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_logsumexp(c, ndl_broadcast_to(c, in[0], 3, to), ax02, 2);
  }, {uniform(ctx, {3, 1}, -1, 1, 72)}));
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    return ndl_sum(c, ndl_broadcast_to(c, in[0], 3, to), nullptr, 0);
  }, {uniform(ctx, {4}, -1, 1, 73)}));
}

TEST_F(GradCheck, TensorUsedTwiceAndComposedNetwork) {
  // logsoftmax(relu(x W1 + b1) W2) picked by a mask: every op of a small classifier at once
  int64_t h[2] = {5, 4};
  EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
    ndl_tensor *z = ndl_add(c, ndl_matmul(c, in[0], in[1]), ndl_broadcast_to(c, in[2], 2, h));
    ndl_tensor *y = ndl_logsoftmax(c, ndl_matmul(c, ndl_relu(c, z), in[3]));
    return ndl_add(c, ndl_mul(c, y, y), ndl_mul_scalar(c, y, 0.5f));
  }, {uniform(ctx, {5, 3}, -1, 1, 74), uniform(ctx, {3, 4}, -1, 1, 75), uniform(ctx, {1, 4}, 0.2, 1, 76),
      uniform(ctx, {4, 3}, -1, 1, 77)}));
}

}  // namespace
