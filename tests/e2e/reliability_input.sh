#!/bin/sh
# Reliability 5 -- bad input through nginx, and confs with errors.
#
# One check per kind of bad input, through real nginx (what a client can
# actually send).  The same inputs sent straight to the app, where nginx
# would have filtered them, are in tests/check_reliability.c.  Values that
# feed a deferred write come from every kind of source ($arg_, $http_,
# $body_ form and JSON, $seg_, $uri, $query_string, $content_type); an
# SQL-injection string in each must be stored verbatim, as a bound value.
# The second half: broken confs, each refused by `waituntil -t` with exit 1
# and a file:line message (cli.sh has four; these are the rest).
# Figure: checks passed, rows stored verbatim, the server's 4xx count.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
t_tmpdir

rel_migrations 'CREATE TABLE IF NOT EXISTS rel_values (
    id INTEGER PRIMARY KEY, src TEXT NOT NULL, v TEXT);'
rel_start "" '
route POST /in/arg { respond 200 "ok"; defer insert rel_values { src "arg"; v $arg_v; } }
route POST /in/header { respond 200 "ok"; defer insert rel_values { src "header"; v $http_x_v; } }
route POST /in/body { respond 200 "ok"; defer insert rel_values { src "body"; v $body_v; } }
route POST /in/seg/:v { respond 200 "ok"; defer insert rel_values { src "seg"; v $seg_v; } }
route POST /in/query { respond 200 "ok"; defer insert rel_values { src "query"; v $query_string; } }
route POST /in/ctype { respond 200 "ok"; defer insert rel_values { src "ctype"; v $content_type; } }
route POST /in/nested { respond 200 "ok"; defer insert rel_values { src "nested"; v $body_a.b; } }'

# code [curl args] URL: the HTTP status only.
code() { curl -s -o "$T_TMP/body" -w '%{http_code}' --max-time 60 "$@"; }
urlenc() { python3 -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=""))' "$1"; }
json_str() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
JSON='Content-Type: application/json'

# ---- bodies -----------------------------------------------------------------------
head -c 1100000 /dev/zero | tr '\0' a > "$T_TMP/big"
expect "oversized body (1.1 MB > 1m): 413" \
    "$(code --data-binary @"$T_TMP/big" "$E2E_URL/log")" "413"
expect "invalid JSON: 400" "$(code -H "$JSON" --data '{"v": ' "$E2E_URL/in/body")" "400"
expect "JSON with trailing garbage: 400" \
    "$(code -H "$JSON" --data '{"v":"a"} x' "$E2E_URL/in/body")" "400"
printf '{"v":"a\377b"}' > "$T_TMP/badutf8.json"
expect "invalid UTF-8 inside a JSON string: 400" \
    "$(code -H "$JSON" --data-binary @"$T_TMP/badutf8.json" "$E2E_URL/in/body")" "400"
expect "JSON \\u0000 (NUL) in a string: 400" \
    "$(code -H "$JSON" --data '{"v":"a\u0000b"}' "$E2E_URL/in/body")" "400"
expect "JSON lone surrogate \\udc00: 400" \
    "$(code -H "$JSON" --data '{"v":"\udc00"}' "$E2E_URL/in/body")" "400"
expect "JSON duplicate key: 400" \
    "$(code -H "$JSON" --data '{"v":"a","v":"b"}' "$E2E_URL/in/body")" "400"
expect "JSON nested 100 deep (> 32): 400" \
    "$(code -H "$JSON" --data "$(printf '%.0s[' $(seq 1 100))" "$E2E_URL/in/body")" "400"
expect "form field with invalid UTF-8 (%FF): 400" \
    "$(code -H 'Content-Type: application/x-www-form-urlencoded' --data 'v=%FF' "$E2E_URL/in/body")" "400"

# ---- query strings, headers, paths ------------------------------------------------
expect "invalid UTF-8 query arg (%FF): 400" "$(code -X POST "$E2E_URL/in/arg?v=%FF")" "400"
expect "raw byte 0xFF in the query: 400" \
    "$(code -X POST "$E2E_URL/in/arg?v=$(printf '\377')")" "400"
expect "percent-encoded NUL in a query arg: 400" "$(code -X POST "$E2E_URL/in/arg?v=a%00b")" "400"
expect "invalid UTF-8 header feeding a value: 400" \
    "$(code -X POST -H "X-V: a$(printf '\377')b" "$E2E_URL/in/header")" "400"
expect "invalid UTF-8 path segment feeding a value: 400" \
    "$(code -X POST "$E2E_URL/in/seg/%FF")" "400"
head -c 20000 /dev/zero | tr '\0' h > "$T_TMP/hdr"
expect "a 20 kB header: nginx answers 400 (large_client_header_buffers)" \
    "$(code -H "X-Big: $(cat "$T_TMP/hdr")" "$E2E_URL/hello")" "400"
expect "10,000 query params (40 kB URI): nginx answers 414" \
    "$(code "$E2E_URL/log?$(seq 1 10000 | sed 's/.*/a&=1/' | paste -sd'&')")" "414"
