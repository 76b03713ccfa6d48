/* cublas_dyn.c: cuBLAS on first use: dlopen libcublas.so.13 (the loader's search: LD_LIBRARY_PATH,
 * the system's), then the library CMake found at configure time (its directory's libcublas.so.13,
 * itself: NDL_CUBLAS_DIR, NDL_CUBLAS_PATH), then libcublas.so; dlsym every function of the table. Nothing here runs until the CUDA
 * backend is first asked for, so a CPU run maps no cuBLAS (tests/test_cuda_lazy.sh checks ldd).
 * Leaves out: unloading (the backend lives until exit). */
#include "core/cuda/cublas_dyn.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ndl_cublas_api ndl_cublas;

#define NDL_STR_(x) #x
#define NDL_STR(x) NDL_STR_(x) /* expands cublas_v2.h's macro first: cublasCreate -> "cublasCreate_v2" */

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *load_why; /* NULL: loaded */
static char why_buf[512];

/* dlsym name into *slot (a function pointer of the table); 0 when the library lacks it. */
static int sym(void *h, const char *name, void *slot, size_t size) {
  void *p = dlsym(h, name);
  if (!p) {
    snprintf(why_buf, sizeof why_buf, "cuBLAS: the loaded library has no %s", name);
    return 0;
  }
  memcpy(slot, &p, size);
  return 1;
}
#define NDL_SYM(h, field, fn) sym((h), NDL_STR(fn), &ndl_cublas.field, sizeof ndl_cublas.field)

static void *open_lib(void) {
  const char *hook = getenv("NDL_CUBLAS_LIB");
  if (hook && *hook) {
    void *h = dlopen(hook, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why_buf, sizeof why_buf, "cannot load cuBLAS (NDL_CUBLAS_LIB=%s): %s", hook, dlerror());
    return h;
  }
  const char *names[] = {"libcublas.so.13",
#ifdef NDL_CUBLAS_PATH
                         NDL_CUBLAS_DIR "/libcublas.so.13", NDL_CUBLAS_PATH,
#endif
                         "libcublas.so"};
  char first[256] = "";
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    if (!first[0]) snprintf(first, sizeof first, "%s", dlerror()); /* the soname's reason is the telling one */
  }
  snprintf(why_buf, sizeof why_buf, "cannot load cuBLAS (libcublas.so.13): %s", first);
  return NULL;
}

static void load(void) {
  void *h = open_lib();
  if (!h) {
    load_why = why_buf;
    return;
  }
  if (!NDL_SYM(h, create, cublasCreate) || !NDL_SYM(h, set_stream, cublasSetStream) ||
      !NDL_SYM(h, set_math_mode, cublasSetMathMode) || !NDL_SYM(h, set_workspace, cublasSetWorkspace) ||
      !NDL_SYM(h, sgemm, cublasSgemm) || !NDL_SYM(h, status_name, cublasGetStatusName) ||
      !NDL_SYM(h, status_string, cublasGetStatusString)) {
    memset(&ndl_cublas, 0, sizeof ndl_cublas);
    dlclose(h);
    load_why = why_buf;
  }
}

const char *ndl_cublas_load(void) {
  pthread_once(&load_once, load);
  return load_why;
}
