/* device_select.c: which backend computes (--device: cuda when the build has CUDA and a GPU is
 * visible, else cpu), which GPU a rank binds (local rank mod visible GPUs), and how device buffers
 * are all-reduced (--collectives: nccl when NCCL is built and each rank of the node has its own GPU,
 * host-staged mpi when ranks share one). Every refusal is a usage error naming the option.
 * Leaves out: the collectives themselves (dist/dist_device.h). */
#include "launch/device_select.h"

#include <stdio.h>

#include "dist/dist_device.h"

/* The CPU run: --collectives nccl and --cuda-graph cannot apply (why: the reason there is no GPU). */
static ndl_status on_cpu(ndl_train_config *c, const char *why, const ndl_backend **backend) {
  if (c->collectives == NDL_COLL_NCCL)
    return ndl_errorf(NDL_ERR_ARG, "--collectives nccl: the run is on the CPU (%s); NCCL all-reduces GPU buffers", why);
  if (c->cuda_graph)
    return ndl_errorf(NDL_ERR_ARG, "--cuda-graph: the run is on the CPU (%s); it replays a CUDA step", why);
  c->device = NDL_DEVICE_CPU;
  c->collectives = NDL_COLL_MPI;
  *backend = ndl_backend_for(NDL_DEV_CPU);
  return NDL_OK;
}

ndl_status ndl_device_resolve(ndl_train_config *c, ndl_dist *d, const ndl_backend **backend) {
  *backend = NULL;
  if (c->device == NDL_DEVICE_CPU) return on_cpu(c, "--device cpu", backend);
  int gpus = ndl_dist_gpu_count();
  const char *why = NULL;
  char bind_err[256];
  if (gpus > 0 && ndl_dist_gpu_bind(d, gpus) != NDL_OK) {
    snprintf(bind_err, sizeof bind_err, "%s", ndl_last_error()); /* the next ndl_errorf reuses its buffer */
    why = bind_err;
  }
  const ndl_backend *be = why ? NULL : ndl_backend_cuda(&why);
  if (!be) {
    if (!why) why = "no CUDA backend";
    if (c->device == NDL_DEVICE_CUDA) return ndl_errorf(NDL_ERR_ARG, "--device cuda: %s; use --device cpu", why);
    return on_cpu(c, why, backend); /* the default falls back to the CPU */
  }
  c->device = NDL_DEVICE_CUDA;
  *backend = be;
  int local = ndl_dist_local_size(d), world = ndl_dist_world(d), shared = local > gpus;
  if (c->collectives == NDL_COLL_NCCL) {
    if (!ndl_dist_nccl_built())
      return ndl_errorf(NDL_ERR_ARG, "--collectives nccl: this build has no NCCL (NDL_NCCL=OFF); use --collectives mpi");
    if (shared)
      return ndl_errorf(NDL_ERR_ARG, "--collectives nccl: %d ranks on this node share %d GPU(s), and NCCL needs "
                        "a GPU per rank; use --collectives mpi", local, gpus);
  } else if (c->collectives == NDL_COLL_AUTO) {
    c->collectives = world > 1 && ndl_dist_nccl_built() && !shared ? NDL_COLL_NCCL : NDL_COLL_MPI;
    c->collectives_auto = c->collectives == NDL_COLL_NCCL;
  }
  return NDL_OK;
}
