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

#endif
