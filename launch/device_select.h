/* device_select.h: --device and --collectives resolved once the process group is up (the local
 * rank count and the visible GPUs are known then). */
#ifndef NDL_DEVICE_SELECT_H
#define NDL_DEVICE_SELECT_H

#include "core/backend.h"
#include "dist/dist.h"
#include "launch/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Set c->device to cpu or cuda and c->collectives to mpi or nccl, binding this rank's GPU (local
 * rank mod visible GPUs) first; *backend gets the backend that computes the step. NDL_ERR_ARG (a
 * usage error, exit 2) with one line naming the option when --device cuda finds no GPU or a
 * CPU-only build (the CUDA backend's reason), or --collectives/--cuda-graph cannot apply. */
ndl_status ndl_device_resolve(ndl_train_config *c, ndl_dist *d, const ndl_backend **backend);

#ifdef __cplusplus
}
#endif
#endif
