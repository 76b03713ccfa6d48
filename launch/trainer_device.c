/* trainer_device.c: the device side of a training run (--device cuda): the parameters must already
 * live in the backend's memory (the core's parameter store puts them there, with a host mirror for
 * init, --load/--save and checkpoints), the data sets are uploaded once (device_data.c), and
 * --cuda-graph's capture is set up where it can apply: not with SyncBN (its statistics are summed
 * by a collective the step waits for). Dropout masks, drawn on the host, are refilled and uploaded
 * before each replay (launch/step_graph.c).
 * Leaves out: the step itself (trainer.c) and the capture mechanics (step_graph.c). */
#include "launch/trainer_device.h"

#include "launch/device_data.h"
#include "launch/step_graph.h"

ndl_status ndl_trainer_device_setup(ndl_trainer *t) {
  const ndl_backend *be = t->backend;
  if (be->device == NDL_DEV_CPU) return NDL_OK; /* (config.c refuses --cuda-graph with --device cpu) */
  if (t->env.params.device != be->device || t->env.buffers.device != be->device)
    return ndl_errorf(NDL_ERR_ARG, "--device %s: the model's parameters were built in %s memory, and this build's "
                      "core cannot hand them to the %s backend", be->name, ndl_device_name(t->env.params.device),
                      be->name);
  if (!be->gather_batch)
    return ndl_errorf(NDL_ERR_ARG, "--device %s: the backend cannot gather batches on the device", be->name);
  ndl_status st = ndl_device_data_new(be, &t->train, &t->test, t->cfg.batch_size, &t->dev);
  if (st != NDL_OK || !t->cfg.cuda_graph) return st;
  if (!be->graph_begin || !be->graph_end || !be->graph_replay || !be->graph_free)
    return ndl_errorf(NDL_ERR_ARG, "--cuda-graph: the %s backend cannot capture a step", be->name);
  if ((st = ndl_step_graph_new(be, &t->graph)) != NDL_OK) return st;
  if (t->env.sync.host) ndl_step_graph_off(t->graph, "SyncBN sums its batch statistics in a collective");
  return NDL_OK;
}

void ndl_trainer_device_free(ndl_trainer *t) {
  ndl_step_graph_free(t->graph);
  ndl_device_data_free(t->dev);
  t->graph = NULL;
  t->dev = NULL;
}
