// test_dist_single.cc: the process group with world size 1 (no mpirun): no MPI call at all,
// collectives are early returns, the startup check agrees, FNV-1a values, argument errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/alloc.h"
#include "dist/dist.h"
#include "dist/dist_check.h"

#ifdef NDL_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace {

// Clears the launcher and fault variables for the test, checks no block is left alive.
class DistSingle : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char *v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "NDL_FAULT"})
      unsetenv(v);
    live = ndl_alloc_live_count();
  }
  void TearDown() override { EXPECT_EQ(ndl_alloc_live_count(), live); }
  int64_t live = 0;
};

TEST_F(DistSingle, InitIsWorldOneWithoutMpi) {
  ndl_dist *d = nullptr;
  ASSERT_EQ(ndl_dist_init(&d, 5.0), NDL_OK) << ndl_last_error();
  EXPECT_EQ(ndl_dist_world(d), 1);
  EXPECT_EQ(ndl_dist_rank(d), 0);
  EXPECT_EQ(ndl_dist_local_rank(d), 0);
  EXPECT_EQ(ndl_dist_local_size(d), 1);
  EXPECT_STREQ(ndl_dist_transport(d), "none");
#ifdef NDL_HAVE_MPI
  int init = 1;
  MPI_Initialized(&init);
  EXPECT_EQ(init, 0) << "world size 1 must not initialize MPI";
#endif
  ndl_dist_free(d);
}

TEST_F(DistSingle, MpirunWithOneRankIsWorldOne) {
  setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
  ndl_dist *d = nullptr;
  ASSERT_EQ(ndl_dist_init(&d, 5.0), NDL_OK) << ndl_last_error();
  EXPECT_EQ(ndl_dist_world(d), 1);
#ifdef NDL_HAVE_MPI
  int init = 1;
  MPI_Initialized(&init);
  EXPECT_EQ(init, 0);
#endif
  ndl_dist_free(d);
}

TEST_F(DistSingle, CollectivesAreEarlyReturns) {
  ndl_dist *d = nullptr;
  ASSERT_EQ(ndl_dist_init(&d, 5.0), NDL_OK);
  ndl_dist_set_step(d, 7);
  std::vector<float> f = {1.5f, -2.0f, 3.25f};
  EXPECT_EQ(ndl_dist_allreduce_sum(d, f.data(), 3, "grad allreduce"), NDL_OK);
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.25f}));
  std::vector<double> h = {1.5, -2.0};
  EXPECT_EQ(ndl_dist_allreduce_cb(d, h.data(), 2), NDL_OK);
  EXPECT_EQ(h, (std::vector<double>{1.5, -2.0}));
  std::vector<double> g = {0.1, 0.2};
  EXPECT_EQ(ndl_dist_allreduce_sum_f64(d, g.data(), 2, "metrics"), NDL_OK);
  EXPECT_EQ(g, (std::vector<double>{0.1, 0.2}));
  char b[4] = {'a', 'b', 'c', 'd'};
  EXPECT_EQ(ndl_dist_broadcast(d, b, 4, 0, "params"), NDL_OK);
  EXPECT_EQ(std::memcmp(b, "abcd", 4), 0);
  int mine[2] = {4, 5}, all[2] = {0, 0};
  EXPECT_EQ(ndl_dist_allgather(d, mine, all, sizeof mine, "gather"), NDL_OK);
  EXPECT_EQ(all[0], 4);
  EXPECT_EQ(all[1], 5);
  EXPECT_EQ(ndl_dist_allgather(d, all, all, sizeof all, "in place"), NDL_OK);
  EXPECT_EQ(all[1], 5);
  EXPECT_EQ(ndl_dist_barrier(d, "barrier"), NDL_OK);
  ndl_dist_free(d);
}

