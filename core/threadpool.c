/* threadpool.c: workers wait for a job generation (spinning briefly, then sleeping on a condition
 * variable), take task indices from an atomic counter, and report completion through another.
 * A task that calls ndl_parallel_for again runs the inner loop inline on its own thread. */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "core/status.h"

#define MAX_THREADS 64
#define SPIN_ROUNDS 200000 /* polls before a worker sleeps; it yields the core after the first 256 */

static struct {
  int nthreads;
  pthread_t workers[MAX_THREADS];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int generation;
  atomic_int finished;  /* workers done with the current generation */
  atomic_llong next;    /* next task index */
  int64_t ntasks;
  void (*fn)(void *, int64_t);
  void *arg;
  atomic_int stop;
} pool = {.nthreads = 1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static atomic_int start_delay_ms; /* test hook: see ndl_threadpool_test_delay_start */

static _Thread_local int in_task; /* set while this thread runs tasks: nested loops run inline */

static void run_tasks(void) {
  int64_t i;
  in_task = 1;
  while ((i = atomic_fetch_add(&pool.next, 1)) < pool.ntasks) pool.fn(pool.arg, i);
  in_task = 0;
}

/* arg carries the generation current when the worker was created: reading it here instead would
 * miss a job that ndl_parallel_for posted before this thread first ran, and the caller would wait
 * for it forever. */
static void *worker_main(void *arg) {
  int delay = atomic_load(&start_delay_ms);
  if (delay > 0) nanosleep(&(struct timespec){delay / 1000, (long)(delay % 1000) * 1000000L}, NULL);
  int seen = (int)(intptr_t)arg;
  for (;;) {
    int spins = 0;
    while (atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop)) {
      if (++spins < SPIN_ROUNDS) {
        if (spins > 256) sched_yield(); /* a busy or oversubscribed machine runs someone else */
        continue;
      }
      pthread_mutex_lock(&pool.mu);
      while (atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop)) pthread_cond_wait(&pool.cv, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    if (atomic_load(&pool.stop)) return NULL;
    seen = atomic_load(&pool.generation);
    run_tasks();
    atomic_fetch_add(&pool.finished, 1);
  }
}

static void stop_workers(void) {
  pthread_mutex_lock(&pool.mu);
  atomic_store(&pool.stop, 1);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  for (int i = 1; i < pool.nthreads; i++) pthread_join(pool.workers[i], NULL);
  atomic_store(&pool.stop, 0);
  pool.nthreads = 1;
}

void ndl_threadpool_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  if (n == pool.nthreads) return;
  stop_workers();
  intptr_t gen = atomic_load(&pool.generation);
  for (int i = 1; i < n; i++) {
    if (pthread_create(&pool.workers[i], NULL, worker_main, (void *)gen) != 0) break;
    pool.nthreads = i + 1;
  }
}

void ndl_threadpool_test_delay_start(int ms) { atomic_store(&start_delay_ms, ms > 0 ? ms : 0); }

int ndl_threadpool_threads(void) { return pool.nthreads; }

int ndl_flush_denormals(void) {
#if defined(__SSE2__)
  _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
  return 1;
#else
  return 0;
#endif
}

void ndl_parallel_for(int64_t ntasks, void (*fn)(void *arg, int64_t task), void *arg) {
  if (pool.nthreads == 1 || ntasks <= 1 || in_task) {
    for (int64_t i = 0; i < ntasks; i++) fn(arg, i);
    return;
  }
  pool.fn = fn;
  pool.arg = arg;
  pool.ntasks = ntasks;
  atomic_store(&pool.next, 0);
  atomic_store(&pool.finished, 0);
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add(&pool.generation, 1);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  run_tasks();
  for (int spins = 0; atomic_load(&pool.finished) < pool.nthreads - 1; spins++)
    if (spins > 64) sched_yield(); /* let a descheduled worker finish its task */
}
