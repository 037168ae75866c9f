# tests/lib.sh -- helpers for the shell tests (sourced, POSIX sh).
# Each script counts its checks and ends with t_done, which prints
# "N passed, N failed" (summed by tools/summary.sh) and sets the exit code.

T_PASS=0
T_FAIL=0

t_ok() {   # t_ok DESCRIPTION
    T_PASS=$((T_PASS + 1)); echo "ok - $1"
}
t_fail() { # t_fail DESCRIPTION [DETAIL]
    T_FAIL=$((T_FAIL + 1)); echo "not ok - $1"
    [ $# -lt 2 ] || printf '%s\n' "$2" | sed 's/^/#   /'
}
t_check() { # t_check DESCRIPTION COMMAND...: passes if COMMAND exits 0
    d=$1; shift
    if "$@"; then t_ok "$d"; else t_fail "$d" "command failed: $*"; fi
}
t_skip_all() { # the whole script cannot run here: exit 77 (automake SKIP)
    echo "SKIP: $1"; exit 77
}
t_done() {
    echo "$T_PASS passed, $T_FAIL failed"
    [ "$T_FAIL" -eq 0 ]
}

# ---- waiting ---------------------------------------------------------------
# A test waits for a condition, never for a duration: on a busy machine
# (CI runs the TSan tree on 2 cores next to other work, load 8-10 and
# more) anything can take 50 times longer than on a quiet one.  Every wait
# has a deadline on the clock, not a count of tries (each try is slow
# under load too), and a generous one: it costs nothing when the
# condition comes true early.  T_WAIT_S is that bound, in seconds.
T_WAIT_S=${T_WAIT_S:-120}

# t_wait_for SECONDS COMMAND...: run COMMAND (every 0.1 s) until it
# succeeds; 1 if it still fails after SECONDS ("" means $T_WAIT_S).
t_wait_for() {
    tw_end=$(($(date +%s) + ${1:-$T_WAIT_S}))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$tw_end" ] || return 1
        sleep 0.1
    done
}

# t_log_ms LOG EVENT: when the app logged its first "event=EVENT" line, in
# ms since midnight UTC (its ts= field); empty if there is none.
t_log_ms() {
    sed -n "s/^ts=[0-9-]*T\([0-9][0-9]\):\([0-9][0-9]\):\([0-9][0-9]\)\.\([0-9][0-9][0-9]\)Z .*event=$2 .*/\1 \2 \3 \4/p" \
        "$1" | head -n 1 | awk '{ print (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'
}
# t_log_span LOG FROM TO: ms between the app's first FROM and first TO
# event, by its own clock: what the app took, without the scheduling of
# the test's processes around it.  Returns 1 if either line is missing.
t_log_span() {
    tl_a=$(t_log_ms "$1" "$2") tl_b=$(t_log_ms "$1" "$3")
    [ -n "$tl_a" ] && [ -n "$tl_b" ] || return 1
    tl_d=$((tl_b - tl_a))
    [ "$tl_d" -ge 0 ] || tl_d=$((tl_d + 86400000)) # midnight in between
    echo "$tl_d"
}

# A private scratch folder under the build tree, removed on exit.
t_tmpdir() {
    T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/wu-test.XXXXXX")
    trap 't_cleanup' EXIT
    trap 'exit 130' INT TERM
}
t_cleanup() {
    [ -z "${T_CLEANUP_HOOK:-}" ] || eval "$T_CLEANUP_HOOK"
    [ -z "${T_TMP:-}" ] || rm -rf "$T_TMP"
}
