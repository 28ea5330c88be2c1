#!/usr/bin/env bash
# Installs the Python peer of churn-scoring's `peer` benchmark (bench/peer/daily_windows.py:
# quixstreams computing the same per-customer daily windows) into a virtual environment
# under $CHURNGUARD_CACHE (~/.cache/churnguard/peer-venv), and prints that environment's
# python on stdout:
#   python="$(scripts/ensure-peer.sh)" && "$python" bench/peer/daily_windows.py --help
# Safe to run again: it installs once, and again only when bench/peer/requirements.txt
# has changed since (the venv keeps the hash of the file it was built from); when nothing
# is to be done it prints the path and nothing else. It needs python3 with venv and, the
# first time, the PyPI registry; a failed install leaves no venv behind and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${CHURNGUARD_CACHE:-$HOME/.cache/churnguard}"
VENV="$CACHE/peer-venv"
REQUIREMENTS=bench/peer/requirements.txt
STAMP="$VENV/.requirements.sha256"

say() { printf 'ensure-peer: %s\n' "$*" >&2; }

wanted="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ] \
  && "$VENV/bin/python" -c 'import quixstreams' 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi

if ! command -v python3 >/dev/null; then
  say "no python3 on PATH: cannot install the quixstreams peer"
  exit 1
fi
if [ -e "$VENV" ]; then
  say "$REQUIREMENTS changed (or the venv is broken): installing again into $VENV"
else
  say "installing the quixstreams peer ($REQUIREMENTS) into $VENV"
fi
# A fresh venv each time, so nothing of an older set of pins is left over.
rm -rf "$VENV"
mkdir -p "$CACHE"
trap 'rm -rf "$VENV"' ERR
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  -r "$REQUIREMENTS" >&2
"$VENV/bin/python" -c 'import quixstreams' >&2
echo "$wanted" > "$STAMP"
trap - ERR
echo "$VENV/bin/python"
