/* trainer.c: building the run (data, model, optimizer) and the step loop: forward on this rank's
 * slice, softmax loss scaled by the global batch, backward into the flat gradient buffer, optimizer
 * step, metrics; and evaluation in eval mode without a graph. Checkpointing is in checkpoint.c. */
#include "launch/trainer.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "core/autograd.h"
#include "core/ops.h"
#include "launch/checkpoint.h"
#include "launch/progress.h"
#include "nn/models.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static ndl_status build_model(ndl_trainer *t, int64_t input_dim) {
  const ndl_train_config *c = &t->cfg;
  ndl_nn_env_init(&t->env, &t->rng);
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

ndl_status ndl_trainer_init(ndl_trainer *t, const ndl_train_config *cfg, int load_data) {
  memset(t, 0, sizeof *t);
  t->cfg = *cfg;
  t->world = 1;
  ndl_status st;
  if (load_data && !cfg->eval_only) {
    st = ndl_mnist_load(cfg->data_dir, "train", cfg->classes, &t->train);
    if (st != NDL_OK) return st;
  }
  if (load_data) {
    st = ndl_mnist_load(cfg->data_dir, "t10k", cfg->classes, &t->test);
    if (st != NDL_OK) return st;
  }
  int64_t input_dim = 784;
  if (t->train.n) input_dim = ndl_dataset_sample_dim(&t->train);
  else if (t->test.n) input_dim = ndl_dataset_sample_dim(&t->test);
  if (t->train.n && t->test.n && ndl_dataset_sample_dim(&t->test) != input_dim)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: test images have %lld pixels, training images %lld",
                      cfg->data_dir, (long long)ndl_dataset_sample_dim(&t->test), (long long)input_dim);
  if ((st = build_model(t, input_dim)) != NDL_OK) return st;
  t->ctx = ndl_ctx_new();
  if (!t->ctx) return ndl_errorf(NDL_ERR_NOMEM, "out of memory creating the step context");
  if (t->train.n) {
    if (t->train.n < cfg->batch_size)
      return ndl_errorf(NDL_ERR_FORMAT, "%s: %lld training images, fewer than the global batch %lld",
                        cfg->data_dir, (long long)t->train.n, (long long)cfg->batch_size);
    ndl_loader_config lc = {cfg->batch_size, cfg->shuffle, cfg->augment, 1};
    if ((st = ndl_loader_new(&t->train, &lc, &t->rng, &t->loader)) != NDL_OK) return st;
  }
  return NDL_OK;
}

void ndl_trainer_free(ndl_trainer *t) {
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

static ndl_status train_step(ndl_trainer *t, const ndl_batch *b) {
  ndl_ctx *ctx = t->ctx;
  ndl_tensor x;
  int64_t shape[2] = {b->local_count, (int64_t)b->rows * b->cols * b->channels};
  ndl_tensor_init_view(&x, (float *)b->images, 2, shape);
  t->env.global_rows = b->global_count;
  t->env.row_offset = b->local_offset;
  ndl_optim_zero_grad(t->opt);
  ndl_tensor *logits = ndl_module_forward(t->model, ctx, &x);
  ndl_tensor *loss = ndl_nn_softmax_loss(ctx, logits, b->labels, b->global_count);
  if (loss && t->cfg.reg > 0) loss = ndl_add(ctx, loss, ndl_nn_l2_penalty(ctx, t->model, (float)t->cfg.reg));
  if (!loss || ndl_graph_backward(ctx, loss, NULL) != NDL_OK) return ctx->status;
  float lv = ndl_tensor_ptr(loss)[0];
  if (!isfinite(lv))
    return ndl_errorf(NDL_ERR_NUMERIC, "loss became %s at step %lld (epoch %lld, batch %lld)",
                      isnan(lv) ? "NaN" : "Inf", (long long)t->step + 1, (long long)t->epoch + 1,
                      (long long)b->index + 1);
  ndl_optim_step(t->opt);
  t->step++;
  t->cur.loss_sum += (double)lv * (double)b->global_count;
  t->cur.errors += count_errors(logits, b->labels);
  t->cur.seen += b->global_count;
  if (t->log && t->cfg.log_steps)
    fprintf(t->log, "{\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g}\n", (long long)t->step,
            (long long)t->epoch + 1, lv);
  ndl_ctx_reset(ctx);
  return NDL_OK;
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
  int r;
  while ((r = ndl_loader_next(t->loader, t->rank, t->world, &b)) == 1) {
    if ((st = train_step(t, &b)) != NDL_OK) break;
    ndl_progress_update(&bar, b.index + 1, t->cur.seen ? t->cur.loss_sum / t->cur.seen : 0.0);
    if (ndl_trainer_checkpoint_due(t) && (st = ndl_trainer_checkpoint(t)) != NDL_OK) break;
    if (t->cfg.max_steps && t->step >= t->cfg.max_steps) {
      *end = NDL_EPOCH_STOPPED;
      break;
    }
  }
  t->cur.seconds += now_s() - start;
  ndl_progress_end(&bar);
  if (r < 0) st = (ndl_status)r;
  if (st == NDL_OK && *end == NDL_EPOCH_DONE) t->in_epoch = 0;
  return st;
}

ndl_status ndl_trainer_evaluate(ndl_trainer *t, const ndl_dataset *ds, double *err, double *loss) {
  ndl_module_train(t->model, 0);
  int old = ndl_ctx_set_grad(t->ctx, 0);
  int64_t dim = ndl_dataset_sample_dim(ds), bs = t->cfg.batch_size, wrong = 0;
  double loss_sum = 0.0;
  ndl_status st = NDL_OK;
  t->env.global_rows = 0;
  t->env.row_offset = 0;
  for (int64_t start = 0; start < ds->n && st == NDL_OK; start += bs) {
    int64_t n = ds->n - start < bs ? ds->n - start : bs, shape[2] = {n, dim};
    ndl_tensor x;
    ndl_tensor_init_view(&x, ds->images + start * dim, 2, shape);
    ndl_tensor *logits = ndl_module_forward(t->model, t->ctx, &x);
    ndl_tensor *l = ndl_nn_softmax_loss(t->ctx, logits, ds->labels + start, n);
    if (!l) {
      st = t->ctx->status;
      break;
    }
    loss_sum += (double)ndl_tensor_ptr(l)[0] * (double)n;
    wrong += count_errors(logits, ds->labels + start);
    ndl_ctx_reset(t->ctx);
  }
  ndl_ctx_set_grad(t->ctx, old);
  ndl_module_train(t->model, 1);
  *err = ds->n ? (double)wrong / (double)ds->n : 0.0;
  *loss = ds->n ? loss_sum / (double)ds->n : 0.0;
  return st;
}
