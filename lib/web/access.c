/*
 * access.c -- the access log: one logfmt line per request.
 *
 * DESIGN
 *
 * Request threads write it, so it must not serialise them: there is no
 * lock.  Each line is formatted into the thread's stack buffer and
 * written with one write(2) on a descriptor opened O_APPEND: the kernel
 * appends each write whole at the end of the file (and a pipe keeps a
 * write of at most PIPE_BUF = 4096 bytes whole; a line is at most
 * WEB_ACCESS_LINE_MAX), so lines from different threads never interleave
 * and nobody waits for anybody in user space.
 *
 * Reopen (SIGHUP/SIGUSR1, after logrotate moved the file) cannot swap
 * the descriptor under the writers without a lock, and closing it would
 * let a writer write into whatever file next gets that number.  So the
 * descriptor NUMBER never changes: reopen opens the path again and
 * dup2(2)s the new file onto the old number, which the kernel does
 * atomically -- a write(2) in flight finishes on the old file (it holds
 * its own reference to it), every later one goes to the new file -- and
 * then closes the spare descriptor.  Reopen is called from one thread
 * (the main thread's signal loop); writers only read `fd`, which is
 * immutable after open.
 *
 * A write that fails or is cut short (ENOSPC, EIO) is counted (dropped),
 * never retried and never waited for: the request has been answered.
 * The first failure of a run and the first success after it are said on
 * the main log (one line each, decided by an atomic exchange, so a
 * failing disk costs one main-log line, not one per request).  A line
 * cut short leaves half a line: the next write that works starts with a
 * newline, so the half line stays on its own line.
 */
#define _GNU_SOURCE
#include "web_server.h"
#include "web_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct web_access_log {
    int fd;              /* fixed for the log's life (see DESIGN) */
    char *path;          /* NULL: stderr, never reopened */
    web_log *log;        /* borrowed: where failures are said */
    atomic_uint_fast64_t written, dropped;
    atomic_int failing;  /* the last write failed */
    atomic_int torn;     /* ... and left part of its line */
};

int web_access_log_open(web_access_log **out, const char *target,
                        web_log *log, char *errbuf, size_t errlen)
{
    web_access_log *al;
    int rc;
    if (out == NULL || target == NULL)
        return WEB_EINVAL;
    *out = NULL;
    al = calloc(1, sizeof *al);
    if (al == NULL)
        return WEB_ENOMEM;
    al->log = log;
    atomic_init(&al->written, 0);
    atomic_init(&al->dropped, 0);
    atomic_init(&al->failing, 0);
    atomic_init(&al->torn, 0);
    rc = web__open_target("access log", target, &al->fd, &al->path, errbuf,
                          errlen);
    if (rc != WEB_OK) {
        free(al);
        return rc;
    }
    *out = al;
    return WEB_OK;
}

void web_access_log_close(web_access_log *al)
{
    if (al == NULL)
        return;
    web__close_target(al->fd, al->path);
    free(al);
}

int web_access_log_reopen(web_access_log *al)
{
    int fd, rc = WEB_OK;
    if (al == NULL || al->path == NULL)
        return WEB_OK;
    fd = web__open_append("access log", al->path, NULL, 0);
    if (fd < 0)
        return WEB_EIO;
    if (fd != al->fd) {
        /* atomic replacement of the file behind al->fd (DESIGN).  EBUSY
         * is Linux's answer to a race with another thread's open(2) of
         * the same descriptor number: transient, so a few tries, never an
         * unbounded loop. */
        int tries = 0;
        while (dup3(fd, al->fd, O_CLOEXEC) < 0) {
            if ((errno != EINTR && errno != EBUSY) || ++tries >= 100) {
                rc = WEB_EIO;
                break;
            }
        }
        close(fd);
    }
    return rc;
}

uint64_t web_access_log_dropped(const web_access_log *al)
{
    return al != NULL
               ? atomic_load(&((web_access_log *)al)->dropped)
               : 0;
}

uint64_t web_access_log_written(const web_access_log *al)
{
    return al != NULL
               ? atomic_load(&((web_access_log *)al)->written)
               : 0;
}

/* ---- formatting ------------------------------------------------------------ */

typedef struct abuf {
    char *s;
    size_t cap, n;   /* s[n] is NUL; n < cap */
} abuf;

static void ab_put(abuf *b, const char *s, size_t n)
{
    if (n > b->cap - 1 - b->n)
        n = b->cap - 1 - b->n;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void ab_str(abuf *b, const char *s)
{
    ab_put(b, s, strlen(s));
}

/* A plain logfmt token: bare.  Else quoted with '"' '\\' escaped and
 * every byte under 0x20, 0x7f and over 0x7f written \xNN (a URI is
 * ASCII; bytes past it came from a client and are shown, not trusted),
 * at most max bytes of output inside the quotes ("..." when cut). */
static void ab_val(abuf *b, const char *s, size_t slen, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, out = 0;
    int quote = slen == 0;
    for (i = 0; i < slen && !quote; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            quote = 1;
    }
    if (!quote && slen <= max) {
        ab_put(b, s, slen);
        return;
    }
    ab_put(b, "\"", 1);
    for (i = 0; i < slen; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[4];
        size_t el = 1;
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            el = 2;
        } else if (c < 0x20 || c >= 0x7f) {
            e[0] = '\\';
            e[1] = 'x';
            e[2] = hex[c >> 4];
            e[3] = hex[c & 15];
            el = 4;
        } else {
            e[0] = (char)c;
        }
        if (out + el > max) {
            ab_put(b, "...", 3);
            break;
        }
        ab_put(b, e, el);
        out += el;
    }
    ab_put(b, "\"", 1);
}

