/*
 * ops.c -- operating a running waituntil: the pid file and -s, the
 * reload (SIGHUP), the listening socket a process inherits, and the
 * binary upgrade (SIGUSR2).  All of it runs in main's thread (the one
 * that sigwait()s), never in a request or pool thread.
 *
 * DESIGN
 *
 * Reload (SIGHUP; -s reload).  The conf file is parsed again, its
 * deferred statements are built and prepared against the running
 * database through a read-only connection of their own (app_check_live:
 * the check -t and the start make), and web_server_reload checks the
 * routes against the running server (handlers, tasks_per_request,
 * max_body) and swaps them in for new requests (see lib/web/server.c:
 * generations).  Any failure keeps the running conf and logs
 * `event=reload_failed` with the reason (FILE:LINE for the conf).
 * Settings that cannot change in a running process (the listening
 * socket, threads, server.max_body, the log, the database and pool
 * blocks) keep their running values; each that differs is logged
 * `event=reload_needs_restart setting=...`.  No migration runs on a
 * reload: a route that needs a new table is refused until a start or an
 * upgrade applied it.
 *
 * Binary upgrade (SIGUSR2), nginx's model.  The running ("old") process
 * renames its pid file to PID.oldbin, then fork()s and execs its binary
 * again (the path argv[0] named at start: a new binary installed there
 * runs; same argv) with the listening socket left open across exec and
 * named in the environment: WAITUNTIL_LISTEN_FD=N (and
 * WAITUNTIL_LISTEN_EXTERNAL=1 when the socket is systemd's).  The new
 * process applies its migrations, checks its conf, starts its pool and
 * accepts on the inherited socket next to the old one -- both take
 * connections from one backlog, each answering what it accepted -- and
 * writes the pid file.  The operator checks the new process (its
 * `event=started` line, a request), then sends QUIT or TERM to the old
 * one (PID.oldbin): it stops accepting without shutting the socket down
 * (its successor still uses it), answers what it accepted, drains its
 * pool and exits, leaving the socket file in place.  To roll back
 * instead, stop the new process: the old one sees its child exit
 * (SIGCHLD), renames PID.oldbin back, and goes on alone.  During the
 * overlap both processes write to the database: SQLite's locking
 * serialises their transactions (the pool retries SQLITE_BUSY), on
 * PostgreSQL they are two more sessions.  A new process that is itself
 * asked to upgrade while its old process still runs refuses (one
 * upgrade at a time), as an old process with a live new one does.
 *
 * Socket activation: LISTEN_FDS=1 and LISTEN_PID=<our pid> (systemd's
 * protocol) name descriptor 3 as the listening socket.  It is systemd's:
 * never shut down nor unlinked, so connections that queue while the
 * service restarts wait for the next process.
 *
 * The pid file holds the pid and a newline; it is written once the
 * server accepts, and removed at exit only while it still holds our pid
 * (a successor may have written its own).
 */
#define _GNU_SOURCE
#include "app_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- pid file ------------------------------------------------------------ */

char *app_pid_path(const web_conf *conf, const char *prefix,
                   const char *listen_spec)
{
    const char *p = conf->server.pid;
    char *out = NULL;

    if (p != NULL) {
        if (p[0] == '/' || prefix == NULL)
            return strdup(p);
        return asprintf(&out, "%s/%s", prefix, p) < 0 ? NULL : out;
    }
    /* Next to a unix socket: a private socket folder gives a private pid
     * file (the tests run many instances from one prefix). */
    if (listen_spec != NULL && strncmp(listen_spec, "unix:", 5) == 0) {
        const char *path = listen_spec + 5, *slash = strrchr(path, '/');
        int n = slash != NULL ? (int)(slash - path) : 0;
        if (slash == NULL)
            return prefix != NULL && path[0] != '/' &&
                           asprintf(&out, "%s/waituntil.pid", prefix) >= 0
                       ? out
                       : strdup("waituntil.pid");
        if (path[0] != '/' && prefix != NULL)
            return asprintf(&out, "%s/%.*s/waituntil.pid", prefix, n, path) < 0
                       ? NULL
                       : out;
        return asprintf(&out, "%.*s/waituntil.pid", n, path) < 0 ? NULL : out;
    }
    if (prefix == NULL)
        return strdup("var/waituntil.pid");
    return asprintf(&out, "%s/var/waituntil.pid", prefix) < 0 ? NULL : out;
}

