/* dist_check.h: the startup agreement check (SPEC §3): every rank all-gathers named value strings
 * (parameter count, layout hash, hyper-parameters) and refuses to run on any difference. */
#ifndef NDL_DIST_CHECK_H
#define NDL_DIST_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "dist/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_dist_field {
  const char *name; /* "--lr", "parameters", "layout hash" (borrowed) */
  char value[96];   /* NUL-terminated value text; compared byte for byte */
} ndl_dist_field;

/* All-gather the n fields of every rank. NDL_OK when all ranks agree; otherwise NDL_ERR_DIST on every
 * rank with a message naming each differing field and the ranks that differ from rank 0, e.g.
 * "--lr: rank 1 has 0.01, rank 0 has 0.001". World 1: NDL_OK at once. */
ndl_status ndl_dist_check_agree(ndl_dist *d, const ndl_dist_field *fields, int n);

/* FNV-1a 64 of data[0..n). seed 0 starts from the standard offset basis; any other seed is the
 * starting state, so ndl_dist_hash(b, nb, ndl_dist_hash(a, na, 0)) hashes a followed by b. */
uint64_t ndl_dist_hash(const void *data, size_t n, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
