/* alloc.h: tracked heap allocation and the step arena.
 * Every heap block of needle-c goes through ndl_malloc/ndl_free so tests can count live blocks;
 * per-step graph nodes and temporaries live in an ndl_arena rewound in one call. */
#ifndef NDL_ALLOC_H
#define NDL_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NDL_ALIGN 64

/* 64-byte aligned block, or NULL (no message) when out of memory or over the test limit. */
void *ndl_malloc(size_t bytes);
/* Zero-filled ndl_malloc. */
void *ndl_calloc(size_t count, size_t size);
/* Resize a block from ndl_malloc, keeping contents; NULL on failure (old block untouched). */
void *ndl_realloc(void *p, size_t old_bytes, size_t new_bytes);
/* Free a block from ndl_malloc; ndl_free(NULL) is a no-op. */
void ndl_free(void *p);
/* Number of live ndl_malloc blocks in the process. */
int64_t ndl_alloc_live_count(void);
/* Test hook: make ndl_malloc fail for requests once live bytes would exceed limit (0 = no limit). */
void ndl_alloc_set_limit(size_t limit_bytes);

/* Bump allocator in chunks. Reset keeps one chunk big enough for the high-water mark,
 * so a steady state of equal steps does no heap allocation at all. */
typedef struct ndl_arena_chunk ndl_arena_chunk;
typedef struct ndl_arena {
  ndl_arena_chunk *head; /* current chunk (owned), older ones linked behind it */
  size_t used_total;     /* bytes handed out since the last reset */
  size_t high_water;     /* largest used_total seen */
  size_t min_chunk;      /* default chunk size */
  /* where chunk memory comes from (chunk headers stay in ndl_malloc): NULL for ndl_malloc/ndl_free,
   * or a device's allocator (a backend's alloc/free), so the arena hands out device memory */
  void *(*mem_alloc)(size_t bytes);
  void (*mem_free)(void *p);
} ndl_arena;

void ndl_arena_init(ndl_arena *a, size_t min_chunk);
/* The same with chunk memory from mem_alloc/mem_free (64-byte aligned blocks, NULL on failure). */
void ndl_arena_init_on(ndl_arena *a, size_t min_chunk, void *(*mem_alloc)(size_t),
                       void (*mem_free)(void *));
/* 64-byte aligned memory valid until the next reset, or NULL when out of memory. */
void *ndl_arena_alloc(ndl_arena *a, size_t bytes);
/* Release everything handed out since the last reset (memory is kept for reuse). */
void ndl_arena_reset(ndl_arena *a);
void ndl_arena_free(ndl_arena *a);

#ifdef __cplusplus
}
#endif
#endif
