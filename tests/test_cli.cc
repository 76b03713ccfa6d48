// test_cli.cc: ndl-train end to end on small IDX files the tests generate (a learnable synthetic
// task): training lowers the loss and reaches a stated accuracy, --save/--eval-only --load reproduce
// the metrics, resume is bitwise, --log writes JSON Lines, and every bad input gets its exit code
// and a one-line message without leaving a partial output file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli_util.h"
#include "core/backend.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

namespace {

using namespace ndl_cli;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = make_workspace("ndl_cli_", &data);
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }
  RunResult run(const std::string &args) { return run_shell(std::string(NDL_TRAIN_BIN) + " --quiet " + args, dir); }
  // Train quickly on the synthetic data with extra options.
  RunResult train(const std::string &extra) {
    return run("--data " + data + " --batch-size 50 --hidden-dim 32 --blocks 1 --lr 0.01 " + extra);
  }
  std::string dir, data;
};

TEST_F(Cli, TrainingLowersLossAndLearnsTheTask) {
  RunResult r = train("--epochs 3");
  ASSERT_EQ(r.code, 0) << r.err;
  auto ls = lines(r.out);
  ASSERT_EQ(ls.size(), 3u) << r.out;
  EXPECT_EQ(ls[0].rfind("epoch 1/3 train_err ", 0), 0u) << ls[0];
  EXPECT_NE(ls[0].find(" samples/s"), std::string::npos);
  EXPECT_LT(field(ls[2], "train_loss"), field(ls[0], "train_loss"));
  EXPECT_LE(field(ls[2], "test_err"), 0.05) << ls[2];
  EXPECT_TRUE(r.err.empty()) << "stderr must be empty without a TTY: " << r.err;
}

TEST_F(Cli, SaveThenEvalOnlyLoadReproducesTheMetrics) {
  std::string w = dir + "/w.safetensors";
  RunResult r = train("--epochs 2 --save " + w);
  ASSERT_EQ(r.code, 0) << r.err;
  auto ls = lines(r.out);
  RunResult e = run("--data " + data + " --batch-size 50 --hidden-dim 32 --blocks 1 --eval-only --load " + w);
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_DOUBLE_EQ(field(e.out, "test_err"), field(ls.back(), "test_err"));
  EXPECT_DOUBLE_EQ(field(e.out, "test_loss"), field(ls.back(), "test_loss"));
}

TEST_F(Cli, ResumeMidEpochAndAtEpochEndIsBitwise) {
  std::string full = dir + "/full.safetensors";
  ASSERT_EQ(train("--epochs 3 --augment --save " + full).code, 0);
  for (int k : {7, 20, 45}) {  // mid-epoch, exactly an epoch end (20 steps/epoch), a later epoch
    std::string ck = dir + "/ck" + std::to_string(k), part = dir + "/part.safetensors";
    RunResult a = train("--epochs 3 --augment --max-steps " + std::to_string(k) + " --checkpoint-dir " + ck +
                        " --checkpoint-every " + std::to_string(k));
    ASSERT_EQ(a.code, 0) << a.err;
    RunResult b = train("--epochs 3 --augment --resume " + ck + " --save " + part);
    ASSERT_EQ(b.code, 0) << b.err;
    EXPECT_EQ(slurp(part), slurp(full)) << "resumed after step " << k << " differs from the uninterrupted run";
  }
}

TEST_F(Cli, ResumeSkipsATruncatedNewestCheckpoint) {
  std::string ck = dir + "/ck", full = dir + "/full.safetensors", part = dir + "/part.safetensors";
  ASSERT_EQ(train("--epochs 2 --save " + full).code, 0);
  ASSERT_EQ(train("--epochs 2 --max-steps 10 --checkpoint-dir " + ck + " --checkpoint-every 5").code, 0);
  std::string newest = ck + "/ckpt-0000000010.safetensors";
  ASSERT_TRUE(exists(newest));
  ASSERT_EQ(truncate(newest.c_str(), 100), 0);  // as if the machine died while writing it
  RunResult b = train("--epochs 2 --resume " + ck + " --save " + part);
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(slurp(part), slurp(full));
}

