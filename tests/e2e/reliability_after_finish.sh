#!/bin/sh
# Reliability 7 -- after FCGX_Finish_r: tasks built from request data,
# under load.
#
# Handlers that register deferred work built from the request (/log: $uri
# and method; /seen: a header; /logout: a header; /json: a JSON body
# field; /touch/:id: the C handler copying a path segment) take 16
# concurrent clients with varied data while workers run the writes after
# each response is finished -- so every value a task uses must have been
# copied out of the request before libfcgi freed it.  Every row must hold
# exactly the data its request sent.  In the ASan tree (make check-asan)
# the app is built with ASan+UBSan and this script fails on any report in
# its log; the same goes for TSan in make check-tsan.
# Figure: requests, req/s, rows checked, sanitizer reports.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
t_tmpdir

N=${REL_AF_N:-3000}
rel_start "$(rel_set workers 2)" '
route POST /json {
    respond 201 application/json "{\"ok\":true}";
    defer insert logs { method $request_method; path $body_path; timestamp $time_iso; }
}
route POST /touch/:id { handler touch; }'

# Users and sessions the /seen and /logout writes touch.
python3 - "$E2E_DB" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.executemany("INSERT INTO users (id, name) VALUES (?, ?)",
              [("u%d" % i, "n%d" % i) for i in range(100)])
c.executemany("INSERT INTO sessions (id, user_id) VALUES (?, ?)",
              [("s%d" % i, "u%d" % (i % 100)) for i in range(1000)])
c.commit()
EOF

cat > "$T_TMP/load.py" <<'EOF'
# load.py PORT N: N requests over 16 threads; prints "KIND CODE" lines.
import http.client, json, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
lock = threading.Lock()
out = []
def one(i):
    k = i % 5
    # A value with quotes, spaces and multi-byte UTF-8: all must survive.
    tag = "v%d-\u00e9\u4e2d'\"" % i
    if k == 0:
        m, p, h, b, kind = "GET", "/log/a%d" % i, {}, None, "log"
    elif k == 1:
        m, p, h, b, kind = "POST", "/seen", {"X-User-ID": "u%d" % ((i // 5) % 100)}, None, "seen"
    elif k == 2:
        m, p, h, b, kind = "POST", "/logout", {"X-Session-ID": "s%d" % (i // 5)}, None, "logout"
    elif k == 3:
        m, p, h = "POST", "/json", {"Content-Type": "application/json"}
        b, kind = json.dumps({"path": "/j/" + tag}).encode(), "json"
    else:
        m, p, h, b, kind = "POST", "/touch/t%d" % i, {}, None, "touch"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(m, p, body=b, headers=h)
        r = c.getresponse()
        r.read()
        code = r.status
    except Exception as e:
        code = 0
    finally:
        c.close()
    with lock:
        out.append("%s %d" % (kind, code))
def worker(start):
    for i in range(start, n, 16):
        one(i)
ts = [threading.Thread(target=worker, args=(s,)) for s in range(16)]
for t in ts: t.start()
for t in ts: t.join()
print("\n".join(out))
EOF
t0=$(date +%s%N)
python3 "$T_TMP/load.py" "$E2E_PORT" "$N" > "$T_TMP/codes"
load_ms=$(rel_ms_since "$t0")
[ "$load_ms" -gt 0 ] || load_ms=1
okc() { grep -c "^$1 $2\$" "$T_TMP/codes"; }
n_ok=$(($(okc log 200) + $(okc seen 200) + $(okc logout 200) + $(okc json 201) + $(okc touch 202)))
expect "all $N requests answered 2xx" "$n_ok" "$N"

# Rows carry exactly what each request sent.
k=$((N / 5))
wait_rows "SELECT count(*) FROM logs WHERE path GLOB '/log/a[0-9]*'" "$(okc log 200)" &&
    t_ok "/log: one row per request" || t_fail "/log rows" "$(e2e_log)"
expect "/log rows hold their own path" \
    "$(sql "SELECT count(*) FROM logs WHERE path GLOB '/log/a[0-9]*' AND (CAST(substr(path, 7) AS INTEGER) % 5) = 0 AND method = 'GET'")" \
    "$(okc log 200)"
wait_rows "SELECT count(*) FROM logs WHERE path LIKE '/j/v%'" "$(okc json 201)" &&
    t_ok "/json: one row per request" || t_fail "/json rows"
expect "/json rows hold the exact multi-byte value sent" \
    "$(sql "SELECT count(*) FROM logs WHERE path = '/j/v' || substr(path, 5, instr(substr(path, 5), '-') - 1) || '-' || char(233, 20013, 39, 34) AND method = 'POST'")" \
    "$(okc json 201)"
wait_rows "SELECT count(*) FROM users WHERE id GLOB 't[0-9]*' AND last_seen IS NOT NULL" "$(okc touch 202)" &&
    t_ok "/touch/:id: one upserted user per request" || t_fail "/touch rows"
wait_rows "SELECT count(*) FROM sessions" "$((1000 - $(okc logout 200)))" &&
    t_ok "/logout: each named session deleted" || t_fail "/logout rows" "$(sql "SELECT count(*) FROM sessions")"
wait_rows "SELECT count(*) FROM users WHERE id GLOB 'u[0-9]*' AND last_seen IS NOT NULL" \
    "$( [ "$k" -ge 100 ] && echo 100 || echo "$k")" &&
    t_ok "/seen: each named user marked" || t_fail "/seen rows"
# Rows are committed before the pool counts them: read the counters idle.
e2e_wait_idle || t_fail "the pool drains" "$(rel_status)"
st=$(rel_status)
expect "no deferred task failed" "$(rel_field "$st" tasks_failed)" "0"
expect "admitted = ok (all ran)" "$(rel_field "$st" tasks_admitted)" "$(rel_field "$st" tasks_ok)"
stack_stop_app TERM
expect "clean exit" "$STACK_APP_RC" "0"
nrep=$(grep -E -c 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error' "$REL_LOG")
rel_figure "after_finish build=${WU_SANITIZER:-plain} requests=$N answered_2xx=$n_ok req_per_s=$((N * 1000 / load_ms)) tasks_ok=$(rel_field "$st" tasks_ok) sanitizer_reports=$nrep"
rel_log_clean
t_done
