/* trainer.c: building the run (data, model, optimizer) and the step loop: forward on this rank's
 * slice, softmax loss scaled by the global batch, backward into the flat gradient buffer, optimizer
 * step, metrics; and evaluation in eval mode without a graph. Checkpointing is in checkpoint.c. */
#include "launch/trainer.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "dist/dist_check.h"
#include "dist/dist_device.h"
#include "dist/step_profile.h"
#include "launch/checkpoint.h"
#include "launch/device_data.h"
#include "launch/jsonlog.h"
#include "launch/progress.h"
#include "launch/resume_sync.h"
#include "launch/step_graph.h"
#include "launch/trainer_device.h"
#include "nn/models.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static ndl_status build_model(ndl_trainer *t, int64_t input_dim) {
  const ndl_train_config *c = &t->cfg;
  /* the parameter stores live on the run's device (a host mirror when that is not the CPU) */
  ndl_nn_env_init_on(&t->env, &t->rng, t->backend->device);
  ndl_rng_seed(&t->rng, c->needle_compat ? 4u : (uint32_t)c->seed);
  if (c->model == NDL_MODEL_MLPRESNET)
    t->model = ndl_nn_mlp_resnet(&t->env, input_dim, c->hidden_dim, c->blocks, c->classes,
                                 (ndl_norm_kind)c->norm, (float)c->drop_prob);
  else
    t->model = ndl_nn_fc_net(&t->env, input_dim, c->n_hidden_dims, c->hidden_dims, c->classes,
                             (ndl_norm_kind)c->norm, (float)c->drop_prob, c->weight_scale);
  if (!t->model) return NDL_ERR_NOMEM;
  switch (c->optimizer) {
    case NDL_OPT_SGD:
      t->opt = ndl_optim_sgd_new(&t->env.params, c->lr, c->momentum, c->weight_decay, c->nesterov);
      break;
    case NDL_OPT_ADAM:
      t->opt = ndl_optim_adam_new(&t->env.params, c->lr, 0.9, 0.999, 1e-8, c->weight_decay);
      break;
    case NDL_OPT_ADAMW:
      t->opt = ndl_optim_adamw_new(&t->env.params, c->lr, 0.9, 0.999, 1e-8, c->weight_decay);
      break;
    case NDL_OPT_RMSPROP:
      t->opt = ndl_optim_rmsprop_new(&t->env.params, c->lr, 0.99, 1e-8, c->weight_decay);
      break;
  }
  return t->opt ? NDL_OK : NDL_ERR_ARG;
}

ndl_status ndl_trainer_init(ndl_trainer *t, const ndl_train_config *cfg, ndl_dist *dist, int load_data) {
  const ndl_backend *be = cfg->device == NDL_DEVICE_CUDA ? ndl_backend_cuda(NULL) : ndl_backend_for(NDL_DEV_CPU);
  if (!be) {
    memset(t, 0, sizeof *t);
    return ndl_errorf(NDL_ERR_ARG, "--device cuda: no CUDA backend");
  }
  return ndl_trainer_init_on(t, cfg, dist, load_data, be);
}

