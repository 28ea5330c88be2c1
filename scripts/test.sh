#!/usr/bin/env bash
# `make test`: installs what is missing, then runs every test of the workspace. Tests
# start their own Tansu broker and Redis on free ports and stop them when done; this
# script also kills any that a crashed test left behind, whatever the outcome.
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

cargo test --workspace --locked "$@"
