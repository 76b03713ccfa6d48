/* weights.c: env->params then env->buffers as a PyTorch state_dict in safetensors (SPEC §4).
 * One layout rule per tensor, shared by save and load: 2-D "*.weight" (in,out) -> (out,in),
 * "*.bias" (1,out) -> (out), "*.num_batches_tracked" float[1] -> I64 0-d, anything else unchanged.
 * Loading validates every tensor before copying any, so a failed load leaves the env unchanged.
 * Leaves out: optimizer state and RNG (checkpoints), dtypes other than F32/I64 in weight files. */
#include "launch/weights.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/tensor.h"

typedef enum layout { LAYOUT_COPY, LAYOUT_TRANSPOSE, LAYOUT_SCALAR_I64 } layout;

typedef struct torch_view {
  layout kind;
  ndl_st_dtype dtype;
  int ndim;
  int64_t shape[8];
  int64_t nbytes;
} torch_view;

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

/* PyTorch's dtype and shape of one of our tensors. */
static torch_view torch_layout(const char *name, const ndl_tensor *t) {
  torch_view v;
  memset(&v, 0, sizeof v);
  v.dtype = NDL_ST_F32;
  v.ndim = t->ndim;
  for (int i = 0; i < t->ndim; i++) v.shape[i] = t->shape[i];
  int64_t numel = ndl_tensor_numel(t);
  if (ends_with(name, ".num_batches_tracked") && numel == 1) {
    v.kind = LAYOUT_SCALAR_I64;
    v.dtype = NDL_ST_I64;
    v.ndim = 0;
    v.nbytes = 8;
    return v;
  }
  if (t->ndim == 2 && ends_with(name, ".weight")) {
    v.kind = LAYOUT_TRANSPOSE;
    v.shape[0] = t->shape[1];
    v.shape[1] = t->shape[0];
  } else if (t->ndim == 2 && t->shape[0] == 1 && ends_with(name, ".bias")) {
    v.ndim = 1;
    v.shape[0] = t->shape[1];
  }
  v.kind = v.kind == LAYOUT_TRANSPOSE ? LAYOUT_TRANSPOSE : LAYOUT_COPY;
  v.nbytes = numel * 4;
  return v;
}

/* Our layout -> PyTorch layout. */
static void to_torch(const torch_view *v, const ndl_params *s, const ndl_tensor *t, void *dst) {
  NDL_ASSERT(ndl_tensor_is_contiguous(t));
  const float *src = ndl_params_host_ptr(s, t); /* the host mirror (pulled by the caller) */
  if (v->kind == LAYOUT_SCALAR_I64) {
    int64_t n = (int64_t)llround((double)src[0]);
    memcpy(dst, &n, 8);
  } else if (v->kind == LAYOUT_TRANSPOSE) {
    int64_t rows = t->shape[0], cols = t->shape[1];
    float *out = (float *)dst;
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j];
  } else {
    memcpy(dst, src, (size_t)v->nbytes);
  }
}

/* PyTorch layout (possibly unaligned bytes) -> our tensor. */
static void from_torch(const torch_view *v, const void *src, const ndl_params *s, ndl_tensor *t) {
  NDL_ASSERT(ndl_tensor_is_contiguous(t));
  float *dst = ndl_params_host_ptr(s, t); /* the host mirror (pushed by the caller) */
  const unsigned char *b = (const unsigned char *)src;
  if (v->kind == LAYOUT_SCALAR_I64) {
    int64_t n;
    memcpy(&n, b, 8);
    dst[0] = (float)n;
  } else if (v->kind == LAYOUT_TRANSPOSE) {
    int64_t rows = t->shape[0], cols = t->shape[1]; /* ours (in,out); the file holds (out,in) */
    for (int64_t j = 0; j < cols; j++)
      for (int64_t i = 0; i < rows; i++) memcpy(&dst[i * cols + j], b + 4 * (j * rows + i), 4);
  } else {
    memcpy(dst, b, (size_t)v->nbytes);
  }
}

/* The i-th tensor of params then buffers. */
static const ndl_params *store_of(const ndl_nn_env *env, int i, int *k) {
  if (i < env->params.count) {
    *k = i;
    return &env->params;
  }
  *k = i - env->params.count;
  return &env->buffers;
}

/* Length of the module prefix of a state_dict name ("2.0.fn.1" of "2.0.fn.1.running_mean"). */
static size_t prefix_len(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot ? (size_t)(dot - name) : 0;
}

static int same_prefix(const char *a, const char *b) {
  size_t n = prefix_len(a);
  return n == prefix_len(b) && !strncmp(a, b, n);
}

/* PyTorch's state_dict order as indices into params-then-buffers: each buffer goes right after the
 * last parameter of its module (modules register their tensors contiguously), orphans at the end. */
static void torch_order(const ndl_nn_env *env, int *order) {
  const ndl_params *p = &env->params, *b = &env->buffers;
  int n = 0;
  for (int i = 0; i < p->count; i++) {
    order[n++] = i;
    int last = 1;
    for (int k = i + 1; k < p->count && last; k++) last = !same_prefix(p->names[i], p->names[k]);
    if (!last) continue;
    for (int j = 0; j < b->count; j++)
      if (same_prefix(p->names[i], b->names[j])) order[n++] = p->count + j;
  }
  for (int j = 0; j < b->count; j++) {
    int placed = 0;
    for (int i = 0; i < p->count && !placed; i++) placed = same_prefix(p->names[i], b->names[j]);
    if (!placed) order[n++] = p->count + j;
  }
  NDL_ASSERT(n == p->count + b->count);
}

