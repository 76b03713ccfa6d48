/* threads.c: thread-count policy. OpenBLAS's own threading is slower than one thread at this
 * workload's small GEMMs (SPEC §5), so sgemm always runs single-threaded. Splitting GEMMs across our
 * own pool (core/threadpool) is used only when --threads asks for it: measured on the 2-core dev
 * machine it gains little at batch 100, and it changes the last bits of the results (OpenBLAS picks
 * different kernels for the smaller row blocks). The data loader's prefetch thread is always on. */
#include "launch/threads.h"

#include <cblas.h>

#include "core/threadpool.h"

int ndl_threads_configure(int requested, int local_ranks) {
  (void)local_ranks;
  int n = requested > 0 ? requested : 1;
  openblas_set_num_threads(1);
  ndl_threadpool_set_threads(n);
  return n;
}
