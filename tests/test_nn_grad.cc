// test_nn_grad.cc: central-difference gradient checks (w.r.t. the input and every parameter) of
// every nn module and model, in train and eval mode and on the fused (env.fused = 1) and composed
// (env.fused = 0) paths; CS231n FullyConnectedNet (init, state_dict names, L2 penalty); fused vs
// composed outputs, gradients and running statistics; train/eval recursion; and the refusal of
// create_graph through a fused op. Dropout is made deterministic by reseeding before each forward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "nn/init.h"
#include "nn/models.h"
#include "nn/module.h"
#include "test_util.h"

namespace {

const int kFusedModes[2] = {1, 0};

// Models with ReLUs: a smaller step keeps the central difference off the kinks.
GradCheckOpts model_opts() {
  GradCheckOpts o;
  o.eps = 1e-3;
  return o;
}

class NNGrad : public CtxTest {
 protected:
  void SetUp() override {
    CtxTest::SetUp();
    ndl_rng_seed(&rng, 0);
    ndl_nn_env_init(&env, &rng);
  }
  void TearDown() override {
    ndl_module_free(model);
    ndl_nn_env_free(&env);
    CtxTest::TearDown();
  }
  // Drop the model and its parameters, start an empty env and seed the RNG.
  void fresh(uint32_t seed) {
    ndl_module_free(model);
    model = nullptr;
    ndl_nn_env_free(&env);
    ndl_nn_env_init(&env, &rng);
    ndl_rng_seed(&rng, seed);
  }
  // Overwrite every parameter with uniform values in [lo, hi) (so norm weights are not all 1).
  void randomize_params(double lo, double hi, uint32_t seed) {
    ndl_rng r;
    ndl_rng_seed(&r, seed);
    for (int64_t i = 0; i < env.params.numel; i++) env.params.data[i] = (float)(lo + (hi - lo) * ndl_rng_rand(&r));
  }
  // Set every BatchNorm running mean to U(-0.3, 0.3) and running variance to U(0.5, 1.5): eval-mode
  // statistics that are non-trivial but well conditioned (a converged running variance can be tiny).
  void set_running_stats(uint32_t seed) {
    ndl_rng r;
    ndl_rng_seed(&r, seed);
    for (int i = 0; i < env.buffers.count; i++) {
      std::string name = env.buffers.names[i];
      bool mean = name.find("running_mean") != std::string::npos;
      bool var = name.find("running_var") != std::string::npos;
      float *p = ndl_tensor_ptr(env.buffers.tensors[i]);
      for (int64_t j = 0; (mean || var) && j < ndl_tensor_numel(env.buffers.tensors[i]); j++)
        p[j] = (float)(mean ? -0.3 + 0.6 * ndl_rng_rand(&r) : 0.5 + ndl_rng_rand(&r));
    }
  }
  // Grad-check model(x) w.r.t. x and every parameter. drop_seed >= 0 reseeds the RNG before every
  // forward (a fixed dropout mask).
  ::testing::AssertionResult check_model(ndl_tensor *x, int64_t drop_seed = -1,
                                         GradCheckOpts o = GradCheckOpts()) {
    o.params = &env.params;
    ndl_module *m = model;
    ndl_rng *r = &rng;
    return grad_check(ctx, [m, r, drop_seed](ndl_ctx *c, const Inputs &in) {
      if (drop_seed >= 0) ndl_rng_seed(r, (uint32_t)drop_seed);
      return ndl_module_forward(m, c, in[0]);
    }, {x}, o);
  }
  // The same check for each fused mode.
  void check_both_paths(ndl_tensor *x, int64_t drop_seed = -1, GradCheckOpts o = model_opts()) {
    for (int fused : kFusedModes) {
      env.fused = fused;
      EXPECT_TRUE(check_model(x, drop_seed, o)) << "fused " << fused << ", training " << model->training;
    }
  }
  ndl_rng rng;
  ndl_nn_env env;
  ndl_module *model = nullptr;
};

// Values with |x| in [0.2, 1.5): keeps relu away from its kink.
ndl_tensor *away_from_zero(ndl_ctx *ctx, std::initializer_list<int64_t> shape, uint32_t seed) {
  ndl_tensor *t = uniform(ctx, shape, -1.0, 1.0, seed);
  float *p = ndl_tensor_ptr(t);
  for (int64_t i = 0; i < ndl_tensor_numel(t); i++) p[i] = (p[i] < 0 ? -0.2f : 0.2f) + 1.3f * p[i];
  return t;
}

std::vector<int32_t> labels(int n, int classes) {
  std::vector<int32_t> y((size_t)n);
  for (int i = 0; i < n; i++) y[(size_t)i] = (int32_t)((i * 7 + 3) % classes);
  return y;
}

// ---- the checker with parameters ----

TEST_F(NNGrad, CheckerCoversParametersAndCanFail) {
  model = ndl_nn_linear(&env, "0", 4, 3, 1);
  ndl_tensor *x = uniform(ctx, {5, 4}, -1, 1, 1);
  EXPECT_TRUE(check_model(x));
  GradCheckOpts wrong;
  wrong.grad_scale = 1.1;
  EXPECT_FALSE(check_model(x, -1, wrong));
  // a parameter used through detach: its analytic gradient (0) must be caught
  ndl_tensor *w = env.params.tensors[0];
  GradCheckOpts o;
  o.params = &env.params;
  ::testing::AssertionResult r = grad_check(ctx, [w](ndl_ctx *c, const Inputs &in) {
    return ndl_matmul(c, in[0], ndl_tensor_detach(c, w));
  }, {x}, o);
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("param 0.weight"), std::string::npos) << r.message();
}

