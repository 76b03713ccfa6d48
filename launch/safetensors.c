/* safetensors.c: the safetensors container (8-byte LE header length, JSON header, raw LE data).
 * The writer emits entries in the given order after an optional "__metadata__" object, pads the
 * header with spaces to a multiple of 8 and writes atomically (temp file, fsync, rename). The reader
 * holds a small strict JSON parser for exactly this header subset and checks every offset against the
 * body. Names and values read from a file are escaped in messages. Leaves out: dtypes other than
 * F32/I64/U8/U32, big-endian hosts (asserted), memory mapping. */
#include "launch/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file_open.h"
#include "core/tensor.h"
#include "launch/st_json.h"

#define ST_MAX_HEADER (100 * 1024 * 1024) /* as the reference implementation */

#define ST_NDTYPES 4
static const char *const dtype_names[ST_NDTYPES] = {"F32", "I64", "U8", "U32"};
static const int64_t dtype_sizes[ST_NDTYPES] = {4, 8, 1, 4};

const char *ndl_st_dtype_name(ndl_st_dtype d) {
  return (int)d >= 0 && (int)d < ST_NDTYPES ? dtype_names[d] : "?";
}

const char *ndl_st_escape(const char *s, char *buf, size_t cap) {
  size_t n = 0;
  if (cap == 0) return buf;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char e[8];
    if (c == '\\' || c == '\n' || c == '\r' || c == '\t')
      snprintf(e, sizeof e, "\\%c", c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
    else if (c < 0x20 || c == 0x7f)
      snprintf(e, sizeof e, "\\x%02x", c);
    else
      e[0] = (char)c, e[1] = '\0';
    size_t k = strlen(e);
    if (n + k >= cap) break;
    memcpy(buf + n, e, k);
    n += k;
  }
  buf[n] = '\0';
  return buf;
}

/* Declare char NAME[] holding the escaped form of the string S, cut at 200 bytes (for messages). */
#define ESC(name, s) \
  char name[200];    \
  ndl_st_escape(s, name, sizeof name)

static void assert_little_endian(void) {
  const uint16_t probe = 1;
  unsigned char b;
  memcpy(&b, &probe, 1);
  if (b != 1) NDL_ABORT("safetensors: big-endian hosts are not supported");
}

/* numel * itemsize, or -1 on a negative dim or overflow. */
static int64_t entry_bytes(ndl_st_dtype dt, int ndim, const int64_t *shape) {
  int64_t n = dtype_sizes[dt];
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] != 0 && n > INT64_MAX / 4 / shape[i]) return -1;
    n *= shape[i];
  }
  return n;
}

/* ---------------------------------------------------------------- writer */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1) cap *= 2;
    char *q = (char *)ndl_realloc(b->p, b->cap, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt_i64(sbuf *b, int64_t v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
  sb_put(b, tmp, (size_t)n);
}

/* A JSON string literal: quotes, backslashes and control bytes escaped; other bytes verbatim. */
static void sb_json_str(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sb_put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", c);
      sb_put(b, e, 6);
    } else {
      sb_put(b, (const char *)&c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

/* Header JSON padded with spaces to a multiple of 8; NDL_ERR_ARG for inconsistent entries. */
static ndl_status build_header(const char *path, const ndl_st_entry *e, int n, const ndl_st_meta *meta,
                               int nmeta, sbuf *b) {
  sb_put(b, "{", 1);
  if (nmeta > 0) {
    sb_str(b, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i) sb_put(b, ",", 1);
      sb_json_str(b, meta[i].key);
      sb_put(b, ":", 1);
      sb_json_str(b, meta[i].value);
    }
    sb_put(b, "}", 1);
  }
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    if ((int)e[i].dtype < 0 || (int)e[i].dtype >= ST_NDTYPES || e[i].ndim < 0 || e[i].ndim > 8)
      return ndl_errorf(NDL_ERR_ARG, "%s: tensor %s: bad dtype or rank", path, e[i].name);
    int64_t want = entry_bytes(e[i].dtype, e[i].ndim, e[i].shape);
    if (want != e[i].nbytes || (want > 0 && !e[i].data))
      return ndl_errorf(NDL_ERR_ARG, "%s: tensor %s: nbytes %lld, shape and dtype need %lld", path,
                        e[i].name, (long long)e[i].nbytes, (long long)want);
    if (i || nmeta > 0) sb_put(b, ",", 1);
    sb_json_str(b, e[i].name);
    sb_str(b, ":{\"dtype\":\"");
    sb_str(b, dtype_names[e[i].dtype]);
    sb_str(b, "\",\"shape\":[");
    for (int d = 0; d < e[i].ndim; d++) {
      if (d) sb_put(b, ",", 1);
      sb_fmt_i64(b, e[i].shape[d]);
    }
    sb_str(b, "],\"data_offsets\":[");
    sb_fmt_i64(b, off);
    sb_put(b, ",", 1);
    off += e[i].nbytes;
    sb_fmt_i64(b, off);
    sb_str(b, "]}");
  }
  sb_put(b, "}", 1);
  while (!b->oom && b->len % 8) sb_put(b, " ", 1);
  if (b->oom) return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory building the header", path);
  return NDL_OK;
}

static void fsync_parent_dir(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    strcpy(dir, ".");
  } else {
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1;
    if (n >= sizeof dir) return;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    (void)fsync(fd); /* best effort: the rename is already visible */
    close(fd);
  }
}

