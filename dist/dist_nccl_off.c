/* dist_nccl_off.c: the NCCL transport in builds without NCCL (NDL_NCCL=OFF, with or without CUDA):
 * --collectives nccl is refused, and there is never a communicator to poll, abort or free.
 * Leaves out: the GPU choice (dist_nccl.c with CUDA, dist_nccl_none.c without). */
#include "dist/dist_device.h"
#include "dist/dist_internal.h"

int ndl_dist_nccl_built(void) { return 0; }

ndl_status ndl_dist_nccl_init(ndl_dist *d) {
  (void)d;
  return ndl_errorf(NDL_ERR_DIST, "--collectives nccl: this build has no NCCL (NDL_NCCL=OFF)");
}

ndl_status ndl_dist_nccl_collective(ndl_dist *d, const ndl_backend *be, ndl_dist_op op, void *buf,
                                    int64_t count, int root, const char *what, int syncbn) {
  (void)d, (void)be, (void)op, (void)buf, (void)count, (void)root, (void)syncbn;
  NDL_ABORT("dist: %s: NCCL collective in a build without NCCL", what);
}

int ndl_dist_device_error(ndl_dist *d, char *msg, size_t cap) { return (void)d, (void)msg, (void)cap, 0; }
void ndl_dist_device_abort(ndl_dist *d) { (void)d; }
void ndl_dist_nccl_free(ndl_dist *d) { (void)d; }
