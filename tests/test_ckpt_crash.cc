// test_ckpt_crash.cc: SIGKILL ndl-train at seeded random moments while it checkpoints every step,
// resuming from the directory each time: every run either works on (until killed or done) or refuses
// cleanly (exit 4, one line), never crashes; temporary files of interrupted writes never pile up (at
// most one after a kill, none after a completed run); at most three checkpoints ever exist (two plus
// one between a rename and its prune); a run that completes saves weights bitwise equal to an
// uninterrupted run with the same flags. Bounded: at most 45 runs, about a minute at worst.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli_util.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

extern char **environ;

namespace {

using namespace ndl_cli;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ndl-train with args (split on spaces), stdout/stderr into files under dir; returns its pid.
pid_t spawn(const std::string &args, const std::string &dir) {
  std::vector<std::string> words{NDL_TRAIN_BIN};
  size_t at = 0;
  while (at < args.size()) {
    size_t end = args.find(' ', at);
    if (end == std::string::npos) end = args.size();
    if (end > at) words.push_back(args.substr(at, end - at));
    at = end + 1;
  }
  std::vector<char *> argv;
  for (auto &w : words) argv.push_back(&w[0]);
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, (dir + "/stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, (dir + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << "posix_spawn " << argv[0];
  return rc == 0 ? pid : -1;
}

// Wait for pid up to `limit` seconds (then SIGKILL it): exit code, or 128 + signal.
int wait_for(pid_t pid, double limit) {
  auto t0 = Clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (seconds_since(t0) > limit) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "ndl-train ran past " << limit << " s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct DirState {
  int checkpoints = 0, temps = 0, other = 0;
  std::vector<std::string> names;
};

DirState scan(const std::string &dir) {
  DirState s;
  DIR *d = opendir(dir.c_str());
  if (!d) return s;
  while (struct dirent *de = readdir(d)) {
    std::string n = de->d_name;
    if (n == "." || n == "..") continue;
    s.names.push_back(n);
    bool ckpt = n.size() == 27 && n.rfind("ckpt-", 0) == 0 && n.substr(15) == ".safetensors";
    if (ckpt)
      s.checkpoints++;
    else if (n.find(".safetensors.tmp.") != std::string::npos)
      s.temps++;
    else
      s.other++;
  }
  closedir(d);
  return s;
}

void wipe(const std::string &dir) {
  for (auto &n : scan(dir).names) unlink((dir + "/" + n).c_str());
}

class CkptCrash : public WorkspaceTest {
 protected:
  CkptCrash() : WorkspaceTest("ndl_ckcrash_") {}
};

TEST_F(CkptCrash, RandomKillsWhileCheckpointingResumeBitwiseOrRefuseCleanly) {
  const std::string flags = "--quiet --data " + data +
                            " --batch-size 50 --hidden-dim 128 --blocks 1 --lr 0.01 --epochs 2 --augment"
                            " --checkpoint-every 1 --checkpoint-dir ";
  const std::string ck = dir + "/ck", ref = dir + "/ref", full = dir + "/full.st", part = dir + "/part.st";
  auto t0 = Clock::now();
  ASSERT_EQ(wait_for(spawn(flags + ref + " --save " + full, dir), 240), 0) << slurp(dir + "/stderr");
  const double t_full = seconds_since(t0);
  std::mt19937 gen(20261130u);
  std::uniform_real_distribution<double> delay(0.0, 0.6 * t_full);
  int kills = 0, completed = 0, refused = 0, left_temp = 0, resumed = 0;
  auto loop0 = Clock::now();
  for (int i = 0; i < 45 && (seconds_since(loop0) < 60 || kills < 8); i++) {
    bool resume = scan(ck).checkpoints > 0;
    resumed += resume;
    pid_t pid = spawn(flags + ck + (resume ? " --resume " + ck : "") + " --save " + part, dir);
    ASSERT_GT(pid, 0);
    double wait = delay(gen);
    auto started = Clock::now();
    int status = 0;
    bool ended = false;
    while (!(ended = waitpid(pid, &status, WNOHANG) == pid) && seconds_since(started) < wait)
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    if (!ended) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string err = slurp(dir + "/stderr");
    DirState s = scan(ck);
    EXPECT_LE(s.temps, 1) << "run " << i << ": temporary files pile up";
    EXPECT_LE(s.checkpoints, 3) << "run " << i;
    EXPECT_EQ(s.other, 0) << "run " << i << ": unexpected files in the checkpoint directory";
    left_temp += s.temps > 0;
    if (code == 128 + SIGKILL) {
      kills++;
      continue;
    }
    if (code == 4) {  // a clean refusal: one line; start over
      EXPECT_EQ(lines(err).size(), 1u) << err;
      refused++;
      wipe(ck);
      continue;
    }
    ASSERT_EQ(code, 0) << "run " << i << (resume ? " (resumed)" : " (fresh)") << " crashed or failed: " << err;
    completed++;
    EXPECT_EQ(slurp(part), slurp(full)) << "run " << i << " completed with weights that differ";
    wipe(ck);
  }
  // the last one runs to the end
  bool resume = scan(ck).checkpoints > 0;
  int code = wait_for(spawn(flags + ck + (resume ? " --resume " + ck : "") + " --save " + part, dir), 240);
  ASSERT_EQ(code, 0) << slurp(dir + "/stderr");
  EXPECT_EQ(slurp(part), slurp(full)) << "the final " << (resume ? "resumed" : "fresh") << " run differs";
  DirState s = scan(ck);
  EXPECT_EQ(s.temps, 0) << "a temporary file survived a completed run";
  EXPECT_GE(s.checkpoints, 1);
  EXPECT_LE(s.checkpoints, 2);
  printf("[ figure ] uninterrupted run %.2f s; %d SIGKILLs (%d left a temporary file), %d runs resumed, "
         "%d completed before their kill, %d refused; loop %.1f s\n",
         t_full, kills, left_temp, resumed, completed, refused, seconds_since(loop0));
  EXPECT_GE(kills, 8);
}

}  // namespace
