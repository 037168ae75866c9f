/*
 * log.c -- one key=value line per event, to stderr or a file.
 *
 * DESIGN: every line is formatted into a stack buffer and written with one
 * write(2), so lines from different threads never interleave (O_APPEND
 * files, pipes up to PIPE_BUF).  The descriptor is swapped on reopen under
 * a mutex; writers read it under the same mutex only long enough to dup
 * nothing: they hold it across the write, which is short and bounded.
 * Lock order: web_log.mu is a leaf lock (nothing is called under it but
 * write(2)).
 *
 * A line that cannot be written (ENOSPC, EIO, a short write) has nowhere
 * to be reported; it is counted (web_log_dropped, on /_status) and, at
 * the first write that works again, a line says how many were lost
 * (after a newline if the last failed write left half a line).
 */
#define _GNU_SOURCE
#include "web_server.h"
#include "web_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096

struct web_log {
    pthread_mutex_t mu;
    int fd;            /* 2 for stderr */
    char *path;        /* NULL for stderr */
    web_log_level level;
    atomic_uint_fast64_t dropped; /* lines not written, ever */
    uint64_t unsaid;   /* ... since the last log_dropped line (under mu) */
    int torn;          /* the last failed write wrote part of its line */
};

static const char *level_name(web_log_level l)
{
    switch (l) {
    case WEB_LOG_DEBUG: return "debug";
    case WEB_LOG_INFO: return "info";
    case WEB_LOG_NOTICE: return "notice";
    case WEB_LOG_WARN: return "warn";
    case WEB_LOG_ERROR: return "error";
    }
    return "info";
}

int web_log_open(web_log **out, const char *target, web_log_level level,
                 char *errbuf, size_t errlen)
{
    web_log *log;
    int rc;
    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    log = calloc(1, sizeof *log);
    if (log == NULL)
        return WEB_ENOMEM;
    if (pthread_mutex_init(&log->mu, NULL) != 0) {
        free(log);
        return WEB_ENOMEM;
    }
    log->level = level;
    atomic_init(&log->dropped, 0);
    rc = web__open_target("log", target, &log->fd, &log->path, errbuf, errlen);
    if (rc != WEB_OK) {
        web_log_close(log);
        return rc;
    }
    *out = log;
    return WEB_OK;
}

void web_log_close(web_log *log)
{
    if (log == NULL)
        return;
    web__close_target(log->fd, log->path);
    pthread_mutex_destroy(&log->mu);
    free(log);
}

int web_log_reopen(web_log *log)
{
    int fd, old;
    if (log == NULL || log->path == NULL)
        return WEB_OK;
    fd = web__open_append("log", log->path, NULL, 0);
    if (fd < 0)
        return WEB_EIO;
    if (pthread_mutex_lock(&log->mu) != 0) {
        close(fd);
        return WEB_EIO;
    }
    old = log->fd;
    log->fd = fd;
    pthread_mutex_unlock(&log->mu);
    close(old);
    return WEB_OK;
}

int web_log_enabled(const web_log *log, web_log_level level)
{
    return log == NULL ? level >= WEB_LOG_INFO : level >= log->level;
}

/* Under mu, before a line: if lines were lost, say so first. */
static void say_dropped(web_log *log, int fd)
{
    char note[160], ts[25];
    struct timespec now;
    size_t n;
    int k;

    clock_gettime(CLOCK_REALTIME, &now);
    if (web_time_iso(&now, ts) != WEB_OK)
        snprintf(ts, sizeof ts, "%lld", (long long)now.tv_sec);
    k = snprintf(note, sizeof note, "%sts=%s level=warn event=log_dropped "
                 "count=%llu\n", log->torn ? "\n" : "", ts,
                 (unsigned long long)log->unsaid);
    if (k < 0 || (size_t)k >= sizeof note)
        return;
    n = (size_t)k;
    if (web__write_all(fd, note, n) == n) {
        log->unsaid = 0;
        log->torn = 0;
    }
}

static void write_line(web_log *log, const char *buf, size_t len)
{
    size_t off;
    int locked = log != NULL && pthread_mutex_lock(&log->mu) == 0;
    int fd = log != NULL ? log->fd : STDERR_FILENO;
    if (locked && log->unsaid > 0)
        say_dropped(log, fd);
    off = web__write_all(fd, buf, len);
    if (off < len && log != NULL) {
        /* Nowhere left to report a failing log: count it. */
        atomic_fetch_add(&log->dropped, 1);
        if (locked) {
            log->unsaid++;
            if (off > 0)
                log->torn = 1;
        }
    }
    if (locked)
        pthread_mutex_unlock(&log->mu);
}

uint64_t web_log_dropped(const web_log *log)
{
    return log != NULL ? atomic_load(&((web_log *)log)->dropped) : 0;
}

void web_logf(web_log *log, web_log_level level, const char *event,
              const char *fmt, ...)
{
    char line[LINE_MAX_BYTES];
    char ts[25];
    struct timespec now;
    va_list ap;
    int n;
    size_t len;

    if (!web_log_enabled(log, level))
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    if (web_time_iso(&now, ts) != WEB_OK)
        snprintf(ts, sizeof ts, "%lld", (long long)now.tv_sec);
    if (event != NULL)
        n = snprintf(line, sizeof line, "ts=%s level=%s event=%s", ts,
                     level_name(level), event);
    else
        n = snprintf(line, sizeof line, "ts=%s level=%s", ts,
                     level_name(level));
    if (n < 0)
        return;
    len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (fmt != NULL && *fmt != '\0' && len < sizeof line - 2) {
        line[len++] = ' ';
        va_start(ap, fmt);
        n = vsnprintf(line + len, sizeof line - len, fmt, ap);
        va_end(ap);
        if (n > 0)
            len += (size_t)n < sizeof line - len ? (size_t)n
                                                 : sizeof line - len - 1;
    }
    if (len >= sizeof line - 1)
        len = sizeof line - 2; /* truncated: keep room for the newline */
    line[len++] = '\n';
    write_line(log, line, len);
}

const char *web_log_q(char *buf, size_t buflen, const char *s)
{
    size_t o = 0;
    int quote = 0;
    const unsigned char *p;

    if (buf == NULL || buflen < 8)
        return "-";
    if (s == NULL) {
        snprintf(buf, buflen, "-");
        return buf;
    }
    if (*s == '\0')
        quote = 1;
    for (p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            quote = 1;
    if (!quote) {
        snprintf(buf, buflen, "%s", s);
        if (strlen(s) >= buflen)
            memcpy(buf + buflen - 4, "...", 4);
        return buf;
    }
    buf[o++] = '"';
    for (p = (const unsigned char *)s; *p; p++) {
        char esc[5];
        size_t n;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p < ' ' || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            n = 4;
        } else {
            esc[0] = (char)*p;
            n = 1;
        }
        if (buflen - o < n + 5) { /* room for this, '...', '"' and NUL */
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, n);
        o += n;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void web_log_defer_sink(void *ud, int level, const char *line)
{
    web_log_level l;
    switch (level) {
    case DEFER_LOG_DEBUG: l = WEB_LOG_DEBUG; break;
    case DEFER_LOG_INFO: l = WEB_LOG_INFO; break;
    case DEFER_LOG_WARN: l = WEB_LOG_WARN; break;
    default: l = WEB_LOG_ERROR; break;
    }
    /* The pool's line already holds key=value pairs, event included. */
    web_logf((web_log *)ud, l, NULL, "%s", line);
}
