/*
 * web_int.h -- lib/web internals shared between its files.  Not API.
 */
#ifndef WAITUNTIL_WEB_INT_H
#define WAITUNTIL_WEB_INT_H

#include "web.h"

#define WEB_INTERNAL __attribute__((visibility("hidden")))

/* 1 if name[0..n) is a plain SQL identifier [A-Za-z_][A-Za-z0-9_]* of at
 * most 128 bytes. */
WEB_INTERNAL int web__ident_valid(const char *name, size_t n);

/* Value of hex digit c, or -1. */
WEB_INTERNAL int web__hexval(unsigned char c);

/* ASCII case-insensitive compare of a header name where '-' equals '_'. */
WEB_INTERNAL int web__header_name_eq(const char *a, size_t an, const char *b,
                                     size_t bn);

/* fmt's message in buf (if buf and len > 0; cut to fit); returns rc, so
 * that a failing path reads "return web__err(eb, el, WEB_EIO, ...);". */
WEB_INTERNAL int web__err(char *buf, size_t len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Open path to append log lines (O_APPEND, created 0640, close-on-exec):
 * the descriptor, or -1 with "cannot open WHAT PATH: reason" in errbuf. */
WEB_INTERNAL int web__open_append(const char *what, const char *path,
                                  char *errbuf, size_t errlen);

/* A log's target: NULL or "stderr" is standard error (*fd 2, *path NULL);
 * another is a file opened by web__open_append, *path its malloc'd copy.
 * WEB_OK, WEB_ENOMEM, or WEB_EIO with the reason in errbuf; on failure
 * *fd is 2 and *path NULL (nothing to close or free). */
WEB_INTERNAL int web__open_target(const char *what, const char *target, int *fd,
                                  char **path, char *errbuf, size_t errlen);

/* Close what web__open_target opened (nothing for standard error) and
 * free path. */
WEB_INTERNAL void web__close_target(int fd, char *path);

/* Bytes of buf written to fd (len when all of it): write(2) again after
 * a short write or EINTR, stop at an error or a write of 0 (errno is
 * write's). */
WEB_INTERNAL size_t web__write_all(int fd, const char *buf, size_t len);

#endif
