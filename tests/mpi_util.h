// mpi_util.h: helpers of the ndl-train-under-mpirun suites (test_mpi_train, test_mpi_equiv): a
// safetensors reader independent of launch/safetensors.c, weight and per-step loss comparisons
// with tolerances, --log JSON Lines parsing, and "[ figure ]" lines for measured values.
#ifndef NDL_TESTS_MPI_UTIL_H
#define NDL_TESTS_MPI_UTIL_H

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli_util.h"

namespace ndl_mpi {

using namespace ndl_cli;

// ---- safetensors, parsed independently of launch/safetensors.c ----

struct Tensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

struct JsonCursor {
  const std::string &s;
  size_t i = 0;
  bool ok = true;
  explicit JsonCursor(const std::string &text) : s(text) {}
  void ws() {
    while (i < s.size() && isspace((unsigned char)s[i])) i++;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) {
      i++;
      return true;
    }
    return false;
  }
  std::string str() {
    ws();
    std::string out;
    if (i >= s.size() || s[i] != '"') {
      ok = false;
      return out;
    }
    for (i++; i < s.size() && s[i] != '"'; i++) {
      if (s[i] == '\\' && i + 1 < s.size()) i++;
      out.push_back(s[i]);
    }
    i++;
    return out;
  }
  int64_t integer() {
    ws();
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(s.substr(i, 24), &used);
    } catch (...) {
      ok = false;
    }
    i += used;
    return v;
  }
  std::vector<int64_t> int_array() {
    std::vector<int64_t> v;
    if (!eat('[')) {
      ok = false;
      return v;
    }
    if (eat(']')) return v;
    do v.push_back(integer());
    while (ok && eat(','));
    if (!eat(']')) ok = false;
    return v;
  }
  void skip_value() {  // a string or an object of strings (the __metadata__ entry)
    ws();
    if (i < s.size() && s[i] == '"') {
      str();
      return;
    }
    if (!eat('{')) {
      ok = false;
      return;
    }
    if (eat('}')) return;
    do {
      str();
      if (!eat(':')) ok = false;
      skip_value();
    } while (ok && eat(','));
    if (!eat('}')) ok = false;
  }
};

// name -> tensor; an empty map and a test failure when the file is not a well-formed safetensors file.
inline std::map<std::string, Tensor> read_safetensors(const std::string &path) {
  std::map<std::string, Tensor> out;
  std::string f = slurp(path);
  EXPECT_GE(f.size(), 8u) << path;
  if (f.size() < 8) return out;
  uint64_t hlen = 0;
  for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | (unsigned char)f[k];
  EXPECT_LE(8 + hlen, f.size()) << path;
  if (8 + hlen > f.size()) return out;
  std::string header = f.substr(8, hlen), body = f.substr(8 + hlen);
  JsonCursor j(header);
  bool ok = j.eat('{');
  while (ok && !j.eat('}')) {
    std::string name = j.str();
    ok = j.ok && j.eat(':');
    if (!ok) break;
    if (name == "__metadata__") {
      j.skip_value();
    } else {
      Tensor t;
      int64_t begin = -1, end = -1;
      ok = j.eat('{');
      while (ok && !j.eat('}')) {
        std::string key = j.str();
        ok = j.ok && j.eat(':');
        if (!ok) break;
        if (key == "dtype") t.dtype = j.str();
        else if (key == "shape") t.shape = j.int_array();
        else if (key == "data_offsets") {
          std::vector<int64_t> o = j.int_array();
          if (o.size() == 2) begin = o[0], end = o[1];
        } else j.skip_value();
        ok = j.ok;
        j.eat(',');
      }
      EXPECT_TRUE(begin >= 0 && end >= begin && (size_t)end <= body.size()) << path << ": " << name;
      if (!(begin >= 0 && end >= begin && (size_t)end <= body.size())) return {};
      t.bytes = body.substr((size_t)begin, (size_t)(end - begin));
      out[name] = t;
    }
    ok = ok && j.ok;
    j.eat(',');
  }
  EXPECT_TRUE(ok && j.ok) << path << ": malformed header: " << header;
  EXPECT_FALSE(out.empty()) << path;
  return out;
}

