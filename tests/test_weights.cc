// test_weights.cc: safetensors round trip and exact header bytes, every reader error path, atomic
// writes (failed writes leave the old file and no temp file), and the PyTorch state_dict mapping:
// names/shapes/order of the default MLPResNet, bitwise save/load round trips, load errors that leave
// the model unchanged.
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "launch/safetensors.h"
#include "launch/weights.h"
#include "nn/models.h"
#include "test_util.h"

namespace {

std::string read_bytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), (std::streamsize)bytes.size());
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++) s[i] = (char)(v >> (8 * i));
  return s;
}

// A safetensors file from a raw header (unpadded) and body.
std::string st_bytes(const std::string &header, const std::string &body) {
  return le64(header.size()) + header + body;
}

ndl_st_entry entry(const char *name, ndl_st_dtype dt, std::vector<int64_t> shape, const void *data,
                   int64_t nbytes) {
  ndl_st_entry e;
  memset(&e, 0, sizeof e);
  snprintf(e.name, sizeof e.name, "%s", name);
  e.dtype = dt;
  e.ndim = (int)shape.size();
  for (size_t i = 0; i < shape.size(); i++) e.shape[i] = shape[i];
  e.data = data;
  e.nbytes = nbytes;
  return e;
}

ndl_st_meta meta(const char *k, const char *v) {
  ndl_st_meta m;
  memset(&m, 0, sizeof m);
  snprintf(m.key, sizeof m.key, "%s", k);
  snprintf(m.value, sizeof m.value, "%s", v);
  return m;
}

std::vector<float> store_values(const ndl_params &p) {
  return p.numel ? std::vector<float>(p.data, p.data + p.numel) : std::vector<float>();
}

}  // namespace

class Weights : public CtxTest {
 protected:
  void SetUp() override {
    CtxTest::SetUp();
    std::string tmpl = ::testing::TempDir() + "ndl_weights_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    ASSERT_NE(mkdtemp(buf.data()), nullptr);
    dir = buf.data();
  }
  void TearDown() override {
    for (const std::string &f : files()) remove((dir + "/" + f).c_str());
    rmdir(dir.c_str());
    CtxTest::TearDown();
  }
  std::string path(const char *name) const { return dir + "/" + name; }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    DIR *d = opendir(dir.c_str());
    if (!d) return out;
    while (struct dirent *e = readdir(d))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) out.push_back(e->d_name);
    closedir(d);
    return out;
  }
  // Read a file expected to fail; returns the message.
  std::string read_fails(const std::string &p, ndl_status want) {
    ndl_st_file f;
    ndl_status st = ndl_safetensors_read(p.c_str(), &f);
    EXPECT_EQ(st, want) << ndl_last_error();
    EXPECT_EQ(f.entries, nullptr);
    EXPECT_EQ(f.blob, nullptr);
    std::string msg = ndl_last_error();
    EXPECT_NE(msg.find(p), std::string::npos) << "message does not name the file: " << msg;
    return msg;
  }
  std::string dir;
};

// ------------------------------------------------------------------------------ safetensors

