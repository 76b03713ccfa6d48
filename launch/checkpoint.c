/* checkpoint.c: writing and restoring ndl-train's full state. The file is a safetensors
 * state_dict plus "_ndl.*" entries (optimizer state, RNG and loader cursor as raw bytes of this
 * build) and "ndl.*" metadata (counters, epoch sums, and the setup a resume must match). */
#include "launch/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launch/weights.h"

#define MAX_META 24

ndl_status ndl_checkpoint_prepare_dir(const char *dir) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return ndl_errorf(NDL_ERR_IO, "%s: cannot create checkpoint directory: %s", dir, strerror(errno));
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return ndl_errorf(NDL_ERR_IO, "%s: not a directory", dir);
  if (access(dir, W_OK | X_OK) != 0)
    return ndl_errorf(NDL_ERR_IO, "%s: checkpoint directory is not writable: %s", dir, strerror(errno));
  return NDL_OK;
}

int ndl_trainer_checkpoint_due(const ndl_trainer *t) {
  return t->cfg.checkpoint_dir && t->cfg.checkpoint_every && t->step % t->cfg.checkpoint_every == 0;
}

/* The setup a checkpoint must be resumed with: anything that changes shapes or the step semantics. */
static void setup_meta(const ndl_trainer *t, ndl_st_meta *m, int *n) {
  const ndl_train_config *c = &t->cfg;
  char dims[128] = "";
  for (int i = 0; i < c->n_hidden_dims; i++)
    snprintf(dims + strlen(dims), sizeof dims - strlen(dims), i ? ",%lld" : "%lld", (long long)c->hidden_dims[i]);
  snprintf(m[*n].key, sizeof m[*n].key, "ndl.setup.model");
  snprintf(m[(*n)++].value, sizeof m->value, "%d/%lld/%d/%d/%s/%d", (int)c->model, (long long)c->hidden_dim,
           c->blocks, c->norm, c->model == NDL_MODEL_MLP ? dims : "-", c->classes);
  snprintf(m[*n].key, sizeof m[*n].key, "ndl.setup.optimizer");
  snprintf(m[(*n)++].value, sizeof m->value, "%s", ndl_optim_name(t->opt));
  snprintf(m[*n].key, sizeof m[*n].key, "ndl.setup.data");
  snprintf(m[(*n)++].value, sizeof m->value, "n=%lld batch=%lld shuffle=%d augment=%d needle=%d",
           (long long)t->train.n, (long long)c->batch_size, c->shuffle, c->augment, c->needle_compat);
}

static void put(ndl_st_meta *m, int *n, const char *key, const char *fmt, double v) {
  snprintf(m[*n].key, sizeof m[*n].key, "%s", key);
  snprintf(m[*n].value, sizeof m[*n].value, fmt, v);
  (*n)++;
}

static void puti(ndl_st_meta *m, int *n, const char *key, int64_t v) {
  snprintf(m[*n].key, sizeof m[*n].key, "%s", key);
  snprintf(m[*n].value, sizeof m[*n].value, "%" PRId64, v);
  (*n)++;
}

static void add_blob(ndl_st_entry *e, const char *name, ndl_st_dtype dt, const void *data, int64_t nbytes,
                     int64_t count) {
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->dtype = dt;
  e->ndim = 1;
  e->shape[0] = count;
  e->data = data;
  e->nbytes = nbytes;
}

/* Remove checkpoints older than the two newest. */
static void prune(const char *dir, int64_t newest) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  int64_t keep_from = newest;
  /* find the second newest */
  int64_t second = -1;
  while ((de = readdir(d))) {
    long long s;
    if (sscanf(de->d_name, "ckpt-%lld.safetensors", &s) == 1 && s < newest && s > second) second = s;
  }
  if (second >= 0) keep_from = second;
  rewinddir(d);
  while ((de = readdir(d))) {
    long long s;
    char tail[8];
    if (sscanf(de->d_name, "ckpt-%lld.safetensors%1s", &s, tail) == 1 && s < keep_from) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      unlink(path);
    }
  }
  closedir(d);
}

static ndl_status write_checkpoint(ndl_trainer *t);

