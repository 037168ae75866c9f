/*
 * testutil.h -- helpers shared by the Check programs (one place, per the
 * style guide).  Append new helpers at the end; keep them small.
 */
#ifndef WAITUNTIL_TESTUTIL_H
#define WAITUNTIL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* The bound of a wait for a condition, in milliseconds.  A test waits for
 * a condition, never for a duration: on a busy machine (CI runs the TSan
 * tree on 2 cores next to other work) anything can take 50 times longer
 * than on a quiet one, and a generous bound costs nothing when the
 * condition comes true early.  Tests that wait this long need a Check
 * timeout above it (TU_TCASE_TIMEOUT_S, a guard against hangs only). */
#define TU_WAIT_MS         60000
#define TU_TCASE_TIMEOUT_S 300

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

/* SQL on the SQLite file at path through a connection of its own (busy
 * timeout 5 s), closed before returning.  tu_sqlite_exec: 0, or -1 with
 * the reason in eb.  tu_sqlite_scalar: 0 with *v the first column of the
 * first row (-1 when there is none), or -1 if it could not be opened or
 * prepared. */
int tu_sqlite_exec(const char *path, const char *sql, char *eb, size_t el);
int tu_sqlite_scalar(const char *path, const char *sql, int64_t *v);

/* A TCP proxy from 127.0.0.1 (an ephemeral port) to a unix socket, to put
 * a hung or vanished server between a client and a real one.  It forwards
 * until tu_proxy_hang(p, 1): from then on it accepts new connections and
 * reads them, but never forwards or answers (a server that hangs); 0 goes
 * back to forwarding for new connections.  tu_proxy_cut closes every
 * connection open at the call, both sides, before it returns.  One
 * thread of its own; the calls are thread-safe.  NULL on failure. */
typedef struct tu_proxy tu_proxy;
tu_proxy *tu_proxy_start(const char *unix_path);
int tu_proxy_port(const tu_proxy *p);
void tu_proxy_hang(tu_proxy *p, int on);
void tu_proxy_cut(tu_proxy *p);
void tu_proxy_stop(tu_proxy *p); /* closes everything, frees; NULL ok */

#endif
