/* file_open.h: opening a path without ever blocking in open(2) (a FIFO with no peer would), for
 * every reader and writer of user-named files (IDX data, safetensors weights and checkpoints, the
 * --log file). Callers decide which file types they accept and word their own messages. */
#ifndef NDL_FILE_OPEN_H
#define NDL_FILE_OPEN_H

#include <sys/stat.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* open(path, flags | O_NONBLOCK | O_CLOEXEC, mode), fstat into *sb, then O_NONBLOCK cleared so later
 * reads and writes block as usual. Returns the descriptor, or -1 with errno set (nothing left open). */
int ndl_file_open_nonblocking(const char *path, int flags, mode_t mode, struct stat *sb);
/* What a non-regular file is, for messages: "a FIFO", "a directory", "a character device", ... */
const char *ndl_file_kind(mode_t m);

#ifdef __cplusplus
}
#endif
#endif
