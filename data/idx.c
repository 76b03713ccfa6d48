/* idx.c: IDX reader through zlib's gz* stream, which inflates gzip content and passes raw content
 * through unchanged (gzip is detected by its 1f 8b magic, never by the file name). The payload is
 * decoded once, chunk by chunk, straight into the float / int32 output: no uint8 copy of the file.
 * Only regular files are read (opened non-blocking, so a FIFO never blocks), and the header's size
 * claim is checked against the file size before anything is allocated (raw: exactly; gzip: at most
 * deflate's 1032:1 ratio). Leaves out: element types other than unsigned byte, big-endian floats. */
#include "data/idx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/file_open.h"

typedef struct idx_file {
  gzFile gz;
  const char *path;
  long long size; /* bytes in the file */
} idx_file;

#define IDX_DEFLATE_MAX_RATIO 1032LL /* deflate never inflates one byte to more than this */

/* Open a regular file: O_NONBLOCK so that a FIFO without writer cannot block open(). */
static ndl_status idx_open(idx_file *f, const char *path) {
  f->path = path;
  f->gz = NULL;
  struct stat sb;
  int fd = ndl_file_open_nonblocking(path, O_RDONLY, 0, &sb);
  if (fd < 0) return ndl_errorf(NDL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return ndl_errorf(NDL_ERR_IO, "%s: cannot read: %s, expected a regular file", path,
                      ndl_file_kind(sb.st_mode));
  }
  f->size = (long long)sb.st_size;
  if (!(f->gz = gzdopen(fd, "rb"))) {
    close(fd);
    return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory opening the file", path);
  }
  gzbuffer(f->gz, 1 << 17);
  return NDL_OK;
}

/* Before allocating: can the file hold the payload the header claims? A raw file must have exactly
 * header + payload bytes; a gzip file cannot inflate to more than IDX_DEFLATE_MAX_RATIO x its size. */
static ndl_status idx_check_size(idx_file *f, size_t header, size_t payload, const char *kind, const char *what) {
  long long avail = f->size - (long long)header;
  if (gzdirect(f->gz)) {
    if (avail < (long long)payload)
      return ndl_errorf(NDL_ERR_FORMAT, "%s: truncated payload: header says %zu bytes (%s), found %lld (%s)",
                        f->path, payload, what, avail, kind);
    if (avail > (long long)payload)
      return ndl_errorf(NDL_ERR_FORMAT, "%s: oversized payload: header says %zu bytes, found %lld trailing bytes (%s)",
                        f->path, payload, avail - (long long)payload, kind);
    return NDL_OK;
  }
  long long most = f->size * IDX_DEFLATE_MAX_RATIO;
  if ((long long)(header + payload) > most)
    return ndl_errorf(NDL_ERR_FORMAT,
                      "%s: truncated payload: header says %zu bytes (%s), more than a gzip file of %lld bytes "
                      "can hold (%lld at most) (%s)",
                      f->path, payload, what, f->size, most, kind);
  return NDL_OK;
}

/* The output buffer of `count` elements, once the file is known to be able to hold them. */
static ndl_status idx_alloc(idx_file *f, size_t header, size_t count, size_t elem, const char *kind,
                            const char *what, void **out) {
  ndl_status s = idx_check_size(f, header, count, kind, what);
  if (s != NDL_OK) return s;
  if (!(*out = ndl_malloc(count * elem)))
    return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory for %s (%zu bytes)", f->path, what, count * elem);
  return NDL_OK;
}

/* After a short or failed gzread: turn zlib's error state into a status (NDL_OK if plain EOF). */
static ndl_status idx_stream_status(idx_file *f, const char *when) {
  int err = Z_OK;
  const char *msg = gzerror(f->gz, &err);
  if (err == Z_OK) return NDL_OK;
  if (err == Z_ERRNO)
    return ndl_errorf(NDL_ERR_IO, "%s: read failed while reading the %s: %s", f->path, when, strerror(errno));
  if (err == Z_BUF_ERROR)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: truncated gzip stream while reading the %s (%s)", f->path, when,
                      msg);
  if (err == Z_MEM_ERROR) return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory inflating the %s", f->path, when);
  return ndl_errorf(NDL_ERR_FORMAT, "%s: corrupt gzip stream while reading the %s (%s)", f->path, when, msg);
}

/* Read up to len bytes; *got = bytes read. Fails only on a stream/IO error, not on a short read. */
static ndl_status idx_read(idx_file *f, void *buf, size_t len, size_t *got, const char *when) {
  *got = 0;
  while (*got < len) {
    size_t want = len - *got;
    if (want > (1u << 30)) want = 1u << 30;
    int r = gzread(f->gz, (unsigned char *)buf + *got, (unsigned)want);
    if (r < 0) return idx_stream_status(f, when);
    *got += (size_t)r;
    if ((size_t)r < want) return idx_stream_status(f, when);
  }
  return NDL_OK;
}

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Read magic + dims; check magic, element type, dimension count and sizes. */
static ndl_status idx_header(idx_file *f, uint32_t magic, const char *kind, uint32_t *dims) {
  unsigned ndim = magic & 0xffu;
  unsigned char h[16];
  size_t want = 4 + 4 * (size_t)ndim, got = 0;
  ndl_status s = idx_read(f, h, want, &got, "header");
  if (s != NDL_OK) return s;
  if (got < 4)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: truncated header: %zu bytes, expected at least 4 (magic 0x%08X, %s)",
                      f->path, got, magic, kind);
  uint32_t m = be32(h);
  if ((m & 0xffffff00u) != (magic & 0xffffff00u))
    return ndl_errorf(NDL_ERR_FORMAT, "%s: bad magic 0x%08X, expected 0x%08X (%s)", f->path, m, magic, kind);
  if ((m & 0xffu) != ndim)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: magic 0x%08X says %u dimensions, expected %u (0x%08X, %s)", f->path, m,
                      m & 0xffu, ndim, magic, kind);
  if (got < want)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: truncated header: %zu bytes, expected %zu (%s)", f->path, got, want,
                      kind);
  for (unsigned d = 0; d < ndim; d++) dims[d] = be32(h + 4 + 4 * d);
  if (dims[0] == 0) return ndl_errorf(NDL_ERR_FORMAT, "%s: header says 0 items, expected at least 1 (%s)", f->path, kind);
  if ((long long)dims[0] > NDL_IDX_MAX_ITEMS)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: header says %u items, expected at most %lld (%s)", f->path, dims[0],
                      NDL_IDX_MAX_ITEMS, kind);
  for (unsigned d = 1; d < ndim; d++)
    if (dims[d] == 0 || dims[d] > NDL_IDX_MAX_SIDE)
      return ndl_errorf(NDL_ERR_FORMAT, "%s: dimension %u is %u, expected 1..%d (%s)", f->path, d, dims[d],
                        NDL_IDX_MAX_SIDE, kind);
  return NDL_OK;
}

