// test_profile.cc: --profile (issue 11, item 1). The step profile's accounting (phases partition the
// wall time, SyncBN collectives move out of forward/backward, the allreduce phase splits into wait and
// transfer), then ndl-train end to end: the end-of-run table and the --log epoch lines' "profile"
// object exist and parse, every figure is >= 0 and the items sum to at most the wall time, a
// checkpoint shows up as checkpoint time, --profile is a flag (usage errors otherwise) that works
// without mpirun; and under mpirun (when NDL_MPIRUN_CMD is defined) 2 ranks report 12 SyncBN
// collectives per step (6 BatchNorm1d layers x one forward and one backward all-reduce), a rank that
// is late to the gradient all-reduce shows up as the other's wait, and ranks must agree on --profile.
#include <gtest/gtest.h>
#include <time.h>

#include <cmath>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "cli_util.h"
#include "dist/step_profile.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

namespace {

using namespace ndl_cli;

const char *const kTimed[] = {"data_wait", "forward", "backward", "allreduce_wait", "allreduce_transfer",
                              "syncbn", "optimizer", "eval", "checkpoint", "rest"};
const double kTol = 2e-3; // rounding of 4-6 printed decimals, summed over 10 items

void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) continue;
}

// ---- the accounting, in process ----

TEST(StepProfile, PhasesPartitionTheWindow) {
  ndl_profile *p = nullptr;
  ASSERT_EQ(ndl_profile_new(&p), NDL_OK);
  double drop[NDL_PROFILE_ITEMS];
  ndl_profile_take(p, drop);
  ndl_profile_enter(p, NDL_PHASE_DATA);
  sleep_s(0.01);
  ndl_profile_enter(p, NDL_PHASE_FORWARD);
  sleep_s(0.02);
  ndl_profile_collective(p, 1, 0.005, 0.001); // a SyncBN collective inside forward, 1 ms of waiting
  ndl_profile_enter(p, NDL_PHASE_BACKWARD);
  ndl_profile_collective(p, 1, 0.0, 0.0);
  ndl_profile_enter(p, NDL_PHASE_ALLREDUCE);
  sleep_s(0.01);
  ndl_profile_collective(p, 0, 0.004, 0.003); // the gradient all-reduce: 3 ms of waiting
  ndl_profile_enter(p, NDL_PHASE_OPTIMIZER);
  ndl_profile_enter(p, NDL_PROFILE_OUTSIDE);
  ndl_profile_enter(p, NDL_PHASE_CKPT_WRITE);
  sleep_s(0.01);
  ndl_profile_enter(p, NDL_PHASE_EVAL);
  ndl_profile_collective(p, 0, 0.002, 0.002); // eval's all-reduce stays in eval
  double f[NDL_PROFILE_ITEMS];
  ndl_profile_take(p, f);
  EXPECT_EQ(f[NDL_PROFILE_STEPS], 1);
  EXPECT_EQ(f[NDL_PROFILE_SYNCBN_CALLS], 2);
  EXPECT_DOUBLE_EQ(f[NDL_PROFILE_SYNCBN], 0.005);
  EXPECT_DOUBLE_EQ(f[NDL_PROFILE_AR_WAIT], 0.003);
  EXPECT_DOUBLE_EQ(f[NDL_PROFILE_SYNCBN_WAIT], 0.001);
  EXPECT_GE(f[NDL_PROFILE_DATA], 0.01);
  EXPECT_GE(f[NDL_PROFILE_FORWARD], 0.015);     // 20 ms less the 5 ms SyncBN
  EXPECT_LT(f[NDL_PROFILE_FORWARD], f[NDL_PROFILE_WALL] - 0.03);
  EXPECT_GE(f[NDL_PROFILE_AR_XFER], 0.007);     // 10 ms less the 3 ms wait
  EXPECT_GE(f[NDL_PROFILE_CKPT], 0.01);
  double sum = 0;
  for (int i = 0; i <= NDL_PROFILE_REST; i++) {
    EXPECT_GE(f[i], 0) << ndl_profile_key((ndl_profile_item)i);
    sum += f[i];
  }
  EXPECT_NEAR(sum, f[NDL_PROFILE_WALL], 1e-9);
  EXPECT_GE(f[NDL_PROFILE_WALL], 0.05);
  // the next window starts empty
  ndl_profile_take(p, f);
  EXPECT_EQ(f[NDL_PROFILE_STEPS], 0);
  EXPECT_EQ(f[NDL_PROFILE_SYNCBN], 0);
  EXPECT_LT(f[NDL_PROFILE_WALL], 0.05);
  ndl_profile_free(p);
  ndl_profile_enter(nullptr, NDL_PHASE_DATA); // NULL: no-op
  ndl_profile_collective(nullptr, 1, 1.0, 1.0);
}

