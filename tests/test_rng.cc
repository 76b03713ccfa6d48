// test_rng.cc: numpy RandomState check values (SPEC §2), needle's get_tensor, state save/restore.
#include <cstring>

#include "test_util.h"

TEST(Rng, RandMatchesNumpySeed0) {
  ndl_rng r;
  ndl_rng_seed(&r, 0);
  EXPECT_DOUBLE_EQ(ndl_rng_rand(&r), 0.5488135039273248);
  EXPECT_DOUBLE_EQ(ndl_rng_rand(&r), 0.7151893663724195);
}

TEST(Rng, RandnMatchesNumpySeed42) {
  ndl_rng r;
  ndl_rng_seed(&r, 42);
  EXPECT_DOUBLE_EQ(ndl_rng_randn(&r), 0.4967141530112327);
  EXPECT_DOUBLE_EQ(ndl_rng_randn(&r), -0.13826430117118466);
}

TEST(Rng, PermutationMatchesNumpySeed0) {
  ndl_rng r;
  ndl_rng_seed(&r, 0);
  int64_t p[100];
  ndl_rng_permutation(&r, 100, p);
  const int64_t expect[10] = {26, 86, 2, 55, 75, 93, 16, 73, 54, 95};
  for (int i = 0; i < 10; i++) EXPECT_EQ(p[i], expect[i]) << "index " << i;
  // and it is a permutation
  int seen[100] = {0};
  for (int i = 0; i < 100; i++) seen[p[i]]++;
  for (int i = 0; i < 100; i++) EXPECT_EQ(seen[i], 1);
}

TEST(Rng, RandintMatchesNumpySeed18) {
  ndl_rng r;
  ndl_rng_seed(&r, 18);
  const int64_t expect[9] = {42, 19, 69, 62, 49, 46, 66, 8, 24};
  for (int i = 0; i < 9; i++) EXPECT_EQ(ndl_rng_randint(&r, 0, 100), expect[i]) << "draw " << i;
}

TEST(Rng, RandintOfOneValueDrawsNothing) {
  ndl_rng a, b;
  ndl_rng_seed(&a, 7);
  ndl_rng_seed(&b, 7);
  EXPECT_EQ(ndl_rng_randint(&a, 5, 6), 5);
  EXPECT_EQ(ndl_rng_u32(&a), ndl_rng_u32(&b));
}

TEST(Rng, StateSavesAndRestoresIncludingGaussCache) {
  ndl_rng r, saved;
  ndl_rng_seed(&r, 3);
  ndl_rng_randn(&r);  // leaves a cached value
  std::memcpy(&saved, &r, sizeof r);
  double x[5], y[5];
  for (double &v : x) v = ndl_rng_randn(&r);
  std::memcpy(&r, &saved, sizeof r);
  for (double &v : y) v = ndl_rng_randn(&r);
  for (int i = 0; i < 5; i++) EXPECT_EQ(x[i], y[i]);
}

TEST(Rng, RegeneratesPast624Draws) {
  // numpy: np.random.seed(5); np.random.randint(0, 2**31, 700)[-1] is reproducible only with a
  // correct twist; check consistency of the stream across two seeded copies and the period boundary.
  ndl_rng a;
  ndl_rng_seed(&a, 5489);
  uint32_t v = 0;
  for (int i = 0; i < 10000; i++) v = ndl_rng_u32(&a);
  EXPECT_EQ(v, 4123659995u);  // the MT19937 reference: 10000th output for seed 5489
}

class RngTensor : public CtxTest {};

TEST_F(RngTensor, NeedleGetTensor) {
  ndl_tensor *t = get_tensor(ctx, {3, 3});
  EXPECT_TENSOR_NEAR(std::vector<float>({2.1f, 0.95f, 3.45f, 3.1f, 2.45f, 2.3f, 3.3f, 0.4f, 1.2f}), t,
                     1e-6, 1e-6);
}

TEST(Rng, BernoulliAndSkipFollowTheRandStream) {
  ndl_rng a, b;
  ndl_rng_seed(&a, 9);
  ndl_rng_seed(&b, 9);
  float mask[700];
  ndl_rng_fill_bernoulli(&a, mask, 700, 0.3);
  for (int i = 0; i < 700; i++) EXPECT_EQ(mask[i], ndl_rng_rand(&b) <= 0.3 ? 1.0f : 0.0f) << i;
  ndl_rng_skip_rand(&a, 500);  // crosses a regeneration of the state
  for (int i = 0; i < 500; i++) ndl_rng_rand(&b);
  EXPECT_EQ(ndl_rng_u32(&a), ndl_rng_u32(&b));
}
