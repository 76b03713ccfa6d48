// test_optim.cc: SGD (plain, dampened momentum, Nesterov), Adam, AdamW and RMSProp against double
// references of their formulas (single and multi-step, weight decay), float32 rounding of scalars,
// untouched gradients, one-buffer state layout, checkpoint round trips, convergence on a quadratic,
// zero_grad, and every error path (bad arguments, OOM, state mismatch, a store grown after creation).
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/params.h"
#include "optim/optim.h"
#include "test_util.h"

namespace {

enum Kind { SGD, ADAM, ADAMW, RMSPROP };

struct Config {
  Kind kind;
  double lr, a, b, eps, wd;  // a/b: momentum+nesterov (SGD), beta1/beta2 (Adam), decay (RMSProp)
  int nesterov;
  const char *label;
};

ndl_optim *make_optim(ndl_params *p, const Config &c) {
  switch (c.kind) {
    case SGD: return ndl_optim_sgd_new(p, c.lr, c.a, c.wd, c.nesterov);
    case ADAM: return ndl_optim_adam_new(p, c.lr, c.a, c.b, c.eps, c.wd);
    case ADAMW: return ndl_optim_adamw_new(p, c.lr, c.a, c.b, c.eps, c.wd);
    case RMSPROP: return ndl_optim_rmsprop_new(p, c.lr, c.a, c.eps, c.wd);
  }
  return nullptr;
}

// The documented formula of each optimizer, in double.
struct RefOptim {
  Config c;
  std::vector<double> s1, s2;
  int64_t t = 0;
  RefOptim(const Config &cfg, size_t n) : c(cfg), s1(n, 0.0), s2(n, 0.0) {}
  void step(std::vector<double> &th, const std::vector<float> &grad) {
    t++;
    for (size_t i = 0; i < th.size(); i++) {
      double g = grad[i];
      switch (c.kind) {
        case SGD: {
          g += c.wd * th[i];
          s1[i] = c.a * s1[i] + (1 - c.a) * g;
          double d = c.nesterov ? c.a * s1[i] + (1 - c.a) * g : s1[i];
          th[i] -= c.lr * d;
          break;
        }
        case ADAM:
        case ADAMW: {
          if (c.kind == ADAMW) th[i] *= 1 - c.lr * c.wd;
          else g += c.wd * th[i];
          s1[i] = c.a * s1[i] + (1 - c.a) * g;
          s2[i] = c.b * s2[i] + (1 - c.b) * g * g;
          double mh = s1[i] / (1 - std::pow(c.a, (double)t));
          double vh = s2[i] / (1 - std::pow(c.b, (double)t));
          th[i] -= c.lr * mh / (std::sqrt(vh) + c.eps);
          break;
        }
        case RMSPROP: {
          g += c.wd * th[i];
          s1[i] = c.a * s1[i] + (1 - c.a) * g * g;
          th[i] -= c.lr * g / (std::sqrt(s1[i]) + c.eps);
          break;
        }
      }
    }
  }
};

const Config kSgd = {SGD, 0.1, 0.0, 0, 0, 0.0, 0, "sgd"};
const Config kSgdWd = {SGD, 0.1, 0.0, 0, 0, 0.05, 0, "sgd wd"};
const Config kSgdMomentumWd = {SGD, 0.1, 0.9, 0, 0, 0.01, 0, "sgd momentum+wd"};
const Config kSgdNesterov = {SGD, 0.05, 0.8, 0, 0, 0.02, 1, "sgd nesterov"};
const Config kAdam = {ADAM, 0.01, 0.9, 0.999, 1e-8, 0.0, 0, "adam"};
const Config kAdamWd = {ADAM, 0.02, 0.85, 0.99, 1e-8, 0.1, 0, "adam wd"};
const Config kAdamW = {ADAMW, 0.02, 0.85, 0.99, 1e-8, 0.1, 0, "adamw"};
const Config kRmsprop = {RMSPROP, 0.01, 0.99, 0, 1e-8, 0.0, 0, "rmsprop"};
const Config kRmspropWd = {RMSPROP, 0.01, 0.9, 0, 1e-6, 0.05, 0, "rmsprop wd"};
const Config kAll[] = {kSgd,   kSgdWd, kSgdMomentumWd, kSgdNesterov, kAdam,
                       kAdamWd, kAdamW, kRmsprop,       kRmspropWd};

class Optim : public ::testing::Test {
 protected:
  void SetUp() override {
    live_at_start = ndl_alloc_live_count();
    ndl_params_init(&p, 1);
    make_store(&p);
    n = (size_t)p.numel;
    for (size_t i = 0; i < n; i++) {
      a.push_back(0.5 + 0.5 * (double)(i % 4));
      c.push_back(std::cos((double)i));
    }
  }
  void TearDown() override {
    for (ndl_optim *o : owned) ndl_optim_free(o);
    ndl_params_free(&p);
    for (ndl_params *q : extra) {
      ndl_params_free(q);
      delete q;
    }
    EXPECT_EQ(ndl_alloc_live_count(), live_at_start) << "heap blocks leaked by the test";
  }
  // Two tensors, w[2,3] and b[4], in one flat store of 10 floats, with fixed starting values.
  static void make_store(ndl_params *q) {
    int64_t ws[2] = {2, 3}, bs[1] = {4};
    ASSERT_NE(ndl_params_add(q, "w", 2, ws), nullptr);
    ASSERT_NE(ndl_params_add(q, "b", 1, bs), nullptr);
    for (int64_t i = 0; i < q->numel; i++) q->data[i] = (float)(0.5 + 0.8 * std::sin(1.3 * i));
  }
  ndl_params *new_store() {
    ndl_params *q = new ndl_params;
    ndl_params_init(q, 1);
    make_store(q);
    extra.push_back(q);
    return q;
  }
  ndl_optim *keep(ndl_optim *o) {
    EXPECT_NE(o, nullptr) << ndl_last_error();
    if (o) owned.push_back(o);
    return o;
  }
  // Gradient of f(θ) = ½ Σ a_i (θ_i - c_i)² at the store's values, plus a step-dependent wobble.
  void set_grad(ndl_params *q, int step, double wobble = 0.05) {
    for (size_t i = 0; i < n; i++)
      q->grad[i] = (float)(a[i] * (q->data[i] - c[i]) + wobble * std::sin(7.0 * i + step));
  }
  std::vector<float> data(const ndl_params *q) const { return std::vector<float>(q->data, q->data + n); }
  std::vector<float> grad(const ndl_params *q) const { return std::vector<float>(q->grad, q->grad + n); }
  static std::vector<float> to_float(const std::vector<double> &v) {
    return std::vector<float>(v.begin(), v.end());
  }
  // Run `steps` steps of cfg on the fixture store and on the double reference; compare every step.
  void check_against_reference(const Config &cfg, int steps) {
    SCOPED_TRACE(cfg.label);
    ndl_optim *o = keep(make_optim(&p, cfg));
    ASSERT_NE(o, nullptr);
    RefOptim ref(cfg, n);
    std::vector<double> th(p.data, p.data + n);
    for (int k = 0; k < steps; k++) {
      set_grad(&p, k);
      ref.step(th, grad(&p));
      ndl_optim_step(o);
      ASSERT_TRUE(values_near(to_float(th), data(&p), 1e-6, 0)) << "step " << k + 1;
    }
    EXPECT_EQ(ndl_optim_step_count(o), steps);
  }

