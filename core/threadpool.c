/* threadpool.c: workers wait for a job generation (spinning briefly, then sleeping on a condition
 * variable) and claim task indices from one atomic ticket (job id, next index); the caller claims
 * too and waits only for tasks that a worker claimed, never for a worker to show up, so a worker
 * that the OS has descheduled (a loaded machine) does not stall the step: the caller runs its tasks.
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
  /* The job: written by the caller before it publishes the ticket, stable until every task is done. */
  _Atomic(void (*)(void *, int64_t)) fn;
  _Atomic(void *) arg;
  atomic_llong ntasks;
  atomic_ullong ticket; /* job id << 32 | next task index; a claim is a compare-and-swap */
  atomic_llong done;    /* tasks of the current job finished */
  atomic_int stop;
} pool = {.nthreads = 1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static atomic_int start_delay_ms; /* test hook: see ndl_threadpool_test_delay_start */

static _Thread_local int in_task; /* set while this thread runs tasks: nested loops run inline */

/* Claim and run tasks of the current job until none is left. The fields are read between the
 * ticket load and the claim: a successful claim means the job was still current, and its fields do
 * not change before its claimed tasks are done. */
static void run_tasks(void) {
  in_task = 1;
  for (;;) {
    unsigned long long t = atomic_load(&pool.ticket);
    int64_t i = (int64_t)(t & 0xffffffffu), n = atomic_load(&pool.ntasks);
    void (*fn)(void *, int64_t) = atomic_load(&pool.fn);
    void *arg = atomic_load(&pool.arg);
    if (i >= n) break;
    if (!atomic_compare_exchange_weak(&pool.ticket, &t, t + 1)) continue;
    fn(arg, i);
    atomic_fetch_add(&pool.done, 1);
  }
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
  NDL_ASSERT(ntasks < 0xffffffffLL);
  unsigned long long job = atomic_load(&pool.ticket) >> 32;
  /* close the old job first: a late worker holding its exhausted ticket must not pair it with the
   * new task count below and claim a task that does not exist */
  atomic_store(&pool.ticket, job << 32 | 0xffffffffu);
  job = (job + 1) & 0xffffffffu;
  atomic_store(&pool.fn, fn);
  atomic_store(&pool.arg, arg);
  atomic_store(&pool.ntasks, ntasks);
  atomic_store(&pool.done, 0);
  atomic_store(&pool.ticket, job << 32); /* publish: index 0 of the new job */
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add(&pool.generation, 1);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  run_tasks();
  /* only tasks a worker claimed can be outstanding: wait for those (a worker that never woke up
   * claimed none) */
  for (int spins = 0; atomic_load(&pool.done) < ntasks; spins++)
    if (spins > 64) sched_yield(); /* let a descheduled worker finish its task */
}
