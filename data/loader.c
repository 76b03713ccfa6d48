/* loader.c: DataLoader with shuffle, rank slices, augmentation and double-buffered prefetch.
 * The prefetch thread only gathers (copies) samples of the next slice into the spare buffer; every
 * RNG draw (permutation, augmentation) happens on the caller's thread inside epoch_begin / next, so
 * the shared stream sees the same draws in the same order with or without prefetch.
 * Leaves out: multi-worker loading and datasets that do not fit in memory. */
#include "data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "data/transforms.h"

enum { JOB_IDLE, JOB_POSTED, JOB_RUNNING, JOB_DONE };

typedef struct loader_slot {
  float *images;
  int32_t *labels;
  int64_t *indices;
} loader_slot;

typedef struct loader_job {
  int64_t epochs_begun, batch;
  int rank, world, slot;
} loader_job;

struct ndl_loader {
  const ndl_dataset *ds;
  ndl_loader_config cfg;
  ndl_rng *rng; /* borrowed shared stream; caller's thread only */
  int64_t dim, num_batches;
  int64_t *order; /* n sample indices of the current epoch (identity without shuffle) */
  int64_t epochs_begun, next_batch;
  int in_epoch;
  ndl_rng epoch_rng;
  loader_slot slots[2];
  int cur;              /* slot handed out last */
  int last_rank, last_world; /* guess for the next prefetch */
  /* prefetch thread */
  int thread_on, stop, job_state;
  loader_job job;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

void ndl_loader_slice(int64_t g, int rank, int world, int64_t *offset, int64_t *count) {
  int64_t base = g / world, rem = g % world;
  *count = base + (rank < rem ? 1 : 0);
  *offset = rank * base + (rank < rem ? rank : rem);
}

/* Copy the rank's samples of global batch `batch` into slot s (reads l->order, l->ds only). */
static void gather(ndl_loader *l, int s, int64_t batch, int rank, int world) {
  int64_t start = batch * l->cfg.batch_size, g = l->ds->n - start, off, cnt;
  if (g > l->cfg.batch_size) g = l->cfg.batch_size;
  ndl_loader_slice(g, rank, world, &off, &cnt);
  loader_slot *sl = &l->slots[s];
  for (int64_t i = 0; i < cnt; i++) {
    int64_t idx = l->order[start + off + i];
    memcpy(sl->images + i * l->dim, l->ds->images + idx * l->dim, (size_t)l->dim * sizeof(float));
    sl->labels[i] = l->ds->labels[idx];
    sl->indices[i] = idx;
  }
}

static void *prefetch_main(void *arg) {
  ndl_loader *l = (ndl_loader *)arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && l->job_state != JOB_POSTED) pthread_cond_wait(&l->cv, &l->mu);
    if (l->stop) break;
    loader_job j = l->job;
    l->job_state = JOB_RUNNING;
    pthread_mutex_unlock(&l->mu);
    gather(l, j.slot, j.batch, j.rank, j.world);
    pthread_mutex_lock(&l->mu);
    l->job_state = JOB_DONE;
    pthread_cond_broadcast(&l->cv);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

/* Wait until no gather is running; return 1 if the finished (or queued) job matches `want`, and
 * in every case leave the job state idle. A queued job that does not match is dropped unrun. */
static int prefetch_take(ndl_loader *l, const loader_job *want) {
  if (!l->thread_on) return 0;
  pthread_mutex_lock(&l->mu);
  int match = want && l->job_state != JOB_IDLE && l->job.epochs_begun == want->epochs_begun &&
              l->job.batch == want->batch && l->job.rank == want->rank && l->job.world == want->world;
  if (l->job_state == JOB_POSTED && !match) l->job_state = JOB_IDLE;
  while (l->job_state == JOB_POSTED || l->job_state == JOB_RUNNING) pthread_cond_wait(&l->cv, &l->mu);
  l->job_state = JOB_IDLE;
  pthread_mutex_unlock(&l->mu);
  return match;
}

/* Queue the gather of the batch after the current one into the spare slot, if there is one. */
static void prefetch_post(ndl_loader *l) {
  if (!l->thread_on || !l->in_epoch || l->last_world < 1 || l->next_batch >= l->num_batches) return;
  pthread_mutex_lock(&l->mu);
  NDL_ASSERT(l->job_state == JOB_IDLE);
  l->job.epochs_begun = l->epochs_begun;
  l->job.batch = l->next_batch;
  l->job.rank = l->last_rank;
  l->job.world = l->last_world;
  l->job.slot = 1 - l->cur;
  l->job_state = JOB_POSTED;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

static ndl_status slots_alloc(ndl_loader *l) {
  int64_t cap = l->cfg.batch_size < l->ds->n ? l->cfg.batch_size : l->ds->n;
  for (int s = 0; s < (l->cfg.prefetch ? 2 : 1); s++) {
    l->slots[s].images = (float *)ndl_malloc((size_t)(cap * l->dim) * sizeof(float));
    l->slots[s].labels = (int32_t *)ndl_malloc((size_t)cap * sizeof(int32_t));
    l->slots[s].indices = (int64_t *)ndl_malloc((size_t)cap * sizeof(int64_t));
    if (!l->slots[s].images || !l->slots[s].labels || !l->slots[s].indices)
      return ndl_errorf(NDL_ERR_NOMEM, "loader: out of memory for a batch buffer of %lld samples", (long long)cap);
  }
  return NDL_OK;
}

ndl_status ndl_loader_new(const ndl_dataset *ds, const ndl_loader_config *cfg, ndl_rng *rng, ndl_loader **out) {
  *out = NULL;
  if (!ds || ds->n < 1 || !ds->images || !ds->labels || ds->rows < 1 || ds->cols < 1)
    return ndl_errorf(NDL_ERR_ARG, "loader: empty or incomplete dataset");
  if (!cfg || cfg->batch_size < 1)
    return ndl_errorf(NDL_ERR_ARG, "loader: batch size %lld, expected >= 1", cfg ? (long long)cfg->batch_size : 0LL);
  if ((cfg->shuffle || cfg->augment) && !rng)
    return ndl_errorf(NDL_ERR_ARG, "loader: shuffle/augment need an RNG");
  ndl_loader *l = (ndl_loader *)ndl_calloc(1, sizeof *l);
  if (!l) return ndl_errorf(NDL_ERR_NOMEM, "loader: out of memory");
  l->ds = ds;
  l->cfg = *cfg;
  l->rng = rng;
  l->dim = ndl_dataset_sample_dim(ds);
  l->num_batches = (ds->n + cfg->batch_size - 1) / cfg->batch_size;
  l->last_world = 0;
  ndl_status s = slots_alloc(l);
  if (s == NDL_OK && !(l->order = (int64_t *)ndl_malloc((size_t)ds->n * sizeof(int64_t))))
    s = ndl_errorf(NDL_ERR_NOMEM, "loader: out of memory for %lld indices", (long long)ds->n);
  if (s == NDL_OK && cfg->prefetch) {
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, prefetch_main, l) != 0) {
      pthread_cond_destroy(&l->cv);
      pthread_mutex_destroy(&l->mu);
      s = ndl_errorf(NDL_ERR_NOMEM, "loader: cannot start the prefetch thread");
    } else {
      l->thread_on = 1;
    }
  }
  if (s != NDL_OK) {
    ndl_loader_free(l);
    return s;
  }
  for (int64_t i = 0; i < ds->n; i++) l->order[i] = i;
  *out = l;
  return NDL_OK;
}

