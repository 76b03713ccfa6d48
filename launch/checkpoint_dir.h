/* checkpoint_dir.h: the checkpoint directory's names (internal to ndl-train): a checkpoint is a file
 * named exactly ckpt-<10 digits>.safetensors; a write in progress is that name plus ".tmp.<pid>"
 * (see ndl_safetensors_write). Nothing else in the directory is ever read, counted or deleted. */
#ifndef NDL_CHECKPOINT_DIR_H
#define NDL_CHECKPOINT_DIR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NDL_CKPT_MAX_STEP 9999999999LL /* the largest step a 10-digit name holds */

/* The step of a name of exactly the form ckpt-<10 digits>.safetensors, or -1. */
int64_t ndl_ckpt_name_step(const char *name);
/* The pid of a name of exactly the form ckpt-<10 digits>.safetensors.tmp.<pid>, or -1. */
int64_t ndl_ckpt_tmp_pid(const char *name);
/* Steps of dir's checkpoints, newest first, into *steps (ndl_malloc'ed; ndl_free it): the count, or -1
 * with errno when dir cannot be read. */
int ndl_ckpt_list(const char *dir, int64_t **steps);
/* Delete dir's temporary checkpoint files left by a process that is gone (or is not an ndl-train of
 * this binary); never this process's own. */
void ndl_ckpt_remove_stale_tmp(const char *dir);
/* Delete dir's checkpoints older than the newest and the newest below it, and stale temporary files. */
void ndl_ckpt_prune(const char *dir, int64_t newest);

#ifdef __cplusplus
}
#endif
#endif
