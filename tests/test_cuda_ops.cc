// test_cuda_ops.cc: the CUDA backend against the CPU backend (the oracle), through the public
// vtable only: the same host inputs are uploaded to each backend (alloc + copy), the same nodes are
// computed there (compute / fused_backward / optim_update / gather_batch / graph replay) and the
// results downloaded and compared: element-wise exact (transcendentals within CUDA's documented
// ulps), GEMMs and reductions 1e-5 relative. Without a GPU every test skips, except the one that
// checks ndl_backend_cuda's reason. Label gpu (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/kernel_math.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace {

using Vec = std::vector<float>;

// ---- comparisons ----

int64_t ulp_diff(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (a == b) return 0;
  if (std::isnan(a) || std::isnan(b)) return INT64_MAX;
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return oa > ob ? oa - ob : ob - oa;
}

// got matches ref when within max_ulp ulps or |got-ref| <= atol + rtol*|ref|; prints the first misses.
::testing::AssertionResult close(const Vec &ref, const Vec &got, int64_t max_ulp, double rtol = 0.0,
                                 double atol = 0.0) {
  if (ref.size() != got.size())
    return ::testing::AssertionFailure() << "sizes differ: " << ref.size() << " vs " << got.size();
  int bad = 0;
  std::string msg;
  for (size_t i = 0; i < ref.size(); i++) {
    double err = std::fabs((double)got[i] - (double)ref[i]);
    bool ok = ulp_diff(ref[i], got[i]) <= max_ulp || err <= atol + rtol * std::fabs((double)ref[i]);
    if (!ok && bad++ < 5)
      msg += " [" + std::to_string(i) + "] cpu " + std::to_string(ref[i]) + " cuda " + std::to_string(got[i]) +
             " (" + std::to_string(ulp_diff(ref[i], got[i])) + " ulp);";
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << ref.size() << " differ:" << msg;
  return ::testing::AssertionSuccess();
}

#define EXPECT_EXACT(ref, got) EXPECT_TRUE(close(ref, got, 0))
#define EXPECT_ULPS(ref, got, u) EXPECT_TRUE(close(ref, got, u))
#define EXPECT_REL(ref, got) EXPECT_TRUE(close(ref, got, 0, 1e-5, 1e-6))

// GEMM results: 1e-5 relative to the result's scale (cuBLAS and OpenBLAS sum in different orders,
// so an element that cancels to near 0 keeps an absolute error of the size of its terms).
::testing::AssertionResult close_scaled(const Vec &ref, const Vec &got) {
  double scale = 0.0;
  for (float v : ref) scale = std::fmax(scale, std::fabs((double)v));
  return close(ref, got, 0, 1e-5, 1e-5 * scale);
}
#define EXPECT_SCALED(ref, got) EXPECT_TRUE(close_scaled(ref, got))

Vec random_vec(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  Vec v(n);
  for (auto &x : v) x = d(g);
  return v;
}

// ---- one backend with the buffers it owns ----

struct Dev {
  const ndl_backend *b;
  ndl_ctx *ctx;
  std::vector<void *> bufs;
  explicit Dev(const ndl_backend *be) : b(be), ctx(ndl_ctx_new_on(be)) {}
  ~Dev() {
    b->sync();
    for (void *p : bufs) b->free(p);
    ndl_ctx_free(ctx);
  }
  void *alloc(size_t bytes) {
    void *p = b->alloc(bytes ? bytes : 4);
    EXPECT_NE(p, nullptr);
    bufs.push_back(p);
    return p;
  }
  float *up(const Vec &v) {
    float *p = (float *)alloc(v.size() * sizeof(float));
    b->copy(p, v.data(), v.size() * sizeof(float), NDL_COPY_H2D);
    return p;
  }
  template <class T>
  T *up_raw(const std::vector<T> &v) {
    T *p = (T *)alloc(v.size() * sizeof(T));
    b->copy(p, v.data(), v.size() * sizeof(T), NDL_COPY_H2D);
    return p;
  }
  float *zeros(size_t n) { return up(Vec(n, 0.0f)); }
  Vec down(const float *p, size_t n) {
    Vec v(n);
    b->copy(v.data(), p, n * sizeof(float), NDL_COPY_D2H);
    return v;
  }
  std::vector<double> down_d(const double *p, size_t n) {
    std::vector<double> v(n);
    b->copy(v.data(), p, n * sizeof(double), NDL_COPY_D2H);
    return v;
  }
  // A contiguous leaf over device data.
  ndl_tensor leaf(float *data, std::initializer_list<int64_t> shape) {
    ndl_tensor t;
    std::vector<int64_t> s(shape);
    ndl_tensor_init_view(&t, data, (int)s.size(), s.data());
    t.device = b->device;
    return t;
  }
  // A node of op over srcs with a fresh contiguous output; compute it.
  ndl_tensor node(ndl_op op, std::vector<int64_t> shape, std::vector<ndl_tensor *> srcs, void *aux = nullptr,
                  float scalar = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    ndl_tensor t;
    ndl_tensor_init_view(&t, (float *)alloc((size_t)n * sizeof(float)), (int)shape.size(), shape.data());
    t.device = b->device;
    t.op = op;
    for (size_t i = 0; i < srcs.size(); i++) t.src[i] = srcs[i];
    t.aux = aux;
    t.scalar = scalar;
    return t;
  }
  void compute(ndl_tensor *t) { EXPECT_EQ(b->compute(ctx, t), NDL_OK) << ndl_op_name(t->op); }
  Vec out(const ndl_tensor *t) { return down(ndl_tensor_ptr(t), (size_t)ndl_tensor_numel(t)); }
};

// The backend under test: CUDA, or (test hook NDL_TEST_CUDA_SELF=1) the CPU backend itself, which
// checks this harness without a GPU (the CPU must then agree with itself).
const ndl_backend *backend_under_test(const char **why) {
  const char *self = std::getenv("NDL_TEST_CUDA_SELF");
  if (self && std::strcmp(self, "1") == 0) return ndl_backend_cpu();
  return ndl_backend_cuda(why);
}

#define NEED_CUDA()                                                    \
  const char *why_ = nullptr;                                          \
  const ndl_backend *cuda = backend_under_test(&why_);                 \
  if (!cuda) GTEST_SKIP() << "no CUDA backend: " << (why_ ? why_ : ""); \
  const ndl_backend *cpu = ndl_backend_cpu();                          \
  (void)cpu

// ---- tests ----

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

// Linear forward and backward, targets overwritten (beta 0) and accumulated (beta 1).
TEST(CudaOps, LinearForwardBackward) {
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
    s.allreduce = double_it;
    s.handle = &r.calls;
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
TEST(CudaOps, NormsForwardBackwardAndRunningStats) {
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
TEST(CudaOps, SoftmaxCrossEntropyWithSums) {
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

// A small training step (linear -> CE -> backward -> SGD) captured once and replayed equals the
// same step run eagerly, bit for bit.
TEST(CudaOps, GraphReplayOfAStepEqualsEager) {
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
TEST(CudaOps, CaptureOfUnrecordableWorkFailsCleanly) {
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
    if (what == 2) EXPECT_EQ(d.b->alloc(64), nullptr);
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

TEST(CudaOps, PublicOpsAndBackwardOnACudaContext) {
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
