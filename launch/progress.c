/* progress.c: the stderr progress bar (TTY only); it never writes to stdout. */
#include "launch/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void ndl_progress_begin(ndl_progress *p, int enabled, int64_t epoch, int64_t epochs, int64_t total) {
  p->active = enabled && isatty(2);
  p->epoch = epoch;
  p->epochs = epochs;
  p->total = total;
  p->last_draw = 0.0;
}

void ndl_progress_update(ndl_progress *p, int64_t done, double loss) {
  if (!p->active) return;
  double t = now_s();
  if (done < p->total && t - p->last_draw < 0.1) return;
  p->last_draw = t;
  int width = 30, filled = p->total ? (int)(width * done / p->total) : width;
  char bar[64];
  for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
  bar[width] = 0;
  fprintf(stderr, "\repoch %lld/%lld [%s] %lld/%lld loss %.4f", (long long)p->epoch, (long long)p->epochs,
          bar, (long long)done, (long long)p->total, loss);
  fflush(stderr);
}

void ndl_progress_end(ndl_progress *p) {
  if (!p->active) return;
  fprintf(stderr, "\r%80s\r", "");
  fflush(stderr);
}
