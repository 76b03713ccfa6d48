/* dist_mpi.c: the MPI transport: init/finalize, nonblocking collectives polled under the watchdog
 * deadline, and the arrival protocol that names a stalled rank. On entering collective k every rank
 * sends an 8-byte token k to each peer on a private communicator (one Irecv per peer is always
 * posted); on timeout the ranks whose token k has not arrived are the ones named. When every token
 * arrived but the collective still did not complete (a network partition, a dead peer), the rank
 * pings every peer on the same channel (negative tokens) and names those that do not answer.
 * Leaves out: NCCL (GPU) collectives and recovery after a failure (the job is ended instead). */
#include <mpi.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "dist/dist_internal.h"
#include "dist/dist_shm.h"

#define TOKEN_TAG 7001
#define SEND_RING 8 /* outstanding token sends per peer */
#define CHUNK (INT_MAX / 8) /* elements or bytes per MPI call (MPI counts are int) */
#define TOKEN_PING (-1)     /* control tokens: never counted as arrivals */
#define TOKEN_PONG (-2)
#define PROBE_S 1.0         /* how long a timed-out rank waits for the peers' answers */
#define SHM_CAP (1 << 20)   /* bytes per shared-window round (the default model's gradients: 443,440) */
#define POLL_FAST_S 2e-3    /* poll without sleeping this long, then sleep 20..200 us per poll */
#define TOKEN_EVERY_S 1e-3  /* while waiting on the shared window, answer pings this often */
#define TWO_PHASE_MIN (64 << 10) /* float sums from this many bytes: reduce-scatter + all-gather */

struct ndl_dist_mpi {
  MPI_Comm coll;           /* collectives */
  MPI_Comm tok;            /* arrival tokens */
  int owns_mpi;            /* this handle called MPI_Init */
  int64_t *arrived;        /* [world] tokens received from each peer */
  int64_t *tok_in;         /* [world] receive buffers */
  MPI_Request *rreq;       /* [world] the posted token Irecv of each peer */
  int64_t *tok_out;        /* [world * SEND_RING] send buffers */
  MPI_Request *sreq;       /* [world * SEND_RING] */
  int64_t *ctl_out;        /* [2 * world]: ping then pong send buffer of each peer */
  MPI_Request *ctl_req;    /* [2 * world] */
  char *answered;          /* [world]: a pong came back since the last probe */
  int64_t *shm_seen;       /* [world]: each peer's shared-window arrival, for messages */
  ndl_shm *shm;            /* node-local sums (every rank on this node), or NULL: MPI collectives */
  int64_t round;           /* shared-window rounds so far (equal on all ranks) */
  int spin;                /* a core per local rank: busy-poll instead of yielding */
};

static ndl_status mpi_fail(ndl_dist *d, int rc, const char *stmt, const char *file, int line) {
  char err[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, err, &len);
  ndl_dist_log_all(d, "%s:%d: %s failed: %s", file, line, stmt, err);
  d->broken = 1;
  return ndl_errorf(NDL_ERR_DIST, "MPI call failed at %s:%d: %s", file, line, err);
}