expect "1,500 query params within nginx's limits: 431 from the app (max_args 1000)" \
    "$(code "$E2E_URL/log?$(seq 1 1500 | sed 's/.*/a=1/' | paste -sd'&')")" "431"
expect "percent-encoded NUL in the path: 400" "$(code "$E2E_URL/log/a%00b")" "400"
expect "'..' above the root: 400" "$(code --path-as-is "$E2E_URL/log/../../etc/passwd")" "400"
expect "encoded '%2e%2e' above the root: 400" \
    "$(code --path-as-is "$E2E_URL/log/%2e%2e/%2e%2e/etc")" "400"
expect "'..' inside the tree is resolved before routing" \
    "$(code --path-as-is "$E2E_URL/log/a/../dotdot")" "200"
expect "unknown method on a GET route: 405" "$(code -X FOO "$E2E_URL/hello")" "405"
expect "unknown method on an any-method route: 200" "$(code -X FOO "$E2E_URL/log/foo")" "200"
expect "lower-case method: nginx answers 400" "$(code -X get "$E2E_URL/hello")" "400"

# ---- duplicate and missing params --------------------------------------------------
expect "duplicate query arg: 200" "$(code -X POST "$E2E_URL/in/arg?v=first&v=second&x=1")" "200"
expect "missing query arg: 200" "$(code -X POST "$E2E_URL/in/arg?x=1")" "200"
wait_rows "SELECT count(*) FROM rel_values WHERE src='arg'" 2 ||
    t_fail "arg rows" "$(e2e_log)"
expect "duplicate arg: the first value is stored" \
    "$(sql "SELECT v FROM rel_values WHERE src='arg' ORDER BY id LIMIT 1")" "first"
expect "missing arg: NULL is stored" \
    "$(sql "SELECT quote(v) FROM rel_values WHERE src='arg' ORDER BY id DESC LIMIT 1")" "NULL"
wait_rows "SELECT count(*) FROM logs WHERE path='/log/dotdot' OR (path='/log/foo' AND method='FOO')" 2 &&
    t_ok "resolved '..' path and method FOO stored as sent" || t_fail "dotdot/FOO rows"

# ---- SQL injection in every field that feeds a value ----------------------------------
sql "DELETE FROM rel_values"
INJ="x'); DROP TABLE users; -- \" OR 1=1; ?1 :v \$v @v"
E=$(urlenc "$INJ")
expect "injection via \$arg_v" "$(code -X POST "$E2E_URL/in/arg?v=$E")" "200"
expect "injection via \$http_x_v" "$(code -X POST -H "X-V: $INJ" "$E2E_URL/in/header")" "200"
expect "injection via \$body_v (form)" \
    "$(code -H 'Content-Type: application/x-www-form-urlencoded' --data "v=$E" "$E2E_URL/in/body")" "200"
expect "injection via \$body_v (JSON)" \
    "$(code -H "$JSON" --data "{\"v\":$(json_str "$INJ")}" "$E2E_URL/in/body")" "200"
expect "injection via \$body_a.b (nested JSON)" \
    "$(code -H "$JSON" --data "{\"a\":{\"b\":$(json_str "$INJ")}}" "$E2E_URL/in/nested")" "200"
expect "injection via \$seg_v" "$(code -X POST "$E2E_URL/in/seg/$E")" "200"
expect "injection via \$query_string" "$(code -X POST "$E2E_URL/in/query?$E")" "200"
expect "injection via \$content_type" \
    "$(code -X POST -H "Content-Type: text/plain; x=\"$INJ\"" "$E2E_URL/in/ctype")" "200"
expect "injection via \$uri" "$(code "$E2E_URL/log/$E")" "200"
wait_rows "SELECT count(*) FROM rel_values" 8 || t_fail "injection rows" "$(e2e_log)"
for src in arg header body nested seg; do
    got=$(sql "SELECT group_concat(v, '|') FROM rel_values WHERE src='$src'")
    case $src in body) want="$INJ|$INJ" ;; *) want=$INJ ;; esac
    expect "\$$src value stored verbatim" "$got" "$want"
done
expect "\$query_string stored verbatim (still encoded, as sent)" \
    "$(sql "SELECT v FROM rel_values WHERE src='query'")" "$E"
expect "\$content_type stored verbatim" \
    "$(sql "SELECT v FROM rel_values WHERE src='ctype'")" "text/plain; x=\"$INJ\""
wait_rows "SELECT count(*) FROM logs WHERE path = '/log/' || (SELECT v FROM rel_values WHERE src='arg')" 1 &&
    t_ok "\$uri stored verbatim" || t_fail "\$uri injection row" "$(sql "SELECT path FROM logs")"
expect "every table survived" \
    "$(sql "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type='table' AND name IN ('logs','users','sessions','rel_values') ORDER BY name)")" \
    "logs,rel_values,sessions,users"

