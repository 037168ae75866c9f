/* app_int.h -- lib/app's private parts (libwaituntil): waituntil_main's
 * pieces, the -t check, operations, shared with the test kit.  Not
 * installed; nothing here is exported (app_ prefix, hidden). */
#ifndef WAITUNTIL_APP_INT_H
#define WAITUNTIL_APP_INT_H

#include <stddef.h>
#include <stdio.h>

#include "waituntil.h"

/* The handler table a server gets: handlers[0..n) (the application's),
 * then the built-in ones ("status"); the first of a name wins.  *out
 * malloc'd.  WEB_OK, WEB_ENOMEM, WEB_EINVAL (a NULL name or fn). */
int app_handlers_merge(const web_handler_def *handlers, size_t n,
                       web_handler_def **out, size_t *nout);

/* PREFIX/path for a relative path (absolute ones and ":memory:" as they
 * are); prefix without a trailing '/' ("" is the root).  malloc'd; NULL
 * for a NULL path or out of memory. */
char *app_resolve(const char *prefix, const char *path);

/* The connection settings and the pool config a conf asks for (strings
 * borrowed from conf and db_path). */
void app_db_config(const web_conf *conf, web_db_engine engine,
                   qb_conn_config *db);
void app_pool_config(const web_conf *conf, web_db_engine engine,
                     const char *db_path, web_log *log, defer_config *pc);

/* The start's migration step: make a SQLite database's missing folder,
 * apply the migrations of mig_dir (the engine's folder), check every
 * deferred statement against the result.  Failures are logged.  WEB_OK
 * or the failure's code. */
int app_migrate(const web_conf *conf, web_db_engine engine,
                const char *db_path, const char *mig_dir, web_log *log);

/* What a PostgreSQL conf gets from a build without libpq (start and -t). */
#define APP_NO_PG "built without PostgreSQL support (configure " \
                  "--with-postgresql, Debian libpq-dev)"

/* Load the .sql files of dir in name order into a list of migrations (malloc'd).
 * WEB_OK, or WEB_EIO/WEB_ENOMEM with a message in errbuf. */
int app_migrations_load(const char *dir, qb_migration **out, size_t *n,
                        char *errbuf, size_t errlen);
void app_migrations_free(qb_migration *list, size_t n);

/* The folder holding an engine's migrations: mig_dir itself for SQLite,
 * mig_dir/postgresql for PostgreSQL.  malloc'd; NULL when out of memory. */
char *app_migrations_dir(const char *mig_dir, web_db_engine engine);

/* Receives each failure of app_check_defers: one line, no newline, valid
 * during the call. */
typedef void (*app_report_fn)(void *ud, const char *line);

/*
 * Build every `defer` block's statement of every route in dialect -- the
 * templates the server builds -- and, when db is non-NULL, have the
 * engine compile each against db's schema without running it (SQLite:
 * prepare; PostgreSQL: EXPLAIN with NULL parameters).  One line per
 * failure goes to report:
 *   FILE:LINE: route METHODS PATHS: defer N: KIND TABLE: MESSAGE (AGAINST)
 * FILE is conf->file, LINE the defer block's, N its rank in the route
 * (from 1), MESSAGE the builder's or the engine's (first line), and
 * " (AGAINST)" is added when the statement was built and against is
 * non-NULL.  db (NULL: build only) must be of dialect's engine.  The
 * one check used by -t (scratch or live schema) and by the
 * start after its migrations.  Calls db from this thread only.
 * Returns WEB_OK, WEB_ECONF when a statement failed (*nbad, if non-NULL,
 * says how many), WEB_EINVAL for a NULL conf or report or a db of
 * another dialect.
 */
int app_check_defers(const web_conf *conf, qb_dialect dialect,
                     qb_conn *db, const char *against,
                     app_report_fn report, void *ud, size_t *nbad);

/*
 * A reload's check of a new conf against the running database: every
 * deferred statement built (app_check_defers) and compiled against the
 * live schema through a read-only connection of its own (SQLite:
 * prepare; PostgreSQL: EXPLAIN in a read-only session).  No migration is
 * applied: a statement that needs a pending one fails here (they are
 * applied by a start or a binary upgrade).  A ":memory:" database is not
 * reachable from another connection: the statements are only built.
 * Returns WEB_OK; WEB_ECONF with one report line per failing statement;
 * WEB_EIO / WEB_EINVAL when the database cannot be opened (eb says why).
 */
int app_check_live(const web_conf *conf, const char *db_path,
                   app_report_fn report, void *ud, size_t *nbad, char *eb,
                   size_t el);

