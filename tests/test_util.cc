// test_util.cc: implementation of the shared test helpers (see test_util.h).
#include "test_util.h"

#include <cmath>
#include <sstream>

#include "core/ops.h"

std::vector<float> tensor_values(const ndl_tensor *t) {
  std::vector<float> v((size_t)ndl_tensor_numel(t));
  if (!v.empty()) ndl_tensor_copy_out(t, v.data());
  return v;
}

::testing::AssertionResult values_near(const std::vector<float> &ref, const std::vector<float> &got,
                                       double atol, double rtol) {
  if (ref.size() != got.size())
    return ::testing::AssertionFailure() << "size " << got.size() << ", expected " << ref.size();
  std::ostringstream os;
  int bad = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double diff = std::fabs((double)got[i] - (double)ref[i]);
    if (!(diff <= atol + rtol * std::fabs((double)ref[i])) || std::isnan(got[i]) != std::isnan(ref[i])) {
      if (bad < 8)
        os << "\n  [" << i << "] got " << got[i] << " expected " << ref[i] << " (diff " << diff << ")";
      bad++;
    }
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << ref.size() << " mismatches:" << os.str();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult tensor_near(const std::vector<float> &ref, const ndl_tensor *got,
                                       double atol, double rtol) {
  if (!got) return ::testing::AssertionFailure() << "tensor is NULL: " << ndl_last_error();
  return values_near(ref, tensor_values(got), atol, rtol);
}

ndl_rng *test_rng() {
  static ndl_rng rng;
  return &rng;
}

static ndl_tensor *seeded_randint(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int low,
                                  int high, int entropy) {
  std::vector<int64_t> dims(shape);
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  ndl_rng_seed(test_rng(), (uint32_t)(n * (int64_t)dims.size() * entropy));
  ndl_tensor *t = ndl_tensor_empty(ctx, (int)dims.size(), dims.data());
  if (t) ndl_rng_fill_randint(test_rng(), ndl_tensor_ptr(t), n, low, high);
  return t;
}

ndl_tensor *get_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int entropy) {
  ndl_tensor *t = seeded_randint(ctx, shape, 0, 100, entropy);
  if (!t) return t;
  float *p = ndl_tensor_ptr(t);
  for (int64_t i = 0; i < ndl_tensor_numel(t); i++) p[i] = p[i] / 20.0f;
  return t;
}

ndl_tensor *get_int_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int low, int high,
                           int entropy) {
  return seeded_randint(ctx, shape, low, high, entropy);
}

ndl_tensor *make_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape,
                        const std::vector<float> &values) {
  std::vector<int64_t> dims(shape);
  ndl_tensor *t = ndl_tensor_from(ctx, (int)dims.size(), dims.data(), values.data());
  EXPECT_EQ((size_t)ndl_tensor_numel(t), values.size());
  return t;
}

void CtxTest::SetUp() {
  live_at_start = ndl_alloc_live_count();
  ctx = ndl_ctx_new();
  ASSERT_NE(ctx, nullptr);
}

void CtxTest::TearDown() {
  ndl_ctx_free(ctx);
  EXPECT_EQ(ndl_alloc_live_count(), live_at_start) << "heap blocks leaked by the test";
}
