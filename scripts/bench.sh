#!/usr/bin/env bash
# `make bench`: runs the benchmarks (each figure next to its limit, measured in the same
# run) and appends the whole output to BENCHMARKS.md under the date, the commit and the
# machine, so the file keeps every run and a regression shows against the ones before.
# A run that fails records nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

scripts/with-infra.sh cargo bench --locked -p purchase-ingest --bench ingest | tee "$out"
scripts/with-infra.sh cargo bench --locked -p churn-scoring --bench scoring | tee -a "$out"
# Against quixstreams (issue 15); the bench installs its Python peer (scripts/ensure-peer.sh).
scripts/with-infra.sh cargo bench --locked -p churn-scoring --bench peer | tee -a "$out"
scripts/with-infra.sh cargo bench --locked -p churn-scoring --bench end_to_end | tee -a "$out"
scripts/with-infra.sh cargo bench --locked -p churn-scoring --bench rebuild | tee -a "$out"
# The RSS bench runs the services' release binaries, which a bench of another crate
# cannot have built for it.
cargo build --locked --release -p purchase-ingest -p churn-scoring -p feedback
scripts/with-infra.sh cargo bench --locked -p churnguard-e2e --bench rss | tee -a "$out"
scripts/with-infra.sh cargo bench --locked -p churnguard-cli --bench import | tee -a "$out"

commit="$(git rev-parse --short HEAD)"
if ! git diff --quiet HEAD -- . ':!BENCHMARKS.md'; then
  commit="$commit, with uncommitted changes"
fi
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
memory="$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
{
  printf '\n## %s · %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit"
  printf 'Machine: %s, %s cores, %s, Linux %s, %s.\n\n' \
    "$(hostname)" "$(nproc)" "$memory" "$(uname -r)" "${cpu:-unknown CPU}"
  printf '```text\n'
  # Cargo's own lines (compiling, running) are not figures.
  grep -v -E '^\s*(Compiling|Finished|Running|Executable) ' "$out"
  printf '```\n'
} >> BENCHMARKS.md
echo "bench: recorded in BENCHMARKS.md ($commit)" >&2
