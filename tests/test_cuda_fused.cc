// test_cuda_fused.cc: the CUDA backend's fused ops against the CPU backend: Linear, BatchNorm
// (running statistics, SyncBN through the host all-reduce callback), LayerNorm, softmax-CE (epoch
// sums) forward and backward into overwritten or accumulated targets; a captured training step
// replayed against the eager one; capture of unrecordable work failing cleanly; and the public op
// API + autograd on a context of the CUDA backend. Label gpu; skips without a device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/kernel_math.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "device_compare.h"

using namespace cuda_test;

namespace {

// Linear forward and backward, targets overwritten (beta 0) and accumulated (beta 1).
TEST(CudaFused, LinearForwardBackward) {
  NEED_CUDA();
  const int64_t n = 37, in = 19, out = 13;
  Vec x = random_vec(n * in, 13), w = random_vec(in * out, 14), b = random_vec(out, 15), g = random_vec(n * out, 16);
  Vec old_dx = random_vec(n * in, 17), old_dw = random_vec(in * out, 18), old_db = random_vec(out, 19);
  for (float beta : {0.0f, 1.0f}) {
    Vec res[2][4];
    const ndl_backend *bs[2] = {cpu, cuda};
    for (int k = 0; k < 2; k++) {
      Dev d(bs[k]);
      ndl_tensor tx = d.leaf(d.up(x), {n, in}), tw = d.leaf(d.up(w), {in, out}), tb = d.leaf(d.up(b), {out});
      ndl_tensor y = d.node(NDL_OP_LINEAR, {n, out}, {&tx, &tw, &tb});
      d.compute(&y);
      ndl_tensor tg = d.leaf(d.up(g), {n, out});
      y.adj = &tg;
      float *dx = d.up(old_dx), *dw = d.up(old_dw), *db = d.up(old_db);
      ndl_grad_target tgt[NDL_MAX_SRC] = {{dx, beta}, {dw, beta}, {db, beta}};
      d.b->fused_backward(d.ctx, &y, tgt);
      EXPECT_EQ(d.ctx->status, NDL_OK);
      res[k][0] = d.out(&y);
      res[k][1] = d.down(dx, x.size());
      res[k][2] = d.down(dw, w.size());
      res[k][3] = d.down(db, b.size());
    }
    for (int i = 0; i < 3; i++) EXPECT_SCALED(res[0][i], res[1][i]) << "beta " << beta << " part " << i;
    EXPECT_EXACT(res[0][3], res[1][3]) << "beta " << beta << " db";
  }
}

// SyncBN's callback as two identical ranks: every sum doubles.
ndl_status double_it(void *handle, double *buf, int64_t n) {
  ++*(int *)handle;
  for (int64_t i = 0; i < n; i++) buf[i] *= 2.0;
  return NDL_OK;
}

struct NormRun {
  Vec y, xhat, mean, var, invstd, rmean, rvar, dx, dw, db;
  int calls = 0;
};

NormRun run_norm(const ndl_backend *be, ndl_op op, bool sync, bool affine, const Vec &x, const Vec &w,
                 const Vec &b, const Vec &g, const Vec &r0, int64_t n, int64_t dd, float beta) {
  Dev d(be);
  NormRun r;
  int64_t ns = op == NDL_OP_BATCHNORM ? dd : n;
  ndl_norm_state s;
  std::memset(&s, 0, sizeof s);
  s.eps = 1e-5f;
  s.count = op == NDL_OP_BATCHNORM ? (sync ? 2 * n : n) : dd;
  if (sync) {
    s.sync.host = double_it;
    s.sync.handle = &r.calls;
  }
  s.xhat = d.zeros((size_t)(n * dd));
  s.invstd = d.zeros((size_t)ns);
  s.mean = d.zeros((size_t)ns);
  s.var = d.zeros((size_t)ns);
  if (op == NDL_OP_BATCHNORM) {
    s.running_mean = d.up(r0);
    s.running_var = d.up(r0);
    s.momentum = 0.1f;
  }
  ndl_tensor tx = d.leaf(d.up(x), {n, dd}), tw = d.leaf(d.up(w), {dd}), tb = d.leaf(d.up(b), {dd});
  ndl_tensor y = d.node(op, {n, dd}, {&tx, affine ? &tw : nullptr, affine ? &tb : nullptr}, &s);
  d.compute(&y);
  ndl_tensor tg = d.leaf(d.up(g), {n, dd});
  y.adj = &tg;
  float *dx = d.up(Vec(x.size(), 0.5f)), *dw = d.up(Vec(dd, 0.25f)), *db = d.up(Vec(dd, -0.5f));
  ndl_grad_target tgt[NDL_MAX_SRC] = {{dx, beta}, {affine ? dw : nullptr, beta}, {affine ? db : nullptr, beta}};
  d.b->fused_backward(d.ctx, &y, tgt);
  EXPECT_EQ(d.ctx->status, NDL_OK);
  r.y = d.out(&y);
  r.xhat = d.down(s.xhat, x.size());
  r.mean = d.down(s.mean, (size_t)ns);
  r.var = d.down(s.var, (size_t)ns);
  r.invstd = d.down(s.invstd, (size_t)ns);
  if (op == NDL_OP_BATCHNORM) {
    r.rmean = d.down(s.running_mean, (size_t)dd);
    r.rvar = d.down(s.running_var, (size_t)dd);
  }
  r.dx = d.down(dx, x.size());
  r.dw = d.down(dw, (size_t)dd);
  r.db = d.down(db, (size_t)dd);
  return r;
}

// BatchNorm (plain and SyncBN) and LayerNorm, affine or not, targets overwritten or accumulated: the
// kernels walk rows/columns in the CPU's order, so every result is the CPU's bits.
TEST(CudaFused, NormsForwardBackwardAndRunningStats) {
  NEED_CUDA();
  const int64_t n = 45, dd = 23;
  Vec x = random_vec(n * dd, 20, -3.0f, 5.0f), w = random_vec(dd, 21), b = random_vec(dd, 22);
  Vec g = random_vec(n * dd, 23), r0 = random_vec(dd, 24, 0.5f, 1.5f);
  for (ndl_op op : {NDL_OP_BATCHNORM, NDL_OP_LAYERNORM})
    for (bool sync : {false, true})
      for (bool affine : {true, false})
        for (float beta : {0.0f, 1.0f}) {
          if (sync && op == NDL_OP_LAYERNORM) continue;
          NormRun c = run_norm(cpu, op, sync, affine, x, w, b, g, r0, n, dd, beta);
          NormRun u = run_norm(cuda, op, sync, affine, x, w, b, g, r0, n, dd, beta);
          SCOPED_TRACE(std::string(ndl_op_name(op)) + (sync ? " sync" : "") + (affine ? " affine" : "") +
                       " beta " + std::to_string(beta));
          EXPECT_EXACT(c.y, u.y);
          EXPECT_EXACT(c.xhat, u.xhat);
          EXPECT_EXACT(c.mean, u.mean);
          EXPECT_EXACT(c.var, u.var);
          EXPECT_EXACT(c.invstd, u.invstd);
          EXPECT_EXACT(c.dx, u.dx);
          if (affine) {
            EXPECT_EXACT(c.dw, u.dw);
            EXPECT_EXACT(c.db, u.db);
          }
          EXPECT_EQ(c.calls, u.calls);  // one all-reduce forward, one backward
          if (op == NDL_OP_BATCHNORM) {  // needle's rule on the batch statistics
            Vec rm(dd), rv(dd);
            float keep = (float)(1.0 - (double)0.1f);
            for (int64_t j = 0; j < dd; j++) {
              rm[j] = ndl_km_running(r0[j], c.mean[j], keep, 0.1f);
              rv[j] = ndl_km_running(r0[j], c.var[j], keep, 0.1f);
            }
            EXPECT_EXACT(rm, u.rmean);
            EXPECT_EXACT(rv, u.rvar);
          }
        }
}

// Softmax-CE forward (loss, probs, epoch sums) and backward with the incoming gradient on the device.
TEST(CudaFused, SoftmaxCrossEntropyWithSums) {
  NEED_CUDA();
  const int64_t n = 50, c = 10;
  Vec z = random_vec(n * c, 25, -4.0f, 4.0f), old = random_vec(n * c, 26);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)((i * 7) % c);
  for (float beta : {0.0f, 1.0f}) {
    Vec res[2][3];
    std::vector<double> sums;
    const ndl_backend *bs[2] = {cpu, cuda};
    for (int k = 0; k < 2; k++) {
      Dev d(bs[k]);
      ndl_ce_state s;
      std::memset(&s, 0, sizeof s);
      s.labels = d.up_raw(labels);
      s.denom = 64.0;
      s.probs = d.zeros((size_t)(n * c));
      if (k == 1) s.sums = d.up_raw(std::vector<double>{1.5, 2.0});
      ndl_tensor tz = d.leaf(d.up(z), {n, c});
      ndl_tensor loss = d.node(NDL_OP_SOFTMAX_CE, {}, {&tz}, &s);
      d.compute(&loss);
      ndl_tensor tg = d.leaf(d.up(Vec{0.75f}), {});
      loss.adj = &tg;
      float *dz = d.up(old);
      ndl_grad_target tgt[NDL_MAX_SRC] = {{dz, beta}, {nullptr, 0.0f}, {nullptr, 0.0f}};
      d.b->fused_backward(d.ctx, &loss, tgt);
      res[k][0] = d.out(&loss);
      res[k][1] = d.down(s.probs, (size_t)(n * c));
      res[k][2] = d.down(dz, (size_t)(n * c));
      if (k == 1) sums = d.down_d(s.sums, 2);
    }
    // expf differs by a few ulp between the two (see ScalarAndUnaryOps): probs and the loss by ~1e-7
    EXPECT_TRUE(close(res[0][0], res[1][0], 4, 1e-6)) << "loss";
    EXPECT_TRUE(close(res[0][1], res[1][1], 4, 1e-6, 1e-9)) << "probs";
    EXPECT_TRUE(close(res[0][2], res[1][2], 4, 1e-6, 1e-8)) << "dz";
    // sums: loss * denom added to 1.5, and the rows whose first arg-max misses the label added to 2
    double wrong = 0;
    for (int64_t i = 0; i < n; i++) {
      int64_t arg = 0;
      for (int64_t j = 1; j < c; j++)
        if (z[i * c + j] > z[i * c + arg]) arg = j;
      wrong += arg != labels[i];
    }
    ASSERT_EQ(sums.size(), 2u);
    EXPECT_NEAR(sums[0], 1.5 + (double)res[0][0][0] * 64.0, 1e-4);
    EXPECT_EQ(sums[1], 2.0 + wrong);
  }
}