TEST_F(Cli, LogWritesJsonLines) {
  std::string log = dir + "/log.jsonl";
  ASSERT_EQ(train("--epochs 2 --log " + log + " --log-steps").code, 0);
  auto ls = lines(slurp(log));
  ASSERT_EQ(ls.size(), 40u + 2u);
  for (auto &l : ls) EXPECT_TRUE(l.front() == '{' && l.back() == '}') << l;
  EXPECT_NE(ls[0].find("\"step\":1"), std::string::npos);
  EXPECT_NE(ls.back().find("\"epoch\":2,\"epochs\":2"), std::string::npos) << ls.back();
}

TEST_F(Cli, NeedleCompatReseedsEveryEpoch) {
  RunResult r = train("--epochs 2 --needle-compat");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out).size(), 2u);
}

TEST_F(Cli, OtherModelsAndOptimizersTrain) {
  for (std::string extra : {"--model mlp --hidden-dims 64,32 --reg 1e-4 --norm none", "--optimizer sgd --lr 0.1 --momentum 0.9",
                            "--optimizer adamw", "--optimizer rmsprop --norm layer", "--model mlp --norm batch --drop-prob 0.2 --nesterov --optimizer sgd --lr 0.05"}) {
    bool mlp = extra.rfind("--model mlp ", 0) == 0;  // --hidden-dim/--blocks are mlpresnet's: a usage error
    RunResult r = mlp ? run("--data " + data + " --batch-size 50 --lr 0.01 --epochs 2 " + extra) : train("--epochs 2 " + extra);
    ASSERT_EQ(r.code, 0) << extra << ": " << r.err;
    EXPECT_LE(field(lines(r.out).back(), "test_err"), 0.3) << extra;
  }
}

// ---- bad input: exit code, one message line naming the problem ----

void expect_failure(const RunResult &r, int code, const std::string &needle) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line expected: " << r.err;
  EXPECT_EQ(r.err.rfind("ndl-train: ", 0), 0u) << r.err;
}

TEST_F(Cli, UsageErrorsExit2) {
  expect_failure(train("--epochs abc"), 2, "--epochs: expected an integer");
  expect_failure(train("--lr -1"), 2, "--lr: expected a number");
  expect_failure(train("--lr inf"), 2, "--lr: expected a number");
  expect_failure(train("--batch-size 0"), 2, "--batch-size");
  expect_failure(train("--frobnicate 3"), 2, "--frobnicate: unknown option");
  expect_failure(train("--epochs"), 2, "--epochs: missing value");
  expect_failure(train("--optimizer adagrad"), 2, "expected one of sgd|adam|adamw|rmsprop");
  expect_failure(train("--quiet=1"), 2, "takes no value");
  expect_failure(train("--momentum 0.9"), 2, "--momentum: applies to --optimizer sgd only (the adam update");
  expect_failure(train("--optimizer rmsprop --nesterov"), 2, "--nesterov: applies to --optimizer sgd only");
  if (!ndl_backend_cuda(nullptr)) expect_failure(train("--device cuda"), 2, "--device cuda");  // (a GPU trains)
  expect_failure(train("--eval-only --resume " + dir), 2, "--load DIR/ckpt-");
  expect_failure(train("--resume " + dir + " --load " + dir + "/w.safetensors"), 2, "give one of them");
  EXPECT_EQ(run("--help").code, 0);
}

TEST_F(Cli, DataErrorsExit3) {
  expect_failure(run("--data " + dir + "/nowhere"), 3, "nowhere");
  std::string d2 = dir + "/d2";
  mkdir(d2.c_str(), 0755);
  make_split(d2, "train", 100, 3);
  expect_failure(run("--data " + d2), 3, "t10k-images-idx3-ubyte");  // missing test files
  // wrong magic
  make_split(d2, "t10k", 50, 4);
  std::string img = dir + "/magic";
  mkdir(img.c_str(), 0755);
  make_split(img, "train", 100, 5, false);
  make_split(img, "t10k", 50, 6, false);
  std::string raw = slurp(img + "/t10k-images-idx3-ubyte");
  raw[3] = 0x04;
  write_file(img + "/t10k-images-idx3-ubyte", raw, false);
  expect_failure(run("--data " + img), 3, "magic");
}

