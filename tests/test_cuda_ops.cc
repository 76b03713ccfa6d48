// test_cuda_ops.cc: the CUDA backend against the CPU backend (the oracle), op by op through the
// vtable: memory entries, element-wise ops on strided/broadcast views, reductions, GEMM layouts,
// every optimizer update and the batch gather. The same host inputs are uploaded to each backend,
// computed there and downloaded: element-wise exact (transcendentals within CUDA's documented ulps),
// GEMMs and reductions 1e-5 relative. Label gpu; without a device every test skips except the one
// that checks ndl_backend_cuda's reason. Fused ops: test_cuda_fused.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/kernel_math.h"
#include "core/tensor.h"
#include "device_compare.h"

using namespace cuda_test;

namespace {

TEST(CudaBackend, ReasonWhenAbsentOrAWorkingBackend) {
  const char *why = nullptr;
  const ndl_backend *b = ndl_backend_cuda(&why);
  if (!b) {
    ASSERT_NE(why, nullptr);
    EXPECT_GT(std::strlen(why), 10u) << why;
    EXPECT_EQ(std::strchr(why, '\n'), nullptr) << "one line: " << why;
    EXPECT_EQ(ndl_backend_for(NDL_DEV_CUDA), nullptr);
    return;
  }
  EXPECT_STREQ(b->name, "cuda");
  EXPECT_EQ(b->device, NDL_DEV_CUDA);
  EXPECT_EQ(ndl_backend_for(NDL_DEV_CUDA), b);
  EXPECT_EQ(ndl_backend_cuda(nullptr), b);  // one backend, made once
  EXPECT_TRUE(b->gather_batch && b->graph_begin && b->graph_end && b->graph_replay && b->graph_free);
  ASSERT_NE(b->stream, nullptr);
  EXPECT_NE(b->stream(), nullptr);  // its own stream, not the legacy default one
}

TEST(CudaOps, MemoryFillCopyStridedCopyAccumulate) {
  NEED_CUDA();
  Vec a = random_vec(24, 1), acc0 = random_vec(24, 2);
  Vec res[2][4];
  const ndl_backend *bs[2] = {cpu, cuda};
  for (int k = 0; k < 2; k++) {
    Dev d(bs[k]);
    float *pa = d.up(a), *f = d.zeros(10), *cp = d.zeros(24), *sc = d.zeros(24), *ac = d.up(acc0);
    d.b->fill(f, 3.25f, 10);
    d.b->copy(cp, pa, 24 * sizeof(float), NDL_COPY_D2D);
    ndl_tensor t = d.leaf(pa, {2, 3, 4});
    ndl_tensor p = t;  // permuted (2,0,1) view: shape [4,2,3]
    p.shape[0] = 4; p.shape[1] = 2; p.shape[2] = 3;
    p.strides[0] = 1; p.strides[1] = 12; p.strides[2] = 4;
    d.b->strided_copy(&p, sc);
    d.b->accumulate(ac, &p);
    res[k][0] = d.down(f, 10);
    res[k][1] = d.down(cp, 24);
    res[k][2] = d.down(sc, 24);
    res[k][3] = d.down(ac, 24);
  }
  for (int i = 0; i < 4; i++) EXPECT_EXACT(res[0][i], res[1][i]) << "part " << i;
}

// Binary ops with a broadcast and a transposed operand: exact, pow within 5 ulp (CUDA's powf is
// documented within 4 ulp of the true value, glibc's within 1).
TEST(CudaOps, BinaryOpsOnStridedAndBroadcastInputs) {
  NEED_CUDA();
  Vec a = random_vec(12, 3, 0.1f, 3.0f), b = random_vec(4, 4, -2.0f, 2.0f);
  a[5] = b[1];  // an equal pair for EQ/GE
  const ndl_op ops[] = {NDL_OP_ADD, NDL_OP_SUB,  NDL_OP_MUL, NDL_OP_DIV, NDL_OP_POW,
                        NDL_OP_MAXIMUM, NDL_OP_EQ, NDL_OP_GT, NDL_OP_GE, NDL_OP_RELU_GRAD};
  for (ndl_op op : ops) {
    Vec res[2];
    const ndl_backend *bs[2] = {cpu, cuda};
    for (int k = 0; k < 2; k++) {
      Dev d(bs[k]);
      ndl_tensor ta = d.leaf(d.up(a), {4, 3});
      ndl_tensor at = ndl_view_transposed(&ta);  // [3,4], strides (1,3)
      ndl_tensor tb = d.leaf(d.up(b), {1, 4});
      tb.shape[0] = 3;
      tb.strides[0] = 0;  // broadcast rows
      ndl_tensor t = d.node(op, {3, 4}, {&at, &tb});
      d.compute(&t);
      res[k] = d.out(&t);
    }
    EXPECT_ULPS(res[0], res[1], op == NDL_OP_POW ? 5 : 0) << ndl_op_name(op);
  }
}

// Scalar and unary ops on a transposed view; transcendentals within CUDA's documented maximum error
// (expf, tanhf 2 ulp; logf 1; powf 4) plus one for glibc's rounding.
TEST(CudaOps, ScalarAndUnaryOps) {
  NEED_CUDA();
  Vec a = random_vec(20, 5, -3.0f, 3.0f), pos = random_vec(20, 6, 0.05f, 4.0f);
  a[3] = 0.0f;
  a[4] = NAN;
  struct Case {
    ndl_op op;
    float s;
    int ulp;
    bool positive;
  } cases[] = {{NDL_OP_ADD_SCALAR, 0.7f, 0, false}, {NDL_OP_MUL_SCALAR, -1.3f, 0, false},
               {NDL_OP_DIV_SCALAR, 3.0f, 0, false}, {NDL_OP_RDIV_SCALAR, 2.0f, 0, false},
               {NDL_OP_POW_SCALAR, 2.0f, 0, false}, {NDL_OP_POW_SCALAR, 1.7f, 5, true},
               {NDL_OP_GT_SCALAR, 0.2f, 0, false},  {NDL_OP_NEG, 0.0f, 0, false},
               {NDL_OP_LOG, 0.0f, 2, true},         {NDL_OP_EXP, 0.0f, 3, false},
               {NDL_OP_RELU, 0.0f, 0, false},       {NDL_OP_TANH, 0.0f, 3, false}};
  for (const Case &c : cases) {
    Vec res[2];
    const ndl_backend *bs[2] = {cpu, cuda};
    for (int k = 0; k < 2; k++) {
      Dev d(bs[k]);
      ndl_tensor ta = d.leaf(d.up(c.positive ? pos : a), {4, 5});
      ndl_tensor at = ndl_view_transposed(&ta);
      ndl_tensor t = d.node(c.op, {5, 4}, {&at}, nullptr, c.s);
      d.compute(&t);
      res[k] = d.out(&t);
    }
    EXPECT_ULPS(res[0], res[1], c.ulp) << ndl_op_name(c.op) << " s=" << c.s;
  }
}

TEST(CudaOps, DropoutReshapeCompactUnslice) {
  NEED_CUDA();
  Vec x = random_vec(24, 7), mask(24), g = random_vec(6, 8);
  for (size_t i = 0; i < mask.size(); i++) mask[i] = (i * 7 % 3) ? 1.0f : 0.0f;
  Vec res[2][3];
  const ndl_backend *bs[2] = {cpu, cuda};
  for (int k = 0; k < 2; k++) {
    Dev d(bs[k]);
    ndl_tensor tx = d.leaf(d.up(x), {4, 6}), tm = d.leaf(d.up(mask), {4, 6});
    ndl_tensor drop = d.node(NDL_OP_DROPOUT, {4, 6}, {&tx, &tm}, nullptr, 0.7f);
    d.compute(&drop);
    res[k][0] = d.out(&drop);
    ndl_tensor xt = ndl_view_transposed(&tx);  // [6,4]
    ndl_tensor comp = d.node(NDL_OP_COMPACT, {6, 4}, {&xt});
    d.compute(&comp);
    res[k][1] = d.out(&comp);
    // unslice: g[2,3] into rows 1,3 and columns 0,2,4 of a [4,6] zero tensor
    ndl_tensor tg = d.leaf(d.up(g), {2, 3});
    ndl_tensor un = d.node(NDL_OP_UNSLICE, {4, 6}, {&tg});
    un.iparams[0] = 1; un.iparams[1] = 0;
    un.iparams[NDL_MAX_DIMS + 0] = 2; un.iparams[NDL_MAX_DIMS + 1] = 2;
    d.compute(&un);
    res[k][2] = d.out(&un);
  }
  for (int i = 0; i < 3; i++) EXPECT_EXACT(res[0][i], res[1][i]) << "part " << i;
  EXPECT_EQ(res[1][2][1 * 6 + 2], g[1]);
}

TEST(CudaOps, ReductionsOverAxesOfAStridedView) {
  NEED_CUDA();
  Vec a = random_vec(2 * 3 * 300, 9, -5.0f, 5.0f);
  struct Case {
    std::vector<int64_t> axes, shape;
  } cases[] = {{{2}, {300, 2, 1}}, {{0, 1}, {1, 1, 3}}, {{0, 1, 2}, {1, 1, 1}}, {{1}, {300, 1, 3}}};
  const ndl_op ops[] = {NDL_OP_SUM, NDL_OP_MAX, NDL_OP_LOGSUMEXP};
  for (ndl_op op : ops)
    for (const Case &c : cases) {
      Vec res[2];
      const ndl_backend *bs[2] = {cpu, cuda};
      for (int k = 0; k < 2; k++) {
        Dev d(bs[k]);
        ndl_tensor ta = d.leaf(d.up(a), {2, 3, 300});
        ndl_tensor p = ta;  // permuted to [300, 2, 3]
        p.shape[0] = 300; p.shape[1] = 2; p.shape[2] = 3;
        p.strides[0] = 1; p.strides[1] = 900; p.strides[2] = 300;
        ndl_tensor t = d.node(op, c.shape, {&p});
        t.naxes = (int)c.axes.size();
        for (size_t i = 0; i < c.axes.size(); i++) t.iparams[i] = c.axes[i];
        d.compute(&t);
        res[k] = d.out(&t);
      }
      EXPECT_REL(res[0], res[1]) << ndl_op_name(op) << " axes " << c.axes.size();
    }
}

TEST(CudaOps, MatmulLayoutsAndBatched) {
  NEED_CUDA();
  Vec a = random_vec(33 * 17, 10), b = random_vec(17 * 29, 11), a3 = random_vec(2 * 5 * 17, 12);
  for (int layout = 0; layout < 4; layout++) {
    Vec res[2];
    const ndl_backend *bs[2] = {cpu, cuda};
    for (int k = 0; k < 2; k++) {
      Dev d(bs[k]);
      ndl_tensor ta, tb, t;
      if (layout == 0) {  // plain
        ta = d.leaf(d.up(a), {33, 17});
        tb = d.leaf(d.up(b), {17, 29});
      } else if (layout == 1) {  // both transposed views
        ndl_tensor s = d.leaf(d.up(a), {17, 33}), u = d.leaf(d.up(b), {29, 17});
        ta = ndl_view_transposed(&s);
        tb = ndl_view_transposed(&u);
      } else if (layout == 2) {  // a strided view (every other column): copied to scratch
        ndl_tensor s = d.leaf(d.up(a), {33, 17});
        ta = s;
        ta.shape[1] = 9;
        ta.strides[1] = 2;
        tb = d.leaf(d.up(b), {9, 29});
      } else {  // batched: [2,5,17] . [17,29]
        ta = d.leaf(d.up(a3), {2, 5, 17});
        tb = d.leaf(d.up(b), {17, 29});
      }
      std::vector<int64_t> shape;
      if (layout == 3) shape = {2, 5, 29};
      else shape = {33, 29};
      t = d.node(NDL_OP_MATMUL, shape, {&ta, &tb});
      d.compute(&t);
      res[k] = d.out(&t);
    }
    EXPECT_SCALED(res[0], res[1]) << "layout " << layout;
  }
}

// Every optimizer kind: the GPU kernel runs kernel_math.h's functions with FMA off: the CPU's bits.
TEST(CudaOps, OptimizerUpdatesOfEveryKind) {
  NEED_CUDA();
  const int64_t n = 10007;
  Vec theta = random_vec(n, 27), grad = random_vec(n, 28), state = random_vec(2 * n, 29, 0.0f, 1.0f);
  const ndl_update_kind kinds[] = {NDL_UPDATE_SGD,  NDL_UPDATE_SGD_MOMENTUM, NDL_UPDATE_SGD_NESTEROV,
                                   NDL_UPDATE_ADAM, NDL_UPDATE_ADAMW,        NDL_UPDATE_RMSPROP};
  for (ndl_update_kind kind : kinds) {
    Vec res[2][2];
    const ndl_backend *bs[2] = {cpu, cuda};
    for (int k = 0; k < 2; k++) {
      Dev d(bs[k]);
      ndl_optim_update u;
      std::memset(&u, 0, sizeof u);
      u.kind = kind;
      u.theta = d.up(theta);
      u.grad = d.up(grad);
      u.state = d.up(state);
      u.state_stride = n;
      u.n = n;
      u.lr = 0.01f;
      u.wd = 0.001f;
      const float adam_k[10] = {0.9f, 0.1f, 0.999f, 0.001f, 1.0f / 0.1f, 1.0f / 0.001f, 0.01f, 1e-8f, 0.001f, 0.99999f};
      if (kind == NDL_UPDATE_ADAM || kind == NDL_UPDATE_ADAMW) std::memcpy(u.k, adam_k, sizeof adam_k);
      else if (kind == NDL_UPDATE_RMSPROP) { u.k[0] = 0.99f; u.k[1] = 0.01f; u.k[2] = 1e-8f; }
      else { u.k[0] = 0.9f; u.k[1] = 0.1f; }
      for (int step = 0; step < 3; step++) d.b->optim_update(&u);
      res[k][0] = d.down(u.theta, (size_t)n);
      res[k][1] = d.down(u.state, (size_t)(2 * n));
    }
    EXPECT_EXACT(res[0][0], res[1][0]) << "kind " << (int)kind;
    EXPECT_EXACT(res[0][1], res[1][1]) << "kind " << (int)kind;
  }
}

TEST(CudaOps, GatherBatch) {
  NEED_CUDA();
  if (!cuda->gather_batch) GTEST_SKIP() << cuda->name << " has no gather_batch";
  const int64_t rows = 40, len = 13, n = 17;
  Vec src = random_vec(rows * len, 30);
  std::vector<int32_t> labels(rows);
  for (int64_t i = 0; i < rows; i++) labels[i] = (int32_t)(i % 10);
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; i++) idx[i] = (i * 11 + 3) % rows;
  Dev d(cuda);
  float *dst = d.zeros((size_t)(n * len));
  int32_t *dl = d.up_raw(std::vector<int32_t>(n, -1));
  d.b->gather_batch(dst, dl, d.up(src), d.up_raw(labels), d.up_raw(idx), n, len);
  Vec got = d.down(dst, (size_t)(n * len)), want((size_t)(n * len));
  std::vector<int32_t> got_l(n);
  d.b->copy(got_l.data(), dl, (size_t)n * sizeof(int32_t), NDL_COPY_D2H);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < len; j++) want[i * len + j] = src[idx[i] * len + j];
    EXPECT_EQ(got_l[i], labels[idx[i]]) << "row " << i;
  }
  EXPECT_EXACT(want, got);
}


}  // namespace