TEST_F(Weights, SafetensorsRoundTrip) {
  float f[6] = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, 7.0f};
  int64_t big = -(int64_t(1) << 40) - 3;
  unsigned char u[5] = {0, 1, 127, 200, 255};
  ndl_st_entry es[] = {entry("layer.weight", NDL_ST_F32, {2, 3}, f, sizeof f),
                       entry("steps", NDL_ST_I64, {}, &big, 8), entry("mask", NDL_ST_U8, {5}, u, 5),
                       entry("empty", NDL_ST_F32, {0, 4}, nullptr, 0),
                       entry("q\"uo\\te\n\xc3\xa9", NDL_ST_F32, {1}, f, 4)};
  ndl_st_meta ms[] = {meta("format", "pt"), meta("note", "a \"quoted\" \\ back\nslash \x01 \xc3\xa9")};
  std::string p = path("rt.safetensors");
  ASSERT_EQ(ndl_safetensors_write(p.c_str(), es, 5, ms, 2), NDL_OK) << ndl_last_error();

  ndl_st_file rf;
  ASSERT_EQ(ndl_safetensors_read(p.c_str(), &rf), NDL_OK) << ndl_last_error();
  ASSERT_EQ(rf.n, 5);
  for (int i = 0; i < 5; i++) {
    SCOPED_TRACE(es[i].name);
    EXPECT_STREQ(rf.entries[i].name, es[i].name);  // file order kept
    EXPECT_EQ(rf.entries[i].dtype, es[i].dtype);
    ASSERT_EQ(rf.entries[i].ndim, es[i].ndim);
    for (int d = 0; d < es[i].ndim; d++) EXPECT_EQ(rf.entries[i].shape[d], es[i].shape[d]);
    ASSERT_EQ(rf.entries[i].nbytes, es[i].nbytes);
    if (es[i].nbytes) {
      EXPECT_EQ(memcmp(rf.entries[i].data, es[i].data, (size_t)es[i].nbytes), 0);
    }
  }
  int64_t got;
  memcpy(&got, ndl_safetensors_find(&rf, "steps")->data, 8);
  EXPECT_EQ(got, big);
  EXPECT_EQ(ndl_safetensors_find(&rf, "nope"), nullptr);
  ASSERT_EQ(rf.nmeta, 2);
  EXPECT_STREQ(ndl_safetensors_meta(&rf, "format"), "pt");
  EXPECT_STREQ(ndl_safetensors_meta(&rf, "note"), ms[1].value);
  EXPECT_EQ(ndl_safetensors_meta(&rf, "missing"), nullptr);
  ndl_safetensors_free(&rf);
  ndl_safetensors_free(&rf);  // idempotent
  EXPECT_EQ(files(), std::vector<std::string>({"rt.safetensors"})) << "temporary file left behind";
}

TEST_F(Weights, SafetensorsHeaderBytes) {
  float f[2] = {1.0f, -2.0f};
  unsigned char u = 9;
  ndl_st_entry es[] = {entry("a", NDL_ST_F32, {2}, f, 8), entry("b", NDL_ST_U8, {}, &u, 1)};
  ndl_st_meta m = meta("k", "v");
  std::string p = path("h.safetensors");
  ASSERT_EQ(ndl_safetensors_write(p.c_str(), es, 2, &m, 1), NDL_OK) << ndl_last_error();
  std::string bytes = read_bytes(p);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)bytes[i];
  EXPECT_EQ(hl % 8, 0u) << "header not padded to a multiple of 8";
  ASSERT_EQ(bytes.size(), 8 + hl + 9);
  std::string json =
      "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[8,9]}}";
  json += std::string((8 - json.size() % 8) % 8, ' ');
  EXPECT_EQ(bytes.substr(8, hl), json);
  EXPECT_EQ(memcmp(bytes.data() + 8 + hl, f, 8), 0);
  EXPECT_EQ((unsigned char)bytes[8 + hl + 8], 9);

  // no metadata, no tensors: "{}" padded to 8
  ASSERT_EQ(ndl_safetensors_write(p.c_str(), nullptr, 0, nullptr, 0), NDL_OK);
  EXPECT_EQ(read_bytes(p), le64(8) + "{}      ");
  ndl_st_file rf;
  ASSERT_EQ(ndl_safetensors_read(p.c_str(), &rf), NDL_OK) << ndl_last_error();
  EXPECT_EQ(rf.n, 0);
  EXPECT_EQ(rf.nmeta, 0);
  ndl_safetensors_free(&rf);
}

TEST_F(Weights, SafetensorsReadsForeignSpacingAndOrder) {
  // fields in another order, whitespace, escapes in names, \u escapes
  std::string h =
      " {\n \"b\\u00e9\" : { \"data_offsets\" : [ 4 , 8 ] , \"shape\" : [ 1 ] , \"dtype\" : \"F32\" } ,"
      "\t\"a\\/x\":{\"shape\":[1],\"dtype\":\"F32\",\"data_offsets\":[0,4]},\"__metadata__\":{}}\r\n";
  float v[2] = {3.0f, 4.0f};
  write_bytes(path("f.safetensors"), st_bytes(h, std::string((const char *)v, 8)));
  ndl_st_file rf;
  ASSERT_EQ(ndl_safetensors_read(path("f.safetensors").c_str(), &rf), NDL_OK) << ndl_last_error();
  ASSERT_EQ(rf.n, 2);
  EXPECT_STREQ(rf.entries[0].name, "b\xc3\xa9");
  EXPECT_STREQ(rf.entries[1].name, "a/x");
  float x;
  memcpy(&x, rf.entries[0].data, 4);
  EXPECT_EQ(x, 4.0f);
  ndl_safetensors_free(&rf);
}

