#!/bin/sh
# tests/fuzz/run.sh [SECONDS] -- build every libFuzzer harness with clang
# (-fsanitize=fuzzer,address,undefined, as the READMEs under tests/fuzz/
# say) and run each for SECONDS (default 60), one after the other, so a
# shared 2-core machine keeps a core for everyone else.
#
# Exit status: 0 when every harness ran its time without a finding;
# 1 on any finding (crash, leak, timeout, OOM, sanitizer report: libFuzzer
# exits non-zero and writes an artifact); 2 when a harness does not build.
#
# Environment:
#   FUZZ_OUT   scratch folder (default /tmp/wu-fuzz-$USER): binaries,
#              the writable corpora (kept between runs, so repeated runs
#              continue where the last one stopped), logs and artifacts
#   FUZZ_ONLY  space-separated subset of: conf request qb qb_raw
#   CC         the compiler (default clang; it must know -fsanitize=fuzzer)
#
# Prints one line per harness:
#   # figure: fuzz_NAME seconds=S execs=N exec_per_s=R corpus=C findings=0
set -u

secs=${1:-60}
case $secs in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-/tmp/wu-fuzz-$(id -un)}
cc=${CC:-clang}
only=${FUZZ_ONLY:-conf request qb qb_raw}
mkdir -p "$out/bin" "$out/logs" "$out/artifacts"

san="-std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
web_src="lib/web/arena.c lib/web/util.c lib/web/request.c lib/web/router.c \
lib/web/conf.c lib/web/source.c"
qb_src="lib/qb/strbuf.c lib/qb/value.c lib/qb/query.c lib/qb/clause.c \
lib/qb/select.c lib/qb/write.c"

# build NAME: compile the harness into $out/bin/fuzz_NAME.
build() {
    cd "$top" || return 1
    case $1 in
    conf | request)
        # shellcheck disable=SC2086,SC2046  # word lists on purpose
        $cc $san -DWEB_BUILDING -DFUZZ_CONF_DIR="\"$top/tests/fuzz/conf/include\"" \
            -Ilib/web "tests/fuzz/fuzz_$1.c" $web_src \
            $(pkg-config --cflags --libs jansson) -o "$out/bin/fuzz_$1" ;;
    qb)
        # shellcheck disable=SC2086
        $cc $san -DQB_BUILDING -Ilib/qb tests/fuzz/fuzz_qb.c $qb_src \
            -lsqlite3 -o "$out/bin/fuzz_qb" ;;
    qb_raw)
        # shellcheck disable=SC2086
        $cc $san -DQB_BUILDING -Ilib/qb tests/fuzz/fuzz_qb_raw.c $qb_src \
            -o "$out/bin/fuzz_qb_raw" ;;
    *) echo "unknown harness $1" >&2; return 1 ;;
    esac
}

# Per-harness options from its README.
opts() {
    case $1 in
    conf) echo "-dict=$top/tests/fuzz/conf/conf.dict -max_len=4096" ;;
    request) echo "-dict=$top/tests/fuzz/request/request.dict -max_len=8192" ;;
    qb) echo "-dict=$top/tests/fuzz/qb/qb.dict -max_len=512" ;;
    qb_raw) echo "-dict=$top/tests/fuzz/qb_raw/qb_raw.dict -max_len=512" ;;
    esac
}

status=0
for h in $only; do
    log=$out/logs/fuzz_$h.log
    if ! build "$h" >"$out/logs/build_$h.log" 2>&1; then
        echo "not ok - fuzz_$h does not build:"
        sed 's/^/#   /' "$out/logs/build_$h.log"
        status=2
        continue
    fi
    mkdir -p "$out/corpus/$h"
    # Artifacts of an earlier run would be counted again: count new ones.
    before=$(find "$out/artifacts" -name "fuzz_$h-*" | wc -l)
    t0=$(date +%s)
    # shellcheck disable=SC2046
    "$out/bin/fuzz_$h" $(opts "$h") -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/fuzz_$h-" \
        "$out/corpus/$h" "$top/tests/fuzz/$h/corpus" >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    after=$(find "$out/artifacts" -name "fuzz_$h-*" | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=0
    dt=$((t1 - t0))
    [ "$dt" -gt 0 ] || dt=1
    ncorp=$(ls "$out/corpus/$h" | wc -l)
    findings=$((after - before))
    if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
        status=1
        echo "not ok - fuzz_$h: exit $rc, $findings new artifact(s) in $out/artifacts"
        grep -E 'ERROR: |runtime error|SUMMARY|Test unit written' "$log" | head -n 20 |
            sed 's/^/#   /'
        [ "$findings" -gt 0 ] || findings=1
    else
        echo "ok - fuzz_$h ran ${dt}s without a finding"
    fi
    echo "# figure: fuzz_$h seconds=$dt execs=$execs exec_per_s=$((execs / dt)) corpus=$ncorp findings=$findings"
done
exit $status
