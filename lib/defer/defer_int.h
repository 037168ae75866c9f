/*
 * defer_int.h -- lib/defer internals shared by defer_pool.c (queue, ctx,
 * admission, shutdown) and defer_run.c (running tasks, logging).
 * Not installed; not API.  The DESIGN comment is atop defer_pool.c.
 */
#ifndef WAITUNTIL_DEFER_INT_H
#define WAITUNTIL_DEFER_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "defer.h"

#define DEFER_LABEL_MAX 127
#define DEFER_ERRMSG_MAX 256
#define DEFER_GRACE_MS 500 /* default grace_ms: after the deadline, before a
                              worker is "hung" */

/*
 * Task states.  A task is created TAKEN-ready (state T_READY) and only
 * changes state once a worker holds it in its batch; from then on the
 * worker and, after the deadline, the shutdown thread race for it, and a
 * compare-and-swap decides who owns it:
 *   READY   -> RUNNING  worker claims it and will run it
 *   READY   -> WLEFT    worker gives it up (deadline passed)
 *   READY   -> STOLEN   shutdown takes it from a hung worker's batch
 *   RUNNING -> DONE     worker finished it (result counted by the worker)
 *   RUNNING -> WLEFT    worker abandoned it (deadline rolled it back)
 *   RUNNING -> HUNG     shutdown gave up on it (counted left by shutdown)
 * Whoever makes the transition out of READY decides the task's fate
 * (runs it, reports it left, or -- shutdown -- counts and reports it);
 * the worker that took the task into its batch owns the memory (arg and
 * struct) until its batch is over, Redis bio.c's rule: it frees a STOLEN
 * task's arg without running it, and frees every task struct of its
 * batch, and the arg of a HUNG task, after the batch (shutdown may be
 * formatting its SQL until then).  Shutdown never frees or dereferences,
 * after unlocking, a task that a worker holds; what it reports it formats
 * under pool->mu.  A worker that never returns keeps its batch, as it
 * keeps the pool.
 */
enum {
    T_READY = 0,
    T_RUNNING,
    T_DONE,
    T_WLEFT,
    T_STOLEN,
    T_HUNG
};

typedef struct defer_task {
    struct defer_task *next;
    defer_fn fn;               /* NULL: SQL task; arg is a qb_query */
    void *arg;
    defer_free_fn arg_free;
    size_t req_len;            /* first task of a request: its task count */
    uint64_t jseq;             /* journal sequence number; 0: not journaled
                                  (or already committed) */
    atomic_int state;
    unsigned short rid_off;    /* label + rid_off: the request id ("" none) */
    char label[];              /* NUL-terminated copy, then the request id's
                                  (one allocation: no malloc per id) */
} defer_task;

/* The request id a task was registered with ("" when none). */
static inline const char *defer__task_rid(const defer_task *t)
{
    return t->label + t->rid_off;
}

/* Why the progress handler stopped a statement. */
enum { WHY_NONE = 0, WHY_BUDGET, WHY_ABORT };

struct defer_env {
    struct defer_runner *r;
    const defer_task *task;
    int64_t deadline_ns;       /* 0: no budget */
    int has_err;
    char err[DEFER_ERRMSG_MAX];
};

/* Per-task outcome inside one SQL segment. */
struct defer_slot {
    int st;                    /* S_* in defer_run.c */
    int claimed;
    int rc;
    int timeout;
    char *msg;                 /* malloc'd error detail or NULL */
};

/* The SQLite file a connection (or the pool) writes to, as stat(2) saw
 * it when the connection was opened (defer_db.c). */
typedef struct defer_fileid {
    char *path;                /* absolute (sqlite3_db_filename), or NULL:
                                  no file to watch (":memory:", temp) */
    dev_t dev;
    ino_t ino;
    int64_t floor;             /* a size below this means "truncated" */
    unsigned page_size;
    int nside;                 /* its -wal/-shm at the path, as stat(2) */
    dev_t side_dev[2];         /* saw them once the connection had read */
    ino_t side_ino[2];         /* the file (WAL: both exist then) */
} defer_fileid;

