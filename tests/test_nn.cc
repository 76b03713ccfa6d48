// test_nn.cc: needle hw2's published values for initializers, modules and models (rtol=atol=1e-5,
// 1e-4 for init), parameter counts, and fused kernels against the composed reference ops.
#include <cmath>
#include <cstring>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/init.h"
#include "nn/models.h"
#include "nn/module.h"
#include "test_util.h"

class NN : public CtxTest {
 protected:
  void SetUp() override {
    CtxTest::SetUp();
    ndl_nn_env_init(&env, test_rng());
  }
  void TearDown() override {
    ndl_module_free(model);
    ndl_nn_env_free(&env);
    CtxTest::TearDown();
  }
  void seed(uint32_t s) { ndl_rng_seed(test_rng(), s); }
  std::vector<float> row(const ndl_tensor *t, int r) {
    std::vector<float> v = tensor_values(t);
    int64_t cols = t->shape[t->ndim - 1];
    return std::vector<float>(v.begin() + r * cols, v.begin() + (r + 1) * cols);
  }
  std::vector<int32_t> labels_of(const ndl_tensor *t) {
    std::vector<float> v = tensor_values(t);
    return std::vector<int32_t>(v.begin(), v.end());
  }
  ndl_nn_env env;
  ndl_module *model = nullptr;
};

static std::vector<float> init_row0(void (*fn)(ndl_rng *, float *, int64_t, int64_t)) {
  ndl_rng_seed(test_rng(), 42);
  std::vector<float> w(15);
  fn(test_rng(), w.data(), 3, 5);
  return std::vector<float>(w.begin(), w.begin() + 5);
}

TEST(Init, KaimingAndXavierMatchNeedle) {
  EXPECT_VALUES_NEAR(std::vector<float>({-0.35485414f, 1.2748126f, 0.65617794f, 0.27904832f, -0.9729262f}),
                     init_row0(ndl_init_kaiming_uniform), 1e-4, 1e-4);
  EXPECT_VALUES_NEAR(std::vector<float>({0.4055654f, -0.11289233f, 0.5288355f, 1.2435486f, -0.19118543f}),
                     init_row0(ndl_init_kaiming_normal), 1e-4, 1e-4);
  std::vector<float> w(15);
  ndl_rng_seed(test_rng(), 42);
  ndl_init_xavier_uniform(test_rng(), w.data(), 3, 5, 1.5);
  EXPECT_VALUES_NEAR(std::vector<float>({-0.32595432f, 1.1709901f, 0.60273796f, 0.25632226f, -0.8936898f}),
                     std::vector<float>(w.begin(), w.begin() + 5), 1e-4, 1e-4);
  ndl_rng_seed(test_rng(), 42);
  ndl_init_xavier_normal(test_rng(), w.data(), 3, 5, 0.33);
  EXPECT_VALUES_NEAR(std::vector<float>({0.08195783f, -0.022813609f, 0.10686861f, 0.25129992f, -0.038635306f}),
                     std::vector<float>(w.begin(), w.begin() + 5), 1e-4, 1e-4);
}

TEST(Init, ConstantsAndOneHot) {
  float v[6];
  ndl_init_ones(v, 6);
  EXPECT_EQ(v[5], 1.0f);
  ndl_init_constant(v, 6, 2.5f);
  EXPECT_EQ(v[3], 2.5f);
  ndl_init_zeros(v, 6);
  EXPECT_EQ(v[0], 0.0f);
  int32_t lab[2] = {2, 0};
  ndl_init_one_hot(v, 2, 3, lab);
  EXPECT_VALUES_NEAR(std::vector<float>({0, 0, 1, 1, 0, 0}), std::vector<float>(v, v + 6), 0, 0);
}

