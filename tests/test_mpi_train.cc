// test_mpi_train.cc: ndl-train under mpirun on small generated IDX data (SPEC §3): an N-rank run
// equals the 1-rank run (per-step losses, final weights) with shuffle, dropout, SyncBN and a global
// batch not divisible by N, also over the TCP transport; --no-sync-bn really differs; evaluation is
// sharded without duplicates; ranks that disagree on the setup or a too-small data set exit 5; a rank
// that hangs or dies ends the job within --timeout; checkpoints resume across rank counts.
// Every mpirun runs under timeout(1), so a hang fails the test instead of blocking the suite.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "mpi_util.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif
#ifndef NDL_MPIRUN_CMD
#error "NDL_MPIRUN_CMD must be the mpirun command line (with --oversubscribe --allow-run-as-root)"
#endif
#ifndef NDL_VADER_OPTS
#define NDL_VADER_OPTS "--mca btl self,vader"
#endif
#ifndef NDL_TCP_OPTS
#define NDL_TCP_OPTS "--mca btl tcp,self --mca btl_tcp_if_include lo"
#endif

namespace {

using namespace ndl_cli;
using namespace ndl_mpi;  // safetensors reader, weight/loss comparisons, log parsing (mpi_util.h)

// ---- the fixture: one data set per test, runs of ndl-train direct or under mpirun ----

class MpiTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = make_workspace("ndl_mpi_", &data);
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cout << "keeping " << dir << " for inspection" << std::endl;
      return;
    }
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }
  std::string path(const std::string &name) { return dir + "/" + name; }
  // np 1: the plain binary (world 1, no MPI); np > 1: mpirun -np np. limit: seconds before timeout(1).
  RunResult ndl(int np, const std::string &args, const std::string &mpi_opts = NDL_VADER_OPTS, int limit = 120) {
    std::string bin = std::string(NDL_TRAIN_BIN) + " --quiet ";
    std::string cmd = np == 1 ? bin + args
                              : "timeout -k 5 " + std::to_string(limit) + " " NDL_MPIRUN_CMD " " + mpi_opts +
                                    " -np " + std::to_string(np) + " " + bin + args;
    RunResult r = run_shell(cmd, dir);
    if (r.code != 0) std::cout << "$ " << cmd << "\n-> exit " << r.code << "\n" << r.out << r.err << std::endl;
    return r;
  }
  // The small model of every run here; extra flags appended (a later --lr wins; an --optimizer in
  // extra replaces SGD with momentum, whose --momentum another optimizer refuses).
  // SGD with momentum: its update is linear in the gradient, so reassociation stays at float
  // rounding. Adam divides by sqrt(v): where the data gradient cancels the weight-decay term
  // (g ~ 1e-8) a rounding difference moves the weight by up to lr, so Adam gets its own test.
  std::string flags(const std::string &extra) {
    std::string sgd = extra.find("--optimizer ") == std::string::npos ? "--optimizer sgd --lr 0.1 --momentum 0.9 " : "";
    return "--data " + data + " --hidden-dim 32 --blocks 1 " + sgd + "--drop-prob 0.1 --seed 3 " + extra;
  }
  // SPEC §3: N ranks == 1 rank up to reassociation. Returns {max loss rel diff, max weight abs diff}.
  std::pair<double, double> equivalence(int np, int batch, const std::string &mpi_opts, const std::string &tag,
                                        const std::string &extra = "", double loss_tol = 1e-5, double weight_tol = 1e-5) {
    std::string common = "--batch-size " + std::to_string(batch) + " --epochs 3 --max-steps 50 --log-steps " + extra + " ";
    std::string l1 = path(tag + "_1.jsonl"), w1 = path(tag + "_1.safetensors");
    std::string ln = path(tag + "_n.jsonl"), wn = path(tag + "_n.safetensors");
    RunResult a = ndl(1, flags(common + "--log " + l1 + " --save " + w1));
    EXPECT_EQ(a.code, 0) << a.err;
    RunResult b = ndl(np, flags(common + "--log " + ln + " --save " + wn), mpi_opts);
    EXPECT_EQ(b.code, 0) << b.out << b.err;
    if (a.code || b.code) return {NAN, NAN};
    EXPECT_EQ(step_losses(ln).size(), 50u);
    EXPECT_EQ(a.out.size() > 0, b.out.size() > 0);
    EXPECT_EQ(lines(b.out).size(), lines(a.out).size()) << "rank 0 alone prints the epoch lines:\n" << b.out;
    std::string what = tag + " np=" + std::to_string(np) + " batch=" + std::to_string(batch);
    double dl = compare_losses(ln, l1, loss_tol, what + " losses");
    double dw = compare_weights(wn, w1, weight_tol, what + " weights");
    figure(what + " max loss rel diff", dl);
    figure(what + " max weight abs diff", dw);
    return {dl, dw};
  }
  std::string dir, data;
};

