#!/bin/sh
# End-to-end, through real nginx: the status route (issue 17, "metrics by
# the conventions").
#
#   table   README.md's status table names exactly the JSON keys and the
#           Prometheus families, samples, labels and types that /_status
#           gives (tests/e2e/status_check.py readme): neither can drift
#           from the other again.
#   format  the Prometheus text passes a strict parser of the exposition
#           format and the naming rules (status_check.py prom), and
#           promtool's linter when it is installed; the checker itself
#           refuses broken variants of the real text, so a checker that
#           passes everything cannot go unnoticed.
#   values  version and SQLite as `waituntil -V` says, start time and
#           uptime, the histogram's buckets, _sum and _count against the
#           JSON's batch_size_hist, batch_tasks and batches, and the two
#           formats agreeing on the task counters once the pool is idle.
# Waits are for conditions (wait_rows, e2e_wait_idle); none is a sleep.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
command -v python3 >/dev/null || t_skip_all "python3 not installed"
t_tmpdir

CHECK="python3 $TESTS_SRCDIR/e2e/status_check.py"
README=$TOP_SRCDIR/README.md

e2e_start ''

expect() { # expect DESCRIPTION GOT WANT
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "got: $2
want: $3"; fi
}
# pval FILE SAMPLE: the value of one sample line (name and labels as
# written) in a Prometheus text.
pval() { awk -v s="$2" '$1 == s { print $2 }' "$1"; }
jfield() { e2e_field "$(cat "$1")" "$2"; }

# ---- some traffic, so that counters and the histogram move -------------------
seq 1 200 | sed "s|.*|url = \"$E2E_URL/log/s&\"\noutput = \"/dev/null\"|" > "$T_TMP/urls"
curl -s --no-progress-meter --parallel --parallel-max 32 -K "$T_TMP/urls" \
    -w '%{http_code}\n' > "$T_TMP/codes"
expect "200 writes answered 200" "$(grep -c '^200$' "$T_TMP/codes")" 200
curl -s -o /dev/null "$E2E_URL/hello"
curl -s -o /dev/null "$E2E_URL/nope"
wait_rows "SELECT count(*) FROM logs WHERE path LIKE '/log/s%'" 200 &&
    t_ok "... and their 200 rows landed" || t_fail "rows" "$(e2e_log)"
e2e_wait_idle || t_fail "the pool drains" "$(e2e_status)"

# ---- both formats ---------------------------------------------------------------
curl -s --max-time 60 -D "$T_TMP/json.h" -o "$T_TMP/json" "$E2E_URL/_status"
curl -s --max-time 60 -D "$T_TMP/prom.h" -o "$T_TMP/prom" \
    "$E2E_URL/_status?format=prometheus"
grep -qi '^Content-Type: application/json' "$T_TMP/json.h" &&
    t_ok "JSON: Content-Type application/json" ||
    t_fail "JSON Content-Type" "$(cat "$T_TMP/json.h")"
grep -qi '^Content-Type: text/plain; version=0.0.4; charset=utf-8' "$T_TMP/prom.h" &&
    t_ok "Prometheus: Content-Type text/plain; version=0.0.4" ||
    t_fail "Prometheus Content-Type" "$(cat "$T_TMP/prom.h")"

out=$($CHECK prom "$T_TMP/prom" 2>&1) &&
    t_ok "the Prometheus text passes the strict format and naming checks" ||
    t_fail "Prometheus text" "$out"
out=$($CHECK readme "$README" "$T_TMP/json" "$T_TMP/prom" 2>&1) &&
    t_ok "README's status table matches the JSON keys and the Prometheus families" ||
    t_fail "README status table vs output" "$out"
# The reference parser: the Prometheus Python client's (Debian's
# python3-prometheus-client, installed by tools/dev.sh check and CI; it
# lives in Debian's own python3, which a pyenv python3 may shadow).
pyprom=
for py in python3 /usr/bin/python3; do
    if "$py" -c 'import prometheus_client' 2>/dev/null; then pyprom=$py; break; fi