/* Why a database is LOST (defer_fileid_check results). */
enum { DEFER_FILE_OK = 0, DEFER_FILE_REMOVED, DEFER_FILE_REPLACED,
       DEFER_FILE_TRUNCATED };

/* What runs tasks: a worker, or a ctx running them inline.  Used by one
 * thread at a time; counters are flushed into the pool under its lock. */
typedef struct defer_runner {
    defer_pool *pool;
    qb_conn *db;               /* the connection, or NULL */
    pthread_mutex_t cancel_mu; /* leaf lock: sock, in_commit */
    int sock;                  /* dup of pg's socket for defer__db_cancel,
                                  or -1 */
    int in_commit;             /* pg: COMMIT under way, do not cut */
    int64_t conn_since;        /* lost-connection episode start, or 0 */
    unsigned conn_tries;       /* reconnect attempts in this episode */
    char xid[32];              /* PostgreSQL: id of the open transaction */
    int worker;                /* index, -1 inline */
    int why;                   /* WHY_*, set by the progress handler */
    int64_t stmt_deadline_ns;  /* read by the progress handler; 0 none */
    int64_t busy_start_ns;
    uint64_t rng;
    struct defer_slot *slots;  /* capacity: pool batch capacity */
    const qb_query **qs;       /* same capacity: a PostgreSQL pipeline */
    struct defer_env env;
    /* SQLite database health (defer_db.c, defer_health.c) */
    defer_fileid file;         /* the file this connection has open */
    unsigned gen;              /* pool->hl.gen when it was opened */
    int reopen;                /* closed because the file was lost: open
                                  again once the pool is OK */
    int fatal;                 /* SQLite primary code of a failure that
                                  will not pass by itself, seen in the
                                  current segment; 0 none */
    char fatal_msg[DEFER_ERRMSG_MAX]; /* its message */
    /* outcomes since the last flush */
    uint64_t n_ok, n_failed, n_left, n_timeouts, n_commits;
    int64_t commit_ns;         /* time in those commits */
} defer_runner;

typedef struct defer_worker {
    defer_pool *pool;
    pthread_t tid;
    unsigned index;
    int started;               /* pthread_create succeeded */
    int leaving;               /* left its loop; will return (under mu) */
    int detached;              /* declared hung and detached (under mu) */
    defer_task **batch;        /* tasks taken; visible to shutdown while */
    size_t nbatch;             /* nbatch > 0 (both under mu) */
    defer_runner run;
} defer_worker;

enum { P_RUNNING = 0, P_DRAINING, P_STOPPED };

/* The database's health (defer_health.c; DESIGN there).  Fields under
 * pool->mu, except state and gen, which are also read without it. */
typedef struct defer_health {
    atomic_int state;          /* DEFER_DB_*; written under mu */
    atomic_uint gen;           /* +1 on entering LOST; written under mu */
    int lost_kind;             /* DEFER_FILE_* of the current LOST */
    int fail_code;             /* SQLite primary code of the FAILING */
    char reason[192];
    int64_t since_ns;          /* start of the current episode */
    int64_t unavail_ns;        /* sum of the finished episodes */
    int64_t next_probe_ns;
    unsigned open_now;         /* SQLite connections open on gen */
    unsigned open_stale;       /* ... on an older gen (to the lost file) */
    int wal_removed;           /* the lost file's -wal/-shm were removed */
    int own_nside;             /* the -wal/-shm of the pool's file, as */
    dev_t own_dev[2];          /* the last connection opened on it saw */
    ino_t own_ino[2];          /* them (defer__health_opened) */
    int nside;                 /* those of them still at the path on */
    dev_t side_dev[2];         /* entering LOST: they stay there (SQLite */
    ino_t side_ino[2];         /* does not checkpoint a moved file on
                                  close); never a -wal/-shm that came with
                                  a file put at the path since */
    int captured;              /* file and tables below were read (by the
                                  first connection, during create) */
    defer_fileid file;         /* the file the pool writes to */
    char *tables;              /* its tables at start, '\n'-separated */
    char note[192];            /* LOST: why it cannot reopen yet */
    /* the monitor thread */
    int inited;                /* mon_cv and mon_run set up */
    pthread_t mon;
    int mon_started, mon_stop;
    pthread_cond_t mon_cv;
    defer_runner mon_run;      /* its probe connection (open only while
                                  probing) */
} defer_health;

