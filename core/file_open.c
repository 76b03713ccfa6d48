/* file_open.c: non-blocking open + fstat of user-named files (see file_open.h). Leaves out: which
 * file types a caller accepts and its error messages. */
#include "core/file_open.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int ndl_file_open_nonblocking(const char *path, int flags, mode_t mode, struct stat *sb) {
  int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, mode);
  if (fd < 0) return -1;
  int fl = fcntl(fd, F_GETFL);
  if (fstat(fd, sb) != 0 || fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

const char *ndl_file_kind(mode_t m) {
  return S_ISFIFO(m) ? "a FIFO" : S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}
