/* st_json.h: the strict JSON subset of safetensors headers (internal to launch/): objects, strings
 * with escapes (decoded to UTF-8), non-negative integers and arrays of them. Each function returns 0,
 * or -1 with the first error (byte position, expected vs found) in p->err. */
#ifndef NDL_ST_JSON_H
#define NDL_ST_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_json {
  const char *s;
  size_t pos, len;
  char err[400];
} ndl_json;

/* Record "bad header JSON at byte N: expected WHAT, found ..." (first error wins); returns -1. */
int ndl_json_fail(ndl_json *p, const char *what);
/* Skip JSON whitespace. */
void ndl_json_ws(ndl_json *p);
/* 1 if the next non-space byte is c (not consumed). */
int ndl_json_peek(ndl_json *p, char c);
/* Consume c after whitespace, or fail. */
int ndl_json_expect(ndl_json *p, char c);
/* A string into out (cap bytes with the NUL); what names it in the error. */
int ndl_json_string(ndl_json *p, char *out, size_t cap, const char *what);
/* A non-negative integer without sign, fraction, exponent or leading zeros. */
int ndl_json_uint(ndl_json *p, int64_t *out);
/* [int, ...] with at most max items, count into *n. */
int ndl_json_uint_array(ndl_json *p, int64_t *out, int max, int *n, const char *what);

#ifdef __cplusplus
}
#endif
#endif
