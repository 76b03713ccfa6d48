/* dist_device.h: collectives on buffers in a backend's memory (GPU gradients) and the GPU a rank
 * uses. Two transports: host-staged MPI (copy to the host, the dist.h collective, copy back through
 * the backend; any number of ranks per GPU) and NCCL (dist_nccl.c: one GPU per rank, a communicator
 * from a unique id rank 0 broadcasts over MPI). A CPU backend's buffers take dist.h's path unchanged;
 * world size 1 without NCCL returns at once. Failures follow dist.h's contract (NDL_ERR_DIST, the
 * handle broken, the caller logs and aborts with 5). */
#ifndef NDL_DIST_DEVICE_H
#define NDL_DIST_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "dist/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether this build has the NCCL transport (CMake NDL_NCCL). */
int ndl_dist_nccl_built(void);
/* GPUs the CUDA runtime shows this process; 0 in a build without CUDA or when it finds none. */
int ndl_dist_gpu_count(void);
/* Make GPU (local rank mod count) the current device of this process, before the CUDA backend is
 * created (count > 0, from ndl_dist_gpu_count). NDL_ERR_DIST when the runtime refuses. */
ndl_status ndl_dist_gpu_bind(ndl_dist *d, int count);
/* From now on the device collectives of d run on NCCL over the current GPU. World > 1: every rank
 * calls it (rank 0's unique id is broadcast over MPI); world 1: a one-rank communicator, no MPI (how
 * a one-GPU machine exercises the NCCL path). NDL_ERR_DIST when NCCL fails or is not built. */
ndl_status ndl_dist_nccl_init(ndl_dist *d);
/* Whether ndl_dist_nccl_init succeeded on d. */
int ndl_dist_uses_nccl(const ndl_dist *d);
/* SyncBN's device all-reduce (ndl_allreduce.device, core/backend.h) over d's NCCL communicator:
 * n doubles of device memory, whose producing work the caller has finished; handle is d. */
ndl_status ndl_dist_allreduce_dev_cb(void *handle, double *buf, int64_t n);
/* Sum n floats of buf (memory of be) over all ranks in place, what names it in messages; completed
 * on return (NCCL: after be->sync, on the communicator's stream, waited for under the deadline). */
ndl_status ndl_dist_allreduce_sum_dev(ndl_dist *d, const ndl_backend *be, float *buf, int64_t n,
                                      const char *what);
/* Copy root's bytes of buf (memory of be) into buf on every rank; completed on return. */
ndl_status ndl_dist_broadcast_dev(ndl_dist *d, const ndl_backend *be, void *buf, int64_t bytes, int root,
                                  const char *what);
/* An asynchronous NCCL failure seen on d (ncclCommGetAsyncError): 1 with a one-line message in msg,
 * else 0. Safe from the step watchdog's thread; 0 without NCCL. */
int ndl_dist_device_error(ndl_dist *d, char *msg, size_t cap);
/* Abort d's NCCL communicator (ncclCommAbort) so no kernel waits on a dead peer; any thread; no-op
 * without NCCL. ndl_dist_abort/_async call it before ending the job. */
void ndl_dist_device_abort(ndl_dist *d);

#ifdef __cplusplus
}
#endif
#endif
