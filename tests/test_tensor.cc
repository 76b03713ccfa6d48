// test_tensor.cc: tensor views without copies (reshape, permute, transpose, broadcast_to, slice),
// compact and contiguity, caller-owned views and 0-d tensors, the flat parameter store, the step
// arena, status texts, and the error paths of tensor creation and view ops (sticky status, NULL
// propagation).
#include <cstring>
#include <functional>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/params.h"
#include "test_util.h"

namespace {

class Tensor : public CtxTest {};

ndl_tensor *iota(ndl_ctx *ctx, std::initializer_list<int64_t> shape) {
  std::vector<int64_t> dims(shape);
  std::vector<float> v((size_t)ndl_shape_numel((int)dims.size(), dims.data()));
  for (size_t i = 0; i < v.size(); i++) v[i] = (float)i;
  return ndl_tensor_from(ctx, (int)dims.size(), dims.data(), v.data());
}

std::vector<int64_t> shape_of(const ndl_tensor *t) { return std::vector<int64_t>(t->shape, t->shape + t->ndim); }
std::vector<int64_t> strides_of(const ndl_tensor *t) {
  return std::vector<int64_t>(t->strides, t->strides + t->ndim);
}
using V = std::vector<int64_t>;

// ---- views ----

TEST_F(Tensor, ReshapeOfContiguousSharesStorageAndInfersMinusOne) {
  ndl_tensor *x = iota(ctx, {2, 3, 4});
  int64_t to[2] = {4, -1};
  ndl_tensor *r = ndl_reshape(ctx, x, 2, to);
  ASSERT_NE(r, nullptr) << ndl_last_error();
  EXPECT_EQ(shape_of(r), V({4, 6}));
  EXPECT_EQ(strides_of(r), V({6, 1}));
  EXPECT_EQ(r->data, x->data);
  EXPECT_EQ(r->offset, x->offset);
  EXPECT_EQ(tensor_values(r), tensor_values(x));
  // a write through the storage is seen by the view
  ndl_tensor_ptr(x)[7] = -1.f;
  int64_t idx[2] = {1, 1};
  EXPECT_EQ(ndl_tensor_get(r, idx), -1.f);
  // a contiguous slice (whole rows) reshapes as a view keeping its offset
  int64_t st[3] = {1, 0, 0}, sp[3] = {2, 3, 4}, flat[1] = {-1};
  ndl_tensor *rows = ndl_slice(ctx, x, st, sp, nullptr);
  ndl_tensor *rf = ndl_reshape(ctx, rows, 1, flat);
  ASSERT_NE(rf, nullptr);
  EXPECT_EQ(rf->data, x->data);
  EXPECT_EQ(rf->offset, 12);
  EXPECT_EQ(shape_of(rf), V({12}));
  EXPECT_FLOAT_EQ(tensor_values(rf)[0], 12.f);
}

TEST_F(Tensor, ReshapeOfNonContiguousCopies) {
  ndl_tensor *x = iota(ctx, {2, 3});
  ndl_tensor *t = ndl_transpose(ctx, x, 0, 1);
  int64_t to[1] = {6};
  ndl_tensor *r = ndl_reshape(ctx, t, 1, to);
  ASSERT_NE(r, nullptr);
  EXPECT_NE(r->data, x->data);
  EXPECT_TRUE(ndl_tensor_is_contiguous(r));
  EXPECT_EQ(tensor_values(r), std::vector<float>({0, 3, 1, 4, 2, 5}));
}

TEST_F(Tensor, PermuteAndTransposeShareStorageWithPermutedStrides) {
  ndl_tensor *x = iota(ctx, {2, 3, 4});
  int perm[3] = {2, 0, 1};
  ndl_tensor *p = ndl_permute(ctx, x, perm);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->data, x->data);
  EXPECT_EQ(shape_of(p), V({4, 2, 3}));
  EXPECT_EQ(strides_of(p), V({1, 12, 4}));
  EXPECT_FALSE(ndl_tensor_is_contiguous(p));
  for (int64_t i = 0; i < 4; i++)
    for (int64_t j = 0; j < 2; j++)
      for (int64_t k = 0; k < 3; k++) {
        int64_t pi[3] = {i, j, k}, xi[3] = {j, k, i};
        EXPECT_EQ(ndl_tensor_get(p, pi), ndl_tensor_get(x, xi));
      }
  ndl_tensor *t = ndl_transpose(ctx, x, -1, -3);  // negative axes: swap 2 and 0
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->data, x->data);
  EXPECT_EQ(shape_of(t), V({4, 3, 2}));
  EXPECT_EQ(strides_of(t), V({1, 4, 12}));
  int64_t ti[3] = {3, 1, 1}, xi[3] = {1, 1, 3};
  EXPECT_EQ(ndl_tensor_get(t, ti), ndl_tensor_get(x, xi));
}

