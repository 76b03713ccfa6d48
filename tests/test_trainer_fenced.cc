// test_trainer_fenced.cc: ndl-train's device path (--device cuda's trainer: data sets uploaded once,
// the slice gathered by sample index or the augmented slice uploaded, labels on the device, loss and
// errors read back, evaluation on the uploaded test set) run on h/devcore's fenced backend, whose
// memory the host cannot touch, matches the CPU run bitwise: epoch sums, test metrics, parameters
// and buffers. Built only when tests/fenced_backend.c is in the tree (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "cli_util.h"
#include "fenced_backend.h"
#include "launch/config.h"
#include "launch/trainer.h"

namespace {

using namespace ndl_cli;

struct Outcome {
  double loss_sum = 0, test_err = 0, test_loss = 0;
  int64_t errors = 0, seen = 0, step = 0;
  std::vector<float> params, buffers;
};

Outcome train(const std::string &data, const ndl_backend *be, ndl_optimizer_kind opt, double drop, int augment,
              int epochs) {
  ndl_train_config c;
  ndl_config_defaults(&c);
  c.data_dir = data.c_str();
  c.batch_size = 64;  // 1000 images: a partial last batch
  c.epochs = epochs;
  c.drop_prob = drop;
  c.augment = augment;
  c.quiet = 1;
  c.optimizer = opt;
  c.lr = 0.01;
  ndl_trainer t;
  Outcome o;
  ndl_status st = ndl_trainer_init_on(&t, &c, nullptr, 1, be);
  EXPECT_EQ(st, NDL_OK) << ndl_last_error();
  if (st == NDL_OK) {
    EXPECT_EQ(t.dev != nullptr, be->device != NDL_DEV_CPU) << "the device path runs exactly off the CPU";
    for (; t.epoch < epochs; t.epoch++) {
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
  }
  ndl_trainer_free(&t);
  return o;
}

void expect_same(const Outcome &cpu, const Outcome &dev) {
  EXPECT_GT(cpu.step, 0);
  EXPECT_EQ(cpu.step, dev.step);
  EXPECT_EQ(cpu.loss_sum, dev.loss_sum);
  EXPECT_EQ(cpu.errors, dev.errors);
  EXPECT_EQ(cpu.seen, dev.seen);
  EXPECT_EQ(cpu.test_err, dev.test_err);
  EXPECT_EQ(cpu.test_loss, dev.test_loss);
  EXPECT_TRUE(cpu.params == dev.params) << "parameters differ";
  EXPECT_TRUE(cpu.buffers == dev.buffers) << "buffers (BatchNorm running statistics) differ";
}

class TrainerFenced : public WorkspaceTest {
 protected:
  TrainerFenced() : WorkspaceTest("ndl_trfenced_") {}
};

TEST_F(TrainerFenced, AdamWithDropoutMatchesTheCpuBitwise) {
  const ndl_backend *cpu = ndl_backend_for(NDL_DEV_CPU), *dev = ndl_fenced_backend();
  expect_same(train(data, cpu, NDL_OPT_ADAM, 0.1, 0, 2), train(data, dev, NDL_OPT_ADAM, 0.1, 0, 2));
}

TEST_F(TrainerFenced, SgdWithAugmentMatchesTheCpuBitwise) {
  const ndl_backend *cpu = ndl_backend_for(NDL_DEV_CPU), *dev = ndl_fenced_backend();
  expect_same(train(data, cpu, NDL_OPT_SGD, 0.0, 1, 1), train(data, dev, NDL_OPT_SGD, 0.0, 1, 1));
}

}  // namespace
