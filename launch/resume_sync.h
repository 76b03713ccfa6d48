/* resume_sync.h: one resume state for every rank: rank 0's counters, epoch sums, shared RNG, loader
 * cursor and optimizer step count, and its tensors, broadcast after the startup check
 * (launch/resume_sync.c). */
#ifndef NDL_RESUME_SYNC_H
#define NDL_RESUME_SYNC_H

#include <stddef.h>

#include "launch/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the broadcast resume state (compared by the startup check: same build on every rank). */
size_t ndl_resume_state_bytes(void);
/* Collective: every rank takes rank 0's step, epoch, in_epoch, epoch sums, RNG, loader cursor and
 * optimizer step count. World 1: NDL_OK at once. NDL_ERR_DIST when the broadcast fails. */
ndl_status ndl_trainer_sync_resume(ndl_trainer *t);
/* Collective: every rank takes rank 0's parameters, buffers and optimizer state, broadcast from the
 * host mirrors (pulled before, pushed after: no-ops on the host). NDL_ERR_DIST when one fails. */
ndl_status ndl_trainer_sync_tensors(ndl_trainer *t);

#ifdef __cplusplus
}
#endif
#endif
