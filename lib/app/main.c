/*
 * main.c -- waituntil_main: the waituntil program's wiring and signals,
 * for any table of handlers (app/waituntil.c passes ours; an application
 * passes its own, <waituntil/waituntil.h>).
 *
 *   waituntil [-c FILE] [-p PREFIX] [-l LISTEN] [-d DB] [-t|-T] [-v|-V|-h]
 *   waituntil -s reload|stop|quit|reopen|upgrade [-c FILE] [-p PREFIX]
 *
 * Paths: relative paths in the conf are resolved against the prefix (-p,
 * default "/"), and so is the default conf, SYSCONFDIR/waituntil/
 * waituntil.conf (configure's sysconfdir), so an installed program finds
 * its installed conf with no flags, and `-p DIR` moves a whole installed
 * tree (DESTDIR) at once.  An explicit -c FILE is taken as given (from
 * the current directory when relative).  The installed conf names the
 * socket, database, migrations and log relative to "/" (see
 * Makefile.am, conf/waituntil.conf's install rule); the source tree's
 * conf is relative to the source tree: run it with -p SRCDIR.
 *
 * systemd: READY=1 once listening, STOPPING=1 at TERM/INT, STATUS= and,
 * with WatchdogSec=, WATCHDOG=1 while the pool makes progress (notify.c;
 * no libsystemd).
 *
 * DESIGN: every signal we handle is blocked in main before any thread
 * exists, so every thread inherits the mask and main alone receives them
 * with sigwait(): TERM/INT/QUIT stop the server (no new requests,
 * in-flight ones finish), then the pool drains within the conf deadline;
 * HUP reopens the log and reloads the conf, USR1 reopens the log, USR2
 * starts a binary upgrade and CHLD reaps its process (ops.c).  SIGPIPE is
 * ignored: a write to a vanished peer returns EPIPE.
 * Exit status: 0 after a clean drain, 1 if deferred work was left or the
 * start failed (conf, database, socket).
 *
 * The database is SQLite (a file path) or PostgreSQL (database.path or -d
 * a postgresql:// URI; web_db_engine_of decides).  At start a SQLite
 * file's missing folder is created (one level, web_db_dir_prepare), the
 * engine's migrations are applied (SQLite: the migrations folder,
 * PostgreSQL: its postgresql/ subfolder), then the pool opens its
 * connections; the logs show a URI with its password masked.  A build
 * without libpq (qb_engine_available) refuses a URI at start and in -t.
 */
#define _GNU_SOURCE
#include "app_int.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "notify.h"

#include <sqlite3.h>

/* The usage text, under the program's own name (an application built on
 * libwaituntil is not called waituntil). */
static void usage(FILE *f, const char *argv0)
{
    const char *slash = argv0 != NULL ? strrchr(argv0, '/') : NULL;
    const char *prog = slash != NULL ? slash + 1 : argv0;

    if (prog == NULL || prog[0] == '\0')
        prog = "waituntil";
    fprintf(f,
            "usage: %s [-c FILE] [-p PREFIX] [-l LISTEN] [-d DB] [-t|-T]\n"
            "       %s -s SIGNAL [-c FILE] [-p PREFIX] [-l LISTEN]\n"
            "       %s -v | -V | --version | -h | --help\n",
            prog, prog, prog);
    fprintf(f,
            "  -c FILE    configuration (default PREFIX%s)\n"
            "  -p PREFIX  folder relative paths in the conf are resolved\n"
            "             against, and the default conf (default %s)\n"
            "  -l LISTEN  override server.listen (unix:PATH, HOST:PORT, stdin)\n"
            "  -d DB      override database.path (a file, or a\n"
            "             postgresql:// URI for PostgreSQL)\n"
            "  -t         check the conf and the database schema, then exit\n"
            "  -T         like -t, and print the conf with its resolved paths\n"
            "             (every file read, includes too) to stdout\n"
            "  -v         print the version and exit\n"
            "  -V, --version  the version, configure's arguments and the\n"
            "             library versions\n"
            "  -s SIGNAL  signal the running process named by the pid file:\n"
            "             reload, stop, quit, reopen or upgrade\n"
            "  -h, --help this text\n"
            "Signals: TERM/INT/QUIT drain and exit; HUP reloads the conf and\n"
            "reopens the log; USR1 reopens the log; USR2 upgrades the binary.\n",
            WU_DEFAULT_CONF, WU_DEFAULT_PREFIX);
}

/* PREFIX/path for relative paths; returns a malloc'd string.  The prefix
 * has no trailing '/' ("" is the root). */
char *app_resolve(const char *prefix, const char *path)
{
    char *out;
    if (path == NULL)
        return NULL;
    if (path[0] == '/' || prefix == NULL || strcmp(path, ":memory:") == 0)
        return strdup(path);
    if (asprintf(&out, "%s/%s", prefix, path) < 0)
        return NULL;
    return out;
}

/* The journal's files (issue 15): journal_path from the conf, else next
 * to a SQLite database (DB.journal), else var/waituntil.journal.  NULL
 * when the journal is off or the database is in memory. */
