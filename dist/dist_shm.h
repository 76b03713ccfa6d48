/* dist_shm.h: node-local sums through an MPI-3 shared window (dist_mpi.c uses it when every rank of
 * the job is on one node). Each rank owns a slot: a header (its arrival and data-ready round numbers,
 * and per parity the op and size it published) and two data buffers used in alternate rounds. A
 * round: publish arrival, copy the data in, publish ready; once every peer is ready each rank sums
 * all slots in rank order 0..N-1 into its own buffer (the same operations on every rank: bit-identical
 * results, deterministic). Alternating buffers make one synchronization per round enough: a rank
 * reuses a buffer two rounds later, after every peer arrived at the round in between, so after every
 * peer finished reading it. Only dist/ includes this file; waiting and deadlines are dist_mpi.c's. */
#ifndef NDL_DIST_SHM_H
#define NDL_DIST_SHM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct ndl_shm ndl_shm; /* opaque, owned by dist_mpi.c */

/* Allocate the window on comm (all ranks of comm on this node; collective over comm), with cap_bytes
 * per data buffer. NDL_ERR_DIST when MPI refuses (the caller then keeps the MPI path). */
ndl_status ndl_shm_new(ndl_shm **out, MPI_Comm comm, size_t cap_bytes);
/* Free the window (collective over comm unless broken: then the memory is only unmapped by exit). */
void ndl_shm_free(ndl_shm *s, int broken);
/* Bytes one round can carry. */
size_t ndl_shm_capacity(const ndl_shm *s);
/* Start round round (1, 2, ... the same sequence on every rank): publish this rank's arrival with the
 * op code and size it will publish. */
void ndl_shm_arrive(ndl_shm *s, int64_t round, int op, size_t bytes);
/* Copy bytes of src into this round's buffer and publish it as ready. */
void ndl_shm_publish(ndl_shm *s, int64_t round, const void *src, size_t bytes);
/* The last round peer p arrived at / published data for. */
int64_t ndl_shm_arrived(const ndl_shm *s, int p);
int64_t ndl_shm_ready(const ndl_shm *s, int p);
/* Peer p (ready for round) published the same op and size as this rank: 1, else 0 with its op and
 * size in *op and *bytes. */
int ndl_shm_same(const ndl_shm *s, int p, int64_t round, int *op, size_t *bytes);
/* After every peer is ready for round: dst[0..n) = sum of every rank's published buffer, in rank
 * order ((x0 + x1) + x2) + ..., as float or double. */
void ndl_shm_sum_f32(const ndl_shm *s, int64_t round, float *dst, size_t n);
void ndl_shm_sum_f64(const ndl_shm *s, int64_t round, double *dst, size_t n);

/* The two-phase round for large float sums (reduce-scatter, then all-gather: each rank adds only its
 * slice, so every byte moves about once). Slice q of n floats is [lo, hi) = ndl_shm_slice(s, n, q).
 *   ndl_shm_publish_others  copy every slice but this rank's own into its buffer, publish ready;
 *   ndl_shm_reduce_own      (every peer ready) buf's own slice = the rank-ordered sum, taking this
 *                           rank's values from buf itself; copy it into the buffer, publish done;
 *   ndl_shm_gather_others   (every peer done) copy every peer's summed slice into buf. */
void ndl_shm_slice(const ndl_shm *s, size_t n, int q, size_t *lo, size_t *hi);
void ndl_shm_publish_others(ndl_shm *s, int64_t round, const float *buf, size_t n);
void ndl_shm_reduce_own(ndl_shm *s, int64_t round, float *buf, size_t n);
void ndl_shm_gather_others(const ndl_shm *s, int64_t round, float *buf, size_t n);
/* The last round peer p published its summed slice for. */
int64_t ndl_shm_done(const ndl_shm *s, int p);

#endif