// ---- modules ----

TEST_F(NNGrad, Linear2DWithAndWithoutBias) {
  model = ndl_nn_linear(&env, "0", 5, 3, 1);
  randomize_params(-1, 1, 2);
  check_both_paths(uniform(ctx, {4, 5}, -1, 1, 3));
  fresh(1);
  model = ndl_nn_linear(&env, "0", 5, 3, 0);
  ASSERT_EQ(env.params.count, 1);
  check_both_paths(uniform(ctx, {4, 5}, -1, 1, 4));
}

TEST_F(NNGrad, Linear3DInputWithAndWithoutBias) {
  model = ndl_nn_linear(&env, "0", 5, 3, 1);
  randomize_params(-1, 1, 5);
  check_both_paths(uniform(ctx, {2, 3, 5}, -1, 1, 6));
  fresh(2);
  model = ndl_nn_linear(&env, "0", 5, 3, 0);
  check_both_paths(uniform(ctx, {2, 3, 5}, -1, 1, 7));
}

TEST_F(NNGrad, ReLUFlattenIdentity) {
  model = ndl_nn_relu(&env);
  check_both_paths(away_from_zero(ctx, {4, 5}, 8));
  fresh(0);
  model = ndl_nn_flatten(&env);
  check_both_paths(uniform(ctx, {2, 3, 4}, -1, 1, 9));
  fresh(0);
  model = ndl_nn_identity(&env);
  check_both_paths(uniform(ctx, {3, 4}, -1, 1, 10));
}

TEST_F(NNGrad, SequentialAndResidual) {
  ndl_module *m[3] = {ndl_nn_linear(&env, "0", 5, 4, 1), ndl_nn_relu(&env), ndl_nn_linear(&env, "2", 4, 3, 1)};
  model = ndl_nn_sequential(&env, 3, m);
  check_both_paths(uniform(ctx, {6, 5}, -1, 1, 11));
  fresh(3);
  ndl_module *r[3] = {ndl_nn_linear(&env, "0", 4, 4, 1), ndl_nn_relu(&env), ndl_nn_linear(&env, "2", 4, 4, 1)};
  model = ndl_nn_residual(&env, ndl_nn_sequential(&env, 3, r));
  check_both_paths(uniform(ctx, {5, 4}, -1, 1, 12));
}

TEST_F(NNGrad, BatchNorm1dTrainUsesBatchStatistics) {
  model = ndl_nn_batchnorm1d(&env, "bn", 4, 1e-5f, 0.1f);
  randomize_params(0.5, 1.5, 13);
  check_both_paths(uniform(ctx, {6, 4}, -2, 2, 14));
}

