#!/usr/bin/env bash
# The full test suite: brings up the rig (dockerd, registries, moto, Go builder image), then runs the Go
# unit tests, every Rust test (unit, end to end, context conformance), and the offline infrastructure checks.
# Usage: bash scripts/test.sh            (from anywhere; installs what is missing on Debian)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/rig.sh up
eval "$(bash scripts/rig.sh env)"

failed=()
step() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then echo "== $name: ok"; else echo "== $name: FAILED"; failed+=("$name"); fi
}

step "go test (api/)" bash -c 'cd api && GOTOOLCHAIN=local GOFLAGS=-mod=mod go test ./...'
step "cargo test" cargo test --workspace --all-targets --no-fail-fast
if [ -f tests/infra/check.sh ]; then
  step "infrastructure checks" bash tests/infra/check.sh
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test groups passed"