TEST_F(Cli, MalformedFilesExit3) {
  struct Case {
    std::string name, needle;
  } cases[] = {{"truncated_gzip", "gzip"}, {"count_mismatch", "100"}, {"label_range", "label"}, {"zero", "0 items"}};
  for (auto &c : cases) {
    std::string d = dir + "/" + c.name;
    mkdir(d.c_str(), 0755);
    make_split(d, "train", 100, 7, true, c.name == "label_range" ? 5 : 0);
    make_split(d, "t10k", c.name == "zero" ? 0 : 50, 8);
    if (c.name == "truncated_gzip") {
      std::string gz = slurp(d + "/train-images-idx3-ubyte.gz");
      write_file(d + "/train-images-idx3-ubyte.gz", gz.substr(0, gz.size() / 2), false);
    }
    if (c.name == "count_mismatch") {
      std::string lab = dir + "/lab";
      mkdir(lab.c_str(), 0755);
      make_split(lab, "train", 90, 10);
      std::rename((lab + "/train-labels-idx1-ubyte.gz").c_str(), (d + "/train-labels-idx1-ubyte.gz").c_str());
    }
    RunResult r = run("--data " + d + " --batch-size 10");
    expect_failure(r, 3, c.needle);
  }
}

TEST_F(Cli, WeightsErrorsExit4AndLeaveTheModelFileAlone) {
  std::string w = dir + "/w.safetensors";
  ASSERT_EQ(train("--epochs 1 --save " + w).code, 0);
  // a wrong architecture: tensor shapes differ
  expect_failure(run("--data " + data + " --hidden-dim 16 --blocks 1 --eval-only --load " + w), 4, "shape");
  // a missing tensor: more blocks than the file has
  expect_failure(run("--data " + data + " --hidden-dim 32 --blocks 2 --eval-only --load " + w), 4, "missing");
  // a truncated body
  std::string t = dir + "/t.safetensors", body = slurp(w);
  write_file(t, body.substr(0, body.size() - 40), false);
  expect_failure(run("--data " + data + " --hidden-dim 32 --blocks 1 --eval-only --load " + t), 4, "t.safetensors");
  expect_failure(run("--data " + data + " --eval-only --load " + dir + "/none.safetensors"), 4, "none.safetensors");
  // --save into a directory that does not exist: exit 4, no file, no temporary left
  std::string out = dir + "/no/such/dir/w.safetensors";
  expect_failure(train("--epochs 1 --save " + out), 4, out);
  EXPECT_FALSE(exists(out));
}

TEST_F(Cli, CheckpointDirProblemsExit4) {
  std::string file = dir + "/plainfile";
  write_file(file, "x", false);
  expect_failure(train("--epochs 1 --checkpoint-dir " + file + "/sub"), 4, "plainfile/sub");
  expect_failure(train("--epochs 1 --resume " + dir + "/empty"), 4, "empty");
  std::string empty = dir + "/emptydir";
  mkdir(empty.c_str(), 0755);
  expect_failure(train("--epochs 1 --resume " + empty), 4, "no checkpoint");
}

TEST_F(Cli, NonFiniteLossExits6NamingTheStep) {
  RunResult r = train("--epochs 1 --optimizer sgd --lr 1e30 --norm none");
  expect_failure(r, 6, "at step ");
}

}  // namespace

namespace {

// The progress bar appears on a terminal (here a pseudo-terminal from util-linux `script`), never on
// stdout, and --quiet removes it.
TEST_F(Cli, ProgressBarOnlyOnATerminal) {
  if (system("command -v script >/dev/null 2>&1") != 0) GTEST_SKIP() << "util-linux script not installed";
  std::string base = std::string(NDL_TRAIN_BIN) + " --data " + data + " --batch-size 50 --hidden-dim 32 --blocks 1 --epochs 1";
  std::string tty_out = dir + "/tty.txt", plain = dir + "/plain.txt";
  // stdout goes to a file, stderr stays on the pseudo-terminal that script records
  std::string cmd = "script -qec \"" + base + " > " + plain + "\" " + tty_out + " >/dev/null 2>&1";
  ASSERT_EQ(system(cmd.c_str()), 0);
  std::string tty = slurp(tty_out), out = slurp(plain);
  EXPECT_NE(tty.find("epoch 1/1 ["), std::string::npos) << tty;
  EXPECT_EQ(out.find('['), std::string::npos) << "the bar must not reach stdout: " << out;
  EXPECT_EQ(out.rfind("epoch 1/1 train_err", 0), 0u) << out;
  cmd = "script -qec \"" + base + " --quiet > " + plain + "\" " + tty_out + " >/dev/null 2>&1";
  ASSERT_EQ(system(cmd.c_str()), 0);
  EXPECT_EQ(slurp(tty_out).find("epoch 1/1 ["), std::string::npos) << "--quiet must hide the bar";
}

}  // namespace
