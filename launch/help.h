/* help.h: ndl-train's help text as data (option groups, environment variables, exit codes, notes)
 * and its three renderings: --help (plain text), --help-man (the ndl-train.1 man page the build
 * generates and installs) and --version (version, BLAS and kernel, MPI/CUDA/NCCL built in or not).
 * One table feeds both texts, so the man page cannot drift from --help. */
#ifndef NDL_HELP_H
#define NDL_HELP_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Print the --help text (grouped options with defaults, environment, exit codes, notes) to f. */
void ndl_help_print(FILE *f);

/* Print the same text as a man(7) page (troff) to f. */
void ndl_help_man(FILE *f);

/* Print the --version lines: version, BLAS library and live kernel, MPI/CUDA/NCCL support. */
void ndl_help_version(FILE *f);

#ifdef __cplusplus
}
#endif
#endif