ndl_status ndl_trainer_init_on(ndl_trainer *t, const ndl_train_config *cfg, ndl_dist *dist, int load_data,
                               const ndl_backend *be) {
  memset(t, 0, sizeof *t);
  t->backend = be;
  t->cfg = *cfg;
  t->dist = dist;
  t->rank = dist ? ndl_dist_rank(dist) : 0;
  t->world = dist ? ndl_dist_world(dist) : 1;
  ndl_status st;
  if (load_data && !cfg->eval_only) {
    st = ndl_dataset_load(cfg->data_dir, "train", cfg->classes, &t->train);
    if (st != NDL_OK) return st;
  }
  if (load_data) {
    st = ndl_dataset_load(cfg->data_dir, "t10k", cfg->classes, &t->test);
    if (st != NDL_OK) return st;
  }
  int64_t input_dim = 784;
  if (t->train.n) input_dim = ndl_dataset_sample_dim(&t->train);
  else if (t->test.n) input_dim = ndl_dataset_sample_dim(&t->test);
  if (t->train.n && t->test.n && ndl_dataset_sample_dim(&t->test) != input_dim)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: test images have %lld pixels, training images %lld",
                      cfg->data_dir, (long long)ndl_dataset_sample_dim(&t->test), (long long)input_dim);
  if ((st = build_model(t, input_dim)) != NDL_OK) return st;
  t->ctx = ndl_ctx_new_on(t->backend);
  if (!t->ctx) return ndl_errorf(NDL_ERR_NOMEM, "out of memory creating the step context");
  ndl_status small = t->world > 1 ? NDL_ERR_DIST : NDL_ERR_FORMAT;
  if (cfg->batch_size < t->world)
    return ndl_errorf(NDL_ERR_DIST, "--batch-size %lld is smaller than the %d ranks: every rank needs a sample",
                      (long long)cfg->batch_size, t->world);
  if (t->test.n && t->test.n < t->world)
    return ndl_errorf(small, "%s: %lld test images, fewer than the %d ranks", cfg->data_dir,
                      (long long)t->test.n, t->world);
  if (t->world > 1 && cfg->sync_bn != 0) {
    t->env.sync.host = ndl_dist_allreduce_cb;
    t->env.sync.handle = dist;
  }
  if (t->train.n) {
    if (t->train.n < cfg->batch_size)
      return ndl_errorf(small, "%s: %lld training images, fewer than the global batch %lld", cfg->data_dir,
                        (long long)t->train.n, (long long)cfg->batch_size);
    ndl_loader_config lc = {cfg->batch_size, cfg->shuffle, cfg->augment, 1};
    if ((st = ndl_loader_new(&t->train, &lc, &t->rng, &t->loader)) != NDL_OK) return st;
  }
  return ndl_trainer_device_setup(t); /* --device cuda: data uploaded once; a no-op on the CPU */
}

/* Names, shapes and order of a store, hashed. */
static uint64_t layout_hash(const ndl_params *p, uint64_t h) {
  for (int i = 0; i < p->count; i++) {
    const ndl_tensor *x = p->tensors[i];
    h = ndl_dist_hash(p->names[i], strlen(p->names[i]) + 1, h);
    h = ndl_dist_hash(x->shape, (size_t)x->ndim * sizeof x->shape[0], h);
  }
  return h;
}

