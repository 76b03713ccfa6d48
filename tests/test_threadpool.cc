// test_threadpool.cc: the core thread pool: every task runs exactly once for any thread count, nested
// loops run inline, and the start-up race (a job posted before a new worker first runs) cannot hang:
// the hang scenarios run in a death-test child under alarm(), so a regression FAILS instead of hanging.
// Label tsan: scripts/test.sh also runs this binary in the ThreadSanitizer build.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <vector>

#include <cblas.h>

#include "core/autograd.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "core/threadpool.h"
#include "test_util.h"

namespace {

struct Counts {
  std::vector<std::atomic<int>> hits;
  explicit Counts(int64_t n) : hits((size_t)n) {}
};

void count_task(void *arg, int64_t i) { static_cast<Counts *>(arg)->hits[(size_t)i].fetch_add(1); }

// Runs ntasks tasks through the pool; true when each ran exactly once.
bool run_once_each(int64_t ntasks) {
  Counts c(ntasks);
  ndl_parallel_for(ntasks, count_task, &c);
  for (auto &h : c.hits)
    if (h.load() != 1) return false;
  return true;
}

// Seconds a death-test child may take before SIGALRM ends it (a hang becomes a failure).
constexpr unsigned kChildLimitS = 60;

void on_alarm(int) {
  static const char msg[] = "thread pool hung: the job never completed\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(124);
}

void arm_hang_timer() {
  signal(SIGALRM, on_alarm);
  alarm(kChildLimitS);
}

class ThreadPool : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-exec: no fork of a threaded process
    ndl_threadpool_set_threads(1);
  }
  void TearDown() override {
    ndl_threadpool_test_delay_start(0);
    ndl_threadpool_set_threads(1);
  }
};

TEST_F(ThreadPool, EveryTaskRunsOnceForAnyThreadCount) {
  for (int n : {1, 2, 3, 4}) {
    ndl_threadpool_set_threads(n);
    EXPECT_EQ(ndl_threadpool_threads(), n);
    for (int64_t tasks : {0, 1, 2, 7, 64, 1000}) EXPECT_TRUE(run_once_each(tasks)) << n << " threads, " << tasks;
  }
}

struct Nested {
  std::atomic<int> inner{0};
};

void inner_task(void *arg, int64_t) { static_cast<Nested *>(arg)->inner.fetch_add(1); }
void outer_task(void *arg, int64_t) { ndl_parallel_for(5, inner_task, arg); }

TEST_F(ThreadPool, NestedLoopRunsInline) {
  ndl_threadpool_set_threads(2);
  Nested n;
  ndl_parallel_for(4, outer_task, &n);
  EXPECT_EQ(n.inner.load(), 20);
}

// The regression of issue 9 item 1: workers sleep before their first instruction, so the job is
// posted (generation bumped) before they read anything. A worker that took the generation when it
// first ran would wait for the next job while the caller waits for it: a hang, caught by alarm().
TEST_F(ThreadPool, JobPostedBeforeWorkerStartsIsRun) {
  EXPECT_EXIT(
      {
        arm_hang_timer();
        bool ok = true;
        for (int n : {2, 4}) {
          ndl_threadpool_test_delay_start(200);
          ndl_threadpool_set_threads(n);
          ok = ok && run_once_each(16) && run_once_each(3);
          ndl_threadpool_set_threads(1);
        }
        std::exit(ok ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

// A worker the OS does not run (here: held asleep 5 s before its first instruction, as a loaded
// machine deschedules a thread) must not hold up the caller: it runs every task itself and returns
// without waiting for the worker to show up. The old pool waited for every worker to report each job,
// so these jobs took >= 5 s; the bound is generous for a busy machine.
TEST_F(ThreadPool, CallerDoesNotWaitForAWorkerThatNeverRan) {
  ndl_threadpool_test_delay_start(5000);
  ndl_threadpool_set_threads(2);
  auto t0 = std::chrono::steady_clock::now();
  bool ok = run_once_each(2) && run_once_each(7);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(ok);
  EXPECT_LT(s, 2.5) << "the caller waited for the sleeping worker";
  ndl_threadpool_set_threads(1);  // joins the worker after its sleep; it finds the jobs done
  ndl_threadpool_test_delay_start(0);
  EXPECT_TRUE(run_once_each(5));
}

// Stress: start and stop the workers many times, each time posting a job at once (the race window
// of the start-up without the hook), also switching between thread counts.
TEST_F(ThreadPool, StartStopStress) {
  EXPECT_EXIT(
      {
        arm_hang_timer();
        bool ok = true;
        for (int rep = 0; rep < 1000 && ok; rep++) {
          ndl_threadpool_set_threads(2 + rep % 2);
          ok = run_once_each(2) && run_once_each(9);
          if (rep % 3 == 0) ndl_threadpool_set_threads(1);
        }
        std::exit(ok ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

// The pool's real users: a GEMM big enough to be split into row blocks, and Linear's backward running
// its two products on two threads, give bitwise the results of one thread (and, under TSan, no race).
TEST_F(ThreadPool, ParallelGemmAndLinearBackwardMatchOneThread) {
  openblas_set_num_threads(1);  // as ndl_threads_configure: OpenBLAS's own threads stay off
  std::vector<float> ref_y, ref_dx, ref_dw;
  for (int n : {1, 2}) {
    ndl_threadpool_set_threads(n);
    int64_t live = ndl_alloc_live_count();
    ndl_ctx *ctx = ndl_ctx_new();
    ndl_tensor *x = uniform(ctx, {64, 256}, -1, 1, 1), *w = uniform(ctx, {256, 256}, -1, 1, 2);
    ndl_tensor *b = uniform(ctx, {256}, -1, 1, 3);
    for (ndl_tensor *t : {x, w, b}) ndl_tensor_set_requires_grad(t, 1);
    ndl_tensor *y = ndl_matmul(ctx, x, w);  // 2*64*256*256 = 8.4 MFLOP: split into row blocks
    ndl_tensor *z = ndl_linear(ctx, x, w, b);
    ASSERT_NE(z, nullptr) << ndl_last_error();
    ASSERT_EQ(ndl_graph_backward(ctx, ndl_sum(ctx, ndl_add(ctx, y, z), nullptr, 0), nullptr), NDL_OK)
        << ndl_last_error();
    if (n == 1) {
      ref_y = tensor_values(y);
      ref_dx = tensor_values(x->grad);
      ref_dw = tensor_values(w->grad);
    } else {
      EXPECT_EQ(tensor_values(y), ref_y);
      EXPECT_EQ(tensor_values(x->grad), ref_dx);
      EXPECT_EQ(tensor_values(w->grad), ref_dw);
    }
    ndl_ctx_free(ctx);
    EXPECT_EQ(ndl_alloc_live_count(), live);
  }
}

}  // namespace
