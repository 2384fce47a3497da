# How scripts/run-tests counts a TAP program's log; sourced by it and by
# scripts/tests/test_tap_count.  Uses and updates the globals passed,
# failed and skipped.

# count_tap NAME LOG STATUS: add a TAP log's results to the totals.  A
# program must print its plan (1..N) and run exactly that many checks; a
# skip is counted as a skip, and fails the run unless scripts/allowed-skips
# names that test and its reason; a program that exits non-zero, or runs
# nothing, fails.
count_tap() {
    local name=$1 log=$2 status=$3 ok bad skip plan ran line
    ok=$(grep -E '^ok [0-9]+' "$log" | grep -cviE '# *skip')
    skip=$(grep -E '^ok [0-9]+' "$log" | grep -ciE '# *skip')
    bad=$(grep -cE '^not ok [0-9]+' "$log")
    plan=$(grep -oE '^1\.\.[0-9]+' "$log" | tail -1 | cut -c4-)
    ran=$((ok + skip + bad))
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
        echo "not ok - $name exited with status $status"
    fi
    if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
        bad=$((bad + 1))
        echo "not ok - $name ran no test"
    fi
    if [ -z "$plan" ]; then
        bad=$((bad + 1))
        echo "not ok - $name printed no plan (1..N)"
    elif [ "$plan" -ne "$ran" ]; then
        bad=$((bad + 1))
        echo "not ok - $name planned $plan checks and ran $ran"
    fi
    if [ "$skip" -gt 0 ]; then
        while IFS= read -r line; do
            if ! allowed_skip "$name" "$line"; then
                bad=$((bad + 1))
                echo "not ok - $name skipped a check scripts/allowed-skips does not allow: $line"
            fi
        done < <(grep -E '^ok [0-9]+' "$log" | grep -iE '# *skip')
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
    skipped=$((skipped + skip))
    printf '%-40s %3d passed, %d failed%s\n' "$name" "$ok" "$bad" \
        "$([ "$skip" -eq 0 ] || echo ", $skip skipped")"
    if [ "$bad" -ne 0 ]; then
        grep -E '^not ok|^#' "$log" | head -40
        echo "--- last lines of $name:"; tail -25 "$log"
    fi
}

# allowed_skip NAME LINE: whether scripts/allowed-skips permits that skip
# (lines "test-name<TAB>extended regex matched against the TAP line").
allowed_skip() {
    local name=$1 line=$2 tname re
    local file=${allowed_skips_file:-scripts/allowed-skips}
    [ -f "$file" ] || return 1
    while IFS=$'\t' read -r tname re; do
        case $tname in ''|'#'*) continue;; esac
        [ "$tname" = "$1" ] && [[ $line =~ $re ]] && return 0
    done < "$file"
    return 1
}

