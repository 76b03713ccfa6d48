/* dist_nccl_none.c: the GPU choice of the process group in builds without CUDA (NDL_CUDA=OFF): no
 * GPU is visible and none can be bound. Leaves out: the NCCL stubs (dist_nccl_off.c, shared with
 * CUDA builds without NCCL). */
#include "dist/dist_device.h"
#include "dist/dist_internal.h"

int ndl_dist_gpu_count(void) { return 0; }

ndl_status ndl_dist_gpu_bind(ndl_dist *d, int count) {
  (void)d, (void)count;
  return ndl_errorf(NDL_ERR_DIST, "this build has no CUDA (NDL_CUDA=OFF)");
}