done
if [ -n "$pyprom" ]; then
    out=$("$pyprom" - "$T_TMP/prom" 2>&1 <<'EOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(open(sys.argv[1]).read()))
names = {f.name for f in fams}
assert "waituntil_build_info" in names, sorted(names)
assert any(f.name == "waituntil_tasks_ok" and f.type == "counter"
           for f in fams), [(f.name, f.type) for f in fams][:10]
hist = [f for f in fams if f.type == "histogram"]
assert hist and {s.name for s in hist[0].samples} >= {
    hist[0].name + "_bucket", hist[0].name + "_sum",
    hist[0].name + "_count"}, hist
print(len(fams))
EOF
) && t_ok "prometheus_client's parser reads it ($out families)" ||
        t_fail "prometheus_client's parser" "$out"
else
    t_fail "prometheus_client's parser" \
        "python3-prometheus-client is not installed (tools/dev.sh check installs it)"
fi
if command -v promtool >/dev/null; then
    out=$(promtool check metrics < "$T_TMP/prom" 2>&1) &&
        t_ok "promtool check metrics: clean" || t_fail "promtool" "$out"
else
    echo "# promtool not installed: its lint skipped (status_check.py ran)"
fi

# ---- the checker refuses what it should -------------------------------------------
# Each variant breaks one rule in a copy of the real text (or README).
refuses() { # refuses DESCRIPTION SED-SCRIPT [readme]
    if [ "${3:-}" = readme ]; then
        good=$README bad=$T_TMP/README.bad
    else
        good=$T_TMP/prom bad=$T_TMP/prom.bad
    fi
    sed "$2" "$good" > "$bad"
    if cmp -s "$good" "$bad"; then
        t_fail "refuses $1: the sed script changed nothing (update the test)"
        return
    fi
    if [ "${3:-}" = readme ]; then
        $CHECK readme "$bad" "$T_TMP/json" "$T_TMP/prom" > "$T_TMP/why"
    else
        $CHECK prom "$bad" > "$T_TMP/why"
    fi
    [ $? = 1 ] && t_ok "the checker refuses $1: $(head -n 1 "$T_TMP/why")" ||
        t_fail "the checker accepts $1" "$(cat "$T_TMP/why")"
}
refuses "a counter without _total" 's/^waituntil_tasks_ok_total /waituntil_tasks_ok /; s/ waituntil_tasks_ok_total / waituntil_tasks_ok /'
refuses "a time in milliseconds" 's/waituntil_db_unavailable_seconds_total/waituntil_db_unavailable_ms_total/'
refuses "a second TYPE line" 's/^\(# TYPE waituntil_commits_total counter\)$/\1\n\1/'
refuses "a family without HELP" '/^# HELP waituntil_commits_total /d'
refuses "a family split in two groups" '/^waituntil_build_info{/{h;d}; ${G}'
refuses "buckets that are not cumulative" 's/^waituntil_batch_size_bucket{le="+Inf"} .*/waituntil_batch_size_bucket{le="+Inf"} 0/'
refuses "a histogram without _sum" '/^waituntil_batch_size_sum /d'
refuses "a bad escape in a label value" 's/^waituntil_db_state_info{state="ok",reason="/&\\x/'
refuses "a sample value that is no number" 's/^waituntil_commits_total .*/waituntil_commits_total 1,5/'
refuses "a README without a row for a JSON key" '/^| `tasks_refused` /d' readme
refuses "a README naming a key the output lacks" 's/^| `tasks_ok` /| `ok` /' readme
refuses "a README with a wrong type" '/^| `commits` /s/| counter |/| gauge |/' readme
refuses "a README naming a label value the output lacks" 's/{code="3xx"}/{code="1xx"}/' readme

