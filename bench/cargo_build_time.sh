#!/usr/bin/env bash
# Time a cold `cargo build --release` (empty target dir; crates already downloaded, as in a CI
# image with a warm ~/.cargo/registry) and report the stripped binary size. Uses a throwaway
# CARGO_TARGET_DIR under /tmp so target/ is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(mktemp -d /tmp/ecrbuild-cold-build.XXXXXX)
trap 'rm -rf "$target"' EXIT
cargo fetch --quiet
load=$(cut -d" " -f1-3 /proc/loadavg)
start=$(date +%s.%N)
CARGO_TARGET_DIR="$target" cargo build --release --quiet
end=$(date +%s.%N)
size=$(stat -c %s "$target/release/ecrbuild")
printf 'cold cargo build --release: %.0f s on %s CPUs (load average before: %s); binary %d bytes (%.2f MiB)\n' \
    "$(echo "$end - $start" | bc)" "$(nproc)" "$load" "$size" \
    "$(echo "$size / 1048576" | bc -l)"
