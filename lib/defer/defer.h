/*
 * defer.h -- waituntil's deferred-task pool: the C analogue of
 * Cloudflare's ctx.waitUntil().
 *
 * A request thread registers work on a per-request context, reserves
 * queue slots for all of it *before* the response is finished (so a full
 * queue can still become a 503), and hands the work to a bounded pool of
 * worker threads *after* the response is finished.  SQL tasks are
 * group-committed: a worker runs consecutive SQL tasks in one
 * BEGIN IMMEDIATE transaction with a savepoint per task.
 *
 *     defer_ctx_create(pool, &ctx);                 once per request thread
 *     defer_wait_until_query(ctx, q, "/route");     in the handler
 *     rc = defer_admit(pool, ctx);                  before the response ends
 *     ... DEFER_OK: answer; DEFER_EFULL: 503 ...
 *     FCGX_Finish_r(&req);
 *     defer_submit(pool, ctx);                      after it; cannot fail
 *
 * Conventions: int status codes (DEFER_OK = 0, named negatives,
 * defer_strerror()); opaque handles with create/free pairs, every free
 * accepts NULL; no global mutable state (two pools are independent).
 * Names: the API is defer_ / DEFER_ and marked DEFER_API; lib/defer's
 * private names start with defer__ (defer_int.h) and are hidden
 * (-fvisibility=hidden): never exported from libwaituntil-defer.
 *
 * ORDERING GUARANTEES (exactly these, nothing more):
 *   - The tasks of one request run in registration order, one after the
 *     other, on one thread.  When a task starts, every earlier task of its
 *     request has finished, and earlier SQL tasks have been committed
 *     (or reported failed).
 *   - Requests leave the queue in submit order (the order of
 *     defer_submit() calls; for one request thread that is its admission
 *     order).  A worker runs the requests it takes in that order, so with
 *     workers = 1 all requests run in submit order.
 *   - With N > 1 workers, different requests may run concurrently on
 *     different workers and finish in any order; a later request may
 *     finish before an earlier one.  SQL transactions of one pool never
 *     overlap (the pool's workers take turns as the one writer), but that
 *     gives no order between requests on different workers.
 *   - Tasks of one request are independent: a failing task never stops
 *     the others (like Promise.allSettled); there is no retry of a failed
 *     task except the bounded SQLITE_BUSY retry described below.
 *
 * SQL TASKS run in a transaction shared with neighbouring SQL tasks of
 * the same batch (group commit), each in effect under its own savepoint:
 * a failing task is rolled back alone and the others commit.  (The first
 * pass runs without savepoints; a failure rolls the transaction back and
 * replays it with one savepoint per task, skipping the failed task.)
 * QB_EBUSY on BEGIN, inside the transaction or at COMMIT rolls the
 * transaction back and retries it with exponential backoff up to
 * busy_retries times (each counted in `retried`); past that, every task
 * of the transaction is reported failed.  A task running longer than
 * task_budget_ms is interrupted (sqlite3_progress_handler on the worker's
 * connection) and reported failed.
 *
 * ON POSTGRESQL (cfg.pg_conninfo) the same rules hold with these
 * differences.  Each worker owns one connection (the pool's connections)
 * and sends a batch's SQL tasks as one pipeline (qb_pipeline);
 * workers' transactions may overlap (no writer turn: PostgreSQL has row
 * locks), so deadlocks and serialization failures (40P01, 40001, 55P03:
 * QB_EBUSY) are retried like SQLITE_BUSY.  The task budget is the
 * session's statement_timeout; at the shutdown deadline running
 * statements are stopped by closing their sessions (no new connection
 * is needed, so a hung server cannot hold shutdown up; COMMIT is never
 * cut).  A lost connection (QB_ECONN: server restart) rolls the
 * transaction back on the server; the worker reconnects with backoff and
 * replays it, for at most reconnect_ms (each attempt bounded by what is
 * left of it and by the shutdown deadline), then fails its tasks.
 * Before COMMIT the worker reads the transaction's id, so when the connection dies during COMMIT it asks the server, once
 * reconnected, whether that transaction committed (pg_xact_status) and
 * neither loses nor doubles the batch; if it cannot learn the outcome
 * the tasks are failed and counted in commit_unknown.
 *
 * CALLBACK TASKS run on a worker *outside* any transaction, so they may
 * open their own transactions on defer_env_db().  Such a transaction does
 * not take the pool's writer turn: it waits for other workers' batches
 * through SQLite's busy handler (db.busy_timeout_ms) and may get QB_EBUSY,
 * which the callback must handle.  A callback that returns with a
 * transaction still open has it rolled back and is reported failed.
 * A callback cannot be interrupted: past task_budget_ms it is only logged
 * as over budget; long callbacks should poll defer_env_expired().  SQL the
 * callback runs on defer_env_db() is interrupted once the shutdown
 * deadline has passed.
 *
 * SHUTDOWN: defer_pool_shutdown() stops admission, runs what is queued or
 * in flight until the deadline, then interrupts SQL (the tasks of an
 * interrupted transaction were rolled back: they count as left), reports
 * every task that did not run ("left": label and SQL, one log line each,
 * arg_free called once), and joins the workers.  A worker stuck in a
 * callback that does not return within grace_ms (500 ms) after the
 * deadline is reported "hung", detached, and keeps the pool's memory alive until it
 * returns (the pool is then freed by that thread); the call returns
 * DEFER_ETIMEDOUT.  The tasks that worker had taken behind the hung one
 * are reported left at once, but the worker owns them until it returns:
 * only then are their arg_free called (never their callbacks), so an
 * arg_free may run after defer_pool_destroy, or never if the callback
 * never returns.
 *
 * DATABASE HEALTH (SQLite): the pool watches its database and stops
 * promising writes it cannot make.  State DEFER_DB_OK, DEFER_DB_FAILING or
 * DEFER_DB_LOST (defer_stats.db_state, with the reason in db_reason):
 *   - LOST: the path no longer names the file the pool's connections
 *     have open (removed, replaced by another file) or that file was cut
 *     below one page (truncated).  Checked by a stat(2) of the path before
 *     every COMMIT and once a second by the pool's monitor thread
 *     ("defer-mon").  A transaction about to commit to a lost file is
 *     rolled back; its tasks and every task taken afterwards fail
 *     (counted failed, never ok).  Every connection to the old file is
 *     closed (a truncated one without a checkpoint: nothing is written
 *     into a file someone cut); then the old file's -wal/-shm, which
 *     SQLite leaves at the path and which would corrupt the next file put
 *     there, are removed unapplied.  From then on the monitor looks at
 *     the path once a second and reopens when it
 *     names a SQLite database that has every table the database had when
 *     the pool started (the pool never runs migrations: a file without
 *     the schema stays LOST, with that reason) and the probe below
 *     commits on it.  Migrations are the application's business: restart
 *     it to create a new database.
 *   - FAILING: a statement or COMMIT failed with SQLITE_FULL,
 *     SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_IOERR or
 *     SQLITE_CANTOPEN (conditions that do not pass by themselves).  The
 *     transaction's remaining tasks fail at once (no per-task replay).
 *     The monitor probes once a second (every 10 s after CORRUPT or
 *     NOTADB, whose probe also runs PRAGMA quick_check): with the pool's
 *     writer turn, after a wal_checkpoint(TRUNCATE) when the disk was
 *     full, it commits a 64 KiB row into the table defer_probe (created
 *     on first use: the probe's own, one row).  A commit of that size
 *     proves the condition passed for writes of ordinary size (space can
 *     be allocated and the WAL appended; the file is writable); it does
 *     not prove a corrupt file sound beyond what quick_check reads.  The
 *     state clears when the probe commits.
 *   While not OK, defer_admit refuses tasks with DEFER_EUNAVAIL (answer
 *   503 before the response), counted in rejected and unavail; queued
 *   tasks still run (and fail if the condition holds).  Transitions are
 *   logged once (db_lost, db_failing, db_recovered, db_reopened).
 *   PostgreSQL pools have no file and never enter these states.
 *
 * LOG LINES about a task (task_failed, task_left, task_hung, task_rejected,
 * task_over_budget, ...) name the request that admitted it and, for an SQL
 * task, the values bound to its statement, so that an operator can tell
 * which data was lost and write it again:
 *     pool=P event=task_failed worker=0 label="/route" kind=sql rc=..
 *     error=".." detail=".." sql=".." request_id=ID values="1:'a' 2:42"
 * (request_id and values come last, after the keys lines had before
 * them, so that what matched those lines still matches).  request_id is the one given to defer_ctx_set_request_id when the task
 * was registered, or "-".  values (key left out for callback tasks and
 * with DEFER_VALUES_OFF) lists the bound values in placeholder order as
 * INDEX:VALUE separated by spaces: NULL, integers, reals (%.17g), text in
 * single quotes (a quote doubled, as in SQL), blobs as x'HEX'.  Text is
 * cut after 64 bytes (at a character boundary) and a blob after 32, each
 * then followed by ...(len=N), N the whole length; past 600 bytes the list
 * ends with ...(N values).  A chain's links are separated by " | ".  The
 * whole value is one logfmt string: '"', '\', control bytes and bytes
 * that are not UTF-8 are escaped (\", \\, \n, \t, \xNN), so no value
 * can end the line or start a key.  DEFER_VALUES_REDACT writes each
 * value's type instead (text and blob with their length: text(len=5)).
 *
 * LOG REPEATS: a line identical to an earlier one in event, rc and
 * detail (the label, SQL, request id and values may differ) within a
 * second is not written; at most once a second a summary is: the last
 * such line WITHOUT its request_id and values, plus " repeated=N" (N
 * lines folded into it).  So the first line of a burst carries its
 * request's id and values; the tasks folded into a summary are counted,
 * not named (their requests are in the access log, if one is kept).  For
 * each kind of failure the log holds its first line and one line per
 * second, and the lines plus their repeated= counts add up to the
 * events.  Shutdown's reports (task_left, task_hung, shutdown,
 * drain_deadline) are never folded: each names its request and values.
 * Summaries still pending are written by defer_pool_shutdown.
 *
 * JOURNAL (cfg.journal, DESIGN atop defer_journal.c): with a level
 * other than OFF, defer_admit appends every SQL task of the request
 * (defer_wait_until_query: the rendered SQL and its bound values) to an
 * append-only journal before it answers DEFER_OK, and the transaction
 * that commits a task also records its journal sequence number in the
 * table waituntil_applied (created by the pool).  defer_pool_create
 * replays, before any worker starts, every journaled task that has no
 * such row, exactly once; a task that fails at replay goes to the
 * dead-letter file journal_path.dead.  CALLBACK TASKS (defer_wait_until
 * with a function pointer) CANNOT BE JOURNALED: they are lost on a
 * crash as without a journal.  Tasks run inline (DEFER_INLINE) finished
 * before the answer and need no journal.  A failed append refuses the
 * request with DEFER_EJOURNAL (answer 503).  The levels:
 *   WRITE  write(2) before the answer: survives SIGKILL and crashes of
 *          the process, not an OS crash or power loss.
 *   FSYNC  + a group fdatasync before the answer: survives power loss
 *          (any synchronous: a journal file is removed only after a
 *          barrier transaction made the commits of its records durable).
 *   FSYNC_INTERVAL  write(2) before the answer, and a thread of the
 *          journal's fdatasyncs what was appended every
 *          journal_sync_interval_ms (a rotated file as it is left, and
 *          at a clean stop): survives the death of the process; power
 *          loss loses at most the writes answered in the last interval
 *          (Redis's appendfsync everysec; files go after a barrier as
 *          with FSYNC).
 *
 * ACCOUNTING: once shutdown has returned and every admitted ctx has been
 * submitted, admitted == ok + failed + left exactly.  Tasks run inline
 * (policy INLINE) are not admitted; they are counted in inline_run, of
 * which inline_failed failed.
 */
