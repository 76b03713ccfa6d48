/* fenced_backend.c: the CPU backend behind a memory fence (see fenced_backend.h). Memory is a bump
 * allocator over one reserved PROT_NONE mapping; every vtable entry opens the used span (mprotect
 * read/write), calls the CPU backend's entry, and closes it again; each entry first checks that every
 * pointer it gets lies on the side its contract says (device, or host for a copy's other end) and
 * aborts naming the entry otherwise. free is a no-op (tests are short). */
#define _GNU_SOURCE
#include "fenced_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGION_BYTES ((size_t)8 << 30) /* reserved, not committed (MAP_NORESERVE) */

static unsigned char *region;
static size_t used;      /* bytes handed out */
static int depth;        /* entries nested (the CPU code never re-enters, but be safe) */
static int64_t entries;
static size_t open_bytes; /* span currently read/write */

static size_t page_round(size_t n) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  return (n + pg - 1) / pg * pg;
}

static void protect(size_t bytes, int prot) {
  if (!bytes) return;
  if (mprotect(region, page_round(bytes), prot) != 0) {
    perror("fenced backend: mprotect");
    abort();
  }
}

static void fence_open(void) {
  if (depth++ == 0) {
    entries++;
    open_bytes = used;
    protect(open_bytes, PROT_READ | PROT_WRITE);
  }
}

static void fence_close(void) {
  if (--depth == 0) {
    protect(open_bytes > used ? open_bytes : used, PROT_NONE);
    open_bytes = 0;
  }
}

static void *f_alloc(size_t bytes) {
  size_t need = (bytes + 63) / 64 * 64;
  if (!need) need = 64;
  if (used + need > REGION_BYTES) return NULL;
  void *p = region + used;
  used += need;
  if (depth) protect(used, PROT_READ | PROT_WRITE); /* allocated inside an entry: usable there */
  return p;
}

/* A pointer handed to an entry must be (ok = 1) or must not be (ok = 0) this backend's memory: a
 * host pointer given to a device entry, or a copy with the wrong direction, would be a bug on a GPU. */
static void expect_owned(const void *p, int want, const char *what) {
  if (p && ndl_fenced_owns(p) != want) {
    fprintf(stderr, "fenced backend: %s: %p is %s memory\n", what, p, want ? "host, not device" : "device, not host");
    abort();
  }
}

static void f_free(void *p) { expect_owned(p, 1, "free"); }

static const ndl_backend *cpu(void) { return ndl_backend_for(NDL_DEV_CPU); }

static ndl_status f_compute(ndl_ctx *ctx, ndl_tensor *node) {
  expect_owned(node->data, 1, "compute output");
  for (int i = 0; i < NDL_MAX_SRC; i++)
    if (node->src[i]) expect_owned(node->src[i]->data, 1, "compute input");
  if (node->op == NDL_OP_BATCHNORM || node->op == NDL_OP_LAYERNORM) { /* the saved state too */
    const ndl_norm_state *st = node->aux;
    const void *ptrs[6] = {st->xhat, st->invstd, st->mean, st->var, st->running_mean, st->running_var};
    for (int i = 0; i < 6; i++) expect_owned(ptrs[i], 1, "norm state");
  } else if (node->op == NDL_OP_SOFTMAX_CE) {
    const ndl_ce_state *st = node->aux;
    const void *ptrs[3] = {st->labels, st->probs, st->sums};
    for (int i = 0; i < 3; i++) expect_owned(ptrs[i], 1, "softmax-CE state");
  }
  fence_open();
  ndl_status s = cpu()->compute(ctx, node);
  fence_close();
  return s;
}

static void f_fused_backward(ndl_ctx *ctx, ndl_tensor *node, const ndl_grad_target *t) {
  for (int i = 0; i < NDL_MAX_SRC; i++) expect_owned(t[i].ptr, 1, "gradient target");
  expect_owned(node->adj ? node->adj->data : NULL, 1, "adjoint");
  fence_open();
  cpu()->fused_backward(ctx, node, t);
  fence_close();
}

static void f_copy(void *dst, const void *src, size_t bytes, ndl_copy_kind kind) {
  expect_owned(dst, kind != NDL_COPY_D2H, "copy destination");
  expect_owned(src, kind != NDL_COPY_H2D, "copy source");
  fence_open();
  cpu()->copy(dst, src, bytes, kind);
  fence_close();
}

static void f_fill(float *dst, float v, int64_t n) {
  expect_owned(dst, 1, "fill");
  fence_open();
  cpu()->fill(dst, v, n);
  fence_close();
}

static void f_strided_copy(const ndl_tensor *src, float *out) {
  expect_owned(src->data, 1, "strided_copy source");
  expect_owned(out, 1, "strided_copy destination");
  fence_open();
  cpu()->strided_copy(src, out);
  fence_close();
}

static void f_accumulate(float *dst, const ndl_tensor *src) {
  expect_owned(dst, 1, "accumulate destination");
  expect_owned(src->data, 1, "accumulate source");
  fence_open();
  cpu()->accumulate(dst, src);
  fence_close();
}

static void f_sync(void) {
  fence_open();
  cpu()->sync();
  fence_close();
}

static void f_optim_update(const ndl_optim_update *u) {
  expect_owned(u->theta, 1, "optimizer theta");
  expect_owned(u->grad, 1, "optimizer grad");
  expect_owned(u->state, 1, "optimizer state");
  fence_open();
  cpu()->optim_update(u);
  fence_close();
}

static void f_gather_batch(float *dst, int32_t *dst_labels, const float *src, const int32_t *labels,
                           const int64_t *idx, int64_t n, int64_t row_len) {
  const void *ptrs[5] = {dst, dst_labels, src, labels, idx};
  for (int i = 0; i < 5; i++) expect_owned(ptrs[i], 1, "gather_batch");
  fence_open();
  cpu()->gather_batch(dst, dst_labels, src, labels, idx, n, row_len);
  fence_close();
}

static ndl_backend fenced = {
    .name = "fenced",
    .device = NDL_DEV_TEST,
    .compute = f_compute,
    .fused_backward = f_fused_backward,
    .alloc = f_alloc,
    .free = f_free,
    .copy = f_copy,
    .fill = f_fill,
    .strided_copy = f_strided_copy,
    .accumulate = f_accumulate,
    .sync = f_sync,
    .optim_update = f_optim_update,
    .gather_batch = f_gather_batch,
};

const ndl_backend *ndl_fenced_backend(void) {
  if (!region) {
    void *p = mmap(NULL, REGION_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      perror("fenced backend: mmap");
      abort();
    }
    region = p;
  }
  ndl_backend_register_test(&fenced);
  return &fenced;
}

int ndl_fenced_owns(const void *p) {
  const unsigned char *c = p;
  return region && c >= region && c < region + REGION_BYTES;
}

int64_t ndl_fenced_entries(void) { return entries; }

int ndl_fenced_is_open(void) { return depth > 0; }
