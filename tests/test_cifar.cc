// test_cifar.cc: the CIFAR-10 binary reader (data/cifar.c) on generated batch files: CHW bytes become
// HWC floats /255, the split's batches are concatenated in order, and every malformation (truncated
// record, label >= 10 or >= classes, missing batch, empty file, FIFO, directory) is a status with a
// message naming the file; format detection by files; the 3-channel crop/flip; and ndl-train
// --data DIR --model mlp end to end (training, --augment, each error path's exit code and message).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "cli_util.h"
#include "test_util.h"
#include "core/alloc.h"
#include "core/status.h"
#include "data/cifar.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transforms.h"

#ifndef NDL_TRAIN_BIN
#error "NDL_TRAIN_BIN must name the ndl-train binary"
#endif

namespace {

using Bytes = std::string;

// n records; label of record i is labels(i); pixel (c, h, w) byte = (7*i + 31*c + 5*h + 3*w) % 256.
Bytes records(int n, int first_label = 0) {
  Bytes b;
  for (int i = 0; i < n; i++) {
    b.push_back((char)((first_label + i) % 10));
    for (int c = 0; c < 3; c++)
      for (int h = 0; h < 32; h++)
        for (int w = 0; w < 32; w++) b.push_back((char)((7 * i + 31 * c + 5 * h + 3 * w) % 256));
  }
  return b;
}

float expected_pixel(int i, int c, int h, int w) { return (float)((7 * i + 31 * c + 5 * h + 3 * w) % 256) / 255.0f; }

// A learnable set: class k lights a 6x6 patch of channel k % 3 at a class-specific place; noise 0..69.
Bytes learnable(int n, unsigned seed) {
  std::mt19937 gen(seed);
  Bytes b;
  for (int i = 0; i < n; i++) {
    int k = (int)(gen() % 10);
    unsigned char px[3072];
    for (auto &p : px) p = (unsigned char)(gen() % 70);
    int r0 = (k / 5) * 14 + 4 + (int)(gen() % 3), c0 = (k % 5) * 6 + 1;
    for (int r = r0; r < r0 + 6; r++)
      for (int w = c0; w < c0 + 6; w++) px[(k % 3) * 1024 + r * 32 + w] = (unsigned char)(200 + gen() % 55);
    b.push_back((char)k);
    b.append((const char *)px, sizeof px);
  }
  return b;
}

class Cifar : public TempDirTest {
 protected:
  Cifar() : TempDirTest("ndl_cifar_") {}
  void put(const std::string &name, const Bytes &b) { ndl_cli::write_file(path(name), b, false); }
  // The six files, batch k (1..5) holding `per` records starting at label k, the test batch `test`.
  void write_set(int per, int test) {
    for (int k = 1; k <= 5; k++) put("data_batch_" + std::to_string(k) + ".bin", records(per, k));
    put("test_batch.bin", records(test));
  }
  void expect_batch_error(const std::string &file, ndl_status want, const std::vector<std::string> &subs) {
    int64_t n = -1;
    float *px = nullptr;
    int32_t *lab = nullptr;
    EXPECT_EQ(ndl_cifar_read_batch(file.c_str(), &n, &px, &lab), want) << ndl_last_error();
    EXPECT_EQ(px, nullptr);
    EXPECT_EQ(lab, nullptr);
    EXPECT_EQ(n, -1);
    expect_message(subs);
  }
  void expect_load_error(const std::string &d, const char *split, int classes, ndl_status want,
                         const std::vector<std::string> &subs) {
    ndl_dataset ds;
    EXPECT_EQ(ndl_dataset_load(d.c_str(), split, classes, &ds), want) << ndl_last_error();
    EXPECT_EQ(ds.images, nullptr);
    EXPECT_EQ(ds.n, 0);
    expect_message(subs);
  }
  static void expect_message(const std::vector<std::string> &subs) {
    std::string msg = ndl_last_error();
    for (const auto &sub : subs) EXPECT_NE(msg.find(sub), std::string::npos) << "'" << sub << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
};

TEST_F(Cifar, BatchBecomesHwcFloatsAndLabels) {
  put("b.bin", records(3, 4));
  int64_t n = 0;
  float *px = nullptr;
  int32_t *lab = nullptr;
  ASSERT_EQ(ndl_cifar_read_batch(path("b.bin").c_str(), &n, &px, &lab), NDL_OK) << ndl_last_error();
  ASSERT_EQ(n, 3);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(lab[i], (4 + i) % 10);
    for (int h = 0; h < 32; h++)
      for (int w = 0; w < 32; w++)
        for (int c = 0; c < 3; c++)
          ASSERT_EQ(px[(int64_t)i * 3072 + (h * 32 + w) * 3 + c], expected_pixel(i, c, h, w))
              << "record " << i << " h " << h << " w " << w << " c " << c;
  }
  ndl_free(px);
  ndl_free(lab);
}

TEST_F(Cifar, TruncatedRecordEmptyFileAndOversizedAreFormatErrors) {
  Bytes b = records(2);
  put("short.bin", b.substr(0, b.size() - 1));
  expect_batch_error(path("short.bin"), NDL_ERR_FORMAT,
                     {path("short.bin"), "truncated record", "6145 bytes = 1 records of 3073 bytes + 3072"});
  put("long.bin", b + "x");
  expect_batch_error(path("long.bin"), NDL_ERR_FORMAT, {path("long.bin"), "truncated record", "+ 1,"});
  put("empty.bin", "");
  expect_batch_error(path("empty.bin"), NDL_ERR_FORMAT, {path("empty.bin"), "empty file"});
}

TEST_F(Cifar, LabelOfTenOrMoreIsAFormatError) {
  Bytes b = records(3);
  b[2 * 3073] = 10;
  put("b.bin", b);
  expect_batch_error(path("b.bin"), NDL_ERR_FORMAT, {path("b.bin"), "record 2 has label 10, expected 0..9"});
  b[2 * 3073] = (char)255;
  put("b.bin", b);
  expect_batch_error(path("b.bin"), NDL_ERR_FORMAT, {"record 2 has label 255"});
}

TEST_F(Cifar, MissingDirectoryAndFifoAreIoErrorsWithoutBlocking) {
  expect_batch_error(path("nope.bin"), NDL_ERR_IO, {path("nope.bin"), "missing CIFAR-10 batch file"});
  expect_batch_error(dir, NDL_ERR_IO, {dir, "a directory, expected a regular file"});
  ASSERT_EQ(mkfifo(path("fifo").c_str(), 0600), 0);
  alarm(60);  // a regression (blocking open) becomes a kill
  expect_batch_error(path("fifo"), NDL_ERR_IO, {path("fifo"), "a FIFO, expected a regular file"});
  alarm(0);
}

TEST_F(Cifar, TrainSplitConcatenatesTheFiveBatchesInOrder) {
  write_set(2, 3);
  ndl_dataset tr, te;
  ASSERT_EQ(ndl_dataset_load(dir.c_str(), "train", 10, &tr), NDL_OK) << ndl_last_error();
  ASSERT_EQ(ndl_dataset_load(dir.c_str(), "t10k", 10, &te), NDL_OK) << ndl_last_error();
  EXPECT_EQ(tr.n, 10);
  EXPECT_EQ(te.n, 3);
  EXPECT_EQ(tr.rows, 32);
  EXPECT_EQ(tr.cols, 32);
  EXPECT_EQ(tr.channels, 3);
  EXPECT_EQ(ndl_dataset_sample_dim(&tr), 3072);
  for (int k = 0; k < 5; k++)
    for (int i = 0; i < 2; i++) {
      EXPECT_EQ(tr.labels[k * 2 + i], (k + 1 + i) % 10);
      EXPECT_EQ(tr.images[(int64_t)(k * 2 + i) * 3072 + 3 * 33 + 2], expected_pixel(i, 2, 1, 1));
    }
  EXPECT_EQ(te.labels[2], 2);
  ndl_dataset_free(&tr);
  ndl_dataset_free(&te);
}

TEST_F(Cifar, MissingBatchNamesIt) {
  write_set(1, 1);
  std::filesystem::remove(path("data_batch_3.bin"));
  expect_load_error(dir, "train", 10, NDL_ERR_IO, {path("data_batch_3.bin"), "missing CIFAR-10 batch file"});
  ndl_dataset te;  // the test split alone (--eval-only) does not need it
  ASSERT_EQ(ndl_dataset_load(dir.c_str(), "t10k", 10, &te), NDL_OK) << ndl_last_error();
  ndl_dataset_free(&te);
  std::filesystem::remove(path("test_batch.bin"));
  expect_load_error(dir, "t10k", 10, NDL_ERR_IO, {path("test_batch.bin"), "missing"});
}

TEST_F(Cifar, LabelAtOrAboveClassesNamesFileAndRecord) {
  write_set(3, 1);  // data_batch_2.bin holds labels 2, 3, 4
  expect_load_error(dir, "train", 4, NDL_ERR_FORMAT, {path("data_batch_2.bin"), "record 2 has label 4, expected < 4 classes"});
}

TEST_F(Cifar, MalformedBatchFailsTheSplitWithoutLeaks) {
  write_set(2, 1);
  Bytes b = records(2);
  put("data_batch_4.bin", b.substr(0, 100));
  expect_load_error(dir, "train", 10, NDL_ERR_FORMAT, {path("data_batch_4.bin"), "truncated record"});
  b[3073] = 11;
  put("data_batch_4.bin", b);
  expect_load_error(dir, "train", 10, NDL_ERR_FORMAT, {path("data_batch_4.bin"), "record 1 has label 11"});
}

TEST_F(Cifar, DetectedByItsFilesInTheDirectoryOrTheTarballsSubdirectory) {
  ndl_cli::make_split(dir, "t10k", 5, 1, false);  // IDX wins when the split's images file is there
  write_set(1, 2);
  ndl_dataset d;
  ASSERT_EQ(ndl_dataset_load(dir.c_str(), "t10k", 10, &d), NDL_OK) << ndl_last_error();
  EXPECT_EQ(d.n, 5);
  EXPECT_EQ(d.channels, 1);
  ndl_dataset_free(&d);
  ASSERT_EQ(ndl_dataset_load(dir.c_str(), "train", 10, &d), NDL_OK) << ndl_last_error();  // no IDX train
  EXPECT_EQ(d.channels, 3);
  ndl_dataset_free(&d);

  std::string top = dir + "/top", sub = top + "/cifar-10-batches-bin";
  std::filesystem::create_directories(sub);
  for (const char *f : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                        "data_batch_5.bin", "test_batch.bin"})
    std::filesystem::rename(path(f), sub + "/" + f);
  ASSERT_EQ(ndl_dataset_load(top.c_str(), "t10k", 10, &d), NDL_OK) << ndl_last_error();
  EXPECT_EQ(d.n, 2);
  EXPECT_EQ(d.channels, 3);
  ndl_dataset_free(&d);
  std::filesystem::remove_all(sub);  // nothing at all: IDX's message
  expect_load_error(top, "t10k", 10, NDL_ERR_IO, {"t10k-images-idx3-ubyte"});
}