/* The log's repeat folding (defer_log.c). */
typedef struct defer_rl defer_rl;

struct defer_pool {
    /* immutable after create */
    defer_config cfg;          /* string fields point at the copies below */
    char *name, *db_path, *journal_mode, *synchronous;
    char *pg_conninfo, *pg_appname;
    size_t batch_cap;          /* max(batch_max, max_tasks_per_request) */
    unsigned nworkers;
    defer_worker *workers;

    pthread_mutex_t mu;        /* THE lock: everything below */
    pthread_cond_t work_cv;    /* workers: queue not empty / stop */
    pthread_cond_t space_cv;   /* admitters: slots freed / shutdown */
    pthread_cond_t done_cv;    /* shutdown: drained / a worker left */
    pthread_cond_t writer_cv;  /* writer token released / abort */
    pthread_cond_t sleep_cv;   /* backoff sleepers: abort */
    int state;                 /* P_* */
    atomic_int abort;          /* deadline passed: interrupt, give up */
    atomic_int_least64_t stop_end_ns; /* shutdown's deadline (0: none
                                  yet): no lock wait outlives it, not even
                                  a journal barrier after the drain */
    int writer_busy;           /* one SQL transaction per pool at a time */
    int shut_called, shut_done, shut_rc;
    unsigned idle, space_waiters, alive, refs;
    unsigned windows; /* workers waiting in their group-commit window */
    int64_t commit_avg_ns; /* moving mean of COMMIT's time (the window
                              adapts to it: defer__window_ns) */
    int64_t progress_ns; /* last time a worker took a batch or finished
                            a segment, or work arrived in an idle pool:
                            WAIT admission waits only for a pool that has
                            moved since */
    defer_task *qhead, *qtail;
    defer_stats st;            /* depth/queued/... maintained live */
    defer_health hl;           /* database health (defer_health.c) */
    defer_rl *rl;              /* log repeat folding; NULL: off */
    struct defer_journal *journal; /* NULL: journal off (defer_journal.c) */
    atomic_uint_least64_t log_dropped; /* default log lines not written */
};

/* ---- defer_db.c: the engines ------------------------------------------ */

/* pg_xact_status() answers */
enum { DEFER_XACT_UNKNOWN = 0, DEFER_XACT_COMMITTED, DEFER_XACT_ABORTED,
       DEFER_XACT_RUNNING };

int defer__db_is_pg(const defer_pool *p);
/* Test-only fault injection on the next PostgreSQL COMMIT (defer_db.c). */
enum { DEFER_FAULT_AFTER_COMMIT = 1, DEFER_FAULT_NO_COMMIT = 2 };
extern atomic_int defer__fault_commit;
/* Open r's connection per the pool's configuration (nothing if neither
 * engine is configured).  QB_OK or a qb code, message in eb. */
int defer__db_open(defer_runner *r, char *eb, size_t el);
void defer__db_close(defer_runner *r);   /* idempotent */
int defer__db_connected(const defer_runner *r);
/* PostgreSQL: reconnect and set the session up again, waiting at most
 * timeout_ms and not past the shutdown deadline (pool->abort). */
int defer__db_reset(defer_runner *r, int timeout_ms);
/* Any thread: stop r's running PostgreSQL statement by closing its
 * session (not during COMMIT); no-op on SQLite or with no session. */
void defer__db_cancel(defer_runner *r);
int defer__db_exec(defer_runner *r, const qb_query *q);
int defer__db_begin(defer_runner *r);
int defer__db_commit(defer_runner *r);
int defer__db_rollback(defer_runner *r);
int defer__db_savepoint(defer_runner *r, const char *name);
int defer__db_release(defer_runner *r, const char *name);
int defer__db_rollback_to(defer_runner *r, const char *name);
int defer__db_in_tx(defer_runner *r);
/* PostgreSQL: qs[0..n) in one pipeline inside the open transaction
 * (qb_pipeline); on failure *failed_at is the failing index. */