TEST_F(Weights, SafetensorsReadErrors) {
  std::string m = read_fails(path("missing.safetensors"), NDL_ERR_IO);
  EXPECT_NE(m.find("No such file"), std::string::npos) << m;

  write_bytes(path("short"), "abc");
  m = read_fails(path("short"), NDL_ERR_FORMAT);
  EXPECT_NE(m.find("3 bytes, expected at least 8"), std::string::npos) << m;

  write_bytes(path("huge"), le64(uint64_t(1) << 40) + "{}");
  m = read_fails(path("huge"), NDL_ERR_FORMAT);
  EXPECT_NE(m.find("header length 1099511627776 exceeds the 2 bytes"), std::string::npos) << m;

  write_bytes(path("off"), le64(50) + "{}");
  m = read_fails(path("off"), NDL_ERR_FORMAT);
  EXPECT_NE(m.find("header length 50"), std::string::npos) << m;

  const std::string F = "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]";
  const std::string body4(4, '\0');
  struct Case {
    const char *label;
    std::string header, body, expect;
  } cases[] = {
      {"not an object", "[1,2]", "", "bad header JSON at byte 0: expected '{'"},
      {"truncated json", "{\"a\":{" + F, body4, "expected '}', found end of header"},
      {"trailing comma", "{\"a\":{" + F + "},}", body4, "expected a tensor name string"},
      {"missing colon", "{\"a\"{" + F + "}}", body4, "expected ':'"},
      {"unterminated string", "{\"a", "", "closing '\"'"},
      {"bad escape", "{\"a\\q\":{" + F + "}}", body4, "a valid escape"},
      {"raw control char", "{\"a\x01\":{" + F + "}}", body4, "raw control character"},
      {"garbage after object", "{\"a\":{" + F + "}} x", body4, "only space after the header object"},
      {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", body4,
       "a non-negative integer"},
      {"float in shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", body4,
       "no fraction or exponent"},
      {"leading zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", body4,
       "without leading zeros"},
      {"integer overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}",
       body4, "fits in 63 bits"},
      {"too many dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", body4,
       "at most 8 dimensions"},
      {"missing field", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", body4,
       "tensor a: missing field \"shape\""},
      {"unknown field", "{\"a\":{" + F + ",\"extra\":1}}", body4, "unexpected or duplicate field \"extra\""},
      {"duplicate field", "{\"a\":{" + F + ",\"dtype\":\"F32\"}}", body4, "duplicate field \"dtype\""},
      {"duplicate tensor", "{\"a\":{" + F + "},\"a\":{" + F + "}}", body4, "duplicate tensor a"},
      {"metadata not strings", "{\"__metadata__\":{\"k\":1}}", "", "a metadata value string"},
      {"unknown dtype", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", body4,
       "tensor a: unknown dtype \"F16\""},
      {"one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", body4,
       "data_offsets has 1 values, expected 2"},
      {"shape vs offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
       std::string(8, '\0'), "tensor a: F32 shape [3] needs 12 bytes, data_offsets [0,8] hold 8"},
      {"i64 shape vs offsets", "{\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]}}", body4,
       "I64 shape [] needs 8 bytes"},
      {"end before begin", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", body4,
       "end before begin"},
      {"offsets out of range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[100,104]}}", body4,
       "truncated body: tensor a needs bytes [100,104), the body has 4"},
      {"truncated body", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", std::string(10, 'x'),
       "truncated body: tensor a needs bytes [0,16), the body has 10"},
      {"overlap",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
       std::string(12, '\0'), "tensor b: data_offsets [4,12] overlap a (ends at 8)"},
      {"gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", std::string(8, '\0'),
       "tensor a starts at byte 4, expected 0"},
      {"trailing garbage", "{\"a\":{" + F + "}}", body4 + "junk", "body is 8 bytes, tensors cover 4"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.label);
    write_bytes(path("bad"), st_bytes(c.header, c.body));
    m = read_fails(path("bad"), NDL_ERR_FORMAT);
    EXPECT_NE(m.find(c.expect), std::string::npos) << "message: " << m << "\nwanted: " << c.expect;
  }
}

