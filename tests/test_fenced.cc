// test_fenced.cc: the device-neutral core on a backend whose memory the host cannot touch
// (fenced_backend.c: PROT_NONE outside its own vtable entries). A few training steps of the default
// model (MLPResNet, BatchNorm, dropout) with SGD and Adam, fused and composed, with and without the
// SyncBN branch, give bitwise the CPU backend's losses, parameters, running statistics, optimizer
// state and CE sums; batches come from gather_batch over a data set held in backend memory; weights
// leave and enter through the params' host mirror (pull/push). Any host code touching device memory
// kills the run with SIGSEGV instead.
#include <gtest/gtest.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/nn_ops.h"
#include "core/ops.h"
#include "fenced_backend.h"
#include "launch/weights.h"
#include "nn/models.h"
#include "nn/module.h"
#include "optim/optim.h"

namespace {

constexpr int64_t kRows = 160, kDim = 784, kHidden = 100, kClasses = 10, kBatch = 40;

enum Opt { SGD_MOMENTUM, ADAM };

struct Config {
  Opt opt;
  int fused;
  int sync;  // SyncBN's branch with a one-process all-reduce (identity)
  int steps;
  ndl_norm_kind norm = NDL_NORM_BATCH;
};

// The metrics and state a run ends with, all read back to the host.
struct Result {
  std::vector<float> losses, params, buffers, state, eval_logits;
  double sums[2] = {0, 0};
};

ndl_status identity_allreduce(void *, double *, int64_t) { return NDL_OK; }

// Host copy of n bytes of backend memory.
template <typename T>
std::vector<T> read_back(const ndl_backend *be, const T *p, int64_t n) {
  std::vector<T> out((size_t)n);
  if (n) be->copy(out.data(), p, (size_t)n * sizeof(T), NDL_COPY_D2H);
  return out;
}

// Copy of host data into backend memory the caller frees with be->free.
template <typename T>
T *upload(const ndl_backend *be, const std::vector<T> &v) {
  T *p = static_cast<T *>(be->alloc(v.size() * sizeof(T)));
  be->copy(p, v.data(), v.size() * sizeof(T), NDL_COPY_H2D);
  return p;
}

void make_data(std::vector<float> &x, std::vector<int32_t> &y) {
  ndl_rng r;
  ndl_rng_seed(&r, 7);
  x.resize((size_t)(kRows * kDim));
  ndl_rng_fill_rand(&r, x.data(), (int64_t)x.size());
  y.resize((size_t)kRows);
  for (auto &l : y) l = (int32_t)ndl_rng_randint(&r, 0, kClasses);
}

Result train(const ndl_backend *be, const Config &cfg, const std::string &save_path = "") {
  Result res;
  ndl_rng rng;
  ndl_rng_seed(&rng, 3);
  ndl_nn_env env;
  ndl_nn_env_init_on(&env, &rng, be->device);
  env.fused = cfg.fused;
  if (cfg.sync) {
    env.sync.host = identity_allreduce;
    env.global_rows = kBatch;
  }
  ndl_module *model = ndl_nn_mlp_resnet(&env, kDim, kHidden, 3, kClasses, cfg.norm, 0.1f);
  EXPECT_NE(model, nullptr) << ndl_last_error();
  ndl_optim *opt = cfg.opt == ADAM ? ndl_optim_adam_new(&env.params, 0.001, 0.9, 0.999, 1e-8, 0.001)
                                   : ndl_optim_sgd_new(&env.params, 0.05, 0.9, 0.001, 0);
  EXPECT_NE(opt, nullptr) << ndl_last_error();
  ndl_ctx *ctx = ndl_ctx_new_on(be);
  std::vector<float> xh;
  std::vector<int32_t> yh;
  make_data(xh, yh);
  float *x_dev = upload(be, xh);  // the whole data set in backend memory, once
  int32_t *y_dev = upload(be, yh);
  double *sums = upload(be, std::vector<double>{0.0, 0.0});
  int64_t shape[2] = {kBatch, kDim};
  for (int s = 0; s < cfg.steps; s++) {
    ndl_ctx_reset(ctx);
    ndl_optim_zero_grad(opt);
    std::vector<int64_t> idx((size_t)kBatch);
    for (int64_t i = 0; i < kBatch; i++) idx[(size_t)i] = (s * 37 + i * 13) % kRows;
    int64_t *idx_dev = static_cast<int64_t *>(ndl_ctx_alloc_data(ctx, idx.size() * sizeof(int64_t)));
    ndl_tensor *x = ndl_tensor_empty(ctx, 2, shape);
    int32_t *labels = static_cast<int32_t *>(ndl_ctx_alloc_data(ctx, kBatch * sizeof(int32_t)));
    if (!idx_dev || !x || !labels) {
      ADD_FAILURE() << ndl_last_error();
      break;
    }
    be->copy(idx_dev, idx.data(), idx.size() * sizeof(int64_t), NDL_COPY_H2D);
    be->gather_batch(ndl_tensor_ptr(x), labels, x_dev, y_dev, idx_dev, kBatch, kDim);
    if (s == 0) {  // gather_batch against a host gather
      std::vector<float> got = read_back(be, ndl_tensor_ptr(x), kBatch * kDim);
      std::vector<int32_t> got_l = read_back(be, labels, kBatch);
      for (int64_t i = 0; i < kBatch; i++) {
        EXPECT_EQ(0, memcmp(&got[(size_t)(i * kDim)], &xh[(size_t)(idx[(size_t)i] * kDim)], kDim * sizeof(float)));
        EXPECT_EQ(got_l[(size_t)i], yh[(size_t)idx[(size_t)i]]);
      }
    }
    ndl_tensor *logits = ndl_module_forward(model, ctx, x);
    ndl_tensor *loss = cfg.fused ? ndl_nn_softmax_loss_sums(ctx, logits, labels, kBatch, sums)
                                 : ndl_nn_softmax_loss_composed(ctx, logits, labels, kBatch);
    if (!loss || ndl_graph_backward(ctx, loss, nullptr) != NDL_OK) {
      ADD_FAILURE() << "step " << s << ": " << ndl_last_error();
      break;
    }
    res.losses.push_back(read_back(be, ndl_tensor_ptr(loss), 1)[0]);
    ndl_optim_step(opt);
  }
  // eval mode: the running statistics through composed ops
  ndl_module_train(model, 0);
  ndl_ctx_reset(ctx);
  ndl_tensor *xe = ndl_tensor_from(ctx, 2, shape, xh.data());
  ndl_tensor *logits = ndl_module_forward(model, ctx, xe);
  EXPECT_NE(logits, nullptr) << ndl_last_error();
  if (logits) res.eval_logits = read_back(be, ndl_tensor_ptr(logits), kBatch * kClasses);
  // state through the host mirrors
  ndl_params_pull(&env.params);
  ndl_params_pull(&env.buffers);
  ndl_optim_pull(opt);
  res.params.assign(env.params.host, env.params.host + env.params.numel);
  res.buffers.assign(env.buffers.host, env.buffers.host + env.buffers.numel);
  int64_t sn = 0;
  const float *st = ndl_optim_state(opt, &sn);
  res.state.assign(st, st + sn);
  std::vector<double> sh = read_back(be, sums, 2);
  res.sums[0] = sh[0];
  res.sums[1] = sh[1];
  if (!save_path.empty()) {
    EXPECT_EQ(ndl_weights_save(save_path.c_str(), &env), NDL_OK) << ndl_last_error();
  }
  be->free(x_dev);
  be->free(y_dev);
  be->free(sums);
  ndl_ctx_free(ctx);
  ndl_optim_free(opt);
  ndl_module_free(model);
  ndl_nn_env_free(&env);
  return res;
}

void expect_bitwise(const std::vector<float> &a, const std::vector<float> &b, const char *what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); i++)
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << "[" << i << "]: cpu " << a[i] << ", fenced " << b[i];
      return;
    }
}

