#!/usr/bin/env bash
# Runs the given Molecule scenarios side by side: each has its own containers, ports and
# stand-in Cerebras, so none waits for another's pip, npm and systemd starts, and on two
# cores the stage takes about the longest scenario instead of the sum. Every line on the
# terminal is prefixed with its scenario; each scenario's whole log is kept for `make bench`
# (bench/results/tmp/molecule-<scenario>.log, first-converge and no-op timings). Exits non-zero
# if any scenario failed, after all have finished, and prints each one's result and wall time
# (kept in bench/results/tmp/molecule-times.txt for `make test`'s summary).
#
# Usage: molecule_side_by_side.sh <scenario>...   (molecule on PATH; `make molecule` runs it)
set -uo pipefail

readonly LOGS=bench/results/tmp
mkdir -p "$LOGS"
rm -f "$LOGS/molecule-times.txt"
# The target images are built by `make test-image`; their references name the recipe's hash.
CCQ_TARGET_IMAGE=$(bash tests/target_image/build.sh --print-ref)
CCQ_TARGET_IMAGE_DEBIAN13=$(CCQ_TARGET_SUITE=trixie bash tests/target_image/build.sh --print-ref)
export CCQ_TARGET_IMAGE CCQ_TARGET_IMAGE_DEBIAN13

# Ctrl-C stops every scenario, not only the one in the foreground.
trap 'kill 0' INT TERM

# Each scenario writes its own wall time when it ends (the waits below return in start order).
declare -A pid
for scenario in "$@"; do
  ( started=$(date +%s)
    molecule test -s "$scenario" 2>&1 | tee "$LOGS/molecule-$scenario.log" | sed -u "s/^/[$scenario] /"
    rc=${PIPESTATUS[0]}
    echo "$(( $(date +%s) - started ))" > "$LOGS/molecule-$scenario.seconds"
    exit "$rc" ) &
  pid[$scenario]=$!
done

status=0 results=()
for scenario in "$@"; do
  if wait "${pid[$scenario]}"; then outcome=passed; else outcome=FAILED; status=1; fi
  results+=("$(printf 'molecule %-10s %5d s  %s' "$scenario" "$(cat "$LOGS/molecule-$scenario.seconds")" "$outcome")")
done
printf '%s\n' "${results[@]}" | tee "$LOGS/molecule-times.txt"
exit "$status"
