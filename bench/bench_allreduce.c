/* bench_allreduce.c: the process group's float all-reduce alone, under mpirun: ITERS sums of N floats
 * (default: the default model's gradient, 110,860 floats) after a warm-up, every rank timing each call;
 * rank 0 prints the median and mean microseconds per call (each call's mean over ranks) and the bus
 * bandwidth in the nccl-tests sense, 2(N-1)/N * bytes / time. Leaves out: SyncBN-sized sums (pass N).
 * Usage: mpirun -np R bench_allreduce [floats=110860] [iters=2000] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/alloc.h"
#include "dist/dist.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int64_t n = argc > 1 ? atoll(argv[1]) : 110860;
  int iters = argc > 2 ? atoi(argv[2]) : 2000;
  ndl_dist *d = NULL;
  if (n < 1 || iters < 1 || ndl_dist_init(&d, 60.0) != NDL_OK) {
    fprintf(stderr, "usage: mpirun -np R bench_allreduce [floats>0] [iters>0]\n");
    return 2;
  }
  float *buf = ndl_malloc((size_t)n * sizeof *buf);
  double *t = ndl_malloc((size_t)iters * sizeof *t);
  NDL_ASSERT(buf && t);
  for (int64_t i = 0; i < n; i++) buf[i] = 1.0f;
  for (int k = -iters / 10 - 1; k < iters; k++) {
    double t0 = now_s();
    if (ndl_dist_allreduce_sum(d, buf, n, "bench allreduce") != NDL_OK) {
      ndl_dist_log_all(d, "%s", ndl_last_error());
      ndl_dist_abort(d, 5);
    }
    if (k >= 0) t[k] = now_s() - t0;
    for (int64_t i = 0; i < n; i += 1024) buf[i] = 1.0f; /* keep the values bounded */
  }
  /* per call, the mean over ranks (a sum is the only reduction the process group has) */
  if (ndl_dist_world(d) > 1) {
    if (ndl_dist_allreduce_sum_f64(d, t, iters, "bench gather") != NDL_OK) ndl_dist_abort(d, 5);
    for (int k = 0; k < iters; k++) t[k] /= ndl_dist_world(d);
  }
  double mean = 0;
  for (int k = 0; k < iters; k++) mean += t[k] / iters;
  qsort(t, (size_t)iters, sizeof *t, cmp);
  double med = t[iters / 2], w = ndl_dist_world(d), bytes = (double)n * sizeof(float);
  double bus = w > 1 ? 2 * (w - 1) / w * bytes / med : 0;
  ndl_dist_log0(d, "allreduce %lld floats (%.0f bytes), %d ranks, transport %s: median %.1f us, mean %.1f us per call (mean over ranks); bus bandwidth %.2f GB/s",
                (long long)n, bytes, (int)w, ndl_dist_transport(d), med * 1e6, mean * 1e6, bus / 1e9);
  ndl_free(buf);
  ndl_free(t);
  ndl_dist_free(d);
  return 0;
}
