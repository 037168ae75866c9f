/*
 * check_journal.c -- lib/defer's journal (issue 15): append, replay
 * exactly once, torn tails, damaged records (set aside, replay resumes
 * after them), duplicates, poison records, rotation and the order of
 * its steps, a failing append, the journal's id file, lock files.
 *
 * A "crash" is a forked child that builds a pool with the journal, admits
 * (and maybe submits) writes, and dies with _exit or SIGKILL without
 * shutting the pool down; the test's process then opens a pool on the
 * same files, which replays.  Every assertion runs in the test's thread
 * (the child only reports through its exit status).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "defer.h"
#include "defer_int.h" /* defer__journal_fault: test-only fault injection */
#include "qb.h"
#include "testutil.h"

static char *g_dir;
static char g_db[4096], g_jp[4096];
static defer_journal_level g_level; /* jcfg's level; 0: WRITE */
static const char *g_jid; /* cfg.journal_id of jcfg(); NULL: default */

static void db_exec(const char *sql)
{
    char eb[512];
    ck_assert_msg(tu_sqlite_exec(g_db, sql, eb, sizeof eb) == 0, "%s: %s",
                  sql, eb);
}

static int64_t db_scalar(const char *sql)
{
    int64_t v;
    ck_assert_msg(tu_sqlite_scalar(g_db, sql, &v) == 0, "%s", sql);
    return v;
}

/* Table t holds n rows, no v twice: every write applied exactly once. */
static void ck_rows_once(int64_t n)
{
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), n);
    ck_assert_int_eq(db_scalar("SELECT count(DISTINCT v) FROM t"), n);
}

static void setup(void)
{
    g_dir = tu_mkdtemp("check_journal");
    ck_assert_ptr_nonnull(g_dir);
    snprintf(g_db, sizeof g_db, "%s/t.db", g_dir);
    snprintf(g_jp, sizeof g_jp, "%s/journal", g_dir);
    db_exec("PRAGMA journal_mode=WAL;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, note TEXT);"
            "CREATE TABLE t2(v INTEGER)");
}

static void teardown(void)
{
    g_jid = NULL;
    g_level = DEFER_JOURNAL_OFF;
    tu_rmtree(g_dir);
    free(g_dir);
    g_dir = NULL;
}

static void quiet(void *ud, int level, const char *line)
{
    (void)ud;
    if (level >= DEFER_LOG_WARN && getenv("CHECK_JOURNAL_LOG") != NULL)
        fprintf(stderr, "%s\n", line);
}

static defer_config jcfg(void)
{
    defer_config c;
    defer_config_init(&c);
    c.db_path = g_db;
    c.journal = g_level ? g_level : DEFER_JOURNAL_WRITE;
    c.journal_path = g_jp;
    c.journal_id = g_jid;
    c.log = quiet;
    c.db.busy_timeout_ms = 2000;
    return c;
}

static defer_pool *mkpool_cfg(const defer_config *c)
{
    defer_pool *p = NULL;
    char err[256] = "";
    int rc = defer_pool_create(&p, c, err, sizeof err);
    ck_assert_msg(rc == DEFER_OK, "create: %s (%s)", defer_strerror(rc), err);
    return p;
}

static qb_query *q_ins(const char *table, int64_t v)
{
    qb_query *q = NULL;
    char sql[128];
    qb_value a[2] = {qb_int(v), qb_text("n\xc3\xa9 'quoted'")};
    int is_t = strcmp(table, "t") == 0;
    /* (one format per case: gcc -O1 with UBSan took the conditional %s
     * arguments for possibly null and failed the ASan build) */
    if (is_t)
        snprintf(sql, sizeof sql, "INSERT INTO t(v, note) VALUES (?1, ?2)");
    else
        snprintf(sql, sizeof sql, "INSERT INTO %.64s(v) VALUES (?1)", table);
    ck_assert_int_eq(qb_query_raw(&q, sql, is_t ? 2 : 1, a, QB_FETCH_NONE),
                     QB_OK);
    return q;
}

/* In a child: admit writes v = from..to-1 (to t, or to t2 for the
 * values in poison), submit the first `submit` of them, wait until `ok`
 * of them committed, then die (SIGKILL).  Exit status 0 never: the
 * parent checks the signal. */
static void child_run(int from, int to, int submit, int ok, int poison)
{
    defer_config c = jcfg();
    defer_pool *p = NULL;
    defer_ctx *ctx = NULL;
    char err[256];
    int v;

    c.workers = 2;
    if (defer_pool_create(&p, &c, err, sizeof err) != DEFER_OK)
        _exit(10);
    if (defer_ctx_create(p, &ctx) != DEFER_OK)
        _exit(11);
    for (v = from; v < to; v++) {
        const char *tb = v == poison ? "t2" : "t";
        if (defer_wait_until_query(ctx, q_ins(tb, v), "/w") != DEFER_OK)
            _exit(12);
        if (defer_admit(p, ctx) != DEFER_OK)
            _exit(13);
        if (v - from < submit)
            defer_submit(p, ctx);
        else
            break; /* admitted, journaled, never submitted: a crash
                      between the answer and the queue */
    }
    for (int64_t end = tu_now_ms() + TU_WAIT_MS;;) {
        defer_stats st;
        defer_pool_stats(p, &st);
        if ((int)st.ok >= ok)
            break;
        if (tu_now_ms() > end)
            _exit(15); /* the parent expects SIGKILL: a clear failure */
        usleep(1000);
    }
    kill(getpid(), SIGKILL);
    _exit(14);
}

/* Reap child pid, which must have died of SIGKILL (a crash). */
static void reap_killed(pid_t pid)
{
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "child status %d", status);
}

static void crash_child(int from, int to, int submit, int ok, int poison)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        child_run(from, to, submit, ok, poison);
    reap_killed(pid);
}

/* Writes v = from..to-1 to t, one request each: admitted (journaled)
 * and submitted. */
static void submit_writes(defer_pool *p, int from, int to)
{
    defer_ctx *ctx = NULL;
    int v;

    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    for (v = from; v < to; v++) {
        ck_assert_int_eq(defer_wait_until_query(ctx, q_ins("t", v), "/w"),
                         DEFER_OK);
        ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
        defer_submit(p, ctx);
    }
    defer_ctx_free(ctx);
}

static void run_and_close(defer_pool *p)
{
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    defer_pool_destroy(p);
}

/* A pool from c started (its journal replayed) and closed again: its
 * stats as they were right after the start. */
static defer_stats start_and_close(const defer_config *c)
{
    defer_pool *p = mkpool_cfg(c);
    defer_stats st;

    defer_pool_stats(p, &st);
    run_and_close(p);
    return st;
}

static int count_files(const char *suffix_prefix)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    /* journal.<16 hex>: the journal's files (not .lock, .dead...) */
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, suffix_prefix, strlen(suffix_prefix)) == 0 &&
            strlen(e->d_name) == strlen(suffix_prefix) + 16)
            n++;
    closedir(d);
    return n;
}

/* The journal's files once at most MAX are left, or the count at the
 * deadline.  A worker removes a batch's landed files after it counts the
 * batch (defer__settle, then defer__journal_tidy): "ok" comes first. */
static int wait_files_le(int max)
{
    int64_t end = tu_now_ms() + TU_WAIT_MS;
    int n;

    while ((n = count_files("journal.")) > max && tu_now_ms() < end)
        usleep(2000);
    return n;
}

/* The one journal file (the crash leaves one: no rotation). */
static void journal_file(char *out, size_t len)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "journal.", 8) == 0 &&
            strlen(e->d_name) == 8 + 16) {
            snprintf(out, len, "%s/%s", g_dir, e->d_name);
            n++;
        }
    closedir(d);
    ck_assert_int_eq(n, 1);
}

/* In a child: admit writes v = from..to-1, one request each, none
 * submitted (every record stays in the journal), then SIGKILL.  v ==
 * poison writes to t2 instead of t. */
