#!/usr/bin/env bash
# Runs a command (the tests, the benchmarks) with what it needs installed, and cleans up
# after it: tests and benchmarks start their own Tansu broker and Redis on free ports and
# stop them when done; this script also kills any that a crashed run left behind,
# whatever the outcome.
#   scripts/with-infra.sh cargo test --workspace --locked
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/ensure-tools.sh)"
export TANSU_BIN

CHURNGUARD_TEST_PIDS="$(mktemp -d)"
export CHURNGUARD_TEST_PIDS
cleanup() {
  for f in "$CHURNGUARD_TEST_PIDS"/*; do
    [ -e "$f" ] || continue
    pid="$(basename "$f")"
    if grep -qaE 'tansu|redis-server' "/proc/$pid/cmdline" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$CHURNGUARD_TEST_PIDS"
}
trap cleanup EXIT INT TERM

"$@"
