/* dist_check.c: the startup agreement check and the FNV-1a layout hash. Two all-gathers: first the
 * field count and a hash of the field names (so ranks with different field lists are told so instead
 * of mismatching buffer sizes), then the value strings, compared with rank 0's.
 * Leaves out: choosing which values to compare (launch/ does that). */
#include "dist/dist_check.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "dist/dist_internal.h"

#define VALUE_BYTES ((int64_t)sizeof(((ndl_dist_field *)0)->value))

uint64_t ndl_dist_hash(const void *data, size_t n, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t h = seed ? seed : 14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static ndl_status check_shape(ndl_dist *d, const ndl_dist_field *fields, int n) {
  uint64_t mine[2] = {(uint64_t)n, 0};
  for (int i = 0; i < n; i++) mine[1] = ndl_dist_hash(fields[i].name, strlen(fields[i].name) + 1,
                                                      mine[1]);
  uint64_t *all = ndl_malloc(sizeof mine * (size_t)d->world);
  if (!all) return ndl_errorf(NDL_ERR_NOMEM, "startup check: out of memory");
  ndl_status st = ndl_dist_allgather(d, mine, all, (int64_t)sizeof mine, "startup check");
  for (int r = 1; st == NDL_OK && r < d->world; r++)
    if (all[2 * r] != all[0] || all[2 * r + 1] != all[1])
      st = ndl_errorf(NDL_ERR_DIST,
                      "startup check: rank %d compares %llu fields (names hash %016llx), rank 0 "
                      "compares %llu (%016llx): different program versions?",
                      r, (unsigned long long)all[2 * r], (unsigned long long)all[2 * r + 1],
                      (unsigned long long)all[0], (unsigned long long)all[1]);
  ndl_free(all);
  return st;
}

/* Append "name: rank r has v, ..., rank 0 has v0" for field i to msg (truncated at cap); 1 when it
 * differs. */
static int describe_field(const ndl_dist *d, const char *vals, int n, int i, const char *name,
                          char *msg, size_t cap) {
  const char *v0 = vals + (size_t)i * VALUE_BYTES;
  int differs = 0;
  for (int r = 1; r < d->world; r++) {
    const char *v = vals + ((size_t)r * (size_t)n + (size_t)i) * VALUE_BYTES;
    if (strcmp(v, v0) == 0) continue;
    size_t len = strlen(msg);
    if (differs)
      snprintf(msg + len, cap - len, ", rank %d has %s", r, v);
    else
      snprintf(msg + len, cap - len, "%s%s: rank %d has %s", len ? "; " : "", name, r, v);
    differs = 1;
  }
  size_t len = strlen(msg);
  if (differs) snprintf(msg + len, cap - len, ", rank 0 has %s", v0);
  return differs;
}

ndl_status ndl_dist_check_agree(ndl_dist *d, const ndl_dist_field *fields, int n) {
  NDL_ASSERT(d && n >= 0 && (fields || n == 0));
  if (d->world == 1) return NDL_OK;
  ndl_status st = check_shape(d, fields, n);
  if (st != NDL_OK) return st;
  size_t per_rank = (size_t)n * (size_t)VALUE_BYTES;
  char *mine = ndl_calloc(per_rank ? per_rank : 1, 1);
  char *all = ndl_malloc(per_rank * (size_t)d->world + 1);
  if (!mine || !all) {
    ndl_free(mine);
    ndl_free(all);
    return ndl_errorf(NDL_ERR_NOMEM, "startup check: out of memory");
  }
  for (int i = 0; i < n; i++) /* always NUL-terminated, zero padded: compared as strings */
    snprintf(mine + (size_t)i * VALUE_BYTES, (size_t)VALUE_BYTES, "%s", fields[i].value);
  st = ndl_dist_allgather(d, mine, all, (int64_t)per_rank, "startup check");
  char msg[400] = "";
  int bad = 0;
  for (int i = 0; st == NDL_OK && i < n; i++)
    bad |= describe_field(d, all, n, i, fields[i].name, msg, sizeof msg);
  if (st == NDL_OK && bad) st = ndl_errorf(NDL_ERR_DIST, "startup check: ranks disagree: %s", msg);
  ndl_free(mine);
  ndl_free(all);
  return st;
}
