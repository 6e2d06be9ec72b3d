# Sourced by scripts/demo and scripts/test: make .venv (python3 only needed) and install the
# project with the given extra, skipping pip when pyproject.toml has not changed since.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRA="${1:-test}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
STAMP=".venv/.installed-$EXTRA"
HASH="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
    .venv/bin/python -m pip install -q -e ".[$EXTRA]" 2>&1 | grep -v '^WARNING: Location' || true
    .venv/bin/python -c "import asynctransfer" # fail here, clearly, if the install did not work
    echo "$HASH" > "$STAMP"
fi