TEST_F(NN, LinearInitMatchesNeedle) {
  seed(1337);
  model = ndl_nn_linear(&env, "0", 7, 4, 1);
  ASSERT_NE(model, nullptr);
  EXPECT_VALUES_NEAR(std::vector<float>({-0.44064468f, -0.63199449f, -0.41082984f, -0.075330488f}),
                     row(env.params.tensors[0], 0), 1e-5, 1e-5);
  EXPECT_TENSOR_NEAR(std::vector<float>({0.077647f, 0.814139f, -0.770975f, 1.120297f}),
                     env.params.tensors[1], 1e-5, 1e-5);
  EXPECT_STREQ(env.params.names[0], "0.weight");
  EXPECT_STREQ(env.params.names[1], "0.bias");
}

TEST_F(NN, LinearForwardMatchesNeedle) {
  for (int fused = 0; fused < 2; fused++) {
    env.fused = fused;
    seed(199);
    ndl_module_free(model);
    model = ndl_nn_linear(&env, "", 10, 5, 1);
    ndl_tensor *bias = env.params.tensors[env.params.count - 1];
    std::vector<float> b = tensor_values(get_tensor(ctx, {5}));
    std::memcpy(ndl_tensor_ptr(bias), b.data(), 5 * sizeof(float));
    ndl_tensor *y = ndl_module_forward(model, ctx, get_tensor(ctx, {1, 10}));
    EXPECT_TENSOR_NEAR(std::vector<float>({3.849948f, 9.50499f, 2.38029f, 5.572587f, 5.668391f}), y, 1e-5, 1e-5)
        << "fused " << fused;
  }
}

TEST_F(NN, SequentialForwardMatchesNeedle) {
  seed(42);
  ndl_module *m[3] = {ndl_nn_linear(&env, "0", 5, 8, 1), ndl_nn_relu(&env), ndl_nn_linear(&env, "2", 8, 5, 1)};
  model = ndl_nn_sequential(&env, 3, m);
  ndl_tensor *y = ndl_module_forward(model, ctx, get_tensor(ctx, {3, 5}));
  EXPECT_VALUES_NEAR(std::vector<float>({3.296263f, 0.057031f, 2.97568f, -4.618432f, -0.902491f}), row(y, 0),
                     1e-5, 1e-5);
}

TEST_F(NN, SoftmaxLossMatchesNeedle) {
  ndl_tensor *z = get_tensor(ctx, {5, 10});
  std::vector<int32_t> y = labels_of(get_int_tensor(ctx, {5}));
  EXPECT_TENSOR_NEAR(std::vector<float>({4.041218f}), ndl_nn_softmax_loss(ctx, z, y.data(), 0), 1e-5, 1e-5);
  EXPECT_TENSOR_NEAR(std::vector<float>({4.041218f}), ndl_nn_softmax_loss_composed(ctx, z, y.data(), 0), 1e-5,
                     1e-5);
}

TEST_F(NN, LayerNormMatchesNeedle) {
  for (int fused = 0; fused < 2; fused++) {
    env.fused = fused;
    ndl_module_free(model);
    model = ndl_nn_layernorm1d(&env, "ln", 3, 1e-5f);
    ndl_tensor *y = ndl_module_forward(model, ctx, get_tensor(ctx, {3, 3}));
    EXPECT_VALUES_NEAR(std::vector<float>({-0.06525002f, -1.1908097f, 1.2560595f}), row(y, 0), 1e-5, 1e-5)
        << "fused " << fused;
  }
}

TEST_F(NN, BatchNormForwardMatchesNeedle) {
  for (int fused = 0; fused < 2; fused++) {
    env.fused = fused;
    ndl_module_free(model);
    model = ndl_nn_batchnorm1d(&env, "bn", 4, 1e-5f, 0.1f);
    ndl_tensor *y = ndl_module_forward(model, ctx, get_tensor(ctx, {4, 4}));
    EXPECT_VALUES_NEAR(std::vector<float>({0.78712696f, -0.31676728f, -0.64885163f, 0.20828949f}), row(y, 0),
                       1e-5, 1e-5)
        << "fused " << fused;
  }
}