TEST_F(NNGrad, BatchNorm1dEvalUsesRunningStatistics) {
  model = ndl_nn_batchnorm1d(&env, "bn", 4, 1e-5f, 0.1f);
  randomize_params(0.5, 1.5, 15);
  std::vector<float> rm = {0.3f, -0.7f, 1.2f, 0.0f}, rv = {0.5f, 2.0f, 1.3f, 0.8f};
  std::memcpy(ndl_tensor_ptr(ndl_nn_batchnorm_running_mean(model)), rm.data(), 4 * sizeof(float));
  std::memcpy(ndl_tensor_ptr(ndl_nn_batchnorm_running_var(model)), rv.data(), 4 * sizeof(float));
  ndl_module_train(model, 0);
  ndl_tensor *x = uniform(ctx, {3, 4}, -2, 2, 16);
  check_both_paths(x);
  // eval: dy/dx = w / sqrt(rv + eps) exactly, independent of the batch
  ndl_params_zero_grad(&env.params);
  x->grad = nullptr;
  ASSERT_EQ(ndl_graph_backward(ctx, ndl_sum(ctx, ndl_module_forward(model, ctx, x), nullptr, 0), nullptr), NDL_OK);
  std::vector<float> w = tensor_values(env.params.tensors[0]), ref;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 4; j++) ref.push_back(w[(size_t)j] / std::sqrt(rv[(size_t)j] + 1e-5f));
  EXPECT_TENSOR_NEAR(ref, x->grad, 1e-5, 1e-5);
}

TEST_F(NNGrad, LayerNorm1d) {
  model = ndl_nn_layernorm1d(&env, "ln", 6, 1e-5f);
  randomize_params(0.5, 1.5, 17);
  check_both_paths(uniform(ctx, {5, 6}, -2, 2, 18));
}

TEST_F(NNGrad, DropoutTrainWithFixedMaskAndEvalIdentity) {
  model = ndl_nn_dropout(&env, 0.4f);
  ndl_tensor *x = uniform(ctx, {5, 6}, -1, 1, 19);
  ndl_rng_seed(&rng, 77);
  std::vector<float> y = tensor_values(ndl_module_forward(model, ctx, x));
  int zeros = 0;
  for (float v : y) zeros += v == 0.0f;
  ASSERT_GT(zeros, 0) << "the mask drops something";
  ASSERT_LT(zeros, 30) << "and keeps something";
  check_both_paths(x, 77);
  // without the reseed every evaluation draws a new mask: the check must notice
  EXPECT_FALSE(check_model(x));
  ndl_module_train(model, 0);
  check_both_paths(x);
}

TEST_F(NNGrad, SoftmaxLossFusedAndComposed) {
  ndl_tensor *z = uniform(ctx, {5, 4}, -2, 2, 20);
  std::vector<int32_t> y = labels(5, 4);
  for (int64_t denom : {0, 8}) {
    EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
      return ndl_nn_softmax_loss(c, in[0], y.data(), denom);
    }, {z})) << "fused, denom " << denom;
    EXPECT_TRUE(grad_check(ctx, [&](ndl_ctx *c, const Inputs &in) {
      return ndl_nn_softmax_loss_composed(c, in[0], y.data(), denom);
    }, {z})) << "composed, denom " << denom;
  }
}

TEST_F(NNGrad, ResidualBlockEveryNormTrainAndEval) {
  const ndl_norm_kind norms[3] = {NDL_NORM_NONE, NDL_NORM_BATCH, NDL_NORM_LAYER};
  for (ndl_norm_kind norm : norms) {
    for (float drop : {0.0f, 0.3f}) {
      SCOPED_TRACE("norm " + std::to_string((int)norm) + " drop " + std::to_string(drop));
      fresh(21);
      model = ndl_nn_residual_block(&env, "", 6, 4, norm, drop);
      ASSERT_NE(model, nullptr);
      ndl_tensor *x = uniform(ctx, {5, 6}, -1, 1, 22);
      check_both_paths(x, 5);
      ndl_module_train(model, 0);
      set_running_stats(23);
      check_both_paths(x);
    }
  }
}

