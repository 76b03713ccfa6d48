/* dist_shm.c: the shared-window slots of dist_shm.h: window allocation (MPI_Win_allocate_shared,
 * one slot per rank), the arrival / ready round numbers (C11 atomics on the shared pages: release
 * when publishing, acquire when reading a peer's), the copy in, and the rank-ordered sums.
 * Leaves out: waiting, deadlines and naming late ranks (dist_mpi.c), and collectives other than sums. */
#include "dist/dist_shm.h"

#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "core/simd.h"

#define LINE 64

typedef struct slot_hdr {
  _Atomic int64_t arrive; /* last round this rank arrived at */
  _Atomic int64_t ready;  /* last round whose data this rank published */
  _Atomic int64_t done;   /* two-phase rounds: last round whose summed slice this rank published */
  _Atomic int32_t op[2];  /* per parity: op code and size of the round published there */
  _Atomic uint64_t bytes[2];
} slot_hdr;

struct ndl_shm {
  MPI_Win win;
  int rank, world;
  size_t cap;        /* bytes per data buffer */
  slot_hdr **hdr;    /* [world] every rank's header */
  char **data;       /* [world] every rank's two buffers, cap bytes apart */
};

_Static_assert(sizeof(slot_hdr) <= LINE, "a slot header fits one cache line");

static size_t round_up(size_t n) { return (n + LINE - 1) / LINE * LINE; }

ndl_status ndl_shm_new(ndl_shm **out, MPI_Comm comm, size_t cap_bytes) {
  *out = NULL;
  ndl_shm *s = ndl_calloc(1, sizeof *s);
  if (!s) return ndl_errorf(NDL_ERR_NOMEM, "dist: out of memory");
  MPI_Comm_rank(comm, &s->rank);
  MPI_Comm_size(comm, &s->world);
  s->cap = round_up(cap_bytes);
  s->hdr = ndl_calloc((size_t)s->world, sizeof *s->hdr);
  s->data = ndl_calloc((size_t)s->world, sizeof *s->data);
  if (!s->hdr || !s->data) {
    ndl_free(s->hdr);
    ndl_free(s->data);
    ndl_free(s);
    return ndl_errorf(NDL_ERR_NOMEM, "dist: out of memory");
  }
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each slot on its owner's NUMA node */
  void *base = NULL;
  int rc = MPI_Win_allocate_shared((MPI_Aint)(LINE + 2 * s->cap), 1, info, comm, &base, &s->win);
  MPI_Info_free(&info);
  if (rc == MPI_SUCCESS) rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
  for (int p = 0; p < s->world && rc == MPI_SUCCESS; p++) {
    MPI_Aint size = 0;
    int disp = 0;
    void *ptr = NULL;
    rc = MPI_Win_shared_query(s->win, p, &size, &disp, &ptr);
    s->hdr[p] = ptr;
    s->data[p] = (char *)ptr + LINE;
  }
  if (rc != MPI_SUCCESS) {
    ndl_free(s->hdr);
    ndl_free(s->data);
    ndl_free(s);
    return ndl_errorf(NDL_ERR_DIST, "dist: MPI_Win_allocate_shared failed (MPI error %d); NDL_DIST_SHM=0 "
                      "sums through Open MPI's collectives instead", rc);
  }
  slot_hdr *h = s->hdr[s->rank];
  atomic_store(&h->arrive, 0);
  atomic_store(&h->ready, 0);
  atomic_store(&h->done, 0);
  MPI_Barrier(comm); /* every header is zero before anyone arrives */
  *out = s;
  return NDL_OK;
}

void ndl_shm_free(ndl_shm *s, int broken) {
  if (!s) return;
  if (!broken) {
    MPI_Win_unlock_all(s->win);
    MPI_Win_free(&s->win);
  }
  ndl_free(s->hdr);
  ndl_free(s->data);
  ndl_free(s);
}

size_t ndl_shm_capacity(const ndl_shm *s) { return s->cap; }

static const char *buffer(const ndl_shm *s, int p, int64_t round) {
  return s->data[p] + (size_t)(round & 1) * s->cap;
}

void ndl_shm_arrive(ndl_shm *s, int64_t round, int op, size_t bytes) {
  slot_hdr *h = s->hdr[s->rank];
  atomic_store_explicit(&h->op[round & 1], op, memory_order_relaxed);
  atomic_store_explicit(&h->bytes[round & 1], bytes, memory_order_relaxed);
  atomic_store_explicit(&h->arrive, round, memory_order_release);
}

void ndl_shm_publish(ndl_shm *s, int64_t round, const void *src, size_t bytes) {
  NDL_ASSERT(bytes <= s->cap);
  memcpy((char *)buffer(s, s->rank, round), src, bytes);
  atomic_store_explicit(&s->hdr[s->rank]->ready, round, memory_order_release);
}

int64_t ndl_shm_arrived(const ndl_shm *s, int p) {
  return atomic_load_explicit(&s->hdr[p]->arrive, memory_order_acquire);
}

int64_t ndl_shm_ready(const ndl_shm *s, int p) {
  return atomic_load_explicit(&s->hdr[p]->ready, memory_order_acquire);
}