// A small training step (linear -> CE -> backward -> SGD) captured once and replayed equals the
// same step run eagerly, bit for bit.
TEST(CudaFused, GraphReplayOfAStepEqualsEager) {
  NEED_CUDA();
  if (!cuda->graph_begin) GTEST_SKIP() << cuda->name << " has no step replay";
  const int64_t n = 32, in = 20, out = 10;
  Vec x = random_vec(n * in, 31), w0 = random_vec(in * out, 32, -0.3f, 0.3f), b0 = random_vec(out, 33);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)(i % out);
  Dev d(cuda);
  float *w = d.up(w0), *b = d.up(b0), *dw = d.zeros((size_t)(in * out)), *db = d.zeros((size_t)out);
  ndl_tensor tx = d.leaf(d.up(x), {n, in}), tw = d.leaf(w, {in, out}), tb = d.leaf(b, {out});
  ndl_tensor y = d.node(NDL_OP_LINEAR, {n, out}, {&tx, &tw, &tb});
  ndl_ce_state s;
  std::memset(&s, 0, sizeof s);
  s.labels = d.up_raw(labels);
  s.denom = (double)n;
  s.probs = d.zeros((size_t)(n * out));
  s.sums = d.up_raw(std::vector<double>{0.0, 0.0});
  ndl_tensor loss = d.node(NDL_OP_SOFTMAX_CE, {}, {&y}, &s);
  ndl_tensor one = d.leaf(d.up(Vec{1.0f}), {});
  float *dy = d.zeros((size_t)(n * out));
  ndl_tensor tdy = d.leaf(dy, {n, out});
  loss.adj = &one;
  y.adj = &tdy;
  auto step = [&]() {
    d.compute(&y);
    d.compute(&loss);
    ndl_grad_target t1[NDL_MAX_SRC] = {{dy, 0.0f}, {nullptr, 0.0f}, {nullptr, 0.0f}};
    d.b->fused_backward(d.ctx, &loss, t1);
    ndl_grad_target t2[NDL_MAX_SRC] = {{nullptr, 0.0f}, {dw, 0.0f}, {db, 0.0f}};
    d.b->fused_backward(d.ctx, &y, t2);
    ndl_optim_update u;
    std::memset(&u, 0, sizeof u);
    u.kind = NDL_UPDATE_SGD;
    u.lr = 0.1f;
    u.n = in * out;
    u.theta = w;
    u.grad = dw;
    d.b->optim_update(&u);
    u.n = out;
    u.theta = b;
    u.grad = db;
    d.b->optim_update(&u);
  };
  auto reset = [&]() {
    d.b->copy(w, w0.data(), w0.size() * sizeof(float), NDL_COPY_H2D);
    d.b->copy(b, b0.data(), b0.size() * sizeof(float), NDL_COPY_H2D);
    std::vector<double> zero{0.0, 0.0};
    d.b->copy(s.sums, zero.data(), 2 * sizeof(double), NDL_COPY_H2D);
    d.b->sync();
  };
  for (int i = 0; i < 3; i++) step();  // eager: three steps
  Vec eager_w = d.down(w, w0.size()), eager_b = d.down(b, b0.size()), eager_loss = d.out(&loss);
  std::vector<double> eager_sums = d.down_d(s.sums, 2);
  reset();
  ASSERT_EQ(d.b->graph_begin(), 0);
  step();
  void *graph = d.b->graph_end();
  ASSERT_NE(graph, nullptr);
  reset();  // capture ran nothing; start from the same weights
  for (int i = 0; i < 3; i++) ASSERT_EQ(d.b->graph_replay(graph), 0);
  d.b->sync();
  EXPECT_EXACT(eager_w, d.down(w, w0.size()));
  EXPECT_EXACT(eager_b, d.down(b, b0.size()));
  EXPECT_EXACT(eager_loss, d.out(&loss));
  EXPECT_EQ(eager_sums, d.down_d(s.sums, 2));
  d.b->graph_free(graph);
}