int app_pid_write(const char *path, char *eb, size_t el)
{
    char buf[32], tmp[PATH_MAX];
    int fd, n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());

    /* Written aside and renamed: a reader never sees it half written. */
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >=
        (int)sizeof tmp) {
        snprintf(eb, el, "pid file %s: path too long", path);
        return WEB_EINVAL;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, (size_t)n) != n || close(fd) != 0 ||
        rename(tmp, path) != 0) {
        snprintf(eb, el, "pid file %s: %s", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        return WEB_EIO;
    }
    return WEB_OK;
}

long app_pid_read(const char *path, char *eb, size_t el)
{
    char buf[32];
    ssize_t n;
    long pid;
    char *end = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(eb, el, "cannot open pid file %s: %s", path, strerror(errno));
        return -1;
    }
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        snprintf(eb, el, "pid file %s is empty", path);
        return -1;
    }
    buf[n] = '\0';
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\n' && *end != '\0') ||
        pid <= 1) {
        snprintf(eb, el, "pid file %s does not hold a pid", path);
        return -1;
    }
    return pid;
}

void app_pid_remove_if_ours(const char *path)
{
    char eb[256];
    if (path != NULL && app_pid_read(path, eb, sizeof eb) == (long)getpid())
        unlink(path);
}

int app_signal(const char *pid_path, const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"reload", SIGHUP}, {"stop", SIGTERM}, {"quit", SIGQUIT},
                {"reopen", SIGUSR1}, {"upgrade", SIGUSR2}};
    char eb[512];
    long pid;
    size_t i;

    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (strcmp(name, sigs[i].name) == 0)
            break;
    if (i == sizeof sigs / sizeof sigs[0]) {
        fprintf(stderr, "waituntil: invalid option: \"-s %s\" (reload, stop, "
                        "quit, reopen or upgrade)\n",
                name);
        return 1;
    }
    pid = app_pid_read(pid_path, eb, sizeof eb);
    if (pid < 0) {
        fprintf(stderr, "waituntil: %s\n", eb);
        return 1;
    }
    if (kill((pid_t)pid, sigs[i].sig) != 0) {
        fprintf(stderr, "waituntil: kill(%ld, %s) failed: %s\n", pid, name,
                strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- the inherited listening socket --------------------------------------- */

static int env_num(const char *name, long *out)
{
    const char *v = getenv(name);
    char *end = NULL;
    if (v == NULL || *v == '\0')
        return 0;
    errno = 0;
    *out = strtol(v, &end, 10);
    return errno == 0 && *end == '\0' ? 1 : -1;
}

int app_listen_inherited(app_inherited *out, char *eb, size_t el)
{
    long fd = -1, n = 0, pid = 0, ext = 0;
    int r;

    memset(out, 0, sizeof *out);
    out->fd = -1;
    r = env_num("WAITUNTIL_LISTEN_FD", &fd);
    if (r != 0) {
        if (env_num("WAITUNTIL_LISTEN_EXTERNAL", &ext) < 0)
            ext = 0;
        unsetenv("WAITUNTIL_LISTEN_FD");
        unsetenv("WAITUNTIL_LISTEN_EXTERNAL");
        if (r < 0 || fd < 0 || fd > INT_MAX) {
            snprintf(eb, el, "WAITUNTIL_LISTEN_FD is not a descriptor number");
            return -1;
        }
        out->fd = (int)fd;
        out->external = ext == 1;
        out->from_upgrade = 1;
        /* The old process forked us: it is our parent while it runs. */
        out->old_pid = (long)getppid();
        return 1;
    }
    /* systemd: LISTEN_PID guards against a variable inherited by a
     * process it was not meant for. */
    if (env_num("LISTEN_FDS", &n) == 0)
        return 0;
    r = env_num("LISTEN_PID", &pid);
    if (r != 1 || pid != (long)getpid())
        return 0;
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    if (n != 1) {
        snprintf(eb, el, "LISTEN_FDS=%ld: waituntil takes exactly one socket",
                 n);
        return -1;
    }
    out->fd = 3; /* SD_LISTEN_FDS_START */
    out->external = 1;
    return 1;
}

/* ---- binary upgrade ------------------------------------------------------- */

static char **g_argv;     /* a copy of main's argv, NULL-terminated */
static char *g_exe;       /* the path to exec: argv[0] as found at start */

/* The binary to exec is what argv[0] named at start, absolute: a new
 * binary installed at that path is what the upgrade runs (not
 * /proc/self/exe, which is the old file even after it was replaced). */
static char *find_exe(const char *argv0)
{
    char cwd[PATH_MAX], *out = NULL;
    const char *path;

    if (strchr(argv0, '/') != NULL) {
        if (argv0[0] == '/')
            return strdup(argv0);
        if (getcwd(cwd, sizeof cwd) == NULL)
            return NULL;
        return asprintf(&out, "%s/%s", cwd, argv0) < 0 ? NULL : out;
    }
    path = getenv("PATH");
    while (path != NULL && *path != '\0') {
        const char *colon = strchr(path, ':');
        int n = colon ? (int)(colon - path) : (int)strlen(path);
        if (asprintf(&out, "%.*s/%s", n, n ? path : ".", argv0) < 0)
            return NULL;
        if (access(out, X_OK) == 0)
            return out;
        free(out);
        out = NULL;
        path = colon ? colon + 1 : NULL;
    }
    return NULL;
}

int app_upgrade_init(int argc, char **argv)
{
    g_argv = calloc((size_t)argc + 1, sizeof *g_argv);
    if (g_argv == NULL)
        return WEB_ENOMEM;
    for (int i = 0; i < argc; i++)
        if ((g_argv[i] = strdup(argv[i])) == NULL)
            return WEB_ENOMEM;
    g_exe = argc > 0 ? find_exe(argv[0]) : NULL;
    return WEB_OK;
}

void app_upgrade_free(void)
{
    for (size_t i = 0; g_argv != NULL && g_argv[i] != NULL; i++)
        free(g_argv[i]);
    free(g_argv);
    free(g_exe);
    g_argv = NULL;
    g_exe = NULL;
}

static int is_listen_var(const char *e)
{
    static const char *const names[] = {"WAITUNTIL_LISTEN_FD=",
                                        "WAITUNTIL_LISTEN_EXTERNAL=",
                                        "LISTEN_FDS=", "LISTEN_PID=",
                                        "LISTEN_FDNAMES="};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(e, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

long app_upgrade_spawn(int listen_fd, int external, char *eb, size_t el)
{
    size_t n = 0, k = 0;
    char **envp, fdvar[48];
    sigset_t none;
    pid_t pid;

    if (g_argv == NULL || g_exe == NULL) {
        snprintf(eb, el, "the program's path is unknown (argv[0] was not "
                         "found at start)");
        return -1;
    }
    if (listen_fd < 0) {
        snprintf(eb, el, "no listening socket to hand over");
        return -1;
    }
    /* Everything the child needs is made before fork(): after it, the
     * child of a threaded process may only call async-signal-safe
     * functions. */
    while (environ != NULL && environ[n] != NULL)
        n++;
    envp = calloc(n + 3, sizeof *envp);
    if (envp == NULL) {
        snprintf(eb, el, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!is_listen_var(environ[i]))
            envp[k++] = environ[i];
    snprintf(fdvar, sizeof fdvar, "WAITUNTIL_LISTEN_FD=%d", listen_fd);
    envp[k++] = fdvar;
    if (external)
        envp[k++] = "WAITUNTIL_LISTEN_EXTERNAL=1";
    envp[k] = NULL;
    sigemptyset(&none);
    pid = fork();
    if (pid == 0) {
        /* The socket survives exec; the new process starts with no
         * signal blocked (it blocks its own before any thread). */
        if (fcntl(listen_fd, F_SETFD, 0) != 0)
            _exit(126);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(g_exe, g_argv, envp);
        _exit(127);
    }
    free(envp);
    if (pid < 0) {
        snprintf(eb, el, "fork: %s", strerror(errno));
        return -1;
    }
    return (long)pid;
}

const char *app_upgrade_exe(void)
{
    return g_exe != NULL ? g_exe : "?";
}

/* ---- reload --------------------------------------------------------------- */

static int str_differs(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a != b;
    return strcmp(a, b) != 0;
}

/* One line per setting that differs and cannot change in a running
 * process; returns how many. */
static unsigned log_restart_only(const app_reload_ctx *c, const web_conf *n)
{
    const web_conf *o = c->running;
    unsigned count = 0;
    char q1[600], q2[600], r1[512], r2[512];

#define NUM(field, name)                                                     \
    do {                                                                     \
        if ((long long)o->field != (long long)n->field) {                    \
            web_logf(c->log, WEB_LOG_WARN, "reload_needs_restart",           \
                     "setting=%s running=%lld new=%lld", name,               \
                     (long long)o->field, (long long)n->field);              \
            count++;                                                         \
        }                                                                    \
    } while (0)
#define STR(field, name)                                                     \
    do {                                                                     \
        if (str_differs(o->field, n->field)) {                               \
            web_logf(c->log, WEB_LOG_WARN, "reload_needs_restart",           \
                     "setting=%s running=%s new=%s", name,                   \
                     web_log_q(q1, sizeof q1, o->field),                     \
                     web_log_q(q2, sizeof q2, n->field));                    \
            count++;                                                         \
        }                                                                    \
    } while (0)

    if (!c->listen_overridden)
        STR(server.listen, "server.listen");
    NUM(server.socket_mode, "server.socket_mode");
    NUM(server.threads, "server.threads");
    NUM(server.max_body, "server.max_body");
    STR(server.log, "server.log");
    NUM(server.log_level, "server.log_level");
    NUM(server.log_values, "server.log_values");
    STR(server.access_log, "server.access_log");
    STR(server.pid, "server.pid");
    if (!c->db_overridden &&
        str_differs(o->database.path, n->database.path)) {
        /* A URI may hold a password: logged redacted. */
        web_logf(c->log, WEB_LOG_WARN, "reload_needs_restart",
                 "setting=database.path running=%s new=%s",
                 web_log_q(q1, sizeof q1,
                           web_db_path_redact(o->database.path, r1,
                                              sizeof r1)),
                 web_log_q(q2, sizeof q2,
                           web_db_path_redact(n->database.path, r2,
                                              sizeof r2)));
        count++;
    }
    STR(database.journal_mode, "database.journal_mode");
    STR(database.synchronous, "database.synchronous");
    NUM(database.busy_timeout_ms, "database.busy_timeout");
    NUM(database.reconnect_ms, "database.reconnect");
    NUM(database.statement_cache, "database.statement_cache");
    STR(database.migrations, "database.migrations");
    NUM(pool.workers, "pool.workers");
    NUM(pool.queue, "pool.queue");
    NUM(pool.tasks_per_request, "pool.tasks_per_request");
    NUM(pool.batch, "pool.batch");
    NUM(pool.task_timeout_ms, "pool.task_timeout");
    NUM(pool.admission, "pool.admission");
    NUM(pool.admission_wait_ms, "pool.admission_wait");
    NUM(pool.drain_timeout_ms, "pool.drain_timeout");
    NUM(pool.busy_retries, "pool.busy_retries");
    NUM(pool.batch_delay_ms, "pool.batch_delay");
    NUM(pool.batch_delay_max_ms, "pool.batch_delay_max");
#undef NUM
#undef STR
    return count;
}

/* app_check_live's reporter: one line per statement. */
static void reload_line(void *ud, const char *line)
{
    char q[2200];
    web_logf(ud, WEB_LOG_ERROR, "reload_failed", "error=%s",
             web_log_q(q, sizeof q, line));
}

int app_reload(const app_reload_ctx *c)
{
    web_conf *nc = NULL;
    char eb[1024], q[1100];
    size_t nbad = 0;
    uint64_t generation = 0;
    unsigned fixed;
    int rc;

    web_logf(c->log, WEB_LOG_INFO, "reloading", "conf=%s",
             web_log_q(q, sizeof q, c->conf_path));
    rc = web_conf_load(c->conf_path, &nc, eb, sizeof eb);
    if (rc != WEB_OK) {
        web_logf(c->log, WEB_LOG_ERROR, "reload_failed", "error=%s kept=1",
                 web_log_q(q, sizeof q, eb));
        return rc;
    }
    fixed = log_restart_only(c, nc);
    rc = app_check_live(nc, c->db_path, reload_line, c->log, &nbad, eb,
                        sizeof eb);
    if (rc != WEB_OK) {
        char why[1200];
        if (rc == WEB_ECONF)
            snprintf(why, sizeof why,
                     "%zu deferred statement(s) do not fit the schema of the "
                     "database (lines above)",
                     nbad);
        else
            snprintf(why, sizeof why,
                     "cannot check the deferred statements: %s", eb);
        web_logf(c->log, WEB_LOG_ERROR, "reload_failed", "error=%s kept=1",
                 web_log_q(q, sizeof q, why));
        web_conf_free(nc);
        return rc;
    }
    rc = web_server_reload(c->srv, nc, &generation, eb, sizeof eb);
    if (rc != WEB_OK) {
        web_logf(c->log, WEB_LOG_ERROR, "reload_failed", "error=%s kept=1",
                 web_log_q(q, sizeof q, rc == WEB_ENOMEM ? "out of memory"
                                                         : eb));
        return rc;
    }
    web_logf(c->log, WEB_LOG_INFO, "reloaded",
             "generation=%llu routes=%zu needs_restart=%u",
             (unsigned long long)generation, nc->nroutes, fixed);
    return WEB_OK;
}
