// gpu_required.h: how a GPU test reacts to a machine without a (real or emulated) CUDA device: it
// skips, saying why, unless NDL_TEST_REQUIRE_GPU=1 (scripts/test.sh's emulated-GPU stage,
// bench/gpu_check.sh on a lent GPU), where it fails, so a stage run for its GPU tests cannot pass by
// skipping them all.
#ifndef NDL_TESTS_GPU_REQUIRED_H
#define NDL_TESTS_GPU_REQUIRED_H

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace ndl_test {

inline bool gpu_required() {
  const char *v = std::getenv("NDL_TEST_REQUIRE_GPU");
  return v && std::strcmp(v, "1") == 0;
}

}  // namespace ndl_test

// Leave the test (from its body): fail under NDL_TEST_REQUIRE_GPU=1, else skip; why: a stream operand.
#define NDL_NO_GPU(why)                                                          \
  do {                                                                           \
    if (::ndl_test::gpu_required()) FAIL() << "NDL_TEST_REQUIRE_GPU=1 but no GPU: " << why; \
    GTEST_SKIP() << "no GPU: " << why;                                           \
  } while (0)

#endif
