#!/usr/bin/env bash
# `make lint`: formatting, clippy, the docs' links, the layering rule, buf lint, and buf breaking against
# the main branch so a v1 contract cannot break silently.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/ensure-tools.sh --lint)"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Broken intra-doc links are denied in the workspace lints; this is where they are found.
cargo doc --workspace --no-deps --locked
cargo test --locked -p churnguard-e2e --test layering
"$BUF_BIN" lint
if git rev-parse --verify --quiet main >/dev/null && git cat-file -e main:proto 2>/dev/null; then
  "$BUF_BIN" breaking --against '.git#branch=main'
else
  echo "lint: no proto/ on main yet; buf breaking skipped"
fi