// 1. Equivalence: shuffle, dropout 0.1, SyncBN (default for N > 1), batch % N != 0.
TEST_F(MpiTrain, TwoRanksEqualOneRankBatch51) { equivalence(2, 51, NDL_VADER_OPTS, "eq2"); }
TEST_F(MpiTrain, ThreeRanksEqualOneRankBatch50) { equivalence(3, 50, NDL_VADER_OPTS, "eq3"); }
TEST_F(MpiTrain, FourRanksEqualOneRankBatch50) { equivalence(4, 50, NDL_VADER_OPTS, "eq4"); }

// Adam (the default optimizer): the same runs, to looser tolerances (see flags()).
TEST_F(MpiTrain, AdamThreeRanksEqualOneRankLooser) {
  equivalence(3, 50, NDL_VADER_OPTS, "adam3", "--optimizer adam --lr 0.01", 1e-4, 1e-3);
}

// 7. The same over Open MPI's TCP transport on loopback (the multi-node path).
TEST_F(MpiTrain, TwoRanksOverTcpEqualOneRank) { equivalence(2, 51, NDL_TCP_OPTS, "tcp2"); }

// 2. Per-rank BatchNorm (--no-sync-bn) on 2 ranks is not the 1-rank run, so the equivalence above
// depends on SyncBN; and --sync-bn on one rank is plain BatchNorm, bit for bit.
TEST_F(MpiTrain, NoSyncBnDiffersAndSyncBnOnOneRankIsPlainBatchNorm) {
  std::string common = "--batch-size 51 --epochs 3 --max-steps 20 --log-steps ";
  ASSERT_EQ(ndl(1, flags(common + "--log " + path("a.jsonl") + " --save " + path("a.st"))).code, 0);
  ASSERT_EQ(ndl(2, flags(common + "--no-sync-bn --log " + path("b.jsonl") + " --save " + path("b.st"))).code, 0);
  double d = compare_losses(path("b.jsonl"), path("a.jsonl"), -1, "no-sync-bn");
  figure("np=2 --no-sync-bn vs np=1 max loss rel diff", d);
  EXPECT_GT(d, 1e-3) << "--no-sync-bn on 2 ranks should normalize each half batch on its own";
  ASSERT_EQ(ndl(1, flags(common + "--sync-bn --log " + path("c.jsonl") + " --save " + path("c.st"))).code, 0);
  EXPECT_EQ(slurp(path("c.st")), slurp(path("a.st"))) << "--sync-bn with one rank must be plain BatchNorm";
  EXPECT_EQ(compare_losses(path("c.jsonl"), path("a.jsonl"), 0, "--sync-bn on 1 rank"), 0.0);
}

