// test_data.cc: data/ — IDX reader (raw and gzip, every error path), MNIST dataset, transforms
// against hand-computed images and numpy draw counts, DataLoader order/shuffle/sharding/augment,
// prefetch equivalence and cursor resume; and the real Fashion-MNIST when it is installed.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "test_util.h"

namespace {

using Bytes = std::vector<unsigned char>;

void put_be32(Bytes &b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back((unsigned char)(v >> s));
}

Bytes idx_images(uint32_t n, uint32_t rows, uint32_t cols, const Bytes &px, uint32_t magic = 0x803) {
  Bytes b;
  put_be32(b, magic);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), px.begin(), px.end());
  return b;
}

Bytes idx_labels(uint32_t n, const Bytes &lab, uint32_t magic = 0x801) {
  Bytes b;
  put_be32(b, magic);
  put_be32(b, n);
  b.insert(b.end(), lab.begin(), lab.end());
  return b;
}

Bytes pixel_pattern(size_t count) {
  Bytes p(count);
  for (size_t i = 0; i < count; i++) p[i] = (unsigned char)((i * 37 + 11) % 256);
  if (count > 1) {
    p[0] = 0;
    p[1] = 255;
  }
  return p;
}

void write_raw(const std::string &path, const Bytes &b) {
  FILE *f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!b.empty()) {
    ASSERT_EQ(std::fwrite(b.data(), 1, b.size(), f), b.size());
  }
  std::fclose(f);
}

void write_gz(const std::string &path, const Bytes &b) {
  gzFile g = gzopen(path.c_str(), "wb");
  ASSERT_NE(g, nullptr) << path;
  if (!b.empty()) {
    ASSERT_EQ(gzwrite(g, b.data(), (unsigned)b.size()), (int)b.size());
  }
  ASSERT_EQ(gzclose(g), Z_OK);
}

Bytes read_all(const std::string &path) {
  Bytes b;
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) return b;
  int c;
  while ((c = std::fgetc(f)) != EOF) b.push_back((unsigned char)c);
  std::fclose(f);
  return b;
}

// Fixture: a fresh temp dir, removed at teardown; no ndl heap block may outlive a test.
class DataTest : public TempDirTest {
 protected:
  DataTest() : TempDirTest("ndl_data_") {}
  // Write a consistent split: n images rows x cols and labels i % classes.
  void write_split(const std::string &split, uint32_t n, uint32_t rows, uint32_t cols, bool gz,
                   int classes = 10) {
    Bytes lab(n);
    for (uint32_t i = 0; i < n; i++) lab[i] = (unsigned char)(i % classes);
    Bytes img = idx_images(n, rows, cols, pixel_pattern((size_t)n * rows * cols));
    std::string sfx = gz ? ".gz" : "";
    if (gz) {
      write_gz(path(split + "-images-idx3-ubyte" + sfx), img);
      write_gz(path(split + "-labels-idx1-ubyte" + sfx), idx_labels(n, lab));
    } else {
      write_raw(path(split + "-images-idx3-ubyte"), img);
      write_raw(path(split + "-labels-idx1-ubyte"), idx_labels(n, lab));
    }
  }
  // Read images from `file`; expect failure with status and message substrings.
  void expect_images_error(const std::string &file, ndl_status want, const std::vector<std::string> &subs) {
    int64_t n = -1;
    int32_t r = -1, c = -1;
    float *px = nullptr;
    ndl_status s = ndl_idx_read_images(file.c_str(), &n, &r, &c, &px);
    EXPECT_EQ(s, want) << ndl_last_error();
    EXPECT_EQ(px, nullptr);
    EXPECT_EQ(n, -1);
    std::string msg = ndl_last_error();
    for (const auto &sub : subs) EXPECT_NE(msg.find(sub), std::string::npos) << "'" << sub << "' not in: " << msg;
    ndl_free(px);
  }
};

std::vector<float> read_images_ok(const std::string &file, int64_t *n, int32_t *r, int32_t *c) {
  float *px = nullptr;
  ndl_status s = ndl_idx_read_images(file.c_str(), n, r, c, &px);
  EXPECT_EQ(s, NDL_OK) << ndl_last_error();
  std::vector<float> v;
  if (s == NDL_OK) v.assign(px, px + (*n) * (*r) * (*c));
  ndl_free(px);
  return v;
}

// ---------------------------------------------------------------- IDX reader

TEST_F(DataTest, IdxImagesRoundTripRaw) {
  Bytes px = pixel_pattern(3 * 4 * 5);
  write_raw(path("img"), idx_images(3, 4, 5, px));
  int64_t n = 0;
  int32_t r = 0, c = 0;
  std::vector<float> v = read_images_ok(path("img"), &n, &r, &c);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(r, 4);
  EXPECT_EQ(c, 5);
  ASSERT_EQ(v.size(), px.size());
  for (size_t i = 0; i < px.size(); i++) EXPECT_EQ(v[i], (float)px[i] / 255.0f) << "pixel " << i;
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_EQ(v[1], 1.0f);
}

TEST_F(DataTest, IdxLabelsRoundTrip) {
  Bytes lab = {0, 9, 3, 255, 7};
  write_gz(path("lab"), idx_labels(5, lab));
  int64_t n = 0;
  int32_t *l = nullptr;
  ASSERT_EQ(ndl_idx_read_labels(path("lab").c_str(), &n, &l), NDL_OK) << ndl_last_error();
  ASSERT_EQ(n, 5);
  for (int i = 0; i < 5; i++) EXPECT_EQ(l[i], (int32_t)lab[i]);
  ndl_free(l);
}

