/* cublas_dyn.c: cuBLAS on first use: dlopen libcublas.so.13 (the loader's search: LD_LIBRARY_PATH,
 * the system's), then the library CMake found at configure time (its directory's libcublas.so.13,
 * itself: NDL_CUBLAS_DIR, NDL_CUBLAS_PATH), then libcublas.so; dlsym every function of the table. Nothing here runs until the CUDA
 * backend is first asked for (core/dynlib.c does the loading), so a CPU run maps no cuBLAS (tests/test_cuda_lazy.sh checks ldd).
 * Leaves out: unloading (the backend lives until exit). */
#include "core/cuda/cublas_dyn.h"

#include <pthread.h>

#include "core/dynlib.h"

ndl_cublas_api ndl_cublas;

#define NDL_STR_(x) #x
#define NDL_STR(x) NDL_STR_(x) /* expands cublas_v2.h's macro first: cublasCreate -> "cublasCreate_v2" */

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *load_why; /* NULL: loaded */
static char why_buf[512];

static void load(void) {
  const char *names[] = {"libcublas.so.13",
#ifdef NDL_CUBLAS_PATH
                         NDL_CUBLAS_DIR "/libcublas.so.13", NDL_CUBLAS_PATH,
#endif
                         "libcublas.so"};
  const ndl_dynlib_sym syms[] = {
      {NDL_STR(cublasCreate), &ndl_cublas.create},
      {NDL_STR(cublasSetStream), &ndl_cublas.set_stream},
      {NDL_STR(cublasSetMathMode), &ndl_cublas.set_math_mode},
      {NDL_STR(cublasSetWorkspace), &ndl_cublas.set_workspace},
      {NDL_STR(cublasSgemm), &ndl_cublas.sgemm},
      {NDL_STR(cublasGetStatusName), &ndl_cublas.status_name},
      {NDL_STR(cublasGetStatusString), &ndl_cublas.status_string},
  };
  if (!ndl_dynlib_load("cuBLAS", "NDL_CUBLAS_LIB", names, sizeof names / sizeof names[0], syms,
                       sizeof syms / sizeof syms[0], why_buf, sizeof why_buf))
    load_why = why_buf;
}

const char *ndl_cublas_load(void) {
  pthread_once(&load_once, load);
  return load_why;
}
