/* dynlib.h: a shared library loaded on first use: dlopen one of its names, then dlsym a table of
 * its functions. The CUDA backend loads cuBLAS this way and dist/ loads NCCL, so neither is a
 * link-time dependency and a CPU-only run maps neither. Failures are one line for the caller's
 * message (a --device cuda or --collectives nccl error), never a crash. */
#ifndef NDL_DYNLIB_H
#define NDL_DYNLIB_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One function of the table: its exported name and where its address goes (a function pointer). */
typedef struct ndl_dynlib_sym {
  const char *name;
  void *slot;
} ndl_dynlib_sym;

/* Load the library `what` ("cuBLAS", "NCCL"): with the environment variable hook_env set (a test
 * hook), only that path; else names[0..n) in order (names[0], the soname, names the library in
 * messages). Then fill every syms[i].slot. Returns the handle, or NULL with one line in why (the
 * library or the missing function and dlerror's reason); on failure every slot is NULL. */
void *ndl_dynlib_load(const char *what, const char *hook_env, const char *const *names, size_t n,
                      const ndl_dynlib_sym *syms, size_t nsyms, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