static void journal_unsubmitted_p(int from, int to, int poison)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_config cc = jcfg();
        defer_pool *cp = NULL;
        defer_ctx *ctx = NULL;
        char err[256];
        int v;
        if (defer_pool_create(&cp, &cc, err, sizeof err) != DEFER_OK ||
            defer_ctx_create(cp, &ctx) != DEFER_OK)
            _exit(10);
        for (v = from; v < to; v++) {
            if (defer_wait_until_query(ctx,
                                       q_ins(v == poison ? "t2" : "t", v),
                                       "/w") ||
                defer_admit(cp, ctx) != DEFER_OK)
                _exit(12);
            ctx = NULL; /* leak it: admitted, never submitted */
            if (defer_ctx_create(cp, &ctx) != DEFER_OK)
                _exit(11);
        }
        kill(getpid(), SIGKILL);
        _exit(14);
    }
    reap_killed(pid);
}

static void journal_unsubmitted(int from, int to)
{
    journal_unsubmitted_p(from, to, -1);
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(test_clean_run_leaves_nothing)
{
    defer_config c = jcfg();
    defer_pool *p = mkpool_cfg(&c);
    defer_stats st;

    submit_writes(p, 0, 500);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_records, 500);
    ck_assert_uint_eq(st.j_pending, 0);
    ck_assert_uint_ge(st.j_appends, 1);
    defer_pool_destroy(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 500);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE note = "
                               "'n\xc3\xa9 ''quoted'''"), 500);
    /* Nothing pending: no journal file is left to replay. */
    ck_assert_int_eq(count_files("journal."), 0);
    /* The next start replays nothing and numbers on. */
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 500);
    ck_assert_int_ge(db_scalar("SELECT max(seq) FROM waituntil_applied"),
                     500);
}
END_TEST

START_TEST(test_crash_replays_exactly_once)
{
    defer_config c = jcfg();
    defer_stats st;

    /* 3000 admitted and journaled; all submitted; killed once 1000 have
     * committed (others may have too: the kill is not synchronised). */
    crash_child(0, 3000, 3000, 1000, -1);
    ck_assert_int_ge(db_scalar("SELECT count(*) FROM t"), 1000);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed + st.j_skipped, 3000);
    ck_assert_uint_eq(st.j_dead, 0);
    ck_rows_once(3000);
    /* Replaying again finds nothing. */
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 3000);
}
END_TEST

START_TEST(test_admitted_not_submitted_is_replayed)
{
    defer_config c = jcfg();
    defer_stats st;

    /* The last request was admitted (answered) but the process died
     * before defer_submit: the journal still has it. */
    crash_child(0, 50, 49, 49, -1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 49);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 49"), 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 50);
}
END_TEST

START_TEST(test_torn_tail_dropped)
{
    defer_config c = jcfg();
    defer_stats st;
    defer_journal_info ji;
    char path[4200], eb[256];
    struct stat sb;

    crash_child(0, 10, 9, 0, -1);
    /* Stop after admission only: nothing committed.  (ok = 0 returns at
     * once; the workers may have committed some, that is fine.) */
    journal_file(path, sizeof path);
    ck_assert_int_eq(stat(path, &sb), 0);
    /* A crash in the middle of the last write(2): cut 3 bytes. */
    ck_assert_int_eq(truncate(path, sb.st_size - 3), 0);
    ck_assert_int_eq(defer_journal_inspect(g_jp, &ji, eb, sizeof eb),
                     DEFER_OK);
    ck_assert_uint_eq(ji.records, 9);
    ck_assert_uint_gt(ji.torn_bytes, 0);
    ck_assert_uint_eq(ji.corrupt_bytes, 0);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_torn, 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v < 9"), 9);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 9"), 0);
}
END_TEST

START_TEST(test_corrupt_record_set_aside)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_stats st;
    char path[4200], cpath[4200];
    struct stat sb;
    unsigned char b;
    int fd;

    /* A journal with 10 records of one size, none committed. */
    {
        int status = 0;
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            defer_config cc = jcfg();
            defer_pool *cp = NULL;
            defer_ctx *ctx = NULL;
            char err[256];
            int v;
            if (defer_pool_create(&cp, &cc, err, sizeof err) != DEFER_OK ||
                defer_ctx_create(cp, &ctx) != DEFER_OK)
                _exit(10);
            for (v = 100; v < 110; v++) {
                if (defer_wait_until_query(ctx, q_ins("t", v), "/w") ||
                    defer_admit(cp, ctx) != DEFER_OK)
                    _exit(12);
                ctx = NULL; /* leak it: admitted, never submitted */
                if (defer_ctx_create(cp, &ctx) != DEFER_OK)
                    _exit(11);
            }
            kill(getpid(), SIGKILL);
            _exit(14);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    }
    journal_file(path, sizeof path);
    ck_assert_int_eq(stat(path, &sb), 0);
    /* Flip a byte in the payload of the fifth record. */
    ck_assert_int_eq(sb.st_size % 10, 0);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &b, 1, 4 * (sb.st_size / 10) + 16 + 5), 1);
    b ^= 0x5a;
    ck_assert_int_eq(pwrite(fd, &b, 1, 4 * (sb.st_size / 10) + 16 + 5), 1);
    close(fd);
    p = mkpool_cfg(&c);
    defer_pool_stats(p, &st);
    run_and_close(p);
    /* The bad record was set aside; the records before it and after it
     * (found again by their checksums) ran. */
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 9);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 104"), 0);
    ck_assert_uint_eq(st.j_replayed, 9);
    ck_assert_uint_eq(st.j_corrupt, 1);
    snprintf(cpath, sizeof cpath, "%s.corrupt", g_jp);
    ck_assert_int_eq(stat(cpath, &sb), 0);
    ck_assert_int_gt(sb.st_size, 0);
}
END_TEST

/* Records A, B, C, D (one file, the last); B's length field damaged:
 * (0) far past the end of the file, (1) one byte too long (its checksum
 * then fails).  Review of the journal: both were read as a torn tail (or
 * set the rest of the file aside) and C and D were dropped.  B is
 * corruption: set aside and counted; A, C and D run. */
START_TEST(test_damaged_length_resyncs)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_stats st;
    defer_journal_info ji;
    char path[4200], cpath[4200], eb[256];
    struct stat sb;
    unsigned char h[4];
    uint32_t len;
    off_t rec;
    int fd;

    journal_unsubmitted(200, 204);
    journal_file(path, sizeof path);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_size % 4, 0); /* four records of one size */
    rec = sb.st_size / 4;
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    len = _i == 0 ? 0x00FFFFFFu : (uint32_t)(rec - 16 + 1);
    h[0] = (unsigned char)len;
    h[1] = (unsigned char)(len >> 8);
    h[2] = (unsigned char)(len >> 16);
    h[3] = (unsigned char)(len >> 24);
    ck_assert_int_eq(pwrite(fd, h, 4, rec), 4); /* B's u32 len */
    close(fd);
    ck_assert_int_eq(defer_journal_inspect(g_jp, &ji, eb, sizeof eb),
                     DEFER_OK);
    ck_assert_uint_eq(ji.records, 3);
    ck_assert_uint_eq(ji.torn_bytes, 0);
    ck_assert_uint_eq(ji.corrupt_bytes, (uint64_t)rec);
    p = mkpool_cfg(&c); /* the server starts */
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_replayed, 3);
    ck_assert_uint_eq(st.j_corrupt, 1);
    ck_assert_uint_eq(st.j_torn, 0);
    run_and_close(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 3);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v IN "
                               "(200, 202, 203)"), 3);
    snprintf(cpath, sizeof cpath, "%s.corrupt", g_jp);
    ck_assert_int_eq(stat(cpath, &sb), 0);
    ck_assert_int_eq(sb.st_size, rec); /* B's bytes, and only those */
}
END_TEST

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

