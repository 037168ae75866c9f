/*
 * defer_health.c -- is the SQLite database still there, and can it be
 * written?  The states LOST and FAILING, the monitor thread, the probe.
 *
 * DESIGN
 *
 * State (pool->hl.state): OK -> FAILING when a statement or COMMIT fails
 * with a code that does not pass by itself (defer__db_fatal: FULL,
 * READONLY, CORRUPT, NOTADB, IOERR, CANTOPEN); OK or FAILING -> LOST when
 * the path no longer names the file the connections have open, or that
 * file was cut below one page (defer__fileid_check: a stat(2) of the path
 * against the st_dev/st_ino recorded at open).  Back to OK when the
 * monitor's probe commits.  defer_admit refuses while not OK
 * (defer__health_admit: one atomic load when OK).
 *
 * Who checks: a worker before every COMMIT (its own connection's file;
 * on a mismatch it rolls back and fails the segment), and the monitor
 * thread every MON_TICK_MS (the pool's file), so a loss is seen within a
 * second even with no traffic.  The cost before COMMIT is one stat(2).
 *
 * LOST: gen is bumped, so every open connection is "stale".  Stale
 * connections are closed by their owners: a worker at once (the monitor
 * wakes idle workers; defer__health_idle), a worker busy with a batch
 * before its next SQL segment or callback (defer__health_sync), a ctx's
 * inline connection at its next defer_admit or at defer_ctx_free.  The
 * same call reopens a runner's connection after recovery, for callbacks
 * as for SQL segments.  The -wal and -shm next to the
 * path belong to the old file, and SQLite leaves them there: it does not
 * checkpoint (nor delete them) on close once the file moved
 * (SQLITE_FCNTL_HAS_MOVED), and a truncated file is closed without a
 * checkpoint on purpose (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE: nothing is
 * written into a file someone cut).  Whatever opens the path next would
 * read them as part of its file: after "mv other.db" over the database
 * they made the new file look like the old one, and checkpointing them
 * into it made it "database disk image is malformed"; after "rm" a new
 * database created at the path (a restart) would inherit them.  So each
 * connection records the st_dev/st_ino of the -wal/-shm it opened with
 * the file (defer_db.c), the pool keeps those of its file
 * (defer__health_opened), and on entering LOST the ones still at the
 * path are noted -- only those: a database put at the path with its own
 * -wal/-shm before we looked (a restore of all three, another process)
 * keeps them, or its rows in that -wal would be deleted.  Once no
 * connection of ours to the old file is open, the monitor removes the
 * noted ones unapplied if the names still lead to the same files.  The pool counts open connections per
 * generation (open_now/open_stale, defer__health_opened/closed) and
 * opens nothing at the path while a stale one is open or the old
 * -wal/-shm could not be removed.
 *
 * Reopen: once no stale connection is left, the monitor looks at the
 * path every second: a regular file starting with the SQLite header,
 * holding every table the database had when the pool was created
 * (lib/defer runs no migrations: the application does, at start; a file
 * without them stays LOST and says so), on which the probe commits.
 * Then it becomes the pool's file and the state OK; workers and inline
 * runners open it at their next segment (runner->reopen).
 *
 * Probe (monitor thread, its own short-lived connection, the pool's
 * writer turn): after SQLITE_FULL first PRAGMA wal_checkpoint(TRUNCATE),
 * which gives back the space a grown WAL holds once its frames are in
 * the database file; after CORRUPT/NOTADB a PRAGMA quick_check that must
 * say "ok" (and probes every 10 s, not every second: it reads the whole
 * file); then one transaction that writes a 64 KiB row into defer_probe
 * (created on first use, one row) and commits, after the same file check
 * as a worker's COMMIT.  That proves pages can be allocated, the WAL
 * appended and the file written for a write of ordinary size; it does
 * not prove a corrupt file sound beyond what quick_check reads, so a
 * task hitting corruption again makes the pool FAILING again.
 *
 * LOCK ORDER: pool->mu as everywhere (a leaf: no SQLite call, no stat,
 * no log line under it).  The monitor sleeps on hl.mon_cv under pool->mu.
 * hl.file and hl.tables are written at create (before any thread) and by
 * the monitor; only the monitor reads them afterwards.
 */
