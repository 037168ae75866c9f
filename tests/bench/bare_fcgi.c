/*
 * bare_fcgi.c -- the benchmark's floor: a hello-world libfcgi loop with no
 * framework, to show what waituntil's request path costs on top of libfcgi.
 *
 *   bare_fcgi -s SOCKET [-t THREADS]
 *
 * DESIGN
 *   THREADS (default 4, like waituntil's shipped conf) request threads each
 *   own one FCGX_Request on the shared listening socket and call
 *   FCGX_Accept_r without a mutex: on Linux the kernel hands each
 *   connection to exactly one accept(), so a user-space lock would only
 *   serialise the threads.  The answer is the same bytes waituntil's
 *   /hello produces (status, text/plain, Content-Length, "hello"), so the
 *   two differ only in what happens around them.
 *
 *   Signals: TERM/INT/HUP are blocked before any thread exists and taken
 *   with sigwait() in main, so no handler runs on a request thread.  On a
 *   signal main marks libfcgi's shutdown flag and shuts the listening
 *   socket down, which makes the blocked accept() calls return; threads
 *   then leave their loop, main joins them and removes the socket file.
 *
 * Build (tests/bench/run.sh does this):
 *   cc -std=gnu11 -O2 -Wall -Wextra -Werror -o bare_fcgi bare_fcgi.c \
 *      -lfcgi -pthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define BARE_MAX_THREADS 64

static int listen_fd = -1;
/* Set by main before it shuts the socket down; read by request threads when
 * an accept fails, to tell shutdown from a transient error. */
static atomic_int stopping;

static const char hello_answer[] = "Status: 200 OK\r\n"
                                   "Content-Type: text/plain\r\n"
                                   "Content-Length: 5\r\n"
                                   "\r\n"
                                   "hello";

static void *serve(void *unused)
{
    FCGX_Request req;
    (void)unused;

    if (FCGX_InitRequest(&req, listen_fd, 0) != 0) {
        fprintf(stderr, "bare_fcgi: FCGX_InitRequest failed\n");
        return NULL;
    }
    for (;;) {
        int rc = FCGX_Accept_r(&req);
        if (rc < 0) {
            /* Shutdown, or a transient accept error such as EMFILE: keep
             * serving unless shutdown was asked for. */
            if (atomic_load(&stopping))
                break;
            continue;
        }
        FCGX_PutStr(hello_answer, (int)(sizeof hello_answer - 1), req.out);
        FCGX_Finish_r(&req);
    }
    FCGX_Free(&req, 1);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: bare_fcgi -s SOCKET [-t THREADS (1..%d)]\n",
            BARE_MAX_THREADS);
    exit(2);
}

int main(int argc, char **argv)
{
    pthread_t tids[BARE_MAX_THREADS];
    const char *path = NULL;
    long nthreads = 4;
    int started = 0, sig = 0, opt, rc, status = 0;
    sigset_t set;

    while ((opt = getopt(argc, argv, "s:t:")) != -1) {
        switch (opt) {
        case 's': path = optarg; break;
        case 't': nthreads = strtol(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (path == NULL || nthreads < 1 || nthreads > BARE_MAX_THREADS)
        usage();

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) {
        fprintf(stderr, "bare_fcgi: pthread_sigmask: %s\n", strerror(rc));
        return 1;
    }
    if (FCGX_Init() != 0) {
        fprintf(stderr, "bare_fcgi: FCGX_Init failed\n");
        return 1;
    }
    unlink(path); /* a stale socket from a killed run */
    listen_fd = FCGX_OpenSocket(path, 1024);
    if (listen_fd < 0) {
        fprintf(stderr, "bare_fcgi: cannot listen on %s\n", path);
        return 1;
    }
    if (chmod(path, 0660) != 0)
        fprintf(stderr, "bare_fcgi: chmod %s: %s\n", path, strerror(errno));

    for (; started < nthreads; started++) {
        rc = pthread_create(&tids[started], NULL, serve, NULL);
        if (rc != 0) {
            fprintf(stderr, "bare_fcgi: pthread_create: %s\n", strerror(rc));
            status = 1;
            break;
        }
    }
    if (status == 0) {
        /* SIGPIPE stays blocked (and pending, harmlessly): a client that
         * went away shows up as a write error instead. */
        sigdelset(&set, SIGPIPE);
        rc = sigwait(&set, &sig);
        if (rc != 0) {
            fprintf(stderr, "bare_fcgi: sigwait: %s\n", strerror(rc));
            status = 1;
        }
    }
    atomic_store(&stopping, 1);
    FCGX_ShutdownPending();
    if (shutdown(listen_fd, SHUT_RDWR) != 0)
        fprintf(stderr, "bare_fcgi: shutdown: %s\n", strerror(errno));
    for (int i = 0; i < started; i++) {
        rc = pthread_join(tids[i], NULL);
        if (rc != 0) {
            fprintf(stderr, "bare_fcgi: pthread_join: %s\n", strerror(rc));
            status = 1;
        }
    }
    close(listen_fd);
    unlink(path);
    return status;
}
