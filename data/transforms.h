/* transforms.h: needle's image augmentations on one HxWxC float image, in place, drawing from a
 * numpy-compatible ndl_rng exactly as needle does (so a seeded run reproduces needle's draws). */
#ifndef NDL_DATA_TRANSFORMS_H
#define NDL_DATA_TRANSFORMS_H

#include <stdint.h>

#include "core/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* needle RandomFlipHorizontal(p): one rand(); flips the W axis iff rand < p. Returns 1 if flipped. */
int ndl_transform_flip_horizontal(ndl_rng *rng, double p, float *img, int32_t h, int32_t w, int32_t c);

/* needle RandomCrop(pad): shift_h = randint(-pad, pad+1), then shift_w = randint(-pad, pad+1); the
 * result is the HxW window at (pad+shift_h, pad+shift_w) of the image zero-padded by pad. pad >= 0. */
void ndl_transform_random_crop(ndl_rng *rng, int32_t pad, float *img, int32_t h, int32_t w, int32_t c);

/* Deterministic parts. Mirror the W axis in place. */
void ndl_image_flip_horizontal(float *img, int32_t h, int32_t w, int32_t c);
/* out[i][j] = img[i+dh][j+dw] (zero outside), in place. */
void ndl_image_shift(float *img, int32_t h, int32_t w, int32_t c, int32_t dh, int32_t dw);

#ifdef __cplusplus
}
#endif
#endif
