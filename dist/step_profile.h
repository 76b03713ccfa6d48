/* step_profile.h: where a rank's training time goes (--profile). The step watchdog forwards every
 * phase change (step_watchdog.h's phases: data wait, forward, backward, allreduce, optimizer,
 * evaluation, checkpoint...) and dist.c every collective's time and wait (until all arrival tokens
 * were in); the profile sums CLOCK_MONOTONIC time per phase (one vDSO clock read per change), moves
 * SyncBN collectives out of forward/backward, splits the allreduce phase into wait and transfer, and
 * hands out a window's figures (an epoch) on request. Gathering and printing: launch/profile_report.c. */
#ifndef NDL_STEP_PROFILE_H
#define NDL_STEP_PROFILE_H

#include <stdint.h>

#include "core/status.h"
#include "dist/step_watchdog.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_profile ndl_profile; /* opaque, owned by the caller; one thread's phases */

/* A profile-only pseudo-phase: outside every named phase (step bookkeeping, progress bar). */
#define NDL_PROFILE_OUTSIDE ((int)NDL_PHASE_COUNT)

/* A window's figures, one double each: seconds for the items up to NDL_PROFILE_SYNCBN_WAIT (rest =
 * wall minus the named ones, so DATA..REST sum to the wall; syncbn_wait is part of syncbn), then counts. */
typedef enum ndl_profile_item {
  NDL_PROFILE_DATA,      /* "data_wait": waiting for the loader's next batch */
  NDL_PROFILE_FORWARD,   /* "forward", without SyncBN collectives */
  NDL_PROFILE_BACKWARD,  /* "backward", without SyncBN collectives */
  NDL_PROFILE_AR_WAIT,   /* "allreduce_wait": in the step's all-reduces until every rank's token came */
  NDL_PROFILE_AR_XFER,   /* "allreduce_transfer": the rest of the allreduce phase */
  NDL_PROFILE_SYNCBN,    /* "syncbn": SyncBN collectives (forward and backward) */
  NDL_PROFILE_OPTIMIZER, /* "optimizer" */
  NDL_PROFILE_EVAL,      /* "eval": evaluation, its all-reduce included */
  NDL_PROFILE_CKPT,      /* "checkpoint": checkpoint writes and reads */
  NDL_PROFILE_REST,      /* "rest": wall minus all of the above (output, bookkeeping) */
  NDL_PROFILE_WALL,      /* "wall": the window's length */
  NDL_PROFILE_SYNCBN_WAIT, /* "syncbn_wait": of syncbn, the time until every rank's token came */
  NDL_PROFILE_SYNCBN_CALLS, /* "syncbn_calls" */
  NDL_PROFILE_STEPS,     /* "steps": forward passes of training steps */
  NDL_PROFILE_ITEMS
} ndl_profile_item;

/* Key of an item in the --log JSON and the printed table ("data_wait", "syncbn_calls"). */
const char *ndl_profile_key(ndl_profile_item i);
/* CLOCK_MONOTONIC in seconds. */
double ndl_profile_clock(void);
/* A profile whose first window starts now, outside any phase. NDL_ERR_NOMEM. */
ndl_status ndl_profile_new(ndl_profile **out);
void ndl_profile_free(ndl_profile *p);
/* Enter phase (an ndl_phase or NDL_PROFILE_OUTSIDE): the time since the last change goes to the
 * phase being left. p NULL: no-op. */
void ndl_profile_enter(ndl_profile *p, int phase);
/* A collective took total_s, of which wait_s before every rank had arrived. syncbn: a SyncBN
 * collective (moved out of the current phase); otherwise its wait counts as allreduce wait when the
 * current phase is the allreduce phase. p NULL: no-op. */
void ndl_profile_collective(ndl_profile *p, int syncbn, double total_s, double wait_s);
/* Close the current window (time up to now) into out[NDL_PROFILE_ITEMS]; the next window starts. */
void ndl_profile_take(ndl_profile *p, double out[NDL_PROFILE_ITEMS]);

#ifdef __cplusplus
}
#endif
#endif