#ifndef WAITUNTIL_DEFER_H
#define WAITUNTIL_DEFER_H

#include <stddef.h>
#include <stdint.h>

#include "qb.h"
#include "qb_conn.h"

#if defined(__GNUC__) && defined(DEFER_BUILDING)
#define DEFER_API __attribute__((visibility("default")))
#else
#define DEFER_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */

enum {
    DEFER_OK = 0,
    DEFER_INLINE = 1,      /* defer_admit: tasks already ran in the caller */
    DEFER_ENOMEM = -1,     /* allocation failed */
    DEFER_EINVAL = -2,     /* bad argument or configuration */
    DEFER_EFULL = -3,      /* no queue slots within the admission bound */
    DEFER_ETOOMANY = -4,   /* per-request task bound exceeded */
    DEFER_ESHUTDOWN = -5,  /* pool is shutting down: not admitting */
    DEFER_ETIMEDOUT = -6,  /* shutdown deadline passed: tasks left/hung */
    DEFER_EDB = -7,        /* a worker database could not be opened */
    DEFER_ETHREAD = -8,    /* creating a thread or sync object failed */
    DEFER_EMISUSE = -9,    /* called out of order (e.g. submit w/o admit) */
    DEFER_EUNAVAIL = -10,  /* database failing or lost: not admitting */
    DEFER_EJOURNAL = -11   /* the journal append failed (disk full, I/O
                              error): not admitting (answer 503) */
};

