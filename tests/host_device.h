// host_device.h: a stand-in "device" backend for tests without a GPU: memory is host memory, but
// the vtable says NDL_DEV_CUDA, so dist/ and launch/ take their device paths (staging, gathers,
// read-backs); every copy is counted by direction, and gather_batch is a plain loop.
#ifndef NDL_TESTS_HOST_DEVICE_H
#define NDL_TESTS_HOST_DEVICE_H

#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct host_device_counts {
  long copies[3];       /* by ndl_copy_kind */
  long long bytes[3];
  long syncs, gathers;
} host_device_counts;

static host_device_counts host_device_n;

static void *hd_alloc(size_t bytes) { return malloc(bytes ? bytes : 1); }
static void hd_free(void *p) { free(p); }
static void hd_copy(void *dst, const void *src, size_t bytes, ndl_copy_kind kind) {
  host_device_n.copies[kind]++;
  host_device_n.bytes[kind] += (long long)bytes;
  if (bytes) memcpy(dst, src, bytes);
}
static void hd_sync(void) { host_device_n.syncs++; }
static void hd_fill(float *dst, float value, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = value;
}
static void hd_gather(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                      const int64_t *idx, int64_t n, int64_t row_len) {
  host_device_n.gathers++;
  for (int64_t i = 0; i < n; i++) {
    memcpy(dst + i * row_len, src + idx[i] * row_len, (size_t)row_len * sizeof(float));
    dst_labels[i] = labels[idx[i]];
  }
}

/* The stand-in backend (name "hostdev"), counters reset. */
static const ndl_backend *host_device(void) {
  static ndl_backend b;
  memset(&b, 0, sizeof b);
  b.name = "hostdev";
  b.device = NDL_DEV_CUDA;
  b.alloc = hd_alloc;
  b.free = hd_free;
  b.copy = hd_copy;
  b.sync = hd_sync;
  b.fill = hd_fill;
  b.gather_batch = hd_gather;
  memset(&host_device_n, 0, sizeof host_device_n);
  return &b;
}

#ifdef __cplusplus
}
#endif
#endif