void expect_same_run(const Config &cfg) {
  const ndl_backend *fenced = ndl_fenced_backend();
  int64_t entries0 = ndl_fenced_entries();
  Result c = train(ndl_backend_cpu(), cfg), f = train(fenced, cfg);
  EXPECT_GT(ndl_fenced_entries() - entries0, 100) << "the run went through the fenced vtable";
  EXPECT_FALSE(ndl_fenced_is_open());
  ASSERT_EQ(c.losses.size(), (size_t)cfg.steps);
  expect_bitwise(c.losses, f.losses, "loss");
  expect_bitwise(c.params, f.params, "params");
  expect_bitwise(c.buffers, f.buffers, "buffers (running stats, num_batches_tracked)");
  expect_bitwise(c.state, f.state, "optimizer state");
  expect_bitwise(c.eval_logits, f.eval_logits, "eval logits");
  EXPECT_EQ(c.sums[0], f.sums[0]);
  EXPECT_EQ(c.sums[1], f.sums[1]);
  // the running statistics moved (the fused/composed update ran) and num_batches_tracked counted
  if (cfg.norm == NDL_NORM_BATCH) {
    EXPECT_EQ(c.buffers.back(), (float)cfg.steps);
  }
}

TEST(Fenced, SgdMomentumFusedMatchesCpuBitwise) { expect_same_run({SGD_MOMENTUM, 1, 0, 4}); }
TEST(Fenced, AdamFusedMatchesCpuBitwise) { expect_same_run({ADAM, 1, 0, 4}); }
TEST(Fenced, AdamSyncBnBranchMatchesCpuBitwise) { expect_same_run({ADAM, 1, 1, 3}); }
TEST(Fenced, SgdComposedMatchesCpuBitwise) { expect_same_run({SGD_MOMENTUM, 0, 0, 3}); }
TEST(Fenced, AdamLayerNormMatchesCpuBitwise) { expect_same_run({ADAM, 1, 0, 3, NDL_NORM_LAYER}); }

