/* tensor.h: the float32 tensor, its views, and the context that owns per-step memory.
 * A tensor is a strided view (shape, strides, offset) into storage it does not own: step tensors
 * live in the context's arena, parameters in flat buffers owned by an ndl_params store.
 * A tensor is also an autograd node: op + inputs + small params (see ops.h, autograd.h). */
#ifndef NDL_TENSOR_H
#define NDL_TENSOR_H

#include <stdint.h>

#include "core/alloc.h"
#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NDL_MAX_DIMS 8
#define NDL_MAX_SRC 3

/* X(name, text): the op set; order is the enum order. */
#define NDL_OP_TABLE(X)                                                               \
  X(NONE, "leaf") X(ADD, "add") X(SUB, "sub") X(MUL, "mul") X(DIV, "div")               \
  X(POW, "pow") X(MAXIMUM, "maximum") X(ADD_SCALAR, "add_scalar")                       \
  X(MUL_SCALAR, "mul_scalar") X(DIV_SCALAR, "div_scalar") X(RDIV_SCALAR, "rdiv_scalar") \
  X(POW_SCALAR, "pow_scalar") X(NEG, "negate") X(LOG, "log") X(EXP, "exp")              \
  X(RELU, "relu") X(TANH, "tanh") X(EQ, "eq") X(GT, "gt") X(GE, "ge")                   \
  X(GT_SCALAR, "gt_scalar") X(SUM, "sum") X(MAX, "max") X(RESHAPE, "reshape")           \
  X(BROADCAST, "broadcast_to") X(PERMUTE, "permute") X(SLICE, "slice")                  \
  X(UNSLICE, "unslice") X(COMPACT, "compact") X(MATMUL, "matmul")                       \
  X(LOGSUMEXP, "logsumexp") X(LINEAR, "linear") X(BATCHNORM, "batchnorm")               \
  X(LAYERNORM, "layernorm") X(SOFTMAX_CE, "softmax_cross_entropy") X(RELU_GRAD, "relu_grad")                \
  X(DROPOUT, "dropout")

typedef enum ndl_op {
#define NDL_OP_ENUM(name, text) NDL_OP_##name,
  NDL_OP_TABLE(NDL_OP_ENUM)
#undef NDL_OP_ENUM
      NDL_OP_COUNT
} ndl_op;

/* Name of an op for messages; aborts on an out-of-range value. */
const char *ndl_op_name(ndl_op op);

/* Where a tensor's storage lives; 0 (a zeroed struct) is the host. */
typedef enum ndl_device {
  NDL_DEV_CPU = 0,
  NDL_DEV_CUDA = 1,
  NDL_DEV_TEST = 2 /* a test backend registered with ndl_backend_register_test (tests/) */
} ndl_device;

/* Name of a device for messages ("cpu", "cuda", "test"). */
const char *ndl_device_name(ndl_device d);

typedef struct ndl_tensor ndl_tensor;
struct ndl_tensor {
  float *data;     /* base of the storage (borrowed) */
  int64_t offset;  /* first element, in elements from data */
  int ndim;
  int64_t shape[NDL_MAX_DIMS];
  int64_t strides[NDL_MAX_DIMS]; /* in elements; 0 on broadcast dims */
  ndl_device device;     /* where data lives; node building requires inputs to agree */
  /* autograd node */
  ndl_op op;              /* NDL_OP_NONE for a leaf */
  ndl_tensor *src[NDL_MAX_SRC]; /* inputs (borrowed) */
  float scalar;           /* scalar operand of *_SCALAR ops */
  int naxes;
  int64_t iparams[2 * NDL_MAX_DIMS]; /* axes (sum/max/logsumexp/permute) or start,step (slice) */
  void *aux;              /* fused ops: saved forward state in the step arena */
  uint8_t requires_grad;
  uint32_t mark;          /* backward traversal stamp */
  ndl_tensor *grad;       /* leaves: accumulated gradient (a view into a flat buffer for parameters) */
  /* set by backward when it allocates .grad in the step arena: that tensor and the ctx epoch */
  const ndl_tensor *arena_grad;
  uint64_t grad_epoch;
  ndl_tensor *adj;        /* backward scratch; NULL outside ndl_graph_* */
  const char *name;       /* optional, borrowed */
};

