/* fuzz_util.h: shared helpers of the libFuzzer targets in tests/fuzz: a private scratch directory
 * (removed at exit), writing an input to a file there, and the checks every target applies to a
 * failing call: a known status with a one-line message (no control byte that could forge a second
 * "ndl-train:" line). A failed check aborts, which libFuzzer reports as a crash. */
#ifndef NDL_FUZZ_UTIL_H
#define NDL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The scratch directory (created on first use, under $NDL_FUZZ_TMPDIR, /dev/shm or /tmp). */
const char *ndl_fuzz_dir(void);
/* Write data to <scratch>/<name> (truncating); returns the path (static buffer per name slot). */
const char *ndl_fuzz_write(const char *name, const uint8_t *data, size_t size);
/* Path of <scratch>/<name> into out. */
void ndl_fuzz_path(const char *name, char *out, size_t cap);
/* Abort unless s is NDL_OK or a known error status whose message is non-empty and one clean line
 * (no byte below 0x20; NDL_FUZZ_IGNORE_MESSAGES=1 skips that part, to fuzz past a known case). */
void ndl_fuzz_check_status(ndl_status s, const char *call);
/* Abort with a message (a property the target checks does not hold). */
void ndl_fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
