/* backend.c: which backend owns memory of a device. The CPU backend is always built; the CUDA
 * backend (core/cuda/) is linked in when the build has NDL_CUDA, otherwise the stub below says why
 * there is none. Keeps the choice out of tensor.c and ops.c, which only see the vtable. */
#include "core/backend.h"

#ifndef NDL_HAVE_CUDA
const ndl_backend *ndl_backend_cuda(const char **why) {
  if (why) *why = "this ndl-train was built without CUDA (NDL_CUDA=OFF)";
  return NULL;
}
#endif

const ndl_backend *ndl_backend_for(ndl_device d) {
  switch (d) {
    case NDL_DEV_CPU: return ndl_backend_cpu();
    case NDL_DEV_CUDA: return ndl_backend_cuda(NULL);
  }
  return NULL;
}
