/*
 * defer_journal.c -- the journal of admitted SQL tasks: appended before
 * the response is final, replayed exactly once at the next start.
 *
 * DESIGN
 *
 * WHAT IS WRITTEN.  One record per SQL task (a qb_query; chains are one
 * record with several links).  Callback tasks (defer_wait_until with a
 * function pointer) are not journaled: a function pointer means nothing
 * to the next process.  A record is
 *
 *     u32 len    payload bytes (little-endian, <= JREC_MAX)
 *     u32 crc    CRC-32C of the payload followed by the 8 bytes of seq
 *     u64 seq    journal sequence number, increasing, never reused
 *     payload    u8 version (1), u8 dialect, u16 label length + label,
 *                u16 links; per link: u32 SQL length + SQL text, u16
 *                nparams, per value u8 type + (INT/BOOL/REAL: 8 bytes;
 *                TEXT/BLOB: u32 length + bytes; NULL: nothing)
 *
 * The SQL is the rendered text of the task's dialect; the values are the
 * bound values (values are bound again at replay, never pasted).
 *
 * WHEN.  defer_admit reserves the request's slots first (so a full queue
 * never touches the file), then encodes the request's SQL tasks (outside
 * any lock) and appends them; only when the append returned does admit
 * answer DEFER_OK, and the caller writes the response and calls
 * FCGX_Finish_r.  A failed append (ENOSPC, EIO) releases the slots and
 * answers DEFER_EJOURNAL: the server answers 503, before the response.
 *
 * GROUP APPEND (PostgreSQL's group commit, the pool's own batches).
 * j->mu is held only to queue a request and assign its sequence numbers
 * (which fixes the file order: the queue order is the seq order), never
 * across a syscall.  The first thread that finds no writer becomes the
 * leader: it takes the whole queue, drops the lock, writev(2)s every
 * waiting request's records at once (fdatasync once at level FSYNC),
 * then wakes them all; threads that queued meanwhile form the next
 * group.  A failed or short write is cut back with ftruncate to the size
 * before the group, so a failed group leaves no bytes behind it (a torn
 * record can only be the last one: a crash during write(2)).  If even
 * that fails the journal is broken: every later append fails (503).
 *
 * WHAT EACH LEVEL SURVIVES.  write: once write(2) returned, the bytes
 * are in the kernel's page cache; the process may die at any instant
 * (SIGKILL, a crash) and nothing answered is lost.  Not power loss or an
 * OS crash.  fsync: the answer waits for the group's fdatasync, a new
 * file's directory entry is synced, and so is the folder after a file is
 * removed: power loss loses nothing answered either (DURABILITY).  off:
 * the queue (up to pool.queue tasks) is lost on any crash.
 *
 * DURABILITY (fsync level).  A commit the database may still lose to
 * power (SQLite WAL with synchronous NORMAL or OFF: the WAL is synced
 * at checkpoints, not at COMMIT; PostgreSQL with synchronous_commit
 * off) is harmless while its records are in the journal: the writes and
 * their applied rows are lost together (a WAL keeps a prefix of its
 * transactions), and the next start replays them.  It only matters once
 * a file is removed.  So before any journal file is removed -- a rotated
 * file in defer__journal_tidy, every file after replay, the current file
 * at a clean stop -- a barrier makes every commit so far durable: one
 * tiny transaction committed with synchronous=FULL (SQLite) or
 * synchronous_commit=on (PostgreSQL), which syncs the log up to itself,
 * hence every commit before it.  That costs one log sync per removed
 * file (one per journal_rotate_bytes, 64 MiB by default) instead of one
 * per group commit, which forcing synchronous=FULL on every commit would
 * cost; with synchronous FULL or EXTRA on SQLite it is skipped.  A
 * barrier that fails keeps the files (retried after the next batch; at
 * a stop they stay, and the next start skips their records; at the
 * start itself the pool fails to start).  Each worker runs one more
 * barrier as it leaves, so a clean stop can remove the current file.
 * Power loss itself cannot be tested here: the tests check the order
 * of the steps by killing the process between them.
 *
 * EXACTLY ONCE.  The transaction that commits a segment of SQL tasks
 * also inserts rows naming every journaled task of the segment into
 * waituntil_applied (defer__journal_mark, just before COMMIT: RANGE
 * ROWS), so the rows and the writes commit or roll back together.  A task that failed
 * alone (its savepoint rolled back) is marked too: its failure was
 * decided and logged; it is not retried.  Tasks of a segment that did
 * not commit (left at the shutdown deadline, a busy or lost database)
 * have no row and are replayed at the next start.  Segments commit out
 * of seq order (several workers), hence rows per segment, not one
 * high-water mark; rows of files already removed are pruned (ROTATION),
 * the newest row is always kept, so sequence numbers stay increasing
 * across restarts.
 *
 * REPLAY (defer_pool_create, after the connections opened, before any
 * worker starts, so before the first accept).  Files in seq order, the
 * records of each in file order (= seq order).  A record whose (jid,
 * seq) row exists, or a range row holding it, is skipped (so is a
 * second copy of a record).  Others
 * run on the first worker's connection, in transactions of up to
 * JREPLAY_CHUNK records, and get their rows in the same transaction
 * (RANGE ROWS).  A chunk runs first without savepoints; if a record
 * fails alone, the chunk is rolled back and run again with a savepoint
 * per record.  A record that fails there is rolled back to its
 * savepoint and written to the dead-letter file (journal_path.dead, one
 * text line: seq, reason, label, SQL with values) -- poison never stops
 * the start; the failure is logged and counted.  A transaction-level
 * failure (busy, disk full) is retried busy_retries times, then the
 * pool fails to start with the journal intact.  When every file is
 * applied they are removed, the rows pruned down to one for the highest
 * seq, and a new file starts at the next seq.
 *
 * RANGE ROWS.  A row of waituntil_applied is (jid, seq, hi): hi NULL is
 * the record seq alone, hi set is every record seq..hi.  The seqs a
 * transaction marks are cut into runs of consecutive seqs a..b that do
 * not cross a file's first seq; a run of two or more gets a range row
 * (a, b-1) and a plain row for b, a lone seq a plain row.  Replay meets
 * records in seq order, so a chunk is usually one run; a worker's
 * segment takes the queue's head, so it is mostly one run too (request
 * threads append in one order and submit in nearly the same).  Two rows
 * a transaction instead of one a record: replay took half the time (its
 * rows were half the b-tree work), and on the normal path a segment of
 * N writes adds 2 rows, not N (defer__journal_mark).  The last row of
 * every run is plain, so max(seq) still finds the highest applied seq
 * (setup_table's index lookup, and any older version's).  The rows
 * matter until their file is removed: a crash leaves them, and the next
 * start's load_applied reads the ranges so that seen() skips their
 * records.  Ranges never overlap (a record is marked once: a segment
 * that rolls back takes its rows with it) and never span two files, so
 * "rows below a file's first seq" (ROTATION) still means whole rows; at
 * the end of replay every row below the highest seq goes, ranges
 * included.  A table made before hi gets the column (ALTER TABLE ADD
 * COLUMN, its rows NULL: one record each).  An older version does not
 * read ranges: going back to one while journal files are still there
 * (after a crash, a failed start, or a stop that left records) would run
 * the records inside range rows again -- and so would an older instance
 * sharing the folder that replays such a journal; the primary key no
 * longer catches a record marked twice either (seen() does, at replay).
 * Rule (README): go back only when no journal file is left, i.e. after
 * a clean stop of this version with nothing pending.  A table the pool may not alter (another role owns it on
 * PostgreSQL; the ALTER waits at most 2 s for its lock there,
 * busy_timeout on SQLite) keeps one row per record (journal_ranges_off,
 * a WARN): slower, exactly as safe.
 *
 * BAD BYTES.  A record whose header or checksum does not hold starts a
 * bad stretch, which ends at the next record that holds (RESYNC) or at
 * the end of the file.  A bad stretch that runs to the end of the LAST
 * file is a torn tail: the process died inside write(2) (or, at the
 * fsync level, power went before the group's fdatasync returned), so it
 * was never acknowledged; it is dropped, counted (torn) and logged at
 * WARN.  Any other bad stretch -- followed by a good record, or at the
 * end of an older file, which was complete when the next file started
 * -- is corruption: its bytes are appended to journal_path.corrupt
 * (synced at the fsync level: the journal file goes after replay),
 * counted (corrupt) and logged at ERROR, and replay goes on after it.
 * defer_journal_inspect classifies the same way.
 *
 * RESYNC.  A damaged length field hides where the next record starts,
 * so we look for it: first where the bad record's own length points (a
 * bad checksum with an intact length: its payload, client values
 * included, is skipped whole), then at every later byte.  A candidate
 * must hold as a record (length in bounds, CRC-32C over payload and seq)
 * and carry a seq above the last good one, by at most 1 + (bytes
 * skipped) / (smallest record size) -- records in between each took at
 * least that much room.  A random false match needs a 32-bit checksum to
 * agree on top of that: about 2^-32 per offset tried, and only ever
 * tried inside bytes already known bad.  The one residual risk is a
 * crafted client value that contains a whole record-shaped byte string
 * (CRC-32C is not a MAC): it could only be picked up if the storage
 * itself damaged the length of the record that holds it, and its seq
 * would have to fall in the window above.  We take that over dropping
 * every acknowledged record after a damaged byte, which is what reading
 * the rest as a torn tail did.
 *
 * ROTATION.  Files are journal_path.<16 hex digits: first seq>.  Past
 * journal_rotate_bytes the leader starts a new file.  Each file counts
 * its records not yet resolved (defer__journal_committed).  After each
 * batch a worker (one at a time) removes the older files whose count is
 * zero, in this order: barrier (fsync level, DURABILITY), unlink, folder
 * fsync (fsync level), and only then publishes "rows below the oldest
 * file left may go", which a later segment's transaction prunes.  A
 * crash between any two steps is safe: a file still present still has
 * all its rows (its records are skipped), a file gone may leave rows
 * (pruned at the next start).  The reverse order (prune, then unlink)
 * replayed a whole file after a crash in between.  A record whose
 * segment never committed keeps its file until the next start replays
 * it.  At a clean shutdown with nothing pending every file is removed
 * (fsync level: once the workers' last barriers succeeded).
 *
 * ONE WRITER PER JOURNAL.  A process holds flock(journal_path.lock) for
 * its life.  A second process on the same path (a binary upgrade, whose
 * old process is still draining; instances sharing a folder) takes the
 * first free of journal_path.1 ... .7, each with its own id in
 * waituntil_applied (ID below).  At start every journal whose lock
 * is free is replayed (a crashed process's journal is replayed by the
 * next start, whatever name that one takes); a journal whose lock is
 * held belongs to a live process and is left alone.  A lock file is
 * removed by its holder (unlinked while the flock is held: the journal
 * it owned at its stop, the others once replayed), and a process that
 * gets a flock checks that the path still names the file it locked
 * (lock_base), so a clean stop leaves no lock file behind.
 *
 * A task whose transaction failed as a whole (busy past busy_retries, a
 * lost PostgreSQL connection past reconnect_ms, a failing or lost
 * database) is reported failed, and its record is resolved without an
 * applied row (defer__journal_committed from finish_sql): failed is
 * failed, as without a journal, and it does not pin its file (one
 * failure episode would otherwise keep every later file until a
 * restart).  Only a crash before that file is removed replays it.
 *
 * ID.  Rows of waituntil_applied are keyed by the journal's id, so the
 * id must not change while the journal holds records (a new id replays
 * every committed record again: the review found PostgreSQL's id,
 * host:path, changing with a renamed host).  The id is random (128 bits
 * from getrandom, hex), kept in journal_path.id (journal_path.K.id for
 * the others), written once -- whole to a temporary file, fsynced,
 * linked to its name (which fails if it exists, as O_EXCL), folder
 * fsynced -- and read at every start; the same rule for both engines.
 * A journal without an id file (written by a version before id files)
 * is replayed under its legacy id (cfg.journal_id, else journal_path,
 * plus .K), as that version named it; once its files are applied and
 * removed the process that will write it creates its id file and
 * deletes the legacy id's rows.  An id file that is not a whole id was
 * never used (nothing is written under an id before its file is whole)
 * and counts as none.  Deleting the id file, or going back to a version
 * without id files, while journal files remain would replay their
 * committed records again: the file belongs with the journal.
 *
 * SYNC INTERVAL (level FSYNC_INTERVAL).  Answers wait for write(2)
 * only.  A thread of the journal's (syncer_main) wakes every
 * journal_sync_interval_ms and fdatasyncs the current file if bytes were
 * appended since its last sync; the leader that rotates syncs the file
 * it leaves before closing it; the clean stop syncs once more.  So power
 * loss loses at most the records answered in the last interval (plus
 * the time an fdatasync takes).  Removal and the folder are synced as
 * with FSYNC (DURABILITY: the barrier before a file goes).  A failing
 * fdatasync is logged once per episode (journal_sync_failed).  Once per
 * rotation the group that rotates does wait for the disk (the new
 * file's folder sync, the old file's fdatasync).  Power loss can leave
 * the tail of an OLDER file damaged (its last bytes were synced after
 * newer ones): BAD BYTES then calls it corruption, not a torn tail --
 * set aside and logged at ERROR, though nothing beyond the interval was
 * lost.
 *
 * LOCK ORDER: j->mu is a leaf lock, never held with pool->mu, never held
 * across I/O or SQL.  j->removing (set under j->mu) lets one worker at a
 * time remove files without holding j->mu across its barrier and
 * unlinks; a tidy that finds it set leaves j->tidy_again (and whether it
 * was a last one), and the remover runs once more before it lets go, so
 * a stop's last barrier is never skipped.  j->sync_mu (SYNC INTERVAL)
 * is taken before j->mu, never while holding it: the syncer holds it
 * across its fdatasync, a rotating leader across closing the file it
 * leaves, so the descriptor synced is never closed (and reused) under
 * it; its journal_sync_ok/_failed lines are written under
 * j->sync_log_mu, taken before sync_mu is released (hand over hand), so
 * they keep the order of the state they report.  A barrier's wait for the
 * SQLite write lock ends at the shutdown's deadline (pool->stop_end_ns),
 * like every lock wait; it then fails, and the files stay for the next
 * start to skip.  On PostgreSQL the shutdown cuts the session of a
 * worker still in its last barrier at the deadline (join_worker in
 * defer_pool.c), with the same outcome.
 */