struct ndl_backend;

/* Per-step memory, the backend that computes its nodes, grad mode and a sticky error status.
 * Two arenas, both rewound by ndl_ctx_reset: `arena` (host memory) holds node structs and the fused
 * ops' state structs; `data` (the backend's memory, chunks from backend->alloc) holds tensor data and
 * the fused ops' saved arrays. On a host backend (device NDL_DEV_CPU) `data` stays empty and tensor
 * data shares `arena` with its node, exactly as before devices existed. */
typedef struct ndl_ctx {
  ndl_arena arena;
  ndl_arena data;
  const struct ndl_backend *backend; /* computes nodes and moves memory; set at creation */
  int grad_enabled;
  uint32_t mark;
  int backward_to_leaves; /* set while ndl_graph_backward runs: leaf grads take contributions directly */
  ndl_status status; /* first error since the last reset; ops on a failed context return NULL */
  uint64_t epoch;    /* unique per context and reset: tells a live step-arena gradient from a released one */
  struct ndl_host_feed *feeds, *feeds_last; /* host-filled tensors recorded for replays (core/host_feed.c) */
  int recording_feeds;
} ndl_ctx;

/* Create a context with a step arena (grad mode on) on the CPU backend. Owned; free with ndl_ctx_free. */
ndl_ctx *ndl_ctx_new(void);
/* The same on a given backend (core/backend.h); NULL backend means the CPU one. */
ndl_ctx *ndl_ctx_new_on(const struct ndl_backend *backend);
void ndl_ctx_free(ndl_ctx *ctx);
/* Release every node and temporary of the step and clear the sticky status. A caller-owned leaf
 * (not in the arena, no .grad of its own) whose gradient backward allocated in the arena keeps a
 * dangling .grad after this: do not read it; the next ndl_graph_backward reaching that leaf refuses
 * (NDL_ERR_ARG) until the caller sets .grad = NULL or points it at storage of its own. */
