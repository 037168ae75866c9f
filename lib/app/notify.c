/*
 * notify.c -- sd_notify(3) without libsystemd (contract in notify.h).
 *
 * DESIGN
 *   One datagram socket, opened once; each message is one sendto(2), so
 *   any thread may send without a lock (the kernel keeps datagrams
 *   whole).  MSG_NOSIGNAL and a non-blocking socket: a manager that went
 *   away or stopped reading never blocks or kills the server.
 *
 *   The ticker thread owns `last` and `stalled_since` alone; main only
 *   starts and stops it.  Lock order: n->mu is a leaf, guarding `stop`
 *   alone; the stats are read after it is released.  The thread waits on a
 *   CLOCK_MONOTONIC condvar, so app_notify_stop wakes it at once instead
 *   of waiting out a tick.
 *
 *   Progress, for WATCHDOG=1: the pool is idle (nothing queued or in a
 *   worker), or ok + failed + retried + commits + batches moved since the
 *   previous tick.  Retries count: a worker retrying SQLITE_BUSY or
 *   reconnecting to PostgreSQL is alive, and killing the process would
 *   lose every queued write; a worker blocked inside one call (a hung
 *   callback, a busy wait longer than a tick) moves nothing, and only
 *   then are the pings withheld.  Reserved slots (admitted, not yet
 *   submitted) are a request thread's business and ignored.
 */
#define _GNU_SOURCE
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TICK_NO_WATCHDOG_MS 10000u

struct app_notify {
    int fd;                    /* -1: inert */
    struct sockaddr_un addr;
    socklen_t addrlen;
    uint64_t watchdog_usec;    /* 0: no watchdog */
    defer_pool *pool;
    web_server *srv;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* CLOCK_MONOTONIC */
    int stop;                  /* under mu */
};

static int set_err(char *eb, size_t el, int rc, const char *msg,
                   const char *detail)
{
    if (eb != NULL && el > 0)
        snprintf(eb, el, "%s%s", msg, detail);
    return rc;
}

/* $WATCHDOG_USEC, if it applies to this process (systemd sets
 * $WATCHDOG_PID when a child of the main process might inherit it). */
static uint64_t watchdog_from_env(void)
{
    const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    char *end;
    unsigned long long v;

    if (us == NULL || *us == '\0')
        return 0;
    if (pid != NULL && *pid != '\0') {
        unsigned long long p = strtoull(pid, &end, 10);
        if (*end != '\0' || p != (unsigned long long)getpid())
            return 0;
    }
    errno = 0;
    v = strtoull(us, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0)
        return 0;
    return (uint64_t)v;
}

int app_notify_open(app_notify **out, char *eb, size_t el)
{
    app_notify *n = calloc(1, sizeof *n);
    const char *path = getenv("NOTIFY_SOCKET");
    pthread_condattr_t ca;
    size_t len;

    *out = n;
    if (n == NULL)
        return WEB_ENOMEM;
    n->fd = -1;
    if (pthread_mutex_init(&n->mu, NULL) != 0 ||
        pthread_condattr_init(&ca) != 0) {
        free(n);
        *out = NULL;
        return WEB_ENOMEM;
    }
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&n->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&n->mu);
        free(n);
        *out = NULL;
        return WEB_ENOMEM;
    }
    pthread_condattr_destroy(&ca);
    if (path == NULL || *path == '\0')
        return WEB_OK;
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof n->addr.sun_path)
        return set_err(eb, el, WEB_EINVAL,
                       "NOTIFY_SOCKET is not an absolute path or @name (or "
                       "is too long): no notifications; it is ", path);
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@') {
        /* Abstract namespace: a leading NUL, and the length says where
         * the name ends (no terminating NUL). */
        n->addr.sun_path[0] = '\0';
        n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        n->addrlen =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0)
        return set_err(eb, el, WEB_EIO, "notify socket: ", strerror(errno));
    n->watchdog_usec = watchdog_from_env();
    return WEB_OK;
}

int app_notify_enabled(const app_notify *n)
{
    return n != NULL && n->fd >= 0;
}

uint64_t app_notify_watchdog_usec(const app_notify *n)
{
    return app_notify_enabled(n) ? n->watchdog_usec : 0;
}