ndl_status ndl_trainer_sync_start(ndl_trainer *t) {
  /* NCCL for the device collectives: a collective itself (world 1: a one-rank communicator); every
   * rank gets the same verdict, so when NCCL was only the default choice all fall back together */
  if (t->cfg.collectives == NDL_COLL_NCCL && ndl_dist_nccl_init(t->dist) != NDL_OK) {
    if (!t->cfg.collectives_auto || ndl_dist_broken(t->dist)) return NDL_ERR_DIST;
    ndl_dist_log0(t->dist, "collectives: %s; all-reducing GPU buffers through MPI instead (--collectives mpi)",
                  ndl_last_error());
    t->cfg.collectives = NDL_COLL_MPI;
    t->cfg.collectives_auto = 0;
  }
  /* SyncBN's sums over NCCL too, on the GPU, without the host staging */
  if (t->env.sync.host && ndl_dist_uses_nccl(t->dist)) t->env.sync.device = ndl_dist_allreduce_dev_cb;
  if (t->world == 1) return NDL_OK;
  const ndl_train_config *c = &t->cfg;
  ndl_dist_field f[16];
  int n = 0;
#define FIELD(label, ...) (f[n].name = label, snprintf(f[n].value, sizeof f[n].value, __VA_ARGS__), n++)
  FIELD("parameter count", "%lld/%lld", (long long)t->env.params.numel, (long long)t->env.buffers.numel);
  FIELD("layout hash", "%016llx",
        (unsigned long long)layout_hash(&t->env.buffers, layout_hash(&t->env.params, 0)));
  FIELD("--epochs/--batch-size/--max-steps", "%lld/%lld/%lld", (long long)c->epochs, (long long)c->batch_size,
        (long long)c->max_steps);
  FIELD("--optimizer", "%s", ndl_optim_name(t->opt));
  FIELD("--lr/--momentum/--weight-decay/--nesterov", "%.17g/%.17g/%.17g/%d", c->lr, c->momentum,
        c->weight_decay, c->nesterov);
  FIELD("--drop-prob/--weight-scale/--reg", "%.17g/%.17g/%.17g", c->drop_prob, c->weight_scale, c->reg);
  FIELD("--seed/--needle-compat", "%lld/%d", (long long)c->seed, c->needle_compat);
  FIELD("--no-shuffle/--augment/--sync-bn", "%d/%d/%d", !c->shuffle, c->augment, c->sync_bn != 0);
  FIELD("--checkpoint-every/--timeout", "%lld/%g", (long long)c->checkpoint_every, c->timeout);
  FIELD("--profile", "%d", c->profile); /* its all-gathers run on every rank or none */
  FIELD("data sizes", "train %lld, test %lld", (long long)t->train.n, (long long)t->test.n);
  FIELD("--resume/resume state bytes", "%d/%zu", c->resume != NULL, ndl_resume_state_bytes());
#undef FIELD
  ndl_status st = ndl_dist_check_agree(t->dist, f, n);
  if (st != NDL_OK) return st;
  /* one replica: rank 0's parameters, buffers, optimizer state and counters everywhere */
  if ((st = ndl_trainer_sync_tensors(t)) != NDL_OK) return st;
  /* rank 0 alone read --resume: its counters, RNG and data position everywhere */
  return c->resume ? ndl_trainer_sync_resume(t) : NDL_OK;
}

void ndl_trainer_free(ndl_trainer *t) {
  ndl_trainer_device_free(t);
  ndl_loader_free(t->loader);
  ndl_optim_free(t->opt);
  ndl_module_free(t->model);
  ndl_nn_env_free(&t->env);
  ndl_ctx_free(t->ctx);
  ndl_dataset_free(&t->train);
  ndl_dataset_free(&t->test);
  memset(t, 0, sizeof *t);
}

/* Rows of logits whose argmax (first maximum) differs from the label. */
static int64_t count_errors(const ndl_tensor *logits, const int32_t *labels) {
  int64_t n = logits->shape[0], c = logits->shape[1], wrong = 0;
  const float *z = ndl_tensor_ptr(logits);
  for (int64_t i = 0; i < n; i++) {
    int64_t best = 0;
    for (int64_t j = 1; j < c; j++)
      if (z[i * c + j] > z[i * c + best]) best = j;
    wrong += best != labels[i];
  }
  return wrong;
}

/* One step's inputs for step_nodes (an ndl_step_fn, so that --cuda-graph can capture it). */
typedef struct step_args {
  ndl_trainer *t;
  ndl_tensor *x;
  const int32_t *labels; /* in the backend's memory */
  int64_t global_count;
  int calls;             /* with --cuda-graph: a failed capture builds the step again, eagerly */
  ndl_rng rng;           /* ... from the shared stream as it was before the first build */
} step_args;

/* Forward, loss and backward of one step in ctx. */
static ndl_status step_nodes(void *arg, ndl_ctx *ctx, ndl_tensor **logits_out, ndl_tensor **loss_out) {
  step_args *a = arg;
  ndl_trainer *t = a->t;
  if (t->graph && a->calls++) t->rng = a->rng; /* the draws of a capture that failed are undone */
  else if (t->graph) a->rng = t->rng;
  ndl_watchdog_phase(t->wd, NDL_PHASE_FORWARD, t->step + 1, t->epoch + 1);
  ndl_tensor *logits = ndl_module_forward(t->model, ctx, a->x);
  ndl_tensor *loss = t->dev ? ndl_nn_softmax_loss_sums(ctx, logits, a->labels, a->global_count, t->dev->sums)
                           : ndl_nn_softmax_loss(ctx, logits, a->labels, a->global_count);
  /* the penalty once per global step: on rank 0 only, since losses and gradients are summed over ranks */
  if (loss && t->cfg.reg > 0 && t->rank == 0)
    loss = ndl_add(ctx, loss, ndl_nn_l2_penalty(ctx, t->model, (float)t->cfg.reg));
  ndl_watchdog_phase(t->wd, NDL_PHASE_BACKWARD, t->step + 1, t->epoch + 1);
  if (!loss || ndl_graph_backward(ctx, loss, NULL) != NDL_OK) return ctx->status;
  *logits_out = logits;
  *loss_out = loss;
  return NDL_OK;
}

