/* jsonlog.h: the --log file of ndl-train (JSON Lines). Opening never blocks and accepts only a
 * regular file (or creates one); every line reaches the file whole in one write(2), so a run killed
 * at any moment leaves a file of complete lines, as current as the last step it logged. */
#ifndef NDL_JSONLOG_H
#define NDL_JSONLOG_H

#include <stdio.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Open path for the log: truncated, or when append (--resume) appended to after cutting a torn last
 * line. NDL_ERR_IO naming the path for a FIFO, directory, device or an unwritable file. */
ndl_status ndl_jsonlog_open(const char *path, int append, FILE **out);

/* Write one line (fmt without the newline; at most 4 KiB) with a single write(2); errors ignored. */
void ndl_jsonlog_line(FILE *log, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