/* Static English text for a status code; never NULL.  Thread-safe. */
DEFER_API const char *defer_strerror(int rc);

/* ---- configuration ----------------------------------------------------- */

typedef enum defer_policy {
    DEFER_POLICY_WAIT = 0, /* wait up to admit_wait_ms for slots, then EFULL;
                              only while the workers are freeing slots */
    DEFER_POLICY_REJECT,   /* EFULL at once (WAIT with a zero bound) */
    DEFER_POLICY_INLINE    /* no slots: run the tasks in the caller now */
} defer_policy;

enum {
    DEFER_LOG_DEBUG = 0,
    DEFER_LOG_INFO = 1,
    DEFER_LOG_WARN = 2,
    DEFER_LOG_ERROR = 3
};

/* A log sink: level plus one preformatted line of key=value pairs (no
 * newline).  Called from workers and request threads concurrently, so it
 * must be thread-safe; it must not call back into the pool. */
typedef void (*defer_log_fn)(void *ud, int level, const char *line);

/* What a task's log line says about its bound values (LOG LINES). */
typedef enum defer_log_values {
    DEFER_VALUES_ON = 0,   /* the values, bounded and escaped */
    DEFER_VALUES_REDACT,   /* each value's type (and length), no content */
    DEFER_VALUES_OFF       /* no values key */
} defer_log_values;
/* Journal levels (cfg.journal; JOURNAL below). */
typedef enum defer_journal_level {
    DEFER_JOURNAL_OFF = 0,  /* no journal: a crash loses queued writes */
    DEFER_JOURNAL_WRITE,    /* write(2) before the answer: survives the
                               death of the process (SIGKILL, crash) */
    DEFER_JOURNAL_FSYNC,    /* write(2) + group fdatasync before the
                               answer: survives power loss / OS crash */
    DEFER_JOURNAL_FSYNC_INTERVAL /* write(2) before the answer, fdatasync
                               every journal_sync_interval_ms: survives
                               the death of the process; power loss
                               loses at most the last interval */
} defer_journal_level;