TEST_F(NN, BatchNormRunningStatsMatchNeedle) {
  for (int fused = 0; fused < 2; fused++) {
    env.fused = fused;
    ndl_module_free(model);
    model = ndl_nn_batchnorm1d(&env, "bn", 3, 1e-5f, 0.1f);
    for (int i = 0; i < 10; i++) {
      ASSERT_NE(ndl_module_forward(model, ctx, get_tensor(ctx, {4, 3}, i)), nullptr);
      ndl_ctx_reset(ctx);
    }
    EXPECT_TENSOR_NEAR(std::vector<float>({2.020656f, 1.69489f, 1.498846f}), ndl_nn_batchnorm_running_mean(model),
                       1e-5, 1e-5);
    EXPECT_TENSOR_NEAR(std::vector<float>({1.412775f, 1.386191f, 1.096604f}), ndl_nn_batchnorm_running_var(model),
                       1e-5, 1e-5);
    // eval mode uses the running statistics
    ndl_module_train(model, 0);
    ndl_tensor *x = get_tensor(ctx, {2, 3});
    ndl_tensor *y = ndl_module_forward(model, ctx, x);
    std::vector<float> xv = tensor_values(x), rm = tensor_values(ndl_nn_batchnorm_running_mean(model)),
                       rv = tensor_values(ndl_nn_batchnorm_running_var(model)), ref;
    for (int i = 0; i < 6; i++) ref.push_back((xv[i] - rm[i % 3]) / std::sqrt(rv[i % 3] + 1e-5f));
    EXPECT_TENSOR_NEAR(ref, y, 1e-5, 1e-5);
    ndl_ctx_reset(ctx);
  }
}

TEST_F(NN, DropoutMatchesNeedle) {
  seed(3);
  model = ndl_nn_dropout(&env, 0.45f);
  ndl_tensor *x = get_tensor(ctx, {2, 3});  // reseeds
  ndl_tensor *y = ndl_module_forward(model, ctx, x);
  EXPECT_TENSOR_NEAR(std::vector<float>({6.818182f, 0, 0, 0.18181819f, 0, 6.090909f}), y, 1e-5, 1e-5);
  ndl_module_train(model, 0);
  EXPECT_EQ(ndl_module_forward(model, ctx, x), x) << "eval-mode dropout is the identity";
}

TEST_F(NN, DropoutSliceOfGlobalBatchEqualsWholeBatch) {
  model = ndl_nn_dropout(&env, 0.3f);
  ndl_tensor *x = get_tensor(ctx, {7, 5});
  seed(11);
  std::vector<float> whole = tensor_values(ndl_module_forward(model, ctx, x));
  env.global_rows = 7;
  std::vector<float> joined;
  for (int r = 0; r < 3; r++) {  // rows 0-2, 3-4, 5-6 of the global batch
    int64_t start[2] = {r == 0 ? 0 : (r == 1 ? 3 : 5), 0}, stop[2] = {r == 0 ? 3 : (r == 1 ? 5 : 7), 5};
    env.row_offset = start[0];
    seed(11);
    ndl_tensor *part = ndl_compact(ctx, ndl_slice(ctx, x, start, stop, nullptr));
    std::vector<float> v = tensor_values(ndl_module_forward(model, ctx, part));
    joined.insert(joined.end(), v.begin(), v.end());
  }
  EXPECT_VALUES_NEAR(whole, joined, 0, 0);
}

TEST_F(NN, ResidualMatchesNeedle) {
  seed(42);
  ndl_module *m[3] = {ndl_nn_linear(&env, "0", 5, 5, 1), ndl_nn_relu(&env), ndl_nn_linear(&env, "2", 5, 5, 1)};
  model = ndl_nn_residual(&env, ndl_nn_sequential(&env, 3, m));
  ndl_tensor *y = ndl_module_forward(model, ctx, get_tensor(ctx, {5, 5}));
  EXPECT_VALUES_NEAR(std::vector<float>({0.4660964f, 3.8619597f, -3.637068f, 3.7489638f, 2.4931884f}), row(y, 0),
                     1e-5, 1e-5);
}

