#!/bin/sh
# End-to-end, through real nginx: request bodies (issue 13).
#
#   require  the shipped POST /users and a test route writing a NOT NULL
#            column: a missing, null or empty value answers 400 naming it
#            (JSON to a JSON request, text otherwise) before admission, so
#            no write is registered and no row lands; a full request
#            answers 2xx and its row lands.
#   lazy     a JSON body sent to a 404, or to a route that reads no body
#            field, is never parsed (/_status bodies_parsed stays put).
# Waits are for conditions (wait_rows polls, bounded); none is a sleep.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
t_tmpdir

# logs.path is NOT NULL: without require, a body lacking "path" would be
# answered 201 and its insert would fail later, in the background.
e2e_start '
route POST /note {
    require $body_path;
    respond 201 application/json "{\"ok\":true}";
    defer insert logs {
        method    $request_method;
        path      $body_path;
        timestamp $time_iso;
    }
}
'

JSON='Content-Type: application/json'
FORM='Content-Type: application/x-www-form-urlencoded'
# req PATH [curl args]: POST, prints "CODE BODY" on one line.
req() {
    p=$1; shift
    curl -s --max-time 10 -X POST -o "$T_TMP/body" -w '%{http_code}' "$@" \
        "$E2E_URL$p" >"$T_TMP/code"
    printf '%s %s' "$(cat "$T_TMP/code")" "$(tr -d '\n' <"$T_TMP/body")"
}
expect() { # expect DESCRIPTION GOT WANT
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "got: $2
want: $3"; fi
}
counter() { # counter NAME: one counter from /_status
    curl -s --max-time 10 "$E2E_URL/_status" | sed -E "s/.*\"$1\":([0-9]+).*/\1/"
}

# ---- require: 400 before admission, nothing written -----------------------
a0=$(counter tasks_admitted)
expect "POST /users without name (JSON): 400 naming it, as JSON" \
    "$(req /users -H "$JSON" --data '{"id":"r1"}')" \
    '400 {"status":400,"error":"missing body field \"name\"","field":"name"}'
expect "POST /users with an empty id (form): 400 naming it, as text" \
    "$(req /users -H "$FORM" --data 'id=&name=Ann')" \
    '400 400 Bad Request: missing body field "id"'
expect "POST /users with a null name: 400" \
    "$(req /users -H "$JSON" --data '{"id":"r2","name":null}' | cut -c1-3)" "400"
expect "POST /note without path: 400 (not a 201 and a failing insert)" \
    "$(req /note -H "$JSON" --data '{"other":1}')" \
    '400 {"status":400,"error":"missing body field \"path\"","field":"path"}'
expect "POST /note with malformed JSON: 400 with the parser's reason" \
    "$(req /note -H "$JSON" --data '{"path":' | cut -c1-45)" \
    '400 {"status":400,"error":"invalid JSON body:'
expect "the 400s registered no deferred write" "$(counter tasks_admitted)" "$a0"
expect "... and were counted" "$(counter requests_missing_required)" "4"

# ---- require satisfied: 2xx and the rows land ------------------------------
expect "POST /users with id and name: 202" \
    "$(req /users -H "$JSON" --data '{"id":"r9","name":"Ann"}')" '202 {"queued":true}'
expect "POST /note with path: 201" \
    "$(req /note -H "$FORM" --data 'path=/noted')" '201 {"ok":true}'
wait_rows "SELECT count(*) FROM users WHERE id='r9' AND name='Ann'" 1 100 &&
    t_ok "the user row lands" || t_fail "user row" "$(e2e_log)"
wait_rows "SELECT count(*) FROM logs WHERE path='/noted'" 1 100 &&
    t_ok "the note row lands" || t_fail "note row" "$(e2e_log)"
expect "no row from any refused request" \
    "$(sql "SELECT count(*) FROM users WHERE id IN ('r1','r2') OR id IS NULL OR id = ''")" "0"
expect "no deferred task failed" "$(counter tasks_failed)" "0"

# ---- lazy parse: a body nobody reads is never parsed -----------------------
p0=$(counter bodies_parsed)
python3 -c 'import sys; sys.stdout.write("[" + ",".join(["0"] * 400000) + "]")' \
    >"$T_TMP/zeros.json"
expect "800 kB of [0,0,...] to a 404: 404" \
    "$(req /nope -H "$JSON" --data-binary @"$T_TMP/zeros.json" | cut -c1-3)" "404"
expect "... and to /log, which reads no body field: 200" \
    "$(req /log -H "$JSON" --data-binary @"$T_TMP/zeros.json" | cut -c1-3)" "200"
expect "malformed JSON to /log is not parsed either: 200" \
    "$(req /log -H "$JSON" --data '{"a":' | cut -c1-3)" "200"
expect "bodies_parsed did not move" "$(counter bodies_parsed)" "$p0"
expect "the same body to /note: 400, cut off at max_json_elements" \
    "$(req /note -H "$JSON" --data-binary @"$T_TMP/zeros.json")" \
    '400 {"status":400,"error":"JSON body has more than 10000 elements"}'
expect "... parsed once" "$(counter bodies_parsed)" "$((p0 + 1))"
t_done
