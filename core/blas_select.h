/* blas_select.h: which OpenBLAS kernel a process runs on (chosen from CPUID when OpenBLAS's own
 * detection falls short and the user has not set OPENBLAS_CORETYPE), a one-line description of
 * it, and whether cblas_sgemm may run on two threads at once with the loaded library. */
#ifndef NDL_BLAS_SELECT_H
#define NDL_BLAS_SELECT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The best OpenBLAS x86-64 kernel this CPU (and OS) supports, as OpenBLAS names it ("Cooperlake",
 * "SkylakeX", "Haswell", "Sandybridge", "Nehalem", "Core2", "Prescott"); NULL off x86. */
const char *ndl_blas_best_core(void);

/* Position of a kernel name on the Intel ladder above ("Zen" counts as "Haswell"), -1 if unknown. */
int ndl_blas_core_rank(const char *name);

/* The kernel to force instead of loaded, or NULL to keep it: best when both are known and loaded
 * ranks strictly below best. */
const char *ndl_blas_upgrade(const char *loaded, const char *best);

/* Call first thing in main, before any BLAS call, MPI_Init or thread start. When OPENBLAS_CORETYPE
 * is unset, OpenBLAS is a DYNAMIC_ARCH build and its kernel ranks below ndl_blas_best_core(), set
 * OPENBLAS_CORETYPE and re-execute /proc/self/exe with argv (OpenBLAS reads the variable when it
 * loads, before main). Returns only when nothing was re-executed (or the exec failed). */
void ndl_blas_select(char **argv);

/* Write "OpenBLAS <version>, kernel <name> (<how it was chosen>), concurrent sgemm <yes|no>" into
 * buf (always NUL-terminated); returns buf. */
char *ndl_blas_describe(char *buf, size_t len);

/* 1 when two threads may call cblas_sgemm at once: the pthreads build (openblas_get_parallel() 1)
 * locks its buffer pool; the serial build may lack USE_LOCKING (not reported) and OpenMP builds
 * are not made for calls from foreign threads, so both give 0. NDL_BLAS_SERIAL=1 forces 0. */
int ndl_blas_concurrent_ok(void);

/* Test hook: -1 restores the rule above, 0 or 1 overrides it. */
void ndl_blas_set_concurrent(int on);

#ifdef __cplusplus
}
#endif
#endif