TEST_F(Tensor, BroadcastToUsesZeroStrides) {
  ndl_tensor *x = iota(ctx, {3, 1});
  int64_t to[3] = {2, 3, 4};
  ndl_tensor *b = ndl_broadcast_to(ctx, x, 3, to);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data, x->data);
  EXPECT_EQ(shape_of(b), V({2, 3, 4}));
  EXPECT_EQ(strides_of(b), V({0, 1, 0}));
  EXPECT_FALSE(ndl_tensor_is_contiguous(b));
  std::vector<float> v = tensor_values(b);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++) EXPECT_EQ(v[(size_t)((i * 3 + j) * 4 + k)], (float)j);
  // same shape: a view with the same strides
  int64_t same[2] = {3, 1};
  ndl_tensor *s = ndl_broadcast_to(ctx, x, 2, same);
  EXPECT_TRUE(ndl_tensor_is_contiguous(s));
  EXPECT_EQ(s->data, x->data);
}

TEST_F(Tensor, SliceWithStepsHasOffsetAndScaledStrides) {
  ndl_tensor *x = iota(ctx, {5, 6});
  int64_t st[2] = {1, 2}, sp[2] = {5, 6}, step[2] = {2, 3};
  ndl_tensor *s = ndl_slice(ctx, x, st, sp, step);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->data, x->data);
  EXPECT_EQ(shape_of(s), V({2, 2}));
  EXPECT_EQ(strides_of(s), V({12, 3}));
  EXPECT_EQ(s->offset, 8);
  EXPECT_EQ(tensor_values(s), std::vector<float>({8, 11, 20, 23}));
  // a slice of a slice composes offsets and strides; uneven steps round up (ceil)
  int64_t st2[2] = {1, 1}, sp2[2] = {2, 2};
  ndl_tensor *ss = ndl_slice(ctx, s, st2, sp2, nullptr);
  EXPECT_EQ(ss->offset, 23);
  EXPECT_EQ(tensor_values(ss), std::vector<float>({23}));
  int64_t st3[2] = {0, 0}, sp3[2] = {5, 6}, step3[2] = {3, 4};
  ndl_tensor *u = ndl_slice(ctx, x, st3, sp3, step3);
  EXPECT_EQ(shape_of(u), V({2, 2}));
  EXPECT_EQ(tensor_values(u), std::vector<float>({0, 4, 18, 22}));
  // an empty range gives a zero-size dim
  int64_t st4[2] = {2, 0}, sp4[2] = {2, 6};
  ndl_tensor *e = ndl_slice(ctx, x, st4, sp4, nullptr);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(ndl_tensor_numel(e), 0);
}

