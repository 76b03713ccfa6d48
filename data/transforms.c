/* transforms.c: RandomFlipHorizontal and RandomCrop of needle's data pipeline. The crop is done as
 * an in-place shift with zero fill (equal to pad-then-crop), walking the image in the direction that
 * never reads an already written element. Leaves out: other torchvision-style transforms. */
#include "data/transforms.h"

void ndl_image_flip_horizontal(float *img, int32_t h, int32_t w, int32_t c) {
  for (int32_t i = 0; i < h; i++) {
    float *row = img + (int64_t)i * w * c;
    for (int32_t a = 0, b = w - 1; a < b; a++, b--)
      for (int32_t k = 0; k < c; k++) {
        float t = row[(int64_t)a * c + k];
        row[(int64_t)a * c + k] = row[(int64_t)b * c + k];
        row[(int64_t)b * c + k] = t;
      }
  }
}

/* Value of the shifted image at (i, j, k), read from the not yet overwritten source. */
static float shifted_at(const float *img, int32_t h, int32_t w, int32_t c, int32_t i, int32_t j, int32_t k,
                        int32_t dh, int32_t dw) {
  int32_t si = i + dh, sj = j + dw;
  if (si < 0 || si >= h || sj < 0 || sj >= w) return 0.0f;
  return img[((int64_t)si * w + sj) * c + k];
}

void ndl_image_shift(float *img, int32_t h, int32_t w, int32_t c, int32_t dh, int32_t dw) {
  /* Element p reads element p + (dh*w + dw)*c: walk up when that offset is >= 0, else down. */
  int64_t off = ((int64_t)dh * w + dw) * c;
  int64_t total = (int64_t)h * w * c;
  for (int64_t t = 0; t < total; t++) {
    int64_t p = off >= 0 ? t : total - 1 - t;
    int32_t k = (int32_t)(p % c), j = (int32_t)((p / c) % w), i = (int32_t)(p / ((int64_t)c * w));
    img[p] = shifted_at(img, h, w, c, i, j, k, dh, dw);
  }
}

int ndl_transform_flip_horizontal(ndl_rng *rng, double p, float *img, int32_t h, int32_t w, int32_t c) {
  int flip = ndl_rng_rand(rng) < p;
  if (flip) ndl_image_flip_horizontal(img, h, w, c);
  return flip;
}

void ndl_transform_random_crop(ndl_rng *rng, int32_t pad, float *img, int32_t h, int32_t w, int32_t c) {
  int32_t dh = (int32_t)ndl_rng_randint(rng, -pad, pad + 1);
  int32_t dw = (int32_t)ndl_rng_randint(rng, -pad, pad + 1);
  ndl_image_shift(img, h, w, c, dh, dw);
}
