/* status.h: error channels of needle-c.
 * Environment errors (I/O, bad files, OOM, shapes from user data, peers) are negative ndl_status
 * values with a thread-local message; bugs abort through the always-on NDL_ASSERT / NDL_ABORT. */
#ifndef NDL_STATUS_H
#define NDL_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, text): the one table of status codes. */
#define NDL_STATUS_TABLE(X)                                            \
  X(NDL_OK, 0, "ok")                                                   \
  X(NDL_ERR_NOMEM, -1, "out of memory")                                \
  X(NDL_ERR_SHAPE, -2, "shape mismatch")                               \
  X(NDL_ERR_AXES, -3, "bad axes")                                      \
  X(NDL_ERR_ARG, -4, "bad argument")                                   \
  X(NDL_ERR_IO, -5, "i/o error")                                       \
  X(NDL_ERR_FORMAT, -6, "malformed file")                              \
  X(NDL_ERR_MISMATCH, -7, "file does not match the model")             \
  X(NDL_ERR_DIST, -8, "distributed failure")                           \
  X(NDL_ERR_NUMERIC, -9, "non-finite value")

typedef enum ndl_status {
#define NDL_STATUS_ENUM(name, value, text) name = value,
  NDL_STATUS_TABLE(NDL_STATUS_ENUM)
#undef NDL_STATUS_ENUM
} ndl_status;

/* Short fixed text of a status code; never NULL. */
const char *ndl_status_str(ndl_status s);

/* Record a message for the calling thread and return s (for `return ndl_errorf(...)`). */
ndl_status ndl_errorf(ndl_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The calling thread's last message from ndl_errorf ("" if none); borrowed. */
const char *ndl_last_error(void);

/* Print "file:line: assertion failed: ..." to stderr and abort. */
void ndl_abort_impl(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4), noreturn))
#endif
    ;

#define NDL_ABORT(...) ndl_abort_impl(__FILE__, __LINE__, __VA_ARGS__)
#define NDL_ASSERT(cond)                                           \
  do {                                                             \
    if (!(cond)) ndl_abort_impl(__FILE__, __LINE__, "%s", #cond);  \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif
