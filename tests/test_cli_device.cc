// test_cli_device.cc: ndl-train's --device, --collectives and --cuda-graph (issue 10, item 6): every
// usage error (exit 2, one line naming the option and, for a missing GPU, the CUDA backend's own
// reason), the default falling back to the CPU where there is no GPU, and the CPU run unchanged by
// the options that apply to it. Runs without a GPU; the GPU-only paths skip where they cannot apply.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "cli_util.h"
#include "core/backend.h"
#include "dist/dist_device.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

namespace {

using namespace ndl_cli;

class CliDevice : public WorkspaceTest {
 protected:
  CliDevice() : WorkspaceTest("ndl_clidev_") {}
  RunResult run(const std::string &args) {
    return run_shell("cd '" + dir + "' && timeout 120 " NDL_TRAIN_BIN " --quiet " + args, dir);
  }
  RunResult train(const std::string &extra) {
    return run("--data " + data + " --batch-size 50 --epochs 1 --max-steps 3 " + extra);
  }
};

// Why this process has no CUDA backend ("" when it has one: a GPU machine).
std::string no_gpu_reason() {
  const char *why = nullptr;
  if (ndl_backend_cuda(&why)) return "";
  return why ? why : "no CUDA backend";
}

// An epoch line without its timing ("... test_loss X").
std::string metrics(const std::string &out) { return out.substr(0, out.find(" time ")); }

void expect_usage(const RunResult &r, const std::string &needle) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "want [" << needle << "] in stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line expected: " << r.err;
  EXPECT_EQ(r.err.rfind("ndl-train: ", 0), 0u) << r.err;
  EXPECT_EQ(r.out, "") << "nothing trained";
}

TEST_F(CliDevice, BadValuesAreUsageErrors) {
  expect_usage(train("--device gpu"), "--device: expected one of cpu|cuda, got 'gpu'");
  expect_usage(train("--device auto"), "--device: expected one of cpu|cuda, got 'auto'");
  expect_usage(train("--device"), "--device: missing value");
  expect_usage(train("--collectives gloo"), "--collectives: expected one of mpi|nccl, got 'gloo'");
  expect_usage(train("--collectives --device cpu"), "--collectives: missing value");
  expect_usage(train("--cuda-graph=yes"), "--cuda-graph: takes no value, got 'yes'");
}

TEST_F(CliDevice, CpuCombinationsAreUsageErrors) {
  expect_usage(train("--device cpu --collectives nccl"), "--collectives nccl with --device cpu");
  expect_usage(train("--collectives=nccl --device=cpu"), "--collectives nccl with --device cpu");
  expect_usage(train("--device cpu --cuda-graph"), "--cuda-graph with --device cpu");
  expect_usage(train("--cuda-graph --eval-only"), "--cuda-graph with --eval-only");
}

TEST_F(CliDevice, CudaWithoutGpuSaysWhy) {
  std::string why = no_gpu_reason();
  if (why.empty()) GTEST_SKIP() << "a GPU is visible: --device cuda is no usage error here";
  expect_usage(train("--device cuda"), "--device cuda: " + why);
  expect_usage(train("--device=cuda --collectives mpi"), "--device cuda: " + why);
  // the default falls back to the CPU, where NCCL and step capture cannot apply: said with the reason
  expect_usage(train("--collectives nccl"), "--collectives nccl: the run is on the CPU (" + why + ")");
  expect_usage(train("--cuda-graph"), "--cuda-graph: the run is on the CPU (" + why + ")");
}

TEST_F(CliDevice, DefaultIsCpuWithoutGpu) {
  if (no_gpu_reason().empty()) GTEST_SKIP() << "a GPU is visible: the default is cuda";
  RunResult r = train("--verbose");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("device: cpu (--device cpu), collectives: mpi"), std::string::npos) << r.err;
  // the options that apply to the CPU run change nothing: the same losses as the plain run
  RunResult plain = train("");
  RunResult cpu = train("--device cpu --collectives mpi");
  ASSERT_EQ(plain.code, 0) << plain.err;
  ASSERT_EQ(cpu.code, 0) << cpu.err;
  EXPECT_EQ(metrics(plain.out), metrics(cpu.out));
  EXPECT_EQ(metrics(r.out), metrics(cpu.out));
  EXPECT_NE(metrics(cpu.out).find("epoch 1/1 train_err"), std::string::npos) << cpu.out;
}

TEST_F(CliDevice, NcclNeedsTheBuild) {
  if (ndl_dist_nccl_built()) GTEST_SKIP() << "this build has NCCL";
  if (!no_gpu_reason().empty()) GTEST_SKIP() << "no GPU: --device cuda fails first (CudaWithoutGpuSaysWhy)";
  expect_usage(train("--device cuda --collectives nccl"), "--collectives nccl: this build has no NCCL");
}

}  // namespace