typedef struct defer_config {
    const char *name;            /* pool name in logs; default "defer" */
    unsigned workers;            /* worker threads; default 2; 1..256 */
    size_t queue_capacity;       /* task slots; default 65536 */
    unsigned max_tasks_per_request; /* default 16 */
    unsigned batch_max;          /* tasks a worker takes at once; def. 256 */
    unsigned batch_delay_us;     /* group-commit window: a woken worker
                                    waits up to this long for more tasks
                                    (or a full batch) before it starts;
                                    default 2000; 0 = start at once (no
                                    window at all).  Not applied while
                                    draining. */
    unsigned batch_delay_max_us; /* the window adapts to the commit's cost:
                                    it is 9 x the mean COMMIT time (so a
                                    worker spends at most about a tenth
                                    of its time committing), never less
                                    than batch_delay_us nor more than
                                    this; default 20000; <= batch_delay_us:
                                    a fixed window of batch_delay_us */
    unsigned task_budget_ms;     /* per task; default 5000; 0 = unlimited */
    defer_policy policy;         /* default DEFER_POLICY_WAIT */
    unsigned admit_wait_ms;      /* WAIT bound; default 100 */
    unsigned drain_ms;           /* deadline used by destroy; default 30000 */
    unsigned grace_ms;           /* after a shutdown's deadline, how long a
                                    worker has to leave (an interrupted
                                    statement rolling back) before it is
                                    reported hung; default (and 0) 500 */
    unsigned busy_retries;       /* transaction retries on BUSY; default 5 */
    unsigned busy_backoff_ms;    /* first backoff, doubles, x16 cap; def 10 */
    const char *db_path;         /* SQLite file; NULL: no SQLite */
    qb_conn_config db;           /* options of each worker connection
                                    (SQLite pragmas, PostgreSQL connect
                                    timeout and application name, the
                                    statement cache); db.busy_timeout_ms
                                    bounds one lock wait on both */
    const char *pg_conninfo;     /* PostgreSQL (libpq URI or key=value
                                    string) instead of SQLite; db_path
                                    must then be NULL.  Neither set: no
                                    database, SQL tasks refused. */
    unsigned reconnect_ms;       /* PostgreSQL: how long a transaction
                                    whose connection was lost keeps
                                    reconnecting (backoff 50 ms doubling
                                    to 1 s) before its tasks fail;
                                    default 10000 */
    const char *db_init_sql;     /* SQLite: SQL run on every connection
                                    the pool opens, after the pragmas of
                                    db (e.g. "PRAGMA cache_size=-8000");
                                    NULL: none.  A failure fails the open. */
    defer_journal_level journal; /* default DEFER_JOURNAL_OFF (the library;
                                    the server's conf defaults to WRITE) */
    const char *journal_path;    /* journal files are journal_path.<seq>,
                                    dead letters journal_path.dead;
                                    required unless journal is OFF */
    const char *journal_id;      /* legacy name of this journal in the
                                    database's waituntil_applied table:
                                    used only for a journal without an
                                    id file (journal_path.id, written
                                    once with a random 128-bit id, the
                                    name from then on); NULL:
                                    journal_path */
    size_t journal_rotate_bytes; /* start a new file past this size;
                                    default 64 MiB */
    unsigned journal_sync_interval_ms; /* FSYNC_INTERVAL: how often the
                                    appended bytes are synced; default
                                    (0) 100; at most 60000 */
    defer_log_fn log;            /* NULL: one line to stderr (a line that
                                    cannot be written is counted in
                                    log_dropped) */
    void *log_ud;
    int log_level;               /* lowest level logged; default INFO */
    defer_log_values log_values; /* default DEFER_VALUES_ON */
} defer_config;