/* Whether a step's metrics stay on the device until a read (one process on a device backend): no
 * per-step read-back, so the host queues the next steps while the device runs. With more ranks a
 * step waits for its collectives anyway, and the metrics all-reduce needs the values. */
static int keeps_metrics(const ndl_trainer *t) {
  return t->dev && t->world == 1 && !ndl_dist_uses_nccl(t->dist);
}

/* A finished step's loss lv into the epoch sums and --log-steps; NaN/Inf ends the run (exit 6). */
static ndl_status count_step(ndl_trainer *t, float lv, const struct ndl_kept_step *k) {
  if (!isfinite(lv))
    return ndl_errorf(NDL_ERR_NUMERIC, "loss became %s at step %lld (epoch %lld, batch %lld)", isnan(lv) ? "NaN" : "Inf",
                      (long long)k->step, (long long)k->epoch, (long long)k->batch);
  t->cur.loss_sum += (double)lv * (double)k->global_count;
  t->cur.seen += k->global_count;
  if (t->log && t->cfg.log_steps)
    ndl_jsonlog_line(t->log, "{\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g}", (long long)k->step, (long long)k->epoch,
                     lv);
  return NDL_OK;
}

/* Read the steps kept on the device (one read) and count them in order, as they would have been one by one. */
static ndl_status read_kept(ndl_trainer *t) {
  ndl_device_data *dd = t->dev;
  if (!dd || !keeps_metrics(t) || dd->pending == 0) return NDL_OK;
  float losses[NDL_DEVICE_METRICS_WINDOW];
  int64_t wrong = 0, n = dd->pending;
  ndl_device_data_read(dd, losses, &wrong);
  dd->pending = 0;
  t->cur.errors += wrong;
  for (int64_t i = 0; i < n; i++) {
    ndl_status st = count_step(t, losses[i], &dd->kept[i]);
    if (st != NDL_OK) return st;
  }
  return NDL_OK;
}

/* A step's rank-local loss (local sum / global count) and error count, read now, then the gradient
 * all-reduce (NCCL on one rank too: the --collectives nccl check) and the metrics' across ranks. */
static ndl_status step_metrics(ndl_trainer *t, const ndl_batch *b, const ndl_tensor *logits, const ndl_tensor *loss,
                               float metrics[2]) {
  if (t->dev) {
    int64_t wrong = 0;
    ndl_device_data_metrics(t->dev, loss, &metrics[0], &wrong);
    metrics[1] = (float)wrong;
  } else {
    metrics[0] = ndl_tensor_ptr(loss)[0];
    metrics[1] = (float)count_errors(logits, b->labels);
  }
  ndl_watchdog_phase(t->wd, NDL_PHASE_ALLREDUCE, t->step + 1, t->epoch + 1);
  if (t->world == 1 && !ndl_dist_uses_nccl(t->dist)) return NDL_OK;
  double t0 = now_s();
  ndl_status st = ndl_dist_allreduce_sum_dev(t->dist, t->backend, t->env.params.grad, t->env.params.numel,
                                             "grad allreduce");
  t->cur.allreduce_seconds += now_s() - t0;
  if (st == NDL_OK && t->world > 1) st = ndl_dist_allreduce_sum(t->dist, metrics, 2, "metrics allreduce");
  return st;
}

