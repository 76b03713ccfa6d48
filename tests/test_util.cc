// test_util.cc: implementation of the shared test helpers (see test_util.h).
#include "test_util.h"

#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"

std::vector<float> tensor_values(const ndl_tensor *t) {
  std::vector<float> v((size_t)ndl_tensor_numel(t));
  if (!v.empty()) ndl_tensor_copy_out(t, v.data());
  return v;
}

::testing::AssertionResult values_near(const std::vector<float> &ref, const std::vector<float> &got,
                                       double atol, double rtol) {
  if (ref.size() != got.size())
    return ::testing::AssertionFailure() << "size " << got.size() << ", expected " << ref.size();
  std::ostringstream os;
  int bad = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double diff = std::fabs((double)got[i] - (double)ref[i]);
    if (!(diff <= atol + rtol * std::fabs((double)ref[i])) || std::isnan(got[i]) != std::isnan(ref[i])) {
      if (bad < 8)
        os << "\n  [" << i << "] got " << got[i] << " expected " << ref[i] << " (diff " << diff << ")";
      bad++;
    }
  }
  if (bad) return ::testing::AssertionFailure() << bad << " of " << ref.size() << " mismatches:" << os.str();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult tensor_near(const std::vector<float> &ref, const ndl_tensor *got,
                                       double atol, double rtol) {
  if (!got) return ::testing::AssertionFailure() << "tensor is NULL: " << ndl_last_error();
  return values_near(ref, tensor_values(got), atol, rtol);
}

ndl_rng *test_rng() {
  static ndl_rng rng;
  return &rng;
}

static ndl_tensor *seeded_randint(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int low,
                                  int high, int entropy) {
  std::vector<int64_t> dims(shape);
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  ndl_rng_seed(test_rng(), (uint32_t)(n * (int64_t)dims.size() * entropy));
  ndl_tensor *t = ndl_tensor_empty(ctx, (int)dims.size(), dims.data());
  if (t) ndl_rng_fill_randint(test_rng(), ndl_tensor_ptr(t), n, low, high);
  return t;
}

ndl_tensor *get_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int entropy) {
  ndl_tensor *t = seeded_randint(ctx, shape, 0, 100, entropy);
  if (!t) return t;
  float *p = ndl_tensor_ptr(t);
  for (int64_t i = 0; i < ndl_tensor_numel(t); i++) p[i] = p[i] / 20.0f;
  return t;
}

ndl_tensor *get_int_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape, int low, int high,
                           int entropy) {
  return seeded_randint(ctx, shape, low, high, entropy);
}

ndl_tensor *make_tensor(ndl_ctx *ctx, std::initializer_list<int64_t> shape,
                        const std::vector<float> &values) {
  std::vector<int64_t> dims(shape);
  ndl_tensor *t = ndl_tensor_from(ctx, (int)dims.size(), dims.data(), values.data());
  EXPECT_EQ((size_t)ndl_tensor_numel(t), values.size());
  return t;
}

void TempDirTest::SetUp() {
  std::string tmpl = "/tmp/" + prefix_ + "XXXXXX";
  ASSERT_NE(mkdtemp(&tmpl[0]), nullptr);
  dir = tmpl;
  live_at_start = ndl_alloc_live_count();
}

void TempDirTest::TearDown() {
  EXPECT_EQ(ndl_alloc_live_count(), live_at_start) << "leaked ndl_malloc blocks";
  std::filesystem::remove_all(dir);
}

void CtxTest::SetUp() {
  live_at_start = ndl_alloc_live_count();
  ctx = ndl_ctx_new();
  ASSERT_NE(ctx, nullptr);
}

void CtxTest::TearDown() {
  ndl_ctx_free(ctx);
  EXPECT_EQ(ndl_alloc_live_count(), live_at_start) << "heap blocks leaked by the test";
}

ndl_tensor *uniform(ndl_ctx *ctx, std::initializer_list<int64_t> shape, double lo, double hi,
                    uint32_t seed) {
  std::vector<int64_t> dims(shape);
  ndl_rng rng;
  ndl_rng_seed(&rng, seed);
  std::vector<float> v((size_t)ndl_shape_numel((int)dims.size(), dims.data()));
  for (float &e : v) e = (float)(lo + (hi - lo) * ndl_rng_rand(&rng));
  return ndl_tensor_from(ctx, (int)dims.size(), dims.data(), v.data());
}

// ---- gradient check ----

