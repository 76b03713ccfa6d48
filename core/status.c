/* status.c: status code texts, the per-thread error message and the abort path.
 * Messages are formatted into a fixed thread-local buffer (truncated at 512 bytes). */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[512];

const char *ndl_status_str(ndl_status s) {
  switch (s) {
#define NDL_STATUS_CASE(name, value, text) \
  case name:                               \
    return text;
    NDL_STATUS_TABLE(NDL_STATUS_CASE)
#undef NDL_STATUS_CASE
  }
  return "unknown status";
}

ndl_status ndl_errorf(ndl_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return s;
}

const char *ndl_last_error(void) { return last_error; }

void ndl_abort_impl(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: fatal: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}
