/* trainer.h: one training run of ndl-train: data, model, optimizer, the shared RNG stream, the step
 * loop, evaluation and the running metrics of the current epoch (everything a checkpoint holds). */
#ifndef NDL_TRAINER_H
#define NDL_TRAINER_H

#include <stdio.h>

#include "core/rng.h"
#include "core/tensor.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "dist/dist.h"
#include "dist/step_watchdog.h"
#include "launch/config.h"
#include "nn/module.h"
#include "optim/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sums behind an epoch's metrics; loss_sum is sum of loss_b * B_b. */
typedef struct ndl_epoch_metrics {
  double loss_sum;
  int64_t errors, seen;
  double seconds;
  double allreduce_seconds; /* time in the gradient all-reduce (0 on one process) */
} ndl_epoch_metrics;

typedef struct ndl_trainer {
  ndl_train_config cfg;
  ndl_dist *dist; /* borrowed process group */
  int rank, world;
  ndl_rng rng; /* the one stream: init, shuffle, augmentation, dropout */
  ndl_dataset train, test;
  ndl_loader *loader;
  ndl_nn_env env;
  ndl_module *model;
  ndl_optim *opt;
  ndl_ctx *ctx;
  int64_t step;          /* optimizer steps taken */
  int64_t epoch;         /* current 0-based epoch */
  int in_epoch;          /* 1 between an epoch's start and its end */
  ndl_epoch_metrics cur; /* the current epoch's training sums */
  FILE *log;             /* --log, or NULL */
  ndl_watchdog *wd;      /* borrowed step watchdog (phases, heartbeats), or NULL */
  struct ndl_profile *prof; /* borrowed --profile timer (the watchdog forwards the phases), or NULL */
  const struct ndl_backend *backend; /* computes the step: the CPU's, or the GPU's with --device cuda */
  struct ndl_device_data *dev;       /* device backend: data sets and batch in its memory; else NULL */
  struct ndl_step_graph *graph;      /* --cuda-graph: the captured step, or NULL */
} ndl_trainer;

/* Why a call stopped: finished the epoch, or hit --max-steps. */
typedef enum { NDL_EPOCH_DONE = 0, NDL_EPOCH_STOPPED = 1 } ndl_epoch_end;

/* Seed, build model and optimizer (data is loaded only when load_data). Status + message on error.
 * No collective runs here, so a failure can be agreed on afterwards (ndl_trainer_agree). */
ndl_status ndl_trainer_init(ndl_trainer *t, const ndl_train_config *cfg, ndl_dist *dist, int load_data);
/* The same with the step computed on backend be (borrowed; ndl_trainer_init takes the CPU's, or the
 * CUDA one for --device cuda): a test runs the device path on a stand-in device backend. */
struct ndl_backend;
ndl_status ndl_trainer_init_on(ndl_trainer *t, const ndl_train_config *cfg, ndl_dist *dist, int load_data,
                               const struct ndl_backend *be);
/* Startup check across ranks (parameter count, layout hash, hyper-parameters, data sizes), then
 * parameters, buffers and optimizer state broadcast from rank 0, and with --resume rank 0's resume
 * state (ndl_trainer_sync_resume). NDL_ERR_DIST on a mismatch. */
ndl_status ndl_trainer_sync_start(ndl_trainer *t);
void ndl_trainer_free(ndl_trainer *t);
/* Run (the rest of) the current epoch; *end says whether --max-steps stopped it. NDL_ERR_NUMERIC
 * names the step when the loss is NaN/Inf. */
ndl_status ndl_trainer_run_epoch(ndl_trainer *t, ndl_epoch_end *end);
/* Error rate and per-sample mean loss of the model in eval mode over a dataset. */
ndl_status ndl_trainer_evaluate(ndl_trainer *t, const ndl_dataset *ds, double *err, double *loss);

#ifdef __cplusplus
}
#endif
#endif
