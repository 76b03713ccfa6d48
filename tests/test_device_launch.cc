// test_device_launch.cc: the device side of ndl-train, runnable without a GPU on a stand-in device
// backend (host_device.h) or on a copy of the CPU backend with recording graph hooks:
// --cuda-graph's capture state machine (eager warm-up, capture, replay, fallbacks), the device data
// (uploaded once, a batch is one index upload and one gather, read-back metrics), and dist_device's
// world-size-1 early returns (dist_device_probe checks the staged MPI path under mpirun).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "dist/dist_device.h"
#include "host_device.h"
#include "launch/device_data.h"
#include "launch/step_graph.h"

namespace {

// ---- step capture ----

struct GraphLog {
  int begins = 0, ends = 0, replays = 0, frees = 0;
  int begin_rc = 0;      // what graph_begin returns
  bool end_null = false;  // graph_end returns no graph
};
GraphLog glog;
int token;

int g_begin() { return glog.begins++, glog.begin_rc; }
void *g_end() { return glog.ends++, glog.end_null ? nullptr : &token; }
int g_replay(void *g) { return glog.replays++, g == &token ? 0 : 1; }
void g_free(void *g) { glog.frees += g == &token; }

const ndl_backend *recording_cpu() {
  static ndl_backend b;
  b = *ndl_backend_cpu();
  b.graph_begin = g_begin;
  b.graph_end = g_end;
  b.graph_replay = g_replay;
  b.graph_free = g_free;
  glog = GraphLog();
  return &b;
}

// A tiny step: loss = sum(x * w), backward into w.grad; records the context it was built in.
struct StepArg {
  std::vector<ndl_ctx *> ctxs;
  float w[3] = {1, 2, 3};
  float wgrad[3] = {0, 0, 0};
};

ndl_status tiny_step(void *arg, ndl_ctx *ctx, ndl_tensor **logits, ndl_tensor **loss) {
  StepArg *a = static_cast<StepArg *>(arg);
  a->ctxs.push_back(ctx);
  int64_t s[2] = {1, 3};
  float xv[3] = {1, 1, 1};
  ndl_tensor *x = ndl_tensor_from(ctx, 2, s, xv);
  ndl_tensor *l = ndl_sum(ctx, ndl_mul(ctx, x, x), nullptr, 0);
  if (!l || ndl_graph_backward(ctx, l, nullptr) != NDL_OK) return ctx->status;
  *logits = x;
  *loss = l;
  return NDL_OK;
}

class StepGraph : public ::testing::Test {
 protected:
  void SetUp() override {
    be = recording_cpu();
    eager = ndl_ctx_new_on(be);
    ASSERT_EQ(ndl_step_graph_new(be, &g), NDL_OK);
  }
  void TearDown() override {
    ndl_step_graph_free(g);
    ndl_ctx_free(eager);
  }
  ndl_status step(int full) { return ndl_step_graph_run(g, full, eager, tiny_step, &arg, &logits, &loss); }
  const ndl_backend *be = nullptr;
  ndl_ctx *eager = nullptr;
  ndl_step_graph *g = nullptr;
  StepArg arg;
  ndl_tensor *logits = nullptr, *loss = nullptr;
};

TEST_F(StepGraph, WarmUpThenCaptureThenReplay) {
  ASSERT_EQ(step(1), NDL_OK);  // eager, in the graph's own context
  ASSERT_EQ(arg.ctxs.size(), 1u);
  EXPECT_EQ(arg.ctxs[0], g->ctx);
  EXPECT_EQ(glog.begins, 0);
  EXPECT_FLOAT_EQ(ndl_tensor_ptr(loss)[0], 3.0f);
  ASSERT_EQ(step(1), NDL_OK);  // captured in the graph's context, then replayed once
  ASSERT_EQ(arg.ctxs.size(), 2u);
  EXPECT_EQ(arg.ctxs[1], g->ctx);
  EXPECT_EQ(glog.begins, 1);
  EXPECT_EQ(glog.ends, 1);
  EXPECT_EQ(glog.replays, 1);
  ndl_tensor *captured = loss;
  ASSERT_EQ(step(1), NDL_OK);  // replay only: the step is not built again, the outputs are the capture's
  EXPECT_EQ(arg.ctxs.size(), 2u);
  EXPECT_EQ(glog.replays, 2);
  EXPECT_EQ(loss, captured);
  ASSERT_EQ(step(0), NDL_OK);  // a partial batch runs eagerly in the caller's context
  ASSERT_EQ(arg.ctxs.size(), 3u);
  EXPECT_EQ(arg.ctxs[2], eager);
  EXPECT_EQ(glog.replays, 2);
  EXPECT_FALSE(g->off);
  ndl_step_graph_free(g);
  g = nullptr;
  EXPECT_EQ(glog.frees, 1);
}

TEST_F(StepGraph, FailedCaptureRunsTheStepEagerlyAndStaysOff) {
  glog.end_null = true;
  ASSERT_EQ(step(1), NDL_OK);  // warm-up
  ASSERT_EQ(step(1), NDL_OK);  // capture fails: the same step runs eagerly
  ASSERT_EQ(arg.ctxs.size(), 3u);
  EXPECT_EQ(arg.ctxs[1], g->ctx);
  EXPECT_EQ(arg.ctxs[2], eager);
  EXPECT_FLOAT_EQ(ndl_tensor_ptr(loss)[0], 3.0f);
  EXPECT_TRUE(g->off);
  EXPECT_NE(std::string(g->why).find("capture failed"), std::string::npos) << g->why;
  EXPECT_EQ(glog.replays, 0);
  ASSERT_EQ(step(1), NDL_OK);  // eager for good
  EXPECT_EQ(arg.ctxs.back(), eager);
  EXPECT_EQ(glog.begins, 1);
}

TEST_F(StepGraph, RefusedBeginAndOffRunEagerly) {
  glog.begin_rc = 1;
  ASSERT_EQ(step(1), NDL_OK);
  ASSERT_EQ(step(1), NDL_OK);
  EXPECT_TRUE(g->off);
  EXPECT_NE(std::string(g->why).find("could not start"), std::string::npos) << g->why;
  EXPECT_EQ(arg.ctxs.back(), eager);
  ndl_step_graph_off(g, "second reason");  // the first reason stays
  EXPECT_EQ(std::string(g->why).find("second"), std::string::npos) << g->why;
}

TEST_F(StepGraph, OffFromTheStartNeverCaptures) {
  ndl_step_graph_off(g, "dropout masks are drawn on the host every step");
  for (int i = 0; i < 3; i++) ASSERT_EQ(step(1), NDL_OK);
  EXPECT_EQ(glog.begins, 0);
  for (ndl_ctx *c : arg.ctxs) EXPECT_EQ(c, eager);
  // and without a graph at all the step runs in the caller's context
  EXPECT_EQ(ndl_step_graph_run(nullptr, 1, eager, tiny_step, &arg, &logits, &loss), NDL_OK);
  EXPECT_EQ(arg.ctxs.back(), eager);
}

// ---- device data ----

ndl_dataset make_set(int64_t n, std::vector<float> &px, std::vector<int32_t> &lab) {
  px.resize((size_t)n * 4);
  lab.resize((size_t)n);
  for (size_t i = 0; i < px.size(); i++) px[i] = (float)i;
  for (int64_t i = 0; i < n; i++) lab[(size_t)i] = (int32_t)(i % 3);
  ndl_dataset ds{};
  ds.n = n;
  ds.rows = 2;
  ds.cols = 2;
  ds.channels = 1;
  ds.num_classes = 3;
  ds.images = px.data();
  ds.labels = lab.data();
  return ds;
}

TEST(DeviceData, UploadedOnceThenOneIndexUploadAndOneGatherPerBatch) {
  std::vector<float> trx, tex;
  std::vector<int32_t> try_, tey;
  ndl_dataset train = make_set(6, trx, try_), test = make_set(2, tex, tey);
  const ndl_backend *be = host_device();
  ndl_device_data *dd = nullptr;
  ASSERT_EQ(ndl_device_data_new(be, &train, &test, 4, &dd), NDL_OK);
  EXPECT_EQ(host_device_n.copies[NDL_COPY_H2D], 4);  // images + labels of both sets
  EXPECT_EQ(host_device_n.bytes[NDL_COPY_H2D], (6 + 2) * (4 * 4 + 4));
  EXPECT_EQ(dd->dim, 4);
  host_device_n = host_device_counts();
  int64_t idx[3] = {5, 0, 2};
  ndl_batch b{};
  b.local_count = 3;
  b.indices = idx;
  ndl_device_data_batch(dd, &b, 0);
  EXPECT_EQ(host_device_n.copies[NDL_COPY_H2D], 1);  // only the sample indices go up
  EXPECT_EQ(host_device_n.bytes[NDL_COPY_H2D], 3 * 8);
  EXPECT_EQ(host_device_n.gathers, 1);
  for (int r = 0; r < 3; r++) {
    for (int k = 0; k < 4; k++) EXPECT_EQ(dd->x[r * 4 + k], trx[(size_t)(idx[r] * 4 + k)]) << r << "," << k;
    EXPECT_EQ(dd->y[r], try_[(size_t)idx[r]]);
  }
  // --augment: the loader's augmented slice goes up as it is
  float aug[2 * 4] = {9, 8, 7, 6, 5, 4, 3, 2};
  int32_t auglab[2] = {2, 1};
  b.local_count = 2;
  b.images = aug;
  b.labels = auglab;
  host_device_n = host_device_counts();
  ndl_device_data_batch(dd, &b, 1);
  EXPECT_EQ(host_device_n.gathers, 0);
  EXPECT_EQ(host_device_n.copies[NDL_COPY_H2D], 2);
  for (int k = 0; k < 8; k++) EXPECT_EQ(dd->x[k], aug[k]);
  EXPECT_EQ(dd->y[1], 1);
  // metrics: the loss value, and the error count the step's softmax-CE added to dd->sums
  float lossv = 0.25f;
  int64_t sc[1] = {1};
  ndl_tensor lt;
  ndl_tensor_init_view(&lt, &lossv, 0, sc);
  dd->sums[0] = 7.5, dd->sums[1] = 2.0;
  float got = 0;
  int64_t wrong = -1;
  ndl_device_data_metrics(dd, &lt, &got, &wrong);
  EXPECT_EQ(got, 0.25f);
  EXPECT_EQ(wrong, 2);
  ndl_device_data_sums_zero(dd);
  EXPECT_EQ(dd->sums[0], 0.0);
  EXPECT_EQ(dd->sums[1], 0.0);
  ndl_device_data_metrics(dd, &lt, &got, &wrong);
  EXPECT_EQ(wrong, 0);
  ndl_device_data_free(dd);
}

// ---- dist_device on one process ----

TEST(DistDevice, WorldOneTouchesNoBuffer) {
  ndl_dist *d = nullptr;
  ASSERT_EQ(ndl_dist_init(&d, 5.0), NDL_OK);
  ASSERT_EQ(ndl_dist_world(d), 1);
  const ndl_backend *be = host_device();
  float buf[4] = {1, 2, 3, 4};
  EXPECT_EQ(ndl_dist_allreduce_sum_dev(d, be, buf, 4, "grad allreduce"), NDL_OK);
  EXPECT_EQ(ndl_dist_broadcast_dev(d, be, buf, 16, 0, "parameter broadcast"), NDL_OK);
  EXPECT_EQ(ndl_dist_broadcast_dev(d, be, buf, 16, 1, "bad root"), NDL_ERR_ARG);
  EXPECT_EQ(host_device_n.copies[NDL_COPY_D2H] + host_device_n.copies[NDL_COPY_H2D], 0);
  EXPECT_EQ(buf[3], 4.0f);
  EXPECT_FALSE(ndl_dist_uses_nccl(d));
  EXPECT_EQ(ndl_dist_allreduce_sum_dev(d, ndl_backend_cpu(), buf, 4, "grad allreduce"), NDL_OK);
  char msg[64];
  EXPECT_EQ(ndl_dist_device_error(d, msg, sizeof msg), 0);
  ndl_dist_device_abort(d);  // no communicator: a no-op
  ndl_dist_free(d);
}

}  // namespace
