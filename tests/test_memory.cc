// test_memory.cc: steady-state memory of a training loop. A small MLP (parameters in an ndl_params
// store) runs 1,000 forward + backward + SGD steps with a context reset after each; the number of
// live heap blocks after every step must equal the count after the first step, and the loss must
// fall. Run with the default arena chunk and with a tiny one that forces several chunks per step.
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/params.h"
#include "test_util.h"

namespace {

constexpr int kBatch = 32, kIn = 8, kHidden = 16, kClasses = 4, kSteps = 1000;

struct Mlp {
  ndl_params params;
  ndl_tensor *w1, *b1, *w2, *b2;
};

void mlp_init(Mlp *m, ndl_rng *rng) {
  ndl_params_init(&m->params, 1);
  int64_t s_w1[2] = {kIn, kHidden}, s_b1[2] = {1, kHidden}, s_w2[2] = {kHidden, kClasses},
          s_b2[2] = {1, kClasses};
  m->w1 = ndl_params_add(&m->params, "W1", 2, s_w1);
  m->b1 = ndl_params_add(&m->params, "b1", 2, s_b1);
  m->w2 = ndl_params_add(&m->params, "W2", 2, s_w2);
  m->b2 = ndl_params_add(&m->params, "b2", 2, s_b2);
  // views were re-pointed as the store grew; fill the flat buffer through them
  for (ndl_tensor *t : {m->w1, m->w2}) {
    float *p = ndl_tensor_ptr(t);
    double scale = 1.0 / std::sqrt((double)t->shape[0]);
    for (int64_t i = 0; i < ndl_tensor_numel(t); i++) p[i] = (float)(scale * ndl_rng_randn(rng));
  }
}

// Mean over the batch of logsumexp(logits) - logits[y], with the picked logit taken by a one-hot mask.
ndl_tensor *mlp_loss(ndl_ctx *ctx, Mlp *m, const std::vector<float> &x, const std::vector<float> &onehot) {
  int64_t s_x[2] = {kBatch, kIn}, s_h[2] = {kBatch, kHidden}, s_o[2] = {kBatch, kClasses};
  ndl_tensor *xt = ndl_tensor_from(ctx, 2, s_x, x.data());
  ndl_tensor *mask = ndl_tensor_from(ctx, 2, s_o, onehot.data());
  ndl_tensor *h = ndl_relu(ctx, ndl_add(ctx, ndl_matmul(ctx, xt, m->w1), ndl_broadcast_to(ctx, m->b1, 2, s_h)));
  ndl_tensor *logits = ndl_add(ctx, ndl_matmul(ctx, h, m->w2), ndl_broadcast_to(ctx, m->b2, 2, s_o));
  int axis = 1;
  ndl_tensor *picked = ndl_sum(ctx, ndl_mul(ctx, logits, mask), &axis, 1);
  ndl_tensor *per_sample = ndl_sub(ctx, ndl_logsumexp(ctx, logits, &axis, 1), picked);
  return ndl_div_scalar(ctx, ndl_sum(ctx, per_sample, nullptr, 0), (float)kBatch);
}

class Memory : public ::testing::TestWithParam<size_t> {};

TEST_P(Memory, TrainingLoopHasConstantLiveBlocks) {
  int64_t live_before = ndl_alloc_live_count();
  ndl_rng rng;
  ndl_rng_seed(&rng, 7);
  std::vector<float> x((size_t)kBatch * kIn), onehot((size_t)kBatch * kClasses, 0.f);
  for (float &e : x) e = (float)ndl_rng_randn(&rng);
  for (int i = 0; i < kBatch; i++) onehot[(size_t)(i * kClasses + ndl_rng_randint(&rng, 0, kClasses))] = 1.f;
  Mlp m;
  mlp_init(&m, &rng);
  ASSERT_TRUE(m.w1 && m.b1 && m.w2 && m.b2);
  ndl_ctx *ctx = ndl_ctx_new();
  ASSERT_NE(ctx, nullptr);
  if (GetParam()) ctx->arena.min_chunk = GetParam();  // before the first allocation

  const float lr = 0.2f;
  float first_loss = 0.f, last_loss = 0.f;
  int64_t live_after_first = -1;
  int first_diff = -1;
  int64_t live_at_diff = 0;
  for (int step = 0; step < kSteps; step++) {
    ndl_tensor *loss = mlp_loss(ctx, &m, x, onehot);
    ASSERT_NE(loss, nullptr) << "step " << step << ": " << ndl_last_error();
    ASSERT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK) << "step " << step << ": " << ndl_last_error();
    float value = tensor_values(loss)[0];
    ASSERT_TRUE(std::isfinite(value)) << "step " << step;
    if (step == 0) first_loss = value;
    last_loss = value;
    for (int64_t i = 0; i < m.params.numel; i++) m.params.data[i] -= lr * m.params.grad[i];
    ndl_params_zero_grad(&m.params);
    ndl_ctx_reset(ctx);
    int64_t live = ndl_alloc_live_count();
    if (step == 0) live_after_first = live;
    else if (live != live_after_first && first_diff < 0) {
      first_diff = step;
      live_at_diff = live;
    }
  }
  EXPECT_EQ(first_diff, -1) << "live heap blocks changed at step " << first_diff << ": " << live_at_diff
                            << " vs " << live_after_first << " after step 0";
  EXPECT_LT(last_loss, 0.5f * first_loss) << "loss " << first_loss << " -> " << last_loss;
  ndl_ctx_free(ctx);
  ndl_params_free(&m.params);
  EXPECT_EQ(ndl_alloc_live_count(), live_before) << "heap blocks leaked by the loop";
}

// 0: the context's default chunk (one chunk per step); 4096: several chunks in step 0, coalesced on reset.
INSTANTIATE_TEST_SUITE_P(ArenaChunk, Memory, ::testing::Values((size_t)0, (size_t)4096));

TEST(MemoryChecks, LeakedStepAllocationIsDetected) {
  // the same count that the loop asserts on does move when a step keeps a heap block
  int64_t before = ndl_alloc_live_count();
  void *kept = ndl_malloc(16);
  EXPECT_EQ(ndl_alloc_live_count(), before + 1);
  ndl_free(kept);
  EXPECT_EQ(ndl_alloc_live_count(), before);
  ndl_free(nullptr);
  EXPECT_EQ(ndl_alloc_live_count(), before);
}

}  // namespace