namespace {

// Weighted loss sum(out * w) in double, from out's float values (any strides).
double weighted_loss(const ndl_tensor *out, const std::vector<float> &w) {
  std::vector<float> v = tensor_values(out);
  double s = 0;
  for (size_t i = 0; i < v.size(); i++) s += (double)v[i] * (double)w[i];
  return s;
}

// Fixed weights in [0.3, 1.3) with random signs, so the check is not one of sum alone.
std::vector<float> check_weights(int64_t n) {
  ndl_rng rng;
  ndl_rng_seed(&rng, 1234);
  std::vector<float> w((size_t)n);
  for (float &e : w) {
    double u = ndl_rng_rand(&rng);
    e = (float)((ndl_rng_rand(&rng) < 0.5 ? -1.0 : 1.0) * (0.3 + u));
  }
  return w;
}

struct CheckTally {
  std::ostringstream os;
  int bad = 0;
  int64_t checked = 0;
};

// Compare the analytic gradient `ana` of the contiguous tensor t (named `what` in messages) with
// central differences of the weighted loss, perturbing t's data in place.
void check_tensor(ndl_ctx *ctx, const GradFn &f, const Inputs &inputs, const GradCheckOpts &o,
                  const std::vector<float> &w, ndl_tensor *t, const std::string &what,
                  const std::vector<float> &ana, CheckTally *tally) {
  float *x = ndl_tensor_ptr(t);
  for (int64_t j = 0; j < ndl_tensor_numel(t); j++) {
    float saved = x[j];
    x[j] = (float)(saved + o.eps);
    double hi = (double)x[j];
    ndl_tensor *yp = f(ctx, inputs);
    double lp = yp ? weighted_loss(yp, w) : NAN;
    x[j] = (float)(saved - o.eps);
    double lo = (double)x[j];
    ndl_tensor *ym = f(ctx, inputs);
    double lm = ym ? weighted_loss(ym, w) : NAN;
    x[j] = saved;
    double num = (lp - lm) / (hi - lo);
    double got = o.grad_scale * (double)ana[(size_t)j];
    double diff = std::fabs(got - num);
    tally->checked++;
    if (!(diff <= o.atol + o.rtol * std::fabs(num))) {
      if (tally->bad < 8)
        tally->os << "\n  " << what << " [" << j << "] analytic " << got << " numeric " << num
                  << " (diff " << diff << ")";
      tally->bad++;
    }
  }
}

}  // namespace

::testing::AssertionResult grad_check(ndl_ctx *ctx, const GradFn &f, const Inputs &inputs,
                                      GradCheckOpts o) {
  for (ndl_tensor *in : inputs) {
    if (!in) return ::testing::AssertionFailure() << "input is NULL: " << ndl_last_error();
    if (in->op != NDL_OP_NONE || !ndl_tensor_is_contiguous(in))
      return ::testing::AssertionFailure() << "inputs must be contiguous leaves";
    ndl_tensor_set_requires_grad(in, 1);
    in->grad = nullptr;
  }
  if (o.params) ndl_params_zero_grad(o.params);
  ndl_tensor *out = f(ctx, inputs);
  if (!out) return ::testing::AssertionFailure() << "forward failed: " << ndl_last_error();
  std::vector<float> w = check_weights(ndl_tensor_numel(out));
  ndl_tensor *wt = ndl_tensor_from(ctx, out->ndim, out->shape, w.data());
  ndl_tensor *loss = ndl_sum(ctx, ndl_mul(ctx, out, wt), nullptr, 0);
  if (!loss) return ::testing::AssertionFailure() << "loss failed: " << ndl_last_error();
  ndl_status st = ndl_graph_backward(ctx, loss, nullptr);
  if (st != NDL_OK) return ::testing::AssertionFailure() << "backward: " << ndl_last_error();

  // (tensor, its analytic gradient, its name) for inputs then parameters
  std::vector<ndl_tensor *> targets;
  std::vector<std::vector<float>> grads;
  std::vector<std::string> names;
  for (size_t k = 0; k < inputs.size(); k++) {
    ndl_tensor *in = inputs[k];
    if (!in->grad) return ::testing::AssertionFailure() << "input " << k << " got no gradient";
    if (!ndl_shape_equal(in->grad, in))
      return ::testing::AssertionFailure() << "input " << k << ": gradient shape differs";
    targets.push_back(in);
    grads.push_back(tensor_values(in->grad));
    names.push_back("input " + std::to_string(k));
  }
  for (int i = 0; o.params && i < o.params->count; i++) {
    ndl_tensor *p = o.params->tensors[i];
    if (!p->grad || !ndl_shape_equal(p->grad, p) || !ndl_tensor_is_contiguous(p))
      return ::testing::AssertionFailure() << "parameter " << o.params->names[i]
                                           << ": no contiguous gradient view of its shape";
    targets.push_back(p);
    grads.push_back(tensor_values(p->grad));
    names.push_back(std::string("param ") + o.params->names[i]);
  }

  CheckTally tally;
  int old = ndl_ctx_set_grad(ctx, 0);
  for (size_t k = 0; k < targets.size(); k++)
    check_tensor(ctx, f, inputs, o, w, targets[k], names[k], grads[k], &tally);
  ndl_ctx_set_grad(ctx, old);
  if (ctx->status != NDL_OK)
    return ::testing::AssertionFailure() << "an evaluation failed: " << ndl_last_error();
  if (tally.bad)
    return ::testing::AssertionFailure() << tally.bad << " of " << tally.checked
                                         << " gradient entries mismatch:" << tally.os.str();
  return ::testing::AssertionSuccess() << tally.checked << " entries match";
}
