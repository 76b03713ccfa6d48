/* checkpoint.h: full training state in DIR/ckpt-<step>.safetensors: the model's state_dict (so a
 * checkpoint also loads with --load), the optimizer's flat state and step count, the shared RNG, the
 * data cursor and the current epoch's running metrics, as named fields a resume validates. Written
 * atomically; the two newest are kept. */
#ifndef NDL_CHECKPOINT_H
#define NDL_CHECKPOINT_H

#include "launch/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Create DIR if needed, check it is writable (NDL_ERR_IO naming it otherwise) and remove temporary files
 * of interrupted writes; NDL_ERR_MISMATCH (with the hint) when DIR holds checkpoints and resume (the
 * --resume directory, or NULL) is not DIR itself: a new run must not mix with an earlier run's files. */
ndl_status ndl_checkpoint_prepare_dir(const char *dir, const char *resume);
/* Whether --checkpoint-every asks for a checkpoint after the current step. */
int ndl_trainer_checkpoint_due(const ndl_trainer *t);
/* Write the trainer's state into cfg.checkpoint_dir. */
ndl_status ndl_trainer_checkpoint(ndl_trainer *t);
/* Restore from the newest usable checkpoint in dir (skipping unreadable or invalid newer ones, with a
 * warning line): NDL_ERR_IO when there is none, NDL_ERR_FORMAT when none is usable (the first reason),
 * NDL_ERR_MISMATCH when it was written with a different model, optimizer or data setup. Validates
 * every field before changing anything. */
ndl_status ndl_trainer_resume(ndl_trainer *t, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