int ndl_shm_same(const ndl_shm *s, int p, int64_t round, int *op, size_t *bytes) {
  const slot_hdr *mine = s->hdr[s->rank], *theirs = s->hdr[p];
  *op = atomic_load_explicit(&theirs->op[round & 1], memory_order_relaxed);
  *bytes = atomic_load_explicit(&theirs->bytes[round & 1], memory_order_relaxed);
  return *op == atomic_load_explicit(&mine->op[round & 1], memory_order_relaxed) &&
         *bytes == atomic_load_explicit(&mine->bytes[round & 1], memory_order_relaxed);
}

int64_t ndl_shm_done(const ndl_shm *s, int p) {
  return atomic_load_explicit(&s->hdr[p]->done, memory_order_acquire);
}

/* Elementwise loops: no reassociation (ISO C, no fast-math), so every copy gives the same bits. */
NDL_SIMD_CLONES static void add2_f32(float *restrict d, const float *restrict a, const float *restrict b,
                                     size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = a[i] + b[i];
}
NDL_SIMD_CLONES static void acc_f32(float *restrict d, const float *restrict a, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] += a[i];
}
NDL_SIMD_CLONES static void add2_f64(double *restrict d, const double *restrict a, const double *restrict b,
                                     size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = a[i] + b[i];
}
NDL_SIMD_CLONES static void acc_f64(double *restrict d, const double *restrict a, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] += a[i];
}

void ndl_shm_sum_f32(const ndl_shm *s, int64_t round, float *dst, size_t n) {
  NDL_ASSERT(s->world >= 2 && n * sizeof(float) <= s->cap);
  add2_f32(dst, (const float *)buffer(s, 0, round), (const float *)buffer(s, 1, round), n);
  for (int p = 2; p < s->world; p++) acc_f32(dst, (const float *)buffer(s, p, round), n);
}

void ndl_shm_sum_f64(const ndl_shm *s, int64_t round, double *dst, size_t n) {
  NDL_ASSERT(s->world >= 2 && n * sizeof(double) <= s->cap);
  add2_f64(dst, (const double *)buffer(s, 0, round), (const double *)buffer(s, 1, round), n);
  for (int p = 2; p < s->world; p++) acc_f64(dst, (const double *)buffer(s, p, round), n);
}

void ndl_shm_slice(const ndl_shm *s, size_t n, int q, size_t *lo, size_t *hi) {
  size_t per = (n / (size_t)s->world + 15) / 16 * 16; /* whole cache lines, so no line is shared */
  *lo = per * (size_t)q < n ? per * (size_t)q : n;
  *hi = q == s->world - 1 || per * (size_t)(q + 1) > n ? n : per * (size_t)(q + 1);
}

void ndl_shm_publish_others(ndl_shm *s, int64_t round, const float *buf, size_t n) {
  NDL_ASSERT(n * sizeof(float) <= s->cap);
  size_t lo, hi;
  ndl_shm_slice(s, n, s->rank, &lo, &hi);
  float *mine = (float *)buffer(s, s->rank, round);
  memcpy(mine, buf, lo * sizeof(float));
  memcpy(mine + hi, buf + hi, (n - hi) * sizeof(float));
  atomic_store_explicit(&s->hdr[s->rank]->ready, round, memory_order_release);
}

/* d[i] = ((x[0][i] + x[1][i]) + x[2][i]) + ...: element by element, so d may be one of the x (each
 * d[i] is read before it is written). */
NDL_SIMD_CLONES static void sum_rows_f32(float *d, const float *const *x, int k, size_t n) {
  if (k == 2) {
    for (size_t i = 0; i < n; i++) d[i] = x[0][i] + x[1][i];
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float acc = x[0][i];
    for (int p = 1; p < k; p++) acc += x[p][i];
    d[i] = acc;
  }
}

void ndl_shm_reduce_own(ndl_shm *s, int64_t round, float *buf, size_t n) {
  enum { MAX_INLINE = 64 };
  size_t lo, hi;
  ndl_shm_slice(s, n, s->rank, &lo, &hi);
  float *d = buf + lo;
  const float *inline_x[MAX_INLINE] = {0};
  const float **x = s->world <= MAX_INLINE ? inline_x : ndl_malloc((size_t)s->world * sizeof *x);
  NDL_ASSERT(x);
  for (int p = 0; p < s->world; p++) x[p] = p == s->rank ? d : (const float *)buffer(s, p, round) + lo;
  sum_rows_f32(d, x, s->world, hi - lo);
  if (x != inline_x) ndl_free((void *)x);
  memcpy((float *)buffer(s, s->rank, round) + lo, d, (hi - lo) * sizeof(float));
  atomic_store_explicit(&s->hdr[s->rank]->done, round, memory_order_release);
}

void ndl_shm_gather_others(const ndl_shm *s, int64_t round, float *buf, size_t n) {
  for (int p = 0; p < s->world; p++) {
    if (p == s->rank) continue;
    size_t lo, hi;
    ndl_shm_slice(s, n, p, &lo, &hi);
    memcpy(buf + lo, (const float *)buffer(s, p, round) + lo, (hi - lo) * sizeof(float));
  }
}
