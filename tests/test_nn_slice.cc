// test_nn_slice.cc: modules on an empty local slice (a rank whose share of a short last global batch
// is 0 rows): Dropout still skips the draws of the whole global batch, so the shared RNG stream stays
// where the other ranks' is, and BatchNorm1d without SyncBN leaves its running statistics unchanged
// instead of folding in 0/0 = NaN.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/module.h"
#include "test_util.h"

namespace {

class EmptySlice : public CtxTest {
 protected:
  void SetUp() override {
    CtxTest::SetUp();
    ndl_rng_seed(&rng, 7);
    ndl_nn_env_init(&env, &rng);
  }
  void TearDown() override {
    ndl_module_free(m);
    ndl_nn_env_free(&env);
    CtxTest::TearDown();
  }
  ndl_rng rng;
  ndl_nn_env env;
  ndl_module *m = nullptr;
};

// Dropout on rows [first, first + rows) of a global batch of `global` rows of width 6 (fused or
// composed): the RNG state afterwards.
ndl_rng dropout_rng_after(ndl_ctx *ctx, ndl_nn_env *env, ndl_module *m, int64_t global, int64_t first,
                          int64_t rows, int fused) {
  ndl_rng_seed(env->rng, 7);
  env->fused = fused;
  env->global_rows = global;
  env->row_offset = first;
  std::vector<float> data((size_t)(rows ? rows : 1) * 6, 1.0f);
  int64_t shape[2] = {rows, 6};
  ndl_tensor x;
  ndl_tensor_init_view(&x, data.data(), 2, shape);
  ndl_tensor *y = ndl_module_forward(m, ctx, &x);
  EXPECT_NE(y, nullptr);
  if (y) {
    EXPECT_EQ(y->shape[0], rows);
  }
  ndl_ctx_reset(ctx);
  return *env->rng;
}

TEST_F(EmptySlice, DropoutOnZeroRowsAdvancesTheStreamByTheWholeGlobalBatch) {
  m = ndl_nn_dropout(&env, 0.5f);
  ASSERT_NE(m, nullptr);
  for (int fused : {1, 0}) {
    // the rank holding the one sample of the batch, and the rank holding none (offset 1, 0 rows)
    ndl_rng full = dropout_rng_after(ctx, &env, m, 1, 0, 1, fused);
    ndl_rng empty = dropout_rng_after(ctx, &env, m, 1, 1, 0, fused);
    EXPECT_EQ(memcmp(&full, &empty, sizeof full), 0) << "fused " << fused
                                                     << ": the empty slice left the stream behind";
    ndl_rng a = dropout_rng_after(ctx, &env, m, 5, 0, 3, fused);
    ndl_rng b = dropout_rng_after(ctx, &env, m, 5, 5, 0, fused);
    EXPECT_EQ(memcmp(&a, &b, sizeof a), 0) << "fused " << fused;
  }
}

TEST_F(EmptySlice, BatchNormWithoutSyncLeavesRunningStatsUnchangedOnZeroRows) {
  m = ndl_nn_batchnorm1d(&env, "bn", 4, 1e-5f, 0.1f);
  ASSERT_NE(m, nullptr);
  ndl_tensor *rm = ndl_nn_batchnorm_running_mean(m), *rv = ndl_nn_batchnorm_running_var(m);
  for (int fused : {1, 0}) {
    env.fused = fused;
    env.global_rows = 1;  // a global batch of 1 sample held by another rank
    env.row_offset = 1;
    std::vector<float> mean0 = tensor_values(rm), var0 = tensor_values(rv);
    float dummy[4] = {0};
    int64_t shape[2] = {0, 4};
    ndl_tensor x;
    ndl_tensor_init_view(&x, dummy, 2, shape);
    ndl_tensor *y = ndl_module_forward(m, ctx, &x);
    ASSERT_NE(y, nullptr) << ndl_last_error();
    EXPECT_EQ(y->shape[0], 0);
    ndl_ctx_reset(ctx);
    std::vector<float> mean1 = tensor_values(rm), var1 = tensor_values(rv);
    for (size_t j = 0; j < mean1.size(); j++) {
      EXPECT_FALSE(std::isnan(mean1[j]) || std::isnan(var1[j])) << "fused " << fused << " feature " << j;
      EXPECT_EQ(mean1[j], mean0[j]) << "fused " << fused;
      EXPECT_EQ(var1[j], var0[j]) << "fused " << fused;
    }
  }
}

}  // namespace
