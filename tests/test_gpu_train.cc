// test_gpu_train.cc: ndl-train on a GPU end to end (issue 10, tests; label gpu): 50 GPU steps follow
// 50 CPU steps (SGD per-step loss within 1e-5 relative; Adam's first steps within 1e-5), N ranks on
// one GPU through --collectives mpi follow 1 rank, NCCL with one rank runs end to end, a checkpoint
// written on the GPU resumes on the CPU and back, --cuda-graph follows the eager steps, and NCCL
// refuses ranks that share a GPU. Every test skips (saying why) without a GPU, and the MPI ones
// without mpirun or in a build without MPI.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli_util.h"
#include "gpu_required.h"
#include "core/backend.h"
#include "dist/dist_device.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

namespace {

using namespace ndl_cli;

bool have_gpu(std::string *why) {
  const char *w = nullptr;
  if (ndl_backend_cuda(&w)) return true;
  *why = w ? w : "no CUDA backend";
  return false;
}

#define NEED_GPU()                                              \
  do {                                                          \
    std::string why_;                                           \
    if (!have_gpu(&why_)) NDL_NO_GPU(why_);                     \
  } while (0)

// The mpirun prefix for np ranks, or "" (with *why) when this build or machine cannot run one.
std::string mpirun(int np, std::string *why) {
#if defined(NDL_HAVE_MPI) && defined(NDL_MPIRUN_CMD)
  if (system("command -v mpirun >/dev/null 2>&1") != 0) return *why = "mpirun is not installed", "";
  return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " NDL_MPIRUN_CMD " -np " + std::to_string(np) + " ";
#else
  (void)np;
  return *why = "this build has no MPI (NDL_MPI=OFF)", "";
#endif
}

class GpuTrain : public WorkspaceTest {
 protected:
  GpuTrain() : WorkspaceTest("ndl_gpu_") {}
  // ndl-train with per-step losses in <dir>/<log>; prefix: "" or an mpirun prefix.
  RunResult train(const std::string &args, const std::string &log, const std::string &prefix = "") {
    return run_shell("cd '" + dir + "' && timeout -k 5 300 " + prefix + NDL_TRAIN_BIN " --quiet --data " + data +
                         " --batch-size 50 --log-steps --log " + log + " " + args,
                     dir);
  }
  // The same flags on the CPU and on the GPU (logs cpu.jsonl and gpu.jsonl), both exiting with code;
  // their stderr in cpu_err and gpu_err. Call through ASSERT_NO_FATAL_FAILURE.
  void cpu_and_gpu(const std::string &args, int code = 0) {
    RunResult c = train(args + "--device cpu", "cpu.jsonl"), g = train(args + "--device cuda", "gpu.jsonl");
    cpu_err = c.err;
    gpu_err = g.err;
    ASSERT_EQ(c.code, code) << c.err;
    ASSERT_EQ(g.code, code) << g.err;
  }
  std::string cpu_err, gpu_err;
  // The per-step losses of a --log-steps file.
  std::vector<double> losses(const std::string &log) {
    std::vector<double> v;
    for (const std::string &l : lines(slurp(dir + "/" + log))) {
      size_t p = l.find("\"loss\":");
      if (l.rfind("{\"step\":", 0) == 0 && p != std::string::npos) v.push_back(std::stod(l.substr(p + 7)));
    }
    return v;
  }
  // got follows ref step by step: |got - ref| <= tol * |ref| (+ tol when rel is false), over n steps.
  void expect_follows(const std::vector<double> &ref, const std::vector<double> &got, size_t n, double tol,
                      bool rel = true) {
    ASSERT_GE(ref.size(), n);
    ASSERT_GE(got.size(), n);
    for (size_t i = 0; i < n; i++)
      EXPECT_LE(std::fabs(got[i] - ref[i]), rel ? tol * std::fabs(ref[i]) : tol)
          << "step " << i + 1 << ": cpu " << ref[i] << " gpu " << got[i];
  }
};

const std::string kSgd = "--optimizer sgd --lr 0.05 --epochs 3 --max-steps 50 ";

TEST_F(GpuTrain, SgdFiftyStepsFollowTheCpu) {
  NEED_GPU();
  ASSERT_NO_FATAL_FAILURE(cpu_and_gpu(kSgd));
  expect_follows(losses("cpu.jsonl"), losses("gpu.jsonl"), 50, 1e-5);
}

TEST_F(GpuTrain, AdamFirstStepsFollowTheCpu) {
  NEED_GPU();
  ASSERT_NO_FATAL_FAILURE(cpu_and_gpu("--optimizer adam --lr 0.001 --epochs 1 --max-steps 10 "));
  expect_follows(losses("cpu.jsonl"), losses("gpu.jsonl"), 10, 1e-5, false);
}

TEST_F(GpuTrain, AugmentFollowsTheCpu) {  // the augmented slice is uploaded, same host draws
  NEED_GPU();
  ASSERT_NO_FATAL_FAILURE(cpu_and_gpu(kSgd + "--augment --max-steps 20 "));
  expect_follows(losses("cpu.jsonl"), losses("gpu.jsonl"), 20, 1e-5);
}

TEST_F(GpuTrain, RanksSharingTheGpuFollowOneRank) {
  NEED_GPU();
  std::string why, mpi = mpirun(2, &why);
  if (mpi.empty()) GTEST_SKIP() << why;
  RunResult one = train(kSgd + "--device cuda --sync-bn", "one.jsonl");
  RunResult two = train(kSgd + "--device cuda --collectives mpi", "two.jsonl", mpi);
  ASSERT_EQ(one.code, 0) << one.err;
  ASSERT_EQ(two.code, 0) << two.err;
  expect_follows(losses("one.jsonl"), losses("two.jsonl"), 50, 1e-5);
}

TEST_F(GpuTrain, NcclWithOneRankEndToEnd) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  RunResult plain = train(kSgd + "--device cuda", "plain.jsonl");
  RunResult nccl = train(kSgd + "--device cuda --collectives nccl --verbose", "nccl.jsonl");
  ASSERT_EQ(plain.code, 0) << plain.err;
  ASSERT_EQ(nccl.code, 0) << nccl.err;
  EXPECT_NE(nccl.err.find("collectives: nccl"), std::string::npos) << nccl.err;
  expect_follows(losses("plain.jsonl"), losses("nccl.jsonl"), 50, 0.0);  // a one-rank sum is the identity
}