// 3. Sharded evaluation: every test sample once, whatever N (200 samples: 67/67/66 on 3 ranks).
TEST_F(MpiTrain, EvalOnlyIsTheSameOnOneTwoThreeRanks) {
  std::string w = path("w.safetensors");
  ASSERT_EQ(ndl(1, flags("--batch-size 50 --max-steps 3 --save " + w)).code, 0);  // barely trained: errors
  std::string ref;
  for (int np : {1, 2, 3}) {
    RunResult r = ndl(np, flags("--batch-size 64 --eval-only --load " + w));
    ASSERT_EQ(r.code, 0) << r.err;
    auto ls = lines(r.out);
    ASSERT_EQ(ls.size(), 1u) << "rank 0 alone prints the eval line:\n" << r.out;
    EXPECT_EQ(ls[0].rfind("eval test_err ", 0), 0u) << ls[0];
    EXPECT_NE(ls[0].find(" samples 200"), std::string::npos) << ls[0];
    if (np == 1) {
      ref = ls[0];
      EXPECT_GT(field(ref, "test_err"), 0.0) << "pick weights with errors so a duplicate would show: " << ref;
      continue;
    }
    EXPECT_EQ(field(ls[0], "test_err"), field(ref, "test_err")) << "np=" << np;
    EXPECT_NEAR(field(ls[0], "test_loss"), field(ref, "test_loss"), 1e-6) << "np=" << np;
  }
}

TEST_F(MpiTrain, EpochMetricsOfOneEpochAgreeOnOneAndThreeRanks) {
  std::string common = "--batch-size 50 --epochs 1 ";
  ASSERT_EQ(ndl(1, flags(common + "--log " + path("a.jsonl"))).code, 0);
  ASSERT_EQ(ndl(3, flags(common + "--log " + path("b.jsonl"))).code, 0);
  auto a = epoch_lines(path("a.jsonl")), b = epoch_lines(path("b.jsonl"));
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  double worst = 0;
  for (const char *k : {"test_err", "test_loss", "train_err", "train_loss"}) {
    double x = json_number(b[0], k), y = json_number(a[0], k);
    EXPECT_NEAR(x, y, 1e-5) << k << "\n" << b[0] << "\n" << a[0];
    worst = std::max(worst, std::fabs(x - y));
  }
  EXPECT_EQ(json_number(b[0], "step"), 20);
  figure("1 epoch np=3 vs np=1 max epoch metric diff", worst);
}

// 4. Ranks that disagree on the setup refuse to run (exit 5) and name the field.
TEST_F(MpiTrain, MismatchedLearningRateAcrossRanksExits5NamingTheField) {
  std::string bin = std::string(NDL_TRAIN_BIN) + " --quiet " + flags("--batch-size 50 --epochs 1 --lr ");
  std::string cmd = "timeout -k 5 60 " NDL_MPIRUN_CMD " " NDL_VADER_OPTS " -np 1 " + bin + "0.01 : -np 1 " + bin + "0.001";
  RunResult r = run_shell(cmd, dir);
  EXPECT_EQ(r.code, 5) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("--lr"), std::string::npos) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("0.001"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(r.out.find("epoch "), std::string::npos) << "no training may start: " << r.out;
}

TEST_F(MpiTrain, TooSmallDataSetsExit5WithAMessage) {
  std::string small = path("small"), tiny = path("tiny");
  mkdir(small.c_str(), 0755);
  mkdir(tiny.c_str(), 0755);
  make_split(small, "train", 40, 5);  // fewer than the global batch of 50
  make_split(small, "t10k", 20, 6);
  make_split(tiny, "train", 100, 7);
  make_split(tiny, "t10k", 1, 8);  // fewer test samples than ranks
  RunResult a = ndl(2, "--data " + small + " --hidden-dim 32 --blocks 1 --batch-size 50 --epochs 1");
  EXPECT_EQ(a.code, 5);
  EXPECT_NE(a.err.find("fewer than the global batch 50"), std::string::npos) << a.err;
  RunResult b = ndl(2, "--data " + tiny + " --hidden-dim 32 --blocks 1 --batch-size 10 --epochs 1");
  EXPECT_EQ(b.code, 5);
  EXPECT_NE(b.err.find("1 test images, fewer than the 2 ranks"), std::string::npos) << b.err;
}