#define _GNU_SOURCE
#include "config.h"
#include "defer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define MON_TICK_MS 500
#define PROBE_MS 1000
#define PROBE_SLOW_MS 10000    /* after CORRUPT/NOTADB: quick_check */

#define PROBE_SQL                                                       \
    "CREATE TABLE IF NOT EXISTS defer_probe(id INTEGER PRIMARY KEY,"    \
    " at INTEGER NOT NULL, pad BLOB);"                                  \
    "INSERT OR REPLACE INTO defer_probe(id, at, pad)"                   \
    " VALUES (1, CAST(strftime('%s','now') AS INTEGER), zeroblob(65536))"

static int64_t ms_ns(int64_t ms)
{
    return ms * 1000000;
}

static const char *code_name(int code)
{
    switch (code) {
    case SQLITE_FULL: return "SQLITE_FULL";
    case SQLITE_READONLY: return "SQLITE_READONLY";
    case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
    case SQLITE_NOTADB: return "SQLITE_NOTADB";
    case SQLITE_IOERR: return "SQLITE_IOERR";
    case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
    default: return "SQLITE_ERROR";
    }
}

static int64_t probe_interval(int code)
{
    return ms_ns(code == SQLITE_CORRUPT || code == SQLITE_NOTADB
                     ? PROBE_SLOW_MS : PROBE_MS);
}

static int is_sqlite(const defer_pool *p)
{
    return p->cfg.db_path != NULL && p->cfg.pg_conninfo == NULL;
}

/* ---- transitions ------------------------------------------------------- */

/* Under mu: end the current episode (state back to OK). */
static int64_t end_episode(defer_pool *p, int64_t now)
{
    int64_t d = now - p->hl.since_ns;
    p->hl.unavail_ns += d;
    p->hl.reason[0] = '\0';
    p->hl.note[0] = '\0';
    atomic_store(&p->hl.state, DEFER_DB_OK);
    return d;
}

/* The -wal (k 0) or -shm (k 1) name next to the database path. */
static void side_name(const char *path, int k, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s", path, k == 0 ? "-wal" : "-shm");
}

/* Under mu: is st one of the -wal/-shm our connections had open with
 * the pool's file? */
static int own_side(const defer_pool *p, const struct stat *st)
{
    int j;
    for (j = 0; j < p->hl.own_nside; j++)
        if (st->st_dev == p->hl.own_dev[j] && st->st_ino == p->hl.own_ino[j])
            return 1;
    return 0;
}

/* Under mu: the -wal/-shm recorded in id become the pool's own. */
static void own_sides_from(defer_pool *p, const defer_fileid *id)
{
    int j;
    p->hl.own_nside = id->nside;
    for (j = 0; j < id->nside; j++) {
        p->hl.own_dev[j] = id->side_dev[j];
        p->hl.own_ino[j] = id->side_ino[j];
    }
}

/* path: the lost file's name (the caller's own copy: a worker's
 * connection's, or the monitor's hl.file). */
