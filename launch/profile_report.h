/* profile_report.h: --profile's output. Each rank's step profile (dist/step_profile.h) is closed
 * into a window at every epoch line and at the end of the run and all-gathered, so every rank holds
 * every rank's figures; rank 0 puts the epoch's min/mean/max over ranks into the --log epoch line
 * ("profile" object) and prints, at the end, seconds per epoch per item over ranks and one line
 * per epoch. The epoch-end checkpoint falls into the next epoch's window (or the end-of-run tail). */
#ifndef NDL_PROFILE_REPORT_H
#define NDL_PROFILE_REPORT_H

#include <stdio.h>

#include "dist/dist.h"
#include "dist/step_profile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_profile_report {
  ndl_profile *prof; /* this rank's profile (owned) */
  int world;
  double *last;   /* [world * NDL_PROFILE_ITEMS]: the last gathered window, rank-major */
  double *total;  /* [world * NDL_PROFILE_ITEMS]: every window so far, summed */
  double *epochs; /* [cap * NDL_PROFILE_ITEMS]: each epoch window's mean over ranks */
  int64_t *epoch_no; /* [cap]: 1-based epoch of each row */
  int64_t n_epochs, cap;
} ndl_profile_report;

/* A report for world ranks with a fresh profile. NDL_ERR_NOMEM. */
ndl_status ndl_profile_report_init(ndl_profile_report *r, int world);
void ndl_profile_report_free(ndl_profile_report *r);
/* Start the first window now (what came before is dropped). */
void ndl_profile_report_begin(ndl_profile_report *r);
/* Close this rank's window and all-gather every rank's (a collective: all ranks call it alike).
 * epoch > 0: the window is that epoch's (a row of the table); 0: a tail, added to the totals only. */
ndl_status ndl_profile_report_window(ndl_profile_report *r, ndl_dist *d, int64_t epoch);
/* The last window as a JSON object: {"ranks":W,"steps":S,"syncbn_calls":C,"data_wait_s":{"min":..,
 * "mean":..,"max":..},...,"wall_s":{...},"syncbn_wait_s":{...}} (seconds over ranks). Truncated to cap. */
void ndl_profile_report_json(const ndl_profile_report *r, char *buf, size_t cap);
/* The end-of-run table: every "profile: " line to f. */
void ndl_profile_report_print(const ndl_profile_report *r, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
