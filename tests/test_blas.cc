// test_blas.cc: the OpenBLAS kernel choice (core/blas_select) and sgemm on the chosen kernel: the
// choice follows the CPU features /proc/cpuinfo lists, this suite itself runs on it (test_main.cc
// re-executes like ndl-train), sgemm matches a double-precision loop there on random shapes, and
// when concurrent sgemm is not allowed no two calls overlap (a cblas_sgemm interposer below counts
// the calls in flight; the same counter shows the overlap when it is allowed).
#include <cblas.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <strings.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/autograd.h"
#include "core/blas_select.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "core/threadpool.h"
#include "test_util.h"

// ---- cblas_sgemm interposer: forwards to OpenBLAS, counting the calls in flight when armed ----
namespace probe {
std::atomic<int> inflight{0}, peak{0}, calls{0};
std::atomic<bool> armed{false};
std::atomic<int> pair_wait_ms{0};  // an armed call waits up to this long for a second one to arrive
}  // namespace probe

extern "C" void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order, OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                            OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint m,
                            OPENBLAS_CONST blasint n, OPENBLAS_CONST blasint k, OPENBLAS_CONST float alpha,
                            OPENBLAS_CONST float *a, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *b,
                            OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *c,
                            OPENBLAS_CONST blasint ldc) {
  using fn_t = void (*)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint, blasint,
                        float, const float *, blasint, const float *, blasint, float, float *, blasint);
  static fn_t real = (fn_t)dlsym(RTLD_NEXT, "cblas_sgemm");
  if (!real) abort();
  bool armed = probe::armed.load();
  if (armed) {
    probe::calls++;
    int now = ++probe::inflight, prev = probe::peak.load();
    while (now > prev && !probe::peak.compare_exchange_weak(prev, now)) {
    }
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(probe::pair_wait_ms.load());
    while (probe::inflight.load() < 2 && probe::peak.load() < 2 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  real(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (armed) probe::inflight--;
}

namespace {

// The kernel OpenBLAS's own fallback order gives for the CPU features the kernel reports.
std::string expected_core_from_cpuinfo() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(f, line))
    if (line.rfind("flags", 0) == 0) {
      std::istringstream is(line.substr(line.find(':') + 1));
      for (std::string w; is >> w;) flags.insert(w);
      break;
    }
  auto has = [&](const char *w) { return flags.count(w) > 0; };
  if (flags.empty()) return "";
  if (has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq") && has("avx512cd"))
    return has("avx512_bf16") ? "Cooperlake" : "SkylakeX";
  if (has("avx2") && has("fma")) return "Haswell";
  if (has("avx")) return "Sandybridge";
  if (has("sse4_2")) return "Nehalem";
  if (has("ssse3")) return "Core2";
  return "Prescott";
}

TEST(BlasSelect, LadderAndUpgradeRule) {
  EXPECT_EQ(ndl_blas_core_rank("Prescott"), 0);
  EXPECT_LT(ndl_blas_core_rank("Haswell"), ndl_blas_core_rank("SkylakeX"));
  EXPECT_LT(ndl_blas_core_rank("SkylakeX"), ndl_blas_core_rank("Cooperlake"));
  EXPECT_EQ(ndl_blas_core_rank("ZEN"), ndl_blas_core_rank("Haswell"));
  EXPECT_EQ(ndl_blas_core_rank("Excavator"), -1);
  EXPECT_EQ(ndl_blas_core_rank(nullptr), -1);
  EXPECT_STREQ(ndl_blas_upgrade("Prescott", "Cooperlake"), "Cooperlake");
  EXPECT_STREQ(ndl_blas_upgrade("Zen", "SkylakeX"), "SkylakeX");
  EXPECT_EQ(ndl_blas_upgrade("SkylakeX", "SkylakeX"), nullptr);  // same kernel: keep
  EXPECT_EQ(ndl_blas_upgrade("Cooperlake", "SkylakeX"), nullptr);  // already better: keep
  EXPECT_EQ(ndl_blas_upgrade("Excavator", "Haswell"), nullptr);   // a kernel we do not rank: keep
  EXPECT_EQ(ndl_blas_upgrade("Prescott", nullptr), nullptr);      // not x86
}

TEST(BlasSelect, BestCoreFollowsTheCpuFeatures) {
#if defined(__x86_64__) || defined(__i386__)
  std::string want = expected_core_from_cpuinfo();
  if (want.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  EXPECT_EQ(want, ndl_blas_best_core());
#else
  EXPECT_EQ(ndl_blas_best_core(), nullptr);
#endif
}

// test_main.cc ran ndl_blas_select: unless the user set OPENBLAS_CORETYPE, this process runs on a
// kernel at least as good as the CPU's best (on this Xeon OpenBLAS 0.3.21 alone loads Prescott).
TEST(BlasSelect, SuiteRunsOnTheChosenKernel) {
  const char *running = openblas_get_corename(), *best = ndl_blas_best_core();
  const char *user = getenv("OPENBLAS_CORETYPE");
  const char *marker = getenv("NDL_BLAS_AUTO");
  char line[384];
  ndl_blas_describe(line, sizeof line);
  std::string how = line;
  if (user && !(marker && strstr(marker, (std::string(":") + user).c_str()))) {
    EXPECT_NE(how.find("set by the user"), std::string::npos) << how;
    if (ndl_blas_core_rank(user) >= 0) {
      EXPECT_STRCASEEQ(running, user) << "OPENBLAS_CORETYPE must be respected";
    }
    GTEST_SKIP() << "OPENBLAS_CORETYPE=" << user << " set by the user: " << how;
  }
  if (!best || !strstr(openblas_get_config(), "DYNAMIC_ARCH")) GTEST_SKIP() << how;
  EXPECT_GE(ndl_blas_core_rank(running), ndl_blas_core_rank(best)) << how;
  EXPECT_NE(how.find(std::string("kernel ") + running), std::string::npos) << how;
}

// C = alpha op(A) op(B) + beta C on random shapes, all four transpose pairs, padded leading
// dimensions, against a double loop, with the error bound of float accumulation.
TEST(BlasSelect, SgemmMatchesANaiveLoopOnTheChosenKernel) {
  std::mt19937 gen(1234);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int sizes[] = {1, 2, 7, 16, 17, 33, 64, 100, 129, 257};
  int checked = 0;
  for (int trial = 0; trial < 60; trial++) {
    int m = sizes[gen() % 10], n = sizes[gen() % 10], k = sizes[gen() % 10];
    if (trial == 0) m = 100, n = 100, k = 784;  // the first layer of the default model
    bool tra = trial & 1, trb = trial & 2;
    float alpha = trial % 3 == 0 ? 1.0f : 0.75f, beta = trial % 4 == 0 ? 0.0f : 0.5f;
    int ar = tra ? k : m, ac = tra ? m : k, br = trb ? n : k, bc = trb ? k : n;
    int lda = ac + (int)(gen() % 3), ldb = bc + (int)(gen() % 3), ldc = n + (int)(gen() % 3);
    std::vector<float> a((size_t)ar * lda), b((size_t)br * ldb), c((size_t)m * ldc), c0;
    for (auto &v : a) v = u(gen);
    for (auto &v : b) v = u(gen);
    for (auto &v : c) v = u(gen);
    c0 = c;
    cblas_sgemm(CblasRowMajor, tra ? CblasTrans : CblasNoTrans, trb ? CblasTrans : CblasNoTrans, m, n, k, alpha,
                a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double s = 0, mag = 0;
        for (int p = 0; p < k; p++) {
          double x = tra ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
          double y = trb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
          s += x * y;
          mag += std::fabs(x * y);
        }
        double ref = alpha * s + beta * c0[(size_t)i * ldc + j];
        double scale = std::fabs(alpha) * mag + std::fabs(beta * c0[(size_t)i * ldc + j]);
        double tol = 4.0 * (k + 2) * 6e-8 * scale + 1e-6;
        ASSERT_NEAR(c[(size_t)i * ldc + j], ref, tol)
            << "kernel " << openblas_get_corename() << " m=" << m << " n=" << n << " k=" << k << " ta=" << tra
            << " tb=" << trb << " at (" << i << "," << j << ")";
        checked++;
      }
  }
  EXPECT_GT(checked, 0);
}

class BlasConcurrency : public CtxTest {
 protected:
  void SetUp() override {
    CtxTest::SetUp();
    ndl_threadpool_set_threads(2);
  }
  void TearDown() override {
    probe::armed = false;
    ndl_blas_set_concurrent(-1);
    ndl_threadpool_set_threads(1);
    CtxTest::TearDown();
  }
  // Arm the probe, run fn, disarm; returns the most sgemm calls seen in flight at once.
  template <class F>
  int peak_during(int pair_wait_ms, F fn) {
    probe::peak = 0;
    probe::calls = 0;
    probe::pair_wait_ms = pair_wait_ms;
    probe::armed = true;
    fn();
    probe::armed = false;
    return probe::peak.load();
  }
  // A 256 x 256 x 256 matmul (split in two row blocks) and a Linear forward + backward (its
  // dx and dw products run as two tasks); returns all values produced.
  std::vector<float> work() {
    ndl_tensor *a = uniform(ctx, {256, 256}, -1, 1, 1), *b = uniform(ctx, {256, 256}, -1, 1, 2);
    ndl_tensor *x = uniform(ctx, {128, 200}, -1, 1, 3), *w = uniform(ctx, {200, 160}, -1, 1, 4);
    ndl_tensor *bias = uniform(ctx, {1, 160}, -1, 1, 5);
    for (ndl_tensor *t : {x, w, bias}) ndl_tensor_set_requires_grad(t, 1);
    ndl_tensor *c = ndl_matmul(ctx, a, b);
    ndl_tensor *y = ndl_linear(ctx, x, w, bias);
    EXPECT_NE(c, nullptr) << ndl_last_error();
    EXPECT_NE(y, nullptr) << ndl_last_error();
    if (!c || !y) return {};
    ndl_tensor *wrt[3] = {x, w, bias}, *g[3] = {nullptr, nullptr, nullptr};
    EXPECT_EQ(ndl_graph_grad(ctx, ndl_sum(ctx, ndl_mul(ctx, y, y), nullptr, 0), nullptr, 3, wrt, g, 0), NDL_OK);
    std::vector<float> all = tensor_values(c);
    for (ndl_tensor *t : {y, g[0], g[1], g[2]}) {
      if (!t) return {};
      std::vector<float> v = tensor_values(t);
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  }
};

TEST_F(BlasConcurrency, PthreadsBuildAllowsConcurrentCalls) {
  const char *serial = getenv("NDL_BLAS_SERIAL");
  EXPECT_EQ(ndl_blas_concurrent_ok(), openblas_get_parallel() == 1 && !(serial && !strcmp(serial, "1")))
      << openblas_get_config();
}

// Allowed: the two halves of a big GEMM overlap (each armed call waits up to 30 s for the other:
// this is what the probe sees when nothing serializes the calls).
TEST_F(BlasConcurrency, CallsOverlapWhenAllowed) {
  ndl_blas_set_concurrent(1);
  std::vector<float> v;
  EXPECT_EQ(peak_during(30000, [&] { v = work(); }), 2);
  EXPECT_GE(probe::calls.load(), 4);
}

// Not thread-safe: every call runs alone (each waits up to 0.3 s for a partner that must not come),
// and the results are bitwise those of the concurrent run (the same fixed row blocks).
TEST_F(BlasConcurrency, CallsAreSerializedWhenTheBlasIsNotThreadSafe) {
  ndl_blas_set_concurrent(1);
  std::vector<float> par = work();
  ndl_ctx_reset(ctx);
  ndl_blas_set_concurrent(0);
  std::vector<float> ser;
  EXPECT_EQ(peak_during(300, [&] { ser = work(); }), 1);
  EXPECT_GE(probe::calls.load(), 4);
  ASSERT_EQ(par.size(), ser.size());
  ASSERT_FALSE(par.empty());
  EXPECT_EQ(memcmp(par.data(), ser.data(), par.size() * sizeof(float)), 0);
}

}  // namespace