int ndl_weights_entries(ndl_nn_env *env, ndl_st_entry **entries, void **scratch) {
  int n = env->params.count + env->buffers.count;
  ndl_params_pull(&env->params); /* device -> host mirror (no-op on the host) */
  ndl_params_pull(&env->buffers);
  size_t head = ((size_t)(n ? n : 1) * sizeof(ndl_st_entry) + 63) & ~(size_t)63;
  head += ((size_t)(n ? n : 1) * sizeof(int) + 63) & ~(size_t)63;
  size_t total = head;
  for (int i = 0; i < n; i++) {
    int k;
    const ndl_params *s = store_of(env, i, &k);
    torch_view v = torch_layout(s->names[k], s->tensors[k]);
    total += ((size_t)v.nbytes + 7) & ~(size_t)7;
  }
  unsigned char *mem = (unsigned char *)ndl_malloc(total);
  *entries = NULL;
  *scratch = NULL;
  if (!mem) {
    ndl_errorf(NDL_ERR_NOMEM, "weights: out of memory for %zu bytes of state_dict", total);
    return -1;
  }
  ndl_st_entry *e = (ndl_st_entry *)mem;
  int *order = (int *)(mem + (((size_t)(n ? n : 1) * sizeof(ndl_st_entry) + 63) & ~(size_t)63));
  torch_order(env, order);
  size_t at = head;
  for (int i = 0; i < n; i++) {
    int k;
    const ndl_params *s = store_of(env, order[i], &k);
    torch_view v = torch_layout(s->names[k], s->tensors[k]);
    NDL_ASSERT(strlen(s->names[k]) < NDL_ST_MAX_NAME);
    memset(&e[i], 0, sizeof e[i]);
    strcpy(e[i].name, s->names[k]);
    e[i].dtype = v.dtype;
    e[i].ndim = v.ndim;
    memcpy(e[i].shape, v.shape, sizeof v.shape);
    e[i].nbytes = v.nbytes;
    e[i].data = mem + at;
    to_torch(&v, s, s->tensors[k], mem + at);
    at += ((size_t)v.nbytes + 7) & ~(size_t)7;
  }
  *entries = e;
  *scratch = mem;
  return n;
}

ndl_status ndl_weights_save(const char *path, ndl_nn_env *env) {
  ndl_st_entry *entries;
  void *scratch;
  int n = ndl_weights_entries(env, &entries, &scratch);
  if (n < 0) return NDL_ERR_NOMEM;
  ndl_st_meta meta;
  memset(&meta, 0, sizeof meta);
  strcpy(meta.key, "format");
  strcpy(meta.value, "pt");
  ndl_status st = ndl_safetensors_write(path, entries, n, &meta, 1);
  ndl_free(scratch);
  return st;
}

static const char *dtype_str(ndl_st_dtype d) { return ndl_st_dtype_name(d); }

static int env_has(const ndl_nn_env *env, const char *name) {
  return ndl_params_find(&env->params, name) >= 0 || ndl_params_find(&env->buffers, name) >= 0;
}

ndl_status ndl_weights_load_from(const ndl_st_file *f, const char *path, ndl_nn_env *env) {
  int n = env->params.count + env->buffers.count;
  /* pass 1: every tensor present with PyTorch's dtype and shape; nothing unexpected */
  for (int i = 0; i < n; i++) {
    int k;
    const ndl_params *s = store_of(env, i, &k);
    const char *name = s->names[k];
    torch_view v = torch_layout(name, s->tensors[k]);
    const ndl_st_entry *e = ndl_safetensors_find(f, name);
    if (!e) return ndl_errorf(NDL_ERR_MISMATCH, "%s: tensor %s is missing", path, name);
    if (e->dtype != v.dtype)
      return ndl_errorf(NDL_ERR_MISMATCH, "%s: tensor %s has dtype %s, expected %s", path, name,
                        dtype_str(e->dtype), dtype_str(v.dtype));
    int same = e->ndim == v.ndim;
    for (int d = 0; same && d < v.ndim; d++) same = e->shape[d] == v.shape[d];
    if (!same) {
      char got[128], want[128];
      ndl_shape_format(e->ndim, e->shape, got, sizeof got);
      ndl_shape_format(v.ndim, v.shape, want, sizeof want);
      return ndl_errorf(NDL_ERR_MISMATCH, "%s: tensor %s has shape %s, expected %s", path, name, got, want);
    }
    NDL_ASSERT(e->nbytes == v.nbytes);
  }
  for (int i = 0; i < f->n; i++) {
    const char *name = f->entries[i].name;
    if (strncmp(name, "_ndl.", 5) != 0 && !env_has(env, name)) {
      char esc[NDL_ST_ESCAPED(NDL_ST_MAX_NAME)];
      return ndl_errorf(NDL_ERR_MISMATCH, "%s: unexpected tensor %s (not in the model)", path,
                        ndl_st_escape(name, esc, sizeof esc));
    }
  }
  /* pass 2: copy */
  for (int i = 0; i < n; i++) {
    int k;
    const ndl_params *s = store_of(env, i, &k);
    torch_view v = torch_layout(s->names[k], s->tensors[k]);
    from_torch(&v, ndl_safetensors_find(f, s->names[k])->data, s, s->tensors[k]);
  }
  ndl_params_push(&env->params); /* host mirror -> device (no-op on the host) */
  ndl_params_push(&env->buffers);
  return NDL_OK;
}

ndl_status ndl_weights_load(const char *path, ndl_nn_env *env) {
  ndl_st_file f;
  ndl_status st = ndl_safetensors_read(path, &f);
  if (st != NDL_OK) return st;
  st = ndl_weights_load_from(&f, path, env);
  ndl_safetensors_free(&f);
  return st;
}