TEST_F(Weights, U32RoundTripAndNames) {
  uint32_t w[3] = {0u, 0x9908b0dfu, 0xffffffffu};
  ndl_st_entry e = entry("mt", NDL_ST_U32, {3}, w, sizeof w);
  std::string p = path("u32.safetensors");
  ASSERT_EQ(ndl_safetensors_write(p.c_str(), &e, 1, nullptr, 0), NDL_OK) << ndl_last_error();
  EXPECT_NE(read_bytes(p).find("\"dtype\":\"U32\",\"shape\":[3]"), std::string::npos);
  ndl_st_file f;
  ASSERT_EQ(ndl_safetensors_read(p.c_str(), &f), NDL_OK) << ndl_last_error();
  ASSERT_EQ(f.n, 1);
  EXPECT_EQ(f.entries[0].dtype, NDL_ST_U32);
  EXPECT_EQ(f.entries[0].nbytes, 12);
  EXPECT_EQ(memcmp(f.entries[0].data, w, sizeof w), 0);
  ndl_safetensors_free(&f);
  EXPECT_STREQ(ndl_st_dtype_name(NDL_ST_U32), "U32");
  EXPECT_STREQ(ndl_st_dtype_name(NDL_ST_F32), "F32");
  EXPECT_STREQ(ndl_st_dtype_name((ndl_st_dtype)17), "?");
}

TEST_F(Weights, EscapeKeepsMessagesOnOneLine) {
  char buf[NDL_ST_ESCAPED(64)];
  EXPECT_STREQ(ndl_st_escape("a\nndl-train: forged", buf, sizeof buf), "a\\nndl-train: forged");
  EXPECT_STREQ(ndl_st_escape("t\tr\r\x01\x1b[2K\x7f\\ \xc3\xa9", buf, sizeof buf),
               "t\\tr\\r\\x01\\x1b[2K\\x7f\\\\ \xc3\xa9");
  char small[6];
  EXPECT_STREQ(ndl_st_escape("ab\ncdef", small, sizeof small), "ab\\nc");  // cut, never mid-escape
  EXPECT_STREQ(ndl_st_escape("abcd\n", small, sizeof small), "abcd");
}

// A FIFO (no writer) or a directory in place of a file: refused at once, naming the file.
TEST_F(Weights, ReaderRefusesNonRegularFilesWithoutBlocking) {
  std::string fifo = path("pipe.safetensors");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  alarm(30);  // a blocking open() would hang here: die loudly instead
  std::string m = read_fails(fifo, NDL_ERR_IO);
  alarm(0);
  EXPECT_NE(m.find("not a regular file (a FIFO)"), std::string::npos) << m;
  std::string d = path("dir.safetensors");
  ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  m = read_fails(d, NDL_ERR_IO);
  EXPECT_NE(m.find("not a regular file (a directory)"), std::string::npos) << m;
  m = read_fails("/dev/null", NDL_ERR_IO);
  EXPECT_NE(m.find("a character device"), std::string::npos) << m;
}

// Names read from a file are escaped in every reader message.
TEST_F(Weights, ReaderMessagesEscapeNames) {
  std::string body(8, '\0');
  std::string cases[] = {
      "{\"a\\nndl-train: x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
      "{\"a\\nndl-train: x\":{\"dtype\":\"F16\\n\",\"shape\":[2],\"data_offsets\":[0,8]}}",
      "{\"a\\nndl-train: x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\\r\":1}}",
      "{\"a\\nndl-train: x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"a\\nndl-train: x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
      "{\"__metadata__\":{\"k\\n\":\"v\",\"k\\n\":\"w\"}}",
  };
  int i = 0;
  for (const std::string &h : cases) {
    std::string p = path(("esc" + std::to_string(i++) + ".safetensors").c_str());
    write_bytes(p, st_bytes(h, h.find("__metadata__") != std::string::npos ? "" : body));
    std::string m = read_fails(p, NDL_ERR_FORMAT);
    EXPECT_EQ(m.find_first_of("\n\r"), std::string::npos) << "raw control character in: " << m;
    EXPECT_NE(m.find("\\n"), std::string::npos) << m;
  }
}

