// test_train_needle.cc: needle's learn_model_1d(64, 16, model, opt) for every optimizer setting the
// course asserts (1e-5), the "optimizer never changes a gradient" check on every step, fused vs
// composed training equivalence, and live allocations across 1,000 MLPResNet optimizer steps.
#include <cstring>
#include <functional>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/models.h"
#include "nn/module.h"
#include "optim/optim.h"
#include "test_util.h"

typedef std::function<ndl_optim *(ndl_params *)> optim_factory;

// One needle epoch over X = get_tensor(1024,64), y = get_int_tensor(1024, high=16) in 32 batches of 32.
static float learn_model_1d(ndl_ctx *ctx, bool with_bn, const optim_factory &make_opt, int fused = 1) {
  ndl_nn_env env;
  ndl_nn_env_init(&env, test_rng());
  env.fused = fused;
  ndl_rng_seed(test_rng(), 42);
  std::vector<ndl_module *> layers = {ndl_nn_linear(&env, "0", 64, 32, 1), ndl_nn_relu(&env)};
  if (with_bn) layers.push_back(ndl_nn_batchnorm1d(&env, "2", 32, 1e-5f, 0.1f));
  layers.push_back(ndl_nn_linear(&env, "3", 32, 16, 1));
  ndl_module *model = ndl_nn_sequential(&env, (int)layers.size(), layers.data());
  std::vector<float> X = tensor_values(get_tensor(ctx, {1024, 64}));
  std::vector<float> yf = tensor_values(get_int_tensor(ctx, {1024}, 0, 16));
  std::vector<int32_t> y(yf.begin(), yf.end());
  ndl_ctx_reset(ctx);
  ndl_optim *opt = make_opt(&env.params);
  EXPECT_NE(opt, nullptr) << ndl_last_error();
  float last = 0.f;
  ndl_tensor *p0 = env.params.tensors[0];
  std::vector<float> before(ndl_tensor_numel(p0));
  for (int b = 0; b < 32; b++) {
    ndl_optim_zero_grad(opt);
    ndl_tensor *xb = make_tensor(ctx, {32, 64}, std::vector<float>(X.begin() + b * 32 * 64, X.begin() + (b + 1) * 32 * 64));
    ndl_tensor *logits = ndl_module_forward(model, ctx, xb);
    ndl_tensor *loss = fused ? ndl_nn_softmax_loss(ctx, logits, y.data() + b * 32, 0)
                             : ndl_nn_softmax_loss_composed(ctx, logits, y.data() + b * 32, 0);
    EXPECT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK) << ndl_last_error();
    std::memcpy(before.data(), ndl_tensor_ptr(p0->grad), before.size() * sizeof(float));
    ndl_optim_step(opt);
    EXPECT_EQ(0, std::memcmp(before.data(), ndl_tensor_ptr(p0->grad), before.size() * sizeof(float)))
        << "the optimizer changed a gradient at batch " << b;
    last = tensor_values(loss)[0];
    ndl_ctx_reset(ctx);
  }
  ndl_optim_free(opt);
  ndl_module_free(model);
  ndl_nn_env_free(&env);
  return last;
}

class Learn1d : public CtxTest {};

TEST_F(Learn1d, SgdMatchesNeedle) {
  EXPECT_NEAR(learn_model_1d(ctx, false, [](ndl_params *p) { return ndl_optim_sgd_new(p, 0.01, 0, 0, 0); }),
              3.207009, 1e-5 + 1e-5 * 3.2);
}
TEST_F(Learn1d, SgdMomentumMatchesNeedle) {
  EXPECT_NEAR(learn_model_1d(ctx, false, [](ndl_params *p) { return ndl_optim_sgd_new(p, 0.01, 0.9, 0, 0); }),
              3.311805, 1e-5 + 1e-5 * 3.3);
}
TEST_F(Learn1d, SgdWeightDecayMatchesNeedle) {
  EXPECT_NEAR(learn_model_1d(ctx, false, [](ndl_params *p) { return ndl_optim_sgd_new(p, 0.01, 0, 0.01, 0); }),
              3.202637, 1e-5 + 1e-5 * 3.2);
}
TEST_F(Learn1d, SgdMomentumWeightDecayMatchesNeedle) {
  EXPECT_NEAR(learn_model_1d(ctx, false, [](ndl_params *p) { return ndl_optim_sgd_new(p, 0.01, 0.9, 0.01, 0); }),
              3.306993, 1e-5 + 1e-5 * 3.3);
}
TEST_F(Learn1d, AdamMatchesNeedle) {
  EXPECT_NEAR(learn_model_1d(ctx, false,
                             [](ndl_params *p) { return ndl_optim_adam_new(p, 0.001, 0.9, 0.999, 1e-8, 0); }),
              3.703999, 1e-5 + 1e-5 * 3.7);
}
TEST_F(Learn1d, AdamWeightDecayMatchesNeedle) {
  EXPECT_NEAR(learn_model_1d(ctx, false,
                             [](ndl_params *p) { return ndl_optim_adam_new(p, 0.001, 0.9, 0.999, 1e-8, 0.01); }),
              3.705134, 1e-5 + 1e-5 * 3.7);
}
TEST_F(Learn1d, AdamWithBatchNormMatchesNeedle) {
  EXPECT_NEAR(learn_model_1d(ctx, true,
                             [](ndl_params *p) { return ndl_optim_adam_new(p, 0.001, 0.9, 0.999, 1e-8, 0.001); }),
              3.296256, 1e-5 + 1e-5 * 3.3);
}
TEST_F(Learn1d, ComposedOpsGiveTheSameTraining) {
  auto adam = [](ndl_params *p) { return ndl_optim_adam_new(p, 0.001, 0.9, 0.999, 1e-8, 0.001); };
  EXPECT_NEAR(learn_model_1d(ctx, true, adam, 0), 3.296256, 1e-5 + 1e-5 * 3.3);
}

// Live heap blocks stay constant across 1,000 steps of the default model (smaller input).
TEST_F(Learn1d, LiveAllocationsStayFlatOverThousandSteps) {
  ndl_nn_env env;
  ndl_nn_env_init(&env, test_rng());
  ndl_rng_seed(test_rng(), 0);
  ndl_module *model = ndl_nn_mlp_resnet(&env, 32, 40, 3, 10, NDL_NORM_BATCH, 0.1f);
  ndl_optim *opt = ndl_optim_adam_new(&env.params, 0.001, 0.9, 0.999, 1e-8, 0.001);
  ndl_tensor *x0 = get_tensor(ctx, {50, 32});
  std::vector<float> X = tensor_values(x0);
  std::vector<int32_t> y(50);
  for (int i = 0; i < 50; i++) y[i] = i % 10;
  ndl_ctx_reset(ctx);
  int64_t after_first = -1;
  for (int step = 0; step < 1000; step++) {
    ndl_optim_zero_grad(opt);
    ndl_tensor *x = make_tensor(ctx, {50, 32}, X);
    ndl_tensor *loss = ndl_nn_softmax_loss(ctx, ndl_module_forward(model, ctx, x), y.data(), 0);
    ASSERT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK);
    ndl_optim_step(opt);
    ndl_ctx_reset(ctx);
    if (step == 0) after_first = ndl_alloc_live_count();
    ASSERT_EQ(ndl_alloc_live_count(), after_first) << "live blocks changed at step " << step;
  }
  ndl_optim_free(opt);
  ndl_module_free(model);
  ndl_nn_env_free(&env);
}
