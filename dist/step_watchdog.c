/* step_watchdog.c: the step watchdog thread. The trainer's side is atomic stores (phase, step, epoch,
 * a heartbeat counter); the thread wakes every min(0.25 s, timeout/8), notes when the counter last
 * moved, and past the current phase's allowance prints the stall line with write(2) (no stdio: the
 * stalled thread may hold stdout's lock) and ends the job through ndl_dist_abort_async. It also
 * polls NCCL's asynchronous error (dist_device.h) and ends the job the same way when one appears.
 * Leaves out: what each phase does (launch/trainer.c feeds it) and collective deadlines (dist_mpi.c). */
#include "dist/step_watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "dist/dist.h"
#include "dist/dist_device.h"
#include "dist/step_profile.h"

#define COLLECTIVE_GRACE_S 5.0

static const struct {
  const char *key, *label;
  int io;
} phases[NDL_PHASE_COUNT] = {
    [NDL_PHASE_STARTUP] = {"startup", "data loading", 1},
    [NDL_PHASE_DATA] = {"data", "data wait", 0},
    [NDL_PHASE_FORWARD] = {"forward", "forward", 0},
    [NDL_PHASE_BACKWARD] = {"backward", "backward", 0},
    [NDL_PHASE_ALLREDUCE] = {"allreduce", "allreduce", 0},
    [NDL_PHASE_OPTIMIZER] = {"optimizer", "optimizer", 0},
    [NDL_PHASE_EVAL] = {"eval", "evaluation", 0},
    [NDL_PHASE_CKPT_WRITE] = {"checkpoint", "checkpoint write", 1},
    [NDL_PHASE_CKPT_READ] = {"resume", "checkpoint read", 1},
    [NDL_PHASE_OUTPUT] = {"output", "output", 1},
};

const char *ndl_phase_label(ndl_phase p) {
  NDL_ASSERT(p >= 0 && p < NDL_PHASE_COUNT);
  return phases[p].label;
}

const char *ndl_phase_key(ndl_phase p) {
  NDL_ASSERT(p >= 0 && p < NDL_PHASE_COUNT);
  return phases[p].key;
}

ndl_phase ndl_phase_from_key(const char *key) {
  for (int p = 0; p < NDL_PHASE_COUNT; p++)
    if (strcmp(phases[p].key, key) == 0) return (ndl_phase)p;
  return NDL_PHASE_COUNT;
}

double ndl_phase_allowance(ndl_phase p, double timeout_s) {
  NDL_ASSERT(p >= 0 && p < NDL_PHASE_COUNT);
  return phases[p].io ? NDL_WATCHDOG_IO_FACTOR * timeout_s : timeout_s;
}

