/*
 * status.c -- the status route: server and pool counters as JSON, or in
 * Prometheus text format (?format=prometheus).
 */
#define _GNU_SOURCE
#include "web_server.h"
#include "web_srv_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct out {
    char buf[16384];
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

/* s as the inside of a JSON string (or, prom, a Prometheus label value:
 * the same escapes for \\ " and newline; other control bytes dropped). */
static void add_escaped(struct out *o, const char *s, int prom)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            add(o, "\\%c", c);
        else if (c == '\n')
            add(o, "\\n");
        else if (c < 0x20 || c == 0x7f) {
            if (!prom)
                add(o, "\\u%04x", c);
        } else
            add(o, "%c", c);
    }
}

static const char *db_state_name(int st)
{
    return st == DEFER_DB_LOST ? "lost" : st == DEFER_DB_FAILING ? "failing"
                                                                 : "ok";
}

/* One table drives both formats, so they can never disagree. */
struct metric {
    const char *name;
    const char *help;
    uint64_t value;
    int gauge;
};

int web_handler_status(web_call *call, void *ud)
{
    web_server_stats ss;
    defer_stats ds;
    struct out o;
    const char *fmt, *engine;
    int prom;
    size_t i, n;
    (void)ud;

    uint64_t log_dropped;

    web_server_stats_get(web_call_server(call), &ss);
    defer_pool_stats(web_srv_pool(web_call_server(call)), &ds);
    engine = defer_pool_dialect(web_srv_pool(web_call_server(call))) ==
                     QB_DIALECT_POSTGRES
                 ? "postgresql"
                 : "sqlite";
    fmt = web_request_arg(web_call_request(call), "format", NULL);
    prom = fmt != NULL && strcmp(fmt, "prometheus") == 0;
    /* The pool logs through the server's log (or its own stderr line). */
    log_dropped = web_log_dropped(web_call_log(call)) + ds.log_dropped;

    struct metric m[] = {
        {"requests_accepted", "Requests accepted from nginx", ss.accepted, 0},
        {"requests_finished", "Requests answered and finished", ss.finished, 0},
        {"responses_2xx", "Responses with status 2xx", ss.status_2xx, 0},
        {"responses_3xx", "Responses with status 3xx", ss.status_3xx, 0},
        {"responses_4xx", "Responses with status 4xx", ss.status_4xx, 0},
        {"responses_5xx", "Responses with status 5xx", ss.status_5xx, 0},
        {"responses_503_queue_full", "503 answers: deferred queue full",
         ss.rejected_503, 0},
        {"responses_503_db_unavailable", "503 answers: database failing or "
         "lost", ss.unavail_503, 0},
        {"client_gone", "Responses whose write failed", ss.client_gone, 0},
        {"accept_errors", "FCGX_Accept_r failures", ss.accept_errors, 0},
        {"bodies_parsed", "Request bodies parsed (form or JSON; only for "
         "routes that read a body field)", ss.bodies_parsed, 0},
        {"bodies_refused", "Request bodies refused by the parser or its "
         "bounds (400)", ss.bodies_refused, 0},
        {"requests_missing_required", "400 answers: a value a route "
         "requires was missing", ss.missing_required, 0},
        {"request_threads", "Request threads", ss.threads, 1},
        {"conf_generation", "Conf generation new requests get (1 at "
         "start, +1 per reload)", ss.generation, 1},
        {"conf_generations_live", "Conf generations still in use (the "
         "current one and those of requests accepted before a reload)",
         ss.generations_live, 1},
        {"tasks_admitted", "Deferred tasks admitted", ds.admitted, 0},
        {"tasks_rejected", "Deferred tasks rejected at admission", ds.rejected, 0},
        {"tasks_refused", "Deferred task registrations refused", ds.refused, 0},
        {"admit_waits", "Requests whose admission waited for queue room",
         ds.admit_waits, 0},
        {"admit_stalled", "Requests refused at once: queue full and the "
         "writer stalled", ds.admit_stalled, 0},
        {"tasks_unavailable", "Deferred tasks refused at admission: "
         "database failing or lost", ds.unavail, 0},
        {"tasks_inline", "Deferred tasks run inline", ds.inline_run, 0},
        {"tasks_inline_failed", "Inline tasks that failed", ds.inline_failed, 0},
        {"tasks_ok", "Deferred tasks that succeeded", ds.ok, 0},
        {"tasks_failed", "Deferred tasks that failed", ds.failed, 0},
        {"tasks_left", "Deferred tasks left at shutdown", ds.left, 0},
        {"tasks_timeouts", "SQL tasks interrupted by the time budget",
         ds.timeouts, 0},
        {"busy_retries", "Transaction retries (busy, deadlock, lost "
         "connection)", ds.retried, 0},
        {"conn_lost", "PostgreSQL: transactions whose connection was lost",
         ds.conn_lost, 0},
        {"reconnects", "PostgreSQL: successful reconnects", ds.reconnects, 0},
        {"commit_unknown", "PostgreSQL: tasks failed because the outcome of "
         "their COMMIT could not be learnt", ds.commit_unknown, 0},
        {"commits", "Group-commit transactions", ds.commits, 0},
        {"batches", "Batches taken by workers", ds.batches, 0},
        {"queue_reserved", "Slots reserved by admitted requests", ds.reserved, 1},
        {"queue_queued", "Tasks waiting in the queue", ds.queued, 1},
        {"queue_in_flight", "Tasks running", ds.in_flight, 1},
        {"queue_depth", "Slots in use", ds.depth, 1},
        {"queue_depth_hwm", "High-water mark of slots in use", ds.depth_hwm, 1},
        {"db_state", "Database state: 0 ok, 1 failing (writes fail for "
         "good: disk full, read-only, corrupt, I/O error), 2 lost (file "
         "removed, replaced or truncated)", (uint64_t)ds.db_state, 1},
        {"db_failing", "Episodes of the failing state", ds.db_failing, 0},
        {"db_lost", "Episodes of the lost state", ds.db_lost, 0},
        {"db_reopened", "Lost databases reopened at the path",
         ds.db_reopened, 0},
        {"db_probes", "Probe transactions while failing or lost",
         ds.db_probes, 0},
        {"db_unavailable_ms", "Time spent failing or lost (ms)",
         ds.db_unavail_ms, 0},
        /* the journal (issue 15; all 0 with journal off) */
        {"journal_appends", "Journal group writes", ds.j_appends, 0},
        {"journal_records", "Journal records appended (one per SQL task)",
         ds.j_records, 0},
        {"journal_bytes", "Journal bytes appended", ds.j_bytes, 0},
        {"journal_records_pending", "Journal records not yet committed",
         ds.j_pending, 1},
        {"journal_file_bytes", "Bytes in the journal's files", ds.j_file_bytes,
         1},
        {"journal_fsyncs", "Journal fdatasync calls (journal fsync)",
         ds.j_fsyncs, 0},
        {"journal_fsync_us", "Time spent in journal fdatasync (us)",
         ds.j_fsync_ns / 1000, 0},
        {"journal_failed", "Deferred tasks refused (503): the journal "
         "append failed", ds.j_failed, 0},
        {"journal_replayed", "Journal records replayed at start",
         ds.j_replayed, 0},
        {"journal_skipped", "Journal records at start already applied",
         ds.j_skipped, 0},
        {"journal_dead_lettered", "Journal records that failed at replay "
         "(written to the dead-letter file)", ds.j_dead, 0},
        {"journal_torn", "Torn journal tails dropped at start", ds.j_torn, 0},
        {"log_repeated", "Log lines folded into repeated=N summaries",
         ds.log_repeated, 0},
        {"log_dropped", "Log lines that could not be written", log_dropped,
         0},
    };
    n = sizeof m / sizeof m[0];

    memset(&o, 0, sizeof o);
    if (prom) {
        add(&o, "# HELP waituntil_database_info The database engine\n"
                "# TYPE waituntil_database_info gauge\n"
                "waituntil_database_info{engine=\"%s\"} 1\n",
            engine);
        for (i = 0; i < n; i++)
            add(&o, "# HELP waituntil_%s %s\n# TYPE waituntil_%s %s\n"
                    "waituntil_%s %" PRIu64 "\n",
                m[i].name, m[i].help, m[i].name,
                m[i].gauge ? "gauge" : "counter", m[i].name, m[i].value);
        add(&o, "# HELP waituntil_db_state_info Database state and why\n"
                "# TYPE waituntil_db_state_info gauge\n"
                "waituntil_db_state_info{state=\"%s\",reason=\"",
            db_state_name(ds.db_state));
        add_escaped(&o, ds.db_reason, 1);
        add(&o, "\"} 1\n");
        add(&o, "# HELP waituntil_batch_size Tasks per batch (power-of-two buckets)\n"
                "# TYPE waituntil_batch_size histogram\n");
        {
            uint64_t cum = 0;
            for (i = 0; i < DEFER_HIST_BUCKETS; i++) {
                cum += ds.batch_hist[i];
                add(&o, "waituntil_batch_size_bucket{le=\"%llu\"} %" PRIu64 "\n",
                    (unsigned long long)((2ull << i) - 1), cum);
            }
            add(&o, "waituntil_batch_size_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                    "waituntil_batch_size_count %" PRIu64 "\n",
                cum, ds.batches);
        }
    } else {
        add(&o, "{\"started_unix\":%" PRId64 ",\"engine\":\"%s\"",
            ss.started_unix, engine);
        add(&o, ",\"db_status\":\"%s\",\"db_reason\":\"",
            db_state_name(ds.db_state));
        add_escaped(&o, ds.db_reason, 0);
        add(&o, "\"");
        for (i = 0; i < n; i++)
            add(&o, ",\"%s\":%" PRIu64, m[i].name, m[i].value);
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