TEST_F(DistSingle, BadArgumentsAreStatuses) {
  ndl_dist *d = reinterpret_cast<ndl_dist *>(1);
  EXPECT_EQ(ndl_dist_init(&d, 0.0), NDL_ERR_ARG);
  EXPECT_EQ(d, nullptr);
  EXPECT_NE(std::string(ndl_last_error()).find("timeout"), std::string::npos);
  ASSERT_EQ(ndl_dist_init(&d, 1.0), NDL_OK);
  char b = 0;
  EXPECT_EQ(ndl_dist_broadcast(d, &b, 1, 1, "params"), NDL_ERR_ARG);
  EXPECT_NE(std::string(ndl_last_error()).find("root 1"), std::string::npos) << ndl_last_error();
  ndl_dist_free(d);
  ndl_dist_free(nullptr);
}

TEST_F(DistSingle, FaultSpecIsChecked) {
  ndl_dist *d = nullptr;
  for (const char *bad : {"rank=1", "rank=1,step=2,action=crash", "rank=-1,step=0,action=exit",
                          "rank=1,step=2,action=exit,extra"}) {
    setenv("NDL_FAULT", bad, 1);
    EXPECT_EQ(ndl_dist_init(&d, 1.0), NDL_ERR_ARG) << bad;
    EXPECT_NE(std::string(ndl_last_error()).find("NDL_FAULT"), std::string::npos);
  }
  setenv("NDL_FAULT", "rank=1,step=2,action=hang", 1);
  ASSERT_EQ(ndl_dist_init(&d, 1.0), NDL_OK) << ndl_last_error();
  ndl_dist_free(d);
}

#ifndef NDL_HAVE_MPI
TEST_F(DistSingle, MpirunWithoutMpiBuildFailsClearly) {
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  ndl_dist *d = nullptr;
  EXPECT_EQ(ndl_dist_init(&d, 1.0), NDL_ERR_DIST);
  EXPECT_EQ(d, nullptr);
  EXPECT_NE(std::string(ndl_last_error()).find("no MPI"), std::string::npos) << ndl_last_error();
}
#endif

TEST_F(DistSingle, CheckAgreeSucceedsAlone) {
  ndl_dist *d = nullptr;
  ASSERT_EQ(ndl_dist_init(&d, 1.0), NDL_OK);
  ndl_dist_field f[2] = {{"--lr", "0.001"}, {"parameters", "21650"}};
  EXPECT_EQ(ndl_dist_check_agree(d, f, 2), NDL_OK);
  ndl_dist_free(d);
}

TEST(DistHash, Fnv1aKnownValues) {
  EXPECT_EQ(ndl_dist_hash("", 0, 0), 0xcbf29ce484222325ULL);
  EXPECT_EQ(ndl_dist_hash("a", 1, 0), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(ndl_dist_hash("foobar", 6, 0), 0x85944171f73967e8ULL);
  EXPECT_EQ(ndl_dist_hash("bar", 3, ndl_dist_hash("foo", 3, 0)), 0x85944171f73967e8ULL);
  EXPECT_NE(ndl_dist_hash("foobaR", 6, 0), 0x85944171f73967e8ULL);
}

TEST(DistLog, PrefixesRank) {
  ndl_dist *d = nullptr;
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("NDL_FAULT");
  ASSERT_EQ(ndl_dist_init(&d, 1.0), NDL_OK);
  testing::internal::CaptureStderr();
  ndl_dist_log_all(d, "hello %d", 3);
  ndl_dist_log0(d, "zero");
  ndl_dist_log0(nullptr, "plain");
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "ndl-train: rank 0: hello 3\nndl-train: rank 0: zero\nndl-train: plain\n");
  ndl_dist_free(d);
}

TEST(DistAbortDeathTest, ExitsWithCode) {
  ndl_dist *d = nullptr;
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("NDL_FAULT");
  ASSERT_EQ(ndl_dist_init(&d, 1.0), NDL_OK);
  EXPECT_EXIT(ndl_dist_abort(d, 5), testing::ExitedWithCode(5), "");
  ndl_dist_free(d);
}

}  // namespace
