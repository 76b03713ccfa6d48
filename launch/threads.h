/* threads.h: how many compute threads a rank uses for its GEMMs (--threads, default 1: see
 * threads.c for why) and the matching OpenBLAS setting. */
#ifndef NDL_THREADS_H
#define NDL_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Decide the compute thread count (requested > 0 wins, else 1), apply it, and return it. */
int ndl_threads_configure(int requested, int local_ranks);

#ifdef __cplusplus
}
#endif
#endif
