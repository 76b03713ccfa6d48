/* cifar.h: reader of the CIFAR-10 binary version (data_batch_1.bin ... data_batch_5.bin,
 * test_batch.bin): records of 1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue,
 * each 32x32 row-major). Pixels become floats /255 in HWC order (CS231n's X.transpose(0,2,3,1)),
 * the layout of ndl_dataset and of the crop/flip transforms. Every malformation is NDL_ERR_FORMAT
 * with a message naming the file; a missing, unreadable or non-regular file is NDL_ERR_IO. */
#ifndef NDL_DATA_CIFAR_H
#define NDL_DATA_CIFAR_H

#include <stdint.h>

#include "core/status.h"
#include "data/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NDL_CIFAR_SIDE 32
#define NDL_CIFAR_CHANNELS 3
#define NDL_CIFAR_PIXELS (NDL_CIFAR_SIDE * NDL_CIFAR_SIDE * NDL_CIFAR_CHANNELS) /* 3072 */
#define NDL_CIFAR_RECORD (1 + NDL_CIFAR_PIXELS)                               /* 3073 bytes */
#define NDL_CIFAR_CLASSES 10
#define NDL_CIFAR_TRAIN_BATCHES 5
#define NDL_CIFAR_MAX_RECORDS 1000000 /* per file and per split (the real files hold 10000 each) */

/* Read one batch file. On success *pixels (n * 3072 floats, HWC per image) and *labels (n values in
 * 0..9) are owned by the caller (ndl_free). The file must be a non-empty whole number of records;
 * its size is checked before anything is allocated. On failure nothing is allocated. */
ndl_status ndl_cifar_read_batch(const char *path, int64_t *n, float **pixels, int32_t **labels);

/* 1 when dir holds any of the CIFAR-10 batch files (the format's signature), else 0. */
int ndl_cifar_present(const char *dir);

/* Load split "train" (data_batch_1..5.bin, in order) or "t10k" (test_batch.bin) of dir into *out
 * (32x32x3, labels < num_classes). A missing batch is NDL_ERR_IO naming it. On failure *out is zeroed. */
ndl_status ndl_cifar_load(const char *dir, const char *split, int32_t num_classes, ndl_dataset *out);

#ifdef __cplusplus
}
#endif
#endif