TEST_F(DataTest, IdxGzipAndRawAgreeWhateverTheFileName) {
  Bytes img = idx_images(7, 3, 2, pixel_pattern(7 * 3 * 2));
  write_raw(path("raw_named.gz"), img);  // raw content, gzip-looking name
  write_gz(path("gz_named_raw"), img);   // gzip content, no suffix
  write_gz(path("gz.gz"), img);
  write_raw(path("raw"), img);
  ASSERT_EQ(read_all(path("gz_named_raw"))[0], 0x1f);  // really compressed
  int64_t n0, n1, n2, n3;
  int32_t r0, r1, r2, r3, c0, c1, c2, c3;
  std::vector<float> a = read_images_ok(path("raw"), &n0, &r0, &c0);
  std::vector<float> b = read_images_ok(path("raw_named.gz"), &n1, &r1, &c1);
  std::vector<float> g = read_images_ok(path("gz_named_raw"), &n2, &r2, &c2);
  std::vector<float> h = read_images_ok(path("gz.gz"), &n3, &r3, &c3);
  ASSERT_EQ(a.size(), 42u);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, g);
  EXPECT_EQ(a, h);
  EXPECT_TRUE(n0 == 7 && n1 == 7 && n2 == 7 && n3 == 7 && r2 == 3 && c2 == 2);
}

TEST_F(DataTest, IdxMissingFileIsIoError) {
  expect_images_error(path("nope-images"), NDL_ERR_IO, {path("nope-images"), "cannot open", "No such file"});
}

TEST_F(DataTest, IdxDirectoryIsIoError) { expect_images_error(dir, NDL_ERR_IO, {dir, "a directory"}); }

// A FIFO (no writer) must fail at once, not block in open(); alarm() turns a regression into a kill.
TEST_F(DataTest, IdxFifoIsIoErrorWithoutBlocking) {
  ASSERT_EQ(mkfifo(path("fifo").c_str(), 0600), 0);
  alarm(60);
  expect_images_error(path("fifo"), NDL_ERR_IO, {path("fifo"), "a FIFO, expected a regular file"});
  int64_t n;
  int32_t *l = nullptr;
  EXPECT_EQ(ndl_idx_read_labels(path("fifo").c_str(), &n, &l), NDL_ERR_IO);
  alarm(0);
}

// A header claiming more than the file can hold fails before the output is allocated: with the
// allocator capped at 1 MiB, a 16-byte file claiming 2^31 pixels is a format error, not out of memory.
TEST_F(DataTest, IdxHeaderClaimBeyondTheFileFailsBeforeAllocating) {
  write_raw(path("img"), idx_images(32768, 256, 256, {}));
  write_gz(path("img.gz"), idx_images(32768, 256, 256, {}));
  write_raw(path("lab"), idx_labels(1000000000u, {1, 2, 3}));
  write_gz(path("lab.gz"), idx_labels(1000000000u, {1, 2, 3}));
  ndl_alloc_set_limit((size_t)1 << 20);
  expect_images_error(path("img"), NDL_ERR_FORMAT, {path("img"), "truncated payload", "2147483648 bytes", "found 0"});
  expect_images_error(path("img.gz"), NDL_ERR_FORMAT, {path("img.gz"), "truncated payload", "2147483648 bytes", "gzip file of"});
  for (const char *name : {"lab", "lab.gz"}) {
    int64_t n;
    int32_t *l = nullptr;
    EXPECT_EQ(ndl_idx_read_labels(path(name).c_str(), &n, &l), NDL_ERR_FORMAT) << ndl_last_error();
    EXPECT_NE(std::string(ndl_last_error()).find("truncated payload"), std::string::npos) << ndl_last_error();
  }
  ndl_alloc_set_limit(0);
}

TEST_F(DataTest, IdxWrongMagic) {
  write_raw(path("img"), idx_images(1, 2, 2, pixel_pattern(4), 0x00000903));
  expect_images_error(path("img"), NDL_ERR_FORMAT, {path("img"), "bad magic 0x00000903", "expected 0x00000803"});
  write_gz(path("lab"), idx_labels(1, {1}, 0x12345678));
  int64_t n;
  int32_t *l = nullptr;
  EXPECT_EQ(ndl_idx_read_labels(path("lab").c_str(), &n, &l), NDL_ERR_FORMAT);
  EXPECT_NE(std::string(ndl_last_error()).find("bad magic 0x12345678, expected 0x00000801 (labels)"),
            std::string::npos)
      << ndl_last_error();
}

TEST_F(DataTest, IdxWrongDimensionCount) {
  write_raw(path("img"), idx_images(1, 2, 2, pixel_pattern(4), 0x00000802));
  expect_images_error(path("img"), NDL_ERR_FORMAT, {path("img"), "2 dimensions, expected 3"});
  // a labels file passed as images
  write_raw(path("lab"), idx_labels(4, {1, 2, 3, 4}));
  expect_images_error(path("lab"), NDL_ERR_FORMAT, {"1 dimensions, expected 3"});
}

TEST_F(DataTest, IdxTruncatedHeader) {
  Bytes b = idx_images(1, 2, 2, {});
  b.resize(10);
  write_raw(path("img"), b);
  expect_images_error(path("img"), NDL_ERR_FORMAT, {"truncated header", "10 bytes, expected 16"});
  write_raw(path("empty"), {});
  expect_images_error(path("empty"), NDL_ERR_FORMAT, {"truncated header", "0 bytes"});
}

