/* dataset.c: MNIST-style dataset from IDX files: locates the image and label files of a split
 * (raw preferred, else .gz), reads them with data/idx, and cross-checks counts and label range;
 * ndl_dataset_load picks IDX or CIFAR-10 (data/cifar) by the files of the directory.
 * Leaves out: any transform (data/transforms) and batching (data/loader). */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "data/cifar.h"
#include "data/idx.h"

/* Fill path with <dir>/<stem> or <dir>/<stem>.gz, whichever exists (raw first). */
static ndl_status find_file(const char *dir, const char *stem, char *path, size_t cap) {
  struct stat st;
  const char *suffix[2] = {"", ".gz"};
  for (int i = 0; i < 2; i++) {
    int len = snprintf(path, cap, "%s/%s%s", dir, stem, suffix[i]);
    if (len < 0 || (size_t)len >= cap) /* the reason first: the path itself may fill the message */
      return ndl_errorf(NDL_ERR_IO, "data directory path too long: %zu characters with %s%s, at most %zu: %.64s...%s",
                        strlen(dir), stem, suffix[i], cap - 1, dir, dir + (strlen(dir) > 64 ? strlen(dir) - 64 : 0));
    if (stat(path, &st) == 0) return NDL_OK;
  }
  return ndl_errorf(NDL_ERR_IO, "%s: neither %s nor %s.gz found in the data directory", dir, stem, stem);
}

ndl_status ndl_mnist_load(const char *dir, const char *split, int32_t num_classes, ndl_dataset *out) {
  memset(out, 0, sizeof *out);
  if (!split || (strcmp(split, "train") != 0 && strcmp(split, "t10k") != 0))
    return ndl_errorf(NDL_ERR_ARG, "mnist: split '%s', expected 'train' or 't10k'", split ? split : "(null)");
  if (num_classes < 1 || num_classes > 256)
    return ndl_errorf(NDL_ERR_ARG, "mnist: num_classes %d, expected 1..256", (int)num_classes);
  struct stat st;
  if (stat(dir, &st) != 0)
    return ndl_errorf(NDL_ERR_IO, "%s: cannot open data directory: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return ndl_errorf(NDL_ERR_IO, "%s: not a directory (data directory expected)", dir);

  char img_path[4096], lab_path[4096], stem[64];
  snprintf(stem, sizeof stem, "%s-images-idx3-ubyte", split);
  ndl_status s = find_file(dir, stem, img_path, sizeof img_path);
  if (s != NDL_OK) return s;
  snprintf(stem, sizeof stem, "%s-labels-idx1-ubyte", split);
  if ((s = find_file(dir, stem, lab_path, sizeof lab_path)) != NDL_OK) return s;

  ndl_dataset d;
  memset(&d, 0, sizeof d);
  int64_t n_labels = 0;
  if ((s = ndl_idx_read_images(img_path, &d.n, &d.rows, &d.cols, &d.images)) != NDL_OK) return s;
  if ((s = ndl_idx_read_labels(lab_path, &n_labels, &d.labels)) != NDL_OK) {
    ndl_dataset_free(&d);
    return s;
  }
  if (n_labels != d.n) {
    s = ndl_errorf(NDL_ERR_FORMAT, "%s has %lld images but %s has %lld labels, expected equal counts", img_path,
                   (long long)d.n, lab_path, (long long)n_labels);
    ndl_dataset_free(&d);
    return s;
  }
  for (int64_t i = 0; i < d.n; i++) {
    if (d.labels[i] >= num_classes) {
      s = ndl_errorf(NDL_ERR_FORMAT, "%s: label %lld is %d, expected < %d classes", lab_path, (long long)i,
                     (int)d.labels[i], (int)num_classes);
      ndl_dataset_free(&d);
      return s;
    }
  }
  d.channels = 1;
  d.num_classes = num_classes;
  *out = d;
  return NDL_OK;
}

ndl_status ndl_dataset_load(const char *dir, const char *split, int32_t num_classes, ndl_dataset *out) {
  char stem[64], path[4096], sub[4096];
  struct stat st;
  snprintf(stem, sizeof stem, "%s-images-idx3-ubyte", split ? split : "");
  for (int gz = 0; gz < 2; gz++) { /* IDX first: a directory with the split's images file is IDX */
    int len = snprintf(path, sizeof path, "%s/%s%s", dir, stem, gz ? ".gz" : "");
    if (len > 0 && (size_t)len < sizeof path && stat(path, &st) == 0) return ndl_mnist_load(dir, split, num_classes, out);
  }
  if (ndl_cifar_present(dir)) return ndl_cifar_load(dir, split, num_classes, out);
  int len = snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
  if (len > 0 && (size_t)len < sizeof sub && ndl_cifar_present(sub)) return ndl_cifar_load(sub, split, num_classes, out);
  return ndl_mnist_load(dir, split, num_classes, out);
}

void ndl_dataset_free(ndl_dataset *d) {
  if (!d) return;
  ndl_free(d->images);
  ndl_free(d->labels);
  memset(d, 0, sizeof *d);
}

int64_t ndl_dataset_sample_dim(const ndl_dataset *d) {
  return (int64_t)d->rows * d->cols * (d->channels > 0 ? d->channels : 1);
}