static char *journal_path(const web_conf *conf, const char *prefix,
                          web_db_engine engine, const char *db_path,
                          const char *listen_spec)
{
    char *out = NULL;
    if (conf->pool.journal == 0)
        return NULL;
    if (conf->pool.journal_path != NULL)
        return app_resolve(prefix, conf->pool.journal_path);
    if (engine == WEB_DB_SQLITE) {
        if (strcmp(db_path, ":memory:") == 0)
            return NULL;
        if (asprintf(&out, "%s.journal", db_path) < 0)
            return NULL;
        return out;
    }
    /* PostgreSQL: next to a unix socket, like the pid file (instances
     * sharing a folder get journal.1, .2...: the pool locks each). */
    if (listen_spec != NULL && strncmp(listen_spec, "unix:", 5) == 0 &&
        strrchr(listen_spec + 5, '/') != NULL) {
        const char *path = listen_spec + 5;
        int n = (int)(strrchr(path, '/') - path);
        if (path[0] != '/' && prefix != NULL)
            return asprintf(&out, "%s/%.*s/waituntil.journal", prefix, n,
                            path) < 0 ? NULL : out;
        return asprintf(&out, "%.*s/waituntil.journal", n, path) < 0 ? NULL
                                                                     : out;
    }
    return app_resolve(prefix, "var/waituntil.journal");
}

/* What -t says about the journal: what is in it, and whether it can be
 * written.  0 ok, -1 not. */
static int journal_check(const char *jpath)
{
    defer_journal_info ji;
    char eb[512] = "";
    if (jpath == NULL) {
        fprintf(stderr, "waituntil: journal off\n");
        return 0;
    }
    if (defer_journal_inspect(jpath, &ji, eb, sizeof eb) != DEFER_OK) {
        fprintf(stderr, "waituntil: journal %s: %s\n", jpath, eb);
        return -1;
    }
    fprintf(stderr,
            "waituntil: journal %s: %llu file(s), %llu bytes, %llu "
            "record(s) (seq %llu..%llu; those not yet applied are replayed "
            "at start)%s%s\n",
            jpath, (unsigned long long)ji.files, (unsigned long long)ji.bytes,
            (unsigned long long)ji.records,
            (unsigned long long)ji.first_seq, (unsigned long long)ji.last_seq,
            ji.torn_bytes ? ", with a torn tail (dropped at start)" : "",
            ji.corrupt_bytes ? ", with damaged bytes (set aside in the "
                               ".corrupt file at start)" : "");
    return 0;
}

/* The prefix without trailing slashes, so that "/" gives "" and
 * resolve() then yields "/var/..." rather than "//var/...". */
static char *prefix_norm(const char *p)
{
    char *out = strdup(p);
    size_t n;
    if (out == NULL)
        return NULL;
    n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
    return out;
}

/* The listen spec actually used: -l, else the conf's, with a relative
 * unix:path resolved against the prefix (*owned: what to free). */
static const char *listen_spec(const char *prefix, const char *opt,
                               const web_conf *conf, char **owned)
{
    const char *spec = opt ? opt : conf->server.listen;
    *owned = NULL;
    if (spec != NULL && strncmp(spec, "unix:", 5) == 0 && spec[5] != '/') {
        char *p = app_resolve(prefix, spec + 5);
        if (p != NULL && asprintf(owned, "unix:%s", p) < 0)
            *owned = NULL;
        free(p);
        return *owned;
    }
    return spec;
}

static int sql_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 4 && strcmp(d->d_name + n - 4, ".sql") == 0;
}

void app_migrations_free(qb_migration *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)list[i].name);
        free((char *)list[i].sql);
    }
    free(list);
}