int defer__db_pipeline(defer_runner *r, const qb_query *const *qs, size_t n,
                       size_t *failed_at);
const char *defer__db_errmsg(const defer_runner *r);
/* SQLite: the primary result code of the failure rc (a qb code just
 * returned by a call on r) when it will not pass by itself (FULL,
 * READONLY, CORRUPT, NOTADB, IOERR, CANTOPEN); else 0. */
int defer__db_fatal(const defer_runner *r, int rc);
/* Open r's SQLite connection even while the pool is LOST (the monitor's
 * probe of a file that reappeared).  As defer__db_open otherwise. */
int defer__db_open_probe(defer_runner *r, char *eb, size_t el);
/* Does id->path still name the file id describes, with a plausible size?
 * DEFER_FILE_OK (also when it cannot tell: no path, stat failing other
 * than ENOENT/ENOTDIR) or DEFER_FILE_*; why gets a sentence. */
int defer__fileid_check(defer_fileid *id, char *why, size_t len);
void defer__fileid_clear(defer_fileid *id);
/* PostgreSQL: the open transaction's id as text; and, on a new session,
 * what became of it (DEFER_XACT_*). */
int defer__db_xact_id(defer_runner *r, char *buf, size_t len);
int defer__db_xact_status(defer_runner *r, const char *xid, int *status);

/* ---- defer_run.c ----------------------------------------------------- */

/* Set up a runner (db may be NULL); installs the progress and busy
 * handlers on db.  slots: array of pool->batch_cap. */
void defer__runner_init(defer_runner *r, defer_pool *p, int worker,
                        qb_conn *db);
void defer__runner_set_db(defer_runner *r, qb_conn *db);
/* Close the connection and free what runner_init allocated. */
void defer__runner_fini(defer_runner *r);

/* Run tasks[0..n) in order (segments of SQL tasks group-committed,
 * callbacks alone).  Every task ends DONE, WLEFT, STOLEN or HUNG.  On a
 * worker, each segment or callback is settled as soon as it ends. */
void defer__run_batch(defer_runner *r, defer_task **tasks, size_t n);

/* Worker only (defer_pool.c), not under mu: account for the finished
 * tasks t[0..n) of its batch -- DONE and WLEFT release their in-flight
 * slots; the runner's outcome counters are added to the pool's -- and
 * record the progress that WAIT admission looks at.  STOLEN and HUNG
 * tasks were accounted for by shutdown. */
void defer__settle(defer_runner *r, defer_task **t, size_t n);

/* The pool's writer turn (SQLite: one transaction at a time; always
 * granted on PostgreSQL).  0 when the pool aborted instead. */
int defer__token_get(defer_runner *r);
void defer__token_put(defer_runner *r);

/* Write one finished line to cfg.log (or stderr, counting failures in
 * log_dropped).  No folding: emit folds (defer__log); defer__log_line
 * (shutdown's reports) does not. */
void defer__log_write(defer_pool *p, int level, const char *line);

/* Sleep up to ms on sleep_cv; returns early when the pool aborts. */
void defer__pool_sleep(defer_pool *p, unsigned ms);

/* Logging: one key=value line through cfg.log. */
void defer__log(defer_pool *p, int level, const char *event,
                const defer_task *t, int worker, int rc,
                const char *detail);
int defer__log_enabled(const defer_pool *p, int level);
/* The line defer__log would write for task t, as a malloc'd string (NULL
 * when level is off or memory is short): for the shutdown thread, which
 * formats under pool->mu what it reports after unlocking, when t may
 * already be freed by its worker.  Calls nothing outside lib/defer. */
char *defer__task_line(const defer_pool *p, int level, const char *event,
                       const defer_task *t, int worker, const char *detail);
/* Write a line made by defer__task_line (NULL: nothing).  Not under mu. */
void defer__log_line(defer_pool *p, int level, const char *line);

