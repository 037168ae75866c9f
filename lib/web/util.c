/*
 * util.c -- status codes, methods, UTF-8, time formatting and log files
 * for lib/web.
 */
#include "web_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *web_strerror(int rc)
{
    switch (rc) {
    case WEB_OK: return "ok";
    case WEB_ENOMEM: return "out of memory";
    case WEB_EINVAL: return "invalid argument";
    case WEB_ETOOBIG: return "request too large";
    case WEB_ETOOMANY: return "too many parameters";
    case WEB_EHEADER: return "parameter or header too large";
    case WEB_EBADREQ: return "bad request";
    case WEB_EBADPATH: return "invalid request path";
    case WEB_EBADQUERY: return "invalid query string or form body";
    case WEB_EBADJSON: return "malformed JSON body";
    case WEB_EUTF8: return "value is not valid UTF-8";
    case WEB_ENOTFOUND: return "not found";
    case WEB_EMETHOD: return "method not allowed";
    case WEB_ECONF: return "configuration error";
    case WEB_EIO: return "I/O error";
    case WEB_EFULL: return "table full";
    case WEB_EREQUIRED: return "a required value is missing";
    default: return "unknown error";
    }
}

int web_http_status(int rc)
{
    switch (rc) {
    case WEB_OK: return 200;
    case WEB_ETOOBIG: return 413;
    case WEB_ETOOMANY:
    case WEB_EHEADER: return 431;
    case WEB_EBADREQ:
    case WEB_EBADPATH:
    case WEB_EBADQUERY:
    case WEB_EBADJSON:
    case WEB_EUTF8:
    case WEB_EREQUIRED: return 400;
    case WEB_ENOTFOUND: return 404;
    case WEB_EMETHOD: return 405;
    default: return 500;
    }
}

static const struct {
    const char *name;
    unsigned bit;
} methods[] = {
    {"GET", WEB_M_GET},       {"HEAD", WEB_M_HEAD},
    {"POST", WEB_M_POST},     {"PUT", WEB_M_PUT},
    {"DELETE", WEB_M_DELETE}, {"PATCH", WEB_M_PATCH},
    {"OPTIONS", WEB_M_OPTIONS},
};

unsigned web_method_bit(const char *method)
{
    size_t i;
    if (method == NULL || method[0] == '\0')
        return 0;
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(method, methods[i].name) == 0)
            return methods[i].bit;
    return WEB_M_OTHER;
}

const char *web_method_name(unsigned bit)
{
    size_t i;
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (bit == methods[i].bit)
            return methods[i].name;
    return NULL;
}

size_t web_methods_format(unsigned bits, char *buf, size_t buflen)
{
    size_t i, need = 0;
    if (bits & WEB_M_GET)
        bits |= WEB_M_HEAD;
    if (buflen > 0)
        buf[0] = '\0';
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        const char *sep = need > 0 ? ", " : "";
        int w;
        if (!(bits & methods[i].bit))
            continue;
        w = snprintf(buflen > need ? buf + need : NULL,
                     buflen > need ? buflen - need : 0, "%s%s", sep,
                     methods[i].name);
        if (w > 0)
            need += (size_t)w;
    }
    return need;
}

int web_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp, min;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1; cp = c & 0x1f; min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2; cp = c & 0x0f; min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return 0;
        }
        if (k > n - i - 1)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* n decimal digits of v (0 <= v < 10^n), zero-padded. */
static void put_digits(char *p, int v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

int web_time_iso(const struct timespec *ts, char buf[25])
{
    struct tm tm;
    time_t t;
    long ms;
    if (ts == NULL || buf == NULL)
        return WEB_EINVAL;
    t = ts->tv_sec;
    ms = ts->tv_nsec / 1000000;
    if (ts->tv_nsec < 0 || ms > 999)
        return WEB_EINVAL;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 ||
        tm.tm_year > 9999 - 1900)
        return WEB_EINVAL;
    /* Written digit by digit: this runs for every logged request, and
     * snprintf was most of its cost.  Ranges were checked above (year) or
     * are guaranteed by gmtime_r (the other fields). */
    put_digits(buf, tm.tm_year + 1900, 4);
    buf[4] = '-';
    put_digits(buf + 5, tm.tm_mon + 1, 2);
    buf[7] = '-';
    put_digits(buf + 8, tm.tm_mday, 2);
    buf[10] = 'T';
    put_digits(buf + 11, tm.tm_hour, 2);
    buf[13] = ':';
    put_digits(buf + 14, tm.tm_min, 2);
    buf[16] = ':';
    put_digits(buf + 17, tm.tm_sec, 2);
    buf[19] = '.';
    put_digits(buf + 20, (int)ms, 3);
    buf[23] = 'Z';
    buf[24] = '\0';
    return WEB_OK;
}

int web__ident_valid(const char *name, size_t n)
{
    size_t i;
    if (name == NULL || n == 0 || n > 128)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

int web__hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static unsigned char hfold(unsigned char c)
{
    if (c >= 'a' && c <= 'z')
        return (unsigned char)(c - 'a' + 'A');
    if (c == '-')
        return '_';
    return c;
}

int web__header_name_eq(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i;
    if (an != bn)
        return 0;
    for (i = 0; i < an; i++)
        if (hfold((unsigned char)a[i]) != hfold((unsigned char)b[i]))
            return 0;
    return 1;
}

int web__err(char *buf, size_t len, int rc, const char *fmt, ...)
{
    va_list ap;
    if (buf != NULL && len > 0) {
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int web__open_append(const char *what, const char *path, char *errbuf,
                     size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        web__err(errbuf, errlen, WEB_EIO, "cannot open %s %s: %s", what, path,
                 strerror(errno));
    return fd;
}

int web__open_target(const char *what, const char *target, int *fd, char **path,
                     char *errbuf, size_t errlen)
{
    *fd = STDERR_FILENO;
    *path = NULL;
    if (target == NULL || strcmp(target, "stderr") == 0)
        return WEB_OK;
    *path = strdup(target);
    if (*path == NULL)
        return WEB_ENOMEM;
    *fd = web__open_append(what, target, errbuf, errlen);
    if (*fd < 0) {
        free(*path);
        *path = NULL;
        *fd = STDERR_FILENO;
        return WEB_EIO;
    }
    return WEB_OK;
}

void web__close_target(int fd, char *path)
{
    if (path != NULL)
        close(fd);
    free(path);
}

size_t web__write_all(int fd, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    return off;
}
