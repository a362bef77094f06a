#!/usr/bin/env bash
# ecrbuild benchmark: ecrbuild against the shell pipeline it replaces and against the docker CLI,
# side by side in one run (interleaved A B A B ..., medians), on the rig from scripts/rig.sh.
#
#   bench/run.sh                 full run (N=5; about 20-25 min on 2 cores, plus a one-off
#                                generation of the context trees into $BENCH_CACHE)
#   BENCH_QUICK=1 bench/run.sh   smoke run: N=1 and small contexts (a few minutes)
#
# Environment:
#   BENCH_N=5            repetitions per side (BENCH_N_COLD defaults to N, BENCH_N_RSS to min(N, 3))
#   BENCH_ONLY=...       comma list of scenarios: warm,skip,labels,tags,cold,big,rss,platforms,export,services
#                        (default), bigcold; e.g. BENCH_ONLY=services BENCH_N=3 for the ecrbuild.toml rows alone
#   BENCH_CACHE=DIR      generated trees, floor tars, results (default /var/lib/ecrbuild-rig/bench-cache)
#   ECRBUILD=PATH        binary to measure (default: target/release/ecrbuild, built here)
#   BENCH_CARGO_BUILD=1  also time a cold `cargo build --release` in a throwaway target dir
#                        (bench/cargo_build_time.sh), after everything else
#
# Prints the table on stdout and saves it (and every raw measurement, as JSON) under
# $BENCH_CACHE/results/. Images it creates are removed; the trees stay cached.
set -euo pipefail

cd "$(dirname "$0")/.."
say() { printf 'bench: %s\n' "$*" >&2; }

bash scripts/rig.sh up >&2
eval "$(bash scripts/rig.sh env)"

# The AWS CLI for the shell side, from PyPI, in its own venv.
readonly BENCH_VENV=/var/lib/ecrbuild-rig/bench-venv
if [[ ! -x "$BENCH_VENV/bin/aws" ]]; then
    say "installing the AWS CLI (PyPI awscli) into $BENCH_VENV"
    /usr/bin/python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install --quiet awscli
fi
export BENCH_AWS="$BENCH_VENV/bin/aws"

if [[ -z "${ECRBUILD:-}" ]]; then
    say "cargo build --release"
    cargo build --release --quiet >&2
    export ECRBUILD="${CARGO_TARGET_DIR:-$PWD/target}/release/ecrbuild"
fi

/usr/bin/python3 bench/bench.py

if [[ "${BENCH_CARGO_BUILD:-0}" != 0 ]]; then
    bash bench/cargo_build_time.sh
fi
