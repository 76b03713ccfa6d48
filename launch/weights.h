/* weights.h: the model's parameters and buffers as a PyTorch state_dict in safetensors (SPEC §4):
 * Linear weights stored (out,in) (ours are (in,out)), Linear biases (out), norm weights/biases and
 * running stats (dim), num_batches_tracked an I64 scalar. */
#ifndef NDL_WEIGHTS_H
#define NDL_WEIGHTS_H

#include "launch/safetensors.h"
#include "nn/module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Entries for every parameter and buffer of env in PyTorch's state_dict order (each module's
 * parameters, then its buffers), converted to PyTorch layout from the stores' host mirrors (pulled
 * here first). *entries and the converted data both
 * live in one block owned by *scratch: free only *scratch, with ndl_free. Returns the count or -1
 * (NDL_ERR_NOMEM message). */
int ndl_weights_entries(ndl_nn_env *env, ndl_st_entry **entries, void **scratch);
/* Save env's state_dict to path (atomic). */
ndl_status ndl_weights_save(const char *path, ndl_nn_env *env);
/* Load every parameter and buffer of env from an open file, converting layouts. NDL_ERR_MISMATCH names
 * the file and the tensor: missing tensor, wrong dtype, wrong shape, or an unexpected tensor (names
 * starting with "_ndl." are ignored). On error env is unchanged. Copies into the host mirrors and
 * pushes them to the stores' device. */
ndl_status ndl_weights_load_from(const ndl_st_file *f, const char *path, ndl_nn_env *env);
/* ndl_safetensors_read + ndl_weights_load_from. */
ndl_status ndl_weights_load(const char *path, ndl_nn_env *env);

#ifdef __cplusplus
}
#endif
#endif
