/* cifar.c: the CIFAR-10 binary reader. Each batch file is opened without blocking (core/file_open:
 * a FIFO fails at once), must be a regular file of a whole, non-zero number of 3073-byte records
 * (checked from its size before allocating), and is decoded record by record straight into the float
 * and label outputs (CHW bytes -> HWC floats /255). A split's files are sized first, then read into
 * one buffer. Leaves out: CIFAR-100 (2 label bytes), the python pickle version, gzip. */
#include "data/cifar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file_open.h"

#define CIFAR_CHUNK 16 /* records per read() */

/* Open path, check it is a regular file holding a whole, non-zero number of records. */
static ndl_status cifar_open(const char *path, int *fd_out, int64_t *records) {
  struct stat sb;
  int fd = ndl_file_open_nonblocking(path, O_RDONLY, 0, &sb);
  if (fd < 0) {
    if (errno == ENOENT) return ndl_errorf(NDL_ERR_IO,
                        "%s: missing CIFAR-10 batch file (the binary version has data_batch_1.bin ... "
                        "data_batch_5.bin and test_batch.bin)",
                        path);
    return ndl_errorf(NDL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  }
  ndl_status s = NDL_OK;
  long long size = (long long)sb.st_size, rec = NDL_CIFAR_RECORD;
  if (!S_ISREG(sb.st_mode))
    s = ndl_errorf(NDL_ERR_IO, "%s: cannot read: %s, expected a regular file", path, ndl_file_kind(sb.st_mode));
  else if (size == 0)
    s = ndl_errorf(NDL_ERR_FORMAT, "%s: empty file, expected records of %lld bytes (CIFAR-10)", path, rec);
  else if (size % rec)
    s = ndl_errorf(NDL_ERR_FORMAT,
                   "%s: truncated record: %lld bytes = %lld records of %lld bytes + %lld, expected whole records "
                   "(CIFAR-10: 1 label byte + 3072 pixel bytes)",
                   path, size, size / rec, rec, size % rec);
  else if (size / rec > NDL_CIFAR_MAX_RECORDS)
    s = ndl_errorf(NDL_ERR_FORMAT, "%s: %lld records, expected at most %d (CIFAR-10)", path, size / rec,
                   NDL_CIFAR_MAX_RECORDS);
  if (s != NDL_OK) {
    close(fd);
    return s;
  }
  *fd_out = fd;
  *records = size / rec;
  return NDL_OK;
}

/* Read up to len bytes (fewer only at end of file). */
static ndl_status cifar_read(int fd, const char *path, unsigned char *buf, size_t len, size_t *got) {
  *got = 0;
  while (*got < len) {
    ssize_t r = read(fd, buf + *got, len - *got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ndl_errorf(NDL_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    if (r == 0) break;
    *got += (size_t)r;
  }
  return NDL_OK;
}

/* Decode `records` records from fd into px (HWC floats) and lab; the file must end right after. */
static ndl_status cifar_decode(int fd, const char *path, int64_t records, float *px, int32_t *lab) {
  unsigned char buf[CIFAR_CHUNK * NDL_CIFAR_RECORD];
  const int plane = NDL_CIFAR_SIDE * NDL_CIFAR_SIDE;
  for (int64_t done = 0; done < records;) {
    int64_t want = records - done < CIFAR_CHUNK ? records - done : CIFAR_CHUNK;
    size_t got = 0;
    ndl_status s = cifar_read(fd, path, buf, (size_t)want * NDL_CIFAR_RECORD, &got);
    if (s != NDL_OK) return s;
    if (got < (size_t)want * NDL_CIFAR_RECORD)
      return ndl_errorf(NDL_ERR_FORMAT, "%s: truncated record %lld: the file shrank while being read (CIFAR-10)",
                        path, (long long)(done + (int64_t)(got / NDL_CIFAR_RECORD)));
    for (int64_t r = 0; r < want; r++, done++) {
      const unsigned char *rec = buf + r * NDL_CIFAR_RECORD;
      if (rec[0] >= NDL_CIFAR_CLASSES)
        return ndl_errorf(NDL_ERR_FORMAT, "%s: record %lld has label %d, expected 0..%d (CIFAR-10)", path,
                          (long long)done, rec[0], NDL_CIFAR_CLASSES - 1);
      lab[done] = rec[0];
      float *dst = px + done * NDL_CIFAR_PIXELS;
      for (int p = 0; p < plane; p++)
        for (int c = 0; c < NDL_CIFAR_CHANNELS; c++) dst[p * NDL_CIFAR_CHANNELS + c] = (float)rec[1 + c * plane + p] / 255.0f;
    }
  }
  unsigned char extra;
  size_t got = 0;
  ndl_status s = cifar_read(fd, path, &extra, 1, &got);
  if (s != NDL_OK) return s;
  if (got)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: oversized: the file grew past %lld records while being read (CIFAR-10)",
                      path, (long long)records);
  return NDL_OK;
}

/* Outputs for `records` records, or NDL_ERR_NOMEM naming what. */
static ndl_status cifar_alloc(const char *what, int64_t records, float **px, int32_t **lab) {
  *px = ndl_malloc((size_t)records * NDL_CIFAR_PIXELS * sizeof(float));
  *lab = ndl_malloc((size_t)records * sizeof(int32_t));
  if (*px && *lab) return NDL_OK;
  ndl_free(*px);
  ndl_free(*lab);
  *px = NULL;
  *lab = NULL;
  return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory for %lld CIFAR-10 images", what, (long long)records);
}

ndl_status ndl_cifar_read_batch(const char *path, int64_t *n, float **pixels, int32_t **labels) {
  int fd = -1;
  int64_t records = 0;
  ndl_status s = cifar_open(path, &fd, &records);
  if (s != NDL_OK) return s;
  float *px = NULL;
  int32_t *lab = NULL;
  s = cifar_alloc(path, records, &px, &lab);
  if (s == NDL_OK) s = cifar_decode(fd, path, records, px, lab);
  close(fd);
  if (s != NDL_OK) {
    ndl_free(px);
    ndl_free(lab);
    return s;
  }
  *n = records;
  *pixels = px;
  *labels = lab;
  return NDL_OK;
}

/* <dir>/<name> into path; NDL_ERR_IO when it does not fit. */
static ndl_status cifar_path(const char *dir, const char *name, char *path, size_t cap) {
  int len = snprintf(path, cap, "%s/%s", dir, name);
  if (len < 0 || (size_t)len >= cap)
    return ndl_errorf(NDL_ERR_IO, "data directory path too long: %zu characters with %s, at most %zu: %.64s...",
                      strlen(dir), name, cap - 1, dir);
  return NDL_OK;
}

static void cifar_file_name(int i, char *name, size_t cap) { /* i in 0..4: training batches; 5: test */
  if (i < NDL_CIFAR_TRAIN_BATCHES) snprintf(name, cap, "data_batch_%d.bin", i + 1);
  else snprintf(name, cap, "test_batch.bin");
}

int ndl_cifar_present(const char *dir) {
  char name[32], path[4096];
  struct stat sb;
  for (int i = 0; i <= NDL_CIFAR_TRAIN_BATCHES; i++) {
    cifar_file_name(i, name, sizeof name);
    if (cifar_path(dir, name, path, sizeof path) == NDL_OK && lstat(path, &sb) == 0) return 1;
  }
  return 0;
}

ndl_status ndl_cifar_load(const char *dir, const char *split, int32_t num_classes, ndl_dataset *out) {
  memset(out, 0, sizeof *out);
  int train = split && !strcmp(split, "train");
  if (!train && (!split || strcmp(split, "t10k") != 0))
    return ndl_errorf(NDL_ERR_ARG, "cifar: split '%s', expected 'train' or 't10k'", split ? split : "(null)");
  if (num_classes < 1 || num_classes > 256)
    return ndl_errorf(NDL_ERR_ARG, "cifar: num_classes %d, expected 1..256", (int)num_classes);
  int first = train ? 0 : NDL_CIFAR_TRAIN_BATCHES, count = train ? NDL_CIFAR_TRAIN_BATCHES : 1;
  char paths[NDL_CIFAR_TRAIN_BATCHES][4096], name[32];
  int fds[NDL_CIFAR_TRAIN_BATCHES];
  int64_t records[NDL_CIFAR_TRAIN_BATCHES], total = 0;
  int opened = 0;
  ndl_status s = NDL_OK;
  for (; opened < count; opened++) { /* size every file before allocating */
    cifar_file_name(first + opened, name, sizeof name);
    if ((s = cifar_path(dir, name, paths[opened], sizeof paths[0])) != NDL_OK) break;
    if ((s = cifar_open(paths[opened], &fds[opened], &records[opened])) != NDL_OK) break;
    total += records[opened];
  }
  if (s == NDL_OK && total > NDL_CIFAR_MAX_RECORDS)
    s = ndl_errorf(NDL_ERR_FORMAT, "%s: %lld training records in all, expected at most %d (CIFAR-10)", dir,
                   (long long)total, NDL_CIFAR_MAX_RECORDS);
  ndl_dataset d;
  memset(&d, 0, sizeof d);
  if (s == NDL_OK) s = cifar_alloc(dir, total, &d.images, &d.labels);
  for (int i = 0, at = 0; s == NDL_OK && i < count; at += (int)records[i], i++)
    s = cifar_decode(fds[i], paths[i], records[i], d.images + (int64_t)at * NDL_CIFAR_PIXELS, d.labels + at);
  for (int i = 0; i < opened; i++) close(fds[i]);
  for (int64_t i = 0; s == NDL_OK && i < total; i++)
    if (d.labels[i] >= num_classes) {
      int64_t at = i, f = 0;
      while (at >= records[f]) at -= records[f++];
      s = ndl_errorf(NDL_ERR_FORMAT, "%s: record %lld has label %d, expected < %d classes", paths[f], (long long)at,
                     (int)d.labels[i], (int)num_classes);
    }
  if (s != NDL_OK) {
    ndl_dataset_free(&d);
    return s;
  }
  d.n = total;
  d.rows = d.cols = NDL_CIFAR_SIDE;
  d.channels = NDL_CIFAR_CHANNELS;
  d.num_classes = num_classes;
  *out = d;
  return NDL_OK;
}
