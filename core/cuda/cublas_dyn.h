/* cublas_dyn.h: the cuBLAS functions the CUDA backend calls, as a table filled by dlopen/dlsym on
 * the backend's first use (ndl_backend_cuda), so a CPU-only run never maps libcublas/libcublasLt.
 * The prototypes (and so the pointer types) are cublas_v2.h's own. Internal to core/cuda/; C and
 * nvcc both include it. Call sites write ndl_cublas.sgemm(...) where they wrote cublasSgemm(...). */
#ifndef NDL_CUBLAS_DYN_H
#define NDL_CUBLAS_DYN_H

#include <cublas_v2.h>

#ifdef __cplusplus
#define NDL_CUBLAS_FN(f) decltype(&f)
extern "C" {
#else
#define NDL_CUBLAS_FN(f) __typeof__(&f)
#endif

/* (cublas_v2.h maps cublasCreate to cublasCreate_v2 etc.; the macro argument expands to that.) */
typedef struct ndl_cublas_api {
  NDL_CUBLAS_FN(cublasCreate) create;
  NDL_CUBLAS_FN(cublasSetStream) set_stream;
  NDL_CUBLAS_FN(cublasSetMathMode) set_math_mode;
  NDL_CUBLAS_FN(cublasSetWorkspace) set_workspace;
  NDL_CUBLAS_FN(cublasSgemm) sgemm;
  NDL_CUBLAS_FN(cublasGetStatusName) status_name;
  NDL_CUBLAS_FN(cublasGetStatusString) status_string;
} ndl_cublas_api;

/* Filled by the first successful ndl_cublas_load; read-only afterwards. */
extern ndl_cublas_api ndl_cublas;

/* Load cuBLAS once (thread-safe): NULL when the table is ready, else one line naming the library
 * and dlerror's reason (the same line on every later call). NDL_CUBLAS_LIB=PATH (a test hook)
 * makes PATH the only library tried. Declared again, CUDA-free, in tests/test_cuda_lazy.cc. */
const char *ndl_cublas_load(void);

#ifdef __cplusplus
}
#endif
#endif