TEST_F(DataTest, IdxZeroImagesAndZeroSides) {
  write_raw(path("img"), idx_images(0, 28, 28, {}));
  expect_images_error(path("img"), NDL_ERR_FORMAT, {path("img"), "0 items"});
  write_raw(path("img2"), idx_images(2, 0, 28, {}));
  expect_images_error(path("img2"), NDL_ERR_FORMAT, {"dimension 1 is 0"});
  write_raw(path("img3"), idx_images(2, 28, 100000, {}));
  expect_images_error(path("img3"), NDL_ERR_FORMAT, {"dimension 2 is 100000"});
  write_raw(path("lab"), idx_labels(0, {}));
  int64_t n;
  int32_t *l = nullptr;
  EXPECT_EQ(ndl_idx_read_labels(path("lab").c_str(), &n, &l), NDL_ERR_FORMAT);
  EXPECT_NE(std::string(ndl_last_error()).find("0 items"), std::string::npos) << ndl_last_error();
}

TEST_F(DataTest, IdxTruncatedPayloadRawAndGzip) {
  Bytes img = idx_images(3, 4, 4, pixel_pattern(3 * 16 - 5));  // 5 bytes short
  write_raw(path("img"), img);
  expect_images_error(path("img"), NDL_ERR_FORMAT, {path("img"), "truncated payload", "48 bytes", "found 43"});
  write_gz(path("img.gz"), img);
  expect_images_error(path("img.gz"), NDL_ERR_FORMAT, {"truncated payload", "found 43"});
  Bytes lab = idx_labels(10, {1, 2, 3});
  write_raw(path("lab"), lab);
  int64_t n;
  int32_t *l = nullptr;
  EXPECT_EQ(ndl_idx_read_labels(path("lab").c_str(), &n, &l), NDL_ERR_FORMAT);
  EXPECT_NE(std::string(ndl_last_error()).find("10 labels"), std::string::npos) << ndl_last_error();
}

TEST_F(DataTest, IdxOversizedPayloadRawAndGzip) {
  Bytes img = idx_images(2, 3, 3, pixel_pattern(2 * 9 + 4));  // 4 trailing bytes
  write_raw(path("img"), img);
  expect_images_error(path("img"), NDL_ERR_FORMAT, {path("img"), "oversized payload", "18 bytes", "4 trailing"});
  write_gz(path("img.gz"), img);
  expect_images_error(path("img.gz"), NDL_ERR_FORMAT, {"oversized payload", "4 trailing"});
}

TEST_F(DataTest, IdxTruncatedGzipStream) {
  Bytes img = idx_images(20, 10, 10, pixel_pattern(2000));
  write_gz(path("full.gz"), img);
  Bytes gz = read_all(path("full.gz"));
  ASSERT_GT(gz.size(), 40u);
  for (size_t keep : {gz.size() / 2, gz.size() - 4}) {  // mid-stream, and inside the trailer
    write_raw(path("cut.gz"), Bytes(gz.begin(), gz.begin() + keep));
    expect_images_error(path("cut.gz"), NDL_ERR_FORMAT, {path("cut.gz"), "truncated gzip stream"});
  }
}

TEST_F(DataTest, IdxCorruptGzipStream) {
  Bytes img = idx_images(20, 10, 10, pixel_pattern(2000));
  write_gz(path("full.gz"), img);
  Bytes gz = read_all(path("full.gz"));
  gz[gz.size() - 6] ^= 0xff;  // CRC-32 of the trailer
  write_raw(path("bad.gz"), gz);
  expect_images_error(path("bad.gz"), NDL_ERR_FORMAT, {path("bad.gz"), "corrupt gzip stream"});
}

// ---------------------------------------------------------------- MNIST dataset

TEST_F(DataTest, MnistLoadsGzipAndRawSplits) {
  write_split("train", 12, 5, 4, /*gz=*/true, 3);
  write_split("t10k", 5, 5, 4, /*gz=*/false, 3);
  ndl_dataset tr, te;
  ASSERT_EQ(ndl_mnist_load(dir.c_str(), "train", 3, &tr), NDL_OK) << ndl_last_error();
  ASSERT_EQ(ndl_mnist_load(dir.c_str(), "t10k", 3, &te), NDL_OK) << ndl_last_error();
  EXPECT_EQ(tr.n, 12);
  EXPECT_EQ(te.n, 5);
  EXPECT_EQ(tr.rows, 5);
  EXPECT_EQ(tr.cols, 4);
  EXPECT_EQ(tr.channels, 1);
  EXPECT_EQ(ndl_dataset_sample_dim(&tr), 20);
  Bytes px = pixel_pattern(12 * 20);
  for (int i = 0; i < 12 * 20; i++) ASSERT_EQ(tr.images[i], (float)px[i] / 255.0f);
  for (int i = 0; i < 12; i++) EXPECT_EQ(tr.labels[i], i % 3);
  ndl_dataset_free(&tr);
  ndl_dataset_free(&te);
  EXPECT_EQ(tr.images, nullptr);
  ndl_dataset_free(nullptr);
}

TEST_F(DataTest, MnistPrefersRawWhenBothExist) {
  write_split("train", 4, 2, 2, /*gz=*/true);
  write_split("train", 6, 2, 2, /*gz=*/false);
  ndl_dataset d;
  ASSERT_EQ(ndl_mnist_load(dir.c_str(), "train", 10, &d), NDL_OK) << ndl_last_error();
  EXPECT_EQ(d.n, 6);
  ndl_dataset_free(&d);
}

