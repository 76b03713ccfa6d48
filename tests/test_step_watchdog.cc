// test_step_watchdog.cc: the step watchdog module in-process (no ndl-train, no MPI): it fires after
// the phase's allowance without progress, with the stall line and exit 5 (death tests); heartbeats,
// phase changes and a running collective keep it quiet; phase keys and allowances. Small enough for
// a ThreadSanitizer build (the trainer thread and the watchdog thread share only atomics).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "dist/dist.h"
#include "dist/step_watchdog.h"

namespace {

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// Death tests re-run the test in a fresh process (the watchdog thread must not be forked).
class StepWatchdogEnv : public ::testing::Environment {
  void SetUp() override { ::testing::FLAGS_gtest_death_test_style = "threadsafe"; }
};
const auto *env = ::testing::AddGlobalTestEnvironment(new StepWatchdogEnv);

TEST(StepWatchdog, PhaseKeysLabelsAndAllowances) {
  EXPECT_EQ(ndl_phase_from_key("forward"), NDL_PHASE_FORWARD);
  EXPECT_EQ(ndl_phase_from_key("checkpoint"), NDL_PHASE_CKPT_WRITE);
  EXPECT_EQ(ndl_phase_from_key("nowhere"), NDL_PHASE_COUNT);
  EXPECT_STREQ(ndl_phase_label(NDL_PHASE_DATA), "data wait");
  EXPECT_STREQ(ndl_phase_label(NDL_PHASE_CKPT_WRITE), "checkpoint write");
  for (int p = 0; p < NDL_PHASE_COUNT; p++)
    EXPECT_EQ(ndl_phase_from_key(ndl_phase_key((ndl_phase)p)), p);
  EXPECT_DOUBLE_EQ(ndl_phase_allowance(NDL_PHASE_FORWARD, 2.0), 2.0);
  EXPECT_DOUBLE_EQ(ndl_phase_allowance(NDL_PHASE_CKPT_WRITE, 2.0), 2.0 * NDL_WATCHDOG_IO_FACTOR);
}

TEST(StepWatchdog, StallEndsTheProcessWith5NamingPhaseStepEpoch) {
  EXPECT_EXIT(
      {
        ndl_watchdog *w = nullptr;
        if (ndl_watchdog_start(&w, nullptr, 0.3) != NDL_OK) exit(1);
        ndl_watchdog_phase(w, NDL_PHASE_BACKWARD, 7, 2);
        sleep_s(30);
        exit(0);
      },
      ::testing::ExitedWithCode(5), "ndl-train: stalled for [0-9.]+ s in backward at step 7 \\(epoch 2\\)");
}

TEST(StepWatchdog, HeartbeatsAndPhaseChangesAreProgress) {
  ndl_watchdog *w = nullptr;
  ASSERT_EQ(ndl_watchdog_start(&w, nullptr, 1.0), NDL_OK);
  ndl_watchdog_phase(w, NDL_PHASE_EVAL, 1, 1);
  for (int i = 0; i < 20; i++) {  // 2 s of evaluation, a beat every 0.1 s
    sleep_s(0.1);
    ndl_watchdog_beat(w);
  }
  for (int i = 0; i < 20; i++) {  // 2 s of steps, a phase every 0.1 s
    sleep_s(0.1);
    ndl_watchdog_phase(w, (ndl_phase)(NDL_PHASE_DATA + i % 4), i + 2, 1);
  }
  ndl_watchdog_stop(w);  // still alive: no stall was reported
}

TEST(StepWatchdog, IoPhaseAndCollectiveGetLongerAllowances) {
  ndl_watchdog *w = nullptr;
  ASSERT_EQ(ndl_watchdog_start(&w, nullptr, 0.5), NDL_OK);
  ndl_watchdog_phase(w, NDL_PHASE_CKPT_WRITE, 3, 1);
  sleep_s(1.2);  // < 4 x 0.5 s
  ndl_watchdog_phase(w, NDL_PHASE_ALLREDUCE, 4, 1);
  ndl_watchdog_collective(w, 0.5);  // the collective's own deadline reports first: + 5 s here
  sleep_s(1.5);
  ndl_watchdog_collective(w, 0);
  ndl_watchdog_stop(w);
}

TEST(StepWatchdog, StallInsideACollectivePastItsDeadlinePlus5sStillFires) {
  EXPECT_EXIT(
      {
        ndl_watchdog *w = nullptr;
        if (ndl_watchdog_start(&w, nullptr, 0.2) != NDL_OK) exit(1);
        ndl_watchdog_phase(w, NDL_PHASE_ALLREDUCE, 9, 1);
        ndl_watchdog_collective(w, 0.2);
        sleep_s(30);
        exit(0);
      },
      ::testing::ExitedWithCode(5), "stalled for ([5-9]|[1-9][0-9])\\.[0-9] s in allreduce at step 9");
}

TEST(StepWatchdog, NullIsANoOp) {
  ndl_watchdog_phase(nullptr, NDL_PHASE_FORWARD, 1, 1);
  ndl_watchdog_beat(nullptr);
  ndl_watchdog_collective(nullptr, 1.0);
  ndl_watchdog_stop(nullptr);
}

}  // namespace