TEST_F(NNGrad, MLPResNetTrainAndEval) {
  for (ndl_norm_kind norm : {NDL_NORM_BATCH, NDL_NORM_LAYER}) {
    SCOPED_TRACE("norm " + std::to_string((int)norm));
    fresh(23);
    model = ndl_nn_mlp_resnet(&env, 5, 6, 2, 3, norm, 0.2f);
    ASSERT_NE(model, nullptr);
    ndl_tensor *x = uniform(ctx, {4, 5}, -1, 1, 24);
    check_both_paths(x, 9);
    ndl_module_train(model, 0);
    set_running_stats(24);
    check_both_paths(x);
  }
}

// ---- CS231n FullyConnectedNet ----

TEST_F(NNGrad, FullyConnectedNetWithL2PenaltyEveryNormAndDropout) {
  const int64_t hidden[2] = {5, 4};
  std::vector<int32_t> y = labels(6, 3);
  for (ndl_norm_kind norm : {NDL_NORM_NONE, NDL_NORM_BATCH, NDL_NORM_LAYER}) {
    for (float drop : {0.0f, 0.25f}) {
      for (int fused : kFusedModes) {
        SCOPED_TRACE("norm " + std::to_string((int)norm) + " drop " + std::to_string(drop) + " fused " +
                     std::to_string(fused));
        fresh(25);
        model = ndl_nn_fc_net(&env, 7, 2, hidden, 3, norm, drop, 0.5);
        ASSERT_NE(model, nullptr);
        env.fused = fused;
        ndl_module *m = model;
        ndl_rng *r = &rng;
        GradCheckOpts o = model_opts();
        o.params = &env.params;
        EXPECT_TRUE(grad_check(ctx, [&, m, r](ndl_ctx *c, const Inputs &in) {
          ndl_rng_seed(r, 31);
          ndl_tensor *logits = ndl_module_forward(m, c, in[0]);
          ndl_tensor *loss = fused ? ndl_nn_softmax_loss(c, logits, y.data(), 0)
                                   : ndl_nn_softmax_loss_composed(c, logits, y.data(), 0);
          return ndl_add(c, loss, ndl_nn_l2_penalty(c, m, 0.1f));
        }, {uniform(ctx, {6, 7}, -1, 1, 26)}, o));
      }
    }
  }
}

TEST_F(NNGrad, L2PenaltyIsHalfRegTimesSquaredLinearWeightsOnly) {
  const int64_t hidden[1] = {4};
  model = ndl_nn_fc_net(&env, 3, 1, hidden, 2, NDL_NORM_BATCH, 0.0f, 1.0);
  randomize_params(-1, 1, 27);
  double ref = 0;
  for (const char *name : {"0.weight", "3.weight"}) {
    int i = ndl_params_find(&env.params, name);
    ASSERT_GE(i, 0) << name;
    for (float v : tensor_values(env.params.tensors[i])) ref += (double)v * v;
  }
  EXPECT_TENSOR_NEAR(std::vector<float>({(float)(0.5 * 0.3 * ref)}), ndl_nn_l2_penalty(ctx, model, 0.3f), 1e-6, 1e-6);
}

TEST_F(NNGrad, FullyConnectedNetInitIsCs231n) {
  const int64_t hidden[2] = {100, 100};
  const double scale = 0.05;
  fresh(7);
  model = ndl_nn_fc_net(&env, 50, 2, hidden, 10, NDL_NORM_BATCH, 0.0f, scale);
  ASSERT_NE(model, nullptr);
  // the Linear weights are consecutive draws weight_scale * randn in construction order
  ndl_rng ref;
  ndl_rng_seed(&ref, 7);
  for (const char *name : {"0.weight", "3.weight", "6.weight"}) {
    int i = ndl_params_find(&env.params, name);
    ASSERT_GE(i, 0) << name;
    std::vector<float> w = tensor_values(env.params.tensors[i]), expect(w.size());
    for (float &e : expect) e = (float)(scale * ndl_rng_randn(&ref));
    EXPECT_VALUES_NEAR(expect, w, 0, 1e-7) << name;
    double mean = 0, sq = 0;
    for (float v : w) mean += v / (double)w.size();
    for (float v : w) sq += (v - mean) * (v - mean) / (double)w.size();
    EXPECT_NEAR(std::sqrt(sq), scale, 0.1 * scale) << name;
    EXPECT_NEAR(mean, 0.0, 0.2 * scale) << name;
  }
  for (const char *name : {"0.bias", "1.bias", "3.bias", "4.bias", "6.bias"}) {
    int i = ndl_params_find(&env.params, name);
    ASSERT_GE(i, 0) << name;
    for (float v : tensor_values(env.params.tensors[i])) ASSERT_EQ(v, 0.0f) << name;
  }
  for (const char *name : {"1.weight", "4.weight"}) {
    int i = ndl_params_find(&env.params, name);
    ASSERT_GE(i, 0) << name;
    for (float v : tensor_values(env.params.tensors[i])) ASSERT_EQ(v, 1.0f) << name;
  }
}

