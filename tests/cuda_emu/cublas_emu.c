/* cublas_emu.c (tests/cuda_emu): the cuBLAS of the emulated device, a shared library the backend
 * dlopens as it would libcublas (cuda_emu.cc points NDL_CUBLAS_LIB here). Arguments are checked as
 * cuBLAS checks them (INVALID_VALUE for negative sizes or short leading dimensions), every operand
 * must lie inside one device allocation (else the emulator aborts, where a GPU would fault), and the
 * GEMM, column-major as cuBLAS's, runs on OpenBLAS when the handle's stream reaches it, with alpha
 * and beta read at the call (host pointer mode). As cuBLAS documents, cublasSetStream resets the
 * workspace to the default pool; a GEMM captured into a graph without a workspace of the caller's
 * (cuBLAS would then allocate inside the capture) aborts naming the fix. Leaves out: TF32 rounding (the backend asks for
 * CUBLAS_DEFAULT_MATH, which is plain fp32), device pointer mode, every other routine. */
#include <cublas_v2.h>

#include <cblas.h>
#include <stdlib.h>

struct cublasContext {
  cudaStream_t stream;
  cublasMath_t math;
  int own_workspace; /* cublasSetWorkspace since the last cublasSetStream */
};

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  *handle = calloc(1, sizeof **handle);
  return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  free(handle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  handle->own_workspace = 0; /* "unconditionally resets the cuBLAS library workspace" */
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_DEFAULT_MATH && mode != CUBLAS_PEDANTIC_MATH)
    ndl_emu_fatal("cublasSetMathMode(%d): only fp32 math (DEFAULT, PEDANTIC) is emulated", (int)mode);
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace, size_t bytes) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes && !ndl_emu_device_range(workspace, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->own_workspace = bytes > 0;
  return CUBLAS_STATUS_SUCCESS;
}

typedef struct gemm {
  enum CBLAS_TRANSPOSE ta, tb;
  int m, n, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
} gemm;

/* Elements an operand of rows x cols (column-major, leading dimension ld) spans. */
static size_t span(int rows, int cols, int ld) { return (size_t)ld * (size_t)(cols - 1) + (size_t)rows; }

static void gemm_run(void *arg) {
  gemm *g = arg;
  /* OpenBLAS's threads touch them too */
  int arows = g->ta == CblasNoTrans ? g->m : g->k, brows = g->tb == CblasNoTrans ? g->k : g->n;
  ndl_emu_open(g->c, span(g->m, g->n, g->ldc) * sizeof(float));
  if (g->k > 0) {
    ndl_emu_open(g->a, span(arows, g->ta == CblasNoTrans ? g->k : g->m, g->lda) * sizeof(float));
    ndl_emu_open(g->b, span(brows, g->tb == CblasNoTrans ? g->n : g->k, g->ldb) * sizeof(float));
  }
  cblas_sgemm(CblasColMajor, g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c,
              g->ldc);
}

/* An operand of rows x cols (column-major, leading dimension ld) must lie in one allocation. */
static void check_operand(const char *name, const void *p, int rows, int cols, int ld) {
  size_t elems = span(rows, cols, ld);
  if (!ndl_emu_device_range(p, elems * sizeof(float)))
    ndl_emu_fatal("cublasSgemm: %s (%p, %d x %d, ld %d) is not inside one device allocation: a GPU faults", name, p,
                  rows, cols, ld);
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                              int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                              const float *beta, float *C, int ldc) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T) || (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T))
    return CUBLAS_STATUS_INVALID_VALUE;
  int arows = transa == CUBLAS_OP_N ? m : k, brows = transb == CUBLAS_OP_N ? k : n;
  if (m < 0 || n < 0 || k < 0 || lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) ||
      ldc < (m > 1 ? m : 1) || !alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (!handle->own_workspace && ndl_emu_capturing(handle->stream))
    ndl_emu_fatal("cublasSgemm captured into a graph on cuBLAS's default workspace pool (cublasSetStream resets the "
                  "workspace to it; cuBLAS would allocate inside the capture): cublasSetWorkspace after cublasSetStream");
  check_operand("C", C, m, n, ldc);
  if (k > 0) {
    check_operand("A", A, arows, transa == CUBLAS_OP_N ? k : m, lda);
    check_operand("B", B, brows, transb == CUBLAS_OP_N ? n : k, ldb);
  }
  gemm *g = malloc(sizeof *g);
  if (!g) return CUBLAS_STATUS_ALLOC_FAILED;
  *g = (gemm){transa == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, transb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
              m, n, k, lda, ldb, ldc, *alpha, *beta, A, B, C};
  if (ndl_emu_enqueue(handle->stream, gemm_run, NULL, free, g) != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

const char *cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    default: return "unknown error";
  }
}