void expect_load_error(const std::string &dir, const char *split, int classes, ndl_status want,
                       const std::vector<std::string> &subs) {
  ndl_dataset d;
  std::memset(&d, 0x5a, sizeof d);
  EXPECT_EQ(ndl_mnist_load(dir.c_str(), split, classes, &d), want) << ndl_last_error();
  EXPECT_EQ(d.images, nullptr);
  EXPECT_EQ(d.labels, nullptr);
  std::string msg = ndl_last_error();
  for (const auto &sub : subs) EXPECT_NE(msg.find(sub), std::string::npos) << "'" << sub << "' not in: " << msg;
}

TEST_F(DataTest, MnistMissingDirectory) {
  expect_load_error(dir + "/absent", "train", 10, NDL_ERR_IO, {dir + "/absent", "data directory"});
  write_raw(path("file"), {1});
  expect_load_error(path("file"), "train", 10, NDL_ERR_IO, {"not a directory"});
}

TEST_F(DataTest, MnistMissingFile) {
  expect_load_error(dir, "train", 10, NDL_ERR_IO, {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"});
  write_split("train", 3, 2, 2, false);
  std::remove(path("train-labels-idx1-ubyte").c_str());
  expect_load_error(dir, "train", 10, NDL_ERR_IO, {"neither train-labels-idx1-ubyte nor"});
}

// A data directory whose file paths exceed PATH_MAX is a data error (I/O), naming the cause.
TEST_F(DataTest, MnistDirectoryPathTooLong) {
  std::string d = dir;
  while (d.size() < 4080) d += "/.";
  expect_load_error(d, "train", 10, NDL_ERR_IO, {"data directory path too long", "train-images-idx3-ubyte"});
}

TEST_F(DataTest, MnistFifoDataFileIsIoError) {
  write_split("train", 3, 2, 2, false);
  std::remove(path("train-labels-idx1-ubyte").c_str());
  ASSERT_EQ(mkfifo(path("train-labels-idx1-ubyte").c_str(), 0600), 0);
  alarm(60);
  expect_load_error(dir, "train", 10, NDL_ERR_IO, {"train-labels-idx1-ubyte", "a FIFO"});
  alarm(0);
}

TEST_F(DataTest, MnistBadSplitOrClasses) {
  expect_load_error(dir, "test", 10, NDL_ERR_ARG, {"'test'", "'train' or 't10k'"});
  expect_load_error(dir, "train", 0, NDL_ERR_ARG, {"num_classes 0"});
}

TEST_F(DataTest, MnistCountMismatch) {
  write_split("train", 5, 3, 3, true);
  write_gz(path("train-labels-idx1-ubyte.gz"), idx_labels(4, {0, 1, 2, 3}));
  expect_load_error(dir, "train", 10, NDL_ERR_FORMAT,
                    {"train-images-idx3-ubyte.gz has 5 images", "train-labels-idx1-ubyte.gz has 4 labels"});
}

TEST_F(DataTest, MnistLabelOutOfRange) {
  write_split("t10k", 4, 3, 3, false);
  write_raw(path("t10k-labels-idx1-ubyte"), idx_labels(4, {0, 1, 10, 2}));
  expect_load_error(dir, "t10k", 10, NDL_ERR_FORMAT, {"t10k-labels-idx1-ubyte", "label 2 is 10", "< 10"});
}

TEST_F(DataTest, MnistMalformedFilePropagates) {
  write_split("train", 4, 3, 3, false);
  write_raw(path("train-images-idx3-ubyte"), idx_images(4, 3, 3, pixel_pattern(20)));
  expect_load_error(dir, "train", 10, NDL_ERR_FORMAT, {"train-images-idx3-ubyte", "truncated payload"});
}

// ---------------------------------------------------------------- transforms

std::vector<float> iota_image(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; i++) v[i] = (float)(i + 1);
  return v;
}

TEST(Transforms, ImageShiftHandComputed) {
  std::vector<float> img = iota_image(9);  // 1..9 as 3x3
  ndl_image_shift(img.data(), 3, 3, 1, 1, -1);
  EXPECT_EQ(img, (std::vector<float>{0, 4, 5, 0, 7, 8, 0, 0, 0}));
  img = iota_image(9);
  ndl_image_shift(img.data(), 3, 3, 1, -1, 1);
  EXPECT_EQ(img, (std::vector<float>{0, 0, 0, 2, 3, 0, 5, 6, 0}));
  img = iota_image(9);
  ndl_image_shift(img.data(), 3, 3, 1, 0, 0);
  EXPECT_EQ(img, iota_image(9));
  img = iota_image(12);  // 2x3x2
  ndl_image_shift(img.data(), 2, 3, 2, 0, 1);
  EXPECT_EQ(img, (std::vector<float>{3, 4, 5, 6, 0, 0, 9, 10, 11, 12, 0, 0}));
}

TEST(Transforms, FlipHorizontalHandComputed) {
  std::vector<float> img = iota_image(12);  // 2x3x2: channels stay together
  ndl_image_flip_horizontal(img.data(), 2, 3, 2);
  EXPECT_EQ(img, (std::vector<float>{5, 6, 3, 4, 1, 2, 11, 12, 9, 10, 7, 8}));
}

TEST(Transforms, RandomFlipDrawsOneRandAndComparesWithP) {
  // seed 0: first rand = 0.5488135039273248
  ndl_rng r, ref;
  ndl_rng_seed(&r, 0);
  std::vector<float> img = iota_image(6);  // 2x3x1
  EXPECT_EQ(ndl_transform_flip_horizontal(&r, 0.5, img.data(), 2, 3, 1), 0);
  EXPECT_EQ(img, iota_image(6));
  ndl_rng_seed(&ref, 0);
  ndl_rng_rand(&ref);
  EXPECT_EQ(ndl_rng_u32(&r), ndl_rng_u32(&ref));  // consumed exactly one rand

  ndl_rng_seed(&r, 0);
  EXPECT_EQ(ndl_transform_flip_horizontal(&r, 0.55, img.data(), 2, 3, 1), 1);
  EXPECT_EQ(img, (std::vector<float>{3, 2, 1, 6, 5, 4}));
}

TEST(Transforms, RandomCropSeededHandComputed) {
  // seed 3, pad 1: randint(-1,2) draws shift_h = 1, shift_w = -1 (rng.randint matches numpy, test_rng)
  ndl_rng r, ref;
  ndl_rng_seed(&r, 3);
  std::vector<float> img = iota_image(9);
  ndl_transform_random_crop(&r, 1, img.data(), 3, 3, 1);
  // padded 5x5, window rows 2..4, cols 0..2
  EXPECT_EQ(img, (std::vector<float>{0, 4, 5, 0, 7, 8, 0, 0, 0}));
  ndl_rng_seed(&ref, 3);
  EXPECT_EQ(ndl_rng_randint(&ref, -1, 2), 1);
  EXPECT_EQ(ndl_rng_randint(&ref, -1, 2), -1);
  EXPECT_EQ(ndl_rng_u32(&r), ndl_rng_u32(&ref));  // consumed exactly two randint

  // seed 0, pad 2: shifts (2, -2): only img[2][0] = 7 lands at [0][2]
  ndl_rng_seed(&r, 0);
  img = iota_image(9);
  ndl_transform_random_crop(&r, 2, img.data(), 3, 3, 1);
  EXPECT_EQ(img, (std::vector<float>{0, 0, 7, 0, 0, 0, 0, 0, 0}));
}

// Reference: pad with zeros then crop, exactly as needle writes it.
std::vector<float> pad_crop(const std::vector<float> &img, int h, int w, int c, int pad, int sx, int sy) {
  int ph = h + 2 * pad, pw = w + 2 * pad;
  std::vector<float> padded((size_t)ph * pw * c, 0.0f), out((size_t)h * w * c);
  for (int i = 0; i < h; i++)
    for (int j = 0; j < w; j++)
      for (int k = 0; k < c; k++) padded[((size_t)(i + pad) * pw + j + pad) * c + k] = img[((size_t)i * w + j) * c + k];
  for (int i = 0; i < h; i++)
    for (int j = 0; j < w; j++)
      for (int k = 0; k < c; k++)
        out[((size_t)i * w + j) * c + k] = padded[((size_t)(pad + sx + i) * pw + pad + sy + j) * c + k];
  return out;
}

TEST(Transforms, RandomCropMatchesPadThenCropOverManyDraws) {
  ndl_rng r, ref;
  ndl_rng_seed(&r, 11);
  ndl_rng_seed(&ref, 11);
  for (int t = 0; t < 200; t++) {
    int h = 5 + t % 3, w = 4 + t % 4, c = 1 + t % 2, pad = t % 5;
    std::vector<float> img = iota_image(h * w * c);
    int sx = (int)ndl_rng_randint(&ref, -pad, pad + 1), sy = (int)ndl_rng_randint(&ref, -pad, pad + 1);
    std::vector<float> want = pad_crop(img, h, w, c, pad, sx, sy);
    ndl_transform_random_crop(&r, pad, img.data(), h, w, c);
    ASSERT_EQ(img, want) << "trial " << t << " shift " << sx << "," << sy;
  }
  EXPECT_EQ(ndl_rng_u32(&r), ndl_rng_u32(&ref));
}

// ---------------------------------------------------------------- loader

// A synthetic dataset: sample i has pixels i*100 + p and label i % 10.
struct SynthData {
  std::vector<float> images;
  std::vector<int32_t> labels;
  ndl_dataset ds;
  SynthData(int64_t n, int rows, int cols) : images((size_t)n * rows * cols), labels((size_t)n) {
    for (int64_t i = 0; i < n; i++) {
      for (int p = 0; p < rows * cols; p++) images[(size_t)(i * rows * cols + p)] = (float)(i * 100 + p);
      labels[(size_t)i] = (int32_t)(i % 10);
    }
    ds = ndl_dataset{n, rows, cols, 1, 10, images.data(), labels.data()};
  }
};

struct Loader {
  ndl_loader *l = nullptr;
  Loader(const ndl_dataset *ds, int64_t b, int shuffle, int augment, int prefetch, ndl_rng *rng) {
    ndl_loader_config cfg = {b, shuffle, augment, prefetch};
    EXPECT_EQ(ndl_loader_new(ds, &cfg, rng, &l), NDL_OK) << ndl_last_error();
  }
  ~Loader() { ndl_loader_free(l); }
};

// One epoch seen by `rank` of `world`: the dataset indices and the images in batch order.
struct Seen {
  std::vector<int64_t> idx, global_counts, local_counts;
  std::vector<float> images;
  std::vector<int32_t> labels;
};

Seen run_epoch(ndl_loader *l, int rank, int world, int64_t max_batches = -1) {
  Seen s;
  ndl_batch b;
  int rc;
  int64_t k = 0, first = -1;
  while ((max_batches < 0 || k < max_batches) && (rc = ndl_loader_next(l, rank, world, &b)) == 1) {
    if (first < 0) first = b.index;
    EXPECT_EQ(b.index, first + k) << "batches come in order";
    for (int64_t i = 0; i < b.local_count; i++) s.idx.push_back(b.indices[i]);
    s.images.insert(s.images.end(), b.images, b.images + b.local_count * b.rows * b.cols * b.channels);
    s.labels.insert(s.labels.end(), b.labels, b.labels + b.local_count);
    s.global_counts.push_back(b.global_count);
    s.local_counts.push_back(b.local_count);
    k++;
  }
  return s;
}

TEST_F(DataTest, LoaderNoShuffleConsecutiveBatchesLastShort) {
  SynthData d(23, 2, 3);
  Loader L(&d.ds, 5, 0, 0, 0, nullptr);
  ASSERT_NE(L.l, nullptr);
  EXPECT_EQ(ndl_loader_num_batches(L.l), 5);
  ndl_loader_epoch_begin(L.l);
  ndl_batch b;
  for (int k = 0; k < 5; k++) {
    ASSERT_EQ(ndl_loader_next(L.l, 0, 1, &b), 1);
    EXPECT_EQ(b.epoch, 0);
    EXPECT_EQ(b.global_offset, 5 * k);
    EXPECT_EQ(b.global_count, k < 4 ? 5 : 3);
    EXPECT_EQ(b.local_offset, 0);
    EXPECT_EQ(b.local_count, b.global_count);
    for (int64_t i = 0; i < b.local_count; i++) {
      int64_t want = 5 * k + i;
      EXPECT_EQ(b.indices[i], want);
      EXPECT_EQ(b.labels[i], want % 10);
      for (int p = 0; p < 6; p++) EXPECT_EQ(b.images[i * 6 + p], (float)(want * 100 + p));
    }
  }
  EXPECT_EQ(ndl_loader_next(L.l, 0, 1, &b), 0);
  EXPECT_EQ(ndl_loader_next(L.l, 0, 1, &b), 0);
  ndl_loader_epoch_begin(L.l);
  ASSERT_EQ(ndl_loader_next(L.l, 0, 1, &b), 1);
  EXPECT_EQ(b.epoch, 1);
  EXPECT_EQ(b.indices[0], 0);
}

TEST_F(DataTest, LoaderShuffleEachEpochIsNumpyPermutation) {
  SynthData d(37, 2, 2);
  ndl_rng rng, ref;
  ndl_rng_seed(&rng, 4);
  ndl_rng_seed(&ref, 4);
  Loader L(&d.ds, 8, 1, 0, 0, &rng);
  std::vector<int64_t> perm(37), prev;
  for (int e = 0; e < 3; e++) {
    ndl_loader_epoch_begin(L.l);
    ndl_rng_permutation(&ref, 37, perm.data());
    Seen s = run_epoch(L.l, 0, 1);
    EXPECT_EQ(s.idx, perm) << "epoch " << e;
    for (size_t i = 0; i < s.idx.size(); i++) ASSERT_EQ(s.labels[i], s.idx[i] % 10);
    EXPECT_NE(s.idx, prev);
    prev = s.idx;
  }
  EXPECT_EQ(ndl_rng_u32(&rng), ndl_rng_u32(&ref));  // the loader drew nothing else
}

TEST_F(DataTest, LoaderShardsConcatenateToGlobalBatch) {
  SynthData d(29, 3, 2);
  for (int world = 1; world <= 4; world++) {
    for (int64_t B : {7, 6, 3, 1}) {
      ndl_rng g_rng;
      ndl_rng_seed(&g_rng, 9);
      Loader G(&d.ds, B, 1, 1, 0, &g_rng);
      ndl_loader_epoch_begin(G.l);
      Seen global = run_epoch(G.l, 0, 1);
      std::vector<Seen> ranks;
      for (int r = 0; r < world; r++) {
        ndl_rng rng;
        ndl_rng_seed(&rng, 9);  // every rank: same seed, same stream
        Loader L(&d.ds, B, 1, 1, r % 2, &rng);
        ndl_loader_epoch_begin(L.l);
        ranks.push_back(run_epoch(L.l, r, world));
        EXPECT_EQ(ndl_rng_u32(&rng), ndl_rng_u32(&g_rng)) << "rank " << r << " RNG stream diverged";
        ndl_rng_seed(&g_rng, 9);  // re-derive the reference stream position
        { Loader G2(&d.ds, B, 1, 1, 0, &g_rng); ndl_loader_epoch_begin(G2.l); run_epoch(G2.l, 0, 1); }
      }
      // batch by batch: rank slices in rank order == global batch
      std::vector<size_t> pos(world, 0);
      std::vector<size_t> ipos(world, 0);
      std::vector<int64_t> cat_idx;
      std::vector<float> cat_img;
      int64_t dim = 6;
      for (size_t k = 0; k < global.global_counts.size(); k++) {
        int64_t lo = 0;
        for (int r = 0; r < world; r++) {
          int64_t cnt = ranks[r].local_counts[k];
          EXPECT_EQ(ranks[r].global_counts[k], global.global_counts[k]);
          int64_t base = global.global_counts[k] / world;
          EXPECT_TRUE(cnt == base || cnt == base + 1);
          EXPECT_EQ(cnt, base + (r < global.global_counts[k] % world ? 1 : 0)) << "first B%N ranks get one more";
          for (int64_t i = 0; i < cnt; i++) cat_idx.push_back(ranks[r].idx[pos[r] + i]);
          cat_img.insert(cat_img.end(), ranks[r].images.begin() + (ipos[r]),
                         ranks[r].images.begin() + ipos[r] + cnt * dim);
          pos[r] += cnt;
          ipos[r] += cnt * dim;
          lo += cnt;
        }
        EXPECT_EQ(lo, global.global_counts[k]);
      }
      EXPECT_EQ(cat_idx, global.idx) << "world " << world << " B " << B;
      EXPECT_EQ(cat_img, global.images) << "world " << world << " B " << B;
      std::vector<int64_t> sorted = cat_idx;
      std::sort(sorted.begin(), sorted.end());
      for (int64_t i = 0; i < 29; i++) ASSERT_EQ(sorted[(size_t)i], i) << "each sample exactly once";
    }
  }
}

TEST(LoaderSlice, SizesDifferByAtMostOne) {
  int64_t off, cnt;
  ndl_loader_slice(10, 0, 4, &off, &cnt);
  EXPECT_EQ(off, 0);
  EXPECT_EQ(cnt, 3);
  ndl_loader_slice(10, 1, 4, &off, &cnt);
  EXPECT_EQ(off, 3);
  EXPECT_EQ(cnt, 3);
  ndl_loader_slice(10, 2, 4, &off, &cnt);
  EXPECT_EQ(off, 6);
  EXPECT_EQ(cnt, 2);
  ndl_loader_slice(10, 3, 4, &off, &cnt);
  EXPECT_EQ(off, 8);
  EXPECT_EQ(cnt, 2);
  ndl_loader_slice(1, 3, 4, &off, &cnt);
  EXPECT_EQ(cnt, 0);
}

TEST_F(DataTest, LoaderAugmentEqualsTransformsInSampleOrder) {
  SynthData d(11, 5, 4);
  ndl_rng rng, ref;
  ndl_rng_seed(&rng, 21);
  ndl_rng_seed(&ref, 21);
  Loader L(&d.ds, 4, 1, 1, 0, &rng);
  ndl_loader_epoch_begin(L.l);
  Seen s = run_epoch(L.l, 0, 1);
  std::vector<int64_t> perm(11);
  ndl_rng_permutation(&ref, 11, perm.data());
  ASSERT_EQ(s.idx, perm);
  int flips = 0;
  for (size_t i = 0; i < perm.size(); i++) {
    std::vector<float> img(d.images.begin() + perm[i] * 20, d.images.begin() + (perm[i] + 1) * 20);
    ndl_transform_random_crop(&ref, 4, img.data(), 5, 4, 1);
    flips += ndl_transform_flip_horizontal(&ref, 0.5, img.data(), 5, 4, 1);
    ASSERT_EQ(std::vector<float>(s.images.begin() + i * 20, s.images.begin() + (i + 1) * 20), img) << "sample " << i;
  }
  EXPECT_GT(flips, 0);
  EXPECT_EQ(ndl_rng_u32(&rng), ndl_rng_u32(&ref));
}

TEST_F(DataTest, LoaderPrefetchOnOffIdentical) {
  SynthData d(53, 4, 4);
  for (int world : {1, 3}) {
    std::vector<Seen> res[2];
    uint32_t after[2];
    for (int pf = 0; pf < 2; pf++) {
      ndl_rng rng;
      ndl_rng_seed(&rng, 5);
      Loader L(&d.ds, 10, 1, 1, pf, &rng);
      for (int e = 0; e < 3; e++) {
        ndl_loader_epoch_begin(L.l);
        res[pf].push_back(run_epoch(L.l, world - 1, world));
        ndl_rng_randn(&rng);  // the trainer draws too (dropout) between epochs
      }
      after[pf] = ndl_rng_u32(&rng);
    }
    for (int e = 0; e < 3; e++) {
      EXPECT_EQ(res[0][e].idx, res[1][e].idx);
      EXPECT_EQ(res[0][e].images, res[1][e].images);
      EXPECT_EQ(res[0][e].labels, res[1][e].labels);
      EXPECT_FALSE(res[0][e].idx.empty());
    }
    EXPECT_EQ(after[0], after[1]);
  }
}

TEST_F(DataTest, LoaderPrefetchInterleavedWithCallerDraws) {
  // The caller draws from the shared stream between batches (dropout); prefetch must not reorder draws.
  SynthData d(40, 3, 3);
  std::vector<float> out[2];
  for (int pf = 0; pf < 2; pf++) {
    ndl_rng rng;
    ndl_rng_seed(&rng, 8);
    Loader L(&d.ds, 6, 1, 1, pf, &rng);
    ndl_loader_epoch_begin(L.l);
    ndl_batch b;
    while (ndl_loader_next(L.l, 0, 1, &b) == 1) {
      out[pf].insert(out[pf].end(), b.images, b.images + b.local_count * 9);
      out[pf].push_back((float)ndl_rng_rand(&rng));
    }
  }
  EXPECT_EQ(out[0], out[1]);
}

TEST_F(DataTest, LoaderCursorResumesIdenticalSequence) {
  SynthData d(31, 3, 3);
  for (int pf = 0; pf < 2; pf++) {
    // Reference: 3 epochs straight through.
    ndl_rng rng;
    ndl_rng_seed(&rng, 13);
    Seen full[3];
    {
      Loader L(&d.ds, 4, 1, 1, pf, &rng);
      for (auto &s : full) {
        ndl_loader_epoch_begin(L.l);
        s = run_epoch(L.l, 0, 2);
      }
    }
    // Run 1 epoch + 3 batches, save cursor and RNG, destroy; resume in a new loader.
    ndl_rng_seed(&rng, 13);
    ndl_loader_cursor cur;
    ndl_rng saved_rng;
    Seen head;
    {
      Loader L(&d.ds, 4, 1, 1, pf, &rng);
      ndl_loader_epoch_begin(L.l);
      run_epoch(L.l, 0, 2);
      ndl_loader_epoch_begin(L.l);
      head = run_epoch(L.l, 0, 2, 3);
      ndl_loader_cursor_get(L.l, &cur);
      saved_rng = rng;
    }
    EXPECT_EQ(cur.epochs_begun, 2);
    EXPECT_EQ(cur.next_batch, 3);
    ndl_rng rng2;
    ndl_rng_seed(&rng2, 999);  // a different state, overwritten by the checkpoint
    Loader R(&d.ds, 4, 1, 1, 1 - pf, &rng2);
    rng2 = saved_rng;
    ASSERT_EQ(ndl_loader_cursor_set(R.l, &cur), NDL_OK) << ndl_last_error();
    Seen tail = run_epoch(R.l, 0, 2);
    head.idx.insert(head.idx.end(), tail.idx.begin(), tail.idx.end());
    head.images.insert(head.images.end(), tail.images.begin(), tail.images.end());
    EXPECT_EQ(head.idx, full[1].idx);
    EXPECT_EQ(head.images, full[1].images);
    ndl_loader_epoch_begin(R.l);
    Seen third = run_epoch(R.l, 0, 2);
    EXPECT_EQ(third.idx, full[2].idx);
    EXPECT_EQ(third.images, full[2].images);
  }
}

TEST_F(DataTest, LoaderCursorMismatchAndBadArgs) {
  SynthData d(10, 2, 2);
  ndl_rng rng;
  ndl_rng_seed(&rng, 1);
  Loader A(&d.ds, 4, 1, 0, 0, &rng), B(&d.ds, 5, 1, 0, 0, &rng);
  ndl_loader_cursor c;
  ndl_loader_cursor_get(A.l, &c);
  EXPECT_EQ(ndl_loader_cursor_set(B.l, &c), NDL_ERR_MISMATCH);
  EXPECT_NE(std::string(ndl_last_error()).find("batch size 4"), std::string::npos) << ndl_last_error();
  ndl_loader_epoch_begin(A.l);
  ndl_batch b;
  EXPECT_EQ(ndl_loader_next(A.l, 2, 2, &b), NDL_ERR_ARG);
  EXPECT_EQ(ndl_loader_next(A.l, 0, 0, &b), NDL_ERR_ARG);
  ndl_loader *l = nullptr;
  ndl_loader_config cfg = {0, 0, 0, 0};
  EXPECT_EQ(ndl_loader_new(&d.ds, &cfg, &rng, &l), NDL_ERR_ARG);
  EXPECT_EQ(l, nullptr);
  cfg.batch_size = 2;
  cfg.shuffle = 1;
  EXPECT_EQ(ndl_loader_new(&d.ds, &cfg, nullptr, &l), NDL_ERR_ARG);
  ndl_loader_free(nullptr);
}

TEST_F(DataTest, LoaderOutOfMemoryIsReported) {
  SynthData d(1000, 28, 28);
  ndl_alloc_set_limit(1024);
  ndl_loader *l = nullptr;
  ndl_loader_config cfg = {500, 0, 0, 1};
  EXPECT_EQ(ndl_loader_new(&d.ds, &cfg, nullptr, &l), NDL_ERR_NOMEM);
  ndl_alloc_set_limit(0);
  EXPECT_EQ(l, nullptr);
}

// ---------------------------------------------------------------- real data

TEST(FashionMnist, LoadsRealFiles) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  struct stat st;
  if (stat(dir, &st) != 0) GTEST_SKIP() << dir << " not installed";
  int64_t live = ndl_alloc_live_count();
  ndl_dataset tr, te;
  ASSERT_EQ(ndl_mnist_load(dir, "train", 10, &tr), NDL_OK) << ndl_last_error();
  ASSERT_EQ(ndl_mnist_load(dir, "t10k", 10, &te), NDL_OK) << ndl_last_error();
  EXPECT_EQ(tr.n, 60000);
  EXPECT_EQ(te.n, 10000);
  for (const ndl_dataset *d : {&tr, &te}) {
    EXPECT_EQ(d->rows, 28);
    EXPECT_EQ(d->cols, 28);
    float lo = 1e9f, hi = -1e9f;
    for (int64_t i = 0; i < d->n * 784; i++) {
      lo = std::min(lo, d->images[i]);
      hi = std::max(hi, d->images[i]);
    }
    EXPECT_EQ(lo, 0.0f);
    EXPECT_EQ(hi, 1.0f);
    int counts[10] = {0};
    for (int64_t i = 0; i < d->n; i++) {
      ASSERT_TRUE(d->labels[i] >= 0 && d->labels[i] < 10);
      counts[d->labels[i]]++;
    }
    for (int c = 0; c < 10; c++) EXPECT_EQ(counts[c], d->n / 10);  // Fashion-MNIST is balanced
  }
  ndl_dataset_free(&tr);
  ndl_dataset_free(&te);
  EXPECT_EQ(ndl_alloc_live_count(), live);
}

}  // namespace
