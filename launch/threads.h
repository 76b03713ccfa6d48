/* threads.h: how many CPU threads a rank uses (--threads, default cores / local ranks) and the
 * matching OpenBLAS setting. */
#ifndef NDL_THREADS_H
#define NDL_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Decide the thread count (requested > 0 wins, else online cores / local_ranks, at least 1), apply
 * it, and return it. */
int ndl_threads_configure(int requested, int local_ranks);

#ifdef __cplusplus
}
#endif
#endif