int app_notify_send(app_notify *n, const char *text)
{
    ssize_t w;
    if (!app_notify_enabled(n) || text == NULL)
        return WEB_OK;
    do
        w = sendto(n->fd, text, strlen(text), MSG_NOSIGNAL,
                   (const struct sockaddr *)&n->addr, n->addrlen);
    while (w < 0 && errno == EINTR);
    return w < 0 ? WEB_EIO : WEB_OK;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One tick: STATUS= always, WATCHDOG=1 when the pool moved or idles. */
static void tick(app_notify *n, uint64_t *last, uint64_t *stalled_since)
{
    defer_stats ds;
    web_server_stats ss;
    uint64_t moved, waiting, t = now_ms();
    char msg[512];
    int progress;

    defer_pool_stats(n->pool, &ds);
    web_server_stats_get(n->srv, &ss);
    moved = ds.ok + ds.failed + ds.retried + ds.commits + ds.batches;
    waiting = ds.queued + ds.in_flight;
    progress = waiting == 0 || moved != *last;
    *last = moved;
    if (progress)
        *stalled_since = 0;
    else if (*stalled_since == 0)
        *stalled_since = t;
    if (progress)
        snprintf(msg, sizeof msg,
                 "%sSTATUS=serving: %llu requests, writes %llu ok, %llu "
                 "failed, %llu waiting",
                 n->watchdog_usec ? "WATCHDOG=1\n" : "",
                 (unsigned long long)ss.finished, (unsigned long long)ds.ok,
                 (unsigned long long)ds.failed,
                 (unsigned long long)waiting);
    else
        snprintf(msg, sizeof msg,
                 "STATUS=writes stalled for %llu ms: %llu waiting, none "
                 "finished%s",
                 (unsigned long long)(t - *stalled_since),
                 (unsigned long long)waiting,
                 n->watchdog_usec ? " (watchdog withheld)" : "");
    app_notify_send(n, msg);
}

static void *ticker(void *arg)
{
    app_notify *n = arg;
    uint64_t tick_ms = n->watchdog_usec ? n->watchdog_usec / 2000u
                                        : TICK_NO_WATCHDOG_MS;
    uint64_t last = 0, stalled_since = 0;
    struct timespec due;

    if (tick_ms == 0)
        tick_ms = 1;
    clock_gettime(CLOCK_MONOTONIC, &due);
    for (;;) {
        int stop, rc = 0;
        due.tv_sec += (time_t)(tick_ms / 1000u);
        due.tv_nsec += (long)(tick_ms % 1000u) * 1000000L;
        if (due.tv_nsec >= 1000000000L) {
            due.tv_sec++;
            due.tv_nsec -= 1000000000L;
        }
        if (pthread_mutex_lock(&n->mu) != 0)
            return NULL;
        /* 0 is a wakeup (maybe spurious): look at stop again. */
        while (!n->stop && rc == 0)
            rc = pthread_cond_timedwait(&n->cv, &n->mu, &due);
        stop = n->stop;
        pthread_mutex_unlock(&n->mu);
        if (stop)
            return NULL;
        tick(n, &last, &stalled_since);
    }
}

int app_notify_start(app_notify *n, defer_pool *pool, web_server *srv)
{
    if (!app_notify_enabled(n) || n->started)
        return WEB_OK;
    n->pool = pool;
    n->srv = srv;
    n->stop = 0;
    if (pthread_create(&n->thread, NULL, ticker, n) != 0)
        return WEB_EIO;
    n->started = 1;
    return WEB_OK;
}

void app_notify_stop(app_notify *n)
{
    if (n == NULL || !n->started)
        return;
    /* Default attributes: lock cannot fail here; if it did, joining a
     * ticker never told to stop would hang the stop. */
    if (pthread_mutex_lock(&n->mu) != 0)
        abort();
    n->stop = 1;
    (void)pthread_cond_signal(&n->cv);
    (void)pthread_mutex_unlock(&n->mu);
    (void)pthread_join(n->thread, NULL);
    n->started = 0;
}

void app_notify_close(app_notify *n)
{
    if (n == NULL)
        return;
    app_notify_stop(n);
    if (n->fd >= 0)
        close(n->fd);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}