ndl_status ndl_trainer_checkpoint(ndl_trainer *t) {
  /* rank 0's write and fsync may take IO_FACTOR x --timeout (its step watchdog's limit); the others
   * wait for the outcome 5 s longer, so a stuck write is reported by rank 0 as a stall there */
  ndl_watchdog_phase(t->wd, NDL_PHASE_CKPT_WRITE, t->step, t->epoch + (t->in_epoch ? 1 : 0));
  ndl_status st = t->rank == 0 ? write_checkpoint(t) : NDL_OK;
  if (t->world == 1) return st;
  ndl_dist_set_next_deadline(t->dist, ndl_phase_allowance(NDL_PHASE_CKPT_WRITE, t->cfg.timeout) + 5.0);
  /* rank 0 writes; every rank learns whether it worked */
  struct {
    int32_t status;
    char message[500];
  } outcome = {st, ""};
  if (st != NDL_OK) snprintf(outcome.message, sizeof outcome.message, "%s", ndl_last_error());
  ndl_status bs = ndl_dist_broadcast(t->dist, &outcome, sizeof outcome, 0, "checkpoint status broadcast");
  if (bs != NDL_OK) return bs;
  if (outcome.status != NDL_OK) return ndl_errorf((ndl_status)outcome.status, "%s", outcome.message);
  return NDL_OK;
}

static ndl_status write_checkpoint(ndl_trainer *t) {
  ndl_st_entry *weights = NULL;
  void *scratch = NULL;
  int nw = ndl_weights_entries(&t->env, &weights, &scratch);
  if (nw < 0) return NDL_ERR_NOMEM;
  ndl_st_entry *all = ndl_malloc((size_t)(nw + 3) * sizeof *all);
  if (!all) {
    ndl_free(scratch);
    return ndl_errorf(NDL_ERR_NOMEM, "out of memory writing a checkpoint");
  }
  memcpy(all, weights, (size_t)nw * sizeof *all);
  int64_t state_n = 0;
  const float *state = ndl_optim_state(t->opt, &state_n);
  ndl_loader_cursor cur;
  ndl_loader_cursor_get(t->loader, &cur);
  int n = nw;
  add_blob(&all[n++], "_ndl.optim.state", NDL_ST_F32, state, state_n * 4, state_n);
  add_blob(&all[n++], "_ndl.rng", NDL_ST_U8, &t->rng, sizeof t->rng, sizeof t->rng);
  add_blob(&all[n++], "_ndl.cursor", NDL_ST_U8, &cur, sizeof cur, sizeof cur);
  ndl_st_meta meta[MAX_META];
  int nm = 0;
  puti(meta, &nm, "ndl.step", t->step);
  puti(meta, &nm, "ndl.epoch", t->epoch);
  puti(meta, &nm, "ndl.in_epoch", t->in_epoch);
  puti(meta, &nm, "ndl.optim_t", ndl_optim_step_count(t->opt));
  put(meta, &nm, "ndl.loss_sum", "%.17g", t->cur.loss_sum);
  puti(meta, &nm, "ndl.errors", t->cur.errors);
  puti(meta, &nm, "ndl.seen", t->cur.seen);
  put(meta, &nm, "ndl.seconds", "%.17g", t->cur.seconds);
  setup_meta(t, meta, &nm);
  char path[4096];
  snprintf(path, sizeof path, "%s/ckpt-%010lld.safetensors", t->cfg.checkpoint_dir, (long long)t->step);
  ndl_status st = ndl_safetensors_write(path, all, n, meta, nm);
  ndl_free(all);
  ndl_free(scratch); /* owns the weight entries too */
  if (st == NDL_OK) prune(t->cfg.checkpoint_dir, t->step);
  return st;
}

static int64_t meta_int(const ndl_st_file *f, const char *key, int *ok) {
  const char *v = ndl_safetensors_meta(f, key);
  char *end;
  if (!v) {
    *ok = 0;
    return 0;
  }
  long long x = strtoll(v, &end, 10);
  if (*end) *ok = 0;
  return x;
}

static double meta_real(const ndl_st_file *f, const char *key, int *ok) {
  const char *v = ndl_safetensors_meta(f, key);
  char *end;
  if (!v) {
    *ok = 0;
    return 0;
  }
  double x = strtod(v, &end);
  if (*end) *ok = 0;
  return x;
}

