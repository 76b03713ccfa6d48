/* resume_sync.c: rank 0's resume state is every rank's. Only rank 0 reads --resume (checkpoints are
 * written by rank 0, so node-local directories of other ranks may hold nothing, an older step or a
 * damaged copy); the counters, epoch sums, shared RNG, loader cursor and optimizer step count are
 * broadcast from it here, in memory, so this is independent of the checkpoint file format.
 * Parameters, buffers and optimizer state go by ndl_trainer_sync_tensors (called by
 * ndl_trainer_sync_start), through the stores' host mirrors. */
#include "launch/resume_sync.h"

#include <string.h>

/* Everything of a resumed run that is not a tensor; raw bytes, so the startup check compares its
 * size (ndl_resume_state_bytes) before it is broadcast. */
typedef struct resume_state {
  int64_t step, epoch, in_epoch, optim_t;
  ndl_epoch_metrics cur;
  ndl_rng rng;
  int64_t has_cursor;
  ndl_loader_cursor cursor;
} resume_state;

size_t ndl_resume_state_bytes(void) { return sizeof(resume_state); }

ndl_status ndl_trainer_sync_resume(ndl_trainer *t) {
  if (t->world == 1) return NDL_OK;
  resume_state s;
  memset(&s, 0, sizeof s); /* padding too: the bytes are sent */
  if (t->rank == 0) {
    s.step = t->step;
    s.epoch = t->epoch;
    s.in_epoch = t->in_epoch;
    s.optim_t = ndl_optim_step_count(t->opt);
    s.cur = t->cur;
    s.rng = t->rng;
    s.has_cursor = t->loader != NULL;
    if (t->loader) ndl_loader_cursor_get(t->loader, &s.cursor);
  }
  ndl_status st = ndl_dist_broadcast(t->dist, &s, (int64_t)sizeof s, 0, "resume state broadcast");
  if (st != NDL_OK || t->rank == 0) return st;
  t->step = s.step;
  t->epoch = s.epoch;
  t->in_epoch = (int)s.in_epoch;
  t->cur = s.cur;
  t->cur.allreduce_seconds = 0.0; /* this rank's own timing */
  t->rng = s.rng;
  ndl_optim_set_step_count(t->opt, s.optim_t);
  /* the startup check made n, batch size and shuffle agree, and rank 0 validated the cursor */
  NDL_ASSERT(!s.has_cursor == !t->loader);
  if (t->loader) {
    st = ndl_loader_cursor_set(t->loader, &s.cursor);
    NDL_ASSERT(st == NDL_OK);
  }
  return NDL_OK;
}

ndl_status ndl_trainer_sync_tensors(ndl_trainer *t) {
  ndl_params *p = &t->env.params, *b = &t->env.buffers;
  int64_t state_n = 0;
  ndl_params_pull(p); /* device -> host mirrors; no-ops on the host */
  ndl_params_pull(b);
  ndl_optim_pull(t->opt);
  float *state = ndl_optim_state(t->opt, &state_n);
  ndl_status st;
  if ((st = ndl_dist_broadcast(t->dist, p->host, p->numel * 4, 0, "parameter broadcast")) ||
      (st = ndl_dist_broadcast(t->dist, b->host, b->numel * 4, 0, "buffer broadcast")) ||
      (state_n && (st = ndl_dist_broadcast(t->dist, state, state_n * 4, 0, "optimizer broadcast"))))
    return st;
  ndl_params_push(p);
  ndl_params_push(b);
  ndl_optim_push(t->opt);
  return NDL_OK;
}
