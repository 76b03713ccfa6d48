// test_cli_nan.cc: ndl-train end to end with non-finite values (issue 9 item 7): a weights file whose
// first Linear holds one NaN (the ReLU after it used to map the NaN column to 0, so training went on
// with a finite loss) and a diverging SGD run must both stop with exit 6 and one
// "ndl-train: loss became ..." line.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

#include "cli_util.h"

namespace {

// Overwrite element 0 of tensor `name` in a safetensors file (F32, little-endian) with a NaN.
bool poison_first_element(const std::string &path, const std::string &name) {
  std::string bytes = ndl_cli::slurp(path);
  if (bytes.size() < 8) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | (unsigned char)bytes[(size_t)i];
  std::string header = bytes.substr(8, (size_t)n);
  size_t at = header.find("\"" + name + "\"");
  if (at == std::string::npos) return false;
  size_t off = header.find("\"data_offsets\"", at);
  if (off == std::string::npos) return false;
  size_t lb = header.find('[', off);
  uint64_t start = std::stoull(header.substr(lb + 1));
  uint32_t nan_bits = 0x7fc00000u;
  std::memcpy(&bytes[(size_t)(8 + n + start)], &nan_bits, 4);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), (std::streamsize)bytes.size());
  return (bool)f;
}

class CliNaN : public ::testing::Test {
 protected:
  void SetUp() override { dir = ndl_cli::make_workspace("ndl_cli_nan_", &data); }
  void TearDown() override { ndl_cli::run_shell("rm -rf " + dir, "/tmp"); }
  std::string train(const std::string &opts) {
    return std::string(NDL_TRAIN_BIN) + " --data " + data + " --threads 1 --quiet " + opts;
  }
  std::string dir, data;
};

TEST_F(CliNaN, OneNaNWeightInTheFirstLayerExitsSix) {
  for (const char *norm : {"batch", "layer", "none"}) {
    std::string w = dir + "/w_" + norm + ".safetensors", opts = std::string(" --norm ") + norm;
    ndl_cli::RunResult r = ndl_cli::run_shell(train("--epochs 1 --max-steps 1 --save " + w + opts), dir);
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_TRUE(poison_first_element(w, "0.weight")) << w;
    r = ndl_cli::run_shell(train("--epochs 1 --max-steps 5 --load " + w + opts), dir);
    EXPECT_EQ(r.code, 6) << norm << "\nstdout: " << r.out << "\nstderr: " << r.err;
    EXPECT_NE(r.err.find("ndl-train: loss became NaN at step 1"), std::string::npos) << norm << ": " << r.err;
  }
}

TEST_F(CliNaN, DivergingSgdRunExitsSix) {
  ndl_cli::RunResult r = ndl_cli::run_shell(train("--epochs 1 --optimizer sgd --lr 1e30"), dir);
  EXPECT_EQ(r.code, 6) << "stdout: " << r.out << "\nstderr: " << r.err;
  EXPECT_NE(r.err.find("ndl-train: loss became "), std::string::npos) << r.err;
}

}  // namespace
