/* dist_internal.h: the handle behind dist.h and the transport interface that dist_mpi.c (MPI) or
 * dist_nompi.c (builds without MPI) implements. Only dist/ includes this file. */
#ifndef NDL_DIST_INTERNAL_H
#define NDL_DIST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dist/dist.h"

typedef enum ndl_dist_op {
  NDL_DIST_SUM_F32,
  NDL_DIST_SUM_F64,
  NDL_DIST_BCAST,
  NDL_DIST_ALLGATHER,
  NDL_DIST_BARRIER,
} ndl_dist_op;

typedef enum ndl_fault_action {
  NDL_FAULT_NONE,
  NDL_FAULT_EXIT,
  NDL_FAULT_HANG,
  NDL_FAULT_SLOW
} ndl_fault_action;

typedef struct ndl_dist_mpi ndl_dist_mpi; /* transport state (dist_mpi.c) */

struct ndl_dist {
  int rank, world, local_rank, local_size;
  double timeout_s;
  double deadline_s;      /* of the running collective: timeout_s unless set_next_deadline */
  double next_deadline_s; /* 0: none */
  struct ndl_watchdog *watchdog; /* step watchdog to tell about collectives, or NULL */
  struct ndl_profile *profile;   /* --profile: told every collective's time and wait, or NULL */
  double arrival_s; /* with a profile: clock when every peer's token of the current collective was in (0: not yet) */
  int64_t step;
  int64_t seq;    /* number of the current collective, 1-based, equal on all ranks */
  int broken;     /* a collective failed: later ones fail at once, free skips MPI_Finalize */
  int shm_sums;   /* sums go through the node's shared window (dist_shm.h), not MPI */
  int fault_rank; /* NDL_FAULT: rank, step and action (NDL_FAULT_NONE when unset) */
  int64_t fault_step;
  ndl_fault_action fault_action;
  char fault_where[16];  /* phase key; "" = at a collective */
  double fault_seconds;  /* NDL_FAULT_SLOW */
  int fault_done;        /* a slow fault runs once */
  ndl_dist_mpi *mpi; /* NULL when no MPI was initialized (world 1) */
  /* device buffers (dist_device.c): the host staging buffer of the MPI path, and the NCCL
   * transport (dist_nccl.c), NULL unless ndl_dist_nccl_init succeeded */
  void *stage;
  size_t stage_bytes;
  struct ndl_dist_nccl *nccl;
};

/* NDL_FAULT where= value for a fault inside a collective, after this rank's arrival token is sent
 * (its peers see it arrive, then the collective never completes: a link cut mid-transfer). */
#define NDL_FAULT_MIDWAY "midway"

/* Initialize MPI and fill rank/world/local_rank/local_size and d->mpi. env_world is the size the
 * launcher announced (-1 when only a rank variable was found). */
ndl_status ndl_dist_mpi_init(ndl_dist *d, int env_world);
/* One collective (d->seq already advanced) under the watchdog. count is elements for the sums and
 * bytes otherwise; src is the allgather input (NULL: in place at buf + rank*count). */
ndl_status ndl_dist_mpi_collective(ndl_dist *d, ndl_dist_op op, void *buf, const void *src,
                                   int64_t count, int root, const char *what);
/* MPI_Abort(MPI_COMM_WORLD, code) when MPI is up; returns only when it could not abort. */
void ndl_dist_mpi_abort(ndl_dist *d, int code);
void ndl_dist_mpi_free(ndl_dist *d);

/* The NCCL transport (dist_nccl.c; dist_nccl_none.c in builds without CUDA). One collective on
 * d->nccl (SUM_F32, SUM_F64 or BCAST; count elements, bytes for BCAST) over device memory, after
 * be's queued work (NULL: the caller has finished it); syncbn marks SyncBN's for the profile. */
struct ndl_backend;
ndl_status ndl_dist_nccl_collective(ndl_dist *d, const struct ndl_backend *be, ndl_dist_op op, void *buf,
                                    int64_t count, int root, const char *what, int syncbn);
/* Destroy the communicator (skipped after an abort); NULL d->nccl is a no-op. */
void ndl_dist_nccl_free(ndl_dist *d);

/* NDL_FAULT without where= (dist.c): hang or exit here, instead of joining collective what, when this
 * is the chosen rank and step; every transport's collective entry calls it (MPI's, NCCL's). */
void ndl_dist_collective_fault(ndl_dist *d, const char *what);

#endif
