// device_compare.h: the harness of the CPU-vs-CUDA tests (test_cuda_ops.cc, test_cuda_fused.cc):
// a backend with the buffers it owns (upload, download, leaves and nodes over its memory), the
// ulp/relative comparison that prints the first misses, and NEED_CUDA(), which skips without a
// device (test hook NDL_TEST_CUDA_SELF=1: the CPU backend stands in, checking the harness itself).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_required.h"
#include "core/backend.h"
#include "core/tensor.h"

namespace cuda_test {

using Vec = std::vector<float>;

// ---- comparisons ----

inline int64_t ulp_diff(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (a == b) return 0;
  if (std::isnan(a) || std::isnan(b)) return INT64_MAX;
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return oa > ob ? oa - ob : ob - oa;
}

// got matches ref when within max_ulp ulps or |got-ref| <= atol + rtol*|ref|; prints the first misses.
inline ::testing::AssertionResult close(const Vec &ref, const Vec &got, int64_t max_ulp, double rtol = 0.0,
                                 double atol = 0.0) {
  if (ref.size() != got.size())
    return ::testing::AssertionFailure() << "sizes differ: " << ref.size() << " vs " << got.size();
  int bad = 0;
  std::string msg;
  for (size_t i = 0; i < ref.size(); i++) {
    double err = std::fabs((double)got[i] - (double)ref[i]);
    bool ok = ulp_diff(ref[i], got[i]) <= max_ulp || err <= atol + rtol * std::fabs((double)ref[i]);
    if (!ok && bad++ < 5)
      msg += " [" + std::to_string(i) + "] cpu " + std::to_string(ref[i]) + " cuda " + std::to_string(got[i]) +
             " (" + std::to_string(ulp_diff(ref[i], got[i])) + " ulp);";
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << ref.size() << " differ:" << msg;
  return ::testing::AssertionSuccess();
}

#define EXPECT_EXACT(ref, got) EXPECT_TRUE(close(ref, got, 0))
#define EXPECT_ULPS(ref, got, u) EXPECT_TRUE(close(ref, got, u))
#define EXPECT_REL(ref, got) EXPECT_TRUE(close(ref, got, 0, 1e-5, 1e-6))

// GEMM results: 1e-5 relative to the result's scale (cuBLAS and OpenBLAS sum in different orders,
// so an element that cancels to near 0 keeps an absolute error of the size of its terms).
inline ::testing::AssertionResult close_scaled(const Vec &ref, const Vec &got) {
  double scale = 0.0;
  for (float v : ref) scale = std::fmax(scale, std::fabs((double)v));
  return close(ref, got, 0, 1e-5, 1e-5 * scale);
}
#define EXPECT_SCALED(ref, got) EXPECT_TRUE(close_scaled(ref, got))

inline Vec random_vec(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  Vec v(n);
  for (auto &x : v) x = d(g);
  return v;
}

// ---- one backend with the buffers it owns ----

struct Dev {
  const ndl_backend *b;
  ndl_ctx *ctx;
  std::vector<void *> bufs;
  explicit Dev(const ndl_backend *be) : b(be), ctx(ndl_ctx_new_on(be)) {}
  ~Dev() {
    b->sync();
    for (void *p : bufs) b->free(p);
    ndl_ctx_free(ctx);
  }
  void *alloc(size_t bytes) {
    void *p = b->alloc(bytes ? bytes : 4);
    EXPECT_NE(p, nullptr);
    bufs.push_back(p);
    return p;
  }
  float *up(const Vec &v) {
    float *p = (float *)alloc(v.size() * sizeof(float));
    b->copy(p, v.data(), v.size() * sizeof(float), NDL_COPY_H2D);
    return p;
  }
  template <class T>
  T *up_raw(const std::vector<T> &v) {
    T *p = (T *)alloc(v.size() * sizeof(T));
    b->copy(p, v.data(), v.size() * sizeof(T), NDL_COPY_H2D);
    return p;
  }
  float *zeros(size_t n) { return up(Vec(n, 0.0f)); }
  Vec down(const float *p, size_t n) {
    Vec v(n);
    b->copy(v.data(), p, n * sizeof(float), NDL_COPY_D2H);
    return v;
  }
  std::vector<double> down_d(const double *p, size_t n) {
    std::vector<double> v(n);
    b->copy(v.data(), p, n * sizeof(double), NDL_COPY_D2H);
    return v;
  }
  // A contiguous leaf over device data.
  ndl_tensor leaf(float *data, std::initializer_list<int64_t> shape) {
    ndl_tensor t;
    std::vector<int64_t> s(shape);
    ndl_tensor_init_view(&t, data, (int)s.size(), s.data());
    t.device = b->device;
    return t;
  }
  // A node of op over srcs with a fresh contiguous output; compute it.
  ndl_tensor node(ndl_op op, std::vector<int64_t> shape, std::vector<ndl_tensor *> srcs, void *aux = nullptr,
                  float scalar = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    ndl_tensor t;
    ndl_tensor_init_view(&t, (float *)alloc((size_t)n * sizeof(float)), (int)shape.size(), shape.data());
    t.device = b->device;
    t.op = op;
    for (size_t i = 0; i < srcs.size(); i++) t.src[i] = srcs[i];
    t.aux = aux;
    t.scalar = scalar;
    return t;
  }
  void compute(ndl_tensor *t) { EXPECT_EQ(b->compute(ctx, t), NDL_OK) << ndl_op_name(t->op); }
  Vec out(const ndl_tensor *t) { return down(ndl_tensor_ptr(t), (size_t)ndl_tensor_numel(t)); }
};

// The backend under test: CUDA, or (test hook NDL_TEST_CUDA_SELF=1) the CPU backend itself, which
// checks this harness without a GPU (the CPU must then agree with itself).
inline const ndl_backend *backend_under_test(const char **why) {
  const char *self = std::getenv("NDL_TEST_CUDA_SELF");
  if (self && std::strcmp(self, "1") == 0) return ndl_backend_cpu();
  return ndl_backend_cuda(why);
}

#define NEED_CUDA()                                                    \
  const char *why_ = nullptr;                                          \
  const ndl_backend *cuda = backend_under_test(&why_);                 \
  if (!cuda) NDL_NO_GPU("no CUDA backend: " << (why_ ? why_ : ""));  \
  const ndl_backend *cpu = ndl_backend_cpu();                          \
  (void)cpu

}  // namespace cuda_test