TEST_F(Tensor, CompactCopiesViewsAndReturnsContiguousTensorsAsIs) {
  ndl_tensor *x = iota(ctx, {3, 4});
  EXPECT_EQ(ndl_compact(ctx, x), x);
  int64_t st[2] = {0, 1}, sp[2] = {3, 4}, step[2] = {2, 2};
  ndl_tensor *s = ndl_slice(ctx, x, st, sp, step);
  ndl_tensor *c = ndl_compact(ctx, s);
  ASSERT_NE(c, nullptr);
  EXPECT_NE(c->data, x->data);
  EXPECT_TRUE(ndl_tensor_is_contiguous(c));
  EXPECT_EQ(c->offset, 0);
  EXPECT_EQ(strides_of(c), V({2, 1}));
  EXPECT_EQ(tensor_values(c), std::vector<float>({1, 3, 9, 11}));
  ndl_tensor *ct = ndl_compact(ctx, ndl_transpose(ctx, x, 0, 1));
  EXPECT_EQ(tensor_values(ct), std::vector<float>({0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_TRUE(ndl_tensor_is_contiguous(ct));
  // the copy is independent of the source
  ndl_tensor_ptr(x)[1] = 100.f;
  EXPECT_EQ(tensor_values(c)[0], 1.f);
}

TEST_F(Tensor, IsContiguousOnVariousViews) {
  ndl_tensor *x = iota(ctx, {4, 5});
  EXPECT_TRUE(ndl_tensor_is_contiguous(x));
  EXPECT_FALSE(ndl_tensor_is_contiguous(ndl_transpose(ctx, x, 0, 1)));
  int64_t rs[2] = {1, 0}, re[2] = {4, 5}, cs[2] = {0, 1}, ce[2] = {4, 3}, step[2] = {2, 1};
  EXPECT_TRUE(ndl_tensor_is_contiguous(ndl_slice(ctx, x, rs, re, nullptr)));   // whole rows
  EXPECT_FALSE(ndl_tensor_is_contiguous(ndl_slice(ctx, x, cs, ce, nullptr)));  // partial rows
  EXPECT_FALSE(ndl_tensor_is_contiguous(ndl_slice(ctx, x, rs, re, step)));     // row step
  int64_t one[2] = {1, 0}, one_end[2] = {2, 5};
  EXPECT_TRUE(ndl_tensor_is_contiguous(ndl_slice(ctx, x, one, one_end, step)));  // size-1 dim, any stride
  int64_t to[3] = {2, 4, 5};
  EXPECT_FALSE(ndl_tensor_is_contiguous(ndl_broadcast_to(ctx, x, 3, to)));
  int64_t to1[3] = {1, 4, 5};
  EXPECT_TRUE(ndl_tensor_is_contiguous(ndl_broadcast_to(ctx, x, 3, to1)));
  ndl_tensor zero_d;
  ndl_tensor_init_view(&zero_d, ndl_tensor_ptr(x), 0, nullptr);
  EXPECT_TRUE(ndl_tensor_is_contiguous(&zero_d));
}

TEST_F(Tensor, InitViewIsARowMajorLeaf) {
  float buf[24];
  for (int i = 0; i < 24; i++) buf[i] = (float)i;
  ndl_tensor t;
  std::memset(&t, 0xab, sizeof t);  // every field must be written
  int64_t shape[3] = {2, 3, 4};
  ndl_tensor_init_view(&t, buf, 3, shape);
  EXPECT_EQ(t.data, buf);
  EXPECT_EQ(t.offset, 0);
  EXPECT_EQ(t.ndim, 3);
  EXPECT_EQ(shape_of(&t), V({2, 3, 4}));
  EXPECT_EQ(strides_of(&t), V({12, 4, 1}));
  EXPECT_EQ(t.op, NDL_OP_NONE);
  EXPECT_EQ(t.src[0], nullptr);
  EXPECT_EQ(t.grad, nullptr);
  EXPECT_EQ(t.adj, nullptr);
  EXPECT_EQ(t.name, nullptr);
  EXPECT_FALSE(t.requires_grad);
  EXPECT_EQ(ndl_tensor_numel(&t), 24);
  int64_t idx[3] = {1, 2, 3};
  EXPECT_EQ(ndl_tensor_get(&t, idx), 23.f);
  // usable as an op input; ops never write into it
  ndl_tensor *y = ndl_mul_scalar(ctx, &t, 2.f);
  EXPECT_EQ(tensor_values(y)[23], 46.f);
  EXPECT_EQ(buf[23], 23.f);
}

TEST_F(Tensor, ZeroDimTensors) {
  float v = 3.f;
  ndl_tensor *s = ndl_tensor_from(ctx, 0, nullptr, &v);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->ndim, 0);
  EXPECT_EQ(ndl_tensor_numel(s), 1);
  EXPECT_EQ(ndl_tensor_get(s, nullptr), 3.f);
  ndl_tensor_set_requires_grad(s, 1);
  ndl_tensor *y = ndl_mul(ctx, s, s);  // 0-d op, 0-d result
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->ndim, 0);
  EXPECT_EQ(tensor_values(y), std::vector<float>({9.f}));
  int64_t one[2] = {1, 1};
  ndl_tensor *r = ndl_reshape(ctx, y, 2, one);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(shape_of(r), V({1, 1}));
  ndl_tensor *back = ndl_reshape(ctx, r, 0, nullptr);
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(back->ndim, 0);
  ndl_tensor *total = ndl_sum(ctx, back, nullptr, 0);  // sum over no dims of a 0-d tensor
  ASSERT_NE(total, nullptr);
  EXPECT_EQ(total->ndim, 0);
  ASSERT_EQ(ndl_graph_backward(ctx, total, nullptr), NDL_OK);
  ASSERT_NE(s->grad, nullptr);
  EXPECT_EQ(s->grad->ndim, 0);
  EXPECT_EQ(tensor_values(s->grad), std::vector<float>({6.f}));
  int64_t to[2] = {2, 3};
  ndl_tensor *b = ndl_broadcast_to(ctx, s, 2, to);
  EXPECT_EQ(strides_of(b), V({0, 0}));
  EXPECT_EQ(tensor_values(b), std::vector<float>(6, 3.f));
}

// ---- parameter store ----

TEST_F(Tensor, ParamsAddGrowsAndRepointsViews) {
  ASSERT_NE(ndl_tensor_zeros(ctx, 0, nullptr), nullptr);  // the arena's chunk exists before the count
  int64_t live = ndl_alloc_live_count();
  ndl_params p;
  ndl_params_init(&p, 1);
  int64_t s1[2] = {20, 30};
  ndl_tensor *a = ndl_params_add(&p, "a", 2, s1);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->data, p.data);
  EXPECT_EQ(a->offset, 0);
  EXPECT_TRUE(a->requires_grad);
  ASSERT_NE(a->grad, nullptr);
  EXPECT_EQ(a->grad->data, p.grad);
  EXPECT_STREQ(a->name, "a");
  for (int64_t i = 0; i < 600; i++) {
    p.data[i] = (float)i;
    p.grad[i] = (float)-i;
  }
  float *old_data = p.data;
  int64_t old_cap = p.capacity;
  // 600 + 700 floats exceed the first capacity: the buffers move, the views follow
  int64_t s2[1] = {700};
  ndl_tensor *b = ndl_params_add(&p, "b", 1, s2);
  ASSERT_NE(b, nullptr);
  EXPECT_GT(p.capacity, old_cap);
  EXPECT_NE(p.data, old_data);
  EXPECT_EQ(a->data, p.data);
  EXPECT_EQ(a->grad->data, p.grad);
  EXPECT_EQ(b->data, p.data);
  EXPECT_EQ(b->offset, 600);
  EXPECT_EQ(b->grad->offset, 600);
  EXPECT_EQ(p.numel, 1300);
  int64_t idx[2] = {19, 29};
  EXPECT_EQ(ndl_tensor_get(a, idx), 599.f);
  EXPECT_EQ(ndl_tensor_get(a->grad, idx), -599.f);
  int64_t zero = 0;
  EXPECT_EQ(ndl_tensor_get(b, &zero), 0.f) << "new tensors are zero-filled";
  // many registrations grow the tensor/name arrays; addresses of earlier tensors stay stable
  for (int i = 0; i < 40; i++) {
    std::string name = "w" + std::to_string(i);
    int64_t s[1] = {3};
    ASSERT_NE(ndl_params_add(&p, name.c_str(), 1, s), nullptr);
  }
  EXPECT_EQ(p.count, 42);
  EXPECT_EQ(p.tensors[0], a);
  EXPECT_EQ(p.tensors[1], b);
  EXPECT_EQ(ndl_params_find(&p, "a"), 0);
  EXPECT_EQ(ndl_params_find(&p, "b"), 1);
  EXPECT_EQ(ndl_params_find(&p, "w39"), 41);
  EXPECT_EQ(p.tensors[41]->offset, 1300 + 39 * 3);
  EXPECT_EQ(ndl_params_find(&p, "missing"), -1);
  EXPECT_EQ(ndl_params_find(&p, "w"), -1);
  // a backward accumulates into the flat gradient buffer; zero_grad clears all of it
  ndl_tensor *loss = ndl_sum(ctx, ndl_mul_scalar(ctx, b, 2.f), nullptr, 0);
  ASSERT_EQ(ndl_graph_backward(ctx, loss, nullptr), NDL_OK);
  EXPECT_EQ(p.grad[600], 2.f);
  EXPECT_EQ(p.grad[1299], 2.f);
  ndl_params_zero_grad(&p);
  for (int64_t i = 0; i < p.numel; i++) ASSERT_EQ(p.grad[i], 0.f) << i;
  EXPECT_EQ(p.data[599], 599.f) << "zero_grad must not touch values";
  ndl_params_free(&p);
  EXPECT_EQ(p.count, 0);
  EXPECT_EQ(p.data, nullptr);
  EXPECT_EQ(ndl_alloc_live_count(), live);
  ndl_params_free(&p);  // freeing twice is safe
  EXPECT_EQ(ndl_alloc_live_count(), live);
}

