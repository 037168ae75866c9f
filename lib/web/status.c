/*
 * status.c -- the status route: server and pool counters as JSON, or in
 * Prometheus text format (?format=prometheus, exposition format 0.0.4).
 *
 * One table (metrics[] in web_handler_status) drives both formats, so they
 * cannot disagree.  Each entry names its JSON key and its Prometheus
 * family; the Prometheus names follow the project's conventions
 * (https://prometheus.io/docs/practices/naming/): prefix waituntil_,
 * counters end in _total, durations are in seconds (_seconds), a
 * dimension is a label (responses_total{code="2xx"}), not a name.  The
 * JSON keys are older and stay as they were: scripts and tests read them.
 * README.md ("Status and metrics") documents every key and family in one
 * table, and tests/e2e/status.sh fails when the output and the table
 * differ.
 */
#define _GNU_SOURCE
#include "web_server.h"
#include "web_srv_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct out {
    char buf[32768];
    size_t len;
    int overflow;
};

static void add(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (o->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof o->buf - o->len)
        o->overflow = 1;
    else
        o->len += (size_t)n;
}

enum esc { ESC_JSON, ESC_LABEL, ESC_HELP };

/*
 * s as the inside of a JSON string, a Prometheus label value or a
 * Prometheus HELP text.  All three must be valid UTF-8: a byte that does
 * not start a valid sequence (a file name is any bytes) becomes U+FFFD.
 * JSON escapes " \ and control bytes; a label value escapes \ " and
 * newline (the only escapes the format has) and drops other control
 * bytes; HELP escapes \ and newline only.
 */
static void add_escaped(struct out *o, const char *s, enum esc mode)
{
    size_t rest = strlen(s);
    while (rest > 0) {
        unsigned char c = (unsigned char)*s;
        size_t k;
        if (c >= 0x80) {
            /* The shortest prefix that is valid UTF-8 is one sequence. */
            for (k = 2; k <= 4 && k <= rest; k++)
                if (web_utf8_valid(s, k))
                    break;
            if (k <= 4 && k <= rest)
                add(o, "%.*s", (int)k, s);
            else {
                add(o, "\xef\xbf\xbd");
                k = 1;
            }
            s += k;
            rest -= k;
            continue;
        }
        if (c == '\\')
            add(o, "\\\\");
        else if (c == '"' && mode != ESC_HELP)
            add(o, "\\\"");
        else if (c == '\n')
            add(o, "\\n");
        else if (c < 0x20 || c == 0x7f) {
            if (mode == ESC_JSON)
                add(o, "\\u%04x", c);
        } else
            add(o, "%c", c);
        s++;
        rest--;
    }
}

static const char *db_state_name(int st)
{
    return st == DEFER_DB_LOST ? "lost" : st == DEFER_DB_FAILING ? "failing"
                                                                 : "ok";
}

enum kind { COUNTER, GAUGE };

struct metric {
    const char *json;  /* JSON key */
    const char *prom;  /* Prometheus family after "waituntil_"; NULL: JSON
                          only (the histogram's parts, written apart) */
    const char *label; /* this sample's label pair, or NULL */
    enum kind kind;
    int exp;           /* value is in 10^-exp s (3: ms, 6: us):
                          Prometheus gets seconds; 0: a plain number */
    uint64_t value;
    const char *help;  /* the family's HELP (first entry of a family) */
};

/* Rows of m[].  A counter's family is its JSON key + "_total" and a
 * gauge's is the key itself, so each name is written once; the rows that
 * differ (a label, milliseconds, JSON only) are written out in full. */
#define COUNTER_ROW(key, v, help) {key, key "_total", NULL, COUNTER, 0, v, help}
#define GAUGE_ROW(key, v, help)   {key, key, NULL, GAUGE, 0, v, help}
/* responses_total{code="Nxx"}, JSON key responses_Nxx */
#define RESPONSES_ROW(cls, v, help)                                        \
    {"responses_" cls, "responses_total", "code=\"" cls "\"", COUNTER, 0, \
     v, help}