ndl_status ndl_safetensors_write(const char *path, const ndl_st_entry *entries, int n,
                                 const ndl_st_meta *meta, int nmeta) {
  assert_little_endian();
  NDL_ASSERT(path && n >= 0 && nmeta >= 0 && (n == 0 || entries) && (nmeta == 0 || meta));
  sbuf hb = {0};
  ndl_status st = build_header(path, entries, n, meta, nmeta, &hb);
  if (st != NDL_OK) {
    ndl_free(hb.p);
    return st;
  }
  size_t plen = strlen(path);
  char *tmp = (char *)ndl_malloc(plen + 32);
  if (!tmp) {
    ndl_free(hb.p);
    return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory", path);
  }
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());

  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    int err = errno;
    ndl_free(hb.p);
    st = ndl_errorf(NDL_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(err));
    ndl_free(tmp);
    return st;
  }
  unsigned char lenb[8];
  uint64_t hl = hb.len;
  for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hl >> (8 * i));
  int ok = fwrite(lenb, 1, 8, fp) == 8 && fwrite(hb.p, 1, hb.len, fp) == hb.len;
  for (int i = 0; ok && i < n; i++)
    if (entries[i].nbytes > 0)
      ok = fwrite(entries[i].data, 1, (size_t)entries[i].nbytes, fp) == (size_t)entries[i].nbytes;
  const char *what = "write";
  if (ok && fflush(fp) != 0) ok = 0, what = "flush";
  if (ok && fsync(fileno(fp)) != 0) ok = 0, what = "fsync";
  int err = ok ? 0 : errno;
  if (fclose(fp) != 0 && ok) ok = 0, what = "close", err = errno;
  if (ok && rename(tmp, path) != 0) ok = 0, what = "rename", err = errno;
  ndl_free(hb.p);
  if (!ok) {
    remove(tmp);
    st = ndl_errorf(NDL_ERR_IO, "%s: %s of %s failed: %s", path, what, tmp,
                    strerror(err ? err : EIO));
    ndl_free(tmp);
    return st;
  }
  ndl_free(tmp);
  fsync_parent_dir(path);
  return NDL_OK;
}

/* ---------------------------------------------------------------- reader */

typedef struct st_raw {
  ndl_st_entry e;
  int64_t begin, end;
} st_raw;

static int parse_meta(ndl_json *p, ndl_st_file *out, size_t *metacap) {
  if (ndl_json_expect(p, '{')) return -1;
  if (ndl_json_peek(p, '}')) {
    p->pos++;
    return 0;
  }
  for (;;) {
    if ((size_t)out->nmeta == *metacap) {
      size_t cap = *metacap ? *metacap * 2 : 8;
      ndl_st_meta *m = (ndl_st_meta *)ndl_realloc(out->meta, *metacap * sizeof *m, cap * sizeof *m);
      if (!m) {
        snprintf(p->err, sizeof p->err, "out of memory");
        return -1;
      }
      out->meta = m;
      *metacap = cap;
    }
    ndl_st_meta *m = &out->meta[out->nmeta];
    if (ndl_json_string(p, m->key, sizeof m->key, "a metadata key string")) return -1;
    if (ndl_json_expect(p, ':')) return -1;
    if (ndl_json_string(p, m->value, sizeof m->value, "a metadata value string")) return -1;
    for (int i = 0; i < out->nmeta; i++)
      if (!strcmp(out->meta[i].key, m->key)) {
        ESC(key, m->key);
        snprintf(p->err, sizeof p->err, "bad header: duplicate metadata key \"%s\"", key);
        return -1;
      }
    out->nmeta++;
    if (ndl_json_peek(p, ',')) {
      p->pos++;
      continue;
    }
    return ndl_json_expect(p, '}');
  }
}