TEST_F(GpuTrain, NcclRefusesRanksSharingAGpu) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  if (ndl_dist_gpu_count() > 1) GTEST_SKIP() << "two ranks get a GPU each here";
  std::string why, mpi = mpirun(2, &why);
  if (mpi.empty()) GTEST_SKIP() << why;
  RunResult r = train(kSgd + "--device cuda --collectives nccl", "x.jsonl", mpi);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--collectives nccl: 2 ranks on this node share 1 GPU(s)"), std::string::npos) << r.err;
}

// Whether the device is tests/cuda_emu's emulation (its runtime exports ndl_emu_enqueue): there a
// run can be given two GPUs (NDL_EMU_GPUS) and NCCL can be made to fail (NDL_EMU_NCCL_FAIL_AT).
bool emulated() { return dlsym(RTLD_DEFAULT, "ndl_emu_enqueue") != nullptr; }

// An mpirun prefix for 2 ranks with a GPU each ("" and *why when there are not two).
std::string two_ranks_two_gpus(std::string *why) {
  std::string mpi = mpirun(2, why);
  if (mpi.empty()) return "";
  if (emulated()) return "env NDL_EMU_GPUS=2 " + mpi;
  if (ndl_dist_gpu_count() < 2) return *why = "fewer than 2 GPUs", "";
  return mpi;
}

TEST_F(GpuTrain, NcclRanksWithAGpuEachFollowOneRank) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  std::string why, mpi = two_ranks_two_gpus(&why);
  if (mpi.empty()) GTEST_SKIP() << why;
  RunResult one = train(kSgd + "--device cuda --sync-bn", "one.jsonl");
  RunResult two = train(kSgd + "--device cuda --verbose", "two.jsonl", mpi);  // the default: nccl
  ASSERT_EQ(one.code, 0) << one.err;
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_NE(two.err.find("collectives: nccl"), std::string::npos) << two.err;
  expect_follows(losses("one.jsonl"), losses("two.jsonl"), 50, 1e-5);
}

TEST_F(GpuTrain, NcclCarriesSyncBnSumsOnTheGpu) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  if (!emulated()) GTEST_SKIP() << "which collective NCCL runs first is seen through the emulated device's hook";
  std::string why, mpi = two_ranks_two_gpus(&why);
  if (mpi.empty()) GTEST_SKIP() << why;
  // step 1's first NCCL collective is the first BatchNorm's SyncBN sums, not the gradient all-reduce
  RunResult r = train(kSgd + "--device cuda --collectives nccl", "fail.jsonl", "env NDL_EMU_NCCL_FAIL_AT=1 " + mpi);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("NCCL failed in syncbn allreduce (NCCL collective #1)"), std::string::npos) << r.err;
}