/* Validate and apply one checkpoint file. */
static ndl_status restore_from(ndl_trainer *t, const char *path, const ndl_st_file *f) {
  ndl_st_meta want[8];
  int nw = 0;
  setup_meta(t, want, &nw);
  for (int i = 0; i < nw; i++) {
    const char *have = ndl_safetensors_meta(f, want[i].key);
    if (!have || strcmp(have, want[i].value) != 0)
      return ndl_errorf(NDL_ERR_MISMATCH, "%s: checkpoint %s is '%s', this run has '%s'", path,
                        want[i].key + 10, have ? have : "(missing)", want[i].value);
  }
  int ok = 1;
  int64_t step = meta_int(f, "ndl.step", &ok), epoch = meta_int(f, "ndl.epoch", &ok);
  int64_t in_epoch = meta_int(f, "ndl.in_epoch", &ok), opt_t = meta_int(f, "ndl.optim_t", &ok);
  ndl_epoch_metrics cur = {meta_real(f, "ndl.loss_sum", &ok), meta_int(f, "ndl.errors", &ok),
                           meta_int(f, "ndl.seen", &ok), meta_real(f, "ndl.seconds", &ok), 0.0};
  const ndl_st_entry *st_e = ndl_safetensors_find(f, "_ndl.optim.state");
  const ndl_st_entry *rng_e = ndl_safetensors_find(f, "_ndl.rng");
  const ndl_st_entry *cur_e = ndl_safetensors_find(f, "_ndl.cursor");
  if (!ok || !st_e || !rng_e || !cur_e || st_e->dtype != NDL_ST_F32 || rng_e->nbytes != (int64_t)sizeof(ndl_rng) ||
      cur_e->nbytes != (int64_t)sizeof(ndl_loader_cursor))
    return ndl_errorf(NDL_ERR_FORMAT, "%s: not an ndl-train checkpoint of this build (training state missing)",
                      path);
  ndl_status s = ndl_weights_load_from(f, path, &t->env);
  if (s != NDL_OK) return s;
  if ((s = ndl_optim_load_state(t->opt, st_e->data, st_e->nbytes / 4, opt_t)) != NDL_OK)
    return ndl_errorf(s, "%s: optimizer state: %s", path, ndl_last_error());
  ndl_loader_cursor c;
  memcpy(&c, cur_e->data, sizeof c);
  if (t->loader && (s = ndl_loader_cursor_set(t->loader, &c)) != NDL_OK) /* no loader: --eval-only */
    return ndl_errorf(s, "%s: data position: %s", path, ndl_last_error());
  memcpy(&t->rng, rng_e->data, sizeof t->rng);
  t->step = step;
  t->epoch = epoch;
  t->in_epoch = (int)in_epoch;
  t->cur = cur;
  return NDL_OK;
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x < y) - (x > y);
}

ndl_status ndl_trainer_resume(ndl_trainer *t, const char *dir) {
  ndl_watchdog_phase(t->wd, NDL_PHASE_CKPT_READ, 0, 0);
  DIR *d = opendir(dir);
  if (!d) return ndl_errorf(NDL_ERR_IO, "%s: cannot open checkpoint directory: %s", dir, strerror(errno));
  int64_t steps[4096];
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < 4096) {
    long long s;
    char tail[8];
    if (sscanf(de->d_name, "ckpt-%lld.safetensors%1s", &s, tail) == 1) steps[n++] = s;
  }
  closedir(d);
  qsort(steps, (size_t)n, sizeof steps[0], cmp_desc);
  char first_err[512] = "";
  for (int i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ckpt-%010lld.safetensors", dir, (long long)steps[i]);
    ndl_st_file f;
    ndl_status s = ndl_safetensors_read(path, &f);
    if (s == NDL_OK) {
      s = restore_from(t, path, &f);
      ndl_safetensors_free(&f);
      if (s == NDL_OK || s == NDL_ERR_MISMATCH) return s;
    }
    if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", ndl_last_error());
  }
  if (first_err[0]) return ndl_errorf(NDL_ERR_FORMAT, "%s: no usable checkpoint (%s)", dir, first_err);
  return ndl_errorf(NDL_ERR_IO, "%s: no checkpoint found (expected ckpt-<step>.safetensors)", dir);
}
