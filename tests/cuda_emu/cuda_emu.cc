/* cuda_emu.cc (tests/cuda_emu): the emulated device's runtime: the CUDA runtime calls of
 * include/cuda_runtime.h, executed on the CPU with the semantics a program can get wrong.
 *  - Streams are queues: a launch, memset, device copy or host->device copy (its bytes staged at the
 *    call) runs only when the stream is synchronized, queried, or a device->host copy on it waits,
 *    so a missing synchronization reads stale host memory here as on a GPU.
 *  - Device memory is fenced: every cudaMalloc is its own mapping, PROT_NONE except while the
 *    emulator runs queued work, with an unmapped page right after its (256-byte rounded) end; host
 *    code touching device memory, or a kernel running past an allocation, dies with one line.
 *  - Stream capture records the queued work (calls that cannot be captured invalidate it, as CUDA's
 *    ThreadLocal mode does); a graph launch queues the recorded work again.
 *  - A kernel runs block after block, each thread a fiber (fiber_x86_64.S), the threads of a block
 *    in an order reshuffled at every __syncthreads; threads that leave a barrier unmatched abort.
 * Environment: NDL_EMU_GPUS (visible devices, default 1; 0: none), NDL_EMU_SEED (thread order),
 * NDL_EMU_MEM_MB (device memory, default 8192), NDL_EMU_FENCE=0 (leave device memory accessible).
 * Leaves out: concurrency between streams and inside a block (work runs one piece at a time), warp
 * intrinsics, atomics, textures, pinned host memory, events, more than the calls needle-c makes. */
#include <cuda_runtime.h>
#include "ndl_emu_kernel.h" /* the launch and barrier entries defined here */

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "fiber.h"

namespace {

/* ---- one piece of queued work ---- */

struct op {
  std::function<void()> start;
  std::function<bool()> poll; /* empty: done once started */
  bool started = false;
  bool inflight = false; /* started, not done, counted in g_inflight */
};
using op_ptr = std::shared_ptr<op>;

}  // namespace

struct CUstream_st {
  std::deque<op_ptr> queue;
  bool blocking = false; /* created without cudaStreamNonBlocking: ordered with the NULL stream */
  bool capturing = false;
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  pthread_t capture_thread;
  std::vector<op_ptr> captured;
};

struct CUgraph_st {
  std::vector<op_ptr> ops;
};

struct CUgraphExec_st {
  std::vector<op_ptr> ops;
};