// Work that a replay cannot repeat (a host copy, a sync, an allocation) inside a capture makes
// graph_end return NULL instead of aborting, and the backend runs eagerly afterwards.
TEST(CudaFused, CaptureOfUnrecordableWorkFailsCleanly) {
  NEED_CUDA();
  if (!cuda->graph_begin) GTEST_SKIP() << cuda->name << " has no step replay";
  Dev d(cuda);
  float *p = d.zeros(16);
  Vec host(16, 2.0f);
  for (int what = 0; what < 3; what++) {
    ASSERT_EQ(d.b->graph_begin(), 0);
    d.b->fill(p, 1.0f, 16);
    if (what == 0) d.b->copy(p, host.data(), sizeof(float) * 16, NDL_COPY_H2D);
    if (what == 1) d.b->sync();
    if (what == 2) {
      EXPECT_EQ(d.b->alloc(64), nullptr);
    }
    EXPECT_EQ(d.b->graph_end(), nullptr) << "case " << what;
    d.b->fill(p, 3.0f, 16);  // eager again
    EXPECT_EXACT(Vec(16, 3.0f), d.down(p, 16)) << "case " << what;
  }
}

// The public op API on a context of the CUDA backend (tensor data in its memory, core/tensor.c):
// a small network built with ops.h / nn_ops.h, its backward through autograd, against the same on
// the CPU. Reads results back only through backend->copy.
struct PublicRun {
  Vec loss, y, gx, gw, gb;
};