int web_handler_status(web_call *call, void *ud)
{
    const web_status_info *info = ud;
    web_server_stats ss;
    defer_stats ds;
    struct out o;
    const char *fmt, *engine, *version, *sqlite;
    int prom;
    size_t i, n;
    uint64_t log_dropped, uptime;
    time_t now;

    web_server_stats_get(web_call_server(call), &ss);
    defer_pool_stats(web__srv_pool(web_call_server(call)), &ds);
    engine = defer_pool_dialect(web__srv_pool(web_call_server(call))) ==
                     QB_DIALECT_POSTGRES
                 ? "postgresql"
                 : "sqlite";
    version = info != NULL && info->version != NULL ? info->version
                                                    : "unknown";
    sqlite = info != NULL && info->sqlite != NULL ? info->sqlite : "unknown";
    fmt = web_request_arg(web_call_request(call), "format", NULL);
    prom = fmt != NULL && strcmp(fmt, "prometheus") == 0;
    /* The pool logs through the server's log (or its own stderr line). */
    log_dropped = web_log_dropped(web_call_log(call)) + ds.log_dropped;
    /* Wall clock, like started_unix: a clock set back gives 0, not a
     * huge number. */
    now = time(NULL);
    uptime = (int64_t)now > ss.started_unix
                 ? (uint64_t)((int64_t)now - ss.started_unix)
                 : 0;

    const struct metric m[] = {
        COUNTER_ROW("requests_accepted", ss.accepted,
                    "Requests accepted from nginx."),
        COUNTER_ROW("requests_finished", ss.finished,
                    "Requests answered and finished."),
        RESPONSES_ROW("2xx", ss.status_2xx, "Responses by status class."),
        RESPONSES_ROW("3xx", ss.status_3xx, NULL),
        RESPONSES_ROW("4xx", ss.status_4xx, NULL),
        RESPONSES_ROW("5xx", ss.status_5xx, NULL),
        COUNTER_ROW("responses_503_queue_full", ss.rejected_503,
                    "503 answers because the deferred queue was full, the "
                    "writer stalled or the pool was stopping (also in "
                    "responses_total code 5xx)."),
        COUNTER_ROW("responses_503_db_unavailable", ss.unavail_503,
                    "503 answers because the database was failing or lost "
                    "(also in responses_total code 5xx)."),
        COUNTER_ROW("responses_503_journal_unavailable", ss.journal_503,
                    "503 answers because the journal append failed (disk "
                    "full, I/O error; also in responses_total code 5xx)."),
        COUNTER_ROW("client_gone", ss.client_gone,
                    "Responses whose write to nginx failed (the client left)."),
        COUNTER_ROW("accept_errors", ss.accept_errors,
                    "FCGX_Accept_r failures (EMFILE...)."),
        COUNTER_ROW("bodies_parsed", ss.bodies_parsed,
                    "Request bodies parsed (form or JSON; only routes that "
                    "read a body field parse one)."),
        COUNTER_ROW("bodies_refused", ss.bodies_refused,
                    "Request bodies refused by the parser or its bounds "
                    "(400, 413)."),
        COUNTER_ROW("requests_missing_required", ss.missing_required,
                    "400 answers: a value the route requires was missing."),
        GAUGE_ROW("request_threads", ss.threads, "Request threads running."),
        GAUGE_ROW("conf_generation", ss.generation,
                  "Conf generation new requests get (1 at start, +1 per "
                  "reload)."),
        GAUGE_ROW("conf_generations_live", ss.generations_live,
                  "Conf generations still in use (the current one and those "
                  "of requests accepted before a reload)."),
        COUNTER_ROW("tasks_admitted", ds.admitted,
                    "Deferred tasks admitted to the queue."),
        COUNTER_ROW("tasks_rejected", ds.rejected,
                    "Registered deferred tasks refused at admission, before "
                    "the answer (queue full, shutdown, database unavailable: "
                    "the request got 503); also inline tasks skipped at the "
                    "shutdown deadline."),
        COUNTER_ROW("tasks_refused", ds.refused,
                    "Deferred tasks never registered: the handler's "
                    "registration call failed (too many per request, misuse, "
                    "out of memory)."),
        COUNTER_ROW("admit_waits", ds.admit_waits,
                    "Requests whose admission waited for queue room "
                    "(admission wait)."),
        COUNTER_ROW("admit_stalled", ds.admit_stalled,
                    "Requests refused at once: queue full and the writer "
                    "stalled."),
        COUNTER_ROW("tasks_unavailable", ds.unavail,
                    "Deferred tasks refused at admission because the "
                    "database was failing or lost (also in "
                    "tasks_rejected_total)."),
        COUNTER_ROW("tasks_inline", ds.inline_run,
                    "Deferred tasks run inline in the request thread "
                    "(admission inline, queue full)."),
        COUNTER_ROW("tasks_inline_failed", ds.inline_failed,
                    "Inline tasks that failed."),
        COUNTER_ROW("tasks_ok", ds.ok,
                    "Admitted tasks that ran and succeeded."),
        COUNTER_ROW("tasks_failed", ds.failed,
                    "Admitted tasks that ran and failed (each one logged)."),
        COUNTER_ROW("tasks_left", ds.left,
                    "Admitted tasks not run at the shutdown deadline."),
        COUNTER_ROW("tasks_timeouts", ds.timeouts,
                    "SQL tasks interrupted by the task time budget."),
        COUNTER_ROW("busy_retries", ds.retried,
                    "Transaction retries (busy, deadlock, lost connection)."),
        COUNTER_ROW("conn_lost", ds.conn_lost,
                    "PostgreSQL: transactions whose connection was lost."),
        COUNTER_ROW("reconnects", ds.reconnects,
                    "PostgreSQL: successful reconnects."),
        COUNTER_ROW("commit_unknown", ds.commit_unknown,
                    "PostgreSQL: tasks failed because the outcome of their "
                    "COMMIT could not be learnt."),
        COUNTER_ROW("commits", ds.commits,
                    "Group-commit transactions committed by the workers."),
        {"commit_mean_us", "commit_mean_seconds", NULL, GAUGE, 6,
         ds.commit_mean_us, "Moving mean of the workers' COMMIT time (the "
         "group-commit window follows it)."},
        {"batch_window_us", "batch_window_seconds", NULL, GAUGE, 6,
         ds.window_us, "The group-commit window a worker waits now: 9 x the "
         "mean COMMIT time, within batch_delay..batch_delay_max."},
        {"batches", NULL, NULL, COUNTER, 0, ds.batches, NULL},
        {"batch_tasks", NULL, NULL, COUNTER, 0, ds.batch_tasks, NULL},
        GAUGE_ROW("queue_reserved", ds.reserved,
                  "Queue slots reserved by admitted requests not yet "
                  "submitted."),
        GAUGE_ROW("queue_queued", ds.queued, "Tasks waiting in the queue."),
        GAUGE_ROW("queue_in_flight", ds.in_flight,
                  "Tasks running on a worker."),
        GAUGE_ROW("queue_depth", ds.depth,
                  "Queue slots in use (reserved + queued + in flight)."),
        GAUGE_ROW("queue_depth_hwm", ds.depth_hwm,
                  "High-water mark of queue slots in use."),
        GAUGE_ROW("db_state", (uint64_t)ds.db_state,
                  "Database state: 0 ok, 1 failing, 2 lost."),
        COUNTER_ROW("db_failing", ds.db_failing,
                    "Episodes of the failing state (disk full, read-only, "
                    "corrupt, I/O error)."),
        COUNTER_ROW("db_lost", ds.db_lost,
                    "Episodes of the lost state (file removed, replaced or "
                    "truncated)."),
        COUNTER_ROW("db_reopened", ds.db_reopened,
                    "Lost databases reopened at the path."),
        COUNTER_ROW("db_probes", ds.db_probes,
                    "Probe transactions while failing or lost."),
        {"db_unavailable_ms", "db_unavailable_seconds_total", NULL, COUNTER,
         3, ds.db_unavail_ms, "Time the database spent failing or lost "
         "(the current episode included)."},
        /* the journal (all 0 with journal off) */
        COUNTER_ROW("journal_appends", ds.j_appends,
                    "Journal group writes (one write(2) for every request "
                    "waiting)."),
        COUNTER_ROW("journal_records", ds.j_records,
                    "Journal records appended (one per SQL task)."),
        COUNTER_ROW("journal_bytes", ds.j_bytes, "Journal bytes appended."),
        GAUGE_ROW("journal_records_pending", ds.j_pending,
                  "Journal records not yet committed to the database."),
        GAUGE_ROW("journal_file_bytes", ds.j_file_bytes,
                  "Bytes in the journal's files."),
        COUNTER_ROW("journal_fsyncs", ds.j_fsyncs,
                    "Journal fdatasync calls (journal fsync)."),
        {"journal_fsync_ms", "journal_fsync_seconds_total", NULL, COUNTER, 3,
         ds.j_fsync_ns / 1000000, "Time spent in journal fdatasync."},
        COUNTER_ROW("journal_failed", ds.j_failed,
                    "Deferred tasks refused (503) because the journal append "
                    "failed."),
        COUNTER_ROW("journal_replayed", ds.j_replayed,
                    "Journal records replayed at start."),
        COUNTER_ROW("journal_skipped", ds.j_skipped,
                    "Journal records found already applied at start."),
        COUNTER_ROW("journal_dead_lettered", ds.j_dead,
                    "Journal records that failed at replay (written to the "
                    "dead-letter file)."),
        COUNTER_ROW("journal_torn", ds.j_torn,
                    "Torn journal tails dropped at start (never "
                    "acknowledged)."),
        COUNTER_ROW("journal_corrupt", ds.j_corrupt,
                    "Damaged stretches inside the journal found at start "
                    "(set aside in the .corrupt file; later records "
                    "replayed)."),
        COUNTER_ROW("log_repeated", ds.log_repeated,
                    "Log lines folded into repeated=N summaries."),
        COUNTER_ROW("log_dropped", log_dropped,
                    "Log lines that could not be written."),
        COUNTER_ROW("access_lines", ss.access_lines,
                    "Access log lines written whole."),
        COUNTER_ROW("access_dropped", ss.access_dropped,
                    "Access log lines lost (write failed or cut short)."),
    };
    n = sizeof m / sizeof m[0];

    memset(&o, 0, sizeof o);
    if (prom) {
        const char *family = NULL;
        add(&o, "# HELP waituntil_build_info The program's version, the "
                "SQLite library it runs with, and the database engine.\n"
                "# TYPE waituntil_build_info gauge\n"
                "waituntil_build_info{version=\"");
        add_escaped(&o, version, ESC_LABEL);
        add(&o, "\",sqlite=\"");
        add_escaped(&o, sqlite, ESC_LABEL);
        add(&o, "\",engine=\"%s\"} 1\n", engine);
        add(&o, "# HELP waituntil_start_time_seconds When the server "
                "started, in seconds since the Unix epoch.\n"
                "# TYPE waituntil_start_time_seconds gauge\n"
                "waituntil_start_time_seconds %" PRId64 "\n",
            ss.started_unix);
        for (i = 0; i < n; i++) {
            if (m[i].prom == NULL)
                continue;
            /* A family's samples are consecutive in m[]. */
            if (family == NULL || strcmp(family, m[i].prom) != 0) {
                family = m[i].prom;
                add(&o, "# HELP waituntil_%s ", family);
                add_escaped(&o, m[i].help != NULL ? m[i].help : "",
                            ESC_HELP);
                add(&o, "\n# TYPE waituntil_%s %s\n", family,
                    m[i].kind == COUNTER ? "counter" : "gauge");
            }
            add(&o, "waituntil_%s", family);
            if (m[i].label != NULL)
                add(&o, "{%s}", m[i].label);
            if (m[i].exp != 0) {
                uint64_t d = m[i].exp == 6 ? 1000000 : 1000;
                add(&o, " %" PRIu64 ".%0*u\n", m[i].value / d, m[i].exp,
                    (unsigned)(m[i].value % d));
            }
            else
                add(&o, " %" PRIu64 "\n", m[i].value);
        }
        add(&o, "# HELP waituntil_db_state_info Database state and why "
                "(reason empty when ok).\n"
                "# TYPE waituntil_db_state_info gauge\n"
                "waituntil_db_state_info{state=\"%s\",reason=\"",
            db_state_name(ds.db_state));
        add_escaped(&o, ds.db_reason, ESC_LABEL);
        add(&o, "\"} 1\n");
        /* batch_hist[k] counts sizes 2^k..2^(k+1)-1, the last bucket
         * every size from 2^(DEFER_HIST_BUCKETS-1) on: so its bound is
         * +Inf, and the others' is 2^(k+1)-1 (sizes are integers). */
        add(&o, "# HELP waituntil_batch_size Tasks per batch taken by a "
                "worker.\n"
                "# TYPE waituntil_batch_size histogram\n");
        {
            uint64_t cum = 0;
            for (i = 0; i + 1 < DEFER_HIST_BUCKETS; i++) {
                cum += ds.batch_hist[i];
                add(&o,
                    "waituntil_batch_size_bucket{le=\"%llu\"} %" PRIu64 "\n",
                    (unsigned long long)((2ull << i) - 1), cum);
            }
            cum += ds.batch_hist[DEFER_HIST_BUCKETS - 1];
            add(&o,
                "waituntil_batch_size_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                "waituntil_batch_size_sum %" PRIu64 "\n"
                "waituntil_batch_size_count %" PRIu64 "\n",
                cum, ds.batch_tasks, ds.batches);
        }
    } else {
        add(&o, "{\"version\":\"");
        add_escaped(&o, version, ESC_JSON);
        add(&o, "\",\"sqlite_version\":\"");
        add_escaped(&o, sqlite, ESC_JSON);
        add(&o,
            "\",\"engine\":\"%s\",\"started_unix\":%" PRId64
            ",\"uptime_seconds\":%" PRIu64,
            engine, ss.started_unix, uptime);
        add(&o, ",\"db_status\":\"%s\",\"db_reason\":\"",
            db_state_name(ds.db_state));
        add_escaped(&o, ds.db_reason, ESC_JSON);
        add(&o, "\"");
        for (i = 0; i < n; i++)
            add(&o, ",\"%s\":%" PRIu64, m[i].json, m[i].value);
        add(&o, ",\"batch_size_hist\":[");
        for (i = 0; i < DEFER_HIST_BUCKETS; i++)
            add(&o, "%s%" PRIu64, i ? "," : "", ds.batch_hist[i]);
        add(&o, "]}\n");
    }
    if (o.overflow)
        return WEB_ENOMEM;
    web_add_header(call, "Cache-Control", "no-store");
    return web_respond(call, 200,
                       prom ? "text/plain; version=0.0.4; charset=utf-8"
                            : "application/json",
                       o.buf, o.len);
}
