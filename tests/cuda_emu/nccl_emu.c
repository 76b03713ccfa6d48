/* nccl_emu.c (tests/cuda_emu): the NCCL of the emulated device, a shared library the dist layer
 * dlopens as it would libnccl (cuda_emu.cc points NDL_NCCL_LIB here). Collectives are MPI's
 * non-blocking ones on a duplicate of MPI_COMM_WORLD, queued on the caller's stream: started when
 * the stream reaches them, done when MPI_Test says so, so a peer that stops answering leaves the
 * stream not ready, as on a GPU, and ncclCommAbort ends the wait. As NCCL does, ncclCommInitRank
 * refuses ranks of one host on one GPU ("Duplicate GPU detected"), and a rank whose unique id
 * differs from rank 0's. Test hooks: NDL_EMU_NCCL_FAIL_AT=K makes the K-th collective (from 1) fail
 * asynchronously (ncclRemoteError), as a dead link would; NDL_EMU_NCCL_STALL_AT=K makes it never
 * finish (until ncclCommAbort), as a peer that stopped answering would. Leaves out: every reduction but sum, every
 * call needle-c does not make. */
#include <nccl.h>

#include <mpi.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ncclComm {
  MPI_Comm comm;
  int rank, nranks;
  long long collectives; /* started so far */
  long long fail_at;     /* NDL_EMU_NCCL_FAIL_AT, 0: none */
  long long stall_at;    /* NDL_EMU_NCCL_STALL_AT, 0: none */
  atomic_int aborted;
  atomic_int async_error; /* an ncclResult_t */
};

typedef struct job {
  struct ncclComm *c;
  const void *send;
  void *recv;
  size_t count, elem;
  MPI_Datatype type;
  int root; /* -1: all-reduce */
  MPI_Request req;
  int done;
  int stalled; /* NDL_EMU_NCCL_STALL_AT: never done, until an abort */
} job;

static const char *tag = "NCCL WARN (emulated)";

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  if (!id) return ncclInvalidArgument;
  memset(id, 0, sizeof *id);
  FILE *f = fopen("/dev/urandom", "rb");
  size_t got = f ? fread(id->internal, 1, 32, f) : 0;
  if (f) fclose(f);
  if (got != 32) return ncclSystemError;
  memcpy(id->internal + 32, "ndl-emu", 7);
  return ncclSuccess;
}

static void read_hooks(struct ncclComm *c) {
  const char *f = getenv("NDL_EMU_NCCL_FAIL_AT"), *t = getenv("NDL_EMU_NCCL_STALL_AT");
  c->fail_at = f && *f ? atoll(f) : 0;
  c->stall_at = t && *t ? atoll(t) : 0;
}

static unsigned long long host_hash(void) {
  char name[256] = {0};
  gethostname(name, sizeof name - 1);
  unsigned long long h = 1469598103934665603ULL;
  for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h;
}

ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank) {
  int inited = 0, world = 0, me = 0;
  if (!out) return ncclInvalidArgument;
  *out = NULL;
  MPI_Initialized(&inited);
  if (!inited && nranks == 1 && rank == 0) { /* one rank without MPI: every collective is a copy */
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    c->comm = MPI_COMM_NULL;
    c->nranks = 1;
    read_hooks(c);
    *out = c;
    return ncclSuccess;
  }
  if (!inited) {
    fprintf(stderr, "%s: ncclCommInitRank of %d ranks needs MPI initialized (the emulation runs on MPI)\n", tag,
            nranks);
    return ncclInvalidUsage;
  }
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (nranks != world || rank != me) {
    fprintf(stderr, "%s: rank %d of %d given, MPI says %d of %d\n", tag, rank, nranks, me, world);
    return ncclInvalidArgument;
  }
  struct ncclComm *c = calloc(1, sizeof *c);
  if (!c) return ncclSystemError;
  MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
  c->rank = rank;
  c->nranks = nranks;
  read_hooks(c);
  /* every rank must hold rank 0's id, and each (host, device) at most one rank */
  ncclUniqueId root = id;
  MPI_Bcast(&root, (int)sizeof root, MPI_BYTE, 0, c->comm);
  int bad_id = memcmp(&root, &id, sizeof id) != 0, any_bad_id = 0;
  MPI_Allreduce(&bad_id, &any_bad_id, 1, MPI_INT, MPI_LOR, c->comm);
  int dev = 0;
  cudaGetDevice(&dev);
  unsigned long long mine[2] = {host_hash(), (unsigned long long)dev};
  unsigned long long *all = malloc(sizeof mine * (size_t)nranks);
  if (!all) return ncclSystemError;
  MPI_Allgather(mine, 2, MPI_UNSIGNED_LONG_LONG, all, 2, MPI_UNSIGNED_LONG_LONG, c->comm);
  ncclResult_t rc = any_bad_id ? ncclInvalidArgument : ncclSuccess;
  if (bad_id) fprintf(stderr, "%s: rank %d: unique id differs from rank 0's\n", tag, rank);
  for (int i = 0; i < nranks && rc == ncclSuccess; i++)
    for (int j = i + 1; j < nranks; j++)
      if (all[2 * i] == all[2 * j] && all[2 * i + 1] == all[2 * j + 1]) {
        if (rank == 0)
          fprintf(stderr, "%s: Duplicate GPU detected : rank %d and rank %d both on CUDA device %llu\n", tag, i, j,
                  all[2 * i + 1]);
        rc = ncclInvalidUsage;
        break;
      }
  free(all);
  if (rc != ncclSuccess) {
    MPI_Comm_free(&c->comm);
    free(c);
    return rc;
  }
  *out = c;
  return ncclSuccess;
}