#define _GNU_SOURCE
#include "config.h"
#include "defer_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define JHDR 16u
#define JREC_MAX ((uint32_t)64 << 20)
#define JREPLAY_CHUNK 32768u
#define JROTATE_DEFAULT ((size_t)64 << 20)
#define JVERSION 1u

/* ---- CRC-32C (Castagnoli), table-driven ------------------------------- */

static uint32_t crc_tab[256];
static int crc_use_hw; /* set once by crc_init */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    uint32_t i, k, c;
    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_tab[i] = c;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    crc_use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n-- > 0)
        crc = crc_tab[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* SSE4.2's crc32 instruction computes the same CRC-32C (replay reads
 * every byte of the journal through it: 8 bytes a cycle or so). */
__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t crc, const unsigned char *p, size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

/* Running CRC: start with crc = 0xFFFFFFFF, finish with ~crc. */
static uint32_t crc_update(uint32_t crc, const void *buf, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (crc_use_hw)
        return crc_hw(crc, buf, n);
#endif
    return crc_sw(crc, buf, n);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The record's checksum: payload, then seq. */
static uint32_t rec_crc(uint32_t payload_crc, uint64_t seq)
{
    unsigned char s[8];
    put64(s, seq);
    return ~crc_update(payload_crc, s, 8);
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct jbuf {
    unsigned char *p;
    size_t len, cap;
    int oom;
} jbuf;

static void jb_need(jbuf *b, size_t n)
{
    size_t cap;
    unsigned char *np;
    if (b->oom)
        return;
    if (n <= b->cap - b->len)
        return;
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return;
        }
        cap *= 2;
    }
    np = realloc(b->p, cap);
    if (np == NULL) {
        b->oom = 1;
        return;
    }
    b->p = np;
    b->cap = cap;
}

