/* dist_nccl.c: the GPU side of the process group: which GPU a rank uses (local rank mod visible
 * GPUs) and, with NDL_NCCL, the NCCL transport: a communicator from rank 0's unique id (broadcast
 * over MPI), all-reduce and broadcast of device buffers, asynchronous errors and ncclCommAbort for
 * the step watchdog. The only file outside core/cuda/ that sees the CUDA runtime or NCCL headers.
 * libnccl is dlopened by the first ndl_dist_nccl_init (the table below), never linked, so a run
 * without --collectives nccl maps none of it. Leaves out: naming the stalled peer (NCCL cannot
 * tell; the MPI path's tokens do on the CPU). */
#include <cuda_runtime.h>
#ifdef NDL_HAVE_NCCL
#include <nccl.h>
#include <pthread.h>
#include <stdlib.h>
#endif

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/dynlib.h"
#include "dist/dist_device.h"
#include "dist/dist_internal.h"
#include "dist/step_profile.h"
#include "dist/step_watchdog.h"

static ndl_status cuda_fail(ndl_dist *d, cudaError_t rc, const char *stmt, const char *file, int line) {
  ndl_dist_log_all(d, "%s:%d: %s failed: %s", file, line, stmt, cudaGetErrorString(rc));
  return ndl_errorf(NDL_ERR_DIST, "CUDA call failed at %s:%d: %s", file, line, cudaGetErrorString(rc));
}

/* The one check macro for CUDA runtime calls here: logs statement, file:line and rank. */
#define NDL_CUDA_CHECK(d, stmt)                                                       \
  do {                                                                                \
    cudaError_t ndl_rc_ = (stmt);                                                     \
    if (ndl_rc_ != cudaSuccess) return cuda_fail((d), ndl_rc_, #stmt, __FILE__, __LINE__); \
  } while (0)

int ndl_dist_gpu_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver or no device: clear the sticky error, report none */
    return 0;
  }
  return n;
}

ndl_status ndl_dist_gpu_bind(ndl_dist *d, int count) {
  NDL_ASSERT(d && count > 0);
  NDL_CUDA_CHECK(d, cudaSetDevice(ndl_dist_local_rank(d) % count));
  return NDL_OK;
}

#ifdef NDL_HAVE_NCCL /* without NCCL: dist_nccl_off.c */

/* The NCCL functions called here, dlsym'd from libnccl.so.2 on first use (nccl.h's prototypes). */
static struct {
  __typeof__(&ncclGetUniqueId) get_unique_id;
  __typeof__(&ncclCommInitRank) comm_init_rank;
  __typeof__(&ncclAllReduce) all_reduce;
  __typeof__(&ncclBroadcast) broadcast;
  __typeof__(&ncclCommGetAsyncError) comm_get_async_error;
  __typeof__(&ncclCommAbort) comm_abort;
  __typeof__(&ncclCommDestroy) comm_destroy;
  __typeof__(&ncclGetErrorString) get_error_string;
} nccl;
static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;
static const char *nccl_why; /* NULL: the table is filled */
static char nccl_why_buf[512];

static void nccl_load_once(void) {
  /* the loader's search first, then the library found at configure time */
  const char *names[] = {"libnccl.so.2",
#ifdef NDL_NCCL_PATH
                         NDL_NCCL_DIR "/libnccl.so.2", NDL_NCCL_PATH,
#endif
                         "libnccl.so"};
  const ndl_dynlib_sym syms[] = {
      {"ncclGetUniqueId", &nccl.get_unique_id},
      {"ncclCommInitRank", &nccl.comm_init_rank},
      {"ncclAllReduce", &nccl.all_reduce},
      {"ncclBroadcast", &nccl.broadcast},
      {"ncclCommGetAsyncError", &nccl.comm_get_async_error},
      {"ncclCommAbort", &nccl.comm_abort},
      {"ncclCommDestroy", &nccl.comm_destroy},
      {"ncclGetErrorString", &nccl.get_error_string},
  };
  /* NDL_NCCL_LIB=PATH (a test hook): the only library tried */
  if (!ndl_dynlib_load("NCCL", "NDL_NCCL_LIB", names, sizeof names / sizeof names[0], syms,
                       sizeof syms / sizeof syms[0], nccl_why_buf, sizeof nccl_why_buf))
    nccl_why = nccl_why_buf;
}

/* NULL when NCCL is loaded, else one line naming the library (thread-safe, loads once). */
static const char *nccl_load(void) {
  pthread_once(&nccl_once, nccl_load_once);
  return nccl_why;
}

struct ndl_dist_nccl {
  ncclComm_t comm;
  cudaStream_t stream; /* the collectives' own stream (the backend's work is synced before them) */
  int64_t seq;         /* NCCL collectives so far (the MPI path counts its own in d->seq) */
  atomic_int aborted;  /* ncclCommAbort ran (from any thread): skip ncclCommDestroy */
};