// PyTorch's nn.Sequential indexes every layer, parameter-free ones included.
TEST_F(NNGrad, FullyConnectedNetStateDictNamesFollowSequentialIndexing) {
  const int64_t hidden[2] = {100, 100};
  struct Case {
    ndl_norm_kind norm;
    float drop;
    std::vector<std::string> kinds, params, buffers;
  } cases[] = {
      {NDL_NORM_BATCH, 0.0f,
       {"Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"},
       {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "4.weight", "4.bias", "6.weight",
        "6.bias"},
       {"1.running_mean", "1.running_var", "1.num_batches_tracked", "4.running_mean", "4.running_var",
        "4.num_batches_tracked"}},
      {NDL_NORM_BATCH, 0.5f,
       {"Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"},
       {"0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias", "8.weight",
        "8.bias"},
       {"1.running_mean", "1.running_var", "1.num_batches_tracked", "5.running_mean", "5.running_var",
        "5.num_batches_tracked"}},
      {NDL_NORM_LAYER, 0.0f,
       {"Linear", "LayerNorm1d", "ReLU", "Linear", "LayerNorm1d", "ReLU", "Linear"},
       {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "4.weight", "4.bias", "6.weight",
        "6.bias"},
       {}},
      {NDL_NORM_NONE, 0.0f,
       {"Linear", "ReLU", "Linear", "ReLU", "Linear"},
       {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"},
       {}},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE("norm " + std::to_string((int)c.norm) + " drop " + std::to_string(c.drop));
    fresh(1);
    model = ndl_nn_fc_net(&env, 50, 2, hidden, 10, c.norm, c.drop, 0.05);
    ASSERT_NE(model, nullptr);
    ASSERT_EQ(model->nchildren, (int)c.kinds.size());
    for (int i = 0; i < model->nchildren; i++) EXPECT_STREQ(model->children[i]->vt->kind, c.kinds[(size_t)i].c_str()) << i;
    ASSERT_EQ(env.params.count, (int)c.params.size());
    for (int i = 0; i < env.params.count; i++) EXPECT_EQ(env.params.names[i], c.params[(size_t)i]) << i;
    ASSERT_EQ(env.buffers.count, (int)c.buffers.size());
    for (int i = 0; i < env.buffers.count; i++) EXPECT_EQ(env.buffers.names[i], c.buffers[(size_t)i]) << i;
  }
  // shapes: needle's Linear weight (in, out), bias (1, out)
  EXPECT_EQ(env.params.tensors[0]->shape[0], 50);
  EXPECT_EQ(env.params.tensors[0]->shape[1], 100);
  EXPECT_EQ(env.params.tensors[5]->shape[1], 10);
}

// ---- fused vs composed ----

struct PassResult {
  std::vector<float> out, dx, dparams;
};

class FusedVsComposed : public NNGrad {
 protected:
  // One forward + backward of sum(model(x) * w) on the given path, from the same input values.
  PassResult pass(int fused, const std::vector<float> &xv, std::initializer_list<int64_t> shape) {
    env.fused = fused;
    ndl_params_zero_grad(&env.params);
    PassResult r;
    ndl_tensor *x = make_tensor(ctx, shape, xv);
    ndl_tensor_set_requires_grad(x, 1);
    ndl_tensor *y = ndl_module_forward(model, ctx, x);
    EXPECT_NE(y, nullptr) << ndl_last_error();
    if (!y) return r;
    if (fused) EXPECT_EQ(y->op, fused_op) << "the fused path builds the fused node";
    else EXPECT_NE(y->op, fused_op) << "the composed path does not";
    ndl_tensor *w = uniform(ctx, {ndl_tensor_numel(y)}, -1, 1, 99);
    ndl_tensor *loss = ndl_sum(ctx, ndl_mul(ctx, ndl_reshape(ctx, y, 1, w->shape), w), nullptr, 0);
    EXPECT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK) << ndl_last_error();
    r.out = tensor_values(y);
    r.dx = tensor_values(x->grad);
    r.dparams.assign(env.params.grad, env.params.grad + env.params.numel);
    ndl_ctx_reset(ctx);
    return r;
  }
  void expect_same(std::initializer_list<int64_t> shape, uint32_t seed) {
    ndl_tensor *xt = uniform(ctx, shape, -2, 2, seed);
    std::vector<float> xv = tensor_values(xt);
    ndl_ctx_reset(ctx);
    PassResult f = pass(1, xv, shape), c = pass(0, xv, shape);
    EXPECT_VALUES_NEAR(c.out, f.out, 1e-5, 1e-5) << "output";
    EXPECT_VALUES_NEAR(c.dx, f.dx, 1e-5, 1e-5) << "input gradient";
    EXPECT_VALUES_NEAR(c.dparams, f.dparams, 1e-5, 1e-5) << "parameter gradients";
    double norm = 0;
    for (float g : c.dparams) norm += std::fabs(g);
    EXPECT_GT(norm, 1e-3) << "parameter gradients are not all zero";
  }
  ndl_op fused_op = NDL_OP_NONE;
};

TEST_F(FusedVsComposed, Linear) {
  fused_op = NDL_OP_LINEAR;
  model = ndl_nn_linear(&env, "0", 5, 4, 1);
  expect_same({7, 5}, 30);
  fresh(1);
  model = ndl_nn_linear(&env, "0", 5, 4, 0);
  expect_same({7, 5}, 31);
}

TEST_F(FusedVsComposed, BatchNorm1dTrain) {
  fused_op = NDL_OP_BATCHNORM;
  model = ndl_nn_batchnorm1d(&env, "bn", 5, 1e-5f, 0.1f);
  randomize_params(0.5, 1.5, 32);
  expect_same({8, 5}, 33);
}

TEST_F(FusedVsComposed, LayerNorm1d) {
  fused_op = NDL_OP_LAYERNORM;
  model = ndl_nn_layernorm1d(&env, "ln", 5, 1e-5f);
  randomize_params(0.5, 1.5, 34);
  expect_same({6, 5}, 35);
}

TEST_F(FusedVsComposed, SoftmaxCrossEntropy) {
  std::vector<int32_t> y = labels(6, 5);
  std::vector<float> zv = tensor_values(uniform(ctx, {6, 5}, -3, 3, 36));
  for (int64_t denom : {0, 10}) {
    std::vector<float> loss[2], dz[2];
    for (int fused : kFusedModes) {
      ndl_tensor *z = make_tensor(ctx, {6, 5}, zv);
      ndl_tensor_set_requires_grad(z, 1);
      ndl_tensor *l = fused ? ndl_nn_softmax_loss(ctx, z, y.data(), denom)
                            : ndl_nn_softmax_loss_composed(ctx, z, y.data(), denom);
      ASSERT_NE(l, nullptr) << ndl_last_error();
      EXPECT_EQ(l->op == NDL_OP_SOFTMAX_CE, fused == 1);
      ASSERT_EQ(ndl_graph_backward(ctx, l, nullptr), NDL_OK);
      loss[fused] = tensor_values(l);
      dz[fused] = tensor_values(z->grad);
      ndl_ctx_reset(ctx);
    }
    EXPECT_VALUES_NEAR(loss[0], loss[1], 1e-5, 1e-5) << "denom " << denom;
    EXPECT_VALUES_NEAR(dz[0], dz[1], 1e-5, 1e-5) << "denom " << denom;
  }
}