/* RESYNC's seq window.  A client value holds the bytes of a whole valid
 * record E (seq 50, from another journal), inside record B of A, B, C
 * (seqs 1, 2, 3); B's length is damaged, so the byte scan walks through
 * B's payload and meets E first.  E's seq is beyond what the bytes
 * skipped could hold (1 + skipped / smallest record): it is not taken
 * for a record, and the scan goes on to C.  Without the window E ran
 * (v 1049, a write nobody asked for) and C, whose seq is below E's, was
 * lost. */
START_TEST(test_resync_skips_record_inside_a_value)
{
    defer_config c;
    defer_stats st;
    defer_journal_info ji;
    char path[4200], main_jp[4096], eb[256];
    unsigned char *e_rec, *file, h[4];
    size_t n = 0, e_len, b_off, b_len;
    uint32_t big = 0x00FFFFFFu;
    int fd;
    pid_t pid;

    /* E: the 50th record of a journal of its own. */
    snprintf(main_jp, sizeof main_jp, "%s", g_jp);
    snprintf(g_jp, sizeof g_jp, "%s/ejournal", g_dir);
    journal_unsubmitted(1000, 1050);
    snprintf(path, sizeof path, "%s/ejournal.%016llx", g_dir, 1ULL);
    file = (unsigned char *)tu_read_file(path, &n);
    ck_assert_ptr_nonnull(file);
    ck_assert_uint_eq(n % 50, 0); /* fifty records of one size */
    e_len = n / 50;
    e_rec = malloc(e_len);
    ck_assert_ptr_nonnull(e_rec);
    memcpy(e_rec, file + 49 * e_len, e_len);
    ck_assert_uint_eq(le32(e_rec) + 16, e_len);
    ck_assert_uint_eq(le32(e_rec + 8), 50); /* its seq (low half) */
    free(file);
    snprintf(g_jp, sizeof g_jp, "%s", main_jp);

    /* A, B (E's bytes as a value), C: admitted, never submitted. */
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_config cc = jcfg();
        defer_pool *cp = NULL;
        defer_ctx *ctx = NULL;
        char err[256];
        int v;
        if (defer_pool_create(&cp, &cc, err, sizeof err) != DEFER_OK)
            _exit(10);
        for (v = 1; v <= 3; v++) {
            qb_query *q = NULL;
            qb_value a[2] = {qb_int(v), v == 2 ? qb_blob(e_rec, e_len)
                                               : qb_text("x")};
            if (qb_query_raw(&q, "INSERT INTO t(v, note) VALUES (?1, ?2)",
                             2, a, QB_FETCH_NONE) != QB_OK ||
                defer_ctx_create(cp, &ctx) != DEFER_OK ||
                defer_wait_until_query(ctx, q, "/w") != DEFER_OK ||
                defer_admit(cp, ctx) != DEFER_OK)
                _exit(12);
        }
        kill(getpid(), SIGKILL);
        _exit(14);
    }
    reap_killed(pid);
    free(e_rec);

    journal_file(path, sizeof path);
    file = (unsigned char *)tu_read_file(path, &n);
    ck_assert_ptr_nonnull(file);
    b_off = 16 + le32(file);
    b_len = 16 + le32(file + b_off);
    ck_assert_uint_gt(n, b_off + b_len); /* C follows B */
    free(file);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    h[0] = (unsigned char)big;
    h[1] = (unsigned char)(big >> 8);
    h[2] = (unsigned char)(big >> 16);
    h[3] = (unsigned char)(big >> 24);
    ck_assert_int_eq(pwrite(fd, h, 4, (off_t)b_off), 4); /* B's length */
    close(fd);

    ck_assert_int_eq(defer_journal_inspect(g_jp, &ji, eb, sizeof eb),
                     DEFER_OK);
    ck_assert_uint_eq(ji.records, 2);
    ck_assert_uint_eq(ji.corrupt_bytes, (uint64_t)b_len);
    c = jcfg();
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 2);
    ck_assert_uint_eq(st.j_corrupt, 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 2);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v IN (1, 3)"),
                     2);
}
END_TEST

/* A cut at the end of a file that is NOT the last one is not a torn
 * tail (only the last file was being written when the process died):
 * it is damage, set aside and counted corrupt.  It used to be counted
 * torn and dropped silently. */
START_TEST(test_cut_older_file_is_corrupt)
{
    defer_config c = jcfg();
    defer_stats st;
    char path[4200], next[4200], cpath[4200];
    struct stat sb;
    int fd;

    journal_unsubmitted(400, 404);
    journal_file(path, sizeof path);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(truncate(path, sb.st_size - 3), 0);
    /* A newer (empty) file after it, as rotation leaves one. */
    snprintf(next, sizeof next, "%s.%016llx", g_jp, 5ULL);
    fd = open(next, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 3);
    ck_assert_uint_eq(st.j_torn, 0);
    ck_assert_uint_eq(st.j_corrupt, 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 3);
    snprintf(cpath, sizeof cpath, "%s.corrupt", g_jp);
    ck_assert_int_eq(stat(cpath, &sb), 0);
    ck_assert_int_gt(sb.st_size, 0);
}
END_TEST

START_TEST(test_duplicate_record_applied_once)
{
    defer_config c = jcfg();
    defer_stats st;
    char path[4200];
    size_t len = 0;
    char *bytes;
    FILE *f;

    crash_child(0, 5, 4, 0, -1);
    journal_file(path, sizeof path);
    /* The whole file appended again: every record twice. */
    bytes = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(bytes);
    f = fopen(path, "ab");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed + st.j_skipped, 10);
    ck_assert_uint_ge(st.j_skipped, 5);
    ck_rows_once(5);
}
END_TEST

START_TEST(test_poison_goes_to_dead_letter)
{
    defer_config c = jcfg();
    defer_stats st;
    char dpath[4200];
    size_t len = 0;
    char *dead;

    /* Record v=3 writes to t2; t2 is gone by the time it is replayed. */
    crash_child(0, 8, 7, 0, 3);
    db_exec("DELETE FROM t; DELETE FROM t2; DELETE FROM waituntil_applied;"
            "DROP TABLE t2");
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_dead, 1);
    ck_assert_uint_eq(st.j_replayed, 7);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 7);
    snprintf(dpath, sizeof dpath, "%s.dead", g_jp);
    dead = tu_read_file(dpath, &len);
    ck_assert_ptr_nonnull(dead);
    ck_assert_ptr_nonnull(strstr(dead, "no such table"));
    ck_assert_ptr_nonnull(strstr(dead, "INSERT INTO t2"));
    free(dead);
    /* Dead-lettered once: not again at the next start. */
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_dead, 0);
}
END_TEST

START_TEST(test_rotation_bounds_the_files)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_ctx *ctx = NULL;
    defer_stats st;
    int v, maxfiles = 0;
    int64_t end;

    c.journal_rotate_bytes = 4096;
    p = mkpool_cfg(&c);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    for (v = 0; v < 5000; v++) {
        int n;
        ck_assert_int_eq(defer_wait_until_query(ctx, q_ins("t", v), "/w"),
                         DEFER_OK);
        ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
        defer_submit(p, ctx);
        if (v % 500 == 0) {
            n = count_files("journal.");
            if (n > maxfiles)
                maxfiles = n;
        }
    }
    defer_ctx_free(ctx);
    end = tu_now_ms() + TU_WAIT_MS;
    do { /* wait for the commits */
        defer_pool_stats(p, &st);
    } while (st.ok + st.failed < 5000 && tu_now_ms() < end &&
             usleep(2000) == 0);
    ck_assert_uint_eq(st.ok, 5000);
    ck_assert_uint_eq(st.j_pending, 0);
    /* Files holding only committed records go (the current one stays),
     * whatever the queue did meanwhile. */
    ck_assert_int_le(wait_files_le(2), 2);
    defer_pool_stats(p, &st);
    ck_assert_uint_le(st.j_file_bytes, 2 * 4096 + 4096);
    run_and_close(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 5000);
    ck_assert_int_eq(count_files("journal."), 0);
    /* The applied rows were pruned along the way. */
    ck_assert_int_lt(db_scalar("SELECT count(*) FROM waituntil_applied"),
                     5000);
    (void)maxfiles;
}
END_TEST