PublicRun run_public(const ndl_backend *be, const Vec &x, const Vec &w, const Vec &b) {
  PublicRun r;
  ndl_ctx *ctx = ndl_ctx_new_on(be);
  int64_t sx[2] = {6, 5}, sw[2] = {5, 4}, sb[1] = {4};
  ndl_tensor *tx = ndl_tensor_from(ctx, 2, sx, x.data()), *tw = ndl_tensor_from(ctx, 2, sw, w.data());
  ndl_tensor *tb = ndl_tensor_from(ctx, 1, sb, b.data());
  EXPECT_TRUE(tx && tw && tb) << ndl_last_error();
  if (!tx || !tw || !tb) {
    ndl_ctx_free(ctx);
    return r;
  }
  for (ndl_tensor *t : {tx, tw, tb}) ndl_tensor_set_requires_grad(t, 1);
  ndl_tensor *h = ndl_linear(ctx, tx, tw, tb);
  ndl_tensor *a = ndl_tanh(ctx, ndl_relu(ctx, h));
  ndl_tensor *p = ndl_permute(ctx, a, std::vector<int>{1, 0}.data());  // [4,6] view
  int ax[1] = {1};
  ndl_tensor *l = ndl_logsumexp(ctx, ndl_mul_scalar(ctx, p, 3.0f), ax, 1);  // [4]
  ndl_tensor *loss = ndl_sum(ctx, ndl_mul(ctx, l, l), nullptr, 0);
  EXPECT_NE(loss, nullptr) << ndl_last_error();
  if (loss && ndl_graph_backward(ctx, loss, nullptr) == NDL_OK) {
    auto get = [&](const ndl_tensor *t) {
      Vec v((size_t)ndl_tensor_numel(t));
      EXPECT_TRUE(ndl_tensor_is_contiguous(t));
      be->copy(v.data(), ndl_tensor_ptr(t), v.size() * sizeof(float), NDL_COPY_D2H);
      return v;
    };
    r.loss = get(loss);
    r.y = get(h);
    r.gx = get(tx->grad);
    r.gw = get(tw->grad);
    r.gb = get(tb->grad);
  } else {
    ADD_FAILURE() << "backward: " << ndl_last_error();
  }
  ndl_ctx_free(ctx);
  return r;
}

TEST(CudaFused, PublicOpsAndBackwardOnACudaContext) {
  NEED_CUDA();
  Vec x = random_vec(30, 40), w = random_vec(20, 41), b = random_vec(4, 42);
  PublicRun c = run_public(cpu, x, w, b), u = run_public(cuda, x, w, b);
  EXPECT_TRUE(close(c.loss, u.loss, 8, 1e-5)) << "loss";
  EXPECT_SCALED(c.y, u.y);
  EXPECT_TRUE(close(c.gx, u.gx, 8, 1e-5, 1e-6)) << "grad x";
  EXPECT_TRUE(close(c.gw, u.gw, 8, 1e-5, 1e-6)) << "grad w";
  EXPECT_TRUE(close(c.gb, u.gb, 8, 1e-5, 1e-6)) << "grad b";
}

}  // namespace
