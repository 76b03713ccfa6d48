// test_trainer_graph.cc: --cuda-graph's step capture end to end without a GPU: a stand-in device
// backend (the CPU backend's code on host memory, registered as the test device) whose graph_begin
// records every vtable call instead of running it and whose replay runs the record, as a CUDA graph
// replays its kernels. A capture fails, as on a GPU, when the step copies to or from the host or
// waits for the device. Checks: the captured-and-replayed run matches the eager run (and the CPU
// run) bitwise, and the capture did happen. Built when the core has test devices (h/devcore).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "cli_util.h"
#include "core/backend.h"
#include "launch/config.h"
#include "launch/step_graph.h"
#include "launch/trainer.h"
#include "trainer_outcome.h"

namespace {

using namespace ndl_cli;

struct Call {
  enum Kind { COMPUTE, FUSED_BWD, FILL, ACCUM, STRIDED, COPY_D2D, UPDATE, GATHER } kind;
  ndl_ctx *ctx;
  ndl_tensor *node;
  ndl_tensor node_at, adj_at;  // the node (and its adj) as the kernels saw it: autograd changes them after
  ndl_grad_target targets[NDL_MAX_SRC];
  ndl_tensor src;  // by value: a caller's view may live on its stack
  float *dst;
  float value;
  int64_t n, row_len;
  void *d;
  const void *s;
  size_t bytes;
  ndl_optim_update u;
  int32_t *dl;
  const float *gsrc;
  const int32_t *gl;
  const int64_t *idx;
};

std::vector<Call> *rec;  // the capture in progress
bool rec_failed;
bool fail_next_end;  // the next graph_end fails, as a backend's capture can
int captures, replays;
const ndl_backend *cpu() { return ndl_backend_for(NDL_DEV_CPU); }

void run_call(const Call &c) {
  switch (c.kind) {
    case Call::COMPUTE: {
      ndl_tensor node = c.node_at;  // as it was built (autograd may release the graph's links after)
      cpu()->compute(c.ctx, &node);
      break;
    }
    case Call::FUSED_BWD: {
      ndl_tensor node = c.node_at, adj = c.adj_at;  // a CUDA graph holds these as kernel arguments
      node.adj = c.node_at.adj ? &adj : nullptr;
      cpu()->fused_backward(c.ctx, &node, c.targets);
      break;
    }
    case Call::FILL: cpu()->fill(c.dst, c.value, c.n); break;
    case Call::ACCUM: cpu()->accumulate(c.dst, &c.src); break;
    case Call::STRIDED: cpu()->strided_copy(&c.src, c.dst); break;
    case Call::COPY_D2D: cpu()->copy(c.d, c.s, c.bytes, NDL_COPY_D2D); break;
    case Call::UPDATE: cpu()->optim_update(&c.u); break;
    case Call::GATHER: cpu()->gather_batch(c.dst, c.dl, c.gsrc, c.gl, c.idx, c.n, c.row_len); break;
  }
}

// Record c when capturing, else run it.
void issue(const Call &c) {
  if (rec) rec->push_back(c);
  else run_call(c);
}

ndl_status r_compute(ndl_ctx *ctx, ndl_tensor *node) {
  if (!rec) return cpu()->compute(ctx, node);
  Call c{};
  c.kind = Call::COMPUTE, c.ctx = ctx, c.node = node, c.node_at = *node;
  rec->push_back(c);
  return NDL_OK;
}
void r_fused_backward(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *t) {
  Call c{};
  c.kind = Call::FUSED_BWD, c.ctx = ctx, c.node = node, c.node_at = *node;
  if (node->adj) c.adj_at = *node->adj;
  memcpy(c.targets, t, sizeof c.targets);
  issue(c);
}
void r_fill(float *dst, float v, int64_t n) {
  Call c{};
  c.kind = Call::FILL, c.dst = dst, c.value = v, c.n = n;
  issue(c);
}
void r_accumulate(float *dst, const ndl_tensor *src) {
  Call c{};
  c.kind = Call::ACCUM, c.dst = dst, c.src = *src;
  issue(c);
}
void r_strided_copy(const ndl_tensor *src, float *out) {
  Call c{};
  c.kind = Call::STRIDED, c.src = *src, c.dst = out;
  issue(c);
}
void r_copy(void *d, const void *s, size_t bytes, ndl_copy_kind kind) {
  if (rec && kind != NDL_COPY_D2D) {  // a host copy inside a CUDA capture breaks it
    rec_failed = true;
    return;
  }
  Call c{};
  c.kind = Call::COPY_D2D, c.d = d, c.s = s, c.bytes = bytes;
  if (kind == NDL_COPY_D2D) issue(c);
  else cpu()->copy(d, s, bytes, kind);
}
void r_sync() {
  if (rec) rec_failed = true;  // a wait inside a capture breaks it
}
void r_update(const ndl_optim_update *u) {
  Call c{};
  c.kind = Call::UPDATE, c.u = *u;
  issue(c);
}
void r_gather(float *dst, int32_t *dl, const float *src, const int32_t *l, const int64_t *idx, int64_t n, int64_t rl) {
  Call c{};
  c.kind = Call::GATHER, c.dst = dst, c.dl = dl, c.gsrc = src, c.gl = l, c.idx = idx, c.n = n, c.row_len = rl;
  issue(c);
}
int r_begin() {
  if (rec) return -1;
  rec = new std::vector<Call>();
  rec_failed = false;
  return 0;
}
void *r_end() {
  std::vector<Call> *g = rec;
  rec = nullptr;
  if (!g || rec_failed || fail_next_end) {
    fail_next_end = false;
    delete g;
    return nullptr;
  }
  captures++;
  return g;
}
int r_replay(void *g) {
  replays++;
  for (const Call &c : *static_cast<std::vector<Call> *>(g)) run_call(c);
  return 0;
}
void r_free(void *g) { delete static_cast<std::vector<Call> *>(g); }

const ndl_backend *recorder() {
  static ndl_backend b;
  b = *cpu();
  b.name = "recorder";
  b.device = NDL_DEV_TEST;
  b.compute = r_compute;
  b.fused_backward = r_fused_backward;
  b.fill = r_fill;
  b.accumulate = r_accumulate;
  b.strided_copy = r_strided_copy;
  b.copy = r_copy;
  b.sync = r_sync;
  b.optim_update = r_update;
  b.gather_batch = r_gather;
  b.graph_begin = r_begin;
  b.graph_end = r_end;
  b.graph_replay = r_replay;
  b.graph_free = r_free;
  ndl_backend_register_test(&b);
  return &b;
}

struct Outcome : TrainerOutcome {
  bool captured = false;
  std::string why;
};

Outcome train(const std::string &data, const ndl_backend *be, int graph, double drop, int batch,
              ndl_model_kind model = NDL_MODEL_MLP) {
  ndl_train_config c;
  ndl_config_defaults(&c);
  c.model = model;
  c.data_dir = data.c_str();
  c.batch_size = batch;
  c.epochs = 2;
  c.drop_prob = drop;
  c.quiet = 1;
  c.cuda_graph = graph;
  Outcome o;
  static_cast<TrainerOutcome &>(o) = run_trainer(c, be, [&o](const ndl_trainer &t) {
    o.captured = t.graph && t.graph->exec;
    o.why = t.graph && t.graph->off ? t.graph->why : "";
  });
  return o;
}

class TrainerGraph : public WorkspaceTest {
 protected:
  TrainerGraph() : WorkspaceTest("ndl_trgraph_") {}
};

TEST_F(TrainerGraph, ReplayedStepsMatchEagerStepsBitwise) {
  const ndl_backend *be = recorder();
  captures = replays = 0;
  Outcome eager = train(data, be, 0, 0.0, 64), graph = train(data, be, 1, 0.0, 64);
  EXPECT_TRUE(graph.captured) << "no capture: " << graph.why;
  EXPECT_EQ(captures, 1);
  EXPECT_GE(replays, 2 * (1000 / 64) - 2);  // every full batch but the warm-up one
  expect_same_outcome(eager, graph);
  expect_same_outcome(train(data, cpu(), 0, 0.0, 64), graph);
}

// Dropout masks are drawn on the host: the capture records the fills (no upload inside it) and
// every replay draws the next step's masks and uploads them first, so the run is the eager one.
TEST_F(TrainerGraph, DropoutStepsAreCapturedAndFollowEagerBitwise) {
  const ndl_backend *be = recorder();
  for (ndl_model_kind m : {NDL_MODEL_MLP, NDL_MODEL_MLPRESNET}) {  // MLPResNet draws masks at p = 0 too
    double drop = m == NDL_MODEL_MLP ? 0.1 : 0.0;
    captures = replays = 0;
    Outcome eager = train(data, be, 0, drop, 100, m), graph = train(data, be, 1, drop, 100, m);
    EXPECT_TRUE(graph.captured) << "no capture: " << graph.why;
    EXPECT_EQ(captures, 1);
    EXPECT_GE(replays, 2 * (1000 / 100) - 2);
    expect_same_outcome(eager, graph);
  }
}

// A capture that fails (here: the backend's graph_end, after the step drew its dropout masks) runs
// the step eagerly with the shared RNG as it was: the run is the eager one, bitwise.
TEST_F(TrainerGraph, FailedCaptureUndoesItsDraws) {
  const ndl_backend *be = recorder();
  captures = 0;
  Outcome eager = train(data, be, 0, 0.1, 100);
  ndl_train_config c;
  ndl_config_defaults(&c);
  c.data_dir = data.c_str();
  c.model = NDL_MODEL_MLP;
  c.drop_prob = 0.1;
  c.batch_size = 100;
  c.epochs = 2;
  c.quiet = 1;
  c.cuda_graph = 1;
  ndl_trainer t;
  ASSERT_EQ(ndl_trainer_init_on(&t, &c, nullptr, 1, be), NDL_OK) << ndl_last_error();
  ASSERT_NE(t.graph, nullptr);
  fail_next_end = true;  // the capture, at the second full batch, fails after drawing its masks
  for (; t.epoch < c.epochs; t.epoch++) {
    ndl_epoch_end end;
    ASSERT_EQ(ndl_trainer_run_epoch(&t, &end), NDL_OK) << ndl_last_error();
  }
  EXPECT_TRUE(t.graph->off);
  EXPECT_NE(std::string(t.graph->why).find("capture failed"), std::string::npos) << t.graph->why;
  EXPECT_EQ(t.cur.loss_sum, eager.loss_sum);
  EXPECT_EQ(t.cur.errors, eager.errors);
  ndl_params_pull(&t.env.params);
  EXPECT_TRUE(std::vector<float>(t.env.params.host, t.env.params.host + t.env.params.numel) == eager.params);
  ndl_trainer_free(&t);
}

}  // namespace
