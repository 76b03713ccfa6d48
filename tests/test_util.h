// test_util.h: shared helpers of the gtest suites: the expect_near comparison that prints the first
// mismatches, needle's get_tensor / get_int_tensor, and a fixture owning a context that checks no
// heap block is left alive at teardown.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/alloc.h"
#include "core/rng.h"
#include "core/tensor.h"

// Compare got (any strides) with ref elementwise: |got-ref| <= atol + rtol*|ref|.
::testing::AssertionResult tensor_near(const std::vector<float> &ref, const ndl_tensor *got,
                                       double atol, double rtol);
::testing::AssertionResult values_near(const std::vector<float> &ref, const std::vector<float> &got,
                                       double atol, double rtol);
#define EXPECT_TENSOR_NEAR(ref, got, atol, rtol) EXPECT_TRUE(tensor_near(ref, got, atol, rtol))
#define EXPECT_VALUES_NEAR(ref, got, atol, rtol) EXPECT_TRUE(values_near(ref, got, atol, rtol))

// All elements of t in row-major order.
std::vector<float> tensor_values(const ndl_tensor *t);

// needle's tests: seed(prod(shape)*ndim*entropy), then randint(low, high, shape) [/ 20].
ndl_tensor *get_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int entropy = 1);
ndl_tensor *get_int_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int low = 0,
                           int high = 10, int entropy = 1);
// The global RNG used by get_tensor (numpy's np.random), shared with nn code under test.
ndl_rng *test_rng();

ndl_tensor *make_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape,
                        const std::vector<float> &values);

// Fixture: a fresh context per test; teardown frees it and expects the live-allocation count back
// where it was at setup.
class CtxTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  ndl_ctx *ctx = nullptr;
  int64_t live_at_start = 0;
};