static void jb_put(jbuf *b, const void *p, size_t n)
{
    jb_need(b, n);
    if (!b->oom && n > 0) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

static void jb_u8(jbuf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    jb_put(b, &c, 1);
}

static void jb_u16(jbuf *b, unsigned v)
{
    unsigned char c[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    jb_put(b, c, 2);
}

static void jb_u32(jbuf *b, uint32_t v)
{
    unsigned char c[4];
    put32(c, v);
    jb_put(b, c, 4);
}

static void jb_u64(jbuf *b, uint64_t v)
{
    unsigned char c[8];
    put64(c, v);
    jb_put(b, c, 8);
}

/* Append one record for q (seq and crc left to seal()).  Returns the
 * payload's running CRC via *pcrc; DEFER_OK, DEFER_ENOMEM, or
 * DEFER_EINVAL for a value that cannot be journaled. */
static int encode_task(jbuf *b, const defer_task *t, uint32_t *pcrc)
{
    const qb_query *q = t->arg, *l;
    size_t start = b->len, lab = strlen(t->label), nl = 0, i;
    size_t plen;

    for (l = q; l != NULL; l = qb_query_next(l))
        nl++;
    if (nl > 0xFFFF)
        return DEFER_EINVAL;
    jb_need(b, JHDR);
    if (b->oom)
        return DEFER_ENOMEM;
    memset(b->p + b->len, 0, JHDR);
    b->len += JHDR;
    jb_u8(b, JVERSION);
    jb_u8(b, (unsigned)qb_query_dialect(q));
    jb_u16(b, (unsigned)lab);
    jb_put(b, t->label, lab);
    jb_u16(b, (unsigned)nl);
    for (l = q; l != NULL; l = qb_query_next(l)) {
        const char *sql = qb_query_sql(l);
        size_t sl = strlen(sql), np = qb_query_nparams(l);
        const qb_value *v = qb_query_params(l);
        if (sl > JREC_MAX || np > 0xFFFF)
            return DEFER_EINVAL;
        jb_u32(b, (uint32_t)sl);
        jb_put(b, sql, sl);
        jb_u16(b, (unsigned)np);
        for (i = 0; i < np; i++) {
            double d;
            uint64_t u;
            switch (v[i].type) {
            case QB_V_NULL:
                jb_u8(b, QB_V_NULL);
                break;
            case QB_V_INT:
            case QB_V_BOOL:
                /* BOOL keeps its type: PostgreSQL binds it as boolean,
                 * and a bigint is refused for a boolean column. */
                jb_u8(b, v[i].type);
                jb_u64(b, (uint64_t)v[i].u.i);
                break;
            case QB_V_REAL:
                d = v[i].u.d;
                memcpy(&u, &d, 8);
                jb_u8(b, QB_V_REAL);
                jb_u64(b, u);
                break;
            case QB_V_TEXT:
            case QB_V_BLOB:
                if (v[i].u.b.n > JREC_MAX)
                    return DEFER_EINVAL;
                jb_u8(b, v[i].type);
                jb_u32(b, (uint32_t)v[i].u.b.n);
                jb_put(b, v[i].u.b.p, v[i].u.b.n);
                break;
            default:
                return DEFER_EINVAL; /* RAW/SELECT are never bound */
            }
        }
    }
    if (b->oom)
        return DEFER_ENOMEM;
    plen = b->len - start - JHDR;
    if (plen > JREC_MAX)
        return DEFER_EINVAL;
    put32(b->p + start, (uint32_t)plen);
    *pcrc = crc_update(0xFFFFFFFFu, b->p + start + JHDR, plen);
    return DEFER_OK;
}

/* Replay builds each record's statement from its SQL text; records of a
 * route share it, so the rendered statement is kept (qb_query_rebind:
 * no lexing per record).  A few entries, replaced round-robin. */
#define QCACHE 8
typedef struct qcache {
    char *sql[QCACHE];
    size_t len[QCACHE];
    unsigned dialect[QCACHE];
    size_t np[QCACHE];
    qb_query *tpl[QCACHE];
    unsigned next;
} qcache;

static void qcache_free(qcache *c)
{
    unsigned i;
    for (i = 0; i < QCACHE; i++) {
        free(c->sql[i]);
        qb_query_free(c->tpl[i]);
    }
    memset(c, 0, sizeof *c);
}

/* sql: up to sl bytes, not NUL-terminated (the record's own bytes:
 * copied only when the cache misses); the text ends at a NUL inside,
 * as the copy it used to be (strndup) did. */
static int build_query(qcache *c, unsigned dialect, const char *sql,
                       size_t sl, size_t np, const qb_value *vals,
                       qb_query **out)
{
    unsigned i;
    int rc;
    sl = strnlen(sql, sl);
    if (c == NULL) {
        char *z = strndup(sql, sl);
        if (z == NULL)
            return QB_ENOMEM;
        rc = qb_query_raw_dialect(out, (qb_dialect)dialect, z, np, vals,
                                  QB_FETCH_NONE);
        free(z);
        return rc;
    }
    for (i = 0; i < QCACHE; i++)
        if (c->tpl[i] != NULL && c->dialect[i] == dialect &&
            c->np[i] == np && c->len[i] == sl &&
            memcmp(c->sql[i], sql, sl) == 0)
            return qb_query_rebind(c->tpl[i], np, vals, out);
    i = c->next++ % QCACHE;
    free(c->sql[i]);
    qb_query_free(c->tpl[i]);
    c->tpl[i] = NULL;
    c->sql[i] = strndup(sql, sl);
    if (c->sql[i] == NULL)
        return QB_ENOMEM;
    c->len[i] = sl;
    rc = qb_query_raw_dialect(&c->tpl[i], (qb_dialect)dialect, c->sql[i], np,
                              vals, QB_FETCH_NONE);
    if (rc != QB_OK) {
        free(c->sql[i]);
        c->sql[i] = NULL;
        c->tpl[i] = NULL;
        return rc;
    }
    c->dialect[i] = dialect;
    c->np[i] = np;
    return qb_query_rebind(c->tpl[i], np, vals, out);
}

/* A decoded record: the queries to run and the label.  Values point into
 * the record (qb_query_raw_dialect copies them). */
typedef struct jrec {
    uint64_t seq;
    const unsigned char *rec;   /* header + payload */
    size_t rec_len;
} jrec;

/* Decode rec's payload into queries (a chain run in order).  QB codes;
 * on failure why says what is malformed. */
static int decode(qcache *cache, const unsigned char *p, size_t n,
                  qb_query ***qs_out,
                  size_t *nq_out, char *label, size_t label_len,
                  char *why, size_t why_len)
{
    size_t pos = 0, nl, k, i;
    unsigned dialect, lab;
    qb_query **qs = NULL;
    qb_value vbuf[16], *vals = NULL, *vheap = NULL;
    int rc = QB_EINVAL;

#define NEED(x)                                                              \
    do {                                                                     \
        if ((size_t)(x) > n - pos) {                                         \
            snprintf(why, why_len, "record payload cut short");              \
            goto fail;                                                       \
        }                                                                    \
    } while (0)

    *qs_out = NULL;
    *nq_out = 0;
    NEED(4);
    if (p[0] != JVERSION) {
        snprintf(why, why_len, "unknown record version %u", p[0]);
        goto fail;
    }
    dialect = p[1];
    lab = (unsigned)p[2] | (unsigned)p[3] << 8;
    pos = 4;
    NEED(lab);
    if (label_len > 0) { /* as snprintf "%.*s" did, without its cost */
        size_t ll = strnlen((const char *)p + pos, lab);
        if (ll > label_len - 1)
            ll = label_len - 1;
        memcpy(label, p + pos, ll);
        label[ll] = '\0';
    }
    pos += lab;
    NEED(2);
    nl = (size_t)p[pos] | (size_t)p[pos + 1] << 8;
    pos += 2;
    qs = calloc(nl ? nl : 1, sizeof *qs);
    if (qs == NULL) {
        rc = QB_ENOMEM;
        goto fail;
    }
    for (k = 0; k < nl; k++) {
        size_t sl, np;
        const char *sql;
        NEED(4);
        sl = get32(p + pos);
        pos += 4;
        NEED(sl);
        sql = (const char *)p + pos; /* sl bytes, in the record */
        pos += sl;
        NEED(2);
        np = (size_t)p[pos] | (size_t)p[pos + 1] << 8;
        pos += 2;
        if (np <= sizeof vbuf / sizeof vbuf[0]) {
            vals = vbuf; /* no allocation for the usual few values */
        } else {
            free(vheap);
            vals = vheap = calloc(np, sizeof *vals);
            if (vals == NULL) {
                rc = QB_ENOMEM;
                goto fail;
            }
        }
        for (i = 0; i < np; i++) {
            unsigned ty;
            uint64_t u;
            NEED(1);
            ty = p[pos++];
            switch (ty) {
            case QB_V_NULL:
                vals[i] = qb_null();
                break;
            case QB_V_INT:
            case QB_V_BOOL:
            case QB_V_REAL:
                NEED(8);
                u = get64(p + pos);
                pos += 8;
                if (ty == QB_V_INT) {
                    vals[i] = qb_int((int64_t)u);
                } else if (ty == QB_V_BOOL) {
                    vals[i] = qb_bool(u != 0);
                } else {
                    double d;
                    memcpy(&d, &u, 8);
                    vals[i] = qb_real(d);
                }
                break;
            case QB_V_TEXT:
            case QB_V_BLOB: {
                size_t vl;
                NEED(4);
                vl = get32(p + pos);
                pos += 4;
                NEED(vl);
                vals[i] = ty == QB_V_TEXT
                              ? qb_textn((const char *)p + pos, vl)
                              : qb_blob(p + pos, vl);
                pos += vl;
                break;
            }
            default:
                snprintf(why, why_len, "unknown value type %u", ty);
                goto fail;
            }
        }
        rc = build_query(cache, dialect, sql, sl, np, vals, &qs[k]);
        if (rc != QB_OK) {
            snprintf(why, why_len, "rebuilding the query: %s",
                     qb_strerror(rc));
            goto fail;
        }
    }
    if (pos != n) {
        snprintf(why, why_len, "trailing bytes in record");
        rc = QB_EINVAL;
        goto fail;
    }
    free(vheap);
    *qs_out = qs;
    *nq_out = nl;
    return QB_OK;
fail:
    free(vheap);
    if (qs != NULL)
        for (k = 0; k < nl; k++)
            qb_query_free(qs[k]);
    free(qs);
    return rc == QB_OK ? QB_EINVAL : rc;
#undef NEED
}

static void free_qs(qb_query **qs, size_t n)
{
    size_t i;
    if (qs == NULL)
        return;
    for (i = 0; i < n; i++)
        qb_query_free(qs[i]);
    free(qs);
}

/* ---- scanning a file ---------------------------------------------------- */

/* The record at buf[pos..n), if its header and checksum hold: 1 with *r
 * filled, else 0 (cut short, a length out of bounds, a bad checksum). */
static int rec_at(const unsigned char *buf, size_t n, size_t pos, jrec *r)
{
    size_t left = n - pos;
    uint32_t len, crc;
    uint64_t seq;

    if (left < JHDR)
        return 0;
    len = get32(buf + pos);
    crc = get32(buf + pos + 4);
    seq = get64(buf + pos + 8);
    if (len > JREC_MAX || len > left - JHDR)
        return 0;
    if (rec_crc(crc_update(0xFFFFFFFFu, buf + pos + JHDR, len), seq) != crc)
        return 0;
    r->seq = seq;
    r->rec = buf + pos;
    r->rec_len = JHDR + (size_t)len;
    return 1;
}

/* Smallest record: header + version, dialect, label length, links. */
#define JREC_MIN (JHDR + 6u)

/* The bad record at buf[bad..n): where does the next good one start?
 * n when none does (the bad bytes run to the end of the file).  prev is
 * the seq of the last good record before it (or the file's first seq -
 * 1).  See RESYNC in the DESIGN comment: the bad record's own length is
 * tried first (only its checksum may be bad: its payload, which holds
 * client values, is then skipped whole), then every later offset; a
 * candidate must validate and carry a seq that fits between prev and
 * the bytes skipped (each record in between takes >= JREC_MIN bytes). */
static size_t resync(const unsigned char *buf, size_t n, size_t bad,
                     uint64_t prev)
{
    size_t q;
    jrec r;

    if (n - bad >= JHDR) {
        uint32_t len = get32(buf + bad);
        if (len <= JREC_MAX && len <= n - bad - JHDR) {
            /* A record boundary by the bad record's own length: no seq
             * window here (appends that failed, disk full, used up seqs
             * that have no bytes: a gap is legitimate).  The window is
             * for the byte scan below, where a client value could pose
             * as a record; across such a gap the scan can miss the next
             * record, and the stretch is set aside (or, at the end of
             * the last file, dropped as torn). */
            q = bad + JHDR + len;
            if (q < n && rec_at(buf, n, q, &r) && r.seq > prev)
                return q;
        }
    }
    for (q = bad + 1; q + JREC_MIN <= n; q++) {
        if (buf[q + JHDR] != JVERSION) /* cheap filter before the CRC */
            continue;
        if (rec_at(buf, n, q, &r) && r.seq > prev &&
            r.seq - prev <= 1 + (q - bad) / JREC_MIN)
            return q;
    }
    return n;
}

/* The next stretch of buf from *pos: SCAN_OK, a good record in *r
 * (*pos past it, *prev its seq); or SCAN_BAD, bad bytes from *pos to
 * *bad_end (the next good record, or n).  The caller decides what a bad
 * stretch is: a torn tail only when it ends the last file. */
enum { SCAN_OK = 0, SCAN_BAD };

static int scan_next(const unsigned char *buf, size_t n, size_t *pos,
                     uint64_t *prev, jrec *r, size_t *bad_end)
{
    if (rec_at(buf, n, *pos, r)) {
        *pos += r->rec_len;
        *prev = r->seq;
        return SCAN_OK;
    }
    *bad_end = resync(buf, n, *pos, *prev);
    return SCAN_BAD;
}

/* The file's bytes, mapped read-only (no copy: replay reads each byte
 * once).  *out NULL for an empty file.  unmap_all releases. */
static int map_all(const char *path, unsigned char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    void *m;
    *out = NULL;
    *len = 0;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        return 0;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    (void)madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
    *out = m;
    *len = (size_t)st.st_size;
    return 0;
}

static void unmap_all(unsigned char *p, size_t len)
{
    if (p != NULL)
        (void)munmap(p, len);
}

static int read_all(const char *path, unsigned char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    unsigned char *b;
    size_t got = 0;

    *out = NULL;
    *len = 0;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    b = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (b == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, b + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    *out = b;
    *len = got;
    return 0;
}

/* ---- the journal -------------------------------------------------------- */

typedef struct jfile {
    struct jfile *next;
    uint64_t first;            /* from the name: lower bound of its seqs */
    uint64_t last;             /* highest seq written into it */
    uint64_t pending;          /* records not committed */
    uint64_t size;
    char *path;
} jfile;

typedef struct jreq {
    struct jreq *next;
    unsigned char *buf;
    size_t len;
    uint64_t last_seq;
    size_t nrec;
    int done;
    int rc;
} jreq;

struct defer_journal {
    pthread_mutex_t mu;        /* leaf lock; never across I/O */
    pthread_cond_t cv;         /* a group was written */
    defer_pool *pool;
    int level;
    int fd;                    /* the current (newest) file */
    int lock_fd;               /* flock on base.lock, held for life */
    size_t rotate;
    char *base, *dir, *name, *dead_path, *jid;
    uint64_t next_seq;
    jfile *files, *cur;        /* oldest first; cur is the last */
    jreq *qhead, *qtail;
    int writing, broken;
    int removing;              /* a worker is removing files (tidy) */
    int tidy_again, tidy_again_last; /* a tidy came while removing: the
                                  remover runs once more (as last if any
                                  of them was) before it lets go */
    int need_barrier;          /* fsync level, commits not durable at
                                  COMMIT: see DURABILITY */
    uint64_t resolved_gen;     /* bumped by each defer__journal_committed */
    uint64_t durable_gen;      /* resolved_gen at the last barrier */
    char *sync_restore;        /* SQLite: the configured synchronous */
    /* FSYNC_INTERVAL (SYNC INTERVAL above): the syncer thread.  sync_mu
     * is held across its fdatasync and across closing a rotated file's
     * descriptor, so the one it syncs is never closed under it; order:
     * sync_mu before mu. */
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;    /* the syncer's sleep; stop */
    /* Taken under sync_mu and held, once sync_mu is released, across the
     * journal_sync_ok/_failed line (hand over hand): the lines come out
     * in the order of the state changes, and sync_mu is free while one
     * is written.  Order: sync_mu before sync_log_mu; never with mu. */
    pthread_mutex_t sync_log_mu;
    pthread_t syncer;
    int syncer_started, syncer_stop;
    unsigned sync_interval_ms;
    uint64_t synced_bytes;     /* j->bytes at the last interval sync */
    int sync_failing;          /* the last interval sync failed (logged) */
    qb_query *mark_tpl, *prune_tpl;
    qb_query *range_tpl;       /* NULL: no hi column (RANGE ROWS) */
    int ranges;                /* waituntil_applied has hi */
    uint64_t prune_below, pruned; /* rows seq < prune_below may go */
    /* counters (under mu) */
    uint64_t appends, records, bytes, pending, file_bytes, fsyncs, fsync_ns,
        failed, replayed, skipped, dead, torn, corrupt;
};

static void jlog(defer_pool *p, int level, const char *event, int rc,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void jlog(defer_pool *p, int level, const char *event, int rc,
                 const char *fmt, ...)
{
    char d[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d, sizeof d, fmt, ap);
    va_end(ap);
    defer__log(p, level, event, NULL, -1, rc, d);
}

static void *syncer_main(void *arg);
static void syncer_stop(defer_journal *j);

/* Does this level sync what it writes (new files' folder, dead letters,
 * corrupt copies, the barrier before removing files)?  FSYNC and
 * FSYNC_INTERVAL; only FSYNC syncs before the answer. */
static int syncs(const defer_journal *j)
{
    return j->level == DEFER_JOURNAL_FSYNC ||
           j->level == DEFER_JOURNAL_FSYNC_INTERVAL;
}

static char *file_path(const defer_journal *j, uint64_t first)
{
    char *s = NULL;
    if (asprintf(&s, "%s.%016llx", j->base, (unsigned long long)first) < 0)
        return NULL;
    return s;
}

static void sync_dir(const defer_journal *j)
{
    int fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Open a new current file named for first (not under mu). */
static jfile *file_new(defer_journal *j, uint64_t first, int *fd_out,
                       char *eb, size_t el)
{
    jfile *f = calloc(1, sizeof *f);
    int fd;
    if (f == NULL || (f->path = file_path(j, first)) == NULL) {
        free(f);
        snprintf(eb, el, "out of memory");
        return NULL;
    }
    fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(eb, el, "open %s: %s", f->path, strerror(errno));
        free(f->path);
        free(f);
        return NULL;
    }
    if (syncs(j))
        sync_dir(j);
    f->first = first;
    f->last = first ? first - 1 : 0;
    *fd_out = fd;
    return f;
}

/* Existing journal files, sorted by first seq.  -1 on error (errno). */
typedef struct jname {
    uint64_t first;
    char *path;
} jname;

static int cmp_jname(const void *a, const void *b)
{
    const jname *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int list_files(const char *dir, const char *name, jname **out,
                      size_t *n_out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    jname *v = NULL;
    size_t n = 0, cap = 0, nl = strlen(name);

    *out = NULL;
    *n_out = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        char *end;
        unsigned long long first;
        size_t i;
        if (strncmp(s, name, nl) != 0 || s[nl] != '.' ||
            strlen(s + nl + 1) != 16)
            continue;
        for (i = 0; i < 16; i++)
            if (!strchr("0123456789abcdef", s[nl + 1 + i]))
                break;
        if (i < 16)
            continue;
        first = strtoull(s + nl + 1, &end, 16);
        if (n == cap) {
            jname *nv;
            cap = cap ? cap * 2 : 8;
            nv = realloc(v, cap * sizeof *v);
            if (nv == NULL)
                goto oom;
            v = nv;
        }
        if (asprintf(&v[n].path, "%s/%s", dir, s) < 0)
            goto oom;
        v[n].first = first;
        n++;
    }
    closedir(d);
    if (n > 1) /* (qsort's base may not be NULL, even for 0 items) */
        qsort(v, n, sizeof *v, cmp_jname);
    *out = v;
    *n_out = n;
    return 0;
oom:
    closedir(d);
    while (n > 0)
        free(v[--n].path);
    free(v);
    errno = ENOMEM;
    return -1;
}

static void free_names(jname *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(v[i].path);
    free(v);
}

/* Split base into directory and file name. */
static int split_base(defer_journal *j, const char *base)
{
    const char *slash = strrchr(base, '/');
    j->base = strdup(base);
    if (slash == NULL) {
        j->dir = strdup(".");
        j->name = strdup(base);
    } else {
        j->dir = slash == base ? strdup("/")
                               : strndup(base, (size_t)(slash - base));
        j->name = strdup(slash + 1);
    }
    if (asprintf(&j->dead_path, "%s.dead", base) < 0)
        j->dead_path = NULL;
    return j->base && j->dir && j->name && j->dead_path && j->name[0];
}

static void unlock_base(const char *base, int fd);

static void journal_free(defer_journal *j)
{
    jfile *f, *next;
    if (j == NULL)
        return;
    if (j->fd >= 0)
        close(j->fd);
    unlock_base(j->base, j->lock_fd);
    for (f = j->files; f != NULL; f = next) {
        next = f->next;
        free(f->path);
        free(f);
    }
    qb_query_free(j->mark_tpl);
    qb_query_free(j->prune_tpl);
    qb_query_free(j->range_tpl);
    free(j->base);
    free(j->dir);
    free(j->name);
    free(j->dead_path);
    free(j->jid);
    free(j->sync_restore);
    (void)pthread_cond_destroy(&j->sync_cv);
    (void)pthread_mutex_destroy(&j->sync_mu);
    (void)pthread_mutex_destroy(&j->sync_log_mu);
    (void)pthread_cond_destroy(&j->cv);
    (void)pthread_mutex_destroy(&j->mu);
    free(j);
}

/* ---- replay ------------------------------------------------------------- */

static int run_raw(qb_conn *db, qb_dialect d, const char *sql, size_t n,
                   const qb_value *v, qb_result **res)
{
    qb_query *q = NULL;
    int rc = qb_query_raw_dialect(&q, d, sql, n, v,
                                  res ? QB_FETCH_ALL : QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_exec(db, q, res);
    qb_query_free(q);
    return rc;
}

/* ---- durability barrier (DURABILITY above) ------------------------------ */

atomic_int defer__journal_fault;
atomic_uint defer__journal_replay_chunk;

/* Make every transaction committed on this database so far durable: one
 * tiny write transaction whose COMMIT waits for the disk (SQLite:
 * synchronous=FULL for it, which syncs the WAL, hence every frame
 * before it; PostgreSQL: synchronous_commit=on for it, which flushes the
 * WAL up to its commit record).  It inserts and deletes a row (jid, 0):
 * a transaction that changed nothing would not sync anything.  QB_OK or
 * a qb code; db is left outside any transaction. */
static int barrier(defer_journal *j, qb_conn *db)
{
    qb_dialect d = qb_conn_dialect(db);
    qb_value v[2] = {qb_text(j->jid), qb_int(0)};
    int rc, rc2 = QB_OK;

    if (qb_in_transaction(db))
        return QB_EMISUSE;
    rc = d == QB_DIALECT_SQLITE
             ? run_raw(db, d, "PRAGMA synchronous=FULL", 0, NULL, NULL)
             : QB_OK;
    if (rc == QB_OK)
        rc = qb_begin(db);
    if (rc == QB_OK && d != QB_DIALECT_SQLITE)
        rc = run_raw(db, d, "SET LOCAL synchronous_commit = on", 0, NULL,
                     NULL);
    if (rc == QB_OK)
        rc = run_raw(db, d, "INSERT INTO waituntil_applied (jid, seq) "
                     "VALUES (?1, ?2)", 2, v, NULL);
    if (rc == QB_OK)
        rc = run_raw(db, d, "DELETE FROM waituntil_applied WHERE jid = ?1 "
                     "AND seq = ?2", 2, v, NULL);
    if (rc == QB_OK)
        rc = qb_commit(db);
    if (rc != QB_OK && qb_in_transaction(db))
        (void)qb_rollback(db);
    if (d == QB_DIALECT_SQLITE) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA synchronous=%s",
                 j->sync_restore ? j->sync_restore : "NORMAL");
        rc2 = run_raw(db, d, sql, 0, NULL, NULL);
    }
    return rc != QB_OK ? rc : rc2;
}

/* fdatasync, or (test-only, DEFER_JFAULT_SYNC_FAILS) EIO. */
static int jdatasync(int fd)
{
    if (atomic_load(&defer__journal_fault) == DEFER_JFAULT_SYNC_FAILS) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static void fault_point(int which)
{
    if (atomic_load(&defer__journal_fault) == which)
        (void)raise(SIGKILL);
}

/* The dead-letter file: one line per record that failed at replay. */
static void dead_letter(defer_journal *j, uint64_t seq, const char *label,
                        qb_query **qs, size_t nq, const char *why)
{
    FILE *f = fopen(j->dead_path, "ae");
    size_t i;
    if (f == NULL) {
        jlog(j->pool, DEFER_LOG_ERROR, "journal_dead_letter_failed", 0,
             "path=%s error=\"%s\" seq=%llu", j->dead_path, strerror(errno),
             (unsigned long long)seq);
        return;
    }
    fprintf(f, "seq=%llu label=%s reason=\"%s\"",
            (unsigned long long)seq, label, why);
    for (i = 0; i < nq; i++) {
        char *s = qb_query_debug_sql(qs[i]);
        fprintf(f, " sql=\"%s\"", s ? s : "?");
        free(s);
    }
    fputc('\n', f);
    if (syncs(j))
        (void)fflush(f), (void)fdatasync(fileno(f));
    fclose(f);
}

/* A bad stretch buf[from..to) of file path (not a torn tail): appended
 * to journal_path.corrupt, logged at ERROR.  The journal file goes once
 * replayed, so the copy is synced first at the fsync level. */
static void save_corrupt(defer_journal *j, const char *path,
                         const unsigned char *buf, size_t from, size_t to)
{
    char *cp = NULL;
    FILE *f;
    int ok = 0;
    if (asprintf(&cp, "%s.corrupt", j->base) < 0)
        cp = NULL;
    f = cp != NULL ? fopen(cp, "ae") : NULL;
    if (f != NULL) {
        ok = fwrite(buf + from, 1, to - from, f) == to - from;
        if (ok && syncs(j))
            ok = fflush(f) == 0 && fdatasync(fileno(f)) == 0;
        if (fclose(f) != 0)
            ok = 0;
    }
    jlog(j->pool, DEFER_LOG_ERROR, "journal_corrupt", 0,
         "file=%s offset=%zu bytes=%zu saved=%s%s", path, from, to - from,
         cp ? cp : "-", ok ? "" : " (could not save them: lost)");
    free(cp);
}

typedef struct replay {
    defer_journal *j;
    qb_conn *db;
    qb_dialect d;
    uint64_t max_seq;          /* highest seq seen (files and table) */
    uint64_t *applied;         /* rows of waituntil_applied at start, */
    size_t napplied;           /* sorted */
    uint64_t *ranges;          /* its range rows (lo, hi) at start, as */
    size_t nranges;            /* pairs sorted by lo (RANGE ROWS) */
    uint64_t *done;            /* seqs run or dead-lettered by this */
    size_t ndone, cap_done;    /* replay, in the order they were */
    int done_sorted;           /* (sorted while they come in order) */
    qcache cache;
    qb_query *mark_tpl, *range_tpl; /* range_tpl NULL: no hi column */
    int has_hi;                /* waituntil_applied has hi (RANGE ROWS) */
} replay;

static int has_seq(const uint64_t *v, size_t n, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] == seq)
            return 1;
        if (v[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_range(const void *a, const void *b)
{
    return cmp_u64(a, b); /* by lo, the pair's first element */
}

/* The applied rows (one query, sorted in memory): no query per record.
 * A row with hi is a range lo..hi (RANGE ROWS), kept apart. */
static int load_applied(replay *rp)
{
    qb_value v = qb_text(rp->j->jid);
    qb_result *res = NULL;
    size_t i, n, ns = 0, nr = 0;
    int rc = run_raw(rp->db, rp->d,
                     rp->has_hi ? "SELECT seq, hi FROM waituntil_applied "
                                  "WHERE jid = ?1"
                                : "SELECT seq, NULL FROM waituntil_applied "
                                  "WHERE jid = ?1",
                     1, &v, &res);
    if (rc != QB_OK)
        return rc;
    n = qb_result_rows(res);
    for (i = 0; i < n; i++)
        nr += !qb_result_is_null(res, i, 1);
    rp->applied = malloc((n - nr ? n - nr : 1) * sizeof *rp->applied);
    rp->ranges = malloc((nr ? 2 * nr : 1) * sizeof *rp->ranges);
    if (rp->applied == NULL || rp->ranges == NULL) {
        qb_result_free(res);
        return QB_ENOMEM;
    }
    nr = 0;
    for (i = 0; i < n; i++) {
        uint64_t seq = (uint64_t)qb_result_int(res, i, 0);
        if (qb_result_is_null(res, i, 1)) {
            rp->applied[ns++] = seq;
        } else {
            rp->ranges[2 * nr] = seq;
            rp->ranges[2 * nr + 1] = (uint64_t)qb_result_int(res, i, 1);
            nr++;
        }
    }
    rp->napplied = ns;
    rp->nranges = nr;
    qb_result_free(res);
    if (ns > 1)
        qsort(rp->applied, ns, sizeof *rp->applied, cmp_u64);
    if (nr > 1)
        qsort(rp->ranges, nr, 2 * sizeof *rp->ranges, cmp_range);
    /* Each hi becomes the highest hi so far: then "some range holds
     * seq" is "the last range with lo <= seq has hi >= seq" even if
     * ranges overlapped (replay never writes overlapping ones). */
    for (i = 1; i < nr; i++)
        if (rp->ranges[2 * i + 1] < rp->ranges[2 * i - 1])
            rp->ranges[2 * i + 1] = rp->ranges[2 * i - 1];
    return QB_OK;
}

/* In a range row: the last range whose lo <= seq, with its hi raised to
 * the highest of the ranges before it (load_applied). */
static int in_ranges(const replay *rp, uint64_t seq)
{
    size_t lo = 0, hi = rp->nranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rp->ranges[2 * mid] <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && seq <= rp->ranges[2 * (lo - 1) + 1];
}

/* Run or dead-lettered already: in the table's rows (applied, sorted by
 * load_applied) or in this replay's (done: a binary search only while
 * it came in order -- it is not sorted in place, as a chunk that is
 * retried truncates it back to its length before the chunk; "above the
 * last one" means "not there" only while it is sorted). */
static int seen(replay *rp, uint64_t seq)
{
    size_t i;
    if (has_seq(rp->applied, rp->napplied, seq) || in_ranges(rp, seq))
        return 1;
    if (rp->ndone == 0)
        return 0;
    if (rp->done_sorted)
        return seq <= rp->done[rp->ndone - 1] &&
               has_seq(rp->done, rp->ndone, seq);
    for (i = 0; i < rp->ndone; i++) /* records out of seq order: rare */
        if (rp->done[i] == seq)
            return 1;
    return 0;
}

static int note_done(replay *rp, uint64_t seq)
{
    if (rp->ndone == rp->cap_done) {
        size_t cap = rp->cap_done ? rp->cap_done * 2 : 4096;
        uint64_t *nd = realloc(rp->done, cap * sizeof *nd);
        if (nd == NULL)
            return QB_ENOMEM;
        rp->done = nd;
        rp->cap_done = cap;
    }
    if (rp->ndone > 0 && seq < rp->done[rp->ndone - 1])
        rp->done_sorted = 0;
    rp->done[rp->ndone++] = seq;
    return QB_OK;
}

static int mark_exec(replay *rp, const qb_query *tpl, size_t n,
                     uint64_t a, uint64_t b)
{
    qb_value v[3];
    qb_query *q = NULL;
    int rc;
    v[0] = qb_text_ref(rp->j->jid);
    v[1] = qb_int((int64_t)a);
    v[2] = qb_int((int64_t)b);
    rc = qb_query_rebind(tpl, n, v, &q);
    if (rc == QB_OK)
        rc = qb_exec(rp->db, q, NULL);
    qb_query_free(q);
    return rc;
}

/* The rows of the records this chunk ran or dead-lettered, done[from..
 * ndone), in the chunk's transaction just before its COMMIT: per run of
 * consecutive seqs a..b (replay meets them in seq order, so a chunk is
 * usually one run) a range row a..b-1 and a row for b (RANGE ROWS). */
static int mark_done(replay *rp, size_t from)
{
    size_t k = from;
    while (k < rp->ndone) {
        size_t e = k + 1;
        int rc = QB_OK;
        while (rp->range_tpl != NULL && e < rp->ndone &&
               rp->done[e] == rp->done[e - 1] + 1)
            e++;
        if (e - k > 1)
            rc = mark_exec(rp, rp->range_tpl, 3, rp->done[k],
                           rp->done[e - 1] - 1);
        if (rc == QB_OK)
            rc = mark_exec(rp, rp->mark_tpl, 2, rp->done[e - 1], 0);
        if (rc != QB_OK)
            return rc;
        k = e;
    }
    return QB_OK;
}

/* What became of a record in the current pass. */
enum { R_RAN = 0, R_SKIPPED, R_DEAD, R_FAILED_FAST };

/* One record: skip, run, or dead-letter.  With savepoints (sp) a failing
 * record is rolled back alone and dead-lettered; without, a failure is
 * R_FAILED_FAST and the caller redoes the chunk with savepoints (the
 * pool's own first pass / replay pass).  A QB code when the transaction
 * itself failed (the caller retries the chunk). */
static int replay_one(replay *rp, const jrec *r, int sp, int *what)
{
    defer_journal *j = rp->j;
    qb_query **qs = NULL;
    size_t nq = 0, i;
    char label[DEFER_LABEL_MAX + 1] = "-", why[DEFER_ERRMSG_MAX] = "";
    int rc;

    *what = R_SKIPPED;
    if (seen(rp, r->seq))
        return QB_OK;
    rc = decode(&rp->cache, r->rec + JHDR, r->rec_len - JHDR, &qs, &nq,
                label, sizeof label, why, sizeof why);
    if (rc == QB_ENOMEM)
        return rc;
    if (rc == QB_OK) {
        if (sp && (rc = qb_savepoint(rp->db, "wu_journal")) != QB_OK) {
            free_qs(qs, nq);
            return rc;
        }
        for (i = 0; i < nq && rc == QB_OK; i++)
            rc = qb_exec(rp->db, qs[i], NULL);
        if (rc == QB_OK) {
            if (sp && (rc = qb_release(rp->db, "wu_journal")) != QB_OK) {
                free_qs(qs, nq);
                return rc;
            }
            *what = R_RAN;
        } else {
            snprintf(why, sizeof why, "%s: %s", qb_strerror(rc),
                     qb_errmsg(rp->db));
            if (rc == QB_EBUSY || rc == QB_ECONN ||
                !qb_in_transaction(rp->db)) {
                free_qs(qs, nq);
                return rc; /* the transaction's problem, not the record's */
            }
            if (!sp) {
                free_qs(qs, nq);
                *what = R_FAILED_FAST;
                return QB_OK;
            }
            rc = qb_rollback_to(rp->db, "wu_journal");
            if (rc != QB_OK) {
                free_qs(qs, nq);
                return rc;
            }
        }
    }
    if (why[0] != '\0') {
        /* Written now, even if the chunk is retried: a line too many in
         * the dead-letter file is better than one missing. */
        dead_letter(j, r->seq, label, qs, nq, why);
        jlog(j->pool, DEFER_LOG_ERROR, "journal_dead_letter", 0,
             "seq=%llu route=%s reason=\"%s\" file=%s",
             (unsigned long long)r->seq, label, why, j->dead_path);
        *what = R_DEAD;
    }
    free_qs(qs, nq);
    return note_done(rp, r->seq); /* its row: mark_done, before COMMIT */
}

/* Replay records in chunks of one transaction each: first without
 * savepoints; a record failing alone rolls the chunk back and it runs
 * again with one savepoint per record.  A QB code on a transaction that
 * kept failing. */
static int replay_records(replay *rp, const jrec *recs, size_t n)
{
    defer_pool *p = rp->j->pool;
    size_t at = 0, chunk = atomic_load(&defer__journal_replay_chunk);
    if (chunk == 0)
        chunk = JREPLAY_CHUNK;
    while (at < n) {
        size_t end = n - at > chunk ? at + chunk : n, i;
        size_t ndone0 = rp->ndone;
        int sorted0 = rp->done_sorted;
        uint64_t nrun = 0, nskip = 0, ndead = 0;
        unsigned tries = 0;
        int rc, sp = 0;
        for (;;) {
            int what = R_RAN, fast_fail = 0;
            nrun = nskip = ndead = 0;
            rc = qb_begin(rp->db);
            for (i = at; i < end && rc == QB_OK; i++) {
                rc = replay_one(rp, &recs[i], sp, &what);
                if (rc != QB_OK)
                    break;
                if (what == R_FAILED_FAST) {
                    fast_fail = 1;
                    break;
                }
                nrun += what == R_RAN;
                nskip += what == R_SKIPPED;
                ndead += what == R_DEAD;
            }
            if (rc == QB_OK && !fast_fail)
                rc = mark_done(rp, ndone0);
            if (rc == QB_OK && !fast_fail)
                rc = qb_commit(rp->db);
            if (rc == QB_OK && !fast_fail)
                break;
            if (qb_in_transaction(rp->db))
                (void)qb_rollback(rp->db);
            /* Nothing of the chunk committed. */
            rp->ndone = ndone0;
            rp->done_sorted = sorted0;
            if (fast_fail) {
                sp = 1;
                continue;
            }
            if (tries++ >= p->cfg.busy_retries)
                return rc;
            if (rc == QB_ECONN)
                (void)qb_reset_until(rp->db, 1000, NULL, NULL);
            usleep(10000u << (tries < 5 ? tries : 5));
        }
        rp->j->replayed += nrun;
        rp->j->skipped += nskip;
        rp->j->dead += ndead;
        at = end;
        fault_point(DEFER_JFAULT_KILL_AFTER_REPLAY_CHUNK);
    }
    return QB_OK;
}

/* Replay one file: scan, replay the valid records, deal with the bad
 * stretches.  first: the file's first seq (from its name); last_file: a
 * bad stretch that runs to its end is a torn tail (see DESIGN). */
static int replay_file(replay *rp, const char *path, uint64_t first,
                       int last_file, char *eb, size_t el)
{
    defer_journal *j = rp->j;
    unsigned char *buf;
    size_t n, pos = 0, nrec = 0, cap = 0, bad_end = 0;
    uint64_t prev = first > 0 ? first - 1 : 0;
    jrec *recs = NULL, r;
    int rc;

    if (map_all(path, &buf, &n) != 0) {
        snprintf(eb, el, "journal: read %s: %s", path, strerror(errno));
        return QB_ESQL;
    }
    while (pos < n) {
        if (scan_next(buf, n, &pos, &prev, &r, &bad_end) == SCAN_BAD) {
            if (bad_end == n && last_file) {
                j->torn++;
                jlog(j->pool, DEFER_LOG_WARN, "journal_torn_tail", 0,
                     "file=%s offset=%zu bytes=%zu (never acknowledged: "
                     "dropped)", path, pos, n - pos);
            } else {
                j->corrupt++;
                save_corrupt(j, path, buf, pos, bad_end);
            }
            pos = bad_end;
            continue;
        }
        if (nrec == cap) {
            jrec *nr;
            cap = cap ? cap * 2 : 1024;
            nr = realloc(recs, cap * sizeof *recs);
            if (nr == NULL) {
                free(recs);
                unmap_all(buf, n);
                snprintf(eb, el, "journal: out of memory");
                return QB_ENOMEM;
            }
            recs = nr;
        }
        recs[nrec++] = r;
        if (r.seq > rp->max_seq)
            rp->max_seq = r.seq;
    }
    rc = replay_records(rp, recs, nrec);
    if (rc != QB_OK)
        snprintf(eb, el, "journal: replaying %s: %s (%s)", path,
                 qb_strerror(rc), qb_errmsg(rp->db));
    free(recs);
    unmap_all(buf, n);
    return rc;
}

static int setup_table(replay *rp, char *eb, size_t el)
{
    qb_result *res = NULL;
    qb_value v = qb_text(rp->j->jid);
    /* One row per applied record, keyed by (journal, seq): on SQLite
     * WITHOUT ROWID, so a row costs one b-tree insert, not two. */
    int rc = run_raw(rp->db, rp->d,
                     rp->d == QB_DIALECT_SQLITE
                         ? "CREATE TABLE IF NOT EXISTS waituntil_applied ("
                           "jid TEXT NOT NULL, seq BIGINT NOT NULL, "
                           "hi BIGINT, "
                           "PRIMARY KEY (jid, seq)) WITHOUT ROWID"
                         : "CREATE TABLE IF NOT EXISTS waituntil_applied ("
                           "jid TEXT NOT NULL, seq BIGINT NOT NULL, "
                           "hi BIGINT, "
                           "PRIMARY KEY (jid, seq))",
                     0, NULL, NULL);
    /* A table made before range rows: add hi (NULL in its rows: one
     * record each).  Looked for first, so an existing column costs no
     * ALTER (no table lock on PostgreSQL); an ALTER that fails is
     * checked again (another process may have added it meanwhile). */
    rp->has_hi = 1;
    if (rc == QB_OK && run_raw(rp->db, rp->d,
                               "SELECT hi FROM waituntil_applied LIMIT 0", 0,
                               NULL, NULL) != QB_OK) {
        /* On PostgreSQL the ALTER waits for an exclusive lock, and every
         * other session's insert queues behind it: wait a bounded time. */
        int pg = rp->d == QB_DIALECT_POSTGRES;
        if (pg)
            (void)run_raw(rp->db, rp->d, "SET lock_timeout = '2s'", 0, NULL,
                          NULL);
        rc = run_raw(rp->db, rp->d,
                     "ALTER TABLE waituntil_applied ADD COLUMN hi BIGINT", 0,
                     NULL, NULL);
        if (pg)
            (void)run_raw(rp->db, rp->d, "RESET lock_timeout", 0, NULL, NULL);
        if (rc != QB_OK &&
            run_raw(rp->db, rp->d, "SELECT hi FROM waituntil_applied LIMIT 0",
                    0, NULL, NULL) != QB_OK) {
            /* Not ours to alter (another role owns the table), or locked
             * past the bound: replay as before, one row per record --
             * slower, exactly as safe. */
            jlog(rp->j->pool, DEFER_LOG_WARN, "journal_ranges_off", 0,
                 "waituntil_applied has no hi column and adding it failed "
                 "(%s): one row per record (replay and workers)",
                 qb_errmsg(rp->db));
            rp->has_hi = 0;
        }
        rc = QB_OK;
    }
    if (rc == QB_OK)
        rc = run_raw(rp->db, rp->d,
                     "SELECT max(seq) FROM waituntil_applied WHERE jid = ?1",
                     1, &v, &res);
    if (rc != QB_OK) {
        snprintf(eb, el, "journal: waituntil_applied: %s (%s)",
                 qb_strerror(rc), qb_errmsg(rp->db));
        qb_result_free(res);
        return rc;
    }
    /* max(seq), not max(hi): a run's last row is plain (RANGE ROWS). */
    if (qb_result_rows(res) > 0 && !qb_result_is_null(res, 0, 0))
        rp->max_seq = (uint64_t)qb_result_int(res, 0, 0);
    qb_result_free(res);
    return QB_OK;
}

static void replay_free(replay *rp)
{
    free(rp->applied);
    free(rp->ranges);
    free(rp->done);
    qcache_free(&rp->cache);
    qb_query_free(rp->mark_tpl);
    qb_query_free(rp->range_tpl);
    rp->applied = rp->ranges = rp->done = NULL;
    rp->mark_tpl = rp->range_tpl = NULL;
}

/* Every row below last (range rows included: their lo is below it, and
 * every seq they cover was in a file just removed). */
static void prune_all_but_last(replay *rp, uint64_t last)
{
    qb_value v[2] = {qb_text(rp->j->jid), qb_int((int64_t)last)};
    /* A failure is harmless for exactly-once (the files are gone, and a
     * later prune takes these rows), but range rows then stay: say so. */
    if (run_raw(rp->db, rp->d,
                "DELETE FROM waituntil_applied WHERE jid = ?1 AND seq < ?2",
                2, v, NULL) != QB_OK)
        jlog(rp->j->pool, DEFER_LOG_WARN, "journal_prune_failed", 0,
             "rows below seq %llu stay in waituntil_applied: %s",
             (unsigned long long)last, qb_errmsg(rp->db));
}

/* Replay the files of the journal j names now (j->dir, name, jid) on db:
 * see REPLAY above.  *max_seq: the highest seq it knows of. */
static int replay_base(defer_journal *j, qb_conn *db, uint64_t *max_seq,
                       char *eb, size_t el)
{
    jname *names = NULL;
    size_t nn = 0, i;
    replay rp;
    qb_value mv[3];
    int rc;

    memset(&rp, 0, sizeof rp);
    rp.j = j;
    rp.db = db;
    rp.d = qb_conn_dialect(db);
    rp.done_sorted = 1;
    mv[0] = qb_text(j->jid);
    mv[1] = qb_int(0);
    mv[2] = qb_int(0);
    rc = setup_table(&rp, eb, el);
    j->ranges = rp.has_hi; /* one table: the same for every base */
    if (rc == QB_OK)
        rc = load_applied(&rp);
    if (rc == QB_OK)
        rc = qb_query_raw_dialect(&rp.mark_tpl, rp.d,
                                  "INSERT INTO waituntil_applied (jid, seq) "
                                  "VALUES (?1, ?2)",
                                  2, mv, QB_FETCH_NONE);
    if (rc == QB_OK && rp.has_hi)
        rc = qb_query_raw_dialect(&rp.range_tpl, rp.d,
                                  "INSERT INTO waituntil_applied "
                                  "(jid, seq, hi) VALUES (?1, ?2, ?3)",
                                  3, mv, QB_FETCH_NONE);
    if (rc != QB_OK) {
        if (eb[0] == '\0')
            snprintf(eb, el, "journal: %s", qb_strerror(rc));
        replay_free(&rp);
        return DEFER_EDB;
    }
    if (list_files(j->dir, j->name, &names, &nn) != 0) {
        snprintf(eb, el, "journal: cannot list %s: %s", j->dir,
                 strerror(errno));
        replay_free(&rp);
        return DEFER_EDB;
    }
    for (i = 0; i < nn; i++) {
        if (names[i].first > 0 && names[i].first - 1 > rp.max_seq)
            rp.max_seq = names[i].first - 1;
        rc = replay_file(&rp, names[i].path, names[i].first,
                         i + 1 == nn, eb, el);
        if (rc != QB_OK) {
            replay_free(&rp);
            free_names(names, nn);
            return rc == QB_ENOMEM ? DEFER_ENOMEM : DEFER_EDB;
        }
    }
    if (nn > 0)
        jlog(j->pool, j->dead || j->torn ? DEFER_LOG_WARN : DEFER_LOG_INFO,
             "journal_replayed", 0,
             "journal=%s files=%zu replayed=%llu skipped=%llu dead=%llu "
             "torn=%llu",
             j->base, nn, (unsigned long long)j->replayed,
             (unsigned long long)j->skipped, (unsigned long long)j->dead,
             (unsigned long long)j->torn);
    /* Everything is committed now: the files can go -- once those
     * commits are durable (fsync level), and their rows only after. */
    if (nn > 0 && j->need_barrier && (rc = barrier(j, db)) != QB_OK) {
        snprintf(eb, el, "journal: making the replayed writes durable: "
                 "%s (%s)", qb_strerror(rc), qb_errmsg(db));
        replay_free(&rp);
        free_names(names, nn);
        return DEFER_EDB;
    }
    for (i = 0; i < nn; i++)
        if (unlink(names[i].path) != 0 && errno != ENOENT) {
            /* Its rows must stay while it does (see ROTATION). */
            snprintf(eb, el, "journal: cannot remove %s: %s",
                     names[i].path, strerror(errno));
            replay_free(&rp);
            free_names(names, nn);
            return DEFER_EDB;
        }
    free_names(names, nn);
    if (nn > 0)
        sync_dir(j);
    prune_all_but_last(&rp, rp.max_seq);
    *max_seq = rp.max_seq;
    replay_free(&rp);
    return DEFER_OK;
}

/* ---- the journal's id (ID above) ----------------------------------------- */

#define JID_HEX 32 /* 128 bits */

/* base.id: 1 with the id in out (JID_HEX hex digits and a NUL), 0 when
 * there is none (or not a whole one: it is written whole before any
 * journal file uses it, so a partial one was never used), -1 on an I/O
 * error (errno). */
static int id_read(const char *base, char out[JID_HEX + 1])
{
    char *path = NULL, buf[JID_HEX + 2];
    ssize_t k;
    int fd, i;

    if (asprintf(&path, "%s.id", base) < 0) {
        errno = ENOMEM;
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    do
        k = read(fd, buf, sizeof buf);
    while (k < 0 && errno == EINTR);
    close(fd);
    if (k < 0)
        return -1;
    if (k != JID_HEX + 1 || buf[JID_HEX] != '\n')
        return 0;
    for (i = 0; i < JID_HEX; i++)
        if (!strchr("0123456789abcdef", buf[i]) || buf[i] == '\0')
            return 0;
    memcpy(out, buf, JID_HEX);
    out[JID_HEX] = '\0';
    return 1;
}

/* Create base.id (j->base, j->dir) with a new random id, durable before
 * it returns: written whole to base.id.tmp and fsynced, then linked to
 * base.id (link fails if it exists: O_EXCL's rule, and a reader never
 * sees half an id), then the folder fsynced.  0, or -1 with eb set. */
static int id_create(defer_journal *j, char out[JID_HEX + 1], char *eb,
                     size_t el)
{
    unsigned char rnd[JID_HEX / 2];
    char *path = NULL, *tmp = NULL, line[JID_HEX + 1];
    size_t got = 0;
    int fd = -1, i, ok = 0;

    while (got < sizeof rnd) {
        ssize_t k = getrandom(rnd + got, sizeof rnd - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(eb, el, "journal: getrandom: %s", strerror(errno));
            return -1;
        }
        got += (size_t)k;
    }
    for (i = 0; i < JID_HEX / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", rnd[i]);
    memcpy(line, out, JID_HEX);
    line[JID_HEX] = '\n';
    if (asprintf(&path, "%s.id", j->base) < 0)
        path = NULL;
    if (path == NULL || asprintf(&tmp, "%s.id.tmp", j->base) < 0) {
        free(path);
        snprintf(eb, el, "out of memory");
        return -1;
    }
    (void)unlink(tmp); /* a crash's leftover */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0 && write(fd, line, sizeof line) == (ssize_t)sizeof line &&
        fsync(fd) == 0 && close(fd) == 0) {
        fd = -1;
        ok = link(tmp, path) == 0;
    }
    if (!ok)
        snprintf(eb, el, "journal: cannot create %s: %s", path,
                 strerror(errno));
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
    if (ok)
        sync_dir(j);
    free(path);
    free(tmp);
    return ok ? 0 : -1;
}

/* Take base's lock (base.lock, flock): >= 0 the fd holding it; -1 with
 * errno EWOULDBLOCK when another live process holds it.
 *
 * LOCK FILES are removed by their holder (unlock_base: unlinked while
 * the flock is held, then closed), so that a clean stop leaves none
 * behind.  The race that makes this safe to do: another process may
 * have opened the file just before the unlink and get the flock once
 * the holder closes -- on an inode no longer at the path, while a third
 * process creates and locks a new file there: two owners.  So after
 * taking the flock we check that the path still names the inode we
 * locked, and start again if not (the pattern of lock-file daemons).  A
 * process of a version without this check starting at the same instant
 * could still be fooled; versions mix only during a binary upgrade,
 * whose new process starts while the old one runs (and holds its
 * lock), not at the same instant. */
static int lock_base(const char *base)
{
    char *lp = NULL;
    int fd = -1, tries;
    if (asprintf(&lp, "%s.lock", base) < 0) {
        errno = ENOMEM;
        return -1;
    }
    for (tries = 0; tries < 100; tries++) {
        struct stat a, b;
        fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            break;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            fd = -1;
            errno = e == EWOULDBLOCK ? EWOULDBLOCK : e;
            break;
        }
        if (fstat(fd, &a) == 0 && stat(lp, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            break; /* ours, and still the one at the path */
        close(fd); /* removed by its last holder meanwhile: again */
        fd = -1;
        errno = EAGAIN;
    }
    free(lp);
    return fd;
}

/* Remove base.lock (ours: fd holds its flock) and release it. */
static void unlock_base(const char *base, int fd)
{
    char *lp = NULL;
    if (fd < 0)
        return;
    if (base != NULL && asprintf(&lp, "%s.lock", base) >= 0) {
        (void)unlink(lp); /* still holding the flock: see lock_base */
        free(lp);
    }
    close(fd);
}

static void names_free(defer_journal *j)
{
    free(j->base);
    free(j->dir);
    free(j->name);
    free(j->dead_path);
    free(j->jid);
    j->base = j->dir = j->name = j->dead_path = j->jid = NULL;
}

/* Replay base (j's names set, j->jid its legacy id) under its id: the
 * one in base.id, else the legacy id.  mine: the journal this process
 * will write; without an id file it gets one once its files are applied
 * (the legacy id's rows are deleted after that: no file of it is left).
 * On DEFER_OK j->jid is the id to write under. */
static int start_base(defer_journal *j, qb_conn *db, const char *base,
                      int mine, uint64_t *ms, char *eb, size_t el)
{
    char id[JID_HEX + 1];
    char *legacy = j->jid;
    int st = id_read(base, id), rc;

    if (st < 0) {
        snprintf(eb, el, "journal: read %s.id: %s", base, strerror(errno));
        return DEFER_EDB;
    }
    if (st == 1 && (j->jid = strdup(id)) == NULL) {
        j->jid = legacy;
        snprintf(eb, el, "out of memory");
        return DEFER_ENOMEM;
    }
    rc = replay_base(j, db, ms, eb, el);
    if (rc == DEFER_OK && st == 0 && mine) {
        char *idp = NULL, *bad = NULL;
        /* Not a whole id (a hand-edited file): set aside, not reused. */
        if (asprintf(&idp, "%s.id", base) >= 0 &&
            asprintf(&bad, "%s.id.bad", base) >= 0 &&
            rename(idp, bad) == 0)
            jlog(j->pool, DEFER_LOG_WARN, "journal_id_invalid", 0,
                 "file=%s (not a whole id: moved to %s)", idp, bad);
        free(idp);
        free(bad);
        if (id_create(j, id, eb, el) != 0)
            return DEFER_EDB;
        if ((j->jid = strdup(id)) == NULL) {
            j->jid = legacy;
            snprintf(eb, el, "out of memory");
            return DEFER_ENOMEM;
        }
        jlog(j->pool, DEFER_LOG_INFO, "journal_id_created", 0,
             "journal=%s id=%s previous_id=%s", base, id, legacy);
        st = 1;
    }
    if (rc == DEFER_OK && st == 1) {
        /* Rows of the legacy id: its files were all applied and removed
         * before the id file was made (a crash in between leaves them to
         * this delete at the next start). */
        qb_value v = qb_text(legacy);
        (void)run_raw(db, qb_conn_dialect(db),
                      "DELETE FROM waituntil_applied WHERE jid = ?1", 1, &v,
                      NULL);
    }
    if (j->jid != legacy)
        free(legacy);
    return rc;
}

/* Which journal a process writes: journal_path, or while another live
 * process holds it (a binary upgrade, two instances on one path)
 * journal_path.1 ... .7, the first whose lock is free.  Each journal has
 * its own id in waituntil_applied (journal_id, journal_id.K).  At start
 * every journal whose lock is free is replayed (a crashed process's
 * journal is replayed by the next start, whichever name it takes). */
#define JCANDIDATES 8

int defer__journal_start(defer_pool *p, defer_runner *r, char *eb, size_t el)
{
    defer_journal *j;
    char *own[5] = {NULL, NULL, NULL, NULL, NULL};
    uint64_t own_max = 0;
    int own_lock = -1, rc = DEFER_OK;
    unsigned k;
    qb_value mv[2], pv[2], rv[3];
    const char *jid0;

    eb[0] = '\0';
    if (p->cfg.journal == DEFER_JOURNAL_OFF)
        return DEFER_OK;
    (void)pthread_once(&crc_once, crc_init);
    if (p->cfg.journal_path == NULL || p->cfg.journal_path[0] == '\0') {
        snprintf(eb, el, "journal: no journal_path");
        return DEFER_EINVAL;
    }
    if ((unsigned)p->cfg.journal > DEFER_JOURNAL_FSYNC_INTERVAL ||
        p->cfg.journal_sync_interval_ms > 60000) {
        snprintf(eb, el, "journal: bad level, or a sync interval above "
                 "60000 ms");
        return DEFER_EINVAL;
    }
    if (r->db == NULL) {
        snprintf(eb, el, "journal: the pool has no database");
        return DEFER_EINVAL;
    }
    j = calloc(1, sizeof *j);
    if (j == NULL) {
        snprintf(eb, el, "out of memory");
        return DEFER_ENOMEM;
    }
    j->fd = -1;
    j->lock_fd = -1;
    j->pool = p;
    j->level = p->cfg.journal;
    j->sync_interval_ms = p->cfg.journal_sync_interval_ms
                              ? p->cfg.journal_sync_interval_ms
                              : 100;
    j->rotate = p->cfg.journal_rotate_bytes ? p->cfg.journal_rotate_bytes
                                            : JROTATE_DEFAULT;
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        snprintf(eb, el, "journal: mutex init failed");
        return DEFER_ETHREAD;
    }
    if (pthread_cond_init(&j->cv, NULL) != 0) {
        (void)pthread_mutex_destroy(&j->mu);
        free(j);
        snprintf(eb, el, "journal: cond init failed");
        return DEFER_ETHREAD;
    }
    j->sync_log_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    if (pthread_mutex_init(&j->sync_mu, NULL) != 0) {
        (void)pthread_cond_destroy(&j->cv);
        (void)pthread_mutex_destroy(&j->mu);
        free(j);
        snprintf(eb, el, "journal: mutex init failed");
        return DEFER_ETHREAD;
    }
    if (defer__cond_init_mono(&j->sync_cv) != 0) {
        (void)pthread_mutex_destroy(&j->sync_mu);
        (void)pthread_cond_destroy(&j->cv);
        (void)pthread_mutex_destroy(&j->mu);
        free(j);
        snprintf(eb, el, "journal: cond init failed");
        return DEFER_ETHREAD;
    }
    if (syncs(j)) {
        if (qb_conn_dialect(r->db) == QB_DIALECT_SQLITE) {
            const char *sy = p->cfg.db.synchronous ? p->cfg.db.synchronous
                                                   : "NORMAL";
            /* FULL and EXTRA sync the WAL at every COMMIT already. */
            j->need_barrier = strcasecmp(sy, "FULL") != 0 &&
                              strcasecmp(sy, "EXTRA") != 0;
            if (j->need_barrier && (j->sync_restore = strdup(sy)) == NULL) {
                journal_free(j);
                snprintf(eb, el, "out of memory");
                return DEFER_ENOMEM;
            }
        } else {
            j->need_barrier = 1; /* synchronous_commit may be off */
        }
    }
    jid0 = p->cfg.journal_id ? p->cfg.journal_id : p->cfg.journal_path;
    for (k = 0; k < JCANDIDATES && rc == DEFER_OK; k++) {
        char *cb = NULL, *cj = NULL;
        uint64_t ms = 0;
        int lfd;
        if (k == 0 ? (cb = strdup(p->cfg.journal_path)) == NULL
                   : asprintf(&cb, "%s.%u", p->cfg.journal_path, k) < 0) {
            rc = DEFER_ENOMEM;
            break;
        }
        lfd = lock_base(cb);
        if (lfd < 0) {
            int e = errno;
            if (e != EWOULDBLOCK) {
                snprintf(eb, el, "journal: lock %s.lock: %s", cb,
                         strerror(e));
                rc = DEFER_EDB;
            }
            free(cb);
            continue; /* a live process writes it */
        }
        if (k == 0 ? (cj = strdup(jid0)) == NULL
                   : asprintf(&cj, "%s.%u", jid0, k) < 0) {
            close(lfd);
            free(cb);
            rc = DEFER_ENOMEM;
            break;
        }
        j->jid = cj; /* the legacy id, unless base.id says otherwise */
        if (!split_base(j, cb)) {
            snprintf(eb, el, "journal: bad journal_path %s", cb);
            rc = DEFER_EINVAL;
        } else {
            rc = start_base(j, r->db, cb, own_lock < 0, &ms, eb, el);
        }
        free(cb);
        if (rc == DEFER_OK && own_lock < 0) {
            /* The first free one is ours: keep its names and lock. */
            own[0] = j->base;
            own[1] = j->dir;
            own[2] = j->name;
            own[3] = j->dead_path;
            own[4] = j->jid;
            j->base = j->dir = j->name = j->dead_path = j->jid = NULL;
            own_lock = lfd;
            own_max = ms;
        } else {
            unlock_base(j->base, lfd); /* replayed and empty: free */
            names_free(j);
        }
    }
    if (rc == DEFER_OK && own_lock < 0) {
        snprintf(eb, el, "journal: %s and its %u alternatives are all held "
                 "by running processes", p->cfg.journal_path,
                 (unsigned)(JCANDIDATES - 1));
        rc = DEFER_EDB;
    }
    j->base = own[0];
    j->dir = own[1];
    j->name = own[2];
    j->dead_path = own[3];
    j->jid = own[4];
    j->lock_fd = own_lock;
    if (rc != DEFER_OK) {
        journal_free(j);
        return rc;
    }
    j->next_seq = own_max + 1;
    j->cur = j->files = file_new(j, j->next_seq, &j->fd, eb, el);
    if (j->cur == NULL) {
        journal_free(j);
        return DEFER_EDB;
    }
    j->prune_below = j->pruned = j->next_seq;
    mv[0] = pv[0] = rv[0] = qb_text(j->jid);
    mv[1] = pv[1] = rv[1] = rv[2] = qb_int(0);
    if (qb_query_raw_dialect(&j->mark_tpl, qb_conn_dialect(r->db),
                             "INSERT INTO waituntil_applied (jid, seq) "
                             "VALUES (?1, ?2)",
                             2, mv, QB_FETCH_NONE) != QB_OK ||
        qb_query_raw_dialect(&j->prune_tpl, qb_conn_dialect(r->db),
                             "DELETE FROM waituntil_applied WHERE jid = ?1 "
                             "AND seq < ?2",
                             2, pv, QB_FETCH_NONE) != QB_OK ||
        (j->ranges &&
         qb_query_raw_dialect(&j->range_tpl, qb_conn_dialect(r->db),
                              "INSERT INTO waituntil_applied (jid, seq, hi) "
                              "VALUES (?1, ?2, ?3)",
                              3, rv, QB_FETCH_NONE) != QB_OK)) {
        snprintf(eb, el, "journal: out of memory");
        journal_free(j);
        return DEFER_ENOMEM;
    }
    if (j->replayed || j->dead || j->torn)
        jlog(p, DEFER_LOG_INFO, "journal_ready", 0,
             "journal=%s replayed=%llu dead=%llu torn=%llu", j->base,
             (unsigned long long)j->replayed, (unsigned long long)j->dead,
             (unsigned long long)j->torn);
    if (j->level == DEFER_JOURNAL_FSYNC_INTERVAL) {
        /* Signals are the caller's threads' business, never a pool
         * thread's (as the workers, defer_pool.c): blocked in it. */
        sigset_t all, old;
        int trc;
        (void)sigfillset(&all);
        (void)pthread_sigmask(SIG_SETMASK, &all, &old);
        trc = pthread_create(&j->syncer, NULL, syncer_main, j);
        (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (trc != 0) {
            snprintf(eb, el, "journal: syncer thread: %s", strerror(trc));
            journal_free(j);
            return DEFER_ETHREAD;
        }
        j->syncer_started = 1;
    }
    p->journal = j;
    return DEFER_OK;
}

void defer__journal_free(defer_pool *p)
{
    defer_journal *j = p->journal;
    jfile *f;
    if (j == NULL)
        return;
    syncer_stop(j);
    /* Nothing pending (every record committed): nothing to replay --
     * if those commits are durable (the workers' last barrier, see
     * DURABILITY; else the files stay, and the next start skips their
     * records). */
    if (j->pending == 0 && !j->broken &&
        (!j->need_barrier || j->durable_gen == j->resolved_gen)) {
        for (f = j->files; f != NULL; f = f->next)
            (void)unlink(f->path);
        if (syncs(j) && j->files != NULL)
            sync_dir(j);
    }
    journal_free(j);
    p->journal = NULL;
}

/* ---- sync interval (SYNC INTERVAL above) -------------------------------- */

/* fdatasync the current file if bytes were appended since the last
 * sync.  Under sync_mu (the descriptor cannot be closed meanwhile).
 * Returns what sync_report must say once sync_mu is released: 0
 * nothing, -1 the sync works again, else the errno of the first failure
 * of an episode (once per episode, not per interval). */
static int sync_now(defer_journal *j)
{
    int fd, rc, e = 0;
    uint64_t bytes;
    int64_t t0;

    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    fd = j->fd;
    bytes = j->bytes;
    (void)pthread_mutex_unlock(&j->mu);
    if (fd < 0 || bytes == j->synced_bytes)
        return 0;
    t0 = defer__now_ns();
    rc = jdatasync(fd);
    if (rc != 0)
        e = errno != 0 ? errno : EIO;
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    j->fsyncs++;
    j->fsync_ns += (uint64_t)(defer__now_ns() - t0);
    (void)pthread_mutex_unlock(&j->mu);
    if (rc == 0) {
        int was = j->sync_failing;
        j->sync_failing = 0;
        j->synced_bytes = bytes;
        return was ? -1 : 0;
    }
    if (j->sync_failing)
        return 0;
    j->sync_failing = 1;
    return e;
}

/* Log what sync_now returned.  Called under sync_mu: it takes
 * sync_log_mu, releases sync_mu for the write (a slow log sink does not
 * hold up rotations; only one that has a state change of its own to say
 * waits for the line before it), and returns with sync_mu held again.
 * These two events are never folded (defer_log.c), so the lines come
 * out in this order. */
static void sync_report(defer_journal *j, int ev)
{
    if (ev == 0)
        return;
    defer__mutex_lock(&j->sync_log_mu);
    defer__mutex_unlock(&j->sync_mu);
    if (ev < 0)
        jlog(j->pool, DEFER_LOG_WARN, "journal_sync_ok", 0,
             "fdatasync works again");
    else if (ev > 0)
        jlog(j->pool, DEFER_LOG_ERROR, "journal_sync_failed", 0,
             "error=\"%s\" (answered writes since the last sync may not "
             "survive a power loss)", strerror(ev));
    defer__mutex_unlock(&j->sync_log_mu);
    defer__mutex_lock(&j->sync_mu);
}

static void *syncer_main(void *arg)
{
    defer_journal *j = arg;

    (void)pthread_setname_np(pthread_self(), "defer-jsync");
    defer__mutex_lock(&j->sync_mu);
    while (!j->syncer_stop) {
        int64_t end = defer__now_ns() +
                      (int64_t)j->sync_interval_ms * 1000000;
        int ev;
        while (!j->syncer_stop &&
               defer__cond_wait_until(&j->sync_cv, &j->sync_mu, end) == 0)
            ; /* a signal is a stop; the deadline, a sync */
        if (j->syncer_stop)
            break;
        ev = sync_now(j);
        sync_report(j, ev);
    }
    defer__mutex_unlock(&j->sync_mu);
    return NULL;
}

/* Stop the syncer and sync what it had not yet (a clean stop leaves the
 * journal synced). */
static void syncer_stop(defer_journal *j)
{
    int rc, ev;

    if (!j->syncer_started)
        return;

    defer__mutex_lock(&j->sync_mu);
    j->syncer_stop = 1;
    defer__signal(&j->sync_cv);
    defer__mutex_unlock(&j->sync_mu);
    rc = pthread_join(j->syncer, NULL);
    if (rc != 0)
        jlog(j->pool, DEFER_LOG_ERROR, "join_failed", DEFER_ETHREAD,
             "journal syncer: %s", strerror(rc));
    j->syncer_started = 0;
    defer__mutex_lock(&j->sync_mu);
    ev = sync_now(j);
    sync_report(j, ev);
    defer__mutex_unlock(&j->sync_mu);
}

/* ---- append ------------------------------------------------------------- */

static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t k = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

/* The leader's turn: write group g (not under mu).  0 or an errno. */
static int write_group(defer_journal *j, jreq *g, uint64_t at,
                       uint64_t *fsync_ns)
{
    struct iovec stack[64], *iov = stack;
    int n = 0, cnt = 0, err = 0;
    jreq *q;

    for (q = g; q != NULL; q = q->next)
        cnt++;
    if (cnt > 64 && (iov = malloc((size_t)cnt * sizeof *iov)) == NULL)
        return ENOMEM;
    for (q = g; q != NULL; q = q->next) {
        iov[n].iov_base = q->buf;
        iov[n].iov_len = q->len;
        n++;
    }
    if (write_all(j->fd, iov, n) != 0)
        err = errno ? errno : EIO;
    if (err == 0 && j->level == DEFER_JOURNAL_FSYNC) {
        int64_t t0 = defer__now_ns();
        if (fdatasync(j->fd) != 0)
            err = errno ? errno : EIO;
        *fsync_ns = (uint64_t)(defer__now_ns() - t0);
    }
    if (err != 0 && ftruncate(j->fd, (off_t)at) != 0)
        err = -err; /* could not cut the group off: broken */
    if (iov != stack)
        free(iov);
    return err;
}

/* Append buf (nrec sealed-later records) as one request: blocks until a
 * leader wrote it.  DEFER_OK or DEFER_EJOURNAL. */
static int append(defer_journal *j, unsigned char *buf, size_t len,
                  const uint32_t *pcrc, const size_t *offs, size_t nrec,
                  uint64_t *first_seq)
{
    jreq me, *g, *q;
    size_t i;

    memset(&me, 0, sizeof me);
    me.buf = buf;
    me.len = len;
    me.nrec = nrec;
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    if (j->broken) {
        j->failed++;
        (void)pthread_mutex_unlock(&j->mu);
        return DEFER_EJOURNAL;
    }
    *first_seq = j->next_seq;
    for (i = 0; i < nrec; i++) {
        unsigned char *h = buf + offs[i];
        uint64_t seq = j->next_seq++;
        put64(h + 8, seq);
        put32(h + 4, rec_crc(pcrc[i], seq));
    }
    me.last_seq = j->next_seq - 1;
    if (j->qtail != NULL)
        j->qtail->next = &me;
    else
        j->qhead = &me;
    j->qtail = &me;
    while (!me.done) {
        uint64_t at, fns = 0, nbytes = 0, nr = 0, last = 0;
        int err, rotated_fd = -1, old_fd = -1;
        jfile *nf = NULL;
        char eb[256] = "";

        if (j->writing) {
            if (pthread_cond_wait(&j->cv, &j->mu) != 0)
                abort();
            continue;
        }
        /* Leader: take everyone queued. */
        g = j->qhead;
        j->qhead = j->qtail = NULL;
        j->writing = 1;
        at = j->cur->size;
        for (q = g; q != NULL; q = q->next) {
            nbytes += q->len;
            nr += q->nrec;
            last = q->last_seq;
        }
        (void)pthread_mutex_unlock(&j->mu);
        /* Broken meanwhile (a group could not be cut off): writing after
         * its bytes would put answered records behind garbage. */
        err = j->broken ? -EIO : write_group(j, g, at, &fns);
        if (err == 0 && at + nbytes >= j->rotate)
            nf = file_new(j, last + 1, &rotated_fd, eb, sizeof eb);
        if (pthread_mutex_lock(&j->mu) != 0)
            abort();
        if (err == 0) {
            j->cur->size += nbytes;
            j->cur->last = last;
            j->cur->pending += nr;
            j->appends++;
            j->records += nr;
            j->bytes += nbytes;
            j->pending += nr;
            j->file_bytes += nbytes;
            if (j->level == DEFER_JOURNAL_FSYNC) {
                j->fsyncs++;
                j->fsync_ns += fns;
            }
            if (nf != NULL) {
                old_fd = j->fd; /* no one writes it any more */
                j->cur->next = nf;
                j->cur = nf;
                j->fd = rotated_fd;
            }
        } else {
            for (q = g; q != NULL; q = q->next)
                j->failed += q->nrec;
            if (err < 0)
                j->broken = 1;
        }
        for (q = g; q != NULL; q = q->next) {
            q->rc = err == 0 ? DEFER_OK : DEFER_EJOURNAL;
            q->done = 1;
        }
        j->writing = 0;
        (void)pthread_cond_broadcast(&j->cv);
        if (old_fd >= 0) {
            /* The rotated file: closed outside mu, and at the interval
             * level synced first (the syncer only ever syncs the current
             * file), under sync_mu (the syncer may be syncing it). */
            int serr = -1, say = 0;
            int64_t t0 = 0;
            (void)pthread_mutex_unlock(&j->mu);
            if (j->level == DEFER_JOURNAL_FSYNC_INTERVAL) {
                defer__mutex_lock(&j->sync_mu);
                t0 = defer__now_ns();
                serr = jdatasync(old_fd) == 0 ? 0 : errno;
                if (serr != 0) {
                    say = !j->sync_failing; /* once per episode */
                    j->sync_failing = 1;
                }
                close(old_fd);
                if (say) /* in order with the syncer's lines */
                    defer__mutex_lock(&j->sync_log_mu);
                defer__mutex_unlock(&j->sync_mu);
            } else {
                close(old_fd);
            }
            if (say) {
                jlog(j->pool, DEFER_LOG_ERROR, "journal_sync_failed", 0,
                     "error=\"%s\" syncing a rotated file (answered writes "
                     "in it may not survive a power loss)", strerror(serr));
                defer__mutex_unlock(&j->sync_log_mu);
            }
            if (pthread_mutex_lock(&j->mu) != 0)
                abort();
            if (serr >= 0) {
                j->fsyncs++;
                j->fsync_ns += (uint64_t)(defer__now_ns() - t0);
            }
        }
        if (err != 0) {
            /* Copied under mu: the next leader may rotate j->cur as soon
             * as mu is dropped. */
            char *path = strdup(j->cur->path);
            (void)pthread_mutex_unlock(&j->mu);
            jlog(j->pool, DEFER_LOG_ERROR, "journal_append_failed",
                 DEFER_EJOURNAL, "file=%s error=\"%s\"%s",
                 path ? path : "?", strerror(err < 0 ? -err : err),
                 err < 0 ? " (could not cut the group off: journal broken "
                           "until restart)" : "");
            free(path);
            if (pthread_mutex_lock(&j->mu) != 0)
                abort();
        }
        if (nf == NULL && eb[0] != '\0') {
            (void)pthread_mutex_unlock(&j->mu);
            jlog(j->pool, DEFER_LOG_WARN, "journal_rotate_failed", 0, "%s",
                 eb);
            if (pthread_mutex_lock(&j->mu) != 0)
                abort();
        }
    }
    (void)pthread_mutex_unlock(&j->mu);
    return me.rc;
}

int defer__journal_admit(defer_pool *p, defer_task *head)
{
    defer_journal *j = p->journal;
    jbuf b = {0};
    uint32_t pcrc[64], *pc = pcrc;
    size_t offs[64], *of = offs, n = 0, cap = 64, i;
    uint64_t first = 0;
    defer_task *t;
    int rc = DEFER_OK;

    if (j == NULL)
        return DEFER_OK;
    for (t = head; t != NULL; t = t->next)
        if (t->fn == NULL)
            n++;
    if (n == 0)
        return DEFER_OK;
    if (n > cap) {
        pc = malloc(n * sizeof *pc);
        of = malloc(n * sizeof *of);
        if (pc == NULL || of == NULL) {
            rc = DEFER_ENOMEM;
            goto out;
        }
    }
    i = 0;
    for (t = head; t != NULL; t = t->next) {
        if (t->fn != NULL)
            continue;
        of[i] = b.len;
        rc = encode_task(&b, t, &pc[i]);
        if (rc != DEFER_OK)
            goto out;
        i++;
    }
    rc = append(j, b.p, b.len, pc, of, n, &first);
    if (rc == DEFER_OK)
        for (t = head; t != NULL; t = t->next)
            if (t->fn == NULL)
                t->jseq = first++;
out:
    if (rc == DEFER_ENOMEM || rc == DEFER_EINVAL) {
        jlog(p, DEFER_LOG_ERROR, "journal_encode_failed", rc, "%s",
             defer_strerror(rc));
        rc = DEFER_EJOURNAL;
    }
    if (pc != pcrc)
        free(pc);
    if (of != offs)
        free(of);
    free(b.p);
    return rc;
}

/* ---- commit hooks ------------------------------------------------------- */

/* One row into waituntil_applied: seq alone (tpl mark_tpl), or the
 * range seq..hi (range_tpl). */
static int mark_row(defer_runner *r, const qb_query *tpl, uint64_t seq,
                    uint64_t hi)
{
    defer_journal *j = r->pool->journal;
    qb_value v[3];
    qb_query *q = NULL;
    int rc;

    v[0] = qb_text_ref(j->jid);
    v[1] = qb_int((int64_t)seq);
    v[2] = qb_int((int64_t)hi);
    rc = qb_query_rebind(tpl, tpl == j->range_tpl ? 3 : 2, v, &q);
    if (rc == QB_OK)
        rc = defer__db_exec(r, q);
    qb_query_free(q);
    return rc;
}

/* Does a journal file start at seq?  (Under j->mu.) */
static int file_starts_at(const defer_journal *j, uint64_t seq)
{
    const jfile *f;
    for (f = j->files; f != NULL; f = f->next)
        if (f->first == seq)
            return 1;
    return 0;
}

#define JMARK_STACK 64

/* The segment's rows (EXACTLY ONCE, RANGE ROWS): its seqs sorted, cut
 * into runs of consecutive seqs that do not cross a file's first seq; a
 * run a..b of two or more gets a range row (a, b-1) and a plain row b,
 * a lone seq a plain row.  A batch takes the queue's head, so its seqs
 * are mostly one run: two rows per segment instead of one per task.
 * Without the hi column, a plain row per seq. */
int defer__journal_mark(defer_runner *r, defer_task **t, size_t n)
{
    defer_journal *j = r->pool->journal;
    uint64_t prune = 0, sbuf[JMARK_STACK], *s = sbuf;
    unsigned char cbuf[JMARK_STACK], *cut = cbuf;
    size_t i, m = 0, a;
    int rc = QB_OK;

    if (j == NULL || r->worker < 0)
        return QB_OK;
    {
        int f = DEFER_JFAULT_ABORT_IN_MARK;
        if (atomic_compare_exchange_strong(&defer__journal_fault, &f, 0)) {
            atomic_store(&r->pool->abort, 1);
            r->why = WHY_ABORT;
            return QB_EINTERRUPT;
        }
    }
    if (n > JMARK_STACK) {
        s = malloc(n * sizeof *s);
        cut = malloc(n);
        if (s == NULL || cut == NULL) {
            rc = QB_ENOMEM;
            goto out;
        }
    }
    for (i = 0; i < n; i++)
        if (t[i]->jseq != 0)
            s[m++] = t[i]->jseq;
    for (i = 1; i < m && s[i - 1] < s[i]; i++)
        ;
    if (i < m) /* (usually in order already) */
        qsort(s, m, sizeof *s, cmp_u64);
    /* cut[i]: a run ends at s[i].  Files are listed under mu. */
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    for (i = 0; i < m; i++)
        cut[i] = j->range_tpl == NULL || i + 1 == m ||
                 s[i + 1] != s[i] + 1 || file_starts_at(j, s[i + 1]);
    (void)pthread_mutex_unlock(&j->mu);
    for (i = a = 0; i < m && rc == QB_OK; i++) {
        if (!cut[i])
            continue;
        if (i > a)
            rc = mark_row(r, j->range_tpl, s[a], s[i] - 1);
        if (rc == QB_OK)
            rc = mark_row(r, j->mark_tpl, s[i], 0);
        a = i + 1;
    }
out:
    if (s != sbuf)
        free(s);
    if (cut != cbuf)
        free(cut);
    if (rc != QB_OK)
        return rc;
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    if (j->prune_below > j->pruned)
        prune = j->prune_below;
    (void)pthread_mutex_unlock(&j->mu);
    if (prune != 0) {
        qb_value v[2];
        qb_query *q = NULL;
        v[0] = qb_text_ref(j->jid);
        v[1] = qb_int((int64_t)prune);
        rc = qb_query_rebind(j->prune_tpl, 2, v, &q);
        if (rc == QB_OK)
            rc = defer__db_exec(r, q);
        qb_query_free(q);
        if (rc == QB_OK) {
            /* Counted pruned before the COMMIT: a transaction that rolls
             * back leaves those rows until prune_below moves again (rows
             * of removed files only stay longer: harmless). */
            if (pthread_mutex_lock(&j->mu) != 0)
                abort();
            if (prune > j->pruned)
                j->pruned = prune;
            (void)pthread_mutex_unlock(&j->mu);
        }
    }
    return rc;
}

void defer__journal_committed(defer_pool *p, defer_task **t, size_t n)
{
    defer_journal *j = p->journal;
    size_t i, nres = 0;
    jfile *f;

    if (j == NULL)
        return;
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    for (i = 0; i < n; i++) {
        uint64_t s = t[i]->jseq;
        if (s == 0)
            continue;
        nres++;
        for (f = j->files; f != NULL; f = f->next)
            if (s >= f->first && s <= f->last)
                break;
        if (f != NULL && f->pending > 0) {
            f->pending--;
            j->pending--;
        }
        t[i]->jseq = 0; /* committed once */
    }
    if (nres > 0) /* (a batch with nothing journaled asks no barrier) */
        j->resolved_gen++;
    (void)pthread_mutex_unlock(&j->mu);
}

/* See ROTATION and DURABILITY above.  One worker at a time (removing):
 * the files it removes stay at the head of the list (no one else
 * detaches a file, and only the tail grows) until they are unlinked. */
void defer__journal_tidy(defer_runner *r, int last)
{
    defer_journal *j = r->pool->journal;
    jfile *f, *gone = NULL;
    size_t k = 0, nun = 0, i;
    uint64_t gen, nbytes = 0;
    int rc, pass_ok;

    if (j == NULL || r->worker < 0)
        return;
again:
    pass_ok = 1;
    k = nun = 0;
    nbytes = 0;
    gone = NULL;
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    if (j->removing) {
        /* Not skipped: the remover looks again before it lets go (else
         * a last barrier asked for meanwhile would never run, and a
         * clean stop would keep its files). */
        j->tidy_again = 1;
        j->tidy_again_last |= last;
        (void)pthread_mutex_unlock(&j->mu);
        return;
    }
    for (f = j->files; f != NULL && f != j->cur && f->pending == 0 && k < 8;
         f = f->next)
        k++;
    if (k == 0 && !(last && j->need_barrier &&
                    j->durable_gen != j->resolved_gen)) {
        (void)pthread_mutex_unlock(&j->mu);
        return;
    }
    j->removing = 1;
    gen = j->resolved_gen;
    f = j->files;
    (void)pthread_mutex_unlock(&j->mu);

    if (j->need_barrier) {
        /* Every record of those files was resolved before gen was read:
         * the commits that applied them returned before this one. */
        rc = r->db != NULL ? barrier(j, r->db) : QB_ECONN;
        if (rc != QB_OK) {
            jlog(j->pool, DEFER_LOG_WARN, "journal_barrier_failed", 0,
                 "error=\"%s\" (%s); the journal's older files stay until "
                 "a later batch succeeds", qb_strerror(rc),
                 r->db ? qb_errmsg(r->db) : "no connection");
            k = 0;
            pass_ok = 0;
        } else if (pthread_mutex_lock(&j->mu) == 0) {
            if (gen > j->durable_gen)
                j->durable_gen = gen;
            (void)pthread_mutex_unlock(&j->mu);
        } else {
            abort();
        }
    }
    /* Unlink first, rows after: a crash in between leaves rows without a
     * file (harmless: pruned at the next start), never a file without
     * its rows (its records would run twice). */
    for (i = 0; i < k; i++, f = f->next) {
        if (i == 0)
            fault_point(DEFER_JFAULT_KILL_BEFORE_UNLINK);
        if (unlink(f->path) != 0 && errno != ENOENT) {
            jlog(j->pool, DEFER_LOG_ERROR, "journal_unlink_failed", 0,
                 "file=%s error=\"%s\" (its rows are kept; retried)",
                 f->path, strerror(errno));
            pass_ok = 0;
            break;
        }
        nun++;
        nbytes += f->size;
    }
    if (nun > 0 && syncs(j))
        sync_dir(j);
    if (nun > 0)
        fault_point(DEFER_JFAULT_KILL_AFTER_UNLINK);
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    for (i = 0; i < nun; i++) {
        f = j->files;
        j->files = f->next;
        f->next = gone;
        gone = f;
    }
    j->file_bytes -= nbytes;
    /* Rows below the oldest file left may go now (the row just below it
     * is kept: the newest row keeps seqs increasing across restarts). */
    if (nun > 0 && j->files->first - 1 > j->prune_below)
        j->prune_below = j->files->first - 1;
    j->removing = 0;
    {
        int again = j->tidy_again, again_last = j->tidy_again_last;
        j->tidy_again = j->tidy_again_last = 0;
        (void)pthread_mutex_unlock(&j->mu);
        while (gone != NULL) {
            f = gone->next;
            free(gone->path);
            free(gone);
            gone = f;
        }
        /* Only when this pass got somewhere (a failed barrier or unlink
         * is retried after a later batch, not in a loop here). */
        if (again && pass_ok) {
            last = last || again_last;
            goto again;
        }
    }
}

void defer__journal_stats(defer_pool *p, defer_stats *out)
{
    defer_journal *j = p->journal;
    if (j == NULL)
        return;
    if (pthread_mutex_lock(&j->mu) != 0)
        abort();
    out->j_appends = j->appends;
    out->j_records = j->records;
    out->j_bytes = j->bytes;
    out->j_pending = j->pending;
    out->j_file_bytes = j->file_bytes;
    out->j_fsyncs = j->fsyncs;
    out->j_fsync_ns = j->fsync_ns;
    out->j_failed = j->failed;
    out->j_replayed = j->replayed;
    out->j_skipped = j->skipped;
    out->j_dead = j->dead;
    out->j_torn = j->torn;
    out->j_corrupt = j->corrupt;
    (void)pthread_mutex_unlock(&j->mu);
}

/* ---- inspection (-t) ----------------------------------------------------- */

DEFER_API int defer_journal_inspect(const char *path, defer_journal_info *out,
                                    char *eb, size_t el)
{
    defer_journal j;
    jname *names = NULL;
    size_t nn = 0, i;

    if (path == NULL || out == NULL) {
        snprintf(eb, el, "journal: no path");
        return DEFER_EINVAL;
    }
    memset(out, 0, sizeof *out);
    memset(&j, 0, sizeof j);
    (void)pthread_once(&crc_once, crc_init);
    if (!split_base(&j, path)) {
        free(j.base);
        free(j.dir);
        free(j.name);
        free(j.dead_path);
        snprintf(eb, el, "journal: bad path %s", path);
        return DEFER_EINVAL;
    }
    if (list_files(j.dir, j.name, &names, &nn) != 0) {
        int e = errno;
        if (e == ENOENT) { /* not created yet: nothing pending */
            free(j.base);
            free(j.dir);
            free(j.name);
            free(j.dead_path);
            return DEFER_OK;
        }
        snprintf(eb, el, "journal: cannot list %s: %s", j.dir, strerror(e));
        free(j.base);
        free(j.dir);
        free(j.name);
        free(j.dead_path);
        return DEFER_EDB;
    }
    for (i = 0; i < nn; i++) {
        unsigned char *buf;
        size_t n, pos = 0, bad_end = 0;
        uint64_t prev = names[i].first > 0 ? names[i].first - 1 : 0;
        jrec r;
        if (read_all(names[i].path, &buf, &n) != 0)
            continue;
        out->files++;
        out->bytes += n;
        while (pos < n) {
            if (scan_next(buf, n, &pos, &prev, &r, &bad_end) == SCAN_BAD) {
                /* as replay_file counts them */
                if (bad_end == n && i + 1 == nn)
                    out->torn_bytes += n - pos;
                else
                    out->corrupt_bytes += bad_end - pos;
                pos = bad_end;
                continue;
            }
            out->records++;
            if (out->first_seq == 0 || r.seq < out->first_seq)
                out->first_seq = r.seq;
            if (r.seq > out->last_seq)
                out->last_seq = r.seq;
        }
        free(buf);
    }
    free_names(names, nn);
    {
        /* Can a new file be created next to them? */
        char *probe = NULL;
        int fd = -1;
        if (asprintf(&probe, "%s.probe", j.base) >= 0)
            fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            snprintf(eb, el, "journal: cannot create files next to %s: %s",
                     path, strerror(errno));
            free(probe);
            free(j.base);
            free(j.dir);
            free(j.name);
            free(j.dead_path);
            return DEFER_EDB;
        }
        close(fd);
        (void)unlink(probe);
        free(probe);
    }
    free(j.base);
    free(j.dir);
    free(j.name);
    free(j.dead_path);
    return DEFER_OK;
}