START_TEST(test_append_failure_is_admission_failure)
{
    int status = 0;
    pid_t pid;
    defer_journal_info ji;
    char eb[256];

    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_config cc = jcfg();
        defer_pool *p = NULL;
        defer_ctx *ctx = NULL;
        char err[256];
        struct rlimit rl;
        int v, rc = DEFER_OK;
        sqlite3 *lock = NULL;
        signal(SIGXFSZ, SIG_IGN);
        cc.workers = 1;
        if (defer_pool_create(&p, &cc, err, sizeof err) != DEFER_OK ||
            defer_ctx_create(p, &ctx) != DEFER_OK)
            _exit(10);
        /* Keep the workers from writing the database (they wait on the
         * lock): only the journal meets the file-size cap. */
        if (sqlite3_open(g_db, &lock) != SQLITE_OK ||
            sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
                SQLITE_OK)
            _exit(15);
        /* The database is already big; the journal is at 0: a 4 KiB cap
         * on file size fills the journal long before anything else. */
        rl.rlim_cur = rl.rlim_max = 4096;
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(11);
        for (v = 0; v < 1000 && rc == DEFER_OK; v++) {
            if (defer_wait_until_query(ctx, q_ins("t", v), "/w") != DEFER_OK)
                _exit(12);
            rc = defer_admit(p, ctx);
            if (rc == DEFER_OK)
                defer_submit(p, ctx);
        }
        _exit(rc == DEFER_EJOURNAL ? 0 : 20);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child status %d", status);
    /* The failed append left no partial record behind. */
    ck_assert_int_eq(defer_journal_inspect(g_jp, &ji, eb, sizeof eb),
                     DEFER_OK);
    ck_assert_uint_eq(ji.torn_bytes, 0);
    ck_assert_uint_eq(ji.corrupt_bytes, 0);
    ck_assert_uint_gt(ji.records, 0);
    ck_assert_uint_le(ji.bytes, 4096);
}
END_TEST

static int cb_ok(defer_env *env, void *arg)
{
    (void)env;
    (void)arg;
    return 0;
}

START_TEST(test_callbacks_are_not_journaled)
{
    defer_config c = jcfg();
    defer_pool *p = mkpool_cfg(&c);
    defer_ctx *ctx = NULL;
    defer_stats st;

    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    ck_assert_int_eq(defer_wait_until(ctx, cb_ok, NULL, NULL, "/cb"),
                     DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(ctx, q_ins("t", 1), "/w"),
                     DEFER_OK);
    ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
    defer_submit(p, ctx);
    defer_ctx_free(ctx);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_records, 1);
    defer_pool_destroy(p);
}
END_TEST

START_TEST(test_fsync_level_groups_syncs)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_stats st;

    c.journal = DEFER_JOURNAL_FSYNC;
    p = mkpool_cfg(&c);
    submit_writes(p, 0, 50);
    defer_pool_stats(p, &st);
    /* One fdatasync per group write, before admit returned. */
    ck_assert_uint_eq(st.j_fsyncs, st.j_appends);
    ck_assert_uint_ge(st.j_fsyncs, 1);
    ck_assert_uint_eq(st.j_records, 50);
    run_and_close(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 50);
    /* The workers' last barrier made the commits durable (synchronous
     * NORMAL): the clean stop removed the files. */
    ck_assert_int_eq(count_files("journal."), 0);
}
END_TEST

START_TEST(test_second_process_takes_next_journal)
{
    defer_config c = jcfg();
    defer_stats st;
    int status = 0;
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Two pools on one journal_path (a binary upgrade, or two
         * instances): the second finds it locked and writes journal.1.
         * Both die with writes admitted and not run. */
        defer_config cc = jcfg();
        defer_pool *a = NULL, *b = NULL;
        defer_ctx *ca = NULL, *cb = NULL;
        char err[256];
        int v;
        if (defer_pool_create(&a, &cc, err, sizeof err) != DEFER_OK ||
            defer_pool_create(&b, &cc, err, sizeof err) != DEFER_OK)
            _exit(10);
        for (v = 0; v < 3; v++) {
            if (defer_ctx_create(a, &ca) != DEFER_OK ||
                defer_ctx_create(b, &cb) != DEFER_OK ||
                defer_wait_until_query(ca, q_ins("t", v), "/a") ||
                defer_wait_until_query(cb, q_ins("t", 100 + v), "/b") ||
                defer_admit(a, ca) != DEFER_OK ||
                defer_admit(b, cb) != DEFER_OK)
                _exit(11);
        }
        kill(getpid(), SIGKILL);
        _exit(14);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(count_files("journal."), 1);
    ck_assert_int_eq(count_files("journal.1."), 1);
    /* One start replays both (their locks died with the process). */
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 6);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 6);
    ck_assert_int_eq(count_files("journal.1."), 0);
}
END_TEST

typedef struct admitter {
    defer_pool *p;
    int from, n, bad;
} admitter;

static void *admit_loop(void *arg)
{
    admitter *a = arg;
    defer_ctx *ctx = NULL;
    int v;
    if (defer_ctx_create(a->p, &ctx) != DEFER_OK) {
        a->bad = 1;
        return NULL;
    }
    for (v = a->from; v < a->from + a->n; v++) {
        qb_query *q = NULL;
        qb_value x[2] = {qb_int(v), qb_text("concurrent")};
        if (qb_query_raw(&q, "INSERT INTO t(v, note) VALUES (?1, ?2)", 2, x,
                         QB_FETCH_NONE) != QB_OK ||
            defer_wait_until_query(ctx, q, "/c") != DEFER_OK ||
            defer_admit(a->p, ctx) != DEFER_OK) {
            a->bad = 1;
            break;
        }
        defer_submit(a->p, ctx);
    }
    defer_ctx_free(ctx);
    return NULL;
}

START_TEST(test_concurrent_admitters_group_append)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_stats st;
    pthread_t th[4];
    admitter a[4];
    int k;

    c.journal_rotate_bytes = 64 * 1024; /* rotate under concurrency too */
    p = mkpool_cfg(&c);
    for (k = 0; k < 4; k++) {
        a[k].p = p;
        a[k].from = k * 1000;
        a[k].n = 1000;
        a[k].bad = 0;
        ck_assert_int_eq(pthread_create(&th[k], NULL, admit_loop, &a[k]), 0);
    }
    for (k = 0; k < 4; k++) {
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        ck_assert_int_eq(a[k].bad, 0);
    }
    ck_assert_int_eq(defer_pool_shutdown(p, 60000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_records, 4000);
    ck_assert_uint_le(st.j_appends, 4000);
    ck_assert_uint_eq(st.j_pending, 0);
    defer_pool_destroy(p);
    ck_assert_int_eq(db_scalar("SELECT count(DISTINCT v) FROM t"), 4000);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 4000);
    ck_assert_int_eq(count_files("journal."), 0);
}
END_TEST

/* A task that failed with its whole transaction (the write lock held
 * past the busy budget) must not pin its journal file: the files after
 * it are removed as their writes commit (review of the journal: one
 * failure kept every later file until a restart). */
START_TEST(test_failed_task_does_not_pin_later_files)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_ctx *ctx = NULL;
    defer_stats st;
    sqlite3 *lock = NULL;
    int64_t end;
    int v;

    c.journal_rotate_bytes = 4096;
    c.workers = 1;
    c.busy_retries = 1;
    c.db.busy_timeout_ms = 20;
    p = mkpool_cfg(&c);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    ck_assert_int_eq(sqlite3_open(g_db, &lock), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    for (v = 0; v < 5; v++) {
        ck_assert_int_eq(defer_wait_until_query(ctx, q_ins("t", v), "/w"),
                         DEFER_OK);
        ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
        defer_submit(p, ctx);
    }
    end = tu_now_ms() + TU_WAIT_MS;
    do {
        defer_pool_stats(p, &st);
    } while (st.failed < 5 && tu_now_ms() < end && usleep(2000) == 0);
    ck_assert_uint_eq(st.failed, 5);
    ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lock);
    for (v = 5; v < 5005; v++) {
        ck_assert_int_eq(defer_wait_until_query(ctx, q_ins("t", v), "/w"),
                         DEFER_OK);
        ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
        defer_submit(p, ctx);
    }
    end = tu_now_ms() + TU_WAIT_MS;
    do {
        defer_pool_stats(p, &st);
    } while (st.ok + st.failed < 5005 && tu_now_ms() < end &&
             usleep(2000) == 0);
    ck_assert_uint_eq(st.ok, 5000);
    ck_assert_uint_eq(st.j_pending, 0);
    /* the current file and at most two more (about 130 were written) */
    ck_assert_int_le(wait_files_le(3), 3);
    defer_ctx_free(ctx);
    run_and_close(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 5000);
}
END_TEST

/* The oldest journal file present (first seq from its name); 0: none. */
static uint64_t oldest_file_first(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    uint64_t best = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "journal.", 8) == 0 &&
            strlen(e->d_name) == 8 + 16) {
            uint64_t v = strtoull(e->d_name + 8, NULL, 16);
            if (best == 0 || v < best)
                best = v;
        }
    closedir(d);
    return best;
}

/* A rotated file is removed before its applied rows are pruned, and the
 * process dies just before (_i even) or just after (_i odd) the unlink;
 * levels write (_i < 2) and fsync (with synchronous NORMAL: the files
 * go only after a durability barrier).  Either way the next start finds
 * every answered write exactly once: a file still there still has its
 * rows; a file gone may leave rows behind (pruned at the start).  The
 * review found the opposite order (rows pruned by another worker's
 * transaction before the unlink): a crash in between replayed the whole
 * file.  Power loss after the folder sync cannot be tested here. */
START_TEST(test_rotated_file_unlinked_before_rows_pruned)
{
    defer_config c = jcfg();
    defer_stats st;
    int64_t first_row;
    uint64_t oldest;
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_config cc = jcfg();
        defer_pool *cp = NULL;
        defer_ctx *ctx = NULL;
        char err[256];
        int v;
        cc.journal_rotate_bytes = 4096;
        cc.workers = 1;
        if (_i >= 2)
            cc.journal = DEFER_JOURNAL_FSYNC;
        atomic_store(&defer__journal_fault,
                     _i % 2 == 0 ? DEFER_JFAULT_KILL_BEFORE_UNLINK
                                 : DEFER_JFAULT_KILL_AFTER_UNLINK);
        if (defer_pool_create(&cp, &cc, err, sizeof err) != DEFER_OK ||
            defer_ctx_create(cp, &ctx) != DEFER_OK)
            _exit(10);
        for (v = 0; v < 100000; v++) {
            if (defer_wait_until_query(ctx, q_ins("t", v), "/w") ||
                defer_admit(cp, ctx) != DEFER_OK)
                _exit(12);
            defer_submit(cp, ctx);
        }
        for (int64_t end = tu_now_ms() + TU_WAIT_MS; tu_now_ms() < end;)
            usleep(1000); /* the worker kills us once a file can go */
        _exit(15);
    }
    reap_killed(pid);
    oldest = oldest_file_first();
    first_row = db_scalar("SELECT coalesce(min(seq), 0) FROM "
                          "waituntil_applied");
    if (_i % 2 == 0) {
        /* Killed before the unlink: the first file and its rows are
         * both still there. */
        ck_assert_int_eq(oldest_file_first(), 1);
        ck_assert_int_eq(first_row, 1);
    } else {
        /* Killed after: the file is gone, its rows are not pruned yet. */
        ck_assert_uint_gt(oldest, 1); /* the first file (seq 1) went */
        ck_assert_int_ge(first_row, 1);
        ck_assert_int_lt(first_row, (int64_t)oldest);
    }
    c.journal_rotate_bytes = 4096;
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_corrupt, 0);
    /* Every answered write once: v = 0..max, no gap, no duplicate. */
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"),
                     db_scalar("SELECT count(DISTINCT v) FROM t"));
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"),
                     db_scalar("SELECT max(v) + 1 FROM t"));
}
END_TEST

/* The journal's id, as its id file says ("" when there is none). */
static void read_id_file(char *out, size_t len)
{
    char path[4200];
    size_t n = 0;
    char *text;
    snprintf(path, sizeof path, "%s.id", g_jp);
    text = tu_read_file(path, &n);
    out[0] = '\0';
    if (text == NULL)
        return;
    ck_assert_uint_eq(n, 33);
    ck_assert_int_eq(text[32], '\n');
    snprintf(out, len, "%.32s", text);
    free(text);
}

/* The name a deployment gives its journal changes between two runs (on
 * PostgreSQL it was host:path, and the host was renamed): the id file
 * keeps the journal's id, so the committed records are skipped, not run
 * again.  Before the id file, every committed record ran twice. */
START_TEST(test_renamed_host_keeps_journal_id)
{
    defer_config c;
    defer_stats st;
    char id1[64], id2[64], q[256];
    int64_t n1;

    g_jid = "host-a:/srv/journal";
    crash_child(0, 3000, 3000, 1000, -1);
    read_id_file(id1, sizeof id1);
    snprintf(q, sizeof q, "SELECT sum(coalesce(hi, seq) - seq + 1) FROM "
             "waituntil_applied WHERE jid = '%s'", id1); /* records named */
    n1 = db_scalar(q);
    g_jid = "host-b:/srv/journal";
    c = jcfg();
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed + st.j_skipped, 3000);
    ck_assert_uint_ge(st.j_skipped, 1000);
    ck_rows_once(3000);
    ck_assert_uint_eq(strlen(id1), 32);
    ck_assert_int_ge(n1, 1000); /* the rows were named by the id */
    read_id_file(id2, sizeof id2);
    ck_assert_str_eq(id1, id2);
}
END_TEST

/* A journal written before id files (rows under the legacy id, no id
 * file): replayed once under the legacy id, then it gets an id file and
 * the legacy rows go. */
START_TEST(test_journal_without_id_file_is_adopted)
{
    defer_config c;
    defer_stats st;
    char id1[64], id2[64], q[8400], path[4200];

    crash_child(0, 3000, 3000, 1000, -1);
    read_id_file(id1, sizeof id1);
    ck_assert_uint_eq(strlen(id1), 32);
    /* As the version before id files left it: rows named by the path. */
    snprintf(q, sizeof q, "UPDATE waituntil_applied SET jid = '%s' WHERE "
             "jid = '%s'", g_jp, id1);
    db_exec(q);
    snprintf(path, sizeof path, "%s.id", g_jp);
    ck_assert_int_eq(unlink(path), 0);
    c = jcfg();
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed + st.j_skipped, 3000);
    ck_assert_uint_ge(st.j_skipped, 1000);
    ck_rows_once(3000);
    read_id_file(id2, sizeof id2);
    ck_assert_uint_eq(strlen(id2), 32);
    ck_assert_str_ne(id1, id2);
    snprintf(q, sizeof q, "SELECT count(*) FROM waituntil_applied WHERE "
             "jid = '%s'", g_jp);
    ck_assert_int_eq(db_scalar(q), 0);
    /* The next start names it by the id file. */
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 0);
    read_id_file(id1, sizeof id1);
    ck_assert_str_eq(id1, id2);
}
END_TEST

/* Records out of seq order in one file (R1 R3 R2 R3: a second copy of
 * R3 after a lower seq): R3 runs once.  seen() took "seq above the last
 * record done" for "not done" even when that list was not sorted, so
 * the second R3 ran again. */
START_TEST(test_out_of_order_duplicate_applied_once)
{
    defer_config c = jcfg();
    defer_stats st;
    char path[4200];
    size_t len = 0, rec;
    char *b;
    FILE *f;

    journal_unsubmitted(300, 303);
    journal_file(path, sizeof path);
    b = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(len % 3, 0);
    rec = len / 3;
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, rec, f), rec);               /* R1 */
    ck_assert_uint_eq(fwrite(b + 2 * rec, 1, rec, f), rec);     /* R3 */
    ck_assert_uint_eq(fwrite(b + rec, 1, rec, f), rec);         /* R2 */
    ck_assert_uint_eq(fwrite(b + 2 * rec, 1, rec, f), rec);     /* R3 */
    ck_assert_int_eq(fclose(f), 0);
    free(b);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 3);
    ck_assert_uint_eq(st.j_skipped, 1);
    ck_rows_once(3);
}
END_TEST

/* A replay killed after its first chunk committed (RANGE ROWS in
 * defer_journal.c: the chunk's rows are one range row and one row for
 * its last record): the next start skips exactly that chunk and runs
 * the rest once.  _i == 1: record v=5, in the first chunk, is poison
 * (its table is gone): the chunk that took the fast path (no
 * savepoints) is redone with savepoints, v=5 alone is dead-lettered,
 * the chunk's 7 others are applied, and at the next start v=5 is not
 * dead-lettered again. */
START_TEST(test_crash_during_replay_range_rows)
{
    defer_config c = jcfg();
    defer_stats st;
    int poison = _i == 1 ? 5 : -1;
    size_t len = 0;
    char dpath[4200], *dead;
    pid_t pid;

    journal_unsubmitted_p(0, 50, poison);
    if (poison >= 0)
        db_exec("DROP TABLE t2");
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_config cc = jcfg();
        defer_pool *cp = NULL;
        char err[256];
        atomic_store(&defer__journal_replay_chunk, 8);
        atomic_store(&defer__journal_fault,
                     DEFER_JFAULT_KILL_AFTER_REPLAY_CHUNK);
        (void)defer_pool_create(&cp, &cc, err, sizeof err);
        _exit(15); /* the replay kills us after its first chunk */
    }
    reap_killed(pid);
    /* The first chunk (v = 0..7) committed, with its rows. */
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"),
                     poison >= 0 ? 7 : 8);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM waituntil_applied "
                               "WHERE hi IS NOT NULL"), 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM waituntil_applied"),
                     2);
    ck_assert_int_eq(db_scalar("SELECT max(seq) - min(seq) FROM "
                               "waituntil_applied"), 7);
    ck_assert_int_eq(db_scalar("SELECT hi - seq FROM waituntil_applied "
                               "WHERE hi IS NOT NULL"), 6);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_skipped, 8);
    ck_assert_uint_eq(st.j_replayed, 42);
    ck_assert_uint_eq(st.j_dead, 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"),
                     poison >= 0 ? 49 : 50);
    ck_assert_int_eq(db_scalar("SELECT count(DISTINCT v) FROM t"),
                     poison >= 0 ? 49 : 50);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 5"),
                     poison >= 0 ? 0 : 1);
    /* Replay done: no range row is left behind. */
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM waituntil_applied "
                               "WHERE hi IS NOT NULL"), 0);
    snprintf(dpath, sizeof dpath, "%s.dead", g_jp);
    dead = tu_read_file(dpath, &len);
    if (poison >= 0) {
        char *second;
        ck_assert_ptr_nonnull(dead);
        ck_assert_ptr_nonnull(strstr(dead, "INSERT INTO t2"));
        second = strchr(dead, '\n');
        ck_assert_ptr_nonnull(second);
        ck_assert_int_eq(second[1], '\0'); /* one line: once */
    } else {
        ck_assert_ptr_null(dead);
    }
    free(dead);
}
END_TEST

/* A waituntil_applied made before range rows (no hi column) gets the
 * column at the next start; its rows (one per record) still count. */
START_TEST(test_applied_table_without_hi_is_migrated)
{
    defer_config c = jcfg();
    defer_stats st;
    char jid[64], q[512];

    journal_unsubmitted(0, 10);
    read_id_file(jid, sizeof jid);
    ck_assert_str_ne(jid, "");
    /* The table as an older version made it, v = 0..3 already applied
     * by it (one row per record: seqs 1..4 of this journal). */
    db_exec("DROP TABLE waituntil_applied;"
            "CREATE TABLE waituntil_applied (jid TEXT NOT NULL, "
            "seq BIGINT NOT NULL, PRIMARY KEY (jid, seq)) WITHOUT ROWID;"
            "INSERT INTO t(v, note) VALUES (0, 'x'), (1, 'x'), (2, 'x'), "
            "(3, 'x')");
    snprintf(q, sizeof q, "INSERT INTO waituntil_applied (jid, seq) "
             "VALUES ('%s', 1), ('%s', 2), ('%s', 3), ('%s', 4)",
             jid, jid, jid, jid);
    db_exec(q);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_skipped, 4);
    ck_assert_uint_eq(st.j_replayed, 6);
    ck_rows_once(10);
    ck_assert_int_eq(db_scalar("SELECT count(hi) FROM waituntil_applied"),
                     0);
}
END_TEST

/* A waituntil_applied the pool cannot add hi to (here a view over an
 * older table, as "another role owns it" is on PostgreSQL): the start
 * says so (journal_ranges_off) and replays with one row per record,
 * still exactly once. */
START_TEST(test_applied_table_not_alterable_replays_per_record)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_stats st;
    char jid[64], q[512];

    journal_unsubmitted(0, 10);
    read_id_file(jid, sizeof jid);
    ck_assert_str_ne(jid, "");
    db_exec("DROP TABLE waituntil_applied;"
            "CREATE TABLE applied_old (jid TEXT NOT NULL, "
            "seq BIGINT NOT NULL, PRIMARY KEY (jid, seq)) WITHOUT ROWID;"
            "CREATE VIEW waituntil_applied AS SELECT jid, seq FROM "
            "applied_old;"
            "CREATE TRIGGER wa_ins INSTEAD OF INSERT ON waituntil_applied "
            "BEGIN INSERT INTO applied_old VALUES (NEW.jid, NEW.seq); END;"
            "CREATE TRIGGER wa_del INSTEAD OF DELETE ON waituntil_applied "
            "BEGIN DELETE FROM applied_old WHERE jid = OLD.jid AND "
            "seq = OLD.seq; END;"
            "INSERT INTO t(v, note) VALUES (0, 'x'), (1, 'x')");
    snprintf(q, sizeof q, "INSERT INTO applied_old (jid, seq) "
             "VALUES ('%s', 1), ('%s', 2)", jid, jid);
    db_exec(q);
    p = mkpool_cfg(&c);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_skipped, 2);
    ck_assert_uint_eq(st.j_replayed, 8);
    /* and the workers, too, write one row per record */
    submit_writes(p, 10, 15);
    run_and_close(p);
    ck_rows_once(15);
    snprintf(q, sizeof q, "SELECT count(*) FROM applied_old WHERE jid = "
             "'%s' AND seq > 10", jid);
    ck_assert_int_eq(db_scalar(q), 5);
}
END_TEST

/* Range rows that overlap (replay never writes them, but a table is
 * outside our control): a record inside any of them is skipped, not
 * only inside the last one that starts at or below it. */
START_TEST(test_overlapping_range_rows_skip)
{
    defer_config c = jcfg();
    defer_stats st;
    char jid[64], q[512];

    journal_unsubmitted(0, 10); /* seqs 1..10: v = seq - 1 */
    read_id_file(jid, sizeof jid);
    ck_assert_str_ne(jid, "");
    db_exec("INSERT INTO t(v, note) VALUES (0, 'x'), (1, 'x'), (2, 'x'), "
            "(3, 'x'), (4, 'x'), (5, 'x')");
    snprintf(q, sizeof q, "INSERT INTO waituntil_applied (jid, seq, hi) "
             "VALUES ('%s', 1, 6), ('%s', 2, 3)", jid, jid);
    db_exec(q);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_skipped, 6);
    ck_assert_uint_eq(st.j_replayed, 4);
    ck_rows_once(10);
}
END_TEST