/* The one check macro for MPI calls: logs statement, file:line and rank, returns NDL_ERR_DIST. */
#define NDL_MPI_CHECK(d, stmt)                                                  \
  do {                                                                          \
    int ndl_rc_ = (stmt);                                                       \
    if (ndl_rc_ != MPI_SUCCESS) return mpi_fail((d), ndl_rc_, #stmt, __FILE__, __LINE__); \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int env_int(const char *name, int fallback) {
  const char *s = getenv(name);
  return s && *s ? atoi(s) : fallback;
}

static ndl_status local_ranks(ndl_dist *d) {
  d->local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
  d->local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", -1);
  if (d->local_rank >= 0 && d->local_size > 0) return NDL_OK;
  MPI_Comm node;
  NDL_MPI_CHECK(d, MPI_Comm_split_type(d->mpi->coll, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL,
                                       &node));
  NDL_MPI_CHECK(d, MPI_Comm_rank(node, &d->local_rank));
  NDL_MPI_CHECK(d, MPI_Comm_size(node, &d->local_size));
  NDL_MPI_CHECK(d, MPI_Comm_free(&node));
  return NDL_OK;
}

static ndl_status post_token_recv(ndl_dist *d, int peer) {
  ndl_dist_mpi *m = d->mpi;
  NDL_MPI_CHECK(d, MPI_Irecv(&m->tok_in[peer], 1, MPI_INT64_T, peer, TOKEN_TAG, m->tok,
                             &m->rreq[peer]));
  return NDL_OK;
}

static ndl_status alloc_tokens(ndl_dist *d) {
  ndl_dist_mpi *m = d->mpi;
  size_t w = (size_t)d->world;
  m->arrived = ndl_calloc(w, sizeof *m->arrived);
  m->tok_in = ndl_calloc(w, sizeof *m->tok_in);
  m->rreq = ndl_calloc(w, sizeof *m->rreq);
  m->tok_out = ndl_calloc(w * SEND_RING, sizeof *m->tok_out);
  m->sreq = ndl_calloc(w * SEND_RING, sizeof *m->sreq);
  m->ctl_out = ndl_calloc(2 * w, sizeof *m->ctl_out);
  m->ctl_req = ndl_calloc(2 * w, sizeof *m->ctl_req);
  m->answered = ndl_calloc(w, 1);
  m->shm_seen = ndl_calloc(w, sizeof *m->shm_seen);
  if (!m->arrived || !m->tok_in || !m->rreq || !m->tok_out || !m->sreq || !m->ctl_out ||
      !m->ctl_req || !m->answered || !m->shm_seen)
    return ndl_errorf(NDL_ERR_NOMEM, "dist: out of memory for %d ranks", d->world);
  for (size_t i = 0; i < w; i++) m->rreq[i] = MPI_REQUEST_NULL;
  for (size_t i = 0; i < w * SEND_RING; i++) m->sreq[i] = MPI_REQUEST_NULL;
  for (size_t i = 0; i < 2 * w; i++) m->ctl_req[i] = MPI_REQUEST_NULL;
  for (int p = 0; p < d->world; p++) {
    if (p == d->rank) continue;
    ndl_status st = post_token_recv(d, p);
    if (st != NDL_OK) return st;
  }
  return NDL_OK;
}

static ndl_status init_comms(ndl_dist *d) {
  ndl_dist_mpi *m = d->mpi;
  int flag = 0;
  NDL_MPI_CHECK(d, MPI_Initialized(&flag));
  if (!flag) {
    int provided = 0;
    /* Open MPI's default nonblocking allreduce (libnbc) is ~1.5x slower than the blocking one for
     * the ~0.4 MB gradient buffer; its Rabenseifner algorithm matches it (measured on 2 ranks: 114 vs
     * 76 us). A value the user set in the environment wins. */
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
    NDL_MPI_CHECK(d, MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
    m->owns_mpi = 1;
    if (provided < MPI_THREAD_FUNNELED) /* the prefetch and pool threads run beside MPI calls */
      return ndl_errorf(NDL_ERR_DIST, "dist: MPI provides thread level %d, below MPI_THREAD_FUNNELED (%d) "
                        "that ndl-train needs: use an MPI built with thread support", provided,
                        MPI_THREAD_FUNNELED);
  }
  NDL_MPI_CHECK(d, MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  NDL_MPI_CHECK(d, MPI_Comm_dup(MPI_COMM_WORLD, &m->coll));
  NDL_MPI_CHECK(d, MPI_Comm_dup(MPI_COMM_WORLD, &m->tok));
  NDL_MPI_CHECK(d, MPI_Comm_set_errhandler(m->coll, MPI_ERRORS_RETURN));
  NDL_MPI_CHECK(d, MPI_Comm_set_errhandler(m->tok, MPI_ERRORS_RETURN));
  NDL_MPI_CHECK(d, MPI_Comm_rank(m->coll, &d->rank));
  NDL_MPI_CHECK(d, MPI_Comm_size(m->coll, &d->world));
  return NDL_OK;
}

/* Shared-window sums when every rank is on this node, unless NDL_DIST_SHM=0 or the user limited Open
 * MPI's byte transports to ones without shared memory (--mca btl tcp,self: the multi-node path tried
 * on one machine), which they then keep testing. */
static int shm_wanted(const ndl_dist *d) {
  if (d->local_size != d->world) return 0;
  const char *e = getenv("NDL_DIST_SHM");
  if (e && strcmp(e, "0") == 0) return 0;
  const char *btl = getenv("OMPI_MCA_btl");
  if (!btl || !*btl) return 1;
  int named = strstr(btl, "vader") || strstr(btl, "sm");
  return btl[0] == '^' ? !named : named;
}

static ndl_status init_shm(ndl_dist *d) {
  ndl_dist_mpi *m = d->mpi;
  int want = shm_wanted(d), all = 0;
  NDL_MPI_CHECK(d, MPI_Allreduce(&want, &all, 1, MPI_INT, MPI_MIN, m->coll));
  if (!all) return NDL_OK;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  m->spin = cpus >= d->local_size;
  ndl_status st = ndl_shm_new(&m->shm, m->coll, SHM_CAP);
  d->shm_sums = st == NDL_OK;
  return st;
}

ndl_status ndl_dist_mpi_init(ndl_dist *d, int env_world) {
  ndl_dist_mpi *m = ndl_calloc(1, sizeof *m);
  if (!m) return ndl_errorf(NDL_ERR_NOMEM, "dist: out of memory");
  m->coll = m->tok = MPI_COMM_NULL;
  d->mpi = m;
  ndl_status st = init_comms(d);
  if (st == NDL_OK && env_world > 0 && env_world != d->world)
    st = ndl_errorf(NDL_ERR_DIST, "dist: the launcher announced %d ranks but MPI has %d",
                    env_world, d->world);
  if (st == NDL_OK) st = local_ranks(d);
  if (st == NDL_OK) st = alloc_tokens(d);
  if (st == NDL_OK) st = init_shm(d);
  if (st != NDL_OK) d->broken = 1; /* free below skips MPI_Finalize: a peer may be missing */
  if (st != NDL_OK) ndl_dist_mpi_free(d);
  return st;
}

/* Send control token v (TOKEN_PING or TOKEN_PONG) to peer p unless the previous one is in flight. */
static ndl_status send_ctl(ndl_dist *d, int p, int64_t v) {
  ndl_dist_mpi *m = d->mpi;
  size_t slot = (size_t)p * 2 + (v == TOKEN_PONG);
  int done = 1;
  NDL_MPI_CHECK(d, MPI_Test(&m->ctl_req[slot], &done, MPI_STATUS_IGNORE));
  if (!done) return NDL_OK;
  m->ctl_out[slot] = v;
  NDL_MPI_CHECK(d, MPI_Isend(&m->ctl_out[slot], 1, MPI_INT64_T, p, TOKEN_TAG, m->tok, &m->ctl_req[slot]));
  return NDL_OK;
}

/* Count every token that has arrived, re-posting each peer's Irecv; answer pings, note pongs. */
static ndl_status drain_tokens(ndl_dist *d) {
  ndl_dist_mpi *m = d->mpi;
  for (int p = 0; p < d->world; p++) {
    if (p == d->rank) continue;
    for (;;) {
      int flag = 0;
      NDL_MPI_CHECK(d, MPI_Test(&m->rreq[p], &flag, MPI_STATUS_IGNORE));
      if (!flag) break;
      if (m->tok_in[p] < 0) {
        ndl_status st = m->tok_in[p] == TOKEN_PING ? send_ctl(d, p, TOKEN_PONG) : NDL_OK;
        if (m->tok_in[p] == TOKEN_PONG) m->answered[p] = 1;
        if (st == NDL_OK) st = post_token_recv(d, p);
        if (st != NDL_OK) return st;
        continue;
      }
      /* tokens carry the collective's number; shared-window sums send none, so numbers may skip */
      if (m->tok_in[p] <= m->arrived[p])
        return ndl_errorf(NDL_ERR_DIST,
                          "rank %d is out of step: its collective #%lld arrived after #%lld "
                          "(ranks called different collectives)",
                          p, (long long)m->tok_in[p], (long long)m->arrived[p]);
      m->arrived[p] = m->tok_in[p];
      ndl_status st = post_token_recv(d, p);
      if (st != NDL_OK) return st;
    }
  }
  return NDL_OK;
}

/* Ping every peer and wait up to PROBE_S for the answers (a peer answers while it polls in a
 * collective); the peers that stay silent go into ranks (comma-separated). */
static void silent_peers(ndl_dist *d, char *ranks, size_t cap) {
  ndl_dist_mpi *m = d->mpi;
  memset(m->answered, 0, (size_t)d->world);
  for (int p = 0; p < d->world; p++)
    if (p != d->rank && send_ctl(d, p, TOKEN_PING) != NDL_OK) return;
  double t0 = now_s();
  for (;;) {
    if (drain_tokens(d) != NDL_OK) return;
    int missing = 0;
    for (int p = 0; p < d->world; p++) missing += p != d->rank && !m->answered[p];
    if (!missing || now_s() - t0 >= PROBE_S) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  size_t len = 0;
  for (int p = 0; p < d->world && len + 16 < cap; p++)
    if (p != d->rank && !m->answered[p])
      len += (size_t)snprintf(ranks + len, cap - len, "%s%d", len ? "," : "", p);
}

/* The deadline passed: name the peers whose arrival (seen[p]) is below need, or, when all arrived,
 * those that do not answer a ping. */
static ndl_status timeout_error(ndl_dist *d, const char *what, double waited, const int64_t *seen,
                                int64_t need) {
  char ranks[256] = "";
  size_t len = 0;
  for (int p = 0; p < d->world && len + 16 < sizeof ranks; p++) {
    if (p == d->rank || seen[p] >= need) continue;
    len += (size_t)snprintf(ranks + len, sizeof ranks - len, "%s%d", len ? "," : "", p);
  }
  if (len == 0) {
    silent_peers(d, ranks, sizeof ranks);
    if (ranks[0])
      return ndl_errorf(NDL_ERR_DIST,
                        "timed out after %.1f s in %s (collective #%lld) at step %lld: every rank "
                        "arrived but the collective did not complete; rank(s) %s did not answer "
                        "within %.1f s (unreachable or dead)",
                        waited, what, (long long)d->seq, (long long)d->step, ranks, PROBE_S);
    return ndl_errorf(NDL_ERR_DIST,
                      "timed out after %.1f s in %s (collective #%lld) at step %lld: every rank "
                      "arrived but the collective did not complete (a peer may have died)",
                      waited, what, (long long)d->seq, (long long)d->step);
  }
  return ndl_errorf(NDL_ERR_DIST,
                    "timed out after %.1f s in %s (collective #%lld) at step %lld waiting for "
                    "rank(s) %s",
                    waited, what, (long long)d->seq, (long long)d->step, ranks);
}

/* With a profile: note the moment every peer's token of the current collective is in. */
static void note_arrival(ndl_dist *d) {
  if (!d->profile || d->arrival_s > 0) return;
  for (int p = 0; p < d->world; p++)
    if (p != d->rank && d->mpi->arrived[p] < d->seq) return;
  d->arrival_s = now_s();
}

/* Poll req until it completes or the deadline t0 + timeout passes: for the first 2 ms test and
 * yield the core (a step's collectives complete in microseconds, and an oversubscribed node lets
 * the peer run), then sleep growing from 20 to 200 us, so a long wait does not spin a core. */
static ndl_status wait_req(ndl_dist *d, MPI_Request *req, double t0, const char *what) {
  long nap_ns = 20000;
  for (int polls = 0;; polls++) {
    int flag = 0;
    NDL_MPI_CHECK(d, MPI_Test(req, &flag, MPI_STATUS_IGNORE));
    ndl_status st = drain_tokens(d);
    if (st != NDL_OK) return st;
    note_arrival(d);
    if (flag) return NDL_OK;
    double waited = now_s() - t0;
    if (waited >= d->deadline_s) return timeout_error(d, what, waited, d->mpi->arrived, d->seq);
    if (waited < 2e-3) {
      if (polls >= 32) sched_yield();
    } else {
      struct timespec ts = {0, nap_ns};
      nanosleep(&ts, NULL);
      if (nap_ns < 200000) nap_ns += nap_ns / 2;
    }
  }
}

static ndl_status send_tokens(ndl_dist *d, double t0, const char *what) {
  ndl_dist_mpi *m = d->mpi;
  for (int p = 0; p < d->world; p++) {
    if (p == d->rank) continue;
    size_t slot = (size_t)p * SEND_RING + (size_t)(d->seq % SEND_RING);
    ndl_status st = wait_req(d, &m->sreq[slot], t0, what); /* NULL request: done at once */
    if (st != NDL_OK) return st;
    m->tok_out[slot] = d->seq;
    NDL_MPI_CHECK(d, MPI_Isend(&m->tok_out[slot], 1, MPI_INT64_T, p, TOKEN_TAG, m->tok,
                               &m->sreq[slot]));
  }
  return NDL_OK;
}

static ndl_status start_op(ndl_dist *d, ndl_dist_op op, char *buf, const char *src, int64_t off,
                           int n, int root, MPI_Request *req) {
  MPI_Comm c = d->mpi->coll;
  switch (op) {
    case NDL_DIST_SUM_F32:
      NDL_MPI_CHECK(d, MPI_Iallreduce(MPI_IN_PLACE, (float *)buf + off, n, MPI_FLOAT, MPI_SUM, c,
                                      req));
      return NDL_OK;
    case NDL_DIST_SUM_F64:
      NDL_MPI_CHECK(d, MPI_Iallreduce(MPI_IN_PLACE, (double *)buf + off, n, MPI_DOUBLE, MPI_SUM,
                                      c, req));
      return NDL_OK;
    case NDL_DIST_BCAST:
      NDL_MPI_CHECK(d, MPI_Ibcast(buf + off, n, MPI_BYTE, root, c, req));
      return NDL_OK;
    case NDL_DIST_ALLGATHER:
      NDL_MPI_CHECK(d, MPI_Iallgather(src ? src : MPI_IN_PLACE, n, MPI_BYTE, buf, n, MPI_BYTE, c,
                                      req));
      return NDL_OK;
    case NDL_DIST_BARRIER:
      NDL_MPI_CHECK(d, MPI_Ibarrier(c, req));
      return NDL_OK;
  }
  NDL_ABORT("dist: unknown collective %d", (int)op);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

typedef int64_t (*shm_flag_fn)(const ndl_shm *s, int p);

/* Wait until every peer's flag (ndl_shm_ready, or ndl_shm_done for a two-phase round's second
 * half) reached round; after ready, check the peers sum what this rank does (cur_op, cur_bytes).
 * Busy-poll while each local rank has a core (m->spin; yielding lets other jobs' processes onto the
 * core, measured 25-30 us slower per gradient sum under niced builds), else yield, for POLL_FAST_S,
 * then sleep 20 growing to 200 us per poll; answer pings every TOKEN_EVERY_S; past the deadline
 * t0 + deadline_s name the peers that did not arrive (or, when all did, those that do not answer).
 * Notes the moment every peer arrived for the profile. */
static ndl_status shm_wait(ndl_dist *d, int64_t round, shm_flag_fn flag, double t0, const char *what,
                           int cur_op, size_t cur_bytes) {
  ndl_dist_mpi *m = d->mpi;
  double last_drain = t0;
  long nap_ns = 20000;
  for (unsigned polls = 0;; polls++) {
    int ready = 1, arrived = 1;
    for (int p = 0; p < d->world; p++) {
      if (p == d->rank) continue;
      if (flag(m->shm, p) < round) ready = 0;
      if (ndl_shm_arrived(m->shm, p) < round) arrived = 0;
    }
    if (arrived && d->profile && d->arrival_s == 0) d->arrival_s = now_s();
    if (ready) break;
    if (m->spin && (polls & 63) != 0) {
      cpu_relax();
      continue;
    }
    double t = now_s(), waited = t - t0;
    if (t - last_drain >= TOKEN_EVERY_S) {
      last_drain = t;
      ndl_status st = drain_tokens(d);
      if (st != NDL_OK) return st;
    }
    if (waited >= d->deadline_s) {
      for (int p = 0; p < d->world; p++) m->shm_seen[p] = ndl_shm_arrived(m->shm, p);
      return timeout_error(d, what, waited, m->shm_seen, round);
    }
    if (waited < POLL_FAST_S) {
      if (m->spin) cpu_relax();
      else sched_yield();
    } else {
      struct timespec ts = {0, nap_ns};
      nanosleep(&ts, NULL);
      if (nap_ns < 200000) nap_ns += nap_ns / 2;
    }
  }
  for (int p = 0; p < d->world && flag == ndl_shm_ready; p++) {
    int op = 0;
    size_t bytes = 0;
    if (p != d->rank && !ndl_shm_same(m->shm, p, round, &op, &bytes))
      return ndl_errorf(NDL_ERR_DIST,
                        "rank %d is out of step in %s (collective #%lld) at step %lld: it sums %zu "
                        "bytes (kind %d) where this rank sums %zu (kind %d): ranks called different "
                        "collectives", p, what, (long long)d->seq, (long long)d->step, bytes, op,
                        cur_bytes, cur_op);
  }
  return NDL_OK;
}

/* A sum on the shared window: rounds of at most its capacity, one synchronization each, two for
 * large float sums (each rank adds only its slice). */
static ndl_status shm_sum(ndl_dist *d, ndl_dist_op op, void *buf, int64_t count, double t0,
                          const char *what) {
  ndl_dist_mpi *m = d->mpi;
  size_t esize = op == NDL_DIST_SUM_F32 ? sizeof(float) : sizeof(double);
  int64_t per = (int64_t)(ndl_shm_capacity(m->shm) / esize), off = 0;
  do {
    int64_t n = count - off < per ? count - off : per;
    char *at = (char *)buf + (size_t)off * esize;
    int64_t round = ++m->round;
    size_t bytes = (size_t)n * esize;
    int two_phase = op == NDL_DIST_SUM_F32 && bytes >= TWO_PHASE_MIN;
    ndl_shm_arrive(m->shm, round, (int)op + 8 * two_phase, bytes);
    if (off == 0) ndl_dist_fault_point(d, NDL_FAULT_MIDWAY, what, d->step); /* NDL_FAULT where=midway */
    if (two_phase) ndl_shm_publish_others(m->shm, round, (const float *)at, (size_t)n);
    else ndl_shm_publish(m->shm, round, at, bytes);
    ndl_status st = shm_wait(d, round, ndl_shm_ready, t0, what, (int)op + 8 * two_phase, bytes);
    if (st != NDL_OK) return st;
    if (two_phase) {
      ndl_shm_reduce_own(m->shm, round, (float *)at, (size_t)n);
      if ((st = shm_wait(d, round, ndl_shm_done, t0, what, 0, 0)) != NDL_OK) return st;
      ndl_shm_gather_others(m->shm, round, (float *)at, (size_t)n);
    } else if (op == NDL_DIST_SUM_F32) {
      ndl_shm_sum_f32(m->shm, round, (float *)at, (size_t)n);
    } else {
      ndl_shm_sum_f64(m->shm, round, (double *)at, (size_t)n);
    }
    off += n;
  } while (off < count);
  return NDL_OK;
}

ndl_status ndl_dist_mpi_collective(ndl_dist *d, ndl_dist_op op, void *buf, const void *src,
                                   int64_t count, int root, const char *what) {
  double t0 = now_s();
  if (d->mpi->shm && (op == NDL_DIST_SUM_F32 || op == NDL_DIST_SUM_F64))
    return shm_sum(d, op, buf, count, t0, what);
  ndl_status st = send_tokens(d, t0, what);
  if (st != NDL_OK) return st;
  ndl_dist_fault_point(d, NDL_FAULT_MIDWAY, what, d->step); /* NDL_FAULT=...,where=midway */
  if (op == NDL_DIST_ALLGATHER && count > INT_MAX)
    return ndl_errorf(NDL_ERR_ARG, "%s: allgather of %lld bytes per rank is over INT_MAX", what,
                      (long long)count);
  int64_t step = (op == NDL_DIST_ALLGATHER || op == NDL_DIST_BARRIER) ? count : CHUNK;
  int64_t off = 0;
  do { /* one pass for barrier, allgather and small buffers; chunks of CHUNK otherwise */
    int n = (int)(count - off < step ? count - off : step);
    MPI_Request req = MPI_REQUEST_NULL;
    st = start_op(d, op, buf, src, off, n, root, &req);
    if (st == NDL_OK) st = wait_req(d, &req, t0, what);
    if (st != NDL_OK) return st;
    off += n;
  } while (off < count);
  return NDL_OK;
}

/* The exit code for abort_alarm; a signal handler can take no argument. */
static volatile sig_atomic_t abort_code = 5;

static void abort_alarm(int sig) {
  (void)sig;
  _exit(abort_code);
}

void ndl_dist_mpi_abort(ndl_dist *d, int code) {
  (void)d;
  abort_code = code;
  signal(SIGALRM, abort_alarm); /* a stuck MPI_Abort still ends this rank, non-zero */
  alarm(5);
  MPI_Abort(MPI_COMM_WORLD, code);
  _exit(code);
}

static void cancel_recv(MPI_Request *r) {
  if (*r == MPI_REQUEST_NULL) return;
  MPI_Cancel(r);
  MPI_Wait(r, MPI_STATUS_IGNORE);
}

void ndl_dist_mpi_free(ndl_dist *d) {
  ndl_dist_mpi *m = d->mpi;
  if (!m) return;
  if (!d->broken) {
    if (m->rreq)
      for (int p = 0; p < d->world; p++) cancel_recv(&m->rreq[p]);
    if (m->sreq) MPI_Waitall(d->world * SEND_RING, m->sreq, MPI_STATUSES_IGNORE);
    if (m->ctl_req) MPI_Waitall(d->world * 2, m->ctl_req, MPI_STATUSES_IGNORE); /* pongs */
    ndl_shm_free(m->shm, 0);
    if (m->tok != MPI_COMM_NULL) MPI_Comm_free(&m->tok);
    if (m->coll != MPI_COMM_NULL) MPI_Comm_free(&m->coll);
    if (m->owns_mpi) MPI_Finalize();
  }
  ndl_free(m->arrived);
  ndl_free(m->tok_in);
  ndl_free(m->rreq);
  ndl_free(m->tok_out);
  ndl_free(m->sreq);
  ndl_free(m->ctl_out);
  ndl_free(m->ctl_req);
  ndl_free(m->answered);
  ndl_free(m->shm_seen);
  if (d->broken) ndl_shm_free(m->shm, 1);
  ndl_free(m);
  d->mpi = NULL;
}