static ndl_status train_step(ndl_trainer *t, const ndl_batch *b) {
  ndl_ctx *ctx = t->ctx;
  ndl_tensor x;
  int64_t shape[2] = {b->local_count, (int64_t)b->rows * b->cols * b->channels};
  step_args a; /* (a.rng is written before it is read: no 2.5 KB clear per step) */
  a.t = t, a.x = &x, a.labels = b->labels, a.global_count = b->global_count, a.calls = 0;
  if (t->dev) { /* the slice gathered on the device from the uploaded set */
    ndl_device_data_batch(t->dev, b, t->cfg.augment);
    ndl_tensor_init_view(&x, t->dev->x, 2, shape);
    x.device = t->backend->device;
    a.labels = t->dev->y;
  } else {
    ndl_tensor_init_view(&x, (float *)b->images, 2, shape);
  }
  t->env.global_rows = b->global_count;
  t->env.row_offset = b->local_offset;
  ndl_optim_zero_grad(t->opt);
  if (t->world > 1) ndl_dist_set_step(t->dist, t->step + 1); /* SyncBN's collectives are this step's too */
  ndl_tensor *logits = NULL, *loss = NULL;
  if (t->graph) ndl_watchdog_phase(t->wd, NDL_PHASE_FORWARD, t->step + 1, t->epoch + 1); /* a replay too */
  if (t->dev && !keeps_metrics(t)) ndl_device_data_sums_zero(t->dev); /* the step's CE adds its error count there */
  ndl_status st = ndl_step_graph_run(t->graph, b->global_count == t->cfg.batch_size, ctx, step_nodes, &a, &logits, &loss);
  if (t->graph && t->graph->off && !t->graph->said && t->cfg.verbose) {
    ndl_dist_log0(t->dist, "--cuda-graph: eager steps: %s", t->graph->why);
    t->graph->said = 1;
  }
  if (st != NDL_OK) return st;
  struct ndl_kept_step k = {t->step + 1, t->epoch + 1, b->index + 1, b->global_count};
  int kept = keeps_metrics(t), full = 0;
  float metrics[2] = {0.0f, 0.0f}; /* loss, errors: summed across ranks (kept: read later, read_kept) */
  if (kept) full = ndl_device_data_keep(t->dev, loss, &k);
  else if ((st = step_metrics(t, b, logits, loss, metrics)) != NDL_OK) return st;
  if (!isfinite(metrics[0])) return count_step(t, metrics[0], &k);
  ndl_watchdog_phase(t->wd, NDL_PHASE_OPTIMIZER, t->step + 1, t->epoch + 1);
  ndl_optim_step(t->opt);
  ndl_profile_enter(t->prof, NDL_PROFILE_OUTSIDE); /* bookkeeping below: "rest" */
  t->step++;
  if (!kept) {
    t->cur.errors += (int64_t)metrics[1];
    st = count_step(t, metrics[0], &k);
  }
  ndl_ctx_reset(ctx);
  if (st == NDL_OK && full) st = read_kept(t);
  return st;
}

ndl_status ndl_trainer_run_epoch(ndl_trainer *t, ndl_epoch_end *end) {
  *end = NDL_EPOCH_DONE;
  if (!t->in_epoch) {
    if (t->cfg.needle_compat) ndl_rng_seed(&t->rng, 4u);
    ndl_loader_epoch_begin(t->loader);
    memset(&t->cur, 0, sizeof t->cur);
    t->in_epoch = 1;
  }
  ndl_module_train(t->model, 1);
  ndl_progress bar;
  ndl_progress_begin(&bar, !t->cfg.quiet && t->rank == 0, t->epoch + 1, t->cfg.epochs,
                     ndl_loader_num_batches(t->loader));
  double start = now_s();
  ndl_batch b;
  ndl_status st = NDL_OK;
  int r = 0;
  /* --max-steps is checked before taking a batch, so a run resumed at or past it takes no step */
  while (!(t->cfg.max_steps && t->step >= t->cfg.max_steps)) {
    ndl_watchdog_phase(t->wd, NDL_PHASE_DATA, t->step + 1, t->epoch + 1);
    if ((r = ndl_loader_next(t->loader, t->rank, t->world, &b)) != 1) break;
    if ((st = train_step(t, &b)) != NDL_OK) break;
    ndl_progress_update(&bar, b.index + 1, t->cur.seen ? t->cur.loss_sum / t->cur.seen : 0.0);
    if (ndl_trainer_checkpoint_due(t) && ((st = read_kept(t)) != NDL_OK || (st = ndl_trainer_checkpoint(t)) != NDL_OK))
      break; /* (a checkpoint never holds a step whose loss was not seen) */
  }
  if (st == NDL_OK) st = read_kept(t); /* the epoch's last kept steps */
  ndl_profile_enter(t->prof, NDL_PROFILE_OUTSIDE); /* the last data phase found no batch */
  if (st == NDL_OK && r >= 0 && t->cfg.max_steps && t->step >= t->cfg.max_steps) *end = NDL_EPOCH_STOPPED;
  t->cur.seconds += now_s() - start;
  ndl_progress_end(&bar);
  if (r < 0) st = (ndl_status)r;
  if (st == NDL_OK && *end == NDL_EPOCH_DONE) t->in_epoch = 0;
  return st;
}