static void enter_lost(defer_pool *p, int kind, const char *why,
                       const char *path)
{
    char line[sizeof p->hl.reason], name[4096 + 8];
    struct stat side[2];
    int have[2], k;
    int64_t now = defer__now_ns();
    int logit = 0;

    /* The old file's -wal/-shm, as they are now (see DESIGN). */
    for (k = 0; k < 2; k++) {
        have[k] = 0;
        if (path != NULL) {
            side_name(path, k, name, sizeof name);
            have[k] = stat(name, &side[k]) == 0;
        }
    }
    defer__lock(p);
    if (atomic_load(&p->hl.state) != DEFER_DB_LOST) {
        if (atomic_load(&p->hl.state) == DEFER_DB_OK)
            p->hl.since_ns = now; /* FAILING -> LOST: same episode */
        p->hl.lost_kind = kind;
        /* Every open connection is now to the old file. */
        p->hl.open_stale += p->hl.open_now;
        p->hl.open_now = 0;
        p->hl.wal_removed = 0;
        p->hl.nside = 0;
        for (k = 0; k < 2; k++) {
            if (!have[k] || !own_side(p, &side[k]))
                continue; /* not the lost file's: came with a new one */
            p->hl.side_dev[p->hl.nside] = side[k].st_dev;
            p->hl.side_ino[p->hl.nside] = side[k].st_ino;
            p->hl.nside++;
        }
        p->hl.note[0] = '\0';
        atomic_fetch_add(&p->hl.gen, 1);
        snprintf(p->hl.reason, sizeof p->hl.reason, "%s", why);
        p->hl.next_probe_ns = now + ms_ns(PROBE_MS);
        p->st.db_lost++;
        atomic_store(&p->hl.state, DEFER_DB_LOST);
        snprintf(line, sizeof line, "%s", p->hl.reason);
        logit = 1;
        /* Idle workers close their connections to it now. */
        defer__broadcast(&p->work_cv);
    }
    defer__unlock(p);
    if (logit)
        defer__log(p, DEFER_LOG_ERROR, "db_lost", NULL, -1, DEFER_EUNAVAIL,
                   line);
}

static void enter_failing(defer_pool *p, int code, const char *msg)
{
    char line[sizeof p->hl.reason];
    int64_t now = defer__now_ns();
    int logit = 0;

    defer__lock(p);
    if (atomic_load(&p->hl.state) == DEFER_DB_OK) {
        p->hl.since_ns = now;
        p->hl.fail_code = code;
        snprintf(p->hl.reason, sizeof p->hl.reason, "%s: %.160s",
                 code_name(code), msg);
        p->hl.next_probe_ns = now + probe_interval(code);
        p->st.db_failing++;
        atomic_store(&p->hl.state, DEFER_DB_FAILING);
        snprintf(line, sizeof line, "%s", p->hl.reason);
        logit = 1;
    }
    defer__unlock(p);
    if (logit)
        defer__log(p, DEFER_LOG_ERROR, "db_failing", NULL, -1,
                   DEFER_EUNAVAIL, line);
}

void defer__health_report(defer_runner *r, int kind, const char *why)
{
    char w[DEFER_ERRMSG_MAX];
    if (kind != DEFER_FILE_OK) {
        enter_lost(r->pool, kind, why, r->file.path);
        return;
    }
    if (r->fatal == 0)
        return;
    /* A write failing for good may be what a lost file looks like from
     * inside (READONLY_DBMOVED, IOERR after the folder went away). */
    kind = defer__fileid_check(&r->file, w, sizeof w);
    if (kind != DEFER_FILE_OK)
        enter_lost(r->pool, kind, w, r->file.path);
    else
        enter_failing(r->pool, r->fatal, r->fatal_msg);
}

/* ---- the hooks --------------------------------------------------------- */

static int stale(const defer_runner *r)
{
    /* Generations track the SQLite file; a PostgreSQL session has none. */
    return r->db != NULL && is_sqlite(r->pool) &&
           r->gen != atomic_load(&r->pool->hl.gen);
}

static void close_stale(defer_runner *r)
{
    defer__db_close(r);
    r->reopen = 1;
}

int defer__health_admit(defer_pool *p, defer_runner *r, size_t n)
{
    if (stale(r))
        close_stale(r);
    if (atomic_load(&p->hl.state) == DEFER_DB_OK)
        return DEFER_OK;
    defer__lock(p);
    if (atomic_load(&p->hl.state) == DEFER_DB_OK || p->state != P_RUNNING) {
        defer__unlock(p); /* shutting down: defer_admit says so */
        return DEFER_OK;
    }
    p->st.rejected += n;
    p->st.unavail += n;
    defer__unlock(p);
    return DEFER_EUNAVAIL;
}