static int count_lock_files(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".lock") == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* A clean stop leaves no lock file next to the database (it used to
 * leave journal.lock and journal.1.lock ... journal.7.lock, empty); a
 * running pool holds exactly one. */
/* A clean stop whose last barrier (fsync level, synchronous NORMAL)
 * meets a write lock held elsewhere gives up at the stop's deadline, not
 * after busy_timeout (10 s here): the files then stay, and the next
 * start skips what they hold. */
START_TEST(test_stop_deadline_bounds_the_last_barrier)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_ctx *ctx = NULL;
    defer_stats st;
    sqlite3 *lock = NULL;
    int64_t end, t0, dt;

    c.journal = DEFER_JOURNAL_FSYNC;
    c.workers = 1;
    /* Longer than the test may take: without the deadline, the stop
     * would wait it out and the tcase timeout would fail the test. */
    c.db.busy_timeout_ms = 2 * TU_TCASE_TIMEOUT_S * 1000;
    p = mkpool_cfg(&c);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(ctx, q_ins("t", 1), "/w"),
                     DEFER_OK);
    ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
    defer_submit(p, ctx);
    end = tu_now_ms() + TU_WAIT_MS;
    do {
        defer_pool_stats(p, &st);
    } while (st.ok < 1 && tu_now_ms() < end && usleep(2000) == 0);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_int_eq(sqlite3_open(g_db, &lock), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    defer_ctx_free(ctx);
    t0 = tu_now_ms();
    (void)defer_pool_shutdown(p, 200);
    dt = tu_now_ms() - t0;
    ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lock);
    defer_pool_destroy(p);
    /* 200 ms deadline + 500 ms grace (a bound far from both, for a
     * loaded machine); before the fix: the whole busy timeout. */
    ck_assert_msg(dt < TU_WAIT_MS, "shutdown took %lld ms", (long long)dt);
    /* The next start replays nothing twice. */
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 1);
}
END_TEST

/* A worker's segment marks its writes as runs (RANGE ROWS), cut at
 * file boundaries: 200 writes queued behind a lock span several files
 * (rotate 4096) and commit in segments of many; once the first files
 * are removed and their rows pruned, a kill and a restart replay
 * nothing twice.  A run that crossed a file's first seq would have been
 * pruned with the older file while the newer one still held some of its
 * records: the restart would write those again. */
START_TEST(test_segment_runs_cut_at_files)
{
    int64_t ranged, rows;
    defer_config c;
    defer_pool *p;
    defer_stats st;
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_ctx *ctx = NULL;
        sqlite3 *lock = NULL;
        char err[256];
        int v;
        int64_t end = tu_now_ms() + TU_WAIT_MS;

        c = jcfg();
        c.workers = 1;
        c.journal_rotate_bytes = 4096;
        c.db.busy_timeout_ms = 2 * TU_WAIT_MS;
        if (defer_pool_create(&p, &c, err, sizeof err) != DEFER_OK ||
            sqlite3_open(g_db, &lock) != SQLITE_OK ||
            sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
                SQLITE_OK)
            _exit(10);
        for (v = 0; v < 201; v++) {
            if (defer_ctx_create(p, &ctx) != DEFER_OK ||
                defer_wait_until_query(ctx, q_ins("t", v), "/w") ||
                defer_admit(p, ctx) != DEFER_OK)
                _exit(11);
            defer_submit(p, ctx);
            defer_ctx_free(ctx);
            if (v == 199 &&
                (sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL) !=
                     SQLITE_OK ||
                 sqlite3_close(lock) != SQLITE_OK))
                _exit(12);
            /* 200 committed and their older files gone: the 201st's
             * transaction prunes their rows. */
            while (v == 199) {
                defer_pool_stats(p, &st);
                if (st.ok == 200 && count_files("journal.") <= 1)
                    break;
                if (tu_now_ms() > end)
                    _exit(15); /* no prune to test */
                usleep(2000);
            }
        }
        do
            defer_pool_stats(p, &st);
        while (st.ok < 201 && tu_now_ms() < end && usleep(2000) == 0);
        if (st.ok != 201 || st.commits > 100)
            _exit(13); /* (segments of many, or the test proves nothing) */
        kill(getpid(), SIGKILL);
        _exit(14);
    }
    reap_killed(pid);
    ck_rows_once(201);
    /* the last file's records still have their rows, ranges among them */
    ranged = db_scalar("SELECT count(*) FROM waituntil_applied "
                       "WHERE hi IS NOT NULL");
    rows = db_scalar("SELECT count(*) FROM waituntil_applied");
    /* the prune ran: nothing below the row just before the last file */
    ck_assert_int_eq(db_scalar("SELECT min(seq) FROM waituntil_applied"),
                     (int64_t)oldest_file_first() - 1);
    c = jcfg();
    c.journal_rotate_bytes = 4096;
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 0);
    ck_rows_once(201);
    ck_assert_int_ge(ranged, 1); /* (how many rows depends on the batches) */
    ck_assert_int_ge(rows, 2);
}
END_TEST

/* A segment whose applied rows could not be written because the
 * shutdown's deadline interrupted them is left, as a COMMIT interrupted
 * there is: its records stay pending and the next start replays them.
 * It was failed ("journal mark:"), which resolved its records; the clean
 * stop then removed the files, and those answered writes were gone. */
START_TEST(test_mark_interrupted_at_deadline_is_left)
{
    defer_config c = jcfg();
    defer_pool *p;
    defer_stats st;

    c.workers = 1;
    p = mkpool_cfg(&c);
    atomic_store(&defer__journal_fault, DEFER_JFAULT_ABORT_IN_MARK);
    submit_writes(p, 0, 20);
    (void)defer_pool_shutdown(p, 30000);
    defer_pool_stats(p, &st);
    defer_pool_destroy(p);
    ck_assert_int_eq(atomic_load(&defer__journal_fault), 0); /* it ran */
    ck_assert_uint_eq(st.ok + st.failed, 0);
    ck_assert_uint_eq(st.left, 20);
    ck_assert_uint_eq(st.j_pending, 20);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 0);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed, 20);
    ck_rows_once(20);
}
END_TEST

/* journal fsync-interval: answers do not wait for a sync; a thread of
 * the journal's syncs the appended bytes every interval (5 ms here), a
 * rotated file is synced as it is left (rotation every 4 KiB: about 40
 * files, each closed while the syncer may be syncing), the clean stop
 * removes the files after the workers' barrier, and a crash replays
 * exactly once. */
START_TEST(test_fsync_interval_level)
{
    defer_config c;
    defer_pool *p;
    defer_stats st;
    int64_t end;

    g_level = DEFER_JOURNAL_FSYNC_INTERVAL;
    c = jcfg();
    c.journal_sync_interval_ms = 5;
    c.journal_rotate_bytes = 4096;
    p = mkpool_cfg(&c);
    submit_writes(p, 0, 1000);
    end = tu_now_ms() + TU_WAIT_MS;
    do
        defer_pool_stats(p, &st);
    while (st.j_fsyncs == 0 && tu_now_ms() < end && usleep(2000) == 0);
    ck_assert_uint_ge(st.j_fsyncs, 1);
    run_and_close(p);
    ck_rows_once(1000);
    ck_assert_int_eq(count_files("journal."), 0);

    crash_child(1000, 3000, 2000, 500, -1);
    st = start_and_close(&c);
    ck_assert_uint_eq(st.j_replayed + st.j_skipped, 2000);
    ck_rows_once(3000);
}
END_TEST

/* The journal_sync_* lines of test_fsync_interval_failure_episodes, in
 * order: F the syncer's failure, R a rotated file's, O works again. */
static pthread_mutex_t g_sl_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_sl[64];
static size_t g_sl_n;

