/* dist.c: the transport-independent half of the process group: launcher detection, NDL_FAULT parsing
 * and injection, argument checks, the world-size-1 early returns, logging and abort.
 * Leaves out: every MPI call (dist_mpi.c) and the startup agreement check (dist_check.c). */
#include "dist/dist_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "dist/dist_device.h"
#include "dist/step_profile.h"
#include "dist/step_watchdog.h"

/* World size announced by a launcher: 0 = not launched, -1 = launched with an unknown size. */
static int env_world(void) {
  const char *s = getenv("OMPI_COMM_WORLD_SIZE");
  if (!s) s = getenv("PMI_SIZE");
  if (s) return atoi(s) > 0 ? atoi(s) : -1;
  if (getenv("PMIX_RANK") || getenv("PMI_RANK")) return -1;
  return 0;
}

static ndl_status bad_fault(const char *spec) {
  return ndl_errorf(NDL_ERR_ARG,
                    "NDL_FAULT=\"%s\": expected \"rank=R,step=S,action=exit|hang[,where=PHASE]\" or "
                    "\"rank=R,step=S,action=slow,seconds=X,where=PHASE\" (R, S >= 0, X > 0)",
                    spec);
}

/* "key=value" pairs separated by commas, in any order; rank, step and action are required. */
static ndl_status parse_fault(ndl_dist *d, const char *spec) {
  d->fault_action = NDL_FAULT_NONE;
  if (!spec || !*spec) return NDL_OK;
  int rank = -1;
  long long step = -1;
  double seconds = 0;
  char action[16] = "", where[16] = "";
  for (const char *p = spec; *p;) {
    char key[16] = "", val[16] = "";
    int used = 0;
    if (sscanf(p, "%15[a-z]=%15[a-z0-9.]%n", key, val, &used) != 2 || (p[used] && p[used] != ','))
      return bad_fault(spec);
    char *end = NULL;
    if (strcmp(key, "rank") == 0) rank = (int)strtol(val, &end, 10);
    else if (strcmp(key, "step") == 0) step = strtoll(val, &end, 10);
    else if (strcmp(key, "seconds") == 0) seconds = strtod(val, &end);
    else if (strcmp(key, "action") == 0) snprintf(action, sizeof action, "%s", val);
    else if (strcmp(key, "where") == 0) snprintf(where, sizeof where, "%s", val);
    else return bad_fault(spec);
    if (end && *end) return bad_fault(spec);
    p += used + (p[used] == ',');
  }
  ndl_fault_action a = strcmp(action, "exit") == 0   ? NDL_FAULT_EXIT
                       : strcmp(action, "hang") == 0 ? NDL_FAULT_HANG
                       : strcmp(action, "slow") == 0 ? NDL_FAULT_SLOW
                                                     : NDL_FAULT_NONE;
  if (rank < 0 || step < 0 || a == NDL_FAULT_NONE || (a == NDL_FAULT_SLOW && (!(seconds > 0) || !*where)) ||
      (*where && strcmp(where, NDL_FAULT_MIDWAY) != 0 && ndl_phase_from_key(where) == NDL_PHASE_COUNT))
    return bad_fault(spec);
  d->fault_rank = rank;
  d->fault_step = step;
  d->fault_action = a;
  d->fault_seconds = seconds;
  snprintf(d->fault_where, sizeof d->fault_where, "%s", where);
  return NDL_OK;
}

ndl_status ndl_dist_init(ndl_dist **out, double timeout_s) {
  NDL_ASSERT(out);
  *out = NULL;
  if (!(timeout_s > 0))
    return ndl_errorf(NDL_ERR_ARG, "dist: timeout must be > 0 seconds, got %g", timeout_s);
  ndl_dist *d = ndl_calloc(1, sizeof *d);
  if (!d) return ndl_errorf(NDL_ERR_NOMEM, "dist: out of memory");
  d->world = d->local_size = 1;
  d->timeout_s = d->deadline_s = timeout_s;
  ndl_status st = parse_fault(d, getenv("NDL_FAULT"));
  int ew = env_world();
  if (st == NDL_OK && (ew > 1 || ew < 0)) st = ndl_dist_mpi_init(d, ew);
  if (st != NDL_OK) {
    ndl_free(d);
    return st;
  }
  *out = d;
  return NDL_OK;
}

