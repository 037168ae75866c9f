#!/bin/sh
# summary.sh BUILDDIR... -- print each Check program's summary line and each
# shell test's count from the automake logs, then one line
# "N passed, N failed" over everything.  Exit 1 if any test failed or no
# test ran.
pass=0 fail=0
failed_logs=
for dir in "$@"; do
    [ -d "$dir/tests" ] || continue
    for log in $(find "$dir/tests" -name '*.log' ! -name test-suite.log | sort); do
        name=$log
        trs=${log%.log}.trs
        line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1)
        if [ -n "$line" ]; then
            n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
            f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
            e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
            echo "$name: $line"
            pass=$((pass + n - f - e)); fail=$((fail + f + e))
            [ $((f + e)) -gt 0 ] && failed_logs="$failed_logs $log"
            # A crash after the summary (sanitizer, valgrind) fails the program.
            if [ -f "$trs" ] && grep -q ':test-result: FAIL\|:test-result: ERROR' "$trs" && [ $((f + e)) -eq 0 ]; then
                echo "$name: program failed after its summary (see log)"; fail=$((fail + 1))
                failed_logs="$failed_logs $log"
            fi
            continue
        fi
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
        if [ -n "$line" ]; then
            p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
            echo "$name: $line"
            pass=$((pass + p)); fail=$((fail + f))
            [ "$f" -gt 0 ] && failed_logs="$failed_logs $log"
            if [ -f "$trs" ] && grep -q ':test-result: FAIL\|:test-result: ERROR' "$trs" && [ "$f" -eq 0 ]; then
                echo "$name: script failed (see log)"; fail=$((fail + 1))
                failed_logs="$failed_logs $log"
            fi
            continue
        fi
        if [ -f "$trs" ]; then
            r=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
            echo "$name: $r"
            case $r in PASS) pass=$((pass + 1)) ;; SKIP) ;;
            *) fail=$((fail + 1)); failed_logs="$failed_logs $log" ;; esac
        fi
    done
done
echo "$pass passed, $fail failed"
# CI shows the end of the output: repeat what failed, with its own words.
for log in $failed_logs; do
    echo "--- $log"
    pat=':[FE]:|ERROR: (Address|Thread|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:|^not ok'
    if grep -q -E "$pat" "$log"; then
        grep -E -A6 "$pat" "$log" | head -n 60
    else
        # No line of a known form (the runner itself died, a script
        # stopped early): its last lines say where.
        echo "(no failing line of a known form; the log's last 25 lines)"
        tail -n 25 "$log"
    fi
done
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
