/* alloc.c: counted aligned heap blocks and the chunked step arena.
 * A small header before each block stores its size for the live-byte accounting;
 * thread-safe through C11 atomics. No pooling of heap blocks here: the arena does that. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_llong live_blocks;
static atomic_llong live_bytes;
static atomic_llong byte_limit;

void *ndl_malloc(size_t bytes) {
  size_t total = bytes + NDL_ALIGN;
  long long limit = atomic_load(&byte_limit);
  if (bytes > ((size_t)1 << 48)) return NULL;
  if (limit > 0 && atomic_load(&live_bytes) + (long long)total > limit) return NULL;
  unsigned char *raw = aligned_alloc(NDL_ALIGN, (total + NDL_ALIGN - 1) / NDL_ALIGN * NDL_ALIGN);
  if (!raw) return NULL;
  memcpy(raw, &total, sizeof total);
  atomic_fetch_add(&live_blocks, 1);
  atomic_fetch_add(&live_bytes, (long long)total);
  return raw + NDL_ALIGN;
}

void *ndl_calloc(size_t count, size_t size) {
  if (size && count > ((size_t)1 << 48) / size) return NULL;
  void *p = ndl_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void *ndl_realloc(void *p, size_t old_bytes, size_t new_bytes) {
  void *q = ndl_malloc(new_bytes);
  if (!q) return NULL;
  if (p) memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
  ndl_free(p);
  return q;
}

void ndl_free(void *p) {
  if (!p) return;
  unsigned char *raw = (unsigned char *)p - NDL_ALIGN;
  size_t total;
  memcpy(&total, raw, sizeof total);
  atomic_fetch_sub(&live_blocks, 1);
  atomic_fetch_sub(&live_bytes, (long long)total);
  free(raw);
}

int64_t ndl_alloc_live_count(void) { return (int64_t)atomic_load(&live_blocks); }

void ndl_alloc_set_limit(size_t limit_bytes) { atomic_store(&byte_limit, (long long)limit_bytes); }

/* ---- arena ---- */

struct ndl_arena_chunk {
  ndl_arena_chunk *next;
  size_t size, used;
  unsigned char *mem;
};

void ndl_arena_init(ndl_arena *a, size_t min_chunk) {
  memset(a, 0, sizeof *a);
  a->min_chunk = min_chunk ? min_chunk : ((size_t)1 << 20);
}

void ndl_arena_init_on(ndl_arena *a, size_t min_chunk, void *(*mem_alloc)(size_t),
                       void (*mem_free)(void *)) {
  ndl_arena_init(a, min_chunk);
  a->mem_alloc = mem_alloc;
  a->mem_free = mem_free;
}

static void mem_release(const ndl_arena *a, void *p) {
  if (a->mem_free) a->mem_free(p);
  else ndl_free(p);
}

static ndl_arena_chunk *chunk_new(const ndl_arena *a, size_t size) {
  ndl_arena_chunk *c = ndl_malloc(sizeof *c);
  if (!c) return NULL;
  c->mem = a->mem_alloc ? a->mem_alloc(size) : ndl_malloc(size);
  if (!c->mem) {
    ndl_free(c);
    return NULL;
  }
  c->next = NULL;
  c->size = size;
  c->used = 0;
  return c;
}

void *ndl_arena_alloc(ndl_arena *a, size_t bytes) {
  if (bytes > ((size_t)1 << 48)) return NULL; /* ndl_malloc's cap; keeps the sums below from wrapping */
  size_t need = (bytes + NDL_ALIGN - 1) / NDL_ALIGN * NDL_ALIGN;
  if (need == 0) need = NDL_ALIGN;
  if (!a->head || a->head->used + need > a->head->size) {
    size_t size = a->min_chunk;
    if (a->head && a->head->size * 2 > size) size = a->head->size * 2;
    if (need > size) size = need;
    ndl_arena_chunk *c = chunk_new(a, size);
    if (!c) return NULL;
    c->next = a->head;
    a->head = c;
  }
  void *p = a->head->mem + a->head->used;
  a->head->used += need;
  a->used_total += need;
  if (a->used_total > a->high_water) a->high_water = a->used_total;
  return p;
}

static void chunks_free(const ndl_arena *a, ndl_arena_chunk *c) {
  while (c) {
    ndl_arena_chunk *next = c->next;
    mem_release(a, c->mem);
    ndl_free(c);
    c = next;
  }
}

void ndl_arena_reset(ndl_arena *a) {
  if (a->head && a->head->next) {
    /* Several chunks were needed: replace them by one that holds the high-water mark. */
    size_t size = a->high_water + a->high_water / 4;
    chunks_free(a, a->head);
    a->head = chunk_new(a, size < a->min_chunk ? a->min_chunk : size);
  }
  if (a->head) a->head->used = 0;
  a->used_total = 0;
}

void ndl_arena_free(ndl_arena *a) {
  chunks_free(a, a->head);
  a->head = NULL;
  a->used_total = a->high_water = 0;
}