# ---- values ----------------------------------------------------------------------
ver=$("$TOP_BUILDDIR/app/waituntil" -V | sed -n 's/^waituntil //p')
sqlv=$("$TOP_BUILDDIR/app/waituntil" -V | sed -n 's/^libsqlite3 \([^ ]*\) .*/\1/p')
grep -q "\"version\":\"$ver\",\"sqlite_version\":\"$sqlv\",\"engine\":\"sqlite\"" "$T_TMP/json" &&
    t_ok "JSON: version $ver, SQLite $sqlv, engine sqlite (as waituntil -V)" ||
    t_fail "JSON version" "$(cat "$T_TMP/json")"
expect "Prometheus: waituntil_build_info with the same labels" \
    "$(pval "$T_TMP/prom" "waituntil_build_info{version=\"$ver\",sqlite=\"$sqlv\",engine=\"sqlite\"}")" 1
st=$(jfield "$T_TMP/json" started_unix) now=$(date +%s)
up=$(jfield "$T_TMP/json" uptime_seconds)
[ "$st" -le "$now" ] && [ "$st" -gt $((now - 86400)) ] &&
    t_ok "started_unix is a time of today ($st)" || t_fail "started_unix" "$st vs $now"
[ "$up" -ge 0 ] && [ "$up" -le $((now - st + 1)) ] &&
    t_ok "uptime_seconds is the time since the start ($up)" ||
    t_fail "uptime_seconds" "$up (started $st, now $now)"
expect "waituntil_start_time_seconds = started_unix" \
    "$(pval "$T_TMP/prom" waituntil_start_time_seconds)" "$st"

# The pool was idle for both reads and only /_status ran in between
# (it defers nothing): the task counters are the same in both formats.
for k in tasks_admitted tasks_ok tasks_failed tasks_rejected tasks_refused commits; do
    expect "$k = waituntil_${k}_total" \
        "$(pval "$T_TMP/prom" "waituntil_${k}_total")" "$(jfield "$T_TMP/json" $k)"
done
expect "db_unavailable_ms 0 = waituntil_db_unavailable_seconds_total 0.000" \
    "$(jfield "$T_TMP/json" db_unavailable_ms) $(pval "$T_TMP/prom" waituntil_db_unavailable_seconds_total)" \
    "0 0.000"

# The histogram: JSON's per-bucket counts summed up are Prometheus's
# cumulative buckets; _count = batches, _sum = batch_tasks = the tasks run.
batches=$(jfield "$T_TMP/json" batches)
btasks=$(jfield "$T_TMP/json" batch_tasks)
ok=$(jfield "$T_TMP/json" tasks_ok) failed=$(jfield "$T_TMP/json" tasks_failed)
expect "batch_tasks = tasks_ok + tasks_failed (every admitted task ran in a batch)" \
    "$btasks" "$((ok + failed))"
[ "$btasks" -ge 200 ] && [ "$batches" -ge 1 ] && [ "$batches" -le "$btasks" ] &&
    t_ok "$btasks tasks in $batches batches" || t_fail "batches" "$batches / $btasks"
expect "waituntil_batch_size_count = batches" \
    "$(pval "$T_TMP/prom" waituntil_batch_size_count)" "$batches"
expect "waituntil_batch_size_sum = batch_tasks" \
    "$(pval "$T_TMP/prom" waituntil_batch_size_sum)" "$btasks"
hist=$(sed -n 's/.*"batch_size_hist":\[\([0-9,]*\)\].*/\1/p' "$T_TMP/json")
want=$(echo "$hist" | tr ',' '\n' | awk '
    { cum += $1; le = (NR < 16) ? 2 ^ NR - 1 : "+Inf"
      printf "waituntil_batch_size_bucket{le=\"%s\"} %d\n", le, cum }')
expect "buckets: le=2^(k+1)-1 and +Inf, cumulative sums of batch_size_hist" \
    "$(grep '^waituntil_batch_size_bucket' "$T_TMP/prom")" "$want"
t_done
