# How scripts/run-tests counts a TAP program's log; sourced by it and by
# scripts/tests/test_tap_count.  Uses and updates the globals passed,
# failed and skipped.

# count_tap NAME LOG STATUS [SECONDS]: add a TAP log's results to the
# totals; SECONDS, the program's wall time, goes on its result line and
# into the timings list print_slowest sorts.  A
# program must print its plan (1..N) and run exactly that many checks; a
# skip is counted as a skip, and fails the run unless scripts/allowed-skips
# names that test and its reason; a program that exits non-zero, or runs
# nothing, fails.
count_tap() {
    local name=$1 log=$2 status=$3 secs=${4:-} ok bad skip plan ran line
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
    printf '%-40s %3d passed, %d failed%s%s\n' "$name" "$ok" "$bad" \
        "$([ "$skip" -eq 0 ] || echo ", $skip skipped")" "$(elapsed_note "$secs")"
    [ -z "$secs" ] || timings+=("$secs $name")
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


# elapsed_note SECONDS: " (12.3 s)" for a result line; nothing when
# SECONDS is empty.  The timings list ("SECONDS NAME" items) is what
# print_slowest sorts.
timings=()
elapsed_note() { [ -z "$1" ] || printf ' (%s s)' "$1"; }

# since START: seconds from START (an $EPOCHREALTIME) to now, one decimal.
since() {
    local now=$EPOCHREALTIME
    awk -v a="$1" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}

# print_slowest [N]: the N (10) slowest programs and suites timed so far.
print_slowest() {
    [ ${#timings[@]} -gt 0 ] || return 0
    echo "# slowest ${1:-10}:"
    printf '%s\n' "${timings[@]}" | sort -k1,1 -rn | head -"${1:-10}" |
        awk '{ printf "#   %7.1f s  %s\n", $1, $2 }'
}
