/* safetensors.h: reading and writing the safetensors format (8-byte little-endian header length,
 * JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, raw little-endian
 * data). Writes are atomic: a temporary file in the same directory, flushed, fsync'ed and renamed.
 * Reads validate the header against the file size; every error names the file. */
#ifndef NDL_SAFETENSORS_H
#define NDL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ndl_st_dtype { NDL_ST_F32 = 0, NDL_ST_I64 = 1, NDL_ST_U8 = 2, NDL_ST_U32 = 3 } ndl_st_dtype;

#define NDL_ST_MAX_NAME 160

typedef struct ndl_st_entry {
  char name[NDL_ST_MAX_NAME];
  ndl_st_dtype dtype;
  int ndim;
  int64_t shape[8];
  const void *data; /* writer: borrowed source; reader: points into the file's blob */
  int64_t nbytes;
} ndl_st_entry;

typedef struct ndl_st_meta {
  char key[64];
  char value[256];
} ndl_st_meta;

/* Write entries (in order) and metadata pairs to path atomically. NDL_ERR_IO names the path. */
ndl_status ndl_safetensors_write(const char *path, const ndl_st_entry *entries, int n,
                                 const ndl_st_meta *meta, int nmeta);

typedef struct ndl_st_file {
  int n;
  ndl_st_entry *entries; /* owned */
  int nmeta;
  ndl_st_meta *meta;     /* owned */
  unsigned char *blob;   /* owned: the data section */
} ndl_st_file;

/* Read and validate a file: NDL_ERR_IO (missing/unreadable, or not a regular file: a FIFO or device
 * is refused without blocking), NDL_ERR_FORMAT (bad header, unknown
 * dtype, offsets outside or not covering the body, truncated body). */
ndl_status ndl_safetensors_read(const char *path, ndl_st_file *out);
/* Entry by name (borrowed) or NULL. */
const ndl_st_entry *ndl_safetensors_find(const ndl_st_file *f, const char *name);
/* Metadata value by key (borrowed) or NULL. */
const char *ndl_safetensors_meta(const ndl_st_file *f, const char *key);
void ndl_safetensors_free(ndl_st_file *f);
/* Name of a dtype ("F32", "I64", "U8", "U32"). */
const char *ndl_st_dtype_name(ndl_st_dtype d);

/* Bytes for the escaped form of a string of n bytes (with the NUL). */
#define NDL_ST_ESCAPED(n) (4 * (n) + 1)
/* s for an error message: control bytes as \n, \r, \t or \xNN and backslash as \\, so text read from
 * a file can never start a forged message line; truncated to cap bytes. Returns buf. */
const char *ndl_st_escape(const char *s, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