/* {"dtype": "...", "shape": [...], "data_offsets": [b, e]} in any order, each exactly once. */
static int parse_tensor(ndl_json *p, st_raw *r) {
  int have_dtype = 0, have_shape = 0, have_off = 0;
  ESC(nm, r->e.name);
  if (ndl_json_expect(p, '{')) return -1;
  for (;;) {
    char key[32];
    if (ndl_json_string(p, key, sizeof key, "a field name")) return -1;
    if (ndl_json_expect(p, ':')) return -1;
    if (!strcmp(key, "dtype") && !have_dtype) {
      char dt[16];
      size_t at = p->pos;
      if (ndl_json_string(p, dt, sizeof dt, "a dtype string")) return -1;
      int found = -1;
      for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(dt, dtype_names[i])) found = i;
      if (found < 0) {
        char d[NDL_ST_ESCAPED(16)];
        ndl_st_escape(dt, d, sizeof d);
        snprintf(p->err, sizeof p->err,
                 "tensor %s: unknown dtype \"%s\" at byte %zu, expected F32, I64, U8 or U32", nm, d, at);
        return -1;
      }
      r->e.dtype = (ndl_st_dtype)found;
      have_dtype = 1;
    } else if (!strcmp(key, "shape") && !have_shape) {
      if (ndl_json_uint_array(p, r->e.shape, 8, &r->e.ndim, "a shape array")) return -1;
      have_shape = 1;
    } else if (!strcmp(key, "data_offsets") && !have_off) {
      int64_t o[8];
      int n;
      if (ndl_json_uint_array(p, o, 8, &n, "a data_offsets array")) return -1;
      if (n != 2) {
        snprintf(p->err, sizeof p->err, "tensor %s: data_offsets has %d values, expected 2", nm, n);
        return -1;
      }
      r->begin = o[0];
      r->end = o[1];
      have_off = 1;
    } else {
      char k[NDL_ST_ESCAPED(32)];
      ndl_st_escape(key, k, sizeof k);
      snprintf(p->err, sizeof p->err, "tensor %s: unexpected or duplicate field \"%s\"", nm, k);
      return -1;
    }
    if (ndl_json_peek(p, ',')) {
      p->pos++;
      continue;
    }
    if (ndl_json_expect(p, '}')) return -1;
    break;
  }
  if (!have_dtype || !have_shape || !have_off) {
    snprintf(p->err, sizeof p->err, "tensor %s: missing field \"%s\"", nm,
             !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return -1;
  }
  return 0;
}

/* The whole header object into raws (grown with ndl_realloc) and out->meta. */
static int parse_header(ndl_json *p, st_raw **raws, int *nraw, ndl_st_file *out) {
  size_t cap = 0, metacap = 0;
  int have_meta = 0;
  if (ndl_json_expect(p, '{')) return -1;
  if (ndl_json_peek(p, '}')) {
    p->pos++;
  } else {
    for (;;) {
      char name[NDL_ST_MAX_NAME];
      if (ndl_json_string(p, name, sizeof name, "a tensor name string")) return -1;
      if (ndl_json_expect(p, ':')) return -1;
      if (!strcmp(name, "__metadata__")) {
        if (have_meta) {
          snprintf(p->err, sizeof p->err, "bad header: duplicate __metadata__");
          return -1;
        }
        have_meta = 1;
        if (parse_meta(p, out, &metacap)) return -1;
      } else {
        if ((size_t)*nraw == cap) {
          size_t nc = cap ? cap * 2 : 16;
          st_raw *q = (st_raw *)ndl_realloc(*raws, cap * sizeof *q, nc * sizeof *q);
          if (!q) {
            snprintf(p->err, sizeof p->err, "out of memory");
            return -1;
          }
          *raws = q;
          cap = nc;
        }
        st_raw *r = &(*raws)[*nraw];
        memset(r, 0, sizeof *r);
        strcpy(r->e.name, name);
        for (int i = 0; i < *nraw; i++)
          if (!strcmp((*raws)[i].e.name, name)) {
            ESC(nm, name);
            snprintf(p->err, sizeof p->err, "bad header: duplicate tensor %s", nm);
            return -1;
          }
        if (parse_tensor(p, r)) return -1;
        (*nraw)++;
      }
      if (ndl_json_peek(p, ',')) {
        p->pos++;
        continue;
      }
      if (ndl_json_expect(p, '}')) return -1;
      break;
    }
  }
  ndl_json_ws(p);
  if (p->pos != p->len) return ndl_json_fail(p, "only space after the header object");
  return 0;
}