struct ndl_watchdog {
  ndl_dist *dist;
  double timeout_s;
  atomic_uint_fast64_t beats; /* bumped on every phase change, heartbeat and collective edge */
  atomic_int phase;
  atomic_int_fast64_t step, epoch;
  atomic_int_fast64_t coll_ms; /* deadline of the running collective in ms; 0: none */
  pthread_t thread;
  pthread_mutex_t mu; /* guards stop, for a prompt join */
  pthread_cond_t cv;
  int stop;
  ndl_profile *profile; /* --profile: phase changes go there too (trainer thread only), or NULL */
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fire(ndl_watchdog *w, double stalled) {
  ndl_phase p = (ndl_phase)atomic_load(&w->phase);
  char line[256];
  int k = 0;
  if (w->dist && ndl_dist_world(w->dist) > 1)
    k = snprintf(line, sizeof line, "ndl-train: rank %d: ", ndl_dist_rank(w->dist));
  else
    k = snprintf(line, sizeof line, "ndl-train: ");
  snprintf(line + k, sizeof line - (size_t)k, "stalled for %.1f s in %s at step %lld (epoch %lld)\n",
           stalled, phases[p].label,
           (long long)atomic_load(&w->step), (long long)atomic_load(&w->epoch));
  ssize_t unused = write(2, line, strlen(line));
  (void)unused;
  ndl_dist_abort_async(w->dist, 5);
}

/* An asynchronous NCCL failure (dist_device.h): one line naming rank and step, then exit 5. */
static void fire_device(ndl_watchdog *w, const char *what) {
  char line[320];
  int k = w->dist && ndl_dist_world(w->dist) > 1
              ? snprintf(line, sizeof line, "ndl-train: rank %d: ", ndl_dist_rank(w->dist))
              : snprintf(line, sizeof line, "ndl-train: ");
  snprintf(line + k, sizeof line - (size_t)k, "%s in %s at step %lld (epoch %lld)\n", what,
           phases[atomic_load(&w->phase)].label, (long long)atomic_load(&w->step),
           (long long)atomic_load(&w->epoch));
  ssize_t unused = write(2, line, strlen(line));
  (void)unused;
  ndl_dist_abort_async(w->dist, 5);
}

static void *watch_main(void *arg) {
  ndl_watchdog *w = arg;
  double poll = w->timeout_s / 8 < 0.25 ? w->timeout_s / 8 : 0.25;
  if (poll < 1e-3) poll = 1e-3;
  uint64_t seen = atomic_load(&w->beats);
  double since = now_s();
  pthread_mutex_lock(&w->mu);
  while (!w->stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double t = (double)until.tv_nsec * 1e-9 + poll;
    until.tv_sec += (time_t)t;
    until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
    pthread_cond_timedwait(&w->cv, &w->mu, &until);
    if (w->stop) break;
    char nccl[160];
    if (w->dist && ndl_dist_device_error(w->dist, nccl, sizeof nccl)) fire_device(w, nccl);
    uint64_t b = atomic_load(&w->beats);
    double now = now_s();
    if (b != seen) {
      seen = b;
      since = now;
      continue;
    }
    int64_t coll = atomic_load(&w->coll_ms);
    double limit = coll ? (double)coll * 1e-3 + COLLECTIVE_GRACE_S
                        : ndl_phase_allowance((ndl_phase)atomic_load(&w->phase), w->timeout_s);
    if (now - since >= limit) fire(w, now - since);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

ndl_status ndl_watchdog_start(ndl_watchdog **out, ndl_dist *d, double timeout_s) {
  NDL_ASSERT(out && timeout_s > 0);
  *out = NULL;
  ndl_watchdog *w = ndl_calloc(1, sizeof *w);
  if (!w) return ndl_errorf(NDL_ERR_NOMEM, "watchdog: out of memory");
  w->dist = d;
  w->timeout_s = timeout_s;
  atomic_init(&w->beats, 0);
  atomic_init(&w->phase, NDL_PHASE_STARTUP);
  atomic_init(&w->step, 0);
  atomic_init(&w->epoch, 0);
  atomic_init(&w->coll_ms, 0);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    ndl_free(w);
    return ndl_errorf(NDL_ERR_IO, "watchdog: cannot start its thread");
  }
  if (d) ndl_dist_set_watchdog(d, w);
  *out = w;
  return NDL_OK;
}

void ndl_watchdog_phase(ndl_watchdog *w, ndl_phase p, int64_t step, int64_t epoch) {
  if (!w) return;
  if (w->profile) ndl_profile_enter(w->profile, (int)p);
  atomic_store_explicit(&w->step, step, memory_order_relaxed);
  atomic_store_explicit(&w->epoch, epoch, memory_order_relaxed);
  atomic_store_explicit(&w->phase, p, memory_order_relaxed);
  atomic_fetch_add_explicit(&w->beats, 1, memory_order_release);
  if (w->dist) ndl_dist_fault_point(w->dist, phases[p].key, phases[p].label, step);
}

void ndl_watchdog_set_profile(ndl_watchdog *w, ndl_profile *p) {
  if (w) w->profile = p;
}

void ndl_watchdog_beat(ndl_watchdog *w) {
  if (w) atomic_fetch_add_explicit(&w->beats, 1, memory_order_release);
}

void ndl_watchdog_collective(ndl_watchdog *w, double deadline_s) {
  if (!w) return;
  int64_t ms = deadline_s > 0 ? (int64_t)(deadline_s * 1e3) + 1 : 0;
  atomic_store_explicit(&w->coll_ms, ms, memory_order_relaxed);
  atomic_fetch_add_explicit(&w->beats, 1, memory_order_release);
}

void ndl_watchdog_stop(ndl_watchdog *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  if (w->dist) ndl_dist_set_watchdog(w->dist, NULL);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  ndl_free(w);
}