/* Fill cfg with the defaults above (db: WAL, synchronous NORMAL,
 * busy_timeout 1000 ms).  Start from this and change fields. */
DEFER_API void defer_config_init(defer_config *cfg);

/* ---- the pool ---------------------------------------------------------- */

typedef struct defer_pool defer_pool;

/*
 * Create a pool from cfg (NULL = defaults; strings are copied): opens one
 * writer connection per worker (if db_path or pg_conninfo: the workers
 * are the connection pool), then starts the workers ("defer-w0"...; all
 * signals blocked in them).  Returns DEFER_OK or DEFER_EINVAL (also:
 * pg_conninfo in a build without libpq) / DEFER_ENOMEM / DEFER_EDB (a
 * connection failed: PostgreSQL must be up when the pool starts) /
 * DEFER_ETHREAD; on failure *out is NULL, every started thread has been
 * joined, and a message is written to errbuf (if non-NULL).
 */
DEFER_API int defer_pool_create(defer_pool **out, const defer_config *cfg,
                                char *errbuf, size_t errbuf_len);

/*
 * Stop admission (defer_admit returns DEFER_ESHUTDOWN from now on), run
 * everything queued, in flight or still to be submitted until deadline_ms
 * from now, then interrupt, report and free what is left, and join the
 * workers.  Returns DEFER_OK if everything ran, DEFER_ETIMEDOUT if tasks
 * were left or a worker hung (returns within deadline_ms + ~0.5 s).
 * Call once, from one thread; later calls return the first result.
 * A ctx admitted but submitted only after this returned: its tasks are
 * reported left at submit.
 */
DEFER_API int defer_pool_shutdown(defer_pool *pool, unsigned deadline_ms);

/* Shut down with cfg.drain_ms if not done yet, then free the pool.  If a
 * worker hung, the memory is freed by that worker if it ever returns.
 * Every ctx of the pool must be empty (submitted or discarded) and not in
 * use; an empty ctx may still be freed afterwards.  NULL: no-op. */
DEFER_API void defer_pool_destroy(defer_pool *pool);

#define DEFER_HIST_BUCKETS 16

/* Counters (tasks unless said otherwise).  Snapshot taken under the
 * queue lock, so the fields are consistent with each other. */