// Max |a-b| over the F32 tensors; fails (with the first offender) where |a-b| > tol*(1+|b|), i.e.
// tol absolute plus tol relative. Other dtypes (the I64 num_batches_tracked) must be equal.
inline double compare_weights(const std::string &pa, const std::string &pb, double tol, const std::string &what) {
  auto a = read_safetensors(pa), b = read_safetensors(pb);
  EXPECT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  int reported = 0;
  for (auto &kv : b) {
    auto it = a.find(kv.first);
    if (it == a.end()) {
      ADD_FAILURE() << what << ": tensor " << kv.first << " missing";
      continue;
    }
    const Tensor &x = it->second, &y = kv.second;
    EXPECT_EQ(x.dtype, y.dtype) << kv.first;
    EXPECT_EQ(x.shape, y.shape) << kv.first;
    EXPECT_EQ(x.bytes.size(), y.bytes.size()) << kv.first;
    if (x.dtype != y.dtype || x.bytes.size() != y.bytes.size()) continue;
    if (y.dtype != "F32") {
      EXPECT_EQ(x.bytes, y.bytes) << what << ": " << kv.first;
      continue;
    }
    size_t n = y.bytes.size() / 4;
    for (size_t k = 0; k < n; k++) {
      float u, v;
      memcpy(&u, x.bytes.data() + 4 * k, 4);
      memcpy(&v, y.bytes.data() + 4 * k, 4);
      double d = std::fabs((double)u - (double)v);
      if (!(d <= worst)) worst = d;  // NaN propagates
      if (!(d <= tol * (1.0 + std::fabs((double)v))) && reported++ < 5)
        ADD_FAILURE() << what << ": " << kv.first << "[" << k << "] = " << u << " vs " << v << " (|diff| " << d
                      << ", tolerance " << tol << " abs + rel)";
    }
  }
  return worst;
}

// ---- --log JSON Lines ----

inline double json_number(const std::string &line, const std::string &key) {
  size_t p = line.find("\"" + key + "\":");
  EXPECT_NE(p, std::string::npos) << key << " missing in " << line;
  return p == std::string::npos ? NAN : std::stod(line.substr(p + key.size() + 3));
}

struct StepLoss {
  long step, epoch;
  double loss;
};

inline std::vector<StepLoss> step_losses(const std::string &log) {
  std::vector<StepLoss> v;
  for (auto &l : lines(slurp(log)))
    if (l.find("\"loss\":") != std::string::npos)
      v.push_back({(long)json_number(l, "step"), (long)json_number(l, "epoch"), json_number(l, "loss")});
  return v;
}

inline std::vector<std::string> epoch_lines(const std::string &log) {
  std::vector<std::string> v;
  for (auto &l : lines(slurp(log)))
    if (l.find("\"test_err\":") != std::string::npos) v.push_back(l);
  return v;
}

// Max relative difference of the per-step losses; fails where it exceeds tol (tol < 0: no check).
inline double compare_losses(const std::string &la, const std::string &lb, double tol, const std::string &what) {
  auto a = step_losses(la), b = step_losses(lb);
  EXPECT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  for (size_t k = 0; k < a.size() && k < b.size(); k++) {
    EXPECT_EQ(a[k].step, b[k].step) << what;
    EXPECT_EQ(a[k].epoch, b[k].epoch) << what;
    double rel = std::fabs(a[k].loss - b[k].loss) / std::fabs(b[k].loss);
    if (!(rel <= worst)) worst = rel;
    if (tol >= 0) {
      EXPECT_LE(rel, tol) << what << ": step " << b[k].step << " loss " << a[k].loss << " vs " << b[k].loss;
    }
  }
  return worst;
}

inline void figure(const std::string &what, double value) {
  std::cout << "[ figure ] " << what << " = " << value << std::endl;
}

}  // namespace ndl_mpi

#endif
