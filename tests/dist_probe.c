/* dist_probe.c: the multi-process test program run by ctest through mpirun (label mpi).
 *   dist_probe collectives        all-reduce (float/double, n = 1 and 1e6), broadcast, all-gather,
 *                                 barrier, SyncBN adapter, startup check agreeing; exit 0 iff all pass
 *   dist_probe agree-mismatch     rank 1 has another --lr: every rank must get NDL_ERR_DIST naming it
 *   dist_probe abort              rank 0 calls ndl_dist_abort(d, 5) while the others wait in a barrier
 *   dist_probe fault [timeout_s] [floats=16]  a training-like loop of steps with one all-reduce
 *                                 each; NDL_FAULT set by the caller; a failed collective is logged and
 *                                 aborts with 5
 *   dist_probe sum-mismatch       rank 0 sums 4 floats, the others 3: must fail naming it, exit 5
 *   dist_probe transport          rank 0 prints "transport mpi|mpi+shm world N" (ndl_dist_transport)
 * It leaves out timing: tests/run_fault.sh measures how fast the job ends. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "dist/dist.h"
#include "dist/dist_check.h"

static int failures;

#define CHECK(d, cond, ...)                                 \
  do {                                                      \
    if (!(cond)) {                                          \
      ndl_dist_log_all((d), "CHECK failed: " __VA_ARGS__);  \
      failures++;                                           \
    }                                                       \
  } while (0)

static void must(ndl_dist *d, ndl_status st) {
  if (st == NDL_OK) return;
  ndl_dist_log_all(d, "%s", ndl_last_error());
  ndl_dist_abort(d, 5);
}

static void test_sums(ndl_dist *d, int64_t n) {
  int r = ndl_dist_rank(d), w = ndl_dist_world(d);
  float *f = ndl_malloc((size_t)n * sizeof *f);
  double *g = ndl_malloc((size_t)n * sizeof *g);
  NDL_ASSERT(f && g);
  for (int64_t i = 0; i < n; i++) { /* small integers: the float sum is exact */
    f[i] = (float)((r + 1) * (i % 13));
    g[i] = (r + 1) * 0.5 + (double)i;
  }
  must(d, ndl_dist_allreduce_sum(d, f, n, "float allreduce"));
  must(d, ndl_dist_allreduce_sum_f64(d, g, n, "double allreduce"));
  int64_t bad_f = 0, bad_g = 0;
  double tri = w * (w + 1) / 2.0;
  for (int64_t i = 0; i < n; i++) {
    if (f[i] != (float)((i % 13) * tri)) bad_f++;
    if (fabs(g[i] - (0.5 * tri + (double)w * (double)i)) > 1e-9 * (1 + (double)w * i)) bad_g++;
  }
  CHECK(d, bad_f == 0, "float allreduce n=%lld: %lld wrong (f[1]=%g)", (long long)n,
        (long long)bad_f, n > 1 ? f[1] : f[0]);
  CHECK(d, bad_g == 0, "double allreduce n=%lld: %lld wrong", (long long)n, (long long)bad_g);
  ndl_free(f);
  ndl_free(g);
}

static void test_others(ndl_dist *d) {
  int r = ndl_dist_rank(d), w = ndl_dist_world(d);
  char msg[64];
  snprintf(msg, sizeof msg, "from rank %d", r);
  must(d, ndl_dist_broadcast(d, msg, sizeof msg, w - 1, "broadcast"));
  char want[64];
  snprintf(want, sizeof want, "from rank %d", w - 1);
  CHECK(d, strcmp(msg, want) == 0, "broadcast got \"%s\"", msg);

  int64_t mine[2] = {r, 100 + r}, all[2 * 8];
  must(d, ndl_dist_allgather(d, mine, all, sizeof mine, "allgather"));
  for (int k = 0; k < w; k++)
    CHECK(d, all[2 * k] == k && all[2 * k + 1] == 100 + k, "allgather slot %d", k);
  all[2 * r] = 10 * r; /* in place: mine is this rank's slot of all */
  all[2 * r + 1] = 0;
  must(d, ndl_dist_allgather(d, all + 2 * r, all, sizeof mine, "allgather in place"));
  for (int k = 0; k < w; k++) CHECK(d, all[2 * k] == 10 * k, "in-place allgather slot %d", k);

  must(d, ndl_dist_barrier(d, "barrier"));
  double bn[2] = {1.0, (double)r};
  must(d, ndl_dist_allreduce_cb(d, bn, 2));
  CHECK(d, bn[0] == (double)w && bn[1] == (double)(w * (w - 1) / 2), "syncbn adapter");

  ndl_dist_field f[2] = {{"--lr", "0.001"}, {"layout hash", ""}};
  snprintf(f[1].value, sizeof f[1].value, "%016llx",
           (unsigned long long)ndl_dist_hash("layout", 6, 0));
  ndl_status st = ndl_dist_check_agree(d, f, 2);
  CHECK(d, st == NDL_OK, "check_agree on equal fields: %s", ndl_last_error());
  CHECK(d, ndl_dist_local_size(d) == w && ndl_dist_local_rank(d) == r, "local rank %d of %d",
        ndl_dist_local_rank(d), ndl_dist_local_size(d));
}

