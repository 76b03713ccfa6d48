/* profile_report.c: --profile's gathering and output: per-window all-gather of every rank's step
 * profile figures, min/mean/max over ranks as a JSON object for the --log epoch line, and the
 * end-of-run table on stdout (rank 0): seconds per epoch per item, then one line per epoch.
 * Leaves out: the timing itself (dist/step_profile.c). */
#include "launch/profile_report.h"

#include <string.h>

#include "core/alloc.h"

#define ITEMS NDL_PROFILE_ITEMS
#define MAX_ROWS 100000 /* epochs kept for the per-epoch lines; the totals count every one */

ndl_status ndl_profile_report_init(ndl_profile_report *r, int world) {
  memset(r, 0, sizeof *r);
  r->world = world;
  r->last = ndl_calloc((size_t)world * ITEMS, sizeof(double));
  r->total = ndl_calloc((size_t)world * ITEMS, sizeof(double));
  if (!r->last || !r->total || ndl_profile_new(&r->prof) != NDL_OK) {
    ndl_profile_report_free(r);
    return ndl_errorf(NDL_ERR_NOMEM, "--profile: out of memory for %d ranks", world);
  }
  return NDL_OK;
}

void ndl_profile_report_free(ndl_profile_report *r) {
  ndl_profile_free(r->prof);
  ndl_free(r->last);
  ndl_free(r->total);
  ndl_free(r->epochs);
  ndl_free(r->epoch_no);
  memset(r, 0, sizeof *r);
}

void ndl_profile_report_begin(ndl_profile_report *r) {
  double drop[ITEMS];
  ndl_profile_take(r->prof, drop);
}

/* min, mean and max of item i over the ranks of a rank-major table. */
static void over_ranks(const double *all, int world, int i, double out[3]) {
  out[0] = out[2] = all[i];
  out[1] = 0;
  for (int k = 0; k < world; k++) {
    double v = all[(size_t)k * ITEMS + i];
    out[0] = v < out[0] ? v : out[0];
    out[2] = v > out[2] ? v : out[2];
    out[1] += v / world;
  }
}

static void keep_row(ndl_profile_report *r, int64_t epoch) {
  if (r->n_epochs >= MAX_ROWS) return;
  if (r->n_epochs == r->cap) {
    int64_t cap = r->cap ? 2 * r->cap : 16;
    size_t row = ITEMS * sizeof(double);
    double *rows = ndl_realloc(r->epochs, (size_t)r->cap * row, (size_t)cap * row);
    if (rows) r->epochs = rows;
    int64_t *no = ndl_realloc(r->epoch_no, (size_t)r->cap * sizeof(int64_t), (size_t)cap * sizeof(int64_t));
    if (no) r->epoch_no = no;
    if (!rows || !no) return; /* the per-epoch lines stop; the totals go on */
    r->cap = cap;
  }
  for (int i = 0; i < ITEMS; i++) {
    double m[3];
    over_ranks(r->last, r->world, i, m);
    r->epochs[r->n_epochs * ITEMS + i] = m[1];
  }
  r->epoch_no[r->n_epochs++] = epoch;
}

ndl_status ndl_profile_report_window(ndl_profile_report *r, ndl_dist *d, int64_t epoch) {
  double mine[ITEMS];
  ndl_profile_take(r->prof, mine);
  ndl_status st = ndl_dist_allgather(d, mine, r->last, (int64_t)sizeof mine, "profile allgather");
  if (st != NDL_OK) return st;
  for (size_t k = 0; k < (size_t)r->world * ITEMS; k++) r->total[k] += r->last[k];
  if (epoch > 0) keep_row(r, epoch);
  return NDL_OK;
}

void ndl_profile_report_json(const ndl_profile_report *r, char *buf, size_t cap) {
  double steps[3], calls[3];
  over_ranks(r->last, r->world, NDL_PROFILE_STEPS, steps);
  over_ranks(r->last, r->world, NDL_PROFILE_SYNCBN_CALLS, calls);
  size_t n = (size_t)snprintf(buf, cap, "{\"ranks\":%d,\"steps\":%.0f,\"syncbn_calls\":%.0f", r->world,
                              steps[2], calls[2]);
  for (int i = 0; i <= NDL_PROFILE_SYNCBN_WAIT && n < cap; i++) {
    double m[3];
    over_ranks(r->last, r->world, i, m);
    n += (size_t)snprintf(buf + n, cap - n, ",\"%s_s\":{\"min\":%.6f,\"mean\":%.6f,\"max\":%.6f}",
                          ndl_profile_key((ndl_profile_item)i), m[0], m[1], m[2]);
  }
  if (n < cap) snprintf(buf + n, cap - n, "}");
}

void ndl_profile_report_print(const ndl_profile_report *r, FILE *f) {
  double steps[3], calls[3], wall[3];
  over_ranks(r->total, r->world, NDL_PROFILE_STEPS, steps);
  over_ranks(r->total, r->world, NDL_PROFILE_SYNCBN_CALLS, calls);
  over_ranks(r->total, r->world, NDL_PROFILE_WALL, wall);
  double per = r->n_epochs > 0 ? (double)r->n_epochs : 1.0;
  fprintf(f, "profile: %d rank%s, %lld epoch%s, %.0f steps, %.0f syncbn collectives (%.1f per step); "
             "seconds %s over ranks\n",
          r->world, r->world == 1 ? "" : "s", (long long)r->n_epochs, r->n_epochs == 1 ? "" : "s", steps[2],
          calls[2], steps[2] > 0 ? calls[2] / steps[2] : 0.0, r->n_epochs > 0 ? "per epoch" : "in all");
  fprintf(f, "profile: %-20s %10s %10s %10s %7s\n", "item", "min", "mean", "max", "%wall");
  for (int i = 0; i <= NDL_PROFILE_SYNCBN_WAIT; i++) {
    double m[3];
    over_ranks(r->total, r->world, i, m);
    fprintf(f, "profile: %-20s %10.4f %10.4f %10.4f %7.1f\n", ndl_profile_key((ndl_profile_item)i),
            m[0] / per, m[1] / per, m[2] / per, wall[1] > 0 ? 100.0 * m[1] / wall[1] : 0.0);
  }
  for (int64_t e = 0; e < r->n_epochs; e++) {
    const double *row = r->epochs + e * ITEMS;
    fprintf(f, "profile: epoch %lld", (long long)r->epoch_no[e]);
    for (int i = 0; i < ITEMS; i++)
      fprintf(f, i < NDL_PROFILE_SYNCBN_CALLS ? " %s %.4f" : " %s %.0f", ndl_profile_key((ndl_profile_item)i),
              row[i]);
    fprintf(f, " (mean over ranks)\n");
  }
  fflush(f);
}
