/* dist.h: the process group of needle-c: one MPI rank per process, collectives under a watchdog.
 * The handle is explicit state owned by the caller (no globals). World size 1 touches no MPI at all:
 * every collective returns at once (allreduce and broadcast leave the buffer, allgather copies).
 * Failure contract: a collective that fails or passes its deadline returns NDL_ERR_DIST with a
 * one-line message in ndl_last_error(), e.g. "timed out after 2.0 s in grad allreduce (collective #7)
 * at step 3 waiting for rank(s) 2"; the handle is then broken (every later collective fails at once)
 * and the caller prints the message with ndl_dist_log_all and calls ndl_dist_abort(d, 5).
 * mpirun's exit status (Open MPI 4.1, tests/dist_* check it): a stalled rank -> the others time out,
 * MPI_Abort(5), mpirun returns 5; a rank that exits non-zero -> Open MPI kills the job at once and
 * mpirun returns that rank's status (1 for NDL_FAULT exit); with orte_abort_on_non_zero_status=0 the
 * survivors' watchdog names the dead rank and mpirun returns 5.
 * Test-only fault injection: env NDL_FAULT="rank=R,step=S,action=exit|hang" makes rank R, at its
 * first collective at or after step S (ndl_dist_set_step), exit with status 1 or sleep forever.
 * ",where=PHASE" moves the fault to a step watchdog phase (step_watchdog.h keys: data, forward,
 * backward, allreduce, optimizer, eval, checkpoint, resume, output) of step S or later, or, with
 * where=midway, into a collective after this rank's arrival token went out (a cut link), and
 * "action=slow,seconds=X" sleeps X seconds there once instead (a slow checkpoint write). */
#ifndef NDL_DIST_H
#define NDL_DIST_H

#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ndl_dist ndl_dist; /* opaque, owned by the caller */

/* From the environment: launched by mpirun with more than one rank (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
 * PMI_RANK or PMIX_RANK set) -> MPI_Init, world/rank/local rank; otherwise world 1 with no MPI call.
 * timeout_s (> 0) is the watchdog deadline of every collective. NDL_ERR_DIST when launched by mpirun
 * but built without MPI, or MPI fails; NDL_ERR_ARG for a bad timeout or NDL_FAULT. */
ndl_status ndl_dist_init(ndl_dist **out, double timeout_s);
int ndl_dist_rank(const ndl_dist *d);
int ndl_dist_world(const ndl_dist *d);
int ndl_dist_local_rank(const ndl_dist *d); /* rank among the processes of this node */
int ndl_dist_local_size(const ndl_dist *d); /* processes of the job on this node */
/* How sums travel: "none" (world 1), "mpi" (Open MPI's collectives), or "mpi+shm" (every rank on
 * this node: an MPI-3 shared window, dist_shm.h; NDL_DIST_SHM=0 or --mca btl without vader/sm turn
 * it off). Static string. */
const char *ndl_dist_transport(const ndl_dist *d);
/* Whether a collective failed on d: every later one refuses (the trainer's exit 5 follows). */
int ndl_dist_broken(const ndl_dist *d);
/* Current optimizer step, used in messages and by fault injection. */
void ndl_dist_set_step(ndl_dist *d, int64_t step);
/* The next collective's deadline is seconds (> 0) instead of the timeout; once. */
void ndl_dist_set_next_deadline(ndl_dist *d, double seconds);
/* The step watchdog told when a collective starts and ends (NULL: none); step_watchdog.c calls it. */
struct ndl_watchdog;
void ndl_dist_set_watchdog(ndl_dist *d, struct ndl_watchdog *w);
/* Time every collective into profile p (step_profile.h; NULL: stop): its total and its wait until
 * every rank's arrival token was in; SyncBN's (ndl_dist_allreduce_cb) are marked as such. */
struct ndl_profile;
void ndl_dist_set_profile(ndl_dist *d, struct ndl_profile *p);
/* NDL_FAULT with where=key: run the fault if it matches this rank, phase and step (label names the
 * phase in the NDL_FAULT line). The step watchdog calls it on every phase change. */
void ndl_dist_fault_point(ndl_dist *d, const char *key, const char *label, int64_t step);

/* Sum buf[0..n) over all ranks, in place; every rank gets the same result. what names the call in
 * messages ("grad allreduce"). All ranks must pass the same n. */
ndl_status ndl_dist_allreduce_sum(ndl_dist *d, float *buf, int64_t n, const char *what);
ndl_status ndl_dist_allreduce_sum_f64(ndl_dist *d, double *buf, int64_t n, const char *what);
/* Copy root's bytes of buf into buf on every rank. */
ndl_status ndl_dist_broadcast(ndl_dist *d, void *buf, int64_t bytes, int root, const char *what);
/* all[r*bytes .. (r+1)*bytes) = rank r's mine; all holds world*bytes; mine may be all + rank*bytes. */
ndl_status ndl_dist_allgather(ndl_dist *d, const void *mine, void *all, int64_t bytes,
                              const char *what);
ndl_status ndl_dist_barrier(ndl_dist *d, const char *what);
/* SyncBN adapter (ndl_allreduce_fn): handle is the ndl_dist*; a double sum named "syncbn allreduce". */
ndl_status ndl_dist_allreduce_cb(void *handle, double *buf, int64_t n);

/* "ndl-train: rank R: <message>\n" to stderr in one write, on every rank / on rank 0 only.
 * d may be NULL (then "ndl-train: <message>"). */
void ndl_dist_log_all(const ndl_dist *d, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void ndl_dist_log0(const ndl_dist *d, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* End the job after a failure on this rank; never returns. Flushes stdio, then with MPI calls
 * MPI_Abort(MPI_COMM_WORLD, code): Open MPI kills every other rank (SIGTERM) and mpirun exits with
 * status code (checked by the dist_abort test); without MPI (or d NULL), exit(code). A 5 s alarm turns
 * a stuck MPI_Abort into _exit(code). */
void ndl_dist_abort(ndl_dist *d, int code)
#if defined(__GNUC__)
    __attribute__((noreturn))
#endif
    ;
/* ndl_dist_abort from any thread, without stdio (the step watchdog's path): MPI_Abort (5 s alarm),
 * else _exit(code). d may be NULL. */
void ndl_dist_abort_async(ndl_dist *d, int code)
#if defined(__GNUC__)
    __attribute__((noreturn))
#endif
    ;
/* MPI_Finalize when this handle initialized MPI (skipped once the handle is broken, since a peer may
 * be gone); NULL is a no-op. */
void ndl_dist_free(ndl_dist *d);

#ifdef __cplusplus
}
#endif
#endif
