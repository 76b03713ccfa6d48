/* device_data.h: the data of a run on a device backend (--device cuda): both data sets uploaded
 * once into the backend's memory; per step this rank's slice is gathered there from the loader's
 * sample indices (the only per-step upload besides dropout masks), or with --augment the loader's
 * augmented slice is uploaded instead. The batch buffers keep their addresses for the whole run (a
 * captured step replays on them). The loader's shuffle and augmentation stay on the host stream. */
#ifndef NDL_DEVICE_DATA_H
#define NDL_DEVICE_DATA_H

#include <stdint.h>

#include "core/backend.h"
#include "data/dataset.h"
#include "data/loader.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Steps whose losses stay on the device between two reads (one process, device_data_keep). */
#define NDL_DEVICE_METRICS_WINDOW 128

/* What the host knows of a step whose loss is kept on the device (1-based step, epoch, batch). */
struct ndl_kept_step {
  int64_t step, epoch, batch, global_count;
};

typedef struct ndl_device_data {
  const ndl_backend *be;     /* borrowed */
  int64_t dim;               /* floats per sample */
  float *train_x, *test_x;   /* whole data sets in backend memory (NULL when not loaded) */
  int32_t *train_y, *test_y;
  int64_t cap;               /* rows of the batch buffers (the global batch size) */
  float *x;                  /* batch rows, cap x dim */
  int32_t *y;                /* batch labels, cap */
  int64_t *idx;              /* batch sample indices, cap */
  double *sums;              /* softmax-CE metric sums (2, backend memory) since the last read */
  /* Steps kept on the device between reads (one process: ndl_device_data_keep): each step's loss,
   * and what the host knows of it, so a read can report and log them in order. */
  float *losses; /* NDL_DEVICE_METRICS_WINDOW floats, backend memory */
  int64_t pending;
  struct ndl_kept_step kept[NDL_DEVICE_METRICS_WINDOW];
} ndl_device_data;

/* Upload train and test (either may be empty: n == 0) into be's memory and allocate batch buffers
 * for cap rows; *out is owned (ndl_device_data_free). NDL_ERR_NOMEM naming the bytes on failure. */
ndl_status ndl_device_data_new(const ndl_backend *be, const ndl_dataset *train, const ndl_dataset *test,
                               int64_t cap, ndl_device_data **out);
void ndl_device_data_free(ndl_device_data *dd);
/* This rank's slice of b into dd->x and dd->y (b->local_count rows): gathered from the uploaded
 * training set by b->indices, or, when augmented, b->images and b->labels uploaded. */
void ndl_device_data_batch(ndl_device_data *dd, const ndl_batch *b, int augmented);
/* Zero dd->sums before a batch whose softmax-CE adds its loss sum and error count there
 * (ndl_nn_softmax_loss_sums), so that neither logits nor labels are read back. */
void ndl_device_data_sums_zero(ndl_device_data *dd);
/* The batch's loss value (a 0-d tensor in backend memory) and its error count from dd->sums,
 * read back to the host: 12 bytes. */
void ndl_device_data_metrics(ndl_device_data *dd, const ndl_tensor *loss, float *loss_out, int64_t *errors_out);
/* Keep a step's loss on the device (a device-to-device copy into dd->losses, nothing read back) with
 * what the host knows of the step; dd->sums keep adding up. Returns 1 when the window is full. */
int ndl_device_data_keep(ndl_device_data *dd, const ndl_tensor *loss, const struct ndl_kept_step *info);
/* Read the kept steps' losses (dd->pending floats into losses_out) and their error count, then zero
 * the sums: one read for up to NDL_DEVICE_METRICS_WINDOW steps. The caller resets dd->pending. */
void ndl_device_data_read(ndl_device_data *dd, float *losses_out, int64_t *errors_out);

#ifdef __cplusplus
}
#endif
#endif
