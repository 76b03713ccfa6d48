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
#include "trainer_outcome.h"

namespace {

using namespace ndl_cli;

TrainerOutcome train(const std::string &data, const ndl_backend *be, ndl_optimizer_kind opt, double drop,
                     int augment, int epochs) {
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
  return run_trainer(c, be, [be](const ndl_trainer &t) {
    EXPECT_EQ(t.dev != nullptr, be->device != NDL_DEV_CPU) << "the device path runs exactly off the CPU";
  });
}

class TrainerFenced : public WorkspaceTest {
 protected:
  TrainerFenced() : WorkspaceTest("ndl_trfenced_") {}
};

TEST_F(TrainerFenced, AdamWithDropoutMatchesTheCpuBitwise) {
  const ndl_backend *cpu = ndl_backend_for(NDL_DEV_CPU), *dev = ndl_fenced_backend();
  expect_same_outcome(train(data, cpu, NDL_OPT_ADAM, 0.1, 0, 2), train(data, dev, NDL_OPT_ADAM, 0.1, 0, 2));
}

TEST_F(TrainerFenced, SgdWithAugmentMatchesTheCpuBitwise) {
  const ndl_backend *cpu = ndl_backend_for(NDL_DEV_CPU), *dev = ndl_fenced_backend();
  expect_same_outcome(train(data, cpu, NDL_OPT_SGD, 0.0, 1, 1), train(data, dev, NDL_OPT_SGD, 0.0, 1, 1));
}

}  // namespace
