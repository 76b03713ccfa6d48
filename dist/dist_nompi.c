/* dist_nompi.c: the transport of builds without MPI (NDL_MPI=OFF): only world size 1 works, and a
 * process launched by mpirun with several ranks gets a clear error from ndl_dist_init.
 * Leaves out: everything else (the other entry points are unreachable with world 1). */
#include "dist/dist_internal.h"

ndl_status ndl_dist_mpi_init(ndl_dist *d, int env_world) {
  (void)d;
  if (env_world > 0)
    return ndl_errorf(NDL_ERR_DIST,
                      "launched by mpirun with %d ranks, but this build has no MPI: reconfigure "
                      "with -DNDL_MPI=ON (Open MPI development files installed)",
                      env_world);
  return ndl_errorf(NDL_ERR_DIST,
                    "launched by an MPI launcher (PMI_RANK/PMIX_RANK set), but this build has no "
                    "MPI: reconfigure with -DNDL_MPI=ON (Open MPI development files installed)");
}

ndl_status ndl_dist_mpi_collective(ndl_dist *d, ndl_dist_op op, void *buf, const void *src,
                                   int64_t count, int root, const char *what) {
  (void)d, (void)op, (void)buf, (void)src, (void)count, (void)root;
  NDL_ABORT("dist: %s: collective with world > 1 in a build without MPI", what);
}

void ndl_dist_mpi_abort(ndl_dist *d, int code) { (void)d, (void)code; }

void ndl_dist_mpi_free(ndl_dist *d) { (void)d; }