static MPI_Datatype mpi_type(ncclDataType_t t, size_t *elem) {
  switch (t) {
    case ncclInt8: *elem = 1; return MPI_SIGNED_CHAR;
    case ncclUint8: *elem = 1; return MPI_UNSIGNED_CHAR;
    case ncclInt32: *elem = 4; return MPI_INT32_T;
    case ncclUint32: *elem = 4; return MPI_UINT32_T;
    case ncclInt64: *elem = 8; return MPI_INT64_T;
    case ncclUint64: *elem = 8; return MPI_UINT64_T;
    case ncclFloat32: *elem = 4; return MPI_FLOAT;
    case ncclFloat64: *elem = 8; return MPI_DOUBLE;
    default: *elem = 0; return MPI_DATATYPE_NULL;
  }
}

static void job_start(void *arg) {
  job *j = arg;
  struct ncclComm *c = j->c;
  c->collectives++;
  if (c->fail_at && c->collectives == c->fail_at) {
    atomic_store(&c->async_error, ncclRemoteError);
    j->done = 1;
    return;
  }
  if (c->stall_at && c->collectives == c->stall_at) {
    j->stalled = 1;
    return;
  }
  if (j->count) { /* MPI and, through CMA, the peer processes touch them until the job is done */
    ndl_emu_open(j->recv, j->count * j->elem);
    if (j->send && j->send != j->recv) ndl_emu_open(j->send, j->count * j->elem);
  }
  if (j->recv != j->send && (j->root < 0 || c->rank == j->root)) memcpy(j->recv, j->send, j->count * j->elem);
  if (c->comm == MPI_COMM_NULL) { /* one rank: the copy above was all of it */
    j->done = 1;
    return;
  }
  if (j->root < 0)
    MPI_Iallreduce(MPI_IN_PLACE, j->recv, (int)j->count, j->type, MPI_SUM, c->comm, &j->req);
  else
    MPI_Ibcast(j->recv, (int)j->count, j->type, j->root, c->comm, &j->req);
}

/* Done when MPI finished it, when the communicator was aborted (the wait ends; the buffer is left
 * as it is), or when it failed. */
static int job_poll(void *arg) {
  job *j = arg;
  if (j->done || atomic_load(&j->c->aborted) || atomic_load(&j->c->async_error) != ncclSuccess) return 1;
  if (j->stalled) return 0;
  int flag = 0;
  MPI_Test(&j->req, &flag, MPI_STATUS_IGNORE);
  j->done = flag;
  return flag;
}

static ncclResult_t enqueue(const void *send, void *recv, size_t count, ncclDataType_t t, int root, ncclComm_t c,
                            cudaStream_t stream, const char *what) {
  if (!c) return ncclInvalidArgument;
  if (atomic_load(&c->aborted)) return ncclInvalidUsage;
  size_t elem = 0;
  MPI_Datatype type = mpi_type(t, &elem);
  if (type == MPI_DATATYPE_NULL || count > INT32_MAX) return ncclInvalidArgument;
  if (root >= c->nranks) return ncclInvalidArgument;
  if (count && ((send && !ndl_emu_device_range(send, count * elem)) || !ndl_emu_device_range(recv, count * elem))) {
    fprintf(stderr, "%s: %s : invalid buffer pointer (not inside one device allocation)\n", tag, what);
    return ncclInvalidArgument;
  }
  job *j = calloc(1, sizeof *j);
  if (!j) return ncclSystemError;
  *j = (job){c, send, recv, count, elem, type, root, MPI_REQUEST_NULL, 0, 0};
  if (ndl_emu_enqueue(stream, job_start, job_poll, free, j) != cudaSuccess) return ncclUnhandledCudaError;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  if (op != ncclSum) return ncclInvalidArgument;
  return enqueue(sendbuff, recvbuff, count, datatype, -1, comm, stream, "AllReduce");
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  if (root < 0) return ncclInvalidArgument;
  return enqueue(sendbuff, recvbuff, count, datatype, root, comm, stream, "Broadcast");
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError) {
  if (!comm || !asyncError) return ncclInvalidArgument;
  *asyncError = (ncclResult_t)atomic_load(&comm->async_error);
  return ncclSuccess;
}

/* Ends every wait on comm; the communicator itself is left (its requests may still be in MPI). */
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  atomic_store(&comm->aborted, 1);
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  if (comm->comm != MPI_COMM_NULL) MPI_Comm_free(&comm->comm);
  free(comm);
  return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}