// The data arena takes chunks from the backend's alloc and is rewound by ndl_ctx_reset: equal steps
// reuse its memory (high-water kept), node structs stay in the host arena.
TEST(Fenced, DataArenaIsBackendMemoryRewoundAtReset) {
  ndl_ctx *ctx = ndl_ctx_new_on(ndl_fenced_backend());
  int64_t s[2] = {300, 1000};  // 1.2 MB: more than the first 1 MiB chunk
  float *first = nullptr;
  for (int step = 0; step < 3; step++) {
    ndl_ctx_reset(ctx);
    ndl_tensor *a = ndl_tensor_full(ctx, 2, s, 1.0f), *b = ndl_tensor_full(ctx, 2, s, 2.0f);
    ASSERT_TRUE(a && b) << ndl_last_error();
    EXPECT_TRUE(ndl_fenced_owns(a->data) && ndl_fenced_owns(b->data));
    EXPECT_FALSE(ndl_fenced_owns(a) || ndl_fenced_owns(b));
    ndl_tensor *c = ndl_add(ctx, a, b);
    ASSERT_NE(c, nullptr);
    int64_t at[2] = {299, 999};
    EXPECT_EQ(ndl_tensor_get(c, at), 3.0f);
    if (step == 1) first = a->data;
    if (step == 2) {
      EXPECT_EQ(a->data, first) << "a steady state reuses the arena";
    }
  }
  EXPECT_GE(ctx->data.high_water, (size_t)3 * 300 * 1000 * 4);
  EXPECT_EQ(ctx->arena.high_water < ctx->data.high_water, true);
  ndl_ctx_free(ctx);
}

TEST(Fenced, CeSumsAreTheLossRowSumAndTheFirstArgmaxErrors) {
  const ndl_backend *be = ndl_fenced_backend();
  ndl_ctx *ctx = ndl_ctx_new_on(be);
  // rows: a clear winner (label right), a tie between 0 and 2 (first arg-max 0, label 2: an error),
  // a clear winner with the wrong label
  std::vector<float> z = {0, 5, 1, 3, 1, 3, 9, 0, 0};
  std::vector<int32_t> y = {1, 2, 2};
  int64_t s[2] = {3, 3};
  ndl_tensor *logits = ndl_tensor_from(ctx, 2, s, z.data());
  int32_t *labels = static_cast<int32_t *>(ndl_ctx_alloc_data(ctx, 3 * sizeof(int32_t)));
  be->copy(labels, y.data(), y.size() * sizeof(int32_t), NDL_COPY_H2D);
  double *sums = upload(be, std::vector<double>{1.0, 10.0});  // accumulates onto what is there
  ndl_tensor *loss = ndl_softmax_cross_entropy_sums(ctx, logits, labels, 3.0, sums);
  ASSERT_NE(loss, nullptr) << ndl_last_error();
  std::vector<double> got = read_back(be, sums, 2);
  float l = read_back(be, ndl_tensor_ptr(loss), 1)[0];
  EXPECT_DOUBLE_EQ(got[1], 10.0 + 2.0);
  EXPECT_NEAR(got[0] - 1.0, 3.0 * l, 1e-5);
  EXPECT_EQ((float)((got[0] - 1.0) / 3.0), l);
  be->free(sums);
  ndl_ctx_free(ctx);
}

