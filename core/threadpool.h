/* threadpool.h: a small persistent pool for splitting one big kernel (a GEMM) across the threads
 * of a rank. The caller runs tasks too; with one thread everything runs inline with no locking. */
#ifndef NDL_THREADPOOL_H
#define NDL_THREADPOOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Use n threads in total (the caller plus n-1 workers); 1 stops the workers. Not thread-safe:
 * call from the main thread while no parallel work runs. */
void ndl_threadpool_set_threads(int n);
int ndl_threadpool_threads(void);
/* Flush denormal floats to zero (FTZ and DAZ) on the calling thread and on threads it creates
 * afterwards; returns whether the CPU supports it. Denormals appear late in training (Adam's second
 * moments of weights whose gradient is only weight decay) and make x86 arithmetic ~100x slower. */
int ndl_flush_denormals(void);
/* Run fn(arg, i) for i in [0, ntasks) across the pool; returns when all are done. */
void ndl_parallel_for(int64_t ntasks, void (*fn)(void *arg, int64_t task), void *arg);
/* Test hook: workers created from now on sleep ms milliseconds before their first instruction (so a
 * job can be posted before they run); 0 turns it off. */
void ndl_threadpool_test_delay_start(int ms);

#ifdef __cplusplus
}
#endif
#endif
