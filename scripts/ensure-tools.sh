#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks. Safe to run again: each step
# checks first. Binaries built here are cached under $CHURNGUARD_CACHE.
#   redis-server  Debian packages redis-server and redis-tools (redis-cli builds test clusters)
#   promtool      Debian package prometheus (the only one shipping promtool; without its
#                 recommends): the runtime's admin test checks the /metrics text with it
#   tansu 0.6.0   Kafka-protocol broker, `cargo install` (about 20 min cold; cached)
#   buf           protobuf linter, from the npm registry (only with --lint)
#   kubectl       checked, not installed (see below)
# With --no-broker, Tansu is skipped (`make run` needs only Redis).
set -euo pipefail

CACHE="${CHURNGUARD_CACHE:-$HOME/.cache/churnguard}"
TANSU_VERSION=0.6.0
TANSU_ROOT="$CACHE/tansu-$TANSU_VERSION"
BUF_VERSION=1.75.0
BUF_ROOT="$CACHE/buf-$BUF_VERSION"

say() { printf 'ensure-tools: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# C toolchain for rdkafka's bundled librdkafka.
if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
  say "installing a C toolchain (build-essential)"
  apt_install build-essential
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  say "installing redis-server and redis-tools"
  apt_install redis-server redis-tools
  # The package may start a system instance; tests start their own on free ports.
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  say "installing prometheus and promtool (Debian package prometheus, without its recommends)"
  apt_install --no-install-recommends prometheus
  # promtool checks the metrics text and the rules; the server runs in the dashboard test
  # (services/local/tests/prometheus.rs) on a free port. The package may start a system
  # instance on 9090; nothing here uses it.
fi

# kubectl (its built-in kustomize) renders deploy/ in check-observability.sh. It is part of
# this machine's image; Debian's kubernetes-client (kubectl 1.20, kustomize v2.0.3) is too
# old for deploy/kustomization.yaml (per-generator options, a directory in resources), and
# no registry reachable here carries a newer one, so nothing is installed: say so.
if ! command -v kubectl >/dev/null && ! command -v kustomize >/dev/null; then
  say "no kubectl or kustomize: check-observability.sh cannot render deploy/ (it fails with CI set); install kubectl >= 1.21 or kustomize >= 4"
fi

if [ "${1:-}" != "--no-broker" ] && [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
  say "building tansu $TANSU_VERSION into $TANSU_ROOT (about 20 minutes on 2 cores, once)"
  mkdir -p "$CACHE"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql \
    --root "$TANSU_ROOT" --quiet
fi

if [ "${1:-}" = "--lint" ] && [ ! -x "$BUF_ROOT/node_modules/.bin/buf" ]; then
  say "installing buf $BUF_VERSION from the npm registry"
  mkdir -p "$BUF_ROOT"
  npm install --silent --no-audit --no-fund --prefix "$BUF_ROOT" "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi

echo "TANSU_BIN=$TANSU_ROOT/bin/tansu"
echo "BUF_BIN=$BUF_ROOT/node_modules/.bin/buf"