TEST(Fenced, TensorGetAndCopyOutGoThroughTheVtable) {
  ndl_ctx *ctx = ndl_ctx_new_on(ndl_fenced_backend());
  int64_t s[2] = {2, 3};
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  ndl_tensor *t = ndl_tensor_from(ctx, 2, s, v.data());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->device, NDL_DEV_TEST);
  EXPECT_TRUE(ndl_fenced_owns(t->data));
  EXPECT_FALSE(ndl_fenced_owns(t));  // node structs stay in the host arena
  int64_t at[2] = {1, 2};
  EXPECT_EQ(ndl_tensor_get(t, at), 6.0f);
  ndl_tensor *tt = ndl_transpose(ctx, t, 0, 1);  // a strided view
  int64_t at_t[2] = {2, 0};
  EXPECT_EQ(ndl_tensor_get(tt, at_t), 3.0f);
  std::vector<float> out(6);
  ndl_tensor *c = ndl_compact(ctx, tt);
  ASSERT_NE(c, nullptr) << ndl_last_error();
  ndl_fenced_backend()->copy(out.data(), ndl_tensor_ptr(c), 6 * sizeof(float), NDL_COPY_D2H);
  EXPECT_EQ(out, std::vector<float>({1, 4, 2, 5, 3, 6}));
  ndl_ctx_free(ctx);
}

// A checkpoint's optimizer state enters through the host mirror and is pushed (ndl_optim_load_state);
// a step then runs on the device from it, as on the CPU.
TEST(Fenced, OptimizerStateLoadsThroughTheMirror) {
  std::vector<float> after[2];
  const ndl_backend *bes[2] = {ndl_backend_cpu(), ndl_fenced_backend()};
  for (int k = 0; k < 2; k++) {
    ndl_params p;
    ndl_params_init_on(&p, 1, bes[k]->device);
    int64_t n = 50;
    ndl_tensor *w = ndl_params_add(&p, "w", 1, &n);
    ASSERT_NE(w, nullptr);
    for (int64_t i = 0; i < n; i++) p.host[i] = 0.01f * (float)i;
    ndl_params_push(&p);
    ndl_optim *o = ndl_optim_adam_new(&p, 0.01, 0.9, 0.999, 1e-8, 0);
    ASSERT_NE(o, nullptr);
    EXPECT_EQ(ndl_fenced_owns(o->state), k == 1);
    std::vector<float> st((size_t)(2 * n));
    for (size_t i = 0; i < st.size(); i++) st[i] = 0.001f * (float)(i + 1);
    ASSERT_EQ(ndl_optim_load_state(o, st.data(), 2 * n, 7), NDL_OK) << ndl_last_error();
    std::vector<float> g((size_t)n, 0.5f);
    bes[k]->copy(p.grad, g.data(), g.size() * sizeof(float), NDL_COPY_H2D);
    ndl_optim_step(o);
    int64_t sn = 0;
    float *host = ndl_optim_state(o, &sn);
    std::fill(host, host + sn, -1.0f);
    if (k == 1) {
      ndl_optim_pull(o);  // overwrites the mirror
    } else {
      EXPECT_EQ(host[0], -1.0f);  // on the CPU the mirror is the state
    }
    ndl_params_pull(&p);
    after[k].assign(p.host, p.host + p.numel);
    if (k == 1) after[k].insert(after[k].end(), host, host + sn);
    ndl_optim_free(o);
    ndl_params_free(&p);
  }
  ASSERT_EQ(after[1].size(), after[0].size() * 3);
  after[1].resize(after[0].size());
  expect_bitwise(after[0], after[1], "params after a step from a loaded state");
}

