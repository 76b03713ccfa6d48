/* dist_device.c: collectives on device buffers. A CPU backend's memory is host memory: dist.h's
 * collective runs on it unchanged. With NCCL the transport is dist_nccl.c; otherwise the buffer is
 * staged through one host buffer owned by the handle (copy to host, the MPI collective, copy back),
 * which lets several ranks share one GPU. Leaves out: the NCCL calls (dist_nccl.c). */
#include "dist/dist_device.h"

#include "core/alloc.h"
#include "dist/dist_internal.h"

int ndl_dist_uses_nccl(const ndl_dist *d) { return d && d->nccl != NULL; }

ndl_status ndl_dist_allreduce_dev_cb(void *handle, double *buf, int64_t n) {
  ndl_dist *d = handle;
  NDL_ASSERT(d && d->nccl && n >= 0 && (buf || n == 0));
  return ndl_dist_nccl_collective(d, NULL, NDL_DIST_SUM_F64, buf, n, 0, "syncbn allreduce", 1);
}

/* The staging buffer, grown to at least bytes; NULL with NDL_ERR_NOMEM set. */
static void *stage(ndl_dist *d, size_t bytes, const char *what) {
  if (d->stage_bytes >= bytes) return d->stage;
  ndl_free(d->stage);
  d->stage_bytes = 0;
  d->stage = ndl_malloc(bytes);
  if (!d->stage) {
    ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory for a %zu-byte host staging buffer", what, bytes);
    return NULL;
  }
  d->stage_bytes = bytes;
  return d->stage;
}

ndl_status ndl_dist_allreduce_sum_dev(ndl_dist *d, const ndl_backend *be, float *buf, int64_t n,
                                      const char *what) {
  NDL_ASSERT(d && be && what && n >= 0 && (buf || n == 0));
  if (be->device == NDL_DEV_CPU) return ndl_dist_allreduce_sum(d, buf, n, what);
  if (d->nccl) return ndl_dist_nccl_collective(d, be, NDL_DIST_SUM_F32, buf, n, 0, what, 0);
  if (d->world == 1 || n == 0) return NDL_OK;
  size_t bytes = (size_t)n * sizeof(float);
  float *h = stage(d, bytes, what);
  if (!h) return NDL_ERR_NOMEM;
  be->copy(h, buf, bytes, NDL_COPY_D2H);
  be->sync();
  ndl_status st = ndl_dist_allreduce_sum(d, h, n, what);
  if (st != NDL_OK) return st;
  be->copy(buf, h, bytes, NDL_COPY_H2D);
  be->sync(); /* the staging buffer is free again on return */
  return NDL_OK;
}

ndl_status ndl_dist_broadcast_dev(ndl_dist *d, const ndl_backend *be, void *buf, int64_t bytes, int root,
                                  const char *what) {
  NDL_ASSERT(d && be && what && bytes >= 0 && (buf || bytes == 0));
  if (be->device == NDL_DEV_CPU) return ndl_dist_broadcast(d, buf, bytes, root, what);
  if (root < 0 || root >= d->world)
    return ndl_errorf(NDL_ERR_ARG, "%s: broadcast root %d outside 0..%d", what, root, d->world - 1);
  if (d->nccl) return ndl_dist_nccl_collective(d, be, NDL_DIST_BCAST, buf, bytes, root, what, 0);
  if (d->world == 1 || bytes == 0) return NDL_OK;
  void *h = stage(d, (size_t)bytes, what);
  if (!h) return NDL_ERR_NOMEM;
  be->copy(h, buf, (size_t)bytes, NDL_COPY_D2H);
  be->sync();
  ndl_status st = ndl_dist_broadcast(d, h, bytes, root, what);
  if (st != NDL_OK) return st;
  be->copy(buf, h, (size_t)bytes, NDL_COPY_H2D);
  be->sync();
  return NDL_OK;
}
