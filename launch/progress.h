/* progress.h: a one-line progress bar on stderr while an epoch runs, drawn only when stderr is a
 * terminal and the bar is enabled (rank 0, no --quiet); redrawn at most ten times a second. */
#ifndef NDL_PROGRESS_H
#define NDL_PROGRESS_H

#include <stdint.h>

typedef struct ndl_progress {
  int active;
  int64_t epoch, epochs, total;
  double last_draw;
} ndl_progress;

void ndl_progress_begin(ndl_progress *p, int enabled, int64_t epoch, int64_t epochs, int64_t total);
void ndl_progress_update(ndl_progress *p, int64_t done, double loss);
/* Erase the bar. */
void ndl_progress_end(ndl_progress *p);

#endif