static void sync_lines(void *ud, int level, const char *line)
{
    char ch = 0;
    (void)ud;
    (void)level;
    if (strstr(line, "event=journal_sync_failed") != NULL)
        ch = strstr(line, "rotated file") != NULL ? 'R' : 'F';
    else if (strstr(line, "event=journal_sync_ok") != NULL)
        ch = 'O';
    if (ch == 0)
        return;
    pthread_mutex_lock(&g_sl_mu);
    if (g_sl_n < sizeof g_sl - 1)
        g_sl[g_sl_n++] = ch;
    g_sl[g_sl_n] = '\0';
    pthread_mutex_unlock(&g_sl_mu);
}

/* The lines so far once there are n of them (or at the deadline). */
static const char *sl_wait(size_t n)
{
    static char out[64];
    int64_t end = tu_now_ms() + TU_WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&g_sl_mu);
        memcpy(out, g_sl, sizeof out);
        pthread_mutex_unlock(&g_sl_mu);
        if (strlen(out) >= n || tu_now_ms() > end)
            return out;
        usleep(1000);
    }
}

/* At the fsync-interval level a failing fdatasync (the syncer's, or a
 * rotated file's) is said once per episode, and its end once; the lines
 * come out in the order of the states they report (journal.c: written
 * under sync_log_mu, taken before sync_mu is let go). */
START_TEST(test_fsync_interval_failure_episodes)
{
    defer_config c;
    defer_pool *p;
    const char *got;

    g_level = DEFER_JOURNAL_FSYNC_INTERVAL;
    c = jcfg();
    c.journal_sync_interval_ms = 1;
    c.journal_rotate_bytes = 4096;
    c.log = sync_lines;
    g_sl_n = 0;
    g_sl[0] = '\0';
    p = mkpool_cfg(&c);
    atomic_store(&defer__journal_fault, DEFER_JFAULT_SYNC_FAILS);
    submit_writes(p, 0, 1);
    ck_assert_str_eq(sl_wait(1), "F");
    atomic_store(&defer__journal_fault, 0);
    submit_writes(p, 1, 2);
    ck_assert_str_eq(sl_wait(2), "FO");
    /* A second episode, rotations in it (about 40 records a file): the
     * first failure of it is said, by the syncer or a rotation; no
     * other until it ends. */
    atomic_store(&defer__journal_fault, DEFER_JFAULT_SYNC_FAILS);
    submit_writes(p, 2, 300);
    got = sl_wait(3);
    ck_assert_msg(strcmp(got, "FOF") == 0 || strcmp(got, "FOR") == 0,
                  "lines %s", got);
    atomic_store(&defer__journal_fault, 0);
    submit_writes(p, 300, 301);
    got = sl_wait(4);
    ck_assert_msg(got[3] == 'O' && got[4] == '\0', "lines %s", got);
    run_and_close(p);
    ck_assert_msg(strlen(sl_wait(4)) == 4, "lines %s", g_sl);
    ck_rows_once(301);
}
END_TEST

/* The syncer thread blocks every signal, as the workers do: a caller
 * whose main thread waits for a signal must not lose it to a pool
 * thread (it inherited the creating thread's mask, empty here). */
START_TEST(test_fsync_interval_syncer_blocks_signals)
{
    defer_config c;
    defer_pool *p;
    DIR *d;
    struct dirent *e;
    int found = 0;
    int64_t end;

    g_level = DEFER_JOURNAL_FSYNC_INTERVAL;
    c = jcfg();
    p = mkpool_cfg(&c);
    /* the thread names itself once it runs */
    for (end = tu_now_ms() + TU_WAIT_MS; found == 0 && tu_now_ms() < end;) {
        d = opendir("/proc/self/task");
        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d)) != NULL) {
            char path[300], *comm, *status, *blk;
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
            comm = tu_read_file(path, NULL);
            if (comm == NULL || strncmp(comm, "defer-jsync", 11) != 0) {
                free(comm);
                continue;
            }
            free(comm);
            snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
            status = tu_read_file(path, NULL);
            ck_assert_ptr_nonnull(status);
            blk = strstr(status, "SigBlk:\t");
            ck_assert_ptr_nonnull(blk);
            ck_assert_msg(strncmp(blk + 8, "0000000000000000", 16) != 0,
                          "syncer's mask: %.24s", blk);
            free(status);
            found++;
        }
        closedir(d);
        if (found == 0)
            usleep(2000);
    }
    ck_assert_int_eq(found, 1);
    run_and_close(p);
}
END_TEST

/* The sync interval is bounded: 60 s at most. */
START_TEST(test_fsync_interval_bounds)
{
    defer_config c = jcfg();
    defer_pool *p = NULL;
    char eb[256] = "";

    c.journal = DEFER_JOURNAL_FSYNC_INTERVAL;
    c.journal_sync_interval_ms = 60001;
    ck_assert_int_eq(defer_pool_create(&p, &c, eb, sizeof eb), DEFER_EINVAL);
    ck_assert_ptr_nonnull(strstr(eb, "sync interval"));
    ck_assert_ptr_null(p);
}
END_TEST

START_TEST(test_clean_stop_removes_lock_files)
{
    defer_config c = jcfg();
    defer_pool *p = mkpool_cfg(&c);
    defer_pool *q = mkpool_cfg(&c); /* a second process's: journal.1 */

    ck_assert_int_eq(count_lock_files(), 2);
    run_and_close(q);
    ck_assert_int_eq(count_lock_files(), 1);
    run_and_close(p);
    ck_assert_int_eq(count_lock_files(), 0);
    /* and the next start still works, and locks */
    p = mkpool_cfg(&c);
    ck_assert_int_eq(count_lock_files(), 1);
    run_and_close(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("journal");
    TCase *tc = tcase_create("journal");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_test(tc, test_clean_run_leaves_nothing);
    tcase_add_test(tc, test_crash_replays_exactly_once);
    tcase_add_test(tc, test_admitted_not_submitted_is_replayed);
    tcase_add_test(tc, test_torn_tail_dropped);
    tcase_add_test(tc, test_corrupt_record_set_aside);
    tcase_add_loop_test(tc, test_damaged_length_resyncs, 0, 2);
    tcase_add_test(tc, test_cut_older_file_is_corrupt);
    tcase_add_test(tc, test_duplicate_record_applied_once);
    tcase_add_test(tc, test_poison_goes_to_dead_letter);
    tcase_add_test(tc, test_rotation_bounds_the_files);
    tcase_add_test(tc, test_append_failure_is_admission_failure);
    tcase_add_test(tc, test_callbacks_are_not_journaled);
    tcase_add_test(tc, test_fsync_level_groups_syncs);
    tcase_add_test(tc, test_second_process_takes_next_journal);
    tcase_add_test(tc, test_concurrent_admitters_group_append);
    tcase_add_test(tc, test_failed_task_does_not_pin_later_files);
    tcase_add_loop_test(tc, test_rotated_file_unlinked_before_rows_pruned, 0,
                        4);
    tcase_add_test(tc, test_renamed_host_keeps_journal_id);
    tcase_add_test(tc, test_journal_without_id_file_is_adopted);
    tcase_add_test(tc, test_out_of_order_duplicate_applied_once);
    tcase_add_test(tc, test_clean_stop_removes_lock_files);
    tcase_add_test(tc, test_stop_deadline_bounds_the_last_barrier);
    tcase_add_loop_test(tc, test_crash_during_replay_range_rows, 0, 2);
    tcase_add_test(tc, test_applied_table_without_hi_is_migrated);
    tcase_add_test(tc, test_overlapping_range_rows_skip);
    tcase_add_test(tc, test_applied_table_not_alterable_replays_per_record);
    tcase_add_test(tc, test_segment_runs_cut_at_files);
    tcase_add_test(tc, test_resync_skips_record_inside_a_value);
    tcase_add_test(tc, test_mark_interrupted_at_deadline_is_left);
    tcase_add_test(tc, test_fsync_interval_level);
    tcase_add_test(tc, test_fsync_interval_bounds);
    tcase_add_test(tc, test_fsync_interval_syncer_blocks_signals);
    tcase_add_test(tc, test_fsync_interval_failure_episodes);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
