/*
 * defer_health.c -- the pool's monitor thread.
 *
 * DESIGN
 *
 * One thread per pool ("defer-mon"), started last in create and joined
 * by shutdown after the workers.  Every MON_TICK_MS it writes the log's
 * repeated=N summaries whose second is over (defer_log.c), so a failure
 * that stopped repeating still gets its count written within about a
 * second, not at the next identical line or at shutdown.
 *
 * LOCK ORDER: pool->mu as everywhere (a leaf); the monitor sleeps on
 * hl.mon_cv under it and writes nothing while holding it.
 */
#define _GNU_SOURCE
#include "config.h"
#include "defer_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MON_TICK_MS 500

static void *mon_main(void *arg)
{
    defer_pool *p = arg;
    int rc = pthread_setname_np(pthread_self(), "defer-mon");
    if (rc != 0)
        defer__log(p, DEFER_LOG_WARN, "thread_name_failed", NULL, -1, rc,
                   strerror(rc));
    defer__lock(p);
    while (!p->hl.mon_stop) {
        int64_t until = defer__now_ns() + (int64_t)MON_TICK_MS * 1000000;
        while (!p->hl.mon_stop &&
               defer__wait(p, &p->hl.mon_cv, until) != ETIMEDOUT)
            ;
        if (p->hl.mon_stop)
            break;
        defer__unlock(p);
        defer__rl_flush(p, 0);
        defer__lock(p);
    }
    defer__unlock(p);
    return NULL;
}

int defer__health_init(defer_pool *p)
{
    pthread_condattr_t ca;
    int rc;

    rc = pthread_condattr_init(&ca);
    if (rc != 0)
        return DEFER_ETHREAD;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&p->hl.mon_cv, &ca);
    (void)pthread_condattr_destroy(&ca);
    if (rc != 0)
        return DEFER_ETHREAD;
    p->hl.inited = 1;
    return DEFER_OK;
}

int defer__health_start(defer_pool *p)
{
    int rc = pthread_create(&p->hl.mon, NULL, mon_main, p);
    if (rc == 0)
        p->hl.mon_started = 1;
    return rc;
}

void defer__health_stop(defer_pool *p)
{
    int started;
    defer__lock(p);
    p->hl.mon_stop = 1;
    started = p->hl.mon_started;
    p->hl.mon_started = 0;
    defer__signal(&p->hl.mon_cv);
    defer__unlock(p);
    if (started) {
        int rc = pthread_join(p->hl.mon, NULL);
        if (rc != 0)
            defer__log(p, DEFER_LOG_ERROR, "join_failed", NULL, -1,
                       DEFER_ETHREAD, strerror(rc));
    }
}

void defer__health_fini(defer_pool *p)
{
    if (!p->hl.inited)
        return; /* never initialised */
    (void)pthread_cond_destroy(&p->hl.mon_cv);
    p->hl.inited = 0;
}