TEST_F(FusedVsComposed, BatchNormRunningStatisticsAfterSeveralSteps) {
  model = ndl_nn_batchnorm1d(&env, "bn", 4, 1e-5f, 0.1f);
  randomize_params(0.5, 1.5, 37);
  std::vector<float> stats[2];
  for (int fused : kFusedModes) {
    env.fused = fused;
    std::fill(env.buffers.data, env.buffers.data + env.buffers.numel, 0.0f);
    float *rv = ndl_tensor_ptr(ndl_nn_batchnorm_running_var(model));
    for (int j = 0; j < 4; j++) rv[j] = 1.0f;
    for (int step = 0; step < 4; step++) {
      ndl_tensor *x = uniform(ctx, {6, 4}, -1 - step, 2 + step, 40 + (uint32_t)step);
      ndl_tensor *y = ndl_module_forward(model, ctx, x);
      ASSERT_NE(y, nullptr) << ndl_last_error();
      ASSERT_EQ(ndl_graph_backward(ctx, ndl_sum(ctx, y, nullptr, 0), nullptr), NDL_OK);
      ndl_ctx_reset(ctx);
    }
    stats[fused].assign(env.buffers.data, env.buffers.data + env.buffers.numel);
  }
  EXPECT_VALUES_NEAR(stats[0], stats[1], 1e-5, 1e-5);
  // reference: r = 0.9 r + 0.1 stat with the batch mean and biased variance, in double
  std::vector<double> rm(4, 0.0), rv(4, 1.0);
  for (int step = 0; step < 4; step++) {
    std::vector<float> x = tensor_values(uniform(ctx, {6, 4}, -1 - step, 2 + step, 40 + (uint32_t)step));
    for (int j = 0; j < 4; j++) {
      double m = 0, v = 0;
      for (int i = 0; i < 6; i++) m += x[(size_t)(i * 4 + j)] / 6.0;
      for (int i = 0; i < 6; i++) v += (x[(size_t)(i * 4 + j)] - m) * (x[(size_t)(i * 4 + j)] - m) / 6.0;
      rm[(size_t)j] = 0.9 * rm[(size_t)j] + 0.1 * m;
      rv[(size_t)j] = 0.9 * rv[(size_t)j] + 0.1 * v;
    }
  }
  std::vector<float> ref(rm.begin(), rm.end());
  ref.insert(ref.end(), rv.begin(), rv.end());
  ref.push_back(4.0f);  // num_batches_tracked
  EXPECT_VALUES_NEAR(ref, stats[1], 1e-5, 1e-5);
}

// ---- train / eval ----

void collect(ndl_module *m, std::vector<ndl_module *> *all) {
  all->push_back(m);
  for (int i = 0; i < m->nchildren; i++) collect(m->children[i], all);
}

TEST_F(NNGrad, TrainEvalRecursesIntoEveryDescendant) {
  model = ndl_nn_mlp_resnet(&env, 5, 8, 2, 3, NDL_NORM_BATCH, 0.5f);
  std::vector<ndl_module *> all;
  collect(model, &all);
  int dropouts = 0;
  for (ndl_module *m : all) dropouts += std::string(m->vt->kind) == "Dropout";
  ASSERT_EQ(dropouts, 2);
  ASSERT_GT(all.size(), 20u);
  for (ndl_module *m : all) EXPECT_EQ(m->training, 1) << m->vt->kind;
  ndl_module_train(model, 0);
  for (ndl_module *m : all) EXPECT_EQ(m->training, 0) << m->vt->kind;
  ndl_module_train(model, 1);
  for (ndl_module *m : all) EXPECT_EQ(m->training, 1) << m->vt->kind;
}

