/* checkpoint.c: writing and restoring ndl-train's full state. The file is a safetensors state_dict
 * plus "_ndl.*" entries (optimizer state; the MT19937 words of the shared RNG and of the loader's
 * epoch-start RNG) and "ndl.*" metadata: format, counters, epoch sums, RNG positions, loader cursor
 * and the setup a resume must match. A resume validates every field, and their consistency with each
 * other and with the data, before it changes anything; a bad file is NDL_ERR_FORMAT naming the field. */
#include "launch/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/checkpoint_dir.h"
#include "launch/weights.h"

#define MAX_META 40
#define CKPT_FORMAT "ndl-train checkpoint 2"

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

/* An RNG as named metadata: PREFIX.pos, PREFIX.has_gauss, PREFIX.gauss (the words are an entry). */
static void put_rng(ndl_st_meta *m, int *n, const char *prefix, const ndl_rng *r) {
  char key[64];
  snprintf(key, sizeof key, "%s.pos", prefix);
  puti(m, n, key, r->pos);
  snprintf(key, sizeof key, "%s.has_gauss", prefix);
  puti(m, n, key, r->has_gauss);
  snprintf(key, sizeof key, "%s.gauss", prefix);
  put(m, n, key, "%.17g", r->gauss);
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
  add_blob(&all[n++], "_ndl.rng.mt", NDL_ST_U32, t->rng.mt, sizeof t->rng.mt, NDL_RNG_N);
  add_blob(&all[n++], "_ndl.cursor.rng.mt", NDL_ST_U32, cur.epoch_rng.mt, sizeof cur.epoch_rng.mt, NDL_RNG_N);
  ndl_st_meta meta[MAX_META];
  int nm = 0;
  snprintf(meta[nm].key, sizeof meta[nm].key, "ndl.format");
  snprintf(meta[nm++].value, sizeof meta->value, CKPT_FORMAT);
  puti(meta, &nm, "ndl.step", t->step);
  puti(meta, &nm, "ndl.epoch", t->epoch);
  puti(meta, &nm, "ndl.in_epoch", t->in_epoch);
  puti(meta, &nm, "ndl.optim_t", ndl_optim_step_count(t->opt));
  put(meta, &nm, "ndl.loss_sum", "%.17g", t->cur.loss_sum);
  puti(meta, &nm, "ndl.errors", t->cur.errors);
  puti(meta, &nm, "ndl.seen", t->cur.seen);
  put(meta, &nm, "ndl.seconds", "%.17g", t->cur.seconds);
  put_rng(meta, &nm, "ndl.rng", &t->rng);
  puti(meta, &nm, "ndl.cursor.epochs_begun", cur.epochs_begun);
  puti(meta, &nm, "ndl.cursor.next_batch", cur.next_batch);
  puti(meta, &nm, "ndl.cursor.in_epoch", cur.in_epoch);
  put_rng(meta, &nm, "ndl.cursor.rng", &cur.epoch_rng);
  setup_meta(t, meta, &nm);
  NDL_ASSERT(nm <= MAX_META);
  char path[4096];
  snprintf(path, sizeof path, "%s/ckpt-%010lld.safetensors", t->cfg.checkpoint_dir, (long long)t->step);
  ndl_status st = ndl_safetensors_write(path, all, n, meta, nm);
  ndl_free(all);
  ndl_free(scratch); /* owns the weight entries too */
  if (st == NDL_OK) ndl_ckpt_prune(t->cfg.checkpoint_dir, t->step);
  return st;
}

/* ------------------------------------------------------------------------------------------ reading */

/* One checkpoint being validated: the first error wins (NDL_ERR_FORMAT naming the file and field). */
typedef struct reader {
  const ndl_st_file *f;
  const char *path;
  ndl_status st;
} reader;