typedef struct defer_stats {
    uint64_t admitted;      /* tasks admitted to the queue */
    uint64_t rejected;      /* tasks refused at admit (EFULL/ESHUTDOWN);
                               also inline tasks skipped because the
                               shutdown deadline passed while they ran */
    uint64_t refused;       /* registrations refused (ETOOMANY, EINVAL..) */
    uint64_t inline_run;    /* tasks run inline in the caller (not admitted) */
    uint64_t inline_failed; /* ... of which failed */
    uint64_t ok;            /* admitted tasks that ran and succeeded */
    uint64_t failed;        /* admitted tasks that ran and failed */
    uint64_t left;          /* admitted tasks not run (shutdown), hung incl. */
    uint64_t hung;          /* tasks still running when shutdown gave up */
    uint64_t timeouts;      /* SQL tasks interrupted by task_budget_ms */
    uint64_t retried;       /* transaction retries after QB_EBUSY, and
                               after a lost connection (PostgreSQL) */
    uint64_t conn_lost;     /* PostgreSQL: transactions whose connection
                               was lost (server restart, network) */
    uint64_t reconnects;    /* PostgreSQL: successful reconnects */
    uint64_t commit_unknown; /* PostgreSQL: tasks failed because the
                               connection died during COMMIT and the
                               outcome could not be learnt afterwards */
    uint64_t commits;       /* transactions committed by workers */
    uint64_t batches;       /* batches taken from the queue by workers */
    uint64_t batch_hist[DEFER_HIST_BUCKETS]; /* [k]: sizes 2^k..2^(k+1)-1;
                               the last bucket: every size from 2^15 on */
    uint64_t batch_tasks;   /* tasks taken in those batches (sum of the
                               batch sizes) */
    uint64_t reserved;      /* slots held by admitted, unsubmitted ctxs */
    uint64_t queued;        /* tasks waiting in the queue */
    uint64_t in_flight;     /* tasks taken by a worker, not finished */
    uint64_t depth;         /* reserved + queued + in_flight (slots used) */
    uint64_t depth_hwm;     /* high-water mark of depth */
    uint64_t admit_waits;   /* requests (not tasks) whose admission waited
                               for room (policy WAIT) */
    uint64_t admit_stalled; /* requests refused at once (WAIT): no room
                               and the workers stalled (see defer_admit) */
    /* database health (see DATABASE HEALTH above) */
    int db_state;           /* DEFER_DB_OK / _FAILING / _LOST (gauge) */
    uint64_t unavail;       /* tasks refused at admit with DEFER_EUNAVAIL
                               (also counted in rejected) */
    uint64_t db_failing;    /* episodes of DEFER_DB_FAILING */
    uint64_t db_lost;       /* episodes of DEFER_DB_LOST */
    uint64_t db_reopened;   /* lost databases reopened at the path */
    uint64_t db_probes;     /* probes run while failing or lost */
    uint64_t db_unavail_ms; /* time spent not OK (the current episode
                               included) */
    uint64_t log_repeated;  /* log lines folded into repeated= summaries */
    uint64_t log_dropped;   /* default log lines that could not be written */
    /* journal (see JOURNAL above; all 0 when off) */
    uint64_t j_appends;     /* group writes (one per leader turn) */
    uint64_t j_records;     /* records appended (one per SQL task) */
    uint64_t j_bytes;       /* bytes appended */
    uint64_t j_pending;     /* records appended, not yet committed (gauge) */
    uint64_t j_file_bytes;  /* bytes in the journal's files (gauge) */
    uint64_t j_fsyncs;      /* fdatasync calls (level FSYNC) */
    uint64_t j_fsync_ns;    /* time spent in them */
    uint64_t j_failed;      /* appends that failed (tasks refused 503) */
    uint64_t j_replayed;    /* records replayed at start */
    uint64_t j_skipped;     /* records at start already applied (or dups) */
    uint64_t j_dead;        /* records moved to the dead-letter file */
    uint64_t j_torn;        /* torn tail records dropped at start */
    uint64_t j_corrupt;     /* bad stretches inside the journal found at
                               start (set aside in journal_path.corrupt;
                               the records after them still replayed) */
    char db_reason[400];    /* why not OK ("" when OK) */
    /* the adaptive group-commit window (batch_delay_max_us) */
    uint64_t commit_mean_us; /* moving mean of the workers' COMMIT time
                                (gauge; 0 before the first commit) */
    uint64_t window_us;     /* the window a worker waits now (gauge) */
} defer_stats;

/* defer_stats.db_state */
enum { DEFER_DB_OK = 0, DEFER_DB_FAILING = 1, DEFER_DB_LOST = 2 };

/* Copy the counters into *out.  Thread-safe. */
DEFER_API void defer_pool_stats(defer_pool *pool, defer_stats *out);