st=$(rel_status)
s4=$(rel_field "$st" responses_4xx)
expect "no deferred task failed on bad input" "$(rel_field "$st" tasks_failed)" "0"
stack_stop_app TERM
expect "the app exits 0 after all of it" "$STACK_APP_RC" "0"
rel_log_clean
http_pass=$T_PASS http_fail=$T_FAIL

# ---- confs with errors: -t exits 1 with file:line --------------------------------------
APP=$TOP_BUILDDIR/app/waituntil
nconf=0
# bad_conf DESCRIPTION LINE CONF-TEXT: -t must exit 1 naming bad.conf:LINE:.
bad_conf() {
    nconf=$((nconf + 1))
    printf '%s\n' "$3" > "$T_TMP/bad.conf"
    if "$APP" -t -c "$T_TMP/bad.conf" -p "$TOP_SRCDIR" -d "$T_TMP/none.db" \
        >"$T_TMP/out" 2>&1; then
        t_fail "conf: $1" "exit 0; $(cat "$T_TMP/out")"
    elif grep -q "bad.conf:$2: " "$T_TMP/out"; then
        t_ok "conf: $1 (bad.conf:$2)"
    else
        t_fail "conf: $1" "$(cat "$T_TMP/out")"
    fi
}
R='route GET /x { respond 200 "x";'
bad_conf "column that is not a plain name" 3 "$R
  defer insert logs {
    \"method; --\" \$request_method; } }"
bad_conf "column with a '\$'" 1 "$R defer insert logs { method\$x \$request_method; } }"
bad_conf "where column that is not a plain name" 1 \
    "$R defer update users { set name \"a\"; where \"id OR 1\" \$arg_id; } }"
bad_conf "set column that is not a plain name" 1 \
    "$R defer update users { set \"name=1,\" \"a\"; where id \$arg_id; } }"
bad_conf "conflict column that is not a plain name" 1 \
    "$R defer upsert users { id \$arg_id; conflict \"id) DO NOTHING; --\"; } }"
bad_conf "schema-qualified table" 1 "$R defer insert main.logs { method \$request_method; } }"
bad_conf "table starting with a digit" 1 "$R defer insert 1logs { method \$request_method; } }"
bad_conf "non-ASCII table" 1 "$R defer insert lögs { method \$request_method; } }"
bad_conf "300-character table name" 1 \
    "$R defer insert $(head -c 300 /dev/zero | tr '\0' a) { method \$request_method; } }"
bad_conf "raw: with request data in it" 1 "$R defer insert logs { method raw:\$arg_x; } }"
bad_conf "unknown directive in a block" 2 "server {
  nope 1; }"
bad_conf "unknown top-level block" 1 'nope { }'
bad_conf "a block given twice" 2 'server { threads 2; }
server { threads 3; }'
bad_conf "bad size" 1 'server { max_body 1x; }'
bad_conf "bad time" 1 'pool { drain_timeout 5y; }'
bad_conf "unterminated string" 2 "$R"'
  respond 200 "x; }'
bad_conf "unclosed block" 2 'server { threads 2;'
bad_conf "stray '}'" 1 'server { threads 2; } }'
bad_conf "unknown variable" 1 "$R defer insert logs { method \$nope; } }"
bad_conf "\$seg_ that is not in the path" 1 "$R defer insert logs { method \$seg_id; } }"
bad_conf "unknown method" 1 'route FETCH /x { respond 200 "x"; }'
bad_conf "path without a leading '/'" 1 'route GET x { respond 200 "x"; }'
bad_conf "status out of range" 1 'route GET /x { respond 999 "x"; }'
bad_conf "route without handler or respond" 1 'route GET /x { defer insert logs { method $request_method; } }'
bad_conf "unknown admission policy" 1 'pool { admission maybe; }'
bad_conf "threads out of range" 1 'server { threads 100000; }'
bad_conf "queue 0" 1 'pool { queue 0; }'
bad_conf "unknown journal_mode" 1 'database { journal_mode fast; }'
bad_conf "socket_mode not octal" 1 'server { socket_mode 0999; }'
bad_conf "listen on every address (:9000)" 1 'server { listen :9000; }'
printf 'server { threads 2; }\n\000route GET /x { respond 200 "x"; }\n' > "$T_TMP/nul.conf"
nconf=$((nconf + 1))
if "$APP" -t -c "$T_TMP/nul.conf" -p "$TOP_SRCDIR" -d "$T_TMP/none.db" >"$T_TMP/out" 2>&1; then
    t_fail "conf: NUL byte in the file" "exit 0"
else
    grep -q 'nul.conf:2: ' "$T_TMP/out" && t_ok "conf: NUL byte in the file (nul.conf:2)" ||
        t_fail "conf: NUL byte" "$(cat "$T_TMP/out")"
fi
rel_figure "input http_checks_passed=$http_pass/$((http_pass + http_fail)) answered_4xx=$s4 tasks_failed=0 injection_sources_verbatim=9 bad_confs_refused=$((T_PASS - http_pass))/$nconf"
t_done