int ndl_dist_rank(const ndl_dist *d) { return d->rank; }
int ndl_dist_world(const ndl_dist *d) { return d->world; }
int ndl_dist_local_rank(const ndl_dist *d) { return d->local_rank; }
int ndl_dist_local_size(const ndl_dist *d) { return d->local_size; }
const char *ndl_dist_transport(const ndl_dist *d) {
  return d->world == 1 ? "none" : d->shm_sums ? "mpi+shm" : "mpi";
}
int ndl_dist_broken(const ndl_dist *d) { return d->broken; }
void ndl_dist_set_step(ndl_dist *d, int64_t step) { d->step = step; }
void ndl_dist_set_next_deadline(ndl_dist *d, double seconds) {
  NDL_ASSERT(seconds > 0);
  d->next_deadline_s = seconds;
}
void ndl_dist_set_watchdog(ndl_dist *d, struct ndl_watchdog *w) { d->watchdog = w; }
void ndl_dist_set_profile(ndl_dist *d, struct ndl_profile *p) { d->profile = p; }

static void vlog(const ndl_dist *d, const char *fmt, va_list ap) {
  char line[1024];
  int k = d ? snprintf(line, sizeof line, "ndl-train: rank %d: ", d->rank)
            : snprintf(line, sizeof line, "ndl-train: ");
  vsnprintf(line + k, sizeof line - (size_t)k - 1, fmt, ap);
  strcat(line, "\n");
  fflush(stdout);
  fputs(line, stderr);
  fflush(stderr);
}

void ndl_dist_log_all(const ndl_dist *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(d, fmt, ap);
  va_end(ap);
}

