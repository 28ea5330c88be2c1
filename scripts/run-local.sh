#!/usr/bin/env bash
# `make run`: every service in one process on the embedded log (data/log), fed by a
# simulated chain of stores. Starts a private Redis for churn-scoring's and feedback's
# state (port 6390, persisted to data/redis with an append-only file: the log would rebuild
# everything else, but feedback's contact-vault keys exist only there, and with the key
# file data/local-kek they keep contact details readable across restarts) unless
# CHURNGUARD_SCORING_REDIS__URL names one, and stops it on exit. `make clean-data` deletes
# both.
#   scripts/run-local.sh [--simulate-stores N] [--history-days D]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tools.sh --no-broker >/dev/null

redis_pid=
cleanup() { if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT INT TERM

if [ -z "${CHURNGUARD_SCORING_REDIS__URL:-}" ]; then
  port="${CHURNGUARD_LOCAL_REDIS_PORT:-6390}"
  mkdir -p data/redis
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes \
    --dir data/redis --logfile redis.log &
  redis_pid=$!
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export CHURNGUARD_SCORING_REDIS__URL="redis://127.0.0.1:$port/"
  echo "run-local: private Redis on port $port, persisted in data/redis" >&2
fi

cargo run --locked -p churnguard-local -- "$@"