// --augment's crop and flip on the HWC layout move whole pixels: every channel with its pixel.
TEST_F(Cifar, CropAndFlipMoveAllThreeChannelsTogether) {
  put("b.bin", records(1));
  int64_t n = 0;
  float *px = nullptr;
  int32_t *lab = nullptr;
  ASSERT_EQ(ndl_cifar_read_batch(path("b.bin").c_str(), &n, &px, &lab), NDL_OK) << ndl_last_error();
  ndl_image_flip_horizontal(px, 32, 32, 3);
  ndl_image_shift(px, 32, 32, 3, 2, -3);  // out(h, w) = flipped(h + 2, w - 3)
  for (int h = 0; h < 32; h++)
    for (int w = 0; w < 32; w++)
      for (int c = 0; c < 3; c++) {
        int sh = h + 2, sw = w - 3;
        float want = sh < 32 && sw >= 0 ? expected_pixel(0, c, sh, 31 - sw) : 0.0f;
        ASSERT_EQ(px[(h * 32 + w) * 3 + c], want) << "h " << h << " w " << w << " c " << c;
      }
  ndl_free(px);
  ndl_free(lab);
}

// The loader's --augment on a CIFAR-10 set: each sample is its record shifted by the drawn (dh, dw)
// and mirrored when drawn, per channel, computed here from the record bytes (the draws replayed).
TEST_F(Cifar, LoaderAugmentOnThreeChannels) {
  put("test_batch.bin", records(6));
  ndl_dataset ds;
  ASSERT_EQ(ndl_dataset_load(dir.c_str(), "t10k", 10, &ds), NDL_OK) << ndl_last_error();
  ndl_rng rng, replay;
  ndl_rng_seed(&rng, 7);
  ndl_rng_seed(&replay, 7);
  ndl_loader_config cfg = {3, 0, 1, 0};
  ndl_loader *l = nullptr;
  ASSERT_EQ(ndl_loader_new(&ds, &cfg, &rng, &l), NDL_OK) << ndl_last_error();
  ndl_loader_epoch_begin(l);
  ndl_batch b;
  int flips = 0, shifted = 0;
  while (ndl_loader_next(l, 0, 1, &b) == 1) {
    ASSERT_EQ(b.rows * b.cols * b.channels, 3072);
    ASSERT_EQ(b.channels, 3);
    for (int64_t s = 0; s < b.local_count; s++) {
      int dh = (int)ndl_rng_randint(&replay, -4, 5), dw = (int)ndl_rng_randint(&replay, -4, 5);
      bool flip = ndl_rng_rand(&replay) < 0.5;
      flips += flip;
      shifted += dh != 0 || dw != 0;
      int i = (int)b.indices[s];
      for (int h = 0; h < 32; h++)
        for (int w = 0; w < 32; w++)
          for (int c = 0; c < 3; c++) {
            int sw = flip ? 31 - w : w, h0 = h + dh, w0 = sw + dw;
            float want = h0 >= 0 && h0 < 32 && w0 >= 0 && w0 < 32 ? expected_pixel(i, c, h0, w0) : 0.0f;
            ASSERT_EQ(b.images[s * 3072 + (h * 32 + w) * 3 + c], want)
                << "sample " << i << " h " << h << " w " << w << " c " << c << " dh " << dh << " dw " << dw;
          }
    }
  }
  EXPECT_GT(flips, 0);
  EXPECT_GT(shifted, 0);
  ndl_loader_free(l);
  ndl_dataset_free(&ds);
}