/* The dialect SQL tasks must be built for: QB_DIALECT_POSTGRES when the
 * pool runs on PostgreSQL, else QB_DIALECT_SQLITE.  Thread-safe. */
DEFER_API qb_dialect defer_pool_dialect(const defer_pool *pool);

/* What a journal holds (defer_journal_inspect: for `waituntil -t`). */
typedef struct defer_journal_info {
    uint64_t files;         /* journal files */
    uint64_t bytes;         /* their size */
    uint64_t records;       /* valid records (applied or not: the database
                               knows which) */
    uint64_t first_seq, last_seq; /* of those records; 0 when none */
    uint64_t torn_bytes;    /* a cut last record (dropped at start) */
    uint64_t corrupt_bytes; /* bad bytes not at the end of the last file
                               (set aside at start) */
} defer_journal_info;

/* Read the journal files of journal_path (no database, no locks: run it
 * while the server is stopped or accept a snapshot) and check that a new
 * file can be created next to them.  DEFER_OK, DEFER_EINVAL, DEFER_EDB
 * (message in eb). */
DEFER_API int defer_journal_inspect(const char *journal_path,
                                    defer_journal_info *out, char *eb,
                                    size_t eb_len);

/* ---- tasks -------------------------------------------------------------- */

typedef struct defer_ctx defer_ctx;
typedef struct defer_env defer_env;

/* A callback task.  Runs on a worker (or inline in the admitting thread);
 * 0 = success, any other value = failure (logged with the label, counted).
 * arg stays owned by the pool: arg_free runs after the callback. */
typedef int (*defer_fn)(defer_env *env, void *arg);
typedef void (*defer_free_fn)(void *arg);

/* Create a per-request context bound to pool.  Use it from one thread at
 * a time; reuse it for the next request after submit/discard (cheap).
 * DEFER_OK, DEFER_EINVAL or DEFER_ENOMEM (*out NULL). */
DEFER_API int defer_ctx_create(defer_pool *pool, defer_ctx **out);

/* Discard unadmitted tasks (as defer_ctx_discard), submit admitted ones
 * (an admitted task is never dropped), close the ctx's inline connection
 * and free it.  NULL: no-op. */
DEFER_API void defer_ctx_free(defer_ctx *ctx);

/*
 * Register fn(env, arg) on ctx.  label (the route; NULL = "-") is copied,
 * truncated to 127 bytes.  From this call on the pool owns arg: arg_free
 * (may be NULL) is called exactly once on every path -- after the task
 * ran, when it is rejected or discarded or left at shutdown, and at once
 * when this call fails.  Errors: DEFER_EINVAL (NULL ctx/fn), DEFER_ETOOMANY
 * (max_tasks_per_request reached), DEFER_EMISUSE (ctx already admitted),
 * DEFER_ENOMEM.
 */
DEFER_API int defer_wait_until(defer_ctx *ctx, defer_fn fn, void *arg,
                               defer_free_fn arg_free, const char *label);

/* Register the SQL task q (run with qb_exec, rows
 * discarded).  Takes ownership of q on every path (qb_query_free).
 * A query rendered for the other dialect than the pool's
 * (defer_pool_dialect) is converted here (qb_query_convert: a builder's
 * default SQLite rendering runs on a PostgreSQL pool as it is).  Errors as
 * above, plus DEFER_EINVAL when q is NULL, the pool has no database, or q
 * does not convert (SQLite-only text, or PostgreSQL's on SQLite). */
DEFER_API int defer_wait_until_query(defer_ctx *ctx, qb_query *q,
                                     const char *label);

#define DEFER_REQUEST_ID_MAX 64

/* The id of the request ctx now serves (nginx's $request_id, say), for
 * the log lines of the tasks registered from now on (LOG LINES): copied
 * into ctx, cut to DEFER_REQUEST_ID_MAX bytes, and into each task as it
 * is registered (in the task's own allocation: no extra malloc).  NULL or
 * "" clears it.  Cleared too whenever ctx is emptied (submit, discard,
 * a refused or inline admission), so a reused ctx never lends one
 * request's id to the next.  DEFER_OK, or DEFER_EINVAL for a NULL ctx.
 * Same thread rules as the ctx. */
DEFER_API int defer_ctx_set_request_id(defer_ctx *ctx, const char *id);

