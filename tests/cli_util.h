// cli_util.h: helpers shared by the ndl-train end-to-end suites (test_cli, test_mpi_train): file
// I/O, a generator of small learnable IDX data sets, a shell runner, stdout line/field parsing.
#ifndef NDL_TESTS_CLI_UTIL_H
#define NDL_TESTS_CLI_UTIL_H

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace ndl_cli {

struct RunResult {
  int code;
  std::string out, err;
};

inline std::string slurp(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline bool exists(const std::string &path) {
  struct stat sb;
  return stat(path.c_str(), &sb) == 0;
}

inline void put_be32(std::string &s, uint32_t v) {
  for (int i = 3; i >= 0; i--) s.push_back((char)((v >> (8 * i)) & 0xff));
}

inline void write_file(const std::string &path, const std::string &bytes, bool gzip) {
  if (gzip) {
    gzFile g = gzopen(path.c_str(), "wb");
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(gzwrite(g, bytes.data(), (unsigned)bytes.size()), (int)bytes.size());
    gzclose(g);
  } else {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), (std::streamsize)bytes.size());
  }
}

// Class c lights a 5x5 patch at a class-specific place; noise 0..noise-1 elsewhere (70 by default;
// 255 gives full-range pixels).
inline void make_split(const std::string &dir, const std::string &split, int n, unsigned seed, bool gzip = true,
                       int label_offset = 0, unsigned noise = 70) {
  std::mt19937 gen(seed);
  std::string img, lab;
  put_be32(img, 2051);
  put_be32(img, (uint32_t)n);
  put_be32(img, 28);
  put_be32(img, 28);
  put_be32(lab, 2049);
  put_be32(lab, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    int c = (int)(gen() % 10);
    unsigned char px[28 * 28];
    for (auto &p : px) p = (unsigned char)(gen() % noise);
    int r0 = (c / 5) * 12 + 3 + (int)(gen() % 3), c0 = (c % 5) * 5 + 1;
    for (int r = r0; r < r0 + 5; r++)
      for (int k = c0; k < c0 + 5 && k < 28; k++) px[r * 28 + k] = (unsigned char)(200 + gen() % 55);
    img.append((const char *)px, sizeof px);
    lab.push_back((char)(c + label_offset));
  }
  const char *ext = gzip ? ".gz" : "";
  write_file(dir + "/" + split + "-images-idx3-ubyte" + ext, img, gzip);
  write_file(dir + "/" + split + "-labels-idx1-ubyte" + ext, lab, gzip);
}

// A fresh directory /tmp/<prefix>XXXXXX (returned) whose data/ (in *data) holds a generated data
// set of 1000 training and 200 test images.
inline std::string make_workspace(const std::string &prefix, std::string *data) {
  std::string tmpl = "/tmp/" + prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  EXPECT_NE(mkdtemp(buf.data()), nullptr);
  std::string dir = buf.data();
  *data = dir + "/data";
  mkdir(data->c_str(), 0755);
  make_split(*data, "train", 1000, 1);
  make_split(*data, "t10k", 200, 2);
  return dir;
}

// A fixture owning a fresh workspace (make_workspace: dir, and data/ in data), removed at teardown.
class WorkspaceTest : public ::testing::Test {
 protected:
  explicit WorkspaceTest(const char *prefix) : prefix_(prefix) {}
  void SetUp() override { dir = make_workspace(prefix_, &data); }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }
  std::string dir, data;

 private:
  std::string prefix_;
};

// Run a shell command with stdout and stderr captured into files under dir.
inline RunResult run_shell(const std::string &cmd, const std::string &dir) {
  std::string out = dir + "/stdout", err = dir + "/stderr";
  int status = system((cmd + " >" + out + " 2>" + err + " </dev/null").c_str());
  return RunResult{WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

inline std::vector<std::string> lines(const std::string &s) {
  std::vector<std::string> v;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) v.push_back(l);
  return v;
}

// The number after "name " in a stdout line (-1 and a failure when missing).
inline double field(const std::string &line, const std::string &name) {
  size_t p = line.find(name + " ");
  EXPECT_NE(p, std::string::npos) << name << " missing in: " << line;
  return p == std::string::npos ? -1 : std::stod(line.substr(p + name.size() + 1));
}

}  // namespace ndl_cli

#endif