int defer__health_idle(defer_worker *w)
{
    defer_pool *p = w->pool;
    if (!stale(&w->run))
        return 0;
    defer__unlock(p);
    close_stale(&w->run);
    defer__lock(p);
    return 1;
}

int defer__health_sync(defer_runner *r, char *why, size_t len)
{
    defer_pool *p = r->pool;
    char eb[DEFER_ERRMSG_MAX];

    if (!is_sqlite(p))
        return DEFER_OK;
    if (stale(r))
        close_stale(r);
    if (atomic_load(&p->hl.state) == DEFER_DB_LOST) {
        defer__lock(p);
        snprintf(why, len, "not run: %s", p->hl.reason);
        defer__unlock(p);
        return DEFER_EUNAVAIL;
    }
    if (r->db == NULL && r->reopen) {
        eb[0] = '\0';
        if (defer__db_open(r, eb, sizeof eb) != QB_OK) {
            snprintf(why, len, "not run: reopening the database: %s", eb);
            if (atomic_load(&p->hl.state) != DEFER_DB_LOST)
                enter_failing(p, SQLITE_CANTOPEN, why);
            return DEFER_EUNAVAIL;
        }
        r->reopen = 0;
    }
    return DEFER_OK;
}

void defer__health_opened(defer_runner *r)
{
    defer_pool *p = r->pool;
    if (r->gen == atomic_load(&p->hl.gen)) {
        p->hl.open_now++;
        /* On the pool's file: its -wal/-shm as they are now (they only
         * change once every connection to it closed). */
        if (r->file.path != NULL && p->hl.file.path != NULL &&
            r->file.dev == p->hl.file.dev && r->file.ino == p->hl.file.ino)
            own_sides_from(p, &r->file);
    } else {
        p->hl.open_stale++; /* LOST while it opened: close it */
    }
}

void defer__health_closed(defer_runner *r)
{
    defer_pool *p = r->pool;
    if (r->gen == atomic_load(&p->hl.gen))
        p->hl.open_now--;
    else
        p->hl.open_stale--;
}

void defer__health_stats(defer_pool *p, defer_stats *out)
{
    int st = atomic_load(&p->hl.state);
    int64_t ns = p->hl.unavail_ns;
    if (st != DEFER_DB_OK)
        ns += defer__now_ns() - p->hl.since_ns;
    out->db_state = st;
    out->db_unavail_ms = (uint64_t)(ns / 1000000);
    if (st == DEFER_DB_OK)
        out->db_reason[0] = '\0';
    else if (st == DEFER_DB_LOST && p->hl.note[0] != '\0')
        snprintf(out->db_reason, sizeof out->db_reason, "%s; now: %s",
                 p->hl.reason, p->hl.note);
    else
        snprintf(out->db_reason, sizeof out->db_reason, "%s", p->hl.reason);
}

/* ---- the probe --------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql, char *eb, size_t el)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        snprintf(eb, el, "%s", err != NULL ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    return rc;
}

static int first_text(void *ud, int ncol, char **vals, char **names)
{
    char *out = ud;
    (void)names;
    if (out[0] == '\0' && ncol > 0)
        snprintf(out, 256, "%s", vals[0] != NULL ? vals[0] : "NULL");
    return 0;
}

/* The tables of `tables` (as captured at create) that db lacks, joined
 * by ", " into buf; 0 if none is missing. */
