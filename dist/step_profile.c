/* step_profile.c: per-phase time sums of one rank (--profile). Every phase change reads the clock
 * once and charges the interval to the phase being left, so the phases of a window partition its
 * wall time; a SyncBN collective's time is moved from the phase it ran in to "syncbn".
 * Leaves out: the phase boundaries (the step watchdog forwards them) and gathering over ranks. */
#include "dist/step_profile.h"

#include <time.h>

#include "core/alloc.h"

#define SLOTS (NDL_PHASE_COUNT + 1) /* the phases and NDL_PROFILE_OUTSIDE */

struct ndl_profile {
  double sec[SLOTS]; /* per phase in the current window */
  double last;       /* clock at the last phase change */
  int cur;           /* current phase */
  double window_start;
  double syncbn_s, syncbn_wait_s, ar_wait_s, syncbn_calls, steps;
};

static const char *const keys[NDL_PROFILE_ITEMS] = {
    [NDL_PROFILE_DATA] = "data_wait",       [NDL_PROFILE_FORWARD] = "forward",
    [NDL_PROFILE_BACKWARD] = "backward",    [NDL_PROFILE_AR_WAIT] = "allreduce_wait",
    [NDL_PROFILE_AR_XFER] = "allreduce_transfer", [NDL_PROFILE_SYNCBN] = "syncbn",
    [NDL_PROFILE_OPTIMIZER] = "optimizer",  [NDL_PROFILE_EVAL] = "eval",
    [NDL_PROFILE_CKPT] = "checkpoint",      [NDL_PROFILE_REST] = "rest",
    [NDL_PROFILE_WALL] = "wall",            [NDL_PROFILE_SYNCBN_WAIT] = "syncbn_wait",
    [NDL_PROFILE_SYNCBN_CALLS] = "syncbn_calls",
    [NDL_PROFILE_STEPS] = "steps",
};

const char *ndl_profile_key(ndl_profile_item i) {
  NDL_ASSERT(i >= 0 && i < NDL_PROFILE_ITEMS);
  return keys[i];
}

double ndl_profile_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void reset(ndl_profile *p, double now) {
  for (int i = 0; i < SLOTS; i++) p->sec[i] = 0;
  p->syncbn_s = p->syncbn_wait_s = p->ar_wait_s = p->syncbn_calls = p->steps = 0;
  p->window_start = p->last = now;
}

ndl_status ndl_profile_new(ndl_profile **out) {
  *out = ndl_calloc(1, sizeof **out);
  if (!*out) return ndl_errorf(NDL_ERR_NOMEM, "out of memory for the profile");
  (*out)->cur = NDL_PROFILE_OUTSIDE;
  reset(*out, ndl_profile_clock());
  return NDL_OK;
}

void ndl_profile_free(ndl_profile *p) { ndl_free(p); }

void ndl_profile_enter(ndl_profile *p, int phase) {
  if (!p) return;
  NDL_ASSERT(phase >= 0 && phase < SLOTS);
  double now = ndl_profile_clock();
  p->sec[p->cur] += now - p->last;
  p->last = now;
  p->cur = phase;
  if (phase == NDL_PHASE_FORWARD) p->steps += 1;
}

void ndl_profile_collective(ndl_profile *p, int syncbn, double total_s, double wait_s) {
  if (!p) return;
  wait_s = wait_s < 0 ? 0 : wait_s > total_s ? total_s : wait_s;
  if (syncbn) {
    p->sec[p->cur] -= total_s; /* charged to syncbn instead when the phase is left */
    p->syncbn_s += total_s;
    p->syncbn_wait_s += wait_s;
    p->syncbn_calls += 1;
  } else if (p->cur == NDL_PHASE_ALLREDUCE) {
    p->ar_wait_s += wait_s;
  }
}

static double nonneg(double x) { return x > 0 ? x : 0; }

void ndl_profile_take(ndl_profile *p, double out[NDL_PROFILE_ITEMS]) {
  double now = ndl_profile_clock();
  p->sec[p->cur] += now - p->last;
  const double *s = p->sec;
  out[NDL_PROFILE_DATA] = nonneg(s[NDL_PHASE_DATA]);
  out[NDL_PROFILE_FORWARD] = nonneg(s[NDL_PHASE_FORWARD]);
  out[NDL_PROFILE_BACKWARD] = nonneg(s[NDL_PHASE_BACKWARD]);
  out[NDL_PROFILE_AR_WAIT] = nonneg(p->ar_wait_s);
  out[NDL_PROFILE_AR_XFER] = nonneg(s[NDL_PHASE_ALLREDUCE] - p->ar_wait_s);
  out[NDL_PROFILE_SYNCBN] = nonneg(p->syncbn_s);
  out[NDL_PROFILE_OPTIMIZER] = nonneg(s[NDL_PHASE_OPTIMIZER]);
  out[NDL_PROFILE_EVAL] = nonneg(s[NDL_PHASE_EVAL]);
  out[NDL_PROFILE_CKPT] = nonneg(s[NDL_PHASE_CKPT_WRITE] + s[NDL_PHASE_CKPT_READ]);
  out[NDL_PROFILE_WALL] = now - p->window_start;
  double named = 0;
  for (int i = 0; i < NDL_PROFILE_REST; i++) named += out[i];
  out[NDL_PROFILE_REST] = nonneg(out[NDL_PROFILE_WALL] - named);
  out[NDL_PROFILE_SYNCBN_WAIT] = nonneg(p->syncbn_wait_s);
  out[NDL_PROFILE_SYNCBN_CALLS] = p->syncbn_calls;
  out[NDL_PROFILE_STEPS] = p->steps;
  reset(p, now);
}