  ndl_params p;
  size_t n = 0;
  std::vector<double> a, c;
  std::vector<ndl_optim *> owned;
  std::vector<ndl_params *> extra;
  int64_t live_at_start = 0;
};

TEST_F(Optim, SgdSingleStep) {
  ndl_optim *o = keep(ndl_optim_sgd_new(&p, 0.1, 0.0, 0.0, 0));
  std::vector<float> before = data(&p);
  set_grad(&p, 0);
  ndl_optim_step(o);
  for (size_t i = 0; i < n; i++)
    EXPECT_NEAR(p.data[i], (double)before[i] - 0.1 * p.grad[i], 1e-6) << i;
  EXPECT_STREQ(ndl_optim_name(o), "sgd");
}

TEST_F(Optim, SgdMomentumIsDampened) {
  // needle: u = m*u + (1-m)*g, so the first step moves lr*(1-m)*g, not lr*g (PyTorch's rule).
  ndl_optim *o = keep(ndl_optim_sgd_new(&p, 0.5, 0.75, 0.0, 0));
  std::vector<float> before = data(&p);
  set_grad(&p, 0);
  ndl_optim_step(o);
  for (size_t i = 0; i < n; i++)
    EXPECT_NEAR(p.data[i], (double)before[i] - 0.5 * 0.25 * p.grad[i], 1e-6) << i;
}

TEST_F(Optim, SgdMultiStepMatchesReference) {
  check_against_reference(kSgd, 6);
}

TEST_F(Optim, SgdWeightDecayMatchesReference) { check_against_reference(kSgdWd, 6); }

TEST_F(Optim, SgdMomentumWeightDecayMatchesReference) { check_against_reference(kSgdMomentumWd, 12); }

TEST_F(Optim, SgdNesterovMatchesReference) { check_against_reference(kSgdNesterov, 12); }

TEST_F(Optim, SgdNesterovDiffersFromPlainMomentum) {
  ndl_params *q = new_store();
  ndl_optim *nes = keep(ndl_optim_sgd_new(&p, 0.05, 0.8, 0.0, 1));
  ndl_optim *mom = keep(ndl_optim_sgd_new(q, 0.05, 0.8, 0.0, 0));
  for (int k = 0; k < 3; k++) {
    set_grad(&p, k);
    set_grad(q, k);
    ndl_optim_step(nes);
    ndl_optim_step(mom);
  }
  double diff = 0;
  for (size_t i = 0; i < n; i++) diff += std::fabs((double)p.data[i] - q->data[i]);
  EXPECT_GT(diff, 1e-3);
}

TEST_F(Optim, AdamFirstStepIsSignedLr) {
  // t=1: m̂ = g, v̂ = g², so θ moves by lr*g/(|g|+eps) ≈ lr*sign(g).
  ndl_optim *o = keep(ndl_optim_adam_new(&p, 0.01, 0.9, 0.999, 1e-8, 0.0));
  std::vector<float> before = data(&p);
  set_grad(&p, 0);
  ndl_optim_step(o);
  for (size_t i = 0; i < n; i++) {
    double g = p.grad[i];
    EXPECT_NEAR(p.data[i], (double)before[i] - 0.01 * g / (std::fabs(g) + 1e-8), 1e-6) << i;
  }
  EXPECT_EQ(ndl_optim_step_count(o), 1);
  EXPECT_STREQ(ndl_optim_name(o), "adam");
}

TEST_F(Optim, AdamMultiStepMatchesReference) { check_against_reference(kAdam, 32); }

TEST_F(Optim, AdamWeightDecayMatchesReference) { check_against_reference(kAdamWd, 32); }

TEST_F(Optim, AdamWMatchesReference) { check_against_reference(kAdamW, 32); }

TEST_F(Optim, AdamWDecayIsDecoupled) {
  // With zero gradient Adam's coupled L2 feeds wd*θ through the moments (a move of ~lr per step),
  // while AdamW only shrinks θ by (1 - lr*wd) and its moments stay zero.
  ndl_params *q = new_store();
  ndl_optim *w = keep(ndl_optim_adamw_new(&p, 0.1, 0.9, 0.999, 1e-8, 0.5));
  ndl_optim *l2 = keep(ndl_optim_adam_new(q, 0.1, 0.9, 0.999, 1e-8, 0.5));
  std::vector<float> before = data(&p);
  ndl_optim_zero_grad(w);
  ndl_optim_zero_grad(l2);
  ndl_optim_step(w);
  ndl_optim_step(l2);
  for (size_t i = 0; i < n; i++) {
    EXPECT_NEAR(p.data[i], before[i] * (1 - 0.1 * 0.5), 1e-7) << i;
    EXPECT_EQ(w->state[i], 0.0f) << i;
    double sign = before[i] > 0 ? 1 : -1;
    EXPECT_NEAR(q->data[i], before[i] - 0.1 * sign, 1e-6) << i;
  }
  EXPECT_STREQ(ndl_optim_name(w), "adamw");
}

TEST_F(Optim, RmspropSingleStep) {
  ndl_optim *o = keep(ndl_optim_rmsprop_new(&p, 0.01, 0.99, 1e-8, 0.0));
  std::vector<float> before = data(&p);
  set_grad(&p, 0);
  ndl_optim_step(o);
  for (size_t i = 0; i < n; i++) {
    double g = p.grad[i];
    double cache = 0.01 * g * g;
    EXPECT_NEAR(p.data[i], (double)before[i] - 0.01 * g / (std::sqrt(cache) + 1e-8), 1e-6) << i;
    EXPECT_NEAR(o->state[i], cache, 1e-9 + 1e-6 * cache) << i;
  }
  EXPECT_STREQ(ndl_optim_name(o), "rmsprop");
}

TEST_F(Optim, RmspropMatchesReference) { check_against_reference(kRmsprop, 32); }

TEST_F(Optim, RmspropWeightDecayMatchesReference) { check_against_reference(kRmspropWd, 32); }

TEST_F(Optim, ScalarsRoundFromDoubleLikeNumpy) {
  // numpy: (1 - 0.9) is a Python float rounded to float32 (0.1f), not 1.0f - 0.9f (0.100000024f).
  ASSERT_NE((float)(1.0 - 0.9), 1.0f - 0.9f);
  ndl_optim *o = keep(ndl_optim_sgd_new(&p, 0.1, 0.9, 0.0, 0));
  for (size_t i = 0; i < n; i++) p.grad[i] = 1.0f;
  ndl_optim_step(o);
  for (size_t i = 0; i < n; i++) EXPECT_EQ(o->state[i], (float)(1.0 - 0.9)) << i;
  // Adam's bias corrections: float(1 - b**t) with the power in double.
  ndl_optim *ad = keep(ndl_optim_adam_new(&p, 0.1, 0.9, 0.999, 0.0, 0.0));
  for (size_t i = 0; i < n; i++) p.grad[i] = 3.0f;
  ndl_optim_step(ad);
  const float m = (float)(1.0 - 0.9) * 3.0f, v = (float)(1.0 - 0.999) * (3.0f * 3.0f);
  for (size_t i = 0; i < n; i++) {
    EXPECT_EQ(ad->state[i], m) << i;
    EXPECT_EQ(ad->state[n + i], v) << i;
  }
}

TEST_F(Optim, GradientBufferIsBitIdentical) {
  for (const Config &cfg : kAll) {
    SCOPED_TRACE(cfg.label);
    ndl_optim *o = keep(make_optim(&p, cfg));
    for (int k = 0; k < 3; k++) {
      set_grad(&p, k);
      std::vector<float> g = grad(&p);
      ndl_optim_step(o);
      EXPECT_EQ(std::memcmp(g.data(), p.grad, n * sizeof(float)), 0) << "step " << k;
    }
  }
}

TEST_F(Optim, StateIsOneBufferOfDocumentedSize) {
  struct Want { Config cfg; int64_t per_param; };
  const Want wants[] = {{kSgd, 0}, {kSgdMomentumWd, 1}, {kSgdNesterov, 1}, {kAdam, 2},
                        {kAdamW, 2}, {kRmsprop, 1}};
  for (const Want &w : wants) {
    SCOPED_TRACE(w.cfg.label);
    ndl_optim *o = keep(make_optim(&p, w.cfg));
    int64_t numel = -1;
    float *s = ndl_optim_state(o, &numel);
    EXPECT_EQ(numel, w.per_param * (int64_t)n);
    EXPECT_EQ(s == nullptr, numel == 0);
    for (int64_t i = 0; i < numel; i++) EXPECT_EQ(s[i], 0.0f) << "state starts at zero";
  }
  // Adam's layout: m in [0, n), v in [n, 2n).
  ndl_optim *o = keep(ndl_optim_adam_new(&p, 0.01, 0.5, 0.75, 1e-8, 0.0));
  set_grad(&p, 0);
  ndl_optim_step(o);
  for (size_t i = 0; i < n; i++) {
    double g = p.grad[i];
    EXPECT_NEAR(o->state[i], 0.5 * g, 1e-6) << i;
    EXPECT_NEAR(o->state[n + i], 0.25 * g * g, 1e-6) << i;
  }
}

TEST_F(Optim, CheckpointRoundTripIsBitwise) {
  const int before_ckpt = 3, after_ckpt = 4;
  for (const Config &cfg : kAll) {
    SCOPED_TRACE(cfg.label);
    ndl_params *q = new_store(), *r = new_store();
    ndl_optim *o = keep(make_optim(q, cfg));
    for (int k = 0; k < before_ckpt; k++) {
      set_grad(q, k);
      ndl_optim_step(o);
    }
    // checkpoint: parameters, the one state buffer, the step counter
    int64_t numel = 0;
    const float *s = ndl_optim_state(o, &numel);
    std::vector<float> state(s, s + numel), theta = data(q);
    int64_t t = ndl_optim_step_count(o);
    EXPECT_EQ(t, before_ckpt);
    // restore into a fresh optimizer on a fresh store
    std::memcpy(r->data, theta.data(), n * sizeof(float));
    ndl_optim *fresh = keep(make_optim(r, cfg));
    ASSERT_EQ(ndl_optim_load_state(fresh, state.data(), numel, t), NDL_OK) << ndl_last_error();
    for (int k = before_ckpt; k < before_ckpt + after_ckpt; k++) {
      set_grad(q, k);
      set_grad(r, k);
      ndl_optim_step(o);
      ndl_optim_step(fresh);
    }
    EXPECT_EQ(std::memcmp(q->data, r->data, n * sizeof(float)), 0);
    EXPECT_EQ(ndl_optim_step_count(fresh), before_ckpt + after_ckpt);
    if (numel) {
      EXPECT_EQ(std::memcmp(o->state, fresh->state, (size_t)numel * sizeof(float)), 0);
    }
  }
}

TEST_F(Optim, CheckpointWithoutStepCountDiverges) {
  // Proves the round trip above depends on t: Adam restored with t = 0 takes a different path.
  ndl_params *q = new_store(), *r = new_store();
  ndl_optim *o = keep(ndl_optim_adam_new(q, 0.01, 0.9, 0.999, 1e-8, 0.0));
  for (int k = 0; k < 3; k++) {
    set_grad(q, k);
    ndl_optim_step(o);
  }
  std::memcpy(r->data, q->data, n * sizeof(float));
  ndl_optim *fresh = keep(ndl_optim_adam_new(r, 0.01, 0.9, 0.999, 1e-8, 0.0));
  ASSERT_EQ(ndl_optim_load_state(fresh, o->state, o->state_numel, 0), NDL_OK);
  set_grad(q, 3);
  set_grad(r, 3);
  ndl_optim_step(o);
  ndl_optim_step(fresh);
  EXPECT_NE(std::memcmp(q->data, r->data, n * sizeof(float)), 0);
}

TEST_F(Optim, LoadStateRejectsMismatch) {
  ndl_optim *o = keep(ndl_optim_adam_new(&p, 0.01, 0.9, 0.999, 1e-8, 0.0));
  std::vector<float> wrong(n, 1.0f);  // adam needs 2n
  EXPECT_EQ(ndl_optim_load_state(o, wrong.data(), (int64_t)n, 5), NDL_ERR_MISMATCH);
  EXPECT_NE(std::string(ndl_last_error()).find("state floats"), std::string::npos);
  EXPECT_EQ(ndl_optim_step_count(o), 0);
  for (int64_t i = 0; i < o->state_numel; i++) EXPECT_EQ(o->state[i], 0.0f) << "state untouched";
  std::vector<float> right(2 * n, 1.0f);
  EXPECT_EQ(ndl_optim_load_state(o, right.data(), 2 * (int64_t)n, -1), NDL_ERR_ARG);
  EXPECT_EQ(ndl_optim_step_count(o), 0);
}

TEST_F(Optim, ConvergesOnQuadratic) {
  // f(θ) = ½ Σ a_i (θ_i - c_i)², a_i in {0.5, 1, 1.5, 2}; exact gradient each step.
  // stays: still inside the ball at max_steps. Constant-lr RMSProp is not required to: once g is
  // tiny its cache decays and g/sqrt(cache) can reach 1/sqrt(1-decay), a limit cycle of ~10*lr.
  struct Run { Config cfg; int max_steps; bool stays; };
  const Run runs[] = {
      {{SGD, 0.5, 0.0, 0, 0, 0, 0, "sgd"}, 40, true},             // reaches at 22
      {{SGD, 0.5, 0.5, 0, 0, 0, 0, "sgd momentum"}, 40, true},    // 21
      {{SGD, 0.5, 0.5, 0, 0, 0, 1, "sgd nesterov"}, 40, true},    // 16
      {{ADAM, 0.05, 0.9, 0.999, 1e-8, 0, 0, "adam"}, 300, true},  // 128
      {{ADAMW, 0.05, 0.9, 0.999, 1e-8, 0, 0, "adamw"}, 300, true},
      {{RMSPROP, 0.01, 0.99, 0, 1e-8, 0, 0, "rmsprop"}, 300, false},  // 212
  };
  for (const Run &run : runs) {
    SCOPED_TRACE(run.cfg.label);
    ndl_params *q = new_store();
    ndl_optim *o = keep(make_optim(q, run.cfg));
    int reached = -1;
    double worst = 0;
    for (int k = 1; k <= run.max_steps; k++) {
      set_grad(q, k, 0.0);
      ndl_optim_step(o);
      worst = 0;
      for (size_t i = 0; i < n; i++) worst = std::fmax(worst, std::fabs(q->data[i] - c[i]));
      if (worst < 1e-3 && reached < 0) reached = k;
    }
    EXPECT_GT(reached, 0) << "not within 1e-3 of the minimum after " << run.max_steps << " steps";
    if (run.stays) {
      EXPECT_LT(worst, 1e-3) << "left the 1e-3 ball again by step " << run.max_steps;
    }
    std::printf("[ converge ] %-13s |θ-c| < 1e-3 after %d steps\n", run.cfg.label, reached);
  }
}

TEST_F(Optim, ZeroGradZerosTheFlatBuffer) {
  ndl_optim *o = keep(ndl_optim_sgd_new(&p, 0.1, 0.9, 0.0, 0));
  set_grad(&p, 0);
  std::vector<float> theta = data(&p);
  ndl_optim_zero_grad(o);
  for (size_t i = 0; i < n; i++) EXPECT_EQ(p.grad[i], 0.0f) << i;
  EXPECT_EQ(std::memcmp(theta.data(), p.data, n * sizeof(float)), 0) << "values untouched";
  ndl_optim_step(o);  // zero gradient, zero state: nothing moves
  EXPECT_EQ(std::memcmp(theta.data(), p.data, n * sizeof(float)), 0);
}

TEST_F(Optim, LearningRateCanBeScheduled) {
  ndl_optim *o = keep(ndl_optim_sgd_new(&p, 0.1, 0.0, 0.0, 0));
  set_grad(&p, 0);
  o->lr = 0.0;
  std::vector<float> theta = data(&p);
  ndl_optim_step(o);
  EXPECT_EQ(std::memcmp(theta.data(), p.data, n * sizeof(float)), 0);
  o->lr = 0.2;
  ndl_optim_step(o);
  for (size_t i = 0; i < n; i++) EXPECT_NEAR(p.data[i], theta[i] - 0.2 * p.grad[i], 1e-6) << i;
}

TEST_F(Optim, BadArgumentsReturnNullWithMessage) {
  struct Bad { std::function<ndl_optim *()> make; const char *says; };
  ndl_params buffers;
  ndl_params_init(&buffers, 0);
  const double nan = std::nan("");
  const Bad bad[] = {
      {[&] { return ndl_optim_sgd_new(nullptr, 0.1, 0, 0, 0); }, "NULL"},
      {[&] { return ndl_optim_sgd_new(&buffers, 0.1, 0, 0, 0); }, "not trainable"},
      {[&] { return ndl_optim_sgd_new(&p, -0.1, 0, 0, 0); }, "learning rate"},
      {[&] { return ndl_optim_sgd_new(&p, nan, 0, 0, 0); }, "learning rate"},
      {[&] { return ndl_optim_sgd_new(&p, 0.1, 1.0, 0, 0); }, "momentum"},
      {[&] { return ndl_optim_sgd_new(&p, 0.1, -0.5, 0, 0); }, "momentum"},
      {[&] { return ndl_optim_sgd_new(&p, 0.1, 0, -1e-3, 0); }, "weight decay"},
      {[&] { return ndl_optim_adam_new(&p, 0.1, 1.0, 0.999, 1e-8, 0); }, "betas"},
      {[&] { return ndl_optim_adam_new(&p, 0.1, 0.9, 1.5, 1e-8, 0); }, "betas"},
      {[&] { return ndl_optim_adam_new(&p, 0.1, 0.9, 0.999, -1, 0); }, "eps"},
      {[&] { return ndl_optim_adamw_new(&p, 0.1, 0.9, 0.999, 1e-8, -1); }, "weight decay"},
      {[&] { return ndl_optim_adamw_new(&buffers, 0.1, 0.9, 0.999, 1e-8, 0); }, "not trainable"},
      {[&] { return ndl_optim_rmsprop_new(&p, 0.1, 1.0, 1e-8, 0); }, "decay"},
      {[&] { return ndl_optim_rmsprop_new(&p, 0.1, 0.99, nan, 0); }, "eps"},
      {[&] { return ndl_optim_rmsprop_new(&p, -1, 0.99, 1e-8, 0); }, "learning rate"},
  };
  int64_t live = ndl_alloc_live_count();
  for (const Bad &b : bad) {
    ndl_optim *o = b.make();
    EXPECT_EQ(o, nullptr) << b.says;
    ndl_optim_free(o);
    EXPECT_NE(std::string(ndl_last_error()).find(b.says), std::string::npos)
        << "message '" << ndl_last_error() << "' should mention " << b.says;
  }
  EXPECT_EQ(ndl_alloc_live_count(), live);
  ndl_params_free(&buffers);
}

TEST_F(Optim, OutOfMemoryReturnsNullAndLeaksNothing) {
  int64_t live = ndl_alloc_live_count();
  ndl_alloc_set_limit(1);  // every new block fails
  ndl_optim *o = ndl_optim_adam_new(&p, 0.01, 0.9, 0.999, 1e-8, 0.0);
  ndl_alloc_set_limit(0);
  EXPECT_EQ(o, nullptr);
  EXPECT_NE(std::string(ndl_last_error()).find("out of memory"), std::string::npos) << ndl_last_error();
  EXPECT_EQ(ndl_alloc_live_count(), live);
  // Raise the live-byte limit in 1 KiB steps until construction succeeds: some limits let the
  // object through and fail its 256 KiB state, and no failure point may leave a block alive.
  ndl_params big;
  ndl_params_init(&big, 1);
  int64_t shape[1] = {1 << 16};
  ASSERT_NE(ndl_params_add(&big, "x", 1, shape), nullptr);
  live = ndl_alloc_live_count();
  o = nullptr;
  for (size_t limit = 1024; !o && limit < ((size_t)64 << 20); limit += 1024) {
    ndl_alloc_set_limit(limit);
    o = ndl_optim_rmsprop_new(&big, 0.01, 0.99, 1e-8, 0.0);
    ndl_alloc_set_limit(0);
    if (!o) {
      ASSERT_EQ(ndl_alloc_live_count(), live) << "leak at limit " << limit;
    }
  }
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->state_numel, (int64_t)1 << 16);
  ndl_optim_free(o);
  EXPECT_EQ(ndl_alloc_live_count(), live);
  ndl_params_free(&big);
}

TEST_F(Optim, FreeNullIsNoOp) { ndl_optim_free(nullptr); }

TEST_F(Optim, StepAbortsWhenStoreGrewAfterCreation) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ndl_optim *o = ndl_optim_adam_new(&p, 0.01, 0.9, 0.999, 1e-8, 0.0);
        int64_t s[1] = {3};
        ndl_params_add(&p, "late", 1, s);
        ndl_optim_step(o);
      },
      "state_numel");
}

}  // namespace