TEST_F(GpuTrain, NcclThatCannotLoadIsExit5WhenAskedForAndMpiByDefault) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  std::string why, mpi = two_ranks_two_gpus(&why);
  if (mpi.empty()) GTEST_SKIP() << why;
  std::string gone = "env NDL_NCCL_LIB=/nonexistent/libnccl.so.2 " + mpi;
  RunResult asked = train(kSgd + "--device cuda --collectives nccl --max-steps 5", "asked.jsonl", gone);
  EXPECT_EQ(asked.code, 5) << asked.err;
  EXPECT_NE(asked.err.find("NCCL could not be loaded on 2 of 2 rank(s)"), std::string::npos) << asked.err;
  RunResult dflt = train(kSgd + "--device cuda --verbose", "dflt.jsonl", gone);
  RunResult mpi_path = train(kSgd + "--device cuda --collectives mpi", "mpi.jsonl", mpi);
  ASSERT_EQ(dflt.code, 0) << dflt.err;
  ASSERT_EQ(mpi_path.code, 0) << mpi_path.err;
  EXPECT_NE(dflt.err.find("through MPI instead"), std::string::npos) << dflt.err;
  expect_follows(losses("mpi.jsonl"), losses("dflt.jsonl"), 50, 0.0);  // the same path, the same bits
}

TEST_F(GpuTrain, NcclPeerThatStopsAnsweringIsExit5) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  std::string why, mpi = two_ranks_two_gpus(&why);
  if (mpi.empty()) GTEST_SKIP() << why;
  // LayerNorm: no SyncBN sums, so step 3's first collective is the gradient all-reduce on NCCL
  RunResult r = train(kSgd + "--device cuda --collectives nccl --norm layer --timeout 3", "hang.jsonl",
                      "env NDL_FAULT=rank=1,step=3,action=hang " + mpi);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("instead of joining grad allreduce"), std::string::npos) << r.err;
  // whichever notices first: rank 0's NCCL deadline, or the hung rank's own step watchdog
  EXPECT_TRUE(r.err.find("(NCCL collective #") != std::string::npos || r.err.find("stalled for") != std::string::npos)
      << r.err;
}