void ndl_ctx_reset(ndl_ctx *ctx);
/* Turn graph recording on/off; returns the previous setting. */
int ndl_ctx_set_grad(ndl_ctx *ctx, int enabled);
/* Record the first error on the context (message via ndl_errorf); returns s. */
ndl_status ndl_ctx_fail(ndl_ctx *ctx, ndl_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Host arena memory for the step, or NULL (and NDL_ERR_NOMEM on ctx). */
void *ndl_ctx_alloc(ndl_ctx *ctx, size_t bytes);
/* Step memory on the context backend's device (64-byte aligned, valid until the next reset), or
 * NULL (and NDL_ERR_NOMEM on ctx). Host arena memory on a host backend. */
void *ndl_ctx_alloc_data(ndl_ctx *ctx, size_t bytes);
/* 1 when the context backend's memory is host memory (device NDL_DEV_CPU). */
int ndl_ctx_data_on_host(const ndl_ctx *ctx);

/* ---- shapes ---- */
/* Product of the dims, or -1 when it overflows int64 (or a dim is negative): never wraps. */
int64_t ndl_shape_numel(int ndim, const int64_t *shape);
/* Largest element count of one tensor: its bytes (plus a header) must stay far inside size_t and
 * ndl_malloc's limit, so size arithmetic on a checked count cannot wrap. */
#define NDL_MAX_NUMEL ((int64_t)1 << 44)
/* "[2,3,4]" into buf (always terminated); returns buf. */
char *ndl_shape_format(int ndim, const int64_t *shape, char *buf, int buflen);
int ndl_shape_equal(const ndl_tensor *a, const ndl_tensor *b);

/* ---- tensors ---- */
int64_t ndl_tensor_numel(const ndl_tensor *t);
/* Row-major with no gaps and no broadcast dims. */
int ndl_tensor_is_contiguous(const ndl_tensor *t);
/* Pointer to element 0 of a contiguous tensor. */
static inline float *ndl_tensor_ptr(const ndl_tensor *t) { return t->data + t->offset; }

/* Initialize a caller-owned struct as a contiguous leaf view of data (no allocation). */
void ndl_tensor_init_view(ndl_tensor *t, float *data, int ndim, const int64_t *shape);
/* New uninitialized contiguous step tensor, or NULL with the status on ctx. */
ndl_tensor *ndl_tensor_empty(ndl_ctx *ctx, int ndim, const int64_t *shape);
ndl_tensor *ndl_tensor_zeros(ndl_ctx *ctx, int ndim, const int64_t *shape);
ndl_tensor *ndl_tensor_full(ndl_ctx *ctx, int ndim, const int64_t *shape, float value);
/* Step tensor holding a copy of numel values. */
ndl_tensor *ndl_tensor_from(ndl_ctx *ctx, int ndim, const int64_t *shape, const float *values);
/* Element at a multi-index (any strides); one device->host read off the host. */
float ndl_tensor_get(const ndl_tensor *t, const int64_t *index);
/* Host code that fills a fresh contiguous step tensor t (a mask, a one-hot): write numel floats at
 * ndl_tensor_host_begin (t's own memory on a host backend, else host scratch in the step arena;
 * NULL with the status on ctx), then ndl_tensor_host_end uploads them (no-op on the host). */
float *ndl_tensor_host_begin(ndl_ctx *ctx, ndl_tensor *t);
void ndl_tensor_host_end(ndl_ctx *ctx, ndl_tensor *t, const float *host);

/* A host fill that can run again for a replayed step (core/host_feed.c): fill(arg, host, n) writes
 * the n floats of a fresh contiguous step tensor; a captured step records it, with a copy of its
 * arg (at most NDL_HOST_FEED_ARG bytes), and every replay runs it again, in the same order. */
#define NDL_HOST_FEED_ARG 64
typedef void (*ndl_host_fill_fn)(const void *arg, float *host, int64_t n);
/* Fill t through fill(arg) on the host and upload it. While ctx records feeds (a step being
 * captured: uploads are no part of a graph) the upload waits for ndl_ctx_feed. Status on ctx. */
ndl_status ndl_tensor_host_fill(ndl_ctx *ctx, ndl_tensor *t, ndl_host_fill_fn fill, const void *arg,
                                size_t arg_bytes);
/* Start (on: a new, empty list) or stop recording host fills on ctx; ndl_ctx_reset drops the list. */
void ndl_ctx_record_feeds(ndl_ctx *ctx, int on);
/* Upload every recorded fill's values to its tensor, in recording order; refill: run each fill
 * again first (the next replay's values, e.g. its dropout draws). Returns ctx's status. */
ndl_status ndl_ctx_feed(ndl_ctx *ctx, int refill);
/* A 2-D view of t with its two axes swapped (no allocation). */
ndl_tensor ndl_view_transposed(const ndl_tensor *t);
/* Copy all elements in row-major order into out (numel floats, memory of t's device). */
void ndl_tensor_copy_out(const ndl_tensor *t, float *out);
/* Mark a leaf as needing a gradient. */
void ndl_tensor_set_requires_grad(ndl_tensor *t, int on);
/* A leaf sharing t's storage, cut from the graph. */
ndl_tensor *ndl_tensor_detach(ndl_ctx *ctx, ndl_tensor *t);
/* dst += src elementwise (same shape and device; src may be strided); no graph. */
void ndl_tensor_accumulate(ndl_tensor *dst, const ndl_tensor *src);

#ifdef __cplusplus
}
#endif
#endif