static int tables_missing(sqlite3 *db, const char *tables, char *buf,
                          size_t len)
{
    const char *t = tables;
    size_t used = 0;
    int missing = 0;
    buf[0] = '\0';
    while (t != NULL && *t != '\0') {
        const char *end = strchr(t, '\n');
        size_t n = end != NULL ? (size_t)(end - t) : strlen(t);
        sqlite3_stmt *st = NULL;
        int have = 0;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE "
                               "type = 'table' AND name = ?1", -1, &st,
                               NULL) == SQLITE_OK &&
            sqlite3_bind_text(st, 1, t, (int)n, SQLITE_STATIC) == SQLITE_OK)
            have = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        if (!have) {
            int w = snprintf(buf + used, len - used, "%s%.*s",
                             missing ? ", " : "", (int)n, t);
            if (w > 0 && (size_t)w < len - used)
                used += (size_t)w;
            missing++;
        }
        t = end != NULL ? end + 1 : NULL;
    }
    return missing;
}

/* One probe on r's open connection (see DESIGN).  QB_OK when it
 * committed; else eb says why and *lost_kind may name a lost file. */
static int probe_write(defer_runner *r, int code, int *lost_kind, char *eb,
                       size_t el)
{
    defer_pool *p = r->pool;
    sqlite3 *db = qb_conn_sqlite(r->db);
    char ck[256] = "";
    int rc;

    *lost_kind = DEFER_FILE_OK;
    defer__lock(p);
    p->st.db_probes++;
    defer__unlock(p);
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) {
        char *err = NULL;
        rc = sqlite3_exec(db, "PRAGMA quick_check", first_text, ck, &err);
        if (rc != SQLITE_OK || strcmp(ck, "ok") != 0) {
            snprintf(eb, el, "quick_check: %.200s",
                     rc != SQLITE_OK ? (err != NULL ? err : "failed") : ck);
            sqlite3_free(err);
            return QB_ESQL;
        }
        sqlite3_free(err);
    }
    if (!defer__token_get(r)) {
        snprintf(eb, el, "shutdown deadline passed");
        return QB_EINTERRUPT;
    }
    if (code == SQLITE_FULL) /* give back what a grown WAL holds */
        (void)exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", eb, el);
    rc = exec(db, "BEGIN IMMEDIATE", eb, el);
    if (rc == SQLITE_OK)
        rc = exec(db, PROBE_SQL, eb, el);
    if (rc == SQLITE_OK) {
        *lost_kind = defer__fileid_check(&r->file, eb, el);
        if (*lost_kind != DEFER_FILE_OK)
            rc = SQLITE_ERROR;
    }
    if (rc == SQLITE_OK)
        rc = exec(db, "COMMIT", eb, el);
    if (!sqlite3_get_autocommit(db)) {
        char ign[64];
        (void)exec(db, "ROLLBACK", ign, sizeof ign);
    }
    defer__token_put(r);
    return rc == SQLITE_OK ? QB_OK : QB_ESQL;
}

/* LOST: why the file at the path cannot be taken yet (logged when it
 * changes, shown on the status after the reason). */
static void note(defer_pool *p, const char *text)
{
    int changed;
    defer__lock(p);
    changed = strcmp(p->hl.note, text) != 0;
    if (changed)
        snprintf(p->hl.note, sizeof p->hl.note, "%.180s", text);
    defer__unlock(p);
    if (changed)
        defer__log(p, DEFER_LOG_WARN, "db_still_lost", NULL, -1,
                   DEFER_EUNAVAIL, text);
}

static void recovered(defer_pool *p, const char *event, const char *what)
{
    char line[sizeof p->hl.reason + 96];
    int64_t d;
    defer__lock(p);
    snprintf(line, sizeof line, "%s", p->hl.reason);
    d = end_episode(p, defer__now_ns());
    defer__unlock(p);
    {
        char msg[sizeof line + 160];
        snprintf(msg, sizeof msg, "%s after %lld ms (was: %s)", what,
                 (long long)(d / 1000000), line);
        defer__log(p, DEFER_LOG_WARN, event, NULL, -1, DEFER_OK, msg);
    }
}

