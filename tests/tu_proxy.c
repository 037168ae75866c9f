/*
 * tu_proxy.c -- a loopback TCP proxy to a unix socket for tests (see
 * testutil.h).
 *
 * DESIGN
 *
 * One thread polls a wake-up pipe, the listening socket and every
 * connection.  A connection is a pair (client, upstream); a held one (hang
 * mode) has no upstream, and what its client sends is read and dropped.
 * The control calls change the state under mu, write a byte to the pipe,
 * and tu_proxy_cut waits on cv until the thread has closed the pairs
 * (cut_done catches up with cut_req), so a test knows every connection is
 * gone when the call returns.  Writes are blocking: test traffic is small
 * and both ends read.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROXY_MAX 64

struct pair {
    int c, u; /* u = -1: held */
};

struct tu_proxy {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int hang, stop;
    unsigned cut_req, cut_done;
    int lfd, wake[2], port;
    struct sockaddr_un up;
    struct pair pairs[PROXY_MAX];
    size_t n;
};

static void drop(tu_proxy *p, size_t i)
{
    close(p->pairs[i].c);
    if (p->pairs[i].u >= 0)
        close(p->pairs[i].u);
    p->pairs[i] = p->pairs[--p->n];
}

/* Copy what fd has to the other side; 0 when the pair is done. */
static int pump(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return n < 0 && errno == EINTR;
    for (ssize_t off = 0; to >= 0 && off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 0;
        off += w;
    }
    return 1;
}

/* The mode is read here, after poll: a connection that arrived together
 * with the wake-up of tu_proxy_hang gets the new mode. */
static void accept_one(tu_proxy *p)
{
    int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC), u = -1, hang;
    if (c < 0)
        return;
    pthread_mutex_lock(&p->mu);
    hang = p->hang;
    pthread_mutex_unlock(&p->mu);
    if (p->n == PROXY_MAX) {
        close(c);
        return;
    }
    if (!hang) {
        u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (u < 0 ||
            connect(u, (const struct sockaddr *)&p->up, sizeof p->up) != 0) {
            if (u >= 0)
                close(u);
            close(c);
            return;
        }
    }
    p->pairs[p->n].c = c;
    p->pairs[p->n].u = u;
    p->n++;
}

static void *proxy_main(void *arg)
{
    tu_proxy *p = arg;
    struct pollfd fds[2 + 2 * PROXY_MAX];

    for (;;) {
        int stop;
        unsigned cut;
        size_t nf = 2, i;

        pthread_mutex_lock(&p->mu);
        stop = p->stop;
        cut = p->cut_req;
        pthread_mutex_unlock(&p->mu);
        if (stop || cut != p->cut_done) {
            while (p->n > 0)
                drop(p, 0);
            pthread_mutex_lock(&p->mu);
            p->cut_done = cut;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
            if (stop)
                return NULL;
        }
        fds[0].fd = p->wake[0];
        fds[1].fd = p->lfd;
        for (i = 0; i < p->n; i++) {
            fds[nf++].fd = p->pairs[i].c;
            fds[nf++].fd = p->pairs[i].u; /* -1: poll ignores it */
        }
        for (i = 0; i < nf; i++) {
            fds[i].events = POLLIN;
            fds[i].revents = 0;
        }
        if (poll(fds, nf, 1000) <= 0)
            continue;
        if (fds[0].revents) {
            char b[64];
            (void)!read(p->wake[0], b, sizeof b);
        }
        /* Pairs from the back, so that drop's swap with the last one
         * never moves an unvisited pair. */
        for (i = p->n; i-- > 0;) {
            short rc = fds[2 + 2 * i].revents, ru = fds[3 + 2 * i].revents;
            int ok = 1;
            if (rc)
                ok = pump(p->pairs[i].c, p->pairs[i].u);
            if (ok && ru)
                ok = pump(p->pairs[i].u, p->pairs[i].c);
            if (!ok)
                drop(p, i);
        }
        if (fds[1].revents)
            accept_one(p);
    }
}

static void poke(tu_proxy *p)
{
    (void)!write(p->wake[1], "x", 1);
}

tu_proxy *tu_proxy_start(const char *unix_path)
{
    tu_proxy *p = calloc(1, sizeof *p);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;

    if (p == NULL)
        return NULL;
    p->lfd = p->wake[0] = p->wake[1] = -1;
    if (strlen(unix_path) >= sizeof p->up.sun_path)
        goto fail;
    p->up.sun_family = AF_UNIX;
    strcpy(p->up.sun_path, unix_path);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(p->lfd, 16) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &alen) != 0 ||
        pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        goto fail;
    p->port = ntohs(a.sin_port);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->tid, NULL, proxy_main, p) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    return p;
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    free(p);
    return NULL;
}

int tu_proxy_port(const tu_proxy *p)
{
    return p->port;
}

void tu_proxy_hang(tu_proxy *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->hang = on;
    pthread_mutex_unlock(&p->mu);
    poke(p);
}

void tu_proxy_cut(tu_proxy *p)
{
    unsigned want;
    pthread_mutex_lock(&p->mu);
    want = ++p->cut_req;
    poke(p);
    while ((int)(p->cut_done - want) < 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void tu_proxy_stop(tu_proxy *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    poke(p);
    pthread_join(p->tid, NULL);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