TEST_F(NN, ParameterCountsMatchNeedle) {
  seed(0);
  struct {
    ndl_module *m;
    int64_t count;
  } cases[] = {
      {ndl_nn_residual_block(&env, "a", 15, 2, NDL_NORM_BATCH, 0.1f), 111},
      {ndl_nn_residual_block(&env, "b", 784, 100, NDL_NORM_LAYER, 0.1f), 159452},
      {ndl_nn_mlp_resnet(&env, 150, 100, 5, 10, NDL_NORM_LAYER, 0.1f), 68360},
      {ndl_nn_mlp_resnet(&env, 10, 100, 1, 100, NDL_NORM_BATCH, 0.1f), 21650},
  };
  for (auto &c : cases) {
    EXPECT_EQ(ndl_module_num_params(c.m), c.count);
    ndl_module_free(c.m);
  }
}

TEST_F(NN, MLPResNetStateDictNames) {
  model = ndl_nn_mlp_resnet(&env, 784, 100, 3, 10, NDL_NORM_BATCH, 0.1f);
  ASSERT_NE(model, nullptr);
  const char *expect[] = {"0.weight", "0.bias", "2.0.fn.0.weight", "2.0.fn.0.bias", "2.0.fn.1.weight",
                          "2.0.fn.1.bias", "2.0.fn.4.weight", "2.0.fn.4.bias", "2.0.fn.5.weight"};
  for (int i = 0; i < 9; i++) EXPECT_STREQ(env.params.names[i], expect[i]);
  EXPECT_STREQ(env.params.names[env.params.count - 1], "5.bias");
  EXPECT_GE(ndl_params_find(&env.buffers, "4.0.fn.5.running_var"), 0);
  EXPECT_GE(ndl_params_find(&env.buffers, "2.0.fn.1.num_batches_tracked"), 0);
}

TEST_F(NN, ResidualBlockTrainMatchesNeedle) {
  for (int fused = 0; fused < 2; fused++) {
    env.fused = fused;
    seed(2);
    std::vector<float> xv(15);
    ndl_rng_fill_randn(test_rng(), xv.data(), 15);
    ndl_module_free(model);
    model = ndl_nn_residual_block(&env, "", 15, 10, NDL_NORM_LAYER, 0.5f);
    ndl_tensor *y = ndl_module_forward(model, ctx, make_tensor(ctx, {1, 15}, xv));
    EXPECT_TENSOR_NEAR(std::vector<float>({0, 1.358399f, 0, 1.384224f, 0, 0, 0.255451f, 0.077662f, 0, 0.939582f,
                                           0.525591f, 1.99213f, 0, 0, 1.012827f}),
                       y, 1e-5, 1e-5)
        << "fused " << fused;
  }
}

TEST_F(NN, MLPResNetTrainMatchesNeedle) {
  for (int fused = 0; fused < 2; fused++) {
    env.fused = fused;
    seed(4);
    std::vector<float> xv(20);
    ndl_rng_fill_randn(test_rng(), xv.data(), 20);
    ndl_module_free(model);
    model = ndl_nn_mlp_resnet(&env, 10, 5, 2, 5, NDL_NORM_LAYER, 0.5f);
    ndl_tensor *y = ndl_module_forward(model, ctx, make_tensor(ctx, {2, 10}, xv));
    EXPECT_TENSOR_NEAR(std::vector<float>({3.046162f, 1.44972f, -1.921363f, 0.021816f, -0.433953f, 3.489114f,
                                           1.820994f, -2.111306f, 0.226388f, -1.029428f}),
                       y, 1e-5, 1e-5)
        << "fused " << fused;
  }
}

TEST_F(NN, ShapeErrorsNameTheModule) {
  model = ndl_nn_batchnorm1d(&env, "bn", 4, 1e-5f, 0.1f);
  EXPECT_EQ(ndl_module_forward(model, ctx, get_tensor(ctx, {2, 3})), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_NE(std::string(ndl_last_error()).find("BatchNorm1d(4): input [2,3]"), std::string::npos)
      << ndl_last_error();
  ndl_ctx_reset(ctx);
  std::vector<int32_t> bad = {0, 12};
  EXPECT_EQ(ndl_nn_softmax_loss(ctx, get_tensor(ctx, {2, 10}), bad.data(), 0), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_ARG);
}