static void probe_failing(defer_pool *p)
{
    defer_runner *r = &p->hl.mon_run;
    char eb[DEFER_ERRMSG_MAX] = "";
    int code, kind = DEFER_FILE_OK, rc;

    defer__lock(p);
    code = p->hl.fail_code;
    p->hl.next_probe_ns = defer__now_ns() + probe_interval(code);
    defer__unlock(p);
    rc = defer__db_open(r, eb, sizeof eb);
    if (rc == QB_OK)
        rc = probe_write(r, code, &kind, eb, sizeof eb);
    defer__db_close(r);
    if (kind != DEFER_FILE_OK)
        enter_lost(p, kind, eb, p->hl.file.path);
    else if (rc == QB_OK)
        recovered(p, "db_recovered", "a probe transaction committed");
}

/* No connection of ours to the lost file is open: remove its -wal/-shm
 * (those recorded on entering LOST, if the names still lead to them),
 * unapplied.  1 when none of them is left. */
static int remove_sides(defer_pool *p)
{
    char name[4096 + 8], text[DEFER_ERRMSG_MAX];
    struct stat st;
    int k, j, removed = 0, failed = 0;

    for (k = 0; k < 2; k++) {
        side_name(p->hl.file.path, k, name, sizeof name);
        if (stat(name, &st) != 0)
            continue;
        for (j = 0; j < p->hl.nside; j++) {
            if (st.st_dev != p->hl.side_dev[j] ||
                st.st_ino != p->hl.side_ino[j])
                continue;
            if (unlink(name) == 0) {
                removed++;
            } else {
                snprintf(text, sizeof text, "cannot remove %.180s: %s", name,
                         strerror(errno));
                note(p, text);
                failed = 1;
            }
        }
    }
    if (failed)
        return 0;
    if (removed > 0)
        defer__log(p, DEFER_LOG_WARN, "db_wal_removed", NULL, -1,
                   DEFER_EUNAVAIL, "the lost file's -wal/-shm were removed "
                   "from the path unapplied (they would corrupt the next "
                   "file there)");
    defer__lock(p);
    p->hl.wal_removed = 1;
    defer__unlock(p);
    return 1;
}

/* Does the path name a regular file that starts like a SQLite database?
 * If not, text says what is there. */
static int looks_like_db(const char *path, char *text, size_t len)
{
    static const char magic[16] = "SQLite format 3";
    char head[16];
    struct stat st;
    ssize_t got;
    int fd;

    if (stat(path, &st) != 0) {
        snprintf(text, len, "no file at %s", path);
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(text, len, "%s is not a regular file", path);
        return 0;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(text, len, "cannot read %s: %s", path, strerror(errno));
        return 0;
    }
    got = read(fd, head, sizeof head);
    (void)close(fd);
    if (got != (ssize_t)sizeof head || memcmp(head, magic, sizeof head)) {
        snprintf(text, len, "%s is not a SQLite database (%lld bytes)", path,
                 (long long)st.st_size);
        return 0;
    }
    return 1;
}