TEST_F(GpuTrain, NcclCollectiveThatNeverFinishesIsATimeoutExit5) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  if (!emulated()) GTEST_SKIP() << "a collective that never finishes is injected by the emulated device only";
  RunResult r = train(kSgd + "--device cuda --collectives nccl --timeout 2", "stall.jsonl",
                      "env NDL_EMU_NCCL_STALL_AT=4 ");
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("timed out after"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(NCCL collective #4)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("communicator aborted"), std::string::npos) << r.err;
}

TEST_F(GpuTrain, NcclAsynchronousErrorIsExit5) {
  NEED_GPU();
  if (!ndl_dist_nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  if (!emulated()) GTEST_SKIP() << "a failing NCCL link is injected by the emulated device only";
  RunResult r = train(kSgd + "--device cuda --collectives nccl", "fail.jsonl", "env NDL_EMU_NCCL_FAIL_AT=4 ");
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("NCCL failed in"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("remote process exited or there was a network error"), std::string::npos) << r.err;
}

// Running out of device memory at any allocation (the data sets' upload, parameters, the step's
// arena, scratch) is exit 1 with one line, never a crash; too little for the backend itself makes
// --device cuda a usage error (exit 2) naming why.
TEST_F(GpuTrain, OutOfDeviceMemoryAnywhereIsOneLineNeverACrash) {
  NEED_GPU();
  if (!emulated()) GTEST_SKIP() << "a small device memory is the emulated device's (NDL_EMU_MEM_MB)";
  int oom = 0, ok = 0;
  for (int mb : {8, 33, 34, 35, 36, 38, 40, 44, 48, 64}) {
    RunResult r = train(kSgd + "--device cuda --max-steps 5", "oom.jsonl", "env NDL_EMU_MEM_MB=" + std::to_string(mb) + " ");
    SCOPED_TRACE("NDL_EMU_MEM_MB=" + std::to_string(mb) + ": " + r.err);
    ASSERT_TRUE(r.code == 0 || r.code == 1 || r.code == 2) << r.code;
    if (r.code == 0) {
      ok++;
      continue;
    }
    oom++;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
    EXPECT_EQ(r.err.rfind("ndl-train: ", 0), 0u);
    EXPECT_NE(r.err.find(r.code == 2 ? "--device cuda: no CUDA device usable" : "memory"), std::string::npos);
  }
  EXPECT_GT(oom, 1) << "no limit ran out of memory";
  EXPECT_GT(ok, 0) << "no limit was enough";
}

// A diverging run: the GPU keeps up to 128 steps' losses on the device between reads, yet stops with
// exit 6 naming the same step as the CPU, having logged the same steps before it.
TEST_F(GpuTrain, DivergingRunNamesTheSameStepAsTheCpu) {
  NEED_GPU();
  ASSERT_NO_FATAL_FAILURE(cpu_and_gpu("--optimizer sgd --lr 1e30 --epochs 1 ", 6));
  auto named = [](const std::string &err) { return err.substr(err.find("loss became")); };
  EXPECT_EQ(named(gpu_err), named(cpu_err));
  EXPECT_EQ(losses("gpu.jsonl").size(), losses("cpu.jsonl").size());
}

TEST_F(GpuTrain, CheckpointMovesBetweenGpuAndCpu) {
  NEED_GPU();
  std::string base = "--optimizer adam --epochs 2 --drop-prob 0 ";
  RunResult g2 = train(base + "--device cuda", "g2.jsonl"), c2 = train(base + "--device cpu", "c2.jsonl");
  ASSERT_EQ(g2.code, 0) << g2.err;
  ASSERT_EQ(c2.code, 0) << c2.err;
  // epoch 1 on the GPU, epoch 2 on the CPU from its checkpoint; and the other way round
  RunResult a = train(base + "--device cuda --epochs 1 --checkpoint-dir ga", "ga.jsonl");
  ASSERT_EQ(a.code, 0) << a.err;
  RunResult b = train(base + "--device cpu --resume ga", "ga.jsonl");
  ASSERT_EQ(b.code, 0) << b.err;
  RunResult c = train(base + "--device cpu --epochs 1 --checkpoint-dir cb", "cb.jsonl");
  ASSERT_EQ(c.code, 0) << c.err;
  RunResult d = train(base + "--device cuda --resume cb", "cb.jsonl");
  ASSERT_EQ(d.code, 0) << d.err;
  // the same 40 steps, each step's loss within 1e-5 of the run that stayed on one device
  expect_follows(losses("g2.jsonl"), losses("ga.jsonl"), 40, 1e-5, false);
  expect_follows(losses("c2.jsonl"), losses("cb.jsonl"), 40, 1e-5, false);
}

TEST_F(GpuTrain, CudaGraphFollowsEagerSteps) {
  NEED_GPU();
  std::string a = kSgd + "--device cuda --model mlp --drop-prob 0 ";  // dropout keeps steps eager
  RunResult e = train(a + "--save eager.safetensors", "eager.jsonl");
  RunResult g = train(a + "--save graph.safetensors --cuda-graph --verbose", "graph.jsonl");
  ASSERT_EQ(e.code, 0) << e.err;
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_EQ(g.err.find("eager steps"), std::string::npos) << "the capture fell back: " << g.err;
  expect_follows(losses("eager.jsonl"), losses("graph.jsonl"), 50, 1e-6);
  // host-side state a forward keeps (BatchNorm's num_batches_tracked, running statistics) must not
  // be skipped by a replay: the saved weights and buffers are the eager run's
  EXPECT_TRUE(slurp(dir + "/eager.safetensors") == slurp(dir + "/graph.safetensors"))
      << "--save after --cuda-graph differs from the eager run's";
  // MLPResNet with dropout: the masks are drawn on the host and uploaded before each replay
  RunResult de = train(kSgd + "--device cuda --drop-prob 0.2", "drop_eager.jsonl");
  RunResult dg = train(kSgd + "--device cuda --drop-prob 0.2 --cuda-graph --verbose", "drop_graph.jsonl");
  ASSERT_EQ(de.code, 0) << de.err;
  ASSERT_EQ(dg.code, 0) << dg.err;
  EXPECT_EQ(dg.err.find("eager steps"), std::string::npos) << "the capture fell back: " << dg.err;
  expect_follows(losses("drop_eager.jsonl"), losses("drop_graph.jsonl"), 50, 1e-6);
}

}  // namespace