// 5. Fault injection: a stalled or dead rank ends the job within --timeout (+5 s of slack).
double timed(const std::function<void()> &f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST_F(MpiTrain, HangingRankEndsTheJobWithin3sNamingRankAndCollective) {
  RunResult r;
  double s = timed([&] {
    r = ndl(2, flags("--batch-size 50 --epochs 2 --timeout 3"),
            std::string(NDL_VADER_OPTS) + " -x NDL_FAULT=rank=1,step=5,action=hang", 30);
  });
  figure("hang: seconds to exit (timeout 3)", s);
  EXPECT_EQ(r.code, 5) << r.out << r.err;
  EXPECT_LT(s, 3 + 5);
  std::string all = r.out + r.err;
  // "ndl-train: rank 0: batchnorm: all-reduce failed: timed out after 3.0 s in syncbn allreduce (collective #31) at step 5 waiting for rank(s) 1"
  std::string line;
  for (auto &l : lines(all))
    if (l.find("rank 0: ") != std::string::npos && l.find("timed out after ") != std::string::npos) line = l;
  // The step label is set before the forward, so step 5's first collective (a SyncBN all-reduce)
  // carries step 5 (it used to carry step 4, and the fault fired at the gradient all-reduce).
  EXPECT_NE(line.find(" in syncbn allreduce (collective #"), std::string::npos) << all;
  EXPECT_NE(line.find(") at step 5 waiting for rank(s) 1"), std::string::npos) << all;
  EXPECT_NE(all.find("rank 1: NDL_FAULT: hanging instead of joining syncbn allreduce"), std::string::npos) << all;
}

TEST_F(MpiTrain, ExitingRankEndsTheJobWithin3sNamingTheRank) {
  RunResult r;
  double s = timed([&] {
    r = ndl(2, flags("--batch-size 50 --epochs 2 --timeout 3"),
            std::string(NDL_VADER_OPTS) + " -x NDL_FAULT=rank=1,step=5,action=exit", 30);
  });
  figure("exit: seconds to exit (timeout 3)", s);
  EXPECT_NE(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.code, 124) << "timed out";
  EXPECT_LT(s, 3 + 5);
  EXPECT_NE((r.out + r.err).find("rank 1: NDL_FAULT: exiting"), std::string::npos) << r.out << r.err;
}

// 6. Checkpoints resume on another number of ranks (equal up to the reassociation of the steps
// run on the other count), and bitwise on the same count.
TEST_F(MpiTrain, CheckpointsResumeAcrossRankCounts) {
  std::string common = "--batch-size 50 --epochs 2 ";
  std::string ck = " --checkpoint-every 7 --max-steps 7 --checkpoint-dir ";
  ASSERT_EQ(ndl(1, flags(common + "--save " + path("full1.st"))).code, 0);
  ASSERT_EQ(ndl(2, flags(common + "--save " + path("full2.st"))).code, 0);
  ASSERT_EQ(ndl(2, flags(common + ck + path("ck2"))).code, 0);
  ASSERT_EQ(ndl(1, flags(common + ck + path("ck1"))).code, 0);
  ASSERT_TRUE(exists(path("ck2/ckpt-0000000007.safetensors")));
  ASSERT_TRUE(exists(path("ck1/ckpt-0000000007.safetensors")));
  ASSERT_EQ(ndl(1, flags(common + "--resume " + path("ck2") + " --save " + path("r21.st"))).code, 0);
  ASSERT_EQ(ndl(2, flags(common + "--resume " + path("ck1") + " --save " + path("r12.st"))).code, 0);
  ASSERT_EQ(ndl(2, flags(common + "--resume " + path("ck2") + " --save " + path("r22.st"))).code, 0);
  figure("2-rank ckpt@7 resumed on 1 rank vs uninterrupted 1 rank: max weight abs diff",
         compare_weights(path("r21.st"), path("full1.st"), 1e-6, "2->1 resume"));
  figure("1-rank ckpt@7 resumed on 2 ranks vs uninterrupted 2 ranks: max weight abs diff",
         compare_weights(path("r12.st"), path("full2.st"), 1e-6, "1->2 resume"));
  figure("uninterrupted 2 ranks vs 1 rank (40 steps): max weight abs diff",
         compare_weights(path("full2.st"), path("full1.st"), 1e-6, "2 vs 1"));
  EXPECT_EQ(slurp(path("r22.st")), slurp(path("full2.st"))) << "2-rank resume on 2 ranks must be bitwise";
}

}  // namespace
