/* step_watchdog.h: the step watchdog of ndl-train: a thread that ends the run (exit 5, or MPI_Abort
 * with 5 under mpirun) when the trainer makes no progress for --timeout seconds in any phase (data
 * wait, forward, backward, optimizer, evaluation, checkpoint I/O...), with one line saying where:
 * "ndl-train: stalled for 60.0 s in forward at step 3 (epoch 1)". The trainer feeds it phase labels
 * and heartbeats (atomic stores, no lock); collectives have their own deadline (dist.c tells the
 * watchdog while one runs, and it then waits that deadline + 5 s, so the collective's message wins). */
#ifndef NDL_STEP_WATCHDOG_H
#define NDL_STEP_WATCHDOG_H

#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_dist ndl_dist;
typedef struct ndl_watchdog ndl_watchdog; /* opaque, owned by the caller */

/* What the trainer is doing. I/O phases (marked below) get NDL_WATCHDOG_IO_FACTOR x the timeout. */
typedef enum ndl_phase {
  NDL_PHASE_STARTUP,    /* "data loading" (I/O) */
  NDL_PHASE_DATA,       /* "data wait": the loader's next batch */
  NDL_PHASE_FORWARD,    /* "forward" */
  NDL_PHASE_BACKWARD,   /* "backward" */
  NDL_PHASE_ALLREDUCE,  /* "allreduce" */
  NDL_PHASE_OPTIMIZER,  /* "optimizer" */
  NDL_PHASE_EVAL,       /* "evaluation" (heartbeat per batch) */
  NDL_PHASE_CKPT_WRITE, /* "checkpoint write" (I/O) */
  NDL_PHASE_CKPT_READ,  /* "checkpoint read" (I/O) */
  NDL_PHASE_OUTPUT,     /* "output" (stdout, --log, --save) (I/O) */
  NDL_PHASE_COUNT
} ndl_phase;

/* A checkpoint write, data loading or output may take this many times --timeout before it counts
 * as a stall (the other ranks wait for rank 0's checkpoint that long, plus 5 s). */
#define NDL_WATCHDOG_IO_FACTOR 4.0

/* Label used in the stall line ("forward") and the short key NDL_FAULT's where= takes ("forward"). */
const char *ndl_phase_label(ndl_phase p);
const char *ndl_phase_key(ndl_phase p);
/* NDL_PHASE_COUNT when key names no phase. */
ndl_phase ndl_phase_from_key(const char *key);
/* The longest a phase may run without a heartbeat: timeout_s, or IO_FACTOR x it for I/O phases. */
double ndl_phase_allowance(ndl_phase p, double timeout_s);

/* Start the watchdog thread (timeout_s > 0). d (borrowed, may be NULL) is used to abort the job and
 * to inject NDL_FAULT phase faults; the watchdog registers itself with d. Status on thread failure. */
ndl_status ndl_watchdog_start(ndl_watchdog **out, ndl_dist *d, double timeout_s);
/* Enter a phase of step (1-based, the step being computed) and epoch (1-based): counts as progress.
 * Runs NDL_FAULT's phase fault when it matches. w NULL: no-op. */
void ndl_watchdog_phase(ndl_watchdog *w, ndl_phase p, int64_t step, int64_t epoch);
/* Progress within the current phase (one evaluation batch). w NULL: no-op. */
void ndl_watchdog_beat(ndl_watchdog *w);
/* A collective with this deadline starts (deadline_s > 0) or ended (0): while one runs, the limit
 * is deadline_s + 5 s, so the collective's own timeout reports first. w NULL: no-op. */
void ndl_watchdog_collective(ndl_watchdog *w, double deadline_s);
/* Forward every phase change to profile p (--profile; NULL: stop), on the caller's thread. */
struct ndl_profile;
void ndl_watchdog_set_profile(ndl_watchdog *w, struct ndl_profile *p);
/* Stop and join the thread, unregister from d, free; NULL is a no-op. */
void ndl_watchdog_stop(ndl_watchdog *w);

#ifdef __cplusplus
}
#endif
#endif
