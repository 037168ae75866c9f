#!/bin/sh
# tests/bench/report.sh WORKDIR OUTDIR PLOT.GP -- turn run.sh's raw tables
# (WORKDIR/runs.tsv, checks.tsv, meta.txt, skipped.txt) into
# OUTDIR/RESULTS.md, OUTDIR/results.tsv (medians, the chart's data) and
# OUTDIR/results.png, and print a compact summary with every target ratio
# marked PASS or MISS.  Separate from run.sh so a report can be rebuilt
# from a finished run without measuring again.
#
# Medians are over the repetitions; a ratio is taken within each
# repetition (both runs minutes apart at most) and then the median of
# those is reported.
set -u
work=$1 out=$2 plot=$3
runs=$work/runs.tsv checks=$work/checks.tsv meta=$work/meta.txt
[ -s "$runs" ] || { echo "report: no $runs" >&2; exit 1; }
m() { sed -n "s/^$1=//p" "$meta" | head -n 1; }

# ---- medians per system/endpoint/conns -> results.tsv ---------------------
awk -F'\t' '
function med(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function mn(list,   n, a, i, v) { n = split(list, a, " "); v = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < v) v = a[i] + 0; return v }
function mx(list,   n, a, i, v) { n = split(list, a, " "); v = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > v) v = a[i] + 0; return v }
NR == 1 { next }
{
    k = $1 "\t" $2 "\t" $3
    if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
    rps[k] = rps[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7
    req[k] = req[k] " " $8; non[k] += $9; se[k] += $10
    ex[k] = ex[k] (ex[k] == "" ? "" : ",") $13
    dr[k] = dr[k] " " ($14 == "-" ? 0 : $14)
    rss[k] = rss[k] " " ($15 == "-" ? 0 : $15)
    hwm[k] = $16; rej[k] = $17; r503[k] = $18
    tpc[k] = tpc[k] ($19 == "-" || $19 == "" ? "" : " " $19)
}
END {
    print "system\tendpoint\tconns\trps\trps_min\trps_max\tp50_ms\tp99_ms\trequests\tnon2xx\tsock_errs\textra_rows\tdrain_s_max\trss_max_kb\tqueue_hwm\ttasks_rejected\tresp_503\ttasks_per_commit"
    for (i = 1; i <= nk; i++) {
        k = order[i]
        printf "%s\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.0f\t%d\t%d\t%s\t%.1f\t%d\t%s\t%s\t%s\t%s\n", k,
            med(rps[k]), mn(rps[k]), mx(rps[k]), med(p50[k]), med(p99[k]), med(req[k]),
            non[k], se[k], ex[k], mx(dr[k]), mx(rss[k]), hwm[k], rej[k], r503[k],
            tpc[k] == "" ? "-" : sprintf("%.1f", med(tpc[k]))
    }
}' "$runs" > "$out/results.tsv"

# ---- targets ----------------------------------------------------------------
# Per-rep values keyed "system endpoint conns rep", then ratio medians.
targets=$work/targets.txt
awk -F'\t' -v conns="$(m conns)" '
function med(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
# ratio NUM DEN CONNS FIELD: median over reps of NUM/DEN ("" if missing)
function ratio(ns, ne, ds, de, c, f,   r, l, a, b) {
    l = ""
    for (r = 1; r <= maxrep; r++) {
        a = (f == "p99") ? p99[ns, ne, c, r] : rps[ns, ne, c, r]
        b = (f == "p99") ? p99[ds, de, c, r] : rps[ds, de, c, r]
        if (a != "" && b != "" && b + 0 > 0) l = l " " a / b
    }
    return l == "" ? "" : med(l)
}
function line(name, v, op, goal, info) {
    if (v == "") { printf "n/a \t%s\tnot measured (system skipped)\n", name; return }
    ok = (op == ">=") ? v >= goal : v <= goal
    printf "%s\t%s\t%.3f (goal %s %s)\n", info ? "info" : (ok ? "PASS" : "MISS"), name, v, op, goal
}
FNR == 1 { next }
{
    rps[$1, $2, $3, $4] = $5; p99[$1, $2, $3, $4] = $7
    if ($4 > maxrep) maxrep = $4
}
END {
    n = split(conns, cs, " ")
    for (i = 1; i <= n; i++) {
        c = cs[i]
        line("c=" c " waituntil /log req/s / waituntil /hello", ratio("wu", "/log", "wu", "/hello", c), ">=", 0.95)
        line("c=" c " waituntil /log p99 / waituntil /hello p99", ratio("wu", "/log", "wu", "/hello", c, "p99"), "<=", 1.2)
        line("c=" c " waituntil /log / PHP-FPM /deferred (finish_request, synchronous FULL)", ratio("wu", "/log", "php", "/deferred", c), ">=", 10)
        line("c=" c " waituntil /log / PHP-FPM /deferred_normal (synchronous NORMAL, like-for-like)", ratio("wu", "/log", "php", "/deferred_normal", c), ">=", 10)
        line("c=" c " waituntil /log / workers-qb on workerd /log", ratio("wu", "/log", "cf", "/log", c), ">=", 15)
        line("c=" c " waituntil /hello / bare libfcgi /hello", ratio("wu", "/hello", "bare", "/hello", c), ">=", 0.95)
        line("c=" c " waituntil /log / waituntil /log_sync", ratio("wu", "/log", "wu", "/log_sync", c), ">=", 1, 1)
    }
}' "$runs" > "$targets"

# Loss, rejections, memory: from checks.tsv, runs.tsv and the final status.
awk -F'\t' '
FILENAME ~ /checks/ && $1 == "exact" {
    ok = ($4 == $5 && $5 == $6)
    printf "%s\texact %s %s: %d requests, %d answered 200, %d rows added\n", ok ? "PASS" : "MISS", $2, $3, $4, $5, $6
}
FILENAME ~ /checks/ && $1 == "final" {
    ok = ($6 >= 0 && $6 <= $7)
    printf "%s\tfinal %s %s: %d rows after stop, %d answers counted, rows-answers %d (0..%d allowed: wrk in-flight)\n", ok ? "PASS" : "MISS", $2, $3, $4, $5, $6, $7
}
FILENAME ~ /checks/ && $1 == "wu_exit" {
    printf "%s\twaituntil exited %s after SIGTERM\n", $2 == 0 ? "PASS" : "MISS", $2
    printf "%s\twaituntil peak RSS (VmHWM) %.1f MiB (goal <= 32 MiB)\n", $3 <= 32768 ? "PASS" : "MISS", $3 / 1024
}
FILENAME ~ /runs/ && FNR > 1 && $1 == "wu" && $3 == 128 {
    n128 += $9; if ($17 + 0 > rej) rej = $17 + 0; if ($18 + 0 > r503) r503 = $18 + 0; seen = 1
}
END {
    if (seen) printf "%s\tc=128 with the shipped conf: non-2xx %d, tasks_rejected %d, 503 queue full %d\n", (n128 + rej + r503 == 0) ? "PASS" : "MISS", n128, rej, r503
}' "$checks" "$runs" >> "$targets"
if [ -s "$work/wu-stopped.txt" ]; then
    l=$(cat "$work/wu-stopped.txt")
    f=$(printf '%s' "$l" | sed -n 's/.* failed=\([0-9]*\).*/\1/p')
    left=$(printf '%s' "$l" | sed -n 's/.* left=\([0-9]*\).*/\1/p')
    v=MISS; [ "${f:-1}" = 0 ] && [ "${left:-1}" = 0 ] && v=PASS
    printf '%s\twaituntil drain at stop: %s\n' "$v" "$(printf '%s' "$l" | sed 's/.*event=stopped //')" >> "$targets"
fi

# ---- chart ------------------------------------------------------------------
if command -v gnuplot >/dev/null 2>&1; then
    # label, req/s and p99 per concurrency, one line per system/endpoint
    awk -F'\t' 'NR > 1 {
        k = $1 " " $2; if (!(k in s)) { s[k] = 1; o[++n] = k }
        r[k, $3] = $4; p[k, $3] = $8
    } END {
        for (i = 1; i <= n; i++) {
            k = o[i]; split(k, a, " ")
            name = a[1] == "wu" ? "waituntil" : a[1] == "bare" ? "bare-libfcgi" : a[1] == "php" ? "php-fpm" : "workerd"
            printf "\"%s %s\"\t%s\t%s\t%s\t%s\n", name, a[2], r[k, 32] + 0, r[k, 128] + 0, p[k, 32] + 0, p[k, 128] + 0
        }
    }' "$out/results.tsv" > "$work/chart.dat"
    gnuplot -e "datafile='$work/chart.dat'; outfile='$out/results.png'; subtitle='$(m date_utc) UTC, $(m nproc) x $(m cpu | sed "s/'//g"), median of $(m reps) runs'" \
        "$plot" 2> "$work/gnuplot.log" || echo "report: gnuplot failed: $(tail -n 2 "$work/gnuplot.log")" >&2
else
    echo "report: gnuplot not installed (Debian: gnuplot-nox); no chart" >&2
fi

# ---- RESULTS.md -------------------------------------------------------------
{
    echo "# Benchmarks: waituntil vs bare libfcgi, PHP-FPM 8.2, workers-qb on workerd"
    echo
    echo "Generated by \`tests/bench/run.sh\` (\`make bench\`) on $(m date_utc) UTC; the run took $(m duration_s) s."
    echo "Raw wrk outputs, server logs and the per-run table are in the run's work folder (\`runs.tsv\`, \`raw/\`)."
    echo
    echo "## Machine and versions"
    echo
    echo '```'
    for k in nproc cpu mem kernel load_before git app cc nginx wrk sqlite libfcgi php node miniflare workerd workers_qb; do
        v=$(m $k); [ -z "$v" ] || printf '%-12s %s\n' "$k" "$v"
    done
    echo '```'
    if [ -s "$work/skipped.txt" ]; then
        echo
        echo "**Skipped:**"
        awk -F'\t' '{ printf "- %s: %s\n", $1, $2 }' "$work/skipped.txt"
    fi
    echo
    echo "## Commands"
    echo
    echo '```'
    echo "load:    $(m wrk_cmd)"
    echo "warm-up: $(m warmup)"
    echo "order:   $(m reps) repetitions x conns ($(m conns)), interleaved: rep 1 of every system/endpoint/concurrency, then rep 2, ..."
    printf '%s\n' "exact:   $(m exact_cmd)"
    echo '```'
    echo
    echo "Systems (all on 127.0.0.1, each from a private prefix; nginx 2 workers, access log off, \`fastcgi_keep_conn off\`):"
    echo
    echo "- **waituntil**: \`app/waituntil\` built \`-g -O2\`, the shipped \`conf/waituntil.conf\` (4 request threads, 2 pool workers, queue 65536, batch 256, WAL, \`synchronous normal\`) plus \`route any /log_sync { handler log_sync; }\`. \`/hello\` answers from conf, \`/log\` answers and then inserts the log row in the pool, \`/log_sync\` inserts on the request thread before answering. nginx from \`nginx/dev.conf.in\` via \`tools/stack.sh\`."
    echo "- **bare libfcgi**: \`tests/bench/bare_fcgi.c\`, 4 threads in \`FCGX_Accept_r\` without a mutex, the same answer bytes as waituntil's \`/hello\`, behind the same nginx conf."
    echo "- **PHP-FPM 8.2**: \`pm = static\`, 8 children, opcache on, own prefix and conf (\`tests/bench/php/\`), same nginx shape. PDO SQLite, a new connection per request, WAL. \`/sync\` inserts then answers; \`/deferred\` answers, calls \`fastcgi_finish_request()\`, then inserts, with SQLite's default \`synchronous\` (FULL in Debian's build), as in the peer baselines; \`/deferred_normal\` is the same with \`PRAGMA synchronous=NORMAL\`, waituntil's durability."
    echo "- **workers-qb 1.14.0 on workerd**: Miniflare 4 hosting the seed's Worker (\`tests/bench/workerd/src/worker.js\`: \`ctx.waitUntil(qb.insert({tableName: 'logs', data: {...}}).execute())\`) with a local D1 (SQLite file, WAL, workerd's own sync setting); workerd serves HTTP itself (no nginx)."
    echo
    echo "## Results (median of the repetitions)"
    echo
    echo "| system | endpoint | conns | req/s | req/s range | p50 ms | p99 ms | requests | non-2xx | socket errs | rows − 2xx per rep | drain s | app RSS max MiB | queue hwm | rejected | 503 full | tasks/commit |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' 'NR > 1 {
        name = $1 == "wu" ? "waituntil" : $1 == "bare" ? "bare libfcgi" : $1 == "php" ? "PHP-FPM" : "workers-qb/workerd"
        w = $2 != "/hello"
        printf "| %s | %s | %s | %d | %d–%d | %.2f | %.2f | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n",
            name, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, w ? $12 : "—", w ? $13 : "—",
            $1 == "wu" ? sprintf("%.1f", $14 / 1024) : "—", $1 == "wu" ? $15 : "—", $1 == "wu" ? $16 : "—", $1 == "wu" ? $17 : "—",
            ($1 == "wu" && $2 == "/log") ? $18 : "—"
    }' "$out/results.tsv"
    echo
    echo "*rows − 2xx per rep*: rows the endpoint added during the measured run (counted with sqlite3 after the writes drained) minus the 2xx answers wrk counted; 0…conns is expected with no loss, because wrk stops with up to one request per connection in flight that the server still answers and writes but wrk never counts. *drain s*: time after wrk exited until the row count last changed (0.1 s polls). *queue hwm*, *rejected*, *503 full*: waituntil's \`/_status\` counters (cumulative since start) after the run. *app RSS*: waituntil's VmRSS sampled every 0.2 s during the run. *tasks/commit*: deferred writes per SQLite transaction in the pool during the run (group commit; from \`/_status\` tasks_ok and commits)."
    echo
    echo "## Targets (same-run ratios; PASS/MISS)"
    echo
    echo '```'
    cat "$targets"
    echo '```'
    echo
    echo "## Exact and final accounting"
    echo
    echo "Exact check: a fixed number of requests with curl (32 in parallel, every answer counted), then wait for the writes to drain: rows added must equal the 200 answers and the number sent. Final: after each server was stopped (waituntil with SIGTERM, which drains its queue; PHP-FPM with SIGQUIT; workerd by disposing Miniflare), the rows per path are counted with sqlite3 and compared with every 2xx answer any client counted for that path over the whole run (warm-ups, measured runs, smoke and exact checks); the slack is the sum of wrk's connections (in-flight requests wrk does not count)."
    echo
    echo '```'
    awk -F'\t' '
        $1 == "exact" { printf "exact  %-5s %-16s requests=%d http_200=%d rows_added=%d wall_s=%s drain_s=%s\n", $2, $3, $4, $5, $6, $7, $8 }
        $1 == "final" { printf "final  %-5s %-16s rows=%d answers_counted=%d rows-answers=%d slack=%d\n", $2, $3, $4, $5, $6, $7 }
        $1 == "wu_exit" { printf "waituntil exit status %s, VmHWM %d kB\n", $2, $3 }' "$checks"
    [ -s "$work/wu-stopped.txt" ] && sed 's/^/waituntil log: /' "$work/wu-stopped.txt"
    [ -s "$work/wu-status.json" ] && sed 's/^/waituntil \/_status before stop: /' "$work/wu-status.json"
    echo '```'
    if [ -s "$work/perf-top.txt" ]; then
        echo
        echo "## Profile: waituntil under wrk -c128 /log (perf record -F 999 -g -p PID, sampled while wrk ran)"
        echo
        echo '```'
        cat "$work/perf-top.txt"
        echo '```'
    fi
    if [ -s "$work/profile/summary.txt" ]; then
        echo
        echo "## Profile: instructions per request (tests/bench/profile.sh, callgrind; independent of machine load)"
        echo
        echo '```'
        cat "$work/profile/summary.txt"
        echo '```'
    fi
    [ -f "$out/results.png" ] && { echo; echo "![req/s and p99 per system and endpoint](results.png)"; }
    if [ -f "$out/ANALYSIS.md" ]; then echo; cat "$out/ANALYSIS.md"; fi
} > "$out/RESULTS.md"

# ---- stdout -----------------------------------------------------------------
echo
echo "== bench summary ($(m nproc) x $(m cpu), $(m kernel)) =="
awk -F'\t' 'NR > 1 { printf "%-5s %-16s c=%-3s %8d req/s  p50 %7.2f ms  p99 %8.2f ms  non2xx %d\n", $1, $2, $3, $4, $7, $8, $10 }' "$out/results.tsv"
echo "-- targets --"
cat "$targets"
echo "report: $out/RESULTS.md, $out/results.png"