/* The values bound to q's statement (and its chain's) in the form of
 * the "values" key (defer.h, LOG LINES), NOT yet escaped for logfmt:
 * written into buf (always NUL-terminated when len > 0, cut to fit);
 * returns the length written.  mode DEFER_VALUES_ON or _REDACT (OFF:
 * writes ""). */
size_t defer__format_values(char *buf, size_t len, const qb_query *q,
                            int mode);

/* Report a task not run (left/rejected) and free it: arg_free + free. */
void defer__drop_task(defer_pool *p, defer_task *t, int level,
                      const char *event, const char *why);

int64_t defer__now_ns(void);

/* The group-commit window for a mean COMMIT time of commit_avg_ns:
 * DEFER_WINDOW_PER_COMMIT times it, within [batch_delay_us,
 * max(batch_delay_us, batch_delay_max_us)]; 0 when batch_delay_us is 0.
 * Pure (unit-tested). */
#define DEFER_WINDOW_PER_COMMIT 9
int64_t defer__window_ns(const defer_config *cfg, int64_t commit_avg_ns);

/* The moving mean after a batch of n commits that took sum_ns in all
 * (n > 0): weight 1/8 per batch, the first batch taken whole.  Pure. */
int64_t defer__commit_avg(int64_t avg_ns, int64_t sum_ns, uint64_t n);
/* Test-only (tests/check_defer.c), 0 in production: nanoseconds added to
 * each measured COMMIT time, as if the disk were that slow. */
extern atomic_int_least64_t defer__commit_fault_ns;

/* Lock helpers: a failing pthread mutex op means memory corruption or a
 * misuse we cannot recover from, so they abort with a message. */
void defer__lock(defer_pool *p);
void defer__unlock(defer_pool *p);
/* Any of lib/defer's mutexes: a failure is a bug, and aborts with a
 * line on stderr (as every pthread_* failure here does). */
void defer__mutex_lock(pthread_mutex_t *mu);
void defer__mutex_unlock(pthread_mutex_t *mu);
void defer__broadcast(pthread_cond_t *cv);
void defer__signal(pthread_cond_t *cv);
/* Wait on cv (made by defer__cond_init_mono) with mu held until abs_ns
 * (CLOCK_MONOTONIC, as defer__now_ns; 0 = forever).  Returns 0 or
 * ETIMEDOUT; any other failure aborts.  defer__wait: with the pool's mu. */
int defer__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           int64_t abs_ns);
int defer__wait(defer_pool *p, pthread_cond_t *cv, int64_t abs_ns);
/* A condition variable whose timed waits are on CLOCK_MONOTONIC: 0 or
 * the pthread error. */
int defer__cond_init_mono(pthread_cond_t *cv);

/* ---- defer_health.c -------------------------------------------------- */

/* Set up / start / stop / free the health state and monitor thread. */
int defer__health_init(defer_pool *p);
int defer__health_start(defer_pool *p);  /* 0 or a pthread_create errno */
void defer__health_stop(defer_pool *p);  /* joins the monitor */
void defer__health_fini(defer_pool *p);
/* defer_admit, before the policy: DEFER_OK, or DEFER_EUNAVAIL with the n
 * tasks counted rejected (the caller frees them).  r is the ctx's inline
 * runner: a connection of it to a lost file is closed here. */
int defer__health_admit(defer_pool *p, defer_runner *r, size_t n);
/* A worker about to wait for work, under mu: close its connection to a
 * lost file (drops and retakes mu).  1 if it did (look again). */
int defer__health_idle(defer_worker *w);
/* Before a SQLite segment or callback runs: close a connection to a lost
 * file, reopen after recovery.  DEFER_OK or DEFER_EUNAVAIL with why set
 * (a callback runs anyway, with defer_env_db NULL). */
int defer__health_sync(defer_runner *r, char *why, size_t len);
/* A segment ended with r->fatal set (or the file check failed): enter
 * FAILING or LOST.  kind DEFER_FILE_* (OK: look at r->fatal). */