static void try_reopen(defer_pool *p)
{
    defer_runner *r = &p->hl.mon_run;
    char eb[DEFER_ERRMSG_MAX] = "", text[DEFER_ERRMSG_MAX];
    char missing[160];
    unsigned nstale;
    int removed, lk = DEFER_FILE_OK;

    defer__lock(p);
    nstale = p->hl.open_stale;
    removed = p->hl.wal_removed;
    p->hl.next_probe_ns = defer__now_ns() + ms_ns(PROBE_MS);
    defer__unlock(p);
    if (nstale > 0) {
        snprintf(text, sizeof text, "%u connection(s) to the lost file "
                 "still open", nstale);
        note(p, text);
        return;
    }
    if (!removed && !remove_sides(p))
        return;
    if (!looks_like_db(p->hl.file.path, text, sizeof text)) {
        note(p, text);
        return;
    }
    if (defer__db_open_probe(r, eb, sizeof eb) != QB_OK) {
        snprintf(text, sizeof text, "cannot open it: %.200s", eb);
        note(p, text);
        return;
    }
    if (tables_missing(qb_conn_sqlite(r->db), p->hl.tables, missing,
                       sizeof missing)) {
        snprintf(text, sizeof text, "the file at the path lacks table(s) "
                 "%s: not written (restart to run the migrations)",
                 missing);
        defer__db_close(r);
        note(p, text);
        return;
    }
    if (probe_write(r, 0, &lk, eb, sizeof eb) != QB_OK) {
        snprintf(text, sizeof text, "probe on the file at the path: %.200s",
                 eb);
        defer__db_close(r);
        note(p, text);
        return;
    }
    /* The probe committed on it: it is the pool's file from now on. */
    {
        char *path = r->file.path != NULL ? strdup(r->file.path) : NULL;
        if (path == NULL) { /* stay lost rather than write unwatched */
            defer__db_close(r);
            note(p, "out of memory");
            return;
        }
        defer__lock(p);
        free(p->hl.file.path);
        p->hl.file = r->file;
        p->hl.file.path = path;
        own_sides_from(p, &r->file);
        p->st.db_reopened++;
        defer__unlock(p);
    }
    defer__db_close(r);
    recovered(p, "db_reopened", "the file now at the path was opened");
}

static void tick(defer_pool *p)
{
    char why[DEFER_ERRMSG_MAX];
    int64_t now = defer__now_ns();
    int st, due, kind;

    defer__lock(p);
    st = atomic_load(&p->hl.state);
    due = now >= p->hl.next_probe_ns;
    defer__unlock(p);
    if (st != DEFER_DB_LOST) {
        kind = defer__fileid_check(&p->hl.file, why, sizeof why);
        if (kind != DEFER_FILE_OK) {
            enter_lost(p, kind, why, p->hl.file.path);
            return; /* the next tick, a second on, starts reopening */
        }
    }
    if (st == DEFER_DB_FAILING && due)
        probe_failing(p);
    else if (st == DEFER_DB_LOST && due)
        try_reopen(p);
}

/* ---- the monitor thread ------------------------------------------------- */

static void *mon_main(void *arg)
{
    defer_pool *p = arg;
    int rc = pthread_setname_np(pthread_self(), "defer-mon");
    if (rc != 0)
        defer__log(p, DEFER_LOG_WARN, "thread_name_failed", NULL, -1, rc,
                   strerror(rc));
    defer__lock(p);
    while (!p->hl.mon_stop) {
        int64_t until = defer__now_ns() + ms_ns(MON_TICK_MS);
        while (!p->hl.mon_stop &&
               defer__wait(p, &p->hl.mon_cv, until) != ETIMEDOUT)
            ;
        if (p->hl.mon_stop)
            break;
        defer__unlock(p);
        defer__rl_flush(p, 0);
        if (is_sqlite(p) && p->hl.file.path != NULL)
            tick(p);
        defer__lock(p);
    }
    defer__unlock(p);
    return NULL;
}

int defer__health_init(defer_pool *p)
{
    atomic_init(&p->hl.state, DEFER_DB_OK);
    atomic_init(&p->hl.gen, 1);
    if (defer__cond_init_mono(&p->hl.mon_cv) != 0)
        return DEFER_ETHREAD;
    defer__runner_init(&p->hl.mon_run, p, -1, NULL);
    if (p->hl.mon_run.slots == NULL) {
        defer__runner_fini(&p->hl.mon_run);
        (void)pthread_cond_destroy(&p->hl.mon_cv);
        memset(&p->hl.mon_run, 0, sizeof p->hl.mon_run);
        return DEFER_ENOMEM;
    }
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
    defer__runner_fini(&p->hl.mon_run);
    (void)pthread_cond_destroy(&p->hl.mon_cv);
    defer__fileid_clear(&p->hl.file);
    free(p->hl.tables);
    p->hl.tables = NULL;
}
