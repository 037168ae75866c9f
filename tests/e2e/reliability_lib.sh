# tests/e2e/reliability_lib.sh -- helpers for the reliability tests
# (tests/e2e/reliability_*.sh).  Sourced after tests/lib.sh and
# tests/e2e/e2e_lib.sh.  POSIX sh.
#
# Each reliability test prints its measured figure as one line
#     # figure: name=value ...
# (rel_figure), so a run's output is its report (docs/reliability-figures.md).

command -v python3 >/dev/null || t_skip_all "python3 not installed (holds the SQLite lock)"

# rel_set NAME VALUE: a sed expression that sets directive NAME (unique in
# the shipped conf: queue, workers, busy_timeout...) to VALUE.  Comment
# lines start with '#' and are never touched.
rel_set() {
    printf 's|^\\([[:space:]]*\\)%s [^;]*;|\\1%s %s;|\n' "$1" "$1" "$2"
}

# rel_start SED-SCRIPT [EXTRA-CONF-TEXT]: like e2e_start, but the shipped
# conf is first edited with SED-SCRIPT (a block may appear only once, so
# settings are changed in place), then EXTRA is appended (routes).  The
# migrations folder is $REL_MIG when set (a copy of conf/migrations plus the
# test's own tables).
rel_start() {
    E2E_CONF=$T_TMP/waituntil.conf
    if [ -n "${REL_MIG:-}" ]; then
        set -- "$1
$(rel_set migrations "$REL_MIG")" "${2:-}"
    fi
    sed -e "$1" "$TOP_SRCDIR/conf/waituntil.conf" > "$E2E_CONF" ||
        { t_fail "test conf written"; t_done; exit 1; }
    printf '%s\n' "${2:-}" >> "$E2E_CONF"
    E2E_DB=$T_TMP/db/waituntil.db
    E2E_PORT=$(stack_free_port)
    E2E_URL=http://127.0.0.1:$E2E_PORT
    REL_LOG=$T_TMP/prefix/logs/waituntil.log
    T_CLEANUP_HOOK='rel_lock_release; stack_stop'
    STACK_APP_ARGS="${E2E_APP_ARGS:-}"
    stack_start "$TOP_SRCDIR" "$TOP_BUILDDIR" "$T_TMP/prefix" "$E2E_PORT" \
        "$E2E_DB" "$E2E_CONF" || { t_fail "stack starts"; t_done; exit 1; }
}

# rel_migrations EXTRA-SQL: $REL_MIG = a private copy of conf/migrations plus
# 0900_reliability.sql holding EXTRA-SQL.
rel_migrations() {
    REL_MIG=$T_TMP/migrations
    mkdir -p "$REL_MIG"
    cp "$TOP_SRCDIR"/conf/migrations/*.sql "$REL_MIG/"
    printf '%s\n' "$1" > "$REL_MIG/0900_reliability.sql"
}

# rel_field JSON NAME: one integer counter out of the /_status JSON.
rel_field() {
    printf '%s' "$1" | sed -n -E "s/.*\"$2\":([0-9]+).*/\\1/p"
}
# rel_log_events PATTERN FILE...: how many events the log lines matching
# PATTERN (grep -E) stand for: a line ending in "repeated=N" (identical
# failures folded into one line a second) stands for N, any other for 1.
rel_log_events() {
    rle_pat=$1; shift
    cat "$@" 2>/dev/null | grep -E "$rle_pat" |
        awk '{ n = 1; if (match($0, / repeated=[0-9]+$/)) n = substr($0, RSTART + 10) + 0; s += n }
             END { print s + 0 }'
}
# rel_status: the /_status JSON, through nginx.
rel_status() {
    curl -s --max-time 60 "$E2E_URL/_status"
}

# rel_proc FIELD [PID]: a number from /proc/PID/status (VmRSS in kB,
# Threads...).
rel_proc() {
    sed -n "s/^$1:[[:space:]]*\\([0-9]*\\).*/\\1/p" "/proc/${2:-$STACK_APP_PID}/status"
}

