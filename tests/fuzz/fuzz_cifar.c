/* fuzz_cifar.c: libFuzzer target for the CIFAR-10 binary reader (data/cifar.c). Each input is read as
 * one batch file and, as test_batch.bin of the scratch directory, through ndl_dataset_load (format
 * detection + split loading). Checks: only statuses with clean one-line messages; what parses has
 * size/3073 records, labels 0..9, and every pixel equal to its input byte /255 at its HWC place; the
 * two paths agree. */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "data/cifar.h"
#include "data/dataset.h"
#include "tests/fuzz/fuzz_util.h"

static void check_decoded(const uint8_t *data, size_t size, int64_t n, const float *px, const int32_t *lab) {
  if (n < 1 || (size_t)n * NDL_CIFAR_RECORD != size || !px || !lab)
    ndl_fuzz_fail("parsed %lld records from %zu bytes", (long long)n, size);
  for (int64_t i = 0; i < n; i++) {
    const uint8_t *rec = data + i * NDL_CIFAR_RECORD;
    if (lab[i] != rec[0] || lab[i] > 9) ndl_fuzz_fail("record %lld: label %d, byte %d", (long long)i, lab[i], rec[0]);
    for (int c = 0; c < 3; c++)
      for (int p = 0; p < 1024; p++)
        if (px[i * NDL_CIFAR_PIXELS + p * 3 + c] != (float)rec[1 + c * 1024 + p] / 255.0f)
          ndl_fuzz_fail("record %lld: pixel %d channel %d", (long long)i, p, c);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = ndl_fuzz_write("test_batch.bin", data, size);
  int64_t n = 0;
  float *px = NULL;
  int32_t *lab = NULL;
  ndl_status s = ndl_cifar_read_batch(path, &n, &px, &lab);
  ndl_fuzz_check_status(s, "ndl_cifar_read_batch");
  if (s == NDL_OK) check_decoded(data, size, n, px, lab);
  else if (px || lab) ndl_fuzz_fail("ndl_cifar_read_batch failed but left outputs");

  ndl_dataset d;
  ndl_status t = ndl_dataset_load(ndl_fuzz_dir(), "t10k", 10, &d);
  ndl_fuzz_check_status(t, "ndl_dataset_load");
  if (t != s) ndl_fuzz_fail("ndl_dataset_load returned %d, ndl_cifar_read_batch %d", (int)t, (int)s);
  if (t == NDL_OK) {
    if (d.n != n || d.rows != 32 || d.cols != 32 || d.channels != 3 ||
        memcmp(d.images, px, (size_t)n * NDL_CIFAR_PIXELS * sizeof(float)) ||
        memcmp(d.labels, lab, (size_t)n * sizeof(int32_t)))
      ndl_fuzz_fail("ndl_dataset_load and ndl_cifar_read_batch disagree");
    ndl_dataset_free(&d);
  }
  ndl_free(px);
  ndl_free(lab);
  return 0;
}