namespace {

const size_t kPage = 4096;

struct allocation {
  char *map;       /* the mapping: data pages + one guard page */
  size_t data_len; /* data pages' length */
  size_t size;     /* what cudaMalloc was asked for */
  size_t rounded;  /* size rounded up to 256 bytes: what a kernel may touch */
};

std::recursive_mutex g_mu;
std::map<uintptr_t, allocation> g_allocs; /* by the pointer cudaMalloc returned */
std::vector<CUstream_st *> g_streams;
CUstream_st g_default_stream;
size_t g_mem_used, g_mem_limit;
int g_inflight;  /* started pieces of queued work not yet done (collectives waiting for peers) */
std::vector<std::pair<char *, size_t>> g_opened; /* page spans made accessible since the last close */
int g_fence = 1; /* NDL_EMU_FENCE */
int g_gpus = 1;
unsigned long long g_seed = 1;
thread_local cudaError_t t_last = cudaSuccess;
thread_local int t_device = 0;
thread_local const char *volatile t_running = nullptr; /* the kernel or copy now running, for a fault's message */
thread_local volatile int t_draining; /* this thread runs queued work (volatile: the SIGSEGV handler reads it) */

[[noreturn]] void vfatal(const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  fprintf(stderr, "cuda emu: %s\n", line);
  fflush(stderr);
  abort();
}

[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfatal(fmt, ap);
}

cudaError_t fail(cudaError_t e) {
  t_last = e;
  return e;
}

/* Fencing is lazy: queued work runs with device memory fenced, and its first touch of a page of an
 * allocation (a SIGSEGV in the draining thread) opens that allocation, or the 256 KiB around the
 * touch in a large one; what was opened is fenced again once no queued work runs (close_opened),
 * so a step costs a few mprotect calls per allocation it touches, not per allocation alive. */
const size_t kWhole = (size_t)1 << 20, kWindow = (size_t)256 << 10;

/* Open the pages of [p, p+n) (inside one allocation's data pages). Async-signal-safe enough for
 * the handler: g_opened's capacity is reserved up front, and pushes past it only happen outside. */
void open_span(char *p, size_t n) {
  char *lo = (char *)((uintptr_t)p & ~(uintptr_t)(kPage - 1));
  char *hi = (char *)(((uintptr_t)p + n + kPage - 1) & ~(uintptr_t)(kPage - 1));
  if (mprotect(lo, (size_t)(hi - lo), PROT_READ | PROT_WRITE) != 0) fatal("mprotect of device memory failed");
  g_opened.emplace_back(lo, (size_t)(hi - lo));
}

void close_opened() {
  if (!g_fence || g_inflight) return;
  for (auto &span : g_opened) mprotect(span.first, span.second, PROT_NONE);
  g_opened.clear();
}

/* The allocation whose kernel-visible bytes [ptr, ptr+rounded) hold u, or nullptr. */
const allocation *find_touch(uintptr_t u, uintptr_t *base) {
  auto it = g_allocs.upper_bound(u);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  if (u - it->first >= it->second.rounded) return nullptr;
  *base = it->first;
  return &it->second;
}

/* The allocation holding [p, p+n), or nullptr. */
const allocation *find_range(const void *p, size_t n) {
  uintptr_t u = (uintptr_t)p;
  auto it = g_allocs.upper_bound(u);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  const allocation &a = it->second;
  if (u - it->first > a.size || n > a.size - (u - it->first)) return nullptr;
  return &a;
}

void segv_handler(int sig, siginfo_t *si, void *ctx) {
  (void)ctx;
  char line[320];
  uintptr_t u = (uintptr_t)si->si_addr, base = 0;
  const allocation *a = find_touch(u, &base);
  if (t_draining && a && g_fence && g_opened.size() < g_opened.capacity()) { /* first touch: open */
    if (a->data_len <= kWhole) {
      open_span(a->map, a->data_len);
    } else {
      uintptr_t lo = (u - (uintptr_t)a->map) / kWindow * kWindow;
      open_span(a->map + lo, lo + kWindow <= a->data_len ? kWindow : a->data_len - lo);
    }
    return; /* the access runs again */
  }
  int n;
  if (t_draining)
    n = snprintf(line, sizeof line, "cuda emu: %s touched %p, outside every device allocation (a GPU would fault: "
                 "illegal address)\n", t_running ? t_running : "queued work", si->si_addr);
  else if (a)
    n = snprintf(line, sizeof line, "cuda emu: host code touched device memory at %p (a %zu-byte cudaMalloc "
                 "allocation): copy it with cudaMemcpy instead\n", si->si_addr, a->size);
  else
    n = 0;
  if (n > 0) {
    ssize_t w = write(2, line, (size_t)n);
    (void)w;
    abort();
  }
  signal(sig, SIG_DFL); /* not ours: fault again with the default action */
}

void init_once() {
  const char *v = getenv("NDL_EMU_GPUS");
  if (v && *v) g_gpus = atoi(v);
  if ((v = getenv("NDL_EMU_SEED")) && *v) g_seed = strtoull(v, nullptr, 10);
  g_mem_limit = (size_t)8192 << 20;
  if ((v = getenv("NDL_EMU_MEM_MB")) && *v) g_mem_limit = (size_t)strtoull(v, nullptr, 10) << 20;
  if ((v = getenv("NDL_EMU_FENCE")) && *v == '0') g_fence = 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = segv_handler;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  g_opened.reserve(1 << 16);
}

/* The emulator's cuBLAS and NCCL are what the backend's loaders find (unless a test points them
 * elsewhere): set before main, so child processes (mpirun's ranks) inherit it too. */
__attribute__((constructor)) void point_the_loaders() {
#ifdef NDL_EMU_CUBLAS_PATH
  setenv("NDL_CUBLAS_LIB", NDL_EMU_CUBLAS_PATH, 0);
#endif
#ifdef NDL_EMU_NCCL_PATH
  setenv("NDL_NCCL_LIB", NDL_EMU_NCCL_PATH, 0);
#endif
}

std::once_flag g_init;
void init() { std::call_once(g_init, init_once); }

CUstream_st *stream_of(cudaStream_t s) { return s ? s : &g_default_stream; }

bool known_stream(cudaStream_t s) {
  if (!s) return true;
  for (CUstream_st *x : g_streams)
    if (x == s) return true;
  return false;
}

/* A call that cannot be captured, made while this thread (ThreadLocal) or any thread (Global)
 * captures: it invalidates those captures and fails, as CUDA's capture modes make it. */
bool capture_forbids() {
  bool hit = false;
  for (CUstream_st *x : g_streams) {
    if (!x->capturing || x->mode == cudaStreamCaptureModeRelaxed) continue;
    if (x->mode == cudaStreamCaptureModeThreadLocal && !pthread_equal(x->capture_thread, pthread_self())) continue;
    x->invalidated = true;
    hit = true;
  }
  return hit;
}

bool drain(CUstream_st *s, bool wait);

/* The legacy NULL stream and the blocking streams wait for each other's earlier work. */
bool drain_partners(CUstream_st *s, bool wait) {
  if (s == &g_default_stream) {
    for (CUstream_st *x : g_streams)
      if (x->blocking && !drain(x, wait)) return false;
    return true;
  }
  return !s->blocking || drain(&g_default_stream, wait);
}

/* Run s's queue: all of it (wait), or until a piece is still in flight (returns false then). */
bool drain(CUstream_st *s, bool wait) {
  if (!s->queue.empty() && !drain_partners(s, wait)) return false;
  int outer = t_draining;
  t_draining = 1;
  bool done = true;
  while (!s->queue.empty()) {
    op_ptr o = s->queue.front();
    if (!o->started) {
      o->started = true;
      o->start();
    }
    if (o->poll && !o->poll()) {
      if (!o->inflight) g_inflight++;
      o->inflight = true;
      if (!wait) {
        done = false;
        break;
      }
      while (!o->poll()) usleep(20); /* a collective waiting for its peers (an abort ends it) */
    }
    if (o->inflight) g_inflight--;
    o->inflight = false;
    o->started = false; /* a graph's op runs again on the next launch */
    s->queue.pop_front();
  }
  t_draining = outer;
  if (!outer) close_opened();
  return done;
}

void drain_all() {
  drain(&g_default_stream, true);
  for (CUstream_st *x : g_streams) drain(x, true);
}

/* Queue o on s, or record it while s is captured. */
cudaError_t enqueue(cudaStream_t st, op_ptr o) {
  CUstream_st *s = stream_of(st);
  if (s->capturing) {
    if (s->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    s->captured.push_back(std::move(o));
  } else {
    s->queue.push_back(std::move(o));
  }
  return cudaSuccess;
}

/* The stream a synchronize or query waits on, or its error: an unknown handle, or a stream being
 * captured (waiting inside a capture invalidates it). */
cudaError_t wait_target(cudaStream_t stream, CUstream_st **s) {
  if (!known_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  *s = stream_of(stream);
  if ((*s)->capturing) {
    (*s)->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

op_ptr make_op(std::function<void()> start) {
  op_ptr o = std::make_shared<op>();
  o->start = std::move(start);
  return o;
}

/* ---- kernels: blocks in order, a block's threads as fibers ---- */

enum fiber_state { RUNNABLE, AT_BARRIER, DONE };

struct fiber_slot {
  void *sp;
  char *stack; /* kStack bytes above a guard page */
  fiber_state state;
  uint3 idx;
};

const size_t kStack = 64 * 1024;
const int kMaxThreads = 1024;

struct scheduler {
  void *home_sp = nullptr;
  fiber_slot slots[kMaxThreads];
  int nstacks = 0;
  int current = -1;
  const std::function<void()> *body = nullptr;
  const char *kernel = nullptr;
};

thread_local scheduler *t_sched;

extern "C" void ndl_emu_fiber_main(void) {
  scheduler *sc = t_sched;
  (*sc->body)();
  fiber_slot &f = sc->slots[sc->current];
  f.state = DONE;
  ndl_emu_fiber_switch(&f.sp, sc->home_sp);
  fatal("a finished fiber was resumed");
}

void ensure_stacks(scheduler *sc, int n) {
  for (; sc->nstacks < n; sc->nstacks++) {
    char *m = (char *)mmap(nullptr, kStack + kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
    if (m == MAP_FAILED) fatal("no memory for a kernel thread's stack");
    mprotect(m, kPage, PROT_NONE); /* a kernel overflowing its stack faults */
    sc->slots[sc->nstacks].stack = m + kPage;
  }
}

unsigned long long next_rand() {
  g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
  return g_seed >> 33;
}

void shuffle(std::vector<int> &order) {
  for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[next_rand() % i]);
}

void run_block(scheduler *sc, const dim3 &block, std::vector<int> &order) {
  int n = (int)order.size();
  for (int t = 0; t < n; t++) {
    fiber_slot &f = sc->slots[t];
    f.idx = uint3{(unsigned)t % block.x, (unsigned)t / block.x % block.y, (unsigned)t / (block.x * block.y)};
    f.state = RUNNABLE;
    f.sp = ndl_emu_fiber_stack(f.stack + kStack);
  }
  for (int phase = 0;; phase++) {
    shuffle(order);
    for (int t : order) {
      fiber_slot &f = sc->slots[t];
      if (f.state != RUNNABLE) continue;
      sc->current = t;
      ndl_emu::thread_idx = f.idx;
      ndl_emu_fiber_switch(&sc->home_sp, f.sp);
    }
    int waiting = 0, done = 0;
    for (int t = 0; t < n; t++) {
      waiting += sc->slots[t].state == AT_BARRIER;
      done += sc->slots[t].state == DONE;
    }
    if (waiting == 0) return;
    if (done > 0)
      fatal("kernel %s, block (%u,%u,%u): %d thread(s) wait at __syncthreads barrier #%d that %d thread(s) of the "
            "block left without reaching (a GPU hangs or corrupts the block's shared memory)",
            sc->kernel, ndl_emu::block_idx.x, ndl_emu::block_idx.y, ndl_emu::block_idx.z, waiting, phase + 1, done);
    for (int t = 0; t < n; t++) sc->slots[t].state = RUNNABLE;
  }
}

void run_grid(const ndl_emu::launch_config &c, const char *name, const std::function<void()> &body) {
  if (!t_sched) t_sched = new scheduler();
  scheduler *sc = t_sched;
  int threads = (int)(c.block.x * c.block.y * c.block.z);
  ensure_stacks(sc, threads);
  sc->body = &body;
  sc->kernel = name;
  const char *outer = t_running;
  t_running = name;
  ndl_emu::block_dim = c.block;
  ndl_emu::grid_dim = c.grid;
  std::vector<int> order(threads);
  for (int t = 0; t < threads; t++) order[t] = t;
  for (unsigned z = 0; z < c.grid.z; z++)
    for (unsigned y = 0; y < c.grid.y; y++)
      for (unsigned x = 0; x < c.grid.x; x++) {
        ndl_emu::block_idx = uint3{x, y, z};
        run_block(sc, c.block, order);
      }
  t_running = outer;
  sc->current = -1;
}

const char *error_name(cudaError_t e) {
  switch (e) {
#define NAME(x) \
  case x:       \
    return #x;
    NAME(cudaSuccess) NAME(cudaErrorInvalidValue) NAME(cudaErrorMemoryAllocation)
    NAME(cudaErrorInitializationError) NAME(cudaErrorInvalidConfiguration) NAME(cudaErrorInvalidDevicePointer)
    NAME(cudaErrorInvalidMemcpyDirection) NAME(cudaErrorInsufficientDriver) NAME(cudaErrorNoDevice)
    NAME(cudaErrorInvalidDevice) NAME(cudaErrorInvalidResourceHandle) NAME(cudaErrorIllegalState) NAME(cudaErrorNotReady)
    NAME(cudaErrorIllegalAddress) NAME(cudaErrorLaunchFailure) NAME(cudaErrorStreamCaptureUnsupported)
    NAME(cudaErrorStreamCaptureInvalidated) NAME(cudaErrorStreamCaptureUnmatched)
    NAME(cudaErrorStreamCaptureWrongThread) NAME(cudaErrorUnknown)
#undef NAME
  }
  return "cudaErrorUnknown";
}

}  // namespace

namespace ndl_emu {

thread_local uint3 thread_idx, block_idx;
thread_local dim3 block_dim, grid_dim;

void launch(const launch_config &c, const char *name, std::function<void()> body) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  unsigned long long threads = (unsigned long long)c.block.x * c.block.y * c.block.z;
  if (threads == 0 || threads > (unsigned long long)kMaxThreads || c.block.z > 64 || c.grid.x == 0 ||
      c.grid.y == 0 || c.grid.z == 0 || c.grid.y > 65535 || c.grid.z > 65535 || c.grid.x > 0x7fffffffu ||
      c.shared > 48 * 1024) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  if (!known_stream(c.stream)) {
    fail(cudaErrorInvalidResourceHandle);
    return;
  }
  launch_config cfg = c;
  cudaError_t e = enqueue(c.stream, make_op([cfg, name, body]() { run_grid(cfg, name, body); }));
  if (e != cudaSuccess) fail(e);
}

void syncthreads() {
  scheduler *sc = t_sched;
  if (!sc || sc->current < 0) fatal("__syncthreads() called outside a kernel");
  fiber_slot &f = sc->slots[sc->current];
  f.state = AT_BARRIER;
  ndl_emu_fiber_switch(&f.sp, sc->home_sp);
}

}  // namespace ndl_emu

extern "C" {

void ndl_emu_fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfatal(fmt, ap);
}

cudaError_t ndl_emu_enqueue(cudaStream_t stream, void (*start)(void *), int (*poll)(void *), void (*drop)(void *),
                            void *arg) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!known_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  std::shared_ptr<void> keep(arg, [drop](void *p) {
    if (drop) drop(p);
  });
  op_ptr o = make_op([start, keep]() { start(keep.get()); });
  if (poll) o->poll = [poll, keep]() { return poll(keep.get()) != 0; };
  return enqueue(stream, o);
}

int ndl_emu_capturing(cudaStream_t stream) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  return known_stream(stream) && stream_of(stream)->capturing;
}

void ndl_emu_open(const void *ptr, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!t_draining) fatal("ndl_emu_open outside queued work");
  if (!g_fence || bytes == 0) return;
  if (!find_range(ptr, bytes)) fatal("ndl_emu_open(%p, %zu): not inside one device allocation", ptr, bytes);
  open_span((char *)ptr, bytes);
}