// ---- ndl-train output parsing ----

struct Stat {
  double min = -1, mean = -1, max = -1;
};

// The "profile" object of a --log line: key -> min/mean/max (seconds), plus ranks/steps/syncbn_calls.
struct JsonProfile {
  bool found = false;
  std::map<std::string, Stat> s;
  double ranks = -1, steps = -1, syncbn_calls = -1;
};

JsonProfile parse_json_profile(const std::string &line) {
  JsonProfile p;
  size_t at = line.find("\"profile\":{");
  if (at == std::string::npos) return p;
  p.found = true;
  std::string obj = line.substr(at);
  std::smatch m;
  std::regex stat_re("\"([a-z_]+)_s\":\\{\"min\":([0-9.e+-]+),\"mean\":([0-9.e+-]+),\"max\":([0-9.e+-]+)\\}");
  for (auto it = std::sregex_iterator(obj.begin(), obj.end(), stat_re); it != std::sregex_iterator(); ++it)
    p.s[(*it)[1]] = Stat{std::stod((*it)[2]), std::stod((*it)[3]), std::stod((*it)[4])};
  auto num = [&](const char *key) {
    std::regex re(std::string("\"") + key + "\":([0-9]+)");
    return std::regex_search(obj, m, re) ? std::stod(m[1]) : -1.0;
  };
  p.ranks = num("ranks");
  p.steps = num("steps");
  p.syncbn_calls = num("syncbn_calls");
  return p;
}

// The end-of-run table: item -> min/mean/max per epoch; header counts; per-epoch lines.
struct Table {
  std::map<std::string, Stat> s;
  double ranks = -1, epochs = -1, steps = -1, syncbn = -1;
  std::vector<std::string> epoch_lines;
};

Table parse_table(const std::string &out) {
  Table t;
  std::smatch m;
  std::regex head("^profile: ([0-9]+) ranks?, ([0-9]+) epochs?, ([0-9]+) steps, ([0-9]+) syncbn collectives");
  std::regex row("^profile: ([a-z_]+) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+)$");
  for (const std::string &l : lines(out)) {
    if (std::regex_search(l, m, head)) {
      t.ranks = std::stod(m[1]);
      t.epochs = std::stod(m[2]);
      t.steps = std::stod(m[3]);
      t.syncbn = std::stod(m[4]);
    } else if (std::regex_match(l, m, row)) {
      t.s[m[1]] = Stat{std::stod(m[2]), std::stod(m[3]), std::stod(m[4])};
    } else if (l.rfind("profile: epoch ", 0) == 0) {
      t.epoch_lines.push_back(l);
    }
  }
  return t;
}

// Every timed item is there, min <= mean <= max, all >= 0, and the items sum to at most the wall.
void check_stats(const std::map<std::string, Stat> &s, const std::string &where) {
  ASSERT_TRUE(s.count("wall")) << where;
  ASSERT_TRUE(s.count("syncbn_wait")) << where;
  EXPECT_GE(s.at("syncbn_wait").min, 0) << where;
  EXPECT_LE(s.at("syncbn_wait").max, s.at("syncbn").max + 1e-6) << where; // a part of syncbn
  double sum_min = 0, sum_mean = 0;
  for (const char *k : kTimed) {
    ASSERT_TRUE(s.count(k)) << k << " missing in " << where;
    const Stat &v = s.at(k);
    EXPECT_GE(v.min, 0) << k << " in " << where;
    EXPECT_LE(v.min, v.mean + 1e-6) << k << " in " << where;
    EXPECT_LE(v.mean, v.max + 1e-6) << k << " in " << where;
    sum_min += v.min;
    sum_mean += v.mean;
  }
  const Stat &w = s.at("wall");
  EXPECT_GT(w.min, 0) << where;
  EXPECT_LE(sum_min, w.max + kTol) << where;
  EXPECT_LE(sum_mean, w.mean + kTol) << where;
  EXPECT_GE(sum_mean, w.mean - kTol) << where; // rest is wall minus the others: the sum is the wall
}

std::vector<std::string> epoch_log_lines(const std::string &log) {
  std::vector<std::string> v;
  for (const std::string &l : lines(slurp(log)))
    if (l.find("\"train_err\"") != std::string::npos) v.push_back(l);
  return v;
}