int app_migrations_load(const char *dir, qb_migration **out, size_t *n,
                        char *eb, size_t el)
{
    struct dirent **ents = NULL;
    qb_migration *list;
    int count, rc = WEB_OK;

    *out = NULL;
    *n = 0;
    count = scandir(dir, &ents, sql_file, alphasort);
    if (count < 0) {
        snprintf(eb, el, "migrations %s: %s", dir, strerror(errno));
        return WEB_EIO;
    }
    list = calloc(count ? (size_t)count : 1, sizeof *list);
    for (int i = 0; i < count; i++) {
        char path[PATH_MAX];
        FILE *f;
        char *buf = NULL;
        size_t len = 0;
        if (list == NULL || rc != WEB_OK) {
            free(ents[i]);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        f = fopen(path, "r");
        if (f != NULL) {
            FILE *mem = open_memstream(&buf, &len);
            char chunk[4096];
            size_t r;
            while (mem != NULL && (r = fread(chunk, 1, sizeof chunk, f)) > 0)
                fwrite(chunk, 1, r, mem);
            if (mem != NULL)
                fclose(mem);
            fclose(f);
        }
        if (buf == NULL) {
            snprintf(eb, el, "migration %s: %s", path,
                     f == NULL ? strerror(errno) : "cannot read");
            rc = WEB_EIO;
        } else {
            list[*n].name = strdup(ents[i]->d_name);
            list[*n].sql = buf;
            (*n)++;
        }
        free(ents[i]);
    }
    free(ents);
    if (list == NULL) {
        snprintf(eb, el, "out of memory");
        return WEB_ENOMEM;
    }
    if (rc != WEB_OK) {
        app_migrations_free(list, *n);
        *n = 0;
        return rc;
    }
    *out = list;
    return WEB_OK;
}

char *app_migrations_dir(const char *mig_dir, web_db_engine engine)
{
    char *out = NULL;
    if (mig_dir == NULL)
        return NULL;
    if (engine != WEB_DB_POSTGRESQL)
        return strdup(mig_dir);
    if (asprintf(&out, "%s/postgresql", mig_dir) < 0)
        return NULL;
    return out;
}

void app_db_config(const web_conf *conf, web_db_engine engine,
                      qb_conn_config *db)
{
    memset(db, 0, sizeof *db);
    db->journal_mode = conf->database.journal_mode;
    db->synchronous = conf->database.synchronous;
    db->busy_timeout_ms = (int)conf->database.busy_timeout_ms;
    if (engine == WEB_DB_POSTGRESQL) {
        db->engine = QB_ENGINE_POSTGRES;
        db->application_name = "waituntil";
        db->stmt_cache_size = conf->database.statement_cache;
    } else {
        db->engine = QB_ENGINE_SQLITE;
    }
}

/* app_check_defers' reporter at start: one error line per statement. */
static void log_line(void *ud, const char *line)
{
    char q[2200];
    web_logf(ud, WEB_LOG_ERROR, "defer_invalid", "error=%s",
             web_log_q(q, sizeof q, line));
}

/* After the migrations, before anything listens: every deferred
 * statement must compile against the live schema (the check -t makes),
 * or the server would answer 2xx and fail each write in the background.
 * WEB_OK or WEB_ECONF (each failure logged, then start_failed). */
static int check_live(const web_conf *conf, qb_conn *db, web_log *log)
{
    size_t nbad = 0;
    int rc = app_check_defers(conf, qb_conn_dialect(db), db,
                              "schema of the database",
                              log_line, log, &nbad);
    if (rc == WEB_OK)
        return WEB_OK;
    web_logf(log, WEB_LOG_ERROR, "start_failed",
             "error=\"%zu deferred statement(s) do not fit the schema of the "
             "database (defer_invalid above)\"",
             nbad);
    return WEB_ECONF;
}

/* Drop a trailing newline (libpq's) and anything after a first line. */
static void one_line(char *s)
{
    s[strcspn(s, "\n")] = '\0';
}

/* Make a SQLite database's folder if it is missing (one level), open the
 * database, apply the migrations in name order and check the deferred
 * statements against the result.  On PostgreSQL the migrations table is
 * locked while a migration runs, so instances starting together queue
 * and each migration runs once; the statements are checked on that
 * session (EXPLAIN: nothing runs). */
int app_migrate(const web_conf *conf, web_db_engine engine,
                   const char *db_path, const char *mig_dir, web_log *log)
{
    int pg = engine == WEB_DB_POSTGRESQL;
    qb_migration *list = NULL;
    size_t n = 0, applied = 0, failed_at = 0;
    qb_conn *db = NULL;
    qb_conn_config cfg;
    web_db_dir_state dst = WEB_DB_DIR_READY;
    char eb[1024], q[1100], q2[600], dir[PATH_MAX], red[512];
    int rc;

    if (pg && !qb_engine_available(QB_ENGINE_POSTGRES)) {
        web_logf(log, WEB_LOG_ERROR, "db_unsupported",
                 "engine=postgresql error=\"%s\"", APP_NO_PG);
        return WEB_EINVAL;
    }
    if (pg) {
        web_log_q(q2, sizeof q2, web_db_path_redact(db_path, red, sizeof red));
    } else {
        /* sqlite3 makes the file, not its folder (var/ in a fresh
         * prefix): make that one level here, or say precisely why not;
         * `-t` asks web_db_dir_prepare the same question. */
        rc = web_db_dir_prepare(db_path, WEB_DB_DIR_CREATE, &dst, dir,
                                sizeof dir, eb, sizeof eb);
        if (rc != WEB_OK) {
            web_logf(log, WEB_LOG_ERROR, "db_dir_failed", "error=%s",
                     web_log_q(q, sizeof q,
                               rc == WEB_ENOMEM ? "out of memory" : eb));
            return rc;
        }
        if (dst == WEB_DB_DIR_MADE)
            web_logf(log, WEB_LOG_INFO, "db_dir_created", "path=%s mode=%04o",
                     web_log_q(q, sizeof q, dir), (unsigned)WEB_DB_DIR_MODE);
        web_log_q(q2, sizeof q2, db_path);
    }
    if (app_migrations_load(mig_dir, &list, &n, eb, sizeof eb) != WEB_OK) {
        web_logf(log, WEB_LOG_ERROR, "migrations_failed", "error=%s",
                 web_log_q(q, sizeof q, eb));
        return WEB_EIO;
    }
    app_db_config(conf, engine, &cfg);
    if (qb_open(&db, db_path, &cfg, eb, sizeof eb) != QB_OK) {
        one_line(eb);
        web_logf(log, WEB_LOG_ERROR, "db_open_failed", "%s=%s error=%s",
                 pg ? "engine=postgresql db" : "path", q2,
                 web_log_q(q, sizeof q, eb));
        rc = WEB_EIO;
    } else if (qb_migrations_apply(db, NULL, list, n, &applied,
                                   &failed_at) != QB_OK) {
        snprintf(eb, sizeof eb, "%s", qb_errmsg(db));
        one_line(eb);
        if (pg)
            web_logf(log, WEB_LOG_ERROR, "migrations_failed",
                     "engine=postgresql db=%s error=%s", q2,
                     web_log_q(q, sizeof q, eb));
        else
            web_logf(log, WEB_LOG_ERROR, "migrations_failed", "error=%s",
                     web_log_q(q, sizeof q, eb));
        rc = WEB_EIO;
    } else {
        web_logf(log, WEB_LOG_INFO, "migrations",
                 "%sdir=%s found=%zu applied=%zu",
                 pg ? "engine=postgresql " : "", mig_dir, n, applied);
        rc = check_live(conf, db, log);
    }
    qb_close(db);
    app_migrations_free(list, n);
    return rc;
}

void app_pool_config(const web_conf *conf, web_db_engine engine,
                     const char *db_path, web_log *log, defer_config *pc)
{
    defer_config_init(pc);
    pc->name = "waituntil";
    pc->workers = conf->pool.workers;
    pc->queue_capacity = conf->pool.queue;
    pc->max_tasks_per_request = (unsigned)conf->pool.tasks_per_request;
    pc->batch_max = (unsigned)conf->pool.batch;
    pc->task_budget_ms = (unsigned)conf->pool.task_timeout_ms;
    pc->policy = conf->pool.admission == WEB_ADMIT_REJECT ? DEFER_POLICY_REJECT
                 : conf->pool.admission == WEB_ADMIT_INLINE
                     ? DEFER_POLICY_INLINE
                     : DEFER_POLICY_WAIT;
    pc->admit_wait_ms = (unsigned)conf->pool.admission_wait_ms;
    pc->drain_ms = (unsigned)conf->pool.drain_timeout_ms;
    pc->busy_retries = conf->pool.busy_retries;
    pc->batch_delay_us = (unsigned)conf->pool.batch_delay_ms * 1000u;
    pc->batch_delay_max_us = (unsigned)conf->pool.batch_delay_max_ms * 1000u;
    if (engine == WEB_DB_POSTGRESQL)
        pc->pg_conninfo = db_path; /* the pool copies it */
    else
        pc->db_path = db_path;
    pc->reconnect_ms = (unsigned)conf->database.reconnect_ms;
    app_db_config(conf, engine, &pc->db);
    pc->log = web_log_defer_sink;
    pc->log_ud = log;
    pc->log_values = conf->server.log_values == WEB_LOG_VALUES_REDACT
                         ? DEFER_VALUES_REDACT
                     : conf->server.log_values == WEB_LOG_VALUES_OFF
                         ? DEFER_VALUES_OFF
                         : DEFER_VALUES_ON;
    pc->log_level = conf->server.log_level <= WEB_LOG_DEBUG  ? DEFER_LOG_DEBUG
                    : conf->server.log_level <= WEB_LOG_INFO ? DEFER_LOG_INFO
                    : conf->server.log_level <= WEB_LOG_WARN ? DEFER_LOG_WARN
                                                             : DEFER_LOG_ERROR;
}

/* ---- binary upgrade (ops.c has the design) ------------------------------ */

/* Our upgrade child has not exited (a zombie not yet reaped has). */
static int child_running(long pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           si.si_pid == 0;
}

/* SIGCHLD: reap every exited child; when it is the upgrade's new
 * process, the upgrade is over and we are alone again: our pid file gets
 * its name back (nginx does the same).  Returns the upgrade pid left. */
static long reap_children(long upgrade_pid, const char *pid_path,
                          const char *oldbin, web_log *log)
{
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if ((long)pid != upgrade_pid)
            continue;
        web_logf(log, WEB_LOG_WARN, "upgrade_child_exited",
                 "pid=%ld status=%d signal=%d", (long)pid,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        if (pid_path != NULL && oldbin != NULL &&
            rename(oldbin, pid_path) != 0)
            web_logf(log, WEB_LOG_ERROR, "pid_file_failed",
                     "error=\"rename %s back: %s\"", oldbin, strerror(errno));
        upgrade_pid = 0;
    }
    return upgrade_pid;
}

/* SIGUSR2: start the new binary on our socket.  Returns the upgrade pid
 * (the one running, or the new one, or 0). */
static long upgrade(long upgrade_pid, const app_inherited *inh,
                    web_server *srv, const char *pid_path, const char *oldbin,
                    web_log *log)
{
    char eb[512], q[600];
    long pid;

    if (upgrade_pid > 0) {
        web_logf(log, WEB_LOG_WARN, "upgrade_refused",
                 "reason=\"an upgrade is running\" new_pid=%ld",
                 upgrade_pid);
        return upgrade_pid;
    }
    if (inh->from_upgrade && getppid() == inh->old_pid) {
        web_logf(log, WEB_LOG_WARN, "upgrade_refused",
                 "reason=\"the old process still runs: stop it first\" "
                 "old_pid=%ld",
                 inh->old_pid);
        return 0;
    }
    /* The new process writes pid_path; ours moves aside so that -s and
     * the operator find both. */
    if (pid_path != NULL && oldbin != NULL && rename(pid_path, oldbin) != 0)
        web_logf(log, WEB_LOG_WARN, "pid_file_failed",
                 "error=\"rename to %s: %s\"", oldbin, strerror(errno));
    pid = app_upgrade_spawn(web_server_listen_fd(srv), inh->external, eb,
                            sizeof eb);
    if (pid < 0) {
        web_logf(log, WEB_LOG_ERROR, "upgrade_failed", "error=%s",
                 web_log_q(q, sizeof q, eb));
        if (pid_path != NULL && oldbin != NULL)
            rename(oldbin, pid_path);
        return 0;
    }
    web_logf(log, WEB_LOG_INFO, "upgrade_started", "new_pid=%ld exe=%s",
             pid, web_log_q(q, sizeof q, app_upgrade_exe()));
    return pid;
}

/* sqlite3_version: the library the program runs with, not the header it
 * was built with. */
static const web_status_info status_info = {PACKAGE_VERSION, sqlite3_version};
static const web_handler_def builtin_handlers[] = {
    {"status", web_handler_status, (void *)&status_info},
};

int app_handlers_merge(const web_handler_def *handlers, size_t n,
                       web_handler_def **out, size_t *nout)
{
    size_t nb = sizeof builtin_handlers / sizeof builtin_handlers[0];
    web_handler_def *all;
    *out = NULL;
    *nout = 0;
    if (n > 0 && handlers == NULL)
        return WEB_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (handlers[i].name == NULL || handlers[i].fn == NULL)
            return WEB_EINVAL;
    all = calloc(n + nb, sizeof *all);
    if (all == NULL)
        return WEB_ENOMEM;
    /* The application's first: a name found first wins (find_handler). */
    if (n > 0)
        memcpy(all, handlers, n * sizeof *all);
    memcpy(all + n, builtin_handlers, sizeof builtin_handlers);
    *out = all;
    *nout = n + nb;
    return WEB_OK;
}

WAITUNTIL_API int waituntil_main(int argc, char **argv,
                                 const web_handler_def *app_handlers,
                                 size_t app_nhandlers)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *conf_path = NULL, *prefix_opt = WU_DEFAULT_PREFIX;
    const char *listen = NULL, *db_opt = NULL, *signal_name = NULL;
    char *prefix = NULL, *conf_default = NULL;
    int test_only = 0, dump = 0, opt, exit_code = 1, rc;
    app_notify *notify = NULL;
    unsigned stuck = 0;
    char eb[1024], qe[1100];
    web_conf *conf = NULL;
    web_log *log = NULL;
    defer_pool *pool = NULL;
    web_server *srv = NULL;
    web_db_engine engine;
    const char *db_spec;
    char *db_path = NULL, *mig_dir = NULL, *log_path = NULL, *eng_dir = NULL;
    char *access_path = NULL;
    web_access_log *access = NULL;
    char *jpath = NULL, *jid = NULL;
    char red[512], qdb[600];
    char *listen_resolved = NULL, *pid_path = NULL, *oldbin = NULL;
    char fdspec[32];
    long upgrade_pid = 0;
    app_inherited inh;
    sigset_t set;
    defer_config pc;
    web_handler_def *handlers = NULL;
    size_t nhandlers = 0;

    rc = app_handlers_merge(app_handlers, app_nhandlers, &handlers,
                            &nhandlers);
    if (rc != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n",
                rc == WEB_ENOMEM ? "out of memory"
                                 : "a handler without a name or function");
        return 1;
    }
    /* Before getopt: the upgrade execs the very same argv. */
    if (app_upgrade_init(argc, argv) != WEB_OK) {
        fprintf(stderr, "waituntil: out of memory\n");
        free(handlers);
        return 1;
    }
    while ((opt = getopt_long(argc, argv, "c:p:l:d:s:tTvVh", longopts,
                              NULL)) != -1) {
        switch (opt) {
        case 'c': conf_path = optarg; break;
        case 'p': prefix_opt = optarg; break;
        case 'l': listen = optarg; break;
        case 'd': db_opt = optarg; break;
        case 's': signal_name = optarg; break;
        case 't': test_only = 1; break;
        case 'T': test_only = dump = 1; break;
        /* -v keeps its one line (scripts read it); -V says everything. */
        case 'v':
            printf("waituntil %s\n", PACKAGE_VERSION);
            exit_code = 0;
            goto out;
        case 'V': app_version_print(stdout); exit_code = 0; goto out;
        case 'h': usage(stdout, argv[0]); exit_code = 0; goto out;
        default: usage(stderr, argv[0]); goto out;
        }
    }
    if (optind != argc) {
        usage(stderr, argv[0]);
        goto out;
    }
    /* The default conf moves with the prefix: -p DESTDIR runs a tree
     * installed there with its own conf. */
    prefix = prefix_norm(prefix_opt);
    if (prefix == NULL || (conf_path == NULL &&
                           asprintf(&conf_default, "%s%s", prefix,
                                    WU_DEFAULT_CONF) < 0)) {
        fprintf(stderr, "waituntil: out of memory\n");
        free(prefix);
        free(handlers);
        app_upgrade_free();
        return 1;
    }
    if (conf_path == NULL)
        conf_path = conf_default;

    rc = web_conf_load(conf_path, &conf, eb, sizeof eb);
    if (rc != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n", eb);
        if (test_only)
            fprintf(stderr, "waituntil: configuration file %s test failed\n",
                    conf_path);
        goto out;
    }
    if (signal_name != NULL) {
        /* -s: the conf (and -p, -l) only say where the pid file is. */
        pid_path = app_pid_path(conf, prefix,
                                listen_spec(prefix, listen, conf,
                                            &listen_resolved));
        exit_code = pid_path != NULL ? app_signal(pid_path, signal_name) : 1;
        goto out;
    }
    /* The engine follows the path actually used: -d may switch it.  A
     * PostgreSQL URI is never resolved against the prefix. */
    db_spec = db_opt ? db_opt : conf->database.path;
    if (web_db_path_check(db_spec, eb, sizeof eb) != WEB_OK) {
        fprintf(stderr, "waituntil: -d: invalid database path: %s\n", eb);
        if (test_only)
            fprintf(stderr, "waituntil: configuration file %s test failed\n",
                    conf_path);
        goto out;
    }
    engine = web_db_engine_of(db_spec);
    rc = web_db_path_resolve(prefix, db_spec, &db_path);
    mig_dir = app_resolve(prefix, conf->database.migrations);
    if (rc != WEB_OK || mig_dir == NULL) {
        fprintf(stderr, "waituntil: out of memory\n");
        goto out;
    }
    if (conf->server.log != NULL && strcmp(conf->server.log, "stderr") != 0)
        log_path = app_resolve(prefix, conf->server.log);
    if (conf->server.access_log != NULL &&
        strcmp(conf->server.access_log, "stderr") != 0)
        access_path = app_resolve(prefix, conf->server.access_log);
    {
        const char *spec = listen ? listen : conf->server.listen;
        /* unix:relative/path is resolved against the prefix too. */
        if (spec != NULL && strncmp(spec, "unix:", 5) == 0 && spec[5] != '/') {
            char *p = app_resolve(prefix, spec + 5);
            if (p == NULL || asprintf(&listen_resolved, "unix:%s", p) < 0)
                listen_resolved = NULL;
            free(p);
            if (listen_resolved == NULL) {
                fprintf(stderr, "waituntil: out of memory\n");
                goto out;
            }
        }
    }
    if (test_only) {
        exit_code = app_check(conf, conf_path, db_path, mig_dir, handlers,
                              nhandlers) == 0
                        ? 0
                        : 1;
        {
            char *jp = journal_path(conf, prefix, engine, db_path,
                                    listen_resolved ? listen_resolved
                                    : listen        ? listen
                                                    : conf->server.listen);
            if (journal_check(jp) != 0)
                exit_code = 1;
            free(jp);
        }
        if (dump) {
            app_paths ap = {
                .prefix = prefix, .conf = conf_path,
                .listen = listen_resolved ? listen_resolved
                          : listen        ? listen
                                          : conf->server.listen,
                .db = db_path, .migrations = mig_dir, .log = log_path,
                .access_log = access_path != NULL ? access_path
                                                  : conf->server.access_log,
            };
            if (app_conf_dump(stdout, conf, &ap) != 0)
                exit_code = 1;
        }
        goto out;
    }

    if (web_log_open(&log, log_path ? log_path : "stderr",
                     conf->server.log_level, eb, sizeof eb) != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n", eb);
        goto out;
    }

    if (conf->server.access_log != NULL &&
        web_access_log_open(&access,
                            access_path ? access_path : "stderr", log, eb,
                            sizeof eb) != WEB_OK) {
        web_logf(log, WEB_LOG_ERROR, "start_failed", "error=%s",
                 web_log_q(qe, sizeof qe, eb));
        goto out;
    }

    if (app_notify_open(&notify, eb, sizeof eb) != WEB_OK) {
        if (notify == NULL) {
            web_logf(log, WEB_LOG_ERROR, "start_failed",
                     "error=\"out of memory\"");
            goto out;
        }
        web_logf(log, WEB_LOG_WARN, "notify_disabled", "error=%s",
                 web_log_q(qe, sizeof qe, eb));
    }

    /* Before any thread exists: the mask is inherited by all of them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    /* FCGX_Init installs a SIGUSR1 handler that makes FCGX_Accept_r stop
     * accepting for good; nginx habits (logrotate) send USR1 to reopen
     * logs.  Blocked here, USR1 reaches only our sigwait and reopens the
     * log like HUP; USR2's default action would kill without a drain. */
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    /* Blocked, SIGCHLD stays pending for sigwait (an upgrade's child). */
    sigaddset(&set, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "waituntil: cannot block signals\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    /* libfcgi waits up to 2 s in FCGX_Finish_r for the peer to close;
     * nginx closes in ~0.1 ms, so bound a misbehaving peer at 200 ms. */
    setenv("LIBFCGI_OS_CLOSE_POLL_TIMEOUT", "200", 0);

    web_log_q(qdb, sizeof qdb, web_db_path_redact(db_path, red, sizeof red));
    eng_dir = app_migrations_dir(mig_dir, engine);
    if (eng_dir == NULL) {
        web_logf(log, WEB_LOG_ERROR, "start_failed", "error=\"out of memory\"");
        goto out;
    }
    rc = app_listen_inherited(&inh, eb, sizeof eb);
    if (rc < 0) {
        web_logf(log, WEB_LOG_ERROR, "start_failed", "error=%s",
                 web_log_q(qe, sizeof qe, eb));
        goto out;
    }
    if (app_migrate(conf, engine, db_path, eng_dir, log) != WEB_OK)
        goto out;
    app_pool_config(conf, engine, db_path, log, &pc);
    jpath = journal_path(conf, prefix, engine, db_path,
                         listen_resolved ? listen_resolved
                         : listen        ? listen
                                         : conf->server.listen);
    if (jpath != NULL && engine != WEB_DB_SQLITE) {
        /* Its folder, as the start creates a SQLite database's (var/). */
        char *slash = strrchr(jpath, '/');
        if (slash != NULL && slash != jpath) {
            *slash = '\0';
            (void)mkdir(jpath, 0750);
            *slash = '/';
        }
    }
    if (jpath != NULL) {
        char host[256] = "";
        /* A journal's id is the random one in its .id file (the pool
         * creates it once).  This one only names a journal written
         * before id files, as that version did: several instances on
         * one PostgreSQL, each its own (host and path); a SQLite
         * database is local: the path alone. */
        if (engine == WEB_DB_POSTGRESQL)
            (void)gethostname(host, sizeof host - 1);
        if (asprintf(&jid, "%s%s%s", host, host[0] ? ":" : "", jpath) < 0)
            jid = NULL;
        pc.journal = conf->pool.journal == 2   ? DEFER_JOURNAL_FSYNC
                     : conf->pool.journal == 3 ? DEFER_JOURNAL_FSYNC_INTERVAL
                                               : DEFER_JOURNAL_WRITE;
        pc.journal_sync_interval_ms = (unsigned)conf->pool.journal_sync_ms;
        pc.journal_path = jpath;
        pc.journal_id = jid;
    }
    rc = defer_pool_create(&pool, &pc, eb, sizeof eb);
    if (rc != DEFER_OK) {
        web_logf(log, WEB_LOG_ERROR, "pool_failed", "engine=%s db=%s error=%s",
                 web_db_engine_name(engine), qdb,
                 web_log_q(qe, sizeof qe, eb));
        goto out;
    }
    {
        const char *spec = listen_resolved ? listen_resolved
                           : listen        ? listen
                                           : conf->server.listen;
        pid_path = app_pid_path(conf, prefix, spec);
        if (inh.fd >= 0) {
            /* A predecessor's or systemd's socket: its address wins over
             * the conf's (changing it needs a full restart). */
            snprintf(fdspec, sizeof fdspec, "fd:%d", inh.fd);
            spec = fdspec;
        }
        web_server_config sc = {
            .conf = conf,
            .pool = pool,
            .handlers = handlers,
            .nhandlers = nhandlers,
            .log = log,
            .listen = spec,
            .access_log = access,
            .db_path = db_path,
            .db_cfg = &pc.db,
        };
        rc = web_server_create(&srv, &sc, eb, sizeof eb);
    }
    if (rc != WEB_OK) {
        web_logf(log, WEB_LOG_ERROR, "listen_failed", "error=%s",
                 web_log_q(qe, sizeof qe, eb));
        goto out;
    }
    rc = web_server_start(srv);
    if (rc != WEB_OK) {
        web_logf(log, WEB_LOG_ERROR, "start_failed", "error=%s",
                 web_strerror(rc));
        goto out;
    }
    if (pid_path == NULL ||
        app_pid_write(pid_path, eb, sizeof eb) != WEB_OK) {
        /* The server runs without it; only -s needs it. */
        web_logf(log, WEB_LOG_WARN, "pid_file_failed", "error=%s",
                 web_log_q(qe, sizeof qe,
                           pid_path == NULL ? "out of memory" : eb));
        free(pid_path);
        pid_path = NULL;
    }
    if (pid_path != NULL && asprintf(&oldbin, "%s.oldbin", pid_path) < 0)
        oldbin = NULL;
    web_logf(log, WEB_LOG_INFO, "started",
             "version=%s pid=%ld listen=%s inherited=%s engine=%s db=%s "
             "threads=%u workers=%u queue=%zu",
             PACKAGE_VERSION, (long)getpid(), web_server_listen_name(srv),
             inh.fd < 0           ? "no"
             : inh.from_upgrade   ? "upgrade"
                                  : "systemd",
             web_db_engine_name(engine), qdb, conf->server.threads,
             conf->pool.workers, conf->pool.queue);
    {
        char msg[600];
        snprintf(msg, sizeof msg,
                 "READY=1\nSTATUS=listening on %s, %u request threads, "
                 "%u workers\nMAINPID=%ld",
                 web_server_listen_name(srv), conf->server.threads,
                 conf->pool.workers, (long)getpid());
        app_notify_send(notify, msg);
        if (app_notify_start(notify, pool, srv) != WEB_OK)
            web_logf(log, WEB_LOG_WARN, "notify_ticker_failed",
                     "error=\"pthread_create\" watchdog_usec=%llu",
                     (unsigned long long)app_notify_watchdog_usec(notify));
        else if (app_notify_enabled(notify))
            web_logf(log, WEB_LOG_INFO, "notify", "ready=1 watchdog_usec=%llu",
                     (unsigned long long)app_notify_watchdog_usec(notify));
    }

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGCHLD) {
            upgrade_pid = reap_children(upgrade_pid, pid_path, oldbin, log);
            continue;
        }
        if (sig == SIGUSR2) {
            upgrade_pid = upgrade(upgrade_pid, &inh, srv, pid_path, oldbin,
                                  log);
            continue;
        }
        if (sig == SIGHUP || sig == SIGUSR1) {
            web_logf(log, WEB_LOG_INFO, "reopen_log", "ok=%d",
                     web_log_reopen(log) == WEB_OK);
            if (access != NULL)
                web_logf(log, WEB_LOG_INFO, "reopen_access_log", "ok=%d",
                         web_access_log_reopen(access) == WEB_OK);
            if (sig == SIGHUP) {
                app_reload_ctx rc_ctx = {
                    .conf_path = conf_path,
                    .running = conf,
                    .db_path = db_path,
                    .listen_overridden = listen != NULL || inh.fd >= 0,
                    .db_overridden = db_opt != NULL,
                    .srv = srv,
                    .log = log,
                };
                char msg[160];
                struct timespec now;
                /* systemd's reload protocol (Type=notify-reload and
                 * ExecReload= both accept it): RELOADING=1 with the
                 * monotonic time, then READY=1 once the new conf (or,
                 * after a refused one, the old) is what answers. */
                clock_gettime(CLOCK_MONOTONIC, &now);
                snprintf(msg, sizeof msg,
                         "RELOADING=1\nMONOTONIC_USEC=%llu\n"
                         "STATUS=reloading the configuration",
                         (unsigned long long)now.tv_sec * 1000000ull +
                             (unsigned long long)now.tv_nsec / 1000ull);
                app_notify_send(notify, msg);
                rc = app_reload(&rc_ctx);
                snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s",
                         rc == WEB_OK ? "reloaded; listening"
                                      : "reload refused (see the log); "
                                        "running the previous conf");
                app_notify_send(notify, msg);
            }
            continue;
        }
        {
            /* The socket is shared when a successor accepts on it (our
             * upgrade child, or we are the child and our old process
             * still runs) or systemd keeps it: then it must not be shut
             * down, and the connections queued on it are theirs. */
            int shared = inh.external ||
                         (upgrade_pid > 0 && child_running(upgrade_pid)) ||
                         (inh.from_upgrade && getppid() == inh.old_pid);
            web_server_set_shared(srv, shared);
            web_logf(log, WEB_LOG_INFO, "stopping", "signal=%d shared=%d",
                     sig, shared);
        }
        {
            defer_stats ds;
            char msg[300];
            defer_pool_stats(pool, &ds);
            snprintf(msg, sizeof msg,
                     "STOPPING=1\nSTATUS=stopping: draining %llu waiting "
                     "writes (deadline %lld ms)",
                     (unsigned long long)(ds.queued + ds.in_flight),
                     (long long)conf->pool.drain_timeout_ms);
            app_notify_send(notify, msg);
        }
        break;
    }

    {
        web_server_stats ss;
        defer_stats ds;
        unsigned drain = (unsigned)conf->pool.drain_timeout_ms, spent;
        struct timespec t0, t1;

        /* One deadline for both: in-flight requests finish (they are
         * short: their writes are deferred), then the pool drains in what
         * is left.  The workers keep draining meanwhile; a request thread
         * stuck in libfcgi gets at most half the deadline (and 5 s), so
         * the pool always keeps the other half. */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        stuck = web_server_stop_within(srv, drain / 2 < 5000 ? drain / 2 : 5000);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        spent = (unsigned)((t1.tv_sec - t0.tv_sec) * 1000 +
                           (t1.tv_nsec - t0.tv_nsec) / 1000000);
        rc = defer_pool_shutdown(pool, spent < drain ? drain - spent : 0);
        web_server_stats_get(srv, &ss);
        defer_pool_stats(pool, &ds);
        web_logf(log, rc == DEFER_OK ? WEB_LOG_INFO : WEB_LOG_ERROR, "stopped",
                 "drain=%s requests=%llu admitted=%llu ok=%llu failed=%llu "
                 "left=%llu rejected=%llu inline=%llu",
                 rc == DEFER_OK ? "complete" : "incomplete",
                 (unsigned long long)ss.finished,
                 (unsigned long long)ds.admitted, (unsigned long long)ds.ok,
                 (unsigned long long)ds.failed, (unsigned long long)ds.left,
                 (unsigned long long)ds.rejected,
                 (unsigned long long)ds.inline_run);
        exit_code = rc == DEFER_OK && stuck == 0 ? 0 : 1;
        app_pid_remove_if_ours(pid_path);
        app_pid_remove_if_ours(oldbin);
        if (rc != DEFER_OK || stuck > 0) {
            /* A hung worker or a stuck request thread may still touch the
             * pool, the server or the log: free nothing under it, and end
             * the process now (the log is written with write(2), nothing
             * is buffered; _exit also skips leak checkers' exit hooks,
             * which would report exactly this deliberate non-free). */
            _exit(exit_code);
        }
    }

out:
    app_notify_close(notify); /* its ticker reads srv and pool */
    web_server_free(srv);
    defer_pool_destroy(pool);
    web_access_log_close(access);
    web_log_close(log);
    web_conf_free(conf);
    free(db_path);
    free(jpath);
    free(jid);
    free(mig_dir);
    free(eng_dir);
    free(log_path);
    free(access_path);
    free(listen_resolved);
    free(prefix);
    free(conf_default);
    free(pid_path);
    free(oldbin);
    free(handlers);
    app_upgrade_free();
    return exit_code;
}