TEST_F(Weights, WriterRejectsInconsistentEntries) {
  float f[2] = {0, 0};
  ndl_st_entry e = entry("a", NDL_ST_F32, {3}, f, 8);
  EXPECT_EQ(ndl_safetensors_write(path("x").c_str(), &e, 1, nullptr, 0), NDL_ERR_ARG);
  EXPECT_NE(std::string(ndl_last_error()).find("tensor a: nbytes 8, shape and dtype need 12"), std::string::npos)
      << ndl_last_error();
  EXPECT_TRUE(files().empty());
}

TEST_F(Weights, WriterIntoMissingDirectoryFailsCleanly) {
  float f = 1.0f;
  ndl_st_entry e = entry("a", NDL_ST_F32, {1}, &f, 4);
  std::string p = path("no_such_dir/w.safetensors");
  EXPECT_EQ(ndl_safetensors_write(p.c_str(), &e, 1, nullptr, 0), NDL_ERR_IO);
  std::string m = ndl_last_error();
  EXPECT_NE(m.find(p), std::string::npos) << m;
  EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
  EXPECT_TRUE(files().empty());
}

TEST_F(Weights, FailedRenameKeepsTargetAndRemovesTemp) {
  // The target is an existing directory: the temp file is written, the rename fails.
  ASSERT_EQ(mkdir(path("target").c_str(), 0755), 0);
  float f = 1.0f;
  ndl_st_entry e = entry("a", NDL_ST_F32, {1}, &f, 4);
  EXPECT_EQ(ndl_safetensors_write(path("target").c_str(), &e, 1, nullptr, 0), NDL_ERR_IO);
  std::string m = ndl_last_error();
  EXPECT_NE(m.find("rename"), std::string::npos) << m;
  EXPECT_EQ(files(), std::vector<std::string>({"target"})) << "temporary file left behind";
  rmdir(path("target").c_str());
}

TEST_F(Weights, FailedOverwriteKeepsOldFile) {
  std::string p = path("w.safetensors");
  float small[4] = {1, 2, 3, 4};
  ndl_st_entry e = entry("a", NDL_ST_F32, {4}, small, sizeof small);
  ASSERT_EQ(ndl_safetensors_write(p.c_str(), &e, 1, nullptr, 0), NDL_OK) << ndl_last_error();
  std::string old = read_bytes(p);

  // A file size limit makes the write of a large file fail part way (EFBIG).
  std::vector<float> big(1 << 16, 0.5f);
  ndl_st_entry eb = entry("a", NDL_ST_F32, {(int64_t)big.size()}, big.data(), (int64_t)(big.size() * 4));
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = saved;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  ndl_status st = ndl_safetensors_write(p.c_str(), &eb, 1, nullptr, 0);
  std::string m = ndl_last_error();
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  EXPECT_EQ(st, NDL_ERR_IO);
  EXPECT_NE(m.find(p), std::string::npos) << m;
  EXPECT_NE(m.find("File too large"), std::string::npos) << m;
  EXPECT_EQ(read_bytes(p), old) << "the old file was touched";
  EXPECT_EQ(files(), std::vector<std::string>({"w.safetensors"})) << "temporary file left behind";

  // and a successful overwrite replaces it, leaving no temp file
  ASSERT_EQ(ndl_safetensors_write(p.c_str(), &eb, 1, nullptr, 0), NDL_OK) << ndl_last_error();
  ndl_st_file rf;
  ASSERT_EQ(ndl_safetensors_read(p.c_str(), &rf), NDL_OK) << ndl_last_error();
  EXPECT_EQ(rf.entries[0].nbytes, (int64_t)big.size() * 4);
  ndl_safetensors_free(&rf);
  EXPECT_EQ(files(), std::vector<std::string>({"w.safetensors"}));
}

// ------------------------------------------------------------------------------ weights