// ---------------------------------------------------------------- ndl-train --data CIFAR-10 DIR

class CifarCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ndl_cifar_cli_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    data = dir + "/cifar";
    std::filesystem::create_directories(data);
    for (int k = 1; k <= 5; k++) ndl_cli::write_file(batch(k), learnable(120, (unsigned)k), false);
    ndl_cli::write_file(data + "/test_batch.bin", learnable(100, 9), false);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string batch(int k) const { return data + "/data_batch_" + std::to_string(k) + ".bin"; }
  ndl_cli::RunResult train(const std::string &extra) {
    return ndl_cli::run_shell("timeout 120 " + std::string(NDL_TRAIN_BIN) + " --quiet --threads 1 --data " + data +
                                  " --model mlp --batch-size 50 --lr 0.001 " + extra,
                              dir);
  }
  // ndl-train fails with exit 3 and one "ndl-train: " line holding every substring.
  void expect_data_error(const std::vector<std::string> &subs, const std::string &extra = "--epochs 1") {
    ndl_cli::RunResult r = train(extra);
    EXPECT_EQ(r.code, 3) << r.out << r.err;
    EXPECT_EQ(r.err.rfind("ndl-train: ", 0), 0u) << r.err;
    EXPECT_EQ(ndl_cli::lines(r.err).size(), 1u) << r.err;
    for (const auto &sub : subs) EXPECT_NE(r.err.find(sub), std::string::npos) << "'" << sub << "' not in: " << r.err;
  }
  std::string dir, data;
};

