/* dataset.h: an in-memory labelled image set (n samples of rows x cols x channels floats, int32
 * labels), the MNIST loader that fills one from a directory of IDX files, and the loader that picks
 * IDX or CIFAR-10 (data/cifar.h) by the files a directory holds. */
#ifndef NDL_DATA_DATASET_H
#define NDL_DATA_DATASET_H

#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_dataset {
  int64_t n;          /* samples */
  int32_t rows, cols; /* image height, width */
  int32_t channels;   /* 1 for MNIST */
  int32_t num_classes;
  float *images;      /* n * rows * cols * channels, HWC per sample; owned by the loader function */
  int32_t *labels;    /* n values in [0, num_classes) */
} ndl_dataset;

/* Load <dir>/<split>-images-idx3-ubyte and <split>-labels-idx1-ubyte (each raw, or with a .gz suffix
 * when only that exists; the content decides how it is decoded). split is "train" or "t10k".
 * Checks image count == label count and every label < num_classes. On failure *out is zeroed. */
ndl_status ndl_mnist_load(const char *dir, const char *split, int32_t num_classes, ndl_dataset *out);

/* Load split "train" or "t10k" of dir in whichever format it holds: IDX (ndl_mnist_load) when the
 * split's images file is there, else CIFAR-10 binary (data/cifar) when any of its batch files is in
 * dir or in dir/cifar-10-batches-bin (what the tarball unpacks to), else IDX's missing-file error. */
ndl_status ndl_dataset_load(const char *dir, const char *split, int32_t num_classes, ndl_dataset *out);

/* Release images and labels and zero the struct; NULL or a zeroed struct is a no-op. */
void ndl_dataset_free(ndl_dataset *d);

/* Size of one sample in floats (rows * cols * channels). */
int64_t ndl_dataset_sample_dim(const ndl_dataset *d);

#ifdef __cplusplus
}
#endif
#endif
