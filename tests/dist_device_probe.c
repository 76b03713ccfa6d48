/* dist_device_probe.c: run under mpirun (np >= 2): the host-staged MPI path of dist_device.h on a
 * stand-in device backend (tests/host_device.h): the gradient all-reduce and the broadcast give the
 * host collectives' results, each with one copy to the host and one back. Exit 0 when every check
 * holds on this rank, 1 otherwise (one line per failure). */
#include <stdio.h>

#include "dist/dist_device.h"
#include "host_device.h"

#define N 1000

int main(void) {
  ndl_dist *d = NULL;
  if (ndl_dist_init(&d, 30.0) != NDL_OK) {
    fprintf(stderr, "dist_device_probe: %s\n", ndl_last_error());
    return 1;
  }
  int rank = ndl_dist_rank(d), world = ndl_dist_world(d), bad = 0;
  const ndl_backend *be = host_device();
  float *g = be->alloc(N * sizeof(float));
  for (int i = 0; i < N; i++) g[i] = (float)(rank + 1) + (float)i;
  if (ndl_dist_allreduce_sum_dev(d, be, g, N, "grad allreduce") != NDL_OK) {
    ndl_dist_log_all(d, "allreduce failed: %s", ndl_last_error());
    ndl_dist_abort(d, 5);
  }
  for (int i = 0; i < N && !bad; i++) {
    float want = (float)(world * (world + 1) / 2) + (float)world * (float)i;
    if (g[i] != want) bad = (ndl_dist_log_all(d, "allreduce: element %d is %g, want %g", i, g[i], want), 1);
  }
  if (host_device_n.copies[NDL_COPY_D2H] != 1 || host_device_n.copies[NDL_COPY_H2D] != 1 ||
      host_device_n.bytes[NDL_COPY_D2H] != N * 4)
    bad = (ndl_dist_log_all(d, "allreduce: %ld D2H and %ld H2D copies, want 1 each", host_device_n.copies[NDL_COPY_D2H],
                            host_device_n.copies[NDL_COPY_H2D]), 1);
  char *p = be->alloc(77);
  for (int i = 0; i < 77; i++) p[i] = (char)(rank == 1 ? i : -1);
  if (ndl_dist_broadcast_dev(d, be, p, 77, 1, "parameter broadcast") != NDL_OK) {
    ndl_dist_log_all(d, "broadcast failed: %s", ndl_last_error());
    ndl_dist_abort(d, 5);
  }
  for (int i = 0; i < 77 && !bad; i++)
    if (p[i] != (char)i) bad = (ndl_dist_log_all(d, "broadcast: byte %d is %d", i, p[i]), 1);
  if (ndl_dist_uses_nccl(d)) bad = (ndl_dist_log_all(d, "NCCL in use without ndl_dist_nccl_init"), 1);
  be->free(g);
  be->free(p);
  if (!bad) ndl_dist_log_all(d, "dist_device ok (world %d)", world);
  ndl_dist_free(d);
  return bad;
}