void ndl_loader_free(ndl_loader *l) {
  if (!l) return;
  if (l->thread_on) {
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
  }
  for (int s = 0; s < 2; s++) {
    ndl_free(l->slots[s].images);
    ndl_free(l->slots[s].labels);
    ndl_free(l->slots[s].indices);
  }
  ndl_free(l->order);
  ndl_free(l);
}

int64_t ndl_loader_num_batches(const ndl_loader *l) { return l->num_batches; }

/* Set l->order for the epoch whose start state is l->epoch_rng (does not touch the shared RNG). */
static void derive_order(ndl_loader *l, ndl_rng *from) {
  if (l->cfg.shuffle)
    ndl_rng_permutation(from, l->ds->n, l->order);
  else
    for (int64_t i = 0; i < l->ds->n; i++) l->order[i] = i;
}

void ndl_loader_epoch_begin(ndl_loader *l) {
  prefetch_take(l, NULL); /* the thread must not read order while it changes */
  if (l->rng) l->epoch_rng = *l->rng;
  derive_order(l, l->rng);
  l->epochs_begun++;
  l->next_batch = 0;
  l->in_epoch = 1;
  prefetch_post(l);
}

/* Augmentation draws for the whole global batch in sample order; applied to the local samples. */
static void augment(ndl_loader *l, float *images, int64_t g, int64_t off, int64_t cnt) {
  const ndl_dataset *ds = l->ds;
  for (int64_t i = 0; i < g; i++) {
    int32_t dh = (int32_t)ndl_rng_randint(l->rng, -NDL_LOADER_CROP_PAD, NDL_LOADER_CROP_PAD + 1);
    int32_t dw = (int32_t)ndl_rng_randint(l->rng, -NDL_LOADER_CROP_PAD, NDL_LOADER_CROP_PAD + 1);
    int flip = ndl_rng_rand(l->rng) < NDL_LOADER_FLIP_P;
    if (i < off || i >= off + cnt) continue;
    float *img = images + (i - off) * l->dim;
    ndl_image_shift(img, ds->rows, ds->cols, ds->channels > 0 ? ds->channels : 1, dh, dw);
    if (flip) ndl_image_flip_horizontal(img, ds->rows, ds->cols, ds->channels > 0 ? ds->channels : 1);
  }
}

