// test_watchdog.cc: the step watchdog end to end. A plain ndl-train (no mpirun) that hangs in any
// phase (NDL_FAULT=...,where=PHASE) ends with exit 5 within --timeout + 10 s and one line naming the
// phase and step; checkpoint writes get 4x --timeout; a slow checkpoint write on rank 0 is not a
// stall for the other ranks (under mpirun, when NDL_MPIRUN_CMD is defined). Every run is under
// timeout(1), so a hang fails the test instead of blocking the suite.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>

#include "cli_util.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

namespace {
using namespace ndl_cli;

class Watchdog : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_workspace("ndl_watchdog_", &data_); }
  void TearDown() override { system(("rm -rf " + dir_).c_str()); }

  // ndl-train with env (e.g. "NDL_FAULT=...") and args, killed after 60 s; seconds it took.
  RunResult train(const std::string &env, const std::string &args, double *seconds,
                  const std::string &launcher = "") {
    auto t0 = std::chrono::steady_clock::now();
    std::string mpi_env = launcher.empty() ? "" : " ASAN_OPTIONS=detect_leaks=0";  // Open MPI's own leaks
    RunResult r = run_shell("env " + env + mpi_env + " timeout -k 5 60 " + launcher + " " NDL_TRAIN_BIN " --data " +
                                data_ + " --epochs 1 --batch-size 50 --quiet " + args,
                            dir_);
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  std::string dir_, data_;
};

bool has(const std::string &text, const std::string &re) {
  return std::regex_search(text, std::regex(re));
}

TEST_F(Watchdog, HangInAnyStepPhaseExits5NamingPhaseAndStep) {
  const char *keys[] = {"data", "forward", "backward", "optimizer"};
  const char *labels[] = {"data wait", "forward", "backward", "optimizer"};
  for (int i = 0; i < 4; i++) {
    double s = 0;
    RunResult r = train(std::string("NDL_FAULT=rank=0,step=3,action=hang,where=") + keys[i], "--timeout 2", &s);
    EXPECT_EQ(r.code, 5) << keys[i] << "\n" << r.err;
    EXPECT_LT(s, 12.0) << keys[i];
    EXPECT_TRUE(has(r.err, std::string("(^|\n)ndl-train: stalled for [0-9.]+ s in ") + labels[i] +
                               " at step 3 \\(epoch 1\\)\n"))
        << r.err;
  }
}

TEST_F(Watchdog, HangInEvaluationExits5) {
  double s = 0;
  RunResult r = train("NDL_FAULT=rank=0,step=0,action=hang,where=eval", "--timeout 2 --eval-only", &s);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_LT(s, 12.0);
  EXPECT_TRUE(has(r.err, "stalled for [0-9.]+ s in evaluation at step 0 \\(epoch 1\\)")) << r.err;
  // after training: 1000 images / 50 = step 20
  r = train("NDL_FAULT=rank=0,step=3,action=hang,where=eval", "--timeout 2", &s);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_TRUE(has(r.err, "stalled for [0-9.]+ s in evaluation at step 20 \\(epoch 1\\)")) << r.err;
}

TEST_F(Watchdog, CheckpointWriteMayTakeFourTimesTheTimeout) {
  double s = 0;
  RunResult r = train("NDL_FAULT=rank=0,step=3,action=slow,seconds=1.5,where=checkpoint",
                      "--timeout 1 --checkpoint-dir " + dir_ + "/ck1 --checkpoint-every 3", &s);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("NDL_FAULT: sleeping 1.5 s in checkpoint write at step 3"), std::string::npos) << r.err;
  r = train("NDL_FAULT=rank=0,step=3,action=hang,where=checkpoint",
            "--timeout 1 --checkpoint-dir " + dir_ + "/ck2 --checkpoint-every 3", &s);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_GE(s, 4.0);
  EXPECT_LT(s, 14.0);
  EXPECT_TRUE(has(r.err, "stalled for 4\\.[0-9] s in checkpoint write at step 3 \\(epoch 1\\)")) << r.err;
}

TEST_F(Watchdog, NormalRunIsNotAStallAndBadFaultSpecIsRefused) {
  double s = 0;
  RunResult r = train("", "--timeout 2 --epochs 2", &s);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  r = train("NDL_FAULT=rank=0,step=3,action=slow,where=forward", "", &s);  // slow needs seconds
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("NDL_FAULT="), std::string::npos) << r.err;
  r = train("NDL_FAULT=rank=0,step=3,action=hang,where=nowhere", "", &s);
  EXPECT_EQ(r.code, 5) << r.err;
}

#ifdef NDL_MPIRUN_CMD
std::string mpirun(int np, const std::string &fault) {
  return std::string(NDL_MPIRUN_CMD) + " --mca btl self,vader -x NDL_FAULT=" + fault + " -np " +
         std::to_string(np);
}

// Rank 0 writes the checkpoint for 3 s with --timeout 2: rank 1 waits in the checkpoint status
// broadcast, whose deadline is 4 x --timeout + 5 s, so the run succeeds.
TEST_F(Watchdog, MpiSlowCheckpointWriteOnRank0IsNotAStall) {
  double s = 0;
  RunResult r = train("", "--timeout 2 --checkpoint-dir " + dir_ + "/ck --checkpoint-every 3", &s,
                      mpirun(2, "rank=0,step=3,action=slow,seconds=3,where=checkpoint"));
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("rank 0: NDL_FAULT: sleeping 3.0 s in checkpoint write at step 3"),
            std::string::npos)
      << r.out << r.err;
}

// A hung checkpoint write is reported by rank 0 itself after 4 x --timeout, before the others'
// deadline (4 x --timeout + 5 s); the job ends with 5.
TEST_F(Watchdog, MpiHungCheckpointWriteIsReportedByRank0) {
  double s = 0;
  RunResult r = train("", "--timeout 1 --checkpoint-dir " + dir_ + "/ck --checkpoint-every 3", &s,
                      mpirun(2, "rank=0,step=3,action=hang,where=checkpoint"));
  std::string all = r.out + r.err;
  EXPECT_EQ(r.code, 5) << all;
  EXPECT_LT(s, 20.0);
  EXPECT_TRUE(has(all, "rank 0: stalled for 4\\.[0-9] s in checkpoint write at step 3")) << all;
}

// A rank hung outside any collective (in its forward) ends the job with 5: its own watchdog names
// the phase, or the others' collective deadline names the rank, whichever fires first.
TEST_F(Watchdog, MpiHangInForwardEndsTheJob) {
  double s = 0;
  RunResult r = train("", "--timeout 2", &s, mpirun(2, "rank=1,step=3,action=hang,where=forward"));
  std::string all = r.out + r.err;
  EXPECT_EQ(r.code, 5) << all;
  EXPECT_LT(s, 15.0);
  EXPECT_TRUE(has(all, "rank 1: stalled for [0-9.]+ s in forward at step 3|waiting for rank\\(s\\) 1")) << all;
}
#endif

}  // namespace