TEST_F(NNGrad, DropoutInsideEvalModelIsTheIdentity) {
  model = ndl_nn_mlp_resnet(&env, 5, 8, 2, 3, NDL_NORM_LAYER, 0.5f);
  ndl_tensor *x = uniform(ctx, {4, 5}, -1, 1, 50);
  auto run = [&](uint32_t seed) {
    ndl_rng_seed(&rng, seed);
    return tensor_values(ndl_module_forward(model, ctx, x));
  };
  EXPECT_FALSE(values_near(run(1), run(2), 1e-6, 0)) << "train mode: the masks differ";
  ndl_module_train(model, 0);
  std::vector<float> a = run(1), b = run(2);
  EXPECT_VALUES_NEAR(a, b, 0, 0);
  ndl_rng_seed(&rng, 3);
  ndl_rng before = rng;
  run(3);
  EXPECT_EQ(std::memcmp(&before, &rng, sizeof rng), 0) << "eval mode draws nothing";
}

// ---- create_graph through fused ops ----

TEST_F(NNGrad, CreateGraphThroughFusedOpsIsRefused) {
  std::vector<int32_t> y = labels(4, 3);
  for (int op = 0; op < 4; op++) {
    SCOPED_TRACE(op);
    for (int create_graph : {1, 0}) {
      ndl_tensor *x = uniform(ctx, {4, 3}, -1, 1, 60);
      ndl_tensor *w2 = uniform(ctx, {3, 3}, -1, 1, 61), *w = uniform(ctx, {3}, 0.5, 1.5, 62);
      ndl_tensor *b = uniform(ctx, {3}, -1, 1, 63), *b2 = uniform(ctx, {1, 3}, -1, 1, 64);
      for (ndl_tensor *t : {x, w2, w, b, b2}) ndl_tensor_set_requires_grad(t, 1);
      ndl_tensor *out = op == 0   ? ndl_linear(ctx, x, w2, b2)
                        : op == 1 ? ndl_batchnorm_train(ctx, x, w, b, 1e-5f, 0, nullptr, nullptr, nullptr, nullptr)
                        : op == 2 ? ndl_layernorm(ctx, x, w, b, 1e-5f)
                                  : ndl_softmax_cross_entropy(ctx, x, y.data(), 0);
      ASSERT_NE(out, nullptr) << ndl_last_error();
      ndl_tensor *loss = ndl_sum(ctx, ndl_mul(ctx, out, out), nullptr, 0);
      ndl_tensor *g = nullptr;
      ndl_status st = ndl_graph_grad(ctx, loss, nullptr, 1, &x, &g, create_graph);
      if (create_graph) {
        EXPECT_EQ(st, NDL_ERR_ARG);
        EXPECT_EQ(ctx->status, NDL_ERR_ARG);
        EXPECT_EQ(g, nullptr);
        EXPECT_NE(std::string(ndl_last_error()).find("differentiable once"), std::string::npos) << ndl_last_error();
      } else {
        EXPECT_EQ(st, NDL_OK) << ndl_last_error();
        ASSERT_NE(g, nullptr);
        EXPECT_TRUE(ndl_shape_equal(g, x));
      }
      ndl_ctx_reset(ctx);
    }
  }
}

TEST_F(NNGrad, CreateGraphThroughLinearModuleNeedsTheComposedPath) {
  model = ndl_nn_linear(&env, "0", 3, 2, 1);
  for (int fused : kFusedModes) {
    env.fused = fused;
    ndl_tensor *x = uniform(ctx, {4, 3}, -1, 1, 65);
    ndl_tensor_set_requires_grad(x, 1);
    ndl_tensor *y = ndl_module_forward(model, ctx, x);
    ndl_tensor *loss = ndl_sum(ctx, ndl_mul(ctx, y, y), nullptr, 0);
    ndl_tensor *w = env.params.tensors[0], *g = nullptr;
    ndl_status st = ndl_graph_grad(ctx, loss, nullptr, 1, &w, &g, 1);
    if (fused) {
      EXPECT_EQ(st, NDL_ERR_ARG);
    } else {
      // d/dW sum(dL/dW) through the composed graph: a second backward succeeds
      ASSERT_EQ(st, NDL_OK) << ndl_last_error();
      ASSERT_NE(g, nullptr);
      EXPECT_TRUE(g->requires_grad);
      ndl_params_zero_grad(&env.params);
      EXPECT_EQ(ndl_graph_backward(ctx, ndl_sum(ctx, g, nullptr, 0), nullptr), NDL_OK) << ndl_last_error();
    }
    ndl_ctx_reset(ctx);
  }
}

}  // namespace
