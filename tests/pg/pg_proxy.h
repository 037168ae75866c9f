/*
 * pg_proxy.h -- for the PostgreSQL Check programs: a tu_proxy in front of
 * the test server, and a connection string through it.  Header-only
 * (static): testutil does not link libpq.
 */
#ifndef WAITUNTIL_TESTS_PG_PROXY_H
#define WAITUNTIL_TESTS_PG_PROXY_H

#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>

#include "testutil.h"

/* The server's unix socket is learnt from a connection to dsn; out gets
 * dsn plus host/port of the proxy (later keys of a conninfo win). */
static inline tu_proxy *pg_proxy(const char *dsn, char *out, size_t n)
{
    PGconn *c = PQconnectdb(dsn);
    char path[1024];
    tu_proxy *px;
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    snprintf(path, sizeof path, "%s/.s.PGSQL.%s", PQhost(c), PQport(c));
    PQfinish(c);
    px = tu_proxy_start(path);
    ck_assert_ptr_nonnull(px);
    snprintf(out, n, "%s host=127.0.0.1 port=%d", dsn, tu_proxy_port(px));
    return px;
}

#endif
