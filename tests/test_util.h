// test_util.h: shared helpers of the gtest suites: the expect_near comparison that prints the first
// mismatches, needle's get_tensor / get_int_tensor, the central-difference gradient checker (w.r.t.
// inputs and the parameters of a store), and a fixture owning a context that checks no heap block is
// left alive at teardown.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/alloc.h"
#include "core/params.h"
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

// Uniform values in [lo, hi) from a private RNG seeded with seed.
ndl_tensor *uniform(ndl_ctx *ctx, std::initializer_list<int64_t> shape, double lo, double hi,
                    uint32_t seed);

// ---- central-difference gradient check ----
using Inputs = std::vector<ndl_tensor *>;
using GradFn = std::function<ndl_tensor *(ndl_ctx *, const Inputs &)>;

struct GradCheckOpts {
  double eps = 1e-2;
  double atol = 1e-2;
  double rtol = 1e-2;
  double grad_scale = 1.0;  // test hook: scale the analytic gradient (must make a check fail)
  // Also check every tensor of this trainable store (module parameters): their .grad views are
  // zeroed with ndl_params_zero_grad before the backward, and their data is perturbed in place.
  ndl_params *params = nullptr;
};

// Check d sum(f(inputs) * w) / d {inputs, params} against central differences, w fixed random
// weights. Inputs must be contiguous leaves (perturbed in place); f may build any views of them and
// must be deterministic (reseed any RNG it draws from inside f). The numeric side runs f with grad
// mode off and forms the loss in double from f's float outputs.
::testing::AssertionResult grad_check(ndl_ctx *ctx, const GradFn &f, const Inputs &inputs,
                                      GradCheckOpts o = GradCheckOpts());

// Fixture: a fresh temp dir /tmp/<prefix>XXXXXX (dir; path(name) inside it), removed at teardown;
// no ndl heap block may outlive a test.
class TempDirTest : public ::testing::Test {
 protected:
  explicit TempDirTest(const char *prefix) : prefix_(prefix) {}
  void SetUp() override;
  void TearDown() override;
  std::string path(const std::string &name) const { return dir + "/" + name; }
  std::string dir;
  int64_t live_at_start = 0;

 private:
  std::string prefix_;
};

// Fixture: a fresh context per test; teardown frees it and expects the live-allocation count back
// where it was at setup.
class CtxTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  ndl_ctx *ctx = nullptr;
  int64_t live_at_start = 0;
};
