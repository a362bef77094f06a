#!/usr/bin/env bash
# Bounded fuzzing of the context phase with the property tests of
# crates/docker-context/tests/context_props.rs:
#   - the .dockerignore parser and matcher never panic (arbitrary bytes, pattern-ish bytes, paths);
#   - the tar of random trees holds every scanned path once, in order, with the right type and bytes.
# It runs them in rounds, each with a fresh proptest seed and many more cases than `cargo test` does,
# until the time budget is spent. No nightly toolchain needed (cargo fuzz would need one).
#
# Usage: bash scripts/fuzz-context.sh [SECONDS]        (default 300)
# Env:   FUZZ_MATCHER_CASES  cases per round for the parser/matcher properties (default 20000)
#        FUZZ_TAR_CASES      cases per round for the tar property (default 300)
#        FUZZ_SEED           first round's seed (default: from the clock); round k uses FUZZ_SEED+k
# A failing round prints proptest's minimal input and the command that replays it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

budget=${1:-300}
matcher_cases=${FUZZ_MATCHER_CASES:-20000}
tar_cases=${FUZZ_TAR_CASES:-300}
seed=${FUZZ_SEED:-$(date +%s)}
case $budget in '' | *[!0-9]*) echo "fuzz-context: SECONDS must be a whole number, got '$budget'" >&2; exit 2 ;; esac

# Build first, so the budget is spent fuzzing.
exe=$(cargo test -p docker-context --test context_props --no-run --message-format=json 2>/dev/null \
  | grep '"name":"context_props"' | grep -o '"executable":"[^"]*"' | sed 's/"executable":"//; s/"$//' | tail -n 1)
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  cargo test -p docker-context --test context_props --no-run # show the build error
  echo "fuzz-context: could not build crates/docker-context/tests/context_props.rs" >&2
  exit 1
fi

start=$(date +%s)
deadline=$((start + budget))
rounds=0
total_matcher=0
total_tar=0
echo "fuzz-context: ${budget}s budget, rounds of $matcher_cases parser/matcher cases and $tar_cases tar cases, first seed $seed"

# run_round NAME CASES SEED FILTER...: 0 = passed, 124 = out of time, anything else = a failure.
run_round() {
  local name=$1 cases=$2 round_seed=$3
  shift 3
  local left=$((deadline - $(date +%s)))
  [ "$left" -gt 0 ] || return 124
  local status=0
  PROPTEST_CASES=$cases PROPTEST_RNG_SEED=$round_seed PROPTEST_MAX_SHRINK_TIME=60000 \
    timeout --signal=TERM "$left" "$exe" --test-threads 2 --quiet "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then
    echo "fuzz-context: FAILED in round $((rounds + 1)) ($name, seed $round_seed):"
    cat "$log"
    echo "replay: PROPTEST_CASES=$cases PROPTEST_RNG_SEED=$round_seed cargo test -p docker-context --test context_props -- $*"
  fi
  return "$status"
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
while :; do
  round_seed=$((seed + rounds))
  run_round "parser/matcher" "$matcher_cases" "$round_seed" matcher_never_panics parsing_ || status=$?
  [ "$status" -eq 0 ] || break
  total_matcher=$((total_matcher + 3 * matcher_cases))
  run_round "tar" "$tar_cases" "$round_seed" tar_holds_every_scanned_path_once_in_order || status=$?
  [ "$status" -eq 0 ] || break
  total_tar=$((total_tar + tar_cases))
  rounds=$((rounds + 1))
  echo "  round $rounds (seed $round_seed) passed after $(($(date +%s) - start))s"
done

elapsed=$(($(date +%s) - start))
if [ "$status" -eq 124 ]; then
  echo "fuzz-context: no failure in ${elapsed}s: $rounds full rounds, $total_matcher parser/matcher cases and $total_tar random trees (the last round was cut at the time limit)"
  exit 0
fi
echo "fuzz-context: failure after ${elapsed}s and $rounds clean rounds"
exit 1