TEST_F(Tensor, BufferStoreHasNoGradients) {
  int64_t live = ndl_alloc_live_count();
  ndl_params p;
  ndl_params_init(&p, 0);
  int64_t s[1] = {5};
  ndl_tensor *r = ndl_params_add(&p, "running_mean", 1, s);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(p.grad, nullptr);
  EXPECT_EQ(r->grad, nullptr);
  EXPECT_FALSE(r->requires_grad);
  ndl_params_zero_grad(&p);  // no-op without gradients
  EXPECT_EQ(ndl_params_find(&p, "running_mean"), 0);
  ndl_params_free(&p);
  EXPECT_EQ(ndl_alloc_live_count(), live);
}

// Live bytes of ndl_malloc right now: the smallest limit under which ndl_malloc(1) (1 + NDL_ALIGN
// bytes with its header) still succeeds, found by bisection.
long long live_bytes_now() {
  size_t lo = 1, hi = (size_t)1 << 40;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    ndl_alloc_set_limit(mid);
    void *p = ndl_malloc(1);
    ndl_alloc_set_limit(0);
    if (p) hi = mid;
    else lo = mid + 1;
    ndl_free(p);
  }
  return (long long)lo - (1 + NDL_ALIGN);
}

TEST_F(Tensor, ParamsAddOutOfMemoryKeepsViewsValid) {
  int64_t live = ndl_alloc_live_count();
  ndl_params p;
  ndl_params_init(&p, 1);
  int64_t s1[1] = {600}, s2[1] = {700};
  ndl_tensor *a = ndl_params_add(&p, "a", 1, s1);
  ASSERT_NE(a, nullptr);
  for (int64_t i = 0; i < 600; i++) p.data[i] = (float)i;
  // room for the grown data buffer (2048 floats) but not, afterwards, for the grown grad buffer
  long long now = live_bytes_now();
  ndl_alloc_set_limit((size_t)(now + 2048 * 4 + NDL_ALIGN));
  ndl_tensor *b = ndl_params_add(&p, "b", 1, s2);
  ndl_alloc_set_limit(0);
  EXPECT_EQ(b, nullptr);
  EXPECT_NE(std::string(ndl_last_error()).find("out of memory registering parameter b"), std::string::npos)
      << ndl_last_error();
  EXPECT_EQ(p.count, 1);
  EXPECT_EQ(p.numel, 600);
  // the store is still consistent: views point at the live buffers, values survived
  EXPECT_EQ(a->data, p.data);
  EXPECT_EQ(a->grad->data, p.grad);
  int64_t last = 599;
  EXPECT_EQ(ndl_tensor_get(a, &last), 599.f);
  b = ndl_params_add(&p, "b", 1, s2);  // and usable once memory is back
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->data, p.data);
  EXPECT_EQ(ndl_tensor_get(a, &last), 599.f);
  ndl_params_free(&p);
  EXPECT_EQ(ndl_alloc_live_count(), live);
}

