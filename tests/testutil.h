/*
 * testutil.h -- helpers shared by the Check programs (one place, per the
 * style guide).  Append new helpers at the end; keep them small.
 */
#ifndef WAITUNTIL_TESTUTIL_H
#define WAITUNTIL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic clock in milliseconds / nanoseconds. */
int64_t tu_now_ms(void);
int64_t tu_now_ns(void);

/* Path of a file under the source tree's tests/ folder (TESTS_SRCDIR, set by
 * the build; "." if unset).  Returns a static buffer: not thread-safe. */
const char *tu_data_path(const char *rel);

/* Make a fresh private temp directory (mkdtemp under $TMPDIR or /tmp) and
 * return its malloc'd path; NULL on failure.  tu_rmtree removes it. */
char *tu_mkdtemp(const char *prefix);
void tu_rmtree(const char *path);

/* Read a whole file into a malloc'd NUL-terminated buffer; NULL on error. */
char *tu_read_file(const char *path, size_t *len_out);

#endif