void defer__health_report(defer_runner *r, int kind, const char *why);
/* Under mu: copy the health fields into *out. */
void defer__health_stats(defer_pool *p, defer_stats *out);
/* Connection accounting (defer_db.c), under mu. */
void defer__health_opened(defer_runner *r);
void defer__health_closed(defer_runner *r);

/* ---- defer_journal.c ------------------------------------------------ */

typedef struct defer_journal defer_journal;

/* Open the journal, replay what it holds on r's connection (before any
 * worker runs), start a new file; sets p->journal.  DEFER_OK (also when
 * the journal is off) or an error with a message in eb. */
int defer__journal_start(defer_pool *p, defer_runner *r, char *eb,
                         size_t el);
/* At pool free: close; remove the files when nothing is pending. */
void defer__journal_free(defer_pool *p);
/* defer_admit, slots reserved, not under mu: append the SQL tasks of the
 * list head as records and set their jseq.  DEFER_OK or DEFER_EJOURNAL. */
int defer__journal_admit(defer_pool *p, defer_task *head);
/* Inside a segment's transaction, just before COMMIT: record the jseq of
 * t[0..n) in waituntil_applied.  QB_OK or the failing qb code. */
int defer__journal_mark(defer_runner *r, defer_task **t, size_t n);
/* After that COMMIT succeeded: the records are applied.  Also for a
 * task that failed for good with its whole transaction: its record is
 * resolved and stops pinning its file (finish_sql). */
void defer__journal_committed(defer_pool *p, defer_task **t, size_t n);
/* A worker, after a batch, outside any transaction: remove older files
 * whose records are all resolved (at the fsync level after making the
 * commits that applied them durable on r's connection), then let a later
 * transaction prune their applied rows.  last: the worker is leaving
 * (shutdown): make the commits durable even with no file to remove, so
 * that defer__journal_free may remove the current file. */
void defer__journal_tidy(defer_runner *r, int last);
/* Test-only fault injection (tests/check_journal.c), 0 in production:
 * SIGKILL the process in defer__journal_tidy just before the first
 * unlink of a rotated file, or just after its unlink (and folder sync)
 * and before its rows may be pruned. */
enum { DEFER_JFAULT_KILL_BEFORE_UNLINK = 1,
       DEFER_JFAULT_KILL_AFTER_UNLINK = 2,
       DEFER_JFAULT_KILL_AFTER_REPLAY_CHUNK = 3, /* after the first
                                                  replayed chunk's COMMIT */
       DEFER_JFAULT_ABORT_IN_MARK = 4, /* once: defer__journal_mark finds
                                          the shutdown deadline passed (pool
                                          abort set, QB_EINTERRUPT) */
       DEFER_JFAULT_SYNC_FAILS = 5 /* while set: the fsync-interval level's
                                      fdatasyncs (syncer, rotation) fail
                                      with EIO */ };
extern atomic_int defer__journal_fault;
/* Test-only: records per replay transaction (0: JREPLAY_CHUNK). */
extern atomic_uint defer__journal_replay_chunk;
/* The j_* counters into *out (not under mu). */
void defer__journal_stats(defer_pool *p, defer_stats *out);

/* ---- defer_log.c ------------------------------------------------------ */

int defer__rl_init(defer_pool *p);     /* DEFER_OK or DEFER_ENOMEM */
void defer__rl_fini(defer_pool *p);
/* One line about to be written: 1 write it, 0 folded (then keep, the
 * line's form for a summary, is what a summary will show); either way,
 * if sum[0] is not NUL afterwards, write that summary line first (level
 * *sum_level). */
int defer__rl_pass(defer_pool *p, int level, const char *event, int rc,
                   const char *detail, const char *keep,
                   char *sum, size_t sum_len, int *sum_level);
/* Write the summaries whose second is over (all when force); after
 * force, folding stops (lines pass). */
void defer__rl_flush(defer_pool *p, int force);
/* log_repeated and log_dropped into *out. */
void defer__rl_stats(defer_pool *p, defer_stats *out);

#endif /* WAITUNTIL_DEFER_INT_H */