/* After the payload: the stream must end here (and a gzip trailer must check out). */
static ndl_status idx_expect_end(idx_file *f, size_t payload, const char *kind) {
  unsigned char buf[4096];
  size_t extra = 0, got = 0;
  do {
    ndl_status s = idx_read(f, buf, sizeof buf, &got, "end of the payload");
    if (s != NDL_OK) return s;
    extra += got;
  } while (got == sizeof buf && extra < (1u << 24));
  if (extra)
    return ndl_errorf(NDL_ERR_FORMAT, "%s: oversized payload: header says %zu bytes, found %s%zu trailing bytes (%s)",
                      f->path, payload, got == sizeof buf ? "at least " : "", extra, kind);
  return NDL_OK;
}

/* Stream `count` payload bytes through a chunk buffer into `out` via emit(). */
typedef void (*idx_emit_fn)(const unsigned char *src, size_t n, void *out, size_t at);

static void emit_pixels(const unsigned char *src, size_t n, void *out, size_t at) {
  float *dst = (float *)out + at;
  for (size_t i = 0; i < n; i++) dst[i] = (float)src[i] / 255.0f;
}

static void emit_labels(const unsigned char *src, size_t n, void *out, size_t at) {
  int32_t *dst = (int32_t *)out + at;
  for (size_t i = 0; i < n; i++) dst[i] = (int32_t)src[i];
}

static ndl_status idx_payload(idx_file *f, size_t count, idx_emit_fn emit, void *out, const char *kind,
                              const char *what) {
  unsigned char buf[1 << 16];
  size_t done = 0;
  while (done < count) {
    size_t want = count - done < sizeof buf ? count - done : sizeof buf, got = 0;
    ndl_status s = idx_read(f, buf, want, &got, "payload");
    if (s != NDL_OK) return s;
    emit(buf, got, out, done);
    done += got;
    if (got < want)
      return ndl_errorf(NDL_ERR_FORMAT, "%s: truncated payload: header says %zu bytes (%s), found %zu (%s)",
                        f->path, count, what, done, kind);
  }
  return idx_expect_end(f, count, kind);
}

ndl_status ndl_idx_read_images(const char *path, int64_t *n, int32_t *rows, int32_t *cols, float **pixels) {
  idx_file f;
  ndl_status s = idx_open(&f, path);
  if (s != NDL_OK) return s;
  uint32_t dims[3] = {0, 0, 0};
  float *px = NULL;
  s = idx_header(&f, NDL_IDX_MAGIC_IMAGES, "images", dims);
  if (s == NDL_OK) {
    long long total = (long long)dims[0] * dims[1] * dims[2];
    if (total > NDL_IDX_MAX_PIXELS) {
      s = ndl_errorf(NDL_ERR_FORMAT, "%s: header says %u x %u x %u = %lld pixels, expected at most %lld (images)",
                     path, dims[0], dims[1], dims[2], total, NDL_IDX_MAX_PIXELS);
    } else {
      char what[96];
      snprintf(what, sizeof what, "%u images of %ux%u", dims[0], dims[1], dims[2]);
      s = idx_alloc(&f, 16, (size_t)total, sizeof(float), "images", what, (void **)&px);
      if (s == NDL_OK) s = idx_payload(&f, (size_t)total, emit_pixels, px, "images", what);
    }
  }
  gzclose_r(f.gz);
  if (s != NDL_OK) {
    ndl_free(px);
    return s;
  }
  *n = dims[0];
  *rows = (int32_t)dims[1];
  *cols = (int32_t)dims[2];
  *pixels = px;
  return NDL_OK;
}

ndl_status ndl_idx_read_labels(const char *path, int64_t *n, int32_t **labels) {
  idx_file f;
  ndl_status s = idx_open(&f, path);
  if (s != NDL_OK) return s;
  uint32_t dims[1] = {0};
  int32_t *lab = NULL;
  s = idx_header(&f, NDL_IDX_MAGIC_LABELS, "labels", dims);
  if (s == NDL_OK) {
    char what[64];
    snprintf(what, sizeof what, "%u labels", dims[0]);
    s = idx_alloc(&f, 8, dims[0], sizeof(int32_t), "labels", what, (void **)&lab);
    if (s == NDL_OK) s = idx_payload(&f, dims[0], emit_labels, lab, "labels", what);
  }
  gzclose_r(f.gz);
  if (s != NDL_OK) {
    ndl_free(lab);
    return s;
  }
  *n = dims[0];
  *labels = lab;
  return NDL_OK;
}