/* `waituntil -t`: conf already parsed; handlers: the server's table
 * (app_handlers_merge); db_path is the database to use
 * (the conf's or -d's, resolved), its engine told by web_db_engine_of.
 * Checks every route's handler, that no route has more defer blocks than
 * tasks_per_request, and every deferred statement in the engine's
 * dialect.  SQLite: the database's folder is judged as the start would
 * judge it (web_db_dir_prepare: missing and creatable is fine and said,
 * anything else fails with the start's message; nothing is created),
 * then every statement is prepared (app_check_defers) against the schema
 * the start will check it against: without a database file, the
 * migrations applied to an empty memory database; with one, the file
 * itself opened read-only when no migration is pending, else a memory
 * copy of its schema with the pending migrations applied (the count is
 * printed).
 * PostgreSQL: the statements are built for it (which refuses SQLite-only
 * constructs); when the server answers (read-only session: -t never
 * writes, never migrates) the pending migrations are counted and, if
 * none is pending, every statement is checked with EXPLAIN against the
 * live schema; an unreachable server is only a warning.
 * Prints nginx -t style lines; returns 0 if all is well, -1 if not. */
int app_check(const web_conf *conf, const char *conf_path,
              const char *db_path, const char *mig_dir,
              const web_handler_def *handlers, size_t nhandlers);

/* ---- info.c: -V and -T -------------------------------------------------- */

/* Where the start takes things from, every path resolved against the
 * prefix (prefix "" stands for "/"). */
typedef struct app_paths {
    const char *prefix, *conf, *listen, *db, *migrations, *log;
    const char *access_log;      /* NULL: off */
} app_paths;

/* `-V`: the version, configure's arguments, the default conf and prefix,
 * and the versions of libsqlite3, libjansson and libpq found at run
 * time. */
void app_version_print(FILE *f);

/* `-T`: a header with the resolved paths, then every file the conf was
 * read from (the main one, then each included one, in reading order),
 * each after a "# configuration file PATH:" line.  0, or -1 if a file
 * could not be read again or f failed. */
int app_conf_dump(FILE *f, const web_conf *conf, const app_paths *p);
/* ---- operations (ops.c) ------------------------------------------------ */

/* The pid file: conf's `pid` (relative to prefix), else waituntil.pid in
 * the folder of a unix socket (listen_spec "unix:PATH", already resolved
 * or relative to prefix), else PREFIX/var/waituntil.pid.  malloc'd. */
char *app_pid_path(const web_conf *conf, const char *prefix,
                   const char *listen_spec);
/* Write our pid (aside, then renamed).  WEB_OK or WEB_EIO (eb says why). */
int app_pid_write(const char *path, char *eb, size_t el);
/* The pid in a pid file, or -1 (eb says why). */
long app_pid_read(const char *path, char *eb, size_t el);
/* Remove the pid file if it holds our pid (a successor's stays). */
void app_pid_remove_if_ours(const char *path);
/* -s NAME: reload (HUP), stop (TERM), quit (QUIT), reopen (USR1),
 * upgrade (USR2) to the pid in pid_path.  Exit status: 0 or 1 (the
 * reason on stderr). */
int app_signal(const char *pid_path, const char *name);

/* A listening socket this process was given. */
typedef struct app_inherited {
    int fd;            /* -1: none */
    int external;      /* systemd's: never shut down or unlinked */
    int from_upgrade;  /* WAITUNTIL_LISTEN_FD: a binary upgrade */
    long old_pid;      /* from_upgrade: the old process (our parent) */
} app_inherited;
/* Read (and remove from the environment) WAITUNTIL_LISTEN_FD [+
 * WAITUNTIL_LISTEN_EXTERNAL] or systemd's LISTEN_FDS/LISTEN_PID.
 * Returns 1 (found), 0 (none) or -1 (malformed; eb says why). */
int app_listen_inherited(app_inherited *out, char *eb, size_t el);

/* Remember argv and the binary's path (before getopt).  WEB_OK or
 * WEB_ENOMEM. */
int app_upgrade_init(int argc, char **argv);
void app_upgrade_free(void);
const char *app_upgrade_exe(void);
/* fork + exec the binary again with listen_fd handed over (the
 * environment names it).  The child's pid, or -1 (eb says why). */
long app_upgrade_spawn(int listen_fd, int external, char *eb, size_t el);

/* What a reload needs to know of the running process. */
typedef struct app_reload_ctx {
    const char *conf_path;
    const web_conf *running;  /* the start's conf (fixed settings) */
    const char *db_path;      /* the running database (resolved) */
    int listen_overridden;    /* -l given: server.listen not compared */
    int db_overridden;        /* -d given: database.path not compared */
    web_server *srv;
    web_log *log;
} app_reload_ctx;
/* SIGHUP: re-read the conf, check it against the running database and
 * server, swap it in for new requests (see ops.c).  Logs
 * reload_failed / reload_needs_restart / reloaded.  WEB_OK or the
 * failure's code (the running conf stays). */
int app_reload(const app_reload_ctx *c);

#endif