// The "profile" object of every epoch line of a --log file: present, for `ranks` ranks, `steps`
// steps and `syncbn_calls` SyncBN collectives each, with sane statistics. Returns them.
std::vector<JsonProfile> check_log_profiles(const std::string &log, int ranks, int steps, int syncbn_calls,
                                            size_t epochs) {
  std::vector<JsonProfile> out;
  std::vector<std::string> ep = epoch_log_lines(log);
  EXPECT_EQ(ep.size(), epochs);
  for (const std::string &l : ep) {
    JsonProfile p = parse_json_profile(l);
    EXPECT_TRUE(p.found) << l;
    if (!p.found) continue;
    EXPECT_EQ(p.ranks, ranks) << l;
    EXPECT_EQ(p.steps, steps) << l;
    EXPECT_EQ(p.syncbn_calls, syncbn_calls) << l;
    check_stats(p.s, l);
    out.push_back(p);
  }
  return out;
}

class ProfileCli : public WorkspaceTest {
 protected:
  ProfileCli() : WorkspaceTest("ndl_profile_") {}
  RunResult run(const std::string &args, const std::string &launcher = "") {
    return run_shell("cd '" + dir + "' && timeout 120 " + launcher + NDL_TRAIN_BIN + " --quiet " + args, dir);
  }
};

// World 1, no mpirun: 2 epochs of 20 steps with a checkpoint every 5 steps.
TEST_F(ProfileCli, OneProcessTableAndLog) {
  RunResult r = run("--data " + data + " --batch-size 50 --epochs 2 --profile --log log.jsonl "
                    "--checkpoint-dir ck --checkpoint-every 5");
  ASSERT_EQ(r.code, 0) << r.err;
  Table t = parse_table(r.out);
  EXPECT_EQ(t.ranks, 1) << r.out;
  EXPECT_EQ(t.epochs, 2) << r.out;
  EXPECT_EQ(t.steps, 40) << r.out;
  EXPECT_EQ(t.syncbn, 0) << r.out;
  check_stats(t.s, "table\n" + r.out);
  EXPECT_GT(t.s["forward"].mean, 0);
  EXPECT_GT(t.s["backward"].mean, 0);
  EXPECT_GT(t.s["optimizer"].mean, 0);
  EXPECT_GT(t.s["eval"].mean, 0);
  EXPECT_GT(t.s["checkpoint"].mean, 0); // 8 checkpoints were written
  EXPECT_EQ(t.s["syncbn"].max, 0);
  ASSERT_EQ(t.epoch_lines.size(), 2u) << r.out;
  EXPECT_NE(t.epoch_lines[0].find("profile: epoch 1 "), std::string::npos);
  EXPECT_NE(t.epoch_lines[1].find(" steps 20 "), std::string::npos) << t.epoch_lines[1];
  std::vector<JsonProfile> ep = check_log_profiles(dir + "/log.jsonl", 1, 20, 0, 2);
  ASSERT_EQ(ep.size(), 2u);
  for (JsonProfile &p : ep) {
    EXPECT_GT(p.s["checkpoint"].mean, 0);
    EXPECT_LE(p.s["wall"].max, 120.0);
  }
}

TEST_F(ProfileCli, OffByDefault) {
  RunResult r = run("--data " + data + " --batch-size 50 --epochs 1 --max-steps 3 --log log.jsonl");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("profile:"), std::string::npos) << r.out;
  EXPECT_EQ(slurp(dir + "/log.jsonl").find("\"profile\""), std::string::npos);
}

TEST_F(ProfileCli, FlagAndUsage) {
  RunResult r = run("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--profile"), std::string::npos) << r.out;
  r = run("--data " + data + " --profile=1");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--profile: takes no value"), std::string::npos) << r.err;
  r = run("--data " + data + " --profile --eval-only");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--profile with --eval-only"), std::string::npos) << r.err;
  // a flag: the next argument is not its value, and no usage error with world 1
  r = run("--profile --data " + data + " --batch-size 50 --epochs 1 --max-steps 2");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("usage"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("profile: 1 rank, 1 epoch, 2 steps"), std::string::npos) << r.out;
}

#ifdef NDL_MPIRUN_CMD
// Open MPI's own allocations show up as leaks under LeakSanitizer (the ASan suite), as in test_watchdog.
const std::string kMpiEnv = "env ASAN_OPTIONS=detect_leaks=0 ";

std::string mpirun(int np, const std::string &extra = "") {
  return kMpiEnv + NDL_MPIRUN_CMD + " --mca btl self,vader " + extra + " -np " + std::to_string(np) + " ";
}

