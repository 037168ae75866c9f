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
