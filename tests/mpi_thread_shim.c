/* mpi_thread_shim.c: LD_PRELOAD test shim: MPI_Init_thread initializes MPI as usual but reports
 * MPI_THREAD_SINGLE as the provided level, as an MPI built without thread support would; the
 * dist_thread_level test checks that ndl-train then refuses to run (exit 5) naming the level. */
#include <mpi.h>

int MPI_Init_thread(int *argc, char ***argv, int required, int *provided) {
  int rc = PMPI_Init_thread(argc, argv, required, provided);
  *provided = MPI_THREAD_SINGLE;
  return rc;
}
