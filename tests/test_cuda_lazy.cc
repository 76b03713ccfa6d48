// test_cuda_lazy.cc: cuBLAS and NCCL are loaded on first use (core/cuda/cublas_dyn.c,
// dist/dist_nccl.c): the loader finds the toolkit's cuBLAS; a missing library (the test hooks
// NDL_CUBLAS_LIB / NDL_NCCL_LIB, set by ctest for CudaLazy.Missing*) is a one-line reason naming
// it, from the loader, from ndl_backend_cuda when a GPU is there, and from ndl_dist_nccl_init.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/backend.h"
#include "dist/dist.h"
#include "dist/dist_device.h"

// core/cuda/cublas_dyn.h's loader, declared without cublas_v2.h (tests see no CUDA header)
extern "C" const char *ndl_cublas_load(void);

static std::string hook(const char *name) {
  const char *v = std::getenv(name);
  return v ? v : "";
}

// The toolkit's cuBLAS, or the one NDL_CUBLAS_LIB names when that file exists (the emulated
// device's, tests/cuda_emu, whose runtime sets the hook).
TEST(CudaLazy, LoadsTheToolkitsCublas) {
  std::string lib = hook("NDL_CUBLAS_LIB");
  if (!lib.empty() && access(lib.c_str(), F_OK) != 0)
    GTEST_SKIP() << "NDL_CUBLAS_LIB names a missing file (CudaLazy.MissingCublasIsAOneLineReason)";
  const char *why = ndl_cublas_load();
  EXPECT_EQ(why, nullptr) << why;
  EXPECT_EQ(ndl_cublas_load(), why);  // once
}

TEST(CudaLazy, MissingCublasIsAOneLineReason) {
  std::string lib = hook("NDL_CUBLAS_LIB");
  if (lib.empty()) GTEST_SKIP() << "run with NDL_CUBLAS_LIB=/nonexistent/... (ctest test_cuda_lazy_missing)";
  const char *why = ndl_cublas_load();
  ASSERT_NE(why, nullptr);
  EXPECT_NE(std::strstr(why, "cuBLAS"), nullptr) << why;
  EXPECT_NE(std::strstr(why, lib.c_str()), nullptr) << why;
  EXPECT_EQ(std::strchr(why, '\n'), nullptr) << why;
  EXPECT_EQ(ndl_cublas_load(), why);  // the same line again, no retry
  // the backend: no device here is its own reason; with a GPU, the missing cuBLAS is
  const char *bwhy = nullptr;
  EXPECT_EQ(ndl_backend_cuda(&bwhy), nullptr);
  ASSERT_NE(bwhy, nullptr);
  EXPECT_EQ(std::strchr(bwhy, '\n'), nullptr) << bwhy;
  if (ndl_dist_gpu_count() > 0) {
    EXPECT_NE(std::strstr(bwhy, lib.c_str()), nullptr) << bwhy;
  }
}

TEST(CudaLazy, MissingNcclIsADistError) {
  std::string lib = hook("NDL_NCCL_LIB");
  if (lib.empty()) GTEST_SKIP() << "run with NDL_NCCL_LIB=/nonexistent/... (ctest test_cuda_lazy_missing)";
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "no NCCL in this build";
  ndl_dist *d = nullptr;
  ASSERT_EQ(ndl_dist_init(&d, 30.0), NDL_OK) << ndl_last_error();
  EXPECT_EQ(ndl_dist_nccl_init(d), NDL_ERR_DIST);
  std::string msg = ndl_last_error();
  EXPECT_NE(msg.find("NCCL"), std::string::npos) << msg;
  EXPECT_NE(msg.find(lib), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_FALSE(ndl_dist_uses_nccl(d));
  ndl_dist_free(d);
}