size_t web_access_format(char *buf, size_t len, const web_access_rec *r,
                         int redact_query)
{
    abuf b;
    char num[96], ts[25];
    const char *uri, *q;
    size_t ulen;

    if (buf == NULL || len < WEB_ACCESS_LINE_MAX || r == NULL) {
        if (buf != NULL && len > 0)
            buf[0] = '\0';
        return 0;
    }
    b.s = buf;
    b.cap = len;
    b.n = 0;
    buf[0] = '\0';
    if (web_time_iso(&r->time, ts) != WEB_OK)
        snprintf(ts, sizeof ts, "%lld", (long long)r->time.tv_sec);
    ab_str(&b, "ts=");
    ab_str(&b, ts);
    ab_str(&b, " event=access method=");
    ab_val(&b, r->method ? r->method : "-",
           r->method ? strlen(r->method) : 1, 32);
    ab_str(&b, " uri=");
    uri = r->uri ? r->uri : "-";
    ulen = strlen(uri);
    q = memchr(uri, '?', ulen);
    if (redact_query && q != NULL) {
        /* the path (the route) stays; the query's values go */
        char cut[WEB_ACCESS_URI_MAX + 64];
        size_t plen = (size_t)(q - uri);
        int k;
        if (plen > WEB_ACCESS_URI_MAX)
            plen = WEB_ACCESS_URI_MAX; /* ab_val cuts it anyway */
        memcpy(cut, uri, plen);
        k = snprintf(cut + plen, sizeof cut - plen, "?(redacted len=%zu)",
                     ulen - (size_t)(q - uri) - 1);
        ab_val(&b, cut, plen + (k > 0 ? (size_t)k : 0), WEB_ACCESS_URI_MAX);
    } else {
        ab_val(&b, uri, ulen, WEB_ACCESS_URI_MAX);
    }
    snprintf(num, sizeof num, " status=%d bytes=%llu duration_ms=%.3f", r->status,
             (unsigned long long)r->bytes,
             r->duration_ns > 0 ? (double)r->duration_ns / 1e6 : 0.0);
    ab_str(&b, num);
    snprintf(num, sizeof num, " writes=%zu", r->writes);
    ab_str(&b, num);
    if (r->writes_inline > 0) {
        snprintf(num, sizeof num, " writes_inline=%zu", r->writes_inline);
        ab_str(&b, num);
    }
    ab_str(&b, " request_id=");
    if (r->request_id != NULL && r->request_id[0] != '\0')
        ab_val(&b, r->request_id, strlen(r->request_id), 200);
    else
        ab_str(&b, "-");
    ab_str(&b, "\n");
    return b.n;
}

/* ---- writing --------------------------------------------------------------- */

void web_access_log_line(web_access_log *al, const char *line, size_t len)
{
    size_t off;
    int err;
    if (al == NULL || len == 0)
        return;
    /* A cut line before us: end it first (rare; racing writers may both
     * see torn, only the one that clears it writes the newline). */
    if (atomic_load_explicit(&al->torn, memory_order_relaxed) &&
        atomic_exchange(&al->torn, 0))
        (void)web__write_all(al->fd, "\n", 1);
    off = web__write_all(al->fd, line, len);
    err = errno;
    if (off == len) {
        atomic_fetch_add_explicit(&al->written, 1, memory_order_relaxed);
        if (atomic_load_explicit(&al->failing, memory_order_relaxed) &&
            atomic_exchange(&al->failing, 0))
            web_logf(al->log, WEB_LOG_WARN, "access_log_recovered",
                     "dropped=%llu",
                     (unsigned long long)atomic_load(&al->dropped));
        return;
    }
    atomic_fetch_add(&al->dropped, 1);
    if (off > 0)
        atomic_store(&al->torn, 1);
    if (!atomic_exchange(&al->failing, 1))
        web_logf(al->log, WEB_LOG_WARN, "access_log_failed",
                 "errno=%d short=%d dropped=%llu", off > 0 ? 0 : err,
                 off > 0, (unsigned long long)atomic_load(&al->dropped));
}

void web_access_log_write(web_access_log *al, const web_access_rec *r,
                          int redact_query)
{
    char line[WEB_ACCESS_LINE_MAX];
    size_t n;
    if (al == NULL)
        return;
    n = web_access_format(line, sizeof line, r, redact_query);
    web_access_log_line(al, line, n);
}
