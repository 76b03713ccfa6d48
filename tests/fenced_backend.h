/* fenced_backend.h: a test backend (device NDL_DEV_TEST) that runs the CPU backend's code on memory
 * the host cannot touch: one mmap region kept PROT_NONE except while one of its own vtable entries
 * runs. Host code that reads or writes its memory outside the vtable dies with SIGSEGV, so a run on
 * it that matches the CPU backend bitwise proves the core moves data only through the vtable. */
#ifndef NDL_FENCED_BACKEND_H
#define NDL_FENCED_BACKEND_H

#include <stdint.h>

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The fenced backend, registered as ndl_backend_for(NDL_DEV_TEST) (first call maps the region). */
const ndl_backend *ndl_fenced_backend(void);
/* 1 when p lies in the fenced region. */
int ndl_fenced_owns(const void *p);
/* Vtable entries run so far (each one opened and closed the fence once). */
int64_t ndl_fenced_entries(void);
/* 1 while the fence is open (inside an entry); 0 between entries. */
int ndl_fenced_is_open(void);

#ifdef __cplusplus
}
#endif
#endif
