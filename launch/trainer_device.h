/* trainer_device.h: the device side of a training run (--device cuda), used by trainer.c. */
#ifndef NDL_TRAINER_DEVICE_H
#define NDL_TRAINER_DEVICE_H

#include "launch/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* On a device backend: check the parameters live in its memory, upload the data sets
 * (t->dev), and with --cuda-graph set up the step capture (t->graph) where it applies. A no-op on
 * the CPU backend. Status + message on failure. */
ndl_status ndl_trainer_device_setup(ndl_trainer *t);
/* Free t->dev and t->graph; safe when either is NULL. */
void ndl_trainer_device_free(ndl_trainer *t);

#ifdef __cplusplus
}
#endif
#endif