void ndl_dist_log0(const ndl_dist *d, const char *fmt, ...) {
  if (d && d->rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(d, fmt, ap);
  va_end(ap);
}

void ndl_dist_abort(ndl_dist *d, int code) {
  fflush(stdout);
  fflush(stderr);
  ndl_dist_device_abort(d); /* no GPU kernel keeps waiting on a peer */
  if (d && d->mpi) ndl_dist_mpi_abort(d, code);
  exit(code);
}

void ndl_dist_abort_async(ndl_dist *d, int code) {
  ndl_dist_device_abort(d);
  if (d && d->mpi) ndl_dist_mpi_abort(d, code);
  _exit(code);
}

void ndl_dist_free(ndl_dist *d) {
  if (!d) return;
  ndl_dist_nccl_free(d); /* before MPI_Finalize */
  ndl_free(d->stage);
  if (d->mpi) ndl_dist_mpi_free(d);
  ndl_free(d);
}

static void run_fault(ndl_dist *d, const char *where, int64_t step) {
  if (d->fault_action == NDL_FAULT_SLOW) {
    d->fault_done = 1;
    ndl_dist_log_all(d, "NDL_FAULT: sleeping %.1f s in %s at step %lld", d->fault_seconds, where,
                     (long long)step);
    struct timespec ts = {(time_t)d->fault_seconds,
                          (long)((d->fault_seconds - (double)(time_t)d->fault_seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) continue;
    return;
  }
  ndl_dist_log_all(d, "NDL_FAULT: %s in %s at step %lld",
                   d->fault_action == NDL_FAULT_EXIT ? "exiting with status 1" : "hanging", where,
                   (long long)step);
  if (d->fault_action == NDL_FAULT_EXIT) _exit(1);
  for (;;) sleep(60);
}

void ndl_dist_fault_point(ndl_dist *d, const char *key, const char *label, int64_t step) {
  if (d->fault_action == NDL_FAULT_NONE || d->fault_done || d->rank != d->fault_rank ||
      step < d->fault_step || strcmp(d->fault_where, key) != 0)
    return;
  run_fault(d, label, step);
}

/* NDL_FAULT without where: on the chosen rank, at the first collective at or after the chosen step. */
void ndl_dist_collective_fault(ndl_dist *d, const char *what) {
  if (d->fault_action == NDL_FAULT_NONE || d->fault_where[0] || d->rank != d->fault_rank ||
      d->step < d->fault_step)
    return;
  if (d->fault_action == NDL_FAULT_SLOW) return; /* parse_fault requires where= for slow */
  ndl_dist_log_all(d, "NDL_FAULT: %s instead of joining %s (collective #%lld) at step %lld",
                   d->fault_action == NDL_FAULT_EXIT ? "exiting with status 1" : "hanging", what,
                   (long long)d->seq, (long long)d->step);
  if (d->fault_action == NDL_FAULT_EXIT) _exit(1);
  for (;;) sleep(60);
}

/* Common entry of every collective with world > 1; syncbn marks SyncBN's for the profile. */
static ndl_status run_as(ndl_dist *d, ndl_dist_op op, void *buf, const void *src, int64_t count,
                         int root, const char *what, int syncbn) {
  if (d->broken)
    return ndl_errorf(NDL_ERR_DIST, "%s: an earlier collective failed on this rank", what);
  d->seq++;
  d->deadline_s = d->next_deadline_s > 0 ? d->next_deadline_s : d->timeout_s;
  d->next_deadline_s = 0;
  ndl_dist_collective_fault(d, what);
  ndl_watchdog_collective(d->watchdog, d->deadline_s);
  double t0 = d->profile ? ndl_profile_clock() : 0;
  d->arrival_s = 0; /* dist_mpi.c notes when every token is in, with a profile */
  ndl_status st = ndl_dist_mpi_collective(d, op, buf, src, count, root, what);
  if (d->profile && st == NDL_OK) {
    double t1 = ndl_profile_clock();
    ndl_profile_collective(d->profile, syncbn, t1 - t0, (d->arrival_s > 0 ? d->arrival_s : t1) - t0);
  }
  ndl_watchdog_collective(d->watchdog, 0);
  if (st != NDL_OK) d->broken = 1;
  return st;
}

static ndl_status run(ndl_dist *d, ndl_dist_op op, void *buf, const void *src, int64_t count,
                      int root, const char *what) {
  return run_as(d, op, buf, src, count, root, what, 0);
}

ndl_status ndl_dist_allreduce_sum(ndl_dist *d, float *buf, int64_t n, const char *what) {
  NDL_ASSERT(d && what && n >= 0 && (buf || n == 0));
  if (d->world == 1) return NDL_OK;
  return run(d, NDL_DIST_SUM_F32, buf, NULL, n, 0, what);
}

ndl_status ndl_dist_allreduce_sum_f64(ndl_dist *d, double *buf, int64_t n, const char *what) {
  NDL_ASSERT(d && what && n >= 0 && (buf || n == 0));
  if (d->world == 1) return NDL_OK;
  return run(d, NDL_DIST_SUM_F64, buf, NULL, n, 0, what);
}

ndl_status ndl_dist_broadcast(ndl_dist *d, void *buf, int64_t bytes, int root, const char *what) {
  NDL_ASSERT(d && what && bytes >= 0 && (buf || bytes == 0));
  if (root < 0 || root >= d->world)
    return ndl_errorf(NDL_ERR_ARG, "%s: broadcast root %d outside 0..%d", what, root, d->world - 1);
  if (d->world == 1) return NDL_OK;
  return run(d, NDL_DIST_BCAST, buf, NULL, bytes, root, what);
}

ndl_status ndl_dist_allgather(ndl_dist *d, const void *mine, void *all, int64_t bytes,
                              const char *what) {
  NDL_ASSERT(d && what && bytes >= 0 && ((mine && all) || bytes == 0));
  char *slot = (char *)all + (size_t)bytes * (size_t)d->rank;
  if (d->world == 1) {
    if (bytes > 0 && mine != all) memmove(all, mine, (size_t)bytes);
    return NDL_OK;
  }
  return run(d, NDL_DIST_ALLGATHER, all, mine == slot ? NULL : mine, bytes, 0, what);
}

ndl_status ndl_dist_barrier(ndl_dist *d, const char *what) {
  NDL_ASSERT(d && what);
  if (d->world == 1) return NDL_OK;
  return run(d, NDL_DIST_BARRIER, NULL, NULL, 0, 0, what);
}

ndl_status ndl_dist_allreduce_cb(void *handle, double *buf, int64_t n) {
  ndl_dist *d = handle;
  NDL_ASSERT(d && n >= 0 && (buf || n == 0));
  if (d->world == 1) return NDL_OK;
  return run_as(d, NDL_DIST_SUM_F64, buf, NULL, n, 0, "syncbn allreduce", 1);
}