# ---- the outside writer that stalls the pool -------------------------------
#
# rel_lock_hold DB [MAX_MS]: a python3 sqlite3 connection takes
# BEGIN IMMEDIATE on DB (the write lock: every other writer gets
# SQLITE_BUSY) and keeps it until rel_lock_release, or at most MAX_MS
# (default 600000, so a failed test never leaves it behind; far above
# what a test holds it on a loaded machine, where 2,000 requests through
# the TSan build take minutes).  Returns once the lock is held.  Release is SIGUSR1, not a pipe: a pipe's write end
# would be inherited by every process started meanwhile.
rel_lock_hold() {
    cat > "$T_TMP/holder.py" <<'EOF'
import signal, sqlite3, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
db, max_ms, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(db, isolation_level=None, timeout=60)
c.execute("BEGIN IMMEDIATE")
open(ready, "w").close()
signal.sigtimedwait([signal.SIGUSR1], max_ms / 1000.0)
c.execute("COMMIT")
c.close()
EOF
    rm -f "$T_TMP/lock.ready"
    python3 "$T_TMP/holder.py" "$1" "${2:-600000}" "$T_TMP/lock.ready" &
    REL_LOCK_PID=$!
    rel_lock_settled() { [ -e "$T_TMP/lock.ready" ] || ! kill -0 "$REL_LOCK_PID" 2>/dev/null; }
    if ! t_wait_for "" rel_lock_settled || [ ! -e "$T_TMP/lock.ready" ]; then
        kill "$REL_LOCK_PID" 2>/dev/null
        REL_LOCK_PID=
        return 1
    fi
}
# rel_lock_release: commit the outside transaction and wait for it.
rel_lock_release() {
    [ -n "${REL_LOCK_PID:-}" ] || return 0
    kill -USR1 "$REL_LOCK_PID" 2>/dev/null
    wait "$REL_LOCK_PID" 2>/dev/null
    REL_LOCK_PID=
}

# ---- figures and checks -------------------------------------------------------

# rel_figure TEXT: print "# figure: TEXT" (and keep it in $REL_FIGURES).
rel_figure() {
    echo "# figure: $*"
    [ -z "${REL_FIGURES:-}" ] || echo "$(basename "$0"): $*" >> "$REL_FIGURES"
}

# rel_pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE.
rel_pct() {
    sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 }
        END { if (NR == 0) { print 0; exit }
              k = int((p * NR + 99) / 100); if (k < 1) k = 1; print v[k] }'
}

# rel_ms_since T0_NS: milliseconds since a `date +%s%N` reading.
rel_ms_since() {
    echo $((($(date +%s%N) - $1) / 1000000))
}

# rel_log_clean [LOG]: the app's stderr holds no sanitizer report.  In the
# ASan/TSan trees the app itself is instrumented, so this is what turns a
# report in a request or worker thread into a failed script.
rel_log_clean() {
    l=${1:-$REL_LOG}
    if grep -E -n 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error' \
        "$l" >"$T_TMP/san" 2>/dev/null; then
        t_fail "no sanitizer report in the app log ($(basename "$l"))" "$(head -n 20 "$T_TMP/san")"
    else
        t_ok "no sanitizer report in the app log (${WU_SANITIZER:-plain} build)"
    fi
}

# expect DESCRIPTION GOT WANT
expect() {
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "got: $2
want: $3"; fi
}

# rel_curl_codes URLFILE OUT PARALLEL: run a curl config (url/output pairs)
# in parallel; OUT gets "CODE SECONDS" per request.
rel_curl_codes() {
    curl -s --no-progress-meter --max-time 120 --parallel --parallel-max "$3" \
        -K "$1" -w '%{http_code} %{time_total}\n' > "$2" 2>/dev/null
}

# After a SIGKILL round and a restart: every path answered 200 in
# $T_TMP/codes.ROUND must be in the rows in $T_TMP/rows.ROUND (the
# caller's SELECT, sorted), none twice; a stalled round (STALLED 1)
# must have come back from the journal (the last journal_replayed line
# of LOG).  One figure line, NAME round=ROUND ...
rel_sigkill_account() { # ROUND STALLED LOG NAME [STATUS (200)]
    sk_ok=$T_TMP/ok.$1 sk_rows=$T_TMP/rows.$1 sk_st=${5:-200}
    # The request's path: the URL without its scheme and authority.
    grep "^$sk_st " "$T_TMP/codes.$1" | sed 's|^[0-9]* [a-z]*://[^/]*||' |
        sort > "$sk_ok"
    sk_n200=$(wc -l < "$sk_ok")
    sk_nrows=$(wc -l < "$sk_rows")
    sk_lost=$(comm -23 "$sk_ok" "$sk_rows" | sort -u | wc -l)
    sk_dup=$(uniq -d "$sk_rows" | wc -l)
    sk_replayed=$(grep 'event=journal_replayed' "$3" | tail -n 1 |
        sed -n 's/.*replayed=\([0-9]*\).*/\1/p')
    [ "$sk_n200" -gt 0 ] && t_ok "$1: $sk_n200 writes answered $sk_st before SIGKILL" ||
        t_fail "$1: nothing answered"
    expect "$1: every answered write is in the database after restart" "$sk_lost" 0
    expect "$1: no write ran twice" "$sk_dup" 0
    [ "$2" = 0 ] || expect "$1: the answered writes came back from the journal" \
        "$([ "${sk_replayed:-0}" -ge "$sk_n200" ] && echo yes)" yes
    rel_figure "$4 round=$1 requests=$N answered_200=$sk_n200 rows=$sk_nrows lost=$sk_lost duplicated=$sk_dup replayed=${sk_replayed:-0}"
}
