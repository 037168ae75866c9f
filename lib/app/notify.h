/*
 * notify.h -- tell a service manager (systemd) how the server is doing:
 * the sd_notify(3) protocol, spoken without libsystemd.
 *
 * Messages are newline-separated VAR=VALUE lines, sent as one datagram to
 * the AF_UNIX socket named by $NOTIFY_SOCKET: a path ("/run/systemd/
 * notify") or, with a leading '@', a name in the abstract namespace.
 * Without $NOTIFY_SOCKET (a shell, a test, another supervisor) every call
 * below is a no-op that succeeds, so the program calls them
 * unconditionally.  The server sends:
 *   READY=1 + STATUS=    once the socket listens and the threads run
 *   STATUS=              every tick: requests, writes ok/failed/queued
 *   WATCHDOG=1           every tick while the pool makes progress, when
 *                        $WATCHDOG_USEC is set (and $WATCHDOG_PID, if set,
 *                        is this process); a tick is half WATCHDOG_USEC
 *   STOPPING=1 + STATUS= at SIGTERM/SIGINT, before the drain
 */
#ifndef WAITUNTIL_APP_NOTIFY_H
#define WAITUNTIL_APP_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "defer.h"
#include "web_server.h"

typedef struct app_notify app_notify;

/*
 * Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and open a
 * datagram socket for the messages.  *out is always set (free it with
 * app_notify_close); with no $NOTIFY_SOCKET it is a handle whose calls do
 * nothing.  Returns WEB_OK, WEB_EINVAL when $NOTIFY_SOCKET is not an
 * absolute path or '@'name (or too long for a sockaddr_un), WEB_EIO when
 * the socket cannot be made (errbuf says why): the handle is then inert,
 * and the caller may log and go on.  The environment is left as it is
 * (an upgraded binary exec'd later needs the same variables).
 */
int app_notify_open(app_notify **out, char *errbuf, size_t errlen);

/* 1 when messages go somewhere ($NOTIFY_SOCKET set and usable). */
int app_notify_enabled(const app_notify *n);

/* The watchdog interval systemd asked for ($WATCHDOG_USEC), 0 if none. */
uint64_t app_notify_watchdog_usec(const app_notify *n);

/*
 * Send one message: text is the whole datagram ("READY=1\nSTATUS=...").
 * Thread-safe (one sendto(2) on a datagram socket).  WEB_OK (also when
 * the handle is inert), WEB_EIO when the send failed (the manager is gone
 * or its socket full: nothing is retried, a later tick sends again).
 */
int app_notify_send(app_notify *n, const char *text);

/*
 * Start the ticker thread: each tick it reads defer_pool_stats and
 * web_server_stats_get, sends STATUS=, and sends WATCHDOG=1 only if the
 * pool made progress since the last tick: it was idle (nothing queued or
 * running) or it finished, retried or committed something.  A pool stuck
 * with work waiting (a hung worker, a lock held elsewhere past its whole
 * retry budget) stops the pings, and STATUS says since when.  The tick is
 * WATCHDOG_USEC/2, or 10 s without a watchdog.  pool and srv are borrowed
 * and must outlive app_notify_stop.  Inert handle: WEB_OK, no thread.
 * Signals stay blocked in the thread (it inherits the caller's mask).
 * WEB_OK or WEB_EIO (pthread_create failed; nothing started).
 */
int app_notify_start(app_notify *n, defer_pool *pool, web_server *srv);

/* Stop and join the ticker (no-op if not started).  From the thread that
 * started it. */
void app_notify_stop(app_notify *n);

/* Stop, close the socket, free.  NULL: no-op. */
void app_notify_close(app_notify *n);

#endif