TEST_F(CifarCli, MlpTrainsOnTheBinaryVersionAndTheLossGoesDown) {
  ndl_cli::RunResult r = train("--epochs 3 --hidden-dims 64");
  ASSERT_EQ(r.code, 0) << r.err;
  auto ls = ndl_cli::lines(r.out);
  ASSERT_EQ(ls.size(), 3u) << r.out;
  EXPECT_EQ(ls[0].rfind("epoch 1/3 train_err ", 0), 0u) << ls[0];
  EXPECT_LT(ndl_cli::field(ls[2], "train_loss"), ndl_cli::field(ls[0], "train_loss")) << r.out;
  EXPECT_LT(ndl_cli::field(ls[2], "test_err"), 0.5) << r.out;  // chance is 0.9
}

TEST_F(CifarCli, AugmentMaxStepsAndEvalOnlyRun) {
  ndl_cli::RunResult r = train("--epochs 1 --augment --max-steps 5");
  EXPECT_EQ(r.code, 0) << r.err;
  std::filesystem::remove(batch(2));  // --eval-only reads test_batch.bin alone
  r = train("--eval-only");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("test_err"), std::string::npos) << r.out;
}

TEST_F(CifarCli, TruncatedRecordIsExit3) {
  std::filesystem::resize_file(batch(4), 3073 * 7 + 100);
  expect_data_error({batch(4), "truncated record"});
}

TEST_F(CifarCli, LabelTenIsExit3) {
  std::string b = learnable(3, 1);
  b[3073] = 10;
  ndl_cli::write_file(batch(5), b, false);
  expect_data_error({batch(5), "record 1 has label 10, expected 0..9"});
}

TEST_F(CifarCli, LabelAtClassesIsExit3) { expect_data_error({"expected < 2 classes"}, "--epochs 1 --classes 2"); }

TEST_F(CifarCli, MissingBatchIsExit3) {
  std::filesystem::remove(batch(3));
  expect_data_error({batch(3), "missing CIFAR-10 batch file"});
}

TEST_F(CifarCli, EmptyBatchIsExit3) {
  ndl_cli::write_file(data + "/test_batch.bin", "", false);
  expect_data_error({data + "/test_batch.bin", "empty file"});
}

TEST_F(CifarCli, FifoBatchIsExit3WithoutBlocking) {
  std::filesystem::remove(batch(1));
  ASSERT_EQ(mkfifo(batch(1).c_str(), 0600), 0);
  expect_data_error({batch(1), "a FIFO, expected a regular file"});  // a blocking open would hang ctest's timeout
}

}  // namespace