class WeightsModel : public Weights {
 protected:
  void SetUp() override {
    Weights::SetUp();
    for (int i = 0; i < 2; i++) {
      ndl_rng_seed(&rng[i], 100 + i);
      ndl_nn_env_init(&env[i], &rng[i]);
    }
  }
  void TearDown() override {
    for (int i = 0; i < 2; i++) {
      ndl_module_free(model[i]);
      ndl_nn_env_free(&env[i]);
    }
    Weights::TearDown();
  }
  void build(int i, int64_t dim, int64_t hidden, int blocks, int64_t classes, ndl_norm_kind norm) {
    model[i] = ndl_nn_mlp_resnet(&env[i], dim, hidden, blocks, classes, norm, 0.1f);
    ASSERT_NE(model[i], nullptr);
  }
  // Training-mode forwards so running statistics and num_batches_tracked move off their init.
  void train_forward(int i, int64_t dim, int times) {
    ndl_module_train(model[i], 1);
    for (int t = 0; t < times; t++) {
      ASSERT_NE(ndl_module_forward(model[i], ctx, get_tensor(ctx, {6, dim}, t + 1)), nullptr);
      ndl_ctx_reset(ctx);
    }
  }
  void expect_unchanged(int i, const std::vector<float> &p, const std::vector<float> &b) {
    ASSERT_EQ(p.size(), (size_t)env[i].params.numel);
    ASSERT_EQ(b.size(), (size_t)env[i].buffers.numel);
    if (!p.empty()) {
      EXPECT_EQ(memcmp(p.data(), env[i].params.data, p.size() * 4), 0) << "parameters changed";
    }
    if (!b.empty()) {
      EXPECT_EQ(memcmp(b.data(), env[i].buffers.data, b.size() * 4), 0) << "buffers changed";
    }
  }
  ndl_rng rng[2];
  ndl_nn_env env[2];
  ndl_module *model[2] = {nullptr, nullptr};
};

TEST_F(WeightsModel, DefaultModelStateDictMatchesPyTorch) {
  build(0, 784, 100, 3, 10, NDL_NORM_BATCH);
  struct Want {
    std::string name;
    ndl_st_dtype dtype;
    std::vector<int64_t> shape;
  };
  // nn.Sequential(Linear, ReLU, 3 x Sequential(Res(fn=Sequential(Linear, BN, ReLU, Dropout, Linear, BN)),
  // ReLU), Linear).state_dict(): per module its parameters, then its buffers.
  std::vector<Want> want = {{"0.weight", NDL_ST_F32, {100, 784}}, {"0.bias", NDL_ST_F32, {100}}};
  for (int k = 2; k <= 4; k++) {
    std::string p = std::to_string(k) + ".0.fn.";
    auto bn = [&](const std::string &m, int64_t d) {
      for (const char *s : {"weight", "bias", "running_mean", "running_var"})
        want.push_back({p + m + "." + s, NDL_ST_F32, {d}});
      want.push_back({p + m + ".num_batches_tracked", NDL_ST_I64, {}});
    };
    want.push_back({p + "0.weight", NDL_ST_F32, {50, 100}});
    want.push_back({p + "0.bias", NDL_ST_F32, {50}});
    bn("1", 50);
    want.push_back({p + "4.weight", NDL_ST_F32, {100, 50}});
    want.push_back({p + "4.bias", NDL_ST_F32, {100}});
    bn("5", 100);
  }
  want.push_back({"5.weight", NDL_ST_F32, {10, 100}});
  want.push_back({"5.bias", NDL_ST_F32, {10}});
  ASSERT_EQ(want.size(), 2u + 3 * 14 + 2);

  ndl_st_entry *es;
  void *scratch;
  int n = ndl_weights_entries(&env[0], &es, &scratch);
  ASSERT_EQ(n, (int)want.size());
  auto check = [&](const ndl_st_entry *e, int count) {
    ASSERT_EQ(count, (int)want.size());
    for (int i = 0; i < count; i++) {
      SCOPED_TRACE(want[i].name);
      EXPECT_EQ(e[i].name, want[i].name) << "at position " << i;
      EXPECT_EQ(e[i].dtype, want[i].dtype);
      EXPECT_EQ(std::vector<int64_t>(e[i].shape, e[i].shape + e[i].ndim), want[i].shape);
    }
  };
  check(es, n);

  // Linear weight transposed: torch (out,in)[j][i] == ours (in,out)[i][j]; bias (1,out) -> (out)
  const ndl_tensor *w = env[0].params.tensors[ndl_params_find(&env[0].params, "0.weight")];
  const float *tw = (const float *)es[0].data;
  for (int64_t i : {0, 1, 500, 783})
    for (int64_t j : {0, 7, 99}) EXPECT_EQ(tw[j * 784 + i], ndl_tensor_ptr(w)[i * 100 + j]);
  ndl_free(scratch);

  // the file on disk has the same header order
  std::string p = path("w.safetensors");
  ASSERT_EQ(ndl_weights_save(p.c_str(), &env[0]), NDL_OK) << ndl_last_error();
  ndl_st_file f;
  ASSERT_EQ(ndl_safetensors_read(p.c_str(), &f), NDL_OK) << ndl_last_error();
  check(f.entries, f.n);
  EXPECT_STREQ(ndl_safetensors_meta(&f, "format"), "pt");
  ndl_safetensors_free(&f);
}