TEST(FencedDeathTest, HostReadOfBackendMemoryDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ndl_ctx *ctx = ndl_ctx_new_on(ndl_fenced_backend());
        int64_t n = 4;
        ndl_tensor *t = ndl_tensor_full(ctx, 1, &n, 2.0f);
        volatile float v = ndl_tensor_ptr(t)[0];
        (void)v;
      },
      "");
}

TEST(FencedDeathTest, EntriesRefuseHostPointersAndWrongCopyDirections) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const ndl_backend *be = ndl_fenced_backend();
  float host[4] = {0, 0, 0, 0};
  float *dev = static_cast<float *>(be->alloc(sizeof host));
  EXPECT_DEATH(be->copy(host, dev, sizeof host, NDL_COPY_H2D), "copy destination");
  EXPECT_DEATH(be->copy(dev, host, sizeof host, NDL_COPY_D2H), "copy destination");
  EXPECT_DEATH(be->copy(dev, host, sizeof host, NDL_COPY_D2D), "copy source");
  EXPECT_DEATH(be->fill(host, 1.0f, 4), "fill");
  be->copy(dev, host, sizeof host, NDL_COPY_H2D);  // the right directions pass
  be->copy(host, dev, sizeof host, NDL_COPY_D2H);
}

TEST(FencedDeathTest, HostWriteToAParameterDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ndl_params p;
        ndl_params_init_on(&p, 1, ndl_fenced_backend()->device);
        int64_t n = 4;
        ndl_tensor *w = ndl_params_add(&p, "w", 1, &n);
        ndl_params_host_ptr(&p, w)[0] = 1.0f;  // the mirror is host memory: fine
        ndl_params_push(&p);
        ndl_tensor_ptr(w)[0] = 1.0f;  // the device copy is not
      },
      "");
}

TEST(Fenced, WeightsSavedFromTheMirrorMatchTheCpuFileAndLoadBack) {
  std::string dir = ::testing::TempDir();
  std::string fc = dir + "/fenced_cpu.safetensors", ff = dir + "/fenced_dev.safetensors";
  Config cfg = {SGD_MOMENTUM, 1, 0, 2};
  train(ndl_backend_cpu(), cfg, fc);
  Result f = train(ndl_fenced_backend(), cfg, ff);
  auto slurp = [](const std::string &p) {
    std::vector<char> b;
    FILE *fp = fopen(p.c_str(), "rb");
    if (!fp) return b;
    int ch;
    while ((ch = fgetc(fp)) != EOF) b.push_back((char)ch);
    fclose(fp);
    return b;
  };
  std::vector<char> a = slurp(fc), b = slurp(ff);
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "--save from the host mirror differs from the CPU run's file";
  // --load into a fresh fenced model: pushed to the device, pulled back equal
  ndl_rng rng;
  ndl_rng_seed(&rng, 99);
  ndl_nn_env env;
  ndl_nn_env_init_on(&env, &rng, NDL_DEV_TEST);
  ndl_module *model = ndl_nn_mlp_resnet(&env, kDim, kHidden, 3, kClasses, NDL_NORM_BATCH, 0.1f);
  ASSERT_NE(model, nullptr);
  ASSERT_EQ(ndl_weights_load(ff.c_str(), &env), NDL_OK) << ndl_last_error();
  std::fill(env.params.host, env.params.host + env.params.numel, -1.0f);  // the pull must overwrite
  ndl_params_pull(&env.params);
  ndl_params_pull(&env.buffers);
  expect_bitwise(f.params, std::vector<float>(env.params.host, env.params.host + env.params.numel), "loaded params");
  expect_bitwise(f.buffers, std::vector<float>(env.buffers.host, env.buffers.host + env.buffers.numel),
                 "loaded buffers");
  ndl_module_free(model);
  ndl_nn_env_free(&env);
  remove(fc.c_str());
  remove(ff.c_str());
}

}  // namespace
