/* backend.c: which backend owns memory of a device. The CPU backend is always built; the CUDA
 * backend (core/cuda/) is linked in when the build has NDL_CUDA, otherwise the stub below says why
 * there is none. Keeps the choice out of tensor.c and ops.c, which only see the vtable. */
#include "core/backend.h"

#ifndef NDL_HAVE_CUDA
const ndl_backend *ndl_backend_cuda(const char **why) {
  if (why) *why = "this ndl-train was built without CUDA (NDL_CUDA=OFF)";
  return NULL;
}
int ndl_backend_cuda_built(void) { return 0; }
#else
int ndl_backend_cuda_built(void) { return 1; }
#endif

static const ndl_backend *test_backend; /* tests' NDL_DEV_TEST backend */

void ndl_backend_register_test(const ndl_backend *b) {
  NDL_ASSERT(!b || b->device == NDL_DEV_TEST);
  test_backend = b;
}

const ndl_backend *ndl_backend_for(ndl_device d) {
  switch (d) {
    case NDL_DEV_CPU: return ndl_backend_cpu();
    case NDL_DEV_CUDA: return ndl_backend_cuda(NULL);
    case NDL_DEV_TEST: return test_backend;
  }
  return NULL;
}