TEST_F(WeightsModel, SaveLoadRoundTripIsBitwise) {
  for (ndl_norm_kind norm : {NDL_NORM_BATCH, NDL_NORM_LAYER}) {
    SCOPED_TRACE(norm == NDL_NORM_BATCH ? "BatchNorm" : "LayerNorm");
    for (int i = 0; i < 2; i++) {
      ndl_module_free(model[i]);
      ndl_nn_env_free(&env[i]);
      ndl_nn_env_init(&env[i], &rng[i]);
      build(i, 20, 16, 2, 5, norm);
    }
    train_forward(0, 20, 3);
    if (norm == NDL_NORM_BATCH) {
      int k = ndl_params_find(&env[0].buffers, "2.0.fn.1.num_batches_tracked");
      ASSERT_GE(k, 0);
      EXPECT_EQ(ndl_tensor_ptr(env[0].buffers.tensors[k])[0], 3.0f);
    } else {
      EXPECT_EQ(env[0].buffers.count, 0);
    }
    ASSERT_NE(store_values(env[0].params), store_values(env[1].params)) << "models must start different";
    std::string p = path("rt.safetensors");
    ASSERT_EQ(ndl_weights_save(p.c_str(), &env[0]), NDL_OK) << ndl_last_error();
    ASSERT_EQ(ndl_weights_load(p.c_str(), &env[1]), NDL_OK) << ndl_last_error();
    expect_unchanged(1, store_values(env[0].params), store_values(env[0].buffers));
    EXPECT_EQ(files(), std::vector<std::string>({"rt.safetensors"}));
  }
}

