/* jsonlog.c: the --log file. open(2) with O_NONBLOCK (a FIFO without reader fails with ENXIO
 * instead of blocking), then fstat: a regular file, a character device (/dev/null, a terminal) or a
 * FIFO that has a reader is taken; a directory, socket or block device is refused. The FILE is only a
 * handle for the caller: lines bypass stdio buffering and go out whole, one write(2) each. */
#include "launch/jsonlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file_open.h"

/* Cut the file after its last newline (a line torn by an earlier crash); 0 on success. */
static int cut_torn_line(int fd, off_t size) {
  char buf[4096];
  off_t end = size;
  while (end > 0) {
    off_t from = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
    ssize_t got = pread(fd, buf, (size_t)(end - from), from);
    if (got != end - from) return -1;
    for (ssize_t i = got - 1; i >= 0; i--)
      if (buf[i] == '\n') return from + i + 1 == size ? 0 : ftruncate(fd, from + i + 1);
    end = from;
  }
  return ftruncate(fd, 0);
}

ndl_status ndl_jsonlog_open(const char *path, int append, FILE **out) {
  *out = NULL;
  struct stat sb;
  int fd = ndl_file_open_nonblocking(path, (append ? O_RDWR | O_APPEND : O_WRONLY) | O_CREAT, 0666, &sb);
  if (fd < 0)
    return ndl_errorf(NDL_ERR_IO, "%s: cannot open for writing: %s", path,
                      errno == ENXIO ? "a FIFO, expected a regular file" : strerror(errno));
  int regular = S_ISREG(sb.st_mode);
  if (!regular && !S_ISCHR(sb.st_mode) && !S_ISFIFO(sb.st_mode)) {
    close(fd);
    return ndl_errorf(NDL_ERR_IO, "%s: cannot open for writing: %s, expected a regular file", path,
                      ndl_file_kind(sb.st_mode));
  }
  if ((regular && (append ? cut_torn_line(fd, sb.st_size) : ftruncate(fd, 0)) != 0) ||
      !(*out = fdopen(fd, append ? "a" : "w"))) {
    int e = errno;
    close(fd);
    return ndl_errorf(NDL_ERR_IO, "%s: cannot open for writing: %s", path, strerror(e));
  }
  return NDL_OK;
}

void ndl_jsonlog_line(FILE *log, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  int fd = fileno(log);
  for (int done = 0; done < n;) {
    ssize_t w = write(fd, buf + done, (size_t)(n - done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    done += (int)w;
  }
}
