/* idx.h: reader of the IDX files of (Fashion-)MNIST: images (magic 0x00000803, 3 dims, uint8) and
 * labels (magic 0x00000801, 1 dim, uint8), raw or gzip-compressed (chosen by content, not by name).
 * Every malformation is an NDL_ERR_FORMAT with a message naming the file, what was expected and
 * what was found; a missing or unreadable file is NDL_ERR_IO. */
#ifndef NDL_DATA_IDX_H
#define NDL_DATA_IDX_H

#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NDL_IDX_MAGIC_IMAGES 0x00000803u /* 2051: unsigned byte, 3 dims */
#define NDL_IDX_MAGIC_LABELS 0x00000801u /* 2049: unsigned byte, 1 dim */
#define NDL_IDX_MAX_SIDE 65536           /* rows and cols each in [1, NDL_IDX_MAX_SIDE] */
#define NDL_IDX_MAX_ITEMS 1000000000LL   /* item count in [1, NDL_IDX_MAX_ITEMS] */
#define NDL_IDX_MAX_PIXELS (1LL << 31)   /* n * rows * cols at most this */

/* Read an images file. On success *pixels (owned, ndl_free) holds n*rows*cols floats uint8/255.0f,
 * row-major per image. On failure nothing is allocated and the outputs are untouched. */
ndl_status ndl_idx_read_images(const char *path, int64_t *n, int32_t *rows, int32_t *cols,
                               float **pixels);

/* Read a labels file. On success *labels (owned, ndl_free) holds n int32 values in [0, 255]. */
ndl_status ndl_idx_read_labels(const char *path, int64_t *n, int32_t **labels);

#ifdef __cplusplus
}
#endif
#endif
