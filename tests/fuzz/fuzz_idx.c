/* fuzz_idx.c: libFuzzer target for the IDX reader (data/idx.c). Each input is read as an images file
 * and as a labels file twice: as given (raw, or gzip when it starts with 1f 8b) and gzip-compressed
 * by the target, so mutations reach the header checks through inflate too. Checks: only statuses,
 * clean one-line messages, decoded values in range, and the same outcome raw and compressed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/alloc.h"
#include "data/idx.h"
#include "tests/fuzz/fuzz_util.h"

typedef struct idx_result {
  ndl_status img_s, lab_s;
  int64_t img_n, lab_n;
  int32_t rows, cols;
  float *pixels;
  int32_t *labels;
} idx_result;

static void read_both(const char *path, idx_result *r) {
  memset(r, 0, sizeof *r);
  r->img_s = ndl_idx_read_images(path, &r->img_n, &r->rows, &r->cols, &r->pixels);
  ndl_fuzz_check_status(r->img_s, "ndl_idx_read_images");
  if (r->img_s == NDL_OK) {
    if (r->img_n < 1 || r->rows < 1 || r->cols < 1 || !r->pixels)
      ndl_fuzz_fail("images: n %lld rows %d cols %d", (long long)r->img_n, r->rows, r->cols);
    int64_t total = r->img_n * r->rows * r->cols;
    for (int64_t i = 0; i < total; i++)
      if (!(r->pixels[i] >= 0.0f && r->pixels[i] <= 1.0f)) ndl_fuzz_fail("pixel %lld out of [0,1]", (long long)i);
  }
  r->lab_s = ndl_idx_read_labels(path, &r->lab_n, &r->labels);
  ndl_fuzz_check_status(r->lab_s, "ndl_idx_read_labels");
  if (r->lab_s == NDL_OK) {
    if (r->lab_n < 1 || !r->labels) ndl_fuzz_fail("labels: n %lld", (long long)r->lab_n);
    for (int64_t i = 0; i < r->lab_n; i++)
      if (r->labels[i] < 0 || r->labels[i] > 255) ndl_fuzz_fail("label %lld is %d", (long long)i, r->labels[i]);
  }
}

static void free_result(idx_result *r) {
  ndl_free(r->pixels);
  ndl_free(r->labels);
}

static void write_gzip(const char *path, const uint8_t *data, size_t size) {
  gzFile gz = gzopen(path, "wb1");
  if (!gz) ndl_fuzz_fail("gzopen %s", path);
  if (size && gzwrite(gz, data, (unsigned)size) != (int)size) ndl_fuzz_fail("gzwrite %s", path);
  if (gzclose(gz) != Z_OK) ndl_fuzz_fail("gzclose %s", path);
}

static void same(const idx_result *a, const idx_result *b) {
  if (a->img_s != b->img_s || a->lab_s != b->lab_s)
    ndl_fuzz_fail("raw vs gzip: images %d/%d labels %d/%d", a->img_s, b->img_s, a->lab_s, b->lab_s);
  if (a->img_s == NDL_OK &&
      (a->img_n != b->img_n || a->rows != b->rows || a->cols != b->cols ||
       memcmp(a->pixels, b->pixels, (size_t)(a->img_n * a->rows * a->cols) * sizeof(float))))
    ndl_fuzz_fail("raw vs gzip: different images");
  if (a->lab_s == NDL_OK &&
      (a->lab_n != b->lab_n || memcmp(a->labels, b->labels, (size_t)a->lab_n * sizeof(int32_t))))
    ndl_fuzz_fail("raw vs gzip: different labels");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  idx_result raw, gz;
  read_both(ndl_fuzz_write("input", data, size), &raw);
  int is_gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  char path[600];
  ndl_fuzz_path("input.gz", path, sizeof path);
  write_gzip(path, data, size);
  read_both(path, &gz);
  if (!is_gzip) same(&raw, &gz);
  free_result(&raw);
  free_result(&gz);
  return 0;
}
