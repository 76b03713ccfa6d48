// test_blas_cli.cc: the OpenBLAS kernel ndl-train and bench_core run on, seen from outside: with
// OPENBLAS_CORETYPE unset, `ndl-train --verbose` names a kernel as good as the CPU supports (never
// OpenBLAS 0.3.21's Prescott fallback on an AVX-512 Xeon), also for each rank under mpirun; a value
// the user set is kept, even a slower one, and training gives the same losses on it; bench_core
// always prints the kernel and whether concurrent sgemm is allowed.
#include <cblas.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cli_util.h"
#include "core/blas_select.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif
#ifndef NDL_BENCH_BIN
#error "NDL_BENCH_BIN must name the bench_core binary"
#endif

namespace {

using namespace ndl_cli;

// Every variable of ours and OpenBLAS's cleared, as in a fresh shell.
const std::string kClean =
    "env -u OPENBLAS_CORETYPE -u NDL_BLAS_AUTO -u NDL_BLAS_PRETEND_LOADED -u NDL_BLAS_SERIAL ";

class BlasCli : public WorkspaceTest {
 protected:
  BlasCli() : WorkspaceTest("ndl_blas_") {}
  RunResult train(const std::string &env) {
    return run_shell(kClean + env + " " + NDL_TRAIN_BIN + " --quiet --verbose --data " + data +
                         " --epochs 1 --max-steps 4 --batch-size 50 --hidden-dim 32 --blocks 1 --threads 2",
                     dir);
  }
};

// The kernel named in a "blas: ..., kernel NAME (HOW), ..." line (empty when missing).
std::string kernel_of(const std::string &text, std::string *how = nullptr) {
  size_t p = text.find("blas: ");
  if (p == std::string::npos) return "";
  size_t k = text.find("kernel ", p);
  if (k == std::string::npos) return "";
  k += 7;
  size_t e = text.find(' ', k);
  if (how) {
    size_t o = text.find('(', e), c = text.find(')', o);
    *how = o == std::string::npos || c == std::string::npos ? "" : text.substr(o + 1, c - o - 1);
  }
  return text.substr(k, e - k);
}

TEST_F(BlasCli, UnsetCoretypeRunsOnTheBestKernelForTheCpu) {
  const char *best = ndl_blas_best_core();
  if (!best) GTEST_SKIP() << "not an x86 CPU";
  RunResult r = train("");
  ASSERT_EQ(r.code, 0) << r.err;
  std::string how, k = kernel_of(r.err, &how);
  ASSERT_FALSE(k.empty()) << "no blas line on stderr: " << r.err;
  EXPECT_GE(ndl_blas_core_rank(k.c_str()), ndl_blas_core_rank(best)) << r.err;
  if (ndl_blas_core_rank(best) > 0) {
    EXPECT_NE(k, "Prescott") << r.err;
  }
  if (how.rfind("chosen by needle-c", 0) == 0) {
    EXPECT_EQ(k, best) << r.err;
  }
  EXPECT_NE(r.out.find("epoch 1/1"), std::string::npos) << r.out;
}

// A DYNAMIC_ARCH OpenBLAS that already detects the CPU is left alone; one that detects less (as
// NDL_BLAS_PRETEND_LOADED makes it look on any CPU) is re-executed on the best kernel.
TEST_F(BlasCli, WeakerDetectedKernelIsReplacedByReexec) {
  const char *best = ndl_blas_best_core();
  if (!best || ndl_blas_core_rank(best) <= 0) GTEST_SKIP() << "CPU without SSSE3 or not x86";
  RunResult r = train("NDL_BLAS_PRETEND_LOADED=Prescott");
  ASSERT_EQ(r.code, 0) << r.err;
  std::string how, k = kernel_of(r.err, &how);
  if (r.err.find("not a DYNAMIC_ARCH build") != std::string::npos) GTEST_SKIP() << r.err;
  EXPECT_EQ(k, best) << r.err;
  EXPECT_EQ(how, "chosen by needle-c for this CPU; OpenBLAS detected Prescott") << r.err;
}

// OPENBLAS_CORETYPE set by the user wins, even a slower kernel; the losses agree with the
// automatic choice to float accuracy.
TEST_F(BlasCli, UserCoretypeIsRespected) {
  RunResult user = train("OPENBLAS_CORETYPE=Prescott"), automatic = train("");
  ASSERT_EQ(user.code, 0) << user.err;
  ASSERT_EQ(automatic.code, 0) << automatic.err;
  std::string how;
  EXPECT_EQ(kernel_of(user.err, &how), "Prescott") << user.err;
  EXPECT_EQ(how, "OPENBLAS_CORETYPE=Prescott set by the user") << user.err;
  std::vector<std::string> lu = lines(user.out), la = lines(automatic.out);
  ASSERT_FALSE(lu.empty());
  ASSERT_FALSE(la.empty());
  EXPECT_NEAR(field(lu.back(), "train_loss"), field(la.back(), "train_loss"), 1e-3);
  EXPECT_NEAR(field(lu.back(), "test_loss"), field(la.back(), "test_loss"), 1e-3);
}

TEST_F(BlasCli, WithoutVerboseNoBlasLine) {
  RunResult r = run_shell(kClean + NDL_TRAIN_BIN + " --quiet --data " + data +
                              " --epochs 1 --max-steps 2 --batch-size 50 --hidden-dim 16 --blocks 1",
                          dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("blas:"), std::string::npos) << r.err;
}

TEST_F(BlasCli, BenchCorePrintsTheKernel) {
  RunResult r = run_shell(kClean + NDL_BENCH_BIN + " 2 1 1", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  std::string k = kernel_of(r.out);
  EXPECT_FALSE(k.empty()) << r.out;
  const char *best = ndl_blas_best_core();
  if (best) {
    EXPECT_GE(ndl_blas_core_rank(k.c_str()), ndl_blas_core_rank(best)) << r.out;
  }
  // yes on a pthreads build of OpenBLAS (Debian's default), no on the serial or OpenMP one
  const char *want = openblas_get_parallel() == 1 ? "concurrent sgemm yes" : "concurrent sgemm no";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
  RunResult s = run_shell(kClean + "NDL_BLAS_SERIAL=1 " + NDL_BENCH_BIN + " 2 1 2", dir);
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_NE(s.out.find("concurrent sgemm no (serialized)"), std::string::npos) << s.out;
  // the floor at the thread count asked for (bench/compare_torch.sh reads this line), not only 1 thread
  EXPECT_NE(r.out.find("sgemm floor at 1 thread(s)"), std::string::npos) << r.out;
  EXPECT_NE(s.out.find("sgemm floor at 2 thread(s)"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("2 row blocks on the pool"), std::string::npos) << s.out;
}

#ifdef NDL_MPIRUN_CMD
// Each rank re-executes itself before MPI_Init (same pid, so mpirun does not notice) and reports.
// (Open MPI's own allocations would show up as leaks under LeakSanitizer.)
TEST_F(BlasCli, EveryMpiRankRunsOnTheChosenKernel) {
  const char *best = ndl_blas_best_core();
  if (!best) GTEST_SKIP() << "not an x86 CPU";
  std::string env = "ASAN_OPTIONS=detect_leaks=0 OMPI_MCA_rmaps_base_oversubscribe=1 timeout 120 ";
  RunResult r = run_shell(kClean + env + NDL_MPIRUN_CMD + " --mca btl self,vader -np 2 " + NDL_TRAIN_BIN +
                              " --verbose --quiet --data " + data +
                              " --epochs 1 --max-steps 2 --batch-size 50 --hidden-dim 16 --blocks 1",
                          dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (int rank = 0; rank < 2; rank++) {
    size_t p = r.err.find("rank " + std::to_string(rank) + ": blas: ");
    ASSERT_NE(p, std::string::npos) << r.err;
    std::string k = kernel_of(r.err.substr(p));
    EXPECT_GE(ndl_blas_core_rank(k.c_str()), ndl_blas_core_rank(best)) << r.err;
  }
}
#endif

}  // namespace