int ndl_loader_next(ndl_loader *l, int rank, int world, ndl_batch *out) {
  if (world < 1 || rank < 0 || rank >= world)
    return ndl_errorf(NDL_ERR_ARG, "loader: rank %d of world %d, expected 0 <= rank < world", rank, world);
  NDL_ASSERT(l->epochs_begun > 0); /* ndl_loader_epoch_begin first */
  if (!l->in_epoch || l->next_batch >= l->num_batches) {
    prefetch_take(l, NULL);
    l->in_epoch = 0;
    return 0;
  }
  loader_job want = {l->epochs_begun, l->next_batch, rank, world, 1 - l->cur};
  int slot = 1 - l->cur;
  if (!prefetch_take(l, &want)) {
    if (!l->cfg.prefetch) slot = 0;
    gather(l, slot, l->next_batch, rank, world);
  }
  int64_t start = l->next_batch * l->cfg.batch_size, g = l->ds->n - start, off, cnt;
  if (g > l->cfg.batch_size) g = l->cfg.batch_size;
  ndl_loader_slice(g, rank, world, &off, &cnt);
  if (l->cfg.augment) augment(l, l->slots[slot].images, g, off, cnt);
  memset(out, 0, sizeof *out);
  out->epoch = l->epochs_begun - 1;
  out->index = l->next_batch;
  out->global_offset = start;
  out->global_count = g;
  out->local_offset = off;
  out->local_count = cnt;
  out->rows = l->ds->rows;
  out->cols = l->ds->cols;
  out->channels = l->ds->channels > 0 ? l->ds->channels : 1;
  out->images = l->slots[slot].images;
  out->labels = l->slots[slot].labels;
  out->indices = l->slots[slot].indices;
  l->cur = slot;
  l->last_rank = rank;
  l->last_world = world;
  l->next_batch++;
  prefetch_post(l);
  return 1;
}

void ndl_loader_cursor_get(const ndl_loader *l, ndl_loader_cursor *c) {
  memset(c, 0, sizeof *c);
  c->epochs_begun = l->epochs_begun;
  c->next_batch = l->next_batch;
  c->n = l->ds->n;
  c->batch_size = l->cfg.batch_size;
  c->shuffle = l->cfg.shuffle;
  c->in_epoch = l->in_epoch;
  c->epoch_rng = l->epoch_rng;
}

ndl_status ndl_loader_cursor_set(ndl_loader *l, const ndl_loader_cursor *c) {
  if (c->n != l->ds->n || c->batch_size != l->cfg.batch_size || !c->shuffle != !l->cfg.shuffle)
    return ndl_errorf(NDL_ERR_MISMATCH,
                      "loader cursor: n %lld, batch size %lld, shuffle %d; expected n %lld, batch size %lld, "
                      "shuffle %d",
                      (long long)c->n, (long long)c->batch_size, (int)c->shuffle, (long long)l->ds->n,
                      (long long)l->cfg.batch_size, l->cfg.shuffle ? 1 : 0);
  if (c->epochs_begun < 0 || c->next_batch < 0 || c->next_batch > l->num_batches ||
      (c->in_epoch != 0 && c->in_epoch != 1) || (c->in_epoch && c->epochs_begun == 0) ||
      (!c->epochs_begun && c->next_batch))
    return ndl_errorf(NDL_ERR_FORMAT,
                      "loader cursor: epoch %lld batch %lld in_epoch %d, expected a batch in 0..%lld of a begun "
                      "epoch",
                      (long long)c->epochs_begun, (long long)c->next_batch, (int)c->in_epoch,
                      (long long)l->num_batches);
  ndl_status rs = ndl_rng_check(&c->epoch_rng);
  if (rs != NDL_OK) {
    char why[256];
    snprintf(why, sizeof why, "%s", ndl_last_error()); /* the message buffer is reused below */
    return ndl_errorf(rs, "loader cursor: epoch start %s", why);
  }
  prefetch_take(l, NULL);
  l->epochs_begun = c->epochs_begun;
  l->next_batch = c->next_batch;
  l->in_epoch = c->in_epoch != 0;
  l->epoch_rng = c->epoch_rng;
  ndl_rng from = c->epoch_rng;
  derive_order(l, &from);
  prefetch_post(l);
  return NDL_OK;
}