static int run_collectives(ndl_dist *d) {
  test_sums(d, 1);
  test_sums(d, 1000000);
  test_others(d);
  float total = (float)failures; /* every rank learns whether any rank failed */
  must(d, ndl_dist_allreduce_sum(d, &total, 1, "failure count"));
  if (total == 0) ndl_dist_log0(d, "PASS collectives world=%d", ndl_dist_world(d));
  return total == 0 ? 0 : 1;
}

static int run_agree_mismatch(ndl_dist *d) {
  int r = ndl_dist_rank(d);
  ndl_dist_field f[2] = {{"--epochs", "10"}, {"--lr", "0.001"}};
  if (r == 1) snprintf(f[1].value, sizeof f[1].value, "0.01");
  ndl_status st = ndl_dist_check_agree(d, f, 2);
  CHECK(d, st == NDL_ERR_DIST, "check_agree returned %d", (int)st);
  CHECK(d, strstr(ndl_last_error(), "--lr: rank 1 has 0.01, rank 0 has 0.001") != NULL,
        "message: %s", ndl_last_error());
  CHECK(d, strstr(ndl_last_error(), "--epochs") == NULL, "message: %s", ndl_last_error());
  ndl_dist_log_all(d, "%s", ndl_last_error());
  float total = (float)failures;
  must(d, ndl_dist_allreduce_sum(d, &total, 1, "failure count"));
  if (total == 0) ndl_dist_log0(d, "PASS agree-mismatch world=%d", ndl_dist_world(d));
  return total == 0 ? 0 : 1;
}

/* Rank 0 sums 4 floats, the others 3: every rank must fail with a message (no hang, no garbage). */
static int run_sum_mismatch(ndl_dist *d) {
  float g[4] = {1, 2, 3, 4};
  must(d, ndl_dist_allreduce_sum(d, g, ndl_dist_rank(d) == 0 ? 4 : 3, "mismatch sum"));
  ndl_dist_log_all(d, "mismatched sums completed");
  return 1;
}

static int run_fault(ndl_dist *d, int64_t n) {
  float *g = ndl_malloc((size_t)n * sizeof *g);
  NDL_ASSERT(g);
  for (int64_t step = 0; step < 100000; step++) {
    ndl_dist_set_step(d, step);
    for (int64_t i = 0; i < n; i++) g[i] = 1.0f;
    must(d, ndl_dist_allreduce_sum(d, g, n, "grad allreduce"));
  }
  ndl_dist_log_all(d, "fault never happened");
  ndl_free(g);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: dist_probe collectives|agree-mismatch|abort|fault|sum-mismatch|transport [timeout_s] [floats]\n");
    return 2;
  }
  double timeout = argc > 2 ? atof(argv[2]) : 30.0;
  ndl_dist *d = NULL;
  if (ndl_dist_init(&d, timeout) != NDL_OK) {
    fprintf(stderr, "dist_probe: %s\n", ndl_last_error());
    return 5;
  }
  int rc = 2;
  if (strcmp(argv[1], "collectives") == 0) rc = run_collectives(d);
  else if (strcmp(argv[1], "agree-mismatch") == 0) rc = run_agree_mismatch(d);
  else if (strcmp(argv[1], "fault") == 0) rc = run_fault(d, argc > 3 ? atoll(argv[3]) : 16);
  else if (strcmp(argv[1], "sum-mismatch") == 0) rc = run_sum_mismatch(d);
  else if (strcmp(argv[1], "transport") == 0) {
    ndl_dist_log0(d, "transport %s world %d", ndl_dist_transport(d), ndl_dist_world(d));
    must(d, ndl_dist_barrier(d, "barrier"));
    rc = 0;
  }
  else if (strcmp(argv[1], "abort") == 0) {
    if (ndl_dist_rank(d) == 0) {
      ndl_dist_log_all(d, "aborting with 5");
      ndl_dist_abort(d, 5);
    }
    must(d, ndl_dist_barrier(d, "barrier"));
    rc = 1; /* not reached: rank 0 never joins */
  }
  ndl_dist_free(d);
  return rc;
}
