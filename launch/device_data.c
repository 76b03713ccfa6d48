/* device_data.c: data sets uploaded once into a device backend's memory, the per-step gather of a
 * rank's slice by sample index (backend->gather_batch), and the read-back of a step's loss and error
 * count. Every device access goes through the backend's vtable.
 * Leaves out: the loader (shuffle, augmentation: data/loader.c, on the host RNG stream). */
#include "launch/device_data.h"

#include <string.h>

#include "core/alloc.h"

/* n bytes of backend memory, or NULL with NDL_ERR_NOMEM naming what. */
static void *dev_alloc(const ndl_backend *be, size_t bytes, const char *what) {
  void *p = bytes ? be->alloc(bytes) : NULL;
  if (bytes && !p) ndl_errorf(NDL_ERR_NOMEM, "--device %s: out of device memory for %s (%zu bytes)", be->name, what, bytes);
  return p;
}

static ndl_status upload(const ndl_backend *be, const ndl_dataset *ds, int64_t dim, float **x, int32_t **y,
                         const char *what) {
  if (ds->n == 0) return NDL_OK;
  size_t xb = (size_t)ds->n * (size_t)dim * sizeof(float), yb = (size_t)ds->n * sizeof(int32_t);
  if (!(*x = dev_alloc(be, xb, what)) || !(*y = dev_alloc(be, yb, what))) return NDL_ERR_NOMEM;
  be->copy(*x, ds->images, xb, NDL_COPY_H2D);
  be->copy(*y, ds->labels, yb, NDL_COPY_H2D);
  return NDL_OK;
}

ndl_status ndl_device_data_new(const ndl_backend *be, const ndl_dataset *train, const ndl_dataset *test,
                               int64_t cap, ndl_device_data **out) {
  NDL_ASSERT(be && be->gather_batch && train && test && cap > 0 && out);
  *out = NULL;
  ndl_device_data *dd = ndl_calloc(1, sizeof *dd);
  if (!dd) return ndl_errorf(NDL_ERR_NOMEM, "out of memory for the device data");
  dd->be = be;
  dd->cap = cap;
  dd->dim = train->n ? ndl_dataset_sample_dim(train) : test->n ? ndl_dataset_sample_dim(test) : 1;
  ndl_status st = upload(be, train, dd->dim, &dd->train_x, &dd->train_y, "the training set");
  if (st == NDL_OK) st = upload(be, test, dd->dim, &dd->test_x, &dd->test_y, "the test set");
  if (st == NDL_OK && (!(dd->x = dev_alloc(be, (size_t)(cap * dd->dim) * sizeof(float), "the batch")) ||
                       !(dd->y = dev_alloc(be, (size_t)cap * sizeof(int32_t), "the batch labels")) ||
                       !(dd->idx = dev_alloc(be, (size_t)cap * sizeof(int64_t), "the batch indices")) ||
                       !(dd->sums = dev_alloc(be, 2 * sizeof(double), "the metric sums")) ||
                       !(dd->losses = dev_alloc(be, NDL_DEVICE_METRICS_WINDOW * sizeof(float), "the kept losses"))))
    st = NDL_ERR_NOMEM;
  if (st == NDL_OK) ndl_device_data_sums_zero(dd);
  be->sync(); /* the uploads are done before the host data may change */
  if (st != NDL_OK) {
    ndl_device_data_free(dd);
    return st;
  }
  *out = dd;
  return NDL_OK;
}

void ndl_device_data_free(ndl_device_data *dd) {
  if (!dd) return;
  const ndl_backend *be = dd->be;
  be->sync();
  be->free(dd->train_x);
  be->free(dd->train_y);
  be->free(dd->test_x);
  be->free(dd->test_y);
  be->free(dd->x);
  be->free(dd->y);
  be->free(dd->idx);
  be->free(dd->sums);
  be->free(dd->losses);
  ndl_free(dd);
}

void ndl_device_data_batch(ndl_device_data *dd, const ndl_batch *b, int augmented) {
  int64_t n = b->local_count;
  NDL_ASSERT(n >= 0 && n <= dd->cap);
  if (n == 0) return;
  const ndl_backend *be = dd->be;
  if (augmented) { /* the crop/flip draws are the host stream's: upload their result */
    be->copy(dd->x, b->images, (size_t)(n * dd->dim) * sizeof(float), NDL_COPY_H2D);
    be->copy(dd->y, b->labels, (size_t)n * sizeof(int32_t), NDL_COPY_H2D);
    return;
  }
  be->copy(dd->idx, b->indices, (size_t)n * sizeof(int64_t), NDL_COPY_H2D);
  be->gather_batch(dd->x, dd->y, dd->train_x, dd->train_y, dd->idx, n, dd->dim);
}

void ndl_device_data_sums_zero(ndl_device_data *dd) {
  dd->be->fill((float *)dd->sums, 0.0f, 4); /* two doubles: all-zero bits */
}

int ndl_device_data_keep(ndl_device_data *dd, const ndl_tensor *loss, const struct ndl_kept_step *info) {
  NDL_ASSERT(dd->pending < NDL_DEVICE_METRICS_WINDOW);
  dd->be->copy(dd->losses + dd->pending, ndl_tensor_ptr(loss), sizeof(float), NDL_COPY_D2D);
  dd->kept[dd->pending++] = *info;
  return dd->pending == NDL_DEVICE_METRICS_WINDOW;
}

void ndl_device_data_read(ndl_device_data *dd, float *losses_out, int64_t *errors_out) {
  double sums[2];
  if (dd->pending) dd->be->copy(losses_out, dd->losses, (size_t)dd->pending * sizeof(float), NDL_COPY_D2H);
  dd->be->copy(sums, dd->sums, sizeof sums, NDL_COPY_D2H);
  *errors_out = (int64_t)sums[1];
  ndl_device_data_sums_zero(dd);
}

void ndl_device_data_metrics(ndl_device_data *dd, const ndl_tensor *loss, float *loss_out, int64_t *errors_out) {
  double sums[2];
  dd->be->copy(loss_out, ndl_tensor_ptr(loss), sizeof(float), NDL_COPY_D2H);
  dd->be->copy(sums, dd->sums, sizeof sums, NDL_COPY_D2H); /* (D2H copies are complete on return) */
  *errors_out = (int64_t)sums[1];
}
