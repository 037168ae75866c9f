/*
 * fcgi_client.h -- a minimal FastCGI client for tests: talks to the app
 * directly, without nginx, so tests can send what nginx would filter out
 * (or never send at all: malformed records).
 */
#ifndef WAITUNTIL_FCGI_CLIENT_H
#define WAITUNTIL_FCGI_CLIENT_H

#include <stddef.h>

/* Connect to a unix socket; fd or -1. */
int fc_connect_unix(const char *path);

/*
 * Send one request: params is a NULL-terminated array of "NAME=value",
 * body (may be NULL) is sent on STDIN.  Reads the reply until END_REQUEST
 * or EOF (at most timeout_ms).  *out gets the STDOUT bytes (malloc'd,
 * NUL-terminated), *status the "Status:" code (200 when absent, as CGI).
 * Returns 0, or -1 on a connection/protocol error.
 */
int fc_request(const char *sock_path, const char *const *params,
               const void *body, size_t body_len, int timeout_ms, char **out,
               int *status);

/* Write raw bytes to a new connection and read until EOF/timeout;
 * returns bytes read or -1.  For malformed-record tests. */
long fc_raw(const char *sock_path, const void *bytes, size_t n, int timeout_ms);

/* Build a FastCGI record header + content into buf (capacity cap);
 * returns its length or 0 if it does not fit. */
size_t fc_record(unsigned char *buf, size_t cap, int type, int id,
                 const void *content, size_t len);

#endif
