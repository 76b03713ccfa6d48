// trainer_outcome.h: run an in-process trainer (launch/trainer.h) on a given backend for its
// configured epochs and keep what a bitwise comparison of two runs needs: the last epoch's sums,
// the test metrics, the parameters and buffers (pulled to the host). Shared by the device-path
// suites (test_trainer_fenced, test_trainer_graph).
#ifndef NDL_TESTS_TRAINER_OUTCOME_H
#define NDL_TESTS_TRAINER_OUTCOME_H

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "launch/config.h"
#include "launch/trainer.h"

struct TrainerOutcome {
  double loss_sum = 0, test_err = 0, test_loss = 0;
  int64_t errors = 0, seen = 0, step = 0;
  std::vector<float> params, buffers;
};

// Train c on be, then evaluate; inspect (may be empty) sees the trainer before it is freed.
inline TrainerOutcome run_trainer(const ndl_train_config &c, const ndl_backend *be,
                                  const std::function<void(const ndl_trainer &)> &inspect = {}) {
  ndl_trainer t;
  TrainerOutcome o;
  ndl_status st = ndl_trainer_init_on(&t, &c, nullptr, 1, be);
  EXPECT_EQ(st, NDL_OK) << ndl_last_error();
  if (st == NDL_OK) {
    for (; t.epoch < c.epochs; t.epoch++) {
      ndl_epoch_end end;
      EXPECT_EQ(ndl_trainer_run_epoch(&t, &end), NDL_OK) << ndl_last_error();
    }
    o.loss_sum = t.cur.loss_sum;
    o.errors = t.cur.errors;
    o.seen = t.cur.seen;
    o.step = t.step;
    EXPECT_EQ(ndl_trainer_evaluate(&t, &t.test, &o.test_err, &o.test_loss), NDL_OK) << ndl_last_error();
    ndl_params_pull(&t.env.params);
    ndl_params_pull(&t.env.buffers);
    o.params.assign(t.env.params.host, t.env.params.host + t.env.params.numel);
    o.buffers.assign(t.env.buffers.host, t.env.buffers.host + t.env.buffers.numel);
    if (inspect) inspect(t);
  }
  ndl_trainer_free(&t);
  return o;
}

// Two runs that must agree bit for bit.
inline void expect_same_outcome(const TrainerOutcome &a, const TrainerOutcome &b) {
  EXPECT_GT(a.step, 0);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.loss_sum, b.loss_sum);
  EXPECT_EQ(a.errors, b.errors);
  EXPECT_EQ(a.seen, b.seen);
  EXPECT_EQ(a.test_err, b.test_err);
  EXPECT_EQ(a.test_loss, b.test_loss);
  EXPECT_TRUE(a.params == b.params) << "parameters differ";
  EXPECT_TRUE(a.buffers == b.buffers) << "buffers (BatchNorm running statistics, batch counts) differ";
}

#endif
