/* module_impl.h: helpers for files that define modules (not part of the public nn API). */
#ifndef NDL_MODULE_IMPL_H
#define NDL_MODULE_IMPL_H

#include <stdio.h>

#include "nn/module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Zeroed module of `size` bytes (base first) owning the given children; NULL (children freed) on
 * failure. */
ndl_module *ndl_module_alloc(ndl_nn_env *env, const ndl_module_vtable *vt, size_t size, int nchildren,
                             ndl_module *const *children);
/* Register "prefix.leaf" in store; trainable tensors are also listed in m->params. */
ndl_tensor *ndl_module_add_param(ndl_module *m, ndl_params *store, const char *prefix,
                                 const char *leaf, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif
