/* fuzz_safetensors.c: libFuzzer target for the safetensors reader and writer (launch/safetensors.c).
 * An input that parses is written back, re-read and compared entry by entry (name, dtype, shape,
 * bytes) and key by key; writing the re-read file again must give the same bytes (canonical form).
 * Failures must be statuses with a clean one-line message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "launch/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

static void same_file(const ndl_st_file *a, const ndl_st_file *b) {
  if (a->n != b->n || a->nmeta != b->nmeta)
    ndl_fuzz_fail("round trip: %d entries / %d keys became %d / %d", a->n, a->nmeta, b->n, b->nmeta);
  for (int i = 0; i < a->n; i++) {
    const ndl_st_entry *x = &a->entries[i], *y = &b->entries[i];
    if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes ||
        memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof x->shape[0]) ||
        (x->nbytes && memcmp(x->data, y->data, (size_t)x->nbytes)))
      ndl_fuzz_fail("round trip: entry %d (%s) differs", i, x->name);
    if (ndl_safetensors_find(b, x->name) != y) ndl_fuzz_fail("find(%s) is not entry %d", x->name, i);
  }
  for (int i = 0; i < a->nmeta; i++) {
    if (strcmp(a->meta[i].key, b->meta[i].key) || strcmp(a->meta[i].value, b->meta[i].value))
      ndl_fuzz_fail("round trip: metadata %d (%s) differs", i, a->meta[i].key);
    if (ndl_safetensors_meta(b, a->meta[i].key) != b->meta[i].value) ndl_fuzz_fail("meta(%s) lookup", a->meta[i].key);
  }
}

static unsigned char *slurp(const char *path, long *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) ndl_fuzz_fail("cannot reopen %s", path);
  fseek(fp, 0, SEEK_END);
  *len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)*len + 1);
  if (!b || fread(b, 1, (size_t)*len, fp) != (size_t)*len) ndl_fuzz_fail("cannot read back %s", path);
  fclose(fp);
  return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = ndl_fuzz_write("input.safetensors", data, size);
  ndl_st_file f;
  ndl_status s = ndl_safetensors_read(in, &f);
  ndl_fuzz_check_status(s, "ndl_safetensors_read");
  if (s != NDL_OK) return 0;
  char out1[600], out2[600];
  ndl_fuzz_path("out1.safetensors", out1, sizeof out1);
  ndl_fuzz_path("out2.safetensors", out2, sizeof out2);
  if ((s = ndl_safetensors_write(out1, f.entries, f.n, f.meta, f.nmeta)) != NDL_OK)
    ndl_fuzz_fail("writing back a file that parsed: %s", ndl_last_error());
  ndl_st_file g;
  if ((s = ndl_safetensors_read(out1, &g)) != NDL_OK)
    ndl_fuzz_fail("re-reading a written file: %s", ndl_last_error());
  same_file(&f, &g);
  if ((s = ndl_safetensors_write(out2, g.entries, g.n, g.meta, g.nmeta)) != NDL_OK)
    ndl_fuzz_fail("writing the re-read file: %s", ndl_last_error());
  long n1, n2;
  unsigned char *b1 = slurp(out1, &n1), *b2 = slurp(out2, &n2);
  if (n1 != n2 || memcmp(b1, b2, (size_t)n1)) ndl_fuzz_fail("second write differs from the first");
  free(b1);
  free(b2);
  ndl_safetensors_free(&g);
  ndl_safetensors_free(&f);
  return 0;
}