// 2 ranks, default model (MLPResNet, 3 blocks x 2 BatchNorm1d, SyncBN on): 12 collectives per step.
TEST_F(ProfileCli, MpiTwoRanksSyncBnCount) {
  RunResult r = run("--data " + data + " --batch-size 50 --epochs 2 --threads 1 --profile --log log.jsonl",
                    mpirun(2));
  ASSERT_EQ(r.code, 0) << r.err;
  Table t = parse_table(r.out);
  EXPECT_EQ(t.ranks, 2) << r.out;
  EXPECT_EQ(t.steps, 40) << r.out;
  EXPECT_EQ(t.syncbn, 12 * 40) << r.out;
  check_stats(t.s, "table\n" + r.out);
  EXPECT_GT(t.s["syncbn"].min, 0);
  EXPECT_GT(t.s["allreduce_wait"].max + t.s["allreduce_transfer"].max, 0);
  EXPECT_NE(r.out.find(" syncbn_calls 240 steps 20 (mean over ranks)"), std::string::npos) << r.out;
  ASSERT_EQ(check_log_profiles(dir + "/log.jsonl", 2, 20, 240, 2).size(), 2u);
  // without SyncBN, none
  r = run("--data " + data + " --batch-size 50 --epochs 1 --max-steps 4 --threads 1 --no-sync-bn --profile",
          mpirun(2));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(parse_table(r.out).syncbn, 0) << r.out;
}

// Rank 1 sleeps 2 s before joining step 3's gradient all-reduce: rank 0 waits for it there (its
// allreduce wait is about 2 s, its transfer is not), and rank 1 itself waits for nobody.
TEST_F(ProfileCli, MpiLateRankIsWait) {
  RunResult r = run("--data " + data + " --batch-size 50 --epochs 1 --max-steps 6 --threads 1 --profile "
                    "--log log.jsonl",
                    mpirun(2, "-x NDL_FAULT=rank=1,step=3,action=slow,seconds=2,where=allreduce"));
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> ep = epoch_log_lines(dir + "/log.jsonl");
  ASSERT_EQ(ep.size(), 1u);
  JsonProfile p = parse_json_profile(ep[0]);
  ASSERT_TRUE(p.found);
  check_stats(p.s, ep[0]);
  EXPECT_GE(p.s["allreduce_wait"].max, 1.5) << ep[0];
  EXPECT_LT(p.s["allreduce_wait"].min, 1.0) << ep[0];
  // the waiting rank's wait is not transfer; the sleeper's sleep is in its allreduce phase, not a wait
  EXPECT_GE(p.s["allreduce_transfer"].max, 1.5) << ep[0];
  EXPECT_LT(p.s["allreduce_transfer"].min, 1.0) << ep[0];
}

// Rank 1 sends its arrival token, then sleeps 2 s inside step 3's gradient all-reduce (NDL_FAULT
// where=midway; no SyncBN, so that is the step's first collective): rank 0 has every token, so it
// counts the 2 s as transfer, not wait (rank 1 too, unless rank 0's token came after its sleep).
TEST_F(ProfileCli, MpiSlowCollectiveIsTransfer) {
  RunResult r = run("--data " + data + " --batch-size 50 --epochs 1 --max-steps 6 --threads 1 --no-sync-bn "
                    "--profile --log log.jsonl",
                    mpirun(2, "-x NDL_FAULT=rank=1,step=3,action=slow,seconds=2,where=midway"));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_NE(r.err.find("NDL_FAULT: sleeping 2.0 s in grad allreduce at step 3"), std::string::npos) << r.err;
  std::vector<std::string> ep = epoch_log_lines(dir + "/log.jsonl");
  ASSERT_EQ(ep.size(), 1u);
  JsonProfile p = parse_json_profile(ep[0]);
  ASSERT_TRUE(p.found);
  check_stats(p.s, ep[0]);
  EXPECT_GE(p.s["allreduce_transfer"].max, 1.5) << ep[0];
  EXPECT_LT(p.s["allreduce_wait"].min, 1.0) << ep[0];
}

// Ranks that disagree on --profile would run different collectives: refused at startup (exit 5).
TEST_F(ProfileCli, MpiRanksMustAgree) {
  std::string args = " --quiet --data " + data + " --batch-size 50 --epochs 1 --max-steps 2 --threads 1";
  RunResult r = run_shell("cd '" + dir + "' && timeout 120 " + kMpiEnv + NDL_MPIRUN_CMD +
                              " --mca btl self,vader -np 1 " + NDL_TRAIN_BIN + args + " --profile : -np 1 " +
                              NDL_TRAIN_BIN + args,
                          dir);
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("--profile"), std::string::npos) << r.err;
}
#endif

}  // namespace
