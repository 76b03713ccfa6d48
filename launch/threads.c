/* threads.c: thread-count policy. --threads (default: online cores / local ranks) sizes the core
 * thread pool, which runs the optimizer step split over the flat buffers (bitwise the same for any
 * split) and GEMMs big enough to gain from a row split (core/cpu_backend.c). OpenBLAS's own threads
 * stay off: they are slower than one thread at this workload's small GEMMs (SPEC §5). Denormals are
 * flushed to zero: without it an epoch late in training ran 3x slower than the first. */
#include "launch/threads.h"

#include <cblas.h>
#include <unistd.h>

#include "core/threadpool.h"

int ndl_threads_configure(int requested, int local_ranks) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int n = requested > 0 ? requested : (int)(cores / (local_ranks > 0 ? local_ranks : 1));
  if (n < 1) n = 1;
  openblas_set_num_threads(1);
  ndl_flush_denormals(); /* before the pool starts, so its workers inherit it */
  ndl_threadpool_set_threads(n);
  return n;
}