/* Number of tasks registered on ctx and not yet handed over. */
DEFER_API size_t defer_ctx_count(const defer_ctx *ctx);

/* The i-th task registered on ctx (0 = the first) while ctx is not
 * admitted: *q (if q non-NULL) its query as it will run (already in the
 * pool's dialect), or NULL for a callback task; *label (if non-NULL) its
 * label.  Both owned by ctx, valid until the task is handed over or
 * dropped (admit, discard, free).  For test kits and tracing: O(i).
 * DEFER_OK, or DEFER_EINVAL (NULL ctx, admitted ctx, i out of range). */
DEFER_API int defer_ctx_task(const defer_ctx *ctx, size_t i,
                             const qb_query **q, const char **label);

/*
 * Reserve queue slots for all of ctx's tasks at once (all or nothing).
 * Call before the response is final.  Returns:
 *   DEFER_OK        reserved; answer normally, then call defer_submit().
 *                   (Also for a ctx without tasks.)
 *   DEFER_INLINE    policy INLINE and no room: the tasks already ran in
 *                   this thread, in order, with the same group commit,
 *                   retry and budget rules as on a worker (counted
 *                   inline_run / inline_failed; if the shutdown deadline
 *                   passes during the run, the tasks not yet run are
 *                   logged task_left and counted rejected); ctx is
 *                   empty, nothing to submit.  SQL runs on a connection
 *                   the ctx opens on first use and keeps.
 *   DEFER_EFULL     no room within the policy's bound: answer 503 with
 *                   Retry-After.  The tasks were freed (arg_free) without
 *                   running and counted rejected; ctx is empty.
 *   DEFER_ESHUTDOWN the pool is shutting down; tasks freed as for EFULL.
 *   DEFER_EUNAVAIL  the database is failing or lost (DATABASE HEALTH):
 *                   answer 503 with Retry-After; tasks freed as for
 *                   EFULL, counted rejected and unavail.  Checked before
 *                   the policy: no waiting, never run inline.
 *   DEFER_EINVAL    ctx belongs to another pool (nothing changed).
 *   DEFER_EMISUSE   ctx already admitted (nothing changed).
 * WAIT blocks up to admit_wait_ms, and only while the pool is making
 * progress: when the workers have work but none took a batch or finished
 * a segment (a transaction, a callback) within the last admit_wait_ms (the
 * writer is stalled: a lock held elsewhere, a hung server), it answers
 * DEFER_EFULL at once instead of holding the request thread for a room
 * that will not come (counted admit_stalled).  A thread that waits is
 * counted admit_waits.  Thread-safe (different ctxs).
 */
DEFER_API int defer_admit(defer_pool *pool, defer_ctx *ctx);

/* Move ctx's admitted tasks into the queue (after FCGX_Finish_r).  Cannot
 * fail: the slots were reserved.  Without a prior DEFER_OK admit it does
 * nothing.  Afterwards ctx is empty and reusable.  Thread-safe. */
DEFER_API void defer_submit(defer_pool *pool, defer_ctx *ctx);

/* Handler error path: free the registered, unadmitted tasks (arg_free
 * once each, not run, not counted).  If ctx was already admitted its tasks
 * are submitted instead, since admitted work is never dropped. */
DEFER_API void defer_ctx_discard(defer_ctx *ctx);

/* ---- inside a callback -------------------------------------------------- */

/* The running thread's connection (worker's writer, or the ctx's inline
 * connection), SQLite or PostgreSQL as the pool's; NULL if the pool has
 * no database, or while a SQLite database is lost (DATABASE HEALTH: the
 * connection was closed).  Only valid during the callback; do not close
 * it; leave no transaction open.  After QB_ECONN the callback may
 * qb_reset it. */
DEFER_API qb_conn *defer_env_db(defer_env *env);
/* The task's label. */
DEFER_API const char *defer_env_label(const defer_env *env);
/* The request id the task was registered with, or "-". */
DEFER_API const char *defer_env_request_id(const defer_env *env);
/* Worker index 0..workers-1, or -1 when running inline. */
DEFER_API int defer_env_worker(const defer_env *env);
/* Non-zero once the task's time budget is spent or the shutdown deadline
 * has passed: a long callback should return soon. */
DEFER_API int defer_env_expired(const defer_env *env);
/* Attach a message (copied, truncated) to the failure log of this task. */
DEFER_API void defer_env_set_error(defer_env *env, const char *msg);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_DEFER_H */
