/* st_json.c: the strict JSON subset parser of safetensors headers (see st_json.h). Rejects what
 * JSON rejects (raw control bytes, bad escapes, lone surrogates, leading zeros) plus what the header
 * never needs (negative numbers, fractions, exponents, NUL in strings). Leaves out: true/false/null,
 * floats, nesting beyond what the caller asks for. */
#include "launch/st_json.h"

#include <stdio.h>
#include <string.h>

int ndl_json_fail(ndl_json *p, const char *what) {
  if (!p->err[0]) {
    if (p->pos < p->len)
      snprintf(p->err, sizeof p->err, "bad header JSON at byte %zu: expected %s, found '%c'", p->pos,
               what, p->s[p->pos] >= 0x20 && p->s[p->pos] < 0x7f ? p->s[p->pos] : '?');
    else
      snprintf(p->err, sizeof p->err, "bad header JSON at byte %zu: expected %s, found end of header",
               p->pos, what);
  }
  return -1;
}

void ndl_json_ws(ndl_json *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

int ndl_json_peek(ndl_json *p, char c) {
  ndl_json_ws(p);
  return p->pos < p->len && p->s[p->pos] == c;
}

int ndl_json_expect(ndl_json *p, char c) {
  char what[4] = {'\'', c, '\'', 0};
  if (!ndl_json_peek(p, c)) return ndl_json_fail(p, what);
  p->pos++;
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int json_hex4(ndl_json *p, unsigned *out) {
  if (p->pos + 4 > p->len) return ndl_json_fail(p, "4 hex digits");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p->s[p->pos + i]);
    if (h < 0) return ndl_json_fail(p, "4 hex digits");
    v = v * 16 + (unsigned)h;
  }
  p->pos += 4;
  *out = v;
  return 0;
}

/* A string into out (cap bytes incl. NUL), decoding escapes to UTF-8. */
int ndl_json_string(ndl_json *p, char *out, size_t cap, const char *what) {
  if (!ndl_json_peek(p, '"')) return ndl_json_fail(p, what);
  p->pos++;
  size_t n = 0;
  for (;;) {
    if (p->pos >= p->len) return ndl_json_fail(p, "closing '\"'");
    unsigned char c = (unsigned char)p->s[p->pos];
    char enc[4];
    size_t en = 0;
    if (c == '"') {
      p->pos++;
      break;
    } else if (c < 0x20) {
      return ndl_json_fail(p, "no raw control character in a string");
    } else if (c == '\\') {
      p->pos++;
      if (p->pos >= p->len) return ndl_json_fail(p, "an escape");
      char e = p->s[p->pos++];
      unsigned cp = 0;
      switch (e) {
        case '"': case '\\': case '/': enc[en++] = e; break;
        case 'b': enc[en++] = '\b'; break;
        case 'f': enc[en++] = '\f'; break;
        case 'n': enc[en++] = '\n'; break;
        case 'r': enc[en++] = '\r'; break;
        case 't': enc[en++] = '\t'; break;
        case 'u':
          if (json_hex4(p, &cp)) return -1;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (p->pos + 2 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
              return ndl_json_fail(p, "a low surrogate");
            p->pos += 2;
            if (json_hex4(p, &lo)) return -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return ndl_json_fail(p, "a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return ndl_json_fail(p, "no lone low surrogate");
          }
          if (cp == 0) return ndl_json_fail(p, "no NUL character in a string");
          if (cp < 0x80) {
            enc[en++] = (char)cp;
          } else if (cp < 0x800) {
            enc[en++] = (char)(0xC0 | (cp >> 6));
            enc[en++] = (char)(0x80 | (cp & 0x3F));
          } else if (cp < 0x10000) {
            enc[en++] = (char)(0xE0 | (cp >> 12));
            enc[en++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            enc[en++] = (char)(0x80 | (cp & 0x3F));
          } else {
            enc[en++] = (char)(0xF0 | (cp >> 18));
            enc[en++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            enc[en++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            enc[en++] = (char)(0x80 | (cp & 0x3F));
          }
          break;
        default:
          p->pos--;
          return ndl_json_fail(p, "a valid escape");
      }
    } else {
      enc[en++] = (char)c;
      p->pos++;
    }
    if (n + en + 1 > cap) {
      snprintf(p->err, sizeof p->err, "bad header: string at byte %zu is longer than %zu bytes", p->pos,
               cap - 1);
      return -1;
    }
    memcpy(out + n, enc, en);
    n += en;
  }
  out[n] = '\0';
  return 0;
}

/* A non-negative integer without sign, fraction, exponent or leading zeros. */
int ndl_json_uint(ndl_json *p, int64_t *out) {
  ndl_json_ws(p);
  size_t start = p->pos;
  int64_t v = 0;
  while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
    int d = p->s[p->pos] - '0';
    if (v > (INT64_MAX - d) / 10) {
      p->pos = start;
      return ndl_json_fail(p, "an integer that fits in 63 bits");
    }
    v = v * 10 + d;
    p->pos++;
  }
  if (p->pos == start) return ndl_json_fail(p, "a non-negative integer");
  if (p->pos - start > 1 && p->s[start] == '0') {
    p->pos = start;
    return ndl_json_fail(p, "an integer without leading zeros");
  }
  if (p->pos < p->len && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
    return ndl_json_fail(p, "an integer (no fraction or exponent)");
  *out = v;
  return 0;
}

/* [int, ...] with at most max items; count into *n. */
int ndl_json_uint_array(ndl_json *p, int64_t *out, int max, int *n, const char *what) {
  *n = 0;
  if (!ndl_json_peek(p, '[')) return ndl_json_fail(p, what);
  p->pos++;
  if (ndl_json_peek(p, ']')) {
    p->pos++;
    return 0;
  }
  for (;;) {
    if (*n >= max) return ndl_json_fail(p, "at most 8 dimensions");
    if (ndl_json_uint(p, &out[(*n)++])) return -1;
    if (ndl_json_peek(p, ',')) {
      p->pos++;
      continue;
    }
    return ndl_json_expect(p, ']');
  }
}