// ---- arena ----

TEST_F(Tensor, ArenaAlignsTo64AndReusesMemoryAfterReset) {
  int64_t live = ndl_alloc_live_count();
  ndl_arena a;
  ndl_arena_init(&a, 4096);
  std::vector<void *> first;
  for (size_t bytes : {1, 3, 64, 65, 100, 0, 7}) {
    void *p = ndl_arena_alloc(&a, bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ((uintptr_t)p % 64, 0u) << bytes;
    first.push_back(p);
  }
  for (size_t i = 1; i < first.size(); i++) EXPECT_NE(first[i], first[i - 1]);
  int64_t blocks = ndl_alloc_live_count();
  ndl_arena_reset(&a);
  EXPECT_EQ(a.used_total, 0u);
  EXPECT_EQ(ndl_arena_alloc(&a, 1), first[0]) << "reset must hand the same memory out again";
  EXPECT_EQ(ndl_alloc_live_count(), blocks);
  ndl_arena_free(&a);
  EXPECT_EQ(ndl_alloc_live_count(), live);
}

TEST_F(Tensor, ArenaCoalescesChunksSoEqualStepsDoNoHeapAllocation) {
  int64_t live = ndl_alloc_live_count();
  ndl_arena a;
  ndl_arena_init(&a, 1024);
  auto step = [&a]() {
    for (int i = 0; i < 20; i++) {
      void *p = ndl_arena_alloc(&a, 300 + (size_t)i * 50);
      ASSERT_NE(p, nullptr);
      std::memset(p, i, 300 + (size_t)i * 50);  // the whole block is usable (ASan checks)
    }
  };
  step();
  int64_t after_first = ndl_alloc_live_count();
  EXPECT_GT(after_first - live, 2) << "the first step should need several chunks";
  size_t hw = a.high_water;
  ndl_arena_reset(&a);
  EXPECT_EQ(ndl_alloc_live_count() - live, 2) << "reset keeps one chunk (struct + memory)";
  int64_t steady = ndl_alloc_live_count();
  for (int s = 0; s < 5; s++) {
    step();
    EXPECT_EQ(ndl_alloc_live_count(), steady) << "step " << s << " allocated from the heap";
    EXPECT_EQ(a.high_water, hw);
    ndl_arena_reset(&a);
    EXPECT_EQ(ndl_alloc_live_count(), steady);
  }
  ndl_arena_free(&a);
  EXPECT_EQ(ndl_alloc_live_count(), live);
  ndl_arena_free(&a);  // idempotent
}

TEST_F(Tensor, ContextResetReleasesStepTensors) {
  int64_t shape[2] = {256, 256};
  ASSERT_NE(ndl_tensor_zeros(ctx, 2, shape), nullptr);
  ndl_ctx_reset(ctx);
  int64_t steady = ndl_alloc_live_count();
  for (int s = 0; s < 3; s++) {
    ASSERT_NE(ndl_tensor_zeros(ctx, 2, shape), nullptr);
    ndl_ctx_reset(ctx);
    EXPECT_EQ(ndl_alloc_live_count(), steady);
  }
}

// ---- status ----

TEST_F(Tensor, StatusStrForEveryCode) {
  int n = 0;
#define CHECK_STATUS(name, value, text)                 \
  EXPECT_STREQ(ndl_status_str(name), text) << #name;    \
  EXPECT_EQ((int)name, value);                          \
  n++;
  NDL_STATUS_TABLE(CHECK_STATUS)
#undef CHECK_STATUS
  EXPECT_EQ(n, 10);
  EXPECT_STREQ(ndl_status_str(NDL_OK), "ok");
  EXPECT_STREQ(ndl_status_str(NDL_ERR_SHAPE), "shape mismatch");
  EXPECT_STREQ(ndl_status_str(NDL_ERR_NUMERIC), "non-finite value");
  EXPECT_STREQ(ndl_status_str((ndl_status)-100), "unknown status");
  EXPECT_STREQ(ndl_status_str((ndl_status)1), "unknown status");
  EXPECT_EQ(ndl_errorf(NDL_ERR_IO, "open %s: %d", "f.idx", 2), NDL_ERR_IO);
  EXPECT_STREQ(ndl_last_error(), "open f.idx: 2");
}

// ---- error paths ----

TEST_F(Tensor, NegativeDimIsAShapeError) {
  int64_t bad[2] = {2, -3};
  EXPECT_EQ(ndl_tensor_empty(ctx, 2, bad), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_NE(std::string(ndl_last_error()).find("negative dimension in shape [2,-3]"), std::string::npos)
      << ndl_last_error();
}

TEST_F(Tensor, MoreThanEightDimsIsAShapeError) {
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(ndl_tensor_zeros(ctx, 9, nine), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_NE(std::string(ndl_last_error()).find("9 dims"), std::string::npos) << ndl_last_error();
  ndl_ctx_reset(ctx);
  EXPECT_NE(ndl_tensor_zeros(ctx, 8, nine), nullptr) << "8 dims are allowed";
  EXPECT_EQ(ndl_tensor_zeros(ctx, -1, nine), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  ndl_ctx_reset(ctx);
  ndl_tensor *x = iota(ctx, {2, 3});
  EXPECT_EQ(ndl_reshape(ctx, x, 9, nine), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  ndl_ctx_reset(ctx);
  x = iota(ctx, {2, 3});
  EXPECT_EQ(ndl_broadcast_to(ctx, x, 9, nine), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
}

TEST_F(Tensor, ReshapeInferenceErrors) {
  int64_t two_infer[3] = {-1, -1, 2}, bad_count[2] = {-1, 5}, neg[2] = {-2, -3}, zero[2] = {0, -1};
  for (int64_t *s : {two_infer, bad_count, neg}) {
    ndl_ctx_reset(ctx);
    ndl_tensor *x = iota(ctx, {2, 3});
    EXPECT_EQ(ndl_reshape(ctx, x, s == two_infer ? 3 : 2, s), nullptr);
    EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  }
  ndl_ctx_reset(ctx);
  EXPECT_EQ(ndl_reshape(ctx, iota(ctx, {2, 3}), 2, zero), nullptr) << "-1 next to a 0 dim is ambiguous";
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
}

TEST_F(Tensor, BadSliceRanges) {
  struct Case {
    int64_t start[2], stop[2], step[2];
  } cases[] = {
      {{2, 0}, {1, 3}, {1, 1}},   // start > stop
      {{0, 0}, {5, 3}, {1, 1}},   // stop past the end
      {{-1, 0}, {2, 3}, {1, 1}},  // negative start
      {{0, 0}, {2, 3}, {1, 0}},   // zero step
      {{0, 0}, {2, 3}, {-1, 1}},  // negative step
  };
  for (const Case &c : cases) {
    ndl_ctx_reset(ctx);
    ndl_tensor *x = iota(ctx, {4, 3});
    EXPECT_EQ(ndl_slice(ctx, x, c.start, c.stop, c.step), nullptr);
    EXPECT_EQ(ctx->status, NDL_ERR_AXES);
    EXPECT_NE(std::string(ndl_last_error()).find("slice: dim"), std::string::npos) << ndl_last_error();
  }
}

TEST_F(Tensor, PermuteWithABadPermutation) {
  int out_of_range[3] = {0, 1, 3}, negative[3] = {-1, 0, 1}, repeated[3] = {2, 2, 0};
  for (int *perm : {out_of_range, negative, repeated}) {
    ndl_ctx_reset(ctx);
    EXPECT_EQ(ndl_permute(ctx, iota(ctx, {2, 3, 4}), perm), nullptr);
    EXPECT_EQ(ctx->status, NDL_ERR_AXES);
    EXPECT_NE(std::string(ndl_last_error()).find("not a permutation"), std::string::npos);
  }
}

TEST_F(Tensor, TransposeWithBadAxes) {
  for (std::pair<int, int> ax : {std::make_pair(0, 2), std::make_pair(-3, 0), std::make_pair(5, 1)}) {
    ndl_ctx_reset(ctx);
    EXPECT_EQ(ndl_transpose(ctx, iota(ctx, {2, 3}), ax.first, ax.second), nullptr);
    EXPECT_EQ(ctx->status, NDL_ERR_AXES);
    EXPECT_NE(std::string(ndl_last_error()).find("transpose: axes"), std::string::npos) << ndl_last_error();
  }
}

TEST_F(Tensor, LogSoftmaxOfZeroDimTensor) {
  float v = 1.f;
  EXPECT_EQ(ndl_logsoftmax(ctx, ndl_tensor_from(ctx, 0, nullptr, &v)), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_AXES);
  EXPECT_NE(std::string(ndl_last_error()).find("0-d"), std::string::npos) << ndl_last_error();
}

TEST_F(Tensor, NullInputPropagatesAndStatusIsSticky) {
  ndl_tensor *x = iota(ctx, {2, 3});
  EXPECT_EQ(ndl_add(ctx, nullptr, x), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_ARG);
  EXPECT_NE(std::string(ndl_last_error()).find("NULL"), std::string::npos);
  // every op on NULL (or on a failed context) returns NULL; the first error is kept
  int ax = 0, perm[2] = {1, 0};
  int64_t to[2] = {3, 2}, st[2] = {0, 0}, sp[2] = {1, 1};
  EXPECT_EQ(ndl_exp(ctx, x), nullptr);
  EXPECT_EQ(ndl_sum(ctx, nullptr, &ax, 1), nullptr);
  EXPECT_EQ(ndl_reshape(ctx, nullptr, 2, to), nullptr);
  EXPECT_EQ(ndl_tensor_zeros(ctx, 2, to), nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_ARG);
  // with a clean context, each op given NULL fails by itself
  using Op = std::function<ndl_tensor *(ndl_tensor *)>;
  std::vector<std::pair<const char *, Op>> ops = {
      {"add", [&](ndl_tensor *t) { return ndl_add(ctx, x, t); }},
      {"matmul", [&](ndl_tensor *t) { return ndl_matmul(ctx, t, x); }},
      {"maximum", [&](ndl_tensor *t) { return ndl_maximum(ctx, t, x); }},
      {"mul_scalar", [&](ndl_tensor *t) { return ndl_mul_scalar(ctx, t, 2.f); }},
      {"relu", [&](ndl_tensor *t) { return ndl_relu(ctx, t); }},
      {"max", [&](ndl_tensor *t) { return ndl_max(ctx, t, nullptr, 0); }},
      {"logsumexp", [&](ndl_tensor *t) { return ndl_logsumexp(ctx, t, &ax, 1); }},
      {"logsoftmax", [&](ndl_tensor *t) { return ndl_logsoftmax(ctx, t); }},
      {"reshape", [&](ndl_tensor *t) { return ndl_reshape(ctx, t, 2, to); }},
      {"broadcast_to", [&](ndl_tensor *t) { return ndl_broadcast_to(ctx, t, 2, to); }},
      {"permute", [&](ndl_tensor *t) { return ndl_permute(ctx, t, perm); }},
      {"transpose", [&](ndl_tensor *t) { return ndl_transpose(ctx, t, 0, 1); }},
      {"slice", [&](ndl_tensor *t) { return ndl_slice(ctx, t, st, sp, nullptr); }},
      {"compact", [&](ndl_tensor *t) { return ndl_compact(ctx, t); }},
  };
  for (auto &op : ops) {
    ndl_ctx_reset(ctx);
    x = iota(ctx, {2, 3});
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(op.second(nullptr), nullptr) << op.first;
    EXPECT_EQ(ctx->status, NDL_ERR_ARG) << op.first;
  }
  ndl_ctx_reset(ctx);
  EXPECT_EQ(ndl_graph_backward(ctx, nullptr, nullptr), NDL_ERR_ARG);
  // a failure deep in a chain reaches the end of it with the first message
  ndl_ctx_reset(ctx);
  ndl_tensor *y = ndl_exp(ctx, ndl_sum(ctx, ndl_add(ctx, iota(ctx, {2, 3}), iota(ctx, {3, 2})), nullptr, 0));
  EXPECT_EQ(y, nullptr);
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE);
  EXPECT_NE(std::string(ndl_last_error()).find("add: a[2,3] b[3,2]"), std::string::npos) << ndl_last_error();
  ndl_ctx_fail(ctx, NDL_ERR_IO, "a later failure");
  EXPECT_EQ(ctx->status, NDL_ERR_SHAPE) << "the first error is kept";
  EXPECT_EQ(std::string(ndl_last_error()).find("later"), std::string::npos);
  ndl_ctx_reset(ctx);
  EXPECT_EQ(ctx->status, NDL_OK);
}

}  // namespace