ndl_status ndl_trainer_evaluate(ndl_trainer *t, const ndl_dataset *ds, double *err, double *loss) {
  ndl_module_train(t->model, 0);
  int old = ndl_ctx_set_grad(t->ctx, 0);
  int64_t dim = ndl_dataset_sample_dim(ds), bs = t->cfg.batch_size, first, count;
  double sums[2] = {0.0, 0.0}; /* loss sum, wrong */
  /* on a device backend the test set is the uploaded one (evaluate is only ever given t->test) */
  ndl_device_data *dev = t->dev;
  NDL_ASSERT(!dev || ds == &t->test);
  ndl_status st = NDL_OK;
  t->env.global_rows = 0;
  t->env.row_offset = 0;
  ndl_loader_slice(ds->n, t->rank, t->world, &first, &count); /* this rank's share, no duplicates */
  ndl_watchdog_phase(t->wd, NDL_PHASE_EVAL, t->step, t->epoch + 1);
  for (int64_t start = first; start < first + count && st == NDL_OK; start += bs) {
    int64_t n = first + count - start < bs ? first + count - start : bs, shape[2] = {n, dim};
    ndl_tensor x;
    const int32_t *labels = ds->labels + start;
    if (dev) { /* rows of the uploaded set, in place */
      ndl_tensor_init_view(&x, dev->test_x + start * dim, 2, shape);
      x.device = t->backend->device;
      labels = dev->test_y + start;
    } else {
      ndl_tensor_init_view(&x, ds->images + start * dim, 2, shape);
    }
    if (dev) ndl_device_data_sums_zero(dev);
    ndl_tensor *logits = ndl_module_forward(t->model, t->ctx, &x);
    ndl_tensor *l = dev ? ndl_nn_softmax_loss_sums(t->ctx, logits, labels, n, dev->sums)
                        : ndl_nn_softmax_loss(t->ctx, logits, labels, n);
    if (!l) {
      st = t->ctx->status;
      break;
    }
    if (dev) {
      float lv = 0;
      int64_t wrong = 0;
      ndl_device_data_metrics(dev, l, &lv, &wrong);
      sums[0] += (double)lv * (double)n;
      sums[1] += (double)wrong;
    } else {
      sums[0] += (double)ndl_tensor_ptr(l)[0] * (double)n;
      sums[1] += (double)count_errors(logits, ds->labels + start);
    }
    ndl_ctx_reset(t->ctx);
    ndl_watchdog_beat(t->wd); /* a big test set is many batches, each one progress */
  }
  ndl_ctx_set_grad(t->ctx, old);
  ndl_module_train(t->model, 1);
  if (st == NDL_OK && t->world > 1) st = ndl_dist_allreduce_sum_f64(t->dist, sums, 2, "eval allreduce");
  *err = ds->n ? sums[1] / (double)ds->n : 0.0;
  *loss = ds->n ? sums[0] / (double)ds->n : 0.0;
  return st;
}
