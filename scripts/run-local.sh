#!/usr/bin/env bash
# `make run`: every service in one process on the embedded log (data/log), fed by a
# simulated chain of stores. Starts a private Redis for churn-scoring's and feedback's
# state (port 6390, persisted to data/redis with an append-only file: the log would rebuild
# everything else, but feedback's contact-vault keys exist only there, and with the key
# file data/local-kek they keep contact details readable across restarts) unless
# CHURNGUARD_SCORING_REDIS__URL names one, and stops it on exit. `make clean-data` deletes
# both.
#   scripts/run-local.sh [--simulate-stores N] [--history-days D]
#   HISTORY=FILE scripts/run-local.sh   (a chain's own history instead of simulated stores)
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

if [ -z "${HISTORY:-}" ]; then
  exec cargo run --locked -p churnguard-local -- "$@"
fi

# HISTORY=FILE (`make run HISTORY=...`): a chain's own history instead of simulated
# stores. churnguard-local starts without the simulator, `churnguard import` loads FILE
# through purchase-ingest (CDNOW, or CSV when FILE ends in .csv; HISTORY_FORMAT says
# otherwise), keeping its resume state in data/ so a second `make run` sends nothing
# again, and `churnguard refit` asks for the models to be fitted on it. Then the services
# keep running until Ctrl-C.
format="${HISTORY_FORMAT:-$(case "$HISTORY" in *.csv) echo csv ;; *) echo cdnow ;; esac)}"
cargo build --locked -q -p churnguard-local -p churnguard-cli
target="${CARGO_TARGET_DIR:-target}/debug"
"$target/churnguard-local" --simulate-stores 0 --history-days 0 &
local_pid=$!
stop_local() { kill -INT "$local_pid" 2>/dev/null || true; wait "$local_pid" 2>/dev/null || true; cleanup; }
trap stop_local EXIT INT TERM
for _ in $(seq 300); do
  (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/50052) 2>/dev/null && break
  kill -0 "$local_pid" 2>/dev/null || { echo "run-local: churnguard-local stopped" >&2; exit 1; }
  sleep 0.2
done
state="data/$(basename "$HISTORY").import-state"
echo "run-local: importing $HISTORY ($format), resume state in $state" >&2
"$target/churnguard" import "$HISTORY" --format "$format" --state "$state" || true
"$target/churnguard" refit || true
echo "run-local: history loaded; the services run until Ctrl-C" >&2
wait "$local_pid"