int ndl_emu_device_range(const void *ptr, size_t bytes) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  return find_range(ptr, bytes) != nullptr;
}

const char *cudaGetErrorName(cudaError_t e) { return error_name(e); }

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulated: NDL_EMU_GPUS=0)";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched: return "capture was not initiated in this stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return error_name(e);
  }
}

cudaError_t cudaGetLastError(void) {
  cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return t_last; }

cudaError_t cudaGetDeviceCount(int *count) {
  init();
  if (!count) return fail(cudaErrorInvalidValue);
  *count = g_gpus > 0 ? g_gpus : 0;
  return g_gpus > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  init();
  if (g_gpus <= 0) return fail(cudaErrorNoDevice);
  if (device < 0 || device >= g_gpus) return fail(cudaErrorInvalidDevice);
  t_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
  if (!device) return fail(cudaErrorInvalidValue);
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  drain_all();
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t size) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!ptr) return fail(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (g_gpus <= 0) return fail(cudaErrorNoDevice);
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  if (size == 0) return cudaSuccess; /* CUDA: a null pointer, success */
  size_t rounded = (size + 255) / 256 * 256;
  size_t data_len = (rounded + kPage - 1) / kPage * kPage;
  if (size > g_mem_limit || g_mem_used + data_len > g_mem_limit) return fail(cudaErrorMemoryAllocation);
  char *m = (char *)mmap(nullptr, data_len + kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return fail(cudaErrorMemoryAllocation);
  allocation a{m, data_len, size, rounded};
  if (!g_fence && mprotect(m, data_len, PROT_READ | PROT_WRITE) != 0) fatal("mprotect of device memory failed");
  char *p = m + data_len - rounded; /* its rounded end abuts the guard page */
  g_allocs[(uintptr_t)p] = a;
  g_mem_used += data_len;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!ptr) return cudaSuccess;
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  auto it = g_allocs.find((uintptr_t)ptr);
  if (it == g_allocs.end()) return fail(cudaErrorInvalidValue);
  drain_all(); /* cudaFree waits for the device */
  char *m = it->second.map;
  for (size_t i = 0; i < g_opened.size();)
    if (g_opened[i].first >= m && g_opened[i].first < m + it->second.data_len) {
      g_opened[i] = g_opened.back();
      g_opened.pop_back();
    } else {
      i++;
    }
  munmap(m, it->second.data_len + kPage);
  g_mem_used -= it->second.data_len;
  g_allocs.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!known_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (count == 0) return cudaSuccess;
  bool dst_dev = find_range(dst, count) != nullptr, src_dev = find_range(src, count) != nullptr;
  if (kind == cudaMemcpyDefault) kind = src_dev ? (dst_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                                                : (dst_dev ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  bool want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  bool want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind > cudaMemcpyDefault) return fail(cudaErrorInvalidMemcpyDirection);
  if (dst_dev != want_dst || src_dev != want_src) return fail(cudaErrorInvalidValue);
  CUstream_st *s = stream_of(stream);
  if (kind != cudaMemcpyDeviceToDevice && s->capturing) { /* pageable host memory in a graph */
    s->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  switch (kind) {
    case cudaMemcpyHostToDevice: { /* pageable: staged now, written when the stream gets there */
      std::shared_ptr<std::vector<char>> staged = std::make_shared<std::vector<char>>((const char *)src,
                                                                                      (const char *)src + count);
      return enqueue(stream, make_op([dst, staged]() { memcpy(dst, staged->data(), staged->size()); }));
    }
    case cudaMemcpyDeviceToHost: /* pageable: returns once the copy is done */
      drain(s, true);
      t_draining = 1;
      t_running = "a device-to-host copy";
      memcpy(dst, src, count);
      t_running = nullptr;
      t_draining = 0;
      close_opened();
      return cudaSuccess;
    case cudaMemcpyDeviceToDevice:
      return enqueue(stream, make_op([dst, src, count]() { memmove(dst, src, count); }));
    default:
      drain(s, true);
      memcpy(dst, src, count);
      return cudaSuccess;
  }
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  cudaError_t e = cudaMemcpyAsync(dst, src, count, kind, nullptr);
  if (e == cudaSuccess) drain_all();
  return e;
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!known_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (count == 0) return cudaSuccess;
  if (!find_range(ptr, count)) return fail(cudaErrorInvalidValue);
  return enqueue(stream, make_op([ptr, value, count]() { memset(ptr, value, count); }));
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *ptr) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!a) return fail(cudaErrorInvalidValue);
  bool dev = find_range(ptr, 1) != nullptr;
  a->type = dev ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
  a->device = dev ? t_device : -2;
  a->devicePointer = dev ? (void *)ptr : nullptr;
  a->hostPointer = dev ? nullptr : (void *)ptr;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!stream || flags > cudaStreamNonBlocking) return fail(cudaErrorInvalidValue);
  if (g_gpus <= 0) return fail(cudaErrorNoDevice);
  *stream = new CUstream_st();
  (*stream)->blocking = !(flags & cudaStreamNonBlocking);
  g_streams.push_back(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!stream || !known_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  drain(stream, true); /* queued work still completes */
  for (size_t i = 0; i < g_streams.size(); i++)
    if (g_streams[i] == stream) g_streams.erase(g_streams.begin() + (long)i);
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  CUstream_st *s = nullptr;
  cudaError_t e = wait_target(stream, &s);
  if (e != cudaSuccess) return e;
  if (capture_forbids()) return fail(cudaErrorStreamCaptureUnsupported);
  drain(s, true);
  return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  CUstream_st *s = nullptr;
  cudaError_t e = wait_target(stream, &s);
  if (e != cudaSuccess) return e;
  return drain(s, false) ? cudaSuccess : cudaErrorNotReady; /* NotReady is no error: not recorded */
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!stream) return fail(cudaErrorStreamCaptureUnsupported); /* the legacy default stream */
  if (!known_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (stream->capturing) return fail(cudaErrorIllegalState);
  stream->capturing = true;
  stream->invalidated = false;
  stream->mode = mode;
  stream->capture_thread = pthread_self();
  stream->captured.clear();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!stream || !known_stream(stream) || !graph) return fail(cudaErrorInvalidValue);
  *graph = nullptr;
  if (!stream->capturing) return fail(cudaErrorStreamCaptureUnmatched);
  if (stream->mode != cudaStreamCaptureModeRelaxed && !pthread_equal(stream->capture_thread, pthread_self()))
    return fail(cudaErrorStreamCaptureWrongThread);
  stream->capturing = false;
  std::vector<op_ptr> ops;
  ops.swap(stream->captured);
  if (stream->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
  *graph = new CUgraph_st{std::move(ops)};
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
  if (!exec || !graph || flags) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  init();
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  if (!exec) return fail(cudaErrorInvalidValue);
  if (!known_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  for (const op_ptr &o : exec->ops) {
    cudaError_t e = enqueue(stream, o);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (!exec) return fail(cudaErrorInvalidValue);
  delete exec;
  return cudaSuccess;
}

}  // extern "C"