static void nccl_log(ndl_dist *d, ncclResult_t rc, const char *stmt, const char *file, int line) {
  ndl_dist_log_all(d, "%s:%d: %s failed: %s", file, line, stmt, nccl.get_error_string(rc));
}

static ndl_status nccl_fail(ndl_dist *d, ncclResult_t rc, const char *stmt, const char *file, int line) {
  nccl_log(d, rc, stmt, file, line);
  d->broken = 1;
  return ndl_errorf(NDL_ERR_DIST, "NCCL call failed at %s:%d: %s", file, line, nccl.get_error_string(rc));
}

/* The one check macro for NCCL calls: logs statement, file:line and rank, breaks the handle. */
#define NDL_NCCL_CHECK(d, stmt)                                                       \
  do {                                                                                \
    ncclResult_t ndl_rc_ = (stmt);                                                    \
    if (ndl_rc_ != ncclSuccess) return nccl_fail((d), ndl_rc_, #stmt, __FILE__, __LINE__); \
  } while (0)

int ndl_dist_nccl_built(void) { return 1; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The communicator on the current GPU, once rank 0's id is everywhere. */
static ndl_status comm_init(ndl_dist *d, struct ndl_dist_nccl *n, ncclUniqueId id) {
  NDL_CUDA_CHECK(d, cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
  ncclResult_t rc = nccl.comm_init_rank(&n->comm, ndl_dist_world(d), id, ndl_dist_rank(d));
  if (rc != ncclSuccess) { /* logged, not breaking d: its MPI path is intact (the caller agrees on it) */
    cudaStreamDestroy(n->stream);
    nccl_log(d, rc, "ncclCommInitRank", __FILE__, __LINE__);
    return ndl_errorf(NDL_ERR_DIST, "%s", nccl.get_error_string(rc));
  }
  return NDL_OK;
}

/* Every rank's verdict on a step of the set-up (ok: this rank's), over MPI: the number of ranks
 * where it failed (0 with one rank), or -1 when the agreement itself failed. Each step of a
 * collective set-up is agreed on, so no rank goes on to a collective the others skip. */
static int ranks_failed(ndl_dist *d, int ok, const char *what) {
  if (ndl_dist_world(d) == 1) return !ok;
  double failed = ok ? 0.0 : 1.0;
  if (ndl_dist_allreduce_sum_f64(d, &failed, 1, what) != NDL_OK) return -1;
  return (int)failed;
}

ndl_status ndl_dist_nccl_init(ndl_dist *d) {
  NDL_ASSERT(d);
  if (d->nccl) return NDL_OK;
  const char *why = nccl_load();
  int bad = ranks_failed(d, why == NULL, "nccl load agreement");
  if (bad != 0) {
    if (why) ndl_dist_log_all(d, "--collectives nccl: %s", why);
    if (bad < 0) return NDL_ERR_DIST;
    return ndl_errorf(NDL_ERR_DIST, "--collectives nccl: NCCL could not be loaded on %d of %d rank(s)%s%s", bad,
                      ndl_dist_world(d), why ? ": " : "", why ? why : "");
  }
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  ncclResult_t rc = ncclSuccess;
  if (ndl_dist_rank(d) == 0) rc = nccl.get_unique_id(&id);
  bad = ranks_failed(d, rc == ncclSuccess, "nccl id agreement");
  if (bad != 0) {
    if (rc != ncclSuccess) nccl_log(d, rc, "ncclGetUniqueId", __FILE__, __LINE__);
    return bad < 0 ? NDL_ERR_DIST : ndl_errorf(NDL_ERR_DIST, "--collectives nccl: rank 0 got no NCCL unique id");
  }
  ndl_status st = ndl_dist_broadcast(d, &id, (int64_t)sizeof id, 0, "nccl id broadcast"); /* world 1: none */
  if (st != NDL_OK) return st;
  struct ndl_dist_nccl *n = ndl_calloc(1, sizeof *n);
  if (!n) return ndl_errorf(NDL_ERR_NOMEM, "dist: out of memory");
  atomic_init(&n->aborted, 0);
  st = comm_init(d, n, id);
  char first[256];
  snprintf(first, sizeof first, "%s", st == NDL_OK ? "" : ndl_last_error());
  bad = ranks_failed(d, st == NDL_OK, "nccl init agreement");
  if (bad != 0) { /* a communicator some ranks have is of no use: drop it everywhere */
    if (st == NDL_OK) {
      nccl.comm_abort(n->comm);
      cudaStreamDestroy(n->stream);
    }
    ndl_free(n);
    if (bad < 0) return NDL_ERR_DIST;
    return ndl_errorf(NDL_ERR_DIST, "--collectives nccl: ncclCommInitRank failed on %d of %d rank(s)%s%s", bad,
                      ndl_dist_world(d), *first ? ": " : "", first);
  }
  __atomic_store_n(&d->nccl, n, __ATOMIC_RELEASE); /* the step watchdog's thread polls it */
  return NDL_OK;
}

/* Wait for stream s under the collective deadline, polling NCCL's asynchronous error; on a failure
 * or the deadline the communicator is aborted and the handle broken. */
static ndl_status wait_stream(ndl_dist *d, cudaStream_t s, const char *what, double t0) {
  struct ndl_dist_nccl *n = d->nccl;
  long nap_ns = 20000;
  for (;;) {
    cudaError_t e = cudaStreamQuery(s);
    if (e != cudaSuccess && e != cudaErrorNotReady) {
      d->broken = 1;
      return cuda_fail(d, e, "cudaStreamQuery (NCCL collective)", __FILE__, __LINE__);
    }
    /* asked also once the stream is done: a failed collective may end its kernels early */
    ncclResult_t ae = ncclSuccess;
    NDL_NCCL_CHECK(d, nccl.comm_get_async_error(n->comm, &ae));
    if (e == cudaSuccess && (ae == ncclSuccess || ae == ncclInProgress)) return NDL_OK;
    double waited = now_s() - t0;
    if ((ae != ncclSuccess && ae != ncclInProgress) || waited >= d->timeout_s) {
      ndl_dist_device_abort(d);
      d->broken = 1;
      if (ae != ncclSuccess && ae != ncclInProgress)
        return ndl_errorf(NDL_ERR_DIST, "NCCL failed in %s (NCCL collective #%lld) at step %lld: %s", what,
                          (long long)n->seq, (long long)d->step, nccl.get_error_string(ae));
      return ndl_errorf(NDL_ERR_DIST,
                        "timed out after %.1f s in %s (NCCL collective #%lld) at step %lld: a peer stalled or "
                        "died (NCCL does not say which); communicator aborted",
                        waited, what, (long long)n->seq, (long long)d->step);
    }
    struct timespec ts = {0, nap_ns};
    nanosleep(&ts, NULL);
    if (nap_ns < 200000) nap_ns += nap_ns / 2;
  }
}

ndl_status ndl_dist_nccl_collective(ndl_dist *d, const ndl_backend *be, ndl_dist_op op, void *buf,
                                    int64_t count, int root, const char *what, int syncbn) {
  struct ndl_dist_nccl *n = d->nccl;
  NDL_ASSERT(n && (op == NDL_DIST_SUM_F32 || op == NDL_DIST_SUM_F64 || op == NDL_DIST_BCAST));
  if (d->broken) return ndl_errorf(NDL_ERR_DIST, "%s: an earlier collective failed on this rank", what);
  n->seq++;
  ndl_dist_collective_fault(d, what);
  /* backend.h names no stream: the backward is finished first, then the collective runs on ours and
   * is waited for under the deadline (so a dead peer is a timeout here, not a hang in a later copy) */
  if (be) be->sync();
  cudaStream_t s = n->stream;
  double t0 = now_s();
  if (op == NDL_DIST_BCAST)
    NDL_NCCL_CHECK(d, nccl.broadcast(buf, buf, (size_t)count, ncclUint8, root, n->comm, s));
  else
    NDL_NCCL_CHECK(d, nccl.all_reduce(buf, buf, (size_t)count, op == NDL_DIST_SUM_F32 ? ncclFloat32 : ncclFloat64,
                                      ncclSum, n->comm, s));
  ndl_watchdog_collective(d->watchdog, d->timeout_s);
  ndl_status st = wait_stream(d, s, what, t0);
  ndl_watchdog_collective(d->watchdog, 0);
  if (st == NDL_OK && d->profile) ndl_profile_collective(d->profile, syncbn, now_s() - t0, now_s() - t0);
  return st;
}

int ndl_dist_device_error(ndl_dist *d, char *msg, size_t cap) {
  struct ndl_dist_nccl *n = d ? __atomic_load_n(&d->nccl, __ATOMIC_ACQUIRE) : NULL;
  if (!n || atomic_load(&n->aborted)) return 0;
  ncclResult_t ae = ncclSuccess;
  if (nccl.comm_get_async_error(n->comm, &ae) != ncclSuccess || ae == ncclSuccess || ae == ncclInProgress) return 0;
  snprintf(msg, cap, "NCCL failed asynchronously: %s", nccl.get_error_string(ae));
  return 1;
}

void ndl_dist_device_abort(ndl_dist *d) {
  struct ndl_dist_nccl *n = d ? __atomic_load_n(&d->nccl, __ATOMIC_ACQUIRE) : NULL;
  if (n && atomic_exchange(&n->aborted, 1) == 0) nccl.comm_abort(n->comm);
}

void ndl_dist_nccl_free(ndl_dist *d) {
  struct ndl_dist_nccl *n = d->nccl;
  if (!n) return;
  if (!atomic_load(&n->aborted)) nccl.comm_destroy(n->comm);
  cudaStreamDestroy(n->stream);
  ndl_free(n);
  d->nccl = NULL;
}

#endif