TEST_F(WeightsModel, LoadErrorsLeaveModelUnchanged) {
  build(0, 20, 16, 1, 5, NDL_NORM_BATCH);
  build(1, 20, 16, 1, 5, NDL_NORM_BATCH);
  train_forward(0, 20, 2);
  const std::vector<float> p1 = store_values(env[1].params), b1 = store_values(env[1].buffers);

  ndl_st_entry *es;
  void *scratch;
  int n = ndl_weights_entries(&env[0], &es, &scratch);
  ASSERT_GT(n, 0);
  std::vector<ndl_st_entry> base(es, es + n);
  auto find = [&](std::vector<ndl_st_entry> &v, const char *name) -> ndl_st_entry & {
    for (auto &e : v)
      if (!strcmp(e.name, name)) return e;
    ADD_FAILURE() << "no entry " << name;
    return v[0];
  };
  std::vector<float> zeros(20 * 16 * 2, 0.0f);
  const std::string file = path("w.safetensors");
  struct Case {
    const char *label;
    std::vector<ndl_st_entry> entries;
    std::string expect;
  };
  std::vector<Case> cases;
  {
    std::vector<ndl_st_entry> v;
    for (auto &e : base)
      if (strcmp(e.name, "2.0.fn.1.running_var")) v.push_back(e);
    cases.push_back({"missing", v, "w.safetensors: tensor 2.0.fn.1.running_var is missing"});
  }
  {
    std::vector<ndl_st_entry> v = base;
    find(v, "0.weight") = entry("0.weight", NDL_ST_F32, {10, 20}, zeros.data(), 10 * 20 * 4);
    cases.push_back({"shape", v, "w.safetensors: tensor 0.weight has shape [10,20], expected [16,20]"});
  }
  {
    std::vector<ndl_st_entry> v = base;
    find(v, "0.bias") = entry("0.bias", NDL_ST_F32, {1, 16}, zeros.data(), 16 * 4);
    cases.push_back({"our own bias layout", v, "tensor 0.bias has shape [1,16], expected [16]"});
  }
  {
    std::vector<ndl_st_entry> v = base;
    find(v, "2.0.fn.1.num_batches_tracked") = entry("2.0.fn.1.num_batches_tracked", NDL_ST_F32, {}, zeros.data(), 4);
    cases.push_back({"dtype", v, "w.safetensors: tensor 2.0.fn.1.num_batches_tracked has dtype F32, expected I64"});
  }
  {
    std::vector<ndl_st_entry> v = base;
    v.push_back(entry("extra.weight", NDL_ST_F32, {2}, zeros.data(), 8));
    cases.push_back({"unexpected", v, "w.safetensors: unexpected tensor extra.weight"});
  }
  for (const Case &c : cases) {
    SCOPED_TRACE(c.label);
    ASSERT_EQ(ndl_safetensors_write(file.c_str(), c.entries.data(), (int)c.entries.size(), nullptr, 0), NDL_OK)
        << ndl_last_error();
    EXPECT_EQ(ndl_weights_load(file.c_str(), &env[1]), NDL_ERR_MISMATCH);
    std::string m = ndl_last_error();
    EXPECT_NE(m.find(c.expect), std::string::npos) << "message: " << m;
    EXPECT_NE(m.find(file), std::string::npos) << m;
    expect_unchanged(1, p1, b1);
  }

  // truncated body: the last tensor cut short
  ASSERT_EQ(ndl_safetensors_write(file.c_str(), base.data(), n, nullptr, 0), NDL_OK);
  std::string bytes = read_bytes(file);
  write_bytes(file, bytes.substr(0, bytes.size() - 4));
  EXPECT_EQ(ndl_weights_load(file.c_str(), &env[1]), NDL_ERR_FORMAT);
  EXPECT_NE(std::string(ndl_last_error()).find("truncated body"), std::string::npos) << ndl_last_error();
  expect_unchanged(1, p1, b1);

  // a missing file
  EXPECT_EQ(ndl_weights_load(path("nope").c_str(), &env[1]), NDL_ERR_IO);
  expect_unchanged(1, p1, b1);

  // a LayerNorm model's file into a BatchNorm model: running stats missing
  ndl_rng r;
  ndl_rng_seed(&r, 5);
  ndl_nn_env ln;
  ndl_nn_env_init(&ln, &r);
  ndl_module *lm = ndl_nn_mlp_resnet(&ln, 20, 16, 1, 5, NDL_NORM_LAYER, 0.1f);
  ASSERT_NE(lm, nullptr);
  ASSERT_EQ(ndl_weights_save(file.c_str(), &ln), NDL_OK);
  EXPECT_EQ(ndl_weights_load(file.c_str(), &env[1]), NDL_ERR_MISMATCH);
  EXPECT_NE(std::string(ndl_last_error()).find("running_mean is missing"), std::string::npos) << ndl_last_error();
  expect_unchanged(1, p1, b1);
  ndl_module_free(lm);
  ndl_nn_env_free(&ln);

  // "_ndl." tensors are ignored, and a good file then loads every tensor
  std::vector<ndl_st_entry> v = base;
  int64_t step = 42;
  v.push_back(entry("_ndl.step", NDL_ST_I64, {}, &step, 8));
  ASSERT_EQ(ndl_safetensors_write(file.c_str(), v.data(), (int)v.size(), nullptr, 0), NDL_OK);
  ASSERT_EQ(ndl_weights_load(file.c_str(), &env[1]), NDL_OK) << ndl_last_error();
  expect_unchanged(1, store_values(env[0].params), store_values(env[0].buffers));
  ndl_free(scratch);
}
