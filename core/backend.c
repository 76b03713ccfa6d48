/* backend.c: which backend owns memory of a device. The CPU backend is always built; a device
 * backend (core/cuda/) is added here when the build has one. Keeps the choice out of tensor.c and
 * ops.c, which only see the vtable. */
#include "core/backend.h"

const ndl_backend *ndl_backend_for(ndl_device d) {
  switch (d) {
    case NDL_DEV_CPU: return ndl_backend_cpu();
    case NDL_DEV_CUDA: return NULL; /* no CUDA backend in this build yet */
  }
  return NULL;
}