static void bad(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(reader *r, const char *fmt, ...) {
  if (r->st != NDL_OK) return;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->st = ndl_errorf(NDL_ERR_FORMAT, "%s: %s", r->path, msg);
}

/* Metadata value of key, or NULL after recording "missing". */
static const char *meta_str(reader *r, const char *key) {
  const char *v = ndl_safetensors_meta(r->f, key);
  if (!v) bad(r, "%s is missing", key);
  return v;
}

/* Integer metadata in [lo, hi]: decimal digits with an optional '-', nothing else. */
static int64_t meta_int(reader *r, const char *key, int64_t lo, int64_t hi) {
  const char *v = meta_str(r, key);
  if (!v) return lo;
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  int digits = (v[0] == '-' ? v[1] : v[0]) >= '0' && (v[0] == '-' ? v[1] : v[0]) <= '9';
  if (!digits || *end || errno == ERANGE || x < lo || x > hi) {
    char esc[NDL_ST_ESCAPED(64)];
    bad(r, "%s is '%s', expected an integer in %lld..%lld", key, ndl_st_escape(v, esc, sizeof esc), (long long)lo,
        (long long)hi);
    return lo;
  }
  return x;
}

/* Finite real metadata (>= 0 when nonneg). */
static double meta_real(reader *r, const char *key, int nonneg) {
  const char *v = meta_str(r, key);
  if (!v) return 0.0;
  char *end;
  double x = strtod(v, &end);
  if (!v[0] || *end || !isfinite(x) || (nonneg && x < 0)) {
    char esc[NDL_ST_ESCAPED(64)];
    bad(r, "%s is '%s', expected a finite number%s", key, ndl_st_escape(v, esc, sizeof esc),
        nonneg ? " >= 0" : "");
    return 0.0;
  }
  return x;
}

/* A 1-D entry of dtype dt and count elements (any count when count < 0), or NULL after an error. */
static const ndl_st_entry *vec(reader *r, const char *name, ndl_st_dtype dt, int64_t count) {
  const ndl_st_entry *e = ndl_safetensors_find(r->f, name);
  if (!e) {
    bad(r, "tensor %s is missing", name);
    return NULL;
  }
  if (e->dtype != dt || e->ndim != 1 || (count >= 0 && e->shape[0] != count)) {
    bad(r, "tensor %s is %s with %d dims (first %lld), expected %s [%lld]", name, ndl_st_dtype_name(e->dtype),
        e->ndim, e->ndim ? (long long)e->shape[0] : 0LL, ndl_st_dtype_name(dt), (long long)count);
    return NULL;
  }
  return e;
}

/* An RNG from PREFIX.* metadata and the words of entry `words`, validated (ndl_rng_set_state). */
static void read_rng(reader *r, const char *prefix, const char *words, ndl_rng *out) {
  char key[3][64];
  snprintf(key[0], sizeof key[0], "%s.pos", prefix);
  snprintf(key[1], sizeof key[1], "%s.has_gauss", prefix);
  snprintf(key[2], sizeof key[2], "%s.gauss", prefix);
  int64_t pos = meta_int(r, key[0], 0, NDL_RNG_N), has = meta_int(r, key[1], 0, 1);
  double gauss = meta_real(r, key[2], 0);
  const ndl_st_entry *e = vec(r, words, NDL_ST_U32, NDL_RNG_N);
  if (r->st != NDL_OK) return;
  uint32_t mt[NDL_RNG_N];
  memcpy(mt, e->data, sizeof mt); /* the blob may be unaligned */
  if (ndl_rng_set_state(out, mt, pos, has, gauss) != NDL_OK) bad(r, "%s: %s", prefix, ndl_last_error());
}

/* Everything a checkpoint restores, read and validated. */
typedef struct saved {
  int64_t step, epoch, in_epoch, optim_t;
  ndl_epoch_metrics cur;
  ndl_rng rng;
  ndl_loader_cursor cursor;
  const float *optim_state; /* unaligned bytes in the file's blob */
  int64_t optim_n;
} saved;

static void read_fields(reader *r, ndl_trainer *t, saved *s) {
  memset(s, 0, sizeof *s);
  s->step = meta_int(r, "ndl.step", 0, NDL_CKPT_MAX_STEP);
  s->epoch = meta_int(r, "ndl.epoch", 0, NDL_CKPT_MAX_STEP);
  s->in_epoch = meta_int(r, "ndl.in_epoch", 0, 1);
  s->optim_t = meta_int(r, "ndl.optim_t", 0, NDL_CKPT_MAX_STEP);
  s->cur.loss_sum = meta_real(r, "ndl.loss_sum", 0);
  s->cur.seen = meta_int(r, "ndl.seen", 0, INT64_MAX);
  s->cur.errors = meta_int(r, "ndl.errors", 0, INT64_MAX);
  s->cur.seconds = meta_real(r, "ndl.seconds", 1);
  read_rng(r, "ndl.rng", "_ndl.rng.mt", &s->rng);
  ndl_loader_cursor *c = &s->cursor;
  c->epochs_begun = meta_int(r, "ndl.cursor.epochs_begun", 0, NDL_CKPT_MAX_STEP);
  c->next_batch = meta_int(r, "ndl.cursor.next_batch", 0, INT64_MAX);
  c->in_epoch = (int32_t)meta_int(r, "ndl.cursor.in_epoch", 0, 1);
  read_rng(r, "ndl.cursor.rng", "_ndl.cursor.rng.mt", &c->epoch_rng);
  int64_t want_n = 0;
  ndl_optim_state(t->opt, &want_n);
  const ndl_st_entry *e = vec(r, "_ndl.optim.state", NDL_ST_F32, -1);
  if (e && e->shape[0] != want_n)
    bad(r, "optimizer state has %lld values, the %s optimizer of this model needs %lld", (long long)e->shape[0],
        ndl_optim_name(t->opt), (long long)want_n);
  if (r->st != NDL_OK) return;
  s->optim_state = (const float *)e->data;
  s->optim_n = want_n;
  for (int64_t i = 0; i < want_n; i++) {
    float x;
    memcpy(&x, (const unsigned char *)e->data + 4 * i, 4);
    if (!isfinite(x)) {
      bad(r, "optimizer state value %lld is not finite", (long long)i);
      return;
    }
  }
}

/* The counters against each other and the cursor against the data: the state of a run after `step`
 * steps of ceil(n/B) per epoch, either within an epoch or just after one. */
static void check_consistent(reader *r, const ndl_trainer *t, saved *s) {
  if (s->optim_t != s->step)
    bad(r, "ndl.optim_t %lld differs from ndl.step %lld (one optimizer step per training step)",
        (long long)s->optim_t, (long long)s->step);
  if (s->cur.errors > s->cur.seen)
    bad(r, "ndl.errors %lld exceeds ndl.seen %lld", (long long)s->cur.errors, (long long)s->cur.seen);
  ndl_loader_cursor *c = &s->cursor;
  if (c->in_epoch != s->in_epoch)
    bad(r, "ndl.cursor.in_epoch %d differs from ndl.in_epoch %lld", (int)c->in_epoch, (long long)s->in_epoch);
  if (r->st != NDL_OK || !t->loader) return;
  int64_t n = t->train.n, b = t->cfg.batch_size, nb = ndl_loader_num_batches(t->loader);
  c->n = n;
  c->batch_size = b;
  c->shuffle = t->cfg.shuffle;
  /* within epoch E after k >= 1 batches: E*nb + k steps, E+1 epochs begun; after epoch E-1 (E >= 1):
   * E*nb steps, E begun, the cursor at the end */
  int64_t k = s->in_epoch ? c->next_batch : nb; /* batches done in the epoch of the cursor */
  int64_t begun = s->in_epoch ? s->epoch + 1 : s->epoch;
  if (s->in_epoch ? (k < 1 || k > nb) : (s->epoch < 1 || c->next_batch != nb)) {
    bad(r,
        "ndl.cursor.next_batch %lld with ndl.in_epoch %lld and ndl.epoch %lld, expected %s (%lld batches per "
        "epoch)",
        (long long)c->next_batch, (long long)s->in_epoch, (long long)s->epoch,
        s->in_epoch ? "1..batches" : "the end of an epoch >= 1", (long long)nb);
    return;
  }
  int64_t whole = s->step - (s->in_epoch ? k : 0), seen = k * b < n ? k * b : n; /* k <= nb: no overflow */
  if (c->epochs_begun != begun)
    bad(r, "ndl.cursor.epochs_begun %lld, expected %lld for ndl.epoch %lld", (long long)c->epochs_begun,
        (long long)begun, (long long)s->epoch);
  else if (whole < 0 || whole % nb || whole / nb != s->epoch)
    bad(r, "ndl.step %lld, expected %lld epochs of %lld batches plus %lld", (long long)s->step,
        (long long)s->epoch, (long long)nb, (long long)(s->in_epoch ? k : 0));
  else if (s->cur.seen != seen)
    bad(r, "ndl.seen %lld, expected %lld samples for batch %lld of %lld", (long long)s->cur.seen, (long long)seen,
        (long long)k, (long long)nb);
}

/* Validate one checkpoint file completely, then apply it (nothing changes when it is refused). */
static ndl_status restore_from(ndl_trainer *t, const char *path, const ndl_st_file *f) {
  const char *format = ndl_safetensors_meta(f, "ndl.format");
  if (!format || strcmp(format, CKPT_FORMAT) != 0) {
    char esc[NDL_ST_ESCAPED(64)];
    return ndl_errorf(NDL_ERR_FORMAT,
                      "%s: not an ndl-train checkpoint of this version (ndl.format '%s', expected '%s'; "
                      "checkpoints of older builds cannot be resumed)",
                      path, format ? ndl_st_escape(format, esc, sizeof esc) : "(missing)", CKPT_FORMAT);
  }
  ndl_st_meta want[8];
  int nw = 0;
  setup_meta(t, want, &nw);
  for (int i = 0; i < nw; i++) {
    const char *have = ndl_safetensors_meta(f, want[i].key);
    if (!have || strcmp(have, want[i].value) != 0) {
      char esc[NDL_ST_ESCAPED(256)];
      return ndl_errorf(NDL_ERR_MISMATCH, "%s: checkpoint %s is '%s', this run has '%s'", path, want[i].key + 10,
                        have ? ndl_st_escape(have, esc, sizeof esc) : "(missing)", want[i].value);
    }
  }
  reader r = {f, path, NDL_OK};
  saved s;
  read_fields(&r, t, &s);
  if (r.st == NDL_OK) check_consistent(&r, t, &s);
  if (r.st != NDL_OK) return r.st;
  ndl_status st = ndl_weights_load_from(f, path, &t->env); /* validates before it copies */
  if (st != NDL_OK) return st;
  if ((st = ndl_optim_load_state(t->opt, s.optim_state, s.optim_n, s.optim_t)) != NDL_OK) return st;
  if (t->loader && (st = ndl_loader_cursor_set(t->loader, &s.cursor)) != NDL_OK) {
    char why[256];
    snprintf(why, sizeof why, "%s", ndl_last_error());
    return ndl_errorf(st, "%s: data position: %s", path, why);
  }
  t->rng = s.rng;
  t->step = s.step;
  t->epoch = s.epoch;
  t->in_epoch = (int)s.in_epoch;
  t->cur = s.cur;
  return NDL_OK;
}

ndl_status ndl_trainer_resume(ndl_trainer *t, const char *dir) {
  ndl_watchdog_phase(t->wd, NDL_PHASE_CKPT_READ, 0, 0);
  int64_t *steps;
  int n = ndl_ckpt_list(dir, &steps);
  if (n < 0) return ndl_errorf(NDL_ERR_IO, "%s: cannot open checkpoint directory: %s", dir, strerror(errno));
  char first_err[512] = "";
  ndl_status s = NDL_ERR_IO;
  int i;
  for (i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ckpt-%010lld.safetensors", dir, (long long)steps[i]);
    ndl_st_file f;
    s = ndl_safetensors_read(path, &f);
    if (s == NDL_OK) {
      s = restore_from(t, path, &f);
      ndl_safetensors_free(&f);
      if (s == NDL_OK || s == NDL_ERR_MISMATCH) break;
    }
    if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", ndl_last_error());
  }
  int64_t used = i < n ? steps[i] : -1;
  ndl_free(steps);
  if (s == NDL_ERR_MISMATCH) return s;
  if (s == NDL_OK) {
    if (first_err[0] && t->rank == 0) /* a newer file was unusable: say what was lost */
      fprintf(stderr, "ndl-train: warning: --resume: %s; resumed from step %lld\n", first_err, (long long)used);
    return NDL_OK;
  }
  if (first_err[0]) return ndl_errorf(NDL_ERR_FORMAT, "%s: no usable checkpoint (%s)", dir, first_err);
  return ndl_errorf(NDL_ERR_IO, "%s: no checkpoint found (expected ckpt-<10-digit step>.safetensors)", dir);
}
