// test_state_validate.cc: the validated setters a checkpoint restore goes through: ndl_rng_set_state
// and ndl_loader_cursor_set refuse impossible states with NDL_ERR_FORMAT (never an assertion or an
// out-of-bounds index) and change nothing then; valid states restore the exact sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/rng.h"
#include "data/loader.h"

namespace {

TEST(RngState, SetStateValidatesEveryField) {
  ndl_rng a, b;
  ndl_rng_seed(&a, 7);
  for (int i = 0; i < 5; i++) ndl_rng_randn(&a);  // leaves a cached gauss
  ASSERT_EQ(a.has_gauss, 1);
  ndl_rng_seed(&b, 99);
  const ndl_rng before = b;
  struct {
    int64_t pos, has_gauss;
    double gauss;
    const char *needle;
  } bad[] = {{-5, 0, 0.0, "position -5"},        {625, 0, 0.0, "position 625"},
             {10000, 0, 0.0, "position 10000"},   {0, 7, 0.0, "has_gauss 7"},
             {0, -1, 0.0, "has_gauss -1"},        {0, 1, NAN, "not finite"},
             {0, 0, INFINITY, "not finite"},      {INT64_MIN, 0, 0.0, "position"}};
  for (auto &c : bad) {
    EXPECT_EQ(ndl_rng_set_state(&b, a.mt, c.pos, c.has_gauss, c.gauss), NDL_ERR_FORMAT) << c.needle;
    EXPECT_NE(std::string(ndl_last_error()).find(c.needle), std::string::npos) << ndl_last_error();
    EXPECT_EQ(memcmp(&b, &before, sizeof b), 0) << "a refused state changed the RNG";
  }
  ASSERT_EQ(ndl_rng_set_state(&b, a.mt, a.pos, a.has_gauss, a.gauss), NDL_OK) << ndl_last_error();
  for (int i = 0; i < 2000; i++) {  // crosses a regeneration
    ASSERT_EQ(ndl_rng_randn(&b), ndl_rng_randn(&a)) << i;
    ASSERT_EQ(ndl_rng_u32(&b), ndl_rng_u32(&a)) << i;
  }
  for (int pos : {0, NDL_RNG_N}) EXPECT_EQ(ndl_rng_set_state(&b, a.mt, pos, 0, 0.0), NDL_OK);
  ndl_rng c = a;
  c.pos = -5;
  EXPECT_EQ(ndl_rng_check(&c), NDL_ERR_FORMAT);
  c.pos = 3;
  c.has_gauss = 2;
  EXPECT_EQ(ndl_rng_check(&c), NDL_ERR_FORMAT);
  c.has_gauss = 0;
  EXPECT_EQ(ndl_rng_check(&c), NDL_OK);
}

struct Data {
  std::vector<float> images;
  std::vector<int32_t> labels;
  ndl_dataset ds;
  explicit Data(int n) : images((size_t)n * 4), labels((size_t)n) {
    for (int i = 0; i < n; i++) {
      for (int k = 0; k < 4; k++) images[(size_t)i * 4 + k] = (float)(i * 10 + k);
      labels[(size_t)i] = i % 3;
    }
    memset(&ds, 0, sizeof ds);
    ds.n = n;
    ds.rows = ds.cols = 2;
    ds.channels = 1;
    ds.num_classes = 3;
    ds.images = images.data();
    ds.labels = labels.data();
  }
};

TEST(LoaderCursor, SetValidatesEveryFieldAndChangesNothingOnError) {
  Data d(10);
  ndl_rng rng;
  ndl_rng_seed(&rng, 3);
  ndl_loader_config cfg = {4, 1, 0, 1};  // B 4 (3 batches), shuffle, prefetch
  ndl_loader *l = nullptr;
  ASSERT_EQ(ndl_loader_new(&d.ds, &cfg, &rng, &l), NDL_OK);
  ndl_loader_epoch_begin(l);
  ndl_batch b;
  ASSERT_EQ(ndl_loader_next(l, 0, 1, &b), 1);
  ndl_loader_cursor good;
  ndl_loader_cursor_get(l, &good);
  std::vector<int64_t> want;
  {  // what the next batch would be
    ndl_loader_cursor_get(l, &good);
    ASSERT_EQ(ndl_loader_next(l, 0, 1, &b), 1);
    want.assign(b.indices, b.indices + b.local_count);
    ASSERT_EQ(ndl_loader_cursor_set(l, &good), NDL_OK) << ndl_last_error();
  }
  auto bad = [&](void (*edit)(ndl_loader_cursor *), const char *what) {
    ndl_loader_cursor c = good;
    edit(&c);
    EXPECT_EQ(ndl_loader_cursor_set(l, &c), NDL_ERR_FORMAT) << what;
    ndl_batch nb;
    ASSERT_EQ(ndl_loader_next(l, 0, 1, &nb), 1) << what;
    EXPECT_EQ(std::vector<int64_t>(nb.indices, nb.indices + nb.local_count), want) << what << " moved the cursor";
    ASSERT_EQ(ndl_loader_cursor_set(l, &good), NDL_OK);
  };
  bad([](ndl_loader_cursor *c) { c->epochs_begun = -1; }, "negative epochs");
  bad([](ndl_loader_cursor *c) { c->next_batch = -1; }, "negative batch");
  bad([](ndl_loader_cursor *c) { c->next_batch = 4; }, "batch past the end");
  bad([](ndl_loader_cursor *c) { c->in_epoch = 2; }, "in_epoch 2");
  bad([](ndl_loader_cursor *c) { c->epochs_begun = 0; }, "in an epoch never begun");
  bad([](ndl_loader_cursor *c) { c->epochs_begun = 0, c->in_epoch = 0; }, "a batch of no epoch");
  bad([](ndl_loader_cursor *c) { c->epoch_rng.pos = -5; }, "epoch rng pos -5");
  bad([](ndl_loader_cursor *c) { c->epoch_rng.pos = 100000; }, "epoch rng pos 100000");
  bad([](ndl_loader_cursor *c) { c->epoch_rng.has_gauss = 9; }, "epoch rng has_gauss 9");
  ndl_loader_cursor other = good;
  other.batch_size = 5;
  EXPECT_EQ(ndl_loader_cursor_set(l, &other), NDL_ERR_MISMATCH);
  ndl_loader_free(l);
}

}  // namespace