static int cmp_begin(const void *a, const void *b) {
  const st_raw *x = *(const st_raw *const *)a, *y = *(const st_raw *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Shapes against offsets, offsets against the body: every byte covered exactly once. */
static ndl_status check_layout(const char *path, st_raw *raws, int n, int64_t body) {
  for (int i = 0; i < n; i++) {
    st_raw *r = &raws[i];
    int64_t want = entry_bytes(r->e.dtype, r->e.ndim, r->e.shape);
    ESC(nm, r->e.name);
    if (r->end < r->begin)
      return ndl_errorf(NDL_ERR_FORMAT, "%s: tensor %s: data_offsets [%lld,%lld] end before begin", path,
                        nm, (long long)r->begin, (long long)r->end);
    if (want < 0 || r->end - r->begin != want) {
      char sh[128];
      ndl_shape_format(r->e.ndim, r->e.shape, sh, sizeof sh);
      return ndl_errorf(NDL_ERR_FORMAT,
                        "%s: tensor %s: %s shape %s needs %lld bytes, data_offsets [%lld,%lld] hold %lld", path,
                        nm, dtype_names[r->e.dtype], sh, (long long)want, (long long)r->begin,
                        (long long)r->end, (long long)(r->end - r->begin));
    }
    if (r->end > body)
      return ndl_errorf(NDL_ERR_FORMAT,
                        "%s: truncated body: tensor %s needs bytes [%lld,%lld), the body has %lld", path,
                        nm, (long long)r->begin, (long long)r->end, (long long)body);
    r->e.nbytes = want;
  }
  st_raw **order = (st_raw **)ndl_malloc((size_t)(n ? n : 1) * sizeof *order);
  if (!order) return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory", path);
  for (int i = 0; i < n; i++) order[i] = &raws[i];
  qsort(order, (size_t)n, sizeof *order, cmp_begin);
  int64_t at = 0;
  ndl_status st = NDL_OK;
  for (int i = 0; i < n && st == NDL_OK; i++) {
    ESC(nm, order[i]->e.name);
    if (order[i]->begin < at) {
      ESC(prev, order[i - 1]->e.name);
      st = ndl_errorf(NDL_ERR_FORMAT, "%s: tensor %s: data_offsets [%lld,%lld] overlap %s (ends at %lld)",
                      path, nm, (long long)order[i]->begin, (long long)order[i]->end, prev, (long long)at);
    } else if (order[i]->begin > at) {
      st = ndl_errorf(NDL_ERR_FORMAT, "%s: tensor %s starts at byte %lld, expected %lld (gap in the body)",
                      path, nm, (long long)order[i]->begin, (long long)at);
    }
    at = order[i]->end;
  }
  ndl_free(order);
  if (st == NDL_OK && at != body)
    st = ndl_errorf(NDL_ERR_FORMAT, "%s: body is %lld bytes, tensors cover %lld (trailing bytes)", path,
                    (long long)body, (long long)at);
  return st;
}

/* Open without blocking (a FIFO with no writer would block a plain open) and accept regular files only. */
static ndl_status open_regular(const char *path, FILE **out, struct stat *sb) {
  int fd = ndl_file_open_nonblocking(path, O_RDONLY, 0, sb);
  if (fd < 0) return ndl_errorf(NDL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISREG(sb->st_mode)) {
    close(fd);
    return ndl_errorf(NDL_ERR_IO, "%s: not a regular file (%s)", path, ndl_file_kind(sb->st_mode));
  }
  *out = fdopen(fd, "rb");
  if (!*out) {
    int err = errno;
    close(fd);
    return ndl_errorf(NDL_ERR_IO, "%s: cannot open: %s", path, strerror(err));
  }
  return NDL_OK;
}

static ndl_status read_all(const char *path, unsigned char **buf, int64_t *size) {
  FILE *fp;
  struct stat sb;
  ndl_status st = open_regular(path, &fp, &sb);
  if (st != NDL_OK) return st;
  *size = (int64_t)sb.st_size;
  *buf = (unsigned char *)ndl_malloc((size_t)(*size ? *size : 1));
  if (!*buf) {
    fclose(fp);
    return ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory reading %lld bytes", path, (long long)*size);
  }
  size_t got = fread(*buf, 1, (size_t)*size, fp);
  int err = ferror(fp) ? errno : 0;
  fclose(fp);
  if (got != (size_t)*size) {
    ndl_free(*buf);
    *buf = NULL;
    return ndl_errorf(NDL_ERR_IO, "%s: read %zu of %lld bytes: %s", path, got, (long long)*size,
                      err ? strerror(err) : "file changed while reading");
  }
  return NDL_OK;
}

ndl_status ndl_safetensors_read(const char *path, ndl_st_file *out) {
  assert_little_endian();
  memset(out, 0, sizeof *out);
  unsigned char *buf = NULL;
  int64_t size = 0;
  ndl_status st = read_all(path, &buf, &size);
  if (st != NDL_OK) return st;
  if (size < 8) {
    ndl_free(buf);
    return ndl_errorf(NDL_ERR_FORMAT, "%s: file is %lld bytes, expected at least 8 (header length)", path,
                      (long long)size);
  }
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
  if (hl > (uint64_t)(size - 8) || hl > ST_MAX_HEADER) {
    ndl_free(buf);
    return ndl_errorf(NDL_ERR_FORMAT, "%s: header length %llu exceeds the %lld bytes after the length field",
                      path, (unsigned long long)hl, (long long)(size - 8));
  }
  int64_t body = size - 8 - (int64_t)hl;
  ndl_json p;
  memset(&p, 0, sizeof p);
  p.s = (const char *)buf + 8;
  p.len = (size_t)hl;
  st_raw *raws = NULL;
  int nraw = 0;
  if (parse_header(&p, &raws, &nraw, out)) {
    st = ndl_errorf(strcmp(p.err, "out of memory") ? NDL_ERR_FORMAT : NDL_ERR_NOMEM, "%s: %s", path, p.err);
  } else {
    st = check_layout(path, raws, nraw, body);
  }
  if (st == NDL_OK) {
    out->entries = (ndl_st_entry *)ndl_malloc((size_t)(nraw ? nraw : 1) * sizeof *out->entries);
    out->blob = (unsigned char *)ndl_malloc((size_t)(body ? body : 1));
    if (!out->entries || !out->blob) st = ndl_errorf(NDL_ERR_NOMEM, "%s: out of memory", path);
  }
  if (st == NDL_OK) {
    memcpy(out->blob, buf + 8 + hl, (size_t)body);
    for (int i = 0; i < nraw; i++) {
      out->entries[i] = raws[i].e;
      out->entries[i].data = out->blob + raws[i].begin;
    }
    out->n = nraw;
  }
  ndl_free(raws);
  ndl_free(buf);
  if (st != NDL_OK) ndl_safetensors_free(out);
  return st;
}

const ndl_st_entry *ndl_safetensors_find(const ndl_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->entries[i].name, name)) return &f->entries[i];
  return NULL;
}

const char *ndl_safetensors_meta(const ndl_st_file *f, const char *key) {
  for (int i = 0; i < f->nmeta; i++)
    if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
  return NULL;
}

void ndl_safetensors_free(ndl_st_file *f) {
  if (!f) return;
  ndl_free(f->entries);
  ndl_free(f->meta);
  ndl_free(f->blob);
  memset(f, 0, sizeof *f);
}
